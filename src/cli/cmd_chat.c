/*
 * cmd_chat.c: `cellm chat` (and `cellm generate -i`): an interactive conversation.
 *
 * Reads a turn (a line; a trailing backslash or a """ block continues it), answers it
 * through chat_session (the engine's generation loop; the history stays in the prefix
 * cache, so only the new tokens are prefilled), streams the reply and prints a stats line. Slash
 * commands change the session. SIGINT sets a flag: during a reply it ends the reply and keeps the
 * session; at the prompt (where it is taken only inside ppoll), twice in a row quits. EOF (Ctrl-D)
 * quits with status 0. Colour only on a terminal (--color, NO_COLOR).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat_session.h"
#include "cli.h"
#include "common.h"

struct chat_opts {
    struct cli_opts c;
    struct cli_sampling s;
    const char *system, *first, *color;
    int n_predict, ctx_size, think, verbose, ignore_eos;
    int cache_ram, cache_gpu, cache_block; /* MB, MB, positions; -1 = not given */
};

static const char *const chat_flags[] = {"--system",
                                         "-sys",
                                         "--system-prompt",
                                         "--chat-template",
                                         "-n",
                                         "--n-predict",
                                         "--max-tokens",
                                         "-c",
                                         "--ctx-size",
                                         "--color",
                                         "--no-think",
                                         "-p",
                                         "--prompt",
                                         "-v",
                                         "--verbose",
                                         "-h",
                                         "--help",
                                         "-i",
                                         "--interactive",
                                         "--chat",
                                         "--ignore-eos",
                                         "--cache-ram",
                                         "--cache-gpu",
                                         "--cache-block",
                                         NULL};

static void usage(void)
{
    printf("usage: cellm chat -m MODEL [options]\n"
           "  -sys, --system, --system-prompt TEXT   system prompt\n"
           "  --chat-template FILE use this Jinja chat template instead of the checkpoint's\n"
           "  -p, --prompt TEXT    the first message\n"
           "  -n, --n-predict, --max-tokens N   tokens per reply at most (default 512)\n"
           "  -c, --ctx-size N     context for the whole conversation (default: the model's)\n"
           "  --no-think           pass enable_thinking=false to the template (Qwen3)\n"
           "  --ignore-eos         reply until -n or the context ends, past end-of-sequence\n"
           "  --color auto|on|off  colour (default auto: on a terminal, unless NO_COLOR is set)\n"
           "  --cache-ram MB       prefix cache that keeps the history between turns, CPU\n"
           "                       device (default 1024; 0 = off: every turn prefills it all)\n"
           "  --cache-gpu MB       the same in device memory, CUDA (default 1024)\n"
           "  --cache-block N      positions per cache block (default 1 on the CPU: a turn\n"
           "                       reuses the whole common prefix; 16 on CUDA)\n"
           "  -v, --verbose        print the seed and the cache's use\n" CLI_SAMPLING_HELP
               CLI_COMMON_HELP "  -h, --help           this text\n"
           "In the conversation: a line is a turn; end a line with \\ to go on, or put the\n"
           "text between lines of \"\"\". Commands: /clear, /save FILE, /load FILE,\n"
           "/system TEXT, /set temp|top-k|top-p|min-p|repeat-penalty|seed|max-tokens VALUE,\n"
           "/help, /bye. Ctrl-C stops a reply (twice at the prompt quits); Ctrl-D quits.\n");
}

static void unknown(const char *a)
{
    const char *all[96];
    size_t k = 0;
    const char *const *lists[] = {chat_flags, cli_common_flags, cli_sampling_flags};
    for (size_t l = 0; l < 3; l++)
        for (size_t i = 0; lists[l][i] && k + 1 < sizeof all / sizeof all[0]; i++)
            all[k++] = lists[l][i];
    all[k] = NULL;
    cli_unknown("chat", a, all);
}

/* Accepts generate's spellings too, for `generate -i`; 1 ok, 0 bad, -1 help printed. */
static int parse(struct chat_opts *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o->c, argc, argv, &i);
        if (!r) r = cli_sampling_opt(&o->s, argc, argv, &i);
        if (r < 0) return 0;
        if (r) continue;
        const char *a = argv[i], *v = NULL;
