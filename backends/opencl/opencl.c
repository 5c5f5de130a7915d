/* OpenCL backend (pivot-backend-opencl.so): dense and pivoted Gemm/MatMul,
 * Conv (direct, or im2col + pivoted blocks), pooling, element-wise ops and
 * Concat on any OpenCL 1.2 device through the ICD loader; written for Arm
 * Mali GPUs and tested on PoCL.
 *
 * A plan keeps every value produced and consumed inside its partition on
 * the device; only the partition's inputs are copied in and the values
 * read outside it (or graph outputs) copied out. Buffers are allocated
 * with CL_MEM_ALLOC_HOST_PTR and filled through map/unmap, which is zero
 * copy on devices that share memory with the host.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include "cl-cache.h"
#include "cl-kernels.h"
#include "gpu-common.h"

#define MAX_DEVICES 16

enum {
  K_GEMM, K_PIVOT, K_IM2COL, K_CONV, K_POOL, K_GAP, K_BINARY, K_UNARY, K_CONCAT, K_UPSAMPLE,
  K_PAD, K_COUNT
};
static const char *const kernel_names[K_COUNT] = {
    "pv_gemm",  "pv_pivot", "pv_im2col", "pv_conv",     "pv_pool", "pv_gap",
    "pv_binary", "pv_unary", "pv_concat", "pv_upsample", "pv_pad"};

typedef struct ocl_ctx {
  int n_dev;
  cl_device_id devs[MAX_DEVICES];
  cl_platform_id plats[MAX_DEVICES];
  cl_device_id dev;
  cl_context ctx;
  cl_command_queue q;
  cl_program prog;
  cl_kernel k[K_COUNT];
  /* Kernel arguments are per kernel object, so runs are serialised. */
  pthread_mutex_t lock;
  bool program_from_cache;
  char cache_path[4096]; /* empty: no cache */
} ocl_ctx;

typedef struct ocl_step {
  g_step s;
  cl_mem w, bias, data, row_off, rg_blk, row_rg, blk_c, blk_off, in_ch, out_row;
} ocl_step;

typedef struct ocl_plan {
  ocl_ctx *c;
  const pv_graph *g;
  int n;
  ocl_step *st;
  unsigned char *role; /* [n_values], G_V_* */
  cl_mem *buf;         /* [n_values] device copy of each value */
  size_t *cap;
  cl_mem col;          /* im2col scratch */
  size_t col_cap;
} ocl_plan;

static const char *cl_errstr(cl_int e) {
  switch (e) {
  case CL_DEVICE_NOT_FOUND: return "device not found";
  case CL_OUT_OF_RESOURCES: return "out of resources";
  case CL_OUT_OF_HOST_MEMORY: return "out of host memory";
  case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "allocation failure";
  case CL_BUILD_PROGRAM_FAILURE: return "build failure";
  case CL_INVALID_VALUE: return "invalid value";
  case CL_INVALID_BUILD_OPTIONS: return "invalid build options";
  case CL_INVALID_BINARY: return "invalid binary";
  case CL_INVALID_KERNEL_ARGS: return "invalid kernel arguments";
  case CL_INVALID_WORK_GROUP_SIZE: return "invalid work-group size";
  case CL_INVALID_BUFFER_SIZE: return "invalid buffer size";
  case -1001: return "no OpenCL platform (ICD loader found none)";
  default: return "OpenCL error";
  }
}

#define CL_FAIL(err, what) \
  pv_error(PV_EBACKEND, "opencl: %s: %s (%d)", (what), cl_errstr(err), (int)(err))

/* ------------------------------------------------------------ devices */

/* All devices of all platforms, GPUs first (the natural choice for
 * device 0), then accelerators and CPUs. */
static int enumerate(ocl_ctx *c) {
  cl_platform_id plats[8];
  cl_uint np = 0;
  cl_int err = clGetPlatformIDs(8, plats, &np);
  if (err != CL_SUCCESS || np == 0)
    return pv_error(PV_EBACKEND, "opencl: no OpenCL platform (is an ICD installed? %s)",
                    err == CL_SUCCESS ? "none listed" : cl_errstr(err));
  for (int pass = 0; pass < 2; pass++)
    for (cl_uint p = 0; p < np && p < 8; p++) {
      cl_device_id ids[MAX_DEVICES];
      cl_uint nd = 0;
      cl_device_type want = pass == 0 ? CL_DEVICE_TYPE_GPU
                                      : (CL_DEVICE_TYPE_ALL & ~CL_DEVICE_TYPE_GPU);
      if (clGetDeviceIDs(plats[p], want, MAX_DEVICES, ids, &nd) != CL_SUCCESS) continue;
      for (cl_uint d = 0; d < nd && c->n_dev < MAX_DEVICES; d++) {
        c->plats[c->n_dev] = plats[p];
        c->devs[c->n_dev++] = ids[d];
      }
    }
  if (c->n_dev == 0) return pv_error(PV_EBACKEND, "opencl: no OpenCL device");
  return 0;
}

