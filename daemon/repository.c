/* The model repository: REPO/<model>/<version>/model.{pvm,onnx} plus an
 * optional REPO/<model>/config.json. One loader thread loads, warms up and
 * publishes versions, so loads never block HTTP threads; requests hold a
 * reference on the version they run on, and the last reference hands the
 * version to the main loop, which stops its workers and frees it. */
#define _GNU_SOURCE
#include "pivotd.h"
#include "dashboard.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct job {
  int kind;
  char *model;
  int64_t version;
  char *arg;
  pvd_job_done done;
  void *done_arg;
  struct job *next;
} job;

static struct {
  const pvd_settings *s;
  void (*wake_main)(void);
  pthread_mutex_t mu;      /* models list append, jobs, dead list */
  pthread_cond_t cv;       /* jobs posted / freed versions / jobs done */
  pvd_model *models, **models_tail;
  job *jobs, **jobs_tail;
  bool scan_pending;
  bool stop;
  bool scanned_once;
  uint64_t posted, done;
  uint64_t freed;          /* versions freed so far (unload-first waits) */
  _Atomic(pvd_version *) dead;
  pthread_t loader;
  bool loader_started;
} R = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

/* ------------------------------------------------------------ references */

void pvd_version_retain(pvd_version *v) {
  atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
}

void pvd_version_release(pvd_version *v) {
  if (atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) != 1) return;
  /* Lock-free push: the releasing thread may be a worker of this very
   * version, which must not join itself. */
  pvd_version *head = atomic_load(&R.dead);
  do v->next_dead = head;
  while (!atomic_compare_exchange_weak(&R.dead, &head, v));
  if (R.wake_main) R.wake_main();
}

static void version_free(pvd_version *v) {
  pvd_dash_retired(v);
  pvd_sched_free(v->sched);
  if (v->pm) pv_model_release(v->pm);
  pvd_model_cfg_free(&v->cfg);
  free(v->path);
  free(v);
}

void pvd_repo_reap(void) {
  pvd_version *v = atomic_exchange(&R.dead, NULL);
  int n = 0;
  while (v) {
    pvd_version *next = v->next_dead;
    version_free(v);
    v = next;
    n++;
  }
  if (n) {
    pthread_mutex_lock(&R.mu);
    R.freed += (uint64_t)n;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
  }
}

/* ------------------------------------------------------------ lookups */

pvd_model *pvd_repo_find(const char *name) {
  pthread_mutex_lock(&R.mu);
  pvd_model *m = R.models;
  while (m && strcmp(m->name, name)) m = m->next;
  pthread_mutex_unlock(&R.mu);
  return m;
}

pvd_model *pvd_repo_first(void) {
  pthread_mutex_lock(&R.mu);
  pvd_model *m = R.models;
  pthread_mutex_unlock(&R.mu);
  return m;
}

pvd_version *pvd_model_get(pvd_model *m, int64_t version) {
  pvd_version *v = NULL;
  pthread_mutex_lock(&m->mu);
  if (m->n_live > 0) {
    if (version < 0) {
      v = m->live[m->n_live - 1];
    } else {
      for (int i = 0; i < m->n_live; i++)
        if (m->live[i]->version == version) v = m->live[i];
    }
  }
  if (v) pvd_version_retain(v);
  pthread_mutex_unlock(&m->mu);
  return v;
}

bool pvd_repo_ready(void) {
  pthread_mutex_lock(&R.mu);
  bool ok = R.scanned_once;
  pvd_model *m = R.models;
  pthread_mutex_unlock(&R.mu);
  for (; ok && m; m = pvd_repo_next(m)) {
    pthread_mutex_lock(&m->mu);
    if (m->in_repo && !m->explicit_unload && m->state != PVD_STATE_READY) ok = false;
    pthread_mutex_unlock(&m->mu);
  }
  return ok;
}

static pvd_model *model_get_or_add(const char *name) {
  pthread_mutex_lock(&R.mu);
  pvd_model *m = R.models;
  while (m && strcmp(m->name, name)) m = m->next;
  if (!m) {
    m = calloc(1, sizeof *m);
    if (m && !(m->name = strdup(name))) { free(m); m = NULL; }
    if (m) {
      pthread_mutex_init(&m->mu, NULL);
      m->state = PVD_STATE_UNAVAILABLE;
      /* Released: readers walk the list without R.mu (models are never
       * freed while running), so they must see the model whole. */
      __atomic_store_n(R.models_tail, m, __ATOMIC_RELEASE);
      R.models_tail = &m->next;
    }
  }
  pthread_mutex_unlock(&R.mu);
  return m;
}

