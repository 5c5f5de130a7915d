#include "cli.h"
int cmd_bench(int argc, char **argv) { (void)argc; (void)argv; return cli_die("bench: not implemented yet"); }
