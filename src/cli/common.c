/*
 * common.c: shared CLI helpers.
 */
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/hub.h"

const char *const cli_common_flags[] = {
    "-m",          "--model",       "--download", "--device",       "--threads", "-t",
    "--precision", "--pjrt-plugin", "--exec-opt", "--exec-options", "--kv-gb",   NULL};

/* --exec-opt help: every executor's table. */
static void print_exec_options(void)
{
    static const struct {
        enum cellm_device dev;
        const char *name;
    } execs[] = {{CELLM_DEVICE_CPU, "cpu"}, {CELLM_DEVICE_CUDA, "cuda"}, {CELLM_DEVICE_XLA, "xla"}};
    char buf[8192];
    for (size_t i = 0; i < sizeof execs / sizeof execs[0]; i++) {
        size_t n = cellm_exec_options_help(execs[i].dev, buf, sizeof buf);
        if (!n)
            printf("--device %s: not in this build\n", execs[i].name);
        else
            printf("--device %s options (--exec-opt KEY=VALUE):\n%s", execs[i].name, buf);
    }
}

/* Appends one or more "k=v" items to o->exec_opts. */
static int add_exec_opts(struct cli_opts *o, const char *flag, const char *v)
{
    if (!strcmp(v, "help")) {
        print_exec_options();
        exit(0); /* like --help: nothing else to do */
    }
    size_t len = strlen(o->exec_opts);
    if (len + strlen(v) + 2 > sizeof o->exec_opts) {
        fprintf(stderr, "cellm: %s %s: executor options longer than %zu bytes in all\n", flag, v,
                sizeof o->exec_opts - 1);
        return -1;
    }
    snprintf(o->exec_opts + len, sizeof o->exec_opts - len, "%s%s", len ? "," : "", v);
    return 1;
}

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
    if (!strcmp(a, "--download")) {
        o->download = 1;
        return 1;
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
        return v && cli_int(argv[0], a, v, 1, 256, &o->mp.n_threads) ? 1 : -1;
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
    if (!strcmp(a, "--exec-opt") || !strcmp(a, "--exec-options")) {
        const char *v = cli_value(argc, argv, i);
        if (!v) return -1;
        if (!strcmp(a, "--exec-opt") && strcmp(v, "help") && !strchr(v, '=')) {
            fprintf(stderr,
                    "cellm: --exec-opt %s: expected KEY=VALUE (--exec-opt help lists them)\n", v);
            return -1;
        }
        return add_exec_opts(o, a, v);
    }
    if (!strcmp(a, "--kv-gb")) {
        /* the CUDA executor's options kv_paged (a budget means the pool) and kv_gb, checked
         * against --device at load */
        const char *v = cli_value(argc, argv, i);
        int gb;
        if (!v || !cli_int(argv[0], a, v, 1, 1 << 20, &gb)) return -1;
        char item[32];
        snprintf(item, sizeof item, "kv_paged=1,kv_gb=%d", gb);
        o->kv_gb = gb;
        return add_exec_opts(o, a, item);
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
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = *p >= '0' && *p <= '9' ? strtol(p, &end, 10) : -1;
        if (x < 0 || errno || x > INT32_MAX) {
            fprintf(stderr,
                    "cellm: bad token id list '%s' (expected ids separated by commas or "
                    "spaces, e.g. 1,2,3)\n",
                    s);
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
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p && (*p < '0' || *p > '9')) {
            fprintf(stderr,
                    "cellm: bad token id list '%s' (expected ids separated by commas or "
                    "spaces, e.g. 1,2,3)\n",
                    s);
            free(v);
            return 0;
        }
    }
    *ids = v;
    *n = k;
    return 1;
}

int cli_resolve(struct cli_opts *o, const char *cmd)
{
    if (!o->model_dir) {
        fprintf(stderr, "cellm %s: -m DIR (or -m ORG/NAME) is required\n", cmd);
        return 0;
    }
    if (o->model_dir == o->resolved) return 1;
    o->given = o->model_dir;
    char *dir = hub_resolve_model(cmd, o->model_dir, o->download);
    if (!dir) return 0;
    int fits = strlen(dir) < sizeof o->resolved;
    if (fits)
        snprintf(o->resolved, sizeof o->resolved, "%s", dir);
    else
        fprintf(stderr, "cellm %s: %s: path too long\n", cmd, dir);
    free(dir);
    if (!fits) return 0;
    o->model_dir = o->resolved;
    return 1;
}

struct cellm_tokenizer *cli_load_tokenizer(const struct cli_opts *o, const char *cmd)
{
    struct cellm_error err;
    struct cellm_tokenizer *tok = NULL;
    if (cellm_tokenizer_load(o->model_dir, &tok, &err)) {
        fprintf(stderr, "cellm %s: %s\n", cmd, err.msg);
        return NULL;
    }
    if (o->chat_template) {
        char *t = cli_read_file(cmd, o->chat_template);
        enum cellm_status st = t ? cellm_tokenizer_set_chat_template(tok, t, &err) : CELLM_ERR_IO;
        if (t && st) fprintf(stderr, "cellm %s: %s\n", cmd, err.msg);
        free(t);
        if (st) {
            cellm_tokenizer_free(tok);
            return NULL;
        }
    }
    return tok;
}

struct cellm_model *cli_load_model(const struct cli_opts *o, const char *cmd)
{
    if (!o->model_dir) {
        fprintf(stderr, "cellm %s: -m DIR (or -m ORG/NAME) is required\n", cmd);
        return NULL;
    }
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = o->mp;
    if (o->exec_opts[0]) mp.exec_options = o->exec_opts;
    if (o->kv_gb && mp.device != CELLM_DEVICE_CUDA) {
        fprintf(stderr,
                "cellm %s: --kv-gb %d: the KV pool budget applies to --device cuda only (the CPU "
                "grows each sequence's cache as it needs)\n",
                cmd, o->kv_gb);
        return NULL;
    }
    char search[8192];
    if (mp.device == CELLM_DEVICE_XLA) {
        if (!mp.pjrt_plugin) mp.pjrt_plugin = getenv("CELLM_PJRT_PLUGIN");
        size_t len = 0;
        search[0] = 0;
        const char *vars[] = {"VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH"};
        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
            const char *v = getenv(vars[i]);
            if (v && *v && len + strlen(v) + 2 < sizeof search)
                len +=
                    (size_t)snprintf(search + len, sizeof search - len, "%s%s", len ? ":" : "", v);
        }
        const char *home = getenv("HOME");
        if (home && *home && len + strlen(home) + 10 < sizeof search)
            snprintf(search + len, sizeof search - len, "%s%s/.local", len ? ":" : "", home);
        mp.pjrt_search = search;
    }
    if (cellm_model_load(o->model_dir, &mp, &m, &err) != CELLM_OK) {
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
