/* Backend loader: a wrong ABI version, a missing symbol, a failing init
 * and a missing method are clear errors, never a crash; the real CPU
 * plugin loads. */
#include <stdlib.h>
#include <string.h>

#include "cunit-main.h"
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

static CU_TestInfo tests[] = {
    {"wrong ABI version", test_bad_abi},
    {"init fails", test_init_fails},
    {"missing method", test_missing_method},
    {"missing entry symbol", test_no_entry},
    {"not found", test_not_found},
    {"bad name", test_bad_name},
    {"cpu plugin loads once", test_cpu_loads_once},
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
