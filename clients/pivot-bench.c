/* pivot-bench: a load generator for pivotd in the manner of Triton's
 * perf_analyzer. It keeps N requests in flight (a concurrency sweep) or
 * sends at a fixed rate, warms up, then measures windows until the last
 * three agree within 10%, and reports client percentiles next to the
 * server's own queue/compute split taken from the statistics endpoint.
 * Requests go only to the URL given. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "pivot-bench.h"

#define MAX_IO 32
#define MAX_LEVELS 256
#define STABLE_WINDOWS 3

typedef struct target {
  char name[256];
  long long version; /* -1: latest */
  pvc_buf body;      /* the request, shared by every transfer */
  size_t json_len;   /* binary: length of the JSON head */
  struct curl_slist *hdrs;
  char path[1024];
} target;

typedef struct bench {
  pvc_client ctl;   /* metadata and stats, off the measured path */
  const char *url, *token, *csv, *json_out;
  const char *inputs[MAX_IO];
  int n_inputs;
  bool binary, rate_mode, tty, quiet;
  double lo, hi, step; /* the sweep, of concurrency or rate */
  double window_s, warmup_s, stability;
  int max_windows, max_inflight, batch;
  unsigned seed;
} bench;

typedef struct slot {
  CURL *h;
  double t0;
  bool busy;
  bool ready; /* options set */
  char err[256]; /* start of an error answer */
  size_t err_len;
} slot;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("pivot-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  return code;
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: pivot-bench [OPTIONS] MODEL[:VERSION]\n"
    "  Sends infer requests to pivotd and reports throughput, client latency\n"
    "  percentiles and the server's queue/compute split per level.\n"
    "  --url URL              server (default $PIVOTD_URL or http://127.0.0.1:8000)\n"
    "  --token TOKEN          bearer token (default $PIVOTD_TOKEN)\n"
    "  --concurrency A[:B[:S]]  requests kept in flight, swept A..B by S (default 1)\n"
    "  --rate A[:B[:S]]       requests per second instead (open loop)\n"
    "  --max-inflight N       rate mode: most outstanding requests (default 256)\n"
    "  --window S             measurement window in seconds (default 5)\n"
    "  --max-windows N        give up on stability after N windows (default 10)\n"
    "  --stability P          windows agree within P percent (default 10)\n"
    "  --warmup S             seconds of load before measuring (default 1)\n"
    "  --binary | --json-payload  binary tensor extension (default) or JSON numbers\n"
    "  --input [NAME=]FILE.npy  input data (repeatable); default random data\n"
    "                         of the model's shape\n"
    "  --batch N              size of a -1 (batch) dim for random inputs (default 1)\n"
    "  --compare MODEL2[:V]   run the same sweep on MODEL2 and print the ratios\n"
    "  --csv FILE, --json FILE  write the results\n"
    "  --quiet                no progress line\n"
    "Exit status: 0 ok, 1 the server refused, 2 usage error, 3 cannot connect.\n");
}

/* "A", "A:B" or "A:B:S" with 0 < A <= B, S > 0. */
static int parse_sweep(const char *s, bench *b) {
  char *end;
  b->lo = strtod(s, &end);
  b->hi = b->lo;
  b->step = 1;
  if (*end == ':') {
    b->hi = strtod(end + 1, &end);
    if (*end == ':') b->step = strtod(end + 1, &end);
  }
  if (*end || !(b->lo > 0) || !(b->hi >= b->lo) || !(b->step > 0) || b->hi > 1e7 ||
      (b->hi - b->lo) / b->step >= MAX_LEVELS)
    return -1;
  return 0;
}

/* "name" or "name:version". */
static int parse_target(const char *s, target *t) {
  memset(t, 0, sizeof *t);
  t->version = -1;
  const char *colon = strrchr(s, ':');
  size_t n = colon ? (size_t)(colon - s) : strlen(s);
  if (!n || n >= sizeof t->name) return -1;
  memcpy(t->name, s, n);
  if (colon) {
    char *end;
    t->version = strtoll(colon + 1, &end, 10);
    if (end == colon + 1 || *end || t->version < 0) return -1;
  }
  return 0;
}

