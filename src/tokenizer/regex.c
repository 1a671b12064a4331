/*
 * regex.c: a backtracking regex engine over code points, for tokenizer patterns.
 *
 * The pattern compiles to a tree (class, sequence, alternation, repeat, lookahead, anchor).
 * Matching is continuation-passing: each node is matched with an explicit, stack-allocated
 * list of what must follow, so backtracking into alternatives and repeats falls out of the
 * C call stack. A repeat of a single class (the common `\p{L}+`) is matched iteratively
 * (count the run, then try the continuation from the longest), so recursion depth follows
 * the pattern, not the text. Each class keeps a 128-bit bitmap for ASCII so most tests are
 * one bit lookup.
 *
 * Hostile patterns (tokenizer.json is input too): nesting is bounded at compile time
 * (CELLM_REGEX_MAX_NEST), each match attempt has a step budget (exponential backtracking
 * fails with an error naming the pattern instead of spinning), the recursion checks the
 * real stack of the calling thread rather than assuming a size, and a cancellation flag
 * is polled.
 */
#include "tokenizer/regex.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/unicode.h"

enum { R_CLASS, R_SEQ, R_ALT, R_REP, R_LOOK, R_BOL, R_EOL };

struct rclass {
    uint64_t ascii[2]; /* answer for code points below 128 */
    int neg, icase, any;
    uint32_t cats;     /* bit per general category that matches */
    uint32_t ncats[8]; /* \P{..} items: match when the category is outside the mask */
    int nncats;
    int space, nspace, word, nword, digit, ndigit;
    uint32_t *r; /* ranges as (lo, hi) pairs */
    size_t nr;
};

struct rnode {
    int kind;
    struct rnode **kids;
    size_t nkids;
    int min, max, greedy, neg;
    struct rclass cls;
};

struct cellm_regex {
    struct rnode *root;
    char src[80]; /* the pattern (cut), for messages */
};

/* ---- compile -------------------------------------------------------------------------- */

struct parser {
    const uint32_t *p;
    size_t n, i;
    int nest; /* groups and quantifiers open around the current point */
    const char *what;
    struct cellm_error *err;
    enum cellm_status st;
};

#define STR_(x) #x
#define STR(x) STR_(x)

static void node_free(struct rnode *nd)
{
    if (!nd) return;
    for (size_t i = 0; i < nd->nkids; i++)
        node_free(nd->kids[i]);
    cellm_free(nd->kids);
    cellm_free(nd->cls.r);
    cellm_free(nd);
}

static struct rnode *node_new(struct parser *ps, int kind)
{
    struct rnode *nd = cellm_calloc(1, sizeof *nd);
    if (!nd)
        ps->st = cellm_errf(ps->err, CELLM_ERR_NOMEM, "%s: out of memory", ps->what);
    else
        nd->kind = kind;
    return nd;
}

static int add_kid(struct parser *ps, struct rnode *nd, struct rnode *kid)
{
    struct rnode **k = cellm_realloc(nd->kids, (nd->nkids + 1) * sizeof *k);
    if (!k) {
        node_free(kid);
        ps->st = cellm_errf(ps->err, CELLM_ERR_NOMEM, "%s: out of memory", ps->what);
        return 0;
    }
    nd->kids = k;
    nd->kids[nd->nkids++] = kid;
    return 1;
}

static int add_range(struct parser *ps, struct rclass *c, uint32_t lo, uint32_t hi)
{
    uint32_t *r = cellm_realloc(c->r, (c->nr + 1) * 2 * sizeof *r);
    if (!r) {
        ps->st = cellm_errf(ps->err, CELLM_ERR_NOMEM, "%s: out of memory", ps->what);
        return 0;
    }
    c->r = r;
    c->r[2 * c->nr] = lo;
    c->r[2 * c->nr + 1] = hi;
    c->nr++;
    return 1;
}

static int fail(struct parser *ps, const char *msg)
{
    ps->st = cellm_errf(ps->err, CELLM_ERR_UNSUPPORTED, "%s: regex %s at character %zu", ps->what,
                        msg, ps->i);
    return 0;
}

