/*
 * jinja_parse.c: builds the statement and expression tree of a chat template.
 *
 * A recursive-descent parser over the lexer's tokens with Jinja2's precedence, loosest
 * first: inline if/else, or, and, not, comparisons (chained like Python's), + and -, ~,
 * * / // %, **, unary - and +, then postfix access (.name, [index], [a:b:c], calls), and
 * last filters (|f) and tests (is t), so that `a + b|trim` trims b only. Every node keeps
 * the line:column of its first token for messages. Names of filters and tests are resolved
 * here, so a template that needs one we lack is refused before anything renders; tags we do
 * not implement (extends, include, import, call, filter, with...) are refused the same way.
 * Nesting is bounded so that hostile input cannot exhaust the stack.
 */
#include <stdio.h>
#include <string.h>

#include "template/jinja_impl.h"

typedef struct cellm_jinja_node node;

struct parser {
    struct cellm_jinja_arena *arena;
    const struct cellm_jinja_token *t;
    size_t i, n;
    int depth, loops;
    struct cellm_error *err;
};

static const struct cellm_jinja_token *cur(struct parser *p)
{
    return &p->t[p->i];
}

static enum cellm_status fail(struct parser *p, enum cellm_status st, const char *fmt,
                              const char *arg, size_t arglen)
{
    const struct cellm_jinja_token *t = cur(p);
    char what[200];
    snprintf(what, sizeof what, fmt, (int)(arglen > 60 ? 60 : arglen), arg ? arg : "");
    return cellm_errf(p->err, st, "chat template %d:%d: %s", t->line, t->col, what);
}

static int is_op(struct parser *p, const char *op)
{
    const struct cellm_jinja_token *t = cur(p);
    return t->kind == TK_OP && t->len == strlen(op) && memcmp(t->s, op, t->len) == 0;
}
static int is_name(struct parser *p, const char *name)
{
    const struct cellm_jinja_token *t = cur(p);
    return t->kind == TK_NAME && t->len == strlen(name) && memcmp(t->s, name, t->len) == 0;
}
static int is_name_at(struct parser *p, size_t k, const char *name)
{
    if (p->i + k >= p->n) return 0;
    const struct cellm_jinja_token *t = &p->t[p->i + k];
    return t->kind == TK_NAME && t->len == strlen(name) && memcmp(t->s, name, t->len) == 0;
}

static enum cellm_status expect_op(struct parser *p, const char *op)
{
    if (!is_op(p, op)) return fail(p, CELLM_ERR_FORMAT, "expected '%.*s'", op, strlen(op));
    p->i++;
    return CELLM_OK;
}
static enum cellm_status expect_end(struct parser *p)
{
    if (cur(p)->kind != TK_BLOCK_END)
        return fail(p, CELLM_ERR_FORMAT, "expected end of tag '%%}'%.*s", "", 0);
    p->i++;
    return CELLM_OK;
}

static enum cellm_status mk(struct parser *p, int kind, node **out)
{
    node *n = cellm_jinja_alloc(p->arena, sizeof *n);
    if (!n) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = cur(p)->line;
    n->col = cur(p)->col;
    *out = n;
    return CELLM_OK;
}

/* Growable node-pointer and name arrays in the arena. */
struct vec {
    node **v;
    const char **names;
    int n, cap;
};
static enum cellm_status vec_push(struct parser *p, struct vec *v, node *x, const char *name)
{
    if (v->n == v->cap) {
        int cap = v->cap ? v->cap * 2 : 4;
        node **nv = cellm_jinja_alloc(p->arena, (size_t)cap * sizeof *nv);
        const char **nn = cellm_jinja_alloc(p->arena, (size_t)cap * sizeof *nn);
        if (!nv || !nn) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
        if (v->n) {
            memcpy(nv, v->v, (size_t)v->n * sizeof *nv);
            memcpy(nn, v->names, (size_t)v->n * sizeof *nn);
        }
        v->v = nv;
        v->names = nn;
        v->cap = cap;
    }
    v->v[v->n] = x;
    v->names[v->n] = name;
    v->n++;
    return CELLM_OK;
}

