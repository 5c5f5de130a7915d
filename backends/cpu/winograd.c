/* Winograd F(2x2, 3x3) convolution (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2016) for dense 3x3 stride-1 layers.
 *
 * Each 2x2 block of output pixels ("tile") is A^T [U . V] A with
 * U = G g G^T (the 3x3 filter taken to 4x4, once, at prepare time) and
 * V = B^T d B (the tile's 4x4 input window): 16 multiplies per input
 * channel where the direct convolution needs 36. The products of all
 * tiles are 16 independent GEMMs, U_e [M x C] times V_e [C x tiles], one
 * per element e of the 4x4 transform; they are packed as one matrix of
 * 16 groups, so one call of the existing GEMM drivers runs them all in a
 * single parallel pass. Around it: the input transform (per channel, into
 * V [16*C][tiles]) and the output transform (per output channel, with
 * bias and activation, straight into the output planes).
 *
 * Non-finite inputs: the input transform takes differences of inputs, so
 * an Inf in a tile's window becomes Inf - Inf = NaN in some of its
 * outputs, where the direct sums give Inf (PIVOT_CPU_CONV=direct keeps
 * them; only activations that already overflow float are affected).
 *
 * Rounding: the transforms add and subtract at most 4x4 values with
 * weights 1 and 1/2, so results stay at the direct sums' level (relative
 * L2 error against ONNX Runtime 3-7e-7 on yolov3-tiny's layers, 1.2e-6
 * for the whole model; the conformance tests allow 1e-4).
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "conv-nv.h"

#define WINO_E 16 /* elements of a 4x4 transform */

pv_cpu_mat *pv_cpu_wino_pack(const float *w, int32_t M, int64_t C) {
  if (M <= 0 || C <= 0 || M > INT32_MAX / WINO_E ||
      (uint64_t)M * (uint64_t)C > (uint64_t)(SIZE_MAX / sizeof(float) / WINO_E)) {
    pv_error(PV_EINVAL, "cpu: %d x %lld filters too large for Winograd", M,
             (long long)C);
    return NULL;
  }
  float *u = malloc((size_t)WINO_E * (size_t)M * (size_t)C * sizeof(float));
  if (!u) {
    pv_error(PV_ENOMEM, "cpu: out of memory");
    return NULL;
  }
  /* G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1], in double. */
  static const double G[4][3] = {
      {1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  for (int32_t m = 0; m < M; m++)
    for (int64_t c = 0; c < C; c++) {
      const float *g = w + ((int64_t)m * C + c) * 9;
      double t[4][3]; /* G g */
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
          t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
      for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
          double v = t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2];
          u[((int64_t)(i * 4 + j) * M + m) * C + c] = (float)v;
        }
    }
  /* Group e: rows e*M.., columns e*C.. of V. */
  pv_cpu_mat *mat = pv_cpu_mat_dense(u, WINO_E * M, C, C, 1, WINO_E, 1.0f);
  free(u);
  return mat;
}

/* One row of tiles, input side: v[e*es + t] = (B^T d_t B)[e] for tiles
 * t < tw, d_t the 4x4 window at column 2t of the padded rows r[0..3]. */
typedef void (*wino_in_fn)(const float *const r[4], float *v, int64_t es,
                           int64_t tw);
/* Output side: o0 / o1 [2t], [2t+1] = act((A^T m_t A) + bias) for
 * t < tw, m_t[e] = m[e*es + t]. */
typedef void (*wino_out_fn)(const float *m, int64_t es, int64_t tw, float *o0,
                            float *o1, float bias, pv_act act, float al,
                            float be);

static void in_row_c(const float *const r[4], float *restrict v, int64_t es,
                     int64_t tw) {
  for (int64_t tx = 0; tx < tw; tx++) {
    const int64_t s = 2 * tx;
    /* B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3, per column. */
    float t[4][4];
    for (int k = 0; k < 4; k++) {
      t[0][k] = r[0][s + k] - r[2][s + k];
      t[1][k] = r[1][s + k] + r[2][s + k];
      t[2][k] = r[2][s + k] - r[1][s + k];
      t[3][k] = r[1][s + k] - r[3][s + k];
    }
    /* (B^T d) B: the same along each row. */
    for (int i = 0; i < 4; i++) {
      v[(i * 4 + 0) * es + tx] = t[i][0] - t[i][2];
      v[(i * 4 + 1) * es + tx] = t[i][1] + t[i][2];
      v[(i * 4 + 2) * es + tx] = t[i][2] - t[i][1];
      v[(i * 4 + 3) * es + tx] = t[i][1] - t[i][3];
    }
  }
}

