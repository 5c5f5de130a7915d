/* Concrete per-node shape inference: output dtype and dims from inputs
 * (and from the data of constant / plan-time shape tensors). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pivot.h"
#include "pv-rnn.h"
#include "pv-ops-ext.h"
#include "ops-internal.h"

#define IN(k) pv_node_in(n, vals, (k))
#define ERR(code, ...) pv_node_error(n, (code), __VA_ARGS__)

int pv_node_error(const pv_node *n, int code, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return pv_error(code, "node '%s' (%s): %s", n->name ? n->name : "",
                  n->op ? n->op : "?", msg);
}

int pv_read_ints(const pv_node *n, const pv_tensor *t, const char *what,
                 int64_t *buf, int max) {
  int64_t cnt = pv_tensor_numel(t);
  if (cnt < 0 || cnt > max)
    return ERR(PV_ESHAPE, "%s has %lld elements (at most %d)", what,
               (long long)cnt, max);
  if (cnt && !t->data)
    return ERR(PV_EUNSUPPORTED, "%s is not known before execution", what);
  for (int64_t i = 0; i < cnt; i++) {
    if (t->dtype == PV_I64) buf[i] = ((const int64_t *)t->data)[i];
    else if (t->dtype == PV_I32) buf[i] = ((const int32_t *)t->data)[i];
    else
      return ERR(PV_ETYPE, "%s must be INT64 or INT32, not %s", what,
                 pv_dtype_name(t->dtype));
  }
  return (int)cnt;
}

/* Axes given as attribute `name` before opset `input_from`, as input k
 * from then on. Returns count, -1-like PV codes on error, or 0 with
 * *given false when absent. */
static int axes_arg(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                    const char *name, int input_from, int k, int64_t *buf,
                    bool *given) {
  *given = false;
  const int64_t *a;
  int c = pv_attr_ints(n, name, &a);
  if (c >= 0 && (g->opset < input_from || !IN(k))) {
    if (c > PV_MAX_DIMS) return ERR(PV_ESHAPE, "too many %s", name);
    if (c > 0) memcpy(buf, a, sizeof *a * c);
    *given = true;
    return c;
  }
  const pv_tensor *t = IN(k);
  if (!t) return 0;
  *given = true;
  return pv_read_ints(n, t, name, buf, PV_MAX_DIMS);
}

static int norm_axis(const pv_node *n, int64_t a, int r, int64_t *out) {
  if (a < -r || a >= r)
    return ERR(PV_EINVAL, "axis %lld out of range for rank %d", (long long)a, r);
  *out = a < 0 ? a + r : a;
  return 0;
}

/* Normalise na axes for rank r in place; a repeated axis is an error. */
static int norm_axes(const pv_node *n, int64_t *ax, int na, int r) {
  bool seen[PV_MAX_DIMS] = {0};
  for (int i = 0; i < na; i++) {
    int rc = norm_axis(n, ax[i], r, &ax[i]);
    if (rc) return rc;
    if (seen[ax[i]]) return ERR(PV_EINVAL, "axis %lld repeated in axes", (long long)ax[i]);
    seen[ax[i]] = true;
  }
  return 0;
}

int pv_broadcast(const pv_node *n, const pv_tensor *const *ts, int k,
                 int *ndim, int64_t *dims) {
  int r = 0;
  for (int i = 0; i < k; i++)
    if (ts[i]->ndim > r) r = ts[i]->ndim;
  for (int d = 0; d < r; d++) {
    int64_t v = 1;
    for (int i = 0; i < k; i++) {
      int o = d - (r - ts[i]->ndim);
      if (o < 0) continue;
      int64_t x = ts[i]->dims[o];
      if (x == 1) continue;
      if (v != 1 && x != v) {
        char a[128], b[128];
        pv_dims_str(ts[0]->dims, ts[0]->ndim, a, sizeof a);
        pv_dims_str(ts[i]->dims, ts[i]->ndim, b, sizeof b);
        return ERR(PV_ESHAPE, "shapes %s and %s cannot be broadcast", a, b);
      }
      v = x;
    }
    dims[d] = v;
  }
  *ndim = r;
  return 0;
}

