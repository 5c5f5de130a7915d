/* The CPU backend's own thread pool: the caller plus threads-1 workers
 * claim work items from an atomic counter. Workers spin briefly on the
 * generation counter (layers follow each other within microseconds), then
 * sleep on a condition variable so an idle daemon burns no CPU.
 *
 * Reentrancy: parallel sections from different threads are serialised on
 * run_lock. Each section already uses every core, so sharing the pool
 * between two requests would only add contention; serialising keeps the
 * per-thread scratch simple and the order fair (pthread mutex FIFO-ish).
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu-impl.h"

#define POOL_SPIN 4000 /* pause iterations before sleeping (~0.2 ms) */

typedef struct worker {
  pthread_t th;
  struct pv_cpu_pool *pool;
  int tid;
  float *scratch;
  size_t scratch_len;
} worker;

struct pv_cpu_pool {
  int n; /* threads, caller included */
  pthread_mutex_t run_lock;
  pthread_mutex_t mu;
  pthread_cond_t cv_work, cv_done;
  atomic_uint gen;
  atomic_bool stop;
  pv_cpu_task_fn fn;
  void *arg;
  int64_t n_items;
  atomic_llong next;
  atomic_int active;
  int started; /* workers created */
  pthread_mutex_t call_lock; /* guards call_scratch */
  float *call_scratch;
  size_t call_len;
  pthread_mutex_t op_lock; /* guards op_scratch; taken before call_lock */
  float *op_scratch;
  size_t op_len;
  worker *w;   /* [n]; w[0] is the caller's slot */
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void run_items(pv_cpu_pool *p, int tid) {
  int64_t i;
  while ((i = atomic_fetch_add(&p->next, 1)) < p->n_items) p->fn(p->arg, i, tid);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  pv_cpu_pool *p = w->pool;
  unsigned seen = 0;
  for (;;) {
    int s = 0;
    while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop) &&
           s++ < POOL_SPIN)
      cpu_relax();
    if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
      pthread_mutex_lock(&p->mu);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv_work, &p->mu);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop)) return NULL;
    seen = atomic_load(&p->gen);
    run_items(p, w->tid);
    if (atomic_fetch_sub(&p->active, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->cv_done);
      pthread_mutex_unlock(&p->mu);
    }
  }
}

static int online_cpus(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

pv_cpu_pool *pv_cpu_pool_new(int threads, bool pin) {
  if (threads <= 0) threads = online_cpus();
  if (threads > 1024) {
    pv_error(PV_EINVAL, "cpu: %d threads is too many (max 1024)", threads);
    return NULL;
  }
  pv_cpu_pool *p = calloc(1, sizeof *p);
  if (!p) goto fail;
  p->w = calloc((size_t)threads, sizeof *p->w);
  if (!p->w) goto free_pool;
  p->n = threads;
  pthread_mutex_init(&p->run_lock, NULL);
  pthread_mutex_init(&p->call_lock, NULL);
  pthread_mutex_init(&p->op_lock, NULL);
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv_work, NULL);
  pthread_cond_init(&p->cv_done, NULL);
  int ncpu = online_cpus();
  for (int i = 0; i < threads; i++) {
    p->w[i].pool = p;
    p->w[i].tid = i;
  }
  for (int i = 1; i < threads; i++) {
    if (pthread_create(&p->w[i].th, NULL, worker_main, &p->w[i])) {
      pv_cpu_pool_free(p);
      pv_error(PV_EBACKEND, "cpu: cannot start worker thread %d", i);
      return NULL;
    }
    p->started++;
    if (pin) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(i % ncpu, &set);
      /* Pinning is a hint: a container may forbid it, which is harmless. */
      (void)pthread_setaffinity_np(p->w[i].th, sizeof set, &set);
    }
  }
  return p;

free_pool:
  free(p);
fail:
  pv_error(PV_ENOMEM, "cpu: cannot allocate thread pool");
  return NULL;
}

