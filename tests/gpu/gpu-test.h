/* Helpers for the GPU backend tests: build one-node graphs, run them
 * through a backend's prepare/execute, and compare with naive CPU
 * references written here (double accumulation, straight from the ONNX
 * operator definitions).
 */
#ifndef PV_GPU_TEST_H
#define PV_GPU_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pv-backend.h"
#include "pv-pivot.h"

static int failures;
#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (!(cond)) {                                                        \
      failures++;                                                         \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, " (last error: %s)\n", pv_errmsg());                \
    }                                                                     \
  } while (0)

static uint64_t rng_state = 88172645463325252ull;
static float frand(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = frand();
}

/* A graph under construction plus host tensors for one run. */
typedef struct tg {
  pv_graph *g;
  pv_tensor vals[64];
} tg;

static void tg_init(tg *t) {
  memset(t, 0, sizeof *t);
  t->g = pv_graph_new();
}

static void tg_free(tg *t) {
  for (int v = 0; v < t->g->n_values; v++)
    if (!t->g->values[v].data) pv_free(t->vals[v].data);
  pv_graph_free(t->g);
}

static int64_t numel(int ndim, const int64_t *d) {
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) n *= d[i];
  return n;
}

/* An activation value with host memory (filled with random data when
 * `random`, else with a sentinel so unwritten outputs show). */
static int tg_val(tg *t, const char *name, int ndim, const int64_t *dims, bool random) {
  int v = pv_graph_add_value(t->g, name);
  pv_value *pv = &t->g->values[v];
  pv->dtype = PV_F32;
  pv->ndim = ndim;
  memcpy(pv->dims, dims, sizeof(int64_t) * ndim);
  pv_tensor *x = &t->vals[v];
  x->dtype = PV_F32;
  x->ndim = ndim;
  memcpy(x->dims, dims, sizeof(int64_t) * ndim);
  pv_tensor_alloc(x);
  size_t n = (size_t)numel(ndim, dims);
  float *f = x->data;
  for (size_t i = 0; i < n; i++) f[i] = random ? frand() : -12345.0f;
  return v;
}

/* A constant (weight) value; data copied into graph-owned memory. */
static int tg_const(tg *t, const char *name, int ndim, const int64_t *dims, const float *data) {
  int v = pv_graph_add_value(t->g, name);
  pv_value *pv = &t->g->values[v];
  pv->dtype = PV_F32;
  pv->ndim = ndim;
  memcpy(pv->dims, dims, sizeof(int64_t) * ndim);
  size_t n = (size_t)numel(ndim, dims);
  pv->nbytes = n * sizeof(float);
  pv->data = pv_aligned_alloc(pv->nbytes ? pv->nbytes : 4);
  if (data) memcpy(pv->data, data, pv->nbytes);
  pv_tensor *x = &t->vals[v];
  x->dtype = PV_F32;
  x->ndim = ndim;
  memcpy(x->dims, dims, sizeof(int64_t) * ndim);
  x->data = pv->data;
  return v;
}

static int tg_node(tg *t, const char *op, const int *in, int n_in, int out) {
  int n = pv_graph_add_node(t->g, op, op, in, n_in, &out, 1);
  pv_graph_link(t->g);
  return n;
}

static void tg_ints(tg *t, int node, const char *name, const int64_t *v, int n) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_INTS, .ints = (int64_t *)v, .n = n};
  pv_node_add_attr(t->g, node, &a);
}
static void tg_int(tg *t, int node, const char *name, int64_t v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_INT, .i = v};
  pv_node_add_attr(t->g, node, &a);
}
static void tg_float(tg *t, int node, const char *name, float v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_FLOAT, .f = v};
  pv_node_add_attr(t->g, node, &a);
}

static void tg_output(tg *t, int v) {
  t->g->outputs = realloc(t->g->outputs, sizeof(int) * (t->g->n_outputs + 1));
  t->g->outputs[t->g->n_outputs++] = v;
}

/* prepare + execute + release of `nodes` on backend (it, ctx). */
static int tg_run(tg *t, const pv_backend_iface *it, void *ctx, const int *nodes, int n) {
  void *plan = NULL;
  int rc = it->prepare(ctx, t->g, nodes, n, &plan);
  if (rc) return rc;
  pv_run_ctx rc_ = {.vals = t->vals, .batch = 1};
  rc = it->execute(plan, &rc_);
  it->release(plan);
  pv_free(rc_.scratch);
  return rc;
}

/* Max |a-b| / max(1, max|b|). */
static double rel_err(const float *a, const float *b, size_t n) {
  double m = 1, e = 0;
  for (size_t i = 0; i < n; i++) {
    if (fabs(b[i]) > m) m = fabs(b[i]);
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= e)) e = d; /* NaN propagates as a failure */
  }
  return e / m;
}

static float ref_act(double v, pv_act act, float a, float b) {
  switch (act) {
  case PV_ACT_RELU: return v > 0 ? (float)v : 0.0f;
  case PV_ACT_LEAKY: return v < 0 ? (float)(v * a) : (float)v;
  case PV_ACT_CLIP: return (float)(v < a ? a : v > b ? b : v);
  case PV_ACT_SIGMOID: return (float)(1.0 / (1.0 + exp(-v)));
  case PV_ACT_TANH: return (float)tanh(v);
  default: return (float)v;
  }
}

