/*
 * pretok.c: tokenizer.json pre-tokenizers: Split, ByteLevel, Metaspace, Digits, Whitespace,
 * WhitespaceSplit and Sequence.
 *
 * A pre-tokenizer turns a list of pieces into a finer list. Every splitting one is written
 * as "find (start, end, is_match) triples, then group them by a delimiter behaviour"
 * (Isolated, Removed, MergedWithPrevious, MergedWithNext, Contiguous), which is how the
 * reference defines them; empty pieces are dropped. ByteLevel also rewrites each byte as a
 * character of GPT-2's printable alphabet, so the BPE vocabulary never sees raw bytes.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tok.h"
#include "tokenizer/unicode.h"

enum { PT_SPLIT, PT_BYTELEVEL, PT_METASPACE, PT_DIGITS, PT_WHITESPACE, PT_WSSPLIT, PT_SEQ };
enum { B_REMOVED, B_ISOLATED, B_PREV, B_NEXT, B_CONTIG };
enum { PS_ALWAYS, PS_FIRST, PS_NEVER };

struct cellm_tok_pre {
    int kind;
    struct cellm_tok_pattern pat;
    int behavior, invert;
    int add_prefix_space, use_regex;
    char repl[8]; /* Metaspace replacement, UTF-8 */
    size_t repl_len;
    int prepend, split;
    int individual;
    struct cellm_tok_pre **kids;
    size_t nkids;
};

static const char gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

void cellm_tok_pre_free(struct cellm_tok_pre *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nkids; i++)
        cellm_tok_pre_free(p->kids[i]);
    cellm_free(p->kids);
    cellm_tok_pattern_free(&p->pat);
    cellm_free(p);
}

static enum cellm_status parse_behavior(const cJSON *j, const char *what, int *out,
                                        struct cellm_error *err)
{
    const char *b = NULL;
    CELLM_TRY(cellm_json_str(j, "behavior", what, NULL, &b, err));
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; b && i < 5; i++)
        if (!strcmp(b, names[i])) {
            *out = i;
            return CELLM_OK;
        }
    return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "%s: Split behavior \"%s\" is not supported",
                      what, b ? b : "(missing)");
}

enum cellm_status cellm_tok_pre_parse(const cJSON *j, const char *what, struct cellm_tok_pre **out,
                                      struct cellm_error *err)
{
    const char *type = NULL;
    CELLM_TRY(cellm_json_str(j, "type", what, NULL, &type, err));
    if (!type) return cellm_errf(err, CELLM_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", what);
    static const char *names[] = {"Split",      "ByteLevel",       "Metaspace", "Digits",
                                  "Whitespace", "WhitespaceSplit", "Sequence"};
    int kind = -1;
    for (int i = 0; i < 7; i++)
        if (!strcmp(type, names[i])) kind = i;
    if (kind < 0)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: pre_tokenizer type \"%s\" is not supported by cellm", what, type);
    struct cellm_tok_pre *p = cellm_calloc(1, sizeof *p);
    if (!p) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    p->kind = kind;
    enum cellm_status st = CELLM_OK;
    switch (kind) {
    case PT_SPLIT: {
        const cJSON *pat = cellm_json_get(j, "pattern");
        if (!pat)
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Split has no pattern", what);
        else if (!(st = cellm_tok_pattern_parse(pat, what, &p->pat, err)) &&
                 !(st = parse_behavior(j, what, &p->behavior, err)))
            st = cellm_json_bool(j, "invert", what, 0, &p->invert, err);
        break;
    }
    case PT_BYTELEVEL:
        if (!(st = cellm_json_bool(j, "add_prefix_space", what, 1, &p->add_prefix_space, err)) &&
            !(st = cellm_json_bool(j, "use_regex", what, 1, &p->use_regex, err)) && p->use_regex)
            st = cellm_regex_compile(gpt2_regex, what, &p->pat.re, err);
        break;
    case PT_METASPACE: {
        const char *r = NULL, *scheme = NULL;
        int aps = 1;
        if ((st = cellm_json_str(j, "replacement", what, "\xE2\x96\x81", &r, err)) ||
            (st = cellm_json_str(j, "prepend_scheme", what, NULL, &scheme, err)) ||
            (st = cellm_json_bool(j, "add_prefix_space", what, 1, &aps, err)) ||
            (st = cellm_json_bool(j, "split", what, 1, &p->split, err)))
            break;
        uint32_t cp;
        size_t rl = strlen(r);
        if (!rl || cellm_utf8_next((const uint8_t *)r, rl, &cp) != rl || cp == 0xFFFFFFFF) {
            st = cellm_errf(err, CELLM_ERR_FORMAT,
                            "%s: Metaspace replacement must be one "
                            "character",
                            what);
            break;
        }
        memcpy(p->repl, r, rl);
        p->repl_len = rl;
        if (!scheme)
            p->prepend = aps ? PS_ALWAYS : PS_NEVER;
        else if (!strcmp(scheme, "always"))
            p->prepend = PS_ALWAYS;
        else if (!strcmp(scheme, "first"))
            p->prepend = PS_FIRST;
        else if (!strcmp(scheme, "never"))
            p->prepend = PS_NEVER;
        else
            st = cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                            "%s: Metaspace prepend_scheme \"%s\" "
                            "is not supported",
                            what, scheme);
        break;
    }
    case PT_DIGITS:
        st = cellm_json_bool(j, "individual_digits", what, 0, &p->individual, err);
        break;
    case PT_WHITESPACE:
        st = cellm_regex_compile("\\w+|[^\\w\\s]+", what, &p->pat.re, err);
        break;
    case PT_SEQ: {
        const cJSON *list = cellm_json_get(j, "pretokenizers");
        if (!cJSON_IsArray(list)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: Sequence pre_tokenizer has no list", what);
            break;
        }
        size_t cnt = (size_t)cJSON_GetArraySize(list);
        if (!(p->kids = cellm_calloc(cnt ? cnt : 1, sizeof *p->kids))) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
            break;
        }
        for (const cJSON *k = list->child; k && !st; k = k->next)
            if (!(st = cellm_tok_pre_parse(k, what, &p->kids[p->nkids], err))) p->nkids++;
        break;
    }
    default:
        break;
    }
    if (st) {
        cellm_tok_pre_free(p);
        return st;
    }
    *out = p;
    return CELLM_OK;
}

