/* Reference ops and shape inference, each op checked against values the
 * test computes itself (naive loops with explicit bounds, or by hand). */
#include "cunit-main.h"
#include "ops-harness.h"
#include "pv-pivot.h"

/* Present once pivot.c implements the expansions (weak otherwise). */
void pv_pivot_to_dense_t(const pv_pivot *p, float *out);
#pragma weak pv_pivot_to_dense
#pragma weak pv_pivot_to_dense_t

#define OUT0(node) (&R[H->nodes[node].out[0]])
#define F(t) ((const float *)(t)->data)
#define I(t) ((const int64_t *)(t)->data)

/* ------------------------------------------------------------ Conv */

/* Naive 2-D convolution with explicit bounds checks. */
static void naive_conv(const float *x, int N, int C, int H_, int W,
                       const float *w, int M, int G, int KH, int KW,
                       const float *b, int sh, int sw, int dh, int dw, int pt,
                       int pl, int OH, int OW, float *y) {
  int cg = C / G, mg = M / G;
  for (int n = 0; n < N; n++)
    for (int m = 0; m < M; m++)
      for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
          double acc = b ? b[m] : 0;
          int g = m / mg;
          for (int c = 0; c < cg; c++)
            for (int i = 0; i < KH; i++)
              for (int j = 0; j < KW; j++) {
                int ih = oh * sh - pt + i * dh, iw = ow * sw - pl + j * dw;
                if (ih < 0 || ih >= H_ || iw < 0 || iw >= W) continue;
                acc += (double)x[((n * C + g * cg + c) * H_ + ih) * W + iw] *
                       w[((m * cg + c) * KH + i) * KW + j];
              }
          y[((n * M + m) * OH + oh) * OW + ow] = (float)acc;
        }
}

static void conv_case(int N, int C, int H_, int W, int M, int G, int KH, int KW,
                      int sh, int sw, int dh, int dw, const int64_t *pads,
                      const char *auto_pad, int OH, int OW, int pt, int pl) {
  float x[2 * 8 * 9 * 9], w[8 * 8 * 3 * 3], b[8], y[2 * 8 * 9 * 9];
  h_fill(x, N * C * H_ * W, 1);
  h_fill(w, M * (C / G) * KH * KW, 2);
  h_fill(b, M, 3);
  h_new(13);
  int in[3] = {h_f32("x", 4, DIMS(N, C, H_, W), x),
               h_f32("w", 4, DIMS(M, C / G, KH, KW), w), h_f32("b", 1, DIMS(M), b)};
  int out = h_out("y");
  int nd = h_node("Conv", 3, in, 1, &out);
  h_ai(nd, "group", G);
  h_ais(nd, "strides", 2, DIMS(sh, sw));
  h_ais(nd, "dilations", 2, DIMS(dh, dw));
  if (pads) h_ais(nd, "pads", 4, pads);
  if (auto_pad) h_as(nd, "auto_pad", auto_pad);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 4, DIMS(N, M, OH, OW)));
  naive_conv(x, N, C, H_, W, w, M, G, KH, KW, b, sh, sw, dh, dw, pt, pl, OH, OW, y);
  CU_ASSERT(h_maxerr(F(&R[out]), y, N * M * OH * OW) < 1e-5);
}

static void test_conv(void) {
  /* pads [t,l,b,r] = [1,2,0,1]; out = (5+1-1-1*2... computed by hand:
   * H: (5 + 1 + 0 - 3) / 2 + 1 = 2; W: (6 + 2 + 1 - 5) / 1 + 1 = 5. */
  conv_case(1, 2, 5, 6, 3, 1, 3, 3, 2, 1, 1, 2, DIMS(1, 2, 0, 1), NULL, 2, 5, 1, 2);
  /* groups 2, batch 2, stride 2 both ways, symmetric pads 1:
   * (7 + 2 - 3) / 2 + 1 = 4. */
  conv_case(2, 4, 7, 7, 6, 2, 3, 3, 2, 2, 1, 1, DIMS(1, 1, 1, 1), NULL, 4, 4, 1, 1);
  /* depthwise: group = C = M = 8, 3x3, pads 1 keeps 9x9. */
  conv_case(1, 8, 9, 9, 8, 8, 3, 3, 1, 1, 1, 1, DIMS(1, 1, 1, 1), NULL, 9, 9, 1, 1);
  /* SAME_UPPER, stride 2, 6 wide, k 3: out 3, total pad (3-1)*2+3-6 = 1,
   * put at the end: begin 0. */
  conv_case(1, 2, 6, 6, 2, 1, 3, 3, 2, 2, 1, 1, NULL, "SAME_UPPER", 3, 3, 0, 0);
  /* SAME_LOWER: the extra pad goes first. */
  conv_case(1, 2, 6, 6, 2, 1, 3, 3, 2, 2, 1, 1, NULL, "SAME_LOWER", 3, 3, 1, 1);
  /* VALID: (7 - 3) / 2 + 1 = 3. */
  conv_case(1, 2, 7, 7, 2, 1, 3, 3, 2, 2, 1, 1, NULL, "VALID", 3, 3, 0, 0);
  /* 1x1 pointwise. */
  conv_case(1, 3, 4, 5, 4, 1, 1, 1, 1, 1, 1, 1, NULL, NULL, 4, 5, 0, 0);
}

static void test_conv1d(void) {
  /* x = [1 2 3 4 5], w = [1 0 -1], pads 1: y[i] = x[i-1] - x[i+1]. */
  float x[5] = {1, 2, 3, 4, 5}, w[3] = {1, 0, -1};
  h_new(13);
  int in[2] = {h_f32("x", 3, DIMS(1, 1, 5), x), h_f32("w", 3, DIMS(1, 1, 3), w)};
  int out = h_out("y");
  int nd = h_node("Conv", 2, in, 1, &out);
  h_ais(nd, "pads", 2, DIMS(1, 1));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float want[5] = {-2, -2, -2, -2, 4};
  CU_ASSERT_FATAL(h_dims_are(&R[out], 3, DIMS(1, 1, 5)));
  CU_ASSERT(h_maxerr(F(&R[out]), want, 5) == 0);
}

static void test_conv_errors(void) {
  float x[32] = {0}, w[16 * 9] = {0};
  h_new(13);
  int in[2] = {h_f32("x", 4, DIMS(1, 2, 4, 4), x), h_f32("w", 4, DIMS(4, 4, 3, 3), w)};
  int out = h_out("y");
  pv_graph_add_node(H, "conv3", "Conv", in, 2, &out, 1);
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "conv3"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "input channels 2"));
}

/* ------------------------------------------------------------ pools */

static void naive_pool(const float *x, int P, int H_, int W, int KH, int KW,
                       int sh, int sw, int dh, int dw, int pt, int pl, int pb,
                       int pr, int OH, int OW, int mode, float *y) {
  /* mode 0 max, 1 avg excluding pads, 2 avg including pads */
  for (int p = 0; p < P; p++)
    for (int oh = 0; oh < OH; oh++)
      for (int ow = 0; ow < OW; ow++) {
        double s = 0;
        float m = -INFINITY;
        int cnt = 0;
        for (int i = 0; i < KH; i++)
          for (int j = 0; j < KW; j++) {
            int ih = oh * sh - pt + i * dh, iw = ow * sw - pl + j * dw;
            bool inside = ih >= 0 && ih < H_ && iw >= 0 && iw < W;
            bool in_pads = ih < H_ + pb && iw < W + pr;
            if (inside) {
              float v = x[(p * H_ + ih) * W + iw];
              s += v;
              if (v > m) m = v;
            }
            if (inside || (mode == 2 && in_pads)) cnt++;
          }
        y[(p * OH + oh) * OW + ow] = mode == 0 ? m : (float)(s / cnt);
      }
}

static void pool_case(const char *op, int mode, int H_, int W, int KH, int KW,
                      int sh, int sw, int dh, int dw, const int64_t *pads,
                      int ceil, int OH, int OW) {
  float x[2 * 3 * 8 * 8], y[2 * 3 * 8 * 8];
  h_fill(x, 6 * H_ * W, 7);
  h_new(13);
  int in = h_f32("x", 4, DIMS(2, 3, H_, W), x), out = h_out("y");
  int nd = h_node(op, 1, &in, 1, &out);
  h_ais(nd, "kernel_shape", 2, DIMS(KH, KW));
  h_ais(nd, "strides", 2, DIMS(sh, sw));
  if (dh != 1 || dw != 1) h_ais(nd, "dilations", 2, DIMS(dh, dw));
  if (pads) h_ais(nd, "pads", 4, pads);
  h_ai(nd, "ceil_mode", ceil);
  if (mode == 2) h_ai(nd, "count_include_pad", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 4, DIMS(2, 3, OH, OW)));
  int64_t p0 = pads ? pads[0] : 0, p1 = pads ? pads[1] : 0, p2 = pads ? pads[2] : 0,
          p3 = pads ? pads[3] : 0;
  naive_pool(x, 6, H_, W, KH, KW, sh, sw, dh, dw, p0, p1, p2, p3, OH, OW, mode, y);
  CU_ASSERT(h_maxerr(F(&R[out]), y, 6 * OH * OW) < 1e-6);
}

static void test_pool(void) {
  /* 3x3 s2 p1 (resnet stem) on 8x8: (8+2-3)/2+1 = 4. */
  pool_case("MaxPool", 0, 8, 8, 3, 3, 2, 2, 1, 1, DIMS(1, 1, 1, 1), 0, 4, 4);
  /* ceil_mode: 5 wide, k2 s2: floor 2, ceil 3 (last window half outside). */
  pool_case("MaxPool", 0, 5, 5, 2, 2, 2, 2, 1, 1, NULL, 1, 3, 3);
  pool_case("MaxPool", 0, 5, 5, 2, 2, 2, 2, 1, 1, NULL, 0, 2, 2);
  /* dilation 2: extent 5 on 7 wide: 3 outputs. */
  pool_case("MaxPool", 0, 7, 7, 3, 3, 1, 1, 2, 2, NULL, 0, 3, 3);
  /* average, pads excluded vs included; asymmetric pads. */
  pool_case("AveragePool", 1, 6, 6, 3, 3, 2, 2, 1, 1, DIMS(1, 0, 1, 1), 0, 3, 3);
  pool_case("AveragePool", 2, 6, 6, 3, 3, 2, 2, 1, 1, DIMS(1, 0, 1, 1), 0, 3, 3);
  /* ceil_mode with count_include_pad: the overhang past the pads is not
   * counted. 6 wide, k3 s2 p(1,1): (6+2-3)/2 = 2.5 -> ceil 4 windows. */
  pool_case("AveragePool", 2, 6, 6, 3, 3, 2, 2, 1, 1, DIMS(1, 1, 1, 1), 1, 4, 4);
}

static void test_maxpool_indices(void) {
  /* Two 2x3 planes, 2x2 windows stride 1: indices are flat over N,C,H,W. */
  float x[12] = {1, 9, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3};
  h_new(13);
  int in = h_f32("x", 4, DIMS(1, 2, 2, 3), x), out[2] = {h_out("y"), h_out("i")};
  int nd = h_node("MaxPool", 1, &in, 2, out);
  h_ais(nd, "kernel_shape", 2, DIMS(2, 2));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out[1]], 4, DIMS(1, 2, 1, 2)));
  const int64_t *ix = R[out[1]].data;
  CU_ASSERT(F(&R[out[0]])[0] == 9 && ix[0] == 1);
  CU_ASSERT(F(&R[out[0]])[1] == 9 && ix[1] == 1);
  CU_ASSERT(F(&R[out[0]])[2] == 8 && ix[2] == 7);
  CU_ASSERT(F(&R[out[0]])[3] == 9 && ix[3] == 8);
}

static void test_global_pool(void) {
  float x[2 * 3 * 4 * 5], want[6];
  h_fill(x, 120, 9);
  for (int p = 0; p < 6; p++) {
    double s = 0;
    for (int i = 0; i < 20; i++) s += x[p * 20 + i];
    want[p] = (float)(s / 20);
  }
  h_new(13);
  int in = h_f32("x", 4, DIMS(2, 3, 4, 5), x), out = h_out("y");
  h_node("GlobalAveragePool", 1, &in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 4, DIMS(2, 3, 1, 1)));
  CU_ASSERT(h_maxerr(F(&R[out]), want, 6) < 1e-6);

  /* 3x3 planes (a tail after the 4-wide partial sums), and the max with
   * a NaN in plane 1 (NaN wins, as in MaxPool) */
  float z[2 * 9], zmax = -INFINITY;
  double zsum = 0;
  h_fill(z, 18, 4);
  z[9 + 4] = NAN;
  for (int i = 0; i < 9; i++) {
    zsum += z[i];
    if (z[i] > zmax) zmax = z[i];
  }
  h_new(13);
  in = h_f32("z", 4, DIMS(1, 2, 3, 3), z);
  out = h_out("a");
  int out2 = h_out("m");
  h_node("GlobalAveragePool", 1, &in, 1, &out);
  h_node("GlobalMaxPool", 1, &in, 1, &out2);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(fabsf(F(&R[out])[0] - (float)(zsum / 9)) < 1e-6f);
  CU_ASSERT(isnan(F(&R[out])[1]));
  CU_ASSERT(F(&R[out2])[0] == zmax);
  CU_ASSERT(isnan(F(&R[out2])[1]));
}

/* ------------------------------------------------------------ Gemm, MatMul */

