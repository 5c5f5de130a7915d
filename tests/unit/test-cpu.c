/* CPU backend: every kernel against a naive reference on awkward sizes,
 * each ISA this CPU runs forced in turn; pivoted GEMM against the dense
 * product of the expanded matrix; convolutions (strides, pads, dilations,
 * groups, depthwise, pivoted) and Gemm/MatMul nodes through the plugin's
 * entry symbol; thread counts; concurrent runs; bad input. */
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cpu-impl.h"
#include "cunit-main.h"
#include "pv-backend.h"

/* ---------------------------------------------------------------- helpers */

static uint64_t rng = 88172645463325252ull;
static float frand(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (float)((rng >> 40) & 0xffff) / 32768.0f - 1.0f;
}
static int irand(int n) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (int)((rng >> 33) % (uint64_t)n);
}
static float *frand_buf(int64_t n) {
  float *p = pv_aligned_alloc((size_t)(n ? n : 1) * sizeof(float));
  for (int64_t i = 0; i < n; i++) p[i] = frand();
  return p;
}

/* max |a-b| / (max |b| + 1e-3): relative to the output's scale. */
static double rel_err(const float *a, const float *b, int64_t n) {
  double d = 0, s = 1e-3;
  for (int64_t i = 0; i < n; i++) {
    if (!(fabs(a[i] - b[i]) <= d)) d = fabs(a[i] - b[i]);
    if (fabs(b[i]) > s) s = fabs(b[i]);
  }
  return d / s;
}

static float act_ref(float v, pv_act a, float al, float be) {
  switch (a) {
  case PV_ACT_RELU: return v > 0 ? v : 0;
  case PV_ACT_LEAKY: return v < 0 ? al * v : v;
  case PV_ACT_CLIP: return fminf(fmaxf(v, al), be);
  case PV_ACT_SIGMOID: return 1 / (1 + expf(-v));
  case PV_ACT_TANH: return tanhf(v);
  default: return v;
  }
}

/* y[n][m] = act(sum_k W[m][k] x[n][k] + bias[m]) */
static void gemm_naive(const float *w, int M, int K, const float *x, int N,
                       const float *bias, pv_act act, float al, float be,
                       float *y) {
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++) {
      double s = bias ? bias[m] : 0;
      for (int k = 0; k < K; k++) s += (double)w[m * K + k] * x[n * K + k];
      y[n * M + m] = act_ref((float)s, act, al, be);
    }
}

static int n_isas(const pv_cpu_isa **out) {
  int n = 0;
  for (const char *const *nm = pv_cpu_isa_names(); *nm; nm++) {
    const pv_cpu_isa *isa = pv_cpu_isa_get(*nm);
    if (isa) out[n++] = isa;
  }
  return n;
}

/* Random permutation of n; the identity when identity_perms is set (a
 * layer inside a folded chain). */
static bool identity_perms, ident_rows, ident_cols;
static int32_t *rand_perm(int n) {
  int32_t *p = malloc(sizeof *p * n);
  for (int i = 0; i < n; i++) p[i] = i;
  for (int i = n - 1; i > 0 && !identity_perms; i--) {
    int j = irand(i + 1);
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/* Group offsets for `total` items in `g` groups; the first group has one
 * item (a one-row block) when total > g, the rest share the remainder. */
static int32_t *split(int total, int g) {
  int32_t *off = malloc(sizeof *off * (g + 1));
  off[0] = 0;
  int first = total > g ? 1 : total / g;
  off[1] = first;
  for (int i = 2; i <= g; i++)
    off[i] = first + (int)((int64_t)(total - first) * (i - 1) / (g - 1));
  return off;
}

/* Pivot with n row groups and n column groups; row group i connects to
 * column groups i, i+1, ... i+c-1 (mod n): c = 1 is block diagonal. */
static pv_pivot *make_pivot(int M, int C, int kk, int n, int c) {
  pv_pivot *p = calloc(1, sizeof *p);
  p->M = M;
  p->C = C;
  p->kk = kk;
  p->perm_r = rand_perm(M);
  p->perm_c = rand_perm(C);
  /* One side of a folded chain: that side's permutation is the identity. */
  for (int i = 0; i < M && ident_rows; i++) p->perm_r[i] = i;
  for (int i = 0; i < C && ident_cols; i++) p->perm_c[i] = i;
  p->nr = p->nc = n;
  p->row_off = split(M, n);
  p->col_off = split(C, n);
  p->n_blocks = n * c;
  p->blocks = calloc(p->n_blocks, sizeof *p->blocks);
  uint64_t off = 0;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < c; j++) {
      pv_pivot_block *b = &p->blocks[i * c + j];
      b->rg = i;
      b->cg = (i + j) % n;
      b->offset = off;
      off += (uint64_t)(p->row_off[i + 1] - p->row_off[i]) *
             (p->col_off[b->cg + 1] - p->col_off[b->cg]) * kk;
    }
  p->data = frand_buf((int64_t)off);
  p->data_len = off;
  p->data_owned = true;
  return p;
}

/* The test's own expansion, written from the header's definition. */
static float *pivot_dense(const pv_pivot *p) {
  int64_t K = (int64_t)p->C * p->kk;
  float *d = calloc((size_t)p->M * K, sizeof *d);
  for (int b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *bl = &p->blocks[b];
    int rows = p->row_off[bl->rg + 1] - p->row_off[bl->rg];
    int cols = (p->col_off[bl->cg + 1] - p->col_off[bl->cg]) * p->kk;
    for (int r = 0; r < rows; r++)
      for (int q = 0; q < cols; q++) {
        int lr = p->perm_r[p->row_off[bl->rg] + r];
        int ch = p->perm_c[p->col_off[bl->cg] + q / p->kk];
        d[(int64_t)lr * K + ch * p->kk + q % p->kk] =
            p->data[bl->offset + (uint64_t)r * cols + q];
      }
  }
  return d;
}

/* ---------------------------------------------------------------- kernels */

static void check_dense(const pv_cpu_isa *isa, pv_cpu_pool *pool, int M,
                        int K, int N, bool transposed, pv_act act) {
  float *w = frand_buf((int64_t)M * K), *x = frand_buf((int64_t)N * K);
  float *bias = frand_buf(M);
  float *y = frand_buf((int64_t)N * M), *ref = frand_buf((int64_t)N * M);
  pv_cpu_mat *mat;
  if (transposed) {
    /* Weights stored [K][M], as MatMul and Gemm with transB=0 have them. */
    float *wt = frand_buf((int64_t)M * K);
    for (int m = 0; m < M; m++)
      for (int k = 0; k < K; k++) wt[k * M + m] = w[m * K + k];
    mat = pv_cpu_mat_dense(wt, M, K, 1, M, 1, 1.0f);
    pv_free(wt);
  } else {
    mat = pv_cpu_mat_dense(w, M, K, K, 1, 1, 1.0f);
  }
  CU_ASSERT_PTR_NOT_NULL_FATAL(mat);
  pv_cpu_bsrc b = {.x = x, .ld_k = 1, .ld_n = K};
  pv_cpu_out o = {.y = y, .ld_m = 1, .ld_n = M, .bias = bias, .act = act,
                  .alpha = 0.1f, .beta = 0.5f};
  CU_ASSERT_EQUAL(pv_cpu_gemm(pool, isa, mat, &b, N, &o), 0);
  gemm_naive(w, M, K, x, N, bias, act, 0.1f, 0.5f, ref);
  double e = rel_err(y, ref, (int64_t)N * M);
  if (e > 1e-5)
    printf("\n  %s dense M=%d K=%d N=%d t=%d act=%d: err %g\n", isa->name, M,
           K, N, transposed, act, e);
  CU_ASSERT(e <= 1e-5);
  pv_cpu_mat_free(mat);
  pv_free(w);
  pv_free(x);
  pv_free(bias);
  pv_free(y);
  pv_free(ref);
}

static void test_dense_gemm_each_isa(void) {
  const pv_cpu_isa *isas[4];
  int ni = n_isas(isas);
  CU_ASSERT_FATAL(ni >= 1);
  pv_cpu_pool *pool = pv_cpu_pool_new(1, false);
  static const int Ms[] = {1, 15, 16, 17, 33, 50};
  static const int Ks[] = {1, 7, 19, 64};
  static const int Ns[] = {1, 3, 8, 17};
  for (int i = 0; i < ni; i++) {
    printf("[%s] ", isas[i]->name);
    int a = 0;
    for (size_t m = 0; m < 6; m++)
      for (size_t k = 0; k < 4; k++)
        for (size_t n = 0; n < 4; n++)
        {
          check_dense(isas[i], pool, Ms[m], Ks[k], Ns[n], (a & 1) != 0,
                      (pv_act)(a % 6));
          a++;
        }
    /* Many inputs and more columns than one chunk holds: K-blocked over
     * the rows read in place (a detector's box head: 12544 -> 1024). */
    check_dense(isas[i], pool, 37, 2100, 70, true, PV_ACT_RELU);
    check_dense(isas[i], pool, 20, 4099, 41, false, PV_ACT_NONE);
  }
  pv_cpu_pool_free(pool);
}

static void check_pivot_act(const pv_cpu_isa *isa, pv_cpu_pool *pool, int M,
                            int C, int n, int c, int N, pv_act act,
                            bool with_bias) {
  pv_pivot *p = make_pivot(M, C, 1, n, c);
  float *w = pivot_dense(p);
  float *x = frand_buf((int64_t)N * C), *bias = frand_buf(M);
  float *y = frand_buf((int64_t)N * M), *ref = frand_buf((int64_t)N * M);
  pv_cpu_mat *mat = pv_cpu_mat_pivot(p, 1.0f);
  CU_ASSERT_PTR_NOT_NULL_FATAL(mat);
  CU_ASSERT_EQUAL(mat->nnz, (int64_t)p->data_len);
  pv_cpu_bsrc b = {.x = x, .ld_k = 1, .ld_n = C};
  pv_cpu_out o = {.y = y, .ld_m = 1, .ld_n = M,
                  .bias = with_bias ? bias : NULL, .act = act, .alpha = 0.1f,
                  .beta = 0.5f};
  CU_ASSERT_EQUAL(pv_cpu_gemm(pool, isa, mat, &b, N, &o), 0);
  gemm_naive(w, M, C, x, N, with_bias ? bias : NULL, act, 0.1f, 0.5f, ref);
  double e = rel_err(y, ref, (int64_t)N * M);
  /* float sums over long rows against a double reference, measured on
   * outputs that clip and tanh squash: allow for the row length. A wrong
   * row or column is off by the order of the values themselves. */
  double tol = 1e-5 * (1.0 + C / 128.0);
  if (e > tol)
    printf("\n  %s pivot M=%d C=%d n=%d c=%d N=%d act=%d: err %g\n", isa->name,
           M, C, n, c, N, act, e);
  CU_ASSERT(e <= tol);
  pv_cpu_mat_free(mat);
  pv_pivot_free(p);
  free(w);
  pv_free(x);
  pv_free(bias);
  pv_free(y);
  pv_free(ref);
}

static void check_pivot(const pv_cpu_isa *isa, pv_cpu_pool *pool, int M,
                        int C, int n, int c, int N) {
  check_pivot_act(isa, pool, M, C, n, c, N, PV_ACT_LEAKY, true);
}

/* Batches up to 32 (the GEMM path with its column panels and tails),
 * every activation with and without bias, on pivoted layers with their
 * own permutations: small and large blocks, c-of-n patterns (the per-tile
 * gather and scatter path), one-row blocks, sizes off the vector width. */
static void test_pivot_gemm_batches(void) {
  const pv_cpu_isa *isas[4];
  int ni = n_isas(isas);
  pv_cpu_pool *pool = pv_cpu_pool_new(2, false);
  static const int Ns[] = {1, 3, 8, 17, 32};
  static const int shapes[][4] = {
      {37, 29, 4, 1},   {9, 5, 5, 1},      {130, 70, 8, 1},
      {200, 150, 3, 2}, {131, 515, 2, 1},  {700, 690, 2, 1},
      {1000, 1023, 8, 1}, {24, 9000, 2, 1}};
  int a = 0;
  for (int i = 0; i < ni; i++)
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
      for (size_t j = 0; j < sizeof Ns / sizeof Ns[0]; j++, a++) {
        /* The largest shapes at full batch only: enough to reach the
         * copy path, the 128-wide blocks and, with 4500-wide blocks at
         * batch 32 (more columns than a chunk of them holds), the
         * K-blocked rows, at a tenth of the time. */
        if (s >= 5 && Ns[j] != 32 && Ns[j] != 3) continue;
        check_pivot_act(isas[i], pool, shapes[s][0], shapes[s][1],
                        shapes[s][2], shapes[s][3], Ns[j], (pv_act)(a % 6),
                        a % 4 != 3);
      }
  pv_cpu_pool_free(pool);
}

/* The vector permute line against its definition, on lengths around the
 * vector width, every activation, with and without bias. */
static void test_permute_line(void) {
  const pv_cpu_isa *isas[4];
  int ni = n_isas(isas), tested = 0;
  static const int lens[] = {1, 7, 8, 9, 16, 31, 100};
  for (int i = 0; i < ni; i++) {
    pv_cpu_permute_fn fn = pv_cpu_isa_permute(isas[i]);
    if (!fn) continue;
    tested++;
    for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++)
      for (int act = 0; act < 6; act++)
        for (int wb = 0; wb < 2; wb++) {
          int n = lens[l];
          float *x = frand_buf(n), *bias = frand_buf(n);
          float *d = frand_buf(n + 1);
          int32_t *idx = rand_perm(n);
          d[n] = 42.0f; /* must stay: the tail is masked */
          fn(d, x, idx, n, wb ? bias : NULL, (pv_act)act, 0.1f, 0.5f);
          for (int q = 0; q < n; q++) {
            float want = act_ref(x[idx[q]] + (wb ? bias[q] : 0.0f),
                                 (pv_act)act, 0.1f, 0.5f);
            CU_ASSERT_DOUBLE_EQUAL(d[q], want, 1e-6);
          }
          CU_ASSERT_EQUAL(d[n], 42.0f);
          free(idx);
          pv_free(x);
          pv_free(bias);
          pv_free(d);
        }
  }
  printf("[%d ISA(s) with a vector permute] ", tested);
}

