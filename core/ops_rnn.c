/* ONNX GRU (opset 7-22 semantics, forward direction, layout 0), reference
 * implementation and shape inference.
 *
 * Inputs: X [T, B, I], W [1, 3H, I], R [1, 3H, H], B [1, 6H] (optional),
 * sequence_lens [B] (optional, int32), initial_h [1, B, H] (optional).
 * Gate order in W, R and B is z, r, h. Outputs: Y [T, 1, B, H] and
 * Y_h [1, B, H], both optional. A pivoted GRU (tools/pivot_train/rnn.py)
 * is an ordinary GRU whose W and R have zeros outside their blocks, so this
 * op runs it exactly; a blocked kernel is a later optimisation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-rnn.h"

static const pv_tensor *in_t(const pv_node *n, const pv_tensor *vals, int i) {
  if (i >= n->n_in || n->in[i] < 0) return NULL;
  return &vals[n->in[i]];
}

static pv_tensor *out_t(const pv_node *n, pv_tensor *vals, int i) {
  if (i >= n->n_out || n->out[i] < 0) return NULL;
  return &vals[n->out[i]];
}

bool pv_rnn_supports(const pv_node *n) {
  return n && n->op && !strcmp(n->op, "GRU") &&
         (!n->domain || !n->domain[0]);
}

/* Checks what the reference implements: anything else is refused with a
 * message rather than computed wrongly. Fills T, Bt, I, H. */
static int gru_check(const pv_node *n, const pv_tensor *vals, int64_t *T,
                     int64_t *Bt, int64_t *I, int64_t *H) {
  const pv_tensor *x = in_t(n, vals, 0), *w = in_t(n, vals, 1),
                  *r = in_t(n, vals, 2), *b = in_t(n, vals, 3),
                  *sl = in_t(n, vals, 4), *h0 = in_t(n, vals, 5);
  const char *dir = pv_attr_str(n, "direction", "forward");
  if (strcmp(dir, "forward"))
    return pv_error(PV_EUNSUPPORTED, "GRU %s: direction '%s' (only forward)",
                    n->name, dir);
  if (pv_attr_int(n, "layout", 0) != 0)
    return pv_error(PV_EUNSUPPORTED, "GRU %s: layout 1 (only 0)", n->name);
  if (pv_node_attr(n, "clip"))
    return pv_error(PV_EUNSUPPORTED, "GRU %s: clip", n->name);
  const pv_attr *acts = pv_node_attr(n, "activations");
  if (acts) {
    if (acts->n != 2 || strcmp(acts->strings[0], "Sigmoid") ||
        strcmp(acts->strings[1], "Tanh"))
      return pv_error(PV_EUNSUPPORTED,
                      "GRU %s: activations other than Sigmoid, Tanh", n->name);
  }
  if (!x || !w || !r)
    return pv_error(PV_EINVAL, "GRU %s: needs inputs X, W and R", n->name);
  if (x->dtype != PV_F32 || w->dtype != PV_F32 || r->dtype != PV_F32 ||
      (b && b->dtype != PV_F32) || (h0 && h0->dtype != PV_F32))
    return pv_error(PV_ETYPE, "GRU %s: X, W, R, B, initial_h must be float32",
                    n->name);
  if (x->ndim != 3 || w->ndim != 3 || r->ndim != 3)
    return pv_error(PV_ESHAPE, "GRU %s: X, W, R must be 3-D", n->name);
  int64_t h = pv_attr_int(n, "hidden_size", r->dims[2]);
  if (h <= 0 || h > (INT64_C(1) << 30))
    return pv_error(PV_EINVAL, "GRU %s: hidden_size %lld", n->name,
                    (long long)h);
  *T = x->dims[0];
  *Bt = x->dims[1];
  *I = x->dims[2];
  *H = h;
  if (w->dims[0] != 1 || w->dims[1] != 3 * h || w->dims[2] != *I)
    return pv_error(PV_ESHAPE, "GRU %s: W must be [1, %lld, %lld]", n->name,
                    (long long)(3 * h), (long long)*I);
  if (r->dims[0] != 1 || r->dims[1] != 3 * h || r->dims[2] != h)
    return pv_error(PV_ESHAPE, "GRU %s: R must be [1, %lld, %lld]", n->name,
                    (long long)(3 * h), (long long)h);
  if (b && (b->ndim != 2 || b->dims[0] != 1 || b->dims[1] != 6 * h))
    return pv_error(PV_ESHAPE, "GRU %s: B must be [1, %lld]", n->name,
                    (long long)(6 * h));
  if (sl && (sl->ndim != 1 || sl->dims[0] != *Bt || sl->dtype != PV_I32))
    return pv_error(PV_ESHAPE, "GRU %s: sequence_lens must be int32 [%lld]",
                    n->name, (long long)*Bt);
  if (h0 && (h0->ndim != 3 || h0->dims[0] != 1 || h0->dims[1] != *Bt ||
             h0->dims[2] != h))
    return pv_error(PV_ESHAPE, "GRU %s: initial_h must be [1, %lld, %lld]",
                    n->name, (long long)*Bt, (long long)h);
  return 0;
}