static uint32_t cat_mask(const uint32_t *name, size_t len)
{
    static const char *names[] = {"Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd",
                                  "Nl", "No", "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm",
                                  "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
    if (len == 1 || len == 2) {
        uint32_t m = 0;
        for (int c = 0; c < 30; c++)
            if (names[c][0] == (char)name[0] && (len == 1 || names[c][1] == (char)name[1]))
                m |= 1u << c;
        if (len == 2 && name[1] == '&' && name[0] == 'L') /* L& = Lu Ll Lt */
            m = (1u << CELLM_UC_Lu) | (1u << CELLM_UC_Ll) | (1u << CELLM_UC_Lt);
        return m;
    }
    return 0;
}

static int hexval(uint32_t c)
{
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if ((c | 32) >= 'a' && (c | 32) <= 'f') return (int)((c | 32) - 'a' + 10);
    return -1;
}

/* Parses an escape after '\' into class c (for \s \p etc.) or *lit (a single character).
 * Returns 1 for a class item, 2 for a literal, 0 on error. */
static int parse_escape(struct parser *ps, struct rclass *c, uint32_t *lit)
{
    if (ps->i >= ps->n) return fail(ps, "ends with a backslash");
    uint32_t e = ps->p[ps->i++];
    switch (e) {
    case 'n':
        *lit = '\n';
        return 2;
    case 'r':
        *lit = '\r';
        return 2;
    case 't':
        *lit = '\t';
        return 2;
    case 'f':
        *lit = '\f';
        return 2;
    case 'v':
        *lit = '\v';
        return 2;
    case 'a':
        *lit = 7;
        return 2;
    case 'e':
        *lit = 27;
        return 2;
    case 's':
        c->space = 1;
        return 1;
    case 'S':
        c->nspace = 1;
        return 1;
    case 'd':
        c->digit = 1;
        return 1;
    case 'D':
        c->ndigit = 1;
        return 1;
    case 'w':
        c->word = 1;
        return 1;
    case 'W':
        c->nword = 1;
        return 1;
    case 'x':
    case 'u': {
        uint32_t v = 0;
        int digits = 0, brace = ps->i < ps->n && ps->p[ps->i] == '{';
        if (brace) ps->i++;
        int maxd = brace ? 8 : (e == 'x' ? 2 : 4);
        while (ps->i < ps->n && digits < maxd && hexval(ps->p[ps->i]) >= 0) {
            v = v * 16 + (uint32_t)hexval(ps->p[ps->i++]);
            digits++;
        }
        if (brace && (ps->i >= ps->n || ps->p[ps->i++] != '}'))
            return fail(ps, "has an unterminated \\x{");
        if (!digits || v > 0x10FFFF) return fail(ps, "has a bad hex escape");
        *lit = v;
        return 2;
    }
    case 'p':
    case 'P': {
        int neg = e == 'P';
        const uint32_t *name;
        size_t len;
        if (ps->i < ps->n && ps->p[ps->i] == '{') {
            size_t s = ++ps->i;
            while (ps->i < ps->n && ps->p[ps->i] != '}')
                ps->i++;
            if (ps->i >= ps->n) return fail(ps, "has an unterminated \\p{");
            name = ps->p + s;
            len = ps->i++ - s;
            if (len && name[0] == '^') {
                neg = !neg;
                name++;
                len--;
            }
        } else {
            if (ps->i >= ps->n) return fail(ps, "ends inside \\p");
            name = ps->p + ps->i++;
            len = 1;
        }
        uint32_t m = cat_mask(name, len);
        if (!m) return fail(ps, "uses an unsupported property \\p{...}");
        if (!neg) {
            c->cats |= m;
        } else {
            if (c->nncats == 8) return fail(ps, "has too many \\P items in one class");
            c->ncats[c->nncats++] = m;
        }
        return 1;
    }
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))
            return fail(ps, "uses an unsupported escape");
        *lit = e;
        return 2;
    }
}

static int class_test(const struct rclass *c, uint32_t cp);

