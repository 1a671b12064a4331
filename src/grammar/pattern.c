/*
 * pattern.c: JSON Schema `pattern` (an ECMAScript regex, as ajv runs it with the u flag)
 * to a GBNF expression over the content of a JSON string, and the code point range helpers
 * the GBNF parser shares.
 *
 * Supported: literals, `.`, classes with ranges and negation, \d \D \w \W \s \S, escaped
 * punctuation, \n \r \t \f \v \0 \xHH \uHHHH \u{H...}, groups ( ) and (?: ), alternation,
 * the quantifiers * + ? {m} {m,} {m,n} (a lazy `?` after them changes nothing for a
 * recognizer), and the anchors ^ at the very start and $ at the very end. A pattern without
 * them matches anywhere in the string, so the missing side gets any characters. Refused by
 * name: backreferences, lookaround, \b \B, \p{...}, named groups, anchors elsewhere.
 *
 * The regex speaks of decoded characters; the grammar writes JSON text. A character that
 * JSON must escape is written as its escape (" as \", \ as \\, newline as \n, ...), other
 * control characters are left out (the grammar stays a subset), and \u escapes are never
 * produced.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/grammar.h"

static int cmp_range(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : (x[1] < y[1] ? -1 : x[1] > y[1]);
}

size_t cellm_gr_ranges_norm(uint32_t *r, size_t n)
{
    if (!n) return 0;
    qsort(r, n, 2 * sizeof *r, cmp_range);
    size_t k = 0;
    for (size_t i = 1; i < n; i++) {
        if (r[2 * i] <= r[2 * k + 1] + 1 && r[2 * k + 1] != UINT32_MAX) {
            if (r[2 * i + 1] > r[2 * k + 1]) r[2 * k + 1] = r[2 * i + 1];
        } else {
            k++;
            r[2 * k] = r[2 * i];
            r[2 * k + 1] = r[2 * i + 1];
        }
    }
    return k + 1;
}

/* The complement of normalized ranges within [0, 0x10FFFF]; out holds n + 1 pairs. */
size_t cellm_gr_ranges_negate(const uint32_t *r, size_t n, uint32_t *out)
{
    size_t k = 0;
    uint32_t next = 0;
    for (size_t i = 0; i < n && next <= 0x10FFFF; i++) {
        if (r[2 * i] > next) {
            out[2 * k] = next;
            out[2 * k + 1] = r[2 * i] - 1;
            k++;
        }
        next = r[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) {
        out[2 * k] = next;
        out[2 * k + 1] = 0x10FFFF;
        k++;
    }
    return k;
}

#define MAX_SET 512 /* ranges in one class */

struct set {
    uint32_t r[2 * MAX_SET + 2];
    size_t n;
};

struct re {
    const char *s;
    size_t pos, len;
    struct gr_buf *out;
    const char *where;
    struct cellm_error *err;
    int failed, depth;
    enum cellm_status st;
};

static void bad(struct re *p, enum cellm_status st, const char *what)
{
    if (p->failed) return;
    p->failed = 1;
    p->st = st;
    cellm_errf(p->err, st, "%s: %s (at offset %zu)", p->where, what, p->pos);
}

static void add(struct re *p, struct set *s, uint32_t lo, uint32_t hi)
{
    if (s->n >= MAX_SET) {
        bad(p, CELLM_ERR_UNSUPPORTED, "a character class with too many ranges");
        return;
    }
    s->r[2 * s->n] = lo;
    s->r[2 * s->n + 1] = hi;
    s->n++;
}

static void negate(struct set *s)
{
    uint32_t tmp[2 * MAX_SET + 2];
    s->n = cellm_gr_ranges_norm(s->r, s->n);
    s->n = cellm_gr_ranges_negate(s->r, s->n, tmp);
    memcpy(s->r, tmp, 2 * s->n * sizeof *tmp);
}

static const uint32_t space_ranges[] = {0x09,   0x0D,   0x20,   0x20,   0xA0,   0xA0,   0x1680,
                                        0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x202F,
                                        0x205F, 0x205F, 0x3000, 0x3000, 0xFEFF, 0xFEFF};

/* \d \w \s and their negations into s; 0 if c is none of them. */
static int class_escape(struct re *p, struct set *s, char c)
{
    struct set t = {.n = 0};
    switch (c | 0x20) {
    case 'd':
        add(p, &t, '0', '9');
        break;
    case 'w':
        add(p, &t, '0', '9');
        add(p, &t, 'A', 'Z');
        add(p, &t, 'a', 'z');
        add(p, &t, '_', '_');
        break;
    case 's':
        for (size_t i = 0; i < sizeof space_ranges / sizeof *space_ranges; i += 2)
            add(p, &t, space_ranges[i], space_ranges[i + 1]);
        break;
    default:
        return 0;
    }
    if (c >= 'A' && c <= 'Z') negate(&t);
    for (size_t i = 0; i < t.n; i++)
        add(p, s, t.r[2 * i], t.r[2 * i + 1]);
    return 1;
}

static int hexv(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static uint32_t hexn(struct re *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        int h = p->pos < p->len ? hexv(p->s[p->pos]) : -1;
        if (h < 0) {
            bad(p, CELLM_ERR_FORMAT, "a hex escape needs more digits");
            return 0;
        }
        v = v * 16 + (uint32_t)h;
        p->pos++;
    }
    return v;
}

/* One character (after a backslash when esc), in a class or not. */
static uint32_t char_at(struct re *p, int in_class)
{
    const uint8_t *u = (const uint8_t *)p->s + p->pos;
    if (*u != '\\') {
        uint32_t cp = *u;
        size_t n = 1;
        if (cp >= 0xC0) {
            n = cp >= 0xF0 ? 4 : cp >= 0xE0 ? 3 : 2;
            cp &= (uint32_t)(0x3F >> (n - 1));
            for (size_t i = 1; i < n; i++) {
                if (p->pos + i >= p->len || (u[i] & 0xC0) != 0x80) {
                    bad(p, CELLM_ERR_FORMAT, "invalid UTF-8");
                    return 0;
                }
                cp = (cp << 6) | (u[i] & 0x3F);
            }
        }
        p->pos += n;
        return cp;
    }
    if (++p->pos >= p->len) {
        bad(p, CELLM_ERR_FORMAT, "a trailing backslash");
        return 0;
    }
    char c = p->s[p->pos++];
    switch (c) {
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'f':
        return '\f';
    case 'v':
        return '\v';
    case '0':
        return 0;
    case 'x':
        return hexn(p, 2);
    case 'u':
        if (p->pos < p->len && p->s[p->pos] == '{') {
            p->pos++;
            uint32_t v = 0;
            int n = 0;
            while (p->pos < p->len && hexv(p->s[p->pos]) >= 0 && n < 7) {
                v = v * 16 + (uint32_t)hexv(p->s[p->pos++]);
                n++;
            }
            if (!n || p->pos >= p->len || p->s[p->pos] != '}' || v > 0x10FFFF)
                bad(p, CELLM_ERR_FORMAT, "a bad \\u{...} escape");
            p->pos++;
            return v;
        }
        return hexn(p, 4);
    case 'b':
        if (in_class) return 8;
        bad(p, CELLM_ERR_UNSUPPORTED, "'\\b' (word boundaries) is not supported");
        return 0;
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
            char m[64];
            snprintf(m, sizeof m, "the escape '\\%c' is not supported", c);
            bad(p, CELLM_ERR_UNSUPPORTED, m);
            return 0;
        }
        return (uint32_t)(unsigned char)c; /* escaped punctuation is itself */
    }
}

