/* Reference operators: plain, exact loops over concrete tensors. They are
 * the yardstick the fast backends are tested against and the fallback for
 * rare ops, so clarity wins over speed (within reason: the convolution
 * keeps its inner loop contiguous so resnet18 runs in seconds). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-rnn.h"
#include "pv-ops-ext.h"
#include "pv-pivot.h"
#include "ops-internal.h"

/* The expansions live in pivot.c; weak so the reference ops link (and
 * report a clear error) in builds where pivot support is absent. The
 * transposed one writes the [K, N] layout of Gemm transB=0 / MatMul B. */
void pv_pivot_to_dense_t(const pv_pivot *p, float *out);
#pragma weak pv_pivot_to_dense
#pragma weak pv_pivot_to_dense_t

#define IN(k) pv_node_in(n, vals, (k))
#define ERR(code, ...) pv_node_error(n, (code), __VA_ARGS__)

void pv_act_apply(float *x, size_t n, pv_act act, float alpha, float beta) {
  switch (act) {
  case PV_ACT_NONE:
    break;
  case PV_ACT_RELU:
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
    break;
  case PV_ACT_LEAKY:
    for (size_t i = 0; i < n; i++) x[i] = x[i] >= 0 ? x[i] : x[i] * alpha;
    break;
  case PV_ACT_CLIP:
    /* ONNX order, min(max(x, lo), hi): hi wins when lo > hi. */
    for (size_t i = 0; i < n; i++) {
      float v = x[i] < alpha ? alpha : x[i];
      x[i] = v > beta ? beta : v;
    }
    break;
  case PV_ACT_SIGMOID:
    for (size_t i = 0; i < n; i++) x[i] = 1.f / (1.f + expf(-x[i]));
    break;
  case PV_ACT_TANH:
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
    break;
  }
}

/* ------------------------------------------------------------ helpers */

static size_t numel(const pv_tensor *t) {
  int64_t c = pv_tensor_numel(t);
  return c < 0 ? 0 : (size_t)c;
}

/* Data of input k as floats; a pivot-only constant is expanded into *tmp
 * (the caller frees it with pv_free). */
static int in_data(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   int k, const void **p, float **tmp) {
  const pv_tensor *t = IN(k);
  *p = NULL;
  if (!t) return 0;
  if (t->data || numel(t) == 0) {
    *p = t->data;
    return 0;
  }
  const pv_value *v = &g->values[n->in[k]];
  if (!v->pivot)
    return ERR(PV_EINVAL, "input %d ('%s') has no data", k, v->name);
  const pv_pivot *pv = v->pivot;
  /* A pivot describes W as out x in; weights stored in x out are B^T. */
  bool kn = k == 1 && (!strcmp(n->op, "MatMul") ||
                       (!strcmp(n->op, "Gemm") && !pv_attr_int(n, "transB", 0)));
  void (*expand)(const pv_pivot *, float *) = kn ? pv_pivot_to_dense_t : pv_pivot_to_dense;
  if (!expand)
    return ERR(PV_EUNSUPPORTED, "pivoted weight '%s' needs pivot support", v->name);
  if (t->dtype != PV_F32 ||
      (int64_t)pv->M * pv->C * pv->kk != pv_tensor_numel(t))
    return ERR(PV_ESHAPE, "pivoted weight '%s' has %lld elements, tensor %lld",
               v->name, (long long)pv->M * pv->C * pv->kk,
               (long long)pv_tensor_numel(t));
  *tmp = pv_aligned_alloc(numel(t) * sizeof(float));
  if (!*tmp) return ERR(PV_ENOMEM, "out of memory expanding '%s'", v->name);
  expand(pv, *tmp);
  *p = *tmp;
  return 0;
}

/* Row-major strides (in elements) of t, laid over an output of rank r
 * with numpy broadcasting: broadcast axes get stride 0. */
static void bstrides(const pv_tensor *t, int r, const int64_t *odims,
                     int64_t *st) {
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int o = i - (r - t->ndim);
    if (o < 0 || (t->dims[o] == 1 && odims[i] != 1)) {
      st[i] = 0;
    } else {
      st[i] = s;
    }
    if (o >= 0) s *= t->dims[o];
  }
}

/* Odometer over dims: advance idx and the k offsets by strides; returns
 * false when done. */
static bool odo_next(int r, const int64_t *dims, int64_t *idx, int k,
                     int64_t st[][PV_MAX_DIMS], int64_t *off) {
  for (int i = r - 1; i >= 0; i--) {
    idx[i]++;
    for (int j = 0; j < k; j++) off[j] += st[j][i];
    if (idx[i] < dims[i]) return true;
    for (int j = 0; j < k; j++) off[j] -= st[j][i] * dims[i];
    idx[i] = 0;
  }
  return false;
}

static double rd(const void *p, pv_dtype t, int64_t i) {
  switch (t) {
  case PV_F32: return ((const float *)p)[i];
  case PV_F64: return ((const double *)p)[i];
  case PV_F16: return pv_f16_to_f32(((const uint16_t *)p)[i]);
  case PV_I64: return (double)((const int64_t *)p)[i];
  case PV_I32: return ((const int32_t *)p)[i];
  case PV_I16: return ((const int16_t *)p)[i];
  case PV_I8: return ((const int8_t *)p)[i];
  case PV_U8: case PV_BOOL: return ((const uint8_t *)p)[i];
  case PV_U16: return ((const uint16_t *)p)[i];
  case PV_U32: return ((const uint32_t *)p)[i];
  case PV_U64: return (double)((const uint64_t *)p)[i];
  default: return 0;
  }
}

static int64_t rdi(const void *p, pv_dtype t, int64_t i) {
  switch (t) {
  case PV_I64: return ((const int64_t *)p)[i];
  case PV_U64: return (int64_t)((const uint64_t *)p)[i];
  case PV_I32: return ((const int32_t *)p)[i];
  case PV_U32: return ((const uint32_t *)p)[i];
  case PV_I16: return ((const int16_t *)p)[i];
  case PV_U16: return ((const uint16_t *)p)[i];
  case PV_I8: return ((const int8_t *)p)[i];
  case PV_U8: case PV_BOOL: return ((const uint8_t *)p)[i];
  default: return (int64_t)rd(p, t, i);
  }
}

static bool is_float(pv_dtype t) { return t == PV_F32 || t == PV_F64 || t == PV_F16; }

/* Float to integer truncates toward zero; NaN and huge values saturate
 * to 0 and the edges. */
static int64_t sat_i64(double v) {
  return (int64_t)(isnan(v) ? 0 : v > 9.2e18 ? 9.2e18 : v < -9.2e18 ? -9.2e18 : v);
}

static void wr(void *p, pv_dtype t, int64_t i, double v) {
  switch (t) {
  case PV_F32: ((float *)p)[i] = (float)v; break;
  case PV_F64: ((double *)p)[i] = v; break;
  case PV_F16: ((uint16_t *)p)[i] = pv_f32_to_f16((float)v); break;
  case PV_BOOL: ((uint8_t *)p)[i] = v != 0; break;
  default: {
    int64_t x = sat_i64(v);
    switch (t) {
    case PV_I64: ((int64_t *)p)[i] = x; break;
    case PV_U64: ((uint64_t *)p)[i] = (uint64_t)x; break;
    case PV_I32: ((int32_t *)p)[i] = (int32_t)x; break;
    case PV_U32: ((uint32_t *)p)[i] = (uint32_t)x; break;
    case PV_I16: ((int16_t *)p)[i] = (int16_t)x; break;
    case PV_U16: ((uint16_t *)p)[i] = (uint16_t)x; break;
    case PV_I8: ((int8_t *)p)[i] = (int8_t)x; break;
    case PV_U8: ((uint8_t *)p)[i] = (uint8_t)x; break;
    default: break;
    }
  }
  }
}

static void wri(void *p, pv_dtype t, int64_t i, int64_t v) {
  if (is_float(t) || t == PV_BOOL) {
    wr(p, t, i, (double)v);
    return;
  }
  switch (t) {
  case PV_I64: ((int64_t *)p)[i] = v; break;
  case PV_U64: ((uint64_t *)p)[i] = (uint64_t)v; break;
  case PV_I32: ((int32_t *)p)[i] = (int32_t)v; break;
  case PV_U32: ((uint32_t *)p)[i] = (uint32_t)v; break;
  case PV_I16: ((int16_t *)p)[i] = (int16_t)v; break;
  case PV_U16: ((uint16_t *)p)[i] = (uint16_t)v; break;
  case PV_I8: ((int8_t *)p)[i] = (int8_t)v; break;
  case PV_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  default: break;
  }
}

