/*
 * jinja_builtin.c: attribute and item access, the str/dict methods, and the globals.
 *
 * Jinja2 resolves `a.b` by trying Python's getattr first and then a['b'], and `a[k]` the
 * other way round; a miss gives Undefined rather than an error (except on an Undefined
 * itself). So `message.content` reads a dict key while `message.items` is the dict method,
 * and `'abc'.startswith` is a bound str method. Bound methods are values (JV_METHOD) that
 * remember their receiver; calling one dispatches here. The sandbox transformers uses
 * forbids mutating methods (append, pop, update...), which therefore resolve to Undefined.
 * Globals: range (capped like the sandbox, at 100000 items), namespace, dict,
 * raise_exception (CELLM_ERR_ARG with the template's message) and strftime_now.
 * String methods work on UTF-8 code points; case changes are ASCII only.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "template/jinja_impl.h"

typedef struct cellm_jinja_node node;

enum {
    M_STARTSWITH,
    M_ENDSWITH,
    M_SPLIT,
    M_RSPLIT,
    M_STRIP,
    M_LSTRIP,
    M_RSTRIP,
    M_LOWER,
    M_UPPER,
    M_TITLE,
    M_CAPITALIZE,
    M_REPLACE,
    M_FIND,
    M_COUNT,
    M_JOIN,
    M_STR_OTHER,
    M_ITEMS,
    M_KEYS,
    M_VALUES,
    M_GET,
    M_CYCLE,
};
static const char *const str_methods[] = {
    "startswith", "endswith", "split",      "rsplit",  "strip", "lstrip", "rstrip", "lower",
    "upper",      "title",    "capitalize", "replace", "find",  "count",  "join",   NULL};
static const char *const str_other[] = {
    "casefold",     "center",  "encode",    "expandtabs",  "format",       "format_map",
    "index",        "isalnum", "isalpha",   "isascii",     "isdecimal",    "isdigit",
    "isidentifier", "islower", "isnumeric", "isprintable", "isspace",      "istitle",
    "isupper",      "ljust",   "maketrans", "partition",   "removeprefix", "removesuffix",
    "rfind",        "rindex",  "rjust",     "rpartition",  "splitlines",   "swapcase",
    "translate",    "zfill",   NULL};
static const char *const dict_methods[] = {"items", "keys", "values", "get", NULL};
static const char *const dict_unsafe[] = {"pop",   "popitem", "update",   "setdefault",
                                          "clear", "copy",    "fromkeys", NULL};

static int find_name(const char *const *list, const char *s, size_t n)
{
    for (int i = 0; list[i]; i++)
        if (strlen(list[i]) == n && memcmp(list[i], s, n) == 0) return i;
    return -1;
}

enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME };
static const char *const globals[] = {"range",           "namespace",    "dict",
                                      "raise_exception", "strftime_now", NULL};

int cellm_jinja_global_id(const char *name, size_t n)
{
    return find_name(globals, name, n);
}

static enum cellm_status nomem(struct cellm_jinja_ctx *c)
{
    return cellm_jinja_nomem(c);
}

static enum cellm_status bind(struct cellm_jinja_ctx *c, const jval *self, int id, jval *out)
{
    jval *s = cellm_jinja_alloc(&c->arena, sizeof *s);
    if (!s) return nomem(c);
    *s = *self;
    *out = (jval){.kind = JV_METHOD, .fn = (uint16_t)id};
    out->u.self = s;
    return CELLM_OK;
}

static enum cellm_status loop_attr(struct cellm_jinja_ctx *c, const jval *obj, const char *name,
                                   size_t len, jval *out)
{
    const struct cellm_jinja_loop *lp = obj->u.loop;
    int64_t i = (int64_t)lp->index0, n = (int64_t)lp->items->n;
    static const char *const f[] = {"index",  "index0", "revindex", "revindex0", "first",
                                    "last",   "length", "previtem", "nextitem",  "depth",
                                    "depth0", "cycle",  NULL};
    switch (find_name(f, name, len)) {
    case 0:
        *out = cellm_jinja_int(i + 1);
        break;
    case 1:
        *out = cellm_jinja_int(i);
        break;
    case 2:
        *out = cellm_jinja_int(n - i);
        break;
    case 3:
        *out = cellm_jinja_int(n - i - 1);
        break;
    case 4:
        *out = cellm_jinja_bool(i == 0);
        break;
    case 5:
        *out = cellm_jinja_bool(i == n - 1);
        break;
    case 6:
        *out = cellm_jinja_int(n);
        break;
    case 7:
        *out = i > 0 ? lp->items->v[i - 1] : cellm_jinja_undef();
        break;
    case 8:
        *out = i + 1 < n ? lp->items->v[i + 1] : cellm_jinja_undef();
        break;
    case 9:
        *out = cellm_jinja_int(1);
        break;
    case 10:
        *out = cellm_jinja_int(0);
        break;
    case 11:
        return bind(c, obj, M_CYCLE, out);
    default:
        *out = cellm_jinja_undef();
    }
    return CELLM_OK;
}

enum cellm_status cellm_jinja_getattr(struct cellm_jinja_ctx *c, const node *n, const jval *obj,
                                      const char *name, size_t len, jval *out)
{
    int m;
    switch (obj->kind) {
    case JV_UNDEF:
        return cellm_jinja_undef_error(c, n, obj);
    case JV_STR:
        if ((m = find_name(str_methods, name, len)) >= 0) return bind(c, obj, m, out);
        if (find_name(str_other, name, len) >= 0) return bind(c, obj, M_STR_OTHER, out);
        break;
    case JV_DICT:
        if ((m = find_name(dict_methods, name, len)) >= 0) return bind(c, obj, M_ITEMS + m, out);
        if (find_name(dict_unsafe, name, len) >= 0) break;
        /* fall through */
    case JV_NS: {
        jval *v = cellm_jinja_dict_gets(obj->u.dict, name, len);
        if (v) {
            *out = *v;
            return CELLM_OK;
        }
        break;
    }
    case JV_LOOP:
        return loop_attr(c, obj, name, len, out);
    default:
        break;
    }
    *out = cellm_jinja_undef_hint(c, "'%s object' has no attribute '%.*s'",
                                  cellm_jinja_kind_name(obj), (int)(len > 60 ? 60 : len), name);
    return CELLM_OK;
}

