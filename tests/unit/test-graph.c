/* Graph IR: values, nodes, attributes, metadata, compaction and order. */
#include <string.h>

#include "cunit-main.h"
#include "pivot.h"

static void test_values_and_lookup(void) {
  pv_graph *g = pv_graph_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  int a = pv_graph_add_value(g, "a");
  int b = pv_graph_add_value(g, "b");
  CU_ASSERT_EQUAL(a, 0);
  CU_ASSERT_EQUAL(b, 1);
  CU_ASSERT_EQUAL(pv_graph_find_value(g, "b"), b);
  CU_ASSERT_EQUAL(pv_graph_find_value(g, "zz"), -1);
  CU_ASSERT_EQUAL(g->values[a].ndim, -1);
  CU_ASSERT_EQUAL(g->values[a].producer, -1);
  /* Growth past the initial capacity keeps names. */
  char name[16];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "v%d", i);
    CU_ASSERT(pv_graph_add_value(g, name) >= 0);
  }
  CU_ASSERT_EQUAL(pv_graph_find_value(g, "v77"), 2 + 77);
  CU_ASSERT_STRING_EQUAL(g->values[a].name, "a");
  pv_graph_free(g);
}

static void test_attrs(void) {
  pv_graph *g = pv_graph_new();
  int x = pv_graph_add_value(g, "x"), y = pv_graph_add_value(g, "y");
  int n = pv_graph_add_node(g, "c", "Conv", &x, 1, &y, 1);
  CU_ASSERT_EQUAL_FATAL(n, 0);
  int64_t pads[4] = {1, 2, 3, 4};
  pv_attr a = {.name = "pads", .type = PV_ATTR_INTS, .ints = pads, .n = 4};
  CU_ASSERT_EQUAL(pv_node_add_attr(g, n, &a), 0);
  pads[0] = 99; /* the graph keeps its own copy */
  pv_attr f = {.name = "alpha", .type = PV_ATTR_FLOAT, .f = 0.25f};
  CU_ASSERT_EQUAL(pv_node_add_attr(g, n, &f), 0);
  pv_attr s = {.name = "auto_pad", .type = PV_ATTR_STRING, .s = "SAME_UPPER"};
  CU_ASSERT_EQUAL(pv_node_add_attr(g, n, &s), 0);
  const int64_t *p;
  CU_ASSERT_EQUAL(pv_attr_ints(&g->nodes[n], "pads", &p), 4);
  CU_ASSERT_EQUAL(p[0], 1);
  CU_ASSERT_EQUAL(p[3], 4);
  CU_ASSERT_EQUAL(pv_attr_ints(&g->nodes[n], "strides", &p), -1);
  CU_ASSERT_DOUBLE_EQUAL(pv_attr_float(&g->nodes[n], "alpha", 0), 0.25, 1e-9);
  CU_ASSERT_DOUBLE_EQUAL(pv_attr_float(&g->nodes[n], "beta", 7), 7, 1e-9);
  CU_ASSERT_EQUAL(pv_attr_int(&g->nodes[n], "group", 1), 1);
  CU_ASSERT_STRING_EQUAL(pv_attr_str(&g->nodes[n], "auto_pad", "NOTSET"), "SAME_UPPER");
  CU_ASSERT_EQUAL(g->values[y].producer, n);
  pv_graph_free(g);
}

static void test_meta(void) {
  pv_graph *g = pv_graph_new();
  CU_ASSERT_EQUAL(pv_graph_set_meta(g, "labels", "cat,dog"), 0);
  CU_ASSERT_EQUAL(pv_graph_set_meta(g, "labels", "face"), 0);
  CU_ASSERT_EQUAL(g->n_meta, 1);
  CU_ASSERT_STRING_EQUAL(pv_graph_get_meta(g, "labels"), "face");
  CU_ASSERT_PTR_NULL(pv_graph_get_meta(g, "anchors"));
  pv_graph_free(g);
}

/* Nodes added out of order are sorted; removed nodes disappear. */
static void test_compact_sorts_and_removes(void) {
  pv_graph *g = pv_graph_new();
  int x = pv_graph_add_value(g, "x"), h = pv_graph_add_value(g, "h");
  int h2 = pv_graph_add_value(g, "h2"), y = pv_graph_add_value(g, "y");
  g->inputs = malloc(sizeof(int));
  g->inputs[0] = x;
  g->n_inputs = 1;
  g->outputs = malloc(sizeof(int));
  g->outputs[0] = y;
  g->n_outputs = 1;
  pv_graph_add_node(g, "second", "Relu", &h2, 1, &y, 1);
  pv_graph_add_node(g, "dead", "Identity", &h, 1, &h2, 1);
  pv_graph_add_node(g, "first", "Relu", &x, 1, &h, 1);
  CU_ASSERT_EQUAL(pv_graph_compact(g), 0);
  CU_ASSERT_STRING_EQUAL(g->nodes[0].name, "first");
  CU_ASSERT_STRING_EQUAL(g->nodes[2].name, "second");
  CU_ASSERT_EQUAL(g->values[y].producer, 2);
  /* Remove "dead" by rewiring "second" to read h. */
  g->nodes[2].in[0] = h;
  free(g->nodes[1].op);
  g->nodes[1].op = NULL;
  CU_ASSERT_EQUAL(pv_graph_compact(g), 0);
  CU_ASSERT_EQUAL(g->n_nodes, 2);
  CU_ASSERT_EQUAL(pv_graph_consumers(g, h, NULL, 0), 1);
  CU_ASSERT_EQUAL(pv_graph_consumers(g, y, NULL, 0), 1); /* graph output */
  pv_graph_free(g);
}

