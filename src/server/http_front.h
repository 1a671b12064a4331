/*
 * http_front.h: the listening socket and the bytes between each client and libmicrohttpd.
 *
 * libmicrohttpd 0.9.75 answers some requests itself, before any callback of ours runs:
 * a malformed request line or header line (400), a bad chunk or Content-Length (400,
 * 413), a request line or header block too large for its memory pool (414, 431), an HTTP
 * version other than 1.0/1.1 (505), an internal error (500). Those answers carry an HTML
 * body, and it has no option or callback to replace them; some garbage (a line without a
 * version, a TLS ClientHello, NUL bytes) it just closes, or leaves to the request
 * deadline. So http_front.c owns the accept and hands libmicrohttpd one end of a
 * socketpair per client (MHD_add_connection, with the client's address for the
 * per-client limit); one front thread relays bytes between the client and the other end
 * in an epoll loop (an idle connection costs its sockets and a small struct, no thread
 * and no buffer). Requests pass through unchanged, so libmicrohttpd still parses them,
 * and http.c's framing rules (smuggling) still apply. Responses are parsed as they pass
 * (status line, headers, Content-Length or chunked body): every response our handler
 * queues is counted on the connection's srv_pipe, so one that was not counted is
 * libmicrohttpd's own, and the front sends a JSON error with the same status instead,
 * naming the problem, and closes. A connection libmicrohttpd closes without an answer
 * after the client sent bytes gets 400 (or 408 when the request deadline closed it); a
 * first request that does not begin with a method token gets 400 at once.
 */
#ifndef CELLM_SERVER_HTTP_FRONT_H
#define CELLM_SERVER_HTTP_FRONT_H

#include <netdb.h>
#include <stdatomic.h>

#include "srv.h"

struct srv_http;

/* What a front connection and libmicrohttpd's side of it share (refcounted: the front
 * holds one reference, the daemon's socket context the other). */
struct srv_pipe {
    int fd;                  /* libmicrohttpd's end of the socketpair */
    _Atomic unsigned queued; /* responses http.c queued on this connection */
    _Atomic int claimed;     /* libmicrohttpd took the connection (its STARTED notification) */
    _Atomic int reaped;      /* closed by the request deadline */
    _Atomic int refs;
    /* indices (in `queued` order) of the responses to HEAD requests, which have no body;
     * under srv_http.sock_mu */
    unsigned *heads;
    int n_heads, cap_heads;
    struct srv_pipe *tnext; /* the table of pipes not yet claimed, under sock_mu */
};

/* Binds ai and starts the front thread, which adds each client to the daemon. 0, or -1
 * with msg set. */
int cellm_srv_front_start(struct cellm_server *s, const struct addrinfo *ai, char *msg,
                          size_t msg_size);
/* The bound port. */
int cellm_srv_front_port(const struct cellm_server *s);
/* Before the daemon stops: no more clients are handed to it, and its closes are no
 * longer answered as errors (a request cut off then gets 503). */
void cellm_srv_front_quiesce(struct cellm_server *s);
/* Stops the thread and closes every client (after the daemon stopped). */
void cellm_srv_front_stop(struct cellm_server *s);

/* libmicrohttpd's STARTED notification: takes the pipe of its fd off the table (the
 * reference passes to the caller); NULL for a connection the front did not make. */
struct srv_pipe *cellm_srv_pipe_claim(struct srv_http *h, int fd);
void cellm_srv_pipe_release(struct srv_http *h, struct srv_pipe *p);
/* Before http.c queues a response on p's connection (head: it answers a HEAD request). */
void cellm_srv_pipe_queued(struct srv_http *h, struct srv_pipe *p, int head);

#endif
