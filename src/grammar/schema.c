/*
 * schema.c: JSON Schema to GBNF, and the grammar constructors of cellm.h.
 *
 * Every schema object becomes a GBNF expression; objects, arrays, references and anything
 * long become rules of their own. The grammar accepts a subset of the values the schema
 * accepts, never more: that is the contract ("fail closed"). So every keyword is looked up
 * in the table below, and one that is not supported is refused with its JSON path; where
 * a schema allows a value that the grammar cannot express cheaply, the grammar leaves it
 * out (documented in README "Structured output"):
 *  - objects list their declared properties in declared order, required ones always and
 *    optional ones possibly; extra properties appear only when there are no declared ones;
 *  - strings never use \u escapes (so lengths are counted as JSON Schema counts them);
 *  - integers and numbers have at most 15 integer digits, numbers at most 15 fraction
 *    digits and no exponent; whitespace is at most one space between tokens;
 *  - repetition counts (maxLength, maxItems) above 4096 are taken as 4096;
 *  - oneOf is taken as anyOf (its branches are assumed disjoint).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/grammar.h"

#define INT_CAP 999999999999999LL /* 15 digits: exact in a double and in JavaScript */
#define MAX_DEPTH 64

void cellm_gr_buf_put(struct gr_buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n + 1)
            c *= 2;
        char *p = cellm_realloc(b->p, c);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void cellm_gr_buf_puts(struct gr_buf *b, const char *s)
{
    cellm_gr_buf_put(b, s, strlen(s));
}

void cellm_gr_buf_printf(struct gr_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->oom = 1;
        return;
    }
    cellm_gr_buf_put(b, tmp, (size_t)n);
}

void cellm_gr_buf_literal(struct gr_buf *b, const char *s, size_t n)
{
    cellm_gr_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            cellm_gr_buf_put(b, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            cellm_gr_buf_printf(b, "\\x%02X", c);
        } else {
            cellm_gr_buf_put(b, (const char *)&c, 1);
        }
    }
    cellm_gr_buf_put(b, "\"", 1);
}

void cellm_gr_common_rules(struct gr_buf *out, unsigned *common, unsigned which)
{
    if (which & GR_C_VALUE) which |= GR_C_STRING | GR_C_NUMBER | GR_C_WS;
    if (which & GR_C_NUMBER) which |= GR_C_INT;
    unsigned add = which & ~*common;
    *common |= which;
    if (add & GR_C_WS) cellm_gr_buf_puts(out, "ws ::= \" \"?\n");
    if (add & GR_C_STRING)
        cellm_gr_buf_puts(out, "json-char ::= [^\"\\\\\\x00-\\x1F] | \"\\\\\" [\"\\\\/bfnrt]\n"
                               "json-string ::= \"\\\"\" json-char* \"\\\"\"\n");
    if (add & GR_C_INT) cellm_gr_buf_puts(out, "json-int ::= \"-\"? (\"0\" | [1-9] [0-9]{0,14})\n");
    if (add & GR_C_NUMBER)
        cellm_gr_buf_puts(out, "json-number ::= json-int (\".\" [0-9]{1,15})?\n");
    if (add & GR_C_VALUE)
        cellm_gr_buf_puts(
            out, "json-value ::= json-object | json-array | json-string | json-number | \"true\" | "
                 "\"false\" | \"null\"\n"
                 "json-object ::= \"{\" ws ( json-string ws \":\" ws json-value ws ( \",\" ws "
                 "json-string ws \":\" ws json-value ws )* )? \"}\"\n"
                 "json-array ::= \"[\" ws ( json-value ws ( \",\" ws json-value ws )* )? \"]\"\n");
}

struct ref {
    char *ref;
    char name[48];
};

struct sc {
    const cJSON *root;
    const char *prefix;
    struct gr_buf *out;
    unsigned *common;
    struct cellm_error *err;
    enum cellm_status st;
    int failed, n_rules, depth;
    struct ref *refs;
    size_t n_refs;
};

