/* pivotctl: the command line for a running pivotd — status, models, load,
 * unload, upload-and-swap, infer on .npy files, detect, stats, metrics.
 * Exit codes: 0 ok, 1 the server said no, 2 usage, 3 cannot connect. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "pivotctl-http.h"

#define MAX_IO 32
#define MAX_PARAMS 16

typedef struct opts {
  const char *url, *token, *outdir, *config;
  const char *outputs[MAX_IO];
  int n_outputs;
  const char *params[MAX_PARAMS];
  int n_params;
  long long version; /* -1: latest */
  double timeout;
  bool json, json_payload;
  char *pos[64];
  int n_pos;
} opts;

static void usage(FILE *f) {
  fprintf(f,
    "usage: pivotctl [OPTIONS] COMMAND [ARGS]\n"
    "Commands:\n"
    "  status                       server version, liveness, readiness, models\n"
    "  models [MODEL]               repository index; with MODEL its metadata\n"
    "  load MODEL [--config JSON]   (re)load MODEL from the repository\n"
    "  unload MODEL                 stop serving MODEL\n"
    "  upload MODEL FILE [-V N]     send a .pvm/.onnx as version N (default: the\n"
    "                               next one) and swap it in once it has loaded\n"
    "  infer MODEL [NAME=]FILE.npy...  run MODEL; writes each output to\n"
    "                               DIR/NAME.npy (-o DIR, default .)\n"
    "  detect MODEL IMAGE           detections in a JPEG, PNG, WebP, HEIC or AVIF image\n"
    "  stats [MODEL]                request counts and mean queue/compute times\n"
    "  metrics                      the Prometheus metrics text\n"
    "Options:\n"
    "  --url URL        server (default $PIVOTD_URL or http://127.0.0.1:8000)\n"
    "  --token TOKEN    bearer token for admin commands (default $PIVOTD_TOKEN)\n"
    "  --json           print JSON instead of text\n"
    "  --timeout S      give up on a request after S seconds (default 60)\n"
    "  -V, --model-version N   a specific version (models, infer, upload, stats)\n"
    "  -o, --out DIR    where infer writes outputs\n"
    "  --output NAME    ask infer for this output only (repeatable)\n"
    "  --json-payload   send infer inputs as JSON numbers, not binary\n"
    "  --param K=V      detect: a query parameter (repeatable): score=0.5,\n"
    "                   iou=0.45, top_k=100\n"
    "Exit status: 0 ok, 1 the server refused, 2 usage error, 3 cannot connect.\n");
}

static int usage_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("pivotctl: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (pivotctl --help)\n", stderr);
  va_end(ap);
  return PVC_EXIT_USAGE;
}

static int conn_err(pvc_client *c) {
  fprintf(stderr, "pivotctl: cannot reach %s: %s\n", c->base, c->err);
  return PVC_EXIT_CONNECT;
}

static int refused(const pvc_resp *r, const char *what) {
  char msg[1024];
  fprintf(stderr, "pivotctl: %s: %s (HTTP %ld)\n", what, pvc_resp_error(r, msg, sizeof msg), r->status);
  return PVC_EXIT_REFUSED;
}

/* One request whose answer must be 2xx JSON; prints and maps errors. */
static int call_json(pvc_client *c, const char *method, const char *path, const char *body,
                     const char *what, cJSON **out, pvc_resp *raw) {
  pvc_resp r;
  *out = NULL;
  if (pvc_do(c, method, path, body ? "application/json" : NULL, body, body ? strlen(body) : 0, &r))
    return conn_err(c);
  if (r.status < 200 || r.status > 299) {
    int rc = refused(&r, what);
    pvc_resp_free(&r);
    return rc;
  }
  *out = pvc_resp_json(&r);
  if (raw) *raw = r;
  else pvc_resp_free(&r);
  if (!*out) {
    fprintf(stderr, "pivotctl: %s: the answer is not JSON\n", what);
    if (raw) pvc_resp_free(raw);
    return PVC_EXIT_REFUSED;
  }
  return 0;
}

