/*
 * http_frame.h: the HTTP framing http_front.c follows as bytes pass between a client and
 * libmicrohttpd: where each of the client's requests begins (a shadow of libmicrohttpd's
 * own parse: the method token, the end of the head, a Content-Length or chunked body),
 * and the cause of one of libmicrohttpd's own error answers, from its text.
 */
#ifndef CELLM_SERVER_HTTP_FRAME_H
#define CELLM_SERVER_HTTP_FRAME_H

#include <stddef.h>

/* Where the parse of a client's requests is (srv_reqframe.qs). */
enum qstate {
    Q_START,    /* between requests (empty lines allowed) */
    Q_METHOD,   /* in the method token */
    Q_HEAD,     /* in the request line or the header lines */
    Q_BODY,     /* Content-Length bytes */
    Q_CH_SIZE,  /* a chunk-size line */
    Q_CH_DATA,  /* chunk data */
    Q_CH_CRLF,  /* the line end after chunk data */
    Q_CH_TRAIL, /* trailer lines up to an empty one */
};

struct srv_reqframe {
    enum qstate qs;
    unsigned long long qn; /* Q_BODY / Q_CH_DATA: bytes left */
    long long q_cl;        /* the head's Content-Length, -1: none */
    int q_te;              /* the head has Transfer-Encoding */
    int q_len;             /* length of the current line (CR not counted) */
    char q_line[24];       /* its start, lower case */
    unsigned nreq;         /* requests begun */
};

/* Follows n more bytes of the client's; -1 when a request does not begin with a method
 * token and a space (*at: where that request begins in p), else 0. */
int cellm_srv_reqframe_feed(struct srv_reqframe *q, const unsigned char *p, size_t n, size_t *at);
/* The code and message of one of libmicrohttpd's own answers, from its status and its
 * HTML body (text). */
void cellm_srv_own_cause(int status, const char *text, const char **code, const char **msg);
/* Does the header line at ln (up to its CRLF) contain word (case-insensitive)? */
int cellm_srv_line_has(const char *ln, const char *word);

#endif
