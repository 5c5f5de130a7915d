/* Models and execution: load → passes → backend assignment → prepare;
 * per input shape: shape inference, plan-time evaluation of shape
 * arithmetic, and a memory plan that reuses activation buffers. */
#include "config.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pv-backend.h"
#include "pv-ops-ext.h"
#include "pv-pivot.h"

#define PV_MAX_BACKENDS 8

typedef struct part {
  int backend;   /* index into model.backends */
  int *nodes;
  int n_nodes;
  void *plan;
} part;

struct pv_model {
  atomic_int refs;
  pv_graph *g;
  int n_backends;
  pv_backend *backends[PV_MAX_BACKENDS];
  int *node_backend; /* per node: backend index, -1 = evaluated at plan time,
                        NODE_DATA_SHAPED = by the engine during the run */
  bool *static_val;  /* per value: known at plan time (constant or shape math) */
  bool data_shaped;  /* has such nodes: every run infers shapes as it goes */
  int n_parts;
  part *parts;
};

struct pv_exec {
  pv_model *m;
  bool planned;
  int64_t in_dims[16][PV_MAX_DIMS]; /* input dims of the current plan */
  pv_tensor *vals;
  void **owned;   /* per value: data this exec owns (plan-time values; every
                     value of a data-shaped run) */
  size_t *owned_cap; /* bytes of owned[v]: data-shaped runs keep it across runs */
  char *arena;
  size_t arena_len;
  size_t peak;
  pv_run_ctx rc;
};

/* ------------------------------------------------------------ scratch */

void *pv_run_scratch(pv_run_ctx *rc, size_t bytes) {
  if (bytes <= rc->scratch_len) return rc->scratch;
  void *p = pv_aligned_alloc(bytes);
  if (!p) {
    pv_error(PV_ENOMEM, "cannot allocate %zu bytes of scratch", bytes);
    return NULL;
  }
  pv_free(rc->scratch);
  rc->scratch = p;
  rc->scratch_len = bytes;
  return p;
}

/* ------------------------------------------------------------ loading */

static bool is_pvm(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  char magic[8] = {0};
  size_t n = fread(magic, 1, sizeof magic, f);
  fclose(f);
  return n == 8 && !memcmp(magic, "PIVOTPVM", 8);
}

pv_model *pv_model_load(const char *path, const pv_load_opts *opts) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    pv_error(PV_EIO, "%s: cannot open: %m", path);
    return NULL;
  }
  fclose(f);
  bool pvm = is_pvm(path);
  pv_graph *g = pvm ? pv_pvm_load(path) : pv_onnx_load(path);
  if (!g) {
    return NULL; /* importers name the file */
  }
  pv_load_opts o = opts ? *opts : (pv_load_opts){0};
  /* A .pvm was optimised by the converter already. */
  if (pvm) o.no_passes = true;
  pv_model *m = pv_model_from_graph(g, &o);
  if (!m) pv_error_prefix(PV_EINVAL, "%s", path);
  return m;
}

/* A node whose output shape depends on its input data (NonZero,
 * NonMaxSuppression, Compress on activations): the engine runs it between
 * the backends' parts and infers the nodes after it from what it gave. */
#define NODE_DATA_SHAPED (-2)

static bool is_shape_op(const char *op) {
  return !strcmp(op, "Shape") || !strcmp(op, "Size");
}

/* Mark values computable at plan time: constants, and outputs of nodes
 * all of whose inputs are (Shape/Size need only dims). */
static int mark_static(pv_model *m) {
  pv_graph *g = m->g;
  m->static_val = calloc(g->n_values ? g->n_values : 1, sizeof(bool));
  m->node_backend = calloc(g->n_nodes ? g->n_nodes : 1, sizeof(int));
  if (!m->static_val || !m->node_backend) return pv_error(PV_ENOMEM, "out of memory");
  for (int v = 0; v < g->n_values; v++)
    m->static_val[v] = g->values[v].data || g->values[v].pivot;
  for (int i = 0; i < g->n_inputs; i++) m->static_val[g->inputs[i]] = false;
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    /* A Shape in an If branch is static only with its guard: its guard
     * may come from a part that has not run when the plan is made. */
    bool st = is_shape_op(n->op) && !pv_node_guarded(n);
    if (!st && n->n_in > 0) {
      st = true;
      for (int j = 0; j < n->n_in; j++)
        if (n->in[j] >= 0 && !m->static_val[n->in[j]]) st = false;
    }
    /* Outputs of a node with no inputs (Constant-like ops, RandomX) are
     * left to the backend unless already constant. */
    if (n->n_in == 0) st = false;
    m->node_backend[i] = st ? -1 : 0;
    if (!st && (pv_ext_data_shaped(n) || pv_node_guarded(n))) {
      m->node_backend[i] = NODE_DATA_SHAPED;
      m->data_shaped = true;
    }
    if (st)
      for (int j = 0; j < n->n_out; j++)
        if (n->out[j] >= 0) m->static_val[n->out[j]] = true;
  }
  return 0;
}

