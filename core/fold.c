/* Permutation folding: along a chain pivoted layer -> channel-wise ops ->
 * pivoted layer, the first layer writes its output in its own row-block
 * order and the next layer reads that order directly, so the scatter of
 * one and the gather of the other cancel (docs/PIVOT.md, "Folding").
 *
 * The next layer may also be a dense Conv/Gemm/MatMul (e.g. a last layer
 * kept dense): it just reads its columns in the stored order.
 *
 * Contract: after folding, the graph is an ordinary graph in *stored*
 * order. Every constant on the chain (bias, batch-norm parameters,
 * depthwise filters, per-channel Add/Mul constants, the dense copy of
 * each weight, each pivot's perm_r/perm_c) is rewritten for the order the
 * tensors are stored in, and value.chan_perm only records that order. */
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"
#include "weights.h"

#define MAX_CHAIN 64

static const char *const elementwise_ops[] = {
    "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu",
    "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Abs", "Neg",
    "Identity", "Dropout", "Exp", "Sqrt", "Ceil", "Floor", "Round", NULL};
static const char *const pool_ops[] = {"MaxPool", "AveragePool",
                                       "GlobalAveragePool", "GlobalMaxPool",
                                       "Resize", "Upsample", NULL};
static const char *const binary_ops[] = {"Add", "Mul", "Sub", "Div", "PRelu",
                                         "Max", "Min", NULL};

static bool in_list(const char *op, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(op, *list)) return true;
  return false;
}

static bool is_const(const pv_graph *g, int v) {
  return v >= 0 && v < g->n_values && g->values[v].data &&
         g->values[v].producer < 0;
}

static int64_t value_numel(const pv_value *v) {
  if (v->ndim < 0) return -1;
  pv_tensor t = pv_value_tensor(v);
  return pv_tensor_numel(&t);
}

/* A per-channel constant for a chain of `nch` channels: a scalar (nothing
 * to permute, returns 0), or shaped [nch] (fc) / [nch,1,1] (conv) after
 * leading ones (returns 1). -1 when it does not broadcast per channel. */
static int per_channel(const pv_graph *g, int v, int32_t nch, bool conv) {
  if (!is_const(g, v)) return -1;
  const pv_value *val = &g->values[v];
  int64_t n = value_numel(val);
  if (n == 1) return 0;
  if (n != nch || pv_dtype_size(val->dtype) == 0 ||
      val->nbytes != (size_t)n * pv_dtype_size(val->dtype))
    return -1;
  int d = 0;
  while (d < val->ndim && val->dims[d] == 1) d++;
  int rest = val->ndim - d;
  if (conv) return rest == 3 && val->dims[d] == nch ? 1 : -1;
  return rest == 1 ? 1 : -1;
}

/* Only-consumer check: folding permutes constants in place. */
static bool single_use(const pv_graph *g, int v) {
  return pv_graph_consumers(g, v, NULL, 0) == 1;
}

/* Whether node j (reading the chain tensor as in[0]) passes a channel
 * permutation of nch channels through unchanged. */
static bool passes_through(const pv_graph *g, int j, int cur, int32_t nch,
                           bool conv) {
  const pv_node *n = &g->nodes[j];
  if (!n->op || n->n_in < 1 || n->in[0] != cur || n->n_out < 1) return false;
  for (int k = 1; k < n->n_out; k++) /* e.g. MaxPool indices, Dropout mask */
    if (n->out[k] >= 0 && pv_graph_consumers(g, n->out[k], NULL, 0)) return false;
  if (in_list(n->op, elementwise_ops)) {
    for (int k = 1; k < n->n_in; k++) /* Clip bounds: scalars */
      if (n->in[k] >= 0 && per_channel(g, n->in[k], nch, conv) != 0) return false;
    return true;
  }
  if (in_list(n->op, pool_ops)) {
    if (!conv) return false;
    /* Resize/Upsample scales and sizes act on spatial axes in practice;
     * the next layer checks the channel count anyway. */
    return true;
  }
  if (in_list(n->op, binary_ops)) {
    if (n->n_in != 2) return false;
    int r = per_channel(g, n->in[1], nch, conv);
    return r == 0 || (r == 1 && single_use(g, n->in[1]));
  }
  if (!strcmp(n->op, "BatchNormalization")) {
    if (n->n_in < 5) return false;
    for (int k = 1; k < 5; k++) /* scale, bias, mean, var: [nch] */
      if (per_channel(g, n->in[k], nch, false) != 1 || !single_use(g, n->in[k]))
        return false;
    return true;
  }
  if (!strcmp(n->op, "Conv") && conv) { /* depthwise, multiplier 1 */
    if (n->n_in < 2 || pv_attr_int(n, "group", 1) != nch) return false;
    int w = n->in[1];
    if (!is_const(g, w) || !single_use(g, w)) return false;
    const pv_value *wv = &g->values[w];
    if (wv->ndim < 3 || wv->dims[0] != nch || wv->dims[1] != 1) return false;
    if (value_numel(wv) <= 0 || pv_dtype_size(wv->dtype) == 0 ||
        wv->nbytes != (size_t)value_numel(wv) * pv_dtype_size(wv->dtype))
      return false;
    if (n->n_in > 2 && n->in[2] >= 0 &&
        (per_channel(g, n->in[2], nch, false) != 1 || !single_use(g, n->in[2])))
      return false;
    return true;
  }
  return false;
}

