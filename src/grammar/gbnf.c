/*
 * gbnf.c: llama-server's GBNF grammar syntax, parsed into a struct cellm_grammar.
 *
 *   root  ::= item ("," ws item)*      # comments run to the end of the line
 *   item  ::= [a-z]+ | "x" [^"\\\n]{1,8} | ( "a" | "b" )? .
 *
 * Literals and classes take the escapes \n \r \t \\ \" \[ \] \- \/ \xHH \uHHHH
 * \UHHHHHHHH; classes may be negated ([^...]) and hold ranges over Unicode code points;
 * `.` is any code point. A rule's alternatives may continue on the next line when that line
 * starts with `|`, and anything inside parentheses may span lines.
 *
 * The parser builds each rule's alternatives directly as element runs. A group becomes a
 * helper rule, and repetition is desugared into helper rules: x* is R ::= x R | (empty),
 * which the matcher runs in constant stack depth since the reference is in tail position;
 * x{m,n} is m copies of x and then n-m nested optional rules. Left recursion (also through
 * rules that can match nothing) is refused: the matcher expands references eagerly and it
 * would never end. Every error says line:column.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/grammar.h"
#include "tokenizer/unicode.h"

struct palt {
    struct gr_elem *e;
    size_t n, cap;
};

struct prule {
    const char *name; /* points into the source; NULL for helper rules */
    size_t nlen;
    struct palt *alts;
    size_t n, cap;
    int defined;
    size_t ref_pos; /* where it was first referenced, for "undefined rule" */
};

struct parser {
    const char *s;
    size_t len, pos;
    struct prule *rules;
    size_t n_rules, cap_rules;
    uint32_t *ranges;
    size_t n_ranges, cap_ranges;
    size_t total; /* elements so far, against GR_MAX_ELEMS */
    int depth;
    int failed;
    struct cellm_error *err;
    enum cellm_status st;
};

static void fail_at(struct parser *p, size_t pos, enum cellm_status st, const char *fmt, ...)
    CELLM_PRINTF(4, 5);
