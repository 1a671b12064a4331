/*
 * test_router.c: the MoE routers of src/exec/cpu/router.h on hand-made logits, below the
 * conformance fixtures: glm4_moe's sigmoid grouped router (group scores from the two best
 * corrected scores, group ties to the lower index, masked experts at 0.0 rather than -inf,
 * weights from the sigmoid without the correction, renormalised and scaled), Qwen3-MoE's
 * softmax-then-top-k and gpt-oss's top-k-then-softmax, and NaN logits that must still give
 * k distinct experts in range. Then the glm4_moe fixture's binding (correction bias and
 * shared experts on the MoE layer only) and the XLA executor's refusal by name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "exec/cpu/router.h"
#include "exec/xla/emit.h"

static float sigm(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

static struct cellm_vec f32_vec(const float *v, int n)
{
    struct cellm_vec r;
    memset(&r, 0, sizeof r);
    r.fmt = CELLM_W_F32;
    r.n = n;
    r.data = (const uint8_t *)v;
    return r;
}

static struct cellm_route_spec grouped(const struct cellm_vec *corr, int E, int k, int G, int TG)
{
    struct cellm_route_spec s = {.kind = CELLM_ROUTER_SIGMOID_GROUP,
                                 .n_experts = E,
                                 .k = k,
                                 .norm_topk_prob = 1,
                                 .corr = corr,
                                 .n_group = G,
                                 .topk_group = TG,
                                 .scale = 2.5f};
    return s;
}

/* 8 experts in 4 groups of 2, the best 2 groups kept, top 2. Corrected scores (dyadic, so
 * exact): 0.5 0.5 | 0.75 0.625 | 0.75 0.625 | 0.25 s7+0.75. Groups 1 and 2 tie at 1.375:
 * group 1 stays (lower index), so expert 4 (0.75, like expert 2) is masked out. */
static void grouped_choice_and_weights(void **state)
{
    (void)state;
    static const float corr_v[8] = {0, 0, 0.25f, 0.125f, 0.25f, 0.125f, -0.25f, 0.75f};
    struct cellm_vec corr = f32_vec(corr_v, 8);
    struct cellm_route_spec s = grouped(&corr, 8, 2, 4, 2);
    float p[8] = {0, 0, 0, 0, 0, 0, 0, 2.0f};
    int idx[2];
    float w[2];
    cellm_route_token(&s, p, idx, w);
    assert_int_equal(idx[0], 7);
    assert_int_equal(idx[1], 2);
    /* weights: the sigmoid without the correction, / (sum + 1e-20), x 2.5, in f32 */
    float s7 = sigm(2.0f), s2 = sigm(0.0f);
    float den = (s7 + s2) + 1e-20f;
    assert_true(w[0] == (s7 / den) * 2.5f);
    assert_true(w[1] == (s2 / den) * 2.5f);
    assert_true(fabsf(w[0] + w[1] - 2.5f) < 1e-6f);
    /* without renormalisation the weights are the scaled sigmoid */
    float q[8] = {0, 0, 0, 0, 0, 0, 0, 2.0f};
    s.norm_topk_prob = 0;
    cellm_route_token(&s, q, idx, w);
    assert_true(w[0] == s7 * 2.5f && w[1] == s2 * 2.5f);
}

/* A masked expert scores 0.0, not -inf: when the kept group has fewer than k positive
 * choices, experts of a dropped group win over a kept negative one (as transformers does). */
static void grouped_masked_zero_can_win(void **state)
{
    (void)state;
    static const float corr_v[4] = {-1.0f, -1.0f, 0.25f, -1.0f};
    struct cellm_vec corr = f32_vec(corr_v, 4);
    struct cellm_route_spec s = grouped(&corr, 4, 3, 2, 1);
    float p[4] = {0, 0, 0, 0}; /* corrected: -0.5 -0.5 | 0.75 -0.5; group 1 stays */
    int idx[3];
    float w[3];
    cellm_route_token(&s, p, idx, w);
    assert_int_equal(idx[0], 2);
    assert_int_equal(idx[1], 0); /* 0.0 ties: the lower index first */
    assert_int_equal(idx[2], 1);
    for (int k = 0; k < 3; k++)
        assert_true(fabsf(w[k] - 2.5f / 3) < 1e-6f);
}

/* One group: plain top k of the corrected scores; a single kept group of all experts. */
static void grouped_one_group(void **state)
{
    (void)state;
    static const float corr_v[4] = {0.5f, 0, 0, 0};
    struct cellm_vec corr = f32_vec(corr_v, 4);
    struct cellm_route_spec s = grouped(&corr, 4, 2, 1, 1);
    float p[4] = {-1.0f, 1.0f, 0.25f, 0.5f}; /* corrected 0.77, 0.73, 0.56, 0.62 */
    int idx[2];
    float w[2];
    cellm_route_token(&s, p, idx, w);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_true(w[0] < w[1]); /* expert 0 won by its correction, not by its score */
}