static const char *name_dup(struct parser *p, const struct cellm_jinja_token *t)
{
    char *s = cellm_jinja_alloc(p->arena, t->len + 1);
    if (s) {
        memcpy(s, t->s, t->len);
        s[t->len] = 0;
    }
    return s;
}

static enum cellm_status parse_expr(struct parser *p, int with_cond, node **out);
static enum cellm_status parse_unary(struct parser *p, int with_filter, node **out);

static enum cellm_status enter(struct parser *p)
{
    if (++p->depth > JINJA_MAX_DEPTH)
        return fail(p, CELLM_ERR_RANGE, "template nested too deeply%.*s", "", 0);
    return CELLM_OK;
}

/* Arguments of a call, filter or test: "(" [expr | name=expr] {"," ...} ")". */
static enum cellm_status parse_args(struct parser *p, node *n)
{
    struct vec v = {0};
    CELLM_TRY(expect_op(p, "("));
    while (!is_op(p, ")")) {
        if (v.n) CELLM_TRY(expect_op(p, ","));
        if (is_op(p, ")")) break;
        if (is_op(p, "*") || is_op(p, "**"))
            return fail(p, CELLM_ERR_UNSUPPORTED, "unsupported: *args and **kwargs in calls%.*s",
                        "", 0);
        const char *kw = NULL;
        if (cur(p)->kind == TK_NAME && p->i + 1 < p->n && p->t[p->i + 1].kind == TK_OP &&
            p->t[p->i + 1].len == 1 && p->t[p->i + 1].s[0] == '=') {
            kw = name_dup(p, cur(p));
            if (!kw) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
            p->i += 2;
        } else {
            for (int k = 0; k < v.n; k++)
                if (v.names[k])
                    return fail(p, CELLM_ERR_FORMAT,
                                "positional argument follows keyword argument%.*s", "", 0);
        }
        node *a;
        CELLM_TRY(parse_expr(p, 1, &a));
        CELLM_TRY(vec_push(p, &v, a, kw));
    }
    p->i++;
    n->kids = v.v;
    n->names = v.names;
    n->nkids = v.n;
    return CELLM_OK;
}

/* Comma-separated expressions up to a closing op; into a list/dict node. */
static enum cellm_status parse_seq(struct parser *p, node *n, const char *close, int dict)
{
    struct vec v = {0};
    while (!is_op(p, close)) {
        if (v.n) CELLM_TRY(expect_op(p, ","));
        if (is_op(p, close)) break;
        node *a;
        CELLM_TRY(parse_expr(p, 1, &a));
        CELLM_TRY(vec_push(p, &v, a, NULL));
        if (dict) {
            CELLM_TRY(expect_op(p, ":"));
            CELLM_TRY(parse_expr(p, 1, &a));
            CELLM_TRY(vec_push(p, &v, a, NULL));
        }
    }
    p->i++;
    n->kids = v.v;
    n->nkids = v.n;
    return CELLM_OK;
}