/* ------------------------------------------------------------ config.json */

void pvd_model_cfg_free(pvd_model_cfg *c) {
  if (c->backends)
    for (char **b = c->backends; *b; b++) free(*b);
  free(c->backends);
  free(c->specific);
  memset(c, 0, sizeof *c);
}

static void cfg_defaults(pvd_model_cfg *c, const pvd_settings *s) {
  memset(c, 0, sizeof *c);
  c->max_batch = 1;
  c->queue_size = 1024;
  c->workers = 1;
  c->threads = s ? s->threads : 0;
  c->inline_max_us = 20;
  c->policy = PVD_POLICY_LATEST;
  c->latest_n = 1;
}

static int cfg_int(cJSON *it, const char *what, int64_t lo, int64_t hi, int64_t *out) {
  if (!cJSON_IsNumber(it) || it->valuedouble != (double)(int64_t)it->valuedouble ||
      it->valuedouble < (double)lo || it->valuedouble > (double)hi)
    return pv_error(PV_EINVAL, "%s: field \"%s\" must be an integer in [%lld, %lld]",
                    what, it->string, (long long)lo, (long long)hi);
  *out = (int64_t)it->valuedouble;
  return 0;
}

int pvd_model_cfg_parse(pvd_model_cfg *c, const char *json, const char *what) {
  cJSON *root = cJSON_Parse(json);
  int rc = 0;
  if (!root || !cJSON_IsObject(root)) {
    rc = pv_error(PV_EINVAL, "%s: not a JSON object", what);
    goto out;
  }
  cJSON *it;
  cJSON_ArrayForEach(it, root) {
    int64_t v;
    if (!strcmp(it->string, "max_batch")) {
      if ((rc = cfg_int(it, what, 1, PVD_MAX_BATCH_STATS, &v))) goto out;
      c->max_batch = (int)v;
    } else if (!strcmp(it->string, "max_queue_delay_us")) {
      if ((rc = cfg_int(it, what, 0, 10000000, &v))) goto out;
      c->max_queue_delay_us = v;
    } else if (!strcmp(it->string, "queue_size")) {
      if ((rc = cfg_int(it, what, 1, 1 << 20, &v))) goto out;
      c->queue_size = (int)v;
    } else if (!strcmp(it->string, "workers")) {
      if ((rc = cfg_int(it, what, 1, 64, &v))) goto out;
      c->workers = (int)v;
    } else if (!strcmp(it->string, "threads")) {
      if ((rc = cfg_int(it, what, 0, 1024, &v))) goto out;
      c->threads = (int)v;
    } else if (!strcmp(it->string, "inline_max_us")) {
      if ((rc = cfg_int(it, what, 0, 10000000, &v))) goto out;
      c->inline_max_us = v;
    } else if (!strcmp(it->string, "backends")) {
      int n = cJSON_GetArraySize(it);
      if (!cJSON_IsArray(it) || n < 1) { rc = pv_error(PV_EINVAL, "%s: field \"backends\" must be a non-empty array of names", what); goto out; }
      pvd_model_cfg tmp = {0};
      tmp.backends = calloc((size_t)n + 1, sizeof(char *));
      if (!tmp.backends) { rc = pv_error(PV_ENOMEM, "%s", what); goto out; }
      int i = 0;
      cJSON *b;
      cJSON_ArrayForEach(b, it) {
        if (!cJSON_IsString(b)) { pvd_model_cfg_free(&tmp); rc = pv_error(PV_EINVAL, "%s: field \"backends\" must hold strings", what); goto out; }
        tmp.backends[i++] = strdup(b->valuestring);
      }
      if (c->backends) { for (char **p = c->backends; *p; p++) free(*p); free(c->backends); }
      c->backends = tmp.backends;
    } else if (!strcmp(it->string, "version_policy")) {
      cJSON *lat = cJSON_GetObjectItemCaseSensitive(it, "latest");
      cJSON *all = cJSON_GetObjectItemCaseSensitive(it, "all");
      cJSON *spe = cJSON_GetObjectItemCaseSensitive(it, "specific");
      if (!cJSON_IsObject(it) || cJSON_GetArraySize(it) != 1 || !(lat || all || spe)) {
        rc = pv_error(PV_EINVAL, "%s: field \"version_policy\" must be one of {\"latest\":{\"num_versions\":N}}, {\"all\":{}}, {\"specific\":{\"versions\":[...]}}", what);
        goto out;
      }
      if (lat) {
        cJSON *nv = cJSON_GetObjectItemCaseSensitive(lat, "num_versions");
        c->policy = PVD_POLICY_LATEST;
        c->latest_n = 1;
        if (nv) {
          if ((rc = cfg_int(nv, what, 1, PVD_MAX_VERSIONS, &v))) goto out;
          c->latest_n = (int)v;
        }
      } else if (all) {
        c->policy = PVD_POLICY_ALL;
      } else {
        cJSON *vs = cJSON_GetObjectItemCaseSensitive(spe, "versions");
        int n = cJSON_GetArraySize(vs);
        if (!cJSON_IsArray(vs) || n < 1 || n > PVD_MAX_VERSIONS) {
          rc = pv_error(PV_EINVAL, "%s: field \"version_policy.specific.versions\" must list 1 to %d versions", what, PVD_MAX_VERSIONS);
          goto out;
        }
        free(c->specific);
        c->specific = calloc((size_t)n, sizeof *c->specific);
        if (!c->specific) { rc = pv_error(PV_ENOMEM, "%s", what); goto out; }
        c->n_specific = 0;
        cJSON *x;
        cJSON_ArrayForEach(x, vs) {
          if ((rc = cfg_int(x, what, 1, INT64_MAX / 2, &v))) goto out;
          c->specific[c->n_specific++] = v;
        }
        c->policy = PVD_POLICY_SPECIFIC;
      }
    } else {
      rc = pv_error(PV_EINVAL, "%s: unknown field \"%s\"", what, it->string);
      goto out;
    }
  }
out:
  cJSON_Delete(root);
  return rc;
}

