/*
 * srv.h: the server's internal pieces and how they share a request.
 *
 * A request (struct srv_req) is created by a prep thread from the validated body (api.c),
 * handed to the scheduler's queue (sched.c) and read back by its connection (http.c,
 * http_stream.c) as the scheduler publishes text and ids: the connection is suspended
 * while it waits, and every publish goes through cellm_srv_req_wake_locked, which signals
 * srv_req.wake so that http.c's waker thread resumes it. Both sides hold a reference; the
 * last one to let go frees it. Everything the two sides share (output,
 * done, cancelled, the queue, the metrics) is guarded by the one server mutex `mu`: the
 * critical sections are a few copies per token, far below the cost of a model step, and
 * one lock cannot be taken in the wrong order.
 */
#ifndef CELLM_SERVER_SRV_H
#define CELLM_SERVER_SRV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "cellm.h"
#include "server.h"
#include "template/toolcall.h"

/* What a request asks for, after validation. */
struct srv_params {
    int chat;          /* /v1/chat/completions (else /v1/completions) */
    int stream;        /* SSE */
    int include_usage; /* stream_options.include_usage */
    int return_ids;    /* extension: token_ids in the response */
    int api;           /* enum srv_api (adapt.h): the API the request came in through */
    char *echo;        /* NULL, or the request fields its response repeats (Responses) */
    int32_t *prompt;   /* prompt ids (tokenized text or prompt_ids) */
    int n_prompt;
    int max_tokens; /* generated tokens at most */
    char **stop;    /* stop strings (not included in the output) */
    int n_stop;
    struct cellm_sampler_params sp;
    int n;                     /* choices (each its own sequence; they share the prompt's blocks) */
    int logprobs;              /* -1 = none, else top alternatives per token (0..20) */
    int min_tokens;            /* no EOS before this many tokens */
    int ignore_eos;            /* EOS ids are ordinary tokens */
    int cache_prompt;          /* use the prefix cache (default 1) */
    const _Atomic int *cancel; /* NULL, or stops the tokenization when set */
    /* chat output parsing (api_chat.c decides, sched.c runs the parser) */
    int parse_out;            /* run the tool-call/reasoning parser over the output */
    struct cellm_tc_style tc; /* the template's formats */
    int tool_calls;           /* tools were given and tool_choice is not "none" */
    int in_reasoning;         /* the generation prompt opened <think> */
    int parallel_tool_calls;  /* 0: the first call only */
    cJSON *tools;             /* the request's tools (types for qwen3_coder), or NULL */
    /* NULL, or what the output must follow (api_grammar.c) */
    struct cellm_grammar *grammar;
};

/* An error for the client: HTTP status and an OpenAI-style body. */
struct srv_error {
    int status;
    const char *type; /* "invalid_request_error", "server_error", ... */
    const char *code; /* NULL or a short code */
    char param[64];   /* "" = none */
    char msg[512];
};

struct srv_req;

/* One choice of a request: a cellm_gen in a slot while it runs. */
struct srv_choice {
    struct srv_req *r;
    int index;
    /* scheduler only */
    struct cellm_gen *gen;
    int slot;
    /* shared, under srv->mu */
    char *text; /* released text */
    size_t text_len, text_cap;
    int32_t *ids; /* generated ids */
    int n_ids, ids_cap;
    struct cellm_logprob *lp;  /* [ids_cap] with logprobs: each id's */
    struct cellm_logprob *top; /* [ids_cap][n_top] alternatives */
    int n_cached;              /* prompt tokens taken from the prefix cache */
    const char *finish;        /* "stop", "length" once done */
    int done;
    /* with p.parse_out: the parser (scheduler only), and what it decided (under srv->mu):
     * text above is then the content */
    struct cellm_tc *tc;
    char *reasoning;
    size_t reasoning_len, reasoning_cap;
    struct srv_call *calls;
    int n_calls, calls_cap;
    int calls_begun, calls_ended; /* streamed calls: begun and completed (kept or not) */
};

/* A tool call parsed out of a choice's output. */
struct srv_call {
    char id[40];
    char *name, *args; /* args: streamed, what has arrived so far */
    size_t args_len;
};