int pv_window_geom(const pv_node *n, const pv_tensor *x, bool ceil_ok,
                   pv_window *w) {
  int nsp = x->ndim - 2;
  if (nsp < 1 || nsp > PV_MAX_SPATIAL)
    return ERR(PV_EUNSUPPORTED, "input rank %d (expected 3 to %d)", x->ndim,
               PV_MAX_SPATIAL + 2);
  w->nsp = nsp;
  const int64_t *s, *d, *p;
  int ns = pv_attr_ints(n, "strides", &s);
  int nd = pv_attr_ints(n, "dilations", &d);
  int np = pv_attr_ints(n, "pads", &p);
  if ((ns >= 0 && ns != nsp) || (nd >= 0 && nd != nsp) ||
      (np >= 0 && np != 2 * nsp))
    return ERR(PV_EINVAL, "strides/dilations/pads length does not match %d "
               "spatial axes", nsp);
  const char *ap = pv_attr_str(n, "auto_pad", "NOTSET");
  bool ceil_mode = ceil_ok && pv_attr_int(n, "ceil_mode", 0);
  for (int i = 0; i < nsp; i++) {
    w->s[i] = ns > 0 ? s[i] : 1;
    w->d[i] = nd > 0 ? d[i] : 1;
    w->pb[i] = np > 0 ? p[i] : 0;
    w->pe[i] = np > 0 ? p[nsp + i] : 0;
    int64_t in = x->dims[2 + i], k = w->k[i];
    if (w->s[i] < 1 || w->d[i] < 1 || k < 1 || w->pb[i] < 0 || w->pe[i] < 0 ||
        k > (INT64_C(1) << 31) || w->d[i] > (INT64_C(1) << 31) ||
        w->s[i] > (INT64_C(1) << 31) || w->pb[i] > (INT64_C(1) << 31) ||
        w->pe[i] > (INT64_C(1) << 31))
      return ERR(PV_EINVAL, "bad kernel %lld / stride %lld / dilation %lld / "
                 "pads on axis %d", (long long)k, (long long)w->s[i],
                 (long long)w->d[i], i);
    int64_t ek = (k - 1) * w->d[i] + 1;
    if (!strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER")) {
      int64_t o = (in + w->s[i] - 1) / w->s[i];
      int64_t tot = (o - 1) * w->s[i] + ek - in;
      if (tot < 0) tot = 0;
      bool upper = !strcmp(ap, "SAME_UPPER");
      w->pb[i] = upper ? tot / 2 : tot - tot / 2;
      w->pe[i] = tot - w->pb[i];
      w->out[i] = o;
      continue;
    }
    if (!strcmp(ap, "VALID")) {
      w->pb[i] = w->pe[i] = 0;
    } else if (strcmp(ap, "NOTSET")) {
      return ERR(PV_EINVAL, "unknown auto_pad '%s'", ap);
    }
    int64_t avail = in + w->pb[i] + w->pe[i] - ek;
    if (avail < 0)
      return ERR(PV_ESHAPE, "kernel extent %lld larger than padded input %lld "
                 "on spatial axis %d", (long long)ek,
                 (long long)(in + w->pb[i] + w->pe[i]), i);
    int64_t o = ceil_mode ? (avail + w->s[i] - 1) / w->s[i] + 1
                          : avail / w->s[i] + 1;
    /* The last window must start inside the input or its begin padding. */
    if (ceil_mode && (o - 1) * w->s[i] >= in + w->pb[i]) o--;
    w->out[i] = o;
  }
  return 0;
}

int pv_slice_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                  int64_t *start, int64_t *step, int64_t *count) {
  const pv_tensor *x = IN(0);
  int r = x->ndim;
  int64_t st[PV_MAX_DIMS], en[PV_MAX_DIMS], ax[PV_MAX_DIMS], sp[PV_MAX_DIMS];
  int ns, ne, na = -1, nsp = -1;
  if (g->opset < 10) {
    const int64_t *a;
    ns = pv_attr_ints(n, "starts", &a);
    if (ns < 0 || ns > r) return ERR(PV_EINVAL, "missing or bad 'starts'");
    if (ns > 0) memcpy(st, a, sizeof *a * ns);
    ne = pv_attr_ints(n, "ends", &a);
    if (ne < 0 || ne > r) return ERR(PV_EINVAL, "missing or bad 'ends'");
    if (ne > 0) memcpy(en, a, sizeof *a * ne);
    na = pv_attr_ints(n, "axes", &a);
    if (na > r) return ERR(PV_EINVAL, "too many axes");
    if (na > 0) memcpy(ax, a, sizeof *a * na);
  } else {
    if (!IN(1) || !IN(2)) return ERR(PV_EINVAL, "starts and ends are required");
    if ((ns = pv_read_ints(n, IN(1), "starts", st, r)) < 0) return ns;
    if ((ne = pv_read_ints(n, IN(2), "ends", en, r)) < 0) return ne;
    if (IN(3) && (na = pv_read_ints(n, IN(3), "axes", ax, r)) < 0) return na;
    if (IN(4) && (nsp = pv_read_ints(n, IN(4), "steps", sp, r)) < 0) return nsp;
  }
  if (ne != ns || (na >= 0 && na != ns) || (nsp >= 0 && nsp != ns))
    return ERR(PV_EINVAL, "starts/ends/axes/steps lengths differ");
  bool seen[PV_MAX_DIMS] = {0};
  for (int i = 0; i < r; i++) {
    start[i] = 0;
    step[i] = 1;
    count[i] = x->dims[i];
  }
  for (int i = 0; i < ns; i++) {
    int64_t a = na >= 0 ? ax[i] : i;
    int rc = norm_axis(n, a, r, &a);
    if (rc) return rc;
    if (seen[a]) return ERR(PV_EINVAL, "axis %lld repeated", (long long)a);
    seen[a] = true;
    int64_t d = x->dims[a], s = nsp >= 0 ? sp[i] : 1, b = st[i], e = en[i];
    if (s == 0) return ERR(PV_EINVAL, "step 0 on axis %lld", (long long)a);
    /* A step longer than the axis takes at most one element; clamping it
     * keeps offset arithmetic far from overflow. */
    if (s > d) s = d > 0 ? d : 1;
    if (s < -d) s = d > 0 ? -d : -1;
    if (b < 0) b += d;
    if (e < 0) e += d;
    if (s > 0) {
      b = b < 0 ? 0 : b > d ? d : b;
      e = e < 0 ? 0 : e > d ? d : e;
    } else {
      b = b < 0 ? 0 : b > d - 1 ? d - 1 : b;
      e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
    }
    int64_t c;
    if (s > 0) c = e > b ? (e - b - 1) / s + 1 : 0;
    else c = b > e ? (b - e - 1) / -s + 1 : 0;
    start[a] = b;
    step[a] = s;
    count[a] = c;
  }
  return 0;
}

