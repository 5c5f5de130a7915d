/* The live dashboard. A sampler thread reads every live version's
 * cumulative counters and request-latency histogram once a second and
 * keeps the differences (rate, estimated percentiles, mean, queue and
 * compute time) in a ring per model/version/backend, so a page opened
 * late still sees the last five minutes; it also notices loads, unloads,
 * hot swaps and failed loads by comparing each model's version set with
 * the previous second's. The page polls GET /v2/dashboard/series. */
#include "dashboard.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NB (PVD_NBUCKETS + 1)   /* histogram buckets with +Inf */
#define WIN 10                  /* seconds behind the "now" figures */
#define MAX_SERIES 64
#define MAX_EVENTS 64
#define PERIOD_MS 1000

typedef struct counters {
  uint64_t bucket[NB], sum, ok, fail, queue, compute;
  int32_t depth;
} counters;

typedef struct point {
  int64_t t_ms;                 /* wall clock at the end of the second */
  float rate;                   /* successful requests per second */
  float p50, p90, p99;          /* ms; -1 = no request */
  float mean, queue, compute;   /* ms per request; -1 = no request */
  uint32_t fails;               /* failed requests in the second */
  int32_t depth;                /* queue depth when sampled */
} point;

/* One model/version/backend. A version is known by its address, number
 * and load time together: a reload of the same number is a new series. */
typedef struct series {
  bool used;
  bool live;                    /* sampled in the last complete tick */
  uint64_t tick;                /* tick of the last sample */
  const void *key;
  int64_t version;
  uint64_t load_ns;
  char model[128];
  char backend[32];
  counters prev;                /* at the previous point */
  counters final;               /* read when the version was freed */
  bool has_final;               /* ... and not yet made a point */
  uint64_t tot_bucket[NB], tot_ok, tot_fail, tot_sum;
  uint32_t win_bucket[WIN][NB]; /* per-second deltas, ring indexed by n_total */
  float win_dt[WIN];
  point pts[PVD_DASH_POINTS];   /* ring */
  int head, n;                  /* next slot, points held */
  uint64_t n_total;             /* points ever pushed */
} series;

typedef struct event {
  int64_t t_ms;
  char model[128];
  char kind[16];                /* load, unload, swap, load_failed */
  int64_t from, to;             /* highest removed / added version; -1 = none */
  int64_t added[PVD_MAX_VERSIONS], removed[PVD_MAX_VERSIONS];
  int n_added, n_removed;
  char msg[256];
} event;

typedef struct vid {
  const void *key;
  int64_t version;
  uint64_t load_ns;
} vid;

/* What the sampler saw of a model a second ago. */
typedef struct seen_model {
  pvd_model *m;
  vid v[PVD_MAX_VERSIONS];
  int n;
  uint64_t loads_failed;
} seen_model;

static struct {
  pthread_mutex_t mu;           /* guards everything below but stop */
  pthread_cond_t cv;
  bool started, stop;
  pthread_t thread;
  uint64_t t0_ns, last_ns;
  uint64_t tick;                /* samples taken */
  series s[MAX_SERIES];
  event ev[MAX_EVENTS];         /* ring */
  int ev_head, ev_n;
  seen_model seen[256];
  int n_seen;
} D = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t ld(const _Atomic uint64_t *a) {
  return atomic_load_explicit(a, memory_order_relaxed);
}

double pvd_dash_quantile(const uint64_t *count, const double *le, int nle, double q) {
  uint64_t total = 0;
  for (int i = 0; i <= nle; i++) total += count[i];
  if (!total) return -1;
  if (q < 0) q = 0;
  if (q > 1) q = 1;
  double rank = q * (double)total;
  uint64_t cum = 0;
  for (int i = 0; i < nle; i++) {
    if (count[i] && (double)(cum + count[i]) >= rank) {
      double lo = i ? le[i - 1] : 0, hi = le[i];
      double f = (rank - (double)cum) / (double)count[i];
      return lo + (hi - lo) * (f < 0 ? 0 : f);
    }
    cum += count[i];
  }
  /* Above the last finite bound: all we know is that it is at least that. */
  return le[nle - 1];
}

