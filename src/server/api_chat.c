/*
 * api_chat.c: a /v1/chat/completions request's conversation: messages, tools,
 * tool_choice, parallel_tool_calls, reasoning_effort and chat_template_kwargs, rendered by
 * the model's own chat template and tokenized; and how the output will be read (the
 * tool-call format and the reasoning markers of that template, src/template/toolcall.h).
 *
 * Messages are passed to the template as apply_chat_template takes them: role (developer
 * becomes system), content (a string; a list of text parts is joined; null is ""),
 * an assistant's tool_calls (function.arguments as the object its JSON string encodes,
 * as llama-server does, since templates iterate over it or print it with tojson) and
 * reasoning_content (also as "thinking" for gpt-oss, whose template reads that), a tool
 * message's tool_call_id and name. Tools go to the template as
 * `tools`; chat_template_kwargs are further template variables (enable_thinking,
 * documents, ...), and reasoning_effort is one too unless the kwargs set it.
 *
 * tool_choice "required" and a named function force one call through a grammar
 * (forced_call; the hermes and llama3 formats). Refused by name: forcing a call in the
 * other formats, tools with a template whose tool-call format cellm does not know, role
 * "function" and function_call (the deprecated API).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

static const cJSON *get(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

/* A message's content: a string, or a list of {"type": "text", "text": ...} parts, joined;
 * NULL with e set on error. */
static cJSON *message_content(const cJSON *c, const char *key, struct srv_error *e)
{
    if (cJSON_IsString(c)) return cJSON_CreateString(c->valuestring);
    if (!cJSON_IsArray(c)) {
        cellm_srv_bad_type(e, key, "a string or a list of text parts", c);
        return NULL;
    }
    size_t len = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c)
    {
        const cJSON *t = cJSON_IsObject(part) ? get(part, "type") : NULL;
        const cJSON *tx = cJSON_IsObject(part) ? get(part, "text") : NULL;
        if (!t || !cJSON_IsString(t) || strcmp(t->valuestring, "text")) {
            cellm_srv_refuse(e, key, "only text content parts");
            return NULL;
        }
        if (!tx || !cJSON_IsString(tx)) {
            cellm_srv_bad_type(e, key, "a list of text parts with a string 'text'", tx ? tx : part);
            return NULL;
        }
        len += strlen(tx->valuestring);
    }
    char *out = malloc(len + 1), *w = out;
    if (!out) return NULL;
    cJSON_ArrayForEach(part, c)
    {
        const char *t = get(part, "text")->valuestring;
        size_t n = strlen(t);
        memcpy(w, t, n);
        w += n;
    }
    *w = 0;
    cJSON *s = cJSON_CreateString(out);
    free(out);
    return s;
}

static int copy_string(cJSON *dst, const cJSON *m, const char *key, int i, struct srv_error *e)
{
    const cJSON *v = get(m, key);
    if (!v) return 0;
    char k[64];
    snprintf(k, sizeof k, "messages[%d].%s", i, key);
    if (!cJSON_IsString(v)) return cellm_srv_bad_type(e, k, "a string", v);
    return cJSON_AddStringToObject(dst, key, v->valuestring) ? 0 : -1;
}

/* An assistant's tool_calls, checked and copied. */
static int copy_tool_calls(cJSON *dst, const cJSON *calls, int i, struct srv_error *e)
{
    char k[80];
    snprintf(k, sizeof k, "messages[%d].tool_calls", i);
    if (!cJSON_IsArray(calls)) return cellm_srv_bad_type(e, k, "a list of tool calls", calls);
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, calls)
    {
        snprintf(k, sizeof k, "messages[%d].tool_calls[%d]", i, n);
        const cJSON *f = cJSON_IsObject(c) ? get(c, "function") : NULL;
        const cJSON *nm = f ? get(f, "name") : NULL, *a = f ? get(f, "arguments") : NULL;
        const cJSON *ty = cJSON_IsObject(c) ? get(c, "type") : NULL;
        if (!cJSON_IsObject(f) || !cJSON_IsString(nm))
            return cellm_srv_bad_type(e, k,
                                      "{\"type\": \"function\", \"function\": {\"name\": ...}}", c);
        if (ty && !(cJSON_IsString(ty) && !strcmp(ty->valuestring, "function")))
            return cellm_srv_refuse(e, k, "only tool calls of type \"function\"");
        if (a && !cJSON_IsString(a) && !cJSON_IsObject(a)) {
            snprintf(k, sizeof k, "messages[%d].tool_calls[%d].function.arguments", i, n);
            return cellm_srv_bad_type(e, k, "a JSON string or an object", a);
        }
        n++;
    }
    cJSON *cp = cJSON_Duplicate(calls, 1);
    if (!cp || !cJSON_AddItemToObject(dst, "tool_calls", cp)) {
        cJSON_Delete(cp);
        return -1;
    }
    return 0;
}

