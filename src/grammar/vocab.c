/*
 * vocab.c: the vocabulary as the matcher sees it: each token's bytes, and a trie over them.
 *
 * The trie is stored in preorder as parallel arrays (byte, depth, end of subtree, and the
 * range of ids whose bytes end at the node, ids sorted by their bytes). A mask is one
 * linear pass over these arrays that skips a whole subtree as soon as its first byte is
 * rejected, so tokens sharing a prefix share its work, and memory is read in order.
 * Tokens without bytes (special tokens, ids beyond the tokenizer) are never in the trie:
 * a grammar never allows them (EOS is the engine's decision, from cellm_matcher_can_end).
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "grammar/vocab.h"

void cellm_grammar_vocab_free(struct cellm_grammar_vocab *v)
{
    if (!v) return;
    cellm_free(v->bytes);
    cellm_free(v->off);
    cellm_free(v->len);
    cellm_free(v->nbyte);
    cellm_free(v->ndepth);
    cellm_free(v->nend);
    cellm_free(v->ntok);
    cellm_free(v->nhere);
    cellm_free(v->sorted);
    cellm_free(v);
}

/* A merge sort of ids by their bytes (then by id): qsort has no context argument. */
static void msort(int32_t *a, int32_t *tmp, size_t n, const struct cellm_grammar_vocab *v)
{
    if (n < 2) return;
    size_t h = n / 2;
    msort(a, tmp, h, v);
    msort(a + h, tmp, n - h, v);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int32_t x = a[i], y = a[j];
        uint32_t lx = v->len[x], ly = v->len[y];
        int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], lx < ly ? lx : ly);
        if (!c) c = lx < ly ? -1 : lx > ly ? 1 : (x < y ? -1 : 1);
        tmp[k++] = c <= 0 ? a[i++] : a[j++];
    }
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

