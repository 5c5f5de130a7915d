/* Runtime: load from a graph, plan per input shape, reuse of activation
 * memory, input checks, unsupported ops, reference counting. */
#include <math.h>
#include <string.h>

#include "cunit-main.h"
#include "pivot.h"
#include "pv-pivot.h"
#include "pivot-testlib.h"

static int add_const(pv_graph *g, const char *name, int64_t rows, int64_t cols,
                     float scale) {
  int v = pv_graph_add_value(g, name);
  pv_value *val = &g->values[v];
  val->dtype = PV_F32;
  val->ndim = 2;
  val->dims[0] = rows;
  val->dims[1] = cols;
  val->nbytes = rows * cols * 4;
  val->data = pv_aligned_alloc(val->nbytes);
  float *d = val->data;
  for (int64_t i = 0; i < rows * cols; i++) d[i] = scale * (float)((i * 7) % 5 - 2);
  return v;
}

/* x[N,4] -> Gemm(W1[8,4]^T) -> Relu -> Gemm(W2[3,8]^T) -> y[N,3], and a
 * dynamic-batch Reshape in between driven by Shape. */
static pv_graph *mlp(const char *extra_op) {
  pv_graph *g = pv_graph_new();
  int x = t_batch_input(g, "x", 4);
  int w1 = add_const(g, "w1", 8, 4, 0.5f), w2 = add_const(g, "w2", 3, 8, 0.25f);
  int h = pv_graph_add_value(g, "h"), r = pv_graph_add_value(g, "r");
  int s = pv_graph_add_value(g, "s"), rr = pv_graph_add_value(g, "rr");
  int y = pv_graph_add_value(g, "y");
  pv_attr tb = {.name = "transB", .type = PV_ATTR_INT, .i = 1};
  int in1[] = {x, w1};
  int n1 = pv_graph_add_node(g, "fc1", "Gemm", in1, 2, &h, 1);
  pv_node_add_attr(g, n1, &tb);
  pv_graph_add_node(g, "act", extra_op ? extra_op : "Relu", &h, 1, &r, 1);
  pv_graph_add_node(g, "shape", "Shape", &r, 1, &s, 1);
  int in3[] = {r, s};
  pv_graph_add_node(g, "reshape", "Reshape", in3, 2, &rr, 1);
  int in2[] = {rr, w2};
  int n2 = pv_graph_add_node(g, "fc2", "Gemm", in2, 2, &y, 1);
  pv_node_add_attr(g, n2, &tb);
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

static void expected(const float *x, int64_t n, float *y) {
  for (int64_t b = 0; b < n; b++) {
    float h[8];
    for (int i = 0; i < 8; i++) {
      float acc = 0;
      for (int k = 0; k < 4; k++) acc += 0.5f * (float)(((i * 4 + k) * 7) % 5 - 2) * x[b * 4 + k];
      h[i] = acc > 0 ? acc : 0;
    }
    for (int o = 0; o < 3; o++) {
      float acc = 0;
      for (int i = 0; i < 8; i++) acc += 0.25f * (float)(((o * 8 + i) * 7) % 5 - 2) * h[i];
      y[b * 3 + o] = acc;
    }
  }
}

static void run_batch(pv_exec *e, int64_t n) {
  float x[64 * 4], want[64 * 3];
  for (int i = 0; i < n * 4; i++) x[i] = (float)((i * 13) % 11) - 5.0f;
  expected(x, n, want);
  pv_tensor in = {.dtype = PV_F32, .ndim = 2, .dims = {n, 4}, .data = x}, out;
  CU_ASSERT_EQUAL_FATAL(pv_exec_run(e, &in, 1, &out, 1), 0);
  CU_ASSERT_EQUAL(out.ndim, 2);
  CU_ASSERT_EQUAL(out.dims[0], n);
  CU_ASSERT_EQUAL(out.dims[1], 3);
  const float *y = out.data;
  for (int i = 0; i < n * 3; i++) CU_ASSERT_DOUBLE_EQUAL(y[i], want[i], 1e-4);
}

static void test_runs_and_replans(void) {
  pv_model *m = pv_model_from_graph(mlp(NULL), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  /* The passes fused Relu into fc1; Shape is evaluated at plan time. */
  CU_ASSERT_STRING_EQUAL(pv_model_node_backend(m, 0), "cpu");
  pv_exec *e = pv_exec_new(m);
  run_batch(e, 1);
  run_batch(e, 17);
  run_batch(e, 3);
  run_batch(e, 3);
  pv_exec_free(e);
  pv_model_release(m);
}

static void test_memory_reuse(void) {
  pv_model *m = pv_model_from_graph(mlp(NULL), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  pv_layer_info rows[16];
  size_t peak = 0;
  int n = pv_model_inspect(m, 64, rows, 16, &peak);
  CU_ASSERT(n >= 2);
  /* Activations: h/r [64,8], rr [64,8], y [64,3]: never all alive at once,
   * so the plan needs less than their sum. */
  size_t sum = 64 * 8 * 4 * 2 + 64 * 3 * 4;
  CU_ASSERT(peak > 0);
  CU_ASSERT(peak < sum);
  pv_model_release(m);
}

static void test_input_checks(void) {
  pv_model *m = pv_model_from_graph(mlp(NULL), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  pv_exec *e = pv_exec_new(m);
  float x[10] = {0};
  pv_tensor out, in = {.dtype = PV_F32, .ndim = 2, .dims = {2, 5}, .data = x};
  CU_ASSERT_EQUAL(pv_exec_run(e, &in, 1, &out, 1), PV_ESHAPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "input 'x'"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "[2,5]"));
  in = (pv_tensor){.dtype = PV_I32, .ndim = 2, .dims = {2, 4}, .data = x};
  CU_ASSERT_EQUAL(pv_exec_run(e, &in, 1, &out, 1), PV_ETYPE);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "INT32"));
  CU_ASSERT_EQUAL(pv_exec_run(e, &in, 0, &out, 1), PV_EINVAL);
  /* A good run still works after the failures. */
  run_batch(e, 2);
  pv_exec_free(e);
  pv_model_release(m);
}

static void test_unsupported_op(void) {
  pv_model *m = pv_model_from_graph(mlp("FancyAct"), NULL);
  CU_ASSERT_PTR_NULL(m);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "FancyAct"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "act"));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "opset 13"));
}