static void gemm_case(int tA, int tB, float alpha, float beta, int cshape) {
  enum { M = 3, K = 4, N = 5 };
  float a[M * K], b[K * N], c[M * N], want[M * N];
  h_fill(a, M * K, 11);
  h_fill(b, K * N, 12);
  h_fill(c, M * N, 13);
  /* c broadcast: 0 = [N], 1 = [M,1], 2 = [M,N] */
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      double s = 0;
      for (int k = 0; k < K; k++)
        s += (double)(tA ? a[k * M + i] : a[i * K + k]) *
             (tB ? b[j * K + k] : b[k * N + j]);
      float cv = cshape == 0 ? c[j] : cshape == 1 ? c[i] : c[i * N + j];
      want[i * N + j] = (float)(alpha * s + beta * cv);
    }
  h_new(13);
  int in[3] = {h_f32("a", 2, tA ? DIMS(K, M) : DIMS(M, K), a),
               h_f32("b", 2, tB ? DIMS(N, K) : DIMS(K, N), b),
               cshape == 0   ? h_f32("c", 1, DIMS(N), c)
               : cshape == 1 ? h_f32("c", 2, DIMS(M, 1), c)
                             : h_f32("c", 2, DIMS(M, N), c)};
  int out = h_out("y");
  int nd = h_node("Gemm", 3, in, 1, &out);
  h_ai(nd, "transA", tA);
  h_ai(nd, "transB", tB);
  h_af(nd, "alpha", alpha);
  h_af(nd, "beta", beta);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(M, N)));
  CU_ASSERT(h_maxerr(F(&R[out]), want, M * N) < 1e-5);
}

static void test_gemm(void) {
  gemm_case(0, 0, 1, 1, 0);
  gemm_case(1, 0, 0.5f, 2, 1);
  gemm_case(0, 1, 2, 0.25f, 2);
  gemm_case(1, 1, -1, 0, 0);
}

static void matmul_case(int na, const int64_t *da, int nb, const int64_t *db,
                        int no, const int64_t *dout) {
  float a[256], b[256], want[512];
  int64_t ca = 1, cb = 1;
  for (int i = 0; i < na; i++) ca *= da[i];
  for (int i = 0; i < nb; i++) cb *= db[i];
  h_fill(a, ca, 21);
  h_fill(b, cb, 22);
  /* Expected: pad to rank-4 views [B1,B2,M,K] and [B1,B2,K,N] by hand. */
  int64_t A4[4] = {1, 1, 1, 1}, B4[4] = {1, 1, 1, 1};
  if (na == 1) A4[3] = da[0];
  else for (int i = 0; i < na; i++) A4[4 - na + i] = da[i];
  if (nb == 1) B4[2] = db[0];
  else for (int i = 0; i < nb; i++) B4[4 - nb + i] = db[i];
  int64_t B1 = A4[0] > B4[0] ? A4[0] : B4[0], B2 = A4[1] > B4[1] ? A4[1] : B4[1];
  int64_t M = A4[2], K = A4[3], N = B4[3];
  int64_t o = 0;
  for (int64_t i = 0; i < B1; i++)
    for (int64_t j = 0; j < B2; j++)
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
          int64_t ai = (A4[0] == 1 ? 0 : i) * A4[1] + (A4[1] == 1 ? 0 : j);
          int64_t bi = (B4[0] == 1 ? 0 : i) * B4[1] + (B4[1] == 1 ? 0 : j);
          double s = 0;
          for (int64_t k = 0; k < K; k++)
            s += (double)a[(ai * M + m) * K + k] * b[(bi * K + k) * N + n];
          want[o++] = (float)s;
        }
  h_new(13);
  int in[2] = {h_f32("a", na, da, a), h_f32("b", nb, db, b)}, out = h_out("y");
  h_node("MatMul", 2, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], no, dout));
  CU_ASSERT(h_maxerr(F(&R[out]), want, o) < 1e-5);
}

static void test_matmul(void) {
  matmul_case(2, DIMS(3, 4), 2, DIMS(4, 5), 2, DIMS(3, 5));
  matmul_case(4, DIMS(2, 1, 3, 4), 3, DIMS(3, 4, 5), 4, DIMS(2, 3, 3, 5));
  matmul_case(1, DIMS(4), 2, DIMS(4, 5), 1, DIMS(5));
  matmul_case(3, DIMS(2, 3, 4), 1, DIMS(4), 2, DIMS(2, 3));
  matmul_case(1, DIMS(4), 1, DIMS(4), 0, NULL);
}

/* ------------------------------------------------------------ elementwise */

static void test_broadcast_binary(void) {
  float a[6], b[4];
  h_fill(a, 6, 31);
  h_fill(b, 4, 32);
  b[2] = 0.5f; /* Div: keep away from zero */
  for (int i = 0; i < 4; i++) b[i] = b[i] >= 0 ? b[i] + 0.5f : b[i] - 0.5f;
  const char *ops[4] = {"Add", "Sub", "Mul", "Div"};
  for (int k = 0; k < 4; k++) {
    h_new(13);
    int in[2] = {h_f32("a", 3, DIMS(2, 3, 1), a), h_f32("b", 1, DIMS(4), b)};
    int out = h_out("y");
    h_node(ops[k], 2, in, 1, &out);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT_FATAL(h_dims_are(&R[out], 3, DIMS(2, 3, 4)));
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 4; j++) {
        float u = a[i], v = b[j];
        float w = k == 0 ? u + v : k == 1 ? u - v : k == 2 ? u * v : u / v;
        CU_ASSERT_EQUAL(F(&R[out])[i * 4 + j], w);
      }
  }
  /* Incompatible shapes name both. */
  h_new(13);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("b", 1, DIMS(4), b)};
  int out = h_out("y");
  h_node("Add", 2, in, 1, &out);
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "[2,3]"));
}

static void test_int_arith_pow(void) {
  int64_t a[3] = {7, -7, 9}, b[1] = {2};
  h_new(13);
  int in[2] = {h_i64("a", 3, a), h_val("b", PV_I64, 0, NULL, b)}, out = h_out("y");
  h_node("Div", 2, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_EQUAL(R[out].dtype, PV_I64);
  CU_ASSERT(I(&R[out])[0] == 3 && I(&R[out])[1] == -3 && I(&R[out])[2] == 4);
  /* Integer overflow wraps instead of being undefined. */
  int64_t big[2] = {INT64_MAX, INT64_MIN}, m1[1] = {-1}, one[1] = {1};
  const char *wops[2] = {"Add", "Div"};
  for (int k = 0; k < 2; k++) {
    h_new(13);
    int win[2] = {h_i64("a", 2, big), h_val("b", PV_I64, 0, NULL, k ? m1 : one)};
    out = h_out("y");
    h_node(wops[k], 2, win, 1, &out);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT_EQUAL(I(&R[out])[k], INT64_MIN);
  }
  float x[3] = {2, 3, 0.5f}, e[1] = {3};
  h_new(13);
  int in2[2] = {h_f32("x", 1, DIMS(3), x), h_f32("e", 0, NULL, e)};
  out = h_out("y");
  h_node("Pow", 2, in2, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(F(&R[out])[0] == 8 && F(&R[out])[1] == 27 && F(&R[out])[2] == 0.125f);
}

static float unary_want(const char *op, float v) {
  if (!strcmp(op, "Relu")) return v > 0 ? v : 0;
  if (!strcmp(op, "LeakyRelu")) return v > 0 ? v : 0.1f * v;
  if (!strcmp(op, "Sigmoid")) return (float)(1 / (1 + exp(-(double)v)));
  if (!strcmp(op, "Tanh")) return (float)tanh(v);
  if (!strcmp(op, "Sqrt")) return (float)sqrt(fabs(v));
  if (!strcmp(op, "Exp")) return (float)exp(v);
  if (!strcmp(op, "Neg")) return -v;
  return fabsf(v);
}

static void test_unary(void) {
  const char *ops[] = {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "Sqrt", "Exp",
                       "Neg", "Abs"};
  float x[12];
  h_fill(x, 12, 41);
  for (int k = 0; k < 8; k++) {
    float xi[12];
    for (int i = 0; i < 12; i++) xi[i] = !strcmp(ops[k], "Sqrt") ? fabsf(x[i]) : x[i];
    h_new(13);
    int in = h_f32("x", 2, DIMS(3, 4), xi), out = h_out("y");
    int nd = h_node(ops[k], 1, &in, 1, &out);
    if (k == 1) h_af(nd, "alpha", 0.1f);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    float want[12];
    for (int i = 0; i < 12; i++) want[i] = unary_want(ops[k], xi[i]);
    CU_ASSERT(h_maxerr(F(&R[out]), want, 12) < 1e-6);
  }
}

static void test_clip(void) {
  float x[5] = {-3, -0.5f, 0, 0.5f, 3}, lo = -1, hi = 2;
  const float want[5] = {-1, -0.5f, 0, 0.5f, 2}, want_hi[5] = {-3, -0.5f, 0, 0.5f, 2};
  /* opset 6: attributes */
  h_new(6);
  int in = h_f32("x", 1, DIMS(5), x), out = h_out("y");
  int nd = h_node("Clip", 1, &in, 1, &out);
  h_af(nd, "min", lo);
  h_af(nd, "max", hi);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_maxerr(F(&R[out]), want, 5) == 0);
  /* opset 13: inputs, min omitted */
  h_new(13);
  int in3[3] = {h_f32("x", 1, DIMS(5), x), -1, h_f32("hi", 0, NULL, &hi)};
  out = h_out("y");
  h_node("Clip", 3, in3, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_maxerr(F(&R[out]), want_hi, 5) == 0);
}

static void test_softmax_axis(void) {
  float x[24];
  h_fill(x, 24, 51);
  for (int opset = 11; opset <= 13; opset += 2) {
    h_new(opset);
    int in = h_f32("x", 3, DIMS(2, 3, 4), x), out = h_out("y");
    int nd = h_node("Softmax", 1, &in, 1, &out);
    h_ai(nd, "axis", 1);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    const float *y = F(&R[out]);
    for (int b = 0; b < 2; b++) {
      if (opset == 11) { /* one softmax over the 12 trailing values */
        double s = 0;
        for (int i = 0; i < 12; i++) s += exp(x[b * 12 + i]);
        for (int i = 0; i < 12; i++)
          CU_ASSERT_DOUBLE_EQUAL(y[b * 12 + i], exp(x[b * 12 + i]) / s, 1e-6);
      } else { /* per (b, k) over the 3 channels */
        for (int k = 0; k < 4; k++) {
          double s = 0;
          for (int c = 0; c < 3; c++) s += exp(x[b * 12 + c * 4 + k]);
          for (int c = 0; c < 3; c++)
            CU_ASSERT_DOUBLE_EQUAL(y[b * 12 + c * 4 + k],
                                   exp(x[b * 12 + c * 4 + k]) / s, 1e-6);
        }
      }
    }
  }
}

static void test_batchnorm(void) {
  float x[2 * 3 * 4], sc[3] = {1, 2, 0.5f}, bi[3] = {0, 1, -1}, mu[3] = {0.1f, -0.2f, 0.3f},
        var[3] = {1, 4, 0.25f};
  h_fill(x, 24, 61);
  h_new(13);
  int in[5] = {h_f32("x", 3, DIMS(2, 3, 4), x), h_f32("s", 1, DIMS(3), sc),
               h_f32("b", 1, DIMS(3), bi), h_f32("m", 1, DIMS(3), mu),
               h_f32("v", 1, DIMS(3), var)};
  int out = h_out("y");
  int nd = h_node("BatchNormalization", 5, in, 1, &out);
  h_af(nd, "epsilon", 0.01f);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  float want[24];
  for (int i = 0; i < 24; i++) {
    int c = (i / 4) % 3;
    want[i] = (float)((x[i] - mu[c]) / sqrt(var[c] + 0.01) * sc[c] + bi[c]);
  }
  CU_ASSERT(h_maxerr(F(&R[out]), want, 24) < 1e-5);
}

/* ------------------------------------------------------------ data movement */

static void test_concat_split(void) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
  h_new(13);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("b", 2, DIMS(2, 2), b)};
  int out = h_out("y");
  int nd = h_node("Concat", 2, in, 1, &out);
  h_ai(nd, "axis", -1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float want[10] = {1, 2, 3, 7, 8, 4, 5, 6, 9, 10};
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(2, 5)));
  CU_ASSERT(h_maxerr(F(&R[out]), want, 10) == 0);

  /* Split along axis 1 into [1, 2] via the opset-13 input. */
  int64_t sp[2] = {1, 2};
  h_new(13);
  int sin[2] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("split", 2, sp)};
  int souts[2] = {h_out("p"), h_out("q")};
  nd = h_node("Split", 2, sin, 2, souts);
  h_ai(nd, "axis", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wp[2] = {1, 4}, wq[4] = {2, 3, 5, 6};
  CU_ASSERT(h_dims_are(&R[souts[0]], 2, DIMS(2, 1)));
  CU_ASSERT(h_maxerr(F(&R[souts[0]]), wp, 2) == 0);
  CU_ASSERT(h_maxerr(F(&R[souts[1]]), wq, 4) == 0);
  /* opset 11 attribute; and an equal split with no sizes. */
  h_new(11);
  int x = h_f32("a", 1, DIMS(6), a), o3[3] = {h_out("p"), h_out("q"), h_out("r")};
  h_node("Split", 1, &x, 3, o3);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[o3[2]], 1, DIMS(2)) && F(&R[o3[2]])[0] == 5);
  /* sizes that do not add up */
  h_new(11);
  x = h_f32("a", 1, DIMS(6), a);
  int o2[2] = {h_out("p"), h_out("q")};
  nd = h_node("Split", 1, &x, 2, o2);
  h_ais(nd, "split", 2, DIMS(2, 3));
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
}

static void test_slice(void) {
  float a[20];
  for (int i = 0; i < 20; i++) a[i] = (float)i; /* [4,5]: a[r][c] = 5r+c */
  /* opset 13: rows 3 down to 1 by -1 (ends -4 -> 0 exclusive), columns
   * from -100 (clamped to 0) to 1000 (clamped to 5) step 2. */
  int64_t st[2] = {3, -100}, en[2] = {-4, 1000}, ax[2] = {0, -1}, sp[2] = {-1, 2};
  h_new(13);
  int in[5] = {h_f32("a", 2, DIMS(4, 5), a), h_i64("s", 2, st), h_i64("e", 2, en),
               h_i64("ax", 2, ax), h_i64("st", 2, sp)};
  int out = h_out("y");
  h_node("Slice", 5, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(3, 3)));
  const float want[9] = {15, 17, 19, 10, 12, 14, 5, 7, 9};
  CU_ASSERT(h_maxerr(F(&R[out]), want, 9) == 0);
  /* opset 9 attributes, axes omitted: [1:3, 2:] */
  h_new(9);
  int x = h_f32("a", 2, DIMS(4, 5), a);
  out = h_out("y");
  int nd = h_node("Slice", 1, &x, 1, &out);
  h_ais(nd, "starts", 2, DIMS(1, 2));
  h_ais(nd, "ends", 2, DIMS(3, INT64_MAX));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(2, 3)));
  const float w2[6] = {7, 8, 9, 12, 13, 14};
  CU_ASSERT(h_maxerr(F(&R[out]), w2, 6) == 0);
}

