/* Internal API of the CPU backend: thread pool, ISA dispatch, packed
 * matrices and the GEMM driver. Shared by the plugin (cpu.c), its unit
 * test and `pivot bench`, which link the convenience library
 * libpvcpu.la; nothing here is exported from pivot-backend-cpu.so.
 */
#ifndef PV_CPU_IMPL_H
#define PV_CPU_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "pivot.h"
#include "pv-pivot.h"

/* ---------------------------------------------------------------- pool */

typedef struct pv_cpu_pool pv_cpu_pool;

/* Work item callback: item index in [0, n), tid in [0, threads). */
typedef void (*pv_cpu_task_fn)(void *arg, int64_t item, int tid);

/* threads <= 0: one per online core. pin: bind worker i to core i.
 * NULL + pv_error() on failure. Free with pv_cpu_pool_free(). */
pv_cpu_pool *pv_cpu_pool_new(int threads, bool pin);
void pv_cpu_pool_free(pv_cpu_pool *p);
int pv_cpu_pool_threads(const pv_cpu_pool *p);
/* Run fn on items 0..n-1, the caller taking part as tid 0; returns when
 * all are done. Calls from several threads are serialised: each parallel
 * section owns the whole pool while it runs. */
void pv_cpu_pool_run(pv_cpu_pool *p, int64_t n, pv_cpu_task_fn fn, void *arg);
/* The same on at most max_threads threads (1: the caller alone), for work
 * too small to repay waking the others. */
void pv_cpu_pool_run_max(pv_cpu_pool *p, int64_t n, int max_threads,
                         pv_cpu_task_fn fn, void *arg);
/* The same for small neighbouring items (channels, planes): threads claim
 * blocks of consecutive items, about eight blocks a thread. Handed out
 * one by one they alternate between threads, and every cache line where
 * two items' outputs meet moves between the cores (Winograd's transforms
 * on 14x14 planes did not get faster with a second thread). */
void pv_cpu_pool_run_blocked(pv_cpu_pool *p, int64_t n, int max_threads,
                             pv_cpu_task_fn fn, void *arg);
/* Per-thread scratch (64-byte aligned) of at least `bytes`, valid inside a
 * task running as `tid` until the task returns; NULL if out of memory.
 * Owned by the pool. */
float *pv_cpu_pool_scratch(pv_cpu_pool *p, int tid, size_t bytes);
/* Whole-call scratch for a caller that holds the pool's call lock (two
 * concurrent calls would otherwise share it). */
void pv_cpu_pool_call_lock(pv_cpu_pool *p);
void pv_cpu_pool_call_unlock(pv_cpu_pool *p);
float *pv_cpu_pool_call_scratch(pv_cpu_pool *p, size_t bytes);
/* A second whole-call scratch, for an op whose buffers live across calls
 * of the GEMM drivers (which take the call scratch): take the op lock
 * first, never while holding the call lock. */
void pv_cpu_pool_op_lock(pv_cpu_pool *p);
void pv_cpu_pool_op_unlock(pv_cpu_pool *p);
float *pv_cpu_pool_op_scratch(pv_cpu_pool *p, size_t bytes);

/* ---------------------------------------------------------------- ISA */

/* Plain-C loops that the compiler vectorises get one clone per x86 ISA,
 * picked at load time from cpuid (GCC ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PV_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define PV_CPU_CLONES
#endif

#define PV_CPU_MR 16 /* rows per packed weight panel, for every ISA */
#define PV_CPU_TILE_M (2 * PV_CPU_MR)

/* Micro-kernel: tile[j*PV_CPU_TILE_M + i] = sum_p A(i,p) B(p,j) for
 * np panels (i < np*16) of a, panel q at a + q*astride, and nr <= isa->nr
 * columns of b, B(p,j) = b[p*ldb_k + j*ldb_n]: a packed panel
 * (ldb_k = isa->nr, ldb_n = 1) or the input itself when it needs no
 * gather (a Gemm's rows, a pointwise convolution's planes). */
typedef void (*pv_cpu_ukr_fn)(const float *a, int64_t astride, int np,
                              const float *b, int64_t ldb_k, int64_t ldb_n,
                              int64_t k, int nr, float *tile);

/* Store of a tile into contiguous rows: y[i + j*ld_n] = act(tile[j*32+i]
 * + bias[i]) for i < nrows, j < ncols; bias may be NULL. */
typedef void (*pv_cpu_store_fn)(float *y, int64_t ld_n, const float *tile,
                                const float *bias, int nrows, int ncols,
                                pv_act act, float alpha, float beta);

