/* Pivoted matrices: detect (exact), prune (energy vs random), reference
 * product, graph-level detect/prune, and permutation folding. */
#include <unistd.h>

#include "cunit-main.h"
#include "pivot-testlib.h"

/* ------------------------------------------------------------ detect */

static void dense_mul(const float *W, int32_t M, int64_t K, const float *x,
                      float *y, int64_t batch) {
  for (int64_t b = 0; b < batch; b++)
    for (int32_t m = 0; m < M; m++) {
      double acc = 0;
      for (int64_t k = 0; k < K; k++) acc += (double)W[m * K + k] * x[b * K + k];
      y[b * M + m] = (float)acc;
    }
}

/* Every block's rows come from one hidden row group and its channels from
 * one hidden channel group, and the pivot reproduces w exactly. */
static void check_recovered(const pv_pivot *p, const float *w,
                            const int32_t *rgrp, const int32_t *cgrp) {
  CU_ASSERT_EQUAL_FATAL(pv_pivot_validate(p), 0);
  size_t n = (size_t)p->M * p->C * p->kk;
  float *d = malloc(sizeof(float) * n);
  pv_pivot_to_dense(p, d);
  CU_ASSERT(memcmp(d, w, sizeof(float) * n) == 0);
  free(d);
  for (int32_t b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *bl = &p->blocks[b];
    for (int32_t i = p->row_off[bl->rg]; i < p->row_off[bl->rg + 1]; i++)
      CU_ASSERT_EQUAL(rgrp[p->perm_r[i]], rgrp[p->perm_r[p->row_off[bl->rg]]]);
    for (int32_t j = p->col_off[bl->cg]; j < p->col_off[bl->cg + 1]; j++)
      CU_ASSERT_EQUAL(cgrp[p->perm_c[j]], cgrp[p->perm_c[p->col_off[bl->cg]]]);
  }
}

