/* On-disk cache of compiled OpenCL program binaries.
 *
 * Compiling the kernels takes from a fraction of a second (PoCL) to
 * seconds (Mali drivers), so the binary is kept on disk, keyed by a hash
 * of everything that changes it: source, build options, device name,
 * device and driver versions. Writes go to a temporary file renamed into
 * place, so a concurrent reader never sees half a binary.
 */
#ifndef PV_CL_CACHE_H
#define PV_CL_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FNV-1a over `len` bytes, continuing from h (start with PV_FNV_INIT). */
#define PV_FNV_INIT 0xcbf29ce484222325ull
uint64_t pv_cl_hash(uint64_t h, const void *buf, size_t len);

/* The cache folder: `dir` if set, else $XDG_CACHE_HOME/pivotd, else
 * $HOME/.cache/pivotd. Writes into out; returns false when none. */
bool pv_cl_cache_dir(const char *dir, char *out, size_t len);

/* Read the whole file into a malloc'd buffer (caller frees); NULL if
 * absent or unreadable (no error set: a miss is normal). */
unsigned char *pv_cl_cache_read(const char *path, size_t *len);

/* Write atomically (temp file + rename), creating the folder. 0 or a
 * negative code with the error set. */
int pv_cl_cache_write(const char *path, const void *buf, size_t len);

#endif