static char *read_small_file(const char *path, size_t max) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *buf = malloc(max + 1);
  size_t n = buf ? fread(buf, 1, max, f) : 0;
  fclose(f);
  if (!buf) return NULL;
  buf[n] = 0;
  return buf;
}

static int model_cfg_load(pvd_model *m, pvd_model_cfg *c) {
  cfg_defaults(c, R.s);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s/config.json", R.s->repository, m->name);
  int rc = 0;
  if (access(path, F_OK) == 0) {
    char *txt = read_small_file(path, 1 << 20);
    if (!txt) return pv_error(PV_EIO, "%s: cannot read", path);
    rc = pvd_model_cfg_parse(c, txt, path);
    free(txt);
    if (rc) return rc;
  }
  if (m->cfg_override) rc = pvd_model_cfg_parse(c, m->cfg_override, "load request parameters.config");
  return rc;
}

static int cfg_copy(pvd_model_cfg *dst, const pvd_model_cfg *src) {
  *dst = *src;
  dst->backends = NULL;
  dst->specific = NULL;
  if (src->backends) {
    int n = 0;
    while (src->backends[n]) n++;
    dst->backends = calloc((size_t)n + 1, sizeof(char *));
    if (!dst->backends) return PV_ENOMEM;
    for (int i = 0; i < n; i++) dst->backends[i] = strdup(src->backends[i]);
  }
  if (src->n_specific) {
    dst->specific = malloc(sizeof(int64_t) * (size_t)src->n_specific);
    if (!dst->specific) return PV_ENOMEM;
    memcpy(dst->specific, src->specific, sizeof(int64_t) * (size_t)src->n_specific);
  }
  return 0;
}

/* ------------------------------------------------------------ loading */

typedef struct found {
  int64_t version;
  char path[4096];
  int64_t mtime_ns, size;
} found;

static int cmp_found(const void *a, const void *b) {
  int64_t x = ((const found *)a)->version, y = ((const found *)b)->version;
  return x < y ? -1 : x > y;
}

/* Numeric version folders holding a model file, ascending. */
static int list_versions(const char *model, found *out, int max) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", R.s->repository, model);
  DIR *d = opendir(dir);
  if (!d) return pv_error(PV_ENOTFOUND, "%s: %s", dir, strerror(errno));
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < max) {
    char *endp;
    errno = 0;
    long long v = strtoll(e->d_name, &endp, 10);
    if (!e->d_name[0] || *endp || errno || v < 0 || e->d_name[0] == '-' || e->d_name[0] == '+') continue;
    static const char *const names[] = {"model.pvm", "model.onnx"};
    for (int k = 0; k < 2; k++) {
      struct stat st;
      if (snprintf(out[n].path, sizeof out[n].path, "%s/%s/%s", dir, e->d_name, names[k]) >=
          (int)sizeof out[n].path)
        continue;
      if (stat(out[n].path, &st) == 0 && S_ISREG(st.st_mode)) {
        out[n].version = v;
        out[n].mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        out[n].size = (int64_t)st.st_size;
        n++;
        break;
      }
    }
  }
  closedir(d);
  qsort(out, (size_t)n, sizeof *out, cmp_found);
  return n;
}

