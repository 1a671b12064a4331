/*
 * http_front.c: accept, relay, and libmicrohttpd's own answers made JSON (see
 * http_front.h for why).
 */
#ifdef CELLM_HAVE_MHD
#include "http_front.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <strings.h>
#include <stdint.h>

#include <microhttpd.h>

#include "http_conn.h"
#include "http_frame.h"

/* One read's worth; the front thread's only buffer for data it can pass on at once. */
#define SCRATCH ((size_t)64 << 10)
/* libmicrohttpd's response heads are a few hundred bytes; its own error responses are
 * kept to this many bytes to tell their cause. */
#define HEAD_MAX 16384
#define NOT_HTTP "not an HTTP request: a request line begins with a method such as GET or POST"

/* The response parser (libmicrohttpd's output, which is trusted to be well formed). */
enum rstate {
    RS_HEAD,     /* reading a response head */
    RS_BODY,     /* rn bytes of body left */
    RS_EOF,      /* body until the connection closes */
    RS_CH_SIZE,  /* a chunk-size line */
    RS_CH_DATA,  /* rn bytes of chunk data left, then CRLF */
    RS_CH_CRLF,  /* rn bytes of the CRLF after chunk data */
    RS_CH_TRAIL, /* trailer lines up to an empty one */
    RS_OWN,      /* libmicrohttpd's own answer: kept until it closes, then replaced */
};

struct fconn;
struct fend {
    struct fconn *c;
    int peer; /* 0: the client socket, 1: our end of the pair */
};

struct fconn {
    int cfd, pfd;
    struct srv_pipe *pipe;
    struct fend ec, ep;
    double t0;
    /* client -> daemon: what the pair did not take yet */
    char *up;
    size_t up_len, up_off;
    int c_eof;             /* the client finished sending */
    struct srv_reqframe q; /* where each request of the client begins (http_frame.h) */
    int said_close;        /* the last response said Connection: close */
    int p_gone;            /* writing to the pair failed: the daemon closed its end */
    int bad;               /* request nreq is not HTTP: answered 400 once those before it are */
    /* daemon -> client */
    char *down;
    size_t down_len, down_off;
    int closing;   /* send down, then close */
    int lingering; /* sent everything and shut down writing: reading what the client still
                      sends until it closes or linger_until, so that the close does not
                      reset the connection before the client read the answer */
    double linger_until;
    enum rstate rs;
    size_t rn;
    char *head; /* RS_HEAD / RS_OWN bytes, or a chunk-size line */
    size_t head_len;
    int own_status;
    unsigned nresp;          /* responses (not 1xx) parsed */
    int line_cr;             /* RS_CH_SIZE / RS_CH_TRAIL: length of the current line */
    uint32_t mask_c, mask_p; /* what each socket waits for in the epoll set (0: not in it) */
    int dead;                /* closed; freed after the current batch of events */
    struct fconn *prev, *next;
};

struct srv_front {
    struct cellm_server *s;
    int lfd, efd, wfd; /* listening socket, epoll, eventfd to stop */
    pthread_t th;
    int started;
    _Atomic int stop;
    pthread_mutex_t add_mu; /* MHD_add_connection against the daemon's stop */
    int no_add;             /* under add_mu: the daemon is stopping */
    _Atomic int quiet;      /* stopping: no answers invented for the daemon's closes */
    int n;
    int listening; /* the listening socket is in the epoll set */
    double resume_at;
    int n_linger;
    struct fconn *conns;
    struct fconn *dead; /* closed in this batch of events (through next) */
    char *scratch;
};

/* ---- the pipes' table --------------------------------------------------------------- */

static size_t pipe_bucket(int fd)
{
    return (size_t)fd % CLIENT_BUCKETS;
}

/* Under sock_mu: newest first, so a reused fd finds the live connection. */
static void pipe_insert_locked(struct srv_http *h, struct srv_pipe *p)
{
    size_t b = pipe_bucket(p->fd);
    p->tnext = h->pipes[b];
    h->pipes[b] = p;
}

