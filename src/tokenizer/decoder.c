/*
 * decoder.c: tokenizer.json decoders: ByteLevel, ByteFallback, Metaspace, Replace, Fuse,
 * Strip and Sequence.
 *
 * A decoder maps the list of token strings to a new list (the reference's decode_chain);
 * the caller concatenates the final list. ByteLevel turns GPT-2 alphabet characters back
 * into bytes and repairs invalid UTF-8 with U+FFFD per maximal invalid part; ByteFallback
 * gathers runs of <0xNN> tokens and yields their text, or one U+FFFD per byte when the run
 * is not valid UTF-8.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tok.h"
#include "tokenizer/unicode.h"

enum { D_BYTELEVEL, D_BYTEFALLBACK, D_METASPACE, D_REPLACE, D_FUSE, D_STRIP, D_SEQ };

struct cellm_tok_dec {
    int kind;
    struct cellm_tok_pattern pat;
    char *content;
    uint32_t ch; /* Metaspace replacement, Strip content */
    int prepend, start, stop;
    struct cellm_tok_dec **kids;
    size_t nkids;
};

void cellm_tok_dec_free(struct cellm_tok_dec *d)
{
    if (!d) return;
    for (size_t i = 0; i < d->nkids; i++)
        cellm_tok_dec_free(d->kids[i]);
    cellm_free(d->kids);
    cellm_tok_pattern_free(&d->pat);
    cellm_free(d->content);
    cellm_free(d);
}

static enum cellm_status one_char(const cJSON *j, const char *key, const char *def,
                                  const char *what, uint32_t *cp, struct cellm_error *err)
{
    const char *s = NULL;
    CELLM_TRY(cellm_json_str(j, key, what, def, &s, err));
    size_t n = strlen(s);
    if (!n || cellm_utf8_next((const uint8_t *)s, n, cp) != n || *cp == 0xFFFFFFFF)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: decoder %s must be one character", what, key);
    return CELLM_OK;
}

enum cellm_status cellm_tok_dec_parse(const cJSON *j, const char *what, struct cellm_tok_dec **out,
                                      struct cellm_error *err)
{
    const char *type = NULL;
    CELLM_TRY(cellm_json_str(j, "type", what, NULL, &type, err));
    if (!type) return cellm_errf(err, CELLM_ERR_FORMAT, "%s: decoder has no \"type\"", what);
    static const char *names[] = {"ByteLevel", "ByteFallback", "Metaspace", "Replace",
                                  "Fuse",      "Strip",        "Sequence"};
    int kind = -1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(type, names[i])) kind = i;
    if (kind < 0)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: decoder type \"%s\" is not supported by cellm", what, type);
    struct cellm_tok_dec *d = cellm_calloc(1, sizeof *d);
    if (!d) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    d->kind = kind;
    enum cellm_status st = CELLM_OK;
    switch (kind) {
    case D_METASPACE: {
        const char *scheme = NULL;
        int aps = 1;
        if ((st = one_char(j, "replacement", "\xE2\x96\x81", what, &d->ch, err)) ||
            (st = cellm_json_str(j, "prepend_scheme", what, NULL, &scheme, err)) ||
            (st = cellm_json_bool(j, "add_prefix_space", what, 1, &aps, err)))
            break;
        d->prepend = scheme ? strcmp(scheme, "never") != 0 : aps;
        break;
    }
    case D_REPLACE: {
        const cJSON *pat = cellm_json_get(j, "pattern");
        const char *c = NULL;
        if (!pat)
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Replace decoder has no pattern", what);
        else if (!(st = cellm_tok_pattern_parse(pat, what, &d->pat, err)) &&
                 !(st = cellm_json_str(j, "content", what, "", &c, err)) &&
                 !(d->content = cellm_strdup(c)))
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
        break;
    }
    case D_STRIP: {
        int64_t a = 0, b = 0;
        if (!(st = one_char(j, "content", " ", what, &d->ch, err)) &&
            !(st = cellm_json_int(j, "start", what, 0, &a, err)) &&
            !(st = cellm_json_int(j, "stop", what, 0, &b, err))) {
            d->start = (int)(a < 0 ? 0 : a > 1000000 ? 1000000 : a);
            d->stop = (int)(b < 0 ? 0 : b > 1000000 ? 1000000 : b);
        }
        break;
    }
    case D_SEQ: {
        const cJSON *list = cellm_json_get(j, "decoders");
        if (!cJSON_IsArray(list)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Sequence decoder has no list", what);
            break;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(list);
        if (!(d->kids = cellm_calloc(cnt ? cnt : 1, sizeof *d->kids))) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        for (const cJSON *k = list->child; k && !st; k = k->next)
            if (!(st = cellm_tok_dec_parse(k, what, &d->kids[d->nkids], err))) d->nkids++;
        break;
    }
    default:
        break;
    }
    if (st) {
        cellm_tok_dec_free(d);
        return st;
    }
    *out = d;
    return CELLM_OK;
}