static void softmax_routers(void **state)
{
    (void)state;
    struct cellm_route_spec s = {.kind = CELLM_ROUTER_SOFTMAX_TOPK, .n_experts = 4, .k = 2};
    float p[4] = {1.0f, 3.0f, 2.0f, 3.0f};
    int idx[2];
    float w[2];
    cellm_route_token(&s, p, idx, w);
    assert_int_equal(idx[0], 1); /* tie at 3: the lower index first */
    assert_int_equal(idx[1], 3);
    assert_true(w[0] == w[1] && w[0] > 0.3f && w[0] < 0.5f); /* softmax over all four */
    float q[4] = {1.0f, 3.0f, 2.0f, 3.0f};
    s.norm_topk_prob = 1;
    cellm_route_token(&s, q, idx, w);
    assert_true(w[0] == 0.5f && w[1] == 0.5f);
    /* gpt-oss: bias first, top k of the logits, softmax over those k */
    static const float bias_v[4] = {3.0f, 0, 0, 0};
    struct cellm_vec bias = f32_vec(bias_v, 4);
    struct cellm_route_spec t = {
        .kind = CELLM_ROUTER_TOPK_SOFTMAX, .n_experts = 4, .k = 2, .bias = &bias};
    float r[4] = {1.0f, 3.0f, 2.0f, 0.0f}; /* biased: 4 3 2 0 */
    cellm_route_token(&t, r, idx, w);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_true(fabsf(w[0] - 1.0f / (1.0f + expf(-1.0f))) < 1e-6f);
}

/* NaN logits rank last: every router still returns k distinct experts in range. */
static void nan_logits(void **state)
{
    (void)state;
    static const float corr_v[8] = {0};
    struct cellm_vec corr = f32_vec(corr_v, 8);
    enum cellm_router kinds[3] = {CELLM_ROUTER_SOFTMAX_TOPK, CELLM_ROUTER_TOPK_SOFTMAX,
                                  CELLM_ROUTER_SIGMOID_GROUP};
    for (int r = 0; r < 3; r++)
        for (int nans = 1; nans <= 8; nans++) {
            struct cellm_route_spec s = grouped(&corr, 8, 4, 2, 1);
            s.kind = kinds[r];
            float p[8];
            for (int e = 0; e < 8; e++)
                p[e] = e < nans ? NAN : (float)e;
            int idx[4];
            float w[4];
            cellm_route_token(&s, p, idx, w);
            for (int k = 0; k < 4; k++) {
                assert_true(idx[k] >= 0 && idx[k] < 8);
                for (int j = 0; j < k; j++)
                    assert_int_not_equal(idx[j], idx[k]);
            }
        }
}

/* tests/fixtures/glm4-moe/f32: layer 0 dense, layer 1 MoE with its correction bias (F32,
 * one per expert) and shared experts of moe_intermediate_size; XLA refuses by name. */
static void glm_fixture(void **state)
{
    (void)state;
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(CELLM_FIXTURES "/glm4-moe/f32", &d, &err)) fail_msg("%s", err.msg);
    const struct cellm_layer *L0 = &d.layers[0], *L1 = &d.layers[1];
    assert_true(!L0->moe && L1->moe);
    assert_int_equal(L0->router_corr.fmt, CELLM_W_NONE);
    assert_int_equal(L0->s_gate.fmt, CELLM_W_NONE);
    assert_int_equal(L1->router_corr.fmt, CELLM_W_F32);
    assert_int_equal(L1->router_corr.n, 16);
    assert_true(L1->s_gate.rows == 32 && L1->s_gate.cols == 64);
    assert_true(L1->s_down.rows == 64 && L1->s_down.cols == 32);
    assert_int_equal(L1->bo.fmt, CELLM_W_NONE); /* q/k/v biases only */
    assert_int_equal(L1->bq.fmt, CELLM_W_F32);
    /* nothing of gpt-oss's; the grouped router is a group of its own, which the CUDA and
     * XLA executors implement (test_xla_families runs the fixtures) */
    assert_null(cellm_config_gpt_oss_pieces(&d.cfg));
    assert_non_null(cellm_config_grouped_moe_pieces(&d.cfg));
    const char *missing = cellm_config_missing(&d.cfg, 0);
    if (!missing || !strstr(missing, "sigmoid grouped router")) fail_msg("%s", missing);
    assert_null(cellm_config_missing(&d.cfg, CELLM_PIECES_GROUPED_MOE));
    assert_int_equal(cellm_xla_supported(&d, &err), CELLM_OK);
    cellm_desc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(grouped_choice_and_weights),
        cmocka_unit_test(grouped_masked_zero_can_win),
        cmocka_unit_test(grouped_one_group),
        cmocka_unit_test(softmax_routers),
        cmocka_unit_test(nan_logits),
        cmocka_unit_test(glm_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