int pv_resize_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   float *scales, int64_t *out) {
  const pv_tensor *x = IN(0);
  int r = x->ndim;
  const pv_tensor *ts = NULL, *tz = NULL;
  bool upsample = !strcmp(n->op, "Upsample");
  if (upsample && g->opset < 9) {
    const pv_attr *a = pv_node_attr(n, "scales");
    if (!a || a->type != PV_ATTR_FLOATS || a->n != r)
      return ERR(PV_EINVAL, "'scales' attribute must have %d floats", r);
    for (int i = 0; i < r; i++) scales[i] = a->floats[i];
  } else {
    if (upsample || g->opset < 11) ts = IN(1);
    else {
      ts = IN(2);
      tz = IN(3);
    }
    if (ts && pv_tensor_numel(ts) == 0) ts = NULL;
    if (tz && pv_tensor_numel(tz) == 0) tz = NULL;
    if (!!ts == !!tz)
      return ERR(PV_EINVAL, "exactly one of scales and sizes must be given");
    /* Opset 18: `axes` names the axes scales / sizes cover, the others
     * keep their size; keep_aspect_ratio_policy (with sizes) scales
     * them all by one factor. */
    int64_t ax[PV_MAX_DIMS];
    int na = r;
    for (int i = 0; i < r; i++) ax[i] = i;
    const int64_t *aa;
    int ca = !upsample && g->opset >= 18 ? pv_attr_ints(n, "axes", &aa) : -1;
    if (ca >= 0) {
      if (ca > r) return ERR(PV_EINVAL, "axes has %d entries for rank %d", ca, r);
      na = ca;
      memcpy(ax, aa, sizeof *aa * (size_t)na);
      int rc = norm_axes(n, ax, na, r);
      if (rc) return rc;
    }
    const char *pol = !upsample && g->opset >= 18
                          ? pv_attr_str(n, "keep_aspect_ratio_policy", "stretch")
                          : "stretch";
    int policy = !strcmp(pol, "stretch") ? 0 : !strcmp(pol, "not_larger") ? 1
                 : !strcmp(pol, "not_smaller") ? 2 : -1;
    if (policy < 0)
      return ERR(PV_EINVAL, "keep_aspect_ratio_policy '%s' (stretch, not_larger, "
                 "not_smaller)", pol);
    float v[PV_MAX_DIMS];
    int64_t sz[PV_MAX_DIMS];
    for (int i = 0; i < r; i++) {
      scales[i] = 1.f;
      out[i] = x->dims[i];
    }
    if (ts) {
      if (ts->dtype != PV_F32 || pv_tensor_numel(ts) != na)
        return ERR(PV_ESHAPE, "scales must be %d FP32 values", na);
      if (!ts->data) return ERR(PV_EUNSUPPORTED, "scales not known before execution");
      memcpy(v, ts->data, sizeof(float) * na);
      for (int k = 0; k < na; k++) scales[ax[k]] = v[k];
    } else {
      int c = pv_read_ints(n, tz, "sizes", sz, PV_MAX_DIMS);
      if (c < 0) return c;
      if (c != na) return ERR(PV_ESHAPE, "sizes has %d values for %d axes", c, na);
      for (int k = 0; k < na; k++)
        if (sz[k] < 0) return ERR(PV_EINVAL, "negative size on axis %lld", (long long)ax[k]);
      if (policy) {
        /* One factor for every named axis: the largest that fits
         * (not_larger) or the smallest that covers (not_smaller); sizes
         * round half up, as the ONNX reference and ONNX Runtime do. */
        float f = 0;
        for (int k = 0; k < na; k++) {
          int64_t d = x->dims[ax[k]];
          if (!d) return ERR(PV_ESHAPE, "keep_aspect_ratio_policy on empty axis %lld",
                             (long long)ax[k]);
          float q = (float)sz[k] / (float)d;
          if (k == 0 || (policy == 1 ? q < f : q > f)) f = q;
        }
        for (int k = 0; k < na; k++) {
          scales[ax[k]] = f;
          out[ax[k]] = (int64_t)floorf(f * (float)x->dims[ax[k]] + 0.5f);
        }
        return 0;
      }
      for (int k = 0; k < na; k++) {
        int64_t d = x->dims[ax[k]];
        out[ax[k]] = sz[k];
        scales[ax[k]] = d ? (float)sz[k] / (float)d : 1.f;
      }
      return 0;
    }
  }
  for (int i = 0; i < r; i++) {
    if (!(scales[i] > 0) || !isfinite(scales[i]) || scales[i] > 1e6f)
      return ERR(PV_EINVAL, "bad scale %g on axis %d", scales[i], i);
    /* Same float product and truncation as ONNX Runtime. */
    out[i] = (int64_t)(scales[i] * (float)x->dims[i]);
  }
  return 0;
}

