/* POST /v2/models/{m}[/versions/{v}]/detect: an encoded image (JPEG, PNG, WebP, HEIC, AVIF)
 * in, boxes in the original image's pixels out. The header is checked on
 * the HTTP thread; decoding and the run happen on one of the model's
 * workers, through the same queue, deadlines and statistics as infer. */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pv-detect.h"

typedef struct detect_job {
  const void *img; /* the connection's body (alive until the req is freed),
                      or `part` */
  size_t len;
  pv_detect_params params;
  pvd_buf part;    /* the image part of a multipart/form-data body */
} detect_job;

static void detect_job_free(void *p) {
  detect_job *j = p;
  if (j) free(j->part.p);
  free(j);
}

/* multipart/form-data (curl -F image=@photo.jpg, an HTML form): the image
 * is the part named "image" or "file", else the first part sent as a file
 * (with a filename). libmicrohttpd's post processor parses the body. */
typedef struct mp_pick {
  pvd_buf *out;
  int best, cur; /* rank of the part kept and of the part being read */
} mp_pick;

static enum MHD_Result mp_part(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *filename, const char *content_type,
                               const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size) {
  (void)kind, (void)content_type, (void)transfer_encoding;
  mp_pick *p = cls;
  if (off == 0) {
    int rank = key && (!strcmp(key, "image") || !strcmp(key, "file")) ? 2 : filename ? 1 : 0;
    p->cur = rank > p->best ? rank : 0;
    if (p->cur) {
      p->best = p->cur;
      p->out->len = 0;
    }
  }
  if (p->cur && size) pvd_buf_put(p->out, data, size);
  return p->out->oom ? MHD_NO : MHD_YES;
}

/* 0 with j->part holding the image; -1 with the 400 answered. */
static int multipart_image(pvd_conn *c, detect_job *j) {
  mp_pick p = {.out = &j->part};
  struct MHD_PostProcessor *pp = MHD_create_post_processor(c->mc, 64 * 1024, mp_part, &p);
  if (!pp) {
    pvd_reply_error(c, 400, "multipart/form-data body without a boundary");
    return -1;
  }
  enum MHD_Result ok = MHD_post_process(pp, c->body.p, c->body.len);
  MHD_destroy_post_processor(pp);
  if (j->part.oom) {
    pvd_reply_error(c, 500, "out of memory");
    return -1;
  }
  if (ok != MHD_YES || !p.best || !j->part.len) {
    pvd_reply_error(c, 400, "multipart/form-data body has no image: send it as the part "
                    "named \"image\" or \"file\", or as a file (curl -F image=@photo.jpg)");
    return -1;
  }
  return 0;
}

static void detect_done(pvd_req *r) {
  pvd_conn *c = r->conn;
  c->status = r->http_status;
  c->resp = r->resp;
  c->resp_len = r->resp_len;
  c->resp_json_len = 0;
  c->resp_type = r->resp_type;
  r->resp = NULL;
  pvd_conn_finish(c);
}

/* Runs on a worker with its execution context. */
static void detect_run(pvd_req *r, pv_exec *e) {
  detect_job *j = r->ext;
  pv_detection *d = NULL;
  int n = 0, w = 0, h = 0, orientation = 1;
  int rc = pv_detect_image(r->ver->pm, e, j->img, j->len, &j->params, &d, &n, &w, &h, &orientation);
  if (rc) {
    bool bad = rc == PV_EFORMAT || rc == PV_ERANGE || rc == PV_EUNSUPPORTED;
    pvd_req_error(r, bad ? 400 : 500, bad ? PVD_FAIL_BAD_REQUEST : PVD_FAIL_INTERNAL, "%s", pv_errmsg());
    return;
  }
  pvd_buf b = {0};
  char num[32];
  pvd_buf_puts(&b, "{\"model_name\":");
  pvd_buf_json_str(&b, r->ver->model->name);
  pvd_buf_printf(&b, ",\"model_version\":\"%lld\",\"width\":%d,\"height\":%d,\"orientation\":%d,\"detections\":[",
                 (long long)r->ver->version, w, h, orientation);
  for (int i = 0; i < n; i++) {
    pvd_buf_puts(&b, i ? ",{\"box\":[" : "{\"box\":[");
    for (int k = 0; k < 4; k++) {
      pvd_fmt_float(d[i].box[k], num);
      pvd_buf_printf(&b, "%s%s", k ? "," : "", num);
    }
    pvd_fmt_float(d[i].score, num);
    pvd_buf_printf(&b, "],\"score\":%s,\"class\":%d,\"label\":", num, d[i].cls);
    pvd_buf_json_str(&b, d[i].label);
    pvd_buf_puts(&b, "}");
  }
  pvd_buf_puts(&b, "]}");
  free(d);
  if (b.oom) {
    free(b.p);
    pvd_req_error(r, 500, PVD_FAIL_INTERNAL, "out of memory");
    return;
  }
  free(r->resp);
  r->resp = b.p;
  r->resp_len = b.len;
  r->resp_type = "application/json";
  r->http_status = 200;
}

