/*
 * jinja_lex.c: splits a chat template into tokens, the way transformers' jinja2 sees it.
 *
 * The source alternates between text and tags ({{ }}, {% %}, {# #}). All whitespace rules
 * are settled here, so the parser never sees them: one trailing newline of the template is
 * dropped (keep_trailing_newline off); '-' beside a tag strips all white space on that side;
 * trim_blocks drops the newline right after a block or comment tag; lstrip_blocks drops the
 * spaces and tabs between the start of a line and a block or comment tag ('+' switches either
 * off); every \r\n and \r becomes \n first. Inside tags the usual expression tokens are produced
 * (names, numbers, strings with Python escapes decoded, operators). {% raw %} blocks become
 * text. Tokens go into one growable array (cellm_malloc'd, freed by the parser); decoded
 * text lives in the template's arena.
 */
#include <stdlib.h>
#include <string.h>

#include "template/jinja_impl.h"

struct lexer {
    struct cellm_jinja_arena *arena;
    const char *src;
    size_t len, pos;
    struct cellm_jinja_token *toks;
    size_t n, cap;
    size_t at_off; /* line/col cache for monotonic lookups */
    int at_line, at_col;
    struct cellm_error *err;
};

static void where(struct lexer *lx, size_t off, int *line, int *col)
{
    if (off < lx->at_off) {
        lx->at_off = 0;
        lx->at_line = 1;
        lx->at_col = 1;
    }
    for (; lx->at_off < off && lx->at_off < lx->len; lx->at_off++) {
        if (lx->src[lx->at_off] == '\n') {
            lx->at_line++;
            lx->at_col = 1;
        } else if (((unsigned char)lx->src[lx->at_off] & 0xC0) != 0x80) {
            lx->at_col++;
        }
    }
    *line = lx->at_line;
    *col = lx->at_col;
}

static enum cellm_status fail_at(struct lexer *lx, size_t off, enum cellm_status st,
                                 const char *what)
{
    int line, col;
    where(lx, off, &line, &col);
    return cellm_errf(lx->err, st, "chat template %d:%d: %s", line, col, what);
}

