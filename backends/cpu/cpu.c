/* pivot-backend-cpu.so: the CPU backend plugin. Supports every node: Conv,
 * Gemm and MatMul with constant weights (dense or pivoted) run on the
 * packed GEMM kernels, depthwise Conv and 2-D MaxPool run direct,
 * everything else falls back to the core reference ops.
 *
 * Environment: PIVOT_CPU_ISA=avx512|avx2|neon|c forces a kernel set (tests,
 * comparisons); an ISA this CPU lacks is an init error. PIVOT_CPU_CONV=gemm
 * runs convolutions on the GEMM kernels even where the spatially
 * vectorised AVX-512 kernel (conv-nv.c) would take them (comparisons);
 * =direct keeps 3x3 layers off Winograd, =winograd puts every dense 3x3
 * stride-1 layer on it whatever its size (tests of each ISA).
 */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#include "conv-nv.h"
#include "cpu-impl.h"
#include "ops-internal.h" /* pv_pad_geom, pv_node_in: Pad read as the reference op does */
#include "pv-backend.h"

typedef struct cpu_ctx {
  pv_cpu_pool *pool;
  const pv_cpu_isa *isa;
  bool profile; /* PIVOT_CPU_PROFILE set: time each op */
  bool conv_gemm; /* PIVOT_CPU_CONV=gemm: convolutions on the GEMM path only */
  bool no_wino;   /* PIVOT_CPU_CONV=gemm or direct: no Winograd */
  bool all_wino;  /* PIVOT_CPU_CONV=winograd: Winograd wherever it applies */
} cpu_ctx;

enum op_kind { OP_REF, OP_FC, OP_CONV, OP_DW, OP_MAXPOOL, OP_ADD };

typedef struct cpu_op {
  enum op_kind kind;
  const pv_node *node;
  pv_cpu_mat *mat;   /* FC, CONV */
  float *w_dw;       /* DW: [C][kh][kw], owned */
  float *bias;       /* [M] or NULL, owned */
  int32_t M;
  int64_t K;         /* FC: input features */
  int64_t cin, group, kh, kw, sh, sw, dh, dw;
  int64_t pads[4];   /* top, left, bottom, right (explicit pads) */
  bool one_d;        /* a 1-D convolution run with height 1 */
  int auto_pad;      /* 0 NOTSET/VALID-explicit, 1 SAME_UPPER, 2 SAME_LOWER */
  bool ceil_mode;    /* MaxPool */
  bool pool_next;    /* CONV: the next op is a 2x2 pool of its output only */
  bool wino;         /* CONV: mat is Winograd-packed (winograd.c) */
  bool pad_pool;     /* a Pad whose output only the next op, a MaxPool
                        without pads of its own, reads */
} cpu_op;

typedef struct cpu_plan {
  cpu_ctx *ctx;
  const pv_graph *g;
  int n_ops;
  cpu_op *ops;
} cpu_plan;

/* ---------------------------------------------------------------- helpers */

static const pv_value *const_value(const pv_graph *g, const pv_node *n, int i) {
  if (i >= n->n_in || n->in[i] < 0 || n->in[i] >= g->n_values) return NULL;
  const pv_value *v = &g->values[n->in[i]];
  if (!v->data && !v->pivot) return NULL;
  if (v->dtype != PV_F32) return NULL;
  return v;
}

static int64_t value_numel(const pv_value *v) {
  int64_t n = 1;
  for (int i = 0; i < v->ndim; i++) {
    if (v->dims[i] < 0 || (v->dims[i] && n > INT64_MAX / v->dims[i])) return -1;
    n *= v->dims[i];
  }
  return n;
}

/* Dense logical M x (C*kk) copy of a pivoted matrix; NULL on ENOMEM. */
static float *pivot_expand(const pv_pivot *p) {
  int64_t K = (int64_t)p->C * p->kk;
  float *d = pv_aligned_alloc((size_t)p->M * (size_t)K * sizeof(float));
  if (!d) return NULL;
  for (int b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *bl = &p->blocks[b];
    int32_t r0 = p->row_off[bl->rg], r1 = p->row_off[bl->rg + 1];
    int32_t c0 = p->col_off[bl->cg], c1 = p->col_off[bl->cg + 1];
    int64_t kb = (int64_t)(c1 - c0) * p->kk;
    const float *src = p->data + bl->offset;
    for (int32_t r = r0; r < r1; r++)
      for (int32_t c = c0; c < c1; c++)
        for (int t = 0; t < p->kk; t++)
          d[(int64_t)p->perm_r[r] * K + (int64_t)p->perm_c[c] * p->kk + t] =
              src[(r - r0) * kb + (c - c0) * p->kk + t];
  }
  return d;
}

/* Bias of M entries from an optional constant input (numel M or 1),
 * scaled; *out NULL when absent. Returns 1 when the input exists but is
 * not usable as a bias (the node then falls back to the reference). */