static enum cellm_status parse_primary(struct parser *p, node **out)
{
    const struct cellm_jinja_token *t = cur(p);
    node *n;
    CELLM_TRY(mk(p, NK_LIT, &n));
    switch (t->kind) {
    case TK_NAME:
        p->i++;
        if (t->len == 4 && (!memcmp(t->s, "true", 4) || !memcmp(t->s, "True", 4)))
            n->lit = cellm_jinja_bool(1);
        else if (t->len == 5 && (!memcmp(t->s, "false", 5) || !memcmp(t->s, "False", 5)))
            n->lit = cellm_jinja_bool(0);
        else if (t->len == 4 && (!memcmp(t->s, "none", 4) || !memcmp(t->s, "None", 4)))
            n->lit = cellm_jinja_none();
        else {
            n->kind = NK_NAME;
            n->name = t->s;
            n->name_len = t->len;
        }
        break;
    case TK_STRING: {
        size_t total = 0, k = p->i;
        for (; p->t[k].kind == TK_STRING; k++)
            total += p->t[k].len;
        if (k == p->i + 1) {
            n->lit = cellm_jinja_str(t->s, t->len);
        } else {
            char *s = cellm_jinja_alloc(p->arena, total + 1);
            if (!s) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
            size_t o = 0;
            for (size_t j = p->i; j < k; j++) {
                memcpy(s + o, p->t[j].s, p->t[j].len);
                o += p->t[j].len;
            }
            s[o] = 0;
            n->lit = cellm_jinja_str(s, total);
        }
        p->i = k;
        break;
    }
    case TK_INT:
        n->lit = cellm_jinja_int(t->i);
        p->i++;
        break;
    case TK_FLOAT:
        n->lit = (jval){.kind = JV_FLOAT};
        n->lit.u.f = t->f;
        p->i++;
        break;
    case TK_OP:
        if (is_op(p, "(")) {
            p->i++;
            n->kind = NK_LIST;
            struct vec v = {0};
            int comma = 0;
            while (!is_op(p, ")")) {
                if (v.n) {
                    CELLM_TRY(expect_op(p, ","));
                    comma = 1;
                }
                if (is_op(p, ")")) break;
                node *a;
                CELLM_TRY(parse_expr(p, 1, &a));
                CELLM_TRY(vec_push(p, &v, a, NULL));
            }
            p->i++;
            if (v.n == 1 && !comma) {
                *out = v.v[0];
                return CELLM_OK;
            }
            n->kids = v.v;
            n->nkids = v.n;
            n->op = JV_TUPLE;
            break;
        }
        if (is_op(p, "[")) {
            p->i++;
            n->kind = NK_LIST;
            CELLM_TRY(parse_seq(p, n, "]", 0));
            break;
        }
        if (is_op(p, "{")) {
            p->i++;
            n->kind = NK_DICT;
            CELLM_TRY(parse_seq(p, n, "}", 1));
            break;
        }
        return fail(p, CELLM_ERR_FORMAT, "unexpected '%.*s'", t->s, t->len);
    default:
        return fail(p, CELLM_ERR_FORMAT, "unexpected end of expression%.*s", "", 0);
    }
    *out = n;
    return CELLM_OK;
}

static enum cellm_status parse_subscript(struct parser *p, node *obj, node **out)
{
    node *n, *parts[3] = {NULL, NULL, NULL};
    CELLM_TRY(mk(p, NK_ITEM, &n));
    p->i++; /* [ */
    int k = 0;
    for (;;) {
        if (!is_op(p, ":") && !is_op(p, "]")) CELLM_TRY(parse_expr(p, 1, &parts[k]));
        if (is_op(p, ":") && k < 2) {
            p->i++;
            k++;
            n->kind = NK_SLICE;
            continue;
        }
        break;
    }
    if (is_op(p, ","))
        return fail(p, CELLM_ERR_UNSUPPORTED, "unsupported: tuple subscripts%.*s", "", 0);
    CELLM_TRY(expect_op(p, "]"));
    if (n->kind == NK_ITEM && !parts[0])
        return fail(p, CELLM_ERR_FORMAT, "empty subscript%.*s", "", 0);
    n->a = obj;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    *out = n;
    return CELLM_OK;
}

static enum cellm_status parse_postfix(struct parser *p, node **io)
{
    for (;;) {
        node *n = NULL;
        if (is_op(p, ".")) {
            CELLM_TRY(mk(p, NK_ATTR, &n));
            p->i++;
            const struct cellm_jinja_token *t = cur(p);
            if (t->kind == TK_NAME) {
                n->name = t->s;
                n->name_len = t->len;
            } else if (t->kind == TK_INT) {
                node *lit;
                CELLM_TRY(mk(p, NK_LIT, &lit));
                lit->lit = cellm_jinja_int(t->i);
                n->kind = NK_ITEM;
                n->b = lit;
            } else {
                return fail(p, CELLM_ERR_FORMAT, "expected a name after '.'%.*s", "", 0);
            }
            p->i++;
            n->a = *io;
        } else if (is_op(p, "[")) {
            CELLM_TRY(parse_subscript(p, *io, &n));
        } else if (is_op(p, "(")) {
            CELLM_TRY(mk(p, NK_CALL, &n));
            n->a = *io;
            n->line = (*io)->line; /* messages point at the callee */
            n->col = (*io)->col;
            CELLM_TRY(parse_args(p, n));
        } else {
            return CELLM_OK;
        }
        *io = n;
    }
}

