/*
 * tensors.c: the per-layer tensor table (model.h's CELLM_LAYER_TENSORS) as data, and the
 * rules that say which tensors a layer has and how large they are.
 *
 * Everything that walks a layer's tensors (binding, device uploads, the XLA plan,
 * inspect) goes through cellm_layer_tensors and cellm_layer_parts, so a new tensor is one
 * row of the list and, if it has a new presence rule, one case below.
 */
#include <stddef.h>

#include "model.h"

#include "gemma3n.h"
#include "gemma4.h"
#include "hybrid.h"

const struct cellm_tensor_spec cellm_layer_tensors[CELLM_LT_N] = {
#define SPEC(id, field, kind, need, name, rows, cols, group, label)                                \
    {#field,                                                                                       \
     CELLM_TK_##kind,                                                                              \
     CELLM_NEED_##need,                                                                            \
     name,                                                                                         \
     CELLM_DIM_##rows,                                                                             \
     CELLM_DIM_##cols,                                                                             \
     group,                                                                                        \
     label,                                                                                        \
     offsetof(struct cellm_layer, field)},
    CELLM_LAYER_TENSORS(SPEC)
#undef SPEC
};

const char *cellm_block_name(enum cellm_block b)
{
    switch (b) {
    case CELLM_BLOCK_PRE_NORM:
        return "pre-norm";
    case CELLM_BLOCK_SANDWICH:
        return "sandwich norms";
    case CELLM_BLOCK_PARALLEL:
        return "parallel residual";
    case CELLM_BLOCK_POST_NORM:
        return "post-norm (norms after attention and MLP)";
    }
    return "?";
}

const char *cellm_experts_name(enum cellm_experts e)
{
    switch (e) {
    case CELLM_EXPERTS_NONE:
        return "none";
    case CELLM_EXPERTS_SPLIT:
        return "per-expert tensors";
    case CELLM_EXPERTS_STACKED:
        return "stacked (mlx-lm switch_mlp)";
    case CELLM_EXPERTS_FUSED_V5:
        return "stacked gate_up (transformers v5)";
    case CELLM_EXPERTS_INTERLEAVED:
        return "stacked gate_up, gate/up rows interleaved (gpt-oss)";
    case CELLM_EXPERTS_STACKED_OSS:
        return "stacked gate, up, down (mlx-lm gpt-oss, Llama 4)";
    case CELLM_EXPERTS_FUSED_IN_OUT:
        return "stacked gate_up and down stored [E, in, out] (Llama 4)";
    }
    return "?";
}

int64_t cellm_dim_size(const struct cellm_config *c, enum cellm_dim dim)
{
    switch (dim) {
    case CELLM_DIM_NONE:
        return 0;
    case CELLM_DIM_DIM:
        return c->dim;
    case CELLM_DIM_QD:
        return (int64_t)c->n_heads * c->head_dim;
    case CELLM_DIM_KD:
        return (int64_t)c->n_kv_heads * c->head_dim;
    case CELLM_DIM_HD:
        return c->head_dim;
    case CELLM_DIM_FFN:
        return c->ffn_dim;
    case CELLM_DIM_MOE_FFN:
        return c->moe_ffn_dim;
    case CELLM_DIM_MOE_FFN2:
        return 2 * (int64_t)c->moe_ffn_dim;
    case CELLM_DIM_HEADS:
        return c->n_heads;
    case CELLM_DIM_KV_HEADS:
        return c->n_kv_heads;
    case CELLM_DIM_EXPERTS:
        return c->n_experts;
    case CELLM_DIM_SHARED_FFN:
        return c->shared_ffn_dim;
    case CELLM_DIM_QLR:
        return c->q_lora_rank;
    case CELLM_DIM_KVLR:
        return c->kv_lora_rank;
    case CELLM_DIM_KVA:
        return (int64_t)c->kv_lora_rank + c->qk_rope_dim;
    case CELLM_DIM_KVB:
        return (int64_t)c->n_heads * (c->qk_nope_dim + c->v_head_dim);
    case CELLM_DIM_OD:
        return (int64_t)c->n_heads * c->v_head_dim;
    case CELLM_DIM_DN:
        return c->qk_nope_dim;
    case CELLM_DIM_DV:
        return c->v_head_dim;
    case CELLM_DIM_PLE:
        return c->ple_dim;
    case CELLM_DIM_ONE:
        return 1;
    case CELLM_DIM_ALTUP:
        return c->altup_n;
    case CELLM_DIM_ALTUP2:
        return (int64_t)c->altup_n * c->altup_n;
    case CELLM_DIM_LAUREL:
        return c->laurel_rank;
    }
    return 0;
}

