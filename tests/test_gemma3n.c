/*
 * test_gemma3n.c: the Gemma 3n pieces below the conformance fixtures
 * (docs/forward/gemma3n.md): the config keys and transformers' defaults that the fixture
 * does not exercise (the multimodal wrapper, per-layer intermediate_size, the default
 * sparsity pattern, altup_coef_clip null), refusals by name, the standard-normal quantile of
 * the activation cut against torch's float32 values, the cut itself, the norm that divides
 * by the root, and that CUDA refuses the family by name (XLA runs it: test_xla_families).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exec/cpu/altup.h"
#include "exec/cpu/ops.h"
#include "exec/xla/emit.h"
#include "model/gemma3n.h"
#include "model/hparams.h"
#include "model/model.h"

static enum cellm_status parse(const char *json, struct cellm_config *c, struct cellm_error *err)
{
    return cellm_config_parse(json, strlen(json), NULL, 0, "config.json", c, err);
}

static void parse_fails(const char *json, enum cellm_status want, const char *words)
{
    struct cellm_config c;
    struct cellm_error err = {{0}};
    enum cellm_status st = parse(json, &c, &err);
    if (st == CELLM_OK) cellm_config_free(&c);
    assert_int_equal(st, want);
    if (!strstr(err.msg, words)) fail_msg("'%s' does not name '%s'", err.msg, words);
}

/* The fixture's config: 5 layers, KV sharing of the last 2, sparsity on layer 0. */
static void fixture_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err = {{0}};
    char dir[512];
    snprintf(dir, sizeof dir, "%s/gemma3n/f32", CELLM_FIXTURES);
    assert_int_equal(cellm_config_load(dir, &c, &err), CELLM_OK);
    assert_true(c.gemma3n && c.attn_scale == 1.0 && c.norm == CELLM_NORM_RMS_DIV);
    assert_true(c.altup_n == 4 && c.altup_active == 0 && c.altup_clip == 120.0);
    assert_true(c.altup_correct_scale && c.laurel_rank == 32 && c.ple_dim == 32);
    assert_true(c.ple_vocab == 256 && c.n_kv_shared == 2 && c.final_softcap == 30.0);
    assert_true(c.layer_sparsity[0] == 0.95f && c.layer_sparsity[1] == 0.0f);
    assert_true(c.rope.theta == 1e6 && c.rope_local.theta == 10000 && c.window == 8);
    static const uint8_t slide[5] = {1, 1, 0, 1, 0};
    assert_memory_equal(c.layer_sliding, slide, 5);
    /* the shared layers read the last earlier layer of their kind */
    struct cellm_layer L;
    cellm_layer_geometry(&c, 3, &L);
    assert_int_equal(L.kv_src, 1);
    cellm_layer_geometry(&c, 4, &L);
    assert_int_equal(L.kv_src, 2);
    cellm_layer_geometry(&c, 2, &L);
    assert_int_equal(L.kv_src, 2);
    assert_int_equal(L.head_dim, 16); /* no per-kind head size, unlike Gemma 4 */
    /* CUDA implements every other group; it refuses Gemma 3n by name */
    const char *miss = cellm_config_missing(&c, ~CELLM_PIECES_GEMMA3N);
    assert_non_null(miss);
    assert_non_null(strstr(miss, "Gemma 3n"));
    assert_null(cellm_config_missing(&c, ~0u));
    cellm_config_free(&c);
}

/* Gemma3nTextConfig's defaults through the wrapper; intermediate_size as a list. */
static void wrapper_defaults(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err = {{0}};
    char json[1024];
    int k = snprintf(json, sizeof json,
                     "{\"model_type\":\"gemma3n\",\"text_config\":{\"num_hidden_layers\":20,"
                     "\"altup_coef_clip\":null,\"intermediate_size\":[");
    for (int i = 0; i < 20; i++)
        k += snprintf(json + k, sizeof json - (size_t)k, "%s8192", i ? "," : "");
    snprintf(json + k, sizeof json - (size_t)k, "]}}");
    assert_int_equal(parse(json, &c, &err), CELLM_OK);
    assert_string_equal(c.model_type, "gemma3n_text");
    assert_true(c.ffn_dim == 8192 && c.dim == 2048 && c.head_dim == 256 && c.n_kv_heads == 2);
    assert_true(c.ple_dim == 256 && c.ple_vocab == 262144 && c.n_kv_shared == 15);
    assert_true(c.altup_clip == 0 && c.laurel_rank == 64 && c.vocab == 262400);
    assert_true(c.window == 512 && c.layer_sliding[3] && !c.layer_sliding[4] &&
                !c.layer_sliding[9]);
    /* 0.95 on the first 10 layers when there are more than 10 */
    assert_true(c.layer_sparsity[9] == 0.95f && c.layer_sparsity[10] == 0.0f);
    assert_true(c.tie_embeddings && c.bos == 2 && c.eos[0] == 1);
    cellm_config_free(&c);
    /* at most 10 layers: no sparsity */
    assert_int_equal(parse("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":10,"
                           "\"num_kv_shared_layers\":4}",
                           &c, &err),
                     CELLM_OK);
    for (int i = 0; i < 10; i++)
        assert_true(c.layer_sparsity[i] == 0.0f);
    cellm_config_free(&c);
}

