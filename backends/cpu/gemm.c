/* The GEMM driver: C = A B over all segments of a packed matrix in one
 * parallel pass. A work item is (segment, range of row panels, chunk of
 * columns); it packs its B chunk into per-thread scratch (the input
 * gather of a pivoted matrix and the im2col of a convolution happen
 * here, fused into that copy), runs the micro-kernel on every panel and
 * stores through the row index list (the output scatter), adding bias and
 * the fused activation on the way. */
#include <stdatomic.h>
#include <stdlib.h>

#include "conv-nv.h"
#include "cpu-impl.h"

/* B chunk budget: the packed chunk and two weight panels stay in L2. */
#define B_CHUNK_FLOATS (128 * 1024)

typedef struct gemm_job {
  pv_cpu_pool *pool;
  const pv_cpu_isa *isa;
  const pv_cpu_mat *a;
  const pv_cpu_seg *segs; /* a->seg or a->pseg */
  const pv_cpu_bsrc *b;
  const pv_cpu_out *out;
  int64_t n, nc, n_chunks;
  int msplit;
  int64_t *start; /* [n_seg+1] first item of each segment */
  /* K-blocked mode: the im2col matrix, built once per call and shared
   * by the threads; segment s's rows ([chunk][k][nc]) start at
   * bpk + boff[s]. */
  float *bpk;
  int64_t *boff;
  /* K-blocked over B read in place (planes, ld_n = 1): bpk NULL */
  bool kplanes;
  /* In-place mode (xp set, the ISA's ukr_cols): a convolution reads its
   * input, zero-padded once per call where it has pads, at tap offsets
   * offs + offb[s] ([k] per segment) from each pixel's window corner;
   * planes of hp x wp floats. */
  const float *xp;
  int64_t hp, wp;
  int32_t *offs;
  int64_t *offb;
  atomic_int failed;
} gemm_job;

/* K-blocking: a pair of row panels over KB_KC steps (32 KB) stays in L1
 * while every column panel of the chunk passes it, and the chunk's B block
 * (KB_KC x KB_NC, 256 KB) stays in L2 while the row panels pass. So each
 * weight is read from memory once per call, not once per column chunk. */
#define KB_KC 256
#define KB_NC 256
#define KB_UNITS 8 /* row units per item: bounds the accumulator tiles */
#define KB_MIN_K 2048 /* taps from which K-blocking pays (measured) */
#define KB_MAX_FLOATS ((int64_t)16 << 20) /* packed B limit (64 MB) */
#define KB_PLANES_MIN_K 384 /* taps from which planes read in place block */
/* ... in blocks of this many: a 16-row panel's block (8 KB) and the column
 * panel's strided lines (128 of them) share L1. 512->1024 at 13x13 as
 * Winograd (AVX2): 13.9 ms at 128 against 15.5 unblocked, 15.2 at 192,
 * 13.8 at 96. */
#define KB_PLANES_KC 128

static int64_t seg_units(const pv_cpu_seg *s, int np) {
  int64_t panels = (s->rows + PV_CPU_MR - 1) / PV_CPU_MR;
  return (panels + np - 1) / np;
}

/* Row unit u of segment s: its first row *r0, panels *np (<= np_max),
 * rows *nrows, and the packed weights it starts at. */
static const float *unit_rows(const pv_cpu_isa *isa, const pv_cpu_seg *s,
                              int64_t u, int64_t *r0, int *np, int *nrows) {
  *r0 = u * isa->np_max * PV_CPU_MR;
  *np = (int)((s->rows - *r0 + PV_CPU_MR - 1) / PV_CPU_MR);
  if (*np > isa->np_max) *np = isa->np_max;
  *nrows = s->rows - *r0 < *np * PV_CPU_MR ? (int)(s->rows - *r0) : *np * PV_CPU_MR;
  return s->a + (*r0 / PV_CPU_MR) * PV_CPU_MR * s->k;
}

/* One row of the im2col matrix: dst[i] = B(p, n0 + i) for i < cn, the
 * input under tap p (channel, ky, kx) of output pixel n0 + i, one output
 * row segment at a time: zeros where the window leaves the input, a plain
 * copy in between. */
static void im2col_row(const pv_cpu_seg *s, const pv_cpu_bsrc *b, int64_t p,
                       int64_t n0, int64_t cn, float *restrict dst) {
  const int64_t kk = b->kh * b->kw, OW = b->OW;
  int64_t c = s->col_idx ? s->col_idx[p] : s->col_base + p;
  int64_t ch = c / kk, t = c % kk;
  int64_t dy = (t / b->kw) * b->dh - b->ph, dx = (t % b->kw) * b->dw - b->pw;
  const float *xc = b->x + ch * b->H * b->W;
  /* Output columns [lo, hi) of a row read inside the input row. */
  int64_t lo = dx >= 0 ? 0 : (-dx + b->sw - 1) / b->sw;
  int64_t hi = b->W - 1 - dx < 0 ? 0 : (b->W - 1 - dx) / b->sw + 1;
  if (hi > OW) hi = OW;
  if (lo > hi) lo = hi;
  int64_t oy = n0 / OW, ox = n0 % OW;
  for (int64_t i = 0; i < cn; oy++, ox = 0) {
    int64_t seg = OW - ox < cn - i ? OW - ox : cn - i;
    int64_t iy = oy * b->sh + dy;
    float *l = dst + i - ox; /* indexed by output column */
    if ((uint64_t)iy >= (uint64_t)b->H) {
      for (int64_t o = ox; o < ox + seg; o++) l[o] = 0.0f;
    } else {
      const float *xr = xc + iy * b->W;
      int64_t e0 = ox > lo ? ox : lo, e1 = ox + seg < hi ? ox + seg : hi;
      if (e1 < e0) e0 = e1 = e0 < ox + seg ? e0 : ox + seg; /* none inside */
      for (int64_t o = ox; o < e0; o++) l[o] = 0.0f;
      if (b->sw == 1) {
        for (int64_t o = e0; o < e1; o++) l[o] = xr[o + dx];
      } else {
        for (int64_t o = e0; o < e1; o++) l[o] = xr[o * b->sw + dx];
      }
      for (int64_t o = e1; o < ox + seg; o++) l[o] = 0.0f;
    }
    i += seg;
  }
}

