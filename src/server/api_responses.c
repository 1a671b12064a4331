/*
 * api_responses.c: POST /v1/responses (OpenAI's Responses API) as an adapter over chat
 * completions (see adapt.h).
 *
 * Request: `input` (a string, or items: messages with input_text / output_text parts,
 * function_call and function_call_output items, reasoning items, item_reference items
 * naming an output item of an earlier response, see api_store.c), `instructions` (a
 * system message first), `max_output_tokens`, `temperature`, `top_p`, `tools` (the flat
 * function shape), `tool_choice`, `parallel_tool_calls`, `text.format` (text, json_object,
 * json_schema: response_format), `reasoning.effort` (reasoning_effort), `stream`.
 * `store` (default true): the answer's output items are kept in memory for later
 * item_reference items (api_store.c); false keeps nothing. Accepted without effect:
 * `metadata`, `user`, `safety_identifier`, `prompt_cache_key`, `service_tier`,
 * `truncation: "disabled"`, `background: false`, `include: []`, `reasoning.summary`.
 * Refused by name: `previous_response_id` and `conversation` (whole conversations are
 * not stored), a reference to an item not held (evicted, stored with store: false, or
 * from before a restart), `background: true`, `truncation:
 * "auto"`, `include` values, `top_logprobs`, `max_tool_calls`, `prompt`, built-in tools
 * (web_search, file_search, ...), non-text input (images, files, audio) and any unknown
 * field. The chat path's sampling extensions (top_k, min_p, seed, penalties, stop,
 * chat_template_kwargs, ...) pass through.
 *
 * Result: the response object with `output` items (a reasoning item when the chat result
 * has reasoning_content, a message with one output_text part, a function_call per tool
 * call), `status` completed, or incomplete with incomplete_details.reason
 * "max_output_tokens" at the token limit, and usage with cached tokens. Stream: the event
 * sequence of the openai client (response.created, .in_progress, .output_item.added,
 * .content_part.added, .output_text.delta, ..., .completed), each with a sequence_number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapt.h"

/* ---- the request ------------------------------------------------------------------------- */

/* A message item's content: a string, or text parts (input_text, output_text), joined as
 * the chat path joins text parts. NULL with e set. */
static char *item_text(const cJSON *c, const char *key, struct srv_error *e)
{
    if (!c) return strdup("");
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) {
        cellm_srv_adapt_bad(e, key, "a string or a list of content parts");
        return NULL;
    }
    struct srv_buf b = {0};
    cellm_srv_buf_add(&b, "", 0);
    const cJSON *p;
    cJSON_ArrayForEach(p, c)
    {
        const char *t = cellm_srv_adapt_str(p, "type"), *tx = cellm_srv_adapt_str(p, "text");
        if (!t || (strcmp(t, "input_text") && strcmp(t, "output_text") && strcmp(t, "text") &&
                   strcmp(t, "summary_text") && strcmp(t, "reasoning_text"))) {
            char msg[96];
            snprintf(msg, sizeof msg, "content parts of type '%.40s' (only text in)",
                     t ? t : "(none)");
            cellm_srv_refuse(e, key, msg);
            cellm_srv_buf_free(&b);
            return NULL;
        }
        if (!tx) {
            cellm_srv_adapt_bad(e, key, "a list of parts with a string 'text'");
            cellm_srv_buf_free(&b);
            return NULL;
        }
        cellm_srv_buf_add(&b, tx, strlen(tx));
    }
    if (b.oom) cellm_srv_buf_free(&b);
    return b.p;
}

/* The last chat message when it is an assistant message (a function call item joins it). */
static cJSON *last_assistant(cJSON *msgs)
{
    int n = cJSON_GetArraySize(msgs);
    cJSON *m = n ? cJSON_GetArrayItem(msgs, n - 1) : NULL;
    const char *r = cellm_srv_adapt_str(m, "role");
    return r && !strcmp(r, "assistant") ? m : NULL;
}

static cJSON *new_assistant(cJSON *msgs, char **reasoning)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "assistant");
    cJSON_AddItemToArray(msgs, m);
    if (*reasoning) {
        cJSON_AddStringToObject(m, "reasoning_content", *reasoning);
        free(*reasoning);
        *reasoning = NULL;
    }
    return m;
}

