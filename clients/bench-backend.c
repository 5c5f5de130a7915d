/* pivot bench --backend NAME: linearity of a backend's pivoted kernels.
 *
 * Each case is a one-node model, y = x W^T (Gemm, transB = 1, M = K), run
 * through the runtime on the named backend: once with W dense, once with W
 * block-diagonal at density 1/n (random permutations, so the kernels do
 * their gather and scatter). Both include the same per-run transfers, so
 * the ratio dense/pivoted is the backend's own speedup; linearity is that
 * speedup times the density (1 = time proportional to the stored blocks).
 * The pivoted output is compared with the dense model on the zero-filled
 * matrix, on the same backend, so a fast wrong kernel shows up as a large
 * relerr. Kernel-only GPU timings against cuBLAS are pivot-bench-cuda's.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "pv-pivot.h"

static uint64_t bb_rng = 0x2545f4914f6cdd1dull;
static uint64_t bb_next(void) {
  bb_rng ^= bb_rng << 13;
  bb_rng ^= bb_rng >> 7;
  bb_rng ^= bb_rng << 17;
  return bb_rng;
}
static float bb_float(void) {
  return (float)((bb_next() >> 40) & 0xffff) / 32768.0f - 1.0f;
}

static double bb_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Zero W outside a block-diagonal structure at density 1/n (in permuted
 * order) and return its pivot; W keeps the zero-filled dense matrix. */