void pv_cpu_im2col_row(const pv_cpu_seg *s, const pv_cpu_bsrc *b, int64_t p,
                       int64_t n0, int64_t cn, float *restrict dst) {
  im2col_row(s, b, p, n0, cn, dst);
}

/* Convolution columns packed into nr-wide panels (im2col fused into the
 * packing): each im2col row is built as one line, then cut into the
 * panels. Both loops are plain copies, where building each panel
 * separately needs per-element bounds checks for every panel that wraps
 * to the next output row (half of them on a 13-pixel-wide layer). */
#define PACK_LINE 480 /* a multiple of every nr (4, 6, 8) */

static void pack_b_conv(const pv_cpu_seg *s, const pv_cpu_bsrc *b, int nr,
                        int64_t n0, int64_t ncols, float *dst) {
  const int64_t k = s->k;
  float line[PACK_LINE];
  for (int64_t c0 = 0; c0 < ncols; c0 += PACK_LINE) {
    const int64_t cn = ncols - c0 < PACK_LINE ? ncols - c0 : PACK_LINE;
    const int64_t npan = (cn + nr - 1) / nr;
    float *dbase = dst + (c0 / nr) * k * nr;
    for (int64_t p = 0; p < k; p++) {
      im2col_row(s, b, p, n0 + c0, cn, line);
      for (int64_t i = cn; i < npan * nr; i++) line[i] = 0.0f;
      float *d = dbase + p * nr;
      if (nr == 8) { /* a fixed count the compiler turns into one move */
        for (int64_t q = 0; q < npan; q++)
          for (int jj = 0; jj < 8; jj++) d[q * k * 8 + jj] = line[q * 8 + jj];
      } else {
        for (int64_t q = 0; q < npan; q++)
          for (int jj = 0; jj < nr; jj++) d[q * k * nr + jj] = line[q * nr + jj];
      }
    }
  }
}

static void pack_b(const gemm_job *j, const pv_cpu_seg *s, int64_t n0,
                   int64_t ncols, float *dst) {
  const pv_cpu_bsrc *b = j->b;
  const int nr = j->isa->nr;
  const int64_t k = s->k;
  if (b->conv) {
    pack_b_conv(s, b, nr, n0, ncols, dst);
    return;
  }
  for (int64_t j0 = 0; j0 < ncols; j0 += nr) {
    int w = ncols - j0 < nr ? (int)(ncols - j0) : nr;
    float *d = dst + (j0 / nr) * k * nr;
    const float *x = b->x + (n0 + j0) * b->ld_n;
    if (w == nr && s->col_idx && j->isa->gather && b->ld_k == 1 &&
        b->ld_n <= INT32_MAX / nr) {
      j->isa->gather(x, b->ld_n, s->col_idx, k, d);
      continue;
    }
    for (int64_t p = 0; p < k; p++) {
      int64_t c = s->col_idx ? s->col_idx[p] : s->col_base + p;
      const float *xc = x + c * b->ld_k;
      int jj = 0;
      for (; jj < w; jj++) d[p * nr + jj] = xc[jj * b->ld_n];
      for (; jj < nr; jj++) d[p * nr + jj] = 0;
    }
  }
}

static void store_tile(const pv_cpu_isa *isa, const pv_cpu_seg *s,
                       const pv_cpu_out *o, int64_t r0, int nrows, int64_t n0,
                       int ncols, const float *tile) {
  if (!s->row_idx && o->ld_m == 1 && isa->store) {
    int64_t m0 = s->row_base + r0;
    isa->store(o->y + m0 + n0 * o->ld_n, o->ld_n, tile,
               o->bias ? o->bias + m0 : NULL, nrows, ncols, o->act, o->alpha,
               o->beta);
    return;
  }
  if (!s->row_idx && o->ld_m == 1) {
    /* Contiguous rows: the compiler vectorises this loop. */
    int64_t m0 = s->row_base + r0;
    const float *bb = o->bias ? o->bias + m0 : NULL;
    for (int j = 0; j < ncols; j++) {
      float *y = o->y + m0 + (n0 + j) * o->ld_n;
      const float *t = tile + j * PV_CPU_TILE_M;
      if (o->act == PV_ACT_NONE) {
        for (int i = 0; i < nrows; i++) y[i] = t[i] + (bb ? bb[i] : 0.0f);
      } else if (o->act == PV_ACT_RELU) {
        for (int i = 0; i < nrows; i++) {
          float v = t[i] + (bb ? bb[i] : 0.0f);
          y[i] = v > 0 ? v : 0;
        }
      } else {
        for (int i = 0; i < nrows; i++)
          y[i] = pv_cpu_act1(t[i] + (bb ? bb[i] : 0.0f), o->act, o->alpha,
                             o->beta);
      }
    }
    return;
  }
  /* Scattered rows (a pivoted layer's output permutation): resolve row
   * and bias once per tile, then one pass per column. */
  int64_t mi[PV_CPU_TILE_M];
  float bi[PV_CPU_TILE_M];
  for (int i = 0; i < nrows; i++) {
    int64_t m = s->row_idx ? s->row_idx[r0 + i] : s->row_base + r0 + i;
    mi[i] = m * o->ld_m;
    bi[i] = o->bias ? o->bias[m] : 0.0f;
  }
  if (isa->store_rows && o->ld_n == 1) { /* a convolution's output planes */
    isa->store_rows(o->y + n0, mi, tile, bi, nrows, ncols, o->act, o->alpha,
                    o->beta);
    return;
  }
  if (isa->scatter && o->ld_m == 1) { /* rows < M <= INT32_MAX */
    int32_t m32[PV_CPU_TILE_M];
    for (int i = 0; i < nrows; i++) m32[i] = (int32_t)mi[i];
    isa->scatter(o->y + n0 * o->ld_n, o->ld_n, m32, tile, bi, nrows, ncols,
                 o->act, o->alpha, o->beta);
    return;
  }
  for (int j = 0; j < ncols; j++) {
    float *y = o->y + (n0 + j) * o->ld_n;
    const float *t = tile + j * PV_CPU_TILE_M;
    if (o->act == PV_ACT_NONE) {
      for (int i = 0; i < nrows; i++) y[mi[i]] = t[i] + bi[i];
    } else {
      for (int i = 0; i < nrows; i++)
        y[mi[i]] = pv_cpu_act1(t[i] + bi[i], o->act, o->alpha, o->beta);
    }
  }
}

