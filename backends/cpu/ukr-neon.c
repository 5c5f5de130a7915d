/* NEON micro-kernel (aarch64): one 16-row panel (four q registers) x 4
 * columns, sixteen accumulators out of thirty-two registers. */
#include "cpu-impl.h"

#if defined(__aarch64__)
#include <arm_neon.h>

#define NRN 4

static inline __attribute__((always_inline)) void
kneon(const float *a, const float *b, int64_t lk, int64_t ln, int64_t k,
      float *tile, const int NR) {
  float32x4_t c[NRN][4];
  const float *bc[NRN];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    bc[j] = b + j * ln;
    for (int q = 0; q < 4; q++) c[j][q] = vdupq_n_f32(0);
  }
  for (int64_t p = 0; p < k; p++) {
    float32x4_t x[4];
    _Pragma("GCC unroll 4")
    for (int q = 0; q < 4; q++) x[q] = vld1q_f32(a + p * PV_CPU_MR + 4 * q);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      float bj = bc[j][p * lk];
      _Pragma("GCC unroll 4")
      for (int q = 0; q < 4; q++) c[j][q] = vfmaq_n_f32(c[j][q], x[q], bj);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++)
    for (int q = 0; q < 4; q++) vst1q_f32(tile + j * PV_CPU_TILE_M + 4 * q, c[j][q]);
}

#define UNEON(NR)                                                          \
  static void uneon_##NR(const float *a, const float *b, int64_t lk,       \
                         int64_t ln, int64_t k, float *t) {                \
    kneon(a, b, lk, ln, k, t, NR);                                         \
  }
UNEON(1) UNEON(2) UNEON(3) UNEON(4)

typedef void (*ukr_fixed)(const float *, const float *, int64_t, int64_t,
                          int64_t, float *);
static const ukr_fixed tabn[NRN] = {uneon_1, uneon_2, uneon_3, uneon_4};

static void ukr_neon(const float *a, int64_t as, int np, const float *b,
                     int64_t lk, int64_t ln, int64_t k, int nr, float *tile) {
  (void)as;
  (void)np; /* np_max is 1 */
  tabn[nr - 1](a, b, lk, ln, k, tile);
}

/* The same reading a convolution in place: B(p, j) = b[off[p] + coff[j]]. */
static inline __attribute__((always_inline)) void
kneonc(const float *a, const float *b, const int32_t *off, const int32_t *coff,
       int64_t k, float *tile, const int NR) {
  float32x4_t c[NRN][4];
  const float *bc[NRN];
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++) {
    bc[j] = b + coff[j];
    for (int q = 0; q < 4; q++) c[j][q] = vdupq_n_f32(0);
  }
  for (int64_t p = 0; p < k; p++) {
    float32x4_t x[4];
    const int64_t o = off[p];
    _Pragma("GCC unroll 4")
    for (int q = 0; q < 4; q++) x[q] = vld1q_f32(a + p * PV_CPU_MR + 4 * q);
    _Pragma("GCC unroll 16")
    for (int j = 0; j < NR; j++) {
      float bj = bc[j][o];
      _Pragma("GCC unroll 4")
      for (int q = 0; q < 4; q++) c[j][q] = vfmaq_n_f32(c[j][q], x[q], bj);
    }
  }
  _Pragma("GCC unroll 16")
  for (int j = 0; j < NR; j++)
    for (int q = 0; q < 4; q++) vst1q_f32(tile + j * PV_CPU_TILE_M + 4 * q, c[j][q]);
}

#define UNEONC(NR)                                                         \
  static void uneonc_##NR(const float *a, const float *b, const int32_t *off, \
                          const int32_t *coff, int64_t k, float *t) {      \
    kneonc(a, b, off, coff, k, t, NR);                                     \
  }
UNEONC(1) UNEONC(2) UNEONC(3) UNEONC(4)

typedef void (*ukrc_fixed)(const float *, const float *, const int32_t *,
                           const int32_t *, int64_t, float *);
static const ukrc_fixed tabnc[NRN] = {uneonc_1, uneonc_2, uneonc_3, uneonc_4};

static void ukr_cols_neon(const float *a, int64_t as, int np, const float *b,
                          const int32_t *off, const int32_t *coff, int64_t k,
                          int nr, float *tile) {
  (void)as;
  (void)np;
  tabnc[nr - 1](a, b, off, coff, k, tile);
}

const pv_cpu_isa pv_cpu_isa_neon = {"neon", NRN, 1, ukr_neon, NULL, NULL, NULL,
                                    NULL, NULL, ukr_cols_neon, NULL, 0};
#else
const pv_cpu_isa pv_cpu_isa_neon = {"neon", 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0};
#endif
