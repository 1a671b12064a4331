/*
 * cmd_serve.c: `cellm serve`, the OpenAI-compatible HTTP server (src/server).
 *
 * Loads the model and, when the checkpoint has a tokenizer.json, the tokenizer; starts
 * the server; waits for SIGINT or SIGTERM with sigwait (both are blocked in every
 * thread, so no handler runs in an arbitrary thread), then stops it: requests in flight
 * get up to --shutdown-timeout seconds to finish (new ones get 503), what is left ends
 * with an error, all threads are joined and everything is freed. A second signal, taken
 * by a thread started after the first, exits at once.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "hub.h"
#include "server/server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: cellm serve -m DIR [options]\n"
            "  --host H         address to bind (default 127.0.0.1)\n"
            "  --port P         port (default 8080; 0 = any free port, printed on start)\n"
            "  -np, --parallel N  requests decoded together in one batch (default 4)\n"
            "  -b, --batch-size N  prompt tokens evaluated per step beside the decoding\n"
            "                   requests (chunked prefill; default %d)\n"
            "  --queue N        requests waiting for a slot before 503 (default 64)\n"
            "  -c, --ctx-size N   prompt + generated tokens per request (default: the model's)\n"
            "  --api-key KEY    require 'Authorization: Bearer KEY' (also $CELLM_API_KEY)\n"
            "  --name NAME      model id in /v1/models (default: ORG/NAME as given, else the\n"
            "                   directory's name)\n"
            "  --chat-template FILE  use this Jinja chat template instead of the "
            "checkpoint's\n"
            "  --cache-ram MB   prefix cache in host memory (CPU device; default 1024, 0 = off)\n"
            "  --cache-gpu MB   prefix cache in device memory (CUDA; default 1024, 0 = off; on\n"
            "                   XLA, > 0 lets a slot resume what its last request shared)\n"
            "  --cache-block N  positions per prefix-cache block (default 32)\n"
            "  --cors-origin O  allow browser requests from origin O ('*' = any)\n"
            "  --quiet          no per-request log lines\n" CLI_COMMON_HELP
            "Connections and limits:\n"
            "  --max-body BYTES      largest request body (default %d); bodies must be sent\n"
            "                        as application/json\n"
            "  --http-threads N      event-loop threads (default 4)\n"
            "  --max-connections N   open connections at most (default: a third of the fd\n"
            "                        limit less a margin: three descriptors per client)\n"
            "  --per-client N        connections per client address (default 64)\n"
            "  --request-timeout S   seconds to send a whole request (default 10)\n"
            "  --idle-timeout S      seconds an idle keep-alive connection stays open\n"
            "                        (default 5)\n"
            "  --prep-threads N      threads tokenizing requests (default 2)\n"
            "  --prep-queue N        requests waiting to be tokenized before 503 (default 32)\n"
            "  --shutdown-timeout S  seconds the first SIGINT/SIGTERM lets requests finish\n"
            "                        (default 10); a second signal exits at once\n"
            "  --allowed-hosts LIST  Host names accepted besides loopback ones when bound to\n"
            "                        loopback without a key (comma-separated, or *)\n"
            "  -h, --help            this text\n",
            CELLM_SERVER_BATCH_ROWS, CELLM_SERVER_MAX_BODY);
}

/* After the first signal: a second one ends the process at once, whatever is running. */
static void *second_signal(void *arg)
{
    int sig = 0;
    sigwait((const sigset_t *)arg, &sig);
    static const char msg[] = "cellm serve: second signal, exiting now\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    _exit(130);
}

static int int_opt(int argc, char **argv, int *i, int lo, int hi, int *out)
{
    const char *flag = argv[*i], *v = cli_value(argc, argv, i);
    return v && cli_int("serve", flag, v, lo, hi, out) ? 0 : -1;
}

