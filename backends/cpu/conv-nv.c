/* Driver of the spatially vectorised convolution (conv-nv.h). A work item
 * is (segment, chunk of output pixels, range of 8-channel row blocks). It
 * builds the chunk's im2col rows for one block of taps into per-thread
 * scratch ([taps][chunk], each row one im2col line), then for every row
 * block runs the 8 x 48 tile over the chunk's pixel panels: the block's
 * weights (taps x 8, L1) stay put while the im2col block (L2) streams
 * past them. Taps beyond NV_KC are blocked, the partial sums kept in the
 * output itself, so the im2col block stays in L2 at any K. Weights are
 * the packed [k][16] panels of pack.c, read 8 rows at a time, so dense,
 * grouped and pivoted segments all run here. */
#include <stdatomic.h>
#include <stdlib.h>

#include "conv-nv.h"

#define NV_KC 384                  /* taps per block: 8 x 384 weights = 24 KB in L1 */
#define NV_B_FLOATS (96 * 1024)    /* im2col block budget (384 KB of L2) */
#define NV_MAX_PANELS 64

typedef struct nv_job {
  pv_cpu_pool *pool;
  pv_nv_ukr_fn ukr;
  const pv_cpu_mat *a;
  pv_cpu_bsrc b; /* always a convolution geometry */
  const pv_cpu_out *out;
  int64_t n, nc, n_chunks, kb_max;
  int msplit;
  int64_t *start; /* [n_seg+1] first item of each segment */
  atomic_int failed;
} nv_job;

static int64_t nv_units(const pv_cpu_seg *s) {
  return (s->rows + PV_NV_MR - 1) / PV_NV_MR;
}

/* Taps per block for a segment of k taps: equal blocks of at most NV_KC. */
static int64_t nv_kb(int64_t k) {
  int64_t nkb = (k + NV_KC - 1) / NV_KC;
  return nkb ? (k + nkb - 1) / nkb : 1;
}

static void nv_item(void *arg, int64_t item, int tid) {
  nv_job *j = arg;
  int si = 0;
  while (item >= j->start[si + 1]) si++;
  const pv_cpu_seg *s = &j->a->seg[si];
  const pv_cpu_out *o = j->out;
  int64_t r = item - j->start[si];
  int64_t chunk = r % j->n_chunks, part = r / j->n_chunks;
  int64_t units = nv_units(s);
  int64_t ms = units < j->msplit ? units : j->msplit;
  int64_t u0 = part * units / ms, u1 = (part + 1) * units / ms;
  int64_t n0 = chunk * j->nc;
  int64_t ncols = j->n - n0 < j->nc ? j->n - n0 : j->nc;
  int64_t npan = (ncols + PV_NV_NR - 1) / PV_NV_NR, ldb = npan * PV_NV_NR;
  const int64_t k = s->k, kb = nv_kb(k);
  float *bp = pv_cpu_pool_scratch(j->pool, tid, (size_t)(kb * ldb) * sizeof(float));
  if (!bp) {
    atomic_store(&j->failed, 1);
    return;
  }
  for (int64_t pc = 0; pc < k; pc += kb) {
    const int64_t kc = k - pc < kb ? k - pc : kb;
    for (int64_t p = 0; p < kc; p++) {
      float *row = bp + p * ldb;
      pv_cpu_im2col_row(s, &j->b, pc + p, n0, ncols, row);
      for (int64_t i = ncols; i < ldb; i++) row[i] = 0.0f;
    }
    int flags = (pc == 0 ? PV_NV_FIRST : 0) | (pc + kc == k ? PV_NV_LAST : 0);
    for (int64_t u = u0; u < u1; u++) {
      int64_t r0 = u * PV_NV_MR;
      int nrows = s->rows - r0 < PV_NV_MR ? (int)(s->rows - r0) : PV_NV_MR;
      const float *ap = s->a + (r0 / PV_CPU_MR) * PV_CPU_MR * k +
                        pc * PV_CPU_MR + r0 % PV_CPU_MR;
      float *yr[PV_NV_MR];
      float bi[PV_NV_MR];
      for (int i = 0; i < nrows; i++) {
        int64_t m = s->row_idx ? s->row_idx[r0 + i] : s->row_base + r0 + i;
        yr[i] = o->y + m * o->ld_m;
        bi[i] = o->bias ? o->bias[m] : 0.0f;
      }
      for (int64_t q = 0; q < npan; q++) {
        int w = ncols - q * PV_NV_NR < PV_NV_NR ? (int)(ncols - q * PV_NV_NR)
                                                : PV_NV_NR;
        j->ukr(ap, bp + q * PV_NV_NR, ldb, kc, yr, n0 + q * PV_NV_NR, bi,
               nrows, w, flags, o->act, o->alpha, o->beta);
      }
    }
  }
}

