/*
 * toolcall_fmt.c: the bodies of the call blocks whose syntax is not JSON in JSON: GLM's
 * <arg_key>/<arg_value> pairs, DeepSeek's <｜tool▁call▁begin｜> calls, Kimi K2's
 * <|tool_call_begin|> calls, LFM2's Python calls and Gemma 4's calls. toolcall.c finds where a
 * block starts and ends; these read what is between and report its calls, all of them or (when one
 * is malformed) none.
 */
#include <stdlib.h>
#include <string.h>

#include "template/toolcall_impl.h"

/* The JSON value that is all of s[0..n) but whitespace, or NULL. cJSON alone would take
 * "12 apples" as 12. */
static cJSON *parse_whole(const char *s, size_t n)
{
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!v) return NULL;
    while (end < s + n && tc_is_ws(*end))
        end++;
    if (end != s + n) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

/* A function name: no whitespace and none of the characters that open or close markup. */
static int good_name(const char *s)
{
    if (!s || !s[0]) return 0;
    for (; *s; s++)
        if (tc_is_ws(*s) || strchr("<>{}[]()\"'", *s)) return 0;
    return 1;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && tc_is_ws(s[i]))
        i++;
    return i;
}

static int starts(const char *s, size_t n, size_t i, const char *lit)
{
    size_t l = strlen(lit);
    return i + l <= n && !memcmp(s + i, lit, l);
}

/* The offset of lit in s[i..n), or n. */
static size_t find(const char *s, size_t n, size_t i, const char *lit)
{
    const char *e = i <= n ? memmem(s + i, n - i, lit, strlen(lit)) : NULL;
    return e ? (size_t)(e - s) : n;
}

/* Reports each call of the lists (all parsed already). */
static int report(char **names, char **args, int nc, const struct cellm_tc_sink *k)
{
    for (int i = 0; i < nc; i++)
        if (k->call && k->call(k->ud, names[i], args[i])) return -1;
    return 0;
}

/* Room for call nc in the parallel lists of names and arguments; -1 when out of memory
 * (the lists stay valid, for free_lists). */
static int grow_lists(char ***names, char ***args, int nc, int *cap)
{
    if (nc < *cap) return 0;
    int c = *cap ? 2 * *cap : 4;
    char **a = realloc(*names, (size_t)c * sizeof *a);
    if (a) *names = a;
    char **b = a ? realloc(*args, (size_t)c * sizeof *b) : NULL;
    if (b) *args = b;
    if (!a || !b) return -1;
    *cap = c;
    return 0;
}

static void free_lists(char **names, char **args, int nc)
{
    for (int i = 0; i < nc; i++) {
        free(names[i]);
        free(args[i]);
    }
    free(names);
    free(args);
}

/* ---- GLM-4.5 / 4.6 ------------------------------------------------------------------------ */

int tc_call_glm(const cJSON *tools, const char *s, size_t n, const struct cellm_tc_sink *k)
{
    static const char KO[] = "<arg_key>", KC[] = "</arg_key>";
    static const char VO[] = "<arg_value>", VC[] = "</arg_value>";
    size_t i = find(s, n, 0, KO);
    char *name = tc_dup_trim(s, i);
    cJSON *args = cJSON_CreateObject();
    int rc = 1;
    if (!name || !args) {
        rc = -1;
        goto out;
    }
    if (!good_name(name)) goto out;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i == n) break;
        if (!starts(s, n, i, KO)) goto out;
        size_t ke = find(s, n, i + strlen(KO), KC);
        if (ke == n) goto out;
        size_t vo = skip_ws(s, n, ke + strlen(KC));
        if (!starts(s, n, vo, VO)) goto out;
        size_t vs = vo + strlen(VO), ve = find(s, n, vs, VC);
        if (ve == n) goto out;
        char *key = tc_dup_trim(s + i + strlen(KO), ke - i - strlen(KO));
        if (!key) {
            rc = -1;
            goto out;
        }
        /* as vLLM's glm45 parser: a parameter the tool declares a string is the text as
         * written; any other value is JSON when it is JSON, else the text */
        const char *ty = tc_param_type(tools, name, key);
        cJSON *v = ty && !strcmp(ty, "string") ? NULL : parse_whole(s + vs, ve - vs);
        if (!v) {
            char *sv = strndup(s + vs, ve - vs);
            v = sv ? cJSON_CreateString(sv) : NULL;
            free(sv);
        }
        int ok = key[0] && v && !cJSON_GetObjectItemCaseSensitive(args, key) &&
                 cJSON_AddItemToObject(args, key, v);
        if (!ok) cJSON_Delete(v);
        free(key);
        if (!ok) goto out;
        i = ve + strlen(VC);
    }
    char *a = cJSON_PrintUnformatted(args);
    rc = !a ? -1 : k->call && k->call(k->ud, name, a) ? -1 : 0;
    free(a);
