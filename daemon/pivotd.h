/* pivotd internals shared by the daemon's files (not installed).
 *
 * Threads: the main thread runs a libuv loop (signals, repository poll
 * timer, freeing retired versions); libmicrohttpd runs its own polling
 * thread(s); each loaded model version has N worker threads; one loader
 * thread loads and swaps models so no HTTP thread waits on a load. */
#ifndef PIVOTD_H
#define PIVOTD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pivot.h"

/* ------------------------------------------------------------ config.c */

typedef struct pvd_settings {
  char *config_path;     /* JSON file read at start and on SIGHUP */
  char *repository;      /* model repository root */
  char *listen_host;     /* address to bind, default 127.0.0.1 */
  int listen_port;       /* default 8000; 0 = any free port */
  char *token;           /* bearer token for admin endpoints; NULL = none */
  int threads;           /* compute threads per model (pv_load_opts) */
  int http_threads;      /* libmicrohttpd polling threads */
  size_t max_body;       /* largest infer/admin request body, bytes */
  size_t max_upload;     /* largest uploaded model file, bytes */
  int max_connections;   /* concurrent HTTP connections */
  int request_timeout;   /* seconds: idle connection and queue deadline */
  int repo_poll_ms;      /* repository poll period; 0 = no polling */
  bool unload_first;     /* free the old version before loading the new */
  int drain_timeout;     /* seconds to wait for in-flight requests */
  char *backend_dir;     /* where backends live; NULL = built-in */
  char *port_file;       /* write the bound port here (tests) */
} pvd_settings;

void pvd_settings_init(pvd_settings *s);
void pvd_settings_free(pvd_settings *s);
/* Apply a JSON config file; an unknown or invalid field is an error
 * naming it (pv_errmsg). */
int pvd_settings_load_file(pvd_settings *s, const char *path);
/* Parse argv; sets *cfg_path to the --config value (or default). Returns
 * 0, 1 when --help/--version was handled, or a negative error. */
int pvd_settings_parse_args(pvd_settings *s, int argc, char **argv);

/* ------------------------------------------------------------ metrics.c */

#define PVD_NBUCKETS 18
extern const double pvd_bucket_le_s[PVD_NBUCKETS]; /* seconds */

typedef struct pvd_hist {
  _Atomic uint64_t bucket[PVD_NBUCKETS + 1]; /* last: +Inf */
  _Atomic uint64_t sum_ns;
  _Atomic uint64_t count;
} pvd_hist;
void pvd_hist_add(pvd_hist *h, uint64_t ns);

typedef struct pvd_stat {
  _Atomic uint64_t count, ns;
} pvd_stat;
static inline void pvd_stat_add(pvd_stat *s, uint64_t ns) {
  atomic_fetch_add_explicit(&s->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&s->ns, ns, memory_order_relaxed);
}

#define PVD_MAX_BATCH_STATS 64
typedef struct pvd_vstats {
  pvd_stat success, fail, queue, compute_input, compute_infer, compute_output;
  pvd_stat batch[PVD_MAX_BATCH_STATS + 1]; /* index = batch size */
  _Atomic uint64_t inference_count, execution_count;
  _Atomic uint64_t last_inference_ms;
  pvd_hist h_request, h_queue, h_compute;
} pvd_vstats;

enum pvd_fail_reason {
  PVD_FAIL_BAD_REQUEST,
  PVD_FAIL_QUEUE_FULL,
  PVD_FAIL_TIMEOUT,
  PVD_FAIL_INTERNAL,
  PVD_FAIL_NOT_READY,
  PVD_FAIL_N
};
extern const char *const pvd_fail_names[PVD_FAIL_N];

uint64_t pvd_now_ns(void); /* CLOCK_MONOTONIC */
size_t pvd_rss_bytes(void);

/* ------------------------------------------------------------ repository.c */