static void out_row_c(const float *restrict m, int64_t es, int64_t tw,
                      float *restrict o0, float *restrict o1, float bias,
                      pv_act act, float al, float be) {
  for (int64_t t = 0; t < tw; t++) {
    float u0[4], u1[4];
    for (int k = 0; k < 4; k++) {
      float m0 = m[k * es + t], m1 = m[(4 + k) * es + t];
      float m2 = m[(8 + k) * es + t], m3 = m[(12 + k) * es + t];
      u0[k] = m0 + m1 + m2;
      u1[k] = m1 - m2 - m3;
    }
    o0[2 * t] = pv_cpu_act1(u0[0] + u0[1] + u0[2] + bias, act, al, be);
    o0[2 * t + 1] = pv_cpu_act1(u0[1] - u0[2] - u0[3] + bias, act, al, be);
    o1[2 * t] = pv_cpu_act1(u1[0] + u1[1] + u1[2] + bias, act, al, be);
    o1[2 * t + 1] = pv_cpu_act1(u1[1] - u1[2] - u1[3] + bias, act, al, be);
  }
}

#if defined(__x86_64__)
#include "act-avx512.h"
#define T512 PV_T512

/* 16 tiles per step: each padded row's columns 2t .. 2t+33 in four
 * loads, split into the window's four columns (k = 0..3: evens, odds,
 * evens and odds one tile on) by permutes. Reads up to 34 floats past
 * the row's last tile (WINO_SLACK). */
static T512 void in_row_avx512(const float *const r[4], float *restrict v,
                               int64_t es, int64_t tw) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                       22, 24, 26, 28, 30);
  const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
  for (int64_t t = 0; t < tw; t += 16) {
    __mmask16 mk = tw - t >= 16 ? 0xffff : (__mmask16)((1u << (tw - t)) - 1);
    __m512 d[4][4];
    for (int i = 0; i < 4; i++) {
      const float *p = r[i] + 2 * t;
      __m512 a = _mm512_loadu_ps(p), b = _mm512_loadu_ps(p + 16);
      __m512 a2 = _mm512_loadu_ps(p + 2), b2 = _mm512_loadu_ps(p + 18);
      d[i][0] = _mm512_permutex2var_ps(a, ev, b);
      d[i][1] = _mm512_permutex2var_ps(a, od, b);
      d[i][2] = _mm512_permutex2var_ps(a2, ev, b2);
      d[i][3] = _mm512_permutex2var_ps(a2, od, b2);
    }
    __m512 q[4][4];
    for (int k = 0; k < 4; k++) {
      q[0][k] = _mm512_sub_ps(d[0][k], d[2][k]);
      q[1][k] = _mm512_add_ps(d[1][k], d[2][k]);
      q[2][k] = _mm512_sub_ps(d[2][k], d[1][k]);
      q[3][k] = _mm512_sub_ps(d[1][k], d[3][k]);
    }
    for (int i = 0; i < 4; i++) {
      float *o = v + i * 4 * es + t;
      _mm512_mask_storeu_ps(o, mk, _mm512_sub_ps(q[i][0], q[i][2]));
      _mm512_mask_storeu_ps(o + es, mk, _mm512_add_ps(q[i][1], q[i][2]));
      _mm512_mask_storeu_ps(o + 2 * es, mk, _mm512_sub_ps(q[i][2], q[i][1]));
      _mm512_mask_storeu_ps(o + 3 * es, mk, _mm512_sub_ps(q[i][1], q[i][3]));
    }
  }
}

/* 16 tiles per step: 16 vector loads, the two output rows' even and odd
 * columns, interleaved by permutes into 32 floats per row. */
