/* Graph rewrites run after import: drop Identity/Dropout, fold constant
 * subgraphs, fold BatchNormalization into the producing Conv/Gemm, fuse
 * activations into their producer. Every pass keeps graph outputs
 * produced under their names and ends with pv_graph_compact(). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pv-ops-ext.h"
#include "pv-pivot.h"

/* Folding must not turn a small shape subgraph into a huge constant. */
#define FOLD_MAX_BYTES ((size_t)64 << 20)

static void kill_node(pv_node *n) {
  free(n->op);
  n->op = NULL;
}

static bool is_output(const pv_graph *g, int v) {
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] == v) return true;
  return false;
}

static bool op_is(const pv_node *n, const char *op) {
  return n->op && !strcmp(n->op, op);
}

static void replace_uses(pv_graph *g, int from, int to) {
  for (int i = 0; i < g->n_nodes; i++) {
    pv_node *n = &g->nodes[i];
    if (!n->op) continue;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] == from) n->in[j] = to;
  }
}

/* The node producing v when v is its first output and nobody else (no
 * other node, no graph output) reads v; else NULL. */
static pv_node *sole_producer(pv_graph *g, int v) {
  if (v < 0 || is_output(g, v)) return NULL;
  int p = g->values[v].producer;
  if (p < 0 || !g->nodes[p].op || g->nodes[p].out[0] != v) return NULL;
  if (pv_graph_consumers(g, v, NULL, 0) != 1) return NULL;
  return &g->nodes[p];
}

/* Let node p write `to` where it wrote `from` (p's output is renamed so a
 * graph output keeps its name). */
static void redirect_output(pv_graph *g, int p, int from, int to) {
  pv_node *n = &g->nodes[p];
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] == from) n->out[j] = to;
  g->values[to].producer = p;
  g->values[from].producer = -1;
}

int pv_pass_eliminate_identity(pv_graph *g) {
  pv_graph_link(g);
  for (int i = 0; i < g->n_nodes; i++) {
    pv_node *n = &g->nodes[i];
    if (!op_is(n, "Identity") && !op_is(n, "Dropout")) continue;
    if (pv_node_guarded(n)) continue; /* its last input is the guard */
    if (n->n_in < 1 || n->in[0] < 0 || n->n_out < 1 || n->out[0] < 0) continue;
    /* A Dropout whose mask is read stays (inference mask is all ones, but
     * its reader needs a producer). */
    if (n->n_out > 1 && n->out[1] >= 0 &&
        pv_graph_consumers(g, n->out[1], NULL, 0) > 0)
      continue;
    int in = n->in[0], out = n->out[0];
    if (!is_output(g, out)) {
      replace_uses(g, out, in);
      kill_node(n);
      continue;
    }
    pv_node *p = sole_producer(g, in);
    if (!p) continue; /* e.g. output = Identity(input): keep the copy */
    redirect_output(g, (int)(p - g->nodes), in, out);
    kill_node(n);
  }
  return pv_graph_compact(g);
}

static bool static_dims(const pv_value *v) {
  if (v->ndim < 0) return false;
  for (int d = 0; d < v->ndim; d++)
    if (v->dims[d] < 0) return false;
  return true;
}

/* Whether n can be evaluated now: all inputs constant (Shape/Size: input
 * dims fully known, batch included). */
static bool foldable(const pv_graph *g, const pv_node *n) {
  /* A node of an If branch runs only when its guard holds. */
  if (pv_node_guarded(n) || !pv_ref_supports(g, n)) return false;
  if (n->n_in == 0 && !op_is(n, "Constant")) return false;
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0 && is_output(g, n->out[j])) return false;
  bool dims_only = op_is(n, "Shape") || op_is(n, "Size");
  for (int j = 0; j < n->n_in; j++) {
    int v = n->in[j];
    if (v < 0) continue;
    const pv_value *val = &g->values[v];
    if (!static_dims(val)) return false;
    if (!dims_only && !val->data) return false;
  }
  return true;
}