static int load_bias(const pv_graph *g, const pv_node *n, int i, int32_t M,
                     float scale, float **out) {
  *out = NULL;
  if (i >= n->n_in || n->in[i] < 0) return 0;
  const pv_value *v = const_value(g, n, i);
  if (!v || !v->data) return 1;
  int64_t cnt = value_numel(v);
  if (cnt != M && cnt != 1) return 1;
  float *b = malloc((size_t)M * sizeof *b);
  if (!b) return -1;
  const float *src = v->data;
  for (int32_t m = 0; m < M; m++) b[m] = src[cnt == 1 ? 0 : m] * scale;
  *out = b;
  return 0;
}

/* ---------------------------------------------------------------- prepare */

static void cpu_release(void *vplan);


/* Returns 0 (op filled, maybe OP_REF) or a negative code. */
static int prep_fc(const pv_graph *g, const pv_node *n, cpu_op *op) {
  bool gemm = !strcmp(n->op, "Gemm");
  const pv_value *w = const_value(g, n, 1);
  if (!w || w->ndim != 2 || n->n_out < 1) return 0;
  float alpha = 1, beta = 1;
  int64_t transB = 0;
  if (gemm) {
    if (pv_attr_int(n, "transA", 0)) return 0;
    transB = pv_attr_int(n, "transB", 0);
    alpha = pv_attr_float(n, "alpha", 1.0f);
    beta = pv_attr_float(n, "beta", 1.0f);
  }
  int64_t M = transB ? w->dims[0] : w->dims[1];
  int64_t K = transB ? w->dims[1] : w->dims[0];
  if (M <= 0 || K <= 0 || M > INT32_MAX) return 0;
  if (w->pivot) {
    if (w->pivot->M != M || (int64_t)w->pivot->C * w->pivot->kk != K)
      return pv_error(PV_ESHAPE, "node %s: pivoted weight is %dx%lld, "
                      "expected %lldx%lld", n->name, w->pivot->M,
                      (long long)w->pivot->C * w->pivot->kk, (long long)M,
                      (long long)K);
  }
  if (gemm) {
    int r = load_bias(g, n, 2, (int32_t)M, beta, &op->bias);
    if (r < 0) return pv_error(PV_ENOMEM, "cpu: out of memory");
    if (r > 0) return 0;
  }
  op->mat = w->pivot ? pv_cpu_mat_pivot(w->pivot, alpha)
                     : pv_cpu_mat_dense(w->data, (int32_t)M, K,
                                        transB ? K : 1, transB ? 1 : M, 1, alpha);
  if (!op->mat) return pv_error_prefix(PV_EBACKEND, "node %s", n->name);
  op->kind = OP_FC;
  op->M = (int32_t)M;
  op->K = K;
  return 0;
}

/* Dense 3x3 layers from this many input and output channels run as
 * Winograd F(2x2, 3x3): 16 multiplies per 2x2 output tile and channel
 * instead of 36. Below, the transforms (which touch every input and output
 * value 16 times) cost more than the multiplies they save. */
#define WINO_MIN_C 64
#define WINO_MIN_M 64
/* Where convolutions otherwise read their input in place (the ISA's
 * ukr_cols: AVX2, NEON, C), that path beats Winograd below 128 input
 * channels and on small planes. AVX2 here, batch 1, one thread: 64->128
 * at 52x52 4.9 ms direct against 5.9 Winograd, at 7x7 0.09 against 0.18
 * (2.6x at batch 32); 128->256 at 26x26 4.7 against 3.9, 512->1024 at
 * 13x13 22 against 16. */
#define WINO_MIN_C_COLS 128
#define WINO_MIN_PIXELS_COLS 100

/* Whether a dense 3x3 stride-1 layer with cin -> M channels runs as
 * Winograd; pixels = its output plane where shapes are known, else 0. */
static bool wino_worth(const pv_cpu_isa *isa, int64_t cin, int64_t M,
                       int64_t pixels) {
  if (!isa->ukr_cols) return cin >= WINO_MIN_C && M >= WINO_MIN_M;
  return cin >= WINO_MIN_C_COLS && M >= WINO_MIN_M &&
         (pixels == 0 || pixels >= WINO_MIN_PIXELS_COLS);
}

/* Pixels of a node's 4-D output plane where shape inference knew them
 * at load, else 0. */
static int64_t out_pixels(const pv_graph *g, const pv_node *n) {
  if (n->n_out < 1 || n->out[0] < 0) return 0;
  const pv_value *y = &g->values[n->out[0]];
  if (y->ndim != 4 || y->dims[2] <= 0 || y->dims[3] <= 0) return 0;
  return y->dims[2] * y->dims[3];
}

/* strides, dilations and pads of a 2-D window, or of a 1-D one (one)
 * as height 1; false where their lengths do not fit. */
static bool window_attrs(const pv_node *n, cpu_op *op, bool one) {
  const int64_t *a;
  int na;
  if ((na = pv_attr_ints(n, "strides", &a)) >= 0) {
    if (na != (one ? 1 : 2)) return false;
    op->sh = one ? 1 : a[0];
    op->sw = a[na - 1];
  }
  if ((na = pv_attr_ints(n, "dilations", &a)) >= 0) {
    if (na != (one ? 1 : 2)) return false;
    op->dh = one ? 1 : a[0];
    op->dw = a[na - 1];
  }
  if ((na = pv_attr_ints(n, "pads", &a)) >= 0) {
    if (na != (one ? 2 : 4)) return false;
    if (one) {
      op->pads[1] = a[0];
      op->pads[3] = a[1];
    } else {
      for (int i = 0; i < 4; i++) op->pads[i] = a[i];
    }
  }
  op->one_d = one;
  return true;
}

