/*
 * api_adapt.c: what the Responses and Messages adapters share (see adapt.h), and their
 * glue to the server's requests.
 *
 * The stream state machine: a chat stream is a sequence of deltas (reasoning_content,
 * content, tool_calls fragments per index), then a finish reason, a usage chunk and
 * [DONE]. The other two APIs want it as a sequence of output items (a reasoning item or
 * thinking block, a message or text block, one item per function call), each opened, fed
 * deltas and closed, in order. The machine keeps the item being fed ("open"), closes it
 * when a delta of another kind arrives, and calls the API's emitters
 * (struct srv_adapt_events) at each step, so each API file only says what its events look
 * like. The items are kept whole (text and arguments accumulated), because both APIs end
 * with the complete object (response.completed carries the whole response).
 *
 * The glue converts a body with the API's converter, hands the resulting chat request to
 * cellm_srv_parse_opts (so validation, the chat template and tokenization are the chat
 * path's), and renames the parameter an error names to the API's field. Results are
 * converted from the chat.completion object api_out.c builds, streams from its SSE text.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt.h"
#include "base/json.h"

/* ---- the SSE buffer ------------------------------------------------------------------------ */

void cellm_srv_buf_add(struct srv_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void cellm_srv_buf_free(struct srv_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void cellm_srv_buf_event(struct srv_buf *b, const char *name, cJSON *o)
{
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!t) {
        b->oom = 1;
        return;
    }
    cellm_srv_buf_add(b, "event: ", 7);
    cellm_srv_buf_add(b, name, strlen(name));
    cellm_srv_buf_add(b, "\ndata: ", 7);
    cellm_srv_buf_add(b, t, strlen(t));
    cellm_srv_buf_add(b, "\n\n", 2);
    cJSON_free(t);
}

/* ---- results -------------------------------------------------------------------------------- */

const cJSON *cellm_srv_adapt_get(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

const char *cellm_srv_adapt_str(const cJSON *o, const char *k)
{
    const cJSON *j = cellm_srv_adapt_get(o, k);
    return cJSON_IsString(j) ? j->valuestring : NULL;
}

int cellm_srv_adapt_bad(struct srv_error *e, const char *key, const char *want)
{
    cellm_srv_errorf(e, 400, key, "'%s' must be %s", key, want);
    e->code = "invalid_type";
    return -1;
}

static int push_item(struct srv_adapt_item **items, int *n, int *cap, char kind)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 4;
        struct srv_adapt_item *p = realloc(*items, (size_t)c * sizeof *p);
        if (!p) return -1;
        *items = p;
        *cap = c;
    }
    memset(&(*items)[*n], 0, sizeof **items);
    (*items)[*n].kind = kind;
    return (*n)++;
}

void cellm_srv_adapt_items_free(struct srv_adapt_item *items, int n)
{
    for (int k = 0; k < n; k++) {
        free(items[k].call_id);
        free(items[k].name);
        cellm_srv_buf_free(&items[k].text);
    }
    free(items);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s ? s : "");
}