/* Under sock_mu: 1 when p was still in the table. */
static int pipe_remove_locked(struct srv_http *h, struct srv_pipe *p)
{
    struct srv_pipe **pp = &h->pipes[pipe_bucket(p->fd)];
    while (*pp && *pp != p)
        pp = &(*pp)->tnext;
    if (!*pp) return 0;
    *pp = p->tnext;
    return 1;
}

struct srv_pipe *cellm_srv_pipe_claim(struct srv_http *h, int fd)
{
    if (fd < 0) return NULL;
    pthread_mutex_lock(&h->sock_mu);
    struct srv_pipe *p = h->pipes[pipe_bucket(fd)];
    while (p && p->fd != fd)
        p = p->tnext;
    if (p) {
        pipe_remove_locked(h, p);
        atomic_store(&p->claimed, 1);
    }
    pthread_mutex_unlock(&h->sock_mu);
    return p;
}

void cellm_srv_pipe_release(struct srv_http *h, struct srv_pipe *p)
{
    (void)h;
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1) return;
    free(p->heads);
    free(p);
}

void cellm_srv_pipe_queued(struct srv_http *h, struct srv_pipe *p, int head)
{
    if (!p) return;
    unsigned i = atomic_fetch_add(&p->queued, 1);
    if (!head) return;
    pthread_mutex_lock(&h->sock_mu);
    if (p->n_heads == p->cap_heads) {
        int cap = p->cap_heads ? 2 * p->cap_heads : 4;
        unsigned *a = realloc(p->heads, (size_t)cap * sizeof *a);
        if (a) {
            p->heads = a;
            p->cap_heads = cap;
        }
    }
    /* out of memory: the body of that answer (none) is then waited for; only that
     * connection stalls, until its timeout */
    if (p->n_heads < p->cap_heads) p->heads[p->n_heads++] = i;
    pthread_mutex_unlock(&h->sock_mu);
}

/* Does response i answer a HEAD request (it then has no body)? */
static int pipe_is_head(struct srv_http *h, struct srv_pipe *p, unsigned i)
{
    int yes = 0;
    pthread_mutex_lock(&h->sock_mu);
    if (p->n_heads && p->heads[0] == i) {
        yes = 1;
        memmove(p->heads, p->heads + 1, (size_t)(p->n_heads - 1) * sizeof *p->heads);
        p->n_heads--;
    }
    pthread_mutex_unlock(&h->sock_mu);
    return yes;
}

/* ---- connections ---------------------------------------------------------------------- */

/* Closes c; its memory stays until the current batch of events is handled, since later
 * events of the batch may still point at it. */
static void conn_kill(struct srv_front *f, struct fconn *c)
{
    struct srv_http *h = f->s->http;
    if (c->dead) return;
    c->dead = 1;
    if (c->lingering) f->n_linger--;
    if (c->cfd >= 0) close(c->cfd); /* also leaves the epoll set */
    if (c->pfd >= 0) close(c->pfd);
    c->cfd = c->pfd = -1;
    pthread_mutex_lock(&h->sock_mu);
    int unclaimed = pipe_remove_locked(h, c->pipe);
    pthread_mutex_unlock(&h->sock_mu);
    if (unclaimed) cellm_srv_pipe_release(h, c->pipe); /* the table's reference */
    cellm_srv_pipe_release(h, c->pipe);
    c->pipe = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        f->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    f->n--;
    c->prev = NULL;
    c->next = f->dead;
    f->dead = c;
}

static void conn_free_dead(struct srv_front *f)
{
    while (f->dead) {
        struct fconn *c = f->dead;
        f->dead = c->next;
        free(c->up);
        free(c->down);
        free(c->head);
        free(c);
    }
}

/* Appends to a pending buffer (buf, len from off); 0, or -1 when out of memory. */
static int buf_add(char **buf, size_t *len, size_t *off, const char *p, size_t n)
{
    if (*off && *off == *len) *off = *len = 0;
    char *b = realloc(*buf, *len + n);
    if (!b) return -1;
    memcpy(b + *len, p, n);
    *buf = b;
    *len += n;
    return 0;
}

/* Writes what it can of p to fd; the rest goes to the pending buffer. -1: the socket
 * failed (or no memory). */