int pv_split_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                  int *axis, int64_t *sizes) {
  const pv_tensor *x = IN(0);
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a);
  if (rc) return rc;
  *axis = (int)a;
  int64_t len = x->dims[a];
  const int64_t *sp;
  int c = pv_attr_ints(n, "split", &sp);
  int64_t buf[64];
  if (g->opset >= 13 || c < 0) {
    c = -1;
    if (IN(1)) {
      if ((c = pv_read_ints(n, IN(1), "split", buf, 64)) < 0) return c;
      sp = buf;
    }
  }
  if (c >= 0 && g->opset >= 18 && pv_node_attr(n, "num_outputs"))
    return ERR(PV_EINVAL, "both the split input and num_outputs are given");
  if (c >= 0) {
    if (c != n->n_out)
      return ERR(PV_EINVAL, "split has %d entries for %d outputs", c, n->n_out);
    int64_t tot = 0;
    for (int i = 0; i < c; i++) {
      if (sp[i] < 0) return ERR(PV_EINVAL, "negative split size");
      sizes[i] = sp[i];
      tot += sp[i];
    }
    if (tot != len)
      return ERR(PV_ESHAPE, "split sizes sum to %lld, axis has %lld",
                 (long long)tot, (long long)len);
    return 0;
  }
  /* Opset 18's num_outputs names the count; the last part may be
   * smaller (ceil-sized parts), as with no attribute before. */
  int64_t k = n->n_out, no = g->opset >= 18 ? pv_attr_int(n, "num_outputs", -1) : -1;
  if (no != -1 && no != k)
    return ERR(PV_EINVAL, "num_outputs is %lld but the node has %lld outputs",
               (long long)no, (long long)k);
  int64_t chunk = (len + k - 1) / k;
  for (int i = 0; i < k; i++) {
    int64_t left = len - chunk * i;
    sizes[i] = left < 0 ? 0 : left < chunk ? left : chunk;
  }
  return 0;
}

int pv_reduce_axes(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   bool *mask) {
  int r = IN(0)->ndim;
  int64_t ax[PV_MAX_DIMS];
  bool given;
  int from = !strcmp(n->op, "ReduceSum") ? 13 : 18;
  int c = axes_arg(g, n, vals, "axes", from, 1, ax, &given);
  if (c < 0) return c;
  bool noop = pv_attr_int(n, "noop_with_empty_axes", 0);
  for (int i = 0; i < r; i++) mask[i] = c == 0 && !noop;
  for (int i = 0; i < c; i++) {
    int64_t a = 0;
    int rc = norm_axis(n, ax[i], r, &a);
    if (rc) return rc;
    mask[a] = true;
  }
  return 0;
}

int pv_pad_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                int64_t *pb, int64_t *pe) {
  int r = IN(0)->ndim;
  int64_t p[2 * PV_MAX_DIMS];
  int c;
  if (g->opset < 11) {
    const int64_t *a;
    c = pv_attr_ints(n, "pads", &a);
    if (c < 0) c = pv_attr_ints(n, "paddings", &a);
    if (c < 0) return ERR(PV_EINVAL, "missing 'pads'");
    if (c > 2 * PV_MAX_DIMS) c = 2 * PV_MAX_DIMS + 1;
    else if (c > 0) memcpy(p, a, sizeof *a * c);
  } else {
    if (!IN(1)) return ERR(PV_EINVAL, "missing pads input");
    if ((c = pv_read_ints(n, IN(1), "pads", p, 2 * PV_MAX_DIMS)) < 0) return c;
  }
  /* Opset 18: an optional axes input names the axes pads covers (two
   * values per named axis); the others are not padded. */
  int64_t ax[PV_MAX_DIMS];
  int na = r;
  for (int i = 0; i < r; i++) ax[i] = i;
  if (g->opset < 18 && IN(3))
    return ERR(PV_EINVAL, "the axes input exists from opset 18 (model: %d)", g->opset);
  if (IN(3) && pv_tensor_numel(IN(3)) > 0) {
    if ((na = pv_read_ints(n, IN(3), "axes", ax, PV_MAX_DIMS)) < 0) return na;
    int rc = norm_axes(n, ax, na, r);
    if (rc) return rc;
  }
  if (c != 2 * na)
    return ERR(PV_ESHAPE, "pads has %d values for %d axes", c, na);
  for (int i = 0; i < r; i++) pb[i] = pe[i] = 0;
  for (int k = 0; k < na; k++) {
    pb[ax[k]] = p[k];
    pe[ax[k]] = p[na + k];
  }
  for (int i = 0; i < r; i++) {
    if (pb[i] > (INT64_C(1) << 40) || pe[i] > (INT64_C(1) << 40) ||
        IN(0)->dims[i] + pb[i] + pe[i] < 0)
      return ERR(PV_ESHAPE, "pads on axis %d remove more than the axis", i);
  }
  return 0;
}

/* ---------------------------------------------------------------- ops */

static bool is_op(const pv_node *n, const char *const *list) {
  for (; *list; list++)
    if (!strcmp(n->op, *list)) return true;
  return false;
}

static const char *const unary_ops[] = {
    "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Sqrt", "Exp", "Neg", "Abs",
    "Identity", "Softmax", "LogSoftmax", "Clip", "Erf", "Floor", "Ceil",
    "Reciprocal", "Log", NULL};
static const char *const binary_ops[] = {"Add", "Sub", "Mul", "Div", "Pow",
                                         NULL};
static const char *const compare_ops[] = {"Equal", "Less", "Greater", NULL};

static void set_out(pv_tensor *o, pv_dtype t, int ndim, const int64_t *dims) {
  o->dtype = t;
  o->ndim = ndim;
  memset(o->dims, 0, sizeof o->dims);
  if (ndim > 0) memcpy(o->dims, dims, sizeof *dims * ndim);
}

