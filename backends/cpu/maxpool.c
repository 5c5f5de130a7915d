/* 2-D max pooling, direct, one plane per work item. The window bounds are
 * clipped once per output row and tap, so the inner loop has no padding
 * tests. Padded taps are skipped; NaN propagates as in the reference ops
 * (once a window meets a NaN, its maximum is NaN). */
#include <math.h>
#include <string.h>

#include "cpu-impl.h"

typedef struct mp_job {
  const pv_cpu_pool2d *d;
  const float *x;
  float *y;
  pv_cpu_pool2_fn row2; /* the ISA's 2x2 stride-2 row, or NULL */
  pv_cpu_pool2_fn row1; /* and stride-1 row */
  bool k2;              /* mp_plane_2x2, else mp_plane */
  pv_cpu_pool3_fn row3; /* 3x3 on padded rows (AVX-512), or NULL */
  pv_cpu_pool *pool;    /* for row3's per-thread padded plane */
  int64_t Hp, Wp;
} mp_job;

#define MP_SLACK 64 /* floats row3 may read past a padded plane */

/* 3x3 with stride 1 or 2 through row3: the plane padded (pads and the
 * tiles' overhang with -inf, or with the folded Pad's value), then one
 * call per output row. false where the scratch is not there. */
static bool mp_plane_3x3(const mp_job *j, int64_t pl, int tid) {
  const pv_cpu_pool2d *d = j->d;
  float *xp = pv_cpu_pool_scratch(j->pool, tid,
                                  (size_t)(j->Hp * j->Wp + MP_SLACK) * sizeof(float));
  if (!xp) return false;
  float v = d->padc ? d->padv : -INFINITY;
  pv_cpu_pad_plane(j->x + pl * d->H * d->W, d->H, d->W, d->ph, d->pw, xp,
                   j->Hp, j->Wp, v);
  for (int64_t i = 0; i < MP_SLACK; i++) xp[j->Hp * j->Wp + i] = v;
  float *y = j->y + pl * d->OH * d->OW;
  for (int64_t oy = 0; oy < d->OH; oy++) {
    const float *r0 = xp + oy * d->sh * j->Wp;
    j->row3(r0, r0 + j->Wp, r0 + 2 * j->Wp, y + oy * d->OW, d->OW, (int)d->sw);
  }
  return true;
}

/* Taps outer, output columns inner: the inner loop is branch-free and
 * vectorises (a data-dependent branch per tap mispredicts half the time). */
PV_CPU_CLONES static void mp_plane(const mp_job *j, int64_t pl) {
  const pv_cpu_pool2d *d = j->d;
  const float *x = j->x + pl * d->H * d->W;
  float *y = j->y + pl * d->OH * d->OW;
  for (int64_t oy = 0; oy < d->OH; oy++) {
    float *restrict yr = y + oy * d->OW;
    for (int64_t ox = 0; ox < d->OW; ox++) yr[ox] = -INFINITY;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sh - d->ph + ky * d->dh;
      if (iy < 0 || iy >= d->H) continue;
      const float *restrict xr = x + iy * d->W;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        int64_t off = kx * d->dw - d->pw;
        /* ox range where 0 <= ox*sw + off < W */
        int64_t lo = off < 0 ? (-off + d->sw - 1) / d->sw : 0;
        int64_t hi = d->W - off <= 0 ? 0 : (d->W - off + d->sw - 1) / d->sw;
        if (hi > d->OW) hi = d->OW;
        if (d->sw == 1) {
          for (int64_t ox = lo; ox < hi; ox++) {
            float v = xr[ox + off];
            yr[ox] = pv_cpu_max_nan(v, yr[ox]);
          }
        } else {
          for (int64_t ox = lo; ox < hi; ox++) {
            float v = xr[ox * d->sw + off];
            yr[ox] = pv_cpu_max_nan(v, yr[ox]);
          }
        }
      }
    }
    if (!d->padc) continue;
    /* Windows with a tap outside the input also see the pad value. */
    const float c = d->padv;
    int64_t iy0 = oy * d->sh - d->ph, iy1 = iy0 + (d->kh - 1) * d->dh;
    bool rows_out = iy0 < 0 || iy1 >= d->H;
    for (int64_t ox = 0; ox < d->OW; ox++) {
      int64_t ix0 = ox * d->sw - d->pw, ix1 = ix0 + (d->kw - 1) * d->dw;
      if (rows_out || ix0 < 0 || ix1 >= d->W)
        yr[ox] = pv_cpu_max_nan(yr[ox], c);
    }
  }
}

/* Rows of a plane padded on the right and below by one pad value (the
 * darknet stride-1 pool with its Pad fused): at most this wide. */
