/*
 * api_messages.c: POST /v1/messages (Anthropic's Messages API) and
 * /v1/messages/count_tokens as an adapter over chat completions (see adapt.h).
 *
 * Request: `model`, `max_tokens` (required, as Anthropic requires it), `system` (a string
 * or text blocks), `messages` whose content is a string or blocks: `text`, `tool_use`
 * (an assistant's call: chat tool_calls, input as the arguments' JSON), `tool_result`
 * (a tool message; content a string or text blocks; `is_error: true` prefixes the content
 * with "Error: ", the one way a chat template can see it), `thinking` (the assistant's
 * reasoning_content); `tools` ({name, description, input_schema}: function tools),
 * `tool_choice` (auto, any = required, tool = a named function, none;
 * disable_parallel_tool_use = parallel_tool_calls false), `stop_sequences`,
 * `temperature`, `top_p`, `top_k`, `stream`, `thinking` ({type: enabled | disabled}: the
 * template's enable_thinking; budget_tokens is not enforced). Accepted without effect:
 * `metadata`, `service_tier`, `cache_control` on blocks (the prefix cache is automatic).
 * Refused by name: images, documents, redacted thinking, server tools (bash, web search,
 * ...), `container`, `mcp_servers` and any unknown field.
 *
 * Result: the message object (content blocks thinking / text / tool_use, stop_reason
 * end_turn, max_tokens, stop_sequence with the sequence, or tool_use; usage with
 * input_tokens not counting cache_read_input_tokens, as Anthropic counts them). Stream:
 * message_start, ping, content_block_start / _delta (text_delta, thinking_delta,
 * input_json_delta) / _stop per block, message_delta (stop_reason, usage), message_stop;
 * a failure is an `error` event. Errors have Anthropic's shape (api_adapt.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt.h"

/* ---- the request ------------------------------------------------------------------------- */

/* A string or a list of text blocks, joined; anything else refused. NULL with e set. */
static char *text_of(const cJSON *c, const char *key, struct srv_error *e)
{
    if (!c) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        cellm_srv_adapt_bad(e, key, "a string or a list of text blocks");
        return NULL;
    }
    struct srv_buf b = {0};
    cellm_srv_buf_add(&b, "", 0);
    const cJSON *x;
    cJSON_ArrayForEach(x, c)
    {
        const char *t = cellm_srv_adapt_str(x, "type"), *tx = cellm_srv_adapt_str(x, "text");
        if (!t || strcmp(t, "text") || !tx) {
            char msg[96];
            snprintf(msg, sizeof msg, "blocks of type '%.40s' here (only text)", t ? t : "(none)");
            cellm_srv_refuse(e, key, msg);
            cellm_srv_buf_free(&b);
            return NULL;
        }
        cellm_srv_buf_add(&b, tx, strlen(tx));
    }
    if (b.oom) cellm_srv_buf_free(&b);
    return b.p;
}

static cJSON *add_msg(cJSON *msgs, const char *role)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddItemToArray(msgs, m);
    return m;
}

static int tool_result(const cJSON *blk, const char *key, cJSON *msgs, struct srv_error *e)
{
    const char *id = cellm_srv_adapt_str(blk, "tool_use_id");
    if (!id) return cellm_srv_adapt_bad(e, key, "a tool_result with a string 'tool_use_id'");
    char ck[112];
    snprintf(ck, sizeof ck, "%.96s.content", key);
    char *t = text_of(cellm_srv_adapt_get(blk, "content"), ck, e);
    if (!t) return -1;
    cJSON *m = add_msg(msgs, "tool");
    cJSON_AddStringToObject(m, "tool_call_id", id);
    if (cJSON_IsTrue(cellm_srv_adapt_get(blk, "is_error"))) {
        size_t n = strlen(t);
        char *x = malloc(n + 8);
        if (!x) {
            free(t);
            return -1;
        }
        memcpy(x, "Error: ", 7);
        memcpy(x + 7, t, n + 1);
        free(t);
        t = x;
    }
    cJSON_AddStringToObject(m, "content", t);
    free(t);
    return 0;
}