static void fail_at(struct parser *p, size_t pos, enum cellm_status st, const char *fmt, ...)
{
    if (p->failed) return;
    p->failed = 1;
    p->st = st;
    int line = 1, col = 1;
    for (size_t i = 0; i < pos && i < p->len; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else if (((uint8_t)p->s[i] & 0xC0) != 0x80) {
            col++;
        }
    }
    char msg[CELLM_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cellm_errf(p->err, st, "grammar %d:%d: %s", line, col, msg);
}

static void oom(struct parser *p)
{
    fail_at(p, p->pos, CELLM_ERR_NOMEM, "out of memory");
}

static int grow(void **v, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap * 2 : 8;
    while (c < need)
        c *= 2;
    void *n = cellm_realloc(*v, c * size);
    if (!n) return -1;
    *v = n;
    *cap = c;
    return 0;
}

static void push(struct parser *p, struct palt *a, uint32_t type, uint32_t x, uint32_t y)
{
    if (p->failed) return;
    if (++p->total > GR_MAX_ELEMS) {
        fail_at(p, p->pos, CELLM_ERR_RANGE, "the grammar has more than %u elements", GR_MAX_ELEMS);
        return;
    }
    if (grow((void **)&a->e, &a->cap, a->n + 1, sizeof *a->e)) {
        oom(p);
        return;
    }
    a->e[a->n++] = (struct gr_elem){type, x, y};
}

static struct palt *new_alt(struct parser *p, uint32_t rule)
{
    struct prule *r = &p->rules[rule];
    if (grow((void **)&r->alts, &r->cap, r->n + 1, sizeof *r->alts)) {
        oom(p);
        return NULL;
    }
    memset(&r->alts[r->n], 0, sizeof *r->alts);
    return &r->alts[r->n++];
}

static long new_rule(struct parser *p, const char *name, size_t nlen)
{
    if (grow((void **)&p->rules, &p->cap_rules, p->n_rules + 1, sizeof *p->rules)) {
        oom(p);
        return -1;
    }
    memset(&p->rules[p->n_rules], 0, sizeof *p->rules);
    p->rules[p->n_rules].name = name;
    p->rules[p->n_rules].nlen = nlen;
    return (long)p->n_rules++;
}

static long rule_named(struct parser *p, const char *name, size_t nlen, size_t at)
{
    for (size_t i = 0; i < p->n_rules; i++)
        if (p->rules[i].name && p->rules[i].nlen == nlen && !memcmp(p->rules[i].name, name, nlen))
            return (long)i;
    long r = new_rule(p, name, nlen);
    if (r >= 0) p->rules[r].ref_pos = at;
    return r;
}

/* A class of ranges r[0..2n) appended to the shared pool; returns its first index. */
static uint32_t add_ranges(struct parser *p, const uint32_t *r, size_t n)
{
    if (grow((void **)&p->ranges, &p->cap_ranges, p->n_ranges + 2 * n + 2, sizeof *p->ranges)) {
        oom(p);
        return 0;
    }
    uint32_t at = (uint32_t)(p->n_ranges / 2);
    memcpy(p->ranges + p->n_ranges, r, 2 * n * sizeof *r);
    p->n_ranges += 2 * n;
    return at;
}

static int is_name(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

static void space(struct parser *p, int newlines)
{
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r'))) {
            p->pos++;
        } else if (c == '#') {
            while (p->pos < p->len && p->s[p->pos] != '\n' && p->s[p->pos] != '\r')
                p->pos++;
        } else {
            break;
        }
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* One character of a literal or class, escapes decoded. */
static uint32_t one_char(struct parser *p)
{
    size_t at = p->pos;
    if (p->pos >= p->len) {
        fail_at(p, at, CELLM_ERR_FORMAT, "unexpected end of input");
        return 0;
    }
    if (p->s[p->pos] == '\\') {
        if (++p->pos >= p->len) {
            fail_at(p, at, CELLM_ERR_FORMAT, "unexpected end of input after '\\'");
            return 0;
        }
        char c = p->s[p->pos++];
        int nhex = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (nhex) {
            uint32_t v = 0;
            for (int i = 0; i < nhex; i++) {
                int h = p->pos < p->len ? hexval(p->s[p->pos]) : -1;
                if (h < 0) {
                    fail_at(p, at, CELLM_ERR_FORMAT, "'\\%c' needs %d hex digits", c, nhex);
                    return 0;
                }
                v = v * 16 + (uint32_t)h;
                p->pos++;
            }
            if (v > 0x10FFFF) {
                fail_at(p, at, CELLM_ERR_FORMAT, "code point U+%X is beyond U+10FFFF", v);
                return 0;
            }
            return v;
        }
        switch (c) {
        case 'n':
            return '\n';
        case 'r':
            return '\r';
        case 't':
            return '\t';
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
        case '/':
        case '^':
            return (uint32_t)c;
        default:
            fail_at(p, at, CELLM_ERR_FORMAT, "unknown escape '\\%c'", c);
            return 0;
        }
    }
    size_t n = cellm_utf8_valid_prefix((const uint8_t *)p->s + p->pos, p->len - p->pos);
    if (n == 0) {
        fail_at(p, at, CELLM_ERR_FORMAT, "invalid UTF-8");
        return 0;
    }
    uint32_t cp;
    p->pos += cellm_utf8_next((const uint8_t *)p->s + p->pos, p->len - p->pos, &cp);
    return cp;
}

static void literal(struct parser *p, struct palt *a)
{
    size_t at = p->pos++;
    while (!p->failed && p->pos < p->len && p->s[p->pos] != '"') {
        uint32_t c = one_char(p);
        if (p->failed) return;
        uint32_t r[2] = {c, c};
        uint32_t k = add_ranges(p, r, 1);
        push(p, a, GE_CHAR, k, 1);
    }
    if (p->pos >= p->len) fail_at(p, at, CELLM_ERR_FORMAT, "unterminated string literal");
    p->pos++;
}

static void char_class(struct parser *p, struct palt *a)
{
    size_t at = p->pos++;
    int neg = p->pos < p->len && p->s[p->pos] == '^';
    if (neg) p->pos++;
    uint32_t *r = NULL;
    size_t n = 0, cap = 0;
    while (!p->failed && p->pos < p->len && p->s[p->pos] != ']') {
        uint32_t lo = one_char(p), hi = lo;
        if (!p->failed && p->pos + 1 < p->len && p->s[p->pos] == '-' && p->s[p->pos + 1] != ']') {
            p->pos++;
            hi = one_char(p);
            if (!p->failed && hi < lo)
                fail_at(p, at, CELLM_ERR_FORMAT, "range U+%X-U+%X is reversed", lo, hi);
        }
        if (p->failed) break;
        if (grow((void **)&r, &cap, 2 * n + 2, sizeof *r)) {
            oom(p);
            break;
        }
        r[2 * n] = lo;
        r[2 * n + 1] = hi;
        n++;
    }
    if (!p->failed && p->pos >= p->len)
        fail_at(p, at, CELLM_ERR_FORMAT, "unterminated character class");
    if (!p->failed && !n) fail_at(p, at, CELLM_ERR_FORMAT, "empty character class");
    if (!p->failed) {
        p->pos++;
        n = cellm_gr_ranges_norm(r, n);
        uint32_t *neg_r = NULL;
        if (neg) {
            neg_r = cellm_malloc((2 * n + 2) * sizeof *neg_r);
            if (!neg_r) {
                oom(p);
            } else {
                n = cellm_gr_ranges_negate(r, n, neg_r);
                if (!n) fail_at(p, at, CELLM_ERR_FORMAT, "the class matches no character");
            }
        }
        if (!p->failed) push(p, a, GE_CHAR, add_ranges(p, neg ? neg_r : r, n), (uint32_t)n);
        cellm_free(neg_r);
    }
    cellm_free(r);
}

static void alternates(struct parser *p, uint32_t rule, int nested);

/* Moves elements a->e[from..] into a new helper rule and leaves one reference to it. */
static uint32_t wrap(struct parser *p, struct palt *a, size_t from, uint32_t rule_of_a,
                     size_t alt_of_a)
{
    long r = new_rule(p, NULL, 0);
    if (r < 0) return 0;
    a = &p->rules[rule_of_a].alts[alt_of_a]; /* new_rule may have moved the rules */
    struct palt *b = new_alt(p, (uint32_t)r);
    a = &p->rules[rule_of_a].alts[alt_of_a];
    if (!b) return 0;
    for (size_t i = from; i < a->n && !p->failed; i++)
        push(p, b, a->e[i].type, a->e[i].a, a->e[i].b);
    a->n = from;
    return (uint32_t)r;
}

static long parse_count(struct parser *p)
{
    long v = -1;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        v = (v < 0 ? 0 : v) * 10 + (p->s[p->pos++] - '0');
        if (v > GR_MAX_REPEAT) v = GR_MAX_REPEAT + 1;
    }
    return v;
}

/* Applies a quantifier to the last item, a->e[from..]: min, max (-1 = unbounded). */
static void repeat(struct parser *p, uint32_t rule, size_t alt, size_t from, long min, long max)
{
    struct palt *a = &p->rules[rule].alts[alt];
    struct gr_elem x;
    if (a->n - from != 1) {
        uint32_t w = wrap(p, a, from, rule, alt);
        if (p->failed) return;
        a = &p->rules[rule].alts[alt];
        push(p, a, GE_REF, w, 0);
    }
    x = a->e[from];
    a->n = from;
    for (long i = 0; i < min && !p->failed; i++)
        push(p, &p->rules[rule].alts[alt], x.type, x.a, x.b);
    if (max == min || p->failed) return;
    long tail = -1; /* the optional rest, built inside out */
    long count = max < 0 ? 1 : max - min;
    for (long i = 0; i < count && !p->failed; i++) {
        long r = new_rule(p, NULL, 0);
        if (r < 0) return;
        struct palt *one = new_alt(p, (uint32_t)r);
        if (!one) return;
        push(p, one, x.type, x.a, x.b);
        if (max < 0)
            push(p, one, GE_REF, (uint32_t)r, 0); /* x* : R ::= x R | empty */
        else if (tail >= 0)
            push(p, one, GE_REF, (uint32_t)tail, 0);
        if (!new_alt(p, (uint32_t)r)) return; /* the empty alternative */
        tail = r;
    }
    if (!p->failed) push(p, &p->rules[rule].alts[alt], GE_REF, (uint32_t)tail, 0);
}

static void sequence(struct parser *p, uint32_t rule, int nested)
{
    struct palt *a0 = new_alt(p, rule);
    if (!a0) return;
    size_t alt = p->rules[rule].n - 1;
    size_t last = (size_t)-1; /* where the last item starts */
#define CUR (&p->rules[rule].alts[alt])
    while (!p->failed && p->pos < p->len) {
        char c = p->s[p->pos];
        size_t at = p->pos, start = CUR->n;
        if (c == '"') {
            literal(p, CUR);
            last = start;
        } else if (c == '[') {
            char_class(p, CUR);
            last = start;
        } else if (c == '.') {
            p->pos++;
            uint32_t any[2] = {0, 0x10FFFF};
            uint32_t k = add_ranges(p, any, 1);
            push(p, CUR, GE_CHAR, k, 1);
            last = start;
        } else if (is_name(c)) {
            size_t b = p->pos;
            while (p->pos < p->len && is_name(p->s[p->pos]))
                p->pos++;
            long r = rule_named(p, p->s + b, p->pos - b, b);
            if (r < 0) return;
            push(p, CUR, GE_REF, (uint32_t)r, 0);
            last = start;
        } else if (c == '(') {
            p->pos++;
            if (++p->depth > 200) {
                fail_at(p, at, CELLM_ERR_RANGE, "parentheses nest deeper than 200");
                return;
            }
            long r = new_rule(p, NULL, 0);
            if (r < 0) return;
            space(p, 1);
            alternates(p, (uint32_t)r, 1);
            p->depth--;
            if (p->failed) return;
            if (p->pos >= p->len || p->s[p->pos] != ')') {
                fail_at(p, at, CELLM_ERR_FORMAT, "'(' is not closed");
                return;
            }
            p->pos++;
            push(p, CUR, GE_REF, (uint32_t)r, 0);
            last = start;
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last == (size_t)-1 || last >= CUR->n) {
                fail_at(p, at, CELLM_ERR_FORMAT, "'%c' follows nothing to repeat", c);
                return;
            }
            long min = 0, max = -1;
            p->pos++;
            if (c == '+') min = 1;
            if (c == '?') max = 1;
            if (c == '{') {
                space(p, 0);
                min = parse_count(p);
                space(p, 0);
                if (min < 0) {
                    fail_at(p, at, CELLM_ERR_FORMAT, "'{' needs a count");
                    return;
                }
                max = min;
                if (p->pos < p->len && p->s[p->pos] == ',') {
                    p->pos++;
                    space(p, 0);
                    max = parse_count(p);
                    space(p, 0);
                }
                if (p->pos >= p->len || p->s[p->pos] != '}') {
                    fail_at(p, at, CELLM_ERR_FORMAT, "'{' is not closed by '}'");
                    return;
                }
                p->pos++;
                if (min > GR_MAX_REPEAT || max > GR_MAX_REPEAT) {
                    fail_at(p, at, CELLM_ERR_RANGE, "a repetition count is above %d",
                            GR_MAX_REPEAT);
                    return;
                }
                if (max >= 0 && max < min) {
                    fail_at(p, at, CELLM_ERR_FORMAT, "{%ld,%ld}: the maximum is below the minimum",
                            min, max);
                    return;
                }
            }
            repeat(p, rule, alt, last, min, max);
            last = (size_t)-1;
        } else {
            break;
        }
        space(p, nested);
    }
#undef CUR
}