static int device_props(void *ctx, int i, pv_device_props *o) {
  ocl_ctx *c = ctx;
  if (i < 0 || i >= c->n_dev) return pv_error(PV_EINVAL, "opencl: no device %d", i);
  cl_device_id d = c->devs[i];
  memset(o, 0, sizeof *o);
  cl_ulong mem = 0;
  cl_uint cu = 0;
  cl_bool unified = CL_FALSE;
  char ext[8192] = "";
  clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof o->name - 1, o->name, NULL);
  clGetDeviceInfo(d, CL_DEVICE_VENDOR, sizeof o->vendor - 1, o->vendor, NULL);
  clGetDeviceInfo(d, CL_DRIVER_VERSION, sizeof o->driver - 1, o->driver, NULL);
  clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
  clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
  clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL);
  clGetDeviceInfo(d, CL_DEVICE_EXTENSIONS, sizeof ext - 1, ext, NULL);
  o->host_shared_memory = unified == CL_TRUE;
  o->global_mem = o->host_shared_memory ? 0 : mem;
  o->compute_units = (int)cu;
  o->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
  o->int8 = strstr(ext, "cl_arm_integer_dot_product") != NULL ||
            strstr(ext, "cl_khr_integer_dot_product") != NULL;
  return 0;
}

static int device_count(void *ctx) { return ((ocl_ctx *)ctx)->n_dev; }

/* ------------------------------------------------------------ program */

static void log_build_failure(ocl_ctx *c) {
  size_t len = 0;
  clGetProgramBuildInfo(c->prog, c->dev, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
  char *log = malloc(len + 1);
  if (!log) return;
  if (clGetProgramBuildInfo(c->prog, c->dev, CL_PROGRAM_BUILD_LOG, len, log, NULL) ==
      CL_SUCCESS) {
    log[len] = 0;
    /* The first non-empty line names the first error; the rest goes to
     * the debug log. */
    char *line = log;
    while (*line == '\n') line++;
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    pv_log(PV_LOG_ERROR, "opencl: kernel build failed: %s", line);
    pv_error(PV_EBACKEND, "opencl: kernel build failed: %s", line);
    if (nl) pv_log(PV_LOG_DEBUG, "opencl: build log: %s", nl + 1);
  }
  free(log);
}

static uint64_t program_key(ocl_ctx *c, const char *opts) {
  char info[1024];
  uint64_t h = pv_cl_hash(PV_FNV_INIT, pv_cl_source, sizeof pv_cl_source);
  h = pv_cl_hash(h, opts, strlen(opts) + 1);
  const cl_device_info what[] = {CL_DEVICE_NAME, CL_DEVICE_VERSION, CL_DRIVER_VERSION,
                                 CL_DEVICE_VENDOR};
  for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
    memset(info, 0, sizeof info);
    clGetDeviceInfo(c->dev, what[i], sizeof info - 1, info, NULL);
    h = pv_cl_hash(h, info, strlen(info) + 1);
  }
  return h;
}

static int build_from_cache(ocl_ctx *c, const char *opts) {
  size_t len = 0;
  unsigned char *bin = pv_cl_cache_read(c->cache_path, &len);
  if (!bin) return -1;
  cl_int err, status;
  const unsigned char *bp = bin;
  c->prog = clCreateProgramWithBinary(c->ctx, 1, &c->dev, &len, &bp, &status, &err);
  free(bin);
  if (err == CL_SUCCESS && status == CL_SUCCESS &&
      clBuildProgram(c->prog, 1, &c->dev, opts, NULL, NULL) == CL_SUCCESS) {
    c->program_from_cache = true;
    pv_log(PV_LOG_DEBUG, "opencl: program loaded from cache %s", c->cache_path);
    return 0;
  }
  /* A stale or foreign binary is not an error: rebuild from source. */
  pv_log(PV_LOG_WARN, "opencl: cached program %s unusable; rebuilding", c->cache_path);
  if (c->prog) clReleaseProgram(c->prog);
  c->prog = NULL;
  return -1;
}