/* The messages for the template; NULL with e set (or, when e is not set, out of memory). */
static cJSON *messages(const cJSON *ms, int harmony, struct srv_error *e)
{
    cJSON *out = cJSON_CreateArray();
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, ms)
    {
        char key[64];
        snprintf(key, sizeof key, "messages[%d]", i);
        cJSON *d = cJSON_CreateObject();
        if (!out || !d || !cJSON_AddItemToArray(out, d)) {
            cJSON_Delete(d);
            goto fail;
        }
        if (!cJSON_IsObject(m)) {
            cellm_srv_bad_type(e, key, "an object", m);
            goto fail;
        }
        snprintf(key, sizeof key, "messages[%d].role", i);
        const cJSON *r = get(m, "role");
        if (!r || !cJSON_IsString(r)) {
            if (r)
                cellm_srv_bad_type(e, key, "a string", r);
            else
                cellm_srv_errorf(e, 400, key, "'%s' is required", key);
            goto fail;
        }
        const char *role = r->valuestring;
        if (!strcmp(role, "developer")) role = "system";
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool")) {
            cellm_srv_errorf(e, 400, key,
                             "'%s' is '%s'; supported roles are system, developer, user, "
                             "assistant and tool",
                             key, r->valuestring);
            goto fail;
        }
        if (!cJSON_AddStringToObject(d, "role", role)) goto fail;
        if (get(m, "function_call")) {
            snprintf(key, sizeof key, "messages[%d].function_call", i);
            cellm_srv_refuse(e, key, "the deprecated function API; use tool_calls");
            goto fail;
        }
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
        snprintf(key, sizeof key, "messages[%d].content", i);
        /* null (an assistant's content beside tool calls) is "": templates test it with
         * `in` (Qwen3) and `if` alike, and llama-server passes "" too */
        cJSON *cv = !c || cJSON_IsNull(c) ? cJSON_CreateString("") : message_content(c, key, e);
        if (!cv || !cJSON_AddItemToObject(d, "content", cv)) {
            cJSON_Delete(cv);
            goto fail;
        }
        const cJSON *calls = get(m, "tool_calls");
        if (calls && strcmp(role, "assistant")) {
            snprintf(key, sizeof key, "messages[%d].tool_calls", i);
            cellm_srv_errorf(e, 400, key, "'%s': only assistant messages carry tool calls", key);
            goto fail;
        }
        if (calls && cJSON_GetArraySize(calls) && copy_tool_calls(d, calls, i, e)) goto fail;
        if (!strcmp(role, "assistant") && copy_string(d, m, "reasoning_content", i, e)) goto fail;
        /* gpt-oss's template reads an assistant's analysis from "thinking" */
        const cJSON *rc = cJSON_GetObjectItemCaseSensitive(d, "reasoning_content");
        if (harmony && rc && !cJSON_AddStringToObject(d, "thinking", rc->valuestring)) goto fail;
        if (!strcmp(role, "tool") &&
            (copy_string(d, m, "tool_call_id", i, e) || copy_string(d, m, "name", i, e)))
            goto fail;
        i++;
    }
    return out;
fail:
    cJSON_Delete(out);
    return NULL;
}

/* tools: a list of {"type": "function", "function": {"name", "description"?,
 * "parameters"?}}; 1 = some, 0 = none, -1 = error. */
