/*
 * toolcall.c: the streaming parser of tool calls and reasoning (see toolcall.h).
 *
 * The parser keeps the text it has not decided yet (pend) and a state: plain text,
 * reasoning, inside a call, or for harmony a message header or body. Each feed appends
 * and then decides as much as it can; what could still be the start of a marker stays in
 * pend. Calls are buffered whole, since only a complete call can be checked; a sink that
 * takes calls as they are generated also gets toolcall_stream.c's view of the call so far.
 * A call's arguments are its JSON text without the whitespace outside strings (not a
 * reprint), so that the pieces streamed from the text so far add up to them.
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "template/toolcall_impl.h"

static const char *const CALL_OPEN = "<tool_call>", *const CALL_CLOSE = "</tool_call>";
static const char *const THINK_OPEN = "<think>", *const THINK_CLOSE = "</think>";
/* Gemma 4 thinks in a channel: <|channel>thought\n...<channel|> */
static const char *const G4_THINK_OPEN = "<|channel>thought", *const G4_THINK_CLOSE = "<channel|>";
static const char *const PY_TAG = "<|python_tag|>", *const MISTRAL_TAG = "[TOOL_CALLS]";
static const char *const H_MESSAGE = "<|message|>";
static const char *const LFM_OPEN = "<|tool_call_start|>", *const LFM_CLOSE = "<|tool_call_end|>";
static const char *const GRANITE_TAG = "<|tool_call|>";
static const char *const G4_OPEN = "<|tool_call>", *const G4_CLOSE = "<tool_call|>";
static const char *const KIMI_OPEN = "<|tool_calls_section_begin|>",
                         *const KIMI_CLOSE = "<|tool_calls_section_end|>";

struct cellm_tc_style cellm_tc_detect(const char *t)
{
    struct cellm_tc_style s = {CELLM_TC_NONE, 0, 0, 0};
    if (!t) return s;
    /* gpt-oss writes "to=" and "functions." apart, so look for harmony's own tokens */
    if (strstr(t, "<|channel|>") && strstr(t, "<|message|>") && strstr(t, "<|call|>")) {
        s.format = CELLM_TC_HARMONY;
        s.keep_special = 1;
        return s;
    }
    s.think = strstr(t, THINK_OPEN) && strstr(t, THINK_CLOSE);
    /* the markers of these are special tokens in their tokenizers, or may be */
    s.keep_special = 1;
    if (strstr(t, "<arg_key>") && strstr(t, CALL_OPEN)) {
        s.format = CELLM_TC_GLM;
        return s;
    }
    if (strstr(t, TC_DS_CALLS) && strstr(t, TC_DS_SEP)) {
        s.format = CELLM_TC_DEEPSEEK;
        return s;
    }
    if (strstr(t, KIMI_OPEN) && strstr(t, "<|tool_call_argument_begin|>")) {
        s.format = CELLM_TC_KIMI_K2;
        return s;
    }
    if (strstr(t, LFM_OPEN) && strstr(t, LFM_CLOSE)) {
        s.format = CELLM_TC_PYTHONIC;
        return s;
    }
    if (strstr(t, "<|tool_call>call:") && strstr(t, G4_CLOSE)) {
        s.format = CELLM_TC_GEMMA4;
        s.think = strstr(t, G4_THINK_OPEN) && strstr(t, G4_THINK_CLOSE);
        s.think_channel = s.think;
        return s;
    }
    if (strstr(t, GRANITE_TAG)) {
        s.format = CELLM_TC_GRANITE;
        return s;
    }
    s.keep_special = 0;
    if (strstr(t, "<function=") && strstr(t, "<parameter=") && strstr(t, CALL_OPEN))
        s.format = CELLM_TC_QWEN3_CODER;
    else if (strstr(t, CALL_OPEN))
        s.format = CELLM_TC_HERMES;
    else if (strstr(t, MISTRAL_TAG))
        s.format = CELLM_TC_MISTRAL, s.keep_special = 1;
    else if (strstr(t, "<|start_header_id|>") && (strstr(t, "python_tag") || strstr(t, "ipython")))
        s.format = CELLM_TC_LLAMA3, s.keep_special = 1;
    return s;
}

