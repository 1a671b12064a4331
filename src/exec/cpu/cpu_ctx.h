/*
 * cpu_ctx.h: the CPU executor's model and context records, shared by cpu.c (the forward
 * pass) and cpu_kv.c (the prefix cache's copies of KV state and sequence state). Private
 * to src/exec/cpu.
 */
#ifndef CELLM_EXEC_CPU_CTX_H
#define CELLM_EXEC_CPU_CTX_H

#include <stddef.h>
#include <stdint.h>

#include "exec/exec.h"
#include "fast.h"
#include "kernels.h"
#include "seqstate.h"

struct cellm_pool;
struct cellm_mla;
struct cellm_cpu_g4;
struct cellm_cpu_g3n;

/* The executor's options (cellm_model_params.exec_options). */
struct cpu_opts {
    int isa;     /* 0 auto, else 1 + enum cellm_isa */
    int kv_ring; /* sliding-window layers keep a ring of window + CHUNK positions */
};

struct cpu_model {
    const struct cellm_desc *d;
    struct cpu_opts opts;
    enum cellm_isa isa;
    int fast;                 /* --precision fast */
    enum cellm_fast_isa fisa; /* its kernels */
    char desc[128];
};

/* Rows per forward chunk. */
#define CHUNK 256

struct cpu_seq {
    int cap;   /* positions allocated per full-attention layer */
    float **k; /* [n_layers] of [cap or ring][kv_dim] */
    float **v;
    uint16_t **k16, **v16;     /* fast mode: the same in f16, and k/v stay NULL */
    struct cellm_cpu_state st; /* conv windows and recurrent states (seqstate.h) */
};

struct cpu_ctx {
    struct cpu_model *m;
    const struct cellm_desc *d;
    struct cellm_pool *pool;
    int max_seqs;
    struct cpu_seq *seqs;
    int rows_cap; /* rows the batch buffers hold */
    float *x, *h, *q, *k, *v, *att, *o, *gate, *up, *router;
    float *moe_out;                       /* [rows][n_experts_used][dim] */
    int *moe_idx;                         /* [rows][n_experts_used] */
    float *moe_w;                         /* [rows][n_experts_used] */
    int *moe_rows;                        /* [rows] rows routed to one expert */
    float *moe_x, *moe_g, *moe_u, *moe_y; /* gathered per-expert batches */
    float *mm_scratch;                    /* matmul per-thread dequant buffers */
    int64_t mm_cols;
    float *scores; /* per-thread attention scores, [threads][score_cap] */
    int score_cap;
    int ring;                /* KV slots of a sliding layer: window + CHUNK; 0 = no sliding layer */
    struct cellm_fast *fast; /* fast mode's activation buffers; NULL in exact mode */
    int32_t *routes;         /* MoE: the last eval's experts, [rows][n_layers][n_experts_used] */
    size_t routes_cap;       /* ints */
    int routes_rows, route_base; /* rows recorded; first row of the chunk being evaluated */
    struct cellm_cpu_hyb hyb;    /* the state blocks' batch buffers (seqstate.h) */
    struct cellm_cpu_env env;
    struct cellm_mla *mla;           /* latent attention and its cache (cfg.mla), else NULL */
    int64_t qd_max, kd_max, ffn_max; /* the widest layer's (Gemma 4 sizes them per layer) */
    struct cellm_cpu_g4 *g4;         /* Gemma 4's buffers (gemma4.h); NULL otherwise */
    struct cellm_cpu_g3n *g3n;       /* Gemma 3n's streams (altup.h); NULL otherwise */
};

/* Layer l's key (and value) width: its KV heads times its head size. */
static inline size_t layer_kd(const struct cpu_ctx *c, int l)
{
    const struct cellm_layer *L = &c->d->layers[l];
    return (size_t)L->n_kv_heads * L->head_dim;
}

/* Whether layer l stores keys and values (a KV-shared layer reads an earlier layer's). */
static inline int kv_own(const struct cpu_ctx *c, int l)
{
    return c->d->layers[l].kv_src == l;
}

static inline int is_ring(const struct cpu_ctx *c, int l)
{
    return c->ring && c->d->layers[l].attn == CELLM_ATTN_SLIDING;
}

/* Slot of position pos in layer l's cache. */
static inline size_t kv_slot(const struct cpu_ctx *c, int l, int pos)
{
    return is_ring(c, l) ? (size_t)(pos % c->ring) : (size_t)pos;
}

static inline int64_t max_i64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* Grows sequence s's KV cache to hold need positions (cpu.c). */
enum cellm_status cellm_cpu_reserve_seq(struct cpu_ctx *c, struct cpu_seq *s, int need,
                                        struct cellm_error *err);

/* The prefix cache's block copies (exec.h's kv_* entries; cpu_kv.c). */
size_t cellm_cpu_kv_block_bytes(void *p, int n, int flags);
enum cellm_status cellm_cpu_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                    struct cellm_error *err);
enum cellm_status cellm_cpu_kv_load(void *p, int seq, int pos, int n, int flags, const void *blk,
                                    struct cellm_error *err);
void cellm_cpu_kv_block_free(void *p, void *blk);
int cellm_cpu_kv_window_first(void *p, int seq, int len);
/* The prefix cache's state snapshots (exec.h's state_* entries; cpu_kv.c; freed with
 * cellm_cpu_kv_block_free). */
enum cellm_status cellm_cpu_state_save(void *p, int seq, void **snap, size_t *bytes,
                                       struct cellm_error *err);
enum cellm_status cellm_cpu_state_load(void *p, int seq, const void *snap, struct cellm_error *err);

#endif