static void test_pivot_gemm_each_isa(void) {
  const pv_cpu_isa *isas[4];
  int ni = n_isas(isas);
  pv_cpu_pool *pool = pv_cpu_pool_new(2, false);
  static const int Ns[] = {1, 3, 17};
  for (int i = 0; i < ni; i++)
    for (int j = 0; j < 3; j++) {
      check_pivot(isas[i], pool, 37, 29, 4, 1, Ns[j]);  /* block diagonal */
      check_pivot(isas[i], pool, 50, 41, 3, 2, Ns[j]);  /* 2 of 3 */
      check_pivot(isas[i], pool, 130, 70, 8, 1, Ns[j]); /* many blocks */
      check_pivot(isas[i], pool, 9, 5, 5, 1, Ns[j]);    /* one-row blocks */
      identity_perms = true; /* contiguous ranges: no gather, no scatter */
      check_pivot(isas[i], pool, 64, 48, 4, 1, Ns[j]);
      check_pivot(isas[i], pool, 50, 41, 3, 2, Ns[j]);
      identity_perms = false;
      ident_rows = true; /* the first layer of a chain: gathers only */
      check_pivot(isas[i], pool, 64, 48, 4, 1, Ns[j]);
      ident_rows = false;
      ident_cols = true; /* the last: unpermutes only */
      check_pivot(isas[i], pool, 64, 48, 4, 1, Ns[j]);
      check_pivot(isas[i], pool, 70, 300, 4, 1, Ns[j]);
      ident_cols = false;
    }
  pv_cpu_pool_free(pool);
}

/* The k sum of an output never splits across threads, so results are
 * bit-identical for any thread count. */
static void test_threads_same_result(void) {
  const pv_cpu_isa *isa = pv_cpu_isa_best();
  pv_cpu_pool *p1 = pv_cpu_pool_new(1, false), *p2 = pv_cpu_pool_new(2, true);
  CU_ASSERT_EQUAL(pv_cpu_pool_threads(p2), 2);
  int M = 300, K = 200, N = 17;
  float *w = frand_buf((int64_t)M * K), *x = frand_buf((int64_t)N * K);
  float *y1 = frand_buf((int64_t)N * M), *y2 = frand_buf((int64_t)N * M);
  pv_pivot *pv = make_pivot(M, K, 1, 6, 2);
  pv_cpu_mat *mats[2] = {pv_cpu_mat_dense(w, M, K, K, 1, 1, 1.0f),
                         pv_cpu_mat_pivot(pv, 1.0f)};
  for (int i = 0; i < 2; i++) {
    pv_cpu_bsrc b = {.x = x, .ld_k = 1, .ld_n = K};
    pv_cpu_out o1 = {.y = y1, .ld_m = 1, .ld_n = M};
    pv_cpu_out o2 = {.y = y2, .ld_m = 1, .ld_n = M};
    CU_ASSERT_EQUAL(pv_cpu_gemm(p1, isa, mats[i], &b, N, &o1), 0);
    CU_ASSERT_EQUAL(pv_cpu_gemm(p2, isa, mats[i], &b, N, &o2), 0);
    CU_ASSERT(memcmp(y1, y2, sizeof(float) * N * M) == 0);
    pv_cpu_mat_free(mats[i]);
  }
  pv_pivot_free(pv);
  pv_free(w);
  pv_free(x);
  pv_free(y1);
  pv_free(y2);
  pv_cpu_pool_free(p1);
  pv_cpu_pool_free(p2);
}

static void test_csr(void) {
  pv_cpu_pool *pool = pv_cpu_pool_new(2, false);
  int M = 70, K = 45;
  float *w = frand_buf((int64_t)M * K);
  for (int i = 0; i < M * K; i++)
    if (irand(4)) w[i] = 0;
  pv_cpu_csr *c = pv_cpu_csr_from_dense(w, M, K);
  CU_ASSERT_PTR_NOT_NULL_FATAL(c);
  for (int N = 1; N <= 33; N += 16) {
    float *x = frand_buf((int64_t)N * K), *y = frand_buf((int64_t)N * M),
          *ref = frand_buf((int64_t)N * M);
    pv_cpu_csr_gemm(pool, c, x, y, N);
    gemm_naive(w, M, K, x, N, NULL, PV_ACT_NONE, 0, 0, ref);
    CU_ASSERT(rel_err(y, ref, (int64_t)N * M) <= 1e-5);
    pv_free(x);
    pv_free(y);
    pv_free(ref);
  }
  pv_cpu_csr_free(c);
  pv_free(w);
  pv_cpu_pool_free(pool);
}

/* ---------------------------------------------------------------- plugin */

static const pv_backend_iface *plugin(void) {
  static const pv_backend_iface *iface;
  if (iface) return iface;
  const char *dir = getenv("PIVOT_BACKEND_DIR");
  char path[4096];
  snprintf(path, sizeof path, "%s/cpu/.libs/pivot-backend-cpu.so",
           dir ? dir : "../../backends");
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("\n  dlopen %s: %s\n", path, dlerror());
    return NULL;
  }
  pv_backend_entry_fn entry =
      (pv_backend_entry_fn)dlsym(h, PV_BACKEND_ENTRY_SYMBOL);
  if (!entry) return NULL;
  iface = entry();
  return iface;
}

static void test_plugin_entry(void) {
  const pv_backend_iface *b = plugin();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  CU_ASSERT_EQUAL(b->abi_version, PV_BACKEND_ABI_VERSION);
  CU_ASSERT_STRING_EQUAL(b->name, "cpu");
  void *ctx;
  pv_backend_config cfg = {.threads = 2};
  CU_ASSERT_EQUAL_FATAL(b->init(&cfg, &ctx), 0);
  pv_device_props props;
  CU_ASSERT_EQUAL(b->device_props(ctx, 0, &props), 0);
  CU_ASSERT_EQUAL(props.compute_units, 2);
  CU_ASSERT(b->device_props(ctx, 1, &props) < 0);
  b->shutdown(ctx);
  setenv("PIVOT_CPU_ISA", "no-such-isa", 1);
  CU_ASSERT(b->init(&cfg, &ctx) < 0);
  CU_ASSERT(strstr(pv_errmsg(), "PIVOT_CPU_ISA") != NULL);
  unsetenv("PIVOT_CPU_ISA");
}