static void save_to_cache(ocl_ctx *c) {
  size_t len = 0;
  if (clGetProgramInfo(c->prog, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) !=
          CL_SUCCESS ||
      len == 0)
    return;
  unsigned char *bin = malloc(len);
  if (!bin) return;
  if (clGetProgramInfo(c->prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS) {
    if (pv_cl_cache_write(c->cache_path, bin, len))
      pv_log(PV_LOG_WARN, "opencl: program cache not written: %s", pv_errmsg());
    else
      pv_log(PV_LOG_DEBUG, "opencl: program saved to cache %s", c->cache_path);
  }
  free(bin);
}

static int build_program(ocl_ctx *c, const pv_backend_config *cfg) {
  char opts[512] = "-cl-std=CL1.2";
  const char *extra = getenv("PIVOT_OPENCL_OPTIONS");
  if (extra && *extra) {
    size_t n = strlen(opts);
    snprintf(opts + n, sizeof opts - n, " %s", extra);
  }
  char dir[3800];
  c->cache_path[0] = 0;
  if (pv_cl_cache_dir(cfg ? cfg->cache_dir : NULL, dir, sizeof dir))
    snprintf(c->cache_path, sizeof c->cache_path, "%s/opencl-%016llx.bin", dir,
             (unsigned long long)program_key(c, opts));
  if (c->cache_path[0] && build_from_cache(c, opts) == 0) return 0;

  const char *src = pv_cl_source;
  cl_int err;
  c->prog = clCreateProgramWithSource(c->ctx, 1, &src, NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "create program");
  err = clBuildProgram(c->prog, 1, &c->dev, opts, NULL, NULL);
  if (err == CL_BUILD_PROGRAM_FAILURE) {
    log_build_failure(c);
    return PV_EBACKEND;
  }
  if (err != CL_SUCCESS) {
    pv_log(PV_LOG_ERROR, "opencl: kernel build failed: %s (options \"%s\")",
           cl_errstr(err), opts);
    return CL_FAIL(err, "build program");
  }
  if (c->cache_path[0]) save_to_cache(c);
  return 0;
}

/* ------------------------------------------------------------ init */

static void shutdown_ctx(void *ctx) {
  ocl_ctx *c = ctx;
  if (!c) return;
  for (int i = 0; i < K_COUNT; i++)
    if (c->k[i]) clReleaseKernel(c->k[i]);
  if (c->prog) clReleaseProgram(c->prog);
  if (c->q) clReleaseCommandQueue(c->q);
  if (c->ctx) clReleaseContext(c->ctx);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

static int init(const pv_backend_config *cfg, void **out) {
  *out = NULL;
  ocl_ctx *c = calloc(1, sizeof *c);
  if (!c) return pv_error(PV_ENOMEM, "out of memory");
  pthread_mutex_init(&c->lock, NULL);
  int rc = enumerate(c);
  if (rc) goto out_free;
  int di = cfg ? cfg->device : 0;
  if (di < 0 || di >= c->n_dev) {
    rc = pv_error(PV_EINVAL, "opencl: device %d requested, %d present", di, c->n_dev);
    goto out_free;
  }
  c->dev = c->devs[di];
  cl_int err;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)c->plats[di],
                                   0};
  c->ctx = clCreateContext(props, 1, &c->dev, NULL, NULL, &err);
  if (err != CL_SUCCESS) {
    rc = CL_FAIL(err, "create context");
    goto out_free;
  }
  c->q = clCreateCommandQueue(c->ctx, c->dev, 0, &err);
  if (err != CL_SUCCESS) {
    rc = CL_FAIL(err, "create queue");
    goto out_free;
  }
  if ((rc = build_program(c, cfg))) goto out_free;
  for (int i = 0; i < K_COUNT; i++) {
    c->k[i] = clCreateKernel(c->prog, kernel_names[i], &err);
    if (err != CL_SUCCESS) {
      rc = CL_FAIL(err, kernel_names[i]);
      goto out_free;
    }
  }
  pv_device_props p;
  device_props(c, di, &p);
  pv_log(PV_LOG_INFO, "opencl: device %d: %s (%s, %d compute units)%s", di, p.name,
         p.driver, p.compute_units, c->program_from_cache ? ", kernels from cache" : "");
  *out = c;
  return 0;
out_free:
  shutdown_ctx(c);
  return rc;
}

/* ------------------------------------------------------------ buffers */