static int starts_primary(struct parser *p)
{
    const struct cellm_jinja_token *t = cur(p);
    if (t->kind == TK_NAME)
        return !is_name(p, "else") && !is_name(p, "or") && !is_name(p, "and") &&
               !is_name(p, "if") && !is_name(p, "in") && !is_name(p, "is") && !is_name(p, "not");
    return t->kind == TK_STRING || t->kind == TK_INT || t->kind == TK_FLOAT || is_op(p, "(") ||
           is_op(p, "[") || is_op(p, "{");
}

static enum cellm_status parse_filters(struct parser *p, node **io)
{
    for (;;) {
        node *n;
        if (is_op(p, "|") || is_name(p, "is")) {
            int filter = is_op(p, "|");
            CELLM_TRY(mk(p, filter ? NK_FILTER : NK_TEST, &n));
            p->i++;
            if (!filter && is_name(p, "not")) {
                n->op = 1;
                p->i++;
            }
            const struct cellm_jinja_token *t = cur(p);
            if (t->kind != TK_NAME)
                return fail(p, CELLM_ERR_FORMAT, "expected a %.*s name", filter ? "filter" : "test",
                            filter ? 6 : 4);
            int id =
                filter ? cellm_jinja_filter_id(t->s, t->len) : cellm_jinja_test_id(t->s, t->len);
            if (id < 0)
                return fail(p, CELLM_ERR_UNSUPPORTED,
                            filter ? "unsupported: filter '%.*s'" : "unsupported: test '%.*s'",
                            t->s, t->len);
            n->fn = (uint16_t)id;
            n->name = t->s;
            n->name_len = t->len;
            n->a = *io;
            p->i++;
            if (is_op(p, "(")) {
                CELLM_TRY(parse_args(p, n));
            } else if (!filter && starts_primary(p)) {
                node *arg;
                CELLM_TRY(parse_primary(p, &arg));
                CELLM_TRY(parse_postfix(p, &arg));
                struct vec v = {0};
                CELLM_TRY(vec_push(p, &v, arg, NULL));
                n->kids = v.v;
                n->names = v.names;
                n->nkids = 1;
            }
        } else if (is_op(p, "(")) {
            CELLM_TRY(mk(p, NK_CALL, &n));
            n->a = *io;
            CELLM_TRY(parse_args(p, n));
        } else {
            return CELLM_OK;
        }
        *io = n;
    }
}

static enum cellm_status parse_unary(struct parser *p, int with_filter, node **out)
{
    CELLM_TRY(enter(p));
    node *n;
    if (is_op(p, "-") || is_op(p, "+")) {
        CELLM_TRY(mk(p, is_op(p, "-") ? NK_NEG : NK_POS, &n));
        p->i++;
        CELLM_TRY(parse_unary(p, 0, &n->a));
    } else {
        CELLM_TRY(parse_primary(p, &n));
    }
    CELLM_TRY(parse_postfix(p, &n));
    if (with_filter) CELLM_TRY(parse_filters(p, &n));
    p->depth--;
    *out = n;
    return CELLM_OK;
}

/* One level of left-associative binary operators. */
struct level {
    const char *ops[4];
    int codes[4];
};
static const struct level levels[] = {
    {{"+", "-"}, {JB_ADD, JB_SUB}},
    {{"~"}, {JB_CONCAT}},
    {{"*", "/", "//", "%"}, {JB_MUL, JB_DIV, JB_FLOORDIV, JB_MOD}},
    {{"**"}, {JB_POW}},
};

