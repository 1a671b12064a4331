/*
 * pcache.c: the prefix cache (see pcache.h for what it owns and why it is shaped so).
 */
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "engine/pcache.h"

#define N_BUCKETS 4096

struct pc_block {
    uint64_t key;            /* hash of every token from position 0 to the block's end */
    struct pc_block *parent; /* the block before, NULL for block 0 */
    struct pc_block *hnext;  /* next in the hash bucket */
    int32_t *tokens;         /* [block] this block's own tokens */
    void *data;              /* the executor's copy */
    size_t bytes;
    int window; /* carries the sliding-window layers */
    int n_children;
    int pinned; /* on the chain being stored: not evictable now */
    unsigned long long used;
    /* a model with state: the state of every state layer at the block's end (executor's
     * state_save), or NULL; its bytes count in the cache's, not in `bytes` */
    void *snap;
    size_t snap_bytes;
    unsigned long long snap_used; /* when it was last stored or attached */
};

struct cellm_pcache {
    const struct cellm_exec_vt *vt;
    void *ex;
    int block, window;
    int state; /* a match must end at a block with a snapshot */
    size_t budget, bytes, n_blocks, n_snaps;
    unsigned long long tick;
    struct pc_block *buckets[N_BUCKETS];
    struct cellm_cache_stats st;
};

static uint64_t chain_key(uint64_t parent, const int32_t *t, int n)
{
    /* FNV-1a over the parent key and the ids, then a finalizer (splitmix64) */
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)t[i];
        for (int b = 0; b < 4; b++) {
            h ^= (v >> (8 * b)) & 0xff;
            h *= 0x100000001b3ull;
        }
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

enum cellm_status cellm_pcache_new(const struct cellm_exec_vt *vt, void *ex, int block,
                                   size_t budget, int window, int state, struct cellm_pcache **out,
                                   struct cellm_error *err)
{
    *out = NULL;
    if (block <= 0) return cellm_errf(err, CELLM_ERR_ARG, "cache_block is %d; expected > 0", block);
    if (state && !vt->state_save)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "prefix cache: the model keeps sequence state and the %s executor "
                          "has no state snapshots",
                          vt->name);
    struct cellm_pcache *pc = cellm_calloc(1, sizeof *pc);
    if (!pc) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory for the prefix cache");
    pc->vt = vt;
    pc->ex = ex;
    pc->block = block;
    pc->budget = budget;
    pc->window = window;
    pc->state = state;
    pc->st.block = block;
    pc->st.state = state;
    pc->st.budget_bytes = budget;
    *out = pc;
    return CELLM_OK;
}

static void block_free(struct cellm_pcache *pc, struct pc_block *b)
{
    if (b->snap) pc->vt->state_free(pc->ex, b->snap);
    if (b->data) pc->vt->kv_block_free(pc->ex, b->data);
    cellm_free(b->tokens);
    cellm_free(b);
}

void cellm_pcache_free(struct cellm_pcache *pc)
{
    if (!pc) return;
    for (int i = 0; i < N_BUCKETS; i++)
        while (pc->buckets[i]) {
            struct pc_block *b = pc->buckets[i];
            pc->buckets[i] = b->hnext;
            block_free(pc, b);
        }
    cellm_free(pc);
}

static struct pc_block *find(const struct cellm_pcache *pc, uint64_t key,
                             const struct pc_block *parent, const int32_t *t)
{
    for (struct pc_block *b = pc->buckets[key % N_BUCKETS]; b; b = b->hnext)
        if (b->key == key && b->parent == parent &&
            !memcmp(b->tokens, t, (size_t)pc->block * sizeof *t))
            return b;
    return NULL;
}

static void unlink_block(struct cellm_pcache *pc, struct pc_block *b)
{
    struct pc_block **pp = &pc->buckets[b->key % N_BUCKETS];
    while (*pp != b)
        pp = &(*pp)->hnext;
    *pp = b->hnext;
    if (b->parent) b->parent->n_children--;
    pc->bytes -= b->bytes + b->snap_bytes;
    pc->n_blocks--;
    pc->n_snaps -= b->snap != NULL;
}