static int upload(ocl_ctx *c, const void *src, size_t bytes, cl_mem *out) {
  cl_int err;
  size_t n = bytes ? bytes : 4;
  *out = clCreateBuffer(c->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, n, NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "allocate buffer");
  void *p = clEnqueueMapBuffer(c->q, *out, CL_TRUE, CL_MAP_WRITE, 0, n, 0, NULL, NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "map buffer");
  if (src && bytes) memcpy(p, src, bytes);
  else memset(p, 0, n);
  clEnqueueUnmapMemObject(c->q, *out, p, 0, NULL, NULL);
  return 0;
}

/* Device buffer for value v of at least `bytes`; grows, never shrinks. */
static int ensure(ocl_plan *p, int v, size_t bytes) {
  if (bytes <= p->cap[v] && p->buf[v]) return 0;
  if (p->buf[v]) clReleaseMemObject(p->buf[v]);
  p->buf[v] = NULL;
  p->cap[v] = 0;
  cl_int err;
  p->buf[v] = clCreateBuffer(p->c->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR,
                             bytes ? bytes : 4, NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "allocate activation buffer");
  p->cap[v] = bytes;
  return 0;
}

static int copy_in(ocl_plan *p, int v, const pv_tensor *t) {
  size_t bytes = pv_tensor_nbytes(t);
  if (bytes == SIZE_MAX) return pv_error(PV_ERANGE, "opencl: tensor size overflows");
  if (!t->data && bytes) return pv_error(PV_EINVAL, "opencl: input value %d has no data", v);
  int rc = ensure(p, v, bytes);
  if (rc || !bytes) return rc;
  cl_int err;
  void *m = clEnqueueMapBuffer(p->c->q, p->buf[v], CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                               bytes, 0, NULL, NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "map input");
  memcpy(m, t->data, bytes);
  err = clEnqueueUnmapMemObject(p->c->q, p->buf[v], m, 0, NULL, NULL);
  return err == CL_SUCCESS ? 0 : CL_FAIL(err, "unmap input");
}

static int copy_out(ocl_plan *p, int v, pv_tensor *t, cl_event *ev) {
  size_t bytes = pv_tensor_nbytes(t);
  if (!bytes) return 0;
  if (bytes > p->cap[v] || !t->data)
    return pv_error(PV_EINTERNAL, "opencl: output value %d not computed", v);
  cl_int err;
  /* A blocking map on the in-order queue waits for the kernels before it. */
  void *m = clEnqueueMapBuffer(p->c->q, p->buf[v], CL_TRUE, CL_MAP_READ, 0, bytes, 0, NULL,
                               NULL, &err);
  if (err != CL_SUCCESS) return CL_FAIL(err, "map output");
  memcpy(t->data, m, bytes);
  if (*ev) clReleaseEvent(*ev);
  *ev = NULL;
  err = clEnqueueUnmapMemObject(p->c->q, p->buf[v], m, 0, NULL, ev);
  return err == CL_SUCCESS ? 0 : CL_FAIL(err, "unmap output");
}

/* ------------------------------------------------------------ supports */

static bool supports(void *ctx, const pv_graph *g, const pv_node *n) {
  (void)ctx;
  g_step s;
  int rc = g_step_parse(g, n, &s, true);
  if (!rc && s.kind == G_CONCAT && n->act) rc = PV_EUNSUPPORTED;
  if (rc) pv_log(PV_LOG_DEBUG, "opencl: %s (%s) runs elsewhere: %s", n->name, n->op, pv_errmsg());
  return rc == 0;
}

/* ------------------------------------------------------------ prepare */

static void release(void *pl) {
  ocl_plan *p = pl;
  if (!p) return;
  for (int i = 0; i < p->n; i++) {
    ocl_step *o = &p->st[i];
    cl_mem *ms[] = {&o->w,      &o->bias,   &o->data,  &o->row_off, &o->rg_blk,
                    &o->row_rg, &o->blk_c, &o->blk_off, &o->in_ch,  &o->out_row};
    for (size_t j = 0; j < sizeof ms / sizeof ms[0]; j++)
      if (*ms[j]) clReleaseMemObject(*ms[j]);
    g_step_free(&o->s);
  }
  if (p->buf)
    for (int v = 0; v < p->g->n_values; v++)
      if (p->buf[v]) clReleaseMemObject(p->buf[v]);
  if (p->col) clReleaseMemObject(p->col);
  free(p->st);
  free(p->role);
  free(p->buf);
  free(p->cap);
  free(p);
}

