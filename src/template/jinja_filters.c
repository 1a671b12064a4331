/*
 * jinja_filters.c: the filters (x|name) and tests (x is name) of the chat-template
 * interpreter.
 *
 * Each is looked up by name at parse time (an unknown one refuses the template) and applied
 * here with Jinja2's defaults: tojson is transformers' override (json.dumps with
 * ensure_ascii off, optional indent and sort_keys, key order kept), trim strips Unicode
 * white space, default replaces only Undefined unless its boolean flag is set, unique and
 * sort compare strings case-insensitively by default, select/reject/selectattr/rejectattr
 * take a test name, and map takes either attribute= or a filter name. Arguments arrive
 * evaluated, positional and keyword mixed, as the parser recorded them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja_impl.h"

typedef struct cellm_jinja_node node;

enum {
    F_ABS,
    F_CAPITALIZE,
    F_COUNT,
    F_D,
    F_DEFAULT,
    F_DICTSORT,
    F_E,
    F_ESCAPE,
    F_FIRST,
    F_FLOAT,
    F_INDENT,
    F_INT,
    F_ITEMS,
    F_JOIN,
    F_LAST,
    F_LENGTH,
    F_LIST,
    F_LOWER,
    F_MAP,
    F_MAX,
    F_MIN,
    F_REJECT,
    F_REJECTATTR,
    F_REPLACE,
    F_REVERSE,
    F_SAFE,
    F_SELECT,
    F_SELECTATTR,
    F_SORT,
    F_STRING,
    F_SUM,
    F_TITLE,
    F_TOJSON,
    F_TRIM,
    F_UNIQUE,
    F_UPPER,
};
static const char *const filters[] = {
    "abs",     "capitalize", "count",  "d",          "default", "dictsort", "e",          "escape",
    "first",   "float",      "indent", "int",        "items",   "join",     "last",       "length",
    "list",    "lower",      "map",    "max",        "min",     "reject",   "rejectattr", "replace",
    "reverse", "safe",       "select", "selectattr", "sort",    "string",   "sum",        "title",
    "tojson",  "trim",       "unique", "upper",      NULL};

enum {
    T_DEFINED,
    T_UNDEFINED,
    T_NONE,
    T_BOOLEAN,
    T_FALSE,
    T_TRUE,
    T_INTEGER,
    T_FLOAT,
    T_NUMBER,
    T_STRING,
    T_MAPPING,
    T_ITERABLE,
    T_SEQUENCE,
    T_CALLABLE,
    T_SAMEAS,
    T_EQ,
    T_EQUALTO,
    T_EQ2,
    T_NE,
    T_NE2,
    T_LT,
    T_LESSTHAN,
    T_LT2,
    T_LE,
    T_LE2,
    T_GT,
    T_GREATERTHAN,
    T_GT2,
    T_GE,
    T_GE2,
    T_IN,
    T_EVEN,
    T_ODD,
    T_DIVISIBLEBY,
    T_LOWER,
    T_UPPER,
    T_ESCAPED,
};
static const char *const tests[] = {
    "defined", "undefined",   "none",        "boolean",  "false",    "true",     "integer", "float",
    "number",  "string",      "mapping",     "iterable", "sequence", "callable", "sameas",  "eq",
    "equalto", "==",          "ne",          "!=",       "lt",       "lessthan", "<",       "le",
    "<=",      "gt",          "greaterthan", ">",        "ge",       ">=",       "in",      "even",
    "odd",     "divisibleby", "lower",       "upper",    "escaped",  NULL};

static int find_name(const char *const *list, const char *s, size_t n)
{
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) return i;
    return -1;
}

int cellm_jinja_filter_id(const char *name, size_t n)
{
    return find_name(filters, name, n);
}
int cellm_jinja_test_id(const char *name, size_t n)
{
    return find_name(tests, name, n);
}

static enum cellm_status take(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b, jval *out)
{
    enum cellm_status st = cellm_jinja_buf_take(c, b, out);
    cellm_free(b->p);
    return st;
}

/* ---- tests ---------------------------------------------------------------------------- */

