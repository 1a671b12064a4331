/*
 * bpe.c: the BPE model of tokenizer.json: vocabulary, merges, and encoding of one word.
 *
 * The vocabulary is an arena of NUL-terminated pieces indexed by id plus an open-addressing
 * hash from piece to id; merges are a second hash from the id pair to (rank, merged id).
 * A word starts as one symbol per character (or per byte with byte_fallback, or the unk
 * token, fused when fuse_unk); merges then run through a binary heap of candidate pairs
 * ordered by (rank, position) over a doubly linked symbol list, so a word of n symbols costs
 * O(n log n) instead of the naive O(n^2) rescans. Stale heap entries are skipped when the
 * pair they name no longer sits at their position. Encoded words are remembered in a
 * per-call cache, which makes repeated words (most of natural text) a hash lookup.
 */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "tokenizer/tok.h"
#include "tokenizer/unicode.h"

struct cellm_tok_bpe {
    char *arena;
    size_t arena_len;
    int64_t *off; /* [size]: arena offset of each id's piece, -1 when the id is unused */
    int32_t size;
    int32_t *vslot; /* vocabulary hash: ids, -1 = empty */
    size_t vmask;
    uint64_t *mkey; /* merge hash: (a << 32 | b), UINT64_MAX = empty */
    uint32_t *mrank;
    int32_t *mres;
    size_t mmask;
    int32_t unk, byte_id[256];
    int fuse_unk, byte_fallback, ignore_merges;
};

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static uint64_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

int32_t cellm_tok_bpe_size(const struct cellm_tok_bpe *b)
{
    return b->size;
}

const char *cellm_tok_bpe_piece(const struct cellm_tok_bpe *b, int32_t id)
{
    if (id < 0 || id >= b->size || b->off[id] < 0) return NULL;
    return b->arena + b->off[id];
}

int32_t cellm_tok_bpe_lookup(const struct cellm_tok_bpe *b, const char *s, size_t n)
{
    for (size_t i = hash_bytes(s, n) & b->vmask;; i = (i + 1) & b->vmask) {
        int32_t id = b->vslot[i];
        if (id < 0) return -1;
        const char *p = b->arena + b->off[id];
        if (!strncmp(p, s, n) && p[n] == 0) return id;
    }
}

static void merge_put(struct cellm_tok_bpe *b, uint64_t key, uint32_t rank, int32_t res)
{
    for (size_t i = hash_pair(key) & b->mmask;; i = (i + 1) & b->mmask) {
        if (b->mkey[i] == UINT64_MAX) {
            b->mkey[i] = key;
            b->mrank[i] = rank;
            b->mres[i] = res;
            return;
        }
        if (b->mkey[i] == key) { /* a repeated pair: the reference keeps the last */
            b->mrank[i] = rank;
            b->mres[i] = res;
            return;
        }
    }
}

static int merge_get(const struct cellm_tok_bpe *b, int32_t l, int32_t r, uint32_t *rank,
                     int32_t *res)
{
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (size_t i = hash_pair(key) & b->mmask;; i = (i + 1) & b->mmask) {
        if (b->mkey[i] == UINT64_MAX) return 0;
        if (b->mkey[i] == key) {
            *rank = b->mrank[i];
            *res = b->mres[i];
            return 1;
        }
    }
}

void cellm_tok_bpe_free(struct cellm_tok_bpe *b)
{
    if (!b) return;
    cellm_free(b->arena);
    cellm_free(b->off);
    cellm_free(b->vslot);
    cellm_free(b->mkey);
    cellm_free(b->mrank);
    cellm_free(b->mres);
    cellm_free(b);
}

static size_t pow2_above(size_t n)
{
    size_t c = 16;
    while (c < 2 * n)
        c *= 2;
    return c;
}

