/* libmicrohttpd plumbing: one epoll polling thread (or a pool), bodies
 * gathered per connection, routes dispatched from a table; connections
 * that wait on compute or on a load are suspended, never blocked on. */
#define _GNU_SOURCE
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct MHD_Daemon *D;
static const pvd_settings *S;
static _Atomic int inflight;
static _Atomic bool quiescing;
static int bound_port;

bool pvd_http_quiescing(void) { return atomic_load(&quiescing); }
int pvd_http_inflight(void) { return atomic_load(&inflight); }
int pvd_http_port(void) { return bound_port; }

void pvd_reply(pvd_conn *c, int status, char *body, size_t len, const char *type) {
  free(c->resp);
  c->status = status;
  c->resp = body;
  c->resp_len = len;
  c->resp_json_len = 0;
  c->resp_type = type;
  atomic_store(&c->finished, 1);
}

void pvd_reply_buf(pvd_conn *c, int status, pvd_buf *b) {
  if (b->oom) {
    free(b->p);
    pvd_reply_error(c, 500, "out of memory");
    return;
  }
  pvd_reply(c, status, b->p, b->len, "application/json");
  b->p = NULL;
}

void pvd_reply_error(pvd_conn *c, int status, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pvd_buf b = {0};
  pvd_buf_puts(&b, "{\"error\":");
  pvd_buf_json_str(&b, msg);
  pvd_buf_puts(&b, "}");
  pvd_reply(c, status, b.p, b.len, "application/json");
}

void pvd_conn_suspend(pvd_conn *c) {
  c->suspended = true;
  MHD_suspend_connection(c->mc);
}

void pvd_conn_finish(pvd_conn *c) {
  atomic_store(&c->finished, 1);
  MHD_resume_connection(c->mc);
}

/* Match "/v2/models/foo/versions/3/infer" against a pattern; the model
 * name and version go to model (256 bytes) and *version. */
static bool match(const char *pattern, const char *url, char *model, int64_t *version) {
  const char *p = pattern, *u = url;
  model[0] = 0;
  *version = -1;
  while (*p && *u) {
    if (*p == '{') {
      char which = p[1];
      p += 3;
      const char *e = strchr(u, '/');
      size_t n = e ? (size_t)(e - u) : strlen(u);
      if (n == 0) return false;
      if (which == 'm') {
        if (n >= sizeof ((pvd_conn *)0)->model) return false;
        memcpy(model, u, n);
        model[n] = 0;
      } else {
        int64_t v = 0;
        for (size_t i = 0; i < n; i++) {
          if (u[i] < '0' || u[i] > '9' || v > INT64_MAX / 10 - 10) return false;
          v = v * 10 + (u[i] - '0');
        }
        *version = v;
      }
      u += n;
      continue;
    }
    if (*p != *u) return false;
    p++;
    u++;
  }
  return !*p && !*u;
}

/* Room for the whole body at once when Content-Length announces it, so
 * it is not grown and copied chunk by chunk; for a binary infer the
 * buffer starts so that the raw tensors after the JSON header land on a
 * 64-byte boundary and the model reads them where they are. */
static void body_prealloc(pvd_conn *c, size_t cl) {
  size_t pad = 0;
  const char *h = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Inference-Header-Content-Length");
  if (h) {
    char *end;
    unsigned long long hl = strtoull(h, &end, 10);
    if (end != h && !*end && hl <= cl) pad = (64 - (size_t)(hl % 64)) % 64;
  }
  size_t total = (pad + cl + 1 + 63) & ~(size_t)63;
  c->body_base = aligned_alloc(64, total);
  if (!c->body_base) return; /* grown chunk by chunk instead */
  c->body.p = c->body_base + pad;
  c->body.cap = cl + 1;
  c->body.len = 0;
  c->body.p[0] = 0;
}

static bool is_loopback(struct MHD_Connection *mc) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!ci || !ci->client_addr) return false;
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(a)) return true;
    if (IN6_IS_ADDR_V4MAPPED(a)) return a->s6_addr[12] == 127;
  }
  return false;
}

/* Compare without an early exit so the token does not leak by timing. */
static bool token_ok(const char *given, const char *want) {
  size_t gl = strlen(given), wl = strlen(want);
  unsigned char d = gl != wl;
  for (size_t i = 0; i < wl; i++) d |= (unsigned char)(given[i < gl ? i : 0] ^ want[i]);
  return d == 0;
}