static void test_exec_keeps_model_alive(void) {
  pv_model *m = pv_model_from_graph(mlp(NULL), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  pv_exec *e = pv_exec_new(m);
  pv_model_release(m); /* the exec holds the last reference */
  run_batch(e, 5);
  pv_exec_free(e);
}

static void test_missing_file(void) {
  CU_ASSERT_PTR_NULL(pv_model_load("/nonexistent/model.onnx", NULL));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "/nonexistent/model.onnx"));
}

/* ------------------------------------------------ pruned ONNX-like chain */

static uint64_t prng = 0x2545f4914f6cdd1dull;

/* A [rows, cols] weight (Gemm transB=1) that is block diagonal in nb
 * blocks after random row and column permutations, zeros stored, as a
 * pruned model is exported. */
static int add_pruned(pv_graph *g, const char *name, int rows, int cols,
                      int nb) {
  int32_t rg[64], cg[64];
  float *w = t_structured(rows, cols, 1, nb, 1, &prng, rg, cg);
  int v = t_const(g, name, (int64_t[]){rows, cols}, 2, w);
  free(w);
  return v;
}

static int add_vec(pv_graph *g, const char *name, int n) {
  float d[64];
  for (int i = 0; i < n; i++) d[i] = 0.1f * (float)((i * 7) % 5 - 2);
  return t_const(g, name, (int64_t[]){n}, 1, d);
}

/* x[N,24] -> fc1 (32x24 at 1/4, bias) -> Relu -> fc2 (32x32 at 1/4, bias)
 * -> Relu -> fc3 (5x32, dense) -> y[N,5] */