/* Where input items are read: the chat messages so far, a reasoning item's text waiting
 * for the assistant message after it, and the item store for references. */
struct items_ctx {
    cJSON *msgs;
    char *reasoning;
    srv_item_lookup look;
    void *look_ctx;
};

static int one_item(struct items_ctx *x, const cJSON *it, char *key, size_t keysz, int depth,
                    struct srv_error *e)
{
    cJSON *msgs = x->msgs;
    if (!cJSON_IsObject(it)) return cellm_srv_adapt_bad(e, key, "an object");
    const char *type = cellm_srv_adapt_str(it, "type");
    if (!type && cellm_srv_adapt_get(it, "role")) type = "message";
    if (!type) return cellm_srv_adapt_bad(e, key, "an item with a 'type'");
    if (!strcmp(type, "message")) {
        const char *role = cellm_srv_adapt_str(it, "role");
        if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") &&
                      strcmp(role, "developer"))) {
            snprintf(key + strlen(key), keysz - strlen(key), ".role");
            cellm_srv_errorf(e, 400, key, "'%s' must be user, assistant, system or developer", key);
            return -1;
        }
        snprintf(key + strlen(key), keysz - strlen(key), ".content");
        char *t = item_text(cellm_srv_adapt_get(it, "content"), key, e);
        if (!t) return -1;
        cJSON *m;
        if (!strcmp(role, "assistant")) {
            m = new_assistant(msgs, &x->reasoning);
        } else {
            m = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", role);
            cJSON_AddItemToArray(msgs, m);
        }
        cJSON_AddStringToObject(m, "content", t);
        free(t);
    } else if (!strcmp(type, "function_call")) {
        const char *id = cellm_srv_adapt_str(it, "call_id"),
                   *name = cellm_srv_adapt_str(it, "name"),
                   *args = cellm_srv_adapt_str(it, "arguments");
        if (!id || !name || !args)
            return cellm_srv_adapt_bad(e, key,
                                       "a function_call with string call_id, name and arguments");
        cJSON *m = last_assistant(msgs);
        if (!m || x->reasoning) m = new_assistant(msgs, &x->reasoning);
        cJSON *tc = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        if (!tc) tc = cJSON_AddArrayToObject(m, "tool_calls");
        cJSON *c = cJSON_CreateObject(), *f;
        cJSON_AddStringToObject(c, "id", id);
        cJSON_AddStringToObject(c, "type", "function");
        f = cJSON_AddObjectToObject(c, "function");
        cJSON_AddStringToObject(f, "name", name);
        cJSON_AddStringToObject(f, "arguments", args);
        cJSON_AddItemToArray(tc, c);
    } else if (!strcmp(type, "function_call_output")) {
        const char *id = cellm_srv_adapt_str(it, "call_id");
        if (!id) return cellm_srv_adapt_bad(e, key, "a function_call_output with a string call_id");
        snprintf(key + strlen(key), keysz - strlen(key), ".output");
        char *t = item_text(cellm_srv_adapt_get(it, "output"), key, e);
        if (!t) return -1;
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "tool");
        cJSON_AddStringToObject(m, "tool_call_id", id);
        cJSON_AddStringToObject(m, "content", t);
        cJSON_AddItemToArray(msgs, m);
        free(t);
    } else if (!strcmp(type, "reasoning")) {
        /* the reasoning text, else its summary */
        const cJSON *c = cellm_srv_adapt_get(it, "content");
        if (!cJSON_GetArraySize(c)) c = cellm_srv_adapt_get(it, "summary");
        if (!cJSON_GetArraySize(c) && cellm_srv_adapt_get(it, "encrypted_content"))
            return cellm_srv_refuse(e, key, "encrypted reasoning (send the reasoning text)");
        free(x->reasoning);
        if (!(x->reasoning = item_text(c, key, e))) return -1;
    } else if (!strcmp(type, "item_reference")) {
        const char *id = cellm_srv_adapt_str(it, "id");
        if (!id) return cellm_srv_adapt_bad(e, key, "an item_reference with a string 'id'");
        char *json = x->look && depth == 0 ? x->look(x->look_ctx, id) : NULL;
        cJSON *ref = json ? cJSON_Parse(json) : NULL;
        free(json);
        if (!ref) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "item '%.60s' is not held here (this server keeps the output items of "
                     "recent responses in memory, unless store is false; send the item itself)",
                     id);
            return cellm_srv_refuse(e, key, msg);
        }
        int rc = one_item(x, ref, key, keysz, depth + 1, e);
        cJSON_Delete(ref);
        return rc;
    } else {
        char msg[96];
        snprintf(msg, sizeof msg, "input items of type '%.40s'", type);
        return cellm_srv_refuse(e, key, msg);
    }
    return 0;
}