static int refuse(struct sc *c, enum cellm_status st, const char *path, const char *fmt, ...)
    CELLM_PRINTF(4, 5);
static int refuse(struct sc *c, enum cellm_status st, const char *path, const char *fmt, ...)
{
    if (c->failed) return -1;
    char msg[CELLM_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cellm_errf(c->err, st, "json_schema: %s at %s", msg, path[0] ? path : "/");
    c->failed = 1;
    c->st = st;
    return -1;
}

static void new_name(struct sc *c, char *name, size_t cap)
{
    snprintf(name, cap, "%sr%d", c->prefix, c->n_rules++);
}

/* Appends "name ::= body\n" to the output. */
static void emit_rule(struct sc *c, const char *name, const struct gr_buf *body)
{
    cellm_gr_buf_printf(c->out, "%s ::= ", name);
    cellm_gr_buf_put(c->out, body->p ? body->p : "", body->n);
    cellm_gr_buf_puts(c->out, "\n");
}

static void json_literal(struct gr_buf *e, const cJSON *v)
{
    char *t = cJSON_PrintUnformatted(v);
    if (!t) {
        e->oom = 1;
        return;
    }
    cellm_gr_buf_literal(e, t, strlen(t));
    cJSON_free(t);
}

static int gen(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e);

/* ---- integers ---- */

static void digits(struct gr_buf *e, const char *a, const char *b, int n)
{
    int zeros = 1, nines = 1;
    for (int i = 1; i < n; i++) {
        zeros &= a[i] == '0';
        nines &= b[i] == '9';
    }
    if (zeros && nines) {
        cellm_gr_buf_printf(e, "[%c-%c]", a[0], b[0]);
        if (n > 1) cellm_gr_buf_printf(e, " [0-9]{%d}", n - 1);
        return;
    }
    if (a[0] == b[0]) {
        cellm_gr_buf_printf(e, "\"%c\" ", a[0]);
        digits(e, a + 1, b + 1, n - 1);
        return;
    }
    char z[24], nn[24];
    memset(z, '0', sizeof z);
    memset(nn, '9', sizeof nn);
    cellm_gr_buf_printf(e, "(\"%c\" (", a[0]);
    digits(e, a + 1, nn, n - 1);
    cellm_gr_buf_puts(e, ")");
    if (a[0] + 1 <= b[0] - 1)
        cellm_gr_buf_printf(e, " | [%c-%c] [0-9]{%d}", a[0] + 1, b[0] - 1, n - 1);
    cellm_gr_buf_printf(e, " | \"%c\" (", b[0]);
    digits(e, z, b + 1, n - 1);
    cellm_gr_buf_puts(e, "))");
}

/* 0 <= lo <= hi: decimal forms without leading zeros. */
static void uint_range(struct gr_buf *e, long long lo, long long hi)
{
    char a[24], b[24];
    int la = snprintf(a, sizeof a, "%lld", lo), lb = snprintf(b, sizeof b, "%lld", hi), first = 1;
    cellm_gr_buf_puts(e, "(");
    for (int L = la; L <= lb; L++) {
        char x[24], y[24];
        if (L == la) {
            memcpy(x, a, (size_t)L + 1);
        } else {
            memset(x, '0', (size_t)L);
            x[0] = '1';
            x[L] = 0;
        }
        if (L == lb) {
            memcpy(y, b, (size_t)L + 1);
        } else {
            memset(y, '9', (size_t)L);
            y[L] = 0;
        }
        if (!first) cellm_gr_buf_puts(e, " | ");
        first = 0;
        cellm_gr_buf_puts(e, "(");
        digits(e, x, y, L);
        cellm_gr_buf_puts(e, ")");
    }
    cellm_gr_buf_puts(e, ")");
}

static void int_range(struct gr_buf *e, long long lo, long long hi)
{
    cellm_gr_buf_puts(e, "(");
    if (lo < 0) {
        long long alo = hi < 0 ? -hi : 1;
        cellm_gr_buf_puts(e, "\"-\" ");
        uint_range(e, alo, -lo);
        if (hi >= 0) cellm_gr_buf_puts(e, " | ");
    }
    if (hi >= 0) uint_range(e, lo > 0 ? lo : 0, hi);
    cellm_gr_buf_puts(e, ")");
}

static int is_num(const cJSON *j)
{
    return j && cJSON_IsNumber(j) && isfinite(j->valuedouble);
}

static int gen_integer(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e)
{
    const cJSON *mn = cJSON_GetObjectItemCaseSensitive(s, "minimum"),
                *mx = cJSON_GetObjectItemCaseSensitive(s, "maximum"),
                *xmn = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum"),
                *xmx = cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
    const cJSON *all[4] = {mn, mx, xmn, xmx};
    const char *names[4] = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
    for (int i = 0; i < 4; i++)
        if (all[i] && !is_num(all[i]))
            return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'%s' that is not a finite number",
                          names[i]);
    if (!mn && !mx && !xmn && !xmx) {
        cellm_gr_common_rules(c->out, c->common, GR_C_INT);
        cellm_gr_buf_puts(e, "json-int");
        return 0;
    }
    double lo = -(double)INT_CAP, hi = (double)INT_CAP;
    if (mn && ceil(mn->valuedouble) > lo) lo = ceil(mn->valuedouble);
    if (xmn && floor(xmn->valuedouble) + 1 > lo) lo = floor(xmn->valuedouble) + 1;
    if (mx && floor(mx->valuedouble) < hi) hi = floor(mx->valuedouble);
    if (xmx && ceil(xmx->valuedouble) - 1 < hi) hi = ceil(xmx->valuedouble) - 1;
    if (lo > hi)
        return refuse(c, CELLM_ERR_UNSUPPORTED, path,
                      "the bounds leave no integer (or none within 15 digits)");
    int_range(e, (long long)lo, (long long)hi);
    return 0;
}

