/*
 * config.h: config.json (+ generation_config.json) as one model configuration.
 *
 * Every supported model type is normalised here into the same flat description, with
 * transformers' class defaults for missing keys and both the v4 (rope_theta,
 * rope_scaling) and v5 (rope_parameters, nested per layer type for Gemma 3) RoPE keys.
 * Features cellm does not implement (yarn, longrope, dynamic RoPE, ...) are refused by
 * name rather than approximated. Per-family knowledge lives in families.c as data.
 */
#ifndef CELLM_CHECKPOINT_CONFIG_H
#define CELLM_CHECKPOINT_CONFIG_H

#include <stdint.h>

#include "cellm.h"

enum cellm_norm_kind {
    CELLM_NORM_RMS,          /* x * rsqrt(mean(x^2) + eps) * w */
    CELLM_NORM_RMS_PLUS_ONE, /* ... * (1 + w): Gemma, weights stored as offsets */
    CELLM_NORM_LAYER,        /* (x - mean) * rsqrt(var + eps) * w + b */
};

enum cellm_act {
    CELLM_ACT_SILU,
    CELLM_ACT_GELU_TANH, /* gelu_pytorch_tanh */
    CELLM_ACT_GELU,      /* exact erf gelu */
};

enum cellm_rope_kind {
    CELLM_ROPE_DEFAULT,
    CELLM_ROPE_LINEAR,
    CELLM_ROPE_LLAMA3,
};

struct cellm_rope {
    enum cellm_rope_kind kind;
    double theta;
    double factor;          /* linear, llama3 */
    double low_freq_factor; /* llama3 */
    double high_freq_factor;
    double original_max_pos;
};

/* MLX quantization modes (mlx >= 0.29): "mode" globally and per module. */
enum cellm_qmode {
    CELLM_QMODE_AFFINE, /* codes * scale + bias, 2-8 bits, group 32/64/128 */
    CELLM_QMODE_MXFP4,  /* E2M1, group 32, E8M0 scales */
    CELLM_QMODE_MXFP8,  /* E4M3, group 32, E8M0 scales */
    CELLM_QMODE_NVFP4,  /* E2M1, group 16, E4M3 scales */
};
const char *cellm_qmode_name(int mode);

/* Quantization of one module (a Linear or Embedding path without ".weight"). */
struct cellm_quant_override {
    char *module; /* canonical module path, e.g. "model.layers.3.mlp.down_proj" */
    int bits;     /* 0 = not quantized ("false" in config.json) */
    int group_size;
    int mode; /* enum cellm_qmode; an entry without "mode" is affine, as mlx's to_quantized */
};

/* Hugging Face "quantization_config" methods cellm reads (docs/formats.md). */
enum cellm_hfq {
    CELLM_HFQ_NONE,
    CELLM_HFQ_FP8,   /* quant_method "fp8": F8_E4M3 weights + weight_scale_inv blocks */
    CELLM_HFQ_GPTQ,  /* quant_method "gptq": qweight/qzeros/scales(/g_idx) */
    CELLM_HFQ_AWQ,   /* quant_method "awq", version "gemm" */
    CELLM_HFQ_MXFP4, /* quant_method "mxfp4" (gpt-oss): P_blocks + P_scales */
};

struct cellm_hf_quant {
    int method;   /* enum cellm_hfq */
    int bits;     /* GPTQ 4 or 8, AWQ 4 */
    int group;    /* GPTQ/AWQ group_size; 0 = one group over all inputs (-1) */
    int block[2]; /* FP8 weight_block_size [rows, cols] */
    int desc_act; /* GPTQ: g_idx is a permutation of the groups */
    int sym;      /* GPTQ: informational (the stored zeros are read either way) */
    int zero_one; /* GPTQ checkpoint_format "gptq" (v1): stored zeros are zero - 1 */
};

#define CELLM_MAX_EOS 8

