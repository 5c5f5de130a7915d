/* On-disk cache of compiled OpenCL program binaries (see cl-cache.h). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pivot.h"
#include "cl-cache.h"

uint64_t pv_cl_hash(uint64_t h, const void *buf, size_t len) {
  const unsigned char *p = buf;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

bool pv_cl_cache_dir(const char *dir, char *out, size_t len) {
  int n;
  const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (dir && *dir)
    n = snprintf(out, len, "%s", dir);
  else if (x && *x)
    n = snprintf(out, len, "%s/pivotd", x);
  else if (home && *home)
    n = snprintf(out, len, "%s/.cache/pivotd", home);
  else
    return false;
  return n > 0 && (size_t)n < len;
}

unsigned char *pv_cl_cache_read(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  unsigned char *buf = NULL;
  struct stat st;
  /* A binary over 256 MiB is not ours: refuse rather than allocate. */
  if (fstat(fileno(f), &st) || st.st_size <= 0 || st.st_size > (256 << 20)) goto out_close;
  buf = malloc((size_t)st.st_size);
  if (!buf) goto out_close;
  if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
    free(buf);
    buf = NULL;
    goto out_close;
  }
  *len = (size_t)st.st_size;
out_close:
  fclose(f);
  return buf;
}

/* mkdir -p. */
static int make_dirs(const char *dir) {
  char tmp[4096];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof tmp) return pv_error(PV_EINVAL, "cache folder name too long");
  memcpy(tmp, dir, n + 1);
  for (char *p = tmp + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(tmp, 0755) && errno != EEXIST)
      return pv_error(PV_EIO, "mkdir %s: %s", tmp, strerror(errno));
    *p = '/';
  }
  if (mkdir(tmp, 0755) && errno != EEXIST)
    return pv_error(PV_EIO, "mkdir %s: %s", tmp, strerror(errno));
  return 0;
}

int pv_cl_cache_write(const char *path, const void *buf, size_t len) {
  char dir[4096], tmp[4200];
  const char *slash = strrchr(path, '/');
  if (!slash || (size_t)(slash - path) >= sizeof dir)
    return pv_error(PV_EINVAL, "cache path %s", path);
  memcpy(dir, path, slash - path);
  dir[slash - path] = 0;
  int rc = make_dirs(dir);
  if (rc) return rc;
  snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return pv_error(PV_EIO, "create %s: %s", tmp, strerror(errno));
  const unsigned char *p = buf;
  size_t left = len;
  while (left) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      rc = pv_error(PV_EIO, "write %s: %s", tmp, strerror(errno));
      goto out_unlink;
    }
    p += w;
    left -= (size_t)w;
  }
  if (close(fd)) {
    fd = -1;
    rc = pv_error(PV_EIO, "close %s: %s", tmp, strerror(errno));
    goto out_unlink;
  }
  fd = -1;
  if (rename(tmp, path)) {
    rc = pv_error(PV_EIO, "rename %s: %s", path, strerror(errno));
    goto out_unlink;
  }
  return 0;
out_unlink:
  if (fd >= 0) close(fd);
  unlink(tmp);
  return rc;
}