static int check_tools(const cJSON *tools, struct srv_error *e)
{
    if (!tools) return 0;
    if (!cJSON_IsArray(tools)) return cellm_srv_bad_type(e, "tools", "a list of tools", tools);
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        char k[48];
        snprintf(k, sizeof k, "tools[%d]", i++);
        const cJSON *ty = cJSON_IsObject(t) ? get(t, "type") : NULL;
        const cJSON *f = cJSON_IsObject(t) ? get(t, "function") : NULL;
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function"))
            return cellm_srv_refuse(e, k, "only tools of type \"function\"");
        const cJSON *nm = cJSON_IsObject(f) ? get(f, "name") : NULL;
        if (!cJSON_IsString(nm) || !nm->valuestring[0])
            return cellm_srv_bad_type(e, k,
                                      "{\"type\": \"function\", \"function\": {\"name\": ...}}", t);
        const cJSON *pa = get(f, "parameters");
        if (pa && !cJSON_IsObject(pa)) {
            snprintf(k, sizeof k, "tools[%d].function.parameters", i - 1);
            return cellm_srv_bad_type(e, k, "a JSON Schema object", pa);
        }
    }
    return i > 0;
}

/* tool_choice: 1 = auto, 0 = none, 2 = required (any of the tools), 3 = the named
 * function (*name), -1 = error. */
static int tool_choice(const cJSON *o, int have_tools, const char **name, struct srv_error *e)
{
    const cJSON *tc = get(o, "tool_choice");
    if (!tc) return 1;
    if (cJSON_IsString(tc) && !strcmp(tc->valuestring, "none")) return 0;
    if (cJSON_IsString(tc) && !strcmp(tc->valuestring, "auto")) return 1;
    if ((cJSON_IsString(tc) && !strcmp(tc->valuestring, "required")) || cJSON_IsObject(tc)) {
        if (!have_tools) {
            cellm_srv_errorf(e, 400, "tool_choice", "'tool_choice' names a tool, but no 'tools'");
            return -1;
        }
        if (cJSON_IsString(tc)) return 2;
        const cJSON *ty = get(tc, "type"), *f = get(tc, "function");
        const cJSON *nm = cJSON_IsObject(f) ? get(f, "name") : NULL;
        if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsString(nm))
            return cellm_srv_bad_type(
                e, "tool_choice", "{\"type\": \"function\", \"function\": {\"name\": ...}}", tc);
        *name = nm->valuestring;
        return 3;
    }
    return cellm_srv_bad_type(
        e, "tool_choice", "\"none\", \"auto\", \"required\" or {\"type\": \"function\", ...}", tc);
}

/* tool_choice "required" or a named function: the output is constrained to one call of
 * one of the tools (or of the named one), written the way the template's format writes
 * it, with arguments valid for the tool's parameters schema (src/grammar). Formats whose
 * call markers are special tokens (which a grammar never emits) are refused by name. */
