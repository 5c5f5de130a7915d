/* What the GPU backends (OpenCL, CUDA) share: turning graph nodes into
 * kernel steps with their weights laid out for the device, and finding
 * which values of a partition must cross the host/device boundary.
 *
 * Header-only (static functions) so that each backend module stays one
 * self-contained shared object with no extra exported symbols.
 */
#ifndef PV_GPU_COMMON_H
#define PV_GPU_COMMON_H

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "pv-backend.h"
#include "pv-pivot.h"

typedef enum g_kind {
  G_GEMM = 1, /* Gemm/MatMul: y[P,M] = x[P,K] W^T + bias, dense or pivoted */
  G_CONV,     /* 2-D Conv, dense (direct) or pivoted (im2col + blocks) */
  G_MAXPOOL,
  G_AVGPOOL,
  G_GAP,      /* GlobalAveragePool */
  G_BINARY,   /* Add/Sub/Mul/Div with broadcasting, rank <= 4 */
  G_UNARY,    /* Relu/LeakyRelu/Clip/Sigmoid/Tanh: an activation alone */
  G_CONCAT,
  G_COPY,     /* Flatten/Reshape/Squeeze/Unsqueeze/Identity/Dropout: same bytes */
  G_RESIZE,   /* Resize/Upsample nearest by integer factors kh x kw (H, W) */
  G_PAD,      /* constant Pad of H and W: ph, pw before, ph1, pw1 after, value alpha */
} g_kind;

enum { G_ADD = 0, G_SUB, G_MUL, G_DIV };

#define G_MAX_RANK 4

/* One kernel step = one graph node. */
typedef struct g_step {
  g_kind kind;
  int node;
  int x, x2, y;   /* value ids: main input, second input (binary), output */
  int binop;
  int act;        /* pv_act applied to the output */
  float alpha, beta;
  /* Gemm/Conv. K is the reduction length per output row:
   * (C/group)*kh*kw for Conv. */
  int M, K, C;
  int group, kh, kw, sh, sw, dh, dw;
  int ph, pw, ph1, pw1; /* pads: top, left, bottom, right */
  int count_include_pad;
  /* Dense weights, row-major [M, K], alpha folded in (owned), or NULL when
   * `pv` is set. Bias [M] in logical order with beta folded (owned), or
   * NULL. */
  float *w;
  float *bias;
  const pv_pivot *pv;
  /* Pivoted layers: where each permuted channel and row live in the
   * stored tensors, so that folded channel permutations (value.chan_perm)
   * and unfolded ones are handled alike. Owned. */
  int32_t *in_ch;   /* [C]: stored input channel of permuted channel j */
  int32_t *out_row; /* [M]: stored output channel of permuted row i */
  int32_t *row_rg;  /* [M]: row group of permuted row i */
  int32_t *rg_blk;  /* [nr+1]: first block of each row group */
  float *bias_p;    /* [M]: bias in permuted row order (zeros if none) */
  int axis;         /* Concat */
} g_step;

static void g_step_free(g_step *s) {
  free(s->w);
  free(s->bias);
  free(s->in_ch);
  free(s->out_row);
  free(s->row_rg);
  free(s->rg_blk);
  free(s->bias_p);
  memset(s, 0, sizeof *s);
}

/* Ops whose first output has the dtype of their first input. */
static bool g_keeps_dtype(const char *op) {
  static const char *const ops[] = {
      "Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool",
      "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div", "Relu",
      "LeakyRelu", "Clip", "Sigmoid", "Tanh", "Concat", "Flatten", "Reshape", "Slice",
      "Pad", "Transpose", "Squeeze", "Unsqueeze", "BatchNormalization", "Identity",
      "Dropout", "Softmax", "Upsample", "Resize", "Split", "Max", "Min", "Neg", "Abs",
      "Exp", "Sqrt", "Pow", "HardSigmoid", "HardSwish", "PRelu", "Elu", "Selu",
      "ReduceMean", "ReduceSum", "ReduceMax", "LRN", "InstanceNormalization"};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
    if (!strcmp(op, ops[i])) return true;
  return false;
}

/* dtype of value v: declared, or followed back through dtype-preserving
 * producers (activations often carry no dtype until run time). */