static void test_reshape_flatten_transpose(void) {
  float a[24];
  for (int i = 0; i < 24; i++) a[i] = (float)i;
  int64_t s1[3] = {0, -1, 2};
  h_new(13);
  int in[2] = {h_f32("a", 3, DIMS(2, 3, 4), a), h_i64("s", 3, s1)}, out = h_out("y");
  h_node("Reshape", 2, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[out], 3, DIMS(2, 6, 2)));
  CU_ASSERT(F(&R[out])[23] == 23);
  /* allowzero: 0 is a real zero-size axis, so 24 elements do not fit */
  int64_t s2[2] = {0, 24};
  h_new(14);
  int in2[2] = {h_f32("a", 3, DIMS(2, 3, 4), a), h_i64("s", 2, s2)};
  out = h_out("y");
  int nd = h_node("Reshape", 2, in2, 1, &out);
  h_ai(nd, "allowzero", 1);
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
  /* Flatten at a negative axis */
  h_new(13);
  int x = h_f32("a", 3, DIMS(2, 3, 4), a);
  out = h_out("y");
  nd = h_node("Flatten", 1, &x, 1, &out);
  h_ai(nd, "axis", -1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[out], 2, DIMS(6, 4)));
  /* Transpose perm [2,0,1]: y[k][i][j] = a[i][j][k] */
  h_new(13);
  x = h_f32("a", 3, DIMS(2, 3, 4), a);
  out = h_out("y");
  nd = h_node("Transpose", 1, &x, 1, &out);
  h_ais(nd, "perm", 3, DIMS(2, 0, 1));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 3, DIMS(4, 2, 3)));
  bool ok = true;
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        ok &= F(&R[out])[(k * 2 + i) * 3 + j] == a[(i * 3 + j) * 4 + k];
  CU_ASSERT(ok);
  /* default: reversed axes */
  h_new(13);
  x = h_f32("a", 3, DIMS(2, 3, 4), a);
  out = h_out("y");
  h_node("Transpose", 1, &x, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[out], 3, DIMS(4, 3, 2)) && F(&R[out])[1] == 12);
}

static void test_pad(void) {
  float a[3] = {1, 2, 3}, cv = 9;
  int64_t pads[2] = {2, 1};
  const char *modes[3] = {"constant", "reflect", "edge"};
  const float want[3][6] = {{9, 9, 1, 2, 3, 9}, {3, 2, 1, 2, 3, 2}, {1, 1, 1, 2, 3, 3}};
  for (int m = 0; m < 3; m++) {
    h_new(13);
    int in[3] = {h_f32("a", 1, DIMS(3), a), h_i64("p", 2, pads), h_f32("v", 0, NULL, &cv)};
    int out = h_out("y");
    int nd = h_node("Pad", 3, in, 1, &out);
    h_as(nd, "mode", modes[m]);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT_FATAL(h_dims_are(&R[out], 1, DIMS(6)));
    CU_ASSERT(h_maxerr(F(&R[out]), want[m], 6) == 0);
  }
  /* opset 2: pads attribute on 2-D, negative pad crops */
  float b[6] = {1, 2, 3, 4, 5, 6};
  h_new(2);
  int x = h_f32("b", 2, DIMS(2, 3), b), out = h_out("y");
  int nd = h_node("Pad", 1, &x, 1, &out);
  h_ais(nd, "pads", 4, DIMS(1, -1, 0, 0));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(3, 2)));
  const float w2[6] = {0, 0, 2, 3, 5, 6};
  CU_ASSERT(h_maxerr(F(&R[out]), w2, 6) == 0);
}

/* Constant fp32 Pad and nearest Resize run by rows of the last axis:
 * pads on every axis (negative ones crop) and a 2x upsample of a 4-D
 * tensor, against loops over the definition. */
static void test_pad_resize_rows(void) {
  float x[24], cv = 7;
  for (int i = 0; i < 24; i++) x[i] = (float)(i + 1);
  int64_t pads[6] = {1, 0, 2, 0, -1, 1}; /* begins, then ends */
  h_new(13);
  int in[3] = {h_f32("x", 3, DIMS(2, 3, 4), x), h_i64("p", 6, pads),
               h_f32("v", 0, NULL, &cv)};
  int out = h_out("y");
  h_node("Pad", 3, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 3, DIMS(3, 2, 7)));
  float want[42];
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++)
      for (int c = 0; c < 7; c++) {
        int i = a - 1, j = b, k = c - 2;
        want[(a * 2 + b) * 7 + c] =
            i >= 0 && i < 2 && k >= 0 && k < 4 ? x[(i * 3 + j) * 4 + k] : cv;
      }
  CU_ASSERT(h_maxerr(F(&R[out]), want, 42) == 0);

  float sc[4] = {1, 1, 2, 2}, roi[1] = {0}, img[18];
  for (int i = 0; i < 18; i++) img[i] = (float)i;
  h_new(13);
  int rin[3] = {h_f32("x", 4, DIMS(1, 2, 3, 3), img), h_f32("roi", 1, DIMS(0), roi),
                h_f32("sc", 1, DIMS(4), sc)};
  out = h_out("y");
  int nd = h_node("Resize", 3, rin, 1, &out);
  h_as(nd, "coordinate_transformation_mode", "asymmetric");
  h_as(nd, "nearest_mode", "floor");
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 4, DIMS(1, 2, 6, 6)));
  float up[72];
  for (int c = 0; c < 2; c++)
    for (int i = 0; i < 6; i++)
      for (int j = 0; j < 6; j++) up[(c * 6 + i) * 6 + j] = img[(c * 3 + i / 2) * 3 + j / 2];
  CU_ASSERT(h_maxerr(F(&R[out]), up, 72) == 0);
}

static void resize_case(int opset, const char *ctm, const char *nm,
                        const float *scales, const int64_t *sizes, int on,
                        const float *want) {
  float a[4] = {10, 20, 30, 40};
  float roi[1] = {0};
  h_new(opset);
  int in[4] = {h_f32("a", 2, DIMS(1, 4), a), h_f32("roi", 1, DIMS(0), roi),
               scales ? h_f32("sc", 1, DIMS(2), scales) : -1,
               sizes ? h_i64("sz", 2, sizes) : -1};
  int out = h_out("y");
  int nd = h_node("Resize", 4, in, 1, &out);
  if (ctm) h_as(nd, "coordinate_transformation_mode", ctm);
  if (nm) h_as(nd, "nearest_mode", nm);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(1, on)));
  CU_ASSERT(h_maxerr(F(&R[out]), want, on) == 0);
}

static void test_resize(void) {
  const float s2[2] = {1, 2}, s15[2] = {1, 1.5f};
  /* asymmetric + floor, x2: src = floor(i/2) */
  const float w1[8] = {10, 10, 20, 20, 30, 30, 40, 40};
  resize_case(13, "asymmetric", "floor", s2, NULL, 8, w1);
  /* half_pixel + round_prefer_floor, x2: src = (i+.5)/2-.5 = -.25,.25,.75,
   * 1.25,1.75,... -> 0,0,1,1,2,2,3,3 */
  resize_case(13, NULL, NULL, s2, NULL, 8, w1);
  /* sizes 6 (scale 1.5), half_pixel: (i+.5)/1.5-.5 = -.17,.5,1.17,1.83,
   * 2.5,3.17 -> round_prefer_floor: 0,0,1,2,2,3; prefer_ceil: 0,1,1,2,3,3 */
  const int64_t sz6[2] = {1, 6};
  const float w2[6] = {10, 10, 20, 30, 30, 40}, w3[6] = {10, 20, 20, 30, 40, 40};
  resize_case(13, "half_pixel", "round_prefer_floor", NULL, sz6, 6, w2);
  resize_case(13, "half_pixel", "round_prefer_ceil", NULL, sz6, 6, w3);
  /* align_corners, 6: i*3/5 = 0,.6,1.2,1.8,2.4,3 -> round: 0,1,1,2,2,3 */
  const float w4[6] = {10, 20, 20, 30, 30, 40};
  resize_case(13, "align_corners", "round_prefer_floor", s15, NULL, 6, w4);
  /* Upsample opset 9: scales input, asymmetric floor */
  float a[4] = {10, 20, 30, 40};
  h_new(9);
  int in[2] = {h_f32("a", 2, DIMS(2, 2), a), h_f32("sc", 1, DIMS(2), s2)};
  int out = h_out("y");
  h_node("Upsample", 2, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(2, 4)));
  const float w5[8] = {10, 10, 20, 20, 30, 30, 40, 40};
  CU_ASSERT(h_maxerr(F(&R[out]), w5, 8) == 0);
}

/* ------------------------------------------------------------ shape ops */

static void test_shape_gather(void) {
  h_new(15);
  /* Shape needs only dims: the input has none of its data. */
  int x = h_input("x", PV_F32, 4, DIMS(2, 3, 5, 7));
  int sh = h_out("s"), sl = h_out("s2");
  h_node("Shape", 1, &x, 1, &sh);
  int nd = h_node("Shape", 1, &x, 1, &sl);
  h_ai(nd, "start", 1);
  h_ai(nd, "end", -1);
  int64_t idx[2] = {-1, 0};
  int gi[2] = {sh, h_i64("i", 2, idx)}, g = h_out("g");
  h_node("Gather", 2, gi, 1, &g);
  int sz = h_out("n");
  h_node("Size", 1, &x, 1, &sz);
  pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {2, 3, 5, 7}, .data = NULL};
  CU_ASSERT_EQUAL_FATAL(h_run(&in), 0);
  CU_ASSERT(h_dims_are(&R[sh], 1, DIMS(4)) && I(&R[sh])[3] == 7);
  CU_ASSERT(h_dims_are(&R[sl], 1, DIMS(2)) && I(&R[sl])[0] == 3 && I(&R[sl])[1] == 5);
  CU_ASSERT(I(&R[g])[0] == 7 && I(&R[g])[1] == 2);
  CU_ASSERT(R[sz].ndim == 0 && I(&R[sz])[0] == 210);

  /* Gather on axis 1 of a float matrix with 2-D indices. */
  float a[12];
  for (int i = 0; i < 12; i++) a[i] = (float)i; /* [3,4] */
  int64_t ix[4] = {3, -4, 1, 1};
  h_new(13);
  int gin[2] = {h_f32("a", 2, DIMS(3, 4), a), h_val("i", PV_I64, 2, DIMS(2, 2), ix)};
  g = h_out("g");
  nd = h_node("Gather", 2, gin, 1, &g);
  h_ai(nd, "axis", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[g], 3, DIMS(3, 2, 2)));
  const float want[12] = {3, 0, 1, 1, 7, 4, 5, 5, 11, 8, 9, 9};
  CU_ASSERT(h_maxerr(F(&R[g]), want, 12) == 0);
  /* out of range */
  ix[1] = 4;
  h_new(13);
  int gin2[2] = {h_f32("a", 2, DIMS(3, 4), a), h_i64("i", 4, ix)};
  g = h_out("g");
  nd = h_node("Gather", 2, gin2, 1, &g);
  h_ai(nd, "axis", 1);
  CU_ASSERT_EQUAL(h_run(NULL), PV_ERANGE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "index 4"));
}

static void test_squeeze_unsqueeze(void) {
  float a[6] = {1, 2, 3, 4, 5, 6};
  /* opset 11: attribute, negative axis relative to the output rank */
  h_new(11);
  int x = h_f32("a", 2, DIMS(2, 3), a), u = h_out("u");
  int nd = h_node("Unsqueeze", 1, &x, 1, &u);
  h_ais(nd, "axes", 2, DIMS(0, -1));
  int s = h_out("s");
  h_node("Squeeze", 1, &u, 1, &s);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[u], 4, DIMS(1, 2, 3, 1)));
  CU_ASSERT(h_dims_are(&R[s], 2, DIMS(2, 3)) && F(&R[s])[5] == 6);
  /* opset 13: axes input */
  int64_t ax[1] = {1};
  h_new(13);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("ax", 1, ax)};
  u = h_out("u");
  h_node("Unsqueeze", 2, in, 1, &u);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[u], 3, DIMS(2, 1, 3)));
  /* squeezing a non-1 axis fails */
  h_new(13);
  int in2[2] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("ax", 1, ax)};
  s = h_out("s");
  h_node("Squeeze", 2, in2, 1, &s);
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
}

static void test_cast_cos_range_expand(void) {
  float a[4] = {-1.7f, 2.5f, 0, 3};
  h_new(13);
  int x = h_f32("a", 1, DIMS(4), a), c = h_out("c");
  int nd = h_node("Cast", 1, &x, 1, &c);
  h_ai(nd, "to", PV_I64);
  int b = h_out("b");
  nd = h_node("Cast", 1, &x, 1, &b);
  h_ai(nd, "to", PV_BOOL);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(R[c].dtype == PV_I64 && I(&R[c])[0] == -1 && I(&R[c])[1] == 2);
  const uint8_t *bb = R[b].data;
  CU_ASSERT(bb[0] == 1 && bb[2] == 0 && bb[3] == 1);

  int64_t shp[2] = {2, 3};
  float seven = 7;
  h_new(13);
  x = h_i64("shape", 2, shp);
  c = h_out("c");
  nd = h_node("ConstantOfShape", 1, &x, 1, &c);
  pv_attr va = {.name = "value", .type = PV_ATTR_TENSOR,
                .t = {.dtype = PV_F32, .ndim = 1, .dims = {1}, .data = &seven}};
  pv_node_add_attr(H, nd, &va);
  int64_t r0 = 10, r1 = 2, r2 = -3;
  int rin[3] = {h_val("s", PV_I64, 0, NULL, &r0), h_val("l", PV_I64, 0, NULL, &r1),
                h_val("d", PV_I64, 0, NULL, &r2)};
  int rg = h_out("r");
  h_node("Range", 3, rin, 1, &rg);
  float e1[3] = {1, 2, 3};
  int64_t es[3] = {2, 1, 3};
  int ein[2] = {h_f32("e", 2, DIMS(3, 1), e1), h_i64("es", 3, es)}, ex = h_out("x");
  h_node("Expand", 2, ein, 1, &ex);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[c], 2, DIMS(2, 3)) && F(&R[c])[5] == 7);
  /* ceil((2 - 10) / -3) = 3 values: 10, 7, 4 */
  CU_ASSERT(h_dims_are(&R[rg], 1, DIMS(3)) && I(&R[rg])[2] == 4);
  CU_ASSERT_FATAL(h_dims_are(&R[ex], 3, DIMS(2, 3, 3)));
  CU_ASSERT(F(&R[ex])[0] == 1 && F(&R[ex])[3] == 2 && F(&R[ex])[17] == 3);
}

