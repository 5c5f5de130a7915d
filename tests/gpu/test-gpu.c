/* A GPU backend (BACKEND: "opencl" or "cuda") against naive CPU
 * references: every kernel on awkward sizes, a small partitioned graph
 * (Conv+Relu+MaxPool, then Gemm and a pivoted Gemm) with intermediate
 * values kept on the device, bad input, and for OpenCL the program binary
 * cache and a kernel that fails to build. Exit 77 (skip) without a device.
 */
#include <dirent.h>
#include <unistd.h>

#include "gpu-test.h"

#ifndef BACKEND
#define BACKEND "opencl"
#endif

static const pv_backend_iface *it;
static void *ctx;
static const double TOL = 2e-5;

static void test_gemm(bool transB, bool bias, float alpha, float beta, int P, int M, int K,
                      pv_act act) {
  tg t;
  tg_init(&t);
  int64_t xd[] = {P, K}, wd[] = {transB ? M : K, transB ? K : M}, bd[] = {M}, yd[] = {P, M};
  int x = tg_val(&t, "x", 2, xd, true);
  float *w = malloc(sizeof(float) * M * K), *bb = malloc(sizeof(float) * M);
  fill(w, (size_t)M * K);
  fill(bb, M);
  int wv = tg_const(&t, "w", 2, wd, w);
  int in[3] = {x, wv, bias ? tg_const(&t, "b", 1, bd, bb) : -1};
  int y = tg_val(&t, "y", 2, yd, false);
  int n = tg_node(&t, "Gemm", in, bias ? 3 : 2, y);
  tg_int(&t, n, "transB", transB);
  tg_float(&t, n, "alpha", alpha);
  tg_float(&t, n, "beta", beta);
  t.g->nodes[n].act = act;
  t.g->nodes[n].act_alpha = 0.1f;
  tg_output(&t, y);
  /* Logical [M,K] weights with alpha, bias with beta, for the reference. */
  float *wl = malloc(sizeof(float) * M * K), *bl = malloc(sizeof(float) * M);
  for (int m = 0; m < M; m++) {
    bl[m] = beta * bb[m];
    for (int k = 0; k < K; k++)
      wl[(size_t)m * K + k] = alpha * (transB ? w[(size_t)m * K + k] : w[(size_t)k * M + m]);
  }
  float *ref = malloc(sizeof(float) * P * M);
  ref_gemm(t.vals[x].data, wl, bias ? bl : NULL, ref, P, M, K, act, 0.1f, 0);
  CHECK(it->supports(ctx, t.g, &t.g->nodes[n]), "Gemm supported");
  int rc = tg_run(&t, it, ctx, &n, 1);
  CHECK(rc == 0, "gemm run");
  double e = rel_err(t.vals[y].data, ref, (size_t)P * M);
  CHECK(e < TOL, "gemm P=%d M=%d K=%d transB=%d: error %g", P, M, K, transB, e);
  free(w), free(bb), free(wl), free(bl), free(ref);
  tg_free(&t);
}

/* Pivoted Gemm on a grid with uneven groups; conn selects the blocks
 * (block diagonal, or c of n column groups per row group). With
 * `folded`, the input and output carry channel permutations
 * (value.chan_perm), which must not change the result. */
static void test_pivot_gemm(int P, int M, int C, int nr, int nc, const int *ro, const int *co,
                            const int *conn, bool folded) {
  tg t;
  tg_init(&t);
  float *dense;
  pv_pivot *pv = make_pivot(M, C, 1, nr, nc, ro, co, conn, &dense);
  int64_t xd[] = {P, C}, wd[] = {M, C}, bd[] = {M}, yd[] = {P, M};
  int x = tg_val(&t, "x", 2, xd, true);
  int wv = tg_const(&t, "w", 2, wd, NULL);
  pv_free(t.g->values[wv].data); /* pivot-only, as in a .pvm */
  t.g->values[wv].data = NULL;
  t.vals[wv].data = NULL;
  t.g->values[wv].pivot = pv;
  float bb[512];
  fill(bb, M);
  int in[3] = {x, wv, tg_const(&t, "b", 1, bd, bb)};
  int y = tg_val(&t, "y", 2, yd, false);
  int n = tg_node(&t, "Gemm", in, 3, y);
  tg_int(&t, n, "transB", 1);
  t.g->nodes[n].act = PV_ACT_RELU;
  tg_output(&t, y);
  float *xl = malloc(sizeof(float) * P * C), *ref = malloc(sizeof(float) * P * M);
  memcpy(xl, t.vals[x].data, sizeof(float) * P * C);
  if (folded) {
    /* A folded graph is an ordinary graph in stored order (docs/PIVOT.md):
     * value.chan_perm only records which logical channel each stored one
     * holds, so the result must be the plain pivot formula, unchanged. */
    int32_t *ip = malloc(sizeof(int32_t) * C), *op = malloc(sizeof(int32_t) * M);
    for (int c = 0; c < C; c++) ip[c] = (c * 7 + 3) % C;
    for (int m = 0; m < M; m++) op[m] = M - 1 - m;
    t.g->values[x].chan_perm = ip;
    t.g->values[x].chan_perm_n = C;
    t.g->values[y].chan_perm = op;
    t.g->values[y].chan_perm_n = M;
  }
  ref_gemm(xl, dense, bb, ref, P, M, C, PV_ACT_RELU, 0, 0);
  CHECK(it->supports(ctx, t.g, &t.g->nodes[n]), "pivoted Gemm supported");
  int rc = tg_run(&t, it, ctx, &n, 1);
  CHECK(rc == 0, "pivot run");
  double e = rel_err(t.vals[y].data, ref, (size_t)P * M);
  CHECK(e < TOL, "pivoted gemm P=%d M=%d C=%d %dx%d folded=%d: error %g", P, M, C, nr, nc,
        folded, e);
  free(dense), free(xl), free(ref);
  tg_free(&t);
}

