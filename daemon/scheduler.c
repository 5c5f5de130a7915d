/* Per-version request queue with dynamic batching along dim 0 and a fixed
 * set of worker threads, each with its own pv_exec (activation memory), so
 * HTTP threads only enqueue and never wait on compute. */
#include "pivotd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_GATHER 256
#define PVD_INLINE_SLOTS 4

struct pvd_sched {
  pvd_version *ver;        /* not retained: the version owns the sched */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pvd_req **ring;
  int cap, head, count;
  bool stop;
  bool batchable;          /* every input and output has a batch dim 0, and no
                              output shape depends on the data */
  int n_workers;
  pthread_t *threads;
  pv_exec **execs;
  /* Inline runs on the calling HTTP threads (pvd_sched_try_inline): each
   * slot its own activation memory, made on first use, one run at a time,
   * so that several HTTP threads can each run one. */
  struct {
    pthread_mutex_t mu;
    pv_exec *exec;
  } inl[PVD_INLINE_SLOTS];
};

static int req_batch(const pvd_req *r) {
  return r->n_in > 0 && r->in[0].ndim > 0 ? (int)r->in[0].dims[0] : 1;
}

/* Same dtype and non-batch dims on every input: they can share a run. */
static bool compatible(const pvd_req *a, const pvd_req *b) {
  for (int i = 0; i < a->n_in; i++) {
    if (a->in[i].ndim != b->in[i].ndim || a->in[i].dtype != b->in[i].dtype) return false;
    for (int d = 1; d < a->in[i].ndim; d++)
      if (a->in[i].dims[d] != b->in[i].dims[d]) return false;
  }
  return true;
}

static void fail_req(pvd_req *r, int status, int reason, const char *msg) {
  pvd_req_error(r, status, reason, "%s", msg);
  r->t_end = pvd_now_ns();
  r->complete(r);
}