enum cellm_status cellm_jinja_getitem(struct cellm_jinja_ctx *c, const node *n, const jval *obj,
                                      const jval *key, jval *out)
{
    if (obj->kind == JV_UNDEF) return cellm_jinja_getattr(c, n, obj, "[]", 2, out);
    int intkey = key->kind == JV_INT || key->kind == JV_BOOL;
    if ((obj->kind == JV_LIST || obj->kind == JV_STR) && intkey) {
        struct cellm_jinja_list *l;
        if (obj->kind == JV_LIST)
            l = obj->u.list;
        else
            CELLM_TRY(cellm_jinja_iter_list(c, obj, &l));
        int64_t i = key->u.i;
        if (i < 0) i += (int64_t)l->n;
        if (i >= 0 && i < (int64_t)l->n)
            *out = l->v[i];
        else
            *out = cellm_jinja_undef_hint(c, "%s object has no element %lld",
                                          cellm_jinja_kind_name(obj), (long long)key->u.i);
        return CELLM_OK;
    }
    if (obj->kind == JV_DICT || obj->kind == JV_NS) {
        jval *v = cellm_jinja_dict_get(obj->u.dict, key);
        if (v) {
            *out = *v;
            return CELLM_OK;
        }
    }
    if (key->kind == JV_STR) return cellm_jinja_getattr(c, n, obj, key->u.s, key->len, out);
    *out = cellm_jinja_undef_hint(c, "'%s object' has no item of that key",
                                  cellm_jinja_kind_name(obj));
    return CELLM_OK;
}

/* ---- str methods ---------------------------------------------------------------------- */

const jval *cellm_jinja_arg(jval *args, const char **names, int nargs, int pos, const char *name)
{
    int k = 0;
    for (int i = 0; i < nargs; i++) {
        if (names && names[i]) {
            if (name && !strcmp(names[i], name)) return &args[i];
        } else if (k++ == pos) {
            return &args[i];
        }
    }
    return NULL;
}

