/* CUDA backend (pivot-backend-cuda.so): cuBLAS sgemm for dense Gemm/MatMul
 * and convolution as GEMM (im2col), our own kernel for pivoted blocks (all
 * blocks of a layer in one launch), direct convolution for grouped and
 * depthwise layers, pooling, element-wise ops and Concat.
 *
 * Each plan owns a CUDA stream and a cuBLAS handle bound to it; values
 * produced and consumed inside the partition stay in device memory, and
 * inputs/outputs cross through pinned host staging buffers so the copies
 * run asynchronously on the stream.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "cuda-kernels.h"
#include "gpu-common.h"

typedef struct cu_ctx {
  int device, n_dev;
} cu_ctx;

typedef struct cu_step {
  g_step s;
  float *w, *bias;               /* dense weights [M,K], bias [M] */
  float *data, *bias_p;          /* pivoted */
  int32_t *tiles, *row_rg, *row_off, *rg_blk, *blk_c, *in_ch, *out_row;
  unsigned long long *blk_off;
  int n_tiles;
  int vec4; /* see pvk_pivot_args */
  pvk_blas_args blas; /* the cuBLAS path, when the structure allows */
} cu_step;

typedef struct cu_plan {
  cu_ctx *c;
  const pv_graph *g;
  int n;
  cu_step *st;
  unsigned char *role;
  float **buf;  /* [n_values] device copies */
  size_t *cap;
  void **pin;   /* [n_values] pinned staging */
  size_t *pin_cap;
  float *col;   /* im2col scratch */
  size_t col_cap;
  float *yp;    /* pivoted rows before the scatter (cuBLAS path) */
  size_t yp_cap;
  int path;     /* PIVOT_CUDA_PIVOT_PATH: 0 auto, 1 kernel, 2 cublas */
  cudaStream_t stream;
  cublasHandle_t blas;
  /* One run at a time per plan: buffers and stream are the plan's. */
  pthread_mutex_t lock;
} cu_plan;

#define CU_FAIL(e, what) \
  pv_error(PV_EBACKEND, "cuda: %s: %s", (what), cudaGetErrorString((cudaError_t)(e)))

/* ------------------------------------------------------------ devices */

static int device_count(void *ctx) { return ((cu_ctx *)ctx)->n_dev; }

static int device_props(void *ctx, int i, pv_device_props *o) {
  cu_ctx *c = ctx;
  if (i < 0 || i >= c->n_dev) return pv_error(PV_EINVAL, "cuda: no device %d", i);
  struct cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, i);
  if (e != cudaSuccess) return CU_FAIL(e, "device properties");
  memset(o, 0, sizeof *o);
  snprintf(o->name, sizeof o->name, "%.120s", p.name);
  snprintf(o->vendor, sizeof o->vendor, "NVIDIA");
  int drv = 0, rt = 0;
  cudaDriverGetVersion(&drv);
  cudaRuntimeGetVersion(&rt);
  snprintf(o->driver, sizeof o->driver, "CUDA driver %d.%d, runtime %d.%d, sm_%d%d",
           drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10, p.major, p.minor);
  o->global_mem = p.integrated ? 0 : p.totalGlobalMem;
  o->compute_units = p.multiProcessorCount;
  o->host_shared_memory = p.integrated != 0;
  o->fp16 = p.major >= 6;
  o->int8 = p.major > 6 || (p.major == 6 && p.minor >= 1);
  return 0;
}

static void shutdown_ctx(void *ctx) { free(ctx); }

static int init(const pv_backend_config *cfg, void **out) {
  *out = NULL;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    return pv_error(PV_EBACKEND, "cuda: no CUDA device (%s)",
                    e != cudaSuccess ? cudaGetErrorString(e) : "none present");
  int dev = cfg ? cfg->device : 0;
  if (dev < 0 || dev >= n)
    return pv_error(PV_EINVAL, "cuda: device %d requested, %d present", dev, n);
  if ((e = cudaSetDevice(dev)) != cudaSuccess) return CU_FAIL(e, "set device");
  /* Create the primary context now, so a broken driver fails here. */
  if ((e = cudaFree(NULL)) != cudaSuccess) return CU_FAIL(e, "create context");
  cu_ctx *c = calloc(1, sizeof *c);
  if (!c) return pv_error(PV_ENOMEM, "out of memory");
  c->device = dev;
  c->n_dev = n;
  pv_device_props p;
  if (device_props(c, dev, &p) == 0)
    pv_log(PV_LOG_INFO, "cuda: device %d: %s (%s, %d SMs)", dev, p.name, p.driver,
           p.compute_units);
  *out = c;
  return 0;
}

