/* Graph passes: each rewritten graph gives the same outputs as before (run
 * node by node with the reference ops) and has fewer nodes. */
#include "cunit-main.h"
#include "ops-harness.h"

#define F(t) ((const float *)(t)->data)

/* Run H on inputs; copy output `name` into buf (n floats). */
static int run_copy(const pv_tensor *in, const char *name, float *buf, size_t n) {
  int rc = h_run(in);
  if (rc) return rc;
  int v = pv_graph_find_value(H, name);
  if (v < 0 || (size_t)pv_tensor_numel(&R[v]) != n) return -100;
  memcpy(buf, R[v].data, n * sizeof(float));
  return 0;
}

static int live_nodes(const char *op) {
  int c = 0;
  for (int i = 0; i < H->n_nodes; i++)
    if (H->nodes[i].op && (!op || !strcmp(H->nodes[i].op, op))) c++;
  return c;
}

static void bn_params(int C, unsigned seed, int *in) {
  float s[16], b[16], m[16], v[16];
  h_fill(s, C, seed);
  h_fill(b, C, seed + 1);
  h_fill(m, C, seed + 2);
  h_fill(v, C, seed + 3);
  for (int i = 0; i < C; i++) v[i] = v[i] * v[i] + 0.1f;
  in[1] = h_f32("bn_s", 1, DIMS(C), s);
  in[2] = h_f32("bn_b", 1, DIMS(C), b);
  in[3] = h_f32("bn_m", 1, DIMS(C), m);
  in[4] = h_f32("bn_v", 1, DIMS(C), v);
}

/* Conv (bias or not) -> BN -> Relu [-> Identity], output "y". */
static void build_conv_bn_relu(bool bias, bool identity_tail) {
  float w[4 * 3 * 3 * 3], b[4];
  h_fill(w, sizeof w / sizeof *w, 1);
  h_fill(b, 4, 2);
  h_new(13);
  int x = h_input("x", PV_F32, 4, DIMS(PV_DIM_BATCH, 3, 6, 6));
  int cin[3] = {x, h_f32("w", 4, DIMS(4, 3, 3, 3), w), bias ? h_f32("b", 1, DIMS(4), b) : -1};
  int c = h_out("c");
  int nd = h_node("Conv", bias ? 3 : 2, cin, 1, &c);
  h_ais(nd, "pads", 4, DIMS(1, 1, 1, 1));
  int bin[5] = {c};
  bn_params(4, 10, bin);
  int bn = h_out(identity_tail ? "bn" : "bn_out");
  h_node("BatchNormalization", 5, bin, 1, &bn);
  int r = h_out(identity_tail ? "r" : "y");
  h_node("Relu", 1, &bn, 1, &r);
  if (identity_tail) {
    int y = h_out("y");
    h_node("Identity", 1, &r, 1, &y);
    h_output(y);
  } else {
    h_output(r);
  }
}

static void check_same_after_passes(int nodes_before, int nodes_after,
                                    const pv_tensor *in, size_t n) {
  float before[512], after[512];
  CU_ASSERT_EQUAL_FATAL(live_nodes(NULL), nodes_before);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "y", before, n), 0);
  CU_ASSERT_EQUAL_FATAL(pv_passes_run(H), 0);
  CU_ASSERT_EQUAL(live_nodes(NULL), nodes_after);
  /* The graph output keeps its name and a producer. */
  CU_ASSERT_EQUAL_FATAL(H->n_outputs, 1);
  CU_ASSERT_STRING_EQUAL(H->values[H->outputs[0]].name, "y");
  CU_ASSERT(H->values[H->outputs[0]].producer >= 0 ||
            H->values[H->outputs[0]].data != NULL);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "y", after, n), 0);
  CU_ASSERT(h_maxerr(after, before, n) < 1e-5);
}

static void test_conv_bn_relu(void) {
  float x[2 * 3 * 36];
  h_fill(x, sizeof x / sizeof *x, 3);
  pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {2, 3, 6, 6}, .data = x};
  for (int bias = 0; bias < 2; bias++) {
    build_conv_bn_relu(bias, false);
    check_same_after_passes(3, 1, &in, 2 * 4 * 36);
    CU_ASSERT_STRING_EQUAL(H->nodes[0].op, "Conv");
    CU_ASSERT_EQUAL(H->nodes[0].act, PV_ACT_RELU);
    CU_ASSERT_EQUAL(H->nodes[0].n_in, 3); /* bias created when missing */
  }
  /* Identity at the tail whose output is the graph output. */
  build_conv_bn_relu(true, true);
  check_same_after_passes(4, 1, &in, 2 * 4 * 36);
}