static void class_finish(struct rclass *c)
{
    memset(c->ascii, 0, sizeof c->ascii);
    for (uint32_t cp = 0; cp < 128; cp++)
        if (class_test(c, cp)) c->ascii[cp >> 6] |= 1ull << (cp & 63);
}

static int parse_class(struct parser *ps, struct rclass *c)
{
    if (ps->i < ps->n && ps->p[ps->i] == '^') {
        c->neg = 1;
        ps->i++;
    }
    int first = 1;
    for (;;) {
        if (ps->i >= ps->n) return fail(ps, "has an unterminated [");
        uint32_t ch = ps->p[ps->i++];
        if (ch == ']' && !first) break;
        first = 0;
        uint32_t lo;
        if (ch == '[') return fail(ps, "uses a nested class");
        if (ch == '\\') {
            int k = parse_escape(ps, c, &lo);
            if (!k) return 0;
            if (k == 1) continue;
        } else {
            lo = ch;
        }
        uint32_t hi = lo;
        if (ps->i + 1 < ps->n && ps->p[ps->i] == '-' && ps->p[ps->i + 1] != ']') {
            ps->i++;
            uint32_t h = ps->p[ps->i++];
            if (h == '\\') {
                struct rclass dummy = {0};
                if (parse_escape(ps, &dummy, &h) != 2) return fail(ps, "has a bad range end");
            }
            hi = h;
            if (hi < lo) return fail(ps, "has a reversed range");
        }
        if (!add_range(ps, c, lo, hi)) return 0;
    }
    return 1;
}

static struct rnode *parse_alt(struct parser *ps, int icase);

static struct rnode *parse_atom(struct parser *ps, int *icase)
{
    uint32_t ch = ps->p[ps->i++];
    struct rnode *nd;
    if (ch == '(') {
        int ic = *icase, look = 0, neg = 0;
        if (ps->i < ps->n && ps->p[ps->i] == '?') {
            ps->i++;
            uint32_t k = ps->i < ps->n ? ps->p[ps->i++] : 0;
            if (k == ':') {
            } else if (k == '=' || k == '!') {
                look = 1;
                neg = k == '!';
            } else if (k == 'i' || k == '-') {
                int on = k == 'i';
                if (k == '-') {
                    if (ps->i >= ps->n || ps->p[ps->i++] != 'i')
                        return fail(ps, "uses an unsupported group flag"), NULL;
                }
                uint32_t t = ps->i < ps->n ? ps->p[ps->i++] : 0;
                if (t == ')') { /* (?i) applies to the rest of the enclosing group */
                    *icase = on;
                    return node_new(ps, R_SEQ);
                }
                if (t != ':') return fail(ps, "uses an unsupported group flag"), NULL;
                ic = on;
            } else {
                return fail(ps, "uses an unsupported group kind"), NULL;
            }
        }
        if (++ps->nest > CELLM_REGEX_MAX_NEST)
            return fail(ps, "nests groups deeper than the limit of " STR(CELLM_REGEX_MAX_NEST)),
                   NULL;
        struct rnode *inner = parse_alt(ps, ic);
        ps->nest--;
        if (!inner) return NULL;
        if (ps->i >= ps->n || ps->p[ps->i] != ')') {
            node_free(inner);
            return fail(ps, "has an unbalanced ("), NULL;
        }
        ps->i++;
        if (!look) return inner;
        nd = node_new(ps, R_LOOK);
        if (!nd || !add_kid(ps, nd, inner)) {
            if (!nd) node_free(inner);
            node_free(nd);
            return NULL;
        }
        nd->neg = neg;
        return nd;
    }
    if (ch == '^' || ch == '$') return node_new(ps, ch == '^' ? R_BOL : R_EOL);
    nd = node_new(ps, R_CLASS);
    if (!nd) return NULL;
    struct rclass *c = &nd->cls;
    c->icase = *icase;
    int ok = 1;
    if (ch == '[') {
        ok = parse_class(ps, c);
    } else if (ch == '.') {
        c->any = 1;
    } else if (ch == '\\') {
        uint32_t lit;
        int k = parse_escape(ps, c, &lit);
        ok = k && (k == 1 || add_range(ps, c, lit, lit));
    } else if (ch == ')' || ch == '*' || ch == '+' || ch == '?' || ch == '{') {
        ok = fail(ps, "has a misplaced metacharacter");
    } else {
        ok = add_range(ps, c, ch, ch);
    }
    if (!ok) {
        node_free(nd);
        return NULL;
    }
    class_finish(c);
    return nd;
}