static void print_json(const cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  if (s) puts(s);
  free(s);
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static cJSON *index_of(pvc_client *c, int *rc) {
  cJSON *j;
  *rc = call_json(c, "POST", "/v2/repository/index", "{}", "repository index", &j, NULL);
  if (!*rc && !cJSON_IsArray(j)) {
    fprintf(stderr, "pivotctl: repository index: not a JSON array\n");
    cJSON_Delete(j);
    *rc = PVC_EXIT_REFUSED;
    return NULL;
  }
  return j;
}

/* ------------------------------------------------------------ commands */

static int cmd_status(pvc_client *c, opts *o) {
  pvc_resp r;
  if (pvc_do(c, "GET", "/v2/health/live", NULL, NULL, 0, &r)) return conn_err(c);
  bool live = r.status == 200;
  pvc_resp_free(&r);
  if (pvc_do(c, "GET", "/v2/health/ready", NULL, NULL, 0, &r)) return conn_err(c);
  bool ready = r.status == 200;
  pvc_resp_free(&r);
  cJSON *srv, *idx = NULL;
  int rc = call_json(c, "GET", "/v2", NULL, "server metadata", &srv, NULL);
  if (rc) return rc;
  if ((idx = index_of(c, &rc)) == NULL) goto out;
  if (o->json) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "url", c->base);
    cJSON_AddBoolToObject(j, "live", live);
    cJSON_AddBoolToObject(j, "ready", ready);
    cJSON_AddItemToObject(j, "server", srv);
    cJSON_AddItemToObject(j, "models", idx);
    srv = idx = NULL;
    print_json(j);
    cJSON_Delete(j);
  } else {
    printf("%s %s at %s\n", jstr(srv, "name"), jstr(srv, "version"), c->base);
    printf("  live: %s, ready: %s\n", live ? "yes" : "no", ready ? "yes" : "no");
    printf("  extensions:");
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(srv, "extensions"))
      if (cJSON_IsString(e)) printf(" %s", e->valuestring);
    printf("\n  models:%s\n", cJSON_GetArraySize(idx) ? "" : " none");
    cJSON_ArrayForEach(e, idx)
      printf("    %s%s%s %s%s%s\n", jstr(e, "name"), *jstr(e, "version") ? " v" : "", jstr(e, "version"),
             jstr(e, "state"), *jstr(e, "reason") ? ": " : "", jstr(e, "reason"));
  }
  /* As a probe, "not ready" is a refusal: scripts wait on the exit code. */
  rc = ready ? 0 : PVC_EXIT_REFUSED;
out:
  cJSON_Delete(srv);
  cJSON_Delete(idx);
  return rc;
}

static void print_tensors(const char *kind, const cJSON *arr) {
  const cJSON *t;
  cJSON_ArrayForEach(t, arr) {
    printf("  %-6s %-20s %-6s [", kind, jstr(t, "name"), jstr(t, "datatype"));
    const cJSON *d;
    bool first = true;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(t, "shape")) {
      printf("%s%lld", first ? "" : ",", (long long)d->valuedouble);
      first = false;
    }
    printf("]\n");
  }
}

static int cmd_models(pvc_client *c, opts *o) {
  int rc;
  if (o->n_pos > 1) return usage_err("models: one MODEL at most");
  if (o->n_pos == 1) {
    char path[1024];
    cJSON *m;
    if (pvc_model_path(path, sizeof path, o->pos[0], o->version, ""))
      return usage_err("models: model name too long");
    if ((rc = call_json(c, "GET", path, NULL, o->pos[0], &m, NULL))) return rc;
    if (o->json) {
      print_json(m);
    } else {
      printf("%s  backend %s  max_batch %d  versions", jstr(m, "name"), jstr(m, "backend"),
             (int)jnum(m, "max_batch_size"));
      const cJSON *v;
      cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(m, "versions"))
        printf(" %s", cJSON_IsString(v) ? v->valuestring : "?");
      printf("\n");
      print_tensors("input", cJSON_GetObjectItemCaseSensitive(m, "inputs"));
      print_tensors("output", cJSON_GetObjectItemCaseSensitive(m, "outputs"));
    }
    cJSON_Delete(m);
    return 0;
  }
  cJSON *idx = index_of(c, &rc);
  if (!idx) return rc;
  if (o->json) {
    print_json(idx);
  } else {
    printf("%-24s %-8s %-12s %s\n", "MODEL", "VERSION", "STATE", "REASON");
    const cJSON *e;
    cJSON_ArrayForEach(e, idx)
      printf("%-24s %-8s %-12s %s\n", jstr(e, "name"), jstr(e, "version"), jstr(e, "state"),
             jstr(e, "reason"));
  }
  cJSON_Delete(idx);
  return 0;
}