static enum cellm_status parse_level(struct parser *p, int lv, node **out)
{
    if (lv == 4) return parse_unary(p, 1, out);
    node *left;
    CELLM_TRY(parse_level(p, lv + 1, &left));
    for (;;) {
        int code = -1;
        for (int k = 0; k < 4 && levels[lv].ops[k]; k++)
            if (is_op(p, levels[lv].ops[k])) code = levels[lv].codes[k];
        if (code < 0) break;
        node *n;
        CELLM_TRY(mk(p, NK_BIN, &n));
        p->i++;
        n->op = (uint8_t)code;
        n->a = left;
        CELLM_TRY(parse_level(p, lv + 1, &n->b));
        left = n;
    }
    *out = left;
    return CELLM_OK;
}

static enum cellm_status parse_compare(struct parser *p, node **out)
{
    static const char *ops[] = {"==", "!=", "<", "<=", ">", ">="};
    static const int codes[] = {JB_EQ, JB_NE, JB_LT, JB_LE, JB_GT, JB_GE};
    node *left, *result = NULL;
    CELLM_TRY(parse_level(p, 0, &left));
    for (;;) {
        int code = -1;
        for (int k = 0; k < 6; k++)
            if (is_op(p, ops[k])) code = codes[k];
        if (code < 0 && is_name(p, "in")) code = JB_IN;
        if (code < 0 && is_name(p, "not") && is_name_at(p, 1, "in")) code = JB_NOTIN;
        if (code < 0) break;
        node *n;
        CELLM_TRY(mk(p, NK_BIN, &n));
        p->i += code == JB_NOTIN ? 2 : 1;
        n->op = (uint8_t)code;
        n->a = left;
        CELLM_TRY(parse_level(p, 0, &n->b));
        left = n->b;
        if (!result) {
            result = n;
        } else { /* a < b < c is (a < b) and (b < c) */
            node *and;
            CELLM_TRY(mk(p, NK_AND, &and));
            and->a = result;
            and->b = n;
            result = and;
        }
    }
    *out = result ? result : left;
    return CELLM_OK;
}

static enum cellm_status parse_not(struct parser *p, node **out)
{
    if (is_name(p, "not")) {
        node *n;
        CELLM_TRY(enter(p));
        CELLM_TRY(mk(p, NK_NOT, &n));
        p->i++;
        CELLM_TRY(parse_not(p, &n->a));
        p->depth--;
        *out = n;
        return CELLM_OK;
    }
    return parse_compare(p, out);
}

static enum cellm_status parse_bool(struct parser *p, int and_level, node **out)
{
    node *left;
    if (and_level)
        CELLM_TRY(parse_not(p, &left));
    else
        CELLM_TRY(parse_bool(p, 1, &left));
    while (is_name(p, and_level ? "and" : "or")) {
        node *n;
        CELLM_TRY(mk(p, and_level ? NK_AND : NK_OR, &n));
        p->i++;
        n->a = left;
        if (and_level)
            CELLM_TRY(parse_not(p, &n->b));
        else
            CELLM_TRY(parse_bool(p, 1, &n->b));
        left = n;
    }
    *out = left;
    return CELLM_OK;
}

static enum cellm_status parse_expr(struct parser *p, int with_cond, node **out)
{
    CELLM_TRY(enter(p));
    node *e;
    CELLM_TRY(parse_bool(p, 0, &e));
    while (with_cond && is_name(p, "if")) {
        node *n;
        CELLM_TRY(mk(p, NK_COND, &n));
        p->i++;
        n->b = e;
        CELLM_TRY(parse_bool(p, 0, &n->a));
        if (is_name(p, "else")) {
            p->i++;
            CELLM_TRY(parse_expr(p, 1, &n->c));
        }
        e = n;
    }
    p->depth--;
    *out = e;
    return CELLM_OK;
}