static int assign_backends(pv_model *m) {
  pv_graph *g = m->g;
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    if (m->node_backend[i] < 0) {
      pv_node bare = *n;
      if (pv_node_guarded(n)) bare.n_in--; /* the guard is not an input of the op */
      if (!pv_ref_supports(g, &bare))
        return pv_error(PV_EUNSUPPORTED,
                        "node '%s': op '%s' (opset %d) is not supported", n->name,
                        n->op, g->opset);
      continue;
    }
    int chosen = -1;
    for (int b = 0; b < m->n_backends && chosen < 0; b++) {
      const pv_backend_iface *it = pv_backend_iface_of(m->backends[b]);
      if (it->supports(pv_backend_ctx(m->backends[b]), g, n)) chosen = b;
    }
    if (chosen < 0) {
      char names[256] = "";
      for (int b = 0; b < m->n_backends; b++) {
        size_t l = strlen(names);
        snprintf(names + l, sizeof names - l, "%s%s", b ? ", " : "",
                 pv_backend_name(m->backends[b]));
      }
      return pv_error(PV_EUNSUPPORTED,
                      "node '%s': op '%s'%s%s (opset %d) is not supported by any backend (%s)",
                      n->name, n->op, n->domain && *n->domain ? " in domain " : "",
                      n->domain ? n->domain : "", g->opset, names);
    }
    m->node_backend[i] = chosen;
  }
  return 0;
}

/* Split the runtime nodes into maximal runs of one backend, in order, and
 * prepare each. */
static int make_parts(pv_model *m, int *failed) {
  pv_graph *g = m->g;
  m->parts = calloc(g->n_nodes ? g->n_nodes : 1, sizeof(part));
  if (!m->parts) return pv_error(PV_ENOMEM, "out of memory");
  bool cut = false; /* a data-shaped node ends the part before it */
  for (int i = 0; i < g->n_nodes; i++) {
    int b = m->node_backend[i];
    if (b == NODE_DATA_SHAPED) cut = true;
    if (b < 0) continue;
    part *p = m->n_parts ? &m->parts[m->n_parts - 1] : NULL;
    if (!p || p->backend != b || cut) {
      cut = false;
      p = &m->parts[m->n_parts++];
      p->backend = b;
      p->nodes = malloc(sizeof(int) * g->n_nodes);
      if (!p->nodes) return pv_error(PV_ENOMEM, "out of memory");
    }
    p->nodes[p->n_nodes++] = i;
  }
  for (int i = 0; i < m->n_parts; i++) {
    part *p = &m->parts[i];
    pv_backend *b = m->backends[p->backend];
    const pv_backend_iface *it = pv_backend_iface_of(b);
    int rc = it->prepare(pv_backend_ctx(b), g, p->nodes, p->n_nodes, &p->plan);
    if (rc) {
      *failed = p->backend;
      return pv_error_prefix(rc, "backend '%s': prepare", pv_backend_name(b));
    }
  }
  return 0;
}

static void free_parts(pv_model *m) {
  for (int i = 0; i < m->n_parts; i++) {
    part *p = &m->parts[i];
    if (p->plan) pv_backend_iface_of(m->backends[p->backend])->release(p->plan);
    free(p->nodes);
  }
  free(m->parts);
  m->parts = NULL;
  m->n_parts = 0;
}

/* A backend that fails to prepare (device memory, a driver error) hands
 * its nodes to the CPU backend, which supports every op, so the model
 * still loads; only a CPU failure fails the load. */