/* Implicit GEMM for a convolution with few taps (stride 1 along rows):
 * a column panel of nr output pixels in one row whose windows lie inside
 * the input reads, for tap p, nr contiguous floats at base + off[p]. The
 * fused-gather micro-kernel takes them straight from the input, so these
 * panels skip the im2col copy, which for a layer with few output channels
 * costs as much as its arithmetic. Panels on the border are packed. The
 * taps of one panel (k x 32 bytes) stay in L1 while the row panels pass,
 * hence the bound on k. */
#define CONV_IDX_MAX_K 320

static bool conv_implicit(const gemm_job *j, const pv_cpu_seg *s, int64_t u0,
                          int64_t u1, int64_t n0, int64_t ncols, float *bp,
                          float *tile) {
  const pv_cpu_isa *isa = j->isa;
  const pv_cpu_bsrc *b = j->b;
  const int nr = isa->nr;
  const int64_t panel_len = PV_CPU_MR * s->k;
  int32_t off[CONV_IDX_MAX_K];
  for (int64_t p = 0; p < s->k; p++) {
    int64_t o = pv_cpu_tap_offset(b, s->col_idx ? s->col_idx[p] : s->col_base + p,
                                  b->H * b->W, b->W);
    if (o > INT32_MAX) return false; /* offsets are 32-bit in the kernel */
    off[p] = (int32_t)o;
  }
  const int64_t npan = (ncols + nr - 1) / nr;
  int64_t oy = n0 / b->OW, ox = n0 % b->OW;
  for (int64_t q = 0; q < npan; q++) {
    int w = ncols - q * nr < nr ? (int)(ncols - q * nr) : nr;
    int64_t iy = oy * b->sh - b->ph, ix = ox - b->pw;
    bool inside = ox + w <= b->OW && iy >= 0 &&
                  iy + (b->kh - 1) * b->dh < b->H && ix >= 0 &&
                  ix + w - 1 + (b->kw - 1) * b->dw < b->W;
    const float *base = NULL;
    if (inside) {
      base = b->x + iy * b->W + ix;
    } else {
      pack_b_conv(s, b, nr, n0 + q * nr, w, bp);
    }
    for (int64_t u = u0; u < u1; u++) {
      int64_t r0;
      int np, nrows;
      const float *ap = unit_rows(isa, s, u, &r0, &np, &nrows);
      if (inside)
        isa->ukr_idx(ap, panel_len, np, base, off, 1, s->k, w, tile);
      else
        isa->ukr(ap, panel_len, np, bp, nr, 1, s->k, w, tile);
      store_tile(isa, s, j->out, r0, nrows, n0 + q * nr, w, tile);
    }
    ox += nr;
    while (ox >= b->OW) {
      ox -= b->OW;
      oy++;
    }
  }
  return true;
}

/* One item in K-blocked mode: the accumulator tiles of all (row unit,
 * column panel) pairs of the item live in scratch across the k blocks;
 * the last block stores them with bias and activation. The micro-kernel
 * reads B straight from the im2col rows, or from the planes themselves. */