/* ---- strings ---- */

static int count(struct sc *c, const cJSON *s, const char *key, const char *path, long *out)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!j) return 0;
    if (!is_num(j) || j->valuedouble < 0 || j->valuedouble != floor(j->valuedouble))
        return refuse(c, CELLM_ERR_FORMAT, path, "'%s' must be a non-negative integer", key);
    *out = j->valuedouble > 1e9 ? 1000000000L : (long)j->valuedouble;
    return 0;
}

static int gen_string(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e)
{
    long mn = 0, mx = -1;
    if (count(c, s, "minLength", path, &mn) || count(c, s, "maxLength", path, &mx)) return -1;
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(s, "pattern");
    cellm_gr_common_rules(c->out, c->common, GR_C_STRING);
    if (pat) {
        if (!cJSON_IsString(pat))
            return refuse(c, CELLM_ERR_FORMAT, path, "'pattern' must be a string");
        if (mn || mx >= 0)
            return refuse(c, CELLM_ERR_UNSUPPORTED, path,
                          "'pattern' together with 'minLength' or 'maxLength'");
        cellm_gr_buf_puts(e, "\"\\\"\" (");
        char where[300];
        snprintf(where, sizeof where, "json_schema: 'pattern' at %s", path[0] ? path : "/");
        enum cellm_status st = cellm_gr_pattern(pat->valuestring, e, where, c->err);
        if (st) {
            c->failed = 1;
            c->st = st;
            return -1;
        }
        cellm_gr_buf_puts(e, ") \"\\\"\"");
        return 0;
    }
    if (mx > GR_MAX_REPEAT) mx = GR_MAX_REPEAT;
    if (mn > GR_MAX_REPEAT)
        return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'minLength' above %d", GR_MAX_REPEAT);
    if (mx >= 0 && mx < mn)
        return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'maxLength' below 'minLength'");
    if (!mn && mx < 0) {
        cellm_gr_buf_puts(e, "json-string");
    } else if (mx < 0) {
        cellm_gr_buf_printf(e, "\"\\\"\" json-char{%ld,} \"\\\"\"", mn);
    } else {
        cellm_gr_buf_printf(e, "\"\\\"\" json-char{%ld,%ld} \"\\\"\"", mn, mx);
    }
    return 0;
}

