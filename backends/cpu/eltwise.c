/* Elementwise Add of two fp32 tensors of one shape (a residual
 * connection), with the node's fused activation, in vectors and over the
 * pool. The reference op runs it on one thread with a broadcast index per
 * element: ResNet-18's eight Adds took 1.4 ms of one thread there, and
 * with two threads the caller ran them alone. Internal to the backend. */
#include "cpu-impl.h"

#define ADD_CHUNK 16384 /* floats per work item: 64 KB of each operand */

typedef struct add_job {
  const float *a, *b;
  float *y;
  int64_t n;
  pv_act act;
  float alpha, beta;
} add_job;

PV_CPU_CLONES static void add_chunk(void *arg, int64_t item, int tid) {
  (void)tid;
  const add_job *j = arg;
  int64_t i0 = item * ADD_CHUNK, i1 = i0 + ADD_CHUNK < j->n ? i0 + ADD_CHUNK : j->n;
  const float *restrict a = j->a, *restrict b = j->b;
  float *restrict y = j->y;
  switch (j->act) { /* the switch outside the loops, so that they vectorise */
  case PV_ACT_NONE:
    for (int64_t i = i0; i < i1; i++) y[i] = a[i] + b[i];
    break;
  case PV_ACT_RELU:
    for (int64_t i = i0; i < i1; i++) {
      float v = a[i] + b[i];
      y[i] = v > 0 ? v : 0;
    }
    break;
  default:
    for (int64_t i = i0; i < i1; i++)
      y[i] = pv_cpu_act1(a[i] + b[i], j->act, j->alpha, j->beta);
  }
}

void pv_cpu_add(pv_cpu_pool *pool, const float *a, const float *b, float *y,
                int64_t n, pv_act act, float alpha, float beta) {
  add_job j = {a, b, y, n, act, alpha, beta};
  int64_t items = (n + ADD_CHUNK - 1) / ADD_CHUNK;
  /* Below a few chunks a wake-up costs more than the adds it shares. */
  int use = (int)(n / (4 * ADD_CHUNK)) + 1;
  pv_cpu_pool_run_max(pool, items, use, add_chunk, &j);
}