static int prep_conv(const pv_graph *g, const pv_node *n, cpu_op *op,
                     const cpu_ctx *ctx) {
  const pv_value *w = const_value(g, n, 1);
  /* 1-D convolutions (audio, sequence models) run as 2-D ones of height
   * 1: the same packing and kernels, weights [M, C, 1, k]. */
  if (!w || (w->ndim != 4 && w->ndim != 3) || n->n_out < 1) return 0;
  const bool one = w->ndim == 3;
  int64_t M = w->dims[0], cin = w->dims[1], kh = one ? 1 : w->dims[2],
          kw = w->dims[w->ndim - 1];
  int64_t group = pv_attr_int(n, "group", 1);
  if (M <= 0 || cin <= 0 || kh <= 0 || kw <= 0 || group <= 0 ||
      M % group || M > INT32_MAX || cin > INT32_MAX / kh / kw)
    return 0;
  op->sh = op->sw = op->dh = op->dw = 1;
  if (!window_attrs(n, op, one)) return 0;
  if (op->sh <= 0 || op->sw <= 0 || op->dh <= 0 || op->dw <= 0) return 0;
  for (int i = 0; i < 4; i++)
    if (op->pads[i] < 0) return 0;
  const char *ap = pv_attr_str(n, "auto_pad", "NOTSET");
  if (!strcmp(ap, "SAME_UPPER")) op->auto_pad = 1;
  else if (!strcmp(ap, "SAME_LOWER")) op->auto_pad = 2;
  else if (!strcmp(ap, "VALID")) memset(op->pads, 0, sizeof op->pads);
  else if (strcmp(ap, "NOTSET")) return 0;
  int r = load_bias(g, n, 2, (int32_t)M, 1.0f, &op->bias);
  if (r < 0) return pv_error(PV_ENOMEM, "cpu: out of memory");
  if (r > 0) return 0;
  op->M = (int32_t)M;
  op->cin = cin;
  op->group = group;
  op->kh = kh;
  op->kw = kw;
  op->K = cin * kh * kw;

  float *dense = NULL;
  if (w->pivot && (w->pivot->M != M || w->pivot->kk != kh * kw ||
                   (int64_t)w->pivot->C * w->pivot->kk != op->K))
    return pv_error(PV_ESHAPE, "node %s: pivoted weight (%d x %d channels x "
                    "%d taps) does not match its dims [%lld,%lld,%lld,%lld]",
                    n->name, w->pivot->M, w->pivot->C, w->pivot->kk,
                    (long long)M, (long long)cin, (long long)kh, (long long)kw);
  if (w->pivot && group == 1) {
    op->mat = pv_cpu_mat_pivot(w->pivot, 1.0f);
    if (!op->mat) return pv_error_prefix(PV_EBACKEND, "node %s", n->name);
    op->kind = OP_CONV;
    return 0;
  }
  const float *wd = w->data;
  if (!wd) {
    dense = pivot_expand(w->pivot);
    if (!dense) return pv_error(PV_ENOMEM, "cpu: out of memory");
    wd = dense;
  }
  if (group == M && cin == 1) {
    op->w_dw = malloc((size_t)M * kh * kw * sizeof(float));
    if (!op->w_dw) {
      pv_free(dense);
      return pv_error(PV_ENOMEM, "cpu: out of memory");
    }
    memcpy(op->w_dw, wd, (size_t)M * kh * kw * sizeof(float));
    op->kind = OP_DW;
  } else if (!ctx->no_wino && group == 1 && kh == 3 && kw == 3 &&
             op->sh == 1 && op->sw == 1 && op->dh == 1 && op->dw == 1 &&
             (ctx->all_wino || wino_worth(ctx->isa, cin, M, out_pixels(g, n)))) {
    op->mat = pv_cpu_wino_pack(wd, (int32_t)M, cin);
    if (!op->mat) {
      pv_free(dense);
      return pv_error_prefix(PV_EBACKEND, "node %s", n->name);
    }
    op->wino = true;
    op->kind = OP_CONV;
  } else {
    op->mat = pv_cpu_mat_dense(wd, (int32_t)M, op->K, op->K, 1, (int)group, 1.0f);
    if (!op->mat) {
      pv_free(dense);
      return pv_error_prefix(PV_EBACKEND, "node %s", n->name);
    }
    op->kind = OP_CONV;
  }
  pv_free(dense);
  return 0;
}

