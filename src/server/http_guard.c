/*
 * http_guard.c: the request policy of the HTTP layer (see http_guard.h).
 */
#ifdef CELLM_HAVE_MHD
#include "http_guard.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <sys/resource.h>

#include <cjson/cJSON.h>

#include "http_conn.h"

/* Counts a header's occurrences (MHD keeps every one; lookups see the first). */
struct hcount {
    const char *name;
    int n;
    const char *last;
};

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct hcount *hc = cls;
    if (key && !strcasecmp(key, hc->name)) {
        hc->n++;
        hc->last = value;
    }
    return MHD_YES;
}

/* Request framing an intermediary might read differently: refused, connection closed. */
int cellm_srv_framing_error(struct MHD_Connection *c, int *status, const char **msg)
{
    struct hcount cl = {"Content-Length", 0, NULL}, te = {"Transfer-Encoding", 0, NULL};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &cl);
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_header, &te);
    *status = 400;
    if (cl.n > 1) {
        *msg = "more than one Content-Length header";
        return 1;
    }
    if (cl.n && te.n) {
        *msg = "both Content-Length and Transfer-Encoding";
        return 1;
    }
    if (te.n > 1) {
        *msg = "more than one Transfer-Encoding header";
        return 1;
    }
    if (te.n) {
        const char *v = te.last;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strlen(v);
        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        if (n != 7 || strncasecmp(v, "chunked", 7)) {
            *status = 501;
            *msg = "Transfer-Encoding other than chunked is not implemented";
            return 1;
        }
    }
    if (cl.n) {
        const char *v = cl.last;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v < '0' || *v > '9') {
            *msg = "Content-Length is not a number";
            return 1;
        }
        while (*v >= '0' && *v <= '9')
            v++;
        while (*v == ' ' || *v == '\t')
            v++;
        if (*v) {
            *msg = "Content-Length is not a number";
            return 1;
        }
    }
    return 0;
}

static int loopback_host(const char *h)
{
    if (!strcasecmp(h, "localhost") || !strcmp(h, "::1") || !strcmp(h, "[::1]")) return 1;
    struct in_addr a;
    return inet_pton(AF_INET, h, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

/* Bound to loopback without an API key, a browser page elsewhere can reach the server
 * through DNS rebinding (its own name resolving to 127.0.0.1): its requests carry that
 * name in Host, so only loopback names (and --allowed-hosts) are accepted. */
int cellm_srv_host_allowed(struct cellm_server *s, struct MHD_Connection *c)
{
    if (s->o.api_key || !loopback_host(s->o.host)) return 1;
    const char *al = s->o.allowed_hosts;
    if (al && !strcmp(al, "*")) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
    if (!h) return 0;
    char name[256];
    size_t n = strlen(h);
    if (n >= sizeof name) return 0;
    memcpy(name, h, n + 1);
    /* strip the port: "[::1]:8080", "127.0.0.1:8080", "localhost" */
    char *colon = name[0] == '[' ? strchr(name, ']') : strrchr(name, ':');
    if (name[0] == '[' && colon) colon = colon[1] == ':' ? colon + 1 : NULL;
    if (colon && name[0] != '[' && strchr(name, ':') != colon) colon = NULL; /* bare IPv6 */
    if (colon) *colon = 0;
    if (loopback_host(name)) return 1;
    for (const char *p = al; p && *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == strlen(name) && !strncasecmp(p, name, l)) return 1;
        p = e ? e + 1 : p + l;
    }
    return 0;
}

int cellm_srv_json_content_type(struct MHD_Connection *c)
{
    const char *t = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
    if (!t) return 0;
    while (*t == ' ')
        t++;
    if (strncasecmp(t, "application/json", 16)) return 0;
    t += 16;
    while (*t == ' ')
        t++;
    return !*t || *t == ';';
}

/* 1 when h is the key, compared in time independent of where they differ. */
static int key_equal(const char *h, const char *key)
{
    size_t n = strlen(h), k = strlen(key);
    unsigned diff = (unsigned)(n != k);
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)h[i] ^ (unsigned char)key[i < k ? i : 0];
    return diff == 0;
}