static int parse_int(struct parser *ps, int *v)
{
    size_t s = ps->i;
    long x = 0;
    while (ps->i < ps->n && ps->p[ps->i] >= '0' && ps->p[ps->i] <= '9' && x < 100000)
        x = x * 10 + (long)(ps->p[ps->i++] - '0');
    *v = (int)x;
    return ps->i > s;
}

static struct rnode *parse_seq(struct parser *ps, int icase)
{
    struct rnode *seq = node_new(ps, R_SEQ);
    if (!seq) return NULL;
    while (ps->i < ps->n && ps->p[ps->i] != '|' && ps->p[ps->i] != ')') {
        struct rnode *a = parse_atom(ps, &icase);
        int wraps = 0;
        if (!a) {
            node_free(seq);
            return NULL;
        }
        while (ps->i < ps->n) {
            uint32_t q = ps->p[ps->i];
            int min, max;
            if (q == '?' || q == '*' || q == '+') {
                min = q == '+';
                max = q == '?' ? 1 : -1;
                ps->i++;
            } else if (q == '{') {
                size_t save = ps->i++;
                if (!parse_int(ps, &min)) {
                    ps->i = save;
                    break;
                }
                max = min;
                if (ps->i < ps->n && ps->p[ps->i] == ',') {
                    ps->i++;
                    if (!parse_int(ps, &max)) max = -1;
                }
                if (ps->i >= ps->n || ps->p[ps->i] != '}' || (max >= 0 && max < min)) {
                    node_free(a);
                    node_free(seq);
                    return fail(ps, "has a bad {n,m} quantifier"), NULL;
                }
                ps->i++;
            } else {
                break;
            }
            if (++wraps + ps->nest > CELLM_REGEX_MAX_NEST) {
                node_free(a);
                node_free(seq);
                return fail(ps, "stacks quantifiers deeper than the limit of " STR(
                                    CELLM_REGEX_MAX_NEST)),
                       NULL;
            }
            struct rnode *r = node_new(ps, R_REP);
            if (!r || !add_kid(ps, r, a)) {
                if (!r) node_free(a);
                node_free(r);
                node_free(seq);
                return NULL;
            }
            r->min = min;
            r->max = max;
            r->greedy = 1;
            if (ps->i < ps->n && ps->p[ps->i] == '?') {
                r->greedy = 0;
                ps->i++;
            } else if (ps->i < ps->n && ps->p[ps->i] == '+') {
                node_free(r);
                node_free(seq);
                return fail(ps, "uses a possessive quantifier"), NULL;
            }
            a = r;
        }
        if (!add_kid(ps, seq, a)) {
            node_free(seq);
            return NULL;
        }
    }
    return seq;
}

static struct rnode *parse_alt(struct parser *ps, int icase)
{
    struct rnode *first = parse_seq(ps, icase);
    if (!first || ps->i >= ps->n || ps->p[ps->i] != '|') return first;
    struct rnode *alt = node_new(ps, R_ALT);
    if (!alt || !add_kid(ps, alt, first)) {
        if (!alt) node_free(first);
        node_free(alt);
        return NULL;
    }
    while (ps->i < ps->n && ps->p[ps->i] == '|') {
        ps->i++;
        struct rnode *s = parse_seq(ps, icase);
        if (!s || !add_kid(ps, alt, s)) {
            node_free(alt);
            return NULL;
        }
    }
    return alt;
}

