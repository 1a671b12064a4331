/*
 * toolcall_stream.c: tool calls sent while the model writes them (toolcall.h's call_begin
 * and call_args), as vLLM and llama-server stream them.
 *
 * toolcall.c buffers a call block (the text after <tool_call>, [TOOL_CALLS], ... up to its
 * end) and reports its calls once the block is complete and parses. While it is not
 * complete, this file reads the same buffer from where it stopped last time (pv_pos) and
 * sends what is already certain: a call's name once its head is read (`{"name": "N",
 * "arguments": {`, `<function=N>`, `N[ARGS]{`, a harmony header), then the arguments as
 * they arrive, without the whitespace outside strings, exactly as toolcall.c will cut
 * them from the finished text; for qwen3_coder, each parameter as the JSON member the
 * finished call will hold (a string parameter byte by byte, escaped as cJSON escapes it).
 * A head of another shape (say "arguments" before "name") is not streamed: the call is
 * then sent whole when complete. When the block completes, each reported call is matched
 * with the call begun for it, and only its unsent tail is sent.
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "template/toolcall_impl.h"

void tc_stream_reset(struct cellm_tc *p)
{
    for (int i = 0; i < p->n_sent; i++) {
        free(p->sent[i].name);
        free(p->sent[i].args);
    }
    p->n_sent = p->n_done = 0;
    p->pv = PV_HEAD;
    p->pv_pos = p->pv_vstart = 0;
    p->pv_vfirst = p->pv_list = p->pv_nparams = 0;
    memset(&p->mini, 0, sizeof p->mini);
    memset(&p->js, 0, sizeof p->js); /* a new call's text: nothing of it read yet */
}

static int begin(struct cellm_tc *p, const struct cellm_tc_sink *k, const char *name)
{
    if (p->n_sent == p->cap_sent) {
        int cap = p->cap_sent ? 2 * p->cap_sent : 4;
        struct tc_sent *v = cellm_realloc(p->sent, (size_t)cap * sizeof *v);
        if (!v) return -1;
        p->sent = v;
        p->cap_sent = cap;
    }
    struct tc_sent *c = &p->sent[p->n_sent];
    memset(c, 0, sizeof *c);
    if (!(c->name = strdup(name))) return -1;
    p->n_sent++;
    return k->call_begin(k->ud, name);
}

/* Sends the next piece of the last call begun, and keeps it. */
static int send_args(struct cellm_tc *p, const struct cellm_tc_sink *k, const char *s, size_t n)
{
    if (!n) return 0;
    struct tc_sent *c = &p->sent[p->n_sent - 1];
    if (c->n + n + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 64;
        while (cap < c->n + n + 1)
            cap *= 2;
        char *q = realloc(c->args, cap);
        if (!q) return -1;
        c->args = q;
        c->cap = cap;
    }
    memcpy(c->args + c->n, s, n);
    c->n += n;
    c->args[c->n] = 0;
    return k->call_args(k->ud, s, n);
}

/* A complete call of the block, from toolcall.c (ud is the parser). */
static int complete(void *ud, const char *name, const char *args)
{
    struct cellm_tc *p = ud;
    const struct cellm_tc_sink *k = p->user;
    int j = p->n_done++;
    if (j < p->n_sent) {
        struct tc_sent *c = &p->sent[j];
        size_t al = strlen(args);
        if (!strcmp(c->name, name) && al >= c->n && !(c->n && memcmp(args, c->args, c->n))) {
            if (al > c->n && k->call_args(k->ud, args + c->n, al - c->n)) return -1;
            return k->call(k->ud, name, args);
        }
        /* what was sent disagrees with the finished call (a "parameters" member before
         * "arguments", say): it ends as sent (with the calls begun after it), and the
         * finished calls follow whole */
        for (int i = j; i < p->n_sent; i++)
            if (k->call(k->ud, p->sent[i].name, NULL)) return -1;
    }
    /* not streamed: all of it now (after the block's other calls, so nothing is begun
     * twice) */
    p->n_done = p->n_sent + 1;
    if (begin(p, k, name) || send_args(p, k, args, strlen(args))) return -1;
    return k->call(k->ud, name, args);
}

struct cellm_tc_sink tc_stream_sink(struct cellm_tc *p, const struct cellm_tc_sink *user)
{
    p->user = user;
    struct cellm_tc_sink k = {p, NULL, NULL, complete, NULL, NULL};
    return k;
}