static pv_dtype g_dtype(const pv_graph *g, int v) {
  for (int hops = 0; hops < 256 && v >= 0 && v < g->n_values; hops++) {
    const pv_value *pv = &g->values[v];
    if (pv->dtype != PV_UNDEFINED) return pv->dtype;
    if (pv->producer < 0 || pv->producer >= g->n_nodes) break;
    const pv_node *n = &g->nodes[pv->producer];
    if (!n->op || !g_keeps_dtype(n->op) || n->n_in < 1) break;
    v = n->in[0];
  }
  return PV_UNDEFINED;
}

static bool g_is_f32(const pv_graph *g, int v) {
  return v >= 0 && v < g->n_values && g_dtype(g, v) == PV_F32;
}

static bool g_is_const(const pv_graph *g, int v) {
  return v >= 0 && (g->values[v].data || g->values[v].pivot);
}

/* Scalar constant input (Clip min/max of opset >= 11). */
static int g_const_scalar(const pv_graph *g, const pv_node *n, int i, float *out) {
  if (i >= n->n_in || n->in[i] < 0) return 0;
  const pv_value *v = &g->values[n->in[i]];
  if (!v->data || v->dtype != PV_F32 || v->nbytes < sizeof(float))
    return pv_error(PV_EUNSUPPORTED, "%s: input %d is not a constant float", n->name, i);
  memcpy(out, v->data, sizeof(float));
  return 0;
}

static int g_act_of(const pv_node *n, g_step *s) {
  s->act = n->act;
  s->alpha = n->act_alpha;
  s->beta = n->act_beta;
  return 0;
}

/* Every index the kernels follow, checked before anything reaches the
 * device: a bad .pvm must give an error, never an out-of-bounds read. */
static int g_pivot_check(const pv_pivot *p) {
  if (p->M <= 0 || p->C <= 0 || p->kk <= 0 || p->nr <= 0 || p->nc <= 0 ||
      p->nr > p->M || p->nc > p->C || p->n_blocks < 0 || !p->perm_r || !p->perm_c ||
      !p->row_off || !p->col_off || (p->n_blocks && (!p->blocks || !p->data)))
    return pv_error(PV_EFORMAT, "pivoted weight: bad sizes or missing tables");
  if ((int64_t)p->C * p->kk > INT32_MAX / 4)
    return pv_error(PV_EFORMAT, "pivoted weight: %d channels x %d too large", p->C, p->kk);
  char *seen = calloc((size_t)(p->M > p->C ? p->M : p->C), 1);
  if (!seen) return pv_error(PV_ENOMEM, "out of memory");
  int rc = 0;
  for (int i = 0; i < p->M && !rc; i++)
    if (p->perm_r[i] < 0 || p->perm_r[i] >= p->M || seen[p->perm_r[i]]++)
      rc = pv_error(PV_EFORMAT, "pivoted weight: perm_r is not a permutation (at %d)", i);
  memset(seen, 0, (size_t)(p->M > p->C ? p->M : p->C));
  for (int i = 0; i < p->C && !rc; i++)
    if (p->perm_c[i] < 0 || p->perm_c[i] >= p->C || seen[p->perm_c[i]]++)
      rc = pv_error(PV_EFORMAT, "pivoted weight: perm_c is not a permutation (at %d)", i);
  free(seen);
  if (rc) return rc;
  if (p->row_off[0] != 0 || p->row_off[p->nr] != p->M || p->col_off[0] != 0 ||
      p->col_off[p->nc] != p->C)
    return pv_error(PV_EFORMAT, "pivoted weight: row_off/col_off do not span the matrix");
  for (int i = 0; i < p->nr; i++)
    if (p->row_off[i + 1] <= p->row_off[i])
      return pv_error(PV_EFORMAT, "pivoted weight: row_off not increasing at %d", i);
  for (int i = 0; i < p->nc; i++)
    if (p->col_off[i + 1] <= p->col_off[i])
      return pv_error(PV_EFORMAT, "pivoted weight: col_off not increasing at %d", i);
  for (int b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *k = &p->blocks[b];
    if (k->rg < 0 || k->rg >= p->nr || k->cg < 0 || k->cg >= p->nc ||
        (b && k->rg < p->blocks[b - 1].rg))
      return pv_error(PV_EFORMAT, "pivoted weight: block %d out of range or unsorted", b);
    uint64_t sz = (uint64_t)(p->row_off[k->rg + 1] - p->row_off[k->rg]) *
                  (uint64_t)(p->col_off[k->cg + 1] - p->col_off[k->cg]) * (uint64_t)p->kk;
    if (k->offset > p->data_len || sz > p->data_len - k->offset)
      return pv_error(PV_EFORMAT, "pivoted weight: block %d data beyond %" PRIu64 " floats", b,
                      p->data_len);
  }
  return 0;
}