/* ------------------------------------------------------------ elementwise */

typedef enum { B_ADD, B_SUB, B_MUL, B_DIV, B_POW, B_EQ, B_LT, B_GT } bop;

static int ref_binary(const pv_node *n, const pv_tensor *a, const void *ad,
                      const pv_tensor *b, const void *bd, pv_tensor *o, bop op) {
  bool cmp = op >= B_EQ;
  if (op != B_POW && a->dtype != b->dtype)
    return ERR(PV_ETYPE, "inputs are %s and %s", pv_dtype_name(a->dtype),
               pv_dtype_name(b->dtype));
  pv_dtype t = a->dtype;
  if (!cmp && (t == PV_BOOL || pv_dtype_size(t) == 0 || t == PV_F16))
    return ERR(PV_ETYPE, "arithmetic on %s", pv_dtype_name(t));
  size_t cnt = numel(o);
  if (!cnt) return 0;
  int r = o->ndim;
  int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0};
  bstrides(a, r, o->dims, st[0]);
  bstrides(b, r, o->dims, st[1]);
  /* The common fp32 case gets a tight loop; everything else goes through
   * double (exact for fp32 + - * / and for integers below 2^53). */
  if (t == PV_F32 && b->dtype == PV_F32 && !cmp && op != B_POW) {
    /* Merge axes along which both operands continue contiguously (or both
     * repeat), then run the innermost axis as a plain loop: the odometer
     * per element dominated SiLU and squeeze-excite networks. */
    int64_t md[PV_MAX_DIMS], ms[2][PV_MAX_DIMS] = {{0}}, mi[PV_MAX_DIMS] = {0};
    int q = 0;
    for (int d = 0; d < r; d++) {
      if (q > 0 && ms[0][q - 1] == st[0][d] * o->dims[d] &&
          ms[1][q - 1] == st[1][d] * o->dims[d]) {
        md[q - 1] *= o->dims[d];
        ms[0][q - 1] = st[0][d];
        ms[1][q - 1] = st[1][d];
        continue;
      }
      md[q] = o->dims[d];
      ms[0][q] = st[0][d];
      ms[1][q] = st[1][d];
      q++;
    }
    if (q == 0) md[q] = 1, q = 1; /* a scalar */
    const float *x = ad, *y = bd;
    float *z = o->data;
    int64_t len = md[q - 1], sa = ms[0][q - 1], sb = ms[1][q - 1];
    md[q - 1] = 1; /* the odometer walks the outer axes only */
    do {
      const float *xa = x + off[0], *yb = y + off[1];
      for (int64_t j = 0; j < len; j++) {
        float u = xa[j * sa], v = yb[j * sb];
        z[j] = op == B_ADD ? u + v : op == B_SUB ? u - v : op == B_MUL ? u * v : u / v;
      }
      z += len;
    } while (odo_next(q, md, mi, 2, ms, off));
    return 0;
  }
  bool integer = !is_float(t) && !is_float(b->dtype);
  size_t i = 0;
  do {
    if (integer && op <= B_DIV) {
      int64_t u = rdi(ad, t, off[0]), v = rdi(bd, b->dtype, off[1]), z;
      if (op == B_DIV && v == 0) return ERR(PV_EINVAL, "integer division by zero");
      /* Integers wrap on overflow (two's complement), as in ONNX Runtime. */
      uint64_t uu = (uint64_t)u, uv = (uint64_t)v;
      if (op == B_DIV) z = v == -1 ? (int64_t)(0 - uu) : u / v;
      else z = (int64_t)(op == B_ADD ? uu + uv : op == B_SUB ? uu - uv : uu * uv);
      wri(o->data, o->dtype, i++, z);
      continue;
    }
    double u = rd(ad, t, off[0]), v = rd(bd, b->dtype, off[1]), z;
    switch (op) {
    case B_ADD: z = u + v; break;
    case B_SUB: z = u - v; break;
    case B_MUL: z = u * v; break;
    case B_DIV: z = u / v; break;
    case B_POW: z = t == PV_F32 ? powf((float)u, (float)v) : pow(u, v); break;
    case B_EQ: z = u == v; break;
    case B_LT: z = u < v; break;
    default: z = u > v; break;
    }
    wr(o->data, o->dtype, i++, z);
  } while (odo_next(r, o->dims, idx, 2, st, off));
  return 0;
}

/* Broadcast copy of up to three inputs by element size: Expand, Where. */
/* The casts detection post-processing runs on large index tensors, as
 * plain loops (the generic element loop goes through double and a
 * switch per element: 6 ns an element). Same results as wr / wri. */
static bool cast_fast(const pv_tensor *x, pv_tensor *o, size_t cnt) {
  pv_dtype a = x->dtype, b = o->dtype;
  if (a == b) {
    if (cnt) memcpy(o->data, x->data, cnt * pv_dtype_size(a));
    return true;
  }
  if (a == PV_F32 && b == PV_I64) {
    const float *s = x->data;
    int64_t *d = o->data;
    for (size_t i = 0; i < cnt; i++) d[i] = sat_i64(s[i]);
    return true;
  }
  if (a == PV_I64 && b == PV_F32) {
    const int64_t *s = x->data;
    float *d = o->data;
    for (size_t i = 0; i < cnt; i++) d[i] = (float)(double)s[i];
    return true;
  }
  if ((a == PV_BOOL || a == PV_U8) && b == PV_F32) {
    const uint8_t *s = x->data;
    float *d = o->data;
    for (size_t i = 0; i < cnt; i++) d[i] = (float)s[i];
    return true;
  }
  if (a == PV_F32 && b == PV_BOOL) {
    const float *s = x->data;
    uint8_t *d = o->data;
    for (size_t i = 0; i < cnt; i++) d[i] = s[i] != 0;
    return true;
  }
  if (a == PV_I32 && b == PV_I64) {
    const int32_t *s = x->data;
    int64_t *d = o->data;
    for (size_t i = 0; i < cnt; i++) d[i] = s[i];
    return true;
  }
  return false;
}

static int ref_where(const pv_node *n, const pv_tensor *vals, pv_tensor *o,
                     bool expand) {
  const pv_tensor *c = IN(0), *x = expand ? IN(0) : IN(1), *y = expand ? IN(0) : IN(2);
  if (!expand && c->dtype != PV_BOOL) return ERR(PV_ETYPE, "condition must be BOOL");
  if (!expand && x->dtype != y->dtype) return ERR(PV_ETYPE, "X and Y differ in type");
  size_t es = pv_dtype_size(o->dtype);
  if (!numel(o)) return 0;
  int r = o->ndim;
  int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0};
  bstrides(c, r, o->dims, st[0]);
  bstrides(x, r, o->dims, st[1]);
  bstrides(y, r, o->dims, st[2]);
  char *z = o->data;
  if (expand && r > 0) {
    /* A row at a time along the last axis: copied where the input runs
     * along it, one value repeated where it broadcasts. */
    const int64_t len = o->dims[r - 1], sx = st[1][r - 1];
    const size_t row = (size_t)len * es;
    int64_t oidx[PV_MAX_DIMS] = {0}, ooff[3] = {0};
    do {
      const char *src = (const char *)x->data + ooff[1] * es;
      if (sx == 1) {
        memcpy(z, src, row);
      } else if (es == 8) {
        int64_t v;
        memcpy(&v, src, 8);
        for (int64_t i = 0; i < len; i++) memcpy(z + i * 8, &v, 8);
      } else {
        for (int64_t i = 0; i < len; i++) memcpy(z + i * es, src, es);
      }
      z += row;
    } while (r > 1 && odo_next(r - 1, o->dims, oidx, 3, st, ooff));
    (void)idx;
    (void)off;
    return 0;
  }
  do {
    const char *src = expand || ((const uint8_t *)c->data)[off[0]]
                          ? (const char *)x->data + off[1] * es
                          : (const char *)y->data + off[2] * es;
    memcpy(z, src, es);
    z += es;
  } while (odo_next(r, o->dims, idx, 3, st, off));
  return 0;
}

