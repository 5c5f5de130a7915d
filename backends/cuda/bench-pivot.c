/* Pivoted-kernel benchmark: the CUDA backend's pivoted layer (gather +
 * all blocks in one launch) against cuBLAS sgemm on the dense matrix of
 * the same shape, M = K in {4096, 1024}, batch 1, 32, 256, densities
 * 1/n for n = 1, 2, 4, 8, 16 (block diagonal, random permutations).
 *
 * Times are the median of 50 runs, each bracketed by cudaEvents, in one
 * process, so every speedup is a ratio measured on the same GPU at the
 * same moment. It also checks the pivoted result against cuBLAS on the
 * equivalent dense (zero-filled) matrix. Standalone: needs only the CUDA
 * runtime, cuBLAS and kernels.cu, no libpivot.
 *
 * Usage: pivot-bench-cuda [reps]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cuda-kernels.h"

#define CK(x)                                                                      \
  do {                                                                             \
    cudaError_t e_ = (x);                                                          \
    if (e_ != cudaSuccess) {                                                       \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      exit(1);                                                                     \
    }                                                                              \
  } while (0)

static unsigned long long rs = 0x9e3779b97f4a7c15ull;
static float frand(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return (float)((rs >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

static void *dup_to_device(const void *src, size_t bytes) {
  void *d;
  CK(cudaMalloc(&d, bytes ? bytes : 4));
  if (bytes) CK(cudaMemcpy(d, src, bytes, cudaMemcpyHostToDevice));
  return d;
}

/* A pivoted M x K layer with n diagonal blocks, uploaded. */
typedef struct layer {
  pvk_pivot_args a;
  int32_t *in_ch;
  float *dense_d; /* the equivalent dense matrix on the device */
  pvk_blas_args b; /* the cuBLAS path (block diagonal: always uniform) */
  float *yp;       /* its scratch, for batches up to MAX_P */
  void *frees[10];
} layer;

#define MAX_P 256
static void make_layer(layer *L, int M, int K, int n) {
  memset(L, 0, sizeof *L);
  int32_t *pr = malloc(sizeof(int32_t) * M), *pc = malloc(sizeof(int32_t) * K);
  for (int i = 0; i < M; i++) pr[i] = i;
  for (int i = 0; i < K; i++) pc[i] = i;
  for (int i = M - 1; i > 0; i--) {
    int j = (int)((frand() + 1) * 0.5f * i), t = pr[i];
    pr[i] = pr[j], pr[j] = t;
  }
  for (int i = K - 1; i > 0; i--) {
    int j = (int)((frand() + 1) * 0.5f * i), t = pc[i];
    pc[i] = pc[j], pc[j] = t;
  }
  int mb = M / n, kb = K / n;
  size_t len = (size_t)n * mb * kb;
  float *data = malloc(sizeof(float) * len), *dense = calloc((size_t)M * K, sizeof(float));
  for (size_t i = 0; i < len; i++) data[i] = frand() * 0.05f;
  int ntiles = n * ((mb + PVK_TILE_ROWS - 1) / PVK_TILE_ROWS);
  int32_t *tiles = malloc(sizeof(int32_t) * 3 * ntiles), *row_rg = malloc(sizeof(int32_t) * M);
  int32_t *row_off = malloc(sizeof(int32_t) * (n + 1)), *rg_blk = malloc(sizeof(int32_t) * (n + 1));
  int32_t *blk_c = malloc(sizeof(int32_t) * 2 * n);
  unsigned long long *blk_off = malloc(sizeof *blk_off * n);
  float *bias = calloc(M, sizeof(float));
  int t = 0;
  for (int g = 0; g < n; g++) {
    row_off[g] = g * mb;
    rg_blk[g] = g;
    blk_c[2 * g] = g * kb, blk_c[2 * g + 1] = (g + 1) * kb;
    blk_off[g] = (unsigned long long)g * mb * kb;
    for (int r = 0; r < mb; r += PVK_TILE_ROWS) {
      tiles[3 * t] = g, tiles[3 * t + 1] = r;
      tiles[3 * t + 2] = r + PVK_TILE_ROWS < mb ? r + PVK_TILE_ROWS : mb;
      t++;
    }
    for (int i = 0; i < mb; i++) {
      row_rg[g * mb + i] = g;
      for (int j = 0; j < kb; j++)
        dense[(size_t)pr[g * mb + i] * K + pc[g * kb + j]] =
            data[blk_off[g] + (size_t)i * kb + j];
    }
  }
  row_off[n] = M, rg_blk[n] = n;
  {
    int32_t *col_off = malloc(sizeof(int32_t) * (n + 1)), *bg = malloc(sizeof(int32_t) * n);
    for (int g = 0; g <= n; g++) col_off[g] = g * kb;
    for (int g = 0; g < n; g++) bg[g] = g;
    pvk_blas_plan(&L->b, n, row_off, col_off, n, bg, bg, blk_off, 1);
    free(col_off), free(bg);
    CK(cudaMalloc((void **)&L->yp, sizeof(float) * MAX_P * M));
  }
  L->a.data = L->frees[0] = dup_to_device(data, sizeof(float) * len);
  L->a.tiles = L->frees[1] = dup_to_device(tiles, sizeof(int32_t) * 3 * ntiles);
  L->a.row_rg = L->frees[2] = dup_to_device(row_rg, sizeof(int32_t) * M);
  L->a.row_off = L->frees[3] = dup_to_device(row_off, sizeof(int32_t) * (n + 1));
  L->a.rg_blk = L->frees[4] = dup_to_device(rg_blk, sizeof(int32_t) * (n + 1));
  L->a.blk_c = L->frees[5] = dup_to_device(blk_c, sizeof(int32_t) * 2 * n);
  L->a.blk_off = L->frees[6] = dup_to_device(blk_off, sizeof *blk_off * n);
  L->a.out_row = L->frees[7] = dup_to_device(pr, sizeof(int32_t) * M);
  L->a.bias = L->frees[8] = dup_to_device(bias, sizeof(float) * M);
  L->in_ch = L->frees[9] = dup_to_device(pc, sizeof(int32_t) * K);
  L->dense_d = dup_to_device(dense, sizeof(float) * M * K);
  L->a.n_tiles = ntiles;
  L->a.M = M, L->a.kk = 1, L->a.Kp = K, L->a.S = 1;
  L->a.vec4 = (mb % 4 == 0 && kb % 4 == 0);
  free(pr), free(pc), free(data), free(dense), free(tiles), free(row_rg), free(row_off);
  free(rg_blk), free(blk_c), free(blk_off), free(bias);
}