/* Run one batch of zeros so the first real request does not pay for lazy
 * backend set-up; skipped when a non-batch dim is unknown. */
static int warm_up(pvd_version *v) {
  pv_model *pm = v->pm;
  int n_in = pv_model_n_inputs(pm), n_out = pv_model_n_outputs(pm);
  if (n_in > 16 || n_out > 16) return 0;
  pv_tensor in[16], out[16];
  memset(in, 0, sizeof in);
  memset(out, 0, sizeof out);
  int rc = 0, made = 0;
  for (int i = 0; i < n_in; i++) {
    const pv_value *mv = pv_model_input(pm, i);
    if (mv->ndim < 0) goto out;
    in[i].dtype = mv->dtype;
    in[i].ndim = mv->ndim;
    for (int d = 0; d < mv->ndim; d++) {
      if (mv->dims[d] == PV_DIM_BATCH && d == 0) in[i].dims[d] = 1;
      else if (mv->dims[d] < 0) goto out;
      else in[i].dims[d] = mv->dims[d];
    }
    if ((rc = pv_tensor_alloc(&in[i]))) goto out;
    made = i + 1;
  }
  pv_exec *e = pv_exec_new(pm);
  if (!e) { rc = PV_ENOMEM; goto out; }
  rc = pv_exec_run(e, in, n_in, out, n_out);
  if (rc) pv_error_prefix(rc, "warm-up run");
  pv_exec_free(e);
out:
  for (int i = 0; i < made; i++) pv_free(in[i].data);
  return rc;
}

/* The label of a version: the most preferred backend in its config that
 * runs at least one node (a GPU backend that takes part of the model names
 * it). When the first choice runs nothing (missing, failed to start, or
 * supports no node) that is logged, since the model is then slower than
 * its config asks for. */
static void version_backend(pvd_version *v) {
  static const char *const dflt[] = {"cpu", NULL};
  const char *const *pref = v->cfg.backends ? (const char *const *)v->cfg.backends : dflt;
  const pv_graph *g = pv_model_graph(v->pm);
  int n_nodes = g ? g->n_nodes : 0, best = -1;
  const char *name = NULL;
  for (int i = 0; i < n_nodes; i++) {
    const char *be = pv_model_node_backend(v->pm, i);
    if (!be || !strcmp(be, "plan")) continue; /* folded at load time */
    int rank = 0;
    while (pref[rank] && strcmp(pref[rank], be)) rank++;
    if (!pref[rank]) rank = INT_MAX - 1; /* cpu appended by the runtime */
    if (best < 0 || rank < best) best = rank, name = be;
  }
  snprintf(v->backend, sizeof v->backend, "%s", name ? name : "none");
  if (name && strcmp(pref[0], name))
    pv_log(PV_LOG_WARN, "model %s version %lld: backend '%s' (first in its "
           "backends list) runs none of its nodes; falling back to '%s'",
           v->model->name, (long long)v->version, pref[0], name);
}

