/* Graph IR: values, nodes, attributes, metadata. */
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"
#include "internal.h"

static char *xstrdup(const char *s) {
  return s ? strdup(s) : NULL;
}

static int grow(void **arr, int *cap, int need, size_t elem) {
  if (need <= *cap) return 0;
  int nc = *cap ? *cap * 2 : 16;
  while (nc < need) nc *= 2;
  void *p = realloc(*arr, (size_t)nc * elem);
  if (!p) return pv_error(PV_ENOMEM, "out of memory growing graph");
  memset((char *)p + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
  *arr = p;
  *cap = nc;
  return 0;
}

pv_graph *pv_graph_new(void) {
  pv_graph *g = calloc(1, sizeof *g);
  if (!g) pv_error(PV_ENOMEM, "out of memory");
  return g;
}

static void attr_clear(pv_attr *a) {
  free(a->name);
  free(a->s);
  free(a->ints);
  free(a->floats);
  if (a->strings)
    for (int i = 0; i < a->n; i++) free(a->strings[i]);
  free(a->strings);
  pv_free(a->t.data);
  memset(a, 0, sizeof *a);
}

static void node_clear(pv_node *n) {
  free(n->name);
  free(n->op);
  free(n->domain);
  free(n->in);
  free(n->out);
  for (int i = 0; i < n->n_attrs; i++) attr_clear(&n->attrs[i]);
  free(n->attrs);
  memset(n, 0, sizeof *n);
}

/* Whether p points inside the graph's external storage (not owned). */
static bool in_storage(const pv_graph *g, const void *p);

void pv_graph_free(pv_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->n_values; i++) {
    pv_value *v = &g->values[i];
    free(v->name);
    if (v->data && !in_storage(g, v->data)) pv_free(v->data);
    if (v->pivot) pv_pivot_free(v->pivot);
    free(v->chan_perm);
  }
  free(g->values);
  for (int i = 0; i < g->n_nodes; i++) node_clear(&g->nodes[i]);
  free(g->nodes);
  free(g->inputs);
  free(g->outputs);
  for (int i = 0; i < g->n_meta; i++) {
    free(g->meta[i].key);
    free(g->meta[i].value);
  }
  free(g->meta);
  free(g->name);
  if (g->storage_free) g->storage_free(g->storage);
  free(g);
}

static bool in_storage(const pv_graph *g, const void *p) {
  if (!g->storage) return false;
  const pv_storage_hdr *h = g->storage;
  return (const char *)p >= h->base && (const char *)p < h->base + h->len;
}

int pv_graph_add_value(pv_graph *g, const char *name) {
  int rc = grow((void **)&g->values, &g->cap_values, g->n_values + 1,
                sizeof *g->values);
  if (rc) return rc;
  pv_value *v = &g->values[g->n_values];
  memset(v, 0, sizeof *v);
  v->name = xstrdup(name ? name : "");
  if (!v->name) return pv_error(PV_ENOMEM, "out of memory");
  v->ndim = -1;
  v->producer = -1;
  return g->n_values++;
}

int pv_graph_find_value(const pv_graph *g, const char *name) {
  for (int i = g->n_values - 1; i >= 0; i--)
    if (g->values[i].name && !strcmp(g->values[i].name, name)) return i;
  return -1;
}

int pv_graph_add_unique_value(pv_graph *g, const char *base, const char *suffix) {
  char name[256];
  snprintf(name, sizeof name, "%s%s", base, suffix);
  for (int k = 1; pv_graph_find_value(g, name) >= 0; k++)
    snprintf(name, sizeof name, "%s%s_%d", base, suffix, k);
  return pv_graph_add_value(g, name);
}

int pv_graph_add_const(pv_graph *g, const char *base, const char *suffix,
                       pv_dtype dt, void *data, int ndim, const int64_t *dims) {
  int v = pv_graph_add_unique_value(g, base, suffix);
  if (v < 0) {
    pv_free(data);
    return v;
  }
  pv_value *val = &g->values[v];
  val->dtype = dt;
  val->ndim = ndim;
  memcpy(val->dims, dims, sizeof(int64_t) * ndim);
  val->data = data;
  pv_tensor t = pv_value_tensor(val);
  val->nbytes = pv_tensor_nbytes(&t);
  return v;
}

