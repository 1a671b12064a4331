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

struct cellm_hyb_layer;

/*
 * The tensors of one decoder layer, declared once. Binding (bind.c), the CUDA upload and
 * its checks, the XLA plan and `cellm inspect` all iterate this list; nothing else names
 * a layer tensor. Columns:
 *   id     CELLM_LT_<id>, the index of the row
 *   field  the member of struct cellm_layer (and of the executors' mirrors)
 *   kind   VEC: a vector (norm weight or bias), struct cellm_vec
 *          MAT: a matrix in any storage format, struct cellm_weight
 *          HEADS: one vector per head, struct cellm_vec[count] (StableLM per-head norms)
 *          EXPERTS: one matrix per expert, struct cellm_weight[n_experts]
 *          EXPERT_VECS: one vector per expert (gpt-oss biases), struct cellm_vec[n_experts],
 *          stored as one [n_experts][cols] tensor
 *   need   when a layer has it (enum cellm_need; absent tensors stay CELLM_W_NONE / NULL)
 *   name   Hugging Face name under "model.layers.N." (%d: head or expert); the names of
 *          fused and stacked layouts are data in bind.c
 *   rows, cols   the shape in config dimensions (enum cellm_dim): a vector is [rows], a
 *          matrix [rows][cols] ([out][in]), HEADS rows vectors of cols
 *   group, label   how inspect summarises its storage ("attention" q, k, v, o)
 * Shapes in words: dim = hidden_size, qd = n_heads*head_dim, kd = n_kv_heads*head_dim,
 * ffn = intermediate_size, hd = head_dim, ne = n_experts, moe = moe_intermediate_size,
 * moe2 = 2 * moe (gpt-oss's gate_up_proj, gate and up rows interleaved), shared = the shared
 * experts' width (glm4_moe and DeepSeek-V3: moe_intermediate_size * n_shared_experts, one
 * MLP; Llama 4: its one shared expert). Llama 4 calls "mlp." "feed_forward." and its router
 * "feed_forward.router" (renamed in bind.c).
 * MLA (DeepSeek-V3, cfg.mla): qlr = q_lora_rank, kvlr = kv_lora_rank r, kva = r + qk_rope,
 * kvb = n_heads*(qk_nope + v_head_dim), od = n_heads*v_head_dim, dn = qk_nope, dv =
 * v_head_dim; qd is n_heads*(qk_nope + qk_rope) there.
 * mlx-lm's embed_q [n_heads][r][dn] and unembed_out [n_heads][dv][r] are EXPERTS-kind
 * stacks with one matrix per head.
 * ple = hidden_size_per_layer_input (Gemma 4, Gemma 3n), one = 1; Gemma 3n: altup =
 * altup_num_inputs n, altup2 = n * n, laurel = laurel_rank. Gemma 4 sizes qd, kd, hd and ffn per
 * layer (cellm_layer_dim: full layers have their own head size and KV heads, KV-shared layers a
 * double-wide MLP).
 * Vectors are F32, F16 or BF16; matrices any format of weight.h.
 */
