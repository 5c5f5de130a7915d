/* Driver of the spatially vectorised convolution (conv-nv.h). A work item
 * is (segment, chunk of output pixels, range of 8-channel row blocks). It
 * builds the chunk's im2col rows for one block of taps into per-thread
 * scratch ([taps][chunk], each row one im2col line), then for every row
 * block runs the 8 x 48 tile over the chunk's pixel panels: the block's
 * weights (taps x 8, L1) stay put while the im2col block (L2) streams
 * past them. Taps beyond NV_KC are blocked, the partial sums kept in the
 * output itself, so the im2col block stays in L2 at any K. Weights are
 * the packed [k][16] panels of pack.c, read 8 rows at a time, so dense,
 * grouped and pivoted segments all run here.
 *
 * Wide layers (>= NV_ROW_MIN output columns, stride 1 along rows) skip
 * the im2col: the input is copied once into a zero-padded buffer, in
 * which the 48 pixels of a panel inside one output row read, for every
 * tap, 48 contiguous floats at a fixed offset; panels then follow the
 * output rows (a row's last panel narrower). */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "conv-nv.h"

#define NV_KC 384               /* taps per block: 8 x 384 weights = 24 KB in L1 */
#define NV_B_FLOATS (96 * 1024) /* im2col block budget (384 KB of L2) */
#define NV_MAX_PANELS 64        /* panels per chunk */
#define NV_SLACK 48             /* floats a tile may read past the padded input */
#define NV_ROW_MIN 96           /* output columns from which rows are panels */
#define NV_PAD_MAX ((int64_t)16 << 20) /* padded input, shared im2col: 64 MB */

