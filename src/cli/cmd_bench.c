/* cmd_bench.c: placeholder until the module lands; says so and fails. */
#include <stdio.h>

#include "cli.h"

int cellm_cmd_bench(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cellm bench: not built in this version\n");
    return 2;
}