static void alternates(struct parser *p, uint32_t rule, int nested)
{
    sequence(p, rule, nested);
    for (;;) {
        if (p->failed) return;
        size_t save = p->pos;
        space(p, 1);
        if (p->pos < p->len && p->s[p->pos] == '|') {
            p->pos++;
            space(p, 1);
            sequence(p, rule, nested);
        } else {
            p->pos = nested ? p->pos : save;
            return;
        }
    }
}

static void parse_all(struct parser *p)
{
    space(p, 1);
    while (!p->failed && p->pos < p->len) {
        size_t b = p->pos;
        while (p->pos < p->len && is_name(p->s[p->pos]))
            p->pos++;
        if (p->pos == b) {
            fail_at(p, b, CELLM_ERR_FORMAT, "expected a rule name");
            return;
        }
        long r = rule_named(p, p->s + b, p->pos - b, b);
        if (r < 0) return;
        if (p->rules[r].defined) {
            fail_at(p, b, CELLM_ERR_FORMAT, "rule '%.*s' is defined twice", (int)(p->pos - b),
                    p->s + b);
            return;
        }
        p->rules[r].defined = 1;
        space(p, 0);
        if (p->len - p->pos < 3 || memcmp(p->s + p->pos, "::=", 3)) {
            fail_at(p, p->pos, CELLM_ERR_FORMAT, "expected '::=' after '%.*s'", (int)(p->pos - b),
                    p->s + b);
            return;
        }
        p->pos += 3;
        space(p, 1);
        alternates(p, (uint32_t)r, 0);
        if (p->failed) return;
        space(p, 0);
        if (p->pos < p->len && p->s[p->pos] != '\n' && p->s[p->pos] != '\r') {
            fail_at(p, p->pos, CELLM_ERR_FORMAT, "unexpected '%c'", p->s[p->pos]);
            return;
        }
        space(p, 1);
    }
}