static int forced_call(struct cellm_server *s, const cJSON *tools, const char *only,
                       struct srv_params *p, struct srv_error *e)
{
    const char *head, *mid, *tail;
    /* a prompt that opened <think> (p->in_reasoning) gets it closed first: the call is the
     * answer, and the parser reads what follows </think> as one */
    const int think = p->in_reasoning;
    switch (p->tc.format) {
    case CELLM_TC_HERMES:
        head = think ? "</think>\n\n<tool_call>\n{\"name\": " : "<tool_call>\n{\"name\": ";
        mid = ", \"arguments\": ", tail = "}\n</tool_call>";
        break;
    case CELLM_TC_LLAMA3:
        head = think ? "</think>\n\n{\"name\": " : "{\"name\": ";
        mid = ", \"parameters\": ", tail = "}";
        break;
    default:
        cellm_srv_errorf(e, 400, "tool_choice",
                         "'tool_choice' \"required\" or a named function forces a call, which "
                         "cellm can write for the hermes and llama3 tool-call formats; this "
                         "template's is %s; use \"auto\" or \"none\"",
                         cellm_tc_format_name(p->tc.format));
        e->code = "unsupported_parameter";
        return -1;
    }
    if (p->grammar) {
        cellm_srv_errorf(e, 400, "tool_choice",
                         "'tool_choice' forces a tool call and the request's structured-output "
                         "field constrains the output too; send one of them");
        return -1;
    }
    if (!s->gvocab) {
        cellm_srv_errorf(e, 400, "tool_choice",
                         "'tool_choice' needs a tokenizer to force a call, and this checkpoint "
                         "has none");
        return -1;
    }
    int n = cJSON_GetArraySize(tools), k = 0, rc = -1;
    struct cellm_grammar_part *parts = calloc((size_t)n, sizeof *parts);
    char **texts = calloc((size_t)(3 * n), sizeof *texts);
    if (!parts || !texts) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        goto done;
    }
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *f = get(t, "function"), *nm = get(f, "name"), *pa = get(f, "parameters");
        if (only && strcmp(nm->valuestring, only)) continue;
        char *qn = cJSON_PrintUnformatted(nm); /* the name as a JSON string */
        size_t hl = qn ? strlen(head) + strlen(qn) + strlen(mid) + 1 : 0;
        char *pre = qn ? malloc(hl) : NULL;
        if (pre) snprintf(pre, hl, "%s%s%s", head, qn, mid);
        cJSON_free(qn);
        char *sc = pa ? cJSON_PrintUnformatted(pa) : NULL;
        texts[3 * k] = pre;
        texts[3 * k + 1] = sc;
        if (!pre || (pa && !sc)) {
            cellm_srv_errorf(e, 500, NULL, "out of memory");
            goto done;
        }
        parts[k++] = (struct cellm_grammar_part){pre, sc, tail};
    }
    if (!k) {
        cellm_srv_errorf(e, 400, "tool_choice",
                         "'tool_choice' names '%.64s', which is not in 'tools'", only);
        goto done;
    }
    struct cellm_error ce;
    enum cellm_status st = cellm_grammar_choice(parts, k, &p->grammar, &ce);
    if (st) {
        cellm_srv_errorf(e, st == CELLM_ERR_NOMEM ? 500 : 400, "tools",
                         "a tool's 'parameters' cannot constrain a forced call: %s", ce.msg);
        if (st == CELLM_ERR_UNSUPPORTED) e->code = "unsupported_parameter";
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; texts && i < 3 * n; i++) {
        if (i % 3 == 0)
            free(texts[i]); /* the prefix: malloc */
        else
            cJSON_free(texts[i]); /* the schema: cJSON's */
    }
    free(texts);
    free(parts);
    return rc;
}

int cellm_srv_chat_prompt(struct cellm_server *s, const cJSON *o, struct srv_params *p,
                          struct srv_error *e)
{
    const cJSON *ms = get(o, "messages");
    if (!ms) {
        cellm_srv_errorf(e, 400, "messages", "'messages' is required");
        e->code = "missing_required_parameter";
        return -1;
    }
    if (!cJSON_IsArray(ms)) return cellm_srv_bad_type(e, "messages", "a list of messages", ms);
    if (cJSON_GetArraySize(ms) == 0) {
        cellm_srv_errorf(e, 400, "messages", "'messages' is empty");
        return -1;
    }
    const cJSON *kw = get(o, "chat_template_kwargs"), *tools = get(o, "tools");
    if (kw && !cJSON_IsObject(kw))
        return cellm_srv_bad_type(e, "chat_template_kwargs", "an object", kw);
    int have_tools = check_tools(tools, e);
    if (have_tools < 0) return -1;
    const char *forced_name = NULL;
    int choice = tool_choice(o, have_tools, &forced_name, e);
    if (choice < 0) return -1;
    p->parallel_tool_calls = 1;
    const cJSON *ptc = get(o, "parallel_tool_calls");
    if (ptc && !cJSON_IsBool(ptc))
        return cellm_srv_bad_type(e, "parallel_tool_calls", "a boolean", ptc);
    if (ptc) p->parallel_tool_calls = cJSON_IsTrue(ptc);
    const cJSON *effort = get(o, "reasoning_effort");
    if (effort && !cJSON_IsString(effort))
        return cellm_srv_bad_type(e, "reasoning_effort", "a string", effort);
    const cJSON *rf = get(o, "reasoning_format");
    if (rf && !(cJSON_IsString(rf) &&
                (!strcmp(rf->valuestring, "none") || !strcmp(rf->valuestring, "auto") ||
                 !strcmp(rf->valuestring, "deepseek"))))
        return cellm_srv_bad_type(e, "reasoning_format", "\"none\", \"auto\" or \"deepseek\"", rf);
    int raw_reasoning = rf && !strcmp(rf->valuestring, "none");

