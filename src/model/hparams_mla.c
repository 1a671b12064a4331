/*
 * hparams_mla.c: DeepSeek-V3's keys of config.json (docs/forward/deepseek-v3.md), read
 * after the generic ones of hparams.c: the multi-head latent attention dimensions, the
 * softmax scale with YaRN's mscale, and the grouped sigmoid router with its shared experts
 * and leading dense layers.
 *
 * Defaults are DeepseekV3Config's. head_dim becomes qk_nope + qk_rope (the length of a
 * query and key) and rot_dims qk_rope (RoPE only turns the rope part, and transformers
 * sizes YaRN's frequencies by it), so the generic RoPE tables fit MLA unchanged.
 */
#include <math.h>
#include <string.h>

#include "base/error.h"
#include "base/json.h"
#include "hparams.h"

/* An int >= lo at key (def when absent). */
static enum cellm_status get_int(const cJSON *t, const char *key, const char *what, int def, int lo,
                                 int *out, struct cellm_error *err)
{
    int64_t v;
    CELLM_TRY(cellm_json_int(t, key, what, def, &v, err));
    if (v < lo || v > (1 << 24))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is %lld, expected %d..%d", what, key,
                          (long long)v, lo, 1 << 24);
    *out = (int)v;
    return CELLM_OK;
}

static double yarn_get_mscale(double s, double m)
{
    return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0;
}

enum cellm_status cellm_config_parse_mla(const cJSON *t, const char *what, struct cellm_config *c,
                                         struct cellm_error *err)
{
    c->mla = 1;
    /* q_lora_rank null: one q_proj (DeepSeek-V2-Lite's shape) */
    const cJSON *ql = cJSON_GetObjectItemCaseSensitive(t, "q_lora_rank");
    if (ql && cJSON_IsNull(ql))
        c->q_lora_rank = 0;
    else
        CELLM_TRY(get_int(t, "q_lora_rank", what, 1536, 1, &c->q_lora_rank, err));
    CELLM_TRY(get_int(t, "kv_lora_rank", what, 512, 1, &c->kv_lora_rank, err));
    CELLM_TRY(get_int(t, "qk_rope_head_dim", what, 64, 2, &c->qk_rope_dim, err));
    CELLM_TRY(get_int(t, "qk_nope_head_dim", what, 128, 1, &c->qk_nope_dim, err));
    CELLM_TRY(get_int(t, "v_head_dim", what, 128, 1, &c->v_head_dim, err));
    if (c->qk_rope_dim % 2 || c->qk_rope_dim > 512)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: qk_rope_head_dim %d: expected an even count up to 512", what,
                          c->qk_rope_dim);
    CELLM_TRY(cellm_json_bool(t, "rope_interleave", what, 1, &c->rope_interleave, err));
    c->head_dim = c->qk_nope_dim + c->qk_rope_dim;
    c->rot_dims = c->qk_rope_dim;
    /* transformers: qk_head_dim^-0.5, times mscale^2 when RoPE scaling sets mscale_all_dim */
    c->attn_scale = 1.0 / sqrt((double)c->head_dim);
    if (c->rope.kind != CELLM_ROPE_DEFAULT && c->rope.mscale_all_dim != 0) {
        double m = yarn_get_mscale(c->rope.factor, c->rope.mscale_all_dim);
        c->attn_scale = c->attn_scale * m * m;
    }

    int dense;
    CELLM_TRY(get_int(t, "n_routed_experts", what, 256, 1, &c->n_experts, err));
    CELLM_TRY(get_int(t, "num_experts_per_tok", what, 8, 1, &c->n_experts_used, err));
    CELLM_TRY(get_int(t, "moe_intermediate_size", what, 2048, 1, &c->moe_ffn_dim, err));
    CELLM_TRY(get_int(t, "n_shared_experts", what, 1, 0, &c->n_shared_experts, err));
    CELLM_TRY(get_int(t, "n_group", what, 8, 1, &c->n_group, err));
    CELLM_TRY(get_int(t, "topk_group", what, 4, 1, &c->topk_group, err));
    CELLM_TRY(get_int(t, "first_k_dense_replace", what, 3, 0, &dense, err));
    CELLM_TRY(cellm_json_bool(t, "norm_topk_prob", what, 1, &c->norm_topk_prob, err));
    CELLM_TRY(cellm_json_num(t, "routed_scaling_factor", what, 2.5, &c->routed_scale, err));
    if (!isfinite(c->routed_scale))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: routed_scaling_factor must be finite", what);
    if (c->n_experts > 1024) /* the router's fixed tables (released models have <= 384) */
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "%s: n_routed_experts %d: at most 1024 are supported", what,
                          c->n_experts);
    /* the group score is the sum of a group's two best experts */
    if (c->n_experts % c->n_group || c->n_experts / c->n_group < 2)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: n_routed_experts %d in n_group %d groups: expected groups of an "
                          "equal size of at least 2",
                          what, c->n_experts, c->n_group);
    if (c->topk_group > c->n_group ||
        c->n_experts_used > c->topk_group * (c->n_experts / c->n_group))
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: topk_group %d of n_group %d groups cannot hold num_experts_per_tok "
                          "%d experts",
                          what, c->topk_group, c->n_group, c->n_experts_used);
    if (c->n_group > CELLM_MAX_EXPERT_GROUPS)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "%s: n_group %d: at most %d are supported",
                          what, c->n_group, CELLM_MAX_EXPERT_GROUPS);
    c->router = CELLM_ROUTER_SIGMOID_GROUP;
    /* the shared experts as one MLP (the tensor table's mlp.shared_experts rows) */
    c->shared_ffn_dim = c->moe_ffn_dim * c->n_shared_experts;
    for (int i = 0; i < c->n_layers; i++)
        c->layer_moe[i] = i >= dense;
    return CELLM_OK;
}
