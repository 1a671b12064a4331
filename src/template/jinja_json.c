/*
 * jinja_json.c: json.dumps for the tojson filter, as transformers configures it.
 *
 * transformers replaces Jinja2's tojson with json.dumps(x, ensure_ascii=False, indent=indent,
 * separators=None, sort_keys=sort_keys): non-ASCII text is kept as UTF-8, only the quote,
 * backslash and control characters are escaped, key order is the insertion order, items
 * are separated by ", " without indent and by "," plus a newline with it, floats print as
 * Python's repr (NaN and Infinity as JSON-ish words), and non-string keys become strings.
 * Values that are not JSON (Undefined, namespaces, functions) fail like Python's TypeError.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "template/jinja_impl.h"

static enum cellm_status nomem(struct cellm_jinja_ctx *c)
{
    return cellm_jinja_nomem(c);
}

static enum cellm_status buf_status(struct cellm_jinja_ctx *c, struct cellm_jinja_buf *b)
{
    if (b->oom == 1) return cellm_jinja_fail(c, NULL, CELLM_ERR_NOMEM, "out of memory");
    if (b->oom == 2)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "text longer than %zu bytes", b->max);
    return CELLM_OK;
}

/* ---- json.dumps ----------------------------------------------------------------------- */

static void json_str(const char *s, size_t n, int ascii, struct cellm_jinja_buf *b)
{
    cellm_jinja_buf_putc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        }
        if (esc) {
            cellm_jinja_buf_put(b, esc, 2);
            i++;
        } else if (ch < 0x20 || (ascii && ch == 0x7F)) {
            cellm_jinja_buf_printf(b, "\\u%04x", ch);
            i++;
        } else if (ascii && ch >= 0x80) {
            size_t clen;
            uint32_t cp = cellm_jinja_utf8_decode(s, n, i, &clen);
            if (cp >= 0x10000) {
                cp -= 0x10000;
                cellm_jinja_buf_printf(b, "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                                       0xDC00 + (cp & 0x3FF));
            } else {
                cellm_jinja_buf_printf(b, "\\u%04x", cp);
            }
            i += clen;
        } else {
            cellm_jinja_buf_putc(b, (char)ch);
            i++;
        }
    }
    cellm_jinja_buf_putc(b, '"');
}

static void newline_indent(struct cellm_jinja_buf *b, int indent, int level)
{
    cellm_jinja_buf_putc(b, '\n');
    for (long i = 0; i < (long)indent * level; i++)
        cellm_jinja_buf_putc(b, ' ');
}

static enum cellm_status json_val(struct cellm_jinja_ctx *c, const jval *v, int ascii, int indent,
                                  int sort, int level, struct cellm_jinja_buf *b);

static enum cellm_status json_key(struct cellm_jinja_ctx *c, const jval *k, int ascii,
                                  struct cellm_jinja_buf *b)
{
    char tmp[64];
    switch (k->kind) {
    case JV_STR:
        json_str(k->u.s, k->len, ascii, b);
        return CELLM_OK;
    case JV_INT:
        cellm_jinja_buf_printf(b, "\"%lld\"", (long long)k->u.i);
        return CELLM_OK;
    case JV_BOOL:
        cellm_jinja_buf_put(b, k->u.i ? "\"true\"" : "\"false\"", k->u.i ? 6 : 7);
        return CELLM_OK;
    case JV_NONE:
        cellm_jinja_buf_put(b, "\"null\"", 6);
        return CELLM_OK;
    case JV_FLOAT:
        cellm_jinja_python_float(k->u.f, tmp, sizeof tmp);
        cellm_jinja_buf_printf(b, "\"%s\"", tmp);
        return CELLM_OK;
    default:
        return cellm_jinja_fail(c, NULL, CELLM_ERR_FORMAT,
                                "keys must be str, int, float, bool or None, not %s",
                                cellm_jinja_kind_name(k));
    }
}