static int prepare_step(ocl_ctx *c, ocl_step *o) {
  g_step *s = &o->s;
  int rc = 0;
  if (s->kind != G_GEMM && s->kind != G_CONV) return 0;
  if (s->pv) {
    const pv_pivot *pv = s->pv;
    int32_t *bc = malloc(sizeof(int32_t) * 2 * (pv->n_blocks ? pv->n_blocks : 1));
    cl_ulong *bo = malloc(sizeof(cl_ulong) * (pv->n_blocks ? pv->n_blocks : 1));
    if (!bc || !bo) {
      free(bc);
      free(bo);
      return pv_error(PV_ENOMEM, "out of memory");
    }
    for (int b = 0; b < pv->n_blocks; b++) {
      bc[2 * b] = pv->col_off[pv->blocks[b].cg];
      bc[2 * b + 1] = pv->col_off[pv->blocks[b].cg + 1];
      bo[b] = pv->blocks[b].offset;
    }
    if (!(rc = upload(c, pv->data, pv->data_len * sizeof(float), &o->data)) &&
        !(rc = upload(c, pv->row_off, sizeof(int32_t) * (pv->nr + 1), &o->row_off)) &&
        !(rc = upload(c, s->rg_blk, sizeof(int32_t) * (pv->nr + 1), &o->rg_blk)) &&
        !(rc = upload(c, s->row_rg, sizeof(int32_t) * pv->M, &o->row_rg)) &&
        !(rc = upload(c, bc, sizeof(int32_t) * 2 * pv->n_blocks, &o->blk_c)) &&
        !(rc = upload(c, bo, sizeof(cl_ulong) * pv->n_blocks, &o->blk_off)) &&
        !(rc = upload(c, s->in_ch, sizeof(int32_t) * pv->C, &o->in_ch)) &&
        !(rc = upload(c, s->out_row, sizeof(int32_t) * pv->M, &o->out_row)))
      rc = upload(c, s->bias_p, sizeof(float) * pv->M, &o->bias);
    free(bc);
    free(bo);
    return rc;
  }
  if (!(rc = upload(c, s->w, sizeof(float) * (size_t)s->M * s->K, &o->w)))
    rc = upload(c, s->bias, s->bias ? sizeof(float) * s->M : sizeof(float) * s->M, &o->bias);
  return rc;
}

static int prepare(void *ctx, const pv_graph *g, const int *nodes, int n_nodes, void **out) {
  ocl_ctx *c = ctx;
  *out = NULL;
  ocl_plan *p = calloc(1, sizeof *p);
  if (!p) return pv_error(PV_ENOMEM, "out of memory");
  p->c = c;
  p->g = g;
  p->st = calloc(n_nodes ? n_nodes : 1, sizeof *p->st);
  p->role = calloc(g->n_values ? g->n_values : 1, 1);
  p->buf = calloc(g->n_values ? g->n_values : 1, sizeof *p->buf);
  p->cap = calloc(g->n_values ? g->n_values : 1, sizeof *p->cap);
  int rc = 0;
  if (!p->st || !p->role || !p->buf || !p->cap) {
    rc = pv_error(PV_ENOMEM, "out of memory");
    goto out_release;
  }
  pthread_mutex_lock(&c->lock);
  for (int i = 0; i < n_nodes && !rc; i++) {
    const pv_node *n = &g->nodes[nodes[i]];
    p->n = i + 1;
    rc = g_step_parse(g, n, &p->st[i].s, false);
    if (!rc) rc = prepare_step(c, &p->st[i]);
    if (rc) pv_error_prefix(rc, "opencl: node %s (%s)", n->name, n->op);
  }
  if (rc == 0 && n_nodes > 0) {
    /* g_value_roles reads steps as an array of g_step; ours are wrapped. */
    g_step *flat = malloc(sizeof(g_step) * n_nodes);
    if (!flat) rc = pv_error(PV_ENOMEM, "out of memory");
    for (int i = 0; flat && i < n_nodes; i++) flat[i] = p->st[i].s;
    if (flat) rc = g_value_roles(g, nodes, n_nodes, flat, p->role);
    free(flat);
  }
  /* Constants read as activations (a tensor added or multiplied) are
   * uploaded once. */
  for (int v = 0; !rc && v < g->n_values; v++)
    if (p->role[v] & G_V_CONST) {
      rc = upload(c, g->values[v].data, g->values[v].nbytes, &p->buf[v]);
      p->cap[v] = g->values[v].nbytes;
    }
  pthread_mutex_unlock(&c->lock);
  if (rc) goto out_release;
  *out = p;
  return 0;
out_release:
  release(p);
  return rc;
}

/* ------------------------------------------------------------ execute */

typedef struct launch {
  cl_kernel k;
  int n;
  cl_int err;
} launch;