static bool supports(void *ctx, const pv_graph *g, const pv_node *n) {
  (void)ctx;
  g_step s;
  int rc = g_step_parse(g, n, &s, true);
  if (!rc && s.kind == G_CONCAT && n->act) rc = PV_EUNSUPPORTED;
  /* Resize and Pad have OpenCL kernels only so far. */
  if (!rc && (s.kind == G_RESIZE || s.kind == G_PAD))
    rc = pv_error(PV_EUNSUPPORTED, "%s: no CUDA kernel yet", n->op);
  if (rc) pv_log(PV_LOG_DEBUG, "cuda: %s (%s) runs elsewhere: %s", n->name, n->op, pv_errmsg());
  return rc == 0;
}

/* ------------------------------------------------------------ prepare */

static int upload(const void *src, size_t bytes, void **out) {
  *out = NULL;
  cudaError_t e = cudaMalloc(out, bytes ? bytes : 4);
  if (e != cudaSuccess) return CU_FAIL(e, "allocate weights");
  if (bytes && src && (e = cudaMemcpy(*out, src, bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
    return CU_FAIL(e, "upload weights");
  if (!src && (e = cudaMemset(*out, 0, bytes ? bytes : 4)) != cudaSuccess)
    return CU_FAIL(e, "clear buffer");
  return 0;
}

static void release(void *pl) {
  cu_plan *p = pl;
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    cu_step *o = &p->st[i];
    void *ms[] = {o->w,      o->bias,    o->data,  o->bias_p, o->tiles,   o->row_rg,
                  o->row_off, o->rg_blk, o->blk_c, o->in_ch,  o->out_row, o->blk_off};
    for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++) cudaFree(ms[j]);
    g_step_free(&o->s);
  }
  if (p->buf)
    for (int v = 0; v < p->g->n_values; v++) {
      cudaFree(p->buf[v]);
      if (p->pin[v]) cudaFreeHost(p->pin[v]);
    }
  cudaFree(p->col);
  cudaFree(p->yp);
  if (p->blas) cublasDestroy(p->blas);
  if (p->stream) cudaStreamDestroy(p->stream);
  pthread_mutex_destroy(&p->lock);
  free(p->st);
  free(p->role);
  free(p->buf);
  free(p->cap);
  free(p->pin);
  free(p->pin_cap);
  free(p);
}

static int prepare_step(cu_step *o) {
  g_step *s = &o->s;
  if (s->kind != G_GEMM && s->kind != G_CONV) return 0;
  int rc;
  if (!s->pv) {
    if ((rc = upload(s->w, sizeof(float) * (size_t)s->M * s->K, (void **)&o->w))) return rc;
    if (s->bias && (rc = upload(s->bias, sizeof(float) * s->M, (void **)&o->bias))) return rc;
    return 0;
  }
  const pv_pivot *pv = s->pv;
  int nb = pv->n_blocks ? pv->n_blocks : 1;
  /* Row tiles of PVK_TILE_ROWS inside each row group. */
  int n_tiles = 0;
  for (int r = 0; r < pv->nr; r++)
    n_tiles += (pv->row_off[r + 1] - pv->row_off[r] + PVK_TILE_ROWS - 1) / PVK_TILE_ROWS;
  int32_t *tiles = malloc(sizeof(int32_t) * 3 * (n_tiles ? n_tiles : 1));
  int32_t *bc = malloc(sizeof(int32_t) * 2 * nb);
  unsigned long long *bo = malloc(sizeof *bo * nb);
  if (!tiles || !bc || !bo) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out_free;
  }
  int t = 0;
  for (int r = 0; r < pv->nr; r++) {
    int rows = pv->row_off[r + 1] - pv->row_off[r];
    for (int r0 = 0; r0 < rows; r0 += PVK_TILE_ROWS) {
      tiles[3 * t] = r;
      tiles[3 * t + 1] = r0;
      tiles[3 * t + 2] = r0 + PVK_TILE_ROWS < rows ? r0 + PVK_TILE_ROWS : rows;
      t++;
    }
  }
  o->vec4 = ((int64_t)pv->C * pv->kk) % 4 == 0;
  for (int b = 0; b < pv->n_blocks; b++) {
    bc[2 * b] = pv->col_off[pv->blocks[b].cg];
    bc[2 * b + 1] = pv->col_off[pv->blocks[b].cg + 1];
    bo[b] = pv->blocks[b].offset;
    if (bo[b] % 4 || ((int64_t)bc[2 * b] * pv->kk) % 4 || ((int64_t)(bc[2 * b + 1] - bc[2 * b]) * pv->kk) % 4)
      o->vec4 = 0;
  }
  o->n_tiles = n_tiles;
  {
    int32_t *brg = malloc(sizeof(int32_t) * nb), *bcg = malloc(sizeof(int32_t) * nb);
    if (!brg || !bcg) {
      free(brg), free(bcg);
      rc = pv_error(PV_ENOMEM, "out of memory");
      goto out_free;
    }
    for (int b = 0; b < pv->n_blocks; b++) brg[b] = pv->blocks[b].rg, bcg[b] = pv->blocks[b].cg;
    pvk_blas_plan(&o->blas, pv->nr, pv->row_off, pv->col_off, pv->n_blocks, brg, bcg, bo, pv->kk);
    free(brg), free(bcg);
  }
  if (!(rc = upload(pv->data, pv->data_len * sizeof(float), (void **)&o->data)) &&
      !(rc = upload(s->bias_p, sizeof(float) * pv->M, (void **)&o->bias_p)) &&
      !(rc = upload(tiles, sizeof(int32_t) * 3 * n_tiles, (void **)&o->tiles)) &&
      !(rc = upload(s->row_rg, sizeof(int32_t) * pv->M, (void **)&o->row_rg)) &&
      !(rc = upload(pv->row_off, sizeof(int32_t) * (pv->nr + 1), (void **)&o->row_off)) &&
      !(rc = upload(s->rg_blk, sizeof(int32_t) * (pv->nr + 1), (void **)&o->rg_blk)) &&
      !(rc = upload(bc, sizeof(int32_t) * 2 * pv->n_blocks, (void **)&o->blk_c)) &&
      !(rc = upload(s->in_ch, sizeof(int32_t) * pv->C, (void **)&o->in_ch)) &&
      !(rc = upload(s->out_row, sizeof(int32_t) * pv->M, (void **)&o->out_row)))
    rc = upload(bo, sizeof *bo * pv->n_blocks, (void **)&o->blk_off);
out_free:
  free(tiles);
  free(bc);
  free(bo);
  return rc;
}