static int infer_conv(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *w = IN(1), *b = IN(2);
  if (!w) return ERR(PV_EINVAL, "missing weight input");
  if (w->dtype != x->dtype || (b && b->dtype != x->dtype))
    return ERR(PV_ETYPE, "weight/bias type differs from input %s",
               pv_dtype_name(x->dtype));
  if (w->ndim != x->ndim)
    return ERR(PV_ESHAPE, "weight rank %d does not match input rank %d",
               w->ndim, x->ndim);
  int64_t groups = pv_attr_int(n, "group", 1);
  if (groups < 1) return ERR(PV_EINVAL, "group %lld", (long long)groups);
  if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
  if (x->dims[1] != w->dims[1] * groups)
    return ERR(PV_ESHAPE, "input channels %lld do not match weight %lld x "
               "groups %lld", (long long)x->dims[1], (long long)w->dims[1],
               (long long)groups);
  if (w->dims[0] % groups)
    return ERR(PV_ESHAPE, "output channels %lld not divisible by groups %lld",
               (long long)w->dims[0], (long long)groups);
  if (b && (b->ndim != 1 || b->dims[0] != w->dims[0]))
    return ERR(PV_ESHAPE, "bias must have %lld elements", (long long)w->dims[0]);
  pv_window win;
  const int64_t *ks;
  int nk = pv_attr_ints(n, "kernel_shape", &ks);
  for (int i = 0; i < x->ndim - 2 && i < PV_MAX_SPATIAL; i++) {
    win.k[i] = w->dims[2 + i];
    if (nk == x->ndim - 2 && ks[i] != win.k[i])
      return ERR(PV_ESHAPE, "kernel_shape does not match weight");
  }
  int rc = pv_window_geom(n, x, false, &win);
  if (rc) return rc;
  int64_t d[PV_MAX_DIMS] = {x->dims[0], w->dims[0]};
  for (int i = 0; i < win.nsp; i++) d[2 + i] = win.out[i];
  set_out(o, x->dtype, x->ndim, d);
  return 0;
}

static int infer_pool(const pv_node *n, const pv_tensor *vals, pv_tensor *vals_out) {
  const pv_tensor *x = IN(0);
  pv_window win;
  const int64_t *ks;
  int nk = pv_attr_ints(n, "kernel_shape", &ks);
  if (nk != x->ndim - 2)
    return ERR(PV_EINVAL, "kernel_shape must have %d entries", x->ndim - 2);
  for (int i = 0; i < nk && i < PV_MAX_SPATIAL; i++) win.k[i] = ks[i];
  int rc = pv_window_geom(n, x, true, &win);
  if (rc) return rc;
  int64_t d[PV_MAX_DIMS] = {x->dims[0], x->dims[1]};
  for (int i = 0; i < win.nsp; i++) d[2 + i] = win.out[i];
  set_out(&vals_out[n->out[0]], x->dtype, x->ndim, d);
  if (!strcmp(n->op, "MaxPool") && n->n_out > 1 && n->out[1] >= 0)
    set_out(&vals_out[n->out[1]], PV_I64, x->ndim, d);
  return 0;
}

static int infer_matmul(const pv_node *n, const pv_tensor *a, const pv_tensor *b,
                        pv_tensor *o) {
  if (a->ndim < 1 || b->ndim < 1) return ERR(PV_ESHAPE, "scalar operand");
  pv_tensor A = *a, B = *b;
  if (a->ndim == 1) {
    A.ndim = 2;
    A.dims[0] = 1;
    A.dims[1] = a->dims[0];
  }
  if (b->ndim == 1) {
    B.ndim = 2;
    B.dims[0] = b->dims[0];
    B.dims[1] = 1;
  }
  if (A.dims[A.ndim - 1] != B.dims[B.ndim - 2])
    return ERR(PV_ESHAPE, "inner dimensions %lld and %lld differ",
               (long long)A.dims[A.ndim - 1], (long long)B.dims[B.ndim - 2]);
  pv_tensor ba = A, bb = B;
  ba.ndim -= 2;
  bb.ndim -= 2;
  const pv_tensor *ts[2] = {&ba, &bb};
  int r;
  int64_t d[PV_MAX_DIMS];
  int rc = pv_broadcast(n, ts, 2, &r, d);
  if (rc) return rc;
  if (a->ndim > 1) d[r++] = A.dims[A.ndim - 2];
  if (b->ndim > 1) d[r++] = B.dims[B.ndim - 1];
  set_out(o, a->dtype, r, d);
  return 0;
}

static int infer_gemm(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *a = IN(0), *b = IN(1), *c = IN(2);
  if (!b) return ERR(PV_EINVAL, "missing B input");
  if (a->ndim != 2 || b->ndim != 2)
    return ERR(PV_ESHAPE, "A and B must be 2-D (got rank %d and %d)", a->ndim,
               b->ndim);
  bool ta = pv_attr_int(n, "transA", 0), tb = pv_attr_int(n, "transB", 0);
  int64_t M = ta ? a->dims[1] : a->dims[0], K = ta ? a->dims[0] : a->dims[1];
  int64_t K2 = tb ? b->dims[1] : b->dims[0], N = tb ? b->dims[0] : b->dims[1];
  if (K != K2)
    return ERR(PV_ESHAPE, "inner dimensions %lld and %lld differ", (long long)K,
               (long long)K2);
  int64_t d[2] = {M, N};
  if (c) {
    pv_tensor y = {.ndim = 2, .dims = {M, N}};
    const pv_tensor *ts[2] = {&y, c};
    int r;
    int64_t bd[PV_MAX_DIMS];
    int rc = pv_broadcast(n, ts, 2, &r, bd);
    if (rc) return rc;
    if (r != 2 || bd[0] != M || bd[1] != N)
      return ERR(PV_ESHAPE, "C does not broadcast to [%lld,%lld]", (long long)M,
                 (long long)N);
  }
  set_out(o, a->dtype, 2, d);
  return 0;
}

