/* Portable micro-kernel: one 16-row panel x 4 columns in plain C, written
 * so the compiler vectorises the inner loop for whatever the baseline ISA
 * is (SSE2, NEON). The fallback and the yardstick for the SIMD kernels. */
#include "cpu-impl.h"

#define NRC 4

static void ukr_c(const float *a, int64_t as, int np, const float *b,
                  int64_t lk, int64_t ln, int64_t k, int nr, float *tile) {
  (void)as;
  (void)np; /* np_max is 1 */
  float acc[NRC][PV_CPU_MR] = {{0}};
  for (int64_t p = 0; p < k; p++) {
    const float *ap = a + p * PV_CPU_MR;
    for (int j = 0; j < nr; j++) {
      float bj = b[p * lk + j * ln];
      for (int i = 0; i < PV_CPU_MR; i++) acc[j][i] += ap[i] * bj;
    }
  }
  for (int j = 0; j < nr; j++)
    for (int i = 0; i < PV_CPU_MR; i++) tile[j * PV_CPU_TILE_M + i] = acc[j][i];
}

/* The same reading a convolution in place: B(p, j) = b[off[p] + coff[j]]. */
static void ukr_cols_c(const float *a, int64_t as, int np, const float *b,
                       const int32_t *off, const int32_t *coff, int64_t k,
                       int nr, float *tile) {
  (void)as;
  (void)np;
  float acc[NRC][PV_CPU_MR] = {{0}};
  for (int64_t p = 0; p < k; p++) {
    const float *ap = a + p * PV_CPU_MR, *bp = b + off[p];
    for (int j = 0; j < nr; j++) {
      float bj = bp[coff[j]];
      for (int i = 0; i < PV_CPU_MR; i++) acc[j][i] += ap[i] * bj;
    }
  }
  for (int j = 0; j < nr; j++)
    for (int i = 0; i < PV_CPU_MR; i++) tile[j * PV_CPU_TILE_M + i] = acc[j][i];
}

const pv_cpu_isa pv_cpu_isa_c = {"c", NRC, 1, ukr_c, NULL, NULL, NULL,
                                 NULL, NULL, ukr_cols_c, NULL, 0};
