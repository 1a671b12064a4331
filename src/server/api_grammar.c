/*
 * api_grammar.c: the request fields that constrain the output, read into one compiled
 * grammar (struct srv_params.grammar):
 *   response_format {"type": "json_object"} or {"type": "json_schema", "json_schema":
 *   {"name", "schema", "strict"}} (OpenAI; llama-server's {"type": "json_object", "schema"}
 *   too), `grammar` (llama-server's GBNF), `json_schema` (llama-server), `guided_json` and
 *   `guided_grammar` and `guided_choice` (vLLM; the latter a list of strings, one of which
 *   is the whole output).
 * At most one of them per request. A schema keyword the converter does not support is a 400
 * naming the keyword and its path: the output is never silently unconstrained.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "srv.h"

static int compile(struct cellm_server *s, const char *field, enum cellm_grammar_kind kind,
                   const cJSON *v, struct srv_params *p, struct srv_error *e)
{
    if (!s->gvocab) {
        cellm_srv_errorf(e, 400, field,
                         "'%s' needs a tokenizer, and this checkpoint has no tokenizer.json",
                         field);
        return -1;
    }
    char *text = NULL;
    const char *t = NULL;
    if (kind == CELLM_GRAMMAR_JSON_SCHEMA && !cJSON_IsString(v)) {
        if (!(text = cJSON_PrintUnformatted(v))) {
            cellm_srv_errorf(e, 500, NULL, "out of memory");
            return -1;
        }
        t = text;
    } else if (v) {
        t = v->valuestring;
    }
    size_t tl = t ? strlen(t) : 0;
    char *key = malloc(tl + 2);
    if (key) {
        key[0] = (char)('0' + kind);
        memcpy(key + 1, t ? t : "", tl + 1);
    }
    const int nc = (int)(sizeof s->gcache / sizeof *s->gcache);
    pthread_mutex_lock(&s->gmu);
    for (int i = 0; key && i < nc && !p->grammar; i++)
        if (s->gcache[i].key && !strcmp(s->gcache[i].key, key)) {
            p->grammar = cellm_grammar_ref(s->gcache[i].g);
            s->gcache[i].used = ++s->gtick;
        }
    pthread_mutex_unlock(&s->gmu);
    if (p->grammar) {
        free(key);
        cJSON_free(text);
        return 0;
    }
    struct cellm_error ce;
    enum cellm_status st = cellm_grammar_new(kind, t, tl, &p->grammar, &ce);
    cJSON_free(text);
    if (!st && key) { /* keep it for the next request, in place of the least recently used */
        pthread_mutex_lock(&s->gmu);
        int lru = 0;
        for (int i = 1; i < nc; i++)
            if (s->gcache[i].used < s->gcache[lru].used) lru = i;
        free(s->gcache[lru].key);
        cellm_grammar_free(s->gcache[lru].g);
        s->gcache[lru] = (struct srv_gcache){key, cellm_grammar_ref(p->grammar), ++s->gtick};
        pthread_mutex_unlock(&s->gmu);
        key = NULL;
    }
    free(key);
    if (!st) return 0;
    cellm_srv_errorf(e, st == CELLM_ERR_NOMEM ? 500 : 400, field, "'%s': %s", field, ce.msg);
    if (st == CELLM_ERR_UNSUPPORTED) e->code = "unsupported_parameter";
    return -1;
}

static int type_error(struct srv_error *e, const char *field, const char *want)
{
    cellm_srv_errorf(e, 400, field, "'%s' must be %s", field, want);
    return -1;
}