static void kblock_item(gemm_job *j, int si, int64_t u0, int64_t u1,
                        int64_t n0, int64_t ncols, int tid) {
  const pv_cpu_isa *isa = j->isa;
  const pv_cpu_seg *s = &j->segs[si];
  const int nr = isa->nr, tl = PV_CPU_TILE_M * nr;
  const int64_t npan = (ncols + nr - 1) / nr, k = s->k, ld = j->nc;
  const int64_t panel_len = PV_CPU_MR * k;
  size_t ntiles = (size_t)((u1 - u0) * npan + 1);
  float *acc = pv_cpu_pool_scratch(j->pool, tid, ntiles * tl * sizeof(float));
  if (!acc) {
    atomic_store(&j->failed, 1);
    return;
  }
  float *tmp = acc + (ntiles - 1) * tl;
  /* B: the shared im2col, or read in place: planes (ld_n = 1) or a
   * Gemm's rows (ld_k = 1) */
  const float *bseg = j->bpk ? j->bpk + j->boff[si] + n0 / j->nc * k * ld
                             : j->b->x + s->col_base * j->b->ld_k + n0 * j->b->ld_n;
  const int64_t ldk = j->bpk ? ld : j->b->ld_k, ldn = j->bpk ? 1 : j->b->ld_n;
  const int64_t kc = j->bpk || ldk == 1 ? KB_KC : KB_PLANES_KC;
  for (int64_t pc = 0; pc < k; pc += kc) {
    int64_t kb = k - pc < kc ? k - pc : kc;
    bool first = pc == 0, last = pc + kb == k;
    for (int64_t u = u0; u < u1; u++) {
      int64_t r0;
      int np, nrows;
      const float *ap = unit_rows(isa, s, u, &r0, &np, &nrows) + pc * PV_CPU_MR;
      for (int64_t q = 0; q < npan; q++) {
        int w = ncols - q * nr < nr ? (int)(ncols - q * nr) : nr;
        float *t = acc + ((u - u0) * npan + q) * tl;
        isa->ukr(ap, panel_len, np, bseg + pc * ldk + q * nr * ldn, ldk, ldn, kb, w,
                 first ? t : tmp);
        if (!first)
          for (int jj = 0; jj < w; jj++) {
            float *restrict td = t + jj * PV_CPU_TILE_M;
            const float *restrict ts = tmp + jj * PV_CPU_TILE_M;
            for (int i = 0; i < np * PV_CPU_MR; i++) td[i] += ts[i];
          }
        if (last) store_tile(isa, s, j->out, r0, nrows, n0 + q * nr, w, t);
      }
    }
  }
}

/* Packing item of the K-blocked mode: KB_PACK_ROWS im2col rows of a
 * segment over all columns. The matrix is stored per column chunk
 * ([chunk][k][nc]), so the block one item reads is contiguous: rows of
 * the whole matrix would put each row of a wide layer on its own page. */
#define KB_PACK_ROWS 32
static void kblock_pack(void *arg, int64_t item, int tid) {
  (void)tid;
  gemm_job *j = arg;
  int64_t per = (j->a->max_k + KB_PACK_ROWS - 1) / KB_PACK_ROWS;
  int si = (int)(item / per);
  const pv_cpu_seg *s = &j->segs[si];
  int64_t p0 = item % per * KB_PACK_ROWS;
  int64_t p1 = p0 + KB_PACK_ROWS < s->k ? p0 + KB_PACK_ROWS : s->k;
  float *base = j->bpk + j->boff[si];
  for (int64_t c = 0; c < j->n_chunks; c++) {
    int64_t n0 = c * j->nc, cn = j->n - n0 < j->nc ? j->n - n0 : j->nc;
    for (int64_t p = p0; p < p1; p++)
      im2col_row(s, j->b, p, n0, cn, base + (c * s->k + p) * j->nc);
  }
}

/* One item in in-place mode: no B panel at all; each column panel's
 * window corners, then the micro-kernel over the padded input. */
static void cols_item(gemm_job *j, const pv_cpu_seg *s, int si, int64_t u0,
                      int64_t u1, int64_t n0, int64_t ncols, int tid) {
  const pv_cpu_isa *isa = j->isa;
  const pv_cpu_bsrc *b = j->b;
  /* A row group of <= 8 rows: half-panel tiles, wider. */
  const bool half = s->rows <= 8 && isa->ukr_cols8;
  const int nr = half ? isa->nr8 : isa->nr;
  const int64_t npan = (ncols + nr - 1) / nr;
  float *tile = pv_cpu_pool_scratch(
      j->pool, tid, PV_CPU_TILE_M * 16 * sizeof(float) +
                        (size_t)(npan * nr) * sizeof(int32_t));
  if (!tile) {
    atomic_store(&j->failed, 1);
    return;
  }
  int32_t *coff = (int32_t *)(tile + PV_CPU_TILE_M * 16);
  int64_t oy = n0 / b->OW, ox = n0 % b->OW;
  for (int64_t i = 0; i < ncols; i++) {
    coff[i] = (int32_t)(oy * b->sh * j->wp + ox * b->sw);
    if (++ox == b->OW) {
      ox = 0;
      oy++;
    }
  }
  const int32_t *off = j->offs + j->offb[si];
  const int64_t panel_len = PV_CPU_MR * s->k;
  for (int64_t u = u0; u < u1; u++) {
    int64_t r0;
    int np, nrows;
    const float *ap = unit_rows(isa, s, u, &r0, &np, &nrows);
    for (int64_t q = 0; q < npan; q++) {
      int w = ncols - q * nr < nr ? (int)(ncols - q * nr) : nr;
      if (!half) {
        isa->ukr_cols(ap, panel_len, np, j->xp, off, coff + q * nr, s->k, w, tile);
        store_tile(isa, s, j->out, r0, nrows, n0 + q * nr, w, tile);
        continue;
      }
      isa->ukr_cols8(ap, j->xp, off, coff + q * nr, s->k, w, tile);
      for (int c0 = 0; c0 < w; c0 += isa->nr) /* stores take <= nr columns */
        store_tile(isa, s, j->out, r0, nrows, n0 + q * nr + c0,
                   w - c0 < isa->nr ? w - c0 : isa->nr, tile + c0 * PV_CPU_TILE_M);
    }
  }
}

/* One channel of the padded input of in-place mode. */
static void cols_pad(void *arg, int64_t ch, int tid) {
  (void)tid;
  const gemm_job *j = arg;
  const pv_cpu_bsrc *b = j->b;
  pv_cpu_pad_plane(b->x + ch * b->H * b->W, b->H, b->W, b->ph, b->pw,
                   (float *)j->xp + ch * j->hp * j->wp, j->hp, j->wp, 0.0f);
}