/* clang-format off */
#define CELLM_LAYER_TENSORS(X)                                                                      \
    X(ATTN_NORM,      attn_norm,      VEC,     INPUT_NORM, "input_layernorm.weight",          DIM,     NONE, "", "")       \
    X(ATTN_NORM_B,    attn_norm_b,    VEC,     LAYERNORM,  "input_layernorm.bias",            DIM,     NONE, "", "")       \
    X(POST_ATTN_NORM, post_attn_norm, VEC,     SANDWICH,   "post_attention_layernorm.weight", DIM,     NONE, "", "")       \
    X(FFN_NORM,       ffn_norm,       VEC,     FFN_NORM,   "post_attention_layernorm.weight", DIM,     NONE, "", "")       \
    X(FFN_NORM_B,     ffn_norm_b,     VEC,     FFN_NORM_B, "post_attention_layernorm.bias",   DIM,     NONE, "", "")       \
    X(POST_FFN_NORM,  post_ffn_norm,  VEC,     SANDWICH,   "post_feedforward_layernorm.weight", DIM,   NONE, "", "")       \
    X(WQ,             wq,             MAT,     GQA,        "self_attn.q_proj",                QD,      DIM,  "attention", "q") \
    X(WK,             wk,             MAT,     KV_OWN,     "self_attn.k_proj",                KD,      DIM,  "attention", "k") \
    X(WV,             wv,             MAT,     V_OWN,      "self_attn.v_proj",                KD,      DIM,  "attention", "v") \
    X(WO,             wo,             MAT,     GQA,        "self_attn.o_proj",                DIM,     QD,   "attention", "o") \
    X(BQ,             bq,             VEC,     QKV_BIAS,   "self_attn.q_proj.bias",           QD,      NONE, "", "")       \
    X(BK,             bk,             VEC,     QKV_BIAS,   "self_attn.k_proj.bias",           KD,      NONE, "", "")       \
    X(BV,             bv,             VEC,     QKV_BIAS,   "self_attn.v_proj.bias",           KD,      NONE, "", "")       \
    X(BO,             bo,             VEC,     O_BIAS,     "self_attn.o_proj.bias",           DIM,     NONE, "", "")       \
    X(Q_NORM,         q_norm,         VEC,     QK_NORM,    "self_attn.q_norm.weight",         HD,      NONE, "", "")       \
    X(K_NORM,         k_norm,         VEC,     K_NORM,     "self_attn.k_norm.weight",         HD,      NONE, "", "")       \
    X(Q_NORM_HEADS,   q_norm_heads,   HEADS,   QK_NORM_HEADS, "self_attn.q_layernorm.norms.%d.weight", HEADS, HD, "", "") \
    X(K_NORM_HEADS,   k_norm_heads,   HEADS,   QK_NORM_HEADS, "self_attn.k_layernorm.norms.%d.weight", KV_HEADS, HD, "", "") \
    X(W_GATE,         w_gate,         MAT,     DENSE,      "mlp.gate_proj",                   FFN,     DIM,  "mlp", "gate") \
    X(W_UP,           w_up,           MAT,     DENSE,      "mlp.up_proj",                     FFN,     DIM,  "mlp", "up")   \
    X(W_DOWN,         w_down,         MAT,     DENSE,      "mlp.down_proj",                   DIM,     FFN,  "mlp", "down") \
    X(B_GATE,         b_gate,         VEC,     MLP_BIAS,   "mlp.gate_proj.bias",              FFN,     NONE, "", "")       \
    X(B_UP,           b_up,           VEC,     MLP_BIAS,   "mlp.up_proj.bias",                FFN,     NONE, "", "")       \
    X(B_DOWN,         b_down,         VEC,     MLP_BIAS,   "mlp.down_proj.bias",              DIM,     NONE, "", "")       \
    X(E_GATE,         e_gate,         EXPERTS, MOE_SPLIT,  "mlp.experts.%d.gate_proj",        MOE_FFN, DIM,  "experts", "gate") \
    X(E_UP,           e_up,           EXPERTS, MOE_SPLIT,  "mlp.experts.%d.up_proj",          MOE_FFN, DIM,  "experts", "up")   \
    X(E_DOWN,         e_down,         EXPERTS, MOE,        "mlp.experts.%d.down_proj",        DIM,     MOE_FFN, "experts", "down") \
    X(E_GATE_UP,      e_gate_up,      EXPERTS, MOE_INTERLEAVED, "mlp.experts.gate_up_proj",   MOE_FFN2, DIM, "experts", "gate_up") \
    X(ROUTER,         router,         MAT,     MOE,        "mlp.gate",                        EXPERTS, DIM,  "moe", "router") \
    X(ROUTER_B,       router_b,       VEC,     MOE_BIAS,   "mlp.router.bias",                 EXPERTS, NONE, "", "")       \
    X(E_GATE_B,       e_gate_b,       EXPERT_VECS, MOE_SPLIT_BIAS, "mlp.experts.gate_proj.bias", EXPERTS, MOE_FFN, "", "") \
    X(E_UP_B,         e_up_b,         EXPERT_VECS, MOE_SPLIT_BIAS, "mlp.experts.up_proj.bias", EXPERTS, MOE_FFN, "", "") \
    X(E_GATE_UP_B,    e_gate_up_b,    EXPERT_VECS, MOE_INTERLEAVED, "mlp.experts.gate_up_proj_bias", EXPERTS, MOE_FFN2, "", "") \
    X(E_DOWN_B,       e_down_b,       EXPERT_VECS, MOE_BIAS, "mlp.experts.down_proj_bias",    EXPERTS, DIM,  "", "")       \
    X(SINKS,          sinks,          VEC,     SINKS,      "self_attn.sinks",                 HEADS,   NONE, "", "")       \
    X(Q_NORM_FULL,    q_norm_full,    VEC,     QK_NORM_FULL, "self_attn.q_norm.weight",       QD,      NONE, "", "")       \
    X(K_NORM_FULL,    k_norm_full,    VEC,     QK_NORM_FULL, "self_attn.k_norm.weight",       KD,      NONE, "", "")       \
    X(ROUTER_CORR,    router_corr,    VEC,     MOE_CORR,   "mlp.gate.e_score_correction_bias", EXPERTS, NONE, "", "")      \
    X(S_GATE,         s_gate,         MAT,     SHARED,     "mlp.shared_experts.gate_proj",    SHARED_FFN, DIM, "shared", "gate") \
    X(S_UP,           s_up,           MAT,     SHARED,     "mlp.shared_experts.up_proj",      SHARED_FFN, DIM, "shared", "up")   \
    X(S_DOWN,         s_down,         MAT,     SHARED,     "mlp.shared_experts.down_proj",    DIM, SHARED_FFN, "shared", "down") \
    X(MLA_Q_A,        mla_q_a,        MAT,     MLA_QLORA,  "self_attn.q_a_proj",              QLR,     DIM,  "attention", "q_a") \
    X(MLA_Q_B,        mla_q_b,        MAT,     MLA_QLORA,  "self_attn.q_b_proj",              QD,      QLR,  "attention", "q_b") \
    X(MLA_Q,          mla_q,          MAT,     MLA_QPROJ,  "self_attn.q_proj",                QD,      DIM,  "attention", "q") \
    X(MLA_O,          mla_o,          MAT,     MLA,        "self_attn.o_proj",                DIM,     OD,   "attention", "o") \
    X(MLA_KV_A,       mla_kv_a,       MAT,     MLA,        "self_attn.kv_a_proj_with_mqa",    KVA,     DIM,  "latent kv", "kv_a") \
    X(MLA_KV_B,       mla_kv_b,       MAT,     MLA_KVB,    "self_attn.kv_b_proj",             KVB,     KVLR, "latent kv", "kv_b") \
    X(MLA_EMBED_Q,    mla_embed_q,    EXPERTS, MLA_SPLIT,  "self_attn.embed_q",               KVLR,    DN,   "latent kv", "embed_q") \
    X(MLA_UNEMBED,    mla_unembed,    EXPERTS, MLA_SPLIT,  "self_attn.unembed_out",           DV,      KVLR, "latent kv", "unembed_out") \
    X(MLA_Q_A_NORM,   mla_q_a_norm,   VEC,     MLA_QLORA,  "self_attn.q_a_layernorm.weight",  QLR,     NONE, "", "")       \
    X(MLA_KV_A_NORM,  mla_kv_a_norm,  VEC,     MLA,        "self_attn.kv_a_layernorm.weight", KVLR,    NONE, "", "") \
    X(PLE_GATE,       ple_gate,       MAT,     PLE,        "per_layer_input_gate",            PLE,     DIM,  "per-layer", "gate") \
    X(PLE_PROJ,       ple_proj,       MAT,     PLE,        "per_layer_projection",            DIM,     PLE,  "per-layer", "proj") \
    X(PLE_NORM,       ple_norm,       VEC,     PLE,        "post_per_layer_input_norm.weight", DIM,    NONE, "", "")       \
    X(LAYER_SCALAR,   layer_scalar,   VEC,     GEMMA4,     "layer_scalar",                    ONE,     NONE, "", "")       \
    X(ROUTER_SCALE,   router_scale,   VEC,     MOE_PARALLEL, "router.scale",                  DIM,     NONE, "", "")       \
    X(EXPERT_SCALE,   expert_scale,   VEC,     MOE_PARALLEL, "router.per_expert_scale",       EXPERTS, NONE, "", "")       \
    X(PRE_FFN_NORM2,  pre_ffn_norm2,  VEC,     MOE_PARALLEL, "pre_feedforward_layernorm_2.weight", DIM, NONE, "", "")      \
    X(POST_FFN_NORM1, post_ffn_norm1, VEC,     MOE_PARALLEL, "post_feedforward_layernorm_1.weight", DIM, NONE, "", "")     \
    X(POST_FFN_NORM2, post_ffn_norm2, VEC,     MOE_PARALLEL, "post_feedforward_layernorm_2.weight", DIM, NONE, "", "") \
    X(ALTUP_SCALE,    altup_scale,    VEC,     GEMMA3N,    "altup.correct_output_scale",      DIM,     NONE, "", "")       \
    X(ALTUP_CORR,     altup_corr,     MAT,     GEMMA3N,    "altup.correction_coefs",          ALTUP,   ALTUP, "altup", "correct") \
    X(ALTUP_PRED,     altup_pred,     MAT,     GEMMA3N,    "altup.prediction_coefs",          ALTUP2,  ALTUP, "altup", "predict") \
    X(ALTUP_ROUTER,   altup_router,   MAT,     GEMMA3N,    "altup.modality_router",           ALTUP,   DIM,  "altup", "router") \
    X(ALTUP_NORM,     altup_norm,     VEC,     GEMMA3N,    "altup.router_norm.weight",        DIM,     NONE, "", "")       \
    X(LAUREL_L,       laurel_l,       MAT,     GEMMA3N,    "laurel.linear_left",              LAUREL,  DIM,  "laurel", "left") \
    X(LAUREL_R,       laurel_r,       MAT,     GEMMA3N,    "laurel.linear_right",             DIM,     LAUREL, "laurel", "right") \
    X(LAUREL_NORM,    laurel_norm,    VEC,     GEMMA3N,    "laurel.post_laurel_norm.weight",  DIM,     NONE, "", "")