/* Pivot tables for the kernels. */
static int g_pivot_tables(const pv_graph *g, g_step *s, bool dry) {
  (void)g;
  const pv_pivot *p = s->pv;
  int rc = g_pivot_check(p);
  if (rc) return rc;
  if (dry) return 0;
  s->in_ch = malloc(sizeof(int32_t) * p->C);
  s->out_row = malloc(sizeof(int32_t) * p->M);
  s->row_rg = malloc(sizeof(int32_t) * p->M);
  s->rg_blk = malloc(sizeof(int32_t) * (p->nr + 1));
  s->bias_p = calloc(p->M, sizeof(float));
  if (!s->in_ch || !s->out_row || !s->row_rg || !s->rg_blk || !s->bias_p)
    return pv_error(PV_ENOMEM, "out of memory");
  /* A folded graph is an ordinary graph in stored order (docs/PIVOT.md,
   * "The contract"): the pivot's permutations already index stored
   * channels, and value.chan_perm is informative only. */
  for (int j = 0; j < p->C; j++) s->in_ch[j] = p->perm_c[j];
  for (int i = 0; i < p->M; i++) {
    s->out_row[i] = p->perm_r[i];
    if (s->bias) s->bias_p[i] = s->bias[p->perm_r[i]];
  }
  for (int r = 0; r < p->nr; r++)
    for (int i = p->row_off[r]; i < p->row_off[r + 1]; i++) s->row_rg[i] = r;
  int b = 0;
  for (int r = 0; r <= p->nr; r++) {
    while (b < p->n_blocks && p->blocks[b].rg < r) b++;
    s->rg_blk[r] = b;
  }
  return 0;
}

/* Bias of Gemm (C, broadcast over rows) or Conv (B), beta folded. */
static int g_bias(const pv_graph *g, const pv_node *n, int idx, float beta,
                  g_step *s, bool dry) {
  if (idx >= n->n_in || n->in[idx] < 0) return 0;
  const pv_value *b = &g->values[n->in[idx]];
  if (!b->data || b->dtype != PV_F32)
    return pv_error(PV_EUNSUPPORTED, "%s: bias is not a constant float tensor", n->name);
  size_t cnt = b->nbytes / sizeof(float);
  if (cnt != 1 && cnt != (size_t)s->M)
    return pv_error(PV_EUNSUPPORTED, "%s: bias of %zu values for %d outputs", n->name,
                    cnt, s->M);
  if (dry) return 0;
  s->bias = malloc(sizeof(float) * s->M);
  if (!s->bias) return pv_error(PV_ENOMEM, "out of memory");
  const float *src = b->data;
  for (int i = 0; i < s->M; i++) s->bias[i] = beta * src[cnt == 1 ? 0 : i];
  return 0;
}