static void test_bn_not_folded_when_shared(void) {
  /* Conv output also feeds an Add: BN must stay, results unchanged. */
  float w[2 * 2], x[2 * 2 * 4];
  h_fill(w, 4, 5);
  h_fill(x, 16, 6);
  h_new(13);
  int xi = h_input("x", PV_F32, 4, DIMS(2, 2, 2, 2));
  int cin[2] = {xi, h_f32("w", 4, DIMS(2, 2, 1, 1), w)}, c = h_out("c");
  h_node("Conv", 2, cin, 1, &c);
  int bin[5] = {c};
  bn_params(2, 20, bin);
  int bn = h_out("bn");
  h_node("BatchNormalization", 5, bin, 1, &bn);
  int ain[2] = {c, bn}, y = h_out("y");
  h_node("Add", 2, ain, 1, &y);
  h_output(y);
  pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {2, 2, 2, 2}, .data = x};
  check_same_after_passes(3, 3, &in, 16);
  CU_ASSERT_EQUAL(live_nodes("BatchNormalization"), 1);
}

static void test_gemm_bn_clip(void) {
  enum { M = 3, K = 4, N = 5 };
  float a[M * K], b[N * K], c[N];
  h_fill(a, M * K, 30);
  h_fill(b, N * K, 31);
  h_fill(c, N, 32);
  float lo = -0.3f, hi = 0.4f;
  h_new(13);
  int ai = h_input("a", PV_F32, 2, DIMS(M, K));
  int gin[3] = {ai, h_f32("b", 2, DIMS(N, K), b), h_f32("c", 1, DIMS(N), c)};
  int g = h_out("g");
  int nd = h_node("Gemm", 3, gin, 1, &g);
  h_ai(nd, "transB", 1);
  h_af(nd, "beta", 0.5f);
  int bin[5] = {g};
  bn_params(N, 40, bin);
  int bn = h_out("bn");
  h_node("BatchNormalization", 5, bin, 1, &bn);
  int cin[3] = {bn, h_f32("lo", 0, NULL, &lo), h_f32("hi", 0, NULL, &hi)};
  int y = h_out("y");
  h_node("Clip", 3, cin, 1, &y);
  h_output(y);
  pv_tensor in = {.dtype = PV_F32, .ndim = 2, .dims = {M, K}, .data = a};
  check_same_after_passes(3, 1, &in, M * N);
  CU_ASSERT_EQUAL(H->nodes[0].act, PV_ACT_CLIP);
  CU_ASSERT_EQUAL(H->nodes[0].act_alpha, lo);
}

/* x -> Shape -> Gather(0) -> Unsqueeze -> Concat(., [-1]) -> Reshape(x, .);
 * with relu, x is Relu(input), an activation of unknown declared shape. */
static void build_flatten_chain(int64_t batch_dim, bool relu) {
  h_new(13);
  int x = h_input("x", PV_F32, 3, DIMS(batch_dim, 3, 4));
  if (relu) {
    int r = h_out("relu");
    h_node("Relu", 1, &x, 1, &r);
    x = r;
  }
  int s = h_out("s"), g = h_out("g"), u = h_out("u"), c = h_out("c"), y = h_out("y");
  h_node("Shape", 1, &x, 1, &s);
  int64_t zero = 0, minus1 = -1;
  int gin[2] = {s, h_val("zero", PV_I64, 0, NULL, &zero)};
  h_node("Gather", 2, gin, 1, &g);
  int uin[2] = {g, h_i64("axes", 1, &zero)};
  h_node("Unsqueeze", 2, uin, 1, &u);
  int cin[2] = {u, h_i64("m1", 1, &minus1)};
  int nd = h_node("Concat", 2, cin, 1, &c);
  h_ai(nd, "axis", 0);
  int rin[2] = {x, c};
  h_node("Reshape", 2, rin, 1, &y);
  h_output(y);
}

