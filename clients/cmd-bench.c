/* pivot bench: kernel table (our dense vs pivoted GEMM, OpenBLAS sgemm on
 * the same shape, an unstructured CSR kernel at the same density) and
 * model timings. Medians over repeats; the figures that matter are the
 * ratios measured in the same run, because the machine may be shared.
 *
 * The kernels are the CPU backend's own (libpvcpu, compiled into the
 * CLI). OpenBLAS is opened with dlopen after OPENBLAS_CORETYPE is set:
 * the library reads that variable in its load-time constructor, so a
 * linked OpenBLAS would already have picked its kernels before main().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "cpu-impl.h"

#define MAX_LIST 16

typedef struct bench_opts {
  int repeats;
  bool kernels, models;
  int sizes[MAX_LIST], n_sizes;
  int batches[MAX_LIST], n_batches;
  double dens[MAX_LIST];
  int n_dens;
  int threads[MAX_LIST], n_threads;
  const char *isa;
  bool blas, csr;
  const char *model_paths[MAX_LIST];
  int n_models;
  double prune;     /* models: also run a block-diagonal copy (0 = no) */
  bool folded;      /* ... with the permutations inside chains folded */
  int prune_min_ch; /* ... of the layers with this many channels */
  double min_sample_ms;
  /* Time in the calling thread's CPU time and report the minimum: on a
   * shared machine it leaves out the time other processes held the core
   * (one thread only: workers' time is not counted). */
  bool cpu_time;
  const char *backend; /* kernels on this backend (bench-backend.c) */
} bench_opts;

/* ---------------------------------------------------------------- timing */

/* cpu: the calling thread's CPU time (--cpu-time), else wall time. */
static double now_ms(bool cpu) {
  struct timespec ts;
  clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

typedef void (*bench_fn)(void *arg);

/* Median milliseconds per call of each of n kernels. The kernels take
 * turns within every repeat, so a neighbour's load on a shared machine
 * hits them alike and the ratios stay honest. A sample runs enough calls
 * to last min_sample_ms, so microsecond kernels are not timer noise. */
static void time_medians(const bench_opts *o, int n, bench_fn *fn,
                         void **arg, double *med) {
  int inner[8];
  double *s = malloc(sizeof *s * o->repeats * n);
  for (int f = 0; f < n; f++) {
    med[f] = NAN;
    if (!fn[f]) continue;
    fn[f](arg[f]); /* warm caches, pool threads and scratch */
    double t0 = now_ms(o->cpu_time);
    fn[f](arg[f]);
    double one = now_ms(o->cpu_time) - t0;
    inner[f] = one > 0 ? (int)(o->min_sample_ms / one) + 1 : 1000;
    if (inner[f] > 1000) inner[f] = 1000;
  }
  if (!s) return;
  for (int r = 0; r < o->repeats; r++)
    for (int f = 0; f < n; f++) {
      if (!fn[f]) continue;
      double t0 = now_ms(o->cpu_time);
      for (int i = 0; i < inner[f]; i++) fn[f](arg[f]);
      s[f * o->repeats + r] = (now_ms(o->cpu_time) - t0) / inner[f];
    }
  for (int f = 0; f < n; f++) {
    if (!fn[f]) continue;
    double *v = s + f * o->repeats;
    qsort(v, o->repeats, sizeof *v, cmp_double);
    med[f] = o->cpu_time ? v[0]
             : o->repeats % 2 ? v[o->repeats / 2]
                              : (v[o->repeats / 2 - 1] + v[o->repeats / 2]) / 2;
  }
  free(s);
}

static double time_median(const bench_opts *o, bench_fn fn, void *arg) {
  double m;
  time_medians(o, 1, &fn, &arg, &m);
  return m;
}

/* ---------------------------------------------------------------- OpenBLAS */

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *,
                         int, const float *, int, float, float *, int);
static struct {
  sgemm_fn sgemm;
  void (*set_threads)(int);
  char *(*corename)(void);
} blas;

