/* AVX2+FMA micro-kernel: one 16-row panel (two ymm) x 6 columns, twelve
 * accumulators out of sixteen registers. */
#include "cpu-impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T256 __attribute__((target("avx2,fma")))
#define NR256 6

static inline __attribute__((always_inline)) T256 void
k256(const float *a, const float *b, int64_t lk, int64_t ln, int64_t k,
     float *tile, const int NR) {
  __m256 c0[NR256], c1[NR256];
  const float *bc[NR256];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) bc[j] = b + j * ln;
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    c0[j] = _mm256_setzero_ps();
    c1[j] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < k; p++) {
    __m256 x0 = _mm256_load_ps(a + p * PV_CPU_MR);
    __m256 x1 = _mm256_load_ps(a + p * PV_CPU_MR + 8);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      __m256 bj = _mm256_broadcast_ss(bc[j] + p * lk);
      c0[j] = _mm256_fmadd_ps(x0, bj, c0[j]);
      c1[j] = _mm256_fmadd_ps(x1, bj, c1[j]);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M, c0[j]);
    _mm256_storeu_ps(tile + j * PV_CPU_TILE_M + 8, c1[j]);
  }
}

#define U256(NR)                                                          \
  static T256 void u256_##NR(const float *a, const float *b, int64_t lk,  \
                             int64_t ln, int64_t k, float *t) {           \
    k256(a, b, lk, ln, k, t, NR);                                         \
  }
U256(1) U256(2) U256(3) U256(4) U256(5) U256(6)

typedef void (*ukr_fixed)(const float *, const float *, int64_t, int64_t,
                          int64_t, float *);
static const ukr_fixed tab256[NR256] = {u256_1, u256_2, u256_3,
                                        u256_4, u256_5, u256_6};

static void ukr_avx2(const float *a, int64_t as, int np, const float *b,
                     int64_t lk, int64_t ln, int64_t k, int nr, float *tile) {
  (void)as;
  (void)np; /* np_max is 1 */
  tab256[nr - 1](a, b, lk, ln, k, tile);
}

const pv_cpu_isa pv_cpu_isa_avx2 = {"avx2", NR256, 1, ukr_avx2, NULL, NULL, NULL, NULL, NULL};
#else
const pv_cpu_isa pv_cpu_isa_avx2 = {"avx2", 0, 0, NULL, NULL, NULL, NULL, NULL, NULL};
#endif