/* Groups triples t[0..n) by behaviour and appends the resulting pieces of s. */
static int group(const char *s, const size_t *t, size_t n, int behavior, int invert, int at0,
                 struct cellm_tok_pieces *out)
{
    size_t pa = 0, pb = 0;
    int have = 0, prev_match = 0;
#define FLUSH()                                                                                    \
    do {                                                                                           \
        if (have && pb > pa && !cellm_tok_pieces_add(out, s + pa, pb - pa, at0 && pa == 0))        \
            return 0;                                                                              \
        have = 0;                                                                                  \
    } while (0)
    if (behavior == B_NEXT) { /* walk right to left, merging a match into what follows */
        size_t first = out->n;
        for (size_t k = n; k-- > 0;) {
            size_t a = t[3 * k], b = t[3 * k + 1];
            int m = (int)t[3 * k + 2] ^ invert;
            if (m && !prev_match && have) {
                pa = a;
            } else {
                FLUSH();
                pa = a;
                pb = b;
                have = 1;
            }
            prev_match = m;
        }
        FLUSH();
        for (size_t i = first, j = out->n; i + 1 < j; i++, j--) { /* restore order */
            size_t s0 = out->span[2 * i], s1 = out->span[2 * i + 1];
            uint8_t z = out->at0[i];
            out->span[2 * i] = out->span[2 * (j - 1)];
            out->span[2 * i + 1] = out->span[2 * (j - 1) + 1];
            out->at0[i] = out->at0[j - 1];
            out->span[2 * (j - 1)] = s0;
            out->span[2 * (j - 1) + 1] = s1;
            out->at0[j - 1] = z;
        }
        return 1;
    }
    for (size_t k = 0; k < n; k++) {
        size_t a = t[3 * k], b = t[3 * k + 1];
        int m = (int)t[3 * k + 2] ^ invert;
        switch (behavior) {
        case B_REMOVED:
            if (!m) {
                FLUSH();
                pa = a, pb = b, have = 1;
            }
            break;
        case B_ISOLATED:
            FLUSH();
            pa = a, pb = b, have = 1;
            break;
        case B_PREV:
            if (m && !prev_match && have) {
                pb = b;
            } else {
                FLUSH();
                pa = a, pb = b, have = 1;
            }
            break;
        default: /* B_CONTIG */
            if (m == prev_match && have) {
                pb = b;
            } else {
                FLUSH();
                pa = a, pb = b, have = 1;
            }
            break;
        }
        prev_match = m;
    }
    FLUSH();
#undef FLUSH
    return 1;
}

static enum cellm_status too_many(size_t max, struct cellm_error *err)
{
    return cellm_errf(err, CELLM_ERR_RANGE, "pre-tokenizer: more than %zu pieces (stopped there)",
                      max);
}

