/*
 * http.c: the HTTP side of the server, on GNU libmicrohttpd.
 *
 * Why libmicrohttpd: it is packaged by Debian (libmicrohttpd-dev), small, C, maintained
 * for 15 years by GNU, and does the parts of HTTP/1.1 that are easy to get wrong
 * (request parsing, keep-alive, chunked transfer encoding of a response of unknown
 * length, limits) while leaving threads and data to the application. It also has what a
 * server facing hostile clients needs without a rewrite: an epoll event loop run by a
 * small pool of threads (an idle or slow connection costs a socket and a few KiB, not a
 * thread), connection notifications (the per-address limit is kept in http_guard.c, so a
 * connection over it can be answered 429 rather than dropped at accept), and
 * suspend/resume, so a request waiting on the scheduler holds no thread either.
 * (libevent's evhttp would need the same plumbing and gives less control over request
 * framing; h2o and civetweb are not packaged in this shape.)
 *
 * Threads and where work runs:
 *   - one front thread (http_front.c) accepts, and relays each client's bytes to the
 *     daemon over a socketpair, replacing libmicrohttpd's own (HTML) answers to malformed
 *     requests with JSON ones;
 *   - http_threads event-loop threads (MHD's pool, THREAD_STACK bytes of stack each) only
 *     read requests and write responses; nothing in them waits or computes for long.
 *   - prep_threads "prep" threads (PREP_STACK each; http_wait.c) parse and tokenize
 *     request bodies (and render chat templates), for completions and /tokenize alike: the
 *     expensive, attacker-sized part before admission. Their queue is bounded
 *     (prep_queue); beyond it a request gets 503 with Retry-After at once. Tokenization
 *     stops once the prompt exceeds the context, and when its client goes away or the
 *     server stops (a cancel flag polled by the tokenizer and its regex engine).
 *   - one waker thread (http_wait.c) resumes suspended connections when their request has
 *     news (the scheduler signals it through srv_req.wake), notices clients that hang up
 *     while suspended (and cancels their work), and closes connections that have not
 *     delivered a complete request within request_timeout (slow headers or bodies).
 * This file owns the daemon, the callbacks, routing, replies, the request log line and
 * the server's start and stop; the request policy (framing, Host, content type, key) is
 * http_guard.c's.
 *
 * Strictness: more than one Content-Length, Content-Length with Transfer-Encoding, or a
 * Transfer-Encoding other than chunked is refused (400/501) and the connection closed, so a
 * body can never be read as a second request; POST bodies must be application/json (a
 * cross-site form post is refused); bound to loopback without an API key, the Host header
 * must name loopback (DNS rebinding). Every error has a JSON body: this file's, and
 * http_front.c's in place of libmicrohttpd's own answers.
 *
 * Routes: GET /health (no key needed), GET /metrics, GET /v1/models, GET
 * /v1/models/{id}, POST /v1/completions, POST /v1/chat/completions, POST /v1/responses,
 * POST /v1/messages, POST /v1/messages/count_tokens (the last three are adapters over chat
 * completions, adapt.h; /v1/messages answers errors in Anthropic's shape), POST /tokenize,
 * POST /detokenize. Bodies above --max-body (default CELLM_SERVER_MAX_BODY, 1 MiB) get 413;
 * unknown routes 404; a known route with the wrong method 405; a missing or wrong key
 * (with --api-key; a bearer token or x-api-key) 401. With --cors-origin every response carries
 * Access-Control-Allow-Origin and an OPTIONS preflight is answered 204 (no key needed).
 * Each request is logged in one line when it completes (cellm_srv_log; --quiet: none).
 */
#ifdef CELLM_HAVE_MHD
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "adapt.h"
#include "http_conn.h"
#include "http_guard.h"

/* An over-limit body is read and dropped up to this many bytes before the 413 goes out. */
#define DISCARD_MAX ((size_t)16 << 20)

double cellm_srv_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

void cellm_srv_count_error(struct cellm_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->m.req_errors++;
    pthread_mutex_unlock(&s->mu);
}

