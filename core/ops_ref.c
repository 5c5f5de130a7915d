/* reference ops -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
int pv_ref_node(const pv_graph *g, const pv_node *n, pv_tensor *vals) { (void)g; (void)vals; return pv_error(PV_EUNSUPPORTED, "op %s not implemented", n->op); }
bool pv_ref_supports(const pv_graph *g, const pv_node *n) { (void)g; (void)n; return false; }
void pv_act_apply(float *x, size_t n, pv_act act, float alpha, float beta) { (void)x; (void)n; (void)act; (void)alpha; (void)beta; }