out:
    cJSON_Delete(args);
    free(name);
    return rc;
}

/* ---- DeepSeek-V3 / V3.1 and Kimi K2 ------------------------------------------------------- */

/* The markers of one call: DeepSeek's or Kimi K2's. */
struct seq_marks {
    const char *call, *sep, *end;
    int kimi; /* the head is an id, functions.NAME:INDEX */
};

static int calls_seq(const struct seq_marks *mk, const char *s, size_t n,
                     const struct cellm_tc_sink *k)
{
    int nc = 0, cap = 0, rc = 1;
    char **names = NULL, **args = NULL;
    size_t i = 0;
    for (;;) {
        i = skip_ws(s, n, i);
        if (i == n) break;
        if (!starts(s, n, i, mk->call)) goto out;
        size_t ns = i + strlen(mk->call), se = find(s, n, ns, mk->sep);
        size_t bs = se + strlen(mk->sep), be = find(s, n, bs, mk->end);
        if (se == n || be == n) goto out;
        if (grow_lists(&names, &args, nc, &cap)) {
            rc = -1;
            goto out;
        }
        names[nc] = tc_dup_trim(s + ns, se - ns);
        args[nc] = NULL;
        nc++;
        if (!names[nc - 1]) {
            rc = -1;
            goto out;
        }
        /* V3 and R1 write "function<｜tool▁sep｜>NAME\n```json\n{...}\n```" */
        size_t js = bs, je = be;
        char *nm = names[nc - 1], *colon = strrchr(nm, ':');
        if (mk->kimi) { /* functions.NAME:0, as vLLM's kimi_k2 parser reads it */
            if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
                goto out;
            *colon = 0;
            if (!strncmp(nm, "functions.", 10)) memmove(nm, nm + 10, strlen(nm + 10) + 1);
        } else if (!strcmp(nm, "function")) {
            size_t nl = find(s, be, bs, "\n");
            size_t fo = find(s, be, nl, "```json");
            size_t fc = fo < be ? find(s, be, fo + 7, "```") : be;
            if (nl == be || fo == be || fc == be) goto out;
            free(names[nc - 1]);
            if (!(names[nc - 1] = tc_dup_trim(s + bs, nl - bs))) {
                rc = -1;
                goto out;
            }
            if (skip_ws(s, be, fc + 3) != be) goto out; /* nothing may follow the fence */
            js = fo + 7, je = fc;
        }
        if (!good_name(names[nc - 1])) goto out;
        cJSON *v = parse_whole(s + js, je - js);
        int obj = cJSON_IsObject(v);
        cJSON_Delete(v);
        if (!obj) goto out;
        if (!(args[nc - 1] = tc_minify(s + js, je - js))) {
            rc = -1;
            goto out;
        }
        i = be + strlen(mk->end);
    }
    rc = nc ? report(names, args, nc, k) : 1;
out:
    free_lists(names, args, nc);
    return rc;
}

int tc_calls_deepseek(const char *s, size_t n, const struct cellm_tc_sink *k)
{
    static const struct seq_marks mk = {TC_DS_CALL, TC_DS_SEP, TC_DS_CALL_END, 0};
    return calls_seq(&mk, s, n, k);
}

int tc_calls_kimi(const char *s, size_t n, const struct cellm_tc_sink *k)
{
    static const struct seq_marks mk = {"<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                                        "<|tool_call_end|>", 1};
    return calls_seq(&mk, s, n, k);
}

/* ---- LFM2: Python calls ------------------------------------------------------------------- */

struct py {
    const char *s;
    size_t n, i;
};

static void py_ws(struct py *q)
{
    q->i = skip_ws(q->s, q->n, q->i);
}

static int py_ident_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
}

/* A Python (or JSON) string literal in single or double quotes, as a cJSON string. */
static cJSON *py_string(struct py *q)
{
    char quote = q->s[q->i++];
    char *b = malloc(q->n - q->i + 1);
    size_t w = 0;
    if (!b) return NULL;
    while (q->i < q->n && q->s[q->i] != quote) {
        char c = q->s[q->i++];
        if (c == '\\' && q->i < q->n) {
            c = q->s[q->i++];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
        }
        b[w++] = c;
    }
    cJSON *v = NULL;
    if (q->i < q->n) {
        q->i++;
        b[w] = 0;
        v = cJSON_CreateString(b);
    }
    free(b);
    return v;
}

static cJSON *py_value(struct py *q, int depth);

