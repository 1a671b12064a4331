/*
 * emit_int.h: the emitter's state and small helpers, shared by emit.c and the files of
 * family pieces beside it (emit_pos.c: positions; emit_moe.c: sigmoid routers and shared
 * experts; emit_g4.c: Gemma 4; emit_g3n.c: Gemma 3n). Internal to src/exec/xla.
 */
#ifndef CELLM_EXEC_XLA_EMIT_INT_H
#define CELLM_EXEC_XLA_EMIT_INT_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exec/xla/emit.h"
#include "exec/xla/emit_state.h"

typedef struct cellm_xh_val val;

#define CELLM_XLA_MAX_ALTUP 8 /* Gemma 3n's streams (altup_num_inputs) the emitter holds */

struct em {
    struct cellm_xh *b;
    const struct cellm_desc *d;
    const struct cellm_config *c;
    const struct cellm_xla_plan *p;
    val *w; /* [p->n] weight parameters */
    int T;
    val tokens, pos0, last, cos_g, sin_g, cos_l, sin_l, zero;
    val mask_full, mask_win; /* [T, cap] i1 */
    val mask_chunk;          /* [T, cap] i1, Llama 4's chunked layers (emit_pos.c) */
    val cos_p, sin_p;        /* Gemma 4's full layers' RoPE tables [T, prop_half] */
    val ple;                 /* Gemma 4's per-layer inputs [T, n_layers, ple_dim] (emit_g4.c) */
    val alt[CELLM_XLA_MAX_ALTUP]; /* Gemma 3n's AltUp streams [T, dim] (emit_g3n.c) */
    val *cache;              /* [2 * n_layers] */
    struct cellm_xla_st st; /* per-sequence state layers (emit_state.c) */
};

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

static inline val none(void)
{
    val v;
    memset(&v, 0, sizeof v);
    return v;
}

static inline val P(struct em *e, const char *fmt, int l)
{
    char n[48];
    snprintf(n, sizeof n, fmt, l);
    int i = cellm_xla_plan_find(e->p, n);
    return i < 0 ? none() : e->w[i];
}

static inline val f32(struct em *e, val x)
{
    return cellm_xh_ok(&x) ? cellm_xh_convert(e->b, x, XH_F32) : x;
}

static inline val splat(struct em *e, float v, const val *like)
{
    return cellm_xh_const_f32(e->b, v, like->rank, like->d);
}

static inline val bin(struct em *e, const char *op, val x, val y)
{
    return cellm_xh_bin(e->b, op, x, y);
}

/* x (rank r) broadcast to like's shape, x's dims going to `dims`. */
static inline val bc(struct em *e, val x, const val *like, const int64_t *dims)
{
    return cellm_xh_bcast(e->b, x, like->rank, like->d, dims);
}

/* x broadcast along its trailing dims: x's dims are like's leading dims. */
static inline val bc_lead(struct em *e, val x, const val *like)
{
    int64_t dims[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++)
        dims[i] = i;
    return bc(e, x, like, dims);
}

/* x broadcast along its leading dims: x's dims are like's trailing dims. */
static inline val bc_tail(struct em *e, val x, const val *like)
{
    int64_t dims[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++)
        dims[i] = like->rank - x.rank + i;
    return bc(e, x, like, dims);
}

/* Layer l's parameter of tensor id ("l3_wq", plan.c), none() when absent. */
static inline val PL(struct em *e, int l, enum cellm_lt id)
{
    char n[48];
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[id].field);
    return P(e, n, 0);
}

/* ---- emit.c's blocks, for the piece files ---- */

/* The f32 value of a matrix parameter family named `base` (plain, or _q/_s/_bi). */
val cellm_xla_em_matrix(struct em *e, const char *base, const struct cellm_weight *w);
/* x times layer l's matrix id, plus its bias (bias_id < 0: none). */
val cellm_xla_em_linear_l(struct em *e, val x, int l, enum cellm_lt id, int bias_id);
/* act(g) * u, the config's activation. */
val cellm_xla_em_glu(struct em *e, val g, val u);
/* Rows ids [T] (i32) of the matrix parameter family `base` (an embedding), as f32. */
val cellm_xla_em_rows(struct em *e, const char *base, const struct cellm_weight *w, val ids);
/* Norm of the given kind over the last dim of x, weight w over x's trailing dims. */
val cellm_xla_em_norm(struct em *e, enum cellm_norm_kind kind, val x, val w);
/* Layer l's shared experts (one SiLU MLP of s_gate, s_up, s_down) on h [T, D]. */
val cellm_xla_em_shared(struct em *e, int l, val h);
/* Every expert of layer l on every row of h, [E, T, D]. */
val cellm_xla_em_experts(struct em *e, int l, val h);
/* Layer l's attention on h [T, D] (its caches updated in e->cache), [T, D]. */
val cellm_xla_em_attention(struct em *e, int l, val h);

/* ---- emit_pos.c ---- */

/* Llama 4's RoPE of x [T, H, hd] on the pairs (2j, 2j+1) of its first 2*half dims. */
val cellm_xla_em_rope_pairs(struct em *e, val x, val cs, val sn);
/* Llama 4's weightless RMS norm of each head of x [T, H, hd]. */
val cellm_xla_em_l2norm(struct em *e, val x);
/* q [T, H, hd] times layer l's query scale of each row's position (Mistral 3's
 * llama_4_scaling, Llama 4's temperature on NoPE layers); q itself where there is none. */
val cellm_xla_em_qscale(struct em *e, int l, val q);
/* e->mask_chunk from the key and query positions kp, qp [T, cap] (i32). */
void cellm_xla_em_chunk_mask(struct em *e, val kp, val qp);

/* ---- emit_moe.c ---- */

/* k rounds of argmax over s [T, N] (the highest value, the lowest index on ties): one-hot
 * masks oh[j] [T, N] (i1) and the values v[j] [T] of the picks, in rank order. */
void cellm_xla_em_topk(struct em *e, val s, int K, val *oh, val *v);
/* Layer l's experts under a sigmoid router (glm4_moe's grouped one, Llama 4's that scales
 * the experts' input), with the shared experts added: [T, D]. */
val cellm_xla_em_moe_sigmoid(struct em *e, int l, val h);

/* ---- emit_g4.c ---- */

/* Gemma 4: the per-layer inputs of the rows from their scaled embeddings x [T, D] (e->ple). */
void cellm_xla_em_g4_ple(struct em *e, val x);
/* Gemma 4: the end of layer l (x plus the per-layer input's block, times layer_scalar). */
val cellm_xla_em_g4_layer_end(struct em *e, int l, val x);
/* Gemma 4's MoE block of layer l beside the dense MLP's output m, from the residual x:
 * post_ffn_norm1(m) + post_ffn_norm2(experts), [T, D] (cpu/gemma4.c's order). */
val cellm_xla_em_g4_moe(struct em *e, int l, val x, val m);

/* ---- emit_g3n.c ---- */

/* Gemma 3n: the AltUp streams e->alt from the scaled embeddings x [T, D]. */
void cellm_xla_em_g3n_embed(struct em *e, val x);
/* Gemma 3n: layer l on the streams e->alt (predict, LAuReL and attention, MLP, correct, the
 * per-layer input). */
void cellm_xla_em_g3n_layer(struct em *e, int l);
/* Gemma 3n: the streams brought back to one [T, D] (their mean), before the final norm. */
val cellm_xla_em_g3n_unembed(struct em *e);

#endif