int64_t cellm_layer_dim(const struct cellm_config *c, const struct cellm_layer *L,
                        enum cellm_dim dim)
{
    switch (dim) {
    case CELLM_DIM_QD:
        return (int64_t)c->n_heads * L->head_dim;
    case CELLM_DIM_KD:
        return (int64_t)L->n_kv_heads * L->head_dim;
    case CELLM_DIM_HD:
        return L->head_dim;
    case CELLM_DIM_KV_HEADS:
        return L->n_kv_heads;
    case CELLM_DIM_FFN:
        return L->ffn_dim;
    default:
        return cellm_dim_size(c, dim);
    }
}

void cellm_layer_geometry(const struct cellm_config *c, int i, struct cellm_layer *L)
{
    int full = !c->layer_sliding[i];
    L->head_dim = c->head_dim;
    L->n_kv_heads = c->n_kv_heads;
    L->ffn_dim = c->ffn_dim;
    L->rot_dims = c->rot_dims;
    L->index = L->kv_src = i;
    if (!c->gemma4 && !c->gemma3n) return;
    /* Gemma 4 (docs/forward/gemma4.md): full layers use global_head_dim and, with k=v,
     * num_global_key_value_heads; proportional RoPE spans the whole head */
    if (full && c->gemma4) {
        L->head_dim = c->global_head_dim;
        L->rot_dims = c->global_head_dim;
        if (c->k_eq_v) L->n_kv_heads = c->n_global_kv_heads;
    }
    /* a KV-shared layer reads the last earlier layer of its kind before the shared ones */
    int first_shared = c->n_layers - c->n_kv_shared;
    if (c->n_kv_shared > 0 && i >= first_shared) {
        for (int j = first_shared - 1; j >= 0; j--)
            if (c->layer_sliding[j] == c->layer_sliding[i]) {
                L->kv_src = j;
                break;
            }
        if (c->double_wide) L->ffn_dim = 2 * c->ffn_dim;
    }
}

/* Whether layer L of a model with this config and block has the tensor. */
static int needs(const struct cellm_desc *d, const struct cellm_layer *L, enum cellm_need need)
{
    const struct cellm_config *c = &d->cfg;
    int ln = c->norm == CELLM_NORM_LAYER;
    switch (need) {
    case CELLM_NEED_ALWAYS:
        return 1;
    case CELLM_NEED_LAYERNORM:
        return ln;
    case CELLM_NEED_SANDWICH:
        return c->block == CELLM_BLOCK_SANDWICH || c->block == CELLM_BLOCK_POST_NORM;
    case CELLM_NEED_FFN_NORM:
        return c->block == CELLM_BLOCK_PRE_NORM || c->block == CELLM_BLOCK_SANDWICH;
    case CELLM_NEED_FFN_NORM_B:
        return ln && c->block == CELLM_BLOCK_PRE_NORM;
    case CELLM_NEED_QKV_BIAS:
        return c->qkv_bias;
    case CELLM_NEED_O_BIAS:
        return c->o_bias;
    case CELLM_NEED_QK_NORM:
        return c->qk_norm && !c->qk_norm_per_head;
    case CELLM_NEED_QK_NORM_HEADS:
        return c->qk_norm_per_head;
    case CELLM_NEED_DENSE:
        return !L->moe || c->moe_parallel;
    case CELLM_NEED_MLP_BIAS:
        return !L->moe && c->mlp_bias;
    case CELLM_NEED_MOE:
        return L->moe;
    case CELLM_NEED_MOE_SPLIT:
        return L->moe && d->experts != CELLM_EXPERTS_INTERLEAVED;
    case CELLM_NEED_MOE_INTERLEAVED:
        return L->moe && d->experts == CELLM_EXPERTS_INTERLEAVED;
    case CELLM_NEED_MOE_BIAS:
        return L->moe && c->expert_bias;
    case CELLM_NEED_MOE_SPLIT_BIAS:
        return L->moe && c->expert_bias && d->experts != CELLM_EXPERTS_INTERLEAVED;
    case CELLM_NEED_SINKS:
        return c->attn_sinks;
    case CELLM_NEED_INPUT_NORM:
        return c->block != CELLM_BLOCK_POST_NORM;
    case CELLM_NEED_QK_NORM_FULL:
        return c->qk_norm_full;
    case CELLM_NEED_MOE_CORR:
        return L->moe && c->router == CELLM_ROUTER_SIGMOID_GROUP;
    case CELLM_NEED_SHARED:
        return L->moe && c->shared_ffn_dim > 0 && !c->hybrid;
    case CELLM_NEED_GQA:
        return !c->mla;
    case CELLM_NEED_MLA:
        return c->mla;
    case CELLM_NEED_MLA_QLORA:
        return c->mla && c->q_lora_rank;
    case CELLM_NEED_MLA_QPROJ:
        return c->mla && !c->q_lora_rank;
    case CELLM_NEED_MLA_KVB:
        return c->mla && !d->mla_split;
    case CELLM_NEED_MLA_SPLIT:
        return c->mla && d->mla_split;
    case CELLM_NEED_KV_OWN: /* GQA keys: MLA has none; a KV-shared layer reads another's */
        return !c->mla && L->kv_src == L->index;
    case CELLM_NEED_V_OWN:
        return !c->mla && L->kv_src == L->index && !(c->k_eq_v && L->attn == CELLM_ATTN_FULL);
    case CELLM_NEED_K_NORM:
        return c->qk_norm && !c->qk_norm_per_head && L->kv_src == L->index;
    case CELLM_NEED_PLE:
        return c->ple_dim > 0;
    case CELLM_NEED_GEMMA4:
        return c->gemma4;
    case CELLM_NEED_MOE_PARALLEL:
        return L->moe && c->moe_parallel;
    case CELLM_NEED_GEMMA3N:
        return c->gemma3n;
    }
    return 0;
}

