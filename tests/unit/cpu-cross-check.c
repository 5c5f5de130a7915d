/* aarch64 check of the CPU kernels under qemu-user (cpu-cross-aarch64.sh):
 * dense GEMM on odd sizes vs a naive product, for each ISA compiled in. */
#include "cpu-impl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
static float fr(void) { return (float)rand() / RAND_MAX - 0.5f; }
int main(void) {
  int fails = 0, tested = 0;
  pv_cpu_pool *pool = pv_cpu_pool_new(2, false);
  for (const char *const *nm = pv_cpu_isa_names(); *nm; nm++) {
    const pv_cpu_isa *isa = pv_cpu_isa_get(*nm);
    if (!isa) continue;
    tested++;
    int Ms[] = {1, 17, 33}, Ks[] = {3, 19}, Ns[] = {1, 3, 17};
    for (int a = 0; a < 3; a++) for (int b = 0; b < 2; b++) for (int c = 0; c < 3; c++) {
      int M = Ms[a], K = Ks[b], N = Ns[c];
      float *w = malloc(4 * M * K), *x = malloc(4 * N * K), *y = malloc(4 * N * M);
      for (int i = 0; i < M * K; i++) w[i] = fr();
      for (int i = 0; i < N * K; i++) x[i] = fr();
      pv_cpu_mat *m = pv_cpu_mat_dense(w, M, K, K, 1, 1, 1.0f);
      pv_cpu_bsrc bs = {.x = x, .ld_k = 1, .ld_n = K};
      pv_cpu_out o = {.y = y, .ld_m = 1, .ld_n = M, .act = PV_ACT_RELU};
      pv_cpu_gemm(pool, isa, m, &bs, N, &o);
      for (int n = 0; n < N; n++) for (int i = 0; i < M; i++) {
        float s = 0;
        for (int k = 0; k < K; k++) s += w[i * K + k] * x[n * K + k];
        if (s < 0) s = 0;
        if (fabsf(s - y[n * M + i]) > 1e-4f) fails++;
      }
      pv_cpu_mat_free(m); free(w); free(x); free(y);
    }
    printf("%s: checked\n", isa->name);
  }
  pv_cpu_pool_free(pool);
  printf("%d ISAs, %d mismatches\n", tested, fails);
  return fails || !tested;
}