static void test_conv(convp c, bool pivoted, pv_act act) {
  tg t;
  tg_init(&t);
  c.OH = (c.H + 2 * c.ph - c.dh * (c.kh - 1) - 1) / c.sh + 1;
  c.OW = (c.W + 2 * c.pw - c.dw * (c.kw - 1) - 1) / c.sw + 1;
  int cg = c.C / c.group;
  int64_t xd[] = {c.N, c.C, c.H, c.W}, wd[] = {c.M, cg, c.kh, c.kw}, bd[] = {c.M},
          yd[] = {c.N, c.M, c.OH, c.OW};
  int x = tg_val(&t, "x", 4, xd, true);
  float *w = malloc(sizeof(float) * c.M * cg * c.kh * c.kw), bb[256];
  fill(w, (size_t)c.M * cg * c.kh * c.kw);
  fill(bb, c.M);
  int wv = tg_const(&t, "w", 4, wd, w);
  if (pivoted) {
    int ro[] = {0, c.M / 3, c.M}, co[] = {0, c.C / 2, c.C}, conn[] = {1, 0, 1, 1};
    float *dense;
    t.g->values[wv].pivot = make_pivot(c.M, c.C, c.kh * c.kw, 2, 2, ro, co, conn, &dense);
    memcpy(w, dense, sizeof(float) * c.M * c.C * c.kh * c.kw);
    memcpy(t.g->values[wv].data, dense, sizeof(float) * c.M * c.C * c.kh * c.kw);
    free(dense);
  }
  int in[3] = {x, wv, tg_const(&t, "b", 1, bd, bb)};
  int y = tg_val(&t, "y", 4, yd, false);
  int n = tg_node(&t, "Conv", in, 3, y);
  int64_t st[] = {c.sh, c.sw}, pa[] = {c.ph, c.pw, c.ph, c.pw}, di[] = {c.dh, c.dw},
          ks[] = {c.kh, c.kw};
  tg_ints(&t, n, "strides", st, 2);
  tg_ints(&t, n, "pads", pa, 4);
  tg_ints(&t, n, "dilations", di, 2);
  tg_ints(&t, n, "kernel_shape", ks, 2);
  tg_int(&t, n, "group", c.group);
  t.g->nodes[n].act = act;
  t.g->nodes[n].act_alpha = 0.1f;
  t.g->nodes[n].act_beta = 0.5f;
  tg_output(&t, y);
  size_t ny = (size_t)numel(4, yd);
  float *ref = malloc(sizeof(float) * ny);
  ref_conv(&c, t.vals[x].data, w, bb, ref, act, 0.1f, 0.5f);
  CHECK(it->supports(ctx, t.g, &t.g->nodes[n]), "Conv supported");
  int rc = tg_run(&t, it, ctx, &n, 1);
  CHECK(rc == 0, "conv run");
  double e = rel_err(t.vals[y].data, ref, ny);
  CHECK(e < TOL, "conv C=%d M=%d k=%dx%d s=%d g=%d pivoted=%d: error %g", c.C, c.M, c.kh,
        c.kw, c.sh, c.group, pivoted, e);
  free(w), free(ref);
  tg_free(&t);
}

/* MaxPool / AveragePool with pads; OH/OW given (ceil_mode shapes). */
static void test_pool(const char *op, int N, int C, int H, int W, int k, int s, int pad,
                      int pad2, int OH, int OW, int cip) {
  tg t;
  tg_init(&t);
  int64_t xd[] = {N, C, H, W}, yd[] = {N, C, OH, OW};
  int x = tg_val(&t, "x", 4, xd, true);
  int y = tg_val(&t, "y", 4, yd, false);
  int n = tg_node(&t, op, &x, 1, y);
  int64_t ks[] = {k, k}, st[] = {s, s}, pa[] = {pad, pad, pad2, pad2};
  tg_ints(&t, n, "kernel_shape", ks, 2);
  tg_ints(&t, n, "strides", st, 2);
  tg_ints(&t, n, "pads", pa, 4);
  tg_int(&t, n, "count_include_pad", cip);
  tg_output(&t, y);
  bool mx = op[0] == 'M';
  size_t ny = (size_t)N * C * OH * OW;
  float *ref = malloc(sizeof(float) * ny), *xs = t.vals[x].data;
  for (int nc = 0; nc < N * C; nc++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        double acc = mx ? -INFINITY : 0;
        int cnt = 0, tot = 0;
        for (int i = 0; i < k; i++)
          for (int j = 0; j < k; j++) {
            int ih = oh * s - pad + i, iw = ow * s - pad + j;
            if (ih < H + pad2 && iw < W + pad2) tot++;
            if (ih < 0 || iw < 0 || ih >= H || iw >= W) continue;
            float v = xs[((size_t)nc * H + ih) * W + iw];
            acc = mx ? fmax(acc, v) : acc + v;
            cnt++;
          }
        ref[((size_t)nc * OH + oh) * OW + ow] = (float)(mx ? acc : acc / (cip ? tot : cnt));
      }
  int rc = tg_run(&t, it, ctx, &n, 1);
  CHECK(rc == 0, "%s run", op);
  double e = rel_err(t.vals[y].data, ref, ny);
  CHECK(e < TOL, "%s k=%d s=%d pad=%d cip=%d: error %g", op, k, s, pad, cip, e);
  free(ref);
  tg_free(&t);
}

