/*
 * normalize.c: tokenizer.json normalizers: NFC, NFD, NFKC, NFKD, Replace, Prepend,
 * Lowercase, Strip and Sequence.
 *
 * Each normalizer maps a whole string to a new string; a Sequence threads the string
 * through its members. Offsets are not tracked (cellm never reports them), which keeps
 * every step a plain string function.
 */
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tok.h"
#include "tokenizer/unicode.h"

enum { NM_NFC, NM_NFD, NM_NFKC, NM_NFKD, NM_REPLACE, NM_PREPEND, NM_LOWER, NM_STRIP, NM_SEQ };

struct cellm_tok_norm {
    int kind;
    struct cellm_tok_pattern pat;
    char *content; /* Replace content, Prepend text */
    int left, right;
    struct cellm_tok_norm **kids;
    size_t nkids;
};

void cellm_tok_norm_free(struct cellm_tok_norm *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->nkids; i++)
        cellm_tok_norm_free(n->kids[i]);
    cellm_free(n->kids);
    cellm_tok_pattern_free(&n->pat);
    cellm_free(n->content);
    cellm_free(n);
}

enum cellm_status cellm_tok_norm_parse(const cJSON *j, const char *what,
                                       struct cellm_tok_norm **out, struct cellm_error *err)
{
    const char *type = NULL;
    CELLM_TRY(cellm_json_str(j, "type", what, NULL, &type, err));
    if (!type) return cellm_errf(err, CELLM_ERR_FORMAT, "%s: normalizer has no \"type\"", what);
    static const char *names[] = {"NFC",     "NFD",       "NFKC",  "NFKD",    "Replace",
                                  "Prepend", "Lowercase", "Strip", "Sequence"};
    int kind = -1;
    for (int i = 0; i < 9; i++)
        if (!strcmp(type, names[i])) kind = i;
    if (kind < 0)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: normalizer type \"%s\" is not supported by cellm", what, type);
    struct cellm_tok_norm *n = cellm_calloc(1, sizeof *n);
    if (!n) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    n->kind = kind;
    enum cellm_status st = CELLM_OK;
    const char *s = NULL;
    switch (kind) {
    case NM_REPLACE: {
        const cJSON *pat = cellm_json_get(j, "pattern");
        if (!pat) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Replace normalizer has no pattern", what);
            break;
        }
        if ((st = cellm_tok_pattern_parse(pat, what, &n->pat, err))) break;
        if ((st = cellm_json_str(j, "content", what, "", &s, err))) break;
        if (!(n->content = cellm_strdup(s)))
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
        break;
    }
    case NM_PREPEND:
        if ((st = cellm_json_str(j, "prepend", what, "", &s, err))) break;
        if (!(n->content = cellm_strdup(s)))
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
        break;
    case NM_STRIP:
        if (!(st = cellm_json_bool(j, "strip_left", what, 1, &n->left, err)))
            st = cellm_json_bool(j, "strip_right", what, 1, &n->right, err);
        break;
    case NM_SEQ: {
        const cJSON *list = cellm_json_get(j, "normalizers");
        if (!cJSON_IsArray(list)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Sequence normalizer has no list", what);
            break;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(list);
        n->kids = cellm_calloc(cnt ? cnt : 1, sizeof *n->kids);
        if (!n->kids) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        for (const cJSON *k = list->child; k && !st; k = k->next)
            if (!(st = cellm_tok_norm_parse(k, what, &n->kids[n->nkids], err))) n->nkids++;
        break;
    }
    default:
        break;
    }
    if (st) {
        cellm_tok_norm_free(n);
        return st;
    }
    *out = n;
    return CELLM_OK;
}

/* Output bound of a normalizer: NORM_GROWTH times its input plus NORM_SLACK bytes. */
#define NORM_GROWTH 32
#define NORM_SLACK 4096

static enum cellm_status grew(size_t limit, struct cellm_error *err)
{
    return cellm_errf(err, CELLM_ERR_RANGE,
                      "normalizer: the output grew beyond %zu bytes (%d times the input); the "
                      "tokenizer.json normalizer multiplies text",
                      limit, NORM_GROWTH);
}

