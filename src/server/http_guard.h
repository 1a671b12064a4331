/*
 * http_guard.h: the request policy of http.c, apart from its connection machinery: which
 * request framing is refused (smuggling), which Host names a loopback server accepts (DNS
 * rebinding), the JSON content type of POST bodies (cross-site forms), the API key (bearer
 * or x-api-key), the connection defaults, and the /v1/models bodies.
 */
#ifndef CELLM_SERVER_HTTP_GUARD_H
#define CELLM_SERVER_HTTP_GUARD_H

#include <microhttpd.h>
#include <sys/socket.h>

#include "srv.h"

/* 1 when the request's framing is ambiguous (more than one Content-Length, Content-Length
 * with Transfer-Encoding, a Transfer-Encoding other than chunked, a Content-Length that is
 * not a number): *status (400 or 501) and *msg say why. */
int cellm_srv_framing_error(struct MHD_Connection *c, int *status, const char **msg);
/* 0 when bound to loopback without an API key and Host names neither loopback nor one of
 * --allowed-hosts. */
int cellm_srv_host_allowed(struct cellm_server *s, struct MHD_Connection *c);
/* 1 for Content-Type application/json (parameters allowed). */
int cellm_srv_json_content_type(struct MHD_Connection *c);
/* 1 when no key is set or the bearer token or x-api-key header matches (in constant time). */
int cellm_srv_authorized(struct cellm_server *s, struct MHD_Connection *c);
/* The /v1/models body (malloc'd), or with `one` the /v1/models/{id} body. */
char *cellm_srv_models_json(struct cellm_server *s, int one);
struct srv_http;
struct srv_client;
/* Under h->sock_mu: counts one more connection of sa's address; returns its entry (its n
 * is the count, this one included), or NULL for an address that is not IPv4/IPv6 or when
 * out of memory (the connection is then not counted). */
struct srv_client *cellm_srv_client_add(struct srv_http *h, const struct sockaddr *sa);
/* Under h->sock_mu: one connection of cl's address closed (cl freed at zero). */
void cellm_srv_client_drop(struct srv_http *h, struct srv_client *cl);
/* Frees every entry (at stop). */
void cellm_srv_clients_free(struct srv_http *h);
/* Fills 0 fields of the connection options with their defaults. */
void cellm_srv_conn_defaults(struct cellm_server_opts *o);

#endif