static void drop_snap(struct cellm_pcache *pc, struct pc_block *b)
{
    pc->vt->state_free(pc->ex, b->snap);
    pc->bytes -= b->snap_bytes;
    pc->n_snaps--;
    b->snap = NULL;
    b->snap_bytes = 0;
}

/* Evicts until `need` more bytes fit: the least recently used of the leaves (a block no
 * other continues; with its snapshot if it has one) and of the snapshots of inner blocks
 * (the snapshot alone: the blocks after it still need the block's KV rows). 0 when they
 * cannot. */
static int make_room(struct cellm_pcache *pc, size_t need)
{
    if (need > pc->budget) return 0;
    while (pc->bytes + need > pc->budget) {
        struct pc_block *victim = NULL;
        unsigned long long vt = 0;
        int whole = 0;
        for (int i = 0; i < N_BUCKETS; i++)
            for (struct pc_block *b = pc->buckets[i]; b; b = b->hnext) {
                int leaf = !b->n_children && !b->pinned;
                if (!leaf && !b->snap) continue;
                unsigned long long t = leaf ? b->used : b->snap_used;
                if (!victim || t < vt) {
                    victim = b;
                    vt = t;
                    whole = leaf;
                }
            }
        if (!victim) return 0;
        if (whole) {
            unlink_block(pc, victim);
            block_free(pc, victim);
        } else {
            drop_snap(pc, victim);
        }
        pc->st.evictions++;
    }
    return 1;
}

enum cellm_status cellm_pcache_attach(struct cellm_pcache *pc, int seq, const int32_t *tokens,
                                      int len, int max, int *new_len, struct cellm_error *err)
{
    *new_len = len;
    int B = pc->block, nb = max / B;
    pc->st.lookups++;
    if (nb * B <= len) {
        pc->st.misses++;
        return CELLM_OK;
    }
    struct pc_block **chain = cellm_malloc((size_t)nb * sizeof *chain);
    if (!chain) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    int k = 0;
    uint64_t key = 0;
    for (; k < nb; k++) {
        key = chain_key(key, tokens + (size_t)k * B, B);
        struct pc_block *b = find(pc, key, k ? chain[k - 1] : NULL, tokens + (size_t)k * B);
        if (!b) break;
        chain[k] = b;
    }
    /* the longest match whose last `window` positions have window layers and, with
     * state, whose last block carries a snapshot */
    int end = k;
    for (; end > 0 && end * B > len; end--) {
        int ok = !pc->state || chain[end - 1]->snap;
        for (int j = end - 1; ok && pc->window && j >= 0 && (j + 1) * B > end * B - pc->window; j--)
            ok &= chain[j]->window;
        if (ok) break;
    }
    int L = end * B;
    if (L <= len) {
        cellm_free(chain);
        pc->st.misses++;
        return CELLM_OK;
    }
    enum cellm_status st = CELLM_OK;
    unsigned long long t = ++pc->tick;
    for (int j = 0; j < end && !st; j++) {
        struct pc_block *b = chain[j];
        b->used = t;
        int full = (j + 1) * B > len; /* new for the full layers */
        int win = pc->window && (j + 1) * B > L - pc->window && b->window; /* needed by the ring */
        if (!full && !win) continue;
        int flags = (b->window ? CELLM_KV_WINDOW : 0) | (win ? CELLM_KV_LOAD_WINDOW : 0);
        st = pc->vt->kv_load(pc->ex, seq, j * B, B, flags, b->data, err);
    }
    if (!st && pc->state) { /* the state at L, after the KV rows before it */
        chain[end - 1]->snap_used = t;
        st = pc->vt->state_load(pc->ex, seq, chain[end - 1]->snap, err);
    }
    cellm_free(chain);
    if (st) return st;
    pc->st.hits++;
    pc->st.hit_tokens += (unsigned long long)(L - len);
    *new_len = L;
    return CELLM_OK;
}

