// Kernels of the CUDA backend (see cuda-kernels.h). The pivoted layer is
// one launch: a thread block per (row tile of a row group, batch tile)
// walks every block of its row group, so all blocks run together and the
// balanced blocks keep the thread blocks equally loaded.
#include "cuda-kernels.h"

#include <cuda_runtime.h>
#include <string.h>

static __device__ __forceinline__ float act_f(float v, int act, float a, float b) {
  switch (act) {
  case 1: return v > 0.f ? v : 0.f;
  case 2: return v < 0.f ? v * a : v;
  case 3: return fminf(fmaxf(v, a), b);
  case 4: return 1.f / (1.f + expf(-v));
  case 5: return tanhf(v);
  default: return v;
  }
}

static unsigned blocks_for(int64_t n, int t) { return (unsigned)((n + t - 1) / t); }

__global__ void k_im2col(const float *__restrict__ x, float *__restrict__ xp,
                         const int32_t *__restrict__ in_ch, int C, int H, int W, int OH, int OW,
                         int kh, int kw, int sh, int sw, int ph, int pw, int dh, int dw,
                         int64_t total) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int kk = kh * kw, Kp = C * kk;
  int k = (int)(i % Kp);
  int64_t p = i / Kp;
  int j = k / kk, t = k % kk, ki = t / kw, kj = t % kw;
  int ow = (int)(p % OW), oh = (int)((p / OW) % OH);
  int64_t n = p / ((int64_t)OW * OH);
  int c = in_ch ? in_ch[j] : j;
  int ih = oh * sh - ph + ki * dh, iw = ow * sw - pw + kj * dw;
  xp[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[((n * C + c) * H + ih) * W + iw] : 0.f;
}

extern "C" int pvk_im2col(const float *x, float *xp, const int32_t *in_ch, int N, int C, int H,
                          int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                          int dh, int dw, cudaStream_t s) {
  int64_t total = (int64_t)N * OH * OW * C * kh * kw;
  if (total == 0) return 0;
  k_im2col<<<blocks_for(total, 256), 256, 0, s>>>(x, xp, in_ch, C, H, W, OH, OW, kh, kw, sh, sw,
                                                  ph, pw, dh, dw, total);
  return (int)cudaGetLastError();
}

// Tiled path: 64 rows x BN batch columns per thread block of 256 threads;
// thread (tx, ty) owns rows tx + 16*i and columns ty*TN + j, so stores of
// consecutive rows coalesce when the output is in natural order.
template <int BN>
__global__ void __launch_bounds__(256)
    k_pivot_tiled(const float *__restrict__ xp, const float *__restrict__ data,
                  const int32_t *__restrict__ tiles, const int32_t *__restrict__ row_off,
                  const int32_t *__restrict__ rg_blk, const int32_t *__restrict__ blk_c,
                  const unsigned long long *__restrict__ blk_off,
                  const int32_t *__restrict__ out_row, const float *__restrict__ bias,
                  float *__restrict__ y, int M, int kk, int Kp, int P, int S, int act, float a,
                  float b) {
  constexpr int BM = PVK_TILE_ROWS, BK = 16, TN = BN / 16;
  __shared__ float Ws[BK][BM + 1];
  __shared__ float Xs[BK][BN + 1];
  const int rg = tiles[3 * blockIdx.x], tr0 = tiles[3 * blockIdx.x + 1],
            tr1 = tiles[3 * blockIdx.x + 2];
  const int g0 = row_off[rg];
  const int p0 = blockIdx.y * BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][TN];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) acc[i][j] = 0.f;
  for (int bi = rg_blk[rg]; bi < rg_blk[rg + 1]; bi++) {
    const int c0 = blk_c[2 * bi] * kk, wdt = (blk_c[2 * bi + 1] - blk_c[2 * bi]) * kk;
    const float *blk = data + blk_off[bi];
    for (int k0 = 0; k0 < wdt; k0 += BK) {
      for (int e = threadIdx.x; e < BM * BK; e += 256) {
        int r = e / BK, k = e % BK, row = tr0 + r;
        Ws[k][r] = (row < tr1 && k0 + k < wdt) ? blk[(size_t)row * wdt + k0 + k] : 0.f;
      }
      for (int e = threadIdx.x; e < BN * BK; e += 256) {
        int n = e / BK, k = e % BK, p = p0 + n;
        Xs[k][n] = (p < P && k0 + k < wdt) ? xp[(size_t)p * Kp + c0 + k0 + k] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int k = 0; k < BK; k++) {
        float wv[4], xv[TN];
#pragma unroll
        for (int i = 0; i < 4; i++) wv[i] = Ws[k][tx + 16 * i];
#pragma unroll
        for (int j = 0; j < TN; j++) xv[j] = Xs[k][ty * TN + j];
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
          for (int j = 0; j < TN; j++) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
      }
      __syncthreads();
    }
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    int row = tr0 + tx + 16 * i;
    if (row >= tr1) continue;
    int pr = g0 + row, orow = out_row[pr];
    float bv = bias[pr];
#pragma unroll
    for (int j = 0; j < TN; j++) {
      int p = p0 + ty * TN + j;
      if (p < P)
        y[(size_t)(p / S) * M * S + (size_t)orow * S + p % S] = act_f(acc[i][j] + bv, act, a, b);
    }
  }
}

