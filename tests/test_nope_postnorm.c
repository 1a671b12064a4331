/*
 * test_nope_postnorm.c: the pieces of smollm3, olmo2 and olmo3 below the conformance
 * fixtures (docs/forward/{smollm3,olmo2,olmo3}.md).
 *
 * config.json: SmolLM3's no_rope_layers and its no_rope_layer_interval default, the sliding
 * NoPE layers of use_sliding_window, and the refusal of a short or non-binary list; OLMo 2's
 * post-norm block, full-width q/k norm and class defaults; OLMo 3's every-4th-full default,
 * its RoPE scaling on full layers only (old and per-layer-type keys). Binding: the tensors
 * each layer has (no input_layernorm in a post-norm block, q/k norm weights of the whole
 * projection) and a NoPE layer's zero frequencies, whose rotation is the identity on every
 * executor (the CUDA kernels rotate NoPE layers by that table).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exec/cpu/ops.h"
#include "model/hparams.h"
#include "model/model.h"

static void parse_ok(const char *json, struct cellm_config *c)
{
    struct cellm_error err;
    if (cellm_config_parse(json, strlen(json), NULL, 0, "config.json", c, &err))
        fail_msg("%s\n-> %s", json, err.msg);
}

static void parse_fail(const char *json, const char *word)
{
    struct cellm_error err;
    struct cellm_config c;
    enum cellm_status st = cellm_config_parse(json, strlen(json), NULL, 0, "config.json", &c, &err);
    if (st != CELLM_ERR_FORMAT) fail_msg("%s: status %d, expected a format error", json, st);
    if (!strstr(err.msg, word)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, word);
}

static void smollm3_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    /* the interval default: every 4th layer (i = 3, 7) has no RoPE; none slides */
    parse_ok("{\"model_type\":\"smollm3\",\"num_hidden_layers\":8}", &c);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(c.layer_nope[i], i == 3 || i == 7);
        assert_int_equal(c.layer_sliding[i], 0);
    }
    assert_true(c.tie_embeddings && c.bos == 128000 && c.eos[0] == 128001 && c.n_eos == 1);
    assert_true(c.rope.theta == 2e6 && c.n_kv_heads == 4 && c.block == CELLM_BLOCK_PRE_NORM);
    assert_false(c.qk_norm || c.qk_norm_full);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"smollm3\",\"num_hidden_layers\":4,\"no_rope_layer_interval\":2}",
             &c);
    assert_memory_equal(c.layer_nope, ((uint8_t[]){0, 1, 0, 1}), 4);
    cellm_config_free(&c);
    /* an explicit list wins (1 = RoPE); a longer list than the layers is accepted */
    parse_ok("{\"model_type\":\"smollm3\",\"num_hidden_layers\":3,"
             "\"no_rope_layers\":[0,1,1,0],\"no_rope_layer_interval\":2}",
             &c);
    assert_memory_equal(c.layer_nope, ((uint8_t[]){1, 0, 0}), 3);
    cellm_config_free(&c);
    /* use_sliding_window with a window: the NoPE layers slide, the others stay full */
    parse_ok("{\"model_type\":\"smollm3\",\"num_hidden_layers\":4,\"use_sliding_window\":true,"
             "\"sliding_window\":16}",
             &c);
    assert_int_equal(c.window, 16);
    assert_memory_equal(c.layer_sliding, ((uint8_t[]){0, 0, 0, 1}), 4);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"smollm3\",\"num_hidden_layers\":4,\"sliding_window\":16}", &c);
    assert_int_equal(c.window, 0);
    cellm_config_free(&c);
    parse_fail("{\"model_type\":\"smollm3\",\"num_hidden_layers\":4,\"no_rope_layers\":[1,1,0]}",
               "no_rope_layers");
    parse_fail("{\"model_type\":\"smollm3\",\"num_hidden_layers\":2,\"no_rope_layers\":[1,2]}",
               "no_rope_layers");
    /* other families have no NoPE layers */
    parse_ok("{\"model_type\":\"llama\",\"no_rope_layers\":[0]}", &c);
    assert_null(c.layer_nope);
    cellm_config_free(&c);
}