/* clang-format on */

enum cellm_lt {
#define CELLM_LT_ENUM(id, ...) CELLM_LT_##id,
    CELLM_LAYER_TENSORS(CELLM_LT_ENUM)
#undef CELLM_LT_ENUM
        CELLM_LT_N
};

enum cellm_tkind {
    CELLM_TK_VEC,
    CELLM_TK_MAT,
    CELLM_TK_HEADS,
    CELLM_TK_EXPERTS,
    CELLM_TK_EXPERT_VECS
};

/* When a layer has a tensor (cellm_layer_parts). */
enum cellm_need {
    CELLM_NEED_ALWAYS,
    CELLM_NEED_LAYERNORM,       /* norm kind LayerNorm: the input norm's bias */
    CELLM_NEED_SANDWICH,        /* the norms after each sub-block: blocks SANDWICH, POST_NORM */
    CELLM_NEED_FFN_NORM,        /* a norm before the MLP: pre-norm and sandwich blocks */
    CELLM_NEED_FFN_NORM_B,      /* its bias: LayerNorm in a pre-norm block */
    CELLM_NEED_QKV_BIAS,        /* cfg.qkv_bias */
    CELLM_NEED_O_BIAS,          /* cfg.o_bias */
    CELLM_NEED_QK_NORM,         /* cfg.qk_norm, one weight shared by the heads */
    CELLM_NEED_QK_NORM_HEADS,   /* cfg.qk_norm_per_head */
    CELLM_NEED_DENSE,           /* a dense MLP layer */
    CELLM_NEED_MLP_BIAS,        /* a dense MLP layer with cfg.mlp_bias */
    CELLM_NEED_MOE,             /* a mixture-of-experts layer */
    CELLM_NEED_MOE_SPLIT,       /* its gate and up experts stored apart (all but gpt-oss HF) */
    CELLM_NEED_MOE_INTERLEAVED, /* gpt-oss HF: gate_up_proj, row 2i gate i, row 2i+1 up i */
    CELLM_NEED_MOE_BIAS,        /* cfg.expert_bias: router and down biases */
    CELLM_NEED_MOE_SPLIT_BIAS,  /* cfg.expert_bias with gate and up apart (mlx-lm gpt-oss) */
    CELLM_NEED_SINKS,           /* cfg.attn_sinks */
    CELLM_NEED_INPUT_NORM,      /* a norm before attention: every block but POST_NORM */
    CELLM_NEED_QK_NORM_FULL,    /* cfg.qk_norm_full, one weight over the whole projection */
    CELLM_NEED_MOE_CORR,        /* a MoE layer of the sigmoid grouped router: its correction bias */
    CELLM_NEED_SHARED,          /* a MoE layer with shared experts (cfg.shared_ffn_dim) */
    CELLM_NEED_GQA,             /* q, k, v, o attention: every family but MLA */
    CELLM_NEED_MLA,             /* cfg.mla */
    CELLM_NEED_MLA_QLORA,       /* cfg.mla with q_lora_rank */
    CELLM_NEED_MLA_QPROJ,       /* cfg.mla without (one q_proj) */
    CELLM_NEED_MLA_KVB,         /* cfg.mla, kv_b_proj (Hugging Face) */
    CELLM_NEED_MLA_SPLIT,       /* cfg.mla, embed_q / unembed_out per head (desc.mla_split) */
    CELLM_NEED_KV_OWN,          /* a layer that computes its keys (not KV-shared, Gemma 4) */
    CELLM_NEED_V_OWN,           /* ... and its values (not a k=v full layer, Gemma 4) */
    CELLM_NEED_K_NORM,          /* QK_NORM on a layer that computes its keys */
    CELLM_NEED_PLE,             /* cfg.ple_dim: Gemma 4 per-layer embeddings */
    CELLM_NEED_GEMMA4,          /* cfg.gemma4: layer_scalar */
    CELLM_NEED_MOE_PARALLEL,    /* cfg.moe_parallel: Gemma 4's router and extra norms */
    CELLM_NEED_GEMMA3N,         /* cfg.gemma3n: AltUp and LAuReL */
};

