/* cpu backend -- being written. */
#include "pv-backend.h"
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION, .name = "cpu"};
const pv_backend_iface *pv_backend_entry(void);
const pv_backend_iface *pv_backend_entry(void) { return &iface; }