static void test_detect_blockdiag(void) {
  uint64_t s = 1;
  int32_t M = 64, C = 48, rg[64], cg[48];
  float *w = t_structured(M, C, 1, 8, 1, &s, rg, cg);
  pv_pivot *p = pv_pivot_detect(w, M, C, 1, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(p->nr, 8);
  CU_ASSERT_EQUAL(p->nc, 8);
  CU_ASSERT_EQUAL(p->n_blocks, 8);
  CU_ASSERT_DOUBLE_EQUAL(pv_pivot_density(p), 1.0 / 8, 1e-12);
  for (int32_t b = 0; b < 8; b++) {
    CU_ASSERT_EQUAL(p->blocks[b].rg, b);
    CU_ASSERT_EQUAL(p->blocks[b].cg, b);
  }
  check_recovered(p, w, rg, cg);
  pv_pivot_free(p);
  free(w);
}

/* Convolution: whole channels (9 taps) move together; a few taps inside
 * the blocks are zero, which must not break the blocks apart. */
static void test_detect_conv(void) {
  uint64_t s = 2;
  int32_t M = 32, C = 16, kk = 9, rg[32], cg[16];
  float *w = t_structured(M, C, kk, 4, 1, &s, rg, cg);
  for (int i = 0; i < 40; i++) w[t_rand(&s) % ((size_t)M * C * kk)] = 0;
  pv_pivot *p = pv_pivot_detect(w, M, C, kk, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(p->kk, 9);
  CU_ASSERT_EQUAL(p->n_blocks, 4);
  CU_ASSERT_EQUAL(pv_pivot_nnz(p), (int64_t)M * C * kk / 4);
  check_recovered(p, w, rg, cg);
  pv_pivot_free(p);
  free(w);
}

static void test_detect_c_of_n(void) {
  uint64_t s = 3;
  int32_t M = 32, C = 24, rg[32], cg[24];
  float *w = t_structured(M, C, 1, 4, 2, &s, rg, cg);
  pv_pivot *p = pv_pivot_detect(w, M, C, 1, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(p->nr, 4);
  CU_ASSERT_EQUAL(p->nc, 4);
  CU_ASSERT_EQUAL(p->n_blocks, 8);
  CU_ASSERT_DOUBLE_EQUAL(pv_pivot_density(p), 0.5, 1e-12);
  /* balanced: every row group holds the same number of blocks */
  int per[4] = {0};
  for (int32_t b = 0; b < p->n_blocks; b++) per[p->blocks[b].rg]++;
  for (int g = 0; g < 4; g++) CU_ASSERT_EQUAL(per[g], 2);
  check_recovered(p, w, rg, cg);
  pv_pivot_free(p);
  free(w);
}

/* Groups that do not divide evenly, plus all-zero rows and channels. */
static void test_detect_uneven(void) {
  uint64_t s = 4;
  int32_t M = 34, C = 26;
  float *w = calloc((size_t)M * C, sizeof(float));
  int32_t pr[34], pc[26];
  t_shuffle(pr, M, &s);
  t_shuffle(pc, C, &s);
  for (int b = 0; b < 4; b++)
    for (int i = 0; i < 8; i++)
      for (int j = 0; j < 6; j++)
        w[pr[b * 8 + i] * C + pc[b * 6 + j]] = t_nonzero(&s);
  pv_pivot *p = pv_pivot_detect(w, M, C, 1, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(p->n_blocks, 4);
  CU_ASSERT_EQUAL(pv_pivot_validate(p), 0);
  for (int g = 0; g < p->nr; g++) {
    int32_t r = p->row_off[g + 1] - p->row_off[g];
    CU_ASSERT(r == 8 || r == 9);
  }
  float *d = malloc(sizeof(float) * M * C);
  pv_pivot_to_dense(p, d);
  CU_ASSERT(memcmp(d, w, sizeof(float) * M * C) == 0);
  free(d);
  pv_pivot_free(p);
  free(w);
}

static void test_detect_none(void) {
  uint64_t s = 5;
  int32_t M = 24, C = 20, rg[24], cg[20];
  float *w = malloc(sizeof(float) * M * C);
  for (int i = 0; i < M * C; i++) w[i] = t_nonzero(&s);
  CU_ASSERT_PTR_NULL(pv_pivot_detect(w, M, C, 1, 0.75));
  free(w);
  /* density 1/2 structure, but only 0.4 allowed */
  w = t_structured(M, C, 1, 2, 1, &s, rg, cg);
  CU_ASSERT_PTR_NULL(pv_pivot_detect(w, M, C, 1, 0.4));
  pv_pivot *p = pv_pivot_detect(w, M, C, 1, 0.5);
  CU_ASSERT_PTR_NOT_NULL(p);
  pv_pivot_free(p);
  free(w);
  /* all zero: nothing to describe */
  w = calloc((size_t)M * C, sizeof(float));
  CU_ASSERT_PTR_NULL(pv_pivot_detect(w, M, C, 1, 0.75));
  free(w);
  /* unstructured sparsity, 8 nonzeros in every row: not blocks */
  float *u = calloc(96 * 96, sizeof(float));
  for (int m = 0; m < 96; m++)
    for (int k = 0; k < 8; k++) u[m * 96 + t_rand(&s) % 96] = 1;
  pv_pivot *q = pv_pivot_detect(u, 96, 96, 1, 0.75);
  if (q) printf("\n    found nr=%d nc=%d blocks=%d density %.3f ", q->nr, q->nc, q->n_blocks, pv_pivot_density(q));
  CU_ASSERT_PTR_NULL(q);
  pv_pivot_free(q);
  free(u);
  CU_ASSERT_PTR_NULL(pv_pivot_detect(NULL, M, C, 1, 0.75));
  CU_ASSERT_PTR_NULL(pv_pivot_detect(&(float){1}, 0, C, 1, 0.75));
}

static void test_gemm_ref(void) {
  uint64_t s = 6;
  int32_t M = 24, C = 12, kk = 3, rg[24], cg[12];
  float *w = t_structured(M, C, kk, 4, 2, &s, rg, cg);
  pv_pivot *p = pv_pivot_detect(w, M, C, kk, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  int64_t K = (int64_t)C * kk, B = 5;
  float *x = malloc(sizeof(float) * B * K), *y0 = malloc(sizeof(float) * B * M),
        *y1 = malloc(sizeof(float) * B * (M + 3));
  for (int64_t i = 0; i < B * K; i++) x[i] = t_gauss(&s);
  dense_mul(w, M, K, x, y0, B);
  for (int64_t i = 0; i < B * (M + 3); i++) y1[i] = 1e30f; /* overwritten */
  pv_pivot_gemm_ref(p, x, K, y1, M + 3, B);
  for (int64_t b = 0; b < B; b++)
    CU_ASSERT(t_rel_l2(y1 + b * (M + 3), y0 + b * M, (size_t)M) < 1e-6);
  pv_pivot_free(p);
  free(w);
  free(x);
  free(y0);
  free(y1);
}

static void test_validate(void) {
  uint64_t s = 7;
  int32_t rg[16], cg[8];
  float *w = t_structured(16, 8, 1, 2, 1, &s, rg, cg);
  pv_pivot *p = pv_pivot_detect(w, 16, 8, 1, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(pv_pivot_validate(p), 0);
  int32_t keep = p->perm_r[1];
  p->perm_r[1] = p->perm_r[0];
  CU_ASSERT_EQUAL(pv_pivot_validate(p), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "perm_r"));
  p->perm_r[1] = keep;
  p->col_off[1] = 0;
  CU_ASSERT_EQUAL(pv_pivot_validate(p), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "col_off"));
  p->col_off[1] = 4;
  p->blocks[1].cg = 0; /* (1,0) sorts after (0,0): still valid */
  CU_ASSERT_EQUAL(pv_pivot_validate(p), 0);
  p->blocks[1].rg = 0; /* duplicate (0,0) */
  CU_ASSERT_EQUAL(pv_pivot_validate(p), PV_EFORMAT);
  p->blocks[1].rg = 1;
  p->blocks[1].cg = 1;
  p->data_len--;
  CU_ASSERT_EQUAL(pv_pivot_validate(p), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "data"));
  p->data_len++;
  CU_ASSERT_EQUAL(pv_pivot_validate(p), 0);
  pv_pivot_free(p);
  free(w);
}

/* ------------------------------------------------------------ prune */

/* Retained energy of random balanced groups with the same grid. */
static double random_retained(const float *w, int32_t M, int32_t C, int n,
                              int c, uint64_t *s) {
  int32_t *pr = malloc(sizeof(int32_t) * M), *pc = malloc(sizeof(int32_t) * C);
  t_shuffle(pr, M, s);
  t_shuffle(pc, C, s);
  double kept = 0, tot = 0;
  for (int32_t i = 0; i < M; i++)
    for (int32_t j = 0; j < C; j++) {
      double e = (double)w[pr[i] * C + pc[j]] * w[pr[i] * C + pc[j]];
      int g = i * n / M, h = j * n / C;
      tot += e;
      if (((h - g) % n + n) % n < c) kept += e;
    }
  free(pr);
  free(pc);
  return kept / tot;
}

/* A trained-looking matrix: strong blocks under hidden permutations, plus
 * a low-rank part and noise spread over everything. */
static float *trained_like(int32_t M, int32_t C, int n, int c, uint64_t *s) {
  int32_t *rg = malloc(sizeof(int32_t) * M), *cg = malloc(sizeof(int32_t) * C);
  float *w = t_structured(M, C, 1, n, c, s, rg, cg);
  float u[2][256], v[2][256];
  for (int k = 0; k < 2; k++) {
    for (int32_t i = 0; i < M; i++) u[k][i] = t_gauss(s);
    for (int32_t j = 0; j < C; j++) v[k][j] = t_gauss(s);
  }
  for (int32_t i = 0; i < M; i++)
    for (int32_t j = 0; j < C; j++)
      w[i * C + j] += 0.08f * (u[0][i] * v[0][j] + u[1][i] * v[1][j]) +
                      0.1f * t_gauss(s);
  free(rg);
  free(cg);
  return w;
}

static void check_pruned(const pv_pivot *p, const float *w, double retained) {
  CU_ASSERT_EQUAL_FATAL(pv_pivot_validate(p), 0);
  size_t n = (size_t)p->M * p->C * p->kk;
  float *d = malloc(sizeof(float) * n);
  pv_pivot_to_dense(p, d);
  double kept = 0, tot = 0;
  for (size_t i = 0; i < n; i++) {
    CU_ASSERT(d[i] == 0 || d[i] == w[i]); /* kept entries are untouched */
    kept += (double)d[i] * d[i];
    tot += (double)w[i] * w[i];
  }
  CU_ASSERT_DOUBLE_EQUAL(retained, kept / tot, 1e-9);
  free(d);
}

static void test_prune_structured(void) {
  uint64_t s = 11;
  int32_t M = 128, C = 96;
  float *w = trained_like(M, C, 8, 1, &s);
  double ret = 0;
  pv_pivot *p = pv_pivot_prune(w, M, C, 1, 8, 1, 42, &ret);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_DOUBLE_EQUAL(pv_pivot_density(p), 1.0 / 8, 1e-12);
  check_pruned(p, w, ret);
  double rnd = 0;
  for (int k = 0; k < 5; k++) rnd += random_retained(w, M, C, 8, 1, &s) / 5;
  printf("\n    block 1/8: pivot keeps %.3f, random %.3f ", ret, rnd);
  CU_ASSERT(ret > 0.85);
  CU_ASSERT(ret > rnd + 0.5);
  /* deterministic for a seed */
  double ret2 = 0;
  pv_pivot *q = pv_pivot_prune(w, M, C, 1, 8, 1, 42, &ret2);
  CU_ASSERT_PTR_NOT_NULL_FATAL(q);
  CU_ASSERT(memcmp(p->perm_r, q->perm_r, sizeof(int32_t) * M) == 0);
  CU_ASSERT(memcmp(p->perm_c, q->perm_c, sizeof(int32_t) * C) == 0);
  CU_ASSERT_EQUAL(ret, ret2);
  pv_pivot_free(p);
  pv_pivot_free(q);
  free(w);
}

static void test_prune_c_of_n(void) {
  uint64_t s = 12;
  int32_t M = 64, C = 64;
  float *w = trained_like(M, C, 4, 2, &s);
  double ret = 0;
  pv_pivot *p = pv_pivot_prune(w, M, C, 1, 4, 2, 7, &ret);
  if (!p) fprintf(stderr, "%s\n", pv_errmsg());
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_EQUAL(p->n_blocks, 8);
  CU_ASSERT_DOUBLE_EQUAL(pv_pivot_density(p), 0.5, 1e-12);
  check_pruned(p, w, ret);
  double rnd = 0;
  for (int k = 0; k < 5; k++) rnd += random_retained(w, M, C, 4, 2, &s) / 5;
  printf("\n    2-of-4: pivot keeps %.3f, random %.3f ", ret, rnd);
  CU_ASSERT(ret > 0.85);
  CU_ASSERT(ret > rnd + 0.25);
  pv_pivot_free(p);
  free(w);
}

/* What pruning makes, detection finds: 2-of-4 blocks on a 34 x 26 matrix,
 * whose groups differ by one row or channel, come back exactly (the
 * detector once wanted equal groups and returned nothing). */
static void test_prune_detect_uneven_c_of_n(void) {
  uint64_t s = 21;
  int32_t M = 34, C = 26;
  float *w = malloc(sizeof(float) * (size_t)M * C);
  for (int32_t i = 0; i < M * C; i++) w[i] = t_gauss(&s);
  double ret = 0;
  pv_pivot *p = pv_pivot_prune(w, M, C, 1, 4, 2, 3, &ret);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  float *d = malloc(sizeof(float) * (size_t)M * C), *d2 = malloc(sizeof(float) * (size_t)M * C);
  pv_pivot_to_dense(p, d);
  pv_pivot *q = pv_pivot_detect(d, M, C, 1, 0.75);
  CU_ASSERT_PTR_NOT_NULL_FATAL(q);
  CU_ASSERT_EQUAL(q->n_blocks, 8);
  CU_ASSERT_EQUAL(pv_pivot_validate(q), 0);
  CU_ASSERT_EQUAL(pv_pivot_nnz(q), pv_pivot_nnz(p));
  pv_pivot_to_dense(q, d2);
  CU_ASSERT_EQUAL(memcmp(d, d2, sizeof(float) * (size_t)M * C), 0);
  pv_pivot_free(p);
  pv_pivot_free(q);
  free(w);
  free(d);
  free(d2);
}

/* No structure to find: pivoting still does no worse than chance, and a
 * conv-shaped matrix (kk = 9) prunes whole channels. */
static void test_prune_gaussian(void) {
  uint64_t s = 13;
  int32_t M = 64, C = 32, kk = 9;
  size_t n = (size_t)M * C * kk;
  float *w = malloc(sizeof(float) * n);
  for (size_t i = 0; i < n; i++) w[i] = t_gauss(&s);
  double ret = 0;
  pv_pivot *p = pv_pivot_prune(w, M, C, kk, 4, 1, 1, &ret);
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  check_pruned(p, w, ret);
  /* random baseline on channel energies */
  float *e = malloc(sizeof(float) * M * C);
  for (int32_t i = 0; i < M * C; i++) {
    double a = 0;
    for (int t = 0; t < kk; t++) a += (double)w[i * kk + t] * w[i * kk + t];
    e[i] = (float)sqrt(a);
  }
  double rnd = 0;
  for (int k = 0; k < 10; k++) rnd += random_retained(e, M, C, 4, 1, &s) / 10;
  printf("\n    gaussian 1/4: pivot keeps %.3f, random %.3f ", ret, rnd);
  CU_ASSERT(ret >= rnd);
  free(e);
  pv_pivot_free(p);
  CU_ASSERT_PTR_NULL(pv_pivot_prune(w, M, C, kk, 0, 1, 1, &ret));
  CU_ASSERT_PTR_NULL(pv_pivot_prune(w, M, C, kk, 4, 5, 1, &ret));
  CU_ASSERT_PTR_NULL(pv_pivot_prune(w, M, C, kk, 65, 1, 1, &ret));
  free(w);
}

/* ------------------------------------------------------ mini executor */

/* A naive interpreter for the few ops these tests use. With use_pivot,
 * pivoted weights are applied through pv_pivot_gemm_ref (im2col for
 * Conv) instead of the dense copy. It knows nothing of chan_perm. */
typedef struct tv {
  float *d;
  int nd;
  int64_t dims[4];
} tv;

static int64_t tv_numel(const tv *t) {
  int64_t n = 1;
  for (int i = 0; i < t->nd; i++) n *= t->dims[i];
  return n;
}

static void relu(float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0;
}

static void run_fc(const pv_graph *g, const pv_node *n, tv *v, bool use_pivot) {
  const pv_value *wv = &g->values[n->in[1]];
  tv *x = &v[n->in[0]], *y = &v[n->out[0]];
  bool mm = !strcmp(n->op, "MatMul");
  bool tb = !mm && pv_attr_int(n, "transB", 0);
  int64_t K = tb ? wv->dims[1] : wv->dims[0], M = tb ? wv->dims[0] : wv->dims[1];
  int64_t B = x->dims[0];
  CU_ASSERT_EQUAL_FATAL(x->dims[1], K);
  y->nd = 2;
  y->dims[0] = B;
  y->dims[1] = M;
  y->d = calloc((size_t)(B * M), sizeof(float));
  if (use_pivot && wv->pivot) {
    pv_pivot_gemm_ref(wv->pivot, x->d, K, y->d, M, B);
  } else {
    const float *W = wv->data;
    for (int64_t b = 0; b < B; b++)
      for (int64_t m = 0; m < M; m++) {
        double a = 0;
        for (int64_t k = 0; k < K; k++)
          a += (double)x->d[b * K + k] * (tb ? W[m * K + k] : W[k * M + m]);
        y->d[b * M + m] = (float)a;
      }
  }
  if (n->n_in > 2 && n->in[2] >= 0) {
    const float *bias = g->values[n->in[2]].data;
    for (int64_t b = 0; b < B; b++)
      for (int64_t m = 0; m < M; m++) y->d[b * M + m] += bias[m];
  }
}

static void run_conv(const pv_graph *g, const pv_node *n, tv *v, bool use_pivot) {
  const pv_value *wv = &g->values[n->in[1]];
  tv *x = &v[n->in[0]], *y = &v[n->out[0]];
  int64_t grp = pv_attr_int(n, "group", 1);
  const int64_t *pads;
  int np = pv_attr_ints(n, "pads", &pads);
  int64_t pt = np == 4 ? pads[0] : 0, pl = np == 4 ? pads[1] : 0,
          pb = np == 4 ? pads[2] : 0, pr = np == 4 ? pads[3] : 0;
  int64_t N = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
  int64_t M = wv->dims[0], Cg = wv->dims[1], kh = wv->dims[2], kw = wv->dims[3];
  CU_ASSERT_EQUAL_FATAL(Cg * grp, C);
  int64_t Ho = H + pt + pb - kh + 1, Wo = W + pl + pr - kw + 1, kk = kh * kw;
  y->nd = 4;
  y->dims[0] = N;
  y->dims[1] = M;
  y->dims[2] = Ho;
  y->dims[3] = Wo;
  y->d = calloc((size_t)(N * M * Ho * Wo), sizeof(float));
  const float *bias = n->n_in > 2 && n->in[2] >= 0 ? g->values[n->in[2]].data : NULL;
  int64_t P = Ho * Wo, K = Cg * kk, Mg = M / grp;
  float *col = malloc(sizeof(float) * (size_t)(P * K));
  float *out = malloc(sizeof(float) * (size_t)(P * M));
  for (int64_t b = 0; b < N; b++)
    for (int64_t gi = 0; gi < grp; gi++) {
      /* im2col: row = output position, column = channel*kk + tap */
      for (int64_t oy = 0; oy < Ho; oy++)
        for (int64_t ox = 0; ox < Wo; ox++)
          for (int64_t c = 0; c < Cg; c++)
            for (int64_t ky = 0; ky < kh; ky++)
              for (int64_t kx = 0; kx < kw; kx++) {
                int64_t iy = oy + ky - pt, ix = ox + kx - pl;
                float val = 0;
                if (iy >= 0 && iy < H && ix >= 0 && ix < W)
                  val = x->d[((b * C + gi * Cg + c) * H + iy) * W + ix];
                col[(oy * Wo + ox) * K + c * kk + ky * kw + kx] = val;
              }
      if (use_pivot && wv->pivot) {
        pv_pivot_gemm_ref(wv->pivot, col, K, out, M, P);
      } else {
        const float *Wt = (const float *)wv->data + gi * Mg * K;
        for (int64_t p = 0; p < P; p++)
          for (int64_t m = 0; m < Mg; m++) {
            double a = 0;
            for (int64_t k = 0; k < K; k++) a += (double)Wt[m * K + k] * col[p * K + k];
            out[p * M + m] = (float)a;
          }
      }
      for (int64_t m = 0; m < Mg; m++)
        for (int64_t p = 0; p < P; p++)
          y->d[(b * M + gi * Mg + m) * P + p] =
              out[p * M + m] + (bias ? bias[gi * Mg + m] : 0);
    }
  free(col);
  free(out);
}

static tv *run_graph(const pv_graph *g, const float *x, const int64_t *xd,
                     int xnd, bool use_pivot) {
  tv *v = calloc((size_t)g->n_values, sizeof *v);
  tv *in = &v[g->inputs[0]];
  in->nd = xnd;
  memcpy(in->dims, xd, sizeof(int64_t) * xnd);
  in->d = malloc(sizeof(float) * (size_t)tv_numel(in));
  memcpy(in->d, x, sizeof(float) * (size_t)tv_numel(in));
  for (int i = 0; i < g->n_nodes; i++) {
    const pv_node *n = &g->nodes[i];
    tv *a = &v[n->in[0]], *y = &v[n->out[0]];
    if (!strcmp(n->op, "Gemm") || !strcmp(n->op, "MatMul")) {
      run_fc(g, n, v, use_pivot);
    } else if (!strcmp(n->op, "Conv")) {
      run_conv(g, n, v, use_pivot);
    } else if (!strcmp(n->op, "MaxPool")) { /* 2x2 stride 2 */
      *y = *a;
      y->dims[2] /= 2;
      y->dims[3] /= 2;
      y->d = malloc(sizeof(float) * (size_t)tv_numel(y));
      for (int64_t c = 0; c < a->dims[0] * a->dims[1]; c++)
        for (int64_t oy = 0; oy < y->dims[2]; oy++)
          for (int64_t ox = 0; ox < y->dims[3]; ox++) {
            float m = -INFINITY;
            for (int k = 0; k < 4; k++) {
              float t = a->d[(c * a->dims[2] + 2 * oy + k / 2) * a->dims[3] +
                             2 * ox + k % 2];
              m = t > m ? t : m;
            }
            y->d[(c * y->dims[2] + oy) * y->dims[3] + ox] = m;
          }
    } else {
      /* element-wise with per-channel constants (axis 1 of 4-D, last of 2-D) */
      *y = *a;
      y->d = malloc(sizeof(float) * (size_t)tv_numel(y));
      memcpy(y->d, a->d, sizeof(float) * (size_t)tv_numel(y));
      int64_t nch = a->dims[1], inner = a->nd == 4 ? a->dims[2] * a->dims[3] : 1;
      for (int64_t i2 = 0; i2 < tv_numel(y); i2++) {
        int64_t c = (i2 / inner) % nch;
        if (!strcmp(n->op, "Add")) {
          y->d[i2] += ((const float *)g->values[n->in[1]].data)[c];
        } else if (!strcmp(n->op, "BatchNormalization")) {
          const float *sc = g->values[n->in[1]].data, *bb = g->values[n->in[2]].data,
                      *mu = g->values[n->in[3]].data, *var = g->values[n->in[4]].data;
          y->d[i2] = (y->d[i2] - mu[c]) / sqrtf(var[c] + 1e-5f) * sc[c] + bb[c];
        }
      }
      if (!strcmp(n->op, "Relu")) relu(y->d, tv_numel(y));
    }
    if (n->act == PV_ACT_RELU) relu(y->d, tv_numel(y));
  }
  return v;
}

static void free_vals(const pv_graph *g, tv *v) {
  for (int i = 0; i < g->n_values; i++) free(v[i].d);
  free(v);
}

static float *randv(int64_t n, uint64_t *s, float scale, float offset) {
  float *a = malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) a[i] = offset + scale * t_gauss(s);
  return a;
}

static int add_const_rand(pv_graph *g, const char *name, const int64_t *dims,
                          int nd, uint64_t *s, float scale, float offset) {
  int64_t n = 1;
  for (int i = 0; i < nd; i++) n *= dims[i];
  float *a = randv(n, s, scale, offset);
  int v = t_const(g, name, dims, nd, a);
  free(a);
  return v;
}

/* x[3,24] -> Gemm(transB=1) -> Relu -> Gemm(transB=0, fused Relu)
 *        -> MatMul -> Add(bias) -> y[3,16] */
static pv_graph *fc_chain(uint64_t *s, int *h_relu) {
  pv_graph *g = pv_graph_new();
  int x = t_act(g, "x");
  int w1 = add_const_rand(g, "w1", (int64_t[]){32, 24}, 2, s, 0.3f, 0);
  int b1 = add_const_rand(g, "b1", (int64_t[]){32}, 1, s, 0.1f, 0);
  int w2 = add_const_rand(g, "w2", (int64_t[]){32, 40}, 2, s, 0.3f, 0);
  int b2 = add_const_rand(g, "b2", (int64_t[]){40}, 1, s, 0.1f, 0);
  int w3 = add_const_rand(g, "w3", (int64_t[]){40, 16}, 2, s, 0.3f, 0);
  int b3 = add_const_rand(g, "b3", (int64_t[]){1, 16}, 2, s, 0.1f, 0);
  int h1 = t_act(g, "h1"), h2 = t_act(g, "h2"), h3 = t_act(g, "h3"),
      h4 = t_act(g, "h4"), y = t_act(g, "y");
  int n1 = t_node1(g, "fc1", "Gemm", (int[]){x, w1, b1}, 3, h1);
  t_int_attr(g, n1, "transB", 1);
  t_node1(g, "relu1", "Relu", (int[]){h1}, 1, h2);
  int n2 = t_node1(g, "fc2", "Gemm", (int[]){h2, w2, b2}, 3, h3);
  g->nodes[n2].act = PV_ACT_RELU;
  t_node1(g, "fc3", "MatMul", (int[]){h3, w3}, 2, h4);
  t_node1(g, "bias3", "Add", (int[]){h4, b3}, 2, y);
  t_io(g, x, y);
  *h_relu = h2;
  return g;
}

static void check_fold(pv_graph *g, const float *x, const int64_t *xd, int xnd,
                       int probe) {
  int out = g->outputs[0];
  for (int v = 0; v < g->n_values; v++) CU_ASSERT_PTR_NULL(g->values[v].chan_perm);
  tv *ref = run_graph(g, x, xd, xnd, false);
  tv *refp = run_graph(g, x, xd, xnd, true);
  size_t n = (size_t)tv_numel(&ref[out]);
  /* unfolded: the pivots alone compute the pruned dense model */
  CU_ASSERT(t_rel_l2(refp[out].d, ref[out].d, n) < 1e-5);
  CU_ASSERT_EQUAL_FATAL(pv_graph_fold_perms(g), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g->values[probe].chan_perm);
  CU_ASSERT_PTR_NULL(g->values[out].chan_perm);
  tv *fd = run_graph(g, x, xd, xnd, false);
  tv *fp = run_graph(g, x, xd, xnd, true);
  double e1 = t_rel_l2(fd[out].d, ref[out].d, n),
         e2 = t_rel_l2(fp[out].d, ref[out].d, n);
  CU_ASSERT(e1 < 1e-5);
  CU_ASSERT(e2 < 1e-5);
  /* the probed activation is stored in chan_perm order */
  const pv_value *pv = &g->values[probe];
  tv *a = &ref[probe], *b = &fp[probe];
  int64_t nch = a->dims[1], inner = a->nd == 4 ? a->dims[2] * a->dims[3] : 1;
  CU_ASSERT_EQUAL(pv->chan_perm_n, nch);
  int bad = 0;
  for (int64_t i = 0; i < tv_numel(a); i++) {
    int64_t c = (i / inner) % nch, rest = i - c * inner;
    float want = a->d[rest + (int64_t)pv->chan_perm[c] * inner];
    bad += fabsf(b->d[i] - want) > 1e-4f * (1 + fabsf(want));
  }
  CU_ASSERT_EQUAL(bad, 0);
  free_vals(g, ref);
  free_vals(g, refp);
  free_vals(g, fd);
  free_vals(g, fp);
}

static void test_fold_fc(void) {
  uint64_t s = 21;
  int probe;
  pv_graph *g = fc_chain(&s, &probe);
  pv_prune_spec spec = {.density = 0.25, .seed = 5};
  CU_ASSERT_EQUAL_FATAL(pv_graph_prune(g, &spec, NULL), 0);
  for (int v = 0; v < 3; v++)
    CU_ASSERT_PTR_NOT_NULL(g->values[pv_graph_find_value(g, (char[][3]){"w1", "w2", "w3"}[v])].pivot);
  float *x = randv(3 * 24, &s, 1, 0);
  check_fold(g, x, (int64_t[]){3, 24}, 2, probe);
  /* fc3's rows feed the graph output: its scatter stays */
  const pv_pivot *p3 = g->values[pv_graph_find_value(g, "w3")].pivot;
  bool ident = true;
  for (int i = 0; i < p3->M; i++) ident &= p3->perm_r[i] == i;
  CU_ASSERT(!ident);
  CU_ASSERT_PTR_NOT_NULL(g->values[pv_graph_find_value(g, "h3")].chan_perm);
  free(x);
  pv_graph_free(g);

  /* The last layer kept dense: fc2's rows still fold into its columns. */
  g = fc_chain(&s, &probe);
  const char *keep[] = {"fc3", NULL};
  spec.keep_dense = keep;
  CU_ASSERT_EQUAL_FATAL(pv_graph_prune(g, &spec, NULL), 0);
  int w3 = pv_graph_find_value(g, "w3");
  CU_ASSERT_PTR_NULL(g->values[w3].pivot);
  x = randv(3 * 24, &s, 1, 0);
  check_fold(g, x, (int64_t[]){3, 24}, 2, pv_graph_find_value(g, "h3"));
  free(x);
  pv_graph_free(g);
}

/* x[1,8,8,8] -> Conv3x3 -> BN -> Relu -> depthwise 3x3 -> MaxPool
 *   -> Conv1x1 -> Add(per-channel) -> Conv3x3 (fused Relu) -> y */
static pv_graph *conv_chain(uint64_t *sp, int *probe, int *probe2) {
  uint64_t s = *sp;
  pv_graph *g = pv_graph_new();
  int64_t pads[4] = {1, 1, 1, 1};
  int x = t_act(g, "x");
  int w1 = add_const_rand(g, "w1", (int64_t[]){32, 8, 3, 3}, 4, &s, 0.2f, 0);
  int b1 = add_const_rand(g, "b1", (int64_t[]){32}, 1, &s, 0.1f, 0);
  int sc = add_const_rand(g, "bn_s", (int64_t[]){32}, 1, &s, 0.2f, 1);
  int bb = add_const_rand(g, "bn_b", (int64_t[]){32}, 1, &s, 0.1f, 0);
  int mu = add_const_rand(g, "bn_m", (int64_t[]){32}, 1, &s, 0.1f, 0);
  int var = add_const_rand(g, "bn_v", (int64_t[]){32}, 1, &s, 0.1f, 1);
  int wd = add_const_rand(g, "wd", (int64_t[]){32, 1, 3, 3}, 4, &s, 0.3f, 0);
  int bd = add_const_rand(g, "bd", (int64_t[]){32}, 1, &s, 0.1f, 0);
  int w2 = add_const_rand(g, "w2", (int64_t[]){32, 32, 1, 1}, 4, &s, 0.2f, 0);
  int ka = add_const_rand(g, "ka", (int64_t[]){1, 32, 1, 1}, 4, &s, 0.1f, 0);
  int w3 = add_const_rand(g, "w3", (int64_t[]){16, 32, 3, 3}, 4, &s, 0.1f, 0);
  int a[8], y = t_act(g, "y");
  char nm[8];
  for (int i = 0; i < 7; i++) {
    snprintf(nm, sizeof nm, "a%d", i);
    a[i] = t_act(g, nm);
  }
  int n = t_node1(g, "conv1", "Conv", (int[]){x, w1, b1}, 3, a[0]);
  t_ints_attr(g, n, "pads", pads, 4);
  t_node1(g, "bn", "BatchNormalization", (int[]){a[0], sc, bb, mu, var}, 5, a[1]);
  t_node1(g, "relu", "Relu", (int[]){a[1]}, 1, a[2]);
  n = t_node1(g, "dw", "Conv", (int[]){a[2], wd, bd}, 3, a[3]);
  t_ints_attr(g, n, "pads", pads, 4);
  t_int_attr(g, n, "group", 32);
  n = t_node1(g, "pool", "MaxPool", (int[]){a[3]}, 1, a[4]);
  t_node1(g, "conv2", "Conv", (int[]){a[4], w2}, 2, a[5]);
  t_node1(g, "add", "Add", (int[]){a[5], ka}, 2, a[6]);
  n = t_node1(g, "conv3", "Conv", (int[]){a[6], w3}, 2, y);
  t_ints_attr(g, n, "pads", pads, 4);
  g->nodes[n].act = PV_ACT_RELU;
  t_io(g, x, y);
  const char *keep[] = {NULL};
  pv_prune_spec spec = {.density = 0.25, .seed = 9, .keep_dense = keep};
  CU_ASSERT_EQUAL_FATAL(pv_graph_prune(g, &spec, NULL), 0);
  CU_ASSERT_PTR_NOT_NULL(g->values[w1].pivot);
  CU_ASSERT_PTR_NULL(g->values[wd].pivot); /* depthwise stays dense */
  CU_ASSERT_PTR_NOT_NULL(g->values[w3].pivot);
  *probe = a[4];
  *probe2 = a[6];
  *sp = s;
  return g;
}

static void test_fold_conv(void) {
  uint64_t s = 22;
  int probe, probe2;
  pv_graph *g = conv_chain(&s, &probe, &probe2);
  float *xin = randv(8 * 8 * 8, &s, 1, 0);
  check_fold(g, xin, (int64_t[]){1, 8, 8, 8}, 4, probe);
  CU_ASSERT_PTR_NOT_NULL(g->values[probe2].chan_perm);
  free(xin);
  pv_graph_free(g);
}

/* A pruned model saved as .pvm (pivots only, mapped read-only) computes
 * the same outputs; folding the mapped graph copies what it permutes; and
 * densify gives dense weights back for backends without pivots. */
static void test_pvm_fold_densify(void) {
  uint64_t s = 25;
  int probe, probe2;
  pv_graph *g = conv_chain(&s, &probe, &probe2);
  float *xin = randv(8 * 8 * 8, &s, 1, 0);
  int64_t xd[4] = {1, 8, 8, 8};
  tv *ref = run_graph(g, xin, xd, 4, false);
  int out = g->outputs[0];
  size_t n = (size_t)tv_numel(&ref[out]);
  char path[] = "/tmp/pv-test-pivot-XXXXXX";
  int fd = mkstemp(path);
  CU_ASSERT_FATAL(fd >= 0);
  close(fd);
  CU_ASSERT_EQUAL_FATAL(pv_pvm_save(g, path), 0);
  pv_graph *h = pv_pvm_load(path);
  unlink(path);
  CU_ASSERT_PTR_NOT_NULL_FATAL(h);
  int w1 = pv_graph_find_value(h, "w1");
  CU_ASSERT_PTR_NULL(h->values[w1].data);
  CU_ASSERT_PTR_NOT_NULL(h->values[w1].pivot);
  tv *a = run_graph(h, xin, xd, 4, true);
  CU_ASSERT(t_rel_l2(a[out].d, ref[out].d, n) < 1e-5);
  free_vals(h, a);
  CU_ASSERT_EQUAL_FATAL(pv_graph_fold_perms(h), 0);
  CU_ASSERT_PTR_NOT_NULL(h->values[probe].chan_perm);
  a = run_graph(h, xin, xd, 4, true);
  CU_ASSERT(t_rel_l2(a[out].d, ref[out].d, n) < 1e-5);
  free_vals(h, a);
  CU_ASSERT_EQUAL_FATAL(pv_graph_densify(h), 0);
  CU_ASSERT_PTR_NOT_NULL(h->values[w1].data);
  a = run_graph(h, xin, xd, 4, false); /* dense path, folded order */
  CU_ASSERT(t_rel_l2(a[out].d, ref[out].d, n) < 1e-5);
  free_vals(h, a);
  free_vals(g, ref);
  pv_graph_free(h);
  pv_graph_free(g);
  free(xin);
}

/* A tensor read by two layers ends the chain: nothing is folded. */
static void test_fold_shared(void) {
  uint64_t s = 23;
  pv_graph *g = pv_graph_new();
  int x = t_act(g, "x");
  int w1 = add_const_rand(g, "w1", (int64_t[]){8, 16}, 2, &s, 0.3f, 0);
  int w2 = add_const_rand(g, "w2", (int64_t[]){16, 16}, 2, &s, 0.3f, 0);
  int w3 = add_const_rand(g, "w3", (int64_t[]){16, 16}, 2, &s, 0.3f, 0);
  int h = t_act(g, "h"), r = t_act(g, "r"), y1 = t_act(g, "y1"), y2 = t_act(g, "y2");
  t_node1(g, "fc1", "MatMul", (int[]){x, w1}, 2, h);
  t_node1(g, "relu", "Relu", (int[]){h}, 1, r);
  t_node1(g, "fc2", "MatMul", (int[]){r, w2}, 2, y1);
  t_node1(g, "fc3", "MatMul", (int[]){r, w3}, 2, y2);
  t_io(g, x, y1);
  g->n_outputs = 2;
  g->outputs = realloc(g->outputs, 2 * sizeof(int));
  g->outputs[1] = y2;
  pv_prune_spec spec = {.density = 0.5, .seed = 1};
  CU_ASSERT_EQUAL_FATAL(pv_graph_prune(g, &spec, NULL), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g->values[w1].pivot);
  int32_t before[16], M = g->values[w1].pivot->M; /* MatMul: W = B^T */
  CU_ASSERT_EQUAL_FATAL(M, 16);
  memcpy(before, g->values[w1].pivot->perm_r, sizeof(int32_t) * M);
  CU_ASSERT_EQUAL(pv_graph_fold_perms(g), 0);
  for (int v = 0; v < g->n_values; v++) CU_ASSERT_PTR_NULL(g->values[v].chan_perm);
  CU_ASSERT(memcmp(before, g->values[w1].pivot->perm_r, sizeof(int32_t) * M) == 0);
  pv_graph_free(g);
}

/* Gemm with transB=0 stores B = W^T; the pivot must describe W (out x in),
 * and keep-dense / per-layer densities / min-channels are honoured. */
static void test_graph_detect_prune(void) {
  uint64_t s = 24;
  int32_t rg[48], cg[32];
  float *w = t_structured(48, 32, 1, 4, 1, &s, rg, cg); /* W: 48 out x 32 in */
  float *bt = malloc(sizeof(float) * 48 * 32);
  for (int m = 0; m < 48; m++)
    for (int k = 0; k < 32; k++) bt[k * 48 + m] = w[m * 32 + k];
  pv_graph *g = pv_graph_new();
  int x = t_act(g, "x");
  int wb = t_const(g, "B", (int64_t[]){32, 48}, 2, bt);
  int wd = add_const_rand(g, "D", (int64_t[]){48, 48}, 2, &s, 1, 0);
  int we = add_const_rand(g, "E", (int64_t[]){48, 8}, 2, &s, 1, 0);
  int h = t_act(g, "h"), h2 = t_act(g, "h2"), y = t_act(g, "y");
  t_node1(g, "gemm", "Gemm", (int[]){x, wb}, 2, h);
  t_node1(g, "dense", "MatMul", (int[]){h, wd}, 2, h2);
  t_node1(g, "small", "MatMul", (int[]){h2, we}, 2, y);
  t_io(g, x, y);
  CU_ASSERT_EQUAL(pv_graph_detect_pivots(g, 0.75), 0);
  pv_pivot *p = g->values[wb].pivot;
  CU_ASSERT_PTR_NOT_NULL_FATAL(p);
  CU_ASSERT_PTR_NULL(g->values[wd].pivot);
  CU_ASSERT_EQUAL(p->M, 48);
  CU_ASSERT_EQUAL(p->C, 32);
  CU_ASSERT_PTR_NOT_NULL(g->values[wb].data); /* dense kept */
  float *d = malloc(sizeof(float) * 48 * 32);
  pv_pivot_to_dense(p, d);
  CU_ASSERT(memcmp(d, w, sizeof(float) * 48 * 32) == 0);
  pv_pivot_to_dense_t(p, d); /* the stored [K, N] layout */
  CU_ASSERT(memcmp(d, bt, sizeof(float) * 48 * 32) == 0);
  free(d);

  const char *keep[] = {"gemm", NULL}, *names[] = {"dense"};
  double dens[] = {0.5};
  pv_prune_spec spec = {.density = 0.125, .keep_dense = keep,
                        .layer_names = names, .layer_density = dens,
                        .n_layers = 1, .min_channels = 16, .seed = 3};
  char buf[4096] = {0};
  FILE *rep = fmemopen(buf, sizeof buf - 1, "w");
  CU_ASSERT_EQUAL(pv_graph_prune(g, &spec, rep), 0);
  fclose(rep);
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "retained energy"));
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "kept dense"));
  CU_ASSERT_PTR_NOT_NULL(strstr(buf, "few channels"));
  CU_ASSERT(g->values[wb].pivot == p); /* kept: not re-pruned */
  CU_ASSERT_PTR_NOT_NULL_FATAL(g->values[wd].pivot);
  CU_ASSERT_DOUBLE_EQUAL(pv_pivot_density(g->values[wd].pivot), 0.5, 1e-12);
  CU_ASSERT_PTR_NULL(g->values[we].pivot); /* 8 < min_channels */
  /* the dense copy holds the pruned weights, in B's orientation */
  d = malloc(sizeof(float) * 48 * 48);
  pv_pivot_to_dense(g->values[wd].pivot, d);
  const float *Dd = g->values[wd].data;
  int bad = 0;
  for (int m = 0; m < 48; m++)
    for (int k = 0; k < 48; k++) bad += d[m * 48 + k] != Dd[k * 48 + m];
  CU_ASSERT_EQUAL(bad, 0);
  free(d);
  /* a misspelt layer name is an error, not a silent no-op */
  const char *bad_names[] = {"nope"};
  spec.layer_names = bad_names;
  CU_ASSERT_EQUAL(pv_graph_prune(g, &spec, NULL), PV_ENOTFOUND);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "nope"));
  pv_graph_free(g);
  free(w);
  free(bt);
}

static CU_TestInfo tests[] = {
    {"detect block-diagonal", test_detect_blockdiag},
    {"detect conv channels", test_detect_conv},
    {"detect c-of-n", test_detect_c_of_n},
    {"detect uneven groups", test_detect_uneven},
    {"detect rejects", test_detect_none},
    {"gemm reference", test_gemm_ref},
    {"validate", test_validate},
    {"prune structured", test_prune_structured},
    {"prune c-of-n", test_prune_c_of_n},
    {"prune then detect c-of-n with uneven groups", test_prune_detect_uneven_c_of_n},
    {"prune gaussian", test_prune_gaussian},
    {"graph detect/prune", test_graph_detect_prune},
    {"fold fc chain", test_fold_fc},
    {"fold conv chain", test_fold_conv},
    {"fold stops at shared tensor", test_fold_shared},
    {"pvm, fold on a mapped graph, densify", test_pvm_fold_densify},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("pivot", tests)