static int repo_action(pvc_client *c, opts *o, const char *action) {
  if (o->n_pos != 1) return usage_err("%s: expected one MODEL", action);
  char *esc = curl_easy_escape(NULL, o->pos[0], 0);
  if (!esc) return usage_err("%s: bad model name", action);
  char path[1024];
  snprintf(path, sizeof path, "/v2/repository/models/%s/%s", esc, action);
  curl_free(esc);
  pvc_buf body = {0};
  if (o->config) {
    /* The daemon takes the override as a JSON string or object; a string
     * keeps whatever the user typed intact. */
    pvc_buf_puts(&body, "{\"parameters\":{\"config\":");
    pvc_buf_json_str(&body, o->config);
    pvc_buf_puts(&body, "}}");
  } else {
    pvc_buf_puts(&body, "{}");
  }
  if (body.oom) { free(body.p); return usage_err("out of memory"); }
  cJSON *j;
  char what[300];
  snprintf(what, sizeof what, "%s %s", action, o->pos[0]);
  int rc = call_json(c, "POST", path, body.p, what, &j, NULL);
  free(body.p);
  if (rc) return rc;
  if (o->json) print_json(j);
  else if (!strcmp(action, "load")) printf("%s: %s\n", o->pos[0], *jstr(j, "state") ? jstr(j, "state") : "loaded");
  else printf("%s: unloaded\n", o->pos[0]);
  cJSON_Delete(j);
  return 0;
}

static int read_file(const char *path, pvc_buf *b) {
  FILE *f = fopen(path, "rb");
  if (!f) return -errno;
  char tmp[1 << 16];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) pvc_buf_add(b, tmp, n);
  int err = ferror(f) ? -EIO : b->oom ? -ENOMEM : 0;
  fclose(f);
  return err;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmd_upload(pvc_client *c, opts *o) {
  if (o->n_pos != 2) return usage_err("upload: expected MODEL FILE");
  const char *model = o->pos[0], *file = o->pos[1];
  long long version = o->version;
  int rc;
  if (version < 0) {
    /* Next version = one past the highest the repository knows, so an
     * upload never overwrites a version silently. */
    cJSON *idx = index_of(c, &rc);
    if (!idx) return rc;
    version = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, idx)
      if (!strcmp(jstr(e, "name"), model)) {
        long long v = strtoll(jstr(e, "version"), NULL, 10);
        if (v > version) version = v;
      }
    version++;
    cJSON_Delete(idx);
  }
  pvc_buf b = {0};
  int err = read_file(file, &b);
  if (err) {
    free(b.p);
    fprintf(stderr, "pivotctl: upload: cannot read %s: %s\n", file, strerror(-err));
    return PVC_EXIT_USAGE;
  }
  char path[1024];
  if (pvc_model_path(path, sizeof path, model, version, "/model")) {
    free(b.p);
    return usage_err("upload: model name too long");
  }
  double t0 = now_s();
  pvc_resp r;
  if (pvc_do(c, "PUT", path, "application/octet-stream", b.p, b.len, &r)) {
    free(b.p);
    return conn_err(c);
  }
  double dt = now_s() - t0;
  size_t size = b.len;
  free(b.p);
  if (r.status < 200 || r.status > 299) {
    char what[300];
    snprintf(what, sizeof what, "upload %s version %lld", model, version);
    rc = refused(&r, what);
    pvc_resp_free(&r);
    return rc;
  }
  if (o->json) {
    pvc_buf s = {0};
    pvc_buf_puts(&s, "{\"name\":");
    pvc_buf_json_str(&s, model);
    pvc_buf_printf(&s, ",\"version\":\"%lld\",\"bytes\":%zu,\"seconds\":%.3f,\"server\":", version, size, dt);
    pvc_buf_add(&s, r.body.len ? r.body.p : "null", r.body.len ? r.body.len : 4);
    pvc_buf_puts(&s, "}");
    if (!s.oom) puts(s.p);
    free(s.p);
  } else {
    printf("%s: version %lld uploaded (%zu bytes), loaded and serving (%.2f s)\n", model, version, size, dt);
  }
  pvc_resp_free(&r);
  return 0;
}

