/* Split a pivoted GRU into independent smaller GRUs.
 *
 * A GRU whose input (W) and recurrent (R) matrices are block diagonal
 * after one permutation of the hidden units (shared by the three gates)
 * and one of the input features (tools/pivot_train/rnn.py trains them) is
 * n independent GRUs: hidden unit j only ever reads the features and the
 * hidden units of its own group, at every time step. This pass finds the
 * groups (union-find over the nonzeros of W and R, exact: nothing is
 * pruned) and rewrites the node as
 *
 *   X_g  = Gather(X, features of g, axis 2)        for every group g
 *   Y_g, Yh_g = GRU(X_g, W_g, R_g, B_g, seq_lens, Gather(h0, units of g))
 *   Y    = Gather(Concat(Y_g..., axis 3), inverse permutation, axis 3)
 *   Y_h  = Gather(Concat(Yh_g..., axis 2), inverse permutation, axis 2)
 *
 * so the work per step falls by the number of groups, with plain ops any
 * backend runs. Outputs are bit-for-bit the dense GRU's up to summation
 * order (the zeros outside the blocks are skipped). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "pv-ops-ext.h"

/* More groups than this are merged (largest first, onto the lightest
 * group): each group costs a few small nodes. */
#define MAX_GROUPS 32

static int uf_find(int *p, int a) {
  while (p[a] != a) a = p[a] = p[p[a]];
  return a;
}

static void uf_union(int *p, int a, int b) {
  a = uf_find(p, a);
  b = uf_find(p, b);
  if (a != b) p[a < b ? b : a] = a < b ? a : b;
}

static const pv_value *const_f32(const pv_graph *g, const pv_node *n, int k,
                                 int ndim) {
  if (k >= n->n_in || n->in[k] < 0) return NULL;
  const pv_value *v = &g->values[n->in[k]];
  if (!v->data || v->dtype != PV_F32 || v->ndim != ndim || v->pivot)
    return NULL;
  return v;
}

static int64_t *index_const(const int *idx, int n) {
  int64_t *d = pv_aligned_alloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  if (d)
    for (int i = 0; i < n; i++) d[i] = idx[i];
  return d;
}

/* node = Gather(data, indices, axis) writing out. */
static int add_gather(pv_graph *g, const char *name, int data, int indices,
                      int axis, int out) {
  int in[2] = {data, indices};
  int nd = pv_graph_add_node(g, name, "Gather", in, 2, &out, 1);
  if (nd < 0) return nd;
  pv_attr a = {.name = "axis", .type = PV_ATTR_INT, .i = axis};
  return pv_node_add_attr(g, nd, &a);
}

typedef struct groups {
  int n;          /* groups */
  int *hid_of;    /* group of each hidden unit */
  int *feat_of;   /* group of each feature, -1 when no unit reads it */
} groups;

/* Connected components of the bipartite graph (hidden units, features)
 * with an edge per nonzero of W or R, merged down to MAX_GROUPS. */
static int find_groups(const float *W, const float *R, int64_t H, int64_t I,
                       groups *gr) {
  int *p = malloc(sizeof(int) * (size_t)(H + I));
  int *size = calloc((size_t)(H + I), sizeof(int));
  int *root_group = malloc(sizeof(int) * (size_t)(H + I));
  int *load = calloc(MAX_GROUPS, sizeof(int));
  int *order = malloc(sizeof(int) * (size_t)(H + I));
  gr->hid_of = malloc(sizeof(int) * (size_t)H);
  gr->feat_of = malloc(sizeof(int) * (size_t)(I ? I : 1));
  int rc = 0;
  if (!p || !size || !root_group || !load || !order || !gr->hid_of ||
      !gr->feat_of) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out;
  }
  for (int64_t i = 0; i < H + I; i++) p[i] = (int)i;
  for (int64_t r = 0; r < 3 * H; r++) {
    int j = (int)(r % H);
    for (int64_t k = 0; k < I; k++)
      if (W[r * I + k] != 0.0f) uf_union(p, j, (int)(H + k));
    for (int64_t k = 0; k < H; k++)
      if (R[r * H + k] != 0.0f) uf_union(p, j, (int)k);
  }
  /* Components that hold hidden units, by size (hidden units). */
  int nc = 0;
  for (int64_t j = 0; j < H; j++) {
    int r = uf_find(p, (int)j);
    if (size[r]++ == 0) order[nc++] = r;
  }
  gr->n = nc;
  if (nc < 2) goto out;
  /* Largest first onto the lightest group: balanced within one largest
   * component, and identity when there are few components. */
  for (int a = 1; a < nc; a++) {
    int v = order[a], b = a;
    while (b > 0 && size[order[b - 1]] < size[v]) {
      order[b] = order[b - 1];
      b--;
    }
    order[b] = v;
  }
  int ng = nc < MAX_GROUPS ? nc : MAX_GROUPS;
  for (int a = 0; a < nc; a++) {
    int best = 0;
    for (int k = 1; k < ng; k++)
      if (load[k] < load[best]) best = k;
    root_group[order[a]] = best;
    load[best] += size[order[a]];
  }
  gr->n = ng;
  for (int64_t j = 0; j < H; j++) gr->hid_of[j] = root_group[uf_find(p, (int)j)];
  for (int64_t k = 0; k < I; k++) {
    int r = uf_find(p, (int)(H + k));
    gr->feat_of[k] = size[r] ? root_group[r] : -1;
  }
