/* ONNX recurrent ops RNN, GRU and LSTM (opset 7-22 semantics): reference
 * implementation and shape inference.
 *
 * Inputs (layout 0): X [T, B, I], W [D, G*H, I], R [D, G*H, H],
 * B [D, 2*G*H] (optional), sequence_lens [B] (optional, int32),
 * initial_h [D, B, H] (optional); LSTM also initial_c [D, B, H] and
 * peepholes P [D, 3H]. G is 1 (RNN), 3 (GRU, gates z r h) or 4 (LSTM,
 * gates i o f c); D is 2 for direction "bidirectional", else 1. Outputs:
 * Y [T, D, B, H], Y_h [D, B, H] and (LSTM) Y_c [D, B, H], all optional.
 * Layout 1 swaps the first two axes of X, Y, Y_h, Y_c, initial_h/c.
 * Supported: every direction, both layouts, sequence_lens, clip,
 * LSTM input_forget and peepholes, GRU linear_before_reset 0 and 1, and
 * the default activations (RNN Tanh; GRU Sigmoid, Tanh; LSTM Sigmoid,
 * Tanh, Tanh). Other activation lists are refused by name rather than
 * computed wrongly.
 *
 * A pivoted GRU (tools/pivot_train/rnn.py) is an ordinary GRU whose W and
 * R have zeros outside their blocks; core/gru_split.c turns it into one
 * small GRU per block at load. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pivot.h"
#include "pv-rnn.h"

enum cell { CELL_RNN, CELL_GRU, CELL_LSTM };

typedef struct rnn_shape {
  enum cell cell;
  int G;              /* gates */
  int D;              /* directions */
  bool reverse_only;  /* direction "reverse" */
  bool layout1;
  int64_t T, Bt, I, H;
} rnn_shape;

static const pv_tensor *in_t(const pv_node *n, const pv_tensor *vals, int i) {
  if (i >= n->n_in || n->in[i] < 0) return NULL;
  return &vals[n->in[i]];
}

static pv_tensor *out_t(const pv_node *n, pv_tensor *vals, int i) {
  if (i >= n->n_out || n->out[i] < 0) return NULL;
  return &vals[n->out[i]];
}

static int cell_of(const pv_node *n) {
  if (!n || !n->op || (n->domain && n->domain[0])) return -1;
  if (!strcmp(n->op, "RNN")) return CELL_RNN;
  if (!strcmp(n->op, "GRU")) return CELL_GRU;
  if (!strcmp(n->op, "LSTM")) return CELL_LSTM;
  return -1;
}

bool pv_rnn_supports(const pv_node *n) { return cell_of(n) >= 0; }

/* The activation list must be the default one for every direction. */
static int check_activations(const pv_node *n, enum cell c, int D) {
  static const char *const def[3][3] = {
      {"Tanh"}, {"Sigmoid", "Tanh"}, {"Sigmoid", "Tanh", "Tanh"}};
  static const int per[3] = {1, 2, 3};
  const pv_attr *acts = pv_node_attr(n, "activations");
  if (!acts) return 0;
  bool ok = acts->n == per[c] * D && acts->strings;
  for (int i = 0; ok && i < acts->n; i++)
    ok = acts->strings[i] && !strcasecmp(acts->strings[i], def[c][i % per[c]]);
  if (!ok)
    return pv_error(PV_EUNSUPPORTED,
                    "%s %s: activations other than the defaults (%s%s%s%s%s)",
                    n->op, n->name, def[c][0], c ? ", " : "", c ? def[c][1] : "",
                    c == CELL_LSTM ? ", " : "", c == CELL_LSTM ? def[c][2] : "");
  return 0;
}

/* Dims of a [D, B, H] state tensor in the node's layout. */
static bool state_dims_ok(const pv_tensor *t, const rnn_shape *s) {
  return t->ndim == 3 && t->dims[2] == s->H &&
         t->dims[0] == (s->layout1 ? s->Bt : s->D) &&
         t->dims[1] == (s->layout1 ? s->D : s->Bt);
}

/* Checks what the reference implements: anything else is refused with a
 * message rather than computed wrongly. */
