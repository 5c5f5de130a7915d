/* libFuzzer target for the .pvm reader: any input must load or fail with
 * a message, never crash, leak or read out of bounds; what loads must be
 * safe to use (pivots expanded, the graph freed). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pivot.h"
#include "pv-pivot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The reader wants the alignment a mapped file has. */
  void *buf = aligned_alloc(64, (size + 63) / 64 * 64 + 64);
  if (!buf) return 0;
  memcpy(buf, data, size);
  pv_graph *g = pv_pvm_load_mem(buf, size);
  if (g) {
    for (int i = 0; i < g->n_values; i++) {
      const pv_pivot *p = g->values[i].pivot;
      if (!p || (int64_t)p->M * p->C * p->kk > (1 << 20)) continue;
      float *d = malloc(sizeof(float) * (size_t)p->M * p->C * p->kk);
      if (d) pv_pivot_to_dense(p, d);
      free(d);
    }
    pv_graph_free(g);
  } else if (!pv_errmsg()[0]) {
    abort(); /* a failure must say why */
  }
  free(buf);
  return 0;
}
