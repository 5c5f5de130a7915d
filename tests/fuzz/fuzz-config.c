/* libFuzzer target for pivotd's settings parsers (daemon/config.c): the
 * JSON config file, and, for inputs starting with 0xff, a command line
 * whose arguments are separated by NUL bytes. Every rejected input must
 * come with an error message; accepted settings must be in range. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pivotd.h"

static void check_settings(const pvd_settings *s) {
  if (s->listen_port < 0 || s->listen_port > 65535 || s->http_threads < 1 ||
      s->max_connections < 1 || s->request_timeout < 1 || s->max_body == 0 ||
      s->max_upload == 0 || !s->listen_host)
    abort();
}

static void run_file(const uint8_t *data, size_t size) {
  /* The parser reads a path: an anonymous memory file gives it one. */
  int fd = memfd_create("pivotd-config", 0);
  if (fd < 0) return;
  if (size && write(fd, data, size) != (ssize_t)size) { close(fd); return; }
  char path[64];
  snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  pvd_settings s;
  pvd_settings_init(&s);
  if (pvd_settings_load_file(&s, path) == 0) check_settings(&s);
  else if (!pv_errmsg()[0]) abort();
  pvd_settings_free(&s);
  close(fd);
}

static void run_args(const uint8_t *data, size_t size) {
  /* --config would open whatever file the input names (a FIFO would hang
   * the run); the file parser is fuzzed on its own above. */
  if (memmem(data, size, "config", 6)) return;
  char *buf = malloc(size + 1);
  char **argv = calloc(size + 2, sizeof *argv);
  if (!buf || !argv) { free(buf); free(argv); return; }
  memcpy(buf, data, size);
  buf[size] = 0;
  int argc = 0;
  argv[argc++] = "pivotd";
  for (size_t i = 0; i < size;) {
    argv[argc++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  argv[argc] = NULL;
  pvd_settings s;
  pvd_settings_init(&s);
  free(s.config_path);
  s.config_path = strdup("/nonexistent/pivotd.json");
  int rc = pvd_settings_parse_args(&s, argc, argv);
  if (rc == 0) check_settings(&s);
  else if (rc < 0 && !pv_errmsg()[0]) abort();
  pvd_settings_free(&s);
  free(argv);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size && data[0] == 0xff) run_args(data + 1, size - 1);
  else run_file(data, size);
  return 0;
}
