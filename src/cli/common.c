/*
 * common.c: shared CLI helpers.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *cli_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "cellm: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int cli_common_opt(struct cli_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        o->model_dir = cli_value(argc, argv, i);
        return o->model_dir ? 1 : -1;
    }
    if (!strcmp(a, "--device")) {
        const char *v = cli_value(argc, argv, i);
        if (!v) return -1;
        if (!strcmp(v, "cpu"))
            o->mp.device = CELLM_DEVICE_CPU;
        else if (!strcmp(v, "cuda"))
            o->mp.device = CELLM_DEVICE_CUDA;
        else if (!strcmp(v, "xla"))
            o->mp.device = CELLM_DEVICE_XLA;
        else {
            fprintf(stderr, "cellm: --device %s: expected cpu, cuda or xla\n", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
        const char *v = cli_value(argc, argv, i);
        char *end;
        long n = v ? strtol(v, &end, 10) : 0;
        if (!v || *end || n < 1 || n > 256) {
            fprintf(stderr, "cellm: --threads expects a number in [1, 256]\n");
            return -1;
        }
        o->mp.n_threads = (int)n;
        return 1;
    }
    if (!strcmp(a, "--precision")) {
        const char *v = cli_value(argc, argv, i);
        if (!v) return -1;
        if (!strcmp(v, "exact"))
            o->mp.precision = CELLM_PRECISION_EXACT;
        else if (!strcmp(v, "fast"))
            o->mp.precision = CELLM_PRECISION_FAST;
        else {
            fprintf(stderr, "cellm: --precision %s: expected exact or fast\n", v);
            return -1;
        }
        return 1;
    }
    if (!strcmp(a, "--pjrt-plugin")) {
        o->mp.pjrt_plugin = cli_value(argc, argv, i);
        return o->mp.pjrt_plugin ? 1 : -1;
    }
    return 0;
}

int cli_parse_ids(const char *s, int32_t **ids, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            fprintf(stderr, "cellm: bad token id list '%s' (expected e.g. 1,2,3)\n", s);
            free(v);
            return 0;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return 0;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
        if (*p == ',' || *p == ' ')
            p++;
        else if (*p) {
            fprintf(stderr, "cellm: bad token id list '%s' (expected e.g. 1,2,3)\n", s);
            free(v);
            return 0;
        }
    }
    *ids = v;
    *n = k;
    return 1;
}

struct cellm_model *cli_load_model(const struct cli_opts *o, const char *cmd)
{
    if (!o->model_dir) {
        fprintf(stderr, "cellm %s: -m DIR is required\n", cmd);
        return NULL;
    }
    struct cellm_error err;
    struct cellm_model *m;
    if (cellm_model_load(o->model_dir, &o->mp, &m, &err) != CELLM_OK) {
        fprintf(stderr, "cellm %s: %s\n", cmd, err.msg);
        return NULL;
    }
    const char *w = cellm_model_warnings(m);
    if (w && *w) fprintf(stderr, "warning: %s", w);
    return m;
}

double cli_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