static int g_parse_gemm(const pv_graph *g, const pv_node *n, g_step *s, bool dry) {
  bool gemm = !strcmp(n->op, "Gemm");
  if (n->n_in < 2 || n->n_out < 1) return pv_error(PV_EINVAL, "%s: needs 2 inputs", n->name);
  if (gemm && pv_attr_int(n, "transA", 0))
    return pv_error(PV_EUNSUPPORTED, "%s: transA", n->name);
  int wv = n->in[1];
  if (!g_is_const(g, wv)) return pv_error(PV_EUNSUPPORTED, "%s: weight is not constant", n->name);
  const pv_value *W = &g->values[wv];
  bool transB = gemm && pv_attr_int(n, "transB", 0);
  float alpha = gemm ? pv_attr_float(n, "alpha", 1.0f) : 1.0f;
  float beta = gemm ? pv_attr_float(n, "beta", 1.0f) : 1.0f;
  s->kind = G_GEMM;
  if (W->pivot) {
    if (W->pivot->kk != 1) return pv_error(PV_EUNSUPPORTED, "%s: pivot kk != 1", n->name);
    if (alpha != 1.0f) return pv_error(PV_EUNSUPPORTED, "%s: alpha with pivot", n->name);
    s->pv = W->pivot;
    s->M = W->pivot->M;
    s->K = s->C = W->pivot->C;
  } else {
    if (W->ndim != 2 || W->dtype != PV_F32)
      return pv_error(PV_EUNSUPPORTED, "%s: weight is not a 2-D float matrix", n->name);
    int64_t r = W->dims[0], c = W->dims[1];
    if (r <= 0 || c <= 0 || r > INT32_MAX / (c > 0 ? c : 1) ||
        W->nbytes < (size_t)(r * c) * sizeof(float))
      return pv_error(PV_EINVAL, "%s: weight size", n->name);
    s->M = (int)(transB ? r : c);
    s->K = s->C = (int)(transB ? c : r);
    if (!dry) {
      s->w = malloc(sizeof(float) * (size_t)s->M * s->K);
      if (!s->w) return pv_error(PV_ENOMEM, "out of memory");
      const float *src = W->data;
      for (int m = 0; m < s->M; m++)
        for (int k = 0; k < s->K; k++)
          s->w[(size_t)m * s->K + k] =
              alpha * (transB ? src[(size_t)m * s->K + k] : src[(size_t)k * s->M + m]);
    }
  }
  int rc = g_bias(g, n, 2, gemm ? beta : 1.0f, s, dry);
  if (!rc && s->pv) rc = g_pivot_tables(g, s, dry);
  return rc;
}

/* A 2-D attribute (kernel_shape, strides, dilations: 2 values; pads: 4)
 * into out[]; absent = dflt. */
static int g_ints(const pv_node *n, const char *name, int want, int dflt, int *out) {
  const int64_t *v;
  int k = pv_attr_ints(n, name, &v);
  for (int i = 0; i < want; i++) out[i] = dflt;
  if (k < 0) return 0;
  if (k != want)
    return pv_error(PV_EUNSUPPORTED, "%s: %s has %d values (2-D only)", n->name, name, k);
  for (int i = 0; i < want; i++) {
    if (v[i] < 0 || v[i] > 1 << 16)
      return pv_error(PV_EINVAL, "%s: %s out of range", n->name, name);
    out[i] = (int)v[i];
  }
  return 0;
}

static int g_parse_window(const pv_node *n, g_step *s, bool need_kernel) {
  const char *ap = pv_attr_str(n, "auto_pad", "NOTSET");
  if (strcmp(ap, "NOTSET") && strcmp(ap, "VALID"))
    return pv_error(PV_EUNSUPPORTED, "%s: auto_pad %s", n->name, ap);
  int rc, st[2], di[2], pa[4], ks[2];
  if ((rc = g_ints(n, "strides", 2, 1, st)) || (rc = g_ints(n, "dilations", 2, 1, di)) ||
      (rc = g_ints(n, "pads", 4, 0, pa)))
    return rc;
  s->sh = st[0], s->sw = st[1], s->dh = di[0], s->dw = di[1];
  s->ph = pa[0], s->pw = pa[1], s->ph1 = pa[2], s->pw1 = pa[3];
  if (need_kernel) {
    if ((rc = g_ints(n, "kernel_shape", 2, 0, ks))) return rc;
    s->kh = ks[0], s->kw = ks[1];
    if (s->kh <= 0 || s->kw <= 0) return pv_error(PV_EUNSUPPORTED, "%s: kernel_shape", n->name);
  }
  if (s->sh <= 0 || s->sw <= 0 || s->dh <= 0 || s->dw <= 0)
    return pv_error(PV_EINVAL, "%s: zero stride or dilation", n->name);
  return 0;
}