static int input_items(const cJSON *in, cJSON *msgs, srv_item_lookup look, void *look_ctx,
                       struct srv_error *e)
{
    struct items_ctx x = {.msgs = msgs, .look = look, .look_ctx = look_ctx};
    int i = 0, rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, in)
    {
        char key[64];
        snprintf(key, sizeof key, "input[%d]", i++);
        if ((rc = one_item(&x, it, key, sizeof key, 0, e))) break;
    }
    free(x.reasoning);
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
        if (!type || strcmp(type, "function")) {
            char msg[96];
            snprintf(msg, sizeof msg, "tools of type '%.40s' (only function tools)",
                     type ? type : "(none)");
            return cellm_srv_refuse(e, key, msg);
        }
        if (!cellm_srv_adapt_str(t, "name"))
            return cellm_srv_adapt_bad(e, key, "a function tool with a string 'name'");
        cJSON *x = cJSON_CreateObject(), *f;
        cJSON_AddStringToObject(x, "type", "function");
        f = cJSON_AddObjectToObject(x, "function");
        static const char *const keep[] = {"name", "description", "parameters", "strict"};
        for (size_t k = 0; k < 4; k++)
            if (cellm_srv_adapt_get(t, keep[k]))
                cJSON_AddItemToObject(f, keep[k],
                                      cJSON_Duplicate(cellm_srv_adapt_get(t, keep[k]), 1));
        cJSON_AddItemToArray(a, x);
    }
    return 0;
}

static int tool_choice_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    if (cJSON_IsString(j)) {
        cJSON_AddStringToObject(chat, "tool_choice", j->valuestring);
        return 0;
    }
    const char *type = cellm_srv_adapt_str(j, "type");
    if (!type || strcmp(type, "function") || !cellm_srv_adapt_str(j, "name"))
        return cellm_srv_refuse(e, "tool_choice",
                                "only \"auto\", \"none\", \"required\" or {\"type\": \"function\", "
                                "\"name\": ...}");
    cJSON *x = cJSON_AddObjectToObject(chat, "tool_choice");
    cJSON_AddStringToObject(x, "type", "function");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(x, "function"), "name",
                            cellm_srv_adapt_str(j, "name"));
    return 0;
}

static int text_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    if (!cJSON_IsObject(j)) return cellm_srv_adapt_bad(e, "text", "an object");
    const cJSON *v = cellm_srv_adapt_get(j, "verbosity");
    if (v && !(cJSON_IsString(v) && !strcmp(v->valuestring, "medium")))
        return cellm_srv_refuse(e, "text.verbosity", "only \"medium\"");
    for (const cJSON *k = j->child; k; k = k->next)
        if (strcmp(k->string, "verbosity") && strcmp(k->string, "format")) {
            char key[80];
            snprintf(key, sizeof key, "text.%.60s", k->string);
            return cellm_srv_refuse(e, key, "unknown field");
        }
    const cJSON *f = cellm_srv_adapt_get(j, "format");
    if (!f) return 0;
    const char *type = cellm_srv_adapt_str(f, "type");
    if (!type) return cellm_srv_adapt_bad(e, "text.format", "an object with a string 'type'");
    cJSON *rf = cJSON_AddObjectToObject(chat, "response_format");
    cJSON_AddStringToObject(rf, "type", type);
    if (!strcmp(type, "json_schema")) {
        cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
        static const char *const keep[] = {"name", "schema", "strict", "description"};
        for (size_t k = 0; k < 4; k++)
            if (cellm_srv_adapt_get(f, keep[k]))
                cJSON_AddItemToObject(js, keep[k],
                                      cJSON_Duplicate(cellm_srv_adapt_get(f, keep[k]), 1));
    } else if (strcmp(type, "text") && strcmp(type, "json_object")) {
        return cellm_srv_refuse(e, "text.format", "only text, json_object and json_schema formats");
    }
    return 0;
}

