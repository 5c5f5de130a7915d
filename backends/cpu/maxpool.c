/* 2-D max pooling, direct, one plane per work item. The window bounds are
 * clipped once per output row and tap, so the inner loop has no padding
 * tests. Padded taps are skipped; NaN propagates as in the reference ops
 * (once a window meets a NaN, its maximum is NaN). */
#include <math.h>

#include "cpu-impl.h"

typedef struct mp_job {
  const pv_cpu_pool2d *d;
  const float *x;
  float *y;
} mp_job;

/* Taps outer, output columns inner: the inner loop is branch-free and
 * vectorises (a data-dependent branch per tap mispredicts half the time). */
PV_CPU_CLONES static void mp_plane(void *arg, int64_t pl, int tid) {
  (void)tid;
  const mp_job *j = arg;
  const pv_cpu_pool2d *d = j->d;
  const float *x = j->x + pl * d->H * d->W;
  float *y = j->y + pl * d->OH * d->OW;
  for (int64_t oy = 0; oy < d->OH; oy++) {
    float *restrict yr = y + oy * d->OW;
    for (int64_t ox = 0; ox < d->OW; ox++) yr[ox] = -INFINITY;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sh - d->ph + ky * d->dh;
      if (iy < 0 || iy >= d->H) continue;
      const float *restrict xr = x + iy * d->W;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t off = kx * d->dw - d->pw;
        /* ox range where 0 <= ox*sw + off < W */
        int64_t lo = off < 0 ? (-off + d->sw - 1) / d->sw : 0;
        int64_t hi = d->W - off <= 0 ? 0 : (d->W - off + d->sw - 1) / d->sw;
        if (hi > d->OW) hi = d->OW;
        if (d->sw == 1) {
          for (int64_t ox = lo; ox < hi; ox++) {
            float v = xr[ox + off];
            yr[ox] = v > yr[ox] || v != v ? v : yr[ox];
          }
        } else {
          for (int64_t ox = lo; ox < hi; ox++) {
            float v = xr[ox * d->sw + off];
            yr[ox] = v > yr[ox] || v != v ? v : yr[ox];
          }
        }
      }
    }
  }
}

/* The 2x2 window without pads or dilation (darknet's and most CNNs'
 * pools), four loads and three maxima per output, NaN kept, with no
 * per-tap loop: on a 13x13 plane the general loop's bookkeeping costs
 * more than the maxima. */
static inline float max_nan(float a, float b) {
  return a > b || a != a ? a : b;
}

#if defined(__x86_64__)
#include <immintrin.h>
#define T512MP __attribute__((target("avx512f")))

/* max with NaN kept: vmaxps returns its second operand when either is NaN. */
static inline T512MP __m512 max_nan512(__m512 a, __m512 b) {
  __mmask16 na = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q);
  return _mm512_mask_mov_ps(_mm512_max_ps(a, b), na, a);
}

/* A stride-2 row, 16 outputs from 32 floats of each input row: the two
 * rows' maxima, then evens against odds after one permute each (the
 * compiler kept the scalar loop below scalar and branchy: ~6 ns an
 * output). Returns the outputs written: all of them. */
static T512MP int64_t row2x2_512(const float *r0, const float *r1, float *yr,
                                 int64_t ow) {
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                       22, 24, 26, 28, 30);
  const __m512i od = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21,
                                       23, 25, 27, 29, 31);
  int64_t ox = 0;
  for (; ox + 16 <= ow; ox += 16) {
    __m512 v0 = max_nan512(_mm512_loadu_ps(r0 + 2 * ox), _mm512_loadu_ps(r1 + 2 * ox));
    __m512 v1 = max_nan512(_mm512_loadu_ps(r0 + 2 * ox + 16),
                           _mm512_loadu_ps(r1 + 2 * ox + 16));
    __m512 e = _mm512_permutex2var_ps(v0, ev, v1);
    __m512 o = _mm512_permutex2var_ps(v0, od, v1);
    _mm512_storeu_ps(yr + ox, max_nan512(e, o));
  }
  if (ox < ow) {
    /* The last n < 16 outputs (most rows of small planes are shorter than
     * 16) with masked loads and store: 2n inputs of each row. */
    int64_t n = ow - ox;
    __mmask16 m0 = (__mmask16)(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
    __mmask16 m1 = (__mmask16)(n > 8 ? (1u << (2 * n - 16)) - 1 : 0);
    __m512 v0 = max_nan512(_mm512_maskz_loadu_ps(m0, r0 + 2 * ox),
                           _mm512_maskz_loadu_ps(m0, r1 + 2 * ox));
    __m512 v1 = max_nan512(_mm512_maskz_loadu_ps(m1, r0 + 2 * ox + 16),
                           _mm512_maskz_loadu_ps(m1, r1 + 2 * ox + 16));
    __m512 e = _mm512_permutex2var_ps(v0, ev, v1);
    __m512 o = _mm512_permutex2var_ps(v0, od, v1);
    _mm512_mask_storeu_ps(yr + ox, (__mmask16)((1u << n) - 1), max_nan512(e, o));
    ox = ow;
  }
  return ox;
}
static bool mp_avx512;
__attribute__((constructor)) static void mp_init(void) {
  mp_avx512 = __builtin_cpu_supports("avx512f");
}
#endif

PV_CPU_CLONES static void mp_plane_2x2(void *arg, int64_t pl, int tid) {
  (void)tid;
  const mp_job *j = arg;
  const pv_cpu_pool2d *d = j->d;
  const float *x = j->x + pl * d->H * d->W;
  float *y = j->y + pl * d->OH * d->OW;
  for (int64_t oy = 0; oy < d->OH; oy++) {
    const float *restrict r0 = x + oy * d->sh * d->W, *restrict r1 = r0 + d->W;
    float *restrict yr = y + oy * d->OW;
    if (d->sw == 2) {
      int64_t ox = 0;
#if defined(__x86_64__)
      /* Reads stop at 2*OW <= W: inside the row. */
      if (mp_avx512) ox = row2x2_512(r0, r1, yr, d->OW);
#endif
      for (; ox < d->OW; ox++)
        yr[ox] = max_nan(max_nan(r0[2 * ox], r0[2 * ox + 1]),
                         max_nan(r1[2 * ox], r1[2 * ox + 1]));
    } else {
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = max_nan(max_nan(r0[ox * d->sw], r0[ox * d->sw + 1]),
                         max_nan(r1[ox * d->sw], r1[ox * d->sw + 1]));
    }
  }
}

void pv_cpu_maxpool(pv_cpu_pool *pool, const pv_cpu_pool2d *d, const float *x,
                    float *y) {
  mp_job j = {d, x, y};
  /* A plane is little work: keep small layers on fewer threads. */
  int64_t work = d->planes * d->OH * d->OW * d->kh * d->kw;
  int use = (int)(work / 65536) + 1;
  /* The windows of the last row and column lie inside the input. */
  bool k2 = d->kh == 2 && d->kw == 2 && d->dh == 1 && d->dw == 1 && !d->ph &&
            !d->pw && (d->OH - 1) * d->sh + 2 <= d->H &&
            (d->OW - 1) * d->sw + 2 <= d->W;
  pv_cpu_pool_run_max(pool, d->planes, use, k2 ? mp_plane_2x2 : mp_plane, &j);
}