static int tool_use(const cJSON *blk, const char *key, cJSON *calls, struct srv_error *e)
{
    const char *id = cellm_srv_adapt_str(blk, "id"), *name = cellm_srv_adapt_str(blk, "name");
    const cJSON *input = cellm_srv_adapt_get(blk, "input");
    if (!id || !name) return cellm_srv_adapt_bad(e, key, "a tool_use with string 'id' and 'name'");
    char *args = input ? cJSON_PrintUnformatted(input) : strdup("{}");
    if (!args) return -1;
    cJSON *c = cJSON_CreateObject(), *f;
    cJSON_AddStringToObject(c, "id", id);
    cJSON_AddStringToObject(c, "type", "function");
    f = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(f, "name", name);
    cJSON_AddStringToObject(f, "arguments", args);
    cJSON_free(args);
    cJSON_AddItemToArray(calls, c);
    return 0;
}

/* One Anthropic message: a user turn with tool results becomes tool messages (then the
 * user's text, if any); an assistant turn one assistant message. */
static int message(const cJSON *m, int i, cJSON *msgs, struct srv_error *e)
{
    char key[64];
    snprintf(key, sizeof key, "messages[%d]", i);
    const char *role = cellm_srv_adapt_str(m, "role");
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant"))) {
        snprintf(key + strlen(key), sizeof key - strlen(key), ".role");
        cellm_srv_errorf(e, 400, key, "'%s' must be user or assistant", key);
        return -1;
    }
    int user = !strcmp(role, "user");
    const cJSON *c = cellm_srv_adapt_get(m, "content");
    if (cJSON_IsString(c)) {
        cJSON_AddStringToObject(add_msg(msgs, role), "content", c->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(c)) {
        snprintf(key + strlen(key), sizeof key - strlen(key), ".content");
        return cellm_srv_adapt_bad(e, key, "a string or a list of content blocks");
    }
    struct srv_buf text = {0}, think = {0};
    cellm_srv_buf_add(&text, "", 0);
    cJSON *calls = cJSON_CreateArray();
    int j = 0, rc = -1, has_text = 0;
    const cJSON *blk;
    cJSON_ArrayForEach(blk, c)
    {
        char bk[96];
        snprintf(bk, sizeof bk, "%.60s.content[%d]", key, j++);
        const char *t = cellm_srv_adapt_str(blk, "type");
        if (!t) {
            cellm_srv_adapt_bad(e, bk, "a block with a string 'type'");
            goto out;
        }
        if (!strcmp(t, "text") && cellm_srv_adapt_str(blk, "text")) {
            cellm_srv_buf_add(&text, cellm_srv_adapt_str(blk, "text"),
                              strlen(cellm_srv_adapt_str(blk, "text")));
            has_text = 1;
        } else if (!strcmp(t, "tool_result") && user) {
            if (tool_result(blk, bk, msgs, e)) goto out;
        } else if (!strcmp(t, "tool_use") && !user) {
            if (tool_use(blk, bk, calls, e)) goto out;
        } else if (!strcmp(t, "thinking") && !user && cellm_srv_adapt_str(blk, "thinking")) {
            cellm_srv_buf_add(&think, cellm_srv_adapt_str(blk, "thinking"),
                              strlen(cellm_srv_adapt_str(blk, "thinking")));
        } else {
            char msg[128];
            snprintf(msg, sizeof msg, "%s content blocks of type '%.40s'", role, t);
            cellm_srv_refuse(e, bk, msg);
            goto out;
        }
    }
    if (text.oom || think.oom) goto out;
    if (user) {
        /* the results answer the previous turn's calls; text after them is a new turn */
        if (has_text || !cJSON_GetArraySize(c))
            cJSON_AddStringToObject(add_msg(msgs, "user"), "content", text.p);
    } else {
        cJSON *a = add_msg(msgs, "assistant");
        cJSON_AddStringToObject(a, "content", text.p);
        if (think.p) cJSON_AddStringToObject(a, "reasoning_content", think.p);
        if (cJSON_GetArraySize(calls)) {
            cJSON_AddItemToObject(a, "tool_calls", calls);
            calls = NULL;
        }
    }
    rc = 0;
out:
    cJSON_Delete(calls);
    cellm_srv_buf_free(&text);
    cellm_srv_buf_free(&think);
    return rc;
}