int tc_stream_abandon(struct cellm_tc *p, const struct cellm_tc_sink *k)
{
    int rc = 0;
    for (int j = p->n_done; j < p->n_sent && !rc; j++)
        rc = k->call(k->ud, p->sent[j].name, NULL);
    tc_stream_reset(p);
    return rc;
}

/* ---- heads ------------------------------------------------------------------------------ */

/* 1 when s[0..n) starts with lit, 0 when it is a proper start of lit, -1 otherwise. */
static int lit(const char *s, size_t n, const char *l)
{
    size_t ll = strlen(l);
    if (n >= ll) return memcmp(s, l, ll) ? -1 : 1;
    return memcmp(s, l, n) ? -1 : 0;
}

/* The end of the JSON string at s[i] ('"'), or 0 when it is not complete. */
static size_t str_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

/* A JSON string s[0..n) (quotes included), decoded; NULL when it is not one. */
static char *str_value(const char *s, size_t n)
{
    cJSON *v = cJSON_ParseWithLength(s, n);
    char *r = cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
    cJSON_Delete(v);
    return r;
}

/* `{"name": "N", "arguments" | "parameters": {` (whitespace allowed): 1 with the name and
 * the offset of the arguments' '{', 0 when more text is needed, -1 another shape. */
static int json_head(const char *s, size_t n, char **name, size_t *args_at)
{
    size_t i = 0, e;
    const char *want[] = {"{", "\"name\"", ":", NULL, ",", NULL, ":", "{"};
    char *nm = NULL;
    for (int step = 0; step < 8; step++) {
        while (i < n && tc_is_ws(s[i]))
            i++;
        if (i == n) goto more;
        if (step == 3 || step == 5) {
            if (s[i] != '"') goto other;
            if (!(e = str_end(s, n, i))) goto more;
            char *v = str_value(s + i, e - i);
            if (!v) goto other;
            if (step == 3) {
                nm = v;
            } else {
                int ok = !strcmp(v, "arguments") || !strcmp(v, "parameters");
                free(v);
                if (!ok) goto other;
            }
            i = e;
            continue;
        }
        int r = lit(s + i, n - i, want[step]);
        if (r < 0) goto other;
        if (r == 0) goto more;
        if (step == 7) break;
        i += strlen(want[step]);
    }
    if (!nm[0]) goto other;
    *name = nm;
    *args_at = i;
    return 1;
more:
    free(nm);
    return 0;
other:
    free(nm);
    return -1;
}

/* Mistral's `N[ARGS]{` or `N[CALL_ID]ID[ARGS]{`: as json_head. */
static int mistral_head(const char *s, size_t n, char **name, size_t *args_at)
{
    size_t i = 0;
    while (i < n && s[i] != '[' && !tc_is_ws(s[i]))
        i++;
    if (i == n) return 0;
    if (tc_is_ws(s[i]) || !i) return -1;
    size_t name_end = i;
    int r = lit(s + i, n - i, "[ARGS]");
    if (r < 0) {
        if ((r = lit(s + i, n - i, "[CALL_ID]")) <= 0) return r;
        for (i += 9; i < n && s[i] != '['; i++)
            if (tc_is_ws(s[i])) return -1;
        if (i == n) return 0;
        if ((r = lit(s + i, n - i, "[ARGS]")) <= 0) return r;
    } else if (r == 0) {
        return 0;
    }
    for (i += 6; i < n && tc_is_ws(s[i]); i++)
        ;
    if (i == n) return 0;
    if (s[i] != '{') return -1;
    if (!(*name = strndup(s, name_end))) return -1;
    *args_at = i;
    return 1;
}

/* `<function=N>`: 1 with the name and the offset after '>', 0 more text, -1 another. */
static int xml_head(const char *s, size_t n, char **name, size_t *after)
{
    int r = lit(s, n, "<function=");
    if (r <= 0) return r;
    const char *gt = memchr(s + 10, '>', n - 10);
    if (!gt) return 0;
    char *nm = tc_dup_trim(s + 10, (size_t)(gt - s - 10));
    if (!nm || !nm[0]) {
        free(nm);
        return -1;
    }
    *name = nm;
    *after = (size_t)(gt - s) + 1;
    return 1;
}

/* ---- qwen3_coder parameters -------------------------------------------------------------- */