static int g_parse_conv(const pv_graph *g, const pv_node *n, g_step *s, bool dry) {
  if (n->n_in < 2 || n->n_out < 1) return pv_error(PV_EINVAL, "%s: needs 2 inputs", n->name);
  int wv = n->in[1];
  if (!g_is_const(g, wv)) return pv_error(PV_EUNSUPPORTED, "%s: weight is not constant", n->name);
  const pv_value *W = &g->values[wv];
  int rc = g_parse_window(n, s, false);
  if (rc) return rc;
  s->kind = G_CONV;
  int64_t grp = pv_attr_int(n, "group", 1);
  if (grp < 1 || grp > INT32_MAX) return pv_error(PV_EINVAL, "%s: group", n->name);
  s->group = (int)grp;
  if (W->ndim != 4 && !W->pivot)
    return pv_error(PV_EUNSUPPORTED, "%s: only 2-D convolution", n->name);
  if (W->ndim == 4) {
    for (int i = 0; i < 4; i++)
      if (W->dims[i] <= 0 || W->dims[i] > 1 << 20)
        return pv_error(PV_EINVAL, "%s: weight dims", n->name);
    s->M = (int)W->dims[0];
    s->kh = (int)W->dims[2];
    s->kw = (int)W->dims[3];
    s->C = (int)W->dims[1] * s->group;
  }
  if (W->pivot) {
    if (s->group != 1) return pv_error(PV_EUNSUPPORTED, "%s: pivoted grouped conv", n->name);
    if (W->ndim != 4) {
      int ks[2];
      if ((rc = g_ints(n, "kernel_shape", 2, 0, ks))) return rc;
      s->kh = ks[0];
      s->kw = ks[1];
      s->M = W->pivot->M;
      s->C = W->pivot->C;
    }
    if (W->pivot->kk != s->kh * s->kw || W->pivot->M != s->M || W->pivot->C != s->C)
      return pv_error(PV_EFORMAT, "%s: pivot does not match the weight shape", n->name);
    s->pv = W->pivot;
  }
  if (s->M % s->group || s->kh <= 0 || s->kw <= 0)
    return pv_error(PV_EINVAL, "%s: %d outputs for %d groups", n->name, s->M, s->group);
  int64_t K = (int64_t)(s->C / s->group) * s->kh * s->kw;
  if (K > INT32_MAX / 4) return pv_error(PV_ERANGE, "%s: weight too large", n->name);
  s->K = (int)K;
  if (!s->pv && !dry) {
    size_t cnt = (size_t)s->M * s->K;
    if (W->dtype != PV_F32 || W->nbytes < cnt * sizeof(float))
      return pv_error(PV_EINVAL, "%s: weight holds %zu bytes, needs %zu", n->name,
                      W->nbytes, cnt * sizeof(float));
    s->w = malloc(cnt * sizeof(float));
    if (!s->w) return pv_error(PV_ENOMEM, "out of memory");
    memcpy(s->w, W->data, cnt * sizeof(float));
  }
  rc = g_bias(g, n, 2, 1.0f, s, dry);
  if (!rc && s->pv) rc = g_pivot_tables(g, s, dry);
  return rc;
}

/* Constant input i as float or int64 values (at most max), or -1. */
static int g_const_values(const pv_graph *g, const pv_node *n, int i, double *out, int max) {
  if (i >= n->n_in || n->in[i] < 0) return -1;
  const pv_value *v = &g->values[n->in[i]];
  if (!v->data) return -1;
  size_t es = v->dtype == PV_F32 ? 4 : v->dtype == PV_I64 ? 8 : 0;
  if (!es) return -1;
  size_t cnt = v->nbytes / es;
  if (cnt > (size_t)max) return -1;
  for (size_t k = 0; k < cnt; k++)
    out[k] = es == 4 ? ((const float *)v->data)[k] : (double)((const int64_t *)v->data)[k];
  return (int)cnt;
}

/* Nearest-neighbour resize by integer factors on H and W. For an integer
 * factor f, asymmetric+floor and half_pixel+round_* both map output i to
 * input i / f (half_pixel puts i at i/f + (2r+1-f)/2f, strictly within half
 * a pixel of i/f, so no rounding tie arises). */
