/* Helpers shared by the pivot and .pvm tests: a seeded RNG, structured
 * random matrices, and graph construction shortcuts. */
#ifndef PV_PIVOT_TESTLIB_H
#define PV_PIVOT_TESTLIB_H
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"

static inline uint64_t t_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static inline double t_unif(uint64_t *s) {
  return (double)(t_rand(s) >> 11) / 9007199254740992.0;
}
static inline float t_gauss(uint64_t *s) {
  double u = t_unif(s) + 1e-12, v = t_unif(s);
  return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}
/* A nonzero value bounded away from 0, so structure is exact. */
static inline float t_nonzero(uint64_t *s) {
  float g = t_gauss(s);
  return g >= 0 ? g + 0.1f : g - 0.1f;
}
static inline void t_shuffle(int32_t *p, int32_t n, uint64_t *s) {
  for (int32_t i = 0; i < n; i++) p[i] = i;
  for (int32_t i = n - 1; i > 0; i--) {
    int32_t j = (int32_t)(t_rand(s) % (uint64_t)(i + 1)), t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* Hidden structure: logical row r belongs to group rgrp[r], channel c to
 * cgrp[c]; the (row group g, channel group h) block is nonzero when
 * (h - g) mod n < c. Group sizes M/n and C/n (divisible). */
static inline float *t_structured(int32_t M, int32_t C, int32_t kk, int n,
                                  int c, uint64_t *s, int32_t *rgrp,
                                  int32_t *cgrp) {
  int32_t *pr = malloc(sizeof(int32_t) * M), *pc = malloc(sizeof(int32_t) * C);
  t_shuffle(pr, M, s);
  t_shuffle(pc, C, s);
  for (int32_t i = 0; i < M; i++) rgrp[pr[i]] = i / (M / n);
  for (int32_t j = 0; j < C; j++) cgrp[pc[j]] = j / (C / n);
  float *w = calloc((size_t)M * C * kk, sizeof(float));
  for (int32_t m = 0; m < M; m++)
    for (int32_t ch = 0; ch < C; ch++)
      if (((cgrp[ch] - rgrp[m]) % n + n) % n < c)
        for (int32_t t = 0; t < kk; t++)
          w[((size_t)m * C + ch) * kk + t] = t_nonzero(s);
  free(pr);
  free(pc);
  return w;
}

/* A constant FP32 value with the given dims and (copied) data. */
static inline int t_const(pv_graph *g, const char *name, const int64_t *dims,
                          int nd, const float *data) {
  int v = pv_graph_add_value(g, name);
  pv_value *val = &g->values[v];
  val->dtype = PV_F32;
  val->ndim = nd;
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= (val->dims[i] = dims[i]);
  val->nbytes = sizeof(float) * (size_t)n;
  val->data = pv_aligned_alloc(val->nbytes);
  if (data) memcpy(val->data, data, val->nbytes);
  return v;
}
static inline int t_act(pv_graph *g, const char *name) {
  int v = pv_graph_add_value(g, name);
  g->values[v].dtype = PV_F32;
  return v;
}
/* A graph input [batch, cols] of FP32. */
static inline int t_batch_input(pv_graph *g, const char *name, int64_t cols) {
  int x = t_act(g, name);
  g->values[x].ndim = 2;
  g->values[x].dims[0] = PV_DIM_BATCH;
  g->values[x].dims[1] = cols;
  return x;
}
static inline void t_int_attr(pv_graph *g, int node, const char *name,
                              int64_t i) {
  pv_attr a = {0};
  a.name = (char *)name;
  a.type = PV_ATTR_INT;
  a.i = i;
  pv_node_add_attr(g, node, &a);
}
static inline void t_ints_attr(pv_graph *g, int node, const char *name,
                               const int64_t *v, int n) {
  pv_attr a = {0};
  a.name = (char *)name;
  a.type = PV_ATTR_INTS;
  a.ints = (int64_t *)v;
  a.n = n;
  pv_node_add_attr(g, node, &a);
}
static inline int t_node1(pv_graph *g, const char *name, const char *op,
                          const int *in, int n_in, int out) {
  return pv_graph_add_node(g, name, op, in, n_in, &out, 1);
}
static inline void t_io(pv_graph *g, int in, int out) {
  g->n_inputs = 1;
  g->inputs = malloc(sizeof(int));
  g->inputs[0] = in;
  g->n_outputs = 1;
  g->outputs = malloc(sizeof(int));
  g->outputs[0] = out;
}
static inline double t_rel_l2(const float *a, const float *b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    den += (double)b[i] * b[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}
#endif