int cellm_srv_adapt_items(const cJSON *chat, struct srv_adapt_item **items, int *n,
                          const char **finish)
{
    *items = NULL;
    *n = 0;
    int cap = 0, oom = 0;
    const cJSON *ch = cellm_srv_adapt_get(chat, "choices");
    const cJSON *c = cJSON_IsArray(ch) ? ch->child : NULL;
    const cJSON *msg = cellm_srv_adapt_get(c, "message");
    *finish =
        cellm_srv_adapt_str(c, "finish_reason") ? cellm_srv_adapt_str(c, "finish_reason") : "stop";
    const char *rs = cellm_srv_adapt_str(msg, "reasoning_content"),
               *tx = cellm_srv_adapt_str(msg, "content");
    const cJSON *tc = cellm_srv_adapt_get(msg, "tool_calls");
    int k;
    if (rs && rs[0]) {
        if ((k = push_item(items, n, &cap, 'r')) < 0) return -1;
        cellm_srv_buf_add(&(*items)[k].text, rs, strlen(rs));
    }
    /* an answer that is only tool calls has no text item; an empty answer has an empty one */
    if ((tx && tx[0]) || !cJSON_GetArraySize(tc)) {
        if ((k = push_item(items, n, &cap, 't')) < 0) return -1;
        cellm_srv_buf_add(&(*items)[k].text, tx ? tx : "", tx ? strlen(tx) : 0);
    }
    const cJSON *t, *calls = cJSON_IsArray(tc) ? tc : NULL;
    cJSON_ArrayForEach(t, calls)
    {
        if ((k = push_item(items, n, &cap, 'f')) < 0) return -1;
        struct srv_adapt_item *it = &(*items)[k];
        const cJSON *fn = cellm_srv_adapt_get(t, "function"),
                    *args = cellm_srv_adapt_get(fn, "arguments");
        it->tc_index = k;
        it->call_id = dup_or_empty(cellm_srv_adapt_str(t, "id"));
        it->name = dup_or_empty(cellm_srv_adapt_str(fn, "name"));
        oom |= !it->call_id || !it->name;
        char *a = cJSON_IsString(args) ? NULL : args ? cJSON_PrintUnformatted(args) : NULL;
        const char *as = cJSON_IsString(args) ? args->valuestring : a ? a : "{}";
        cellm_srv_buf_add(&it->text, as, strlen(as));
        cJSON_free(a);
    }
    for (k = 0; k < *n; k++)
        oom |= (*items)[k].text.oom;
    return oom ? -1 : 0;
}

cJSON *cellm_srv_adapt_result(enum srv_api api, const cJSON *chat, const struct srv_adapt_meta *m)
{
    struct srv_adapt_item *items;
    int n;
    const char *finish;
    cJSON *o = NULL;
    if (!cellm_srv_adapt_items(chat, &items, &n, &finish))
        o = api == SRV_API_MESSAGES
                ? cellm_srv_messages_object(m, items, n, finish, cellm_srv_adapt_get(chat, "usage"))
                : cellm_srv_responses_object(m, items, n, finish,
                                             cellm_srv_adapt_get(chat, "usage"), 0);
    cellm_srv_adapt_items_free(items, n);
    return o;
}

/* ---- streams -------------------------------------------------------------------------------- */

static const struct srv_adapt_events *events_of(enum srv_api api)
{
    return api == SRV_API_MESSAGES ? &cellm_srv_messages_events : &cellm_srv_responses_events;
}

struct srv_adapt_stream *cellm_srv_adapt_stream_new(enum srv_api api)
{
    struct srv_adapt_stream *st = calloc(1, sizeof *st);
    if (st) {
        st->api = api;
        st->open = -1;
    }
    return st;
}

void cellm_srv_adapt_stream_free(struct srv_adapt_stream *st)
{
    if (!st) return;
    cellm_srv_adapt_items_free(st->items, st->n_items);
    free(st->finish);
    cJSON_Delete(st->usage);
    free(st);
}

static void close_open(struct srv_adapt_stream *st, const struct srv_adapt_meta *m,
                       struct srv_buf *b)
{
    if (st->open < 0) return;
    events_of(st->api)->close(st, m, st->open, b);
    st->open = -1;
}

/* Opens a new item of this kind (closing the open one); its index, or -1 (b->oom set). */
static int open_item(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, char kind,
                     int tc_index, const char *call_id, const char *name, struct srv_buf *b)
{
    close_open(st, m, b);
    int k = push_item(&st->items, &st->n_items, &st->cap_items, kind);
    if (k < 0) {
        b->oom = 1;
        return -1;
    }
    struct srv_adapt_item *it = &st->items[k];
    it->tc_index = tc_index;
    if (kind == 'f') {
        char gen[96];
        snprintf(gen, sizeof gen, "call_%s_%d", m->id, k);
        it->call_id = strdup(call_id && call_id[0] ? call_id : gen);
        it->name = dup_or_empty(name);
        if (!it->call_id || !it->name) {
            b->oom = 1;
            return -1;
        }
    }
    st->open = k;
    events_of(st->api)->open(st, m, k, b);
    return k;
}

static void add_delta(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                      const char *frag, struct srv_buf *b)
{
    cellm_srv_buf_add(&st->items[k].text, frag, strlen(frag));
    if (st->items[k].text.oom) b->oom = 1;
    events_of(st->api)->delta(st, m, k, frag, b);
}