#define MP_PADROW_MAX 2048

/* The 2x2 window without pads or dilation (darknet's and most CNNs'
 * pools), four loads and three maxima per output, NaN kept, with no
 * per-tap loop: on a 13x13 plane the general loop's bookkeeping costs
 * more than the maxima. */
PV_CPU_CLONES static void mp_plane_2x2(const mp_job *j, int64_t pl) {
  const pv_cpu_pool2d *d = j->d;
  const float *x = j->x + pl * d->H * d->W;
  float *y = j->y + pl * d->OH * d->OW;
  float pad[2][MP_PADROW_MAX + 1];
  for (int64_t oy = 0; oy < d->OH; oy++) {
    const float *restrict r0 = x + oy * d->sh * d->W, *restrict r1 = r0 + d->W;
    if (d->padc) { /* copies with the pad value past the row and plane */
      for (int h = 0; h < 2; h++) {
        int64_t iy = oy * d->sh + h;
        if (iy < d->H) {
          memcpy(pad[h], x + iy * d->W, (size_t)d->W * sizeof(float));
          pad[h][d->W] = d->padv;
        } else {
          for (int64_t c = 0; c <= d->W; c++) pad[h][c] = d->padv;
        }
      }
      r0 = pad[0];
      r1 = pad[1];
    }
    float *restrict yr = y + oy * d->OW;
    if (d->sw == 2 && j->row2) {
      j->row2(r0, r1, yr, 2 * d->OW); /* reads 2*OW <= W floats a row */
    } else if (d->sw == 2) {
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = pv_cpu_max_nan(pv_cpu_max_nan(r0[2 * ox], r0[2 * ox + 1]),
                                pv_cpu_max_nan(r1[2 * ox], r1[2 * ox + 1]));
    } else if (d->sw == 1 && j->row1) {
      j->row1(r0, r1, yr, d->OW); /* reads OW + 1 <= W (+ pad) floats a row */
    } else if (d->sw == 1) {
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = pv_cpu_max_nan(pv_cpu_max_nan(r0[ox], r0[ox + 1]),
                                pv_cpu_max_nan(r1[ox], r1[ox + 1]));
    } else {
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = pv_cpu_max_nan(pv_cpu_max_nan(r0[ox * d->sw], r0[ox * d->sw + 1]),
                                pv_cpu_max_nan(r1[ox * d->sw], r1[ox * d->sw + 1]));
    }
  }
}

static void mp_item(void *arg, int64_t pl, int tid) {
  const mp_job *j = arg;
  if (j->row3 && mp_plane_3x3(j, pl, tid)) return;
  j->k2 ? mp_plane_2x2(j, pl) : mp_plane(j, pl);
}

void pv_cpu_maxpool(pv_cpu_pool *pool, const pv_cpu_isa *isa,
                    const pv_cpu_pool2d *d, const float *x, float *y) {
  bool v512 = isa == &pv_cpu_isa_avx512, v256 = isa == &pv_cpu_isa_avx2;
  mp_job j = {d, x, y,
              v512 ? pv_cpu_pool2_avx512 : v256 ? pv_cpu_pool2_avx2 : NULL,
              v512 ? pv_cpu_pool2s1_avx512 : v256 ? pv_cpu_pool2s1_avx2 : NULL,
              false, NULL, pool, 0, 0};
  /* 3x3, stride 1 or 2, no dilation: padded rows cover every window,
   * (O-1)*s + 3 of them, and the pads fit inside. */
  if (v512 && d->kh == 3 && d->kw == 3 && d->dh == 1 && d->dw == 1 &&
      d->sh == d->sw && (d->sw == 1 || d->sw == 2)) {
    j.Hp = (d->OH - 1) * d->sh + 3;
    j.Wp = (d->OW - 1) * d->sw + 3;
    if (d->ph <= j.Hp && d->pw <= j.Wp) j.row3 = pv_cpu_pool3_avx512;
  }
  /* A plane is little work: keep small layers on fewer threads. */
  int64_t work = d->planes * d->OH * d->OW * d->kh * d->kw;
  int use = (int)(work / 65536) + 1;
  /* The windows of the last row and column lie inside the input. */
  int64_t over = d->padc ? 1 : 0; /* pad rows and columns past the end */
  bool k2 = d->kh == 2 && d->kw == 2 && d->dh == 1 && d->dw == 1 && !d->ph &&
            !d->pw && (d->OH - 1) * d->sh + 2 <= d->H + over &&
            (d->OW - 1) * d->sw + 2 <= d->W + over &&
            (!d->padc || d->W <= MP_PADROW_MAX);
  j.k2 = k2;
  pv_cpu_pool_run_blocked(pool, d->planes, use, mp_item, &j);
}