static int send_or_keep(int fd, char **buf, size_t *len, size_t *off, const char *p, size_t n)
{
    if (*len == *off) {
        while (n) {
            ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (w < 0) return -1;
            p += w;
            n -= (size_t)w;
        }
    }
    return n ? buf_add(buf, len, off, p, n) : 0;
}

/* Sends a pending buffer; 1 when it is empty after, 0 when the socket is full, -1 on
 * failure. */
static int flush(int fd, char **buf, size_t *len, size_t *off)
{
    while (*off < *len) {
        ssize_t w = send(fd, *buf + *off, *len - *off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (w < 0) return -1;
        *off += (size_t)w;
    }
    free(*buf);
    *buf = NULL;
    *len = *off = 0;
    return 1;
}

static int to_client(struct fconn *c, const char *p, size_t n)
{
    return send_or_keep(c->cfd, &c->down, &c->down_len, &c->down_off, p, n);
}

/* Queues a JSON error answer for the client and closes after it. */
static void answer_error(struct srv_front *f, struct fconn *c, int status, const char *code,
                         const char *msg)
{
    struct cellm_server *s = f->s;
    struct srv_error e;
    cellm_srv_errorf(&e, status, NULL, "%s", msg);
    e.code = code;
    e.type = status >= 500 && status != 505 ? "server_error" : "invalid_request_error";
    char *body = cellm_srv_error_json(&e);
    const char *reason = MHD_get_reason_phrase_for((unsigned)status);
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\n%s%s%s%s%s\r\n",
                      status, reason && *reason ? reason : "Error", body ? strlen(body) : 0,
                      s->o.cors_origin ? "Access-Control-Allow-Origin: " : "",
                      s->o.cors_origin ? s->o.cors_origin : "", s->o.cors_origin ? "\r\n" : "",
                      s->o.cors_origin && strcmp(s->o.cors_origin, "*") ? "Vary: Origin\r\n" : "",
                      status == 429 ? "Retry-After: 1\r\n" : "");
    cellm_srv_count_error(s);
    if (hn > 0 && (size_t)hn < sizeof head && !to_client(c, head, (size_t)hn) && body)
        to_client(c, body, strlen(body));
    free(body);
    cellm_srv_log(s, "-", "-", status, 0, 0, 0, c->t0);
    c->closing = 1;
    c->q.nreq = c->nresp;
    if (c->pfd >= 0) {
        close(c->pfd); /* the daemon sees the end and drops its side */
        c->pfd = -1;
    }
}

/* RS_HEAD is complete (c->head, ending in CRLF CRLF): relay or replace it. */
static int head_done(struct srv_front *f, struct fconn *c)
{
    struct srv_http *h = f->s->http;
    int status = 0;
    if (c->head_len < 12 || sscanf(c->head, "HTTP/1.%*1d %3d", &status) != 1) status = 0;
    if (status >= 100 && status < 200) { /* 100 Continue: relay, the answer follows */
        int r = to_client(c, c->head, c->head_len);
        c->head_len = 0;
        return r;
    }
    unsigned i = c->nresp++;
    if (!status || i >= atomic_load(&c->pipe->queued)) {
        /* not one of ours: keep what follows until the daemon closes */
        c->own_status = status ? status : 500;
        c->rs = RS_OWN;
        return 0;
    }
    int headreq = pipe_is_head(h, c->pipe, i);
    int chunked = 0, have_len = 0;
    unsigned long long len = 0;
    c->head[c->head_len - 1] = 0; /* was the last LF */
    for (char *ln = strstr(c->head, "\r\n"); ln; ln = strstr(ln, "\r\n")) {
        ln += 2;
        if (!strncasecmp(ln, "Content-Length:", 15)) {
            len = strtoull(ln + 15, NULL, 10);
            have_len = 1;
        } else if (!strncasecmp(ln, "Transfer-Encoding:", 18)) {
            chunked = cellm_srv_line_has(ln, "chunked");
        } else if (!strncasecmp(ln, "Connection:", 11)) {
            /* the last answer: requests after it are not read */
            c->said_close = cellm_srv_line_has(ln, "close");
        }
    }
    c->head[c->head_len - 1] = '\n';
    int r = to_client(c, c->head, c->head_len);
    c->head_len = 0;
    if (headreq || status == 204 || status == 304) {
        c->rs = RS_HEAD;
    } else if (chunked) {
        c->rs = RS_CH_SIZE;
        c->line_cr = 0;
    } else if (have_len) {
        c->rs = len ? RS_BODY : RS_HEAD;
        c->rn = (size_t)len;
    } else {
        c->rs = RS_EOF;
    }
    return r;
}