static int g_parse_resize(const pv_graph *g, const pv_node *n, g_step *s) {
  bool old = !strcmp(n->op, "Upsample") || g->opset < 11;
  const char *mode = pv_attr_str(n, "mode", "nearest");
  if (strcmp(mode, "nearest")) return pv_error(PV_EUNSUPPORTED, "%s: mode %s", n->name, mode);
  const char *ctm = old ? "asymmetric" : pv_attr_str(n, "coordinate_transformation_mode", "half_pixel");
  const char *nm = old ? "floor" : pv_attr_str(n, "nearest_mode", "round_prefer_floor");
  bool ok = (!strcmp(ctm, "asymmetric") && !strcmp(nm, "floor")) ||
            ((!strcmp(ctm, "half_pixel") || !strcmp(ctm, "pytorch_half_pixel")) &&
             (!strcmp(nm, "round_prefer_floor") || !strcmp(nm, "round_prefer_ceil")));
  if (!ok) return pv_error(PV_EUNSUPPORTED, "%s: %s with %s", n->name, ctm, nm);
  /* Opset 18's axes reorders or shortens scales: left to the CPU. */
  if (!old && g->opset >= 18 && pv_node_attr(n, "axes"))
    return pv_error(PV_EUNSUPPORTED, "%s: the axes attribute", n->name);
  double sc[8];
  int k = g_const_values(g, n, old ? 1 : 2, sc, 8);
  if (k != 4)
    return pv_error(PV_EUNSUPPORTED, "%s: needs 4 constant scales (sizes not supported)", n->name);
  if (sc[0] != 1 || sc[1] != 1 || sc[2] < 1 || sc[3] < 1 || sc[2] > 64 || sc[3] > 64 ||
      sc[2] != (int)sc[2] || sc[3] != (int)sc[3])
    return pv_error(PV_EUNSUPPORTED, "%s: scales must be [1,1,a,b] with integers a, b", n->name);
  s->kind = G_RESIZE;
  s->kh = (int)sc[2];
  s->kw = (int)sc[3];
  return 0;
}

/* Constant-mode Pad of the two spatial axes of a 4-D tensor. */
static int g_parse_pad(const pv_graph *g, const pv_node *n, g_step *s) {
  const char *mode = pv_attr_str(n, "mode", "constant");
  if (strcmp(mode, "constant")) return pv_error(PV_EUNSUPPORTED, "%s: mode %s", n->name, mode);
  double p[8];
  int k;
  if (g->opset < 11) {
    const int64_t *a;
    k = pv_attr_ints(n, "pads", &a);
    for (int i = 0; i < k && i < 8; i++) p[i] = (double)a[i];
    s->alpha = pv_attr_float(n, "value", 0.0f);
  } else {
    k = g_const_values(g, n, 1, p, 8);
    double v[1] = {0};
    if (n->n_in > 2 && n->in[2] >= 0 && g_const_values(g, n, 2, v, 1) != 1)
      return pv_error(PV_EUNSUPPORTED, "%s: constant_value is not a float constant", n->name);
    s->alpha = (float)v[0];
    if (n->n_in > 3 && n->in[3] >= 0) return pv_error(PV_EUNSUPPORTED, "%s: axes", n->name);
  }
  if (k != 8) return pv_error(PV_EUNSUPPORTED, "%s: 4-D constant pads only", n->name);
  if (p[0] || p[1] || p[4] || p[5])
    return pv_error(PV_EUNSUPPORTED, "%s: pads on batch or channels", n->name);
  for (int i = 0; i < 8; i++)
    if (p[i] < 0 || p[i] > 1 << 16) return pv_error(PV_EUNSUPPORTED, "%s: pads out of range", n->name);
  s->kind = G_PAD;
  s->ph = (int)p[2], s->pw = (int)p[3], s->ph1 = (int)p[6], s->pw1 = (int)p[7];
  return 0;
}

/* Parse node n into a step. dry: only decide whether it is supported
 * (no weight copies). On failure the message says why. */
