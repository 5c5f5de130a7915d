/* Weight packing, once at prepare time: every segment becomes 16-row
 * panels stored k-major ([k][16]), the layout all micro-kernels read with
 * one aligned vector load per k. Pivoted matrices become one segment per
 * row group, with the column gather (perm_c) and row scatter (perm_r)
 * kept as index lists that the GEMM driver fuses into its loads and
 * stores. */
#include <stdlib.h>
#include <string.h>

#include "cpu-impl.h"

static int64_t panels_of(int64_t rows) {
  return (rows + PV_CPU_MR - 1) / PV_CPU_MR;
}

void pv_cpu_mat_free(pv_cpu_mat *m) {
  if (!m) return;
  free(m->pseg);
  free(m->in_perm);
  free(m->out_inv);
  pv_free(m->a_mem);
  free(m->row_mem);
  free(m->col_mem);
  free(m->seg);
  free(m);
}

/* Allocate the struct, the segment array and the panel storage for
 * segments whose rows/k are already filled in; sets seg.a. */
static int mat_alloc_panels(pv_cpu_mat *m) {
  uint64_t total = 0;
  for (int s = 0; s < m->n_seg; s++) {
    uint64_t rows = (uint64_t)panels_of(m->seg[s].rows) * PV_CPU_MR;
    uint64_t k = (uint64_t)m->seg[s].k;
    if (k && rows > (UINT64_MAX / 8) / k)
      return pv_error(PV_ERANGE, "cpu: packed weights too large");
    total += rows * k;
    if (total > SIZE_MAX / sizeof(float) / 2)
      return pv_error(PV_ERANGE, "cpu: packed weights too large");
    if (m->seg[s].k > m->max_k) m->max_k = m->seg[s].k;
  }
  m->a_mem = pv_aligned_alloc((size_t)total * sizeof(float));
  if (!m->a_mem)
    return pv_error(PV_ENOMEM, "cpu: cannot allocate %llu packed weights",
                    (unsigned long long)total);
  uint64_t off = 0;
  for (int s = 0; s < m->n_seg; s++) {
    m->seg[s].a = m->a_mem + off;
    off += (uint64_t)panels_of(m->seg[s].rows) * PV_CPU_MR * m->seg[s].k;
  }
  return 0;
}

pv_cpu_mat *pv_cpu_mat_dense(const float *w, int32_t M, int64_t K,
                             int64_t ld_m, int64_t ld_k, int groups,
                             float scale) {
  if (M <= 0 || K < 0 || groups <= 0 || M % groups) {
    pv_error(PV_EINVAL, "cpu: bad dense matrix %d x %lld in %d groups", M,
             (long long)K, groups);
    return NULL;
  }
  pv_cpu_mat *m = calloc(1, sizeof *m);
  if (!m) goto nomem;
  m->seg = calloc((size_t)groups, sizeof *m->seg);
  if (!m->seg) goto free_mat;
  m->M = M;
  m->K = K * groups;
  m->n_seg = groups;
  int32_t mg = M / groups;
  for (int s = 0; s < groups; s++) {
    m->seg[s].rows = mg;
    m->seg[s].k = K;
    m->seg[s].row_base = s * mg;
    m->seg[s].col_base = (int64_t)s * K;
  }
  if (mat_alloc_panels(m)) {
    pv_cpu_mat_free(m);
    return NULL;
  }
  m->nnz = (int64_t)M * K;
  for (int s = 0; s < groups; s++) {
    pv_cpu_seg *sg = &m->seg[s];
    for (int64_t r = 0; r < sg->rows; r++) {
      const float *wr = w + (sg->row_base + r) * ld_m;
      float *dst = sg->a + (r / PV_CPU_MR) * PV_CPU_MR * K + r % PV_CPU_MR;
      for (int64_t p = 0; p < K; p++) dst[p * PV_CPU_MR] = wr[p * ld_k] * scale;
    }
  }
  return m;

free_mat:
  free(m);
nomem:
  pv_error(PV_ENOMEM, "cpu: out of memory packing weights");
  return NULL;
}

