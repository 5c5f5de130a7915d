/* The weight matrix of a layer as W (out x in), independent of how the
 * graph stores it (see weights.h). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "weights.h"

bool pv_graph_in_storage(const pv_graph *g, const void *p) {
  if (!g->storage || !p) return false;
  const pv_storage_hdr *h = g->storage;
  return (const char *)p >= h->base && (const char *)p < h->base + h->len;
}

static bool const_f32(const pv_graph *g, int v) {
  if (v < 0 || v >= g->n_values) return false;
  const pv_value *val = &g->values[v];
  if (val->dtype != PV_F32 || val->ndim < 2 || val->producer >= 0) return false;
  pv_tensor t = pv_value_tensor(val);
  int64_t n = pv_tensor_numel(&t);
  if (n <= 0 || n > INT32_MAX) return false;
  if (val->data) return val->nbytes == (size_t)n * sizeof(float);
  return val->pivot != NULL;
}

bool pv_wlayer_of(const pv_graph *g, int i, pv_wlayer *L) {
  const pv_node *n = &g->nodes[i];
  memset(L, 0, sizeof *L);
  L->node = i;
  L->bias = -1;
  if (!n->op || n->n_in < 2 || n->n_out < 1 || n->in[0] < 0) return false;
  int w = n->in[1];
  if (!const_f32(g, w)) return false;
  if (g->values[n->in[0]].data) return false; /* both operands constant */
  if (pv_graph_consumers(g, w, NULL, 0) != 1) return false;
  const pv_value *v = &g->values[w];
  L->wv = w;
  if (!strcmp(n->op, "Conv")) {
    if (pv_attr_int(n, "group", 1) != 1 || v->ndim < 3) return false;
    int64_t kk = 1;
    for (int d = 2; d < v->ndim; d++) kk *= v->dims[d];
    L->conv = true;
    L->M = (int32_t)v->dims[0];
    L->C = (int32_t)v->dims[1];
    L->kk = (int32_t)kk;
  } else if (!strcmp(n->op, "Gemm")) {
    if (v->ndim != 2) return false;
    L->transposed = pv_attr_int(n, "transB", 0) == 0;
    L->M = (int32_t)v->dims[L->transposed ? 1 : 0];
    L->C = (int32_t)v->dims[L->transposed ? 0 : 1];
    L->kk = 1;
  } else if (!strcmp(n->op, "MatMul")) {
    if (v->ndim != 2) return false;
    L->transposed = true;
    L->M = (int32_t)v->dims[1];
    L->C = (int32_t)v->dims[0];
    L->kk = 1;
  } else {
    return false;
  }
  if (n->n_in > 2 && n->in[2] >= 0 && g->values[n->in[2]].data &&
      strcmp(n->op, "MatMul"))
    L->bias = n->in[2];
  if (v->pivot && (v->pivot->M != L->M || v->pivot->C != L->C ||
                   v->pivot->kk != L->kk))
    return false;
  return L->M > 0 && L->C > 0 && L->kk > 0;
}

float *pv_wlayer_dense(const pv_graph *g, const pv_wlayer *L) {
  const pv_value *v = &g->values[L->wv];
  int64_t K = (int64_t)L->C * L->kk;
  float *W = malloc(sizeof(float) * (size_t)(L->M * K));
  if (!W) {
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  if (!v->data) {
    pv_pivot_to_dense(v->pivot, W); /* a pivot is always W, out x in */
  } else if (L->transposed) {
    const float *B = v->data; /* [K, M] */
    for (int64_t k = 0; k < K; k++)
      for (int32_t m = 0; m < L->M; m++) W[m * K + k] = B[k * L->M + m];
  } else {
    memcpy(W, v->data, sizeof(float) * (size_t)(L->M * K));
  }
  return W;
}

int pv_value_own(pv_graph *g, int vi) {
  pv_value *v = &g->values[vi];
  if (!v->data || !pv_graph_in_storage(g, v->data)) return 0;
  void *p = pv_aligned_alloc(v->nbytes ? v->nbytes : 1);
  if (!p) return pv_error(PV_ENOMEM, "out of memory");
  memcpy(p, v->data, v->nbytes);
  v->data = p;
  return 0;
}

int pv_wlayer_store(pv_graph *g, const pv_wlayer *L, const float *W) {
  pv_value *v = &g->values[L->wv];
  int64_t K = (int64_t)L->C * L->kk;
  size_t nb = sizeof(float) * (size_t)(L->M * K);
  if (!v->data) {
    v->data = pv_aligned_alloc(nb);
    if (!v->data) return pv_error(PV_ENOMEM, "out of memory");
    v->nbytes = nb;
  } else {
    int rc = pv_value_own(g, L->wv);
    if (rc) return rc;
  }
  float *B = v->data;
  if (L->transposed) {
    for (int64_t k = 0; k < K; k++)
      for (int32_t m = 0; m < L->M; m++) B[k * L->M + m] = W[m * K + k];
  } else {
    memcpy(B, W, nb);
  }
  return 0;
}

int pv_graph_densify(pv_graph *g) {
  if (!g) return pv_error(PV_EINVAL, "densify: no graph");
  for (int i = 0; i < g->n_nodes; i++) {
    pv_wlayer L;
    if (!pv_wlayer_of(g, i, &L) || g->values[L.wv].data) continue;
    float *W = pv_wlayer_dense(g, &L);
    if (!W) return PV_ENOMEM;
    int rc = pv_wlayer_store(g, &L, W);
    free(W);
    if (rc) return rc;
  }
  return 0;
}
