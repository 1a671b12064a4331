/*
 * unicode.c: lookups in the generated Unicode tables, UTF-8 coding, and normalization.
 *
 * Normalization follows UAX #15 directly: decompose every code point (fully expanded
 * canonical or compatibility mappings from the tables, Hangul by arithmetic), put runs of
 * non-starters in canonical order with a stable sort on their combining class, then, for
 * the composed forms, combine each character with the last starter unless a character of
 * equal or higher class sits between them. Text below U+0300 is already normalized in every
 * form except the compatibility ones, which gives a fast path for ASCII-heavy input.
 */
#include "tokenizer/unicode.h"

#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

static size_t search_u32(const uint32_t *a, size_t n, size_t stride, uint32_t key, uint32_t shift)
{
    size_t lo = 0, hi = n / stride;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        uint32_t v = a[mid * stride] >> shift;
        if (v == key) return mid;
        if (v < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

int cellm_uni_cat(uint32_t cp)
{
    if (cp < 0x800) return cellm_uni_cat_lo[cp];
    if (cp > 0x10FFFF) return CELLM_UC_Cn;
    size_t lo = 0, hi = cellm_uni_cat_ranges_n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((cellm_uni_cat_ranges[mid] >> 5) <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (int)(cellm_uni_cat_ranges[lo] & 31);
}

int cellm_uni_is_space(uint32_t cp)
{
    if (cp < 0x80) return cp == ' ' || (cp >= 9 && cp <= 13);
    for (size_t i = 0; i < cellm_uni_space_n; i += 2)
        if (cp >= cellm_uni_space[i] && cp <= cellm_uni_space[i + 1]) return 1;
    return 0;
}

int cellm_uni_is_word(uint32_t cp)
{
    int c = cellm_uni_cat(cp);
    return cp == '_' || (c >= CELLM_UC_Lu && c <= CELLM_UC_Lo) ||
           (c >= CELLM_UC_Nd && c <= CELLM_UC_No);
}

static uint32_t pair_lookup(const uint32_t *tab, size_t n, uint32_t cp)
{
    size_t i = search_u32(tab, n, 2, cp, 0);
    return i == (size_t)-1 ? cp : tab[2 * i + 1];
}

uint32_t cellm_uni_fold(uint32_t cp)
{
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return pair_lookup(cellm_uni_fold_tab, cellm_uni_fold_tab_n, cp);
}

int cellm_uni_lower(uint32_t cp, uint32_t out[3])
{
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    if (cp == 0x130) { /* the one unconditional multi-character lowercase mapping */
        out[0] = 0x69;
        out[1] = 0x307;
        return 2;
    }
    out[0] = pair_lookup(cellm_uni_lower_tab, cellm_uni_lower_tab_n, cp);
    return 1;
}

size_t cellm_utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    size_t len;
    uint32_t c, lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
        c = b & 0x1F;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        c = b & 0x0F;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        c = b & 0x07;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
    } else {
        *cp = 0xFFFFFFFF;
        return 1;
    }
    for (size_t i = 1; i < len; i++) {
        if (i >= n || s[i] < lo || s[i] > hi) {
            *cp = 0xFFFFFFFF;
            return i;
        }
        c = (c << 6) | (s[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    *cp = c;
    return len;
}

size_t cellm_utf8_put(uint32_t cp, char *out)
{
    uint8_t *o = (uint8_t *)out;
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | (cp >> 6));
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | (cp >> 12));
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | (cp >> 18));
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

size_t cellm_utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t l = cellm_utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFFFFFF) break;
        i += l;
    }
    return i;
}

/* ---- normalization -------------------------------------------------------------------- */

enum { SBASE = 0xAC00, LBASE = 0x1100, VBASE = 0x1161, TBASE = 0x11A7 };
enum { LCOUNT = 19, VCOUNT = 21, TCOUNT = 28, NCOUNT = VCOUNT * TCOUNT, SCOUNT = LCOUNT * NCOUNT };

static int ccc_of(uint32_t cp)
{
    if (cp < 0x300) return 0;
    size_t i = search_u32(cellm_uni_ccc, cellm_uni_ccc_n, 1, cp, 8);
    return i == (size_t)-1 ? 0 : (int)(cellm_uni_ccc[i] & 0xFF);
}

/* A growable code point buffer; a byte value that is not UTF-8 is kept as 0x80000000|b. */
struct cpbuf {
    uint32_t *v;
    size_t n, cap;
};

static int cp_push(struct cpbuf *b, uint32_t cp)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        uint32_t *v = cellm_realloc(b->v, cap * sizeof *v);
        if (!v) return 0;
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = cp;
    return 1;
}