static enum cellm_status load_vocab(struct cellm_tok_bpe *b, const cJSON *vocab, const char *what,
                                    struct cellm_error *err)
{
    size_t count = 0, bytes = 0;
    int64_t maxid = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 0x7FFFFFF0 ||
            v->valuedouble != (double)(int64_t)v->valuedouble)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: model.vocab[\"%.40s\"] is not a valid id",
                              what, v->string);
        count++;
        bytes += strlen(v->string) + 1;
        if ((int64_t)v->valuedouble > maxid) maxid = (int64_t)v->valuedouble;
    }
    /* ids index arrays: the largest must be explained by the entries present (holes left
     * for added tokens are allowed, up to CELLM_TOK_ID_SLACK), or a file of a few bytes
     * naming id 1e9 would allocate gigabytes */
    if (maxid >= (int64_t)count + CELLM_TOK_ID_SLACK)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: model.vocab has %zu entries but uses id %lld; ids must stay below "
                          "the number of entries plus %d",
                          what, count, (long long)maxid, CELLM_TOK_ID_SLACK);
    b->size = (int32_t)(maxid + 1);
    b->arena = cellm_malloc(bytes + 1);
    b->off = cellm_malloc(((size_t)b->size + 1) * sizeof *b->off);
    size_t cap = pow2_above(count);
    b->vslot = cellm_malloc(cap * sizeof *b->vslot);
    if (!b->arena || !b->off || !b->vslot)
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    b->vmask = cap - 1;
    memset(b->vslot, 0xFF, cap * sizeof *b->vslot);
    for (int32_t i = 0; i < b->size; i++)
        b->off[i] = -1;
    for (const cJSON *v = vocab->child; v; v = v->next) {
        int32_t id = (int32_t)v->valuedouble;
        size_t len = strlen(v->string);
        if (b->off[id] >= 0)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: model.vocab has id %d twice", what, id);
        if (cellm_tok_bpe_lookup(b, v->string, len) >= 0)
            continue; /* duplicate key: cJSON keeps both, the reference keeps the last */
        memcpy(b->arena + b->arena_len, v->string, len + 1);
        b->off[id] = (int64_t)b->arena_len;
        b->arena_len += len + 1;
        size_t i = hash_bytes(v->string, len) & b->vmask;
        while (b->vslot[i] >= 0)
            i = (i + 1) & b->vmask;
        b->vslot[i] = id;
    }
    return CELLM_OK;
}

static enum cellm_status load_merges(struct cellm_tok_bpe *b, const cJSON *merges, const char *what,
                                     struct cellm_error *err)
{
    size_t n = (size_t)cJSON_GetArraySize(merges);
    size_t cap = pow2_above(n);
    b->mkey = cellm_malloc(cap * sizeof *b->mkey);
    b->mrank = cellm_malloc(cap * sizeof *b->mrank);
    b->mres = cellm_malloc(cap * sizeof *b->mres);
    if (!b->mkey || !b->mrank || !b->mres)
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    b->mmask = cap - 1;
    memset(b->mkey, 0xFF, cap * sizeof *b->mkey);
    char *tmp = NULL;
    size_t tmpcap = 0;
    uint32_t rank = 0;
    enum cellm_status st = CELLM_OK;
    for (const cJSON *m = merges->child; m; m = m->next, rank++) {
        const char *l, *r;
        size_t ll, rl;
        if (cJSON_IsString(m)) {
            const char *sp = strchr(m->valuestring, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = cellm_errf(err, CELLM_ERR_FORMAT,
                                "%s: model.merges[%u] \"%.40s\" is not two pieces separated by "
                                "one space",
                                what, rank, m->valuestring);
                break;
            }
            l = m->valuestring;
            ll = (size_t)(sp - l);
            r = sp + 1;
            rl = strlen(r);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            l = m->child->valuestring;
            ll = strlen(l);
            r = m->child->next->valuestring;
            rl = strlen(r);
        } else {
            st = cellm_errf(err, CELLM_ERR_FORMAT,
                            "%s: model.merges[%u] is %s, expected a string or a pair of strings",
                            what, rank, cellm_json_type(m));
            break;
        }
        int32_t li = cellm_tok_bpe_lookup(b, l, ll), ri = cellm_tok_bpe_lookup(b, r, rl);
        if (ll + rl + 1 > tmpcap) {
            tmpcap = 2 * (ll + rl + 1);
            char *t = cellm_realloc(tmp, tmpcap);
            if (!t) {
                st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
                break;
            }
            tmp = t;
        }
        memcpy(tmp, l, ll);
        memcpy(tmp + ll, r, rl);
        int32_t res = cellm_tok_bpe_lookup(b, tmp, ll + rl);
        if (li < 0 || ri < 0 || res < 0) {
            st = cellm_errf(err, CELLM_ERR_FORMAT,
                            "%s: model.merges[%u] (\"%.*s\", \"%.*s\") uses a piece that is not "
                            "in model.vocab",
                            what, rank, (int)(ll > 40 ? 40 : ll), l, (int)(rl > 40 ? 40 : rl), r);
            break;
        }
        merge_put(b, ((uint64_t)(uint32_t)li << 32) | (uint32_t)ri, rank, res);
    }
    cellm_free(tmp);
    return st;
}

