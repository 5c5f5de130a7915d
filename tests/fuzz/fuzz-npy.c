/* libFuzzer target: pv_npy_read_mem on any byte string must return a
 * tensor whose data matches its declared size, or fail with a message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pivot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pv_tensor t;
  if (pv_npy_read_mem(data, size, &t) == 0) {
    size_t nb = pv_tensor_nbytes(&t);
    /* The data is the tail of the input: compare it byte for byte. */
    if (nb > size || memcmp(t.data, data + size - nb, nb)) __builtin_trap();
    pv_free(t.data);
  } else if (!pv_errmsg()[0]) {
    __builtin_trap();
  }
  return 0;
}