static int decompose(struct cpbuf *b, uint32_t cp, int compat)
{
    if (cp >= SBASE && cp < SBASE + SCOUNT) {
        uint32_t s = cp - SBASE;
        if (!cp_push(b, LBASE + s / NCOUNT) || !cp_push(b, VBASE + (s % NCOUNT) / TCOUNT)) return 0;
        return s % TCOUNT ? cp_push(b, TBASE + s % TCOUNT) : 1;
    }
    if (cp >= 0xA0) {
        const uint32_t *cps = compat ? cellm_uni_compat_cp : cellm_uni_canon_cp;
        const uint32_t *info = compat ? cellm_uni_compat_info : cellm_uni_canon_info;
        const uint32_t *pool = compat ? cellm_uni_compat_pool : cellm_uni_canon_pool;
        size_t n = compat ? cellm_uni_compat_cp_n : cellm_uni_canon_cp_n;
        size_t i = search_u32(cps, n, 1, cp, 0);
        if (i != (size_t)-1) {
            for (uint32_t k = 0; k < (info[i] & 31); k++)
                if (!cp_push(b, pool[(info[i] >> 5) + k])) return 0;
            return 1;
        }
    }
    return cp_push(b, cp);
}

static uint32_t compose_pair(uint32_t a, uint32_t b)
{
    if (a >= LBASE && a < LBASE + LCOUNT && b >= VBASE && b < VBASE + VCOUNT)
        return SBASE + ((a - LBASE) * VCOUNT + (b - VBASE)) * TCOUNT;
    if (a >= SBASE && a < SBASE + SCOUNT && (a - SBASE) % TCOUNT == 0 && b > TBASE &&
        b < TBASE + TCOUNT)
        return a + (b - TBASE);
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = cellm_uni_comp_key_n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cellm_uni_comp_key[mid] == key) return cellm_uni_comp_val[mid];
        if (cellm_uni_comp_key[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static void canonical_order(uint32_t *v, size_t n)
{
    /* insertion sort of each run of non-starters by class (stable) */
    for (size_t i = 1; i < n; i++) {
        int c = ccc_of(v[i]);
        if (c == 0) continue;
        size_t j = i;
        uint32_t x = v[i];
        while (j > 0 && ccc_of(v[j - 1]) > c) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
}

static size_t compose(uint32_t *v, size_t n)
{
    size_t starter = (size_t)-1, out = 0;
    int last_ccc = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = v[i];
        int c = (cp & 0x80000000u) ? 0 : ccc_of(cp);
        if (starter != (size_t)-1 && !(cp & 0x80000000u) &&
            (out == starter + 1 || (last_ccc != 0 && last_ccc < c))) {
            uint32_t comp = compose_pair(v[starter], cp);
            if (comp) {
                v[starter] = comp;
                continue;
            }
        }
        if (c == 0) {
            starter = (cp & 0x80000000u) ? (size_t)-1 : out;
            last_ccc = 0;
        } else {
            last_ccc = c;
        }
        v[out++] = cp;
    }
    return out;
}

enum cellm_status cellm_uni_normalize(const char *s, size_t n, enum cellm_uni_form form, char **out,
                                      size_t *out_len, struct cellm_error *err)
{
    const uint8_t *u = (const uint8_t *)s;
    int compat = form == CELLM_NFKC || form == CELLM_NFKD;
    int comp = form == CELLM_NFC || form == CELLM_NFKC;
    size_t i = 0;
    while (i < n && u[i] < 0x80)
        i++;
    int fast = 1;
    for (size_t j = i; j < n && fast; j++) /* below U+0300 is stable in NFC */
        fast = u[j] < 0xCC && !compat && comp;
    if (i == n || fast) {
        *out = cellm_strndup(s, n);
        if (!*out) return cellm_errf(err, CELLM_ERR_NOMEM, "normalizer: out of memory");
        *out_len = n;
        return CELLM_OK;
    }
    struct cpbuf b = {0};
    for (size_t k = 0; k < n;) {
        uint32_t cp;
        size_t l = cellm_utf8_next(u + k, n - k, &cp);
        int ok = 1;
        if (cp == 0xFFFFFFFF) {
            for (size_t q = 0; q < l && ok; q++)
                ok = cp_push(&b, 0x80000000u | u[k + q]);
        } else {
            ok = decompose(&b, cp, compat);
        }
        if (!ok) {
            cellm_free(b.v);
            return cellm_errf(err, CELLM_ERR_NOMEM, "normalizer: out of memory");
        }
        k += l;
    }
    canonical_order(b.v, b.n);
    size_t m = comp ? compose(b.v, b.n) : b.n;
    char *o = cellm_malloc(m * 4 + 1);
    if (!o) {
        cellm_free(b.v);
        return cellm_errf(err, CELLM_ERR_NOMEM, "normalizer: out of memory");
    }
    size_t ol = 0;
    for (size_t k = 0; k < m; k++) {
        if (b.v[k] & 0x80000000u)
            o[ol++] = (char)(b.v[k] & 0xFF);
        else
            ol += cellm_utf8_put(b.v[k], o + ol);
    }
    o[ol] = 0;
    cellm_free(b.v);
    *out = o;
    *out_len = ol;
    return CELLM_OK;
}