/* MaxPool, 2-D, without the optional Indices output. */
static int prep_maxpool(const pv_graph *g, const pv_node *n, cpu_op *op) {
  (void)g;
  const int64_t *a;
  if (n->n_in < 1 || n->n_out < 1 || (n->n_out > 1 && n->out[1] >= 0))
    return 0;
  if (pv_attr_ints(n, "kernel_shape", &a) != 2 || a[0] <= 0 || a[1] <= 0)
    return 0;
  op->kh = a[0];
  op->kw = a[1];
  op->sh = op->sw = op->dh = op->dw = 1;
  if (!window_attrs(n, op, false)) return 0;
  if (op->sh <= 0 || op->sw <= 0 || op->dh <= 0 || op->dw <= 0) return 0;
  for (int i = 0; i < 4; i++)
    if (op->pads[i] < 0 || op->pads[i] >= ((i & 1) ? op->kw : op->kh) * 64)
      return 0;
  const char *ap = pv_attr_str(n, "auto_pad", "NOTSET");
  if (!strcmp(ap, "SAME_UPPER")) op->auto_pad = 1;
  else if (!strcmp(ap, "SAME_LOWER")) op->auto_pad = 2;
  else if (!strcmp(ap, "VALID")) memset(op->pads, 0, sizeof op->pads);
  else if (strcmp(ap, "NOTSET")) return 0;
  op->ceil_mode = pv_attr_int(n, "ceil_mode", 0) != 0;
  op->kind = OP_MAXPOOL;
  return 0;
}

static void op_clear(cpu_op *op) {
  pv_cpu_mat_free(op->mat);
  free(op->w_dw);
  free(op->bias);
  memset(op, 0, sizeof *op);
}

/* How many times value v is read: by nodes, and twice for a graph output. */
static int value_uses(const pv_graph *g, int v) {
  int uses = 0;
  for (int k = 0; k < g->n_nodes; k++)
    for (int a = 0; a < g->nodes[k].n_in; a++) uses += g->nodes[k].in[a] == v;
  for (int k = 0; k < g->n_outputs; k++) uses += 2 * (g->outputs[k] == v);
  return uses;
}

static int cpu_prepare(void *vctx, const pv_graph *g, const int *nodes,
                       int n_nodes, void **out) {
  cpu_ctx *ctx = vctx;
  if (n_nodes < 0) return pv_error(PV_EINVAL, "cpu: negative node count");
  cpu_plan *plan = calloc(1, sizeof *plan);
  if (!plan) return pv_error(PV_ENOMEM, "cpu: out of memory");
  plan->ops = calloc((size_t)(n_nodes ? n_nodes : 1), sizeof *plan->ops);
  if (!plan->ops) {
    free(plan);
    return pv_error(PV_ENOMEM, "cpu: out of memory");
  }
  plan->ctx = ctx;
  plan->g = g;
  for (int i = 0; i < n_nodes; i++) {
    if (nodes[i] < 0 || nodes[i] >= g->n_nodes) {
      plan->n_ops = i;
      cpu_release(plan);
      return pv_error(PV_EINVAL, "cpu: node index %d out of range", nodes[i]);
    }
    const pv_node *n = &g->nodes[nodes[i]];
    cpu_op *op = &plan->ops[i];
    op->node = n;
    op->kind = OP_REF;
    int r = 0;
    if (!strcmp(n->op, "Gemm") || !strcmp(n->op, "MatMul"))
      r = prep_fc(g, n, op);
    else if (!strcmp(n->op, "Conv"))
      r = prep_conv(g, n, op, ctx);
    else if (!strcmp(n->op, "MaxPool"))
      r = prep_maxpool(g, n, op);
    else if (!strcmp(n->op, "Add") && n->n_in == 2 && n->n_out == 1 &&
             n->in[0] >= 0 && n->in[1] >= 0 && n->out[0] >= 0)
      op->kind = OP_ADD; /* same shapes checked per run, else the reference */
    plan->n_ops = i + 1;
    if (r) {
      cpu_release(plan);
      return r;
    }
    if (op->kind == OP_REF) {
      /* Half-prepared state (a bias copied before giving up) is dropped. */
      const pv_node *keep = op->node;
      op_clear(op);
      op->node = keep;
      op->kind = OP_REF;
    }
  }
  for (int i = 0; i + 1 < plan->n_ops; i++) {
    const cpu_op *c = &plan->ops[i], *p = &plan->ops[i + 1];
    if (p->kind != OP_MAXPOOL) continue;
    int v = c->node->out[0];
    bool own_pads = p->auto_pad || p->ceil_mode || p->pads[0] || p->pads[1] ||
                    p->pads[2] || p->pads[3];
    if (p->node->in[0] != v || own_pads || value_uses(g, v) != 1) continue;
    /* A Conv whose output only a following 2x2 stride-2 MaxPool reads can
     * store pooled tiles (conv-nv.c); its own output is then never read. */
    if (c->kind == OP_CONV)
      plan->ops[i].pool_next = p->kh == 2 && p->kw == 2 && p->sh == 2 &&
                               p->sw == 2 && p->dh == 1 && p->dw == 1;
    /* A Pad before a pool (darknet's stride-1 maxpool) is folded into
     * the pool when it turns out constant, fp32 and spatial at run time. */
    if (c->kind == OP_REF && !strcmp(c->node->op, "Pad") && c->node->n_in >= 1 &&
        c->node->in[0] >= 0)
      plan->ops[i].pad_pool = true;
  }
  *out = plan;
  return 0;
}

static void cpu_release(void *vplan) {
  cpu_plan *plan = vplan;
  if (!plan) return;
  for (int i = 0; i < plan->n_ops; i++) op_clear(&plan->ops[i]);
  free(plan->ops);
  free(plan);
}

