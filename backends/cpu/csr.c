/* Unstructured sparse (CSR) GEMM: the baseline `pivot bench` compares
 * pivoted blocks against, i.e. what magnitude pruning without structure
 * gets. A reasonable kernel, not a straw man: rows split across threads,
 * and for batch > 1 each nonzero is applied to a vector of 16 batch
 * columns held in registers, the input pre-transposed so those loads are
 * contiguous. */
#include <stdlib.h>

#include "cpu-impl.h"

void pv_cpu_csr_free(pv_cpu_csr *c) {
  if (!c) return;
  free(c->row_ptr);
  free(c->col);
  free(c->val);
  free(c);
}

pv_cpu_csr *pv_cpu_csr_from_dense(const float *w, int32_t M, int32_t K) {
  int64_t nnz = 0;
  for (int64_t i = 0; i < (int64_t)M * K; i++) nnz += w[i] != 0;
  pv_cpu_csr *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->M = M;
  c->K = K;
  c->row_ptr = malloc(((size_t)M + 1) * sizeof *c->row_ptr);
  c->col = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->col);
  c->val = malloc((size_t)(nnz ? nnz : 1) * sizeof *c->val);
  if (!c->row_ptr || !c->col || !c->val) {
    pv_cpu_csr_free(c);
    return NULL;
  }
  int64_t q = 0;
  for (int32_t m = 0; m < M; m++) {
    c->row_ptr[m] = q;
    for (int32_t k = 0; k < K; k++)
      if (w[(int64_t)m * K + k] != 0) {
        c->col[q] = k;
        c->val[q++] = w[(int64_t)m * K + k];
      }
  }
  c->row_ptr[M] = q;
  return c;
}

typedef struct csr_job {
  const pv_cpu_csr *c;
  const float *x, *xt; /* x [n][K]; xt [K][n] (batch > 1) */
  float *y;
  int64_t n, rows_per_item;
} csr_job;

#define CSR_NB 16

PV_CPU_CLONES static void csr_item(void *arg, int64_t item, int tid) {
  (void)tid;
  const csr_job *j = arg;
  const pv_cpu_csr *c = j->c;
  int64_t m0 = item * j->rows_per_item, m1 = m0 + j->rows_per_item;
  if (m1 > c->M) m1 = c->M;
  if (j->n == 1) {
    for (int64_t m = m0; m < m1; m++) {
      float s = 0;
      for (int64_t q = c->row_ptr[m]; q < c->row_ptr[m + 1]; q++)
        s += c->val[q] * j->x[c->col[q]];
      j->y[m] = s;
    }
    return;
  }
  for (int64_t b0 = 0; b0 < j->n; b0 += CSR_NB) {
    int64_t nb = j->n - b0 < CSR_NB ? j->n - b0 : CSR_NB;
    for (int64_t m = m0; m < m1; m++) {
      float acc[CSR_NB] = {0};
      for (int64_t q = c->row_ptr[m]; q < c->row_ptr[m + 1]; q++) {
        const float *xr = j->xt + (int64_t)c->col[q] * j->n + b0;
        float v = c->val[q];
        if (nb == CSR_NB)
          for (int b = 0; b < CSR_NB; b++) acc[b] += v * xr[b];
        else
          for (int b = 0; b < nb; b++) acc[b] += v * xr[b];
      }
      for (int b = 0; b < nb; b++) j->y[(b0 + b) * c->M + m] = acc[b];
    }
  }
}

void pv_cpu_csr_gemm(pv_cpu_pool *pool, const pv_cpu_csr *c, const float *x,
                     float *y, int64_t n) {
  csr_job j = {c, x, NULL, y, n, 64};
  float *xt = NULL;
  if (n > 1) {
    /* The transpose is part of the kernel's cost and is timed with it. */
    xt = pv_aligned_alloc((size_t)n * c->K * sizeof(float));
    if (!xt) return;
    for (int64_t b = 0; b < n; b++)
      for (int64_t k = 0; k < c->K; k++) xt[k * n + b] = x[b * c->K + k];
    j.xt = xt;
  }
  pv_cpu_pool_run(pool, (c->M + j.rows_per_item - 1) / j.rows_per_item,
                  csr_item, &j);
  pv_free(xt);
}