static void test_elementwise(void) {
  tg t;
  tg_init(&t);
  int64_t ad[] = {2, 3, 5, 7}, bd[] = {3, 1, 1}, cd[] = {1};
  int a = tg_val(&t, "a", 4, ad, true);
  float cb[3];
  fill(cb, 3);
  int b = tg_const(&t, "b", 3, bd, cb);
  float sc = 0.75f;
  int c = tg_const(&t, "c", 1, cd, &sc);
  int y1 = tg_val(&t, "y1", 4, ad, false), y2 = tg_val(&t, "y2", 4, ad, false),
      y3 = tg_val(&t, "y3", 4, ad, false), y4 = tg_val(&t, "y4", 4, ad, false),
      y5 = tg_val(&t, "y5", 4, ad, false), y6 = tg_val(&t, "y6", 4, ad, false),
      y7 = tg_val(&t, "y7", 4, ad, false);
  int nodes[8];
  nodes[0] = tg_node(&t, "Add", (int[]){a, b}, 2, y1);            /* channel broadcast */
  nodes[1] = tg_node(&t, "Mul", (int[]){y1, a}, 2, y2);           /* same shape */
  nodes[2] = tg_node(&t, "Sub", (int[]){c, y2}, 2, y3);           /* scalar first */
  nodes[3] = tg_node(&t, "Div", (int[]){y3, c}, 2, y4);
  nodes[4] = tg_node(&t, "LeakyRelu", &y4, 1, y5);
  tg_float(&t, nodes[4], "alpha", 0.2f);
  nodes[5] = tg_node(&t, "Clip", &y5, 1, y6);
  tg_float(&t, nodes[5], "min", -0.3f);
  tg_float(&t, nodes[5], "max", 0.4f);
  nodes[6] = tg_node(&t, "Sigmoid", &y6, 1, y7);
  t.g->nodes[nodes[6]].act = PV_ACT_NONE;
  tg_output(&t, y7);
  tg_output(&t, y2);
  size_t n = (size_t)numel(4, ad);
  float *r2 = malloc(sizeof(float) * n), *r7 = malloc(sizeof(float) * n), *as = t.vals[a].data;
  for (size_t i = 0; i < n; i++) {
    int ch = (int)(i / 35) % 3;
    double v1 = as[i] + cb[ch], v2 = v1 * as[i], v3 = sc - v2, v4 = v3 / sc;
    double v5 = v4 < 0 ? 0.2 * v4 : v4, v6 = v5 < -0.3 ? -0.3 : v5 > 0.4 ? 0.4 : v5;
    r2[i] = (float)v2;
    r7[i] = (float)(1 / (1 + exp(-v6)));
  }
  int rc = tg_run(&t, it, ctx, nodes, 7);
  CHECK(rc == 0, "element-wise chain");
  CHECK(rel_err(t.vals[y7].data, r7, n) < TOL, "chain result");
  CHECK(rel_err(t.vals[y2].data, r2, n) < TOL, "graph output in the middle of the chain");
  /* y1 is read only inside the partition: it stays on the device. */
  CHECK(((float *)t.vals[y1].data)[0] == -12345.0f, "intermediate copied back needlessly");
  free(r2), free(r7);
  tg_free(&t);
}

static void test_concat_gap(void) {
  tg t;
  tg_init(&t);
  int64_t d1[] = {2, 3, 4, 5}, d2[] = {2, 1, 4, 5}, d3[] = {2, 5, 4, 5}, dy[] = {2, 9, 4, 5},
          dg[] = {2, 9, 1, 1};
  int a = tg_val(&t, "a", 4, d1, true), b = tg_val(&t, "b", 4, d2, true),
      c = tg_val(&t, "c", 4, d3, true);
  int y = tg_val(&t, "y", 4, dy, false), z = tg_val(&t, "z", 4, dg, false);
  int nodes[2];
  nodes[0] = tg_node(&t, "Concat", (int[]){a, b, c}, 3, y);
  tg_int(&t, nodes[0], "axis", 1);
  nodes[1] = tg_node(&t, "GlobalAveragePool", &y, 1, z);
  tg_output(&t, z);
  tg_output(&t, y);
  float ry[360], rz[18];
  const float *src[] = {t.vals[a].data, t.vals[b].data, t.vals[c].data};
  int ch[] = {3, 1, 5};
  for (int n = 0; n < 2; n++) {
    int off = 0;
    for (int i = 0; i < 3; i++) {
      memcpy(ry + (n * 9 + off) * 20, src[i] + n * ch[i] * 20, sizeof(float) * ch[i] * 20);
      off += ch[i];
    }
  }
  for (int i = 0; i < 18; i++) {
    double s = 0;
    for (int k = 0; k < 20; k++) s += ry[i * 20 + k];
    rz[i] = (float)(s / 20);
  }
  int rc = tg_run(&t, it, ctx, nodes, 2);
  CHECK(rc == 0, "concat+gap");
  CHECK(rel_err(t.vals[y].data, ry, 360) < TOL, "concat");
  CHECK(rel_err(t.vals[z].data, rz, 18) < TOL, "global average pool");
  tg_free(&t);
}

/* Conv+Relu+MaxPool as one partition, Gemm(+relu)+pivoted Gemm as a second
 * (as if a node of another backend ran in between). */