static int tools_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    if (!cJSON_IsArray(j)) return cellm_srv_adapt_bad(e, "tools", "a list of tools");
    cJSON *a = cJSON_AddArrayToObject(chat, "tools");
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, j)
    {
        char key[32];
        snprintf(key, sizeof key, "tools[%d]", i++);
        const char *type = cellm_srv_adapt_str(t, "type");
        if (type && strcmp(type, "custom")) {
            char msg[96];
            snprintf(msg, sizeof msg, "server tools ('%.40s'); only client tools", type);
            return cellm_srv_refuse(e, key, msg);
        }
        if (!cellm_srv_adapt_str(t, "name"))
            return cellm_srv_adapt_bad(e, key, "a tool with a string 'name'");
        cJSON *x = cJSON_CreateObject(), *f;
        cJSON_AddStringToObject(x, "type", "function");
        f = cJSON_AddObjectToObject(x, "function");
        cJSON_AddStringToObject(f, "name", cellm_srv_adapt_str(t, "name"));
        if (cellm_srv_adapt_get(t, "description"))
            cJSON_AddItemToObject(f, "description",
                                  cJSON_Duplicate(cellm_srv_adapt_get(t, "description"), 1));
        if (cellm_srv_adapt_get(t, "input_schema"))
            cJSON_AddItemToObject(f, "parameters",
                                  cJSON_Duplicate(cellm_srv_adapt_get(t, "input_schema"), 1));
        cJSON_AddItemToArray(a, x);
    }
    return 0;
}

static int tool_choice_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    const char *type = cellm_srv_adapt_str(j, "type");
    if (!type) return cellm_srv_adapt_bad(e, "tool_choice", "an object with a string 'type'");
    if (!strcmp(type, "auto") || !strcmp(type, "none")) {
        cJSON_AddStringToObject(chat, "tool_choice", type);
    } else if (!strcmp(type, "any")) {
        cJSON_AddStringToObject(chat, "tool_choice", "required");
    } else if (!strcmp(type, "tool") && cellm_srv_adapt_str(j, "name")) {
        cJSON *x = cJSON_AddObjectToObject(chat, "tool_choice");
        cJSON_AddStringToObject(x, "type", "function");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(x, "function"), "name",
                                cellm_srv_adapt_str(j, "name"));
    } else {
        return cellm_srv_refuse(e, "tool_choice", "only auto, any, none and {type: tool, name}");
    }
    const cJSON *dp = cellm_srv_adapt_get(j, "disable_parallel_tool_use");
    if (dp && !cJSON_IsBool(dp))
        return cellm_srv_adapt_bad(e, "tool_choice.disable_parallel_tool_use", "a boolean");
    if (cJSON_IsTrue(dp)) cJSON_AddFalseToObject(chat, "parallel_tool_calls");
    return 0;
}

static int thinking_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    const char *type = cellm_srv_adapt_str(j, "type");
    if (!type || (strcmp(type, "enabled") && strcmp(type, "disabled")))
        return cellm_srv_refuse(e, "thinking", "only {type: enabled} and {type: disabled}");
    cJSON *kw = cJSON_GetObjectItemCaseSensitive(chat, "chat_template_kwargs");
    if (!cJSON_IsObject(kw)) kw = cJSON_AddObjectToObject(chat, "chat_template_kwargs");
    cJSON_DeleteItemFromObjectCaseSensitive(kw, "enable_thinking");
    cJSON_AddBoolToObject(kw, "enable_thinking", !strcmp(type, "enabled"));
    return 0;
}

