/* npy -- to be written. */
#include "pivot.h"
#include "pv-pivot.h"
int pv_npy_read(const char *path, pv_tensor *t) { (void)path; (void)t; return pv_error(PV_EUNSUPPORTED, ".npy not implemented"); }
int pv_npy_read_mem(const void *b, size_t l, pv_tensor *t) { (void)b; (void)l; (void)t; return pv_error(PV_EUNSUPPORTED, ".npy not implemented"); }
int pv_npy_write(const char *path, const pv_tensor *t) { (void)path; (void)t; return pv_error(PV_EUNSUPPORTED, ".npy not implemented"); }
