/* Pivoted (permuted block-sparse) weight matrices.
 *
 * A weight matrix W (M x K: output rows x input columns; for a convolution
 * M = Cout, K = Cin/groups * kh * kw) is stored as W = Pr^T B Pc^T:
 * rows and input *channels* are permuted, then B is a set of dense blocks
 * on a grid of row groups x column groups. Column groups move whole input
 * channels (kk = kh*kw columns each), so a convolution's taps stay together.
 * See docs/PIVOT.md.
 */
#ifndef PV_PIVOT_H
#define PV_PIVOT_H

#include "pivot.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pv_pivot_block {
  int32_t rg;      /* row group */
  int32_t cg;      /* column group */
  uint64_t offset; /* in floats, into pv_pivot.data; rows x (cols*kk),
                      row-major, permuted order */
} pv_pivot_block;

typedef struct pv_pivot {
  int32_t M;       /* rows (output features / channels) */
  int32_t C;       /* input channels (K / kk) */
  int32_t kk;      /* columns per channel: kh*kw for Conv, 1 for Gemm */
  /* Permuted row i is logical row perm_r[i]; permuted channel j is
   * logical channel perm_c[j]. */
  int32_t *perm_r; /* [M] */
  int32_t *perm_c; /* [C] */
  int32_t nr, nc;  /* row groups, column groups */
  int32_t *row_off; /* [nr+1], in permuted rows */
  int32_t *col_off; /* [nc+1], in permuted channels */
  int32_t n_blocks; /* sorted by (rg, cg); each row group has the same count
                       when balanced */
  pv_pivot_block *blocks;
  float *data;      /* packed blocks, 64-byte aligned */
  uint64_t data_len; /* floats */
  bool data_owned;  /* false when data points into a mapped .pvm */
} pv_pivot;

/* Build a pivot from a dense M x (C*kk) matrix (logical order) and a
 * chosen structure: perm_r [M], perm_c [C], row_off [nr+1], col_off
 * [nc+1], and n_blocks (rg, cg) pairs (blk_rg[i], blk_cg[i]) sorted by
 * (rg, cg). Copies all arrays and packs the blocks (entries of w outside
 * them are dropped). Returns NULL with pv_errmsg() set when the structure
 * is invalid. The caller frees the result with pv_pivot_free(). */
pv_pivot *pv_pivot_from_dense(const float *w, int32_t M, int32_t C, int32_t kk,
                              const int32_t *perm_r, const int32_t *perm_c,
                              int32_t nr, const int32_t *row_off, int32_t nc,
                              const int32_t *col_off, int32_t n_blocks,
                              const int32_t *blk_rg, const int32_t *blk_cg);
/* Deep copy (data always owned by the copy); NULL on out of memory. */
pv_pivot *pv_pivot_clone(const pv_pivot *p);

/* Free everything the pivot owns, and p itself. */
void pv_pivot_free(pv_pivot *p);
/* Non-zero parameters stored (sum of block sizes). */
int64_t pv_pivot_nnz(const pv_pivot *p);
/* nnz / (M*C*kk). */
double pv_pivot_density(const pv_pivot *p);
/* Write the dense M x (C*kk) matrix (logical order) into out. */
void pv_pivot_to_dense(const pv_pivot *p, float *out);
/* Write W^T, K x M with K = C*kk (logical order), into out: the layout a
 * Gemm with transB=0 or a MatMul stores its weight in ([K, N]). */
void pv_pivot_to_dense_t(const pv_pivot *p, float *out);
/* Check invariants (permutations are bijections, offsets monotone and in
 * range, blocks in range and non-overlapping, data_len covers blocks).
 * Returns 0 or PV_EFORMAT with a message naming the broken field. */
int pv_pivot_validate(const pv_pivot *p);