/* In-place mode for a convolution: tap offsets per segment, and the
 * padded input if it has pads (returned in *pad_floats, 0 if none). false
 * (nothing allocated) where it does not apply: no kernel, or offsets that
 * would not fit 32 bits. */
static bool cols_plan(gemm_job *j, int64_t *pad_floats) {
  const pv_cpu_bsrc *b = j->b;
  const pv_cpu_mat *a = j->a;
  const int64_t OH = (j->n + b->OW - 1) / b->OW;
  const int64_t cmax = pv_cpu_seg_channels(j->segs, a->n_seg, b->kh * b->kw);
  int64_t ksum = 0;
  for (int s = 0; s < a->n_seg; s++) ksum += j->segs[s].k;
  j->hp = (OH - 1) * b->sh + (b->kh - 1) * b->dh + 1;
  j->wp = (b->OW - 1) * b->sw + (b->kw - 1) * b->dw + 1;
  *pad_floats = 0;
  if (!b->ph && !b->pw && j->hp <= b->H && j->wp <= b->W) {
    j->hp = b->H; /* no pads: the input itself */
    j->wp = b->W;
  } else {
    *pad_floats = cmax * j->hp * j->wp;
  }
  if ((uint64_t)cmax * (uint64_t)j->hp * (uint64_t)j->wp >= INT32_MAX ||
      *pad_floats > KB_MAX_FLOATS)
    return false;
  j->offs = malloc((size_t)(ksum ? ksum : 1) * sizeof *j->offs);
  j->offb = malloc(((size_t)a->n_seg + 1) * sizeof *j->offb);
  if (!j->offs || !j->offb) {
    free(j->offs);
    free(j->offb);
    j->offs = NULL;
    j->offb = NULL;
    return false;
  }
  j->offb[0] = 0;
  for (int s = 0; s < a->n_seg; s++) {
    const pv_cpu_seg *sg = &j->segs[s];
    int32_t *o = j->offs + j->offb[s];
    for (int64_t p = 0; p < sg->k; p++)
      o[p] = (int32_t)pv_cpu_tap_offset(
          b, sg->col_idx ? sg->col_idx[p] : sg->col_base + p, j->hp * j->wp, j->wp);
    j->offb[s + 1] = j->offb[s] + sg->k;
  }
  return true;
}

/* In-place mode's input: the padded copy (call scratch, held locked
 * until cols_done) built in parallel, or the input itself. 0, or
 * PV_ENOMEM with the plan's offsets freed. */
static int cols_input(pv_cpu_pool *pool, gemm_job *j, int64_t pad_floats,
                      int use) {
  if (!pad_floats) {
    j->xp = j->b->x;
    return 0;
  }
  pv_cpu_pool_call_lock(pool);
  j->xp = pv_cpu_pool_call_scratch(pool, (size_t)pad_floats * sizeof(float));
  if (!j->xp) {
    pv_cpu_pool_call_unlock(pool);
    free(j->offs);
    free(j->offb);
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  }
  pv_cpu_pool_run_blocked(pool, pad_floats / (j->hp * j->wp), use, cols_pad, j);
  return 0;
}

static void cols_done(pv_cpu_pool *pool, gemm_job *j, int64_t pad_floats) {
  if (pad_floats) pv_cpu_pool_call_unlock(pool);
  free(j->offs);
  free(j->offb);
}

/* Threads worth waking for a ~nnz x n product: below ~256K multiply-adds
 * (~10 us) per thread a wake-up costs more than the work it shares, and on
 * a busy machine far more. */
static int threads_for(pv_cpu_pool *pool, const pv_cpu_mat *a, int64_t n) {
  int threads = pv_cpu_pool_threads(pool);
  int use = (int)((double)a->nnz * (double)n / 262144.0) + 1;
  return use < threads ? use : threads;
}

static void gemm_item(void *arg, int64_t item, int tid) {
  gemm_job *j = arg;
  const pv_cpu_isa *isa = j->isa;
  int si = 0;
  while (item >= j->start[si + 1]) si++;
  const pv_cpu_seg *s = &j->segs[si];
  int64_t r = item - j->start[si];
  int64_t chunk = r % j->n_chunks, part = r / j->n_chunks;
  int64_t units = seg_units(s, isa->np_max);
  int64_t ms = units < j->msplit ? units : j->msplit;
  int64_t u0 = part * units / ms, u1 = (part + 1) * units / ms;
  int64_t n0 = chunk * j->nc;
  int64_t ncols = j->n - n0 < j->nc ? j->n - n0 : j->nc;
  int64_t npan = (ncols + isa->nr - 1) / isa->nr;
  if (j->bpk || j->kplanes) {
    kblock_item(j, si, u0, u1, n0, ncols, tid);
    return;
  }
  if (j->offs) {
    cols_item(j, s, si, u0, u1, n0, ncols, tid);
    return;
  }

  size_t bfl = (size_t)(npan * isa->nr) * (size_t)(s->k ? s->k : 1);
  float *scratch =
      pv_cpu_pool_scratch(j->pool, tid, (bfl + PV_CPU_TILE_M * 16) * sizeof(float));
  if (!scratch) {
    atomic_store(&j->failed, 1);
    return;
  }
  float *bp = scratch, *tile = scratch + bfl;
  const pv_cpu_bsrc *b = j->b;
  if (b->conv && isa->ukr_idx && b->sw == 1 && s->k <= CONV_IDX_MAX_K &&
      conv_implicit(j, s, u0, u1, n0, ncols, bp, tile))
    return;
  /* Columns in place and no gather: the kernel reads the input itself. */
  bool direct = !j->b->conv && !s->col_idx;
  int64_t lk = isa->nr, ln = 1, pstride = isa->nr * s->k;
  if (direct) {
    bp = (float *)j->b->x + s->col_base * j->b->ld_k + n0 * j->b->ld_n;
    lk = j->b->ld_k;
    ln = j->b->ld_n;
    pstride = isa->nr * ln;
  } else {
    pack_b(j, s, n0, ncols, bp);
  }
  const int64_t panel_len = PV_CPU_MR * s->k;
  for (int64_t u = u0; u < u1; u++) {
    int64_t r0;
    int np, nrows;
    const float *ap = unit_rows(isa, s, u, &r0, &np, &nrows);
    for (int64_t q = 0; q < npan; q++) {
      int w = ncols - q * isa->nr < isa->nr ? (int)(ncols - q * isa->nr) : isa->nr;
      isa->ukr(ap, panel_len, np, bp + q * pstride, lk, ln, s->k, w, tile);
      store_tile(isa, s, j->out, r0, nrows, n0 + q * isa->nr, w, tile);
    }
  }
}