/* A query parameter in [0, 1]; absent leaves *out alone. */
static int query_unit(pvd_conn *c, const char *key, float *out) {
  const char *s = MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, key);
  if (!s) return 0;
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !(v >= 0 && v <= 1)) {
    pvd_reply_error(c, 400, "query parameter %s=\"%s\" is not a number in [0, 1]", key, s);
    return -1;
  }
  *out = (float)v;
  return 0;
}

void pvd_h_detect(pvd_conn *c) {
  detect_job *j = calloc(1, sizeof *j);
  if (!j) { pvd_reply_error(c, 500, "out of memory"); return; }
  j->params = (pv_detect_params){.score = -1, .iou = -1};
  const char *k = MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, "top_k");
  char *end = NULL;
  long top_k = k ? strtol(k, &end, 10) : 0;
  if (k && (end == k || *end || top_k < 1 || top_k > 100000)) {
    pvd_reply_error(c, 400, "query parameter top_k=\"%s\" is not an integer in [1, 100000]", k);
    goto fail;
  }
  j->params.top_k = (int)top_k;
  if (query_unit(c, "score", &j->params.score) || query_unit(c, "iou", &j->params.iou)) goto fail;
  const char *o = MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, "orientation");
  if (o && strcmp(o, "exif") && strcmp(o, "stored")) {
    pvd_reply_error(c, 400, "query parameter orientation=\"%s\" is neither \"exif\" nor \"stored\"", o);
    goto fail;
  }
  j->params.stored_orientation = o && !strcmp(o, "stored");
  pvd_model *m;
  pvd_version *v = pvd_route_resolve(c, &m);
  if (!v) goto fail;
  pv_detect_cfg cfg;
  int rc = pv_detect_cfg_from_graph(pv_model_graph(v->pm), &cfg);
  pv_detect_cfg_free(&cfg);
  if (rc) {
    pvd_version_release(v);
    pvd_reply_error(c, 400, "model '%s': %s", m->name, pv_errmsg());
    goto fail;
  }
  /* Bad images get their 400 here, from the header, without queueing. */
  j->img = c->body.p;
  j->len = c->body.len;
  const char *ctype = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Content-Type");
  if (ctype && !strncasecmp(ctype, "multipart/form-data", 19)) {
    if (multipart_image(c, j)) {
      pvd_version_release(v);
      goto fail;
    }
    j->img = j->part.p;
    j->len = j->part.len;
  }
  if (pv_image_probe(j->img, j->len, NULL, NULL, NULL)) {
    /* the message names the formats accepted */
    pvd_version_release(v);
    pvd_reply_error(c, 400, "%s (Content-Type: %s)", pv_errmsg(), ctype ? ctype : "none");
    goto fail;
  }
  pvd_req *r = calloc(1, sizeof *r);
  if (!r) { pvd_version_release(v); pvd_reply_error(c, 500, "out of memory"); goto fail; }
  r->ver = v;
  r->conn = c;
  r->complete = detect_done;
  r->run = detect_run;
  r->ext = j;
  r->ext_free = detect_job_free;
  r->t_recv = c->t_recv;
  r->deadline = c->t_recv + (uint64_t)pvd_cfg->request_timeout * 1000000000ull;
  c->req = r;
  pvd_conn_suspend(c);
  if (pvd_sched_submit(v->sched, r) == 0) return;
  pvd_req_error(r, 503, PVD_FAIL_QUEUE_FULL, "the queue of model '%s' is full", m->name);
  pvd_stat_add(&v->stats.fail, pvd_now_ns() - c->t_recv);
  c->retry_after = true;
  detect_done(r);
  return;
fail:
  detect_job_free(j);
}
