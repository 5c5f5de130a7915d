/* pivot-bench: the load generator's shared types (pivot-bench.c drives the
 * load, pivot-bench-stats.c turns samples into percentiles, parses the
 * server's statistics and writes the CSV/JSON reports). */
#ifndef PIVOT_BENCH_H
#define PIVOT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "pivotctl-http.h"

/* Cumulative server statistics of one model, summed over its versions. */
typedef struct pvb_server {
  double ok_n, ok_ns;           /* success: requests and total ns */
  double queue_n, queue_ns;     /* time in the model's queue */
  double compute_n, compute_ns; /* compute_infer, per request */
  double execs;                 /* batches run */
  bool valid;
} pvb_server;

/* One measured level (a concurrency or a rate) of one model. */
typedef struct pvb_result {
  char model[256];
  long long version;        /* -1: the latest */
  int concurrency;          /* 0 in rate mode */
  double rate;              /* 0 in concurrency mode */
  double throughput;        /* successful requests per second */
  double p50, p90, p95, p99, mean; /* client latency, µs */
  double srv_total, srv_queue, srv_compute, srv_overhead; /* server, µs per request */
  double srv_batch;         /* mean batch size on the server */
  long long requests, errors;
  long long late;           /* rate mode: sends delayed, every slot busy */
  int windows;
  bool stable;
} pvb_result;

/* Latency samples (µs) of a window. */
typedef struct pvb_samples {
  double *v;
  size_t n, cap;
} pvb_samples;

int pvb_samples_add(pvb_samples *s, double us);
/* Sorts in place; p in [0,100]; 0 when empty. */
double pvb_percentile(pvb_samples *s, double p);

/* Sum of the model's stats (versions matched by number; a version that
 * disappears between two snapshots is dropped from both). */
int pvb_server_fetch(pvc_client *c, const char *model, long long version, cJSON **snap);
void pvb_server_delta(const cJSON *before, const cJSON *after, pvb_server *d);

void pvb_print_header(FILE *f, bool rate_mode);
void pvb_print_row(FILE *f, const pvb_result *r);
int pvb_write_csv(const char *path, const pvb_result *r, int n);
int pvb_write_json(const char *path, const char *url, bool binary, double window_s,
                   const pvb_result *r, int n, const pvb_result *cmp, int n_cmp);
#endif