typedef struct pvd_model_cfg {
  char **backends;       /* NULL-terminated preference list or NULL */
  int max_batch;         /* largest dynamic batch (1 = no batching) */
  int64_t max_queue_delay_us;
  int queue_size;
  int workers;
  int threads;
  int64_t inline_max_us; /* mean compute below which a lone request runs on the HTTP thread; 0 = never */
  int policy;            /* PVD_POLICY_* */
  int latest_n;
  int64_t *specific;     /* versions for PVD_POLICY_SPECIFIC */
  int n_specific;
} pvd_model_cfg;
enum { PVD_POLICY_LATEST, PVD_POLICY_ALL, PVD_POLICY_SPECIFIC };

struct pvd_sched;
struct pvd_model;

/* One loaded version. Anyone who can reach it holds a reference; the last
 * release hands it to the main loop, which stops its workers and frees it. */
typedef struct pvd_version {
  _Atomic int refs;
  struct pvd_model *model; /* owner; outlives its versions */
  int64_t version;
  char *path;
  int64_t file_mtime_ns, file_size;
  pv_model *pm;
  char backend[32];        /* most preferred backend running a node, for labels */
  pvd_model_cfg cfg;       /* copy used by its scheduler */
  struct pvd_sched *sched;
  pvd_vstats stats;
  uint64_t load_ns;
  struct pvd_version *next_dead;
} pvd_version;

enum { PVD_STATE_UNAVAILABLE, PVD_STATE_LOADING, PVD_STATE_READY,
       PVD_STATE_UNLOADED };

#define PVD_MAX_VERSIONS 16
typedef struct pvd_model {
  char *name;
  pthread_mutex_t mu;      /* guards the fields below */
  pvd_version *live[PVD_MAX_VERSIONS]; /* published, ascending version */
  int n_live;
  int state;
  bool explicit_unload;    /* unloaded by request: the poller keeps off */
  bool in_repo;            /* seen in the last scan */
  char *last_error;
  char *cfg_override;      /* JSON from a load request, or NULL */
  _Atomic uint64_t fails[PVD_FAIL_N];
  _Atomic uint64_t loads_ok, loads_failed;
  double last_load_s;
  struct pvd_model *next;
} pvd_model;

void pvd_version_retain(pvd_version *v);
void pvd_version_release(pvd_version *v);

int pvd_repo_init(const pvd_settings *s, void (*wake_main)(void));
void pvd_repo_shutdown(void);
/* Main-loop side: free versions whose last reference went away. */
void pvd_repo_reap(void);
/* Find a model (NULL if unknown). Models are never freed while running. */
pvd_model *pvd_repo_find(const char *name);
pvd_model *pvd_repo_first(void);
/* The model after m: models are appended while others walk the list
 * without the repository lock, so the link is read with acquire order. */
static inline pvd_model *pvd_repo_next(const pvd_model *m) {
  return __atomic_load_n(&m->next, __ATOMIC_ACQUIRE);
}
/* Retain the version (-1 = latest published). NULL if none. */
pvd_version *pvd_model_get(pvd_model *m, int64_t version);
bool pvd_repo_ready(void);
/* Loader jobs. `done` (may be NULL) runs on the loader thread with the
 * result code and pv_errmsg() set. */
typedef void (*pvd_job_done)(void *arg, int rc, const char *msg);
enum { PVD_JOB_SCAN, PVD_JOB_LOAD, PVD_JOB_UNLOAD, PVD_JOB_UPLOAD };
int pvd_repo_post(int kind, const char *model, int64_t version,
                  const char *arg, pvd_job_done done, void *done_arg);
/* Wait until the loader has run every job posted so far. */
void pvd_repo_sync(void);
int pvd_model_cfg_parse(pvd_model_cfg *c, const char *json, const char *what);
void pvd_model_cfg_free(pvd_model_cfg *c);

/* ------------------------------------------------------------ scheduler.c */

