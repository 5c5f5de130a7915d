/* pivotd settings: defaults in one place, a JSON file, then command-line
 * flags that override it. Every error names the field or flag. */
#include "pivotd.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void pvd_settings_init(pvd_settings *s) {
  memset(s, 0, sizeof *s);
  s->config_path = strdup("/etc/pivotd/pivotd.json");
  s->repository = strdup("/var/lib/pivotd/models");
  s->listen_host = strdup("127.0.0.1");
  s->listen_port = 8000;
  s->threads = 0;
  s->http_threads = 2; /* one per core of a small edge box; tiny models run inline on them */
  s->max_body = 64u << 20;
  s->max_upload = 512u << 20;
  s->max_connections = 256;
  s->request_timeout = 30;
  s->repo_poll_ms = 2000;
  s->unload_first = false;
  s->drain_timeout = 30;
}

void pvd_settings_free(pvd_settings *s) {
  free(s->config_path);
  free(s->repository);
  free(s->listen_host);
  free(s->token);
  free(s->backend_dir);
  free(s->port_file);
  memset(s, 0, sizeof *s);
}

static int set_str(char **dst, const char *v) {
  char *c = strdup(v);
  if (!c) return pv_error(PV_ENOMEM, "settings");
  free(*dst);
  *dst = c;
  return 0;
}

/* "host:port", "[v6]:port" or ":port". */
static int parse_listen(pvd_settings *s, const char *v, const char *what) {
  const char *colon = strrchr(v, ':');
  if (!colon) return pv_error(PV_EINVAL, "%s: \"%s\" is not host:port", what, v);
  char *end;
  long port = strtol(colon + 1, &end, 10);
  if (!colon[1] || *end || port < 0 || port > 65535)
    return pv_error(PV_EINVAL, "%s: bad port in \"%s\"", what, v);
  size_t hl = (size_t)(colon - v);
  const char *h = v;
  if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; }
  char *host = strndup(h, hl);
  if (!host) return pv_error(PV_ENOMEM, "settings");
  if (!*host) { free(host); host = strdup("0.0.0.0"); }
  free(s->listen_host);
  s->listen_host = host;
  s->listen_port = (int)port;
  return 0;
}

static int parse_size(const char *v, size_t *out, const char *what) {
  char *end;
  unsigned long long n = strtoull(v, &end, 10);
  unsigned long long mul = 1;
  if (*end == 'k' || *end == 'K') { mul = 1ull << 10; end++; }
  else if (*end == 'm' || *end == 'M') { mul = 1ull << 20; end++; }
  else if (*end == 'g' || *end == 'G') { mul = 1ull << 30; end++; }
  if (end == v || *end || v[0] == '-' || n > SIZE_MAX / mul || n == 0)
    return pv_error(PV_EINVAL, "%s: \"%s\" is not a positive size (bytes, or with K/M/G)", what, v);
  *out = (size_t)(n * mul);
  return 0;
}

static int parse_int(const char *v, long lo, long hi, int *out, const char *what) {
  char *end;
  long n = strtol(v, &end, 10);
  if (end == v || *end || n < lo || n > hi)
    return pv_error(PV_EINVAL, "%s: \"%s\" is not an integer in [%ld, %ld]", what, v, lo, hi);
  *out = (int)n;
  return 0;
}

/* One table for file keys and flags, so both accept the same settings. */
enum kind { K_STR, K_LISTEN, K_INT, K_SIZE, K_BOOL };
typedef struct field {
  const char *name;   /* JSON key and --flag */
  enum kind kind;
  size_t off;
  long lo, hi;
  const char *help;
} field;

#define F(n, k, m, lo, hi, h) {n, k, offsetof(pvd_settings, m), lo, hi, h}
static const field fields[] = {
    F("repository", K_STR, repository, 0, 0, "model repository directory"),
    F("listen", K_LISTEN, listen_host, 0, 0, "address:port to serve on (default 127.0.0.1:8000)"),
    F("token", K_STR, token, 0, 0, "bearer token for load/unload/upload"),
    F("threads", K_INT, threads, 0, 1024, "compute threads per model (0 = all cores)"),
    F("http-threads", K_INT, http_threads, 1, 64, "HTTP polling threads"),
    F("max-body", K_SIZE, max_body, 0, 0, "largest request body (bytes, K/M/G)"),
    F("max-upload", K_SIZE, max_upload, 0, 0, "largest uploaded model file"),
    F("max-connections", K_INT, max_connections, 1, 1000000, "concurrent connections"),
    F("request-timeout", K_INT, request_timeout, 1, 86400, "seconds: idle connection and queue deadline"),
    F("repository-poll-ms", K_INT, repo_poll_ms, 0, 86400000, "repository poll period, 0 = off"),
    F("unload-first", K_BOOL, unload_first, 0, 0, "free the old version before loading a new one"),
    F("drain-timeout", K_INT, drain_timeout, 0, 86400, "seconds to finish in-flight requests on SIGTERM"),
    F("backend-dir", K_STR, backend_dir, 0, 0, "directory of backend plugins"),
    F("port-file", K_STR, port_file, 0, 0, "write the bound port to this file"),
};
#undef F
#define N_FIELDS (int)(sizeof fields / sizeof fields[0])

static int apply_str(pvd_settings *s, const field *f, const char *v, const char *what) {
  void *p = (char *)s + f->off;
  switch (f->kind) {
  case K_STR: return set_str((char **)p, v);
  case K_LISTEN: return parse_listen(s, v, what);
  case K_INT: return parse_int(v, f->lo, f->hi, (int *)p, what);
  case K_SIZE: return parse_size(v, (size_t *)p, what);
  case K_BOOL:
    if (!strcmp(v, "true") || !strcmp(v, "1")) *(bool *)p = true;
    else if (!strcmp(v, "false") || !strcmp(v, "0")) *(bool *)p = false;
    else return pv_error(PV_EINVAL, "%s: \"%s\" is not true or false", what, v);
    return 0;
  }
  return 0;
}