#define VAL() (v = cli_value(argc, argv, &i))
        if (!strcmp(a, "--system") || !strcmp(a, "-sys") || !strcmp(a, "--system-prompt")) {
            if (!VAL()) return 0;
            o->system = v;
        } else if (!strcmp(a, "--chat-template")) {
            if (!VAL()) return 0;
            o->c.chat_template = v;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!VAL()) return 0;
            o->first = v;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict") || !strcmp(a, "--max-tokens")) {
            if (!VAL() || !cli_int(argv[0], a, v, 1, 1 << 30, &o->n_predict)) return 0;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!VAL() || !cli_int(argv[0], a, v, 0, 1 << 30, &o->ctx_size)) return 0;
        } else if (!strcmp(a, "--color") || !strcmp(a, "--colour")) {
            if (!VAL()) return 0;
            if (strcmp(v, "auto") && strcmp(v, "on") && strcmp(v, "off")) {
                fprintf(stderr, "cellm %s: --color expects auto, on or off, got '%s'\n", argv[0],
                        v);
                return 0;
            }
            o->color = v;
        } else if (!strcmp(a, "--cache-ram")) {
            if (!VAL() || !cli_int(argv[0], a, v, 0, 1 << 22, &o->cache_ram)) return 0;
        } else if (!strcmp(a, "--cache-gpu")) {
            if (!VAL() || !cli_int(argv[0], a, v, 0, 1 << 22, &o->cache_gpu)) return 0;
        } else if (!strcmp(a, "--cache-block")) {
            if (!VAL() || !cli_int(argv[0], a, v, 1, 4096, &o->cache_block)) return 0;
        } else if (!strcmp(a, "--no-think")) {
            o->think = 0;
        } else if (!strcmp(a, "--ignore-eos")) {
            o->ignore_eos = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "-i") || !strcmp(a, "--interactive") || !strcmp(a, "--chat")) {
            /* generate -i: already interactive; the template is always on here */
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
            return -1;
        } else {
            unknown(a);
            return 0;
        }
#undef VAL
    }
    return 1;
}

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

/* Colour escapes, or "" when colour is off. */
struct palette {
    const char *prompt, *dim, *err, *off;
};

/* Input read with read(2), not stdio: SIGINT stays blocked except inside ppoll (and
 * during a reply), so a Ctrl-C that lands between printing the prompt and waiting for
 * input still ends the wait instead of being noticed only after the next line. */
static sigset_t unblocked; /* the mask with SIGINT allowed, for ppoll */
static char *pending;
static size_t n_pending, cap_pending;

/* One line from stdin into *buf (without the newline). 1: a line; 0: EOF; -1: Ctrl-C. */
static int read_line(char **buf, size_t *cap)
{
    for (;;) {
        char *nl = n_pending ? memchr(pending, '\n', n_pending) : NULL;
        if (nl) break;
        if (interrupted) return -1;
        struct pollfd pfd = {0, POLLIN, 0};
        if (ppoll(&pfd, 1, NULL, &unblocked) < 0) {
            if (errno == EINTR) continue;
            return 0;
        }
        if (n_pending + 4096 > cap_pending) {
            size_t nc = (n_pending + 4096) * 2;
            char *p = realloc(pending, nc);
            if (!p) return 0;
            pending = p;
            cap_pending = nc;
        }
        ssize_t r = read(0, pending + n_pending, 4096);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (!n_pending) return 0;
            break; /* a last line without a newline */
        }
        n_pending += (size_t)r;
    }
    char *nl = memchr(pending, '\n', n_pending);
    size_t len = nl ? (size_t)(nl - pending) : n_pending;
    if (len + 1 > *cap) {
        char *b = realloc(*buf, len + 1);
        if (!b) return 0;
        *buf = b;
        *cap = len + 1;
    }
    memcpy(*buf, pending, len);
    (*buf)[len] = 0;
    if (len && (*buf)[len - 1] == '\r') (*buf)[len - 1] = 0;
    size_t used = nl ? len + 1 : len;
    memmove(pending, pending + used, n_pending - used);
    n_pending -= used;
    return 1;
}

static int append(char **text, size_t *len, const char *s)
{
    size_t add = strlen(s);
    char *t = realloc(*text, *len + add + 2);
    if (!t) return 0;
    memcpy(t + *len, s, add + 1);
    *text = t;
    *len += add;
    return 1;
}

