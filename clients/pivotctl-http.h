/* HTTP and Open Inference Protocol helpers shared by pivotctl and
 * pivot-bench: a libcurl easy handle bound to one server, whole answers in
 * memory, infer request bodies (JSON or binary tensor extension) built from
 * pv_tensors, and infer answers parsed back into pv_tensors. */
#ifndef PIVOTCTL_HTTP_H
#define PIVOTCTL_HTTP_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "pivot.h"

/* Exit codes of both programs, so scripts can tell "the server said no"
 * from "nobody answered". */
enum { PVC_EXIT_OK = 0, PVC_EXIT_REFUSED = 1, PVC_EXIT_USAGE = 2, PVC_EXIT_CONNECT = 3 };

/* A growable byte buffer; `oom` sticks once an append failed. */
typedef struct pvc_buf {
  char *p;
  size_t len, cap;
  bool oom;
} pvc_buf;

void pvc_buf_add(pvc_buf *b, const void *p, size_t n);
void pvc_buf_puts(pvc_buf *b, const char *s);
void pvc_buf_printf(pvc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pvc_buf_json_str(pvc_buf *b, const char *s);

typedef struct pvc_client {
  CURL *curl;
  char *base;      /* "http://host:port" without a trailing '/'; owned */
  char *token;     /* bearer token or NULL; owned */
  long timeout_ms; /* whole-request limit, 0 = none */
  char err[CURL_ERROR_SIZE];
} pvc_client;

typedef struct pvc_resp {
  long status;            /* HTTP status */
  pvc_buf body;           /* the whole body, NUL-terminated; owned */
  long long json_len;     /* Inference-Header-Content-Length, -1 if absent */
  char ctype[128];        /* Content-Type */
} pvc_resp;

/* url: NULL means $PIVOTD_URL or http://127.0.0.1:8000; token: NULL means
 * $PIVOTD_TOKEN (if set). Copies both. Returns 0 or -1 (message on stderr). */
int pvc_init(pvc_client *c, const char *url, const char *token, long timeout_ms);
void pvc_free(pvc_client *c);

/* One request to base+path. body may be NULL (len 0); ctype may be NULL.
 * Returns 0 when an HTTP answer arrived, whatever its status, and -1 when
 * none did (c->err says why). r is filled on 0; free it with pvc_resp_free. */
int pvc_do(pvc_client *c, const char *method, const char *path, const char *ctype,
           const void *body, size_t len, pvc_resp *r);
/* The same with one more header line ("Name: value"), or NULL. */
int pvc_do_hdr(pvc_client *c, const char *method, const char *path, const char *ctype,
               const char *header, const void *body, size_t len, pvc_resp *r);
void pvc_resp_free(pvc_resp *r);

/* The answer's JSON (parsed up to json_len when set), or NULL. Caller
 * frees with cJSON_Delete. */
cJSON *pvc_resp_json(const pvc_resp *r);
/* The server's {"error": ...} message, or the start of the raw body, into
 * buf. Returns buf. */
const char *pvc_resp_error(const pvc_resp *r, char *buf, size_t len);

/* "/v2/models/NAME" (+ "/versions/V" when version >= 0) + suffix, with
 * NAME escaped; into buf. Returns 0 or -1 if it does not fit. */
int pvc_model_path(char *buf, size_t len, const char *model, long long version, const char *suffix);

/* An infer request body for n named tensors. binary: raw tensors after the
 * JSON (binary tensor extension), *json_len set to the JSON's length;
 * otherwise JSON `data` arrays and *json_len = 0. binary_out asks for raw
 * outputs. Returns 0 or a PV_E* code (message in pv_errmsg()). */
int pvc_infer_body(const char *const *names, const pv_tensor *ts, int n, bool binary,
                   bool binary_out, pvc_buf *out, size_t *json_len);

/* The outputs of an infer answer (JSON or binary): fills up to max
 * tensors and names (names[i] is malloc'd, t[i].data pv_aligned_alloc'd;
 * free both). Returns the count or a negative PV_E* code. */
int pvc_infer_outputs(const pvc_resp *r, pv_tensor *t, char **names, int max);

/* Model metadata: the inputs' names, datatypes and shapes (-1 dims as -1).
 * Returns the input count, or a negative PV_E* code. names[i] malloc'd. */
int pvc_model_inputs(pvc_client *c, const char *model, long long version, char **names,
                     pv_tensor *shapes, int max);
#endif