static int write_outputs(const opts *o, const char *model, const cJSON *head, pv_tensor *t,
                         char **names, int n) {
  const char *dir = o->outdir ? o->outdir : ".";
  if (o->outdir && mkdir(dir, 0777) && errno != EEXIST) {
    fprintf(stderr, "pivotctl: cannot create %s: %s\n", dir, strerror(errno));
    return PVC_EXIT_USAGE;
  }
  cJSON *j = o->json ? cJSON_CreateObject() : NULL, *arr = NULL;
  if (j) {
    cJSON_AddStringToObject(j, "model_name", *jstr(head, "model_name") ? jstr(head, "model_name") : model);
    cJSON_AddStringToObject(j, "model_version", jstr(head, "model_version"));
    arr = cJSON_AddArrayToObject(j, "outputs");
  } else {
    printf("%s version %s\n", *jstr(head, "model_name") ? jstr(head, "model_name") : model,
           jstr(head, "model_version"));
  }
  int rc = 0;
  for (int i = 0; i < n; i++) {
    char safe[256], path[4096], dims[128];
    size_t k = 0;
    for (const char *s = names[i]; *s && k + 1 < sizeof safe; s++, k++) {
      char ch = *s;
      bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                ch == '.' || ch == '_' || ch == '-';
      safe[k] = ok ? ch : '_';
    }
    safe[k] = 0;
    if (!k || !strcmp(safe, ".") || !strcmp(safe, "..")) snprintf(safe, sizeof safe, "output%d", i);
    snprintf(path, sizeof path, "%s/%s.npy", dir, safe);
    if (pv_npy_write(path, &t[i])) {
      fprintf(stderr, "pivotctl: %s: %s\n", path, pv_errmsg());
      rc = PVC_EXIT_USAGE;
      break;
    }
    pv_dims_str(t[i].dims, t[i].ndim, dims, sizeof dims);
    if (j) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "name", names[i]);
      cJSON_AddStringToObject(e, "datatype", pv_dtype_name(t[i].dtype));
      cJSON *sh = cJSON_AddArrayToObject(e, "shape");
      for (int d = 0; d < t[i].ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].dims[d]));
      cJSON_AddStringToObject(e, "file", path);
      cJSON_AddItemToArray(arr, e);
      continue;
    }
    printf("  %s %s %s -> %s\n", names[i], pv_dtype_name(t[i].dtype), dims, path);
    /* A few values help at a glance (a classifier's scores); files hold all. */
    if (t[i].dtype == PV_F32 && pv_tensor_numel(&t[i]) <= 16) {
      printf("   ");
      for (int64_t e = 0; e < pv_tensor_numel(&t[i]); e++) printf(" %.6g", ((float *)t[i].data)[e]);
      printf("\n");
    }
  }
  if (j) {
    if (!rc) print_json(j);
    cJSON_Delete(j);
  }
  return rc;
}