static void fill_random(pv_tensor *t, unsigned *seed) {
  int64_t n = pv_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    int r = rand_r(seed);
    switch (t->dtype) {
    case PV_F32: ((float *)t->data)[i] = (float)r / (float)RAND_MAX; break;
    case PV_F64: ((double *)t->data)[i] = (double)r / RAND_MAX; break;
    case PV_BOOL: ((uint8_t *)t->data)[i] = r & 1; break;
    default: {
      /* Small non-negative integers suit every integer type and the
       * index-like inputs (token ids, classes) such models take. */
      size_t es = pv_dtype_size(t->dtype);
      int64_t v = r % 10;
      memcpy((char *)t->data + (size_t)i * es, &v, es); /* little-endian */
    }
    }
  }
}

/* Build t's request body from .npy files or random data of its shape. */
static int prepare(bench *b, target *t) {
  char *names[MAX_IO] = {0}, *in_names[MAX_IO] = {0};
  pv_tensor meta[MAX_IO], in[MAX_IO];
  int n_in = 0, rc = 0;
  int n_meta = pvc_model_inputs(&b->ctl, t->name, t->version, names, meta, MAX_IO);
  if (n_meta < 0)
    return fail(n_meta == PV_EIO ? PVC_EXIT_CONNECT : PVC_EXIT_REFUSED, "%s: %s", t->name, pv_errmsg());
  if (b->n_inputs > n_meta) { rc = fail(PVC_EXIT_USAGE, "%d inputs for a model with %d", b->n_inputs, n_meta); goto out; }
  for (int i = 0; i < n_meta; i++) {
    memset(&in[i], 0, sizeof in[i]);
    const char *file = NULL;
    for (int k = 0; k < b->n_inputs; k++) {
      const char *eq = strchr(b->inputs[k], '=');
      if (eq ? (strlen(names[i]) == (size_t)(eq - b->inputs[k]) && !strncmp(b->inputs[k], names[i], (size_t)(eq - b->inputs[k])))
             : k == i)
        file = eq ? eq + 1 : b->inputs[k];
    }
    in_names[i] = names[i];
    if (file) {
      if (pv_npy_read(file, &in[i])) { rc = fail(PVC_EXIT_USAGE, "%s: %s", file, pv_errmsg()); goto out; }
      n_in++;
      continue;
    }
    in[i] = meta[i];
    in[i].data = NULL;
    for (int d = 0; d < in[i].ndim; d++) {
      if (in[i].dims[d] >= 0) continue;
      if (d) { rc = fail(PVC_EXIT_USAGE, "input '%s' has a variable dim %d: give it as --input %s=FILE.npy", names[i], d, names[i]); goto out; }
      in[i].dims[d] = b->batch;
    }
    if (!pv_dtype_size(in[i].dtype)) { rc = fail(PVC_EXIT_USAGE, "input '%s': unsupported datatype", names[i]); goto out; }
    if (pv_tensor_nbytes(&in[i]) > ((size_t)1 << 30) || pv_tensor_alloc(&in[i])) {
      rc = fail(PVC_EXIT_USAGE, "input '%s': too large", names[i]);
      goto out;
    }
    n_in++;
    fill_random(&in[i], &b->seed);
  }
  if (pvc_infer_body((const char *const *)in_names, in, n_in, b->binary, false, &t->body, &t->json_len)) {
    rc = fail(PVC_EXIT_USAGE, "%s", pv_errmsg());
    goto out;
  }
  char line[600];
  t->hdrs = curl_slist_append(NULL, b->binary ? "Content-Type: application/octet-stream" : "Content-Type: application/json");
  if (b->binary) {
    snprintf(line, sizeof line, "Inference-Header-Content-Length: %zu", t->json_len);
    t->hdrs = curl_slist_append(t->hdrs, line);
  }
  if (b->ctl.token) {
    snprintf(line, sizeof line, "Authorization: Bearer %s", b->ctl.token);
    t->hdrs = curl_slist_append(t->hdrs, line);
  }
  t->hdrs = curl_slist_append(t->hdrs, "Expect:");
  if (!t->hdrs) { rc = fail(PVC_EXIT_USAGE, "out of memory"); goto out; }
  pvc_model_path(t->path, sizeof t->path, t->name, t->version, "/infer");
out:
  for (int i = 0; i < n_in; i++) pv_free(in[i].data);
  for (int i = 0; i < n_meta; i++) free(names[i]);
  return rc;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  slot *s = ud;
  size_t len = sz * n, room = sizeof s->err - 1 - s->err_len;
  /* Only an error's text is kept; a good answer's bytes are just read. */
  if (room) {
    size_t k = len < room ? len : room;
    memcpy(s->err + s->err_len, p, k);
    s->err_len += k;
    s->err[s->err_len] = 0;
  }
  return len;
}