static enum cellm_status want_str(struct cellm_jinja_ctx *c, const node *n, const jval *v,
                                  const char *what)
{
    if (v->kind != JV_STR)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "%s: expected a string, got %s", what,
                                cellm_jinja_kind_name(v));
    return CELLM_OK;
}

static int in_chars(const char *s, size_t n, size_t i, const jval *chars, size_t *clen)
{
    if (!chars || chars->kind == JV_NONE) return cellm_jinja_is_space(s, n, i, clen);
    *clen = cellm_jinja_utf8_next(s, n, i) - i;
    for (size_t k = 0; k < chars->len;) {
        size_t e = cellm_jinja_utf8_next(chars->u.s, chars->len, k);
        if (e - k == *clen && memcmp(chars->u.s + k, s + i, *clen) == 0) return 1;
        k = e;
    }
    return 0;
}

/* Python's str.strip family; which: 1 left, 2 right, 3 both. */
jval cellm_jinja_strip(const jval *s, const jval *chars, int which)
{
    size_t a = 0, b = s->len, clen;
    if (which & 1)
        while (a < b && in_chars(s->u.s, s->len, a, chars, &clen))
            a += clen;
    if (which & 2)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s->u.s[k] & 0xC0) == 0x80)
                k--;
            if (!in_chars(s->u.s, s->len, k, chars, &clen)) break;
            b = k;
        }
    return cellm_jinja_str(s->u.s + a, b - a);
}

static enum cellm_status take(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b, jval *out)
{
    enum cellm_status st = cellm_jinja_buf_take(c, b, out);
    cellm_free(b->p);
    return st;
}

/* case: 0 lower, 1 upper, 2 title, 3 capitalize */
enum cellm_status cellm_jinja_case(struct cellm_jinja_ctx *c, const jval *s, int mode, jval *out)
{
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    int prev_alpha = 0;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->u.s[i];
        int up = mode == 1 || (mode == 2 && !prev_alpha) || (mode == 3 && i == 0);
        if (up && ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 32);
        else if (!up && ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        prev_alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                     ((unsigned char)ch >= 0x80 && prev_alpha);
        cellm_jinja_buf_putc(&b, ch);
    }
    return take(c, &b, out);
}

enum cellm_status cellm_jinja_replace(struct cellm_jinja_ctx *c, const jval *s, const jval *old,
                                      const jval *new, int64_t count, jval *out)
{
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    size_t i = 0;
    int64_t done = 0;
    if (old->len == 0) { /* inserts before every character and at the end */
        while (i <= s->len) {
            if (count < 0 || done < count) {
                cellm_jinja_buf_put(&b, new->u.s, new->len);
                done++;
            }
            if (i == s->len) break;
            size_t e = cellm_jinja_utf8_next(s->u.s, s->len, i);
            cellm_jinja_buf_put(&b, s->u.s + i, e - i);
            i = e;
        }
        return take(c, &b, out);
    }
    while (i < s->len) {
        const char *hit =
            count >= 0 && done >= count ? NULL : memmem(s->u.s + i, s->len - i, old->u.s, old->len);
        if (!hit) {
            cellm_jinja_buf_put(&b, s->u.s + i, s->len - i);
            break;
        }
        size_t at = (size_t)(hit - s->u.s);
        cellm_jinja_buf_put(&b, s->u.s + i, at - i);
        cellm_jinja_buf_put(&b, new->u.s, new->len);
        i = at + old->len;
        done++;
    }
    return take(c, &b, out);
}