/* Fields the response object repeats. */
static const char *const echoed[] = {
    "store",       "instructions", "max_output_tokens",   "temperature", "top_p",    "tools",
    "tool_choice", "text",         "parallel_tool_calls", "metadata",    "reasoning"};

/* The keys of the body: what each becomes. */
static int convert_field(const cJSON *j, cJSON *chat, struct srv_error *e)
{
    const char *k = j->string;
    /* the chat path reads these with the same meaning (its extensions included) */
    static const char *const same[] = {"model",
                                       "temperature",
                                       "top_p",
                                       "parallel_tool_calls",
                                       "top_k",
                                       "min_p",
                                       "seed",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "repetition_penalty",
                                       "repeat_penalty",
                                       "stop",
                                       "chat_template_kwargs",
                                       "cache_prompt",
                                       "ignore_eos",
                                       "min_tokens"};
    /* no effect on the output */
    if (!strcmp(k, "store"))
        return cJSON_IsBool(j) ? 0 : cellm_srv_adapt_bad(e, "store", "a boolean");
    static const char *const inert[] = {"metadata",          "user",
                                        "safety_identifier", "prompt_cache_key",
                                        "service_tier",      "prompt_cache_retention"};
    for (size_t i = 0; i < sizeof same / sizeof *same; i++)
        if (!strcmp(k, same[i])) {
            cJSON_AddItemToObject(chat, k, cJSON_Duplicate(j, 1));
            return 0;
        }
    for (size_t i = 0; i < sizeof inert / sizeof *inert; i++)
        if (!strcmp(k, inert[i])) return 0;
    if (!strcmp(k, "input") || !strcmp(k, "instructions")) return 0; /* read in order below */
    if (!strcmp(k, "max_output_tokens")) {
        cJSON_AddItemToObject(chat, "max_tokens", cJSON_Duplicate(j, 1));
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
    if (!strcmp(k, "text")) return text_field(j, chat, e);
    if (!strcmp(k, "reasoning")) {
        if (!cJSON_IsObject(j)) return cellm_srv_adapt_bad(e, "reasoning", "an object");
        const cJSON *ef = cellm_srv_adapt_get(j, "effort");
        if (ef) cJSON_AddItemToObject(chat, "reasoning_effort", cJSON_Duplicate(ef, 1));
        return 0;
    }
    if (!strcmp(k, "previous_response_id") || !strcmp(k, "conversation"))
        return cellm_srv_refuse(e, k,
                                "this server stores no responses or conversations: send the whole "
                                "conversation in 'input'");
    if (!strcmp(k, "background"))
        return cJSON_IsFalse(j)
                   ? 0
                   : cellm_srv_refuse(e, k, "responses are generated in the foreground");
    if (!strcmp(k, "truncation"))
        return cJSON_IsString(j) && !strcmp(j->valuestring, "disabled")
                   ? 0
                   : cellm_srv_refuse(e, k, "the input is never truncated (only \"disabled\")");
    if (!strcmp(k, "include"))
        return cJSON_IsArray(j) && !cJSON_GetArraySize(j)
                   ? 0
                   : cellm_srv_refuse(e, k, "no additional output data can be included");
    if (!strcmp(k, "top_logprobs"))
        return cellm_srv_refuse(e, k,
                                "log-probabilities are served by /v1/chat/completions "
                                "(logprobs, top_logprobs), not mapped into Responses output");
    if (!strcmp(k, "max_tool_calls"))
        return cellm_srv_refuse(e, k,
                                "no cap on calls; parallel_tool_calls: false returns one call");
    if (!strcmp(k, "prompt"))
        return cellm_srv_refuse(e, k,
                                "stored prompt templates live on OpenAI's servers; send the text "
                                "in 'instructions' and 'input'");
    cellm_srv_errorf(e, 400, k, "unknown field '%s' in a /v1/responses request", k);
    e->code = "unknown_parameter";
    return -1;
}

cJSON *cellm_srv_responses_request(const cJSON *in, srv_item_lookup look, void *ctx, cJSON **echo,
                                   struct srv_error *e)
{
    *echo = NULL;
    cJSON *chat = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(chat, "messages");
    for (const cJSON *j = in->child; j; j = j->next)
        if (!cJSON_IsNull(j) && convert_field(j, chat, e)) goto fail;
    const cJSON *ins = cellm_srv_adapt_get(in, "instructions"),
                *input = cellm_srv_adapt_get(in, "input");
    if (ins) {
        if (!cJSON_IsString(ins)) {
            cellm_srv_adapt_bad(e, "instructions", "a string");
            goto fail;
        }
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", ins->valuestring);
        cJSON_AddItemToArray(msgs, m);
    }
    if (!input) {
        cellm_srv_errorf(e, 400, "input", "'input' is required");
        e->code = "missing_required_parameter";
        goto fail;
    }
    if (cJSON_IsString(input)) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        cJSON_AddItemToArray(msgs, m);
    } else if (!cJSON_IsArray(input)) {
        cellm_srv_adapt_bad(e, "input", "a string or a list of items");
        goto fail;
    } else if (input_items(input, msgs, look, ctx, e)) {
        goto fail;
    }
    *echo = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof echoed / sizeof *echoed; i++)
        if (cellm_srv_adapt_get(in, echoed[i]))
            cJSON_AddItemToObject(*echo, echoed[i],
                                  cJSON_Duplicate(cellm_srv_adapt_get(in, echoed[i]), 1));
    return chat;