static enum cellm_status check_null(const cJSON *model, const char *key, const char *what,
                                    struct cellm_error *err)
{
    const cJSON *v = cellm_json_get(model, key);
    if (v && !(cJSON_IsString(v) && !v->valuestring[0]))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: BPE model.%s is set; cellm supports only null or \"\"", what, key);
    return CELLM_OK;
}

enum cellm_status cellm_tok_bpe_parse(const cJSON *model, const char *what,
                                      struct cellm_tok_bpe **out, struct cellm_error *err)
{
    CELLM_TRY(check_null(model, "continuing_subword_prefix", what, err));
    CELLM_TRY(check_null(model, "end_of_word_suffix", what, err));
    const cJSON *dropout = cellm_json_get(model, "dropout");
    if (dropout && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: BPE model.dropout is set; cellm encodes deterministically", what);
    const cJSON *vocab = cellm_json_get(model, "vocab");
    const cJSON *merges = cellm_json_get(model, "merges");
    if (!cJSON_IsObject(vocab))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: model.vocab is %s, expected an object", what,
                          vocab ? cellm_json_type(vocab) : "missing");
    if (merges && !cJSON_IsArray(merges))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: model.merges is %s, expected an array", what,
                          cellm_json_type(merges));
    struct cellm_tok_bpe *b = cellm_calloc(1, sizeof *b);
    if (!b) return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
    enum cellm_status st;
    const char *unk = NULL;
    if ((st = cellm_json_bool(model, "fuse_unk", what, 0, &b->fuse_unk, err)) ||
        (st = cellm_json_bool(model, "byte_fallback", what, 0, &b->byte_fallback, err)) ||
        (st = cellm_json_bool(model, "ignore_merges", what, 0, &b->ignore_merges, err)) ||
        (st = cellm_json_str(model, "unk_token", what, NULL, &unk, err)) ||
        (st = load_vocab(b, vocab, what, err)))
        goto fail;
    if (merges && (st = load_merges(b, merges, what, err))) goto fail;
    if (!merges) {
        static const cJSON empty = {.type = cJSON_Array};
        if ((st = load_merges(b, &empty, what, err))) goto fail;
    }
    b->unk = unk ? cellm_tok_bpe_lookup(b, unk, strlen(unk)) : -1;
    if (unk && b->unk < 0) {
        st = cellm_errf(err, CELLM_ERR_FORMAT,
                        "%s: model.unk_token \"%.40s\" is not in the "
                        "vocabulary",
                        what, unk);
        goto fail;
    }
    for (int i = 0; i < 256; i++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->byte_id[i] = cellm_tok_bpe_lookup(b, name, 6);
    }
    *out = b;
    return CELLM_OK;
fail:
    cellm_tok_bpe_free(b);
    return st;
}

/* ---- encoding ------------------------------------------------------------------------- */

struct heap_ent {
    uint32_t rank, pos;
    int32_t l, r;
};

struct cellm_tok_cache {
    /* word -> ids: open addressing over entries; keys and ids in their own arenas */
    size_t *slot; /* entry index + 1, 0 = empty */
    size_t mask, count;
    struct cellm_tok_buf keys;
    struct cellm_tok_ids vals;
    size_t *ent; /* [4 * count]: key offset, key length, ids offset, ids length */
    size_t ent_cap;
    /* scratch for one word */
    int32_t *sym;
    int32_t *prev, *next;
    struct heap_ent *heap;
    size_t scap, hcap;
};

