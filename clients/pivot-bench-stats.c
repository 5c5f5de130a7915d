/* pivot-bench: percentiles, the server's statistics over a window, and the
 * CSV / JSON reports. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pivot-bench.h"

int pvb_samples_add(pvb_samples *s, double us) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 4096;
    if (cap > SIZE_MAX / sizeof *s->v) return -1;
    double *v = realloc(s->v, cap * sizeof *v);
    if (!v) return -1;
    s->v = v;
    s->cap = cap;
  }
  s->v[s->n++] = us;
  return 0;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double pvb_percentile(pvb_samples *s, double p) {
  if (!s->n) return 0;
  qsort(s->v, s->n, sizeof *s->v, cmp_d);
  /* Nearest rank, as perf_analyzer and wrk report it. */
  size_t k = (size_t)(p / 100.0 * (double)s->n + 0.999999);
  if (k < 1) k = 1;
  if (k > s->n) k = s->n;
  return s->v[k - 1];
}

int pvb_server_fetch(pvc_client *c, const char *model, long long version, cJSON **snap) {
  char path[1024];
  pvc_resp r;
  *snap = NULL;
  if (pvc_model_path(path, sizeof path, model, version, "/stats")) return -1;
  if (pvc_do(c, "GET", path, NULL, NULL, 0, &r)) return -1;
  if (r.status == 200) *snap = pvc_resp_json(&r);
  pvc_resp_free(&r);
  return *snap ? 0 : -1;
}

static const cJSON *find_version(const cJSON *snap, const char *version) {
  const cJSON *m;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(snap, "model_stats")) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
    if (cJSON_IsString(v) && !strcmp(v->valuestring, version)) return m;
  }
  return NULL;
}

static double num(const cJSON *o, const char *a, const char *b) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
  if (b) x = cJSON_GetObjectItemCaseSensitive(x, b);
  return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

void pvb_server_delta(const cJSON *before, const cJSON *after, pvb_server *d) {
  memset(d, 0, sizeof *d);
  if (!before || !after) return;
  const cJSON *m;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(after, "model_stats")) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
    if (!cJSON_IsString(v)) continue;
    const cJSON *b = find_version(before, v->valuestring);
    /* A version that appeared during the window (a hot swap) counts from
     * zero. */
    const cJSON *ia = cJSON_GetObjectItemCaseSensitive(m, "inference_stats");
    const cJSON *ib = b ? cJSON_GetObjectItemCaseSensitive(b, "inference_stats") : NULL;
    d->ok_n += num(ia, "success", "count") - num(ib, "success", "count");
    d->ok_ns += num(ia, "success", "ns") - num(ib, "success", "ns");
    d->queue_n += num(ia, "queue", "count") - num(ib, "queue", "count");
    d->queue_ns += num(ia, "queue", "ns") - num(ib, "queue", "ns");
    d->compute_n += num(ia, "compute_infer", "count") - num(ib, "compute_infer", "count");
    d->compute_ns += num(ia, "compute_infer", "ns") - num(ib, "compute_infer", "ns");
    d->execs += num(m, "execution_count", NULL) - (b ? num(b, "execution_count", NULL) : 0);
    d->valid = true;
  }
}

void pvb_print_header(FILE *f, bool rate_mode) {
  fprintf(f, "%-12s %11s %9s %9s %9s %9s %10s %10s %10s %6s %7s %s\n",
          rate_mode ? "rate/s" : "concurrency", "infer/s", "p50_us", "p90_us", "p95_us", "p99_us",
          "srv_queue", "srv_compute", "srv_other", "batch", "errors", "windows");
}

void pvb_print_row(FILE *f, const pvb_result *r) {
  char lvl[32];
  if (r->concurrency) snprintf(lvl, sizeof lvl, "%d", r->concurrency);
  else snprintf(lvl, sizeof lvl, "%g", r->rate);
  char late[64] = "";
  if (r->late) snprintf(late, sizeof late, " (%lld sends late: raise --max-inflight)", r->late);
  fprintf(f, "%-12s %11.1f %9.0f %9.0f %9.0f %9.0f %10.1f %10.1f %10.1f %6.2f %7lld %d%s%s\n", lvl,
          r->throughput, r->p50, r->p90, r->p95, r->p99, r->srv_queue, r->srv_compute, r->srv_overhead,
          r->srv_batch, r->errors, r->windows, r->stable ? "" : " (unstable)", late);
}

