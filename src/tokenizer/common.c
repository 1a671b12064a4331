/*
 * common.c: small shared pieces of the tokenizer: growable buffers, piece lists, id
 * vectors, the byte-level alphabet, lossy UTF-8, and String/Regex patterns.
 *
 * Patterns report their matches as (start, end, is_match) byte triples that cover the
 * whole input, which is the form every Split behaviour and Replace can be written over.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tok.h"
#include "tokenizer/unicode.h"

int cellm_tok_buf_put(struct cellm_tok_buf *b, const void *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = cellm_realloc(b->p, cap);
        if (!p) return 0;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

int cellm_tok_pieces_add(struct cellm_tok_pieces *p, const char *s, size_t len, int at0)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        size_t *sp = cellm_realloc(p->span, 2 * cap * sizeof *sp);
        if (!sp) return 0;
        p->span = sp;
        uint8_t *a = cellm_realloc(p->at0, cap);
        if (!a) return 0;
        p->at0 = a;
        p->cap = cap;
    }
    size_t off = p->text.n;
    if (!cellm_tok_buf_put(&p->text, s, len)) return 0;
    p->span[2 * p->n] = off;
    p->span[2 * p->n + 1] = len;
    p->at0[p->n] = (uint8_t)at0;
    p->n++;
    return 1;
}

void cellm_tok_pieces_free(struct cellm_tok_pieces *p)
{
    cellm_free(p->text.p);
    cellm_free(p->span);
    cellm_free(p->at0);
    memset(p, 0, sizeof *p);
}

int cellm_tok_ids_push(struct cellm_tok_ids *ids, int32_t id)
{
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? 2 * ids->cap : 64;
        int32_t *v = cellm_realloc(ids->v, cap * sizeof *v);
        if (!v) return 0;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return 1;
}

/* GPT-2's alphabet: printable Latin-1 bytes stand for themselves, the other 68 bytes take
 * U+0100.. in byte order. */
uint32_t cellm_tok_byte_char(uint8_t b)
{
    if (b <= 32) return 256u + b;
    if (b >= 127 && b <= 160) return 289u + (b - 127u);
    if (b == 173) return 323;
    return b;
}

int cellm_tok_char_byte(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 255 && cp != 173)) return (int)cp;
    if (cp >= 256 && cp <= 288) return (int)(cp - 256);
    if (cp >= 289 && cp <= 322) return (int)(cp - 289 + 127);
    if (cp == 323) return 173;
    return -1;
}

enum cellm_status cellm_tok_utf8_lossy(const char *s, size_t n, struct cellm_tok_buf *b)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = cellm_utf8_next(u + i, n - i, &cp);
        if (cp != 0xFFFFFFFF) {
            i += l;
            continue;
        }
        if (!cellm_tok_buf_put(b, s + run, i - run) || !cellm_tok_buf_put(b, "\xEF\xBF\xBD", 3))
            return CELLM_ERR_NOMEM;
        i += l;
        run = i;
    }
    return cellm_tok_buf_put(b, s + run, n - run) ? CELLM_OK : CELLM_ERR_NOMEM;
}

enum cellm_status cellm_tok_pattern_parse(const cJSON *j, const char *what,
                                          struct cellm_tok_pattern *p, struct cellm_error *err)
{
    memset(p, 0, sizeof *p);
    const cJSON *s = cellm_json_get(j, "String"), *r = cellm_json_get(j, "Regex");
    if (cJSON_IsString(s)) {
        p->literal_len = strlen(s->valuestring);
        p->literal = cellm_strdup(s->valuestring);
        return p->literal ? CELLM_OK : cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    }
    if (cJSON_IsString(r)) return cellm_regex_compile(r->valuestring, what, &p->re, err);
    return cellm_errf(err, CELLM_ERR_FORMAT,
                      "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", what);
}

void cellm_tok_pattern_free(struct cellm_tok_pattern *p)
{
    cellm_free(p->literal);
    cellm_regex_free(p->re);
    memset(p, 0, sizeof *p);
}

static int trip_add(size_t **v, size_t *n, size_t *cap, size_t a, size_t b, size_t m)
{
    if (a == b) return 1;
    if (*n == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        size_t *t = cellm_realloc(*v, 3 * c * sizeof *t);
        if (!t) return 0;
        *v = t;
        *cap = c;
    }
    (*v)[3 * *n] = a;
    (*v)[3 * *n + 1] = b;
    (*v)[3 * *n + 2] = m;
    (*n)++;
    return 1;
}