static int is_num(const jval *v)
{
    return v->kind == JV_BOOL || v->kind == JV_INT || v->kind == JV_FLOAT;
}

enum cellm_status cellm_jinja_apply_test(struct cellm_jinja_ctx *c, const node *n, int id,
                                         const jval *v, jval *args, int nargs, int *out)
{
    const jval *a0 = nargs > 0 ? &args[0] : NULL;
    int r = 0;
    *out = 0;
    switch (id) {
    case T_DEFINED:
        *out = v->kind != JV_UNDEF;
        return CELLM_OK;
    case T_UNDEFINED:
        *out = v->kind == JV_UNDEF;
        return CELLM_OK;
    case T_NONE:
        *out = v->kind == JV_NONE;
        return CELLM_OK;
    case T_BOOLEAN:
        *out = v->kind == JV_BOOL;
        return CELLM_OK;
    case T_FALSE:
        *out = v->kind == JV_BOOL && !v->u.i;
        return CELLM_OK;
    case T_TRUE:
        *out = v->kind == JV_BOOL && v->u.i;
        return CELLM_OK;
    case T_INTEGER:
        *out = v->kind == JV_INT;
        return CELLM_OK;
    case T_FLOAT:
        *out = v->kind == JV_FLOAT;
        return CELLM_OK;
    case T_NUMBER:
        *out = is_num(v);
        return CELLM_OK;
    case T_STRING:
        *out = v->kind == JV_STR;
        return CELLM_OK;
    case T_MAPPING:
        *out = v->kind == JV_DICT;
        return CELLM_OK;
    case T_ITERABLE:
    case T_SEQUENCE:
        *out = v->kind == JV_STR || v->kind == JV_LIST || v->kind == JV_DICT || v->kind == JV_UNDEF;
        return CELLM_OK;
    case T_CALLABLE:
        *out = v->kind == JV_FUNC || v->kind == JV_MACRO || v->kind == JV_METHOD;
        return CELLM_OK;
    case T_LOWER:
    case T_UPPER: {
        jval s, t;
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        CELLM_TRY(cellm_jinja_case(c, &s, id == T_LOWER ? 0 : 1, &t));
        int cased = 0;
        for (size_t i = 0; i < s.len; i++) {
            char ch = s.u.s[i];
            cased |= (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        }
        *out = cased && cellm_jinja_equal(&s, &t);
        return CELLM_OK;
    }
    case T_ESCAPED:
        *out = 0;
        return CELLM_OK;
    case T_EVEN:
    case T_ODD:
        if (v->kind != JV_INT && v->kind != JV_BOOL)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "even/odd need an integer");
        *out = (int)(v->u.i & 1) == (id == T_ODD);
        return CELLM_OK;
    case T_DIVISIBLEBY:
        if (!a0 || (v->kind != JV_INT && v->kind != JV_BOOL) ||
            (a0->kind != JV_INT && a0->kind != JV_BOOL) || a0->u.i == 0)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "divisibleby needs non-zero ints");
        *out = a0->u.i == -1 || v->u.i % a0->u.i == 0;
        return CELLM_OK;
    }
    if (!a0)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "test '%s' needs an argument", tests[id]);
    switch (id) {
    case T_SAMEAS:
        *out = v->kind == a0->kind &&
               (v->kind == JV_NONE || v->kind == JV_UNDEF ||
                ((v->kind == JV_BOOL || v->kind == JV_INT) && v->u.i == a0->u.i) ||
                (v->kind != JV_BOOL && v->kind != JV_INT && v->u.list == a0->u.list));
        return CELLM_OK;
    case T_EQ:
    case T_EQUALTO:
    case T_EQ2:
        *out = cellm_jinja_equal(v, a0);
        return CELLM_OK;
    case T_NE:
    case T_NE2:
        *out = !cellm_jinja_equal(v, a0);
        return CELLM_OK;
    case T_IN: {
        jval hay = *a0;
        if (hay.kind == JV_STR) {
            if (v->kind != JV_STR)
                return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                        "'in <string>' requires string as left operand");
            *out = v->len == 0 || memmem(hay.u.s, hay.len, v->u.s, v->len) != NULL;
            return CELLM_OK;
        }
        if (hay.kind == JV_DICT) {
            *out = cellm_jinja_dict_get(hay.u.dict, v) != NULL;
            return CELLM_OK;
        }
        struct cellm_jinja_list *l;
        CELLM_TRY(cellm_jinja_iter_list(c, &hay, &l));
        for (size_t i = 0; i < l->n && !*out; i++)
            *out = cellm_jinja_equal(&l->v[i], v);
        return CELLM_OK;
    }
    default:
        if (v->kind == JV_UNDEF || a0->kind == JV_UNDEF ||
            cellm_jinja_compare(c, v, a0, &r) != CELLM_OK)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                    "test '%s' cannot compare '%s' and '%s'", tests[id],
                                    cellm_jinja_kind_name(v), cellm_jinja_kind_name(a0));
        switch (id) {
        case T_LT:
        case T_LESSTHAN:
        case T_LT2:
            *out = r < 0;
            break;
        case T_LE:
        case T_LE2:
            *out = r <= 0;
            break;
        case T_GT:
        case T_GREATERTHAN:
        case T_GT2:
            *out = r > 0;
            break;
        default:
            *out = r >= 0;
            break;
        }
        return CELLM_OK;
    }
}

