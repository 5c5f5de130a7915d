/* More ONNX ops (opsets 7-22) for the reference engine: the activations,
 * variadic / logical elementwise ops, reductions, index and layout ops,
 * normalisations and ConvTranspose that exported models use beyond the
 * core set of ops_ref.c. Same contract as ops_ref.c: plain loops over
 * concrete tensors, clarity before speed, every size checked. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-ops-ext.h"
#include "ops-internal.h"

#define IN(k) pv_node_in(n, vals, (k))
#define ERR(code, ...) pv_node_error(n, (code), __VA_ARGS__)

typedef enum {
  K_UNARY,    /* fp32 elementwise with attributes */
  K_SIGN,     /* Sign: fp32, int32, int64 */
  K_ISX,      /* IsNaN, IsInf: fp32 -> bool */
  K_PRELU,
  K_VARIADIC, /* Min Max Sum Mean */
  K_CMP,      /* LessOrEqual GreaterOrEqual */
  K_LOGIC,    /* And Or Xor */
  K_MOD,
  K_REDUCE,
  K_ARG,      /* ArgMax ArgMin */
  K_TILE,
  K_TOPK,
  K_GATHER_EL,
  K_SCATTER_ND,
  K_CUMSUM,
  K_D2S,
  K_S2D,
  K_INORM,
  K_LNORM,
  K_CONVT,
  K_EINSUM,
  K_LRN,
  K_TRILU,
  K_GATHER_ND,
  K_SCATTER_EL,
  K_ONEHOT,
  K_ALONG,    /* Hardmax LpNormalization */
  K_MVN,
  K_GNORM,
  K_GLP,      /* GlobalLpPool */
  K_EYELIKE,
  K_QDQ,      /* QuantizeLinear DequantizeLinear */
  K_ATTN,     /* Attention (23) */
  K_ROPE,     /* RotaryEmbedding (23) */
  K_GRIDS,    /* GridSample (16, N-D from 20) */
  K_NONZERO,  /* output shapes depend on the data: see pv_ext_data_shaped */
  K_NMS,
  K_COMPRESS,
  K_IF,       /* the select a flattened If leaves (core/onnx.c) */
  K_ROIALIGN,
} ext_kind;

/* Which input types an op accepts (the first input's dtype). */
enum { T_F32 = 1, T_INT = 2, T_BOOL = 4, T_ANY = 8 };

static const struct ext_op {
  const char *name;
  ext_kind kind;
  int types;
} ext_ops[] = {
    {"HardSigmoid", K_UNARY, T_F32}, {"HardSwish", K_UNARY, T_F32},
    {"Elu", K_UNARY, T_F32},         {"Selu", K_UNARY, T_F32},
    {"Celu", K_UNARY, T_F32},        {"Softplus", K_UNARY, T_F32},
    {"Softsign", K_UNARY, T_F32},    {"ThresholdedRelu", K_UNARY, T_F32},
    {"Sin", K_UNARY, T_F32},         {"Cos", K_UNARY, T_F32},
    {"Tan", K_UNARY, T_F32},         {"Asin", K_UNARY, T_F32},
    {"Acos", K_UNARY, T_F32},        {"Atan", K_UNARY, T_F32},
    {"Sinh", K_UNARY, T_F32},        {"Cosh", K_UNARY, T_F32},
    {"Asinh", K_UNARY, T_F32},       {"Acosh", K_UNARY, T_F32},
    {"Atanh", K_UNARY, T_F32},       {"Round", K_UNARY, T_F32},
    {"Shrink", K_UNARY, T_F32},      {"Sign", K_SIGN, T_F32 | T_INT},
    {"Mish", K_UNARY, T_F32},        {"Gelu", K_UNARY, T_F32},
    {"Swish", K_UNARY, T_F32},
    {"IsNaN", K_ISX, T_F32},         {"IsInf", K_ISX, T_F32},
    {"PRelu", K_PRELU, T_F32},
    {"Min", K_VARIADIC, T_F32 | T_INT}, {"Max", K_VARIADIC, T_F32 | T_INT},
    {"Sum", K_VARIADIC, T_F32 | T_INT}, {"Mean", K_VARIADIC, T_F32},
    {"LessOrEqual", K_CMP, T_F32 | T_INT},
    {"GreaterOrEqual", K_CMP, T_F32 | T_INT},
    {"And", K_LOGIC, T_BOOL}, {"Or", K_LOGIC, T_BOOL}, {"Xor", K_LOGIC, T_BOOL},
    {"Mod", K_MOD, T_F32 | T_INT},
    {"ReduceMax", K_REDUCE, T_F32 | T_INT}, {"ReduceMin", K_REDUCE, T_F32 | T_INT},
    {"ReduceProd", K_REDUCE, T_F32 | T_INT}, {"ReduceL1", K_REDUCE, T_F32 | T_INT},
    {"ReduceL2", K_REDUCE, T_F32}, {"ReduceLogSumExp", K_REDUCE, T_F32},
    {"ReduceLogSum", K_REDUCE, T_F32},
    {"ReduceSumSquare", K_REDUCE, T_F32 | T_INT},
    {"ArgMax", K_ARG, T_F32 | T_INT}, {"ArgMin", K_ARG, T_F32 | T_INT},
    {"Tile", K_TILE, T_ANY}, {"TopK", K_TOPK, T_F32 | T_INT},
    {"GatherElements", K_GATHER_EL, T_ANY}, {"ScatterND", K_SCATTER_ND, T_ANY},
    {"CumSum", K_CUMSUM, T_F32 | T_INT},
    {"DepthToSpace", K_D2S, T_ANY}, {"SpaceToDepth", K_S2D, T_ANY},
    {"InstanceNormalization", K_INORM, T_F32},
    {"LayerNormalization", K_LNORM, T_F32},
    {"RMSNormalization", K_LNORM, T_F32},
    {"ConvTranspose", K_CONVT, T_F32},
    {"Einsum", K_EINSUM, T_F32},
    {"LRN", K_LRN, T_F32},
    {"Trilu", K_TRILU, T_ANY},
    {"GatherND", K_GATHER_ND, T_ANY},
    {"ScatterElements", K_SCATTER_EL, T_ANY},
    {"OneHot", K_ONEHOT, T_F32 | T_INT},
    {"Hardmax", K_ALONG, T_F32},
    {"LpNormalization", K_ALONG, T_F32},
    {"MeanVarianceNormalization", K_MVN, T_F32},
    {"GroupNormalization", K_GNORM, T_F32},
    {"GlobalLpPool", K_GLP, T_F32},
    {"EyeLike", K_EYELIKE, T_ANY},
    {"QuantizeLinear", K_QDQ, T_F32},
    {"DequantizeLinear", K_QDQ, T_ANY},
    {"Attention", K_ATTN, T_F32},
    {"RotaryEmbedding", K_ROPE, T_F32},
    {"GridSample", K_GRIDS, T_F32},
    {"NonZero", K_NONZERO, T_ANY},
    {"NonMaxSuppression", K_NMS, T_F32},
    {"Compress", K_COMPRESS, T_ANY},
    {"If", K_IF, T_ANY},
    {"RoiAlign", K_ROIALIGN, T_F32},
};

static const struct ext_op *find_op(const pv_node *n) {
  if (!n || !n->op || (n->domain && *n->domain && strcmp(n->domain, "ai.onnx")))
    return NULL;
  for (size_t i = 0; i < sizeof ext_ops / sizeof *ext_ops; i++)
    if (!strcmp(ext_ops[i].name, n->op)) return &ext_ops[i];
  return NULL;
}

bool pv_ext_has(const pv_node *n) { return find_op(n) != NULL; }

bool pv_ext_data_shaped(const pv_node *n) {
  const struct ext_op *e = find_op(n);
  return e && (e->kind == K_NONZERO || e->kind == K_NMS || e->kind == K_COMPRESS ||
               e->kind == K_IF);
}

bool pv_node_guarded(const pv_node *n) {
  return pv_attr_int(n, "pv.guarded", 0) != 0;
}

static bool is_int(pv_dtype t) { return t == PV_I32 || t == PV_I64; }

static bool type_ok(int types, pv_dtype t) {
  if (t == PV_F32) return types & (T_F32 | T_ANY);
  if (is_int(t)) return types & (T_INT | T_ANY);
  if (t == PV_BOOL) return types & (T_BOOL | T_ANY);
  return (types & T_ANY) && t != PV_STRING && pv_dtype_size(t) > 0;
}

bool pv_ext_supports(const pv_graph *g, const pv_node *n) {
  const struct ext_op *e = find_op(n);
  if (!e) return false;
  pv_dtype t = n->n_in > 0 && n->in[0] >= 0 && n->in[0] < g->n_values
                   ? g->values[n->in[0]].dtype : PV_UNDEFINED;
  return t == PV_UNDEFINED || type_ok(e->types, t);
}

/* ------------------------------------------------------------ helpers */

static size_t numel(const pv_tensor *t) {
  int64_t c = pv_tensor_numel(t);
  return c < 0 ? 0 : (size_t)c;
}

static void set_out(pv_tensor *o, pv_dtype t, int ndim, const int64_t *dims) {
  o->dtype = t;
  o->ndim = ndim;
  memset(o->dims, 0, sizeof o->dims);
  if (ndim > 0) memcpy(o->dims, dims, sizeof *dims * ndim);
}

static int norm_axis(const pv_node *n, int64_t a, int r, int64_t *out) {
  if (a < -r || a >= r)
    return ERR(PV_EINVAL, "axis %lld out of range for rank %d", (long long)a, r);
  *out = a < 0 ? a + r : a;
  return 0;
}

/* Element strides of t laid over an output of rank r (numpy broadcasting:
 * broadcast axes get stride 0). */
static void bstrides(const pv_tensor *t, int r, const int64_t *odims,
                     int64_t *st) {
  int64_t s = 1;
  for (int i = r - 1; i >= 0; i--) {
    int o = i - (r - t->ndim);
    st[i] = o < 0 || (t->dims[o] == 1 && odims[i] != 1) ? 0 : s;
    if (o >= 0) s *= t->dims[o];
  }
}

/* Advance the index idx over dims and the offset by strides st; false
 * when the walk is done. */
static bool odo_next(int r, const int64_t *dims, int64_t *idx,
                     const int64_t *st, int64_t *off) {
  for (int i = r - 1; i >= 0; i--) {
    idx[i]++;
    *off += st[i];
    if (idx[i] < dims[i]) return true;
    *off -= st[i] * dims[i];
    idx[i] = 0;
  }
  return false;
}

static double getd(const pv_tensor *t, size_t i) {
  switch (t->dtype) {
  case PV_F32: return ((const float *)t->data)[i];
  case PV_I32: return ((const int32_t *)t->data)[i];
  case PV_I64: return (double)((const int64_t *)t->data)[i];
  case PV_BOOL: case PV_U8: return ((const uint8_t *)t->data)[i];
  case PV_I8: return ((const int8_t *)t->data)[i];
  default: return 0;
  }
}

static int64_t geti(const pv_tensor *t, size_t i) {
  switch (t->dtype) {
  case PV_I32: return ((const int32_t *)t->data)[i];
  case PV_I64: return ((const int64_t *)t->data)[i];
  case PV_BOOL: case PV_U8: return ((const uint8_t *)t->data)[i];
  default: return (int64_t)getd(t, i);
  }
}

static void putd(pv_tensor *t, size_t i, double v) {
  switch (t->dtype) {
  case PV_F32: ((float *)t->data)[i] = (float)v; break;
  case PV_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
  case PV_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
  case PV_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
  default: break;
  }
}

static void puti(pv_tensor *t, size_t i, int64_t v) {
  switch (t->dtype) {
  case PV_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
  case PV_I64: ((int64_t *)t->data)[i] = v; break;
  default: putd(t, i, (double)v); break;
  }
}

/* Index with a negative value counting from the end, checked. */
static int fix_index(const pv_node *n, int64_t v, int64_t d, int64_t *out) {
  if (v < -d || v >= d)
    return ERR(PV_EINVAL, "index %lld out of range [%lld, %lld)", (long long)v,
               (long long)-d, (long long)d);
  *out = v < 0 ? v + d : v;
  return 0;
}

/* Product of dims[from..to) (no overflow: the tensor was allocated). */
static int64_t span(const int64_t *dims, int from, int to) {
  int64_t p = 1;
  for (int i = from; i < to; i++) p *= dims[i];
  return p;
}

/* ------------------------------------------------------------ unary */

typedef enum {
  U_HSIG, U_HSWISH, U_ELU, U_SELU, U_CELU, U_SOFTPLUS, U_SOFTSIGN, U_THRELU,
  U_SIN, U_COS, U_TAN, U_ASIN, U_ACOS, U_ATAN, U_SINH, U_COSH, U_ASINH,
  U_ACOSH, U_ATANH, U_ROUND, U_SHRINK, U_MISH, U_GELU, U_SWISH, U_GELU_TANH,
  U_NONE
} uop;

static const char *const unames[] = {
    "HardSigmoid", "HardSwish", "Elu", "Selu", "Celu", "Softplus", "Softsign",
    "ThresholdedRelu", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
    "Cosh", "Asinh", "Acosh", "Atanh", "Round", "Shrink", "Mish", "Gelu",
    "Swish"};

/* The op is looked up once, then each runs as its own loop (these sit in
 * the hot path of HardSwish networks). */
static int ref_unary(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  uop u = U_NONE;
  for (int i = 0; i < U_GELU_TANH; i++)
    if (!strcmp(n->op, unames[i])) u = (uop)i;
  if (u == U_GELU) {
    const char *ap = pv_attr_str(n, "approximate", "none");
    if (!strcmp(ap, "tanh")) u = U_GELU_TANH;
    else if (strcmp(ap, "none"))
      return ERR(PV_EINVAL, "approximate '%s' (none or tanh)", ap);
  }
  float a = 0, b = 0;
  switch (u) {
  case U_HSIG:
    a = pv_attr_float(n, "alpha", 0.2f);
    b = pv_attr_float(n, "beta", 0.5f);
    break;
  case U_ELU: case U_CELU: case U_THRELU: case U_SWISH:
    a = pv_attr_float(n, "alpha", 1.f);
    if (u == U_CELU && a == 0) return ERR(PV_EINVAL, "alpha is 0");
    break;
  case U_SELU:
    a = pv_attr_float(n, "alpha", 1.67326319217681884765625f);
    b = pv_attr_float(n, "gamma", 1.05070102214813232421875f);
    break;
  case U_SHRINK:
    a = pv_attr_float(n, "lambd", 0.5f);
    b = pv_attr_float(n, "bias", 0.f);
    break;
  case U_NONE: return ERR(PV_EINTERNAL, "not a unary op");
  default: break;
  }
  const float *s = x->data;
  float *z = o->data;
  size_t cnt = numel(o);
#define EACH(expr)                                   \
  for (size_t i = 0; i < cnt; i++) {                 \
    float v = s[i];                                  \
    z[i] = (expr);                                   \
  }                                                  \
  break
  switch (u) {
  case U_HSIG: EACH(fmaxf(0.f, fminf(1.f, a * v + b)));
  case U_HSWISH: EACH(v * fmaxf(0.f, fminf(1.f, v / 6.f + 0.5f)));
  case U_ELU: EACH(v >= 0 ? v : a * (expf(v) - 1.f));
  case U_SELU: EACH(v > 0 ? b * v : b * (a * expf(v) - a));
  case U_CELU: EACH(fmaxf(0.f, v) + fminf(0.f, a * (expf(v / a) - 1.f)));
  case U_SOFTPLUS: EACH(v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v)));
  case U_SOFTSIGN: EACH(v / (1.f + fabsf(v)));
  case U_THRELU: EACH(v > a ? v : 0.f);
  case U_SIN: EACH(sinf(v));
  case U_COS: EACH(cosf(v));
  case U_TAN: EACH(tanf(v));
  case U_ASIN: EACH(asinf(v));
  case U_ACOS: EACH(acosf(v));
  case U_ATAN: EACH(atanf(v));
  case U_SINH: EACH(sinhf(v));
  case U_COSH: EACH(coshf(v));
  case U_ASINH: EACH(asinhf(v));
  case U_ACOSH: EACH(acoshf(v));
  case U_ATANH: EACH(atanhf(v));
  case U_ROUND: EACH(nearbyintf(v)); /* halves to even, as ONNX specifies */
  case U_SHRINK: EACH(v < -a ? v + b : v > a ? v - b : 0.f);
  case U_MISH: EACH(v * tanhf(v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v))));
  case U_GELU: EACH(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
  case U_SWISH: EACH(v / (1.f + expf(-a * v))); /* x sigmoid(alpha x), 24 */
  case U_GELU_TANH:
    EACH(0.5f * v * (1.f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v))));
  case U_NONE: break;
  }
#undef EACH
  return 0;
}

static int ref_sign(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  size_t cnt = numel(o);
  for (size_t i = 0; i < cnt; i++) {
    if (x->dtype == PV_F32) {
      float v = ((const float *)x->data)[i];
      ((float *)o->data)[i] = v > 0 ? 1.f : v < 0 ? -1.f : isnan(v) ? v : 0.f;
    } else {
      int64_t v = geti(x, i);
      puti(o, i, v > 0 ? 1 : v < 0 ? -1 : 0);
    }
  }
  return 0;
}

static int ref_isx(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const float *x = IN(0)->data;
  uint8_t *z = o->data;
  bool nan = !strcmp(n->op, "IsNaN");
  bool pos = pv_attr_int(n, "detect_positive", 1),
       neg = pv_attr_int(n, "detect_negative", 1);
  size_t cnt = numel(o);
  for (size_t i = 0; i < cnt; i++)
    z[i] = nan ? isnan(x[i]) : isinf(x[i]) && (x[i] > 0 ? pos : neg);
  return 0;
}

/* ------------------------------------------------------------ elementwise */

/* y = f(y, t) over the output shape, t broadcast; y keeps o's dtype. The
 * first input is copied in with broadcasting (op < 0). */
typedef enum { E_COPY = -1, E_MIN, E_MAX, E_SUM, E_LE, E_GE, E_AND, E_OR,
               E_XOR, E_MOD, E_FMOD, E_PRELU } eop;