static void blas_open(void) {
  if (!getenv("OPENBLAS_CORETYPE")) {
    /* Debian's OpenBLAS 0.3.21 does not know newer CPUs and falls back to
     * SSE3 kernels: name the newest core whose instructions this CPU has
     * (SkylakeX for AVX-512, Haswell for AVX2 + FMA; SkylakeX on a CPU
     * without AVX-512 dies of an illegal instruction). */
    const char *core = NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
      core = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      core = "Haswell";
#endif
    if (core) {
      setenv("OPENBLAS_CORETYPE", core, 1);
      printf("# OPENBLAS_CORETYPE was unset: set it to %s (this CPU's vector "
             "extensions) for a fair comparison\n", core);
    }
  }
  void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    printf("# OpenBLAS: not available (%s)\n", dlerror());
    return;
  }
  blas.sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
  blas.set_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
  blas.corename = (char *(*)(void))dlsym(h, "openblas_get_corename");
  printf("# OpenBLAS: libopenblas.so.0, core %s (OPENBLAS_CORETYPE=%s)\n",
         blas.corename ? blas.corename() : "?", getenv("OPENBLAS_CORETYPE"));
}

/* ---------------------------------------------------------------- kernels */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}
static float rng_float(void) {
  return (float)((rng_next() >> 40) & 0xffff) / 32768.0f - 1.0f;
}

/* Block-diagonal pivot of an M x M matrix at density 1/n: random perms,
 * or identity perms (a layer inside a folded chain, no gather/scatter). */