static int convert_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    const char *k = j->string;
    static const char *const same[] = {"model",
                                       "max_tokens",
                                       "temperature",
                                       "top_p",
                                       "top_k",
                                       "min_p",
                                       "seed",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "repetition_penalty",
                                       "repeat_penalty",
                                       "cache_prompt",
                                       "ignore_eos",
                                       "min_tokens"};
    static const char *const inert[] = {"metadata", "service_tier"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (!strcmp(k, same[i])) {
            cJSON_AddItemToObject(chat, k, cJSON_Duplicate(j, 1));
            return 0;
        }
    for (size_t i = 0; i < sizeof inert / sizeof *inert; i++)
        if (!strcmp(k, inert[i])) return 0;
    if (!strcmp(k, "system") || !strcmp(k, "messages") || !strcmp(k, "thinking")) return 0;
    if (!strcmp(k, "chat_template_kwargs")) {
        /* merged with thinking's enable_thinking (read after all fields) */
        cJSON_AddItemToObject(chat, k, cJSON_Duplicate(j, 1));
        return 0;
    }
    if (!strcmp(k, "stop_sequences")) {
        cJSON_AddItemToObject(chat, "stop", cJSON_Duplicate(j, 1));
        return 0;
    }
    if (!strcmp(k, "stream")) {
        cJSON_AddItemToObject(chat, "stream", cJSON_Duplicate(j, 1));
        if (cJSON_IsTrue(j))
            cJSON_AddBoolToObject(cJSON_AddObjectToObject(chat, "stream_options"), "include_usage",
                                  1);
        return 0;
    }
    if (!strcmp(k, "tools")) return tools_field(j, chat, e);
    if (!strcmp(k, "tool_choice")) return tool_choice_field(j, chat, e);
    if (!strcmp(k, "container") || !strcmp(k, "mcp_servers"))
        return cellm_srv_refuse(e, k,
                                "Anthropic-hosted tools (code containers, MCP servers) run on "
                                "Anthropic's side; cellm serves client tools ('tools') only");
    cellm_srv_errorf(e, 400, k, "unknown field '%s' in a /v1/messages request", k);
    e->code = "unknown_parameter";
    return -1;
}

cJSON *cellm_srv_messages_request(const cJSON *in, int count, struct srv_error *e)
{
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(chat, "messages");
    for (const cJSON *j = in->child; j; j = j->next)
        if (!cJSON_IsNull(j) && convert_field(j, chat, e)) goto fail;
    if (count) {
        cJSON_DeleteItemFromObjectCaseSensitive(chat, "max_tokens");
        cJSON_DeleteItemFromObjectCaseSensitive(chat, "stream");
        cJSON_DeleteItemFromObjectCaseSensitive(chat, "stream_options");
    } else if (!cellm_srv_adapt_get(in, "max_tokens")) {
        cellm_srv_errorf(e, 400, "max_tokens", "'max_tokens' is required");
        e->code = "missing_required_parameter";
        goto fail;
    }
    if (cellm_srv_adapt_get(in, "thinking") &&
        thinking_field(cellm_srv_adapt_get(in, "thinking"), chat, e))
        goto fail;
    const cJSON *sys = cellm_srv_adapt_get(in, "system"), *ms = cellm_srv_adapt_get(in, "messages");
    if (sys) {
        char *t = text_of(sys, "system", e);
        if (!t) goto fail;
        cJSON_AddStringToObject(add_msg(msgs, "system"), "content", t);
        free(t);
    }
    if (!ms) {
        cellm_srv_errorf(e, 400, "messages", "'messages' is required");
        e->code = "missing_required_parameter";
        goto fail;
    }
    if (!cJSON_IsArray(ms)) {
        cellm_srv_adapt_bad(e, "messages", "a list of messages");
        goto fail;
    }
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, ms)
    {
        if (message(m, i++, msgs, e)) goto fail;
    }
    return chat;
