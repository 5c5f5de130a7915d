/* Error codes and the thread-local error message. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pivot.h"

static _Thread_local char errbuf[1024];

const char *pv_strerror(int code) {
  switch (code) {
  case 0: return "success";
#define PV_ERR_MSG(name, val, msg) case val: return msg;
    PV_ERRNO_MAP(PV_ERR_MSG)
#undef PV_ERR_MSG
  }
  return "unknown error";
}

const char *pv_errname(int code) {
  switch (code) {
  case 0: return "OK";
#define PV_ERR_NAME(name, val, msg) case val: return #name;
    PV_ERRNO_MAP(PV_ERR_NAME)
#undef PV_ERR_NAME
  }
  return "EUNKNOWN";
}

int pv_error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return code;
}

int pv_error_prefix(int code, const char *fmt, ...) {
  char prefix[512], old[sizeof errbuf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, errbuf, sizeof old);
  if (old[0])
    snprintf(errbuf, sizeof errbuf, "%.500s: %.500s", prefix, old);
  else
    snprintf(errbuf, sizeof errbuf, "%s: %s", prefix, pv_strerror(code));
  return code;
}

const char *pv_errmsg(void) {
  return errbuf;
}

const char *pv_version(void) {
  return PACKAGE_VERSION;
}
