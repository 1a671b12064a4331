/*
 * compile.c: the constructors of cellm.h: GBNF, JSON Schema, any JSON object, and a choice
 * of "prefix + JSON per schema + suffix" (forced tool calls). Schemas are turned into GBNF
 * text first (schema.c), so every grammar has a readable source (cellm_grammar_text) and
 * one parser.
 */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/grammar.h"

static enum cellm_status finish(struct gr_buf *b, enum cellm_status st, struct cellm_grammar **out,
                                struct cellm_error *err)
{
    if (!st && b->oom) st = cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    if (!st) {
        st = cellm_gr_parse(b->p, b->n, out, err);
        if (st) /* a bug in the converter, not in the caller's schema: say so */
            cellm_errf_prefix(err, st, "internal error in the generated grammar");
    }
    cellm_free(b->p);
    return st;
}

enum cellm_status cellm_grammar_new(enum cellm_grammar_kind kind, const char *text, size_t len,
                                    struct cellm_grammar **out, struct cellm_error *err)
{
    *out = NULL;
    struct gr_buf b = {0};
    unsigned common = 0;
    switch (kind) {
    case CELLM_GRAMMAR_GBNF:
        if (!text) return cellm_errf(err, CELLM_ERR_ARG, "grammar: no text");
        return cellm_gr_parse(text, len, out, err);
    case CELLM_GRAMMAR_JSON_SCHEMA:
        if (!text) return cellm_errf(err, CELLM_ERR_ARG, "json_schema: no text");
        return finish(&b, cellm_gr_schema_rules(text, len, "", &b, &common, err), out, err);
    case CELLM_GRAMMAR_JSON_OBJECT:
        cellm_gr_buf_puts(&b, "root ::= json-object\n");
        cellm_gr_common_rules(&b, &common, GR_C_VALUE);
        return finish(&b, CELLM_OK, out, err);
    }
    return cellm_errf(err, CELLM_ERR_ARG, "grammar: unknown kind %d", (int)kind);
}

enum cellm_status cellm_grammar_choice(const struct cellm_grammar_part *parts, int n,
                                       struct cellm_grammar **out, struct cellm_error *err)
{
    *out = NULL;
    if (!parts || n < 1) return cellm_errf(err, CELLM_ERR_ARG, "grammar choice: %d parts", n);
    struct gr_buf b = {0};
    unsigned common = 0;
    enum cellm_status st = CELLM_OK;
    cellm_gr_buf_puts(&b, "root ::= ");
    for (int i = 0; i < n; i++)
        cellm_gr_buf_printf(&b, "%sc%d", i ? " | " : "", i);
    cellm_gr_buf_puts(&b, "\n");
    for (int i = 0; i < n && !st; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%d-", i);
        cellm_gr_buf_printf(&b, "c%d ::= ", i);
        const char *pre = parts[i].prefix ? parts[i].prefix : "",
                   *suf = parts[i].suffix ? parts[i].suffix : "";
        if (*pre) cellm_gr_buf_literal(&b, pre, strlen(pre));
        cellm_gr_buf_printf(&b, " %sroot ", prefix);
        if (*suf) cellm_gr_buf_literal(&b, suf, strlen(suf));
        cellm_gr_buf_puts(&b, "\n");
        if (parts[i].schema) {
            st = cellm_gr_schema_rules(parts[i].schema, strlen(parts[i].schema), prefix, &b,
                                       &common, err);
            if (st) cellm_errf_prefix(err, st, "part %d", i);
        } else {
            cellm_gr_buf_printf(&b, "%sroot ::= json-object\n", prefix);
            cellm_gr_common_rules(&b, &common, GR_C_VALUE);
        }
    }
    return finish(&b, st, out, err);
}