static void olmo_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_ok("{\"model_type\":\"olmo2\"}", &c);
    assert_int_equal(c.block, CELLM_BLOCK_POST_NORM);
    assert_true(c.qk_norm_full && !c.qk_norm && !c.qk_norm_per_head);
    assert_true(c.norm_eps == 1e-5 && c.rope.theta == 10000 && c.n_kv_heads == 32);
    assert_true(!c.tie_embeddings && c.bos == -1 && c.eos[0] == 50279 && c.window == 0);
    assert_false(c.qkv_bias || c.o_bias);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"olmo2\",\"attention_bias\":true,\"num_key_value_heads\":8}", &c);
    assert_true(c.qkv_bias && c.o_bias && c.n_kv_heads == 8);
    cellm_config_free(&c);
    /* OLMo 3: every 4th layer full when layer_types is absent; window 4096 */
    parse_ok("{\"model_type\":\"olmo3\",\"num_hidden_layers\":8}", &c);
    assert_int_equal(c.window, 4096);
    assert_memory_equal(c.layer_sliding, ((uint8_t[]){1, 1, 1, 0, 1, 1, 1, 0}), 8);
    assert_true(c.block == CELLM_BLOCK_POST_NORM && c.qk_norm_full && c.rope.theta == 500000);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"olmo3\",\"num_hidden_layers\":2,\"sliding_window\":8,"
             "\"layer_types\":[\"full_attention\",\"sliding_attention\"]}",
             &c);
    assert_memory_equal(c.layer_sliding, ((uint8_t[]){0, 1}), 2);
    cellm_config_free(&c);
    /* an old-format rope_scaling is for the full layers; sliding ones keep default RoPE */
    parse_ok("{\"model_type\":\"olmo3\",\"rope_theta\":1000,\"max_position_embeddings\":8192,"
             "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,"
             "\"original_max_position_embeddings\":2048}}",
             &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_YARN);
    assert_true(c.rope_local.kind == CELLM_ROPE_DEFAULT && c.rope_local.theta == 1000 &&
                c.rope_local.attn_factor == 1);
    cellm_config_free(&c);
    /* transformers 5's per-layer-type parameters; an absent sliding theta is rope_theta */
    parse_ok("{\"model_type\":\"olmo3\",\"rope_theta\":1000,\"rope_parameters\":{"
             "\"full_attention\":{\"rope_type\":\"linear\",\"factor\":2,\"rope_theta\":3000},"
             "\"sliding_attention\":{\"rope_type\":\"default\"}}}",
             &c);
    assert_true(c.rope.kind == CELLM_ROPE_LINEAR && c.rope.theta == 3000);
    assert_true(c.rope_local.kind == CELLM_ROPE_DEFAULT && c.rope_local.theta == 1000);
    cellm_config_free(&c);
    /* OLMo 2 keeps one RoPE for every layer */
    parse_ok("{\"model_type\":\"olmo2\",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}",
             &c);
    assert_true(c.rope.kind == CELLM_ROPE_LINEAR && c.rope_local.kind == CELLM_ROPE_LINEAR);
    cellm_config_free(&c);
}

static void load(const char *rel, struct cellm_desc *d)
{
    char dir[512];
    struct cellm_error err;
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    if (cellm_desc_load(dir, d, &err)) fail_msg("%s: %s", rel, err.msg);
}

static void olmo_binding(void **state)
{
    (void)state;
    struct cellm_desc d;
    load("olmo2/bf16", &d);
    const struct cellm_config *c = &d.cfg;
    for (int l = 0; l < c->n_layers; l++) {
        const struct cellm_layer *L = &d.layers[l];
        assert_int_equal(cellm_layer_parts(&d, L, CELLM_LT_ATTN_NORM), 0);
        assert_int_equal(cellm_layer_parts(&d, L, CELLM_LT_FFN_NORM), 0);
        assert_int_equal(cellm_layer_parts(&d, L, CELLM_LT_Q_NORM), 0);
        assert_int_equal(L->attn_norm.fmt, CELLM_W_NONE);
        assert_int_not_equal(L->post_attn_norm.fmt, CELLM_W_NONE);
        assert_int_not_equal(L->post_ffn_norm.fmt, CELLM_W_NONE);
        assert_int_equal(L->q_norm_full.n, (int64_t)c->n_heads * c->head_dim);
        assert_int_equal(L->k_norm_full.n, (int64_t)c->n_kv_heads * c->head_dim);
        assert_int_equal(L->nope, 0);
    }
    assert_null(d.inv_freq_none);
    cellm_desc_free(&d);
    load("olmo3/f32", &d);
    assert_int_equal(d.layers[0].attn, CELLM_ATTN_SLIDING);
    assert_int_equal(d.layers[1].attn, CELLM_ATTN_FULL);
    assert_memory_equal(d.layers[0].inv_freq, d.layers[1].inv_freq,
                        (size_t)d.cfg.rot_dims / 2 * sizeof(float));
    cellm_desc_free(&d);
}

static void nope_binding(void **state)
{
    (void)state;
    struct cellm_desc d;
    load("smollm3/q4-g64-bf16", &d);
    const struct cellm_config *c = &d.cfg;
    int half = c->rot_dims / 2;
    assert_non_null(d.inv_freq_none);
    for (int l = 0; l < c->n_layers; l++) {
        const struct cellm_layer *L = &d.layers[l];
        assert_int_equal(L->nope, l == 3);
        assert_ptr_equal(L->inv_freq, L->nope ? d.inv_freq_none : d.inv_freq_global);
        assert_true(L->rope_attn == 1.0f);
    }
    for (int i = 0; i < half; i++)
        assert_true(d.inv_freq_none[i] == 0.0f);
    /* rotating by the zero frequencies (cos 1, sin 0) leaves every value as it was, at any
     * position: the CUDA executor's NoPE layers rely on it */
    float x[256], y[256];
    for (int i = 0; i < c->head_dim; i++)
        x[i] = y[i] = (float)((i * 37 % 23) - 11) * 0.173f + (i == 5 ? 1e30f : 0);
    for (int32_t pos = 0; pos < 5000; pos += 499) {
        cellm_op_rope_scaled(y, c->rot_dims, d.inv_freq_none, 1.0f, pos);
        for (int i = 0; i < c->head_dim; i++)
            assert_true(y[i] == x[i]);
    }
    /* and a RoPE layer's frequencies do turn it */
    cellm_op_rope_scaled(y, c->rot_dims, d.layers[0].inv_freq, 1.0f, 7);
    int moved = 0;
    for (int i = 0; i < c->head_dim; i++)
        moved += y[i] != x[i];
    assert_true(moved > 0);
    cellm_desc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(smollm3_keys),
        cmocka_unit_test(olmo_keys),
        cmocka_unit_test(olmo_binding),
        cmocka_unit_test(nope_binding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
