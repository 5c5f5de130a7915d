/* Latency histograms and counters, exported as Prometheus text 0.0.4 and
 * as Triton-shaped statistics JSON. Updates are relaxed atomics: a reader
 * may see a bucket a moment before the matching count, which Prometheus
 * tolerates. */
#include "pivotd.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

/* The latency bucket bounds, in ns, listed once: as seconds for the
 * exposition and the dashboard (n / 1e9 rounds exactly like the decimal
 * literal), as integers for the per-request updates. */
#define BUCKETS_NS(X)                                                        \
  X(10000) X(25000) X(50000) X(100000) X(250000) X(500000) X(1000000)        \
  X(2500000) X(5000000) X(10000000) X(25000000) X(50000000) X(100000000)     \
  X(250000000) X(500000000) X(1000000000) X(2500000000) X(10000000000)
#define AS_S(n) (n) / 1e9,
#define AS_NS(n) UINT64_C(n),
const double pvd_bucket_le_s[PVD_NBUCKETS] = {BUCKETS_NS(AS_S)};
static const uint64_t bucket_le_ns[PVD_NBUCKETS] = {BUCKETS_NS(AS_NS)};

const char *const pvd_fail_names[PVD_FAIL_N] = {
    "bad_request", "queue_full", "timeout", "internal", "not_ready"};

uint64_t pvd_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void pvd_hist_add(pvd_hist *h, uint64_t ns) {
  int i = 0;
  while (i < PVD_NBUCKETS && ns > bucket_le_ns[i]) i++;
  atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

size_t pvd_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, rss = 0;
  int n = fscanf(f, "%lu %lu", &size, &rss);
  fclose(f);
  if (n != 2) return 0;
  return (size_t)rss * (size_t)sysconf(_SC_PAGESIZE);
}

static uint64_t ld(const _Atomic uint64_t *a) {
  return atomic_load_explicit(a, memory_order_relaxed);
}

/* Snapshot of every live version, retained, so the text is built without
 * holding any model lock. */
typedef struct snap {
  pvd_version *v[256];
  int n;
} snap;

static void snap_take(snap *s, const char *only_model, int64_t only_version) {
  s->n = 0;
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m)) {
    if (only_model && strcmp(only_model, m->name)) continue;
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->n_live && s->n < 256; i++) {
      if (only_version >= 0 && m->live[i]->version != only_version) continue;
      pvd_version_retain(m->live[i]);
      s->v[s->n++] = m->live[i];
    }
    pthread_mutex_unlock(&m->mu);
  }
}

static void snap_drop(snap *s) {
  for (int i = 0; i < s->n; i++) pvd_version_release(s->v[i]);
  s->n = 0;
}

static void labels(pvd_buf *b, const pvd_version *v) {
  pvd_buf_printf(b, "model=\"%s\",version=\"%lld\",backend=\"%s\"",
                 v->model->name, (long long)v->version, v->backend);
}