static enum cellm_status split(struct cellm_jinja_ctx *c, const node *n, const jval *s,
                               const jval *sep, int64_t maxsplit, int right, jval *out)
{
    CELLM_TRY(cellm_jinja_new_list(c, out));
    if (sep && sep->kind != JV_NONE) {
        CELLM_TRY(want_str(c, n, sep, "split"));
        if (sep->len == 0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "empty separator");
        /* collect all cut points, then honour maxsplit from the chosen side */
        size_t cap = 16, cnt = 0, *cuts = cellm_jinja_alloc(&c->arena, cap * sizeof *cuts);
        if (!cuts) return nomem(c);
        for (size_t i = 0; i + sep->len <= s->len;) {
            const char *hit = memmem(s->u.s + i, s->len - i, sep->u.s, sep->len);
            if (!hit) break;
            if (cnt == cap) {
                size_t *nc = cellm_jinja_alloc(&c->arena, cap * 2 * sizeof *nc);
                if (!nc) return nomem(c);
                memcpy(nc, cuts, cnt * sizeof *nc);
                cuts = nc;
                cap *= 2;
            }
            cuts[cnt++] = (size_t)(hit - s->u.s);
            i = cuts[cnt - 1] + sep->len;
        }
        size_t first = 0, use = cnt;
        if (maxsplit >= 0 && (size_t)maxsplit < cnt) {
            use = (size_t)maxsplit;
            if (right) first = cnt - use;
        }
        size_t prev = 0;
        for (size_t k = first; k < first + use; k++) {
            jval piece = cellm_jinja_str(s->u.s + prev, cuts[k] - prev);
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &piece));
            prev = cuts[k] + sep->len;
        }
        jval rest = cellm_jinja_str(s->u.s + prev, s->len - prev);
        return cellm_jinja_list_push(c, out->u.list, &rest);
    }
    /* whitespace split: runs of white space separate, no empty pieces */
    if (right && maxsplit >= 0)
        return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                "unsupported: rsplit with maxsplit on white space");
    size_t i = 0, clen;
    int64_t done = 0;
    for (;;) {
        while (i < s->len && cellm_jinja_is_space(s->u.s, s->len, i, &clen))
            i += clen;
        if (i >= s->len) break;
        size_t start = i;
        if (maxsplit >= 0 && done >= maxsplit) {
            jval r = cellm_jinja_str(s->u.s + start, s->len - start);
            r = cellm_jinja_strip(&r, NULL, 2);
            return cellm_jinja_list_push(c, out->u.list, &r);
        }
        while (i < s->len && !cellm_jinja_is_space(s->u.s, s->len, i, &clen))
            i = cellm_jinja_utf8_next(s->u.s, s->len, i);
        jval piece = cellm_jinja_str(s->u.s + start, i - start);
        CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &piece));
        done++;
    }
    return CELLM_OK;
}

static enum cellm_status affix(struct cellm_jinja_ctx *c, const node *n, const jval *s,
                               const jval *x, int end, int *r)
{
    if (x && x->kind == JV_LIST && (x->flags & JV_TUPLE)) {
        for (size_t i = 0; i < x->u.list->n; i++) {
            CELLM_TRY(affix(c, n, s, &x->u.list->v[i], end, r));
            if (*r) return CELLM_OK;
        }
        return CELLM_OK;
    }
    if (!x || x->kind != JV_STR)
        return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                "%s first arg must be str or a tuple of str",
                                end ? "endswith" : "startswith");
    *r = x->len <= s->len && memcmp(s->u.s + (end ? s->len - x->len : 0), x->u.s, x->len) == 0;
    return CELLM_OK;
}

static int64_t int_arg(const jval *v, int64_t def)
{
    return v && (v->kind == JV_INT || v->kind == JV_BOOL) ? v->u.i : def;
}