static void text_delta(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, char kind,
                       const char *frag, struct srv_buf *b)
{
    if (!frag || !frag[0]) return;
    int k = st->open;
    if (k < 0 || st->items[k].kind != kind) k = open_item(st, m, kind, 0, NULL, NULL, b);
    if (k >= 0) add_delta(st, m, k, frag, b);
}

static void tool_deltas(struct srv_adapt_stream *st, const struct srv_adapt_meta *m,
                        const cJSON *tcs, struct srv_buf *b)
{
    const cJSON *t;
    int pos = 0;
    cJSON_ArrayForEach(t, tcs)
    {
        const cJSON *ix = cellm_srv_adapt_get(t, "index"), *fn = cellm_srv_adapt_get(t, "function");
        int index = cJSON_IsNumber(ix) ? ix->valueint : pos;
        pos++;
        int k = -1;
        for (int i = 0; i < st->n_items; i++)
            if (st->items[i].kind == 'f' && st->items[i].tc_index == index) k = i;
        if (k < 0)
            k = open_item(st, m, 'f', index, cellm_srv_adapt_str(t, "id"),
                          cellm_srv_adapt_str(fn, "name"), b);
        const char *args = cellm_srv_adapt_str(fn, "arguments");
        if (k >= 0 && args && args[0]) add_delta(st, m, k, args, b);
    }
}

void cellm_srv_adapt_stream_feed(struct srv_adapt_stream *st, const struct srv_adapt_meta *m,
                                 const cJSON *chunk, struct srv_buf *b)
{
    const struct srv_adapt_events *ev = events_of(st->api);
    if (st->ended) return;
    const cJSON *err = cellm_srv_adapt_get(chunk, "error");
    if (err) {
        ev->error(st, err, b);
        st->ended = 1;
        return;
    }
    if (!st->started) {
        ev->start(st, m, b);
        st->started = 1;
    }
    if (!chunk) {
        close_open(st, m, b);
        if (!st->n_items && open_item(st, m, 't', 0, NULL, NULL, b) >= 0) close_open(st, m, b);
        ev->end(st, m, b);
        st->ended = 1;
        return;
    }
    const cJSON *u = cellm_srv_adapt_get(chunk, "usage");
    if (cJSON_IsObject(u)) {
        cJSON_Delete(st->usage);
        if (!(st->usage = cJSON_Duplicate(u, 1))) b->oom = 1;
    }
    const cJSON *chs = cellm_srv_adapt_get(chunk, "choices");
    const cJSON *c = cJSON_IsArray(chs) ? chs->child : NULL;
    if (!c) return;
    const cJSON *d = cellm_srv_adapt_get(c, "delta");
    text_delta(st, m, 'r', cellm_srv_adapt_str(d, "reasoning_content"), b);
    text_delta(st, m, 't', cellm_srv_adapt_str(d, "content"), b);
    const cJSON *tcs = cellm_srv_adapt_get(d, "tool_calls");
    if (cJSON_IsArray(tcs)) tool_deltas(st, m, tcs, b);
    const char *fin = cellm_srv_adapt_str(c, "finish_reason");
    if (fin) {
        close_open(st, m, b);
        free(st->finish);
        if (!(st->finish = strdup(fin))) b->oom = 1;
    }
}

/* ---- errors -----------------------------------------------------------------------------------
 */

const char *cellm_srv_messages_error_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

char *cellm_srv_adapt_error_json(enum srv_api api, const struct srv_error *e)
{
    if (api != SRV_API_MESSAGES) return cellm_srv_error_json(e);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "error");
    cJSON *x = cJSON_AddObjectToObject(o, "error");
    cJSON_AddStringToObject(x, "type", cellm_srv_messages_error_type(e->status));
    cJSON_AddStringToObject(x, "message", e->msg);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

/* ---- the server's side ------------------------------------------------------------------------
 */