static int ref_unary(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     pv_tensor *o) {
  const pv_tensor *x = IN(0);
  const char *op = n->op;
  size_t cnt = numel(o);
  if (!strcmp(op, "Identity") || !strcmp(op, "Dropout")) {
    if (cnt) memmove(o->data, x->data, cnt * pv_dtype_size(x->dtype));
    if (!strcmp(op, "Dropout") && n->n_out > 1 && n->out[1] >= 0)
      memset(vals[n->out[1]].data, 1, cnt); /* nothing is dropped */
    return 0;
  }
  if (!strcmp(op, "Not")) {
    if (x->dtype != PV_BOOL) return ERR(PV_ETYPE, "input must be BOOL");
    for (size_t i = 0; i < cnt; i++)
      ((uint8_t *)o->data)[i] = !((const uint8_t *)x->data)[i];
    return 0;
  }
  if (!strcmp(op, "Neg") || !strcmp(op, "Abs")) {
    if (x->dtype != PV_F32 && x->dtype != PV_I64 && x->dtype != PV_I32)
      return ERR(PV_ETYPE, "type %s", pv_dtype_name(x->dtype));
    bool neg = !strcmp(op, "Neg");
    for (size_t i = 0; i < cnt; i++) {
      if (x->dtype == PV_F32) {
        float v = ((const float *)x->data)[i];
        ((float *)o->data)[i] = neg ? -v : fabsf(v);
      } else {
        int64_t v = rdi(x->data, x->dtype, i);
        wri(o->data, o->dtype, i, neg || v < 0 ? (int64_t)(0 - (uint64_t)v) : v);
      }
    }
    return 0;
  }
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "type %s (FP32 only)", pv_dtype_name(x->dtype));
  const float *a = x->data;
  float *z = o->data;
  if (!strcmp(op, "Clip")) {
    float lo = -FLT_MAX, hi = FLT_MAX;
    if (g->opset < 11) {
      lo = pv_attr_float(n, "min", lo);
      hi = pv_attr_float(n, "max", hi);
    } else {
      for (int k = 1; k <= 2; k++) {
        const pv_tensor *t = IN(k);
        if (!t) continue;
        if (t->dtype != PV_F32 || numel(t) != 1 || !t->data)
          return ERR(PV_EINVAL, "%s must be a known FP32 scalar", k == 1 ? "min" : "max");
        *(k == 1 ? &lo : &hi) = *(const float *)t->data;
      }
    }
    memcpy(z, a, cnt * sizeof *z);
    pv_act_apply(z, cnt, PV_ACT_CLIP, lo, hi);
    return 0;
  }
  if (!strcmp(op, "Softmax") || !strcmp(op, "LogSoftmax")) {
    int64_t ax = pv_attr_int(n, "axis", g->opset < 13 ? 1 : -1);
    int rk = x->ndim ? x->ndim : 1;
    if (ax < 0) ax += rk;
    size_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < x->ndim; i++) {
      if (i < ax) outer *= x->dims[i];
      else if (i == ax || g->opset < 13) len *= x->dims[i];
      else inner *= x->dims[i];
    }
    bool lg = !strcmp(op, "LogSoftmax");
    for (size_t o_ = 0; o_ < outer; o_++)
      for (size_t in = 0; in < inner; in++) {
        const float *s = a + o_ * len * inner + in;
        float *d = z + o_ * len * inner + in;
        float m = -INFINITY;
        for (size_t k = 0; k < len; k++) m = fmaxf(m, s[k * inner]);
        double sum = 0;
        for (size_t k = 0; k < len; k++) sum += exp((double)s[k * inner] - m);
        for (size_t k = 0; k < len; k++)
          d[k * inner] = lg ? (float)(s[k * inner] - m - log(sum))
                            : (float)(exp((double)s[k * inner] - m) / sum);
      }
    return 0;
  }
  if (!strcmp(op, "Sigmoid")) {
    /* Its own loop: SiLU networks run one after every convolution. */
    for (size_t i = 0; i < cnt; i++) z[i] = 1.f / (1.f + expf(-a[i]));
    return 0;
  }
  for (size_t i = 0; i < cnt; i++) {
    float v = a[i], r;
    switch (op[0]) {
    case 'R': r = op[1] == 'e' && op[2] == 'l' ? (v > 0 ? v : 0) : 1.f / v; break;
    case 'L': r = op[1] == 'o' ? logf(v) : v >= 0 ? v : v * pv_attr_float(n, "alpha", 0.01f); break;
    case 'S': r = op[1] == 'q' ? sqrtf(v) : 1.f / (1.f + expf(-v)); break;
    case 'T': r = tanhf(v); break;
    case 'E': r = op[1] == 'x' ? expf(v) : erff(v); break;
    case 'F': r = floorf(v); break;
    case 'C': r = ceilf(v); break;
    default: return ERR(PV_EUNSUPPORTED, "not implemented");
    }
    z[i] = r;
  }
  return 0;
}

/* ------------------------------------------------------------ conv, pool */

/* Spatial geometry as 3-D (a 1-D input is D = H = 1, a 2-D one D = 1). */
typedef struct geo3 {
  int64_t id, ih, iw, od, oh, ow, kd, kh, kw, sd, sh, sw, dd, dh, dw;
  int64_t pd, ph, pw, ped, peh, pew;
} geo3;

static void to3(const pv_window *w, const pv_tensor *x, const pv_tensor *o,
                geo3 *g) {
  /* Axis a of (D, H, W) is spatial axis a - (3 - nsp), or absent. */
  int64_t v[7][3];
  for (int a = 0; a < 3; a++) {
    int i = a - (3 - w->nsp);
    bool on = i >= 0;
    v[0][a] = on ? x->dims[2 + i] : 1;
    v[1][a] = on ? o->dims[2 + i] : 1;
    v[2][a] = on ? w->k[i] : 1;
    v[3][a] = on ? w->s[i] : 1;
    v[4][a] = on ? w->d[i] : 1;
    v[5][a] = on ? w->pb[i] : 0;
    v[6][a] = on ? w->pe[i] : 0;
  }
  *g = (geo3){v[0][0], v[0][1], v[0][2], v[1][0], v[1][1], v[1][2],
              v[2][0], v[2][1], v[2][2], v[3][0], v[3][1], v[3][2],
              v[4][0], v[4][1], v[4][2], v[5][0], v[5][1], v[5][2],
              v[6][0], v[6][1], v[6][2]};
}

/* y += a x; restrict lets the compiler vectorise at -O2. */
static void axpy(float *restrict y, const float *restrict x, float a, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void axpy_strided(float *restrict y, const float *restrict x, int64_t s,
                         float a, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i * s];
}

static int ref_conv(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                    pv_tensor *o) {
  const pv_tensor *x = IN(0), *wt = IN(1);
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  pv_window win;
  for (int i = 0; i < x->ndim - 2; i++) win.k[i] = wt->dims[2 + i];
  int rc = pv_window_geom(n, x, false, &win);
  if (rc) return rc;
  float *tw = NULL, *tb = NULL;
  const void *wp, *bp;
  if ((rc = in_data(g, n, vals, 1, &wp, &tw)) ||
      (rc = in_data(g, n, vals, 2, &bp, &tb)))
    goto out;
  geo3 q;
  to3(&win, x, o, &q);
  const float *X = x->data, *W = wp, *B = bp;
  float *Y = o->data;
  int64_t N = x->dims[0], C = x->dims[1], M = o->dims[1];
  int64_t G = pv_attr_int(n, "group", 1), cg = C / G, mg = M / G;
  size_t isz = (size_t)(q.id * q.ih * q.iw), osz = (size_t)(q.od * q.oh * q.ow);
  const int64_t ktaps = q.kd * q.kh * q.kw;
  for (int64_t b = 0; b < N; b++)
    for (int64_t m = 0; m < M; m++) {
      float *y = Y + ((size_t)b * M + m) * osz;
      float bias = B ? B[m] : 0.f;
      for (size_t i = 0; i < osz; i++) y[i] = bias;
      int64_t grp = m / mg;
      for (int64_t c = 0; c < cg; c++) {
        const float *xin = X + ((size_t)b * C + grp * cg + c) * isz;
        const float *wk = W + ((size_t)m * cg + c) * ktaps;
        for (int64_t kd = 0; kd < q.kd; kd++)
        for (int64_t kh = 0; kh < q.kh; kh++)
          for (int64_t kw = 0; kw < q.kw; kw++) {
            float wv = wk[(kd * q.kh + kh) * q.kw + kw];
            int64_t offw = kw * q.dw - q.pw;
            /* Output columns whose input column lies inside [0, iw). */
            int64_t lo = offw >= 0 ? 0 : (-offw + q.sw - 1) / q.sw;
            int64_t hi = q.iw - offw <= 0 ? 0 : (q.iw - offw - 1) / q.sw + 1;
            if (hi > q.ow) hi = q.ow;
            for (int64_t od = 0; od < q.od; od++) {
              int64_t id = od * q.sd + kd * q.dd - q.pd;
              if (id < 0 || id >= q.id) continue;
              for (int64_t oh = 0; oh < q.oh; oh++) {
                int64_t ih = oh * q.sh + kh * q.dh - q.ph;
                if (ih < 0 || ih >= q.ih) continue;
                const float *xr = xin + (id * q.ih + ih) * q.iw + offw;
                float *yr = y + (od * q.oh + oh) * q.ow;
                if (q.sw == 1) axpy(yr + lo, xr + lo, wv, hi - lo);
                else axpy_strided(yr + lo, xr + lo * q.sw, q.sw, wv, hi - lo);
              }
            }
          }
      }
    }
out:
  pv_free(tw);
  pv_free(tb);
  return rc;
}

