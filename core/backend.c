/* Backend loader: dlopen pivot-backend-NAME.so, check the ABI, init once
 * per process, reference-count. */
#include "config.h"

#include <ctype.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pv-backend.h"

#ifndef PV_BACKEND_INSTALL_DIR
#define PV_BACKEND_INSTALL_DIR "/usr/local/lib/pivotd"
#endif

struct pv_backend {
  char name[32];
  char path[1024];
  void *handle; /* NULL for registered (static) backends */
  const pv_backend_iface *iface;
  void *ctx;
  int refs;
  struct pv_backend *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pv_backend *loaded;
static const pv_backend_iface *registered[8];
static int n_registered;

/* ---- logging (here because the loader is its first user) */

static void default_log(int level, const char *msg) {
  static const char *names[] = {"error", "warning", "info", "debug"};
  if (level > PV_LOG_INFO && !getenv("PIVOT_DEBUG")) return;
  fprintf(stderr, "pivot: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}
static pv_log_fn log_fn = default_log;

void pv_set_log_fn(pv_log_fn fn) {
  log_fn = fn ? fn : default_log;
}

void pv_log(int level, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  log_fn(level, buf);
}

/* ---- loading */

int pv_backend_register(const pv_backend_iface *iface) {
  pthread_mutex_lock(&lock);
  int rc = 0;
  if (n_registered >= (int)(sizeof registered / sizeof registered[0]))
    rc = pv_error(PV_ERANGE, "too many registered backends");
  else
    registered[n_registered++] = iface;
  pthread_mutex_unlock(&lock);
  return rc;
}

static bool valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= 32) return false;
  for (; *s; s++)
    if (!islower((unsigned char)*s) && !isdigit((unsigned char)*s) && *s != '_')
      return false;
  return true;
}

/* First existing candidate path for backend `name`, or false. */
static bool find_path(const char *name, const char *dir, char *out, size_t len) {
  const char *dirs[4];
  int nd = 0;
  if (dir && *dir) dirs[nd++] = dir;
  const char *env = getenv("PIVOT_BACKEND_DIR");
  if (env && *env) dirs[nd++] = env;
  dirs[nd++] = PV_BACKEND_INSTALL_DIR;
#ifdef PV_BUILD_DIR
  dirs[nd++] = PV_BUILD_DIR "/backends";
#endif
  for (int i = 0; i < nd; i++) {
    snprintf(out, len, "%s/pivot-backend-%s.so", dirs[i], name);
    if (access(out, R_OK) == 0) return true;
    /* The uninstalled build tree keeps libtool modules in NAME/.libs. */
    snprintf(out, len, "%s/%s/.libs/pivot-backend-%s.so", dirs[i], name, name);
    if (access(out, R_OK) == 0) return true;
  }
  return false;
}

static int check_iface(const pv_backend_iface *it, const char *name,
                       const char *path) {
  if (!it)
    return pv_error(PV_EBACKEND, "backend '%s' (%s): entry returned NULL", name, path);
  if (it->abi_version != PV_BACKEND_ABI_VERSION) {
    pv_log(PV_LOG_ERROR,
           "backend '%s' (%s): ABI version %u, this libpivot expects %d; skipped",
           name, path, it->abi_version, PV_BACKEND_ABI_VERSION);
    return pv_error(PV_EBACKEND,
                    "backend '%s' (%s): ABI version %u, this libpivot expects %d",
                    name, path, it->abi_version, PV_BACKEND_ABI_VERSION);
  }
  if (!it->name || strcmp(it->name, name))
    return pv_error(PV_EBACKEND, "backend '%s' (%s): calls itself '%s'", name,
                    path, it->name ? it->name : "(null)");
  if (!it->init || !it->supports || !it->prepare || !it->execute || !it->release)
    return pv_error(PV_EBACKEND, "backend '%s' (%s): a required method is missing",
                    name, path);
  return 0;
}

static pv_backend *load_locked(const char *name, const char *dir,
                               const pv_backend_config *cfg) {
  for (pv_backend *b = loaded; b; b = b->next)
    if (!strcmp(b->name, name)) {
      b->refs++;
      return b;
    }
  pv_backend *b = calloc(1, sizeof *b);
  if (!b) {
    pv_error(PV_ENOMEM, "out of memory");
    return NULL;
  }
  snprintf(b->name, sizeof b->name, "%s", name);
  for (int i = 0; i < n_registered; i++)
    if (!strcmp(registered[i]->name, name)) {
      b->iface = registered[i];
      snprintf(b->path, sizeof b->path, "(built in)");
    }
  if (!b->iface) {
    if (!find_path(name, dir, b->path, sizeof b->path)) {
      pv_error(PV_ENOTFOUND,
               "backend '%s': pivot-backend-%s.so not found (searched %s%s$PIVOT_BACKEND_DIR, %s)",
               name, name, dir ? dir : "", dir ? ", " : "", PV_BACKEND_INSTALL_DIR);
      goto fail_free;
    }
    b->handle = dlopen(b->path, RTLD_NOW | RTLD_LOCAL);
    if (!b->handle) {
      pv_error(PV_EBACKEND, "backend '%s': %s", name, dlerror());
      goto fail_free;
    }
    pv_backend_entry_fn entry;
    *(void **)&entry = dlsym(b->handle, PV_BACKEND_ENTRY_SYMBOL);
    if (!entry) {
      pv_error(PV_EBACKEND, "backend '%s' (%s): no symbol %s", name, b->path,
               PV_BACKEND_ENTRY_SYMBOL);
      goto fail_close;
    }
    b->iface = entry();
  }
  if (check_iface(b->iface, name, b->path)) goto fail_close;
  pv_backend_config dflt = {0};
  int rc = b->iface->init(cfg ? cfg : &dflt, &b->ctx);
  if (rc) {
    pv_error_prefix(rc, "backend '%s': initialisation failed", name);
    goto fail_close;
  }
  b->refs = 1;
  b->next = loaded;
  loaded = b;
  pv_log(PV_LOG_DEBUG, "backend '%s' loaded from %s", name, b->path);
  return b;

fail_close:
  if (b->handle) dlclose(b->handle);
fail_free:
  free(b);
  return NULL;
}

pv_backend *pv_backend_get(const char *name, const char *dir,
                           const pv_backend_config *cfg) {
  if (!name || !valid_name(name)) {
    pv_error(PV_EINVAL, "invalid backend name '%s'", name ? name : "(null)");
    return NULL;
  }
  pthread_mutex_lock(&lock);
  pv_backend *b = load_locked(name, dir, cfg);
  pthread_mutex_unlock(&lock);
  return b;
}

void pv_backend_put(pv_backend *b) {
  if (!b) return;
  pthread_mutex_lock(&lock);
  if (--b->refs == 0) {
    pv_backend **pp = &loaded;
    while (*pp && *pp != b) pp = &(*pp)->next;
    if (*pp) *pp = b->next;
    if (b->iface->shutdown) b->iface->shutdown(b->ctx);
    /* Modules stay mapped: a backend may have started threads or
     * registered handlers that outlive shutdown in its libraries. */
    free(b);
  }
  pthread_mutex_unlock(&lock);
}

const pv_backend_iface *pv_backend_iface_of(const pv_backend *b) {
  return b->iface;
}
void *pv_backend_ctx(const pv_backend *b) {
  return b->ctx;
}
const char *pv_backend_name(const pv_backend *b) {
  return b->name;
}
