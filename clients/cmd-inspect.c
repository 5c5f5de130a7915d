#include "cli.h"
int cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; return cli_die("inspect: not implemented yet"); }
