/* Options shared by the subcommands that load a model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_backends(const char *list, char *buf, size_t len, const char **names,
                 int max) {
  snprintf(buf, len, "%s", list);
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < max - 1;
       tok = strtok_r(NULL, ",", &save))
    names[n++] = tok;
  names[n] = NULL;
  return n;
}

int cli_int(const char *s, const char *what, int lo, int hi, int *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < lo || v > hi)
    return cli_die("%s: '%s' is not an integer in [%d, %d]", what, s, lo, hi);
  *out = (int)v;
  return 0;
}