static int fold_node(pv_graph *g, pv_node *n, pv_tensor *vals) {
  for (int j = 0; j < n->n_in; j++)
    if (n->in[j] >= 0) vals[n->in[j]] = pv_value_tensor(&g->values[n->in[j]]);
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0) vals[n->out[j]] = (pv_tensor){0};
  int rc = pv_infer_node(g, n, vals);
  if (rc) return rc;
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0 && pv_tensor_nbytes(&vals[n->out[j]]) > FOLD_MAX_BYTES)
      return 1; /* too big to keep as a constant: leave the node */
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0 && (rc = pv_tensor_alloc(&vals[n->out[j]]))) goto fail;
  if ((rc = pv_ref_node(g, n, vals))) goto fail;
  for (int j = 0; j < n->n_out; j++) {
    int v = n->out[j];
    if (v < 0) continue;
    pv_value *val = &g->values[v];
    const pv_tensor *t = &vals[v];
    val->dtype = t->dtype;
    val->ndim = t->ndim;
    memcpy(val->dims, t->dims, sizeof val->dims);
    val->data = t->data;
    val->nbytes = pv_tensor_nbytes(t);
    val->producer = -1;
    vals[v].data = NULL;
  }
  kill_node(n);
  return 0;
fail:
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0) {
      pv_free(vals[n->out[j]].data);
      vals[n->out[j]].data = NULL;
    }
  return rc;
}

/* Fill unknown output dims of n when all its inputs have static dims, so
 * a Shape further down (of an activation, not only of a graph input) can
 * fold. Failure only means the shape stays unknown until run time. */
static void propagate_dims(pv_graph *g, pv_node *n, pv_tensor *vals) {
  if (pv_node_guarded(n)) return;
  bool need = false;
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0 && g->values[n->out[j]].ndim < 0) need = true;
  if (!need || n->n_in == 0) return;
  for (int j = 0; j < n->n_in; j++) {
    int v = n->in[j];
    if (v < 0) continue;
    if (!static_dims(&g->values[v]) || g->values[v].dtype == PV_UNDEFINED) return;
    vals[v] = pv_value_tensor(&g->values[v]);
  }
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0) vals[n->out[j]] = (pv_tensor){0};
  if (pv_infer_node(g, n, vals)) return;
  for (int j = 0; j < n->n_out; j++) {
    pv_value *val = n->out[j] >= 0 ? &g->values[n->out[j]] : NULL;
    if (!val || val->ndim >= 0) continue;
    val->dtype = vals[n->out[j]].dtype;
    val->ndim = vals[n->out[j]].ndim;
    memcpy(val->dims, vals[n->out[j]].dims, sizeof val->dims);
  }
}

int pv_pass_fold_constants(pv_graph *g) {
  pv_graph_link(g);
  pv_tensor *vals = calloc(g->n_values ? g->n_values : 1, sizeof *vals);
  if (!vals) return pv_error(PV_ENOMEM, "out of memory");
  int rc = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    pv_node *n = &g->nodes[i];
    if (!n->op) continue;
    if (!foldable(g, n)) {
      /* Shapes that depend on activations' data are unknown until the
       * run, whatever the file declares (an exporter's traced sizes). */
      if (pv_ext_data_shaped(n)) {
        for (int j = 0; j < n->n_out; j++)
          if (n->out[j] >= 0) g->values[n->out[j]].ndim = -1;
        continue;
      }
      propagate_dims(g, n, vals);
      continue;
    }
    rc = fold_node(g, n, vals);
    if (rc < 0) break;
    rc = 0;
  }
  free(vals);
  if (rc) return pv_error_prefix(rc, "constant folding");
  return pv_graph_compact(g);
}

static const float *const_f32(const pv_graph *g, int v, int64_t count) {
  if (v < 0) return NULL;
  const pv_value *val = &g->values[v];
  if (!val->data || val->dtype != PV_F32) return NULL;
  pv_tensor t = pv_value_tensor(val);
  return pv_tensor_numel(&t) == count ? val->data : NULL;
}

/* Fold BatchNormalization node b into its producer p (Conv or Gemm).
 * Returns 1 when the pattern does not apply. */