/* Reorder the leading axis of v's data: new slab i = old slab perm[i]. */
static int permute_slabs(pv_graph *g, int v, const int32_t *perm, int32_t n) {
  int rc = pv_value_own(g, v);
  if (rc) return rc;
  pv_value *val = &g->values[v];
  size_t slab = val->nbytes / (size_t)n;
  char *tmp = malloc(val->nbytes ? val->nbytes : 1);
  if (!tmp) return pv_error(PV_ENOMEM, "out of memory");
  for (int32_t i = 0; i < n; i++)
    memcpy(tmp + slab * i, (char *)val->data + slab * perm[i], slab);
  memcpy(val->data, tmp, val->nbytes);
  free(tmp);
  return 0;
}

static int apply_through(pv_graph *g, int j, const int32_t *P, int32_t nch) {
  const pv_node *n = &g->nodes[j];
  int rc = 0;
  if (in_list(n->op, binary_ops)) {
    if (value_numel(&g->values[n->in[1]]) == nch)
      rc = permute_slabs(g, n->in[1], P, nch);
  } else if (!strcmp(n->op, "BatchNormalization")) {
    for (int k = 1; k < 5 && !rc; k++) rc = permute_slabs(g, n->in[k], P, nch);
  } else if (!strcmp(n->op, "Conv")) {
    rc = permute_slabs(g, n->in[1], P, nch);
    if (!rc && n->n_in > 2 && n->in[2] >= 0)
      rc = permute_slabs(g, n->in[2], P, nch);
  }
  return rc;
}

static int set_chan_perm(pv_graph *g, int v, const int32_t *P, int32_t nch) {
  pv_value *val = &g->values[v];
  int32_t *cp = malloc(sizeof(int32_t) * (size_t)nch);
  if (!cp) return pv_error(PV_ENOMEM, "out of memory");
  /* Compose with an order the tensor already had (a re-folded model). */
  for (int32_t i = 0; i < nch; i++)
    cp[i] = val->chan_perm && val->chan_perm_n == nch ? val->chan_perm[P[i]]
                                                      : P[i];
  free(val->chan_perm);
  val->chan_perm = cp;
  val->chan_perm_n = nch;
  return 0;
}

