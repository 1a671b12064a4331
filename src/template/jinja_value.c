/*
 * jinja_value.c: the value model of the chat-template interpreter, with Python semantics.
 *
 * A value (jval) is a small tagged struct passed by copy; strings, lists and dicts point
 * into the render's arena (or into the caller's cJSON tree and the parsed template, which
 * outlive the render). This file gives those values the behaviour templates observe in
 * Python: truthiness, == and ordering, str() and repr() (so {{ none }} prints None and a
 * float prints as Python's shortest round-trip repr), with json.dumps in jinja_json.c,
 * and UTF-8 code point helpers (Python indexes strings by code point, not byte). The arena
 * trades memory for simplicity: nothing is freed before the render ends, and its byte cap
 * turns a runaway template into an error instead of an exhausted machine.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_impl.h"

/* ---- arena ---------------------------------------------------------------------------- */

struct cellm_jinja_chunk {
    struct cellm_jinja_chunk *next;
    size_t size, off;
    _Alignas(16) unsigned char data[];
};

void *cellm_jinja_alloc(struct cellm_jinja_arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (a->used + n > a->cap || a->used + n < n) return NULL;
    struct cellm_jinja_chunk *h = a->head;
    if (!h || h->size - h->off < n) {
        size_t size = n > 32768 ? n : 32768;
        h = cellm_malloc(sizeof *h + size);
        if (!h) {
            a->oom = 1;
            return NULL;
        }
        h->next = a->head;
        h->size = size;
        h->off = 0;
        a->head = h;
    }
    void *p = h->data + h->off;
    h->off += n;
    a->used += n;
    return p;
}

void cellm_jinja_arena_free(struct cellm_jinja_arena *a)
{
    struct cellm_jinja_chunk *h = a->head;
    while (h) {
        struct cellm_jinja_chunk *next = h->next;
        cellm_free(h);
        h = next;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- buffers -------------------------------------------------------------------------- */

void cellm_jinja_buf_put(struct cellm_jinja_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->max) {
        b->oom = 2;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = cellm_realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void cellm_jinja_buf_putc(struct cellm_jinja_buf *b, char c)
{
    cellm_jinja_buf_put(b, &c, 1);
}

void cellm_jinja_buf_printf(struct cellm_jinja_buf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) cellm_jinja_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static enum cellm_status buf_status(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b)
{
    if (b->oom == 1) return cellm_jinja_fail(c, NULL, CELLM_ERR_NOMEM, "out of memory");
    if (b->oom == 2)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "text longer than %zu bytes", b->max);
    return CELLM_OK;
}

enum cellm_status cellm_jinja_buf_take(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b,
                                       jval *out)
{
    CELLM_TRY(buf_status(c, b));
    if (b->n > UINT32_MAX) return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "string too long");
    char *s = cellm_jinja_alloc(&c->arena, b->n + 1);
    if (!s) return cellm_jinja_nomem(c);
    if (b->n) memcpy(s, b->p, b->n);
    s[b->n] = 0;
    *out = cellm_jinja_str(s, b->n);
    b->n = 0;
    return CELLM_OK;
}

/* ---- constructors and containers ------------------------------------------------------ */

jval cellm_jinja_str(const char *s, size_t n)
{
    jval v = {.kind = JV_STR, .len = (uint32_t)n};
    v.u.s = s;
    return v;
}
jval cellm_jinja_int(int64_t i)
{
    jval v = {.kind = JV_INT};
    v.u.i = i;
    return v;
}
jval cellm_jinja_bool(int b)
{
    jval v = {.kind = JV_BOOL};
    v.u.i = b != 0;
    return v;
}
jval cellm_jinja_none(void)
{
    jval v = {.kind = JV_NONE};
    return v;
}
jval cellm_jinja_undef(void)
{
    jval v = {.kind = JV_UNDEF};
    return v;
}

jval cellm_jinja_undef_hint(struct cellm_jinja_ctx *c, const char *fmt, ...)
{
    jval v = cellm_jinja_undef();
    char tmp[160];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return v;
    size_t len = (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1;
    char *s = cellm_jinja_alloc(&c->arena, len + 1);
    if (s) { /* without memory the hint is dropped, not the value */
        memcpy(s, tmp, len + 1);
        v.u.s = s;
        v.len = (uint32_t)len;
        v.flags = JV_HINT;
    }
    return v;
}

enum cellm_status cellm_jinja_undef_error(struct cellm_jinja_ctx *c,
                                          const struct cellm_jinja_node *n, const jval *v)
{
    if (v->u.s && (v->flags & JV_HINT))
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "%.*s", (int)v->len, v->u.s);
    if (v->u.s)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "'%.*s' is undefined", (int)v->len, v->u.s);
    return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "a value is undefined");
}

