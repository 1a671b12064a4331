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
        return "stacked gate, up, down (mlx-lm gpt-oss)";
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
    }
    return 0;
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
        return c->block == CELLM_BLOCK_SANDWICH;
    case CELLM_NEED_FFN_NORM:
        return c->block != CELLM_BLOCK_PARALLEL;
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
        return !L->moe;
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
    case CELLM_NEED_MOE_CORR:
        return L->moe && c->router == CELLM_ROUTER_SIGMOID_GROUP;
    case CELLM_NEED_SHARED:
        return L->moe && c->shared_ffn_dim > 0;
    }
    return 0;
}

int cellm_layer_parts(const struct cellm_desc *d, const struct cellm_layer *L, enum cellm_lt id)
{
    const struct cellm_tensor_spec *s = &cellm_layer_tensors[id];
    if (!needs(d, L, s->need)) return 0;
    switch (s->kind) {
    case CELLM_TK_VEC:
    case CELLM_TK_MAT:
        return 1;
    case CELLM_TK_HEADS:
        return (int)cellm_dim_size(&d->cfg, s->rows);
    case CELLM_TK_EXPERTS:
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
    if (c->router != CELLM_ROUTER_SIGMOID_GROUP && !c->shared_ffn_dim) return NULL;
    return "the sigmoid grouped router (e_score_correction_bias, n_group, topk_group, "
           "routed_scaling_factor) and shared experts (mlp.shared_experts)";
}