/* ---- arrays and objects ---- */

static int gen_array(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e)
{
    long mn = 0, mx = -1;
    if (count(c, s, "minItems", path, &mn) || count(c, s, "maxItems", path, &mx)) return -1;
    if (mx > GR_MAX_REPEAT) mx = GR_MAX_REPEAT;
    if (mn > GR_MAX_REPEAT)
        return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'minItems' above %d", GR_MAX_REPEAT);
    if (mx >= 0 && mx < mn)
        return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'maxItems' below 'minItems'");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(s, "items");
    struct gr_buf item = {0};
    char sub[512];
    snprintf(sub, sizeof sub, "%s/items", path);
    if (items && cJSON_IsArray(items))
        return refuse(c, CELLM_ERR_UNSUPPORTED, sub, "'items' as a list (tuples)");
    if (!items) {
        cellm_gr_common_rules(c->out, c->common, GR_C_VALUE);
        cellm_gr_buf_puts(&item, "json-value");
    } else if (gen(c, items, sub, &item)) {
        cellm_free(item.p);
        return -1;
    }
    cellm_gr_common_rules(c->out, c->common, GR_C_WS);
    char name[64], iname[64];
    new_name(c, name, sizeof name);
    new_name(c, iname, sizeof iname);
    emit_rule(c, iname, &item);
    cellm_free(item.p);
    struct gr_buf b = {0};
    if (mx == 0) {
        cellm_gr_buf_puts(&b, "\"[\" ws \"]\"");
    } else {
        cellm_gr_buf_printf(&b, "\"[\" ws %s%s ws", mn ? "" : "(", iname);
        long rmn = mn ? mn - 1 : 0, rmx = mx < 0 ? -1 : mx - 1;
        if (rmx < 0)
            cellm_gr_buf_printf(&b, " (\",\" ws %s ws){%ld,}", iname, rmn);
        else if (rmx > 0)
            cellm_gr_buf_printf(&b, " (\",\" ws %s ws){%ld,%ld}", iname, rmn, rmx);
        cellm_gr_buf_printf(&b, "%s \"]\"", mn ? "" : ")?");
    }
    emit_rule(c, name, &b);
    cellm_free(b.p);
    cellm_gr_buf_puts(e, name);
    return 0;
}