struct cellm_tok_cache *cellm_tok_cache_new(void)
{
    return cellm_calloc(1, sizeof(struct cellm_tok_cache));
}

void cellm_tok_cache_free(struct cellm_tok_cache *c)
{
    if (!c) return;
    cellm_free(c->slot);
    cellm_free(c->keys.p);
    cellm_free(c->vals.v);
    cellm_free(c->ent);
    cellm_free(c->sym);
    cellm_free(c->prev);
    cellm_free(c->next);
    cellm_free(c->heap);
    cellm_free(c);
}

static int cache_find(const struct cellm_tok_cache *c, const char *s, size_t n, uint64_t h,
                      size_t *slot)
{
    if (!c->slot) return -1;
    for (size_t i = h & c->mask;; i = (i + 1) & c->mask) {
        if (!c->slot[i]) {
            *slot = i;
            return -1;
        }
        const size_t *e = c->ent + 4 * (c->slot[i] - 1);
        if (e[1] == n && !memcmp(c->keys.p + e[0], s, n)) return (int)(c->slot[i] - 1);
    }
}

static int cache_add(struct cellm_tok_cache *c, const char *s, size_t n, const int32_t *ids,
                     size_t nids)
{
    if (2 * (c->count + 1) > c->mask + 1 || !c->slot) {
        size_t cap = c->slot ? 2 * (c->mask + 1) : 1024;
        size_t *ns = cellm_calloc(cap, sizeof *ns);
        if (!ns) return 0;
        for (size_t k = 0; k < c->count; k++) {
            const size_t *e = c->ent + 4 * k;
            size_t i = hash_bytes(c->keys.p + e[0], e[1]) & (cap - 1);
            while (ns[i])
                i = (i + 1) & (cap - 1);
            ns[i] = k + 1;
        }
        cellm_free(c->slot);
        c->slot = ns;
        c->mask = cap - 1;
    }
    if (c->count == c->ent_cap) {
        size_t cap = c->ent_cap ? 2 * c->ent_cap : 256;
        size_t *e = cellm_realloc(c->ent, cap * 4 * sizeof *e);
        if (!e) return 0;
        c->ent = e;
        c->ent_cap = cap;
    }
    size_t koff = c->keys.n, voff = c->vals.n;
    if (!cellm_tok_buf_put(&c->keys, s, n)) return 0;
    for (size_t k = 0; k < nids; k++)
        if (!cellm_tok_ids_push(&c->vals, ids[k])) return 0;
    size_t *e = c->ent + 4 * c->count;
    e[0] = koff;
    e[1] = n;
    e[2] = voff;
    e[3] = nids;
    size_t i = hash_bytes(s, n) & c->mask;
    while (c->slot[i])
        i = (i + 1) & c->mask;
    c->slot[i] = ++c->count;
    return 1;
}