typedef struct level {
  bench *b;
  target *t;
  CURLM *multi;
  slot *slots;
  int n_slots, busy;
  double interval, next_send; /* rate mode */
  double late_at;             /* the send last counted as late */
  char full_url[2048];
  char last_error[300];
  long last_status;
} level;

static int start(level *L, slot *s) {
  CURL *h = s->h;
  /* Options are set once per handle: a finished transfer keeps them, and
   * re-adding the handle reuses its connection. */
  if (!s->ready) {
    s->ready = true;
    curl_easy_setopt(h, CURLOPT_URL, L->full_url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, L->t->hdrs);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, L->t->body.p);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)L->t->body.len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(h, CURLOPT_PRIVATE, s);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
  }
  s->err_len = 0;
  s->err[0] = 0;
  s->t0 = now_s();
  s->busy = true;
  L->busy++;
  return curl_multi_add_handle(L->multi, h) == CURLM_OK ? 0 : -1;
}

/* Run the loop until `until` (or, with until < 0, until nothing is in
 * flight), sending only when `send`; completed requests go to samples. */
static int drive(level *L, double until, bool send, pvb_samples *samples, long long *ok, long long *errs,
                 long long *delayed) {
  bench *b = L->b;
  for (;;) {
    double t = now_s();
    if (until >= 0 ? t >= until : L->busy == 0) break;
    if (send) {
      if (!b->rate_mode) {
        for (int i = 0; i < L->n_slots; i++)
          if (!L->slots[i].busy && start(L, &L->slots[i])) return -1;
      } else {
        while (L->next_send <= t) {
          slot *free_slot = NULL;
          for (int i = 0; i < L->n_slots && !free_slot; i++)
            if (!L->slots[i].busy) free_slot = &L->slots[i];
          if (!free_slot) {
            /* Count each scheduled send once, however long it waits. */
            if (delayed && L->late_at != L->next_send) (*delayed)++;
            L->late_at = L->next_send;
            break;
          }
          if (start(L, free_slot)) return -1;
          L->next_send += L->interval;
        }
      }
    }
    int running;
    curl_multi_perform(L->multi, &running);
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(L->multi, &left))) {
      if (m->msg != CURLMSG_DONE) continue;
      slot *s;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
      double lat_us = (now_s() - s->t0) * 1e6;
      long status = 0;
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (m->data.result == CURLE_OK && status == 200) {
        if (samples && pvb_samples_add(samples, lat_us)) return -1;
        if (ok) (*ok)++;
      } else {
        if (errs) (*errs)++;
        L->last_status = m->data.result == CURLE_OK ? status : -1;
        if (m->data.result != CURLE_OK) snprintf(L->last_error, sizeof L->last_error, "%s", curl_easy_strerror(m->data.result));
        else {
          pvc_resp fake = {.status = status, .body = {.p = s->err, .len = s->err_len}, .json_len = -1};
          pvc_resp_error(&fake, L->last_error, sizeof L->last_error);
        }
      }
      curl_multi_remove_handle(L->multi, m->easy_handle);
      s->busy = false;
      L->busy--;
    }
    /* Sleep in poll until a socket is ready, the next send or the end of
     * the window, whichever is first. */
    double wake = until >= 0 ? until : t + 0.05;
    if (send && b->rate_mode && L->next_send < wake) wake = L->next_send;
    if (send && !b->rate_mode && L->busy < L->n_slots) wake = t;
    int ms = (int)((wake - now_s()) * 1e3);
    if (ms > 0) curl_multi_poll(L->multi, NULL, 0, ms > 100 ? 100 : ms, NULL);
  }
  return 0;
}

