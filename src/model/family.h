/*
 * family.h: per-family knowledge of config.json, as data.
 *
 * A family row holds transformers' class defaults and the structural flags of the model
 * type. The parser in hparams.c reads keys generically and falls back to these defaults.
 * Adding a family is adding a row (and, if it has a new quirk, a flag).
 */
#ifndef CELLM_MODEL_FAMILY_H
#define CELLM_MODEL_FAMILY_H

#include "hparams.h"

enum cellm_sliding_rule {
    CELLM_SLIDE_NONE,    /* never (llama) */
    CELLM_SLIDE_ALL,     /* every layer when sliding_window is set (mistral, phi3) */
    CELLM_SLIDE_QWEN,    /* only with use_sliding_window: layers >= max_window_layers */
    CELLM_SLIDE_EVEN,    /* even layers (gemma2) */
    CELLM_SLIDE_PATTERN, /* all but every sliding_window_pattern-th (gemma3) */
    CELLM_SLIDE_NOPE,    /* only with use_sliding_window: the NoPE layers (smollm3) */
};

enum cellm_bias_rule {
    CELLM_BIAS_ATTENTION_BIAS, /* attention_bias: q, k, v and o (llama, qwen3) */
    CELLM_BIAS_QKV_ALWAYS,     /* q, k, v always (qwen2) */
    CELLM_BIAS_USE_QKV_BIAS,   /* use_qkv_bias: q, k, v (stablelm) */
    CELLM_BIAS_NONE,           /* never (mistral, phi3, gemma) */
    CELLM_BIAS_ATTENTION_QKV,  /* attention_bias: q, k, v, never o (glm4_moe) */
};

struct cellm_family {
    const char *model_type;
    const char *title;   /* what the family covers, for people (README, inspect --families) */
    const char *wrapper; /* a multimodal model_type whose "text_config" is this family, or NULL */
    int vocab, dim, ffn_dim, n_layers, n_heads, n_kv_heads; /* n_kv_heads 0 = n_heads */
    int head_dim;             /* default head_dim; 0 = dim / n_heads */
    int head_dim_from_config; /* an explicit head_dim in config.json wins */
    int max_pos;
    double norm_eps;
    const char *eps_key; /* rms_norm_eps or layer_norm_eps */
    const char *act_key; /* hidden_act or hidden_activation */
    const char *act_default;
    double rope_theta;
    double partial_rotary;
    int window_default; /* sliding_window when the key is absent; 0 = none */
    enum cellm_sliding_rule sliding;
    enum cellm_bias_rule bias;
    enum cellm_norm_kind norm;
    int qk_norm; /* 1 always, 2 = StableLM's qk_layernorm key, 3 = always, full width (OLMo 2),
                    4 = per head by the use_qk_norm key (GLM-4.5) */
    enum cellm_block block; /* pre-norm or sandwich; parallel is StableLM's config key */
    int embed_scale, fused, gemma_scale;
    int multipliers;                    /* Granite: embedding_multiplier, attention_multiplier,
                                           residual_multiplier and logits_scaling */
    double attn_softcap, final_softcap; /* defaults */
    int tie;
    int bos, eos;           /* class defaults, -1 = None */
    int moe;                /* qwen3_moe keys */
    int gpt_oss;            /* gpt-oss: experts are intermediate_size wide, top-k-then-softmax
                               router, biases on router and experts, clamped SwiGLU, sinks */
    int local_rope;         /* gemma3: rope_local_base_freq for sliding layers */
    const char *rope_types; /* accepted rope types beside default, comma separated */
    int nope;               /* SmolLM3: no_rope_layers / no_rope_layer_interval mark NoPE layers */
    int pattern;            /* CELLM_SLIDE_PATTERN's period when sliding_window_pattern is absent
                               (0 = 6, Gemma 3; OLMo 3: 4) */
    int rope_full_only;     /* OLMo 3: RoPE scaling on full-attention layers only; sliding layers
                               keep default RoPE at rope_theta */
    /* DeepSeek-V3 style MoE keys (glm4_moe): n_routed_experts, the sigmoid grouped router
     * (n_group, topk_group, routed_scaling_factor, e_score_correction_bias), shared experts
     * (n_shared_experts), dense layers before first_k_dense_replace */
    int moe_grouped;
    int llama4;             /* Llama 4 text keys (model/hparams_l4.c) */
    int ministral3;         /* Mistral 3's default yarn and query scale (model/hparams_l4.c) */
    int hybrid;             /* enum cellm_hybrid (model/hybrid.h): state layers; 0 = none */
    int mla;                /* DeepSeek-V3: multi-head latent attention and grouped sigmoid routing
                               (hparams_mla.c reads its keys) */
    int gemma4;             /* Gemma 4 keys (model/gemma4.c) */
    int gemma3n;            /* Gemma 3n keys (model/gemma3n.c) */
};

/* The family of a model type, or NULL; *wrapped is set when model_type is a family's
 * wrapper (the text config is then config.json's "text_config"). */
const struct cellm_family *cellm_family_find(const char *model_type, int *wrapped);
/* Names of all supported model types (wrappers included), comma separated, for messages. */
const char *cellm_family_list(void);

#endif
