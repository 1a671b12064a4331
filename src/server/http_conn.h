/*
 * http_conn.h: the connection state the HTTP layer's files share.
 *
 * http.c owns the libmicrohttpd side (daemon, callbacks, routes, replies, the server's
 * start and stop); http_wait.c owns what happens while a connection is suspended (the prep
 * threads that parse and tokenize bodies, the waiting list and the waker thread that
 * resumes connections when the scheduler publishes, the streamed response); http_front.c
 * owns the listening socket and the bytes between each client and the daemon (its own
 * answers to malformed requests, http_front.h). Everything
 * here that two threads touch is guarded by the server mutex (srv->mu), except the socket
 * list (srv_http.sock_mu) and srv_conn.cancel (atomic).
 */
#ifndef CELLM_SERVER_HTTP_CONN_H
#define CELLM_SERVER_HTTP_CONN_H

#include <microhttpd.h>

#include "srv.h"
#include "http_front.h"

/* How often suspended connections are checked for a hang-up, and timeouts enforced. */
#define WAKER_MS 50

/* Stack sizes of the threads the HTTP layer starts (stated, not inherited from
 * ulimit -s): the event loop runs no parser or regex; prep threads run the tokenizer,
 * whose regex engine measures the stack it is given and stops with an error before its
 * end. */
#define THREAD_STACK ((size_t)1 << 20)
#define PREP_STACK ((size_t)8 << 20)

enum srv_cstate {
    C_READ,   /* receiving the request */
    C_PREP,   /* queued for or in a prep thread (suspended) */
    C_READY,  /* prep done: r, out or err set */
    C_WAIT,   /* non-streaming, waiting for the scheduler (suspended) */
    C_STREAM, /* streaming response queued */
};

/* What a suspended connection waits for (on the waiting list). */
enum srv_wkind { W_PREP, W_DONE, W_OUTPUT };

/* The work a POST body needs before it can be answered (done by a prep thread). */
enum srv_job {
    J_COMPLETION,
    J_CHAT,
    J_TOKENIZE,
    J_DETOKENIZE,
    J_RESPONSES,   /* /v1/responses (adapt.h) */
    J_MESSAGES,    /* /v1/messages */
    J_COUNT_TOKENS /* /v1/messages/count_tokens */
};

struct srv_stream;

/* How long a connection over --per-client may stay open without sending a request (it is
 * answered 429 when it does; see http_guard.c). */
#define OVER_GRACE_S 1.0

/* One client address and its open connections (--per-client), under srv_http.sock_mu. */
struct srv_client {
    unsigned char addr[16];
    int len; /* 4 or 16 */
    int n;   /* connections open */
    struct srv_client *next;
};
#define CLIENT_BUCKETS 1024

/* One socket (MHD's socket context): for the request deadline. */
struct srv_sock {
    int fd;
    int busy;   /* a complete request is being answered */
    int reaped; /* shut down by the deadline */
    int over;   /* opened beyond --per-client: answered 429, or closed after OVER_GRACE_S */
    double t0;  /* connected, or the previous response ended */
    struct srv_client *cl; /* its address's count; NULL when unknown */
    struct srv_pipe *pipe; /* shared with http_front.c; NULL when unknown */
    struct srv_sock *prev, *next;
};

/* One request (MHD's con_cls). */
struct srv_conn {
    struct MHD_Connection *c;
    struct srv_sock *sk;
    char *body;
    size_t len, cap;
    int too_big;
    size_t discarded; /* bytes of a too-large body read and dropped */
    int inflight;     /* counted in s->n_inflight until MHD has sent the response */
    int fd;
    enum srv_job job;
    enum srv_cstate state;
    struct srv_req *r; /* after prep of a completion, non-streaming: our reference */
    char *out;         /* after prep of /tokenize or /detokenize: the response body */
    struct srv_error err;
    int failed;         /* prep failed: err */
    int gone;           /* the client hung up while suspended */
    _Atomic int cancel; /* stops this request's tokenization */
    /* the request log line (cellm_srv_log, when the request completes) */
    double t0;
    int status; /* 0 = no answer queued */
    char method[16], url[128];
    int n_prompt, n_cached, n_gen;
    /* waiting list (under s->mu) */
    enum srv_wkind wk;
    int waiting;
    struct srv_stream *st; /* W_OUTPUT */
    struct srv_conn *wprev, *wnext, *qnext;
};

struct srv_http {
    /* under s->mu */
    struct srv_conn *wait_head;       /* suspended connections */
    struct srv_conn *q_head, *q_tail; /* prep queue */
    int q_len, prep_stop, waker_stop, draining;
    unsigned long long prep_cancelled; /* prep jobs ended because their client hung up */
    pthread_cond_t prep_cv, wake_cv;
    pthread_t *prep;
    int n_prep;
    pthread_t waker;
    int waker_started;
    /* sockets, under sock_mu (never taken with s->mu held the other way round) */
    pthread_mutex_t sock_mu;
    struct srv_sock *socks;
    struct srv_client *clients[CLIENT_BUCKETS];
    unsigned long long reaped, over_client; /* under sock_mu */
    struct srv_pipe *pipes[CLIENT_BUCKETS]; /* handed to the daemon, not yet claimed */
    struct srv_front *front;                /* http_front.c */
    unsigned long long prep_rejected;       /* under s->mu */
};

/* http.c */
double cellm_srv_now(void); /* monotonic seconds */
void cellm_srv_count_error(struct cellm_server *s);
/* Adds the CORS headers of --cors-origin (none without it). */
void cellm_srv_cors(const struct cellm_server *s, struct MHD_Response *resp);

/* http_wait.c. Under s->mu: parks cn (suspended) until the waker or a prep thread resumes
 * it; takes it off the list and resumes it; takes it off the list without resuming (the
 * connection is closing). */
void cellm_srv_park_locked(struct cellm_server *s, struct srv_conn *cn, enum srv_wkind wk);
void cellm_srv_unpark_locked(struct cellm_server *s, struct srv_conn *cn);
void cellm_srv_unlist_locked(struct cellm_server *s, struct srv_conn *cn);
/* Thread bodies (arg: the server). */
void *cellm_srv_waker_main(void *arg);
void *cellm_srv_prep_main(void *arg);
/* The SSE response for cn's request (cn->r, whose reference the stream takes); NULL when
 * out of memory (cn->r is then still cn's). */
struct MHD_Response *cellm_srv_stream_response(struct cellm_server *s, struct srv_conn *cn);

#endif