/* One inference request from parse to response. */
typedef struct pvd_req {
  void *conn;              /* struct MHD_Connection *, resumed when done */
  pvd_version *ver;        /* retained */
  int n_in;
  pv_tensor *in;           /* model input order; data owned via in_own */
  void **in_own;           /* buffers to free (pv_free), or NULL entries */
  int n_out;               /* requested outputs (model order) */
  int *out_idx;
  bool *out_binary;
  char *id;                /* echoed */
  bool binary_any;
  uint64_t t_recv, t_enq, t_start, t_infer0, t_infer1, t_end;
  uint64_t deadline;
  /* result */
  int http_status;
  char *resp;              /* malloc'd body */
  size_t resp_len;
  size_t resp_json_len;    /* Inference-Header-Content-Length if binary */
  const char *resp_type;
  int fail_reason;
  void (*complete)(struct pvd_req *); /* resumes the connection */
  /* Set by endpoints other than infer (detect): the worker calls run with
   * its execution context instead of batching `in`, and run fills the
   * response. ext is the endpoint's state, freed with ext_free. */
  void (*run)(struct pvd_req *, pv_exec *);
  void *ext;
  void (*ext_free)(void *);
  struct pvd_req *next;
} pvd_req;

void pvd_req_free(pvd_req *r);
/* Fill r's response with an error {"error": msg}. */
void pvd_req_error(pvd_req *r, int status, int reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

typedef struct pvd_sched pvd_sched;
pvd_sched *pvd_sched_new(pvd_version *v);
/* Stop workers after failing what is still queued; joins. */
void pvd_sched_free(pvd_sched *s);
/* Queue r (takes it). -PV_EBUSY when the queue is full. */
int pvd_sched_submit(pvd_sched *s, pvd_req *r);
int pvd_sched_depth(pvd_sched *s);
/* Run r now on the calling thread if its model computes in a few µs and
 * nothing is queued; r->complete is called before it returns true. False:
 * nothing was done, submit it. */
bool pvd_sched_try_inline(pvd_sched *s, pvd_req *r);

/* ------------------------------------------------------------ tensor-json.c */

/* Parse a JSON number array (flat or nested, any depth) at *p into n
 * elements of dtype t at dst. On success *p points past the array. */
int pvd_json_parse_data(const char **p, const char *end, pv_dtype t,
                        void *dst, size_t n, size_t *got);
/* Find the value of "key" at the top level of the object starting at p.
 * Returns a pointer to the value or NULL. */
typedef struct pvd_buf {
  char *p;
  size_t len, cap;
  bool oom;
} pvd_buf;
void pvd_buf_put(pvd_buf *b, const void *s, size_t n);
void pvd_buf_puts(pvd_buf *b, const char *s);
/* Make room for n more bytes (and the terminating 0) in one allocation. */
void pvd_buf_reserve(pvd_buf *b, size_t n);
/* Append v in decimal. */
void pvd_buf_i64(pvd_buf *b, int64_t v);
void pvd_buf_printf(pvd_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void pvd_buf_json_str(pvd_buf *b, const char *s);
/* Shortest-ish decimal that reads back to the same float; returns length.
 * out needs 32 bytes. Non-finite values write null. */
int pvd_fmt_float(float f, char *out);
int pvd_fmt_double(double d, char *out);
/* Append the elements of t as a flat JSON array. */
void pvd_json_write_data(pvd_buf *b, const pv_tensor *t);
/* Scan one JSON number at *p as float (strtof-exact). */
int pvd_scan_float(const char **p, const char *end, float *out);

/* ------------------------------------------------------------ infer.c */

/* Parse an infer request body against version v. On failure returns an
 * HTTP status and fills msg. hdr_len: Inference-Header-Content-Length or
 * -1. The req keeps pointers into body for binary inputs: the caller keeps
 * body alive until r is freed. */
int pvd_infer_parse(pvd_req *r, const char *body, size_t len, long hdr_len,
                    char *msg, size_t msglen);
/* Build the response from outputs (in model order, only requested used). */
void pvd_infer_respond(pvd_req *r, const pv_tensor *outs);

/* ------------------------------------------------------------ http.c */

int pvd_http_start(const pvd_settings *s);
void pvd_http_quiesce(void);
int pvd_http_inflight(void);
void pvd_http_stop(void);
int pvd_http_port(void);

/* ------------------------------------------------------------ routes.c */

/* Global settings, set in main. */
extern pvd_settings *pvd_cfg;

#endif