/* ---------------------------------------------------------------- execute */

static int f32_tensor(const pv_tensor *t, const pv_node *n, const char *what) {
  if (t->dtype != PV_F32 || !t->data)
    return pv_error(PV_ETYPE, "node %s: %s must be FP32 with data, got %s",
                    n->name, what, pv_dtype_name(t->dtype));
  return 0;
}

static int exec_fc(cpu_ctx *ctx, const cpu_op *op, pv_run_ctx *rc) {
  const pv_node *n = op->node;
  const pv_tensor *x = &rc->vals[n->in[0]];
  pv_tensor *y = &rc->vals[n->out[0]];
  int r;
  if ((r = f32_tensor(x, n, "input")) || (r = f32_tensor(y, n, "output")))
    return r;
  int64_t xn = pv_tensor_numel(x), yn = pv_tensor_numel(y);
  if (x->ndim < 1 || xn < 0 || x->dims[x->ndim - 1] != op->K)
    return pv_error(PV_ESHAPE, "node %s: input's last dimension must be %lld",
                    n->name, (long long)op->K);
  int64_t N = xn / op->K;
  if (yn < 0 || N > INT64_MAX / op->M || yn != N * op->M)
    return pv_error(PV_ESHAPE, "node %s: output has %lld elements, expected "
                    "%lld", n->name, (long long)yn, (long long)(N * op->M));
  pv_cpu_bsrc b = {.x = x->data, .ld_k = 1, .ld_n = op->K};
  pv_cpu_out o = {.y = y->data, .ld_m = 1, .ld_n = op->M, .bias = op->bias,
                  .act = n->act, .alpha = n->act_alpha, .beta = n->act_beta};
  return pv_cpu_gemm(ctx->pool, ctx->isa, op->mat, &b, N, &o);
}

/* Top, left, bottom, right pads of a Conv/MaxPool window: the explicit
 * ones, or for auto_pad SAME those that make the output ceil(in/stride)
 * (1 = SAME_UPPER puts the odd pixel at the end). */
static int window_pads(const cpu_op *op, const pv_node *n, int64_t H, int64_t W,
                       int64_t OH, int64_t OW, int64_t pad[4]) {
  for (int i = 0; i < 4; i++) pad[i] = op->pads[i];
  if (!op->auto_pad) return 0;
  if (OH != (H + op->sh - 1) / op->sh || OW != (W + op->sw - 1) / op->sw)
    return pv_error(PV_ESHAPE, "node %s: output %lldx%lld is not the SAME "
                    "padding of %lldx%lld", n->name, (long long)OH,
                    (long long)OW, (long long)H, (long long)W);
  int64_t ekh = (op->kh - 1) * op->dh + 1, ekw = (op->kw - 1) * op->dw + 1;
  int64_t th = (OH - 1) * op->sh + ekh - H, tw = (OW - 1) * op->sw + ekw - W;
  if (th < 0) th = 0;
  if (tw < 0) tw = 0;
  pad[0] = op->auto_pad == 1 ? th / 2 : th - th / 2;
  pad[1] = op->auto_pad == 1 ? tw / 2 : tw - tw / 2;
  pad[2] = th - pad[0];
  pad[3] = tw - pad[1];
  return 0;
}

/* Whether two tensors' memory overlaps. The memory plan lets a value
 * take the place of one whose last reader ran before it was made, so
 * when two nodes run as one, the second's output may lie over the first's
 * input: a fused op checks, and runs the two apart where it does. */
static bool overlaps(const pv_tensor *a, const pv_tensor *b) {
  size_t na = pv_tensor_nbytes(a), nb = pv_tensor_nbytes(b);
  const char *pa = a->data, *pb = b->data;
  if (!pa || !pb || na == SIZE_MAX || nb == SIZE_MAX) return true;
  return pa < pb + nb && pb < pa + na;
}

/* The output of a pool fused into this conv (op->pool_next), checked
 * against the pooling of the conv's output and against overlapping the
 * conv's input x; NULL when it does not fit (the pool then runs on its
 * own and reports any error). */
static float *fused_pool_out(const cpu_op *pool, pv_run_ctx *rc,
                             const pv_tensor *x, int64_t N, int64_t M,
                             int64_t OH, int64_t OW) {
  const pv_tensor *t = &rc->vals[pool->node->out[0]];
  if (t->dtype != PV_F32 || !t->data || t->ndim != 4 || t->dims[0] != N ||
      t->dims[1] != M || t->dims[2] != OH / 2 || t->dims[3] != OW / 2 ||
      overlaps(t, x))
    return NULL;
  return t->data;
}