static pvd_version *version_load(pvd_model *m, const found *f, const pvd_model_cfg *cfg) {
  pvd_version *v = calloc(1, sizeof *v);
  if (!v) { pv_error(PV_ENOMEM, "version"); return NULL; }
  atomic_init(&v->refs, 1);
  v->model = m;
  v->version = f->version;
  v->file_mtime_ns = f->mtime_ns;
  v->file_size = f->size;
  v->path = strdup(f->path);
  if (!v->path || cfg_copy(&v->cfg, cfg)) { pv_error(PV_ENOMEM, "version"); goto fail; }
  pv_load_opts o = {0};
  o.backends = (const char *const *)v->cfg.backends;
  o.backend_dir = R.s->backend_dir;
  o.threads = v->cfg.threads;
  uint64_t t0 = pvd_now_ns();
  v->pm = pv_model_load(v->path, &o);
  if (!v->pm) goto fail;
  version_backend(v);
  if (warm_up(v)) goto fail;
  v->sched = pvd_sched_new(v);
  if (!v->sched) goto fail;
  v->load_ns = pvd_now_ns() - t0;
  atomic_fetch_add(&m->loads_ok, 1);
  pv_log(PV_LOG_INFO, "model %s version %lld loaded from %s in %.1f ms (backend %s)",
         m->name, (long long)v->version, v->path, (double)v->load_ns * 1e-6, v->backend);
  return v;
fail:
  atomic_fetch_add(&m->loads_failed, 1);
  {
    /* pv_errmsg() is the buffer pv_error writes: copy before reformatting. */
    char cause[768];
    snprintf(cause, sizeof cause, "%s", pv_errmsg());
    if (strstr(cause, f->path)) pv_error(PV_EINVAL, "%s", cause);
    else pv_error(PV_EINVAL, "%s: %s", f->path, cause);
  }
  if (v->pm) pv_model_release(v->pm);
  pvd_model_cfg_free(&v->cfg);
  free(v->path);
  free(v);
  return NULL;
}

/* explicit_unload and in_repo are read under m->mu by readiness checks. */
static void set_flags(pvd_model *m, int explicit_unload, int in_repo) {
  pthread_mutex_lock(&m->mu);
  if (explicit_unload >= 0) m->explicit_unload = explicit_unload;
  if (in_repo >= 0) m->in_repo = in_repo;
  pthread_mutex_unlock(&m->mu);
}

static void set_error(pvd_model *m, const char *msg) {
  pthread_mutex_lock(&m->mu);
  free(m->last_error);
  m->last_error = msg ? strdup(msg) : NULL;
  pthread_mutex_unlock(&m->mu);
}

/* Publish `live` (n entries, ascending) as the model's version set: the
 * request path sees the old set or the new one, never a mix. */
static void publish(pvd_model *m, pvd_version **live, int n, int state) {
  pvd_version *old[PVD_MAX_VERSIONS];
  int n_old;
  pthread_mutex_lock(&m->mu);
  n_old = m->n_live;
  if (n_old) memcpy(old, m->live, sizeof(pvd_version *) * (size_t)n_old);
  if (n) memcpy(m->live, live, sizeof(pvd_version *) * (size_t)n);
  m->n_live = n;
  m->state = state;
  pthread_mutex_unlock(&m->mu);
  for (int i = 0; i < n_old; i++) {
    bool kept = false;
    for (int j = 0; j < n; j++) kept |= live[j] == old[i];
    if (!kept) pvd_version_release(old[i]);
  }
}

/* Wait until `count` more versions are freed by the main loop. */
static void wait_freed(uint64_t before, int count) {
  pthread_mutex_lock(&R.mu);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 60;
  while (R.freed < before + (uint64_t)count)
    if (pthread_cond_timedwait(&R.cv, &R.mu, &ts)) break;
  pthread_mutex_unlock(&R.mu);
}

/* Bring the model's live set in line with the repository and policy.
 * `must` (>= 0) is a version that has to end up live for success. A
 * version that fails to load leaves the current ones serving. */