enum cellm_status cellm_jinja_call_method(struct cellm_jinja_ctx *c, const node *n, const jval *m,
                                          jval *args, const char **names, int nargs, jval *out)
{
    const jval *self = m->u.self;
    const jval *a0 = cellm_jinja_arg(args, names, nargs, 0, NULL),
               *a1 = cellm_jinja_arg(args, names, nargs, 1, NULL);
    int r = 0;
    struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
    switch (m->fn) {
    case M_STARTSWITH:
    case M_ENDSWITH:
        CELLM_TRY(affix(c, n, self, a0, m->fn == M_ENDSWITH, &r));
        *out = cellm_jinja_bool(r);
        return CELLM_OK;
    case M_SPLIT:
    case M_RSPLIT:
        return split(c, n, self, a0 ? a0 : cellm_jinja_arg(args, names, nargs, 9, "sep"),
                     int_arg(a1 ? a1 : cellm_jinja_arg(args, names, nargs, 9, "maxsplit"), -1),
                     m->fn == M_RSPLIT, out);
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP:
        if (a0 && a0->kind != JV_NONE) CELLM_TRY(want_str(c, n, a0, "strip"));
        *out = cellm_jinja_strip(self, a0, m->fn == M_STRIP ? 3 : m->fn == M_LSTRIP ? 1 : 2);
        return CELLM_OK;
    case M_LOWER:
        return cellm_jinja_case(c, self, 0, out);
    case M_UPPER:
        return cellm_jinja_case(c, self, 1, out);
    case M_TITLE:
        return cellm_jinja_case(c, self, 2, out);
    case M_CAPITALIZE:
        return cellm_jinja_case(c, self, 3, out);
    case M_REPLACE: {
        const jval *a2 = cellm_jinja_arg(args, names, nargs, 2, "count");
        if (!a0 || !a1 || a0->kind != JV_STR || a1->kind != JV_STR)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "replace() takes two strings");
        return cellm_jinja_replace(c, self, a0, a1, int_arg(a2, -1), out);
    }
    case M_FIND:
    case M_COUNT: {
        CELLM_TRY(want_str(c, n, a0 ? a0 : self, m->fn == M_FIND ? "find" : "count"));
        if (!a0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "missing argument");
        if (a1)
            return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                    "unsupported: find/count with start or end");
        int64_t cnt = 0;
        const char *hit = a0->len ? memmem(self->u.s, self->len, a0->u.s, a0->len) : self->u.s;
        if (m->fn == M_FIND) {
            *out = cellm_jinja_int(
                hit ? (int64_t)cellm_jinja_utf8_count(self->u.s, (size_t)(hit - self->u.s)) : -1);
            return CELLM_OK;
        }
        if (!a0->len) {
            *out = cellm_jinja_int((int64_t)cellm_jinja_utf8_count(self->u.s, self->len) + 1);
            return CELLM_OK;
        }
        for (size_t i = 0; (hit = memmem(self->u.s + i, self->len - i, a0->u.s, a0->len));) {
            cnt++;
            i = (size_t)(hit - self->u.s) + a0->len;
        }
        *out = cellm_jinja_int(cnt);
        return CELLM_OK;
    }
    case M_JOIN: {
        struct cellm_jinja_list *l;
        if (!a0) return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "join() takes one argument");
        CELLM_TRY(cellm_jinja_iter_list(c, a0, &l));
        for (size_t i = 0; i < l->n; i++) {
            if (l->v[i].kind != JV_STR) {
                cellm_free(b.p);
                return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                        "sequence item %zu: expected str instance, %s found", i,
                                        cellm_jinja_kind_name(&l->v[i]));
            }
            if (i) cellm_jinja_buf_put(&b, self->u.s, self->len);
            cellm_jinja_buf_put(&b, l->v[i].u.s, l->v[i].len);
        }
        return take(c, &b, out);
    }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        const struct cellm_jinja_dict *d = self->u.dict;
        CELLM_TRY(cellm_jinja_new_list(c, out));
        for (size_t i = 0; i < d->n; i++) {
            jval e = m->fn == M_KEYS ? d->k[i] : d->v[i];
            if (m->fn == M_ITEMS) {
                CELLM_TRY(cellm_jinja_new_list(c, &e));
                e.flags = JV_TUPLE;
                CELLM_TRY(cellm_jinja_list_push(c, e.u.list, &d->k[i]));
                CELLM_TRY(cellm_jinja_list_push(c, e.u.list, &d->v[i]));
            }
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &e));
        }
        return CELLM_OK;
    }
    case M_GET: {
        if (!a0)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "get expected at least 1 argument");
        jval *v = cellm_jinja_dict_get(self->u.dict, a0);
        *out = v ? *v : a1 ? *a1 : cellm_jinja_none();
        return CELLM_OK;
    }
    case M_CYCLE: {
        if (nargs == 0)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "no items for cycling given");
        *out = args[self->u.loop->index0 % (size_t)nargs];
        return CELLM_OK;
    }
    default: {
        const node *callee = n->a;
        return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED, "unsupported: str method '%.*s'",
                                callee && callee->name ? (int)callee->name_len : 1,
                                callee && callee->name ? callee->name : "?");
    }
    }
}

