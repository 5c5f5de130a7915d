/* Small helpers for building graphs with the IR API and running them
 * node by node with the reference ops (shape inference + pv_ref_node). */
#ifndef PV_OPS_HARNESS_H
#define PV_OPS_HARNESS_H
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"

static pv_graph *H;

static inline void h_new(int opset) {
  pv_graph_free(H);
  H = pv_graph_new();
  H->opset = opset;
}

/* A value with shape; data copied into a constant when given. */
static inline int h_val(const char *name, pv_dtype t, int ndim, const int64_t *dims,
                 const void *data) {
  int v = pv_graph_add_value(H, name);
  pv_value *x = &H->values[v];
  x->dtype = t;
  x->ndim = ndim;
  if (ndim > 0) memcpy(x->dims, dims, sizeof(int64_t) * ndim);
  if (data) {
    pv_tensor tt = pv_value_tensor(x);
    x->nbytes = pv_tensor_nbytes(&tt);
    x->data = pv_aligned_alloc(x->nbytes);
    memcpy(x->data, data, x->nbytes);
  }
  return v;
}

static inline int h_f32(const char *name, int ndim, const int64_t *dims, const float *d) {
  return h_val(name, PV_F32, ndim, dims, d);
}

static inline int h_i64(const char *name, int n, const int64_t *d) {
  int64_t dims[1] = {n};
  return h_val(name, PV_I64, 1, dims, d);
}

/* Runtime input (no data; fed by h_run). */
static inline int h_input(const char *name, pv_dtype t, int ndim, const int64_t *dims) {
  int v = h_val(name, t, ndim, dims, NULL);
  H->inputs = realloc(H->inputs, sizeof(int) * (H->n_inputs + 1));
  H->inputs[H->n_inputs++] = v;
  return v;
}

static inline void h_output(int v) {
  H->outputs = realloc(H->outputs, sizeof(int) * (H->n_outputs + 1));
  H->outputs[H->n_outputs++] = v;
}

static inline int h_node(const char *op, int n_in, const int *in, int n_out,
                  const int *out) {
  return pv_graph_add_node(H, op, op, in, n_in, out, n_out);
}

static inline int h_out(const char *name) { return pv_graph_add_value(H, name); }

static inline void h_ai(int node, const char *name, int64_t v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_INT, .i = v};
  pv_node_add_attr(H, node, &a);
}
static inline void h_af(int node, const char *name, float v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_FLOAT, .f = v};
  pv_node_add_attr(H, node, &a);
}
static inline void h_as(int node, const char *name, const char *s) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_STRING, .s = (char *)s};
  pv_node_add_attr(H, node, &a);
}
static inline void h_ais(int node, const char *name, int n, const int64_t *v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_INTS, .n = n,
               .ints = (int64_t *)v};
  pv_node_add_attr(H, node, &a);
}
static inline void h_afs(int node, const char *name, int n, const float *v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_FLOATS, .n = n,
               .floats = (float *)v};
  pv_node_add_attr(H, node, &a);
}

/* Results of the last h_run: vals indexed by value id; buffers allocated
 * by the run are freed by the next run. */
static pv_tensor *R;
static bool *R_owned;
static int R_n;

static inline void h_free_run(void) {
  for (int i = 0; i < R_n; i++)
    if (R_owned[i]) pv_free(R[i].data);
  free(R);
  free(R_owned);
  R = NULL;
  R_owned = NULL;
  R_n = 0;
}

/* Run every node of H in order; inputs in H->inputs order. Returns 0 or
 * the first error code (message in pv_errmsg()). */
static inline int h_run(const pv_tensor *inputs) {
  h_free_run();
  R_n = H->n_values;
  R = calloc(R_n ? R_n : 1, sizeof *R);
  R_owned = calloc(R_n ? R_n : 1, sizeof *R_owned);
  for (int v = 0; v < H->n_values; v++)
    if (H->values[v].data || H->values[v].pivot)
      R[v] = pv_value_tensor(&H->values[v]);
  for (int i = 0; i < H->n_inputs; i++) R[H->inputs[i]] = inputs[i];
  for (int i = 0; i < H->n_nodes; i++) {
    const pv_node *n = &H->nodes[i];
    int rc = pv_infer_node(H, n, R);
    if (rc) return rc;
    for (int j = 0; j < n->n_out; j++) {
      int v = n->out[j];
      if (v < 0) continue;
      if ((rc = pv_tensor_alloc(&R[v]))) return rc;
      R_owned[v] = true;
    }
    if ((rc = pv_ref_node(H, n, R))) return rc;
  }
  return 0;
}

/* Deterministic pseudo-random floats in [-1, 1). */
static inline void h_fill(float *p, size_t n, unsigned seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    p[i] = (float)((s >> 8) & 0xffff) / 32768.f - 1.f;
  }
}

static inline bool h_dims_are(const pv_tensor *t, int ndim, const int64_t *dims) {
  if (t->ndim != ndim) return false;
  for (int i = 0; i < ndim; i++)
    if (t->dims[i] != dims[i]) return false;
  return true;
}

/* Max |a-b| relative to max(1, |b|). */
static inline double h_maxerr(const float *a, const float *b, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs(b[i]));
    if (!(d <= e)) e = isnan(d) ? INFINITY : d;
  }
  return e;
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})
#define NDIMS(...) (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t))
#endif