static int gemm_run(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                    const pv_cpu_mat *a, const pv_cpu_seg *segs,
                    const pv_cpu_bsrc *b, int64_t n, const pv_cpu_out *out) {
  gemm_job j = {.pool = pool, .isa = isa, .a = a, .segs = segs, .b = b,
                .out = out, .n = n};
  int64_t kmax = a->max_k > 0 ? a->max_k : 1;
  int64_t nfull = (n + isa->nr - 1) / isa->nr * isa->nr;
  /* A convolution with many taps: build its im2col matrix once and run
   * K-blocked, rather than packing per item and streaming all weights
   * once per column chunk (at K = 4608 the chunks are 24 columns wide).
   * Below KB_MIN_K the chunks are wide enough and the per-item path,
   * with its implicit GEMM for few taps, is as fast or faster. */
  int64_t ksum = 0;
  for (int s = 0; s < a->n_seg; s++) ksum += segs[s].k;
  bool kblock = b->conv && kmax >= KB_MIN_K && ksum <= KB_MAX_FLOATS / (n + KB_NC);
  /* Planes read in place with long rows of taps (Winograd's products:
   * k = the input channels) on the 16 x 6 kernels: without blocking, a
   * 16-row panel over k = 512 (32 KB) and the column panel's strided B
   * lines no longer fit L1 together, and both stream from L2 for every
   * column panel (KB_PLANES_KC). Not with AVX-512, whose wider kernel was
   * measured without it. */
  bool kplanes = !b->conv && isa != &pv_cpu_isa_avx512 && b->ld_n == 1 &&
                 kmax >= KB_PLANES_MIN_K;
  /* A Gemm over many inputs (Faster R-CNN's box head: 12544 -> 1024 for
   * 150 regions) read its rows in place per column chunk of
   * B_CHUNK_FLOATS / K columns (6 there), so its 51 MB of weights
   * streamed from memory 25 times: 87 ms where the same arithmetic at
   * K = 1024 runs at full speed. K-blocked, the weights are read once per
   * 256 columns (44 ms). Only where the chunks would split the columns:
   * one chunk reads every weight once already. */
  bool krows = !b->conv && b->ld_k == 1 && kmax >= KB_MIN_K &&
               n > B_CHUNK_FLOATS / kmax, gathers = false;
  for (int s = 0; s < a->n_seg; s++) gathers |= segs[s].col_idx != NULL;
  kplanes = (kplanes || krows) && !gathers;
  j.kplanes = kplanes;
  int64_t nc = (kblock || kplanes ? KB_NC : B_CHUNK_FLOATS / kmax) / isa->nr * isa->nr;
  if (nc < isa->nr) nc = isa->nr;
  if (nc > nfull) nc = nfull;
  j.nc = nc;
  j.n_chunks = (n + nc - 1) / nc;

  int threads = pv_cpu_pool_threads(pool);
  int64_t nonempty = 0, max_units = 1;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t u = seg_units(&segs[s], isa->np_max);
    if (u) nonempty++;
    if (u > max_units) max_units = u;
  }
  int64_t base = nonempty * j.n_chunks;
  /* A few items per thread absorb the noise of a shared machine. */
  int64_t want = threads > 1 ? 4 * (int64_t)threads : 1;
  int64_t msplit = base >= want ? 1 : (want + base - 1) / (base ? base : 1);
  if ((kblock || kplanes) && msplit < (max_units + KB_UNITS - 1) / KB_UNITS)
    msplit = (max_units + KB_UNITS - 1) / KB_UNITS;
  if (msplit > max_units) msplit = max_units;
  j.msplit = (int)msplit;

  j.start = malloc(((size_t)a->n_seg + 1) * sizeof *j.start);
  if (!j.start) return pv_error(PV_ENOMEM, "cpu: out of memory");
  if (kblock) {
    j.boff = malloc(((size_t)a->n_seg + 1) * sizeof *j.boff);
    if (!j.boff) {
      free(j.start);
      return pv_error(PV_ENOMEM, "cpu: out of memory");
    }
    j.boff[0] = 0;
    for (int s = 0; s < a->n_seg; s++) j.boff[s + 1] = j.boff[s] + segs[s].k * j.n_chunks * nc;
    pv_cpu_pool_call_lock(pool);
    j.bpk = pv_cpu_pool_call_scratch(pool, (size_t)j.boff[a->n_seg] * sizeof(float));
    if (!j.bpk) {
      pv_cpu_pool_call_unlock(pool);
      free(j.boff);
      free(j.start);
      return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
    }
    int64_t pitems = a->n_seg * ((kmax + KB_PACK_ROWS - 1) / KB_PACK_ROWS);
    int puse = (int)((double)ksum * (double)n / 65536.0) + 1;
    pv_cpu_pool_run_max(pool, pitems, puse < threads ? puse : threads,
                        kblock_pack, &j);
  }
  j.start[0] = 0;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t u = seg_units(&segs[s], isa->np_max);
    int64_t ms = u < msplit ? u : msplit;
    j.start[s + 1] = j.start[s] + ms * j.n_chunks;
  }
  int use = threads_for(pool, a, n);
  /* A convolution read in place: no im2col, whose copies outweighed the
   * arithmetic of a pivoted layer's small blocks (each row group packed
   * its own, so a 2-of-n layer copied its input twice over). */
  int64_t pad_floats = 0;
  bool cols = b->conv && isa->ukr_cols && !kblock && cols_plan(&j, &pad_floats);
  int r = cols ? cols_input(pool, &j, pad_floats, use) : 0;
  if (r) {
    free(j.start);
    return r;
  }
  pv_cpu_pool_run_max(pool, j.start[a->n_seg], use, gemm_item, &j);
  if (cols) cols_done(pool, &j, pad_floats);
  if (kblock) {
    pv_cpu_pool_call_unlock(pool);
    free(j.boff);
  }
  free(j.start);
  if (atomic_load(&j.failed))
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  return 0;
}

