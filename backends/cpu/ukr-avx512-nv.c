/* AVX-512 tile of the spatially vectorised convolution (conv-nv.h): 8
 * output channels x 48 output pixels in 24 zmm accumulators. Per tap,
 * three vector loads of the im2col row and eight weight broadcasts feed
 * 24 FMAs, so FMA issue is the limit; the tile goes straight into the
 * output rows (contiguous pixels) with bias and activation, masked at
 * the row's end. */
#include <math.h>

#include "conv-nv.h"

#if defined(__x86_64__)
#include "act-avx512.h"

#define T512 __attribute__((target("avx512f,avx512vl,avx2")))
#define NV_PF 16 /* taps ahead */

/* NV vectors of 16 pixels: a panel's last, narrower tile skips the FMAs
 * of vectors that are all past its end. */
static inline __attribute__((always_inline)) T512 void
nv_tile(const float *a, const float *b, const int64_t *off, int64_t k,
        float *const *y, int64_t col0, const float *bias, int nrows, int w,
        int flags, pv_act act, float alpha, float beta, const int NV,
        const bool MASK) {
  __m512 c[PV_NV_MR][3];
  const __mmask16 m0 = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
  const __mmask16 m1 = w >= 32 ? 0xffff : w <= 16 ? 0 : (__mmask16)((1u << (w - 16)) - 1);
  const __mmask16 m2 = w >= 48 ? 0xffff : w <= 32 ? 0 : (__mmask16)((1u << (w - 32)) - 1);
  if (flags & PV_NV_FIRST) {
    _Pragma("GCC unroll 8")
    for (int i = 0; i < PV_NV_MR; i++)
      c[i][0] = c[i][1] = c[i][2] = _mm512_setzero_ps();
  } else {
    _Pragma("GCC unroll 8")
    for (int i = 0; i < PV_NV_MR; i++) {
      if (i < nrows) {
        const float *yi = y[i] + col0;
        c[i][0] = _mm512_maskz_loadu_ps(m0, yi);
        c[i][1] = _mm512_maskz_loadu_ps(m1, yi + 16);
        c[i][2] = _mm512_maskz_loadu_ps(m2, yi + 32);
      } else {
        c[i][0] = c[i][1] = c[i][2] = _mm512_setzero_ps();
      }
    }
  }
  for (int64_t p = 0; p < k; p++) {
    const float *bp = b + off[p], *ap = a + p * PV_CPU_MR;
    /* A layer's weights come from memory once per pixel block: fetch
     * them ahead (one 16-float panel line per tap). */
    _mm_prefetch((const char *)(ap + NV_PF * PV_CPU_MR), _MM_HINT_T0);
    /* Masked only in a narrow tile (a row's last panel may end at the end
     * of the input): GCC reloads the mask registers on every step. */
    __m512 b0 = MASK ? _mm512_maskz_loadu_ps(m0, bp) : _mm512_loadu_ps(bp);
    __m512 b1 = NV < 2 ? b0 : MASK ? _mm512_maskz_loadu_ps(m1, bp + 16)
                                   : _mm512_loadu_ps(bp + 16);
    __m512 b2 = NV < 3 ? b0 : MASK ? _mm512_maskz_loadu_ps(m2, bp + 32)
                                   : _mm512_loadu_ps(bp + 32);
    _Pragma("GCC unroll 8")
    for (int i = 0; i < PV_NV_MR; i++) {
      __m512 ai = _mm512_set1_ps(ap[i]);
      c[i][0] = _mm512_fmadd_ps(ai, b0, c[i][0]);
      if (NV > 1) c[i][1] = _mm512_fmadd_ps(ai, b1, c[i][1]);
      if (NV > 2) c[i][2] = _mm512_fmadd_ps(ai, b2, c[i][2]);
    }
  }
  const bool last = flags & PV_NV_LAST;
  const bool vec_act = pv_cpu_act_vec(act);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  _Pragma("GCC unroll 8")
  for (int i = 0; i < PV_NV_MR; i++) {
    if (i >= nrows) break;
    float *yi = y[i] + col0;
    if (last) {
      __m512 bi = _mm512_set1_ps(bias[i]);
      c[i][0] = pv_act512(_mm512_add_ps(c[i][0], bi), act, va, vb);
      c[i][1] = pv_act512(_mm512_add_ps(c[i][1], bi), act, va, vb);
      c[i][2] = pv_act512(_mm512_add_ps(c[i][2], bi), act, va, vb);
    }
    _mm512_mask_storeu_ps(yi, m0, c[i][0]);
    if (NV > 1) _mm512_mask_storeu_ps(yi + 16, m1, c[i][1]);
    if (NV > 2) _mm512_mask_storeu_ps(yi + 32, m2, c[i][2]);
    if (last && !vec_act)
      for (int j = 0; j < w; j++) yi[j] = pv_cpu_act1(yi[j], act, alpha, beta);
  }
}