/* [v, ...] or {k: v, ...}; a trailing comma is allowed, as in Python. */
static cJSON *py_container(struct py *q, int depth)
{
    char close = q->s[q->i] == '[' ? ']' : '}';
    cJSON *c = close == ']' ? cJSON_CreateArray() : cJSON_CreateObject();
    q->i++;
    for (;;) {
        py_ws(q);
        if (!c || q->i >= q->n) break;
        if (q->s[q->i] == close) {
            q->i++;
            return c;
        }
        cJSON *key = NULL;
        if (close == '}') {
            if (q->s[q->i] != '"' && q->s[q->i] != '\'') break;
            key = py_string(q);
            py_ws(q);
            if (!key || q->i >= q->n || q->s[q->i] != ':') {
                cJSON_Delete(key);
                break;
            }
            q->i++;
        }
        cJSON *v = py_value(q, depth + 1);
        int ok =
            v && (key ? cJSON_AddItemToObject(c, key->valuestring, v) : cJSON_AddItemToArray(c, v));
        cJSON_Delete(key);
        if (!ok) {
            cJSON_Delete(v);
            break;
        }
        py_ws(q);
        if (q->i < q->n && q->s[q->i] == ',')
            q->i++;
        else if (q->i >= q->n || q->s[q->i] != close)
            break;
    }
    cJSON_Delete(c);
    return NULL;
}

static cJSON *py_value(struct py *q, int depth)
{
    py_ws(q);
    if (q->i >= q->n || depth > 64) return NULL;
    char c = q->s[q->i];
    if (c == '"' || c == '\'') return py_string(q);
    if (c == '[' || c == '{') return py_container(q, depth);
    size_t st = q->i;
    while (q->i < q->n && (py_ident_char(q->s[q->i]) || q->s[q->i] == '+'))
        q->i++;
    size_t l = q->i - st;
    const char *w = q->s + st;
    if ((l == 4 && !memcmp(w, "True", 4)) || (l == 4 && !memcmp(w, "true", 4)))
        return cJSON_CreateTrue();
    if ((l == 5 && !memcmp(w, "False", 5)) || (l == 5 && !memcmp(w, "false", 5)))
        return cJSON_CreateFalse();
    if ((l == 4 && !memcmp(w, "None", 4)) || (l == 4 && !memcmp(w, "null", 4)))
        return cJSON_CreateNull();
    /* a number is kept as written (cJSON would reprint 1e5 as 100000) */
    cJSON *num = l ? parse_whole(w, l) : NULL;
    if (!cJSON_IsNumber(num)) {
        cJSON_Delete(num);
        return NULL;
    }
    cJSON_Delete(num);
    char *raw = strndup(w, l);
    cJSON *v = raw ? cJSON_CreateRaw(raw) : NULL;
    free(raw);
    return v;
}

int tc_calls_pythonic(const char *s, size_t n, const struct cellm_tc_sink *k)
{
    struct py q = {s, n, 0};
    int nc = 0, cap = 0, rc = 1;
    char **names = NULL, **args = NULL;
    cJSON *obj = NULL;
    py_ws(&q);
    if (q.i >= n || s[q.i] != '[') goto out;
    q.i++;
    for (;;) {
        py_ws(&q);
        if (q.i < n && s[q.i] == ']' && nc) break;
        size_t st = q.i;
        while (q.i < n && py_ident_char(s[q.i]))
            q.i++;
        if (q.i == st || q.i >= n || s[q.i] != '(') goto out;
        if (grow_lists(&names, &args, nc, &cap)) {
            rc = -1;
            goto out;
        }
        names[nc] = strndup(s + st, q.i - st);
        args[nc] = NULL;
        nc++;
        if (!names[nc - 1] || !(obj = cJSON_CreateObject())) {
            rc = -1;
            goto out;
        }
        q.i++;
        for (;;) { /* NAME=VALUE, ... ) */
            py_ws(&q);
            if (q.i < n && s[q.i] == ')') break;
            size_t ks = q.i;
            while (q.i < n && py_ident_char(s[q.i]))
                q.i++;
            size_t ke = q.i;
            py_ws(&q);
            if (ke == ks || q.i >= n || s[q.i] != '=') goto out;
            q.i++;
            char *key = strndup(s + ks, ke - ks);
            cJSON *v = key ? py_value(&q, 0) : NULL;
            int ok = v && !cJSON_GetObjectItemCaseSensitive(obj, key) &&
                     cJSON_AddItemToObject(obj, key, v);
            if (!ok) cJSON_Delete(v);
            free(key);
            if (!ok) goto out;
            py_ws(&q);
            if (q.i < n && s[q.i] == ',')
                q.i++;
            else if (q.i >= n || s[q.i] != ')')
                goto out;
        }
        q.i++;
        if (!(args[nc - 1] = cJSON_PrintUnformatted(obj))) {
            rc = -1;
            goto out;
        }
        cJSON_Delete(obj);
        obj = NULL;
        py_ws(&q);
        if (q.i < n && s[q.i] == ',')
            q.i++;
        else if (q.i >= n || s[q.i] != ']')
            goto out;
    }
    q.i++;
    py_ws(&q);
    if (q.i != n) goto out;
    rc = report(names, args, nc, k);
out:
    cJSON_Delete(obj);
    free_lists(names, args, nc);
    return rc;
}