struct cellm_config {
    char model_type[32]; /* as in config.json (text config's, for gemma3) */
    int vocab;
    int dim; /* hidden_size */
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int head_dim;
    int ffn_dim; /* intermediate_size (dense MLP) */
    int max_pos; /* max_position_embeddings */
    double norm_eps;
    enum cellm_norm_kind norm;
    enum cellm_act act;

    /* attention */
    int rot_dims;                 /* rotary dims per head (partial rotary) */
    struct cellm_rope rope;       /* global (full-attention) layers */
    struct cellm_rope rope_local; /* sliding layers (Gemma 3: own base, no scaling) */
    int qkv_bias;                 /* q, k, v projections have biases */
    int o_bias;                   /* o_proj has a bias (llama attention_bias) */
    int mlp_bias;
    int qk_norm;            /* per-head norm on q and k before RoPE (kind = norm) */
    int qk_norm_per_head;   /* StableLM: a separate (bias-free LayerNorm) per head */
    double attn_scale;      /* multiplier of q.k: head_dim^-1/2 or query_pre_attn_scalar^-1/2 */
    double attn_softcap;    /* 0 = none */
    double final_softcap;   /* 0 = none */
    int window;             /* sliding window W (keys i-W < j <= i); 0 = none */
    uint8_t *layer_sliding; /* [n_layers] 1 = sliding window layer; owned */

    /* block structure */
    int sandwich_norms;    /* Gemma: post-attention and pre/post-feedforward norms */
    int parallel_residual; /* StableLM use_parallel_residual */
    int embed_scale;       /* Gemma: embeddings x fl(sqrt(dim)) */
    int tie_embeddings;
    int fused_qkv;     /* Phi-3 qkv_proj */
    int fused_gate_up; /* Phi-3 gate_up_proj */

    /* mixture of experts (Qwen3-MoE) */
    int n_experts;
    int n_experts_used;
    int moe_ffn_dim;
    int norm_topk_prob;
    uint8_t *layer_moe; /* [n_layers] 1 = MoE block; owned */

    /* tokens */
    int bos; /* -1 = none */
    int n_eos;
    int32_t eos[CELLM_MAX_EOS];

    /* MLX affine quantization: global parameters and per-module overrides */
    int q_bits; /* 0 = no "quantization" block */
    int q_group;
    int q_mode; /* enum cellm_qmode of the global entry */
    int n_q_overrides;
    struct cellm_quant_override *q_overrides;

    struct cellm_hf_quant hfq; /* quantization_config of a non-MLX checkpoint */
};

/* Parses dir/config.json and, if present, dir/generation_config.json. */
enum cellm_status cellm_config_load(const char *dir, struct cellm_config *out,
                                    struct cellm_error *err);
/* Parses an in-memory config.json (generation config optional, may be NULL). */
enum cellm_status cellm_config_parse(const char *json, size_t len, const char *gen_json,
                                     size_t gen_len, const char *what, struct cellm_config *out,
                                     struct cellm_error *err);
void cellm_config_free(struct cellm_config *c);

/* Quantization of a module: returns 1 and fills bits/group if the config says how it is
 * quantized (override or global), 0 if the config says it is not ("false"), -1 if the
 * config has no opinion (no quantization block). */
int cellm_config_quant(const struct cellm_config *c, const char *module, int *bits, int *group);
/* The same, with the module's MLX mode (enum cellm_qmode). */
int cellm_config_quant_mode(const struct cellm_config *c, const char *module, int *bits, int *group,
                            int *mode);

/* Parses a Hugging Face "quantization_config" (qconfig.c). Refuses unknown methods and
 * keys that change the arithmetic, by name. */
enum cellm_status cellm_config_parse_hfq(const void *cjson_obj, const char *what,
                                         struct cellm_hf_quant *out, struct cellm_error *err);
/* Which modules are quantized is read from the tensors present (qweight,
 * weight_scale_inv, P_blocks), so modules_to_not_convert needs no bookkeeping. */
const char *cellm_hfq_name(int method);

#endif