// Per-row path for small batches (bandwidth-bound): a warp per weight row
// reads it once, coalesced (float4 when every block row is 16-byte
// aligned), for up to 8 batch rows.
template <bool VEC>
__global__ void k_pivot_rows(const float *__restrict__ xp, const float *__restrict__ data,
                             const int32_t *__restrict__ row_rg, const int32_t *__restrict__ row_off,
                             const int32_t *__restrict__ rg_blk, const int32_t *__restrict__ blk_c,
                             const unsigned long long *__restrict__ blk_off,
                             const int32_t *__restrict__ out_row, const float *__restrict__ bias,
                             float *__restrict__ y, int M, int kk, int Kp, int P, int S, int act,
                             float a, float b) {
  const int warp = (int)(((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32);
  const int lane = threadIdx.x % 32;
  const int p0 = blockIdx.y * 8;
  if (warp >= M) return;
  const int np = min(8, P - p0);
  const int rg = row_rg[warp], r = warp - row_off[rg];
  float acc[8];
#pragma unroll
  for (int j = 0; j < 8; j++) acc[j] = 0.f;
  for (int bi = rg_blk[rg]; bi < rg_blk[rg + 1]; bi++) {
    const int c0 = blk_c[2 * bi] * kk, wdt = (blk_c[2 * bi + 1] - blk_c[2 * bi]) * kk;
    const float *w = data + blk_off[bi] + (size_t)r * wdt;
    const float *x = xp + (size_t)p0 * Kp + c0;
    if (VEC) {
#pragma unroll 2
      for (int k = lane * 4; k < wdt; k += 128) {
        float4 wv = __ldg(reinterpret_cast<const float4 *>(w + k));
#pragma unroll
        for (int j = 0; j < 8; j++)
          if (j < np) {
            float4 xv = __ldg(reinterpret_cast<const float4 *>(x + (size_t)j * Kp + k));
            acc[j] = fmaf(wv.x, xv.x, fmaf(wv.y, xv.y, fmaf(wv.z, xv.z, fmaf(wv.w, xv.w, acc[j]))));
          }
      }
    } else {
      for (int k = lane; k < wdt; k += 32) {
        float wv = __ldg(w + k);
#pragma unroll
        for (int j = 0; j < 8; j++)
          if (j < np) acc[j] = fmaf(wv, __ldg(x + (size_t)j * Kp + k), acc[j]);
      }
    }
  }
#pragma unroll
  for (int j = 0; j < 8; j++)
    for (int o = 16; o > 0; o >>= 1) acc[j] += __shfl_xor_sync(0xffffffffu, acc[j], o);
  if (lane == 0) {
    int orow = out_row[warp];
    for (int j = 0; j < np; j++) {
      int p = p0 + j;
      y[(size_t)(p / S) * M * S + (size_t)orow * S + p % S] =
          act_f(acc[j] + bias[warp], act, a, b);
    }
  }
}

extern "C" int pvk_pivot(const pvk_pivot_args *a, cudaStream_t s) {
  if (a->P == 0 || a->M == 0) return 0;
  int path = a->path ? a->path : a->P <= 8 ? PVK_PATH_ROWS : a->P <= 32 ? PVK_PATH_TILED32
                                                                        : PVK_PATH_TILED64;
  if (path == PVK_PATH_ROWS) {
    dim3 grid(blocks_for((int64_t)a->M * 32, 256), blocks_for(a->P, 8));
    if (a->vec4)
      k_pivot_rows<true><<<grid, 256, 0, s>>>(a->xp, a->data, a->row_rg, a->row_off, a->rg_blk,
                                              a->blk_c, a->blk_off, a->out_row, a->bias, a->y,
                                              a->M, a->kk, a->Kp, a->P, a->S, a->act, a->alpha,
                                              a->beta);
    else
      k_pivot_rows<false><<<grid, 256, 0, s>>>(a->xp, a->data, a->row_rg, a->row_off, a->rg_blk,
                                               a->blk_c, a->blk_off, a->out_row, a->bias, a->y,
                                               a->M, a->kk, a->Kp, a->P, a->S, a->act, a->alpha,
                                               a->beta);
  } else if (path == PVK_PATH_TILED32) {
    dim3 grid(a->n_tiles, blocks_for(a->P, 32));
    k_pivot_tiled<32><<<grid, 256, 0, s>>>(a->xp, a->data, a->tiles, a->row_off, a->rg_blk,
                                           a->blk_c, a->blk_off, a->out_row, a->bias, a->y,
                                           a->M, a->kk, a->Kp, a->P, a->S, a->act, a->alpha,
                                           a->beta);
  } else {
    dim3 grid(a->n_tiles, blocks_for(a->P, 64));
    k_pivot_tiled<64><<<grid, 256, 0, s>>>(a->xp, a->data, a->tiles, a->row_off, a->rg_blk,
                                           a->blk_c, a->blk_off, a->out_row, a->bias, a->y,
                                           a->M, a->kk, a->Kp, a->P, a->S, a->act, a->alpha,
                                           a->beta);
  }
  return (int)cudaGetLastError();
}

// ---- pivoted layer through cuBLAS (uniform structures)

extern "C" void pvk_blas_plan(pvk_blas_args *b, int nr, const int32_t *row_off,
                              const int32_t *col_off, int n_blocks, const int32_t *blk_rg,
                              const int32_t *blk_cg, const unsigned long long *blk_off, int kk) {
  memset(b, 0, sizeof *b);
  if (nr < 1 || n_blocks < nr || n_blocks % nr) return;
  int k = n_blocks / nr;
  if (k > PVK_BLAS_MAXK) return;
  int R = row_off[1] - row_off[0];
  int W = col_off[blk_cg[0] + 1] - col_off[blk_cg[0]];
  long long Kb = (long long)W * kk;
  if (R < 1 || W < 1 || Kb > 0x7fffffff) return;
  for (int r = 0; r < nr; r++)
    if (row_off[r + 1] - row_off[r] != R || row_off[r] != (long long)r * R) return;
  for (int j = 0; j < k; j++) {
    b->a0[j] = (long long)blk_off[j];
    b->c0[j] = (long long)col_off[blk_cg[j]] * kk;
  }
  b->a_stride = nr > 1 ? (long long)blk_off[k] - (long long)blk_off[0] : 0;
  b->c_stride = nr > 1 ? (long long)col_off[blk_cg[k]] * kk - b->c0[0] : 0;
  if (b->a_stride < 0 || b->c_stride < 0) return;
  for (int r = 0; r < nr; r++)
    for (int j = 0; j < k; j++) {
      int i = r * k + j, cg = blk_cg[i];
      if (blk_rg[i] != r || col_off[cg + 1] - col_off[cg] != W ||
          (long long)blk_off[i] != b->a0[j] + r * b->a_stride ||
          (long long)col_off[cg] * kk != b->c0[j] + r * b->c_stride)
        return;
    }
  b->nr = nr, b->k = k, b->R = R, b->Kb = (int)Kb;
  b->ok = 1;
}

extern "C" int pvk_blas_wanted(const pvk_blas_args *b, int P) {
  // Below 16 columns the sgemms are matrix-vector products with little
  // reuse, where our warp-per-row kernel reads each weight once; blocks of
  // fewer than 128 rows are too small for cuBLAS's tiles, where our tiled
  // kernel won (H100, backends/cuda/DEVCHECK.md).
  return b->ok && P >= 16 && b->R >= 128;
}

__global__ void k_scatter_rows(const float *__restrict__ yp, float *__restrict__ y,
                               const int32_t *__restrict__ out_row,
                               const float *__restrict__ bias, int64_t total, int M, int S,
                               int act, float a, float b) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int64_t p = i / M;
  int r = (int)(i % M);
  float v = yp[i] + (bias ? bias[r] : 0.f);
  y[(p / S) * (int64_t)M * S + (int64_t)out_row[r] * S + p % S] = act_f(v, act, a, b);
}

extern "C" int pvk_pivot_blas(const pvk_pivot_args *a, const pvk_blas_args *b, cublasHandle_t h,
                              float *yp, cudaStream_t s) {
  if (a->P == 0 || a->M == 0) return 0;
  if (!b->ok) return (int)cudaErrorInvalidValue;
  const float one = 1.f, zero = 0.f;
  cublasSetStream(h, s);
  for (int j = 0; j < b->k; j++) {
    // Column-major view: yp^T [M, P] (ld M); rows of row group r start at
    // r*R. Block r,j is row-major R x Kb, i.e. column-major Kb x R (op T);
    // its input columns are rows c0 + r*c_stride of xp^T [Kp, P] (ld Kp).
    cublasStatus_t st = cublasSgemmStridedBatched(
        h, CUBLAS_OP_T, CUBLAS_OP_N, b->R, a->P, b->Kb, &one, a->data + b->a0[j], b->Kb,
        b->a_stride, a->xp + b->c0[j], a->Kp, b->c_stride, j ? &one : &zero, yp, a->M,
        (long long)b->R, b->nr);
    if (st != CUBLAS_STATUS_SUCCESS) return (int)cudaErrorUnknown;
  }
  int64_t total = (int64_t)a->P * a->M;
  k_scatter_rows<<<blocks_for(total, 256), 256, 0, s>>>(yp, a->y, a->out_row, a->bias, total,
                                                        a->M, a->S, a->act, a->alpha, a->beta);
  return (int)cudaGetLastError();
}

__global__ void k_bias_act(float *y, const float *bias, int64_t total, int M, int S, int act,
                           float a, float b) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int m = (int)((i / S) % M);
  y[i] = act_f(y[i] + (bias ? bias[m] : 0.f), act, a, b);
}