enum cellm_status cellm_pcache_store(struct cellm_pcache *pc, int seq, const int32_t *tokens,
                                     int len, void *snap, int snap_len, size_t snap_bytes,
                                     struct cellm_error *err)
{
    int B = pc->block, nb = len / B;
    if (snap && (snap_len <= 0 || snap_len % B || snap_len > len)) {
        pc->vt->state_free(pc->ex, snap);
        return cellm_errf(err, CELLM_ERR_ARG,
                          "prefix cache: a snapshot at %d of a sequence of %d positions; "
                          "expected a whole number of blocks of %d within it",
                          snap_len, len, B);
    }
    if (snap && snap_bytes > pc->budget) { /* it can never fit: nor can what needs it */
        pc->vt->state_free(pc->ex, snap);
        snap = NULL;
    }
    /* with state, a chain past its last snapshot can never be attached: new blocks stop at
     * the snapshot's (blocks already cached further on are only refreshed) */
    const int ks = snap ? snap_len / B : 0, grow_to = pc->state ? ks : nb;
    int first_win = pc->window ? pc->vt->kv_window_first(pc->ex, seq, len) : 0;
    struct pc_block *parent = NULL, *at = NULL; /* at: the block the snapshot goes to */
    uint64_t key = 0;
    unsigned long long t = ++pc->tick;
    enum cellm_status st = CELLM_OK;
    struct pc_block *b = NULL;
    for (int k = 0; k < nb; k++) {
        const int32_t *bt = tokens + (size_t)k * B;
        key = chain_key(key, bt, B);
        int can_win = pc->window && k * B >= first_win;
        b = find(pc, key, parent, bt);
        if (b && (b->window || !can_win)) {
            b->used = t;
            b->pinned = 1;
            parent = b;
            if (k == ks - 1) at = b;
            continue;
        }
        if (k >= grow_to) break;
        int flags = can_win ? CELLM_KV_WINDOW : 0;
        size_t bytes = pc->vt->kv_block_bytes(pc->ex, B, flags);
        if (b) bytes = bytes > b->bytes ? bytes - b->bytes : 0; /* an upgrade */
        if (b) b->pinned = 1;
        if (!make_room(pc, bytes)) break;
        void *data = NULL;
        if ((st = pc->vt->kv_save(pc->ex, seq, k * B, B, flags, &data, err))) break;
        if (b) { /* the same block, now with its window layers */
            pc->vt->kv_block_free(pc->ex, b->data);
            pc->bytes += bytes;
            b->bytes += bytes;
            b->data = data;
            b->window = 1;
        } else {
            b = cellm_calloc(1, sizeof *b);
            int32_t *tk = b ? cellm_malloc((size_t)B * sizeof *tk) : NULL;
            if (!tk) {
                cellm_free(b);
                pc->vt->kv_block_free(pc->ex, data);
                st = cellm_errf(err, CELLM_ERR_NOMEM, "out of memory for the prefix cache");
                break;
            }
            memcpy(tk, bt, (size_t)B * sizeof *tk);
            *b = (struct pc_block){.key = key,
                                   .parent = parent,
                                   .hnext = pc->buckets[key % N_BUCKETS],
                                   .tokens = tk,
                                   .data = data,
                                   .bytes = bytes,
                                   .window = can_win};
            pc->buckets[key % N_BUCKETS] = b;
            if (parent) parent->n_children++;
            pc->bytes += bytes;
            pc->n_blocks++;
            pc->st.stored_blocks++;
        }
        b->used = t;
        b->pinned = 1;
        parent = b;
        if (k == ks - 1) at = b;
    }
    if (snap && at && at->snap) { /* the same tokens: the same state is cached already */
        at->snap_used = t;
    } else if (snap && at && !st && make_room(pc, snap_bytes)) {
        at->snap = snap;
        at->snap_bytes = snap_bytes;
        at->snap_used = t;
        pc->bytes += snap_bytes;
        pc->n_snaps++;
        pc->st.stored_snapshots++;
        snap = NULL;
    }
    if (snap) pc->vt->state_free(pc->ex, snap);
    if (b) b->pinned = 0; /* a block whose upgrade did not fit */
    for (struct pc_block *p = parent; p; p = p->parent)
        p->pinned = 0;
    return st;
}

void cellm_pcache_stats(const struct cellm_pcache *pc, struct cellm_cache_stats *out)
{
    *out = pc->st;
    out->bytes = pc->bytes;
    out->blocks = pc->n_blocks;
    out->snapshots = pc->n_snaps;
}