/* guided_choice: root ::= "a" | "b" | ... (each string a GBNF literal, escaped). */
static int choice(struct cellm_server *s, const cJSON *j, struct srv_params *p, struct srv_error *e)
{
    if (!cJSON_IsArray(j) || !j->child)
        return type_error(e, "guided_choice", "a non-empty list of strings");
    size_t cap = 16;
    const cJSON *x;
    cJSON_ArrayForEach(x, j)
    {
        if (!cJSON_IsString(x) || !x->valuestring[0])
            return type_error(e, "guided_choice", "a non-empty list of non-empty strings");
        cap += 4 * strlen(x->valuestring) + 8;
    }
    char *t = malloc(cap), *w = t;
    if (!t) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    w += sprintf(w, "root ::=");
    cJSON_ArrayForEach(x, j)
    {
        w += sprintf(w, "%s \"", x == j->child ? "" : " |");
        for (const unsigned char *c = (const unsigned char *)x->valuestring; *c; c++)
            w += *c == '"' || *c == '\\' ? sprintf(w, "\\%c", *c)
                 : *c < 0x20             ? sprintf(w, "\\x%02X", *c)
                                         : sprintf(w, "%c", *c);
        *w++ = '"';
    }
    *w = 0;
    cJSON *v = cJSON_CreateString(t);
    free(t);
    if (!v) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    int rc = compile(s, "guided_choice", CELLM_GRAMMAR_GBNF, v, p, e);
    cJSON_Delete(v);
    return rc;
}

int cellm_srv_grammar_fields(struct cellm_server *s, const cJSON *o, struct srv_params *p,
                             struct srv_error *e)
{
    static const char *const fields[] = {"response_format", "grammar",        "json_schema",
                                         "guided_json",     "guided_grammar", "guided_choice"};
    const cJSON *j = NULL, *f;
    const char *which = NULL;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (!(f = cJSON_GetObjectItemCaseSensitive(o, fields[i])) || cJSON_IsNull(f)) continue;
        if (i == 0) { /* {"type": "text"} constrains nothing */
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(f, "type");
            if (!cJSON_IsObject(f)) return type_error(e, fields[i], "an object");
            if (!cJSON_IsString(t))
                return type_error(e, "response_format", "an object with a string 'type'");
            if (!strcmp(t->valuestring, "text")) continue;
        }
        if (which) {
            cellm_srv_errorf(e, 400, fields[i],
                             "'%s' and '%s' both constrain the output; send one of them", which,
                             fields[i]);
            return -1;
        }
        which = fields[i];
        j = f;
    }
    if (!which) return 0;
    if (!strcmp(which, "grammar") || !strcmp(which, "guided_grammar")) {
        if (!cJSON_IsString(j)) return type_error(e, which, "a string (GBNF)");
        return compile(s, which, CELLM_GRAMMAR_GBNF, j, p, e);
    }
    if (!strcmp(which, "guided_choice")) return choice(s, j, p, e);
    if (!strcmp(which, "json_schema") || !strcmp(which, "guided_json")) {
        if (!cJSON_IsObject(j) && !cJSON_IsBool(j) && !cJSON_IsString(j))
            return type_error(e, which, "a JSON Schema (an object)");
        return compile(s, which, CELLM_GRAMMAR_JSON_SCHEMA, j, p, e);
    }
    const char *type = cJSON_GetObjectItemCaseSensitive(j, "type")->valuestring;
    if (!strcmp(type, "json_object")) {
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(j, "schema"); /* llama-server */
        if (sc && !cJSON_IsNull(sc))
            return compile(s, "response_format", CELLM_GRAMMAR_JSON_SCHEMA, sc, p, e);
        return compile(s, "response_format", CELLM_GRAMMAR_JSON_OBJECT, NULL, p, e);
    }
    if (!strcmp(type, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "json_schema"), *sc;
        if (!cJSON_IsObject(js))
            return type_error(e, "response_format",
                              "{\"type\": \"json_schema\", \"json_schema\": {\"name\", "
                              "\"schema\"}}");
        sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!sc || cJSON_IsNull(sc))
            return compile(s, "response_format", CELLM_GRAMMAR_JSON_OBJECT, NULL, p, e);
        return compile(s, "response_format", CELLM_GRAMMAR_JSON_SCHEMA, sc, p, e);
    }
    cellm_srv_errorf(e, 400, "response_format",
                     "'response_format' type '%.64s' is not one of text, json_object, "
                     "json_schema",
                     type);
    return -1;
}