void cellm_srv_cors(const struct cellm_server *s, struct MHD_Response *resp)
{
    if (!s->o.cors_origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->o.cors_origin);
    if (strcmp(s->o.cors_origin, "*")) MHD_add_response_header(resp, "Vary", "Origin");
}

/* The request handle() is answering on this thread, for the status of its log line: every
 * reply is queued from inside handle(), on the event-loop thread that called it. */
static _Thread_local struct srv_conn *answering;

static void log_status(int status)
{
    if (answering) answering->status = status;
}

static struct srv_sock *sock_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Every response of ours goes out through here: the front (http_front.c) counts them, so
 * that it can tell libmicrohttpd's own answers from ours. */
static enum MHD_Result queue(struct cellm_server *s, struct MHD_Connection *c, unsigned status,
                             struct MHD_Response *resp)
{
    struct srv_sock *sk = sock_of(c);
    if (sk)
        cellm_srv_pipe_queued(s->http, sk->pipe, answering && !strcmp(answering->method, "HEAD"));
    return MHD_queue_response(c, status, resp);
}

/* Queues a response that owns `body` (malloc'd; NULL = out of memory). close: end the
 * connection after it (the request's framing cannot be trusted). */
static enum MHD_Result reply_ex(struct cellm_server *s, struct MHD_Connection *c, int status,
                                const char *ctype, char *body, int close)
{
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    if (status >= 400) cellm_srv_count_error(s);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    cellm_srv_cors(s, resp);
    log_status(status);
    if (status == 503 || status == 429) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (close) MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = queue(s, c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply(struct cellm_server *s, struct MHD_Connection *c, int status,
                             const char *ctype, char *body)
{
    return reply_ex(s, c, status, ctype, body, 0);
}

/* The API whose error shape the request being answered gets (Anthropic's on /v1/messages). */
static enum srv_api answering_api(void)
{
    return answering && !strncmp(answering->url, "/v1/messages", 12) &&
                   (!answering->url[12] || answering->url[12] == '/')
               ? SRV_API_MESSAGES
               : SRV_API_CHAT;
}

static enum MHD_Result reply_error(struct cellm_server *s, struct MHD_Connection *c,
                                   const struct srv_error *e)
{
    char *body = cellm_srv_adapt_error_json(answering_api(), e);
    return reply(s, c, e->status, "application/json", body);
}

static enum MHD_Result reply_errorf_ex(struct cellm_server *s, struct MHD_Connection *c, int status,
                                       const char *code, int close, const char *msg)
{
    struct srv_error e;
    cellm_srv_errorf(&e, status, NULL, "%s", msg);
    e.code = code;
    return reply_ex(s, c, status, "application/json",
                    cellm_srv_adapt_error_json(answering_api(), &e), close);
}

static enum MHD_Result reply_errorf(struct cellm_server *s, struct MHD_Connection *c, int status,
                                    const char *code, const char *msg)
{
    return reply_errorf_ex(s, c, status, code, 0, msg);
}

/* ---- bodies that need work: completions, /tokenize, /detokenize ------------------------ */

/* The body is complete: hand it to a prep thread, or refuse at once when they are busy. */
static enum MHD_Result prep_start(struct cellm_server *s, struct srv_conn *cn, enum srv_job job)
{
    struct srv_http *h = s->http;
    pthread_mutex_lock(&s->mu);
    if (h->draining || s->stopping) {
        pthread_mutex_unlock(&s->mu);
        return reply_errorf(s, cn->c, 503, "shutting_down", "the server is shutting down");
    }
    if (h->q_len >= s->o.prep_queue) {
        h->prep_rejected++;
        s->m.req_rejected_full++;
        int q = h->q_len;
        pthread_mutex_unlock(&s->mu);
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the server is busy: %d requests are waiting to be tokenized; retry later", q);
        return reply_errorf(s, cn->c, 503, "server_busy", msg);
    }
    cn->job = job;
    cn->state = C_PREP;
    cn->qnext = NULL;
    if (h->q_tail)
        h->q_tail->qnext = cn;
    else
        h->q_head = cn;
    h->q_tail = cn;
    h->q_len++;
    cellm_srv_park_locked(s, cn, W_PREP);
    pthread_cond_signal(&h->prep_cv);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

/* Resumed after prep (C_READY) or after the scheduler finished (C_WAIT). */
static enum MHD_Result prep_next(struct cellm_server *s, struct srv_conn *cn)
{
    struct MHD_Connection *c = cn->c;
    if (cn->gone) {
        /* no answer to send: dropping the connection frees it; our reference goes in
         * completed() */
        return MHD_NO;
    }
    if (cn->state == C_READY && cn->failed) return reply_error(s, c, &cn->err);
    if (cn->state == C_READY &&
        (cn->job == J_TOKENIZE || cn->job == J_DETOKENIZE || cn->job == J_COUNT_TOKENS)) {
        char *out = cn->out;
        cn->out = NULL;
        return reply(s, c, 200, "application/json", out);
    }
    struct srv_req *r = cn->r;
    cn->n_prompt = r->p.n_prompt;
    if (cn->state == C_READY && r->p.stream) {
        struct MHD_Response *resp = cellm_srv_stream_response(s, cn);
        if (!resp) return reply(s, c, 500, NULL, NULL);
        cn->state = C_STREAM;
        cn->status = 200; /* fill() records a failure */
        enum MHD_Result ret = queue(s, c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp); /* the stream is freed when MHD is done with it */
        return ret;
    }
    pthread_mutex_lock(&s->mu);
    if (!r->done) {
        cn->state = C_WAIT;
        cellm_srv_park_locked(s, cn, W_DONE);
        pthread_mutex_unlock(&s->mu);
        return MHD_YES;
    }
    struct srv_error re = r->err;
    int failed = r->failed;
    char *body = failed ? NULL : cellm_srv_response_json(s, r);
    cn->n_cached = r->ch[0].n_cached;
    for (int k = 0; k < r->p.n; k++)
        cn->n_gen += r->ch[k].n_ids;
    pthread_mutex_unlock(&s->mu);
    if (failed) return reply_error(s, c, &re);
    return reply(s, c, 200, "application/json", body);
}

/* ---- routing -------------------------------------------------------------------------- */

/* A CORS preflight: what the browser may send next. */
static enum MHD_Result preflight(struct cellm_server *s, struct MHD_Connection *c)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    cellm_srv_cors(s, resp);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            "Authorization, Content-Type, x-api-key, anthropic-version, "
                            "anthropic-beta, anthropic-dangerous-direct-browser-access");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
    log_status(204);
    enum MHD_Result ret = queue(s, c, 204, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The scheduler's metrics and the HTTP layer's own. */
static char *metrics_text(struct cellm_server *s)
{
    struct srv_http *h = s->http;
    char *base = cellm_srv_metrics_text(s);
    if (!base) return NULL;
    pthread_mutex_lock(&s->mu);
    unsigned long long cancelled = h->prep_cancelled, rejected = h->prep_rejected;
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&h->sock_mu);
    unsigned long long reaped = h->reaped, over = h->over_client;
    pthread_mutex_unlock(&h->sock_mu);
    size_t n = strlen(base), cap = n + 1024;
    char *t = realloc(base, cap);
    if (!t) {
        free(base);
        return NULL;
    }
    snprintf(t + n, cap - n,
             "# HELP cellm_http_prep_cancelled_total Request bodies whose parsing or "
             "tokenization stopped because the client hung up.\n"
             "# TYPE cellm_http_prep_cancelled_total counter\n"
             "cellm_http_prep_cancelled_total %llu\n"
             "# HELP cellm_http_prep_rejected_total Request bodies refused (503) because the "
             "tokenization queue was full.\n"
             "# TYPE cellm_http_prep_rejected_total counter\n"
             "cellm_http_prep_rejected_total %llu\n"
             "# HELP cellm_http_connections_timed_out_total Connections closed for not "
             "delivering a request within --request-timeout (or, over --per-client, at all).\n"
             "# TYPE cellm_http_connections_timed_out_total counter\n"
             "cellm_http_connections_timed_out_total %llu\n"
             "# HELP cellm_http_connections_over_client_total Connections opened beyond "
             "--per-client (answered 429 or closed).\n"
             "# TYPE cellm_http_connections_over_client_total counter\n"
             "cellm_http_connections_over_client_total %llu\n",
             cancelled, rejected, reaped, over);
    return t;
}

static enum MHD_Result route(struct cellm_server *s, struct MHD_Connection *c, struct srv_conn *cn,
                             const char *url, const char *method)
{
    enum {
        R_HEALTH,
        R_METRICS,
        R_MODELS,
        R_COMPLETIONS,
        R_CHAT,
        R_MODEL,
        R_TOKENIZE,
        R_DETOK,
        R_RESPONSES,
        R_MESSAGES,
        R_COUNT
    };
    static const struct {
        const char *path, *method;
        int id;
    } routes[] = {
        {"/health", "GET", R_HEALTH},
        {"/metrics", "GET", R_METRICS},
        {"/v1/models", "GET", R_MODELS},
        {"/v1/completions", "POST", R_COMPLETIONS},
        {"/v1/chat/completions", "POST", R_CHAT},
        {"/v1/models/", "GET", R_MODEL}, /* a prefix: /v1/models/{id} */
        {"/tokenize", "POST", R_TOKENIZE},
        {"/detokenize", "POST", R_DETOK},
        {"/v1/responses", "POST", R_RESPONSES},
        {"/v1/messages", "POST", R_MESSAGES},
        {"/v1/messages/count_tokens", "POST", R_COUNT},
    };
    int id = -1, path_known = 0;
    const char *model_id = NULL;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) model_id = url + 11;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path) || (routes[i].id == R_MODEL && model_id)) {
            path_known = 1;
            if (!strcmp(method, routes[i].method) ||
                (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
                id = routes[i].id;
        }
    pthread_mutex_lock(&s->mu);
    if (id == R_COMPLETIONS)
        s->m.req_completions++;
    else if (id == R_CHAT)
        s->m.req_chat++;
    else
        s->m.req_other++;
    int stopping = s->stopping || s->http->draining;
    pthread_mutex_unlock(&s->mu);
    if (cn->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes",
                 s->o.max_body);
        return reply_errorf(s, c, 413, "request_too_large", msg);
    }
    if (!cellm_srv_host_allowed(s, c))
        return reply_errorf(s, c, 403, "host_not_allowed",
                            "the Host header does not name this loopback server (a page on "
                            "another site may be reaching it through DNS rebinding); use "
                            "localhost or 127.0.0.1, an API key, or --allowed-hosts");
    if (path_known && !strcmp(method, "OPTIONS") && s->o.cors_origin) return preflight(s, c);
    if (id == R_HEALTH)
        return reply(s, c, stopping ? 503 : 200, "application/json",
                     strdup(stopping ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
    if (path_known && !cellm_srv_authorized(s, c))
        return reply_errorf(s, c, 401, "invalid_api_key",
                            "missing or wrong API key (send 'Authorization: Bearer KEY' or "
                            "'x-api-key: KEY')");
    if (id < 0) {
        char msg[256];
        if (path_known) {
            snprintf(msg, sizeof msg, "method %.16s is not allowed on %.128s", method, url);
            return reply_errorf(s, c, 405, "method_not_allowed", msg);
        }
        snprintf(msg, sizeof msg, "no route %.16s %.200s", method, url);
        return reply_errorf(s, c, 404, "not_found", msg);
    }
    if (id == R_METRICS) return reply(s, c, 200, "text/plain; version=0.0.4", metrics_text(s));
    if (id == R_MODELS) return reply(s, c, 200, "application/json", cellm_srv_models_json(s, 0));
    if (id == R_MODEL) {
        if (strcmp(model_id, s->o.model_name)) {
            char msg[256];
            snprintf(msg, sizeof msg, "the model '%.200s' does not exist", model_id);
            return reply_errorf(s, c, 404, "model_not_found", msg);
        }
        return reply(s, c, 200, "application/json", cellm_srv_models_json(s, 1));
    }
    /* a browser sends a cross-site form or text/plain POST without asking first (no CORS
     * preflight); application/json it cannot send that way */
    if (!cellm_srv_json_content_type(c))
        return reply_errorf(s, c, 415, "unsupported_media_type",
                            "the request body must be sent with 'Content-Type: "
                            "application/json'");
    static const enum srv_job jobs[] = {
        [R_COMPLETIONS] = J_COMPLETION, [R_CHAT] = J_CHAT,           [R_TOKENIZE] = J_TOKENIZE,
        [R_DETOK] = J_DETOKENIZE,       [R_RESPONSES] = J_RESPONSES, [R_MESSAGES] = J_MESSAGES,
        [R_COUNT] = J_COUNT_TOKENS};
    return prep_start(s, cn, jobs[id]);
}

static enum MHD_Result handle_request(struct cellm_server *s, struct MHD_Connection *c,
                                      const char *url, const char *method, const char *upload,
                                      size_t *upload_size, void **con_cls)
{
    struct srv_conn *cn = *con_cls;
    if (!cn) {
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        *con_cls = cn;
        answering = cn;
        cn->c = c;
        cn->fd = conn_fd(c);
        cn->sk = sock_of(c);
        cn->t0 = cellm_srv_now();
        snprintf(cn->method, sizeof cn->method, "%s", method);
        snprintf(cn->url, sizeof cn->url, "%s", url);
        if (cn->sk && cn->sk->over) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "too many connections from your address (the limit is %d); retry once "
                     "some have closed",
                     s->o.per_client);
            return reply_errorf_ex(s, c, 429, "too_many_connections", 1, msg);
        }
        int status;
        const char *msg;
        if (cellm_srv_framing_error(c, &status, &msg))
            return reply_errorf_ex(s, c, status, "bad_request_framing", 1, msg);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
            cn->too_big = 1;
            /* A client waiting for 100-continue gets the answer before it sends the body.
             * Others are already sending: answering now would close the connection under
             * them (they see a reset, not the 413), so their body is read and dropped,
             * up to a bound, and answered at its end. */
            if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect") ||
                strtoull(cl, NULL, 10) > DISCARD_MAX)
                return route(s, c, cn, url, method);
        }
        return MHD_YES;
    }
    answering = cn;
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (cn->too_big) {
            cn->discarded += n;
            return cn->discarded > DISCARD_MAX ? route(s, c, cn, url, method) : MHD_YES;
        }
        if (cn->len + n > s->o.max_body) {
            cn->too_big = 1;
            free(cn->body);
            cn->body = NULL;
            cn->len = cn->cap = 0;
            return MHD_YES;
        }
        if (cn->len + n + 1 > cn->cap) {
            size_t cap = cn->cap ? cn->cap : 4096;
            while (cap < cn->len + n + 1)
                cap *= 2;
            char *b = realloc(cn->body, cap);
            if (!b) return MHD_NO;
            cn->body = b;
            cn->cap = cap;
        }
        memcpy(cn->body + cn->len, upload, n);
        cn->len += n;
        cn->body[cn->len] = 0;
        return MHD_YES;
    }
    if (cn->state == C_READ) {
        if (cn->sk) {
            pthread_mutex_lock(&s->http->sock_mu);
            cn->sk->busy = 1; /* complete: no deadline while it is answered */
            pthread_mutex_unlock(&s->http->sock_mu);
        }
        return route(s, c, cn, url, method);
    }
    return prep_next(s, cn);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    enum MHD_Result ret = handle_request(cls, c, url, method, upload, upload_size, con_cls);
    answering = NULL;
    return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct cellm_server *s = cls;
    struct srv_conn *cn = *con_cls;
    struct srv_sock *sk = sock_of(c);
    if (sk) {
        pthread_mutex_lock(&s->http->sock_mu);
        sk->busy = 0;
        sk->t0 = cellm_srv_now(); /* the next request on this connection has its own deadline */
        pthread_mutex_unlock(&s->http->sock_mu);
    }
    if (cn) {
        pthread_mutex_lock(&s->mu);
        cellm_srv_unlist_locked(s, cn); /* closed while parked (the daemon stopping) */
        if (cn->inflight && --s->n_inflight == 0) pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
        if (cn->status)
            cellm_srv_log(s, cn->method, cn->url, cn->status, cn->n_prompt, cn->n_cached, cn->n_gen,
                          cn->t0);
        if (cn->r) cellm_srv_req_release(s, cn->r); /* cancels it when not done */
        free(cn->body);
        free(cn->out);
        free(cn);
    }
    *con_cls = NULL;
}

