/* Pivoted matrices: construction, checks, dense conversion, reference
 * product, and exact structure detection (docs/PIVOT.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"

void pv_pivot_free(pv_pivot *p) {
  if (!p) return;
  free(p->perm_r);
  free(p->perm_c);
  free(p->row_off);
  free(p->col_off);
  free(p->blocks);
  if (p->data_owned) pv_free(p->data);
  free(p);
}

static int64_t block_floats(const pv_pivot *p, const pv_pivot_block *b) {
  int64_t r = p->row_off[b->rg + 1] - p->row_off[b->rg];
  int64_t c = p->col_off[b->cg + 1] - p->col_off[b->cg];
  return r * c * p->kk;
}

int64_t pv_pivot_nnz(const pv_pivot *p) {
  int64_t n = 0;
  for (int32_t i = 0; i < p->n_blocks; i++) n += block_floats(p, &p->blocks[i]);
  return n;
}

double pv_pivot_density(const pv_pivot *p) {
  double all = (double)p->M * p->C * p->kk;
  return all > 0 ? (double)pv_pivot_nnz(p) / all : 0;
}

void pv_pivot_to_dense(const pv_pivot *p, float *out) {
  int64_t K = (int64_t)p->C * p->kk;
  memset(out, 0, sizeof(float) * (size_t)(p->M * K));
  for (int32_t bi = 0; bi < p->n_blocks; bi++) {
    const pv_pivot_block *b = &p->blocks[bi];
    int32_t r0 = p->row_off[b->rg], r1 = p->row_off[b->rg + 1];
    int32_t c0 = p->col_off[b->cg], c1 = p->col_off[b->cg + 1];
    int64_t bw = (int64_t)(c1 - c0) * p->kk;
    const float *src = p->data + b->offset;
    for (int32_t i = r0; i < r1; i++) {
      float *row = out + (int64_t)p->perm_r[i] * K;
      const float *s = src + (int64_t)(i - r0) * bw;
      for (int32_t j = c0; j < c1; j++)
        memcpy(row + (int64_t)p->perm_c[j] * p->kk, s + (int64_t)(j - c0) * p->kk,
               sizeof(float) * p->kk);
    }
  }
}

void pv_pivot_to_dense_t(const pv_pivot *p, float *out) {
  int64_t K = (int64_t)p->C * p->kk;
  memset(out, 0, sizeof(float) * (size_t)(p->M * K));
  for (int32_t bi = 0; bi < p->n_blocks; bi++) {
    const pv_pivot_block *b = &p->blocks[bi];
    int32_t r0 = p->row_off[b->rg], r1 = p->row_off[b->rg + 1];
    int32_t c0 = p->col_off[b->cg], c1 = p->col_off[b->cg + 1];
    const float *src = p->data + b->offset;
    for (int32_t i = r0; i < r1; i++) {
      int64_t m = p->perm_r[i];
      for (int32_t j = c0; j < c1; j++)
        for (int32_t t = 0; t < p->kk; t++)
          out[((int64_t)p->perm_c[j] * p->kk + t) * p->M + m] = *src++;
    }
  }
}

static int check_perm(const int32_t *perm, int32_t n, const char *what) {
  if (!perm) return pv_error(PV_EFORMAT, "pivot: %s missing", what);
  char *seen = calloc((size_t)n, 1);
  if (!seen) return pv_error(PV_ENOMEM, "out of memory");
  int rc = 0;
  for (int32_t i = 0; i < n && !rc; i++) {
    if (perm[i] < 0 || perm[i] >= n)
      rc = pv_error(PV_EFORMAT, "pivot: %s[%d] = %d out of range [0,%d)", what,
                    i, perm[i], n);
    else if (seen[perm[i]]++)
      rc = pv_error(PV_EFORMAT, "pivot: %s repeats %d (not a permutation)",
                    what, perm[i]);
  }
  free(seen);
  return rc;
}

static int check_offsets(const int32_t *off, int32_t n, int32_t total,
                         const char *what) {
  if (!off) return pv_error(PV_EFORMAT, "pivot: %s missing", what);
  if (off[0] != 0 || off[n] != total)
    return pv_error(PV_EFORMAT, "pivot: %s must run from 0 to %d", what, total);
  for (int32_t i = 0; i < n; i++)
    if (off[i + 1] <= off[i])
      return pv_error(PV_EFORMAT, "pivot: %s not increasing at %d", what, i);
  return 0;
}

int pv_pivot_validate(const pv_pivot *p) {
  if (!p) return pv_error(PV_EINVAL, "pivot: NULL");
  if (p->M <= 0 || p->C <= 0 || p->kk <= 0)
    return pv_error(PV_EFORMAT, "pivot: bad size M=%d C=%d kk=%d", p->M, p->C,
                    p->kk);
  if ((int64_t)p->M * p->C > INT64_MAX / p->kk ||
      (int64_t)p->M * p->C * p->kk > (int64_t)(SIZE_MAX / sizeof(float)))
    return pv_error(PV_EFORMAT, "pivot: M*C*kk overflows");
  if (p->nr <= 0 || p->nr > p->M || p->nc <= 0 || p->nc > p->C)
    return pv_error(PV_EFORMAT, "pivot: bad group counts nr=%d nc=%d", p->nr,
                    p->nc);
  int rc = check_perm(p->perm_r, p->M, "perm_r");
  if (!rc) rc = check_perm(p->perm_c, p->C, "perm_c");
  if (!rc) rc = check_offsets(p->row_off, p->nr, p->M, "row_off");
  if (!rc) rc = check_offsets(p->col_off, p->nc, p->C, "col_off");
  if (rc) return rc;
  if (p->n_blocks < 0 || (int64_t)p->n_blocks > (int64_t)p->nr * p->nc)
    return pv_error(PV_EFORMAT, "pivot: %d blocks on a %dx%d grid", p->n_blocks,
                    p->nr, p->nc);
  if (p->n_blocks && !p->blocks)
    return pv_error(PV_EFORMAT, "pivot: block list missing");
  if (p->n_blocks && !p->data)
    return pv_error(PV_EFORMAT, "pivot: block data missing");
  for (int32_t i = 0; i < p->n_blocks; i++) {
    const pv_pivot_block *b = &p->blocks[i];
    if (b->rg < 0 || b->rg >= p->nr || b->cg < 0 || b->cg >= p->nc)
      return pv_error(PV_EFORMAT, "pivot: block %d at (%d,%d) outside grid", i,
                      b->rg, b->cg);
    /* Strictly sorted means no block appears twice, so none overlap. */
    if (i && (b->rg < b[-1].rg || (b->rg == b[-1].rg && b->cg <= b[-1].cg)))
      return pv_error(PV_EFORMAT, "pivot: blocks not sorted/unique at %d", i);
    uint64_t n = (uint64_t)block_floats(p, b);
    if (b->offset > p->data_len || n > p->data_len - b->offset)
      return pv_error(PV_EFORMAT, "pivot: block %d data [%llu,+%llu) past %llu",
                      i, (unsigned long long)b->offset, (unsigned long long)n,
                      (unsigned long long)p->data_len);
  }
  return 0;
}