static int fold_bn_into(pv_graph *g, int bi) {
  pv_node *b = &g->nodes[bi];
  if (b->n_in < 5 || b->n_out < 1 || b->out[0] < 0) return 1;
  if (b->n_out > 1)
    for (int j = 1; j < b->n_out; j++)
      if (b->out[j] >= 0 && pv_graph_consumers(g, b->out[j], NULL, 0)) return 1;
  pv_node *p = sole_producer(g, b->in[0]);
  if (!p || p->act != PV_ACT_NONE) return 1;
  bool conv = op_is(p, "Conv"), gemm = op_is(p, "Gemm");
  if ((!conv && !gemm) || p->n_in < 2 || p->in[1] < 0) return 1;
  const pv_value *w = &g->values[p->in[1]];
  if (!w->data || w->pivot || w->dtype != PV_F32 || w->ndim < 2) return 1;
  bool tb = gemm && pv_attr_int(p, "transB", 0);
  int64_t C = conv || tb ? w->dims[0] : w->dims[1];
  if (gemm && w->ndim != 2) return 1;
  const float *sc = const_f32(g, b->in[1], C), *bb = const_f32(g, b->in[2], C),
              *mu = const_f32(g, b->in[3], C), *var = const_f32(g, b->in[4], C);
  if (!sc || !bb || !mu || !var) return 1;
  /* Existing bias: Conv [C]; Gemm C broadcast along rows ([C], [1,C], scalar). */
  int bv = p->n_in > 2 ? p->in[2] : -1;
  const float *old_b = NULL;
  bool scalar_b = false;
  if (bv >= 0) {
    if (!(old_b = const_f32(g, bv, C))) {
      if (!gemm || !(old_b = const_f32(g, bv, 1)) || C == 1) return 1;
      scalar_b = true;
    }
    if (gemm && g->values[bv].ndim == 2 && g->values[bv].dims[0] != 1) return 1;
  }
  float beta = gemm ? pv_attr_float(p, "beta", 1.f) : 1.f;
  float eps = pv_attr_float(b, "epsilon", 1e-5f);
  pv_tensor wt = pv_value_tensor(w);
  size_t wn = (size_t)pv_tensor_numel(&wt);
  float *nw = pv_aligned_alloc(wn * sizeof(float));
  float *nb = pv_aligned_alloc((size_t)C * sizeof(float));
  if (!nw || !nb) {
    pv_free(nw);
    pv_free(nb);
    return pv_error(PV_ENOMEM, "out of memory folding BatchNormalization");
  }
  const float *W = w->data;
  size_t per = wn / (size_t)C;
  for (int64_t c = 0; c < C; c++) {
    float s = sc[c] / sqrtf(var[c] + eps);
    float ob = old_b ? beta * old_b[scalar_b ? 0 : c] : 0.f;
    nb[c] = (ob - mu[c]) * s + bb[c];
    if (conv || tb)
      for (size_t k = 0; k < per; k++) nw[c * per + k] = W[c * per + k] * s;
    else
      for (size_t k = 0; k < per; k++) nw[k * C + c] = W[k * C + c] * s;
  }
  int64_t wd[PV_MAX_DIMS];
  memcpy(wd, w->dims, sizeof wd);
  int wndim = w->ndim, pi = (int)(p - g->nodes);
  char base[200];
  snprintf(base, sizeof base, "%s", g->values[b->out[0]].name);
  int nwv = pv_graph_add_const(g, base, "_w", PV_F32, nw, wndim, wd);
  if (nwv < 0) {
    pv_free(nb);
    return nwv;
  }
  int nbv = pv_graph_add_const(g, base, "_b", PV_F32, nb, 1, &C);
  if (nbv < 0) return nbv;
  p = &g->nodes[pi];
  b = &g->nodes[bi];
  if (p->n_in < 3) {
    int *ni = realloc(p->in, sizeof(int) * 3);
    if (!ni) return pv_error(PV_ENOMEM, "out of memory");
    p->in = ni;
    p->n_in = 3;
  }
  p->in[1] = nwv;
  p->in[2] = nbv;
  if (gemm)
    for (int k = 0; k < p->n_attrs; k++)
      if (!strcmp(p->attrs[k].name, "beta")) {
        p->attrs[k].type = PV_ATTR_FLOAT;
        p->attrs[k].f = 1.f;
      }
  redirect_output(g, pi, b->in[0], b->out[0]);
  kill_node(b);
  return 0;
}

