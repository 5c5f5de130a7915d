/* Infer requests: the Open Inference Protocol v2 body (JSON, or JSON plus
 * the binary tensor extension) parsed into typed input buffers, and the
 * response written back. cJSON reads only the small envelope: every "data"
 * array is cut out first and parsed straight into its buffer. */
#include "pivotd.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cJSON allocates every node, key and string on its own and frees them one
 * by one: for the ~200-byte envelope of a binary infer request that was a
 * quarter of the daemon's instructions per request. While an envelope is
 * parsed, cJSON takes memory from a per-thread arena instead, dropped as a
 * whole; anything past the arena, and every other use of cJSON, gets
 * malloc as before. */
#define ARENA_SIZE 16384
static _Thread_local _Alignas(16) char arena_buf[ARENA_SIZE];
static _Thread_local size_t arena_pos;
static _Thread_local bool arena_on;

static void *arena_malloc(size_t n) {
  if (arena_on) {
    size_t a = (arena_pos + 15) & ~(size_t)15;
    if (a <= ARENA_SIZE && n <= ARENA_SIZE - a) {
      arena_pos = a + n;
      return arena_buf + a;
    }
  }
  return malloc(n);
}

static void arena_free(void *p) {
  /* Arena memory of this thread: freed with the arena. No other thread
   * frees it, as each request's cJSON tree is deleted where it was made. */
  if ((uintptr_t)p - (uintptr_t)arena_buf < ARENA_SIZE) return;
  free(p);
}

/* Before main, so no thread is using cJSON while the hooks change. */
__attribute__((constructor)) static void arena_hooks(void) {
  cJSON_Hooks h = {.malloc_fn = arena_malloc, .free_fn = arena_free};
  cJSON_InitHooks(&h);
}

void pvd_req_free(pvd_req *r) {
  if (!r) return;
  for (int i = 0; i < r->n_in; i++)
    if (r->in_own) pv_free(r->in_own[i]);
  free(r->in_own);
  free(r->in);
  free(r->out_idx);
  free(r->out_binary);
  free(r->id);
  free(r->resp);
  if (r->ext_free) r->ext_free(r->ext);
  if (r->ver) pvd_version_release(r->ver);
  free(r);
}

void pvd_req_error(pvd_req *r, int status, int reason, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pvd_buf b = {0};
  pvd_buf_puts(&b, "{\"error\":");
  pvd_buf_json_str(&b, msg);
  pvd_buf_puts(&b, "}");
  free(r->resp);
  r->resp = b.oom ? NULL : b.p;
  r->resp_len = b.oom ? 0 : b.len;
  r->resp_json_len = 0;
  r->resp_type = "application/json";
  r->http_status = status;
  r->fail_reason = reason;
  if (r->ver) atomic_fetch_add(&r->ver->model->fails[reason], 1);
}

/* An array cut out of the JSON text before cJSON sees it. */
typedef struct cut {
  const char *start, *end; /* in the original text */
} cut;

static const char *skip_string(const char *p, const char *end) {
  p++; /* opening quote */
  while (p < end) {
    if (*p == '\\') { p += 2; continue; }
    if (*p == '"') return p + 1;
    p++;
  }
  return NULL;
}

static const char *skip_array(const char *p, const char *end) {
  /* Fast path for a flat number array: memchr runs far faster than the
   * character loop below on the thousands of bytes of a tensor. */
  const char *q = memchr(p + 1, ']', (size_t)(end - p - 1));
  if (q && !memchr(p + 1, '[', (size_t)(q - p - 1)) && !memchr(p + 1, '"', (size_t)(q - p - 1)))
    return q + 1;
  int depth = 0;
  while (p < end) {
    char c = *p;
    if (c == '"') { p = skip_string(p, end); if (!p) return NULL; continue; }
    if (c == '[') depth++;
    else if (c == ']' && --depth == 0) return p + 1;
    p++;
  }
  return NULL;
}

/* Copy the JSON text into `w` with every `"data": [ ... ]` array replaced
 * by the index of its cut, so cJSON parses only the small envelope (not
 * kilobytes of numbers, nor padding). Arrays too short to hold their index
 * are left for cJSON. w needs len + 1 bytes; *wlen gets the copy's length. */