/* ---- helpers for the sequence filters --------------------------------------------------- */

/* Follows a dotted attribute path ("a.b", "0") as Jinja2's attribute= arguments do. */
static enum cellm_status attr_path(struct cellm_jinja_ctx *c, const node *n, const jval *v,
                                   const jval *path, jval *out)
{
    if (path->kind == JV_INT) return cellm_jinja_getitem(c, n, v, path, out);
    if (path->kind != JV_STR)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "attribute must be a string");
    *out = *v;
    size_t i = 0;
    do {
        size_t e = i;
        while (e < path->len && path->u.s[e] != '.')
            e++;
        jval key = cellm_jinja_str(path->u.s + i, e - i), cur = *out;
        int digits = e > i;
        for (size_t k = i; k < e; k++)
            digits &= path->u.s[k] >= '0' && path->u.s[k] <= '9';
        if (digits) key = cellm_jinja_int(strtoll(path->u.s + i, NULL, 10));
        CELLM_TRY(cellm_jinja_getitem(c, n, &cur, &key, out));
        i = e + 1;
    } while (i <= path->len);
    return CELLM_OK;
}

/* Sort key: strings lower-cased unless case-sensitive. */
static enum cellm_status sort_key(struct cellm_jinja_ctx *c, const jval *v, int cs, jval *out)
{
    if (v->kind == JV_STR && !cs) return cellm_jinja_case(c, v, 0, out);
    *out = *v;
    return CELLM_OK;
}

/* Stable insertion sort of items by keys (both length n). */
static enum cellm_status sort_by(struct cellm_jinja_ctx *c, const node *n, jval *items, jval *keys,
                                 size_t cnt, int reverse)
{
    for (size_t i = 1; i < cnt; i++)
        for (size_t j = i; j > 0; j--) {
            int r;
            if (cellm_jinja_compare(c, &keys[j - 1], &keys[j], &r) != CELLM_OK)
                return cellm_jinja_fail(
                    c, n, CELLM_ERR_FORMAT, "'<' not supported between '%s' and '%s'",
                    cellm_jinja_kind_name(&keys[j - 1]), cellm_jinja_kind_name(&keys[j]));
            if (reverse ? r >= 0 : r <= 0) break;
            jval t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
            t = items[j];
            items[j] = items[j - 1];
            items[j - 1] = t;
        }
    return CELLM_OK;
}