extern "C" int pvk_bias_act(float *y, const float *bias, int64_t total, int M, int S, int act,
                            float a, float b, cudaStream_t s) {
  if (total == 0) return 0;
  k_bias_act<<<blocks_for(total, 256), 256, 0, s>>>(y, bias, total, M, S, act, a, b);
  return (int)cudaGetLastError();
}

__global__ void k_conv(const float *__restrict__ x, const float *__restrict__ w,
                       const float *__restrict__ bias, float *__restrict__ y, int C, int H, int W,
                       int M, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                       int dh, int dw, int group, int64_t total, int act, float a, float b) {
  int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  int ow = (int)(idx % OW);
  int64_t r = idx / OW;
  int oh = (int)(r % OH);
  r /= OH;
  int m = (int)(r % M);
  int64_t n = r / M;
  int cg = C / group, g = m / (M / group);
  float acc = bias ? bias[m] : 0.f;
  int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
  for (int c = 0; c < cg; c++) {
    const float *xc = x + (n * C + g * cg + c) * H * W;
    const float *wc = w + ((size_t)m * cg + c) * kh * kw;
    for (int ki = 0; ki < kh; ki++) {
      int ih = ih0 + ki * dh;
      if (ih < 0 || ih >= H) continue;
      for (int kj = 0; kj < kw; kj++) {
        int iw = iw0 + kj * dw;
        if (iw >= 0 && iw < W) acc = fmaf(wc[ki * kw + kj], xc[ih * W + iw], acc);
      }
    }
  }
  y[idx] = act_f(acc, act, a, b);
}

