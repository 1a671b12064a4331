/*
 * cmd_bench.c: `cellm bench`: load time, prefill and decode speed, peak memory.
 *
 * The prompt is -p pseudo-random ids (fixed seed); decode feeds back the argmax for -n
 * steps. Decode bytes/s counts every weight byte read once per token (the head included,
 * the embedding row excluded), which is what bounds decode on a memory-bound device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "common.h"
#include "engine/engine.h"

int cellm_cmd_bench(int argc, char **argv)
{
    struct cli_opts o = {NULL, cellm_model_params_default()};
    int n_prompt = 128, n_gen = 64, reps = 1;
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *v;
        if (!strcmp(argv[i], "-p")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            n_prompt = atoi(v);
        } else if (!strcmp(argv[i], "-n")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            n_gen = atoi(v);
        } else if (!strcmp(argv[i], "-r")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            reps = atoi(v);
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cellm bench -m DIR [-p PROMPT_TOKENS (128)] [-n GEN_TOKENS (64)] [-r "
                   "REPEATS]\n"
                   "                   [--device cpu|cuda|xla] [--threads N] [--precision "
                   "exact|fast]\n");
            return 0;
        } else {
            fprintf(stderr, "cellm bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (n_prompt < 1 || n_gen < 1 || reps < 1) {
        fprintf(stderr, "cellm bench: -p, -n and -r must be positive\n");
        return 2;
    }
    double t0 = cli_now();
    struct cellm_model *m = cli_load_model(&o, "bench");
    if (!m) return 1;
    double t_load = cli_now() - t0;
    const struct cellm_desc *d = cellm_model_desc(m);
    int vocab = cellm_model_vocab(m);
    if (n_prompt + n_gen > cellm_model_max_context(m)) {
        fprintf(stderr, "cellm bench: -p %d + -n %d exceeds the model's context of %d\n", n_prompt,
                n_gen, cellm_model_max_context(m));
        cellm_model_free(m);
        return 2;
    }
    /* bytes read per decoded token: all weights but the embedding (one row of it) */
    double step_bytes = (double)d->n_bytes;
    if (!d->cfg.tie_embeddings) step_bytes -= (double)cellm_weight_bytes(&d->embed);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(m, &cp, &ctx, &err)) {
        fprintf(stderr, "cellm bench: %s\n", err.msg);
        cellm_model_free(m);
        return 1;
    }
    int32_t *prompt = malloc((size_t)n_prompt * sizeof *prompt);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_prompt; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        prompt[i] = (int32_t)(s % (uint64_t)vocab);
    }
    double best_pp = 0, best_tg = 0;
    int rc = 0;
    for (int r = 0; r < reps && !rc; r++) {
        int seq = cellm_ctx_seq_new(ctx);
        const float *logits;
        double a = cli_now();
        if (cellm_ctx_eval_seq(ctx, seq, prompt, n_prompt, &logits, &err)) {
            fprintf(stderr, "cellm bench: %s\n", err.msg);
            rc = 1;
            break;
        }
        double b = cli_now();
        /* decode as a greedy client does: the pick made where the logits are */
        int32_t t = cellm_argmax(logits, vocab);
        for (int i = 0; i < n_gen; i++) {
            struct cellm_batch_item it = {t, seq, 1};
            if (cellm_ctx_eval_argmax(ctx, &it, 1, &t, &err)) {
                fprintf(stderr, "cellm bench: %s\n", err.msg);
                rc = 1;
                break;
            }
        }
        double c = cli_now();
        double pp = n_prompt / (b - a), tg = n_gen / (c - b);
        best_pp = pp > best_pp ? pp : best_pp;
        best_tg = tg > best_tg ? tg : best_tg;
        cellm_ctx_seq_free(ctx, seq);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (!rc) {
        printf("model: %s (%s), %.1f M parameters, %.1f MiB of weights\n", o.model_dir,
               d->cfg.model_type, d->n_params / 1e6, d->n_bytes / 1048576.0);
        printf("device: %s\n", cellm_model_device(m));
        printf("precision: %s\n", cellm_precision_name(cellm_model_precision(m)));
        printf("load: %.3f s\n", t_load);
        printf("prefill: %d tokens, %.1f tok/s\n", n_prompt, best_pp);
        printf("decode: %d tokens, %.2f tok/s, %.2f GB/s of weights\n", n_gen, best_tg,
               best_tg * step_bytes / 1e9);
        printf("peak rss: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    }
    free(prompt);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