static int cmd_infer(pvc_client *c, opts *o) {
  if (o->n_pos < 2) return usage_err("infer: expected MODEL and at least one FILE.npy");
  const char *model = o->pos[0];
  char *meta_names[MAX_IO] = {0}, *in_names[MAX_IO] = {0}, *out_names[MAX_IO] = {0};
  pv_tensor meta[MAX_IO], in[MAX_IO], out[MAX_IO];
  int n_in = 0, n_out = 0, rc = 0;
  int n_meta = pvc_model_inputs(c, model, o->version, meta_names, meta, MAX_IO);
  if (n_meta < 0) {
    fprintf(stderr, "pivotctl: %s: %s\n", model, pv_errmsg());
    return n_meta == PV_EIO ? PVC_EXIT_CONNECT : PVC_EXIT_REFUSED;
  }
  if (o->n_pos - 1 > n_meta) {
    rc = usage_err("infer: %d files for a model with %d inputs", o->n_pos - 1, n_meta);
    goto out;
  }
  for (int i = 1; i < o->n_pos; i++) {
    /* NAME=FILE names the input; a bare FILE takes the next one in model
     * order. */
    const char *spec = o->pos[i], *eq = strchr(spec, '='), *file = eq ? eq + 1 : spec;
    char *name = eq ? strndup(spec, (size_t)(eq - spec)) : strdup(meta_names[n_in]);
    if (!name) { rc = usage_err("out of memory"); goto out; }
    in_names[n_in] = name;
    memset(&in[n_in], 0, sizeof in[n_in]);
    if (pv_npy_read(file, &in[n_in])) {
      fprintf(stderr, "pivotctl: infer: %s: %s\n", file, pv_errmsg());
      rc = PVC_EXIT_USAGE;
      goto out;
    }
    n_in++;
  }
  pvc_buf body = {0};
  size_t json_len = 0;
  if (pvc_infer_body((const char *const *)in_names, in, n_in, !o->json_payload, !o->json_payload,
                     &body, &json_len)) {
    free(body.p);
    fprintf(stderr, "pivotctl: infer: %s\n", pv_errmsg());
    rc = PVC_EXIT_USAGE;
    goto out;
  }
  if (o->n_outputs) {
    /* Requested outputs go in the JSON head: rebuild it with them. */
    pvc_buf b2 = {0};
    size_t head = o->json_payload ? body.len : json_len;
    pvc_buf_add(&b2, body.p, head - 1); /* drop the closing '}' */
    pvc_buf_puts(&b2, ",\"outputs\":[");
    for (int i = 0; i < o->n_outputs; i++) {
      pvc_buf_puts(&b2, i ? ",{\"name\":" : "{\"name\":");
      pvc_buf_json_str(&b2, o->outputs[i]);
      pvc_buf_printf(&b2, ",\"parameters\":{\"binary_data\":%s}}", o->json_payload ? "false" : "true");
    }
    pvc_buf_puts(&b2, "]}");
    if (!o->json_payload) json_len = b2.len;
    pvc_buf_add(&b2, body.p + head, body.len - head);
    free(body.p);
    body = b2;
  }
  char path[1024], hdr[64];
  pvc_model_path(path, sizeof path, model, o->version, "/infer");
  pvc_resp r;
  int err;
  if (o->json_payload) {
    err = pvc_do(c, "POST", path, "application/json", body.p, body.len, &r);
  } else {
    snprintf(hdr, sizeof hdr, "Inference-Header-Content-Length: %zu", json_len);
    err = pvc_do_hdr(c, "POST", path, "application/octet-stream", hdr, body.p, body.len, &r);
  }
  free(body.p);
  if (err) { rc = conn_err(c); goto out; }
  if (r.status != 200) {
    char what[300];
    snprintf(what, sizeof what, "infer %s", model);
    rc = refused(&r, what);
    pvc_resp_free(&r);
    goto out;
  }
  n_out = pvc_infer_outputs(&r, out, out_names, MAX_IO);
  cJSON *head = pvc_resp_json(&r);
  pvc_resp_free(&r);
  if (n_out < 0) {
    fprintf(stderr, "pivotctl: infer %s: %s\n", model, pv_errmsg());
    cJSON_Delete(head);
    rc = PVC_EXIT_REFUSED;
    goto out;
  }
  rc = write_outputs(o, model, head, out, out_names, n_out);
  cJSON_Delete(head);
out:
  for (int i = 0; i < n_meta; i++) free(meta_names[i]);
  for (int i = 0; i < n_in; i++) { free(in_names[i]); pv_free(in[i].data); }
  if (n_in < MAX_IO) free(in_names[n_in]);
  for (int i = 0; i < n_out; i++) { free(out_names[i]); pv_free(out[i].data); }
  return rc;
}