typedef struct nv_job {
  pv_cpu_pool *pool;
  pv_nv_ukr_fn ukr;
  pv_nv_im2col_fn im2col;
  const pv_cpu_mat *a;
  pv_cpu_bsrc b; /* always a convolution geometry */
  const pv_cpu_out *out;
  int64_t n, nc, n_chunks, kb_max;
  /* Implicit mode (xp set): the zero-padded input [C][Hp][Wp], chunks of
   * `rows` output rows, and each segment's tap offsets into it. */
  const float *xp;
  bool slack; /* xp is our copy, NV_SLACK zeros past its end */
  int64_t Hp, Wp, rows, OH;
  int64_t pcols, cpr; /* panels of a row per chunk, chunks per row band */
  /* Shared mode (bsh set): the im2col of every chunk built once, in
   * parallel, when rows are split over items that would each repeat it:
   * segment s, chunk c at bsh + boff[s] + c*k*nc, [k][nc]. */
  float *bsh;
  int64_t *boff, *offsh; /* offsh[p] = p*nc */
  int64_t *offs, *offb; /* segment s: offs + offb[s], [k] */
  /* A 2x2 stride-2 max pool fused into the store (implicit mode, one
   * block of taps): pooled output of row m at ypool + m*pld. */
  float *ypool;
  int64_t pld;
  int msplit;
  int64_t *start; /* [n_seg+1] first item of each segment */
  bool planes; /* B was a pointwise convolution's planes (not b->conv) */
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

/* Output rows, bias and the first weight of row block u of segment s. */
static int nv_rows(const nv_job *j, const pv_cpu_seg *s, int64_t u, int64_t pc,
                   const float **ap, float **yr, float *bi) {
  const pv_cpu_out *o = j->out;
  int64_t r0 = u * PV_NV_MR;
  int nrows = s->rows - r0 < PV_NV_MR ? (int)(s->rows - r0) : PV_NV_MR;
  *ap = s->a + (r0 / PV_CPU_MR) * PV_CPU_MR * s->k + pc * PV_CPU_MR +
        r0 % PV_CPU_MR;
  for (int i = 0; i < nrows; i++) {
    int64_t m = s->row_idx ? s->row_idx[r0 + i] : s->row_base + r0 + i;
    yr[i] = o->y + m * o->ld_m;
    bi[i] = o->bias ? o->bias[m] : 0.0f;
  }
  return nrows;
}

/* Implicit mode: output rows [oy0, oy1), every panel reading the padded
 * input at its tap offsets. */
static void nv_item_rows(nv_job *j, const pv_cpu_seg *s, int si, int64_t u0,
                         int64_t u1, int64_t chunk) {
  const pv_cpu_out *o = j->out;
  const int64_t OW = j->b.OW, npr = (OW + PV_NV_NR - 1) / PV_NV_NR;
  const int64_t oy0 = chunk / j->cpr * j->rows;
  const int64_t oy1 = oy0 + j->rows < j->OH ? oy0 + j->rows : j->OH;
  const int64_t q0 = chunk % j->cpr * j->pcols;
  const int64_t q1 = q0 + j->pcols < npr ? q0 + j->pcols : npr;
  const int64_t k = s->k, kb = nv_kb(k);
  for (int64_t pc = 0; pc < k; pc += kb) {
    const int64_t kc = k - pc < kb ? k - pc : kb;
    const int64_t *off = j->offs + j->offb[si] + pc;
    int flags = (pc == 0 ? PV_NV_FIRST : 0) | (pc + kc == k ? PV_NV_LAST : 0) |
                (j->slack ? PV_NV_BPAD : 0);
    for (int64_t u = u0; u < u1; u++) {
      const float *ap;
      float *yr[PV_NV_MR];
      float bi[PV_NV_MR];
      int nrows = nv_rows(j, s, u, pc, &ap, yr, bi);
      for (int64_t oy = oy0; oy < oy1; oy++) {
        const float *base = j->xp + oy * j->b.sh * j->Wp;
        for (int64_t q = q0; q < q1; q++) {
          int64_t ox0 = q * PV_NV_NR;
          int w = OW - ox0 < PV_NV_NR ? (int)(OW - ox0) : PV_NV_NR;
          j->ukr(ap, base + ox0, off, kc, yr, oy * OW + ox0, bi, nrows, w,
                 flags, o->act, o->alpha, o->beta);
        }
      }
    }
  }
}

/* Implicit mode with the pool fused: both conv rows of a pooled row go
 * through tiles in registers and a small buffer, never to memory. */
static void nv_item_pool(nv_job *j, const pv_cpu_seg *s, int si, int64_t u0,
                         int64_t u1, int64_t chunk) {
  const pv_cpu_out *o = j->out;
  const int64_t OW = j->b.OW, npr = (OW + PV_NV_NR - 1) / PV_NV_NR;
  const int64_t POW = OW / 2, OH2 = j->OH / 2 * 2;
  const int64_t oy0 = chunk / j->cpr * j->rows;
  const int64_t oy1 = oy0 + j->rows < OH2 ? oy0 + j->rows : OH2;
  const int64_t q0 = chunk % j->cpr * j->pcols;
  const int64_t q1 = q0 + j->pcols < npr ? q0 + j->pcols : npr;
  const int64_t *off = j->offs + j->offb[si];
  const int flags = PV_NV_FIRST | PV_NV_LAST | (j->slack ? PV_NV_BPAD : 0);
  /* Lanes past a narrow tile are read by the pooling, never stored. */
  float t[2][PV_NV_MR * PV_NV_NR] = {{0}};
  float *tr[2][PV_NV_MR];
  for (int i = 0; i < PV_NV_MR; i++) {
    tr[0][i] = t[0] + i * PV_NV_NR;
    tr[1][i] = t[1] + i * PV_NV_NR;
  }
  for (int64_t u = u0; u < u1; u++) {
    const float *ap;
    float *yr[PV_NV_MR], *yp[PV_NV_MR];
    float bi[PV_NV_MR];
    int nrows = nv_rows(j, s, u, 0, &ap, yr, bi);
    for (int i = 0; i < nrows; i++) {
      int64_t r = u * PV_NV_MR + i;
      int64_t m = s->row_idx ? s->row_idx[r] : s->row_base + r;
      yp[i] = j->ypool + m * j->pld;
    }
    for (int64_t oy = oy0; oy < oy1; oy += 2) {
      const float *base = j->xp + oy * j->b.sh * j->Wp;
      for (int64_t q = q0; q < q1; q++) {
        int64_t ox0 = q * PV_NV_NR;
        int w = OW - ox0 < PV_NV_NR ? (int)(OW - ox0) : PV_NV_NR;
        for (int h = 0; h < 2; h++)
          j->ukr(ap, base + h * j->b.sh * j->Wp + ox0, off, s->k, tr[h], 0, bi,
                 nrows, w, flags, o->act, o->alpha, o->beta);
        for (int i = 0; i < nrows; i++)
          pv_cpu_pool2_avx512(tr[0][i], tr[1][i], yp[i] + oy / 2 * POW + ox0 / 2, w);
      }
    }
  }
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
  if (j->ypool) {
    nv_item_pool(j, s, si, u0, u1, chunk);
    return;
  }
  if (j->xp) {
    nv_item_rows(j, s, si, u0, u1, chunk);
    return;
  }
  int64_t n0 = chunk * j->nc;
  int64_t ncols = j->n - n0 < j->nc ? j->n - n0 : j->nc;
  int64_t npan = (ncols + PV_NV_NR - 1) / PV_NV_NR, ldb = npan * PV_NV_NR;
  const int64_t k = s->k, kb = nv_kb(k);
  float *bp;
  const int64_t *off;
  if (j->bsh) {
    ldb = j->nc;
    bp = j->bsh + j->boff[si] + chunk * k * ldb;
    off = j->offsh;
  } else {
    bp = pv_cpu_pool_scratch(j->pool, tid, (size_t)(kb * ldb) * sizeof(float) +
                                               (size_t)kb * sizeof(int64_t));
    if (!bp) {
      atomic_store(&j->failed, 1);
      return;
    }
    int64_t *o2 = (int64_t *)(bp + kb * ldb);
    for (int64_t p = 0; p < kb; p++) o2[p] = p * ldb;
    off = o2;
  }
  for (int64_t pc = 0; pc < k; pc += kb) {
    const int64_t kc = k - pc < kb ? k - pc : kb;
    if (j->bsh) {
      bp = j->bsh + j->boff[si] + (chunk * k + pc) * ldb;
    } else {
      for (int64_t p = 0; p < kc; p++) {
        float *row = bp + p * ldb;
        j->im2col(s, &j->b, pc + p, n0, ncols, row);
        for (int64_t i = ncols; i < ldb; i++) row[i] = 0.0f;
      }
    }
    int flags = (pc == 0 ? PV_NV_FIRST : 0) | (pc + kc == k ? PV_NV_LAST : 0) |
                PV_NV_BPAD;
    for (int64_t u = u0; u < u1; u++) {
      const float *ap;
      float *yr[PV_NV_MR];
      float bi[PV_NV_MR];
      int nrows = nv_rows(j, s, u, pc, &ap, yr, bi);
      for (int64_t q = 0; q < npan; q++) {
        int w = ncols - q * PV_NV_NR < PV_NV_NR ? (int)(ncols - q * PV_NV_NR)
                                                : PV_NV_NR;
        j->ukr(ap, bp + q * PV_NV_NR, off, kc, yr, n0 + q * PV_NV_NR, bi,
               nrows, w, flags, o->act, o->alpha, o->beta);
      }
    }
  }
}

/* Shared mode: NV_PACK_ROWS im2col rows of a segment for one pixel
 * chunk. Items run over chunks too: a first layer (27 taps) has one row
 * group, and with items per row group only one thread built its whole
 * im2col (MobileNetV2's 3->32 stride-2 layer took as long at two
 * threads as at one). */
#define NV_PACK_ROWS 32
static void nv_pack(void *arg, int64_t item, int tid) {
  (void)tid;
  const nv_job *j = arg;
  int64_t per = (j->a->max_k + NV_PACK_ROWS - 1) / NV_PACK_ROWS;
  int64_t c = item % j->n_chunks, rg = item / j->n_chunks;
  int si = (int)(rg / per);
  const pv_cpu_seg *s = &j->a->seg[si];
  int64_t p0 = rg % per * NV_PACK_ROWS;
  int64_t p1 = p0 + NV_PACK_ROWS < s->k ? p0 + NV_PACK_ROWS : s->k;
  int64_t n0 = c * j->nc, cn = j->n - n0 < j->nc ? j->n - n0 : j->nc;
  for (int64_t p = p0; p < p1; p++) {
    float *row = j->bsh + j->boff[si] + (c * s->k + p) * j->nc;
    j->im2col(s, &j->b, p, n0, cn, row);
    for (int64_t i = cn; i < j->nc; i++) row[i] = 0.0f;
  }
}

/* n copies of v (memset where v is +0). */
static void fill(float *d, int64_t n, float v) {
  if (v == 0.0f && !signbit(v)) {
    memset(d, 0, (size_t)n * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < n; i++) d[i] = v;
}

int64_t pv_cpu_seg_channels(const pv_cpu_seg *segs, int n_seg, int64_t kk) {
  int64_t cmax = 0;
  for (int s = 0; s < n_seg; s++) {
    const pv_cpu_seg *sg = &segs[s];
    int64_t c = sg->col_base + sg->k - 1;
    if (sg->col_idx)
      for (int64_t p = 0; p < sg->k; p++)
        if (sg->col_idx[p] > c) c = sg->col_idx[p];
    if (c / kk + 1 > cmax) cmax = c / kk + 1;
  }
  return cmax;
}

void pv_cpu_pad_plane(const float *x, int64_t H, int64_t W, int64_t pt,
                      int64_t pl, float *xp, int64_t Hp, int64_t Wp, float v) {
  int64_t cw = W < Wp - pl ? W : Wp - pl; /* columns of x inside */
  for (int64_t r = 0; r < Hp; r++) {
    float *d = xp + r * Wp;
    int64_t iy = r - pt;
    if (iy < 0 || iy >= H || cw <= 0) {
      fill(d, Wp, v);
      continue;
    }
    fill(d, pl, v);
    memcpy(d + pl, x + iy * W, (size_t)cw * sizeof(float));
    fill(d + pl + cw, Wp - pl - cw, v);
  }
}

/* One channel of the padded input. */
static void nv_pad(void *arg, int64_t ch, int tid) {
  (void)tid;
  const nv_job *j = arg;
  const pv_cpu_bsrc *b = &j->b;
  pv_cpu_pad_plane(b->x + ch * b->H * b->W, b->H, b->W, b->ph, b->pw,
                     (float *)j->xp + ch * j->Hp * j->Wp, j->Hp, j->Wp, 0.0f);
}

/* Set up the implicit mode: padded geometry, tap offsets. false (and
 * nothing allocated) where the layer does not qualify. */
static bool nv_implicit_plan(nv_job *j, int64_t *channels) {
  const pv_cpu_bsrc *b = &j->b;
  const pv_cpu_mat *a = j->a;
  if (b->sw != 1 || b->OW < NV_ROW_MIN || j->n % b->OW) return false;
  /* Planes read in place have rows at any alignment (a 13x13 plane is
   * 676 bytes: four cache lines a tile row instead of three) and are
   * not blocked for L2; the im2col of planes is a plain copy, one pass
   * against rows/8 passes of tiles over it. With >= 128 rows the copy
   * wins (1024->256 1x1 at 13x13 15% faster, the Winograd products at
   * 26x26 4-12%); at 64 rows (Winograd at 56x56, 64 channels) reading in
   * place was 3% faster. A fused pool needs the implicit mode. */
  if (j->planes && !j->ypool) {
    int32_t rows = 0;
    for (int s = 0; s < a->n_seg; s++)
      if (a->seg[s].rows > rows) rows = a->seg[s].rows;
    if (rows >= 128) return false;
  }
  const int64_t cmax = pv_cpu_seg_channels(a->seg, a->n_seg, b->kh * b->kw);
  int64_t ksum = 0;
  for (int s = 0; s < a->n_seg; s++) ksum += a->seg[s].k;
  j->OH = j->n / b->OW;
  j->Hp = (j->OH - 1) * b->sh + (b->kh - 1) * b->dh + 1;
  j->Wp = (b->OW - 1) + (b->kw - 1) * b->dw + 1;
  if (!b->ph && !b->pw && j->Hp <= b->H && j->Wp <= b->W) {
    /* No pads: the input itself (a pointwise layer's planes). */
    j->Hp = b->H;
    j->Wp = b->W;
    j->xp = b->x;
  } else if ((uint64_t)j->Hp * (uint64_t)j->Wp >
             (uint64_t)NV_PAD_MAX / (uint64_t)cmax) {
    return false;
  }
  j->offs = malloc((size_t)ksum * sizeof *j->offs);
  j->offb = malloc(((size_t)a->n_seg + 1) * sizeof *j->offb);
  if (!j->offs || !j->offb) {
    free(j->offs);
    free(j->offb);
    j->offs = j->offb = NULL;
    j->xp = NULL;
    return false;
  }
  j->offb[0] = 0;
  for (int s = 0; s < a->n_seg; s++) {
    const pv_cpu_seg *sg = &a->seg[s];
    int64_t *o = j->offs + j->offb[s];
    for (int64_t p = 0; p < sg->k; p++)
      o[p] = pv_cpu_tap_offset(b, sg->col_idx ? sg->col_idx[p] : sg->col_base + p,
                               j->Hp * j->Wp, j->Wp);
    j->offb[s + 1] = j->offb[s] + sg->k;
  }
  *channels = cmax;
  return true;
}

bool pv_cpu_conv_nv_ok(const pv_cpu_isa *isa, const pv_cpu_mat *a,
                       const pv_cpu_bsrc *b, int64_t n) {
  if (isa != &pv_cpu_isa_avx512 || !pv_cpu_nv_ukr_avx512 || n <= 0) return false;
  /* Lanes the tiles compute to no use: a 7x7 layer (49 pixels) runs a
   * 48-wide and a 16-wide tile for 49 pixels, and was 20% slower here
   * than on the GEMM path (resnet18's layer4); 13x13 (169 in 176 lanes)
   * and wider layers gain. A pivoted layer takes the tiles whatever its
   * width: on the GEMM path each block packs its own im2col, and the
   * small CNN's pivoted 7x7 layer (64->128, batch 32, one thread) ran
   * there in 5.5-6.5 ms against 2.1-3.4 ms on the tiles, 1/8 and 1/2
   * dense, slower than its dense form. */
  int64_t lanes = n / PV_NV_NR * PV_NV_NR + (n % PV_NV_NR + 15) / 16 * 16;
  bool pivoted = a->nnz < (int64_t)a->M * a->K;
  if (!pivoted && n * 10 < lanes * 9) return false;
  for (int s = 0; s < a->n_seg; s++)
    if (a->seg[s].k <= 0) return false;
  return b->conv || b->ld_n == 1;
}

/* pv_cpu_conv_nv, with the pool fused when ypool is set: returns 1
 * (nothing done) where the layer cannot take that path. */
static int nv_run(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                  const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                  const pv_cpu_out *out, float *ypool, int64_t pld) {
  if (n <= 0) return 0;
  if (!pv_cpu_conv_nv_ok(isa, a, b, n) || out->ld_n != 1)
    return pv_error(PV_EINVAL, "cpu: convolution not in the spatial layout");
  nv_job j = {.pool = pool, .ukr = pv_cpu_nv_ukr_avx512, .a = a, .b = *b,
              .out = out, .n = n, .ypool = ypool, .pld = pld};
  j.planes = !b->conv;
  if (!b->conv) {
    /* A pointwise convolution's planes: one image row of ld_k pixels. */
    if (b->ld_k < n) return pv_error(PV_EINVAL, "cpu: planes shorter than %lld",
                                     (long long)n);
    j.b = (pv_cpu_bsrc){.x = b->x, .conv = true, .H = 1, .W = b->ld_k,
                        .kh = 1, .kw = 1, .sh = 1, .sw = 1, .dh = 1, .dw = 1,
                        .OW = n};
  }
  j.im2col = j.b.sw == 1 && pv_cpu_nv_im2col_s1_avx512   ? pv_cpu_nv_im2col_s1_avx512
             : j.b.sw == 2 && pv_cpu_nv_im2col_s2_avx512 ? pv_cpu_nv_im2col_s2_avx512
                                                         : pv_cpu_im2col_row;
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
  int64_t channels = 0;
  bool implicit = nv_implicit_plan(&j, &channels);
  if (implicit) {
    /* Chunks of about the pixels of a packed chunk: bands of whole rows,
     * or runs of panels along one row when a row alone is more. */
    int64_t npr = (j.b.OW + PV_NV_NR - 1) / PV_NV_NR;
    j.rows = max_pan * PV_NV_NR / j.b.OW;
    if (j.rows < 1) {
      j.rows = 1;
      j.cpr = (npr + max_pan - 1) / max_pan;
      j.pcols = (npr + j.cpr - 1) / j.cpr;
    } else {
      j.cpr = 1;
      j.pcols = npr;
    }
    int64_t bands = (j.OH + j.rows - 1) / j.rows;
    j.rows = (j.OH + bands - 1) / bands;
    bands = (j.OH + j.rows - 1) / j.rows;
    j.n_chunks = bands * j.cpr;
    if (ypool) { /* bands of whole pooled rows */
      j.rows += j.rows & 1;
      j.n_chunks = (j.OH + j.rows - 1) / j.rows * j.cpr;
    }
  }
  if (ypool && (!implicit || !pv_cpu_pool2_avx512 || a->max_k > NV_KC || j.OH < 2 || j.b.OW < 2)) {
    free(j.offs);
    free(j.offb);
    return 1;
  }

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
  if (!j.start) {
    free(j.offs);
    free(j.offb);
    return pv_error(PV_ENOMEM, "cpu: out of memory");
  }
  j.start[0] = 0;
  for (int s = 0; s < a->n_seg; s++) {
    int64_t u = nv_units(&a->seg[s]);
    int64_t ms = u < msplit ? u : msplit;
    j.start[s + 1] = j.start[s] + ms * j.n_chunks;
  }
  double macs = (double)a->nnz * (double)n;
  int use = (int)(macs / 262144.0) + 1;
  if (use > threads) use = threads;
  bool padded = implicit && !j.xp;
  /* Split rows share one im2col instead of each building it. */
  int64_t ksum = 0;
  for (int s = 0; s < a->n_seg; s++) ksum += a->seg[s].k;
  bool shared = !implicit && msplit > 1 && use > 1 &&
                (uint64_t)ksum * (uint64_t)(j.n_chunks * j.nc) <= (uint64_t)NV_PAD_MAX;
  if (shared) {
    j.boff = malloc(((size_t)a->n_seg + 1) * sizeof *j.boff);
    j.offsh = malloc((size_t)j.kb_max * sizeof *j.offsh);
    pv_cpu_pool_call_lock(pool);
    j.bsh = pv_cpu_pool_call_scratch(pool, (size_t)(ksum * j.n_chunks * j.nc) *
                                               sizeof(float));
    if (!j.boff || !j.offsh || !j.bsh) {
      pv_cpu_pool_call_unlock(pool);
      free(j.boff);
      free(j.offsh);
      free(j.start);
      return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
    }
    j.boff[0] = 0;
    for (int s = 0; s < a->n_seg; s++)
      j.boff[s + 1] = j.boff[s] + a->seg[s].k * j.n_chunks * j.nc;
    for (int64_t p = 0; p < j.kb_max; p++) j.offsh[p] = p * j.nc;
    int64_t per = (a->max_k + NV_PACK_ROWS - 1) / NV_PACK_ROWS;
    pv_cpu_pool_run_max(pool, a->n_seg * per * j.n_chunks, use, nv_pack, &j);
  }
  if (padded) {
    size_t fl = (size_t)(channels * j.Hp * j.Wp) + NV_SLACK;
    pv_cpu_pool_call_lock(pool);
    float *xp = pv_cpu_pool_call_scratch(pool, fl * sizeof(float));
    if (!xp) {
      pv_cpu_pool_call_unlock(pool);
      free(j.offs);
      free(j.offb);
      free(j.start);
      return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
    }
    /* Zeros: a denormal there would slow every FMA of its lane. */
    memset(xp + fl - NV_SLACK, 0, NV_SLACK * sizeof(float));
    j.xp = xp;
    j.slack = true;
    pv_cpu_pool_run_blocked(pool, channels, use, nv_pad, &j);
  }
  pv_cpu_pool_run_max(pool, j.start[a->n_seg], use, nv_item, &j);
  if (padded || shared) pv_cpu_pool_call_unlock(pool);
  free(j.boff);
  free(j.offsh);
  free(j.offs);
  free(j.offb);
  free(j.start);
  if (atomic_load(&j.failed))
    return pv_error(PV_ENOMEM, "cpu: out of scratch memory");
  return 0;
}

int pv_cpu_conv_nv(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                   const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                   const pv_cpu_out *out) {
  return nv_run(pool, isa, a, b, n, out, NULL, 0);
}

int pv_cpu_conv_nv_pool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                        const pv_cpu_mat *a, const pv_cpu_bsrc *b, int64_t n,
                        const pv_cpu_out *out, float *ypool, int64_t pld) {
  return nv_run(pool, isa, a, b, n, out, ypool, pld);
}