enum cellm_status cellm_jinja_nomem(struct cellm_jinja_ctx *c)
{
    if (c->arena.oom) return cellm_jinja_fail(c, NULL, CELLM_ERR_NOMEM, "out of memory");
    return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "template memory limit (%zu bytes) reached",
                            c->arena.cap);
}

static enum cellm_status nomem(struct cellm_jinja_ctx *c)
{
    return cellm_jinja_nomem(c);
}

static enum cellm_status grow(struct cellm_jinja_ctx *c, jval **v, size_t n, size_t *cap, int two)
{
    if (n < *cap) return CELLM_OK;
    size_t nc = *cap ? *cap * 2 : 4;
    for (int k = 0; k <= two; k++) {
        jval *p = cellm_jinja_alloc(&c->arena, nc * sizeof(jval));
        if (!p) return nomem(c);
        if (n) memcpy(p, v[k], n * sizeof(jval));
        v[k] = p;
    }
    *cap = nc;
    return CELLM_OK;
}

enum cellm_status cellm_jinja_list_push(struct cellm_jinja_ctx *c, struct cellm_jinja_list *l,
                                        const jval *v)
{
    CELLM_TRY(grow(c, &l->v, l->n, &l->cap, 0));
    l->v[l->n++] = *v;
    return CELLM_OK;
}

jval *cellm_jinja_dict_get(const struct cellm_jinja_dict *d, const jval *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (cellm_jinja_equal(&d->k[i], key)) return &d->v[i];
    return NULL;
}

jval *cellm_jinja_dict_gets(const struct cellm_jinja_dict *d, const char *key, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].kind == JV_STR && d->k[i].len == n && memcmp(d->k[i].u.s, key, n) == 0)
            return &d->v[i];
    return NULL;
}

enum cellm_status cellm_jinja_dict_set(struct cellm_jinja_ctx *c, struct cellm_jinja_dict *d,
                                       const jval *key, const jval *val)
{
    jval *slot = cellm_jinja_dict_get(d, key);
    if (slot) {
        *slot = *val;
        return CELLM_OK;
    }
    if (d->n >= d->cap) {
        jval *kv[2] = {d->k, d->v};
        size_t cap = d->cap;
        CELLM_TRY(grow(c, kv, d->n, &cap, 1));
        d->k = kv[0];
        d->v = kv[1];
        d->cap = cap;
    }
    d->k[d->n] = *key;
    d->v[d->n] = *val;
    d->n++;
    return CELLM_OK;
}

enum cellm_status cellm_jinja_new_list(struct cellm_jinja_ctx *c, jval *out)
{
    struct cellm_jinja_list *l = cellm_jinja_alloc(&c->arena, sizeof *l);
    if (!l) return nomem(c);
    memset(l, 0, sizeof *l);
    *out = (jval){.kind = JV_LIST};
    out->u.list = l;
    return CELLM_OK;
}

enum cellm_status cellm_jinja_new_dict(struct cellm_jinja_ctx *c, int ns, jval *out)
{
    struct cellm_jinja_dict *d = cellm_jinja_alloc(&c->arena, sizeof *d);
    if (!d) return nomem(c);
    memset(d, 0, sizeof *d);
    *out = (jval){.kind = (uint8_t)(ns ? JV_NS : JV_DICT)};
    out->u.dict = d;
    return CELLM_OK;
}

/* ---- UTF-8 ---------------------------------------------------------------------------- */

size_t cellm_jinja_utf8_next(const char *s, size_t n, size_t i)
{
    i++;
    while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
        i++;
    return i;
}

size_t cellm_jinja_utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

uint32_t cellm_jinja_utf8_decode(const char *s, size_t n, size_t i, size_t *clen)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t e = cellm_jinja_utf8_next(s, n, i) - i;
    *clen = e;
    if (e == 1 || u[0] < 0xC0) return u[0];
    uint32_t cp = u[0] & (0xFF >> (e + 1));
    for (size_t k = 1; k < e; k++)
        cp = (cp << 6) | (u[k] & 0x3F);
    return cp;
}