static int heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(struct heap_ent *h, size_t *n, struct heap_ent e)
{
    size_t i = (*n)++;
    while (i > 0 && heap_less(&e, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = e;
}

static struct heap_ent heap_pop(struct heap_ent *h, size_t *n)
{
    struct heap_ent top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static int scratch(struct cellm_tok_cache *c, size_t n)
{
    if (n <= c->scap) return 1;
    size_t cap = n * 2;
    int32_t *s = cellm_realloc(c->sym, cap * sizeof *s);
    if (s) c->sym = s;
    int32_t *p = cellm_realloc(c->prev, cap * sizeof *p);
    if (p) c->prev = p;
    int32_t *x = cellm_realloc(c->next, cap * sizeof *x);
    if (x) c->next = x;
    struct heap_ent *h = cellm_realloc(c->heap, 3 * cap * sizeof *h); /* <= 3 pushes/symbol */
    if (h) c->heap = h;
    if (!s || !p || !x || !h) return 0;
    c->scap = cap;
    return 1;
}

static void try_pair(const struct cellm_tok_bpe *b, struct cellm_tok_cache *c, size_t *hn,
                     int32_t pos)
{
    int32_t nx = c->next[pos];
    uint32_t rank;
    int32_t res;
    if (nx >= 0 && merge_get(b, c->sym[pos], c->sym[nx], &rank, &res))
        heap_push(c->heap, hn, (struct heap_ent){rank, (uint32_t)pos, c->sym[pos], c->sym[nx]});
}

int cellm_tok_bpe_total(const struct cellm_tok_bpe *b, int byte_level)
{
    if (b->unk >= 0) return 1;
    int all = b->byte_fallback;
    for (int i = 0; i < 256 && all; i++)
        all = b->byte_id[i] >= 0;
    if (all) return 1;
    if (!byte_level) return 0;
    for (int i = 0; i < 256; i++) {
        char e[4];
        size_t l = cellm_utf8_put(cellm_tok_byte_char((uint8_t)i), e);
        if (cellm_tok_bpe_lookup(b, e, l) < 0) return 0;
    }
    return 1;
}

enum cellm_status cellm_tok_bpe_encode(const struct cellm_tok_bpe *b, struct cellm_tok_cache *c,
                                       const char *s, size_t n, struct cellm_tok_ids *ids,
                                       struct cellm_error *err)
{
    if (n == 0) return CELLM_OK;
    if (b->ignore_merges) {
        int32_t id = cellm_tok_bpe_lookup(b, s, n);
        if (id >= 0)
            return cellm_tok_ids_push(ids, id)
                       ? CELLM_OK
                       : cellm_errf(err, CELLM_ERR_NOMEM, "BPE: out of memory");
    }
    uint64_t h = hash_bytes(s, n);
    size_t slot = 0;
    int hit = cache_find(c, s, n, h, &slot);
    if (hit >= 0) {
        const size_t *e = c->ent + 4 * hit;
        for (size_t k = 0; k < e[3]; k++)
            if (!cellm_tok_ids_push(ids, c->vals.v[e[2] + k]))
                return cellm_errf(err, CELLM_ERR_NOMEM, "BPE: out of memory");
        return CELLM_OK;
    }
    if (!scratch(c, n)) return cellm_errf(err, CELLM_ERR_NOMEM, "BPE: out of memory");
    /* initial symbols */
    size_t ns = 0;
    int prev_unk = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t l = cellm_utf8_next((const uint8_t *)s + i, n - i, &cp);
        int32_t id = cellm_tok_bpe_lookup(b, s + i, l);
        if (id >= 0) {
            c->sym[ns++] = id;
            prev_unk = 0;
        } else {
            int all = b->byte_fallback;
            for (size_t k = 0; k < l && all; k++)
                all = b->byte_id[(uint8_t)s[i + k]] >= 0;
            if (all) {
                for (size_t k = 0; k < l; k++)
                    c->sym[ns++] = b->byte_id[(uint8_t)s[i + k]];
                prev_unk = 0;
            } else if (b->unk >= 0) {
                if (!(b->fuse_unk && prev_unk)) c->sym[ns++] = b->unk;
                prev_unk = 1;
            }
        }
        i += l;
    }
    size_t hn = 0;
    for (size_t i = 0; i < ns; i++) {
        c->prev[i] = (int32_t)i - 1;
        c->next[i] = i + 1 < ns ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < ns; i++)
        try_pair(b, c, &hn, (int32_t)i);
    while (hn) {
        struct heap_ent e = heap_pop(c->heap, &hn);
        int32_t p = (int32_t)e.pos, nx = c->next[p];
        if (c->sym[p] != e.l || nx < 0 || c->sym[nx] != e.r) continue; /* stale */
        uint32_t rank;
        int32_t res;
        merge_get(b, e.l, e.r, &rank, &res);
        c->sym[p] = res;
        c->sym[nx] = -1;
        c->next[p] = c->next[nx];
        if (c->next[nx] >= 0) c->prev[c->next[nx]] = p;
        if (c->prev[p] >= 0) try_pair(b, c, &hn, c->prev[p]);
        try_pair(b, c, &hn, p);
    }
    size_t start = ids->n;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = c->next[i])
        if (!cellm_tok_ids_push(ids, c->sym[i]))
            return cellm_errf(err, CELLM_ERR_NOMEM, "BPE: out of memory");
    if (n <= 256 && !cache_add(c, s, n, ids->v + start, ids->n - start))
        return cellm_errf(err, CELLM_ERR_NOMEM, "BPE: out of memory");
    return CELLM_OK;
}