/* GBNF for one code point inside a class: printable ASCII as itself, else \U. */
static void class_cp(struct gr_buf *b, uint32_t c)
{
    if (c > 0x20 && c < 0x7f && !strchr("]\\-^\"[", (int)c))
        cellm_gr_buf_printf(b, "%c", (char)c);
    else
        cellm_gr_buf_printf(b, "\\U%08X", c);
}

/* Writes a set of characters as JSON text: the raw ones as a class, escapes as literals. */
static void emit_set(struct re *p, struct set *s)
{
    s->n = cellm_gr_ranges_norm(s->r, s->n);
    struct gr_buf *b = p->out;
    static const struct {
        uint32_t c;
        const char *gbnf;
    } esc[] = {{'"', "\"\\\\\\\"\""}, {'\\', "\"\\\\\\\\\""}, {'\n', "\"\\\\n\""},
               {'\r', "\"\\\\r\""},   {'\t', "\"\\\\t\""},    {8, "\"\\\\b\""},
               {12, "\"\\\\f\""}};
    int parts = 0;
    cellm_gr_buf_puts(b, "(");
    int opened = 0;
    for (size_t i = 0; i < s->n; i++) {
        uint32_t lo = s->r[2 * i], hi = s->r[2 * i + 1];
        /* the raw part: without controls, '"' and '\' */
        uint32_t cuts[][2] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
        uint32_t seg[8][2];
        size_t ns = 1;
        seg[0][0] = lo;
        seg[0][1] = hi;
        for (size_t k = 0; k < 3; k++) {
            size_t m = 0;
            uint32_t out[8][2];
            for (size_t j = 0; j < ns; j++) {
                uint32_t a = seg[j][0], z = seg[j][1];
                if (z < cuts[k][0] || a > cuts[k][1]) {
                    out[m][0] = a;
                    out[m++][1] = z;
                    continue;
                }
                if (a < cuts[k][0]) {
                    out[m][0] = a;
                    out[m++][1] = cuts[k][0] - 1;
                }
                if (z > cuts[k][1]) {
                    out[m][0] = cuts[k][1] + 1;
                    out[m++][1] = z;
                }
            }
            memcpy(seg, out, m * sizeof *out);
            ns = m;
        }
        for (size_t j = 0; j < ns; j++) {
            if (!opened) {
                cellm_gr_buf_puts(b, "[");
                opened = 1;
            }
            class_cp(b, seg[j][0]);
            if (seg[j][1] != seg[j][0]) {
                cellm_gr_buf_puts(b, "-");
                class_cp(b, seg[j][1]);
            }
        }
    }
    if (opened) {
        cellm_gr_buf_puts(b, "]");
        parts++;
    }
    for (size_t k = 0; k < sizeof esc / sizeof *esc; k++) {
        int in = 0;
        for (size_t i = 0; i < s->n && !in; i++)
            in = s->r[2 * i] <= esc[k].c && esc[k].c <= s->r[2 * i + 1];
        if (!in) continue;
        cellm_gr_buf_puts(b, parts++ ? " | " : "");
        cellm_gr_buf_puts(b, esc[k].gbnf);
    }
    cellm_gr_buf_puts(b, ")");
    if (!parts)
        bad(p, CELLM_ERR_UNSUPPORTED,
            "a part that matches only control characters JSON writes as \\u escapes");
}