static int prepare(void *ctx, const pv_graph *g, const int *nodes, int n_nodes, void **out) {
  cu_ctx *c = ctx;
  *out = NULL;
  cudaError_t e = cudaSetDevice(c->device);
  if (e != cudaSuccess) return CU_FAIL(e, "set device");
  cu_plan *p = calloc(1, sizeof *p);
  if (!p) return pv_error(PV_ENOMEM, "out of memory");
  pthread_mutex_init(&p->lock, NULL);
  p->c = c;
  /* For comparisons: force the pivoted path (kernel or cublas). */
  const char *pp = getenv("PIVOT_CUDA_PIVOT_PATH");
  p->path = pp && !strcmp(pp, "kernel") ? 1 : pp && !strcmp(pp, "cublas") ? 2 : 0;
  p->g = g;
  int nv = g->n_values ? g->n_values : 1;
  p->st = calloc(n_nodes ? n_nodes : 1, sizeof *p->st);
  p->role = calloc(nv, 1);
  p->buf = calloc(nv, sizeof *p->buf);
  p->cap = calloc(nv, sizeof *p->cap);
  p->pin = calloc(nv, sizeof *p->pin);
  p->pin_cap = calloc(nv, sizeof *p->pin_cap);
  g_step *flat = calloc(n_nodes ? n_nodes : 1, sizeof *flat);
  int rc = 0;
  if (!p->st || !p->role || !p->buf || !p->cap || !p->pin || !p->pin_cap || !flat) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out_release;
  }
  if ((e = cudaStreamCreateWithFlags(&p->stream, cudaStreamNonBlocking)) != cudaSuccess) {
    rc = CU_FAIL(e, "create stream");
    goto out_release;
  }
  if (cublasCreate(&p->blas) != CUBLAS_STATUS_SUCCESS) {
    p->blas = NULL;
    rc = pv_error(PV_EBACKEND, "cuda: cuBLAS initialisation failed");
    goto out_release;
  }
  cublasSetStream(p->blas, p->stream);
  for (int i = 0; i < n_nodes && !rc; i++) {
    const pv_node *n = &g->nodes[nodes[i]];
    p->n = i + 1;
    rc = g_step_parse(g, n, &p->st[i].s, false);
    if (!rc) rc = prepare_step(&p->st[i]);
    if (rc) pv_error_prefix(rc, "cuda: node %s (%s)", n->name, n->op);
    flat[i] = p->st[i].s;
  }
  if (!rc) rc = g_value_roles(g, nodes, n_nodes, flat, p->role);
  for (int v = 0; !rc && v < g->n_values; v++)
    if (p->role[v] & G_V_CONST) {
      rc = upload(g->values[v].data, g->values[v].nbytes, (void **)&p->buf[v]);
      p->cap[v] = g->values[v].nbytes;
    }
  free(flat);
  flat = NULL;
  if (rc) goto out_release;
  *out = p;
  return 0;