static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int h = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

static int flush_bytes(struct cellm_tok_buf *bytes, struct cellm_tok_pieces *out)
{
    if (!bytes->n) return 1;
    int ok;
    if (cellm_utf8_valid_prefix((const uint8_t *)bytes->p, bytes->n) == bytes->n) {
        ok = cellm_tok_pieces_add(out, bytes->p, bytes->n, 0);
    } else {
        ok = 1;
        for (size_t i = 0; i < bytes->n && ok; i++)
            ok = cellm_tok_pieces_add(out, "\xEF\xBF\xBD", 3, 0);
    }
    bytes->n = 0;
    return ok;
}

static enum cellm_status one(const struct cellm_tok_dec *d, struct cellm_tok_pieces *in,
                             struct cellm_tok_pieces *out, struct cellm_error *err)
{
    int ok = 1;
    switch (d->kind) {
    case D_BYTELEVEL: {
        struct cellm_tok_buf raw = {0}, fixed = {0};
        for (size_t i = 0; i < in->n && ok; i++) {
            const uint8_t *s = (const uint8_t *)CELLM_PIECE(in, i);
            size_t n = CELLM_PIECE_LEN(in, i), mark = raw.n;
            int all = 1;
            for (size_t k = 0; k < n && ok && all;) {
                uint32_t cp;
                k += cellm_utf8_next(s + k, n - k, &cp);
                int b = cellm_tok_char_byte(cp);
                if (b < 0)
                    all = 0;
                else {
                    uint8_t c = (uint8_t)b;
                    ok = cellm_tok_buf_put(&raw, &c, 1);
                }
            }
            if (ok && !all) { /* not byte-level text: the token's own bytes */
                raw.n = mark;
                ok = cellm_tok_buf_put(&raw, s, n);
            }
        }
        ok = ok && cellm_tok_utf8_lossy(raw.p ? raw.p : "", raw.n, &fixed) == CELLM_OK &&
             cellm_tok_pieces_add(out, fixed.p ? fixed.p : "", fixed.n, 0);
        cellm_free(raw.p);
        cellm_free(fixed.p);
        break;
    }
    case D_BYTEFALLBACK: {
        struct cellm_tok_buf bytes = {0};
        for (size_t i = 0; i < in->n && ok; i++) {
            int b = byte_token(CELLM_PIECE(in, i), CELLM_PIECE_LEN(in, i));
            if (b >= 0) {
                uint8_t c = (uint8_t)b;
                ok = cellm_tok_buf_put(&bytes, &c, 1);
            } else {
                ok = flush_bytes(&bytes, out) &&
                     cellm_tok_pieces_add(out, CELLM_PIECE(in, i), CELLM_PIECE_LEN(in, i), 0);
            }
        }
        ok = ok && flush_bytes(&bytes, out);
        cellm_free(bytes.p);
        break;
    }
    case D_METASPACE:
        for (size_t i = 0; i < in->n && ok; i++) {
            const uint8_t *s = (const uint8_t *)CELLM_PIECE(in, i);
            size_t n = CELLM_PIECE_LEN(in, i);
            ok = cellm_tok_pieces_add(out, "", 0, 0);
            size_t start = out->text.n;
            for (size_t k = 0; k < n && ok;) {
                uint32_t cp;
                size_t l = cellm_utf8_next(s + k, n - k, &cp);
                if (cp != d->ch)
                    ok = cellm_tok_buf_put(&out->text, s + k, l);
                else if (!(i == 0 && d->prepend && out->text.n == start))
                    ok = cellm_tok_buf_put(&out->text, " ", 1);
                k += l;
            }
            out->span[2 * (out->n - 1) + 1] = out->text.n - start;
        }
        break;
    case D_REPLACE:
        for (size_t i = 0; i < in->n && ok; i++) {
            struct cellm_tok_buf b = {0};
            CELLM_TRY(cellm_tok_pattern_replace(&d->pat, CELLM_PIECE(in, i), CELLM_PIECE_LEN(in, i),
                                                d->content, SIZE_MAX, NULL, &b, err));
            ok = cellm_tok_pieces_add(out, b.p, b.n, 0);
            cellm_free(b.p);
        }
        break;
    case D_FUSE:
        ok = cellm_tok_pieces_add(out, "", 0, 0);
        for (size_t i = 0; i < in->n && ok; i++) {
            ok = cellm_tok_buf_put(&out->text, CELLM_PIECE(in, i), CELLM_PIECE_LEN(in, i));
            out->span[1] += CELLM_PIECE_LEN(in, i);
        }
        break;
    case D_STRIP:
        for (size_t i = 0; i < in->n && ok; i++) {
            const uint8_t *s = (const uint8_t *)CELLM_PIECE(in, i);
            size_t n = CELLM_PIECE_LEN(in, i), a = 0, z = n;
            for (int k = 0; k < d->start && a < z; k++) {
                uint32_t cp;
                size_t l = cellm_utf8_next(s + a, z - a, &cp);
                if (cp != d->ch) break;
                a += l;
            }
            for (int k = 0; k < d->stop && z > a; k++) {
                size_t st = z - 1;
                while (st > a && (s[st] & 0xC0) == 0x80)
                    st--;
                uint32_t cp;
                cellm_utf8_next(s + st, z - st, &cp);
                if (cp != d->ch) break;
                z = st;
            }
            ok = cellm_tok_pieces_add(out, (const char *)s + a, z - a, 0);
        }
        break;
    default:
        break;
    }
    return ok ? CELLM_OK : cellm_errf(err, CELLM_ERR_NOMEM, "decoder: out of memory");
}