static int cmd_detect(pvc_client *c, opts *o) {
  if (o->n_pos != 2) return usage_err("detect: expected MODEL IMAGE");
  const char *model = o->pos[0], *file = o->pos[1];
  pvc_buf img = {0};
  int err = read_file(file, &img);
  if (err) {
    free(img.p);
    fprintf(stderr, "pivotctl: detect: cannot read %s: %s\n", file, strerror(-err));
    return PVC_EXIT_USAGE;
  }
  /* The server decodes by content; the type only has to be honest. */
  const unsigned char *p = (const unsigned char *)img.p;
  const char *type = img.len >= 3 && p[0] == 0xff && p[1] == 0xd8 ? "image/jpeg"
                     : img.len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8) ? "image/png"
                     : "application/octet-stream";
  char path[2048];
  pvc_model_path(path, sizeof path, model, o->version, "/detect");
  for (int i = 0; i < o->n_params; i++) {
    char *esc = curl_easy_escape(NULL, o->params[i], 0), *eq;
    if (!esc) break;
    /* keep the '=' between key and value unescaped */
    if ((eq = strstr(esc, "%3D"))) { *eq = '='; memmove(eq + 1, eq + 3, strlen(eq + 3) + 1); }
    size_t n = strlen(path);
    snprintf(path + n, sizeof path - n, "%c%s", i ? '&' : '?', esc);
    curl_free(esc);
  }
  pvc_resp r;
  err = pvc_do(c, "POST", path, type, img.p, img.len, &r);
  free(img.p);
  if (err) return conn_err(c);
  if (r.status == 404 || r.status == 405) {
    /* Tell "no such model" from "this daemon cannot detect". */
    char mpath[1024];
    pvc_resp m;
    pvc_model_path(mpath, sizeof mpath, model, -1, "");
    if (!pvc_do(c, "GET", mpath, NULL, NULL, 0, &m) && m.status == 200) {
      fprintf(stderr, "pivotctl: detect: the server at %s has no detect endpoint (HTTP %ld)\n",
              c->base, r.status);
      pvc_resp_free(&m);
      pvc_resp_free(&r);
      return PVC_EXIT_REFUSED;
    }
    pvc_resp_free(&m);
  }
  if (r.status != 200) {
    int rc = refused(&r, "detect");
    pvc_resp_free(&r);
    return rc;
  }
  cJSON *j = pvc_resp_json(&r);
  pvc_resp_free(&r);
  if (!j) { fprintf(stderr, "pivotctl: detect: the answer is not JSON\n"); return PVC_EXIT_REFUSED; }
  if (o->json) {
    print_json(j);
  } else {
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(j, "detections"), *d;
    printf("%d detections\n", cJSON_GetArraySize(ds));
    cJSON_ArrayForEach(d, ds) {
      const cJSON *box = cJSON_GetObjectItemCaseSensitive(d, "box");
      double b[4] = {0};
      for (int k = 0; k < 4; k++) {
        const cJSON *v = cJSON_GetArrayItem(box, k);
        b[k] = cJSON_IsNumber(v) ? v->valuedouble : 0;
      }
      const char *label = jstr(d, "label");
      printf("  %-12s score %.3f  box [%.1f, %.1f, %.1f, %.1f]\n",
             *label ? label : "-", jnum(d, "score"), b[0], b[1], b[2], b[3]);
    }
  }
  cJSON_Delete(j);
  return 0;
}

static double stat_ms(const cJSON *is, const char *k, double *count) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(is, k);
  double n = jnum(s, "count"), ns = jnum(s, "ns");
  if (count) *count = n;
  return n > 0 ? ns / n / 1e6 : 0;
}

static int cmd_stats(pvc_client *c, opts *o) {
  if (o->n_pos > 1) return usage_err("stats: one MODEL at most");
  char path[1024];
  if (o->n_pos) pvc_model_path(path, sizeof path, o->pos[0], o->version, "/stats");
  else snprintf(path, sizeof path, "/v2/models/stats");
  cJSON *j;
  int rc = call_json(c, "GET", path, NULL, "stats", &j, NULL);
  if (rc) return rc;
  if (o->json) {
    print_json(j);
  } else {
    printf("%-20s %-4s %10s %8s %10s %10s %10s %10s\n", "MODEL", "VER", "REQUESTS", "FAILED",
           "BATCHES", "MEAN_MS", "QUEUE_MS", "COMPUTE_MS");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(j, "model_stats")) {
      const cJSON *is = cJSON_GetObjectItemCaseSensitive(m, "inference_stats");
      double ok, fail;
      double mean = stat_ms(is, "success", &ok);
      stat_ms(is, "fail", &fail);
      printf("%-20s %-4s %10.0f %8.0f %10.0f %10.3f %10.3f %10.3f\n", jstr(m, "name"), jstr(m, "version"),
             ok, fail, jnum(m, "execution_count"), mean, stat_ms(is, "queue", NULL),
             stat_ms(is, "compute_infer", NULL));
    }
  }
  cJSON_Delete(j);
  return 0;
}

static int cmd_metrics(pvc_client *c, opts *o) {
  if (o->n_pos) return usage_err("metrics: no arguments");
  pvc_resp r;
  if (pvc_do(c, "GET", "/metrics", NULL, NULL, 0, &r)) return conn_err(c);
  int rc = 0;
  if (r.status != 200) rc = refused(&r, "metrics");
  else fwrite(r.body.p, 1, r.body.len, stdout);
  pvc_resp_free(&r);
  return rc;
}

/* ------------------------------------------------------------ main */

typedef struct command {
  const char *name;
  int (*fn)(pvc_client *, opts *);
} command;