/* A whole turn: continued lines (\ at the end) or a """ block. Same returns as read_line;
 * *text is malloc'd. */
static int read_turn(int tty, const struct palette *p, char **text)
{
    char *line = NULL;
    size_t cap = 0, len = 0;
    int block = 0, r;
    *text = NULL;
    if (tty) printf("%s>>> %s", p->prompt, p->off), fflush(stdout);
    while ((r = read_line(&line, &cap)) == 1) {
        size_t n = strlen(line);
        if (!strcmp(line, "\"\"\"")) {
            if (block) { /* the closing line's newline is not part of the text */
                if (len && (*text)[len - 1] == '\n') (*text)[--len] = 0;
                break;
            }
            block = 1;
            if (!*text && !append(text, &len, "")) break;
        } else if (!block && n && line[n - 1] == '\\') {
            line[n - 1] = '\n';
            if (!append(text, &len, line)) break;
        } else {
            if (!append(text, &len, line)) break;
            if (!block) break;
            if (!append(text, &len, "\n")) break;
        }
        if (tty) printf("%s... %s", p->prompt, p->off), fflush(stdout);
    }
    free(line);
    if (r == 1 && !*text) r = 0;
    if (r != 1) {
        free(*text);
        *text = NULL;
    }
    return r;
}

static void print_stats(const struct palette *p, const struct chat_stats *st)
{
    double pf = st->prefill_s > 0 ? st->prompt_new / st->prefill_s : 0;
    double dc = st->generated > 1 && st->decode_s > 0 ? (st->generated - 1) / st->decode_s : 0;
    fprintf(
        stderr,
        "%s[prompt: %d new tokens, %d cached, %.1f tok/s | reply: %d tokens, %.1f tok/s%s%s]%s\n",
        p->dim, st->prompt_new, st->prompt_cached, pf, st->generated, dc,
        strcmp(st->finish, "stop") ? ", " : "",
        !strcmp(st->finish, "stop")          ? ""
        : !strcmp(st->finish, "interrupted") ? "interrupted"
        : !strcmp(st->finish, "context")     ? "context full: /clear starts over"
                                             : "-n reached",
        p->off);
}

/* /set NAME VALUE */
static void set_param(struct chat_session *s, const char *arg)
{
    char name[32], value[64];
    if (sscanf(arg, "%31s %63s", name, value) != 2) {
        fprintf(stderr,
                "usage: /set temp|top-k|top-p|min-p|repeat-penalty|seed|max-tokens VALUE\n");
        return;
    }
    struct cellm_sampler_params sp = s->sp;
    int rnd = 0;
    if (!strcmp(name, "temp") || !strcmp(name, "temperature")) {
        if (!cli_float("chat", "/set temp", value, 0, 100, &sp.temperature)) return;
    } else if (!strcmp(name, "top-k") || !strcmp(name, "top_k")) {
        if (!cli_int("chat", "/set top-k", value, 0, 1 << 30, &sp.top_k)) return;
    } else if (!strcmp(name, "top-p") || !strcmp(name, "top_p")) {
        if (!cli_float("chat", "/set top-p", value, 0, 1, &sp.top_p)) return;
    } else if (!strcmp(name, "min-p") || !strcmp(name, "min_p")) {
        if (!cli_float("chat", "/set min-p", value, 0, 1, &sp.min_p)) return;
    } else if (!strcmp(name, "repeat-penalty")) {
        if (!cli_float("chat", "/set repeat-penalty", value, 1e-6, 100, &sp.repetition_penalty))
            return;
    } else if (!strcmp(name, "seed")) {
        if (!cli_seed("chat", "/set seed", value, &sp.seed, &rnd)) return;
        if (rnd) sp.seed = cli_random_seed();
        s->turns = 0;
    } else if (!strcmp(name, "max-tokens") || !strcmp(name, "n")) {
        if (!cli_int("chat", "/set max-tokens", value, 1, 1 << 30, &s->n_predict)) return;
    } else {
        fprintf(stderr,
                "/set: unknown parameter '%s' (temp, top-k, top-p, min-p, "
                "repeat-penalty, seed, max-tokens)\n",
                name);
        return;
    }
    s->sp = sp;
    fprintf(stderr, "%s = %s\n", name, value);
}