/* Refuses left recursion: a rule reachable from itself through leftmost references. */
static void check_left_recursion(struct parser *p)
{
    size_t n = p->n_rules;
    char *nullable = cellm_calloc(n + 1, 1), *color = cellm_calloc(n + 1, 1);
    uint32_t *stk = cellm_malloc((n + 1) * 2 * sizeof *stk);
    if (!nullable || !color || !stk) {
        oom(p);
        goto out;
    }
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t r = 0; r < n; r++) {
            if (nullable[r]) continue;
            for (size_t k = 0; k < p->rules[r].n && !nullable[r]; k++) {
                struct palt *a = &p->rules[r].alts[k];
                size_t i = 0;
                while (i < a->n && a->e[i].type == GE_REF && nullable[a->e[i].a])
                    i++;
                if (i == a->n) nullable[r] = changed = 1;
            }
        }
    }
    /* iterative DFS; stk holds (rule, next leftmost edge index as alt*GR_MAX_ELEMS-free) */
    for (size_t s = 0; s < n && !p->failed; s++) {
        if (color[s]) continue;
        size_t top = 0;
        stk[0] = (uint32_t)s;
        stk[1] = 0;
        color[s] = 1;
        while (top != (size_t)-1 && !p->failed) {
            uint32_t r = stk[2 * top], e = stk[2 * top + 1]++;
            /* the e-th leftmost reference of r, enumerated over alternatives */
            uint32_t q = UINT32_MAX, seen = 0;
            for (size_t k = 0; k < p->rules[r].n && q == UINT32_MAX; k++) {
                struct palt *a = &p->rules[r].alts[k];
                for (size_t i = 0; i < a->n && a->e[i].type == GE_REF; i++) {
                    if (seen++ == e) {
                        q = a->e[i].a;
                        break;
                    }
                    if (!nullable[a->e[i].a]) break;
                }
            }
            if (q == UINT32_MAX) {
                color[r] = 2;
                top--;
            } else if (color[q] == 1) {
                const struct prule *pr = &p->rules[q];
                fail_at(p, pr->name ? (size_t)(pr->name - p->s) : 0, CELLM_ERR_FORMAT,
                        "rule '%.*s' is left-recursive (it can reach itself before matching a "
                        "character)",
                        pr->name ? (int)pr->nlen : 7, pr->name ? pr->name : "(group)");
            } else if (!color[q]) {
                color[q] = 1;
                top++;
                stk[2 * top] = q;
                stk[2 * top + 1] = 0;
            }
        }
    }