static int64_t imod(int64_t a, int64_t b) {
  int64_t r = a % b;
  /* Python-style: the result takes the divisor's sign. */
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

/* out[i] = op(a[i], b[i]) with both broadcast to out's shape; out may be
 * a (a then has out's shape). Bool results for E_LE/E_GE/logic. */
static int ewise(const pv_node *n, const pv_tensor *a, const pv_tensor *b,
                 pv_tensor *o, eop op) {
  size_t cnt = numel(o);
  if (!cnt) return 0;
  int r = o->ndim;
  int64_t sa[PV_MAX_DIMS], sb[PV_MAX_DIMS], ia[PV_MAX_DIMS] = {0},
          ib[PV_MAX_DIMS] = {0}, oa = 0, ob = 0;
  bstrides(a, r, o->dims, sa);
  bstrides(b, r, o->dims, sb);
  bool f = a->dtype == PV_F32;
  size_t i = 0;
  do {
    if (f && op != E_LE && op != E_GE) {
      float u = ((const float *)a->data)[oa], v = ((const float *)b->data)[ob], z;
      switch (op) {
      case E_MIN: z = isnan(u) || isnan(v) ? NAN : fminf(u, v); break;
      case E_MAX: z = isnan(u) || isnan(v) ? NAN : fmaxf(u, v); break;
      case E_SUM: z = u + v; break;
      case E_FMOD: z = fmodf(u, v); break;
      case E_PRELU: z = u < 0 ? u * v : u; break;
      default: return ERR(PV_ETYPE, "FP32 inputs");
      }
      ((float *)o->data)[i] = z;
    } else if (op == E_LE || op == E_GE) {
      bool z;
      if (f) {
        double u = getd(a, oa), v = getd(b, ob);
        z = op == E_LE ? u <= v : u >= v;
      } else {
        int64_t u = geti(a, oa), v = geti(b, ob);
        z = op == E_LE ? u <= v : u >= v;
      }
      ((uint8_t *)o->data)[i] = z;
    } else if (op == E_AND || op == E_OR || op == E_XOR) {
      bool u = ((const uint8_t *)a->data)[oa], v = ((const uint8_t *)b->data)[ob];
      ((uint8_t *)o->data)[i] = op == E_AND ? u && v : op == E_OR ? u || v : u != v;
    } else {
      int64_t u = geti(a, oa), v = geti(b, ob), z;
      switch (op) {
      case E_MIN: z = u < v ? u : v; break;
      case E_MAX: z = u > v ? u : v; break;
      case E_SUM: z = (int64_t)((uint64_t)u + (uint64_t)v); break; /* wraps */
      case E_MOD: case E_FMOD:
        if (v == 0) return ERR(PV_EINVAL, "integer modulo by zero");
        if (v == -1) z = 0;
        else z = op == E_MOD ? imod(u, v) : u % v;
        break;
      default: return ERR(PV_ETYPE, "integer inputs");
      }
      puti(o, i, z);
    }
    i++;
    /* Both offsets walk the same output index. */
    (void)odo_next(r, o->dims, ib, sb, &ob);
  } while (odo_next(r, o->dims, ia, sa, &oa));
  return 0;
}

/* Broadcast copy of t into o (same dtype). */
static void bcopy_into(const pv_tensor *t, pv_tensor *o) {
  size_t cnt = numel(o), es = pv_dtype_size(o->dtype);
  if (!cnt) return;
  int r = o->ndim;
  int64_t st[PV_MAX_DIMS], idx[PV_MAX_DIMS] = {0}, off = 0;
  bstrides(t, r, o->dims, st);
  char *z = o->data;
  do {
    memcpy(z, (const char *)t->data + off * es, es);
    z += es;
  } while (odo_next(r, o->dims, idx, st, &off));
}

static int infer_broadcast(const pv_node *n, const pv_tensor *vals, int k,
                           pv_dtype t, pv_tensor *o) {
  const pv_tensor *ts[64];
  if (k < 1) return ERR(PV_EINVAL, "needs at least one input");
  if (k > 64) return ERR(PV_EUNSUPPORTED, "more than 64 inputs");
  for (int i = 0; i < k; i++) {
    if (!(ts[i] = IN(i))) return ERR(PV_EINVAL, "missing input %d", i);
    if (ts[i]->dtype != IN(0)->dtype)
      return ERR(PV_ETYPE, "input %d is %s, input 0 is %s", i,
                 pv_dtype_name(ts[i]->dtype), pv_dtype_name(IN(0)->dtype));
  }
  int r;
  int64_t d[PV_MAX_DIMS];
  int rc = pv_broadcast(n, ts, k, &r, d);
  if (rc) return rc;
  set_out(o, t, r, d);
  return 0;
}

static int ref_variadic(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const char *op = n->op;
  eop e = !strcmp(op, "Min") ? E_MIN : !strcmp(op, "Max") ? E_MAX : E_SUM;
  bcopy_into(IN(0), o);
  for (int k = 1; k < n->n_in; k++) {
    int rc = ewise(n, o, IN(k), o, e);
    if (rc) return rc;
  }
  if (!strcmp(op, "Mean")) {
    float *z = o->data;
    size_t cnt = numel(o);
    for (size_t i = 0; i < cnt; i++) z[i] /= (float)n->n_in;
  }
  return 0;
}

/* ------------------------------------------------------------ reductions */

static int infer_reduce(const pv_graph *g, const pv_node *n, pv_tensor *vals,
                        pv_tensor *o) {
  const pv_tensor *x = IN(0);
  bool mask[PV_MAX_DIMS];
  int rc = pv_reduce_axes(g, n, vals, mask);
  if (rc) return rc;
  bool keep = pv_attr_int(n, "keepdims", 1);
  int64_t d[PV_MAX_DIMS];
  int r = 0;
  for (int i = 0; i < x->ndim; i++)
    if (!mask[i]) d[r++] = x->dims[i];
    else if (keep) d[r++] = 1;
  set_out(o, x->dtype, r, d);
  return 0;
}

static int ref_reduce(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                      pv_tensor *o) {
  const pv_tensor *x = IN(0);
  bool mask[PV_MAX_DIMS];
  int rc = pv_reduce_axes(g, n, vals, mask);
  if (rc) return rc;
  const char *op = n->op + 6; /* after "Reduce" */
  bool mx = !strcmp(op, "Max"), mn = !strcmp(op, "Min"),
       prod = !strcmp(op, "Prod"), l1 = !strcmp(op, "L1"), l2 = !strcmp(op, "L2"),
       lse = !strcmp(op, "LogSumExp"), ls = !strcmp(op, "LogSum");
  size_t on = numel(o), xn = numel(x);
  double *acc = malloc((on ? on : 1) * sizeof *acc);
  double *top = lse ? malloc((on ? on : 1) * sizeof *top) : NULL;
  if (!acc || (lse && !top)) {
    free(acc);
    free(top);
    return ERR(PV_ENOMEM, "out of memory");
  }
  double init = mx ? -INFINITY : mn ? INFINITY : prod ? 1 : 0;
  for (size_t k = 0; k < on; k++) {
    acc[k] = init;
    if (top) top[k] = -INFINITY;
  }
  int r = x->ndim;
  int64_t st[PV_MAX_DIMS], s = 1;
  for (int i = r - 1; i >= 0; i--) {
    st[i] = mask[i] ? 0 : s;
    if (!mask[i]) s *= x->dims[i];
  }
  /* LogSumExp subtracts each output's maximum first so exp cannot
   * overflow: two passes. */
  for (int pass = lse ? 0 : 1; pass < 2 && xn; pass++) {
    int64_t idx[PV_MAX_DIMS] = {0}, off = 0;
    size_t i = 0;
    do {
      double v = getd(x, i++);
      double *a = &acc[off];
      if (pass == 0) top[off] = fmax(top[off], v);
      else if (mx) *a = isnan(v) || isnan(*a) ? NAN : fmax(*a, v);
      else if (mn) *a = isnan(v) || isnan(*a) ? NAN : fmin(*a, v);
      else if (prod) *a *= v;
      else if (l1) *a += fabs(v);
      else if (lse) *a += isinf(top[off]) ? exp(v) : exp(v - top[off]);
      else if (ls) *a += v;
      else *a += v * v; /* L2, SumSquare */
    } while (odo_next(r, x->dims, idx, st, &off));
  }
  for (size_t k = 0; k < on; k++) {
    double v = acc[k];
    if (l2) v = sqrt(v);
    else if (lse) v = log(v) + (isinf(top[k]) ? 0 : top[k]);
    else if (ls) v = log(v);
    if (o->dtype == PV_F32) {
      ((float *)o->data)[k] = (float)v;
      continue;
    }
    /* Integers saturate (an empty Max/Min, a Prod past the range). */
    double lo = o->dtype == PV_I32 ? INT32_MIN : -9.2e18,
           hi = o->dtype == PV_I32 ? INT32_MAX : 9.2e18;
    puti(o, k, isnan(v) ? 0 : v <= lo ? (int64_t)lo : v >= hi ? (int64_t)hi : (int64_t)v);
  }
  free(acc);
  free(top);
  return 0;
}

static int arg_geom(const pv_node *n, const pv_tensor *x, int64_t *axis) {
  return norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim ? x->ndim : 1, axis);
}

static int infer_arg(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t a = 0, d[PV_MAX_DIMS];
  int rc = arg_geom(n, x, &a);
  if (rc) return rc;
  if (x->ndim && x->dims[a] == 0)
    return ERR(PV_ESHAPE, "%s over an empty axis %lld", n->op, (long long)a);
  bool keep = pv_attr_int(n, "keepdims", 1);
  int r = 0;
  for (int i = 0; i < x->ndim; i++)
    if (i != a) d[r++] = x->dims[i];
    else if (keep) d[r++] = 1;
  set_out(o, PV_I64, r, d);
  return 0;
}

static int ref_arg(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t a = 0;
  int rc = arg_geom(n, x, &a);
  if (rc) return rc;
  bool last = pv_attr_int(n, "select_last_index", 0),
       amax = !strcmp(n->op, "ArgMax");
  int64_t outer = span(x->dims, 0, (int)a), len = x->ndim ? x->dims[a] : 1,
          inner = x->ndim ? span(x->dims, (int)a + 1, x->ndim) : 1;
  int64_t *z = o->data;
  for (int64_t p = 0; p < outer; p++)
    for (int64_t q = 0; q < inner; q++) {
      size_t base = (size_t)(p * len * inner + q);
      double best = getd(x, base);
      int64_t bi = 0;
      for (int64_t k = 1; k < len; k++) {
        double v = getd(x, base + (size_t)(k * inner));
        bool better = amax ? (last ? v >= best : v > best)
                           : (last ? v <= best : v < best);
        if (better) best = v, bi = k;
      }
      z[p * inner + q] = bi;
    }
  return 0;
}

/* ------------------------------------------------------------ index ops */

static int tile_reps(const pv_node *n, const pv_tensor *vals, int64_t *reps) {
  const pv_tensor *x = IN(0), *t = IN(1);
  if (!t) return ERR(PV_EINVAL, "missing repeats input");
  int c = pv_read_ints(n, t, "repeats", reps, PV_MAX_DIMS);
  if (c < 0) return c;
  if (c != x->ndim)
    return ERR(PV_ESHAPE, "repeats has %d values for rank %d", c, x->ndim);
  for (int i = 0; i < c; i++)
    if (reps[i] < 0) return ERR(PV_EINVAL, "negative repeat %lld", (long long)reps[i]);
  return 0;
}

static int infer_tile(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t reps[PV_MAX_DIMS], d[PV_MAX_DIMS];
  int rc = tile_reps(n, vals, reps);
  if (rc) return rc;
  for (int i = 0; i < x->ndim; i++) {
    if (reps[i] && x->dims[i] > INT64_MAX / reps[i])
      return ERR(PV_ERANGE, "output too large on axis %d", i);
    d[i] = x->dims[i] * reps[i];
  }
  set_out(o, x->dtype, x->ndim, d);
  return 0;
}

static int ref_tile(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  size_t cnt = numel(o), es = pv_dtype_size(x->dtype);
  int r = x->ndim;
  if (!cnt) return 0;
  int64_t xs[PV_MAX_DIMS], s = 1, idx[PV_MAX_DIMS] = {0};
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  char *z = o->data;
  for (size_t e = 0; e < cnt; e++) {
    int64_t off = 0;
    for (int i = 0; i < r; i++) off += (idx[i] % x->dims[i]) * xs[i];
    memcpy(z, (const char *)x->data + off * es, es);
    z += es;
    for (int i = r - 1; i >= 0; i--) {
      if (++idx[i] < o->dims[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}

static int topk_geom(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     int64_t *axis, int64_t *k) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 1) return ERR(PV_ESHAPE, "input is a scalar");
  int rc = norm_axis(n, pv_attr_int(n, "axis", -1), x->ndim, axis);
  if (rc) return rc;
  if (g->opset < 10) {
    if (!pv_node_attr(n, "k")) return ERR(PV_EINVAL, "missing attribute k");
    *k = pv_attr_int(n, "k", 0);
  } else {
    if (!IN(1)) return ERR(PV_EINVAL, "missing input K");
    int c = pv_read_ints(n, IN(1), "K", k, 1);
    if (c < 0) return c;
    if (c != 1) return ERR(PV_ESHAPE, "K must hold one value");
  }
  if (*k < 0 || *k > x->dims[*axis])
    return ERR(PV_EINVAL, "K %lld outside [0, %lld] (axis %lld)", (long long)*k,
               (long long)x->dims[*axis], (long long)*axis);
  return 0;
}

static int infer_topk(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  const pv_tensor *x = IN(0);
  int64_t a = 0, k = 0, d[PV_MAX_DIMS];
  int rc = topk_geom(g, n, vals, &a, &k);
  if (rc) return rc;
  memcpy(d, x->dims, sizeof d);
  d[a] = k;
  set_out(&vals[n->out[0]], x->dtype, x->ndim, d);
  if (n->n_out > 1 && n->out[1] >= 0) set_out(&vals[n->out[1]], PV_I64, x->ndim, d);
  return 0;
}

typedef struct kv {
  double v;
  int64_t i;
} kv;

/* Whether p goes before q: larger (or smaller) value first, equal values
 * by lower index, as ONNX Runtime orders ties. */
static bool kv_before(const kv *p, const kv *q, bool largest) {
  if (p->v != q->v) return largest ? p->v > q->v : p->v < q->v;
  return p->i < q->i;
}

/* Bottom-up merge sort of a[0..n) using tmp (n entries). */
static void kv_sort(kv *a, kv *tmp, int64_t n, bool largest) {
  for (int64_t w = 1; w < n; w *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * w) {
      int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
      int64_t i = lo, j = mid, t = lo;
      while (i < mid && j < hi) tmp[t++] = kv_before(&a[j], &a[i], largest) ? a[j++] : a[i++];
      while (i < mid) tmp[t++] = a[i++];
      while (j < hi) tmp[t++] = a[j++];
    }
    memcpy(a, tmp, sizeof *a * (size_t)n);
  }
}

static int ref_topk(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  const pv_tensor *x = IN(0);
  int64_t a = 0, k = 0;
  int rc = topk_geom(g, n, vals, &a, &k);
  if (rc) return rc;
  bool largest = pv_attr_int(n, "largest", 1);
  pv_tensor *ov = &vals[n->out[0]];
  pv_tensor *oi = n->n_out > 1 && n->out[1] >= 0 ? &vals[n->out[1]] : NULL;
  int64_t outer = span(x->dims, 0, (int)a), len = x->dims[a],
          inner = span(x->dims, (int)a + 1, x->ndim);
  if (!k || !outer || !inner) return 0;
  kv *buf = malloc(sizeof *buf * (size_t)len * 2);
  if (!buf) return ERR(PV_ENOMEM, "out of memory");
  for (int64_t p = 0; p < outer; p++)
    for (int64_t q = 0; q < inner; q++) {
      for (int64_t j = 0; j < len; j++) {
        buf[j].v = getd(x, (size_t)((p * len + j) * inner + q));
        buf[j].i = j;
      }
      kv_sort(buf, buf + len, len, largest);
      for (int64_t j = 0; j < k; j++) {
        size_t src = (size_t)((p * len + buf[j].i) * inner + q),
               dst = (size_t)((p * k + j) * inner + q);
        if (x->dtype == PV_F32) ((float *)ov->data)[dst] = ((const float *)x->data)[src];
        else puti(ov, dst, geti(x, src));
        if (oi) ((int64_t *)oi->data)[dst] = buf[j].i;
      }
    }
  free(buf);
  return 0;
}

static int infer_gather_el(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1);
  if (!ix) return ERR(PV_EINVAL, "missing indices");
  if (!is_int(ix->dtype)) return ERR(PV_ETYPE, "indices must be INT64 or INT32");
  if (ix->ndim != x->ndim || x->ndim < 1)
    return ERR(PV_ESHAPE, "indices rank %d differs from data rank %d", ix->ndim,
               x->ndim);
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a);
  if (rc) return rc;
  for (int i = 0; i < x->ndim; i++)
    if (i != a && ix->dims[i] > x->dims[i])
      return ERR(PV_ESHAPE, "indices dim %lld exceeds data dim %lld on axis %d",
                 (long long)ix->dims[i], (long long)x->dims[i], i);
  set_out(o, x->dtype, ix->ndim, ix->dims);
  return 0;
}

static int ref_gather_el(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1);
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a);
  if (rc) return rc;
  int r = x->ndim;
  size_t cnt = numel(o), es = pv_dtype_size(x->dtype);
  int64_t xs[PV_MAX_DIMS], s = 1, idx[PV_MAX_DIMS] = {0};
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  char *z = o->data;
  for (size_t e = 0; e < cnt; e++) {
    int64_t j = 0, off = 0;
    if ((rc = fix_index(n, geti(ix, e), x->dims[a], &j))) return rc;
    for (int i = 0; i < r; i++) off += (i == a ? j : idx[i]) * xs[i];
    memcpy(z, (const char *)x->data + off * es, es);
    z += es;
    for (int i = r - 1; i >= 0; i--) {
      if (++idx[i] < o->dims[i]) break;
      idx[i] = 0;
    }
  }
  return 0;
}

/* The `reduction` of ScatterND and ScatterElements: none (a copy), add,
 * mul (16), max, min (18); any reduction wants FP32 or integer data.
 * Returns the kind (0 = none) or a negative code naming the problem. */
typedef enum { SR_NONE, SR_ADD, SR_MUL, SR_MAX, SR_MIN } scatter_red;

static int scatter_reduction(const pv_node *n, pv_dtype t) {
  const char *red = pv_attr_str(n, "reduction", "none");
  static const char *const names[] = {"none", "add", "mul", "max", "min"};
  for (int k = 0; k < 5; k++)
    if (!strcmp(red, names[k])) {
      if (k != SR_NONE && t != PV_F32 && !is_int(t))
        return ERR(PV_ETYPE, "reduction on %s", pv_dtype_name(t));
      return k;
    }
  return ERR(PV_EUNSUPPORTED, "reduction '%s' (none, add, mul, max, min)", red);
}

/* o[d] = o[d] (red) up[u] for a reduction other than none. */
static void scatter_combine(pv_tensor *o, size_t d, const pv_tensor *up, size_t u,
                            scatter_red red) {
  if (o->dtype == PV_F32) {
    float *p = (float *)o->data + d, v = ((const float *)up->data)[u];
    *p = red == SR_ADD ? *p + v : red == SR_MUL ? *p * v : red == SR_MAX ? fmaxf(*p, v)
                                                                          : fminf(*p, v);
    return;
  }
  int64_t p = geti(o, d), v = geti(up, u);
  puti(o, d, red == SR_ADD   ? (int64_t)((uint64_t)p + (uint64_t)v)
             : red == SR_MUL ? (int64_t)((uint64_t)p * (uint64_t)v)
             : red == SR_MAX ? (p > v ? p : v)
                             : (p < v ? p : v));
}

static int scatter_check(const pv_node *n, const pv_tensor *vals) {
  const pv_tensor *x = IN(0), *ix = IN(1), *up = IN(2);
  if (!ix || !up) return ERR(PV_EINVAL, "needs data, indices and updates");
  if (ix->dtype != PV_I64) return ERR(PV_ETYPE, "indices must be INT64");
  if (up->dtype != x->dtype) return ERR(PV_ETYPE, "updates type differs from data");
  if (ix->ndim < 1) return ERR(PV_ESHAPE, "indices is a scalar");
  int64_t k = ix->dims[ix->ndim - 1];
  if (k < 1 || k > x->ndim)
    return ERR(PV_ESHAPE, "index tuples of length %lld for data rank %d",
               (long long)k, x->ndim);
  /* updates = indices.shape[:-1] + data.shape[k:] */
  int ur = ix->ndim - 1 + x->ndim - (int)k;
  bool ok = up->ndim == ur;
  for (int i = 0; ok && i < ix->ndim - 1; i++) ok = up->dims[i] == ix->dims[i];
  for (int i = (int)k; ok && i < x->ndim; i++)
    ok = up->dims[ix->ndim - 1 + i - k] == x->dims[i];
  if (!ok) {
    char b[128];
    return ERR(PV_ESHAPE, "updates shape %s does not match indices and data",
               pv_dims_str(up->dims, up->ndim, b, sizeof b));
  }
  int red = scatter_reduction(n, x->dtype);
  return red < 0 ? red : 0;
}