fail:
    if (!e->status) cellm_srv_errorf(e, 500, NULL, "out of memory");
    cJSON_Delete(chat);
    return NULL;
}

/* ---- the message object ------------------------------------------------------------------- */

static double num(const cJSON *o, const char *k)
{
    const cJSON *j = cellm_srv_adapt_get(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

static cJSON *usage_json(const struct srv_adapt_meta *m, const cJSON *usage)
{
    double in = usage ? num(usage, "prompt_tokens") : m->n_prompt;
    double cached = usage
                        ? num(cellm_srv_adapt_get(usage, "prompt_tokens_details"), "cached_tokens")
                        : m->n_cached;
    cJSON *u = cJSON_CreateObject();
    /* Anthropic's input_tokens leaves out the tokens read from the cache */
    cJSON_AddNumberToObject(u, "input_tokens", in - cached);
    cJSON_AddNumberToObject(u, "cache_creation_input_tokens", 0);
    cJSON_AddNumberToObject(u, "cache_read_input_tokens", cached);
    cJSON_AddNumberToObject(u, "output_tokens", usage ? num(usage, "completion_tokens") : 0);
    return u;
}

static const char *stop_reason(const struct srv_adapt_meta *m, const struct srv_adapt_item *items,
                               int n, const char *finish)
{
    for (int k = 0; k < n; k++)
        if (items[k].kind == 'f') return "tool_use";
    if (finish && !strcmp(finish, "length")) return "max_tokens";
    if (finish && !strcmp(finish, "tool_calls")) return "tool_use";
    return m->stop_sequence ? "stop_sequence" : "end_turn";
}

/* Block k: whole (done), or as content_block_start announces it. */
static cJSON *block_json(const struct srv_adapt_item *it, int done)
{
    const char *text = done && it->text.p ? it->text.p : "";
    cJSON *o = cJSON_CreateObject();
    if (it->kind == 'r') {
        cJSON_AddStringToObject(o, "type", "thinking");
        cJSON_AddStringToObject(o, "thinking", text);
        cJSON_AddStringToObject(o, "signature", "");
    } else if (it->kind == 't') {
        cJSON_AddStringToObject(o, "type", "text");
        cJSON_AddStringToObject(o, "text", text);
    } else {
        cJSON_AddStringToObject(o, "type", "tool_use");
        cJSON_AddStringToObject(o, "id", it->call_id ? it->call_id : "");
        cJSON_AddStringToObject(o, "name", it->name ? it->name : "");
        /* arguments that are not a JSON object (a model's malformed call) stay a string */
        cJSON *in = done && text[0] ? cJSON_Parse(text) : NULL;
        if (in && !cJSON_IsObject(in)) {
            cJSON_Delete(in);
            in = NULL;
        }
        cJSON_AddItemToObject(o, "input",
                              in                ? in
                              : done && text[0] ? cJSON_CreateString(text)
                                                : cJSON_CreateObject());
    }
    return o;
}

static cJSON *head(const struct srv_adapt_meta *m)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "type", "message");
    cJSON_AddStringToObject(o, "role", "assistant");
    cJSON_AddStringToObject(o, "model", m->model);
    return o;
}

cJSON *cellm_srv_messages_object(const struct srv_adapt_meta *m, const struct srv_adapt_item *items,
                                 int n, const char *finish, const cJSON *usage)
{
    cJSON *o = head(m), *c = cJSON_AddArrayToObject(o, "content");
    for (int k = 0; k < n; k++)
        cJSON_AddItemToArray(c, block_json(&items[k], 1));
    const char *sr = stop_reason(m, items, n, finish);
    cJSON_AddStringToObject(o, "stop_reason", sr);
    if (!strcmp(sr, "stop_sequence"))
        cJSON_AddStringToObject(o, "stop_sequence", m->stop_sequence);
    else
        cJSON_AddNullToObject(o, "stop_sequence");
    cJSON_AddItemToObject(o, "usage", usage_json(m, usage));
    return o;
}

