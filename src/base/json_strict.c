/*
 * json_strict.c: a validating pass over JSON text before cJSON parses it.
 *
 * cJSON is lenient where a server must not be: it keeps the first of two equal keys (a
 * gateway in Python, JavaScript or Go sees the last, so a limit checked there can be
 * bypassed), it stops at the end of the first value and ignores what follows, it accepts
 * raw control characters inside strings, and it decodes "\u0000" into a C string that then
 * ends early (a prompt or a stop string silently truncated). This pass refuses all four,
 * plus nesting beyond a bound, and names the problem and its byte offset.
 *
 * It is one loop with an explicit stack (no recursion, so the nesting bound is the only
 * limit on depth). Keys are decoded into one arena; each open object owns the tail of the
 * arena from where it began, and checks its keys for repeats when it closes (sorting
 * them: O(k log k) for k keys), then gives that tail back.
 */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "json.h"

struct key {
    size_t off, len; /* decoded bytes in the arena */
};

struct strict {
    const char *t;
    size_t n, i;
    char *arena; /* decoded keys of every open object */
    size_t alen, acap;
    struct key *keys;
    size_t nkeys, kcap;
    const char *what;
    struct cellm_error *err;
};

struct frame {
    int obj;       /* object (else array) */
    size_t key0;   /* first key of this object in keys[] */
    size_t arena0; /* its first byte in the arena */
};

static enum cellm_status bad(struct strict *s, const char *msg)
{
    return cellm_errf(s->err, CELLM_ERR_FORMAT, "%s: %s at byte %zu", s->what, msg, s->i);
}

static void skip_ws(struct strict *s)
{
    while (s->i < s->n &&
           (s->t[s->i] == ' ' || s->t[s->i] == '\t' || s->t[s->i] == '\n' || s->t[s->i] == '\r'))
        s->i++;
}

static int arena_put(struct strict *s, const char *p, size_t n)
{
    if (s->alen + n > s->acap) {
        size_t c = s->acap ? s->acap : 256;
        while (c < s->alen + n)
            c *= 2;
        char *a = cellm_realloc(s->arena, c);
        if (!a) return 0;
        s->arena = a;
        s->acap = c;
    }
    memcpy(s->arena + s->alen, p, n);
    s->alen += n;
    return 1;
}

static int hex4(const char *p, unsigned *v)
{
    *v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = (unsigned)(c - '0');
        else if ((c | 32) >= 'a' && (c | 32) <= 'f')
            d = (unsigned)((c | 32) - 'a' + 10);
        else
            return 0;
        *v = *v * 16 + d;
    }
    return 1;
}

/* A string starting at s->t[s->i] == '"'. keep: decode it into the arena (a key). */
static enum cellm_status string(struct strict *s, int keep)
{
    s->i++;
    while (s->i < s->n) {
        unsigned char c = (unsigned char)s->t[s->i];
        if (c == '"') {
            s->i++;
            return CELLM_OK;
        }
        if (c < 0x20) return bad(s, "raw control character in a string (escape it)");
        if (c != '\\') {
            size_t b = s->i;
            while (s->i < s->n && s->t[s->i] != '"' && s->t[s->i] != '\\' &&
                   (unsigned char)s->t[s->i] >= 0x20)
                s->i++;
            if (keep && !arena_put(s, s->t + b, s->i - b))
                return cellm_errf(s->err, CELLM_ERR_NOMEM, "%s: out of memory", s->what);
            continue;
        }
        if (s->i + 1 >= s->n) break;
        char e = s->t[s->i + 1];
        char one = 0;
        switch (e) {
        case '"':
            one = '"';
            break;
        case '\\':
            one = '\\';
            break;
        case '/':
            one = '/';
            break;
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u': {
            unsigned v;
            if (s->i + 6 > s->n || !hex4(s->t + s->i + 2, &v))
                return bad(s, "bad \\u escape in a string");
            if (v == 0) return bad(s, "\\u0000 (a NUL character) in a string is not accepted");
            s->i += 6;
            /* the code unit as UTF-8, so that "\u0061" and "a" are the same key */
            char u[3];
            size_t ul = 0;
            if (v < 0x80) {
                u[ul++] = (char)v;
            } else if (v < 0x800) {
                u[ul++] = (char)(0xC0 | (v >> 6));
                u[ul++] = (char)(0x80 | (v & 0x3F));
            } else {
                u[ul++] = (char)(0xE0 | (v >> 12));
                u[ul++] = (char)(0x80 | ((v >> 6) & 0x3F));
                u[ul++] = (char)(0x80 | (v & 0x3F));
            }
            if (keep && !arena_put(s, u, ul))
                return cellm_errf(s->err, CELLM_ERR_NOMEM, "%s: out of memory", s->what);
            continue;
        }
        default:
            return bad(s, "bad escape in a string");
        }
        s->i += 2;
        if (keep && !arena_put(s, &one, 1))
            return cellm_errf(s->err, CELLM_ERR_NOMEM, "%s: out of memory", s->what);
    }
    return bad(s, "unterminated string");
}

static int digits(struct strict *s)
{
    size_t b = s->i;
    while (s->i < s->n && s->t[s->i] >= '0' && s->t[s->i] <= '9')
        s->i++;
    return s->i > b;
}