static void arg_mem(launch *l, cl_mem m) {
  if (l->err == CL_SUCCESS) l->err = clSetKernelArg(l->k, l->n, sizeof m, &m);
  l->n++;
}
static void arg_int(launch *l, int64_t v) {
  cl_int x = (cl_int)v;
  if (l->err == CL_SUCCESS) l->err = clSetKernelArg(l->k, l->n, sizeof x, &x);
  l->n++;
}
static void arg_float(launch *l, float v) {
  if (l->err == CL_SUCCESS) l->err = clSetKernelArg(l->k, l->n, sizeof v, &v);
  l->n++;
}

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* Enqueue after *ev (if any); *ev becomes this launch's event. */
static int run(ocl_ctx *c, launch *l, int dims, size_t g0, size_t g1, cl_event *ev) {
  if (l->err != CL_SUCCESS) return CL_FAIL(l->err, "set kernel argument");
  /* Work-groups of 16 (1-D: 64), multiples of 4 as Mali prefers. */
  size_t local[2] = {dims == 1 ? 64 : 16, 1};
  size_t global[2] = {round_up(g0 ? g0 : 1, local[0]), g1 ? g1 : 1};
  cl_event done;
  cl_int err = clEnqueueNDRangeKernel(c->q, l->k, dims, NULL, global, local, *ev ? 1 : 0,
                                      *ev ? ev : NULL, &done);
  if (err != CL_SUCCESS) return CL_FAIL(err, "enqueue kernel");
  if (*ev) clReleaseEvent(*ev);
  *ev = done;
  return 0;
}

static bool too_big(int64_t v) { return v <= 0 || v > INT32_MAX; }

