/*
 * emit.h: the model as StableHLO modules, for the OpenXLA executor.
 *
 * A plan lists the weights of a struct cellm_desc as parameters of @main, in their
 * stored format: F32/F16/BF16 tensors as they are, MLX affine weights as three tensors
 * (U32 codes, 16-bit scales, 16-bit biases), the other quantized formats as their codes,
 * scales, zeros and g_idx (dequant.h), stacked experts as one [E, ...] tensor made of E
 * parts. With the executor option dequant=load, quantized weights are instead dequantized
 * on the host and uploaded as f32 (to measure in-graph dequantization against it). The
 * executor uploads each once; every module declares them in plan order.
 *
 * A module computes T rows of one sequence starting at a runtime position, over a KV
 * cache of `cap` positions. @main's parameters, in order:
 *     the plan's weights;
 *     tokens  tensor<T x i32>      (rows past the real count are padding)
 *     pos0    tensor<i32>          (position of row 0)
 *     last    tensor<i32>          (only when !all_logits: the row whose logits return)
 *     cos_g, sin_g  tensor<T x rot/2 x f32>  RoPE tables of the rows (global layers)
 *     cos_l, sin_l  the same for sliding layers, only when plan.local_rope
 *     cos_p, sin_p  tensor<T x prop_half x f32>, Gemma 4's full layers, only when
 *                   plan.prop_half
 *     k_0, v_0, k_1, v_1, ...  tensor<cap x n_kv x head_dim x f32>, donated (layer l's
 *                   own KV heads and head size: Gemma 4's full layers differ; a KV-shared
 *                   layer's cache is passed through unread; a latent cache or a
 *                   placeholder for MLA and state layers: cellm_xla_cache_shape,
 *                   emit_state.h)
 *     nreal, then the state tensors, donated (only for models with state: emit_state.h)
 * and its results: logits tensor<(T or 1) x vocab x f32>, then the updated caches in the
 * same order (result 1 + 2l is k_l, 2 + 2l is v_l), then the updated states.
 */
#ifndef CELLM_EXEC_XLA_EMIT_H
#define CELLM_EXEC_XLA_EMIT_H

#include "exec/xla/hlo.h"
#include "model/model.h"

struct cellm_xla_wparam {
    char name[40];
    enum cellm_xh_ty ty;
    int rank;
    int64_t d[3];
    int nparts;            /* contiguous host pieces, concatenated in order */
    const uint8_t **parts; /* [nparts] (owned array; data lives in the checkpoint) */
    size_t part_bytes;     /* bytes of each piece */
    size_t bytes;          /* nparts * part_bytes */
    uint8_t *owned;        /* host data the parts point into when the plan made it
                              (affine weights dequantized at load); else NULL */
};

struct cellm_xla_plan {
    struct cellm_xla_wparam *w;
    int n, cap;
    int local_rope;      /* sliding layers use their own RoPE frequencies */
    int half;            /* rot_dims / 2 */
    int dequant_at_load; /* option dequant=load: quantized weights become f32 parameters,
                            dequantized on the host (for measurement) */
    /* Gemma 4: half of the full layers' own RoPE table (cos_p, sin_p: proportional RoPE
     * over global_head_dim; cos_g, sin_g are then the sliding layers'); 0 = none */
    int prop_half;
};

struct cellm_xla_key {
    int T;          /* rows per call */
    int cap;        /* KV positions */
    int all_logits; /* 1: logits of every row; 0: of row `last` only */
};

/* Whether the description uses only what the emitter implements (else UNSUPPORTED). */
enum cellm_status cellm_xla_supported(const struct cellm_desc *d, struct cellm_error *err);
/* dequant_at_load: see cellm_xla_plan. */
enum cellm_status cellm_xla_plan_build(const struct cellm_desc *d, int dequant_at_load,
                                       struct cellm_xla_plan *p, struct cellm_error *err);
void cellm_xla_plan_free(struct cellm_xla_plan *p);
/* Appends a parameter of nparts pieces of part_bytes each (the caller fills parts[]). */
enum cellm_status cellm_xla_plan_add(struct cellm_xla_plan *p, const char *name,
                                     enum cellm_xh_ty ty, int rank, const int64_t *d, int nparts,
                                     size_t part_bytes, struct cellm_error *err);
/* Index of a parameter by name, or -1. */
int cellm_xla_plan_find(const struct cellm_xla_plan *p, const char *name);

/* The RoPE inputs of a call (cos_g, sin_g, then cos_l, sin_l when plan.local_rope, then
 * cos_p, sin_p when plan.prop_half; each T x its half floats, consecutive in out) for rows
 * at positions p0.. of a sequence that reaches seq_len tokens in this call (longrope's
 * switch). Returns how many tables; halfs[i] receives table i's half. */
int cellm_xla_rope_inputs(const struct cellm_desc *d, const struct cellm_xla_plan *p, int p0,
                          int T, int32_t seq_len, float *out, int *halfs);

/* The module text for key k (cellm_malloc'd). */
enum cellm_status cellm_xla_emit(const struct cellm_desc *d, const struct cellm_xla_plan *p,
                                 const struct cellm_xla_key *k, char **text, size_t *len,
                                 struct cellm_error *err);

#endif