static int cut_data_arrays(const char *txt, size_t len, char *w, size_t *wlen,
                           cut **cuts, int *n_cuts) {
  int cap = 0;
  *cuts = NULL;
  *n_cuts = 0;
  const char *end = txt + len, *p = txt, *copied = txt;
  char *o = w;
  while (p < end) {
    if (*p != '"') {
      const char *nq = memchr(p, '"', (size_t)(end - p));
      if (!nq) break;
      p = nq;
    }
    const char *s = p;
    const char *q = skip_string(p, end);
    if (!q) break; /* cJSON will report it */
    p = q;
    if (q - s != 6 || memcmp(s, "\"data\"", 6)) continue;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p != ':') continue;
    p++;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p != '[') continue;
    const char *ae = skip_array(p, end);
    if (!ae) break;
    char idx[16];
    int il = snprintf(idx, sizeof idx, "%d", *n_cuts);
    if (il > ae - p) { p = ae; continue; }
    if (*n_cuts == cap) {
      cap = cap ? cap * 2 : 8;
      cut *nc = realloc(*cuts, (size_t)cap * sizeof *nc);
      if (!nc) return PV_ENOMEM;
      *cuts = nc;
    }
    (*cuts)[*n_cuts].start = p;
    (*cuts)[*n_cuts].end = ae;
    (*n_cuts)++;
    memcpy(o, copied, (size_t)(p - copied));
    o += p - copied;
    memcpy(o, idx, (size_t)il);
    o += il;
    copied = p = ae;
  }
  memcpy(o, copied, (size_t)(end - copied));
  o += end - copied;
  *o = 0;
  *wlen = (size_t)(o - w);
  return 0;
}

static const char *shape_str(const int64_t *d, int n, char *buf, size_t len) {
  size_t o = 0;
  o += (size_t)snprintf(buf + o, len - o, "[");
  for (int i = 0; i < n && o < len; i++)
    o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)d[i]);
  if (o < len) snprintf(buf + o, len - o, "]");
  return buf;
}

/* Raw tensor bytes from the body: used where they lie when 64-byte
 * aligned (http.c places the first binary input so), else copied into an
 * aligned buffer of input k. NULL when out of memory. */
static void *in_place(pvd_req *r, int k, const char *src, size_t n) {
  if (((uintptr_t)src & 63) == 0 && n > 0) return (void *)src;
  r->in_own[k] = pv_aligned_alloc(n ? n : 1);
  if (r->in_own[k]) memcpy(r->in_own[k], src, n);
  return r->in_own[k];
}

#define FAIL(st, ...) do { snprintf(msg, msglen, __VA_ARGS__); status = (st); goto out; } while (0)

