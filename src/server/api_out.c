/*
 * api_out.c: response bodies in OpenAI's shapes (api.c reads the requests).
 *
 * The whole body of a finished request (cellm_srv_response_json), and for a stream the
 * SSE events of whatever output a client has not seen yet (cellm_srv_stream_events,
 * called under the server mutex by http_wait.c's content reader): a role chunk first
 * (chat), per choice its new reasoning (delta.reasoning_content), text, ids and logprobs,
 * its tool calls (delta.tool_calls: a head with index, id, type, function.name and
 * empty arguments, then the arguments in pieces as the model writes them, as OpenAI and
 * vLLM stream them) and, once done, its finish chunk;
 * then the usage chunk (stream_options.include_usage) and [DONE], or an error event.
 * Logprobs are those the engine computed (log-softmax of the raw logits) in the
 * endpoint's shape. Also the one-line request log.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "adapt.h"
#include "srv.h"

/* ---- responses -------------------------------------------------------------------------- */

static void add_ids(cJSON *o, const char *key, const int32_t *ids, int n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
}

static cJSON *usage(const struct srv_req *r)
{
    int gen = 0;
    for (int k = 0; k < r->p.n; k++)
        gen += r->ch[k].n_ids;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", r->p.n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", gen);
    cJSON_AddNumberToObject(u, "total_tokens", r->p.n_prompt + gen);
    cJSON *d = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    cJSON_AddNumberToObject(d, "cached_tokens", r->ch[0].n_cached);
    return u;
}

static cJSON *head(const struct cellm_server *s, const struct srv_req *r, const char *object)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "object", object);
    cJSON_AddNumberToObject(o, "created", (double)r->created);
    cJSON_AddStringToObject(o, "model", s->o.model_name);
    cJSON_AddStringToObject(o, "system_fingerprint", "cellm");
    return o;
}

static char *print(cJSON *o)
{
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return t;
}

char *cellm_srv_token_text(const struct cellm_server *s, int32_t id)
{
    char *t = NULL;
    struct cellm_error ce;
    if (s->tok && !cellm_tokenizer_decode(s->tok, &id, 1, 0, &t, &ce)) return t;
    return strdup("");
}

static void add_bytes(cJSON *o, const char *t)
{
    cJSON *b = cJSON_AddArrayToObject(o, "bytes");
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        cJSON_AddItemToArray(b, cJSON_CreateNumber(*p));
}

/* Logprobs of ids [from, to) of a choice, in the endpoint's shape: chat
 * {"content": [{token, logprob, bytes, top_logprobs: [...]}]}; completions
 * {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}. */
static cJSON *logprobs_json(const struct cellm_server *s, const struct srv_req *r,
                            const struct srv_choice *c, int from, int to, size_t text_off)
{
    int nt = r->p.logprobs, stride = nt ? nt : 1;
    cJSON *o = cJSON_CreateObject();
    if (r->p.chat) {
        cJSON *a = cJSON_AddArrayToObject(o, "content");
        for (int i = from; i < to; i++) {
            cJSON *x = cJSON_CreateObject();
            char *t = cellm_srv_token_text(s, c->ids[i]);
            cJSON_AddStringToObject(x, "token", t ? t : "");
            cJSON_AddNumberToObject(x, "logprob", c->lp[i].logprob);
            add_bytes(x, t ? t : "");
            free(t);
            cJSON *tl = cJSON_AddArrayToObject(x, "top_logprobs");
            for (int k = 0; k < nt; k++) {
                const struct cellm_logprob *lp = &c->top[(size_t)i * stride + k];
                cJSON *y = cJSON_CreateObject();
                char *u = cellm_srv_token_text(s, lp->id);
                cJSON_AddStringToObject(y, "token", u ? u : "");
                cJSON_AddNumberToObject(y, "logprob", lp->logprob);
                add_bytes(y, u ? u : "");
                free(u);
                cJSON_AddItemToArray(tl, y);
            }
            cJSON_AddItemToArray(a, x);
        }
        return o;
    }
    cJSON *tk = cJSON_AddArrayToObject(o, "tokens"),
          *tl = cJSON_AddArrayToObject(o, "token_logprobs");
    cJSON *top = cJSON_AddArrayToObject(o, "top_logprobs"),
          *off = cJSON_AddArrayToObject(o, "text_offset");
    for (int i = from; i < to; i++) {
        char *t = cellm_srv_token_text(s, c->ids[i]);
        cJSON_AddItemToArray(tk, cJSON_CreateString(t ? t : ""));
        cJSON_AddItemToArray(tl, cJSON_CreateNumber(c->lp[i].logprob));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)text_off));
        text_off += t ? strlen(t) : 0;
        free(t);
        cJSON *m = cJSON_CreateObject();
        for (int k = 0; k < nt; k++) {
            const struct cellm_logprob *lp = &c->top[(size_t)i * stride + k];
            char *u = cellm_srv_token_text(s, lp->id);
            if (!cJSON_GetObjectItemCaseSensitive(m, u ? u : ""))
                cJSON_AddNumberToObject(m, u ? u : "", lp->logprob);
            free(u);
        }
        cJSON_AddItemToArray(top, m);
    }
    return o;
}

