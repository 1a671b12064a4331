/*
 * test_gpt_oss.c: the gpt-oss pieces below the conformance fixtures
 * (docs/forward/gpt-oss.md): the sink softmax and the clamped SwiGLU of the CPU executor,
 * and the binding of the Hugging Face float layout, whose experts are stored as
 * transformers' [E, in, out] parameters and are transposed once at load, with their
 * interleaved gate/up rows and per-expert biases; a wrong shape is refused by name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "exec/cpu/ops.h"
#include "model/model.h"
#include "st_util.h"

/* The sink joins the max and the sum, gets no weight: the row is the first n of the
 * softmax over the n + 1 logits, and sums to 1 - that softmax's last weight. */
static void sink_softmax(void **state)
{
    (void)state;
    const float in[5] = {0.5f, -1.25f, 3.0f, 2.0f, -0.75f};
    for (int k = 0; k < 3; k++) {
        float sink = k == 0 ? 4.0f : k == 1 ? -2.5f : 1.0f; /* above, below, inside the max */
        float x[5], wide[6];
        memcpy(x, in, sizeof x);
        memcpy(wide, in, sizeof in);
        wide[5] = sink;
        cellm_op_softmax_sink(x, 5, sink);
        cellm_op_softmax(wide, 6);
        double sum = 0;
        for (int i = 0; i < 5; i++) {
            assert_float_equal(x[i], wide[i], 1e-7f * wide[i] + 1e-12f);
            sum += x[i];
        }
        assert_true(sum < 1.0);
        assert_float_equal(sum, 1.0 - wide[5], 1e-6);
    }
    /* a sink far below the scores leaves the plain softmax */
    float x[3] = {1, 2, 3}, y[3] = {1, 2, 3};
    cellm_op_softmax_sink(x, 3, -1e30f);
    cellm_op_softmax(y, 3);
    assert_memory_equal(x, y, sizeof x);
}

static float ref_swiglu(float g, float u, float alpha, float limit)
{
    g = fminf(g, limit);
    u = fmaxf(fminf(u, limit), -limit);
    float glu = g * (1.0f / (1.0f + expf(-(g * alpha))));
    return (u + 1.0f) * glu;
}

/* gate clamped above only, up on both sides, (up + 1) * gate * sigmoid(alpha * gate);
 * stride 2 reads interleaved gate_up rows. */
static void clamped_swiglu(void **state)
{
    (void)state;
    const float alpha = 1.702f, limit = 7.0f;
    /* gate, up pairs interleaved */
    const float gu[10] = {10.0f, 9.0f, -10.0f, -9.0f, 0.5f, -0.25f, 6.9f, 7.5f, -3.0f, 0.0f};
    float out[5], sep_g[5], sep_u[5];
    cellm_op_swiglu_clamp(gu, gu + 1, 2, out, 5, alpha, limit);
    for (int i = 0; i < 5; i++) {
        sep_g[i] = gu[2 * i];
        sep_u[i] = gu[2 * i + 1];
        assert_true(out[i] == ref_swiglu(gu[2 * i], gu[2 * i + 1], alpha, limit));
    }
    /* gate 10 -> 7 and up 9 -> 7: 8 * 7 * sigmoid(11.914) */
    assert_float_equal(out[0], 8.0f * 7.0f / (1.0f + expf(-7.0f * alpha)), 1e-5f);
    /* gate -10 stays -10 (no lower clamp), up -9 -> -7 */
    assert_float_equal(out[1], -6.0f * -10.0f / (1.0f + expf(10.0f * alpha)), 1e-9f);
    assert_true(out[1] > 0);
    /* separate rows (stride 1, in place) give the same */
    cellm_op_swiglu_clamp(sep_g, sep_u, 1, sep_g, 5, alpha, limit);
    assert_memory_equal(sep_g, out, sizeof out);
}

enum { V = 8, H = 32, I = 16, E = 2, NH = 2, HD = 16 };

static float val(int t, size_t i)
{
    return (float)((int)((i * 7 + (size_t)t * 13) % 31) - 15) / 16.0f;
}

/* A one-layer gpt-oss checkpoint in the Hugging Face F32 layout; gate_up is [E, gu_in, 2I]
 * (gu_in = H, or a wrong value). */
