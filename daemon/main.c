/* pivotd: the main thread runs a libuv loop for signals (SIGTERM/SIGINT:
 * stop accepting, drain, exit 0; SIGHUP: reload settings, rescan), the
 * repository poll timer and freeing of retired model versions; HTTP,
 * workers and the loader run on their own threads and wake it with
 * uv_async_send. */
#include "config.h"
#include "pivotd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "dashboard.h"
#include "http.h"

static uv_loop_t *loop;
static uv_async_t wake;
static uv_signal_t sig_term, sig_int, sig_hup;
static uv_timer_t poll_timer, drain_timer;
static _Atomic bool initial_done;
static bool notified_ready, draining;
static uint64_t drain_deadline;
static pvd_settings settings;
static int saved_argc;
static char **saved_argv;

static void notify(const char *state) {
#ifdef HAVE_SYSTEMD
  sd_notify(0, state);
#else
  (void)state;
#endif
}

static void wake_main(void) { uv_async_send(&wake); }

static void on_wake(uv_async_t *h) {
  (void)h;
  pvd_repo_reap();
  if (!notified_ready && atomic_load(&initial_done)) {
    notified_ready = true;
    notify("READY=1");
    pv_log(PV_LOG_INFO, "pivotd ready on %s:%d", settings.listen_host, pvd_http_port());
  }
}

static void on_initial_scan(void *arg, int rc, const char *msg) {
  (void)arg;
  (void)rc;
  (void)msg;
  atomic_store(&initial_done, true);
  wake_main();
}

static void on_poll(uv_timer_t *t) {
  (void)t;
  pvd_repo_post(PVD_JOB_SCAN, NULL, -1, NULL, NULL, NULL);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void finish(void) {
  pvd_http_stop();
  uv_close((uv_handle_t *)&sig_term, close_cb);
  uv_close((uv_handle_t *)&sig_int, close_cb);
  uv_close((uv_handle_t *)&sig_hup, close_cb);
  uv_close((uv_handle_t *)&poll_timer, close_cb);
  uv_close((uv_handle_t *)&drain_timer, close_cb);
  uv_close((uv_handle_t *)&wake, close_cb);
}

static void on_drain_tick(uv_timer_t *t) {
  (void)t;
  pvd_repo_reap();
  int n = pvd_http_inflight();
  if (n == 0 || pvd_now_ns() >= drain_deadline) {
    if (n) {
      /* libmicrohttpd cannot stop with suspended connections; a request
       * stuck past the drain timeout ends the process instead. */
      pv_log(PV_LOG_ERROR, "drain timeout: %d requests still in flight, exiting", n);
      _exit(1);
    }
    uv_timer_stop(&drain_timer);
    finish();
  }
}

static void on_stop(uv_signal_t *h, int signum) {
  (void)h;
  if (draining) {
    if (signum == SIGINT) { pv_log(PV_LOG_WARN, "second SIGINT: exiting now"); exit(1); }
    return;
  }
  draining = true;
  pv_log(PV_LOG_INFO, "signal %d: no new connections, draining in-flight requests", signum);
  notify("STOPPING=1");
  pvd_http_quiesce();
  uv_timer_stop(&poll_timer);
  drain_deadline = pvd_now_ns() + (uint64_t)settings.drain_timeout * 1000000000ull;
  uv_timer_start(&drain_timer, on_drain_tick, 0, 5);
}

/* Settings read by other threads as single words are updated in place;
 * the listen address and thread counts need a restart. */
static void on_hup(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  notify("RELOADING=1");
  /* File then flags again, so flags keep overriding the file. */
  pvd_settings fresh;
  pvd_settings_init(&fresh);
  int rc = pvd_settings_parse_args(&fresh, saved_argc, saved_argv);
  if (rc) {
    pv_log(PV_LOG_ERROR, "SIGHUP: %s; keeping the current settings", pv_errmsg());
  } else {
    settings.max_body = fresh.max_body;
    settings.max_upload = fresh.max_upload;
    settings.request_timeout = fresh.request_timeout;
    settings.unload_first = fresh.unload_first;
    settings.drain_timeout = fresh.drain_timeout;
    if ((fresh.token == NULL) != (settings.token == NULL) ||
        (fresh.token && strcmp(fresh.token, settings.token))) {
      /* HTTP threads may hold the old pointer: it is left allocated. */
      settings.token = fresh.token;
      fresh.token = NULL;
    }
    if (fresh.repo_poll_ms != settings.repo_poll_ms) {
      settings.repo_poll_ms = fresh.repo_poll_ms;
      uv_timer_stop(&poll_timer);
      if (settings.repo_poll_ms > 0)
        uv_timer_start(&poll_timer, on_poll, (uint64_t)settings.repo_poll_ms, (uint64_t)settings.repo_poll_ms);
    }
    pv_log(PV_LOG_INFO, "SIGHUP: settings reloaded from %s", settings.config_path);
  }
  pvd_settings_free(&fresh);
  pvd_repo_post(PVD_JOB_SCAN, NULL, -1, NULL, NULL, NULL);
  notify("READY=1");
}

int main(int argc, char **argv) {
  pvd_settings_init(&settings);
  pvd_cfg = &settings;
  saved_argc = argc;
  saved_argv = argv;
  int rc = pvd_settings_parse_args(&settings, argc, argv);
  if (rc > 0) { pvd_settings_free(&settings); return 0; }
  if (rc < 0) {
    fprintf(stderr, "pivotd: %s\n", pv_errmsg());
    pvd_settings_free(&settings);
    return 2;
  }
  struct stat st;
  if (stat(settings.repository, &st) || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "pivotd: repository: %s is not a directory\n", settings.repository);
    pvd_settings_free(&settings);
    return 2;
  }
  loop = uv_default_loop();
  uv_async_init(loop, &wake, on_wake);
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  uv_signal_init(loop, &sig_hup);
  uv_timer_init(loop, &poll_timer);
  uv_timer_init(loop, &drain_timer);
  uv_signal_start(&sig_term, on_stop, SIGTERM);
  uv_signal_start(&sig_int, on_stop, SIGINT);
  uv_signal_start(&sig_hup, on_hup, SIGHUP);
  signal(SIGPIPE, SIG_IGN);

  if (pvd_repo_init(&settings, wake_main) || pvd_dash_start() || pvd_http_start(&settings)) {
    pvd_dash_stop();
    fprintf(stderr, "pivotd: %s\n", pv_errmsg());
    pvd_repo_shutdown();
    pvd_settings_free(&settings);
    return 1;
  }
  if (settings.port_file) {
    /* Written to a temp name and renamed, so a reader never sees half. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", settings.port_file);
    FILE *f = fopen(tmp, "w");
    if (f) {
      fprintf(f, "%d\n", pvd_http_port());
      fclose(f);
      rename(tmp, settings.port_file);
    }
  }
  pv_log(PV_LOG_INFO, "pivotd %s listening on %s:%d, repository %s", pv_version(),
         settings.listen_host, pvd_http_port(), settings.repository);
  pvd_repo_post(PVD_JOB_SCAN, NULL, -1, NULL, on_initial_scan, NULL);
  if (settings.repo_poll_ms > 0)
    uv_timer_start(&poll_timer, on_poll, (uint64_t)settings.repo_poll_ms, (uint64_t)settings.repo_poll_ms);

  uv_run(loop, UV_RUN_DEFAULT);

  pvd_dash_stop();
  pvd_http_stop();
  pvd_repo_shutdown();
  uv_loop_close(loop);
  pvd_settings_free(&settings);
  pv_log(PV_LOG_INFO, "pivotd stopped");
  return 0;
}