static int ref_scatter_nd(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1), *up = IN(2);
  int rc = scatter_check(n, vals);
  if (rc) return rc;
  scatter_red red = (scatter_red)scatter_reduction(n, x->dtype);
  size_t es = pv_dtype_size(x->dtype), nb = pv_tensor_nbytes(x);
  if (nb) memmove(o->data, x->data, nb);
  int k = (int)ix->dims[ix->ndim - 1];
  int64_t slice = span(x->dims, k, x->ndim), tuples = span(ix->dims, 0, ix->ndim - 1);
  int64_t xs[PV_MAX_DIMS], s = 1;
  for (int i = x->ndim - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  const int64_t *id = ix->data;
  for (int64_t t = 0; t < tuples; t++) {
    int64_t off = 0;
    for (int i = 0; i < k; i++) {
      int64_t j = 0;
      if ((rc = fix_index(n, id[t * k + i], x->dims[i], &j))) return rc;
      off += j * xs[i];
    }
    if (red == SR_NONE) {
      if (slice) memcpy((char *)o->data + off * es, (const char *)up->data + t * slice * es,
                        (size_t)slice * es);
      continue;
    }
    for (int64_t e = 0; e < slice; e++)
      scatter_combine(o, (size_t)(off + e), up, (size_t)(t * slice + e), red);
  }
  return 0;
}

static int ref_cumsum(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ta = IN(1);
  if (!ta) return ERR(PV_EINVAL, "missing axis input");
  int64_t a = 0;
  int c = pv_read_ints(n, ta, "axis", &a, 1);
  if (c < 0) return c;
  if (c != 1) return ERR(PV_ESHAPE, "axis must hold one value");
  int rc = norm_axis(n, a, x->ndim, &a);
  if (rc) return rc;
  bool excl = pv_attr_int(n, "exclusive", 0), rev = pv_attr_int(n, "reverse", 0);
  int64_t outer = span(x->dims, 0, (int)a), len = x->dims[a],
          inner = span(x->dims, (int)a + 1, x->ndim);
  for (int64_t p = 0; p < outer; p++)
    for (int64_t q = 0; q < inner; q++) {
      double sd = 0;
      int64_t si = 0;
      for (int64_t j0 = 0; j0 < len; j0++) {
        int64_t j = rev ? len - 1 - j0 : j0;
        size_t e = (size_t)((p * len + j) * inner + q);
        if (x->dtype == PV_F32) {
          double v = ((const float *)x->data)[e];
          if (!excl) sd += v;
          ((float *)o->data)[e] = (float)sd;
          if (excl) sd += v;
        } else {
          int64_t v = geti(x, e);
          if (!excl) si = (int64_t)((uint64_t)si + (uint64_t)v);
          puti(o, e, si);
          if (excl) si = (int64_t)((uint64_t)si + (uint64_t)v);
        }
      }
    }
  return 0;
}

/* ------------------------------------------------------------ layout */

static int d2s_geom(const pv_node *n, const pv_tensor *x, int64_t *b) {
  if (x->ndim != 4) return ERR(PV_ESHAPE, "input rank %d (expected 4)", x->ndim);
  *b = pv_attr_int(n, "blocksize", 0);
  if (*b < 1 || *b > 4096)
    return ERR(PV_EINVAL, "blocksize %lld", (long long)*b);
  bool d2s = !strcmp(n->op, "DepthToSpace");
  if (d2s && x->dims[1] % (*b * *b))
    return ERR(PV_ESHAPE, "channels %lld not divisible by blocksize^2 %lld",
               (long long)x->dims[1], (long long)(*b * *b));
  if (!d2s && (x->dims[2] % *b || x->dims[3] % *b))
    return ERR(PV_ESHAPE, "height %lld / width %lld not divisible by blocksize %lld",
               (long long)x->dims[2], (long long)x->dims[3], (long long)*b);
  if (d2s) {
    const char *m = pv_attr_str(n, "mode", "DCR");
    if (strcmp(m, "DCR") && strcmp(m, "CRD"))
      return ERR(PV_EINVAL, "mode '%s' (DCR or CRD)", m);
  }
  return 0;
}

static int infer_d2s(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t b, d[4];
  int rc = d2s_geom(n, x, &b);
  if (rc) return rc;
  bool d2s = !strcmp(n->op, "DepthToSpace");
  d[0] = x->dims[0];
  if (d2s) {
    if (x->dims[2] > INT64_MAX / b || x->dims[3] > INT64_MAX / b)
      return ERR(PV_ERANGE, "output too large");
    d[1] = x->dims[1] / (b * b), d[2] = x->dims[2] * b, d[3] = x->dims[3] * b;
  } else {
    if (x->dims[1] > INT64_MAX / (b * b)) return ERR(PV_ERANGE, "output too large");
    d[1] = x->dims[1] * b * b, d[2] = x->dims[2] / b, d[3] = x->dims[3] / b;
  }
  set_out(o, x->dtype, 4, d);
  return 0;
}

static int ref_d2s(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t b;
  int rc = d2s_geom(n, x, &b);
  if (rc) return rc;
  bool d2s = !strcmp(n->op, "DepthToSpace"),
       crd = d2s && !strcmp(pv_attr_str(n, "mode", "DCR"), "CRD");
  size_t es = pv_dtype_size(x->dtype);
  /* Walk the deep (channel-blocked) tensor [N, C*b*b, H, W] of either
   * side and map each element to the wide one [N, C, H*b, W*b]. */
  const pv_tensor *deep = d2s ? x : o;
  int64_t N = deep->dims[0], CD = deep->dims[1], H = deep->dims[2],
          W = deep->dims[3], C = CD / (b * b);
  for (int64_t nn = 0; nn < N; nn++)
    for (int64_t cd = 0; cd < CD; cd++) {
      int64_t c, i, j;
      if (crd) c = cd / (b * b), i = cd / b % b, j = cd % b;
      else c = cd % C, i = cd / C / b, j = cd / C % b;
      for (int64_t h = 0; h < H; h++)
        for (int64_t w = 0; w < W; w++) {
          size_t dp = (size_t)(((nn * CD + cd) * H + h) * W + w);
          size_t wp = (size_t)(((nn * C + c) * H * b + h * b + i) * W * b + w * b + j);
          char *dst = (char *)o->data + (d2s ? wp : dp) * es;
          const char *src = (const char *)x->data + (d2s ? dp : wp) * es;
          memcpy(dst, src, es);
        }
    }
  return 0;
}

/* ------------------------------------------------------------ norms */

/* Mean and (biased) variance of n floats, in double, two passes. */
static void mean_var(const float *s, int64_t n, double *mean, double *var) {
  double m = 0, v = 0;
  for (int64_t j = 0; j < n; j++) m += s[j];
  m = n ? m / (double)n : 0;
  for (int64_t j = 0; j < n; j++) v += (s[j] - m) * (s[j] - m);
  *mean = m;
  *var = n ? v / (double)n : 0;
}

static int infer_inorm(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
  for (int k = 1; k <= 2; k++) {
    const pv_tensor *p = IN(k);
    if (!p) return ERR(PV_EINVAL, "missing input %d", k);
    if (p->dtype != PV_F32 || p->ndim != 1 || p->dims[0] != x->dims[1])
      return ERR(PV_ESHAPE, "%s must be FP32 [%lld]", k == 1 ? "scale" : "B",
                 (long long)x->dims[1]);
  }
  set_out(o, x->dtype, x->ndim, x->dims);
  return 0;
}

static int ref_inorm(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  const float *sc = IN(1)->data, *bi = IN(2)->data;
  float eps = pv_attr_float(n, "epsilon", 1e-5f);
  int64_t N = x->dims[0], C = x->dims[1], inner = span(x->dims, 2, x->ndim);
  for (int64_t i = 0; i < N * C; i++) {
    const float *s = (const float *)x->data + i * inner;
    float *z = (float *)o->data + i * inner;
    double m, v;
    mean_var(s, inner, &m, &v);
    double k = sc[i % C] / sqrt(v + eps);
    for (int64_t j = 0; j < inner; j++) z[j] = (float)((s[j] - m) * k + bi[i % C]);
  }
  return 0;
}

/* Scale / B of LayerNormalization broadcast over X's normalized dims. */
static int lnorm_param(const pv_node *n, const pv_tensor *x, int64_t a,
                       const pv_tensor *p, const char *what) {
  pv_tensor norm = {.ndim = x->ndim - (int)a};
  memcpy(norm.dims, x->dims + a, sizeof(int64_t) * norm.ndim);
  if (p->dtype != PV_F32) return ERR(PV_ETYPE, "%s must be FP32", what);
  const pv_tensor *ts[2] = {&norm, p};
  int r;
  int64_t d[PV_MAX_DIMS];
  int rc = pv_broadcast(n, ts, 2, &r, d);
  if (rc) return rc;
  if (r != norm.ndim || memcmp(d, norm.dims, sizeof(int64_t) * r))
    return ERR(PV_ESHAPE, "%s does not broadcast to the normalized dims", what);
  return 0;
}

static int lnorm_geom(const pv_node *n, const pv_tensor *vals, int64_t *a) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 1) return ERR(PV_ESHAPE, "input is a scalar");
  int rc = norm_axis(n, pv_attr_int(n, "axis", -1), x->ndim, a);
  if (rc) return rc;
  if (!IN(1)) return ERR(PV_EINVAL, "missing Scale input");
  if ((rc = lnorm_param(n, x, *a, IN(1), "Scale"))) return rc;
  if (IN(2) && (rc = lnorm_param(n, x, *a, IN(2), "B"))) return rc;
  return 0;
}

static int infer_lnorm(const pv_node *n, pv_tensor *vals) {
  const pv_tensor *x = IN(0);
  int64_t a = 0, d[PV_MAX_DIMS];
  int rc = lnorm_geom(n, vals, &a);
  if (rc) return rc;
  set_out(&vals[n->out[0]], x->dtype, x->ndim, x->dims);
  if (!strcmp(n->op, "RMSNormalization")) {
    if (IN(2)) return ERR(PV_EINVAL, "RMSNormalization takes X and scale only");
    for (int k = 1; k < n->n_out; k++)
      if (n->out[k] >= 0) return ERR(PV_EINVAL, "RMSNormalization has one output");
    return 0;
  }
  memcpy(d, x->dims, sizeof d);
  for (int i = (int)a; i < x->ndim; i++) d[i] = 1;
  for (int k = 1; k < 3 && k < n->n_out; k++)
    if (n->out[k] >= 0) set_out(&vals[n->out[k]], PV_F32, x->ndim, d);
  return 0;
}

static int ref_lnorm(const pv_node *n, pv_tensor *vals) {
  const pv_tensor *x = IN(0), *sc = IN(1), *bi = IN(2);
  int64_t a = 0;
  int rc = lnorm_geom(n, vals, &a);
  if (rc) return rc;
  float eps = pv_attr_float(n, "epsilon", 1e-5f);
  int r = x->ndim - (int)a;
  const int64_t *nd = x->dims + a;
  int64_t outer = span(x->dims, 0, (int)a), inner = span(nd, 0, r);
  int64_t ss[PV_MAX_DIMS], sb[PV_MAX_DIMS];
  bstrides(sc, r, nd, ss);
  if (bi) bstrides(bi, r, nd, sb);
  float *om = n->n_out > 1 && n->out[1] >= 0 ? vals[n->out[1]].data : NULL;
  float *oi = n->n_out > 2 && n->out[2] >= 0 ? vals[n->out[2]].data : NULL;
  /* RMSNormalization (23): no centring, the mean square for the variance */
  const bool rms = !strcmp(n->op, "RMSNormalization");
  for (int64_t p = 0; p < outer; p++) {
    const float *s = (const float *)x->data + p * inner;
    float *z = (float *)vals[n->out[0]].data + p * inner;
    double m, v;
    if (rms) {
      m = v = 0;
      for (int64_t j = 0; j < inner; j++) v += (double)s[j] * s[j];
      if (inner) v /= (double)inner;
    } else {
      mean_var(s, inner, &m, &v);
    }
    double is = 1.0 / sqrt(v + eps);
    if (om) om[p] = (float)m;
    if (oi) oi[p] = (float)is;
    if (!inner) continue;
    int64_t idx[PV_MAX_DIMS] = {0}, os = 0, ob = 0, idx2[PV_MAX_DIMS] = {0};
    int64_t j = 0;
    do {
      float bv = bi ? ((const float *)bi->data)[ob] : 0.f;
      z[j] = (float)((s[j] - m) * is * ((const float *)sc->data)[os] + bv);
      j++;
      if (bi) (void)odo_next(r, nd, idx2, sb, &ob);
    } while (odo_next(r, nd, idx, ss, &os));
  }
  return 0;
}

/* ------------------------------------------------------------ Attention */

/* Attention (opset 23): softmax(Q K^T * scale [softcap] + mask) V per head,
 * as onnx/reference's op_attention.py computes it: 3-D inputs [B, S,
 * heads * head_size] (q_num_heads / kv_num_heads attributes) or 4-D [B,
 * heads, S, head_size]; grouped queries (query head h reads key/value head
 * h / (Hq / Hkv)); past_key / past_value concatenated before K and V, with
 * present_key / present_value out; a bool mask (true = attend) or a float
 * mask added, broadcast to [B, Hq, Sq, T] and padded (masked) up to the
 * total length T when shorter; is_causal aligned to the bottom right (query
 * i sees key j <= i + past length); softcap before the mask. Refused by
 * name: opset 24's nonpad_kv_seqlen and the qk_matmul_output debugging
 * output (its modes differ between the spec's revisions). */
typedef struct attn_geom {
  int rank;
  int64_t B, Hq, Hkv, Sq, Skv, Sp, D, Dv;
  int64_t mstride[4], mlast; /* mask strides over [B, Hq, Sq, T]; its last dim */
} attn_geom;

static int attn_geometry(const pv_node *n, const pv_tensor *vals, attn_geom *a) {
  const pv_tensor *q = IN(0), *k = IN(1), *v = IN(2), *m = IN(3), *pk = IN(4), *pvv = IN(5);
  memset(a, 0, sizeof *a);
  if (!k || !v) return ERR(PV_EINVAL, "Q, K and V are required");
  if (k->dtype != PV_F32 || v->dtype != PV_F32)
    return ERR(PV_ETYPE, "Q, K and V must be FP32");
  if (q->ndim != k->ndim || q->ndim != v->ndim || (q->ndim != 3 && q->ndim != 4))
    return ERR(PV_ESHAPE, "Q, K and V must all be 3-D or all 4-D (ranks %d, %d, %d)",
               q->ndim, k->ndim, v->ndim);
  if (IN(6)) return ERR(PV_EUNSUPPORTED, "input nonpad_kv_seqlen (opset 24) is not supported");
  if (n->n_out > 3 && n->out[3] >= 0)
    return ERR(PV_EUNSUPPORTED, "output qk_matmul_output is not supported");
  a->rank = q->ndim;
  a->B = q->dims[0];
  if (k->dims[0] != a->B || v->dims[0] != a->B)
    return ERR(PV_ESHAPE, "Q, K and V differ in batch size");
  int64_t qh = pv_attr_int(n, "q_num_heads", 0), kvh = pv_attr_int(n, "kv_num_heads", 0);
  if (a->rank == 3) {
    if (qh <= 0 || kvh <= 0)
      return ERR(PV_EINVAL, "3-D inputs need q_num_heads and kv_num_heads");
    if (q->dims[2] % qh || k->dims[2] % kvh || v->dims[2] % kvh)
      return ERR(PV_ESHAPE, "hidden sizes %lld / %lld / %lld do not split into %lld / %lld heads",
                 (long long)q->dims[2], (long long)k->dims[2], (long long)v->dims[2],
                 (long long)qh, (long long)kvh);
    a->Hq = qh, a->Hkv = kvh;
    a->Sq = q->dims[1], a->Skv = k->dims[1];
    a->D = q->dims[2] / qh, a->Dv = v->dims[2] / kvh;
    if (k->dims[2] / kvh != a->D) return ERR(PV_ESHAPE, "Q and K head sizes differ");
    if (v->dims[1] != a->Skv) return ERR(PV_ESHAPE, "K and V sequence lengths differ");
  } else {
    a->Hq = q->dims[1], a->Hkv = k->dims[1];
    a->Sq = q->dims[2], a->Skv = k->dims[2];
    a->D = q->dims[3], a->Dv = v->dims[3];
    if ((qh && qh != a->Hq) || (kvh && kvh != a->Hkv))
      return ERR(PV_ESHAPE, "q_num_heads / kv_num_heads disagree with the inputs' head axes");
    if (k->dims[3] != a->D) return ERR(PV_ESHAPE, "Q and K head sizes differ");
    if (v->dims[1] != a->Hkv || v->dims[2] != a->Skv)
      return ERR(PV_ESHAPE, "K and V differ in heads or sequence length");
  }
  if (a->Hkv <= 0 || a->Hq % a->Hkv)
    return ERR(PV_ESHAPE, "%lld query heads are not a multiple of %lld key/value heads",
               (long long)a->Hq, (long long)a->Hkv);
  if (!pk != !pvv) return ERR(PV_EINVAL, "past_key and past_value go together");
  if (pk) {
    if (pk->dtype != PV_F32 || pvv->dtype != PV_F32)
      return ERR(PV_ETYPE, "past_key and past_value must be FP32");
    if (pk->ndim != 4 || pvv->ndim != 4 || pk->dims[0] != a->B || pk->dims[1] != a->Hkv ||
        pk->dims[3] != a->D || pvv->dims[0] != a->B || pvv->dims[1] != a->Hkv ||
        pvv->dims[2] != pk->dims[2] || pvv->dims[3] != a->Dv)
      return ERR(PV_ESHAPE, "past_key / past_value must be [B, kv_num_heads, past, head_size]");
    a->Sp = pk->dims[2];
  }
  if (m) {
    if (m->dtype != PV_F32 && m->dtype != PV_BOOL)
      return ERR(PV_ETYPE, "attn_mask must be BOOL or FP32");
    if (m->ndim < 1 || m->ndim > 4) return ERR(PV_ESHAPE, "attn_mask rank %d", m->ndim);
    const int64_t full[4] = {a->B, a->Hq, a->Sq, a->Sp + a->Skv};
    int64_t st = 1;
    for (int i = 3; i >= 0; i--) {
      int j = i - (4 - m->ndim); /* the mask's axis, right-aligned */
      int64_t d = j >= 0 ? m->dims[j] : 1;
      bool ok = i == 3 ? d <= full[3] : (d == 1 || d == full[i]);
      if (!ok)
        return ERR(PV_ESHAPE, "attn_mask axis %d is %lld; it must broadcast to %lld", j,
                   (long long)d, (long long)full[i]);
      a->mstride[i] = d == 1 && i < 3 ? 0 : st;
      st *= d;
    }
    a->mlast = m->dims[m->ndim - 1];
  }
  return 0;
}

static int infer_attn(const pv_node *n, pv_tensor *vals) {
  attn_geom a;
  int rc = attn_geometry(n, vals, &a);
  if (rc) return rc;
  int64_t y3[3] = {a.B, a.Sq, a.Hq * a.Dv}, y4[4] = {a.B, a.Hq, a.Sq, a.Dv};
  set_out(&vals[n->out[0]], PV_F32, a.rank, a.rank == 3 ? y3 : y4);
  int64_t pk[4] = {a.B, a.Hkv, a.Sp + a.Skv, a.D}, pv[4] = {a.B, a.Hkv, a.Sp + a.Skv, a.Dv};
  if (n->n_out > 1 && n->out[1] >= 0) set_out(&vals[n->out[1]], PV_F32, 4, pk);
  if (n->n_out > 2 && n->out[2] >= 0) set_out(&vals[n->out[2]], PV_F32, 4, pv);
  return 0;
}

