/*
 * test_xla_bench.c: a small timing driver for any executor, linked with the core library
 * only: load time, first prefill (compiles included on xla), steady prefill and decode
 * tokens per second, on random token ids.
 *   cellm_xla_bench -m DIR [--device cpu|xla] [--pjrt-plugin PATH] [-p 512] [-n 128]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *cellm_model_device(const struct cellm_model *m);

static int pass(struct cellm_model *m, const int32_t *ids, int P, int N, double *tp, double *td,
                int32_t *last)
{
    struct cellm_error err;
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(m, &cp, &ctx, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 0;
    }
    int seq = cellm_ctx_seq_new(ctx), V = cellm_model_vocab(m);
    const float *lg;
    double t0 = now();
    if (cellm_ctx_eval_seq(ctx, seq, ids, P, &lg, &err)) {
        fprintf(stderr, "bench: prefill: %s\n", err.msg);
        cellm_ctx_free(ctx);
        return 0;
    }
    double t1 = now();
    int32_t tok = 0;
    for (int i = 0; i < N; i++) {
        int b = 0;
        for (int v = 1; v < V; v++)
            if (lg[v] > lg[b]) b = v;
        tok = b;
        if (cellm_ctx_eval_seq(ctx, seq, &tok, 1, &lg, &err)) {
            fprintf(stderr, "bench: decode: %s\n", err.msg);
            cellm_ctx_free(ctx);
            return 0;
        }
    }
    double t2 = now();
    *tp = t1 - t0;
    *td = t2 - t1;
    *last = tok;
    cellm_ctx_free(ctx);
    return 1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int P = 512, N = 128;
    struct cellm_model_params mp = cellm_model_params_default();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m"))
            dir = argv[i + 1];
        else if (!strcmp(argv[i], "-p"))
            P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-n"))
            N = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pjrt-plugin"))
            mp.pjrt_plugin = argv[i + 1];
        else if (!strcmp(argv[i], "--device"))
            mp.device = !strcmp(argv[i + 1], "xla") ? CELLM_DEVICE_XLA : CELLM_DEVICE_CPU;
        else if (!strcmp(argv[i], "--threads"))
            mp.n_threads = atoi(argv[i + 1]);
    }
    if (!dir || P < 1 || N < 1) {
        fprintf(stderr, "usage: cellm_xla_bench -m DIR [--device cpu|xla] [-p P] [-n N]\n");
        return 2;
    }
    struct cellm_error err;
    struct cellm_model *m;
    double t0 = now();
    if (cellm_model_load(dir, &mp, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    double tl = now() - t0;
    int V = cellm_model_vocab(m);
    int32_t *ids = malloc((size_t)P * sizeof *ids);
    srand(1);
    for (int i = 0; i < P; i++)
        ids[i] = rand() % V;
    double tp1, td1, tp2, td2;
    int32_t l1, l2;
    int ok = pass(m, ids, P, N, &tp1, &td1, &l1) && pass(m, ids, P, N, &tp2, &td2, &l2);
    if (ok) {
        printf("device: %s\n", cellm_model_device(m));
        printf("load: %.2f s\n", tl);
        printf("first run (compiles included): prefill %.2f s, %d decode steps %.2f s\n", tp1, N,
               td1);
        printf("prefill: %d tokens in %.3f s = %.1f tok/s\n", P, tp2, P / tp2);
        printf("decode: %d tokens in %.3f s = %.2f tok/s (%.2f ms/token)\n", N, td2, N / td2,
               1e3 * td2 / N);
        printf("same trajectory in both runs: %s\n", l1 == l2 ? "yes" : "NO");
    }
    free(ids);
    cellm_model_free(m);
    return ok ? 0 : 1;
}