static int rnn_check(const pv_node *n, const pv_tensor *vals, rnn_shape *s) {
  int c = cell_of(n);
  if (c < 0) return pv_error(PV_EUNSUPPORTED, "%s: not a recurrent op", n->op);
  s->cell = (enum cell)c;
  s->G = c == CELL_RNN ? 1 : c == CELL_GRU ? 3 : 4;
  const char *op = n->op;
  const char *dir = pv_attr_str(n, "direction", "forward");
  if (!strcmp(dir, "forward") || !strcmp(dir, "reverse")) {
    s->D = 1;
    s->reverse_only = dir[0] == 'r';
  } else if (!strcmp(dir, "bidirectional")) {
    s->D = 2;
    s->reverse_only = false;
  } else {
    return pv_error(PV_EINVAL, "%s %s: direction '%s'", op, n->name, dir);
  }
  int64_t layout = pv_attr_int(n, "layout", 0);
  if (layout != 0 && layout != 1)
    return pv_error(PV_EINVAL, "%s %s: layout %lld", op, n->name, (long long)layout);
  s->layout1 = layout == 1;
  int rc = check_activations(n, s->cell, s->D);
  if (rc) return rc;
  const pv_tensor *x = in_t(n, vals, 0), *w = in_t(n, vals, 1),
                  *r = in_t(n, vals, 2), *b = in_t(n, vals, 3),
                  *sl = in_t(n, vals, 4), *h0 = in_t(n, vals, 5),
                  *c0 = s->cell == CELL_LSTM ? in_t(n, vals, 6) : NULL,
                  *p = s->cell == CELL_LSTM ? in_t(n, vals, 7) : NULL;
  if (!x || !w || !r)
    return pv_error(PV_EINVAL, "%s %s: needs inputs X, W and R", op, n->name);
  if (x->dtype != PV_F32 || w->dtype != PV_F32 || r->dtype != PV_F32 ||
      (b && b->dtype != PV_F32) || (h0 && h0->dtype != PV_F32) ||
      (c0 && c0->dtype != PV_F32) || (p && p->dtype != PV_F32))
    return pv_error(PV_ETYPE, "%s %s: X, W, R, B, initial states and P must be float32",
                    op, n->name);
  if (x->ndim != 3 || w->ndim != 3 || r->ndim != 3)
    return pv_error(PV_ESHAPE, "%s %s: X, W, R must be 3-D", op, n->name);
  int64_t h = pv_attr_int(n, "hidden_size", r->dims[2]);
  if (h <= 0 || h > (INT64_C(1) << 30))
    return pv_error(PV_EINVAL, "%s %s: hidden_size %lld", op, n->name, (long long)h);
  s->T = s->layout1 ? x->dims[1] : x->dims[0];
  s->Bt = s->layout1 ? x->dims[0] : x->dims[1];
  s->I = x->dims[2];
  s->H = h;
  int64_t GH = s->G * h;
  if (w->dims[0] != s->D || w->dims[1] != GH || w->dims[2] != s->I)
    return pv_error(PV_ESHAPE, "%s %s: W must be [%d, %lld, %lld]", op, n->name,
                    s->D, (long long)GH, (long long)s->I);
  if (r->dims[0] != s->D || r->dims[1] != GH || r->dims[2] != h)
    return pv_error(PV_ESHAPE, "%s %s: R must be [%d, %lld, %lld]", op, n->name,
                    s->D, (long long)GH, (long long)h);
  if (b && (b->ndim != 2 || b->dims[0] != s->D || b->dims[1] != 2 * GH))
    return pv_error(PV_ESHAPE, "%s %s: B must be [%d, %lld]", op, n->name, s->D,
                    (long long)(2 * GH));
  if (sl && (sl->ndim != 1 || sl->dims[0] != s->Bt || sl->dtype != PV_I32))
    return pv_error(PV_ESHAPE, "%s %s: sequence_lens must be int32 [%lld]", op,
                    n->name, (long long)s->Bt);
  if (h0 && !state_dims_ok(h0, s))
    return pv_error(PV_ESHAPE, "%s %s: initial_h has the wrong shape", op, n->name);
  if (c0 && !state_dims_ok(c0, s))
    return pv_error(PV_ESHAPE, "%s %s: initial_c has the wrong shape", op, n->name);
  if (p && (p->ndim != 2 || p->dims[0] != s->D || p->dims[1] != 3 * h))
    return pv_error(PV_ESHAPE, "%s %s: P must be [%d, %lld]", op, n->name, s->D,
                    (long long)(3 * h));
  if (s->T < 0 || s->Bt < 0 || s->I < 0 ||
      (uint64_t)s->Bt * (uint64_t)h > (SIZE_MAX / sizeof(float)) / 16)
    return pv_error(PV_ERANGE, "%s %s: state too large", op, n->name);
  return 0;
}

static void set_state_dims(pv_tensor *t, const rnn_shape *s) {
  t->dtype = PV_F32;
  t->ndim = 3;
  t->dims[0] = s->layout1 ? s->Bt : s->D;
  t->dims[1] = s->layout1 ? s->D : s->Bt;
  t->dims[2] = s->H;
}