/* Detect: the connected components of the bipartite row/channel nonzero
 * graph of a dense M x (C*kk) matrix become blocks, merged/split into a
 * balanced grid. Returns NULL (no error) when there is no usable
 * structure (density > max_density). Exact: pv_pivot_to_dense gives w. */
pv_pivot *pv_pivot_detect(const float *w, int32_t M, int32_t C, int32_t kk,
                          double max_density);

/* Prune by pivoting to density 1/n (block diagonal, n groups) or c/n
 * (each row group connected to c column groups). Chooses permutations
 * that keep the most squared weight mass in balanced blocks; seeded and
 * deterministic. *retained = kept |W|^2 / total |W|^2. */
pv_pivot *pv_pivot_prune(const float *w, int32_t M, int32_t C, int32_t kk,
                         int n, int c, uint64_t seed, double *retained);

/* y[b, m] = sum_k W[m,k] x[b,k] (y is overwritten, not accumulated) for
 * a pivoted matrix, reference version: x and y in the order the pivot
 * describes (natural order for an unfolded graph), K = C*kk columns with
 * channel c's taps at columns c*kk .. c*kk+kk-1 (im2col order for a
 * Conv). ldx/ldy are row strides in floats. */
void pv_pivot_gemm_ref(const pv_pivot *p, const float *x, int64_t ldx,
                       float *y, int64_t ldy, int64_t batch);

/* Graph-level: pivot weights of Conv/Gemm/MatMul nodes. spec per layer
 * comes from the CLI (docs/PIVOT.md). */
typedef struct pv_prune_spec {
  double density;          /* global target (1 = no pruning) */
  const char *const *keep_dense; /* layer names kept dense, NULL-term. */
  const char *const *layer_names; /* per-layer densities: names ... */
  const double *layer_density;    /* ... and densities, same count */
  int n_layers;
  int min_channels;        /* skip layers with fewer in/out channels */
  uint64_t seed;
} pv_prune_spec;

/* Detect existing structure in every weight (exact, no pruning): Conv
 * with group 1, Gemm and MatMul whose weight is a constant FP32 tensor read
 * by that node only. The pivot always describes W as out x in: for Gemm
 * with transB=0 and MatMul (B stored [K, N]) it describes B^T. value.data
 * is kept; value.chan_perm is not touched. */
int pv_graph_detect_pivots(pv_graph *g, double max_density);
/* Prune by pivoting; writes per-layer retained energy to `report` (may be
 * NULL). */
int pv_graph_prune(pv_graph *g, const pv_prune_spec *spec, FILE *report);
/* Fold row permutations into the next layer's columns along chains of
 * channel-wise ops; sets value.chan_perm on the activations in between.
 * Contract (docs/PIVOT.md, "Folding"): afterwards the graph is an ordinary
 * graph in stored order. The first layer of a link gets perm_r = identity
 * (it writes rows in block order), its bias and dense rows are permuted;
 * the constants in between are permuted; the next layer's perm_c indexes
 * the stored input channels and its dense columns are permuted. So every
 * pivot still means y[perm_r[i]] = sum block * x[perm_c[j]] on tensors as
 * stored, and a backend computes a folded graph without reading
 * chan_perm. Graph outputs keep natural order. */
int pv_graph_fold_perms(pv_graph *g);

/* Give every pivoted weight that has no dense copy (as loaded from a
 * .pvm) its dense data again, rebuilt from the blocks in the value's own
 * orientation (Gemm transB=0 and MatMul: [K, N]), for a backend that
 * does not run pivots. The data is owned by the graph. */
int pv_graph_densify(pv_graph *g);

/* .pvm: native single-file format (docs/PVM.md). */
int pv_pvm_save(const pv_graph *g, const char *path);
/* mmaps the file; weights are used in place. */
pv_graph *pv_pvm_load(const char *path);
pv_graph *pv_pvm_load_mem(const void *buf, size_t len); /* copies nothing:
                                  buf must outlive the graph */

#ifdef __cplusplus
}
#endif
#endif
