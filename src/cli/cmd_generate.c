/*
 * cmd_generate.c: `cellm generate`: text or ids in, streamed text or ids out.
 *
 * The prompt comes from -p, -f FILE, -p - or a piped stdin (one trailing newline dropped),
 * or as ids (--prompt-ids). Text goes through the checkpoint's chat template when it has
 * one (an instruct model, as mlx_lm.generate does), unless --raw; --system implies it.
 * Text mode samples with the documented order of cellm_sampler (greedy at --temp 0),
 * streams complete UTF-8 text as it is produced, and stops at an EOS id, a --stop string
 * (not printed), or -n tokens. Ids mode needs no tokenizer. Speed goes to stderr at the
 * end. -i hands the arguments to `cellm chat` (cmd_chat.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"

struct gen_opts {
    struct cli_opts c;
    struct cli_sampling s;
    const char *prompt, *prompt_file, *prompt_ids, *system;
    const char **stops;
    int n_stops;
    int n, print_ids, ignore_eos, chat, raw, verbose, think, interactive;
};

static const char *const gen_flags[] = {"-p",
                                        "--prompt",
                                        "-f",
                                        "--file",
                                        "--prompt-ids",
                                        "-n",
                                        "--n-predict",
                                        "--max-tokens",
                                        "--ids",
                                        "--chat",
                                        "--raw",
                                        "--system",
                                        "-sys",
                                        "--system-prompt",
                                        "--chat-template",
                                        "--no-think",
                                        "--stop",
                                        "--ignore-eos",
                                        "--verbose",
                                        "-v",
                                        "-i",
                                        "--interactive",
                                        "--help",
                                        "-h",
                                        NULL};

static void usage(void)
{
    printf("usage: cellm generate -m MODEL [-p TEXT | -f FILE | --prompt-ids 1,2,3] [options]\n"
           "  -p, --prompt TEXT    the prompt; '-' reads it from stdin (so does a piped stdin\n"
           "                       without -p); one trailing newline is dropped\n"
           "  -f, --file FILE      read the prompt from FILE\n"
           "  --prompt-ids IDS     the prompt as token ids (commas or spaces)\n"
           "  -n, --n-predict, --max-tokens N   tokens to generate (default 128)\n"
           "  --ids                print generated ids (comma-separated) instead of text\n"
           "  --chat               wrap the prompt in the chat template (the default when the\n"
           "                       checkpoint has one)\n"
           "  --raw                send the prompt as is, without the chat template\n"
           "  -sys, --system, --system-prompt TEXT   system message (implies --chat)\n"
           "  --chat-template FILE use this Jinja chat template instead of the checkpoint's\n"
           "  --no-think           pass enable_thinking=false to the template (Qwen3)\n"
           "  --stop TEXT          stop at this text (repeatable; not printed)\n"
           "  --ignore-eos         do not stop at end-of-sequence ids\n"
           "  -i, --interactive    a conversation instead (cellm chat)\n"
           "  -v, --verbose        print the seed, the template choice and the prompt "
           "ids\n" CLI_SAMPLING_HELP CLI_COMMON_HELP "  -h, --help           this text\n");
}

/* gen_flags, cli_common_flags and cli_sampling_flags in one list, for cli_unknown */
static void unknown(const char *a)
{
    const char *all[96];
    size_t k = 0;
    for (const char *const *l[] = {gen_flags, cli_common_flags, cli_sampling_flags, NULL},
                           *const **p = l;
         *p; p++)
        for (size_t i = 0; (*p)[i] && k + 1 < sizeof all / sizeof all[0]; i++)
            all[k++] = (*p)[i];
    all[k] = NULL;
    cli_unknown("generate", a, all);
}

/* 1: parsed, 0: bad (message printed), -1: --help printed */
static int parse(struct gen_opts *g, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&g->c, argc, argv, &i);
        if (!r) r = cli_sampling_opt(&g->s, argc, argv, &i);
        if (r < 0) return 0;
        if (r) continue;
        const char *a = argv[i], *v = NULL;
#define VAL() (v = cli_value(argc, argv, &i))
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!VAL()) return 0;
            g->prompt = v;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!VAL()) return 0;
            g->prompt_file = v;
        } else if (!strcmp(a, "--prompt-ids")) {
            if (!VAL()) return 0;
            g->prompt_ids = v;
        } else if (!strcmp(a, "--system") || !strcmp(a, "-sys") || !strcmp(a, "--system-prompt")) {
            if (!VAL()) return 0;
            g->system = v;
        } else if (!strcmp(a, "--chat-template")) {
            if (!VAL()) return 0;
            g->c.chat_template = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict") || !strcmp(a, "--max-tokens")) {
            if (!VAL() || !cli_int("generate", a, v, 0, 1 << 30, &g->n)) return 0;
        } else if (!strcmp(a, "--ids")) {
            g->print_ids = 1;
        } else if (!strcmp(a, "--ignore-eos")) {
            g->ignore_eos = 1;
        } else if (!strcmp(a, "--chat")) {
            g->chat = 1;
        } else if (!strcmp(a, "--raw")) {
            g->raw = 1;
        } else if (!strcmp(a, "--no-think")) {
            g->think = 0;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--interactive")) {
            g->interactive = 1;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            g->verbose = 1;
        } else if (!strcmp(a, "--stop")) {
            if (!VAL()) return 0;
            const char **s = realloc(g->stops, (size_t)(g->n_stops + 1) * sizeof *s);
            if (!s) return 0;
            g->stops = s;
            g->stops[g->n_stops++] = v;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return -1;
        } else {
            unknown(a);
            return 0;
        }