int pvd_settings_load_file(pvd_settings *s, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return pv_error(PV_EIO, "config %s: cannot open", path);
  char *buf = malloc((1 << 20) + 1);
  size_t n = buf ? fread(buf, 1, 1 << 20, f) : 0;
  fclose(f);
  if (!buf) return pv_error(PV_ENOMEM, "config");
  buf[n] = 0;
  cJSON *root = cJSON_Parse(buf);
  free(buf);
  int rc = 0;
  if (!root || !cJSON_IsObject(root)) {
    rc = pv_error(PV_EINVAL, "config %s: not a JSON object", path);
    goto out;
  }
  cJSON *it;
  cJSON_ArrayForEach(it, root) {
    const field *fd = NULL;
    for (int i = 0; i < N_FIELDS; i++) {
      /* File keys use '_' where flags use '-'. */
      char key[64];
      snprintf(key, sizeof key, "%s", fields[i].name);
      for (char *c = key; *c; c++) if (*c == '-') *c = '_';
      if (!strcmp(key, it->string)) fd = &fields[i];
    }
    char what[256];
    snprintf(what, sizeof what, "config %s: field \"%s\"", path, it->string);
    if (!fd) { rc = pv_error(PV_EINVAL, "config %s: unknown field \"%s\"", path, it->string); goto out; }
    char tmp[64];
    const char *v;
    if (cJSON_IsString(it) && (fd->kind == K_STR || fd->kind == K_LISTEN || fd->kind == K_SIZE)) v = it->valuestring;
    else if (cJSON_IsNumber(it) && (fd->kind == K_INT || fd->kind == K_SIZE)) {
      /* Range first: casting a double beyond long long is undefined. */
      if (!(it->valuedouble >= -9.0e18 && it->valuedouble <= 9.0e18) ||
          it->valuedouble != (double)(long long)it->valuedouble) { rc = pv_error(PV_EINVAL, "%s must be an integer", what); goto out; }
      snprintf(tmp, sizeof tmp, "%lld", (long long)it->valuedouble);
      v = tmp;
    } else if (cJSON_IsBool(it) && fd->kind == K_BOOL) v = cJSON_IsTrue(it) ? "true" : "false";
    else if (cJSON_IsNull(it) && fd->kind == K_STR) { free(*(char **)((char *)s + fd->off)); *(char **)((char *)s + fd->off) = NULL; continue; }
    else { rc = pv_error(PV_EINVAL, "%s has the wrong type", what); goto out; }
    if ((rc = apply_str(s, fd, v, what))) goto out;
  }
out:
  cJSON_Delete(root);
  return rc;
}

static void usage(FILE *o) {
  fprintf(o, "usage: pivotd [--config FILE] [options]\n"
             "Serve models over the Open Inference Protocol v2.\n\n"
             "  --config FILE            JSON settings (default /etc/pivotd/pivotd.json;\n"
             "                           a missing default file is not an error)\n");
  for (int i = 0; i < N_FIELDS; i++)
    fprintf(o, "  --%-23s %s\n", fields[i].kind == K_BOOL ? fields[i].name : fields[i].name, fields[i].help);
  fprintf(o, "  --help, --version\n");
}

int pvd_settings_parse_args(pvd_settings *s, int argc, char **argv) {
  /* Pass 1: --config, so flags override the file whatever their order. */
  bool explicit_cfg = false;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { usage(stdout); return 1; }
    if (!strcmp(argv[i], "--version")) { printf("pivotd %s\n", pv_version()); return 1; }
    if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) return pv_error(PV_EINVAL, "--config needs a file");
      set_str(&s->config_path, argv[++i]);
      explicit_cfg = true;
    } else if (!strncmp(argv[i], "--config=", 9)) {
      set_str(&s->config_path, argv[i] + 9);
      explicit_cfg = true;
    }
  }
  FILE *f = fopen(s->config_path, "rb");
  if (f) {
    fclose(f);
    int rc = pvd_settings_load_file(s, s->config_path);
    if (rc) return rc;
  } else if (explicit_cfg) {
    return pv_error(PV_EIO, "--config %s: cannot open", s->config_path);
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--config")) { i++; continue; }
    if (!strncmp(a, "--config=", 9)) continue;
    if (strncmp(a, "--", 2)) return pv_error(PV_EINVAL, "unexpected argument \"%s\"", a);
    const char *eq = strchr(a, '=');
    size_t nl = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
    const field *fd = NULL;
    bool neg = false;
    for (int k = 0; k < N_FIELDS; k++) {
      if (strlen(fields[k].name) == nl && !strncmp(a + 2, fields[k].name, nl)) fd = &fields[k];
      if (fields[k].kind == K_BOOL && nl == strlen(fields[k].name) + 3 && !strncmp(a + 2, "no-", 3) &&
          !strncmp(a + 5, fields[k].name, nl - 3)) { fd = &fields[k]; neg = true; }
    }
    if (!fd) return pv_error(PV_EINVAL, "unknown option \"%s\" (see --help)", a);
    char what[96];
    snprintf(what, sizeof what, "--%s", fd->name);
    const char *v;
    if (fd->kind == K_BOOL && !eq) v = neg ? "false" : "true";
    else if (eq) v = eq + 1;
    else if (i + 1 < argc) v = argv[++i];
    else return pv_error(PV_EINVAL, "%s needs a value", what);
    int rc = apply_str(s, fd, v, what);
    if (rc) return rc;
  }
  return 0;
}
