/*
 * test_llama4.c: the Llama 4 text and Mistral 3 text pieces below the conformance fixtures
 * (docs/forward/llama4.md, docs/forward/ministral3.md): the config defaults that the
 * fixtures do not exercise (layer patterns from the intervals, Mistral 3's default yarn),
 * refusals by name, the query scales and key ranges by position, and the binding of both
 * Llama 4 expert layouts; the CUDA and XLA executors refuse both families by name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "exec/cpu/posenc.h"
#include "exec/xla/emit.h"
#include "model/hparams.h"
#include "model/model.h"

static enum cellm_status parse(const char *json, struct cellm_config *c, struct cellm_error *err)
{
    return cellm_config_parse(json, strlen(json), NULL, 0, "config.json", c, err);
}

/* Without no_rope_layers, moe_layers and layer_types: every 4th layer NoPE (full
 * attention), the rest chunked; MoE every interleave_moe_layer_step-th layer. */
static void llama4_defaults(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err = {{0}};
    assert_int_equal(parse("{\"model_type\": \"llama4_text\", \"num_hidden_layers\": 8, "
                           "\"interleave_moe_layer_step\": 2, \"attn_temperature_tuning\": 4, "
                           "\"intermediate_size\": 96, \"intermediate_size_mlp\": 128}",
                           &c, &err),
                     CELLM_OK);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(c.layer_nope[i], (i + 1) % 4 == 0);
        assert_int_equal(c.layer_chunked[i], (i + 1) % 4 != 0);
        assert_int_equal(c.layer_moe[i], i % 2 == 1);
    }
    assert_int_equal(c.ffn_dim, 128);
    assert_int_equal(c.moe_ffn_dim, 96);
    assert_int_equal(c.n_experts, 16);
    assert_int_equal(c.n_experts_used, 1);
    assert_int_equal(c.attn_chunk, 8192);
    assert_int_equal(c.attn_temp, 1); /* mlx-lm's int form */
    assert_int_equal(c.router, CELLM_ROUTER_SIGMOID_INPUT);
    assert_true(c.rope_interleaved && c.qk_l2norm && c.shared_expert && c.feed_forward);
    assert_int_equal(c.head_dim, 128);
    assert_float_equal(c.rope.theta, 500000, 0);
    assert_non_null(cellm_config_l4_pieces(&c));
    cellm_config_free(&c);

    /* explicit lists win; a null chunk size means no chunked layer; the wrapper nests */
    assert_int_equal(parse("{\"model_type\": \"llama4\", \"text_config\": {\"num_hidden_layers\": "
                           "3, \"no_rope_layers\": [0, 1, 1], \"moe_layers\": [0], "
                           "\"attention_chunk_size\": null, \"use_qk_norm\": false}}",
                           &c, &err),
                     CELLM_OK);
    assert_int_equal(c.layer_nope[0], 1);
    assert_int_equal(c.layer_nope[1] + c.layer_nope[2], 0);
    assert_int_equal(c.layer_moe[0] + 2 * c.layer_moe[1] + 4 * c.layer_moe[2], 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(c.layer_chunked[i], 0);
    assert_int_equal(c.qk_l2norm, 0);
    cellm_config_free(&c);
}

static void llama4_refusals(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err = {{0}};
    assert_int_equal(parse("{\"model_type\": \"llama4_text\", \"num_hidden_layers\": 4, "
                           "\"no_rope_layers\": [1, 1, 0]}",
                           &c, &err),
                     CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "no_rope_layers"));
    assert_int_equal(parse("{\"model_type\": \"llama4_text\", \"num_local_experts\": 2, "
                           "\"num_experts_per_tok\": 3}",
                           &c, &err),
                     CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "num_experts_per_tok"));
    assert_int_equal(parse("{\"model_type\": \"llama4_text\", \"num_hidden_layers\": 2, "
                           "\"layer_types\": [\"full_attention\", \"sliding_attention\"]}",
                           &c, &err),
                     CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "layer_types[1]"));
    assert_int_equal(parse("{\"model_type\": \"ministral3\", \"rope_parameters\": {\"rope_type\": "
                           "\"yarn\", \"factor\": 4, \"original_max_position_embeddings\": 64}}",
                           &c, &err),
                     CELLM_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "llama_4_scaling_beta"));
}

/* Ministral3Config's default rope_parameters: yarn 16 over 16384 with unit attention
 * factor, and the query scale over the same original length. */