/* expr {"," expr}: a tuple when there is a comma. */
static enum cellm_status parse_tuple(struct parser *p, int with_cond, node **out)
{
    node *first;
    CELLM_TRY(parse_expr(p, with_cond, &first));
    if (!is_op(p, ",")) {
        *out = first;
        return CELLM_OK;
    }
    node *n;
    CELLM_TRY(mk(p, NK_LIST, &n));
    n->op = JV_TUPLE;
    struct vec v = {0};
    CELLM_TRY(vec_push(p, &v, first, NULL));
    while (is_op(p, ",")) {
        p->i++;
        if (cur(p)->kind == TK_VAR_END || cur(p)->kind == TK_BLOCK_END || is_name(p, "if")) break;
        node *a;
        CELLM_TRY(parse_expr(p, with_cond, &a));
        CELLM_TRY(vec_push(p, &v, a, NULL));
    }
    n->kids = v.v;
    n->nkids = v.n;
    *out = n;
    return CELLM_OK;
}

/* ---- statements ----------------------------------------------------------------------- */

static enum cellm_status parse_body(struct parser *p, const char *const *ends, node **out);

/* Assignment targets: name {"," name}; names into n->names. */
static enum cellm_status parse_targets(struct parser *p, node *n)
{
    struct vec v = {0};
    do {
        if (v.n) p->i++;
        if (cur(p)->kind != TK_NAME)
            return fail(p, CELLM_ERR_FORMAT, "expected a variable name%.*s", "", 0);
        const char *nm = name_dup(p, cur(p));
        if (!nm) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
        CELLM_TRY(vec_push(p, &v, NULL, nm));
        p->i++;
    } while (is_op(p, ","));
    n->names = v.names;
    n->nnames = v.n;
    return CELLM_OK;
}

static const char *const end_if[] = {"elif", "else", "endif", NULL};
static const char *const end_for[] = {"else", "endfor", NULL};
static const char *const end_for2[] = {"endfor", NULL};
static const char *const end_set[] = {"endset", NULL};
static const char *const end_macro[] = {"endmacro", NULL};
static const char *const end_generation[] = {"endgeneration", NULL};

static enum cellm_status parse_if(struct parser *p, node **out)
{
    node *n;
    CELLM_TRY(mk(p, NK_IF, &n));
    p->i++; /* if / elif */
    CELLM_TRY(parse_tuple(p, 1, &n->a));
    CELLM_TRY(expect_end(p));
    CELLM_TRY(parse_body(p, end_if, &n->b));
    /* at BLOCK_BEGIN + one of end_if */
    p->i++;
    if (is_name(p, "elif")) {
        CELLM_TRY(parse_if(p, &n->c));
    } else if (is_name(p, "else")) {
        p->i++;
        CELLM_TRY(expect_end(p));
        static const char *const e[] = {"endif", NULL};
        CELLM_TRY(parse_body(p, e, &n->c));
        p->i += 2;
        CELLM_TRY(expect_end(p));
    } else {
        p->i++;
        CELLM_TRY(expect_end(p));
    }
    *out = n;
    return CELLM_OK;
}