pv_pivot *pv_pivot_from_dense(const float *w, int32_t M, int32_t C, int32_t kk,
                              const int32_t *perm_r, const int32_t *perm_c,
                              int32_t nr, const int32_t *row_off, int32_t nc,
                              const int32_t *col_off, int32_t n_blocks,
                              const int32_t *blk_rg, const int32_t *blk_cg) {
  if (M <= 0 || C <= 0 || kk <= 0 || nr <= 0 || nc <= 0 || n_blocks < 0 ||
      nr > M || nc > C) {
    pv_error(PV_EINVAL, "pivot: bad sizes M=%d C=%d kk=%d nr=%d nc=%d", M, C,
             kk, nr, nc);
    return NULL;
  }
  pv_pivot *p = calloc(1, sizeof *p);
  if (!p) goto oom;
  p->M = M;
  p->C = C;
  p->kk = kk;
  p->nr = nr;
  p->nc = nc;
  p->n_blocks = n_blocks;
  p->perm_r = malloc(sizeof(int32_t) * M);
  p->perm_c = malloc(sizeof(int32_t) * C);
  p->row_off = malloc(sizeof(int32_t) * (nr + 1));
  p->col_off = malloc(sizeof(int32_t) * (nc + 1));
  p->blocks = calloc(n_blocks ? n_blocks : 1, sizeof *p->blocks);
  if (!p->perm_r || !p->perm_c || !p->row_off || !p->col_off || !p->blocks)
    goto oom;
  memcpy(p->perm_r, perm_r, sizeof(int32_t) * M);
  memcpy(p->perm_c, perm_c, sizeof(int32_t) * C);
  memcpy(p->row_off, row_off, sizeof(int32_t) * (nr + 1));
  memcpy(p->col_off, col_off, sizeof(int32_t) * (nc + 1));
  uint64_t off = 0;
  for (int32_t i = 0; i < n_blocks; i++) {
    p->blocks[i].rg = blk_rg[i];
    p->blocks[i].cg = blk_cg[i];
    if (blk_rg[i] < 0 || blk_rg[i] >= nr || blk_cg[i] < 0 || blk_cg[i] >= nc) {
      pv_error(PV_EINVAL, "pivot: block (%d,%d) outside %dx%d grid", blk_rg[i],
               blk_cg[i], nr, nc);
      goto fail;
    }
    p->blocks[i].offset = off;
    /* Check the offsets before sizing from them. */
    if (row_off[blk_rg[i] + 1] < row_off[blk_rg[i]] ||
        col_off[blk_cg[i] + 1] < col_off[blk_cg[i]]) {
      pv_error(PV_EINVAL, "pivot: group offsets decrease");
      goto fail;
    }
    off += (uint64_t)block_floats(p, &p->blocks[i]);
  }
  p->data_len = off;
  p->data_owned = true;
  p->data = pv_aligned_alloc(sizeof(float) * (off ? off : 1));
  if (!p->data) goto oom;
  if (pv_pivot_validate(p)) goto fail;
  int64_t K = (int64_t)C * kk;
  for (int32_t bi = 0; bi < n_blocks; bi++) {
    const pv_pivot_block *b = &p->blocks[bi];
    int32_t r0 = row_off[b->rg], r1 = row_off[b->rg + 1];
    int32_t c0 = col_off[b->cg], c1 = col_off[b->cg + 1];
    float *dst = p->data + b->offset;
    for (int32_t i = r0; i < r1; i++)
      for (int32_t j = c0; j < c1; j++, dst += kk)
        memcpy(dst, w + (int64_t)perm_r[i] * K + (int64_t)perm_c[j] * kk,
               sizeof(float) * kk);
  }
  return p;
oom:
  pv_error(PV_ENOMEM, "out of memory building a pivot");
fail:
  pv_pivot_free(p);
  return NULL;
}

