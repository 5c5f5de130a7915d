/* AVX-512 helpers shared by the AVX-512 kernel files: fused activations
 * (ReLU, LeakyRelu and Clip in 16- and 8-float vectors; any other
 * activation is applied per element with pv_cpu_act1, pv_cpu_act_vec says
 * which) and the 3-wide window columns of the 3x3 direct kernels.
 * Include only under __x86_64__. */
#ifndef PV_CPU_ACT_AVX512_H
#define PV_CPU_ACT_AVX512_H

#include <immintrin.h>

#include "cpu-impl.h"

#define PV_T512 __attribute__((target("avx512f,avx512vl,avx2")))

/* Whether act has a vector form here (none counts). */
static inline bool pv_cpu_act_vec(pv_act act) {
  return act == PV_ACT_NONE || act == PV_ACT_RELU || act == PV_ACT_LEAKY ||
         act == PV_ACT_CLIP;
}

/* va = alpha, vb = beta broadcast; other activations return v. */
static inline PV_T512 __m512 pv_act512(__m512 v, pv_act act, __m512 va,
                                       __m512 vb) {
  const __m512 zero = _mm512_setzero_ps();
  switch (act) {
  case PV_ACT_RELU: return _mm512_max_ps(v, zero);
  case PV_ACT_LEAKY:
    return _mm512_mask_mul_ps(v, _mm512_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, va);
  /* max/min return their second operand when either is NaN: v second in
   * the max keeps a NaN (the reference's min(max(v, lo), hi) does), and
   * hi still wins when lo > hi. */
  case PV_ACT_CLIP: return _mm512_min_ps(vb, _mm512_max_ps(va, v));
  default: return v;
  }
}

static inline PV_T512 __m256 pv_act256(__m256 v, pv_act act, __m256 va,
                                       __m256 vb) {
  const __m256 zero = _mm256_setzero_ps();
  switch (act) {
  case PV_ACT_RELU: return _mm256_max_ps(v, zero);
  case PV_ACT_LEAKY:
    return _mm256_mask_mul_ps(v, _mm256_cmp_ps_mask(v, zero, _CMP_LT_OQ), v, va);
  case PV_ACT_CLIP: return _mm256_min_ps(vb, _mm256_max_ps(va, v));
  default: return v;
  }
}

/* The three columns of a 3-wide window for 16 outputs at stride s (1 or
 * 2) of a padded row p: a[k][i] = p[s*i + k]. Stride 2 splits two loads
 * into evens and odds by permutes. Reads up to p[s*16 + 17]: the caller's
 * rows have the slack. Shared by the 3x3 depthwise convolution and the
 * 3x3 MaxPool. */
static inline __attribute__((always_inline)) PV_T512 void
pv_win3_512(const float *p, int s, __m512 a[3]) {
  if (s == 1) {
    a[0] = _mm512_loadu_ps(p);
    a[1] = _mm512_loadu_ps(p + 1);
    a[2] = _mm512_loadu_ps(p + 2);
    return;
  }
  const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20,
                                       22, 24, 26, 28, 30);
  const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
  __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
  __m512 u0 = _mm512_loadu_ps(p + 2), u1 = _mm512_loadu_ps(p + 18);
  a[0] = _mm512_permutex2var_ps(v0, ev, v1);
  a[1] = _mm512_permutex2var_ps(v0, od, v1);
  a[2] = _mm512_permutex2var_ps(u0, ev, u1);
}

#endif