static enum cellm_status parse_stmt_tag(struct parser *p, node **out)
{
    const struct cellm_jinja_token *t = cur(p);
    if (t->kind != TK_NAME) return fail(p, CELLM_ERR_FORMAT, "expected a tag name%.*s", "", 0);
    node *n;
    if (is_name(p, "if")) return parse_if(p, out);
    if (is_name(p, "for")) {
        CELLM_TRY(mk(p, NK_FOR, &n));
        p->i++;
        CELLM_TRY(parse_targets(p, n));
        if (!is_name(p, "in")) return fail(p, CELLM_ERR_FORMAT, "expected 'in'%.*s", "", 0);
        p->i++;
        CELLM_TRY(parse_tuple(p, 0, &n->a));
        if (is_name(p, "if")) {
            p->i++;
            CELLM_TRY(parse_expr(p, 1, &n->c));
        }
        if (is_name(p, "recursive"))
            return fail(p, CELLM_ERR_UNSUPPORTED, "unsupported: recursive for loops%.*s", "", 0);
        CELLM_TRY(expect_end(p));
        p->loops++;
        CELLM_TRY(parse_body(p, end_for, &n->d));
        p->loops--;
        p->i++;
        if (is_name(p, "else")) {
            p->i++;
            CELLM_TRY(expect_end(p));
            CELLM_TRY(parse_body(p, end_for2, &n->b));
            p->i++;
        }
        p->i++;
        CELLM_TRY(expect_end(p));
        *out = n;
        return CELLM_OK;
    }
    if (is_name(p, "set")) {
        CELLM_TRY(mk(p, NK_SET, &n));
        p->i++;
        if (cur(p)->kind == TK_NAME && p->t[p->i + 1].kind == TK_OP && p->t[p->i + 1].len == 1 &&
            p->t[p->i + 1].s[0] == '.') {
            CELLM_TRY(mk(p, NK_ATTR, &n->a));
            n->a->name = p->t[p->i].s; /* namespace */
            n->a->name_len = p->t[p->i].len;
            p->i += 2;
            if (cur(p)->kind != TK_NAME)
                return fail(p, CELLM_ERR_FORMAT, "expected an attribute name%.*s", "", 0);
            const char *nm = name_dup(p, cur(p));
            if (!nm) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
            n->names = cellm_jinja_alloc(p->arena, sizeof *n->names);
            if (!n->names)
                return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
            n->names[0] = nm;
            n->nnames = 1;
            p->i++;
        } else {
            CELLM_TRY(parse_targets(p, n));
        }
        if (cur(p)->kind == TK_BLOCK_END && !n->a && n->nnames == 1) {
            n->kind = NK_SETBLK;
            p->i++;
            CELLM_TRY(parse_body(p, end_set, &n->b));
            p->i += 2;
            CELLM_TRY(expect_end(p));
            *out = n;
            return CELLM_OK;
        }
        if (is_op(p, "|"))
            return fail(p, CELLM_ERR_UNSUPPORTED, "unsupported: filtered set blocks%.*s", "", 0);
        CELLM_TRY(expect_op(p, "="));
        CELLM_TRY(parse_tuple(p, 1, &n->b));
        CELLM_TRY(expect_end(p));
        *out = n;
        return CELLM_OK;
    }
    if (is_name(p, "macro")) {
        CELLM_TRY(mk(p, NK_MACRO, &n));
        p->i++;
        if (cur(p)->kind != TK_NAME)
            return fail(p, CELLM_ERR_FORMAT, "expected a macro name%.*s", "", 0);
        n->name = cur(p)->s;
        n->name_len = cur(p)->len;
        p->i++;
        CELLM_TRY(expect_op(p, "("));
        struct vec v = {0};
        while (!is_op(p, ")")) {
            if (v.n) CELLM_TRY(expect_op(p, ","));
            if (cur(p)->kind != TK_NAME)
                return fail(p, CELLM_ERR_FORMAT, "expected a parameter name%.*s", "", 0);
            const char *nm = name_dup(p, cur(p));
            if (!nm) return cellm_errf(p->err, CELLM_ERR_NOMEM, "chat template: out of memory");
            p->i++;
            node *def = NULL;
            if (is_op(p, "=")) {
                p->i++;
                CELLM_TRY(parse_expr(p, 1, &def));
            }
            CELLM_TRY(vec_push(p, &v, def, nm));
        }
        p->i++;
        n->names = v.names;
        n->kids2 = v.v;
        n->nnames = v.n;
        CELLM_TRY(expect_end(p));
        int loops = p->loops;
        p->loops = 0;
        CELLM_TRY(parse_body(p, end_macro, &n->b));
        p->loops = loops;
        p->i += 2;
        if (cur(p)->kind == TK_NAME) /* {% endmacro name %} */
            p->i++;
        CELLM_TRY(expect_end(p));
        *out = n;
        return CELLM_OK;
    }
    if (is_name(p, "generation")) {
        /* transformers' {% generation %} marks the assistant's tokens (for training masks);
         * it renders its body as a call block does: in a scope of its own */
        p->i++;
        CELLM_TRY(expect_end(p));
        int loops = p->loops;
        p->loops = 0;
        CELLM_TRY(parse_body(p, end_generation, &n));
        p->loops = loops;
        p->i += 2;
        CELLM_TRY(expect_end(p));
        *out = n;
        return CELLM_OK;
    }
    if (is_name(p, "break") || is_name(p, "continue")) {
        CELLM_TRY(mk(p, is_name(p, "break") ? NK_BREAK : NK_CONTINUE, &n));
        if (!p->loops) return fail(p, CELLM_ERR_FORMAT, "'%.*s' outside of a loop", t->s, t->len);
        p->i++;
        CELLM_TRY(expect_end(p));
        *out = n;
        return CELLM_OK;
    }
    if (t->len > 3 && !memcmp(t->s, "end", 3))
        return fail(p, CELLM_ERR_FORMAT, "unexpected '%.*s'", t->s, t->len);
    if (is_name(p, "elif") || is_name(p, "else"))
        return fail(p, CELLM_ERR_FORMAT, "unexpected '%.*s'", t->s, t->len);
    return fail(p, CELLM_ERR_UNSUPPORTED, "unsupported: tag '%.*s'", t->s, t->len);
}