static bool check_admin(pvd_conn *c) {
  if (S->token) {
    const char *h = MHD_lookup_connection_value(c->mc, MHD_HEADER_KIND, "Authorization");
    if (!h || strncmp(h, "Bearer ", 7) || !token_ok(h + 7, S->token)) {
      pvd_reply_error(c, 401, "this endpoint needs 'Authorization: Bearer <token>'");
      return false;
    }
    return true;
  }
  if (!is_loopback(c->mc)) {
    pvd_reply_error(c, 403, "admin endpoints are refused from non-loopback clients when no token is configured");
    return false;
  }
  return true;
}

static bool valid_model_name(const char *s) {
  if (!*s || *s == '.') return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_' || *s == '-' || *s == '.'))
      return false;
  return true;
}

static int upload_open(pvd_conn *c) {
  if (!valid_model_name(c->model)) {
    pvd_reply_error(c, 400, "model name '%s' may hold only letters, digits, '_', '-', '.'", c->model);
    return -1;
  }
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/%s", S->repository, c->model);
  if (mkdir(dir, 0755) && errno != EEXIST) {
    pvd_reply_error(c, 500, "%s: %s", dir, strerror(errno));
    return -1;
  }
  if (asprintf(&c->upload_tmp, "%s/.upload-XXXXXX", dir) < 0) {
    c->upload_tmp = NULL;
    pvd_reply_error(c, 500, "out of memory");
    return -1;
  }
  c->upload_fd = mkstemp(c->upload_tmp);
  if (c->upload_fd < 0) {
    pvd_reply_error(c, 500, "%s: %s", c->upload_tmp, strerror(errno));
    free(c->upload_tmp);
    c->upload_tmp = NULL;
    return -1;
  }
  return 0;
}

