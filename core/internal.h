/* Private to libpivot. */
#ifndef PV_INTERNAL_H
#define PV_INTERNAL_H
#include "pivot.h"

/* When a loader keeps the graph's bytes in external storage (a mapped
 * file), g->storage points at this header first, so graph.c can tell
 * which value data it does not own. */
typedef struct pv_storage_hdr {
  const char *base;
  size_t len;
} pv_storage_hdr;

/* A new value named base+suffix, made unique with _1, _2... when taken
 * (passes that rewrite nodes). Its index or a negative code. */
int pv_graph_add_unique_value(pv_graph *g, const char *base, const char *suffix);
/* The same, as a constant holding data (takes ownership, freed with
 * pv_free even on failure). */
int pv_graph_add_const(pv_graph *g, const char *base, const char *suffix,
                       pv_dtype dt, void *data, int ndim, const int64_t *dims);

#endif