fail:
    if (!e->status) cellm_srv_errorf(e, 500, NULL, "out of memory");
    cJSON_Delete(chat);
    return NULL;
}

/* ---- the response object ------------------------------------------------------------------ */

/* The id of item k: its kind's prefix and the response id's tail. */
static void item_id(const struct srv_adapt_meta *m, const struct srv_adapt_item *it, int k,
                    char *buf, size_t n)
{
    const char *tail = strncmp(m->id, "resp_", 5) ? m->id : m->id + 5;
    snprintf(buf, n, "%s_%s_%d", it->kind == 'r' ? "rs" : it->kind == 't' ? "msg" : "fc", tail, k);
}

static cJSON *text_part(const char *type, const char *text)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", type);
    cJSON_AddStringToObject(p, "text", text);
    if (!strcmp(type, "output_text")) {
        cJSON_AddArrayToObject(p, "annotations");
        cJSON_AddArrayToObject(p, "logprobs");
    }
    return p;
}

/* Item k as the output array holds it: whole (done) or as just added. */
static cJSON *item_json(const struct srv_adapt_meta *m, const struct srv_adapt_item *it, int k,
                        int done)
{
    char id[128];
    item_id(m, it, k, id, sizeof id);
    const char *text = it->text.p ? it->text.p : "";
    cJSON *o = cJSON_CreateObject();
    if (it->kind == 'r') {
        cJSON_AddStringToObject(o, "type", "reasoning");
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddArrayToObject(o, "summary");
        cJSON *c = cJSON_AddArrayToObject(o, "content");
        if (done) cJSON_AddItemToArray(c, text_part("reasoning_text", text));
    } else if (it->kind == 't') {
        cJSON_AddStringToObject(o, "type", "message");
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "status", done ? "completed" : "in_progress");
        cJSON_AddStringToObject(o, "role", "assistant");
        cJSON *c = cJSON_AddArrayToObject(o, "content");
        if (done) cJSON_AddItemToArray(c, text_part("output_text", text));
    } else {
        cJSON_AddStringToObject(o, "type", "function_call");
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "status", done ? "completed" : "in_progress");
        cJSON_AddStringToObject(o, "call_id", it->call_id ? it->call_id : "");
        cJSON_AddStringToObject(o, "name", it->name ? it->name : "");
        cJSON_AddStringToObject(o, "arguments", done ? text : "");
    }
    return o;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *j = cellm_srv_adapt_get(o, k);
    return cJSON_IsNumber(j) ? j->valuedouble : 0;
}

static void echo_or(cJSON *o, const struct srv_adapt_meta *m, const char *k, cJSON *dflt)
{
    const cJSON *v = m->echo ? cellm_srv_adapt_get(m->echo, k) : NULL;
    if (v) {
        cJSON_Delete(dflt);
        dflt = cJSON_Duplicate(v, 1);
    }
    cJSON_AddItemToObject(o, k, dflt);
}

