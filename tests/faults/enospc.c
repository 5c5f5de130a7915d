/* LD_PRELOAD shim: the disk fills up under the daemon. Writes to files
 * whose path holds $PV_ENOSPC_MATCH fail with ENOSPC once
 * $PV_ENOSPC_AFTER bytes went to such files (the last write is short, as
 * on a real full disk); with PV_ENOSPC_FSYNC=1, fsync on them fails with
 * ENOSPC instead, as on NFS or a thin-provisioned volume. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool matches(int fd) {
  const char *m = getenv("PV_ENOSPC_MATCH");
  if (!m || !*m) return false;
  char link[64], path[4096];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, path, sizeof path - 1);
  if (n < 0) return false;
  path[n] = 0;
  return strstr(path, m) != NULL;
}

ssize_t write(int fd, const void *buf, size_t n) {
  static ssize_t (*real)(int, const void *, size_t);
  static _Atomic long written;
  if (!real) real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
  if (!getenv("PV_ENOSPC_FSYNC") && matches(fd)) {
    const char *a = getenv("PV_ENOSPC_AFTER");
    long after = a ? atol(a) : 0;
    long w = atomic_load(&written);
    if (w >= after) {
      errno = ENOSPC;
      return -1;
    }
    if ((long)n > after - w) n = (size_t)(after - w);
    atomic_fetch_add(&written, (long)n);
  }
  return real(fd, buf, n);
}

int fsync(int fd) {
  static int (*real)(int);
  if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
  if (getenv("PV_ENOSPC_FSYNC") && matches(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return real(fd);
}