static void test_fold_shape_chain(void) {
  float x[24];
  h_fill(x, 24, 50);
  pv_tensor in = {.dtype = PV_F32, .ndim = 3, .dims = {2, 3, 4}, .data = x};
  /* Static batch: the whole chain folds into Reshape's shape constant. */
  build_flatten_chain(2, false);
  check_same_after_passes(5, 1, &in, 24);
  CU_ASSERT_STRING_EQUAL(H->nodes[0].op, "Reshape");
  const pv_value *shape = &H->values[H->nodes[0].in[1]];
  CU_ASSERT_FATAL(shape->data != NULL && shape->dtype == PV_I64);
  CU_ASSERT(((int64_t *)shape->data)[0] == 2 && ((int64_t *)shape->data)[1] == -1);
  CU_ASSERT(h_dims_are(&R[H->outputs[0]], 2, DIMS(2, 12)));
  /* Symbolic batch: Shape is not constant; nothing folds. */
  build_flatten_chain(PV_DIM_BATCH, false);
  check_same_after_passes(5, 5, &in, 24);
  /* Dims propagate through the Relu, so its Shape folds too. */
  build_flatten_chain(2, true);
  check_same_after_passes(6, 2, &in, 24);
  CU_ASSERT(h_dims_are(&R[H->outputs[0]], 2, DIMS(2, 12)));
}

static void test_fold_constant_nodes(void) {
  float a[3] = {1, 2, 3};
  h_new(13);
  int x = h_input("x", PV_F32, 1, DIMS(3));
  int k = h_out("k"), k2 = h_out("k2"), y = h_out("y");
  int nd = h_node("Constant", 0, NULL, 1, &k);
  h_afs(nd, "value_floats", 3, a);
  int min[2] = {k, k};
  h_node("Mul", 2, min, 1, &k2); /* constant: 1 4 9 */
  int ain[2] = {x, k2};
  h_node("Add", 2, ain, 1, &y);
  h_output(y);
  float xv[3] = {10, 20, 30};
  pv_tensor in = {.dtype = PV_F32, .ndim = 1, .dims = {3}, .data = xv};
  check_same_after_passes(3, 1, &in, 3);
  const float want[3] = {11, 24, 39};
  CU_ASSERT(h_maxerr(F(&R[H->outputs[0]]), want, 3) == 0);
}

/* Conv -> Relu -> Clip(lo, hi): one Conv with a clip activation. */
static void relu_clip_case(float lo, float hi) {
  float w[2 * 2], x[2 * 2 * 4];
  h_fill(w, 4, 70);
  h_fill(x, 16, 71);
  h_new(13);
  int xi = h_input("x", PV_F32, 4, DIMS(2, 2, 2, 2));
  int cin[2] = {xi, h_f32("w", 4, DIMS(2, 2, 1, 1), w)}, c = h_out("c");
  h_node("Conv", 2, cin, 1, &c);
  int r = h_out("r");
  h_node("Relu", 1, &c, 1, &r);
  int clin[3] = {r, h_f32("lo", 0, NULL, &lo), h_f32("hi", 0, NULL, &hi)};
  int y = h_out("y");
  h_node("Clip", 3, clin, 1, &y);
  h_output(y);
  pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {2, 2, 2, 2}, .data = x};
  check_same_after_passes(3, 1, &in, 16);
  CU_ASSERT_EQUAL(H->nodes[0].act, PV_ACT_CLIP);
}

static void test_relu_then_clip(void) {
  relu_clip_case(0, 0.3f);   /* ReLU6-like */
  relu_clip_case(-1, 0.2f);  /* lower bound below zero: relu decides */
  relu_clip_case(0.1f, -0.5f); /* empty range: everything becomes hi */
}

static void test_identity_input_to_output_kept(void) {
  h_new(13);
  int x = h_input("x", PV_F32, 1, DIMS(2)), y = h_out("y");
  h_node("Identity", 1, &x, 1, &y);
  h_output(y);
  float xv[2] = {5, 6};
  pv_tensor in = {.dtype = PV_F32, .ndim = 1, .dims = {2}, .data = xv};
  check_same_after_passes(1, 1, &in, 2);
}

/* Random chains of Conv / BatchNormalization / activations / Identity /
 * Dropout / Add over [2,4,5,5] activations, some intermediate values also
 * graph outputs: every output is the same after the passes, under the
 * same name, and no node is added. Fixed seed. */
static uint64_t rs = 0x9e3779b97f4a7c15ull;
static int rr(int lo, int hi) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return lo + (int)(rs % (uint64_t)(hi - lo + 1));
}