static pv_pivot *bench_pivot(int M, int n, bool folded) {
  pv_pivot *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->M = p->C = M;
  p->kk = 1;
  p->nr = p->nc = p->n_blocks = n;
  p->perm_r = malloc(sizeof(int32_t) * M);
  p->perm_c = malloc(sizeof(int32_t) * M);
  p->row_off = malloc(sizeof(int32_t) * (n + 1));
  p->col_off = malloc(sizeof(int32_t) * (n + 1));
  p->blocks = calloc(n, sizeof *p->blocks);
  int64_t bs = M / n;
  p->data_len = (uint64_t)n * bs * bs;
  p->data = pv_aligned_alloc(p->data_len * sizeof(float));
  p->data_owned = true;
  if (!p->perm_r || !p->perm_c || !p->row_off || !p->col_off || !p->blocks ||
      !p->data) {
    pv_pivot_free(p);
    return NULL;
  }
  for (int32_t *perm = p->perm_r; perm; perm = perm == p->perm_r ? p->perm_c : NULL) {
    for (int i = 0; i < M; i++) perm[i] = i;
    for (int i = M - 1; i > 0 && !folded; i--) {
      int j = (int)(rng_next() % (uint64_t)(i + 1)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  }
  for (int i = 0; i <= n; i++) p->row_off[i] = p->col_off[i] = (int32_t)(i * bs);
  for (int i = 0; i < n; i++) {
    p->blocks[i].rg = p->blocks[i].cg = i;
    p->blocks[i].offset = (uint64_t)i * bs * bs;
  }
  for (uint64_t i = 0; i < p->data_len; i++) p->data[i] = rng_float();
  return p;
}

typedef struct kcall {
  pv_cpu_pool *pool;
  const pv_cpu_isa *isa;
  pv_cpu_mat *mat;
  pv_cpu_csr *csr;
  const float *x, *w;
  float *y;
  int M, K, N;
} kcall;

static void run_ours(void *arg) {
  kcall *c = arg;
  pv_cpu_bsrc b = {.x = c->x, .ld_k = 1, .ld_n = c->K};
  pv_cpu_out o = {.y = c->y, .ld_m = 1, .ld_n = c->M};
  pv_cpu_gemm(c->pool, c->isa, c->mat, &b, c->N, &o);
}
static void run_csr(void *arg) {
  kcall *c = arg;
  pv_cpu_csr_gemm(c->pool, c->csr, c->x, c->y, c->N);
}
static void run_blas(void *arg) {
  kcall *c = arg;
  blas.sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, c->N, c->M, c->K,
             1.0f, c->x, c->K, c->w, c->K, 0.0f, c->y, c->M);
}

static const char *frac_str(double d, char *buf, size_t len) {
  if (d >= 1) snprintf(buf, len, "1");
  else snprintf(buf, len, "1/%.0f", 1 / d);
  return buf;
}

/* A figure, or "-" for a column that was not measured. */
static void fmt_or_dash(char *buf, double v, const char *fmt) {
  if (isnan(v)) snprintf(buf, 16, "-");
  else snprintf(buf, 16, fmt, v);
}

static int bench_kernels(const bench_opts *o) {
  const pv_cpu_isa *isa = o->isa ? pv_cpu_isa_get(o->isa) : pv_cpu_isa_best();
  if (!isa) return cli_die("bench: --isa %s is not one this CPU runs", o->isa);
  if (o->blas) blas_open();
  printf("# kernels: y[batch][M] = x[batch][K] W^T, M = K, %s micro-kernels, "
         "%s of %d repeats, warm caches\n", isa->name,
         o->cpu_time ? "minimum thread CPU time" : "median", o->repeats);
  printf("# linearity = speedup x density (1 = linear); csr = unstructured "
         "sparse at the same density; ms per call\n");
  printf("# fold = the same blocks with identity permutations, as a layer "
         "inside a folded chain runs (no gather/scatter)\n");
  printf("%5s %5s %3s %7s | %9s %9s %8s %6s | %9s %6s | %9s %8s | %9s %8s\n",
         "M=K", "batch", "thr", "density", "dense_ms", "pivot_ms", "speedup",
         "lin", "fold_ms", "lin", "blas_ms", "blas/us", "csr_ms", "csr/piv");
  for (int si = 0; si < o->n_sizes; si++) {
    int M = o->sizes[si];
    float *w = pv_aligned_alloc((size_t)M * M * sizeof(float));
    if (!w) return cli_die("bench: out of memory for %dx%d", M, M);
    for (int64_t i = 0; i < (int64_t)M * M; i++) w[i] = rng_float();
    pv_cpu_mat *dense = pv_cpu_mat_dense(w, M, M, M, 1, 1, 1.0f);
    if (!dense) return cli_die("bench: %s", pv_errmsg());
    for (int bi = 0; bi < o->n_batches; bi++) {
      int N = o->batches[bi];
      float *x = pv_aligned_alloc((size_t)N * M * sizeof(float));
      float *y = pv_aligned_alloc((size_t)N * M * sizeof(float));
      if (!x || !y) return cli_die("bench: out of memory");
      for (int64_t i = 0; i < (int64_t)N * M; i++) x[i] = rng_float();
      for (int ti = 0; ti < o->n_threads; ti++) {
        int T = o->threads[ti];
        pv_cpu_pool *pool = pv_cpu_pool_new(T, false);
        if (!pool) return cli_die("bench: %s", pv_errmsg());
        if (blas.set_threads) blas.set_threads(T);
        for (int di = 0; di < o->n_dens; di++) {
          double d = o->dens[di];
          int n = (int)lround(1 / d);
          char db[16];
          /* dense, pivoted, folded, OpenBLAS, CSR: timed in turns */
          kcall c[5];
          for (int f = 0; f < 5; f++)
            c[f] = (kcall){pool, isa, dense, NULL, x, w, y, M, M, N};
          bench_fn fns[5] = {run_ours, NULL, NULL, blas.sgemm ? run_blas : NULL,
                             NULL};
          void *args[5] = {&c[0], &c[1], &c[2], &c[3], &c[4]};
          pv_pivot *pv[2] = {NULL, NULL};
          for (int f = 0; n > 1 && f < 2; f++) {
            pv[f] = bench_pivot(M, n, f);
            c[1 + f].mat = pv[f] ? pv_cpu_mat_pivot(pv[f], 1.0f) : NULL;
            if (!c[1 + f].mat) return cli_die("bench: cannot build pivot 1/%d", n);
            fns[1 + f] = run_ours;
          }
          if (n > 1 && o->csr) {
            /* Unstructured: the same number of nonzeros, anywhere. */
            float *ws = pv_aligned_alloc((size_t)M * M * sizeof(float));
            if (!ws) return cli_die("bench: out of memory");
            for (int64_t i = 0; i < (int64_t)M * M; i++)
              ws[i] = rng_next() % (uint64_t)n ? 0.0f : w[i];
            c[4].csr = pv_cpu_csr_from_dense(ws, M, M);
            pv_free(ws);
            if (!c[4].csr) return cli_die("bench: out of memory");
            fns[4] = run_csr;
          }
          double t[5];
          time_medians(o, 5, fns, args, t);
          if (n == 1) t[1] = t[2] = t[0];
          for (int f = 0; f < 2; f++) {
            if (n > 1) pv_cpu_mat_free(c[1 + f].mat);
            pv_pivot_free(pv[f]);
          }
          pv_cpu_csr_free(c[4].csr);
          double sp = t[0] / t[1];
          char bl[2][16], cs[2][16];
          fmt_or_dash(bl[0], t[3], "%9.4f");
          fmt_or_dash(bl[1], t[3] / t[0], "%7.2fx");
          fmt_or_dash(cs[0], t[4], "%9.4f");
          fmt_or_dash(cs[1], t[4] / t[1], "%7.2fx");
          printf("%5d %5d %3d %7s | %9.4f %9.4f %7.2fx %6.2f | %9.4f %6.2f |"
                 " %9s %8s | %9s %8s\n",
                 M, N, T, frac_str(d, db, sizeof db), t[0], t[1], sp,
                 sp * (1.0 / n), t[2], t[0] / t[2] * (1.0 / n), bl[0], bl[1],
                 cs[0], cs[1]);
          fflush(stdout);
        }
        pv_cpu_pool_free(pool);
      }
      pv_free(x);
      pv_free(y);
    }
    pv_cpu_mat_free(dense);
    pv_free(w);
  }
  printf("# blas/us > 1: ours faster than OpenBLAS; csr/piv > 1: pivoted "
         "faster than CSR\n");
  return 0;
}

/* ---------------------------------------------------------------- models */

/* Block-diagonal pivot at density 1/n of the logical M x (C*kk) matrix
 * W(m, q) = w[m*ld_m + q*ld_q], random permutations: the blocks keep the
 * weights they cover. A stand-in for a trained pruned model, which has
 * the same shapes and so the same speed. */
static pv_pivot *prune_block_diag(const float *w, int64_t ld_m, int64_t ld_q,
                                  int32_t M, int32_t C, int32_t kk, int n) {
  pv_pivot *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->M = M;
  p->C = C;
  p->kk = kk;
  p->nr = p->nc = p->n_blocks = n;
  p->perm_r = malloc(sizeof(int32_t) * M);
  p->perm_c = malloc(sizeof(int32_t) * C);
  p->row_off = malloc(sizeof(int32_t) * (n + 1));
  p->col_off = malloc(sizeof(int32_t) * (n + 1));
  p->blocks = calloc(n, sizeof *p->blocks);
  if (!p->perm_r || !p->perm_c || !p->row_off || !p->col_off || !p->blocks)
    goto fail;
  for (int i = 0; i <= n; i++) {
    p->row_off[i] = (int32_t)((int64_t)M * i / n);
    p->col_off[i] = (int32_t)((int64_t)C * i / n);
  }
  int32_t *perms[2] = {p->perm_r, p->perm_c}, lens[2] = {M, C};
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < lens[k]; i++) perms[k][i] = i;
    for (int i = lens[k] - 1; i > 0; i--) {
      int j = (int)(rng_next() % (uint64_t)(i + 1)), t = perms[k][i];
      perms[k][i] = perms[k][j];
      perms[k][j] = t;
    }
  }
  uint64_t off = 0;
  for (int b = 0; b < n; b++) {
    p->blocks[b].rg = p->blocks[b].cg = b;
    p->blocks[b].offset = off;
    off += (uint64_t)(p->row_off[b + 1] - p->row_off[b]) *
           (p->col_off[b + 1] - p->col_off[b]) * kk;
  }
  p->data_len = off;
  p->data = pv_aligned_alloc(off * sizeof(float));
  p->data_owned = true;
  if (!p->data) goto fail;
  for (int b = 0; b < n; b++) {
    int64_t cols = (int64_t)(p->col_off[b + 1] - p->col_off[b]) * kk;
    float *d = p->data + p->blocks[b].offset;
    for (int32_t r = p->row_off[b]; r < p->row_off[b + 1]; r++)
      for (int64_t q = 0; q < cols; q++) {
        int64_t m = p->perm_r[r];
        int64_t c = p->perm_c[p->col_off[b] + q / kk];
        *d++ = w[m * ld_m + (c * kk + q % kk) * ld_q];
      }
  }
  return p;