cJSON *cellm_srv_responses_object(const struct srv_adapt_meta *m,
                                  const struct srv_adapt_item *items, int n, const char *finish,
                                  const cJSON *usage, int in_progress)
{
    int incomplete = !in_progress && finish && !strcmp(finish, "length");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "object", "response");
    cJSON_AddNumberToObject(o, "created_at", (double)m->created);
    cJSON_AddStringToObject(o, "status",
                            in_progress  ? "in_progress"
                            : incomplete ? "incomplete"
                                         : "completed");
    cJSON_AddFalseToObject(o, "background");
    cJSON_AddNullToObject(o, "error");
    if (incomplete)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "incomplete_details"), "reason",
                                "max_output_tokens");
    else
        cJSON_AddNullToObject(o, "incomplete_details");
    echo_or(o, m, "instructions", cJSON_CreateNull());
    echo_or(o, m, "max_output_tokens", cJSON_CreateNull());
    cJSON_AddStringToObject(o, "model", m->model);
    cJSON *out = cJSON_AddArrayToObject(o, "output");
    for (int k = 0; k < n; k++)
        cJSON_AddItemToArray(out, item_json(m, &items[k], k, 1));
    echo_or(o, m, "parallel_tool_calls", cJSON_CreateTrue());
    cJSON_AddNullToObject(o, "previous_response_id");
    cJSON *rs = cJSON_CreateObject();
    cJSON_AddNullToObject(rs, "effort");
    cJSON_AddNullToObject(rs, "summary");
    echo_or(o, m, "reasoning", rs);
    /* output items are kept (in memory, bounded) unless the request said store: false */
    const cJSON *sto = m->echo ? cellm_srv_adapt_get(m->echo, "store") : NULL;
    cJSON_AddBoolToObject(o, "store", !cJSON_IsFalse(sto));
    echo_or(o, m, "temperature", cJSON_CreateNull());
    cJSON *tx = cJSON_CreateObject();
    cJSON_AddStringToObject(cJSON_AddObjectToObject(tx, "format"), "type", "text");
    echo_or(o, m, "text", tx);
    echo_or(o, m, "tool_choice", cJSON_CreateString("auto"));
    echo_or(o, m, "tools", cJSON_CreateArray());
    echo_or(o, m, "top_p", cJSON_CreateNull());
    cJSON_AddStringToObject(o, "truncation", "disabled");
    if (usage && !in_progress) {
        cJSON *u = cJSON_AddObjectToObject(o, "usage");
        double in = num(usage, "prompt_tokens"), outt = num(usage, "completion_tokens");
        cJSON_AddNumberToObject(u, "input_tokens", in);
        cJSON_AddNumberToObject(
            cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens",
            num(cellm_srv_adapt_get(usage, "prompt_tokens_details"), "cached_tokens"));
        cJSON_AddNumberToObject(u, "output_tokens", outt);
        cJSON_AddNumberToObject(
            cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens",
            num(cellm_srv_adapt_get(usage, "completion_tokens_details"), "reasoning_tokens"));
        cJSON_AddNumberToObject(u, "total_tokens", in + outt);
    } else {
        cJSON_AddNullToObject(o, "usage");
    }
    echo_or(o, m, "metadata", cJSON_CreateObject());
    return o;
}

/* ---- stream events --------------------------------------------------------------------------- */