pv_pivot *pv_pivot_clone(const pv_pivot *s) {
  pv_pivot *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  *p = *s;
  p->perm_r = malloc(sizeof(int32_t) * s->M);
  p->perm_c = malloc(sizeof(int32_t) * s->C);
  p->row_off = malloc(sizeof(int32_t) * (s->nr + 1));
  p->col_off = malloc(sizeof(int32_t) * (s->nc + 1));
  p->blocks = malloc(sizeof *p->blocks * (s->n_blocks ? s->n_blocks : 1));
  p->data = pv_aligned_alloc(sizeof(float) * (s->data_len ? s->data_len : 1));
  p->data_owned = true;
  if (!p->perm_r || !p->perm_c || !p->row_off || !p->col_off || !p->blocks ||
      !p->data) {
    pv_pivot_free(p);
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  memcpy(p->perm_r, s->perm_r, sizeof(int32_t) * s->M);
  memcpy(p->perm_c, s->perm_c, sizeof(int32_t) * s->C);
  memcpy(p->row_off, s->row_off, sizeof(int32_t) * (s->nr + 1));
  memcpy(p->col_off, s->col_off, sizeof(int32_t) * (s->nc + 1));
  memcpy(p->blocks, s->blocks, sizeof *p->blocks * s->n_blocks);
  memcpy(p->data, s->data, sizeof(float) * s->data_len);
  return p;
}

void pv_pivot_gemm_ref(const pv_pivot *p, const float *x, int64_t ldx,
                       float *y, int64_t ldy, int64_t batch) {
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * ldx;
    float *yb = y + b * ldy;
    for (int32_t m = 0; m < p->M; m++) yb[m] = 0;
    for (int32_t bi = 0; bi < p->n_blocks; bi++) {
      const pv_pivot_block *bl = &p->blocks[bi];
      int32_t r0 = p->row_off[bl->rg], r1 = p->row_off[bl->rg + 1];
      int32_t c0 = p->col_off[bl->cg], c1 = p->col_off[bl->cg + 1];
      const float *a = p->data + bl->offset;
      for (int32_t i = r0; i < r1; i++) {
        double acc = 0;
        for (int32_t j = c0; j < c1; j++) {
          const float *xc = xb + (int64_t)p->perm_c[j] * p->kk;
          for (int32_t t = 0; t < p->kk; t++) acc += (double)*a++ * xc[t];
        }
        yb[p->perm_r[i]] += (float)acc;
      }
    }
  }
}