/* Element (b, head, position t, i) of a 3-D or 4-D Q/K/V tensor. */
static inline float attn_at(const float *x, const attn_geom *a, int64_t H, int64_t S,
                            int64_t D, int64_t b, int64_t h, int64_t t, int64_t i) {
  return a->rank == 4 ? x[((b * H + h) * S + t) * D + i] : x[(b * S + t) * H * D + h * D + i];
}

/* One key/value head's T rows of D, past first: rows t < Sp from past
 * ([B, Hkv, Sp, D]), the rest from the current 3-D or 4-D K or V. */
static void attn_rows(float *dst, const float *past, const float *cur, attn_geom a,
                      int64_t D, int64_t b, int64_t g) {
  /* `a` by value: its address must not escape ref_attn, or the compiler
   * reloads its fields in the score loops (measured 1.5x slower) */
  for (int64_t t = 0; t < a.Sp + a.Skv; t++)
    for (int64_t i = 0; i < D; i++)
      dst[t * D + i] = t < a.Sp ? past[((b * a.Hkv + g) * a.Sp + t) * D + i]
                                : attn_at(cur, &a, a.Hkv, a.Skv, D, b, g, t - a.Sp, i);
}

static int ref_attn(const pv_node *n, pv_tensor *vals) {
  attn_geom a;
  int rc = attn_geometry(n, vals, &a);
  if (rc) return rc;
  const float *q = IN(0)->data, *k = IN(1)->data, *v = IN(2)->data;
  const pv_tensor *m = IN(3);
  const float *pk = IN(4) ? IN(4)->data : NULL, *pvv = IN(5) ? IN(5)->data : NULL;
  float *y = vals[n->out[0]].data;
  const int64_t T = a.Sp + a.Skv, rep = a.Hq / a.Hkv;
  const bool causal = pv_attr_int(n, "is_causal", 0) != 0;
  const float softcap = pv_attr_float(n, "softcap", 0.f);
  const double scale = pv_node_attr(n, "scale") ? pv_attr_float(n, "scale", 1.f)
                                                 : 1.0 / sqrt((double)a.D);
  /* Per key/value head, its keys and values (past first) as T contiguous
   * rows, so the dot products and the weighted sum run down unit-stride
   * memory (8 partial sums the compiler turns into vector lanes). These
   * rows are present_key / present_value's [B, Hkv, T, D] blocks: where
   * those outputs are asked for, the rows are written there and read back;
   * otherwise into scratch. */
  float *present[2] = {n->n_out > 1 && n->out[1] >= 0 ? vals[n->out[1]].data : NULL,
                       n->n_out > 2 && n->out[2] >= 0 ? vals[n->out[2]].data : NULL};
  size_t tk = (size_t)(T > 0 ? T : 1);
  double *p = malloc(sizeof(double) * tk);
  float *ks = present[0] ? NULL : malloc(sizeof(float) * tk * (size_t)(a.D > 0 ? a.D : 1));
  float *vs = present[1] ? NULL : malloc(sizeof(float) * tk * (size_t)(a.Dv > 0 ? a.Dv : 1));
  float *restrict qr = malloc(sizeof(float) * (size_t)(a.D > 0 ? a.D : 1));
  float *restrict acc = malloc(sizeof(float) * (size_t)(a.Dv > 0 ? a.Dv : 1));
  if (!p || (!present[0] && !ks) || (!present[1] && !vs) || !qr || !acc) {
    free(p), free(ks), free(vs), free(qr), free(acc);
    return ERR(PV_ENOMEM, "out of memory");
  }
  for (int64_t b = 0; b < a.B; b++)
    for (int64_t g = 0; g < a.Hkv; g++) {
      int64_t head = b * a.Hkv + g;
      float *kc = present[0] ? present[0] + head * T * a.D : ks;
      float *vc = present[1] ? present[1] + head * T * a.Dv : vs;
      attn_rows(kc, pk, k, a, a.D, b, g);
      attn_rows(vc, pvv, v, a, a.Dv, b, g);
      for (int64_t h = g * rep; h < (g + 1) * rep; h++)
        for (int64_t s = 0; s < a.Sq; s++) {
          for (int64_t i = 0; i < a.D; i++) qr[i] = attn_at(q, &a, a.Hq, a.Sq, a.D, b, h, s, i);
          double mx = -INFINITY;
          for (int64_t t = 0; t < T; t++) {
            const float *restrict kr = kc + t * a.D;
            float part[8] = {0};
            int64_t i = 0;
            for (; i + 8 <= a.D; i += 8)
              for (int l = 0; l < 8; l++) part[l] += qr[i + l] * kr[i + l];
            double x = 0;
            for (; i < a.D; i++) x += (double)qr[i] * kr[i];
            for (int l = 0; l < 8; l++) x += part[l];
            x *= scale;
            if (softcap > 0) x = softcap * tanh(x / softcap);
            if (m) {
              if (t >= a.mlast) {
                x = -INFINITY;
              } else {
                int64_t o = b * a.mstride[0] + h * a.mstride[1] + s * a.mstride[2] + t * a.mstride[3];
                if (m->dtype == PV_BOOL) {
                  if (!((const uint8_t *)m->data)[o]) x = -INFINITY;
                } else {
                  x += ((const float *)m->data)[o];
                }
              }
            }
            if (causal && t > s + a.Sp) x = -INFINITY;
            p[t] = x;
            if (x > mx) mx = x;
          }
          double sum = 0;
          for (int64_t t = 0; t < T; t++) sum += p[t] = exp(p[t] - mx);
          for (int64_t i = 0; i < a.Dv; i++) acc[i] = 0;
          for (int64_t t = 0; t < T; t++) {
            const float w = (float)(p[t] / sum), *restrict vr = vc + t * a.Dv;
            for (int64_t i = 0; i < a.Dv; i++) acc[i] += w * vr[i];
          }
          float *yo = y + (a.rank == 4 ? ((b * a.Hq + h) * a.Sq + s) * a.Dv
                                       : (b * a.Sq + s) * a.Hq * a.Dv + h * a.Dv);
          memcpy(yo, acc, sizeof(float) * (size_t)a.Dv);
        }
    }
  free(p), free(ks), free(vs), free(qr), free(acc);
  return 0;
}

/* ------------------------------------------------------------ RotaryEmbedding */

/* RotaryEmbedding (opset 23), as onnx/reference computes it: X 4-D [B, H,
 * S, D] or 3-D [B, S, H * D] (num_heads); the first R = rotary_embedding_dim
 * (0: D) features of each head turn by the cached angles, as halves
 * (x_i, x_{i + R/2}) or, interleaved, pairs (x_2i, x_2i+1); cos / sin
 * [B, S, R/2], or [max_position, R/2] read at position_ids [B, S]. */
typedef struct rope_geom {
  int64_t B, H, S, D, R;
} rope_geom;

static int rope_geometry(const pv_node *n, const pv_tensor *vals, rope_geom *r) {
  const pv_tensor *x = IN(0), *c = IN(1), *sn = IN(2), *pid = IN(3);
  if (!c || !sn) return ERR(PV_EINVAL, "cos_cache and sin_cache are required");
  if (c->dtype != PV_F32 || sn->dtype != PV_F32)
    return ERR(PV_ETYPE, "cos_cache and sin_cache must be FP32");
  int64_t nh = pv_attr_int(n, "num_heads", 0);
  r->B = x->dims[0];
  if (x->ndim == 4) {
    r->H = x->dims[1], r->S = x->dims[2], r->D = x->dims[3];
  } else if (x->ndim == 3) {
    if (nh <= 0 || x->dims[2] % nh)
      return ERR(PV_EINVAL, "3-D input of width %lld needs num_heads dividing it",
                 (long long)x->dims[2]);
    r->H = nh, r->S = x->dims[1], r->D = x->dims[2] / nh;
  } else {
    return ERR(PV_ESHAPE, "input must be 3-D or 4-D, not %d-D", x->ndim);
  }
  r->R = pv_attr_int(n, "rotary_embedding_dim", 0);
  if (r->R == 0) r->R = r->D;
  if (r->R < 0 || r->R > r->D || r->R % 2)
    return ERR(PV_EINVAL, "rotary_embedding_dim %lld must be even and at most the head size %lld",
               (long long)r->R, (long long)r->D);
  int64_t h2 = r->R / 2;
  bool same = c->ndim == sn->ndim && !memcmp(c->dims, sn->dims, sizeof(int64_t) * c->ndim);
  if (!same) return ERR(PV_ESHAPE, "cos_cache and sin_cache differ in shape");
  if (pid) {
    if (!is_int(pid->dtype)) return ERR(PV_ETYPE, "position_ids must be INT64");
    if (pid->ndim != 2 || pid->dims[0] != r->B || pid->dims[1] != r->S)
      return ERR(PV_ESHAPE, "position_ids must be [batch, sequence] = [%lld, %lld]",
                 (long long)r->B, (long long)r->S);
    if (c->ndim != 2 || c->dims[1] != h2)
      return ERR(PV_ESHAPE, "with position_ids the caches must be [max_position, %lld]",
                 (long long)h2);
  } else if (c->ndim != 3 || c->dims[0] != r->B || c->dims[1] != r->S || c->dims[2] != h2) {
    return ERR(PV_ESHAPE, "without position_ids the caches must be [%lld, %lld, %lld]",
               (long long)r->B, (long long)r->S, (long long)h2);
  }
  return 0;
}

static int ref_rope(const pv_node *n, pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *pid = IN(3);
  rope_geom r;
  int rc = rope_geometry(n, vals, &r);
  if (rc) return rc;
  const float *xs = x->data, *cs = IN(1)->data, *ss = IN(2)->data;
  float *y = o->data;
  const bool il = pv_attr_int(n, "interleaved", 0) != 0, four = x->ndim == 4;
  const int64_t h2 = r.R / 2, maxp = pid ? IN(1)->dims[0] : 0;
  for (int64_t b = 0; b < r.B; b++)
    for (int64_t s = 0; s < r.S; s++) {
      int64_t row = b * r.S + s;
      if (pid) {
        row = pid->dtype == PV_I64 ? ((const int64_t *)pid->data)[b * r.S + s]
                                   : ((const int32_t *)pid->data)[b * r.S + s];
        if (row < 0 || row >= maxp)
          return ERR(PV_ERANGE, "position_ids[%lld][%lld] = %lld is outside the caches' %lld rows",
                     (long long)b, (long long)s, (long long)row, (long long)maxp);
      }
      const float *c = cs + row * h2, *sn = ss + row * h2;
      for (int64_t h = 0; h < r.H; h++) {
        int64_t base = four ? ((b * r.H + h) * r.S + s) * r.D : (b * r.S + s) * r.H * r.D + h * r.D;
        const float *xi = xs + base;
        float *yo = y + base;
        for (int64_t i = 0; i < h2; i++) {
          int64_t i1 = il ? 2 * i : i, i2 = il ? 2 * i + 1 : i + h2;
          float x1 = xi[i1], x2 = xi[i2];
          yo[i1] = c[i] * x1 - sn[i] * x2;
          yo[i2] = sn[i] * x1 + c[i] * x2;
        }
        for (int64_t i = r.R; i < r.D; i++) yo[i] = xi[i];
      }
    }
  return 0;
}

/* ------------------------------------------------------------ ConvTranspose */

typedef struct ct_geom {
  int nsp;
  int64_t groups;
  int64_t k[3], s[3], d[3], pb[3], pe[3], in[3], out[3];
} ct_geom;

static int ct_geometry(const pv_node *n, const pv_tensor *vals, ct_geom *c) {
  const pv_tensor *x = IN(0), *w = IN(1), *b = IN(2);
  if (!w) return ERR(PV_EINVAL, "missing weight input");
  if (x->dtype != PV_F32 || w->dtype != PV_F32 || (b && b->dtype != PV_F32))
    return ERR(PV_ETYPE, "X, W and B must be FP32");
  int nsp = x->ndim - 2;
  if (nsp < 1 || nsp > 3)
    return ERR(PV_EUNSUPPORTED, "input rank %d (1-D, 2-D and 3-D only)", x->ndim);
  if (w->ndim != x->ndim)
    return ERR(PV_ESHAPE, "weight rank %d does not match input rank %d", w->ndim,
               x->ndim);
  c->nsp = nsp;
  c->groups = pv_attr_int(n, "group", 1);
  if (c->groups < 1 || x->dims[1] % c->groups || w->dims[0] != x->dims[1])
    return ERR(PV_ESHAPE, "input channels %lld, weight [%lld, ...], group %lld",
               (long long)x->dims[1], (long long)w->dims[0], (long long)c->groups);
  if (w->dims[1] > INT64_MAX / c->groups) return ERR(PV_ERANGE, "too many channels");
  int64_t M = w->dims[1] * c->groups;
  if (b && (b->ndim != 1 || b->dims[0] != M))
    return ERR(PV_ESHAPE, "bias must have %lld elements", (long long)M);
  const int64_t *ks, *ss, *ds, *ps, *op, *os;
  int nk = pv_attr_ints(n, "kernel_shape", &ks), ns = pv_attr_ints(n, "strides", &ss),
      nd = pv_attr_ints(n, "dilations", &ds), np = pv_attr_ints(n, "pads", &ps),
      nop = pv_attr_ints(n, "output_padding", &op),
      nos = pv_attr_ints(n, "output_shape", &os);
  if ((nk >= 0 && nk != nsp) || (ns >= 0 && ns != nsp) || (nd >= 0 && nd != nsp) ||
      (np >= 0 && np != 2 * nsp) || (nop >= 0 && nop != nsp) ||
      (nos >= 0 && nos != nsp && nos != nsp + 2))
    return ERR(PV_EINVAL, "kernel_shape/strides/dilations/pads/output_padding/"
               "output_shape length does not match %d spatial axes", nsp);
  const char *ap = pv_attr_str(n, "auto_pad", "NOTSET");
  bool same = !strcmp(ap, "SAME_UPPER") || !strcmp(ap, "SAME_LOWER"),
       upper = !strcmp(ap, "SAME_UPPER");
  if (!same && strcmp(ap, "VALID") && strcmp(ap, "NOTSET"))
    return ERR(PV_EINVAL, "unknown auto_pad '%s'", ap);
  const int64_t lim = INT64_C(1) << 24;
  for (int i = 0; i < nsp; i++) {
    int64_t k = w->dims[2 + i], in = x->dims[2 + i];
    if (nk > 0 && ks[i] != k)
      return ERR(PV_ESHAPE, "kernel_shape %lld differs from weight %lld on axis %d",
                 (long long)ks[i], (long long)k, i);
    int64_t s = ns > 0 ? ss[i] : 1, d = nd > 0 ? ds[i] : 1,
            pb = np > 0 ? ps[i] : 0, pe = np > 0 ? ps[nsp + i] : 0,
            opad = nop > 0 ? op[i] : 0;
    if (s < 1 || d < 1 || k < 1 || pb < 0 || pe < 0 || opad < 0 || s > lim ||
        d > lim || k > lim || pb > lim || pe > lim || opad > lim || in > lim)
      return ERR(PV_EINVAL, "bad kernel %lld / stride %lld / dilation %lld / pads "
                 "%lld,%lld / output_padding %lld on axis %d", (long long)k,
                 (long long)s, (long long)d, (long long)pb, (long long)pe,
                 (long long)opad, i);
    int64_t ek = (k - 1) * d + 1, full = s * (in - 1) + opad + ek, out;
    if (nos > 0 || same) {
      out = nos > 0 ? os[nos - nsp + i] : in * s;
      if (out < 1 || out > lim)
        return ERR(PV_EINVAL, "output_shape %lld on axis %d", (long long)out, i);
      int64_t tot = full - out;
      if (tot < 0) tot = 0;
      /* The ONNX rule: SAME_UPPER puts the odd pad at the end. */
      pb = upper ? tot / 2 : tot - tot / 2;
      pe = tot - pb;
    } else {
      if (!strcmp(ap, "VALID")) pb = pe = 0;
      out = full - pb - pe;
      if (out < 1 || out > (INT64_C(1) << 31))
        return ERR(PV_ESHAPE, "output size %lld on spatial axis %d", (long long)out, i);
    }
    c->k[i] = k, c->s[i] = s, c->d[i] = d, c->pb[i] = pb, c->pe[i] = pe;
    c->in[i] = in, c->out[i] = out;
  }
  return 0;
}

static int infer_convt(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *w = IN(1);
  ct_geom c;
  int rc = ct_geometry(n, vals, &c);
  if (rc) return rc;
  int64_t d[PV_MAX_DIMS] = {x->dims[0], w->dims[1] * c.groups};
  for (int i = 0; i < c.nsp; i++) d[2 + i] = c.out[i];
  set_out(o, PV_F32, x->ndim, d);
  if (pv_tensor_numel(o) < 0) return ERR(PV_ERANGE, "output too large");
  return 0;
}

static int ref_convt(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *wt = IN(1), *bt = IN(2);
  ct_geom c;
  int rc = ct_geometry(n, vals, &c);
  if (rc) return rc;
  /* 1-D and 2-D run as 3-D with unit depth (and height). */
  int64_t v[6][3];
  for (int ax = 0; ax < 3; ax++) {
    int i = ax - (3 - c.nsp);
    bool on = i >= 0;
    v[0][ax] = on ? c.in[i] : 1;
    v[1][ax] = on ? c.out[i] : 1;
    v[2][ax] = on ? c.k[i] : 1;
    v[3][ax] = on ? c.s[i] : 1;
    v[4][ax] = on ? c.d[i] : 1;
    v[5][ax] = on ? c.pb[i] : 0;
  }
  const int64_t id = v[0][0], ih = v[0][1], iw = v[0][2], od = v[1][0],
                oh = v[1][1], ow = v[1][2], kd = v[2][0], kh = v[2][1],
                kw = v[2][2], sd = v[3][0], sh = v[3][1], sw = v[3][2],
                dd = v[4][0], dh = v[4][1], dw = v[4][2], pd = v[5][0],
                ph = v[5][1], pw = v[5][2];
  int64_t N = x->dims[0], C = x->dims[1], G = c.groups, Cg = C / G,
          Mg = wt->dims[1], M = Mg * G;
  const int64_t isz = id * ih * iw, osz = od * oh * ow;
  const float *X = x->data, *W = wt->data, *B = bt ? bt->data : NULL;
  float *Y = o->data;
  for (int64_t nn = 0; nn < N; nn++)
    for (int64_t m = 0; m < M; m++) {
      float *y = Y + (nn * M + m) * osz;
      float bv = B ? B[m] : 0.f;
      for (int64_t e = 0; e < osz; e++) y[e] = bv;
      int64_t g = m / Mg, mg = m % Mg;
      for (int64_t cg = 0; cg < Cg; cg++) {
        int64_t ci = g * Cg + cg;
        const float *xc = X + (nn * C + ci) * isz;
        const float *wc = W + (ci * Mg + mg) * kd * kh * kw;
        for (int64_t t = 0; t < kd; t++)
        for (int64_t i = 0; i < kh; i++)
          for (int64_t j = 0; j < kw; j++) {
            float wv = wc[(t * kh + i) * kw + j];
            /* Input columns whose output column lands inside [0, ow). */
            int64_t off = j * dw - pw, lo = 0, hi = iw;
            if (off < 0) lo = (-off + sw - 1) / sw;
            if (ow - 1 - off < 0) continue;
            if ((ow - 1 - off) / sw + 1 < hi) hi = (ow - 1 - off) / sw + 1;
            for (int64_t z = 0; z < id; z++) {
              int64_t q = z * sd - pd + t * dd;
              if (q < 0 || q >= od) continue;
              for (int64_t a = 0; a < ih; a++) {
                int64_t r = a * sh - ph + i * dh;
                if (r < 0 || r >= oh) continue;
                const float *xr = xc + (z * ih + a) * iw;
                float *yr = y + (q * oh + r) * ow;
                for (int64_t b = lo; b < hi; b++) yr[off + b * sw] += wv * xr[b];
              }
            }
          }
      }
    }
  return 0;
}