out:
    cellm_free(nullable);
    cellm_free(color);
    cellm_free(stk);
}

static void free_parser(struct parser *p)
{
    for (size_t i = 0; i < p->n_rules; i++) {
        for (size_t k = 0; k < p->rules[i].n; k++)
            cellm_free(p->rules[i].alts[k].e);
        cellm_free(p->rules[i].alts);
    }
    cellm_free(p->rules);
    cellm_free(p->ranges);
}

enum cellm_status cellm_gr_parse(const char *text, size_t len, struct cellm_grammar **out,
                                 struct cellm_error *err)
{
    *out = NULL;
    struct parser p = {.s = text, .len = len, .err = err};
    parse_all(&p);
    long root = -1;
    for (size_t i = 0; i < p.n_rules && !p.failed; i++) {
        if (p.rules[i].name && !p.rules[i].defined)
            fail_at(&p, p.rules[i].ref_pos, CELLM_ERR_FORMAT, "rule '%.*s' is not defined",
                    (int)p.rules[i].nlen, p.rules[i].name);
        if (p.rules[i].name && p.rules[i].nlen == 4 && !memcmp(p.rules[i].name, "root", 4))
            root = (long)i;
    }
    if (!p.failed && root < 0) fail_at(&p, len, CELLM_ERR_FORMAT, "no 'root' rule");
    if (!p.failed) check_left_recursion(&p);
    struct cellm_grammar *g = NULL;
    if (!p.failed) {
        g = cellm_calloc(1, sizeof *g);
        if (g) {
            atomic_init(&g->refs, 1);
            pthread_mutex_init(&g->mu, NULL);
        }
        size_t nel = 0, nalts = 0;
        for (size_t i = 0; i < p.n_rules; i++) {
            nalts += p.rules[i].n;
            for (size_t k = 0; k < p.rules[i].n; k++)
                nel += p.rules[i].alts[k].n + 1;
        }
        if (g) {
            g->el = cellm_malloc((nel + 1) * sizeof *g->el);
            g->alts = cellm_malloc((nalts + 1) * sizeof *g->alts);
            g->rules = cellm_malloc((p.n_rules + 1) * sizeof *g->rules);
            g->text = cellm_strndup(text, len);
        }
        if (!g || !g->el || !g->alts || !g->rules || !g->text) {
            oom(&p);
        } else {
            for (size_t i = 0; i < p.n_rules; i++) {
                g->rules[i] = (struct gr_rule){(uint32_t)g->n_alts, (uint32_t)p.rules[i].n};
                for (size_t k = 0; k < p.rules[i].n; k++) {
                    g->alts[g->n_alts++] = (uint32_t)g->n_el;
                    struct palt *a = &p.rules[i].alts[k];
                    if (a->n) memcpy(g->el + g->n_el, a->e, a->n * sizeof *a->e);
                    g->n_el += a->n;
                    g->el[g->n_el++] = (struct gr_elem){GE_END, 0, 0};
                }
            }
            g->n_rules = p.n_rules;
            g->root = (uint32_t)root;
            g->ranges = p.ranges;
            g->n_ranges = p.n_ranges / 2;
            p.ranges = NULL;
        }
    }
    free_parser(&p);
    if (p.failed) {
        cellm_grammar_free(g);
        return p.st;
    }
    *out = g;
    return CELLM_OK;
}

struct cellm_grammar *cellm_grammar_ref(struct cellm_grammar *g)
{
    if (g) atomic_fetch_add(&g->refs, 1);
    return g;
}

void cellm_grammar_free(struct cellm_grammar *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) > 1) return;
    for (int i = 0; i < g->n_idle; i++)
        cellm_gr_matcher_destroy(g->idle[i]);
    pthread_mutex_destroy(&g->mu);
    cellm_free(g->el);
    cellm_free(g->ranges);
    cellm_free(g->alts);
    cellm_free(g->rules);
    cellm_free(g->text);
    cellm_free(g);
}

const char *cellm_grammar_text(const struct cellm_grammar *g)
{
    return g ? g->text : NULL;
}