struct srv_req {
    struct srv_params p;
    char id[48];
    long long created;
    double t_start; /* monotonic seconds at parse, for the request log */

    /* scheduler only */
    int n_admitted; /* choices that got a slot */

    /* shared, under srv->mu */
    struct srv_choice *ch; /* [p.n] */
    int n_done;            /* choices done */
    int done;              /* every choice done, or failed: err holds why */
    int failed;
    struct srv_error err;
    int cancelled; /* the client went away */
    int refs;
    pthread_cond_t cv;    /* signalled when output or done changes */
    pthread_cond_t *wake; /* NULL, or also signalled then (http.c's waker thread) */
    struct srv_req *next; /* queue link */
};

/* What a stream has sent of each choice (http.c keeps one per streamed request). */
struct srv_stream_pos {
    size_t *sent_text;      /* [n] */
    int *sent_ids;          /* [n] */
    int *finish_sent;       /* [n] */
    size_t *sent_reasoning; /* [n] */
    int *sent_calls;        /* [n] heads of tool calls sent */
    size_t *sent_args;      /* [n] bytes of the last sent head's arguments sent */
    int role_sent;
    struct srv_adapt_stream *adapt; /* NULL, or the state of a Responses / Messages stream */
};

/* Under srv->mu: r's output or done changed; wakes whoever waits for it. */
static inline void cellm_srv_req_wake_locked(struct srv_req *r)
{
    pthread_cond_broadcast(&r->cv);
    if (r->wake) pthread_cond_signal(r->wake);
}

struct srv_metrics {
    unsigned long long req_completions, req_chat, req_other, req_errors, req_rejected_full;
    struct cellm_cache_stats cache; /* copied after each step */
    unsigned long long cache_waits; /* steps a prefill waited for a shared prefix */
    unsigned long long req_cancelled;
    unsigned long long tokens_in, tokens_out;
    double prefill_s, decode_s; /* step time split by token share */
    unsigned long long prefill_tok, decode_tok;
    unsigned long long steps;
    int max_rows_decode; /* most decode rows in one step so far */
};

struct cellm_server {
    struct cellm_server_opts o;
    struct cellm_model *model;
    struct cellm_tokenizer *tok;
    struct cellm_grammar_vocab *gvocab; /* NULL without a tokenizer */
    /* compiled grammars by source, so that a schema sent again starts with warm masks
     * (api_grammar.c); under gmu */
    pthread_mutex_t gmu;
    struct srv_gcache {
        char *key; /* kind letter + text */
        struct cellm_grammar *g;
        unsigned long long used;
    } gcache[8];
    unsigned long long gtick;
    struct cellm_ctx *ctx;
    int vocab, ctx_size;
    struct cellm_sampler_params sp_default;
    char *host_copy, *name_copy, *key_copy, *dir_copy, *cors_copy;

    pthread_mutex_t mu;
    pthread_cond_t sched_cv; /* wakes the scheduler: new request, cancel, stop */
    struct srv_req *q_head, *q_tail;
    int q_len;
    struct srv_choice **slots; /* [parallel] */
    int n_active;
    int stopping;
    int n_inflight;         /* submitted requests whose response is not yet sent */
    pthread_cond_t idle_cv; /* signalled when n_inflight drops to 0 */
    struct srv_metrics m;
    unsigned long long next_id;

    pthread_t sched_thread;
    int sched_started;
    void *daemon; /* struct MHD_Daemon */
    int port;
    struct srv_http *http;        /* http.c's connection state (pools, waiting list) */
    struct srv_item_store *items; /* Responses output items for item_reference (api_store.c) */
};

/* api.c: request bodies to srv_req, errors. */
int cellm_srv_parse(struct cellm_server *s, int chat, const char *body, size_t len,
                    struct srv_req **out, struct srv_error *e);
/* The same, with a flag that stops the tokenization when set (the client went away, the
 * server stops) and a condition variable to signal with r->cv (see srv_req.wake). */
int cellm_srv_parse_opts(struct cellm_server *s, int chat, const char *body, size_t len,
                         const _Atomic int *cancel, pthread_cond_t *wake, struct srv_req **out,
                         struct srv_error *e);