/* Fold the row permutation of layer A into layer B through nodes mid[]. */
static int fold_one(pv_graph *g, const pv_wlayer *A, const int *mid, int nmid,
                    const pv_wlayer *B) {
  int32_t nch = A->M;
  pv_pivot *pa = g->values[A->wv].pivot, *pb = g->values[B->wv].pivot;
  int32_t *P = malloc(sizeof(int32_t) * (size_t)nch);
  int32_t *inv = malloc(sizeof(int32_t) * (size_t)nch);
  float *W = NULL;
  int rc = 0;
  if (!P || !inv) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto done;
  }
  memcpy(P, pa->perm_r, sizeof(int32_t) * (size_t)nch);
  for (int32_t i = 0; i < nch; i++) inv[P[i]] = i;
  int64_t KA = (int64_t)A->C * A->kk, KB = (int64_t)B->C * B->kk;
  /* Layer A: rows stored in block order, so its dense copy and bias too. */
  if (g->values[A->wv].data) {
    W = pv_wlayer_dense(g, A);
    float *W2 = W ? malloc(sizeof(float) * (size_t)(A->M * KA)) : NULL;
    if (!W2) {
      rc = pv_error(PV_ENOMEM, "out of memory");
      goto done;
    }
    for (int32_t i = 0; i < nch; i++)
      memcpy(W2 + i * KA, W + (int64_t)P[i] * KA, sizeof(float) * KA);
    rc = pv_wlayer_store(g, A, W2);
    free(W2);
    free(W);
    W = NULL;
    if (rc) goto done;
  }
  for (int32_t i = 0; i < nch; i++) pa->perm_r[i] = i;
  if (A->bias >= 0 && value_numel(&g->values[A->bias]) == nch &&
      (rc = permute_slabs(g, A->bias, P, nch)))
    goto done;
  int v = g->nodes[A->node].out[0];
  if ((rc = set_chan_perm(g, v, P, nch))) goto done;
  for (int k = 0; k < nmid; k++) {
    if ((rc = apply_through(g, mid[k], P, nch))) goto done;
    if ((rc = set_chan_perm(g, g->nodes[mid[k]].out[0], P, nch))) goto done;
  }
  /* Layer B: stored input channel s holds what B called channel P[s]. */
  if (pb)
    for (int32_t j = 0; j < pb->C; j++) pb->perm_c[j] = inv[pb->perm_c[j]];
  if (g->values[B->wv].data) {
    W = pv_wlayer_dense(g, B);
    float *W2 = W ? malloc(sizeof(float) * (size_t)(B->M * KB)) : NULL;
    if (!W2) {
      rc = pv_error(PV_ENOMEM, "out of memory");
      goto done;
    }
    for (int32_t m = 0; m < B->M; m++)
      for (int32_t s = 0; s < B->C; s++)
        memcpy(W2 + m * KB + (int64_t)s * B->kk,
               W + m * KB + (int64_t)P[s] * B->kk, sizeof(float) * B->kk);
    rc = pv_wlayer_store(g, B, W2);
    free(W2);
  }
done:
  free(W);
  free(P);
  free(inv);
  return rc;
}

static bool is_identity(const int32_t *p, int32_t n) {
  for (int32_t i = 0; i < n; i++)
    if (p[i] != i) return false;
  return true;
}

int pv_graph_fold_perms(pv_graph *g) {
  if (!g) return pv_error(PV_EINVAL, "fold: no graph");
  pv_graph_link(g);
  for (int i = 0; i < g->n_nodes; i++) {
    pv_wlayer A, B;
    if (!pv_wlayer_of(g, i, &A) || !g->values[A.wv].pivot) continue;
    const pv_node *na = &g->nodes[i];
    if (na->n_out < 1 || na->out[0] < 0) continue;
    if (is_identity(g->values[A.wv].pivot->perm_r, A.M)) continue;
    /* A's bias is permuted with its rows: it must be per output channel
     * (a full [batch, N] Gemm C would not follow) and read by A only. */
    if (A.bias >= 0) {
      int r = per_channel(g, A.bias, A.M, false);
      if (r < 0 || (r == 1 && !single_use(g, A.bias))) continue;
    }
    /* Walk the single-consumer chain to the next pivoted layer. */
    int mid[MAX_CHAIN], nmid = 0, cur = na->out[0], found = -1;
    while (nmid < MAX_CHAIN) {
      int j;
      bool is_out = false;
      for (int k = 0; k < g->n_outputs; k++) is_out |= g->outputs[k] == cur;
      if (is_out || pv_graph_consumers(g, cur, &j, 1) != 1 || j < 0) break;
      /* B may be dense (a layer kept dense): its columns are permuted. */
      if (pv_wlayer_of(g, j, &B) &&
          g->nodes[j].in[0] == cur && B.conv == A.conv && B.C == A.M &&
          pv_attr_int(&g->nodes[j], "transA", 0) == 0) {
        found = j;
        break;
      }
      if (!passes_through(g, j, cur, A.M, A.conv)) break;
      mid[nmid++] = j;
      cur = g->nodes[j].out[0];
    }
    if (found < 0) continue;
    int rc = fold_one(g, &A, mid, nmid, &B);
    if (rc) return pv_error_prefix(rc, "fold '%s'", na->name);
  }
  return 0;
}
