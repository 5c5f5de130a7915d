/* libFuzzer target: pv_npy_read_mem on any byte string must return a
 * tensor whose data matches its declared size, or fail with a message; and
 * pv_npy_read (which reads a file in pieces) must agree with it exactly. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pivot.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd < 0) {
    fd = memfd_create("fuzz-npy", 0);
    if (fd < 0) __builtin_trap();
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
    __builtin_trap();

  pv_tensor t, f;
  int rc = pv_npy_read_mem(data, size, &t);
  if (rc == 0) {
    size_t nb = pv_tensor_nbytes(&t);
    /* The data is the tail of the input: compare it byte for byte. */
    if (nb > size || memcmp(t.data, data + size - nb, nb)) __builtin_trap();
  } else if (!pv_errmsg()[0]) {
    __builtin_trap(); /* a failure must say why */
  }
  int frc = pv_npy_read(path, &f);
  if (frc != rc) __builtin_trap();
  if (rc == 0) {
    if (f.dtype != t.dtype || f.ndim != t.ndim ||
        memcmp(f.dims, t.dims, sizeof(int64_t) * t.ndim) ||
        memcmp(f.data, t.data, pv_tensor_nbytes(&t)))
      __builtin_trap();
    pv_free(f.data);
    pv_free(t.data);
  }
  return 0;
}