/* ------------------------------------------------------------- detect */

static int32_t uf_find(int32_t *par, int32_t i) {
  while (par[i] != i) {
    par[i] = par[par[i]]; /* path halving keeps the trees flat */
    i = par[i];
  }
  return i;
}

typedef struct comp {
  int32_t nrows, nch, bin;
} comp;

static int cmp_comp_desc(const void *a, const void *b) {
  const comp *x = *(const comp *const *)a, *y = *(const comp *const *)b;
  int64_t sx = (int64_t)x->nrows * x->nch, sy = (int64_t)y->nrows * y->nch;
  if (sx != sy) return sx < sy ? 1 : -1;
  if (x->nrows != y->nrows) return x->nrows < y->nrows ? 1 : -1;
  return x->nch < y->nch ? 1 : (x->nch > y->nch ? -1 : 0);
}

/* Target size of group b when n groups share total items: sizes differ by
 * at most one, larger ones first. */
static int32_t group_size(int32_t total, int32_t n, int32_t b) {
  return total / n + (b < total % n);
}

/* Lay out items (rows or channels) group by group: members of group g
 * (by their component's bin, or free items filling up to the target). */
static int layout(int32_t total, int32_t n, const int32_t *item_bin,
                  int32_t *perm, int32_t *off) {
  int32_t k = 0;
  int32_t *fill = calloc((size_t)n, sizeof(int32_t));
  int32_t *tmp = malloc(sizeof(int32_t) * (size_t)total);
  if (!fill || !tmp) {
    free(fill);
    free(tmp);
    return pv_error(PV_ENOMEM, "out of memory");
  }
  /* item_bin[i] == -1 marks a free (all-zero) item. */
  for (int32_t g = 0; g < n; g++) {
    off[g] = k;
    for (int32_t i = 0; i < total; i++)
      if (item_bin[i] == g) perm[k++] = i, fill[g]++;
  }
  off[n] = total;
  /* Free items go where the group is short of its target. */
  int32_t w = 0, fi = 0;
  for (int32_t g = 0; g < n; g++) {
    int32_t start = w;
    for (int32_t i = off[g]; i < off[g] + fill[g]; i++) tmp[w++] = perm[i];
    while (w - start < group_size(total, n, g)) {
      while (item_bin[fi] != -1) fi++;
      tmp[w++] = fi++;
    }
    off[g] = start;
  }
  off[n] = total;
  memcpy(perm, tmp, sizeof(int32_t) * (size_t)total);
  free(tmp);
  free(fill);
  return 0;
}

