/* The endpoints: Open Inference Protocol v2, Triton's repository and
 * statistics extensions, upload-and-swap, and Prometheus metrics. */
#include "http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dashboard.h"
#include "metrics.h"

pvd_settings *pvd_cfg;

static void json_ok(pvd_conn *c, int status, const char *s) {
  char *b = strdup(s);
  if (!b) { pvd_reply_error(c, 500, "out of memory"); return; }
  pvd_reply(c, status, b, strlen(b), "application/json");
}

static void h_live(pvd_conn *c) { json_ok(c, 200, "{\"live\":true}"); }

static void h_ready(pvd_conn *c) {
  bool ok = !pvd_http_quiescing() && pvd_repo_ready();
  json_ok(c, ok ? 200 : 503, ok ? "{\"ready\":true}" : "{\"ready\":false}");
}

static void h_server(pvd_conn *c) {
  pvd_buf b = {0};
  pvd_buf_printf(&b, "{\"name\":\"pivotd\",\"version\":\"%s\",\"extensions\":"
                     "[\"binary_tensor_data\",\"model_repository\",\"statistics\","
                     "\"metrics\",\"model_upload\"]}", pv_version());
  pvd_reply_buf(c, 200, &b);
}

static void h_metrics(pvd_conn *c) {
  pvd_buf b = {0};
  pvd_metrics_text(&b);
  if (b.oom) { free(b.p); pvd_reply_error(c, 500, "out of memory"); return; }
  pvd_reply(c, 200, b.p, b.len, "text/plain; version=0.0.4; charset=utf-8");
}

/* Model and version from the URL, retained; answers 404/503 itself. */
static pvd_version *resolve(pvd_conn *c, pvd_model **mp) {
  pvd_model *m = pvd_repo_find(c->model);
  if (!m) { pvd_reply_error(c, 404, "unknown model '%s'", c->model); return NULL; }
  if (mp) *mp = m;
  pvd_version *v = pvd_model_get(m, c->version);
  if (v) return v;
  pthread_mutex_lock(&m->mu);
  int n = m->n_live;
  char err[512];
  snprintf(err, sizeof err, "%s", m->last_error ? m->last_error : "");
  pthread_mutex_unlock(&m->mu);
  atomic_fetch_add(&m->fails[PVD_FAIL_NOT_READY], 1);
  if (c->version >= 0 && n > 0)
    pvd_reply_error(c, 404, "model '%s' has no version %lld loaded", c->model, (long long)c->version);
  else
    pvd_reply_error(c, 503, "model '%s' is not ready%s%s", c->model, err[0] ? ": " : "", err);
  return NULL;
}

pvd_version *pvd_route_resolve(pvd_conn *c, pvd_model **mp) { return resolve(c, mp); }

static void tensor_meta(pvd_buf *b, const pv_value *v) {
  pvd_buf_puts(b, "{\"name\":");
  pvd_buf_json_str(b, v->name);
  pvd_buf_printf(b, ",\"datatype\":\"%s\",\"shape\":[", pv_dtype_name(v->dtype));
  for (int d = 0; d < v->ndim; d++)
    pvd_buf_printf(b, "%s%lld", d ? "," : "", (long long)(v->dims[d] < 0 ? -1 : v->dims[d]));
  pvd_buf_puts(b, "]}");
}

static void h_model_meta(pvd_conn *c) {
  pvd_model *m;
  pvd_version *v = resolve(c, &m);
  if (!v) return;
  pvd_buf b = {0};
  pvd_buf_puts(&b, "{\"name\":");
  pvd_buf_json_str(&b, m->name);
  pvd_buf_puts(&b, ",\"versions\":[");
  pthread_mutex_lock(&m->mu);
  for (int i = 0; i < m->n_live; i++)
    pvd_buf_printf(&b, "%s\"%lld\"", i ? "," : "", (long long)m->live[i]->version);
  pthread_mutex_unlock(&m->mu);
  pvd_buf_printf(&b, "],\"platform\":\"pivotd\",\"backend\":\"%s\",\"inputs\":[", v->backend);
  for (int i = 0; i < pv_model_n_inputs(v->pm); i++) {
    if (i) pvd_buf_puts(&b, ",");
    tensor_meta(&b, pv_model_input(v->pm, i));
  }
  pvd_buf_puts(&b, "],\"outputs\":[");
  for (int i = 0; i < pv_model_n_outputs(v->pm); i++) {
    if (i) pvd_buf_puts(&b, ",");
    tensor_meta(&b, pv_model_output(v->pm, i));
  }
  pvd_buf_printf(&b, "],\"max_batch_size\":%d}", v->cfg.max_batch);
  pvd_version_release(v);
  pvd_reply_buf(c, 200, &b);
}