int cellm_layer_parts(const struct cellm_desc *d, const struct cellm_layer *L, enum cellm_lt id)
{
    const struct cellm_tensor_spec *s = &cellm_layer_tensors[id];
    if (!needs(d, L, s->need)) return 0;
    /* a state layer (hybrid.h) has no attention tensors; its own are in L->hyb */
    if (L->mixer != 0 &&
        ((id >= CELLM_LT_WQ && id <= CELLM_LT_K_NORM_HEADS) || id == CELLM_LT_SINKS))
        return 0;
    switch (s->kind) {
    case CELLM_TK_VEC:
    case CELLM_TK_MAT:
        return 1;
    case CELLM_TK_HEADS:
        return (int)cellm_dim_size(&d->cfg, s->rows);
    case CELLM_TK_EXPERTS:
        if (s->need == CELLM_NEED_MLA_SPLIT) return d->cfg.n_heads; /* one matrix per head */
        return d->cfg.n_experts;
    case CELLM_TK_EXPERT_VECS:
        return d->cfg.n_experts;
    }
    return 0;
}

const char *cellm_config_gpt_oss_pieces(const struct cellm_config *c)
{
    if (!c->attn_sinks && !c->swiglu_clamp && !c->expert_bias &&
        c->router != CELLM_ROUTER_TOPK_SOFTMAX)
        return NULL;
    return "attention sinks (self_attn.sinks), the top-k-then-softmax router with biases, "
           "experts with biases and the clamped SwiGLU";
}

const char *cellm_config_grouped_moe_pieces(const struct cellm_config *c)
{
    /* Llama 4's shared expert is one of cellm_config_l4_pieces */
    if (c->router != CELLM_ROUTER_SIGMOID_GROUP &&
        (!c->shared_ffn_dim || c->shared_expert || c->hybrid))
        return NULL;
    return "the sigmoid grouped router (e_score_correction_bias, n_group, topk_group, "
           "routed_scaling_factor) and shared experts (mlp.shared_experts)";
}

const char *cellm_config_l4_pieces(const struct cellm_config *c)
{
    if (c->rope_interleaved || c->qk_l2norm || c->layer_chunked || c->attn_temp ||
        c->shared_expert || c->router == CELLM_ROUTER_SIGMOID_INPUT)
        return "Llama 4's interleaved RoPE, NoPE layers with the query temperature, the "
               "weightless q/k norm after RoPE, chunked attention and the sigmoid router that "
               "scales the experts' input beside a shared expert";
    return NULL;
}

const char *cellm_config_qscale_pieces(const struct cellm_config *c)
{
    if (c->qscale_beta != 0)
        return "Mistral 3's query scale by position (rope_parameters.llama_4_scaling_beta)";
    return NULL;
}

const char *cellm_config_mla_pieces(const struct cellm_config *c)
{
    if (!c->mla) return NULL;
    return "multi-head latent attention (MLA) with its latent KV cache, the grouped sigmoid "
           "router (noaux_tc) and shared experts";
}

const char *cellm_config_missing(const struct cellm_config *c, unsigned have)
{
    static const struct {
        unsigned group;
        const char *(*pieces)(const struct cellm_config *);
    } groups[] = {
        {CELLM_PIECES_L4, cellm_config_l4_pieces},
        {CELLM_PIECES_QSCALE, cellm_config_qscale_pieces},
        {CELLM_PIECES_STATE, cellm_config_state_pieces},
        {CELLM_PIECES_GEMMA4, cellm_config_gemma4_pieces},
        {CELLM_PIECES_MLA, cellm_config_mla_pieces},
        {CELLM_PIECES_GEMMA3N, cellm_config_gemma3n_pieces},
        {CELLM_PIECES_GPT_OSS, cellm_config_gpt_oss_pieces},
        {CELLM_PIECES_GROUPED_MOE, cellm_config_grouped_moe_pieces},
    };
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        const char *p;
        if (!(have & groups[i].group) && (p = groups[i].pieces(c))) return p;
    }
    return NULL;
}