static int head_add(struct fconn *c, const char *p, size_t n)
{
    if (c->head_len + n + 1 > HEAD_MAX) n = HEAD_MAX - 1 - c->head_len;
    if (!c->head && !(c->head = malloc(HEAD_MAX))) return -1;
    memcpy(c->head + c->head_len, p, n);
    c->head_len += n;
    c->head[c->head_len] = 0;
    return 0;
}

/* Feeds n bytes from the daemon through the response parser; -1: drop the connection. */
static int from_daemon(struct srv_front *f, struct fconn *c, const char *p, size_t n)
{
    while (n) {
        size_t k;
        switch (c->rs) {
        case RS_HEAD: {
            /* byte by byte to the end of the head: heads are small */
            for (k = 0; k < n;) {
                char ch = p[k++];
                if (c->head_len + 1 >= HEAD_MAX) return -1; /* not a response we made */
                if (head_add(c, &ch, 1)) return -1;
                size_t L = c->head_len;
                if (L >= 4 && !memcmp(c->head + L - 4, "\r\n\r\n", 4)) break;
            }
            p += k;
            n -= k;
            size_t L = c->head_len;
            if (L >= 4 && !memcmp(c->head + L - 4, "\r\n\r\n", 4) && head_done(f, c)) return -1;
            break;
        }
        case RS_BODY:
        case RS_CH_DATA:
        case RS_CH_CRLF:
            k = n < c->rn ? n : c->rn;
            if (to_client(c, p, k)) return -1;
            p += k;
            n -= k;
            c->rn -= k;
            if (!c->rn) {
                if (c->rs == RS_CH_DATA) {
                    c->rs = RS_CH_CRLF;
                    c->rn = 2;
                } else if (c->rs == RS_CH_CRLF) {
                    c->rs = RS_CH_SIZE;
                    c->line_cr = 0;
                } else {
                    c->rs = RS_HEAD;
                }
            }
            break;
        case RS_EOF:
            if (to_client(c, p, n)) return -1;
            n = 0;
            break;
        case RS_CH_SIZE:
        case RS_CH_TRAIL: {
            const char *nl = memchr(p, '\n', n);
            k = nl ? (size_t)(nl - p) + 1 : n;
            if (to_client(c, p, k)) return -1;
            if (c->rs == RS_CH_SIZE && (size_t)c->line_cr < 16) /* keep the hex digits */
                head_add(c, p, k < 16 ? k : 16);
            c->line_cr += (int)k;
            p += k;
            n -= k;
            if (!nl) break;
            if (c->rs == RS_CH_SIZE) {
                unsigned long long sz = c->head ? strtoull(c->head, NULL, 16) : 0;
                c->head_len = 0;
                c->rs = sz ? RS_CH_DATA : RS_CH_TRAIL;
                c->rn = (size_t)sz;
            } else if (c->line_cr <= 2) { /* the empty line: the response is complete */
                c->rs = RS_HEAD;
            }
            c->line_cr = 0;
            break;
        }
        case RS_OWN:
            if (c->head_len + 1 < HEAD_MAX) head_add(c, p, n);
            n = 0;
            break;
        }
    }
    return 0;
}

