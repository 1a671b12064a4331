/*
 * cuda_kv.c: the KV cache of the CUDA executor, and the prefix-cache blocks copied out of
 * and into it.
 *
 * Paged (the default): a context owns a pool of blocks (base/blockpool.h), each
 * CU_KV_BLOCK positions of every layer, [n_layers][2][CU_KV_BLOCK][kv_dim] f32, made in
 * chunks of about 256 MiB (one cudaMalloc each) as sequences need them, up to a budget:
 * option kv_gb (GiB), else 90% of the device memory free when the context is made, less
 * 1 GiB and the prefix cache's budget, and no more than every sequence at
 * max_position_embeddings. A sequence owns a block table; it takes blocks as it grows and
 * gives them back when it is cleared, so a server in steady state allocates nothing and
 * its captured decode graph stays valid (the rows carry the table's device address, which
 * never moves). Running out of the budget is an error naming it; nothing is truncated.
 *
 * Contiguous (kv_paged=0, the layout before paging, kept for comparison): one cache per
 * sequence, [n_layers][2][cap][kv_dim], grown by doubling with cudaMalloc and a copy, and
 * freed (cudaFree) when the sequence is cleared.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"

#define KV_CHUNK_BYTES ((size_t)256 << 20) /* device memory made by one growth of the pool */
#define KV_TMAX ((int32_t)1 << 16)         /* most blocks a sequence's table holds */

static size_t kv_dim(const struct cu_ctx *c)
{
    return (size_t)c->d->cfg.n_kv_heads * (size_t)c->d->cfg.head_dim;
}

/* The device address of pool block id. */
static float *kv_block(const struct cu_ctx *c, int32_t id)
{
    const struct cellm_blockpool *p = &c->kv.pool;
    return (float *)(c->kv.chunks[id / p->step] + (size_t)(id % p->step) * p->block_bytes);
}

static enum cellm_status kv_grow(void *arg, int32_t from, int32_t to, struct cellm_error *err)
{
    struct cu_ctx *c = arg;
    struct cellm_blockpool *p = &c->kv.pool;
    void *mem = NULL;
    cudaError_t e = cudaMalloc(&mem, (size_t)(to - from) * p->block_bytes);
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: cannot allocate %.2f GiB for KV blocks %ld..%ld of the "
                          "pool's %ld (%s): %s; lower --kv-gb",
                          (double)(to - from) * (double)p->block_bytes / (1024.0 * 1024 * 1024),
                          (long)from, (long)to - 1, (long)p->limit, p->budget,
                          cudaGetErrorString(e));
    c->kv.chunks[from / p->step] = mem;
    return CELLM_OK;
}

enum cellm_status cellm_cuda_kv_init(struct cu_ctx *c, size_t cache_bytes, struct cellm_error *err)
{
    struct cu_kv *k = &c->kv;
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_model *m = c->m;
    k->paged = m->kv_paged;
    if (!k->paged) return CELLM_OK;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    size_t bb = (size_t)cfg->n_layers * 2 * CU_KV_BLOCK * kv_dim(c) * sizeof(float);
    int64_t per_seq =
        cfg->max_pos > 0 ? ((int64_t)cfg->max_pos + CU_KV_BLOCK - 1) / CU_KV_BLOCK : KV_TMAX;
    char budget[64];
    int64_t limit;
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) fr = total = 0;
    if (m->kv_blocks) {
        limit = m->kv_blocks;
        snprintf(budget, sizeof budget, "kv_blocks=%d", m->kv_blocks);
    } else if (m->kv_gb) {
        limit = (int64_t)((double)m->kv_gb * gib / (double)bb);
        snprintf(budget, sizeof budget, "kv_gb=%d", m->kv_gb);
    } else {
        /* room for the prefix cache, the batch buffers, the GEMM tiles and cuBLAS */
        size_t keep = cache_bytes + ((size_t)1 << 30);
        double avail = fr > keep ? 0.9 * (double)(fr - keep) : 0;
        limit = (int64_t)(avail / (double)bb);
        if (limit > per_seq * c->max_seqs) limit = per_seq * c->max_seqs;
        snprintf(budget, sizeof budget, "automatic: %.2f GiB of %.2f GiB free",
                 (double)limit * (double)bb / gib, (double)fr / gib);
    }
    /* a budget beyond the device's memory could never be made: it would only size the
     * free list */
    if (total && limit > (int64_t)(total / bb)) limit = (int64_t)(total / bb);
    if (limit > INT32_MAX / 2) limit = INT32_MAX / 2;
    if (limit < 1)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cuda executor: a KV block (%d positions of every layer) takes %.1f MiB, "
                          "and the KV budget (%s) holds none; raise --kv-gb",
                          CU_KV_BLOCK, (double)bb / (1024.0 * 1024.0), budget);
    int64_t step = (int64_t)(KV_CHUNK_BYTES / bb);
    CELLM_TRY(cellm_blockpool_init(&k->pool, CU_KV_BLOCK, (int32_t)limit,
                                   (int32_t)(step < 1 ? 1 : step), bb, budget, err));
    k->pool.grow = kv_grow;
    k->pool.arg = c;
    int64_t tmax = per_seq < limit ? per_seq : limit;
    k->tmax = (int32_t)(tmax < KV_TMAX ? tmax : KV_TMAX);
    size_t n = (size_t)c->max_seqs * (size_t)k->tmax;
    k->chunks = cellm_calloc((size_t)(k->pool.limit / k->pool.step + 1), sizeof *k->chunks);
    k->ids = cellm_malloc(n * sizeof *k->ids);
    if (!k->chunks || !k->ids)
        return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    CU_TRY(cudaMallocHost((void **)&k->ptr, n * sizeof *k->ptr));
    CU_TRY(cudaMalloc((void **)&k->dptr, n * sizeof *k->dptr));
    for (int i = 0; i < c->max_seqs; i++)
        c->seqs[i].tab = (struct cellm_blocktable){k->ids + (size_t)i * k->tmax, 0, k->tmax};
    return CELLM_OK;
}