static pv_graph *pruned_chain(float **ws, float **bs) {
  pv_graph *g = pv_graph_new();
  int x = t_batch_input(g, "x", 24);
  int w[3] = {add_pruned(g, "w1", 32, 24, 4), add_pruned(g, "w2", 32, 32, 4),
              add_const(g, "w3", 5, 32, 0.3f)};
  int b[3] = {add_vec(g, "b1", 32), add_vec(g, "b2", 32), add_vec(g, "b3", 5)};
  int h1 = pv_graph_add_value(g, "h1"), r1 = pv_graph_add_value(g, "r1");
  int h2 = pv_graph_add_value(g, "h2"), r2 = pv_graph_add_value(g, "r2");
  int y = pv_graph_add_value(g, "y");
  pv_attr tb = {.name = "transB", .type = PV_ATTR_INT, .i = 1};
  int ins[3][3] = {{x, w[0], b[0]}, {r1, w[1], b[1]}, {r2, w[2], b[2]}};
  int outs[3] = {h1, h2, y};
  const char *names[3] = {"fc1", "fc2", "fc3"};
  for (int l = 0; l < 3; l++) {
    int n = pv_graph_add_node(g, names[l], "Gemm", ins[l], 3, &outs[l], 1);
    pv_node_add_attr(g, n, &tb);
    /* The test's own copies: the load permutes the graph's in place. */
    size_t nb = g->values[w[l]].nbytes;
    ws[l] = malloc(nb);
    memcpy(ws[l], g->values[w[l]].data, nb);
    bs[l] = malloc(g->values[b[l]].nbytes);
    memcpy(bs[l], g->values[b[l]].data, g->values[b[l]].nbytes);
  }
  pv_graph_add_node(g, "relu1", "Relu", &h1, 1, &r1, 1);
  pv_graph_add_node(g, "relu2", "Relu", &h2, 1, &r2, 1);
  t_io(g, x, y);
  g->opset = 13;
  pv_graph_compact(g);
  return g;
}

/* A model with its zeros stored is detected as pivoted and folded when
 * it loads (each pivoted layer feeding another writes block order), and
 * still computes the dense model. */
