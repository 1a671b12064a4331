/*
 * common.h: option parsing and model loading shared by the subcommands.
 */
#ifndef CELLM_CLI_COMMON_H
#define CELLM_CLI_COMMON_H

#include <stdint.h>

#include "cellm.h"

struct cli_opts {
    const char *model_dir;
    struct cellm_model_params mp;
};

/* If argv[*i] is a common option (-m/--model, --device, --threads, --precision,
 * --pjrt-plugin),
 * consumes it (and its value) and returns 1; returns -1 on a bad value (message
 * printed), 0 if not a common option. */
int cli_common_opt(struct cli_opts *o, int argc, char **argv, int *i);

/* The value of option argv[*i] (advancing *i), or NULL with a message. */
const char *cli_value(int argc, char **argv, int *i);

/* Parses "1,2,3" into a malloc'd array. Returns 0 and prints on error. */
int cli_parse_ids(const char *s, int32_t **ids, int *n);

/* Loads the model, printing the error on failure. */
struct cellm_model *cli_load_model(const struct cli_opts *o, const char *cmd);

double cli_now(void);

#endif