static bool within(const double *x, int n, double pct) {
  double mean = 0;
  for (int i = 0; i < n; i++) mean += x[i] / n;
  if (!(mean > 0)) return false;
  for (int i = 0; i < n; i++)
    if (fabs(x[i] - mean) / mean > pct / 100.0) return false;
  return true;
}

static int run_level(bench *b, target *t, double lvl, pvb_result *res) {
  level L = {.b = b, .t = t};
  int rc = 0, n_w = 0;
  memset(res, 0, sizeof *res);
  _Static_assert(sizeof res->model == sizeof t->name, "model name sizes");
  memcpy(res->model, t->name, sizeof res->model);
  res->version = t->version;
  if (b->rate_mode) { res->rate = lvl; L.n_slots = b->max_inflight; L.interval = 1.0 / lvl; }
  else { res->concurrency = (int)lvl; L.n_slots = (int)lvl; }
  snprintf(L.full_url, sizeof L.full_url, "%s%s", b->ctl.base, t->path);
  pvb_samples win[STABLE_WINDOWS] = {{0}};
  double thr[64], mean_lat[64];
  long long oks[64] = {0}, errs[64] = {0};
  cJSON *snaps[65] = {0};
  if (!(L.multi = curl_multi_init()) || !(L.slots = calloc((size_t)L.n_slots, sizeof *L.slots))) {
    rc = fail(PVC_EXIT_USAGE, "out of memory");
    goto out;
  }
  for (int i = 0; i < L.n_slots; i++)
    if (!(L.slots[i].h = curl_easy_init())) { rc = fail(PVC_EXIT_USAGE, "out of memory"); goto out; }
  L.next_send = now_s();
  long long w_ok = 0, w_err = 0, delayed = 0;
  if (drive(&L, now_s() + b->warmup_s, true, NULL, &w_ok, &w_err, NULL)) { rc = fail(PVC_EXIT_USAGE, "out of memory"); goto out; }
  if (w_err && !w_ok) {
    rc = fail(L.last_status < 0 ? PVC_EXIT_CONNECT : PVC_EXIT_REFUSED, "%s: every warm-up request failed: %s",
              t->name, L.last_error);
    goto out;
  }
  pvb_server_fetch(&b->ctl, t->name, t->version, &snaps[0]);
  int max_w = b->max_windows < 64 ? b->max_windows : 64;
  for (n_w = 0; n_w < max_w; n_w++) {
    pvb_samples *s = &win[n_w % STABLE_WINDOWS];
    s->n = 0;
    double t0 = now_s();
    L.next_send = t0;
    if (drive(&L, t0 + b->window_s, true, s, &oks[n_w], &errs[n_w], &delayed)) { rc = fail(PVC_EXIT_USAGE, "out of memory"); goto out; }
    double dt = now_s() - t0;
    pvb_server_fetch(&b->ctl, t->name, t->version, &snaps[n_w + 1]);
    thr[n_w] = oks[n_w] / dt;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    mean_lat[n_w] = s->n ? sum / (double)s->n : 0;
    if (!oks[n_w] && errs[n_w]) {
      rc = fail(L.last_status < 0 ? PVC_EXIT_CONNECT : PVC_EXIT_REFUSED, "%s: every request failed: %s", t->name, L.last_error);
      goto out;
    }
    if (b->tty && !b->quiet) {
      fprintf(stderr, "\r\033[K%s %s %g: window %d/%d: %.1f infer/s, mean %.0f us", t->name,
              b->rate_mode ? "rate" : "concurrency", lvl, n_w + 1, b->max_windows, thr[n_w], mean_lat[n_w]);
      fflush(stderr);
    }
    if (n_w + 1 >= STABLE_WINDOWS && within(thr + n_w + 1 - STABLE_WINDOWS, STABLE_WINDOWS, b->stability) &&
        within(mean_lat + n_w + 1 - STABLE_WINDOWS, STABLE_WINDOWS, b->stability)) {
      res->stable = true;
      n_w++;
      break;
    }
  }
  if (b->tty && !b->quiet) fputs("\r\033[K", stderr);
  /* Report the last (up to) three windows together. */
  {
    int k = n_w < STABLE_WINDOWS ? n_w : STABLE_WINDOWS;
    pvb_samples all = {0};
    double secs = 0;
    for (int w = n_w - k; w < n_w; w++) {
      pvb_samples *s = &win[w % STABLE_WINDOWS];
      for (size_t i = 0; i < s->n; i++)
        if (pvb_samples_add(&all, s->v[i])) { rc = fail(PVC_EXIT_USAGE, "out of memory"); free(all.v); goto out; }
      res->requests += oks[w];
      res->errors += errs[w];
      secs += oks[w] / (thr[w] > 0 ? thr[w] : 1);
    }
    res->throughput = secs > 0 ? (double)res->requests / secs : 0;
    double sum = 0;
    for (size_t i = 0; i < all.n; i++) sum += all.v[i];
    res->mean = all.n ? sum / (double)all.n : 0;
    res->p50 = pvb_percentile(&all, 50);
    res->p90 = pvb_percentile(&all, 90);
    res->p95 = pvb_percentile(&all, 95);
    res->p99 = pvb_percentile(&all, 99);
    free(all.v);
    res->windows = n_w;
    pvb_server d;
    pvb_server_delta(snaps[n_w - k], snaps[n_w], &d);
    if (d.valid && d.ok_n > 0) {
      res->srv_total = d.ok_ns / d.ok_n / 1e3;
      res->srv_queue = d.queue_n > 0 ? d.queue_ns / d.queue_n / 1e3 : 0;
      res->srv_compute = d.compute_n > 0 ? d.compute_ns / d.compute_n / 1e3 : 0;
      res->srv_overhead = res->srv_total - res->srv_queue - res->srv_compute;
      res->srv_batch = d.execs > 0 ? d.ok_n / d.execs : 0;
    }
  }
  res->late = delayed;
  /* Let what is still in flight finish so the next level starts clean. */
  drive(&L, -1, false, NULL, NULL, NULL, NULL);
out:
  for (int i = 0; i <= 64; i++) cJSON_Delete(snaps[i]);
  for (int i = 0; i < STABLE_WINDOWS; i++) free(win[i].v);
  if (L.slots) {
    for (int i = 0; i < L.n_slots; i++) {
      if (L.slots[i].busy) curl_multi_remove_handle(L.multi, L.slots[i].h);
      if (L.slots[i].h) curl_easy_cleanup(L.slots[i].h);
    }
    free(L.slots);
  }
  if (L.multi) curl_multi_cleanup(L.multi);
  return rc;
}