static void test_graph(void) {
  tg t;
  tg_init(&t);
  convp c = {.N = 3, .C = 3, .H = 12, .W = 10, .M = 6, .kh = 3, .kw = 3, .sh = 1, .sw = 1,
             .ph = 1, .pw = 1, .dh = 1, .dw = 1, .group = 1, .OH = 12, .OW = 10};
  int64_t xd[] = {3, 3, 12, 10}, wd[] = {6, 3, 3, 3}, bd[] = {6}, cd[] = {3, 6, 12, 10},
          pd[] = {3, 6, 6, 5}, fd[] = {3, 180}, w2d[] = {32, 180}, b2d[] = {32}, hd[] = {3, 32},
          w3d[] = {10, 32}, od[] = {3, 10};
  int x = tg_val(&t, "x", 4, xd, true);
  float w1[162], b1[6], *w2 = malloc(sizeof(float) * 32 * 180), b2[32];
  fill(w1, 162), fill(b1, 6), fill(w2, 32 * 180), fill(b2, 32);
  int wv1 = tg_const(&t, "w1", 4, wd, w1), bv1 = tg_const(&t, "b1", 1, bd, b1);
  int cv = tg_val(&t, "conv", 4, cd, false), rv = tg_val(&t, "relu", 4, cd, false),
      pv = tg_val(&t, "pool", 4, pd, false);
  int n0 = tg_node(&t, "Conv", (int[]){x, wv1, bv1}, 3, cv);
  int64_t ks[] = {3, 3}, pads[] = {1, 1, 1, 1}, k2[] = {2, 2};
  tg_ints(&t, n0, "kernel_shape", ks, 2);
  tg_ints(&t, n0, "pads", pads, 4);
  int n1 = tg_node(&t, "Relu", &cv, 1, rv);
  int n2 = tg_node(&t, "MaxPool", &rv, 1, pv);
  tg_ints(&t, n2, "kernel_shape", k2, 2);
  tg_ints(&t, n2, "strides", k2, 2);
  /* Flatten, on the CPU: a second value over the same bytes. */
  int fv = tg_val(&t, "flat", 2, fd, false);
  int n3 = tg_node(&t, "Flatten", &pv, 1, fv);
  int wv2 = tg_const(&t, "w2", 2, w2d, w2), bv2 = tg_const(&t, "b2", 1, b2d, b2);
  int hv = tg_val(&t, "hidden", 2, hd, false);
  int n4 = tg_node(&t, "Gemm", (int[]){fv, wv2, bv2}, 3, hv);
  tg_int(&t, n4, "transB", 1);
  t.g->nodes[n4].act = PV_ACT_RELU;
  int ro[] = {0, 5, 10}, co[] = {0, 16, 32}, conn[] = {1, 0, 0, 1};
  float *dense;
  pv_pivot *piv = make_pivot(10, 32, 1, 2, 2, ro, co, conn, &dense);
  int wv3 = tg_const(&t, "w3", 2, w3d, dense);
  t.g->values[wv3].pivot = piv;
  int ov = tg_val(&t, "out", 2, od, false);
  int n5 = tg_node(&t, "Gemm", (int[]){hv, wv3}, 2, ov);
  tg_int(&t, n5, "transB", 1);
  tg_output(&t, ov);
  CHECK(it->supports(ctx, t.g, &t.g->nodes[n3]), "Flatten runs on the device");
  /* Reference. */
  float rc_[3 * 6 * 12 * 10], rp[540], rh[96], ro_[30];
  ref_conv(&c, t.vals[x].data, w1, b1, rc_, PV_ACT_RELU, 0, 0);
  for (int i = 0; i < 18; i++)
    for (int oh = 0; oh < 6; oh++)
      for (int ow = 0; ow < 5; ow++) {
        float m = -INFINITY;
        for (int a = 0; a < 2; a++)
          for (int b = 0; b < 2; b++) m = fmaxf(m, rc_[(i * 12 + oh * 2 + a) * 10 + ow * 2 + b]);
        rp[(i * 6 + oh) * 5 + ow] = m;
      }
  ref_gemm(rp, w2, b2, rh, 3, 32, 180, PV_ACT_RELU, 0, 0);
  ref_gemm(rh, dense, NULL, ro_, 3, 10, 32, PV_ACT_NONE, 0, 0);
  int part1[] = {n0, n1, n2}, part2[] = {n4, n5};
  int rc = tg_run(&t, it, ctx, part1, 3);
  CHECK(rc == 0, "partition 1");
  CHECK(rel_err(t.vals[pv].data, rp, 540) < TOL, "conv+relu+maxpool");
  CHECK(((float *)t.vals[cv].data)[7] == -12345.0f && ((float *)t.vals[rv].data)[7] == -12345.0f,
        "conv/relu outputs stay on the device");
  memcpy(t.vals[fv].data, t.vals[pv].data, sizeof rp);
  rc = tg_run(&t, it, ctx, part2, 2);
  CHECK(rc == 0, "partition 2");
  CHECK(((float *)t.vals[hv].data)[0] == -12345.0f, "hidden stays on the device");
  double e = rel_err(t.vals[ov].data, ro_, 30);
  CHECK(e < TOL, "gemm+pivoted gemm: error %g", e);

  /* The batch changes between runs: dims come from the run context. */
  t.vals[x].dims[0] = 1;
  t.vals[cv].dims[0] = t.vals[rv].dims[0] = t.vals[pv].dims[0] = 1;
  float keep[540];
  memcpy(keep, t.vals[pv].data, sizeof keep);
  rc = tg_run(&t, it, ctx, part1, 3);
  CHECK(rc == 0 && rel_err(t.vals[pv].data, rp, 180) < TOL, "batch 1 after batch 3");
  CHECK(!memcmp((float *)t.vals[pv].data + 180, keep + 180, sizeof(float) * 360),
        "batch 1 writes only its rows");
  free(w2), free(dense);
  tg_free(&t);
}