int cellm_srv_authorized(struct cellm_server *s, struct MHD_Connection *c)
{
    if (!s->o.api_key) return 1;
    /* Anthropic's clients send the key as x-api-key */
    const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    if (x && key_equal(x, s->o.api_key)) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7)) return 0;
    h += 7;
    while (*h == ' ')
        h++;
    return key_equal(h, s->o.api_key);
}

char *cellm_srv_models_json(struct cellm_server *s, int one)
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

/* ---- connections per client address ---------------------------------------------------
 * libmicrohttpd's own per-address limit closes a connection over it right after the
 * accept, before the client has sent anything. Node's fetch (undici) takes a connection
 * that ends before its request was written as one to retry later, and its fetch then
 * never settles: 70 concurrent fetches against a limit of 64 left 6 hanging for ever.
 * So the limit is kept here instead: a connection over it is accepted and marked, its
 * first request is answered 429 with Retry-After and the connection closed (a refusal
 * every client sees), and if it sends nothing it is closed after OVER_GRACE_S by the
 * waker (http_wait.c). libmicrohttpd's limit stays, at twice ours plus some, as the
 * backstop against a flood of connections from one address. */

static size_t client_hash(const unsigned char *a, int len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < len; i++)
        h = (h ^ a[i]) * 1099511628211ull;
    return (size_t)(h % CLIENT_BUCKETS);
}

struct srv_client *cellm_srv_client_add(struct srv_http *h, const struct sockaddr *sa)
{
    unsigned char a[16];
    int len;
    if (!sa) return NULL;
    if (sa->sa_family == AF_INET) {
        memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        len = 4;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        len = 16;
    } else {
        return NULL;
    }
    size_t b = client_hash(a, len);
    for (struct srv_client *c = h->clients[b]; c; c = c->next)
        if (c->len == len && !memcmp(c->addr, a, (size_t)len)) {
            c->n++;
            return c;
        }
    struct srv_client *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    memcpy(c->addr, a, (size_t)len);
    c->len = len;
    c->n = 1;
    c->next = h->clients[b];
    h->clients[b] = c;
    return c;
}

void cellm_srv_client_drop(struct srv_http *h, struct srv_client *cl)
{
    if (!cl || --cl->n > 0) return;
    struct srv_client **pp = &h->clients[client_hash(cl->addr, cl->len)];
    while (*pp && *pp != cl)
        pp = &(*pp)->next;
    if (*pp) *pp = cl->next;
    free(cl);
}

void cellm_srv_clients_free(struct srv_http *h)
{
    for (size_t b = 0; b < CLIENT_BUCKETS; b++)
        while (h->clients[b]) {
            struct srv_client *c = h->clients[b];
            h->clients[b] = c->next;
            free(c);
        }
}

/* Fills the defaults of the connection options. */
void cellm_srv_conn_defaults(struct cellm_server_opts *o)
{
    if (o->http_threads <= 0) o->http_threads = 4;
    if (o->per_client <= 0) o->per_client = 64;
    if (o->request_timeout <= 0) o->request_timeout = 10;
    if (o->idle_timeout <= 0) o->idle_timeout = 5;
    if (o->prep_threads <= 0) o->prep_threads = 2;
    if (o->prep_queue <= 0) o->prep_queue = 32;
    if (o->shutdown_timeout <= 0) o->shutdown_timeout = 10;
    if (o->max_connections <= 0) {
        /* every connection is three descriptors (the client's socket and the socketpair
         * to the daemon, http_front.h): leave room for the model's files and logs */
        struct rlimit rl;
        long lim = 1024;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            lim = (long)rl.rlim_cur;
        else if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            lim = 65536;
        lim = (lim - 64 - 4L * o->http_threads) / 3;
        o->max_connections = (int)(lim < 16 ? 16 : lim > 65536 ? 65536 : lim);
    }
}

#endif /* CELLM_HAVE_MHD */