/* A convolution read in place with a following 2x2 stride-2 MaxPool
 * fused: item (segment, pooled row py) runs tiles over output rows 2py
 * and 2py + 1 at the same 6 columns (three windows), takes the window
 * maxima in scratch and stores only them, with bias and activation after
 * the maximum (they are non-decreasing: ReLU, LeakyRelu with alpha >= 0,
 * Clip, none). The conv's own output is never written: yolov3-tiny's
 * first layer would write and read back 11 MB. */
typedef struct cols_pool_job {
  gemm_job *j;
  float *ypool;
  int64_t pld, PH, PW;
} cols_pool_job;

static void cols_pool_item(void *arg, int64_t item, int tid) {
  const cols_pool_job *cp = arg;
  gemm_job *j = cp->j;
  const pv_cpu_isa *isa = j->isa;
  const pv_cpu_bsrc *b = j->b;
  const int nr = isa->nr; /* 6: three windows a tile */
  const int si = (int)(item / cp->PH);
  const int64_t py = item % cp->PH;
  const pv_cpu_seg *s = &j->segs[si];
  const size_t tl = PV_CPU_TILE_M * 16;
  float *t = pv_cpu_pool_scratch(j->pool, tid, (3 * tl) * sizeof(float) +
                                                   2 * PV_CPU_TILE_M * sizeof(int32_t));
  if (!t) {
    atomic_store(&j->failed, 1);
    return;
  }
  float *t1 = t + tl, *pm = t + 2 * tl;
  int32_t *c0 = (int32_t *)(t + 3 * tl), *c1 = c0 + PV_CPU_TILE_M;
  const int32_t *off = j->offs + j->offb[si];
  pv_cpu_out po = {.y = cp->ypool, .ld_m = cp->pld, .ld_n = 1,
                   .bias = j->out->bias, .act = j->out->act,
                   .alpha = j->out->alpha, .beta = j->out->beta};
  for (int64_t u = 0; u < seg_units(s, isa->np_max); u++) {
    int64_t r0;
    int np, nrows;
    const float *ap = unit_rows(isa, s, u, &r0, &np, &nrows);
    for (int64_t px = 0; px < cp->PW; px += nr / 2) {
      const int win = cp->PW - px < nr / 2 ? (int)(cp->PW - px) : nr / 2;
      for (int q = 0; q < 2 * win; q++) {
        const int64_t ox = 2 * px + q;
        c0[q] = (int32_t)(2 * py * b->sh * j->wp + ox * b->sw);
        c1[q] = (int32_t)((2 * py + 1) * b->sh * j->wp + ox * b->sw);
      }
      isa->ukr_cols(ap, PV_CPU_MR * s->k, np, j->xp, off, c0, s->k, 2 * win, t);
      isa->ukr_cols(ap, PV_CPU_MR * s->k, np, j->xp, off, c1, s->k, 2 * win, t1);
      for (int w = 0; w < win; w++)
        for (int i = 0; i < nrows; i++) {
          float a0 = t[2 * w * PV_CPU_TILE_M + i], a1 = t[(2 * w + 1) * PV_CPU_TILE_M + i];
          float b0 = t1[2 * w * PV_CPU_TILE_M + i], b1 = t1[(2 * w + 1) * PV_CPU_TILE_M + i];
          pm[w * PV_CPU_TILE_M + i] = pv_cpu_max_nan(pv_cpu_max_nan(a0, a1),
                                                     pv_cpu_max_nan(b0, b1));
        }
      store_tile(isa, s, &po, r0, nrows, py * cp->PW + px, win, pm);
    }
  }
}