static void test_bad_input(void) {
  tg t;
  tg_init(&t);
  int64_t xd[] = {2, 8}, wd[] = {4, 8}, yd[] = {2, 4};
  int x = tg_val(&t, "x", 2, xd, true);
  int ro[] = {0, 2, 4}, co[] = {0, 4, 8}, conn[] = {1, 0, 0, 1};
  float *dense;
  pv_pivot *piv = make_pivot(4, 8, 1, 2, 2, ro, co, conn, &dense);
  int wv = tg_const(&t, "w", 2, wd, dense);
  t.g->values[wv].pivot = piv;
  int y = tg_val(&t, "y", 2, yd, false);
  int n = tg_node(&t, "Gemm", (int[]){x, wv}, 2, y);
  tg_int(&t, n, "transB", 1);
  tg_output(&t, y);
  /* A block that points past the packed data. */
  piv->blocks[1].offset = piv->data_len;
  void *plan = NULL;
  int rc = it->prepare(ctx, t.g, &n, 1, &plan);
  CHECK(rc < 0 && plan == NULL && strstr(pv_errmsg(), "block 1"), "bad block offset refused");
  piv->blocks[1].offset = 8;
  piv->perm_c[0] = piv->perm_c[1];
  rc = it->prepare(ctx, t.g, &n, 1, &plan);
  CHECK(rc < 0 && strstr(pv_errmsg(), "perm_c"), "bad permutation refused");
  /* Fall back to the dense weights: a mismatched input at run time. */
  t.g->values[wv].pivot = NULL;
  pv_pivot_free(piv);
  rc = it->prepare(ctx, t.g, &n, 1, &plan);
  CHECK(rc == 0, "dense prepare");
  t.vals[x].dims[1] = 7;
  pv_run_ctx r = {.vals = t.vals, .batch = 2};
  if (!rc) {
    rc = it->execute(plan, &r);
    CHECK(rc == PV_ESHAPE, "K mismatch gives a shape error: %d", rc);
    it->release(plan);
  }
  /* Unsupported things are declined, not crashed on. */
  t.g->values[x].dtype = PV_F16;
  CHECK(!it->supports(ctx, t.g, &t.g->nodes[n]), "fp16 declined");
  free(dense);
  tg_free(&t);
}

#ifdef TEST_RESIZE_PAD
static int64_t src_index(int64_t i, float scale, bool half_pixel, int64_t in) {
  float xo = half_pixel ? ((float)i + 0.5f) / scale - 0.5f : (float)i / scale;
  int64_t j = (int64_t)floorf(xo);
  /* round_prefer_floor: only above a half goes up. */
  if (half_pixel && xo - (float)j > 0.5f) j++;
  return j < 0 ? 0 : j >= in ? in - 1 : j;
}

/* Pad (constant 0.5, asymmetric pads) -> Resize x2,x3 (asymmetric, floor)
 * -> Resize x3,x1 (half_pixel, round_prefer_floor), opset 13. */
static void test_resize_pad(void) {
  tg t;
  tg_init(&t);
  t.g->opset = 13;
  int64_t xd[] = {2, 3, 4, 5}, pd[] = {2, 3, 7, 8}, r1d[] = {2, 3, 14, 24}, r2d[] = {2, 3, 42, 24},
          nd8[] = {8}, nd4[] = {4}, nd1[] = {1}, nd0[] = {0};
  int x = tg_val(&t, "x", 4, xd, true);
  int pads = tg_const(&t, "pads", 1, nd8, NULL);
  t.g->values[pads].dtype = PV_I64;
  pv_free(t.g->values[pads].data);
  t.g->values[pads].nbytes = 8 * sizeof(int64_t);
  t.g->values[pads].data = pv_aligned_alloc(8 * sizeof(int64_t));
  t.vals[pads].data = t.g->values[pads].data;
  t.vals[pads].dtype = PV_I64;
  int64_t pv[] = {0, 0, 1, 2, 0, 0, 2, 1};
  memcpy(t.g->values[pads].data, pv, sizeof pv);
  float cv = 0.5f, s1[] = {1, 1, 2, 3}, s2[] = {1, 1, 3, 1};
  int cval = tg_const(&t, "value", 1, nd1, &cv);
  int roi = tg_const(&t, "roi", 1, nd0, NULL);
  int sc1 = tg_const(&t, "s1", 1, nd4, s1), sc2 = tg_const(&t, "s2", 1, nd4, s2);
  int pvv = tg_val(&t, "padded", 4, pd, false), r1 = tg_val(&t, "r1", 4, r1d, false),
      r2 = tg_val(&t, "r2", 4, r2d, false);
  int nodes[3];
  nodes[0] = tg_node(&t, "Pad", (int[]){x, pads, cval}, 3, pvv);
  nodes[1] = tg_node(&t, "Resize", (int[]){pvv, roi, sc1}, 3, r1);
  pv_attr a1 = {.name = "coordinate_transformation_mode", .type = PV_ATTR_STRING, .s = "asymmetric"};
  pv_attr a2 = {.name = "nearest_mode", .type = PV_ATTR_STRING, .s = "floor"};
  pv_node_add_attr(t.g, nodes[1], &a1);
  pv_node_add_attr(t.g, nodes[1], &a2);
  nodes[2] = tg_node(&t, "Resize", (int[]){r1, roi, sc2}, 3, r2);
  tg_output(&t, r2);
  for (int i = 0; i < 3; i++)
    CHECK(it->supports(ctx, t.g, &t.g->nodes[nodes[i]]), "%s supported", t.g->nodes[nodes[i]].op);
  /* Reference. */
  const float *xs = t.vals[x].data;
  float *rp = malloc(sizeof(float) * 2 * 3 * 7 * 8), *rr1 = malloc(sizeof(float) * 2 * 3 * 14 * 24),
        *rr2 = malloc(sizeof(float) * 2 * 3 * 42 * 24);
  for (int nc = 0; nc < 6; nc++) {
    for (int h = 0; h < 7; h++)
      for (int w = 0; w < 8; w++) {
        int ih = h - 1, iw = w - 2;
        rp[(nc * 7 + h) * 8 + w] = ih >= 0 && ih < 4 && iw >= 0 && iw < 5 ? xs[(nc * 4 + ih) * 5 + iw] : 0.5f;
      }
    for (int h = 0; h < 14; h++)
      for (int w = 0; w < 24; w++)
        rr1[(nc * 14 + h) * 24 + w] =
            rp[(nc * 7 + src_index(h, 2, false, 7)) * 8 + src_index(w, 3, false, 8)];
    for (int h = 0; h < 42; h++)
      for (int w = 0; w < 24; w++)
        rr2[(nc * 42 + h) * 24 + w] =
            rr1[(nc * 14 + src_index(h, 3, true, 14)) * 24 + src_index(w, 1, true, 24)];
  }
  int rc = tg_run(&t, it, ctx, nodes, 3);
  CHECK(rc == 0, "pad+resize run");
  CHECK(rel_err(t.vals[r2].data, rr2, 2 * 3 * 42 * 24) == 0, "pad + resize exact");
  /* A non-integer factor is declined, not approximated. */
  ((float *)t.g->values[sc2].data)[2] = 1.5f;
  CHECK(!it->supports(ctx, t.g, &t.g->nodes[nodes[2]]), "Resize x1.5 declined");
  free(rp), free(rr1), free(rr2);
  tg_free(&t);
}
#endif