const char *cellm_tc_format_name(enum cellm_tc_format f)
{
    static const char *const names[] = {"none",     "hermes",  "qwen3_coder", "llama3",
                                        "mistral",  "harmony", "glm",         "deepseek",
                                        "pythonic", "granite", "gemma4",      "kimi_k2"};
    return (unsigned)f < sizeof names / sizeof *names ? names[f] : "none";
}

int cellm_tc_prompt_opens_think(const char *prompt)
{
    const char *o = NULL, *c = NULL;
    for (const char *p = prompt; p && (p = strstr(p, THINK_OPEN)); p++)
        o = p;
    for (const char *p = prompt; p && (p = strstr(p, THINK_CLOSE)); p++)
        c = p;
    if (!o) return 0;
    /* open only when the last <think> is not closed and nothing but whitespace follows it */
    if (c && c > o) return 0;
    for (const char *p = o + strlen(THINK_OPEN); *p; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') return 0;
    return 1;
}

enum cellm_status cellm_tc_new(const struct cellm_tc_style *style, int in_reasoning,
                               const cJSON *tools, struct cellm_tc **out, struct cellm_error *err)
{
    struct cellm_tc *p = cellm_calloc(1, sizeof *p);
    if (!p || (tools && !(p->tools = cJSON_Duplicate(tools, 1)))) {
        cellm_free(p);
        return cellm_errf(err, CELLM_ERR_NOMEM, "tool-call parser: out of memory");
    }
    p->st = *style;
    p->state = p->st.format == CELLM_TC_HARMONY ? S_HEADER : S_TEXT;
    if (in_reasoning && p->st.think && p->state == S_TEXT) p->state = S_REASON, p->skip_ws = 1;
    *out = p;
    return CELLM_OK;
}

void cellm_tc_free(struct cellm_tc *p)
{
    if (!p) return;
    tc_stream_reset(p);
    cellm_free(p->sent);
    cJSON_Delete(p->tools);
    cellm_free(p->pend);
    cellm_free(p->callee);
    cellm_free(p);
}

/* ---- helpers ------------------------------------------------------------------------------ */

#define is_ws tc_is_ws
#define TC_MAX_HEAD 1024 /* bytes of a Mistral call's NAME[CALL_ID]ID before its [ARGS] */

static void consume(struct cellm_tc *p, size_t k)
{
    memmove(p->pend, p->pend + k, p->n - k);
    p->n -= k;
    if (k) p->js.open = 0; /* offsets into the pending text moved */
}

/* The earliest of marks in s[0..n): its offset (n when none) and which one. */
static size_t find_first(const char *s, size_t n, const char *const *marks, int nm, int *which)
{
    size_t best = n;
    *which = -1;
    for (int m = 0; m < nm; m++) {
        size_t ml = strlen(marks[m]);
        for (size_t i = 0; i + ml <= n && i < best; i++)
            if (!memcmp(s + i, marks[m], ml)) {
                best = i;
                *which = m;
                break;
            }
    }
    return best;
}

size_t tc_held(const char *s, size_t n, const char *const *marks, int nm)
{
    size_t best = 0;
    for (int m = 0; m < nm; m++) {
        size_t ml = strlen(marks[m]);
        for (size_t k = ml - 1; k > best; k--)
            if (k <= n && !memcmp(s + n - k, marks[m], k)) {
                best = k;
                break;
            }
    }
    return best;
}

/* Reads s[j->pos, n) on from where j stopped: the length from j->base of the complete
 * JSON object or array that starts there (after whitespace), 0 when it is not complete
 * yet (j then holds where it stopped), -1 when none starts there. */
static long jscan(struct tc_jscan *j, const char *s, size_t n)
{
    size_t i = j->pos;
    if (!j->started) {
        while (i < n && is_ws(s[i]))
            i++;
        j->pos = i;
        if (i == n) return 0;
        if (s[i] != '{' && s[i] != '[') {
            j->open = 0;
            return -1;
        }
        j->started = 1;
    }
    for (; i < n; i++) {
        char c = s[i];
        if (j->esc) {
            j->esc = 0;
        } else if (j->str) {
            if (c == '\\')
                j->esc = 1;
            else if (c == '"')
                j->str = 0;
        } else if (c == '"') {
            j->str = 1;
        } else if (c == '{' || c == '[') {
            j->depth++;
        } else if ((c == '}' || c == ']') && --j->depth == 0) {
            j->open = 0;
            return (long)(i + 1 - j->base);
        }
    }
    j->pos = n;
    return 0;
}

/* The length of the complete JSON object or array at the start of s (after whitespace),
 * 0 when it is not complete yet, -1 when s does not start with one. */
static long json_span(const char *s, size_t n)
{
    struct tc_jscan j = {0};
    return jscan(&j, s, n);
}

/* json_span of the pending text from base, resumed where the last call with the same base
 * stopped (struct tc_jscan): the same answer, each byte read once. */
static long json_span_at(struct cellm_tc *p, size_t base)
{
    struct tc_jscan *j = &p->js;
    if (!j->open || j->base != base || j->pos > p->n)
        *j = (struct tc_jscan){.base = base, .pos = base, .open = 1};
    return jscan(j, p->pend, p->n);
}

static int emit(const struct cellm_tc_sink *k, int reasoning, const char *s, size_t n)
{
    if (!n) return 0;
    int (*f)(void *, const char *, size_t) = reasoning ? k->reasoning : k->content;
    return f ? f(k->ud, s, n) : 0;
}

size_t tc_mini_feed(struct tc_mini *m, const char *s, size_t n, char *out, size_t *used,
                    int *closed)
{
    size_t w = 0, i = 0;
    *closed = 0;
    for (; i < n && !*closed; i++) {
        char c = s[i];
        if (m->str) {
            out[w++] = c;
            if (m->esc)
                m->esc = 0;
            else if (c == '\\')
                m->esc = 1;
            else if (c == '"')
                m->str = 0;
            continue;
        }
        if (is_ws(c)) continue;
        out[w++] = c;
        if (c == '"')
            m->str = 1;
        else if (c == '{' || c == '[')
            m->depth++;
        else if ((c == '}' || c == ']') && --m->depth <= 0)
            *closed = 1;
    }
    *used = i;
    return w;
}

char *tc_minify(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    if (!o) return NULL;
    struct tc_mini m = {0, 0, 0};
    size_t used;
    int closed;
    size_t w = tc_mini_feed(&m, s, n, o, &used, &closed);
    o[w] = 0;
    return o;
}

/* The end of the JSON value at s[i] (after whitespace), in text cJSON has accepted. */
static size_t value_end(const char *s, size_t n, size_t i)
{
    while (i < n && is_ws(s[i]))
        i++;
    if (i >= n) return n;
    if (s[i] == '"') {
        for (i++; i < n && s[i] != '"'; i++)
            if (s[i] == '\\') i++;
        return i < n ? i + 1 : n;
    }
    if (s[i] == '{' || s[i] == '[') {
        long sp = json_span(s + i, n - i);
        return sp > 0 ? i + (size_t)sp : n;
    }
    while (i < n && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']')
        i++;
    return i;
}

/* Whether the JSON string q[0..n) (quotes included) is key. */
static int key_is(const char *q, size_t n, const char *key)
{
    if (!memchr(q, '\\', n)) return n == strlen(key) + 2 && !memcmp(q + 1, key, n - 2);
    cJSON *v = cJSON_ParseWithLength(q, n);
    int r = cJSON_IsString(v) && !strcmp(v->valuestring, key);
    cJSON_Delete(v);
    return r;
}

/* The text of member key's value in the object s[0..n) (accepted by cJSON): the first
 * such member, as cJSON_GetObjectItem finds it. 0 when absent. */
static int member(const char *s, size_t n, const char *key, size_t *at, size_t *len)
{
    size_t i = 0;
    while (i < n && s[i] != '{')
        i++;
    for (i++;;) {
        while (i < n && (is_ws(s[i]) || s[i] == ','))
            i++;
        if (i >= n || s[i] != '"') return 0;
        size_t ke = value_end(s, n, i);
        int match = key_is(s + i, ke - i, key);
        for (i = ke; i < n && (is_ws(s[i]) || s[i] == ':'); i++)
            ;
        size_t ve = value_end(s, n, i);
        if (match) {
            *at = i;
            *len = ve - i;
            return 1;
        }
        i = ve;
    }
}

/* {"name": N, "arguments" | "parameters": {...}}, whose text is raw[0..rn), to a call;
 * 0 = done, 1 = not a call, -1 = the sink failed. */
static int call_from_object(const cJSON *o, const char *raw, size_t rn,
                            const struct cellm_tc_sink *k)
{
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsObject(o) || !cJSON_IsString(name) || !name->valuestring[0]) return 1;
    const char *key = "arguments";
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a) a = cJSON_GetObjectItemCaseSensitive(o, key = "parameters");
    char *args = NULL;
    size_t at, len;
    if (!a)
        args = strdup("{}");
    else if (cJSON_IsString(a))
        args = strdup(a->valuestring);
    else if (cJSON_IsObject(a))
        args =
            member(raw, rn, key, &at, &len) ? tc_minify(raw + at, len) : cJSON_PrintUnformatted(a);
    else
        return 1;
    if (!args) return -1;
    int rc = k->call ? (k->call(k->ud, name->valuestring, args) ? -1 : 0) : 0;
    free(args);
    return rc;
}