#define NV_ARGS                                                          \
  const float *a, const float *b, const int64_t *off, int64_t k,             \
      float *const *y,                                                     \
      int64_t col0, const float *bias, int nrows, int w, int flags,        \
      pv_act act, float alpha, float beta
#define NV_PASS a, b, off, k, y, col0, bias, nrows, w, flags, act, alpha, beta
static T512 void nv_16(NV_ARGS) { nv_tile(NV_PASS, 1, false); }
static T512 void nv_32(NV_ARGS) { nv_tile(NV_PASS, 2, false); }
static T512 void nv_48(NV_ARGS) { nv_tile(NV_PASS, 3, false); }
static T512 void nv_16m(NV_ARGS) { nv_tile(NV_PASS, 1, true); }
static T512 void nv_32m(NV_ARGS) { nv_tile(NV_PASS, 2, true); }
static T512 void nv_48m(NV_ARGS) { nv_tile(NV_PASS, 3, true); }

static void nv_avx512(NV_ARGS) {
  bool pad = flags & PV_NV_BPAD;
  if (w > 32) (w == 48 || pad ? nv_48 : nv_48m)(NV_PASS);
  else if (w > 16) (w == 32 || pad ? nv_32 : nv_32m)(NV_PASS);
  else (w == 16 || pad ? nv_16 : nv_16m)(NV_PASS);
}

const pv_nv_ukr_fn pv_cpu_nv_ukr_avx512 = nv_avx512;

/* n floats, 16 at a time, the tail masked: GCC turns the plain loop into
 * a memmove call, which on 13- and 26-wide rows costs more than the copy. */
static inline __attribute__((always_inline)) T512 void
nv_copy(float *d, const float *s, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_loadu_ps(s + i));
  if (i < n) {
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(d + i, m, _mm512_maskz_loadu_ps(m, s + i));
  }
}

static inline __attribute__((always_inline)) T512 void nv_zero(float *d,
                                                               int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(d + i, _mm512_setzero_ps());
  if (i < n)
    _mm512_mask_storeu_ps(d + i, (__mmask16)((1u << (n - i)) - 1),
                          _mm512_setzero_ps());
}

/* n floats s[0], s[2], s[4]... into d: 16 a step from two loads (the
 * second, and the tail's, masked to what the row holds: 2n - 1 floats). */
static inline __attribute__((always_inline)) T512 void
nv_copy_s2(float *d, const float *s, int64_t n) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                       22, 24, 26, 28, 30);
  for (int64_t i = 0; i < n; i += 16) {
    int64_t left = 2 * (n - i) - 1; /* floats readable from s + 2i */
    __mmask16 k0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
    __mmask16 k1 = left >= 32 ? 0xffff : left <= 16 ? 0
                                                   : (__mmask16)((1u << (left - 16)) - 1);
    __m512 a = _mm512_maskz_loadu_ps(k0, s + 2 * i);
    __m512 b = _mm512_maskz_loadu_ps(k1, s + 2 * i + 16);
    __mmask16 kd = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(d + i, kd, _mm512_permutex2var_ps(a, ev, b));
  }
}

/* pv_cpu_im2col_row for stride SW (1 or 2) along rows: per output row
 * segment, zeros where the window leaves the input and one vector copy in
 * between (at stride 2 two loads and a permute per 16: the scalar row
 * loop was a third of ResNet's 7x7 stride-2 stem). */
