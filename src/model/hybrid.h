/*
 * hybrid.h: the layers of a model that keep per-sequence state instead of (or beside) a KV
 * cache, as part of the generic description: LFM2's short gated convolutions and the Gated
 * DeltaNet linear attention of Qwen3-Next / Qwen3.5 (docs/forward/lfm2.md, qwen3-next.md,
 * sequence-state.md).
 *
 * It owns: the config keys of these families (cellm_hybrid_parse, called by hparams.c),
 * the per-layer mixer kind, the tensors of the state layers and of the shared expert
 * (struct cellm_hyb_layer, bound by cellm_hybrid_bind_layer from bind.c), the size of the
 * state a sequence carries per layer, and the text an executor that lacks these blocks
 * refuses a model with. The attention layers of a hybrid stay ordinary layers of
 * model.h's table.
 */
#ifndef CELLM_MODEL_HYBRID_H
#define CELLM_MODEL_HYBRID_H

#include <stdint.h>

#include "cellm.h"
#include "row.h"
#include "weight.h"

struct cellm_config;
struct cellm_desc;
struct cellm_layer;

/* cfg.hybrid: which family of state layers a model has (0: none). */
enum cellm_hybrid {
    CELLM_HYBRID_NONE,
    CELLM_HYBRID_LFM2,       /* conv / full_attention layers */
    CELLM_HYBRID_QWEN3_NEXT, /* Gated DeltaNet, grouped in_proj_qkvz / in_proj_ba */
    CELLM_HYBRID_QWEN3_5,    /* Gated DeltaNet, in_proj_qkv / _z / _b / _a apart */
};

/* What mixes tokens in a layer (cellm_layer.mixer). */
enum cellm_mixer {
    CELLM_MIXER_ATTN, /* softmax attention over the KV cache (every non-hybrid layer) */
    CELLM_MIXER_CONV, /* LFM2 short gated convolution: state = last L-1 values of B*x */
    CELLM_MIXER_GDN,  /* Gated DeltaNet: state = conv window + one [dk][dv] S per value head */
};

/* The tensors of a state layer (by mixer) and of a shared expert; absent ones are
 * CELLM_W_NONE. */
struct cellm_hyb_layer {
    /* LFM2 conv: in_proj [3H][H] (B, C, x~), conv [H][L], out_proj [H][H].
     * GDN: qkvz [2Kd + 2Vd][H] and ba [2nV][H] grouped per key head (Qwen3-Next), or qkv
     * [C][H], z [Vd][H], b, a [nV][H] (Qwen3.5); conv [C][W]; out_proj [H][Vd]. */
    struct cellm_weight in_proj, in_z, in_b, in_a, out_proj;
    struct cellm_vec conv;    /* [channels * kernel], channel-major (either stored layout) */
    struct cellm_vec a_log;   /* [nV] */
    struct cellm_vec dt_bias; /* [nV] */
    struct cellm_vec norm;    /* [dv] the gated RMSNorm's weight */
    /* shared expert (Qwen3-Next, Qwen3.5-MoE): SwiGLU of shared_ffn_dim, gated per token
     * by sigmoid(x . shared_gate) */
    struct cellm_weight sh_gate, sh_up, sh_down, sh_gate_w;
};

/* Reads the family's keys from the text config t (hparams.c calls it last, after the
 * generic keys): layer_types, kernel sizes, linear-attention heads, shared expert, LFM2's
 * MLP width. */
enum cellm_status cellm_hybrid_parse(const void *t /* cJSON */, const char *what, int hybrid,
                                     struct cellm_config *c, struct cellm_error *err);

/* Before the layers are bound: the storage layout (mlx-lm moves the conv weight and
 * stores the zero-centred norms as w + 1, so the norm kind follows the layout). */
enum cellm_status cellm_hybrid_probe(struct cellm_desc *d, struct cellm_error *err);

/* Binds layer i's state tensors and shared expert into L->hyb (allocated here). */
enum cellm_status cellm_hybrid_bind_layer(struct cellm_desc *d, int i, struct cellm_layer *L,
                                          struct cellm_error *err);

/* The checkpoint name of model.h table tensor `name` in this family (LFM2 renames). */
const char *cellm_hybrid_alias(const struct cellm_config *c, const char *name);

/* The final norm's tensor name. */
const char *cellm_hybrid_final_norm(const struct cellm_config *c);

/* The widest input of any state-layer product (for matmul scratch), 0 if none. */
int64_t cellm_hybrid_max_cols(const struct cellm_config *c);

/* Floats of state per sequence for layer l: the conv window and the recurrent states. */
int64_t cellm_hybrid_conv_floats(const struct cellm_config *c, int l);
int64_t cellm_hybrid_rec_floats(const struct cellm_config *c, int l);
/* Conv channels of a state layer (LFM2: H; GDN: 2 Kd + Vd). */
int64_t cellm_hybrid_channels(const struct cellm_config *c);

/* 1 when the model keeps per-sequence state that cannot be cut back to an earlier
 * position (recurrent or conv state). */
int cellm_config_has_state(const struct cellm_config *c);

/* The state-layer pieces a model needs ("short gated convolutions (LFM2)", ...), or NULL:
 * an executor without them refuses the model by this text at load. */
const char *cellm_config_state_pieces(const struct cellm_config *c);

/* The first layer with a recurrent or conv state, -1 if none (for messages). */
int cellm_config_first_state_layer(const struct cellm_config *c);

/* Whether row i of a step continues its sequence's conv/recurrent state, which cannot be
 * rewound or skip a position: the row must sit right after the step's previous row of the
 * same sequence (rows[0..i)), or, being its sequence's first row of the step, at `held`,
 * the positions that sequence's state holds. CELLM_ERR_ARG naming the sequence, the
 * position, the first state layer and the positions held otherwise. Every executor makes
 * this check before a step of a model with state (one message for all of them). */
enum cellm_status cellm_state_row_check(const struct cellm_config *c,
                                        const struct cellm_exec_row *rows, int i, int held,
                                        struct cellm_error *err);

#endif