/* Sizes of the shapes, from the config (cellm_dim_size). */
enum cellm_dim {
    CELLM_DIM_NONE,
    CELLM_DIM_DIM,
    CELLM_DIM_QD,
    CELLM_DIM_KD,
    CELLM_DIM_HD,
    CELLM_DIM_FFN,
    CELLM_DIM_MOE_FFN,
    CELLM_DIM_MOE_FFN2,
    CELLM_DIM_HEADS,
    CELLM_DIM_KV_HEADS,
    CELLM_DIM_EXPERTS,
    CELLM_DIM_SHARED_FFN,
    CELLM_DIM_QLR,
    CELLM_DIM_KVLR,
    CELLM_DIM_KVA,
    CELLM_DIM_KVB,
    CELLM_DIM_OD,
    CELLM_DIM_DN,
    CELLM_DIM_DV,
    CELLM_DIM_PLE,
    CELLM_DIM_ONE,
    CELLM_DIM_ALTUP,  /* Gemma 3n: altup_num_inputs n */
    CELLM_DIM_ALTUP2, /* n * n */
    CELLM_DIM_LAUREL, /* laurel_rank */
};

struct cellm_tensor_spec {
    const char *field; /* also the executors' name of the tensor (XLA parameters) */
    enum cellm_tkind kind;
    enum cellm_need need;
    const char *name;
    enum cellm_dim rows, cols;
    const char *group, *label;
    size_t offset; /* of the member in struct cellm_layer */
};
extern const struct cellm_tensor_spec cellm_layer_tensors[CELLM_LT_N];