static T512 void out_row_avx512(const float *restrict m, int64_t es, int64_t tw,
                                float *restrict o0, float *restrict o1,
                                float bias, pv_act act, float al, float be) {
  const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5,
                                       21, 6, 22, 7, 23);
  const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
  const __m512 vb = _mm512_set1_ps(bias);
  const __m512 va = _mm512_set1_ps(al), vbe = _mm512_set1_ps(be);
  for (int64_t t = 0; t < tw; t += 16) {
    int64_t n = tw - t < 16 ? tw - t : 16;
    __mmask16 mk = (__mmask16)((1u << n) - 1);
    __mmask16 m0 = n >= 8 ? 0xffff : (__mmask16)((1u << (2 * n)) - 1);
    __mmask16 m1 = n <= 8 ? 0 : (__mmask16)((1u << (2 * n - 16)) - 1);
    __m512 u0[4], u1[4];
    for (int k = 0; k < 4; k++) {
      __m512 a = _mm512_maskz_loadu_ps(mk, m + k * es + t);
      __m512 b = _mm512_maskz_loadu_ps(mk, m + (4 + k) * es + t);
      __m512 c = _mm512_maskz_loadu_ps(mk, m + (8 + k) * es + t);
      __m512 d = _mm512_maskz_loadu_ps(mk, m + (12 + k) * es + t);
      u0[k] = _mm512_add_ps(_mm512_add_ps(a, b), c);
      u1[k] = _mm512_sub_ps(_mm512_sub_ps(b, c), d);
    }
    __m512 *u[2] = {u0, u1};
    float *o[2] = {o0, o1};
    for (int i = 0; i < 2; i++) {
      __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(u[i][0], u[i][1]), u[i][2]), vb);
      __m512 f = _mm512_add_ps(_mm512_sub_ps(_mm512_sub_ps(u[i][1], u[i][2]), u[i][3]), vb);
      e = pv_act512(e, act, va, vbe);
      f = pv_act512(f, act, va, vbe);
      _mm512_mask_storeu_ps(o[i] + 2 * t, m0, _mm512_permutex2var_ps(e, lo, f));
      _mm512_mask_storeu_ps(o[i] + 2 * t + 16, m1, _mm512_permutex2var_ps(e, hi, f));
    }
  }
  if (!pv_cpu_act_vec(act)) /* sigmoid, tanh: per element */
    for (int64_t i = 0; i < 2 * tw; i++) {
      o0[i] = pv_cpu_act1(o0[i], act, al, be);
      o1[i] = pv_cpu_act1(o1[i], act, al, be);
    }
}
#endif

#define WINO_SLACK 64 /* floats readable past a padded channel */

typedef struct wino_job {
  pv_cpu_pool *pool;
  const pv_cpu_wino_geom *g;
  const float *x;
  float *v, *mb; /* [16*C][T], [16*M][T] */
  int64_t TH, TW, T, Hp, Wp;
  const pv_cpu_out *out;
  int32_t M;
  wino_in_fn in_row;
  wino_out_fn out_row;
  atomic_int failed;
} wino_job;

/* Item n*C + c: channel c of image n, padded so that every tile's 4x4
 * window is in bounds, then V[e*C + c][tiles of image n]. */
static void wino_in(void *arg, int64_t item, int tid) {
  wino_job *j = arg;
  const pv_cpu_wino_geom *g = j->g;
  const int64_t n = item / g->C, c = item % g->C;
  const int64_t Hp = j->Hp, Wp = j->Wp, TW = j->TW;
  float *xp = pv_cpu_pool_scratch(j->pool, tid, (size_t)(Hp * Wp + WINO_SLACK) *
                                                    sizeof(float));
  if (!xp) {
    atomic_store(&j->failed, 1);
    return;
  }
  pv_cpu_pad_plane(j->x + (n * g->C + c) * g->H * g->W, g->H, g->W, g->pt,
                   g->pl, xp, Hp, Wp, 0.0f);
  /* Zeros, not stale floats: a NaN there would only reach masked lanes,
   * but keep the slack clean. */
  memset(xp + Hp * Wp, 0, WINO_SLACK * sizeof(float));
  const int64_t es = g->C * j->T; /* between elements e in V */
  float *v0 = j->v + c * j->T + n * j->TH * TW;
  for (int64_t ty = 0; ty < j->TH; ty++) {
    const float *r[4] = {xp + 2 * ty * Wp, xp + (2 * ty + 1) * Wp,
                         xp + (2 * ty + 2) * Wp, xp + (2 * ty + 3) * Wp};
    j->in_row(r, v0 + ty * TW, es, TW);
  }
}

/* Item n*M + m: output channel m of image n. A row of tiles goes straight
 * into the plane, or where the plane's size is odd (the tiles' last row
 * or column falls outside) through a buffer of two full rows. */