static int sync_model(pvd_model *m, int64_t must, bool force) {
  pvd_model_cfg cfg;
  int rc = model_cfg_load(m, &cfg);
  if (rc) goto fail_cfg;
  found *fs = calloc(256, sizeof *fs);
  if (!fs) { rc = pv_error(PV_ENOMEM, "scan"); goto fail_cfg; }
  int n = list_versions(m->name, fs, 256);
  if (n < 0) { rc = n; goto fail_list; }
  /* Choose the wanted versions. */
  bool want[256] = {0};
  int n_want = 0;
  for (int i = n - 1; i >= 0; i--) {
    bool w = false;
    if (cfg.policy == PVD_POLICY_ALL) w = true;
    else if (cfg.policy == PVD_POLICY_LATEST) w = n_want < cfg.latest_n;
    else for (int k = 0; k < cfg.n_specific; k++) w |= cfg.specific[k] == fs[i].version;
    if (w && n_want < PVD_MAX_VERSIONS) { want[i] = true; n_want++; }
  }
  if (must >= 0) {
    bool ok = false;
    for (int i = 0; i < n; i++) ok |= want[i] && fs[i].version == must;
    if (!ok) { rc = pv_error(PV_EINVAL, "version %lld of model '%s' is not selected by its version policy", (long long)must, m->name); goto fail_list; }
  }
  if (n_want == 0) { rc = pv_error(PV_ENOTFOUND, "model '%s' has no version folder with a model.pvm or model.onnx", m->name); goto fail_list; }

  pvd_version *cur[PVD_MAX_VERSIONS];
  int n_cur;
  pthread_mutex_lock(&m->mu);
  n_cur = m->n_live;
  for (int i = 0; i < n_cur; i++) { cur[i] = m->live[i]; pvd_version_retain(cur[i]); }
  if (m->state != PVD_STATE_READY) m->state = PVD_STATE_LOADING;
  pthread_mutex_unlock(&m->mu);

  pvd_version *next[PVD_MAX_VERSIONS];
  int n_next = 0, n_new = 0;
  int64_t dropped[PVD_MAX_VERSIONS];
  int n_dropped = 0;
  bool failed = false;
  char errbuf[1024] = "";
  for (int i = 0; i < n; i++) {
    if (!want[i]) continue;
    pvd_version *keep = NULL;
    for (int k = 0; k < n_cur; k++)
      if (cur[k]->version == fs[i].version && !strcmp(cur[k]->path, fs[i].path) &&
          cur[k]->file_mtime_ns == fs[i].mtime_ns && cur[k]->file_size == fs[i].size &&
          !force)
        keep = cur[k];
    if (keep) { pvd_version_retain(keep); next[n_next++] = keep; continue; }
    if (R.s->unload_first && n_cur > 0) {
      /* Devices that cannot hold two copies: drop what serves first. */
      uint64_t before;
      pthread_mutex_lock(&R.mu);
      before = R.freed;
      pthread_mutex_unlock(&R.mu);
      int dropping = n_cur;
      for (int k = 0; k < n_cur; k++) {
        dropped[n_dropped++] = cur[k]->version;
        pvd_version_release(cur[k]);
      }
      n_cur = 0;
      publish(m, next, n_next, PVD_STATE_LOADING);
      wait_freed(before, dropping);
    }
    pvd_version *v = version_load(m, &fs[i], &cfg);
    if (!v) {
      failed = true;
      snprintf(errbuf, sizeof errbuf, "%s", pv_errmsg());
      pv_log(PV_LOG_WARN, "%s", errbuf);
      if (must == fs[i].version) break;
      continue;
    }
    next[n_next++] = v;
    n_new++;
  }
  if (failed && n_cur > 0) {
    /* Keep serving what served before; adopt only what loaded. */
    for (int k = 0; k < n_cur; k++) {
      bool in = false;
      for (int j = 0; j < n_next; j++) in |= next[j] == cur[k];
      if (!in && n_next < PVD_MAX_VERSIONS) { pvd_version_retain(cur[k]); next[n_next++] = cur[k]; }
    }
    /* ascending order */
    for (int a = 1; a < n_next; a++)
      for (int b = a; b > 0 && next[b - 1]->version > next[b]->version; b--) {
        pvd_version *t = next[b]; next[b] = next[b - 1]; next[b - 1] = t;
      }
  }
  if (failed && n_next == 0 && n_dropped > 0) {
    /* unload-first dropped what served and the new one failed: bring the
     * old files back rather than serve nothing. */
    for (int i = 0; i < n && n_next < PVD_MAX_VERSIONS; i++)
      for (int k = 0; k < n_dropped; k++)
        if (fs[i].version == dropped[k]) {
          pvd_version *v = version_load(m, &fs[i], &cfg);
          if (v) next[n_next++] = v;
        }
    pv_error(PV_EINVAL, "%s", errbuf);
  }
  for (int k = 0; k < n_cur; k++) pvd_version_release(cur[k]);
  publish(m, next, n_next, n_next > 0 ? PVD_STATE_READY : PVD_STATE_UNAVAILABLE);
  set_error(m, failed ? errbuf : NULL);
  free(fs);
  pvd_model_cfg_free(&cfg);
  if (failed) return pv_error(PV_EINVAL, "%s", errbuf);
  (void)n_new;
  return 0;

fail_list:
  free(fs);
fail_cfg:
  pvd_model_cfg_free(&cfg);
  {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pv_errmsg());
    set_error(m, msg);
    pthread_mutex_lock(&m->mu);
    if (m->n_live == 0) m->state = PVD_STATE_UNAVAILABLE;
    pthread_mutex_unlock(&m->mu);
    pv_error(rc, "%s", msg);
  }
  return rc;
}