/* Enough checking that packing cannot read or write out of bounds. */
static int pivot_check(const pv_pivot *p) {
  if (p->M <= 0 || p->C <= 0 || p->kk <= 0 || p->nr <= 0 || p->nc <= 0 ||
      p->n_blocks < 0 || !p->perm_r || !p->perm_c || !p->row_off ||
      !p->col_off || (p->n_blocks && (!p->blocks || !p->data)))
    return pv_error(PV_EFORMAT, "pivot: missing or non-positive fields");
  if (p->row_off[0] != 0 || p->row_off[p->nr] != p->M)
    return pv_error(PV_EFORMAT, "pivot: row_off must run from 0 to M=%d",
                    p->M);
  if (p->col_off[0] != 0 || p->col_off[p->nc] != p->C)
    return pv_error(PV_EFORMAT, "pivot: col_off must run from 0 to C=%d",
                    p->C);
  for (int i = 0; i < p->nr; i++)
    if (p->row_off[i + 1] < p->row_off[i])
      return pv_error(PV_EFORMAT, "pivot: row_off[%d] decreases", i + 1);
  for (int i = 0; i < p->nc; i++)
    if (p->col_off[i + 1] < p->col_off[i])
      return pv_error(PV_EFORMAT, "pivot: col_off[%d] decreases", i + 1);
  for (int i = 0; i < p->M; i++)
    if (p->perm_r[i] < 0 || p->perm_r[i] >= p->M)
      return pv_error(PV_EFORMAT, "pivot: perm_r[%d] out of range", i);
  for (int i = 0; i < p->C; i++)
    if (p->perm_c[i] < 0 || p->perm_c[i] >= p->C)
      return pv_error(PV_EFORMAT, "pivot: perm_c[%d] out of range", i);
  for (int b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *bl = &p->blocks[b];
    if (bl->rg < 0 || bl->rg >= p->nr || bl->cg < 0 || bl->cg >= p->nc)
      return pv_error(PV_EFORMAT, "pivot: block %d has group out of range", b);
    uint64_t sz = (uint64_t)(p->row_off[bl->rg + 1] - p->row_off[bl->rg]) *
                  (uint64_t)(p->col_off[bl->cg + 1] - p->col_off[bl->cg]) *
                  (uint64_t)p->kk;
    if (bl->offset > p->data_len || sz > p->data_len - bl->offset)
      return pv_error(PV_EFORMAT, "pivot: block %d data out of range", b);
  }
  return 0;
}

