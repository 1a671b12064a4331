/*
 * jinja_eval.c: renders a parsed chat template by walking its tree.
 *
 * Expressions evaluate to values (jinja_value.c) with Python's operator semantics: + adds
 * numbers or joins strings and lists, ~ joins the str() of both sides, / is true division,
 * // and % floor like Python, 'and'/'or' return an operand, comparisons chain. Statements
 * append to one output buffer. Scoping follows Jinja2: the caller's variables sit in a
 * frame under the template's own top-level frame, each for loop gets a frame of its own so
 * that {% set %} inside a loop does not leak out (which is why templates use namespace()),
 * and a macro call gets a frame whose parent is the template frame. break and continue are
 * a flag checked after each statement. Every node evaluated counts against a step budget
 * and macro calls against a depth budget, so any input finishes quickly.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "template/jinja_impl.h"

typedef struct cellm_jinja_node node;
typedef struct cellm_jinja_frame frame;

enum cellm_status cellm_jinja_fail(struct cellm_jinja_ctx *c, const node *n, enum cellm_status st,
                                   const char *fmt, ...)
{
    if (!n) n = c->at;
    char msg[CELLM_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) return cellm_errf(c->err, st, "chat template %d:%d: %.400s", n->line, n->col, msg);
    return cellm_errf(c->err, st, "chat template: %.400s", msg);
}

static enum cellm_status nomem(struct cellm_jinja_ctx *c)
{
    return cellm_jinja_nomem(c);
}

static enum cellm_status undefined_error(struct cellm_jinja_ctx *c, const node *n, const jval *v)
{
    return cellm_jinja_undef_error(c, n, v);
}

static enum cellm_status set_var(struct cellm_jinja_ctx *c, frame *f, const char *name, size_t len,
                                 const jval *v)
{
    jval k = cellm_jinja_str(name, len);
    return cellm_jinja_dict_set(c, &f->vars, &k, v);
}

static jval lookup(const frame *f, const char *name, size_t len)
{
    for (; f; f = f->up) {
        jval *v = cellm_jinja_dict_gets(&f->vars, name, len);
        if (v) return *v;
    }
    jval u = cellm_jinja_undef();
    int g = cellm_jinja_global_id(name, len);
    if (g >= 0) {
        u.kind = JV_FUNC;
        u.fn = (uint16_t)g;
        return u;
    }
    u.u.s = name; /* remembered for "'x' is undefined" */
    u.len = (uint32_t)len;
    return u;
}

/* ---- arithmetic ----------------------------------------------------------------------- */

static int is_num(const jval *v)
{
    return v->kind == JV_BOOL || v->kind == JV_INT || v->kind == JV_FLOAT;
}
static double num(const jval *v)
{
    return v->kind == JV_FLOAT ? v->u.f : (double)v->u.i;
}
static jval flt(double d)
{
    jval v = {.kind = JV_FLOAT};
    v.u.f = d;
    return v;
}

static const char *const binop_text[] = {"+",  "-",  "*", "/",  "//", "%",  "**", "~",
                                         "==", "!=", "<", "<=", ">",  ">=", "in", "not in"};

static enum cellm_status type_error(struct cellm_jinja_ctx *c, const node *n, const jval *a,
                                    const jval *b)
{
    return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                            "unsupported operand type(s) for %s: '%s' and '%s'", binop_text[n->op],
                            cellm_jinja_kind_name(a), cellm_jinja_kind_name(b));
}