/* ------------------------------------------------------------ Einsum */

#define EIN_MAX_OPS 8
#define EIN_MAX_LABELS 64

/* A parsed equation: every label (letter, or one axis of the ellipsis)
 * with its size, each operand's element stride per label (a letter
 * repeated in one operand adds its strides: a diagonal), and the output
 * labels in order; the other labels are summed over. */
typedef struct ein {
  int nl, nout, nsum;
  int64_t size[EIN_MAX_LABELS];
  int64_t st[EIN_MAX_OPS][EIN_MAX_LABELS];
  int out[PV_MAX_DIMS], sum[EIN_MAX_LABELS];
} ein;

static int ein_parse(const pv_node *n, const pv_tensor *vals, ein *e) {
  const char *eq = pv_attr_str(n, "equation", NULL);
  if (!eq) return ERR(PV_EINVAL, "missing attribute 'equation'");
  int nops = n->n_in;
  if (nops < 1 || nops > EIN_MAX_OPS)
    return ERR(PV_EUNSUPPORTED, "%d operands (1 to %d)", nops, EIN_MAX_OPS);
  char buf[256];
  size_t bl = 0;
  for (const char *c = eq; *c; c++)
    if (*c != ' ') {
      if (bl + 1 >= sizeof buf) return ERR(PV_EINVAL, "equation too long");
      buf[bl++] = *c;
    }
  buf[bl] = 0;
  char *arrow = strstr(buf, "->");
  if (arrow) *arrow = 0;
  /* Letter ids: 'a'-'z' 0-25, 'A'-'Z' 26-51; the ellipsis axes from 52,
   * right-aligned across operands as in numpy. */
  int letter_id[52], count[52] = {0}, ell = 0;
  for (int i = 0; i < 52; i++) letter_id[i] = -1;
  memset(e, 0, sizeof *e);
  for (int i = 0; i < EIN_MAX_LABELS; i++) e->size[i] = -1;
  const char *term = buf;
  int ell_rank[EIN_MAX_OPS] = {0};
  for (int k = 0; k < nops; k++) {
    const char *end = strchr(term, ',');
    if ((k < nops - 1) != (end != NULL))
      return ERR(PV_EINVAL, "equation '%s' has %s terms than the %d inputs", eq,
                 end ? "more" : "fewer", nops);
    if (!end) end = term + strlen(term);
    const pv_tensor *t = IN(k);
    if (!t) return ERR(PV_EINVAL, "missing input %d", k);
    if (t->dtype != PV_F32) return ERR(PV_ETYPE, "input %d is not FP32", k);
    int nlet = 0, dots = 0;
    for (const char *c = term; c < end; c++) {
      if (*c == '.') {
        if (c + 2 >= end || c[1] != '.' || c[2] != '.' || dots)
          return ERR(PV_EINVAL, "bad ellipsis in '%s'", eq);
        dots = 1;
        c += 2;
      } else if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')) {
        nlet++;
      } else {
        return ERR(PV_EINVAL, "bad character '%c' in equation '%s'", *c, eq);
      }
    }
    if (nlet > t->ndim || (!dots && nlet != t->ndim))
      return ERR(PV_ESHAPE, "term %d of '%s' has %d letters for rank %d", k, eq,
                 nlet, t->ndim);
    ell_rank[k] = t->ndim - nlet;
    if (ell_rank[k] > ell) ell = ell_rank[k];
    int64_t stride[PV_MAX_DIMS], sz = 1;
    for (int d = t->ndim - 1; d >= 0; d--) stride[d] = sz, sz *= t->dims[d];
    int axis = 0;
    for (const char *c = term; c < end; c++) {
      if (*c == '.') {
        /* ellipsis axes: label 52 + position counted from the right */
        for (int j = 0; j < ell_rank[k]; j++, axis++) {
          int lab = 52 + (EIN_MAX_LABELS - 52 - 1) - (ell_rank[k] - 1 - j);
          int64_t d = t->dims[axis];
          if (e->size[lab] < 0 || e->size[lab] == 1) e->size[lab] = d;
          else if (d != 1 && d != e->size[lab])
            return ERR(PV_ESHAPE, "ellipsis dims do not broadcast in '%s'", eq);
          if (d != 1) e->st[k][lab] += stride[axis];
        }
        c += 2;
        continue;
      }
      int li = *c >= 'a' ? *c - 'a' : *c - 'A' + 26;
      count[li]++;
      if (letter_id[li] < 0) letter_id[li] = li;
      int64_t d = t->dims[axis];
      if (e->size[li] >= 0 && e->size[li] != d)
        return ERR(PV_ESHAPE, "label '%c' is %lld and %lld in '%s'", *c,
                   (long long)e->size[li], (long long)d, eq);
      e->size[li] = d;
      e->st[k][li] += stride[axis];
      axis++;
    }
    term = end + 1;
  }
  if (ell > PV_MAX_DIMS) return ERR(PV_ESHAPE, "ellipsis too long");
  /* Output labels: explicit, or the ellipsis then the letters seen once,
   * alphabetically (numpy's implicit mode; capitals sort first). */
  bool is_out[EIN_MAX_LABELS] = {0};
  if (arrow) {
    const char *c = arrow + 2;
    int dots = 0;
    for (; *c; c++) {
      if (*c == '.' && c[1] == '.' && c[2] == '.' && !dots) {
        dots = 1;
        for (int j = 0; j < ell; j++) {
          if (e->nout >= PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
          int lab = EIN_MAX_LABELS - ell + j;
          e->out[e->nout++] = lab;
          is_out[lab] = true;
        }
        c += 2;
        continue;
      }
      int li = *c >= 'a' && *c <= 'z' ? *c - 'a' : *c >= 'A' && *c <= 'Z' ? *c - 'A' + 26 : -1;
      if (li < 0 || letter_id[li] < 0 || is_out[li])
        return ERR(PV_EINVAL, "bad output label '%c' in '%s'", *c, eq);
      if (e->nout >= PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
      e->out[e->nout++] = li;
      is_out[li] = true;
    }
  } else {
    for (int j = 0; j < ell; j++) {
      int lab = EIN_MAX_LABELS - ell + j;
      e->out[e->nout++] = lab;
      is_out[lab] = true;
    }
    static const int order[52] = {26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38,
                                  39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51,
                                  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                  13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25};
    for (int j = 0; j < 52; j++) {
      int li = order[j];
      if (count[li] != 1) continue;
      if (e->nout >= PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
      e->out[e->nout++] = li;
      is_out[li] = true;
    }
  }
  for (int l = 0; l < EIN_MAX_LABELS; l++)
    if (e->size[l] >= 0 && !is_out[l]) e->sum[e->nsum++] = l;
  return 0;
}

static int infer_einsum(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  ein e;
  int rc = ein_parse(n, vals, &e);
  if (rc) return rc;
  int64_t d[PV_MAX_DIMS];
  for (int i = 0; i < e.nout; i++) d[i] = e.size[e.out[i]];
  set_out(o, PV_F32, e.nout, d);
  return 0;
}

static int ref_einsum(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  ein e;
  int rc = ein_parse(n, vals, &e);
  if (rc) return rc;
  int nops = n->n_in;
  size_t cnt = numel(o);
  int64_t inner = 1;
  for (int j = 0; j < e.nsum; j++) {
    if (e.size[e.sum[j]] == 0) inner = 0;
    else if (inner > INT64_MAX / e.size[e.sum[j]]) return ERR(PV_ERANGE, "too much work");
    else inner *= e.size[e.sum[j]];
  }
  const float *src[EIN_MAX_OPS];
  for (int k = 0; k < nops; k++) src[k] = IN(k)->data;
  int64_t oi[PV_MAX_DIMS] = {0};
  for (size_t el = 0; el < cnt; el++) {
    int64_t base[EIN_MAX_OPS] = {0};
    for (int k = 0; k < nops; k++)
      for (int i = 0; i < e.nout; i++) base[k] += oi[i] * e.st[k][e.out[i]];
    double acc = 0;
    int64_t si[EIN_MAX_LABELS] = {0}, off[EIN_MAX_OPS];
    memcpy(off, base, sizeof off);
    for (int64_t it = 0; it < inner; it++) {
      double p = 1;
      for (int k = 0; k < nops; k++) p *= src[k][off[k]];
      acc += p;
      for (int j = e.nsum - 1; j >= 0; j--) {
        int l = e.sum[j];
        si[j]++;
        for (int k = 0; k < nops; k++) off[k] += e.st[k][l];
        if (si[j] < e.size[l]) break;
        for (int k = 0; k < nops; k++) off[k] -= e.st[k][l] * e.size[l];
        si[j] = 0;
      }
    }
    ((float *)o->data)[el] = (float)acc;
    for (int i = e.nout - 1; i >= 0; i--) {
      if (++oi[i] < e.size[e.out[i]]) break;
      oi[i] = 0;
    }
  }
  return 0;
}

/* ------------------------------------------------------------ more ops */

/* LRN across channels (NC...): y = x / (bias + alpha/size * sum x^2)^beta
 * over channels c - floor((size-1)/2) .. c + ceil((size-1)/2). */
static int infer_lrn(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
  int64_t size = pv_attr_int(n, "size", 0);
  if (size < 1) return ERR(PV_EINVAL, "size %lld (must be >= 1)", (long long)size);
  set_out(o, x->dtype, x->ndim, x->dims);
  return 0;
}

static int ref_lrn(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  double alpha = pv_attr_float(n, "alpha", 1e-4f), beta = pv_attr_float(n, "beta", 0.75f);
  double bias = pv_attr_float(n, "bias", 1.f);
  int64_t size = pv_attr_int(n, "size", 1), lo = (size - 1) / 2, hi = size - 1 - lo;
  int64_t N = x->dims[0], C = x->dims[1], inner = span(x->dims, 2, x->ndim);
  const float *s = x->data;
  float *z = o->data;
  for (int64_t b = 0; b < N; b++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t j = 0; j < inner; j++) {
        double acc = 0;
        int64_t k0 = c > lo ? c - lo : 0, k1 = hi < C - c ? c + hi : C - 1;
        for (int64_t k = k0; k <= k1; k++) {
          double v = s[(b * C + k) * inner + j];
          acc += v * v;
        }
        int64_t at = (b * C + c) * inner + j;
        z[at] = (float)(s[at] / pow(bias + alpha / (double)size * acc, beta));
      }
  return 0;
}

/* Trilu: keep the upper (j - i >= k) or lower (j - i <= k) triangle of
 * each matrix of the last two axes; k from the optional second input. */
static int trilu_k(const pv_node *n, const pv_tensor *vals, int64_t *k) {
  *k = 0;
  const pv_tensor *t = IN(1);
  if (!t || !numel(t)) return 0;
  if (!is_int(t->dtype) || numel(t) != 1) return ERR(PV_ETYPE, "k must be one INT64 value");
  if (!t->data) return ERR(PV_EUNSUPPORTED, "k not known before execution");
  *k = geti(t, 0);
  return 0;
}

static int infer_trilu(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 2) return ERR(PV_ESHAPE, "input rank %d < 2", x->ndim);
  const pv_tensor *t = IN(1);
  if (t && numel(t) && (!is_int(t->dtype) || numel(t) != 1))
    return ERR(PV_ETYPE, "k must be one INT64 value");
  set_out(o, x->dtype, x->ndim, x->dims);
  return 0;
}

static int ref_trilu(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t k = 0;
  int rc = trilu_k(n, vals, &k);
  if (rc) return rc;
  bool upper = pv_attr_int(n, "upper", 1) != 0;
  int64_t R = x->dims[x->ndim - 2], C = x->dims[x->ndim - 1];
  size_t es = pv_dtype_size(x->dtype), cnt = numel(o);
  for (size_t e = 0; e < cnt; e++) {
    int64_t j = (int64_t)(e % (size_t)C), i = (int64_t)(e / (size_t)C % (size_t)R);
    bool keep = upper ? j - i >= k : j - i <= k;
    if (keep) memcpy((char *)o->data + e * es, (const char *)x->data + e * es, es);
    else memset((char *)o->data + e * es, 0, es);
  }
  return 0;
}

/* GatherND with batch_dims b: out = indices.shape[:-1] +
 * data.shape[b + q:] where q = indices.shape[-1]. */
static int infer_gather_nd(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1);
  if (!ix) return ERR(PV_EINVAL, "missing indices");
  if (ix->dtype != PV_I64) return ERR(PV_ETYPE, "indices must be INT64");
  int64_t b = pv_attr_int(n, "batch_dims", 0);
  if (ix->ndim < 1 || x->ndim < 1) return ERR(PV_ESHAPE, "data and indices need rank >= 1");
  if (b < 0 || b >= ix->ndim || b >= x->ndim)
    return ERR(PV_EINVAL, "batch_dims %lld out of range", (long long)b);
  int64_t q = ix->dims[ix->ndim - 1];
  if (q < 1 || b + q > x->ndim)
    return ERR(PV_ESHAPE, "index tuples of length %lld for data rank %d and batch_dims %lld",
               (long long)q, x->ndim, (long long)b);
  for (int i = 0; i < b; i++)
    if (ix->dims[i] != x->dims[i])
      return ERR(PV_ESHAPE, "batch dim %d differs (%lld vs %lld)", i,
                 (long long)ix->dims[i], (long long)x->dims[i]);
  int64_t d[PV_MAX_DIMS];
  int r = 0;
  for (int i = 0; i < ix->ndim - 1; i++) d[r++] = ix->dims[i];
  for (int i = (int)(b + q); i < x->ndim; i++) {
    if (r >= PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
    d[r++] = x->dims[i];
  }
  set_out(o, x->dtype, r, d);
  return 0;
}

static int ref_gather_nd(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1);
  int b = (int)pv_attr_int(n, "batch_dims", 0);
  int q = (int)ix->dims[ix->ndim - 1], rc;
  int64_t xs[PV_MAX_DIMS], s = 1;
  for (int i = x->ndim - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  int64_t slice = span(x->dims, b + q, x->ndim), per_batch = span(ix->dims, b, ix->ndim - 1);
  int64_t tuples = span(ix->dims, 0, ix->ndim - 1);
  size_t es = pv_dtype_size(x->dtype);
  const int64_t *id = ix->data;
  for (int64_t t = 0; t < tuples; t++) {
    int64_t bi = per_batch ? t / per_batch : 0, off = 0;
    /* the batch index bi spans data's first b axes in row-major order */
    off = bi * (b ? xs[b - 1] : 0);
    for (int i = 0; i < q; i++) {
      int64_t j = 0;
      if ((rc = fix_index(n, id[t * q + i], x->dims[b + i], &j))) return rc;
      off += j * xs[b + i];
    }
    if (slice)
      memcpy((char *)o->data + (size_t)(t * slice) * es,
             (const char *)x->data + (size_t)off * es, (size_t)slice * es);
  }
  return 0;
}

/* ScatterElements: out = data, then out[idx with axis replaced by
 * indices[e]] (op)= updates[e]; reductions none/add/mul/max/min. */
static int infer_scatter_el(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1), *up = IN(2);
  if (!ix || !up) return ERR(PV_EINVAL, "needs data, indices and updates");
  if (!is_int(ix->dtype)) return ERR(PV_ETYPE, "indices must be INT64 or INT32");
  if (up->dtype != x->dtype) return ERR(PV_ETYPE, "updates type differs from data");
  if (ix->ndim != x->ndim || up->ndim != x->ndim || x->ndim < 1)
    return ERR(PV_ESHAPE, "data, indices and updates must have the same rank");
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a);
  if (rc) return rc;
  for (int i = 0; i < x->ndim; i++) {
    if (ix->dims[i] != up->dims[i])
      return ERR(PV_ESHAPE, "indices and updates differ on axis %d", i);
    if (i != a && ix->dims[i] > x->dims[i])
      return ERR(PV_ESHAPE, "indices dim %lld exceeds data dim %lld on axis %d",
                 (long long)ix->dims[i], (long long)x->dims[i], i);
  }
  int red = scatter_reduction(n, x->dtype);
  if (red < 0) return red;
  set_out(o, x->dtype, x->ndim, x->dims);
  return 0;
}

static int ref_scatter_el(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *ix = IN(1), *up = IN(2);
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", 0), x->ndim, &a);
  if (rc) return rc;
  int red = scatter_reduction(n, x->dtype);
  if (red < 0) return red;
  size_t es = pv_dtype_size(x->dtype), nb = pv_tensor_nbytes(x), cnt = numel(ix);
  if (nb) memmove(o->data, x->data, nb);
  int r = x->ndim;
  int64_t xs[PV_MAX_DIMS], s = 1, idx[PV_MAX_DIMS] = {0};
  for (int i = r - 1; i >= 0; i--) {
    xs[i] = s;
    s *= x->dims[i];
  }
  /* The offset of the index's position without the axis term, kept as
   * the position advances (Faster R-CNN scatters 1.9M pooled values:
   * recomputing it per element took 18 ms). */
  int64_t base = 0, da = x->dims[a];
  const int64_t *i64 = ix->dtype == PV_I64 ? ix->data : NULL;
  for (size_t e = 0; e < cnt; e++) {
    int64_t v = i64 ? i64[e] : geti(ix, e), j = 0;
    if ((rc = fix_index(n, v, da, &j))) return rc;
    int64_t off = base + j * xs[a];
    if (red != SR_NONE)
      scatter_combine(o, (size_t)off, up, e, (scatter_red)red);
    else if (es == 4)
      ((uint32_t *)o->data)[off] = ((const uint32_t *)up->data)[e];
    else
      memcpy((char *)o->data + (size_t)off * es, (const char *)up->data + e * es, es);
    for (int i = r - 1; i >= 0; i--) {
      if (i != a) base += xs[i];
      if (++idx[i] < ix->dims[i]) break;
      if (i != a) base -= xs[i] * ix->dims[i];
      idx[i] = 0;
    }
  }
  return 0;
}

/* OneHot: indices [...], depth (scalar), values [off, on]; the output
 * inserts an axis of length depth at `axis`; negative indices count from
 * the end of the depth, out-of-range ones give all-off rows. */
static int onehot_depth(const pv_node *n, const pv_tensor *vals, int64_t *depth) {
  const pv_tensor *d = IN(1);
  if (!d) return ERR(PV_EINVAL, "missing depth");
  if (numel(d) != 1) return ERR(PV_ESHAPE, "depth must be one value");
  if (!d->data) return ERR(PV_EUNSUPPORTED, "depth not known before execution");
  double v = d->dtype == PV_F32 || d->dtype == PV_F64 ? getd(d, 0) : (double)geti(d, 0);
  if (d->dtype == PV_F64) v = ((const double *)d->data)[0];
  if (!(v >= 1) || v > (double)(INT64_C(1) << 31))
    return ERR(PV_EINVAL, "depth %g (must be >= 1)", v);
  *depth = (int64_t)v;
  return 0;
}

static int infer_onehot(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *v = IN(2);
  if (!v) return ERR(PV_EINVAL, "missing values");
  if (numel(v) != 2 || v->ndim != 1) return ERR(PV_ESHAPE, "values must hold [off, on]");
  int64_t depth = 0, a = 0;
  int rc = onehot_depth(n, vals, &depth);
  if (rc) return rc;
  if (x->ndim + 1 > PV_MAX_DIMS) return ERR(PV_ESHAPE, "output rank too large");
  if ((rc = norm_axis(n, pv_attr_int(n, "axis", -1), x->ndim + 1, &a))) return rc;
  int64_t d[PV_MAX_DIMS];
  for (int i = 0, j = 0; i <= x->ndim; i++) d[i] = i == a ? depth : x->dims[j++];
  set_out(o, v->dtype, x->ndim + 1, d);
  return 0;
}