/* A slash command; returns 0 to quit. */
static int command(struct chat_session *s, const char *line)
{
    struct cellm_error err;
    const char *arg = strchr(line, ' ');
    arg = arg ? arg + strspn(arg, " ") : "";
    if (!strcmp(line, "/bye") || !strcmp(line, "/exit") || !strcmp(line, "/quit")) return 0;
    if (!strcmp(line, "/clear")) {
        if (chat_session_clear(s, &err))
            fprintf(stderr, "(conversation cleared)\n");
        else
            fprintf(stderr, "/clear: %s\n", err.msg);
    } else if (!strncmp(line, "/save", 5) && (line[5] == ' ' || !line[5])) {
        if (!*arg)
            fprintf(stderr, "usage: /save FILE\n");
        else if (!chat_session_save(s, arg, &err))
            fprintf(stderr, "/save: %s\n", err.msg);
        else
            fprintf(stderr, "(saved %d messages to %s)\n", s->n_msgs, arg);
    } else if (!strncmp(line, "/load", 5) && (line[5] == ' ' || !line[5])) {
        if (!*arg)
            fprintf(stderr, "usage: /load FILE\n");
        else if (!chat_session_load(s, arg, &err))
            fprintf(stderr, "/load: %s\n", err.msg);
        else
            fprintf(stderr, "(loaded %d messages from %s)\n", s->n_msgs, arg);
    } else if (!strncmp(line, "/system", 7) && (line[7] == ' ' || !line[7])) {
        chat_session_set_system(s, arg);
        fprintf(stderr, *arg ? "(system prompt set)\n" : "(system prompt removed)\n");
    } else if (!strncmp(line, "/set", 4) && (line[4] == ' ' || !line[4])) {
        set_param(s, arg);
    } else if (!strcmp(line, "/help") || !strcmp(line, "/?")) {
        fprintf(stderr, "/clear  /save FILE  /load FILE  /system TEXT  /set NAME VALUE  /bye\n"
                        "Ctrl-C stops a reply; Ctrl-D quits.\n");
    } else {
        fprintf(stderr, "unknown command %s (/help lists them)\n", line);
    }
    return 1;
}

/* One user turn through the model. */
static void turn(struct chat_session *s, const struct palette *p, const char *text, int verbose)
{
    struct cellm_error err;
    struct chat_stats st;
    if (!chat_session_add(s, "user", text)) return;
    interrupted = 0;
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    /* Ctrl-C is taken during the reply: the loop checks the flag between tokens */
    sigprocmask(SIG_UNBLOCK, &block, NULL);
    enum cellm_status st_reply = chat_session_reply(s, stdout, &interrupted, &st, &err);
    sigprocmask(SIG_BLOCK, &block, NULL);
    if (st_reply) {
        fprintf(stderr, "%s%s%s\n", p->err, err.msg, p->off);
        /* the turn did not happen: forget its message */
        s->n_msgs--;
        free(s->msgs[s->n_msgs].role);
        free(s->msgs[s->n_msgs].content);
        return;
    }
    printf("\n");
    fflush(stdout);
    print_stats(p, &st);
    if (verbose) {
        struct cellm_cache_stats cs;
        cellm_ctx_cache_stats(s->ctx, &cs);
        if (cs.block)
            fprintf(stderr, "%s[prefix cache: %zu blocks of %d, %.1f of %.0f MB, %llu evicted]%s\n",
                    p->dim, cs.blocks, cs.block, cs.bytes / 1048576.0, cs.budget_bytes / 1048576.0,
                    cs.evictions, p->off);
        else
            fprintf(stderr, "%s[no prefix cache: every turn prefills the whole conversation]%s\n",
                    p->dim, p->off);
    }
    interrupted = 0;
}