static int g_step_parse(const pv_graph *g, const pv_node *n, g_step *s, bool dry) {
  memset(s, 0, sizeof *s);
  s->node = (int)(n - g->nodes);
  s->x = s->x2 = -1;
  if (n->n_in < 1 || n->n_out < 1 || n->in[0] < 0 || n->out[0] < 0)
    return pv_error(PV_EINVAL, "%s: missing input or output", n->name);
  if (n->domain && *n->domain)
    return pv_error(PV_EUNSUPPORTED, "%s: domain %s", n->name, n->domain);
  s->x = n->in[0];
  s->y = n->out[0];
  if (!g_is_f32(g, s->x) || !g_is_f32(g, s->y))
    return pv_error(PV_EUNSUPPORTED, "%s: float32 only", n->name);
  const char *op = n->op;
  int rc = 0;
  g_act_of(n, s);
  if (!strcmp(op, "Gemm") || !strcmp(op, "MatMul")) {
    rc = g_parse_gemm(g, n, s, dry);
  } else if (!strcmp(op, "Conv")) {
    rc = g_parse_conv(g, n, s, dry);
  } else if (!strcmp(op, "MaxPool") || !strcmp(op, "AveragePool")) {
    s->kind = op[0] == 'M' ? G_MAXPOOL : G_AVGPOOL;
    if (n->n_out > 1 && n->out[1] >= 0)
      return pv_error(PV_EUNSUPPORTED, "%s: MaxPool indices", n->name);
    if (pv_attr_int(n, "storage_order", 0))
      return pv_error(PV_EUNSUPPORTED, "%s: storage_order", n->name);
    rc = g_parse_window(n, s, true);
    if (!rc && (s->dh != 1 || s->dw != 1))
      rc = pv_error(PV_EUNSUPPORTED, "%s: dilated pooling", n->name);
    s->count_include_pad = (int)pv_attr_int(n, "count_include_pad", 0);
  } else if (!strcmp(op, "GlobalAveragePool")) {
    s->kind = G_GAP;
  } else if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") ||
             !strcmp(op, "Div")) {
    s->kind = G_BINARY;
    s->binop = op[0] == 'A' ? G_ADD : op[0] == 'S' ? G_SUB : op[0] == 'M' ? G_MUL : G_DIV;
    if (n->n_in != 2 || n->in[1] < 0) return pv_error(PV_EINVAL, "%s: needs 2 inputs", n->name);
    s->x2 = n->in[1];
    if (!g_is_f32(g, s->x2)) return pv_error(PV_EUNSUPPORTED, "%s: float32 only", n->name);
    for (int i = 0; i < 2; i++) {
      const pv_value *v = &g->values[n->in[i]];
      if (v->ndim > G_MAX_RANK)
        return pv_error(PV_EUNSUPPORTED, "%s: rank %d > %d", n->name, v->ndim, G_MAX_RANK);
    }
  } else if (!strcmp(op, "Relu") || !strcmp(op, "LeakyRelu") || !strcmp(op, "Sigmoid") ||
             !strcmp(op, "Tanh") || !strcmp(op, "Clip")) {
    s->kind = G_UNARY;
    if (n->act != PV_ACT_NONE)
      return pv_error(PV_EUNSUPPORTED, "%s: activation after activation", n->name);
    s->alpha = s->beta = 0;
    if (op[0] == 'R') s->act = PV_ACT_RELU;
    else if (op[0] == 'L') { s->act = PV_ACT_LEAKY; s->alpha = pv_attr_float(n, "alpha", 0.01f); }
    else if (op[0] == 'S') s->act = PV_ACT_SIGMOID;
    else if (op[0] == 'T') s->act = PV_ACT_TANH;
    else {
      s->act = PV_ACT_CLIP;
      s->alpha = pv_attr_float(n, "min", -3.4028235e38f);
      s->beta = pv_attr_float(n, "max", 3.4028235e38f);
      if ((rc = g_const_scalar(g, n, 1, &s->alpha)) || (rc = g_const_scalar(g, n, 2, &s->beta)))
        return rc;
    }
  } else if (!strcmp(op, "Concat")) {
    s->kind = G_CONCAT;
    s->axis = (int)pv_attr_int(n, "axis", 1);
    for (int i = 0; i < n->n_in; i++)
      if (n->in[i] < 0 || !g_is_f32(g, n->in[i]))
        return pv_error(PV_EUNSUPPORTED, "%s: input %d", n->name, i);
  } else if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape") || !strcmp(op, "Squeeze") ||
             !strcmp(op, "Unsqueeze") || !strcmp(op, "Identity") || !strcmp(op, "Dropout")) {
    /* Row-major data is unchanged: a device-side copy keeps the chain on
     * the device instead of a round trip through the CPU backend. */
    s->kind = G_COPY;
    if (n->act != PV_ACT_NONE) return pv_error(PV_EUNSUPPORTED, "%s: fused activation", n->name);
    if (!strcmp(op, "Dropout") && n->n_out > 1 && n->out[1] >= 0)
      return pv_error(PV_EUNSUPPORTED, "%s: Dropout mask output", n->name);
  } else if (!strcmp(op, "Resize") || !strcmp(op, "Upsample")) {
    rc = g_parse_resize(g, n, s);
  } else if (!strcmp(op, "Pad")) {
    rc = g_parse_pad(g, n, s);
  } else {
    return pv_error(PV_EUNSUPPORTED, "op %s", op);
  }
  if (rc) return rc;
  return 0;
}