static cJSON *ev_new(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static void emit(struct srv_adapt_stream *st, struct srv_buf *b, cJSON *o)
{
    cJSON_AddNumberToObject(o, "sequence_number", st->seq++);
    const char *type = cellm_srv_adapt_str(o, "type");
    char name[64];
    snprintf(name, sizeof name, "%s", type ? type : "");
    cellm_srv_buf_event(b, name, o);
}

static void r_start(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b)
{
    for (int i = 0; i < 2; i++) {
        cJSON *o = ev_new(i ? "response.in_progress" : "response.created");
        cJSON_AddItemToObject(o, "response", cellm_srv_responses_object(m, NULL, 0, NULL, NULL, 1));
        emit(st, b, o);
    }
}

/* The fields every event of item k starts with. */
static cJSON *item_ev(const struct srv_adapt_meta *m, const struct srv_adapt_stream *st,
                      const char *type, int k, int with_part)
{
    char id[128];
    item_id(m, &st->items[k], k, id, sizeof id);
    cJSON *o = ev_new(type);
    cJSON_AddStringToObject(o, "item_id", id);
    cJSON_AddNumberToObject(o, "output_index", k);
    if (with_part) cJSON_AddNumberToObject(o, "content_index", 0);
    return o;
}

static void r_open(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                   struct srv_buf *b)
{
    const struct srv_adapt_item *it = &st->items[k];
    cJSON *o = ev_new("response.output_item.added");
    cJSON_AddNumberToObject(o, "output_index", k);
    cJSON_AddItemToObject(o, "item", item_json(m, it, k, 0));
    emit(st, b, o);
    if (it->kind == 'f') return;
    o = item_ev(m, st, "response.content_part.added", k, 1);
    cJSON_AddItemToObject(o, "part",
                          text_part(it->kind == 't' ? "output_text" : "reasoning_text", ""));
    emit(st, b, o);
}

static void r_delta(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                    const char *frag, struct srv_buf *b)
{
    char kind = st->items[k].kind;
    cJSON *o = item_ev(m, st,
                       kind == 't'   ? "response.output_text.delta"
                       : kind == 'r' ? "response.reasoning_text.delta"
                                     : "response.function_call_arguments.delta",
                       k, kind != 'f');
    cJSON_AddStringToObject(o, "delta", frag);
    if (kind == 't') cJSON_AddArrayToObject(o, "logprobs");
    emit(st, b, o);
}

static void r_close(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                    struct srv_buf *b)
{
    const struct srv_adapt_item *it = &st->items[k];
    const char *text = it->text.p ? it->text.p : "";
    cJSON *o;
    if (it->kind == 'f') {
        o = item_ev(m, st, "response.function_call_arguments.done", k, 0);
        cJSON_AddStringToObject(o, "name", it->name ? it->name : "");
        cJSON_AddStringToObject(o, "arguments", text);
        emit(st, b, o);
    } else {
        o = item_ev(m, st,
                    it->kind == 't' ? "response.output_text.done" : "response.reasoning_text.done",
                    k, 1);
        cJSON_AddStringToObject(o, "text", text);
        if (it->kind == 't') cJSON_AddArrayToObject(o, "logprobs");
        emit(st, b, o);
        o = item_ev(m, st, "response.content_part.done", k, 1);
        cJSON_AddItemToObject(o, "part",
                              text_part(it->kind == 't' ? "output_text" : "reasoning_text", text));
        emit(st, b, o);
    }
    o = ev_new("response.output_item.done");
    cJSON_AddNumberToObject(o, "output_index", k);
    cJSON_AddItemToObject(o, "item", item_json(m, it, k, 1));
    emit(st, b, o);
}

static void r_end(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b)
{
    cJSON *resp = cellm_srv_responses_object(m, st->items, st->n_items, st->finish, st->usage, 0);
    const char *status = cellm_srv_adapt_str(resp, "status");
    cJSON *o = ev_new(status && !strcmp(status, "incomplete") ? "response.incomplete"
                                                              : "response.completed");
    cJSON_AddItemToObject(o, "response", resp);
    emit(st, b, o);
}

static void r_error(struct srv_adapt_stream *st, const cJSON *err, struct srv_buf *b)
{
    /* the openai client throws on an "error" event (its data's "error" member) */
    cJSON *o = ev_new("error");
    const char *code = cellm_srv_adapt_str(err, "code");
    if (code)
        cJSON_AddStringToObject(o, "code", code);
    else
        cJSON_AddNullToObject(o, "code");
    cJSON_AddStringToObject(
        o, "message",
        cellm_srv_adapt_str(err, "message") ? cellm_srv_adapt_str(err, "message") : "error");
    const char *param = cellm_srv_adapt_str(err, "param");
    if (param)
        cJSON_AddStringToObject(o, "param", param);
    else
        cJSON_AddNullToObject(o, "param");
    cJSON_AddItemToObject(o, "error", cJSON_Duplicate(err, 1));
    emit(st, b, o);
}

const struct srv_adapt_events cellm_srv_responses_events = {.start = r_start,
                                                            .open = r_open,
                                                            .delta = r_delta,
                                                            .close = r_close,
                                                            .end = r_end,
                                                            .error = r_error};