int pvd_infer_parse(pvd_req *r, const char *body, size_t len, long hdr_len,
                    char *msg, size_t msglen) {
  pv_model *pm = r->ver->pm;
  int n_in = pv_model_n_inputs(pm), n_out = pv_model_n_outputs(pm);
  int status = 0;
  char *w = NULL;
  cut *cuts = NULL;
  int n_cuts = 0;
  cJSON *root = NULL;
  bool *seen = NULL;

  r->n_in = n_in;
  r->in = calloc((size_t)n_in, sizeof *r->in);
  r->in_own = calloc((size_t)n_in, sizeof *r->in_own);
  r->out_idx = calloc((size_t)(n_out ? n_out : 1), sizeof *r->out_idx);
  r->out_binary = calloc((size_t)(n_out ? n_out : 1), sizeof *r->out_binary);
  seen = calloc((size_t)(n_in ? n_in : 1), sizeof *seen);
  if (!r->in || !r->in_own || !r->out_idx || !r->out_binary || !seen)
    FAIL(500, "out of memory");

  if (hdr_len == 0) {
    /* The whole body is the one input, raw; its batch follows the size. */
    if (n_in != 1) FAIL(400, "a body without JSON header needs a model with one input, this one has %d", n_in);
    const pv_value *mv = pv_model_input(pm, 0);
    pv_tensor *t = &r->in[0];
    t->dtype = mv->dtype;
    t->ndim = mv->ndim;
    int64_t per = (int64_t)pv_dtype_size(mv->dtype);
    int bdim = -1;
    for (int d = 0; d < mv->ndim; d++) {
      if (mv->dims[d] < 0) { if (bdim >= 0) FAIL(400, "input '%s' has more than one variable dim: send a JSON header", mv->name); bdim = d; }
      else per *= mv->dims[d];
      t->dims[d] = mv->dims[d];
    }
    if (per <= 0 || len % (size_t)per) FAIL(400, "raw body of %zu bytes is not a whole number of '%s' tensors", len, mv->name);
    if (bdim >= 0) t->dims[bdim] = (int64_t)(len / (size_t)per);
    else if (len != (size_t)per) FAIL(400, "raw body of %zu bytes, input '%s' needs %lld", len, mv->name, (long long)per);
    t->data = in_place(r, 0, body, len);
    if (!t->data) FAIL(500, "out of memory");
    for (int o = 0; o < n_out; o++) r->out_idx[o] = o;
    r->n_out = n_out;
    goto out;
  }

  size_t jlen = hdr_len > 0 ? (size_t)hdr_len : len;
  if (hdr_len > 0 && (size_t)hdr_len > len)
    FAIL(400, "Inference-Header-Content-Length %ld is larger than the body (%zu bytes)", hdr_len, len);
  const char *bin = body + jlen, *bin_end = body + len;
  w = malloc(jlen + 1);
  if (!w) FAIL(500, "out of memory");
  size_t wlen = 0;
  if (cut_data_arrays(body, jlen, w, &wlen, &cuts, &n_cuts) < 0) FAIL(500, "out of memory");
  arena_pos = 0;
  arena_on = true;
  root = cJSON_ParseWithLength(w, wlen);
  if (!root) FAIL(400, "malformed JSON in the request body");
  if (!cJSON_IsObject(root)) FAIL(400, "the request body must be a JSON object");
  cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "id");
  if (id) {
    if (!cJSON_IsString(id)) FAIL(400, "\"id\" must be a string");
    r->id = strdup(id->valuestring);
  }
  bool bin_out_all = false;
  cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "parameters");
  if (params && cJSON_IsObject(params)) {
    cJSON *bo = cJSON_GetObjectItemCaseSensitive(params, "binary_data_output");
    if (bo && !cJSON_IsBool(bo)) FAIL(400, "parameters.binary_data_output must be a boolean");
    bin_out_all = cJSON_IsTrue(bo);
  }
  cJSON *inputs = cJSON_GetObjectItemCaseSensitive(root, "inputs");
  if (!cJSON_IsArray(inputs)) FAIL(400, "\"inputs\" must be an array");
  cJSON *it;
  cJSON_ArrayForEach(it, inputs) {
    cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
    if (!cJSON_IsString(name)) FAIL(400, "each input needs a string \"name\"");
    int k = -1;
    for (int i = 0; i < n_in; i++)
      if (!strcmp(pv_model_input(pm, i)->name, name->valuestring)) { k = i; break; }
    if (k < 0) FAIL(400, "unknown input '%s' for model '%s'", name->valuestring, r->ver->model->name);
    if (seen[k]) FAIL(400, "input '%s' given twice", name->valuestring);
    seen[k] = true;
    const pv_value *mv = pv_model_input(pm, k);
    cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "datatype");
    if (!cJSON_IsString(dt)) FAIL(400, "input '%s' needs a string \"datatype\"", mv->name);
    pv_dtype t = pv_dtype_from_name(dt->valuestring);
    if (t != mv->dtype)
      FAIL(400, "input '%s': datatype %s given, the model expects %s", mv->name, dt->valuestring, pv_dtype_name(mv->dtype));
    cJSON *shape = cJSON_GetObjectItemCaseSensitive(it, "shape");
    if (!cJSON_IsArray(shape)) FAIL(400, "input '%s' needs a \"shape\" array", mv->name);
    pv_tensor *ten = &r->in[k];
    ten->dtype = t;
    ten->ndim = 0;
    cJSON *d;
    cJSON_ArrayForEach(d, shape) {
      if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 9.0e15 ||
          d->valuedouble != (double)(int64_t)d->valuedouble)
        FAIL(400, "input '%s': shape must hold non-negative integers", mv->name);
      if (ten->ndim >= PV_MAX_DIMS) FAIL(400, "input '%s': more than %d dims", mv->name, PV_MAX_DIMS);
      ten->dims[ten->ndim++] = (int64_t)d->valuedouble;
    }
    bool ok = ten->ndim == mv->ndim;
    for (int i = 0; ok && i < mv->ndim; i++)
      if (mv->dims[i] >= 0 && mv->dims[i] != ten->dims[i]) ok = false;
    if (!ok) {
      char a[128], b[128];
      FAIL(400, "input '%s': shape %s given, the model expects %s (-1 = any)", mv->name,
           shape_str(ten->dims, ten->ndim, a, sizeof a), shape_str(mv->dims, mv->ndim, b, sizeof b));
    }
    size_t nbytes = pv_tensor_nbytes(ten);
    if (nbytes == SIZE_MAX || nbytes > ((size_t)1 << 40)) FAIL(400, "input '%s': shape too large", mv->name);
    size_t numel = (size_t)pv_tensor_numel(ten);
    cJSON *ip = cJSON_GetObjectItemCaseSensitive(it, "parameters");
    cJSON *bds = ip ? cJSON_GetObjectItemCaseSensitive(ip, "binary_data_size") : NULL;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(it, "data");
    if (bds) {
      if (!cJSON_IsNumber(bds) || !(bds->valuedouble >= 0 && bds->valuedouble <= 9.0e15)) FAIL(400, "input '%s': binary_data_size must be a non-negative integer", mv->name);
      size_t sz = (size_t)bds->valuedouble;
      if (sz != nbytes) FAIL(400, "input '%s': binary_data_size %zu, shape and datatype need %zu bytes", mv->name, sz, nbytes);
      if ((size_t)(bin_end - bin) < sz) FAIL(400, "input '%s': the body holds %zu binary bytes, %zu needed", mv->name, (size_t)(bin_end - bin), sz);
      ten->data = in_place(r, k, bin, sz);
      if (!ten->data) FAIL(500, "out of memory");
      bin += sz;
    } else {
      if (!data) FAIL(400, "input '%s' has neither \"data\" nor binary_data_size", mv->name);
      /* A JSON element takes at least 2 bytes: bounds the allocation. */
      if (numel > len) FAIL(400, "input '%s': shape holds %zu elements, the body cannot", mv->name, numel);
      r->in_own[k] = pv_aligned_alloc(nbytes ? nbytes : 1);
      if (!r->in_own[k]) FAIL(500, "out of memory");
      size_t got = 0;
      int rc;
      if (cJSON_IsNumber(data) && data->valuedouble >= 0 && data->valuedouble < n_cuts &&
          !cJSON_IsArray(data)) {
        const cut *c = &cuts[(int)data->valuedouble];
        const char *p = c->start;
        rc = pvd_json_parse_data(&p, c->end, t, r->in_own[k], numel, &got);
      } else if (cJSON_IsArray(data)) {
        /* Short arrays cJSON kept: print and rescan keeps one code path. */
        char *txt = cJSON_PrintUnformatted(data);
        if (!txt) FAIL(500, "out of memory");
        const char *p = txt;
        rc = pvd_json_parse_data(&p, txt + strlen(txt), t, r->in_own[k], numel, &got);
        cJSON_free(txt);
      } else {
        FAIL(400, "input '%s': \"data\" must be an array", mv->name);
      }
      if (rc) FAIL(400, "input '%s': %s", mv->name, pv_errmsg());
      if (got != numel) FAIL(400, "input '%s': \"data\" has %zu elements, shape needs %zu", mv->name, got, numel);
      ten->data = r->in_own[k];
    }
  }
  for (int i = 0; i < n_in; i++)
    if (!seen[i]) FAIL(400, "missing input '%s'", pv_model_input(pm, i)->name);

  cJSON *outs = cJSON_GetObjectItemCaseSensitive(root, "outputs");
  if (outs) {
    if (!cJSON_IsArray(outs)) FAIL(400, "\"outputs\" must be an array");
    cJSON_ArrayForEach(it, outs) {
      cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
      if (!cJSON_IsString(name)) FAIL(400, "each requested output needs a string \"name\"");
      int k = -1;
      for (int o = 0; o < n_out; o++)
        if (!strcmp(pv_model_output(pm, o)->name, name->valuestring)) { k = o; break; }
      if (k < 0) FAIL(400, "unknown output '%s' for model '%s'", name->valuestring, r->ver->model->name);
      if (r->n_out >= n_out) FAIL(400, "output '%s' requested twice", name->valuestring);
      bool b = bin_out_all;
      cJSON *op = cJSON_GetObjectItemCaseSensitive(it, "parameters");
      cJSON *bd = op ? cJSON_GetObjectItemCaseSensitive(op, "binary_data") : NULL;
      if (bd) {
        if (!cJSON_IsBool(bd)) FAIL(400, "output '%s': binary_data must be a boolean", name->valuestring);
        b = cJSON_IsTrue(bd);
      }
      r->out_idx[r->n_out] = k;
      r->out_binary[r->n_out] = b;
      r->n_out++;
    }
  } else {
    for (int o = 0; o < n_out; o++) {
      r->out_idx[o] = o;
      r->out_binary[o] = bin_out_all;
    }
    r->n_out = n_out;
  }
  for (int o = 0; o < r->n_out; o++) r->binary_any |= r->out_binary[o];

