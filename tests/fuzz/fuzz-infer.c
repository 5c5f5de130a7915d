/* libFuzzer target for pivotd's infer request parser (daemon/infer.c):
 * the JSON body, and with PV_FUZZ_BINARY the binary tensor extension
 * (Inference-Header-Content-Length, raw bodies). The model is a stand-in
 * defined here, so the parser runs without the engine or a daemon; when a
 * request parses, the response writer runs on the parsed inputs too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pivotd.h"

/* Two models: "multi" with inputs of several dtypes and variable dims
 * (outputs declared like its inputs), "one" with one FP32 input, the only
 * kind a raw body (header length 0) may feed. */
struct pv_model {
  int n;
  const pv_value *v;
};
#define VAL(nm, t, nd, ...) {.name = nm, .dtype = t, .ndim = nd, .dims = {__VA_ARGS__}, .producer = -1}
static const pv_value multi_vals[] = {
    VAL("x", PV_F32, 2, PV_DIM_BATCH, 4),
    VAL("ids", PV_I64, 2, 2, -1),
    VAL("mask", PV_BOOL, 1, 3),
    VAL("px", PV_U8, 3, -1, 2, 2),
    VAL("h", PV_F16, 1, -1),
};
static const pv_value one_vals[] = {VAL("x", PV_F32, 2, PV_DIM_BATCH, 4)};
static pv_model multi = {5, multi_vals}, one = {1, one_vals};

int pv_model_n_inputs(const pv_model *m) { return m->n; }
int pv_model_n_outputs(const pv_model *m) { return m->n; }
const pv_value *pv_model_input(const pv_model *m, int i) { return &m->v[i]; }
const pv_value *pv_model_output(const pv_model *m, int i) { return &m->v[i]; }
/* The request holds no reference that must go back to a repository. */
void pvd_version_release(pvd_version *v) { (void)v; }

static void run(pv_model *pm, const char *body, size_t len, long hdr_len) {
  pvd_model model = {.name = "fuzz"};
  pvd_version ver = {.model = &model, .version = 1, .pm = pm};
  pvd_req *r = calloc(1, sizeof *r);
  if (!r) return;
  r->ver = &ver;
  char msg[512];
  int st = pvd_infer_parse(r, body, len, hdr_len, msg, sizeof msg);
  if (st == 0) {
    /* Echo the inputs as outputs: exercises the JSON and binary writers on
     * every dtype and shape the parser accepted. */
    for (int i = 0; i < r->n_in; i++)
      if (!r->in[i].data) abort(); /* parsed without data: a parser bug */
    pvd_infer_respond(r, r->in);
    if (!r->resp && r->http_status == 200) abort();
  } else if (st < 400 || st > 599 || !msg[0]) {
    abort(); /* every failure must be an HTTP error with a message */
  }
  r->ver = NULL;
  pvd_req_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#ifdef PV_FUZZ_BINARY
  /* Byte 0 picks the model, bytes 1-2 the header length (0xffff: one
   * past the body), the rest is the body. */
  if (size < 3) return 0;
  pv_model *pm = data[0] & 1 ? &one : &multi;
  long hl = data[1] | (long)data[2] << 8;
  const char *body = (const char *)data + 3;
  size_t len = size - 3;
  if (hl == 0xffff) hl = (long)len + 1;
  /* A copy of exactly len bytes, so ASan sees any read past the body. */
  char *copy = malloc(len ? len : 1);
  if (!copy) return 0;
  memcpy(copy, body, len);
  run(pm, copy, len, hl);
  free(copy);
#else
  char *copy = malloc(size ? size : 1);
  if (!copy) return 0;
  memcpy(copy, data, size);
  run(&multi, copy, size, -1);
  free(copy);
#endif
  return 0;
}