/* x[B,3,10,10] -> Conv(+Relu) -> MaxPool -> Flatten -> Gemm -> Softmax ->
 * Sigmoid, for the runtime: Softmax is not ours, so the model splits into
 * GPU, CPU, GPU partitions. */
static pv_graph *small_model(void) {
  pv_graph *g = pv_graph_new();
  int x = pv_graph_add_value(g, "x");
  g->values[x].dtype = PV_F32;
  g->values[x].ndim = 4;
  int64_t xd[] = {PV_DIM_BATCH, 3, 10, 10};
  memcpy(g->values[x].dims, xd, sizeof xd);
  int64_t wd[] = {6, 3, 3, 3}, bd[] = {6}, w2d[] = {5, 150}, b2d[] = {5};
  int dims_n[] = {4, 1, 2, 1};
  const int64_t *dims[] = {wd, bd, w2d, b2d};
  const char *names[] = {"w1", "b1", "w2", "b2"};
  int c[4];
  uint64_t saved = rng_state;
  rng_state = 12345; /* the same weights for every model built */
  for (int i = 0; i < 4; i++) {
    c[i] = pv_graph_add_value(g, names[i]);
    pv_value *v = &g->values[c[i]];
    v->dtype = PV_F32;
    v->ndim = dims_n[i];
    memcpy(v->dims, dims[i], sizeof(int64_t) * dims_n[i]);
    v->nbytes = (size_t)numel(dims_n[i], dims[i]) * sizeof(float);
    v->data = pv_aligned_alloc(v->nbytes);
    fill(v->data, v->nbytes / sizeof(float));
  }
  rng_state = saved;
  int cv = pv_graph_add_value(g, "conv"), pv = pv_graph_add_value(g, "pool"),
      fv = pv_graph_add_value(g, "flat"), hv = pv_graph_add_value(g, "fc"),
      y = pv_graph_add_value(g, "y");
  int n0 = pv_graph_add_node(g, "conv", "Conv", (int[]){x, c[0], c[1]}, 3, &cv, 1);
  int64_t ks[] = {3, 3}, pads[] = {1, 1, 1, 1}, k2[] = {2, 2};
  pv_node_add_attr(g, n0, &(pv_attr){.name = "kernel_shape", .type = PV_ATTR_INTS, .ints = ks, .n = 2});
  pv_node_add_attr(g, n0, &(pv_attr){.name = "pads", .type = PV_ATTR_INTS, .ints = pads, .n = 4});
  g->nodes[n0].act = PV_ACT_RELU;
  int n1 = pv_graph_add_node(g, "pool", "MaxPool", &cv, 1, &pv, 1);
  pv_node_add_attr(g, n1, &(pv_attr){.name = "kernel_shape", .type = PV_ATTR_INTS, .ints = k2, .n = 2});
  pv_node_add_attr(g, n1, &(pv_attr){.name = "strides", .type = PV_ATTR_INTS, .ints = k2, .n = 2});
  pv_graph_add_node(g, "flatten", "Flatten", &pv, 1, &fv, 1);
  int n3 = pv_graph_add_node(g, "fc", "Gemm", (int[]){fv, c[2], c[3]}, 3, &hv, 1);
  pv_node_add_attr(g, n3, &(pv_attr){.name = "transB", .type = PV_ATTR_INT, .i = 1});
  int sv = pv_graph_add_value(g, "softmax");
  pv_graph_add_node(g, "softmax", "Softmax", &hv, 1, &sv, 1);
  pv_graph_add_node(g, "sigmoid", "Sigmoid", &sv, 1, &y, 1);
  g->inputs = malloc(sizeof(int));
  g->inputs[0] = x;
  g->n_inputs = 1;
  g->outputs = malloc(sizeof(int));
  g->outputs[0] = y;
  g->n_outputs = 1;
  g->opset = 13;
  pv_graph_compact(g);
  return g;
}