enum cellm_status cellm_regex_compile(const char *pat, const char *what, struct cellm_regex **out,
                                      struct cellm_error *err)
{
    size_t len = strlen(pat);
    uint32_t *cps = cellm_malloc((len + 1) * sizeof *cps);
    if (!cps) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += cellm_utf8_next((const uint8_t *)pat + i, len - i, &cp);
        if (cp == 0xFFFFFFFF) {
            cellm_free(cps);
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: regex is not valid UTF-8", what);
        }
        cps[n++] = cp;
    }
    struct parser ps = {.p = cps, .n = n, .what = what, .err = err, .st = CELLM_OK};
    struct rnode *root = parse_alt(&ps, 0);
    if (root && ps.i < n) {
        node_free(root);
        root = NULL;
        fail(&ps, "has an unbalanced )");
    }
    cellm_free(cps);
    if (!root) return ps.st;
    struct cellm_regex *re = cellm_malloc(sizeof *re);
    if (!re) {
        node_free(root);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    }
    re->root = root;
    if (len < sizeof re->src)
        snprintf(re->src, sizeof re->src, "%s", pat);
    else
        snprintf(re->src, sizeof re->src, "%.*s...", (int)sizeof re->src - 4, pat);
    *out = re;
    return CELLM_OK;
}

void cellm_regex_free(struct cellm_regex *re)
{
    if (!re) return;
    node_free(re->root);
    cellm_free(re);
}

/* ---- match ---------------------------------------------------------------------------- */

static int class_test(const struct rclass *c, uint32_t cp)
{
    int hit = 0;
    if (c->any) {
        hit = cp != '\n';
    } else {
        for (int pass = 0; pass < (c->icase ? 2 : 1) && !hit; pass++) {
            uint32_t x = pass ? cellm_uni_fold(cp) : cp;
            for (size_t i = 0; i < c->nr && !hit; i++) {
                uint32_t lo = c->r[2 * i], hi = c->r[2 * i + 1];
                hit = (x >= lo && x <= hi) ||
                      (c->icase && lo == hi && cellm_uni_fold(lo) == cellm_uni_fold(x));
            }
        }
        if (!hit && (c->cats || c->nncats)) {
            int cat = cellm_uni_cat(cp);
            hit = (c->cats >> cat) & 1;
            for (int i = 0; i < c->nncats && !hit; i++)
                hit = !((c->ncats[i] >> cat) & 1);
        }
        if (!hit && (c->space || c->nspace)) {
            int s = cellm_uni_is_space(cp);
            hit = (c->space && s) || (c->nspace && !s);
        }
        if (!hit && (c->digit || c->ndigit)) {
            int d = cellm_uni_cat(cp) == CELLM_UC_Nd;
            hit = (c->digit && d) || (c->ndigit && !d);
        }
        if (!hit && (c->word || c->nword)) {
            int cat = cellm_uni_cat(cp);
            int w = cp == '_' || (cat >= CELLM_UC_Lu && cat <= CELLM_UC_Nd) || cat == CELLM_UC_Pc;
            hit = (c->word && w) || (c->nword && !w);
        }
    }
    return hit ^ c->neg;
}

static inline int class_match(const struct rclass *c, uint32_t cp)
{
    if (cp < 128) return (int)((c->ascii[cp >> 6] >> (cp & 63)) & 1);
    return class_test(c, cp);
}

enum { K_SEQ, K_REP, K_LOOK };

struct cont {
    int kind;
    const struct rnode *n;
    size_t idx; /* K_SEQ: next child; K_REP: iterations done */
    size_t start;
    const struct cont *next;
};

struct mctx {
    const uint32_t *s;
    size_t n, end;
    int overflow;          /* 1: stack, 2: step budget, 3: cancelled */
    uint64_t steps, limit; /* steps of this attempt and its budget */
    uintptr_t floor;       /* recursion stops when the frame address falls below */
    const _Atomic int *cancel;
};

/* Room kept free at the end of the stack: what a frame chain below match() may still
 * need (the allocator, libc, a sanitizer's report). */
#define STACK_RESERVE ((uintptr_t)128 << 10)

/* The lowest address match() may recurse to on this thread: its real stack's end plus
 * STACK_RESERVE (server threads, the CLI's main thread and test threads differ in size).
 * Cached per thread: the stack of a thread does not move. */
