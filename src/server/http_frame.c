/*
 * http_frame.c: the HTTP framing the front reads as bytes pass (see http_frame.h).
 */
#ifdef CELLM_HAVE_MHD
#include "http_frame.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The longest method token a request line may start with. */
#define METHOD_MAX 32

/* Each request's method must be a token (RFC 9110 tchar) followed by a space: anything
 * else (a TLS handshake, binary, a line without a method) is not HTTP. */
static int tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A header line of the request is complete (its start in q_line). */
static void q_header(struct srv_reqframe *c)
{
    if (!strncmp(c->q_line, "content-length:", 15)) {
        const char *v = c->q_line + 15;
        while (*v == ' ' || *v == '\t')
            v++;
        c->q_cl = strtoll(v, NULL, 10);
    } else if (!strncmp(c->q_line, "transfer-encoding:", 18)) {
        c->q_te = 1;
    }
}

/* Follows the client's bytes through the request framing; -1 when a request does not
 * begin with a method. A framing the shadow gets wrong can only be one libmicrohttpd or
 * http.c refuses (and closes), as both read Content-Length and chunked the same way. */
int cellm_srv_reqframe_feed(struct srv_reqframe *c, const unsigned char *p, size_t n, size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = p[i];
        switch (c->qs) {
        case Q_START:
            if (ch == '\r' || ch == '\n') break;
            c->nreq++;
            c->qs = Q_METHOD;
            c->q_len = 0;
            /* fall through */
        case Q_METHOD:
            if (ch == ' ' && c->q_len > 0) {
                c->qs = Q_HEAD;
                c->q_len = 1; /* the request line: its end is not the empty line */
                c->q_line[0] = 0;
                c->q_cl = -1;
                c->q_te = 0;
            } else if (!tchar(ch) || ++c->q_len > METHOD_MAX) {
                *at = i - (size_t)(c->q_len > METHOD_MAX ? METHOD_MAX : c->q_len);
                if (*at > i) *at = 0; /* the method began in an earlier read */
                return -1;
            }
            break;
        case Q_HEAD:
        case Q_CH_TRAIL:
        case Q_CH_SIZE:
        case Q_CH_CRLF:
            if (ch == '\r') break;
            if (ch != '\n') {
                if ((size_t)c->q_len < sizeof c->q_line - 1)
                    c->q_line[c->q_len] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
                c->q_len++;
                break;
            }
            c->q_line[c->q_len < (int)sizeof c->q_line ? c->q_len : (int)sizeof c->q_line - 1] = 0;
            if (c->qs == Q_CH_SIZE) {
                unsigned long long sz = strtoull(c->q_line, NULL, 16);
                c->qs = sz ? Q_CH_DATA : Q_CH_TRAIL;
                c->qn = sz;
            } else if (c->qs == Q_CH_CRLF) {
                c->qs = Q_CH_SIZE;
            } else if (c->q_len) {
                if (c->qs == Q_HEAD) q_header(c);
            } else if (c->qs == Q_CH_TRAIL || !(c->q_te || c->q_cl > 0)) {
                c->qs = Q_START;
            } else if (c->q_te) {
                c->qs = Q_CH_SIZE;
            } else {
                c->qs = Q_BODY;
                c->qn = (unsigned long long)c->q_cl;
            }
            c->q_len = 0;
            break;
        case Q_BODY:
        case Q_CH_DATA: {
            size_t k = n - i < c->qn ? n - i : (size_t)c->qn;
            c->qn -= k;
            i += k - 1;
            if (!c->qn) c->qs = c->qs == Q_BODY ? Q_START : Q_CH_CRLF;
            break;
        }
        }
    }
    return 0;
}

/* The cause of one of libmicrohttpd's own answers, from its status and HTML text. */
void cellm_srv_own_cause(int status, const char *text, const char **code, const char **msg)
{
    *code = "bad_request";
    switch (status) {
    case 400:
        if (strstr(text, "chunked")) {
            *code = "bad_chunked_encoding";
            *msg = "the request body's chunked transfer encoding is malformed";
        } else if (strstr(text, "Content-Length")) {
            *code = "bad_content_length";
            *msg = "the Content-Length header is not a valid number";
        } else if (strstr(text, "Host")) {
            *code = "missing_host";
            *msg = "an HTTP/1.1 request must have a Host header";
        } else {
            *msg = "malformed request: the request line or a header line is not valid HTTP/1.1";
        }
        return;
    case 413:
        *code = "request_too_large";
        *msg = strstr(text, "chunk") ? "a chunk of the request body is larger than the server "
                                       "accepts"
                                     : "the Content-Length is larger than the server accepts";
        return;
    case 414:
        *code = "uri_too_long";
        *msg = "the request line is longer than the server accepts";
        return;
    case 431:
        *code = "header_too_large";
        *msg = "the request headers are larger than the server accepts";
        return;
    case 505:
        *code = "http_version_not_supported";
        *msg = strstr(text, "too old") ? "the HTTP version is too old: send HTTP/1.1 or 1.0"
                                       : "the HTTP version is not supported: send HTTP/1.1 or 1.0";
        return;
    case 500:
        *code = "server_error";
        *msg = "the server could not process the request";
        return;
    default:
        *msg = "the request could not be processed";
    }
}

/* Does the header line at ln (up to its CRLF) contain word (case-insensitive)? */
int cellm_srv_line_has(const char *ln, const char *word)
{
    const char *e = strstr(ln, "\r\n");
    size_t n = e ? (size_t)(e - ln) : strlen(ln), k = strlen(word);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(ln + i, word, k)) return 1;
    return 0;
}

#endif /* CELLM_HAVE_MHD */