/* A list or one object of calls; same returns as call_from_object. Every element must be
 * a call, or none is reported. */
static int calls_from_json(const char *s, size_t n, const struct cellm_tc_sink *k)
{
    cJSON *v = cJSON_ParseWithLength(s, n);
    if (!v) return 1;
    int rc = 1;
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) {
        const cJSON *e;
        rc = 0;
        cJSON_ArrayForEach(e, v) if (!cJSON_IsObject(e) ||
                                     !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(e, "name")))
            rc = 1;
        size_t i = 0;
        while (i < n && s[i] != '[')
            i++;
        i++;
        for (e = rc ? NULL : v->child; e && !rc; e = e->next) {
            while (i < n && (is_ws(s[i]) || s[i] == ','))
                i++;
            size_t ve = value_end(s, n, i);
            rc = call_from_object(e, s + i, ve - i, k);
            i = ve;
        }
    } else if (cJSON_IsObject(v)) {
        rc = call_from_object(v, s, n, k);
    }
    cJSON_Delete(v);
    return rc;
}

const char *tc_param_type(const cJSON *tools, const char *fn, const char *par)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (!cJSON_IsString(nm) || strcmp(nm->valuestring, fn)) continue;
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(f, "parameters"), "properties");
        const cJSON *ty =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pr, par), "type");
        return cJSON_IsString(ty) ? ty->valuestring : NULL;
    }
    return NULL;
}

