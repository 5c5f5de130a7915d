/* Backend plugin interface.
 *
 * A backend is a shared object (pivot-backend-NAME.so) exporting one
 * symbol, PV_BACKEND_ENTRY_SYMBOL, a function returning a pointer to a
 * static pv_backend_iface. The loader checks abi_version first and logs
 * both numbers on a mismatch. Optional methods may be NULL.
 *
 * Backends never see HTTP or JSON; the daemon never sees a kernel.
 */
#ifndef PV_BACKEND_H
#define PV_BACKEND_H

#include "pivot.h"
#include "pv-pivot.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PV_BACKEND_ABI_VERSION 1
#define PV_BACKEND_ENTRY_SYMBOL "pv_backend_entry"

/* Capabilities as data. */
typedef struct pv_device_props {
  char name[128];
  char vendor[64];
  char driver[64];
  uint64_t global_mem;     /* bytes; 0 = shares host memory */
  int compute_units;
  bool host_shared_memory; /* zero-copy with the host */
  bool fp16;
  bool int8;
} pv_device_props;

typedef struct pv_backend_config {
  int threads;       /* 0 = backend's choice */
  bool pin_threads;
  int device;        /* index among the backend's devices */
  const char *cache_dir; /* for compiled kernels; NULL = none */
} pv_backend_config;

/* What execute() sees for one run: concrete tensors for every value of
 * the graph, indexed by value id. Inputs of the backend's nodes hold data
 * (constants point at weights); outputs have dims and allocated host
 * memory to fill. */
typedef struct pv_run_ctx {
  pv_tensor *vals;
  int64_t batch;
  /* Scratch memory the backend may use for this run; grows on demand.
   * Call pv_run_scratch() rather than touching these. */
  void *scratch;
  size_t scratch_len;
} pv_run_ctx;

/* Scratch buffer of at least `bytes` for this run (64-byte aligned), or
 * NULL with an error set. Owned by the run context. */
void *pv_run_scratch(pv_run_ctx *rc, size_t bytes);

typedef struct pv_backend_iface {
  uint32_t abi_version; /* PV_BACKEND_ABI_VERSION */
  const char *name;     /* "cpu", "opencl", "cuda" */

  /* Create the backend context. Return 0, or a negative code with
   * pv_error() set (e.g. no device): the loader then skips the backend. */
  int (*init)(const pv_backend_config *cfg, void **ctx);
  void (*shutdown)(void *ctx);

  /* Optional: devices and their capabilities. */
  int (*device_count)(void *ctx);
  int (*device_props)(void *ctx, int index, pv_device_props *out);

  /* Whether this backend runs node n of g. */
  bool (*supports)(void *ctx, const pv_graph *g, const pv_node *n);

  /* Prepare a subgraph: `nodes` (indices into g, topological order) that
   * this backend will run. Pack weights, compile kernels. g outlives the
   * plan. Return 0 and *plan, or a negative code with pv_error() set. */
  int (*prepare)(void *ctx, const pv_graph *g, const int *nodes, int n_nodes,
                 void **plan);
  /* Run the prepared nodes for one request. Reentrant: several runs of
   * one plan may be in flight on different pv_run_ctx. */
  int (*execute)(void *plan, pv_run_ctx *rc);
  void (*release)(void *plan);
} pv_backend_iface;

typedef const pv_backend_iface *(*pv_backend_entry_fn)(void);

/* ---- loader (core/backend.c) */

typedef struct pv_backend pv_backend; /* a loaded, initialised backend */

/* Load pivot-backend-NAME.so from dir (NULL: $PIVOT_BACKEND_DIR, then the
 * build tree, then the install dir), check the ABI, init. Backends are
 * process-wide singletons, reference-counted. NULL + error on failure. */
pv_backend *pv_backend_get(const char *name, const char *dir,
                           const pv_backend_config *cfg);
void pv_backend_put(pv_backend *b);
const pv_backend_iface *pv_backend_iface_of(const pv_backend *b);
void *pv_backend_ctx(const pv_backend *b);
const char *pv_backend_name(const pv_backend *b);
/* Register a statically linked backend (tests). */
int pv_backend_register(const pv_backend_iface *iface);

#ifdef __cplusplus
}
#endif
#endif