static int sweep(bench *b, target *t, pvb_result *res, int *n) {
  char ver[48] = "";
  if (t->version >= 0) snprintf(ver, sizeof ver, " version %lld", t->version);
  printf("%s%s at %s, %s payload (%zu bytes), window %g s\n", t->name, ver, b->ctl.base,
         b->binary ? "binary" : "JSON", t->body.len, b->window_s);
  pvb_print_header(stdout, b->rate_mode);
  fflush(stdout);
  *n = 0;
  for (double lvl = b->lo; lvl <= b->hi + 1e-9; lvl += b->step) {
    int rc = run_level(b, t, lvl, &res[*n]);
    if (rc) return rc;
    pvb_print_row(stdout, &res[(*n)++]);
    fflush(stdout);
  }
  return 0;
}

static const char *optval(int argc, char **argv, int *i, const char *a, const char *name, bool *bad) {
  size_t n = strlen(name);
  if (strncmp(a, name, n)) return NULL;
  if (a[n] == '=') return a + n + 1;
  if (a[n]) return NULL;
  if (*i + 1 >= argc) { *bad = true; return NULL; }
  return argv[++*i];
}

static int num_opt(const char *v, const char *what, double lo, double hi, double *out) {
  char *end;
  double x = strtod(v, &end);
  if (end == v || *end || !(x >= lo && x <= hi))
    return fail(PVC_EXIT_USAGE, "%s: '%s' is not a number in [%g, %g]", what, v, lo, hi);
  *out = x;
  return 0;
}