void cellm_cuda_kv_free(struct cu_ctx *c)
{
    struct cu_kv *k = &c->kv;
    for (int i = 0; i < c->max_seqs && c->seqs; i++)
        if (c->seqs[i].kv) cudaFree(c->seqs[i].kv);
    if (k->chunks)
        for (int32_t i = 0; i <= k->pool.limit / k->pool.step; i++)
            if (k->chunks[i]) cudaFree(k->chunks[i]);
    cellm_free(k->chunks);
    cellm_free(k->ids);
    if (k->ptr) cudaFreeHost(k->ptr);
    if (k->dptr) cudaFree(k->dptr);
    cellm_blockpool_free(&k->pool);
    memset(k, 0, sizeof *k);
}

/* The contiguous layout: grows the cache by doubling (cudaMalloc, copy, cudaFree). */
static enum cellm_status reserve_contiguous(struct cu_ctx *c, struct cu_seq *s, int need,
                                            struct cellm_error *err)
{
    if (need <= s->cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t kd = (int64_t)kv_dim(c), L = cfg->n_layers;
    int64_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > cfg->max_pos && need <= cfg->max_pos) cap = cfg->max_pos;
    float *kv;
    cudaError_t e = cudaMalloc((void **)&kv, (size_t)(L * 2 * cap * kd) * sizeof(float));
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: cannot grow a KV cache to %lld positions: %s",
                          (long long)cap, cudaGetErrorString(e));
    if (s->kv) {
        for (int64_t p = 0; p < L * 2; p++)
            CU_TRY(cudaMemcpyAsync(kv + p * cap * kd, s->kv + p * s->cap * kd,
                                   (size_t)(s->cap * kd) * sizeof(float), cudaMemcpyDeviceToDevice,
                                   c->st));
        CU_TRY(cudaStreamSynchronize(c->st));
        cudaFree(s->kv);
    }
    s->kv = kv;
    s->cap = cap;
    return CELLM_OK;
}

enum cellm_status cellm_cuda_reserve_seq(struct cu_ctx *c, int seq, int need,
                                         struct cellm_error *err)
{
    struct cu_seq *s = &c->seqs[seq];
    if (!c->kv.paged) return reserve_contiguous(c, s, need, err);
    struct cu_kv *k = &c->kv;
    int32_t old = s->tab.n;
    if ((int64_t)need <= (int64_t)old * CU_KV_BLOCK) return CELLM_OK;
    enum cellm_status st = cellm_blockpool_reserve(&k->pool, &s->tab, need, err);
    if (st) return cellm_errf_prefix(err, st, "sequence %d", seq);
    /* the new entries go up in stream order, before any kernel that reads them. Between
     * two synchronised steps only this function writes ptr entries, and every write is
     * followed by its copy, so a copy that runs late carries the newest (equal) values. */
    float **h = k->ptr + (size_t)seq * k->tmax;
    for (int32_t b = old; b < s->tab.n; b++)
        h[b] = kv_block(c, s->tab.ids[b]);
    CU_TRY(cudaMemcpyAsync(k->dptr + (size_t)seq * k->tmax + old, h + old,
                           (size_t)(s->tab.n - old) * sizeof *h, cudaMemcpyHostToDevice, c->st));
    return CELLM_OK;
}

void cellm_cuda_seq_release(struct cu_ctx *c, int seq, int from)
{
    struct cu_seq *s = &c->seqs[seq];
    if (c->kv.paged) {
        /* no sync: copies and kernels that still read these blocks are queued on the
         * context's stream, ahead of anything a later owner will queue */
        cellm_blockpool_truncate(&c->kv.pool, &s->tab, from);
        return;
    }
    if (from == 0 && s->kv) {
        cudaStreamSynchronize(c->st);
        cudaFree(s->kv);
        s->kv = NULL;
        s->cap = 0;
    }
}