static enum cellm_status repeat(struct cellm_jinja_ctx *c, const jval *seq, int64_t times,
                                jval *out)
{
    if (times < 0) times = 0;
    /* an empty sequence repeated is empty, however large the count: do not loop on it */
    if ((seq->kind == JV_STR && seq->len == 0) || (seq->kind != JV_STR && seq->u.list->n == 0))
        times = 0;
    if (seq->kind == JV_STR) {
        if (seq->len && (uint64_t)times > JINJA_MAX_OUTPUT / seq->len)
            return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "repeated string too long");
        struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT + 1};
        for (int64_t i = 0; i < times; i++)
            cellm_jinja_buf_put(&b, seq->u.s, seq->len);
        enum cellm_status st = cellm_jinja_buf_take(c, &b, out);
        cellm_free(b.p);
        return st;
    }
    if (seq->u.list->n && (uint64_t)times > (1u << 20) / seq->u.list->n)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "repeated list too long");
    CELLM_TRY(cellm_jinja_new_list(c, out));
    for (int64_t i = 0; i < times; i++)
        for (size_t k = 0; k < seq->u.list->n; k++)
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &seq->u.list->v[k]));
    return CELLM_OK;
}

static enum cellm_status contains(struct cellm_jinja_ctx *c, const node *n, const jval *hay,
                                  const jval *needle, int *out)
{
    *out = 0;
    switch (hay->kind) {
    case JV_STR:
        if (needle->kind != JV_STR)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                    "'in <string>' requires string as left operand, not %s",
                                    cellm_jinja_kind_name(needle));
        if (needle->len == 0)
            *out = 1;
        else
            *out = memmem(hay->u.s, hay->len, needle->u.s, needle->len) != NULL;
        return CELLM_OK;
    case JV_LIST:
        for (size_t i = 0; i < hay->u.list->n && !*out; i++)
            *out = cellm_jinja_equal(&hay->u.list->v[i], needle);
        return CELLM_OK;
    case JV_DICT:
    case JV_NS:
        *out = cellm_jinja_dict_get(hay->u.dict, needle) != NULL;
        return CELLM_OK;
    case JV_UNDEF:
        return CELLM_OK;
    default:
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "argument of type '%s' is not iterable",
                                cellm_jinja_kind_name(hay));
    }
}