static void hist_family(pvd_buf *b, snap *s, const char *name,
                        const char *help, size_t off) {
  pvd_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  for (int i = 0; i < s->n; i++) {
    const pvd_hist *h = (const pvd_hist *)((const char *)&s->v[i]->stats + off);
    uint64_t cum = 0;
    for (int k = 0; k <= PVD_NBUCKETS; k++) {
      cum += ld(&h->bucket[k]);
      pvd_buf_printf(b, "%s_bucket{", name);
      labels(b, s->v[i]);
      if (k < PVD_NBUCKETS)
        pvd_buf_printf(b, ",le=\"%g\"} %llu\n", pvd_bucket_le_s[k], (unsigned long long)cum);
      else
        pvd_buf_printf(b, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    pvd_buf_printf(b, "%s_sum{", name);
    labels(b, s->v[i]);
    pvd_buf_printf(b, "} %.9f\n", (double)ld(&h->sum_ns) * 1e-9);
    pvd_buf_printf(b, "%s_count{", name);
    labels(b, s->v[i]);
    /* The +Inf bucket and the count must agree, so print the bucket sum. */
    pvd_buf_printf(b, "} %llu\n", (unsigned long long)cum);
  }
}

void pvd_metrics_text(pvd_buf *b) {
  snap s;
  snap_take(&s, NULL, -1);
  hist_family(b, &s, "pivotd_request_duration_seconds",
              "Time from request received to response ready.",
              offsetof(pvd_vstats, h_request));
  hist_family(b, &s, "pivotd_queue_duration_seconds",
              "Time a request waited in the model queue.",
              offsetof(pvd_vstats, h_queue));
  hist_family(b, &s, "pivotd_compute_duration_seconds",
              "Time of the model execution that served a request.",
              offsetof(pvd_vstats, h_compute));
  pvd_buf_puts(b, "# HELP pivotd_inference_success_total Successful inference requests.\n"
                  "# TYPE pivotd_inference_success_total counter\n");
  for (int i = 0; i < s.n; i++) {
    pvd_buf_puts(b, "pivotd_inference_success_total{");
    labels(b, s.v[i]);
    pvd_buf_printf(b, "} %llu\n", (unsigned long long)ld(&s.v[i]->stats.success.count));
  }
  pvd_buf_puts(b, "# HELP pivotd_inference_executions_total Model executions (a batch counts once).\n"
                  "# TYPE pivotd_inference_executions_total counter\n");
  for (int i = 0; i < s.n; i++) {
    pvd_buf_puts(b, "pivotd_inference_executions_total{");
    labels(b, s.v[i]);
    pvd_buf_printf(b, "} %llu\n", (unsigned long long)ld(&s.v[i]->stats.execution_count));
  }
  pvd_buf_puts(b, "# HELP pivotd_queue_depth Requests waiting in the model queue.\n"
                  "# TYPE pivotd_queue_depth gauge\n");
  for (int i = 0; i < s.n; i++) {
    pvd_buf_puts(b, "pivotd_queue_depth{");
    labels(b, s.v[i]);
    pvd_buf_printf(b, "} %d\n", s.v[i]->sched ? pvd_sched_depth(s.v[i]->sched) : 0);
  }
  pvd_buf_puts(b, "# HELP pivotd_model_load_seconds Duration of the load of this version.\n"
                  "# TYPE pivotd_model_load_seconds gauge\n");
  for (int i = 0; i < s.n; i++) {
    pvd_buf_puts(b, "pivotd_model_load_seconds{");
    labels(b, s.v[i]);
    pvd_buf_printf(b, "} %.6f\n", (double)s.v[i]->load_ns * 1e-9);
  }
  snap_drop(&s);

  /* Failures live on the model, not the version: a request can fail before
   * any version is chosen. */
  pvd_buf_puts(b, "# HELP pivotd_inference_failure_total Failed inference requests by reason.\n"
                  "# TYPE pivotd_inference_failure_total counter\n");
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m))
    for (int r = 0; r < PVD_FAIL_N; r++)
      pvd_buf_printf(b, "pivotd_inference_failure_total{model=\"%s\",reason=\"%s\"} %llu\n",
                     m->name, pvd_fail_names[r], (unsigned long long)ld(&m->fails[r]));
  pvd_buf_puts(b, "# HELP pivotd_model_loads_total Model version loads by result.\n"
                  "# TYPE pivotd_model_loads_total counter\n");
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m)) {
    pvd_buf_printf(b, "pivotd_model_loads_total{model=\"%s\",result=\"ok\"} %llu\n",
                   m->name, (unsigned long long)ld(&m->loads_ok));
    pvd_buf_printf(b, "pivotd_model_loads_total{model=\"%s\",result=\"failed\"} %llu\n",
                   m->name, (unsigned long long)ld(&m->loads_failed));
  }
  pvd_buf_puts(b, "# HELP pivotd_model_ready Whether the model serves requests.\n"
                  "# TYPE pivotd_model_ready gauge\n");
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m))
    pvd_buf_printf(b, "pivotd_model_ready{model=\"%s\"} %d\n", m->name,
                   m->state == PVD_STATE_READY);
  pvd_buf_printf(b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                    "# TYPE process_resident_memory_bytes gauge\n"
                    "process_resident_memory_bytes %zu\n", pvd_rss_bytes());
}

static void stat_json(pvd_buf *b, const char *name, const pvd_stat *st) {
  pvd_buf_printf(b, "\"%s\":{\"count\":%llu,\"ns\":%llu}", name,
                 (unsigned long long)ld(&st->count), (unsigned long long)ld(&st->ns));
}

int pvd_stats_json(pvd_buf *b, const char *model, int64_t version) {
  snap s;
  snap_take(&s, model, version);
  pvd_buf_puts(b, "{\"model_stats\":[");
  for (int i = 0; i < s.n; i++) {
    const pvd_vstats *st = &s.v[i]->stats;
    if (i) pvd_buf_puts(b, ",");
    pvd_buf_puts(b, "{\"name\":");
    pvd_buf_json_str(b, s.v[i]->model->name);
    pvd_buf_puts(b, ",\"backend\":");
    pvd_buf_json_str(b, s.v[i]->backend);
    pvd_buf_printf(b, ",\"version\":\"%lld\",\"last_inference\":%llu,"
                      "\"inference_count\":%llu,\"execution_count\":%llu,"
                      "\"inference_stats\":{",
                   (long long)s.v[i]->version, (unsigned long long)ld(&st->last_inference_ms),
                   (unsigned long long)ld(&st->inference_count),
                   (unsigned long long)ld(&st->execution_count));
    stat_json(b, "success", &st->success); pvd_buf_puts(b, ",");
    stat_json(b, "fail", &st->fail); pvd_buf_puts(b, ",");
    stat_json(b, "queue", &st->queue); pvd_buf_puts(b, ",");
    stat_json(b, "compute_input", &st->compute_input); pvd_buf_puts(b, ",");
    stat_json(b, "compute_infer", &st->compute_infer); pvd_buf_puts(b, ",");
    stat_json(b, "compute_output", &st->compute_output);
    pvd_buf_puts(b, "},\"batch_stats\":[");
    bool first = true;
    for (int k = 1; k <= PVD_MAX_BATCH_STATS; k++) {
      if (!ld(&st->batch[k].count)) continue;
      pvd_buf_printf(b, "%s{\"batch_size\":%d,", first ? "" : ",", k);
      stat_json(b, "compute_infer", &st->batch[k]);
      pvd_buf_puts(b, "}");
      first = false;
    }
    pvd_buf_puts(b, "]}");
  }
  pvd_buf_puts(b, "]}");
  int n = s.n;
  snap_drop(&s);
  return n;
}