static void scan_all(void) {
  DIR *d = opendir(R.s->repository);
  if (!d) {
    pv_log(PV_LOG_ERROR, "repository %s: %s", R.s->repository, strerror(errno));
  } else {
    for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m)) set_flags(m, -1, 0);
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char p[4096];
      struct stat st;
      snprintf(p, sizeof p, "%s/%s", R.s->repository, e->d_name);
      if (stat(p, &st) || !S_ISDIR(st.st_mode)) continue;
      pvd_model *m = model_get_or_add(e->d_name);
      if (!m) continue;
      set_flags(m, -1, 1);
      if (!m->explicit_unload) sync_model(m, -1, false);
    }
    closedir(d);
    for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m))
      if (!m->in_repo && m->n_live) publish(m, NULL, 0, PVD_STATE_UNAVAILABLE);
  }
  pthread_mutex_lock(&R.mu);
  R.scanned_once = true;
  pthread_mutex_unlock(&R.mu);
}

/* An uploaded temp file becomes REPO/<m>/<v>/model.<ext>: fsync'd, renamed
 * in the same file system, then loaded. A file that does not go live is
 * removed again, so the repository says what serves. */
static int do_upload(pvd_model *m, int64_t version, const char *tmp) {
  char magic[8] = {0};
  int fd = open(tmp, O_RDONLY);
  if (fd < 0) return pv_error(PV_EIO, "%s: %s", tmp, strerror(errno));
  ssize_t got = read(fd, magic, sizeof magic);
  close(fd);
  const char *name = got == 8 && !memcmp(magic, "PIVOTPVM", 8) ? "model.pvm" : "model.onnx";
  char dir[4096], path[4096 + 32], other[4096 + 32];
  snprintf(dir, sizeof dir, "%s/%s/%lld", R.s->repository, m->name, (long long)version);
  bool made_dir = mkdir(dir, 0755) == 0;
  if (!made_dir && errno != EEXIST) {
    int e = errno;
    unlink(tmp);
    return pv_error(PV_EIO, "%s: %s", dir, strerror(e));
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  /* A version holds one file: drop the other format if present. */
  snprintf(other, sizeof other, "%s/%s", dir, strcmp(name, "model.pvm") ? "model.pvm" : "model.onnx");
  unlink(other);
  if (rename(tmp, path)) {
    int e = errno;
    unlink(tmp);
    return pv_error(PV_EIO, "rename to %s: %s", path, strerror(e));
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) { fsync(dfd); close(dfd); }
  set_flags(m, 0, 1);
  int rc = sync_model(m, version, false);
  if (rc) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", pv_errmsg());
    /* Remove the file only if it is not what a live version runs. */
    pvd_version *v = pvd_model_get(m, version);
    if (!v || strcmp(v->path, path)) {
      unlink(path);
      if (made_dir) rmdir(dir);
    }
    if (v) pvd_version_release(v);
    return pv_error(rc, "%s", msg);
  }
  return 0;
}

static void run_job(job *j) {
  int rc = 0;
  pvd_model *m = j->model ? pvd_repo_find(j->model) : NULL;
  switch (j->kind) {
  case PVD_JOB_SCAN:
    pthread_mutex_lock(&R.mu);
    R.scan_pending = false;
    pthread_mutex_unlock(&R.mu);
    scan_all();
    break;
  case PVD_JOB_LOAD: {
    char dir[4096];
    struct stat st;
    snprintf(dir, sizeof dir, "%s/%s", R.s->repository, j->model);
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) {
      rc = pv_error(PV_ENOTFOUND, "model '%s' is not in the repository", j->model);
      break;
    }
    if (!m) m = model_get_or_add(j->model);
    if (!m) { rc = pv_error(PV_ENOMEM, "model"); break; }
    if (j->arg) {
      /* Check the override before adopting it. */
      pvd_model_cfg tmp;
      cfg_defaults(&tmp, R.s);
      rc = pvd_model_cfg_parse(&tmp, j->arg, "load request parameters.config");
      pvd_model_cfg_free(&tmp);
      if (rc) break;
    }
    char *old_override = m->cfg_override;
    m->cfg_override = j->arg ? strdup(j->arg) : NULL;
    set_flags(m, 0, 1);
    rc = sync_model(m, -1, true);
    if (rc) {
      free(m->cfg_override);
      m->cfg_override = old_override;
    } else {
      free(old_override);
      /* From now on the override is part of what "unchanged" means. */
    }
    break;
  }
  case PVD_JOB_UNLOAD:
    if (!m) { rc = pv_error(PV_ENOTFOUND, "unknown model '%s'", j->model); break; }
    set_flags(m, 1, -1);
    publish(m, NULL, 0, PVD_STATE_UNLOADED);
    break;
  case PVD_JOB_UPLOAD:
    if (!m) m = model_get_or_add(j->model);
    if (!m) { rc = pv_error(PV_ENOMEM, "model"); break; }
    rc = do_upload(m, j->version, j->arg);
    break;
  }
  if (j->done) j->done(j->done_arg, rc, rc ? pv_errmsg() : "");
}

