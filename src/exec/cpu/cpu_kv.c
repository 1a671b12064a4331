/*
 * cpu_kv.c: the CPU executor's copies of KV state for the engine's prefix cache
 * (exec.h, engine/pcache.h): blocks of positions of one sequence, in host memory, and
 * snapshots of a sequence's conv windows and recurrent states (seqstate.h).
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "cpu_ctx.h"
#include "mla.h"

/* ---- prefix-cache blocks ------------------------------------------------------------------
 * A block is the layers' rows back to back: for each layer in order whose data it holds
 * (full-attention layers always, sliding ones with CELLM_KV_WINDOW), K[n][kv_dim] then
 * V[n][kv_dim], in the cache's own element type, so a save and a load are memcpys. */

static int kv_has_layer(const struct cpu_ctx *c, int l, int flags)
{
    return kv_own(c, l) && c->d->layers[l].mixer == CELLM_MIXER_ATTN &&
           (c->d->layers[l].attn != CELLM_ATTN_SLIDING || (flags & CELLM_KV_WINDOW));
}

/* Bytes of one cached K or V element: f32, or f16 in fast mode. */
static size_t kv_elem(const struct cpu_ctx *c)
{
    return c->fast ? sizeof(uint16_t) : sizeof(float);
}

/* Layer l's K (half 0) or V (half 1) storage of s, NULL if not allocated yet. */
static char *kv_base(const struct cpu_seq *s, int fast, int l, int half)
{
    if (fast) return s->k16 ? (char *)(half ? s->v16[l] : s->k16[l]) : NULL;
    return s->k ? (char *)(half ? s->v[l] : s->k[l]) : NULL;
}

size_t cellm_cpu_kv_block_bytes(void *p, int n, int flags)
{
    struct cpu_ctx *c = p;
    if (c->mla) return cellm_mla_block_bytes(c->mla, n);
    size_t b = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++)
        if (kv_has_layer(c, l, flags)) b += 2 * (size_t)n * layer_kd(c, l) * kv_elem(c);
    return b;
}

/* Copies rows [pos, pos + n) of layer l between the cache and buf (to = 1: into the cache). */
static void kv_rows(struct cpu_ctx *c, struct cpu_seq *s, int l, int pos, int n, char *buf, int to)
{
    size_t row = layer_kd(c, l) * kv_elem(c);
    for (int half = 0; half < 2; half++) {
        char *base = kv_base(s, c->fast != NULL, l, half);
        for (int i = 0; i < n; i++) {
            char *slot = base + kv_slot(c, l, pos + i) * row;
            char *b = buf + ((size_t)half * n + i) * row;
            memcpy(to ? slot : b, to ? b : slot, row);
        }
    }
}

enum cellm_status cellm_cpu_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                    struct cellm_error *err)
{
    struct cpu_ctx *c = p;
    if (c->mla) return cellm_mla_kv_save(c->mla, seq, pos, n, blk, err);
    struct cpu_seq *s = &c->seqs[seq];
    /* (by the layer tables: layer 0 of a hybrid model may keep no KV rows) */
    if (!(c->fast ? (void *)s->k16 : (void *)s->k) || pos + n > s->cap)
        return cellm_errf(err, CELLM_ERR_ARG, "kv_save: sequence %d does not hold positions %d..%d",
                          seq, pos, pos + n - 1);
    char *b = cellm_malloc(cellm_cpu_kv_block_bytes(c, n, flags));
    if (!b)
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for a cache block");
    size_t off = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++)
        if (kv_has_layer(c, l, flags)) {
            kv_rows(c, s, l, pos, n, b + off, 0);
            off += 2 * (size_t)n * layer_kd(c, l) * kv_elem(c);
        }
    *blk = b;
    return CELLM_OK;
}