static int ref_onehot(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *v = IN(2);
  int64_t depth = 0, a = 0;
  int rc = onehot_depth(n, vals, &depth);
  if (rc) return rc;
  if ((rc = norm_axis(n, pv_attr_int(n, "axis", -1), x->ndim + 1, &a))) return rc;
  int64_t outer = span(x->dims, 0, (int)a), inner = span(x->dims, (int)a, x->ndim);
  size_t es = pv_dtype_size(v->dtype);
  const char *off = v->data, *on = (const char *)v->data + es;
  for (int64_t p = 0; p < outer; p++)
    for (int64_t dd = 0; dd < depth; dd++)
      for (int64_t q = 0; q < inner; q++) {
        size_t src = (size_t)(p * inner + q);
        double iv = x->dtype == PV_F32 ? floor(getd(x, src)) : (double)geti(x, src);
        if (iv < 0) iv += (double)depth;
        memcpy((char *)o->data + (size_t)((p * depth + dd) * inner + q) * es,
               iv == (double)dd ? on : off, es);
      }
  return 0;
}

/* Hardmax (1 at the first maximum, 0 elsewhere) and LpNormalization
 * (x / ||x||_p) along an axis; Hardmax before opset 13 works on the
 * input flattened to 2-D at `axis`, as Softmax did. */
static int ref_along(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     pv_tensor *o) {
  const pv_tensor *x = IN(0);
  bool hard = !strcmp(n->op, "Hardmax");
  int r = x->ndim ? x->ndim : 1;
  int64_t a = 0;
  int rc = norm_axis(n, pv_attr_int(n, "axis", hard && g->opset < 13 ? 1 : -1), r, &a);
  if (rc) return rc;
  int64_t len, inner;
  if (hard && g->opset < 13) {
    len = span(x->dims, (int)a, x->ndim);
    inner = 1;
  } else {
    len = x->ndim ? x->dims[a] : 1;
    inner = span(x->dims, (int)a + 1, x->ndim);
  }
  int64_t p = pv_attr_int(n, "p", 2);
  if (!hard && p != 1 && p != 2) return ERR(PV_EINVAL, "p %lld (1 or 2)", (long long)p);
  size_t cnt = numel(x);
  int64_t outer = len > 0 && inner > 0 ? (int64_t)cnt / (len * inner) : 0;
  const float *s = x->data;
  float *z = o->data;
  for (int64_t b = 0; b < outer; b++)
    for (int64_t q = 0; q < inner; q++) {
      const float *xs = s + b * len * inner + q;
      float *zs = z + b * len * inner + q;
      if (hard) {
        int64_t best = 0;
        for (int64_t i = 1; i < len; i++)
          if (xs[i * inner] > xs[best * inner]) best = i;
        for (int64_t i = 0; i < len; i++) zs[i * inner] = i == best ? 1.f : 0.f;
        continue;
      }
      double nrm = 0;
      for (int64_t i = 0; i < len; i++)
        nrm += p == 1 ? fabs(xs[i * inner]) : (double)xs[i * inner] * xs[i * inner];
      if (p == 2) nrm = sqrt(nrm);
      for (int64_t i = 0; i < len; i++)
        zs[i * inner] = nrm > 0 ? (float)(xs[i * inner] / nrm) : 0.f;
    }
  return 0;
}

/* MeanVarianceNormalization: (x - mean) / (std + 1e-9) over `axes`
 * (default 0, 2, 3), as the ONNX function body computes it. */
static int ref_mvn(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  const int64_t *ax;
  static const int64_t def[3] = {0, 2, 3};
  int na = pv_attr_ints(n, "axes", &ax), r = x->ndim, rc;
  if (na < 0) {
    ax = def;
    na = 3;
  }
  bool red[PV_MAX_DIMS] = {0};
  for (int i = 0; i < na; i++) {
    int64_t a = 0;
    if ((rc = norm_axis(n, ax[i], r, &a))) return rc;
    red[a] = true;
  }
  /* Group elements by their kept coordinates: key = offset over kept axes. */
  int64_t kst[PV_MAX_DIMS], groups = 1;
  for (int i = r - 1; i >= 0; i--) {
    kst[i] = red[i] ? 0 : groups;
    if (!red[i]) groups *= x->dims[i];
  }
  size_t cnt = numel(x);
  double *sum = calloc((size_t)(groups ? groups : 1) * 3, sizeof(double));
  if (!sum) return ERR(PV_ENOMEM, "out of memory");
  double *sq = sum + groups, *num = sq + groups;
  int64_t idx[PV_MAX_DIMS] = {0};
  const float *s = x->data;
  for (int pass = 0; pass < 2; pass++) {
    memset(idx, 0, sizeof idx);
    for (size_t e = 0; e < cnt; e++) {
      int64_t key = 0;
      for (int i = 0; i < r; i++) key += idx[i] * kst[i];
      if (pass == 0) {
        sum[key] += s[e];
        sq[key] += (double)s[e] * s[e];
        num[key] += 1;
      } else {
        double m = sum[key] / num[key], v = sq[key] / num[key] - m * m;
        ((float *)o->data)[e] = (float)((s[e] - m) / (sqrt(v > 0 ? v : 0) + 1e-9));
      }
      for (int i = r - 1; i >= 0; i--) {
        if (++idx[i] < x->dims[i]) break;
        idx[i] = 0;
      }
    }
  }
  free(sum);
  return 0;
}

/* GroupNormalization: statistics over each group of C / num_groups
 * channels and the spatial axes; scale and bias per group before opset 21
 * and per channel from 21. */
static int infer_gnorm(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                       pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
  int64_t G = pv_attr_int(n, "num_groups", 0), C = x->dims[1];
  if (G < 1 || G > C || C % G) return ERR(PV_EINVAL, "num_groups %lld does not divide %lld channels",
                                 (long long)G, (long long)C);
  int64_t want = g->opset >= 21 ? C : G;
  for (int k = 1; k <= 2; k++) {
    const pv_tensor *p = IN(k);
    if (!p) return ERR(PV_EINVAL, "missing input %d", k);
    if (p->dtype != PV_F32 || p->ndim != 1 || p->dims[0] != want)
      return ERR(PV_ESHAPE, "%s must be FP32 [%lld] (%s at opset %d)", k == 1 ? "scale" : "bias",
                 (long long)want, g->opset >= 21 ? "per channel" : "per group", g->opset);
  }
  set_out(o, x->dtype, x->ndim, x->dims);
  return 0;
}

static int ref_gnorm(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     pv_tensor *o) {
  const pv_tensor *x = IN(0);
  const float *sc = IN(1)->data, *bi = IN(2)->data;
  float eps = pv_attr_float(n, "epsilon", 1e-5f);
  int64_t N = x->dims[0], C = x->dims[1], G = pv_attr_int(n, "num_groups", 1);
  int64_t cg = C / G, inner = span(x->dims, 2, x->ndim), len = cg * inner;
  bool per_ch = g->opset >= 21;
  for (int64_t i = 0; i < N * G; i++) {
    const float *s = (const float *)x->data + i * len;
    float *z = (float *)o->data + i * len;
    double m, v;
    mean_var(s, len, &m, &v);
    double inv = 1 / sqrt(v + eps);
    for (int64_t j = 0; j < len; j++) {
      int64_t c = (i % G) * cg + j / (inner ? inner : 1), q = per_ch ? c : i % G;
      z[j] = (float)((s[j] - m) * inv * sc[q] + bi[q]);
    }
  }
  return 0;
}

/* GlobalLpPool: (sum |x|^p)^(1/p) over the spatial axes. */
static int ref_glp(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t p = pv_attr_int(n, "p", 2);
  if (p < 1) return ERR(PV_EINVAL, "p %lld (must be >= 1)", (long long)p);
  int64_t planes = x->dims[0] * x->dims[1], inner = span(x->dims, 2, x->ndim);
  for (int64_t i = 0; i < planes; i++) {
    const float *s = (const float *)x->data + i * inner;
    double acc = 0;
    for (int64_t j = 0; j < inner; j++) acc += pow(fabs(s[j]), (double)p);
    ((float *)o->data)[i] = (float)pow(acc, 1.0 / (double)p);
  }
  return 0;
}

/* EyeLike: ones on diagonal k of a 2-D tensor shaped like the input, in
 * the input's type or `dtype`. */
static int infer_eyelike(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  if (x->ndim != 2) return ERR(PV_ESHAPE, "input rank %d (must be 2)", x->ndim);
  pv_dtype t = (pv_dtype)pv_attr_int(n, "dtype", x->dtype);
  if (t != PV_F32 && !is_int(t) && t != PV_BOOL && t != PV_F64 && t != PV_U8)
    return ERR(PV_EUNSUPPORTED, "dtype %s", pv_dtype_name(t));
  set_out(o, t, 2, x->dims);
  return 0;
}

static int ref_eyelike(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  (void)vals;
  int64_t k = pv_attr_int(n, "k", 0), R = o->dims[0], C = o->dims[1];
  memset(o->data, 0, pv_tensor_nbytes(o));
  if (k >= C || k <= -R) return 0; /* the diagonal misses the matrix */
  for (int64_t i = 0; i < R; i++)
    if (i + k >= 0 && i + k < C) {
      size_t at = (size_t)(i * C + i + k);
      if (o->dtype == PV_F64) ((double *)o->data)[at] = 1;
      else puti(o, at, 1);
    }
  return 0;
}

/* QuantizeLinear / DequantizeLinear (10, 13 per-axis): int8 and uint8,
 * scales per tensor or per slice of `axis`; round half to even and
 * saturate, as the spec says. Constant folding turns the DequantizeLinear
 * of a QDQ model's weights into FP32 constants, so the weights reach the
 * fast kernels; activations' Q -> DQ pairs run here. */
static int qdq_params(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                      int64_t *axis, int64_t *nsc) {
  const pv_tensor *x = IN(0), *sc = IN(1), *zp = IN(2);
  if (!sc) return ERR(PV_EINVAL, "missing scale");
  if (sc->dtype != PV_F32) return ERR(PV_ETYPE, "scale must be FP32 (is %s)",
                                      pv_dtype_name(sc->dtype));
  if (pv_attr_int(n, "block_size", 0))
    return ERR(PV_EUNSUPPORTED, "blocked quantization (block_size)");
  /* 23: the division's precision (QuantizeLinear) and the output type
   * (DequantizeLinear); FP32 (or unset) is what runs here. */
  int64_t prec = pv_attr_int(n, "precision", 0);
  if (prec && prec != PV_F32)
    return ERR(PV_EUNSUPPORTED, "precision %s (type %lld; FLOAT only)",
               pv_dtype_name((pv_dtype)prec), (long long)prec);
  if (!strcmp(n->op, "DequantizeLinear")) {
    int64_t od = pv_attr_int(n, "output_dtype", 0);
    if (od && od != PV_F32)
      return ERR(PV_EUNSUPPORTED, "output_dtype %s (type %lld; FLOAT only)",
                 pv_dtype_name((pv_dtype)od), (long long)od);
  }
  *nsc = (int64_t)numel(sc);
  *axis = 0;
  if (sc->ndim > 1) return ERR(PV_ESHAPE, "scale must be a scalar or 1-D");
  /* One value, scalar or 1-D, is per tensor (as ONNX Runtime reads it). */
  if (sc->ndim == 1 && *nsc != 1) {
    if (g->opset < 13) return ERR(PV_ESHAPE, "per-axis scale needs opset 13");
    int rc = norm_axis(n, pv_attr_int(n, "axis", 1), x->ndim ? x->ndim : 1, axis);
    if (rc) return rc;
    if (x->ndim == 0 || x->dims[*axis] != *nsc)
      return ERR(PV_ESHAPE, "scale has %lld values for axis %lld of length %lld",
                 (long long)*nsc, (long long)*axis,
                 (long long)(x->ndim ? x->dims[*axis] : 0));
  } else if (*nsc != 1) {
    return ERR(PV_ESHAPE, "scale must hold one value");
  }
  if (zp && numel(zp)) {
    if (numel(zp) != (size_t)*nsc) return ERR(PV_ESHAPE, "zero_point and scale differ in size");
    if (zp->dtype != PV_U8 && zp->dtype != PV_I8 && zp->dtype != PV_I32)
      return ERR(PV_ETYPE, "zero_point type %s (uint8, int8 or int32)", pv_dtype_name(zp->dtype));
  }
  return 0;
}

static int infer_qdq(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                     pv_tensor *o) {
  const pv_tensor *x = IN(0), *zp = IN(2);
  int64_t axis, nsc;
  int rc = qdq_params(g, n, vals, &axis, &nsc);
  if (rc) return rc;
  if (!strcmp(n->op, "QuantizeLinear")) {
    if (x->dtype != PV_F32) return ERR(PV_ETYPE, "input must be FP32 (is %s)",
                                       pv_dtype_name(x->dtype));
    /* The type: zero_point's, else output_dtype (21), else uint8. */
    int64_t od = pv_attr_int(n, "output_dtype", 0);
    pv_dtype t = zp && numel(zp) ? zp->dtype : od ? (pv_dtype)od : PV_U8;
    if (od && (pv_dtype)od != t)
      return ERR(PV_ETYPE, "output_dtype differs from zero_point's type");
    if (t != PV_U8 && t != PV_I8) return ERR(PV_ETYPE, "quantizing to %s (uint8 or int8)",
                                             pv_dtype_name(t));
    set_out(o, t, x->ndim, x->dims);
    return 0;
  }
  if (x->dtype != PV_U8 && x->dtype != PV_I8 && x->dtype != PV_I32)
    return ERR(PV_ETYPE, "input type %s (uint8, int8 or int32)", pv_dtype_name(x->dtype));
  if (zp && numel(zp) && zp->dtype != x->dtype)
    return ERR(PV_ETYPE, "zero_point type differs from the input's");
  set_out(o, PV_F32, x->ndim, x->dims);
  return 0;
}

static int ref_qdq(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                   pv_tensor *o) {
  const pv_tensor *x = IN(0), *sc = IN(1), *zp = IN(2);
  int64_t axis, nsc;
  int rc = qdq_params(g, n, vals, &axis, &nsc);
  if (rc) return rc;
  bool has_zp = zp && numel(zp);
  int64_t len = nsc > 1 ? x->dims[axis] : 1, inner = nsc > 1 ? span(x->dims, (int)axis + 1, x->ndim) : 1;
  size_t cnt = numel(x);
  const float *s = sc->data;
  if (!strcmp(n->op, "QuantizeLinear")) {
    bool u8 = o->dtype == PV_U8;
    int64_t lo = u8 ? 0 : -128, hi = u8 ? 255 : 127;
    for (size_t e = 0; e < cnt; e++) {
      int64_t c = nsc > 1 ? (int64_t)(e / (size_t)inner) % len : 0;
      float q = nearbyintf(((const float *)x->data)[e] / s[c]);
      double v = (double)q + (double)(has_zp ? geti(zp, (size_t)c) : 0);
      int64_t r = isnan(v) ? 0 : v < (double)lo ? lo : v > (double)hi ? hi : (int64_t)v;
      if (u8) ((uint8_t *)o->data)[e] = (uint8_t)r;
      else ((int8_t *)o->data)[e] = (int8_t)r;
    }
    return 0;
  }
  for (size_t e = 0; e < cnt; e++) {
    int64_t c = nsc > 1 ? (int64_t)(e / (size_t)inner) % len : 0;
    int64_t v = geti(x, e) - (has_zp ? geti(zp, (size_t)c) : 0);
    ((float *)o->data)[e] = (float)v * s[c];
  }
  return 0;
}

/* ------------------------------------------------------------ GridSample */

/* GridSample (16; N-D and the mode names linear / cubic from 20): Y at
 * each grid point is X interpolated at the point's normalised
 * coordinates (last grid axis, x first: the reverse of X's axes). As the
 * ONNX reference and PyTorch's grid_sampler compute it: denormalise
 * (align_corners: -1 and 1 are the centres of the corner pixels, else
 * their outer edges), round for nearest (half to even in 2-D, half away
 * from zero otherwise), move a point outside the borders inside for
 * border / reflection padding (not for cubic), then weight the taps (1, 2
 * or 4 per axis, Keys' cubic with a = -0.75); a tap outside the input
 * reads 0 (zeros), the nearest edge (border) or its mirror image
 * (reflection). */
enum { GS_NEAREST, GS_LINEAR, GS_CUBIC };
enum { GS_ZEROS, GS_BORDER, GS_REFLECT };
#define GS_MAX_R 3

typedef struct gs_geom {
  int r, mode, pad;
  bool align;
} gs_geom;

static int gs_geometry(const pv_node *n, const pv_tensor *vals, gs_geom *q) {
  const pv_tensor *x = IN(0), *grid = IN(1);
  if (!grid) return ERR(PV_EINVAL, "missing grid input");
  if (x->dtype != PV_F32 || grid->dtype != PV_F32)
    return ERR(PV_ETYPE, "X and grid must be FP32");
  q->r = x->ndim - 2;
  if (q->r < 1 || q->r > GS_MAX_R)
    return ERR(PV_EUNSUPPORTED, "input rank %d (1 to %d spatial axes)", x->ndim,
               GS_MAX_R);
  if (grid->ndim != x->ndim || grid->dims[0] != x->dims[0] ||
      grid->dims[grid->ndim - 1] != q->r) {
    char a[64], b[64];
    return ERR(PV_ESHAPE, "grid %s does not fit X %s (want [N, ..., %d])",
               pv_dims_str(grid->dims, grid->ndim, a, sizeof a),
               pv_dims_str(x->dims, x->ndim, b, sizeof b), q->r);
  }
  const char *m = pv_attr_str(n, "mode", "bilinear"),
             *p = pv_attr_str(n, "padding_mode", "zeros");
  if (!strcmp(m, "nearest")) q->mode = GS_NEAREST;
  else if (!strcmp(m, "bilinear") || !strcmp(m, "linear")) q->mode = GS_LINEAR;
  else if (!strcmp(m, "bicubic") || !strcmp(m, "cubic")) q->mode = GS_CUBIC;
  else return ERR(PV_EINVAL, "unknown mode '%s'", m);
  if (!strcmp(p, "zeros")) q->pad = GS_ZEROS;
  else if (!strcmp(p, "border")) q->pad = GS_BORDER;
  else if (!strcmp(p, "reflection")) q->pad = GS_REFLECT;
  else return ERR(PV_EINVAL, "unknown padding_mode '%s'", p);
  q->align = pv_attr_int(n, "align_corners", 0) != 0;
  return 0;
}

static int infer_grids(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *grid = IN(1);
  gs_geom q;
  int rc = gs_geometry(n, vals, &q);
  if (rc) return rc;
  int64_t d[PV_MAX_DIMS] = {x->dims[0], x->dims[1]};
  for (int i = 0; i < q.r; i++) d[2 + i] = grid->dims[1 + i];
  set_out(o, PV_F32, x->ndim, d);
  return 0;
}

/* Mirror v into [lo, hi] (the ONNX reference's _gs_reflect). */
static double gs_reflect(double v, double lo, double hi) {
  double rng = hi - lo;
  if (rng <= 0) return lo;
  if (v < lo || v > hi) {
    double dx = v < lo ? lo - v : v - hi;
    double k = floor(dx / rng), rem = dx - k * rng;
    bool even = fmod(k, 2.0) == 0.0;
    v = (v < lo) == even ? lo + rem : hi - rem;
  }
  return v;
}