static void test_reduce_where(void) {
  float a[6] = {1, 2, 3, 4, 5, 6};
  int64_t ax[1] = {-1};
  h_new(18);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("ax", 1, ax)};
  int m = h_out("m");
  h_node("ReduceMean", 2, in, 1, &m);
  int m2 = h_out("m2");
  int nd = h_node("ReduceMean", 1, in, 1, &m2); /* all axes */
  h_ai(nd, "keepdims", 0);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[m], 2, DIMS(2, 1)) && F(&R[m])[0] == 2 && F(&R[m])[1] == 5);
  CU_ASSERT(R[m2].ndim == 0 && F(&R[m2])[0] == 3.5f);
  /* opset 11 attribute form */
  h_new(11);
  int x = h_f32("a", 2, DIMS(2, 3), a);
  m = h_out("m");
  nd = h_node("ReduceMean", 1, &x, 1, &m);
  h_ais(nd, "axes", 1, DIMS(0));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[m], 2, DIMS(1, 3)) && F(&R[m])[2] == 4.5f);

  /* Where(Not(Equal(a, 3)), a, -b) with b broadcast */
  float three = 3, nb[1] = {-1};
  h_new(13);
  int ein[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("t", 0, NULL, &three)};
  int eq = h_out("eq"), nt = h_out("nt"), w = h_out("w");
  h_node("Equal", 2, ein, 1, &eq);
  h_node("Not", 1, &eq, 1, &nt);
  int win[3] = {nt, ein[0], h_f32("b", 1, DIMS(1), nb)};
  h_node("Where", 3, win, 1, &w);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(R[eq].dtype == PV_BOOL && ((uint8_t *)R[eq].data)[2] == 1);
  const float want[6] = {1, 2, -1, 4, 5, 6};
  CU_ASSERT(h_maxerr(F(&R[w]), want, 6) == 0);
}

static void test_identity_constant(void) {
  float a[3] = {1, 2, 3};
  h_new(13);
  int x = h_f32("a", 1, DIMS(3), a), i = h_out("i"), d[2] = {h_out("d"), h_out("mask")};
  h_node("Identity", 1, &x, 1, &i);
  h_node("Dropout", 1, &i, 2, d);
  int c = h_out("c");
  int nd = h_node("Constant", 0, NULL, 1, &c);
  h_afs(nd, "value_floats", 3, a);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_maxerr(F(&R[d[0]]), a, 3) == 0);
  CU_ASSERT(((uint8_t *)R[d[1]].data)[2] == 1);
  CU_ASSERT(h_dims_are(&R[c], 1, DIMS(3)) && h_maxerr(F(&R[c]), a, 3) == 0);
}

static void test_fused_act_and_unsupported(void) {
  float a[3] = {-1, 2, -3}, b[3] = {0, 0, 0};
  h_new(13);
  int in[2] = {h_f32("a", 1, DIMS(3), a), h_f32("b", 1, DIMS(3), b)}, o = h_out("o");
  int nd = h_node("Add", 2, in, 1, &o);
  H->nodes[nd].act = PV_ACT_LEAKY;
  H->nodes[nd].act_alpha = 0.5f;
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float want[3] = {-0.5f, 2, -1.5f};
  CU_ASSERT(h_maxerr(F(&R[o]), want, 3) == 0);
  h_new(13);
  int x = h_f32("a", 1, DIMS(3), a);
  o = h_out("o");
  pv_graph_add_node(H, "weird1", "Unique", &x, 1, &o, 1);
  CU_ASSERT_FALSE(pv_ref_supports(H, &H->nodes[0]));
  /* Supported ops answer by the declared input type too. */
  int64_t i3[3] = {1, 2, 3};
  int xi = h_i64("xi", 3, i3), xh = h_val("xh", PV_F16, 1, DIMS(3), NULL);
  int relu = h_node("Relu", 1, &xi, 1, &o), resh = h_node("Reshape", 1, &xh, 1, &o);
  int relu_h = h_node("Relu", 1, &xh, 1, &o), add = h_node("Add", 1, &xi, 1, &o);
  CU_ASSERT_FALSE(pv_ref_supports(H, &H->nodes[relu]));
  CU_ASSERT_FALSE(pv_ref_supports(H, &H->nodes[relu_h]));
  CU_ASSERT_TRUE(pv_ref_supports(H, &H->nodes[resh]));
  CU_ASSERT_TRUE(pv_ref_supports(H, &H->nodes[add]));
  CU_ASSERT_EQUAL(h_run(NULL), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "weird1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "Unique"));
}

/* W = [[1,2],[3,4]] (out x in) as a one-block pivot with its rows
 * swapped: the block holds logical rows 1, 0. */
static pv_pivot *pivot_2x2(void) {
  pv_pivot *p = calloc(1, sizeof *p);
  p->M = 2;
  p->C = 2;
  p->kk = 1;
  p->perm_r = malloc(2 * sizeof(int32_t));
  p->perm_c = malloc(2 * sizeof(int32_t));
  p->row_off = malloc(2 * sizeof(int32_t));
  p->col_off = malloc(2 * sizeof(int32_t));
  p->blocks = calloc(1, sizeof *p->blocks);
  p->data = pv_aligned_alloc(4 * sizeof(float));
  p->perm_r[0] = 1, p->perm_r[1] = 0, p->perm_c[0] = 0, p->perm_c[1] = 1;
  p->row_off[0] = p->col_off[0] = 0;
  p->row_off[1] = p->col_off[1] = 2;
  p->nr = p->nc = p->n_blocks = 1;
  const float d[4] = {3, 4, 1, 2};
  memcpy(p->data, d, sizeof d);
  p->data_len = 4;
  p->data_owned = true;
  return p;
}

static void test_pivot_only_weights(void) {
  float x[2] = {1, 10};
  /* Gemm transB=1 reads W as stored; MatMul reads B = W^T. */
  const char *ops[2] = {"Gemm", "MatMul"};
  const float want[2][2] = {{21, 43}, {21, 43}};
  for (int k = 0; k < 2; k++) {
    h_new(13);
    int in[2] = {h_f32("x", 2, DIMS(1, 2), x), h_val("w", PV_F32, 2, DIMS(2, 2), NULL)};
    H->values[in[1]].pivot = pivot_2x2();
    int out = h_out("y");
    int nd = h_node(ops[k], 2, in, 1, &out);
    if (k == 0) h_ai(nd, "transB", 1);
    int rc = h_run(NULL);
    if (!pv_pivot_to_dense || !pv_pivot_to_dense_t) {
      /* Without pivot support the error says so and names the weight. */
      CU_ASSERT_EQUAL(rc, PV_EUNSUPPORTED);
      CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "'w'"));
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(rc, 0);
    CU_ASSERT(h_maxerr(F(&R[out]), want[k], 2) == 0);
  }
}

/* Run a one-node graph; expect error `code` with `what` in the message. */
static void expect_error(int node, int code, const char *what) {
  int rc = h_run(NULL);
  CU_ASSERT_EQUAL(rc, code);
  if (rc != code || !strstr(pv_errmsg(), what) ||
      !strstr(pv_errmsg(), H->nodes[node].name))
    fprintf(stderr, "\n  got %d '%s', wanted %d '%s'\n", rc, pv_errmsg(), code, what);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), what));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), H->nodes[node].name));
}

static void test_bad_inputs(void) {
  float a[6] = {0};
  int64_t v2[2] = {-1, -1}, z2[2] = {0, 0}, neg[1] = {-3}, big[2] = {1, 5};
  int in[3], out, nd;
  /* Reshape with two -1 */
  h_new(13);
  in[0] = h_f32("a", 2, DIMS(2, 3), a);
  in[1] = h_i64("s", 2, v2);
  out = h_out("y");
  nd = h_node("Reshape", 2, in, 1, &out);
  expect_error(nd, PV_EINVAL, "more than one -1");
  /* Slice step 0 */
  h_new(13);
  int sin[5] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("s", 2, z2), h_i64("e", 2, big),
                -1, h_i64("st", 2, z2)};
  out = h_out("y");
  nd = h_node("Slice", 5, sin, 1, &out);
  expect_error(nd, PV_EINVAL, "step 0");
  /* Expand to a negative dimension */
  h_new(13);
  in[0] = h_f32("a", 1, DIMS(1), a);
  in[1] = h_i64("s", 1, neg);
  out = h_out("y");
  nd = h_node("Expand", 2, in, 1, &out);
  expect_error(nd, PV_EINVAL, "negative dimension -3");
  /* Conv with an INT64 weight */
  h_new(13);
  in[0] = h_f32("a", 3, DIMS(1, 1, 6), a);
  in[1] = h_val("w", PV_I64, 3, DIMS(1, 1, 1), big);
  out = h_out("y");
  nd = h_node("Conv", 2, in, 1, &out);
  expect_error(nd, PV_ETYPE, "weight/bias type");
  /* Conv kernel larger than the padded input */
  h_new(13);
  in[0] = h_f32("a", 3, DIMS(1, 1, 2), a);
  in[1] = h_f32("w", 3, DIMS(1, 1, 3), a);
  out = h_out("y");
  nd = h_node("Conv", 2, in, 1, &out);
  expect_error(nd, PV_ESHAPE, "kernel extent 3");
  /* Transpose with a repeated axis */
  h_new(13);
  in[0] = h_f32("a", 2, DIMS(2, 3), a);
  out = h_out("y");
  nd = h_node("Transpose", 1, in, 1, &out);
  h_ais(nd, "perm", 2, DIMS(1, 1));
  expect_error(nd, PV_EINVAL, "not a permutation");
  /* Reflect padding as wide as the axis */
  int64_t pads[2] = {3, 0};
  h_new(13);
  in[0] = h_f32("a", 1, DIMS(3), a);
  in[1] = h_i64("p", 2, pads);
  out = h_out("y");
  nd = h_node("Pad", 2, in, 1, &out);
  h_as(nd, "mode", "reflect");
  expect_error(nd, PV_ESHAPE, "reflect pad");
  /* Resize given both scales and sizes */
  float sc[2] = {1, 2};
  h_new(13);
  int rin[4] = {h_f32("a", 2, DIMS(2, 3), a), -1, h_f32("sc", 1, DIMS(2), sc),
                h_i64("sz", 2, big)};
  out = h_out("y");
  nd = h_node("Resize", 4, rin, 1, &out);
  expect_error(nd, PV_EINVAL, "exactly one of scales and sizes");
  /* MatMul inner dimensions */
  h_new(13);
  in[0] = h_f32("a", 2, DIMS(2, 3), a);
  in[1] = h_f32("b", 2, DIMS(2, 3), a);
  out = h_out("y");
  nd = h_node("MatMul", 2, in, 1, &out);
  expect_error(nd, PV_ESHAPE, "inner dimensions 3 and 2");
  /* Reshape whose shape is only known at run time */
  h_new(13);
  in[0] = h_f32("a", 2, DIMS(2, 3), a);
  in[1] = h_input("s", PV_I64, 1, DIMS(2));
  out = h_out("y");
  nd = h_node("Reshape", 2, in, 1, &out);
  pv_tensor shp = {.dtype = PV_I64, .ndim = 1, .dims = {2}, .data = NULL};
  int rc = h_run(&shp);
  CU_ASSERT_EQUAL(rc, PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "not known before execution"));
}

/* Random single-node graphs (ops, dtypes, dims, attributes with int64
 * extremes): inference and the reference op either succeed or fail with
 * a message naming the op; under --enable-asan this also proves no
 * out-of-bounds access. Fixed seed, so failures reproduce. */
static uint64_t rs = 88172645463325252ull;
static int64_t rr(int64_t lo, int64_t hi) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return lo + (int64_t)(rs % (uint64_t)(hi - lo + 1));
}
static int64_t rbig(int lo, int hi) {
  static const int64_t ex[] = {INT64_MAX, INT64_MIN, INT64_C(1) << 40, 1 << 20};
  return rr(0, 15) ? rr(lo, hi) : ex[rr(0, 3)];
}