int pv_infer_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  (void)g;
  rnn_shape s;
  int rc = rnn_check(n, vals, &s);
  if (rc) return rc;
  pv_tensor *y = out_t(n, vals, 0), *yh = out_t(n, vals, 1),
            *yc = s.cell == CELL_LSTM ? out_t(n, vals, 2) : NULL;
  if (y) {
    y->dtype = PV_F32;
    y->ndim = 4;
    y->dims[0] = s.layout1 ? s.Bt : s.T;
    y->dims[1] = s.layout1 ? s.T : s.D;
    y->dims[2] = s.layout1 ? s.D : s.Bt;
    y->dims[3] = s.H;
  }
  if (yh) set_state_dims(yh, &s);
  if (yc) set_state_dims(yc, &s);
  return 0;
}

static float sigm(float v) { return 1.0f / (1.0f + expf(-v)); }

static float clipf(float v, float c) {
  return c > 0 ? (v > c ? c : v < -c ? -c : v) : v;
}

/* Offsets in the node's layout. */
static size_t x_off(const rnn_shape *s, int64_t t, int64_t b) {
  return (size_t)(s->layout1 ? b * s->T + t : t * s->Bt + b) * (size_t)s->I;
}
static size_t y_off(const rnn_shape *s, int64_t t, int d, int64_t b) {
  int64_t i = s->layout1 ? (b * s->T + t) * s->D + d : (t * s->D + d) * s->Bt + b;
  return (size_t)i * (size_t)s->H;
}
static size_t st_off(const rnn_shape *s, int d, int64_t b) {
  int64_t i = s->layout1 ? b * s->D + d : (int64_t)d * s->Bt + b;
  return (size_t)i * (size_t)s->H;
}

/* One direction d over the whole sequence. h, c: [B, H] state (c only
 * for LSTM), initialised by the caller; gx, gh, tmp: scratch of G*H. */
static void run_direction(const pv_node *n, const rnn_shape *s, int d, bool rev,
                          const float *x, const float *W, const float *R,
                          const float *bias, const float *P, const int32_t *sl,
                          float clip, float *h, float *c, float *y, float *gx,
                          float *gh, float *tmp) {
  const int64_t H = s->H, I = s->I, GH = s->G * H;
  const bool lbr = pv_attr_int(n, "linear_before_reset", 0) != 0;
  const bool coupled = pv_attr_int(n, "input_forget", 0) != 0;
  for (int64_t b = 0; b < s->Bt; b++) {
    int64_t len = sl ? sl[b] : s->T;
    if (len < 0) len = 0;
    if (len > s->T) len = s->T;
    float *hb = h + b * H, *cb = c ? c + b * H : NULL;
    for (int64_t step = 0; step < len; step++) {
      int64_t t = rev ? len - 1 - step : step;
      const float *xb = x + x_off(s, t, b);
      for (int64_t j = 0; j < GH; j++) {
        double sx = bias ? bias[j] : 0, sh = bias ? bias[GH + j] : 0;
        const float *wj = W + j * I, *rj = R + j * H;
        for (int64_t k = 0; k < I; k++) sx += (double)wj[k] * xb[k];
        /* GRU without linear_before_reset: the h-gate's recurrent part
         * needs r first (below). */
        if (s->cell != CELL_GRU || j < 2 * H || lbr)
          for (int64_t k = 0; k < H; k++) sh += (double)rj[k] * hb[k];
        gx[j] = (float)sx;
        gh[j] = (float)sh;
      }
      if (s->cell == CELL_RNN) {
        for (int64_t j = 0; j < H; j++) tmp[j] = tanhf(clipf(gx[j] + gh[j], clip));
      } else if (s->cell == CELL_GRU) {
        /* gates z (0..H), r (H..2H); candidate h (2H..3H) */
        float *rg = tmp + H;
        for (int64_t k = 0; k < H; k++) rg[k] = sigm(clipf(gx[H + k] + gh[H + k], clip));
        if (!lbr)
          for (int64_t j = 0; j < H; j++) {
            double acc = bias ? bias[GH + 2 * H + j] : 0;
            const float *rj = R + (2 * H + j) * H;
            for (int64_t k = 0; k < H; k++) acc += (double)rj[k] * rg[k] * hb[k];
            gh[2 * H + j] = (float)acc;
          }
        for (int64_t j = 0; j < H; j++) {
          float z = sigm(clipf(gx[j] + gh[j], clip));
          float cand = lbr ? tanhf(clipf(gx[2 * H + j] + rg[j] * gh[2 * H + j], clip))
                           : tanhf(clipf(gx[2 * H + j] + gh[2 * H + j], clip));
          tmp[j] = (1.0f - z) * cand + z * hb[j];
        }
      } else {
        /* gates i (0..H), o (H..2H), f (2H..3H), c (3H..4H); P = [Pi Po Pf] */
        const float *pi = P ? P : NULL, *po = P ? P + H : NULL, *pf = P ? P + 2 * H : NULL;
        for (int64_t j = 0; j < H; j++) {
          float cprev = cb[j];
          float ig = sigm(clipf(gx[j] + gh[j] + (pi ? pi[j] * cprev : 0), clip));
          float fg = coupled ? 1.0f - ig
                             : sigm(clipf(gx[2 * H + j] + gh[2 * H + j] +
                                              (pf ? pf[j] * cprev : 0), clip));
          float cand = tanhf(clipf(gx[3 * H + j] + gh[3 * H + j], clip));
          float cnew = fg * cprev + ig * cand;
          float og = sigm(clipf(gx[H + j] + gh[H + j] + (po ? po[j] * cnew : 0), clip));
          cb[j] = cnew;
          tmp[j] = og * tanhf(cnew);
        }
      }
      memcpy(hb, tmp, (size_t)H * sizeof(float));
      if (y) memcpy(y + y_off(s, t, d, b), hb, (size_t)H * sizeof(float));
    }
    /* Past this sequence's end Y is 0 and the state holds. */
    if (y)
      for (int64_t t = len; t < s->T; t++)
        memset(y + y_off(s, t, d, b), 0, (size_t)H * sizeof(float));
  }
}