static int blank(const char *t)
{
    for (; t && *t; t++)
        if (*t != ' ' && *t != '\n' && *t != '\r' && *t != '\t') return 0;
    return 1;
}

/* A tool call in a message (index < 0), or in a stream's delta: its head (id, type, name,
 * arguments "") or its arguments alone (head = 0). */
static cJSON *call_json(const struct srv_call *k, int index, int head)
{
    cJSON *o = cJSON_CreateObject();
    if (index >= 0) cJSON_AddNumberToObject(o, "index", index);
    if (head) {
        cJSON_AddStringToObject(o, "id", k->id);
        cJSON_AddStringToObject(o, "type", "function");
    }
    cJSON *f = cJSON_AddObjectToObject(o, "function");
    if (head) cJSON_AddStringToObject(f, "name", k->name);
    cJSON_AddStringToObject(f, "arguments", head && index >= 0 ? "" : k->args);
    return o;
}

char *cellm_srv_response_json(const struct cellm_server *s, const struct srv_req *r)
{
    int chat = r->p.chat;
    cJSON *o = head(s, r, chat ? "chat.completion" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices");
    for (int k = 0; k < r->p.n; k++) {
        const struct srv_choice *cc = &r->ch[k];
        cJSON *c = cJSON_CreateObject();
        cJSON_AddItemToArray(ch, c);
        cJSON_AddNumberToObject(c, "index", k);
        char *text = strndup(cc->text ? cc->text : "", cc->text_len);
        if (chat) {
            cJSON *m = cJSON_AddObjectToObject(c, "message");
            cJSON_AddStringToObject(m, "role", "assistant");
            /* with tool calls and no other text, content is null, as OpenAI sends it */
            if (cc->n_calls && blank(text))
                cJSON_AddNullToObject(m, "content");
            else
                cJSON_AddStringToObject(m, "content", text ? text : "");
            if (cc->reasoning_len) cJSON_AddStringToObject(m, "reasoning_content", cc->reasoning);
            if (cc->n_calls) {
                cJSON *tc = cJSON_AddArrayToObject(m, "tool_calls");
                for (int i = 0; i < cc->n_calls; i++)
                    cJSON_AddItemToArray(tc, call_json(&cc->calls[i], -1, 1));
            }
        } else {
            cJSON_AddStringToObject(c, "text", text ? text : "");
        }
        free(text);
        if (r->p.logprobs >= 0)
            cJSON_AddItemToObject(c, "logprobs", logprobs_json(s, r, cc, 0, cc->n_ids, 0));
        else
            cJSON_AddNullToObject(c, "logprobs");
        cJSON_AddStringToObject(c, "finish_reason", cc->finish ? cc->finish : "stop");
        if (r->p.return_ids) add_ids(c, "token_ids", cc->ids, cc->n_ids);
    }
    cJSON_AddItemToObject(o, "usage", usage(r));
    /* /v1/responses, /v1/messages: the chat result in the other API's shape */
    if (r->p.api) return cellm_srv_adapt_response(s, r, o);
    return print(o);
}

static char *sse(cJSON *o)
{
    char *t = print(o);
    if (!t) return NULL;
    size_t n = strlen(t);
    char *ev = malloc(n + 9);
    if (ev) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, t, n);
        memcpy(ev + 6 + n, "\n\n", 3);
    }
    cJSON_free(t);
    return ev;
}

