/* HTTP and Open Inference Protocol helpers shared by pivotctl and
 * pivot-bench (see pivotctl-http.h). */
#include "pivotctl-http.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------- buffers */

void pvc_buf_add(pvc_buf *b, const void *p, size_t n) {
  if (b->oom) return;
  if (n > SIZE_MAX - b->len - 1) { b->oom = true; return; }
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) {
      if (cap > SIZE_MAX / 2) { b->oom = true; return; }
      cap *= 2;
    }
    char *q = realloc(b->p, cap);
    if (!q) { b->oom = true; return; }
    b->p = q;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

void pvc_buf_puts(pvc_buf *b, const char *s) { pvc_buf_add(b, s, strlen(s)); }

void pvc_buf_printf(pvc_buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) { b->oom = true; return; }
  if ((size_t)n < sizeof tmp) { pvc_buf_add(b, tmp, (size_t)n); return; }
  char *big = malloc((size_t)n + 1);
  if (!big) { b->oom = true; return; }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  pvc_buf_add(b, big, (size_t)n);
  free(big);
}

void pvc_buf_json_str(pvc_buf *b, const char *s) {
  pvc_buf_puts(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') pvc_buf_printf(b, "\\%c", ch);
    else if (ch < 0x20) pvc_buf_printf(b, "\\u%04x", ch);
    else pvc_buf_add(b, s, 1);
  }
  pvc_buf_puts(b, "\"");
}

/* ------------------------------------------------------------- client */

int pvc_init(pvc_client *c, const char *url, const char *token, long timeout_ms) {
  memset(c, 0, sizeof *c);
  if (!url || !*url) url = getenv("PIVOTD_URL");
  if (!url || !*url) url = "http://127.0.0.1:8000";
  if (!token) token = getenv("PIVOTD_TOKEN");
  /* A bare host:port is what people type; curl would guess http anyway,
   * but the base is also printed, so make it explicit. */
  size_t n = strlen(url);
  bool scheme = strstr(url, "://") != NULL;
  c->base = malloc(n + 8);
  if (!c->base) goto fail;
  snprintf(c->base, n + 8, "%s%s", scheme ? "" : "http://", url);
  n = strlen(c->base);
  while (n && c->base[n - 1] == '/') c->base[--n] = 0;
  if (token && *token && !(c->token = strdup(token))) goto fail_base;
  c->timeout_ms = timeout_ms;
  c->curl = curl_easy_init();
  if (!c->curl) goto fail_token;
  return 0;
fail_token:
  free(c->token);
fail_base:
  free(c->base);
fail:
  fprintf(stderr, "out of memory\n");
  return -1;
}

void pvc_free(pvc_client *c) {
  if (c->curl) curl_easy_cleanup(c->curl);
  free(c->base);
  free(c->token);
  memset(c, 0, sizeof *c);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  pvc_resp *r = ud;
  pvc_buf_add(&r->body, p, sz * n);
  return r->body.oom ? 0 : sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  pvc_resp *r = ud;
  size_t len = sz * n;
  static const char ihcl[] = "inference-header-content-length:";
  static const char ct[] = "content-type:";
  if (len > sizeof ihcl - 1 && !strncasecmp(p, ihcl, sizeof ihcl - 1)) {
    char tmp[32];
    size_t k = len - (sizeof ihcl - 1);
    if (k >= sizeof tmp) k = sizeof tmp - 1;
    memcpy(tmp, p + sizeof ihcl - 1, k);
    tmp[k] = 0;
    r->json_len = strtoll(tmp, NULL, 10);
  } else if (len > sizeof ct - 1 && !strncasecmp(p, ct, sizeof ct - 1)) {
    const char *v = p + sizeof ct - 1;
    size_t k = len - (sizeof ct - 1);
    while (k && (*v == ' ' || *v == '\t')) v++, k--;
    while (k && (v[k - 1] == '\r' || v[k - 1] == '\n' || v[k - 1] == ' ')) k--;
    if (k >= sizeof r->ctype) k = sizeof r->ctype - 1;
    memcpy(r->ctype, v, k);
    r->ctype[k] = 0;
  }
  return len;
}

int pvc_do(pvc_client *c, const char *method, const char *path, const char *ctype,
           const void *body, size_t len, pvc_resp *r) {
  return pvc_do_hdr(c, method, path, ctype, NULL, body, len, r);
}