enum cellm_status cellm_grammar_vocab_from_bytes(const char *const *tokens, const size_t *lens,
                                                 int n, struct cellm_grammar_vocab **out,
                                                 struct cellm_error *err)
{
    *out = NULL;
    if (n <= 0 || !tokens || !lens)
        return cellm_errf(err, CELLM_ERR_ARG, "grammar vocabulary: %d tokens; expected >= 1", n);
    struct cellm_grammar_vocab *v = cellm_calloc(1, sizeof *v);
    if (!v) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    v->n_vocab = n;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (tokens[i] && lens[i] <= GV_MAX_LEN) total += lens[i];
    v->bytes = cellm_malloc(total + 1);
    v->off = cellm_malloc((size_t)n * sizeof *v->off);
    v->len = cellm_calloc((size_t)n, sizeof *v->len);
    v->sorted = cellm_malloc((size_t)n * sizeof *v->sorted);
    int32_t *tmp = cellm_malloc((size_t)n * sizeof *tmp);
    if (!v->bytes || !v->off || !v->len || !v->sorted || !tmp) goto nomem;
    size_t at = 0;
    int ns = 0;
    for (int i = 0; i < n; i++) {
        v->off[i] = at;
        if (!tokens[i] || !lens[i] || lens[i] > GV_MAX_LEN) continue;
        memcpy(v->bytes + at, tokens[i], lens[i]);
        v->len[i] = (uint32_t)lens[i];
        at += lens[i];
        v->sorted[ns++] = i;
        if ((int)lens[i] > v->max_len) v->max_len = (int)lens[i];
    }
    /* the content's identity: a kept matcher is reused only for the same bytes, even when a
     * new vocabulary lands at the address of a freed one */
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    for (int i = 0; i < n; i++) {
        h = (h ^ v->len[i]) * 1099511628211ULL;
        for (uint32_t k = 0; k < v->len[i]; k++)
            h = (h ^ v->bytes[v->off[i] + k]) * 1099511628211ULL;
    }
    v->hash = h;
    msort(v->sorted, tmp, (size_t)ns, v);
    v->n_sorted = ns;
    /* nodes: at most one per byte, plus the root */
    size_t cap = total + 1;
    v->nbyte = cellm_malloc(cap);
    v->ndepth = cellm_malloc(cap * sizeof *v->ndepth);
    v->nend = cellm_malloc(cap * sizeof *v->nend);
    v->ntok = cellm_malloc((cap + 1) * sizeof *v->ntok);
    uint32_t *path = cellm_malloc(((size_t)v->max_len + 1) * sizeof *path);
    if (!v->nbyte || !v->ndepth || !v->nend || !v->ntok || !path) {
        cellm_free(path);
        goto nomem;
    }
    uint32_t nn = 1;
    v->nbyte[0] = 0;
    v->ndepth[0] = 0;
    v->ntok[0] = 0;
    path[0] = 0;
    uint32_t depth = 0; /* of the open path */
    const uint8_t *prev = NULL;
    uint32_t plen = 0;
    for (int k = 0; k < ns; k++) {
        int32_t id = v->sorted[k];
        const uint8_t *s = v->bytes + v->off[id];
        uint32_t L = v->len[id], l = 0;
        while (prev && l < L && l < plen && s[l] == prev[l])
            l++;
        while (depth > l) /* close nodes deeper than the shared prefix */
            v->nend[path[depth--]] = nn;
        for (uint32_t d = l; d < L; d++) {
            v->nbyte[nn] = s[d];
            v->ndepth[nn] = (uint16_t)(d + 1);
            v->ntok[nn] = (uint32_t)k; /* ids at this node start here */
            path[++depth] = nn++;
        }
        /* ids ending at the node: k and those equal after it (ntok[node+1] marks the end) */
        prev = s;
        plen = L;
    }
    while (depth > 0)
        v->nend[path[depth--]] = nn;
    v->nend[0] = nn;
    v->n_nodes = nn;
    v->ntok[nn] = (uint32_t)ns;
    cellm_free(path);
    cellm_free(tmp);
    /* the ids whose bytes equal a node's path are sorted[ntok[i] .. first id whose bytes are
     * longer); count them now so that a walk need not compare bytes */
    v->nhere = cellm_calloc(nn + 1, sizeof *v->nhere);
    if (!v->nhere) goto nomem2;
    for (uint32_t i = 1; i < nn; i++) {
        uint32_t k = v->ntok[i], c = 0;
        while (k + c < (uint32_t)ns && v->len[v->sorted[k + c]] == v->ndepth[i] &&
               (c == 0 || !memcmp(v->bytes + v->off[v->sorted[k + c]],
                                  v->bytes + v->off[v->sorted[k]], v->ndepth[i])))
            c++;
        v->nhere[i] = c;
    }
    *out = v;
    return CELLM_OK;
nomem:
    cellm_free(tmp);
nomem2:
    cellm_grammar_vocab_free(v);
    return cellm_errf(err, CELLM_ERR_NOMEM, "grammar vocabulary: out of memory");
}

enum cellm_status cellm_grammar_vocab_new(const struct cellm_tokenizer *tok, int n_vocab,
                                          struct cellm_grammar_vocab **out, struct cellm_error *err)
{
    *out = NULL;
    if (!tok || n_vocab <= 0)
        return cellm_errf(err, CELLM_ERR_ARG, "grammar vocabulary: no tokenizer or vocabulary");
    const char **t = cellm_calloc((size_t)n_vocab, sizeof *t);
    size_t *l = cellm_calloc((size_t)n_vocab, sizeof *l);
    struct cellm_tok_buf all = {0};
    size_t *off = cellm_calloc((size_t)n_vocab, sizeof *off);
    enum cellm_status st = CELLM_OK;
    if (!t || !l || !off) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n_vocab && !st; i++) {
        size_t before = all.n;
        int text = 0;
        st = cellm_tokenizer_token_bytes(tok, i, &all, &text, err);
        off[i] = before;
        l[i] = text ? all.n - before : 0;
    }
    if (!st) {
        for (int i = 0; i < n_vocab; i++)
            t[i] = l[i] ? all.p + off[i] : NULL;
        st = cellm_grammar_vocab_from_bytes(t, l, n_vocab, out, err);
    }
out:
    cellm_free(t);
    cellm_free(l);
    cellm_free(off);
    cellm_free(all.p);
    return st;
}

int cellm_grammar_vocab_size(const struct cellm_grammar_vocab *v)
{
    return v ? v->n_vocab : 0;
}
