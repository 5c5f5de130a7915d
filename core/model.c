/* Models and execution -- being written. */
#include "pivot.h"
pv_model *pv_model_load(const char *path, const pv_load_opts *opts) { (void)path; (void)opts; pv_error(PV_EUNSUPPORTED, "not written"); return NULL; }