static void h_model_ready(pvd_conn *c) {
  pvd_model *m = pvd_repo_find(c->model);
  if (!m) { pvd_reply_error(c, 404, "unknown model '%s'", c->model); return; }
  pvd_version *v = pvd_model_get(m, c->version);
  pvd_buf b = {0};
  pvd_buf_puts(&b, "{\"name\":");
  pvd_buf_json_str(&b, m->name);
  pvd_buf_printf(&b, ",\"ready\":%s}", v ? "true" : "false");
  if (v) pvd_version_release(v);
  pvd_reply_buf(c, v ? 200 : 503, &b);
}

static void h_stats(pvd_conn *c) {
  if (c->model[0] && !pvd_repo_find(c->model)) {
    pvd_reply_error(c, 404, "unknown model '%s'", c->model);
    return;
  }
  pvd_buf b = {0};
  int n = pvd_stats_json(&b, c->model[0] ? c->model : NULL, c->version);
  if (c->version >= 0 && n == 0) {
    free(b.p);
    pvd_reply_error(c, 404, "model '%s' has no version %lld loaded", c->model, (long long)c->version);
    return;
  }
  pvd_reply_buf(c, 200, &b);
}

/* ------------------------------------------------------------ infer */

static void infer_done(pvd_req *r) {
  pvd_conn *c = r->conn;
  c->status = r->http_status;
  c->resp = r->resp;
  c->resp_len = r->resp_len;
  c->resp_json_len = r->resp_json_len;
  c->resp_type = r->resp_type;
  r->resp = NULL;
  pvd_conn_finish(c);
}

/* The same for a request run inline: the connection was never
 * suspended, so the HTTP callback sends the reply when it returns. */
static void infer_done_inline(pvd_req *r) {
  pvd_conn *c = r->conn;
  c->status = r->http_status;
  c->resp = r->resp;
  c->resp_len = r->resp_len;
  c->resp_json_len = r->resp_json_len;
  c->resp_type = r->resp_type;
  r->resp = NULL;
  atomic_store(&c->finished, 1);
}

static void h_infer(pvd_conn *c) {
  pvd_model *m;
  pvd_version *v = resolve(c, &m);
  if (!v) return;
  pvd_req *r = calloc(1, sizeof *r);
  if (!r) { pvd_version_release(v); pvd_reply_error(c, 500, "out of memory"); return; }
  r->ver = v;
  r->conn = c;
  r->complete = infer_done;
  r->t_recv = c->t_recv;
  r->deadline = c->t_recv + (uint64_t)pvd_cfg->request_timeout * 1000000000ull;
  c->req = r;
  long hdr = -1;
  const char *h = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Inference-Header-Content-Length");
  if (h) {
    char *end;
    hdr = strtol(h, &end, 10);
    if (end == h || *end || hdr < 0) {
      pvd_req_error(r, 400, PVD_FAIL_BAD_REQUEST, "Inference-Header-Content-Length \"%s\" is not a length", h);
      goto answer;
    }
  }
  char msg[1024];
  int st = pvd_infer_parse(r, c->body.p ? c->body.p : "", c->body.len, hdr, msg, sizeof msg);
  if (st) {
    pvd_req_error(r, st, st == 400 ? PVD_FAIL_BAD_REQUEST : PVD_FAIL_INTERNAL, "%s", msg);
    pvd_stat_add(&v->stats.fail, pvd_now_ns() - c->t_recv);
    goto answer;
  }
  /* A tiny model with nothing queued runs here, answered at once. */
  r->complete = infer_done_inline;
  if (pvd_sched_try_inline(v->sched, r)) return;
  r->complete = infer_done;
  /* Suspend first: a fast worker may finish before we return. */
  pvd_conn_suspend(c);
  if (pvd_sched_submit(v->sched, r) == 0) return;
  pvd_req_error(r, 503, PVD_FAIL_QUEUE_FULL, "the queue of model '%s' is full", m->name);
  pvd_stat_add(&v->stats.fail, pvd_now_ns() - c->t_recv);
  c->retry_after = true;
  infer_done(r); /* answered on the resume, like any other */
  return;
answer:
  c->status = r->http_status;
  pvd_reply(c, r->http_status, r->resp, r->resp_len, r->resp_type);
  r->resp = NULL;
}

