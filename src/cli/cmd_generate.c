/*
 * cmd_generate.c: `cellm generate`: text or ids in, streamed text or ids out.
 *
 * Text mode tokenizes the prompt (optionally wrapped in the chat template), samples with
 * the documented order of cellm_sampler (greedy at --temp 0), streams complete UTF-8 text
 * as it is produced, and stops at an EOS id, a --stop string (not printed), or -n tokens.
 * Ids mode (--prompt-ids, --ids) needs no tokenizer. Speed goes to stderr at the end.
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
    int n, print_ids, ignore_eos, chat, verbose, think;
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
           "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R\n"
           "  --frequency-penalty F --presence-penalty P --seed S\n"
           "                       sampling (defaults from generation_config.json; --temp 0 = "
           "greedy)\n"
           "  --device cpu|cuda|xla --threads N --verbose\n"
           "  --precision exact|fast   fast: bf16/int8 activations, f16 KV cache (CPU)\n");
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

/* Text held back because it might be the start of a stop string. */
struct stopbuf {
    char *buf;
    size_t len, cap;
};

static int stop_push(struct stopbuf *sb, const char *text, const char **stops, int n_stops,
                     int *stopped)
{
    size_t add = strlen(text);
    if (sb->len + add + 1 > sb->cap) {
        size_t cap = (sb->len + add + 1) * 2;
        char *b = realloc(sb->buf, cap);
        if (!b) return 0;
        sb->buf = b;
        sb->cap = cap;
    }
    memcpy(sb->buf + sb->len, text, add + 1);
    sb->len += add;
    /* a complete stop string: print what precedes it and stop */
    size_t cut = sb->len;
    for (int s = 0; s < n_stops; s++) {
        char *hit = strstr(sb->buf, stops[s]);
        if (hit && (size_t)(hit - sb->buf) < cut) {
            cut = (size_t)(hit - sb->buf);
            *stopped = 1;
        }
    }
    if (*stopped) {
        fwrite(sb->buf, 1, cut, stdout);
        sb->len = 0;
        return 1;
    }
    /* keep the longest suffix that is a prefix of some stop string */
    size_t keep = 0;
    for (int s = 0; s < n_stops; s++) {
        size_t sl = strlen(stops[s]);
        for (size_t k = sl - 1; k > keep; k--)
            if (k <= sb->len && !strncmp(sb->buf + sb->len - k, stops[s], k)) {
                keep = k;
                break;
            }
    }
    fwrite(sb->buf, 1, sb->len - keep, stdout);
    memmove(sb->buf, sb->buf + sb->len - keep, keep);
    sb->len = keep;
    fflush(stdout);
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
    struct cellm_detok *dt = NULL;
    struct cellm_sampler *smp = NULL;
    int32_t *prompt = NULL, *out_ids = NULL;
    int n_prompt = 0;
    char *chat_text = NULL;
    struct stopbuf sb = {0};
    if (!g.c.model_dir || (!g.prompt == !g.prompt_ids)) {
        fprintf(stderr, "cellm generate: need -m DIR and exactly one of -p TEXT or --prompt-ids\n");
        free(g.stops);
        return 2;
    }
    int text_out = !g.print_ids;
    if (g.prompt || text_out) {
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
    if (cellm_ctx_new(m, &cp, &ctx, &err) ||
        cellm_sampler_new(&sp, cellm_model_vocab(m), &smp, &err) ||
        (text_out && cellm_detok_new(tok, &dt, &err))) {
        fprintf(stderr, "cellm generate: %s\n", err.msg);
        goto done;
    }
    int n_eos = 0, n_teos = 0;
    const int32_t *eos = cellm_model_eos(m, &n_eos);
    const int32_t *teos = tok ? cellm_tokenizer_eos(tok, &n_teos) : NULL;
    int seq = cellm_ctx_seq_new(ctx);
    for (int i = 0; i < n_prompt; i++)
        cellm_sampler_accept(smp, prompt[i]);
    out_ids = malloc(((size_t)g.n + 1) * sizeof *out_ids);
    const float *logits;
    double t0 = cli_now();
    if (cellm_ctx_eval_seq(ctx, seq, prompt, n_prompt, &logits, &err)) {
        fprintf(stderr, "cellm generate: %s\n", err.msg);
        goto done;
    }
    double t1 = cli_now(), t2 = t1;
    int n_out = 0, stopped = 0;
    /* greedy: after the prompt, each step returns its pick only (made on the device) */
    const int greedy = sp.temperature == 0;
    int32_t pick = -1;
    while (n_out < g.n && !stopped) {
        int32_t t = !greedy     ? cellm_sampler_sample(smp, logits)
                    : pick >= 0 ? pick
                                : cellm_argmax(logits, cellm_model_vocab(m));
        cellm_sampler_accept(smp, t);
        out_ids[n_out++] = t;
        int is_eos = 0;
        for (int i = 0; i < n_eos; i++)
            is_eos |= eos[i] == t;
        for (int i = 0; i < n_teos; i++)
            is_eos |= teos[i] == t;
        if (is_eos && !g.ignore_eos) {
            break;
        }
        if (text_out) {
            const char *piece;
            if (cellm_detok_push(dt, t, &piece, &err)) {
                fprintf(stderr, "\ncellm generate: %s\n", err.msg);
                goto done;
            }
            if (!stop_push(&sb, piece, g.stops, g.n_stops, &stopped)) goto done;
        }
        if (n_out == g.n || stopped) break;
        struct cellm_batch_item it = {t, seq, 1};
        if (greedy ? cellm_ctx_eval_argmax(ctx, &it, 1, &pick, &err)
                   : cellm_ctx_eval_seq(ctx, seq, &t, 1, &logits, &err)) {
            fprintf(stderr, "\ncellm generate: %s\n", err.msg);
            goto done;
        }
        t2 = cli_now();
    }
    if (text_out) {
        if (!stopped && sb.len) fwrite(sb.buf, 1, sb.len, stdout);
        printf("\n");
    } else {
        for (int i = 0; i < n_out; i++)
            printf("%s%d", i ? "," : "", out_ids[i]);
        printf("\n");
    }
    fflush(stdout);
    int decoded = n_out > 1 ? n_out - 1 : 0;
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s\n", n_prompt,
            n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9), n_out,
            decoded ? decoded / (t2 - t1 > 0 ? t2 - t1 : 1e-9) : 0.0);
    if (g.verbose) {
        fprintf(stderr, "prompt ids:");
        for (int i = 0; i < n_prompt; i++)
            fprintf(stderr, " %d", prompt[i]);
        fprintf(stderr, "\n");
    }
    rc = 0;
done:
    free(sb.buf);
    free(out_ids);
    free(g.stops);
    free(prompt);
    free(chat_text);
    cellm_detok_free(dt);
    cellm_sampler_free(smp);
    cellm_tokenizer_free(tok);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