static enum cellm_status split_pieces(const struct cellm_tok_pattern *pat, int behavior, int invert,
                                      struct cellm_tok_pieces *in, struct cellm_tok_pieces *out,
                                      const struct cellm_regex_limits *lim, struct cellm_error *err)
{
    size_t max = lim ? lim->max_matches : 0;
    struct cellm_regex_limits l = {0};
    if (lim) l = *lim;
    for (size_t i = 0; i < in->n; i++) {
        size_t *t = NULL, n = 0;
        const char *s = CELLM_PIECE(in, i);
        /* Isolated, MergedWithPrevious and MergedWithNext give every match a piece of its
         * own: more matches than pieces left means too many pieces, found without
         * searching the rest of the text. (Contiguous and Removed can fold or drop
         * matches.) */
        l.max_matches = 0;
        if (max && (behavior == B_ISOLATED || behavior == B_PREV || behavior == B_NEXT))
            l.max_matches = max > out->n ? max - out->n : 1;
        enum cellm_status st =
            cellm_tok_pattern_split(pat, s, CELLM_PIECE_LEN(in, i), &l, &t, &n, err);
        if (st)
            return st == CELLM_ERR_RANGE && l.max_matches &&
                           !strncmp(err->msg, "regex: more than", 16)
                       ? too_many(max, err)
                       : st;
        int ok = group(s, t, n, behavior, invert, in->at0[i], out);
        cellm_free(t);
        if (!ok) return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
        if (max && out->n > max) return too_many(max, err);
    }
    return CELLM_OK;
}

/* Splits by a per-character predicate (digits): classes 0 = other, 1 = delimiter. */
static enum cellm_status split_digits(int individual, struct cellm_tok_pieces *in,
                                      struct cellm_tok_pieces *out, struct cellm_error *err)
{
    for (size_t i = 0; i < in->n; i++) {
        const char *s = CELLM_PIECE(in, i);
        size_t n = CELLM_PIECE_LEN(in, i), cnt = 0;
        size_t *t = cellm_malloc((3 * n + 3) * sizeof *t);
        if (!t) return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
        for (size_t k = 0; k < n;) {
            uint32_t cp;
            size_t l = cellm_utf8_next((const uint8_t *)s + k, n - k, &cp);
            int c = cellm_uni_cat(cp);
            size_t digit = c >= CELLM_UC_Nd && c <= CELLM_UC_No;
            if (cnt && t[3 * cnt - 1] == digit && !(digit && individual)) {
                t[3 * cnt - 2] = k + l; /* extend the run */
            } else {
                t[3 * cnt] = k;
                t[3 * cnt + 1] = k + l;
                t[3 * cnt + 2] = digit;
                cnt++;
            }
            k += l;
        }
        int ok = group(s, t, cnt, B_ISOLATED, 0, in->at0[i], out);
        cellm_free(t);
        if (!ok) return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    return CELLM_OK;
}

static enum cellm_status byte_level(const struct cellm_tok_pre *p, struct cellm_tok_pieces *in,
                                    struct cellm_tok_pieces *out,
                                    const struct cellm_regex_limits *lim, struct cellm_error *err)
{
    struct cellm_tok_pieces tmp = {0};
    struct cellm_tok_pieces *src = in;
    if (p->add_prefix_space) {
        for (size_t i = 0; i < in->n; i++) {
            const char *s = CELLM_PIECE(in, i);
            size_t n = CELLM_PIECE_LEN(in, i);
            int ok = cellm_tok_pieces_add(&tmp, " ", (n && s[0] == ' ') ? 0 : 1, in->at0[i]);
            if (ok) {
                tmp.span[2 * (tmp.n - 1) + 1] += n;
                ok = cellm_tok_buf_put(&tmp.text, s, n);
            }
            if (!ok) {
                cellm_tok_pieces_free(&tmp);
                return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
            }
        }
        src = &tmp;
    }
    struct cellm_tok_pieces split = {0};
    if (p->use_regex) {
        enum cellm_status st = split_pieces(&p->pat, B_ISOLATED, 0, src, &split, lim, err);
        cellm_tok_pieces_free(&tmp);
        if (st) {
            cellm_tok_pieces_free(&split);
            return st;
        }
        src = &split;
    }
    for (size_t i = 0; i < src->n; i++) {
        const uint8_t *s = (const uint8_t *)CELLM_PIECE(src, i);
        size_t n = CELLM_PIECE_LEN(src, i);
        int ok = cellm_tok_pieces_add(out, "", 0, src->at0[i]);
        for (size_t k = 0; k < n && ok; k++) {
            char e[4];
            size_t l = cellm_utf8_put(cellm_tok_byte_char(s[k]), e);
            ok = cellm_tok_buf_put(&out->text, e, l);
            out->span[2 * (out->n - 1) + 1] += l;
        }
        if (!ok) {
            cellm_tok_pieces_free(&tmp);
            cellm_tok_pieces_free(&split);
            return cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
        }
    }
    cellm_tok_pieces_free(&tmp);
    cellm_tok_pieces_free(&split);
    return CELLM_OK;
}

static enum cellm_status metaspace(const struct cellm_tok_pre *p, struct cellm_tok_pieces *in,
                                   struct cellm_tok_pieces *out,
                                   const struct cellm_regex_limits *lim, struct cellm_error *err)
{
    struct cellm_tok_pieces tmp = {0};
    struct cellm_tok_pattern pat = {(char *)p->repl, p->repl_len, NULL};
    int ok = 1;
    for (size_t i = 0; i < in->n && ok; i++) {
        const char *s = CELLM_PIECE(in, i);
        size_t n = CELLM_PIECE_LEN(in, i);
        size_t start = tmp.text.n;
        ok = cellm_tok_pieces_add(&tmp, "", 0, in->at0[i]);
        int starts = n >= p->repl_len && !memcmp(s, p->repl, p->repl_len);
        starts = starts || (n && s[0] == ' ');
        if (ok && !starts && (p->prepend == PS_ALWAYS || (p->prepend == PS_FIRST && in->at0[i])))
            ok = cellm_tok_buf_put(&tmp.text, p->repl, p->repl_len);
        for (size_t k = 0; k < n && ok; k++)
            ok = s[k] == ' ' ? cellm_tok_buf_put(&tmp.text, p->repl, p->repl_len)
                             : cellm_tok_buf_put(&tmp.text, s + k, 1);
        if (ok) tmp.span[2 * (tmp.n - 1) + 1] = tmp.text.n - start;
    }
    enum cellm_status st = CELLM_OK;
    if (!ok) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
    } else if (p->split) {
        st = split_pieces(&pat, B_NEXT, 0, &tmp, out, lim, err);
    } else {
        for (size_t i = 0; i < tmp.n && ok; i++)
            ok = cellm_tok_pieces_add(out, CELLM_PIECE(&tmp, i), CELLM_PIECE_LEN(&tmp, i),
                                      tmp.at0[i]);
        if (!ok) st = cellm_errf(err, CELLM_ERR_NOMEM, "pre-tokenizer: out of memory");
    }
    cellm_tok_pieces_free(&tmp);
    return st;
}

