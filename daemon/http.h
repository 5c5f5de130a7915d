/* The HTTP layer's connection state, shared by http.c (libmicrohttpd
 * plumbing) and routes.c (the endpoints). */
#ifndef PVD_HTTP_H
#define PVD_HTTP_H

#include <microhttpd.h>

#include "pivotd.h"

typedef struct pvd_conn pvd_conn;

/* A handler either answers at once (pvd_reply) or suspends the connection
 * and answers later from another thread through pvd_conn_finish. */
typedef void (*pvd_handler)(pvd_conn *c);

typedef struct pvd_route {
  const char *method;
  const char *pattern;   /* segments; "{m}" model name, "{v}" version */
  pvd_handler fn;
  bool admin;            /* needs the token, or loopback without one */
  bool upload;           /* body streams to a temp file in the repository */
} pvd_route;

struct pvd_conn {
  struct MHD_Connection *mc;
  const pvd_route *route;
  char model[256];
  int64_t version;       /* -1 when the URL names none */
  pvd_buf body;
  char *body_base;       /* preallocated from Content-Length (body.p points
                            inside it), freed instead of body.p; NULL if not */
  bool too_large;
  bool headers_done;
  /* upload */
  int upload_fd;
  char *upload_tmp;
  size_t upload_len;
  bool upload_failed;
  int upload_errno;      /* why the temp file write failed (ENOSPC...) */
  /* deferred answer */
  _Atomic int finished;
  bool suspended;
  int status;
  char *resp;
  size_t resp_len;
  size_t resp_json_len;
  const char *resp_type;
  bool retry_after;
  pvd_req *req;
  uint64_t t_recv;
};

extern const pvd_route pvd_routes[];
extern const int pvd_n_routes;

/* Answer now with a malloc'd body (taken) or an error. */
void pvd_reply(pvd_conn *c, int status, char *body, size_t len, const char *type);
void pvd_reply_error(pvd_conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void pvd_reply_buf(pvd_conn *c, int status, pvd_buf *b);
/* Suspend before handing c to another thread; that thread fills the
 * answer and calls pvd_conn_finish, which resumes. */
void pvd_conn_suspend(pvd_conn *c);
void pvd_conn_finish(pvd_conn *c);
bool pvd_http_quiescing(void);
/* Model and version the URL names, retained; NULL after answering 404/503. */
pvd_version *pvd_route_resolve(pvd_conn *c, pvd_model **mp);
/* detect.c */
void pvd_h_detect(pvd_conn *c);

#endif