static void *loader(void *arg) {
  (void)arg;
  pthread_mutex_lock(&R.mu);
  for (;;) {
    while (!R.stop && !R.jobs) pthread_cond_wait(&R.cv, &R.mu);
    if (R.stop && !R.jobs) break;
    job *j = R.jobs;
    R.jobs = j->next;
    if (!R.jobs) R.jobs_tail = &R.jobs;
    pthread_mutex_unlock(&R.mu);
    run_job(j);
    free(j->model);
    free(j->arg);
    free(j);
    pthread_mutex_lock(&R.mu);
    R.done++;
    pthread_cond_broadcast(&R.cv);
  }
  pthread_mutex_unlock(&R.mu);
  return NULL;
}

int pvd_repo_post(int kind, const char *model, int64_t version, const char *arg,
                  pvd_job_done done, void *done_arg) {
  pthread_mutex_lock(&R.mu);
  if (kind == PVD_JOB_SCAN && R.scan_pending) {
    pthread_mutex_unlock(&R.mu);
    return 0;
  }
  job *j = calloc(1, sizeof *j);
  if (!j || (model && !(j->model = strdup(model))) || (arg && !(j->arg = strdup(arg)))) {
    if (j) { free(j->model); free(j); }
    pthread_mutex_unlock(&R.mu);
    return pv_error(PV_ENOMEM, "loader job");
  }
  j->kind = kind;
  j->version = version;
  j->done = done;
  j->done_arg = done_arg;
  if (kind == PVD_JOB_SCAN) R.scan_pending = true;
  *R.jobs_tail = j;
  R.jobs_tail = &j->next;
  R.posted++;
  pthread_cond_broadcast(&R.cv);
  pthread_mutex_unlock(&R.mu);
  return 0;
}

void pvd_repo_sync(void) {
  pthread_mutex_lock(&R.mu);
  uint64_t target = R.posted;
  while (R.done < target) pthread_cond_wait(&R.cv, &R.mu);
  pthread_mutex_unlock(&R.mu);
}

/* Temp files of uploads cut short by a crash (kill -9, power loss) never
 * went live: remove them before HTTP starts, when no upload can be open. */
static void remove_stale_uploads(const char *root) {
  DIR *d = opendir(root);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char md[4096];
    if (snprintf(md, sizeof md, "%s/%s", root, e->d_name) >= (int)sizeof md) continue;
    DIR *m = opendir(md);
    if (!m) continue;
    struct dirent *f;
    while ((f = readdir(m))) {
      if (strncmp(f->d_name, ".upload-", 8)) continue;
      if (unlinkat(dirfd(m), f->d_name, 0) == 0)
        pv_log(PV_LOG_WARN, "removed %s/%s: an upload that never finished", md, f->d_name);
    }
    closedir(m);
  }
  closedir(d);
}

int pvd_repo_init(const pvd_settings *s, void (*wake_main)(void)) {
  remove_stale_uploads(s->repository);
  R.s = s;
  R.wake_main = wake_main;
  R.models_tail = &R.models;
  R.jobs_tail = &R.jobs;
  if (pthread_create(&R.loader, NULL, loader, NULL))
    return pv_error(PV_EINTERNAL, "cannot start the loader thread");
  R.loader_started = true;
  return 0;
}

void pvd_repo_shutdown(void) {
  if (R.loader_started) {
    pthread_mutex_lock(&R.mu);
    R.stop = true;
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
    pthread_join(R.loader, NULL);
    R.loader_started = false;
  }
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m)) publish(m, NULL, 0, PVD_STATE_UNLOADED);
  pvd_repo_reap();
  pvd_model *m = R.models;
  while (m) {
    pvd_model *next = m->next;
    pthread_mutex_destroy(&m->mu);
    free(m->name);
    free(m->last_error);
    free(m->cfg_override);
    free(m);
    m = next;
  }
  R.models = NULL;
}