/* y[p, m] = act(sum_k W[m,k] x[p,k] + bias[m]); W logical [M,K]. */
static void ref_gemm(const float *x, const float *w, const float *bias, float *y, int P, int M,
                     int K, pv_act act, float a, float b) {
  for (int p = 0; p < P; p++)
    for (int m = 0; m < M; m++) {
      double s = bias ? bias[m] : 0;
      for (int k = 0; k < K; k++) s += (double)w[(size_t)m * K + k] * x[(size_t)p * K + k];
      y[(size_t)p * M + m] = ref_act(s, act, a, b);
    }
}

typedef struct convp {
  int N, C, H, W, M, kh, kw, sh, sw, ph, pw, dh, dw, group, OH, OW;
} convp;

static void ref_conv(const convp *c, const float *x, const float *w, const float *bias,
                     float *y, pv_act act, float a, float b) {
  int cg = c->C / c->group, mg = c->M / c->group;
  for (int n = 0; n < c->N; n++)
    for (int m = 0; m < c->M; m++)
      for (int oh = 0; oh < c->OH; oh++)
        for (int ow = 0; ow < c->OW; ow++) {
          double s = bias ? bias[m] : 0;
          int g = m / mg;
          for (int ci = 0; ci < cg; ci++)
            for (int i = 0; i < c->kh; i++)
              for (int j = 0; j < c->kw; j++) {
                int ih = oh * c->sh - c->ph + i * c->dh, iw = ow * c->sw - c->pw + j * c->dw;
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                s += (double)w[(((size_t)m * cg + ci) * c->kh + i) * c->kw + j] *
                     x[(((size_t)n * c->C + g * cg + ci) * c->H + ih) * c->W + iw];
              }
          y[(((size_t)n * c->M + m) * c->OH + oh) * c->OW + ow] = ref_act(s, act, a, b);
        }
}

/* A pivoted matrix M x (C*kk) on the given grid; conn[rg*nc+cg] says
 * which blocks exist. Random permutations and values. *dense receives
 * the logical matrix (malloc'd). */
static pv_pivot *make_pivot(int M, int C, int kk, int nr, int nc, const int *row_off,
                            const int *col_off, const int *conn, float **dense) {
  pv_pivot *p = calloc(1, sizeof *p);
  p->M = M, p->C = C, p->kk = kk, p->nr = nr, p->nc = nc;
  p->perm_r = malloc(sizeof(int32_t) * M);
  p->perm_c = malloc(sizeof(int32_t) * C);
  p->row_off = malloc(sizeof(int32_t) * (nr + 1));
  p->col_off = malloc(sizeof(int32_t) * (nc + 1));
  for (int i = 0; i < M; i++) p->perm_r[i] = i;
  for (int i = 0; i < C; i++) p->perm_c[i] = i;
  for (int i = M - 1; i > 0; i--) {
    int j = (int)((frand() + 1) * 0.5 * (i + 1)) % (i + 1), tmp = p->perm_r[i];
    p->perm_r[i] = p->perm_r[j], p->perm_r[j] = tmp;
  }
  for (int i = C - 1; i > 0; i--) {
    int j = (int)((frand() + 1) * 0.5 * (i + 1)) % (i + 1), tmp = p->perm_c[i];
    p->perm_c[i] = p->perm_c[j], p->perm_c[j] = tmp;
  }
  memcpy(p->row_off, row_off, sizeof(int32_t) * (nr + 1));
  memcpy(p->col_off, col_off, sizeof(int32_t) * (nc + 1));
  int nb = 0;
  uint64_t len = 0;
  for (int i = 0; i < nr * nc; i++) nb += conn[i] != 0;
  p->blocks = calloc(nb ? nb : 1, sizeof *p->blocks);
  for (int r = 0; r < nr; r++)
    for (int c = 0; c < nc; c++)
      if (conn[r * nc + c]) {
        pv_pivot_block *b = &p->blocks[p->n_blocks++];
        b->rg = r, b->cg = c, b->offset = len;
        len += (uint64_t)(row_off[r + 1] - row_off[r]) * (col_off[c + 1] - col_off[c]) * kk;
      }
  p->data_len = len;
  p->data = pv_aligned_alloc(len * sizeof(float) + 4);
  p->data_owned = true;
  fill(p->data, len);
  size_t K = (size_t)C * kk;
  *dense = calloc((size_t)M * K, sizeof(float));
  for (int bi = 0; bi < p->n_blocks; bi++) {
    const pv_pivot_block *b = &p->blocks[bi];
    int r0 = row_off[b->rg], r1 = row_off[b->rg + 1], c0 = col_off[b->cg], c1 = col_off[b->cg + 1];
    const float *d = p->data + b->offset;
    for (int i = r0; i < r1; i++)
      for (int j = c0; j < c1; j++)
        for (int t = 0; t < kk; t++)
          (*dense)[(size_t)p->perm_r[i] * K + (size_t)p->perm_c[j] * kk + t] =
              d[(size_t)(i - r0) * (c1 - c0) * kk + (j - c0) * kk + t];
  }
  return p;
}

#endif
