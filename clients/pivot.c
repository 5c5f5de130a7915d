/* pivot: the local command line (run, inspect, convert, bench, detect). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
  const char *name;
  int (*fn)(int, char **);
  const char *help;
} commands[] = {
    {"run", cmd_run, "run a model on .npy inputs"},
    {"inspect", cmd_inspect, "layers, shapes, parameters, FLOPs, memory"},
    {"convert", cmd_convert, "convert/prune a model to .pvm"},
    {"bench", cmd_bench, "benchmark kernels and models"},
    {"detect", cmd_detect, "detect objects in a JPEG/PNG photo"},
};

int cli_die(const char *fmt, ...) {
  va_list ap;
  fputs("pivot: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return 1;
}

double cli_parse_fraction(const char *s) {
  char *end;
  double a = strtod(s, &end);
  if (end == s) return -1;
  if (*end == '/') {
    char *end2;
    double b = strtod(end + 1, &end2);
    if (end2 == end + 1 || *end2 || b <= 0) return -1;
    a /= b;
  } else if (*end) {
    return -1;
  }
  return a > 0 && a <= 1 ? a : -1;
}

static void usage(FILE *f) {
  fprintf(f, "usage: pivot COMMAND [ARGS]   (pivot %s)\n\ncommands:\n",
          pv_version());
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
  fprintf(f, "\n'pivot COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("pivot %s\n", pv_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name))
      return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "pivot: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