static inline __attribute__((always_inline)) T512 void
nv_im2col(const pv_cpu_seg *s, const pv_cpu_bsrc *b, int64_t p, int64_t n0,
          int64_t cn, float *dst, const int SW) {
  const int64_t kk = b->kh * b->kw, OW = b->OW;
  int64_t c = s->col_idx ? s->col_idx[p] : s->col_base + p;
  int64_t ch = c / kk, t = c % kk;
  int64_t dy = (t / b->kw) * b->dh - b->ph, dx = (t % b->kw) * b->dw - b->pw;
  const float *xc = b->x + ch * b->H * b->W;
  /* Output columns [lo, hi) read inside the input row: 0 <= SW*ox + dx < W. */
  int64_t lo = dx >= 0 ? 0 : (-dx + SW - 1) / SW;
  int64_t hi = b->W - dx <= 0 ? 0 : (b->W - dx + SW - 1) / SW;
  if (hi > OW) hi = OW;
  if (hi < lo) hi = lo;
  int64_t oy = n0 / OW, ox = n0 % OW;
  for (int64_t i = 0; i < cn; oy++, ox = 0) {
    int64_t seg = OW - ox < cn - i ? OW - ox : cn - i, end = ox + seg;
    int64_t iy = oy * b->sh + dy;
    float *l = dst + i - ox; /* indexed by output column */
    if ((uint64_t)iy >= (uint64_t)b->H) {
      nv_zero(l + ox, seg);
    } else {
      int64_t e0 = ox > lo ? ox : lo, e1 = end < hi ? end : hi;
      if (e1 < e0) e0 = e1 = e0 < end ? e0 : end;
      nv_zero(l + ox, e0 - ox);
      const float *src = xc + iy * b->W + SW * e0 + dx;
      if (SW == 1) nv_copy(l + e0, src, e1 - e0);
      else nv_copy_s2(l + e0, src, e1 - e0);
      nv_zero(l + e1, end - e1);
    }
    i += seg;
  }
}

static T512 void nv_im2col_s1(const pv_cpu_seg *s, const pv_cpu_bsrc *b,
                              int64_t p, int64_t n0, int64_t cn, float *dst) {
  nv_im2col(s, b, p, n0, cn, dst, 1);
}

static T512 void nv_im2col_s2(const pv_cpu_seg *s, const pv_cpu_bsrc *b,
                              int64_t p, int64_t n0, int64_t cn, float *dst) {
  nv_im2col(s, b, p, n0, cn, dst, 2);
}

const pv_nv_im2col_fn pv_cpu_nv_im2col_s1_avx512 = nv_im2col_s1;
const pv_nv_im2col_fn pv_cpu_nv_im2col_s2_avx512 = nv_im2col_s2;

/* max that keeps a NaN, as MaxPool does (maxps returns its second
 * operand when either is NaN). */
static inline __attribute__((always_inline)) T512 __m512 nv_max_nan(__m512 a,
                                                                   __m512 b) {
  __mmask16 un = _mm512_cmp_ps_mask(a, b, _CMP_UNORD_Q);
  return _mm512_mask_add_ps(_mm512_max_ps(a, b), un, a, b);
}

/* d[x] = max(r0[2x], r0[2x+1], r1[2x], r1[2x+1]) for x < w/2, reading
 * the first 2*(w/2) floats of each row only: 16 outputs from 32 floats of
 * each row (the rows' maxima, then evens against odds after one permute
 * each), the last n < 16 with masked loads and store. Serves the pool
 * fused into the pixel tiles and the standalone 2x2 stride-2 MaxPool
 * (whose loop the compiler kept scalar with a branch per maximum). */