/* /tokenize and /detokenize bodies (llama-server's shapes); 0 or e set. Like a prompt,
 * /tokenize's content stops at the context size (400 context_length_exceeded) and when
 * cancel is set (503). */
int cellm_srv_tokenize(struct cellm_server *s, const char *body, size_t len,
                       const _Atomic int *cancel, char **out, struct srv_error *e);
int cellm_srv_detokenize(struct cellm_server *s, const char *body, size_t len, char **out,
                         struct srv_error *e);
/* api_chat.c: a chat request's messages, tools, tool_choice and template kwargs, rendered
 * and tokenized into p (and p's output-parsing fields); 0, or -1 with e set. */
int cellm_srv_chat_prompt(struct cellm_server *s, const cJSON *o, struct srv_params *p,
                          struct srv_error *e);
/* api.c's helpers for it: p->prompt from text; the 400 of a wrong type; the 400 of a
 * refused field. Each returns -1 (e set) or, for the first, 0. */
int cellm_srv_tokenize_text(struct cellm_server *s, const char *text, int add_special,
                            const char *key, struct srv_params *p, struct srv_error *e);
int cellm_srv_bad_type(struct srv_error *e, const char *key, const char *want, const cJSON *j);
int cellm_srv_refuse(struct srv_error *e, const char *key, const char *why);
/* Sets e (printf-style message). */
void cellm_srv_errorf(struct srv_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* {"error": {...}} as a malloc'd string. */
char *cellm_srv_error_json(const struct srv_error *e);
/* response_format, grammar, json_schema, guided_json, guided_grammar into p->grammar
 * (api_grammar.c); -1 with e filled on a refusal. */
struct cJSON;
int cellm_srv_grammar_fields(struct cellm_server *s, const struct cJSON *o, struct srv_params *p,
                             struct srv_error *e);

/* api_out.c: response bodies. The whole non-streaming body (malloc'd), from a done
 * request. */
char *cellm_srv_response_json(const struct cellm_server *s, const struct srv_req *r);
/* Streaming (under s->mu): whether r has output that pos has not sent; and the SSE events
 * ("data: {...}\n\n" each, malloc'd, NULL when out of memory) for all of it, advancing pos:
 * a role chunk first (chat), then per choice its new text/ids/logprobs and, once done,
 * its finish chunk; when the request is done, the usage chunk (include_usage) and
 * [DONE], or the error event. */
int cellm_srv_stream_pending(const struct srv_req *r, const struct srv_stream_pos *pos);
char *cellm_srv_stream_events(const struct cellm_server *s, const struct srv_req *r,
                              struct srv_stream_pos *pos);
int cellm_srv_stream_pos_init(struct srv_stream_pos *pos, int n);
void cellm_srv_stream_pos_free(struct srv_stream_pos *pos);
/* The text of one token alone (its bytes may be part of a UTF-8 character); malloc'd, ""
 * without a tokenizer. */
char *cellm_srv_token_text(const struct cellm_server *s, int32_t id);
/* The one-line log of a finished request (stderr): method, route, status, tokens, time. */
void cellm_srv_log(const struct cellm_server *s, const char *method, const char *url, int status,
                   int n_prompt, int n_cached, int n_gen, double t_start);

/* sched.c: the queue and the scheduler thread. */
int cellm_srv_sched_start(struct cellm_server *s, struct cellm_error *err);
/* Fails everything in flight with "server is shutting down" and joins the thread. */
void cellm_srv_sched_stop(struct cellm_server *s);
/* Queues r (takes one more reference). Returns 0, or fills e (503 full / shutting down). */
int cellm_srv_submit(struct cellm_server *s, struct srv_req *r, struct srv_error *e);
/* Drops one reference (under no lock); frees on the last. */
void cellm_srv_req_release(struct cellm_server *s, struct srv_req *r);
void cellm_srv_req_free(struct srv_req *r);
/* The Prometheus text of /metrics (malloc'd). */
char *cellm_srv_metrics_text(struct cellm_server *s);

#endif