static int exec_conv(cpu_ctx *ctx, const cpu_op *op, pv_run_ctx *rc,
                     const cpu_op *pool, bool *pooled) {
  const pv_node *n = op->node;
  const pv_tensor *x = &rc->vals[n->in[0]];
  pv_tensor *y = &rc->vals[n->out[0]];
  int r;
  if ((r = f32_tensor(x, n, "input")) || (r = f32_tensor(y, n, "output")))
    return r;
  const int rank = op->one_d ? 3 : 4;
  if (x->ndim != rank || y->ndim != rank)
    return pv_error(PV_ESHAPE, "node %s: Conv needs %d-D input and output",
                    n->name, rank);
  int64_t N = x->dims[0], C = x->dims[1], H = op->one_d ? 1 : x->dims[2],
          W = x->dims[rank - 1];
  int64_t OH = op->one_d ? 1 : y->dims[2], OW = y->dims[rank - 1];
  if (C != op->cin * op->group || y->dims[0] != N || y->dims[1] != op->M)
    return pv_error(PV_ESHAPE, "node %s: input has %lld channels, weights "
                    "expect %lld", n->name, (long long)C,
                    (long long)(op->cin * op->group));
  int64_t ekh = (op->kh - 1) * op->dh + 1, ekw = (op->kw - 1) * op->dw + 1;
  int64_t pad[4];
  int prc = window_pads(op, n, H, W, OH, OW, pad);
  if (prc) return prc;
  int64_t pt = pad[0], pl = pad[1], pb = pad[2], pr = pad[3];
  if (H + pt + pb < ekh || W + pl + pr < ekw ||
      OH != (H + pt + pb - ekh) / op->sh + 1 ||
      OW != (W + pl + pr - ekw) / op->sw + 1)
    return pv_error(PV_ESHAPE, "node %s: output %lldx%lld does not match the "
                    "convolution of %lldx%lld", n->name, (long long)OH,
                    (long long)OW, (long long)H, (long long)W);
  pv_cpu_out o = {.ld_n = 1, .bias = op->bias, .act = n->act,
                  .alpha = n->act_alpha, .beta = n->act_beta};
  const float *xd = x->data;
  float *yd = y->data;
  if (op->kind == OP_DW) {
    pv_cpu_dwconv d = {C, H, W, OH, OW, op->kh, op->kw, op->sh, op->sw,
                       pt, pl, op->dh, op->dw};
    for (int64_t i = 0; i < N; i++)
      pv_cpu_depthwise(ctx->pool, ctx->isa, &d, xd + i * C * H * W, op->w_dw,
                       yd + i * op->M * OH * OW, &o);
    return 0;
  }
  if (op->wino) {
    pv_cpu_wino_geom wg = {N, C, H, W, OH, OW, pt, pl};
    o.y = yd;
    return pv_cpu_wino_conv(ctx->pool, ctx->isa, op->mat, &wg, xd, &o);
  }
  bool pointwise = op->kh == 1 && op->kw == 1 && op->sh == 1 && op->sw == 1 &&
                   !pt && !pl && OH == H && OW == W;
  o.ld_m = OH * OW;
  float *yp = pool && !ctx->conv_gemm ? fused_pool_out(pool, rc, x, N, op->M, OH, OW)
                                      : NULL;
  for (int64_t i = 0; i < N; i++) {
    pv_cpu_bsrc b = {.x = xd + i * C * H * W};
    if (pointwise) {
      b.ld_k = H * W;
      b.ld_n = 1;
    } else {
      b.conv = true;
      b.H = H, b.W = W, b.kh = op->kh, b.kw = op->kw, b.sh = op->sh;
      b.sw = op->sw, b.ph = pt, b.pw = pl, b.dh = op->dh, b.dw = op->dw;
      b.OW = OW;
    }
    o.y = yd + i * op->M * OH * OW;
    if (yp && pv_cpu_conv_nv_ok(ctx->isa, op->mat, &b, OH * OW)) {
      int64_t pl = (OH / 2) * (OW / 2);
      r = pv_cpu_conv_nv_pool(ctx->pool, ctx->isa, op->mat, &b, OH * OW, &o,
                              yp + i * op->M * pl, pl);
      if (r < 0) return r;
      if (r == 0) { /* the same path for every image */
        *pooled = true;
        continue;
      }
      yp = NULL;
    }
    if (yp) { /* kernel sets that read convolutions in place */
      int64_t pl = (OH / 2) * (OW / 2);
      r = pv_cpu_conv_cols_pool(ctx->pool, ctx->isa, op->mat, &b, OH * OW, &o,
                                yp + i * op->M * pl, pl);
      if (r < 0) return r;
      if (r == 0) {
        *pooled = true;
        continue;
      }
      yp = NULL;
    }
    if (!ctx->conv_gemm && pv_cpu_conv_nv_ok(ctx->isa, op->mat, &b, OH * OW))
      r = pv_cpu_conv_nv(ctx->pool, ctx->isa, op->mat, &b, OH * OW, &o);
    else
      r = pv_cpu_gemm(ctx->pool, ctx->isa, op->mat, &b, OH * OW, &o);
    if (r) return r;
  }
  return 0;
}

/* MaxPool op on x (its own input, or a fused Pad's input with cpad: the
 * Pad's top, left, bottom, right pads and its value). */
