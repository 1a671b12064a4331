/*
 * chat.c: cellm_tokenizer_chat: finds the checkpoint's chat template and renders it.
 *
 * The template is tokenizer_config.json's "chat_template" (a string, or a list of
 * {name, template} of which "default" is used), else chat_template.jinja. The variables are
 * those transformers' apply_chat_template passes: messages, add_generation_prompt, the
 * special tokens named in tokenizer_config.json (bos_token, eos_token, ...), then the
 * caller's extra keys, which override. The template engine itself is jinja.c. A template
 * set by the caller (--chat-template FILE) replaces the checkpoint's.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tokenizer.h"

#if defined(__has_include)
#if __has_include("tokenizer/jinja.h")
#include "tokenizer/jinja.h"
#define CELLM_HAVE_JINJA 1
#endif
#endif

static const char *find_template(const struct cellm_tokenizer *tok)
{
    if (tok->template_set) return tok->template_set;
    const cJSON *t = cellm_json_get(tok->config, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    for (const cJSON *x = cJSON_IsArray(t) ? t->child : NULL; x; x = x->next) {
        const cJSON *name = cellm_json_get(x, "name"), *tpl = cellm_json_get(x, "template");
        if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tpl))
            return tpl->valuestring;
    }
    return tok->template_file;
}

static enum cellm_status build_vars(const struct cellm_tokenizer *tok,
                                    const struct cellm_chat_message *msgs, size_t n,
                                    int add_generation_prompt, const char *extra_json, cJSON **out,
                                    struct cellm_error *err)
{
    cJSON *extra = NULL;
    if (extra_json) {
        CELLM_TRY(cellm_json_parse(extra_json, strlen(extra_json), "extra_json", &extra, err));
        if (!cJSON_IsObject(extra)) {
            cJSON_Delete(extra);
            return cellm_errf(err, CELLM_ERR_ARG, "extra_json: expected a JSON object");
        }
    }
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

enum cellm_status cellm_tokenizer_set_chat_template(struct cellm_tokenizer *tok, const char *tmpl,
                                                   struct cellm_error *err)
{
    if (!tok) return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_set_chat_template: NULL tok");
    char *copy = NULL;
    if (tmpl) {
        size_t n = strlen(tmpl);
        if (!(copy = cellm_malloc(n + 1))) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
        memcpy(copy, tmpl, n + 1);
    }
    cellm_free(tok->template_set);
    tok->template_set = copy;
    return CELLM_OK;
}

int cellm_tokenizer_has_chat_template(const struct cellm_tokenizer *tok)
{
    return tok && find_template(tok) != NULL;
}

enum cellm_status cellm_tokenizer_chat(const struct cellm_tokenizer *tok,
                                       const struct cellm_chat_message *msgs, size_t n,
                                       int add_generation_prompt, const char *extra_json,
                                       char **text, struct cellm_error *err)
{
    if (!tok || (!msgs && n) || !text)
        return cellm_errf(err, CELLM_ERR_ARG, "cellm_tokenizer_chat: NULL argument");
    const char *tmpl = find_template(tok);
    if (!tmpl)
        return cellm_errf(err, CELLM_ERR_NOT_FOUND,
                          "%s: the checkpoint has no chat template "
                          "(tokenizer_config.json chat_template or chat_template.jinja)",
                          tok->what);
    cJSON *vars = NULL;
    CELLM_TRY(build_vars(tok, msgs, n, add_generation_prompt, extra_json, &vars, err));
#ifdef CELLM_HAVE_JINJA
    enum cellm_status st = cellm_jinja_render(tmpl, strlen(tmpl), vars, text, err);
#else
    enum cellm_status st =
        cellm_errf(err, CELLM_ERR_UNSUPPORTED, "chat templates are not built into this cellm");
#endif
    cJSON_Delete(vars);
    return st;
}