/* One streamed chunk of choice k: role (chat's first), new text, ids [from, to), finish. */
static char *chunk(const struct cellm_server *s, const struct srv_req *r, int k, int role,
                   size_t text_from, size_t text_to, int from, int to, const char *finish)
{
    const struct srv_choice *cc = &r->ch[k];
    int chat = r->p.chat;
    cJSON *o = head(s, r, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", k);
    size_t tn = text_to - text_from;
    char *t = strndup(tn ? cc->text + text_from : "", tn);
    if (chat) {
        cJSON *d = cJSON_AddObjectToObject(c, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (role || tn || !finish) cJSON_AddStringToObject(d, "content", t ? t : "");
    } else {
        cJSON_AddStringToObject(c, "text", t ? t : "");
    }
    free(t);
    if (r->p.logprobs >= 0 && to > from)
        cJSON_AddItemToObject(c, "logprobs", logprobs_json(s, r, cc, from, to, text_from));
    else
        cJSON_AddNullToObject(c, "logprobs");
    if (finish)
        cJSON_AddStringToObject(c, "finish_reason", finish);
    else
        cJSON_AddNullToObject(c, "finish_reason");
    if (r->p.return_ids) add_ids(c, "token_ids", cc->ids + from, to - from);
    if (r->p.include_usage) cJSON_AddNullToObject(o, "usage");
    return sse(o);
}

/* A chat chunk of choice k whose delta is d (reasoning or a tool call's piece). */
static char *delta_chunk(const struct cellm_server *s, const struct srv_req *r, int k, cJSON *d)
{
    cJSON *o = head(s, r, "chat.completion.chunk");
    cJSON *ch = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject();
    cJSON_AddItemToArray(ch, c);
    cJSON_AddNumberToObject(c, "index", k);
    cJSON_AddItemToObject(c, "delta", d);
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddNullToObject(c, "finish_reason");
    if (r->p.include_usage) cJSON_AddNullToObject(o, "usage");
    return sse(o);
}

static char *reasoning_chunk(const struct cellm_server *s, const struct srv_req *r, int k,
                             size_t from, size_t to)
{
    char *t = strndup(r->ch[k].reasoning + from, to - from);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "reasoning_content", t ? t : "");
    free(t);
    return delta_chunk(s, r, k, d);
}

/* Tool call i of choice k, as OpenAI streams one: its head, then its arguments in pieces
 * (here bytes from..to of them). */
static char *call_chunk(const struct cellm_server *s, const struct srv_req *r, int k, int i,
                        int head_part, size_t from, size_t to)
{
    const struct srv_call *c = &r->ch[k].calls[i];
    cJSON *d = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(d, "tool_calls");
    if (head_part) {
        cJSON_AddItemToArray(a, call_json(c, i, 1));
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "index", i);
        char *piece = strndup(c->args + from, to - from);
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "function"), "arguments",
                                piece ? piece : "");
        free(piece);
        cJSON_AddItemToArray(a, o);
    }
    return delta_chunk(s, r, k, d);
}

int cellm_srv_stream_pos_init(struct srv_stream_pos *pos, int n)
{
    memset(pos, 0, sizeof *pos);
    pos->sent_text = calloc((size_t)n, sizeof *pos->sent_text);
    pos->sent_ids = calloc((size_t)n, sizeof *pos->sent_ids);
    pos->finish_sent = calloc((size_t)n, sizeof *pos->finish_sent);
    pos->sent_reasoning = calloc((size_t)n, sizeof *pos->sent_reasoning);
    pos->sent_calls = calloc((size_t)n, sizeof *pos->sent_calls);
    pos->sent_args = calloc((size_t)n, sizeof *pos->sent_args);
    return pos->sent_text && pos->sent_ids && pos->finish_sent && pos->sent_reasoning &&
                   pos->sent_calls && pos->sent_args
               ? 0
               : -1;
}

void cellm_srv_stream_pos_free(struct srv_stream_pos *pos)
{
    cellm_srv_adapt_stream_free(pos->adapt);
    free(pos->sent_text);
    free(pos->sent_ids);
    free(pos->finish_sent);
    free(pos->sent_reasoning);
    free(pos->sent_calls);
    free(pos->sent_args);
}

int cellm_srv_stream_pending(const struct srv_req *r, const struct srv_stream_pos *pos)
{
    if (r->done || (r->p.chat && !pos->role_sent)) return 1;
    for (int k = 0; k < r->p.n; k++) {
        const struct srv_choice *c = &r->ch[k];
        if (c->text_len > pos->sent_text[k] || c->n_ids > pos->sent_ids[k] ||
            c->reasoning_len > pos->sent_reasoning[k] || c->n_calls > pos->sent_calls[k] ||
            (c->done && !pos->finish_sent[k]))
            return 1;
        if (pos->sent_calls[k] && c->calls[pos->sent_calls[k] - 1].args_len > pos->sent_args[k])
            return 1;
    }
    return 0;
}

static int cat(char **buf, size_t *len, char *ev)
{
    if (!ev) return -1;
    size_t n = strlen(ev);
    char *b = realloc(*buf, *len + n + 1);
    if (!b) {
        free(ev);
        return -1;
    }
    memcpy(b + *len, ev, n + 1);
    *buf = b;
    *len += n;
    free(ev);
    return 0;
}

