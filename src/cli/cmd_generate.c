/*
 * cmd_generate.c: `cellm generate`: text or ids in, streamed text or ids out.
 *
 * The prompt comes from -p, -f FILE, -p - or a piped stdin (one trailing newline dropped),
 * or as ids (--prompt-ids). Text goes through the checkpoint's chat template when it has
 * one (an instruct model, as mlx_lm.generate does), unless --raw; --system implies it.
 * Then it streams what the engine's generation loop (cellm_gen_*, the one the server uses
 * too) releases: it samples in the documented order of cellm_sampler (greedy at --temp 0,
 * penalties still applied), stops at an EOS id (not printed, not in --ids), a --stop
 * string (not printed), -n tokens, or a full context (the model's or -c; a note on
 * stderr). Ids mode needs no tokenizer. Speed goes to stderr at the end. Ctrl-C ends the
 * output as llama-cli does: a newline, the stats, status 130 (a second Ctrl-C exits at
 * once, for a long prefill). -i hands the arguments to `cellm chat` (cmd_chat.c).
 */
#include <signal.h>
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
    int n, print_ids, ignore_eos, chat, raw, verbose, think, interactive, min_tokens, ctx_size;
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
                                        "--min-tokens",
                                        "-c",
                                        "--ctx-size",
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
           "  --min-tokens N       no end-of-sequence before N tokens\n"
           "  -c, --ctx-size N     prompt + generated tokens at most (default: the model's);\n"
           "                       a full context ends the output with a note\n"
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
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!VAL() || !cli_int("generate", a, v, 0, 1 << 30, &g->ctx_size)) return 0;
        } else if (!strcmp(a, "--min-tokens")) {
            if (!VAL() || !cli_int("generate", a, v, 0, 1 << 30, &g->min_tokens)) return 0;
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

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    if (interrupted) _exit(130); /* the second Ctrl-C: the step in progress may be long */
    interrupted = 1;
}

/* From here on Ctrl-C ends the output instead of the process. SIGINT stays blocked in
 * every thread started after this (the CPU pool starts with the model) and is unblocked in
 * this one by catch_sigint_here, so the flag is set where the loop reads it. */
static void catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void catch_sigint_here(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
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
    struct cellm_gen *gen = NULL;
    int32_t *prompt = NULL, *out_ids = NULL;
    int n_prompt = 0;
    char *chat_text = NULL, *prompt_owned = NULL;
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
    if (text || text_out || g.n_stops) {
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
    catch_sigint();
    if (!(m = cli_load_model(&g.c, "generate"))) goto done;
    int model_max = cellm_model_max_context(m);
    int limit = g.ctx_size > 0 && g.ctx_size < model_max ? g.ctx_size : model_max;
    if (n_prompt >= limit) {
        fprintf(stderr,
                "cellm generate: the prompt has %d tokens and the context holds %d (%s): "
                "nothing is left to generate\n",
                n_prompt, limit, limit < model_max ? "-c" : "the model's maximum");
        goto done;
    }
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    struct cellm_gen_params gp = cellm_gen_params_default();
    gp.max_tokens = g.n;
    gp.min_tokens = g.min_tokens;
    gp.stop = g.stops;
    gp.n_stop = g.n_stops;
    gp.ignore_eos = g.ignore_eos;
    gp.ctx_limit = limit;
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
    catch_sigint_here();
    while (g.n > 0 && !interrupted) {
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
        fprintf(stderr,
                "cellm generate: the context is full (%d prompt + %d generated tokens; "
                "%s %d)\n",
                n_prompt, o.n_gen, limit < model_max ? "-c" : "the model's maximum", limit);
    int decoded = o.n_gen > 1 ? o.n_gen - 1 : 0;
    fprintf(stderr, "prompt: %d tokens, %.1f tok/s; generated: %d tokens, %.1f tok/s\n", n_prompt,
            steps ? n_prompt / (t1 - t0 > 0 ? t1 - t0 : 1e-9) : 0.0, o.n_gen,
            decoded ? decoded / (t2 - t1 > 0 ? t2 - t1 : 1e-9) : 0.0);
    if (g.verbose) {
        fprintf(stderr, "prompt ids: ");
        for (int i = 0; i < n_prompt; i++)
            fprintf(stderr, "%s%d", i ? "," : "", prompt[i]);
        fprintf(stderr, "\n");
    }
    if (!o.done && interrupted) {
        fprintf(stderr, "cellm generate: interrupted\n");
        rc = 130;
    } else {
        rc = 0;
    }
done:
    free(out_ids);
    free(g.stops);
    free(prompt);
    free(chat_text);
    free(prompt_owned);
    cellm_gen_free(gen);
    cellm_tokenizer_free(tok);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return rc;
}