/* ---- globals -------------------------------------------------------------------------- */

enum cellm_status cellm_jinja_call_global(struct cellm_jinja_ctx *c, const node *n, int id,
                                          jval *args, const char **names, int nargs, jval *out)
{
    switch (id) {
    case G_RANGE: {
        int64_t v[3] = {0, 0, 1};
        int npos = 0;
        for (int i = 0; i < nargs; i++) {
            if ((names && names[i]) || npos >= 3 ||
                (args[i].kind != JV_INT && args[i].kind != JV_BOOL))
                return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT,
                                        "range() takes one to three integers");
            v[npos++] = args[i].u.i;
        }
        if (npos == 0)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "range expected 1 argument, got 0");
        if (npos == 1) {
            v[1] = v[0];
            v[0] = 0;
        }
        if (v[2] == 0)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "range() arg 3 must not be zero");
        CELLM_TRY(cellm_jinja_new_list(c, out));
        for (int64_t i = v[0]; v[2] > 0 ? i < v[1] : i > v[1]; i += v[2]) {
            if (out->u.list->n >= 100000)
                return cellm_jinja_fail(c, n, CELLM_ERR_RANGE,
                                        "Range too big. The sandbox blocks ranges larger than "
                                        "MAX_RANGE (100000).");
            jval x = cellm_jinja_int(i);
            CELLM_TRY(cellm_jinja_list_push(c, out->u.list, &x));
            if ((v[2] > 0 && i > INT64_MAX - v[2]) || (v[2] < 0 && i < INT64_MIN - v[2])) break;
        }
        return CELLM_OK;
    }
    case G_NAMESPACE:
    case G_DICT:
        CELLM_TRY(cellm_jinja_new_dict(c, id == G_NAMESPACE, out));
        for (int i = 0; i < nargs; i++) {
            if (names && names[i]) {
                jval k = cellm_jinja_str(names[i], strlen(names[i]));
                CELLM_TRY(cellm_jinja_dict_set(c, out->u.dict, &k, &args[i]));
            } else if (args[i].kind == JV_DICT || args[i].kind == JV_NS) {
                for (size_t k = 0; k < args[i].u.dict->n; k++)
                    CELLM_TRY(cellm_jinja_dict_set(c, out->u.dict, &args[i].u.dict->k[k],
                                                   &args[i].u.dict->v[k]));
            } else {
                return cellm_jinja_fail(c, n, CELLM_ERR_UNSUPPORTED,
                                        "unsupported: positional argument to %s()", globals[id]);
            }
        }
        return CELLM_OK;
    case G_RAISE: {
        struct cellm_jinja_buf b = {.max = 400};
        if (nargs > 0) (void)cellm_jinja_to_str(c, &args[0], &b);
        enum cellm_status st =
            cellm_jinja_fail(c, n, CELLM_ERR_ARG, "raise_exception: %s", b.p ? b.p : "");
        cellm_free(b.p);
        return st;
    }
    case G_STRFTIME: {
        if (nargs != 1 || args[0].kind != JV_STR)
            return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "strftime_now() takes one string");
        char fmt[256], res[512];
        if (args[0].len >= sizeof fmt)
            return cellm_jinja_fail(c, n, CELLM_ERR_RANGE, "strftime_now format too long");
        memcpy(fmt, args[0].u.s, args[0].len);
        fmt[args[0].len] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t k = fmt[0] ? strftime(res, sizeof res, fmt, &tm) : 0;
        struct cellm_jinja_buf b = {.max = JINJA_MAX_OUTPUT};
        cellm_jinja_buf_put(&b, res, k);
        return take(c, &b, out);
    }
    }
    return cellm_jinja_fail(c, n, CELLM_ERR_FORMAT, "unknown global");
}
