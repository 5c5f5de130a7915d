/* .pvm format -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
pv_graph *pv_pvm_load(const char *path) { pv_error(PV_EUNSUPPORTED, "%s: .pvm reader not written", path); return NULL; }
