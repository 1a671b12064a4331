/*
 * args.h: the CLI's strict option values and its messages about options.
 *
 * Owns: number parsing that refuses "abc", "5x" and out-of-range values with a message
 * naming the flag; the seed rule (-1 or none = random); the "unknown option" message
 * with the nearest known flag; reading a prompt from a file or stdin; --version.
 */
#ifndef CELLM_CLI_ARGS_H
#define CELLM_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

/* Parses a whole decimal integer in [lo, hi] into *out. On failure prints
 * "cellm CMD: FLAG expects an integer in [lo, hi], got 'V'" and returns 0. */
int cli_int(const char *cmd, const char *flag, const char *v, long lo, long hi, int *out);

/* Parses a whole finite number in [lo, hi] into *out; prints and returns 0 on failure. */
int cli_float(const char *cmd, const char *flag, const char *v, double lo, double hi, float *out);

/* Parses a seed: a decimal in [0, 2^64-1], or -1 for "pick one at random". *random_seed
 * is set to 1 for -1. Prints and returns 0 on anything else. */
int cli_seed(const char *cmd, const char *flag, const char *v, uint64_t *seed, int *random_seed);

/* A seed from the system's random source (getrandom), for --seed -1 or no --seed. */
uint64_t cli_random_seed(void);

/* Prints "cellm CMD: unknown option 'A'" and the nearest of the NULL-terminated `known`
 * flags when it is close, or what to use instead for llama.cpp options cellm has no use
 * for (-ngl: --device cuda). */
void cli_unknown(const char *cmd, const char *a, const char *const *known);

/* The flag of `known` nearest to s when it is close enough to be a typo, else NULL. */
const char *cli_nearest(const char *s, const char *const *known);
/* "cellm: unknown command 'A'", with the nearest command. */
void cli_unknown_command(const char *a, const char *const *known);

/* Reads a whole file ("-" = stdin) into a malloc'd NUL-terminated string; prints
 * "cellm CMD: PATH: reason" and returns NULL on failure. */
char *cli_read_file(const char *cmd, const char *path);

/* Prints the version, the git revision and the build options (--version). */
void cli_print_version(FILE *f);

#endif