/* Roles of the values of a partition. */
enum {
  G_V_NONE = 0,
  G_V_INPUT = 1,    /* read, produced outside: copied in each run */
  G_V_CONST = 2,    /* read as an activation but constant: uploaded once */
  G_V_INTERNAL = 4, /* produced inside */
  G_V_EXTERNAL = 8, /* produced inside and read outside: copied out */
};

/* Fill role[n_values] for the partition `nodes` with the steps already
 * parsed (weights consumed by a step are not inputs). */
static int g_value_roles(const pv_graph *g, const int *nodes, int n_nodes,
                         const g_step *steps, unsigned char *role) {
  memset(role, 0, g->n_values);
  char *mine = calloc(g->n_nodes ? g->n_nodes : 1, 1);
  if (!mine) return pv_error(PV_ENOMEM, "out of memory");
  for (int i = 0; i < n_nodes; i++) mine[nodes[i]] = 1;
  for (int i = 0; i < n_nodes; i++) {
    const pv_node *n = &g->nodes[nodes[i]];
    const g_step *s = &steps[i];
    int nact = s->kind == G_CONCAT ? n->n_in : s->kind == G_BINARY ? 2 : 1;
    for (int j = 0; j < nact; j++) {
      int v = n->in[j];
      if (v < 0 || (role[v] & G_V_INTERNAL)) continue;
      role[v] |= g->values[v].data ? G_V_CONST : G_V_INPUT;
    }
    role[s->y] |= G_V_INTERNAL;
  }
  for (int v = 0; v < g->n_values; v++) {
    if (!(role[v] & G_V_INTERNAL)) continue;
    for (int i = 0; i < g->n_outputs; i++)
      if (g->outputs[i] == v) role[v] |= G_V_EXTERNAL;
    for (int i = 0; i < g->n_nodes && !(role[v] & G_V_EXTERNAL); i++) {
      const pv_node *n = &g->nodes[i];
      if (!n->op || mine[i]) continue;
      for (int j = 0; j < n->n_in; j++)
        if (n->in[j] == v) role[v] |= G_V_EXTERNAL;
    }
  }
  free(mine);
  return 0;
}

/* Broadcast strides (in elements) of input t against output dims od,
 * right-aligned to G_MAX_RANK; 0 where t is broadcast. */
static int g_bcast(const pv_tensor *t, const pv_tensor *o, int64_t od[G_MAX_RANK],
                   int64_t st[G_MAX_RANK]) {
  if (o->ndim > G_MAX_RANK || t->ndim > o->ndim)
    return pv_error(PV_EUNSUPPORTED, "broadcast of rank %d to %d", t->ndim, o->ndim);
  int off = G_MAX_RANK - o->ndim, toff = G_MAX_RANK - t->ndim;
  int64_t stride = 1;
  for (int i = G_MAX_RANK - 1; i >= 0; i--) {
    od[i] = i >= off ? o->dims[i - off] : 1;
    int64_t td = i >= toff ? t->dims[i - toff] : 1;
    if (td != od[i] && td != 1)
      return pv_error(PV_ESHAPE, "cannot broadcast dim %" PRId64 " to %" PRId64, td, od[i]);
    st[i] = td == 1 ? 0 : stride;
    stride *= td;
  }
  return 0;
}

#endif
