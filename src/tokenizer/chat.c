/*
 * chat.c: the checkpoint's chat template: found and parsed once at load
 * (cellm_tok_chat_prepare), rendered by cellm_tokenizer_chat / cellm_tokenizer_chat_vars.
 *
 * The template is tokenizer_config.json's "chat_template" (a string, or a list of
 * {name, template} of which "default" is used), else chat_template.jinja. The variables are
 * those transformers' apply_chat_template passes: messages, add_generation_prompt, the
 * special tokens named in tokenizer_config.json (bos_token, eos_token, ...), then the
 * caller's keys (tools, documents, template kwargs), which override. The template engine
 * itself is src/template/. A template set by the caller (--chat-template FILE) replaces
 * the checkpoint's.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tokenizer.h"

#include "template/jinja.h"

static enum cellm_status parse_object(const char *json, const char *what, cJSON **out,
                                      struct cellm_error *err)
{
    *out = NULL;
    if (!json) return CELLM_OK;
    CELLM_TRY(cellm_json_parse(json, strlen(json), what, out, err));
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return cellm_errf(err, CELLM_ERR_ARG, "%s: expected a JSON object", what);
    }
    return CELLM_OK;
}

/* Takes extra (may be NULL; freed here). */
static enum cellm_status build_vars(const struct cellm_tokenizer *tok,
                                    const struct cellm_chat_message *msgs, size_t n,
                                    int add_generation_prompt, cJSON *extra, cJSON **out,
                                    struct cellm_error *err)
{
    cJSON *vars = cJSON_CreateObject(), *list = cJSON_CreateArray();
    int ok = vars && list && cJSON_AddItemToObject(vars, "messages", list);
    if (!ok) cJSON_Delete(list);
    for (size_t i = 0; ok && i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddItemToArray(list, m) &&
             cJSON_AddStringToObject(m, "role", msgs[i].role ? msgs[i].role : "") &&
             cJSON_AddStringToObject(m, "content", msgs[i].content ? msgs[i].content : "");
        if (!ok && m && !list->child) cJSON_Delete(m);
    }
    ok = ok && cJSON_AddBoolToObject(vars, "add_generation_prompt", add_generation_prompt);
    static const char *specials[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                     "pad_token", "cls_token", "mask_token"};
    for (size_t i = 0; ok && i < sizeof specials / sizeof specials[0]; i++) {
        const cJSON *v = cellm_json_get(tok->config, specials[i]);
        if (cJSON_IsObject(v)) v = cellm_json_get(v, "content");
        if (cJSON_IsString(v))
            ok = cJSON_AddStringToObject(vars, specials[i], v->valuestring) != NULL;
    }
    const cJSON *add = cellm_json_get(tok->config, "additional_special_tokens");
    if (ok && cJSON_IsArray(add)) {
        cJSON *c = cJSON_Duplicate(add, 1);
        ok = c && cJSON_AddItemToObject(vars, "additional_special_tokens", c);
        if (!ok) cJSON_Delete(c);
    }
    for (cJSON *e = extra ? extra->child : NULL; ok && e; e = e->next) {
        cJSON *c = cJSON_Duplicate(e, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(vars, e->string);
        ok = c && cJSON_AddItemToObject(vars, e->string, c);
        if (!ok) cJSON_Delete(c);
    }
    cJSON_Delete(extra);
    if (!ok) {
        cJSON_Delete(vars);
        return cellm_errf(err, CELLM_ERR_NOMEM, "chat: out of memory");
    }
    *out = vars;
    return CELLM_OK;
}

/* The template's source: the one set, else tokenizer_config.json's, else the file's. */
static const char *config_template(const struct cellm_tokenizer *tok)
{
    const cJSON *t = cellm_json_get(tok->config, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    for (const cJSON *x = cJSON_IsArray(t) ? t->child : NULL; x; x = x->next) {
        const cJSON *name = cellm_json_get(x, "name"), *tpl = cellm_json_get(x, "template");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
            return tpl->valuestring;
    }
    return tok->template_file;
}

enum cellm_status cellm_tok_chat_prepare(struct cellm_tokenizer *tok, struct cellm_error *err)
{
    const char *src = config_template(tok);
    if (!src) return CELLM_OK;
    enum cellm_status st = cellm_jinja_parse(src, strlen(src), &tok->template_parsed, err);
    if (st) {
        char why[sizeof err->msg];
        memcpy(why, err->msg, sizeof why);
        cellm_errf(err, st, "%s: the chat template (%s) does not parse: %s", tok->what,
                   tok->template_file && src == tok->template_file ? "chat_template.jinja"
                                                                   : "tokenizer_config.json",
                   why);
    }
    return st;
}

enum cellm_status cellm_tokenizer_set_chat_template(struct cellm_tokenizer *tok, const char *tmpl,
                                                    struct cellm_error *err)
{
    if (!tok) return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_set_chat_template: NULL tok");
    char *copy = NULL;
    struct cellm_jinja_tmpl *parsed = NULL;
    if (tmpl) {
        size_t n = strlen(tmpl);
        if (!(copy = cellm_malloc(n + 1))) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
        memcpy(copy, tmpl, n + 1);
        enum cellm_status st = cellm_jinja_parse(copy, n, &parsed, err);
        if (st) {
            char why[sizeof err->msg];
            memcpy(why, err->msg, sizeof why);
            cellm_free(copy);
            return cellm_errf(err, st, "the chat template does not parse: %s", why);
        }
    }
    cellm_free(tok->template_set);
    cellm_jinja_free(tok->template_set_parsed);
    tok->template_set = copy;
    tok->template_set_parsed = parsed;
    return CELLM_OK;
}

int cellm_tokenizer_has_chat_template(const struct cellm_tokenizer *tok)
{
    return tok && (tok->template_set_parsed || tok->template_parsed);
}

const char *cellm_tokenizer_chat_template(const struct cellm_tokenizer *tok)
{
    if (!tok) return NULL;
    return tok->template_set ? tok->template_set : config_template(tok);
}

static enum cellm_status render(const struct cellm_tokenizer *tok, const cJSON *vars, char **text,
                                struct cellm_error *err)
{
    const struct cellm_jinja_tmpl *t =
        tok->template_set_parsed ? tok->template_set_parsed : tok->template_parsed;
    if (!t)
        return cellm_errf(err, CELLM_ERR_NOT_FOUND,
                          "%s: the checkpoint has no chat template "
                          "(tokenizer_config.json chat_template or chat_template.jinja)",
                          tok->what);
    return cellm_jinja_render_parsed(t, vars, text, err);
}

enum cellm_status cellm_tokenizer_chat(const struct cellm_tokenizer *tok,
                                       const struct cellm_chat_message *msgs, size_t n,
                                       int add_generation_prompt, const char *extra_json,
                                       char **text, struct cellm_error *err)
{
    if (!tok || (!msgs && n) || !text)
        return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_chat: NULL argument");
    if (!cellm_tokenizer_has_chat_template(tok)) return render(tok, NULL, text, err);
    cJSON *extra = NULL, *vars = NULL;
    CELLM_TRY(parse_object(extra_json, "extra_json", &extra, err));
    CELLM_TRY(build_vars(tok, msgs, n, add_generation_prompt, extra, &vars, err));
    enum cellm_status st = render(tok, vars, text, err);
    cJSON_Delete(vars);
    return st;
}

/* tool_calls[].function.arguments given as a JSON string becomes the value it encodes
 * (left as it is when it does not parse: the template then shows the string). */
static int arguments_as_objects(cJSON *messages)
{
    cJSON *m;
    cJSON_ArrayForEach(m, messages)
    {
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(m, "tool_calls");
        for (cJSON *c = cJSON_IsArray(calls) ? calls->child : NULL; c; c = c->next) {
            cJSON *f = cJSON_GetObjectItemCaseSensitive(c, "function");
            cJSON *a = cJSON_GetObjectItemCaseSensitive(f, "arguments");
            if (!cJSON_IsString(a)) continue;
            cJSON *v = cJSON_Parse(a->valuestring);
            if (!v) continue;
            if (!cJSON_ReplaceItemInObjectCaseSensitive(f, "arguments", v)) {
                cJSON_Delete(v);
                return 0;
            }
        }
    }
    return 1;
}

enum cellm_status cellm_tokenizer_chat_vars(const struct cellm_tokenizer *tok,
                                            const char *vars_json, int add_generation_prompt,
                                            char **text, struct cellm_error *err)
{
    if (!tok || !vars_json || !text)
        return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_chat_vars: NULL argument");
    if (!cellm_tokenizer_has_chat_template(tok)) return render(tok, NULL, text, err);
    cJSON *extra = NULL, *vars = NULL;
    CELLM_TRY(parse_object(vars_json, "vars_json", &extra, err));
    cJSON *ms = cJSON_DetachItemFromObjectCaseSensitive(extra, "messages");
    if (!cJSON_IsArray(ms)) {
        cJSON_Delete(ms);
        cJSON_Delete(extra);
        return cellm_errf(err, CELLM_ERR_ARG, "vars_json: \"messages\" must be a list");
    }
    enum cellm_status st = build_vars(tok, NULL, 0, add_generation_prompt, extra, &vars, err);
    if (st) {
        cJSON_Delete(ms);
        return st;
    }
    int ok = arguments_as_objects(ms);
    if (ok) ok = cJSON_ReplaceItemInObjectCaseSensitive(vars, "messages", ms);
    if (!ok) {
        cJSON_Delete(ms);
        cJSON_Delete(vars);
        return cellm_errf(err, CELLM_ERR_NOMEM, "chat: out of memory");
    }
    st = render(tok, vars, text, err);
    cJSON_Delete(vars);
    return st;
}
