/*
 * test_mla.c: the DeepSeek-V3 pieces below the conformance fixtures
 * (docs/forward/deepseek-v3.md): the grouped sigmoid router against hand-computed choices
 * and weights (including transformers' 0.0 mask, which lets a dropped expert win when the
 * kept ones' corrected scores are negative), and the config keys (the MLA head sizes, the
 * mscale softmax scale, the dense leading layers, q_lora_rank null, refused shapes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exec/cpu/router.h"
#include "model/hparams.h"

static float sigm(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static struct cellm_vec f32_vec(const float *v, int n)
{
    struct cellm_vec b;
    memset(&b, 0, sizeof b);
    b.fmt = CELLM_W_F32;
    b.n = n;
    b.data = (const uint8_t *)v;
    return b;
}

/* 8 experts in 4 groups of 2, the best 2 groups, 2 experts: groups score the sum of both
 * members; the two best experts of the kept groups win, in rank order. */
static void router_groups(void **state)
{
    (void)state;
    const float logits[8] = {0.1f, 0.2f,  /* group 0: sum of sigmoids ~1.07 */
                             2.0f, -3.0f, /* group 1: ~0.93 (one strong expert, dropped) */
                             1.0f, 0.9f,  /* group 2: ~1.44, kept */
                             0.5f, 0.4f}; /* group 3: ~1.22, kept */
    const float zero[8] = {0};
    struct cellm_vec corr = f32_vec(zero, 8);
    struct cellm_route_spec r = {.kind = CELLM_ROUTER_SIGMOID_GROUP, .n_experts = 8, .k = 2,
                                 .norm_topk_prob = 1, .corr = &corr, .n_group = 4,
                                 .topk_group = 2, .scale = 2.5f};
    float p[8], w[2];
    int idx[2];
    memcpy(p, logits, sizeof p);
    cellm_route_token(&r, p, idx, w);
    /* expert 2 has the best sigmoid overall but its group is dropped */
    assert_int_equal(idx[0], 4);
    assert_int_equal(idx[1], 5);
    float s4 = sigm(1.0f), s5 = sigm(0.9f), den = s4 + s5 + 1e-20f;
    assert_true(w[0] == (s4 / den) * 2.5f);
    assert_true(w[1] == (s5 / den) * 2.5f);

    /* the correction bias changes the choice, not the weights; without norm_topk_prob the
     * weight is the sigmoid times the scale */
    const float bias[8] = {0, 0, 0, 0, -1.0f, 0, 0, 0.8f};
    corr = f32_vec(bias, 8);
    r.norm_topk_prob = 0;
    memcpy(p, logits, sizeof p);
    cellm_route_token(&r, p, idx, w);
    /* corrected: group 2 {0.73-1, 0.71} = 0.44, group 3 {0.62, 0.60+0.8} = 2.02, group 0
     * 1.07: groups 3 and 0 stay; best two, in rank order: 7 (1.40) and 6 (0.62) */
    assert_int_equal(idx[0], 7);
    assert_int_equal(idx[1], 6);
    assert_true(w[0] == sigm(0.4f) * 2.5f);
    assert_true(w[1] == sigm(0.5f) * 2.5f);
}

/* The kept group's corrected scores are negative; the dropped group's experts score 0.0
 * (masked_fill with 0, not -inf), so one of them is chosen, with its own sigmoid weight. */
static void router_zero_mask(void **state)
{
    (void)state;
    const float logits[4] = {0.0f, 0.3f, 0.0f, 0.1f};
    const float bias[4] = {-2.0f, -2.0f, -3.0f, -3.0f};
    struct cellm_vec corr = f32_vec(bias, 4);
    struct cellm_route_spec r = {.kind = CELLM_ROUTER_SIGMOID_GROUP, .n_experts = 4, .k = 1,
                                 .corr = &corr, .n_group = 2, .topk_group = 1, .scale = 1.0f};
    float p[4], w[1];
    int idx[1];
    memcpy(p, logits, sizeof p);
    cellm_route_token(&r, p, idx, w);
    /* group 0 (about -3) beats group 1 (about -5) and is kept, yet expert 2 of the dropped
     * group wins at 0.0 (ties go to the lower index) */
    assert_int_equal(idx[0], 2);
    assert_true(w[0] == sigm(0.0f));
}

