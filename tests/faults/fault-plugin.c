/* The faulty backend plugins of tests/unit, built here too so the fault
 * tests need no CUnit; FAULT (5 prepfail, 6 execfail) picks the fault. */
#include "../unit/plugins/fault.c"