/* Python's str.isspace() set. */
int cellm_jinja_is_space(const char *s, size_t n, size_t i, size_t *clen)
{
    uint32_t cp = cellm_jinja_utf8_decode(s, n, i, clen);
    if ((cp >= 9 && cp <= 13) || (cp >= 0x1C && cp <= 0x20)) return 1;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* ---- truthiness, equality, ordering --------------------------------------------------- */

const char *cellm_jinja_kind_name(const jval *v)
{
    static const char *names[] = {"Undefined",
                                  "NoneType",
                                  "bool",
                                  "int",
                                  "float",
                                  "str",
                                  "list",
                                  "dict",
                                  "Namespace",
                                  "LoopContext",
                                  "function",
                                  "Macro",
                                  "builtin_function_or_method"};
    if (v->kind == JV_LIST && (v->flags & JV_TUPLE)) return "tuple";
    return names[v->kind];
}

int cellm_jinja_truthy(const jval *v)
{
    switch (v->kind) {
    case JV_UNDEF:
    case JV_NONE:
        return 0;
    case JV_BOOL:
    case JV_INT:
        return v->u.i != 0;
    case JV_FLOAT:
        return v->u.f != 0.0;
    case JV_STR:
        return v->len != 0;
    case JV_LIST:
        return v->u.list->n != 0;
    case JV_DICT:
        return v->u.dict->n != 0;
    default:
        return 1;
    }
}

static int is_num(const jval *v)
{
    return v->kind == JV_BOOL || v->kind == JV_INT || v->kind == JV_FLOAT;
}
static double num(const jval *v)
{
    return v->kind == JV_FLOAT ? v->u.f : (double)v->u.i;
}

int cellm_jinja_equal(const jval *a, const jval *b)
{
    if (is_num(a) && is_num(b)) {
        if (a->kind != JV_FLOAT && b->kind != JV_FLOAT) return a->u.i == b->u.i;
        return num(a) == num(b);
    }
    if (a->kind != b->kind) return 0;
    switch (a->kind) {
    case JV_UNDEF:
    case JV_NONE:
        return 1;
    case JV_STR:
        return a->len == b->len && memcmp(a->u.s, b->u.s, a->len) == 0;
    case JV_LIST: {
        if ((a->flags & JV_TUPLE) != (b->flags & JV_TUPLE) || a->u.list->n != b->u.list->n)
            return 0;
        for (size_t i = 0; i < a->u.list->n; i++)
            if (!cellm_jinja_equal(&a->u.list->v[i], &b->u.list->v[i])) return 0;
        return 1;
    }
    case JV_DICT: {
        const struct cellm_jinja_dict *x = a->u.dict, *y = b->u.dict;
        if (x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            jval *o = cellm_jinja_dict_get(y, &x->k[i]);
            if (!o || !cellm_jinja_equal(&x->v[i], o)) return 0;
        }
        return 1;
    }
    case JV_FUNC:
    case JV_METHOD:
        return a->fn == b->fn && a->u.self == b->u.self;
    default:
        return a->u.dict == b->u.dict;
    }
}

enum cellm_status cellm_jinja_compare(struct cellm_jinja_ctx *c, const jval *a, const jval *b,
                                      int *out)
{
    if (is_num(a) && is_num(b)) {
        if (a->kind != JV_FLOAT && b->kind != JV_FLOAT)
            *out = (a->u.i > b->u.i) - (a->u.i < b->u.i);
        else
            *out = (num(a) > num(b)) - (num(a) < num(b));
        return CELLM_OK;
    }
    if (a->kind == JV_STR && b->kind == JV_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        int r = n ? memcmp(a->u.s, b->u.s, n) : 0;
        *out = r ? (r > 0) - (r < 0) : (a->len > b->len) - (a->len < b->len);
        return CELLM_OK;
    }
    if (a->kind == JV_LIST && b->kind == JV_LIST &&
        (a->flags & JV_TUPLE) == (b->flags & JV_TUPLE)) {
        size_t n = a->u.list->n < b->u.list->n ? a->u.list->n : b->u.list->n;
        for (size_t i = 0; i < n; i++) {
            if (cellm_jinja_equal(&a->u.list->v[i], &b->u.list->v[i])) continue;
            return cellm_jinja_compare(c, &a->u.list->v[i], &b->u.list->v[i], out);
        }
        *out = (a->u.list->n > b->u.list->n) - (a->u.list->n < b->u.list->n);
        return CELLM_OK;
    }
    return cellm_jinja_fail(c, NULL, CELLM_ERR_FORMAT,
                            "'<' not supported between instances of '%s' and '%s'",
                            cellm_jinja_kind_name(a), cellm_jinja_kind_name(b));
}

/* ---- str() and repr() ----------------------------------------------------------------- */

/* Python's float repr: the shortest digits that round-trip, fixed notation for decimal
 * exponents in [-4, 16), else d.ddde+XX; always a '.0' on integral fixed values. */
void cellm_jinja_python_float(double f, char *out, size_t cap)
{
    if (isnan(f)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e: [-]d[.ddd]e[+-]XX */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    digits[nd] = 0;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        digits[--nd] = 0;
    char s[64];
    size_t k = 0;
    if (neg) s[k++] = '-';
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            s[k++] = '0';
            s[k++] = '.';
            for (int i = 0; i < -exp - 1; i++)
                s[k++] = '0';
            for (int i = 0; i < nd; i++)
                s[k++] = digits[i];
        } else {
            for (int i = 0; i <= exp; i++)
                s[k++] = i < nd ? digits[i] : '0';
            s[k++] = '.';
            if (nd > exp + 1)
                for (int i = exp + 1; i < nd; i++)
                    s[k++] = digits[i];
            else
                s[k++] = '0';
        }
        s[k] = 0;
    } else {
        s[k++] = digits[0];
        if (nd > 1) {
            s[k++] = '.';
            for (int i = 1; i < nd; i++)
                s[k++] = digits[i];
        }
        s[k] = 0;
        snprintf(s + k, sizeof s - k, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
    snprintf(out, cap, "%s", s);
}

static void repr_str(const jval *v, struct cellm_jinja_buf *b)
{
    const char *s = v->u.s;
    int has1 = memchr(s, '\'', v->len) != NULL, has2 = memchr(s, '"', v->len) != NULL;
    char q = has1 && !has2 ? '"' : '\'';
    cellm_jinja_buf_putc(b, q);
    for (size_t i = 0; i < v->len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\\' || ch == (unsigned char)q) {
            cellm_jinja_buf_putc(b, '\\');
            cellm_jinja_buf_putc(b, (char)ch);
        } else if (ch == '\n') {
            cellm_jinja_buf_put(b, "\\n", 2);
        } else if (ch == '\r') {
            cellm_jinja_buf_put(b, "\\r", 2);
        } else if (ch == '\t') {
            cellm_jinja_buf_put(b, "\\t", 2);
        } else if (ch < 0x20 || ch == 0x7F) {
            cellm_jinja_buf_printf(b, "\\x%02x", ch);
        } else if (ch == 0xC2 && i + 1 < v->len && (unsigned char)s[i + 1] >= 0x80 &&
                   (unsigned char)s[i + 1] < 0xA1) {
            /* U+0080..U+00A0 are not printable in Python */
            cellm_jinja_buf_printf(b, "\\x%02x", (unsigned char)s[i + 1] - 0x80 + 0x80);
            i++;
        } else {
            cellm_jinja_buf_putc(b, (char)ch);
        }
    }
    cellm_jinja_buf_putc(b, q);
}

static enum cellm_status str_or_repr(struct cellm_jinja_ctx *c, const jval *v,
                                     struct cellm_jinja_buf *b, int repr, int depth)
{
    if (depth > JINJA_MAX_DEPTH)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "value nested too deeply");
    char tmp[64];
    switch (v->kind) {
    case JV_UNDEF:
        if (repr) cellm_jinja_buf_put(b, "Undefined", 9);
        break;
    case JV_NONE:
        cellm_jinja_buf_put(b, "None", 4);
        break;
    case JV_BOOL:
        cellm_jinja_buf_put(b, v->u.i ? "True" : "False", v->u.i ? 4 : 5);
        break;
    case JV_INT:
        cellm_jinja_buf_printf(b, "%lld", (long long)v->u.i);
        break;
    case JV_FLOAT:
        cellm_jinja_python_float(v->u.f, tmp, sizeof tmp);
        cellm_jinja_buf_put(b, tmp, strlen(tmp));
        break;
    case JV_STR:
        if (repr)
            repr_str(v, b);
        else
            cellm_jinja_buf_put(b, v->u.s, v->len);
        break;
    case JV_LIST: {
        int tuple = v->flags & JV_TUPLE;
        cellm_jinja_buf_putc(b, tuple ? '(' : '[');
        for (size_t i = 0; i < v->u.list->n; i++) {
            if (i) cellm_jinja_buf_put(b, ", ", 2);
            CELLM_TRY(str_or_repr(c, &v->u.list->v[i], b, 1, depth + 1));
        }
        if (tuple && v->u.list->n == 1) cellm_jinja_buf_putc(b, ',');
        cellm_jinja_buf_putc(b, tuple ? ')' : ']');
        break;
    }
    case JV_DICT: {
        cellm_jinja_buf_putc(b, '{');
        for (size_t i = 0; i < v->u.dict->n; i++) {
            if (i) cellm_jinja_buf_put(b, ", ", 2);
            CELLM_TRY(str_or_repr(c, &v->u.dict->k[i], b, 1, depth + 1));
            cellm_jinja_buf_put(b, ": ", 2);
            CELLM_TRY(str_or_repr(c, &v->u.dict->v[i], b, 1, depth + 1));
        }
        cellm_jinja_buf_putc(b, '}');
        break;
    }
    default:
        return cellm_jinja_fail(c, NULL, CELLM_ERR_UNSUPPORTED,
                                "printing a %s object is not supported", cellm_jinja_kind_name(v));
    }
    return buf_status(c, b);
}

