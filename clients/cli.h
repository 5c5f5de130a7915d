/* pivot CLI: one function per subcommand, argv[0] is the subcommand. */
#ifndef PV_CLI_H
#define PV_CLI_H
#include "pivot.h"

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Print "pivot: <message>" to stderr and return 1 (for `return die(...)`). */
int cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Parse "1/8", "0.125" into a fraction in (0,1]; -1 on error. */
double cli_parse_fraction(const char *s);
#endif
