/*
 * cuda_kv.c: the KV caches, one per sequence, f32 [n_layers][2][cap][kv_dim], grown by
 * doubling like the CPU's, and the prefix-cache blocks copied out of and into them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"

enum cellm_status cellm_cuda_reserve_seq(struct cu_ctx *c, struct cu_seq *s, int need,
                                         struct cellm_error *err)
{
    if (need <= s->cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t kd = (int64_t)cfg->n_kv_heads * cfg->head_dim, L = cfg->n_layers;
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

/* ---- prefix-cache blocks ------------------------------------------------------------------
 * A block is device memory: for each layer whose data it holds (full-attention layers
 * always, sliding ones with CELLM_KV_WINDOW; this executor keeps whole histories, so it
 * always can), K[n][kv_dim] then V[n][kv_dim]. Positions [pos, pos + n) of one half of
 * one layer are contiguous in a sequence's cache ([n_layers][2][cap][kv_dim]), so a save
 * or a load is two device-to-device copies per layer, queued on the context's stream
 * like every step (which orders them against the evaluations around them). */

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
static enum cellm_status kv_copy(struct cu_ctx *c, struct cu_seq *s, int pos, int n, int flags,
                                 float *blk, int to, struct cellm_error *err)
{
    size_t kd = (size_t)c->d->cfg.n_kv_heads * c->d->cfg.head_dim, off = 0;
    size_t bytes = (size_t)n * kd * sizeof(float);
    for (int l = 0; l < c->d->cfg.n_layers; l++) {
        if (!kv_has_layer(c, l, flags)) continue;
        int write =
            !to || c->d->layers[l].attn == CELLM_ATTN_FULL || (flags & CELLM_KV_LOAD_WINDOW);
        for (int half = 0; half < 2 && write; half++) {
            float *cache = s->kv + ((size_t)(2 * l + half) * (size_t)s->cap + (size_t)pos) * kd;
            float *b = blk + off + (size_t)half * n * kd;
            CU_TRY(cudaMemcpyAsync(to ? cache : b, to ? b : cache, bytes, cudaMemcpyDeviceToDevice,
                                   c->st));
        }
        off += 2 * (size_t)n * kd;
    }
    return CELLM_OK;
}

enum cellm_status cellm_cuda_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                     struct cellm_error *err)
{
    struct cu_ctx *c = p;
    struct cu_seq *s = &c->seqs[seq];
    if (!s->kv || pos + n > s->cap)
        return cellm_errf(err, CELLM_ERR_ARG, "kv_save: sequence %d does not hold positions %d..%d",
                          seq, pos, pos + n - 1);
    float *b = NULL;
    cudaError_t e = cudaMalloc((void **)&b, cellm_cuda_kv_block_bytes(c, n, flags));
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: no device memory for a cache "
                          "block: %s",
                          cudaGetErrorString(e));
    enum cellm_status st = kv_copy(c, s, pos, n, flags, b, 0, err);
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
    struct cu_seq *s = &c->seqs[seq];
    CELLM_TRY(cellm_cuda_reserve_seq(c, s, pos + n, err));
    return kv_copy(c, s, pos, n, flags, (float *)blk, 1, err);
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