/* The chat path's parameter names, as the API calls them. */
static void rename_param(enum srv_api api, struct srv_error *e)
{
    static const char *const resp[][2] = {{"max_tokens", "max_output_tokens"},
                                          {"messages", "input"},
                                          {"response_format", "text.format"},
                                          {"chat_template_kwargs", "reasoning"}};
    static const char *const msgs[][2] = {{"stop", "stop_sequences"},
                                          {"messages", "messages"},
                                          {"chat_template_kwargs", "thinking"},
                                          {"parallel_tool_calls", "tool_choice"}};
    const char *const(*t)[2] = api == SRV_API_MESSAGES ? msgs : resp;
    size_t n = api == SRV_API_MESSAGES ? sizeof msgs / sizeof *msgs : sizeof resp / sizeof *resp;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(t[i][0]);
        if (!strncmp(e->param, t[i][0], l) && (!e->param[l] || e->param[l] == '[')) {
            snprintf(e->param, sizeof e->param, "%s", t[i][1]);
            return;
        }
    }
}

static cJSON *parse_body(const char *body, size_t len, struct srv_error *e)
{
    struct cellm_error je;
    if (cellm_json_check_strict(body, len, "the request body", 64, &je)) {
        cellm_srv_errorf(e, 400, NULL, "%s", je.msg);
        e->code = "invalid_json";
        return NULL;
    }
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        cellm_srv_errorf(e, 400, NULL, "the request body must be a JSON object");
        e->code = "invalid_json";
        return NULL;
    }
    return o;
}

/* The body converted and parsed as a chat request (not submitted). */
static int adapt_parse(struct cellm_server *s, enum srv_api api, int count, const char *body,
                       size_t len, const _Atomic int *cancel, pthread_cond_t *wake,
                       struct srv_req **out, struct srv_error *e)
{
    *out = NULL;
    memset(e, 0, sizeof *e);
    cJSON *in = parse_body(body, len, e), *echo = NULL, *chat = NULL;
    if (!in) return -1;
    chat = api == SRV_API_MESSAGES
               ? cellm_srv_messages_request(in, count, e)
               : cellm_srv_responses_request(in, s->items ? cellm_srv_store_get : NULL, s->items,
                                             &echo, e);
    cJSON_Delete(in);
    char *txt = chat ? cJSON_PrintUnformatted(chat) : NULL;
    char *etxt = echo ? cJSON_PrintUnformatted(echo) : NULL;
    cJSON_Delete(chat);
    cJSON_Delete(echo);
    int rc = -1;
    if (!txt || (echo && !etxt)) {
        if (!e->status) cellm_srv_errorf(e, 500, NULL, "out of memory");
    } else if (cellm_srv_parse_opts(s, 1, txt, strlen(txt), cancel, wake, out, e)) {
        rename_param(api, e);
    } else {
        (*out)->p.api = api;
        (*out)->p.echo = etxt;
        etxt = NULL;
        rc = 0;
    }
    cJSON_free(txt);
    cJSON_free(etxt);
    return rc;
}

int cellm_srv_adapt_parse(struct cellm_server *s, enum srv_api api, const char *body, size_t len,
                          const _Atomic int *cancel, pthread_cond_t *wake, struct srv_req **out,
                          struct srv_error *e)
{
    return adapt_parse(s, api, 0, body, len, cancel, wake, out, e);
}

int cellm_srv_messages_count(struct cellm_server *s, const char *body, size_t len,
                             const _Atomic int *cancel, char **out, struct srv_error *e)
{
    struct srv_req *r;
    if (adapt_parse(s, SRV_API_MESSAGES, 1, body, len, cancel, NULL, &r, e)) return -1;
    char buf[64];
    snprintf(buf, sizeof buf, "{\"input_tokens\":%d}", r->p.n_prompt);
    cellm_srv_req_free(r);
    if (!(*out = strdup(buf))) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    return 0;
}

/* The stop string that ended choice 0, if one did: the engine cuts the text where the
 * stop string starts, so the decoded ids continue with it there (after an end-of-sequence
 * token they continue with nothing). */
static const char *stop_hit(const struct cellm_server *s, const struct srv_req *r)
{
    const struct srv_choice *c = &r->ch[0];
    if (r->p.api != SRV_API_MESSAGES || !c->done || !r->p.n_stop || !s->tok || !c->finish ||
        strcmp(c->finish, "stop"))
        return NULL;
    char *full = NULL;
    struct cellm_error ce;
    if (!c->n_ids || cellm_tokenizer_decode(s->tok, c->ids, (size_t)c->n_ids, 0, &full, &ce) ||
        !full)
        return NULL;
    const char *hit = NULL;
    if (strlen(full) >= c->text_len)
        for (int i = 0; i < r->p.n_stop && !hit; i++)
            if (!strncmp(full + c->text_len, r->p.stop[i], strlen(r->p.stop[i])))
                hit = r->p.stop[i];
    free(full);
    return hit;
}