static void random_node(void) {
  static const char *const ops[] = {
      "Conv", "Gemm", "MatMul", "Add", "Div", "Pow", "Equal", "Where", "Not",
      "Clip", "Softmax", "MaxPool", "AveragePool", "GlobalMaxPool",
      "BatchNormalization", "Concat", "Reshape", "Flatten", "Transpose",
      "Resize", "Upsample", "Pad", "Constant", "Split", "Slice", "Shape",
      "Gather", "Unsqueeze", "Squeeze", "Cast", "ConstantOfShape", "Range",
      "Expand", "ReduceMean", "Dropout", "Neg", "CastLike"};
  static const char *const inames[] = {"axis", "group", "transB", "ceil_mode",
                                       "count_include_pad", "keepdims", "to", "start",
                                       "num_outputs", "antialias"};
  static const char *const lnames[] = {"pads", "strides", "dilations", "kernel_shape",
                                       "perm", "axes", "split", "starts", "ends"};
  static const char *const snames[] = {"auto_pad", "mode", "nearest_mode",
                                       "coordinate_transformation_mode",
                                       "keep_aspect_ratio_policy"};
  static const char *const svals[] = {"SAME_UPPER", "SAME_LOWER", "VALID", "reflect",
                                      "edge", "floor", "align_corners", "bogus", "wrap",
                                      "half_pixel_symmetric", "not_larger", "linear"};
  static const pv_dtype dts[] = {PV_F32, PV_I64, PV_I32, PV_BOOL};
  h_new((int)rr(7, 22));
  int nin = (int)rr(0, 5), in[5], out[3], nout = (int)rr(1, 3);
  for (int k = 0; k < nin; k++) {
    int64_t dims[PV_MAX_DIMS];
    int nd = (int)rr(0, 5);
    for (int d = 0; d < nd; d++) dims[d] = rr(0, 9) ? rr(1, 4) : rr(0, 6);
    pv_dtype t = rr(0, 2) ? PV_F32 : dts[rr(0, 3)];
    int v = h_val("i", t, nd, dims, NULL);
    pv_value *x = &H->values[v];
    pv_tensor tt = pv_value_tensor(x);
    x->nbytes = pv_tensor_nbytes(&tt);
    x->data = pv_aligned_alloc(x->nbytes);
    for (size_t e = 0; e < x->nbytes / pv_dtype_size(t); e++)
      if (t == PV_I64) ((int64_t *)x->data)[e] = rbig(-6, 6);
      else if (t == PV_F32) ((float *)x->data)[e] = (float)rr(-30, 30) / 7;
      else if (t == PV_I32) ((int32_t *)x->data)[e] = (int32_t)rr(-6, 6);
      else ((uint8_t *)x->data)[e] = (uint8_t)rr(0, 1);
    in[k] = rr(0, 12) ? v : -1;
  }
  for (int k = 0; k < nout; k++) out[k] = h_out("o");
  int nd = h_node(ops[rr(0, sizeof ops / sizeof *ops - 1)], nin, in, nout, out);
  for (int a = (int)rr(0, 4); a > 0; a--) {
    int64_t l[8];
    int kind = (int)rr(0, 2), n = (int)rr(0, 8);
    for (int j = 0; j < n; j++) l[j] = rbig(-3, 4);
    if (kind == 0) h_ai(nd, inames[rr(0, 9)], rbig(-4, 8));
    else if (kind == 1) h_ais(nd, lnames[rr(0, 8)], n, l);
    else h_as(nd, snames[rr(0, 4)], svals[rr(0, 11)]);
  }
  int rc = h_run(NULL);
  if (rc && rc != PV_ENOMEM && rc != PV_ERANGE && !strstr(pv_errmsg(), H->nodes[0].op)) {
    CU_FAIL("error message does not name the op");
    fprintf(stderr, "\n  %s\n", pv_errmsg());
  }
}

static void test_random_nodes(void) {
  for (int i = 0; i < 5000; i++) random_node();
  CU_PASS("no crash");
}

/* ------------------------------------------------------------ ops_ext.c */

#define I64P(t) ((const int64_t *)(t)->data)

static bool ints_are(const pv_tensor *t, const int64_t *want, int n) {
  if (pv_tensor_numel(t) != n) return false;
  for (int i = 0; i < n; i++)
    if (I64P(t)[i] != want[i]) return false;
  return true;
}

/* TopK orders equal values by lower index first, as ONNX Runtime does. */
static void test_topk_ties(void) {
  float a[6] = {3, 1, 3, 2, 3, 1};
  int64_t k4[1] = {4}, k3[1] = {3};
  h_new(13);
  int in[2] = {h_f32("a", 1, DIMS(6), a), h_i64("k", 1, k4)};
  int out[2] = {h_out("v"), h_out("i")};
  h_node("TopK", 2, in, 2, out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wv[4] = {3, 3, 3, 2};
  CU_ASSERT(h_dims_are(&R[out[0]], 1, DIMS(4)));
  CU_ASSERT(h_maxerr(F(&R[out[0]]), wv, 4) == 0);
  CU_ASSERT(ints_are(&R[out[1]], DIMS(0, 2, 4, 3), 4));
  /* smallest: the two 1s (indices 1, 5), then 2 */
  h_new(13);
  in[0] = h_f32("a", 1, DIMS(6), a);
  in[1] = h_i64("k", 1, k3);
  out[0] = h_out("v"), out[1] = h_out("i");
  int nd = h_node("TopK", 2, in, 2, out);
  h_ai(nd, "largest", 0);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wv2[3] = {1, 1, 2};
  CU_ASSERT(h_maxerr(F(&R[out[0]]), wv2, 3) == 0);
  CU_ASSERT(ints_are(&R[out[1]], DIMS(1, 5, 3), 3));
  /* along axis 0 of [[1,5],[1,5],[0,5]]: ties everywhere */
  float b[6] = {1, 5, 1, 5, 0, 5};
  int64_t k2[1] = {2};
  h_new(13);
  in[0] = h_f32("b", 2, DIMS(3, 2), b);
  in[1] = h_i64("k", 1, k2);
  out[0] = h_out("v"), out[1] = h_out("i");
  nd = h_node("TopK", 2, in, 2, out);
  h_ai(nd, "axis", 0);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[out[1]], 2, DIMS(2, 2)));
  CU_ASSERT(ints_are(&R[out[1]], DIMS(0, 0, 1, 1), 4));
  /* K larger than the axis is refused, naming the node */
  int64_t k9[1] = {9};
  h_new(13);
  in[0] = h_f32("a", 1, DIMS(6), a);
  in[1] = h_i64("k", 1, k9);
  out[0] = h_out("v"), out[1] = h_out("i");
  h_node("TopK", 2, in, 2, out);
  CU_ASSERT_EQUAL(h_run(NULL), PV_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "TopK"));
  /* opset < 10: k is an attribute */
  h_new(9);
  in[0] = h_f32("a", 1, DIMS(6), a);
  out[0] = h_out("v"), out[1] = h_out("i");
  nd = h_node("TopK", 1, in, 2, out);
  h_ai(nd, "k", 2);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(ints_are(&R[out[1]], DIMS(0, 2), 2));
}

static void arg_case(const char *op, int last, int keep, const int64_t *want,
                     int n) {
  float a[8] = {1, 3, 3, 0, 2, 2, 1, 2};
  h_new(13);
  int x = h_f32("a", 2, DIMS(2, 4), a), o = h_out("o");
  int nd = h_node(op, 1, &x, 1, &o);
  h_ai(nd, "axis", -1);
  h_ai(nd, "select_last_index", last);
  h_ai(nd, "keepdims", keep);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_EQUAL(R[o].dtype, PV_I64);
  CU_ASSERT(keep ? h_dims_are(&R[o], 2, DIMS(2, 1)) : h_dims_are(&R[o], 1, DIMS(2)));
  CU_ASSERT(ints_are(&R[o], want, n));
}

/* Rows [1,3,3,0] and [2,2,1,2]: first / last maximum and minimum. */
static void test_argmax_last(void) {
  arg_case("ArgMax", 0, 1, DIMS(1, 0), 2);
  arg_case("ArgMax", 1, 0, DIMS(2, 3), 2);
  arg_case("ArgMin", 0, 0, DIMS(3, 2), 2);
  arg_case("ArgMin", 1, 1, DIMS(3, 2), 2);
}

/* 1-D ConvTranspose of x = [1,2,3] with w = [1,1,1], stride 2: the full
 * output is [1,1,3,2,5,3,3]; pads / output_shape crop it, output_padding
 * extends it with zeros (plus the bias). */
static void convt_case(const int64_t *pads, const int64_t *oshape,
                       const char *auto_pad, int64_t opad, float bias, int on,
                       const float *want) {
  float x[3] = {1, 2, 3}, w[3] = {1, 1, 1}, b[1] = {bias};
  h_new(13);
  int in[3] = {h_f32("x", 3, DIMS(1, 1, 3), x), h_f32("w", 3, DIMS(1, 1, 3), w),
               h_f32("b", 1, DIMS(1), b)};
  int o = h_out("y");
  int nd = h_node("ConvTranspose", 3, in, 1, &o);
  h_ais(nd, "strides", 1, DIMS(2));
  if (pads) h_ais(nd, "pads", 2, pads);
  if (oshape) h_ais(nd, "output_shape", 1, oshape);
  if (auto_pad) h_as(nd, "auto_pad", auto_pad);
  if (opad) h_ais(nd, "output_padding", 1, DIMS(opad));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[o], 3, DIMS(1, 1, on)));
  CU_ASSERT(h_maxerr(F(&R[o]), want, on) == 0);
}

static void test_convtranspose(void) {
  const float full[7] = {1, 1, 3, 2, 5, 3, 3};
  convt_case(NULL, NULL, NULL, 0, 0, 7, full);
  const float p12[4] = {1, 3, 2, 5};
  convt_case(DIMS(1, 2), NULL, NULL, 0, 0, 4, p12);
  const float op1[8] = {11, 11, 13, 12, 15, 13, 13, 10};
  convt_case(NULL, NULL, NULL, 1, 10, 8, op1);
  /* output_shape 5: total padding 2, one each side */
  const float os5[5] = {1, 3, 2, 5, 3};
  convt_case(NULL, DIMS(5), NULL, 0, 0, 5, os5);
  /* output_shape 6: total padding 1; the ONNX rule puts it at the end for
   * SAME_UPPER and at the beginning otherwise */
  const float os6u[6] = {1, 1, 3, 2, 5, 3}, os6[6] = {1, 3, 2, 5, 3, 3};
  convt_case(NULL, DIMS(6), "SAME_UPPER", 0, 0, 6, os6u);
  convt_case(NULL, DIMS(6), NULL, 0, 0, 6, os6);
  /* auto_pad SAME_UPPER alone: output = input * stride = 6 */
  convt_case(NULL, NULL, "SAME_UPPER", 0, 0, 6, os6u);
  convt_case(NULL, NULL, "SAME_LOWER", 0, 0, 6, os6);
  /* 2-D, two groups of one channel: each output is its input times its
   * own kernel */
  float x2[2] = {1, 2}, w2[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  h_new(13);
  int in[2] = {h_f32("x", 4, DIMS(1, 2, 1, 1), x2), h_f32("w", 4, DIMS(2, 1, 2, 2), w2)};
  int o = h_out("y");
  int nd = h_node("ConvTranspose", 2, in, 1, &o);
  h_ai(nd, "group", 2);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[o], 4, DIMS(1, 2, 2, 2)));
  const float want2[8] = {1, 2, 3, 4, 10, 12, 14, 16};
  CU_ASSERT(h_maxerr(F(&R[o]), want2, 8) == 0);
  /* dilation 2: x = [1,2], w = [1,1] -> taps at 0,2 and 1,3 */
  float x3[2] = {1, 2}, w3[2] = {1, 1};
  h_new(13);
  in[0] = h_f32("x", 3, DIMS(1, 1, 2), x3);
  in[1] = h_f32("w", 3, DIMS(1, 1, 2), w3);
  o = h_out("y");
  nd = h_node("ConvTranspose", 2, in, 1, &o);
  h_ais(nd, "dilations", 1, DIMS(2));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float want3[4] = {1, 2, 1, 2};
  CU_ASSERT(h_maxerr(F(&R[o]), want3, 4) == 0);
  /* 3-D: a 1x1x1 input through a 2x1x1 kernel of stride 2 lands on the
   * first depth of each output pair; 4-D is refused with the node named,
   * not computed wrongly */
  float x5[1] = {3}, w5[2] = {2, -1};
  h_new(13);
  in[0] = h_f32("x", 5, DIMS(1, 1, 1, 1, 1), x5);
  in[1] = h_f32("w", 5, DIMS(1, 1, 2, 1, 1), w5);
  o = h_out("y");
  h_node("ConvTranspose", 2, in, 1, &o);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_EQUAL(R[o].ndim, 5);
  CU_ASSERT_EQUAL(R[o].dims[2], 2);
  const float want5[2] = {6, -3};
  CU_ASSERT(h_maxerr(F(&R[o]), want5, 2) == 0);
  float x6[1] = {1};
  h_new(13);
  in[0] = h_f32("x", 6, DIMS(1, 1, 1, 1, 1, 1), x6);
  in[1] = h_f32("w", 6, DIMS(1, 1, 1, 1, 1, 1), x6);
  o = h_out("y");
  h_node("ConvTranspose", 2, in, 1, &o);
  CU_ASSERT_EQUAL(h_run(NULL), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "ConvTranspose"));
}

/* [[1,5],[7,2]]: axes as an input from opset 18, noop_with_empty_axes,
 * and the other reductions by hand. */
static void test_reduce_ext(void) {
  float a[4] = {1, 5, 7, 2};
  int64_t ax1[1] = {1};
  h_new(18);
  int in[2] = {h_f32("a", 2, DIMS(2, 2), a), h_i64("axes", 1, ax1)};
  int o = h_out("o");
  int nd = h_node("ReduceMax", 2, in, 1, &o);
  h_ai(nd, "keepdims", 0);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[o], 1, DIMS(2)));
  const float w1[2] = {5, 7};
  CU_ASSERT(h_maxerr(F(&R[o]), w1, 2) == 0);
  /* no axes, noop: the input unchanged */
  h_new(18);
  in[0] = h_f32("a", 2, DIMS(2, 2), a);
  o = h_out("o");
  nd = h_node("ReduceMin", 1, in, 1, &o);
  h_ai(nd, "noop_with_empty_axes", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[o], 2, DIMS(2, 2)));
  CU_ASSERT(h_maxerr(F(&R[o]), a, 4) == 0);
  /* no axes: everything, keepdims */
  h_new(18);
  in[0] = h_f32("a", 2, DIMS(2, 2), a);
  o = h_out("o");
  h_node("ReduceLogSumExp", 1, in, 1, &o);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(h_dims_are(&R[o], 2, DIMS(1, 1)));
  const float w3[1] = {7.1350133f}; /* log(e + e^5 + e^7 + e^2) */
  CU_ASSERT(h_maxerr(F(&R[o]), w3, 1) < 1e-6);
  /* attribute axes before 18 */
  const char *ops[] = {"ReduceL2", "ReduceL1", "ReduceProd", "ReduceSumSquare"};
  const float want[4][2] = {{7.0710678f, 5.3851648f}, {8, 7}, {7, 10}, {50, 29}};
  for (int i = 0; i < 4; i++) {
    h_new(13);
    in[0] = h_f32("a", 2, DIMS(2, 2), a);
    o = h_out("o");
    nd = h_node(ops[i], 1, in, 1, &o);
    h_ais(nd, "axes", 1, DIMS(0));
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(h_dims_are(&R[o], 2, DIMS(1, 2)));
    CU_ASSERT(h_maxerr(F(&R[o]), want[i], 2) < 1e-6);
  }
  /* an axis out of range names the node */
  h_new(13);
  in[0] = h_f32("a", 2, DIMS(2, 2), a);
  o = h_out("o");
  nd = h_node("ReduceMax", 1, in, 1, &o);
  h_ais(nd, "axes", 1, DIMS(2));
  CU_ASSERT_EQUAL(h_run(NULL), PV_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "ReduceMax"));
}