static enum MHD_Result send_reply(pvd_conn *c) {
  struct MHD_Response *r;
  if (c->resp)
    r = MHD_create_response_from_buffer(c->resp_len, c->resp, MHD_RESPMEM_MUST_FREE);
  else
    r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
  if (!r) return MHD_NO;
  c->resp = NULL;
  MHD_add_response_header(r, "Content-Type", c->resp_type ? c->resp_type : "application/json");
  if (c->resp_json_len) {
    char n[32];
    snprintf(n, sizeof n, "%zu", c->resp_json_len);
    MHD_add_response_header(r, "Inference-Header-Content-Length", n);
  }
  if (c->retry_after) MHD_add_response_header(r, "Retry-After", "1");
  enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)c->status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)cls;
  (void)version;
  pvd_conn *c = *con_cls;
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c) return MHD_NO;
    *con_cls = c;
    c->mc = mc;
    c->upload_fd = -1;
    c->t_recv = pvd_now_ns();
    atomic_fetch_add(&inflight, 1);
    bool path_known = false;
    for (int i = 0; i < pvd_n_routes; i++) {
      if (!match(pvd_routes[i].pattern, url, c->model, &c->version)) continue;
      path_known = true;
      if (strcmp(pvd_routes[i].method, method)) continue;
      c->route = &pvd_routes[i];
      break;
    }
    if (!c->route) {
      if (path_known) pvd_reply_error(c, 405, "method %s is not allowed on %s", method, url);
      else pvd_reply_error(c, 404, "no endpoint %s %s", method, url);
      return MHD_YES;
    }
    const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
    size_t limit = c->route->upload ? S->max_upload : S->max_body;
    unsigned long long cln = cl ? strtoull(cl, NULL, 10) : 0;
    if (cln > limit) {
      pvd_reply_error(c, 413, "body of %s bytes is larger than the limit of %zu", cl, limit);
      return MHD_YES;
    }
    if (c->route->admin && !check_admin(c)) return MHD_YES;
    if (c->route->upload && upload_open(c)) return MHD_YES;
    /* Up to 1 MiB: a client that announces more and sends little should
     * not hold memory it has not sent. */
    if (!c->route->upload && cln > 0 && cln <= (1u << 20)) body_prealloc(c, (size_t)cln);
    return MHD_YES;
  }

  if (*upload_data_size) {
    size_t n = *upload_data_size;
    *upload_data_size = 0;
    if (atomic_load(&c->finished) || c->too_large) return MHD_YES; /* answer already chosen */
    if (c->route->upload) {
      c->upload_len += n;
      if (c->upload_len > S->max_upload) { c->too_large = true; return MHD_YES; }
      while (n && !c->upload_failed) {
        ssize_t w = write(c->upload_fd, upload_data, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) { c->upload_failed = true; c->upload_errno = w < 0 ? errno : ENOSPC; break; }
        upload_data += w;
        n -= (size_t)w;
      }
      return MHD_YES;
    }
    if (c->body.len + n > S->max_body) { c->too_large = true; return MHD_YES; }
    if (c->body_base) {
      /* libmicrohttpd never passes more than Content-Length; if it did,
       * the body would not fit its buffer: refuse rather than grow it. */
      if (n >= c->body.cap - c->body.len) { c->too_large = true; return MHD_YES; }
      memcpy(c->body.p + c->body.len, upload_data, n);
      c->body.len += n;
      c->body.p[c->body.len] = 0;
      return MHD_YES;
    }
    pvd_buf_put(&c->body, upload_data, n);
    return MHD_YES;
  }

  /* The whole body is here (or this is the call after a resume). */
  if (atomic_load(&c->finished)) return send_reply(c);
  if (c->suspended) return MHD_YES; /* spurious: still waiting */
  if (c->too_large) {
    pvd_reply_error(c, 413, "body larger than the limit of %zu bytes",
                    c->route->upload ? S->max_upload : S->max_body);
    return send_reply(c);
  }
  if (c->body.oom) {
    pvd_reply_error(c, 500, "out of memory reading the body");
    return send_reply(c);
  }
  if (c->upload_failed) {
    /* 507: the disk is full, a retry helps only once space is freed. */
    pvd_reply_error(c, c->upload_errno == ENOSPC || c->upload_errno == EDQUOT ? 507 : 500,
                    "writing the uploaded model failed: %s", strerror(c->upload_errno));
    return send_reply(c);
  }
  c->route->fn(c);
  if (atomic_load(&c->finished) && !c->suspended) return send_reply(c);
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)mc;
  (void)toe;
  pvd_conn *c = *con_cls;
  if (!c) return;
  if (c->upload_fd >= 0) close(c->upload_fd);
  if (c->upload_tmp) {
    unlink(c->upload_tmp); /* still there only if it never reached the loader */
    free(c->upload_tmp);
  }
  pvd_req_free(c->req);
  free(c->body_base ? c->body_base : c->body.p);
  free(c->resp);
  free(c);
  *con_cls = NULL;
  atomic_fetch_sub(&inflight, 1);
}

int pvd_http_start(const pvd_settings *s) {
  S = s;
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
  char port[16];
  snprintf(port, sizeof port, "%d", s->listen_port);
  int gai = getaddrinfo(s->listen_host, port, &hints, &ai);
  if (gai) return pv_error(PV_EINVAL, "listen: \"%s\" is not a numeric address: %s", s->listen_host, gai_strerror(gai));
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ITC | MHD_USE_ERROR_LOG;
  if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  struct MHD_OptionItem pool[] = {
      {MHD_OPTION_THREAD_POOL_SIZE, s->http_threads, NULL},
      {MHD_OPTION_END, 0, NULL}};
  if (s->http_threads <= 1) pool[0].option = MHD_OPTION_END;
  D = MHD_start_daemon(flags, (uint16_t)s->listen_port, NULL, NULL, on_request, NULL,
                       MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                       MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                       MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->max_connections,
                       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->request_timeout,
                       MHD_OPTION_ARRAY, pool,
                       MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!D) return pv_error(PV_EIO, "cannot listen on %s:%d (in use, or not an address of this host)", s->listen_host, s->listen_port);
  const union MHD_DaemonInfo *di = MHD_get_daemon_info(D, MHD_DAEMON_INFO_BIND_PORT);
  bound_port = di ? di->port : s->listen_port;
  return 0;
}

void pvd_http_quiesce(void) {
  atomic_store(&quiescing, true);
  if (D) {
    MHD_socket fd = MHD_quiesce_daemon(D);
    if (fd != MHD_INVALID_SOCKET) close(fd);
  }
}

void pvd_http_stop(void) {
  if (D) MHD_stop_daemon(D);
  D = NULL;
}