fail:
  pv_pivot_free(p);
  return NULL;
}

static bool channelwise(const char *op) {
  static const char *const ops[] = {"Relu", "LeakyRelu", "Clip", "Sigmoid",
                                    "Tanh", "MaxPool", "Identity", NULL};
  for (int i = 0; ops[i]; i++)
    if (!strcmp(op, ops[i])) return true;
  return false;
}

/* What permutation folding will produce: where a pruned layer feeds the
 * next one through channel-wise ops only (each value read once), the
 * first keeps its rows and the second its columns in permuted order, so
 * neither unpermutes nor gathers; only a chain's ends do. Here that means
 * identity permutations on the inside of a chain. */
static void fold_chains(pv_graph *g) {
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *b = &g->nodes[i];
    if (b->n_in < 2 || b->in[1] < 0 || !g->values[b->in[1]].pivot) continue;
    int v = b->in[0], cons[2];
    while (v >= 0 && pv_graph_consumers(g, v, cons, 2) == 1) {
      int pi = g->values[v].producer;
      if (pi < 0) break;
      const pv_node *a = &g->nodes[pi];
      if (a->n_in >= 2 && a->in[1] >= 0 && g->values[a->in[1]].pivot) {
        pv_pivot *pa = g->values[a->in[1]].pivot;
        pv_pivot *pb = g->values[b->in[1]].pivot;
        if (pa->M == pb->C && pa->nr == pb->nc) {
          for (int k = 0; k < pa->M; k++) pa->perm_r[k] = k;
          for (int k = 0; k < pb->C; k++) pb->perm_c[k] = k;
        }
        break;
      }
      if (!channelwise(a->op) || a->n_in < 1) break;
      v = a->in[0];
    }
  }
}

