/*
 * cmd_bench.c: `cellm bench`: load time, prefill and decode speed, peak memory.
 *
 * The prompt is -p pseudo-random ids (fixed seed); decode feeds back the argmax for -n
 * steps. With -b B > 1, B sequences are prefilled with the prompt one after the other and
 * then decoded together, one batch of B rows per step (as a server's continuous batch);
 * decode reports the aggregate tok/s of all B streams. Decode bytes/s counts every weight byte read
 * once per token (the head included, the embedding row excluded), which is what bounds decode on a
 * memory-bound device. --profile prints the executor's per-phase times (cellm_ctx_profile;
 * CUDA, with graphs off, so the step is slower than without it).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cli.h"
#include "common.h"

/* The phases' share of each kind of step (what the CUDA executor printed itself before). */
static void print_profile(const struct cellm_ctx *ctx)
{
    struct cellm_profile p;
    cellm_ctx_profile(ctx, &p);
    if (!p.n_phases) {
        printf("profile: this executor has no profiler\n");
        return;
    }
    for (int k = 0; k < 2; k++) {
        double tot = 0;
        for (int i = 0; i < p.n_phases; i++)
            tot += p.ms[k][i];
        if (!p.steps[k] || tot <= 0) continue;
        printf("profile, %s: %ld steps after the first, %.3f ms per step:",
               k ? "prefill" : "decode", p.steps[k], tot / (double)p.steps[k]);
        for (int i = 0; i < p.n_phases; i++)
            if (p.ms[k][i] > 0) printf(" %s %.1f%%", p.phase[i], 100 * p.ms[k][i] / tot);
        printf("\n");
    }
}

int cellm_cmd_bench(int argc, char **argv)
{
    static const char *const flags[] = {"-p",
                                        "-n",
                                        "-r",
                                        "-b",
                                        "--help",
                                        "-h",
                                        "-m",
                                        "--model",
                                        "--download",
                                        "--device",
                                        "--threads",
                                        "-t",
                                        "--pjrt-plugin",
                                        "--exec-opt",
                                        "--exec-options",
                                        "--kv-gb",
                                        "--profile",
                                        NULL};
    struct cli_opts o = {0};
    o.mp = cellm_model_params_default();
    int n_prompt = 128, n_gen = 64, reps = 1, nb = 1, profile = 0;
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *v;
        if (!strcmp(argv[i], "-p")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if (!cli_int("bench", "-p", v, 1, 1 << 24, &n_prompt)) return 2;
        } else if (!strcmp(argv[i], "-n")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if (!cli_int("bench", "-n", v, 1, 1 << 24, &n_gen)) return 2;
        } else if (!strcmp(argv[i], "-r")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if (!cli_int("bench", "-r", v, 1, 1 << 20, &reps)) return 2;
        } else if (!strcmp(argv[i], "-b")) {
            if (!(v = cli_value(argc, argv, &i))) return 2;
            if (!cli_int("bench", "-b", v, 1, 4096, &nb)) return 2;
        } else if (!strcmp(argv[i], "--profile")) {
            profile = 1;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cellm bench -m MODEL [options]\n"
                   "  -p N                 prompt tokens to prefill (default 128)\n"
                   "  -n N                 tokens to generate (default 64)\n"
                   "  -r N                 repeats (default 1)\n"
                   "  -b N                 decode N sequences together (default 1)\n"
                   "  --profile            per-phase times of the steps (cuda; graphs "
                   "off)\n" CLI_COMMON_HELP "  -h, --help           this text\n");
            return 0;
        } else {
            cli_unknown("bench", argv[i], flags);
            return 2;
        }
    }
    if (n_prompt < 1 || n_gen < 1 || reps < 1 || nb < 1 || nb > 4096) {
        fprintf(stderr, "cellm bench: -p, -n and -r must be positive, -b within 1..4096\n");
        return 2;
    }
    if (!cli_resolve(&o, "bench")) return 2;
    double t0 = cli_now();
    struct cellm_model *m = cli_load_model(&o, "bench");
    if (!m) return 1;
    double t_load = cli_now() - t0;
    const struct cellm_model_info *d = cellm_model_info(m);
    int vocab = cellm_model_vocab(m);
    if (n_prompt + n_gen > cellm_model_max_context(m)) {
        fprintf(stderr, "cellm bench: -p %d + -n %d exceeds the model's context of %d\n", n_prompt,
                n_gen, cellm_model_max_context(m));
        cellm_model_free(m);
        return 2;
    }
    /* bytes read per decoded token: all weights but the embedding (one row of it) */
    double step_bytes = (double)d->step_bytes;
    struct cellm_error err;
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = nb;
    cp.profile = profile;
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
    struct cellm_batch_item *items = nb > 1 ? malloc((size_t)nb * sizeof *items) : NULL;
    int32_t *picks = nb > 1 ? malloc((size_t)nb * sizeof *picks) : NULL;
    if (nb > 1 && (!items || !picks)) rc = 1;
    for (int r = 0; r < reps && !rc && nb > 1; r++) {
        for (int j = 0; j < nb; j++)
            items[j].seq = -1;
        double a = cli_now(), b = a;
        for (int j = 0; j < nb && !rc; j++) {
            const float *logits;
            items[j] = (struct cellm_batch_item){0, cellm_ctx_seq_new(ctx), 1};
            if (cellm_ctx_eval_seq(ctx, items[j].seq, prompt, n_prompt, &logits, &err)) {
                fprintf(stderr, "cellm bench: %s\n", err.msg);
                rc = 1;
            } else
                items[j].token = cellm_argmax(logits, vocab);
            if (j == 0) b = cli_now();
        }
        double c = cli_now();
        for (int i = 0; i < n_gen && !rc; i++) {
            if (cellm_ctx_eval_argmax(ctx, items, nb, picks, &err)) {
                fprintf(stderr, "cellm bench: %s\n", err.msg);
                rc = 1;
            }
            for (int j = 0; j < nb; j++)
                items[j].token = picks[j];
        }
        double e = cli_now();
        double pp = n_prompt / (b - a), tg = (double)nb * n_gen / (e - c);
        best_pp = pp > best_pp ? pp : best_pp;
        best_tg = tg > best_tg ? tg : best_tg;
        for (int j = 0; j < nb; j++)
            if (items[j].seq >= 0) cellm_ctx_seq_free(ctx, items[j].seq);
    }
    for (int r = 0; r < reps && !rc && nb == 1; r++) {
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
        printf("model: %s (%s), %.1f M parameters, %.1f MiB of weights\n", o.model_dir, d->family,
               d->n_params / 1e6, d->n_bytes / 1048576.0);
        printf("device: %s\n", d->device);
        printf("precision: %s\n", cellm_precision_name(cellm_model_precision(m)));
        printf("load: %.3f s\n", t_load);
        printf("prefill: %d tokens, %.1f tok/s\n", n_prompt, best_pp);
        if (nb > 1)
            printf("decode: %d streams x %d tokens, %.2f tok/s in all\n", nb, n_gen, best_tg);
        else
            printf("decode: %d tokens, %.2f tok/s, %.2f GB/s of weights\n", n_gen, best_tg,
                   best_tg * step_bytes / 1e9);
        printf("peak rss: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    }
    if (!rc && profile) print_profile(ctx);
    free(prompt);
    free(items);
    free(picks);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