out_release:
  free(flat);
  release(p);
  return rc;
}

/* ------------------------------------------------------------ execute */

static int ensure(cu_plan *p, int v, size_t bytes) {
  if (p->buf[v] && bytes <= p->cap[v]) return 0;
  cudaFree(p->buf[v]);
  p->buf[v] = NULL;
  p->cap[v] = 0;
  cudaError_t e = cudaMalloc((void **)&p->buf[v], bytes ? bytes : 4);
  if (e != cudaSuccess) return CU_FAIL(e, "allocate activation");
  p->cap[v] = bytes;
  return 0;
}

static int ensure_pin(cu_plan *p, int v, size_t bytes) {
  if (p->pin[v] && bytes <= p->pin_cap[v]) return 0;
  if (p->pin[v]) cudaFreeHost(p->pin[v]);
  p->pin[v] = NULL;
  p->pin_cap[v] = 0;
  cudaError_t e = cudaMallocHost(&p->pin[v], bytes ? bytes : 4);
  if (e != cudaSuccess) return CU_FAIL(e, "allocate pinned staging");
  p->pin_cap[v] = bytes;
  return 0;
}

static int check(int e, const char *what) { return e ? CU_FAIL(e, what) : 0; }

static int exec_step(cu_plan *p, cu_step *o, pv_run_ctx *rc) {
  g_step *s = &o->s;
  cudaStream_t st = p->stream;
  const pv_tensor *x = &rc->vals[s->x];
  pv_tensor *y = &rc->vals[s->y];
  if (x->dtype != PV_F32 || y->dtype != PV_F32 ||
      (s->x2 >= 0 && rc->vals[s->x2].dtype != PV_F32))
    return pv_error(PV_ETYPE, "float32 only, got %s", pv_dtype_name(x->dtype));
  int64_t xn = pv_tensor_numel(x), yn = pv_tensor_numel(y);
  size_t ybytes = pv_tensor_nbytes(y);
  if (ybytes == SIZE_MAX || yn > INT32_MAX || xn > INT32_MAX)
    return pv_error(PV_ERANGE, "tensor of %" PRId64 " elements too large", yn);
  int r = ensure(p, s->y, ybytes);
  if (r) return r;
  const float *X = p->buf[s->x];
  float *Y = p->buf[s->y];
  if (!X) return pv_error(PV_EINTERNAL, "input value %d not on the device", s->x);
  switch (s->kind) {
  case G_GEMM:
  case G_CONV: {
    int64_t N, C = s->C, H = 1, W = 1, OH = 1, OW = 1;
    if (s->kind == G_GEMM) {
      if (xn % s->K || (xn / s->K) * s->M != yn)
        return pv_error(PV_ESHAPE, "input of %" PRId64 " values for K=%d, output %" PRId64, xn,
                        s->K, yn);
      N = xn / s->K;
    } else {
      if (x->ndim != 4 || y->ndim != 4 || x->dims[1] != s->C || y->dims[1] != s->M ||
          y->dims[0] != x->dims[0])
        return pv_error(PV_ESHAPE, "conv: input/output shapes do not match the weights");
      N = x->dims[0], H = x->dims[2], W = x->dims[3], OH = y->dims[2], OW = y->dims[3];
    }
    int64_t P = N * OH * OW, S = OH * OW;
    if (!P) return 0;
    if (s->kind == G_CONV && s->group > 1 && !s->pv)
      return check(pvk_conv(X, o->w, o->bias, Y, (int)N, s->C, (int)H, (int)W, s->M, (int)OH,
                            (int)OW, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw,
                            s->group, s->act, s->alpha, s->beta, st),
                   "conv");
    /* The reduction input as [P, K]: gathered/im2col'd unless a dense
     * Gemm can read x as it is. */
    const float *XP = X;
    int64_t Kp = (int64_t)s->C * s->kh * (s->kind == G_CONV ? s->kw : 1);
    if (s->kind == G_GEMM) Kp = s->K;
    bool direct = s->kind == G_GEMM && !s->pv;
    if (!direct) {
      if (P > INT64_MAX / 4 / Kp) return pv_error(PV_ERANGE, "im2col too large");
      size_t colb = (size_t)(P * Kp) * sizeof(float);
      if (colb > p->col_cap) {
        cudaFree(p->col);
        p->col = NULL;
        p->col_cap = 0;
        cudaError_t e = cudaMalloc((void **)&p->col, colb);
        if (e != cudaSuccess) return CU_FAIL(e, "allocate im2col buffer");
        p->col_cap = colb;
      }
      bool conv = s->kind == G_CONV;
      r = check(pvk_im2col(X, p->col, s->pv ? o->in_ch : NULL, (int)N, (int)C, (int)H, (int)W,
                           (int)OH, (int)OW, conv ? s->kh : 1, conv ? s->kw : 1,
                           conv ? s->sh : 1, conv ? s->sw : 1, conv ? s->ph : 0,
                           conv ? s->pw : 0, conv ? s->dh : 1, conv ? s->dw : 1, st),
                "im2col");
      if (r) return r;
      XP = p->col;
    }
    if (s->pv) {
      pvk_pivot_args a = {.xp = XP, .data = o->data, .tiles = o->tiles, .row_rg = o->row_rg,
                          .row_off = o->row_off, .rg_blk = o->rg_blk, .blk_c = o->blk_c,
                          .out_row = o->out_row, .blk_off = o->blk_off, .bias = o->bias_p,
                          .y = Y, .n_tiles = o->n_tiles, .M = s->M, .kk = s->pv->kk,
                          .Kp = (int)Kp, .P = (int)P, .S = (int)S, .act = s->act,
                          .alpha = s->alpha, .beta = s->beta, .vec4 = o->vec4};
      bool use_blas = p->path == 2 ? o->blas.ok
                      : p->path == 1 ? false : pvk_blas_wanted(&o->blas, (int)P);
      if (!use_blas) return check(pvk_pivot(&a, st), "pivoted blocks");
      size_t ypb = (size_t)P * s->M * sizeof(float);
      if (ypb > p->yp_cap) {
        cudaFree(p->yp);
        p->yp = NULL;
        p->yp_cap = 0;
        cudaError_t e = cudaMalloc((void **)&p->yp, ypb);
        if (e != cudaSuccess) return CU_FAIL(e, "allocate pivoted rows buffer");
        p->yp_cap = ypb;
      }
      return check(pvk_pivot_blas(&a, &o->blas, p->blas, p->yp, st), "pivoted blocks (cuBLAS)");
    }
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t bs;
    if (s->kind == G_GEMM)
      /* Row-major Y[P,M] = X[P,K] W[M,K]^T is column-major Y^T = W^T' X. */
      bs = cublasSgemm(p->blas, CUBLAS_OP_T, CUBLAS_OP_N, s->M, (int)P, s->K, &one, o->w, s->K,
                       XP, s->K, &zero, Y, s->M);
    else
      /* Per image: Y_n[M, HW] (row-major) = W[M,K] col_n[HW,K]^T. */
      bs = cublasSgemmStridedBatched(p->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)S, s->M, s->K, &one,
                                     XP, s->K, S * s->K, o->w, s->K, 0, &zero, Y, (int)S,
                                     (long long)s->M * S, (int)N);
    if (bs != CUBLAS_STATUS_SUCCESS)
      return pv_error(PV_EBACKEND, "cuda: cuBLAS sgemm failed (status %d)", (int)bs);
    if (o->bias || s->act)
      return check(pvk_bias_act(Y, o->bias, yn, s->M, (int)S, s->act, s->alpha, s->beta, st),
                   "bias");
    return 0;
  }
  case G_MAXPOOL:
  case G_AVGPOOL:
    if (x->ndim != 4 || y->ndim != 4 || x->dims[0] != y->dims[0] || x->dims[1] != y->dims[1])
      return pv_error(PV_ESHAPE, "pool: 4-D input and output expected");
    return check(pvk_pool(X, Y, (int)(x->dims[0] * x->dims[1]), (int)x->dims[2], (int)x->dims[3],
                          (int)y->dims[2], (int)y->dims[3], s->kh, s->kw, s->sh, s->sw, s->ph,
                          s->pw, s->ph1, s->pw1, s->kind == G_MAXPOOL, s->count_include_pad,
                          s->act, s->alpha, s->beta, st),
                 "pool");
  case G_GAP: {
    if (x->ndim < 3 || y->ndim != x->ndim) return pv_error(PV_ESHAPE, "GlobalAveragePool rank");
    int64_t NC = x->dims[0] * x->dims[1];
    if (!NC) return 0;
    if (NC != yn) return pv_error(PV_ESHAPE, "GlobalAveragePool output");
    return check(pvk_gap(X, Y, (int)NC, (int)(xn / NC), s->act, s->alpha, s->beta, st), "gap");
  }
  case G_BINARY: {
    const pv_tensor *x2 = &rc->vals[s->x2];
    int64_t od[G_MAX_RANK], sa[G_MAX_RANK], sb[G_MAX_RANK];
    if ((r = g_bcast(x, y, od, sa)) || (r = g_bcast(x2, y, od, sb))) return r;
    if (!p->buf[s->x2]) return pv_error(PV_EINTERNAL, "input value %d not on the device", s->x2);
    return check(pvk_binary(X, p->buf[s->x2], Y, od, sa, sb, s->binop, s->act, s->alpha,
                            s->beta, st),
                 "binary");
  }
  case G_UNARY:
    if (xn != yn) return pv_error(PV_ESHAPE, "activation: %" PRId64 " in, %" PRId64 " out", xn, yn);
    return check(pvk_unary(X, Y, yn, s->act, s->alpha, s->beta, st), "activation");
  case G_COPY: {
    if (xn != yn) return pv_error(PV_ESHAPE, "%" PRId64 " values in, %" PRId64 " out", xn, yn);
    if (!yn) return 0;
    cudaError_t e = cudaMemcpyAsync(Y, X, ybytes, cudaMemcpyDeviceToDevice, st);
    return e == cudaSuccess ? 0 : CU_FAIL(e, "copy");
  }
  case G_RESIZE:
  case G_PAD:
    return pv_error(PV_EUNSUPPORTED, "no CUDA kernel for this op");
  case G_CONCAT: {
    const pv_node *n = &p->g->nodes[s->node];
    int axis = s->axis < 0 ? s->axis + y->ndim : s->axis;
    if (axis < 0 || axis >= y->ndim) return pv_error(PV_EINVAL, "Concat axis %d", s->axis);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; i++) outer *= y->dims[i];
    for (int i = axis + 1; i < y->ndim; i++) inner *= y->dims[i];
    int64_t off = 0, out_len = y->dims[axis] * inner;
    for (int j = 0; j < n->n_in; j++) {
      const pv_tensor *t = &rc->vals[n->in[j]];
      if (t->ndim != y->ndim) return pv_error(PV_ESHAPE, "Concat input %d rank", j);
      int64_t in_len = t->dims[axis] * inner;
      if (off + in_len > out_len) return pv_error(PV_ESHAPE, "Concat inputs exceed output");
      if (in_len > 0 && outer > 0) {
        if (!p->buf[n->in[j]]) return pv_error(PV_EINTERNAL, "Concat input %d missing", j);
        if ((r = check(pvk_concat(p->buf[n->in[j]], Y, outer, in_len, out_len, off, st),
                       "concat")))
          return r;
      }
      off += in_len;
    }
    return off == out_len ? 0 : pv_error(PV_ESHAPE, "Concat inputs do not fill the output");
  }
  }
  return pv_error(PV_EINTERNAL, "step kind %d", s->kind);
}