/* The daemon closed its side. */
static void daemon_closed(struct srv_front *f, struct fconn *c)
{
    close(c->pfd);
    c->pfd = -1;
    c->closing = 1;
    if (c->rs == RS_OWN) {
        /* its HTML body tells the cause (the head before it names Content-Length too) */
        const char *code, *msg, *body = c->head ? strstr(c->head, "<html") : NULL;
        cellm_srv_own_cause(c->own_status, body ? body : "", &code, &msg);
        answer_error(f, c, c->own_status, code, msg);
    } else if (c->bad && !c->said_close && c->rs == RS_HEAD && !c->head_len) {
        answer_error(f, c, 400, "bad_request", NOT_HTTP);
    } else if (c->rs == RS_HEAD && !c->head_len && c->q.nreq > c->nresp && !c->c_eof &&
               !c->said_close) {
        /* the client's bytes got no answer */
        if (atomic_load(&f->quiet)) {
            answer_error(f, c, 503, "shutting_down", "the server is shutting down");
        } else if (atomic_load(&c->pipe->reaped)) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "the request was not complete within %d s (--request-timeout)",
                     f->s->o.request_timeout);
            answer_error(f, c, 408, "request_timeout", msg);
        } else if (!atomic_load(&c->pipe->claimed)) {
            answer_error(f, c, 429, "too_many_connections",
                         "too many connections from your address; retry once some have closed");
        } else {
            answer_error(f, c, 400, "bad_request",
                         "not an HTTP request: the request line is malformed");
        }
    }
}

/* How long a closed connection reads and drops what the client still sends (shorter for
 * one the request deadline cut off: that client is slow on purpose or broken). */
#define LINGER_S 2.0
#define LINGER_REAPED_S 0.5

/* closing and everything sent: shut down writing and linger, or close when the client
 * already finished. */
static void finish(struct srv_front *f, struct fconn *c)
{
    if (!c->closing || c->down || c->lingering) return;
    if (c->c_eof || shutdown(c->cfd, SHUT_WR)) {
        conn_kill(f, c);
        return;
    }
    c->lingering = 1;
    int reaped = c->pipe && atomic_load(&c->pipe->reaped);
    c->linger_until = cellm_srv_now() + (reaped ? LINGER_REAPED_S : LINGER_S);
    f->n_linger++;
}

/* The daemon stopped reading (it answered and closed): what the client sends is dropped,
 * while what the daemon wrote is still read from the pair up to its end. */
static void pair_gone(struct fconn *c)
{
    c->p_gone = 1;
    free(c->up);
    c->up = NULL;
    c->up_len = c->up_off = 0;
}

/* A request that is not HTTP, once every request before it has its answer. */
static void bad_answer(struct srv_front *f, struct fconn *c)
{
    if (!c->bad || c->closing || c->nresp + 1 < c->q.nreq || c->rs != RS_HEAD || c->head_len)
        return;
    answer_error(f, c, 400, "bad_request", NOT_HTTP);
}