enum cellm_status cellm_jinja_to_str(struct cellm_jinja_ctx *c, const jval *v,
                                     struct cellm_jinja_buf *b)
{
    return str_or_repr(c, v, b, 0, 0);
}

enum cellm_status cellm_jinja_repr(struct cellm_jinja_ctx *c, const jval *v,
                                   struct cellm_jinja_buf *b)
{
    return str_or_repr(c, v, b, 1, 0);
}

enum cellm_status cellm_jinja_stringify(struct cellm_jinja_ctx *c, const jval *v, jval *out)
{
    if (v->kind == JV_STR) {
        *out = *v;
        return CELLM_OK;
    }
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    enum cellm_status st = cellm_jinja_to_str(c, v, &b);
    if (st == CELLM_OK) st = cellm_jinja_buf_take(c, &b, out);
    cellm_free(b.p);
    return st;
}

/* ---- from cJSON and iteration --------------------------------------------------------- */

static enum cellm_status from_cjson(struct cellm_jinja_ctx *c, const cJSON *j, jval *out, int depth)
{
    if (depth > JINJA_MAX_DEPTH)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "variables nested too deeply");
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        if (n > UINT32_MAX)
            return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "string variable too long");
        *out = cellm_jinja_str(j->valuestring, n);
    } else if (cJSON_IsBool(j)) {
        *out = cellm_jinja_bool(cJSON_IsTrue(j));
    } else if (cJSON_IsNull(j)) {
        *out = cellm_jinja_none();
    } else if (cJSON_IsNumber(j)) {
        double d = j->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            *out = cellm_jinja_int((int64_t)d);
        } else {
            *out = (jval){.kind = JV_FLOAT};
            out->u.f = d;
        }
    } else if (cJSON_IsArray(j)) {
        CELLM_TRY(cellm_jinja_new_list(c, out));
        for (const cJSON *e = j->child; e; e = e->next) {
            jval v;
            CELLM_TRY(from_cjson(c, e, &v, depth + 1));
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &v));
        }
    } else if (cJSON_IsObject(j)) {
        CELLM_TRY(cellm_jinja_new_dict(c, 0, out));
        for (const cJSON *e = j->child; e; e = e->next) {
            jval v,
                k = cellm_jinja_str(e->string ? e->string : "", e->string ? strlen(e->string) : 0);
            CELLM_TRY(from_cjson(c, e, &v, depth + 1));
            CELLM_TRY(cellm_jinja_dict_set(c, out->u.dict, &k, &v));
        }
    } else {
        *out = cellm_jinja_none();
    }
    return CELLM_OK;
}