out:
  free(p);
  free(size);
  free(root_group);
  free(load);
  free(order);
  return rc;
}

/* Rewrite GRU node ni when its matrices split; 1 when they do not. */
static int split_one(pv_graph *g, int ni) {
  const pv_node *n = &g->nodes[ni];
  if (strcmp(pv_attr_str(n, "direction", "forward"), "forward") ||
      pv_attr_int(n, "layout", 0) != 0 || n->n_in < 3 || n->in[0] < 0)
    return 1;
  for (int a = 0; a < n->n_attrs; a++)
    if (!strcmp(n->attrs[a].name, "clip") ||
        !strcmp(n->attrs[a].name, "activations") ||
        !strcmp(n->attrs[a].name, "activation_alpha") ||
        !strcmp(n->attrs[a].name, "activation_beta"))
      return 1;
  const pv_value *wv = const_f32(g, n, 1, 3), *rv = const_f32(g, n, 2, 3);
  if (!wv || !rv) return 1;
  int64_t H = rv->dims[2], I = wv->dims[2];
  if (H < 2 || H > (1 << 24) || I < 1 || I > (1 << 24) ||
      wv->dims[0] != 1 || wv->dims[1] != 3 * H || rv->dims[0] != 1 ||
      rv->dims[1] != 3 * H || pv_attr_int(n, "hidden_size", H) != H)
    return 1;
  const pv_value *bv = NULL;
  if (n->n_in > 3 && n->in[3] >= 0) {
    bv = const_f32(g, n, 3, 2);
    if (!bv || bv->dims[0] != 1 || bv->dims[1] != 6 * H) return 1;
  }
  groups gr = {0};
  int rc = find_groups(wv->data, rv->data, H, I, &gr);
  if (rc || gr.n < 2) {
    free(gr.hid_of);
    free(gr.feat_of);
    return rc ? rc : 1;
  }
  int ng = gr.n;
  const float *W = wv->data, *R = rv->data, *B = bv ? bv->data : NULL;
  int X = n->in[0];
  int SL = n->n_in > 4 ? n->in[4] : -1, H0 = n->n_in > 5 ? n->in[5] : -1;
  int Y = n->n_out > 0 ? n->out[0] : -1, YH = n->n_out > 1 ? n->out[1] : -1;
  /* An output nobody reads (exporters often leave Y_h dangling) gets no
   * concat and no gather. */
  if (Y >= 0 && !pv_graph_consumers(g, Y, NULL, 0)) Y = -1;
  if (YH >= 0 && !pv_graph_consumers(g, YH, NULL, 0)) YH = -1;
  if (Y < 0 && YH < 0) {
    free(gr.hid_of);
    free(gr.feat_of);
    return 1;
  }
  char base[200];
  snprintf(base, sizeof base, "%s", n->name && n->name[0] ? n->name : "gru");
  /* The original's attributes, hidden_size aside, go to every group. */
  int n_attrs;
  const pv_attr *attrs;

  int *hid = malloc(sizeof(int) * (size_t)H), *feat = malloc(sizeof(int) * (size_t)I);
  int *perm = malloc(sizeof(int) * (size_t)H), *inv = malloc(sizeof(int) * (size_t)H);
  int *ys = malloc(sizeof(int) * ng), *yhs = malloc(sizeof(int) * ng);
  if (!hid || !feat || !perm || !inv || !ys || !yhs) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out;
  }
  int np = 0;
  for (int gi = 0; gi < ng && !rc; gi++) {
    int hg = 0, ig = 0;
    for (int64_t j = 0; j < H; j++)
      if (gr.hid_of[j] == gi) hid[hg++] = (int)j;
    for (int64_t k = 0; k < I; k++)
      if (gr.feat_of[k] == gi) feat[ig++] = (int)k;
    /* A group that reads no feature still needs a non-empty X_g: one
     * feature with zero weights. */
    bool nofeat = ig == 0;
    if (nofeat) feat[ig++] = 0;
    memcpy(perm + np, hid, sizeof(int) * hg);
    np += hg;
    float *wg = pv_aligned_alloc(sizeof(float) * 3 * (size_t)hg * ig);
    float *rg = pv_aligned_alloc(sizeof(float) * 3 * (size_t)hg * hg);
    float *bg = B ? pv_aligned_alloc(sizeof(float) * 6 * (size_t)hg) : NULL;
    if (!wg || !rg || (B && !bg)) {
      pv_free(wg), pv_free(rg), pv_free(bg);
      rc = pv_error(PV_ENOMEM, "out of memory");
      break;
    }
    for (int gate = 0; gate < 3; gate++)
      for (int a = 0; a < hg; a++) {
        int64_t row = gate * H + hid[a];
        float *wr = wg + ((size_t)gate * hg + a) * ig;
        float *rr = rg + ((size_t)gate * hg + a) * hg;
        for (int c = 0; c < ig && !nofeat; c++) wr[c] = W[row * I + feat[c]];
        for (int c = 0; c < hg; c++) rr[c] = R[row * H + hid[c]];
        if (B) {
          bg[gate * hg + a] = B[row];
          bg[(3 + gate) * hg + a] = B[3 * H + row];
        }
      }
    char sfx[48];
    int64_t dw[3] = {1, 3 * hg, ig}, dr[3] = {1, 3 * hg, hg}, db[2] = {1, 6 * hg};
    int64_t dfi[1] = {ig}, dhi[1] = {hg};
    snprintf(sfx, sizeof sfx, "_W%d", gi);
    int wgv = pv_graph_add_const(g, base, sfx, PV_F32, wg, 3, dw);
    snprintf(sfx, sizeof sfx, "_R%d", gi);
    int rgv = wgv < 0 ? wgv : pv_graph_add_const(g, base, sfx, PV_F32, rg, 3, dr);
    if (wgv < 0) pv_free(rg);
    int bgv = -1;
    if (B) {
      snprintf(sfx, sizeof sfx, "_B%d", gi);
      bgv = rgv < 0 ? rgv : pv_graph_add_const(g, base, sfx, PV_F32, bg, 2, db);
      if (rgv < 0) pv_free(bg);
    }
    if (wgv < 0 || rgv < 0 || (B && bgv < 0)) {
      rc = wgv < 0 ? wgv : rgv < 0 ? rgv : bgv;
      break;
    }
    int64_t *fi = index_const(feat, ig);
    snprintf(sfx, sizeof sfx, "_features%d", gi);
    int fiv = fi ? pv_graph_add_const(g, base, sfx, PV_I64, fi, 1, dfi)
                 : pv_error(PV_ENOMEM, "out of memory");
    snprintf(sfx, sizeof sfx, "_X%d", gi);
    int xg = fiv < 0 ? fiv : pv_graph_add_unique_value(g, base, sfx);
    char gn[240];
    snprintf(gn, sizeof gn, "%s_gather_x%d", base, gi);
    rc = xg < 0 ? xg : add_gather(g, gn, X, fiv, 2, xg);
    if (rc < 0) break;
    int h0g = -1;
    if (H0 >= 0) {
      int64_t *hi = index_const(hid, hg);
      snprintf(sfx, sizeof sfx, "_units%d", gi);
      int hiv = hi ? pv_graph_add_const(g, base, sfx, PV_I64, hi, 1, dhi)
                   : pv_error(PV_ENOMEM, "out of memory");
      snprintf(sfx, sizeof sfx, "_h0_%d", gi);
      h0g = hiv < 0 ? hiv : pv_graph_add_unique_value(g, base, sfx);
      snprintf(gn, sizeof gn, "%s_gather_h0_%d", base, gi);
      rc = h0g < 0 ? h0g : add_gather(g, gn, H0, hiv, 2, h0g);
      if (rc < 0) break;
    }
    ys[gi] = yhs[gi] = -1;
    snprintf(sfx, sizeof sfx, "_Y%d", gi);
    if (Y >= 0 && (ys[gi] = pv_graph_add_unique_value(g, base, sfx)) < 0) {
      rc = ys[gi];
      break;
    }
    snprintf(sfx, sizeof sfx, "_Yh%d", gi);
    if (YH >= 0 && (yhs[gi] = pv_graph_add_unique_value(g, base, sfx)) < 0) {
      rc = yhs[gi];
      break;
    }
    int in[6] = {xg, wgv, rgv, bgv, SL, h0g}, out[2] = {ys[gi], yhs[gi]};
    char nm[240];
    snprintf(nm, sizeof nm, "%s_group%d", base, gi);
    int nd = pv_graph_add_node(g, nm, "GRU", in, 6, out, 2);
    if (nd < 0) {
      rc = nd;
      break;
    }
    /* g->nodes may have moved: the original is re-read by index. */
    attrs = g->nodes[ni].attrs;
    n_attrs = g->nodes[ni].n_attrs;
    for (int a = 0; a < n_attrs && !rc; a++) {
      pv_attr at = attrs[a];
      if (!strcmp(at.name, "hidden_size")) at.i = hg;
      rc = pv_node_add_attr(g, nd, &at);
    }
    bool has_hs = false;
    for (int a = 0; a < n_attrs; a++)
      has_hs |= !strcmp(attrs[a].name, "hidden_size");
    if (!rc && !has_hs) { /* the group's own size, never the original's */
      pv_attr at = {.name = "hidden_size", .type = PV_ATTR_INT, .i = hg};
      rc = pv_node_add_attr(g, nd, &at);
    }
  }
  if (rc) goto out;
  for (int c = 0; c < (int)H; c++) inv[perm[c]] = c;
  int64_t dh[1] = {H};
  for (int which = 0; which < 2 && !rc; which++) {
    int dst = which ? YH : Y;
    if (dst < 0) continue;
    int axis = which ? 2 : 3;
    int *parts = which ? yhs : ys;
    int cat = pv_graph_add_unique_value(g, base, which ? "_Yh_cat" : "_Y_cat");
    if (cat < 0) {
      rc = cat;
      break;
    }
    char nm[240];
    snprintf(nm, sizeof nm, "%s%s", base, which ? "_concat_yh" : "_concat_y");
    int nd = pv_graph_add_node(g, nm, "Concat", parts, ng, &cat, 1);
    pv_attr at = {.name = "axis", .type = PV_ATTR_INT, .i = axis};
    rc = nd < 0 ? nd : pv_node_add_attr(g, nd, &at);
    if (rc) break;
    int64_t *ix = index_const(inv, (int)H);
    int ixv = ix ? pv_graph_add_const(g, base, which ? "_unperm_yh" : "_unperm_y", PV_I64,
                             ix, 1, dh)
                 : pv_error(PV_ENOMEM, "out of memory");
    snprintf(nm, sizeof nm, "%s%s", base, which ? "_unpermute_yh" : "_unpermute_y");
    rc = ixv < 0 ? ixv : add_gather(g, nm, cat, ixv, axis, dst);
  }
  if (!rc) {
    pv_node *old = &g->nodes[ni];
    free(old->op);
    old->op = NULL;
  }
out:
  free(hid), free(feat), free(perm), free(inv), free(ys), free(yhs);
  free(gr.hid_of);
  free(gr.feat_of);
  return rc;
}

int pv_pass_split_gru(pv_graph *g) {
  bool changed = false;
  int n0 = g->n_nodes;
  for (int i = 0; i < n0; i++) {
    const pv_node *n = &g->nodes[i];
    if (!n->op || strcmp(n->op, "GRU") || (n->domain && n->domain[0])) continue;
    if (pv_node_guarded(n)) continue; /* an If branch's: its last input is the guard */
    int rc = split_one(g, i);
    if (rc < 0) return rc;
    if (rc == 0) changed = true;
  }
  return changed ? pv_graph_compact(g) : 0;
}