int pv_pass_fold_batchnorm(pv_graph *g) {
  pv_graph_link(g);
  for (int i = 0; i < g->n_nodes; i++) {
    if (!op_is(&g->nodes[i], "BatchNormalization") || pv_node_guarded(&g->nodes[i]))
      continue;
    int rc = fold_bn_into(g, i);
    if (rc < 0) return rc;
  }
  return pv_graph_compact(g);
}

/* Constant FP32 scalar input k of n, if present. */
static bool scalar_in(const pv_graph *g, const pv_node *n, int k, float *out) {
  if (k >= n->n_in || n->in[k] < 0) return true;
  const float *p = const_f32(g, n->in[k], 1);
  if (!p) return false;
  *out = *p;
  return true;
}

int pv_pass_fuse_activations(pv_graph *g) {
  pv_graph_link(g);
  for (int i = 0; i < g->n_nodes; i++) {
    pv_node *a = &g->nodes[i];
    if (!a->op || a->n_in < 1 || a->n_out != 1 || a->out[0] < 0) continue;
    if (pv_node_guarded(a)) continue;
    pv_act act;
    float alpha = 0, beta = 0;
    if (op_is(a, "Relu")) act = PV_ACT_RELU;
    else if (op_is(a, "Sigmoid")) act = PV_ACT_SIGMOID;
    else if (op_is(a, "Tanh")) act = PV_ACT_TANH;
    else if (op_is(a, "LeakyRelu")) {
      act = PV_ACT_LEAKY;
      alpha = pv_attr_float(a, "alpha", 0.01f);
    } else if (op_is(a, "Clip")) {
      act = PV_ACT_CLIP;
      alpha = -INFINITY;
      beta = INFINITY;
      if (g->opset < 11) {
        alpha = pv_attr_float(a, "min", alpha);
        beta = pv_attr_float(a, "max", beta);
      } else if (!scalar_in(g, a, 1, &alpha) || !scalar_in(g, a, 2, &beta)) {
        continue; /* bounds computed at run time */
      }
    } else {
      continue;
    }
    pv_node *p = sole_producer(g, a->in[0]);
    if (!p) continue;
    /* Exporters write ReLU6 as Relu then Clip(0, 6); clip(relu(x), lo, hi)
     * is clip(x, max(lo, 0), hi), so the pair becomes one activation. */
    bool relu_clip = p->act == PV_ACT_RELU && act == PV_ACT_CLIP;
    if (p->act != PV_ACT_NONE && !relu_clip) continue;
    if (!op_is(p, "Conv") && !op_is(p, "Gemm") && !op_is(p, "MatMul") &&
        !op_is(p, "Add"))
      continue;
    pv_dtype t = g->values[a->in[0]].dtype;
    if (t != PV_F32 && t != PV_UNDEFINED) continue;
    if (relu_clip && alpha < 0) alpha = 0;
    p->act = act;
    p->act_alpha = alpha;
    p->act_beta = beta;
    redirect_output(g, (int)(p - g->nodes), a->in[0], a->out[0]);
    kill_node(a);
  }
  return pv_graph_compact(g);
}

/* FP16 models compute in FP32. Converters (onnxconverter-common's
 * float16 conversion, fp16 exports) store weights in FP16 and cast
 * activations to it; the kernels are FP32 only. So: FP16 constants become
 * FP32 copies; a Cast to FP16 stays (it rounds, as in the model) and is
 * followed by a cast back to FP32 for its readers, as is a graph input
 * declared FP16; every other FP16 value is computed in FP32, and a graph
 * output declared FP16 gets a final Cast so clients see the declared
 * type. Results differ from an FP16 runtime by FP16's rounding of
 * intermediate values (ours are more precise). */
static int add_cast(pv_graph *g, int from, int to, pv_dtype t) {
  char nm[64];
  snprintf(nm, sizeof nm, "fp16_cast_%d", to);
  int nd = pv_graph_add_node(g, nm, "Cast", &from, 1, &to, 1);
  if (nd < 0) return nd;
  pv_attr a = {.name = "to", .type = PV_ATTR_INT, .i = t};
  return pv_node_add_attr(g, nd, &a);
}