enum cellm_status cellm_cpu_kv_load(void *p, int seq, int pos, int n, int flags, const void *blk,
                                    struct cellm_error *err)
{
    struct cpu_ctx *c = p;
    if (c->mla) return cellm_mla_kv_load(c->mla, seq, pos, n, blk, err);
    struct cpu_seq *s = &c->seqs[seq];
    CELLM_TRY(cellm_cpu_reserve_seq(c, s, pos + n, err));
    size_t off = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++) {
        if (!kv_has_layer(c, l, flags)) continue;
        if (c->d->layers[l].attn != CELLM_ATTN_SLIDING || (flags & CELLM_KV_LOAD_WINDOW))
            kv_rows(c, s, l, pos, n, (char *)blk + off, 1);
        off += 2 * (size_t)n * layer_kd(c, l) * kv_elem(c);
    }
    return CELLM_OK;
}

void cellm_cpu_kv_block_free(void *p, void *blk)
{
    (void)p;
    cellm_free(blk);
}

int cellm_cpu_kv_window_first(void *p, int seq, int len)
{
    struct cpu_ctx *c = p;
    (void)seq;
    return c->ring && len > c->ring ? len - c->ring : 0;
}

/* ---- state snapshots ----------------------------------------------------------------------
 * A snapshot is a header (the length the state holds) and then, for each layer in order
 * that has them, its conv window and its recurrent states, f32, as the sequence holds
 * them, so a save and a load are memcpys. */

struct snap_head {
    int64_t len; /* 8 bytes: the floats after it stay aligned */
};

static size_t state_floats(const struct cellm_config *c)
{
    size_t n = 0;
    for (int l = 0; l < c->n_layers; l++)
        n += (size_t)(cellm_hybrid_conv_floats(c, l) + cellm_hybrid_rec_floats(c, l));
    return n;
}

/* Copies s's state out to `save`, or in from `load` (the other is NULL). */
static void state_copy(const struct cellm_config *c, struct cellm_cpu_state *s, float *save,
                       const float *load)
{
    size_t off = 0;
    for (int l = 0; l < c->n_layers; l++) {
        float *part[2] = {s->conv[l], s->rec[l]};
        size_t n[2] = {(size_t)cellm_hybrid_conv_floats(c, l),
                       (size_t)cellm_hybrid_rec_floats(c, l)};
        for (int k = 0; k < 2; k++) {
            if (!n[k]) continue;
            if (save)
                memcpy(save + off, part[k], n[k] * sizeof(float));
            else
                memcpy(part[k], load + off, n[k] * sizeof(float));
            off += n[k];
        }
    }
}

enum cellm_status cellm_cpu_state_save(void *p, int seq, void **snap, size_t *bytes,
                                       struct cellm_error *err)
{
    struct cpu_ctx *c = p;
    struct cpu_seq *s = &c->seqs[seq];
    *snap = NULL;
    *bytes = 0;
    /* a sequence before its first row holds the zero state */
    CELLM_TRY(cellm_cpu_state_reserve(c->d, &s->st, err));
    size_t n = sizeof(struct snap_head) + state_floats(&c->d->cfg) * sizeof(float);
    struct snap_head *h = cellm_malloc(n);
    if (!h)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for a state snapshot of sequence %d "
                          "(%.1f MB)",
                          seq, (double)n / 1e6);
    h->len = s->st.len;
    state_copy(&c->d->cfg, &s->st, (float *)(h + 1), NULL);
    *snap = h;
    *bytes = n;
    return CELLM_OK;
}

enum cellm_status cellm_cpu_state_load(void *p, int seq, const void *snap, struct cellm_error *err)
{
    struct cpu_ctx *c = p;
    struct cpu_seq *s = &c->seqs[seq];
    const struct snap_head *h = snap;
    CELLM_TRY(cellm_cpu_state_reserve(c->d, &s->st, err));
    state_copy(&c->d->cfg, &s->st, NULL, (const float *)(h + 1));
    s->st.len = (int)h->len;
    return CELLM_OK;
}