static event *add_event(int64_t t, const char *model, const char *kind, int64_t from,
                        int64_t to, const char *msg) {
  event *e = &D.ev[D.ev_head];
  memset(e, 0, sizeof *e);
  D.ev_head = (D.ev_head + 1) % MAX_EVENTS;
  if (D.ev_n < MAX_EVENTS) D.ev_n++;
  e->t_ms = t;
  snprintf(e->model, sizeof e->model, "%s", model);
  snprintf(e->kind, sizeof e->kind, "%s", kind);
  e->from = from;
  e->to = to;
  snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "");
  return e;
}

static series *series_for(const pvd_version *v) {
  series *free_slot = NULL, *oldest = NULL;
  for (int i = 0; i < MAX_SERIES; i++) {
    series *s = &D.s[i];
    if (!s->used) { if (!free_slot) free_slot = s; continue; }
    if (s->key == v && s->version == v->version && s->load_ns == v->load_ns) return s;
    if (!s->live && s->tick != D.tick && (!oldest || s->pts[(s->head + PVD_DASH_POINTS - 1) % PVD_DASH_POINTS].t_ms <
                                    oldest->pts[(oldest->head + PVD_DASH_POINTS - 1) % PVD_DASH_POINTS].t_ms))
      oldest = s;
  }
  /* More versions than slots: the one retired longest ago makes room
   * (`live` still says what the previous tick saw, so no series this tick
   * has yet to visit is taken). */
  series *s = free_slot ? free_slot : oldest;
  if (!s) return NULL;
  memset(s, 0, sizeof *s);
  s->used = true;
  s->key = v;
  s->version = v->version;
  s->load_ns = v->load_ns;
  snprintf(s->model, sizeof s->model, "%s", v->model->name);
  snprintf(s->backend, sizeof s->backend, "%s", v->backend);
  return s;
}

static void counters_read(const pvd_version *v, counters *c) {
  const pvd_vstats *st = &v->stats;
  for (int i = 0; i < NB; i++) c->bucket[i] = ld(&st->h_request.bucket[i]);
  c->sum = ld(&st->h_request.sum_ns);
  c->ok = ld(&st->success.count);
  c->fail = ld(&st->fail.count);
  c->queue = ld(&st->queue.ns);
  c->compute = ld(&st->compute_infer.ns);
  c->depth = v->sched ? pvd_sched_depth(v->sched) : 0;
}

/* One point from the counters' growth since the series' previous point. */
static void push_point(series *s, const counters *c, int64_t t, double dt) {
  uint64_t d[NB];
  for (int i = 0; i < NB; i++) {
    d[i] = c->bucket[i] - s->prev.bucket[i];
    s->tot_bucket[i] = c->bucket[i];
  }
  uint64_t dok = c->ok - s->prev.ok, dsum = c->sum - s->prev.sum;
  point *p = &s->pts[s->head];
  p->t_ms = t;
  p->rate = (float)((double)dok / dt);
  p->p50 = (float)pvd_dash_quantile(d, pvd_bucket_le_s, PVD_NBUCKETS, 0.50);
  p->p90 = (float)pvd_dash_quantile(d, pvd_bucket_le_s, PVD_NBUCKETS, 0.90);
  p->p99 = (float)pvd_dash_quantile(d, pvd_bucket_le_s, PVD_NBUCKETS, 0.99);
  /* The quantile is in seconds; the page speaks milliseconds. */
  if (p->p50 >= 0) { p->p50 *= 1e3f; p->p90 *= 1e3f; p->p99 *= 1e3f; }
  p->mean = dok ? (float)((double)dsum / (double)dok * 1e-6) : -1;
  p->queue = dok ? (float)((double)(c->queue - s->prev.queue) / (double)dok * 1e-6) : -1;
  p->compute = dok ? (float)((double)(c->compute - s->prev.compute) / (double)dok * 1e-6) : -1;
  p->fails = (uint32_t)(c->fail - s->prev.fail);
  p->depth = c->depth;
  int w = (int)(s->n_total % WIN);
  for (int i = 0; i < NB; i++) s->win_bucket[w][i] = (uint32_t)d[i];
  s->win_dt[w] = (float)dt;
  s->head = (s->head + 1) % PVD_DASH_POINTS;
  if (s->n < PVD_DASH_POINTS) s->n++;
  s->n_total++;
  s->prev = *c;
  s->tot_ok = c->ok;
  s->tot_fail = c->fail;
  s->tot_sum = c->sum;
}

