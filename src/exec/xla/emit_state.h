/*
 * emit_state.h: layers with per-sequence state in the StableHLO modules (emit.h), for
 * now LFM2's short gated convolution (docs/forward/lfm2.md, sequence-state.md).
 *
 * It owns: which state families the XLA executor implements, the state tensors a
 * sequence carries on the device (one conv window [K-1, channels] f32 per conv layer,
 * oldest first, zero at the start), and the graph of the conv block. A module of a model
 * with state takes, after the KV caches,
 *     nreal   tensor<i32>   the real rows of the call (rows past it are padding)
 *     cs_0, cs_1, ...       the state tensors in layer order, donated
 * and returns the updated states after the caches, in the same order. The window after a
 * call is the last K-1 conv inputs of the real rows, so padding never enters the state
 * and a prompt split into chunks gives what one pass gives.
 */
#ifndef CELLM_EXEC_XLA_EMIT_STATE_H
#define CELLM_EXEC_XLA_EMIT_STATE_H

#include "exec/xla/emit.h"
#include "model/model.h"

/* 1 when the executor implements d's state layers (or it has none). */
int cellm_xla_state_supported(const struct cellm_config *c);

/* How many state tensors a sequence carries (0 without state layers). */
int cellm_xla_state_count(const struct cellm_desc *d);
/* Shape of state tensor i (f32); returns its rank. */
int cellm_xla_state_shape(const struct cellm_desc *d, int i, int64_t *dims);

/* The state values of one module being emitted. */
struct cellm_xla_st {
    int n;                     /* state tensors */
    struct cellm_xh_val nreal; /* i32 scalar */
    struct cellm_xh_val *s;    /* [n] current values */
    int *first;                /* [n_layers] index of layer l's first state tensor, -1 */
};

/* Declares nreal and the state parameters; the states alias results first_result.. */
enum cellm_status cellm_xla_state_declare(struct cellm_xh *b, const struct cellm_desc *d,
                                          int first_result, struct cellm_xla_st *st,
                                          struct cellm_error *err);
/* The state mixer of layer l on h [T, dim] (em: emit.c's emitter), updating st. */
struct cellm_xh_val cellm_xla_state_mixer(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                                          struct cellm_xla_st *st, int l, struct cellm_xh_val h);
/* Appends the updated states as results. */
void cellm_xla_state_results(struct cellm_xh *b, const struct cellm_xla_st *st);
void cellm_xla_state_free(struct cellm_xla_st *st);

/* The causal depthwise conv of x [T, C] over state si's window with layer l's taps
 * ("l<l>_h_conv"), summed as cellm_cpu_conv_step sums; the window then holds the K-1
 * inputs before row nreal. */
struct cellm_xh_val cellm_xla_state_conv(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                                         struct cellm_xla_st *st, int l, int si,
                                         struct cellm_xh_val x);
/* The Gated DeltaNet block of layer l (emit_gdn.c): states first[l] (conv window) and
 * first[l] + 1 (S). */
struct cellm_xh_val cellm_xla_gdn_block(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                                        struct cellm_xla_st *st, int l, struct cellm_xh_val h);

/* Shape of a sequence's device cache i (k_l at 2l, v_l at 2l + 1) for cap positions:
 * [cap, n_kv, head_dim] of the layer (cellm_layer's own) for attention layers; the latent [cap, 1, r + qk_rope] for k of an
 * MLA layer (emit_mla.c); a placeholder [1, 1, 1] for v of an MLA layer and for both of a
 * state layer, which keep no KV cache. */
void cellm_xla_cache_shape(const struct cellm_desc *d, int i, int64_t cap, int64_t dims[3]);

/* DeepSeek-V3's latent attention of layer l on h [T, dim] (emit_mla.c): pos0 the first
 * row's position, mask [T, cap] the causal mask, cs/sn the RoPE tables [T, qk_rope/2],
 * *cache layer l's latent cache, replaced by its update. */
struct cellm_xh_val cellm_xla_mla_attention(void *em, struct cellm_xh *b,
                                            const struct cellm_desc *d, int l,
                                            struct cellm_xh_val h, struct cellm_xh_val pos0,
                                            struct cellm_xh_val mask, struct cellm_xh_val cs,
                                            struct cellm_xh_val sn, struct cellm_xh_val *cache);

/* From emit.c: x [N, cols] times the matrix parameter family `base` (stored floats or
 * dequantized in the graph), and a parameter by name (or an empty value). */
struct cellm_xh_val cellm_xla_em_linear(void *em, struct cellm_xh_val x, const char *base,
                                        const struct cellm_weight *w);
struct cellm_xh_val cellm_xla_em_param(void *em, const char *name);
/* The f32 value of the matrix parameter family `base` (any rank: stacked per head). */
struct cellm_xh_val cellm_xla_em_weight(void *em, const char *base, const struct cellm_weight *w);

#endif