#define CELLM_LT_TYPE_VEC struct cellm_vec
#define CELLM_LT_TYPE_MAT struct cellm_weight
#define CELLM_LT_TYPE_HEADS struct cellm_vec *
#define CELLM_LT_TYPE_EXPERTS struct cellm_weight *
#define CELLM_LT_TYPE_EXPERT_VECS struct cellm_vec *

/* Which keys a layer attends to (cellm_layer.attn). */
enum cellm_attn {
    CELLM_ATTN_FULL,    /* every earlier position (causal) */
    CELLM_ATTN_SLIDING, /* the last cfg.window positions: keys i-W < j <= i */
    /* Llama 4: keys of the query's own chunk, j <= i and floor(j/C) = floor(i/C) with
     * C = cfg.attn_chunk (the cache keeps every position, as for FULL) */
    CELLM_ATTN_CHUNKED,
};

/* How the experts of a MoE checkpoint are stored, probed once at load. */
enum cellm_experts {
    CELLM_EXPERTS_NONE,     /* no MoE layer */
    CELLM_EXPERTS_SPLIT,    /* Hugging Face: mlp.experts.E.{gate,up,down}_proj, one each */
    CELLM_EXPERTS_STACKED,  /* mlx-lm: mlp.switch_mlp.{gate,up,down}_proj, [E, ...] */
    CELLM_EXPERTS_FUSED_V5, /* transformers v5: mlp.experts.gate_up_proj + down_proj */
    /* gpt-oss, Hugging Face: mlp.experts.gate_up_proj (rows of gate and up interleaved)
     * and down_proj, as _blocks/_scales (mxfp4) or as float parameters stored [E, in, out]
     * (transposed into owned memory at load), with _bias tensors */
    CELLM_EXPERTS_INTERLEAVED,
    /* gpt-oss, mlx-lm: mlp.experts.{gate,up,down}_proj.{weight,scales,bias}, [E, ...] */
    CELLM_EXPERTS_STACKED_OSS,
    /* Llama 4, Hugging Face: experts.gate_up_proj [E, in, 2I] (gate the first I columns,
     * up the last I) and experts.down_proj [E, I, out], bare float parameters transposed
     * once at load into owned memory */
    CELLM_EXPERTS_FUSED_IN_OUT,
};
const char *cellm_experts_name(enum cellm_experts e);