typedef struct pv_cpu_isa {
  const char *name; /* "avx512", "avx2", "neon", "c" */
  int nr;           /* B panel width */
  int np_max;       /* panels per micro-kernel call: 1 or 2 */
  pv_cpu_ukr_fn ukr;
  pv_cpu_store_fn store; /* NULL: the portable loop in gemm.c */
  /* Optional: store through row offsets rows[i] (a pivoted layer's output
   * scatter), bias already gathered per row. */
  void (*scatter)(float *y, int64_t ld_n, const int32_t *rows,
                  const float *tile, const float *bias, int nrows, int ncols,
                  pv_act act, float alpha, float beta);
  /* Optional: pack one full B panel with the input gather fused,
   * d[p*nr + j] = x[j*ld_n + cols[p]] (ld_n*nr fits in int32). */
  void (*gather)(const float *x, int64_t ld_n, const int64_t *cols, int64_t k,
                 float *d);
  /* Optional: the micro-kernel with the input gather fused into its
   * loads, B(p, j) = b[j*ldb_n + idx[p]]. */
  void (*ukr_idx)(const float *a, int64_t astride, int np, const float *b,
                  const int32_t *idx, int64_t ldb_n, int64_t k, int nr,
                  float *tile);
  /* Optional: store to rows that are contiguous along n (a convolution's
   * output planes): y[rows[i] + j] = act(tile[j*32+i] + bias[i]). */
  void (*store_rows)(float *y, const int64_t *rows, const float *tile,
                     const float *bias, int nrows, int ncols, pv_act act,
                     float alpha, float beta);
  /* Optional: the micro-kernel reading a convolution in place, B(p, j) =
   * b[off[p] + coff[j]] (tap offsets, pixel offsets into a padded input):
   * the GEMM path's convolutions then need no im2col. */
  void (*ukr_cols)(const float *a, int64_t astride, int np, const float *b,
                   const int32_t *off, const int32_t *coff, int64_t k, int nr,
                   float *tile);
  /* Optional: the same for segments of <= 8 rows, the first 8 rows of one
   * panel x nr <= nr8 columns (wider than nr: the tile has 16 columns). */
  void (*ukr_cols8)(const float *a, const float *b, const int32_t *off,
                    const int32_t *coff, int64_t k, int nr, float *tile);
  int nr8;
} pv_cpu_isa;

/* One line of a pivoted Gemm's permute pass,
 * d[i] = act(x[idx[i]] + bias[i]) for i < n; bias may be NULL. */
typedef void (*pv_cpu_permute_fn)(float *d, const float *x,
                                  const int32_t *idx, int64_t n,
                                  const float *bias, pv_act act, float alpha,
                                  float beta);
/* The ISA's vector permute line, or NULL (the portable loop). Kept out of
 * pv_cpu_isa so that the table's initialisers stay as they are. */
pv_cpu_permute_fn pv_cpu_isa_permute(const pv_cpu_isa *isa);

/* Best ISA this CPU supports (cpuid feature bits). */
const pv_cpu_isa *pv_cpu_isa_best(void);
/* ISA by name if this CPU runs it, else NULL. */
const pv_cpu_isa *pv_cpu_isa_get(const char *name);
/* Names of all ISAs compiled in, NULL-terminated, best first. */
const char *const *pv_cpu_isa_names(void);

extern const pv_cpu_isa pv_cpu_isa_avx512;
extern const pv_cpu_isa pv_cpu_isa_avx2;
extern const pv_cpu_isa pv_cpu_isa_neon;
extern const pv_cpu_isa pv_cpu_isa_c;

/* ---------------------------------------------------------------- packed */

/* A segment is a dense sub-GEMM: `rows` output rows that read `k` input
 * columns. A dense matrix is one segment (or one per convolution group);
 * a pivoted matrix has one per row group, its blocks side by side, so a
 * c-of-n pattern needs no accumulation between blocks. */
typedef struct pv_cpu_seg {
  int32_t rows;
  int64_t k;
  float *a;               /* ceil(rows/16) panels of [k][16], zero-padded */
  const int32_t *row_idx; /* logical output row of each row, or NULL:
                             row_base + i */
  int32_t row_base;
  const int64_t *col_idx; /* input column of each k, or NULL: col_base + p */
  int64_t col_base;
} pv_cpu_seg;

typedef struct pv_cpu_mat {
  int32_t M;
  int64_t K;     /* logical columns */
  int n_seg;
  pv_cpu_seg *seg;
  int64_t max_k; /* largest seg.k */
  int64_t nnz;   /* stored weights (without panel padding) */
  /* Pivoted, when every row group reads one contiguous range of the
   * permuted columns: the same segments in permuted space (no index
   * lists), the permuted column -> input column map and the logical row
   * -> permuted row map. A Gemm then gathers its input once, runs every
   * block on contiguous memory and unpermutes its output once, instead
   * of gathering and scattering per tile. NULL otherwise. */
  pv_cpu_seg *pseg;
  /* Columns of the permuted input: K, or more when c-of-n blocks form a
   * ring whose last row group wraps round to the first column group
   * (in_perm then repeats its start after K, so that group reads one
   * contiguous run too). */
  int64_t kp;
  int32_t *in_perm; /* [kp] */
  int32_t *out_inv; /* [M] */
  bool in_ident, out_ident; /* a map is the identity: skip that pass */
  /* storage, owned */
  float *a_mem;
  int32_t *row_mem;
  int64_t *col_mem;
} pv_cpu_mat;