/* Block-diagonal: pack the components into n bins of equal size. */
static pv_pivot *detect_blockdiag(const float *w, int32_t M, int32_t C,
                                  int32_t kk, double max_density,
                                  const int32_t *row_comp,
                                  const int32_t *ch_comp, comp *comps,
                                  int32_t ncomp) {
  pv_pivot *res = NULL;
  comp **order = malloc(sizeof(comp *) * (size_t)(ncomp ? ncomp : 1));
  int32_t *used_r = NULL, *used_c = NULL, *rbin = NULL, *cbin = NULL;
  int32_t *perm_r = NULL, *perm_c = NULL, *roff = NULL, *coff = NULL,
          *diag = NULL;
  if (!order) return NULL;
  int32_t maxr = 1, maxc = 1;
  for (int32_t i = 0; i < ncomp; i++) {
    order[i] = &comps[i];
    if (comps[i].nrows > maxr) maxr = comps[i].nrows;
    if (comps[i].nch > maxc) maxc = comps[i].nch;
  }
  qsort(order, (size_t)ncomp, sizeof *order, cmp_comp_desc);
  /* A bin must hold the largest component, which bounds n from above;
   * more groups than components only adds empty blocks. */
  int32_t nmax = ncomp;
  if (M / maxr < nmax) nmax = M / maxr;
  if (C / maxc < nmax) nmax = C / maxc;
  if (nmax > 1024) nmax = 1024;
  used_r = malloc(sizeof(int32_t) * (size_t)(nmax + 1));
  used_c = malloc(sizeof(int32_t) * (size_t)(nmax + 1));
  if (!used_r || !used_c) goto done;
  int tries = 0;
  int32_t n;
  for (n = nmax; n >= 2 && tries < 64; n--, tries++) {
    /* Density of n equal groups; a smaller n is only denser. */
    double dens = 0;
    for (int32_t b = 0; b < n; b++)
      dens += (double)group_size(M, n, b) * group_size(C, n, b);
    dens /= (double)M * C;
    if (dens > max_density) {
      n = 1;
      break;
    }
    memset(used_r, 0, sizeof(int32_t) * (size_t)n);
    memset(used_c, 0, sizeof(int32_t) * (size_t)n);
    bool ok = true;
    for (int32_t i = 0; i < ncomp && ok; i++) {
      comp *c = order[i];
      c->bin = -1;
      for (int32_t b = 0; b < n; b++)
        if (used_r[b] + c->nrows <= group_size(M, n, b) &&
            used_c[b] + c->nch <= group_size(C, n, b)) {
          c->bin = b;
          used_r[b] += c->nrows;
          used_c[b] += c->nch;
          break;
        }
      ok = c->bin >= 0;
    }
    if (ok) break;
  }
  if (n < 2 || tries >= 64) goto done;
  rbin = malloc(sizeof(int32_t) * (size_t)M);
  cbin = malloc(sizeof(int32_t) * (size_t)C);
  perm_r = malloc(sizeof(int32_t) * (size_t)M);
  perm_c = malloc(sizeof(int32_t) * (size_t)C);
  roff = malloc(sizeof(int32_t) * (size_t)(n + 1));
  coff = malloc(sizeof(int32_t) * (size_t)(n + 1));
  diag = malloc(sizeof(int32_t) * (size_t)n);
  if (!rbin || !cbin || !perm_r || !perm_c || !roff || !coff || !diag)
    goto done;
  for (int32_t m = 0; m < M; m++)
    rbin[m] = row_comp[m] < 0 ? -1 : comps[row_comp[m]].bin;
  for (int32_t c = 0; c < C; c++)
    cbin[c] = ch_comp[c] < 0 ? -1 : comps[ch_comp[c]].bin;
  if (layout(M, n, rbin, perm_r, roff) || layout(C, n, cbin, perm_c, coff))
    goto done;
  for (int32_t b = 0; b < n; b++) diag[b] = b;
  res = pv_pivot_from_dense(w, M, C, kk, perm_r, perm_c, n, roff, n, coff, n,
                            diag, diag);
done:
  free(order);
  free(used_r);
  free(used_c);
  free(rbin);
  free(cbin);
  free(perm_r);
  free(perm_c);
  free(roff);
  free(coff);
  free(diag);
  return res;
}