static const char *base_cfg =
    "{\"model_type\": \"deepseek_v3\", \"vocab_size\": 64, \"hidden_size\": 64, "
    "\"intermediate_size\": 128, \"moe_intermediate_size\": 32, \"num_hidden_layers\": 4, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"n_shared_experts\": 2, "
    "\"n_routed_experts\": 8, \"kv_lora_rank\": 32, "
    "\"v_head_dim\": 24, \"qk_nope_head_dim\": 32, \"first_k_dense_replace\": 2, "
    "\"max_position_embeddings\": 512, "
    "\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"mscale\": 1.0, \"mscale_all_dim\": "
    "1.0, \"original_max_position_embeddings\": 64}%s}";

/* base_cfg with extra keys; the defaults of the routing keys (without = 1) and of the rope
 * head (without = 2) join unless extra sets them (cJSON keeps the first of a duplicate key) */
static enum cellm_status parse(const char *extra, struct cellm_config *c, struct cellm_error *err,
                               int without)
{
    char json[2048], more[512];
    snprintf(more, sizeof more, "%s%s%s", extra,
             without == 1 ? "" : ", \"n_group\": 4, \"topk_group\": 2, \"num_experts_per_tok\": 2",
             without == 2 ? "" : ", \"qk_rope_head_dim\": 16");
    snprintf(json, sizeof json, base_cfg, more);
    return cellm_config_parse(json, strlen(json), NULL, 0, "config.json", c, err);
}

static void config_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err;
    assert_int_equal(parse(", \"q_lora_rank\": null", &c, &err, 0), CELLM_OK);
    assert_int_equal(c.mla, 1);
    assert_int_equal(c.q_lora_rank, 0); /* null: one q_proj */
    assert_int_equal(c.head_dim, 48);
    assert_int_equal(c.rot_dims, 16);
    assert_int_equal(c.v_head_dim, 24);
    assert_int_equal(c.rope_interleave, 1);
    assert_int_equal(c.n_shared_experts, 2);
    assert_int_equal(c.router, CELLM_ROUTER_SIGMOID_GROUP);
    assert_int_equal(c.norm_topk_prob, 1); /* DeepseekV3Config's default */
    assert_true(c.routed_scale == 2.5);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c.layer_moe[i], i >= 2);
    /* 48^-0.5 * m^2, m = 0.1 * 1.0 * ln 40 + 1 */
    double m = 0.1 * log(40.0) + 1;
    assert_true(fabs(c.attn_scale - m * m / sqrt(48.0)) < 1e-15);
    /* the attention factor of cos and sin: both mscales 1, so 1 */
    assert_true(c.rope.attn_factor == 1.0);
    cellm_config_free(&c);

    assert_int_equal(parse(", \"q_lora_rank\": 24, \"rope_interleave\": false", &c, &err, 0),
                     CELLM_OK);
    assert_int_equal(c.q_lora_rank, 24);
    assert_int_equal(c.rope_interleave, 0);
    cellm_config_free(&c);
}

static void config_refused(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err;
    /* 8 experts do not split into 3 groups */
    assert_int_equal(parse(", \"n_group\": 3", &c, &err, 1), CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "n_group 3"));
    /* one kept group of 2 experts cannot give 3 per token */
    assert_int_equal(
        parse(", \"n_group\": 4, \"topk_group\": 1, \"num_experts_per_tok\": 3", &c, &err, 1),
        CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "topk_group 1"));
    assert_int_equal(parse(", \"qk_rope_head_dim\": 15", &c, &err, 2), CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "qk_rope_head_dim 15"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router_groups),
        cmocka_unit_test(router_zero_mask),
        cmocka_unit_test(config_keys),
        cmocka_unit_test(config_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