static uintptr_t stack_floor(void)
{
    static _Thread_local uintptr_t cached;
    if (cached) return cached;
    uintptr_t here = (uintptr_t)__builtin_frame_address(0), lo = 0;
    size_t size = 0;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        void *addr = NULL;
        if (pthread_attr_getstack(&a, &addr, &size) == 0) lo = (uintptr_t)addr;
        pthread_attr_destroy(&a);
    }
    /* unknown: assume the smallest stack cellm starts threads with (256 KiB) */
    if (!lo || lo >= here) lo = here > ((uintptr_t)256 << 10) ? here - ((uintptr_t)256 << 10) : 0;
    uintptr_t reserve = (here - lo) / 4 < STACK_RESERVE ? (here - lo) / 4 : STACK_RESERVE;
    cached = lo + reserve;
    return cached;
}

static int match(struct mctx *m, const struct rnode *nd, size_t pos, const struct cont *k);

static int run_cont(struct mctx *m, const struct cont *k, size_t pos);

static int rep_iter(struct mctx *m, const struct rnode *nd, size_t count, size_t pos,
                    const struct cont *k)
{
    int can_more = nd->max < 0 || count < (size_t)nd->max;
    struct cont kk = {K_REP, nd, count + 1, pos, k};
    if (nd->greedy) {
        if (can_more && match(m, nd->kids[0], pos, &kk)) return 1;
        return count >= (size_t)nd->min && run_cont(m, k, pos);
    }
    if (count >= (size_t)nd->min && run_cont(m, k, pos)) return 1;
    return can_more && match(m, nd->kids[0], pos, &kk);
}

static int run_cont(struct mctx *m, const struct cont *k, size_t pos)
{
    if (!k) {
        m->end = pos;
        return 1;
    }
    switch (k->kind) {
    case K_SEQ:
        if (k->idx == k->n->nkids) return run_cont(m, k->next, pos);
        {
            struct cont kk = {K_SEQ, k->n, k->idx + 1, 0, k->next};
            return match(m, k->n->kids[k->idx], pos, &kk);
        }
    case K_REP:
        if (pos == k->start && k->idx > (size_t)k->n->min)
            return 0; /* an empty iteration beyond the minimum cannot make progress */
        return rep_iter(m, k->n, k->idx, pos, k->next);
    default: /* K_LOOK: the lookahead's body matched */
        return 1;
    }
}

static int match(struct mctx *m, const struct rnode *nd, size_t pos, const struct cont *k)
{
    if (m->overflow) return 0;
    if ((uintptr_t)__builtin_frame_address(0) < m->floor) {
        m->overflow = 1;
        return 0;
    }
    if (++m->steps > m->limit) {
        m->overflow = 2;
        return 0;
    }
    if (!(m->steps & 0xFFFF) && m->cancel &&
        atomic_load_explicit(m->cancel, memory_order_relaxed)) {
        m->overflow = 3;
        return 0;
    }
    int r = 0;
    switch (nd->kind) {
    case R_CLASS:
        r = pos < m->n && class_match(&nd->cls, m->s[pos]) && run_cont(m, k, pos + 1);
        break;
    case R_SEQ:
        if (nd->nkids == 0) {
            r = run_cont(m, k, pos);
        } else {
            struct cont kk = {K_SEQ, nd, 1, 0, k};
            r = match(m, nd->kids[0], pos, &kk);
        }
        break;
    case R_ALT:
        for (size_t i = 0; i < nd->nkids && !r && !m->overflow; i++)
            r = match(m, nd->kids[i], pos, k);
        break;
    case R_REP:
        if (nd->kids[0]->kind == R_CLASS) {
            const struct rclass *c = &nd->kids[0]->cls;
            size_t lim = nd->max < 0 ? m->n - pos : (size_t)nd->max;
            size_t cnt = 0;
            if (nd->greedy) {
                while (cnt < lim && pos + cnt < m->n && class_match(c, m->s[pos + cnt]))
                    cnt++;
                m->steps += cnt; /* the run is work too: quadratic searches must show */
                for (size_t j = cnt + 1; j-- > (size_t)nd->min && !r && !m->overflow;)
                    r = run_cont(m, k, pos + j);
            } else {
                for (;;) {
                    if (cnt >= (size_t)nd->min && (r = run_cont(m, k, pos + cnt))) break;
                    if (m->overflow || cnt >= lim || pos + cnt >= m->n ||
                        !class_match(c, m->s[pos + cnt]))
                        break;
                    cnt++;
                }
            }
        } else {
            r = rep_iter(m, nd, 0, pos, k);
        }
        break;
    case R_LOOK: {
        struct cont acc = {K_LOOK, nd, 0, 0, NULL};
        size_t save = m->end;
        int hit = match(m, nd->kids[0], pos, &acc);
        m->end = save;
        r = hit != nd->neg && run_cont(m, k, pos);
        break;
    }
    case R_BOL:
        r = (pos == 0 || m->s[pos - 1] == '\n') && run_cont(m, k, pos);
        break;
    default: /* R_EOL */
        r = (pos == m->n || m->s[pos] == '\n') && run_cont(m, k, pos);
        break;
    }
    return r;
}