static int gen_object(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e)
{
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(s, "properties"),
                *req = cJSON_GetObjectItemCaseSensitive(s, "required"),
                *add = cJSON_GetObjectItemCaseSensitive(s, "additionalProperties"), *p, *r;
    if (props && !cJSON_IsObject(props))
        return refuse(c, CELLM_ERR_FORMAT, path, "'properties' must be an object");
    if (req && !cJSON_IsArray(req))
        return refuse(c, CELLM_ERR_FORMAT, path, "'required' must be a list");
    cJSON_ArrayForEach(r, req)
    {
        if (!cJSON_IsString(r))
            return refuse(c, CELLM_ERR_FORMAT, path, "'required' must list strings");
        if (!props || !cJSON_GetObjectItemCaseSensitive(props, r->valuestring))
            return refuse(c, CELLM_ERR_UNSUPPORTED, path,
                          "required property '%.100s' that 'properties' does not declare",
                          r->valuestring);
    }
    cellm_gr_common_rules(c->out, c->common, GR_C_WS);
    int n = props ? cJSON_GetArraySize(props) : 0;
    char name[64];
    new_name(c, name, sizeof name);
    struct gr_buf b = {0};
    if (n == 0) { /* no declared properties: any keys, values per additionalProperties */
        struct gr_buf v = {0};
        char sub[512];
        snprintf(sub, sizeof sub, "%s/additionalProperties", path);
        if (add && cJSON_IsFalse(add)) {
            cellm_gr_buf_puts(&b, "\"{\" ws \"}\"");
        } else {
            if (!add || cJSON_IsTrue(add)) {
                cellm_gr_common_rules(c->out, c->common, GR_C_VALUE);
                cellm_gr_buf_puts(&v, "json-value");
            } else if (gen(c, add, sub, &v)) {
                cellm_free(v.p);
                return -1;
            }
            cellm_gr_common_rules(c->out, c->common, GR_C_STRING);
            char kv[64];
            new_name(c, kv, sizeof kv);
            cellm_gr_buf_puts(&b, "json-string ws \":\" ws ");
            cellm_gr_buf_put(&b, v.p ? v.p : "", v.n);
            cellm_gr_buf_puts(&b, " ws");
            emit_rule(c, kv, &b);
            b.n = 0;
            cellm_gr_buf_printf(&b, "\"{\" ws (%s (\",\" ws %s)*)? \"}\"", kv, kv);
        }
        cellm_free(v.p);
        emit_rule(c, name, &b);
        cellm_free(b.p);
        cellm_gr_buf_puts(e, name);
        return c->failed ? -1 : 0;
    }
    /* kv_i: one declared property; first_i / after_i: the properties from i on, when
     * nothing / something has been written before (the latter start with a comma) */
    char(*kv)[64] = cellm_calloc((size_t)n + 1, sizeof *kv);
    int *required = cellm_calloc((size_t)n + 1, sizeof *required);
    if (!kv || !required) {
        cellm_free(kv);
        cellm_free(required);
        return refuse(c, CELLM_ERR_NOMEM, path, "out of memory");
    }
    int i = 0;
    cJSON_ArrayForEach(p, props)
    {
        char sub[512];
        snprintf(sub, sizeof sub, "%s/properties/%s", path, p->string);
        struct gr_buf v = {0};
        if (gen(c, p, sub, &v)) {
            cellm_free(v.p);
            break;
        }
        cJSON_ArrayForEach(r, req) required[i] |= !strcmp(r->valuestring, p->string);
        new_name(c, kv[i], sizeof kv[i]);
        cJSON *key = cJSON_CreateString(p->string);
        b.n = 0;
        json_literal(&b, key);
        cJSON_Delete(key);
        cellm_gr_buf_puts(&b, " ws \":\" ws ");
        cellm_gr_buf_put(&b, v.p ? v.p : "", v.n);
        cellm_gr_buf_puts(&b, " ws");
        emit_rule(c, kv[i], &b);
        cellm_free(v.p);
        i++;
    }
    if (!c->failed) {
        char base[64];
        new_name(c, base, sizeof base); /* base-aI, base-fI */
        for (int k = n; k >= 0; k--) {
            char an[80], fn[80];
            snprintf(an, sizeof an, "%s-a%d", base, k);
            snprintf(fn, sizeof fn, "%s-f%d", base, k);
            b.n = 0;
            if (k == n) {
                cellm_gr_buf_puts(&b, "\"\"");
                emit_rule(c, an, &b);
                emit_rule(c, fn, &b);
                continue;
            }
            if (required[k])
                cellm_gr_buf_printf(&b, "\",\" ws %s %s-a%d", kv[k], base, k + 1);
            else
                cellm_gr_buf_printf(&b, "(\",\" ws %s)? %s-a%d", kv[k], base, k + 1);
            emit_rule(c, an, &b);
            b.n = 0;
            if (required[k])
                cellm_gr_buf_printf(&b, "%s %s-a%d", kv[k], base, k + 1);
            else
                cellm_gr_buf_printf(&b, "%s %s-a%d | %s-f%d", kv[k], base, k + 1, base, k + 1);
            emit_rule(c, fn, &b);
        }
        b.n = 0;
        cellm_gr_buf_printf(&b, "\"{\" ws %s-f0 \"}\"", base);
        emit_rule(c, name, &b);
        cellm_gr_buf_puts(e, name);
    }
    cellm_free(kv);
    cellm_free(required);
    cellm_free(b.p);
    return c->failed ? -1 : 0;
}

/* ---- dispatch ---- */