static void ministral3_defaults(void **state)
{
    (void)state;
    struct cellm_config c;
    struct cellm_error err = {{0}};
    assert_int_equal(parse("{\"model_type\": \"mistral3\", \"text_config\": {}}", &c, &err),
                     CELLM_OK);
    assert_string_equal(c.model_type, "ministral3");
    assert_int_equal(c.rope.kind, CELLM_ROPE_YARN);
    assert_float_equal(c.rope.theta, 1e6, 0);
    assert_float_equal(c.rope.factor, 16, 0);
    assert_float_equal(c.rope.original_max_pos, 16384, 0);
    assert_float_equal(c.rope.attn_factor, 1, 0);
    assert_float_equal(c.qscale_beta, 0.1, 0);
    assert_float_equal(c.qscale_len, 16384, 0);
    assert_int_equal(c.n_layers, 34);
    assert_int_equal(c.window, 0);
    assert_int_equal(c.tie_embeddings, 0);
    /* Mistral 3's scale is a group of its own, so an executor can take it without Llama 4's */
    assert_null(cellm_config_l4_pieces(&c));
    assert_non_null(strstr(cellm_config_qscale_pieces(&c), "llama_4_scaling_beta"));
    assert_non_null(strstr(cellm_config_missing(&c, CELLM_PIECES_L4), "llama_4_scaling_beta"));
    assert_null(cellm_config_missing(&c, CELLM_PIECES_QSCALE));
    cellm_config_free(&c);
}

/* The scales step where the formulas floor: Mistral 3 at p = L0, 2 L0; Llama 4's
 * temperature at p + 1 = floor_scale, 2 floor_scale, on NoPE layers only. */
static void query_scales(void **state)
{
    (void)state;
    struct cellm_config c;
    memset(&c, 0, sizeof c);
    struct cellm_layer L;
    memset(&L, 0, sizeof L);
    c.qscale_beta = 0.1;
    c.qscale_len = 16;
    assert_true(cellm_query_scale(&c, &L, 0) == 1.0f);
    assert_true(cellm_query_scale(&c, &L, 15) == 1.0f);
    assert_float_equal(cellm_query_scale(&c, &L, 16), 1 + 0.1 * log(2), 1e-6);
    assert_float_equal(cellm_query_scale(&c, &L, 31), 1 + 0.1 * log(2), 1e-6);
    assert_float_equal(cellm_query_scale(&c, &L, 32), 1 + 0.1 * log(3), 1e-6);
    memset(&c, 0, sizeof c);
    c.attn_temp = 1;
    c.temp_floor = 8;
    c.temp_scale = 0.1;
    assert_true(cellm_query_scale(&c, &L, 40) == 1.0f); /* a RoPE layer */
    L.nope = 1;
    assert_true(cellm_query_scale(&c, &L, 6) == 1.0f);
    assert_float_equal(cellm_query_scale(&c, &L, 7), 1 + 0.1 * log(2), 1e-6);
    assert_float_equal(cellm_query_scale(&c, &L, 23), 1 + 0.1 * log(4), 1e-6);
}

/* Chunked layers see their own chunk, sliding ones their window, full ones everything. */
static void key_ranges(void **state)
{
    (void)state;
    struct cellm_config c;
    memset(&c, 0, sizeof c);
    c.attn_chunk = 16;
    c.window = 4;
    struct cellm_layer L;
    memset(&L, 0, sizeof L);
    L.attn = CELLM_ATTN_CHUNKED;
    assert_int_equal(cellm_attn_first_key(&c, &L, 0), 0);
    assert_int_equal(cellm_attn_first_key(&c, &L, 15), 0);
    assert_int_equal(cellm_attn_first_key(&c, &L, 16), 16);
    assert_int_equal(cellm_attn_first_key(&c, &L, 39), 32);
    L.attn = CELLM_ATTN_SLIDING;
    assert_int_equal(cellm_attn_first_key(&c, &L, 39), 36);
    L.attn = CELLM_ATTN_FULL;
    assert_int_equal(cellm_attn_first_key(&c, &L, 39), 0);
}

/* Interleaved RoPE rotates the pairs (2j, 2j+1); the weightless norm follows it on RoPE
 * layers; NoPE layers get only the query scale. */
static void head_steps(void **state)
{
    (void)state;
    struct cellm_config c;
    memset(&c, 0, sizeof c);
    c.head_dim = c.rot_dims = 4;
    c.rope_interleaved = 1;
    c.norm_eps = 1e-5;
    struct cellm_layer L;
    memset(&L, 0, sizeof L);
    L.head_dim = L.rot_dims = 4; /* the layer's geometry (cellm_layer_geometry) */
    L.rope_attn = 1;
    const float inv[2] = {1.0f, 0.5f};
    float x[4] = {1, 0, 0, 2};
    cellm_op_head_pos(&c, &L, x, inv, 1, 1.0f);
    assert_float_equal(x[0], cosf(1), 1e-7);
    assert_float_equal(x[1], sinf(1), 1e-7);
    assert_float_equal(x[2], -2 * sinf(0.5f), 1e-7);
    assert_float_equal(x[3], 2 * cosf(0.5f), 1e-7);
    c.qk_l2norm = 1;
    float y[4] = {3, 0, 0, 4};
    cellm_op_head_pos(&c, &L, y, inv, 0, 1.0f);
    double ss = 0;
    for (int i = 0; i < 4; i++)
        ss += (double)y[i] * y[i];
    assert_float_equal(ss / 4, 1.0, 1e-4); /* mean square 1 after the norm */
    L.nope = 1;
    float z[4] = {1, 2, 3, 4};
    cellm_op_head_pos(&c, &L, z, inv, 9, 2.0f);
    for (int i = 0; i < 4; i++)
        assert_true(z[i] == 2.0f * (float)(i + 1));
}