int pv_graph_add_node(pv_graph *g, const char *name, const char *op,
                      const int *in, int n_in, const int *out, int n_out) {
  int rc = grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1,
                sizeof *g->nodes);
  if (rc) return rc;
  pv_node *n = &g->nodes[g->n_nodes];
  memset(n, 0, sizeof *n);
  n->name = xstrdup(name ? name : "");
  n->op = xstrdup(op);
  n->domain = xstrdup("");
  n->in = malloc(sizeof(int) * (n_in ? n_in : 1));
  n->out = malloc(sizeof(int) * (n_out ? n_out : 1));
  if (!n->name || !n->op || !n->domain || !n->in || !n->out) {
    node_clear(n);
    return pv_error(PV_ENOMEM, "out of memory");
  }
  if (n_in) memcpy(n->in, in, sizeof(int) * n_in);
  if (n_out) memcpy(n->out, out, sizeof(int) * n_out);
  n->n_in = n_in;
  n->n_out = n_out;
  int idx = g->n_nodes++;
  for (int i = 0; i < n_out; i++)
    if (out[i] >= 0 && out[i] < g->n_values) g->values[out[i]].producer = idx;
  return idx;
}

int pv_node_add_attr(pv_graph *g, int node, const pv_attr *a) {
  pv_node *n = &g->nodes[node];
  pv_attr *na = realloc(n->attrs, sizeof *na * (n->n_attrs + 1));
  if (!na) return pv_error(PV_ENOMEM, "out of memory");
  n->attrs = na;
  pv_attr *d = &na[n->n_attrs];
  memset(d, 0, sizeof *d);
  d->type = a->type;
  d->i = a->i;
  d->f = a->f;
  d->n = a->n;
  d->t = a->t;
  d->t.data = NULL;
  /* Every copy is checked: an attribute half-copied (a NULL array with
   * n > 0) would be read as if complete by the ops. */
  bool ok = (d->name = xstrdup(a->name)) != NULL || !a->name;
  if (ok && a->s) ok = (d->s = xstrdup(a->s)) != NULL;
  if (ok && a->ints && a->n) {
    ok = (d->ints = malloc(sizeof(int64_t) * a->n)) != NULL;
    if (ok) memcpy(d->ints, a->ints, sizeof(int64_t) * a->n);
  }
  if (ok && a->floats && a->n) {
    ok = (d->floats = malloc(sizeof(float) * a->n)) != NULL;
    if (ok) memcpy(d->floats, a->floats, sizeof(float) * a->n);
  }
  if (ok && a->strings && a->n) {
    ok = (d->strings = calloc(a->n, sizeof(char *))) != NULL;
    for (int i = 0; ok && i < a->n; i++)
      ok = (d->strings[i] = xstrdup(a->strings[i])) != NULL || !a->strings[i];
  }
  if (ok && a->type == PV_ATTR_TENSOR && a->t.data) {
    size_t nb = pv_tensor_nbytes(&a->t);
    ok = (d->t.data = pv_aligned_alloc(nb)) != NULL;
    if (ok) memcpy(d->t.data, a->t.data, nb);
  }
  n->n_attrs++;
  if (!ok) {
    /* Counted so the node's normal teardown frees the partial copy. */
    return pv_error(PV_ENOMEM, "out of memory copying attribute '%s'",
                    a->name ? a->name : "");
  }
  return 0;
}

int pv_graph_set_meta(pv_graph *g, const char *key, const char *value) {
  for (int i = 0; i < g->n_meta; i++)
    if (!strcmp(g->meta[i].key, key)) {
      char *v = xstrdup(value);
      if (!v) return pv_error(PV_ENOMEM, "out of memory");
      free(g->meta[i].value);
      g->meta[i].value = v;
      return 0;
    }
  int rc = grow((void **)&g->meta, &g->cap_meta, g->n_meta + 1, sizeof *g->meta);
  if (rc) return rc;
  g->meta[g->n_meta].key = xstrdup(key);
  g->meta[g->n_meta].value = xstrdup(value);
  if (!g->meta[g->n_meta].key || !g->meta[g->n_meta].value)
    return pv_error(PV_ENOMEM, "out of memory");
  g->n_meta++;
  return 0;
}