static void sample_version(pvd_version *v, int64_t t, double dt) {
  series *s = series_for(v);
  if (!s) return;
  s->tick = D.tick;
  counters c;
  counters_read(v, &c);
  push_point(s, &c, t, dt);
}

void pvd_dash_retired(const pvd_version *v) {
  pthread_mutex_lock(&D.mu);
  for (int i = 0; i < MAX_SERIES; i++) {
    series *s = &D.s[i];
    if (s->used && s->key == v && s->version == v->version && s->load_ns == v->load_ns) {
      counters_read(v, &s->final);
      s->final.depth = 0;
      s->has_final = true;
      break;
    }
  }
  pthread_mutex_unlock(&D.mu);
}

/* The loader appends models while we walk the list without its lock. */
static pvd_model *next_model(pvd_model *m) {
  return __atomic_load_n(&m->next, __ATOMIC_ACQUIRE);
}

static seen_model *seen_for(pvd_model *m) {
  for (int i = 0; i < D.n_seen; i++)
    if (D.seen[i].m == m) return &D.seen[i];
  if (D.n_seen == (int)(sizeof D.seen / sizeof D.seen[0])) return NULL;
  seen_model *sm = &D.seen[D.n_seen++];
  memset(sm, 0, sizeof *sm);
  sm->m = m;
  return sm;
}

static bool vid_in(const vid *a, int n, const vid *x) {
  for (int i = 0; i < n; i++)
    if (a[i].key == x->key && a[i].version == x->version && a[i].load_ns == x->load_ns) return true;
  return false;
}

/* Compare the model's versions with a second ago and log what changed. */
static void diff_model(seen_model *sm, const vid *now, int n, uint64_t failed,
                       const char *err, int64_t t) {
  int64_t add[PVD_MAX_VERSIONS], rem[PVD_MAX_VERSIONS], added = -1, removed = -1;
  int n_added = 0, n_removed = 0;
  for (int i = 0; i < n; i++)
    if (!vid_in(sm->v, sm->n, &now[i])) {
      add[n_added++] = now[i].version;
      if (now[i].version > added) added = now[i].version;
    }
  for (int i = 0; i < sm->n; i++)
    if (!vid_in(now, n, &sm->v[i])) {
      rem[n_removed++] = sm->v[i].version;
      if (sm->v[i].version > removed) removed = sm->v[i].version;
    }
  const char *name = sm->m->name;
  event *e = NULL;
  if (n_added && n_removed) e = add_event(t, name, "swap", removed, added, NULL);
  else if (n_added) e = add_event(t, name, "load", -1, added, NULL);
  else if (n_removed) e = add_event(t, name, "unload", removed, -1, NULL);
  if (e) {
    memcpy(e->added, add, sizeof(int64_t) * (size_t)n_added);
    memcpy(e->removed, rem, sizeof(int64_t) * (size_t)n_removed);
    e->n_added = n_added;
    e->n_removed = n_removed;
  }
  if (failed > sm->loads_failed) add_event(t, name, "load_failed", -1, -1, err);
  memcpy(sm->v, now, sizeof(vid) * (size_t)n);
  sm->n = n;
  sm->loads_failed = failed;
}

