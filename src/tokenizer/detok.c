/*
 * detok.c: the streaming decoder.
 *
 * Decoders are not token-by-token maps (byte-level tokens split characters, byte fallback
 * spreads one character over several tokens, Metaspace treats the first token apart), so
 * each push decodes a short window of recent ids twice: the part already shown and the
 * whole window. The difference is new text; it is held back while it ends in U+FFFD, which
 * is what an incomplete UTF-8 sequence decodes to, so a caller never sees half a
 * character. Once text is shown the window moves up to the ids it came from. The
 * concatenation of all pushes equals cellm_tokenizer_decode(ids, skip_special = 1) (or 0 after
 * cellm_detok_keep_special) except
 * for a trailing incomplete character that never completed.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/tokenizer.h"

struct cellm_detok {
    const struct cellm_tokenizer *tok;
    struct cellm_tok_ids ids;
    size_t prefix, read; /* window start; end of the ids already shown */
    int skip_special;
    struct cellm_tok_buf shown, all, out;
};

enum cellm_status cellm_detok_new(const struct cellm_tokenizer *tok, struct cellm_detok **out,
                                  struct cellm_error *err)
{
    if (!tok || !out) return cellm_errf(err, CELLM_ERR_ARG, "cellm_detok_new: NULL argument");
    struct cellm_detok *d = cellm_calloc(1, sizeof *d);
    if (!d) return cellm_errf(err, CELLM_ERR_NOMEM, "detokenizer: out of memory");
    d->tok = tok;
    d->skip_special = 1;
    *out = d;
    return CELLM_OK;
}

void cellm_detok_free(struct cellm_detok *d)
{
    if (!d) return;
    cellm_free(d->ids.v);
    cellm_free(d->shown.p);
    cellm_free(d->all.p);
    cellm_free(d->out.p);
    cellm_free(d);
}

void cellm_detok_keep_special(struct cellm_detok *d, int keep)
{
    if (d) d->skip_special = !keep;
}

enum cellm_status cellm_detok_push(struct cellm_detok *d, int32_t id, const char **text,
                                   struct cellm_error *err)
{
    if (!d || !text) return cellm_errf(err, CELLM_ERR_ARG, "cellm_detok_push: NULL argument");
    if (id < 0 || id >= d->tok->size)
        return cellm_errf(err, CELLM_ERR_RANGE,
                          "detokenizer: id %d is outside the vocabulary "
                          "[0, %d)",
                          id, d->tok->size);
    if (!cellm_tok_ids_push(&d->ids, id))
        return cellm_errf(err, CELLM_ERR_NOMEM, "detokenizer: out of memory");
    d->shown.n = d->all.n = d->out.n = 0;
    const int32_t *w = d->ids.v + d->prefix;
    CELLM_TRY(
        cellm_tok_decode_raw(d->tok, w, d->read - d->prefix, d->skip_special, &d->shown, err));
    CELLM_TRY(cellm_tok_decode_raw(d->tok, w, d->ids.n - d->prefix, d->skip_special, &d->all, err));
    int incomplete = d->all.n >= 3 && !memcmp(d->all.p + d->all.n - 3, "\xEF\xBF\xBD", 3);
    if (d->all.n > d->shown.n && !incomplete) {
        size_t from = d->shown.n;
        if (memcmp(d->all.p, d->shown.p, d->shown.n)) { /* the decoder rewrote the past */
            from = 0;
            while (from < d->shown.n && d->all.p[from] == d->shown.p[from])
                from++;
            while (from > 0 && ((uint8_t)d->all.p[from] & 0xC0) == 0x80)
                from--;
        }
        if (!cellm_tok_buf_put(&d->out, d->all.p + from, d->all.n - from))
            return cellm_errf(err, CELLM_ERR_NOMEM, "detokenizer: out of memory");
        d->prefix = d->read;
        d->read = d->ids.n;
    }
    if (!cellm_tok_buf_put(&d->out, "", 0))
        return cellm_errf(err, CELLM_ERR_NOMEM, "detokenizer: out of memory");
    *text = d->out.p;
    return CELLM_OK;
}