static void free_layer(layer *L) {
  for (int i = 0; i < 10; i++) cudaFree(L->frees[i]);
  cudaFree(L->dense_d);
  cudaFree(L->yp);
}

typedef enum { RUN_DENSE, RUN_PIVOT, RUN_PIVOT_KERNEL, RUN_GATHER } what;

static void run_once(what w, cublasHandle_t h, cudaStream_t s, const float *W, layer *L,
                     const float *x, float *xp, float *y, int M, int K, int P) {
  const float one = 1, zero = 0;
  if (w == RUN_DENSE) {
    cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, M, P, K, &one, W, K, x, K, &zero, y, M);
    return;
  }
  if (w == RUN_PIVOT || w == RUN_GATHER)
    pvk_im2col(x, xp, L->in_ch, P, K, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, s);
  if (w == RUN_GATHER) return;
  L->a.xp = xp, L->a.y = y, L->a.P = P;
  /* As the backend chooses (path 0), or the path asked for. */
  if (L->a.path == PVK_PATH_BLAS || (!L->a.path && pvk_blas_wanted(&L->b, P))) {
    if (pvk_pivot_blas(&L->a, &L->b, h, L->yp, s)) fprintf(stderr, "cuBLAS path failed\n");
  } else {
    pvk_pivot(&L->a, s);
  }
}