/* Linear Resize of [10,20,30,40] by hand: half_pixel x2 samples at
 * (i+.5)/2-.5, clamped into [0, 3]; align_corners to 6 at i*3/5. */
static void test_resize_linear(void) {
  float a[4] = {10, 20, 30, 40}, roi[1] = {0}, sc[2] = {1, 2};
  int64_t sz[2] = {1, 6};
  for (int c = 0; c < 3; c++) {
    h_new(13);
    int in[4] = {h_f32("a", 2, DIMS(1, 4), a), h_f32("roi", 1, DIMS(0), roi),
                 c != 1 ? h_f32("sc", 1, DIMS(2), sc) : -1,
                 c == 1 ? h_i64("sz", 2, sz) : -1};
    int o = h_out("y");
    int nd = h_node("Resize", 4, in, 1, &o);
    h_as(nd, "mode", "linear");
    h_as(nd, "coordinate_transformation_mode",
         c == 0 ? "half_pixel" : c == 1 ? "align_corners" : "asymmetric");
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    const float hp[8] = {10, 12.5f, 17.5f, 22.5f, 27.5f, 32.5f, 37.5f, 40};
    const float ac[6] = {10, 16, 22, 28, 34, 40};
    const float as[8] = {10, 15, 20, 25, 30, 35, 40, 40};
    int on = c == 1 ? 6 : 8;
    CU_ASSERT_FATAL(h_dims_are(&R[o], 2, DIMS(1, on)));
    CU_ASSERT(h_maxerr(F(&R[o]), c == 0 ? hp : c == 1 ? ac : as, on) < 1e-6);
  }
  /* an unknown mode is refused by name */
  h_new(13);
  int in[3] = {h_f32("a", 2, DIMS(1, 4), a), h_f32("roi", 1, DIMS(0), roi),
               h_f32("sc", 1, DIMS(2), sc)};
  int o = h_out("y");
  int nd = h_node("Resize", 3, in, 1, &o);
  h_as(nd, "mode", "area");
  CU_ASSERT_EQUAL(h_run(NULL), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "area"));
}

/* Mod: fmod=0 takes the divisor's sign (Python), fmod=1 the dividend's
 * (C); DepthToSpace DCR vs CRD; GatherElements and ScatterND indices. */
static void test_index_layout_ext(void) {
  int64_t a[4] = {-7, 7, -7, 7}, b[4] = {3, -3, -3, 3};
  for (int f = 0; f < 2; f++) {
    h_new(13);
    int in[2] = {h_i64("a", 4, a), h_i64("b", 4, b)}, o = h_out("o");
    int nd = h_node("Mod", 2, in, 1, &o);
    h_ai(nd, "fmod", f);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(ints_are(&R[o], f ? DIMS(-1, 1, -1, 1) : DIMS(2, -2, -1, 1), 4));
  }
  float x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int crd = 0; crd < 2; crd++) {
    h_new(13);
    int xi = h_f32("x", 4, DIMS(1, 8, 1, 1), x), o = h_out("o");
    int nd = h_node("DepthToSpace", 1, &xi, 1, &o);
    h_ai(nd, "blocksize", 2);
    if (crd) h_as(nd, "mode", "CRD");
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT_FATAL(h_dims_are(&R[o], 4, DIMS(1, 2, 2, 2)));
    const float dcr[8] = {0, 2, 4, 6, 1, 3, 5, 7};
    CU_ASSERT(h_maxerr(F(&R[o]), crd ? x : dcr, 8) == 0);
  }
  /* GatherElements axis 1 with a negative index */
  float g[6] = {1, 2, 3, 4, 5, 6};
  int64_t gi[4] = {2, -3, 0, -1};
  h_new(13);
  int in[3] = {h_f32("g", 2, DIMS(2, 3), g), h_val("gi", PV_I64, 2, DIMS(2, 2), gi)};
  int o = h_out("o");
  int nd = h_node("GatherElements", 2, in, 1, &o);
  h_ai(nd, "axis", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wg[4] = {3, 1, 4, 6};
  CU_ASSERT(h_maxerr(F(&R[o]), wg, 4) == 0);
  int64_t bad[4] = {3, 0, 0, 0};
  h_new(13);
  in[0] = h_f32("g", 2, DIMS(2, 3), g);
  in[1] = h_val("gi", PV_I64, 2, DIMS(2, 2), bad);
  o = h_out("o");
  nd = h_node("GatherElements", 2, in, 1, &o);
  h_ai(nd, "axis", 1);
  CU_ASSERT_EQUAL(h_run(NULL), PV_EINVAL);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "out of range"));
  /* ScatterND: rows 1 and 0 of a [2,3] replaced; then an index past the end */
  int64_t si[2] = {1, 0};
  float up[6] = {7, 8, 9, 10, 11, 12};
  for (int k = 0; k < 2; k++) {
    if (k) si[0] = 2;
    h_new(16);
    in[0] = h_f32("g", 2, DIMS(2, 3), g);
    in[1] = h_val("si", PV_I64, 2, DIMS(2, 1), si);
    in[2] = h_f32("up", 2, DIMS(2, 3), up);
    o = h_out("o");
    h_node("ScatterND", 3, in, 1, &o);
    if (k) {
      CU_ASSERT_EQUAL(h_run(NULL), PV_EINVAL);
      CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "ScatterND"));
      break;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    const float ws[6] = {10, 11, 12, 7, 8, 9};
    CU_ASSERT(h_maxerr(F(&R[o]), ws, 6) == 0);
  }
  /* Tile [1,2] x (2,2) -> [[1,2,1,2],[1,2,1,2]] */
  float t[2] = {1, 2};
  int64_t reps[2] = {2, 2};
  h_new(13);
  in[0] = h_f32("t", 2, DIMS(1, 2), t);
  in[1] = h_i64("r", 2, reps);
  o = h_out("o");
  h_node("Tile", 2, in, 1, &o);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[o], 2, DIMS(2, 4)));
  const float wt[8] = {1, 2, 1, 2, 1, 2, 1, 2};
  CU_ASSERT(h_maxerr(F(&R[o]), wt, 8) == 0);
  /* CumSum exclusive + reverse of [1,2,3] = [5,3,0] */
  float c[3] = {1, 2, 3};
  int64_t ax[1] = {0};
  h_new(13);
  in[0] = h_f32("c", 1, DIMS(3), c);
  in[1] = h_i64("ax", 1, ax);
  o = h_out("o");
  nd = h_node("CumSum", 2, in, 1, &o);
  h_ai(nd, "exclusive", 1);
  h_ai(nd, "reverse", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wc[3] = {5, 3, 0};
  CU_ASSERT(h_maxerr(F(&R[o]), wc, 3) == 0);
}

/* Einsum by hand: a matrix product, a trace, implicit output order, an
 * ellipsis, and a bad equation named. */
static void einsum_case(const char *eq, int nin, int ndim, const int64_t *dims,
                        const float *want, int nw) {
  float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 2, 1, 0, 3};
  h_new(13);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("b", 2, DIMS(3, 2), b)};
  int o = h_out("o");
  int nd = h_node("Einsum", nin, in, 1, &o);
  h_as(nd, "equation", eq);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[o], ndim, dims));
  CU_ASSERT(h_maxerr(F(&R[o]), want, nw) == 0);
}

static void test_einsum(void) {
  /* a [[1,2,3],[4,5,6]] x b [[1,0],[2,1],[0,3]] = [[5,11],[14,23]] */
  const float mm[4] = {5, 11, 14, 23};
  einsum_case("ij,jk->ik", 2, 2, DIMS(2, 2), mm, 4);
  einsum_case("...j,jk", 2, 2, DIMS(2, 2), mm, 4);
  const float mmt[4] = {5, 14, 11, 23};
  einsum_case("ij,jk->ki", 2, 2, DIMS(2, 2), mmt, 4);
  /* implicit: "ji" keeps the letters alphabetically: i, j -> transpose */
  const float tr[6] = {1, 4, 2, 5, 3, 6};
  einsum_case("ji", 1, 2, DIMS(3, 2), tr, 6);
  const float rows[2] = {6, 15}, all[1] = {21};
  einsum_case("ij->i", 1, 1, DIMS(2), rows, 2);
  einsum_case("ij->", 1, 0, DIMS(0), all, 1);
  /* trace of a . b = 5 + 23 */
  const float trace[1] = {28};
  einsum_case("ij,ji", 2, 0, DIMS(0), trace, 1);
  float a[6] = {1, 2, 3, 4, 5, 6};
  h_new(13);
  int x = h_f32("a", 2, DIMS(2, 3), a), o = h_out("o");
  int nd = h_node("Einsum", 1, &x, 1, &o);
  h_as(nd, "equation", "ijk->i");
  CU_ASSERT_EQUAL(h_run(NULL), PV_ESHAPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "Einsum"));
}

/* Ops still missing are refused at support time and at run time with the
 * node and op named; NonZero, once refused, runs and sizes its output by
 * the data. */
static void test_ext_unsupported(void) {
  float a[2] = {1, 2};
  h_new(13);
  int x = h_f32("a", 1, DIMS(2), a), o = h_out("o");
  pv_graph_add_node(H, "uq1", "Unique", &x, 1, &o, 1);
  CU_ASSERT_FALSE(pv_ref_supports(H, &H->nodes[0]));
  CU_ASSERT_EQUAL(h_run(NULL), PV_EUNSUPPORTED);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "uq1"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "Unique"));
  float z[6] = {0, 2, -0.0f, 0, NAN, 0};
  h_new(13);
  x = h_f32("z", 2, DIMS(2, 3), z);
  o = h_out("o");
  pv_graph_add_node(H, "nz1", "NonZero", &x, 1, &o, 1);
  CU_ASSERT_TRUE(pv_ref_supports(H, &H->nodes[0]));
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_EQUAL(R[o].dtype, PV_I64);
  CU_ASSERT_EQUAL(R[o].dims[0], 2);
  CU_ASSERT_EQUAL(R[o].dims[1], 2); /* 2 at (0, 1) and NaN at (1, 1) */
  const int64_t *nz = R[o].data;
  CU_ASSERT(nz[0] == 0 && nz[1] == 1 && nz[2] == 1 && nz[3] == 1);
  /* Float-only ops refuse integer inputs by declared type */
  int64_t i2[2] = {1, 2};
  h_new(13);
  int xi = h_i64("xi", 2, i2);
  o = h_out("o");
  int nd = h_node("Softplus", 1, &xi, 1, &o);
  int nd2 = h_node("Max", 1, &xi, 1, &o);
  CU_ASSERT_FALSE(pv_ref_supports(H, &H->nodes[nd]));
  CU_ASSERT_TRUE(pv_ref_supports(H, &H->nodes[nd2]));
}

/* NonMaxSuppression keeps its kept boxes ordered by left edge and
 * compares a candidate only with those whose x-range can overlap: the
 * result must be the scan of every kept box's, on clustered, nested,
 * touching, flipped-corner and zero-area boxes, at thresholds from 0 up,
 * with centre-encoded boxes, and with a NaN coordinate (plain scan). */
static bool naive_suppress(const float *a, const float *b, float thr) {
  float ia = (a[2] - a[0]) * (a[3] - a[1]), ib = (b[2] - b[0]) * (b[3] - b[1]);
  if (ia <= 0 || ib <= 0) return false;
  float iy = fminf(a[2], b[2]) - fmaxf(a[0], b[0]);
  float ix = fminf(a[3], b[3]) - fmaxf(a[1], b[1]);
  if (iy <= 0 || ix <= 0) return false;
  float inter = iy * ix;
  return inter / (ia + ib - inter) > thr;
}