enum cellm_status cellm_tok_dec_apply(const struct cellm_tok_dec *d,
                                      struct cellm_tok_pieces *pieces, struct cellm_error *err)
{
    if (d->kind == D_SEQ) {
        for (size_t i = 0; i < d->nkids; i++)
            CELLM_TRY(cellm_tok_dec_apply(d->kids[i], pieces, err));
        return CELLM_OK;
    }
    struct cellm_tok_pieces out = {0};
    enum cellm_status st = one(d, pieces, &out, err);
    if (st) {
        cellm_tok_pieces_free(&out);
        return st;
    }
    cellm_tok_pieces_free(pieces);
    *pieces = out;
    return CELLM_OK;
}

/* One token's bytes as the decoders would emit them in the middle of a text: ByteLevel
 * without the repair of invalid UTF-8 (a token may hold part of a character), byte fallback
 * tokens as their byte, Metaspace's character as a space even at the start, and no Strip
 * (which applies to a whole text). For constrained decoding, which needs the exact bytes. */
enum cellm_status cellm_tok_dec_token(const struct cellm_tok_dec *d, struct cellm_tok_buf *cur,
                                      struct cellm_error *err)
{
    struct cellm_tok_buf nb = {0};
    const uint8_t *s = (const uint8_t *)(cur->p ? cur->p : "");
    size_t n = cur->n;
    int ok = 1, b;
    switch (d->kind) {
    case D_SEQ:
        for (size_t i = 0; i < d->nkids; i++)
            CELLM_TRY(cellm_tok_dec_token(d->kids[i], cur, err));
        return CELLM_OK;
    case D_BYTELEVEL: {
        int all = 1;
        for (size_t k = 0; k < n && ok && all;) {
            uint32_t cp;
            k += cellm_utf8_next(s + k, n - k, &cp);
            if ((b = cellm_tok_char_byte(cp)) < 0) {
                all = 0;
            } else {
                uint8_t c = (uint8_t)b;
                ok = cellm_tok_buf_put(&nb, &c, 1);
            }
        }
        if (ok && !all) {
            nb.n = 0;
            ok = cellm_tok_buf_put(&nb, s, n);
        }
        break;
    }
    case D_BYTEFALLBACK:
        if ((b = byte_token((const char *)s, n)) >= 0) {
            uint8_t c = (uint8_t)b;
            ok = cellm_tok_buf_put(&nb, &c, 1);
        } else {
            ok = cellm_tok_buf_put(&nb, s, n);
        }
        break;
    case D_METASPACE:
        for (size_t k = 0; k < n && ok;) {
            uint32_t cp;
            size_t l = cellm_utf8_next(s + k, n - k, &cp);
            ok = cp == d->ch ? cellm_tok_buf_put(&nb, " ", 1) : cellm_tok_buf_put(&nb, s + k, l);
            k += l;
        }
        break;
    case D_REPLACE:
        CELLM_TRY(cellm_tok_pattern_replace(&d->pat, (const char *)s, n, d->content, SIZE_MAX, NULL,
                                            &nb, err));
        break;
    default: /* Fuse, Strip: nothing to do for one token */
        return CELLM_OK;
    }
    if (!ok) {
        cellm_free(nb.p);
        return cellm_errf(err, CELLM_ERR_NOMEM, "decoder: out of memory");
    }
    cellm_free(cur->p);
    *cur = nb;
    return CELLM_OK;
}
