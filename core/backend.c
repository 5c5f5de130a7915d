/* Backend loader -- being written. */
#include "pv-backend.h"
pv_backend *pv_backend_get(const char *name, const char *dir, const pv_backend_config *cfg) { (void)dir; (void)cfg; pv_error(PV_ENOTFOUND, "backend %s: loader not written", name); return NULL; }
void pv_backend_put(pv_backend *b) { (void)b; }
