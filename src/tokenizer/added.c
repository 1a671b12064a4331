/*
 * added.c: added tokens: parsing their flags and cutting them out of text.
 *
 * The tokens live in a byte trie (first-child / next-sibling nodes). Matching is
 * leftmost-longest, like the reference's Aho-Corasick search: at each position the longest
 * token that starts there wins, and the scan resumes after it. single_word drops a match
 * that touches a word character; lstrip and rstrip widen a match over the white space
 * beside it, so that space does not reach the model.
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "tokenizer/added.h"
#include "tokenizer/unicode.h"

struct trie_node {
    int32_t child, sibling, token;
    uint8_t byte;
};

int cellm_tok_trie_add(struct cellm_tok_trie *t, const char *s, size_t n, int32_t token)
{
    if (!t->nodes) {
        t->nodes = cellm_malloc(64 * sizeof *t->nodes);
        if (!t->nodes) return 0;
        t->cap = 64;
        t->n = 1;
        t->nodes[0] = (struct trie_node){-1, -1, -1, 0};
    }
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b)
            c = t->nodes[c].sibling;
        if (c < 0) {
            if (t->n == t->cap) {
                struct trie_node *nn = cellm_realloc(t->nodes, 2 * t->cap * sizeof *nn);
                if (!nn) return 0;
                t->nodes = nn;
                t->cap *= 2;
            }
            c = (int32_t)t->n++;
            t->nodes[c] = (struct trie_node){-1, t->nodes[cur].child, -1, b};
            t->nodes[cur].child = c;
        }
        cur = c;
    }
    if (n && t->nodes[cur].token < 0) /* the first token of a given text wins */
        t->nodes[cur].token = token;
    if (n) t->first[(uint8_t)s[0]] = 1;
    return 1;
}

void cellm_tok_trie_free(struct cellm_tok_trie *t)
{
    cellm_free(t->nodes);
    memset(t, 0, sizeof *t);
}

/* Longest token starting at s[0..n): its index, and *len. */
static int32_t longest(const struct cellm_tok_trie *t, const char *s, size_t n, size_t *len)
{
    int32_t best = -1, cur = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != (uint8_t)s[i])
            c = t->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->nodes[cur].token >= 0) {
            best = t->nodes[cur].token;
            *len = i + 1;
        }
    }
    return best;
}

static uint32_t cp_before(const char *s, size_t i)
{
    size_t k = i - 1;
    while (k > 0 && ((uint8_t)s[k] & 0xC0) == 0x80)
        k--;
    uint32_t cp;
    cellm_utf8_next((const uint8_t *)s + k, i - k, &cp);
    return cp;
}

enum cellm_status cellm_tok_added_split(const struct cellm_tok_trie *t,
                                        const struct cellm_tok_added *toks, const char *s, size_t n,
                                        size_t **out, size_t *count, struct cellm_error *err)
{
    size_t cap = 8, cnt = 0, last = 0;
    size_t *v = cellm_malloc(3 * cap * sizeof *v);
    if (!v) return cellm_errf(err, CELLM_ERR_NOMEM, "added tokens: out of memory");
#define EMIT(a, b, k)                                                                              \
    do {                                                                                           \
        if (cnt == cap) {                                                                          \
            size_t *nv_ = cellm_realloc(v, 6 * cap * sizeof *nv_);                                 \
            if (!nv_) {                                                                            \
                cellm_free(v);                                                                     \
                return cellm_errf(err, CELLM_ERR_NOMEM, "added tokens: out of memory");            \
            }                                                                                      \
            v = nv_;                                                                               \
            cap *= 2;                                                                              \
        }                                                                                          \
        v[3 * cnt] = (a), v[3 * cnt + 1] = (b), v[3 * cnt + 2] = (k);                              \
        cnt++;                                                                                     \
    } while (0)
    for (size_t i = 0; t->nodes && i < n;) {
        size_t len = 0;
        int32_t k = t->first[(uint8_t)s[i]] ? longest(t, s + i, n - i, &len) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const struct cellm_tok_added *a = &toks[k];
        size_t b = i, e = i + len;
        if (a->single_word) {
            uint32_t cp;
            int before = b > 0 && cellm_uni_is_word(cp_before(s, b));
            int after = e < n && (cellm_utf8_next((const uint8_t *)s + e, n - e, &cp),
                                  cellm_uni_is_word(cp));
            if (before || after) {
                i++;
                continue;
            }
        }
        if (a->lstrip)
            while (b > last && cellm_uni_is_space(cp_before(s, b))) {
                size_t k2 = b - 1;
                while (k2 > last && ((uint8_t)s[k2] & 0xC0) == 0x80)
                    k2--;
                b = k2;
            }
        if (a->rstrip)
            while (e < n) {
                uint32_t cp;
                size_t l = cellm_utf8_next((const uint8_t *)s + e, n - e, &cp);
                if (!cellm_uni_is_space(cp)) break;
                e += l;
            }
        if (b > last) EMIT(last, b, (size_t)-1);
        EMIT(b, e, (size_t)k);
        last = i = e;
    }
    if (last < n) EMIT(last, n, (size_t)-1);
#undef EMIT
    *out = v;
    *count = cnt;
    return CELLM_OK;
}