out:
  cJSON_Delete(root); /* walks the tree; arena nodes cost no free */
  arena_on = false;
  free(cuts);
  free(w);
  free(seen);
  return status;
}

void pvd_infer_respond(pvd_req *r, const pv_tensor *outs) {
  pvd_buf b = {0};
  /* One allocation for the envelope and binary outputs; JSON data
   * reserves its own worst case when it is written. */
  size_t est = 256 + strlen(r->ver->model->name) + (r->id ? 2 * strlen(r->id) : 0);
  for (int i = 0; i < r->n_out; i++) {
    const pv_tensor *t = &outs[r->out_idx[i]];
    est += 128 + strlen(pv_model_output(r->ver->pm, r->out_idx[i])->name) + 24 * (size_t)t->ndim;
    if (r->out_binary[i]) est += pv_tensor_nbytes(t);
  }
  pvd_buf_reserve(&b, est);
  pvd_buf_puts(&b, "{\"model_name\":");
  pvd_buf_json_str(&b, r->ver->model->name);
  pvd_buf_puts(&b, ",\"model_version\":\"");
  pvd_buf_i64(&b, r->ver->version);
  pvd_buf_puts(&b, "\"");
  if (r->id) {
    pvd_buf_puts(&b, ",\"id\":");
    pvd_buf_json_str(&b, r->id);
  }
  pvd_buf_puts(&b, ",\"outputs\":[");
  for (int i = 0; i < r->n_out; i++) {
    const pv_tensor *t = &outs[r->out_idx[i]];
    if (i) pvd_buf_puts(&b, ",");
    pvd_buf_puts(&b, "{\"name\":");
    pvd_buf_json_str(&b, pv_model_output(r->ver->pm, r->out_idx[i])->name);
    pvd_buf_puts(&b, ",\"datatype\":\"");
    pvd_buf_puts(&b, pv_dtype_name(t->dtype));
    pvd_buf_puts(&b, "\",\"shape\":[");
    for (int d = 0; d < t->ndim; d++) {
      if (d) pvd_buf_puts(&b, ",");
      pvd_buf_i64(&b, t->dims[d]);
    }
    pvd_buf_puts(&b, "]");
    if (r->out_binary[i]) {
      pvd_buf_puts(&b, ",\"parameters\":{\"binary_data_size\":");
      pvd_buf_i64(&b, (int64_t)pv_tensor_nbytes(t));
      pvd_buf_puts(&b, "}}");
    } else {
      pvd_buf_puts(&b, ",\"data\":");
      pvd_json_write_data(&b, t);
      pvd_buf_puts(&b, "}");
    }
  }
  pvd_buf_puts(&b, "]}");
  size_t json_len = b.len;
  for (int i = 0; i < r->n_out; i++)
    if (r->out_binary[i]) {
      const pv_tensor *t = &outs[r->out_idx[i]];
      pvd_buf_put(&b, t->data, pv_tensor_nbytes(t));
    }
  if (b.oom) {
    free(b.p);
    pvd_req_error(r, 500, PVD_FAIL_INTERNAL, "out of memory writing the response");
    return;
  }
  free(r->resp);
  r->resp = b.p;
  r->resp_len = b.len;
  r->resp_json_len = r->binary_any ? json_len : 0;
  r->resp_type = r->binary_any ? "application/octet-stream" : "application/json";
  r->http_status = 200;
}