int main(int argc, char **argv) {
  bench b = {.binary = true, .lo = 1, .hi = 1, .step = 1, .window_s = 5, .warmup_s = 1,
             .stability = 10, .max_windows = 10, .max_inflight = 256, .batch = 1,
             .tty = isatty(2), .seed = 1};
  const char *model = NULL, *compare = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    bool bad = false;
    double x;
    if (a[0] != '-' || !a[1]) {
      if (model) return fail(PVC_EXIT_USAGE, "one MODEL only (got '%s' and '%s')", model, a);
      model = a;
      continue;
    }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
    else if (!strcmp(a, "--version")) { printf("pivot-bench %s\n", PACKAGE_VERSION); return 0; }
    else if (!strcmp(a, "--binary")) b.binary = true;
    else if (!strcmp(a, "--json-payload")) b.binary = false;
    else if (!strcmp(a, "--quiet")) b.quiet = true;
    else if ((v = optval(argc, argv, &i, a, "--url", &bad))) b.url = v;
    else if ((v = optval(argc, argv, &i, a, "--token", &bad))) b.token = v;
    else if ((v = optval(argc, argv, &i, a, "--csv", &bad))) b.csv = v;
    else if ((v = optval(argc, argv, &i, a, "--json", &bad))) b.json_out = v;
    else if ((v = optval(argc, argv, &i, a, "--compare", &bad))) compare = v;
    else if ((v = optval(argc, argv, &i, a, "--input", &bad))) {
      if (b.n_inputs == MAX_IO) return fail(PVC_EXIT_USAGE, "at most %d --input", MAX_IO);
      b.inputs[b.n_inputs++] = v;
    } else if ((v = optval(argc, argv, &i, a, "--concurrency", &bad)) || (v = optval(argc, argv, &i, a, "--rate", &bad))) {
      b.rate_mode = !strncmp(a, "--rate", 6);
      if (parse_sweep(v, &b) || (!b.rate_mode && (b.lo != floor(b.lo) || b.step != floor(b.step) || b.hi > 4096)))
        return fail(PVC_EXIT_USAGE, "%s: '%s' is not START[:END[:STEP]] (positive; integers up to 4096 for concurrency; at most %d levels)",
                    a, v, MAX_LEVELS);
    } else if ((v = optval(argc, argv, &i, a, "--window", &bad))) {
      if (num_opt(v, "--window", 0.05, 3600, &b.window_s)) return PVC_EXIT_USAGE;
    } else if ((v = optval(argc, argv, &i, a, "--warmup", &bad))) {
      if (num_opt(v, "--warmup", 0, 3600, &b.warmup_s)) return PVC_EXIT_USAGE;
    } else if ((v = optval(argc, argv, &i, a, "--stability", &bad))) {
      if (num_opt(v, "--stability", 0.1, 100, &b.stability)) return PVC_EXIT_USAGE;
    } else if ((v = optval(argc, argv, &i, a, "--max-windows", &bad))) {
      if (num_opt(v, "--max-windows", 1, 64, &x)) return PVC_EXIT_USAGE;
      b.max_windows = (int)x;
    } else if ((v = optval(argc, argv, &i, a, "--max-inflight", &bad))) {
      if (num_opt(v, "--max-inflight", 1, 4096, &x)) return PVC_EXIT_USAGE;
      b.max_inflight = (int)x;
    } else if ((v = optval(argc, argv, &i, a, "--batch", &bad))) {
      if (num_opt(v, "--batch", 1, 1 << 20, &x)) return PVC_EXIT_USAGE;
      b.batch = (int)x;
    } else if (bad) return fail(PVC_EXIT_USAGE, "%s needs a value", a);
    else return fail(PVC_EXIT_USAGE, "unknown option '%s' (pivot-bench --help)", a);
    if (bad) return fail(PVC_EXIT_USAGE, "%s needs a value", a);
  }
  if (!model) { usage(stderr); return PVC_EXIT_USAGE; }
  target t[2];
  if (parse_target(model, &t[0])) return fail(PVC_EXIT_USAGE, "'%s' is not MODEL or MODEL:VERSION", model);
  if (compare && parse_target(compare, &t[1])) return fail(PVC_EXIT_USAGE, "--compare: '%s' is not MODEL or MODEL:VERSION", compare);
  if (curl_global_init(CURL_GLOBAL_DEFAULT)) return fail(PVC_EXIT_CONNECT, "libcurl failed to start");
  if (pvc_init(&b.ctl, b.url, b.token, 30000)) return PVC_EXIT_USAGE;
  int n_t = compare ? 2 : 1, rc = 0, n_res[2] = {0};
  static pvb_result res[2][MAX_LEVELS];
  for (int k = 0; k < n_t && !rc; k++) rc = prepare(&b, &t[k]);
  for (int k = 0; k < n_t && !rc; k++) {
    if (k) printf("\n");
    rc = sweep(&b, &t[k], res[k], &n_res[k]);
  }
  if (!rc && compare) {
    printf("\n%s relative to %s (>1: %s is faster)\n%-12s %16s %16s %16s\n", compare, model, compare,
           b.rate_mode ? "rate/s" : "concurrency", "throughput_ratio", "p50_speedup", "compute_speedup");
    for (int i = 0; i < n_res[0] && i < n_res[1]; i++) {
      const pvb_result *x = &res[0][i], *y = &res[1][i];
      char lvl[32];
      if (x->concurrency) snprintf(lvl, sizeof lvl, "%d", x->concurrency);
      else snprintf(lvl, sizeof lvl, "%g", x->rate);
      printf("%-12s %16.2f %16.2f %16.2f\n", lvl, x->throughput > 0 ? y->throughput / x->throughput : 0,
             y->p50 > 0 ? x->p50 / y->p50 : 0, y->srv_compute > 0 ? x->srv_compute / y->srv_compute : 0);
    }
  }
  if (!rc && b.csv) {
    static pvb_result all[2 * MAX_LEVELS];
    memcpy(all, res[0], (size_t)n_res[0] * sizeof *all);
    memcpy(all + n_res[0], res[1], (size_t)n_res[1] * sizeof *all);
    int err = pvb_write_csv(b.csv, all, n_res[0] + n_res[1]);
    if (err) rc = fail(PVC_EXIT_USAGE, "%s: %s", b.csv, strerror(-err));
  }
  if (!rc && b.json_out) {
    int err = pvb_write_json(b.json_out, b.ctl.base, b.binary, b.window_s, res[0], n_res[0], res[1], n_res[1]);
    if (err) rc = fail(PVC_EXIT_USAGE, "%s: %s", b.json_out, strerror(-err));
  }
  for (int k = 0; k < n_t; k++) {
    free(t[k].body.p);
    curl_slist_free_all(t[k].hdrs);
  }
  pvc_free(&b.ctl);
  curl_global_cleanup();
  return rc;
}