static enum cellm_status json_dict(struct cellm_jinja_ctx *c, const struct cellm_jinja_dict *d,
                                   int ascii, int indent, int sort, int level,
                                   struct cellm_jinja_buf *b)
{
    if (d->n == 0) {
        cellm_jinja_buf_put(b, "{}", 2);
        return CELLM_OK;
    }
    size_t *order = cellm_jinja_alloc(&c->arena, d->n * sizeof *order);
    if (!order) return nomem(c);
    for (size_t i = 0; i < d->n; i++)
        order[i] = i;
    if (sort) /* insertion sort: dicts in templates are small */
        for (size_t i = 1; i < d->n; i++)
            for (size_t j = i; j > 0; j--) {
                int r;
                CELLM_TRY(cellm_jinja_compare(c, &d->k[order[j - 1]], &d->k[order[j]], &r));
                if (r <= 0) break;
                size_t t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
    cellm_jinja_buf_putc(b, '{');
    for (size_t i = 0; i < d->n; i++) {
        if (i) cellm_jinja_buf_put(b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
        if (indent >= 0) newline_indent(b, indent, level + 1);
        CELLM_TRY(json_key(c, &d->k[order[i]], ascii, b));
        cellm_jinja_buf_put(b, ": ", 2);
        CELLM_TRY(json_val(c, &d->v[order[i]], ascii, indent, sort, level + 1, b));
    }
    if (indent >= 0) newline_indent(b, indent, level);
    cellm_jinja_buf_putc(b, '}');
    return CELLM_OK;
}

static enum cellm_status json_val(struct cellm_jinja_ctx *c, const jval *v, int ascii, int indent,
                                  int sort, int level, struct cellm_jinja_buf *b)
{
    if (level > JINJA_MAX_DEPTH)
        return cellm_jinja_fail(c, NULL, CELLM_ERR_RANGE, "value nested too deeply");
    char tmp[64];
    switch (v->kind) {
    case JV_NONE:
        cellm_jinja_buf_put(b, "null", 4);
        break;
    case JV_BOOL:
        cellm_jinja_buf_put(b, v->u.i ? "true" : "false", v->u.i ? 4 : 5);
        break;
    case JV_INT:
        cellm_jinja_buf_printf(b, "%lld", (long long)v->u.i);
        break;
    case JV_FLOAT:
        if (isnan(v->u.f))
            snprintf(tmp, sizeof tmp, "NaN");
        else if (isinf(v->u.f))
            snprintf(tmp, sizeof tmp, v->u.f < 0 ? "-Infinity" : "Infinity");
        else
            cellm_jinja_python_float(v->u.f, tmp, sizeof tmp);
        cellm_jinja_buf_put(b, tmp, strlen(tmp));
        break;
    case JV_STR:
        json_str(v->u.s, v->len, ascii, b);
        break;
    case JV_LIST: {
        const struct cellm_jinja_list *l = v->u.list;
        if (l->n == 0) {
            cellm_jinja_buf_put(b, "[]", 2);
            break;
        }
        cellm_jinja_buf_putc(b, '[');
        for (size_t i = 0; i < l->n; i++) {
            if (i) cellm_jinja_buf_put(b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) newline_indent(b, indent, level + 1);
            CELLM_TRY(json_val(c, &l->v[i], ascii, indent, sort, level + 1, b));
        }
        if (indent >= 0) newline_indent(b, indent, level);
        cellm_jinja_buf_putc(b, ']');
        break;
    }
    case JV_DICT:
        CELLM_TRY(json_dict(c, v->u.dict, ascii, indent, sort, level, b));
        break;
    default:
        return cellm_jinja_fail(c, NULL, CELLM_ERR_FORMAT,
                                "Object of type %s is not JSON serializable",
                                cellm_jinja_kind_name(v));
    }
    return buf_status(c, b);
}

enum cellm_status cellm_jinja_json(struct cellm_jinja_ctx *c, const jval *v, int ensure_ascii,
                                   int indent, int sort_keys, struct cellm_jinja_buf *b)
{
    return json_val(c, v, ensure_ascii, indent, sort_keys, 0, b);
}
