/*
 * model.h: the one generic decoder description every executor runs.
 *
 * Filled from a config (model/hparams.h) and a checkpoint (checkpoint/ckpt.h) by
 * cellm_desc_bind, which finds every tensor by name, checks every shape against the
 * config and the storage rules, and records views (no copies). Executors branch on the
 * flags here, never on family names.
 */
#ifndef CELLM_MODEL_MODEL_H
#define CELLM_MODEL_MODEL_H

#include "checkpoint/ckpt.h"
#include "model/hparams.h"
#include "weight.h"

struct cellm_layer {
    int sliding;           /* 1: attends to the last cfg.window keys only */
    const float *inv_freq; /* [rot_dims/2] RoPE inverse frequencies of this layer */

    struct cellm_vec attn_norm;      /* [dim] input_layernorm */
    struct cellm_vec attn_norm_b;    /* [dim] its bias (LayerNorm) */
    struct cellm_vec post_attn_norm; /* [dim] Gemma: norm of the attention output */
    struct cellm_vec ffn_norm;      /* [dim] post_attention_layernorm / pre_feedforward_layernorm */
    struct cellm_vec ffn_norm_b;    /* [dim] its bias (LayerNorm) */
    struct cellm_vec post_ffn_norm; /* [dim] Gemma: norm of the MLP output */

    struct cellm_weight wq; /* [n_heads*head_dim][dim] */
    struct cellm_weight wk; /* [n_kv_heads*head_dim][dim] */
    struct cellm_weight wv; /* [n_kv_heads*head_dim][dim] */
    struct cellm_weight wo; /* [dim][n_heads*head_dim] */
    struct cellm_vec bq, bk, bv, bo;
    struct cellm_vec q_norm, k_norm; /* [head_dim] shared by all heads */
    struct cellm_vec *q_norm_heads;  /* [n_heads] of [head_dim]: StableLM per-head norms */
    struct cellm_vec *k_norm_heads;  /* [n_kv_heads] */

    int moe;
    struct cellm_weight w_gate; /* [ffn_dim][dim] */
    struct cellm_weight w_up;   /* [ffn_dim][dim] */
    struct cellm_weight w_down; /* [dim][ffn_dim] */
    struct cellm_vec b_gate, b_up, b_down;
    struct cellm_weight router;  /* [n_experts][dim] */
    struct cellm_weight *e_gate; /* [n_experts] of [moe_ffn_dim][dim] */
    struct cellm_weight *e_up;   /* [n_experts] of [moe_ffn_dim][dim] */
    struct cellm_weight *e_down; /* [n_experts] of [dim][moe_ffn_dim] */
};

struct cellm_desc {
    struct cellm_config cfg;
    struct cellm_ckpt ckpt;
    struct cellm_weight embed; /* [vocab][dim] */
    struct cellm_weight head;  /* [vocab][dim]; the embedding itself when tied */
    struct cellm_vec final_norm, final_norm_b;
    struct cellm_layer *layers; /* [n_layers] */
    float *inv_freq_global;     /* [rot_dims/2] */
    float *inv_freq_local;      /* [rot_dims/2] (sliding layers; = global unless Gemma 3) */
    float embed_scale;          /* fl(sqrt(dim)) when cfg.embed_scale, else 1 */
    uint64_t n_params;          /* logical parameters (quantized counted unpacked) */
    uint64_t n_bytes;           /* bytes of the bound tensors */
    char warnings[1024];
};

/* Loads config and checkpoint from dir and binds every weight. */
enum cellm_status cellm_desc_load(const char *dir, struct cellm_desc *d, struct cellm_error *err);
void cellm_desc_free(struct cellm_desc *d);

/* RoPE inverse frequencies as transformers computes them in float32. */
void cellm_rope_inv_freq(const struct cellm_rope *r, int rot_dims, float *out);

#endif