static int ref_pool(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  bool global = !strncmp(n->op, "Global", 6);
  bool maxp = strstr(n->op, "Max") != NULL;
  pv_window win;
  if (global) {
    /* One window per plane: a plain pass over it (the windowed loop below
     * spent ~2.5 ns an element on its per-tap bookkeeping; MobileNetV2's
     * final pool took 0.16 ms). Four partial sums hide the add latency. */
    int64_t planes = x->ndim > 1 ? x->dims[0] * x->dims[1] : 0, sz = 1;
    for (int i = 2; i < x->ndim; i++) sz *= x->dims[i];
    for (int64_t p = 0; p < planes; p++) {
      const float *xp = (const float *)x->data + p * sz;
      float *yp = (float *)o->data + p;
      if (maxp) {
        float mx = -INFINITY;
        for (int64_t i = 0; i < sz; i++)
          if (xp[i] > mx || (isnan(xp[i]) && !isnan(mx))) mx = xp[i];
        *yp = mx;
        continue;
      }
      double a[4] = {0, 0, 0, 0};
      int64_t i = 0;
      for (; i + 4 <= sz; i += 4)
        for (int k = 0; k < 4; k++) a[k] += xp[i + k];
      for (; i < sz; i++) a[0] += xp[i];
      *yp = sz ? (float)((a[0] + a[1] + a[2] + a[3]) / (double)sz) : 0.f;
    }
    return 0;
  }
  {
    const int64_t *ks;
    int nk = pv_attr_ints(n, "kernel_shape", &ks);
    for (int i = 0; i < nk && i < PV_MAX_SPATIAL; i++) win.k[i] = ks[i];
    int rc = pv_window_geom(n, x, true, &win);
    if (rc) return rc;
  }
  geo3 q;
  to3(&win, x, o, &q);
  bool incl = pv_attr_int(n, "count_include_pad", 0);
  int64_t planes = x->dims[0] * x->dims[1];
  int64_t *ind = !strcmp(n->op, "MaxPool") && n->n_out > 1 && n->out[1] >= 0
                     ? vals[n->out[1]].data : NULL;
  if (ind && pv_attr_int(n, "storage_order", 0))
    return ERR(PV_EUNSUPPORTED, "Indices in column-major order (storage_order 1)");
  const int64_t isz = q.id * q.ih * q.iw, osz = q.od * q.oh * q.ow;
  for (int64_t p = 0; p < planes; p++) {
    const float *xp = (const float *)x->data + p * isz;
    float *yp = (float *)o->data + p * osz;
    for (int64_t od = 0; od < q.od; od++)
    for (int64_t oh = 0; oh < q.oh; oh++)
      for (int64_t ow = 0; ow < q.ow; ow++) {
        double acc = 0;
        float mx = -INFINITY;
        int64_t arg = 0, cnt = 0;
        for (int64_t kd = 0; kd < q.kd; kd++) {
          int64_t id = od * q.sd + kd * q.dd - q.pd;
          bool din = id >= 0 && id < q.id, dpad = id < q.id + q.ped;
          for (int64_t kh = 0; kh < q.kh; kh++) {
            int64_t ih = oh * q.sh + kh * q.dh - q.ph;
            bool hin = din && ih >= 0 && ih < q.ih;
            bool hpad = dpad && ih < q.ih + q.peh;
            for (int64_t kw = 0; kw < q.kw; kw++) {
              int64_t iw = ow * q.sw + kw * q.dw - q.pw;
              bool in = hin && iw >= 0 && iw < q.iw;
              /* count_include_pad counts taps in the explicit pads, not the
               * extra ceil_mode overhang, as PyTorch and the ONNX spec do. */
              if (in || (incl && hpad && iw < q.iw + q.pew)) cnt++;
              if (!in) continue;
              int64_t at = (id * q.ih + ih) * q.iw + iw;
              float v = xp[at];
              acc += v;
              if (v > mx || (isnan(v) && !isnan(mx))) {
                mx = v;
                arg = at;
              }
            }
          }
        }
        int64_t oi = (od * q.oh + oh) * q.ow + ow;
        yp[oi] = maxp ? mx : cnt ? (float)(acc / cnt) : 0.f;
        if (ind) ind[p * osz + oi] = p * isz + arg;
      }
  }
  return 0;
}

/* ------------------------------------------------------------ matmul */

/* C[M,N] += A[M,K] B[K,N] with element strides (row, col) for A and B. */
static void gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t ar,
                 int64_t ac, const float *B, int64_t br, int64_t bc, float *C,
                 float alpha) {
  for (int64_t i = 0; i < M; i++)
    for (int64_t k = 0; k < K; k++) {
      float a = alpha * A[i * ar + k * ac];
      const float *b = B + k * br;
      float *c = C + i * N;
      if (bc == 1)
        for (int64_t j = 0; j < N; j++) c[j] += a * b[j];
      else
        for (int64_t j = 0; j < N; j++) c[j] += a * b[j * bc];
    }
}

static int ref_gemm(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                    pv_tensor *o) {
  const pv_tensor *a = IN(0), *b = IN(1), *c = IN(2);
  if (a->dtype != PV_F32 || b->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  float *ta = NULL, *tb = NULL, *tc = NULL;
  const void *ap, *bp, *cp;
  int rc;
  if ((rc = in_data(g, n, vals, 0, &ap, &ta)) || (rc = in_data(g, n, vals, 1, &bp, &tb)) ||
      (rc = in_data(g, n, vals, 2, &cp, &tc)))
    goto out;
  bool tA = pv_attr_int(n, "transA", 0), tB = pv_attr_int(n, "transB", 0);
  float alpha = pv_attr_float(n, "alpha", 1.f), beta = pv_attr_float(n, "beta", 1.f);
  int64_t M = o->dims[0], N = o->dims[1], K = tA ? a->dims[0] : a->dims[1];
  float *Y = o->data;
  if (c && beta != 0) {
    int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0};
    bstrides(c, 2, o->dims, st[0]);
    size_t i = 0;
    if (M > 0 && N > 0)
      do Y[i++] = beta * ((const float *)cp)[off[0]];
      while (odo_next(2, o->dims, idx, 1, st, off));
  } else {
    memset(Y, 0, numel(o) * sizeof *Y);
  }
  gemm(M, N, K, ap, tA ? 1 : K, tA ? M : 1, bp, tB ? 1 : N, tB ? K : 1, Y, alpha);
out:
  pv_free(ta);
  pv_free(tb);
  pv_free(tc);
  return rc;
}