static int write_ckpt(const char *dir, int gu_in, float **bufs)
{
    struct {
        const char *name;
        int ndim;
        int64_t s[3];
    } spec[] = {
        {"model.embed_tokens.weight", 2, {V, H}},
        {"lm_head.weight", 2, {V, H}},
        {"model.norm.weight", 1, {H}},
        {"model.layers.0.input_layernorm.weight", 1, {H}},
        {"model.layers.0.post_attention_layernorm.weight", 1, {H}},
        {"model.layers.0.self_attn.q_proj.weight", 2, {NH * HD, H}},
        {"model.layers.0.self_attn.q_proj.bias", 1, {NH * HD}},
        {"model.layers.0.self_attn.k_proj.weight", 2, {HD, H}},
        {"model.layers.0.self_attn.k_proj.bias", 1, {HD}},
        {"model.layers.0.self_attn.v_proj.weight", 2, {HD, H}},
        {"model.layers.0.self_attn.v_proj.bias", 1, {HD}},
        {"model.layers.0.self_attn.o_proj.weight", 2, {H, NH * HD}},
        {"model.layers.0.self_attn.o_proj.bias", 1, {H}},
        {"model.layers.0.self_attn.sinks", 1, {NH}},
        {"model.layers.0.mlp.router.weight", 2, {E, H}},
        {"model.layers.0.mlp.router.bias", 1, {E}},
        {"model.layers.0.mlp.experts.gate_up_proj", 3, {E, gu_in, 2 * I}},
        {"model.layers.0.mlp.experts.gate_up_proj_bias", 2, {E, 2 * I}},
        {"model.layers.0.mlp.experts.down_proj", 3, {E, I, H}},
        {"model.layers.0.mlp.experts.down_proj_bias", 2, {E, H}},
    };
    int n = (int)(sizeof spec / sizeof spec[0]);
    struct tst_tensor t[20];
    memset(t, 0, sizeof t);
    for (int k = 0; k < n; k++) {
        snprintf(t[k].name, sizeof t[k].name, "%s", spec[k].name);
        snprintf(t[k].dtype, sizeof t[k].dtype, "F32");
        t[k].ndim = spec[k].ndim;
        size_t count = 1;
        for (int d = 0; d < spec[k].ndim; d++)
            count *= (size_t)(t[k].shape[d] = spec[k].s[d]);
        bufs[k] = malloc(count * sizeof(float));
        if (!bufs[k]) return 0;
        for (size_t i = 0; i < count; i++)
            bufs[k][i] = val(k, i);
        t[k].data = bufs[k];
        t[k].nbytes = count * sizeof(float);
    }
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    char cfg[600];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"gpt_oss\",\"vocab_size\":%d,\"hidden_size\":%d,"
             "\"intermediate_size\":%d,\"num_hidden_layers\":1,\"num_attention_heads\":%d,"
             "\"num_key_value_heads\":1,\"head_dim\":%d,\"num_local_experts\":%d,"
             "\"num_experts_per_tok\":1,\"sliding_window\":4,\"eos_token_id\":1}",
             V, H, I, NH, HD, E);
    return tst_st_write(path, t, n) && tst_write_str(dir, "config.json", cfg);
}

static void hf_float_layout(void **state)
{
    (void)state;
    char dir[256];
    assert_true(tst_mkdtemp(dir, sizeof dir));
    float *bufs[20] = {0};
    assert_true(write_ckpt(dir, H, bufs));
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(dir, &d, &err)) fail_msg("%s", err.msg);
    assert_int_equal(d.experts, CELLM_EXPERTS_INTERLEAVED);
    const struct cellm_layer *L = &d.layers[0];
    assert_int_equal(L->attn, CELLM_ATTN_SLIDING); /* layer 0 of the class default */
    assert_int_equal(L->sinks.n, NH);
    assert_true(cellm_vec_at(&L->sinks, 1) == bufs[13][1]);
    assert_true(cellm_vec_at(&L->router_b, 1) == bufs[15][1]);
    assert_null(L->e_gate); /* gate and up stay interleaved in e_gate_up */
    float row[H > I ? H : I];
    for (int e = 0; e < E; e++) {
        /* gate_up row r of expert e is column r of the stored [H][2I] */
        assert_int_equal(L->e_gate_up[e].rows, 2 * I);
        assert_int_equal(L->e_gate_up[e].cols, H);
        for (int r = 0; r < 2 * I; r++) {
            cellm_weight_row(&L->e_gate_up[e], r, row);
            for (int c = 0; c < H; c++)
                assert_true(row[c] == bufs[16][(size_t)e * H * 2 * I + (size_t)c * 2 * I + r]);
        }
        for (int r = 0; r < H; r++) {
            cellm_weight_row(&L->e_down[e], r, row);
            for (int c = 0; c < I; c++)
                assert_true(row[c] == bufs[18][(size_t)e * I * H + (size_t)c * H + r]);
        }
        for (int i = 0; i < 2 * I; i++)
            assert_true(cellm_vec_at(&L->e_gate_up_b[e], i) == bufs[17][e * 2 * I + i]);
        for (int i = 0; i < H; i++)
            assert_true(cellm_vec_at(&L->e_down_b[e], i) == bufs[19][e * H + i]);
    }
    assert_non_null(cellm_config_gpt_oss_pieces(&d.cfg));
    cellm_desc_free(&d);
    for (int k = 0; k < 20; k++)
        free(bufs[k]);
    tst_rm_rf(dir);

    /* gate_up stored with the wrong input width: refused by name and expected shape */
    assert_true(tst_mkdtemp(dir, sizeof dir));
    memset(bufs, 0, sizeof bufs);
    assert_true(write_ckpt(dir, H / 2, bufs));
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_ERR_FORMAT);
    if (!strstr(err.msg, "model.layers.0.mlp.experts.gate_up_proj") ||
        !strstr(err.msg, "[E, 32, 32]") || !strstr(err.msg, "[experts, in, out]"))
        fail_msg("unexpected message: %s", err.msg);
    for (int k = 0; k < 20; k++)
        free(bufs[k]);
    tst_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sink_softmax),
        cmocka_unit_test(clamped_swiglu),
        cmocka_unit_test(hf_float_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