int pvc_do_hdr(pvc_client *c, const char *method, const char *path, const char *ctype,
               const char *header, const void *body, size_t len, pvc_resp *r) {
  memset(r, 0, sizeof *r);
  r->json_len = -1;
  size_t ulen = strlen(c->base) + strlen(path) + 1;
  char *url = malloc(ulen);
  if (!url) { snprintf(c->err, sizeof c->err, "out of memory"); return -1; }
  snprintf(url, ulen, "%s%s", c->base, path);
  struct curl_slist *hdrs = NULL;
  char line[600];
  if (c->token) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", c->token);
    hdrs = curl_slist_append(hdrs, line);
  }
  if (ctype) {
    snprintf(line, sizeof line, "Content-Type: %s", ctype);
    hdrs = curl_slist_append(hdrs, line);
  }
  if (header) hdrs = curl_slist_append(hdrs, header);
  /* Without this curl sends "Expect: 100-continue" for large bodies and
   * waits for a go-ahead. */
  hdrs = curl_slist_append(hdrs, "Expect:");
  CURL *h = c->curl;
  curl_easy_reset(h);
  c->err[0] = 0;
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->err);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  /* Requests go to the URL given and nowhere else: no proxy from the
   * environment, no redirects. */
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  if (!strcmp(method, "GET")) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  }
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(hdrs);
  free(url);
  if (rc != CURLE_OK) {
    if (!c->err[0]) snprintf(c->err, sizeof c->err, "%s", curl_easy_strerror(rc));
    pvc_resp_free(r);
    return -1;
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  if (!r->body.p) pvc_buf_add(&r->body, "", 0);
  return 0;
}

void pvc_resp_free(pvc_resp *r) {
  free(r->body.p);
  memset(&r->body, 0, sizeof r->body);
}

cJSON *pvc_resp_json(const pvc_resp *r) {
  if (!r->body.p) return NULL;
  size_t n = r->body.len;
  if (r->json_len >= 0 && (unsigned long long)r->json_len <= n) n = (size_t)r->json_len;
  return cJSON_ParseWithLength(r->body.p, n);
}

const char *pvc_resp_error(const pvc_resp *r, char *buf, size_t len) {
  cJSON *j = pvc_resp_json(r);
  const cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
  if (cJSON_IsString(e)) {
    snprintf(buf, len, "%s", e->valuestring);
  } else {
    /* Not our JSON (a proxy, another server): show what came, one line. */
    size_t k = 0;
    for (size_t i = 0; r->body.p && i < r->body.len && k + 1 < len && k < 200; i++)
      buf[k++] = (r->body.p[i] == '\n' || r->body.p[i] == '\r') ? ' ' : r->body.p[i];
    buf[k] = 0;
    if (!k) snprintf(buf, len, "HTTP %ld", r->status);
  }
  cJSON_Delete(j);
  return buf;
}

