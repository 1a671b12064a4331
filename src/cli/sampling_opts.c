/*
 * sampling_opts.c: the sampling flags of generate and chat, strictly parsed, layered over
 * generation_config.json; the seed is random unless given.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

const char *const cli_sampling_flags[] = {"--temp",
                                          "--temperature",
                                          "--top-k",
                                          "--top-p",
                                          "--min-p",
                                          "--repeat-penalty",
                                          "--frequency-penalty",
                                          "--presence-penalty",
                                          "--seed",
                                          "-s",
                                          NULL};

void cli_sampling_init(struct cli_sampling *s)
{
    memset(s, 0, sizeof *s);
    s->sp = cellm_sampler_params_default();
}

int cli_sampling_opt(struct cli_sampling *s, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *cmd = argv[0];
    float *dst = NULL;
    int *flag = NULL;
    double lo = 0, hi = 1e9;
    if (!strcmp(a, "--seed") || !strcmp(a, "-s")) {
        const char *v = cli_value(argc, argv, i);
        if (!v || !cli_seed(cmd, a, v, &s->sp.seed, &s->random_seed)) return -1;
        s->set_seed = 1;
        return 1;
    }
    if (!strcmp(a, "--top-k")) {
        const char *v = cli_value(argc, argv, i);
        if (!v || !cli_int(cmd, a, v, 0, 1 << 30, &s->sp.top_k)) return -1;
        s->set_topk = 1;
        return 1;
    }
    if (!strcmp(a, "--temp") || !strcmp(a, "--temperature"))
        dst = &s->sp.temperature, flag = &s->set_temp, hi = 100;
    else if (!strcmp(a, "--top-p"))
        dst = &s->sp.top_p, flag = &s->set_topp, hi = 1;
    else if (!strcmp(a, "--min-p"))
        dst = &s->sp.min_p, flag = &s->set_minp, hi = 1;
    else if (!strcmp(a, "--repeat-penalty"))
        dst = &s->sp.repetition_penalty, flag = &s->set_rep, lo = 1e-6, hi = 100;
    else if (!strcmp(a, "--frequency-penalty"))
        dst = &s->sp.frequency_penalty, lo = -2, hi = 2;
    else if (!strcmp(a, "--presence-penalty"))
        dst = &s->sp.presence_penalty, lo = -2, hi = 2;
    else
        return 0;
    const char *v = cli_value(argc, argv, i);
    if (!v || !cli_float(cmd, a, v, lo, hi, dst)) return -1;
    if (flag) *flag = 1;
    return 1;
}

int cli_sampling_params(const struct cli_sampling *s, const char *cmd, const char *dir, int verbose,
                        struct cellm_sampler_params *out)
{
    struct cellm_error err;
    struct cellm_sampler_params sp = cellm_sampler_params_default();
    if (cellm_sampler_params_from_dir(dir, &sp, &err)) {
        fprintf(stderr, "cellm %s: %s\n", cmd, err.msg);
        return 0;
    }
    if (s->set_temp) sp.temperature = s->sp.temperature;
    if (s->set_topk) sp.top_k = s->sp.top_k;
    if (s->set_topp) sp.top_p = s->sp.top_p;
    if (s->set_minp) sp.min_p = s->sp.min_p;
    if (s->set_rep) sp.repetition_penalty = s->sp.repetition_penalty;
    sp.frequency_penalty = s->sp.frequency_penalty;
    sp.presence_penalty = s->sp.presence_penalty;
    /* like every peer: a fresh seed per run unless one is asked for */
    sp.seed = s->set_seed && !s->random_seed ? s->sp.seed : cli_random_seed();
    if (verbose) fprintf(stderr, "seed: %llu\n", (unsigned long long)sp.seed);
    *out = sp;
    return 1;
}