static const char *const known[] = {"type",
                                    "properties",
                                    "required",
                                    "additionalProperties",
                                    "items",
                                    "minItems",
                                    "maxItems",
                                    "enum",
                                    "const",
                                    "minimum",
                                    "maximum",
                                    "exclusiveMinimum",
                                    "exclusiveMaximum",
                                    "minLength",
                                    "maxLength",
                                    "pattern",
                                    "anyOf",
                                    "oneOf",
                                    "$ref",
                                    "$defs",
                                    "definitions",
                                    "title",
                                    "description",
                                    "$schema",
                                    "$id",
                                    "$comment",
                                    "examples",
                                    "default",
                                    "deprecated",
                                    "readOnly",
                                    "writeOnly",
                                    "uniqueItems",
                                    NULL};

static int resolve(struct sc *c, const char *ref, const char *path, struct gr_buf *e)
{
    for (size_t i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ref, ref)) {
            cellm_gr_buf_puts(e, c->refs[i].name);
            return 0;
        }
    const cJSON *t = NULL;
    if (!strcmp(ref, "#")) {
        t = c->root;
    } else if (!strncmp(ref, "#/$defs/", 8) || !strncmp(ref, "#/definitions/", 14)) {
        const char *k = strchr(ref + 2, '/') + 1;
        char key[256];
        size_t n = 0;
        for (; *k && n + 1 < sizeof key; k++) { /* JSON pointer: ~1 is '/', ~0 is '~' */
            if (*k == '/') break;
            if (k[0] == '~' && (k[1] == '0' || k[1] == '1')) {
                key[n++] = k[1] == '1' ? '/' : '~';
                k++;
            } else {
                key[n++] = *k;
            }
        }
        key[n] = 0;
        if (!*k) {
            const cJSON *defs =
                cJSON_GetObjectItemCaseSensitive(c->root, ref[2] == '$' ? "$defs" : "definitions");
            t = defs ? cJSON_GetObjectItemCaseSensitive(defs, key) : NULL;
        }
    } else {
        return refuse(c, CELLM_ERR_UNSUPPORTED, path,
                      "'$ref' to '%.100s' (only #, #/$defs/NAME and #/definitions/NAME)", ref);
    }
    if (!t) return refuse(c, CELLM_ERR_FORMAT, path, "'$ref' to '%.100s' finds nothing", ref);
    struct ref *nr = cellm_realloc(c->refs, (c->n_refs + 1) * sizeof *nr);
    if (!nr) return refuse(c, CELLM_ERR_NOMEM, path, "out of memory");
    c->refs = nr;
    struct ref *x = &c->refs[c->n_refs];
    if (!(x->ref = cellm_strdup(ref))) return refuse(c, CELLM_ERR_NOMEM, path, "out of memory");
    new_name(c, x->name, sizeof x->name);
    c->n_refs++;
    char name[48];
    memcpy(name, x->name, sizeof name);
    struct gr_buf b = {0};
    char sub[512];
    snprintf(sub, sizeof sub, "%s", ref + 1);
    if (gen(c, t, sub, &b) == 0) emit_rule(c, name, &b);
    cellm_free(b.p);
    cellm_gr_buf_puts(e, name);
    return c->failed ? -1 : 0;
}

static int type_ok(const cJSON *v, unsigned types)
{
    if (!types) return 1;
    if (cJSON_IsNull(v)) return types & 1;
    if (cJSON_IsBool(v)) return (types & 2) != 0;
    if (cJSON_IsString(v)) return (types & 4) != 0;
    if (cJSON_IsArray(v)) return (types & 32) != 0;
    if (cJSON_IsObject(v)) return (types & 64) != 0;
    if (cJSON_IsNumber(v))
        return (types & 8) || ((types & 16) && v->valuedouble == floor(v->valuedouble));
    return 0;
}

static int has_bounds(const cJSON *s)
{
    return cJSON_GetObjectItemCaseSensitive(s, "minimum") ||
           cJSON_GetObjectItemCaseSensitive(s, "maximum") ||
           cJSON_GetObjectItemCaseSensitive(s, "exclusiveMinimum") ||
           cJSON_GetObjectItemCaseSensitive(s, "exclusiveMaximum");
}