int pvc_model_path(char *buf, size_t len, const char *model, long long version, const char *suffix) {
  char *esc = curl_easy_escape(NULL, model, 0);
  if (!esc) return -1;
  int n = version >= 0 ? snprintf(buf, len, "/v2/models/%s/versions/%lld%s", esc, version, suffix)
                       : snprintf(buf, len, "/v2/models/%s%s", esc, suffix);
  curl_free(esc);
  return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* ------------------------------------------------------------- tensors */

static void write_elem(pvc_buf *b, pv_dtype t, const void *p, size_t i) {
  switch (t) {
  case PV_F32: {
    float v = ((const float *)p)[i];
    if (isfinite(v)) pvc_buf_printf(b, "%.9g", v);
    else pvc_buf_puts(b, "null");
    break;
  }
  case PV_F64: {
    double v = ((const double *)p)[i];
    if (isfinite(v)) pvc_buf_printf(b, "%.17g", v);
    else pvc_buf_puts(b, "null");
    break;
  }
  case PV_I8: pvc_buf_printf(b, "%d", ((const int8_t *)p)[i]); break;
  case PV_I16: pvc_buf_printf(b, "%d", ((const int16_t *)p)[i]); break;
  case PV_I32: pvc_buf_printf(b, "%d", ((const int32_t *)p)[i]); break;
  case PV_I64: pvc_buf_printf(b, "%lld", (long long)((const int64_t *)p)[i]); break;
  case PV_U8: pvc_buf_printf(b, "%u", ((const uint8_t *)p)[i]); break;
  case PV_U16: pvc_buf_printf(b, "%u", ((const uint16_t *)p)[i]); break;
  case PV_U32: pvc_buf_printf(b, "%u", ((const uint32_t *)p)[i]); break;
  case PV_U64: pvc_buf_printf(b, "%llu", (unsigned long long)((const uint64_t *)p)[i]); break;
  case PV_BOOL: pvc_buf_puts(b, ((const uint8_t *)p)[i] ? "true" : "false"); break;
  default: pvc_buf_puts(b, "null"); break;
  }
}

int pvc_infer_body(const char *const *names, const pv_tensor *ts, int n, bool binary,
                   bool binary_out, pvc_buf *out, size_t *json_len) {
  pvc_buf_puts(out, "{\"inputs\":[");
  for (int i = 0; i < n; i++) {
    const pv_tensor *t = &ts[i];
    size_t nbytes = pv_tensor_nbytes(t);
    if (nbytes == SIZE_MAX || !pv_dtype_size(t->dtype))
      return pv_error(PV_EINVAL, "input '%s': unsupported datatype or size", names[i]);
    pvc_buf_puts(out, i ? ",{\"name\":" : "{\"name\":");
    pvc_buf_json_str(out, names[i]);
    pvc_buf_printf(out, ",\"datatype\":\"%s\",\"shape\":[", pv_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++)
      pvc_buf_printf(out, "%s%lld", d ? "," : "", (long long)t->dims[d]);
    if (binary) {
      pvc_buf_printf(out, "],\"parameters\":{\"binary_data_size\":%zu}}", nbytes);
      continue;
    }
    pvc_buf_puts(out, "],\"data\":[");
    int64_t numel = pv_tensor_numel(t);
    for (int64_t k = 0; k < numel; k++) {
      if (k) pvc_buf_puts(out, ",");
      write_elem(out, t->dtype, t->data, (size_t)k);
    }
    pvc_buf_puts(out, "]}");
  }
  pvc_buf_printf(out, "],\"parameters\":{\"binary_data_output\":%s}}", binary_out ? "true" : "false");
  *json_len = binary ? out->len : 0;
  if (binary)
    for (int i = 0; i < n; i++) pvc_buf_add(out, ts[i].data, pv_tensor_nbytes(&ts[i]));
  return out->oom ? pv_error(PV_ENOMEM, "infer request: out of memory") : 0;
}

/* Flatten a nested JSON array of numbers into t->data, in row-major order. */
static int read_data(const cJSON *a, pv_tensor *t, int64_t *k, int64_t numel) {
  const cJSON *e;
  cJSON_ArrayForEach(e, a) {
    if (cJSON_IsArray(e)) {
      int rc = read_data(e, t, k, numel);
      if (rc) return rc;
      continue;
    }
    if (*k >= numel) return pv_error(PV_ESHAPE, "more data than the shape holds");
    double v = cJSON_IsBool(e) ? (cJSON_IsTrue(e) ? 1 : 0) : cJSON_IsNumber(e) ? e->valuedouble : NAN;
    size_t i = (size_t)(*k)++;
    switch (t->dtype) {
    case PV_F32: ((float *)t->data)[i] = (float)v; break;
    case PV_F64: ((double *)t->data)[i] = v; break;
    case PV_I8: ((int8_t *)t->data)[i] = (int8_t)v; break;
    case PV_I16: ((int16_t *)t->data)[i] = (int16_t)v; break;
    case PV_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case PV_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case PV_U8: case PV_BOOL: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
    case PV_U16: ((uint16_t *)t->data)[i] = (uint16_t)v; break;
    case PV_U32: ((uint32_t *)t->data)[i] = (uint32_t)v; break;
    case PV_U64: ((uint64_t *)t->data)[i] = (uint64_t)v; break;
    default: return pv_error(PV_ETYPE, "unsupported datatype");
    }
  }
  return 0;
}

int pvc_infer_outputs(const pvc_resp *r, pv_tensor *t, char **names, int max) {
  cJSON *j = pvc_resp_json(r);
  if (!j) return pv_error(PV_EFORMAT, "the answer is not JSON");
  int n = 0, rc = 0;
  size_t off = r->json_len >= 0 ? (size_t)r->json_len : r->body.len;
  const cJSON *outs = cJSON_GetObjectItemCaseSensitive(j, "outputs"), *o;
  if (!cJSON_IsArray(outs)) { rc = pv_error(PV_EFORMAT, "the answer has no outputs array"); goto out; }
  cJSON_ArrayForEach(o, outs) {
    if (n == max) { rc = pv_error(PV_ERANGE, "more than %d outputs", max); goto out; }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(o, "datatype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(o, "shape");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    const cJSON *bsz = params ? cJSON_GetObjectItemCaseSensitive(params, "binary_data_size") : NULL;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    if (!cJSON_IsString(name) || !cJSON_IsString(dt) || !cJSON_IsArray(shape)) {
      rc = pv_error(PV_EFORMAT, "output %d lacks name, datatype or shape", n);
      goto out;
    }
    pv_tensor *x = &t[n];
    memset(x, 0, sizeof *x);
    x->dtype = pv_dtype_from_name(dt->valuestring);
    if (!pv_dtype_size(x->dtype)) {
      rc = pv_error(PV_ETYPE, "output '%s': unsupported datatype %s", name->valuestring, dt->valuestring);
      goto out;
    }
    int nd = cJSON_GetArraySize(shape);
    if (nd > PV_MAX_DIMS) { rc = pv_error(PV_ESHAPE, "output '%s': %d dims", name->valuestring, nd); goto out; }
    x->ndim = nd;
    for (int d = 0; d < nd; d++) {
      const cJSON *e = cJSON_GetArrayItem(shape, d);
      if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e15) {
        rc = pv_error(PV_ESHAPE, "output '%s': bad dim %d", name->valuestring, d);
        goto out;
      }
      x->dims[d] = (int64_t)e->valuedouble;
    }
    size_t nbytes = pv_tensor_nbytes(x);
    if (nbytes == SIZE_MAX) { rc = pv_error(PV_ERANGE, "output '%s': too large", name->valuestring); goto out; }
    if ((rc = pv_tensor_alloc(x))) goto out;
    if (!(names[n] = strdup(name->valuestring))) { pv_free(x->data); rc = pv_error(PV_ENOMEM, "out of memory"); goto out; }
    n++;
    if (cJSON_IsNumber(bsz)) {
      if ((double)nbytes != bsz->valuedouble || off > r->body.len || r->body.len - off < nbytes) {
        rc = pv_error(PV_EFORMAT, "output '%s': binary size %.0f does not match shape or body", names[n - 1], bsz->valuedouble);
        goto out;
      }
      memcpy(x->data, r->body.p + off, nbytes);
      off += nbytes;
    } else if (cJSON_IsArray(data)) {
      int64_t k = 0;
      if ((rc = read_data(data, x, &k, pv_tensor_numel(x)))) goto out;
      if (k != pv_tensor_numel(x)) {
        rc = pv_error(PV_ESHAPE, "output '%s': %lld values for %lld elements", names[n - 1], (long long)k, (long long)pv_tensor_numel(x));
        goto out;
      }
    } else {
      rc = pv_error(PV_EFORMAT, "output '%s' has neither data nor binary_data_size", names[n - 1]);
      goto out;
    }
  }
out:
  cJSON_Delete(j);
  if (rc) {
    for (int i = 0; i < n; i++) { pv_free(t[i].data); free(names[i]); }
    return rc;
  }
  return n;
}