enum cellm_status cellm_tok_pre_apply(const struct cellm_tok_pre *p,
                                      struct cellm_tok_pieces *pieces,
                                      const struct cellm_regex_limits *lim, struct cellm_error *err)
{
    if (p->kind == PT_SEQ) {
        for (size_t i = 0; i < p->nkids; i++)
            CELLM_TRY(cellm_tok_pre_apply(p->kids[i], pieces, lim, err));
        return CELLM_OK;
    }
    struct cellm_tok_pieces out = {0};
    enum cellm_status st;
    switch (p->kind) {
    case PT_SPLIT:
        st = split_pieces(&p->pat, p->behavior, p->invert, pieces, &out, lim, err);
        break;
    case PT_BYTELEVEL:
        st = byte_level(p, pieces, &out, lim, err);
        break;
    case PT_METASPACE:
        st = metaspace(p, pieces, &out, lim, err);
        break;
    case PT_DIGITS:
        st = split_digits(p->individual, pieces, &out, err);
        break;
    case PT_WHITESPACE:
        st = split_pieces(&p->pat, B_REMOVED, 1, pieces, &out, lim, err);
        break;
    default: { /* PT_WSSPLIT: split on white space, dropping it */
        struct cellm_tok_pattern ws = {0};
        st = cellm_regex_compile("\\s+", "WhitespaceSplit", &ws.re, err);
        if (!st) st = split_pieces(&ws, B_REMOVED, 0, pieces, &out, lim, err);
        cellm_tok_pattern_free(&ws);
        break;
    }
    }
    if (!st && lim && lim->max_matches && out.n > lim->max_matches)
        st = too_many(lim->max_matches, err);
    if (st) {
        cellm_tok_pieces_free(&out);
        return st;
    }
    cellm_tok_pieces_free(pieces);
    *pieces = out;
    return CELLM_OK;
}

int cellm_tok_pre_keeps(const struct cellm_tok_pre *p)
{
    if (!p) return 1;
    if (p->kind == PT_SEQ) {
        for (size_t i = 0; i < p->nkids; i++)
            if (!cellm_tok_pre_keeps(p->kids[i])) return 0;
        return 1;
    }
    if (p->kind == PT_SPLIT) return p->behavior != B_REMOVED;
    return p->kind == PT_BYTELEVEL || p->kind == PT_METASPACE || p->kind == PT_DIGITS;
}

int cellm_tok_pre_byte_level(const struct cellm_tok_pre *p)
{
    if (!p) return 0;
    for (size_t i = 0; p->kind == PT_SEQ && i < p->nkids; i++)
        if (cellm_tok_pre_byte_level(p->kids[i])) return 1;
    return p->kind == PT_BYTELEVEL;
}