static void test_cycle_is_an_error(void) {
  pv_graph *g = pv_graph_new();
  int a = pv_graph_add_value(g, "a"), b = pv_graph_add_value(g, "b");
  pv_graph_add_node(g, "n1", "Relu", &a, 1, &b, 1);
  pv_graph_add_node(g, "n2", "Relu", &b, 1, &a, 1);
  CU_ASSERT_EQUAL(pv_graph_compact(g), PV_EFORMAT);
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "cycle"));
  pv_graph_free(g);
}

/* A long chain stored backwards (the worst order for a rescanning sort)
 * and a diamond stored consumer-first come out in dependency order. */
static void test_sort_long_reversed_chain(void) {
  enum { N = 20000 };
  pv_graph *g = pv_graph_new();
  int v[N + 1];
  char name[32];
  for (int i = 0; i <= N; i++) {
    snprintf(name, sizeof name, "v%d", i);
    v[i] = pv_graph_add_value(g, name);
  }
  for (int i = N - 1; i >= 0; i--) {
    snprintf(name, sizeof name, "n%d", i);
    CU_ASSERT_EQUAL(pv_graph_add_node(g, name, "Relu", &v[i], 1, &v[i + 1], 1),
                    N - 1 - i);
  }
  CU_ASSERT_EQUAL(pv_graph_compact(g), 0);
  int ok = 1;
  for (int i = 0; i < N; i++) ok &= g->nodes[i].in[0] == v[i];
  CU_ASSERT_TRUE(ok);
  CU_ASSERT_EQUAL(g->values[v[N]].producer, N - 1);
  pv_graph_free(g);

  g = pv_graph_new();
  int a = pv_graph_add_value(g, "a"), b = pv_graph_add_value(g, "b");
  int c = pv_graph_add_value(g, "c"), d = pv_graph_add_value(g, "d");
  int bc[2] = {b, c};
  pv_graph_add_node(g, "join", "Add", bc, 2, &d, 1);
  pv_graph_add_node(g, "right", "Relu", &a, 1, &c, 1);
  pv_graph_add_node(g, "left", "Relu", &a, 1, &b, 1);
  CU_ASSERT_EQUAL(pv_graph_compact(g), 0);
  /* Ready nodes keep their stored order: right before left. */
  CU_ASSERT_STRING_EQUAL(g->nodes[0].name, "right");
  CU_ASSERT_STRING_EQUAL(g->nodes[1].name, "left");
  CU_ASSERT_STRING_EQUAL(g->nodes[2].name, "join");
  pv_graph_free(g);
}

static void test_errors_and_dtypes(void) {
  CU_ASSERT_EQUAL(pv_error(PV_ESHAPE, "input '%s' bad", "x"), PV_ESHAPE);
  CU_ASSERT_STRING_EQUAL(pv_errmsg(), "input 'x' bad");
  pv_error_prefix(PV_ESHAPE, "model.onnx");
  CU_ASSERT_STRING_EQUAL(pv_errmsg(), "model.onnx: input 'x' bad");
  CU_ASSERT_STRING_EQUAL(pv_errname(PV_ENOMEM), "ENOMEM");
  CU_ASSERT_EQUAL(pv_dtype_size(PV_F32), 4);
  CU_ASSERT_EQUAL(pv_dtype_size(PV_I64), 8);
  CU_ASSERT_EQUAL(pv_dtype_from_name("fp32"), PV_F32);
  CU_ASSERT_STRING_EQUAL(pv_dtype_name(PV_U8), "UINT8");
  pv_tensor t = {.dtype = PV_F32, .ndim = 2, .dims = {INT64_MAX / 2, 4}};
  CU_ASSERT_EQUAL(pv_tensor_nbytes(&t), SIZE_MAX);
  CU_ASSERT_EQUAL(pv_tensor_alloc(&t), PV_ERANGE);
  pv_tensor s = {.dtype = PV_F32, .ndim = 0};
  CU_ASSERT_EQUAL(pv_tensor_numel(&s), 1);
}

static CU_TestInfo tests[] = {
    {"values and lookup", test_values_and_lookup},
    {"attributes", test_attrs},
    {"metadata", test_meta},
    {"compact sorts and removes", test_compact_sorts_and_removes},
    {"cycle is an error", test_cycle_is_an_error},
    {"sort a long reversed chain", test_sort_long_reversed_chain},
    {"errors and dtypes", test_errors_and_dtypes},
    CU_TEST_INFO_NULL,
};
PV_CUNIT_MAIN("graph", tests)