int pvc_model_inputs(pvc_client *c, const char *model, long long version, char **names,
                     pv_tensor *shapes, int max) {
  char path[1024], msg[512];
  if (pvc_model_path(path, sizeof path, model, version, "")) return pv_error(PV_EINVAL, "model name too long");
  pvc_resp r;
  if (pvc_do(c, "GET", path, NULL, NULL, 0, &r)) return pv_error(PV_EIO, "%s: %s", c->base, c->err);
  if (r.status != 200) {
    int rc = pv_error(r.status == 404 ? PV_ENOTFOUND : PV_EINVAL, "%s", pvc_resp_error(&r, msg, sizeof msg));
    pvc_resp_free(&r);
    return rc;
  }
  cJSON *j = pvc_resp_json(&r);
  pvc_resp_free(&r);
  const cJSON *ins = j ? cJSON_GetObjectItemCaseSensitive(j, "inputs") : NULL, *in;
  int n = 0, rc = 0;
  if (!cJSON_IsArray(ins)) { rc = pv_error(PV_EFORMAT, "model metadata has no inputs"); goto out; }
  cJSON_ArrayForEach(in, ins) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(in, "name");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(in, "datatype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(in, "shape");
    if (n == max || !cJSON_IsString(name) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        cJSON_GetArraySize(shape) > PV_MAX_DIMS) {
      rc = pv_error(PV_EFORMAT, "model metadata: input %d is malformed or one too many", n);
      goto out;
    }
    memset(&shapes[n], 0, sizeof shapes[n]);
    shapes[n].dtype = pv_dtype_from_name(dt->valuestring);
    shapes[n].ndim = cJSON_GetArraySize(shape);
    for (int d = 0; d < shapes[n].ndim; d++)
      shapes[n].dims[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble;
    if (!(names[n] = strdup(name->valuestring))) { rc = pv_error(PV_ENOMEM, "out of memory"); goto out; }
    n++;
  }
out:
  cJSON_Delete(j);
  if (rc) {
    for (int i = 0; i < n; i++) free(names[i]);
    return rc;
  }
  return n;
}