static int run(struct chat_opts *o)
{
    const char *nc = getenv("NO_COLOR");
    int color = o->color && !strcmp(o->color, "on")    ? 1
                : o->color && !strcmp(o->color, "off") ? 0
                                                       : isatty(1) && !(nc && *nc);
    struct palette p = {"", "", "", ""};
    if (color) p = (struct palette){"\033[1;32m", "\033[2m", "\033[31m", "\033[0m"};
    int rc = 1;
    struct cellm_error err;
    struct cellm_tokenizer *tok = NULL;
    struct cellm_model *m = NULL;
    struct chat_session s = {0};
    struct cellm_sampler_params sp;
    /* before any thread exists (the CPU pool starts with the model): every thread inherits
     * SIGINT blocked, so it is taken by this thread only, where ppoll or a reply allows it */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: Ctrl-C must end a pending read */
    sigaction(SIGINT, &sa, NULL);
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &unblocked);
    sigdelset(&unblocked, SIGINT);
    if (!(tok = cli_load_tokenizer(&o->c, "chat"))) goto done;
    if (!cellm_tokenizer_has_chat_template(tok)) {
        fprintf(stderr,
                "cellm chat: %s has no chat template; give one with --chat-template "
                "FILE, or use cellm generate for plain text\n",
                o->c.model_dir);
        goto done;
    }
    if (!cli_sampling_params(&o->s, "chat", o->c.model_dir, o->verbose, &sp)) goto done;
    if (!(m = cli_load_model(&o->c, "chat"))) goto done;
    /* the prefix cache keeps the history; it lives where the executor keeps KV (on XLA,
     * which has no block copies, the session's one slot resumes its history). Blocks of one position on the CPU reuse the whole common prefix (a CPU
     * block copy is one memcpy per row anyway); on CUDA each block is an allocation and
     * a copy per layer, so they are larger there. */
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    int cuda = o->c.mp.device == CELLM_DEVICE_CUDA;
    int cache_mb = o->c.mp.device == CELLM_DEVICE_CPU ? o->cache_ram : o->cache_gpu;
    cp.cache_bytes = (size_t)(cache_mb < 0 ? 1024 : cache_mb) << 20;
    cp.cache_block = o->cache_block > 0 ? o->cache_block : cuda ? 16 : 1;
    if (!chat_session_init(&s, m, tok, o->ctx_size, &cp, &err)) {
        fprintf(stderr, "cellm chat: %s\n", err.msg);
        goto done;
    }
    s.sp = sp;
    s.think = o->think;
    s.ignore_eos = o->ignore_eos;
    if (o->n_predict) s.n_predict = o->n_predict;
    if (o->system) chat_session_set_system(&s, o->system);

    int tty = isatty(0);
    if (tty)
        fprintf(stderr, "%scellm chat: %s. /help for commands, Ctrl-D to quit.%s\n", p.dim,
                o->c.model_dir, p.off);
    if (o->first) turn(&s, &p, o->first, o->verbose);
    int ctrl_c = 0;
    for (;;) {
        char *text = NULL;
        interrupted = 0;
        int r = read_turn(tty, &p, &text);
        if (r == 0) { /* Ctrl-D */
            if (tty) printf("\n");
            break;
        }
        if (r < 0) { /* Ctrl-C at the prompt */
            if (ctrl_c++) {
                printf("\n");
                break;
            }
            fprintf(stderr, "\n%s(Ctrl-C again or Ctrl-D to quit)%s\n", p.dim, p.off);
            continue;
        }
        ctrl_c = 0;
        if (text[0] == '/') {
            int go_on = command(&s, text);
            free(text);
            if (!go_on) break;
            continue;
        }
        if (*text) turn(&s, &p, text, o->verbose);
        free(text);
    }
    rc = 0;
done:
    free(pending);
    pending = NULL;
    n_pending = cap_pending = 0;
    fflush(stdout);
    chat_session_free(&s);
    cellm_model_free(m);
    cellm_tokenizer_free(tok);
    return rc;
}

static int chat_main(int argc, char **argv)
{
    struct chat_opts o;
    memset(&o, 0, sizeof o);
    o.c.mp = cellm_model_params_default();
    o.think = 1;
    o.cache_ram = o.cache_gpu = o.cache_block = -1;
    cli_sampling_init(&o.s);
    int pr = parse(&o, argc, argv);
    if (pr <= 0) return pr < 0 ? 0 : 2;
    if (!cli_resolve(&o.c, argv[0])) return 2;
    return run(&o);
}

int cellm_cmd_chat(int argc, char **argv)
{
    return chat_main(argc, argv);
}

int cli_generate_interactive(int argc, char **argv)
{
    return chat_main(argc, argv);
}