void pv_cpu_pool_free(pv_cpu_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store(&p->stop, true);
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i <= p->started; i++) pthread_join(p->w[i].th, NULL);
  for (int i = 0; i < p->n; i++) pv_free(p->w[i].scratch);
  pthread_cond_destroy(&p->cv_work);
  pthread_cond_destroy(&p->cv_done);
  pthread_mutex_destroy(&p->mu);
  pthread_mutex_destroy(&p->run_lock);
  pthread_mutex_destroy(&p->call_lock);
  pv_free(p->call_scratch);
  pthread_mutex_destroy(&p->op_lock);
  pv_free(p->op_scratch);
  free(p->w);
  free(p);
}

int pv_cpu_pool_threads(const pv_cpu_pool *p) {
  return p->n;
}

/* A scratch buffer of at least `bytes`, grown (contents dropped) when
 * short; NULL if out of memory. */
static float *scratch_grow(float **buf, size_t *len, size_t bytes) {
  if (*len >= bytes) return *buf;
  pv_free(*buf);
  *buf = pv_aligned_alloc(bytes);
  *len = *buf ? bytes : 0;
  return *buf;
}

float *pv_cpu_pool_scratch(pv_cpu_pool *p, int tid, size_t bytes) {
  return scratch_grow(&p->w[tid].scratch, &p->w[tid].scratch_len, bytes);
}

void pv_cpu_pool_call_lock(pv_cpu_pool *p) {
  pthread_mutex_lock(&p->call_lock);
}

void pv_cpu_pool_call_unlock(pv_cpu_pool *p) {
  pthread_mutex_unlock(&p->call_lock);
}

float *pv_cpu_pool_call_scratch(pv_cpu_pool *p, size_t bytes) {
  return scratch_grow(&p->call_scratch, &p->call_len, bytes);
}

void pv_cpu_pool_op_lock(pv_cpu_pool *p) {
  pthread_mutex_lock(&p->op_lock);
}

void pv_cpu_pool_op_unlock(pv_cpu_pool *p) {
  pthread_mutex_unlock(&p->op_lock);
}

float *pv_cpu_pool_op_scratch(pv_cpu_pool *p, size_t bytes) {
  return scratch_grow(&p->op_scratch, &p->op_len, bytes);
}

typedef struct blocked_job {
  pv_cpu_task_fn fn;
  void *arg;
  int64_t n, per;
} blocked_job;

static void run_block(void *arg, int64_t blk, int tid) {
  const blocked_job *b = arg;
  for (int64_t i = blk * b->per; i < b->n && i < (blk + 1) * b->per; i++)
    b->fn(b->arg, i, tid);
}

void pv_cpu_pool_run_blocked(pv_cpu_pool *p, int64_t n, int max_threads,
                             pv_cpu_task_fn fn, void *arg) {
  if (n <= 0) return;
  int64_t want = 8 * (int64_t)p->n;
  blocked_job b = {fn, arg, n, n > want ? (n + want - 1) / want : 1};
  pv_cpu_pool_run_max(p, (n + b.per - 1) / b.per, max_threads, run_block, &b);
}

void pv_cpu_pool_run(pv_cpu_pool *p, int64_t n, pv_cpu_task_fn fn, void *arg) {
  pv_cpu_pool_run_max(p, n, p->n, fn, arg);
}

void pv_cpu_pool_run_max(pv_cpu_pool *p, int64_t n, int max_threads,
                         pv_cpu_task_fn fn, void *arg) {
  if (n <= 0) return;
  pthread_mutex_lock(&p->run_lock);
  p->fn = fn;
  p->arg = arg;
  p->n_items = n;
  atomic_store(&p->next, 0);
  int helpers = p->n - 1;
  if (helpers > n - 1) helpers = (int)(n - 1);
  if (helpers > max_threads - 1) helpers = max_threads - 1;
  if (helpers <= 0) {
    run_items(p, 0);
    pthread_mutex_unlock(&p->run_lock);
    return;
  }
  /* All workers wake (they cannot tell which of them is needed); the
   * ones that find no item left return at once. */
  atomic_store(&p->active, p->n - 1);
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->gen, 1);
  pthread_cond_broadcast(&p->cv_work);
  pthread_mutex_unlock(&p->mu);
  run_items(p, 0);
  for (int s = 0; atomic_load(&p->active) > 0 && s < POOL_SPIN; s++)
    cpu_relax();
  if (atomic_load(&p->active) > 0) {
    pthread_mutex_lock(&p->mu);
    while (atomic_load(&p->active) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&p->run_lock);
}