static void gs_cubic(double t, double *c) {
  const double a = -0.75;
  double x1 = t + 1, x2 = 1 - t, x3 = 2 - t;
  c[0] = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a;
  c[1] = ((a + 2) * t - (a + 3)) * t * t + 1;
  c[2] = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1;
  c[3] = ((a * x3 - 5 * a) * x3 + 8 * a) * x3 - 4 * a;
}

static int ref_grids(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *grid = IN(1);
  gs_geom q;
  int rc = gs_geometry(n, vals, &q);
  if (rc) return rc;
  const int r = q.r, ntap = q.mode == GS_NEAREST ? 1 : q.mode == GS_LINEAR ? 2 : 4;
  int64_t N = x->dims[0], C = x->dims[1], isz = 1, P = 1;
  int64_t dim[GS_MAX_R];
  for (int a = 0; a < r; a++) {
    dim[a] = x->dims[2 + a];
    isz *= dim[a];
    P *= grid->dims[1 + a];
  }
  int ncomb = 1;
  for (int a = 0; a < r; a++) ncomb *= ntap;
  const float *X = x->data, *G = grid->data;
  float *Y = o->data;
  for (int64_t b = 0; b < N; b++)
    for (int64_t pt = 0; pt < P; pt++) {
      /* Per axis: the taps' indices (-1: reads 0) and weights. */
      int64_t idx[GS_MAX_R][4];
      double wt[GS_MAX_R][4];
      const float *gp = G + (b * P + pt) * r;
      for (int a = 0; a < r; a++) {
        double len = (double)dim[a], v = gp[r - 1 - a];
        v = q.align ? (v + 1) / 2 * (len - 1) : ((v + 1) * len - 1) / 2;
        if (q.mode == GS_NEAREST) v = r == 2 ? nearbyint(v) : round(v);
        double lo = q.align ? 0 : -0.5, hi = q.align ? len - 1 : len - 0.5;
        if (isnan(v)) v = q.pad == GS_ZEROS ? -2 : 0; /* no pixel, or the edge */
        /* Cubic moves only its taps (PyTorch's and ONNX Runtime's rule). */
        if ((v < lo || v > hi) && q.mode != GS_CUBIC) {
          if (q.pad == GS_BORDER) v = v < 0 ? 0 : v > len - 1 ? len - 1 : v;
          else if (q.pad == GS_REFLECT) v = gs_reflect(v, lo, hi);
        }
        double f = q.mode == GS_NEAREST ? v : floor(v);
        double c[4] = {1, 0, 0, 0};
        if (q.mode == GS_LINEAR) c[0] = 1 - (v - f), c[1] = v - f;
        if (q.mode == GS_CUBIC) gs_cubic(v - f, c);
        double first = q.mode == GS_CUBIC ? f - 1 : f;
        for (int t = 0; t < ntap; t++) {
          double i = first + t;
          if (q.pad == GS_BORDER) i = i < 0 ? 0 : i > len - 1 ? len - 1 : i;
          else if (q.pad == GS_REFLECT && (i < 0 || i > len - 1)) {
            i = floor(gs_reflect(i, lo, hi));
            if (i > len - 1) i = len - 1; /* hi = len - 0.5 */
          }
          idx[a][t] = i >= 0 && i <= len - 1 ? (int64_t)i : -1;
          wt[a][t] = c[t];
        }
      }
      for (int64_t ch = 0; ch < C; ch++) {
        const float *xc = X + (b * C + ch) * isz;
        double acc = 0;
        for (int cb = 0; cb < ncomb; cb++) {
          int64_t off = 0;
          double w = 1;
          int rest = cb;
          for (int a = 0; a < r && off >= 0; a++) {
            int t = rest % ntap;
            rest /= ntap;
            if (idx[a][t] < 0) off = -1;
            else off = off * dim[a] + idx[a][t], w *= wt[a][t];
          }
          if (off >= 0) acc += w * xc[off];
        }
        Y[(b * C + ch) * P + pt] = (float)acc;
      }
    }
  return 0;
}

/* ------------------------------------------------------------ RoiAlign */

/* RoiAlign (10, 16): per region of interest (x1, y1, x2, y2 in input
 * pixels times spatial_scale) an output_height x output_width grid of
 * bins, each the average (or maximum) of sampling_ratio^2 bilinear
 * samples (0: ceil(bin size) per axis), as torchvision's roi_align and
 * ONNX Runtime: samples more than a pixel outside read 0, others are
 * clamped to the border; `half_pixel` (16's default) shifts coordinates
 * by half a pixel, `output_half_pixel` (opset 10) does not and makes a
 * region at least one pixel wide. */
typedef struct roi_geom {
  int64_t R, C, H, W, oh, ow, sr;
  float scale;
  bool half, maxm;
} roi_geom;

static int roi_geometry(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                        roi_geom *q) {
  const pv_tensor *x = IN(0), *r = IN(1), *bi = IN(2);
  if (!r || !bi) return ERR(PV_EINVAL, "needs X, rois and batch_indices");
  if (x->dtype != PV_F32 || r->dtype != PV_F32)
    return ERR(PV_ETYPE, "X and rois must be FP32");
  if (bi->dtype != PV_I64 && bi->dtype != PV_I32)
    return ERR(PV_ETYPE, "batch_indices must be INT64");
  if (x->ndim != 4 || r->ndim != 2 || r->dims[1] != 4 || bi->ndim != 1 ||
      bi->dims[0] != r->dims[0]) {
    char a[64], b[64], c[64];
    return ERR(PV_ESHAPE, "X %s, rois %s, batch_indices %s (want [N, C, H, W], "
               "[R, 4], [R])", pv_dims_str(x->dims, x->ndim, a, sizeof a),
               pv_dims_str(r->dims, r->ndim, b, sizeof b),
               pv_dims_str(bi->dims, bi->ndim, c, sizeof c));
  }
  q->R = r->dims[0], q->C = x->dims[1], q->H = x->dims[2], q->W = x->dims[3];
  q->oh = pv_attr_int(n, "output_height", 1);
  q->ow = pv_attr_int(n, "output_width", 1);
  q->sr = pv_attr_int(n, "sampling_ratio", 0);
  q->scale = pv_attr_float(n, "spatial_scale", 1.0f);
  const char *mode = pv_attr_str(n, "mode", "avg");
  const char *ct = pv_attr_str(n, "coordinate_transformation_mode",
                               g->opset >= 16 ? "half_pixel" : "output_half_pixel");
  if (q->oh < 1 || q->ow < 1 || q->oh > (1 << 16) || q->ow > (1 << 16) || q->sr < 0 ||
      q->sr > (1 << 16))
    return ERR(PV_EINVAL, "output %lldx%lld, sampling_ratio %lld", (long long)q->oh,
               (long long)q->ow, (long long)q->sr);
  if (strcmp(mode, "avg") && strcmp(mode, "max"))
    return ERR(PV_EINVAL, "unknown mode '%s'", mode);
  if (strcmp(ct, "half_pixel") && strcmp(ct, "output_half_pixel"))
    return ERR(PV_EINVAL, "unknown coordinate_transformation_mode '%s'", ct);
  q->maxm = !strcmp(mode, "max");
  q->half = !strcmp(ct, "half_pixel");
  return 0;
}

static int infer_roialign(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                          pv_tensor *o) {
  roi_geom q;
  int rc = roi_geometry(g, n, vals, &q);
  if (rc) return rc;
  int64_t d[4] = {q.R, q.C, q.oh, q.ow};
  set_out(o, PV_F32, 4, d);
  return 0;
}

/* One bilinear sample of RoiAlign: four corner offsets into a plane and
 * their weights (all 0 for a sample outside), the same for every
 * channel, so computed once per region (as ONNX Runtime's pre_calc). */
typedef struct roi_tap {
  int64_t o[4];
  double w[4];
} roi_tap;

static void roi_tap_at(const roi_geom *q, double y, double xx, roi_tap *t) {
  memset(t, 0, sizeof *t);
  if (y < -1.0 || y > (double)q->H || xx < -1.0 || xx > (double)q->W) return;
  double yy = y <= 0 ? 0 : y, xv = xx <= 0 ? 0 : xx;
  int64_t yl = (int64_t)yy, xl = (int64_t)xv, yh, xh;
  if (yl >= q->H - 1) yh = yl = q->H - 1, yy = (double)yl;
  else yh = yl + 1;
  if (xl >= q->W - 1) xh = xl = q->W - 1, xv = (double)xl;
  else xh = xl + 1;
  double ly = yy - yl, lx = xv - xl, hy = 1 - ly, hx = 1 - lx;
  t->o[0] = yl * q->W + xl, t->o[1] = yl * q->W + xh;
  t->o[2] = yh * q->W + xl, t->o[3] = yh * q->W + xh;
  t->w[0] = hy * hx, t->w[1] = hy * lx, t->w[2] = ly * hx, t->w[3] = ly * lx;
}

static int ref_roialign(const pv_graph *g, const pv_node *n, const pv_tensor *vals,
                        pv_tensor *o) {
  roi_geom q;
  int rc = roi_geometry(g, n, vals, &q);
  if (rc) return rc;
  const pv_tensor *x = IN(0), *bt = IN(2);
  const float *X = x->data, *rois = IN(1)->data;
  float *Y = o->data;
  const double off = q.half ? 0.5 : 0.0;
  roi_tap *taps = NULL;
  size_t cap = 0;
  for (int64_t r = 0; r < q.R; r++) {
    int64_t b = geti(bt, (size_t)r);
    if (b < 0 || b >= x->dims[0]) {
      free(taps);
      return ERR(PV_ERANGE, "batch index %lld of roi %lld is outside [0, %lld)",
                 (long long)b, (long long)r, (long long)x->dims[0]);
    }
    const float *ro = rois + r * 4;
    double x1 = ro[0] * q.scale - off, y1 = ro[1] * q.scale - off;
    double rw = ro[2] * q.scale - off - x1, rh = ro[3] * q.scale - off - y1;
    if (!q.half) {
      if (rw < 1) rw = 1;
      if (rh < 1) rh = 1;
    }
    double bh = rh / (double)q.oh, bw = rw / (double)q.ow;
    double gh_d = q.sr > 0 ? (double)q.sr : ceil(bh), gw_d = q.sr > 0 ? (double)q.sr : ceil(bw);
    if (!(gh_d >= 0) || gh_d > 65536) gh_d = gh_d > 65536 ? 65536 : 0; /* NaN rois */
    if (!(gw_d >= 0) || gw_d > 65536) gw_d = gw_d > 65536 ? 65536 : 0;
    int64_t gh = (int64_t)gh_d, gw = (int64_t)gw_d, per = gh * gw;
    if (!isfinite(x1) || !isfinite(y1) || !isfinite(rw) || !isfinite(rh)) {
      free(taps);
      return ERR(PV_EINVAL, "roi %lld has a NaN or infinite coordinate", (long long)r);
    }
    /* at most 2^26 samples a region (a 7x7 pool of 2x2 samples is 196) */
    if (per > (INT64_C(1) << 26) / (q.oh * q.ow)) {
      free(taps);
      return ERR(PV_ERANGE, "roi %lld needs %lld x %lld bins of %lld samples", (long long)r,
                 (long long)q.oh, (long long)q.ow, (long long)per);
    }
    double cnt = per > 0 ? (double)per : 1.0;
    /* the region's samples, bin by bin */
    size_t need = (size_t)(q.oh * q.ow) * (size_t)(per ? per : 1);
    if (need > cap) {
      roi_tap *t2 = realloc(taps, need * sizeof *taps);
      if (!t2) {
        free(taps);
        return ERR(PV_ENOMEM, "out of memory (%zu samples)", need);
      }
      taps = t2;
      cap = need;
    }
    roi_tap *t = taps;
    for (int64_t ph = 0; ph < q.oh; ph++)
      for (int64_t pw = 0; pw < q.ow; pw++)
        for (int64_t iy = 0; iy < gh; iy++) {
          double y = y1 + ph * bh + (iy + 0.5) * bh / (double)gh;
          for (int64_t ix = 0; ix < gw; ix++)
            roi_tap_at(&q, y, x1 + pw * bw + (ix + 0.5) * bw / (double)gw, t++);
        }
    for (int64_t c = 0; c < q.C; c++) {
      const float *xc = X + (b * q.C + c) * q.H * q.W;
      float *yc = Y + ((r * q.C + c) * q.oh) * q.ow;
      const roi_tap *tb = taps;
      for (int64_t bin = 0; bin < q.oh * q.ow; bin++, tb += per) {
        double acc = 0, mx = 0;
        for (int64_t k = 0; k < per; k++) {
          const roi_tap *s = tb + k;
          double v;
          if (q.maxm) /* ONNX Runtime's max: the largest weighted corner */
            v = fmax(fmax(s->w[0] * xc[s->o[0]], s->w[1] * xc[s->o[1]]),
                     fmax(s->w[2] * xc[s->o[2]], s->w[3] * xc[s->o[3]]));
          else
            v = s->w[0] * xc[s->o[0]] + s->w[1] * xc[s->o[1]] +
                s->w[2] * xc[s->o[2]] + s->w[3] * xc[s->o[3]];
          acc += v;
          if (k == 0 || v > mx) mx = v;
        }
        yc[bin] = (float)(q.maxm ? mx : acc / cnt);
      }
    }
  }
  free(taps);
  return 0;
}

/* ------------------------------------------------------------ If */

/* The select of a flattened If: inputs (cond, then outputs..., else
 * outputs...); the outputs are the taken branch's. Only that branch has
 * run, so the other's values may be empty: checked here, before the
 * generic checks that every input be known. Without the condition's data
 * (shape inference for `pivot inspect`) the then branch's shapes, or the
 * else branch's where the then branch's are unknown. */
static int if_branch_taken(const pv_node *n, const pv_tensor *vals, int *b) {
  int k = (n->n_in - 1) / 2;
  if (n->n_in < 1 || n->n_in != 2 * k + 1 || n->n_out != k)
    return ERR(PV_EINVAL, "a select of %d inputs for %d outputs", n->n_in, n->n_out);
  const pv_tensor *c = IN(0);
  if (!c || c->dtype != PV_BOOL || pv_tensor_numel(c) != 1)
    return ERR(PV_ETYPE, "the condition must be one BOOL");
  if (c->data) {
    *b = ((const uint8_t *)c->data)[0] ? 0 : 1;
    return 0;
  }
  *b = 0;
  for (int j = 0; j < k; j++) {
    const pv_tensor *t = IN(1 + j);
    if (!t || t->dtype == PV_UNDEFINED) *b = 1;
  }
  return 0;
}

int pv_if_infer(const pv_node *n, pv_tensor *vals) {
  int b, rc = if_branch_taken(n, vals, &b);
  if (rc) return rc;
  int k = n->n_out;
  for (int j = 0; j < k; j++) {
    const pv_tensor *t = IN(1 + b * k + j);
    if (!t || t->dtype == PV_UNDEFINED || t->ndim < 0)
      return ERR(PV_EINVAL, "output %d of the %s branch is not known", j,
                 b ? "else" : "then");
    if (n->out[j] >= 0) set_out(&vals[n->out[j]], t->dtype, t->ndim, t->dims);
  }
  return 0;
}

int pv_if_ref(const pv_node *n, pv_tensor *vals) {
  int b, rc = if_branch_taken(n, vals, &b);
  if (rc) return rc;
  int k = n->n_out;
  for (int j = 0; j < k; j++) {
    const pv_tensor *t = IN(1 + b * k + j);
    pv_tensor *o = n->out[j] >= 0 ? &vals[n->out[j]] : NULL;
    if (!o) continue;
    size_t nb = pv_tensor_nbytes(t);
    if (nb && !t->data) return ERR(PV_EINVAL, "output %d of the branch has no data", j);
    if (pv_tensor_nbytes(o) != nb) return ERR(PV_ESHAPE, "output %d changed size", j);
    if (nb) memcpy(o->data, t->data, nb);
  }
  return 0;
}

/* ------------------------------------------------------------ data-shaped */

/* NonZero, NonMaxSuppression and Compress: how many elements their
 * outputs have depends on the input data. Shape inference gives the
 * largest possible shape (what the output buffer is allocated with); the
 * reference op then shrinks the output's dims to what it found, and the
 * engine infers the nodes after it from those (core/model.c, the
 * data-shaped path). */

static bool nz_at(const pv_tensor *x, size_t i) {
  switch (x->dtype) {
  case PV_F32: return ((const float *)x->data)[i] != 0.0f;
  case PV_F64: return ((const double *)x->data)[i] != 0.0;
  case PV_F16: return (((const uint16_t *)x->data)[i] & 0x7fff) != 0;
  default: {
    size_t es = pv_dtype_size(x->dtype);
    const uint8_t *b = (const uint8_t *)x->data + i * es;
    for (size_t k = 0; k < es; k++)
      if (b[k]) return true;
    return false;
  }
  }
}

static int infer_nonzero(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int64_t d[2] = {x->ndim > 0 ? x->ndim : 1, (int64_t)numel(x)};
  set_out(o, PV_I64, 2, d);
  return 0;
}

/* Indices of the non-zero elements, [rank, count] in row-major order (a
 * scalar reads as a 1-element vector, as ONNX Runtime does). */
static int ref_nonzero(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  size_t cnt = numel(x), nnz = 0;
  for (size_t i = 0; i < cnt; i++) nnz += nz_at(x, i);
  int r = x->ndim > 0 ? x->ndim : 1;
  int64_t *y = o->data;
  size_t k = 0;
  for (size_t i = 0; i < cnt; i++) {
    if (!nz_at(x, i)) continue;
    size_t rem = i;
    for (int a = r - 1; a >= 0; a--) {
      int64_t len = x->ndim > 0 ? x->dims[a] : 1;
      y[(size_t)a * nnz + k] = (int64_t)(rem % (size_t)len);
      rem /= (size_t)len;
    }
    k++;
  }
  o->dims[1] = (int64_t)nnz;
  return 0;
}

typedef struct nms_geom {
  int64_t B, N, C, max_out;
  float iou, score;
  bool has_score;
  int center;
} nms_geom;

static int nms_geometry(const pv_node *n, const pv_tensor *vals, nms_geom *q,
                        bool need_data) {
  const pv_tensor *bx = IN(0), *sc = IN(1), *mo = IN(2), *it = IN(3), *st = IN(4);
  if (!sc) return ERR(PV_EINVAL, "missing scores input");
  if (bx->dtype != PV_F32 || sc->dtype != PV_F32)
    return ERR(PV_ETYPE, "boxes and scores must be FP32");
  if (bx->ndim != 3 || bx->dims[2] != 4 || sc->ndim != 3 ||
      sc->dims[0] != bx->dims[0] || sc->dims[2] != bx->dims[1]) {
    char a[64], b[64];
    return ERR(PV_ESHAPE, "boxes %s and scores %s (want [B, N, 4] and [B, C, N])",
               pv_dims_str(bx->dims, bx->ndim, a, sizeof a),
               pv_dims_str(sc->dims, sc->ndim, b, sizeof b));
  }
  q->B = bx->dims[0], q->N = bx->dims[1], q->C = sc->dims[1];
  q->center = (int)pv_attr_int(n, "center_point_box", 0);
  if (q->center != 0 && q->center != 1)
    return ERR(PV_EINVAL, "center_point_box %d (0 or 1)", q->center);
  const pv_tensor *sca[3] = {mo, it, st};
  for (int k = 0; k < 3; k++) {
    const pv_tensor *t = sca[k];
    if (!t) continue;
    if (numel(t) != 1)
      return ERR(PV_ESHAPE, "input %d must hold one value", k + 2);
    if (k == 0 ? t->dtype != PV_I64 : t->dtype != PV_F32)
      return ERR(PV_ETYPE, "input %d must be %s", k + 2, k == 0 ? "INT64" : "FP32");
    if (!t->data && need_data)
      return ERR(PV_EINVAL, "input %d has no data", k + 2);
  }
  /* Absent: 0 (nothing selected); not known yet (shape inference): N. */
  q->max_out = !mo ? 0 : mo->data ? geti(mo, 0) : q->N;
  if (q->max_out < 0) q->max_out = 0;
  if (q->max_out > q->N) q->max_out = q->N;
  q->iou = it && it->data ? ((const float *)it->data)[0] : 0.0f;
  q->has_score = st != NULL;
  q->score = st && st->data ? ((const float *)st->data)[0] : 0.0f;
  return 0;
}