static int exec_step(ocl_plan *p, ocl_step *o, pv_run_ctx *rc, cl_event *ev) {
  ocl_ctx *c = p->c;
  g_step *s = &o->s;
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
  if (!p->buf[s->x]) return pv_error(PV_EINTERNAL, "input value %d not on the device", s->x);
  launch l = {0};
  switch (s->kind) {
  case G_GEMM: {
    if (xn % s->K || (xn / s->K) * s->M != yn)
      return pv_error(PV_ESHAPE, "input of %" PRId64 " values for K=%d, output %" PRId64,
                      xn, s->K, yn);
    int64_t P = xn / s->K;
    if (!P) return 0;
    l.k = c->k[s->pv ? K_PIVOT : K_GEMM];
    arg_mem(&l, p->buf[s->x]);
    if (s->pv) {
      cl_mem ms[] = {o->data,   o->row_off, o->rg_blk, o->row_rg, o->blk_c,
                     o->blk_off, o->in_ch,  o->out_row, o->bias};
      for (size_t i = 0; i < 9; i++) arg_mem(&l, ms[i]);
      arg_mem(&l, p->buf[s->y]);
      arg_int(&l, s->M);
      arg_int(&l, 1);
      arg_int(&l, s->K);
    } else {
      arg_mem(&l, o->w);
      arg_mem(&l, o->bias);
      arg_mem(&l, p->buf[s->y]);
      arg_int(&l, s->M);
      arg_int(&l, s->K);
    }
    arg_int(&l, P);
    arg_int(&l, 1);
    arg_int(&l, s->act);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 2, s->M, (P + 3) / 4, ev);
  }
  case G_CONV: {
    if (x->ndim != 4 || y->ndim != 4 || x->dims[1] != s->C || y->dims[1] != s->M ||
        y->dims[0] != x->dims[0])
      return pv_error(PV_ESHAPE, "conv: input/output shapes do not match the weights");
    int64_t N = x->dims[0], H = x->dims[2], W = x->dims[3], OH = y->dims[2], OW = y->dims[3];
    if (!yn) return 0;
    if (s->pv) {
      int64_t P = N * OH * OW, Kx = (int64_t)s->C * s->kh * s->kw;
      if (P * Kx > INT32_MAX) return pv_error(PV_ERANGE, "conv: im2col too large");
      size_t colb = (size_t)(P * Kx) * sizeof(float);
      if (colb > p->col_cap) {
        if (p->col) clReleaseMemObject(p->col);
        cl_int err;
        p->col_cap = 0;
        p->col = clCreateBuffer(c->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, colb, NULL,
                                &err);
        if (err != CL_SUCCESS) return CL_FAIL(err, "allocate im2col buffer");
        p->col_cap = colb;
      }
      l.k = c->k[K_IM2COL];
      arg_mem(&l, p->buf[s->x]);
      arg_mem(&l, p->col);
      int64_t a[] = {s->C, H, W, OH, OW, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, P};
      for (size_t i = 0; i < 14; i++) arg_int(&l, a[i]);
      if ((r = run(c, &l, 2, Kx, P, ev))) return r;
      launch m = {.k = c->k[K_PIVOT]};
      arg_mem(&m, p->col);
      cl_mem ms[] = {o->data,   o->row_off, o->rg_blk, o->row_rg, o->blk_c,
                     o->blk_off, o->in_ch,  o->out_row, o->bias};
      for (size_t i = 0; i < 9; i++) arg_mem(&m, ms[i]);
      arg_mem(&m, p->buf[s->y]);
      arg_int(&m, s->M);
      arg_int(&m, s->kh * s->kw);
      arg_int(&m, Kx);
      arg_int(&m, P);
      arg_int(&m, OH * OW);
      arg_int(&m, s->act);
      arg_float(&m, s->alpha);
      arg_float(&m, s->beta);
      return run(c, &m, 2, s->M, (P + 3) / 4, ev);
    }
    l.k = c->k[K_CONV];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, o->w);
    arg_mem(&l, o->bias);
    arg_mem(&l, p->buf[s->y]);
    int64_t a[] = {N, s->C, H, W, s->M, OH, OW, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw,
                   s->dh, s->dw, s->group, s->act};
    for (size_t i = 0; i < 17; i++) arg_int(&l, a[i]);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 1, yn, 0, ev);
  }
  case G_MAXPOOL:
  case G_AVGPOOL: {
    if (x->ndim != 4 || y->ndim != 4 || x->dims[0] != y->dims[0] || x->dims[1] != y->dims[1])
      return pv_error(PV_ESHAPE, "pool: 4-D input and output expected");
    if (!yn) return 0;
    l.k = c->k[K_POOL];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, p->buf[s->y]);
    int64_t a[] = {x->dims[0] * x->dims[1], x->dims[2], x->dims[3], y->dims[2], y->dims[3],
                   s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->ph1, s->pw1,
                   s->kind == G_MAXPOOL, s->count_include_pad, s->act};
    for (size_t i = 0; i < 16; i++) arg_int(&l, a[i]);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 1, yn, 0, ev);
  }
  case G_GAP: {
    if (x->ndim < 3 || y->ndim != x->ndim) return pv_error(PV_ESHAPE, "GlobalAveragePool rank");
    int64_t NC = x->dims[0] * x->dims[1];
    if (!NC || NC != yn) return NC ? pv_error(PV_ESHAPE, "GlobalAveragePool output") : 0;
    l.k = c->k[K_GAP];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, p->buf[s->y]);
    arg_int(&l, NC);
    arg_int(&l, xn / NC);
    arg_int(&l, s->act);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 1, NC, 0, ev);
  }
  case G_BINARY: {
    const pv_tensor *x2 = &rc->vals[s->x2];
    int64_t od[G_MAX_RANK], sa[G_MAX_RANK], sb[G_MAX_RANK];
    if ((r = g_bcast(x, y, od, sa)) || (r = g_bcast(x2, y, od, sb))) return r;
    if (!p->buf[s->x2]) return pv_error(PV_EINTERNAL, "input value %d not on the device", s->x2);
    if (!yn) return 0;
    l.k = c->k[K_BINARY];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, p->buf[s->x2]);
    arg_mem(&l, p->buf[s->y]);
    arg_int(&l, od[1]);
    arg_int(&l, od[2]);
    arg_int(&l, od[3]);
    for (int i = 0; i < 4; i++) arg_int(&l, sa[i]);
    for (int i = 0; i < 4; i++) arg_int(&l, sb[i]);
    arg_int(&l, yn);
    arg_int(&l, s->binop);
    arg_int(&l, s->act);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 1, yn, 0, ev);
  }
  case G_UNARY:
    if (xn != yn) return pv_error(PV_ESHAPE, "activation: %" PRId64 " in, %" PRId64 " out", xn, yn);
    if (!yn) return 0;
    l.k = c->k[K_UNARY];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, p->buf[s->y]);
    arg_int(&l, yn);
    arg_int(&l, s->act);
    arg_float(&l, s->alpha);
    arg_float(&l, s->beta);
    return run(c, &l, 1, yn, 0, ev);
  case G_COPY: {
    if (xn != yn) return pv_error(PV_ESHAPE, "%" PRId64 " values in, %" PRId64 " out", xn, yn);
    if (!yn) return 0;
    cl_event done;
    cl_int err = clEnqueueCopyBuffer(c->q, p->buf[s->x], p->buf[s->y], 0, 0, ybytes,
                                     *ev ? 1 : 0, *ev ? ev : NULL, &done);
    if (err != CL_SUCCESS) return CL_FAIL(err, "copy buffer");
    if (*ev) clReleaseEvent(*ev);
    *ev = done;
    return 0;
  }
  case G_RESIZE:
  case G_PAD: {
    if (x->ndim != 4 || y->ndim != 4 || x->dims[0] != y->dims[0] || x->dims[1] != y->dims[1])
      return pv_error(PV_ESHAPE, "4-D input and output expected");
    int64_t H = x->dims[2], W = x->dims[3], OH = y->dims[2], OW = y->dims[3];
    bool rs = s->kind == G_RESIZE;
    if (rs ? (OH != H * s->kh || OW != W * s->kw)
           : (OH != H + s->ph + s->ph1 || OW != W + s->pw + s->pw1))
      return pv_error(PV_ESHAPE, "output %" PRId64 "x%" PRId64 " does not match the input", OH, OW);
    if (!yn) return 0;
    l.k = c->k[rs ? K_UPSAMPLE : K_PAD];
    arg_mem(&l, p->buf[s->x]);
    arg_mem(&l, p->buf[s->y]);
    arg_int(&l, H);
    arg_int(&l, W);
    if (rs) {
      arg_int(&l, s->kh);
      arg_int(&l, s->kw);
    } else {
      arg_int(&l, OH);
      arg_int(&l, OW);
      arg_int(&l, s->ph);
      arg_int(&l, s->pw);
      arg_float(&l, s->alpha);
    }
    arg_int(&l, yn);
    return run(c, &l, 1, yn, 0, ev);
  }
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
      int64_t in_len = t->dims[axis] * inner, tot = in_len * outer;
      if (off + in_len > out_len) return pv_error(PV_ESHAPE, "Concat inputs exceed output");
      if (tot) {
        if (!p->buf[n->in[j]]) return pv_error(PV_EINTERNAL, "Concat input %d missing", j);
        launch m = {.k = c->k[K_CONCAT]};
        arg_mem(&m, p->buf[n->in[j]]);
        arg_mem(&m, p->buf[s->y]);
        arg_int(&m, in_len);
        arg_int(&m, out_len);
        arg_int(&m, off);
        arg_int(&m, tot);
        if ((r = run(c, &m, 1, tot, 0, ev))) return r;
      }
      off += in_len;
    }
    return off == out_len ? 0 : pv_error(PV_ESHAPE, "Concat inputs do not fill the output");
  }
  }
  return pv_error(PV_EINTERNAL, "step kind %d", s->kind);
}