/* ------------------------------------------------------------ repository */

static void h_index(pvd_conn *c) {
  bool ready_only = false;
  if (c->body.len) {
    cJSON *root = cJSON_ParseWithLength(c->body.p, c->body.len);
    if (!root || !cJSON_IsObject(root)) {
      cJSON_Delete(root);
      pvd_reply_error(c, 400, "malformed JSON in the request body");
      return;
    }
    cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "ready");
    ready_only = cJSON_IsTrue(r);
    cJSON_Delete(root);
  }
  static const char *const states[] = {"UNAVAILABLE", "LOADING", "READY", "UNLOADED"};
  pvd_buf b = {0};
  pvd_buf_puts(&b, "[");
  bool first = true;
  for (pvd_model *m = pvd_repo_first(); m; m = pvd_repo_next(m)) {
    pthread_mutex_lock(&m->mu);
    if (m->n_live) {
      for (int i = 0; i < m->n_live; i++) {
        pvd_buf_printf(&b, "%s{\"name\":", first ? "" : ",");
        pvd_buf_json_str(&b, m->name);
        pvd_buf_printf(&b, ",\"version\":\"%lld\",\"state\":\"READY\",\"reason\":", (long long)m->live[i]->version);
        pvd_buf_json_str(&b, m->last_error ? m->last_error : "");
        pvd_buf_puts(&b, "}");
        first = false;
      }
    } else if (!ready_only) {
      pvd_buf_printf(&b, "%s{\"name\":", first ? "" : ",");
      pvd_buf_json_str(&b, m->name);
      pvd_buf_printf(&b, ",\"state\":\"%s\",\"reason\":", states[m->state]);
      pvd_buf_json_str(&b, m->last_error ? m->last_error : "");
      pvd_buf_puts(&b, "}");
      first = false;
    }
    pthread_mutex_unlock(&m->mu);
  }
  pvd_buf_puts(&b, "]");
  pvd_reply_buf(c, 200, &b);
}

/* Runs on the loader thread when a load/unload/upload finished. */
static void admin_done(void *arg, int rc, const char *msg) {
  pvd_conn *c = arg;
  if (rc) {
    pvd_reply_error(c, rc == PV_ENOTFOUND ? 404 : 400, "%s", msg);
  } else {
    pvd_buf b = {0};
    pvd_buf_puts(&b, "{\"name\":");
    pvd_buf_json_str(&b, c->model);
    if (c->version >= 0) pvd_buf_printf(&b, ",\"version\":\"%lld\"", (long long)c->version);
    pvd_buf_printf(&b, ",\"state\":\"%s\"}", c->route->fn == NULL ? "" :
                   strstr(c->route->pattern, "unload") ? "UNLOADED" : "READY");
    pvd_reply_buf(c, 200, &b);
  }
  pvd_conn_finish(c);
}

static int post_admin(pvd_conn *c, int kind, const char *arg) {
  pvd_conn_suspend(c);
  int rc = pvd_repo_post(kind, c->model, c->version, arg, admin_done, c);
  if (rc) admin_done(c, rc, pv_errmsg());
  return rc;
}