pv_cpu_mat *pv_cpu_mat_pivot(const pv_pivot *p, float scale) {
  if (pivot_check(p)) return NULL;
  pv_cpu_mat *m = calloc(1, sizeof *m);
  if (!m) goto nomem;
  m->seg = calloc((size_t)p->nr, sizeof *m->seg);
  m->row_mem = malloc((size_t)p->M * sizeof *m->row_mem);
  if (!m->seg || !m->row_mem) goto free_mat;
  memcpy(m->row_mem, p->perm_r, (size_t)p->M * sizeof *m->row_mem);
  m->M = p->M;
  m->K = (int64_t)p->C * p->kk;
  m->n_seg = p->nr;
  uint64_t total_k = 0;
  for (int b = 0; b < p->n_blocks; b++) {
    const pv_pivot_block *bl = &p->blocks[b];
    int64_t kb = (int64_t)(p->col_off[bl->cg + 1] - p->col_off[bl->cg]) * p->kk;
    m->seg[bl->rg].k += kb;
    total_k += (uint64_t)kb;
    m->nnz += kb * (p->row_off[bl->rg + 1] - p->row_off[bl->rg]);
  }
  if (total_k > SIZE_MAX / sizeof(int64_t) / 2) goto free_mat;
  m->col_mem = malloc((size_t)(total_k ? total_k : 1) * sizeof *m->col_mem);
  if (!m->col_mem) goto free_mat;
  int64_t coff = 0;
  for (int rg = 0; rg < p->nr; rg++) {
    pv_cpu_seg *sg = &m->seg[rg];
    sg->rows = p->row_off[rg + 1] - p->row_off[rg];
    sg->row_idx = m->row_mem + p->row_off[rg];
    sg->col_idx = m->col_mem + coff;
    coff += sg->k;
  }
  if (mat_alloc_panels(m)) {
    pv_cpu_mat_free(m);
    return NULL;
  }
  /* Blocks of one row group sit side by side in k, in cyclic column
   * group order from the group that follows a gap: 2-of-n blocks in a
   * ring (g reads g and g + 1) then read one run of permuted columns,
   * the last group too (n - 1, then 0, after the permuted input's end). */
  int64_t *kpos = calloc((size_t)p->nr, sizeof *kpos);
  int *order = malloc(sizeof(int) * (size_t)(p->n_blocks ? p->n_blocks : 1));
  int *first = malloc(sizeof(int) * (size_t)p->nr);
  if (!kpos || !order || !first) {
    free(kpos);
    free(order);
    free(first);
    goto free_mat;
  }
  /* Each row group's blocks (in any order in the pivot), sorted by
   * column group, then rotated to start after the ring's gap: at a block
   * whose cyclic predecessor group is not among them. */
  for (int w = 0, rg = 0; rg < p->nr; rg++) {
    int *run = order + w, cnt = 0, start = 0;
    for (int b = 0; b < p->n_blocks; b++)
      if (p->blocks[b].rg == rg) {
        int j = cnt++;
        for (; j > 0 && p->blocks[run[j - 1]].cg > p->blocks[b].cg; j--) run[j] = run[j - 1];
        run[j] = b;
      }
    for (int j = 0; j < cnt; j++) {
      int prev = (p->blocks[run[j]].cg + p->nc - 1) % p->nc;
      bool has = false;
      for (int i = 0; i < cnt && !has; i++) has = p->blocks[run[i]].cg == prev;
      if (!has) {
        start = j;
        break;
      }
    }
    for (int r = 0; r < start; r++) { /* rotate left by one, start times */
      int t = run[0];
      memmove(run, run + 1, sizeof *run * (size_t)(cnt - 1));
      run[cnt - 1] = t;
    }
    first[rg] = cnt ? run[0] : -1;
    w += cnt;
  }
  for (int ob = 0; ob < p->n_blocks; ob++) {
    const pv_pivot_block *bl = &p->blocks[order[ob]];
    pv_cpu_seg *sg = &m->seg[bl->rg];
    int32_t c0 = p->col_off[bl->cg], c1 = p->col_off[bl->cg + 1];
    int64_t kb = (int64_t)(c1 - c0) * p->kk, k0 = kpos[bl->rg];
    int64_t *ci = (int64_t *)sg->col_idx + k0;
    for (int32_t c = c0; c < c1; c++)
      for (int t = 0; t < p->kk; t++)
        *ci++ = (int64_t)p->perm_c[c] * p->kk + t;
    const float *src = p->data + bl->offset;
    for (int64_t r = 0; r < sg->rows; r++) {
      float *dst = sg->a + (r / PV_CPU_MR) * PV_CPU_MR * sg->k +
                   k0 * PV_CPU_MR + r % PV_CPU_MR;
      for (int64_t q = 0; q < kb; q++)
        dst[q * PV_CPU_MR] = src[r * kb + q] * scale;
    }
    kpos[bl->rg] += kb;
  }
  free(kpos);
  free(order);
  /* Permuted space: segment rg reads permuted columns from its first
   * block's column group on, if they are one contiguous run there. */
  if (m->K > INT32_MAX / 2) { /* too wide for 32-bit gather indices */
    free(first);
    return m;
  }
  /* The permuted input's width: K, plus the wrap of a ring's last group. */
  m->kp = m->K;
  for (int rg = 0; rg < p->nr; rg++)
    if (first[rg] >= 0) {
      int64_t end = (int64_t)p->col_off[p->blocks[first[rg]].cg] * p->kk + m->seg[rg].k;
      if (end > m->kp) m->kp = end;
    }
  m->in_perm = malloc((size_t)m->kp * sizeof *m->in_perm);
  m->out_inv = malloc((size_t)p->M * sizeof *m->out_inv);
  m->pseg = calloc((size_t)p->nr, sizeof *m->pseg);
  if (!m->in_perm || !m->out_inv || !m->pseg) {
    free(first);
    goto free_mat;
  }
  for (int32_t c = 0; c < p->C; c++)
    for (int t = 0; t < p->kk; t++)
      m->in_perm[(int64_t)c * p->kk + t] = p->perm_c[c] * p->kk + t;
  for (int64_t q = m->K; q < m->kp; q++) m->in_perm[q] = m->in_perm[q - m->K];
  for (int32_t i = 0; i < p->M; i++) m->out_inv[p->perm_r[i]] = i;
  bool contiguous = true;
  for (int rg = 0; rg < p->nr && contiguous; rg++) {
    const pv_cpu_seg *sg = &m->seg[rg];
    pv_cpu_seg *ps = &m->pseg[rg];
    *ps = *sg;
    ps->row_idx = NULL;
    ps->row_base = p->row_off[rg];
    ps->col_idx = NULL;
    ps->col_base = first[rg] >= 0 ? (int64_t)p->col_off[p->blocks[first[rg]].cg] * p->kk : 0;
    if (ps->col_base + sg->k > m->kp) contiguous = false;
    for (int64_t q = 0; q < sg->k && contiguous; q++)
      contiguous = sg->col_idx[q] == m->in_perm[ps->col_base + q];
  }
  free(first);
  m->in_ident = m->kp == m->K;
  m->out_ident = true;
  for (int64_t q = 0; q < m->K; q++) m->in_ident &= m->in_perm[q] == q;
  for (int32_t i = 0; i < p->M; i++) m->out_ident &= m->out_inv[i] == i;
  if (!contiguous) {
    free(m->pseg);
    free(m->in_perm);
    free(m->out_inv);
    m->pseg = NULL;
    m->in_perm = NULL;
    m->out_inv = NULL;
  }
  /* Inside a folded chain the permutations leave each row group reading
   * and writing contiguous ranges: then the driver uses plain strided
   * loads and vector stores instead of the gather and scatter. */
  for (int rg = 0; rg < p->nr; rg++) {
    pv_cpu_seg *sg = &m->seg[rg];
    bool rows_contig = sg->rows > 0, cols_contig = sg->k > 0;
    for (int32_t i = 1; i < sg->rows && rows_contig; i++)
      rows_contig = sg->row_idx[i] == sg->row_idx[0] + i;
    for (int64_t q = 1; q < sg->k && cols_contig; q++)
      cols_contig = sg->col_idx[q] == sg->col_idx[0] + q;
    if (rows_contig) {
      sg->row_base = sg->row_idx[0];
      sg->row_idx = NULL;
    }
    if (cols_contig) {
      sg->col_base = sg->col_idx[0];
      sg->col_idx = NULL;
    }
  }
  /* Nothing left to gather or scatter: permuted space would only add two
   * copies. */
  bool any_idx = false;
  for (int rg = 0; rg < p->nr; rg++)
    any_idx |= m->seg[rg].row_idx || m->seg[rg].col_idx;
  if (!any_idx) {
    free(m->pseg);
    free(m->in_perm);
    free(m->out_inv);
    m->pseg = NULL;
    m->in_perm = NULL;
    m->out_inv = NULL;
  }
  return m;

free_mat:
  pv_cpu_mat_free(m);
nomem:
  pv_error(PV_ENOMEM, "cpu: out of memory packing pivoted weights");
  return NULL;
}