char *tc_dup_trim(const char *s, size_t n)
{
    while (n && is_ws(*s))
        s++, n--;
    while (n && is_ws(s[n - 1]))
        n--;
    return strndup(s, n);
}

/* <function=N><parameter=P>V</parameter>...</function>: values are JSON when they parse
 * as JSON and the tool does not declare the parameter a string, else strings (as vLLM's
 * qwen3_coder parser does). Same returns as call_from_object. */
static int call_from_xml(const struct cellm_tc *p, const char *s, size_t n,
                         const struct cellm_tc_sink *k)
{
    char *body = strndup(s, n);
    if (!body) return -1;
    int rc = 1;
    cJSON *args = cJSON_CreateObject();
    char *name = NULL, *q = body;
    while (is_ws(*q))
        q++;
    char *gt = strncmp(q, "<function=", 10) ? NULL : strchr(q, '>');
    char *fend = gt ? strstr(gt, "</function>") : NULL;
    if (!args || !fend) goto out;
    name = tc_dup_trim(q + 10, (size_t)(gt - q - 10));
    if (!name || !name[0]) goto out;
    for (q = gt + 1;;) {
        while (is_ws(*q))
            q++;
        if (q == fend) break;
        char *pg = strncmp(q, "<parameter=", 11) ? NULL : strchr(q, '>');
        char *pe = pg ? strstr(pg, "</parameter>") : NULL;
        if (!pe || pe > fend) goto out;
        char *pn = tc_dup_trim(q + 11, (size_t)(pg - q - 11));
        char *val = pg + 1;
        size_t vl = (size_t)(pe - val);
        if (vl && val[0] == '\n') val++, vl--;
        if (vl && val[vl - 1] == '\n') vl--;
        const char *ty = pn ? tc_param_type(p->tools, name, pn) : NULL;
        cJSON *v = ty && !strcmp(ty, "string") ? NULL : cJSON_ParseWithLength(val, vl);
        if (!v) {
            char *sv = strndup(val, vl);
            v = sv ? cJSON_CreateString(sv) : NULL;
            free(sv);
        }
        int ok = pn && v && !cJSON_GetObjectItemCaseSensitive(args, pn) &&
                 cJSON_AddItemToObject(args, pn, v);
        if (!ok) cJSON_Delete(v);
        free(pn);
        if (!ok) goto out;
        q = pe + 12;
    }
    for (q = fend + 11; *q && is_ws(*q); q++)
        ;
    if (*q) goto out;
    char *a = cJSON_PrintUnformatted(args);
    rc = !a ? -1 : k->call && k->call(k->ud, name, a) ? -1 : 0;
    free(a);
out:
    cJSON_Delete(args);
    free(name);
    free(body);
    return rc;
}