/* The byte offset k code points after byte offset i of s[0..n) (as the decoding walks). */
static size_t skip_cps(const char *s, size_t n, size_t i, size_t k)
{
    uint32_t cp;
    for (; k > 0 && i < n; k--)
        i += cellm_utf8_next((const uint8_t *)s + i, n - i, &cp);
    return i;
}

enum cellm_status cellm_tok_pattern_split(const struct cellm_tok_pattern *p, const char *s,
                                          size_t n, const struct cellm_regex_limits *lim,
                                          size_t **out, size_t *count, struct cellm_error *err)
{
    size_t *v = NULL, cnt = 0, cap = 0, last = 0;
    int ok = 1;
    if (p->literal) {
        for (size_t i = 0; p->literal_len && i + p->literal_len <= n && ok;) {
            if (!memcmp(s + i, p->literal, p->literal_len)) {
                ok = trip_add(&v, &cnt, &cap, last, i, 0) &&
                     trip_add(&v, &cnt, &cap, i, i + p->literal_len, 1);
                i += p->literal_len;
                last = i;
            } else {
                i++;
            }
        }
    } else {
        /* the matcher wants code points; byte offsets are recovered by walking the text
         * alongside the matches (in order), rather than kept for every character */
        uint32_t *cps = cellm_malloc((n + 1) * sizeof *cps);
        size_t m = 0, *spans = NULL, nm = 0;
        if (!cps) return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t l = cellm_utf8_next((const uint8_t *)s + i, n - i, &cp);
            cps[m++] = cp == 0xFFFFFFFF ? 0xFFFD : cp;
            i += l;
        }
        enum cellm_status st = cellm_regex_find_all(p->re, cps, m, lim, &spans, &nm, err);
        size_t ci = 0, bi = 0; /* a code point index and its byte offset */
        for (size_t k = 0; st == CELLM_OK && k < nm && ok; k++) {
            bi = skip_cps(s, n, bi, spans[2 * k] - ci);
            size_t a = bi;
            bi = skip_cps(s, n, bi, spans[2 * k + 1] - spans[2 * k]);
            size_t b = bi;
            ci = spans[2 * k + 1];
            ok = trip_add(&v, &cnt, &cap, last, a, 0) && trip_add(&v, &cnt, &cap, a, b, 1);
            last = b;
        }
        cellm_free(cps);
        cellm_free(spans);
        if (st != CELLM_OK) {
            cellm_free(v);
            return st;
        }
    }
    if (ok) ok = trip_add(&v, &cnt, &cap, last, n, 0);
    if (!ok) {
        cellm_free(v);
        return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    *out = v;
    *count = cnt;
    return CELLM_OK;
}

enum cellm_status cellm_tok_pattern_replace(const struct cellm_tok_pattern *p, const char *s,
                                            size_t n, const char *content, size_t limit,
                                            const struct cellm_regex_limits *lim,
                                            struct cellm_tok_buf *b, struct cellm_error *err)
{
    size_t *t = NULL, cnt = 0;
    CELLM_TRY(cellm_tok_pattern_split(p, s, n, lim, &t, &cnt, err));
    int ok = 1;
    size_t cl = strlen(content), total = b->n;
    /* the size first: a long content replacing every character must not be built at all
     * when it would exceed the caller's bound */
    for (size_t k = 0; k < cnt && total <= limit; k++)
        total += t[3 * k + 2] ? cl : t[3 * k + 1] - t[3 * k];
    if (total > limit) {
        cellm_free(t);
        return cellm_errf(err, CELLM_ERR_RANGE,
                          "replace: the output would exceed %zu bytes (the pattern's content "
                          "multiplies the text)",
                          limit);
    }
    for (size_t k = 0; k < cnt && ok; k++)
        ok = t[3 * k + 2] ? cellm_tok_buf_put(b, content, cl)
                          : cellm_tok_buf_put(b, s + t[3 * k], t[3 * k + 1] - t[3 * k]);
    if (ok && !b->p) ok = cellm_tok_buf_put(b, "", 0);
    cellm_free(t);
    return ok ? CELLM_OK : cellm_errf(err, CELLM_ERR_NOMEM, "replace: out of memory");
}
