/*
 * http.c: the HTTP side of the server, on GNU libmicrohttpd.
 *
 * Why libmicrohttpd: it is packaged by Debian (libmicrohttpd-dev), small, C, maintained
 * for 15 years by GNU, and does the parts of HTTP/1.1 that are easy to get wrong
 * (request parsing, keep-alive, chunked transfer encoding of a response of unknown
 * length, limits) while leaving threads and data to the application. Its
 * thread-per-connection mode fits a server whose answers are produced by another
 * thread: a connection simply waits on its request's condition variable, and a stream is
 * a content-reader callback that blocks until the scheduler has published more text.
 * (libevent's evhttp or h2o would need an event loop woken from the scheduler for every
 * token; civetweb and mongoose are not in Debian stable as -dev packages of this shape.)
 *
 * While a connection waits it polls its socket for a hang-up every WAIT_MS, so a client
 * that disconnects is noticed within that time, marked cancelled, and the scheduler
 * frees its slot before the next step.
 *
 * Routes: GET /health (no key needed), GET /metrics, GET /v1/models, GET
 * /v1/models/{id}, POST /v1/completions, POST /v1/chat/completions, POST /tokenize, POST
 * /detokenize. Bodies above --max-body (default CELLM_SERVER_MAX_BODY, 1 MiB) get 413;
 * unknown routes 404; a known route with the wrong method 405; a missing or wrong bearer
 * token (with --api-key) 401. With --cors-origin every response carries
 * Access-Control-Allow-Origin and an OPTIONS preflight is answered 204 (no key needed).
 * Each request is logged in one line when it completes (cellm_srv_log).
 */
#ifdef CELLM_HAVE_MHD
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "srv.h"

#define WAIT_MS 100

/* An over-limit body is read and dropped up to this many bytes before the 413 goes out. */
#define DISCARD_MAX ((size_t)16 << 20)

struct conn {
    char *body;
    size_t len, cap;
    int too_big;
    size_t discarded; /* bytes of a too-large body read and dropped */
    int inflight;     /* counted in s->n_inflight until MHD has sent the response */
    /* the request log line */
    double t0;
    int status, logged;
    char method[16], url[128];
    int n_prompt, n_cached, n_gen;
};

struct stream {
    struct cellm_server *s;
    struct srv_req *r;
    int fd;
    struct srv_stream_pos pos;
    int finished;
    char *buf;
    size_t buf_len, buf_off;
    double t0;
    char url[128];
};

static int client_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* Waits on r->cv for at most WAIT_MS (under s->mu). */
static void wait_a_bit(struct cellm_server *s, struct srv_req *r)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += WAIT_MS * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cv, &s->mu, &ts);
}

static void count_error(struct cellm_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->m.req_errors++;
    pthread_mutex_unlock(&s->mu);
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cors(struct cellm_server *s, struct MHD_Response *resp)
{
    if (!s->o.cors_origin) return;
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->o.cors_origin);
    if (strcmp(s->o.cors_origin, "*")) MHD_add_response_header(resp, "Vary", "Origin");
}

/* The request being answered on this thread (thread per connection), for the log line. */
static _Thread_local struct conn *cur_cn;

static void cn_status(struct MHD_Connection *c, int status)
{
    (void)c;
    if (cur_cn) cur_cn->status = status;
}