static void random_chain(void) {
  enum { C = 4, HW = 5, N = 2 * C * HW * HW };
  h_new(13);
  int avail[16], na = 0, cnt = 0;
  avail[na++] = h_input("x", PV_F32, 4, DIMS(rr(0, 1) ? 2 : PV_DIM_BATCH, C, HW, HW));
  int steps = rr(2, 9);
  char name[16];
  for (int s = 0; s < steps; s++) {
    int src = rr(0, 2) ? avail[na - 1] : avail[rr(0, na - 1)];
    snprintf(name, sizeof name, "v%d", cnt++);
    int out = h_out(name), kind = rr(0, 8), nd;
    if (kind <= 1) {
      float w[C * C * 9], b[C];
      h_fill(w, C * C * 9, (unsigned)rr(1, 1000));
      h_fill(b, C, (unsigned)rr(1, 1000));
      for (int i = 0; i < C * C * 9; i++) w[i] *= 0.3f;
      int in[3] = {src, h_f32("w", 4, DIMS(C, C, 3, 3), w), h_f32("b", 1, DIMS(C), b)};
      nd = h_node("Conv", kind ? 3 : 2, in, 1, &out);
      h_ais(nd, "pads", 4, DIMS(1, 1, 1, 1));
    } else if (kind <= 3) {
      int in[5] = {src};
      bn_params(C, (unsigned)rr(1, 1000), in);
      h_node("BatchNormalization", 5, in, 1, &out);
    } else if (kind == 4) {
      int in[2] = {src, avail[rr(0, na - 1)]};
      h_node("Add", 2, in, 1, &out);
    } else if (kind == 5) {
      float lo = (float)rr(-3, 0) / 4, hi = (float)rr(0, 4) / 4;
      int in[3] = {src, h_f32("lo", 0, NULL, &lo), h_f32("hi", 0, NULL, &hi)};
      h_node("Clip", 3, in, 1, &out);
    } else {
      static const char *const un[] = {"Relu", "LeakyRelu", "Sigmoid", "Identity", "Dropout",
                                       "Tanh"};
      h_node(un[rr(0, 5)], 1, &src, 1, &out);
    }
    avail[na++] = out;
  }
  h_output(avail[na - 1]);
  for (int k = 1; k < na - 1; k++)
    if (rr(0, 3) == 0) h_output(avail[k]);
  float x[N], before[8][N], after[N];
  char names[8][16];
  h_fill(x, N, (unsigned)rr(1, 1000));
  pv_tensor in = {.dtype = PV_F32, .ndim = 4, .dims = {2, C, HW, HW}, .data = x};
  int nouts = H->n_outputs < 8 ? H->n_outputs : 8, nodes = H->n_nodes;
  for (int o = 0; o < nouts; o++) snprintf(names[o], 16, "%s", H->values[H->outputs[o]].name);
  for (int o = 0; o < nouts; o++) CU_ASSERT_EQUAL_FATAL(run_copy(&in, names[o], before[o], N), 0);
  CU_ASSERT_EQUAL_FATAL(pv_passes_run(H), 0);
  CU_ASSERT(H->n_nodes <= nodes);
  CU_ASSERT_EQUAL_FATAL(H->n_outputs, nouts);
  for (int o = 0; o < nouts; o++) {
    CU_ASSERT_STRING_EQUAL(H->values[H->outputs[o]].name, names[o]);
    CU_ASSERT_EQUAL_FATAL(run_copy(&in, names[o], after, N), 0);
    double e = h_maxerr(after, before[o], N);
    CU_ASSERT(e < 1e-4);
    if (!(e < 1e-4)) fprintf(stderr, "\n  output %s differs by %g\n", names[o], e);
  }
}

static void test_random_chains(void) {
  for (int i = 0; i < 300; i++) random_chain();
}

/* GRU with W, R block diagonal after shuffling hidden units and features
 * into `groups` groups (group -1 for a feature nobody reads; nofeat_group
 * >= 0 leaves that group's W rows empty). Inputs x [T,B,I], h0 [1,B,H];
 * outputs y (Y) and yh (Y_h). */
