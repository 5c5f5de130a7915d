/* Faulty backend plugins for the loader and fault tests; FAULT selects
 * the fault. */
#include <stdlib.h>

#include "pv-backend.h"

__attribute__((unused)) static int init_fail(const pv_backend_config *cfg, void **ctx) {
  (void)cfg;
  (void)ctx;
  return pv_error(PV_EBACKEND, "no device found");
}
__attribute__((unused)) static int init_ok(const pv_backend_config *cfg, void **ctx) {
  (void)cfg;
  *ctx = NULL;
  return 0;
}
__attribute__((unused)) static bool supports(void *ctx, const pv_graph *g, const pv_node *n) {
  (void)ctx; (void)g; (void)n;
  return false;
}
__attribute__((unused)) static int prepare(void *ctx, const pv_graph *g, const int *nodes, int n, void **plan) {
  (void)ctx; (void)g; (void)nodes; (void)n; (void)plan;
  return PV_EUNSUPPORTED;
}
__attribute__((unused)) static int execute(void *plan, pv_run_ctx *rc) {
  (void)plan; (void)rc;
  return PV_EUNSUPPORTED;
}
__attribute__((unused)) static void release(void *plan) { (void)plan; }

/* FAULT 5 and 6 claim every node, so the model really runs on them. */
__attribute__((unused)) static bool supports_all(void *ctx, const pv_graph *g, const pv_node *n) {
  (void)ctx; (void)g; (void)n;
  return true;
}
__attribute__((unused)) static int prepare_fail(void *ctx, const pv_graph *g, const int *nodes, int n, void **plan) {
  (void)ctx; (void)g; (void)nodes; (void)n; (void)plan;
  return pv_error(PV_EBACKEND, "out of device memory");
}
__attribute__((unused)) static int plan_token;
__attribute__((unused)) static int prepare_ok(void *ctx, const pv_graph *g, const int *nodes, int n, void **plan) {
  (void)ctx; (void)g; (void)nodes; (void)n;
  *plan = &plan_token;
  return 0;
}
/* Requests of more than one row fail: the load's batch-1 warm-up passes
 * and the device is lost once the model serves; with PV_FAULT_EXEC_ALWAYS
 * set every run fails, the warm-up too. */
__attribute__((unused)) static int execute_fail_later(void *plan, pv_run_ctx *rc) {
  (void)plan;
  if (rc->batch > 1 || getenv("PV_FAULT_EXEC_ALWAYS"))
    return pv_error(PV_EBACKEND, "device lost");
  return 0;
}

#if FAULT == 1 /* wrong ABI version */
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION + 41,
  .name = "badabi", .init = init_ok, .supports = supports, .prepare = prepare,
  .execute = execute, .release = release};
#elif FAULT == 2 /* init fails */
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION,
  .name = "initfail", .init = init_fail, .supports = supports, .prepare = prepare,
  .execute = execute, .release = release};
#elif FAULT == 3 /* a required method missing */
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION,
  .name = "nomethod", .init = init_ok, .supports = supports};
#elif FAULT == 5 /* prepare fails */
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION,
  .name = "prepfail", .init = init_ok, .supports = supports_all, .prepare = prepare_fail,
  .execute = execute, .release = release};
#elif FAULT == 6 /* execute fails after the warm-up */
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION,
  .name = "execfail", .init = init_ok, .supports = supports_all, .prepare = prepare_ok,
  .execute = execute_fail_later, .release = release};
#endif

#if FAULT != 4 /* FAULT 4: no entry symbol at all */
const pv_backend_iface *pv_backend_entry(void);
const pv_backend_iface *pv_backend_entry(void) { return &iface; }
#else
int pv_backend_entry_misspelt;
#endif