static int infer_reshape(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (!IN(1)) return ERR(PV_EINVAL, "missing shape input");
  int64_t s[PV_MAX_DIMS];
  int c = pv_read_ints(n, IN(1), "shape", s, PV_MAX_DIMS);
  if (c < 0) return c;
  bool allowzero = pv_attr_int(n, "allowzero", 0);
  int64_t total = pv_tensor_numel(x), known = 1;
  int neg = -1;
  for (int i = 0; i < c; i++) {
    if (s[i] == 0 && !allowzero) {
      if (i >= x->ndim) return ERR(PV_ESHAPE, "0 at axis %d beyond input rank", i);
      s[i] = x->dims[i];
    }
    if (s[i] == -1) {
      if (neg >= 0) return ERR(PV_EINVAL, "more than one -1 in shape");
      neg = i;
      continue;
    }
    if (s[i] < 0) return ERR(PV_EINVAL, "negative dimension %lld", (long long)s[i]);
    if (s[i] && known > INT64_MAX / s[i]) return ERR(PV_ERANGE, "shape overflows");
    known *= s[i];
  }
  if (neg >= 0) {
    if (known == 0 || total % known)
      return ERR(PV_ESHAPE, "cannot infer -1: %lld elements into blocks of %lld",
                 (long long)total, (long long)known);
    s[neg] = total / known;
  } else if (known != total) {
    char a[128], b[128];
    return ERR(PV_ESHAPE, "cannot reshape %s to %s",
               pv_dims_str(x->dims, x->ndim, a, sizeof a),
               pv_dims_str(s, c, b, sizeof b));
  }
  set_out(o, x->dtype, c, s);
  return 0;
}

static int infer_constant(const pv_node *n, pv_tensor *o) {
  const pv_attr *a = pv_node_attr(n, "value");
  if (a && a->type == PV_ATTR_TENSOR) {
    set_out(o, a->t.dtype, a->t.ndim, a->t.dims);
    return 0;
  }
  if ((a = pv_node_attr(n, "value_float"))) {
    set_out(o, PV_F32, 0, NULL);
  } else if ((a = pv_node_attr(n, "value_int"))) {
    set_out(o, PV_I64, 0, NULL);
  } else if ((a = pv_node_attr(n, "value_floats")) || (a = pv_node_attr(n, "value_ints"))) {
    int64_t d = a->n;
    set_out(o, a->type == PV_ATTR_FLOATS ? PV_F32 : PV_I64, 1, &d);
  } else {
    return ERR(PV_EUNSUPPORTED, "no supported value attribute");
  }
  return 0;
}

