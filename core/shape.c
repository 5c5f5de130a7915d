/* shape inference -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
int pv_infer_node(const pv_graph *g, const pv_node *n, pv_tensor *vals) { (void)g; (void)vals; return pv_error(PV_EUNSUPPORTED, "no shape inference for %s", n->op); }