const char *pv_graph_get_meta(const pv_graph *g, const char *key) {
  for (int i = 0; i < g->n_meta; i++)
    if (!strcmp(g->meta[i].key, key)) return g->meta[i].value;
  return NULL;
}

void pv_graph_link(pv_graph *g) {
  for (int i = 0; i < g->n_values; i++) g->values[i].producer = -1;
  for (int i = 0; i < g->n_nodes; i++)
    for (int j = 0; j < g->nodes[i].n_out; j++) {
      int v = g->nodes[i].out[j];
      if (v >= 0) g->values[v].producer = i;
    }
}

int pv_graph_consumers(const pv_graph *g, int v, int *nodes, int max) {
  int count = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    if (!n->op) continue;
    for (int j = 0; j < n->n_in; j++)
      if (n->in[j] == v) {
        if (nodes && count < max) nodes[count] = i;
        count++;
        break;
      }
  }
  for (int i = 0; i < g->n_outputs; i++)
    if (g->outputs[i] == v) {
      if (nodes && count < max) nodes[count] = -1;
      count++;
    }
  return count;
}

/* Min-heap of node indices: among ready nodes the earliest in the input
 * order runs first, so an already sorted graph keeps its order. */
static void heap_push(int *h, int *len, int v) {
  int i = (*len)++;
  while (i > 0 && h[(i - 1) / 2] > v) {
    h[i] = h[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h[i] = v;
}

static int heap_pop(int *h, int *len) {
  int top = h[0], v = h[--(*len)], i = 0;
  for (;;) {
    int c = 2 * i + 1;
    if (c >= *len) break;
    if (c + 1 < *len && h[c + 1] < h[c]) c++;
    if (h[c] >= v) break;
    h[i] = h[c];
    i = c;
  }
  if (*len) h[i] = v;
  return top;
}

/* Kahn's algorithm over value dependencies, O((V + E) log N): a hostile
 * model with many nodes must not cost quadratic time at load. A value is
 * available once (any) producer has run, as before. */
static int toposort(pv_graph *g) {
  int n = g->n_nodes, nv = g->n_values;
  if (n <= 0 || nv < 0) return 0;
  size_t un = (size_t)n, unv = (size_t)nv, n_edges = 0;
  for (int i = 0; i < n; i++) n_edges += (size_t)g->nodes[i].n_in;
  char *avail = calloc(unv ? unv : 1, 1);
  int *deps = calloc(un, sizeof(int));
  int *first = calloc(unv + 1, sizeof(int)); /* CSR value -> consumers */
  int *cons = malloc(sizeof(int) * (n_edges ? n_edges : 1));
  int *heap = malloc(sizeof(int) * un);
  int *order = malloc(sizeof(int) * un);
  pv_node *sorted = malloc(sizeof *sorted * un);
  int rc = 0;
  if (!avail || !deps || !first || !cons || !heap || !order || !sorted) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out;
  }
  memset(avail, 1, unv);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < g->nodes[i].n_out; j++) {
      int v = g->nodes[i].out[j];
      if (v >= 0 && v < nv) avail[v] = 0;
    }
  for (int i = 0; i < n; i++)
    for (int j = 0; j < g->nodes[i].n_in; j++) {
      int v = g->nodes[i].in[j];
      if (v >= 0 && v < nv && !avail[v]) {
        deps[i]++;
        first[v + 1]++;
      }
    }
  for (int v = 0; v < nv; v++) first[v + 1] += first[v];
  {
    int *fill = calloc(unv ? unv : 1, sizeof(int));
    if (!fill) {
      rc = pv_error(PV_ENOMEM, "out of memory");
      goto out;
    }
    for (int i = 0; i < n; i++)
      for (int j = 0; j < g->nodes[i].n_in; j++) {
        int v = g->nodes[i].in[j];
        if (v >= 0 && v < nv && !avail[v]) cons[first[v] + fill[v]++] = i;
      }
    free(fill);
  }
  int len = 0, k = 0;
  for (int i = 0; i < n; i++)
    if (!deps[i]) heap_push(heap, &len, i);
  while (len) {
    int i = heap_pop(heap, &len);
    order[k++] = i;
    const pv_node *nd = &g->nodes[i];
    for (int j = 0; j < nd->n_out; j++) {
      int v = nd->out[j];
      if (v < 0 || v >= nv || avail[v]) continue;
      avail[v] = 1;
      for (int c = first[v]; c < first[v + 1]; c++)
        if (--deps[cons[c]] == 0) heap_push(heap, &len, cons[c]);
    }
  }
  if (k < n) {
    int bad = 0;
    while (bad < n && !deps[bad]) bad++;
    if (bad == n) bad = 0;
    rc = pv_error(PV_EFORMAT,
                  "graph has a cycle or a missing input at node '%s' (%s)",
                  g->nodes[bad].name, g->nodes[bad].op);
    goto out;
  }
  for (int i = 0; i < n; i++) sorted[i] = g->nodes[order[i]];
  memcpy(g->nodes, sorted, sizeof *sorted * un);
out:
  free(avail);
  free(deps);
  free(first);
  free(cons);
  free(heap);
  free(order);
  free(sorted);
  if (!rc) pv_graph_link(g);
  return rc;
}