void cellm_cuda_kv_row(const struct cu_ctx *c, int seq, struct cu_row *r)
{
    const struct cu_seq *s = &c->seqs[seq];
    if (c->kv.paged) {
        r->kv = NULL;
        r->cap = CU_KV_BLOCK;
        r->blocks = c->kv.dptr + (size_t)seq * c->kv.tmax;
    } else {
        r->kv = s->kv;
        r->cap = s->cap;
        r->blocks = NULL;
    }
}

/* ---- prefix-cache blocks ------------------------------------------------------------------
 * A block is device memory: for each layer whose data it holds (full-attention layers
 * always, sliding ones with CELLM_KV_WINDOW; this executor keeps whole histories, so it
 * always can), K[n][kv_dim] then V[n][kv_dim]. A run of positions of one half of one layer
 * is contiguous in a sequence's cache as long as it stays in one pool block (paged) or at
 * all (contiguous), so a save or a load is two device-to-device copies per layer and pool
 * block it touches, queued on the context's stream like every step (which orders them
 * against the evaluations around them). */

static int kv_has_layer(const struct cu_ctx *c, int l, int flags)
{
    return c->d->layers[l].attn == CELLM_ATTN_FULL || (flags & CELLM_KV_WINDOW);
}

size_t cellm_cuda_kv_block_bytes(void *p, int n, int flags)
{
    struct cu_ctx *c = p;
    size_t kd = (size_t)c->d->cfg.n_kv_heads * c->d->cfg.head_dim, b = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++)
        if (kv_has_layer(c, l, flags)) b += 2 * (size_t)n * kd * sizeof(float);
    return b;
}

/* Queues the copies between a sequence's cache and a block (to = 1: into the cache). */
static enum cellm_status kv_copy(struct cu_ctx *c, int seq, int pos, int n, int flags, float *blk,
                                 int to, struct cellm_error *err)
{
    const struct cu_seq *s = &c->seqs[seq];
    size_t kd = kv_dim(c), off = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++) {
        if (!kv_has_layer(c, l, flags)) continue;
        int write =
            !to || c->d->layers[l].attn == CELLM_ATTN_FULL || (flags & CELLM_KV_LOAD_WINDOW);
        for (int half = 0; half < 2 && write; half++)
            for (int p = pos; p < pos + n;) {
                /* a run of positions in one pool block (paged), or all of them */
                int run = pos + n - p;
                float *cache;
                if (c->kv.paged) {
                    int in = p & (CU_KV_BLOCK - 1);
                    if (run > CU_KV_BLOCK - in) run = CU_KV_BLOCK - in;
                    cache = kv_block(c, s->tab.ids[p >> CU_KV_SHIFT]) +
                            ((size_t)(2 * l + half) * CU_KV_BLOCK + (size_t)in) * kd;
                } else
                    cache = s->kv + ((size_t)(2 * l + half) * (size_t)s->cap + (size_t)p) * kd;
                float *b = blk + off + ((size_t)half * n + (size_t)(p - pos)) * kd;
                CU_TRY(cudaMemcpyAsync(to ? cache : b, to ? b : cache,
                                       (size_t)run * kd * sizeof(float), cudaMemcpyDeviceToDevice,
                                       c->st));
                p += run;
            }
        off += 2 * (size_t)n * kd;
    }
    return CELLM_OK;
}

/* Positions a sequence's cache holds now. */
static int64_t kv_held(const struct cu_ctx *c, const struct cu_seq *s)
{
    return c->kv.paged ? (int64_t)s->tab.n * CU_KV_BLOCK : (s->kv ? s->cap : 0);
}

enum cellm_status cellm_cuda_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                     struct cellm_error *err)
{
    struct cu_ctx *c = p;
    if (pos + n > kv_held(c, &c->seqs[seq]))
        return cellm_errf(err, CELLM_ERR_ARG, "kv_save: sequence %d does not hold positions %d..%d",
                          seq, pos, pos + n - 1);
    float *b = NULL;
    cudaError_t e = cudaMalloc((void **)&b, cellm_cuda_kv_block_bytes(c, n, flags));
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: no device memory for a cache "
                          "block: %s",
                          cudaGetErrorString(e));
    enum cellm_status st = kv_copy(c, seq, pos, n, flags, b, 0, err);
    if (st) {
        cudaFree(b);
        return st;
    }
    *blk = b;
    return CELLM_OK;
}

enum cellm_status cellm_cuda_kv_load(void *p, int seq, int pos, int n, int flags, const void *blk,
                                     struct cellm_error *err)
{
    struct cu_ctx *c = p;
    CELLM_TRY(cellm_cuda_reserve_seq(c, seq, pos + n, err));
    return kv_copy(c, seq, pos, n, flags, (float *)blk, 1, err);
}

void cellm_cuda_kv_block_free(void *p, void *blk)
{
    struct cu_ctx *c = p;
    cudaStreamSynchronize(c->st); /* copies from it may still be queued */
    cudaFree(blk);
}

int cellm_cuda_kv_window_first(void *p, int seq, int len)
{
    (void)p;
    (void)seq;
    (void)len;
    return 0; /* whole histories: nothing is dropped */
}