    p->tc = cellm_tc_detect(s->tok ? cellm_tokenizer_chat_template(s->tok) : NULL);
    cJSON *msgs = messages(ms, p->tc.format == CELLM_TC_HARMONY, e);
    if (!msgs) {
        if (!e->status) cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    if (!s->tok) {
        cJSON_Delete(msgs);
        cellm_srv_errorf(e, 400, "messages",
                         "'messages' needs a tokenizer, and this checkpoint has no "
                         "tokenizer.json; send token ids in 'prompt_ids' to /v1/completions");
        return -1;
    }
    if (have_tools && choice && p->tc.format == CELLM_TC_NONE) {
        cJSON_Delete(msgs);
        cellm_srv_errorf(e, 400, "tools",
                         "this model's chat template shows no tool-call format cellm can parse "
                         "(known: hermes <tool_call>, qwen3_coder <function=...>, llama3 JSON "
                         "and <|python_tag|>, mistral [TOOL_CALLS], gpt-oss harmony, glm "
                         "<arg_key>, deepseek <｜tool▁calls▁begin｜>, pythonic "
                         "<|tool_call_start|>, granite <|tool_call|>, gemma4 <|tool_call>, kimi_k2 "
                         "<|tool_calls_section_begin|>); it "
                         "cannot take 'tools'");
        e->code = "unsupported_parameter";
        return -1;
    }
    cJSON *vars = cJSON_CreateObject();
    int ok = vars && cJSON_AddItemToObject(vars, "messages", msgs);
    if (!ok) cJSON_Delete(msgs);
    if (ok && have_tools) {
        cJSON *t = cJSON_Duplicate(tools, 1);
        ok = t && cJSON_AddItemToObject(vars, "tools", t);
        if (!ok) cJSON_Delete(t);
    }
    if (ok && effort)
        ok = cJSON_AddStringToObject(vars, "reasoning_effort", effort->valuestring) != NULL;
    for (const cJSON *x = kw ? kw->child : NULL; ok && x; x = x->next) {
        cJSON *c = cJSON_Duplicate(x, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(vars, x->string);
        ok = c && cJSON_AddItemToObject(vars, x->string, c);
        if (!ok) cJSON_Delete(c);
    }
    char *vj = ok ? cJSON_PrintUnformatted(vars) : NULL;
    cJSON_Delete(vars);
    if (!vj) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    char *text = NULL;
    struct cellm_error ce;
    int rc = -1;
    if (cellm_tokenizer_chat_vars(s->tok, vj, 1, &text, &ce)) {
        cellm_srv_errorf(e, 400, "messages", "the chat template failed: %s", ce.msg);
        goto out;
    }
    p->tool_calls = have_tools && choice;
    if (raw_reasoning) p->tc.think = 0;
    p->in_reasoning = p->tc.think && cellm_tc_prompt_opens_think(text);
    if (choice >= 2 && forced_call(s, tools, forced_name, p, e)) goto out;
    p->parse_out =
        p->tool_calls || p->tc.think || (p->tc.format == CELLM_TC_HARMONY && !raw_reasoning);
    if (!p->tool_calls && p->tc.format != CELLM_TC_HARMONY) p->tc.format = CELLM_TC_NONE;
    if (!p->parse_out) p->tc.keep_special = 0;
    /* qwen3_coder and glm read each parameter's declared type from the tools */
    if (p->tool_calls && (p->tc.format == CELLM_TC_QWEN3_CODER || p->tc.format == CELLM_TC_GLM) &&
        !(p->tools = cJSON_Duplicate(tools, 1))) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        goto out;
    }
    rc = cellm_srv_tokenize_text(s, text, 0, "messages", p, e);
out:
    free(text);
    cJSON_free(vj);
    return rc;
}
