/* Depthwise convolution, direct: one channel per work item. A depthwise
 * layer has kh*kw multiply-adds per output, too few for a GEMM to pay for
 * its packing. The interior (no padding checks) runs a tight loop the
 * compiler vectorises for stride 1. */
#include "cpu-impl.h"

typedef struct dw_job {
  const pv_cpu_dwconv *d;
  const float *x, *w;
  float *y;
  const pv_cpu_out *out;
} dw_job;

PV_CPU_CLONES static void dw_channel(void *arg, int64_t c, int tid) {
  (void)tid;
  const dw_job *j = arg;
  const pv_cpu_dwconv *d = j->d;
  const float *x = j->x + c * d->H * d->W;
  const float *w = j->w + c * d->kh * d->kw;
  float *y = j->y + c * d->OH * d->OW;
  float bias = j->out->bias ? j->out->bias[c] : 0.0f;
  for (int64_t oy = 0; oy < d->OH; oy++) {
    float *yr = y + oy * d->OW;
    for (int64_t ox = 0; ox < d->OW; ox++) yr[ox] = bias;
    for (int64_t ky = 0; ky < d->kh; ky++) {
      int64_t iy = oy * d->sh - d->ph + ky * d->dh;
      if (iy < 0 || iy >= d->H) continue;
      const float *xr = x + iy * d->W;
      for (int64_t kx = 0; kx < d->kw; kx++) {
        float wv = w[ky * d->kw + kx];
        int64_t off = kx * d->dw - d->pw;
        /* ox range where 0 <= ox*sw + off < W */
        int64_t lo = off < 0 ? (-off + d->sw - 1) / d->sw : 0;
        int64_t hi = d->W - off <= 0 ? 0 : (d->W - off + d->sw - 1) / d->sw;
        if (hi > d->OW) hi = d->OW;
        if (d->sw == 1) {
          const float *xs = xr + off;
          for (int64_t ox = lo; ox < hi; ox++) yr[ox] += wv * xs[ox];
        } else {
          for (int64_t ox = lo; ox < hi; ox++)
            yr[ox] += wv * xr[ox * d->sw + off];
        }
      }
    }
    if (j->out->act != PV_ACT_NONE)
      for (int64_t ox = 0; ox < d->OW; ox++)
        yr[ox] = pv_cpu_act1(yr[ox], j->out->act, j->out->alpha, j->out->beta);
  }
}

void pv_cpu_depthwise(pv_cpu_pool *pool, const pv_cpu_dwconv *d,
                      const float *x, const float *w, float *y,
                      const pv_cpu_out *out) {
  dw_job j = {d, x, w, y, out};
  pv_cpu_pool_run(pool, d->C, dw_channel, &j);
}