int cellm_cmd_serve(int argc, char **argv)
{
#ifndef CELLM_HAVE_MHD
    (void)argc;
    (void)argv;
    (void)usage;
    (void)int_opt;
    (void)second_signal;
    fprintf(stderr, "cellm serve: this cellm was built without libmicrohttpd "
                    "(install libmicrohttpd-dev and reconfigure)\n");
    return 2;
#else
    static const char *const flags[] = {"--host",
                                        "--port",
                                        "--parallel",
                                        "-np",
                                        "--batch-size",
                                        "-b",
                                        "--queue",
                                        "--ctx-size",
                                        "-c",
                                        "--api-key",
                                        "--name",
                                        "--chat-template",
                                        "--help",
                                        "-h",
                                        "-m",
                                        "--model",
                                        "--download",
                                        "--cache-ram",
                                        "--cache-gpu",
                                        "--cache-block",
                                        "--cors-origin",
                                        "--max-body",
                                        "--quiet",
                                        "--device",
                                        "--threads",
                                        "-t",
                                        "--pjrt-plugin",
                                        "--kv-gb",
                                        "--http-threads",
                                        "--max-connections",
                                        "--per-client",
                                        "--request-timeout",
                                        "--idle-timeout",
                                        "--prep-threads",
                                        "--prep-queue",
                                        "--shutdown-timeout",
                                        "--allowed-hosts",
                                        NULL};
    struct cli_opts o = {0};
    o.mp = cellm_model_params_default();
    struct cellm_server_opts so = {0};
    so.host = "127.0.0.1";
    so.port = 8080;
    so.parallel = 4;
    so.queue = 64;
    so.api_key = getenv("CELLM_API_KEY");
    so.log_requests = 1;
    int cache_ram = 1024, cache_gpu = 1024, max_body = CELLM_SERVER_MAX_BODY;
    for (int i = 1; i < argc; i++) {
        int r = cli_common_opt(&o, argc, argv, &i);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--host")) {
            if (!(so.host = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--port")) {
            if (int_opt(argc, argv, &i, 0, 65535, &so.port)) return 2;
        } else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) {
            if (int_opt(argc, argv, &i, 1, 1024, &so.parallel)) return 2;
        } else if (!strcmp(a, "--batch-size") || !strcmp(a, "-b")) {
            if (int_opt(argc, argv, &i, 1, 1 << 20, &so.batch_rows)) return 2;
        } else if (!strcmp(a, "--queue")) {
            if (int_opt(argc, argv, &i, 0, 1000000, &so.queue)) return 2;
        } else if (!strcmp(a, "--ctx-size") || !strcmp(a, "-c")) {
            if (int_opt(argc, argv, &i, 0, 1 << 30, &so.ctx_size)) return 2;
        } else if (!strcmp(a, "--api-key")) {
            if (!(so.api_key = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--cache-ram")) {
            if (int_opt(argc, argv, &i, 0, 1 << 22, &cache_ram)) return 2;
        } else if (!strcmp(a, "--cache-gpu")) {
            if (int_opt(argc, argv, &i, 0, 1 << 22, &cache_gpu)) return 2;
        } else if (!strcmp(a, "--cache-block")) {
            if (int_opt(argc, argv, &i, 1, 4096, &so.cache_block)) return 2;
        } else if (!strcmp(a, "--max-body")) {
            if (int_opt(argc, argv, &i, 1024, 1 << 30, &max_body)) return 2;
        } else if (!strcmp(a, "--cors-origin")) {
            if (!(so.cors_origin = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--quiet")) {
            so.log_requests = 0;
        } else if (!strcmp(a, "--name")) {
            if (!(so.model_name = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--chat-template")) {
            if (!(o.chat_template = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--http-threads")) {
            if (int_opt(argc, argv, &i, 1, 256, &so.http_threads)) return 2;
        } else if (!strcmp(a, "--max-connections")) {
            if (int_opt(argc, argv, &i, 1, 1000000, &so.max_connections)) return 2;
        } else if (!strcmp(a, "--per-client")) {
            if (int_opt(argc, argv, &i, 1, 1000000, &so.per_client)) return 2;
        } else if (!strcmp(a, "--request-timeout")) {
            if (int_opt(argc, argv, &i, 1, 86400, &so.request_timeout)) return 2;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (int_opt(argc, argv, &i, 1, 86400, &so.idle_timeout)) return 2;
        } else if (!strcmp(a, "--prep-threads")) {
            if (int_opt(argc, argv, &i, 1, 256, &so.prep_threads)) return 2;
        } else if (!strcmp(a, "--prep-queue")) {
            if (int_opt(argc, argv, &i, 1, 1000000, &so.prep_queue)) return 2;
        } else if (!strcmp(a, "--shutdown-timeout")) {
            if (int_opt(argc, argv, &i, 1, 86400, &so.shutdown_timeout)) return 2;
        } else if (!strcmp(a, "--allowed-hosts")) {
            if (!(so.allowed_hosts = cli_value(argc, argv, &i))) return 2;
        } else {
            cli_unknown("serve", a, flags);
            return 2;
        }
    }
    if (so.api_key && !*so.api_key) {
        /* an empty key once meant "no authentication": a deployment that sets the variable
         * from an unset secret would run open without a word */
        fprintf(stderr, "cellm serve: the API key is empty (--api-key \"\" or an empty "
                        "CELLM_API_KEY); give a key, or unset it to serve without one\n");
        return 2;
    }
    if (!cli_resolve(&o, "serve")) return 2;
    /* every connection is a descriptor: take the hard limit */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* before any thread exists, so that every thread inherits the mask */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct cellm_model *model = cli_load_model(&o, "serve");
    if (!model) return 1;
    struct cellm_tokenizer *tok = NULL;
    struct cellm_error err;
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/tokenizer.json", o.model_dir);
    if (stat(path, &sb) == 0) {
        if (!(tok = cli_load_tokenizer(&o, "serve"))) {
            cellm_model_free(model);
            return 1;
        }
    } else {
        fprintf(stderr,
                "cellm serve: %s has no tokenizer.json: serving token ids only "
                "(prompt_ids on /v1/completions)\n",
                o.model_dir);
    }
    char name[256];
    struct hub_ref ref;
    if (!so.model_name && o.given != o.model_dir && hub_parse_ref(o.given, &ref)) {
        so.model_name = o.given; /* served under the name it was asked for */
    } else if (!so.model_name) {
        size_t n = strlen(o.model_dir);
        while (n > 1 && o.model_dir[n - 1] == '/')
            n--;
        size_t b = n;
        while (b > 0 && o.model_dir[b - 1] != '/')
            b--;
        snprintf(name, sizeof name, "%.*s", (int)(n - b), o.model_dir + b);
        so.model_name = name;
    }
    so.model_dir = o.model_dir;
    so.max_body = (size_t)max_body;
    /* the cache lives where the executor keeps KV: host memory on the CPU, device memory on
     * CUDA and XLA (XLA has no block copies: a cache there means that each slot keeps its
     * state for the next request that begins the same way) */
    int cache_mb = o.mp.device == CELLM_DEVICE_CPU ? cache_ram : cache_gpu;
    so.cache_bytes = (size_t)cache_mb << 20;

    struct cellm_server *srv;
    if (cellm_server_start(model, tok, &so, &srv, &err)) {
        fprintf(stderr, "cellm serve: %s\n", err.msg);
        cellm_tokenizer_free(tok);
        cellm_model_free(model);
        return 1;
    }
    /* the banner: what a user needs to know before the first request */
    int has_template = 0;
    if (tok) {
        struct cellm_chat_message m = {"user", "x"};
        char *t = NULL;
        has_template = cellm_tokenizer_chat(tok, &m, 1, 1, NULL, &t, &err) == CELLM_OK;
        free(t);
    }
    int ctx_size = so.ctx_size > 0 ? so.ctx_size : cellm_model_max_context(model);
    fprintf(stderr,
            "cellm serve: model %s (%s), device %s, context %d, %d slots, chat template %s, "
            "tokenizer %s, prefix cache %d MB%s, precision %s\n",
            so.model_name, o.model_dir, cellm_model_info(model)->device, ctx_size, so.parallel,
            has_template ? "found" : "not found (chat requests fail)", tok ? "found" : "none",
            cache_mb, so.cors_origin ? ", CORS on" : "",
            cellm_precision_name(cellm_model_precision(model)));
    fprintf(stderr, "cellm serve: listening on http://%s:%d (model %s, %d slots)\n", so.host,
            cellm_server_port(srv), so.model_name, so.parallel);
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr,
            "cellm serve: %s, stopping (requests in flight get up to %d s; a second signal "
            "exits at once)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", so.shutdown_timeout ? so.shutdown_timeout : 10);
    pthread_t second;
    if (pthread_create(&second, NULL, second_signal, &sigs) == 0) pthread_detach(second);
    cellm_server_stop(srv);
    cellm_tokenizer_free(tok);
    cellm_model_free(model);
    fprintf(stderr, "cellm serve: stopped\n");
    return 0;
#endif
}