/* Pack a dense M x K matrix, W(m,k) = w[m*ld_m + k*ld_k] * scale, split
 * into `groups` segments along the rows and columns (grouped convolution:
 * segment g reads columns g*K .. g*K+K-1 and writes rows g*M/groups...).
 * Here K is the per-group column count. Free with pv_cpu_mat_free(). */
pv_cpu_mat *pv_cpu_mat_dense(const float *w, int32_t M, int64_t K,
                             int64_t ld_m, int64_t ld_k, int groups,
                             float scale);
/* Pack a pivoted matrix (validated first): one segment per row group. */
pv_cpu_mat *pv_cpu_mat_pivot(const pv_pivot *p, float scale);
void pv_cpu_mat_free(pv_cpu_mat *m);

/* Where B(k, n) comes from. */
typedef struct pv_cpu_bsrc {
  const float *x;
  bool conv;           /* false: B(k,n) = x[k*ld_k + n*ld_n] */
  int64_t ld_k, ld_n;
  /* conv: k = (c, ky, kx), n = (oy, ox); x is [C][H][W] */
  int64_t H, W, kh, kw, sh, sw, ph, pw, dh, dw, OW;
} pv_cpu_bsrc;

/* Where C(m, n) goes: y[m*ld_m + n*ld_n] = act(C + bias[m]) with m the
 * logical row. */
typedef struct pv_cpu_out {
  float *y;
  int64_t ld_m, ld_n;
  const float *bias; /* [M] or NULL */
  pv_act act;
  float alpha, beta;
} pv_cpu_out;

/* C = A B for N columns; all segments in one parallel pass. Returns 0 or
 * PV_ENOMEM. */
int pv_cpu_gemm(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                const pv_cpu_out *out);

/* A convolution read in place (the ISA's ukr_cols) with a following 2x2
 * stride-2 MaxPool without pads fused: the pooled output of row m goes
 * to ypool + m*pld ([OH/2][OW/2]), out->y is not written. Returns 1,
 * having done nothing, where the layer does not take this path (no
 * ukr_cols, a pointwise layer's planes, >= 2048 taps, an activation that
 * is not non-decreasing), 0 or an error code. */
int pv_cpu_conv_cols_pool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                          const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                          const pv_cpu_out *out, float *ypool, int64_t pld);

/* The larger of a and b, NaN kept from either (MaxPool's maximum, as the
 * reference's a > b || a != a ? a : b). */
static inline float pv_cpu_max_nan(float a, float b) {
  return a > b || a != a ? a : b;
}

/* Input channels a convolution's segments read (1 + the largest channel
 * of their columns, kk taps a channel). */
int64_t pv_cpu_seg_channels(const pv_cpu_seg *segs, int n_seg, int64_t kk);

/* Offset of a convolution's column c (channel c / kk, tap c % kk) from a
 * window's corner in an input of planes `plane` and rows `row` floats. */
static inline int64_t pv_cpu_tap_offset(const pv_cpu_bsrc *b, int64_t c,
                                        int64_t plane, int64_t row) {
  const int64_t kk = b->kh * b->kw, t = c % kk;
  return (c / kk) * plane + (t / b->kw) * b->dh * row + (t % b->kw) * b->dw;
}

/* A padded copy of one plane: xp[r][c] = x[r - pt][c - pl] inside x, v
 * elsewhere (0 for a convolution, -inf for max pooling), for r < Hp,
 * c < Wp (pl <= Wp). */
void pv_cpu_pad_plane(const float *x, int64_t H, int64_t W, int64_t pt,
                      int64_t pl, float *xp, int64_t Hp, int64_t Wp, float v);

/* y = act(a + b) over n floats (eltwise.c); y is not a or b (a node's
 * output has its own buffer in the memory plan). */
void pv_cpu_add(pv_cpu_pool *pool, const float *a, const float *b, float *y,
                int64_t n, pv_act act, float alpha, float beta);

/* ---------------------------------------------------------------- winograd */

/* Winograd F(2x2, 3x3) for a dense 3x3, stride-1, undilated, ungrouped
 * convolution (winograd.c): the filters w [M][C][3][3] transformed and
 * packed as 16 groups of M x C. NULL + pv_error() on failure. */