/* s[0..n) escaped as cJSON prints a string's inside, then sent. */
static int send_escaped(struct cellm_tc *p, const struct cellm_tc_sink *k, const char *s, size_t n,
                        const char *tail)
{
    char *o = malloc(6 * n + strlen(tail) + 1);
    if (!o) return -1;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *e = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                                    : NULL;
        if (e) {
            memcpy(o + w, e, 2);
            w += 2;
        } else if (c < 32) {
            static const char hex[] = "0123456789abcdef";
            memcpy(o + w, "\\u00", 4);
            o[w + 4] = hex[c >> 4];
            o[w + 5] = hex[c & 15];
            w += 6;
        } else {
            o[w++] = (char)c;
        }
    }
    memcpy(o + w, tail, strlen(tail));
    w += strlen(tail);
    int rc = send_args(p, k, o, w);
    free(o);
    return rc;
}

/* The member `"key":value` as cJSON prints it inside an object (value NULL: `"key":"`,
 * the start of a string sent in pieces), after "{" or ",". */
static int send_member(struct cellm_tc *p, const struct cellm_tc_sink *k, const char *key,
                       cJSON *value)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *v = value ? value : cJSON_CreateString("");
    if (!o || !v || !cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(o);
        cJSON_Delete(v);
        return -1;
    }
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) return -1;
    size_t tl = strlen(t);
    t[0] = p->pv_nparams ? ',' : '{';
    /* drop the "}" (and the empty string's closing quote) */
    int rc = send_args(p, k, t, tl - (value ? 1 : 2));
    free(t);
    return rc;
}

/* Between parameters: the next `<parameter=P>`, or `</function>`. 1 = read something,
 * 0 = more text is needed (or the view is off), -1 = the sink failed. */
static int xml_param(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t n)
{
    const char *s = p->pend;
    size_t i = p->pv_pos;
    while (i < n && tc_is_ws(s[i]))
        i++;
    if (i == n) return 0;
    int r = lit(s + i, n - i, "</function>");
    if (r >= 0) {
        if (r == 0) return 0;
        p->pv = PV_OFF;
        return send_args(p, k, p->pv_nparams ? "}" : "{}", p->pv_nparams ? 1 : 2) ? -1 : 0;
    }
    if ((r = lit(s + i, n - i, "<parameter=")) <= 0) {
        if (r < 0) p->pv = PV_OFF;
        return 0;
    }
    const char *gt = memchr(s + i + 11, '>', n - i - 11);
    if (!gt) return 0;
    char *pn = tc_dup_trim(s + i + 11, (size_t)(gt - s - i - 11));
    if (!pn) return -1;
    size_t vat = (size_t)(gt - s) + 1;
    const char *ty = tc_param_type(p->tools, p->sent[p->n_sent - 1].name, pn);
    int rc = 0, read = 1;
    if (ty && !strcmp(ty, "string")) {
        rc = send_member(p, k, pn, NULL);
        p->pv = PV_XML_SVAL;
        p->pv_pos = p->pv_vstart = vat;
        p->pv_vfirst = 1;
    } else {
        const char *pe = memmem(s + vat, n - vat, "</parameter>", 12);
        if (pe) {
            /* as toolcall.c's call_from_xml: JSON when it parses, else a string */
            const char *val = s + vat;
            size_t vl = (size_t)(pe - val);
            if (vl && val[0] == '\n') val++, vl--;
            if (vl && val[vl - 1] == '\n') vl--;
            cJSON *v = cJSON_ParseWithLength(val, vl);
            if (!v) {
                char *sv = strndup(val, vl);
                v = sv ? cJSON_CreateString(sv) : NULL;
                free(sv);
            }
            rc = v ? send_member(p, k, pn, v) : -1;
            p->pv_nparams++;
            p->pv_pos = (size_t)(pe - s) + 12;
        } else {
            read = 0;
        }
    }
    free(pn);
    return rc ? -1 : read;
}

/* Inside a string parameter: the value so far, less what may be its closing
 * "\n</parameter>" (one newline before it is not part of the value). Same returns. */
static int xml_sval(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t n)
{
    static const char *const close[] = {"\n</parameter>", "</parameter>"};
    const char *s = p->pend;
    size_t i = p->pv_pos;
    if (p->pv_vfirst) {
        if (i == n) return 0;
        if (s[i] == '\n') i++;
        p->pv_vfirst = 0;
        p->pv_pos = p->pv_vstart = i;
    }
    const char *e = memmem(s + i, n - i, close[1], 12);
    if (!e) {
        size_t keep = tc_held(s + i, n - i, close, 2);
        if (send_escaped(p, k, s + i, n - i - keep, "")) return -1;
        p->pv_pos = n - keep;
        return 0;
    }
    size_t end = (size_t)(e - s);
    if (end > p->pv_vstart && s[end - 1] == '\n') end--;
    if (send_escaped(p, k, s + i, end - i, "\"")) return -1;
    p->pv_nparams++;
    p->pv_pos = (size_t)(e - s) + 12;
    p->pv = PV_XML_PARAM;
    return 1;
}