static void notify_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode code)
{
    struct cellm_server *s = cls;
    struct srv_http *h = s->http;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct srv_pipe *p = cellm_srv_pipe_claim(h, conn_fd(c));
        struct srv_sock *k = calloc(1, sizeof *k);
        *socket_context = k;
        if (!k) {
            cellm_srv_pipe_release(h, p);
            return;
        }
        k->fd = conn_fd(c);
        k->t0 = cellm_srv_now();
        k->pipe = p;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        pthread_mutex_lock(&h->sock_mu);
        k->cl = cellm_srv_client_add(h, ci ? ci->client_addr : NULL);
        if (k->cl && k->cl->n > s->o.per_client) {
            k->over = 1;
            h->over_client++;
        }
        k->next = h->socks;
        if (h->socks) h->socks->prev = k;
        h->socks = k;
        pthread_mutex_unlock(&h->sock_mu);
        return;
    }
    struct srv_sock *k = *socket_context;
    if (!k) return;
    pthread_mutex_lock(&h->sock_mu);
    if (k->prev)
        k->prev->next = k->next;
    else
        h->socks = k->next;
    if (k->next) k->next->prev = k->prev;
    cellm_srv_client_drop(h, k->cl);
    pthread_mutex_unlock(&h->sock_mu);
    cellm_srv_pipe_release(h, k->pipe);
    free(k);
    *socket_context = NULL;
}