static enum cellm_status number(struct strict *s)
{
    if (s->t[s->i] == '-') s->i++;
    if (s->i < s->n && s->t[s->i] == '0')
        s->i++;
    else if (!digits(s))
        return bad(s, "bad number");
    if (s->i < s->n && s->t[s->i] == '.') {
        s->i++;
        if (!digits(s)) return bad(s, "bad number");
    }
    if (s->i < s->n && (s->t[s->i] | 32) == 'e') {
        s->i++;
        if (s->i < s->n && (s->t[s->i] == '+' || s->t[s->i] == '-')) s->i++;
        if (!digits(s)) return bad(s, "bad number");
    }
    return CELLM_OK;
}

static int key_cmp(const void *a, const void *b, void *arena)
{
    const struct key *x = a, *y = b;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp((const char *)arena + x->off, (const char *)arena + y->off, m);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Called when an object closes: a repeated key is an error naming it. */
static enum cellm_status check_keys(struct strict *s, const struct frame *f)
{
    size_t k = s->nkeys - f->key0;
    struct key *v = s->keys + f->key0;
    if (k > 1) {
        qsort_r(v, k, sizeof *v, key_cmp, s->arena);
        for (size_t i = 1; i < k; i++)
            if (!key_cmp(&v[i - 1], &v[i], s->arena)) {
                size_t len = v[i].len > 64 ? 64 : v[i].len;
                return cellm_errf(s->err, CELLM_ERR_FORMAT,
                                  "%s: duplicate key \"%.*s\" in the object ending at byte %zu",
                                  s->what, (int)len, s->arena + v[i].off, s->i);
            }
    }
    s->nkeys = f->key0;
    s->alen = f->arena0;
    return CELLM_OK;
}

static enum cellm_status walk(struct strict *s, struct frame *stack, int max_depth)
{
    int depth = 0;
    enum cellm_status st;
    for (;;) {
        /* a value */
        skip_ws(s);
        if (s->i >= s->n) return bad(s, "unexpected end of input");
        char c = s->t[s->i];
        if (c == '{' || c == '[') {
            if (depth == max_depth) return bad(s, "nesting too deep");
            struct frame *f = &stack[depth++];
            f->obj = c == '{';
            f->key0 = s->nkeys;
            f->arena0 = s->alen;
            s->i++;
            skip_ws(s);
            if (s->i < s->n && s->t[s->i] == (f->obj ? '}' : ']')) {
                s->i++;
                depth--;
                goto after_value;
            }
            if (f->obj) goto object_key;
            continue;
        } else if (c == '"') {
            if ((st = string(s, 0))) return st;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            if ((st = number(s))) return st;
        } else if (s->n - s->i >= 4 && !memcmp(s->t + s->i, "true", 4)) {
            s->i += 4;
        } else if (s->n - s->i >= 5 && !memcmp(s->t + s->i, "false", 5)) {
            s->i += 5;
        } else if (s->n - s->i >= 4 && !memcmp(s->t + s->i, "null", 4)) {
            s->i += 4;
        } else {
            return bad(s, "unexpected character");
        }
    after_value:
        for (;;) {
            skip_ws(s);
            if (depth == 0) {
                if (s->i < s->n) return bad(s, "trailing data after the JSON value");
                return CELLM_OK;
            }
            struct frame *f = &stack[depth - 1];
            if (s->i >= s->n) return bad(s, "unexpected end of input");
            char d = s->t[s->i];
            if (d == ',') {
                s->i++;
                if (f->obj) goto object_key;
                break; /* next array element */
            }
            if (d != (f->obj ? '}' : ']'))
                return bad(s, f->obj ? "expected ',' or '}'" : "expected ',' or ']'");
            if (f->obj && (st = check_keys(s, f))) return st;
            s->i++;
            depth--;
        }
        continue;
    object_key:
        skip_ws(s);
        if (s->i >= s->n || s->t[s->i] != '"') return bad(s, "expected a string key");
        {
            if (s->nkeys == s->kcap) {
                size_t c2 = s->kcap ? 2 * s->kcap : 16;
                struct key *k = cellm_realloc(s->keys, c2 * sizeof *k);
                if (!k) return cellm_errf(s->err, CELLM_ERR_NOMEM, "%s: out of memory", s->what);
                s->keys = k;
                s->kcap = c2;
            }
            size_t a0 = s->alen;
            if ((st = string(s, 1))) return st;
            s->keys[s->nkeys].off = a0;
            s->keys[s->nkeys].len = s->alen - a0;
            s->nkeys++;
        }
        skip_ws(s);
        if (s->i >= s->n || s->t[s->i] != ':') return bad(s, "expected ':' after a key");
        s->i++;
    }
}

enum cellm_status cellm_json_check_strict(const char *text, size_t len, const char *what,
                                          int max_depth, struct cellm_error *err)
{
    if (max_depth < 1) max_depth = 1;
    struct strict s = {.t = text, .n = len, .what = what, .err = err};
    struct frame *stack = cellm_malloc((size_t)max_depth * sizeof *stack);
    if (!stack) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    enum cellm_status st = walk(&s, stack, max_depth);
    cellm_free(stack);
    cellm_free(s.arena);
    cellm_free(s.keys);
    return st;
}
