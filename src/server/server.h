/*
 * server.h: the OpenAI-compatible HTTP server behind `cellm serve`.
 *
 * The CLI loads the model (and, when the checkpoint has one, the tokenizer), fills
 * struct cellm_server_opts and calls cellm_server_start; the server then runs on its own
 * threads (HTTP event loops, request preparation, one scheduler) until cellm_server_stop,
 * which drains in-flight requests, ends what is left with an error, joins all threads and
 * frees everything it allocated.
 * The model and tokenizer stay owned by the caller and must outlive the server.
 */
#ifndef CELLM_SERVER_SERVER_H
#define CELLM_SERVER_SERVER_H

#include "cellm.h"

/* Default largest accepted request body (--max-body); larger ones get HTTP 413. */
#define CELLM_SERVER_MAX_BODY (1024 * 1024)

/* Default prompt rows per scheduler step (--batch-size). */
#define CELLM_SERVER_BATCH_ROWS 512

struct cellm_server_opts {
    const char *host;        /* address to bind ("127.0.0.1", "0.0.0.0", "::", a name) */
    int port;                /* 0 = any free port (see cellm_server_port) */
    int parallel;            /* sequences decoded together (slots) */
    int batch_rows;          /* prompt rows evaluated per scheduler step, beside the decode
                                rows (chunked prefill); 0 = CELLM_SERVER_BATCH_ROWS */
    int queue;               /* requests waiting beyond the slots before 503 */
    int ctx_size;            /* per-request limit of prompt + generated tokens; 0 = model's */
    const char *api_key;     /* NULL = no authentication */
    const char *model_name;  /* the id reported by /v1/models and in responses */
    const char *model_dir;   /* generation_config.json defaults for sampling */
    size_t max_body;         /* largest request body in bytes; 0 = CELLM_SERVER_MAX_BODY */
    size_t cache_bytes;      /* prefix cache budget (host memory on the CPU, device memory on
                              * CUDA); 0 = no prefix cache */
    int cache_block;         /* positions per cache block; 0 = the engine's default */
    const char *cors_origin; /* NULL = no CORS headers; "*" or an origin to allow */
    int log_requests;        /* one line per request on stderr */

    /* Connections and admission; 0 takes the default in parentheses. */
    int http_threads;          /* event-loop threads (4); idle connections cost no thread */
    int max_connections;       /* open connections at most (RLIMIT_NOFILE less a margin) */
    int per_client;            /* connections per client address (64) */
    int request_timeout;       /* seconds to receive a whole request, from connect or from
                                  the end of the previous response on the connection (10) */
    int idle_timeout;          /* seconds without traffic before a connection closes (5) */
    int prep_threads;          /* threads parsing and tokenizing requests (2) */
    int prep_queue;            /* requests waiting for a prep thread before 503 (32) */
    int shutdown_timeout;      /* seconds cellm_server_stop lets requests finish (10) */
    const char *allowed_hosts; /* extra Host names accepted when bound to loopback without
                                  an API key (comma-separated; "*" = any); NULL = none */
};

struct cellm_server;

/* Creates the context and starts the scheduler and the HTTP daemon. tok may be NULL
 * (then only prompt_ids requests are served). */
enum cellm_status cellm_server_start(struct cellm_model *model, struct cellm_tokenizer *tok,
                                     const struct cellm_server_opts *opts,
                                     struct cellm_server **out, struct cellm_error *err);

/* The port the server listens on (useful with port 0). */
int cellm_server_port(const struct cellm_server *s);

/* Drains: new requests get 503 while those in flight get up to shutdown_timeout seconds
 * to finish; then ends what is left with an error, stops HTTP and the scheduler, frees.
 * Accepts NULL. */
void cellm_server_stop(struct cellm_server *s);

#endif