/* ---- the call state ---------------------------------------------------------------------- */

/* Whether pend holds a complete call, and its length (consumed). Returns 1 complete,
 * 0 not yet, -1 malformed (already known). On complete, calls are reported, or on a parse
 * failure *bad is set and nothing is reported. */
static int call_step(struct cellm_tc *p, const struct cellm_tc_sink *k, int final, size_t *len,
                     int *bad)
{
    const char *s = p->pend;
    size_t n = p->n;
    *bad = 0;
    int rc;
    switch (p->st.format) {
    case CELLM_TC_HERMES:
    case CELLM_TC_QWEN3_CODER: {
        char *e = memmem(s, n, CALL_CLOSE, strlen(CALL_CLOSE));
        if (!e) return final ? -1 : 0;
        size_t bl = (size_t)(e - s);
        *len = bl + strlen(CALL_CLOSE);
        long sp = p->st.format == CELLM_TC_HERMES ? json_span(s, bl) : 0;
        if (p->st.format == CELLM_TC_HERMES) {
            rc = sp > 0 ? calls_from_json(s, bl, k) : 1;
            if (rc == 1 && sp <= 0) {
                /* a Qwen3-Coder style body in a Hermes template: accept it too */
                rc = call_from_xml(p, s, bl, k);
            }
        } else {
            rc = call_from_xml(p, s, bl, k);
        }
        if (rc < 0) return -2;
        *bad = rc == 1;
        return 1;
    }
    case CELLM_TC_GLM:
    case CELLM_TC_DEEPSEEK:
    case CELLM_TC_PYTHONIC:
    case CELLM_TC_GEMMA4:
    case CELLM_TC_KIMI_K2: {
        const char *close = p->st.format == CELLM_TC_GLM        ? CALL_CLOSE
                            : p->st.format == CELLM_TC_DEEPSEEK ? TC_DS_CALLS_END
                            : p->st.format == CELLM_TC_GEMMA4   ? G4_CLOSE
                            : p->st.format == CELLM_TC_KIMI_K2  ? KIMI_CLOSE
                                                                : LFM_CLOSE;
        char *e = memmem(s, n, close, strlen(close));
        if (!e) return final ? -1 : 0;
        size_t bl = (size_t)(e - s);
        *len = bl + strlen(close);
        rc = p->st.format == CELLM_TC_GLM        ? tc_call_glm(p->tools, s, bl, k)
             : p->st.format == CELLM_TC_DEEPSEEK ? tc_calls_deepseek(s, bl, k)
             : p->st.format == CELLM_TC_GEMMA4   ? tc_call_gemma4(s, bl, k)
             : p->st.format == CELLM_TC_KIMI_K2  ? tc_calls_kimi(s, bl, k)
                                                 : tc_calls_pythonic(s, bl, k);
        if (rc < 0) return -2;
        *bad = rc == 1;
        return 1;
    }
    case CELLM_TC_GRANITE:
    case CELLM_TC_LLAMA3: {
        long sp = json_span_at(p, 0);
        if (sp < 0) return -1;
        if (sp == 0) return final ? -1 : 0;
        *len = (size_t)sp;
        rc = calls_from_json(s, (size_t)sp, k);
        if (rc < 0) return -2;
        *bad = rc == 1;
        return 1;
    }
    case CELLM_TC_MISTRAL: {
        size_t i = 0;
        while (i < n && is_ws(s[i]))
            i++;
        if (i < n && s[i] == '[') {
            long sp = json_span_at(p, 0);
            if (sp == 0) return final ? -1 : 0;
            *len = (size_t)sp;
            rc = calls_from_json(s, (size_t)sp, k);
        } else {
            /* NAME[ARGS] or NAME[CALL_ID]ID[ARGS]: words without spaces or brackets
             * but those markers; anything else means this is not a call */
            size_t j = i, name_end = 0, args_at = 0;
            int in_id = 0;
            for (; j < n && !args_at; j++) {
                /* a name and an id are words: a long run of text is no call, and is not
                 * read again at every token */
                if (is_ws(s[j]) || j - i > TC_MAX_HEAD) return -1;
                if (s[j] != '[') continue;
                size_t rest = n - j;
                if (!in_id && rest >= 9 && !memcmp(s + j, "[CALL_ID]", 9)) {
                    name_end = j;
                    in_id = 1;
                    j += 8;
                } else if (rest >= 6 && !memcmp(s + j, "[ARGS]", 6)) {
                    if (!in_id) name_end = j;
                    args_at = j;
                } else if ((!in_id && rest < 9 && !memcmp(s + j, "[CALL_ID]", rest)) ||
                           (rest < 6 && !memcmp(s + j, "[ARGS]", rest))) {
                    return final ? -1 : 0; /* a marker may be arriving */
                } else {
                    return -1;
                }
            }
            if (!args_at) return final ? -1 : 0;
            size_t off = args_at + 6;
            long sp = json_span_at(p, off);
            if (sp < 0) return -1;
            if (sp == 0) return final ? -1 : 0;
            *len = off + (size_t)sp;
            char *name = strndup(s + i, name_end - i);
            cJSON *v = cJSON_ParseWithLength(s + off, (size_t)sp);
            char *args = cJSON_IsObject(v) ? tc_minify(s + off, (size_t)sp) : NULL;
            rc = !name                                   ? -1
                 : !name[0] || !args                     ? 1
                 : k->call && k->call(k->ud, name, args) ? -1
                                                         : 0;
            cJSON_Delete(v);
            free(args);
            free(name);
        }
        if (rc < 0) return -2;
        *bad = rc == 1;
        return 1;
    }
    default:
        return -1;
    }
}