static void on_client(struct srv_front *f, struct fconn *c, uint32_t ev)
{
    if (c->lingering) {
        ssize_t r = recv(c->cfd, f->scratch, SCRATCH, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            conn_kill(f, c);
        return;
    }
    if (ev & (EPOLLERR | EPOLLHUP)) goto drop; /* reset: nothing can reach the client */
    if ((ev & EPOLLOUT) && c->down && flush(c->cfd, &c->down, &c->down_len, &c->down_off) < 0)
        goto drop;
    if ((ev & EPOLLIN) && !c->closing && !c->c_eof && !c->up && !c->bad) {
        ssize_t r = recv(c->cfd, f->scratch, SCRATCH, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (r < 0) goto drop;
        if (r == 0) {
            c->c_eof = 1;
            if (!c->up && !c->p_gone)
                shutdown(c->pfd, SHUT_WR); /* the daemon sees the client leave */
            return;
        }
        size_t at = (size_t)r;
        if (cellm_srv_reqframe_feed(&c->q, (unsigned char *)f->scratch, (size_t)r, &at)) {
            /* the requests before it still get their answers; then the 400 (bad_answer) */
            c->bad = 1;
            r = (ssize_t)at;
        }
        if (r && !c->p_gone &&
            send_or_keep(c->pfd, &c->up, &c->up_len, &c->up_off, f->scratch, (size_t)r))
            pair_gone(c);
        bad_answer(f, c);
    }
    finish(f, c);
    return;
drop:
    conn_kill(f, c);
}

static void on_pair(struct srv_front *f, struct fconn *c, uint32_t ev)
{
    if ((ev & EPOLLOUT) && c->up) {
        int r = flush(c->pfd, &c->up, &c->up_len, &c->up_off);
        if (r < 0) pair_gone(c);
        if (r > 0 && c->c_eof) shutdown(c->pfd, SHUT_WR);
    }
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->down) {
        ssize_t r = recv(c->pfd, f->scratch, SCRATCH, 0);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
        if (r <= 0) {
            daemon_closed(f, c);
        } else if (from_daemon(f, c, f->scratch, (size_t)r)) {
            goto drop;
        }
        bad_answer(f, c);
    }
    finish(f, c);
    return;
drop:
    conn_kill(f, c);
}

/* Puts fd in the epoll set for `want` (out of it for 0: a level-triggered hang-up would
 * otherwise be reported while the other side cannot take more). */
static void set_mask(struct srv_front *f, int fd, uint32_t *cur, uint32_t want, struct fend *e)
{
    if (fd < 0 || want == *cur) return;
    struct epoll_event ev = {.events = want, .data.ptr = e};
    if (!want)
        epoll_ctl(f->efd, EPOLL_CTL_DEL, fd, NULL);
    else
        epoll_ctl(f->efd, *cur ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
    *cur = want;
}

/* Read from one side only while the other side has taken everything (back-pressure);
 * write while something waits. */
static void conn_events(struct srv_front *f, struct fconn *c)
{
    uint32_t mc = 0, mp = 0;
    if ((!c->closing && !c->c_eof && !c->up && !c->bad) || c->lingering) mc |= EPOLLIN;
    if (c->down) mc |= EPOLLOUT;
    if (!c->down && !c->closing) mp |= EPOLLIN;
    if (c->up) mp |= EPOLLOUT;
    set_mask(f, c->cfd, &c->mask_c, mc, &c->ec);
    set_mask(f, c->pfd, &c->mask_p, mp, &c->ep);
}

static void accept_all(struct srv_front *f)
{
    struct cellm_server *s = f->s;
    struct srv_http *h = s->http;
    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(f->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a moment rather than spin */
                epoll_ctl(f->efd, EPOLL_CTL_DEL, f->lfd, NULL);
                f->listening = 0;
                f->resume_at = cellm_srv_now() + 0.1;
            }
            return;
        }
        int sp[2];
        struct fconn *c = NULL;
        struct srv_pipe *p = NULL;
        if (f->n >= s->o.max_connections ||
            socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp)) {
            close(fd);
            continue;
        }
        if (!(c = calloc(1, sizeof *c)) || !(p = calloc(1, sizeof *p))) {
            free(c);
            close(fd);
            close(sp[0]);
            close(sp[1]);
            continue;
        }
        c->cfd = fd;
        c->pfd = sp[0];
        c->pipe = p;
        c->ec = (struct fend){c, 0};
        c->ep = (struct fend){c, 1};
        c->t0 = cellm_srv_now();
        p->fd = sp[1];
        atomic_store(&p->refs, 1);
        c->next = f->conns;
        if (f->conns) f->conns->prev = c;
        f->conns = c;
        f->n++;
        conn_events(f, c);
        if (!c->mask_c || !c->mask_p) {
            close(sp[1]);
            conn_kill(f, c);
            continue;
        }
        atomic_store(&p->refs, 2);
        pthread_mutex_lock(&h->sock_mu);
        pipe_insert_locked(h, p);
        pthread_mutex_unlock(&h->sock_mu);
        /* the daemon closes sp[1] itself when it cannot take it (its limits): the front
         * then sees the end of the pair */
        pthread_mutex_lock(&f->add_mu);
        if (f->no_add)
            close(sp[1]);
        else
            MHD_add_connection(s->daemon, sp[1], (struct sockaddr *)&sa, sl);
        pthread_mutex_unlock(&f->add_mu);
    }
}