/* Replace the weights of Gemm/MatMul/Conv (group 1) layers with at least
 * min_ch input and output channels by block-diagonal pivots. Returns the
 * number of layers pruned or a negative code. */
static int prune_graph(pv_graph *g, double density, int min_ch) {
  int n = (int)lround(1 / density), count = 0;
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *nd = &g->nodes[i];
    if (nd->n_in < 2 || nd->in[1] < 0) continue;
    pv_value *w = &g->values[nd->in[1]];
    if (!w->data || w->pivot || w->dtype != PV_F32) continue;
    int64_t M, C, kk = 1, ld_m, ld_q;
    if (!strcmp(nd->op, "Conv") && w->ndim == 4 &&
        pv_attr_int(nd, "group", 1) == 1) {
      M = w->dims[0];
      C = w->dims[1];
      kk = w->dims[2] * w->dims[3];
      ld_m = C * kk;
      ld_q = 1;
    } else if ((!strcmp(nd->op, "Gemm") || !strcmp(nd->op, "MatMul")) &&
               w->ndim == 2) {
      bool tb = !strcmp(nd->op, "Gemm") && pv_attr_int(nd, "transB", 0);
      M = tb ? w->dims[0] : w->dims[1];
      C = tb ? w->dims[1] : w->dims[0];
      ld_m = tb ? C : 1;
      ld_q = tb ? 1 : M;
    } else {
      continue;
    }
    if (M < min_ch || C < min_ch || M < n || C < n || M > INT32_MAX ||
        C > INT32_MAX)
      continue;
    w->pivot = prune_block_diag(w->data, ld_m, ld_q, (int32_t)M, (int32_t)C,
                                (int32_t)kk, n);
    if (!w->pivot) return pv_error(PV_ENOMEM, "bench: out of memory pruning");
    count++;
  }
  return count;
}