/* c-of-n grids finer than this are scattered nonzeros, not blocks (an
 * unstructured sparse matrix can give every row its own support). */
#define PV_DETECT_MAX_CLASSES 64

/* FNV-1a over an index sequence. */
static uint64_t fnv_add(uint64_t h, uint32_t v) {
  for (int i = 0; i < 4; i++) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 1099511628211ull;
  }
  return h;
}

/* Classes of items with equal support hash; returns class count, fills
 * cls[i] (-1 for empty support) and per-class sizes. */
static int32_t hash_classes(const uint64_t *h, const bool *nz, int32_t n,
                            int32_t *cls, int32_t *size) {
  int32_t ncls = 0;
  uint64_t *keys = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
  if (!keys) return -1;
  for (int32_t i = 0; i < n; i++) {
    cls[i] = -1;
    if (!nz[i]) continue;
    int32_t k;
    for (k = 0; k < ncls && keys[k] != h[i]; k++) {
    }
    if (k == ncls) {
      if (ncls >= PV_DETECT_MAX_CLASSES) { /* too fine to be a useful grid */
        free(keys);
        return -1;
      }
      keys[ncls] = h[i];
      size[ncls++] = 0;
    }
    cls[i] = k;
    size[k]++;
  }
  free(keys);
  return ncls;
}

/* Classes whose sizes differ by at most one, as balanced groups of a
 * count that n does not divide (pv_pivot_prune's, pivot-train's): with no
 * free item, sizes total/n and total/n + 1, total % n of the larger.
 * Relabels the classes larger first, the order layout() fills groups in.
 * false when the sizes are not so. */
static bool balanced_order(int32_t total, int32_t n, int32_t *cls, int32_t items,
                           int32_t *size) {
  int32_t base = total / n, big = 0, sum = 0;
  for (int32_t i = 0; i < n; i++) {
    if (size[i] != base && size[i] != base + 1) return false;
    big += size[i] == base + 1;
    sum += size[i];
  }
  if (sum != total || big != total % n) return false;
  int32_t *map = malloc(sizeof(int32_t) * (size_t)n);
  if (!map) return false;
  int32_t k = 0;
  for (int pass = 1; pass >= 0; pass--)
    for (int32_t i = 0; i < n; i++)
      if ((size[i] == base + 1) == pass) map[i] = k++;
  for (int32_t i = 0; i < items; i++)
    if (cls[i] >= 0) cls[i] = map[cls[i]];
  for (int32_t i = 0; i < n; i++) size[i] = i < big ? base + 1 : base;
  free(map);
  return true;
}

/* c-of-n: rows with the same channel support form a row group, channels
 * with the same row support a column group; balanced when all groups of
 * a kind are the same size (zero rows or channels may pad them) or differ
 * by one, and every row group touches the same number of column groups. */