static void refusals(void **state)
{
    (void)state;
    /* the XLA executor takes the bound model (emit_g3n.c; test_xla_families runs it) */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/gemma3n/q4-g32-bf16", CELLM_FIXTURES);
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    assert_true(d.altup_proj && d.altup_unembed && d.layers[3].wk.fmt == CELLM_W_NONE);
    assert_int_equal(cellm_xla_supported(&d, &err), CELLM_OK);
    cellm_desc_free(&d);
    parse_fails("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":2,"
                "\"intermediate_size\":[64,128]}",
                CELLM_ERR_UNSUPPORTED, "intermediate_size[1]");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":2,"
                "\"intermediate_size\":[64]}",
                CELLM_ERR_FORMAT, "one per layer");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":2,"
                "\"num_kv_shared_layers\":0,\"activation_sparsity_pattern\":[0.5]}",
                CELLM_ERR_FORMAT, "activation_sparsity_pattern");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":2,"
                "\"num_kv_shared_layers\":0,\"activation_sparsity_pattern\":[0.5,1.0]}",
                CELLM_ERR_FORMAT, "activation_sparsity_pattern[1]");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"altup_active_idx\":4}", CELLM_ERR_FORMAT,
                "altup_active_idx");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"num_hidden_layers\":4,"
                "\"num_kv_shared_layers\":4}",
                CELLM_ERR_FORMAT, "num_kv_shared_layers");
    parse_fails("{\"model_type\":\"gemma3n_text\",\"altup_coef_clip\":-1}", CELLM_ERR_FORMAT,
                "altup_coef_clip");
}

/* Normal(0, 1).icdf in float32: torch gives 1.6448536 for 0.95 (the fixture's value); the
 * others against the true quantile within an f32 rounding or two */
static void std_multiplier(void **state)
{
    (void)state;
    assert_true(cellm_gemma3n_std_multiplier(0.95f) == 1.6448536f);
    assert_true(cellm_gemma3n_std_multiplier(0.5f) == 0.0f);
    assert_true(fabsf(cellm_gemma3n_std_multiplier(0.75f) - 0.67448975f) < 2e-7f);
    /* fl(0.99) is 0.99000001: the quantile moves by 3.6e-7 in this tail */
    assert_true(fabsf(cellm_gemma3n_std_multiplier(0.99f) - 2.3263479f) < 1e-6f);
}

/* relu(g - (mean + std * z)), biased std: {0..7} has mean 3.5, std sqrt(5.25) */
static void sparsify(void **state)
{
    (void)state;
    float g[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    cellm_cpu_g3n_sparsify(g, 8, 1.0f);
    float cut = 3.5f + (float)sqrt(5.25);
    for (int i = 0; i < 6; i++)
        assert_true(g[i] == 0.0f);
    assert_true(g[6] == 6.0f - cut && g[7] == 7.0f - cut && g[6] > 0);
}

/* x / sqrt(mean(x^2) + eps) * w, and without a weight (the v norm) */
static void dividing_norm(void **state)
{
    (void)state;
    float x[2] = {3, 4}, y[2];
    float wd[2] = {2, 1};
    struct cellm_vec w = {CELLM_W_F32, 2, (const uint8_t *)wd}, none = {CELLM_W_NONE, 0, NULL};
    float root = sqrtf(12.5f + 1e-6f);
    cellm_op_norm(CELLM_NORM_RMS_DIV, 1e-6f, &w, NULL, x, y, 2);
    assert_true(y[0] == (3.0f / root) * 2.0f && y[1] == 4.0f / root);
    cellm_op_norm(CELLM_NORM_RMS_DIV, 1e-6f, &none, NULL, x, y, 2);
    assert_true(y[0] == 3.0f / root && y[1] == 4.0f / root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fixture_keys), cmocka_unit_test(wrapper_defaults),
        cmocka_unit_test(refusals),     cmocka_unit_test(std_multiplier),
        cmocka_unit_test(sparsify),     cmocka_unit_test(dividing_norm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