typedef struct mcall {
  pv_exec *e;
  pv_tensor *in;
  int n_in;
  pv_tensor *out;
  int n_out;
  int rc;
} mcall;

static void run_model(void *arg) {
  mcall *c = arg;
  if (!c->rc) c->rc = pv_exec_run(c->e, c->in, c->n_in, c->out, c->n_out);
}

/* One row per model x batch x threads: whole-model median time on random
 * inputs. The ONNX Runtime rows come from the conformance harness (`make
 * -C tests/conformance bench`), which owns the reference models. */
static int bench_models(const bench_opts *o) {
  printf("%-40s %-24s %5s %3s %10s\n", "# model", "weights", "batch", "thr",
         o->cpu_time ? "min_cpu_ms" : "median_ms");
  for (int mi = 0; mi < o->n_models; mi++)
    for (int ti = 0; ti < o->n_threads; ti++) {
     for (int pruned = 0; pruned < (o->prune > 0 ? 2 : 1); pruned++) {
      pv_load_opts lo = {.threads = o->threads[ti]};
      pv_model *m;
      char label[64] = "dense";
      if (!pruned) {
        m = pv_model_load(o->model_paths[mi], &lo);
      } else {
        /* ONNX only: optimise first, then prune what the passes left. */
        pv_graph *g = pv_onnx_load(o->model_paths[mi]);
        int np = g ? pv_passes_run(g) : -1;
        if (!np) np = prune_graph(g, o->prune, o->prune_min_ch);
        if (np > 0 && o->folded) fold_chains(g);
        /* Otherwise what loading a pruned ONNX model does: each layer's
         * row permutation folded into the next layer's columns, so only
         * the gathers of independent random permutations remain. */
        if (np > 0 && !o->folded && pv_graph_fold_perms(g)) np = -1;
        if (np < 0) {
          pv_graph_free(g);
          return cli_die("bench: %s: %s", o->model_paths[mi], pv_errmsg());
        }
        char db[16];
        snprintf(label, sizeof label, "%s%s, %d layers",
                 frac_str(o->prune, db, sizeof db), o->folded ? " folded" : "",
                 np);
        lo.no_passes = true;
        m = pv_model_from_graph(g, &lo);
      }
      if (!m) return cli_die("bench: %s: %s", o->model_paths[mi], pv_errmsg());
      int ni = pv_model_n_inputs(m), no = pv_model_n_outputs(m);
      pv_tensor *in = calloc(ni ? ni : 1, sizeof *in);
      pv_tensor *out = calloc(no ? no : 1, sizeof *out);
      pv_exec *e = pv_exec_new(m);
      int rc = !in || !out || !e ? PV_ENOMEM : 0;
      for (int bi = 0; !rc && bi < o->n_batches; bi++) {
        for (int i = 0; !rc && i < ni; i++) {
          const pv_value *v = pv_model_input(m, i);
          pv_free(in[i].data);
          in[i] = (pv_tensor){.dtype = v->dtype, .ndim = v->ndim};
          for (int d = 0; d < v->ndim; d++)
            in[i].dims[d] = v->dims[d] < 0 ? o->batches[bi] : v->dims[d];
          if ((rc = pv_tensor_alloc(&in[i]))) break;
          if (v->dtype == PV_F32)
            for (int64_t k = 0; k < pv_tensor_numel(&in[i]); k++)
              ((float *)in[i].data)[k] = rng_float();
        }
        if (rc) break;
        mcall c = {e, in, ni, out, no, 0};
        double t = time_median(o, run_model, &c);
        if ((rc = c.rc)) break;
        printf("%-40s %-24s %5d %3d %10.3f\n", o->model_paths[mi], label,
               o->batches[bi], o->threads[ti], t);
      }
      for (int i = 0; i < ni && in; i++) pv_free(in[i].data);
      free(in);
      free(out);
      pv_exec_free(e);
      pv_model_release(m);
      if (rc) return cli_die("bench: %s: %s", o->model_paths[mi], pv_errmsg());
     }
    }
  return 0;
}