static void alt(struct re *p);

static void atom(struct re *p)
{
    char c = p->s[p->pos];
    struct set s = {.n = 0};
    if (c == '(') {
        p->pos++;
        if (p->pos < p->len && p->s[p->pos] == '?') {
            if (p->pos + 1 < p->len && p->s[p->pos + 1] == ':') {
                p->pos += 2;
            } else {
                bad(p, CELLM_ERR_UNSUPPORTED, "lookaround and named groups are not supported");
                return;
            }
        }
        if (++p->depth > 100) {
            bad(p, CELLM_ERR_UNSUPPORTED, "groups nested deeper than 100");
            return;
        }
        cellm_gr_buf_puts(p->out, "(");
        alt(p);
        cellm_gr_buf_puts(p->out, ")");
        p->depth--;
        if (p->pos >= p->len || p->s[p->pos] != ')') {
            bad(p, CELLM_ERR_FORMAT, "'(' is not closed");
            return;
        }
        p->pos++;
        return;
    }
    if (c == '[') {
        p->pos++;
        int neg = p->pos < p->len && p->s[p->pos] == '^';
        if (neg) p->pos++;
        int first = 1;
        while (!p->failed && p->pos < p->len && (p->s[p->pos] != ']' || first)) {
            first = 0;
            if (p->s[p->pos] == '\\' && p->pos + 1 < p->len &&
                class_escape(p, &s, p->s[p->pos + 1])) {
                p->pos += 2;
                continue;
            }
            uint32_t lo = char_at(p, 1), hi = lo;
            if (p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
                p->pos++;
                hi = char_at(p, 1);
                if (hi < lo) bad(p, CELLM_ERR_FORMAT, "a reversed range in a class");
            }
            add(p, &s, lo, hi);
        }
        if (p->pos >= p->len) {
            bad(p, CELLM_ERR_FORMAT, "'[' is not closed");
            return;
        }
        p->pos++;
        if (neg) negate(&s);
    } else if (c == '.') {
        p->pos++;
        add(p, &s, 0, 0x10FFFF);
        struct set t = {.n = 0};
        add(p, &t, '\n', '\n');
        add(p, &t, '\r', '\r');
        add(p, &t, 0x2028, 0x2029);
        negate(&t);
        s = t;
    } else if (c == '\\' && p->pos + 1 < p->len && class_escape(p, &s, p->s[p->pos + 1])) {
        p->pos += 2;
    } else if (c == '\\' && p->pos + 1 < p->len && p->s[p->pos + 1] >= '1' &&
               p->s[p->pos + 1] <= '9') {
        bad(p, CELLM_ERR_UNSUPPORTED, "backreferences are not supported");
        return;
    } else if (strchr("*+?{", c)) {
        bad(p, CELLM_ERR_FORMAT, "a quantifier follows nothing");
        return;
    } else if (c == '^' || c == '$') {
        bad(p, CELLM_ERR_UNSUPPORTED, "anchors other than a leading ^ and a trailing $");
        return;
    } else {
        uint32_t cp = char_at(p, 0);
        add(p, &s, cp, cp);
    }
    if (!p->failed) emit_set(p, &s);
}