static const char *const type_names[] = {"null",    "boolean", "string", "number",
                                         "integer", "array",   "object"};

static int gen(struct sc *c, const cJSON *s, const char *path, struct gr_buf *e)
{
    if (c->failed) return -1;
    if (cJSON_IsTrue(s)) {
        cellm_gr_common_rules(c->out, c->common, GR_C_VALUE);
        cellm_gr_buf_puts(e, "json-value");
        return 0;
    }
    if (!cJSON_IsObject(s))
        return refuse(c, cJSON_IsFalse(s) ? CELLM_ERR_UNSUPPORTED : CELLM_ERR_FORMAT, path,
                      cJSON_IsFalse(s) ? "the schema 'false' (no value matches)"
                                       : "a schema must be an object or a boolean");
    if (++c->depth > MAX_DEPTH) {
        c->depth--;
        return refuse(c, CELLM_ERR_UNSUPPORTED, path, "schemas nested deeper than %d", MAX_DEPTH);
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, s)
    {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++)
            ok = !strcmp(k->string, known[i]);
        if (ok && !strcmp(k->string, "uniqueItems")) ok = cJSON_IsFalse(k);
        if (!ok) {
            c->depth--;
            return refuse(c, CELLM_ERR_UNSUPPORTED, path, "'%.100s' is not supported", k->string);
        }
    }
    /* types as a bit set, in type_names order */
    unsigned types = 0;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(s, "type"), *x;
    if (t) {
        const cJSON *one = t;
        if (cJSON_IsArray(t)) one = t->child;
        for (; one; one = cJSON_IsArray(t) ? one->next : NULL) {
            unsigned bit = 0;
            for (int i = 0; i < 7 && cJSON_IsString(one); i++)
                if (!strcmp(one->valuestring, type_names[i])) bit = 1u << i;
            if (!bit) {
                c->depth--;
                return refuse(c, CELLM_ERR_FORMAT, path, "'type' %s is not a JSON Schema type",
                              cJSON_IsString(one) ? one->valuestring : "(not a string)");
            }
            types |= bit;
        }
        if (!types) {
            c->depth--;
            return refuse(c, CELLM_ERR_FORMAT, path, "'type' is an empty list");
        }
    }
    int r = 0;
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(s, "anyOf");
    if (!any) any = cJSON_GetObjectItemCaseSensitive(s, "oneOf");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(s, "$ref");
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(s, "enum");
    const cJSON *cst = cJSON_GetObjectItemCaseSensitive(s, "const");
    int n_comb = !!any + !!ref + !!en + !!cst +
                 (cJSON_GetObjectItemCaseSensitive(s, "anyOf") &&
                  cJSON_GetObjectItemCaseSensitive(s, "oneOf"));
    if (n_comb > 1 || (n_comb && t && !en && !cst)) {
        r = refuse(c, CELLM_ERR_UNSUPPORTED, path,
                   "'anyOf', 'oneOf', '$ref', 'enum' and 'const' combined with each other or "
                   "with 'type'");
    } else if (cst || en) {
        if (en && (!cJSON_IsArray(en) || !en->child)) {
            r = refuse(c, CELLM_ERR_FORMAT, path, "'enum' must be a non-empty list");
        } else {
            int first = 1;
            cellm_gr_buf_puts(e, "(");
            for (x = cst ? cst : en->child; x; x = cst ? NULL : x->next) {
                if (!type_ok(x, types)) continue;
                if (!first) cellm_gr_buf_puts(e, " | ");
                first = 0;
                json_literal(e, x);
            }
            cellm_gr_buf_puts(e, ")");
            if (first) r = refuse(c, CELLM_ERR_UNSUPPORTED, path, "no 'enum' value has the 'type'");
        }
    } else if (ref) {
        r = cJSON_IsString(ref) ? resolve(c, ref->valuestring, path, e)
                                : refuse(c, CELLM_ERR_FORMAT, path, "'$ref' must be a string");
    } else if (any) {
        if (!cJSON_IsArray(any) || !any->child) {
            r = refuse(c, CELLM_ERR_FORMAT, path, "'%s' must be a non-empty list", any->string);
        } else {
            int i = 0;
            cellm_gr_buf_puts(e, "(");
            cJSON_ArrayForEach(x, any)
            {
                char sub[512];
                snprintf(sub, sizeof sub, "%s/%s/%d", path, any->string, i);
                if (i++) cellm_gr_buf_puts(e, " | ");
                if ((r = gen(c, x, sub, e))) break;
            }
            cellm_gr_buf_puts(e, ")");
        }
    } else {
        if (!types) { /* no type: infer from the keywords, else any value */
#define HAS(key) cJSON_GetObjectItemCaseSensitive(s, key)
            if (HAS("properties") || HAS("required") || HAS("additionalProperties"))
                types = 64;
            else if (HAS("items") || HAS("minItems") || HAS("maxItems"))
                types = 32;
            else if (HAS("minLength") || HAS("maxLength") || HAS("pattern"))
                types = 4;
            else if (HAS("minimum") || HAS("maximum") || HAS("exclusiveMinimum") ||
                     HAS("exclusiveMaximum"))
                types = 8;
#undef HAS
        }
        if (!types) {
            cellm_gr_common_rules(c->out, c->common, GR_C_VALUE);
            cellm_gr_buf_puts(e, "json-value");
        } else {
            int first = 1;
            cellm_gr_buf_puts(e, "(");
            for (int i = 0; i < 7 && !r; i++) {
                if (!(types & (1u << i))) continue;
                if (i == 3 && (types & 16))
                    continue; /* number covers integer: keep integer's bounds */
                if (!first) cellm_gr_buf_puts(e, " | ");
                first = 0;
                switch (i) {
                case 0:
                    cellm_gr_buf_puts(e, "\"null\"");
                    break;
                case 1:
                    cellm_gr_buf_puts(e, "(\"true\" | \"false\")");
                    break;
                case 2:
                    r = gen_string(c, s, path, e);
                    break;
                case 3:
                    if (has_bounds(s))
                        r = refuse(c, CELLM_ERR_UNSUPPORTED, path,
                                   "'minimum'/'maximum' on type number (supported on integer)");
                    cellm_gr_common_rules(c->out, c->common, GR_C_NUMBER);
                    cellm_gr_buf_puts(e, "json-number");
                    break;
                case 4:
                    r = gen_integer(c, s, path, e);
                    break;
                case 5:
                    r = gen_array(c, s, path, e);
                    break;
                case 6:
                    r = gen_object(c, s, path, e);
                    break;
                }
            }
            cellm_gr_buf_puts(e, ")");
        }
    }
    c->depth--;
    if (e->oom) return refuse(c, CELLM_ERR_NOMEM, path, "out of memory");
    return r || c->failed ? -1 : 0;
}

enum cellm_status cellm_gr_schema_rules(const char *schema, size_t len, const char *prefix,
                                        struct gr_buf *out, unsigned *common,
                                        struct cellm_error *err)
{
    cJSON *root = cJSON_ParseWithLength(schema, len);
    if (!root) return cellm_errf(err, CELLM_ERR_FORMAT, "json_schema: not valid JSON");
    struct sc c = {.root = root, .prefix = prefix, .out = out, .common = common, .err = err};
    struct gr_buf e = {0};
    char name[64];
    snprintf(name, sizeof name, "%sroot", prefix);
    if (gen(&c, root, "", &e) == 0) emit_rule(&c, name, &e);
    cellm_free(e.p);
    for (size_t i = 0; i < c.n_refs; i++)
        cellm_free(c.refs[i].ref);
    cellm_free(c.refs);
    cJSON_Delete(root);
    if (!c.failed && out->oom) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    return c.failed ? c.st : CELLM_OK;
}