static enum cellm_status binop(struct cellm_jinja_ctx *c, const node *n, const jval *a,
                               const jval *b, jval *out)
{
    int r;
    switch (n->op) {
    case JB_CONCAT: {
        struct cellm_jinja_buf buf = {.max = JINJA_MAX_OUTPUT};
        enum cellm_status st = cellm_jinja_to_str(c, a, &buf);
        if (st == CELLM_OK) st = cellm_jinja_to_str(c, b, &buf);
        if (st == CELLM_OK) st = cellm_jinja_buf_take(c, &buf, out);
        cellm_free(buf.p);
        return st;
    }
    case JB_EQ:
        *out = cellm_jinja_bool(cellm_jinja_equal(a, b));
        return CELLM_OK;
    case JB_NE:
        *out = cellm_jinja_bool(!cellm_jinja_equal(a, b));
        return CELLM_OK;
    case JB_LT:
    case JB_LE:
    case JB_GT:
    case JB_GE:
        if (a->kind == JV_UNDEF) return undefined_error(c, n, a);
        if (b->kind == JV_UNDEF) return undefined_error(c, n, b);
        if (cellm_jinja_compare(c, a, b, &r) != CELLM_OK)
            return cellm_jinja_fail(
                c, n, CELLM_ERR_FORMAT, "'%s' not supported between instances of '%s' and '%s'",
                binop_text[n->op], cellm_jinja_kind_name(a), cellm_jinja_kind_name(b));
        *out = cellm_jinja_bool(n->op == JB_LT   ? r < 0
                                : n->op == JB_LE ? r <= 0
                                : n->op == JB_GT ? r > 0
                                                 : r >= 0);
        return CELLM_OK;
    case JB_IN:
    case JB_NOTIN:
        CELLM_TRY(contains(c, n, b, a, &r));
        *out = cellm_jinja_bool(n->op == JB_IN ? r : !r);
        return CELLM_OK;
    }
    if (a->kind == JV_UNDEF) return undefined_error(c, n, a);
    if (b->kind == JV_UNDEF) return undefined_error(c, n, b);
    if (is_num(a) && is_num(b)) {
        int ints = a->kind != JV_FLOAT && b->kind != JV_FLOAT;
        int64_t x = a->u.i, y = b->u.i, z;
        double p = num(a), q = num(b);
        switch (n->op) {
        case JB_ADD:
            if (!ints)
                *out = flt(p + q);
            else if (__builtin_add_overflow(x, y, &z))
                return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
            else
                *out = cellm_jinja_int(z);
            return CELLM_OK;
        case JB_SUB:
            if (!ints)
                *out = flt(p - q);
            else if (__builtin_sub_overflow(x, y, &z))
                return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
            else
                *out = cellm_jinja_int(z);
            return CELLM_OK;
        case JB_MUL:
            if (!ints)
                *out = flt(p * q);
            else if (__builtin_mul_overflow(x, y, &z))
                return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
            else
                *out = cellm_jinja_int(z);
            return CELLM_OK;
        case JB_DIV:
            if (q == 0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "division by zero");
            *out = flt(p / q);
            return CELLM_OK;
        case JB_FLOORDIV:
        case JB_MOD:
            if (q == 0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "division by zero");
            if (ints) {
                if (x == INT64_MIN && y == -1)
                    return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
                int64_t d = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    d--;
                    m += y;
                }
                *out = cellm_jinja_int(n->op == JB_MOD ? m : d);
            } else {
                double m = fmod(p, q);
                if (m != 0 && ((m < 0) != (q < 0))) m += q;
                *out = flt(n->op == JB_MOD ? m : floor((p - m) / q + 0.5 * 0));
                if (n->op == JB_FLOORDIV) *out = flt(floor(p / q));
            }
            return CELLM_OK;
        case JB_POW:
            if (ints && y >= 0) {
                int64_t acc = 1;
                for (int64_t i = 0; i < y; i++) {
                    if (__builtin_mul_overflow(acc, x, &acc))
                        return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
                    if (acc == 0 || acc == 1) break;
                }
                *out = cellm_jinja_int(acc);
            } else {
                *out = flt(pow(p, q));
            }
            return CELLM_OK;
        }
    }
    if (n->op == JB_ADD && a->kind == JV_STR && b->kind == JV_STR) {
        struct cellm_jinja_buf buf = {.max = JINJA_MAX_OUTPUT};
        cellm_jinja_buf_put(&buf, a->u.s, a->len);
        cellm_jinja_buf_put(&buf, b->u.s, b->len);
        enum cellm_status st = cellm_jinja_buf_take(c, &buf, out);
        cellm_free(buf.p);
        return st;
    }
    if (n->op == JB_ADD && a->kind == JV_LIST && b->kind == JV_LIST &&
        (a->flags & JV_TUPLE) == (b->flags & JV_TUPLE)) {
        CELLM_TRY(cellm_jinja_new_list(c, out));
        out->flags = a->flags;
        for (int s = 0; s < 2; s++) {
            const jval *src = s ? b : a;
            for (size_t i = 0; i < src->u.list->n; i++)
                CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &src->u.list->v[i]));
        }
        return CELLM_OK;
    }
    if (n->op == JB_MUL) {
        const jval *seq = a->kind == JV_STR || a->kind == JV_LIST ? a : b;
        const jval *cnt = seq == a ? b : a;
        if ((seq->kind == JV_STR || seq->kind == JV_LIST) &&
            (cnt->kind == JV_INT || cnt->kind == JV_BOOL)) {
            CELLM_TRY(repeat(c, seq, cnt->u.i, out));
            out->flags = seq->flags;
            return CELLM_OK;
        }
    }
    if (n->op == JB_MOD && a->kind == JV_STR)
        return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                "unsupported: printf-style string formatting with %%");
    return type_error(c, n, a, b);
}

/* ---- expressions ---------------------------------------------------------------------- */