extern "C" int pvk_conv(const float *x, const float *w, const float *bias, float *y, int N, int C,
                        int H, int W, int M, int OH, int OW, int kh, int kw, int sh, int sw,
                        int ph, int pw, int dh, int dw, int group, int act, float a, float b,
                        cudaStream_t s) {
  int64_t total = (int64_t)N * M * OH * OW;
  if (total == 0) return 0;
  k_conv<<<blocks_for(total, 128), 128, 0, s>>>(x, w, bias, y, C, H, W, M, OH, OW, kh, kw, sh, sw,
                                                ph, pw, dh, dw, group, total, act, a, b);
  return (int)cudaGetLastError();
}

__global__ void k_pool(const float *__restrict__ x, float *__restrict__ y, int H, int W, int OH,
                       int OW, int kh, int kw, int sh, int sw, int ph, int pw, int ph1, int pw1,
                       int is_max, int cip, int64_t total, int act, float a, float b) {
  int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= total) return;
  int ow = (int)(idx % OW), oh = (int)((idx / OW) % OH);
  int64_t nc = idx / ((int64_t)OW * OH);
  int hs = oh * sh - ph, ws = ow * sw - pw;
  int he = min(hs + kh, H + ph1), we = min(ws + kw, W + pw1);
  int pool = (he - hs) * (we - ws);
  int h0 = max(hs, 0), w0 = max(ws, 0), h1 = min(he, H), w1 = min(we, W);
  const float *xc = x + nc * H * W;
  float acc = is_max ? -INFINITY : 0.f;
  for (int ih = h0; ih < h1; ih++)
    for (int iw = w0; iw < w1; iw++) {
      float v = xc[ih * W + iw];
      acc = is_max ? fmaxf(acc, v) : acc + v;
    }
  if (!is_max) {
    int cnt = cip ? pool : (h1 - h0) * (w1 - w0);
    acc = cnt > 0 ? acc / (float)cnt : 0.f;
  }
  y[idx] = act_f(acc, act, a, b);
}