static int make_parts_or_fall_back(pv_model *m) {
  int cpu = -1;
  for (int b = 0; b < m->n_backends; b++)
    if (!strcmp(pv_backend_name(m->backends[b]), "cpu")) cpu = b;
  for (;;) {
    int failed = -1;
    int rc = make_parts(m, &failed);
    if (!rc || failed < 0 || failed == cpu || cpu < 0) return rc;
    pv_log(PV_LOG_WARN, "%s; its nodes run on the CPU backend", pv_errmsg());
    free_parts(m);
    for (int i = 0; i < m->g->n_nodes; i++)
      if (m->node_backend[i] == failed) m->node_backend[i] = cpu;
  }
}

static void model_free(pv_model *m) {
  free_parts(m);
  for (int b = 0; b < m->n_backends; b++) pv_backend_put(m->backends[b]);
  free(m->node_backend);
  free(m->static_val);
  pv_graph_free(m->g);
  free(m);
}

/* Zero-filled inputs at batch 1 when every dim but the batch is known. */
static int warm_up(pv_model *m) {
  pv_graph *g = m->g;
  pv_tensor in[16];
  int n = g->n_inputs;
  if (n > 16) return 0;
  int rc = 0;
  for (int i = 0; i < n; i++) {
    const pv_value *v = &g->values[g->inputs[i]];
    in[i] = (pv_tensor){.dtype = v->dtype, .ndim = v->ndim};
    in[i].data = NULL;
    for (int d = 0; d < v->ndim; d++) {
      if (v->dims[d] < 0 && d > 0) goto skip; /* unknown spatial dims */
      in[i].dims[d] = v->dims[d] < 0 ? 1 : v->dims[d];
    }
    if (v->ndim < 0 || (rc = pv_tensor_alloc(&in[i]))) goto skip;
  }
  pv_exec *e = pv_exec_new(m);
  if (!e) rc = PV_ENOMEM;
  else {
    pv_tensor out[16];
    rc = pv_exec_run(e, in, n, out, g->n_outputs < 16 ? g->n_outputs : 16);
    if (rc) pv_error_prefix(rc, "warm-up run");
    pv_exec_free(e);
  }
  for (int i = 0; i < n; i++) pv_free(in[i].data);
  return rc;
skip:
  for (int i = 0; i < n; i++)
    if (in[i].data) pv_free(in[i].data), in[i].data = NULL;
  return 0;
}