enum { GT = 5, GB = 2, GI = 12, GH = 16 };
static void build_gru(int groups, int nofeat_group, bool lbr) {
  static float w[3 * GH * GI], r[3 * GH * GH], b[6 * GH];
  int hg[GH], fg[GI];
  for (int j = 0; j < GH; j++) hg[j] = (j * 7 + 3) % groups;   /* interleaved */
  for (int k = 0; k < GI; k++) fg[k] = k == GI - 1 ? -1 : (k * 5 + 1) % groups;
  h_fill(w, sizeof w / sizeof *w, 41);
  h_fill(r, sizeof r / sizeof *r, 42);
  h_fill(b, sizeof b / sizeof *b, 43);
  for (int row = 0; row < 3 * GH; row++) {
    int j = row % GH;
    for (int k = 0; k < GI; k++)
      if (fg[k] != hg[j] || hg[j] == nofeat_group) w[row * GI + k] = 0;
    for (int k = 0; k < GH; k++)
      if (hg[k] != hg[j]) r[row * GH + k] = 0;
  }
  h_new(14);
  int in[6];
  in[0] = h_input("x", PV_F32, 3, DIMS(GT, GB, GI));
  in[1] = h_f32("W", 3, DIMS(1, 3 * GH, GI), w);
  in[2] = h_f32("R", 3, DIMS(1, 3 * GH, GH), r);
  in[3] = h_f32("B", 2, DIMS(1, 6 * GH), b);
  in[4] = -1;
  in[5] = h_input("h0", PV_F32, 3, DIMS(1, GB, GH));
  int out[2] = {h_out("y"), h_out("yh")};
  int nd = h_node("GRU", 6, in, 2, out);
  h_ai(nd, "hidden_size", GH);
  h_ai(nd, "linear_before_reset", lbr);
  h_output(out[0]);
  h_output(out[1]);
}

static void check_gru_split(int groups, int nofeat_group, bool lbr, int expect_grus) {
  static float x[GT * GB * GI], h0[GB * GH];
  static float y0[GT * GB * GH], yh0[GB * GH], y1[GT * GB * GH], yh1[GB * GH];
  h_fill(x, sizeof x / sizeof *x, 44);
  h_fill(h0, sizeof h0 / sizeof *h0, 45);
  pv_tensor in[2] = {
      {.dtype = PV_F32, .ndim = 3, .dims = {GT, GB, GI}, .data = x},
      {.dtype = PV_F32, .ndim = 3, .dims = {1, GB, GH}, .data = h0}};
  build_gru(groups, nofeat_group, lbr);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "y", y0, GT * GB * GH), 0);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "yh", yh0, GB * GH), 0);
  CU_ASSERT_EQUAL_FATAL(pv_passes_run(H), 0);
  CU_ASSERT_EQUAL(live_nodes("GRU"), expect_grus);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "y", y1, GT * GB * GH), 0);
  CU_ASSERT_EQUAL_FATAL(run_copy(in, "yh", yh1, GB * GH), 0);
  CU_ASSERT(h_maxerr(y1, y0, GT * GB * GH) < 1e-5);
  CU_ASSERT(h_maxerr(yh1, yh0, GB * GH) < 1e-5);
  CU_ASSERT_STRING_EQUAL(H->values[H->outputs[0]].name, "y");
  CU_ASSERT_STRING_EQUAL(H->values[H->outputs[1]].name, "yh");
}

/* A pivoted GRU becomes one GRU per block with the same Y and Y_h; a
 * dense GRU is left alone. */
static void test_gru_split(void) {
  check_gru_split(4, -1, true, 4);
  check_gru_split(2, -1, false, 2);
  check_gru_split(4, 2, true, 4); /* a block with no input features */
  check_gru_split(1, -1, true, 1);
}

static void test_zz_cleanup(void) {
  h_free_run();
  pv_graph_free(H);
  H = NULL;
  CU_PASS("freed");
}

static CU_TestInfo tests[] = {
    {"conv+bn+relu folds and fuses to one node", test_conv_bn_relu},
    {"bn with a shared producer stays", test_bn_not_folded_when_shared},
    {"gemm+bn+clip", test_gemm_bn_clip},
    {"shape/gather/unsqueeze/concat chain folds", test_fold_shape_chain},
    {"constant subgraph folds", test_fold_constant_nodes},
    {"relu then clip fuse into one activation", test_relu_then_clip},
    {"identity from input to output kept", test_identity_input_to_output_kept},
    {"random chains keep every output", test_random_chains},
    {"pivoted GRU splits into one GRU per block", test_gru_split},
    {"cleanup", test_zz_cleanup},
    CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("passes", tests)