#undef VAL
    }
    if (g->raw && (g->chat || g->system)) {
        fprintf(stderr,
                "cellm generate: --raw sends the prompt without the chat template; "
                "it cannot go with %s\n",
                g->system ? "--system" : "--chat");
        return 0;
    }
    int sources = !!g->prompt + !!g->prompt_file + !!g->prompt_ids;
    if (sources > 1) {
        fprintf(stderr, "cellm generate: give one of -p, -f and --prompt-ids\n");
        return 0;
    }
    return 1;
}

/* The prompt text from -p, -p - / a piped stdin, or -f (*owned is what to free). */
static const char *prompt_text(const struct gen_opts *g, char **owned)
{
    *owned = NULL;
    const char *path = g->prompt_file;
    if (g->prompt && strcmp(g->prompt, "-")) return g->prompt;
    if (g->prompt || (!path && !isatty(0))) path = "-";
    if (!path) {
        fprintf(stderr, "cellm generate: no prompt: give -p TEXT, -f FILE, --prompt-ids or pipe "
                        "it to stdin (cellm chat for a conversation)\n");
        return NULL;
    }
    if (!(*owned = cli_read_file("generate", path))) return NULL;
    /* `echo text |` and files end with a newline the user did not mean as prompt */
    size_t n = strlen(*owned);
    if (n && (*owned)[n - 1] == '\n') (*owned)[--n] = 0;
    if (n && (*owned)[n - 1] == '\r') (*owned)[--n] = 0;
    if (!n) {
        fprintf(stderr, "cellm generate: the prompt is empty (%s)\n",
                strcmp(path, "-") ? path : "stdin");
        free(*owned);
        *owned = NULL;
    }
    return *owned;
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
    cli_sampling_init(&g.s);
    int pr = parse(&g, argc, argv);
    if (pr <= 0) {
        free(g.stops);
        return pr < 0 ? 0 : 2;
    }
    if (g.interactive) {
        free(g.stops);
        return cli_generate_interactive(argc, argv);
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
    char *chat_text = NULL, *prompt_owned = NULL;
    struct stopbuf sb = {0};
    if (!cli_resolve(&g.c, "generate")) {
        free(g.stops);
        return 2;
    }
    const char *text = NULL;
    if (!g.prompt_ids && !(text = prompt_text(&g, &prompt_owned))) {
        rc = 2;
        goto done;
    }
    int text_out = !g.print_ids;
    if (text || text_out) {
        if (!(tok = cli_load_tokenizer(&g.c, "generate"))) goto done;
    }
    struct cellm_sampler_params sp;
    if (!cli_sampling_params(&g.s, "generate", g.c.model_dir, g.verbose, &sp)) goto done;
    if (g.prompt_ids) {
        if (!cli_parse_ids(g.prompt_ids, &prompt, &n_prompt)) goto done;
    } else {
        /* instruct models get their template unless --raw, as mlx_lm.generate does */
        int chat = !g.raw && (g.chat || g.system || cellm_tokenizer_has_chat_template(tok));
        if (g.verbose)
            fprintf(stderr, "prompt: %s\n",
                    chat ? "through the chat template (--raw sends it as is)"
                         : "as is (no chat template)");
        if (chat) {
            struct cellm_chat_message msgs[2];
            size_t nm = 0;
            if (g.system) msgs[nm++] = (struct cellm_chat_message){"system", g.system};
            msgs[nm++] = (struct cellm_chat_message){"user", text};
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
        if (cellm_tokenizer_encode(tok, text, strlen(text), !chat, &prompt, &n, &err)) {
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
        fprintf(stderr, "prompt ids: ");
        for (int i = 0; i < n_prompt; i++)
            fprintf(stderr, "%s%d", i ? "," : "", prompt[i]);
        fprintf(stderr, "\n");
    }
    rc = 0;
done:
    free(sb.buf);
    free(out_ids);
    free(g.stops);
    free(prompt);
    free(chat_text);
    free(prompt_owned);
    cellm_detok_free(dt);
    cellm_sampler_free(smp);
    cellm_tokenizer_free(tok);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
