/*
 * hparams.h: config.json (+ generation_config.json) as one model configuration: the
 * hyper-parameters and structural flags of the decoder, plus the checkpoint's
 * quantization block (read by checkpoint/qconfig.c, kept here so one parse gives both).
 *
 * Every supported model type is normalised here into the same flat description, with
 * transformers' class defaults for missing keys and both the v4 (rope_theta,
 * rope_scaling) and v5 (rope_parameters, nested per layer type for Gemma 3) RoPE keys.
 * RoPE types cellm does not implement (dynamic, ntk, ...) are refused by name rather
 * than approximated. Per-family knowledge lives in family.c as data.
 */
#ifndef CELLM_MODEL_HPARAMS_H
#define CELLM_MODEL_HPARAMS_H

#include <stdint.h>

#include "cellm.h"
#include "checkpoint/quant.h"

enum cellm_norm_kind {
    CELLM_NORM_RMS,          /* x * rsqrt(mean(x^2) + eps) * w */
    CELLM_NORM_RMS_PLUS_ONE, /* ... * (1 + w): Gemma, weights stored as offsets */
    CELLM_NORM_LAYER,        /* (x - mean) * rsqrt(var + eps) * w + b */
    CELLM_NORM_RMS_DIV,      /* x / sqrt(mean(x^2) + eps) * w: Gemma 3n divides by the root */
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
    CELLM_ROPE_YARN,
    CELLM_ROPE_LONGROPE, /* Phi-3.5 / Phi-4: short and long per-frequency factors */
    /* Gemma 4's full layers: the first partial * head_dim / 2 angles rotate with exponents
     * over the whole head, the rest have frequency 0 (model/gemma4.c) */
    CELLM_ROPE_PROPORTIONAL,
};
const char *cellm_rope_kind_name(enum cellm_rope_kind k);

/* Longest longrope factor list (rot_dims / 2); Phi-4-mini has 48. */
#define CELLM_ROPE_MAX_FACTORS 512

struct cellm_rope {
    enum cellm_rope_kind kind;
    double theta;
    double factor;          /* linear, llama3, yarn, longrope */
    double low_freq_factor; /* llama3 */
    double high_freq_factor;
    double original_max_pos;       /* llama3, yarn; longrope: the short/long switch length */
    double beta_fast, beta_slow;   /* yarn (0 or absent in config.json: 32, 1) */
    int truncate;                  /* yarn: floor/ceil the correction range (default true) */
    double mscale, mscale_all_dim; /* yarn (DeepSeek); 0 = absent */
    /* multiplies cos and sin (so every score by its square): yarn and longrope, from
     * config.json's attention_factor or derived as transformers does; 1 otherwise */
    double attn_factor;
    int n_factors; /* longrope: length of both lists, rot_dims / 2 (checked once known) */
    float short_factor[CELLM_ROPE_MAX_FACTORS]; /* f32, as torch.tensor(list) rounds them */
    float long_factor[CELLM_ROPE_MAX_FACTORS];
    double partial; /* proportional: partial_rotary_factor of the layer's head */
};

/*
 * The block topology, named once when the config is read (cfg.block); each
 * executor's layer loop switches on it:
 *   PRE_NORM   x += attn(norm(x));        x += mlp(norm(x))          (Llama, Qwen, Phi-3)
 *   SANDWICH   x += norm(attn(norm(x)));  x += norm(mlp(norm(x)))    (Gemma 2, Gemma 3)
 *   PARALLEL   h = norm(x);               x += attn(h) + mlp(h)      (StableLM parallel)
 *   POST_NORM  x += norm(attn(x));        x += norm(mlp(x))          (OLMo 2, OLMo 3)
 */
enum cellm_block {
    CELLM_BLOCK_PRE_NORM,
    CELLM_BLOCK_SANDWICH,
    CELLM_BLOCK_PARALLEL,
    CELLM_BLOCK_POST_NORM
};
const char *cellm_block_name(enum cellm_block b);

/* How a MoE layer weighs its experts (cfg.router):
 *   SOFTMAX_TOPK   softmax over all experts, then the top k (Qwen3-MoE; renormalised
 *                  when norm_topk_prob)
 *   TOPK_SOFTMAX   top k of the logits, then a softmax over those k (gpt-oss)
 *   SIGMOID_GROUP  sigmoid of the logits; experts chosen by sigmoid + e_score_correction_bias
 *                  within the topk_group best of n_group groups, weighted by the plain
 *                  sigmoid, renormalised when norm_topk_prob, times routed_scaling_factor
 *                  (GLM-4.5, DeepSeek-V3's noaux_tc)
 *   SIGMOID_INPUT  top k of the logits, each scored sigmoid(logit); an expert's input is
 *                  scaled by its score and the outputs are summed unweighted (Llama 4) */
