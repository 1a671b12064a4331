/*
 * cmd_generate.c: `cellm generate`: text or ids in, streamed text or ids out.
 *
 * Text mode tokenizes the prompt (optionally wrapped in the chat template) and streams
 * what the engine's generation loop (cellm_gen_*, the one the server uses too) releases:
 * it samples in the documented order of cellm_sampler (greedy at --temp 0, penalties
 * still applied), stops at an EOS id (not printed, not in --ids), a --stop string (not
 * printed), -n tokens, or a full context (a note on stderr). Ids mode (--prompt-ids,
 * --ids) needs no tokenizer. Speed goes to stderr at the end.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

struct gen_opts {
    struct cli_opts c;
    const char *prompt, *prompt_ids, *system;
    const char **stops;
    int n_stops;
    int n, print_ids, ignore_eos, chat, verbose, think, min_tokens;
    struct cellm_sampler_params sp;
    int sp_set_temp, sp_set_topk, sp_set_topp, sp_set_minp, sp_set_rep;
};

static void usage(void)
{
    printf("usage: cellm generate -m DIR (-p TEXT | --prompt-ids 1,2,3) [options]\n"
           "  -n N                 tokens to generate (default 128)\n"
           "  --ids                print generated ids instead of text\n"
           "  --chat               wrap the prompt in the checkpoint's chat template\n"
           "  --system TEXT        system message (with --chat)\n"
           "  --no-think           pass enable_thinking=false to the template (Qwen3)\n"
           "  --stop TEXT          stop at this text (repeatable; not printed)\n"
           "  --ignore-eos         do not stop at end-of-sequence ids\n"
           "  --min-tokens N       no end-of-sequence before N tokens\n"
           "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R\n"
           "  --frequency-penalty F --presence-penalty P --seed S\n"
           "                       sampling (defaults from generation_config.json; --temp 0 = "
           "greedy)\n"
           "  --device cpu|cuda|xla --threads N --verbose\n");
}

static int parse_float(const char *s, float *out)
{
    char *end;
    *out = strtof(s, &end);
    return *s && !*end;
}

static int parse(struct gen_opts *g, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&g->c, argc, argv, &i);
        if (r < 0) return 0;
        if (r) continue;
        const char *a = argv[i], *v = NULL;
#define VAL() (v = cli_value(argc, argv, &i))
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!VAL()) return 0;
            g->prompt = v;
        } else if (!strcmp(a, "--prompt-ids")) {
            if (!VAL()) return 0;
            g->prompt_ids = v;
        } else if (!strcmp(a, "--system")) {
            if (!VAL()) return 0;
            g->system = v;
        } else if (!strcmp(a, "-n")) {
            if (!VAL()) return 0;
            g->n = atoi(v);
            if (g->n < 0) {
                fprintf(stderr, "cellm generate: -n must be >= 0\n");
                return 0;
            }
        } else if (!strcmp(a, "--min-tokens")) {
            if (!VAL()) return 0;
            g->min_tokens = atoi(v);
            if (g->min_tokens < 0) {
                fprintf(stderr, "cellm generate: --min-tokens must be >= 0\n");
                return 0;
            }
        } else if (!strcmp(a, "--ids")) {
            g->print_ids = 1;
        } else if (!strcmp(a, "--ignore-eos")) {
            g->ignore_eos = 1;
        } else if (!strcmp(a, "--chat")) {
            g->chat = 1;
        } else if (!strcmp(a, "--no-think")) {
            g->think = 0;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            g->verbose = 1;
        } else if (!strcmp(a, "--stop")) {
            if (!VAL()) return 0;
            const char **s = realloc(g->stops, (size_t)(g->n_stops + 1) * sizeof *s);
            if (!s) return 0;
            g->stops = s;
            g->stops[g->n_stops++] = v;
        } else if (!strcmp(a, "--seed")) {
            if (!VAL()) return 0;
            g->sp.seed = strtoull(v, NULL, 10);
        } else if (!strcmp(a, "--top-k")) {
            if (!VAL()) return 0;
            g->sp.top_k = atoi(v);
            g->sp_set_topk = 1;
        } else {
            float *dst = NULL;
            int *flag = NULL;
            if (!strcmp(a, "--temp") || !strcmp(a, "--temperature"))
                dst = &g->sp.temperature, flag = &g->sp_set_temp;
            else if (!strcmp(a, "--top-p"))
                dst = &g->sp.top_p, flag = &g->sp_set_topp;
            else if (!strcmp(a, "--min-p"))
                dst = &g->sp.min_p, flag = &g->sp_set_minp;
            else if (!strcmp(a, "--repeat-penalty"))
                dst = &g->sp.repetition_penalty, flag = &g->sp_set_rep;
            else if (!strcmp(a, "--frequency-penalty"))
                dst = &g->sp.frequency_penalty;
            else if (!strcmp(a, "--presence-penalty"))
                dst = &g->sp.presence_penalty;
            else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                usage();
                exit(0);
            } else {
                fprintf(stderr, "cellm generate: unknown option %s\n", a);
                return 0;
            }
            if (!VAL() || !parse_float(v, dst)) {
                fprintf(stderr, "cellm generate: %s expects a number\n", a);
                return 0;
            }
            if (flag) *flag = 1;
        }
#undef VAL
    }
    return 1;
}

int cellm_cmd_generate(int argc, char **argv)
{
    struct gen_opts g;
    memset(&g, 0, sizeof g);
    g.c.mp = cellm_model_params_default();
    g.n = 128;
    g.think = 1;
    g.sp = cellm_sampler_params_default();
    if (!parse(&g, argc, argv)) {
        free(g.stops);
        return 2;
    }
    int rc = 1;
    struct cellm_error err;
    struct cellm_model *m = NULL;
    struct cellm_ctx *ctx = NULL;
    struct cellm_tokenizer *tok = NULL;
    struct cellm_gen *gen = NULL;
    int32_t *prompt = NULL, *out_ids = NULL;
    int n_prompt = 0;
    char *chat_text = NULL;
    if (!g.c.model_dir || (!g.prompt == !g.prompt_ids)) {
        fprintf(stderr, "cellm generate: need -m DIR and exactly one of -p TEXT or --prompt-ids\n");
        free(g.stops);
        return 2;
    }
    int text_out = !g.print_ids;
    if (g.prompt || text_out || g.n_stops) {
        if (cellm_tokenizer_load(g.c.model_dir, &tok, &err)) {
            fprintf(stderr, "cellm generate: %s\n", err.msg);
            goto done;
        }
    }
    /* sampling defaults from generation_config.json, then the command line */
    struct cellm_sampler_params sp = cellm_sampler_params_default();
    if (cellm_sampler_params_from_dir(g.c.model_dir, &sp, &err)) {
        fprintf(stderr, "cellm generate: %s\n", err.msg);
        goto done;
    }
    if (g.sp_set_temp) sp.temperature = g.sp.temperature;
    if (g.sp_set_topk) sp.top_k = g.sp.top_k;
    if (g.sp_set_topp) sp.top_p = g.sp.top_p;
    if (g.sp_set_minp) sp.min_p = g.sp.min_p;
    if (g.sp_set_rep) sp.repetition_penalty = g.sp.repetition_penalty;
    sp.frequency_penalty = g.sp.frequency_penalty;
    sp.presence_penalty = g.sp.presence_penalty;
    sp.seed = g.sp.seed;
    if (g.prompt_ids) {
        if (!cli_parse_ids(g.prompt_ids, &prompt, &n_prompt)) goto done;
    } else {
        const char *text = g.prompt;
        if (g.chat) {
            struct cellm_chat_message msgs[2];
            size_t nm = 0;
            if (g.system) msgs[nm++] = (struct cellm_chat_message){"system", g.system};
            msgs[nm++] = (struct cellm_chat_message){"user", g.prompt};
            if (cellm_tokenizer_chat(tok, msgs, nm, 1,
                                     g.think ? NULL : "{\"enable_thinking\": false}", &chat_text,
                                     &err)) {
                fprintf(stderr, "cellm generate: %s\n", err.msg);
                goto done;
            }
            text = chat_text;
        }
        size_t n = 0;
        /* a rendered template carries its own special tokens */
        if (cellm_tokenizer_encode(tok, text, strlen(text), !g.chat, &prompt, &n, &err)) {
            fprintf(stderr, "cellm generate: %s\n", err.msg);
            goto done;
        }
        n_prompt = (int)n;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "cellm generate: the prompt is empty\n");
        goto done;
    }
    if (!(m = cli_load_model(&g.c, "generate"))) goto done;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    struct cellm_gen_params gp = cellm_gen_params_default();
    gp.max_tokens = g.n;
    gp.min_tokens = g.min_tokens;
    gp.stop = g.stops;
    gp.n_stop = g.n_stops;
    gp.ignore_eos = g.ignore_eos;
    gp.sampling = sp;
    if (cellm_ctx_new(m, &cp, &ctx, &err) ||
        cellm_gen_new(ctx, text_out || g.n_stops ? tok : NULL, prompt, n_prompt, &gp, &gen, &err)) {
        fprintf(stderr, "cellm generate: %s\n", err.msg);
        goto done;
    }
    out_ids = malloc(((size_t)g.n + 1) * sizeof *out_ids);
    if (!out_ids) goto done;
    double t0 = cli_now(), t1 = t0, t2 = t0;
    int n_out = 0, steps = 0;
    struct cellm_gen_out o = {0};
    while (g.n > 0) {
        /* the whole prompt in the first step, then one token per step */
        if (cellm_gen_step(ctx, &gen, 1, 0, NULL, &err)) {
            fprintf(stderr, "\ncellm generate: %s\n", err.msg);
            goto done;
        }
        cellm_gen_output(gen, &o);
        if (text_out) {
            fwrite(o.text, 1, o.text_len, stdout);
            fflush(stdout);
        }
        for (int i = 0; i < o.n_ids && n_out < g.n; i++)
            out_ids[n_out++] = o.ids[i];
        if (steps++ == 0) t1 = cli_now();
        t2 = cli_now();
        if (o.done) break;
    }
    if (o.error) {
        fprintf(stderr, "\ncellm generate: %s\n", o.error);
        goto done;
    }
    if (text_out) {
        printf("\n");
    } else {
        for (int i = 0; i < n_out; i++)
            printf("%s%d", i ? "," : "", out_ids[i]);
        printf("\n");
    }
    fflush(stdout);
    if (o.finish && !strcmp(o.finish, "length") && o.n_gen < g.n)
        fprintf(stderr, "cellm generate: the context is full (%d prompt + %d generated tokens)\n",
                n_prompt, o.n_gen);
    int decoded = o.n_gen > 1 ? o.n_gen - 1 : 0;
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s\n", n_prompt,
            n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), o.n_gen,
            decoded ? decoded / (t2 - t1 > 0 ? t2 - t1 : 1e-9) : 0.0);
    if (g.verbose) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n_prompt; i++)
            fprintf(stderr, " %d", prompt[i]);
        fprintf(stderr, "\n");
    }
    rc = 0;
done:
    free(out_ids);
    free(g.stops);
    free(prompt);
    free(chat_text);
    cellm_gen_free(gen);
    cellm_tokenizer_free(tok);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
