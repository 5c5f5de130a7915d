/* Test-only stand-in for the engine's model API, linked into pivotd-fake
 * ahead of libpivot so the daemon's own code runs unchanged. A model file
 * is one text line, "PVFAKE scale=S bias=B n=N sleep_ms=T fail=F [out=K]",
 * and computes y = x * S + B on x: FP32 [-1, N] (y: the first K columns
 * when out=K is given, like a classifier's few outputs); every output
 * element of one request comes from one version, which the hot-swap test
 * relies on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pivot.h"

struct pv_model {
  int refs;
  float scale, bias;
  int n, n_out, sleep_ms;
  pv_value in, out;
  char *blob; /* a few MB so leaks across swaps show in RSS */
};
struct pv_exec {
  pv_model *m;
  float *buf;
  size_t cap;
};

pv_model *pv_model_load(const char *path, const pv_load_opts *opts) {
  (void)opts;
  FILE *f = fopen(path, "r");
  if (!f) { pv_error(PV_EIO, "%s: cannot open", path); return NULL; }
  char line[256] = {0};
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  fclose(f);
  pv_model *m = calloc(1, sizeof *m);
  int fail = 0;
  m->scale = 1;
  m->n = 4;
  if (strncmp(line, "PVFAKE", 6) ||
      sscanf(line, "PVFAKE scale=%f bias=%f n=%d sleep_ms=%d fail=%d", &m->scale, &m->bias, &m->n, &m->sleep_ms, &fail) < 3) {
    free(m);
    pv_error(PV_EFORMAT, "%s: not a model file (bad magic)", path);
    return NULL;
  }
  if (fail) { free(m); pv_error(PV_EFORMAT, "%s: checksum mismatch in section 2", path); return NULL; }
  const char *o = strstr(line, " out=");
  m->n_out = o ? atoi(o + 5) : m->n;
  if (m->n_out < 1 || m->n_out > m->n) { free(m); pv_error(PV_EFORMAT, "%s: out= must be in [1, n]", path); return NULL; }
  m->refs = 1;
  m->in = (pv_value){.name = "x", .dtype = PV_F32, .ndim = 2, .dims = {PV_DIM_BATCH, m->n}, .producer = -1};
  m->out = (pv_value){.name = "y", .dtype = PV_F32, .ndim = 2, .dims = {PV_DIM_BATCH, m->n_out}, .producer = -1};
  m->blob = malloc(4 << 20);
  memset(m->blob, 1, 4 << 20);
  return m;
}

pv_model *pv_model_retain(pv_model *m) { __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED); return m; }
void pv_model_release(pv_model *m) {
  if (m && __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0) { free(m->blob); free(m); }
}
const pv_graph *pv_model_graph(const pv_model *m) { (void)m; return NULL; }
int pv_model_n_inputs(const pv_model *m) { (void)m; return 1; }
int pv_model_n_outputs(const pv_model *m) { (void)m; return 1; }
const pv_value *pv_model_input(const pv_model *m, int i) { (void)i; return &m->in; }
const pv_value *pv_model_output(const pv_model *m, int i) { (void)i; return &m->out; }
const char *pv_model_node_backend(const pv_model *m, int node) { (void)m; (void)node; return "fake"; }

pv_exec *pv_exec_new(pv_model *m) {
  pv_exec *e = calloc(1, sizeof *e);
  e->m = pv_model_retain(m);
  return e;
}
void pv_exec_free(pv_exec *e) {
  if (!e) return;
  pv_model_release(e->m);
  free(e->buf);
  free(e);
}
int pv_exec_run(pv_exec *e, const pv_tensor *in, int n_in, pv_tensor *out, int n_out) {
  pv_model *m = e->m;
  if (n_in != 1 || n_out != 1) return pv_error(PV_EINVAL, "fake model: 1 input, 1 output");
  if (in[0].ndim != 2 || in[0].dims[1] != m->n || in[0].dtype != PV_F32)
    return pv_error(PV_ESHAPE, "fake model: x must be FP32 [b,%d]", m->n);
  size_t rows = (size_t)in[0].dims[0], cnt = rows * (size_t)m->n_out;
  if (cnt > e->cap) { free(e->buf); e->buf = malloc(cnt * sizeof(float) + 1); e->cap = cnt; }
  const float *x = in[0].data;
  for (size_t r = 0; r < rows; r++)
    for (int j = 0; j < m->n_out; j++)
      e->buf[r * (size_t)m->n_out + (size_t)j] = x[r * (size_t)m->n + (size_t)j] * m->scale + m->bias;
  if (m->sleep_ms) {
    struct timespec ts = {m->sleep_ms / 1000, (long)(m->sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  out[0].dtype = PV_F32;
  out[0].ndim = 2;
  out[0].dims[0] = in[0].dims[0];
  out[0].dims[1] = m->n_out;
  out[0].data = e->buf;
  return 0;
}
