/*
 * http.c: the HTTP side of the server, on GNU libmicrohttpd.
 *
 * Why libmicrohttpd: it is packaged by Debian (libmicrohttpd-dev), small, C, maintained
 * for 15 years by GNU, and does the parts of HTTP/1.1 that are easy to get wrong
 * (request parsing, keep-alive, chunked transfer encoding of a response of unknown
 * length, limits) while leaving threads and data to the application. It also has what a
 * server facing hostile clients needs without a rewrite: an epoll event loop run by a
 * small pool of threads (an idle or slow connection costs a socket and a few KiB, not a
 * thread), per-address connection limits, and suspend/resume, so a request waiting on the
 * scheduler holds no thread either. (libevent's evhttp would need the same plumbing and
 * gives less control over request framing; h2o and civetweb are not packaged in this
 * shape.)
 *
 * Threads and where work runs:
 *   - http_threads event-loop threads (MHD's pool, THREAD_STACK bytes of stack each) only
 *     read requests and write responses; nothing in them waits or computes for long.
 *   - prep_threads "prep" threads (PREP_STACK each) parse and tokenize request bodies (and
 *     render chat templates): the expensive, attacker-sized part before admission. Their
 *     queue is bounded (prep_queue); beyond it a request gets 503 with Retry-After at once.
 *     Tokenization stops once the prompt exceeds the context, and when its client goes away
 *     or the server stops (a cancel flag polled by the tokenizer and its regex engine).
 *   - one waker thread resumes suspended connections when their request has news (the
 *     scheduler signals it through srv_req.wake), notices clients that hang up while
 *     suspended (and cancels their work), and closes connections that have not delivered a
 *     complete request within request_timeout (slow headers or bodies).
 *
 * Strictness: more than one Content-Length, Content-Length with Transfer-Encoding, or a
 * Transfer-Encoding other than chunked is refused (400/501) and the connection closed, so a
 * body can never be read as a second request; POST bodies must be application/json (a
 * cross-site form post is refused); bound to loopback without an API key, the Host header
 * must name loopback (DNS rebinding). Every error this file produces has a JSON body.
 *
 * Routes: GET /health (no key needed), GET /metrics, GET /v1/models, POST
 * /v1/completions, POST /v1/chat/completions. Bodies above CELLM_SERVER_MAX_BODY (1 MiB)
 * get 413; unknown routes 404; a known route with the wrong method 405; a missing or
 * wrong bearer token (with --api-key) 401.
 */
#ifdef CELLM_HAVE_MHD
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "http_guard.h"
#include "srv.h"

/* How often suspended connections are checked for a hang-up, and timeouts enforced. */
#define WAKER_MS 50

/* Stack sizes of the threads this file starts (stated, not inherited from ulimit -s):
 * the event loop runs no parser or regex; prep threads run the tokenizer, whose regex
 * engine measures the stack it is given and stops with an error before its end. */
#define THREAD_STACK ((size_t)1 << 20)
#define PREP_STACK ((size_t)8 << 20)

/* An over-limit body is read and dropped up to this many bytes before the 413 goes out. */
#define DISCARD_MAX ((size_t)16 << 20)

enum cstate {
    C_READ,   /* receiving the request */
    C_PREP,   /* queued for or in a prep thread (suspended) */
    C_READY,  /* prep done: r or err set */
    C_WAIT,   /* non-streaming, waiting for the scheduler (suspended) */
    C_STREAM, /* streaming response queued */
};

/* What a suspended connection waits for (on the waiting list). */
enum wkind { W_PREP, W_DONE, W_OUTPUT };

struct stream;

/* One socket (MHD's socket context): for the request deadline. */
struct sock {
    int fd;
    int busy;   /* a complete request is being answered */
    int reaped; /* shut down by the deadline */
    double t0;  /* connected, or the previous response ended */
    struct sock *prev, *next;
};