static float time_median(int reps, what w, cublasHandle_t h, cudaStream_t s, const float *W,
                         layer *L, const float *x, float *xp, float *y, int M, int K, int P) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  float *t = malloc(sizeof(float) * reps);
  for (int i = 0; i < 5; i++) run_once(w, h, s, W, L, x, xp, y, M, K, P);
  for (int i = 0; i < reps; i++) {
    CK(cudaEventRecord(a, s));
    run_once(w, h, s, W, L, x, xp, y, M, K, P);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    CK(cudaEventElapsedTime(&t[i], a, b));
  }
  CK(cudaGetLastError());
  qsort(t, reps, sizeof(float), cmp_float);
  float med = t[reps / 2] * 1000.0f; /* us */
  free(t);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return med;
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? atoi(argv[1]) : 50;
  if (reps < 1) reps = 50;
  int ndev = 0;
  if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
    fprintf(stderr, "SKIP: no CUDA device\n");
    return 77;
  }
  struct cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s (sm_%d%d, %d SMs, %.0f GiB)\n", prop.name, prop.major, prop.minor,
         prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
  cudaStream_t s;
  CK(cudaStreamCreate(&s));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "cuBLAS init failed\n");
    return 1;
  }
  cublasSetStream(h, s);
  printf("times: median of %d, cudaEvent, fp32; pivot = gather + blocks kernel; "
         "linearity = speedup / n\n", reps);
  printf("pivot_us: gather + blocks as the backend runs them (path by batch size); rows/t32/t64/\n"
         "blas: the blocks alone on each path (warp per row; 64-row tiles x 32 or 64 batch\n"
         "columns; strided-batched cuBLAS sgemm + scatter). blas %s\n",
         "is chosen from batch 16 up for blocks of >= 128 rows");
  printf("%5s %5s %4s %9s %9s %9s %9s %9s %9s %9s %8s %7s %9s\n", "M=K", "batch", "1/n",
         "dense_us", "pivot_us", "gather_us", "rows_us", "t32_us", "t64_us", "blas_us",
         "speedup", "linear", "relerr");
  int sizes[] = {4096, 1024}, batches[] = {1, 32, 256}, ns[] = {1, 2, 4, 8, 16};
  int bad = 0;
  for (int si = 0; si < 2; si++) {
    int M = sizes[si], K = sizes[si];
    float *Wh = malloc(sizeof(float) * M * K);
    for (size_t i = 0; i < (size_t)M * K; i++) Wh[i] = frand() * 0.05f;
    float *W = dup_to_device(Wh, sizeof(float) * M * K);
    free(Wh);
    layer Ls[5];
    for (int ni = 0; ni < 5; ni++) make_layer(&Ls[ni], M, K, ns[ni]);
    for (int bi = 0; bi < 3; bi++) {
      int P = batches[bi];
      float *xh = malloc(sizeof(float) * P * K);
      for (size_t i = 0; i < (size_t)P * K; i++) xh[i] = frand();
      float *x = dup_to_device(xh, sizeof(float) * P * K), *xp, *y, *yr;
      CK(cudaMalloc((void **)&xp, sizeof(float) * P * K));
      CK(cudaMalloc((void **)&y, sizeof(float) * P * M));
      CK(cudaMalloc((void **)&yr, sizeof(float) * P * M));
      float td = time_median(reps, RUN_DENSE, h, s, W, NULL, x, xp, y, M, K, P);
      for (int ni = 0; ni < 5; ni++) {
        layer *L = &Ls[ni];
        float tp = time_median(reps, RUN_PIVOT, h, s, W, L, x, xp, y, M, K, P);
        float tg = time_median(reps, RUN_GATHER, h, s, W, L, x, xp, y, M, K, P);
        float tk[4];
        for (int path = 1; path <= 4; path++) {
          L->a.path = path;
          tk[path - 1] = time_median(reps, RUN_PIVOT_KERNEL, h, s, W, L, x, xp, y, M, K, P);
        }
        L->a.path = 0;
        /* Check every path against cuBLAS on the zero-filled dense matrix. */
        run_once(RUN_DENSE, h, s, L->dense_d, L, x, xp, yr, M, K, P);
        float *a = malloc(sizeof(float) * P * M), *b = malloc(sizeof(float) * P * M);
        CK(cudaStreamSynchronize(s));
        CK(cudaMemcpy(b, yr, sizeof(float) * P * M, cudaMemcpyDeviceToHost));
        double e = 0, m = 1e-30;
        for (size_t i = 0; i < (size_t)P * M; i++)
          if (fabs(b[i]) > m) m = fabs(b[i]);
        for (int path = 0; path <= 4; path++) {
          L->a.path = path;
          CK(cudaMemset(y, 0, sizeof(float) * P * M));
          run_once(RUN_PIVOT, h, s, W, L, x, xp, y, M, K, P);
          CK(cudaStreamSynchronize(s));
          CK(cudaMemcpy(a, y, sizeof(float) * P * M, cudaMemcpyDeviceToHost));
          for (size_t i = 0; i < (size_t)P * M; i++) {
            double d = fabs((double)a[i] - b[i]) / m;
            if (!(d <= e)) e = d;
          }
        }
        L->a.path = 0;
        if (!(e < 1e-4)) bad++;
        free(a), free(b);
        float sp = td / tp;
        printf("%5d %5d %4d %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %8.2f %7.2f %9.1e%s\n", M,
               P, ns[ni], td, tp, tg, tk[0], tk[1], tk[2], tk[3], sp, sp / ns[ni], e,
               e < 1e-4 ? "" : "  MISMATCH");
        fflush(stdout);
      }
      cudaFree(x), cudaFree(xp), cudaFree(y), cudaFree(yr);
      free(xh);
    }
    for (int ni = 0; ni < 5; ni++) free_layer(&Ls[ni]);
    cudaFree(W);
  }
  cublasDestroy(h);
  cudaStreamDestroy(s);
  if (bad) printf("%d configuration(s) disagree with cuBLAS\n", bad);
  return bad ? 1 : 0;
}
