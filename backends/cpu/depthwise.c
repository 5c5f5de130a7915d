/* Depthwise convolution, direct: one channel per work item. A depthwise
 * layer has kh*kw multiply-adds per output, too few for a GEMM to pay for
 * its packing. The interior (no padding checks) runs a tight loop the
 * compiler vectorises for stride 1.
 *
 * On AVX-512 the 3x3 layers of stride 1 and 2 (MobileNets' and most
 * others') take a zero-padded copy of the channel and keep 16 outputs in
 * a register through all nine taps: the loop above stores and reloads
 * each output row once per tap, and its stride-2 loop is scalar. */
#include <string.h>

#include "cpu-impl.h"

#define DW_SLACK 64 /* floats past a padded plane that tiles may read */

typedef struct dw_job {
  const pv_cpu_dwconv *d;
  const float *x, *w;
  float *y;
  const pv_cpu_out *out;
  pv_cpu_pool *pool;
  bool v512; /* the AVX-512 3x3 path */
  int64_t Hp, Wp;
} dw_job;

#if defined(__x86_64__)
#include "act-avx512.h"

/* One channel, 3x3, stride s (1 or 2), on the padded plane xp [Hp][Wp]:
 * per 16 outputs of a row, three rows of taps from vector loads (stride
 * 2: evens and odds split by permutes), bias and activation, one masked
 * store. */
static PV_T512 void dw3x3_avx512(const float *xp, int64_t Wp, const float *w,
                                 float bias, float *y, int64_t OH, int64_t OW,
                                 int s, const pv_cpu_out *o) {
  __m512 wk[9];
  for (int k = 0; k < 9; k++) wk[k] = _mm512_set1_ps(w[k]);
  const __m512 vb = _mm512_set1_ps(bias), va = _mm512_set1_ps(o->alpha),
               vbe = _mm512_set1_ps(o->beta);
  const bool vec_act = pv_cpu_act_vec(o->act);
  for (int64_t oy = 0; oy < OH; oy++) {
    float *yr = y + oy * OW;
    for (int64_t ox = 0; ox < OW; ox += 16) {
      __mmask16 m = OW - ox >= 16 ? 0xffff : (__mmask16)((1u << (OW - ox)) - 1);
      __m512 acc = vb;
      for (int r = 0; r < 3; r++) {
        __m512 a[3];
        pv_win3_512(xp + (oy * s + r) * Wp + ox * s, s, a);
        acc = _mm512_fmadd_ps(wk[3 * r], a[0], acc);
        acc = _mm512_fmadd_ps(wk[3 * r + 1], a[1], acc);
        acc = _mm512_fmadd_ps(wk[3 * r + 2], a[2], acc);
      }
      _mm512_mask_storeu_ps(yr + ox, m, pv_act512(acc, o->act, va, vbe));
    }
    if (!vec_act)
      for (int64_t ox = 0; ox < OW; ox++)
        yr[ox] = pv_cpu_act1(yr[ox], o->act, o->alpha, o->beta);
  }
}
#endif


PV_CPU_CLONES static void dw_channel(void *arg, int64_t c, int tid) {
  const dw_job *j = arg;
  const pv_cpu_dwconv *d = j->d;
  const float *x = j->x + c * d->H * d->W;
  const float *w = j->w + c * d->kh * d->kw;
  float *y = j->y + c * d->OH * d->OW;
  float bias = j->out->bias ? j->out->bias[c] : 0.0f;
#if defined(__x86_64__)
  if (j->v512) {
    float *xp = pv_cpu_pool_scratch(j->pool, tid, (size_t)(j->Hp * j->Wp + DW_SLACK) *
                                                      sizeof(float));
    if (xp) {
      pv_cpu_pad_plane(x, d->H, d->W, d->ph, d->pw, xp, j->Hp, j->Wp, 0.0f);
      memset(xp + j->Hp * j->Wp, 0, DW_SLACK * sizeof(float));
      dw3x3_avx512(xp, j->Wp, w, bias, y, d->OH, d->OW, (int)d->sw, j->out);
      return;
    } /* out of memory: the loop below needs no scratch */
  }
#endif
  for (int64_t oy = 0; oy < d->OH; oy++) {
    float *yr = y + oy * d->OW;
    for (int64_t ox = 0; ox < d->OW; ox++) yr[ox] = bias;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sh - d->ph + ky * d->dh;
      if (iy < 0 || iy >= d->H) continue;
      const float *xr = x + iy * d->W;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        float wv = w[ky * d->kw + kx];
        int64_t off = kx * d->dw - d->pw;
        /* ox range where 0 <= ox*sw + off < W */
        int64_t lo = off < 0 ? (-off + d->sw - 1) / d->sw : 0;
        int64_t hi = d->W - off <= 0 ? 0 : (d->W - off + d->sw - 1) / d->sw;
        if (hi > d->OW) hi = d->OW;
        if (d->sw == 1) {
          const float *xs = xr + off;
          for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xs[ox];
        } else {
          for (int64_t ox = lo; ox < hi; ox++)
            yr[ox] += wv * xr[ox * d->sw + off];
        }
      }
    }
    if (j->out->act != PV_ACT_NONE)
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = pv_cpu_act1(yr[ox], j->out->act, j->out->alpha, j->out->beta);
  }
}

void pv_cpu_depthwise(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                      const pv_cpu_dwconv *d, const float *x, const float *w,
                      float *y, const pv_cpu_out *out) {
  dw_job j = {d, x, w, y, out, pool, false, 0, 0};
#if defined(__x86_64__)
  /* Padded rows: every window of a tile inside, (OW-1)*s + 3 columns. */
  j.v512 = isa == &pv_cpu_isa_avx512 && d->kh == 3 && d->kw == 3 &&
           d->dh == 1 && d->dw == 1 && d->sh == d->sw &&
           (d->sw == 1 || d->sw == 2);
  j.Hp = (d->OH - 1) * d->sh + 3;
  j.Wp = (d->OW - 1) * d->sw + 3;
  if (j.Hp < d->ph || j.Wp < d->pw) j.v512 = false;
#else
  (void)isa;
#endif
  pv_cpu_pool_run_blocked(pool, d->C, pv_cpu_pool_threads(pool), dw_channel, &j);
}