static void sample(void) {
  uint64_t now = pvd_now_ns();
  double dt = (double)(now - D.last_ns) * 1e-9;
  if (dt <= 0) dt = PERIOD_MS * 1e-3;
  D.last_ns = now;
  int64_t t = wall_ms();
  D.tick++;
  for (pvd_model *m = pvd_repo_first(); m; m = next_model(m)) {
    pvd_version *vs[PVD_MAX_VERSIONS];
    vid ids[PVD_MAX_VERSIONS];
    char err[256] = "";
    pthread_mutex_lock(&m->mu);
    int n = m->n_live;
    for (int i = 0; i < n; i++) {
      vs[i] = m->live[i];
      pvd_version_retain(vs[i]);
      ids[i] = (vid){vs[i], vs[i]->version, vs[i]->load_ns};
    }
    if (m->last_error) snprintf(err, sizeof err, "%s", m->last_error);
    pthread_mutex_unlock(&m->mu);
    seen_model *sm = seen_for(m);
    if (sm) diff_model(sm, ids, n, ld(&m->loads_failed), err, t);
    for (int i = 0; i < n; i++) {
      sample_version(vs[i], t, dt);
      pvd_version_release(vs[i]);
    }
  }
  /* Requests a retired version finished after its last sample, so the
   * counts add up; then it is dropped once its last point leaves the window. */
  for (int i = 0; i < MAX_SERIES; i++) {
    series *s = &D.s[i];
    if (!s->used) continue;
    s->live = s->tick == D.tick;
    if (s->live || !s->n) continue;
    if (s->has_final) {
      push_point(s, &s->final, t, dt);
      s->has_final = false;
    }
    const point *last = &s->pts[(s->head + PVD_DASH_POINTS - 1) % PVD_DASH_POINTS];
    if (t - last->t_ms > (int64_t)PVD_DASH_POINTS * PERIOD_MS) s->used = false;
  }
}

static void *sampler(void *arg) {
  (void)arg;
  pthread_mutex_lock(&D.mu);
  while (!D.stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += PERIOD_MS / 1000;
    while (!D.stop) {
      int rc = pthread_cond_timedwait(&D.cv, &D.mu, &ts);
      if (rc == ETIMEDOUT) break;
    }
    if (!D.stop) sample();
  }
  pthread_mutex_unlock(&D.mu);
  return NULL;
}

int pvd_dash_start(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(&D.cv, &ca);
  pthread_condattr_destroy(&ca);
  if (rc) return pv_error(PV_EINTERNAL, "dashboard: cannot create a condition variable");
  D.t0_ns = D.last_ns = pvd_now_ns();
  D.stop = false;
  if (pthread_create(&D.thread, NULL, sampler, NULL)) {
    pthread_cond_destroy(&D.cv);
    return pv_error(PV_EINTERNAL, "dashboard: cannot start the sampler thread");
  }
  D.started = true;
  return 0;
}

void pvd_dash_stop(void) {
  if (!D.started) return;
  pthread_mutex_lock(&D.mu);
  D.stop = true;
  pthread_cond_signal(&D.cv);
  pthread_mutex_unlock(&D.mu);
  pthread_join(D.thread, NULL);
  pthread_cond_destroy(&D.cv);
  D.started = false;
}

/* ------------------------------------------------------------ handlers */

void pvd_dash_page(pvd_conn *c) {
  char *b = malloc(pvd_dash_html_len);
  if (!b) { pvd_reply_error(c, 500, "out of memory"); return; }
  memcpy(b, pvd_dash_html, pvd_dash_html_len);
  pvd_reply(c, 200, b, pvd_dash_html_len, "text/html; charset=utf-8");
}

/* A millisecond figure, or null where there was no request. */
static void ms(pvd_buf *b, double v) {
  if (v < 0 || !isfinite(v)) pvd_buf_puts(b, "null");
  else pvd_buf_printf(b, "%.4g", v);
}