pv_cpu_mat *pv_cpu_wino_pack(const float *w, int32_t M, int64_t C);

typedef struct pv_cpu_wino_geom {
  int64_t N, C, H, W; /* input [N][C][H][W] */
  int64_t OH, OW;     /* = H + pt + pb - 2, W + pl + pr - 2 (checked by the caller) */
  int64_t pt, pl;     /* top and left pads */
} pv_cpu_wino_geom;

/* out->y [N][M][OH][OW] = act(conv(x, w) + bias) for all N images, with
 * u from pv_cpu_wino_pack. 0, PV_ENOMEM or PV_ERANGE. */
int pv_cpu_wino_conv(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                     const pv_cpu_mat *u, const pv_cpu_wino_geom *g,
                     const float *x, const pv_cpu_out *out);

/* Activation on one value (fused into stores). */
static inline float pv_cpu_act1(float v, pv_act act, float alpha, float beta) {
  switch (act) {
  case PV_ACT_NONE: return v;
  case PV_ACT_RELU: return v > 0 ? v : 0;
  case PV_ACT_LEAKY: return v >= 0 ? v : v * alpha;
  case PV_ACT_CLIP: { /* min(max(v, lo), hi) as the reference: hi wins
                         when lo > hi, NaN stays NaN */
    float t = v < alpha ? alpha : v;
    return t > beta ? beta : t;
  }
  case PV_ACT_SIGMOID: return 1.0f / (1.0f + __builtin_expf(-v));
  case PV_ACT_TANH: return __builtin_tanhf(v);
  }
  return v;
}

/* ---------------------------------------------------------------- conv */

/* Depthwise convolution (groups == C == M), direct: x [C][H][W] ->
 * y [C][OH][OW], w [C][kh][kw]. Parallel over channels. */
typedef struct pv_cpu_dwconv {
  int64_t C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
} pv_cpu_dwconv;
void pv_cpu_depthwise(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                      const pv_cpu_dwconv *d, const float *x, const float *w,
                      float *y, const pv_cpu_out *out);

/* Max pooling over planes [planes][H][W] -> [planes][OH][OW]; pads are
 * the leading pads (trailing ones only change OH/OW). */
typedef struct pv_cpu_pool2d {
  int64_t planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
  /* padc: taps outside the input count as padv (a constant Pad fused
   * into the pool) instead of being skipped. */
  bool padc;
  float padv;
} pv_cpu_pool2d;
void pv_cpu_maxpool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                    const pv_cpu_pool2d *d, const float *x, float *y);

/* Two rows pooled 2x2 with stride 2: d[x] = max of r0/r1[2x, 2x+1] for
 * x < w/2, NaN kept, reading no further than that (AVX-512, or NULL);
 * the standalone MaxPool and the one fused into a convolution's tiles. */
typedef void (*pv_cpu_pool2_fn)(const float *r0, const float *r1, float *d,
                                int64_t w);
extern const pv_cpu_pool2_fn pv_cpu_pool2_avx512;
/* The same with stride 1: d[x] = max of r0/r1[x, x+1] for x < w, reading
 * w + 1 floats of each row (AVX-512, or NULL). */
extern const pv_cpu_pool2_fn pv_cpu_pool2s1_avx512;
/* The same two with AVX2 (or NULL). */
extern const pv_cpu_pool2_fn pv_cpu_pool2_avx2;
extern const pv_cpu_pool2_fn pv_cpu_pool2s1_avx2;
/* 3x3 window, stride s (1 or 2), on padded rows: d[x] = max of r0/r1/r2
 * [s*x .. s*x+2] for x < n, NaN kept, reading up to 34 floats past
 * s*(n-1)+2 (AVX-512, or NULL). */
typedef void (*pv_cpu_pool3_fn)(const float *r0, const float *r1,
                                const float *r2, float *d, int64_t n, int s);
extern const pv_cpu_pool3_fn pv_cpu_pool3_avx512;

/* ---------------------------------------------------------------- CSR */

/* Unstructured sparse weights, for `pivot bench`: what plain pruning gets. */
typedef struct pv_cpu_csr {
  int32_t M, K;
  int64_t *row_ptr; /* [M+1] */
  int32_t *col;     /* [nnz] */
  float *val;       /* [nnz] */
} pv_cpu_csr;
/* Nonzeros of a dense M x K row-major matrix. NULL on ENOMEM. */
pv_cpu_csr *pv_cpu_csr_from_dense(const float *w, int32_t M, int32_t K);
void pv_cpu_csr_free(pv_cpu_csr *c);
/* y[n][m] = sum_k W(m,k) x[n][k] (Gemm with transB). */
void pv_cpu_csr_gemm(pv_cpu_pool *pool, const pv_cpu_csr *c, const float *x,
                     float *y, int64_t n);

#endif