bool pv_cpu_conv_nv_ok(const pv_cpu_isa *isa, const pv_cpu_mat *a,
                       const pv_cpu_bsrc *b) {
  if (isa != &pv_cpu_isa_avx512 || !pv_cpu_nv_ukr_avx512) return false;
  for (int s = 0; s < a->n_seg; s++)
    if (a->seg[s].k <= 0) return false;
  return b->conv || b->ld_n == 1;
}

int pv_cpu_conv_nv(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                   const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                   const pv_cpu_out *out) {
  if (n <= 0) return 0;
  if (!pv_cpu_conv_nv_ok(isa, a, b) || out->ld_n != 1)
    return pv_error(PV_EINVAL, "cpu: convolution not in the spatial layout");
  nv_job j = {.pool = pool, .ukr = pv_cpu_nv_ukr_avx512, .a = a, .b = *b,
              .out = out, .n = n};
  if (!b->conv) {
    /* A pointwise convolution's planes: one image row of ld_k pixels. */
    if (b->ld_k < n) return pv_error(PV_EINVAL, "cpu: planes shorter than %lld",
                                     (long long)n);
    j.b = (pv_cpu_bsrc){.x = b->x, .conv = true, .H = 1, .W = b->ld_k,
                        .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                        .OW = n};
  }
  j.kb_max = nv_kb(a->max_k);
  /* Chunks as wide as the budget allows, then evened out so that the last
   * is not a sliver. */
  int64_t max_pan = NV_B_FLOATS / (j.kb_max * PV_NV_NR);
  if (max_pan < 1) max_pan = 1;
  if (max_pan > NV_MAX_PANELS) max_pan = NV_MAX_PANELS;
  int64_t npan_all = (n + PV_NV_NR - 1) / PV_NV_NR;
  j.n_chunks = (npan_all + max_pan - 1) / max_pan;
  j.nc = (npan_all + j.n_chunks - 1) / j.n_chunks * PV_NV_NR;
  j.n_chunks = (n + j.nc - 1) / j.nc;

  int threads = pv_cpu_pool_threads(pool);
  int64_t nonempty = 0, max_units = 1;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t u = nv_units(&a->seg[s]);
    if (u) nonempty++;
    if (u > max_units) max_units = u;
  }
  /* Row splits repeat the im2col of their chunk: only as many as it takes
   * to give every thread a few items. */
  int64_t base = nonempty * j.n_chunks;
  int64_t want = threads > 1 ? 3 * (int64_t)threads : 1;
  int64_t msplit = base >= want ? 1 : (want + base - 1) / (base ? base : 1);
  if (msplit > max_units) msplit = max_units;
  j.msplit = (int)msplit;
  j.start = malloc(((size_t)a->n_seg + 1) * sizeof *j.start);
  if (!j.start) return pv_error(PV_ENOMEM, "cpu: out of memory");
  j.start[0] = 0;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t u = nv_units(&a->seg[s]);
    int64_t ms = u < msplit ? u : msplit;
    j.start[s + 1] = j.start[s] + ms * j.n_chunks;
  }
  double macs = (double)a->nnz * (double)n;
  int use = (int)(macs / 262144.0) + 1;
  pv_cpu_pool_run_max(pool, j.start[a->n_seg], use < threads ? use : threads,
                      nv_item, &j);
  free(j.start);
  if (atomic_load(&j.failed))
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  return 0;
}