/* ---- Gemma 4 ------------------------------------------------------------------------------ */

/* Gemma 4 writes its own notation: strings between <|"|> quotes (no escapes), keys bare,
 * numbers and true/false as JSON. */
#define G4_QUOTE "<|\"|>"

static cJSON *g4_value(struct py *q, int depth);

static cJSON *g4_string(struct py *q)
{
    size_t st = q->i + strlen(G4_QUOTE), e = find(q->s, q->n, st, G4_QUOTE);
    if (e == q->n) return NULL;
    char *t = strndup(q->s + st, e - st);
    cJSON *v = t ? cJSON_CreateString(t) : NULL;
    free(t);
    q->i = e + strlen(G4_QUOTE);
    return v;
}

static cJSON *g4_container(struct py *q, int depth)
{
    char close = q->s[q->i] == '[' ? ']' : '}';
    cJSON *c = close == ']' ? cJSON_CreateArray() : cJSON_CreateObject();
    q->i++;
    for (int first = 1;; first = 0) {
        if (!c || q->i >= q->n) break;
        if (q->s[q->i] == close && first) {
            q->i++;
            return c;
        }
        char *key = NULL;
        if (close == '}') {
            if (starts(q->s, q->n, q->i, G4_QUOTE)) {
                cJSON *k = g4_string(q);
                key = k ? strdup(k->valuestring) : NULL;
                cJSON_Delete(k);
            } else {
                size_t ks = q->i;
                while (q->i < q->n && py_ident_char(q->s[q->i]))
                    q->i++;
                key = q->i > ks ? strndup(q->s + ks, q->i - ks) : NULL;
            }
            if (!key || q->i >= q->n || q->s[q->i] != ':') {
                free(key);
                break;
            }
            q->i++;
        }
        cJSON *v = g4_value(q, depth + 1);
        int ok = v && (key ? !cJSON_GetObjectItemCaseSensitive(c, key) &&
                                 cJSON_AddItemToObject(c, key, v)
                           : cJSON_AddItemToArray(c, v));
        free(key);
        if (!ok) {
            cJSON_Delete(v);
            break;
        }
        if (q->i < q->n && q->s[q->i] == ',') {
            q->i++;
        } else if (q->i < q->n && q->s[q->i] == close) {
            q->i++;
            return c;
        } else {
            break;
        }
    }
    cJSON_Delete(c);
    return NULL;
}

static cJSON *g4_value(struct py *q, int depth)
{
    if (q->i >= q->n || depth > 64) return NULL;
    if (starts(q->s, q->n, q->i, G4_QUOTE)) return g4_string(q);
    char c = q->s[q->i];
    if (c == '[' || c == '{') return g4_container(q, depth);
    size_t st = q->i;
    while (q->i < q->n && (py_ident_char(q->s[q->i]) || q->s[q->i] == '+'))
        q->i++;
    cJSON *v = q->i > st ? parse_whole(q->s + st, q->i - st) : NULL;
    if (cJSON_IsNumber(v)) { /* kept as written */
        cJSON_Delete(v);
        char *raw = strndup(q->s + st, q->i - st);
        v = raw ? cJSON_CreateRaw(raw) : NULL;
        free(raw);
    } else if (!cJSON_IsBool(v) && !cJSON_IsNull(v)) {
        cJSON_Delete(v);
        v = NULL;
    }
    return v;
}

int tc_call_gemma4(const char *s, size_t n, const struct cellm_tc_sink *k)
{
    struct py q = {s, n, skip_ws(s, n, 0)};
    if (!starts(s, n, q.i, "call:")) return 1;
    size_t ns = q.i + 5, ne = ns;
    while (ne < n && s[ne] != '{')
        ne++;
    char *name = tc_dup_trim(s + ns, ne - ns);
    if (!name) return -1;
    int rc = 1;
    q.i = ne;
    cJSON *args = ne < n && good_name(name) ? g4_container(&q, 0) : NULL;
    if (args && skip_ws(s, n, q.i) == n) {
        char *a = cJSON_PrintUnformatted(args);
        rc = !a ? -1 : k->call && k->call(k->ud, name, a) ? -1 : 0;
        free(a);
    }
    cJSON_Delete(args);
    free(name);
    return rc;
}