static long number(struct re *p)
{
    long v = -1;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        v = (v < 0 ? 0 : v) * 10 + (p->s[p->pos++] - '0');
        if (v > GR_MAX_REPEAT) v = GR_MAX_REPEAT + 1;
    }
    return v;
}

static void seq(struct re *p)
{
    int any = 0;
    while (!p->failed && p->pos < p->len && p->s[p->pos] != '|' && p->s[p->pos] != ')') {
        if (any) cellm_gr_buf_puts(p->out, " ");
        atom(p);
        any = 1;
        if (p->failed || p->pos >= p->len) break;
        char c = p->s[p->pos];
        if (c == '*' || c == '+' || c == '?') {
            cellm_gr_buf_printf(p->out, "%c", c);
            p->pos++;
        } else if (c == '{') {
            size_t save = p->pos++;
            long mn = number(p), mx = mn;
            if (p->pos < p->len && p->s[p->pos] == ',') {
                p->pos++;
                mx = number(p);
            }
            if (mn < 0 || p->pos >= p->len || p->s[p->pos] != '}') {
                p->pos = save;
                bad(p, CELLM_ERR_FORMAT, "a malformed {m,n} quantifier");
                break;
            }
            p->pos++;
            if (mn > GR_MAX_REPEAT || mx > GR_MAX_REPEAT || (mx >= 0 && mx < mn)) {
                bad(p, CELLM_ERR_UNSUPPORTED, "a repetition count above 4096 or reversed");
                break;
            }
            if (mx < 0)
                cellm_gr_buf_printf(p->out, "{%ld,}", mn);
            else
                cellm_gr_buf_printf(p->out, "{%ld,%ld}", mn, mx);
        } else {
            continue;
        }
        if (p->pos < p->len && p->s[p->pos] == '?') p->pos++; /* lazy: same language */
        if (p->pos < p->len && strchr("*+?{", p->s[p->pos])) {
            bad(p, CELLM_ERR_FORMAT, "two quantifiers in a row");
            break;
        }
    }
    if (!any) cellm_gr_buf_puts(p->out, "\"\"");
}

static void alt(struct re *p)
{
    seq(p);
    while (!p->failed && p->pos < p->len && p->s[p->pos] == '|') {
        p->pos++;
        cellm_gr_buf_puts(p->out, " | ");
        seq(p);
    }
}

enum cellm_status cellm_gr_pattern(const char *re, struct gr_buf *out, const char *where,
                                   struct cellm_error *err)
{
    size_t len = strlen(re), a = 0, z = len;
    int start = len && re[0] == '^', end = 0;
    if (start) a = 1;
    if (z > a && re[z - 1] == '$') { /* unless the $ is escaped */
        size_t bs = 0;
        while (z - 1 - bs > a && re[z - 2 - bs] == '\\')
            bs++;
        if (bs % 2 == 0) {
            end = 1;
            z--;
        }
    }
    struct re p = {.s = re + a, .len = z - a, .out = out, .where = where, .err = err};
    if (!start) cellm_gr_buf_puts(out, "json-char* ");
    cellm_gr_buf_puts(out, "(");
    alt(&p);
    cellm_gr_buf_puts(out, ")");
    if (!end) cellm_gr_buf_puts(out, " json-char*");
    if (!p.failed && p.pos < p.len) bad(&p, CELLM_ERR_FORMAT, "an unmatched ')'");
    if (!p.failed && (start || end)) { /* ^a|b$ is (^a)|(b$): refuse rather than misread */
        int depth = 0, esc = 0, cls = 0;
        for (size_t i = 0; i < p.len; i++) {
            char c = p.s[i];
            if (esc) {
                esc = 0;
            } else if (c == '\\') {
                esc = 1;
            } else if (cls) {
                cls = c != ']';
            } else if (c == '[') {
                cls = 1;
            } else if (c == '(') {
                depth++;
            } else if (c == ')') {
                depth--;
            } else if (c == '|' && depth == 0) {
                bad(&p, CELLM_ERR_UNSUPPORTED,
                    "anchors with a top-level '|' (write ^(a|b)$ instead)");
                break;
            }
        }
    }
    if (!p.failed && out->oom) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    return p.failed ? p.st : CELLM_OK;
}