struct cellm_layer {
    enum cellm_attn attn;
    int moe;               /* 1: a mixture-of-experts layer (else a dense MLP) */
    const float *inv_freq; /* [rot_dims/2] RoPE inverse frequencies of this layer */
    /* longrope: [rot_dims/2] the long list, used by a forward in which the row's sequence
     * reaches more than rope_long_after tokens (cellm_layer_inv_freq); NULL otherwise */
    const float *inv_freq_long;
    int32_t rope_long_after;
    float rope_attn; /* fl(attention factor): multiplies RoPE's cos and sin (yarn, longrope) */
#define CELLM_LT_FIELD(id, field, kind, ...) CELLM_LT_TYPE_##kind field;
    CELLM_LAYER_TENSORS(CELLM_LT_FIELD)
#undef CELLM_LT_FIELD
    /* 1: no RoPE on q and k (SmolLM3 and Llama 4 NoPE layers, cfg.layer_nope; keys are cached
     * unrotated). inv_freq then
     * points at zeros, so an executor that rotates anyway turns by cos 1, sin 0: x exactly */
    int nope;
    /* sequence-state hybrids (hybrid.h): what mixes tokens (enum cellm_mixer; the
     * attention tensors of the table exist only where it is CELLM_MIXER_ATTN), and the
     * state layer's own tensors and the shared expert (NULL in other models) */
    int mixer;
    struct cellm_hyb_layer *hyb;
    /* attention and MLP geometry of this layer (cellm_layer_geometry): the config's values
     * except in Gemma 4, whose full layers have their own head size and KV heads */
    int head_dim, n_kv_heads, ffn_dim, rot_dims;
    int index;  /* this layer's position in desc.layers */
    int kv_src; /* the layer whose keys and values this one attends to (itself unless KV-shared) */
};

