/* aarch64 check of the CPU kernels under qemu-user (cpu-cross-aarch64.sh):
 * dense GEMM on odd sizes vs a naive product, and convolutions read in
 * place (pads, stride 2, bias), for each ISA compiled in. */
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
    /* 3x3 convolutions, [C][H][W] -> [M][OH][OW]: pads 1, strides 1, 2 */
    for (int st = 1; st <= 2; st++) {
      const int C = 5, H = 9, W = 7, M = 19, K = C * 9;
      const int OH = (H + 2 - 3) / st + 1, OW = (W + 2 - 3) / st + 1;
      float *w = malloc(4 * M * K), *x = malloc(4 * C * H * W),
            *y = malloc(4 * M * OH * OW), bias[19];
      for (int i = 0; i < M * K; i++) w[i] = fr();
      for (int i = 0; i < C * H * W; i++) x[i] = fr();
      for (int i = 0; i < M; i++) bias[i] = fr();
      pv_cpu_mat *m = pv_cpu_mat_dense(w, M, K, K, 1, 1, 1.0f);
      pv_cpu_bsrc bs = {.x = x, .conv = true, .H = H, .W = W, .kh = 3,
                        .kw = 3, .sh = st, .sw = st, .ph = 1, .pw = 1,
                        .dh = 1, .dw = 1, .OW = OW};
      pv_cpu_out o = {.y = y, .ld_m = OH * OW, .ld_n = 1, .bias = bias,
                      .act = PV_ACT_NONE};
      pv_cpu_gemm(pool, isa, m, &bs, OH * OW, &o);
      for (int i = 0; i < M; i++)
        for (int oy = 0; oy < OH; oy++)
          for (int ox = 0; ox < OW; ox++) {
            float s = bias[i];
            for (int c = 0; c < C; c++)
              for (int t = 0; t < 9; t++) {
                int iy = oy * st - 1 + t / 3, ix = ox * st - 1 + t % 3;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                  s += w[i * K + c * 9 + t] * x[(c * H + iy) * W + ix];
              }
            if (fabsf(s - y[(i * OH + oy) * OW + ox]) > 1e-4f) fails++;
          }
      pv_cpu_mat_free(m); free(w); free(x); free(y);
    }
    printf("%s: checked\n", isa->name);
  }
  pv_cpu_pool_free(pool);
  printf("%d ISAs, %d mismatches\n", tested, fails);
  return fails || !tested;
}