static int execute(void *pl, pv_run_ctx *rc) {
  cu_plan *p = pl;
  const pv_graph *g = p->g;
  int r = 0;
  cudaError_t e;
  pthread_mutex_lock(&p->lock);
  if ((e = cudaSetDevice(p->c->device)) != cudaSuccess) {
    r = CU_FAIL(e, "set device");
    goto out_unlock;
  }
  for (int v = 0; v < g->n_values && !r; v++) {
    if (!(p->role[v] & G_V_INPUT) || (p->role[v] & G_V_INTERNAL)) continue;
    const pv_tensor *t = &rc->vals[v];
    size_t bytes = pv_tensor_nbytes(t);
    if (bytes == SIZE_MAX) r = pv_error(PV_ERANGE, "cuda: input %s too large", g->values[v].name);
    else if (bytes && !t->data) r = pv_error(PV_EINVAL, "cuda: input %s has no data", g->values[v].name);
    else if (!(r = ensure(p, v, bytes)) && !(r = ensure_pin(p, v, bytes)) && bytes) {
      memcpy(p->pin[v], t->data, bytes);
      e = cudaMemcpyAsync(p->buf[v], p->pin[v], bytes, cudaMemcpyHostToDevice, p->stream);
      if (e != cudaSuccess) r = CU_FAIL(e, "copy input");
    }
  }
  for (int i = 0; i < p->n && !r; i++) {
    r = exec_step(p, &p->st[i], rc);
    if (r) {
      const pv_node *n = &g->nodes[p->st[i].s.node];
      pv_error_prefix(r, "cuda: node %s (%s)", n->name, n->op);
    }
  }
  for (int v = 0; v < g->n_values && !r; v++) {
    if (!(p->role[v] & G_V_EXTERNAL)) continue;
    size_t bytes = pv_tensor_nbytes(&rc->vals[v]);
    if (!bytes) continue;
    if (bytes > p->cap[v] || !rc->vals[v].data) {
      r = pv_error(PV_EINTERNAL, "cuda: output %s not computed", g->values[v].name);
      break;
    }
    if ((r = ensure_pin(p, v, bytes))) break;
    e = cudaMemcpyAsync(p->pin[v], p->buf[v], bytes, cudaMemcpyDeviceToHost, p->stream);
    if (e != cudaSuccess) r = CU_FAIL(e, "copy output");
  }
  /* Waits for this plan's stream only, not the whole device. */
  e = cudaStreamSynchronize(p->stream);
  if (!r && e != cudaSuccess) r = CU_FAIL(e, "run");
  for (int v = 0; v < g->n_values && !r; v++)
    if ((p->role[v] & G_V_EXTERNAL) && pv_tensor_nbytes(&rc->vals[v]))
      memcpy(rc->vals[v].data, p->pin[v], pv_tensor_nbytes(&rc->vals[v]));
out_unlock:
  pthread_mutex_unlock(&p->lock);
  return r;
}

static const pv_backend_iface iface = {
    .abi_version = PV_BACKEND_ABI_VERSION,
    .name = "cuda",
    .init = init,
    .shutdown = shutdown_ctx,
    .device_count = device_count,
    .device_props = device_props,
    .supports = supports,
    .prepare = prepare,
    .execute = execute,
    .release = release,
};

const pv_backend_iface *pv_backend_entry(void);
const pv_backend_iface *pv_backend_entry(void) { return &iface; }