enum cellm_router {
    CELLM_ROUTER_SOFTMAX_TOPK,
    CELLM_ROUTER_TOPK_SOFTMAX,
    CELLM_ROUTER_SIGMOID_GROUP,
    CELLM_ROUTER_SIGMOID_INPUT,
};

/* Most expert groups (n_group) a router takes. */
#define CELLM_MAX_EXPERT_GROUPS 64

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
    enum cellm_block block; /* the topology of a layer (above) */
    int embed_scale;        /* embeddings x desc.embed_scale: Gemma fl(sqrt(dim)), Granite */
    double embed_mult;      /* Granite embedding_multiplier (with embed_scale); 0 = none */
    double residual_mult;   /* Granite: x + f(x) * residual_multiplier; 1 = plain residual */
    double logits_div;      /* Granite logits_scaling: logits / logits_div; 1 = none */
    int tie_embeddings;
    int fused_qkv;     /* Phi-3 qkv_proj */
    int fused_gate_up; /* Phi-3 gate_up_proj */

    /* mixture of experts (Qwen3-MoE) */
    int n_experts;
    int n_experts_used;
    int moe_ffn_dim;
    int norm_topk_prob;
    uint8_t *layer_moe; /* [n_layers] 1 = MoE block; owned */
    enum cellm_router router;
    int expert_bias; /* the router and every expert projection have biases (gpt-oss) */
    /* gpt-oss's expert activation instead of act: gate = min(gate, limit),
     * up = clamp(up, -limit, limit), out = (up + 1) * gate * sigmoid(alpha * gate) */
    int swiglu_clamp;
    double swiglu_limit, swiglu_alpha;

    /* gpt-oss: a learned logit per head joins each softmax row (self_attn.sinks) */
    int attn_sinks;

    /* tokens */
    int bos; /* -1 = none */
    int n_eos;
    int32_t eos[CELLM_MAX_EOS];

    struct cellm_quant quant; /* "quantization" / "quantization_config" (checkpoint/quant.h) */

    /* OLMo 2/3: q_norm and k_norm are one RMSNorm over the whole projection (nH*hd resp.
     * nKV*hd wide, before the reshape to heads), not one per head over hd */
    int qk_norm_full;
    /* [n_layers] 1 = the layer applies no RoPE (SmolLM3 no_rope_layers); owned, NULL when
     * every layer rotates */
    uint8_t *layer_nope;
    /* CELLM_ROUTER_SIGMOID_GROUP (glm4_moe): experts in n_group contiguous groups, tokens
     * choose among the topk_group best; routed_scale multiplies the routed weights */
    int n_group, topk_group;
    double routed_scale;
    int shared_ffn_dim; /* shared experts beside the routed ones: moe_intermediate_size *
                           n_shared_experts, one SiLU MLP (mlp.shared_experts); 0 = none */
    /* Mistral 3 and Llama 4 (docs/forward/ministral3.md, llama4.md; model/hparams_l4.c) */
    /* Mistral 3: after RoPE, q at absolute position p is multiplied by
     * 1 + qscale_beta * ln(1 + floor(p / qscale_len)); qscale_beta 0 = none */
    double qscale_beta, qscale_len;
    int rope_interleaved;   /* RoPE rotates the pairs (2j, 2j+1) (Llama 4), not the halves */
    int qk_l2norm;          /* weightless RMS norm of q and k heads after RoPE, RoPE layers only */
    uint8_t *layer_chunked; /* [n_layers] 1 = chunked attention (attn_chunk); owned; NULL = none */
    int attn_chunk;         /* chunk size C of chunked layers */
    /* Llama 4 NoPE layers: q *= ln(1 + floor((p + 1) / temp_floor)) * temp_scale + 1 */
    int attn_temp;
    double temp_floor, temp_scale;
    int shared_expert; /* MoE layers add a SiLU gated MLP moe_ffn_dim wide (Llama 4) */
    int feed_forward;  /* tensors "feed_forward.*" where the table says "mlp.*" (Llama 4) */
    /* sequence-state hybrids (model/hybrid.h, cellm_hybrid_parse) */
    int hybrid;           /* enum cellm_hybrid; 0 = none */
    uint8_t *layer_mixer; /* [n_layers] enum cellm_mixer; owned; NULL = all attention */
    int conv_kernel;      /* LFM2 conv_L_cache, Gated DeltaNet linear_conv_kernel_dim */
    int lin_nk, lin_nv;   /* linear_num_key_heads, linear_num_value_heads */
    int lin_dk, lin_dv;   /* linear_key_head_dim, linear_value_head_dim */
    /* shared_ffn_dim (above) is shared_expert_intermediate_size here; the hybrids bind their
     * shared expert (mlp.shared_expert, gated) themselves, not through the tensor table */
    int attn_out_gate; /* q_proj gives per head d queries then d output gates */
    /* DeepSeek-V3 multi-head latent attention (docs/forward/deepseek-v3.md); mla = 0 for
     * every other family. head_dim is then qk_nope + qk_rope and rot_dims qk_rope. */
    int mla;
    int q_lora_rank;  /* 0: one q_proj (DeepSeek-V2-Lite) */
    int kv_lora_rank; /* r: the cached latent */
    int qk_nope_dim, qk_rope_dim, v_head_dim;
    int rope_interleave; /* the rope part's pairs are (2i, 2i+1) (transformers' default) */
    /* its router is CELLM_ROUTER_SIGMOID_GROUP (n_group, topk_group, routed_scale above) */
    int n_shared_experts; /* shared MLP width moe_ffn_dim * n_shared_experts; 0 = none */
    /* Gemma 4 (model/gemma4.h, docs/forward/gemma4.md); all 0 for other families */
    int gemma4;
    int global_head_dim;   /* full layers' head size (head_dim when absent) */
    int n_global_kv_heads; /* full layers' KV heads (num_global_key_value_heads with k_eq_v) */
    int k_eq_v;            /* attention_k_eq_v: full layers' values are the raw keys */
    int ple_dim;           /* hidden_size_per_layer_input: per-layer embeddings; 0 = none */
    int ple_vocab;         /* vocab_size_per_layer_input */
    int n_kv_shared;       /* num_kv_shared_layers: the last layers reuse earlier KV */
    int double_wide;       /* use_double_wide_mlp: 2 * ffn_dim on KV-shared layers */
    int moe_parallel;      /* enable_moe_block: experts beside the dense MLP in every layer */
    /* Gemma 3n (model/gemma3n.h, docs/forward/gemma3n.md; ple_dim, ple_vocab and n_kv_shared
     * above); all 0 for other families */
    int gemma3n;
    int altup_n;             /* altup_num_inputs: residual streams */
    int altup_active;        /* altup_active_idx: the stream the layer computes on */
    double altup_clip;       /* altup_coef_clip: |correction_coefs| bound; 0 = none */
    int altup_correct_scale; /* altup_correct_scale: correct_output_scale before the PLE gate */
    int laurel_rank;         /* laurel_rank: LAuReL's low-rank width */
    /* [n_layers] activation_sparsity_pattern as f32 (0 = no cut); owned; NULL = none */
    float *layer_sparsity;
};

struct cJSON;
/* The family parsers' integer key: an int in [1, max] at key, def when absent, else an error
 * naming the key, what was found and what was expected (hparams.c). */
enum cellm_status cellm_config_int(const struct cJSON *o, const char *key, const char *what,
                                   int def, int max, int *out, struct cellm_error *err);
/* DeepSeek-V3's keys (hparams_mla.c), after the generic ones: sets the MLA fields, head_dim,
 * rot_dims, attn_scale, the experts and which layers are MoE. */
enum cellm_status cellm_config_parse_mla(const struct cJSON *t, const char *what,
                                         struct cellm_config *c, struct cellm_error *err);

/* Parses dir/config.json and, if present, dir/generation_config.json. */
enum cellm_status cellm_config_load(const char *dir, struct cellm_config *out,
                                    struct cellm_error *err);
/* Parses an in-memory config.json (generation config optional, may be NULL). */
enum cellm_status cellm_config_parse(const char *json, size_t len, const char *gen_json,
                                     size_t gen_len, const char *what, struct cellm_config *out,
                                     struct cellm_error *err);
void cellm_config_free(struct cellm_config *c);

#endif