extern "C" int pvk_pool(const float *x, float *y, int NC, int H, int W, int OH, int OW, int kh,
                        int kw, int sh, int sw, int ph, int pw, int ph1, int pw1, int is_max,
                        int cip, int act, float a, float b, cudaStream_t s) {
  int64_t total = (int64_t)NC * OH * OW;
  if (total == 0) return 0;
  k_pool<<<blocks_for(total, 256), 256, 0, s>>>(x, y, H, W, OH, OW, kh, kw, sh, sw, ph, pw, ph1,
                                                pw1, is_max, cip, total, act, a, b);
  return (int)cudaGetLastError();
}

// A warp per (n, c) plane.
__global__ void k_gap(const float *__restrict__ x, float *__restrict__ y, int NC, int HW, int act,
                      float a, float b) {
  int w = (int)(((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32), lane = threadIdx.x % 32;
  if (w >= NC) return;
  const float *xc = x + (size_t)w * HW;
  float s = 0.f;
  for (int k = lane; k < HW; k += 32) s += xc[k];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  if (lane == 0) y[w] = act_f(s / (float)HW, act, a, b);
}

extern "C" int pvk_gap(const float *x, float *y, int NC, int HW, int act, float a, float b,
                       cudaStream_t s) {
  if (NC == 0) return 0;
  k_gap<<<blocks_for((int64_t)NC * 32, 256), 256, 0, s>>>(x, y, NC, HW, act, a, b);
  return (int)cudaGetLastError();
}

struct bcast {
  int64_t d1, d2, d3, sa[4], sb[4];
};

__global__ void k_binary(const float *__restrict__ x, const float *__restrict__ x2,
                         float *__restrict__ y, bcast bc, int64_t total, int op, int act, float a,
                         float b) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  int64_t i3 = i % bc.d3, r = i / bc.d3, i2 = r % bc.d2;
  r /= bc.d2;
  int64_t i1 = r % bc.d1, i0 = r / bc.d1;
  float u = x[i0 * bc.sa[0] + i1 * bc.sa[1] + i2 * bc.sa[2] + i3 * bc.sa[3]];
  float v = x2[i0 * bc.sb[0] + i1 * bc.sb[1] + i2 * bc.sb[2] + i3 * bc.sb[3]];
  float o = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v;
  y[i] = act_f(o, act, a, b);
}

extern "C" int pvk_binary(const float *x, const float *x2, float *y, const int64_t od[4],
                          const int64_t sa[4], const int64_t sb[4], int op, int act, float a,
                          float b, cudaStream_t s) {
  int64_t total = od[0] * od[1] * od[2] * od[3];
  if (total == 0) return 0;
  bcast bc = {od[1], od[2], od[3], {sa[0], sa[1], sa[2], sa[3]}, {sb[0], sb[1], sb[2], sb[3]}};
  k_binary<<<blocks_for(total, 256), 256, 0, s>>>(x, x2, y, bc, total, op, act, a, b);
  return (int)cudaGetLastError();
}

__global__ void k_unary(const float *__restrict__ x, float *__restrict__ y, int64_t n, int act,
                        float a, float b) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = act_f(x[i], act, a, b);
}

extern "C" int pvk_unary(const float *x, float *y, int64_t n, int act, float a, float b,
                         cudaStream_t s) {
  if (n == 0) return 0;
  k_unary<<<blocks_for(n, 256), 256, 0, s>>>(x, y, n, act, a, b);
  return (int)cudaGetLastError();
}

__global__ void k_concat(const float *__restrict__ x, float *__restrict__ y, int64_t in_len,
                         int64_t out_len, int64_t off, int64_t total) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= total) return;
  y[(i / in_len) * out_len + off + i % in_len] = x[i];
}

extern "C" int pvk_concat(const float *x, float *y, int64_t outer, int64_t in_len,
                          int64_t out_len, int64_t off, cudaStream_t s) {
  int64_t total = outer * in_len;
  if (total == 0) return 0;
  k_concat<<<blocks_for(total, 256), 256, 0, s>>>(x, y, in_len, out_len, off, total);
  return (int)cudaGetLastError();
}
