/* ONNX import -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
pv_graph *pv_onnx_load(const char *p) { (void)p; pv_error(PV_EUNSUPPORTED, "ONNX import not implemented"); return NULL; }
pv_graph *pv_onnx_load_mem(const void *b, size_t l, const char *d) { (void)b; (void)l; (void)d; pv_error(PV_EUNSUPPORTED, "ONNX import not implemented"); return NULL; }
