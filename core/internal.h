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

#endif