/* Runs run(b, ctx, i, arg) on a plugin context made with each ISA this
 * CPU runs forced in turn (PIVOT_CPU_ISA), i its index. */
static void plugin_each_isa(void (*run)(const pv_backend_iface *b, void *ctx,
                                        int i, const void *arg),
                            const void *arg) {
  const pv_backend_iface *b = plugin();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  const pv_cpu_isa *isas[4];
  int ni = n_isas(isas);
  for (int i = 0; i < ni; i++) {
    setenv("PIVOT_CPU_ISA", isas[i]->name, 1);
    void *ctx;
    pv_backend_config cfg = {.threads = 2};
    CU_ASSERT_EQUAL_FATAL(b->init(&cfg, &ctx), 0);
    run(b, ctx, i, arg);
    b->shutdown(ctx);
  }
  unsetenv("PIVOT_CPU_ISA");
}

static int add_const(pv_graph *g, const char *name, int ndim,
                     const int64_t *dims, float *data) {
  int v = pv_graph_add_value(g, name);
  pv_value *val = &g->values[v];
  val->dtype = PV_F32;
  val->ndim = ndim;
  memcpy(val->dims, dims, sizeof(int64_t) * ndim);
  val->data = data; /* owned by the graph now */
  val->nbytes = 4;
  for (int i = 0; i < ndim; i++) val->nbytes *= dims[i];
  return v;
}

static void set_ints(pv_graph *g, int node, const char *name, int n,
                     const int64_t *v) {
  pv_attr a = {.name = (char *)name, .type = PV_ATTR_INTS, .n = n,
               .ints = (int64_t *)v};
  pv_node_add_attr(g, node, &a);
}

typedef struct conv_case {
  int N, C, H, W, M, kh, kw, sh, sw, dh, dw, group;
  int64_t pads[4];
  const char *auto_pad;
  int pivot_n; /* > 0: pivoted weights, n groups */
  int pivot_c; /* each row group reads c column groups (0: 1) */
} conv_case;

static void conv_naive(const conv_case *c, const int64_t *pads, int OH,
                       int OW, const float *x, const float *w,
                       const float *bias, pv_act act, float *y) {
  int cin = c->C / c->group, mg = c->M / c->group;
  for (int n = 0; n < c->N; n++)
    for (int m = 0; m < c->M; m++)
      for (int oy = 0; oy < OH; oy++)
        for (int ox = 0; ox < OW; ox++) {
          double s = bias[m];
          int g = m / mg;
          for (int ci = 0; ci < cin; ci++)
            for (int ky = 0; ky < c->kh; ky++)
              for (int kx = 0; kx < c->kw; kx++) {
                int iy = oy * c->sh - (int)pads[0] + ky * c->dh;
                int ix = ox * c->sw - (int)pads[1] + kx * c->dw;
                if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
                s += (double)w[((m * cin + ci) * c->kh + ky) * c->kw + kx] *
                     x[((n * c->C + g * cin + ci) * c->H + iy) * c->W + ix];
              }
          y[((n * c->M + m) * OH + oy) * OW + ox] =
              act_ref((float)s, act, 0.1f, 0.5f);
        }
}

/* one_d: a 1-D convolution (c->H = c->kh = 1), tensors [N, C, W] and
 * weights [M, C, k]. */
static void run_conv_case(const pv_backend_iface *b, void *ctx,
                          const conv_case *c, pv_act act, bool one_d) {
  int cin = c->C / c->group;
  int64_t pads[4];
  memcpy(pads, c->pads, sizeof pads);
  int ekh = (c->kh - 1) * c->dh + 1, ekw = (c->kw - 1) * c->dw + 1;
  int OH, OW;
  if (c->auto_pad) { /* SAME_UPPER */
    OH = (c->H + c->sh - 1) / c->sh;
    OW = (c->W + c->sw - 1) / c->sw;
    int th = (OH - 1) * c->sh + ekh - c->H, tw = (OW - 1) * c->sw + ekw - c->W;
    if (th < 0) th = 0;
    if (tw < 0) tw = 0;
    pads[0] = th / 2;
    pads[1] = tw / 2;
    pads[2] = th - th / 2;
    pads[3] = tw - tw / 2;
  } else {
    OH = (c->H + (int)pads[0] + (int)pads[2] - ekh) / c->sh + 1;
    OW = (c->W + (int)pads[1] + (int)pads[3] - ekw) / c->sw + 1;
  }
  pv_graph *g = pv_graph_new();
  int xv = pv_graph_add_value(g, "x");
  int64_t wd[4] = {c->M, cin, c->kh, c->kw}, bd[1] = {c->M};
  float *w, *dense_w = NULL;
  pv_pivot *pv = NULL;
  if (c->pivot_n) {
    pv = make_pivot(c->M, cin, c->kh * c->kw, c->pivot_n,
                    c->pivot_c ? c->pivot_c : 1);
    dense_w = pivot_dense(pv);
    w = NULL;
  } else {
    w = frand_buf((int64_t)c->M * cin * c->kh * c->kw);
  }
  if (one_d) wd[2] = c->kw; /* [M, cin, kw] */
  int wv = add_const(g, "w", one_d ? 3 : 4, wd, w);
  if (pv) g->values[wv].pivot = pv;
  const float *wref = pv ? dense_w : w;
  int bv = add_const(g, "b", 1, bd, frand_buf(c->M));
  int yv = pv_graph_add_value(g, "y");
  int in[3] = {xv, wv, bv};
  int node = pv_graph_add_node(g, "conv0", "Conv", in, 3, &yv, 1);
  int64_t st[2] = {c->sh, c->sw}, dl[2] = {c->dh, c->dw}, ks[2] = {c->kh, c->kw};
  int sp = one_d ? 1 : 2, o1 = one_d; /* spatial axes; 1-D: the last */
  int64_t p1[2] = {c->pads[1], c->pads[3]};
  set_ints(g, node, "strides", sp, st + o1);
  set_ints(g, node, "dilations", sp, dl + o1);
  set_ints(g, node, "kernel_shape", sp, ks + o1);
  if (c->auto_pad) {
    pv_attr a = {.name = "auto_pad", .type = PV_ATTR_STRING,
                 .s = (char *)c->auto_pad};
    pv_node_add_attr(g, node, &a);
  } else {
    set_ints(g, node, "pads", 2 * sp, one_d ? p1 : c->pads);
  }
  pv_attr ga = {.name = "group", .type = PV_ATTR_INT, .i = c->group};
  pv_node_add_attr(g, node, &ga);
  g->nodes[node].act = act;
  g->nodes[node].act_alpha = 0.1f;
  g->nodes[node].act_beta = 0.5f;

  void *plan = NULL;
  CU_ASSERT_TRUE(b->supports(ctx, g, &g->nodes[node]));
  int r = b->prepare(ctx, g, &node, 1, &plan);
  CU_ASSERT_EQUAL_FATAL(r, 0);
  pv_tensor vals[4] = {{0}};
  vals[xv] = (pv_tensor){PV_F32, 4, {c->N, c->C, c->H, c->W},
                         frand_buf((int64_t)c->N * c->C * c->H * c->W)};
  vals[wv] = pv_value_tensor(&g->values[wv]);
  vals[bv] = pv_value_tensor(&g->values[bv]);
  vals[yv] = (pv_tensor){PV_F32, 4, {c->N, c->M, OH, OW}, NULL};
  if (one_d) { /* the same data as [N, C, W] and [N, M, OW] */
    vals[xv].ndim = vals[yv].ndim = 3;
    vals[xv].dims[2] = c->W;
    vals[yv].dims[2] = OW;
    vals[xv].dims[3] = vals[yv].dims[3] = 0;
  }
  pv_tensor_alloc(&vals[yv]);
  int64_t ny = (int64_t)c->N * c->M * OH * OW;
  float *ref = malloc(sizeof(float) * ny);
  pv_run_ctx rc = {.vals = vals, .batch = c->N};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  /* The sums, then the activation: the error is measured relative to the
   * sums, since a Clip to [0.1, 0.5] leaves outputs far smaller than the
   * sums whose rounding they carry. */
  conv_naive(c, pads, OH, OW, vals[xv].data, wref, g->values[bv].data,
             PV_ACT_NONE, ref);
  double scale = 1e-3, dmax = 0;
  for (int64_t i = 0; i < ny; i++) {
    if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    ref[i] = act_ref(ref[i], act, 0.1f, 0.5f);
    float yi = ((const float *)vals[yv].data)[i];
    if (!(fabs(yi - ref[i]) <= dmax)) dmax = fabs(yi - ref[i]);
  }
  double e = dmax / scale;
  /* float sums drift like sqrt(terms): allow for it beyond 100 taps */
  int taps = cin * c->kh * c->kw;
  double tol = taps > 100 ? 1e-5 * sqrt(taps / 100.0) : 1e-5;
  if (e > tol)
    printf("\n  %s conv N=%d C=%d HxW=%dx%d M=%d k=%dx%d s=%d d=%d g=%d piv=%d "
           "act=%d: err %g (tol %g)\n",
           getenv("PIVOT_CPU_ISA"), c->N, c->C, c->H, c->W, c->M, c->kh, c->kw,
           c->sh, c->dh, c->group, c->pivot_n, (int)act, e, tol);
  CU_ASSERT(e <= tol);

  /* A wrong output or input shape is an error naming the node, not a
   * crash or a write past the output. */
  int last = vals[yv].ndim - 1;
  vals[yv].dims[last] = OW + 2;
  CU_ASSERT_EQUAL(b->execute(plan, &rc), PV_ESHAPE);
  vals[yv].dims[last] = OW;
  vals[xv].dims[1] = c->C + 1;
  CU_ASSERT_EQUAL(b->execute(plan, &rc), PV_ESHAPE);
  CU_ASSERT(strstr(pv_errmsg(), "conv0") != NULL);

  b->release(plan);
  pv_free(vals[xv].data);
  pv_free(vals[yv].data);
  free(ref);
  free(dense_w);
  pv_graph_free(g);
}

typedef struct conv_set {
  const conv_case *c;
  size_t n;
  bool one_d;
} conv_set;