/* ---- the view ------------------------------------------------------------------------------ */

/* The JSON arguments so far. Same returns as xml_param. */
static int json_args(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t n)
{
    if (p->pv_pos >= n) return 0;
    char *o = malloc(n - p->pv_pos);
    if (!o) return -1;
    size_t used;
    int closed;
    size_t w = tc_mini_feed(&p->mini, p->pend + p->pv_pos, n - p->pv_pos, o, &used, &closed);
    p->pv_pos += used;
    int rc = send_args(p, k, o, w);
    free(o);
    if (rc) return -1;
    if (!closed) return 0;
    p->pv = p->pv_list ? PV_AFTER : PV_OFF;
    return 1;
}

/* A Mistral list after an element's arguments: `}` then `,` (another call) or `]`. */
static int list_after(struct cellm_tc *p, size_t n)
{
    const char *s = p->pend;
    size_t i = p->pv_pos;
    for (int step = 0; step < 2; step++) {
        while (i < n && tc_is_ws(s[i]))
            i++;
        if (i == n) return 0;
        if (step == 0 && s[i] != '}') break;
        if (step == 1 && s[i] == ',') {
            p->pv_pos = i + 1;
            p->pv = PV_HEAD;
            return 1;
        }
        i++;
    }
    p->pv = PV_OFF;
    return 0;
}

/* The next call's head. Same returns as xml_param. */
static int head(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t n)
{
    const char *s = p->pend;
    size_t i = p->pv_pos;
    while (i < n && tc_is_ws(s[i]))
        i++;
    if (i == n) return 0;
    enum cellm_tc_format f = p->st.format;
    if (f == CELLM_TC_HARMONY) {
        /* the header named the function: the body is its arguments */
        if (s[i] != '{') {
            p->pv = PV_OFF;
            return 0;
        }
        if (begin(p, k, p->callee)) return -1;
        p->pv_pos = i;
        p->pv = PV_ARGS;
        return 1;
    }
    if (f == CELLM_TC_GLM || f == CELLM_TC_DEEPSEEK || f == CELLM_TC_PYTHONIC ||
        f == CELLM_TC_GEMMA4 || f == CELLM_TC_KIMI_K2) {
        p->pv = PV_OFF; /* their calls go whole, when the block is complete */
        return 0;
    }
    if ((f == CELLM_TC_MISTRAL || f == CELLM_TC_GRANITE) && s[i] == '[' && !p->pv_list &&
        !p->n_sent) {
        p->pv_list = 1;
        p->pv_pos = i + 1;
        return 1;
    }
    char *name = NULL;
    size_t at = 0;
    int r = -1, xml = 0;
    if (s[i] == '<' && (f == CELLM_TC_HERMES || f == CELLM_TC_QWEN3_CODER))
        r = xml_head(s + i, n - i, &name, &at), xml = 1;
    else if (s[i] == '{' && f != CELLM_TC_QWEN3_CODER)
        r = json_head(s + i, n - i, &name, &at);
    else if (f == CELLM_TC_MISTRAL && !p->pv_list)
        r = mistral_head(s + i, n - i, &name, &at);
    if (r <= 0) {
        if (r < 0) p->pv = PV_OFF;
        return 0;
    }
    int rc = begin(p, k, name);
    free(name);
    if (rc) return -1;
    p->pv_pos = i + at;
    memset(&p->mini, 0, sizeof p->mini);
    p->pv_nparams = 0;
    p->pv = xml ? PV_XML_PARAM : PV_ARGS;
    return 1;
}

int tc_stream_preview(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t limit)
{
    for (;;) {
        int r;
        switch (p->pv) {
        case PV_HEAD:
            r = head(p, k, limit);
            break;
        case PV_ARGS:
            r = json_args(p, k, limit);
            break;
        case PV_AFTER:
            r = list_after(p, limit);
            break;
        case PV_XML_PARAM:
            r = xml_param(p, k, limit);
            break;
        case PV_XML_SVAL:
            r = xml_sval(p, k, limit);
            break;
        default:
            return 0;
        }
        if (r <= 0) return r;
    }
}
