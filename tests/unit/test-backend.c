/* Backend loader: a wrong ABI version, a missing symbol, a failing init
 * and a missing method are clear errors, never a crash; the real CPU
 * plugin loads; a model whose preference list holds all of them runs on
 * the CPU with each fault logged. */
#include <stdlib.h>
#include <string.h>

#include "cunit-main.h"
#include "pivot.h"
#include "pv-backend.h"

static char dir[4096];

static void expect_fail(const char *name, const char *words) {
  pv_backend *b = pv_backend_get(name, dir, NULL);
  CU_ASSERT_PTR_NULL(b);
  if (!strstr(pv_errmsg(), words)) {
    fprintf(stderr, "\nbackend %s: message '%s' lacks '%s'\n", name, pv_errmsg(), words);
    CU_FAIL("message does not name the fault");
  }
}

static void test_bad_abi(void) { expect_fail("badabi", "ABI version 42"); }
static void test_init_fails(void) { expect_fail("initfail", "no device found"); }
static void test_missing_method(void) { expect_fail("nomethod", "required method"); }
static void test_no_entry(void) { expect_fail("noentry", "no symbol pv_backend_entry"); }
static void test_not_found(void) { expect_fail("nosuchbackend", "not found"); }
static void test_bad_name(void) {
  CU_ASSERT_PTR_NULL(pv_backend_get("../../etc/x", NULL, NULL));
  CU_ASSERT_PTR_NOT_NULL(strstr(pv_errmsg(), "invalid backend name"));
}

static void test_cpu_loads_once(void) {
  pv_backend *a = pv_backend_get("cpu", NULL, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(a);
  pv_backend *b = pv_backend_get("cpu", NULL, NULL);
  CU_ASSERT_PTR_EQUAL(a, b); /* a process-wide singleton */
  CU_ASSERT_STRING_EQUAL(pv_backend_name(a), "cpu");
  CU_ASSERT_EQUAL(pv_backend_iface_of(a)->abi_version, PV_BACKEND_ABI_VERSION);
  pv_backend_put(b);
  pv_backend_put(a);
}

static char log_buf[4096];
static void capture(int level, const char *msg) {
  size_t n = strlen(log_buf);
  if (level <= PV_LOG_WARN) snprintf(log_buf + n, sizeof log_buf - n, "%s\n", msg);
}

/* Through the runtime: every faulty plugin in a preference list is logged
 * with its fault and skipped, and the CPU runs the model. */
static void test_model_falls_back(void) {
  pv_graph *g = pv_graph_new();
  CU_ASSERT_PTR_NOT_NULL_FATAL(g);
  int x = pv_graph_add_value(g, "x"), y = pv_graph_add_value(g, "y");
  g->values[x].dtype = g->values[y].dtype = PV_F32;
  g->values[x].ndim = 2;
  g->values[x].dims[0] = PV_DIM_BATCH;
  g->values[x].dims[1] = 3;
  pv_graph_add_node(g, "relu", "Relu", &x, 1, &y, 1);
  g->inputs = malloc(sizeof(int));
  g->outputs = malloc(sizeof(int));
  CU_ASSERT_PTR_NOT_NULL_FATAL(g->inputs);
  CU_ASSERT_PTR_NOT_NULL_FATAL(g->outputs);
  g->inputs[0] = x, g->outputs[0] = y;
  g->n_inputs = g->n_outputs = 1;
  g->opset = 13;
  const char *names[] = {"badabi", "initfail", "nomethod", "noentry", "cpu", NULL};
  pv_load_opts o = {.backends = names, .backend_dir = dir};
  log_buf[0] = 0;
  pv_set_log_fn(capture);
  pv_model *m = pv_model_from_graph(g, &o);
  pv_set_log_fn(NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL(m);
  CU_ASSERT_STRING_EQUAL(pv_model_node_backend(m, 0), "cpu");
  const char *faults[] = {"ABI version 42", "no device found", "required method",
                          "no symbol pv_backend_entry"};
  for (int i = 0; i < 4; i++)
    if (!strstr(log_buf, faults[i])) {
      fprintf(stderr, "\nlog lacks '%s':\n%s", faults[i], log_buf);
      CU_FAIL("a skipped backend was not logged");
    }
  pv_exec *e = pv_exec_new(m);
  CU_ASSERT_PTR_NOT_NULL_FATAL(e);
  float in[6] = {-1, 2, -3, 4, -5, 6};
  pv_tensor t = {.dtype = PV_F32, .ndim = 2, .dims = {2, 3}, .data = in}, out;
  CU_ASSERT_EQUAL(pv_exec_run(e, &t, 1, &out, 1), 0);
  const float *r = out.data;
  CU_ASSERT(r && r[0] == 0 && r[1] == 2 && r[4] == 0 && r[5] == 6);
  pv_exec_free(e);
  pv_model_release(m);
}

static CU_TestInfo tests[] = {
    {"wrong ABI version", test_bad_abi},
    {"init fails", test_init_fails},
    {"missing method", test_missing_method},
    {"missing entry symbol", test_no_entry},
    {"not found", test_not_found},
    {"bad name", test_bad_name},
    {"cpu plugin loads once", test_cpu_loads_once},
    {"a model skips faulty plugins", test_model_falls_back},
    CU_TEST_INFO_NULL,
};

int main(void) {
  const char *b = getenv("abs_top_builddir");
  snprintf(dir, sizeof dir, "%s/tests/unit/.libs", b ? b : "..");
  if (CU_initialize_registry() != CUE_SUCCESS) return 99;
  CU_SuiteInfo suites[] = {{"backend loader", NULL, NULL, NULL, NULL, tests},
                           CU_SUITE_INFO_NULL};
  CU_register_suites(suites);
  CU_basic_set_mode(CU_BRM_VERBOSE);
  CU_basic_run_tests();
  unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
  CU_cleanup_registry();
  return failed ? 1 : 0;
}