pv_model *pv_model_from_graph(pv_graph *g, const pv_load_opts *opts) {
  pv_load_opts o = opts ? *opts : (pv_load_opts){0};
  pv_model *m = calloc(1, sizeof *m);
  if (!m) {
    pv_graph_free(g);
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  atomic_init(&m->refs, 1);
  m->g = g;
  int rc = 0;
  if (g->n_inputs > 16) {
    rc = pv_error(PV_EUNSUPPORTED, "model has %d inputs; at most 16 are supported",
                  g->n_inputs);
    goto fail;
  }
  if (!o.no_passes && (rc = pv_passes_run(g))) {
    pv_error_prefix(rc, "optimising graph");
    goto fail;
  }
  /* A pruned ONNX model (zeros stored) runs pivoted without a conversion:
   * the same exact detection as `pivot convert`. A .pvm (no_passes)
   * carries its pivots already. */
  if (!o.no_passes && (rc = pv_graph_detect_pivots(g, 0.75))) {
    pv_error_prefix(rc, "detecting pivoted weights");
    goto fail;
  }
  /* And folded like `pivot convert` folds: a pivoted layer that feeds
   * another keeps its rows in block order and the next layer's column
   * gather absorbs that order, so its output unpermute goes (at batch 32
   * about a tenth of the 1/8 MLP's time). The graph stays an ordinary
   * graph in stored order with outputs in natural order. */
  if (!o.no_passes && (rc = pv_graph_fold_perms(g))) {
    pv_error_prefix(rc, "folding permutations");
    goto fail;
  }
  static const char *const dflt[] = {"cpu", NULL};
  const char *const *names = o.backends ? o.backends : dflt;
  bool have_cpu = false;
  pv_backend_config cfg = {.threads = o.threads};
  for (int i = 0; names[i] && m->n_backends < PV_MAX_BACKENDS - 1; i++) {
    pv_backend *b = pv_backend_get(names[i], o.backend_dir, &cfg);
    if (!b) {
      /* The CPU backend is the fallback for everything: a missing GPU
       * backend is a warning, a missing CPU backend an error. */
      if (!strcmp(names[i], "cpu")) {
        rc = PV_EBACKEND;
        goto fail;
      }
      pv_log(PV_LOG_WARN, "%s; using the next backend", pv_errmsg());
      continue;
    }
    if (!strcmp(names[i], "cpu")) have_cpu = true;
    m->backends[m->n_backends++] = b;
  }
  if (!have_cpu) {
    pv_backend *b = pv_backend_get("cpu", o.backend_dir, &cfg);
    if (!b) {
      rc = PV_EBACKEND;
      goto fail;
    }
    m->backends[m->n_backends++] = b;
  }
  if ((rc = mark_static(m)) || (rc = assign_backends(m)) || (rc = make_parts_or_fall_back(m)) ||
      (rc = warm_up(m)))
    goto fail;
  return m;
fail:
  model_free(m);
  return NULL;
}

pv_model *pv_model_retain(pv_model *m) {
  atomic_fetch_add(&m->refs, 1);
  return m;
}

void pv_model_release(pv_model *m) {
  if (m && atomic_fetch_sub(&m->refs, 1) == 1) model_free(m);
}

const pv_graph *pv_model_graph(const pv_model *m) {
  return m->g;
}
int pv_model_n_inputs(const pv_model *m) {
  return m->g->n_inputs;
}
int pv_model_n_outputs(const pv_model *m) {
  return m->g->n_outputs;
}
const pv_value *pv_model_input(const pv_model *m, int i) {
  return i >= 0 && i < m->g->n_inputs ? &m->g->values[m->g->inputs[i]] : NULL;
}
const pv_value *pv_model_output(const pv_model *m, int i) {
  return i >= 0 && i < m->g->n_outputs ? &m->g->values[m->g->outputs[i]] : NULL;
}
bool pv_model_data_shaped(const pv_model *m) { return m->data_shaped; }

const char *pv_model_node_backend(const pv_model *m, int node) {
  if (node < 0 || node >= m->g->n_nodes) return NULL;
  int b = m->node_backend[node];
  return b == NODE_DATA_SHAPED ? "core" : b < 0 ? "plan" : pv_backend_name(m->backends[b]);
}

/* ------------------------------------------------------------ execution */

pv_exec *pv_exec_new(pv_model *m) {
  pv_exec *e = calloc(1, sizeof *e);
  if (!e) goto fail;
  e->vals = calloc(m->g->n_values ? m->g->n_values : 1, sizeof(pv_tensor));
  e->owned = calloc(m->g->n_values ? m->g->n_values : 1, sizeof(void *));
  e->owned_cap = calloc(m->g->n_values ? m->g->n_values : 1, sizeof(size_t));
  if (!e->vals || !e->owned || !e->owned_cap) goto fail;
  e->m = pv_model_retain(m);
  return e;
fail:
  if (e) {
    free(e->vals);
    free(e->owned);
    free(e->owned_cap);
    free(e);
  }
  pv_error(PV_ENOMEM, "out of memory");
  return NULL;
}

static void exec_drop_plan(pv_exec *e) {
  for (int v = 0; v < e->m->g->n_values; v++) {
    pv_free(e->owned[v]);
    e->owned[v] = NULL;
    e->owned_cap[v] = 0;
  }
  e->planned = false;
}

void pv_exec_free(pv_exec *e) {
  if (!e) return;
  exec_drop_plan(e);
  pv_free(e->arena);
  pv_free(e->rc.scratch);
  free(e->owned);
  free(e->owned_cap);
  free(e->vals);
  pv_model_release(e->m);
  free(e);
}

size_t pv_exec_peak_bytes(const pv_exec *e) {
  return e->peak;
}

typedef struct live {
  int v;
  int start, end; /* node indices, inclusive */
  size_t size;
  size_t offset;
} live;

static int cmp_size_desc(const void *a, const void *b) {
  const live *x = a, *y = b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  return x->v - y->v;
}

/* Greedy best-fit by decreasing size: each buffer takes the lowest offset
 * that overlaps no placed buffer alive at the same time. */
static int memory_plan(pv_exec *e) {
  pv_model *m = e->m;
  pv_graph *g = m->g;
  live *ls = calloc(g->n_values ? g->n_values : 1, sizeof *ls);
  int *idx = malloc(sizeof(int) * (g->n_values ? g->n_values : 1));
  if (!ls || !idx) {
    free(ls);
    free(idx);
    return pv_error(PV_ENOMEM, "out of memory");
  }
  for (int v = 0; v < g->n_values; v++) idx[v] = -1;
  int nl = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    if (m->node_backend[i] < 0 && m->node_backend[i] != NODE_DATA_SHAPED) continue;
    const pv_node *n = &g->nodes[i];
    for (int j = 0; j < n->n_out; j++) {
      int v = n->out[j];
      if (v < 0 || idx[v] >= 0) continue;
      size_t sz = pv_tensor_nbytes(&e->vals[v]);
      if (sz == SIZE_MAX) {
        free(ls);
        free(idx);
        return pv_error(PV_ERANGE, "value '%s' is too large", g->values[v].name);
      }
      idx[v] = nl;
      ls[nl++] = (live){.v = v, .start = i, .end = i, .size = (sz + 63) & ~(size_t)63};
    }
    for (int j = 0; j < n->n_in; j++) {
      int v = n->in[j];
      if (v >= 0 && idx[v] >= 0) ls[idx[v]].end = i;
    }
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (idx[g->outputs[i]] >= 0) ls[idx[g->outputs[i]]].end = g->n_nodes;
  qsort(ls, nl, sizeof *ls, cmp_size_desc);
  size_t peak = 0;
  for (int a = 0; a < nl; a++) {
    size_t off = 0;
    bool moved = true;
    while (moved) {
      moved = false;
      for (int b = 0; b < a; b++) {
        if (ls[b].end < ls[a].start || ls[a].end < ls[b].start) continue;
        if (off < ls[b].offset + ls[b].size && ls[b].offset < off + ls[a].size) {
          off = ls[b].offset + ls[b].size;
          moved = true;
        }
      }
    }
    ls[a].offset = off;
    if (off + ls[a].size > peak) peak = off + ls[a].size;
  }
  int rc = 0;
  if (peak > e->arena_len) {
    pv_free(e->arena);
    e->arena = pv_aligned_alloc(peak);
    e->arena_len = e->arena ? peak : 0;
    if (!e->arena) rc = pv_error(PV_ENOMEM, "cannot allocate %zu bytes of activations", peak);
  }
  if (!rc)
    for (int a = 0; a < nl; a++) e->vals[ls[a].v].data = e->arena + ls[a].offset;
  e->peak = peak;
  free(ls);
  free(idx);
  return rc;
}

static bool same_dims(const pv_tensor *t, const int64_t *dims) {
  for (int d = 0; d < t->ndim; d++)
    if (t->dims[d] != dims[d]) return false;
  return true;
}

static int check_inputs(pv_model *m, const pv_tensor *in, int n_in) {
  pv_graph *g = m->g;
  if (n_in != g->n_inputs)
    return pv_error(PV_EINVAL, "model takes %d input%s, got %d", g->n_inputs,
                    g->n_inputs == 1 ? "" : "s", n_in);
  for (int i = 0; i < n_in; i++) {
    const pv_value *v = &g->values[g->inputs[i]];
    char want[128], got[128];
    if (in[i].dtype != v->dtype)
      return pv_error(PV_ETYPE, "input '%s': expected %s, got %s", v->name,
                      pv_dtype_name(v->dtype), pv_dtype_name(in[i].dtype));
    bool ok = v->ndim < 0 || in[i].ndim == v->ndim;
    for (int d = 0; ok && v->ndim >= 0 && d < v->ndim; d++)
      if (in[i].dims[d] < 0 || (v->dims[d] >= 0 && in[i].dims[d] != v->dims[d]))
        ok = false;
    if (!ok) {
      pv_dims_str(v->dims, v->ndim < 0 ? 0 : v->ndim, want, sizeof want);
      pv_dims_str(in[i].dims, in[i].ndim, got, sizeof got);
      return pv_error(PV_ESHAPE, "input '%s': expected shape %s (-1 = any), got %s",
                      v->name, want, got);
    }
    if (!in[i].data && pv_tensor_numel(&in[i]) > 0)
      return pv_error(PV_EINVAL, "input '%s': no data", v->name);
  }
  return 0;
}

/* A node of an If branch (pv_node_guarded) runs when its guard, its last
 * input, holds; the op itself sees the node without that input. Returns
 * 1 when the guard is known false (outputs left empty), -1 when it is
 * not known yet (plan time), 0 when it holds or there is none. */
static int guard_state(const pv_node *n, const pv_tensor *vals, pv_node *bare) {
  *bare = *n;
  if (!pv_node_guarded(n) || n->n_in < 1 || n->in[n->n_in - 1] < 0) return 0;
  bare->n_in--;
  const pv_tensor *gd = &vals[n->in[n->n_in - 1]];
  if (!gd->data) return gd->dtype == PV_UNDEFINED ? 1 : -1;
  return gd->dtype == PV_BOOL && pv_tensor_numel(gd) == 1 && ((const uint8_t *)gd->data)[0]
             ? 0 : 1;
}

static void clear_outputs(const pv_node *n, pv_tensor *vals) {
  for (int j = 0; j < n->n_out; j++)
    if (n->out[j] >= 0) vals[n->out[j]] = (pv_tensor){0};
}

/* Concrete shapes for the current inputs; evaluates plan-time nodes. */
static int plan(pv_exec *e, const pv_tensor *in) {
  pv_model *m = e->m;
  pv_graph *g = m->g;
  exec_drop_plan(e);
  for (int v = 0; v < g->n_values; v++) {
    const pv_value *val = &g->values[v];
    e->vals[v] = (pv_tensor){0};
    if (val->data || val->pivot) e->vals[v] = pv_value_tensor(val);
  }
  for (int i = 0; i < g->n_inputs; i++) {
    pv_tensor *t = &e->vals[g->inputs[i]];
    *t = in[i];
    memcpy(e->in_dims[i], in[i].dims, sizeof e->in_dims[i]);
  }
  for (int i = 0; i < g->n_nodes; i++) {
    pv_node bare;
    int gs = guard_state(&g->nodes[i], e->vals, &bare);
    const pv_node *n = &bare;
    if (gs > 0) {
      clear_outputs(n, e->vals);
      continue;
    }
    int rc = pv_infer_node(g, n, e->vals);
    /* A branch whose guard is not known before the run (`pivot inspect`
     * of a data-shaped model) may not fit the shapes seen here. */
    if (rc && gs < 0) {
      clear_outputs(n, e->vals);
      continue;
    }
    if (rc) return rc; /* shape inference names the node */
    /* Data-shaped nodes get their largest shapes here (what `pivot
     * inspect` reports); runs go through run_data_shaped. */
    if (m->node_backend[i] != -1 || gs < 0) continue;
    for (int j = 0; j < n->n_out; j++) {
      int v = n->out[j];
      if (v < 0) continue;
      if ((rc = pv_tensor_alloc(&e->vals[v]))) return rc;
      e->owned[v] = e->vals[v].data;
    }
    if ((rc = pv_ref_node(g, n, e->vals))) return rc;
  }
  int rc = memory_plan(e);
  if (rc) return rc;
  e->planned = true;
  return 0;
}

/* Storage of node n's outputs for a data-shaped run, kept from run to
 * run and grown when a run needs more (SSDlite spent 40 ms a run
 * allocating and zeroing its activations). */
static int attach_storage(pv_exec *e, const pv_node *n) {
  const pv_graph *g = e->m->g;
  for (int j = 0; j < n->n_out; j++) {
    int v = n->out[j];
    if (v < 0) continue;
    size_t need = pv_tensor_nbytes(&e->vals[v]);
    if (need == SIZE_MAX)
      return pv_error(PV_ERANGE, "value '%s' is too large", g->values[v].name);
    if (!e->owned[v] || e->owned_cap[v] < need) {
      pv_free(e->owned[v]);
      e->owned_cap[v] = 0;
      if (!(e->owned[v] = pv_aligned_alloc(need)))
        return pv_error(PV_ENOMEM, "cannot allocate %zu bytes for '%s'", need,
                        g->values[v].name);
      e->owned_cap[v] = need;
    }
    e->vals[v].data = e->owned[v];
  }
  return 0;
}

/* Shape inference, storage and the engine's own nodes for nodes [from,
 * to]: plan-time and data-shaped nodes run here (on data computed by the
 * parts before them), part nodes get their outputs' storage. */
static int infer_span(pv_exec *e, int from, int to) {
  pv_model *m = e->m;
  pv_graph *g = m->g;
  for (int i = from; i <= to; i++) {
    pv_node bare;
    int gs = guard_state(&g->nodes[i], e->vals, &bare);
    const pv_node *n = &bare;
    if (gs) { /* a branch not taken (or under one) */
      clear_outputs(n, e->vals);
      continue;
    }
    int rc = pv_infer_node(g, n, e->vals);
    if (rc) return rc;
    /* A part's outputs get their storage only once the whole span is
     * inferred: before the part runs they hold no data, so a shape that
     * needs one of them (TopK's K, a Reshape's shape) is refused as it is
     * when a plan is made, never read from stale or zeroed memory. */
    if (m->node_backend[i] >= 0) continue;
    if ((rc = attach_storage(e, n))) return rc;
    if ((rc = pv_ref_node(g, n, e->vals))) return rc;
  }
  for (int i = from; i <= to; i++) {
    const pv_node *n = &g->nodes[i];
    int rc;
    if (m->node_backend[i] >= 0 && (rc = attach_storage(e, n))) return rc;
  }
  return 0;
}

/* A run of a model with data-shaped nodes: shapes are inferred part by
 * part, each data-shaped node runs once the parts before it have, and
 * every value has storage of its own for this run (no arena: sizes are
 * known only as the run goes). */
static int run_data_shaped(pv_exec *e, const pv_tensor *inputs, int n_in) {
  pv_model *m = e->m;
  pv_graph *g = m->g;
  e->planned = false; /* the storage in owned[] stays for the next run */
  for (int v = 0; v < g->n_values; v++) {
    const pv_value *val = &g->values[v];
    e->vals[v] = (pv_tensor){0};
    if (val->data || val->pivot) e->vals[v] = pv_value_tensor(val);
  }
  for (int i = 0; i < n_in; i++) e->vals[g->inputs[i]] = inputs[i];
  e->rc.vals = e->vals;
  e->rc.batch = n_in > 0 && inputs[0].ndim > 0 ? inputs[0].dims[0] : 1;
  int next = 0, rc;
  for (int p = 0; p < m->n_parts; p++) {
    const part *pt = &m->parts[p];
    int last = pt->nodes[pt->n_nodes - 1];
    if ((rc = infer_span(e, next, last))) return rc;
    next = last + 1;
    pv_backend *b = m->backends[pt->backend];
    rc = pv_backend_iface_of(b)->execute(pt->plan, &e->rc);
    if (rc) return pv_error_prefix(rc, "backend '%s'", pv_backend_name(b));
  }
  return infer_span(e, next, g->n_nodes - 1);
}

int pv_exec_run(pv_exec *e, const pv_tensor *inputs, int n_in,
                pv_tensor *outputs, int n_out) {
  pv_model *m = e->m;
  pv_graph *g = m->g;
  int rc = check_inputs(m, inputs, n_in);
  if (rc) return rc;
  if (n_out > g->n_outputs) n_out = g->n_outputs;
  if (m->data_shaped) {
    rc = run_data_shaped(e, inputs, n_in);
    for (int i = 0; !rc && i < n_out; i++) outputs[i] = e->vals[g->outputs[i]];
    return rc;
  }
  bool replan = !e->planned;
  for (int i = 0; !replan && i < n_in; i++)
    if (!same_dims(&inputs[i], e->in_dims[i])) replan = true;
  if (replan && (rc = plan(e, inputs))) {
    e->planned = false;
    return rc;
  }
  for (int i = 0; i < n_in; i++) e->vals[g->inputs[i]].data = inputs[i].data;
  e->rc.vals = e->vals;
  e->rc.batch = n_in > 0 && inputs[0].ndim > 0 ? inputs[0].dims[0] : 1;
  for (int i = 0; i < m->n_parts; i++) {
    part *p = &m->parts[i];
    pv_backend *b = m->backends[p->backend];
    rc = pv_backend_iface_of(b)->execute(p->plan, &e->rc);
    if (rc) return pv_error_prefix(rc, "backend '%s'", pv_backend_name(b));
  }
  for (int i = 0; i < n_out; i++) outputs[i] = e->vals[g->outputs[i]];
  return 0;
}

/* ------------------------------------------------------------ inspect */

static double node_flops(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                         int64_t *params, double *density, int *blocks,
                         size_t *wbytes) {
  const pv_tensor *out = &vals[n->out[0]];
  double outn = (double)pv_tensor_numel(out);
  *params = 0;
  *density = 1;
  *blocks = 0;
  *wbytes = 0;
  for (int j = 0; j < n->n_in; j++) {
    int v = n->in[j];
    if (v < 0) continue;
    const pv_value *val = &g->values[v];
    if (val->pivot) {
      *params += pv_pivot_nnz(val->pivot);
      *density = pv_pivot_density(val->pivot);
      *blocks = val->pivot->n_blocks;
      *wbytes += (size_t)pv_pivot_nnz(val->pivot) * 4 +
                 (size_t)(val->pivot->M + val->pivot->C) * 4;
    } else if (val->data) {
      pv_tensor t = pv_value_tensor(val);
      *params += pv_tensor_numel(&t);
      *wbytes += val->nbytes ? val->nbytes : pv_tensor_nbytes(&t);
    }
  }
  if (!strcmp(n->op, "Conv") && n->n_in >= 2 && n->in[1] >= 0) {
    const pv_tensor *w = &vals[n->in[1]];
    double per_out = 1;
    for (int d = 1; d < w->ndim; d++) per_out *= (double)w->dims[d];
    return 2.0 * outn * per_out * *density;
  }
  if ((!strcmp(n->op, "Gemm") || !strcmp(n->op, "MatMul")) && n->n_in >= 2) {
    const pv_tensor *a = &vals[n->in[0]];
    int64_t k = a->ndim ? a->dims[a->ndim - 1] : 1;
    if (!strcmp(n->op, "Gemm") && pv_attr_int(n, "transA", 0) && a->ndim == 2)
      k = a->dims[0];
    return 2.0 * outn * (double)k * *density;
  }
  if (!strcmp(n->op, "ConvTranspose") && n->n_in >= 2 && n->in[0] >= 0 && n->in[1] >= 0) {
    /* Each input element scatters into (M / group) x kernel outputs. */
    const pv_tensor *x = &vals[n->in[0]], *w = &vals[n->in[1]];
    double per_in = 1;
    for (int d = 1; d < w->ndim; d++) per_in *= (double)w->dims[d];
    return 2.0 * (double)pv_tensor_numel(x) * per_in;
  }
  if (!strcmp(n->op, "GRU") && n->n_in >= 3 && n->in[0] >= 0 && n->in[2] >= 0) {
    /* Per step and batch row: W x (3H x I) and R h (3H x H). */
    const pv_tensor *x = &vals[n->in[0]], *r = &vals[n->in[2]];
    if (x->ndim == 3 && r->ndim == 3)
      return 2.0 * (double)x->dims[0] * (double)x->dims[1] * (double)r->dims[1] *
             (double)(x->dims[2] + r->dims[2]);
  }
  return outn;
}

int pv_model_inspect(pv_model *m, int batch, pv_layer_info *rows, int max,
                     size_t *peak) {
  pv_graph *g = m->g;
  pv_tensor in[16];
  int n = g->n_inputs, rc = 0;
  memset(in, 0, sizeof in);
  for (int i = 0; i < n; i++) {
    const pv_value *v = &g->values[g->inputs[i]];
    in[i] = (pv_tensor){.dtype = v->dtype, .ndim = v->ndim < 0 ? 0 : v->ndim};
    for (int d = 0; d < in[i].ndim; d++) {
      if (v->dims[d] < 0 && d > 0)
        return pv_error(PV_ESHAPE, "input '%s' has unknown dim %d: give a shape",
                        v->name, d);
      in[i].dims[d] = v->dims[d] < 0 ? batch : v->dims[d];
    }
    /* Shape inference never reads activation data. */
    in[i].data = (void *)&in[i];
  }
  pv_exec *e = pv_exec_new(m);
  if (!e) return PV_ENOMEM;
  if ((rc = plan(e, in))) goto out;
  int r = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *nd = &g->nodes[i];
    if ((m->node_backend[i] < 0 && m->node_backend[i] != NODE_DATA_SHAPED) ||
        nd->n_out < 1 || nd->out[0] < 0)
      continue;
    if (r < max) {
      pv_layer_info *li = &rows[r];
      memset(li, 0, sizeof *li);
      li->name = nd->name;
      li->op = nd->op;
      li->backend = pv_model_node_backend(m, i);
      const pv_tensor *o = &e->vals[nd->out[0]];
      li->out_ndim = o->ndim;
      memcpy(li->out_dims, o->dims, sizeof li->out_dims);
      li->flops = node_flops(g, nd, e->vals, &li->params, &li->density,
                             &li->n_blocks, &li->weight_bytes);
    }
    r++;
  }
  if (peak) *peak = e->peak;
  rc = r;
out:
  pv_exec_free(e);
  return rc;
}