enum cellm_status cellm_jinja_from_cjson(struct cellm_jinja_ctx *c, const cJSON *j, jval *out)
{
    return from_cjson(c, j, out, 0);
}

enum cellm_status cellm_jinja_iter_list(struct cellm_jinja_ctx *c, const jval *v,
                                        struct cellm_jinja_list **out)
{
    jval l = {0};
    switch (v->kind) {
    case JV_LIST:
        *out = v->u.list;
        return CELLM_OK;
    case JV_UNDEF:
        CELLM_TRY(cellm_jinja_new_list(c, &l));
        break;
    case JV_DICT:
        CELLM_TRY(cellm_jinja_new_list(c, &l));
        for (size_t i = 0; i < v->u.dict->n; i++)
            CELLM_TRY(cellm_jinja_list_push(c, l.u.list, &v->u.dict->k[i]));
        break;
    case JV_STR:
        CELLM_TRY(cellm_jinja_new_list(c, &l));
        for (size_t i = 0; i < v->len;) {
            size_t e = cellm_jinja_utf8_next(v->u.s, v->len, i);
            jval ch = cellm_jinja_str(v->u.s + i, e - i);
            CELLM_TRY(cellm_jinja_list_push(c, l.u.list, &ch));
            i = e;
        }
        break;
    default:
        return cellm_jinja_fail(c, NULL, CELLM_ERR_FORMAT, "'%s' object is not iterable",
                                cellm_jinja_kind_name(v));
    }
    *out = l.u.list;
    return CELLM_OK;
}