static int infer_nms(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  nms_geom q;
  int rc = nms_geometry(n, vals, &q, false);
  if (rc) return rc;
  if (q.B && q.C && q.max_out > INT64_MAX / q.B / q.C / 3)
    return ERR(PV_ERANGE, "too many boxes");
  int64_t d[2] = {q.B * q.C * q.max_out, 3};
  set_out(o, PV_I64, 2, d);
  return 0;
}

/* Corners (y1, x1, y2, x2) of box i, sorted, from either encoding. */
static void nms_box(const float *b, int center, float *c) {
  if (center) {
    float hw = b[2] / 2, hh = b[3] / 2;
    c[0] = b[1] - hh, c[1] = b[0] - hw, c[2] = b[1] + hh, c[3] = b[0] + hw;
    return;
  }
  c[0] = fminf(b[0], b[2]), c[2] = fmaxf(b[0], b[2]);
  c[1] = fminf(b[1], b[3]), c[3] = fmaxf(b[1], b[3]);
}

/* Whether box a suppresses box b: IoU above the threshold (ONNX Runtime's
 * rule; boxes without area never do). */
static bool nms_suppress(const float *a, const float *b, float thr) {
  float ia = (a[2] - a[0]) * (a[3] - a[1]), ib = (b[2] - b[0]) * (b[3] - b[1]);
  if (ia <= 0 || ib <= 0) return false;
  float iy = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
  float ix = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  if (iy <= 0 || ix <= 0) return false;
  float inter = iy * ix;
  return inter / (ia + ib - inter) > thr;
}

typedef struct nms_cand {
  float s;
  int64_t i;
} nms_cand;

static int nms_cmp(const void *pa, const void *pb) {
  const nms_cand *a = pa, *b = pb;
  if (a->s != b->s) return a->s > b->s ? -1 : 1;
  return a->i < b->i ? -1 : a->i > b->i;
}

/* The kept boxes of one class, ordered by left edge, so that a candidate
 * is compared only with kept boxes whose x-range can overlap its own
 * (those starting within the widest kept box's width before it): boxes
 * that do not overlap never suppress, so the result is the one a scan of
 * every kept box gives. torchvision's batched_nms offsets each class's
 * boxes apart and runs one NMS over all of them: an SSDlite's 27000
 * candidates, 5760 kept, took 460 ms scanned, 6 ms ordered. */
typedef struct nms_kept {
  int64_t *idx; /* by increasing x1 */
  int64_t n;
  double maxw; /* in double: a float difference is exact there */
} nms_kept;

static bool nms_kept_suppresses(const nms_kept *k, const float *corner,
                                const float *b, float thr) {
  double lo = (double)b[1] - k->maxw;
  int64_t a = 0, z = k->n;
  while (a < z) { /* first kept box with x1 >= lo */
    int64_t mid = a + (z - a) / 2;
    if ((double)corner[k->idx[mid] * 4 + 1] < lo) a = mid + 1;
    else z = mid;
  }
  for (int64_t j = a; j < k->n; j++) {
    const float *kb = corner + k->idx[j] * 4;
    if (kb[1] >= b[3]) break;
    if (nms_suppress(kb, b, thr)) return true;
  }
  return false;
}

static void nms_kept_add(nms_kept *k, const float *corner, int64_t i) {
  float x1 = corner[i * 4 + 1];
  int64_t a = 0, z = k->n;
  while (a < z) {
    int64_t mid = a + (z - a) / 2;
    if (corner[k->idx[mid] * 4 + 1] <= x1) a = mid + 1;
    else z = mid;
  }
  memmove(k->idx + a + 1, k->idx + a, sizeof *k->idx * (size_t)(k->n - a));
  k->idx[a] = i;
  k->n++;
  double w = (double)corner[i * 4 + 3] - (double)x1;
  if (w > k->maxw) k->maxw = w;
}

/* Per batch and class: candidates above score_threshold by descending
 * score (ties: lower index first), each kept unless a kept box overlaps
 * it by more than iou_threshold, up to max_output_boxes_per_class. Rows
 * (batch, class, box) in that order. Boxes with a NaN or infinite
 * coordinate have no order along x: such a batch scans every kept box. */
static int ref_nms(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  nms_geom q;
  int rc = nms_geometry(n, vals, &q, true);
  if (rc) return rc;
  const float *boxes = IN(0)->data, *scores = IN(1)->data;
  int64_t *y = o->data, rows = 0;
  if (q.max_out == 0 || q.N == 0) {
    o->dims[0] = 0;
    return 0;
  }
  nms_cand *cand = malloc(sizeof *cand * (size_t)q.N);
  int64_t *kept = malloc(sizeof(int64_t) * (size_t)q.max_out);
  float *corner = malloc(sizeof(float) * 4 * (size_t)q.N);
  if (!cand || !kept || !corner) {
    free(cand);
    free(kept);
    free(corner);
    return ERR(PV_ENOMEM, "out of memory");
  }
  for (int64_t b = 0; b < q.B; b++) {
    bool finite = true;
    for (int64_t i = 0; i < q.N; i++) {
      nms_box(boxes + (b * q.N + i) * 4, q.center, corner + i * 4);
      for (int e = 0; e < 4; e++) finite &= isfinite(corner[i * 4 + e]) != 0;
    }
    for (int64_t c = 0; c < q.C; c++) {
      const float *s = scores + (b * q.C + c) * q.N;
      int64_t nc = 0;
      /* NaN scores are never candidates (no order to rank them by). */
      for (int64_t i = 0; i < q.N; i++)
        if (!isnan(s[i]) && (!q.has_score || s[i] > q.score))
          cand[nc++] = (nms_cand){s[i], i};
      qsort(cand, (size_t)nc, sizeof *cand, nms_cmp);
      nms_kept ks = {kept, 0, 0.0};
      for (int64_t k = 0; k < nc && ks.n < q.max_out; k++) {
        const float *bk = corner + cand[k].i * 4;
        bool drop = false;
        if (finite) {
          drop = nms_kept_suppresses(&ks, corner, bk, q.iou);
        } else {
          for (int64_t j = 0; j < ks.n && !drop; j++)
            drop = nms_suppress(corner + kept[j] * 4, bk, q.iou);
        }
        if (drop) continue;
        if (finite) nms_kept_add(&ks, corner, cand[k].i);
        else kept[ks.n++] = cand[k].i;
        y[rows * 3] = b, y[rows * 3 + 1] = c, y[rows * 3 + 2] = cand[k].i;
        rows++;
      }
    }
  }
  free(cand);
  free(kept);
  free(corner);
  o->dims[0] = rows;
  return 0;
}

/* Compress: X's slices along axis (or its flattened elements) where
 * condition is true; condition may be shorter than the axis. */
static int compress_geom(const pv_node *n, const pv_tensor *vals, int *axis,
                         int64_t *len) {
  const pv_tensor *x = IN(0), *c = IN(1);
  if (c->dtype != PV_BOOL || c->ndim != 1)
    return ERR(PV_ETYPE, "condition must be a 1-D BOOL tensor");
  const pv_attr *a = pv_node_attr(n, "axis");
  *axis = -1;
  int64_t full = (int64_t)numel(x);
  if (a) {
    int64_t ax = 0;
    int rc = norm_axis(n, a->i, x->ndim, &ax);
    if (rc) return rc;
    *axis = (int)ax;
    full = x->dims[ax];
  }
  if (c->dims[0] > full)
    return ERR(PV_ESHAPE, "condition has %lld entries, the axis %lld",
               (long long)c->dims[0], (long long)full);
  *len = c->dims[0];
  return 0;
}

static int infer_compress(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0);
  int axis;
  int64_t len;
  int rc = compress_geom(n, vals, &axis, &len);
  if (rc) return rc;
  if (axis < 0) {
    set_out(o, x->dtype, 1, &len);
  } else {
    set_out(o, x->dtype, x->ndim, x->dims);
    o->dims[axis] = len;
  }
  return 0;
}

static int ref_compress(const pv_node *n, const pv_tensor *vals, pv_tensor *o) {
  const pv_tensor *x = IN(0), *c = IN(1);
  int axis;
  int64_t len;
  int rc = compress_geom(n, vals, &axis, &len);
  if (rc) return rc;
  const uint8_t *cond = c->data;
  size_t es = pv_dtype_size(x->dtype);
  int64_t outer = axis < 0 ? 1 : span(x->dims, 0, axis);
  int64_t dim = axis < 0 ? (int64_t)numel(x) : x->dims[axis];
  int64_t inner = axis < 0 ? 1 : span(x->dims, axis + 1, x->ndim);
  int64_t kept = 0;
  for (int64_t i = 0; i < len; i++) kept += cond[i] != 0;
  uint8_t *y = o->data;
  const uint8_t *xs = x->data;
  size_t row = (size_t)inner * es;
  for (int64_t a = 0; a < outer; a++)
    for (int64_t i = 0; i < len; i++)
      if (cond[i]) {
        memcpy(y, xs + ((size_t)(a * dim + i)) * row, row);
        y += row;
      }
  if (axis < 0) o->dims[0] = kept;
  else o->dims[axis] = kept;
  return 0;
}

/* ------------------------------------------------------------ dispatch */

int pv_infer_ext(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  const struct ext_op *e = find_op(n);
  if (!e) return ERR(PV_EUNSUPPORTED, "not an extended op");
  const pv_tensor *x = IN(0);
  if (!x) return ERR(PV_EINVAL, "missing first input");
  if (!type_ok(e->types, x->dtype))
    return ERR(PV_ETYPE, "input type %s is not supported", pv_dtype_name(x->dtype));
  pv_tensor *o = &vals[n->out[0]];
  int rc = 0;
  switch (e->kind) {
  case K_UNARY: case K_SIGN:
    set_out(o, x->dtype, x->ndim, x->dims);
    break;
  case K_ISX:
    set_out(o, PV_BOOL, x->ndim, x->dims);
    break;
  case K_PRELU:
    if ((rc = infer_broadcast(n, vals, 2, x->dtype, o))) return rc;
    if (o->ndim != x->ndim || memcmp(o->dims, x->dims, sizeof(int64_t) * x->ndim))
      return ERR(PV_ESHAPE, "slope does not broadcast to X");
    break;
  case K_VARIADIC:
    rc = infer_broadcast(n, vals, n->n_in, x->dtype, o);
    break;
  case K_CMP: case K_LOGIC:
    if (n->n_in != 2) return ERR(PV_EINVAL, "needs two inputs");
    rc = infer_broadcast(n, vals, 2, PV_BOOL, o);
    break;
  case K_MOD:
    if (n->n_in != 2) return ERR(PV_EINVAL, "needs two inputs");
    if (x->dtype == PV_F32 && !pv_attr_int(n, "fmod", 0))
      return ERR(PV_EINVAL, "floating-point Mod needs fmod=1");
    rc = infer_broadcast(n, vals, 2, x->dtype, o);
    break;
  case K_REDUCE: rc = infer_reduce(g, n, vals, o); break;
  case K_ARG: rc = infer_arg(n, vals, o); break;
  case K_TILE: rc = infer_tile(n, vals, o); break;
  case K_TOPK: rc = infer_topk(g, n, vals); break;
  case K_GATHER_EL: rc = infer_gather_el(n, vals, o); break;
  case K_SCATTER_ND:
    if ((rc = scatter_check(n, vals))) return rc;
    set_out(o, x->dtype, x->ndim, x->dims);
    break;
  case K_CUMSUM:
    set_out(o, x->dtype, x->ndim, x->dims);
    if (!IN(1)) return ERR(PV_EINVAL, "missing axis input");
    if (!is_int(IN(1)->dtype) || pv_tensor_numel(IN(1)) != 1)
      return ERR(PV_ETYPE, "axis must be one INT32 or INT64 value");
    break;
  case K_D2S: case K_S2D: rc = infer_d2s(n, vals, o); break;
  case K_INORM: rc = infer_inorm(n, vals, o); break;
  case K_LNORM: rc = infer_lnorm(n, vals); break;
  case K_CONVT: rc = infer_convt(n, vals, o); break;
  case K_EINSUM: rc = infer_einsum(n, vals, o); break;
  case K_LRN: rc = infer_lrn(n, vals, o); break;
  case K_TRILU: rc = infer_trilu(n, vals, o); break;
  case K_GATHER_ND: rc = infer_gather_nd(n, vals, o); break;
  case K_SCATTER_EL: rc = infer_scatter_el(n, vals, o); break;
  case K_ONEHOT: rc = infer_onehot(n, vals, o); break;
  case K_ALONG: case K_MVN:
    set_out(o, x->dtype, x->ndim, x->dims);
    break;
  case K_GNORM: rc = infer_gnorm(g, n, vals, o); break;
  case K_GLP: {
    if (x->ndim < 3) return ERR(PV_ESHAPE, "input rank %d < 3", x->ndim);
    int64_t d[PV_MAX_DIMS];
    memcpy(d, x->dims, sizeof d);
    for (int i = 2; i < x->ndim; i++) d[i] = 1;
    set_out(o, x->dtype, x->ndim, d);
    break;
  }
  case K_EYELIKE: rc = infer_eyelike(n, vals, o); break;
  case K_QDQ: rc = infer_qdq(g, n, vals, o); break;
  case K_ATTN: rc = infer_attn(n, vals); break;
  case K_GRIDS: rc = infer_grids(n, vals, o); break;
  case K_NONZERO: rc = infer_nonzero(n, vals, o); break;
  case K_NMS: rc = infer_nms(n, vals, o); break;
  case K_COMPRESS: rc = infer_compress(n, vals, o); break;
  case K_IF: return pv_if_infer(n, vals);
  case K_ROIALIGN: rc = infer_roialign(g, n, vals, o); break;
  case K_ROPE: {
    rope_geom r;
    if ((rc = rope_geometry(n, vals, &r))) return rc;
    set_out(o, x->dtype, x->ndim, x->dims);
    break;
  }
  }
  if (rc) return rc;
  for (int k = 0; k < n->n_out; k++)
    if (n->out[k] >= 0 && pv_tensor_numel(&vals[n->out[k]]) < 0)
      return ERR(PV_ERANGE, "output %d is too large", k);
  return 0;
}

int pv_ref_ext(const pv_graph *g, const pv_node *n, pv_tensor *vals) {
  const struct ext_op *e = find_op(n);
  if (!e) return ERR(PV_EUNSUPPORTED, "not an extended op");
  if (e->kind == K_IF) return pv_if_ref(n, vals);
  const pv_tensor *x = IN(0);
  if (!x) return ERR(PV_EINVAL, "missing first input");
  if (!type_ok(e->types, x->dtype))
    return ERR(PV_ETYPE, "input type %s is not supported", pv_dtype_name(x->dtype));
  /* Only the optional inputs of these ops may be absent. */
  int need = e->kind == K_VARIADIC || e->kind == K_EINSUM ? n->n_in
             : e->kind == K_PRELU || e->kind == K_CMP || e->kind == K_LOGIC ||
                     e->kind == K_MOD || e->kind == K_GATHER_EL || e->kind == K_CONVT ||
                     e->kind == K_TILE || e->kind == K_CUMSUM || e->kind == K_GATHER_ND ||
                     e->kind == K_QDQ || e->kind == K_GRIDS || e->kind == K_NMS ||
                     e->kind == K_COMPRESS
                 ? 2
             : e->kind == K_SCATTER_ND || e->kind == K_INORM || e->kind == K_SCATTER_EL ||
                     e->kind == K_ONEHOT || e->kind == K_GNORM || e->kind == K_ATTN ||
                     e->kind == K_ROPE || e->kind == K_ROIALIGN
                 ? 3
                 : 1;
  for (int k = 0; k < need; k++)
    if (!IN(k)) return ERR(PV_EINVAL, "missing input %d", k);
  for (int k = 0; k < n->n_in; k++) {
    const pv_tensor *t = IN(k);
    if (t && !t->data && numel(t))
      return ERR(PV_EINVAL, "input %d ('%s') has no data", k,
                 g->values[n->in[k]].name);
  }
  pv_tensor *o = &vals[n->out[0]];
  switch (e->kind) {
  case K_UNARY: return ref_unary(n, vals, o);
  case K_SIGN: return ref_sign(n, vals, o);
  case K_ISX: return ref_isx(n, vals, o);
  case K_PRELU:
    if (IN(1)->dtype != PV_F32) return ERR(PV_ETYPE, "slope must be FP32");
    return ewise(n, x, IN(1), o, E_PRELU);
  case K_VARIADIC: return ref_variadic(n, vals, o);
  case K_CMP:
    if (IN(1)->dtype != x->dtype) return ERR(PV_ETYPE, "inputs differ in type");
    return ewise(n, x, IN(1), o, !strcmp(n->op, "LessOrEqual") ? E_LE : E_GE);
  case K_LOGIC:
    if (IN(1)->dtype != PV_BOOL) return ERR(PV_ETYPE, "inputs must be BOOL");
    return ewise(n, x, IN(1), o,
                 n->op[0] == 'A' ? E_AND : n->op[0] == 'O' ? E_OR : E_XOR);
  case K_MOD:
    if (IN(1)->dtype != x->dtype) return ERR(PV_ETYPE, "inputs differ in type");
    return ewise(n, x, IN(1), o, pv_attr_int(n, "fmod", 0) ? E_FMOD : E_MOD);
  case K_REDUCE: return ref_reduce(g, n, vals, o);
  case K_ARG: return ref_arg(n, vals, o);
  case K_TILE: return ref_tile(n, vals, o);
  case K_TOPK: return ref_topk(g, n, vals);
  case K_GATHER_EL: return ref_gather_el(n, vals, o);
  case K_SCATTER_ND: return ref_scatter_nd(n, vals, o);
  case K_CUMSUM: return ref_cumsum(n, vals, o);
  case K_D2S: case K_S2D: return ref_d2s(n, vals, o);
  case K_INORM: return ref_inorm(n, vals, o);
  case K_LNORM: return ref_lnorm(n, vals);
  case K_CONVT: return ref_convt(n, vals, o);
  case K_EINSUM: return ref_einsum(n, vals, o);
  case K_LRN: return ref_lrn(n, vals, o);
  case K_TRILU: return ref_trilu(n, vals, o);
  case K_GATHER_ND: return ref_gather_nd(n, vals, o);
  case K_SCATTER_EL: return ref_scatter_el(n, vals, o);
  case K_ONEHOT: return ref_onehot(n, vals, o);
  case K_ALONG: return ref_along(g, n, vals, o);
  case K_MVN: return ref_mvn(n, vals, o);
  case K_GNORM: return ref_gnorm(g, n, vals, o);
  case K_GLP: return ref_glp(n, vals, o);
  case K_EYELIKE: return ref_eyelike(n, vals, o);
  case K_QDQ: return ref_qdq(g, n, vals, o);
  case K_ATTN: return ref_attn(n, vals);
  case K_ROPE: return ref_rope(n, vals, o);
  case K_GRIDS: return ref_grids(n, vals, o);
  case K_NONZERO: return ref_nonzero(n, vals, o);
  case K_NMS: return ref_nms(n, vals, o);
  case K_COMPRESS: return ref_compress(n, vals, o);
  case K_IF: return pv_if_ref(n, vals);
  case K_ROIALIGN: return ref_roialign(g, n, vals, o);
  }
  return ERR(PV_EINTERNAL, "unhandled op");
}