static int ref_matmul(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                      pv_tensor *o) {
  const pv_tensor *a = IN(0), *b = IN(1);
  if (a->dtype != PV_F32 || b->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  float *ta = NULL, *tb = NULL;
  const void *ap, *bp;
  int rc;
  if ((rc = in_data(g, n, vals, 0, &ap, &ta)) || (rc = in_data(g, n, vals, 1, &bp, &tb)))
    goto out;
  int64_t M = a->ndim > 1 ? a->dims[a->ndim - 2] : 1, K = a->dims[a->ndim - 1];
  int64_t N = b->ndim > 1 ? b->dims[b->ndim - 1] : 1;
  /* Batch axes: the output's leading axes; operands broadcast over them. */
  pv_tensor ba = *a, bb = *b, bo = {0};
  ba.ndim = a->ndim > 2 ? a->ndim - 2 : 0;
  bb.ndim = b->ndim > 2 ? b->ndim - 2 : 0;
  bo.ndim = o->ndim - (a->ndim > 1) - (b->ndim > 1);
  memcpy(bo.dims, o->dims, sizeof bo.dims);
  int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0};
  bstrides(&ba, bo.ndim, bo.dims, st[0]);
  bstrides(&bb, bo.ndim, bo.dims, st[1]);
  memset(o->data, 0, numel(o) * sizeof(float));
  if (!numel(o)) goto out;
  float *Y = o->data;
  do {
    gemm(M, N, K, (const float *)ap + off[0] * M * K, K, 1,
         (const float *)bp + off[1] * K * N, N, 1, Y, 1.f);
    Y += M * N;
  } while (odo_next(bo.ndim, bo.dims, idx, 2, st, off));
out:
  pv_free(ta);
  pv_free(tb);
  return rc;
}

/* ------------------------------------------------------------ data movement */

static int ref_transpose(const pv_node *n, const pv_tensor *x, pv_tensor *o) {
  const int64_t *p;
  int c = pv_attr_ints(n, "perm", &p);
  int r = x->ndim;
  int64_t xs[PV_MAX_DIMS], st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0},
                           off[3] = {0};
  size_t es = pv_dtype_size(x->dtype);
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  for (int i = 0; i < r; i++) st[0][i] = xs[c >= 0 ? p[i] : r - 1 - i];
  if (!numel(o)) return 0;
  char *z = o->data;
  do {
    memcpy(z, (const char *)x->data + off[0] * es, es);
    z += es;
  } while (odo_next(r, o->dims, idx, 1, st, off));
  return 0;
}

/* Copy chunks along an axis: Concat (many inputs -> one output) or Split
 * (one input -> many outputs). */
static void axis_copy(const pv_tensor *whole, int axis, char *wdata,
                      const pv_tensor *part, char *pdata, int64_t at, bool to_whole) {
  size_t es = pv_dtype_size(whole->dtype);
  size_t outer = 1, inner = es;
  for (int i = 0; i < axis; i++) outer *= whole->dims[i];
  for (int i = axis + 1; i < whole->ndim; i++) inner *= whole->dims[i];
  size_t wrow = whole->dims[axis] * inner, prow = part->dims[axis] * inner;
  for (size_t o = 0; o < outer; o++) {
    char *w = wdata + o * wrow + at * inner, *p = pdata + o * prow;
    if (prow) memmove(to_whole ? w : p, to_whole ? p : w, prow);
  }
}

static int ref_gather(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1);
  int64_t a = pv_attr_int(n, "axis", 0);
  if (a < 0) a += x->ndim;
  size_t es = pv_dtype_size(x->dtype), outer = 1, inner = es;
  for (int i = 0; i < a; i++) outer *= x->dims[i];
  for (int i = a + 1; i < x->ndim; i++) inner *= x->dims[i];
  int64_t len = x->dims[a];
  size_t ni = numel(ix);
  char *z = o->data;
  for (size_t p = 0; p < outer; p++)
    for (size_t k = 0; k < ni; k++) {
      int64_t j = rdi(ix->data, ix->dtype, k);
      if (j < -len || j >= len)
        return ERR(PV_ERANGE, "index %lld out of range for axis of size %lld",
                   (long long)j, (long long)len);
      if (j < 0) j += len;
      memcpy(z, (const char *)x->data + (p * len + j) * inner, inner);
      z += inner;
    }
  return 0;
}

static int ref_slice(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t start[PV_MAX_DIMS], step[PV_MAX_DIMS], cnt[PV_MAX_DIMS];
  int rc = pv_slice_geom(g, n, vals, start, step, cnt);
  if (rc) return rc;
  int r = x->ndim;
  size_t es = pv_dtype_size(x->dtype);
  int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0}, s = 1;
  for (int i = r - 1; i >= 0; i--) {
    st[0][i] = s * step[i];
    off[0] += s * start[i];
    s *= x->dims[i];
  }
  if (!numel(o)) return 0;
  char *z = o->data;
  do {
    memcpy(z, (const char *)x->data + off[0] * es, es);
    z += es;
  } while (odo_next(r, o->dims, idx, 1, st, off));
  return 0;
}