enum cellm_status cellm_regex_find_all(const struct cellm_regex *re, const uint32_t *cps, size_t n,
                                       const struct cellm_regex_limits *lim, size_t **spans,
                                       size_t *nmatch, struct cellm_error *err)
{
    size_t cap = 16, cnt = 0;
    size_t *sp = cellm_malloc(cap * 2 * sizeof *sp);
    if (!sp) return cellm_errf(err, CELLM_ERR_NOMEM, "regex: out of memory");
    struct mctx m = {.s = cps, .n = n, .floor = stack_floor()};
    m.limit = lim && lim->match_steps ? lim->match_steps : CELLM_REGEX_STEPS;
    m.cancel = lim ? lim->cancel : NULL;
    /* the whole search too: each attempt within its budget can still add up to a
     * quadratic search (a long run that fails at its end, tried from every position) */
    uint64_t total = 0, total_limit = m.limit + (uint64_t)n * CELLM_REGEX_STEPS_PER_CHAR;
    for (size_t pos = 0; pos < n;) {
        m.steps = 0;
        int hit = match(&m, re->root, pos, NULL);
        total += m.steps;
        if (total > total_limit) m.overflow = 2;
        if (!hit || m.end == pos || m.overflow) {
            if (m.overflow) {
                cellm_free(sp);
                if (m.overflow == 3) return cellm_errf(err, CELLM_ERR_CANCELLED, "cancelled");
                if (m.overflow == 2)
                    return cellm_errf(
                        err, CELLM_ERR_RANGE,
                        "regex /%s/ ran out of its budget of %llu backtracking "
                        "steps at character %zu (the pattern backtracks "
                        "exponentially on this input)",
                        re->src, (unsigned long long)(total > total_limit ? total_limit : m.limit),
                        pos);
                return cellm_errf(err, CELLM_ERR_RANGE,
                                  "regex /%s/ recursed to the end of the thread's stack at "
                                  "character %zu (the input is too long for this pattern)",
                                  re->src, pos);
            }
            pos++;
            continue;
        }
        if (cnt == cap) {
            cap *= 2;
            size_t *t = cellm_realloc(sp, cap * 2 * sizeof *t);
            if (!t) {
                cellm_free(sp);
                return cellm_errf(err, CELLM_ERR_NOMEM, "regex: out of memory");
            }
            sp = t;
        }
        sp[2 * cnt] = pos;
        sp[2 * cnt + 1] = m.end;
        cnt++;
        pos = m.end;
        if (lim && lim->max_matches && cnt > lim->max_matches) {
            cellm_free(sp);
            return cellm_errf(err, CELLM_ERR_RANGE, "regex: more than %zu matches (stopped there)",
                              lim->max_matches);
        }
    }
    *spans = sp;
    *nmatch = cnt;
    return CELLM_OK;
}