static enum cellm_status eval_args(struct cellm_jinja_ctx *c, const node *n, frame *f, jval **args)
{
    *args = NULL;
    if (!n->nkids) return CELLM_OK;
    *args = cellm_jinja_alloc(&c->arena, (size_t)n->nkids * sizeof(jval));
    if (!*args) return nomem(c);
    for (int i = 0; i < n->nkids; i++)
        CELLM_TRY(cellm_jinja_eval(c, n->kids[i], f, &(*args)[i]));
    return CELLM_OK;
}

static int64_t clamp_index(int64_t i, int64_t len, int step_neg)
{
    if (i < 0) i += len;
    if (i < 0) return step_neg ? -1 : 0;
    if (i >= len) return step_neg ? len - 1 : len;
    return i;
}

static enum cellm_status eval_slice(struct cellm_jinja_ctx *c, const node *n, const jval *obj,
                                    const jval *lo, const jval *hi, const jval *st, jval *out)
{
    const jval *parts[3] = {lo, hi, st};
    for (int k = 0; k < 3; k++)
        if (parts[k] && parts[k]->kind != JV_NONE && parts[k]->kind != JV_INT &&
            parts[k]->kind != JV_BOOL)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                    "slice indices must be integers or None");
    int64_t step = st && st->kind != JV_NONE ? st->u.i : 1;
    if (step == 0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "slice step cannot be zero");
    if (obj->kind == JV_UNDEF) {
        *out = *obj;
        return CELLM_OK;
    }
    struct cellm_jinja_list *items;
    if (obj->kind != JV_STR && obj->kind != JV_LIST)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "'%s' object is not subscriptable",
                                cellm_jinja_kind_name(obj));
    CELLM_TRY(cellm_jinja_iter_list(c, obj, &items));
    int64_t len = (int64_t)items->n;
    int64_t a =
        lo && lo->kind != JV_NONE ? clamp_index(lo->u.i, len, step < 0) : (step > 0 ? 0 : len - 1);
    int64_t b =
        hi && hi->kind != JV_NONE ? clamp_index(hi->u.i, len, step < 0) : (step > 0 ? len : -1);
    jval res;
    CELLM_TRY(cellm_jinja_new_list(c, &res));
    res.flags = obj->flags;
    struct cellm_jinja_buf buf = {.max = JINJA_MAX_OUTPUT};
    for (int64_t i = a; step > 0 ? i < b : i > b; i += step) {
        if (obj->kind == JV_STR)
            cellm_jinja_buf_put(&buf, items->v[i].u.s, items->v[i].len);
        else
            CELLM_TRY(cellm_jinja_list_push(c, res.u.list, &items->v[i]));
    }
    if (obj->kind == JV_STR) {
        enum cellm_status s = cellm_jinja_buf_take(c, &buf, out);
        cellm_free(buf.p);
        return s;
    }
    *out = res;
    return CELLM_OK;
}

static enum cellm_status call(struct cellm_jinja_ctx *c, const node *n, frame *f, jval *out)
{
    jval callee, *args;
    CELLM_TRY(cellm_jinja_eval(c, n->a, f, &callee));
    CELLM_TRY(eval_args(c, n, f, &args));
    switch (callee.kind) {
    case JV_FUNC:
        return cellm_jinja_call_global(c, n, callee.fn, args, n->names, n->nkids, out);
    case JV_METHOD:
        return cellm_jinja_call_method(c, n, &callee, args, n->names, n->nkids, out);
    case JV_MACRO:
        return cellm_jinja_call_macro(c, n, &callee, args, n->names, n->nkids, f, out);
    case JV_UNDEF:
        return undefined_error(c, n, &callee);
    default:
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "'%s' object is not callable",
                                cellm_jinja_kind_name(&callee));
    }
}

