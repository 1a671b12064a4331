/*
 * opts.h: executor options, "key=value,key=value" strings parsed against a table.
 *
 * Each executor owns one table (name, type, range, default, help line) and one struct of
 * ints that the table's offsets point into. The library reads no environment variable:
 * whatever steers an executor arrives as cellm_model_params.exec_options and is parsed
 * here, where an unknown key or a bad value is refused by name.
 */
#ifndef CELLM_BASE_OPTS_H
#define CELLM_BASE_OPTS_H

#include <stddef.h>

#include "cellm.h"

enum cellm_opt_type {
    CELLM_OPT_INT,    /* a decimal integer in [min, max] */
    CELLM_OPT_BOOL,   /* 0/1 (also off/on, false/true, no/yes) */
    CELLM_OPT_CHOICE, /* one of the '|'-separated names in choices; the value is its index */
};

struct cellm_opt {
    const char *key;
    enum cellm_opt_type type;
    int min, max, def;   /* CHOICE: def is an index into choices; min/max unused */
    const char *choices; /* CHOICE only: "auto|portable|avx2" */
    size_t offset;       /* of the int in the executor's options struct */
    const char *help;    /* one line; "test only: ..." for switches kept for the GPU tests */
};

/* Sets every option of the table in out (a struct whose ints the offsets name) to its
 * default, then applies s ("key=value,..."; NULL or "" = defaults only). who names the
 * executor in messages ("cuda executor"). CELLM_ERR_ARG for an unknown key, a missing '=',
 * a value that does not parse or is out of range, naming the key, the value found and what
 * was expected. */
enum cellm_status cellm_opts_parse(const char *who, const struct cellm_opt *table, int n,
                                   const char *s, void *out, struct cellm_error *err);

/* Appends to buf (at most cap bytes with the terminating NUL, truncating) one line per
 * option: "  key=<range> (default D): help". Returns the length the whole text needs. */
size_t cellm_opts_help(const struct cellm_opt *table, int n, char *buf, size_t cap);

/* Appends "key=value,..." with the effective values of every option (for describe()). */
size_t cellm_opts_format(const struct cellm_opt *table, int n, const void *in, char *buf,
                         size_t cap);

#endif