/* Gives a malformed call back as content: its opener and its text. */
static int give_back(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t len)
{
    if (emit(k, 0, p->opener, strlen(p->opener)) || emit(k, 0, p->pend, len)) return -1;
    consume(p, len);
    return 0;
}

/* ---- harmony ----------------------------------------------------------------------------- */

/* A message header ("<|start|>assistant to=functions.f<|channel|>commentary json"): what
 * its body is, and the callee. */
static int harmony_header(struct cellm_tc *p, const char *h, size_t n)
{
    char *hd = strndup(h, n);
    if (!hd) return -1;
    cellm_free(p->callee);
    p->callee = NULL;
    const char *ch = strstr(hd, "<|channel|>");
    const char *to = strstr(hd, "to=");
    p->body = B_CONTENT;
    if (to && !strncmp(to + 3, "functions.", 10)) {
        const char *nm = to + 13;
        size_t l = 0;
        while (nm[l] && !is_ws(nm[l]) && nm[l] != '<')
            l++;
        if (l && (p->callee = cellm_malloc(l + 1))) {
            memcpy(p->callee, nm, l);
            p->callee[l] = 0;
            p->body = B_CALL;
        }
    } else if (ch && !strncmp(ch + 11, "analysis", 8)) {
        p->body = B_REASON;
    }
    free(hd);
    return 0;
}

static int harmony_call(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t bl)
{
    char *t = tc_dup_trim(p->pend, bl);
    if (!t) return -1;
    cJSON *v = cJSON_Parse(t);
    long sp = json_span(t, strlen(t));
    int rc;
    if (cJSON_IsObject(v) && sp > 0) {
        char *a = tc_minify(t, (size_t)sp);
        struct cellm_tc_sink kw = k->call_begin ? tc_stream_sink(p, k) : *k;
        rc = !a || (kw.call && kw.call(kw.ud, p->callee, a)) ? -1 : 0;
        free(a);
        if (!rc && k->call_begin) rc = tc_stream_abandon(p, k);
    } else {
        rc = (k->call_begin && tc_stream_abandon(p, k)) || emit(k, 0, p->pend, bl) ? -1 : 0;
    }
    cJSON_Delete(v);
    free(t);
    return rc;
}