enum cellm_status cellm_jinja_eval(struct cellm_jinja_ctx *c, const node *n, frame *f, jval *out)
{
    if (++c->steps > JINJA_MAX_STEPS)
        return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "template takes too many steps");
    c->at = n;
    jval a, b, d;
    switch (n->kind) {
    case NK_LIT:
        *out = n->lit;
        return CELLM_OK;
    case NK_NAME:
        *out = lookup(f, n->name, n->name_len);
        return CELLM_OK;
    case NK_LIST:
        CELLM_TRY(cellm_jinja_new_list(c, out));
        out->flags = n->op;
        for (int i = 0; i < n->nkids; i++) {
            CELLM_TRY(cellm_jinja_eval(c, n->kids[i], f, &a));
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &a));
        }
        return CELLM_OK;
    case NK_DICT:
        CELLM_TRY(cellm_jinja_new_dict(c, 0, out));
        for (int i = 0; i + 1 < n->nkids; i += 2) {
            CELLM_TRY(cellm_jinja_eval(c, n->kids[i], f, &a));
            CELLM_TRY(cellm_jinja_eval(c, n->kids[i + 1], f, &b));
            CELLM_TRY(cellm_jinja_dict_set(c, out->u.dict, &a, &b));
        }
        return CELLM_OK;
    case NK_ATTR:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        return cellm_jinja_getattr(c, n, &a, n->name, n->name_len, out);
    case NK_ITEM:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        CELLM_TRY(cellm_jinja_eval(c, n->b, f, &b));
        return cellm_jinja_getitem(c, n, &a, &b, out);
    case NK_SLICE: {
        jval lo, hi, st;
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        if (n->b) CELLM_TRY(cellm_jinja_eval(c, n->b, f, &lo));
        if (n->c) CELLM_TRY(cellm_jinja_eval(c, n->c, f, &hi));
        if (n->d) CELLM_TRY(cellm_jinja_eval(c, n->d, f, &st));
        return eval_slice(c, n, &a, n->b ? &lo : NULL, n->c ? &hi : NULL, n->d ? &st : NULL, out);
    }
    case NK_CALL:
        return call(c, n, f, out);
    case NK_FILTER: {
        jval *args;
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        CELLM_TRY(eval_args(c, n, f, &args));
        c->at = n;
        *out = a;
        return cellm_jinja_apply_filter(c, n, n->fn, out, args, n->names, n->nkids, f);
    }
    case NK_TEST: {
        jval *args;
        int r;
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        CELLM_TRY(eval_args(c, n, f, &args));
        c->at = n;
        CELLM_TRY(cellm_jinja_apply_test(c, n, n->fn, &a, args, n->nkids, &r));
        *out = cellm_jinja_bool(n->op ? !r : r);
        return CELLM_OK;
    }
    case NK_NEG:
    case NK_POS:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        if (a.kind == JV_UNDEF) return undefined_error(c, n, &a);
        if (!is_num(&a))
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "bad operand type for unary %c: '%s'",
                                    n->kind == NK_NEG ? '-' : '+', cellm_jinja_kind_name(&a));
        if (n->kind == NK_POS)
            *out = a.kind == JV_BOOL ? cellm_jinja_int(a.u.i) : a;
        else if (a.kind == JV_FLOAT)
            *out = flt(-a.u.f);
        else if (a.u.i == INT64_MIN)
            return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "integer overflow");
        else
            *out = cellm_jinja_int(-a.u.i);
        return CELLM_OK;
    case NK_NOT:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        *out = cellm_jinja_bool(!cellm_jinja_truthy(&a));
        return CELLM_OK;
    case NK_AND:
    case NK_OR:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        if (cellm_jinja_truthy(&a) == (n->kind == NK_OR)) {
            *out = a;
            return CELLM_OK;
        }
        return cellm_jinja_eval(c, n->b, f, out);
    case NK_BIN:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &a));
        CELLM_TRY(cellm_jinja_eval(c, n->b, f, &b));
        c->at = n;
        return binop(c, n, &a, &b, out);
    case NK_COND:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &d));
        if (cellm_jinja_truthy(&d)) return cellm_jinja_eval(c, n->b, f, out);
        if (n->c) return cellm_jinja_eval(c, n->c, f, out);
        *out = cellm_jinja_undef();
        return CELLM_OK;
    default:
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "statement used as an expression");
    }
}