static int exec_maxpool(cpu_ctx *ctx, const cpu_op *op, pv_run_ctx *rc,
                        const pv_tensor *x, const int64_t *cpad, float cval) {
  const pv_node *n = op->node;
  pv_tensor *y = &rc->vals[n->out[0]];
  int r;
  if ((r = f32_tensor(x, n, "input")) || (r = f32_tensor(y, n, "output")))
    return r;
  if (x->ndim != 4 || y->ndim != 4 || x->dims[0] != y->dims[0] ||
      x->dims[1] != y->dims[1])
    return pv_error(PV_ESHAPE, "node %s: MaxPool needs 4-D input and output "
                    "with the same batch and channels", n->name);
  int64_t H = x->dims[2], W = x->dims[3], OH = y->dims[2], OW = y->dims[3];
  int64_t ekh = (op->kh - 1) * op->dh + 1, ekw = (op->kw - 1) * op->dw + 1;
  int64_t pad[4];
  int prc = cpad ? 0 : window_pads(op, n, H, W, OH, OW, pad);
  if (prc) return prc;
  if (cpad) memcpy(pad, cpad, sizeof pad);
  int64_t pt = pad[0], pl = pad[1], pb = pad[2], pr = pad[3];
  int64_t sh = H + pt + pb - ekh, sw = W + pl + pr - ekw;
  int64_t fh = sh / op->sh + 1, fw = sw / op->sw + 1;
  int64_t ch = (sh + op->sh - 1) / op->sh + 1, cw = (sw + op->sw - 1) / op->sw + 1;
  if (sh < 0 || sw < 0 || !((OH == fh && OW == fw) ||
                            (op->ceil_mode && OH == ch && OW == cw)))
    return pv_error(PV_ESHAPE, "node %s: output %lldx%lld does not match "
                    "pooling %lldx%lld", n->name, (long long)OH,
                    (long long)OW, (long long)H, (long long)W);
  pv_cpu_pool2d d = {x->dims[0] * x->dims[1], H, W, OH, OW, op->kh, op->kw,
                     op->sh, op->sw, pt, pl, op->dh, op->dw, cpad != NULL,
                     cval};
  pv_cpu_maxpool(ctx->pool, ctx->isa, &d, x->data, y->data);
  return 0;
}

/* Add of two fp32 tensors of one shape; any other Add (broadcast,
 * integers) goes to the reference op. */
static int exec_add(cpu_ctx *ctx, const cpu_plan *plan, const cpu_op *op,
                    pv_run_ctx *rc) {
  const pv_node *n = op->node;
  const pv_tensor *a = &rc->vals[n->in[0]], *b = &rc->vals[n->in[1]];
  pv_tensor *y = &rc->vals[n->out[0]];
  bool same = a->dtype == PV_F32 && b->dtype == PV_F32 && y->dtype == PV_F32 &&
              a->data && b->data && y->data && a->ndim == b->ndim &&
              a->ndim == y->ndim;
  for (int i = 0; same && i < a->ndim; i++)
    same = a->dims[i] == b->dims[i] && a->dims[i] == y->dims[i];
  if (!same) return pv_ref_node(plan->g, n, rc->vals);
  pv_cpu_add(ctx->pool, a->data, b->data, y->data, pv_tensor_numel(y), n->act,
             n->act_alpha, n->act_beta);
  return 0;
}

/* op->pad_pool: where the Pad is constant, fp32, non-negative and only on
 * the two spatial axes of a 4-D tensor, run the next op (the MaxPool) on
 * the Pad's input with its taps outside counting as the pad value, and
 * skip the Pad; *fused says so. Otherwise (*fused false) nothing runs and
 * the Pad takes the reference op, which reports what is wrong with it. */
static int exec_pad_pool(cpu_ctx *ctx, const cpu_plan *plan, const cpu_op *op,
                         pv_run_ctx *rc, bool *fused) {
  const pv_node *n = op->node;
  const pv_tensor *x = &rc->vals[n->in[0]];
  *fused = false;
  if (x->dtype != PV_F32 || x->ndim != 4 || !x->data ||
      strcmp(pv_attr_str(n, "mode", "constant"), "constant"))
    return 0;
  int64_t pb[PV_MAX_DIMS], pe[PV_MAX_DIMS];
  if (pv_pad_geom(plan->g, n, rc->vals, pb, pe)) return 0;
  if (pb[0] || pe[0] || pb[1] || pe[1] || pb[2] < 0 || pe[2] < 0 ||
      pb[3] < 0 || pe[3] < 0)
    return 0;
  float cv = plan->g->opset < 11 ? pv_attr_float(n, "value", 0.f) : 0.f;
  const pv_tensor *ct = plan->g->opset >= 11 ? pv_node_in(n, rc->vals, 2) : NULL;
  if (ct && pv_tensor_numel(ct)) {
    if (ct->dtype != PV_F32 || !ct->data) return 0;
    cv = *(const float *)ct->data;
  }
  int64_t cpad[4] = {pb[2], pb[3], pe[2], pe[3]};
  *fused = true;
  if (!overlaps(&rc->vals[op[1].node->out[0]], x))
    return exec_maxpool(ctx, op + 1, rc, x, cpad, cv);
  /* The pool's output lies over the Pad's input: pool a copy (still a
   * tenth of the Pad's cost, which writes a larger tensor element-wise). */
  size_t nb = pv_tensor_nbytes(x);
  pv_cpu_pool_op_lock(ctx->pool);
  float *copy = pv_cpu_pool_op_scratch(ctx->pool, nb);
  int r;
  if (!copy) {
    r = pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  } else {
    memcpy(copy, x->data, nb);
    pv_tensor xc = *x;
    xc.data = copy;
    r = exec_maxpool(ctx, op + 1, rc, &xc, cpad, cv);
  }
  pv_cpu_pool_op_unlock(ctx->pool);
  return r;
}