static int cmd_load(pvc_client *c, opts *o) { return repo_action(c, o, "load"); }
static int cmd_unload(pvc_client *c, opts *o) { return repo_action(c, o, "unload"); }

static const command commands[] = {
  {.name = "status", .fn = cmd_status},   {.name = "models", .fn = cmd_models},
  {.name = "load", .fn = cmd_load},       {.name = "unload", .fn = cmd_unload},
  {.name = "upload", .fn = cmd_upload},   {.name = "infer", .fn = cmd_infer},
  {.name = "detect", .fn = cmd_detect},   {.name = "stats", .fn = cmd_stats},
  {.name = "metrics", .fn = cmd_metrics},
};

/* "--opt=value" or "--opt value"; NULL (and *bad set) when missing. */
static const char *optval(int argc, char **argv, int *i, const char *a, const char *name, bool *bad) {
  size_t n = strlen(name);
  if (strncmp(a, name, n)) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n]) return NULL;
  if (*i + 1 >= argc) { *bad = true; return NULL; }
  return argv[++*i];
}

int main(int argc, char **argv) {
  opts o = {.version = -1, .timeout = 60};
  const char *cmd = NULL;
  bool dashdash = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    bool bad = false;
    if (dashdash || a[0] != '-' || !a[1]) {
      if (!cmd) cmd = a;
      else if (o.n_pos < (int)(sizeof o.pos / sizeof o.pos[0])) o.pos[o.n_pos++] = argv[i];
      else return usage_err("too many arguments");
      continue;
    }
    if (!strcmp(a, "--")) dashdash = true;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    else if (!strcmp(a, "--version")) { printf("pivotctl %s\n", PACKAGE_VERSION); return 0; }
    else if (!strcmp(a, "--json")) o.json = true;
    else if (!strcmp(a, "--json-payload")) o.json_payload = true;
    else if ((v = optval(argc, argv, &i, a, "--url", &bad))) o.url = v;
    else if ((v = optval(argc, argv, &i, a, "--token", &bad))) o.token = v;
    else if ((v = optval(argc, argv, &i, a, "--config", &bad))) o.config = v;
    else if ((v = optval(argc, argv, &i, a, "--out", &bad)) || (v = optval(argc, argv, &i, a, "-o", &bad))) o.outdir = v;
    else if ((v = optval(argc, argv, &i, a, "--output", &bad))) {
      if (o.n_outputs == MAX_IO) return usage_err("at most %d --output", MAX_IO);
      o.outputs[o.n_outputs++] = v;
    } else if ((v = optval(argc, argv, &i, a, "--param", &bad))) {
      if (o.n_params == MAX_PARAMS || !strchr(v, '=')) return usage_err("--param wants KEY=VALUE (at most %d)", MAX_PARAMS);
      o.params[o.n_params++] = v;
    } else if ((v = optval(argc, argv, &i, a, "--timeout", &bad))) {
      char *end;
      o.timeout = strtod(v, &end);
      if (end == v || *end || !(o.timeout > 0) || o.timeout > 1e6) return usage_err("--timeout: '%s' is not a positive number of seconds", v);
    } else if ((v = optval(argc, argv, &i, a, "--model-version", &bad)) || (v = optval(argc, argv, &i, a, "-V", &bad))) {
      char *end;
      o.version = strtoll(v, &end, 10);
      if (end == v || *end || o.version < 0) return usage_err("--model-version: '%s' is not a version number", v);
    } else if (bad) return usage_err("%s needs a value", a);
    else return usage_err("unknown option '%s'", a);
    if (bad) return usage_err("%s needs a value", a);
  }
  if (!cmd) { usage(stderr); return PVC_EXIT_USAGE; }
  const command *k = NULL;
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(commands[i].name, cmd)) k = &commands[i];
  if (!k) return usage_err("unknown command '%s'", cmd);
  if (curl_global_init(CURL_GLOBAL_DEFAULT)) { fprintf(stderr, "pivotctl: libcurl failed to start\n"); return PVC_EXIT_CONNECT; }
  pvc_client c;
  if (pvc_init(&c, o.url, o.token, (long)(o.timeout * 1000))) { curl_global_cleanup(); return PVC_EXIT_USAGE; }
  int rc = k->fn(&c, &o);
  pvc_free(&c);
  curl_global_cleanup();
  return rc;
}