static void record(pvd_req *r, int batch_total) {
  pvd_vstats *st = &r->ver->stats;
  uint64_t total = r->t_end - r->t_recv;
  pvd_stat_add(&st->success, total);
  pvd_stat_add(&st->queue, r->t_start - r->t_enq);
  pvd_stat_add(&st->compute_input, r->t_infer0 - r->t_start);
  pvd_stat_add(&st->compute_infer, r->t_infer1 - r->t_infer0);
  pvd_stat_add(&st->compute_output, r->t_end - r->t_infer1);
  atomic_fetch_add_explicit(&st->inference_count, (uint64_t)req_batch(r), memory_order_relaxed);
  pvd_hist_add(&st->h_request, total);
  pvd_hist_add(&st->h_queue, r->t_start - r->t_enq);
  pvd_hist_add(&st->h_compute, r->t_infer1 - r->t_infer0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  atomic_store_explicit(&st->last_inference_ms,
                        (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                        memory_order_relaxed);
  (void)batch_total;
}

/* Run n requests (n >= 1, compatible) as one batch. */
static void run_batch(pvd_sched *s, pv_exec *e, pvd_req **rs, int n) {
  pv_model *pm = s->ver->pm;
  int n_in = pv_model_n_inputs(pm), n_out = pv_model_n_outputs(pm);
  pv_tensor in[16], out[16];
  void *own[16] = {0};
  uint64_t t0 = pvd_now_ns();
  int total = 0;
  for (int k = 0; k < n; k++) { rs[k]->t_start = t0; total += req_batch(rs[k]); }
  if (n_in > 16 || n_out > 16) {
    for (int k = 0; k < n; k++) fail_req(rs[k], 500, PVD_FAIL_INTERNAL, "model has more than 16 inputs or outputs");
    return;
  }
  if (n == 1) {
    memcpy(in, rs[0]->in, sizeof(pv_tensor) * (size_t)n_in);
  } else {
    for (int i = 0; i < n_in; i++) {
      in[i] = rs[0]->in[i];
      in[i].dims[0] = total;
      size_t bytes = pv_tensor_nbytes(&in[i]);
      own[i] = bytes == SIZE_MAX ? NULL : pv_aligned_alloc(bytes ? bytes : 1);
      if (!own[i]) {
        for (int j = 0; j < i; j++) pv_free(own[j]);
        for (int k = 0; k < n; k++) fail_req(rs[k], 500, PVD_FAIL_INTERNAL, "out of memory for the batch");
        return;
      }
      in[i].data = own[i];
      char *dst = own[i];
      for (int k = 0; k < n; k++) {
        size_t b = pv_tensor_nbytes(&rs[k]->in[i]);
        memcpy(dst, rs[k]->in[i].data, b);
        dst += b;
      }
    }
  }
  uint64_t t1 = pvd_now_ns();
  memset(out, 0, sizeof out);
  int rc = pv_exec_run(e, in, n_in, out, n_out);
  uint64_t t2 = pvd_now_ns();
  for (int i = 0; i < n_in; i++) pv_free(own[i]);
  pvd_vstats *st = &s->ver->stats;
  atomic_fetch_add_explicit(&st->execution_count, 1, memory_order_relaxed);
  if (total >= 1 && total <= PVD_MAX_BATCH_STATS) pvd_stat_add(&st->batch[total], t2 - t1);
  if (rc) {
    const char *msg = pv_errmsg();
    for (int k = 0; k < n; k++) {
      rs[k]->t_infer0 = t1;
      rs[k]->t_infer1 = t2;
      pvd_stat_add(&st->fail, t2 - rs[k]->t_recv);
      fail_req(rs[k], rc == PV_ESHAPE || rc == PV_ETYPE || rc == PV_EINVAL ? 400 : 500,
               rc == PV_ESHAPE || rc == PV_ETYPE || rc == PV_EINVAL ? PVD_FAIL_BAD_REQUEST
                                                                   : PVD_FAIL_INTERNAL, msg);
    }
    return;
  }
  int64_t off = 0;
  for (int k = 0; k < n; k++) {
    pvd_req *r = rs[k];
    r->t_infer0 = t1;
    r->t_infer1 = t2;
    pv_tensor view[16];
    int b = req_batch(r);
    for (int o = 0; o < n_out; o++) {
      view[o] = out[o];
      if (n > 1) {
        /* Slice rows [off, off+b) of a batched output. */
        pv_tensor row = out[o];
        row.dims[0] = 1;
        size_t rb = pv_tensor_nbytes(&row);
        view[o].dims[0] = b;
        view[o].data = (char *)out[o].data + (size_t)off * rb;
      }
    }
    off += b;
    pvd_infer_respond(r, view);
    r->t_end = pvd_now_ns();
    if (r->http_status == 200) record(r, total);
    else pvd_stat_add(&st->fail, r->t_end - r->t_recv);
    r->complete(r);
  }
}

/* A request with its own run (detect): alone, never batched. */
static void run_custom(pvd_sched *s, pv_exec *e, pvd_req *r) {
  pvd_vstats *st = &s->ver->stats;
  r->t_start = r->t_infer0 = pvd_now_ns();
  r->run(r, e);
  r->t_infer1 = r->t_end = pvd_now_ns();
  atomic_fetch_add_explicit(&st->execution_count, 1, memory_order_relaxed);
  pvd_stat_add(&st->batch[1], r->t_infer1 - r->t_infer0);
  if (r->http_status == 200) record(r, 1);
  else pvd_stat_add(&st->fail, r->t_end - r->t_recv);
  r->complete(r);
}

typedef struct worker_arg {
  pvd_sched *s;
  int idx;
} worker_arg;

static void *worker(void *arg) {
  worker_arg wa = *(worker_arg *)arg;
  free(arg);
  pvd_sched *s = wa.s;
  pv_exec *e = s->execs[wa.idx];
  pvd_req *batch[MAX_GATHER];
  int max_batch = s->ver->cfg.max_batch > 0 ? s->ver->cfg.max_batch : 1;
  uint64_t delay_ns = (uint64_t)(s->ver->cfg.max_queue_delay_us > 0 ? s->ver->cfg.max_queue_delay_us : 0) * 1000;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->stop && s->count == 0) pthread_cond_wait(&s->cv, &s->mu);
    if (s->count == 0) break; /* stopping and drained */
    pvd_req *first = s->ring[s->head];
    s->head = (s->head + 1) % s->cap;
    s->count--;
    int n = 1, total = req_batch(first);
    batch[0] = first;
    if (s->batchable && max_batch > 1 && !first->run) {
      uint64_t until = first->t_enq + delay_ns;
      for (;;) {
        /* Take compatible requests from the head while they fit. */
        while (s->count > 0 && n < MAX_GATHER) {
          pvd_req *r = s->ring[s->head];
          if (r->run || !compatible(first, r) || total + req_batch(r) > max_batch) break;
          s->head = (s->head + 1) % s->cap;
          s->count--;
          batch[n++] = r;
          total += req_batch(r);
        }
        if (total >= max_batch || s->stop || s->count > 0 || delay_ns == 0) break;
        uint64_t now = pvd_now_ns();
        if (now >= until) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t wait = until - now;
        ts.tv_sec += (time_t)(wait / 1000000000ull);
        ts.tv_nsec += (long)(wait % 1000000000ull);
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
      }
    }
    pthread_mutex_unlock(&s->mu);
    /* Drop requests whose deadline passed while queued. */
    uint64_t now = pvd_now_ns();
    int keep = 0;
    for (int k = 0; k < n; k++) {
      if (batch[k]->deadline && now > batch[k]->deadline) {
        pvd_stat_add(&s->ver->stats.fail, now - batch[k]->t_recv);
        fail_req(batch[k], 503, PVD_FAIL_TIMEOUT, "request timed out in the queue");
      } else {
        batch[keep++] = batch[k];
      }
    }
    if (keep && batch[0]->run) run_custom(s, e, batch[0]);
    else if (keep) run_batch(s, e, batch, keep);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

static bool all_batch_dim(pv_model *pm) {
  if (pv_model_data_shaped(pm)) return false;
  for (int i = 0; i < pv_model_n_inputs(pm); i++) {
    const pv_value *v = pv_model_input(pm, i);
    if (v->ndim < 1 || v->dims[0] != PV_DIM_BATCH) return false;
  }
  for (int i = 0; i < pv_model_n_outputs(pm); i++) {
    const pv_value *v = pv_model_output(pm, i);
    if (v->ndim < 1 || v->dims[0] != PV_DIM_BATCH) return false;
  }
  return true;
}

pvd_sched *pvd_sched_new(pvd_version *v) {
  pvd_sched *s = calloc(1, sizeof *s);
  if (!s) { pv_error(PV_ENOMEM, "scheduler"); return NULL; }
  s->ver = v;
  s->cap = v->cfg.queue_size > 0 ? v->cfg.queue_size : 1024;
  s->n_workers = v->cfg.workers > 0 ? v->cfg.workers : 1;
  s->batchable = all_batch_dim(v->pm);
  s->ring = calloc((size_t)s->cap, sizeof *s->ring);
  s->threads = calloc((size_t)s->n_workers, sizeof *s->threads);
  s->execs = calloc((size_t)s->n_workers, sizeof *s->execs);
  if (!s->ring || !s->threads || !s->execs) { pv_error(PV_ENOMEM, "scheduler"); goto free_arrays; }
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  for (int i = 0; i < PVD_INLINE_SLOTS; i++) pthread_mutex_init(&s->inl[i].mu, NULL);
  int started = 0;
  for (int i = 0; i < s->n_workers; i++) {
    s->execs[i] = pv_exec_new(v->pm);
    if (!s->execs[i]) goto stop_workers;
    worker_arg *wa = malloc(sizeof *wa);
    if (!wa) { pv_error(PV_ENOMEM, "worker"); pv_exec_free(s->execs[i]); s->execs[i] = NULL; goto stop_workers; }
    wa->s = s;
    wa->idx = i;
    if (pthread_create(&s->threads[i], NULL, worker, wa)) {
      free(wa);
      pv_exec_free(s->execs[i]);
      s->execs[i] = NULL;
      pv_error(PV_EINTERNAL, "cannot start a worker thread");
      goto stop_workers;
    }
    started++;
  }
  return s;

stop_workers:
  pthread_mutex_lock(&s->mu);
  s->stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < started; i++) {
    pthread_join(s->threads[i], NULL);
    pv_exec_free(s->execs[i]);
  }
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  for (int i = 0; i < PVD_INLINE_SLOTS; i++) pthread_mutex_destroy(&s->inl[i].mu);
free_arrays:
  free(s->ring);
  free(s->threads);
  free(s->execs);
  free(s);
  return NULL;
}

void pvd_sched_free(pvd_sched *s) {
  if (!s) return;
  pthread_mutex_lock(&s->mu);
  s->stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < s->n_workers; i++) pthread_join(s->threads[i], NULL);
  for (int i = 0; i < s->n_workers; i++) pv_exec_free(s->execs[i]);
  /* An inline run holds a reference to the version, so none is running. */
  for (int i = 0; i < PVD_INLINE_SLOTS; i++) {
    pv_exec_free(s->inl[i].exec);
    pthread_mutex_destroy(&s->inl[i].mu);
  }
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s->ring);
  free(s->threads);
  free(s->execs);
  free(s);
}

