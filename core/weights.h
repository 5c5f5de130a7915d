/* Private to libpivot: the weight matrix of a Conv/Gemm/MatMul layer seen
 * as W (out x in), whatever orientation the graph stores it in. Shared by
 * detect, prune, fold and the .pvm writer. */
#ifndef PV_WEIGHTS_H
#define PV_WEIGHTS_H
#include "pivot.h"
#include "pv-pivot.h"

typedef struct pv_wlayer {
  int node;        /* node index */
  int wv;          /* value id of the weight */
  int bias;        /* value id of the bias (Conv in[2], Gemm C) or -1 */
  bool conv;       /* Conv: NCHW activations, channel axis 1 */
  bool transposed; /* data stored [K, N] (Gemm transB=0, MatMul): W = B^T */
  int32_t M, C, kk; /* W is M x (C*kk) */
} pv_wlayer;

/* Whether node i has a weight that can be pivoted: a Conv with group 1,
 * a Gemm or a MatMul whose weight is a constant FP32 tensor (data or
 * pivot present) read by this node only. Fills *L. */
bool pv_wlayer_of(const pv_graph *g, int i, pv_wlayer *L);
/* W (M x C*kk, logical out x in) from the value's data or its pivot.
 * Returns a malloc'd copy the caller frees with free(), or NULL. */
float *pv_wlayer_dense(const pv_graph *g, const pv_wlayer *L);
/* Store W back into the weight value's data in its own orientation,
 * allocating graph-owned data when the value has none or it is mapped. */
int pv_wlayer_store(pv_graph *g, const pv_wlayer *L, const float *W);
/* Make v's data graph-owned and writable (copied out of a mapped file). */
int pv_value_own(pv_graph *g, int v);
/* Whether p points into the graph's external storage (a mapped file). */
bool pv_graph_in_storage(const pv_graph *g, const void *p);
#endif