struct cellm_desc {
    struct cellm_config cfg;
    struct cellm_ckpt ckpt;
    enum cellm_experts experts; /* storage layout of the experts */
    struct cellm_weight embed;  /* [vocab][dim] */
    struct cellm_weight head;   /* [vocab][dim]; the embedding itself when tied */
    struct cellm_vec final_norm, final_norm_b;
    struct cellm_layer *layers; /* [n_layers] */
    float *inv_freq_global;     /* [rot_dims/2] */
    float *inv_freq_local;      /* [rot_dims/2] (sliding layers; = global unless Gemma 3) */
    float *inv_freq_long;       /* [rot_dims/2] longrope's long list, else NULL */
    float embed_scale; /* cfg.embed_scale: fl(sqrt(dim)) (Gemma) or fl(cfg.embed_mult); else 1 */
    uint64_t n_params; /* logical parameters (quantized counted unpacked) */
    uint64_t n_bytes;  /* bytes of the bound tensors */
    char warnings[1024];
    void **owned; /* buffers bound weights point into (transposed copies); freed with d */
    int n_owned;
    float *inv_freq_none; /* [rot_dims/2] zeros: the frequencies of NoPE layers; NULL if none */
    /* MLA: 1 when the checkpoint has mlx-lm's per-head embed_q / unembed_out instead of
     * kv_b_proj (probed once at load) */
    int mla_split;
    /* Gemma 4 per-layer embeddings (cfg.ple_dim > 0), else absent */
    struct cellm_weight ple_embed; /* embed_tokens_per_layer [ple_vocab][n_layers * ple_dim] */
    struct cellm_weight ple_model; /* per_layer_model_projection [n_layers * ple_dim][dim] */
    struct cellm_vec ple_norm;     /* per_layer_projection_norm [ple_dim] */
    float ple_scale;               /* fl(sqrt(ple_dim)), the per-layer embedding's scale */
    float *inv_freq_prop;          /* Gemma 4 full layers: [global_head_dim / 2] (proportional) */
    /* Gemma 3n: [altup_n - 1] altup_projections and altup_unembed_projections, [dim][dim]
     * each (owned by d; NULL otherwise) */
    struct cellm_weight *altup_proj, *altup_unembed;
};

/* bind.c's checked binding of one matrix module (no suffix) of [n_stack x] rows x cols in
 * any storage format, or of a float vector of n elements, for the binders of tensors
 * outside the table (hybrid.c, gemma4.c). */
enum cellm_status cellm_bind_matrix(struct cellm_desc *d, const char *mod, int64_t n_stack,
                                    int64_t rows, int64_t cols, struct cellm_weight *out,
                                    struct cellm_error *err);
enum cellm_status cellm_bind_vec(struct cellm_desc *d, const char *name, int64_t n, int required,
                                 struct cellm_vec *v, struct cellm_error *err);

/* Loads config and checkpoint from dir and binds every weight. */
enum cellm_status cellm_desc_load(const char *dir, struct cellm_desc *d, struct cellm_error *err);
void cellm_desc_free(struct cellm_desc *d);

/* Tensor id of layer L, typed by its kind (NULL for an absent HEADS or EXPERTS array). */
static inline const struct cellm_vec *cellm_layer_vec(const struct cellm_layer *L, enum cellm_lt id)
{
    return (const struct cellm_vec *)(const void *)((const char *)L +
                                                    cellm_layer_tensors[id].offset);
}
static inline const struct cellm_weight *cellm_layer_weight(const struct cellm_layer *L,
                                                            enum cellm_lt id)
{
    return (const struct cellm_weight *)(const void *)((const char *)L +
                                                       cellm_layer_tensors[id].offset);
}
static inline const struct cellm_vec *cellm_layer_heads(const struct cellm_layer *L,
                                                        enum cellm_lt id)
{
    return *(struct cellm_vec *const *)(const void *)((const char *)L +
                                                      cellm_layer_tensors[id].offset);
}
static inline const struct cellm_vec *cellm_layer_expert_vecs(const struct cellm_layer *L,
                                                              enum cellm_lt id)
{
    return *(struct cellm_vec *const *)(const void *)((const char *)L +
                                                      cellm_layer_tensors[id].offset);
}
static inline const struct cellm_weight *cellm_layer_experts(const struct cellm_layer *L,
                                                             enum cellm_lt id)
{
    return *(struct cellm_weight *const *)(const void *)((const char *)L +
                                                         cellm_layer_tensors[id].offset);
}