static int run_harmony(struct cellm_tc *p, const struct cellm_tc_sink *k, int final)
{
    static const char *const ends[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>"};
    for (;;) {
        if (p->state == S_PLAIN) {
            if (emit(k, 0, p->pend, p->n)) return -1;
            p->n = 0;
            return 0;
        }
        if (p->state == S_HEADER) {
            size_t i = 0;
            while (i < p->n && is_ws(p->pend[i]))
                i++;
            if (i < p->n && p->pend[i] != '<') { /* not harmony: plain text */
                p->state = S_PLAIN;
                continue;
            }
            char *m = memmem(p->pend, p->n, H_MESSAGE, strlen(H_MESSAGE));
            if (!m) {
                if (final && emit(k, 0, p->pend, p->n)) return -1;
                if (final) p->n = 0;
                return 0;
            }
            size_t hl = (size_t)(m - p->pend);
            if (harmony_header(p, p->pend, hl)) return -1;
            consume(p, hl + strlen(H_MESSAGE));
            p->state = S_BODY;
            tc_stream_reset(p);
            continue;
        }
        /* S_BODY */
        int which;
        size_t at = find_first(p->pend, p->n, ends, 4, &which);
        if (p->body == B_CALL) {
            if (which < 0 && !final) {
                size_t keep = tc_held(p->pend, p->n, ends, 4);
                return k->call_begin ? tc_stream_preview(p, k, p->n - keep) : 0;
            }
            if (harmony_call(p, k, at)) return -1;
        } else {
            size_t keep = which < 0 && !final ? tc_held(p->pend, p->n, ends, 4) : 0;
            if (emit(k, p->body == B_REASON, p->pend, at - keep)) return -1;
            if (which < 0) {
                consume(p, at - keep);
                return 0;
            }
        }
        if (which < 0) {
            p->n = 0;
            return 0;
        }
        /* <|start|> opens the next header: keep it for the header */
        consume(p, at + (which == 3 ? 0 : strlen(ends[which])));
        p->state = S_HEADER;
    }
}

/* ---- the main loop ----------------------------------------------------------------------- */

static int run(struct cellm_tc *p, const struct cellm_tc_sink *k, int final)
{
    if (p->st.format == CELLM_TC_HARMONY) return run_harmony(p, k, final);
    const char *marks[3];
    int nm = 0;
    if (p->st.format == CELLM_TC_HERMES || p->st.format == CELLM_TC_QWEN3_CODER ||
        p->st.format == CELLM_TC_GLM)
        marks[nm++] = CALL_OPEN;
    else if (p->st.format == CELLM_TC_DEEPSEEK)
        marks[nm++] = TC_DS_CALLS;
    else if (p->st.format == CELLM_TC_PYTHONIC)
        marks[nm++] = LFM_OPEN;
    else if (p->st.format == CELLM_TC_GRANITE)
        marks[nm++] = GRANITE_TAG;
    else if (p->st.format == CELLM_TC_GEMMA4)
        marks[nm++] = G4_OPEN;
    else if (p->st.format == CELLM_TC_KIMI_K2)
        marks[nm++] = KIMI_OPEN;
    else if (p->st.format == CELLM_TC_LLAMA3)
        marks[nm++] = PY_TAG;
    else if (p->st.format == CELLM_TC_MISTRAL)
        marks[nm++] = MISTRAL_TAG;
    int think_at = p->st.think ? nm : -1;
    const char *t_open = p->st.think_channel ? G4_THINK_OPEN : THINK_OPEN;
    const char *t_close = p->st.think_channel ? G4_THINK_CLOSE : THINK_CLOSE;
    if (p->st.think) marks[nm++] = t_open;
    for (;;) {
        if (p->skip_ws) {
            size_t i = 0;
            while (i < p->n && is_ws(p->pend[i]))
                i++;
            consume(p, i);
            if (!p->n) return 0;
            p->skip_ws = 0;
        }
        if (p->state == S_REASON) {
            const char *close[] = {t_close};
            int which;
            size_t at = find_first(p->pend, p->n, close, 1, &which);
            size_t end = at;
            if (which < 0 && !final) end -= tc_held(p->pend, p->n, close, 1);
            size_t out = end;
            if (which >= 0 || !final)
                while (out && is_ws(p->pend[out - 1]))
                    out--;
            if (emit(k, 1, p->pend, out)) return -1;
            if (which < 0) {
                consume(p, final ? p->n : out);
                return 0;
            }
            consume(p, at + strlen(t_close));
            p->state = S_TEXT;
            p->skip_ws = 1;
            continue;
        }
        if (p->state == S_CALL) {
            size_t len = 0;
            struct cellm_tc_sink kw = k->call_begin ? tc_stream_sink(p, k) : *k;
            int bad = 0, r = call_step(p, &kw, final, &len, &bad);
            if (r == -2) return -1;
            if (r == 0) return k->call_begin ? tc_stream_preview(p, k, p->n) : 0;
            /* calls begun and not completed: malformed after all */
            if (k->call_begin && tc_stream_abandon(p, k)) return -1;
            if (r < 0) {
                /* not a call after all: the opener is text, and what follows it is read
                 * again as text (so the result does not depend on how the text was cut) */
                if (emit(k, 0, p->opener, strlen(p->opener))) return -1;
                p->started = 1;
            } else if (bad) {
                if (give_back(p, k, len)) return -1;
            } else {
                consume(p, len);
                p->skip_ws = 1; /* the whitespace between calls is no content */
            }
            p->state = S_TEXT;
            if (!p->n) return 0;
            continue;
        }
        /* S_TEXT */
        if (p->st.format == CELLM_TC_LLAMA3 && !p->started) {
            /* a bare JSON call is the whole answer: decide on its first non-space byte */
            size_t i = 0;
            while (i < p->n && is_ws(p->pend[i]))
                i++;
            if (i == p->n) {
                if (final && emit(k, 0, p->pend, p->n)) return -1;
                if (final) p->n = 0;
                return 0;
            }
            p->started = 1;
            if (p->pend[i] == '{') {
                consume(p, i);
                p->opener = "";
                p->state = S_CALL;
                tc_stream_reset(p);
                continue;
            }
        }
        int which;
        size_t at = find_first(p->pend, p->n, marks, nm, &which);
        size_t keep = which < 0 && !final ? tc_held(p->pend, p->n, marks, nm) : 0;
        if (emit(k, 0, p->pend, at - keep)) return -1;
        if (at - keep) p->started = 1;
        if (which < 0) {
            consume(p, at - keep);
            return 0;
        }
        consume(p, at + strlen(marks[which]));
        if (which == think_at) {
            p->state = S_REASON;
            p->skip_ws = 1;
        } else {
            p->opener = marks[which];
            p->state = S_CALL;
            tc_stream_reset(p);
        }
    }
}

enum cellm_status cellm_tc_feed(struct cellm_tc *p, const char *s, size_t n,
                                const struct cellm_tc_sink *sink, struct cellm_error *err)
{
    if (!p || (!s && n) || !sink) return cellm_errf(err, CELLM_ERR_ARG, "cellm_tc_feed: NULL");
    if (p->n + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->n + n + 1)
            cap *= 2;
        char *q = cellm_realloc(p->pend, cap);
        if (!q) return cellm_errf(err, CELLM_ERR_NOMEM, "tool-call parser: out of memory");
        p->pend = q;
        p->cap = cap;
    }
    if (n) memcpy(p->pend + p->n, s, n);
    p->n += n;
    p->pend[p->n] = 0;
    if (run(p, sink, 0)) return cellm_errf(err, CELLM_ERR_NOMEM, "tool-call parser: out of memory");
    return CELLM_OK;
}

enum cellm_status cellm_tc_finish(struct cellm_tc *p, const struct cellm_tc_sink *sink,
                                  struct cellm_error *err)
{
    if (!p || !sink) return cellm_errf(err, CELLM_ERR_ARG, "cellm_tc_finish: NULL");
    if (run(p, sink, 1)) return cellm_errf(err, CELLM_ERR_NOMEM, "tool-call parser: out of memory");
    return CELLM_OK;
}