/* Queues a response that owns `body` (malloc'd; NULL = out of memory). */
static enum MHD_Result reply(struct cellm_server *s, struct MHD_Connection *c, int status,
                             const char *ctype, char *body)
{
    if (!body) {
        status = 500;
        ctype = "application/json";
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    if (status >= 400) count_error(s);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    cors(s, resp);
    cn_status(c, status);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_error(struct cellm_server *s, struct MHD_Connection *c,
                                   const struct srv_error *e)
{
    char *body = cellm_srv_error_json(e);
    return reply(s, c, e->status, "application/json", body);
}

static enum MHD_Result reply_errorf(struct cellm_server *s, struct MHD_Connection *c, int status,
                                    const char *code, const char *msg)
{
    struct srv_error e;
    cellm_srv_errorf(&e, status, NULL, "%s", msg);
    e.code = code;
    return reply_error(s, c, &e);
}

/* ---- streaming ----------------------------------------------------------------------- */

static int add_event(struct stream *st, char *ev)
{
    if (!ev) return -1;
    size_t n = strlen(ev);
    char *b = realloc(st->buf, st->buf_len + n + 1);
    if (!b) {
        free(ev);
        return -1;
    }
    memcpy(b + st->buf_len, ev, n + 1);
    st->buf = b;
    st->buf_len += n;
    free(ev);
    return 0;
}

/* Waits for new output and turns it into SSE events in st->buf. -1: give up the stream. */
static int fill(struct stream *st)
{
    struct cellm_server *s = st->s;
    struct srv_req *r = st->r;
    st->buf_len = st->buf_off = 0;
    pthread_mutex_lock(&s->mu);
    while (!cellm_srv_stream_pending(r, &st->pos)) {
        wait_a_bit(s, r);
        if (!r->done && client_gone(st->fd)) {
            r->cancelled = 1;
            pthread_cond_signal(&s->sched_cv);
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
    }
    char *ev = cellm_srv_stream_events(s, r, &st->pos);
    int done = r->done, failed = r->failed;
    pthread_mutex_unlock(&s->mu);
    if (failed) count_error(s);
    int rc = add_event(st, ev);
    if (done) st->finished = 1;
    return rc;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    for (;;) {
        if (st->buf_off < st->buf_len) {
            size_t n = st->buf_len - st->buf_off;
            if (n > max) n = max;
            memcpy(buf, st->buf + st->buf_off, n);
            st->buf_off += n;
            return (ssize_t)n;
        }
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (fill(st) < 0 && st->buf_len == 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    struct srv_req *r = st->r;
    pthread_mutex_lock(&st->s->mu);
    int gen = 0;
    for (int k = 0; k < r->p.n; k++)
        gen += r->ch[k].n_ids;
    int status = r->failed ? r->err.status : 200, cached = r->ch[0].n_cached;
    pthread_mutex_unlock(&st->s->mu);
    cellm_srv_log(st->s, "POST", st->url, status, r->p.n_prompt, cached, gen, st->t0);
    cellm_srv_stream_pos_free(&st->pos);
    cellm_srv_req_release(st->s, st->r);
    free(st->buf);
    free(st);
}

/* ---- completions --------------------------------------------------------------------- */

static enum MHD_Result completions(struct cellm_server *s, struct MHD_Connection *c,
                                   struct conn *cn, int chat)
{
    struct srv_req *r;
    struct srv_error e;
    if (cellm_srv_parse(s, chat, cn->body ? cn->body : "", cn->len, &r, &e))
        return reply_error(s, c, &e);
    if (cellm_srv_submit(s, r, &e)) {
        cellm_srv_req_free(r);
        return reply_error(s, c, &e);
    }
    pthread_mutex_lock(&s->mu);
    s->n_inflight++;
    cn->inflight = 1;
    pthread_mutex_unlock(&s->mu);
    int fd = conn_fd(c);
    if (r->p.stream) {
        struct stream *st = calloc(1, sizeof *st);
        if (st && cellm_srv_stream_pos_init(&st->pos, r->p.n)) {
            cellm_srv_stream_pos_free(&st->pos);
            free(st);
            st = NULL;
        }
        struct MHD_Response *resp =
            st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                                   stream_free)
               : NULL;
        if (!resp) {
            if (st) cellm_srv_stream_pos_free(&st->pos);
            free(st);
            cellm_srv_req_release(s, r);
            return reply(s, c, 500, NULL, NULL);
        }
        st->s = s;
        st->r = r;
        st->fd = fd;
        st->t0 = cn->t0;
        snprintf(st->url, sizeof st->url, "%s", cn->url);
        cn->logged = 1; /* stream_free logs it, once the stream has ended */
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        cors(s, resp);
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp); /* stream_free runs when MHD is done with it */
        return ret;
    }
    pthread_mutex_lock(&s->mu);
    while (!r->done) {
        wait_a_bit(s, r);
        if (!r->done && client_gone(fd)) {
            pthread_mutex_unlock(&s->mu);
            cellm_srv_req_release(s, r); /* marks it cancelled */
            return MHD_NO;
        }
    }
    struct srv_error re = r->err;
    int failed = r->failed;
    char *body = failed ? NULL : cellm_srv_response_json(s, r);
    cn->n_prompt = r->p.n_prompt;
    cn->n_cached = r->ch[0].n_cached;
    for (int k = 0; k < r->p.n; k++)
        cn->n_gen += r->ch[k].n_ids;
    pthread_mutex_unlock(&s->mu);
    cellm_srv_req_release(s, r);
    if (failed) return reply_error(s, c, &re);
    return reply(s, c, 200, "application/json", body);
}

/* ---- routing -------------------------------------------------------------------------- */

static int authorized(struct cellm_server *s, struct MHD_Connection *c)
{
    if (!s->o.api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ')
        h++;
    /* compare in time independent of where they differ */
    size_t n = strlen(h), k = strlen(s->o.api_key);
    unsigned diff = (unsigned)(n != k);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)h[i] ^ (unsigned char)s->o.api_key[i < k ? i : 0];
    return diff == 0;
}

static char *models_json(struct cellm_server *s, int one)
{
    cJSON *o = cJSON_CreateObject(), *m = one ? o : cJSON_CreateObject();
    if (!one) {
        cJSON_AddStringToObject(o, "object", "list");
        cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), m);
    }
    cJSON_AddStringToObject(m, "id", s->o.model_name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "cellm");
    cJSON_AddNumberToObject(m, "max_model_len", s->ctx_size);
    cJSON_AddStringToObject(m, "precision", cellm_precision_name(cellm_model_precision(s->model)));
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

static enum MHD_Result route(struct cellm_server *s, struct MHD_Connection *c, struct conn *cn,
                             const char *url, const char *method)
{
    static const struct {
        const char *path, *method;
        int id;
    } routes[] = {
        {"/health", "GET", 0},
        {"/metrics", "GET", 1},
        {"/v1/models", "GET", 2},
        {"/v1/completions", "POST", 3},
        {"/v1/chat/completions", "POST", 4},
        {"/v1/models/", "GET", 5}, /* a prefix: /v1/models/{id} */
        {"/tokenize", "POST", 6},
        {"/detokenize", "POST", 7},
    };
    int id = -1, path_known = 0;
    const char *model_id = NULL;
    if (!strncmp(url, "/v1/models/", 11) && url[11]) model_id = url + 11;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path) || (routes[i].id == 5 && model_id)) {
            path_known = 1;
            if (!strcmp(method, routes[i].method) ||
                (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
                id = routes[i].id;
        }
    pthread_mutex_lock(&s->mu);
    if (id == 3)
        s->m.req_completions++;
    else if (id == 4)
        s->m.req_chat++;
    else
        s->m.req_other++;
    int stopping = s->stopping;
    pthread_mutex_unlock(&s->mu);
    if (path_known && !strcmp(method, "OPTIONS") && s->o.cors_origin) {
        /* a CORS preflight: what the browser may send next */
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        cors(s, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        cn_status(c, 204);
        enum MHD_Result ret = MHD_queue_response(c, 204, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (cn->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %zu bytes",
                 s->o.max_body);
        return reply_errorf(s, c, 413, "request_too_large", msg);
    }
    if (id == 0)
        return reply(s, c, stopping ? 503 : 200, "application/json",
                     strdup(stopping ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
    if (path_known && !authorized(s, c))
        return reply_errorf(s, c, 401, "invalid_api_key",
                            "missing or wrong API key (send 'Authorization: Bearer KEY')");
    if (id < 0) {
        char msg[256];
        if (path_known) {
            snprintf(msg, sizeof msg, "method %.16s is not allowed on %.128s", method, url);
            return reply_errorf(s, c, 405, "method_not_allowed", msg);
        }
        snprintf(msg, sizeof msg, "no route %.16s %.200s", method, url);
        return reply_errorf(s, c, 404, "not_found", msg);
    }
    if (id == 1) return reply(s, c, 200, "text/plain; version=0.0.4", cellm_srv_metrics_text(s));
    if (id == 2) return reply(s, c, 200, "application/json", models_json(s, 0));
    if (id == 5) {
        if (strcmp(model_id, s->o.model_name)) {
            char msg[256];
            snprintf(msg, sizeof msg, "the model '%.200s' does not exist", model_id);
            return reply_errorf(s, c, 404, "model_not_found", msg);
        }
        return reply(s, c, 200, "application/json", models_json(s, 1));
    }
    if (id == 6 || id == 7) {
        char *out = NULL;
        struct srv_error e;
        const char *b = cn->body ? cn->body : "";
        if (id == 6 ? cellm_srv_tokenize(s, b, cn->len, &out, &e)
                    : cellm_srv_detokenize(s, b, cn->len, &out, &e))
            return reply_error(s, c, &e);
        return reply(s, c, 200, "application/json", out);
    }
    return completions(s, c, cn, id == 4);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **con_cls)
{
    (void)version;
    struct cellm_server *s = cls;
    struct conn *cn = *con_cls;
    if (!cn) {
        if (!(cn = calloc(1, sizeof *cn))) return MHD_NO;
        *con_cls = cn;
        cn->t0 = mono_s();
        snprintf(cn->method, sizeof cn->method, "%s", method);
        snprintf(cn->url, sizeof cn->url, "%s", url);
        cur_cn = cn;
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
    cur_cn = cn;
    return route(s, c, cn, url, method);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    struct cellm_server *s = cls;
    struct conn *cn = *con_cls;
    if (cn && cn->inflight) {
        pthread_mutex_lock(&s->mu);
        if (--s->n_inflight == 0) pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (cn) {
        if (!cn->logged && cn->status)
            cellm_srv_log(s, cn->method, cn->url, cn->status, cn->n_prompt, cn->n_cached, cn->n_gen,
                          cn->t0);
        if (cur_cn == cn) cur_cn = NULL;
        free(cn->body);
        free(cn);
    }
    *con_cls = NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void server_free(struct cellm_server *s)
{
    cellm_ctx_free(s->ctx);
    free(s->slots);
    free(s->host_copy);
    free(s->name_copy);
    free(s->key_copy);
    free(s->dir_copy);
    free(s->cors_copy);
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
    if (s->sched_started) cellm_srv_sched_stop(s);
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

enum cellm_status cellm_server_start(struct cellm_model *model, struct cellm_tokenizer *tok,
                                     const struct cellm_server_opts *opts,
                                     struct cellm_server **out, struct cellm_error *err)
{
    *out = NULL;
    struct cellm_server *s = calloc(1, sizeof *s);
    if (!s) return CELLM_ERR_NOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->sched_cv, NULL);
    pthread_cond_init(&s->idle_cv, NULL);
    s->o = *opts;
    s->model = model;
    s->tok = tok;
    int oom = 0;
    s->o.host = s->host_copy = dup_or_null(opts->host ? opts->host : "127.0.0.1", &oom);
    s->o.model_name = s->name_copy =
        dup_or_null(opts->model_name ? opts->model_name : "cellm", &oom);
    s->o.api_key = s->key_copy = dup_or_null(opts->api_key, &oom);
    s->o.model_dir = s->dir_copy = dup_or_null(opts->model_dir, &oom);
    if (oom) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    if (s->o.parallel < 1) s->o.parallel = 1;
    if (s->o.queue < 0) s->o.queue = 0;
    s->vocab = cellm_model_vocab(model);
    int maxc = cellm_model_max_context(model);
    s->ctx_size = opts->ctx_size > 0 ? opts->ctx_size : maxc;
    if (s->ctx_size > maxc)
        return fail(s, err, CELLM_ERR_ARG,
                    "--ctx-size %d is beyond the model's maximum context of %d", s->ctx_size, maxc);

    s->slots = calloc((size_t)s->o.parallel, sizeof *s->slots);
    if (!s->slots) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    if (!s->o.max_body) s->o.max_body = CELLM_SERVER_MAX_BODY;
    s->o.cors_origin = s->cors_copy = dup_or_null(opts->cors_origin, &oom);
    if (oom) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");

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

    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *ai = NULL;
    int gai = getaddrinfo(s->o.host, port, &hints, &ai);
    if (gai) return fail(s, err, CELLM_ERR_ARG, "--host %s: cannot resolve (%d)", s->o.host, gai);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)1000,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!d)
        return fail(s, err, CELLM_ERR_IO, "cannot listen on %s port %d (in use, or not allowed?)",
                    s->o.host, s->o.port);
    s->daemon = d;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
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
    /* fail what is in flight first, so that every connection thread can finish its
     * response (streams end with an error event), then stop accepting and join them */
    cellm_srv_sched_stop(s);
    /* MHD_stop_daemon shuts every socket down at once: give the connections up to 10 s
     * to send what they have (the error event of a stream, a 503) */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&s->mu);
    while (s->n_inflight > 0 && pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    server_free(s);
}
#endif /* CELLM_HAVE_MHD */