/* One request (MHD's con_cls). */
struct conn {
    struct MHD_Connection *c;
    struct sock *sk;
    char *body;
    size_t len, cap;
    int too_big;
    size_t discarded; /* bytes of a too-large body read and dropped */
    int inflight;     /* counted in s->n_inflight until MHD has sent the response */
    int chat, fd;
    enum cstate state;
    struct srv_req *r; /* after prep, non-streaming: our reference */
    struct srv_error err;
    int failed;         /* prep failed: err */
    int gone;           /* the client hung up while suspended */
    _Atomic int cancel; /* stops this request's tokenization */
    /* waiting list (under s->mu) */
    enum wkind wk;
    int waiting;
    struct stream *st; /* W_OUTPUT */
    struct conn *wprev, *wnext, *qnext;
};

struct stream {
    struct cellm_server *s;
    struct srv_req *r;
    struct conn *cn;
    size_t sent_text;
    int sent_ids, role_sent, finished;
    char *buf;
    size_t buf_len, buf_off;
};

struct srv_http {
    /* under s->mu */
    struct conn *wait_head;       /* suspended connections */
    struct conn *q_head, *q_tail; /* prep queue */
    int q_len, prep_stop, waker_stop, draining;
    pthread_cond_t prep_cv, wake_cv;
    pthread_t *prep;
    int n_prep;
    pthread_t waker;
    int waker_started;
    /* sockets, under sock_mu (never taken with s->mu held the other way round) */
    pthread_mutex_t sock_mu;
    struct sock *socks;
    unsigned long long reaped, prep_rejected;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

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

static void count_error(struct cellm_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->m.req_errors++;
    pthread_mutex_unlock(&s->mu);
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
    if (status >= 400) count_error(s);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", ctype);
    if (status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (close) MHD_add_response_header(resp, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply(struct cellm_server *s, struct MHD_Connection *c, int status,
                             const char *ctype, char *body)
{
    return reply_ex(s, c, status, ctype, body, 0);
}

static enum MHD_Result reply_error(struct cellm_server *s, struct MHD_Connection *c,
                                   const struct srv_error *e)
{
    char *body = cellm_srv_error_json(e);
    return reply(s, c, e->status, "application/json", body);
}

static enum MHD_Result reply_errorf_ex(struct cellm_server *s, struct MHD_Connection *c, int status,
                                       const char *code, int close, const char *msg)
{
    struct srv_error e;
    cellm_srv_errorf(&e, status, NULL, "%s", msg);
    e.code = code;
    return reply_ex(s, c, status, "application/json", cellm_srv_error_json(&e), close);
}

static enum MHD_Result reply_errorf(struct cellm_server *s, struct MHD_Connection *c, int status,
                                    const char *code, const char *msg)
{
    return reply_errorf_ex(s, c, status, code, 0, msg);
}

/* ---- the waiting list ---------------------------------------------------------------- */

/* Under s->mu: parks cn (suspended) until the waker or a prep thread resumes it. */
static void park_locked(struct cellm_server *s, struct conn *cn, enum wkind wk)
{
    struct srv_http *h = s->http;
    cn->wk = wk;
    cn->waiting = 1;
    cn->wprev = NULL;
    cn->wnext = h->wait_head;
    if (h->wait_head) h->wait_head->wprev = cn;
    h->wait_head = cn;
    MHD_suspend_connection(cn->c);
    pthread_cond_signal(&h->wake_cv);
}

/* Under s->mu: takes cn off the list and resumes it. */
static void unpark_locked(struct cellm_server *s, struct conn *cn)
{
    struct srv_http *h = s->http;
    if (!cn->waiting) return;
    if (cn->wprev)
        cn->wprev->wnext = cn->wnext;
    else
        h->wait_head = cn->wnext;
    if (cn->wnext) cn->wnext->wprev = cn->wprev;
    cn->waiting = 0;
    MHD_resume_connection(cn->c);
}

/* Under s->mu: does a parked connection have something to do? */
static int ready_locked(const struct conn *cn)
{
    const struct srv_req *r = cn->wk == W_DONE ? cn->r : cn->st ? cn->st->r : NULL;
    if (cn->wk == W_PREP || !r) return 0;
    if (r->done) return 1;
    if (cn->wk == W_DONE) return 0;
    const struct stream *st = cn->st;
    return r->text_len != st->sent_text || r->n_ids != st->sent_ids ||
           (r->p.chat && !st->role_sent);
}

static void reap_slow(struct cellm_server *s)
{
    struct srv_http *h = s->http;
    double t = now_s(), lim = (double)s->o.request_timeout;
    pthread_mutex_lock(&h->sock_mu);
    for (struct sock *k = h->socks; k; k = k->next)
        if (!k->busy && !k->reaped && t - k->t0 > lim) {
            /* MHD sees the end of the stream and closes it; the fd stays valid until
             * the CLOSED notification, which takes sock_mu first */
            shutdown(k->fd, SHUT_RDWR);
            k->reaped = 1;
            h->reaped++;
        }
    pthread_mutex_unlock(&h->sock_mu);
}

static void *waker_main(void *arg)
{
    struct cellm_server *s = arg;
    struct srv_http *h = s->http;
    double last_poll = 0;
    pthread_mutex_lock(&s->mu);
    while (!h->waker_stop) {
        double t = now_s();
        int poll_now = t - last_poll >= WAKER_MS * 1e-3;
        for (struct conn *cn = h->wait_head, *nx; cn; cn = nx) {
            nx = cn->wnext;
            if (ready_locked(cn)) {
                unpark_locked(s, cn);
            } else if (poll_now && client_gone(cn->fd)) {
                cn->gone = 1;
                if (cn->wk == W_PREP) {
                    atomic_store(&cn->cancel, 1); /* the prep thread resumes it */
                } else {
                    struct srv_req *r = cn->wk == W_DONE ? cn->r : cn->st->r;
                    if (!r->done) {
                        r->cancelled = 1;
                        pthread_cond_signal(&s->sched_cv);
                    }
                    unpark_locked(s, cn);
                }
            }
        }
        if (poll_now) {
            last_poll = t;
            pthread_mutex_unlock(&s->mu);
            reap_slow(s);
            pthread_mutex_lock(&s->mu);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAKER_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->wake_cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- prep: parse and tokenize off the event loop ---------------------------------------- */

static void *prep_main(void *arg)
{
    struct cellm_server *s = arg;
    struct srv_http *h = s->http;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!h->q_head && !h->prep_stop)
            pthread_cond_wait(&h->prep_cv, &s->mu);
        if (!h->q_head) break;
        struct conn *cn = h->q_head;
        h->q_head = cn->qnext;
        if (!h->q_head) h->q_tail = NULL;
        h->q_len--;
        int stopping = h->prep_stop || h->draining;
        pthread_mutex_unlock(&s->mu);

        struct srv_req *r = NULL;
        struct srv_error e;
        memset(&e, 0, sizeof e);
        int rc = -1;
        if (stopping || atomic_load(&cn->cancel)) {
            cellm_srv_errorf(&e, 503, NULL, "the server is shutting down");
        } else {
            rc = cellm_srv_parse_opts(s, cn->chat, cn->body ? cn->body : "", cn->len, &cn->cancel,
                                      &h->wake_cv, &r, &e);
            if (!rc && cellm_srv_submit(s, r, &e)) {
                cellm_srv_req_free(r);
                r = NULL;
                rc = -1;
            }
        }
        free(cn->body); /* the body is not needed any more: memory goes with the work */
        cn->body = NULL;
        cn->len = cn->cap = 0;

        pthread_mutex_lock(&s->mu);
        if (rc) {
            cn->failed = 1;
            cn->err = e;
        } else {
            cn->r = r;
            s->n_inflight++;
            cn->inflight = 1;
        }
        cn->state = C_READY;
        unpark_locked(s, cn);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
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

/* Turns new output into SSE events in st->buf without waiting. Returns 1 when events are
 * ready, 0 when there was nothing new (then the connection is parked: suspended until
 * there is), -1 to give the stream up. */
static int fill(struct stream *st)
{
    struct cellm_server *s = st->s;
    struct srv_req *r = st->r;
    int chat = r->p.chat;
    st->buf_len = st->buf_off = 0;
    pthread_mutex_lock(&s->mu);
    if (st->cn->gone) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    if (!r->done && r->text_len == st->sent_text && r->n_ids == st->sent_ids &&
        (st->role_sent || !chat)) {
        park_locked(s, st->cn, W_OUTPUT);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    size_t tn = r->text_len - st->sent_text;
    int in = r->n_ids - st->sent_ids;
    char *text = tn ? strndup(r->text + st->sent_text, tn) : NULL;
    int32_t *ids = in ? malloc((size_t)in * sizeof *ids) : NULL;
    if (ids) memcpy(ids, r->ids + st->sent_ids, (size_t)in * sizeof *ids);
    int done = r->done, failed = r->failed;
    struct srv_error err = r->err;
    const char *finish = r->finish;
    pthread_mutex_unlock(&s->mu);
    int rc = 0;
    if ((tn && !text) || (in && !ids)) rc = -1;
    if (!rc && chat && !st->role_sent) {
        rc = add_event(st, cellm_srv_chunk(s, r, 1, "", 0, NULL, 0, NULL));
        st->role_sent = 1;
    }
    if (!rc && (tn || (in && r->p.return_ids)))
        rc = add_event(st, cellm_srv_chunk(s, r, 0, text, tn, ids, in, NULL));
    st->sent_text += tn;
    st->sent_ids += in;
    if (!rc && done) {
        if (failed) {
            char *j = cellm_srv_error_json(&err);
            if (j) {
                size_t n = strlen(j);
                char *ev = malloc(n + 9);
                if (ev) snprintf(ev, n + 9, "data: %s\n\n", j);
                free(j);
                rc = add_event(st, ev);
            }
            count_error(s);
        } else {
            rc = add_event(st, cellm_srv_chunk(s, r, 0, "", 0, NULL, 0, finish));
            if (!rc && r->p.include_usage) rc = add_event(st, cellm_srv_usage_chunk(s, r));
            if (!rc) rc = add_event(st, strdup("data: [DONE]\n\n"));
        }
        st->finished = 1;
    }
    free(text);
    free(ids);
    return rc < 0 ? -1 : 1;
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
        int rc = fill(st);
        if (rc < 0 && st->buf_len == 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (rc == 0) return 0; /* suspended; called again once resumed */
    }
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    cellm_srv_req_release(st->s, st->r);
    free(st->buf);
    free(st);
}

/* ---- completions --------------------------------------------------------------------- */

/* The body is complete: hand it to a prep thread, or refuse at once when they are busy. */
static enum MHD_Result completions_start(struct cellm_server *s, struct conn *cn, int chat)
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
    cn->chat = chat;
    cn->state = C_PREP;
    cn->qnext = NULL;
    if (h->q_tail)
        h->q_tail->qnext = cn;
    else
        h->q_head = cn;
    h->q_tail = cn;
    h->q_len++;
    park_locked(s, cn, W_PREP);
    pthread_cond_signal(&h->prep_cv);
    pthread_mutex_unlock(&s->mu);
    return MHD_YES;
}

/* Resumed after prep (C_READY) or after the scheduler finished (C_WAIT). */
static enum MHD_Result completions_next(struct cellm_server *s, struct conn *cn)
{
    struct MHD_Connection *c = cn->c;
    if (cn->gone) {
        /* no answer to send: dropping the connection frees it; our reference goes in
         * completed() */
        return MHD_NO;
    }
    if (cn->state == C_READY && cn->failed) return reply_error(s, c, &cn->err);
    struct srv_req *r = cn->r;
    if (cn->state == C_READY && r->p.stream) {
        struct stream *st = calloc(1, sizeof *st);
        struct MHD_Response *resp =
            st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                                   stream_free)
               : NULL;
        if (!resp) {
            free(st);
            return reply(s, c, 500, NULL, NULL);
        }
        st->s = s;
        st->r = r;
        st->cn = cn;
        cn->r = NULL; /* the stream owns the reference now */
        cn->st = st;
        cn->state = C_STREAM;
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp); /* stream_free runs when MHD is done with it */
        return ret;
    }
    pthread_mutex_lock(&s->mu);
    if (!r->done) {
        cn->state = C_WAIT;
        park_locked(s, cn, W_DONE);
        pthread_mutex_unlock(&s->mu);
        return MHD_YES;
    }
    struct srv_error re = r->err;
    int failed = r->failed;
    char *body = failed ? NULL : cellm_srv_response_json(s, r);
    pthread_mutex_unlock(&s->mu);
    if (failed) return reply_error(s, c, &re);
    return reply(s, c, 200, "application/json", body);
}

/* ---- routing -------------------------------------------------------------------------- */

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
    };
    int id = -1, path_known = 0;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (!strcmp(url, routes[i].path)) {
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
    int stopping = s->stopping || s->http->draining;
    pthread_mutex_unlock(&s->mu);
    if (cn->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "the request body is larger than the limit of %d bytes",
                 CELLM_SERVER_MAX_BODY);
        return reply_errorf(s, c, 413, "request_too_large", msg);
    }
    if (!cellm_srv_host_allowed(s, c))
        return reply_errorf(s, c, 403, "host_not_allowed",
                            "the Host header does not name this loopback server (a page on "
                            "another site may be reaching it through DNS rebinding); use "
                            "localhost or 127.0.0.1, an API key, or --allowed-hosts");
    if (id == 0)
        return reply(s, c, stopping ? 503 : 200, "application/json",
                     strdup(stopping ? "{\"status\":\"shutting down\"}" : "{\"status\":\"ok\"}"));
    if (path_known && !cellm_srv_authorized(s, c))
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
    if (id == 2) return reply(s, c, 200, "application/json", cellm_srv_models_json(s));
    /* a browser sends a cross-site form or text/plain POST without asking first (no CORS
     * preflight); application/json it cannot send that way */
    if (!cellm_srv_json_content_type(c))
        return reply_errorf(s, c, 415, "unsupported_media_type",
                            "the request body must be sent with 'Content-Type: "
                            "application/json'");
    return completions_start(s, cn, id == 4);
}

static struct sock *sock_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
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
        cn->c = c;
        cn->fd = conn_fd(c);
        cn->sk = sock_of(c);
        int status;
        const char *msg;
        if (cellm_srv_framing_error(c, &status, &msg))
            return reply_errorf_ex(s, c, status, "bad_request_framing", 1, msg);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > CELLM_SERVER_MAX_BODY) {
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
        if (cn->len + n > CELLM_SERVER_MAX_BODY) {
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
    return completions_next(s, cn);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct cellm_server *s = cls;
    struct conn *cn = *con_cls;
    struct sock *sk = sock_of(c);
    if (sk) {
        pthread_mutex_lock(&s->http->sock_mu);
        sk->busy = 0;
        sk->t0 = now_s(); /* the next request on this connection has its own deadline */
        pthread_mutex_unlock(&s->http->sock_mu);
    }
    if (cn) {
        pthread_mutex_lock(&s->mu);
        if (cn->waiting) { /* closed while parked (the daemon stopping) */
            struct srv_http *h = s->http;
            if (cn->wprev)
                cn->wprev->wnext = cn->wnext;
            else
                h->wait_head = cn->wnext;
            if (cn->wnext) cn->wnext->wprev = cn->wprev;
            cn->waiting = 0;
        }
        if (cn->inflight && --s->n_inflight == 0) pthread_cond_broadcast(&s->idle_cv);
        pthread_mutex_unlock(&s->mu);
        if (cn->r) cellm_srv_req_release(s, cn->r); /* cancels it when not done */
        free(cn->body);
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
        struct sock *k = calloc(1, sizeof *k);
        *socket_context = k;
        if (!k) return;
        k->fd = conn_fd(c);
        k->t0 = now_s();
        pthread_mutex_lock(&h->sock_mu);
        k->next = h->socks;
        if (h->socks) h->socks->prev = k;
        h->socks = k;
        pthread_mutex_unlock(&h->sock_mu);
        return;
    }
    struct sock *k = *socket_context;
    if (!k) return;
    pthread_mutex_lock(&h->sock_mu);
    if (k->prev)
        k->prev->next = k->next;
    else
        h->socks = k->next;
    if (k->next) k->next->prev = k->prev;
    pthread_mutex_unlock(&h->sock_mu);
    free(k);
    *socket_context = NULL;
}

/* MHD's own answers (a malformed request line, headers too large) carry an HTML body;
 * the URI log callback runs before any of them, but cannot change them. What this file
 * can do is keep every answer of its own JSON; see tests/server/README.md. */

/* ---- lifecycle ------------------------------------------------------------------------ */

static void http_stop_threads(struct cellm_server *s)
{
    struct srv_http *h = s->http;
    if (!h) return;
    pthread_mutex_lock(&s->mu);
    h->prep_stop = 1;
    for (struct conn *cn = h->q_head; cn; cn = cn->qnext)
        atomic_store(&cn->cancel, 1);
    for (struct conn *cn = h->wait_head; cn; cn = cn->wnext)
        if (cn->wk == W_PREP) atomic_store(&cn->cancel, 1);
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
    free(s->slots);
    free(s->eos);
    free(s->host_copy);
    free(s->name_copy);
    free(s->key_copy);
    free(s->dir_copy);
    if (s->http) {
        free(s->http->prep);
        free(s->o.allowed_hosts ? (void *)s->o.allowed_hosts : NULL);
        pthread_cond_destroy(&s->http->prep_cv);
        pthread_cond_destroy(&s->http->wake_cv);
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
    if (oom) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    if (opts->api_key && !*opts->api_key)
        return fail(s, err, CELLM_ERR_ARG,
                    "the API key is empty (an empty key would turn authentication off; omit "
                    "it to serve without one)");
    if (s->o.parallel < 1) s->o.parallel = 1;
    if (s->o.queue < 0) s->o.queue = 0;
    cellm_srv_conn_defaults(&s->o);
    s->vocab = cellm_model_vocab(model);
    int maxc = cellm_model_max_context(model);
    s->ctx_size = opts->ctx_size > 0 ? opts->ctx_size : maxc;
    if (s->ctx_size > maxc)
        return fail(s, err, CELLM_ERR_ARG,
                    "--ctx-size %d is beyond the model's maximum context of %d", s->ctx_size, maxc);

    /* end of sequence: the model's ids and the tokenizer's */
    int n1 = 0, n2 = 0;
    const int32_t *e1 = cellm_model_eos(model, &n1);
    const int32_t *e2 = tok ? cellm_tokenizer_eos(tok, &n2) : NULL;
    s->eos = malloc((size_t)(n1 + n2 + 1) * sizeof *s->eos);
    s->slots = calloc((size_t)s->o.parallel, sizeof *s->slots);
    h->prep = calloc((size_t)s->o.prep_threads, sizeof *h->prep);
    if (!s->eos || !s->slots || !h->prep) return fail(s, err, CELLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n1 + n2; i++) {
        int32_t id = i < n1 ? e1[i] : e2[i - n1];
        int dup = 0;
        for (int k = 0; k < s->n_eos; k++)
            dup |= s->eos[k] == id;
        if (!dup) s->eos[s->n_eos++] = id;
    }

    s->sp_default = cellm_sampler_params_default();
    if (s->o.model_dir) {
        struct cellm_error ce;
        if (cellm_sampler_params_from_dir(s->o.model_dir, &s->sp_default, &ce))
            return fail(s, err, CELLM_ERR_FORMAT, "%s", ce.msg);
    }

    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = s->o.parallel;
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
        if (start_thread(&h->prep[i], PREP_STACK, prep_main, s))
            return fail(s, err, CELLM_ERR_NOMEM, "cannot start the request threads");
        h->n_prep = i + 1;
    }
    if (start_thread(&h->waker, THREAD_STACK, waker_main, s))
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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, handle, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_NOTIFY_CONNECTION, notify_conn, s,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)s->o.http_threads, MHD_OPTION_THREAD_STACK_SIZE,
        THREAD_STACK, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->o.per_client,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.idle_timeout, MHD_OPTION_END);
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
    struct srv_http *h = s->http;
    /* drain: new requests get 503 (and /health says so) while those in flight finish,
     * for up to shutdown_timeout seconds */
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += s->o.shutdown_timeout;
    pthread_mutex_lock(&s->mu);
    h->draining = 1;
    for (struct conn *cn = h->q_head; cn; cn = cn->qnext)
        atomic_store(&cn->cancel, 1);
    for (struct conn *cn = h->wait_head; cn; cn = cn->wnext)
        if (cn->wk == W_PREP) atomic_store(&cn->cancel, 1);
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
    for (struct conn *cn = h->wait_head, *nx; cn; cn = nx) {
        nx = cn->wnext;
        unpark_locked(s, cn); /* every request is done now */
    }
    while (s->n_inflight > 0 && pthread_cond_timedwait(&s->idle_cv, &s->mu, &dl) == 0)
        ;
    pthread_mutex_unlock(&s->mu);
    if (s->daemon) MHD_stop_daemon(s->daemon);
    server_free(s);
}
#endif /* CELLM_HAVE_MHD */