/* Fills m for r (idbuf holds the id; *echo is to be freed). */
static void meta_of(const struct cellm_server *s, const struct srv_req *r, struct srv_adapt_meta *m,
                    char *idbuf, size_t idlen, cJSON **echo)
{
    const char *dash = strchr(r->id, '-');
    snprintf(idbuf, idlen, "%s%s", r->p.api == SRV_API_MESSAGES ? "msg_" : "resp_",
             dash ? dash + 1 : r->id);
    *echo = r->p.echo ? cJSON_Parse(r->p.echo) : NULL;
    *m = (struct srv_adapt_meta){.id = idbuf,
                                 .model = s->o.model_name,
                                 .created = r->created,
                                 .n_prompt = r->p.n_prompt,
                                 .n_cached = r->ch[0].n_cached,
                                 .stop_sequence = stop_hit(s, r),
                                 .echo = *echo};
}

/* Whether r's output items go to the item store (Responses, unless store: false). */
static int keep_items(const struct cellm_server *s, const struct srv_req *r,
                      const struct srv_adapt_meta *m)
{
    const cJSON *st = m->echo ? cJSON_GetObjectItemCaseSensitive(m->echo, "store") : NULL;
    return s->items && r->p.api == SRV_API_RESPONSES && !cJSON_IsFalse(st);
}

char *cellm_srv_adapt_response(const struct cellm_server *s, const struct srv_req *r, cJSON *chat)
{
    struct srv_adapt_meta m;
    char id[80];
    cJSON *echo;
    meta_of(s, r, &m, id, sizeof id, &echo);
    cJSON *o = cellm_srv_adapt_result((enum srv_api)r->p.api, chat, &m);
    if (o && keep_items(s, r, &m)) cellm_srv_store_response(s->items, o);
    char *t = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    cJSON_Delete(chat);
    cJSON_Delete(echo);
    return t;
}

char *cellm_srv_adapt_events(const struct cellm_server *s, const struct srv_req *r,
                             struct srv_stream_pos *pos, char *ev)
{
    if (!ev) return NULL;
    if (!pos->adapt && !(pos->adapt = cellm_srv_adapt_stream_new((enum srv_api)r->p.api))) {
        free(ev);
        return NULL;
    }
    struct srv_adapt_meta m;
    char id[80];
    cJSON *echo;
    meta_of(s, r, &m, id, sizeof id, &echo);
    struct srv_buf b = {0};
    cellm_srv_buf_add(&b, "", 0);
    /* records are "data: JSON\n\n", back to back (api_out.c writes them; JSON never holds a
     * raw newline, so the blank line ends a record) */
    for (char *p = ev; !strncmp(p, "data: ", 6) && !b.oom;) {
        p += 6;
        char *end = strstr(p, "\n\n");
        if (!end) break;
        *end = 0;
        if (!strcmp(p, "[DONE]")) {
            cellm_srv_adapt_stream_feed(pos->adapt, &m, NULL, &b);
        } else {
            cJSON *c = cJSON_Parse(p);
            if (!c)
                b.oom = 1;
            else
                cellm_srv_adapt_stream_feed(pos->adapt, &m, c, &b);
            cJSON_Delete(c);
        }
        p = end + 2;
    }
    free(ev);
    struct srv_adapt_stream *st = pos->adapt;
    if (st->ended && !st->stored && st->finish && keep_items(s, r, &m)) {
        /* the whole response, as response.completed carried it */
        cJSON *o = cellm_srv_responses_object(&m, st->items, st->n_items, st->finish, st->usage, 0);
        if (o) cellm_srv_store_response(s->items, o);
        cJSON_Delete(o);
        st->stored = 1;
    }
    cJSON_Delete(echo);
    if (b.oom) {
        cellm_srv_buf_free(&b);
        return NULL;
    }
    return b.p;
}