/* ---- stream events --------------------------------------------------------------------------- */

static cJSON *ev_new(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void emit(struct srv_buf *b, cJSON *o)
{
    char name[32];
    snprintf(name, sizeof name, "%s",
             cellm_srv_adapt_str(o, "type") ? cellm_srv_adapt_str(o, "type") : "");
    cellm_srv_buf_event(b, name, o);
}

static void a_start(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b)
{
    (void)st;
    cJSON *o = ev_new("message_start"), *msg = head(m);
    cJSON_AddArrayToObject(msg, "content");
    cJSON_AddNullToObject(msg, "stop_reason");
    cJSON_AddNullToObject(msg, "stop_sequence");
    cJSON_AddItemToObject(msg, "usage", usage_json(m, NULL));
    cJSON_AddItemToObject(o, "message", msg);
    emit(b, o);
    emit(b, ev_new("ping"));
}

static void a_open(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                   struct srv_buf *b)
{
    (void)m;
    cJSON *o = ev_new("content_block_start");
    cJSON_AddNumberToObject(o, "index", k);
    cJSON_AddItemToObject(o, "content_block", block_json(&st->items[k], 0));
    emit(b, o);
}

static void a_delta(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                    const char *frag, struct srv_buf *b)
{
    (void)m;
    char kind = st->items[k].kind;
    cJSON *o = ev_new("content_block_delta"), *d;
    cJSON_AddNumberToObject(o, "index", k);
    d = cJSON_AddObjectToObject(o, "delta");
    cJSON_AddStringToObject(d, "type",
                            kind == 't'   ? "text_delta"
                            : kind == 'r' ? "thinking_delta"
                                          : "input_json_delta");
    cJSON_AddStringToObject(d,
                            kind == 't'   ? "text"
                            : kind == 'r' ? "thinking"
                                          : "partial_json",
                            frag);
    emit(b, o);
}

static void a_close(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                    struct srv_buf *b)
{
    (void)st;
    (void)m;
    cJSON *o = ev_new("content_block_stop");
    cJSON_AddNumberToObject(o, "index", k);
    emit(b, o);
}

static void a_end(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b)
{
    cJSON *o = ev_new("message_delta"), *d = cJSON_AddObjectToObject(o, "delta");
    const char *sr = stop_reason(m, st->items, st->n_items, st->finish);
    cJSON_AddStringToObject(d, "stop_reason", sr);
    if (!strcmp(sr, "stop_sequence"))
        cJSON_AddStringToObject(d, "stop_sequence", m->stop_sequence);
    else
        cJSON_AddNullToObject(d, "stop_sequence");
    cJSON_AddItemToObject(o, "usage", usage_json(m, st->usage));
    emit(b, o);
    emit(b, ev_new("message_stop"));
}

static void a_error(struct srv_adapt_stream *st, const cJSON *err, struct srv_buf *b)
{
    (void)st;
    cJSON *o = ev_new("error"), *x = cJSON_AddObjectToObject(o, "error");
    const char *type = cellm_srv_adapt_str(err, "type");
    cJSON_AddStringToObject(
        x, "type", type && !strcmp(type, "server_error") ? "api_error" : "invalid_request_error");
    cJSON_AddStringToObject(
        x, "message",
        cellm_srv_adapt_str(err, "message") ? cellm_srv_adapt_str(err, "message") : "error");
    emit(b, o);
}

const struct srv_adapt_events cellm_srv_messages_events = {.start = a_start,
                                                           .open = a_open,
                                                           .delta = a_delta,
                                                           .close = a_close,
                                                           .end = a_end,
                                                           .error = a_error};