static int ref_pad(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t pb[PV_MAX_DIMS], pe[PV_MAX_DIMS];
  int rc = pv_pad_geom(g, n, vals, pb, pe);
  if (rc) return rc;
  const char *mode = pv_attr_str(n, "mode", "constant");
  int m = !strcmp(mode, "constant") ? 0 : !strcmp(mode, "reflect") ? 1
          : !strcmp(mode, "edge") ? 2 : !strcmp(mode, "wrap") && g->opset >= 19 ? 3 : -1;
  if (m < 0) return ERR(PV_EUNSUPPORTED, "mode '%s' (constant, reflect, edge%s)", mode,
                        g->opset >= 19 ? ", wrap" : "");
  double cv = g->opset < 11 ? pv_attr_float(n, "value", 0.f) : 0;
  const pv_tensor *ct = g->opset >= 11 ? IN(2) : NULL;
  if (ct && numel(ct)) {
    if (!ct->data || ct->dtype != x->dtype) return ERR(PV_EINVAL, "bad constant_value");
    cv = rd(ct->data, ct->dtype, 0);
  }
  int r = x->ndim;
  for (int i = 0; i < r; i++)
    if (m && x->dims[i] == 0 && o->dims[i] > 0)
      return ERR(PV_ESHAPE, "cannot %s-pad an empty axis", mode);
    else if (m == 3 && (pb[i] < 0 || pe[i] < 0))
      return ERR(PV_EUNSUPPORTED, "wrap padding with negative pads on axis %d", i);
    else if (m == 1 && (pb[i] >= x->dims[i] || pe[i] >= x->dims[i]))
      return ERR(PV_ESHAPE, "reflect pad %lld/%lld not smaller than axis %d (%lld)",
                 (long long)pb[i], (long long)pe[i], i, (long long)x->dims[i]);
  size_t es = pv_dtype_size(x->dtype), total = numel(o);
  char fill[8] = {0};
  wr(fill, x->dtype, 0, cv);
  int64_t idx[PV_MAX_DIMS] = {0}, xs[PV_MAX_DIMS], s = 1;
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  char *z = o->data;
  if (m == 0 && es == 4 && r > 0 && total) {
    /* Constant fp32 (a detector's Pad before a pool): whole rows of the
     * last axis, the element loop costs ~10 ns an element. */
    int64_t on = o->dims[r - 1], xn = x->dims[r - 1], lo = pb[r - 1];
    float f;
    memcpy(&f, fill, 4);
    for (size_t row = 0; row < total / (size_t)on; row++) {
      int64_t off = 0;
      bool inside = true;
      for (int i = 0; i < r - 1; i++) {
        int64_t j = idx[i] - pb[i];
        if (j < 0 || j >= x->dims[i]) inside = false;
        off += j * xs[i];
      }
      float *zr = (float *)z + row * on;
      const float *xr = (const float *)x->data + off;
      for (int64_t c = 0; c < on; c++) {
        int64_t j = c - lo;
        zr[c] = inside && j >= 0 && j < xn ? xr[j] : f;
      }
      for (int i = r - 2; i >= 0; i--) {
        if (++idx[i] < o->dims[i]) break;
        idx[i] = 0;
      }
    }
    return 0;
  }
  for (size_t e = 0; e < total; e++) {
    int64_t off = 0;
    bool inside = true;
    for (int i = 0; i < r; i++) {
      int64_t j = idx[i] - pb[i], d = x->dims[i];
      if (j < 0 || j >= d) {
        if (m == 0) inside = false;
        else if (m == 2) j = j < 0 ? 0 : d - 1;
        else if (m == 3) j = ((j % d) + d) % d; /* wrap: the axis repeats */
        else {
          /* Reflect without repeating the edge; period 2(d-1). */
          int64_t per = 2 * (d - 1);
          j = per ? ((j % per) + per) % per : 0;
          if (j >= d) j = per - j;
        }
      }
      off += j * xs[i];
    }
    memcpy(z, inside ? (const char *)x->data + off * es : fill, es);
    z += es;
    for (int i = r - 1; i >= 0; i--) {
      if (++idx[i] < o->dims[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}

static int64_t nearest(float xo, const char *mode) {
  if (!strcmp(mode, "floor")) return (int64_t)floorf(xo);
  if (!strcmp(mode, "ceil")) return (int64_t)ceilf(xo);
  if (!strcmp(mode, "round_prefer_ceil")) return (int64_t)roundf(xo);
  /* round_prefer_floor: halves go down. */
  if (xo == (float)(int64_t)xo + 0.5f) return (int64_t)floorf(xo);
  return (int64_t)roundf(xo);
}

/* Source coordinate of output index i on an axis of in -> on elements at
 * scale s, per coordinate_transformation_mode; NAN for an unknown mode. */
static float resize_coord(const char *ctm, int64_t i, float s, int64_t in,
                          int64_t on) {
  if (!strcmp(ctm, "half_pixel")) return ((float)i + 0.5f) / s - 0.5f;
  if (!strcmp(ctm, "pytorch_half_pixel")) return on > 1 ? ((float)i + 0.5f) / s - 0.5f : 0;
  if (!strcmp(ctm, "align_corners"))
    return on == 1 ? 0 : (float)i * (float)(in - 1) / (float)(on - 1);
  if (!strcmp(ctm, "asymmetric")) return (float)i / s;
  if (!strcmp(ctm, "tf_half_pixel_for_nn")) return ((float)i + 0.5f) / s;
  if (!strcmp(ctm, "half_pixel_symmetric")) {
    /* Opset 19: half_pixel about the centre of the input, adjusted by how
     * far the integer output length is from scale x input. */
    float adj = (float)on / (s * (float)in), center = (float)in / 2;
    return center * (1 - adj) + ((float)i + 0.5f) / s - 0.5f;
  }
  return NAN;
}

/* Linear and cubic Resize, separably one axis at a time (an N-linear or
 * N-cubic interpolation is the product of the 1-D ones). Taps and weights
 * follow ONNX Runtime: linear clamps the coordinate into the input, cubic
 * uses Keys' kernel with cubic_coeff_a, taps clamped to the edge or, with
 * exclude_outside, dropped and the rest renormalised. */
static int resize_interp(const pv_node *n, const pv_tensor *x, pv_tensor *o,
                         const float *sc, const char *ctm, bool cubic) {
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "%s resize of %s (FP32 only)",
                                     cubic ? "cubic" : "linear", pv_dtype_name(x->dtype));
  float A = pv_attr_float(n, "cubic_coeff_a", -0.75f);
  bool excl = pv_attr_int(n, "exclude_outside", 0);
  int r = x->ndim, nt = cubic ? 4 : 2;
  int64_t cur[PV_MAX_DIMS] = {0}, big[PV_MAX_DIMS] = {0};
  for (int i = 0; i < r; i++) {
    cur[i] = x->dims[i];
    big[i] = x->dims[i] > o->dims[i] ? x->dims[i] : o->dims[i];
  }
  pv_tensor bt = {.dtype = PV_F32, .ndim = r};
  memcpy(bt.dims, big, sizeof big);
  if (pv_tensor_nbytes(&bt) == SIZE_MAX) return ERR(PV_ERANGE, "resize too large");
  float *buf = NULL, *src = x->data;
  int64_t *tap = NULL;
  float *wt = NULL;
  int rc = 0;
  for (int a = 0; a < r; a++) {
    int64_t in = x->dims[a], on = o->dims[a];
    bool nn = !strcmp(ctm, "tf_half_pixel_for_nn");
    if (in == on && sc[a] == 1.f && !nn) continue;
    if (!strcmp(ctm, "tf_crop_and_resize") || isnan(resize_coord(ctm, 0, 1, 2, 2))) {
      rc = ERR(PV_EUNSUPPORTED, "coordinate_transformation_mode '%s'", ctm);
      goto out;
    }
    if (in == 0 && on > 0) {
      rc = ERR(PV_ESHAPE, "resize of an empty axis %d", a);
      goto out;
    }
    free(tap);
    free(wt);
    tap = malloc(sizeof *tap * nt * (on ? on : 1));
    wt = malloc(sizeof *wt * nt * (on ? on : 1));
    if (!tap || !wt) {
      rc = ERR(PV_ENOMEM, "out of memory");
      goto out;
    }
    for (int64_t i = 0; i < on; i++) {
      float c = resize_coord(ctm, i, sc[a], in, on);
      int64_t *t = tap + i * nt;
      float *w = wt + i * nt;
      if (!cubic) {
        c = c < 0 ? 0 : c > (float)(in - 1) ? (float)(in - 1) : c;
        int64_t i1 = (int64_t)c < in - 1 ? (int64_t)c : in - 1;
        int64_t i2 = i1 + 1 < in - 1 ? i1 + 1 : in - 1;
        float d1 = fabsf(c - (float)i1), d2 = fabsf(c - (float)i2);
        if (i1 == i2) d1 = d2 = 0.5f;
        t[0] = i1, t[1] = i2, w[0] = d2, w[1] = d1;
        continue;
      }
      float f = floorf(c), s = c - f;
      float cf[4] = {((A * (s + 1) - 5 * A) * (s + 1) + 8 * A) * (s + 1) - 4 * A,
                     ((A + 2) * s - (A + 3)) * s * s + 1,
                     ((A + 2) * (1 - s) - (A + 3)) * (1 - s) * (1 - s) + 1,
                     ((A * (2 - s) - 5 * A) * (2 - s) + 8 * A) * (2 - s) - 4 * A};
      float sum = 0;
      for (int k = 0; k < 4; k++) {
        int64_t j = (int64_t)f - 1 + k;
        if (excl && (j < 0 || j >= in)) cf[k] = 0;
        sum += cf[k];
        t[k] = j < 0 ? 0 : j >= in ? in - 1 : j;
      }
      for (int k = 0; k < 4; k++) w[k] = excl && sum != 0 ? cf[k] / sum : cf[k];
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < a; i++) outer *= cur[i];
    for (int i = a + 1; i < r; i++) inner *= cur[i];
    float *dst = pv_aligned_alloc(sizeof(float) * (size_t)(outer * on * inner));
    if (!dst) {
      rc = ERR(PV_ENOMEM, "out of memory");
      goto out;
    }
    for (int64_t p = 0; p < outer; p++)
      for (int64_t i = 0; i < on; i++) {
        float *d = dst + (p * on + i) * inner;
        for (int k = 0; k < nt; k++) {
          const float *sp = src + (p * in + tap[i * nt + k]) * inner;
          float w = wt[i * nt + k];
          for (int64_t q = 0; q < inner; q++) d[q] += w * sp[q];
        }
      }
    pv_free(buf);
    buf = src = dst;
    cur[a] = on;
  }
  if (numel(o)) memcpy(o->data, src, sizeof(float) * numel(o));
out:
  free(tap);
  free(wt);
  pv_free(buf);
  return rc;
}

static int ref_resize(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                      pv_tensor *o) {
  const pv_tensor *x = IN(0);
  float sc[PV_MAX_DIMS];
  int64_t od[PV_MAX_DIMS];
  int rc = pv_resize_geom(g, n, vals, sc, od);
  if (rc) return rc;
  bool ups = !strcmp(n->op, "Upsample");
  const char *mode = pv_attr_str(n, "mode", "nearest");
  const char *ctm = ups || g->opset < 11 ? "asymmetric"
                    : pv_attr_str(n, "coordinate_transformation_mode", "half_pixel");
  if (!strcmp(mode, "linear") || !strcmp(mode, "bilinear") || !strcmp(mode, "cubic")) {
    /* Opset 18's antialias widens the filter when downsampling; upsampling
     * is unchanged by it. */
    if (!ups && g->opset >= 18 && pv_attr_int(n, "antialias", 0))
      for (int a = 0; a < x->ndim; a++)
        if (o->dims[a] < x->dims[a])
          return ERR(PV_EUNSUPPORTED, "antialias when downsampling (axis %d, %lld -> %lld)",
                     a, (long long)x->dims[a], (long long)o->dims[a]);
    return resize_interp(n, x, o, sc, ctm, !strcmp(mode, "cubic"));
  }
  if (strcmp(mode, "nearest"))
    return ERR(PV_EUNSUPPORTED, "mode '%s' (nearest, linear or cubic)", mode);
  const char *nm = ups || g->opset < 11 ? "floor"
                   : pv_attr_str(n, "nearest_mode", "round_prefer_floor");
  if (strcmp(nm, "floor") && strcmp(nm, "ceil") && strcmp(nm, "round_prefer_floor") &&
      strcmp(nm, "round_prefer_ceil"))
    return ERR(PV_EUNSUPPORTED, "nearest_mode '%s'", nm);
  int r = x->ndim;
  /* Source index for every output coordinate of every axis. */
  int64_t *map[PV_MAX_DIMS] = {0};
  for (int a = 0; a < r; a++) {
    map[a] = malloc(sizeof(int64_t) * (o->dims[a] ? o->dims[a] : 1));
    if (!map[a]) {
      rc = ERR(PV_ENOMEM, "out of memory");
      goto out;
    }
    int64_t in = x->dims[a], on = o->dims[a];
    for (int64_t i = 0; i < on; i++) {
      float xo = resize_coord(ctm, i, sc[a], in, on);
      if (isnan(xo) || !strcmp(ctm, "tf_crop_and_resize")) {
        rc = ERR(PV_EUNSUPPORTED, "coordinate_transformation_mode '%s'", ctm);
        goto out;
      }
      int64_t j = nearest(xo, nm);
      map[a][i] = j < 0 ? 0 : j >= in ? in - 1 : j;
    }
  }
  size_t es = pv_dtype_size(x->dtype), total = numel(o);
  int64_t idx[PV_MAX_DIMS] = {0}, xs[PV_MAX_DIMS], s = 1;
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  char *z = o->data;
  if (es == 4 && r > 0 && total) {
    /* fp32: whole rows of the last axis (the element loop costs ~6 ns an
     * element on a 2x upsample). */
    int64_t on = o->dims[r - 1];
    const int64_t *ml = map[r - 1];
    for (size_t row = 0; row < total / (size_t)on; row++) {
      int64_t off = 0;
      for (int i = 0; i < r - 1; i++) off += map[i][idx[i]] * xs[i];
      const float *xr = (const float *)x->data + off;
      float *zr = (float *)z + row * on;
      for (int64_t c = 0; c < on; c++) zr[c] = xr[ml[c]];
      for (int i = r - 2; i >= 0; i--) {
        if (++idx[i] < o->dims[i]) break;
        idx[i] = 0;
      }
    }
    goto out;
  }
  for (size_t e = 0; e < total; e++) {
    int64_t off = 0;
    for (int i = 0; i < r; i++) off += map[i][idx[i]] * xs[i];
    memcpy(z, (const char *)x->data + off * es, es);
    z += es;
    for (int i = r - 1; i >= 0; i--) {
      if (++idx[i] < o->dims[i]) break;
      idx[i] = 0;
    }
  }
out:
  for (int a = 0; a < r; a++) free(map[a]);
  return rc;
}

static int ref_reduce(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                      pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  bool mask[PV_MAX_DIMS];
  int rc = pv_reduce_axes(g, n, vals, mask);
  if (rc) return rc;
  size_t on = numel(o);
  double *acc = calloc(on ? on : 1, sizeof *acc);
  if (!acc) return ERR(PV_ENOMEM, "out of memory");
  int r = x->ndim;
  int64_t st[3][PV_MAX_DIMS] = {{0}}, idx[PV_MAX_DIMS] = {0}, off[3] = {0}, s = 1;
  for (int i = r - 1; i >= 0; i--) {
    st[0][i] = mask[i] ? 0 : s;
    if (!mask[i]) s *= x->dims[i];
  }
  size_t xn = numel(x), i = 0;
  if (xn) do acc[off[0]] += ((const float *)x->data)[i++];
    while (odo_next(r, x->dims, idx, 1, st, off));
  double div = on ? (double)xn / (double)on : 1;
  bool mean = !strcmp(n->op, "ReduceMean");
  for (size_t k = 0; k < on; k++)
    ((float *)o->data)[k] = (float)(mean ? (xn ? acc[k] / div : NAN) : acc[k]);
  free(acc);
  return 0;
}

static int ref_batchnorm(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->dtype != PV_F32) return ERR(PV_ETYPE, "FP32 only");
  for (int k = 1; k < 5; k++)
    if (IN(k)->dtype != PV_F32 || !IN(k)->data)
      return ERR(PV_EINVAL, "input %d must be FP32 with data", k);
  const float *sc = IN(1)->data, *bi = IN(2)->data, *mu = IN(3)->data,
              *var = IN(4)->data;
  float eps = pv_attr_float(n, "epsilon", 1e-5f);
  size_t N = x->dims[0], C = x->dims[1], inner = 1;
  for (int i = 2; i < x->ndim; i++) inner *= x->dims[i];
  for (size_t b = 0; b < N; b++)
    for (size_t c = 0; c < C; c++) {
      float s = sc[c] / sqrtf(var[c] + eps), t = bi[c] - mu[c] * s;
      const float *xi = (const float *)x->data + (b * C + c) * inner;
      float *y = (float *)o->data + (b * C + c) * inner;
      for (size_t i = 0; i < inner; i++) y[i] = xi[i] * s + t;
    }
  return 0;
}

static int ref_constant(const pv_node *n, pv_tensor *o) {
  const pv_attr *a = pv_node_attr(n, "value");
  size_t nb = pv_tensor_nbytes(o);
  if (a && a->type == PV_ATTR_TENSOR) {
    if (nb && !a->t.data) return ERR(PV_EINVAL, "value has no data");
    if (nb) memcpy(o->data, a->t.data, nb);
  } else if ((a = pv_node_attr(n, "value_float"))) {
    *(float *)o->data = a->f;
  } else if ((a = pv_node_attr(n, "value_int"))) {
    *(int64_t *)o->data = a->i;
  } else if ((a = pv_node_attr(n, "value_floats"))) {
    if (a->n) memcpy(o->data, a->floats, sizeof(float) * a->n);
  } else if ((a = pv_node_attr(n, "value_ints"))) {
    if (a->n) memcpy(o->data, a->ints, sizeof(int64_t) * a->n);
  } else {
    return ERR(PV_EUNSUPPORTED, "no supported value attribute");
  }
  return 0;
}

static int ref_range(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *s = IN(0), *dl = IN(2);
  size_t cnt = numel(o);
  if (is_float(s->dtype)) {
    double a = rd(s->data, s->dtype, 0), d = rd(dl->data, dl->dtype, 0);
    for (size_t i = 0; i < cnt; i++) wr(o->data, o->dtype, i, a + (double)i * d);
  } else {
    int64_t a = rdi(s->data, s->dtype, 0), d = rdi(dl->data, dl->dtype, 0);
    for (size_t i = 0; i < cnt; i++) wri(o->data, o->dtype, i, a + (int64_t)i * d);
  }
  return 0;
}

/* ------------------------------------------------------------ dispatch */

static const char *const ops[] = {
    "Conv", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Pow", "Equal",
    "Less", "Greater", "Where", "Not", "Relu", "LeakyRelu", "Clip", "Sigmoid",
    "Tanh", "Softmax", "LogSoftmax", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "BatchNormalization", "Concat",
    "Reshape", "Flatten", "Transpose", "Resize", "Upsample", "Pad",
    "Identity", "Constant", "Split", "Slice", "Shape", "Size", "Gather",
    "Unsqueeze", "Squeeze", "Cast", "CastLike", "ConstantOfShape", "Range", "Expand",
    "ReduceMean", "ReduceSum", "Dropout", "Sqrt", "Exp", "Neg", "Abs", "Erf",
    "Floor", "Ceil", "Reciprocal", "Log", NULL};

/* Ops computed in fp32 only; the rest move bytes or go through double. */
static const char *const f32_ops[] = {
    "Conv", "Gemm", "MatMul", "Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh",
    "Softmax", "LogSoftmax", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "BatchNormalization", "ReduceMean", "ReduceSum", "Sqrt",
    "Exp", "Erf", "Floor", "Ceil", "Reciprocal", "Log", NULL};

static bool known_op(const pv_node *n) {
  if (!n->op || (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")))
    return false;
  for (const char *const *p = ops; *p; p++)
    if (!strcmp(*p, n->op)) return true;
  return false;
}

bool pv_ref_supports(const pv_graph *g, const pv_node *n) {
  if (pv_rnn_supports(n)) return true;
  if (pv_ext_has(n)) return pv_ext_supports(g, n);
  if (!known_op(n)) return false;
  /* The first input's declared type, when the graph knows it. */
  pv_dtype t = n->n_in > 0 && n->in[0] >= 0 && n->in[0] < g->n_values
                   ? g->values[n->in[0]].dtype : PV_UNDEFINED;
  if (t == PV_UNDEFINED || !strcmp(n->op, "Shape") || !strcmp(n->op, "Size"))
    return true;
  if (t == PV_STRING) return false;
  for (const char *const *p = f32_ops; *p; p++)
    if (!strcmp(*p, n->op)) return t == PV_F32;
  return t != PV_F16 || !strcmp(n->op, "Identity") || !strcmp(n->op, "Reshape") ||
         !strcmp(n->op, "Cast") || !strcmp(n->op, "CastLike") ||
         !strcmp(n->op, "Flatten") || !strcmp(n->op, "Squeeze") ||
         !strcmp(n->op, "Unsqueeze") || !strcmp(n->op, "Transpose") ||
         !strcmp(n->op, "Concat") || !strcmp(n->op, "Split") ||
         !strcmp(n->op, "Slice") || !strcmp(n->op, "Gather");
}

static int dispatch(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  const char *op = n->op;
  const pv_tensor *x = IN(0);
  pv_tensor *o = &vals[n->out[0]];
  if (pv_ext_has(n)) return pv_ref_ext(g, n, vals);
  if (!strcmp(op, "Conv")) return ref_conv(g, n, vals, o);
  if (!strcmp(op, "Gemm")) return ref_gemm(g, n, vals, o);
  if (!strcmp(op, "MatMul")) return ref_matmul(g, n, vals, o);
  if (strstr(op, "Pool")) return ref_pool(n, vals, o);
  if (!strcmp(op, "BatchNormalization")) return ref_batchnorm(n, vals, o);
  static const char *const bnames[] = {"Add", "Sub", "Mul", "Div", "Pow",
                                       "Equal", "Less", "Greater"};
  for (int b = 0; b < 8; b++)
    if (!strcmp(op, bnames[b])) {
      float *t0 = NULL, *t1 = NULL;
      const void *p0, *p1;
      int rc = in_data(g, n, vals, 0, &p0, &t0);
      if (!rc) rc = in_data(g, n, vals, 1, &p1, &t1);
      if (!rc) rc = ref_binary(n, x, p0, IN(1), p1, o, (bop)b);
      pv_free(t0);
      pv_free(t1);
      return rc;
    }
  if (!strcmp(op, "Where")) return ref_where(n, vals, o, false);
  if (!strcmp(op, "Expand")) return ref_where(n, vals, o, true);
  if (!strcmp(op, "Reshape") || !strcmp(op, "Flatten") ||
      !strcmp(op, "Squeeze") || !strcmp(op, "Unsqueeze")) {
    size_t nb = pv_tensor_nbytes(o);
    if (nb != pv_tensor_nbytes(x)) return ERR(PV_ESHAPE, "size changed");
    /* memmove: a planner may run view ops in place. */
    if (nb) memmove(o->data, x->data, nb);
    return 0;
  }
  if (!strcmp(op, "Transpose")) return ref_transpose(n, x, o);
  if (!strcmp(op, "Concat")) {
    int64_t a = pv_attr_int(n, "axis", 0), at = 0;
    if (a < 0) a += o->ndim;
    for (int k = 0; k < n->n_in; k++) {
      const pv_tensor *t = IN(k);
      if (!t) continue;
      axis_copy(o, (int)a, o->data, t, t->data, at, true);
      at += t->dims[a];
    }
    return 0;
  }
  if (!strcmp(op, "Split")) {
    int axis;
    int64_t sz[64], at = 0;
    if (n->n_out > 64) return ERR(PV_EUNSUPPORTED, "more than 64 outputs");
    int rc = pv_split_geom(g, n, vals, &axis, sz);
    if (rc) return rc;
    for (int k = 0; k < n->n_out; k++) {
      if (n->out[k] >= 0)
        axis_copy(x, axis, x->data, &vals[n->out[k]], vals[n->out[k]].data, at, false);
      at += sz[k];
    }
    return 0;
  }
  if (!strcmp(op, "Slice")) return ref_slice(g, n, vals, o);
  if (!strcmp(op, "Gather")) return ref_gather(n, vals, o);
  if (!strcmp(op, "Pad")) return ref_pad(g, n, vals, o);
  if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) return ref_resize(g, n, vals, o);
  if (!strcmp(op, "Constant")) return ref_constant(n, o);
  if (!strcmp(op, "Shape")) {
    /* Dims only: the input's data need not exist yet. */
    int64_t s = pv_attr_int(n, "start", 0);
    if (s < 0) s += x->ndim;
    if (s < 0) s = 0;
    for (int64_t i = 0; i < o->dims[0]; i++) ((int64_t *)o->data)[i] = x->dims[s + i];
    return 0;
  }
  if (!strcmp(op, "Size")) {
    *(int64_t *)o->data = pv_tensor_numel(x);
    return 0;
  }
  if (!strcmp(op, "Cast") || !strcmp(op, "CastLike")) {
    size_t cnt = numel(o);
    if (cast_fast(x, o, cnt)) return 0;
    bool ints = !is_float(x->dtype) && !is_float(o->dtype);
    for (size_t i = 0; i < cnt; i++)
      if (ints) wri(o->data, o->dtype, i, rdi(x->data, x->dtype, i));
      else wr(o->data, o->dtype, i, rd(x->data, x->dtype, i));
    return 0;
  }
  if (!strcmp(op, "ConstantOfShape")) {
    const pv_attr *a = pv_node_attr(n, "value");
    size_t es = pv_dtype_size(o->dtype), cnt = numel(o);
    char v[8] = {0};
    if (a && a->type == PV_ATTR_TENSOR && a->t.data && es <= 8 &&
        pv_tensor_numel(&a->t) >= 1)
      memcpy(v, a->t.data, es);
    for (size_t i = 0; i < cnt; i++) memcpy((char *)o->data + i * es, v, es);
    return 0;
  }
  if (!strcmp(op, "Range")) return ref_range(n, vals, o);
  if (!strcmp(op, "ReduceMean") || !strcmp(op, "ReduceSum")) return ref_reduce(g, n, vals, o);
  return ref_unary(g, n, vals, o);
}

int pv_ref_node(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  if (pv_rnn_supports(n)) return pv_ref_rnn(g, n, vals);
  if (!known_op(n) && !pv_ext_has(n))
    return ERR(PV_EUNSUPPORTED, "op not implemented (opset %d)", g->opset);
  if (n->n_out < 1 || n->out[0] < 0) return ERR(PV_EINVAL, "no output");
  if (!strcmp(n->op, "If") && pv_ext_has(n)) return pv_if_ref(n, vals);
  bool dims_only = !strcmp(n->op, "Shape") || !strcmp(n->op, "Size");
  for (int k = 0; k < n->n_in && !dims_only; k++) {
    const pv_tensor *t = IN(k);
    if (t && !t->data && numel(t) && !g->values[n->in[k]].pivot)
      return ERR(PV_EINVAL, "input %d ('%s') has no data", k, g->values[n->in[k]].name);
  }
  for (int k = 0; k < n->n_out; k++)
    if (n->out[k] >= 0 && !vals[n->out[k]].data && numel(&vals[n->out[k]]))
      return ERR(PV_EINVAL, "output %d has no storage", k);
  if (strcmp(n->op, "Constant") && strcmp(n->op, "Range") && !IN(0))
    return ERR(PV_EINVAL, "missing first input");
  int rc = dispatch(g, n, vals);
  if (rc) return rc;
  pv_tensor *o = &vals[n->out[0]];
  if (n->act != PV_ACT_NONE) {
    if (o->dtype != PV_F32) return ERR(PV_ETYPE, "fused activation on %s", pv_dtype_name(o->dtype));
    pv_act_apply(o->data, numel(o), n->act, n->act_alpha, n->act_beta);
  }
  return 0;
}