/* MHD's own answers (a malformed request line, headers too large) carry an HTML body
 * and no callback runs before them: http_front.c replaces them with JSON. */

/* ---- lifecycle ------------------------------------------------------------------------ */

/* Under s->mu: stops the tokenization of every request before admission. */
static void cancel_prep_locked(struct srv_http *h)
{
    for (struct srv_conn *cn = h->q_head; cn; cn = cn->qnext)
        atomic_store(&cn->cancel, 1);
    for (struct srv_conn *cn = h->wait_head; cn; cn = cn->wnext)
        if (cn->wk == W_PREP) atomic_store(&cn->cancel, 1);
}

static void http_stop_threads(struct cellm_server *s)
{
    struct srv_http *h = s->http;
    if (!h) return;
    pthread_mutex_lock(&s->mu);
    h->prep_stop = 1;
    cancel_prep_locked(h);
    pthread_cond_broadcast(&h->prep_cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < h->n_prep; i++)
        pthread_join(h->prep[i], NULL);
    h->n_prep = 0;
    pthread_mutex_lock(&s->mu);
    h->waker_stop = 1;
    pthread_cond_broadcast(&h->wake_cv);
    pthread_mutex_unlock(&s->mu);
    if (h->waker_started) pthread_join(h->waker, NULL);
    h->waker_started = 0;
}