static T512 void pool2(const float *r0, const float *r1, float *d, int64_t w) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                       22, 24, 26, 28, 30);
  const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
  const int64_t n = w / 2;
  int64_t x = 0;
  for (; x + 16 <= n; x += 16) {
    __m512 m0 = nv_max_nan(_mm512_loadu_ps(r0 + 2 * x), _mm512_loadu_ps(r1 + 2 * x));
    __m512 m1 = nv_max_nan(_mm512_loadu_ps(r0 + 2 * x + 16),
                           _mm512_loadu_ps(r1 + 2 * x + 16));
    _mm512_storeu_ps(d + x, nv_max_nan(_mm512_permutex2var_ps(m0, ev, m1),
                                       _mm512_permutex2var_ps(m0, od, m1)));
  }
  if (x < n) {
    int64_t t = n - x;
    __mmask16 k0 = (__mmask16)(t >= 8 ? 0xffff : (1u << (2 * t)) - 1);
    __mmask16 k1 = (__mmask16)(t > 8 ? (1u << (2 * t - 16)) - 1 : 0);
    __m512 m0 = nv_max_nan(_mm512_maskz_loadu_ps(k0, r0 + 2 * x),
                           _mm512_maskz_loadu_ps(k0, r1 + 2 * x));
    __m512 m1 = nv_max_nan(_mm512_maskz_loadu_ps(k1, r0 + 2 * x + 16),
                           _mm512_maskz_loadu_ps(k1, r1 + 2 * x + 16));
    _mm512_mask_storeu_ps(d + x, (__mmask16)((1u << t) - 1),
                          nv_max_nan(_mm512_permutex2var_ps(m0, ev, m1),
                                     _mm512_permutex2var_ps(m0, od, m1)));
  }
}

const pv_cpu_pool2_fn pv_cpu_pool2_avx512 = pool2;

/* The 2x2 window with stride 1 (darknet's size-2 stride-1 pool): d[x] =
 * max(r0[x], r0[x+1], r1[x], r1[x+1]) for x < n, reading n + 1 floats of
 * each row; the tail masked (13-wide rows are mostly tail). */
static T512 void pool2s1(const float *r0, const float *r1, float *d, int64_t n) {
  for (int64_t x = 0; x < n; x += 16) {
    __mmask16 k = n - x >= 16 ? 0xffff : (__mmask16)((1u << (n - x)) - 1);
    __m512 a = nv_max_nan(_mm512_maskz_loadu_ps(k, r0 + x),
                          _mm512_maskz_loadu_ps(k, r0 + x + 1));
    __m512 b = nv_max_nan(_mm512_maskz_loadu_ps(k, r1 + x),
                          _mm512_maskz_loadu_ps(k, r1 + x + 1));
    _mm512_mask_storeu_ps(d + x, k, nv_max_nan(a, b));
  }
}

const pv_cpu_pool2_fn pv_cpu_pool2s1_avx512 = pool2s1;

/* ResNet's and most CNNs' first pool, 3x3 with stride 2 (and stride 1):
 * the window columns of 16 outputs from vector loads, split into evens
 * and odds by permutes at stride 2, nine NaN-keeping maxima, one masked
 * store; the caller pads the rows with -inf. */
static T512 void pool3(const float *r0, const float *r1, const float *r2,
                       float *d, int64_t n, int s) {
  const float *r[3] = {r0, r1, r2};
  for (int64_t x = 0; x < n; x += 16) {
    __mmask16 k = n - x >= 16 ? 0xffff : (__mmask16)((1u << (n - x)) - 1);
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int i = 0; i < 3; i++) {
      __m512 a[3];
      pv_win3_512(r[i] + s * x, s, a);
      m = nv_max_nan(nv_max_nan(m, a[0]), nv_max_nan(a[1], a[2]));
    }
    _mm512_mask_storeu_ps(d + x, k, m);
  }
}

const pv_cpu_pool3_fn pv_cpu_pool3_avx512 = pool3;
#else
const pv_cpu_pool2_fn pv_cpu_pool2s1_avx512 = NULL;
const pv_cpu_pool3_fn pv_cpu_pool3_avx512 = NULL;
const pv_nv_ukr_fn pv_cpu_nv_ukr_avx512 = NULL;
const pv_nv_im2col_fn pv_cpu_nv_im2col_s1_avx512 = NULL;
const pv_nv_im2col_fn pv_cpu_nv_im2col_s2_avx512 = NULL;
const pv_cpu_pool2_fn pv_cpu_pool2_avx512 = NULL;
#endif