static void conv_cases(const pv_backend_iface *b, void *ctx, int i,
                       const void *arg) {
  const conv_set *cs = arg;
  for (size_t j = 0; j < cs->n; j++)
    run_conv_case(b, ctx, &cs->c[j], (pv_act)((i + (int)j) % 6), cs->one_d);
}

/* Every case on every ISA, with PIVOT_CPU_CONV=conv_env if set. */
static void conv_each_isa(const conv_case *cases, size_t n,
                          const char *conv_env) {
  conv_set set = {cases, n, false};
  if (conv_env) setenv("PIVOT_CPU_CONV", conv_env, 1);
  plugin_each_isa(conv_cases, &set);
  if (conv_env) unsetenv("PIVOT_CPU_CONV");
}

static void test_plugin_conv_each_isa(void) {
  static const conv_case cases[] = {
      {1, 3, 9, 7, 5, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 4, 10, 11, 6, 3, 3, 2, 2, 1, 1, 2, {1, 0, 2, 1}, NULL, 0, 0},
      {1, 6, 12, 9, 6, 3, 3, 1, 1, 2, 2, 6, {2, 2, 2, 2}, NULL, 0, 0}, /* dw */
      {1, 5, 11, 10, 5, 3, 3, 2, 2, 1, 1, 5, {1, 1, 1, 1}, NULL, 0, 0}, /* dw s2 */
      /* depthwise 3x3 on AVX-512 (16 outputs a vector over a padded
       * copy): row tails, stride 2, asymmetric and wide pads, no pads */
      {1, 8, 17, 19, 8, 3, 3, 1, 1, 1, 1, 8, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 16, 14, 14, 16, 3, 3, 2, 2, 1, 1, 16, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 6, 40, 35, 6, 3, 3, 2, 2, 1, 1, 6, {1, 0, 0, 1}, NULL, 0, 0},
      {1, 5, 9, 33, 5, 3, 3, 1, 1, 1, 1, 5, {0, 0, 0, 0}, NULL, 0, 0},
      {1, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 4, {2, 2, 2, 2}, NULL, 0, 0},
      {2, 20, 5, 6, 17, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0}, /* 1x1 */
      {1, 7, 13, 12, 9, 5, 5, 3, 3, 1, 1, 1, {0}, "SAME_UPPER", 0, 0},
      {1, 3, 6, 6, 4, 2, 3, 1, 2, 3, 1, 1, {0, 2, 1, 0}, NULL, 0, 0},
      {2, 19, 8, 9, 35, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 4, 0}, /* pivot */
      {1, 12, 7, 7, 40, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 3, 0},
      /* wide enough for interior panels (implicit GEMM, no im2col) */
      {2, 4, 12, 21, 20, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 3, 14, 30, 17, 3, 3, 1, 1, 2, 2, 1, {2, 2, 2, 2}, NULL, 0, 0},
      {1, 8, 10, 26, 24, 3, 3, 2, 1, 1, 1, 1, {1, 0, 1, 2}, NULL, 2, 0},
      {1, 6, 9, 40, 12, 3, 3, 1, 1, 1, 1, 2, {1, 1, 1, 1}, NULL, 0, 0},
      /* more taps than the implicit GEMM takes (K > 320) */
      {1, 40, 7, 9, 37, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 460, 6, 5, 18, 3, 3, 2, 1, 1, 1, 2, {1, 0, 1, 1}, NULL, 0, 0},
      {1, 460, 5, 6, 70, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 2, 0},
      /* AVX-512 pixel tiles (8 channels x 48 pixels): channel counts not
       * a multiple of 8, more than 384 taps (blocked, partial sums in the
       * output), several pixel chunks */
      {1, 50, 30, 40, 13, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {3, 7, 23, 29, 21, 3, 3, 2, 2, 1, 1, 1, {0, 1, 1, 0}, NULL, 0, 0},
      {1, 48, 9, 45, 10, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      /* stride-2 rows in AVX-512 im2col: a 7x7 stem, a wide 3x3 row */
      {1, 3, 21, 101, 16, 7, 7, 2, 2, 1, 1, 1, {3, 3, 3, 3}, NULL, 0, 0},
      {2, 5, 9, 70, 12, 3, 3, 2, 2, 1, 1, 1, {1, 0, 1, 1}, NULL, 0, 0},
      /* pointwise with >= 128 output channels: the planes are copied
       * into aligned blocks instead of read in place */
      {1, 40, 6, 20, 130, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      {2, 24, 2, 100, 136, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      /* rows of >= 96 pixels read the padded input in place: odd widths,
       * stride 2 down the rows, dilation, groups, pivoted, blocked taps */
      {1, 3, 9, 100, 5, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {3, 4, 11, 131, 9, 3, 3, 2, 1, 1, 1, 1, {1, 2, 0, 1}, NULL, 0, 0},
      {1, 5, 12, 120, 17, 3, 3, 1, 1, 2, 2, 1, {2, 2, 2, 2}, NULL, 0, 0},
      {1, 8, 6, 97, 16, 3, 3, 1, 1, 1, 1, 2, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 12, 5, 110, 24, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 3, 0},
      {1, 50, 4, 98, 11, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      /* pivoted layers take the pixel tiles even where pixels fill few
       * lanes (7x7: 49 of 64, 5x5: 25 of 32) */
      {2, 64, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 8, 0},
      {1, 16, 5, 5, 24, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 4, 0},
      /* 2-of-n blocks (each row group reads two column groups), the small
       * CNN's 14x14 and 7x7 layers, a stride-2 one without pads, a
       * dilated one; on the GEMM path read in place (no im2col) */
      {3, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 8, 2},
      {2, 64, 7, 7, 128, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 16, 2},
      {1, 12, 11, 13, 20, 3, 3, 2, 2, 1, 1, 1, {0, 0, 0, 0}, NULL, 4, 2},
      {2, 10, 9, 8, 14, 3, 2, 1, 1, 2, 2, 1, {2, 1, 0, 2}, NULL, 5, 2},
      /* pointwise with >= 384 input channels: planes read K-blocked, two
       * column chunks */
      {2, 400, 17, 19, 21, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
  };
  conv_each_isa(cases, sizeof cases / sizeof cases[0], NULL);
}

/* 1-D convolutions run as height 1 on the same kernels: strides,
 * dilation, asymmetric pads, groups, depthwise, pivoted, SAME, a long
 * row; tensors [N, C, W], weights [M, C, k]. */
#define C1(n, c, w, m, k, s, d, g, pl, pr, piv)                               \
  {.N = n, .C = c, .H = 1, .W = w, .M = m, .kh = 1, .kw = k, .sh = 1, .sw = s, \
   .dh = 1, .dw = d, .group = g, .pads = {0, pl, 0, pr}, .pivot_n = piv}
static void test_plugin_conv1d_each_isa(void) {
  static const conv_case cases[] = {
      C1(2, 4, 37, 6, 5, 2, 1, 1, 2, 1, 0),   C1(1, 8, 50, 8, 3, 1, 3, 2, 3, 3, 0),
      C1(1, 12, 33, 12, 7, 1, 1, 12, 3, 3, 0), C1(2, 16, 20, 24, 3, 1, 1, 1, 1, 1, 4),
      C1(1, 3, 400, 16, 9, 1, 1, 1, 4, 4, 0),  C1(3, 6, 9, 5, 1, 1, 1, 1, 0, 0, 0),
      {.N = 1, .C = 5, .H = 1, .W = 23, .M = 7, .kh = 1, .kw = 4, .sh = 1, .sw = 3,
       .dh = 1, .dw = 1, .group = 1, .auto_pad = "SAME_UPPER"},
  };
  conv_set set = {cases, sizeof cases / sizeof cases[0], true};
  plugin_each_isa(conv_cases, &set);
}

/* Dense 3x3 stride-1 layers as Winograd F(2x2, 3x3) (from 64 channels
 * in and out with AVX-512, from 128 in elsewhere; forced here): odd and even output sizes (the tiles' last row and column
 * fall outside), asymmetric and SAME pads, batches (tiles of all images
 * in one GEMM), channel counts off the 16-row panels, tile counts that
 * take the pixel tiles (T = 338, 169, 16) and the GEMM path (T = 49, 24,
 * 2, 1); T = 169 with 128 outputs copies its planes into blocks. */
static void test_plugin_conv_winograd_each_isa(void) {
  static const conv_case cases[] = {
      {1, 64, 13, 13, 64, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 70, 26, 26, 66, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 64, 9, 12, 80, 3, 3, 1, 1, 1, 1, 1, {0, 2, 1, 0}, NULL, 0, 0},
      {1, 65, 10, 11, 64, 3, 3, 1, 1, 1, 1, 1, {0}, "SAME_UPPER", 0, 0},
      {3, 64, 7, 7, 72, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 96, 6, 5, 128, 3, 3, 1, 1, 1, 1, 1, {2, 3, 2, 1}, NULL, 0, 0},
      {1, 64, 4, 5, 64, 3, 3, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      {1, 64, 3, 3, 64, 3, 3, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      {1, 64, 26, 26, 128, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
  };
  /* Forced: where a kernel set reads convolutions in place, Winograd
   * takes only >= 128 input channels on its own. */
  conv_each_isa(cases, sizeof cases / sizeof cases[0], "winograd");
  /* chosen by the thresholds on every ISA */
  static const conv_case big[] = {
      {1, 130, 13, 11, 64, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 128, 12, 12, 70, 3, 3, 1, 1, 1, 1, 1, {0, 1, 1, 0}, NULL, 0, 0},
      /* products over >= 384 channels: K-blocked, two column chunks */
      {1, 390, 34, 33, 40, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
  };
  conv_each_isa(big, sizeof big / sizeof big[0], NULL);
}

/* PIVOT_CPU_CONV=direct keeps 3x3 layers off Winograd; here for the
 * GEMM path's many-taps case: K >= 2048, im2col once, K-blocked in 256
 * steps (K = 2070: a short last block); rows over several items,
 * columns over two chunks. */
static void test_plugin_conv_direct_each_isa(void) {
  static const conv_case cases[] = {
      {1, 230, 17, 16, 270, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {2, 64, 13, 13, 64, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
  };
  conv_each_isa(cases, sizeof cases / sizeof cases[0], "direct");
}

/* Conv followed by a 2x2 stride-2 MaxPool: where the pool is the conv
 * output's only reader, AVX-512 stores pooled tiles and skips the conv
 * output; with a second reader (`shared`) both run apart. Odd sizes (the
 * pool drops the last row and column), batch 2, strided rows, groups,
 * pivoted weights; checked against the definition on every ISA. */
static void run_conv_pool_case(const pv_backend_iface *b, void *ctx,
                               const conv_case *c, pv_act act, bool shared,
                               bool alias) {
  int cin = c->C / c->group;
  int ekh = (c->kh - 1) * c->dh + 1, ekw = (c->kw - 1) * c->dw + 1;
  int OH = (c->H + (int)c->pads[0] + (int)c->pads[2] - ekh) / c->sh + 1;
  int OW = (c->W + (int)c->pads[1] + (int)c->pads[3] - ekw) / c->sw + 1;
  int PH = OH / 2, PW = OW / 2;
  pv_graph *g = pv_graph_new();
  int xv = pv_graph_add_value(g, "x");
  int64_t wd[4] = {c->M, cin, c->kh, c->kw}, bd[1] = {c->M};
  pv_pivot *pv = c->pivot_n ? make_pivot(c->M, cin, c->kh * c->kw, c->pivot_n,
                                         c->pivot_c ? c->pivot_c : 1)
                            : NULL;
  float *dense_w = pv ? pivot_dense(pv) : NULL;
  float *w = pv ? NULL : frand_buf((int64_t)c->M * cin * c->kh * c->kw);
  int wv = add_const(g, "w", 4, wd, w);
  if (pv) g->values[wv].pivot = pv;
  int bv = add_const(g, "b", 1, bd, frand_buf(c->M));
  int cv = pv_graph_add_value(g, "c"), yv = pv_graph_add_value(g, "y");
  int rv = pv_graph_add_value(g, "r");
  int in[3] = {xv, wv, bv};
  int nodes[3];
  nodes[0] = pv_graph_add_node(g, "conv0", "Conv", in, 3, &cv, 1);
  int64_t st[2] = {c->sh, c->sw}, dl[2] = {c->dh, c->dw}, ks[2] = {c->kh, c->kw};
  set_ints(g, nodes[0], "strides", 2, st);
  set_ints(g, nodes[0], "dilations", 2, dl);
  set_ints(g, nodes[0], "kernel_shape", 2, ks);
  set_ints(g, nodes[0], "pads", 4, c->pads);
  pv_attr ga = {.name = "group", .type = PV_ATTR_INT, .i = c->group};
  pv_node_add_attr(g, nodes[0], &ga);
  g->nodes[nodes[0]].act = act;
  g->nodes[nodes[0]].act_alpha = 0.1f;
  g->nodes[nodes[0]].act_beta = 0.5f;
  nodes[1] = pv_graph_add_node(g, "pool0", "MaxPool", &cv, 1, &yv, 1);
  int64_t two[2] = {2, 2};
  set_ints(g, nodes[1], "kernel_shape", 2, two);
  set_ints(g, nodes[1], "strides", 2, two);
  int n_nodes = 2;
  if (shared) nodes[n_nodes++] = pv_graph_add_node(g, "relu0", "Relu", &cv, 1, &rv, 1);

  void *plan = NULL;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, nodes, n_nodes, &plan), 0);
  pv_tensor vals[7] = {{0}};
  vals[xv] = (pv_tensor){PV_F32, 4, {c->N, c->C, c->H, c->W},
                         frand_buf((int64_t)c->N * c->C * c->H * c->W)};
  vals[wv] = pv_value_tensor(&g->values[wv]);
  vals[bv] = pv_value_tensor(&g->values[bv]);
  vals[cv] = (pv_tensor){PV_F32, 4, {c->N, c->M, OH, OW}, NULL};
  vals[yv] = (pv_tensor){PV_F32, 4, {c->N, c->M, PH, PW}, NULL};
  vals[rv] = (pv_tensor){PV_F32, 4, {c->N, c->M, OH, OW}, NULL};
  pv_tensor_alloc(&vals[cv]);
  pv_tensor_alloc(&vals[yv]);
  pv_tensor_alloc(&vals[rv]);
  int64_t nc = (int64_t)c->N * c->M * OH * OW, np = (int64_t)c->N * c->M * PH * PW;
  float *ref = malloc(sizeof(float) * nc), *pref = malloc(sizeof(float) * np);
  conv_naive(c, c->pads, OH, OW, vals[xv].data, pv ? dense_w : w,
             g->values[bv].data, act, ref);
  for (int64_t pl = 0; pl < (int64_t)c->N * c->M; pl++)
    for (int py = 0; py < PH; py++)
      for (int px = 0; px < PW; px++) {
        const float *r0 = ref + (pl * OH + 2 * py) * OW + 2 * px, *r1 = r0 + OW;
        float m = fmaxf(fmaxf(r0[0], r0[1]), fmaxf(r1[0], r1[1]));
        pref[(pl * PH + py) * PW + px] = m;
      }
  if (alias) { /* the pool output from x's second plane on, as a memory
                  plan may place it: storing pooled tiles while the conv
                  still reads x would corrupt it */
    int64_t nx = (int64_t)c->N * c->C * c->H * c->W, plane = (int64_t)c->H * c->W;
    float *buf = pv_aligned_alloc(sizeof(float) * (size_t)(nx > plane + np ? nx : plane + np));
    memcpy(buf, vals[xv].data, sizeof(float) * (size_t)nx);
    pv_free(vals[xv].data);
    pv_free(vals[yv].data);
    vals[xv].data = buf;
    vals[yv].data = buf + plane;
  }
  pv_run_ctx rc = {.vals = vals, .batch = c->N};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  int taps = cin * c->kh * c->kw;
  double tol = taps > 100 ? 1e-5 * sqrt(taps / 100.0) : 1e-5;
  double e = rel_err(vals[yv].data, pref, np);
  if (e > tol)
    printf("\n  %s conv+pool C=%d M=%d W=%d shared=%d alias=%d: err %g\n",
           getenv("PIVOT_CPU_ISA"), c->C, c->M, c->W, shared, alias, e);
  CU_ASSERT(e <= tol);
  if (shared) { /* the conv output itself, read by the Relu */
    CU_ASSERT(rel_err(vals[cv].data, ref, nc) <= tol);
  }
  /* A pool output of the wrong shape is still an error, not a write past it. */
  vals[yv].dims[3] = PW + 1;
  CU_ASSERT_NOT_EQUAL(b->execute(plan, &rc), 0);
  b->release(plan);
  pv_free(vals[xv].data);
  pv_free(vals[cv].data);
  if (!alias) pv_free(vals[yv].data);
  pv_free(vals[rv].data);
  free(ref);
  free(pref);
  free(dense_w);
  pv_graph_free(g);
}

static void conv_pool_cases(const pv_backend_iface *b, void *ctx, int i,
                            const void *arg) {
  const conv_set *cs = arg;
  for (size_t j = 0; j < cs->n; j++)
    for (int mode = 0; mode < 3; mode++)
      run_conv_pool_case(b, ctx, &cs->c[j], (pv_act)((i + (int)j) % 6),
                         mode == 1, mode == 2);
}

static void test_plugin_conv_pool_each_isa(void) {
  static const conv_case cases[] = {
      {2, 3, 9, 101, 10, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 5, 13, 130, 17, 3, 3, 2, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 8, 6, 97, 16, 3, 3, 1, 1, 1, 1, 2, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 12, 7, 110, 24, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 3, 0},
      {1, 16, 8, 100, 8, 1, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, NULL, 0, 0},
      /* not fused on AVX-512: narrow rows, more than 384 taps */
      {1, 4, 10, 20, 9, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 50, 4, 98, 11, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      /* fused where convolutions are read in place (AVX2, C): odd planes
       * (the last row and column not pooled), 2-of-n blocks, stride 2,
       * dilation */
      {2, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 8, 2},
      {1, 6, 7, 7, 10, 3, 3, 1, 1, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 5, 11, 13, 9, 3, 3, 2, 2, 1, 1, 1, {1, 1, 1, 1}, NULL, 0, 0},
      {1, 4, 12, 15, 7, 3, 3, 1, 1, 2, 2, 1, {2, 2, 2, 2}, NULL, 0, 0},
  };
  conv_set set = {cases, sizeof cases / sizeof cases[0], false};
  plugin_each_isa(conv_pool_cases, &set);
}

typedef struct mp_case {
  int N, C, H, W, kh, kw, sh, sw, dh, dw;
  int64_t pads[4];
  int ceil_mode;
  const char *auto_pad;
} mp_case;

static void run_maxpool_case(const pv_backend_iface *b, void *ctx,
                             const mp_case *c) {
  int64_t p[4];
  memcpy(p, c->pads, sizeof p);
  int ekh = (c->kh - 1) * c->dh + 1, ekw = (c->kw - 1) * c->dw + 1;
  int OH, OW;
  if (c->auto_pad) { /* SAME_UPPER */
    OH = (c->H + c->sh - 1) / c->sh;
    OW = (c->W + c->sw - 1) / c->sw;
    int th = (OH - 1) * c->sh + ekh - c->H, tw = (OW - 1) * c->sw + ekw - c->W;
    th = th < 0 ? 0 : th;
    tw = tw < 0 ? 0 : tw;
    p[0] = th / 2;
    p[1] = tw / 2;
  } else {
    int sh = c->H + (int)(p[0] + p[2]) - ekh, sw = c->W + (int)(p[1] + p[3]) - ekw;
    OH = (c->ceil_mode ? (sh + c->sh - 1) / c->sh : sh / c->sh) + 1;
    OW = (c->ceil_mode ? (sw + c->sw - 1) / c->sw : sw / c->sw) + 1;
  }
  pv_graph *g = pv_graph_new();
  int xv = pv_graph_add_value(g, "x"), yv = pv_graph_add_value(g, "y");
  int node = pv_graph_add_node(g, "pool0", "MaxPool", &xv, 1, &yv, 1);
  int64_t ks[2] = {c->kh, c->kw}, st[2] = {c->sh, c->sw}, dl[2] = {c->dh, c->dw};
  set_ints(g, node, "kernel_shape", 2, ks);
  set_ints(g, node, "strides", 2, st);
  set_ints(g, node, "dilations", 2, dl);
  if (c->auto_pad) {
    pv_attr a = {.name = "auto_pad", .type = PV_ATTR_STRING,
                 .s = (char *)c->auto_pad};
    pv_node_add_attr(g, node, &a);
  } else {
    set_ints(g, node, "pads", 4, c->pads);
  }
  pv_attr cm = {.name = "ceil_mode", .type = PV_ATTR_INT, .i = c->ceil_mode};
  pv_node_add_attr(g, node, &cm);
  void *plan;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, &node, 1, &plan), 0);
  int64_t nx = (int64_t)c->N * c->C * c->H * c->W;
  pv_tensor vals[2] = {{PV_F32, 4, {c->N, c->C, c->H, c->W}, frand_buf(nx)},
                       {PV_F32, 4, {c->N, c->C, OH, OW}, NULL}};
  float *x = vals[xv].data;
  x[nx / 3] = NAN; /* a NaN in a window makes its maximum NaN */
  pv_tensor_alloc(&vals[yv]);
  pv_run_ctx rc = {.vals = vals, .batch = c->N};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  const float *y = vals[yv].data;
  int bad = 0;
  for (int pl = 0; pl < c->N * c->C; pl++)
    for (int oy = 0; oy < OH; oy++)
      for (int ox = 0; ox < OW; ox++) {
        float mx = -INFINITY;
        bool nan = false;
        for (int ky = 0; ky < c->kh; ky++)
          for (int kx = 0; kx < c->kw; kx++) {
            int iy = oy * c->sh - (int)p[0] + ky * c->dh;
            int ix = ox * c->sw - (int)p[1] + kx * c->dw;
            if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W) continue;
            float v = x[((int64_t)pl * c->H + iy) * c->W + ix];
            nan |= isnan(v);
            if (v > mx) mx = v;
          }
        float got = y[((int64_t)pl * OH + oy) * OW + ox];
        if (nan ? !isnan(got) : got != mx) bad++;
      }
  if (bad) printf("\n  maxpool k=%dx%d s=%d: %d wrong\n", c->kh, c->kw, c->sh, bad);
  CU_ASSERT_EQUAL(bad, 0);
  vals[yv].dims[3] = OW + 3; /* an output the pooling cannot produce */
  CU_ASSERT_EQUAL(b->execute(plan, &rc), PV_ESHAPE);
  b->release(plan);
  pv_free(vals[xv].data);
  pv_free(vals[yv].data);
  pv_graph_free(g);
}

typedef struct mp_set {
  const mp_case *c;
  size_t n;
} mp_set;

static void mp_cases(const pv_backend_iface *b, void *ctx, int i,
                     const void *arg) {
  (void)i;
  const mp_set *ms = arg;
  for (size_t j = 0; j < ms->n; j++) run_maxpool_case(b, ctx, &ms->c[j]);
}

static void test_plugin_maxpool(void) {
  static const mp_case cases[] = {
      {2, 3, 8, 10, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {1, 4, 9, 7, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 0, NULL},
      {1, 2, 13, 13, 2, 2, 1, 1, 1, 1, {0, 0, 1, 1}, 0, NULL},
      {1, 3, 11, 9, 3, 2, 2, 3, 2, 1, {0, 1, 1, 0}, 0, NULL},
      {1, 2, 7, 7, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 1, NULL}, /* ceil */
      {1, 2, 7, 6, 3, 3, 2, 2, 1, 1, {0}, 0, "SAME_UPPER"},
      /* 2x2 without pads (its own loop): odd sizes, strides 1 and 2 */
      {1, 3, 13, 14, 2, 2, 1, 1, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {2, 2, 9, 11, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {1, 2, 10, 9, 2, 2, 1, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      /* stride 2 on AVX-512: whole 16-output vectors plus a masked tail
       * of 3 / 6 / 10 outputs, exactly 16, and a row of 8 (one half) */
      {1, 2, 6, 70, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {2, 1, 5, 45, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {1, 3, 4, 20, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {1, 1, 4, 33, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      {3, 2, 8, 16, 2, 2, 2, 2, 1, 1, {0, 0, 0, 0}, 0, NULL},
      /* stride 1: 39 outputs a row, two vectors and a tail of 7 */
      {1, 2, 5, 40, 2, 2, 1, 1, 1, 1, {0, 0, 0, 0}, 0, NULL},
      /* 3x3 on AVX-512 padded rows: ResNet's stride-2 pool on a wide
       * row (35 outputs), ceil mode, asymmetric pads, stride 1 */
      {2, 3, 9, 70, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 0, NULL},
      {1, 2, 8, 8, 3, 3, 2, 2, 1, 1, {0, 0, 0, 0}, 1, NULL},
      {1, 2, 7, 19, 3, 3, 2, 2, 1, 1, {0, 1, 1, 0}, 0, NULL},
      {1, 3, 6, 33, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 0, NULL},
  };
  /* Each ISA: the 2x2 rows run in vectors on AVX-512 and AVX2 (8-output
   * vectors there: the 70-, 45- and 40-wide rows have tails too). */
  mp_set set = {cases, sizeof cases / sizeof cases[0]};
  plugin_each_isa(mp_cases, &set);
}

/* Add runs in the backend for two fp32 tensors of one shape (a residual
 * connection: several work items, two threads, fused activation, both
 * inputs the same value); a broadcast Add goes to the reference op. */
static void add_cases(const pv_backend_iface *b, void *ctx, int isa,
                      const void *arg) {
  (void)arg;
  static const int64_t shapes[][4] = {
      {1, 64, 56, 56}, {2, 3, 5, 7}, {1, 1, 1, 40000}};
  for (int sc = 0; sc < 3; sc++)
    for (int bc = 0; bc < 2; bc++) { /* bc: b broadcast along the last axis */
      const int64_t *d = shapes[sc];
      pv_graph *g = pv_graph_new();
      int av = pv_graph_add_value(g, "a"), bv = pv_graph_add_value(g, "b");
      int yv = pv_graph_add_value(g, "y");
      int in[2] = {av, sc == 1 ? av : bv}; /* a + a once */
      int node = pv_graph_add_node(g, "add0", "Add", in, 2, &yv, 1);
      pv_act act = (pv_act)((isa + sc + bc) % 6);
      g->nodes[node].act = act;
      g->nodes[node].act_alpha = 0.1f;
      g->nodes[node].act_beta = 0.5f;
      void *plan;
      CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, &node, 1, &plan), 0);
      int64_t n = d[0] * d[1] * d[2] * d[3];
      pv_tensor vals[3] = {{0}};
      vals[av] = (pv_tensor){PV_F32, 4, {d[0], d[1], d[2], d[3]}, frand_buf(n)};
      vals[bv] = (pv_tensor){PV_F32, 4, {d[0], d[1], d[2], bc ? 1 : d[3]},
                             frand_buf(bc ? n / d[3] : n)};
      vals[yv] = (pv_tensor){PV_F32, 4, {d[0], d[1], d[2], d[3]}, NULL};
      pv_tensor_alloc(&vals[yv]);
      pv_run_ctx rc = {.vals = vals, .batch = 1};
      CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
      const float *pa = vals[av].data, *pb = vals[in[1]].data, *py = vals[yv].data;
      int64_t bad = 0;
      for (int64_t i = 0; i < n; i++) {
        int64_t j = in[1] == bv && bc ? i / d[3] : i;
        float want = act_ref(pa[i] + pb[j], act, 0.1f, 0.5f);
        if (fabsf(py[i] - want) > 1e-6f * (1 + fabsf(want))) bad++;
      }
      if (bad)
        printf("\n  %s add shape %d bcast %d act %d: %lld wrong\n",
               getenv("PIVOT_CPU_ISA"), sc, bc, (int)act, (long long)bad);
      CU_ASSERT_EQUAL(bad, 0);
      b->release(plan);
      pv_free(vals[av].data);
      pv_free(vals[bv].data);
      pv_free(vals[yv].data);
      pv_graph_free(g);
    }
}

static void test_plugin_add(void) { plugin_each_isa(add_cases, NULL); }

/* Clip as the reference applies it, min(max(v, lo), hi), on every ISA's
 * fused stores: a NaN stays NaN (MobileNet's ReLU6 after a depthwise
 * layer), and hi wins when lo > hi (an Add with Clip(6, 0) gives 0). */
static void clip_cases(const pv_backend_iface *b, void *ctx, int isa,
                       const void *arg) {
  (void)isa;
  (void)arg;
  /* depthwise 3x3, stride 1, pad 1, Clip(0, 6), one NaN input */
  pv_graph *g = pv_graph_new();
  int xv = pv_graph_add_value(g, "x"), yv = pv_graph_add_value(g, "y");
  int64_t wd[4] = {8, 1, 3, 3}, bd[1] = {8};
  int wv = add_const(g, "w", 4, wd, frand_buf(72));
  int bv = add_const(g, "b", 1, bd, frand_buf(8));
  int in[3] = {xv, wv, bv};
  int node = pv_graph_add_node(g, "dw0", "Conv", in, 3, &yv, 1);
  int64_t ks[2] = {3, 3}, pads[4] = {1, 1, 1, 1};
  set_ints(g, node, "kernel_shape", 2, ks);
  set_ints(g, node, "pads", 4, pads);
  pv_attr ga = {.name = "group", .type = PV_ATTR_INT, .i = 8};
  pv_node_add_attr(g, node, &ga);
  g->nodes[node].act = PV_ACT_CLIP;
  g->nodes[node].act_alpha = 0.0f;
  g->nodes[node].act_beta = 6.0f;
  void *plan;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, &node, 1, &plan), 0);
  pv_tensor vals[4] = {{0}};
  vals[xv] = (pv_tensor){PV_F32, 4, {1, 8, 9, 20}, frand_buf(8 * 9 * 20)};
  ((float *)vals[xv].data)[3 * 180 + 4 * 20 + 10] = NAN; /* channel 3 */
  vals[wv] = pv_value_tensor(&g->values[wv]);
  vals[bv] = pv_value_tensor(&g->values[bv]);
  vals[yv] = (pv_tensor){PV_F32, 4, {1, 8, 9, 20}, NULL};
  pv_tensor_alloc(&vals[yv]);
  pv_run_ctx rc = {.vals = vals, .batch = 1};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  const float *y = vals[yv].data;
  int nan_seen = 0, wrong = 0;
  for (int c = 0; c < 8; c++)
    for (int r = 0; r < 9; r++)
      for (int q = 0; q < 20; q++) {
        bool near = c == 3 && r >= 3 && r <= 5 && q >= 9 && q <= 11;
        float v = y[(c * 9 + r) * 20 + q];
        nan_seen += near && isnan(v);
        wrong += near ? !isnan(v) : (isnan(v) || v < 0 || v > 6);
      }
  if (wrong) printf("\n  %s depthwise Clip NaN: %d wrong\n", getenv("PIVOT_CPU_ISA"), wrong);
  CU_ASSERT_EQUAL(nan_seen, 9);
  CU_ASSERT_EQUAL(wrong, 0);
  b->release(plan);
  pv_free(vals[xv].data);
  pv_free(vals[yv].data);
  pv_graph_free(g);

  /* Add with Clip(6, 0): every output is hi = 0 */
  g = pv_graph_new();
  int av = pv_graph_add_value(g, "a"), cv = pv_graph_add_value(g, "c");
  int ov = pv_graph_add_value(g, "o");
  int ain[2] = {av, cv};
  node = pv_graph_add_node(g, "add0", "Add", ain, 2, &ov, 1);
  g->nodes[node].act = PV_ACT_CLIP;
  g->nodes[node].act_alpha = 6.0f;
  g->nodes[node].act_beta = 0.0f;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, &node, 1, &plan), 0);
  pv_tensor av_t[3] = {{0}};
  av_t[av] = (pv_tensor){PV_F32, 2, {4, 1000}, frand_buf(4000)};
  av_t[cv] = (pv_tensor){PV_F32, 2, {4, 1000}, frand_buf(4000)};
  av_t[ov] = (pv_tensor){PV_F32, 2, {4, 1000}, NULL};
  pv_tensor_alloc(&av_t[ov]);
  rc = (pv_run_ctx){.vals = av_t, .batch = 1};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  int not_hi = 0;
  for (int i = 0; i < 4000; i++) not_hi += ((float *)av_t[ov].data)[i] != 0.0f;
  CU_ASSERT_EQUAL(not_hi, 0);
  b->release(plan);
  pv_free(av_t[av].data);
  pv_free(av_t[cv].data);
  pv_free(av_t[ov].data);
  pv_graph_free(g);
}

static void test_plugin_clip(void) { plugin_each_isa(clip_cases, NULL); }

/* Pad -> MaxPool: a constant fp32 Pad of the spatial axes that only the
 * pool reads runs inside the pool (padded taps count as the pad value:
 * darknet's stride-1 pool pads with zeros, not -inf). Checked against the
 * reference Pad and MaxPool, NaN included, on every ISA: the darknet
 * shape (2x2 path), other values and pads (general path), opset 10's
 * attributes, Pads that must not fold (reflect, channel axis), and the
 * pool's output over the Pad's input (as a memory plan may place it). */
typedef struct pp_case {
  int opset, C, H, W, k, s;
  int64_t pads[8];
  float value;
  const char *mode;
  bool alias; /* the pool output shares the Pad input's memory */
} pp_case;

static void run_pad_pool_case(const pv_backend_iface *b, void *ctx,
                              const pp_case *c) {
  pv_graph *g = pv_graph_new();
  g->opset = c->opset;
  int xv = pv_graph_add_value(g, "x"), pv = pv_graph_add_value(g, "p");
  int yv = pv_graph_add_value(g, "y");
  int64_t pd[1] = {8};
  int64_t *pads = malloc(sizeof c->pads);
  memcpy(pads, c->pads, sizeof c->pads);
  int padsv = add_const(g, "pads", 1, pd, (float *)pads);
  g->values[padsv].dtype = PV_I64;
  g->values[padsv].nbytes = sizeof c->pads;
  float *cvd = malloc(sizeof(float));
  *cvd = c->value;
  int64_t scalar[1] = {1}; /* rank 0: no dims read */
  int cvv = add_const(g, "cv", 0, scalar, cvd);
  int nodes[2];
  if (c->opset >= 11) {
    int in[3] = {xv, padsv, cvv};
    nodes[0] = pv_graph_add_node(g, "pad0", "Pad", in, 3, &pv, 1);
  } else {
    nodes[0] = pv_graph_add_node(g, "pad0", "Pad", &xv, 1, &pv, 1);
    set_ints(g, nodes[0], "pads", 8, c->pads);
    pv_attr va = {.name = "value", .type = PV_ATTR_FLOAT, .f = c->value};
    pv_node_add_attr(g, nodes[0], &va);
  }
  pv_attr ma = {.name = "mode", .type = PV_ATTR_STRING, .s = (char *)c->mode};
  pv_node_add_attr(g, nodes[0], &ma);
  nodes[1] = pv_graph_add_node(g, "pool0", "MaxPool", &pv, 1, &yv, 1);
  int64_t ks[2] = {c->k, c->k}, st[2] = {c->s, c->s};
  set_ints(g, nodes[1], "kernel_shape", 2, ks);
  set_ints(g, nodes[1], "strides", 2, st);
  void *plan;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, g, nodes, 2, &plan), 0);
  int64_t pdims[4] = {1 + c->pads[0] + c->pads[4], c->C + c->pads[1] + c->pads[5],
                      c->H + c->pads[2] + c->pads[6], c->W + c->pads[3] + c->pads[7]};
  int64_t OH = (pdims[2] - c->k) / c->s + 1, OW = (pdims[3] - c->k) / c->s + 1;
  int64_t nx = (int64_t)c->C * c->H * c->W;
  pv_tensor vals[5] = {{0}};
  vals[xv] = (pv_tensor){PV_F32, 4, {1, c->C, c->H, c->W}, frand_buf(nx)};
  ((float *)vals[xv].data)[nx / 2] = NAN;
  vals[padsv] = pv_value_tensor(&g->values[padsv]);
  vals[cvv] = pv_value_tensor(&g->values[cvv]);
  vals[pv] = (pv_tensor){PV_F32, 4, {pdims[0], pdims[1], pdims[2], pdims[3]}, NULL};
  vals[yv] = (pv_tensor){PV_F32, 4, {pdims[0], pdims[1], OH, OW}, NULL};
  pv_tensor_alloc(&vals[pv]);
  /* The reference first, on its own memory. */
  pv_tensor rv[5];
  memcpy(rv, vals, sizeof rv);
  pv_tensor_alloc(&rv[yv]);
  CU_ASSERT_EQUAL_FATAL(pv_ref_node(g, &g->nodes[nodes[0]], rv), 0);
  CU_ASSERT_EQUAL_FATAL(pv_ref_node(g, &g->nodes[nodes[1]], rv), 0);
  float *xcopy = NULL;
  if (c->alias) { /* y from x's second plane on: pooling plane 0 in place
                     would overwrite plane 1 before reading it */
    size_t nb = pv_tensor_nbytes(&vals[xv]), ny = pv_tensor_nbytes(&vals[yv]);
    size_t plane = (size_t)c->H * c->W;
    xcopy = vals[xv].data;
    float *buf = pv_aligned_alloc(nb + ny + plane * sizeof(float));
    memcpy(buf, xcopy, nb);
    vals[xv].data = buf;
    vals[yv].data = buf + plane;
  } else {
    pv_tensor_alloc(&vals[yv]);
  }
  pv_run_ctx rc = {.vals = vals, .batch = 1};
  CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
  int64_t ny = pv_tensor_numel(&vals[yv]), bad = 0;
  const float *y = vals[yv].data, *r = rv[yv].data;
  for (int64_t i = 0; i < ny; i++)
    if (isnan(r[i]) ? !isnan(y[i]) : y[i] != r[i]) bad++;
  if (bad)
    printf("\n  %s pad+pool opset %d k%d s%d mode %s alias %d: %lld wrong\n",
           getenv("PIVOT_CPU_ISA"), c->opset, c->k, c->s, c->mode, c->alias,
           (long long)bad);
  CU_ASSERT_EQUAL(bad, 0);
  b->release(plan);
  pv_free(vals[xv].data);
  if (!c->alias) pv_free(vals[yv].data);
  pv_free(xcopy);
  pv_free(vals[pv].data);
  pv_free(rv[yv].data);
  pv_graph_free(g);
}

static void pp_cases(const pv_backend_iface *b, void *ctx, int i,
                     const void *arg) {
  (void)i;
  const pp_case *c = arg;
  for (; c->mode; c++) run_pad_pool_case(b, ctx, c);
}

static void test_plugin_pad_pool(void) {
  static const pp_case cases[] = {
      {13, 5, 13, 13, 2, 1, {0, 0, 0, 0, 0, 0, 1, 1}, 0.0f, "constant", false},
      {13, 5, 13, 13, 2, 1, {0, 0, 0, 0, 0, 0, 1, 1}, 0.0f, "constant", true},
      {13, 3, 40, 37, 2, 1, {0, 0, 0, 0, 0, 0, 1, 1}, 0.25f, "constant", true},
      {13, 3, 9, 8, 3, 2, {0, 0, 1, 1, 0, 0, 1, 1}, -3.0f, "constant", false},
      {13, 2, 7, 9, 2, 1, {0, 0, 2, 0, 0, 0, 0, 3}, 5.0f, "constant", false},
      {10, 4, 6, 11, 2, 2, {0, 0, 0, 1, 0, 0, 1, 0}, 0.5f, "constant", false},
      {13, 3, 8, 8, 2, 1, {0, 0, 1, 1, 0, 0, 1, 1}, 0.0f, "reflect", false},
      {13, 3, 6, 6, 2, 2, {0, 1, 0, 0, 0, 0, 0, 0}, 0.0f, "constant", false},
      /* a 3x3 pool (the padded-row path) with the Pad's value */
      {13, 3, 11, 21, 3, 2, {0, 0, 1, 1, 0, 0, 1, 1}, 2.0f, "constant", false},
      {0},
  };
  plugin_each_isa(pp_cases, cases);
}

/* Gemm (transB, alpha, beta, bias, relu) and MatMul on a 3-D input. */
typedef struct fc_fixture {
  pv_graph *g;
  int x, w, c, y, node;
  int M, K;
} fc_fixture;

static void fc_build(fc_fixture *f, bool matmul, int M, int K) {
  f->g = pv_graph_new();
  f->M = M;
  f->K = K;
  f->x = pv_graph_add_value(f->g, "x");
  int64_t wd[2] = {matmul ? K : M, matmul ? M : K}, cd[2] = {1, M};
  f->w = add_const(f->g, "w", 2, wd, frand_buf((int64_t)M * K));
  f->c = matmul ? -1 : add_const(f->g, "c", 2, cd, frand_buf(M));
  f->y = pv_graph_add_value(f->g, "y");
  int in[3] = {f->x, f->w, f->c};
  f->node = pv_graph_add_node(f->g, "fc", matmul ? "MatMul" : "Gemm", in,
                              matmul ? 2 : 3, &f->y, 1);
  if (!matmul) {
    pv_attr t = {.name = "transB", .type = PV_ATTR_INT, .i = 1};
    pv_attr al = {.name = "alpha", .type = PV_ATTR_FLOAT, .f = 0.5f};
    pv_attr be = {.name = "beta", .type = PV_ATTR_FLOAT, .f = 2.0f};
    pv_node_add_attr(f->g, f->node, &t);
    pv_node_add_attr(f->g, f->node, &al);
    pv_node_add_attr(f->g, f->node, &be);
    f->g->nodes[f->node].act = PV_ACT_RELU;
  }
}

/* Reference for fc_build's node on rows x [N][K]. */
static void fc_ref(const fc_fixture *f, bool matmul, const float *x, int N,
                   float *ref) {
  const float *w = f->g->values[f->w].data;
  float *wm = malloc(sizeof(float) * f->M * f->K), *bias = NULL;
  for (int m = 0; m < f->M; m++)
    for (int k = 0; k < f->K; k++)
      wm[m * f->K + k] = matmul ? w[k * f->M + m] : 0.5f * w[m * f->K + k];
  if (!matmul) {
    bias = malloc(sizeof(float) * f->M);
    for (int m = 0; m < f->M; m++)
      bias[m] = 2.0f * ((float *)f->g->values[f->c].data)[m];
  }
  gemm_naive(wm, f->M, f->K, x, N, bias, matmul ? PV_ACT_NONE : PV_ACT_RELU,
             0, 0, ref);
  free(wm);
  free(bias);
}

static void test_plugin_gemm_matmul(void) {
  const pv_backend_iface *b = plugin();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  void *ctx;
  pv_backend_config cfg = {.threads = 2};
  CU_ASSERT_EQUAL_FATAL(b->init(&cfg, &ctx), 0);
  for (int mm = 0; mm < 2; mm++) {
    fc_fixture f;
    fc_build(&f, mm, 45, 33);
    void *plan;
    CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, f.g, &f.node, 1, &plan), 0);
    int N = 6;
    pv_tensor vals[4] = {{0}};
    vals[f.x] = mm ? (pv_tensor){PV_F32, 3, {2, 3, f.K}, frand_buf(N * f.K)}
                   : (pv_tensor){PV_F32, 2, {N, f.K}, frand_buf(N * f.K)};
    vals[f.w] = pv_value_tensor(&f.g->values[f.w]);
    if (f.c >= 0) vals[f.c] = pv_value_tensor(&f.g->values[f.c]);
    vals[f.y] = mm ? (pv_tensor){PV_F32, 3, {2, 3, f.M}, NULL}
                   : (pv_tensor){PV_F32, 2, {N, f.M}, NULL};
    pv_tensor_alloc(&vals[f.y]);
    pv_run_ctx rc = {.vals = vals, .batch = N};
    CU_ASSERT_EQUAL(b->execute(plan, &rc), 0);
    float *ref = malloc(sizeof(float) * N * f.M);
    fc_ref(&f, mm, vals[f.x].data, N, ref);
    CU_ASSERT(rel_err(vals[f.y].data, ref, (int64_t)N * f.M) <= 1e-5);
    /* Input width that does not match the weights. */
    vals[f.x].dims[vals[f.x].ndim - 1] = f.K - 1;
    CU_ASSERT_EQUAL(b->execute(plan, &rc), PV_ESHAPE);
    b->release(plan);
    free(ref);
    pv_free(vals[f.x].data);
    pv_free(vals[f.y].data);
    pv_graph_free(f.g);
  }
  b->shutdown(ctx);
}

typedef struct conc_arg {
  const pv_backend_iface *b;
  void *plan;
  fc_fixture *f;
  int ok;
} conc_arg;

static void *conc_thread(void *varg) {
  conc_arg *a = varg;
  fc_fixture *f = a->f;
  int N = 9;
  pv_tensor vals[4] = {{0}};
  vals[f->x] = (pv_tensor){PV_F32, 2, {N, f->K}, frand_buf(N * f->K)};
  vals[f->w] = pv_value_tensor(&f->g->values[f->w]);
  vals[f->c] = pv_value_tensor(&f->g->values[f->c]);
  vals[f->y] = (pv_tensor){PV_F32, 2, {N, f->M}, NULL};
  pv_tensor_alloc(&vals[f->y]);
  float *ref = malloc(sizeof(float) * N * f->M);
  fc_ref(f, false, vals[f->x].data, N, ref);
  pv_run_ctx rc = {.vals = vals, .batch = N};
  a->ok = 1;
  for (int i = 0; i < 30; i++) {
    memset(vals[f->y].data, 0, sizeof(float) * N * f->M);
    if (a->b->execute(a->plan, &rc) ||
        rel_err(vals[f->y].data, ref, (int64_t)N * f->M) > 1e-5)
      a->ok = 0;
  }
  free(ref);
  pv_free(vals[f->x].data);
  pv_free(vals[f->y].data);
  return NULL;
}

/* Two runs of one plan in flight from different threads. */
static void test_plugin_concurrent_execute(void) {
  const pv_backend_iface *b = plugin();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  void *ctx, *plan;
  pv_backend_config cfg = {.threads = 2};
  CU_ASSERT_EQUAL_FATAL(b->init(&cfg, &ctx), 0);
  fc_fixture f;
  fc_build(&f, false, 200, 150);
  /* Pivoted weights: the permuted-space path shares per-call scratch. */
  pv_pivot *pv = make_pivot(200, 150, 1, 4, 1);
  float *dense = pivot_dense(pv);
  memcpy(f.g->values[f.w].data, dense, sizeof(float) * 200 * 150);
  free(dense);
  f.g->values[f.w].pivot = pv;
  CU_ASSERT_EQUAL_FATAL(b->prepare(ctx, f.g, &f.node, 1, &plan), 0);
  conc_arg a[2] = {{b, plan, &f, 0}, {b, plan, &f, 0}};
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, conc_thread, &a[i]);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  CU_ASSERT_EQUAL(a[0].ok, 1);
  CU_ASSERT_EQUAL(a[1].ok, 1);
  b->release(plan);
  pv_graph_free(f.g);
  b->shutdown(ctx);
}

static void test_plugin_bad_pivot(void) {
  const pv_backend_iface *b = plugin();
  CU_ASSERT_PTR_NOT_NULL_FATAL(b);
  void *ctx, *plan = NULL;
  pv_backend_config cfg = {.threads = 1};
  CU_ASSERT_EQUAL_FATAL(b->init(&cfg, &ctx), 0);
  fc_fixture f;
  fc_build(&f, false, 20, 12);
  pv_pivot *p = make_pivot(20, 12, 1, 2, 1);
  p->perm_r[3] = 99;
  f.g->values[f.w].pivot = p;
  CU_ASSERT(b->prepare(ctx, f.g, &f.node, 1, &plan) < 0);
  CU_ASSERT(strstr(pv_errmsg(), "perm_r") != NULL);
  p->perm_r[3] = 0;
  p->perm_r[0] = 3; /* still a bijection after the swap below */
  p->blocks[1].offset = p->data_len; /* block data past the end */
  CU_ASSERT(b->prepare(ctx, f.g, &f.node, 1, &plan) < 0);
  CU_ASSERT(strstr(pv_errmsg(), "block 1") != NULL);
  pv_graph_free(f.g);
  b->shutdown(ctx);
}

static CU_TestInfo tests[] = {
    {"dense GEMM, each ISA, awkward sizes", test_dense_gemm_each_isa},
    {"pivoted GEMM, each ISA, vs expanded dense", test_pivot_gemm_each_isa},
    {"pivoted GEMM, batch 1..32, activations, each path", test_pivot_gemm_batches},
    {"permute line (gather, bias, activation), each ISA", test_permute_line},
    {"one vs two threads: same bits", test_threads_same_result},
    {"CSR baseline kernel", test_csr},
    {"plugin entry, init, props", test_plugin_entry},
    {"plugin Conv (strides, pads, dilations, groups, dw, pivot), each ISA",
     test_plugin_conv_each_isa},
    {"plugin Conv 1-D as height 1, each ISA", test_plugin_conv1d_each_isa},
    {"plugin Conv 3x3 as Winograd F(2x2, 3x3), each ISA",
     test_plugin_conv_winograd_each_isa},
    {"plugin Conv with PIVOT_CPU_CONV=direct (no Winograd), each ISA",
     test_plugin_conv_direct_each_isa},
    {"plugin Conv + 2x2 MaxPool, fused where only the pool reads the conv",
     test_plugin_conv_pool_each_isa},
    {"plugin Gemm/MatMul with bias, alpha/beta, relu", test_plugin_gemm_matmul},
    {"plugin MaxPool (strides, pads, dilations, ceil, SAME, NaN)",
     test_plugin_maxpool},
    {"plugin Pad -> MaxPool folded into the pool, each ISA",
     test_plugin_pad_pool},
    {"plugin Add (same shapes in the backend, broadcast by reference)",
     test_plugin_add},
    {"plugin Clip as the reference: NaN kept, hi wins over lo",
     test_plugin_clip},
    {"plugin: two executes in flight", test_plugin_concurrent_execute},
    {"plugin: corrupt pivot rejected", test_plugin_bad_pivot},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("cpu", tests)
