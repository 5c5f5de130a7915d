/* cpu backend -- minimal: every node through the reference ops. The fast
 * version replaces this file. */
#include <stdlib.h>
#include <string.h>
#include "pv-backend.h"
static int init(const pv_backend_config *cfg, void **ctx) { (void)cfg; *ctx = NULL; return 0; }
static bool supports(void *ctx, const pv_graph *g, const pv_node *n) { (void)ctx; return pv_ref_supports(g, n); }
typedef struct plan { const pv_graph *g; const int *nodes; int n; } plan;
static int prepare(void *ctx, const pv_graph *g, const int *nodes, int n, void **out) {
  (void)ctx;
  plan *p = malloc(sizeof *p);
  if (!p) return PV_ENOMEM;
  int *copy = malloc(sizeof(int) * (n ? n : 1));
  if (!copy) { free(p); return PV_ENOMEM; }
  memcpy(copy, nodes, sizeof(int) * n);
  *p = (plan){g, copy, n};
  *out = p;
  return 0;
}
static int execute(void *pl, pv_run_ctx *rc) {
  plan *p = pl;
  for (int i = 0; i < p->n; i++) {
    int r = pv_ref_node(p->g, &p->g->nodes[p->nodes[i]], rc->vals);
    if (r) return r;
  }
  return 0;
}
static void release(void *pl) { plan *p = pl; free((void *)p->nodes); free(p); }
static const pv_backend_iface iface = {.abi_version = PV_BACKEND_ABI_VERSION, .name = "cpu",
  .init = init, .supports = supports, .prepare = prepare, .execute = execute, .release = release};
const pv_backend_iface *pv_backend_entry(void);
const pv_backend_iface *pv_backend_entry(void) { return &iface; }