/* ---------------------------------------------------------------- options */

static int parse_ints(const char *s, int *out, int *n, const char *what) {
  *n = 0;
  char *dup = strdup(s), *save, *tok;
  if (!dup) return -1;
  for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *end;
    long v = strtol(tok, &end, 10);
    if (*end || v <= 0 || v > 1 << 16 || *n == MAX_LIST) {
      int r = cli_die("bench: bad %s '%s' (positive integers, at most %d)",
                      what, tok, MAX_LIST);
      free(dup);
      return r;
    }
    out[(*n)++] = (int)v;
  }
  free(dup);
  return *n ? 0 : cli_die("bench: empty %s list", what);
}

static int parse_dens(const char *s, bench_opts *o) {
  o->n_dens = 0;
  char *dup = strdup(s), *save, *tok;
  if (!dup) return -1;
  for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    double d = cli_parse_fraction(tok);
    double n = d > 0 ? 1 / d : 0;
    if (d <= 0 || fabs(n - lround(n)) > 1e-6 || o->n_dens == MAX_LIST) {
      int r = cli_die("bench: bad density '%s' (1 or 1/n)", tok);
      free(dup);
      return r;
    }
    o->dens[o->n_dens++] = d;
  }
  free(dup);
  return o->n_dens ? 0 : cli_die("bench: empty density list");
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: pivot bench [OPTIONS]\n"
    "  --section kernels|models|all  what to run (default kernels; models\n"
    "                               needs --model)\n"
    "  --repeats N                  samples per median (default 11)\n"
    "  --sizes 1024,4096            M = K of the kernel cases\n"
    "  --batch 1,32                 batch sizes\n"
    "  --density 1,1/2,1/4,1/8,1/16 block-diagonal densities\n"
    "  --threads 1,2                thread counts\n"
    "  --isa avx512|avx2|neon|c     force a kernel set (default: best)\n"
    "  --backend opencl|cuda        kernels: pivoted vs dense Gemm on that\n"
    "                               backend, through the runtime\n"
    "  --no-blas, --no-csr          skip the OpenBLAS / CSR columns\n"
    "  --quick                      sizes 1024, 3 repeats (smoke test)\n"
    "  --cpu-time                   minimum of the calling thread's CPU time\n"
    "                               instead of the median wall time (a busy\n"
    "                               machine; meaningful at --threads 1)\n"
    "  --model PATH                 a model for the models section (repeatable)\n"
    "  --prune 1/n                  models: also time a copy whose Conv/Gemm/\n"
    "                               MatMul weights are block-diagonal at 1/n\n"
    "  --prune-min-channels N       ... for layers with >= N channels (128)\n"
    "  --prune-folded               ... with permutations folded inside chains\n");
}

