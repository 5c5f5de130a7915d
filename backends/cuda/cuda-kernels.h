/* Launchers of the CUDA backend's kernels (kernels.cu), callable from C.
 * Each enqueues on `stream` and returns the cudaError_t of the launch
 * (0 = success). Pointers are device memory. Output layout of the
 * matrix kernels: element (p, m) of a [P, M] product lands at
 * (p / S) * M * S + m * S + p % S, so S = 1 gives a row-major [P, M]
 * (Gemm) and S = OH*OW gives NCHW (Conv).
 */
#ifndef PV_CUDA_KERNELS_H
#define PV_CUDA_KERNELS_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* xp[p, j*kk + t] for output pixel p of N x OH x OW and permuted channel
 * j: the input channel in_ch[j] (identity when in_ch is NULL) at tap t,
 * zero in the padding. A Gemm is the 1x1 case with H = W = 1. */
int pvk_im2col(const float *x, float *xp, const int32_t *in_ch, int N, int C, int H, int W,
               int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
               cudaStream_t stream);

/* Pivoted blocks, all in one launch. xp: [P, Kp] in permuted channel
 * order (from pvk_im2col). tiles: n_tiles x {row group, first row, end
 * row} (rows relative to the group) for the tiled path; row_rg for the
 * per-row path. blk_c: per block {first, end} permuted channel. */
typedef struct pvk_pivot_args {
  const float *xp, *data;
  const int32_t *tiles, *row_rg, *row_off, *rg_blk, *blk_c, *out_row;
  const unsigned long long *blk_off;
  const float *bias; /* [M] in permuted row order */
  float *y;
  int n_tiles, M, kk, Kp, P, S, act;
  float alpha, beta;
  /* Every block row starts 16-byte aligned in data and in xp (offsets,
   * widths, first columns and Kp multiples of 4): float4 loads. */
  int vec4;
  int path; /* PVK_PATH_*; 0 = chosen by the batch size */
} pvk_pivot_args;
enum { PVK_PATH_AUTO = 0, PVK_PATH_ROWS, PVK_PATH_TILED32, PVK_PATH_TILED64, PVK_PATH_BLAS };
int pvk_pivot(const pvk_pivot_args *a, cudaStream_t stream);
/* Rows per tile of the tiled path (tiles are built by the host). */
#define PVK_TILE_ROWS 64

/* Pivoted blocks through cuBLAS, for uniform structures: every row group
 * has R rows and k blocks, every block Kb = channels*kk columns, and the
 * j-th block of row group r starts at data a0[j] + r*a_stride and at xp
 * column c0[j] + r*c_stride (block diagonal, and shifted-diagonal c-of-n
 * patterns). Then the layer is k strided-batched sgemms over the row
 * groups (one for block-diagonal layers) into yp [P, M] in permuted row
 * order, and one kernel adds the bias, applies the activation and
 * scatters rows through out_row. cuBLAS's tuned GEMM closes the gap of our
 * blocks kernel at high densities and large batches. */
#define PVK_BLAS_MAXK 16
typedef struct pvk_blas_args {
  int ok; /* the structure fits */
  int nr, k, R, Kb;
  long long a_stride, c_stride;
  long long a0[PVK_BLAS_MAXK], c0[PVK_BLAS_MAXK];
} pvk_blas_args;
/* Fill b from a pivot's tables (blocks sorted by row group, then column
 * group); b->ok = 0 when the structure is not uniform. Host only. */
void pvk_blas_plan(pvk_blas_args *b, int nr, const int32_t *row_off, const int32_t *col_off,
                   int n_blocks, const int32_t *blk_rg, const int32_t *blk_cg,
                   const unsigned long long *blk_off, int kk);
/* Whether the cuBLAS path is the faster one for P batch columns (from
 * batch 16, blocks of at least 128 rows). */
int pvk_blas_wanted(const pvk_blas_args *b, int P);
/* The layer through cuBLAS: a->xp, a->data, a->out_row, a->bias, a->y and
 * the shapes of a (not its tables); yp: scratch of P*M floats. Returns a
 * cudaError_t (cudaErrorUnknown when cuBLAS fails). */
int pvk_pivot_blas(const pvk_pivot_args *a, const pvk_blas_args *b, cublasHandle_t h, float *yp,
                   cudaStream_t stream);

/* y = act(y + bias[m]) over `total` elements in the layout above. */
int pvk_bias_act(float *y, const float *bias, int64_t total, int M, int S, int act, float a,
                 float b, cudaStream_t stream);

/* Direct convolution (any group count; used for grouped/depthwise). */
int pvk_conv(const float *x, const float *w, const float *bias, float *y, int N, int C, int H,
             int W, int M, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
             int dh, int dw, int group, int act, float a, float b, cudaStream_t stream);

int pvk_pool(const float *x, float *y, int NC, int H, int W, int OH, int OW, int kh, int kw,
             int sh, int sw, int ph, int pw, int ph1, int pw1, int is_max, int cip, int act,
             float a, float b, cudaStream_t stream);
int pvk_gap(const float *x, float *y, int NC, int HW, int act, float a, float b,
            cudaStream_t stream);
/* y = x op x2 with broadcasting over 4 dims: od = output dims, sa/sb =
 * element strides of x/x2 (0 where broadcast). op: 0 add 1 sub 2 mul 3 div. */
int pvk_binary(const float *x, const float *x2, float *y, const int64_t od[4],
               const int64_t sa[4], const int64_t sb[4], int op, int act, float a, float b,
               cudaStream_t stream);
int pvk_unary(const float *x, float *y, int64_t n, int act, float a, float b,
              cudaStream_t stream);
/* Copy one Concat input: outer x in_len into rows of out_len at off. */
int pvk_concat(const float *x, float *y, int64_t outer, int64_t in_len, int64_t out_len,
               int64_t off, cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