static pv_pivot *detect_c_of_n(const float *w, int32_t M, int32_t C,
                               int32_t kk, double max_density,
                               const bool *row_nz, const bool *ch_nz) {
  pv_pivot *res = NULL;
  int64_t K = (int64_t)C * kk;
  uint64_t *rh = malloc(sizeof(uint64_t) * (size_t)M);
  uint64_t *ch = malloc(sizeof(uint64_t) * (size_t)C);
  int32_t *rcls = malloc(sizeof(int32_t) * (size_t)M);
  int32_t *ccls = malloc(sizeof(int32_t) * (size_t)C);
  int32_t *rsize = malloc(sizeof(int32_t) * PV_DETECT_MAX_CLASSES);
  int32_t *csize = malloc(sizeof(int32_t) * PV_DETECT_MAX_CLASSES);
  char *conn = NULL;
  int32_t *perm_r = NULL, *perm_c = NULL, *roff = NULL, *coff = NULL,
          *brg = NULL, *bcg = NULL;
  if (!rh || !ch || !rcls || !ccls || !rsize || !csize) goto done;
  for (int32_t c = 0; c < C; c++) ch[c] = 1469598103934665603ull;
  for (int32_t m = 0; m < M; m++) {
    rh[m] = 1469598103934665603ull;
    for (int32_t c = 0; c < C; c++) {
      const float *e = w + m * K + (int64_t)c * kk;
      bool nz = false;
      for (int32_t t = 0; t < kk && !nz; t++) nz = e[t] != 0;
      if (!nz) continue;
      rh[m] = fnv_add(rh[m], (uint32_t)c);
      ch[c] = fnv_add(ch[c], (uint32_t)m);
    }
  }
  int32_t nr = hash_classes(rh, row_nz, M, rcls, rsize);
  int32_t nc = hash_classes(ch, ch_nz, C, ccls, csize);
  if (nr < 1 || nc < 1 || (nr < 2 && nc < 2)) goto done;
  /* Zero rows/channels pad the groups up to a common size, if they can. */
  int32_t tr = 0, tc = 0, freer = 0, freec = 0;
  for (int32_t i = 0; i < nr; i++) tr = rsize[i] > tr ? rsize[i] : tr;
  for (int32_t i = 0; i < nc; i++) tc = csize[i] > tc ? csize[i] : tc;
  for (int32_t m = 0; m < M; m++) freer += !row_nz[m];
  for (int32_t c = 0; c < C; c++) freec += !ch_nz[c];
  if ((int64_t)tr * nr != M && !balanced_order(M, nr, rcls, M, rsize)) goto done;
  if ((int64_t)tc * nc != C && !balanced_order(C, nc, ccls, C, csize)) goto done;
  (void)freer;
  (void)freec;
  conn = calloc((size_t)nr * nc, 1);
  if (!conn) goto done;
  for (int32_t m = 0; m < M; m++) {
    if (rcls[m] < 0) continue;
    for (int32_t c = 0; c < C; c++) {
      if (ccls[c] < 0) continue;
      const float *e = w + m * K + (int64_t)c * kk;
      for (int32_t t = 0; t < kk; t++)
        if (e[t] != 0) {
          conn[(size_t)rcls[m] * nc + ccls[c]] = 1;
          break;
        }
    }
  }
  int32_t per = -1, nb = 0;
  for (int32_t r = 0; r < nr; r++) {
    int32_t k = 0;
    for (int32_t c = 0; c < nc; c++) k += conn[(size_t)r * nc + c];
    if (per >= 0 && k != per) goto done;
    per = k;
    nb += k;
  }
  if ((double)per / nc > max_density) goto done;
  perm_r = malloc(sizeof(int32_t) * (size_t)M);
  perm_c = malloc(sizeof(int32_t) * (size_t)C);
  roff = malloc(sizeof(int32_t) * (size_t)(nr + 1));
  coff = malloc(sizeof(int32_t) * (size_t)(nc + 1));
  brg = malloc(sizeof(int32_t) * (size_t)nb);
  bcg = malloc(sizeof(int32_t) * (size_t)nb);
  if (!perm_r || !perm_c || !roff || !coff || !brg || !bcg) goto done;
  if (layout(M, nr, rcls, perm_r, roff) || layout(C, nc, ccls, perm_c, coff))
    goto done;
  nb = 0;
  for (int32_t r = 0; r < nr; r++)
    for (int32_t c = 0; c < nc; c++)
      if (conn[(size_t)r * nc + c]) brg[nb] = r, bcg[nb++] = c;
  res = pv_pivot_from_dense(w, M, C, kk, perm_r, perm_c, nr, roff, nc, coff,
                            nb, brg, bcg);
done:
  free(rh);
  free(ch);
  free(rcls);
  free(ccls);
  free(rsize);
  free(csize);
  free(conn);
  free(perm_r);
  free(perm_c);
  free(roff);
  free(coff);
  free(brg);
  free(bcg);
  return res;
}