static void test_pruned_folded_at_load(void) {
  float *ws[3], *bs[3];
  pv_model *m = pv_model_from_graph(pruned_chain(ws, bs), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  const pv_graph *g = pv_model_graph(m);
  int folded = 0, pivots = 0, permuted = 0;
  for (int v = 0; v < g->n_values; v++) {
    const pv_pivot *p = g->values[v].pivot;
    if (g->values[v].chan_perm) permuted++;
    if (!p) continue;
    pivots++;
    bool ident = true;
    for (int i = 0; i < p->M; i++) ident &= p->perm_r[i] == i;
    folded += ident;
  }
  CU_ASSERT_EQUAL(pivots, 2);
  CU_ASSERT_EQUAL(folded, 2); /* fc1 feeds fc2, fc2 feeds the dense fc3 */
  CU_ASSERT(permuted >= 1);
  CU_ASSERT_PTR_NULL(g->values[g->outputs[0]].chan_perm);
  pv_exec *e = pv_exec_new(m);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  static const int batches[] = {1, 3, 32};
  for (int t = 0; t < 3; t++) {
    int n = batches[t];
    float x[32 * 24];
    for (int i = 0; i < n * 24; i++) x[i] = (float)(4 * t_unif(&prng) - 2);
    pv_tensor in = {.dtype = PV_F32, .ndim = 2, .dims = {n, 24}, .data = x}, out;
    CU_ASSERT_EQUAL_FATAL(pv_exec_run(e, &in, 1, &out, 1), 0);
    CU_ASSERT_EQUAL_FATAL(out.dims[0] * out.dims[1], n * 5);
    const float *y = out.data;
    int bad = 0;
    for (int r = 0; r < n; r++) {
      double a[32], h[32];
      for (int i = 0; i < 24; i++) a[i] = x[r * 24 + i];
      int dims[4] = {24, 32, 32, 5};
      for (int l = 0; l < 3; l++) {
        for (int o = 0; o < dims[l + 1]; o++) {
          double s = bs[l][o];
          for (int i = 0; i < dims[l]; i++) s += ws[l][o * dims[l] + i] * a[i];
          h[o] = l < 2 && s < 0 ? 0 : s;
        }
        memcpy(a, h, sizeof a);
      }
      for (int o = 0; o < 5; o++) bad += fabs(y[r * 5 + o] - a[o]) > 1e-4 * (1 + fabs(a[o]));
    }
    CU_ASSERT_EQUAL(bad, 0);
  }
  pv_exec_free(e);
  pv_model_release(m);
  for (int l = 0; l < 3; l++) {
    free(ws[l]);
    free(bs[l]);
  }
}


/* x[N,4] -> fc1 (a backend part) -> the positive values of h, in
 * row-major order: Greater -> NonZero -> Transpose -> GatherND. How many
 * there are depends on the data, so each run infers the shapes after
 * NonZero from what it found. */
static pv_graph *positives(void) {
  pv_graph *g = pv_graph_new();
  int x = t_batch_input(g, "x", 4);
  int w1 = add_const(g, "w1", 8, 4, 0.5f);
  int zero = pv_graph_add_value(g, "zero");
  g->values[zero].dtype = PV_F32;
  g->values[zero].ndim = 0;
  g->values[zero].nbytes = 4;
  g->values[zero].data = pv_aligned_alloc(4);
  int h = pv_graph_add_value(g, "h"), pos = pv_graph_add_value(g, "pos");
  int nz = pv_graph_add_value(g, "nz"), t = pv_graph_add_value(g, "t");
  int y = pv_graph_add_value(g, "y");
  pv_attr tb = {.name = "transB", .type = PV_ATTR_INT, .i = 1};
  int in1[] = {x, w1}, in2[] = {h, zero}, in3[] = {h, t};
  int n1 = pv_graph_add_node(g, "fc1", "Gemm", in1, 2, &h, 1);
  pv_node_add_attr(g, n1, &tb);
  pv_graph_add_node(g, "gt", "Greater", in2, 2, &pos, 1);
  pv_graph_add_node(g, "nonzero", "NonZero", &pos, 1, &nz, 1);
  pv_graph_add_node(g, "tr", "Transpose", &nz, 1, &t, 1);
  pv_graph_add_node(g, "gnd", "GatherND", in3, 2, &y, 1);
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

static void test_data_shaped(void) {
  pv_model *m = pv_model_from_graph(positives(), NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  CU_ASSERT(pv_model_data_shaped(m));
  const pv_graph *g = pv_model_graph(m);
  for (int i = 0; i < g->n_nodes; i++)
    if (!strcmp(g->nodes[i].op, "NonZero"))
      CU_ASSERT_STRING_EQUAL(pv_model_node_backend(m, i), "core");
  pv_exec *e = pv_exec_new(m);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  /* Inputs whose counts of positives differ (all, none, some), twice. */
  for (int round = 0; round < 2; round++)
    for (int c = 0; c < 4; c++) {
      int64_t n = 1 + c * 3;
      float x[10 * 4], want[10 * 8];
      for (int i = 0; i < n * 4; i++)
        x[i] = c == 1 ? 0.0f : (float)((i * 13 + c) % 11) - 5.0f;
      int64_t cnt = 0;
      for (int64_t b = 0; b < n; b++)
        for (int r = 0; r < 8; r++) {
          float acc = 0;
          for (int k = 0; k < 4; k++)
            acc += 0.5f * (float)(((r * 4 + k) * 7) % 5 - 2) * x[b * 4 + k];
          if (acc > 0) want[cnt++] = acc;
        }
      pv_tensor in = {.dtype = PV_F32, .ndim = 2, .dims = {n, 4}, .data = x}, out;
      CU_ASSERT_EQUAL_FATAL(pv_exec_run(e, &in, 1, &out, 1), 0);
      CU_ASSERT_EQUAL(out.ndim, 1);
      CU_ASSERT_EQUAL(out.dims[0], cnt);
      if (c == 1) CU_ASSERT_EQUAL(cnt, 0);
      for (int64_t i = 0; i < cnt && cnt == out.dims[0]; i++)
        CU_ASSERT_DOUBLE_EQUAL(((const float *)out.data)[i], want[i], 1e-4);
    }
  /* inspect reports the largest shape (every value positive). */
  pv_layer_info rows[8];
  int r = pv_model_inspect(m, 5, rows, 8, NULL);
  CU_ASSERT(r >= 3);
  for (int i = 0; i < r && i < 8; i++)
    if (!strcmp(rows[i].op, "GatherND")) CU_ASSERT_EQUAL(rows[i].out_dims[0], 5 * 8);
  pv_exec_free(e);
  pv_model_release(m);
}

static CU_TestInfo tests[] = {
    {"runs and replans on new batch sizes", test_runs_and_replans},
    {"memory plan reuses buffers", test_memory_reuse},
    {"input checks name the input", test_input_checks},
    {"unsupported op names node, op, opset", test_unsupported_op},
    {"exec keeps its model alive", test_exec_keeps_model_alive},
    {"missing file", test_missing_file},
    {"pruned weights detected and folded at load", test_pruned_folded_at_load},
    {"data-shaped nodes: shapes inferred per run", test_data_shaped},
    CU_TEST_INFO_NULL,
};
PV_CUNIT_MAIN("model", tests)
