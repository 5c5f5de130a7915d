/* libFuzzer target: any byte string given to the ONNX importer must load
 * or fail with a message, never crash, leak or read out of bounds. No base
 * directory, so external data is refused without touching the disk. */
#include <stddef.h>
#include <stdint.h>

#include "pivot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pv_graph *g = pv_onnx_load_mem(data, size, NULL);
  if (g) {
    /* Touch what a consumer reads first, so bad indices show up here. */
    for (int i = 0; i < g->n_nodes; i++)
      for (int j = 0; j < g->nodes[i].n_in; j++)
        if (g->nodes[i].in[j] >= g->n_values) __builtin_trap();
    pv_graph_free(g);
  } else if (!pv_errmsg()[0]) {
    __builtin_trap(); /* a failure must say why */
  }
  return 0;
}