/* Through the runtime (core/model.c): the GPU backend against the CPU
 * backend's reference ops, at two batch sizes. */
static void test_model(void) {
  const char *gpu[] = {BACKEND, "cpu", NULL}, *cpu[] = {"cpu", NULL};
  pv_load_opts og = {.backends = gpu}, oc = {.backends = cpu};
  pv_model *mg = pv_model_from_graph(small_model(), &og);
  pv_model *mc = pv_model_from_graph(small_model(), &oc);
  CHECK(mg && mc, "models load");
  if (!mg || !mc) goto out;
  const pv_graph *g = pv_model_graph(mg);
  for (int i = 0; i < g->n_nodes; i++) {
    const char *want = !strcmp(g->nodes[i].op, "Softmax") ? "cpu" : BACKEND;
    const char *got = pv_model_node_backend(mg, i);
    CHECK(!strcmp(got, want) || !strcmp(got, "plan"), "%s runs on %s, not %s",
          g->nodes[i].op, got, want);
  }
  pv_exec *eg = pv_exec_new(mg), *ec = pv_exec_new(mc);
  CHECK(eg && ec, "exec contexts");
  float x[4 * 300];
  fill(x, 4 * 300);
  for (int b = 4; eg && ec && b >= 1; b -= 3) {
    pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {b, 3, 10, 10}, .data = x}, og_, oc_;
    int r1 = pv_exec_run(eg, &in, 1, &og_, 1);
    CHECK(r1 == 0, "%s model run, batch %d", BACKEND, b);
    int r2 = pv_exec_run(ec, &in, 1, &oc_, 1);
    CHECK(r2 == 0, "cpu model run, batch %d", b);
    if (r1 || r2) break;
    CHECK(og_.ndim == 2 && og_.dims[0] == b && og_.dims[1] == 5, "output shape");
    double e = rel_err(og_.data, oc_.data, (size_t)b * 5);
    CHECK(e < TOL, "model batch %d: %s vs cpu error %g", b, BACKEND, e);
  }
  pv_exec_free(eg);
  pv_exec_free(ec);
out:
  pv_model_release(mg);
  pv_model_release(mc);
}

#ifdef TEST_OPENCL_CACHE
static char log_buf[8192];
static void capture(int level, const char *msg) {
  (void)level;
  size_t n = strlen(log_buf);
  snprintf(log_buf + n, sizeof log_buf - n, "%s\n", msg);
}

static int count_cache_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    if (!strncmp(e->d_name, "opencl-", 7) && strstr(e->d_name, ".bin") &&
        !strstr(e->d_name, ".tmp"))
      n++;
  closedir(d);
  return n;
}

static void test_cache_and_build_failure(void) {
  char dir[] = "/tmp/pivot-clcache-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  char sub[128];
  snprintf(sub, sizeof sub, "%s/nested/dir", dir);
  pv_backend_config cfg = {.cache_dir = sub};
  pv_set_log_fn(capture);
  void *c1 = NULL, *c2 = NULL, *c3 = NULL;
  log_buf[0] = 0;
  int rc = it->init(&cfg, &c1);
  CHECK(rc == 0, "first init");
  CHECK(count_cache_files(sub) == 1, "one cache file written in %s", sub);
  CHECK(strstr(log_buf, "saved to cache") != NULL, "save logged: %s", log_buf);
  log_buf[0] = 0;
  rc = it->init(&cfg, &c2);
  CHECK(rc == 0, "second init");
  CHECK(strstr(log_buf, "loaded from cache") != NULL, "second init uses the cache: %s", log_buf);
  /* The cached program computes the same as the built one. */
  void *save = ctx;
  if (c2) {
    ctx = c2;
    test_gemm(true, true, 1.0f, 1.0f, 3, 9, 17, PV_ACT_NONE);
    ctx = save;
  }
  /* A corrupt cache file is rebuilt, not trusted. */
  DIR *d = opendir(sub);
  for (struct dirent *e; d && (e = readdir(d));)
    if (!strncmp(e->d_name, "opencl-", 7)) {
      char p[512];
      snprintf(p, sizeof p, "%s/%s", sub, e->d_name);
      FILE *f = fopen(p, "wb");
      fputs("garbage", f);
      fclose(f);
    }
  if (d) closedir(d);
  log_buf[0] = 0;
  rc = it->init(&cfg, &c3);
  CHECK(rc == 0 && strstr(log_buf, "unusable"), "corrupt cache rebuilt: %s", log_buf);
  if (c3) it->shutdown(c3);

  /* A kernel that fails to build: init fails with the compiler's message
   * and a log line, and nothing crashes. */
  setenv("PIVOT_OPENCL_OPTIONS", "-Dfloat=no_such_type", 1);
  log_buf[0] = 0;
  void *bad = (void *)1;
  rc = it->init(&cfg, &bad);
  CHECK(rc == PV_EBACKEND && bad == NULL, "build failure fails init (%d)", rc);
  CHECK(strstr(pv_errmsg(), "kernel build failed"), "message names the build: %s", pv_errmsg());
  CHECK(strstr(log_buf, "kernel build failed"), "build failure logged: %s", log_buf);
  unsetenv("PIVOT_OPENCL_OPTIONS");
  /* A device that does not exist. */
  pv_backend_config cfg2 = {.device = 99, .cache_dir = sub};
  rc = it->init(&cfg2, &bad);
  CHECK(rc < 0 && strstr(pv_errmsg(), "device 99"), "bad device index: %s", pv_errmsg());
  pv_set_log_fn(NULL);
  if (c1) it->shutdown(c1);
  if (c2) it->shutdown(c2);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
}
#endif

