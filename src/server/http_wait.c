/*
 * http_wait.c: what happens to a connection while it is suspended (see http_conn.h).
 *
 * A complete POST body goes to a prep thread (the expensive, attacker-sized work before
 * admission: strict JSON check, parsing, chat template, tokenization that stops at the
 * context size or when its cancel flag is set) and its connection is parked: suspended in
 * libmicrohttpd and put on the waiting list, so that it holds no thread. The prep thread
 * resumes it with a request submitted to the scheduler, a /tokenize body or an error.
 *
 * A request waiting on the scheduler (non-streaming until done, streaming until there is
 * new output) is parked again. The scheduler publishes through cellm_srv_req_wake_locked,
 * which signals the waker thread's condition variable (srv_req.wake); the waker resumes
 * every parked connection that has something to send, and every WAKER_MS it also polls
 * the parked sockets for a hang-up (a client that went away cancels its request or its
 * tokenization) and shuts down sockets that have not delivered a complete request within
 * --request-timeout (slow headers or bodies).
 *
 * A streamed response is a libmicrohttpd content reader: when called it turns whatever
 * output the request has that the client has not seen into SSE events
 * (cellm_srv_stream_events), or parks the connection until there is some.
 */
#ifdef CELLM_HAVE_MHD
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "adapt.h"
#include "http_conn.h"