static void series_json(pvd_buf *b, const series *s, int64_t since) {
  pvd_buf_puts(b, "{\"model\":");
  pvd_buf_json_str(b, s->model);
  pvd_buf_printf(b, ",\"version\":\"%lld\",\"backend\":", (long long)s->version);
  pvd_buf_json_str(b, s->backend);
  pvd_buf_printf(b, ",\"live\":%s", s->live ? "true" : "false");
  pvd_buf_printf(b, ",\"total\":{\"count\":%llu,\"fail\":%llu,\"mean_ms\":",
                 (unsigned long long)s->tot_ok, (unsigned long long)s->tot_fail);
  uint64_t hc = 0;
  for (int i = 0; i < NB; i++) hc += s->tot_bucket[i];
  ms(b, hc ? (double)s->tot_sum / (double)hc * 1e-6 : -1);
  pvd_buf_puts(b, ",\"p50_ms\":");
  ms(b, pvd_dash_quantile(s->tot_bucket, pvd_bucket_le_s, PVD_NBUCKETS, 0.5) * 1e3);
  pvd_buf_puts(b, ",\"p99_ms\":");
  ms(b, pvd_dash_quantile(s->tot_bucket, pvd_bucket_le_s, PVD_NBUCKETS, 0.99) * 1e3);
  pvd_buf_puts(b, ",\"hist\":[");
  for (int i = 0; i < NB; i++)
    pvd_buf_printf(b, "%s%llu", i ? "," : "", (unsigned long long)s->tot_bucket[i]);
  pvd_buf_puts(b, "]}");

  /* The last WIN seconds, summed from the per-second deltas. */
  uint64_t w[NB] = {0};
  double wdt = 0;
  int nw = s->n_total < WIN ? (int)s->n_total : WIN;
  for (int k = 0; k < nw; k++) {
    int idx = (int)((s->n_total - 1 - (uint64_t)k) % WIN);
    for (int i = 0; i < NB; i++) w[i] += s->win_bucket[idx][i];
    wdt += s->win_dt[idx];
  }
  uint64_t wn = 0;
  for (int i = 0; i < NB; i++) wn += w[i];
  pvd_buf_printf(b, ",\"window\":{\"seconds\":%.3f,\"count\":%llu,\"rate\":%.4g", wdt,
                 (unsigned long long)wn, wdt > 0 ? (double)wn / wdt : 0.0);
  static const double qs[] = {0.5, 0.9, 0.95, 0.99};
  static const char *const qn[] = {"p50_ms", "p90_ms", "p95_ms", "p99_ms"};
  for (int k = 0; k < 4; k++) {
    pvd_buf_printf(b, ",\"%s\":", qn[k]);
    double q = pvd_dash_quantile(w, pvd_bucket_le_s, PVD_NBUCKETS, qs[k]);
    ms(b, q < 0 ? q : q * 1e3);
  }
  pvd_buf_puts(b, ",\"hist\":[");
  for (int i = 0; i < NB; i++) pvd_buf_printf(b, "%s%llu", i ? "," : "", (unsigned long long)w[i]);
  pvd_buf_puts(b, "]}");

  /* Points oldest first: [t_ms, rate, p50, p90, p99, mean, queue, compute,
   * fails, depth]. */
  pvd_buf_puts(b, ",\"points\":[");
  bool first = true;
  for (int k = 0; k < s->n; k++) {
    const point *p = &s->pts[(s->head + PVD_DASH_POINTS - s->n + k) % PVD_DASH_POINTS];
    if (p->t_ms <= since) continue;
    pvd_buf_printf(b, "%s[%lld,%.4g,", first ? "" : ",", (long long)p->t_ms, (double)p->rate);
    ms(b, p->p50); pvd_buf_puts(b, ",");
    ms(b, p->p90); pvd_buf_puts(b, ",");
    ms(b, p->p99); pvd_buf_puts(b, ",");
    ms(b, p->mean); pvd_buf_puts(b, ",");
    ms(b, p->queue); pvd_buf_puts(b, ",");
    ms(b, p->compute);
    pvd_buf_printf(b, ",%u,%d]", p->fails, p->depth);
    first = false;
  }
  pvd_buf_puts(b, "]}");
}