int pv_cpu_conv_cols_pool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                          const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                          const pv_cpu_out *out, float *ypool, int64_t pld) {
  const pv_act act = out->act;
  const bool monotone = act == PV_ACT_NONE || act == PV_ACT_RELU ||
                        act == PV_ACT_CLIP || (act == PV_ACT_LEAKY && out->alpha >= 0);
  if (!isa->ukr_cols || !b->conv || !monotone || a->max_k >= KB_MIN_K ||
      isa->nr < 2 || n <= 0 || n % b->OW || out->ld_n != 1)
    return 1;
  gemm_job j = {.pool = pool, .isa = isa, .a = a, .segs = a->seg, .b = b,
                .out = out, .n = n};
  const int64_t OH = n / b->OW;
  cols_pool_job cp = {&j, ypool, pld, OH / 2, b->OW / 2};
  if (cp.PH < 1 || cp.PW < 1) return 1;
  int64_t pad_floats = 0;
  if (!cols_plan(&j, &pad_floats)) return 1;
  int use = threads_for(pool, a, n);
  int r = cols_input(pool, &j, pad_floats, use);
  if (r) return r;
  pv_cpu_pool_run_max(pool, a->n_seg * cp.PH, use, cols_pool_item, &cp);
  cols_done(pool, &j, pad_floats);
  if (atomic_load(&j.failed))
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  return 0;
}

/* Pivoted Gemm in permuted space: gather the input once, run the blocks
 * on contiguous columns, unpermute the output once with bias and
 * activation. Each pass is over N x K or N x M elements, against the
 * per-tile gathers and scatters that touch every output line many times. */
typedef struct perm_job {
  pv_cpu_permute_fn permute; /* NULL: the loops below */
  const pv_cpu_mat *a;
  const pv_cpu_bsrc *b;
  const pv_cpu_out *out;
  float *xp, *yp;
} perm_job;

PV_CPU_CLONES static void perm_in(void *arg, int64_t n, int tid) {
  (void)tid;
  const perm_job *j = arg;
  const float *x = j->b->x + n * j->b->ld_n;
  float *restrict xp = j->xp + n * j->a->kp;
  const int32_t *restrict ip = j->a->in_perm;
  if (j->permute) {
    j->permute(xp, x, ip, j->a->kp, NULL, PV_ACT_NONE, 0, 0);
    return;
  }
  for (int64_t q = 0; q < j->a->kp; q++) xp[q] = x[ip[q]];
}

/* Gathers from the row in L1 and writes whole lines, where a per-tile
 * scatter writes 32 scattered floats into lines that other tiles share.
 * The compiler keeps these loops scalar (about one cycle per float, a
 * quarter of a 128-wide block's arithmetic per output); the ISA's permute
 * line gathers eight at a time. */
PV_CPU_CLONES static void perm_out(void *arg, int64_t n, int tid) {
  (void)tid;
  const perm_job *j = arg;
  const pv_cpu_out *o = j->out;
  const float *restrict yp = j->yp + n * j->a->M;
  float *restrict y = o->y + n * o->ld_n;
  const int32_t *restrict inv = j->a->out_inv;
  const int32_t M = j->a->M;
  if (j->permute) {
    j->permute(y, yp, inv, M, o->bias, o->act, o->alpha, o->beta);
    return;
  }
  if (o->bias) {
    const float *restrict bias = o->bias;
    for (int32_t m = 0; m < M; m++) y[m] = yp[inv[m]] + bias[m];
  } else {
    for (int32_t m = 0; m < M; m++) y[m] = yp[inv[m]];
  }
  switch (o->act) {
  case PV_ACT_NONE: break;
  case PV_ACT_RELU:
    for (int32_t m = 0; m < M; m++) y[m] = y[m] > 0 ? y[m] : 0;
    break;
  default:
    for (int32_t m = 0; m < M; m++) y[m] = pv_cpu_act1(y[m], o->act, o->alpha, o->beta);
  }
}

int pv_cpu_gemm(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                const pv_cpu_out *out) {
  if (n <= 0) return 0;
  if (!a->pseg || b->conv || b->ld_k != 1 || out->ld_m != 1)
    return gemm_run(pool, isa, a, a->seg, b, n, out);
  if ((uint64_t)n > SIZE_MAX / sizeof(float) / 4 / ((uint64_t)a->kp + a->M))
    return pv_error(PV_ERANGE, "cpu: batch %lld too large", (long long)n);
  pv_cpu_pool_call_lock(pool);
  size_t xfl = ((size_t)n * a->kp + 15) & ~(size_t)15;
  float *buf = pv_cpu_pool_call_scratch(
      pool, (xfl + (size_t)n * a->M) * sizeof(float));
  if (!buf) {
    pv_cpu_pool_call_unlock(pool);
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  }
  perm_job pj = {pv_cpu_isa_permute(isa), a, b, out, buf, buf + xfl};
  pv_cpu_out op = {.y = pj.yp, .ld_m = 1, .ld_n = a->M, .act = PV_ACT_NONE};
  /* A chain's inner side (a folded permutation) needs no pass. */
  if (a->out_ident) op = *out;
  int r;
  /* The input is gathered by one copy, also for small blocks: gathering
   * inside the micro-kernel's loads (the kernel the implicit-GEMM
   * convolution uses) was measured slower, 1.16-1.19x the plain kernel's
   * time on a 128 x 128 block, since a column panel's scattered input
   * lines miss L1, against a vector copy of about 0.2 ns per float. */
  if (a->in_ident) {
    r = gemm_run(pool, isa, a, a->pseg, b, n, &op);
  } else {
    pv_cpu_pool_run(pool, n, perm_in, &pj);
    pv_cpu_bsrc bp = {.x = pj.xp, .ld_k = 1, .ld_n = a->kp};
    r = gemm_run(pool, isa, a, a->pseg, &bp, n, &op);
  }
  if (!r && !a->out_ident) pv_cpu_pool_run(pool, n, perm_out, &pj);
  pv_cpu_pool_call_unlock(pool);
  return r;
}