static void test_nms_ordered_scan(void) {
  enum { N = 300 };
  static float boxes[N * 4], scores[2 * N];
  for (int round = 0; round < 8; round++) {
    h_fill(boxes, N * 4, 100 + round);
    h_fill(scores, 2 * N, 200 + round);
    int center = round == 5;
    for (int i = 0; i < N; i++) {
      float *b = boxes + i * 4;
      /* clusters of 30 boxes, widths up to 40 (one in ten 400 wide) */
      float cx = (float)(i % 10) * 50 + b[0] * 8, cy = b[1] * 8;
      float w = (b[2] + 1.1f) * (i % 10 == 3 ? 200 : 20), h = (b[3] + 1.1f) * 20;
      if (center) {
        b[0] = cx, b[1] = cy, b[2] = w, b[3] = h;
      } else {
        b[0] = cy - h / 2, b[1] = cx - w / 2, b[2] = cy + h / 2, b[3] = cx + w / 2;
        if (i % 7 == 0) { float t = b[1]; b[1] = b[3]; b[3] = t; } /* flipped */
        if (i % 13 == 0) b[3] = b[1];                             /* no area */
        if (i % 17 == 0) b[1] = boxes[(i - 1 + N) % N * 4 + 3];   /* touching */
      }
    }
    if (round == 7) boxes[11 * 4 + 1] = NAN;
    float thr = round == 0 ? 0.0f : 0.1f * (float)round;
    h_new(13);
    int64_t bd[3] = {1, N, 4}, sd[3] = {1, 2, N};
    int in[5] = {h_f32("boxes", 3, bd, boxes), h_f32("scores", 3, sd, scores)};
    int64_t mo = N;
    in[2] = h_i64("max", 1, &mo);
    in[3] = h_f32("iou", 1, DIMS(1), &thr);
    int o = h_out("sel");
    int nd = h_node("NonMaxSuppression", 4, in, 1, &o);
    h_ai(nd, "center_point_box", center);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    /* the naive scan */
    float corner[N * 4];
    for (int i = 0; i < N; i++) {
      const float *b = boxes + i * 4;
      float *c = corner + i * 4;
      if (center) {
        c[0] = b[1] - b[3] / 2, c[1] = b[0] - b[2] / 2;
        c[2] = b[1] + b[3] / 2, c[3] = b[0] + b[2] / 2;
      } else {
        c[0] = fminf(b[0], b[2]), c[2] = fmaxf(b[0], b[2]);
        c[1] = fminf(b[1], b[3]), c[3] = fmaxf(b[1], b[3]);
      }
    }
    int64_t want[2 * N * 3], nw = 0;
    for (int cl = 0; cl < 2; cl++) {
      int order[N], kept[N], nk = 0;
      for (int i = 0; i < N; i++) order[i] = i;
      const float *sc = scores + cl * N;
      for (int i = 1; i < N; i++) /* insertion sort: score down, index up */
        for (int j = i; j > 0 && sc[order[j]] > sc[order[j - 1]]; j--) {
          int t = order[j];
          order[j] = order[j - 1];
          order[j - 1] = t;
        }
      for (int k = 0; k < N; k++) {
        bool drop = false;
        for (int j = 0; j < nk && !drop; j++)
          drop = naive_suppress(corner + kept[j] * 4, corner + order[k] * 4, thr);
        if (drop) continue;
        kept[nk++] = order[k];
        want[nw * 3] = 0, want[nw * 3 + 1] = cl, want[nw * 3 + 2] = order[k];
        nw++;
      }
    }
    CU_ASSERT_EQUAL(R[o].dims[0], nw);
    if (R[o].dims[0] == nw)
      CU_ASSERT_EQUAL(memcmp(R[o].data, want, sizeof(int64_t) * 3 * (size_t)nw), 0);
    CU_ASSERT(nw > 2 && nw < 2 * N); /* something kept, something dropped */
  }
}

/* Random single nodes of the ops_ext.c ops: succeed or fail naming the op
 * (with --enable-asan: no out-of-bounds access). */
static void random_ext_node(void) {
  static const char *const ops[] = {
      "HardSigmoid", "PRelu", "Selu", "Sign", "Min", "Max", "Sum", "Mean",
      "LessOrEqual", "And", "Xor", "Mod", "ReduceMax", "ReduceL2",
      "ReduceLogSumExp", "ReduceProd", "ArgMax", "ArgMin", "Tile", "TopK",
      "GatherElements", "ScatterND", "CumSum", "DepthToSpace", "SpaceToDepth",
      "InstanceNormalization", "LayerNormalization", "ConvTranspose", "IsInf",
      "Einsum", "LRN", "Trilu", "GatherND", "ScatterElements", "Hardmax",
      "LpNormalization", "MeanVarianceNormalization", "GroupNormalization",
      "GlobalLpPool", "EyeLike", "Gelu", "Mish", "QuantizeLinear",
      "DequantizeLinear", "RMSNormalization", "Swish"};
  static const char *const inames[] = {"axis", "group", "keepdims", "blocksize",
                                       "select_last_index", "largest", "fmod",
                                       "noop_with_empty_axes", "size", "upper",
                                       "batch_dims", "p", "num_groups", "k",
                                       "precision", "output_dtype"};
  static const char *const lnames[] = {"pads", "strides", "dilations", "kernel_shape",
                                       "output_padding", "output_shape", "axes"};
  static const char *const svals[] = {"SAME_UPPER", "SAME_LOWER", "VALID", "CRD",
                                      "add", "bogus", "max"};
  static const pv_dtype dts[] = {PV_F32, PV_I64, PV_I32, PV_BOOL};
  h_new((int)rr(7, 22));
  int nin = (int)rr(0, 4), in[4], out[3], nout = (int)rr(1, 3);
  for (int k = 0; k < nin; k++) {
    int64_t dims[PV_MAX_DIMS];
    int nd = (int)rr(0, 5);
    for (int d = 0; d < nd; d++) dims[d] = rr(0, 9) ? rr(1, 4) : rr(0, 6);
    pv_dtype t = rr(0, 2) ? PV_F32 : dts[rr(0, 3)];
    int v = h_val("i", t, nd, dims, NULL);
    pv_value *x = &H->values[v];
    pv_tensor tt = pv_value_tensor(x);
    x->nbytes = pv_tensor_nbytes(&tt);
    x->data = pv_aligned_alloc(x->nbytes);
    for (size_t e = 0; e < x->nbytes / pv_dtype_size(t); e++)
      if (t == PV_I64) ((int64_t *)x->data)[e] = rbig(-6, 6);
      else if (t == PV_F32) ((float *)x->data)[e] = (float)rr(-30, 30) / 7;
      else if (t == PV_I32) ((int32_t *)x->data)[e] = (int32_t)rr(-6, 6);
      else ((uint8_t *)x->data)[e] = (uint8_t)rr(0, 1);
    in[k] = rr(0, 12) ? v : -1;
  }
  for (int k = 0; k < nout; k++) out[k] = h_out("o");
  int nd = h_node(ops[rr(0, sizeof ops / sizeof *ops - 1)], nin, in, nout, out);
  for (int a = (int)rr(0, 4); a > 0; a--) {
    int64_t l[8];
    int kind = (int)rr(0, 2), n = (int)rr(0, 8);
    for (int j = 0; j < n; j++) l[j] = rbig(-3, 4);
    if (kind == 0) h_ai(nd, inames[rr(0, 13)], rbig(-4, 8));
    else if (kind == 1) h_ais(nd, lnames[rr(0, 6)], n, l);
    else h_as(nd, rr(0, 2) ? "auto_pad" : rr(0, 1) ? "mode" : "reduction", svals[rr(0, 6)]);
  }
  static const char *const eqs[] = {"ij,jk->ik", "...i->...", "ii->i", "ab,bc",
                                    "a...,...->a", "i,i", "->", ",", "iij->j",
                                    "...,...", "abcdefgh->hgfedcba", "a.b", "ab->bb"};
  if (!strcmp(H->nodes[nd].op, "Einsum")) h_as(nd, "equation", eqs[rr(0, 12)]);
  int rc = h_run(NULL);
  if (rc && rc != PV_ENOMEM && rc != PV_ERANGE && !strstr(pv_errmsg(), H->nodes[0].op)) {
    CU_FAIL("error message does not name the op");
    fprintf(stderr, "\n  %s\n", pv_errmsg());
  }
}

static void test_random_ext_nodes(void) {
  for (int i = 0; i < 5000; i++) random_ext_node();
  CU_PASS("no crash");
}

static void cleanup(void) {
  h_free_run();
  pv_graph_free(H);
  H = NULL;
}

/* What opsets 18-22 changed: Pad's axes input and wrap mode, Split's
 * num_outputs, Resize's keep_aspect_ratio_policy and antialias, ScatterND's
 * max/min, Gelu's approximate; each against hand-computed values, and each
 * misuse refused by name. */
