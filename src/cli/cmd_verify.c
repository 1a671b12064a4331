/* cmd_verify.c: placeholder until the module lands; says so and fails. */
#include <stdio.h>

#include "cli.h"

int cellm_cmd_verify(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "cellm verify: not built in this version\n");
    return 2;
}