static void h_load(pvd_conn *c) {
  char *override = NULL;
  if (c->body.len) {
    cJSON *root = cJSON_ParseWithLength(c->body.p, c->body.len);
    if (!root || !cJSON_IsObject(root)) {
      cJSON_Delete(root);
      pvd_reply_error(c, 400, "malformed JSON in the request body");
      return;
    }
    cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "parameters");
    cJSON *cfg = p ? cJSON_GetObjectItemCaseSensitive(p, "config") : NULL;
    if (cfg) {
      /* Triton sends the config as a JSON string; an object is accepted too. */
      if (cJSON_IsString(cfg)) override = strdup(cfg->valuestring);
      else if (cJSON_IsObject(cfg)) override = cJSON_PrintUnformatted(cfg);
      else {
        cJSON_Delete(root);
        pvd_reply_error(c, 400, "parameters.config must be a JSON object or a string holding one");
        return;
      }
    }
    cJSON *it;
    cJSON_ArrayForEach(it, p) {
      if (!strncmp(it->string, "file:", 5)) {
        free(override);
        cJSON_Delete(root);
        pvd_reply_error(c, 400, "file: parameters are not supported: PUT the model to /v2/models/%s/versions/<v>/model", c->model);
        return;
      }
    }
    cJSON_Delete(root);
  }
  post_admin(c, PVD_JOB_LOAD, override);
  free(override);
}

static void h_unload(pvd_conn *c) { post_admin(c, PVD_JOB_UNLOAD, NULL); }

static void h_upload(pvd_conn *c) {
  if (c->version < 1) { pvd_reply_error(c, 400, "version must be a positive integer"); return; }
  if (c->upload_len == 0) { pvd_reply_error(c, 400, "empty model file"); return; }
  if (fsync(c->upload_fd)) {
    int e = errno;
    pvd_reply_error(c, e == ENOSPC || e == EDQUOT ? 507 : 500, "fsync of the uploaded model failed: %s", strerror(e));
    return;
  }
  close(c->upload_fd);
  c->upload_fd = -1;
  char *tmp = c->upload_tmp;
  c->upload_tmp = NULL; /* the loader renames or removes it now */
  if (post_admin(c, PVD_JOB_UPLOAD, tmp)) unlink(tmp);
  free(tmp);
}

const pvd_route pvd_routes[] = {
    {.method = "GET", .pattern = "/v2/health/live", .fn = h_live},
    {.method = "GET", .pattern = "/v2/health/ready", .fn = h_ready},
    {.method = "GET", .pattern = "/v2", .fn = h_server},
    {.method = "GET", .pattern = "/v2/", .fn = h_server},
    {.method = "GET", .pattern = "/metrics", .fn = h_metrics},
    {.method = "GET", .pattern = "/v2/models/stats", .fn = h_stats},
    {.method = "GET", .pattern = "/v2/models/{m}", .fn = h_model_meta},
    {.method = "GET", .pattern = "/v2/models/{m}/versions/{v}", .fn = h_model_meta},
    {.method = "GET", .pattern = "/v2/models/{m}/ready", .fn = h_model_ready},
    {.method = "GET", .pattern = "/v2/models/{m}/versions/{v}/ready", .fn = h_model_ready},
    {.method = "GET", .pattern = "/v2/models/{m}/stats", .fn = h_stats},
    {.method = "GET", .pattern = "/v2/models/{m}/versions/{v}/stats", .fn = h_stats},
    {.method = "POST", .pattern = "/v2/models/{m}/infer", .fn = h_infer},
    {.method = "POST", .pattern = "/v2/models/{m}/versions/{v}/infer", .fn = h_infer},
    {.method = "POST", .pattern = "/v2/models/{m}/detect", .fn = pvd_h_detect},
    {.method = "POST", .pattern = "/v2/models/{m}/versions/{v}/detect", .fn = pvd_h_detect},
    {.method = "PUT", .pattern = "/v2/models/{m}/versions/{v}/model", .fn = h_upload, .admin = true, .upload = true},
    {.method = "POST", .pattern = "/v2/repository/index", .fn = h_index},
    {.method = "POST", .pattern = "/v2/repository/models/{m}/load", .fn = h_load, .admin = true},
    {.method = "POST", .pattern = "/v2/repository/models/{m}/unload", .fn = h_unload, .admin = true},
    {.method = "GET", .pattern = "/", .fn = pvd_dash_page},
    {.method = "GET", .pattern = "/v2/dashboard/series", .fn = pvd_dash_series},
};
const int pvd_n_routes = (int)(sizeof pvd_routes / sizeof pvd_routes[0]);