/* ---- statements ----------------------------------------------------------------------- */

static enum cellm_status exec(struct cellm_jinja_ctx *c, const node *n, frame *f,
                              struct cellm_jinja_buf *out);

static enum cellm_status out_status(struct cellm_jinja_ctx *c, const node *n,
                                    struct cellm_jinja_buf *out)
{
    if (out->oom == 1) return cellm_jinja_fail(c, n, CELLM_ERR_NOMEM, "out of memory");
    if (out->oom == 2)
        return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "output longer than %zu bytes", out->max);
    return CELLM_OK;
}

static enum cellm_status exec_body(struct cellm_jinja_ctx *c, const node *body, frame *f,
                                   struct cellm_jinja_buf *out)
{
    for (int i = 0; body && i < body->nkids && !c->loop_ctl; i++)
        CELLM_TRY(exec(c, body->kids[i], f, out));
    return CELLM_OK;
}

static enum cellm_status assign(struct cellm_jinja_ctx *c, const node *n, frame *f, const jval *v)
{
    if (n->nnames == 1) return set_var(c, f, n->names[0], strlen(n->names[0]), v);
    if (v->kind != JV_LIST && v->kind != JV_STR && v->kind != JV_DICT)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "cannot unpack non-iterable %s object",
                                cellm_jinja_kind_name(v));
    struct cellm_jinja_list *l;
    CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
    if (l->n != (size_t)n->nnames)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "cannot unpack %zu values into %d names",
                                l->n, n->nnames);
    for (int i = 0; i < n->nnames; i++)
        CELLM_TRY(set_var(c, f, n->names[i], strlen(n->names[i]), &l->v[i]));
    return CELLM_OK;
}

static enum cellm_status exec_for(struct cellm_jinja_ctx *c, const node *n, frame *f,
                                  struct cellm_jinja_buf *out)
{
    jval seq;
    struct cellm_jinja_list *items;
    CELLM_TRY(cellm_jinja_eval(c, n->a, f, &seq));
    c->at = n;
    CELLM_TRY(cellm_jinja_iter_list(c, &seq, &items));
    frame *lf = cellm_jinja_alloc(&c->arena, sizeof *lf);
    if (!lf) return nomem(c);
    memset(lf, 0, sizeof *lf);
    lf->up = f;
    if (n->c) { /* {% for x in xs if cond %}: filter first, so loop.* counts kept items */
        jval kept;
        CELLM_TRY(cellm_jinja_new_list(c, &kept));
        for (size_t i = 0; i < items->n; i++) {
            jval t;
            CELLM_TRY(assign(c, n, lf, &items->v[i]));
            CELLM_TRY(cellm_jinja_eval(c, n->c, lf, &t));
            if (cellm_jinja_truthy(&t))
                CELLM_TRY(cellm_jinja_list_push(c, kept.u.list, &items->v[i]));
        }
        items = kept.u.list;
        lf->vars.n = 0;
    }
    if (items->n == 0) return exec_body(c, n->b, f, out);
    struct cellm_jinja_loop *lp = cellm_jinja_alloc(&c->arena, sizeof *lp);
    if (!lp) return nomem(c);
    lp->items = items;
    jval loopv = {.kind = JV_LOOP};
    loopv.u.loop = lp;
    for (size_t i = 0; i < items->n; i++) {
        if (++c->steps > JINJA_MAX_STEPS)
            return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "template takes too many steps");
        lp->index0 = i;
        lf->vars.n = 0; /* each iteration starts from a fresh scope, as in Jinja2 */
        CELLM_TRY(set_var(c, lf, "loop", 4, &loopv));
        CELLM_TRY(assign(c, n, lf, &items->v[i]));
        CELLM_TRY(exec_body(c, n->d, lf, out));
        int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1) break;
    }
    return CELLM_OK;
}