int pv_infer_node(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  if (!n->op) return pv_error(PV_EINVAL, "node without op");
  if (pv_rnn_supports(n)) return pv_infer_rnn(g, n, vals);
  if (!strcmp(n->op, "If") && pv_ext_has(n)) return pv_if_infer(n, vals);
  for (int k = 0; k < n->n_in; k++) {
    int v = n->in[k];
    if (v >= g->n_values) return ERR(PV_EINVAL, "input %d out of range", k);
    if (v >= 0 && (vals[v].dtype == PV_UNDEFINED || vals[v].ndim < 0 ||
                   vals[v].ndim > PV_MAX_DIMS))
      return ERR(PV_EINVAL, "input %d ('%s') has no known type or shape", k,
                 g->values[v].name);
    for (int d = 0; v >= 0 && d < vals[v].ndim; d++)
      if (vals[v].dims[d] < 0)
        return ERR(PV_ESHAPE, "input %d ('%s') has an unknown dimension", k,
                   g->values[v].name);
  }
  if (n->n_out < 1 || n->out[0] < 0) return ERR(PV_EINVAL, "no output");
  for (int k = 0; k < n->n_out; k++)
    if (n->out[k] >= g->n_values) return ERR(PV_EINVAL, "output %d out of range", k);
  if (pv_ext_has(n)) return pv_infer_ext(g, n, vals);
  const char *op = n->op;
  if (strcmp(op, "Constant") && strcmp(op, "Range") && !IN(0))
    return ERR(PV_EINVAL, "missing first input");
  const pv_tensor *x = IN(0);
  pv_tensor *o = &vals[n->out[0]];
  int64_t d[PV_MAX_DIMS];
  int r, rc;

  if (is_op(n, unary_ops) || !strcmp(op, "Dropout") ||
      !strcmp(op, "BatchNormalization") || !strcmp(op, "Not") ||
      !strcmp(op, "Cast") || !strcmp(op, "CastLike")) {
    pv_dtype t = x->dtype;
    if (!strcmp(op, "CastLike") && !IN(1))
      return ERR(PV_EINVAL, "missing target_type input");
    if (!strcmp(op, "Cast") || !strcmp(op, "CastLike")) {
      t = op[4] ? IN(1)->dtype : (pv_dtype)pv_attr_int(n, "to", 0);
      if (pv_dtype_size(t) == 0)
        return ERR(PV_EUNSUPPORTED, "cast to %s", pv_dtype_name(t));
    }
    if (!strcmp(op, "BatchNormalization")) {
      if (x->ndim < 2) return ERR(PV_ESHAPE, "input rank %d < 2", x->ndim);
      for (int k = 1; k < 5; k++) {
        const pv_tensor *p = IN(k);
        if (!p) return ERR(PV_EINVAL, "missing input %d", k);
        if (p->ndim != 1 || p->dims[0] != x->dims[1])
          return ERR(PV_ESHAPE, "input %d must have %lld elements", k,
                     (long long)x->dims[1]);
      }
    }
    if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax")) {
      int64_t a = 0;
      if ((rc = norm_axis(n, pv_attr_int(n, "axis", g->opset < 13 ? 1 : -1),
                          x->ndim ? x->ndim : 1, &a)))
        return rc;
    }
    set_out(o, t, x->ndim, x->dims);
    if (!strcmp(op, "Dropout") && n->n_out > 1 && n->out[1] >= 0)
      set_out(&vals[n->out[1]], PV_BOOL, x->ndim, x->dims);
    return 0;
  }
  if (is_op(n, binary_ops) || is_op(n, compare_ops) || !strcmp(op, "Where") ||
      !strcmp(op, "Expand")) {
    const pv_tensor *ts[3];
    int k = !strcmp(op, "Where") ? 3 : 2;
    for (int i = 0; i < k; i++)
      if (!(ts[i] = IN(i))) return ERR(PV_EINVAL, "missing input %d", i);
    pv_tensor shp = {0};
    if (!strcmp(op, "Expand")) {
      shp.ndim = pv_read_ints(n, ts[1], "shape", shp.dims, PV_MAX_DIMS);
      if (shp.ndim < 0) return shp.ndim;
      for (int i = 0; i < shp.ndim; i++)
        if (shp.dims[i] < 0)
          return ERR(PV_EINVAL, "negative dimension %lld in shape",
                     (long long)shp.dims[i]);
      ts[1] = &shp;
    }
    if ((rc = pv_broadcast(n, ts, k, &r, d))) return rc;
    pv_dtype t = is_op(n, compare_ops) ? PV_BOOL
                 : !strcmp(op, "Where")  ? ts[1]->dtype
                                         : x->dtype;
    set_out(o, t, r, d);
    return 0;
  }
  if (!strcmp(op, "Conv")) return infer_conv(n, vals, o);
  if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool"))
    return infer_pool(n, vals, vals);
  if (!strcmp(op, "GlobalAveragePool") || !strcmp(op, "GlobalMaxPool")) {
    if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
    memcpy(d, x->dims, sizeof d);
    for (int i = 2; i < x->ndim; i++) d[i] = 1;
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Gemm")) return infer_gemm(n, vals, o);
  if (!strcmp(op, "MatMul")) {
    if (!IN(1)) return ERR(PV_EINVAL, "missing input 1");
    return infer_matmul(n, x, IN(1), o);
  }
  if (!strcmp(op, "Concat")) {
    int64_t a = 0;
    if ((rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a))) return rc;
    memcpy(d, x->dims, sizeof d);
    d[a] = 0;
    for (int k = 0; k < n->n_in; k++) {
      const pv_tensor *t = IN(k);
      if (!t) continue;
      if (t->ndim != x->ndim || t->dtype != x->dtype)
        return ERR(PV_ESHAPE, "input %d differs in rank or type", k);
      for (int i = 0; i < x->ndim; i++)
        if (i != a && t->dims[i] != x->dims[i])
          return ERR(PV_ESHAPE, "input %d differs on axis %d (%lld vs %lld)", k,
                     i, (long long)t->dims[i], (long long)x->dims[i]);
      d[a] += t->dims[a];
    }
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Reshape")) return infer_reshape(n, vals, o);
  if (!strcmp(op, "Flatten")) {
    int64_t a = pv_attr_int(n, "axis", 1);
    if (a < 0) a += x->ndim;
    if (a < 0 || a > x->ndim) return ERR(PV_EINVAL, "axis out of range");
    d[0] = d[1] = 1;
    for (int i = 0; i < x->ndim; i++) d[i < a ? 0 : 1] *= x->dims[i];
    set_out(o, x->dtype, 2, d);
    return 0;
  }
  if (!strcmp(op, "Transpose")) {
    const int64_t *p;
    int c = pv_attr_ints(n, "perm", &p);
    bool seen[PV_MAX_DIMS] = {0};
    if (c >= 0 && c != x->ndim) return ERR(PV_EINVAL, "perm has %d entries for rank %d", c, x->ndim);
    for (int i = 0; i < x->ndim; i++) {
      int64_t s = c >= 0 ? p[i] : x->ndim - 1 - i;
      if (s < 0 || s >= x->ndim || seen[s]) return ERR(PV_EINVAL, "perm is not a permutation");
      seen[s] = true;
      d[i] = x->dims[s];
    }
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) {
    float sc[PV_MAX_DIMS];
    if ((rc = pv_resize_geom(g, n, vals, sc, d))) return rc;
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Pad")) {
    int64_t pb[PV_MAX_DIMS], pe[PV_MAX_DIMS];
    if ((rc = pv_pad_geom(g, n, vals, pb, pe))) return rc;
    for (int i = 0; i < x->ndim; i++) d[i] = x->dims[i] + pb[i] + pe[i];
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Constant")) return infer_constant(n, o);
  if (!strcmp(op, "Split")) {
    int64_t sz[64];
    int axis;
    if (n->n_out > 64) return ERR(PV_EUNSUPPORTED, "more than 64 outputs");
    if ((rc = pv_split_geom(g, n, vals, &axis, sz))) return rc;
    for (int k = 0; k < n->n_out; k++) {
      if (n->out[k] < 0) continue;
      memcpy(d, x->dims, sizeof d);
      d[axis] = sz[k];
      set_out(&vals[n->out[k]], x->dtype, x->ndim, d);
    }
    return 0;
  }
  if (!strcmp(op, "Slice")) {
    int64_t st[PV_MAX_DIMS], sp[PV_MAX_DIMS];
    if ((rc = pv_slice_geom(g, n, vals, st, sp, d))) return rc;
    set_out(o, x->dtype, x->ndim, d);
    return 0;
  }
  if (!strcmp(op, "Shape")) {
    int64_t s = pv_attr_int(n, "start", 0), e = pv_attr_int(n, "end", x->ndim);
    if (s < 0) s += x->ndim;
    if (e < 0) e += x->ndim;
    s = s < 0 ? 0 : s > x->ndim ? x->ndim : s;
    e = e < 0 ? 0 : e > x->ndim ? x->ndim : e;
    d[0] = e > s ? e - s : 0;
    set_out(o, PV_I64, 1, d);
    return 0;
  }
  if (!strcmp(op, "Size")) {
    set_out(o, PV_I64, 0, NULL);
    return 0;
  }
  if (!strcmp(op, "Gather")) {
    const pv_tensor *ix = IN(1);
    int64_t a = 0;
    if (!ix) return ERR(PV_EINVAL, "missing indices");
    if (ix->dtype != PV_I64 && ix->dtype != PV_I32)
      return ERR(PV_ETYPE, "indices must be INT64 or INT32");
    if ((rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a))) return rc;
    if (x->ndim - 1 + ix->ndim > PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
    r = 0;
    for (int i = 0; i < a; i++) d[r++] = x->dims[i];
    for (int i = 0; i < ix->ndim; i++) d[r++] = ix->dims[i];
    for (int i = a + 1; i < x->ndim; i++) d[r++] = x->dims[i];
    set_out(o, x->dtype, r, d);
    return 0;
  }
  if (!strcmp(op, "Unsqueeze") || !strcmp(op, "Squeeze")) {
    int64_t ax[PV_MAX_DIMS];
    bool given, mask[PV_MAX_DIMS] = {0};
    int c = axes_arg(g, n, vals, "axes", 13, 1, ax, &given);
    if (c < 0) return c;
    bool unsq = !strcmp(op, "Unsqueeze");
    int orank = unsq ? x->ndim + c : x->ndim;
    if (unsq && (c == 0 || orank > PV_MAX_DIMS))
      return ERR(PV_EINVAL, "bad axes count %d", c);
    for (int i = 0; i < c; i++) {
      int64_t a = 0;
      if ((rc = norm_axis(n, ax[i], orank, &a))) return rc;
      if (mask[a]) return ERR(PV_EINVAL, "axis %lld repeated", (long long)a);
      mask[a] = true;
    }
    r = 0;
    if (unsq) {
      for (int i = 0, k = 0; i < orank; i++) d[r++] = mask[i] ? 1 : x->dims[k++];
    } else {
      for (int i = 0; i < x->ndim; i++) {
        if (c == 0 ? x->dims[i] == 1 : mask[i]) {
          if (x->dims[i] != 1)
            return ERR(PV_ESHAPE, "cannot squeeze axis %d of size %lld", i,
                       (long long)x->dims[i]);
          continue;
        }
        d[r++] = x->dims[i];
      }
    }
    set_out(o, x->dtype, r, d);
    return 0;
  }
  if (!strcmp(op, "ConstantOfShape")) {
    int c = pv_read_ints(n, x, "shape", d, PV_MAX_DIMS);
    if (c < 0) return c;
    for (int i = 0; i < c; i++)
      if (d[i] < 0) return ERR(PV_EINVAL, "negative dimension");
    const pv_attr *a = pv_node_attr(n, "value");
    pv_dtype t = a && a->type == PV_ATTR_TENSOR ? a->t.dtype : PV_F32;
    if (pv_dtype_size(t) == 0) return ERR(PV_EUNSUPPORTED, "value type");
    set_out(o, t, c, d);
    return 0;
  }
  if (!strcmp(op, "Range")) {
    const pv_tensor *s = IN(0), *l = IN(1), *dl = IN(2);
    if (!s || !l || !dl) return ERR(PV_EINVAL, "start, limit and delta are required");
    if (!s->data || !l->data || !dl->data)
      return ERR(PV_EUNSUPPORTED, "inputs not known before execution");
    if (s->dtype != l->dtype || s->dtype != dl->dtype)
      return ERR(PV_ETYPE, "inputs differ in type");
    double sv, lv, dv;
    if (s->dtype == PV_F32) {
      sv = *(float *)s->data; lv = *(float *)l->data; dv = *(float *)dl->data;
    } else if (s->dtype == PV_I64) {
      sv = (double)*(int64_t *)s->data; lv = (double)*(int64_t *)l->data;
      dv = (double)*(int64_t *)dl->data;
    } else if (s->dtype == PV_I32) {
      sv = *(int32_t *)s->data; lv = *(int32_t *)l->data; dv = *(int32_t *)dl->data;
    } else {
      return ERR(PV_ETYPE, "type %s", pv_dtype_name(s->dtype));
    }
    if (dv == 0) return ERR(PV_EINVAL, "delta is 0");
    double cnt = ceil((lv - sv) / dv);
    if (!(cnt <= (double)(INT64_C(1) << 31))) return ERR(PV_ERANGE, "range too long");
    d[0] = cnt > 0 ? (int64_t)cnt : 0;
    set_out(o, s->dtype, 1, d);
    return 0;
  }
  if (!strcmp(op, "ReduceMean") || !strcmp(op, "ReduceSum")) {
    bool mask[PV_MAX_DIMS];
    if ((rc = pv_reduce_axes(g, n, vals, mask))) return rc;
    bool keep = pv_attr_int(n, "keepdims", 1);
    r = 0;
    for (int i = 0; i < x->ndim; i++)
      if (!mask[i]) d[r++] = x->dims[i];
      else if (keep) d[r++] = 1;
    set_out(o, x->dtype, r, d);
    return 0;
  }
  return ERR(PV_EUNSUPPORTED, "no shape inference for this op (opset %d)",
             g->opset);
}