static void test_opset18_22(void) {
  float a[6] = {1, 2, 3, 4, 5, 6};
  int64_t p21[2] = {2, 1}, p10[2] = {1, 0}, p1010[4] = {1, 0, 1, 0}, ax_last[1] = {-1};
  /* wrap at 19; refused by name at 18, where it did not exist */
  for (int opset = 18; opset <= 19; opset++) {
    h_new(opset);
    int in[2] = {h_f32("a", 1, DIMS(3), a), h_i64("p", 2, p21)};
    int out = h_out("y");
    int nd = h_node("Pad", 2, in, 1, &out);
    h_as(nd, "mode", "wrap");
    if (opset == 18) {
      expect_error(nd, PV_EUNSUPPORTED, "mode 'wrap'");
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    const float want[6] = {2, 3, 1, 2, 3, 1};
    CU_ASSERT(h_dims_are(&R[out], 1, DIMS(6)) && h_maxerr(F(&R[out]), want, 6) == 0);
  }
  /* axes input: only the last axis of a 2 x 3 tensor padded */
  h_new(18);
  int in4[4] = {h_f32("a", 2, DIMS(2, 3), a), h_i64("p", 2, p10), -1, h_i64("ax", 1, ax_last)};
  int out = h_out("y");
  int nd = h_node("Pad", 4, in4, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float wpad[8] = {0, 1, 2, 3, 0, 4, 5, 6};
  CU_ASSERT(h_dims_are(&R[out], 2, DIMS(2, 4)) && h_maxerr(F(&R[out]), wpad, 8) == 0);
  h_new(18);
  in4[0] = h_f32("a", 2, DIMS(2, 3), a);
  in4[1] = h_i64("p", 4, p1010);
  in4[3] = h_i64("ax", 1, ax_last);
  out = h_out("y");
  nd = h_node("Pad", 4, in4, 1, &out);
  expect_error(nd, PV_ESHAPE, "pads has 4 values for 1 axes");
  h_new(17);
  in4[0] = h_f32("a", 2, DIMS(2, 3), a);
  in4[1] = h_i64("p", 2, p10);
  in4[3] = h_i64("ax", 1, ax_last);
  out = h_out("y");
  nd = h_node("Pad", 4, in4, 1, &out);
  expect_error(nd, PV_EINVAL, "from opset 18");
  /* Split: num_outputs 2 of a length-3 axis gives 2 + 1; a count that
   * disagrees with the outputs is refused */
  for (int k = 2; k <= 3; k++) {
    h_new(18);
    int x = h_f32("a", 1, DIMS(3), a), outs[2] = {h_out("s0"), h_out("s1")};
    nd = h_node("Split", 1, &x, 2, outs);
    h_ai(nd, "num_outputs", k);
    if (k == 3) {
      expect_error(nd, PV_EINVAL, "num_outputs is 3");
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(h_dims_are(&R[outs[0]], 1, DIMS(2)) && h_dims_are(&R[outs[1]], 1, DIMS(1)));
    CU_ASSERT(F(&R[outs[1]])[0] == 3);
  }
  /* Resize: sizes 4 x 9 of a 2 x 3 tensor, not_larger: factor 2 on both
   * axes (4 x 6), nearest asymmetric floor */
  int64_t sz[2] = {4, 9};
  h_new(18);
  int rin[4] = {h_f32("a", 2, DIMS(2, 3), a), -1, -1, h_i64("sz", 2, sz)};
  out = h_out("y");
  nd = h_node("Resize", 4, rin, 1, &out);
  h_as(nd, "keep_aspect_ratio_policy", "not_larger");
  h_as(nd, "coordinate_transformation_mode", "asymmetric");
  h_as(nd, "nearest_mode", "floor");
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_FATAL(h_dims_are(&R[out], 2, DIMS(4, 6)));
  CU_ASSERT(F(&R[out])[0] == 1 && F(&R[out])[5] == 3 && F(&R[out])[23] == 6);
  h_new(18);
  rin[0] = h_f32("a", 2, DIMS(2, 3), a);
  rin[3] = h_i64("sz", 2, sz);
  out = h_out("y");
  nd = h_node("Resize", 4, rin, 1, &out);
  h_as(nd, "keep_aspect_ratio_policy", "fit");
  expect_error(nd, PV_EINVAL, "keep_aspect_ratio_policy 'fit'");
  /* antialias is refused where it would change the result (linear
   * downsampling) */
  float half[2] = {1, 0.5f};
  h_new(18);
  int rin3[3] = {h_f32("a", 2, DIMS(2, 3), a), -1, h_f32("sc", 1, DIMS(2), half)};
  out = h_out("y");
  nd = h_node("Resize", 3, rin3, 1, &out);
  h_as(nd, "mode", "linear");
  h_ai(nd, "antialias", 1);
  expect_error(nd, PV_EUNSUPPORTED, "antialias");
  /* ScatterND max / min with a repeated index */
  int64_t idx[3] = {1, 1, 0};
  float upd[3] = {9, 0, -5};
  const char *red[2] = {"max", "min"};
  const float wsc[2][3] = {{1, 9, 3}, {-5, 0, 3}};
  for (int r = 0; r < 2; r++) {
    h_new(18);
    int64_t d31[2] = {3, 1};
    int sin[3] = {h_f32("a", 1, DIMS(3), a), h_val("i", PV_I64, 2, d31, idx),
                  h_f32("u", 1, DIMS(3), upd)};
    out = h_out("y");
    nd = h_node("ScatterND", 3, sin, 1, &out);
    h_as(nd, "reduction", red[r]);
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(h_maxerr(F(&R[out]), wsc[r], 3) == 0);
  }
  /* Gelu: the exact and tanh forms at 1 (0.841345, 0.841192); an unknown
   * approximation refused */
  const char *apx[3] = {"none", "tanh", "erf"};
  const float wg[2] = {0.8413447f, 0.8411920f};
  for (int k = 0; k < 3; k++) {
    h_new(20);
    int x = h_f32("a", 1, DIMS(1), a);
    out = h_out("y");
    nd = h_node("Gelu", 1, &x, 1, &out);
    h_as(nd, "approximate", apx[k]);
    if (k == 2) {
      expect_error(nd, PV_EINVAL, "approximate 'erf'");
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(fabsf(F(&R[out])[0] - wg[k]) < 1e-6f);
  }
}

/* Opsets 23-25: RMSNormalization (23) over the last axes, Swish (24);
 * QuantizeLinear's precision and DequantizeLinear's output_dtype (23)
 * other than FLOAT are refused by name. */
/* Attention and RotaryEmbedding (23): a hand-worked case each (values
 * against ONNX Runtime are onnx_attn.ct's), and bad input named. */
static void test_attention_rope(void) {
  /* One head, Sq = 1, two keys: scores q.k * scale = (2, 0) at scale 1:
   * softmax (e^2, 1) / (e^2 + 1), Y = that mix of V's rows (10, 20). */
  float q[2] = {1, 1}, k[4] = {1, 1, 0, 0}, v[2] = {10, 20};
  h_new(23);
  int in[3] = {h_f32("q", 4, DIMS(1, 1, 1, 2), q), h_f32("k", 4, DIMS(1, 1, 2, 2), k),
               h_f32("v", 4, DIMS(1, 1, 2, 1), v)};
  int out = h_out("y");
  int nd = h_node("Attention", 3, in, 1, &out);
  h_af(nd, "scale", 1.0f);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  double e2 = exp(2.0), want = (10 * e2 + 20) / (e2 + 1);
  CU_ASSERT(h_dims_are(&R[out], 4, DIMS(1, 1, 1, 1)) && fabs(F(&R[out])[0] - want) < 1e-4);
  /* is_causal: the first query sees the first key only */
  h_new(23);
  in[0] = h_f32("q", 4, DIMS(1, 1, 2, 2), k);
  in[1] = h_f32("k", 4, DIMS(1, 1, 2, 2), k);
  in[2] = h_f32("v", 4, DIMS(1, 1, 2, 1), v);
  out = h_out("y");
  nd = h_node("Attention", 3, in, 1, &out);
  h_ai(nd, "is_causal", 1);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT(fabs(F(&R[out])[0] - 10) < 1e-5 && F(&R[out])[1] > 10 && F(&R[out])[1] < 20);
  /* 3 query heads over 2 key/value heads: not a multiple */
  float z[24] = {0};
  h_new(23);
  in[0] = h_f32("q", 4, DIMS(1, 3, 1, 2), z);
  in[1] = h_f32("k", 4, DIMS(1, 2, 1, 2), z);
  in[2] = h_f32("v", 4, DIMS(1, 2, 1, 2), z);
  out = h_out("y");
  nd = h_node("Attention", 3, in, 1, &out);
  expect_error(nd, PV_ESHAPE, "not a multiple");
  /* 3-D inputs without head counts */
  h_new(23);
  in[0] = h_f32("q", 3, DIMS(1, 2, 4), z);
  in[1] = h_f32("k", 3, DIMS(1, 2, 4), z);
  in[2] = h_f32("v", 3, DIMS(1, 2, 4), z);
  out = h_out("y");
  nd = h_node("Attention", 3, in, 1, &out);
  expect_error(nd, PV_EINVAL, "q_num_heads");
  /* RotaryEmbedding: (1, 0) turned by 90 degrees is (0, 1) */
  float x[2] = {1, 0}, c[2] = {1, 0}, sn[2] = {0, 1};
  int64_t pos[1] = {1}, far[1] = {2};
  for (int bad = 0; bad < 2; bad++) {
    h_new(23);
    int rin[4] = {h_f32("x", 4, DIMS(1, 1, 1, 2), x), h_f32("c", 2, DIMS(2, 1), c),
                  h_f32("s", 2, DIMS(2, 1), sn),
                  h_val("p", PV_I64, 2, DIMS(1, 1), bad ? far : pos)};
    out = h_out("y");
    nd = h_node("RotaryEmbedding", 4, rin, 1, &out);
    if (bad) {
      expect_error(nd, PV_ERANGE, "outside the caches");
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(fabs(F(&R[out])[0]) < 1e-6 && fabs(F(&R[out])[1] - 1) < 1e-6);
  }
}

static void test_opset23_25(void) {
  float a[6] = {1, -2, 3, 4, 5, -6}, sc3[3] = {1, 2, 0.5f}, one = 1;
  /* axis -1: rows (1, -2, 3) and (4, 5, -6), rms = sqrt(14/3), sqrt(77/3) */
  h_new(23);
  int in[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("s", 1, DIMS(3), sc3)};
  int out = h_out("y");
  int nd = h_node("RMSNormalization", 2, in, 1, &out);
  h_af(nd, "epsilon", 0.0f);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  double r0 = sqrt(14.0 / 3), r1 = sqrt(77.0 / 3);
  float want[6] = {(float)(1 / r0), (float)(-4 / r0), (float)(1.5 / r0),
                   (float)(4 / r1), (float)(10 / r1), (float)(-3 / r1)};
  CU_ASSERT(h_dims_are(&R[out], 2, DIMS(2, 3)) && h_maxerr(F(&R[out]), want, 6) < 1e-6);
  /* axis 0: over all six, scalar scale, epsilon 1 */
  h_new(23);
  in[0] = h_f32("a", 2, DIMS(2, 3), a);
  in[1] = h_f32("s", 0, NULL, &one);
  out = h_out("y");
  nd = h_node("RMSNormalization", 2, in, 1, &out);
  h_ai(nd, "axis", 0);
  h_af(nd, "epsilon", 1.0f);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  double ra = sqrt(91.0 / 6 + 1);
  CU_ASSERT(fabs(F(&R[out])[5] - (-6 / ra)) < 1e-6);
  /* a bias input is LayerNormalization's, not this op's */
  h_new(23);
  int in3[3] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("s", 1, DIMS(3), sc3),
                h_f32("b", 1, DIMS(3), sc3)};
  out = h_out("y");
  nd = h_node("RMSNormalization", 3, in3, 1, &out);
  expect_error(nd, PV_EINVAL, "X and scale only");
  /* Swish: x sigmoid(alpha x) at alpha 1.5 */
  h_new(24);
  int x = h_f32("a", 2, DIMS(2, 3), a);
  out = h_out("y");
  nd = h_node("Swish", 1, &x, 1, &out);
  h_af(nd, "alpha", 1.5f);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  for (int i = 0; i < 6; i++)
    CU_ASSERT(fabs(F(&R[out])[i] - a[i] / (1 + exp(-1.5 * a[i]))) < 1e-6);
  /* QuantizeLinear with precision FLOAT runs, FLOAT16 (10) is refused */
  float sc = 0.5f;
  for (int prec = 1; prec <= 10; prec += 9) {
    h_new(23);
    int qin[2] = {h_f32("a", 2, DIMS(2, 3), a), h_f32("s", 0, NULL, &sc)};
    out = h_out("q");
    nd = h_node("QuantizeLinear", 2, qin, 1, &out);
    h_ai(nd, "precision", prec);
    if (prec == 10) {
      expect_error(nd, PV_EUNSUPPORTED, "precision FP16");
      continue;
    }
    CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
    CU_ASSERT(((const uint8_t *)R[out].data)[2] == 6); /* 3 / 0.5 */
  }
  /* DequantizeLinear to FLOAT16 (10) is refused */
  int8_t v[2] = {4, -4};
  h_new(23);
  int din[2] = {h_val("v", PV_I8, 1, DIMS(2), v), h_f32("s", 0, NULL, &sc)};
  out = h_out("y");
  nd = h_node("DequantizeLinear", 2, din, 1, &out);
  h_ai(nd, "output_dtype", 10);
  expect_error(nd, PV_EUNSUPPORTED, "output_dtype FP16");
}

/* QuantizeLinear rounds half to even and saturates; DequantizeLinear
 * inverts it per axis; misuse is refused by name. */
static void test_qdq(void) {
  float x[4] = {-1.0f, 0.25f, 0.26f, 300.f}, sc = 0.5f, sc2[2] = {0.5f, 2.f};
  int8_t zp = 1;
  h_new(13);
  int in[3] = {h_f32("x", 1, DIMS(4), x), h_f32("s", 0, NULL, &sc),
               h_val("z", PV_I8, 0, NULL, &zp)};
  int out = h_out("q");
  h_node("QuantizeLinear", 3, in, 1, &out);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  CU_ASSERT_EQUAL_FATAL(R[out].dtype, PV_I8);
  const int8_t *q = R[out].data;
  /* -2 + 1, rint(0.5) = 0 (+1), rint(0.52) = 1 (+1), 600 saturates */
  CU_ASSERT(q[0] == -1 && q[1] == 1 && q[2] == 2 && q[3] == 127);
  /* per-axis dequantization of a 2 x 2 int8 tensor along axis 0 */
  int8_t v[4] = {4, -4, 2, 127};
  h_new(13);
  int64_t d22[2] = {2, 2};
  int din[2] = {h_val("v", PV_I8, 2, d22, v), h_f32("s", 1, DIMS(2), sc2)};
  out = h_out("y");
  int nd = h_node("DequantizeLinear", 2, din, 1, &out);
  h_ai(nd, "axis", 0);
  CU_ASSERT_EQUAL_FATAL(h_run(NULL), 0);
  const float want[4] = {2, -2, 4, 254};
  CU_ASSERT(h_maxerr(F(&R[out]), want, 4) == 0);
  /* a scale that matches no axis, and blocked quantization */
  h_new(13);
  din[0] = h_val("v", PV_I8, 2, d22, v);
  float s3[3] = {1, 1, 1};
  din[1] = h_f32("s", 1, DIMS(3), s3);
  out = h_out("y");
  nd = h_node("DequantizeLinear", 2, din, 1, &out);
  expect_error(nd, PV_ESHAPE, "scale has 3 values");
  h_new(21);
  din[0] = h_val("v", PV_I8, 2, d22, v);
  din[1] = h_f32("s", 0, NULL, &sc);
  out = h_out("y");
  nd = h_node("DequantizeLinear", 2, din, 1, &out);
  h_ai(nd, "block_size", 2);
  expect_error(nd, PV_EUNSUPPORTED, "block_size");
}

/* Half precision: every half survives the round trip through float (NaNs
 * stay NaN); narrowing rounds to nearest even, overflows to infinity and
 * rounds below half the smallest subnormal to zero. */
static void test_half(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    float f = pv_f16_to_f32((uint16_t)h);
    uint16_t back = pv_f32_to_f16(f);
    bool nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
    if (nan ? !isnan(f) || (back & 0x7c00) != 0x7c00 || !(back & 0x3ff) : back != h) bad++;
  }
  CU_ASSERT_EQUAL(bad, 0);
  CU_ASSERT_EQUAL(pv_f32_to_f16(1.0f), 0x3c00);
  CU_ASSERT_EQUAL(pv_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);      /* tie: even */
  CU_ASSERT_EQUAL(pv_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);      /* tie: even */
  CU_ASSERT_EQUAL(pv_f32_to_f16(65519.f), 0x7bff);
  CU_ASSERT_EQUAL(pv_f32_to_f16(65520.f), 0x7c00);
  CU_ASSERT_EQUAL(pv_f32_to_f16(-1e10f), 0xfc00);
  CU_ASSERT_EQUAL(pv_f32_to_f16(ldexpf(1, -25)), 0);               /* tie: even */
  CU_ASSERT_EQUAL(pv_f32_to_f16(ldexpf(1.0001f, -25)), 1);
  CU_ASSERT_EQUAL(pv_f32_to_f16(ldexpf(1, -14)), 0x0400);
  CU_ASSERT(pv_f16_to_f32(0x0001) == ldexpf(1, -24));
}

static void test_zz_cleanup(void) {
  cleanup();
  CU_PASS("freed");
}

static CU_TestInfo tests[] = {
    {"nonmaxsuppression: ordered scan = every kept box", test_nms_ordered_scan},
    {"conv: pads strides dilations groups auto_pad", test_conv},
    {"conv 1-D", test_conv1d},
    {"conv channel mismatch names node", test_conv_errors},
    {"max/average pool: ceil_mode pads dilations", test_pool},
    {"maxpool indices", test_maxpool_indices},
    {"global average pool", test_global_pool},
    {"gemm: trans alpha beta C broadcast", test_gemm},
    {"matmul: batched broadcast, 1-D", test_matmul},
    {"add/sub/mul/div broadcast", test_broadcast_binary},
    {"integer div, pow", test_int_arith_pow},
    {"unary ops", test_unary},
    {"clip attrs and inputs", test_clip},
    {"softmax axis by opset", test_softmax_axis},
    {"batchnorm", test_batchnorm},
    {"concat negative axis, split", test_concat_split},
    {"slice: clamping, negative steps, opset 9", test_slice},
    {"reshape flatten transpose", test_reshape_flatten_transpose},
    {"pad modes", test_pad},
    {"resize/upsample nearest modes", test_resize},
    {"constant Pad and nearest Resize by rows", test_pad_resize_rows},
    {"shape size gather", test_shape_gather},
    {"squeeze unsqueeze", test_squeeze_unsqueeze},
    {"cast constantofshape range expand", test_cast_cos_range_expand},
    {"reducemean equal not where", test_reduce_where},
    {"identity dropout constant", test_identity_constant},
    {"fused activation, unsupported op", test_fused_act_and_unsupported},
    {"pivot-only weights are expanded", test_pivot_only_weights},
    {"bad inputs give clear errors", test_bad_inputs},
    {"random nodes fail cleanly", test_random_nodes},
    {"topk ties: lower index first", test_topk_ties},
    {"argmax/argmin select_last_index, keepdims", test_argmax_last},
    {"convtranspose pads output_padding output_shape auto_pad groups", test_convtranspose},
    {"reduce max/min/l1/l2/prod/logsumexp, axes input, noop", test_reduce_ext},
    {"resize linear", test_resize_linear},
    {"mod depthtospace gatherelements scatternd tile cumsum", test_index_layout_ext},
    {"einsum", test_einsum},
    {"nonzero refused, types by op", test_ext_unsupported},
    {"random ext nodes fail cleanly", test_random_ext_nodes},
    {"quantize/dequantize linear: half to even, saturation, per axis", test_qdq},
    {"fp16 <-> fp32: round trip, ties to even, overflow, subnormals", test_half},
    {"opsets 18-22: pad axes/wrap, split num_outputs, resize policy, scatternd max/min, gelu", test_opset18_22},
    {"opsets 23-25: RMSNormalization, Swish, QDQ precision/output_dtype", test_opset23_25},
    {"Attention and RotaryEmbedding (23)", test_attention_rope},
    {"cleanup", test_zz_cleanup},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("ops", tests)