static void models_json(pvd_buf *b) {
  static const char *const states[] = {"UNAVAILABLE", "LOADING", "READY", "UNLOADED"};
  pvd_buf_puts(b, ",\"models\":[");
  bool first = true;
  for (pvd_model *m = pvd_repo_first(); m; m = next_model(m)) {
    pvd_buf_printf(b, "%s{\"name\":", first ? "" : ",");
    first = false;
    pvd_buf_json_str(b, m->name);
    pthread_mutex_lock(&m->mu);
    int st = m->state >= 0 && m->state < 4 ? m->state : 0;
    pvd_buf_printf(b, ",\"state\":\"%s\",\"versions\":[", states[st]);
    for (int i = 0; i < m->n_live; i++)
      pvd_buf_printf(b, "%s\"%lld\"", i ? "," : "", (long long)m->live[i]->version);
    pvd_buf_puts(b, "],\"backend\":");
    pvd_buf_json_str(b, m->n_live ? m->live[m->n_live - 1]->backend : "");
    pvd_buf_puts(b, ",\"last_error\":");
    pvd_buf_json_str(b, m->last_error ? m->last_error : "");
    pthread_mutex_unlock(&m->mu);
    uint64_t fails = 0;
    for (int r = 0; r < PVD_FAIL_N; r++) fails += ld(&m->fails[r]);
    pvd_buf_printf(b, ",\"loads_ok\":%llu,\"loads_failed\":%llu,\"fails\":%llu}",
                   (unsigned long long)ld(&m->loads_ok),
                   (unsigned long long)ld(&m->loads_failed), (unsigned long long)fails);
  }
  pvd_buf_puts(b, "]");
}

void pvd_dash_series(pvd_conn *c) {
  int64_t since = 0;
  const char *q = MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, "since");
  if (q) {
    char *end;
    errno = 0;
    long long v = strtoll(q, &end, 10);
    if (end == q || *end || errno || v < 0) {
      pvd_reply_error(c, 400, "since=\"%s\" is not a time in milliseconds", q);
      return;
    }
    since = v;
  }
  pvd_buf b = {0};
  pvd_buf_printf(&b, "{\"now_ms\":%lld,\"interval_ms\":%d,\"window_s\":%d,\"server\":{\"version\":",
                 (long long)wall_ms(), PERIOD_MS, WIN);
  pvd_buf_json_str(&b, pv_version());
  pthread_mutex_lock(&D.mu);
  pvd_buf_printf(&b, ",\"uptime_s\":%.1f,\"rss_bytes\":%zu},\"bucket_le_ms\":[",
                 D.t0_ns ? (double)(pvd_now_ns() - D.t0_ns) * 1e-9 : 0.0, pvd_rss_bytes());
  for (int i = 0; i < PVD_NBUCKETS; i++)
    pvd_buf_printf(&b, "%s%g", i ? "," : "", pvd_bucket_le_s[i] * 1e3);
  pvd_buf_puts(&b, "]");
  models_json(&b);
  pvd_buf_puts(&b, ",\"series\":[");
  bool first = true;
  for (int i = 0; i < MAX_SERIES; i++) {
    if (!D.s[i].used) continue;
    if (!first) pvd_buf_puts(&b, ",");
    series_json(&b, &D.s[i], since);
    first = false;
  }
  pvd_buf_puts(&b, "],\"events\":[");
  for (int k = 0; k < D.ev_n; k++) {
    const event *e = &D.ev[(D.ev_head + MAX_EVENTS - D.ev_n + k) % MAX_EVENTS];
    pvd_buf_printf(&b, "%s{\"t_ms\":%lld,\"model\":", k ? "," : "", (long long)e->t_ms);
    pvd_buf_json_str(&b, e->model);
    pvd_buf_printf(&b, ",\"kind\":\"%s\"", e->kind);
    if (e->from >= 0) pvd_buf_printf(&b, ",\"from\":\"%lld\"", (long long)e->from);
    if (e->to >= 0) pvd_buf_printf(&b, ",\"to\":\"%lld\"", (long long)e->to);
    pvd_buf_puts(&b, ",\"added\":[");
    for (int i = 0; i < e->n_added; i++)
      pvd_buf_printf(&b, "%s\"%lld\"", i ? "," : "", (long long)e->added[i]);
    pvd_buf_puts(&b, "],\"removed\":[");
    for (int i = 0; i < e->n_removed; i++)
      pvd_buf_printf(&b, "%s\"%lld\"", i ? "," : "", (long long)e->removed[i]);
    pvd_buf_puts(&b, "]");
    pvd_buf_puts(&b, ",\"message\":");
    pvd_buf_json_str(&b, e->msg);
    pvd_buf_puts(&b, "}");
  }
  pthread_mutex_unlock(&D.mu);
  pvd_buf_puts(&b, "]}");
  pvd_reply_buf(c, 200, &b);
}