int pv_infer_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  (void)g;
  int64_t T, Bt, I, H;
  int rc = gru_check(n, vals, &T, &Bt, &I, &H);
  if (rc) return rc;
  pv_tensor *y = out_t(n, vals, 0), *yh = out_t(n, vals, 1);
  if (y) {
    y->dtype = PV_F32;
    y->ndim = 4;
    y->dims[0] = T, y->dims[1] = 1, y->dims[2] = Bt, y->dims[3] = H;
  }
  if (yh) {
    yh->dtype = PV_F32;
    yh->ndim = 3;
    yh->dims[0] = 1, yh->dims[1] = Bt, yh->dims[2] = H;
  }
  return 0;
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

int pv_ref_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  (void)g;
  int64_t T, Bt, I, H;
  int rc = gru_check(n, vals, &T, &Bt, &I, &H);
  if (rc) return rc;
  const float *x = in_t(n, vals, 0)->data, *W = in_t(n, vals, 1)->data,
              *R = in_t(n, vals, 2)->data;
  const pv_tensor *bt = in_t(n, vals, 3), *slt = in_t(n, vals, 4),
                  *h0t = in_t(n, vals, 5);
  const float *bias = bt ? bt->data : NULL;
  const int32_t *sl = slt ? slt->data : NULL;
  bool lbr = pv_attr_int(n, "linear_before_reset", 0) != 0;
  pv_tensor *yt = out_t(n, vals, 0), *yht = out_t(n, vals, 1);
  float *y = yt ? yt->data : NULL;
  /* h: state [B, H]; gx, gh: the three gates' input and recurrent parts. */
  if ((uint64_t)Bt * (uint64_t)H > (SIZE_MAX / sizeof(float)) / 8)
    return pv_error(PV_ERANGE, "GRU %s: state too large", n->name);
  float *h = calloc((size_t)(Bt * H), sizeof(float));
  float *gx = malloc((size_t)(3 * H) * sizeof(float));
  float *gh = malloc((size_t)(3 * H) * sizeof(float));
  float *rh = malloc((size_t)H * sizeof(float));
  if (!h || !gx || !gh || !rh) {
    rc = pv_error(PV_ENOMEM, "GRU %s: state", n->name);
    goto out_free;
  }
  if (h0t) memcpy(h, h0t->data, (size_t)(Bt * H) * sizeof(float));
  for (int64_t t = 0; t < T; t++) {
    for (int64_t b = 0; b < Bt; b++) {
      float *hb = h + b * H;
      float *yb = y ? y + (t * Bt + b) * H : NULL;
      if (sl && t >= sl[b]) { /* past this sequence's end: Y is 0, h holds */
        if (yb) memset(yb, 0, (size_t)H * sizeof(float));
        continue;
      }
      const float *xb = x + (t * Bt + b) * I;
      for (int64_t j = 0; j < 3 * H; j++) {
        double sx = bias ? bias[j] : 0, sh = bias ? bias[3 * H + j] : 0;
        const float *wj = W + j * I, *rj = R + j * H;
        for (int64_t k = 0; k < I; k++) sx += (double)wj[k] * xb[k];
        if (j < 2 * H || lbr)
          for (int64_t k = 0; k < H; k++) sh += (double)rj[k] * hb[k];
        gx[j] = (float)sx;
        gh[j] = (float)sh;
      }
      /* gates z (0..H), r (H..2H); candidate h (2H..3H) */
      for (int64_t k = 0; k < H; k++) rh[k] = sigm(gx[H + k] + gh[H + k]);
      if (!lbr) {
        /* (r * h) R_h^T: the reset gate applies before the product */
        for (int64_t j = 0; j < H; j++) {
          double s = bias ? bias[5 * H + j] : 0;
          const float *rj = R + (2 * H + j) * H;
          for (int64_t k = 0; k < H; k++) s += (double)rj[k] * rh[k] * hb[k];
          gh[2 * H + j] = (float)s;
        }
      }
      for (int64_t j = 0; j < H; j++) {
        float z = sigm(gx[j] + gh[j]);
        float c = lbr ? tanhf(gx[2 * H + j] + rh[j] * gh[2 * H + j])
                      : tanhf(gx[2 * H + j] + gh[2 * H + j]);
        gx[j] = (1.0f - z) * c + z * hb[j]; /* new h, stored aside */
      }
      memcpy(hb, gx, (size_t)H * sizeof(float));
      if (yb) memcpy(yb, hb, (size_t)H * sizeof(float));
    }
  }
  if (yht) memcpy(yht->data, h, (size_t)(Bt * H) * sizeof(float));
  rc = 0;
out_free:
  free(rh);
  free(gh);
  free(gx);
  free(h);
  return rc;
}