static const char csv_head[] =
    "model,version,concurrency,rate,throughput_per_s,p50_us,p90_us,p95_us,p99_us,mean_us,"
    "server_total_us,server_queue_us,server_compute_us,server_overhead_us,server_batch,"
    "requests,errors,windows,stable,late\n";

int pvb_write_csv(const char *path, const pvb_result *r, int n) {
  FILE *f = fopen(path, "w");
  if (!f) return -errno;
  fputs(csv_head, f);
  for (int i = 0; i < n; i++)
    fprintf(f, "%s,%lld,%d,%g,%.3f,%.1f,%.1f,%.1f,%.1f,%.1f,%.2f,%.2f,%.2f,%.2f,%.3f,%lld,%lld,%d,%d,%lld\n",
            r[i].model, r[i].version, r[i].concurrency, r[i].rate, r[i].throughput, r[i].p50, r[i].p90,
            r[i].p95, r[i].p99, r[i].mean, r[i].srv_total, r[i].srv_queue, r[i].srv_compute,
            r[i].srv_overhead, r[i].srv_batch, r[i].requests, r[i].errors, r[i].windows, r[i].stable,
            r[i].late);
  return fclose(f) ? -errno : 0;
}

static cJSON *result_json(const pvb_result *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "model", r->model);
  if (r->version >= 0) cJSON_AddNumberToObject(o, "version", (double)r->version);
  else cJSON_AddNullToObject(o, "version");
  cJSON_AddNumberToObject(o, "concurrency", r->concurrency);
  cJSON_AddNumberToObject(o, "rate", r->rate);
  cJSON_AddNumberToObject(o, "throughput_per_s", r->throughput);
  cJSON_AddNumberToObject(o, "p50_us", r->p50);
  cJSON_AddNumberToObject(o, "p90_us", r->p90);
  cJSON_AddNumberToObject(o, "p95_us", r->p95);
  cJSON_AddNumberToObject(o, "p99_us", r->p99);
  cJSON_AddNumberToObject(o, "mean_us", r->mean);
  cJSON_AddNumberToObject(o, "server_total_us", r->srv_total);
  cJSON_AddNumberToObject(o, "server_queue_us", r->srv_queue);
  cJSON_AddNumberToObject(o, "server_compute_us", r->srv_compute);
  cJSON_AddNumberToObject(o, "server_overhead_us", r->srv_overhead);
  cJSON_AddNumberToObject(o, "server_batch", r->srv_batch);
  cJSON_AddNumberToObject(o, "requests", (double)r->requests);
  cJSON_AddNumberToObject(o, "errors", (double)r->errors);
  cJSON_AddNumberToObject(o, "windows", r->windows);
  cJSON_AddBoolToObject(o, "stable", r->stable);
  cJSON_AddNumberToObject(o, "late", (double)r->late);
  return o;
}

int pvb_write_json(const char *path, const char *url, bool binary, double window_s,
                   const pvb_result *r, int n, const pvb_result *cmp, int n_cmp) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return -ENOMEM;
  cJSON_AddStringToObject(j, "url", url);
  cJSON_AddStringToObject(j, "payload", binary ? "binary" : "json");
  cJSON_AddNumberToObject(j, "window_s", window_s);
  cJSON *a = cJSON_AddArrayToObject(j, "results");
  for (int i = 0; i < n; i++) cJSON_AddItemToArray(a, result_json(&r[i]));
  if (n_cmp) {
    cJSON *b = cJSON_AddArrayToObject(j, "compare");
    for (int i = 0; i < n_cmp && i < n; i++) {
      cJSON *o = result_json(&cmp[i]);
      /* B relative to A: >1 means B serves more per second / answers faster. */
      cJSON_AddNumberToObject(o, "throughput_ratio", r[i].throughput > 0 ? cmp[i].throughput / r[i].throughput : 0);
      cJSON_AddNumberToObject(o, "p50_speedup", cmp[i].p50 > 0 ? r[i].p50 / cmp[i].p50 : 0);
      cJSON_AddItemToArray(b, o);
    }
  }
  char *s = cJSON_Print(j);
  cJSON_Delete(j);
  if (!s) return -ENOMEM;
  FILE *f = fopen(path, "w");
  if (!f) { free(s); return -errno; }
  fputs(s, f);
  fputc('\n', f);
  free(s);
  return fclose(f) ? -errno : 0;
}