/* Both expert layouts of the fixtures: transformers' [E, in, out] parameters transposed at
 * load (gate the first I columns of gate_up_proj), mlx-lm's stacked split tensors. */
static void llama4_layouts(void **state)
{
    (void)state;
    const char *vars[2] = {"f32", "q4-g32-bf16"};
    for (int v = 0; v < 2; v++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/llama4/%s", CELLM_FIXTURES, vars[v]);
        struct cellm_desc d;
        struct cellm_error err = {{0}};
        enum cellm_status st = cellm_desc_load(dir, &d, &err);
        if (st) fprintf(stderr, "%s\n", err.msg);
        assert_int_equal(st, CELLM_OK);
        assert_int_equal(d.experts, v ? CELLM_EXPERTS_STACKED_OSS : CELLM_EXPERTS_FUSED_IN_OUT);
        for (int l = 0; l < 3; l++) {
            assert_int_equal(d.layers[l].attn, CELLM_ATTN_CHUNKED);
            assert_false(d.layers[l].nope || d.layers[l].moe);
            assert_int_equal(d.layers[l].w_gate.rows, 128);
        }
        const struct cellm_layer *L = &d.layers[3];
        assert_int_equal(L->attn, CELLM_ATTN_FULL);
        assert_true(L->nope && L->moe);
        assert_int_equal(L->e_gate[3].rows, 96);
        assert_int_equal(L->e_gate[3].cols, 64);
        assert_int_equal(L->e_down[3].rows, 64);
        assert_int_equal(L->s_down.cols, 96);
        assert_int_equal(L->router.rows, 4);
        if (!v) { /* gate row r of expert e is column r of the stored [e][64][192] */
            const struct cellm_ckpt_entry *g =
                cellm_ckpt_find(&d.ckpt, "model.layers.3.feed_forward.experts.gate_up_proj");
            assert_non_null(g);
            const uint8_t *raw = g->t->data; /* read with memcpy: maybe unaligned */
            const float *gate = (const float *)L->e_gate[2].data,
                        *up = (const float *)L->e_up[2].data;
            for (int r = 0; r < 96; r += 19)
                for (int i = 0; i < 64; i += 7) {
                    float rg, ru;
                    memcpy(&rg, raw + 4 * ((size_t)(2 * 64 + i) * 192 + r), 4);
                    memcpy(&ru, raw + 4 * ((size_t)(2 * 64 + i) * 192 + 96 + r), 4);
                    assert_true(gate[r * 64 + i] == rg);
                    assert_true(up[r * 64 + i] == ru);
                }
        }
        cellm_desc_free(&d);
    }
}

/* The XLA executor takes both fixtures (test_xla_families runs them); an executor without
 * the group is refused by name and told the way out (cellm_config_l4_pieces). */
static void xla_takes_l4(void **state)
{
    (void)state;
    const char *fams[2] = {"llama4", "ministral3"};
    const char *piece[2] = {"chunked attention", "llama_4_scaling_beta"};
    for (int f = 0; f < 2; f++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s/bf16", CELLM_FIXTURES, fams[f]);
        struct cellm_desc d;
        struct cellm_error err = {{0}};
        assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
        const char *missing = cellm_config_missing(&d.cfg, CELLM_PIECES_GPT_OSS);
        assert_non_null(missing);
        assert_non_null(strstr(missing, piece[f]));
        assert_null(cellm_config_missing(&d.cfg, CELLM_PIECES_L4 | CELLM_PIECES_QSCALE));
        assert_int_equal(cellm_xla_supported(&d, &err), CELLM_OK);
        cellm_desc_free(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama4_defaults),     cmocka_unit_test(llama4_refusals),
        cmocka_unit_test(ministral3_defaults), cmocka_unit_test(query_scales),
        cmocka_unit_test(key_ranges),          cmocka_unit_test(head_steps),
        cmocka_unit_test(llama4_layouts),      cmocka_unit_test(xla_takes_l4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