/* limit: the most bytes any stage may produce (see cellm_tok_norm_apply). */
static enum cellm_status one(const struct cellm_tok_norm *nm, const char *s, size_t n, size_t limit,
                             const struct cellm_regex_limits *lim, char **out, size_t *out_len,
                             struct cellm_error *err)
{
    struct cellm_tok_buf b = {0};
    const uint8_t *u = (const uint8_t *)s;
    int ok = 1;
    switch (nm->kind) {
    case NM_NFC:
    case NM_NFD:
    case NM_NFKC:
    case NM_NFKD: {
        static const enum cellm_uni_form forms[] = {CELLM_NFC, CELLM_NFD, CELLM_NFKC, CELLM_NFKD};
        return cellm_uni_normalize(s, n, forms[nm->kind], out, out_len, err);
    }
    case NM_REPLACE:
        CELLM_TRY(cellm_tok_pattern_replace(&nm->pat, s, n, nm->content, limit, lim, &b, err));
        break;
    case NM_PREPEND:
        if (n) ok = cellm_tok_buf_put(&b, nm->content, strlen(nm->content));
        ok = ok && cellm_tok_buf_put(&b, s, n);
        break;
    case NM_LOWER:
        for (size_t i = 0; i < n && ok;) {
            uint32_t cp, lo[3];
            size_t l = cellm_utf8_next(u + i, n - i, &cp);
            if (cp == 0xFFFFFFFF) {
                ok = cellm_tok_buf_put(&b, s + i, l);
            } else {
                int k = cellm_uni_lower(cp, lo);
                for (int q = 0; q < k && ok; q++) {
                    char e[4];
                    ok = cellm_tok_buf_put(&b, e, cellm_utf8_put(lo[q], e));
                }
            }
            i += l;
        }
        ok = ok && cellm_tok_buf_put(&b, "", 0);
        break;
    case NM_STRIP: {
        size_t a = 0, z = n;
        while (nm->left && a < z) {
            uint32_t cp;
            size_t l = cellm_utf8_next(u + a, z - a, &cp);
            if (!cellm_uni_is_space(cp)) break;
            a += l;
        }
        while (nm->right && z > a) {
            size_t st = z - 1;
            while (st > a && (u[st] & 0xC0) == 0x80)
                st--;
            uint32_t cp;
            cellm_utf8_next(u + st, z - st, &cp);
            if (!cellm_uni_is_space(cp)) break;
            z = st;
        }
        ok = cellm_tok_buf_put(&b, s + a, z - a);
        break;
    }
    default: { /* NM_SEQ */
        char *cur = cellm_strndup(s, n);
        size_t cl = n;
        if (!cur) return cellm_errf(err, CELLM_ERR_NOMEM, "normalizer: out of memory");
        for (size_t k = 0; k < nm->nkids; k++) {
            char *next;
            size_t nl;
            enum cellm_status st = one(nm->kids[k], cur, cl, limit, lim, &next, &nl, err);
            cellm_free(cur);
            if (st) return st;
            if (nl > limit) {
                cellm_free(next);
                return grew(limit, err);
            }
            cur = next;
            cl = nl;
        }
        *out = cur;
        *out_len = cl;
        return CELLM_OK;
    }
    }
    ok = ok && cellm_tok_buf_put(&b, "", 0); /* never hand back NULL */
    if (!ok) {
        cellm_free(b.p);
        return cellm_errf(err, CELLM_ERR_NOMEM, "normalizer: out of memory");
    }
    *out = b.p;
    *out_len = b.n;
    return CELLM_OK;
}

enum cellm_status cellm_tok_norm_apply(const struct cellm_tok_norm *nm, const char *s, size_t n,
                                       const struct cellm_regex_limits *lim, char **out,
                                       size_t *out_len, struct cellm_error *err)
{
    /* Real normalizers grow text a few times at most (NFKC's worst single character
     * gives 18; Replace(" ", "\u2581") 3x); chained Replace steps of a hostile
     * tokenizer.json could multiply it without end, so each stage's output is bounded. */
    size_t limit =
        n > (SIZE_MAX - NORM_SLACK) / NORM_GROWTH ? SIZE_MAX : n * NORM_GROWTH + NORM_SLACK;
    enum cellm_status st = one(nm, s, n, limit, lim, out, out_len, err);
    if (!st && *out_len > limit) {
        cellm_free(*out);
        *out = NULL;
        return grew(limit, err);
    }
    return st;
}
