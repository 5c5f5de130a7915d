#include "cunit-main.h"
#include "pivot.h"
static void test_placeholder(void) { CU_PASS("to be written"); }
static CU_TestInfo tests[] = {{"placeholder", test_placeholder}, CU_TEST_INFO_NULL};
PV_CUNIT_MAIN("graph", tests)