/* The arguments of the last call whose head was sent, as far as they have arrived. */
static int call_args_events(const struct cellm_server *s, const struct srv_req *r, int k,
                            struct srv_stream_pos *pos, char **out, size_t *len)
{
    int i = pos->sent_calls[k] - 1;
    if (i < 0 || r->ch[k].calls[i].args_len <= pos->sent_args[k]) return 0;
    char *ev = call_chunk(s, r, k, i, 0, pos->sent_args[k], r->ch[k].calls[i].args_len);
    pos->sent_args[k] = r->ch[k].calls[i].args_len;
    return cat(out, len, ev);
}

static char *chat_events(const struct cellm_server *s, const struct srv_req *r,
                         struct srv_stream_pos *pos)
{
    char *out = NULL;
    size_t len = 0;
    int rc = 0;
    if (r->failed) {
        char *j = cellm_srv_error_json(&r->err);
        char *ev = j ? malloc(strlen(j) + 9) : NULL;
        if (ev) snprintf(ev, strlen(j) + 9, "data: %s\n\n", j);
        free(j);
        rc = cat(&out, &len, ev);
        return rc ? (free(out), NULL) : out;
    }
    if (r->p.chat && !pos->role_sent) {
        for (int k = 0; k < r->p.n && !rc; k++)
            rc = cat(&out, &len, chunk(s, r, k, 1, 0, 0, 0, 0, NULL));
        pos->role_sent = 1;
    }
    for (int k = 0; k < r->p.n && !rc; k++) {
        const struct srv_choice *c = &r->ch[k];
        size_t t0 = pos->sent_text[k];
        int i0 = pos->sent_ids[k];
        int more_ids = c->n_ids > i0 && (r->p.return_ids || r->p.logprobs >= 0);
        /* the arguments of a call in progress come first (anything newer follows the
         * call), then thoughts before the answer they lead to, calls after it */
        rc = call_args_events(s, r, k, pos, &out, &len);
        if (!rc && c->reasoning_len > pos->sent_reasoning[k])
            rc =
                cat(&out, &len, reasoning_chunk(s, r, k, pos->sent_reasoning[k], c->reasoning_len));
        pos->sent_reasoning[k] = c->reasoning_len;
        if (!rc && (c->text_len > t0 || more_ids))
            rc = cat(&out, &len, chunk(s, r, k, 0, t0, c->text_len, i0, c->n_ids, NULL));
        pos->sent_text[k] = c->text_len;
        pos->sent_ids[k] = c->n_ids;
        while (!rc && pos->sent_calls[k] < c->n_calls) {
            rc = cat(&out, &len, call_chunk(s, r, k, pos->sent_calls[k], 1, 0, 0));
            pos->sent_calls[k]++;
            pos->sent_args[k] = 0;
            if (!rc) rc = call_args_events(s, r, k, pos, &out, &len);
        }
        if (!rc && c->done && !pos->finish_sent[k]) {
            rc = cat(&out, &len,
                     chunk(s, r, k, 0, c->text_len, c->text_len, c->n_ids, c->n_ids,
                           c->finish ? c->finish : "stop"));
            pos->finish_sent[k] = 1;
        }
    }
    if (!rc && r->done) {
        if (r->p.include_usage) {
            cJSON *o = head(s, r, r->p.chat ? "chat.completion.chunk" : "text_completion");
            cJSON_AddArrayToObject(o, "choices");
            cJSON_AddItemToObject(o, "usage", usage(r));
            rc = cat(&out, &len, sse(o));
        }
        if (!rc) rc = cat(&out, &len, strdup("data: [DONE]\n\n"));
    }
    if (rc) {
        free(out);
        return NULL;
    }
    return out ? out : strdup("");
}

char *cellm_srv_stream_events(const struct cellm_server *s, const struct srv_req *r,
                              struct srv_stream_pos *pos)
{
    char *ev = chat_events(s, r, pos);
    /* /v1/responses, /v1/messages: the chat events in the other API's shape */
    return r->p.api ? cellm_srv_adapt_events(s, r, pos, ev) : ev;
}

/* ---- request log ------------------------------------------------------------------------ */

void cellm_srv_log(const struct cellm_server *s, const char *method, const char *url, int status,
                   int n_prompt, int n_cached, int n_gen, double t_start)
{
    if (!s->o.log_requests) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double dt = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec - t_start;
    if (n_prompt > 0)
        fprintf(stderr, "cellm serve: %s %s %d prompt=%d cached=%d generated=%d %.3fs\n", method,
                url, status, n_prompt, n_cached, n_gen, dt);
    else
        fprintf(stderr, "cellm serve: %s %s %d %.3fs\n", method, url, status, dt);
}