int pv_graph_compact(pv_graph *g) {
  int w = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    if (!g->nodes[i].op) {
      node_clear(&g->nodes[i]);
      continue;
    }
    if (w != i) g->nodes[w] = g->nodes[i];
    w++;
  }
  g->n_nodes = w;
  /* Drop constant values nobody reads (data freed; index kept so value
   * ids stay stable). */
  char *used = calloc(g->n_values ? g->n_values : 1, 1);
  if (!used) return pv_error(PV_ENOMEM, "out of memory");
  for (int i = 0; i < g->n_nodes; i++)
    for (int j = 0; j < g->nodes[i].n_in; j++)
      if (g->nodes[i].in[j] >= 0) used[g->nodes[i].in[j]] = 1;
  for (int i = 0; i < g->n_outputs; i++) used[g->outputs[i]] = 1;
  for (int i = 0; i < g->n_inputs; i++) used[g->inputs[i]] = 1;
  for (int v = 0; v < g->n_values; v++) {
    pv_value *val = &g->values[v];
    if (used[v]) continue;
    if (val->data && !in_storage(g, val->data)) pv_free(val->data);
    val->data = NULL;
    val->nbytes = 0;
    if (val->pivot) pv_pivot_free(val->pivot);
    val->pivot = NULL;
  }
  free(used);
  return toposort(g);
}

const pv_attr *pv_node_attr(const pv_node *n, const char *name) {
  for (int i = 0; i < n->n_attrs; i++)
    if (!strcmp(n->attrs[i].name, name)) return &n->attrs[i];
  return NULL;
}

int64_t pv_attr_int(const pv_node *n, const char *name, int64_t dflt) {
  const pv_attr *a = pv_node_attr(n, name);
  return a && a->type == PV_ATTR_INT ? a->i : dflt;
}

float pv_attr_float(const pv_node *n, const char *name, float dflt) {
  const pv_attr *a = pv_node_attr(n, name);
  if (!a) return dflt;
  if (a->type == PV_ATTR_FLOAT) return a->f;
  if (a->type == PV_ATTR_INT) return (float)a->i;
  return dflt;
}

const char *pv_attr_str(const pv_node *n, const char *name, const char *dflt) {
  const pv_attr *a = pv_node_attr(n, name);
  return a && a->type == PV_ATTR_STRING && a->s ? a->s : dflt;
}

int pv_attr_ints(const pv_node *n, const char *name, const int64_t **out) {
  const pv_attr *a = pv_node_attr(n, name);
  if (!a || a->type != PV_ATTR_INTS) return -1;
  *out = a->ints;
  return a->n;
}

pv_tensor pv_value_tensor(const pv_value *v) {
  pv_tensor t = {0};
  t.dtype = v->dtype;
  t.ndim = v->ndim < 0 ? 0 : v->ndim;
  for (int i = 0; i < t.ndim; i++) t.dims[i] = v->dims[i];
  t.data = v->data;
  return t;
}