/* Name each test on stderr first, so a crash shows where it happened. */
#define RUN(call)                          \
  do {                                     \
    fprintf(stderr, "- %s\n", #call);      \
    call;                                  \
  } while (0)

int main(void) {
  char cache[] = "/tmp/pivot-gputest-XXXXXX";
  if (!mkdtemp(cache)) return 99;
  pv_backend_config cfg = {.cache_dir = cache};
  pv_backend *b = pv_backend_get(BACKEND, NULL, &cfg);
  if (!b) {
    fprintf(stderr, "SKIP: backend %s unavailable: %s\n", BACKEND, pv_errmsg());
    rmdir(cache);
    return 77;
  }
  it = pv_backend_iface_of(b);
  ctx = pv_backend_ctx(b);
  if (it->device_count && it->device_props) {
    pv_device_props p;
    int n = it->device_count(ctx);
    for (int i = 0; i < n && it->device_props(ctx, i, &p) == 0; i++)
      printf("%s device %d: %s (%s), %d CUs, %llu MiB%s\n", BACKEND, i, p.name, p.driver,
             p.compute_units, (unsigned long long)(p.global_mem >> 20),
             p.host_shared_memory ? ", shares host memory" : "");
  }
  RUN(test_gemm(true, true, 1.0f, 1.0f, 5, 37, 53, PV_ACT_NONE));
  RUN(test_gemm(false, true, 0.5f, 2.0f, 1, 13, 7, PV_ACT_RELU));
  RUN(test_gemm(true, false, 1.0f, 1.0f, 33, 64, 129, PV_ACT_LEAKY));
  {
    int ro[] = {0, 12, 25, 37}, co[] = {0, 10, 20, 29}, diag[] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    RUN(test_pivot_gemm(5, 37, 29, 3, 3, ro, co, diag, false));
    RUN(test_pivot_gemm(1, 37, 29, 3, 3, ro, co, diag, true));
    int ro2[] = {0, 20, 40}, co2[] = {0, 11, 22, 31}, two[] = {1, 1, 0, 0, 1, 1};
    RUN(test_pivot_gemm(7, 40, 31, 2, 3, ro2, co2, two, false));
    RUN(test_pivot_gemm(64, 40, 31, 2, 3, ro2, co2, two, true));
    /* Uniform structures (block diagonal; 2 blocks per row group at a
     * constant shift): the CUDA backend's strided-batched cuBLAS path,
     * which devcheck.sh forces with PIVOT_CUDA_PIVOT_PATH=cublas (by
     * default it takes blocks of 128 rows and more). */
    int ro3[] = {0, 16, 32, 48}, co3[] = {0, 12, 24, 36};
    RUN(test_pivot_gemm(40, 48, 36, 3, 3, ro3, co3, diag, false));
    int ro4[] = {0, 16, 32}, co4[] = {0, 10, 20, 30, 40}, shift[] = {1, 1, 0, 0, 0, 0, 1, 1};
    RUN(test_pivot_gemm(24, 32, 40, 2, 4, ro4, co4, shift, true));
  }
  RUN(test_conv((convp){2, 5, 11, 9, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 0, 0}, false, PV_ACT_NONE));
  RUN(test_conv((convp){1, 6, 8, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, 0, 0}, false, PV_ACT_CLIP)); /* depthwise */
  RUN(test_conv((convp){2, 6, 9, 9, 4, 2, 3, 1, 2, 0, 1, 2, 1, 2, 0, 0}, false, PV_ACT_LEAKY)); /* groups */
  RUN(test_conv((convp){2, 6, 7, 6, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 0}, true, PV_ACT_RELU));
  RUN(test_conv((convp){1, 4, 5, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0}, true, PV_ACT_SIGMOID));
  RUN(test_pool("MaxPool", 2, 3, 9, 7, 3, 2, 1, 1, 5, 4, 0));
  RUN(test_pool("MaxPool", 1, 2, 5, 5, 2, 2, 0, 0, 3, 3, 0)); /* ceil_mode output */
  RUN(test_pool("MaxPool", 1, 2, 6, 6, 2, 1, 0, 1, 6, 6, 0)); /* darknet's stride-1 pool */
  RUN(test_pool("AveragePool", 2, 3, 9, 7, 3, 2, 1, 1, 5, 4, 0));
  RUN(test_pool("AveragePool", 2, 3, 9, 7, 3, 2, 1, 1, 5, 4, 1));
  RUN(test_pool("AveragePool", 1, 2, 6, 6, 3, 2, 0, 1, 3, 3, 1)); /* asymmetric pads */
  RUN(test_elementwise());
  RUN(test_concat_gap());
  RUN(test_graph());
  RUN(test_bad_input());
  RUN(test_model());
#ifdef TEST_RESIZE_PAD
  RUN(test_resize_pad());
#endif
#ifdef TEST_OPENCL_CACHE
  RUN(test_cache_and_build_failure());
#endif
  pv_backend_put(b);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", cache);
  if (system(cmd)) fprintf(stderr, "could not remove %s\n", cache);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("%s: all checks passed\n", BACKEND);
  return failures ? 1 : 0;
}