int pvd_sched_submit(pvd_sched *s, pvd_req *r) {
  pthread_mutex_lock(&s->mu);
  if (s->count >= s->cap || s->stop) {
    pthread_mutex_unlock(&s->mu);
    return PV_EBUSY;
  }
  r->t_enq = pvd_now_ns();
  s->ring[(s->head + s->count) % s->cap] = r;
  s->count++;
  /* One waiter is enough unless a batching worker is holding for more. */
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  return 0;
}

bool pvd_sched_try_inline(pvd_sched *s, pvd_req *r) {
  pvd_vstats *st = &s->ver->stats;
  uint64_t n = atomic_load_explicit(&st->compute_infer.count, memory_order_relaxed);
  uint64_t ns = atomic_load_explicit(&st->compute_infer.ns, memory_order_relaxed);
  /* A model whose mean compute is below inline_max_us (default 20) runs
   * inline when its queue is empty: the two thread hand-offs (HTTP thread
   * -> worker -> HTTP thread) cost more than such a run, and the HTTP
   * thread is held no longer than it takes to parse a request. Batching
   * configured: a lone request may still be joined by others. Unmeasured
   * (the warm-up is not counted) or slow: the workers. */
  uint64_t max_ns = (uint64_t)s->ver->cfg.inline_max_us * 1000;
  if ((s->batchable && s->ver->cfg.max_batch > 1) || n < 8 || ns / n >= max_ns)
    return false;
  int k = 0;
  while (k < PVD_INLINE_SLOTS && pthread_mutex_trylock(&s->inl[k].mu)) k++;
  if (k == PVD_INLINE_SLOTS) return false;
  pthread_mutex_lock(&s->mu);
  bool idle = s->count == 0 && !s->stop;
  pthread_mutex_unlock(&s->mu);
  if (!idle || (!s->inl[k].exec && !(s->inl[k].exec = pv_exec_new(s->ver->pm)))) {
    pthread_mutex_unlock(&s->inl[k].mu);
    return false;
  }
  r->t_enq = pvd_now_ns();
  run_batch(s, s->inl[k].exec, &r, 1);
  pthread_mutex_unlock(&s->inl[k].mu);
  return true;
}

int pvd_sched_depth(pvd_sched *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->count;
  pthread_mutex_unlock(&s->mu);
  return n;
}
