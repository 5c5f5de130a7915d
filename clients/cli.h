/* pivot CLI: one function per subcommand, argv[0] is the subcommand. */
#ifndef PV_CLI_H
#define PV_CLI_H
#include <stdbool.h>
#include <stddef.h>

#include "pivot.h"

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Print "pivot: <message>" to stderr and return 1 (for `return die(...)`). */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse "1/8", "0.125" into a fraction in (0,1]; -1 on error. */
double cli_parse_fraction(const char *s);
/* Split a comma list "opencl,cpu" into names (NULL-terminated) using buf. */
int cli_backends(const char *list, char *buf, size_t len, const char **names,
                 int max);
/* Parse an int in [lo, hi] or print an error naming `what` and return 1. */
int cli_int(const char *s, const char *what, int lo, int hi, int *out);
/* Output name → file-name-safe string ([A-Za-z0-9._-], others '_'). */
void cli_sanitize(const char *in, char *out, size_t len);
/* pivot bench --backend NAME (bench-backend.c): pivoted vs dense Gemm on
 * that backend through the runtime; 0 or 1 after printing the error. */
int cli_bench_backend(const char *backend, const int *sizes, int n_sizes,
                      const int *batches, int n_batches, const double *dens,
                      int n_dens, int repeats, double min_sample_ms);
#endif