static void *front_main(void *arg)
{
    struct srv_front *f = arg;
    struct epoll_event ev[64];
    while (!atomic_load(&f->stop)) {
        int timeout = f->n_linger ? 100 : -1;
        if (!f->listening) {
            if (cellm_srv_now() >= f->resume_at) {
                struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
                if (!epoll_ctl(f->efd, EPOLL_CTL_ADD, f->lfd, &e)) f->listening = 1;
            }
            timeout = 100;
        }
        int n = epoll_wait(f->efd, ev, 64, timeout);
        for (int i = 0; i < n; i++) {
            if (!ev[i].data.ptr) {
                accept_all(f);
                continue;
            }
            if (ev[i].data.ptr == f) continue; /* the stop eventfd */
            struct fend *e = ev[i].data.ptr;
            struct fconn *c = e->c;
            if (c->dead) continue;
            if (e->peer)
                on_pair(f, c, ev[i].events);
            else
                on_client(f, c, ev[i].events);
            if (!c->dead) conn_events(f, c);
        }
        if (f->n_linger) {
            double t = cellm_srv_now();
            for (struct fconn *c = f->conns, *nx; c; c = nx) {
                nx = c->next;
                if (c->lingering && t > c->linger_until) conn_kill(f, c);
            }
        }
        conn_free_dead(f);
    }
    return NULL;
}

int cellm_srv_front_start(struct cellm_server *s, const struct addrinfo *ai, char *msg,
                          size_t msg_size)
{
    struct srv_front *f = calloc(1, sizeof *f);
    if (!f || !(f->scratch = malloc(SCRATCH))) {
        free(f);
        snprintf(msg, msg_size, "out of memory");
        return -1;
    }
    f->s = s;
    f->lfd = f->efd = f->wfd = -1;
    pthread_mutex_init(&f->add_mu, NULL);
    s->http->front = f;
    int one = 1;
    f->lfd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (f->lfd < 0 || setsockopt(f->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(f->lfd, ai->ai_addr, ai->ai_addrlen) || listen(f->lfd, SOMAXCONN)) {
        snprintf(msg, msg_size, "cannot listen on %s port %d: %s (in use, or not allowed?)",
                 s->o.host, s->o.port, strerror(errno));
        return -1;
    }
    struct epoll_event el = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event ew = {.events = EPOLLIN, .data.ptr = f};
    if ((f->efd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        (f->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        epoll_ctl(f->efd, EPOLL_CTL_ADD, f->lfd, &el) ||
        epoll_ctl(f->efd, EPOLL_CTL_ADD, f->wfd, &ew)) {
        snprintf(msg, msg_size, "cannot start the connection loop: %s", strerror(errno));
        return -1;
    }
    f->listening = 1;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, THREAD_STACK);
    int e = pthread_create(&f->th, &a, front_main, f);
    pthread_attr_destroy(&a);
    if (e) {
        snprintf(msg, msg_size, "cannot start the connection thread");
        return -1;
    }
    f->started = 1;
    return 0;
}

int cellm_srv_front_port(const struct cellm_server *s)
{
    struct srv_front *f = s->http ? s->http->front : NULL;
    struct sockaddr_storage sa;
    socklen_t sl = sizeof sa;
    if (!f || f->lfd < 0 || getsockname(f->lfd, (struct sockaddr *)&sa, &sl)) return -1;
    if (sa.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return ntohs(((struct sockaddr_in *)&sa)->sin_port);
}

void cellm_srv_front_quiesce(struct cellm_server *s)
{
    struct srv_front *f = s->http ? s->http->front : NULL;
    if (!f) return;
    atomic_store(&f->quiet, 1);
    pthread_mutex_lock(&f->add_mu);
    f->no_add = 1;
    pthread_mutex_unlock(&f->add_mu);
}

void cellm_srv_front_stop(struct cellm_server *s)
{
    struct srv_front *f = s->http ? s->http->front : NULL;
    if (!f) return;
    if (f->started) {
        atomic_store(&f->stop, 1);
        uint64_t one = 1;
        if (write(f->wfd, &one, sizeof one) < 0) {
            /* the counter is only full after 2^64 - 2 writes; nothing to do */
        }
        pthread_join(f->th, NULL);
    }
    while (f->conns)
        conn_kill(f, f->conns);
    conn_free_dead(f);
    if (f->lfd >= 0) close(f->lfd);
    if (f->efd >= 0) close(f->efd);
    if (f->wfd >= 0) close(f->wfd);
    free(f->scratch);
    pthread_mutex_destroy(&f->add_mu);
    free(f);
    s->http->front = NULL;
}
#endif /* CELLM_HAVE_MHD */