static enum cellm_status exec(struct cellm_jinja_ctx *c, const node *n, frame *f,
                              struct cellm_jinja_buf *out)
{
    if (++c->steps > JINJA_MAX_STEPS)
        return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "template takes too many steps");
    c->at = n;
    jval v;
    switch (n->kind) {
    case NK_TEXT:
        cellm_jinja_buf_put(out, n->name, n->name_len);
        return out_status(c, n, out);
    case NK_OUT:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &v));
        c->at = n;
        CELLM_TRY(cellm_jinja_to_str(c, &v, out));
        return out_status(c, n, out);
    case NK_IF:
        CELLM_TRY(cellm_jinja_eval(c, n->a, f, &v));
        if (cellm_jinja_truthy(&v)) return exec_body(c, n->b, f, out);
        if (n->c && n->c->kind == NK_IF) return exec(c, n->c, f, out);
        return exec_body(c, n->c, f, out);
    case NK_FOR:
        return exec_for(c, n, f, out);
    case NK_SET:
        CELLM_TRY(cellm_jinja_eval(c, n->b, f, &v));
        c->at = n;
        if (n->a) {
            jval ns = lookup(f, n->a->name, n->a->name_len);
            if (ns.kind != JV_NS)
                return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                        "cannot assign attribute on non-namespace object");
            jval k = cellm_jinja_str(n->names[0], strlen(n->names[0]));
            return cellm_jinja_dict_set(c, ns.u.dict, &k, &v);
        }
        return assign(c, n, f, &v);
    case NK_SETBLK: {
        struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
        enum cellm_status st = exec_body(c, n->b, f, &b);
        if (st == CELLM_OK) st = out_status(c, n, &b);
        if (st == CELLM_OK) st = cellm_jinja_buf_take(c, &b, &v);
        cellm_free(b.p);
        CELLM_TRY(st);
        return set_var(c, f, n->names[0], strlen(n->names[0]), &v);
    }
    case NK_BODY: { /* a {% generation %} block: its sets stay inside */
        frame *sf = cellm_jinja_alloc(&c->arena, sizeof *sf);
        if (!sf) return nomem(c);
        memset(sf, 0, sizeof *sf);
        sf->up = f;
        return exec_body(c, n, sf, out);
    }
    case NK_MACRO:
        v = (jval){.kind = JV_MACRO};
        v.u.macro = n;
        return set_var(c, f, n->name, n->name_len, &v);
    case NK_BREAK:
        c->loop_ctl = 1;
        return CELLM_OK;
    case NK_CONTINUE:
        c->loop_ctl = 2;
        return CELLM_OK;
    default:
        CELLM_TRY(cellm_jinja_eval(c, n, f, &v));
        return CELLM_OK;
    }
}