static enum cellm_status copy_list(struct cellm_jinja_ctx *c, const struct cellm_jinja_list *l,
                                   jval *out)
{
    CELLM_TRY(cellm_jinja_new_list(c, out));
    for (size_t i = 0; i < l->n; i++)
        CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &l->v[i]));
    return CELLM_OK;
}

static enum cellm_status select_filter(struct cellm_jinja_ctx *c, const node *n, int id,
                                       const jval *v, jval *args, int nargs, jval *out)
{
    int by_attr = id == F_SELECTATTR || id == F_REJECTATTR;
    int keep_if = id == F_SELECT || id == F_SELECTATTR;
    struct cellm_jinja_list *l;
    CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
    int k = 0;
    const jval *attr = NULL;
    if (by_attr) {
        if (nargs < 1)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "missing attribute argument");
        attr = &args[k++];
    }
    int test = -1;
    if (k < nargs) {
        if (args[k].kind != JV_STR || (test = cellm_jinja_test_id(args[k].u.s, args[k].len)) < 0)
            return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED, "unsupported: test '%.*s'",
                                    args[k].kind == JV_STR ? (int)args[k].len : 1,
                                    args[k].kind == JV_STR ? args[k].u.s : "?");
        k++;
    }
    CELLM_TRY(cellm_jinja_new_list(c, out));
    for (size_t i = 0; i < l->n; i++) {
        jval x = l->v[i];
        if (attr) CELLM_TRY(attr_path(c, n, &l->v[i], attr, &x));
        int r;
        if (test < 0)
            r = cellm_jinja_truthy(&x);
        else
            CELLM_TRY(cellm_jinja_apply_test(c, n, test, &x, args + k, nargs - k, &r));
        if (r == keep_if) CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &l->v[i]));
    }
    return CELLM_OK;
}

static enum cellm_status min_max_sum(struct cellm_jinja_ctx *c, const node *n, int id,
                                     const jval *v, jval *args, const char **names, int nargs,
                                     jval *out)
{
    struct cellm_jinja_list *l;
    CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
    const jval *attr = cellm_jinja_arg(args, names, nargs, id == F_SUM ? 0 : 9, "attribute");
    const jval *cs = cellm_jinja_arg(args, names, nargs, 0, "case_sensitive");
    int csv = id != F_SUM && cs && cellm_jinja_truthy(cs);
    if (id == F_SUM) {
        const jval *start = cellm_jinja_arg(args, names, nargs, 1, "start");
        *out = start ? *start : cellm_jinja_int(0);
    } else if (l->n == 0) {
        *out = cellm_jinja_undef();
        return CELLM_OK;
    }
    jval best_key = {0};
    for (size_t i = 0; i < l->n; i++) {
        jval x = l->v[i], key;
        if (attr) CELLM_TRY(attr_path(c, n, &l->v[i], attr, &x));
        if (id == F_SUM) {
            struct cellm_jinja_node add = *n;
            add.kind = NK_BIN;
            add.op = JB_ADD;
            add.a = add.b = NULL;
            jval lit_a = *out;
            /* reuse the + semantics through a tiny synthetic tree */
            struct cellm_jinja_node la = {
                .kind = NK_LIT, .lit = lit_a, .line = n->line, .col = n->col};
            struct cellm_jinja_node lb = {.kind = NK_LIT, .lit = x, .line = n->line, .col = n->col};
            add.a = &la;
            add.b = &lb;
            CELLM_TRY(cellm_jinja_eval(c, &add, NULL, out));
            continue;
        }
        CELLM_TRY(sort_key(c, &x, csv, &key));
        int r = 0;
        if (i > 0 && cellm_jinja_compare(c, &key, &best_key, &r) != CELLM_OK)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "cannot compare items");
        if (i == 0 || (id == F_MIN ? r < 0 : r > 0)) {
            best_key = key;
            *out = l->v[i];
        }
    }
    return CELLM_OK;
}

/* ---- filters ---------------------------------------------------------------------------- */