static int cpu_execute(void *vplan, pv_run_ctx *rc) {
  cpu_plan *plan = vplan;
  /* PIVOT_CPU_PROFILE=1: one line per op and run on stderr, to find
   * where a model's time goes without a profiler. */
  bool prof = plan->ctx->profile;
  for (int i = 0; i < plan->n_ops; i++) {
    const cpu_op *op = &plan->ops[i];
    int r;
    bool pooled = false; /* this op also ran the next (a pool) */
    struct timespec t0, t1, c0, c1;
    if (prof) {
      clock_gettime(CLOCK_MONOTONIC, &t0);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
    }
    switch (op->kind) {
    case OP_FC: r = exec_fc(plan->ctx, op, rc); break;
    case OP_CONV:
    case OP_DW:
      r = exec_conv(plan->ctx, op, rc, op->pool_next ? &plan->ops[i + 1] : NULL,
                    &pooled);
      break;
    case OP_MAXPOOL:
      r = exec_maxpool(plan->ctx, op, rc, &rc->vals[op->node->in[0]], NULL, 0);
      break;
    case OP_ADD: r = exec_add(plan->ctx, plan, op, rc); break;
    default:
      r = op->pad_pool ? exec_pad_pool(plan->ctx, plan, op, rc, &pooled) : 0;
      if (!r && !pooled) r = pv_ref_node(plan->g, op->node, rc->vals);
      break;
    }
    if (prof) {
      clock_gettime(CLOCK_MONOTONIC, &t1);
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
      /* The calling thread's CPU time: all of it with one thread. */
      fprintf(stderr, "cpu-profile %s %s %.3f ms cpu %.3f ms\n", op->node->name,
              op->node->op,
              (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6,
              (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) / 1e6);
    }
    if (r) return r;
    if (pooled) i++; /* the pool is done */
  }
  return 0;
}

/* ---------------------------------------------------------------- iface */

static int cpu_init(const pv_backend_config *cfg, void **out) {
  cpu_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return pv_error(PV_ENOMEM, "cpu: out of memory");
  const char *force = getenv("PIVOT_CPU_ISA");
  const char *prof = getenv("PIVOT_CPU_PROFILE");
  ctx->profile = prof && *prof && strcmp(prof, "0");
  const char *conv = getenv("PIVOT_CPU_CONV");
  ctx->conv_gemm = conv && !strcmp(conv, "gemm");
  ctx->no_wino = conv && (!strcmp(conv, "gemm") || !strcmp(conv, "direct"));
  ctx->all_wino = conv && !strcmp(conv, "winograd");
  ctx->isa = force && *force ? pv_cpu_isa_get(force) : pv_cpu_isa_best();
  if (!ctx->isa) {
    free(ctx);
    return pv_error(PV_EUNSUPPORTED, "cpu: PIVOT_CPU_ISA=%s is not one this "
                    "CPU runs (avx512, avx2, neon, c)", force);
  }
  ctx->pool = pv_cpu_pool_new(cfg ? cfg->threads : 0, cfg && cfg->pin_threads);
  if (!ctx->pool) {
    free(ctx);
    return PV_EBACKEND;
  }
  *out = ctx;
  return 0;
}

static void cpu_shutdown(void *vctx) {
  cpu_ctx *ctx = vctx;
  if (!ctx) return;
  pv_cpu_pool_free(ctx->pool);
  free(ctx);
}

static int cpu_device_count(void *ctx) {
  (void)ctx;
  return 1;
}

static int cpu_device_props(void *vctx, int index, pv_device_props *p) {
  cpu_ctx *ctx = vctx;
  if (index != 0) return pv_error(PV_ERANGE, "cpu: no device %d", index);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "host CPU (%s kernels)", ctx->isa->name);
  snprintf(p->vendor, sizeof p->vendor, "host");
  snprintf(p->driver, sizeof p->driver, "pivot-backend-cpu");
  p->compute_units = pv_cpu_pool_threads(ctx->pool);
  p->host_shared_memory = true;
  return 0;
}

/* The fallback backend: Conv, Gemm and MatMul on the fast kernels (or the
 * reference when their weights are not constant), every other op the
 * reference ops implement. */
static bool cpu_supports(void *ctx, const pv_graph *g, const pv_node *n) {
  (void)ctx;
  return !strcmp(n->op, "Conv") || !strcmp(n->op, "Gemm") ||
         !strcmp(n->op, "MatMul") || pv_ref_supports(g, n);
}

static const pv_backend_iface cpu_iface = {
    .abi_version = PV_BACKEND_ABI_VERSION,
    .name = "cpu",
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .device_count = cpu_device_count,
    .device_props = cpu_device_props,
    .supports = cpu_supports,
    .prepare = cpu_prepare,
    .execute = cpu_execute,
    .release = cpu_release,
};

const pv_backend_iface *pv_backend_entry(void);
const pv_backend_iface *pv_backend_entry(void) {
  return &cpu_iface;
}