int pv_ref_rnn(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  (void)g;
  rnn_shape s;
  int rc = rnn_check(n, vals, &s);
  if (rc) return rc;
  const bool lstm = s.cell == CELL_LSTM;
  const float *x = in_t(n, vals, 0)->data, *W = in_t(n, vals, 1)->data,
              *R = in_t(n, vals, 2)->data;
  const pv_tensor *bt = in_t(n, vals, 3), *slt = in_t(n, vals, 4),
                  *h0t = in_t(n, vals, 5), *c0t = lstm ? in_t(n, vals, 6) : NULL,
                  *pt = lstm ? in_t(n, vals, 7) : NULL;
  pv_tensor *yt = out_t(n, vals, 0), *yht = out_t(n, vals, 1),
            *yct = lstm ? out_t(n, vals, 2) : NULL;
  const int32_t *sl = slt ? slt->data : NULL;
  const float clip = pv_node_attr(n, "clip") ? pv_attr_float(n, "clip", 0) : 0;
  const int64_t H = s.H, GH = s.G * H;
  float *h = malloc((size_t)(s.Bt * H) * sizeof(float) + 1);
  float *c = lstm ? malloc((size_t)(s.Bt * H) * sizeof(float) + 1) : NULL;
  float *gx = malloc((size_t)GH * sizeof(float));
  float *gh = malloc((size_t)GH * sizeof(float));
  float *tmp = malloc((size_t)(2 * H) * sizeof(float));
  if (!h || (lstm && !c) || !gx || !gh || !tmp) {
    rc = pv_error(PV_ENOMEM, "%s %s: state", n->op, n->name);
    goto out;
  }
  for (int d = 0; d < s.D; d++) {
    bool rev = s.reverse_only || d == 1;
    for (int64_t b = 0; b < s.Bt; b++) {
      if (h0t) memcpy(h + b * H, (const float *)h0t->data + st_off(&s, d, b), H * sizeof(float));
      else memset(h + b * H, 0, H * sizeof(float));
      if (lstm && c0t) memcpy(c + b * H, (const float *)c0t->data + st_off(&s, d, b), H * sizeof(float));
      else if (lstm) memset(c + b * H, 0, H * sizeof(float));
    }
    run_direction(n, &s, d, rev, x, W + (size_t)d * GH * s.I, R + (size_t)d * GH * H,
                  bt ? (const float *)bt->data + (size_t)d * 2 * GH : NULL,
                  pt ? (const float *)pt->data + (size_t)d * 3 * H : NULL, sl, clip,
                  h, c, yt ? yt->data : NULL, gx, gh, tmp);
    for (int64_t b = 0; b < s.Bt; b++) {
      if (yht) memcpy((float *)yht->data + st_off(&s, d, b), h + b * H, H * sizeof(float));
      if (yct) memcpy((float *)yct->data + st_off(&s, d, b), c + b * H, H * sizeof(float));
    }
  }
  rc = 0;
out:
  free(tmp);
  free(gh);
  free(gx);
  free(c);
  free(h);
  return rc;
}