static int new_like(pv_graph *g, int v, pv_dtype t) {
  size_t len = strlen(g->values[v].name) + 8;
  char *nm = malloc(len);
  if (!nm) return pv_error(PV_ENOMEM, "out of memory");
  snprintf(nm, len, "%s__fp32", g->values[v].name);
  int w = pv_graph_add_value(g, nm);
  free(nm);
  if (w < 0) return w;
  pv_value *a = &g->values[v], *b = &g->values[w];
  b->dtype = t;
  b->ndim = a->ndim;
  memcpy(b->dims, a->dims, sizeof b->dims);
  return w;
}

static bool is_input(const pv_graph *g, int v) {
  for (int i = 0; i < g->n_inputs; i++)
    if (g->inputs[i] == v) return true;
  return false;
}

int pv_pass_fp16_to_fp32(pv_graph *g) {
  pv_graph_link(g);
  int nv = g->n_values, nn = g->n_nodes, rc;
  bool any = false;
  for (int v = 0; v < nv && !any; v++) any = g->values[v].dtype == PV_F16;
  for (int i = 0; i < nn && !any; i++) {
    const pv_attr *a = op_is(&g->nodes[i], "Cast") ? pv_node_attr(&g->nodes[i], "to") : NULL;
    any = a && a->i == PV_F16;
  }
  if (!any) return 0;
  for (int v = 0; v < nv; v++) {
    if (g->values[v].dtype != PV_F16 || !g->values[v].data) continue;
    /* A constant: an FP32 copy takes its place. */
    size_t cnt = g->values[v].nbytes / 2;
    int w = new_like(g, v, PV_F32);
    if (w < 0) return w;
    float *d = pv_aligned_alloc(cnt ? cnt * 4 : 4);
    if (!d) return pv_error(PV_ENOMEM, "out of memory");
    const uint16_t *h = g->values[v].data;
    for (size_t i = 0; i < cnt; i++) d[i] = pv_f16_to_f32(h[i]);
    g->values[w].data = d;
    g->values[w].nbytes = cnt * 4;
    replace_uses(g, v, w);
    for (int i = 0; i < g->n_outputs; i++)
      if (g->outputs[i] == v) g->outputs[i] = w;
  }
  for (int v = 0; v < nv; v++) {
    if (g->values[v].data) continue;
    int p = g->values[v].producer;
    const pv_attr *to = p >= 0 && op_is(&g->nodes[p], "Cast")
                            ? pv_node_attr(&g->nodes[p], "to") : NULL;
    bool cast16 = to && to->i == PV_F16;
    /* Activations are often untyped in the file: a Cast names FP16. */
    if (g->values[v].dtype != PV_F16 && !cast16) continue;
    if (is_input(g, v) || cast16) {
      /* Rounded to FP16 on purpose: readers get it back in FP32. */
      int w = new_like(g, v, PV_F32);
      if (w < 0) return w;
      replace_uses(g, v, w);
      if ((rc = add_cast(g, v, w, PV_F32))) return rc;
      continue;
    }
    if (is_output(g, v) && p >= 0) {
      int w = new_like(g, v, PV_F32);
      if (w < 0) return w;
      replace_uses(g, v, w);
      redirect_output(g, p, v, w);
      if ((rc = add_cast(g, w, v, PV_F16))) return rc;
      continue;
    }
    g->values[v].dtype = PV_F32;
  }
  /* Values typed by an attribute (ConstantOfShape's value) stay as the
   * model says; the ops that make them take FP16 through Cast. */
  return pv_graph_compact(g);
}

int pv_passes_run(pv_graph *g) {
  int rc;
  if ((rc = pv_pass_fp16_to_fp32(g))) return rc;
  if ((rc = pv_pass_eliminate_identity(g))) return rc;
  if ((rc = pv_pass_fold_constants(g))) return rc;
  if ((rc = pv_pass_split_gru(g))) return rc;
  if ((rc = pv_pass_fold_batchnorm(g))) return rc;
  return pv_pass_fuse_activations(g);
}