static void server_free(struct cellm_server *s)
{
    cellm_ctx_free(s->ctx);
    for (int i = 0; i < 8; i++) {
        free(s->gcache[i].key);
        cellm_grammar_free(s->gcache[i].g);
    }
    pthread_mutex_destroy(&s->gmu);
    cellm_grammar_vocab_free(s->gvocab);
    free(s->slots);
    free(s->host_copy);
    free(s->name_copy);
    free(s->key_copy);
    free(s->dir_copy);
    free(s->cors_copy);
    cellm_srv_store_free(s->items);
    if (s->http) {
        free(s->http->prep);
        free(s->o.allowed_hosts ? (void *)s->o.allowed_hosts : NULL);
        pthread_cond_destroy(&s->http->prep_cv);
        pthread_cond_destroy(&s->http->wake_cv);
        cellm_srv_clients_free(s->http);
        pthread_mutex_destroy(&s->http->sock_mu);
        free(s->http);
    }
    pthread_cond_destroy(&s->sched_cv);
    pthread_cond_destroy(&s->idle_cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static enum cellm_status fail(struct cellm_server *s, struct cellm_error *err, enum cellm_status st,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static enum cellm_status fail(struct cellm_server *s, struct cellm_error *err, enum cellm_status st,
                              const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    http_stop_threads(s);
    if (s->sched_started) cellm_srv_sched_stop(s);
    cellm_srv_front_quiesce(s);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    cellm_srv_front_stop(s);
    server_free(s);
    return st;
}

static char *dup_or_null(const char *p, int *oom)
{
    if (!p) return NULL;
    char *d = strdup(p);
    *oom |= !d;
    return d;
}

static int start_thread(pthread_t *t, size_t stack, void *(*fn)(void *), void *arg)
{
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, stack);
    int e = pthread_create(t, &a, fn, arg);
    pthread_attr_destroy(&a);
    return e;
}

enum cellm_status cellm_server_start(struct cellm_model *model, struct cellm_tokenizer *tok,
                                     const struct cellm_server_opts *opts,
                                     struct cellm_server **out, struct cellm_error *err)
{
    *out = NULL;
    struct cellm_server *s = calloc(1, sizeof *s);
    if (!s) return CELLM_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->gmu, NULL);
    pthread_cond_init(&s->sched_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->o = *opts;
    s->o.allowed_hosts = NULL;
    s->model = model;
    s->tok = tok;
    int oom = 0;
    struct srv_http *h = s->http = calloc(1, sizeof *s->http);
    if (!h) {
        s->o.host = NULL;
        server_free(s);
        return CELLM_ERR_NOMEM;
    }
    pthread_cond_init(&h->prep_cv, NULL);
    pthread_cond_init(&h->wake_cv, NULL);
    pthread_mutex_init(&h->sock_mu, NULL);
    s->o.host = s->host_copy = dup_or_null(opts->host ? opts->host : "127.0.0.1", &oom);
    s->o.model_name = s->name_copy =
        dup_or_null(opts->model_name ? opts->model_name : "cellm", &oom);
    s->o.api_key = s->key_copy = dup_or_null(opts->api_key, &oom);
    s->o.model_dir = s->dir_copy = dup_or_null(opts->model_dir, &oom);
    s->o.allowed_hosts = dup_or_null(opts->allowed_hosts, &oom);
    s->o.cors_origin = s->cors_copy = dup_or_null(opts->cors_origin, &oom);
    if (oom) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    if (opts->api_key && !*opts->api_key)
        return fail(s, err, CELLM_ERR_ARG,
                    "the API key is empty (an empty key would turn authentication off; omit "
                    "it to serve without one)");
    if (s->o.parallel < 1) s->o.parallel = 1;
    if (s->o.queue < 0) s->o.queue = 0;
    if (!s->o.max_body) s->o.max_body = CELLM_SERVER_MAX_BODY;
    cellm_srv_conn_defaults(&s->o);
    if (!(s->items = cellm_srv_store_new(CELLM_SRV_STORE_BYTES)))
        return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    s->vocab = cellm_model_vocab(model);
    int maxc = cellm_model_max_context(model);
    s->ctx_size = opts->ctx_size > 0 ? opts->ctx_size : maxc;
    if (s->ctx_size > maxc)
        return fail(s, err, CELLM_ERR_ARG,
                    "--ctx-size %d is beyond the model's maximum context of %d", s->ctx_size, maxc);

    if (tok) { /* the tokens' bytes for constrained decoding: built once, shared */
        struct cellm_error ce;
        if (cellm_grammar_vocab_new(tok, s->vocab, &s->gvocab, &ce))
            return fail(s, err, CELLM_ERR_NOMEM, "%s", ce.msg);
    }
    s->slots = calloc((size_t)s->o.parallel, sizeof *s->slots);
    h->prep = calloc((size_t)s->o.prep_threads, sizeof *h->prep);
    if (!s->slots || !h->prep) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");

    s->sp_default = cellm_sampler_params_default();
    if (s->o.model_dir) {
        struct cellm_error ce;
        if (cellm_sampler_params_from_dir(s->o.model_dir, &s->sp_default, &ce))
            return fail(s, err, CELLM_ERR_FORMAT, "%s", ce.msg);
    }

    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = s->o.parallel;
    cp.cache_bytes = s->o.cache_bytes;
    cp.cache_block = s->o.cache_block;
    enum cellm_status st = cellm_ctx_new(model, &cp, &s->ctx, err);
    if (st) {
        server_free(s);
        return st;
    }
    if (cellm_srv_sched_start(s, err)) {
        server_free(s);
        return CELLM_ERR_NOMEM;
    }
    for (int i = 0; i < s->o.prep_threads; i++) {
        if (start_thread(&h->prep[i], PREP_STACK, cellm_srv_prep_main, s))
            return fail(s, err, CELLM_ERR_NOMEM, "cannot start the request threads");
        h->n_prep = i + 1;
    }
    if (start_thread(&h->waker, THREAD_STACK, cellm_srv_waker_main, s))
        return fail(s, err, CELLM_ERR_NOMEM, "cannot start the waker thread");
    h->waker_started = 1;

    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai) return fail(s, err, CELLM_ERR_ARG, "--host %s: cannot resolve (%d)", s->o.host, gai);
    /* the daemon listens on nothing: http_front.c accepts and hands it each client */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_USE_ITC;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, s, MHD_OPTION_NOTIFY_COMPLETED, completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, notify_conn, s, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)s->o.http_threads, MHD_OPTION_THREAD_STACK_SIZE, THREAD_STACK,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->o.per_client * 2 + 16,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.idle_timeout, MHD_OPTION_END);
    if (!d) {
        freeaddrinfo(ai);
        return fail(s, err, CELLM_ERR_IO, "cannot start the HTTP daemon");
    }
    s->daemon = d;
    char msg[256];
    int fe = cellm_srv_front_start(s, ai, msg, sizeof msg);
    freeaddrinfo(ai);
    if (fe) return fail(s, err, CELLM_ERR_IO, "%s", msg);
    s->port = cellm_srv_front_port(s);
    *out = s;
    return CELLM_OK;
}

int cellm_server_port(const struct cellm_server *s)
{
    return s->port;
}

void cellm_server_stop(struct cellm_server *s)
{
    if (!s) return;
    struct srv_http *h = s->http;
    /* drain: new requests get 503 (and /health says so) while those in flight finish,
     * for up to shutdown_timeout seconds */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += s->o.shutdown_timeout;
    pthread_mutex_lock(&s->mu);
    h->draining = 1;
    cancel_prep_locked(h);
    while ((s->n_inflight > 0 || s->n_active > 0 || s->q_len > 0) &&
           pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    /* then fail what is left (streams end with an error event), give the connections a
     * moment to send that, and stop */
    http_stop_threads(s);
    cellm_srv_sched_stop(s);
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    pthread_mutex_lock(&s->mu);
    for (struct srv_conn *cn = h->wait_head, *nx; cn; cn = nx) {
        nx = cn->wnext;
        cellm_srv_unpark_locked(s, cn); /* every request is done now */
    }
    while (s->n_inflight > 0 && pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    cellm_srv_front_quiesce(s);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    cellm_srv_front_stop(s); /* after the daemon: its last answers pass through the front */
    server_free(s);
}
#endif /* CELLM_HAVE_MHD */