static pv_pivot *block_diag(float *w, int M, int n) {
  int32_t *pr = malloc(sizeof(int32_t) * M), *pc = malloc(sizeof(int32_t) * M);
  int32_t *off = malloc(sizeof(int32_t) * (n + 1)), *bi = malloc(sizeof(int32_t) * n);
  pv_pivot *p = NULL;
  if (!pr || !pc || !off || !bi) goto out;
  for (int32_t *perm = pr; perm; perm = perm == pr ? pc : NULL) {
    for (int i = 0; i < M; i++) perm[i] = i;
    for (int i = M - 1; i > 0; i--) {
      int j = (int)(bb_next() % (uint64_t)(i + 1)), t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
  }
  for (int i = 0; i <= n; i++) off[i] = (int32_t)((int64_t)M * i / n);
  for (int i = 0; i < n; i++) bi[i] = i;
  /* Group of each logical row and column, to zero what no block covers. */
  int32_t *gr = malloc(sizeof(int32_t) * M * 2);
  if (!gr) goto out;
  for (int g = 0; g < n; g++)
    for (int i = off[g]; i < off[g + 1]; i++) gr[pr[i]] = gr[M + pc[i]] = g;
  for (int64_t r = 0; r < M; r++)
    for (int64_t c = 0; c < M; c++)
      if (gr[r] != gr[M + c]) w[r * M + c] = 0.0f;
  free(gr);
  p = pv_pivot_from_dense(w, M, M, 1, pr, pc, n, off, n, off, n, bi, bi);
out:
  free(pr), free(pc), free(off), free(bi);
  return p;
}

/* A model y = Gemm(x, W, transB=1) over x[batch, M]; pivot may be NULL.
 * Takes a copy of w. */
static pv_model *one_gemm(const char *backend, const float *w, int M,
                          pv_pivot *pivot) {
  pv_graph *g = pv_graph_new();
  if (!g) goto nomem;
  int x = pv_graph_add_value(g, "x"), wv = pv_graph_add_value(g, "W"),
      y = pv_graph_add_value(g, "y");
  if (x < 0 || wv < 0 || y < 0) goto nomem_g;
  g->values[x].dtype = g->values[y].dtype = g->values[wv].dtype = PV_F32;
  g->values[x].ndim = g->values[y].ndim = g->values[wv].ndim = 2;
  g->values[x].dims[0] = g->values[y].dims[0] = PV_DIM_BATCH;
  g->values[x].dims[1] = g->values[y].dims[1] = M;
  g->values[wv].dims[0] = g->values[wv].dims[1] = M;
  g->values[wv].nbytes = (size_t)M * M * sizeof(float);
  g->values[wv].data = pv_aligned_alloc(g->values[wv].nbytes);
  if (!g->values[wv].data) goto nomem_g;
  memcpy(g->values[wv].data, w, g->values[wv].nbytes);
  if (pivot && !(g->values[wv].pivot = pv_pivot_clone(pivot))) goto nomem_g;
  int node = pv_graph_add_node(g, "fc", "Gemm", (int[]){x, wv}, 2, &y, 1);
  if (node < 0) goto nomem_g;
  pv_node_add_attr(g, node, &(pv_attr){.name = "transB", .type = PV_ATTR_INT, .i = 1});
  g->inputs = malloc(sizeof(int));
  g->outputs = malloc(sizeof(int));
  if (!g->inputs || !g->outputs) goto nomem_g;
  g->inputs[0] = x;
  g->outputs[0] = y;
  g->n_inputs = g->n_outputs = 1;
  g->opset = 13;
  const char *names[] = {backend, NULL};
  pv_load_opts lo = {.backends = names, .no_passes = true};
  pv_model *m = pv_model_from_graph(g, &lo);
  if (!m) return NULL;
  const char *ran = pv_model_node_backend(m, 0);
  if (strcmp(ran, backend)) {
    pv_error(PV_EBACKEND, "the Gemm ran on '%s', not '%s' (see the log above)",
             ran, backend);
    pv_model_release(m);
    return NULL;
  }
  return m;
nomem_g:
  pv_graph_free(g);
nomem:
  pv_error(PV_ENOMEM, "bench: out of memory building a %dx%d Gemm", M, M);
  return NULL;
}

typedef struct brun {
  pv_exec *e;
  pv_tensor *in, out;
  int rc;
} brun;

static void brun_once(brun *r) {
  if (r->rc) return;
  r->rc = pv_exec_run(r->e, r->in, 1, &r->out, 1);
}

int cli_bench_backend(const char *backend, const int *sizes, int n_sizes,
                      const int *batches, int n_batches, const double *dens,
                      int n_dens, int repeats, double min_sample_ms) {
  printf("# backend %s: y[batch][M] = x[batch][K] W^T, M = K, one Gemm node "
         "through the runtime (transfers included), median of %d repeats\n",
         backend, repeats);
  printf("# speedup = dense_ms / pivot_ms on the same backend; linearity = "
         "speedup x density (1 = linear); relerr = max |pivoted - dense on the "
         "zero-filled W| / max |dense|\n");
  printf("%5s %5s %7s | %9s %9s %8s %6s | %8s\n", "M=K", "batch", "density",
         "dense_ms", "pivot_ms", "speedup", "lin", "relerr");
  int rc = 0;
  for (int si = 0; si < n_sizes && !rc; si++) {
    int M = sizes[si];
    for (int di = 0; di < n_dens && !rc; di++) {
      int n = (int)lround(1 / dens[di]);
      float *w = malloc((size_t)M * M * sizeof(float));
      if (!w) return cli_die("bench: out of memory for %dx%d", M, M);
      for (int64_t i = 0; i < (int64_t)M * M; i++) w[i] = bb_float();
      pv_pivot *piv = n > 1 ? block_diag(w, M, n) : NULL;
      pv_model *md = n > 1 && !piv ? NULL : one_gemm(backend, w, M, NULL);
      pv_model *mp = n > 1 && md ? one_gemm(backend, w, M, piv) : NULL;
      free(w);
      pv_pivot_free(piv);
      if (!md || (n > 1 && !mp)) {
        rc = cli_die("bench: %s: %s", backend, pv_errmsg());
        pv_model_release(md);
        break;
      }
      for (int bi = 0; bi < n_batches && !rc; bi++) {
        int N = batches[bi];
        pv_tensor in = {.dtype = PV_F32, .ndim = 2, .dims = {N, M}};
        if (pv_tensor_alloc(&in)) {
          rc = cli_die("bench: out of memory");
          break;
        }
        for (int64_t i = 0; i < (int64_t)N * M; i++) ((float *)in.data)[i] = bb_float();
        brun r[2] = {{.e = pv_exec_new(md), .in = &in},
                     {.e = mp ? pv_exec_new(mp) : NULL, .in = &in}};
        int nr = mp ? 2 : 1, inner[2] = {1, 1};
        double *s = malloc(sizeof(double) * repeats * 2), med[2] = {NAN, NAN};
        if (!s || !r[0].e || (mp && !r[1].e)) r[0].rc = PV_ENOMEM;
        /* Warm up (first-run allocations), then size a sample to last
         * min_sample_ms so short runs are not timer noise. */
        for (int f = 0; f < nr; f++) {
          brun_once(&r[f]);
          double t0 = bb_now_ms();
          brun_once(&r[f]);
          double one = bb_now_ms() - t0;
          inner[f] = one > 0 ? (int)(min_sample_ms / one) + 1 : 100;
          if (inner[f] > 100) inner[f] = 100;
        }
        double relerr = NAN;
        if (nr == 2 && !r[0].rc && !r[1].rc) {
          const float *a = r[0].out.data, *b = r[1].out.data;
          double mx = 0, md_ = 0;
          for (int64_t i = 0; i < (int64_t)N * M; i++) {
            mx = fmax(mx, fabs(a[i]));
            md_ = fmax(md_, fabs((double)a[i] - b[i]));
          }
          relerr = mx > 0 ? md_ / mx : md_;
        }
        /* The two models take turns in every repeat, so a neighbour's
         * load on a shared machine hits both alike. */
        for (int k = 0; s && k < repeats; k++)
          for (int f = 0; f < nr; f++) {
            double t0 = bb_now_ms();
            for (int i = 0; i < inner[f]; i++) brun_once(&r[f]);
            s[f * repeats + k] = (bb_now_ms() - t0) / inner[f];
          }
        for (int f = 0; f < nr && s; f++) {
          qsort(s + f * repeats, repeats, sizeof *s, cmp_d);
          med[f] = s[f * repeats + repeats / 2];
        }
        if (nr == 1) med[1] = med[0];
        if (r[0].rc || r[1].rc) {
          rc = cli_die("bench: %s run: %s", backend, pv_errmsg());
        } else {
          char db[16], eb[16];
          if (n > 1) snprintf(db, sizeof db, "1/%d", n);
          else snprintf(db, sizeof db, "1");
          if (isnan(relerr)) snprintf(eb, sizeof eb, "-");
          else snprintf(eb, sizeof eb, "%.1e", relerr);
          double sp = med[0] / med[1];
          printf("%5d %5d %7s | %9.4f %9.4f %7.2fx %6.2f | %8s\n", M, N, db,
                 med[0], med[1], sp, sp / n, eb);
          fflush(stdout);
        }
        free(s);
        for (int f = 0; f < 2; f++) pv_exec_free(r[f].e); /* owns out */
        pv_free(in.data);
      }
      pv_model_release(md);
      pv_model_release(mp);
    }
  }
  return rc;
}
