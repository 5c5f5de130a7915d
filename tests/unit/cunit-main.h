/* Shared main() for CUnit tests: each test file defines
 *   static CU_TestInfo tests[] = { {"name", fn}, CU_TEST_INFO_NULL };
 *   PV_CUNIT_MAIN("suite name", tests)
 * and the program exits non-zero when any assertion fails. */
#ifndef PV_CUNIT_MAIN_H
#define PV_CUNIT_MAIN_H
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

#define PV_CUNIT_MAIN(suite_name, test_array)                                 \
  int main(void) {                                                            \
    if (CU_initialize_registry() != CUE_SUCCESS) return 99;                   \
    CU_SuiteInfo suites[] = {{(suite_name), NULL, NULL, NULL, NULL,           \
                              (test_array)},                                  \
                             CU_SUITE_INFO_NULL};                             \
    if (CU_register_suites(suites) != CUE_SUCCESS) return 99;                 \
    CU_basic_set_mode(CU_BRM_VERBOSE);                                        \
    CU_basic_run_tests();                                                     \
    unsigned failed = CU_get_number_of_failures() +                           \
                      CU_get_number_of_tests_failed();                        \
    CU_cleanup_registry();                                                    \
    return failed ? 1 : 0;                                                    \
  }

/* Path to a file in the source tree (tests run from the build tree). */
static inline const char *pv_test_srcdir(void) {
  const char *s = getenv("abs_top_srcdir");
  return s ? s : ".";
}
#endif