enum cellm_status cellm_jinja_apply_filter(struct cellm_jinja_ctx *c, const node *n, int id,
                                           jval *v, jval *args, const char **names, int nargs,
                                           struct cellm_jinja_frame *f)
{
    (void)f;
    const jval *a0 = cellm_jinja_arg(args, names, nargs, 0, NULL),
               *a1 = cellm_jinja_arg(args, names, nargs, 1, NULL);
    jval s, x;
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    struct cellm_jinja_list *l;
    switch (id) {
    case F_D:
    case F_DEFAULT: {
        const jval *dv = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "default_value");
        const jval *boolean = a1 ? a1 : cellm_jinja_arg(args, names, nargs, 9, "boolean");
        int use = v->kind == JV_UNDEF ||
                  (boolean && cellm_jinja_truthy(boolean) && !cellm_jinja_truthy(v));
        if (use) *v = dv ? *dv : cellm_jinja_str("", 0);
        return CELLM_OK;
    }
    case F_LENGTH:
    case F_COUNT:
        switch (v->kind) {
        case JV_STR:
            *v = cellm_jinja_int((int64_t)cellm_jinja_utf8_count(v->u.s, v->len));
            break;
        case JV_LIST:
            *v = cellm_jinja_int((int64_t)v->u.list->n);
            break;
        case JV_DICT:
            *v = cellm_jinja_int((int64_t)v->u.dict->n);
            break;
        case JV_UNDEF:
            *v = cellm_jinja_int(0);
            break;
        default:
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "object of type '%s' has no len()",
                                    cellm_jinja_kind_name(v));
        }
        return CELLM_OK;
    case F_STRING:
        return cellm_jinja_stringify(c, v, v);
    case F_SAFE:
        return cellm_jinja_stringify(c, v, v);
    case F_TRIM: {
        const jval *chars = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "chars");
        if (chars && chars->kind != JV_STR && chars->kind != JV_NONE)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "trim chars must be a string");
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        *v = cellm_jinja_strip(&s, chars, 3);
        return CELLM_OK;
    }
    case F_LOWER:
    case F_UPPER:
    case F_TITLE:
    case F_CAPITALIZE:
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        return cellm_jinja_case(c, &s,
                                id == F_LOWER   ? 0
                                : id == F_UPPER ? 1
                                : id == F_TITLE ? 2
                                                : 3,
                                v);
    case F_REPLACE: {
        const jval *cnt = cellm_jinja_arg(args, names, nargs, 2, "count");
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        if (!a0 || !a1)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "replace needs two arguments");
        jval o, w;
        CELLM_TRY(cellm_jinja_stringify(c, a0, &o));
        CELLM_TRY(cellm_jinja_stringify(c, a1, &w));
        return cellm_jinja_replace(c, &s, &o, &w, cnt && cnt->kind == JV_INT ? cnt->u.i : -1, v);
    }
    case F_TOJSON: {
        const jval *indent = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "indent");
        const jval *ascii = cellm_jinja_arg(args, names, nargs, 9, "ensure_ascii");
        const jval *sortk = cellm_jinja_arg(args, names, nargs, 9, "sort_keys");
        if (cellm_jinja_arg(args, names, nargs, 9, "separators") || a1)
            return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED, "unsupported: tojson separators");
        if (indent && indent->kind != JV_NONE && indent->kind != JV_INT)
            return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                    "unsupported: tojson indent that is not an integer");
        int ind = indent && indent->kind == JV_INT ? (int)(indent->u.i < 0    ? 0
                                                           : indent->u.i > 64 ? 64
                                                                              : indent->u.i)
                                                   : -1;
        enum cellm_status st = cellm_jinja_json(c, v, ascii && cellm_jinja_truthy(ascii), ind,
                                                sortk && cellm_jinja_truthy(sortk), &b);
        if (st != CELLM_OK) {
            cellm_free(b.p);
            return st;
        }
        return take(c, &b, v);
    }
    case F_JOIN: {
        const jval *sep = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "d");
        const jval *attr = a1 ? a1 : cellm_jinja_arg(args, names, nargs, 9, "attribute");
        jval sv = cellm_jinja_str("", 0);
        if (sep) CELLM_TRY(cellm_jinja_stringify(c, sep, &sv));
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        for (size_t i = 0; i < l->n; i++) {
            x = l->v[i];
            enum cellm_status st = CELLM_OK;
            if (attr) st = attr_path(c, n, &l->v[i], attr, &x);
            if (i) cellm_jinja_buf_put(&b, sv.u.s, sv.len);
            if (st == CELLM_OK) st = cellm_jinja_to_str(c, &x, &b);
            if (st != CELLM_OK) {
                cellm_free(b.p);
                return st;
            }
        }
        return take(c, &b, v);
    }
    case F_ITEMS:
        if (v->kind == JV_UNDEF) return cellm_jinja_new_list(c, v);
        if (v->kind != JV_DICT)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                    "Can only get item pairs from a mapping.");
        {
            const struct cellm_jinja_dict *d = v->u.dict;
            CELLM_TRY(cellm_jinja_new_list(c, v));
            for (size_t i = 0; i < d->n; i++) {
                jval e;
                CELLM_TRY(cellm_jinja_new_list(c, &e));
                e.flags = JV_TUPLE;
                CELLM_TRY(cellm_jinja_list_push(c, e.u.list, &d->k[i]));
                CELLM_TRY(cellm_jinja_list_push(c, e.u.list, &d->v[i]));
                CELLM_TRY(cellm_jinja_list_push(c, v->u.list, &e));
            }
        }
        return CELLM_OK;
    case F_DICTSORT: {
        if (v->kind != JV_DICT)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "dictsort needs a mapping");
        const jval *cs = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "case_sensitive");
        const jval *by = a1 ? a1 : cellm_jinja_arg(args, names, nargs, 9, "by");
        const jval *rev = cellm_jinja_arg(args, names, nargs, 2, "reverse");
        int by_value = by && by->kind == JV_STR && by->len == 5 && !memcmp(by->u.s, "value", 5);
        jval items = *v;
        CELLM_TRY(cellm_jinja_apply_filter(c, n, F_ITEMS, &items, NULL, NULL, 0, f));
        size_t cnt = items.u.list->n;
        jval *keys = cellm_jinja_alloc(&c->arena, (cnt + 1) * sizeof *keys);
        if (!keys) return cellm_jinja_nomem(c);
        for (size_t i = 0; i < cnt; i++)
            CELLM_TRY(sort_key(c, &items.u.list->v[i].u.list->v[by_value],
                               cs && cellm_jinja_truthy(cs), &keys[i]));
        CELLM_TRY(sort_by(c, n, items.u.list->v, keys, cnt, rev && cellm_jinja_truthy(rev)));
        *v = items;
        return CELLM_OK;
    }
    case F_FIRST:
    case F_LAST:
        if (v->kind == JV_UNDEF) return CELLM_OK;
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        *v = l->n == 0 ? cellm_jinja_undef() : l->v[id == F_FIRST ? 0 : l->n - 1];
        return CELLM_OK;
    case F_LIST:
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        return copy_list(c, l, v);
    case F_REVERSE:
        if (v->kind == JV_STR) {
            for (size_t i = v->len; i > 0;) {
                size_t k = i - 1;
                while (k > 0 && ((unsigned char)v->u.s[k] & 0xC0) == 0x80)
                    k--;
                cellm_jinja_buf_put(&b, v->u.s + k, i - k);
                i = k;
            }
            return take(c, &b, v);
        }
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        CELLM_TRY(cellm_jinja_new_list(c, v));
        for (size_t i = l->n; i > 0; i--)
            CELLM_TRY(cellm_jinja_list_push(c, v->u.list, &l->v[i - 1]));
        return CELLM_OK;
    case F_SORT:
    case F_UNIQUE: {
        const jval *rev =
            id == F_SORT ? (a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "reverse")) : NULL;
        const jval *cs =
            cellm_jinja_arg(args, names, nargs, id == F_SORT ? 1 : 0, "case_sensitive");
        const jval *attr = cellm_jinja_arg(args, names, nargs, id == F_SORT ? 2 : 1, "attribute");
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        jval res;
        CELLM_TRY(copy_list(c, l, &res));
        size_t cnt = res.u.list->n;
        jval *keys = cellm_jinja_alloc(&c->arena, (cnt + 1) * sizeof *keys);
        if (!keys) return cellm_jinja_nomem(c);
        for (size_t i = 0; i < cnt; i++) {
            x = res.u.list->v[i];
            if (attr) CELLM_TRY(attr_path(c, n, &res.u.list->v[i], attr, &x));
            CELLM_TRY(sort_key(c, &x, cs && cellm_jinja_truthy(cs), &keys[i]));
        }
        if (id == F_SORT) {
            CELLM_TRY(sort_by(c, n, res.u.list->v, keys, cnt, rev && cellm_jinja_truthy(rev)));
            *v = res;
            return CELLM_OK;
        }
        CELLM_TRY(cellm_jinja_new_list(c, v));
        for (size_t i = 0; i < cnt; i++) {
            int seen = 0;
            for (size_t k = 0; k < i && !seen; k++)
                seen = cellm_jinja_equal(&keys[k], &keys[i]);
            if (!seen) CELLM_TRY(cellm_jinja_list_push(c, v->u.list, &res.u.list->v[i]));
        }
        return CELLM_OK;
    }
    case F_SELECT:
    case F_REJECT:
    case F_SELECTATTR:
    case F_REJECTATTR: {
        for (int i = 0; i < nargs; i++)
            if (names && names[i])
                return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                        "unsupported: keyword arguments to %s", filters[id]);
        jval in = *v;
        return select_filter(c, n, id, &in, args, nargs, v);
    }
    case F_MAP: {
        const jval *attr = cellm_jinja_arg(args, names, nargs, 9, "attribute");
        const jval *dflt = cellm_jinja_arg(args, names, nargs, 9, "default");
        CELLM_TRY(cellm_jinja_iter_list(c, v, &l));
        int fid = -1;
        if (!attr) {
            if (!a0 || a0->kind != JV_STR || (fid = cellm_jinja_filter_id(a0->u.s, a0->len)) < 0)
                return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                        "unsupported: map without a known filter name");
        }
        CELLM_TRY(cellm_jinja_new_list(c, v));
        for (size_t i = 0; i < l->n; i++) {
            x = l->v[i];
            if (attr) {
                CELLM_TRY(attr_path(c, n, &l->v[i], attr, &x));
                if (x.kind == JV_UNDEF && dflt) x = *dflt;
            } else {
                const char **fn = names ? names + 1 : NULL;
                CELLM_TRY(cellm_jinja_apply_filter(c, n, fid, &x, args + 1, fn, nargs - 1, f));
            }
            CELLM_TRY(cellm_jinja_list_push(c, v->u.list, &x));
        }
        return CELLM_OK;
    }
    case F_MIN:
    case F_MAX:
    case F_SUM: {
        jval in = *v;
        return min_max_sum(c, n, id, &in, args, names, nargs, v);
    }
    case F_ABS:
        if (v->kind == JV_FLOAT)
            v->u.f = fabs(v->u.f);
        else if (v->kind == JV_INT || v->kind == JV_BOOL)
            *v = cellm_jinja_int(v->u.i < 0 ? -v->u.i : v->u.i);
        else
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "bad operand type for abs(): '%s'",
                                    cellm_jinja_kind_name(v));
        return CELLM_OK;
    case F_INT:
    case F_FLOAT: {
        const jval *dflt = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "default");
        jval d = dflt ? *dflt : id == F_INT ? cellm_jinja_int(0) : (jval){.kind = JV_FLOAT};
        double val;
        if (v->kind == JV_INT || v->kind == JV_BOOL || v->kind == JV_FLOAT) {
            val = v->kind == JV_FLOAT ? v->u.f : (double)v->u.i;
            if (id == F_INT && v->kind != JV_FLOAT) {
                *v = cellm_jinja_int(v->u.i);
                return CELLM_OK;
            }
        } else if (v->kind == JV_STR) {
            char tmp[64];
            jval t = cellm_jinja_strip(v, NULL, 3);
            if (t.len == 0 || t.len >= sizeof tmp) {
                *v = d;
                return CELLM_OK;
            }
            memcpy(tmp, t.u.s, t.len);
            tmp[t.len] = 0;
            char *end;
            if (id == F_INT) {
                long long iv = strtoll(tmp, &end, 10);
                if (*end == 0) {
                    *v = cellm_jinja_int(iv);
                    return CELLM_OK;
                }
            }
            val = strtod(tmp, &end);
            if (*end != 0) {
                *v = d;
                return CELLM_OK;
            }
        } else {
            *v = d;
            return CELLM_OK;
        }
        if (id == F_INT) {
            if (!(fabs(val) < 9.2e18)) {
                *v = d;
                return CELLM_OK;
            }
            *v = cellm_jinja_int((int64_t)val);
        } else {
            *v = (jval){.kind = JV_FLOAT};
            v->u.f = val;
        }
        return CELLM_OK;
    }
    case F_INDENT: {
        const jval *width = a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "width");
        const jval *first = a1 ? a1 : cellm_jinja_arg(args, names, nargs, 9, "first");
        const jval *blank = cellm_jinja_arg(args, names, nargs, 2, "blank");
        jval ind = cellm_jinja_str("    ", 4);
        if (width && width->kind == JV_STR) {
            ind = *width;
        } else if (width) {
            if (width->kind != JV_INT || width->u.i < 0 || width->u.i > 256)
                return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED, "unsupported: indent width");
            for (int64_t i = 0; i < width->u.i; i++)
                cellm_jinja_buf_putc(&b, ' ');
            CELLM_TRY(take(c, &b, &ind));
            b = (struct cellm_jinja_buf){.max = JINJA_MAX_OUTPUT};
        }
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        int do_blank = blank && cellm_jinja_truthy(blank);
        if (first && cellm_jinja_truthy(first)) cellm_jinja_buf_put(&b, ind.u.s, ind.len);
        /* Jinja2 appends "\n", splits into lines (a final line break ends the last line
         * rather than starting an empty one), indents every line after the first (empty
         * ones only with blank=True) and joins them with "\n". */
        size_t i = 0, line = 0, total = s.len + 1;
        while (i < total) {
            size_t e = i;
            while (e < s.len && s.u.s[e] != '\n' && s.u.s[e] != '\r')
                e++;
            if (line > 0) {
                cellm_jinja_buf_putc(&b, '\n');
                if (e > i || do_blank) cellm_jinja_buf_put(&b, ind.u.s, ind.len);
            }
            cellm_jinja_buf_put(&b, s.u.s + i, e - i);
            if (e < s.len && s.u.s[e] == '\r' && e + 1 < s.len && s.u.s[e + 1] == '\n') e++;
            i = e + 1;
            line++;
        }
        return take(c, &b, v);
    }
    case F_E:
    case F_ESCAPE:
        CELLM_TRY(cellm_jinja_stringify(c, v, &s));
        for (size_t i = 0; i < s.len; i++) {
            switch (s.u.s[i]) {
            case '&':
                cellm_jinja_buf_put(&b, "&amp;", 5);
                break;
            case '<':
                cellm_jinja_buf_put(&b, "&lt;", 4);
                break;
            case '>':
                cellm_jinja_buf_put(&b, "&gt;", 4);
                break;
            case '"':
                cellm_jinja_buf_put(&b, "&#34;", 5);
                break;
            case '\'':
                cellm_jinja_buf_put(&b, "&#39;", 5);
                break;
            default:
                cellm_jinja_buf_putc(&b, s.u.s[i]);
            }
        }
        return take(c, &b, v);
    }
    return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED, "unsupported filter");
}