/* Statements until EOF (ends == NULL) or a tag whose name is in ends; leaves p->i at that
 * tag's BLOCK_BEGIN. */
static enum cellm_status parse_body(struct parser *p, const char *const *ends, node **out)
{
    CELLM_TRY(enter(p));
    node *body;
    CELLM_TRY(mk(p, NK_BODY, &body));
    struct vec v = {0};
    for (;;) {
        const struct cellm_jinja_token *t = cur(p);
        node *n = NULL;
        if (t->kind == TK_EOF) {
            if (ends)
                return fail(p, CELLM_ERR_FORMAT, "unexpected end of template, expected '%.*s'",
                            ends[0], strlen(ends[0]));
            break;
        }
        if (t->kind == TK_TEXT) {
            CELLM_TRY(mk(p, NK_TEXT, &n));
            n->name = t->s;
            n->name_len = t->len;
            p->i++;
        } else if (t->kind == TK_VAR_BEGIN) {
            CELLM_TRY(mk(p, NK_OUT, &n));
            p->i++;
            CELLM_TRY(parse_tuple(p, 1, &n->a));
            if (cur(p)->kind != TK_VAR_END)
                return fail(p, CELLM_ERR_FORMAT, "expected end of print statement '}}'%.*s", "", 0);
            p->i++;
        } else if (t->kind == TK_BLOCK_BEGIN) {
            int stop = 0;
            for (int k = 0; ends && ends[k]; k++)
                stop |= is_name_at(p, 1, ends[k]);
            if (stop) break;
            p->i++;
            CELLM_TRY(parse_stmt_tag(p, &n));
        } else {
            return fail(p, CELLM_ERR_FORMAT, "unexpected token%.*s", "", 0);
        }
        CELLM_TRY(vec_push(p, &v, n, NULL));
    }
    body->kids = v.v;
    body->nkids = v.n;
    p->depth--;
    *out = body;
    return CELLM_OK;
}

enum cellm_status cellm_jinja_parse(const char *tmpl, size_t len, struct cellm_jinja_tmpl **out,
                                    struct cellm_error *err)
{
    *out = NULL;
    if (!tmpl && len) return cellm_errf(err, CELLM_ERR_ARG, "chat template: NULL text");
    struct cellm_jinja_tmpl *t = cellm_calloc(1, sizeof *t);
    if (!t) return cellm_errf(err, CELLM_ERR_NOMEM, "chat template: out of memory");
    t->arena.cap = JINJA_MAX_ARENA;
    struct cellm_jinja_token *toks;
    size_t n;
    enum cellm_status st = cellm_jinja_lex(&t->arena, tmpl ? tmpl : "", len, &toks, &n, err);
    if (st == CELLM_OK) {
        struct parser p = {.arena = &t->arena, .t = toks, .n = n, .err = err};
        st = parse_body(&p, NULL, &t->root);
        cellm_free(toks);
    }
    if (st != CELLM_OK) {
        cellm_jinja_free(t);
        return st;
    }
    *out = t;
    return CELLM_OK;
}

void cellm_jinja_free(struct cellm_jinja_tmpl *t)
{
    if (!t) return;
    cellm_jinja_arena_free(&t->arena);
    cellm_free(t);
}