enum cellm_status cellm_jinja_call_macro(struct cellm_jinja_ctx *c, const node *call, const jval *m,
                                         jval *args, const char **names, int nargs, frame *f,
                                         jval *out)
{
    const node *mn = m->u.macro;
    if (c->depth >= JINJA_MAX_DEPTH)
        return cellm_jinja_fail(c, call, CELLM_ERR_RANGE, "macro calls nested too deeply");
    frame *root = f;
    while (root->up && root->up->up)
        root = root->up;
    frame *mf = cellm_jinja_alloc(&c->arena, sizeof *mf);
    if (!mf) return nomem(c);
    memset(mf, 0, sizeof *mf);
    mf->up = root;
    int npos = 0;
    for (int i = 0; i < nargs; i++) {
        if (names && names[i]) {
            int found = 0;
            for (int k = 0; k < mn->nnames; k++)
                found |= !strcmp(mn->names[k], names[i]);
            if (!found)
                return cellm_jinja_fail(c, call, CELLM_ERR_FORMAT,
                                        "macro '%.*s' takes no keyword argument '%s'",
                                        (int)mn->name_len, mn->name, names[i]);
            CELLM_TRY(set_var(c, mf, names[i], strlen(names[i]), &args[i]));
        } else {
            if (npos >= mn->nnames)
                return cellm_jinja_fail(c, call, CELLM_ERR_FORMAT,
                                        "macro '%.*s' takes not more than %d argument(s)",
                                        (int)mn->name_len, mn->name, mn->nnames);
            CELLM_TRY(set_var(c, mf, mn->names[npos], strlen(mn->names[npos]), &args[i]));
            npos++;
        }
    }
    for (int k = 0; k < mn->nnames; k++) {
        if (cellm_jinja_dict_gets(&mf->vars, mn->names[k], strlen(mn->names[k]))) continue;
        jval v = cellm_jinja_undef();
        v.u.s = mn->names[k];
        v.len = (uint32_t)strlen(mn->names[k]);
        if (mn->kids2[k]) CELLM_TRY(cellm_jinja_eval(c, mn->kids2[k], mf, &v));
        CELLM_TRY(set_var(c, mf, mn->names[k], strlen(mn->names[k]), &v));
    }
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    int saved_ctl = c->loop_ctl;
    c->depth++;
    enum cellm_status st = exec_body(c, mn->b, mf, &b);
    c->depth--;
    c->loop_ctl = saved_ctl;
    if (st == CELLM_OK) st = out_status(c, call, &b);
    if (st == CELLM_OK) st = cellm_jinja_buf_take(c, &b, out);
    cellm_free(b.p);
    return st;
}

/* ---- entry points --------------------------------------------------------------------- */

enum cellm_status cellm_jinja_render_parsed(const struct cellm_jinja_tmpl *t, const cJSON *vars,
                                            char **out, struct cellm_error *err)
{
    if (!out) return cellm_errf(err, CELLM_ERR_ARG, "chat template: NULL output pointer");
    *out = NULL;
    if (!t) return cellm_errf(err, CELLM_ERR_ARG, "chat template: NULL template");
    if (vars && !cJSON_IsObject(vars) && !cJSON_IsNull(vars))
        return cellm_errf(err, CELLM_ERR_ARG, "chat template: variables must be a JSON object");
    struct cellm_jinja_ctx c = {.arena = {.cap = JINJA_MAX_ARENA}, .err = err};
    frame globals = {0}, top = {.up = &globals};
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    enum cellm_status st = CELLM_OK;
    if (vars && cJSON_IsObject(vars)) {
        for (const cJSON *e = vars->child; e && st == CELLM_OK; e = e->next) {
            jval v;
            st = cellm_jinja_from_cjson(&c, e, &v);
            if (st == CELLM_OK && e->string)
                st = set_var(&c, &globals, e->string, strlen(e->string), &v);
        }
    }
    if (st == CELLM_OK) st = exec_body(&c, t->root, &top, &b);
    if (st == CELLM_OK) st = out_status(&c, NULL, &b);
    if (st == CELLM_OK && !b.p) {
        b.p = cellm_malloc(1);
        if (!b.p)
            st = cellm_errf(err, CELLM_ERR_NOMEM, "chat template: out of memory");
        else
            b.p[0] = 0;
    }
    cellm_jinja_arena_free(&c.arena);
    if (st != CELLM_OK) {
        cellm_free(b.p);
        return st;
    }
    *out = b.p;
    return CELLM_OK;
}

enum cellm_status cellm_jinja_render(const char *tmpl, size_t len, const cJSON *vars, char **out,
                                     struct cellm_error *err)
{
    struct cellm_jinja_tmpl *t;
    if (out) *out = NULL;
    CELLM_TRY(cellm_jinja_parse(tmpl, len, &t, err));
    enum cellm_status st = cellm_jinja_render_parsed(t, vars, out, err);
    cellm_jinja_free(t);
    return st;
}