static int execute(void *pl, pv_run_ctx *rc) {
  ocl_plan *p = pl;
  ocl_ctx *c = p->c;
  const pv_graph *g = p->g;
  int r = 0;
  cl_event ev = NULL;
  pthread_mutex_lock(&c->lock);
  for (int v = 0; v < g->n_values && !r; v++)
    if ((p->role[v] & G_V_INPUT) && !(p->role[v] & G_V_INTERNAL)) {
      if (too_big(pv_tensor_numel(&rc->vals[v])) && pv_tensor_numel(&rc->vals[v]))
        r = pv_error(PV_ERANGE, "opencl: input %s too large", g->values[v].name);
      else
        r = copy_in(p, v, &rc->vals[v]);
    }
  for (int i = 0; i < p->n && !r; i++) {
    r = exec_step(p, &p->st[i], rc, &ev);
    if (r) {
      const pv_node *n = &g->nodes[p->st[i].s.node];
      pv_error_prefix(r, "opencl: node %s (%s)", n->name, n->op);
    }
  }
  if (ev) {
    cl_int err = clWaitForEvents(1, &ev);
    if (!r && err != CL_SUCCESS) r = CL_FAIL(err, "kernel execution");
    clReleaseEvent(ev);
    ev = NULL;
  }
  for (int v = 0; v < g->n_values && !r; v++)
    if (p->role[v] & G_V_EXTERNAL) r = copy_out(p, v, &rc->vals[v], &ev);
  /* The last unmap completing means all of them have (in-order queue):
   * the buffers are then free for the next run. */
  if (ev) {
    cl_int err = clWaitForEvents(1, &ev);
    if (!r && err != CL_SUCCESS) r = CL_FAIL(err, "unmap");
    clReleaseEvent(ev);
  }
  pthread_mutex_unlock(&c->lock);
  return r;
}

static const pv_backend_iface iface = {
    .abi_version = PV_BACKEND_ABI_VERSION,
    .name = "opencl",
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