static void wino_out(void *arg, int64_t item, int tid) {
  wino_job *j = arg;
  const pv_cpu_wino_geom *g = j->g;
  const pv_cpu_out *o = j->out;
  const int64_t n = item / j->M, m = item % j->M;
  const int64_t OH = g->OH, OW = g->OW, TW = j->TW;
  const int64_t es = (int64_t)j->M * j->T;
  float *buf = pv_cpu_pool_scratch(j->pool, tid, (size_t)(4 * TW) * sizeof(float));
  if (!buf) {
    atomic_store(&j->failed, 1);
    return;
  }
  const float *mb = j->mb + m * j->T + n * j->TH * TW;
  float *y = o->y + n * j->M * OH * OW + m * OH * OW;
  const float bias = o->bias ? o->bias[m] : 0.0f;
  const bool even = !(OW & 1);
  for (int64_t ty = 0; ty < j->TH; ty++) {
    float *y0 = y + 2 * ty * OW, *y1 = y0 + OW;
    const bool two = 2 * ty + 1 < OH;
    if (even && two) {
      j->out_row(mb + ty * TW, es, TW, y0, y1, bias, o->act, o->alpha, o->beta);
    } else {
      j->out_row(mb + ty * TW, es, TW, buf, buf + 2 * TW, bias, o->act,
                 o->alpha, o->beta);
      memcpy(y0, buf, (size_t)OW * sizeof(float));
      if (two) memcpy(y1, buf + 2 * TW, (size_t)OW * sizeof(float));
    }
  }
}

int pv_cpu_wino_conv(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                     const pv_cpu_mat *u, const pv_cpu_wino_geom *g,
                     const float *x, const pv_cpu_out *out) {
  if (u->n_seg != WINO_E || u->M % WINO_E || u->K != WINO_E * g->C)
    return pv_error(PV_EINVAL, "cpu: not a Winograd-packed matrix");
  wino_job j = {.pool = pool, .g = g, .x = x, .out = out,
                .M = u->M / WINO_E, .in_row = in_row_c, .out_row = out_row_c};
#if defined(__x86_64__)
  if (isa == &pv_cpu_isa_avx512) {
    j.in_row = in_row_avx512;
    j.out_row = out_row_avx512;
  }
#endif
  j.TH = (g->OH + 1) / 2;
  j.TW = (g->OW + 1) / 2;
  j.T = g->N * j.TH * j.TW;
  j.Hp = 2 * j.TH + 2;
  j.Wp = 2 * j.TW + 2;
  if (j.T <= 0) return 0;
  /* The tiles read padded rows and columns up to 2*TH + 1 and 2*TW + 1;
   * the caller checked OH = H + pt + pb - 2 and OW = W + pl + pr - 2. */
  const uint64_t vn = (uint64_t)WINO_E * (uint64_t)g->C * (uint64_t)j.T;
  const uint64_t mn = (uint64_t)WINO_E * (uint64_t)j.M * (uint64_t)j.T;
  if (vn + mn > (uint64_t)(SIZE_MAX / sizeof(float) / 2))
    return pv_error(PV_ERANGE, "cpu: Winograd buffers too large");
  pv_cpu_pool_op_lock(pool);
  float *buf = pv_cpu_pool_op_scratch(pool, (size_t)(vn + mn) * sizeof(float));
  if (!buf) {
    pv_cpu_pool_op_unlock(pool);
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  }
  j.v = buf;
  j.mb = buf + vn;
  int threads = pv_cpu_pool_threads(pool);
  pv_cpu_pool_run_blocked(pool, g->N * g->C, threads, wino_in, &j);
  int r = 0;
  if (atomic_load(&j.failed)) {
    r = pv_error(PV_ENOMEM, "cpu: out of scratch memory");
    goto out;
  }
  /* One GEMM for all 16 elements: group e reads rows e*C.. of V (planes
   * of T tiles) and writes rows e*M.. of mb. */
  pv_cpu_bsrc b = {.x = j.v, .ld_k = j.T, .ld_n = 1};
  pv_cpu_out mo = {.y = j.mb, .ld_m = j.T, .ld_n = 1, .act = PV_ACT_NONE};
  /* The pixel tiles only where they fill their lanes (T = 49, a 13x13
   * layer's tiles, would run 64): the grouped matrix passes for pivoted
   * in pv_cpu_conv_nv_ok, which then takes any width. */
  const int64_t lanes = j.T / PV_NV_NR * PV_NV_NR + (j.T % PV_NV_NR + 15) / 16 * 16;
  if (j.T * 10 >= lanes * 9 && pv_cpu_conv_nv_ok(isa, u, &b, j.T))
    r = pv_cpu_conv_nv(pool, isa, u, &b, j.T, &mo);
  else
    r = pv_cpu_gemm(pool, isa, u, &b, j.T, &mo);
  if (r) goto out;
  pv_cpu_pool_run_blocked(pool, g->N * j.M, threads, wino_out, &j);
  if (atomic_load(&j.failed))
    r = pv_error(PV_ENOMEM, "cpu: out of scratch memory");
out:
  pv_cpu_pool_op_unlock(pool);
  return r;
}