/* A dimension of the config (rows and cols of the tensor table). */
int64_t cellm_dim_size(const struct cellm_config *c, enum cellm_dim dim);
/* The same for layer L (its head size, KV heads and MLP width; cellm_layer_geometry). */
int64_t cellm_layer_dim(const struct cellm_config *c, const struct cellm_layer *L,
                        enum cellm_dim dim);
/* Sets layer i's geometry and KV source from the config (all families). */
void cellm_layer_geometry(const struct cellm_config *c, int i, struct cellm_layer *L);

/* A buffer of n bytes that d owns (freed by cellm_desc_free), or NULL. */
void *cellm_desc_own(struct cellm_desc *d, size_t n);
/* How many parts tensor id has in layer L: 1, the head count (HEADS), n_experts (EXPERTS,
 * EXPERT_VECS), or 0 when the layer has none. */
int cellm_layer_parts(const struct cellm_desc *d, const struct cellm_layer *L, enum cellm_lt id);

/* The gpt-oss pieces a config uses ("attention sinks, ..."), or NULL when it uses none:
 * an executor that lacks them refuses the model by this text at load. */
const char *cellm_config_gpt_oss_pieces(const struct cellm_config *c);
/* The same for glm4_moe's pieces (the sigmoid grouped router, shared experts). */
const char *cellm_config_grouped_moe_pieces(const struct cellm_config *c);
/* The same for the Llama 4 pieces (docs/forward/llama4.md). */
const char *cellm_config_l4_pieces(const struct cellm_config *c);
/* Mistral 3's query scale by position, or NULL */
const char *cellm_config_qscale_pieces(const struct cellm_config *c);
/* The same for DeepSeek-V3's pieces (multi-head latent attention, its latent cache, the
 * grouped sigmoid router and shared experts), or NULL. */
const char *cellm_config_mla_pieces(const struct cellm_config *c);

/* Groups of pieces an executor implements or not (cellm_config_missing's have). */
#define CELLM_PIECES_GPT_OSS 1u     /* cellm_config_gpt_oss_pieces */
#define CELLM_PIECES_GROUPED_MOE 2u /* cellm_config_grouped_moe_pieces */
#define CELLM_PIECES_L4 4u          /* cellm_config_l4_pieces (Llama 4) */
#define CELLM_PIECES_STATE 8u       /* cellm_config_state_pieces (sequence state) */
#define CELLM_PIECES_GEMMA4 16u     /* cellm_config_gemma4_pieces */
#define CELLM_PIECES_MLA 32u        /* cellm_config_mla_pieces */
#define CELLM_PIECES_QSCALE 64u     /* cellm_config_qscale_pieces (Mistral 3) */
#define CELLM_PIECES_GEMMA3N 128u   /* cellm_config_gemma3n_pieces */
/* The pieces the config uses that an executor implementing the groups in `have` lacks, in
 * words, or NULL. An executor refuses the model at load by this text. */
const char *cellm_config_missing(const struct cellm_config *c, unsigned have);

/* RoPE inverse frequencies as transformers computes them in float32 (longrope: the short
 * list). */
void cellm_rope_inv_freq(const struct cellm_rope *r, int rot_dims, float *out);
/* longrope's long list. */
void cellm_rope_inv_freq_long(const struct cellm_rope *r, int rot_dims, float *out);
/* YaRN's ramp bounds [low, high] over the rot_dims/2 frequencies, as transformers computes
 * them in double (exposed for inspect and tests). */
void cellm_rope_yarn_range(const struct cellm_rope *r, int rot_dims, double *low, double *high);

/*
 * The inverse frequencies layer L rotates a row with, given seq_len, the length the row's
 * sequence reaches in this forward (struct cellm_exec_row.seq_len). Only longrope depends
 * on it: transformers picks the long factors when max(position_ids) + 1 exceeds
 * original_max_position_embeddings, once per forward for all its rows; keys already cached
 * keep the rotation they were stored with.
 */
static inline const float *cellm_layer_inv_freq(const struct cellm_layer *L, int32_t seq_len)
{
    return L->inv_freq_long && seq_len > L->rope_long_after ? L->inv_freq_long : L->inv_freq;
}

#endif