int cmd_bench(int argc, char **argv) {
  bench_opts o = {.repeats = 11, .kernels = true, .blas = true, .csr = true,
                  .min_sample_ms = 2.0, .prune_min_ch = 128};
  int r;
  if ((r = parse_ints("1024,4096", o.sizes, &o.n_sizes, "size")) ||
      (r = parse_ints("1,32", o.batches, &o.n_batches, "batch")) ||
      (r = parse_ints("1,2", o.threads, &o.n_threads, "threads")) ||
      (r = parse_dens("1,1/2,1/4,1/8,1/16", &o)))
    return r;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() \
  if (!v) return cli_die("bench: %s needs a value", a); \
  i++
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--section")) {
      NEED_VALUE();
      o.kernels = !strcmp(v, "kernels") || !strcmp(v, "all");
      o.models = !strcmp(v, "models") || !strcmp(v, "all");
      if (!o.kernels && !o.models)
        return cli_die("bench: unknown section '%s' (kernels, models, all)", v);
    } else if (!strcmp(a, "--repeats")) {
      NEED_VALUE();
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 100000)
        return cli_die("bench: bad --repeats '%s' (1..100000)", v);
      o.repeats = (int)n;
    } else if (!strcmp(a, "--sizes")) {
      NEED_VALUE();
      if ((r = parse_ints(v, o.sizes, &o.n_sizes, "size"))) return r;
    } else if (!strcmp(a, "--batch")) {
      NEED_VALUE();
      if ((r = parse_ints(v, o.batches, &o.n_batches, "batch"))) return r;
    } else if (!strcmp(a, "--threads")) {
      NEED_VALUE();
      if ((r = parse_ints(v, o.threads, &o.n_threads, "threads"))) return r;
    } else if (!strcmp(a, "--density")) {
      NEED_VALUE();
      if ((r = parse_dens(v, &o))) return r;
    } else if (!strcmp(a, "--backend")) {
      NEED_VALUE();
      o.backend = v;
    } else if (!strcmp(a, "--isa")) {
      NEED_VALUE();
      o.isa = v;
    } else if (!strcmp(a, "--model")) {
      NEED_VALUE();
      if (o.n_models == MAX_LIST) return cli_die("bench: too many --model");
      o.model_paths[o.n_models++] = v;
    } else if (!strcmp(a, "--prune")) {
      NEED_VALUE();
      o.prune = cli_parse_fraction(v);
      double n = o.prune > 0 ? 1 / o.prune : 0;
      if (o.prune <= 0 || o.prune >= 1 || fabs(n - lround(n)) > 1e-6)
        return cli_die("bench: bad --prune '%s' (1/n, n >= 2)", v);
    } else if (!strcmp(a, "--prune-min-channels")) {
      NEED_VALUE();
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 1 << 20)
        return cli_die("bench: bad --prune-min-channels '%s'", v);
      o.prune_min_ch = (int)n;
    } else if (!strcmp(a, "--prune-folded")) {
      o.folded = true;
    } else if (!strcmp(a, "--no-blas")) {
      o.blas = false;
    } else if (!strcmp(a, "--no-csr")) {
      o.csr = false;
    } else if (!strcmp(a, "--cpu-time")) {
      o.cpu_time = true;
    } else if (!strcmp(a, "--quick")) {
      o.sizes[0] = 1024;
      o.n_sizes = 1;
      o.repeats = 3;
      o.min_sample_ms = 0.5;
    } else {
      usage(stderr);
      return cli_die("bench: unknown option '%s'", a);
    }
#undef NEED_VALUE
  }
  for (int i = 0; i < o.n_sizes; i++)
    for (int j = 0; j < o.n_dens; j++) {
      int n = (int)lround(1 / o.dens[j]);
      if (o.sizes[i] % n)
        return cli_die("bench: size %d is not divisible by %d (density 1/%d)",
                       o.sizes[i], n, n);
    }
  if (o.models && !o.n_models)
    return cli_die("bench: the models section needs --model PATH (the "
                   "ONNX Runtime comparison is `make -C tests/conformance "
                   "bench`)");
  if (o.kernels && o.backend && strcmp(o.backend, "cpu")) {
    if ((r = cli_bench_backend(o.backend, o.sizes, o.n_sizes, o.batches,
                               o.n_batches, o.dens, o.n_dens, o.repeats,
                               o.min_sample_ms)))
      return r;
  } else if (o.kernels && (r = bench_kernels(&o))) {
    return r;
  }
  if (o.models && (r = bench_models(&o))) return r;
  return 0;
}