static enum cellm_status push(struct lexer *lx, enum cellm_jinja_tok kind, size_t off,
                              struct cellm_jinja_token **out)
{
    if (lx->n == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 64;
        struct cellm_jinja_token *t = cellm_realloc(lx->toks, cap * sizeof *t);
        if (!t) return cellm_errf(lx->err, CELLM_ERR_NOMEM, "chat template: out of memory");
        lx->toks = t;
        lx->cap = cap;
    }
    struct cellm_jinja_token *t = &lx->toks[lx->n++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    where(lx, off, &t->line, &t->col);
    if (out) *out = t;
    return CELLM_OK;
}

static int space_at(struct lexer *lx, size_t i, size_t *clen)
{
    return cellm_jinja_is_space(lx->src, lx->len, i, clen);
}

/* Emits src[a..b) as text (the normalized source lives in the arena). */
static enum cellm_status emit_text(struct lexer *lx, size_t a, size_t b)
{
    if (a >= b) return CELLM_OK;
    struct cellm_jinja_token *t;
    CELLM_TRY(push(lx, TK_TEXT, a, &t));
    t->s = lx->src + a;
    t->len = b - a;
    return CELLM_OK;
}

static int starts(struct lexer *lx, size_t i, const char *s)
{
    size_t n = strlen(s);
    return i + n <= lx->len && memcmp(lx->src + i, s, n) == 0;
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A quoted string starting at lx->pos; Python escapes decoded, unknown ones kept. */
static enum cellm_status lex_string(struct lexer *lx)
{
    size_t start = lx->pos;
    char q = lx->src[lx->pos++];
    size_t end = lx->pos;
    while (end < lx->len && lx->src[end] != q) {
        if (lx->src[end] == '\\') end++;
        end++;
    }
    if (end >= lx->len) return fail_at(lx, start, CELLM_ERR_FORMAT, "unterminated string literal");
    struct cellm_jinja_token *t;
    CELLM_TRY(push(lx, TK_STRING, start, &t));
    char *s = cellm_jinja_alloc(lx->arena, (end - lx->pos) * 2 + 1);
    if (!s) return cellm_errf(lx->err, CELLM_ERR_NOMEM, "chat template: out of memory");
    size_t k = 0;
    for (size_t i = lx->pos; i < end; i++) {
        char ch = lx->src[i];
        if (ch != '\\') {
            s[k++] = ch;
            continue;
        }
        char e = lx->src[++i];
        int digits = 0;
        switch (e) {
        case 'n':
            s[k++] = '\n';
            break;
        case 't':
            s[k++] = '\t';
            break;
        case 'r':
            s[k++] = '\r';
            break;
        case 'b':
            s[k++] = '\b';
            break;
        case 'f':
            s[k++] = '\f';
            break;
        case 'v':
            s[k++] = '\v';
            break;
        case 'a':
            s[k++] = '\a';
            break;
        case '\\':
            s[k++] = '\\';
            break;
        case '\'':
            s[k++] = '\'';
            break;
        case '"':
            s[k++] = '"';
            break;
        case '\n':
            break;
        case 'x':
            digits = 2;
            break;
        case 'u':
            digits = 4;
            break;
        case 'U':
            digits = 8;
            break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = 0;
                int m = 0;
                while (m < 3 && i < end && lx->src[i] >= '0' && lx->src[i] <= '7')
                    cp = cp * 8 + (uint32_t)(lx->src[i++] - '0'), m++;
                i--;
                k += put_utf8(s + k, cp);
            } else {
                s[k++] = '\\';
                s[k++] = e;
            }
        }
        if (digits) {
            uint32_t cp = 0;
            for (int m = 0; m < digits; m++) {
                int h = i + 1 < end ? hexval(lx->src[i + 1]) : -1;
                if (h < 0)
                    return fail_at(lx, i, CELLM_ERR_FORMAT, "truncated \\x, \\u or \\U escape");
                cp = cp * 16 + (uint32_t)h;
                i++;
            }
            if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return fail_at(lx, i, CELLM_ERR_UNSUPPORTED,
                               "escape of a surrogate or out-of-range code point");
            k += put_utf8(s + k, cp);
        }
    }
    s[k] = 0;
    t->s = s;
    t->len = k;
    lx->pos = end + 1;
    return CELLM_OK;
}

static enum cellm_status lex_number(struct lexer *lx)
{
    size_t start = lx->pos, i = lx->pos;
    int is_float = 0;
    while (i < lx->len && (is_digit(lx->src[i]) || lx->src[i] == '_'))
        i++;
    if (i + 1 < lx->len && lx->src[i] == '.' && is_digit(lx->src[i + 1]) &&
        !(start > 0 && lx->src[start - 1] == '.')) {
        is_float = 1;
        i++;
        while (i < lx->len && (is_digit(lx->src[i]) || lx->src[i] == '_'))
            i++;
    }
    if (i < lx->len && (lx->src[i] == 'e' || lx->src[i] == 'E')) {
        size_t j = i + 1;
        if (j < lx->len && (lx->src[j] == '+' || lx->src[j] == '-')) j++;
        if (j < lx->len && is_digit(lx->src[j])) {
            is_float = 1;
            i = j;
            while (i < lx->len && is_digit(lx->src[i]))
                i++;
        }
    }
    char buf[64];
    size_t k = 0;
    for (size_t j = start; j < i && k < sizeof buf - 1; j++)
        if (lx->src[j] != '_') buf[k++] = lx->src[j];
    buf[k] = 0;
    if (i - start >= sizeof buf - 1)
        return fail_at(lx, start, CELLM_ERR_UNSUPPORTED, "number literal too long");
    struct cellm_jinja_token *t;
    CELLM_TRY(push(lx, is_float ? TK_FLOAT : TK_INT, start, &t));
    if (is_float) {
        t->f = strtod(buf, NULL);
    } else {
        char *endp;
        unsigned long long v = strtoull(buf, &endp, 10);
        if (v > INT64_MAX)
            return fail_at(lx, start, CELLM_ERR_UNSUPPORTED, "integer literal beyond 64 bits");
        t->i = (int64_t)v;
    }
    lx->pos = i;
    return CELLM_OK;
}

static const char *const ops2[] = {"//", "**", "==", "!=", "<=", ">="};
static const char ops1[] = "+-*/%~<>()[]{},.:|=";

/* Tokens of one tag until its end marker; returns the end's strip mode through *strip
 * ('-' strip after, '+' keep, 0 default). */
static enum cellm_status lex_tag(struct lexer *lx, char closer, int *strip)
{
    for (;;) {
        size_t clen;
        while (lx->pos < lx->len && space_at(lx, lx->pos, &clen))
            lx->pos += clen;
        if (lx->pos >= lx->len)
            return fail_at(lx, lx->pos, CELLM_ERR_FORMAT,
                           closer == '}' ? "unexpected end of template, expected '}}'"
                                         : "unexpected end of template, expected '%}'");
        char ch = lx->src[lx->pos];
        char end[4] = {closer, '}', 0, 0};
        if ((ch == '-' || ch == '+') && starts(lx, lx->pos + 1, end)) {
            if (ch == '+' && closer == '}')
                return fail_at(lx, lx->pos, CELLM_ERR_FORMAT, "unexpected '+'");
            *strip = ch;
            lx->pos += 3;
            return CELLM_OK;
        }
        if (starts(lx, lx->pos, end)) {
            *strip = 0;
            lx->pos += 2;
            return CELLM_OK;
        }
        if (ch == '\'' || ch == '"') {
            CELLM_TRY(lex_string(lx));
            continue;
        }
        if (is_digit(ch)) {
            CELLM_TRY(lex_number(lx));
            continue;
        }
        if (is_name_start(ch)) {
            size_t s = lx->pos;
            while (lx->pos < lx->len &&
                   (is_name_start(lx->src[lx->pos]) || is_digit(lx->src[lx->pos])))
                lx->pos++;
            struct cellm_jinja_token *t;
            CELLM_TRY(push(lx, TK_NAME, s, &t));
            t->s = lx->src + s;
            t->len = lx->pos - s;
            continue;
        }
        size_t n = 0;
        for (size_t k = 0; k < sizeof ops2 / sizeof *ops2; k++)
            if (starts(lx, lx->pos, ops2[k])) n = 2;
        if (!n && strchr(ops1, ch)) n = 1;
        if (!n) return fail_at(lx, lx->pos, CELLM_ERR_FORMAT, "unexpected character in tag");
        struct cellm_jinja_token *t;
        CELLM_TRY(push(lx, TK_OP, lx->pos, &t));
        t->s = lx->src + lx->pos;
        t->len = n;
        lx->pos += n;
    }
}

/* Index of the next "{{", "{%" or "{#" at or after i, or len. */
static size_t next_tag(struct lexer *lx, size_t i)
{
    for (; i + 1 < lx->len; i++) {
        const char *p = memchr(lx->src + i, '{', lx->len - i - 1);
        if (!p) break;
        i = (size_t)(p - lx->src);
        char c = lx->src[i + 1];
        if (c == '{' || c == '%' || c == '#') return i;
    }
    return lx->len;
}

/* If a block tag at i is "{% raw %}" (any markers), returns 1 and its end in *after. */
static int is_word_tag(struct lexer *lx, size_t i, const char *word, size_t *after, char *lm,
                       char *rm)
{
    if (!starts(lx, i, "{%")) return 0;
    size_t j = i + 2, clen;
    *lm = 0;
    if (j < lx->len && (lx->src[j] == '-' || lx->src[j] == '+')) *lm = lx->src[j++];
    while (j < lx->len && space_at(lx, j, &clen))
        j += clen;
    if (!starts(lx, j, word)) return 0;
    j += strlen(word);
    while (j < lx->len && space_at(lx, j, &clen))
        j += clen;
    *rm = 0;
    if (j < lx->len && (lx->src[j] == '-' || lx->src[j] == '+')) *rm = lx->src[j++];
    if (!starts(lx, j, "%}")) return 0;
    *after = j + 2;
    return 1;
}

enum cellm_status cellm_jinja_lex(struct cellm_jinja_arena *a, const char *src, size_t len,
                                  struct cellm_jinja_token **toks, size_t *ntoks,
                                  struct cellm_error *err)
{
    *toks = NULL;
    *ntoks = 0;
    /* Jinja2 turns every \r\n and \r of the source into \n before anything else. */
    char *norm = cellm_jinja_alloc(a, len + 1);
    if (!norm) return cellm_errf(err, CELLM_ERR_NOMEM, "chat template: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[k++] = src[i];
        }
    }
    norm[k] = 0;
    src = norm;
    len = k;
    struct lexer lx = {.arena = a, .src = src, .len = len, .at_line = 1, .at_col = 1, .err = err};
    /* keep_trailing_newline=False */
    if (lx.len && lx.src[lx.len - 1] == '\n') lx.len--;
    enum cellm_status st = CELLM_OK;
    int line_starting = 1;
    while (st == CELLM_OK) {
        size_t q = next_tag(&lx, lx.pos);
        size_t text_end = q;
        if (q < lx.len) {
            char kind = src[q + 1];
            char mod = q + 2 < lx.len ? src[q + 2] : 0;
            if (mod == '-') {
                size_t clen;
                while (text_end > lx.pos) {
                    size_t k = text_end - 1;
                    while (k > lx.pos && ((unsigned char)src[k] & 0xC0) == 0x80)
                        k--;
                    if (!cellm_jinja_is_space(src, lx.len, k, &clen)) break;
                    text_end = k;
                }
            } else if (mod != '+' && kind != '{') {
                size_t l = text_end;
                while (l > lx.pos && src[l - 1] != '\n')
                    l--;
                int ws = l < text_end;
                for (size_t k = l; k < text_end && ws;) {
                    size_t clen;
                    ws = cellm_jinja_is_space(src, lx.len, k, &clen);
                    k += clen;
                }
                if (ws && (l > lx.pos || line_starting)) text_end = l;
            }
        }
        st = emit_text(&lx, lx.pos, text_end);
        if (st != CELLM_OK || q >= lx.len) break;
        char kind = src[q + 1];
        size_t body = q + 2;
        if (body < lx.len && (src[body] == '-' || src[body] == '+')) body++;
        int strip = 0;
        size_t after;
        char lm, rm;
        if (kind == '#') {
            size_t e = body;
            while (e + 1 < lx.len && !(src[e] == '#' && src[e + 1] == '}'))
                e++;
            if (e + 1 >= lx.len) {
                st = fail_at(&lx, q, CELLM_ERR_FORMAT, "comment never closed ('#}' missing)");
                break;
            }
            if (e > body && (src[e - 1] == '-' || src[e - 1] == '+')) strip = src[e - 1];
            lx.pos = e + 2;
        } else if (kind == '%' && is_word_tag(&lx, q, "raw", &after, &lm, &rm)) {
            size_t cs = after, e = after, clen;
            if (rm == '-')
                while (cs < lx.len && cellm_jinja_is_space(src, lx.len, cs, &clen))
                    cs += clen;
            while ((e = next_tag(&lx, e)) < lx.len &&
                   !is_word_tag(&lx, e, "endraw", &after, &lm, &rm))
                e++;
            if (e >= lx.len) {
                st = fail_at(&lx, q, CELLM_ERR_FORMAT, "raw block never closed");
                break;
            }
            size_t ce = e;
            if (lm == '-')
                while (ce > cs && strchr(" \t\n\r\v\f", src[ce - 1]))
                    ce--;
            st = emit_text(&lx, cs, ce);
            if (st != CELLM_OK) break;
            lx.pos = after;
            strip = rm;
        } else {
            st = push(&lx, kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, q, NULL);
            lx.pos = body;
            if (st == CELLM_OK) st = lex_tag(&lx, kind == '{' ? '}' : '%', &strip);
            if (st == CELLM_OK)
                st = push(&lx, kind == '{' ? TK_VAR_END : TK_BLOCK_END, lx.pos - 2, NULL);
            if (st != CELLM_OK) break;
        }
        line_starting = 0;
        if (strip == '-') {
            size_t clen;
            while (lx.pos < lx.len && cellm_jinja_is_space(src, lx.len, lx.pos, &clen)) {
                line_starting = src[lx.pos] == '\n';
                lx.pos += clen;
            }
        } else if (strip == 0 && kind != '{' && lx.pos < lx.len && src[lx.pos] == '\n') {
            lx.pos++;
            line_starting = 1;
        }
    }
    if (st == CELLM_OK) st = push(&lx, TK_EOF, lx.len, NULL);
    if (st != CELLM_OK) {
        cellm_free(lx.toks);
        return st;
    }
    *toks = lx.toks;
    *ntoks = lx.n;
    return CELLM_OK;
}
