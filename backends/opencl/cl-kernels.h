/* OpenCL C source of every kernel of the OpenCL backend, as one string
 * compiled once per device (and cached as a binary on disk).
 *
 * Written for Arm Mali as Arm's guides advise: no local memory (it is
 * ordinary global memory there), each work-item computes a few outputs
 * to reuse the weight it loaded, work-group sizes a multiple of 4 chosen
 * by the host, and every pivoted layer is one launch over all its blocks.
 * Activation codes are the values of enum pv_act.
 */
#ifndef PV_CL_KERNELS_H
#define PV_CL_KERNELS_H

#define PV_CL_STR(...) #__VA_ARGS__

static const char pv_cl_source[] = PV_CL_STR(

float pv_act(float v, int act, float a, float b) {
  if (act == 1) return v > 0.0f ? v : 0.0f;
  if (act == 2) return v < 0.0f ? v * a : v;
  if (act == 3) return fmin(fmax(v, a), b);
  if (act == 4) return 1.0f / (1.0f + exp(-v));
  if (act == 5) return tanh(v);
  return v;
}

__kernel void pv_gemm(__global const float *x, __global const float *w,
                      __global const float *bias, __global float *y, int M, int K,
                      int P, int S, int act, float a, float b) {
  int m = get_global_id(0);
  int p0 = get_global_id(1) * 4;
  if (m >= M || p0 >= P) return;
  int np = min(4, P - p0);
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  __global const float *wr = w + (size_t)m * K;
  __global const float *x0 = x + (size_t)p0 * K;
  __global const float *x1 = x0 + (np > 1 ? K : 0);
  __global const float *x2 = x0 + (np > 2 ? 2 * K : 0);
  __global const float *x3 = x0 + (np > 3 ? 3 * K : 0);
  for (int k = 0; k < K; k++) {
    float wv = wr[k];
    acc0 += wv * x0[k];
    acc1 += wv * x1[k];
    acc2 += wv * x2[k];
    acc3 += wv * x3[k];
  }
  float acc[4] = {acc0, acc1, acc2, acc3};
  for (int j = 0; j < np; j++) {
    int p = p0 + j;
    y[(size_t)(p / S) * M * S + (size_t)m * S + p % S] = pv_act(acc[j] + bias[m], act, a, b);
  }
}

__kernel void pv_pivot(__global const float *x, __global const float *data,
                       __global const int *row_off, __global const int *rg_blk,
                       __global const int *row_rg, __global const int *blk_c,
                       __global const ulong *blk_off, __global const int *in_ch,
                       __global const int *out_row, __global const float *bias,
                       __global float *y, int M, int kk, int Kx, int P, int S, int act,
                       float a, float b) {
  int i = get_global_id(0);
  int p0 = get_global_id(1) * 4;
  if (i >= M || p0 >= P) return;
  int np = min(4, P - p0);
  int rg = row_rg[i];
  int r = i - row_off[rg];
  float acc0 = 0.0f, acc1 = 0.0f, acc2 = 0.0f, acc3 = 0.0f;
  __global const float *x0 = x + (size_t)p0 * Kx;
  __global const float *x1 = x0 + (np > 1 ? Kx : 0);
  __global const float *x2 = x0 + (np > 2 ? 2 * Kx : 0);
  __global const float *x3 = x0 + (np > 3 ? 3 * Kx : 0);
  for (int bi = rg_blk[rg]; bi < rg_blk[rg + 1]; bi++) {
    int c0 = blk_c[2 * bi], c1 = blk_c[2 * bi + 1];
    int wdt = (c1 - c0) * kk;
    __global const float *wr = data + blk_off[bi] + (size_t)r * wdt;
    for (int c = c0; c < c1; c++) {
      int xc = in_ch[c] * kk;
      __global const float *wc = wr + (c - c0) * kk;
      for (int t = 0; t < kk; t++) {
        float wv = wc[t];
        acc0 += wv * x0[xc + t];
        acc1 += wv * x1[xc + t];
        acc2 += wv * x2[xc + t];
        acc3 += wv * x3[xc + t];
      }
    }
  }
  float acc[4] = {acc0, acc1, acc2, acc3};
  int orow = out_row[i];
  for (int j = 0; j < np; j++) {
    int p = p0 + j;
    y[(size_t)(p / S) * M * S + (size_t)orow * S + p % S] = pv_act(acc[j] + bias[i], act, a, b);
  }
}

__kernel void pv_im2col(__global const float *x, __global float *col, int C, int H, int W,
                        int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                        int dh, int dw, int P) {
  int k = get_global_id(0);
  int p = get_global_id(1);
  int kk = kh * kw, Kx = C * kk;
  if (k >= Kx || p >= P) return;
  int c = k / kk, t = k % kk, ki = t / kw, kj = t % kw;
  int n = p / (OH * OW), q = p % (OH * OW), oh = q / OW, ow = q % OW;
  int ih = oh * sh - ph + ki * dh, iw = ow * sw - pw + kj * dw;
  col[(size_t)p * Kx + k] = (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                ? x[(((size_t)n * C + c) * H + ih) * W + iw]
                                : 0.0f;
}

__kernel void pv_conv(__global const float *x, __global const float *w,
                      __global const float *bias, __global float *y, int N, int C, int H,
                      int W, int M, int OH, int OW, int kh, int kw, int sh, int sw, int ph,
                      int pw, int dh, int dw, int group, int act, float a, float b) {
  size_t idx = get_global_id(0);
  size_t total = (size_t)N * M * OH * OW;
  if (idx >= total) return;
  int ow = idx % OW;
  size_t r = idx / OW;
  int oh = r % OH;
  r /= OH;
  int m = r % M;
  int n = r / M;
  int cg = C / group, mg = M / group, g = m / mg;
  float acc = bias[m];
  int ih0 = oh * sh - ph, iw0 = ow * sw - pw;
  for (int c = 0; c < cg; c++) {
    __global const float *xc = x + ((size_t)n * C + g * cg + c) * H * W;
    __global const float *wc = w + ((size_t)m * cg + c) * kh * kw;
    for (int ki = 0; ki < kh; ki++) {
      int ih = ih0 + ki * dh;
      if (ih < 0 || ih >= H) continue;
      for (int kj = 0; kj < kw; kj++) {
        int iw = iw0 + kj * dw;
        if (iw < 0 || iw >= W) continue;
        acc += wc[ki * kw + kj] * xc[ih * W + iw];
      }
    }
  }
  y[idx] = pv_act(acc, act, a, b);
}

__kernel void pv_pool(__global const float *x, __global float *y, int NC, int H, int W,
                      int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                      int ph1, int pw1, int is_max, int cip, int act, float a, float b) {
  size_t idx = get_global_id(0);
  if (idx >= (size_t)NC * OH * OW) return;
  int ow = idx % OW;
  int oh = (idx / OW) % OH;
  size_t nc = idx / ((size_t)OW * OH);
  int hs = oh * sh - ph, ws = ow * sw - pw;
  int he = min(hs + kh, H + ph1), we = min(ws + kw, W + pw1);
  int pool = (he - hs) * (we - ws);
  int h0 = max(hs, 0), w0 = max(ws, 0), h1 = min(he, H), w1 = min(we, W);
  __global const float *xc = x + nc * H * W;
  float acc = is_max ? -INFINITY : 0.0f;
  for (int ih = h0; ih < h1; ih++)
    for (int iw = w0; iw < w1; iw++) {
      float v = xc[ih * W + iw];
      acc = is_max ? fmax(acc, v) : acc + v;
    }
  if (!is_max) {
    int cnt = cip ? pool : (h1 - h0) * (w1 - w0);
    acc = cnt > 0 ? acc / (float)cnt : 0.0f;
  }
  y[idx] = pv_act(acc, act, a, b);
}

__kernel void pv_gap(__global const float *x, __global float *y, int NC, int HW, int act,
                     float a, float b) {
  int i = get_global_id(0);
  if (i >= NC) return;
  __global const float *xc = x + (size_t)i * HW;
  float s = 0.0f;
  for (int k = 0; k < HW; k++) s += xc[k];
  y[i] = pv_act(s / (float)HW, act, a, b);
}

__kernel void pv_binary(__global const float *x, __global const float *x2,
                        __global float *y, int d1, int d2, int d3, int a0, int a1,
                        int a2, int a3, int b0, int b1, int b2, int b3, int total, int op,
                        int act, float a, float b) {
  int i = get_global_id(0);
  if (i >= total) return;
  int i3 = i % d3, r = i / d3;
  int i2 = r % d2;
  r /= d2;
  int i1 = r % d1, i0 = r / d1;
  float u = x[i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3];
  float v = x2[i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3];
  float o = op == 0 ? u + v : op == 1 ? u - v : op == 2 ? u * v : u / v;
  y[i] = pv_act(o, act, a, b);
}

__kernel void pv_unary(__global const float *x, __global float *y, int total, int act,
                       float a, float b) {
  int i = get_global_id(0);
  if (i >= total) return;
  y[i] = pv_act(x[i], act, a, b);
}

__kernel void pv_upsample(__global const float *x, __global float *y, int H, int W, int fh,
                          int fw, int total) {
  int i = get_global_id(0);
  if (i >= total) return;
  int OW = W * fw, OH = H * fh;
  int ow = i % OW, oh = (i / OW) % OH, nc = i / (OW * OH);
  y[i] = x[((size_t)nc * H + oh / fh) * W + ow / fw];
}

__kernel void pv_pad(__global const float *x, __global float *y, int H, int W, int OH, int OW,
                     int pt, int pl, float value, int total) {
  int i = get_global_id(0);
  if (i >= total) return;
  int ow = i % OW, oh = (i / OW) % OH, nc = i / (OW * OH);
  int ih = oh - pt, iw = ow - pl;
  y[i] = (ih >= 0 && ih < H && iw >= 0 && iw < W) ? x[((size_t)nc * H + ih) * W + iw] : value;
}

__kernel void pv_concat(__global const float *x, __global float *y, int in_len,
                        int out_len, int off, int total) {
  int i = get_global_id(0);
  if (i >= total) return;
  int o = i / in_len, r = i % in_len;
  y[(size_t)o * out_len + off + r] = x[i];
}

);

#endif