static int client_gone(int fd)
{
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* ---- the waiting list ---------------------------------------------------------------- */

void cellm_srv_park_locked(struct cellm_server *s, struct srv_conn *cn, enum srv_wkind wk)
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

void cellm_srv_unlist_locked(struct cellm_server *s, struct srv_conn *cn)
{
    struct srv_http *h = s->http;
    if (!cn->waiting) return;
    if (cn->wprev)
        cn->wprev->wnext = cn->wnext;
    else
        h->wait_head = cn->wnext;
    if (cn->wnext) cn->wnext->wprev = cn->wprev;
    cn->waiting = 0;
}

void cellm_srv_unpark_locked(struct cellm_server *s, struct srv_conn *cn)
{
    if (!cn->waiting) return;
    cellm_srv_unlist_locked(s, cn);
    MHD_resume_connection(cn->c);
}

struct srv_stream {
    struct cellm_server *s;
    struct srv_req *r;
    struct srv_conn *cn; /* valid while the stream runs (not in stream_free) */
    struct srv_stream_pos pos;
    int finished;
    char *buf;
    size_t buf_len, buf_off;
};

/* Under s->mu: does a parked connection have something to do? */
static int ready_locked(const struct srv_conn *cn)
{
    if (cn->wk == W_PREP) return 0;
    if (cn->wk == W_DONE) return cn->r && cn->r->done;
    return cn->st && cellm_srv_stream_pending(cn->st->r, &cn->st->pos);
}

static void reap_slow(struct cellm_server *s)
{
    struct srv_http *h = s->http;
    double t = cellm_srv_now(), lim = (double)s->o.request_timeout;
    pthread_mutex_lock(&h->sock_mu);
    for (struct srv_sock *k = h->socks; k; k = k->next)
        if (!k->busy && !k->reaped && (t - k->t0 > lim || (k->over && t - k->t0 > OVER_GRACE_S))) {
            /* MHD sees the end of the stream and closes it; the fd stays valid until
             * the CLOSED notification, which takes sock_mu first */
            if (k->pipe) atomic_store(&k->pipe->reaped, 1); /* the front answers 408 */
            shutdown(k->fd, SHUT_RDWR);
            k->reaped = 1;
            h->reaped++;
        }
    pthread_mutex_unlock(&h->sock_mu);
}

void *cellm_srv_waker_main(void *arg)
{
    struct cellm_server *s = arg;
    struct srv_http *h = s->http;
    double last_poll = 0;
    pthread_mutex_lock(&s->mu);
    while (!h->waker_stop) {
        double t = cellm_srv_now();
        int poll_now = t - last_poll >= WAKER_MS * 1e-3;
        for (struct srv_conn *cn = h->wait_head, *nx; cn; cn = nx) {
            nx = cn->wnext;
            if (ready_locked(cn)) {
                cellm_srv_unpark_locked(s, cn);
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
                    cellm_srv_unpark_locked(s, cn);
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

/* The job of one body; 0, or e set. A completion is submitted (r set). */
static int prep_one(struct cellm_server *s, struct srv_conn *cn, struct srv_req **r,
                    struct srv_error *e)
{
    const char *b = cn->body ? cn->body : "";
    switch (cn->job) {
    case J_TOKENIZE:
        return cellm_srv_tokenize(s, b, cn->len, &cn->cancel, &cn->out, e);
    case J_DETOKENIZE:
        return cellm_srv_detokenize(s, b, cn->len, &cn->out, e);
    case J_COUNT_TOKENS:
        return cellm_srv_messages_count(s, b, cn->len, &cn->cancel, &cn->out, e);
    case J_RESPONSES:
    case J_MESSAGES:
        if (cellm_srv_adapt_parse(s, cn->job == J_MESSAGES ? SRV_API_MESSAGES : SRV_API_RESPONSES,
                                  b, cn->len, &cn->cancel, &s->http->wake_cv, r, e))
            return -1;
        break;
    case J_COMPLETION:
    case J_CHAT:
        if (cellm_srv_parse_opts(s, cn->job == J_CHAT, b, cn->len, &cn->cancel, &s->http->wake_cv,
                                 r, e))
            return -1;
        break;
    }
    if (cellm_srv_submit(s, *r, e)) {
        cellm_srv_req_free(*r);
        *r = NULL;
        return -1;
    }
    return 0;
}

void *cellm_srv_prep_main(void *arg)
{
    struct cellm_server *s = arg;
    struct srv_http *h = s->http;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!h->q_head && !h->prep_stop)
            pthread_cond_wait(&h->prep_cv, &s->mu);
        if (!h->q_head) break;
        struct srv_conn *cn = h->q_head;
        h->q_head = cn->qnext;
        if (!h->q_head) h->q_tail = NULL;
        h->q_len--;
        int stopping = h->prep_stop || h->draining;
        pthread_mutex_unlock(&s->mu);

        struct srv_req *r = NULL;
        struct srv_error e;
        memset(&e, 0, sizeof e);
        int rc = -1;
        if (stopping || atomic_load(&cn->cancel))
            cellm_srv_errorf(&e, 503, NULL, "the server is shutting down");
        else
            rc = prep_one(s, cn, &r, &e);
        free(cn->body); /* the body is not needed any more: memory goes with the work */
        cn->body = NULL;
        cn->len = cn->cap = 0;

        pthread_mutex_lock(&s->mu);
        if (rc) {
            cn->failed = 1;
            cn->err = e;
            if (cn->gone) h->prep_cancelled++;
        } else if (r) {
            cn->r = r;
            s->n_inflight++;
            cn->inflight = 1;
        }
        cn->state = C_READY;
        cellm_srv_unpark_locked(s, cn);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- streaming ----------------------------------------------------------------------- */

static int add_event(struct srv_stream *st, char *ev)
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
static int fill(struct srv_stream *st)
{
    struct cellm_server *s = st->s;
    struct srv_req *r = st->r;
    struct srv_conn *cn = st->cn;
    st->buf_len = st->buf_off = 0;
    pthread_mutex_lock(&s->mu);
    if (cn->gone) {
        pthread_mutex_unlock(&s->mu);
        return -1;
    }
    if (!cellm_srv_stream_pending(r, &st->pos)) {
        cellm_srv_park_locked(s, cn, W_OUTPUT);
        pthread_mutex_unlock(&s->mu);
        return 0;
    }
    char *ev = cellm_srv_stream_events(s, r, &st->pos);
    int done = r->done, failed = r->failed;
    /* for the log line, written when the request completes */
    cn->n_cached = r->ch[0].n_cached;
    cn->n_gen = 0;
    for (int k = 0; k < r->p.n; k++)
        cn->n_gen += r->ch[k].n_ids;
    if (failed) cn->status = r->err.status;
    pthread_mutex_unlock(&s->mu);
    if (failed) cellm_srv_count_error(s);
    int rc = add_event(st, ev);
    if (done) st->finished = 1;
    return rc < 0 ? -1 : 1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct srv_stream *st = cls;
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

/* When MHD is done with the response: the connection may be gone already (st->cn). */
static void stream_free(void *cls)
{
    struct srv_stream *st = cls;
    cellm_srv_stream_pos_free(&st->pos);
    cellm_srv_req_release(st->s, st->r);
    free(st->buf);
    free(st);
}

struct MHD_Response *cellm_srv_stream_response(struct cellm_server *s, struct srv_conn *cn)
{
    struct srv_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (cellm_srv_stream_pos_init(&st->pos, cn->r->p.n)) {
        cellm_srv_stream_pos_free(&st->pos);
        free(st);
        return NULL;
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
                                                                  stream_read, st, stream_free);
    if (!resp) {
        cellm_srv_stream_pos_free(&st->pos);
        free(st);
        return NULL;
    }
    st->s = s;
    st->r = cn->r;
    st->cn = cn;
    cn->r = NULL; /* the stream owns the reference now */
    cn->st = st;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    cellm_srv_cors(s, resp);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return resp;
}
#endif /* CELLM_HAVE_MHD */