pv_pivot *pv_pivot_detect(const float *w, int32_t M, int32_t C, int32_t kk,
                          double max_density) {
  if (!w || M <= 0 || C <= 0 || kk <= 0 ||
      (int64_t)M * C > INT32_MAX / kk) {
    pv_error(PV_EINVAL, "pivot detect: bad size %dx%dx%d", M, C, kk);
    return NULL;
  }
  pv_pivot *res = NULL;
  int64_t K = (int64_t)C * kk;
  int32_t *par = malloc(sizeof(int32_t) * ((size_t)M + C));
  bool *row_nz = calloc((size_t)M, sizeof(bool));
  bool *ch_nz = calloc((size_t)C, sizeof(bool));
  int32_t *row_comp = malloc(sizeof(int32_t) * (size_t)M);
  int32_t *ch_comp = malloc(sizeof(int32_t) * (size_t)C);
  int32_t *root_comp = malloc(sizeof(int32_t) * ((size_t)M + C));
  comp *comps = NULL;
  if (!par || !row_nz || !ch_nz || !row_comp || !ch_comp || !root_comp) {
    pv_error(PV_ENOMEM, "out of memory");
    goto done;
  }
  for (int32_t i = 0; i < M + C; i++) par[i] = i;
  for (int32_t m = 0; m < M; m++)
    for (int32_t c = 0; c < C; c++) {
      const float *e = w + m * K + (int64_t)c * kk;
      bool nz = false;
      for (int32_t t = 0; t < kk && !nz; t++) nz = e[t] != 0;
      if (!nz) continue;
      row_nz[m] = ch_nz[c] = true;
      int32_t a = uf_find(par, m), b = uf_find(par, M + c);
      if (a != b) par[a] = b;
    }
  int32_t ncomp = 0;
  for (int32_t i = 0; i < M + C; i++) root_comp[i] = -1;
  comps = calloc((size_t)M + 1, sizeof *comps);
  if (!comps) goto done;
  for (int32_t m = 0; m < M; m++) {
    row_comp[m] = -1;
    if (!row_nz[m]) continue;
    int32_t r = uf_find(par, m);
    if (root_comp[r] < 0) root_comp[r] = ncomp++;
    row_comp[m] = root_comp[r];
    comps[row_comp[m]].nrows++;
  }
  for (int32_t c = 0; c < C; c++) {
    ch_comp[c] = -1;
    if (!ch_nz[c]) continue;
    ch_comp[c] = root_comp[uf_find(par, M + c)];
    comps[ch_comp[c]].nch++;
  }
  if (ncomp >= 2)
    res = detect_blockdiag(w, M, C, kk, max_density, row_comp, ch_comp, comps,
                           ncomp);
  if (!res && ncomp >= 1)
    res = detect_c_of_n(w, M, C, kk, max_density, row_nz, ch_nz);
  if (!res) pv_error(PV_OK, "no usable block structure");
done:
  free(par);
  free(row_nz);
  free(ch_nz);
  free(row_comp);
  free(ch_comp);
  free(root_comp);
  free(comps);
  return res;
}
