/*
 * test_xla_emit.c: structural tests of the StableHLO emitter (no PJRT plugin needed).
 *
 * For one fixture of each family the prefill and decode modules must declare every
 * weight in its stored type and shape, the runtime inputs and the donated KV caches,
 * and contain the expected ops: one dot_general per projection (q, k, v, o, gate, up,
 * down, head; router and three stacked expert dots for MoE; two attention dots per
 * layer), all at precision HIGHEST, the window mask on sliding layers, the soft-cap
 * tanh where configured, the top-k rounds of MoE routing, affine unpacking for
 * quantized weights and converts for 16-bit ones. Also: `--device xla` without a
 * plugin fails with a message that says how to point at one.
 *
 * With CELLM_XLA_DUMP=DIR set, the modules are also written there for reading.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "exec/xla/emit.h"
#include "exec/xla/pjrt.h"
#include "model/model.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

struct mod {
    struct cellm_desc d;
    struct cellm_xla_plan plan;
    char *prefill, *decode;
};

static void dump(const char *fixture, const char *kind, const char *text)
{
    const char *dir = getenv("CELLM_XLA_DUMP");
    if (!dir) return;
    char path[1024], name[256];
    snprintf(name, sizeof name, "%s", fixture);
    for (char *p = name; *p; p++)
        if (*p == '/') *p = '_';
    snprintf(path, sizeof path, "%s/%s.%s.mlir", dir, name, kind);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void load_opt(const char *fixture, int dequant_at_load, struct mod *m)
{
    char dir[1024];
    struct cellm_error err = {{0}};
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, fixture);
    memset(m, 0, sizeof *m);
    if (cellm_desc_load(dir, &m->d, &err)) fail_msg("%s: %s", fixture, err.msg);
    if (cellm_xla_plan_build(&m->d, dequant_at_load, &m->plan, &err))
        fail_msg("%s: %s", fixture, err.msg);
    struct cellm_xla_key kp = {16, 256, 1}, kd = {1, 256, 0};
    size_t len;
    if (cellm_xla_emit(&m->d, &m->plan, &kp, &m->prefill, &len, &err))
        fail_msg("%s: prefill: %s", fixture, err.msg);
    assert_int_equal(strlen(m->prefill), len);
    if (cellm_xla_emit(&m->d, &m->plan, &kd, &m->decode, &len, &err))
        fail_msg("%s: decode: %s", fixture, err.msg);
    dump(fixture, "prefill", m->prefill);
    dump(fixture, "decode", m->decode);
}

static void load(const char *fixture, struct mod *m)
{
    load_opt(fixture, 0, m);
}

static void unload(struct mod *m)
{
    cellm_free(m->prefill);
    cellm_free(m->decode);
    cellm_xla_plan_free(&m->plan);
    cellm_desc_free(&m->d);
}

/* "%name: tensor<...>" must be declared in the signature. */
static void has_param(const char *text, const char *name, const char *type)
{
    char pat[256];
    snprintf(pat, sizeof pat, "%%%s: %s", name, type);
    if (!strstr(text, pat)) fail_msg("parameter \"%s\" not declared", pat);
}

/* Checks common to every family. */
static void common(struct mod *m)
{
    const struct cellm_config *c = &m->d.cfg;
    char t[128];
    int L = c->n_layers;
    for (int pass = 0; pass < 2; pass++) {
        const char *s = pass ? m->decode : m->prefill;
        int T = pass ? 1 : 16;
        assert_non_null(strstr(s, "func.func public @main("));
        snprintf(t, sizeof t, "tensor<%dxi32>", T);
        has_param(s, "tokens", t);
        has_param(s, "pos0", "tensor<i32>");
        if (pass)
            has_param(s, "last", "tensor<i32>");
        else
            assert_null(strstr(s, "%last:"));
        snprintf(t, sizeof t, "tensor<%dx%dxf32>", T, c->rot_dims / 2);
        has_param(s, "cos_g", t);
        for (int l = 0; l < L; l++) {
            char n[32];
            snprintf(t, sizeof t, "tensor<256x%dx%dxf32> {tf.aliasing_output = %d : i32}",
                     c->n_kv_heads, c->head_dim, 1 + 2 * l);
            snprintf(n, sizeof n, "k_%d", l);
            has_param(s, n, t);
        }
        /* every weight of the plan is declared in its stored type */
        for (int i = 0; i < m->plan.n; i++) {
            const struct cellm_xla_wparam *w = &m->plan.w[i];
            char ty[96];
            size_t o = (size_t)snprintf(ty, sizeof ty, "tensor<");
            for (int r = 0; r < w->rank; r++)
                o += (size_t)snprintf(ty + o, sizeof ty - o, "%lldx", (long long)w->d[r]);
            snprintf(ty + o, sizeof ty - o, "%s>", cellm_xh_ty_name(w->ty));
            has_param(s, w->name, ty);
        }
        /* one dot per projection, two per attention, all f32 HIGHEST */
        int dense = 0, moe = 0;
        for (int l = 0; l < L; l++)
            moe += m->d.layers[l].moe, dense += !m->d.layers[l].moe;
        int dots = L * (4 + 2) + dense * 3 + moe * 4 + 1;
        assert_int_equal(count(s, "stablehlo.dot_general"), dots);
        assert_int_equal(count(s, "precision = [HIGHEST, HIGHEST]"), dots);
        assert_int_equal(count(s, "stablehlo.dynamic_update_slice"), 2 * L);
        snprintf(t, sizeof t, "-> tensor<%dx%dxf32>", pass ? 1 : 16, c->vocab);
        assert_non_null(strstr(s, t));
        /* weights in 16-bit formats are converted in the graph */
        for (int i = 0; i < m->plan.n; i++)
            if (m->plan.w[i].ty == XH_BF16 || m->plan.w[i].ty == XH_F16) {
                snprintf(t, sizeof t, "stablehlo.convert %%%s :", m->plan.w[i].name);
                if (!strstr(s, t) && strncmp(m->plan.w[i].name, "embed", 5))
                    fail_msg("%s is not converted in the graph", m->plan.w[i].name);
            }
        /* causal mask */
        assert_true(count(s, "stablehlo.compare LE") >= 1);
        int sliding = 0;
        for (int l = 0; l < L; l++)
            sliding += m->d.layers[l].attn == CELLM_ATTN_SLIDING;
        assert_int_equal(count(s, "stablehlo.compare GT") >= 1, sliding > 0 && c->window > 0);
        int tanh_n = count(s, "stablehlo.tanh");
        int want_tanh = (c->attn_softcap > 0) * L + (c->final_softcap > 0) +
                        (c->act == CELLM_ACT_GELU_TANH) * dense;
        assert_int_equal(tanh_n, want_tanh);
    }
}

static void check_affine(struct mod *m, int want)
{
    int codes = 0;
    for (int i = 0; i < m->plan.n; i++)
        codes += m->plan.w[i].ty == XH_U32;
    if (want)
        assert_true(codes > 0);
    else
        assert_int_equal(codes, 0);
    if (codes) assert_true(count(m->prefill, "stablehlo.shift_right_logical") >= codes);
}

#define FIXTURE_TEST(fn, path, body)                                                               \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        struct mod m;                                                                              \
        load(path, &m);                                                                            \
        common(&m);                                                                                \
        body;                                                                                      \
        unload(&m);                                                                                \
    }

FIXTURE_TEST(t_llama_bf16, "llama3-untied/bf16", {
    check_affine(&m, 0);
    has_param(m.prefill, "head", "tensor<384x64xbf16>");
})
FIXTURE_TEST(t_llama_q4, "llama3-untied/q4-g64-f16", check_affine(&m, 1))
FIXTURE_TEST(t_llama_q3, "llama3-untied/q3-g64-bf16", {
    check_affine(&m, 1);
    assert_true(count(m.prefill, "stablehlo.shift_left") > 0); /* straddling codes */
})
FIXTURE_TEST(t_llama_mixed, "llama3-untied/q4-g64-f16-mixed", check_affine(&m, 1))
FIXTURE_TEST(t_llama_tied_q8, "llama-tied/q8-g32-f16", {
    check_affine(&m, 1);
    assert_int_equal(cellm_xla_plan_find(&m.plan, "head_q"), -1);
})
FIXTURE_TEST(t_llama_wide, "llama-wide/q4-g128-bf16", check_affine(&m, 1))
FIXTURE_TEST(t_mistral, "mistral/bf16", check_affine(&m, 0))
FIXTURE_TEST(t_qwen2, "qwen2/bf16", {
    has_param(m.prefill, "l0_bq", "tensor<64xbf16>");
    has_param(m.prefill, "l1_bv", "tensor<");
})
FIXTURE_TEST(t_qwen3, "qwen3/bf16", {
    has_param(m.prefill, "l0_q_norm", "tensor<");
    has_param(m.prefill, "l0_k_norm", "tensor<");
})
FIXTURE_TEST(t_qwen3_f32, "qwen3/f32", check_affine(&m, 0))
FIXTURE_TEST(t_gemma2, "gemma2/bf16", {
    has_param(m.prefill, "l0_post_ffn_norm", "tensor<64xbf16>");
    assert_true(m.d.cfg.attn_softcap > 0 && m.d.cfg.final_softcap > 0);
})
FIXTURE_TEST(t_gemma2_q4, "gemma2/q4-g64-bf16", check_affine(&m, 1))
FIXTURE_TEST(t_gemma3, "gemma3/bf16", {
    assert_non_null(strstr(m.prefill, "%cos_l: tensor<16x"));
    assert_non_null(strstr(m.decode, "%sin_l: tensor<1x"));
})
FIXTURE_TEST(t_gemma3_q8, "gemma3/q8-g64-bf16", check_affine(&m, 1))
FIXTURE_TEST(t_phi3, "phi3/bf16", {
    /* fused qkv and gate_up: row views of one tensor, each its own parameter */
    has_param(m.prefill, "l0_wq", "tensor<");
    has_param(m.prefill, "l0_wv", "tensor<");
    has_param(m.prefill, "l0_w_gate", "tensor<");
})
FIXTURE_TEST(t_phi3_q4, "phi3/q4-g64-f16", check_affine(&m, 1))
FIXTURE_TEST(t_stablelm, "stablelm2/bf16", {
    has_param(m.prefill, "l0_attn_norm_b", "tensor<64x");
    /* partial rotary: the untouched dims are sliced off and concatenated back */
    assert_true(m.d.cfg.rot_dims < m.d.cfg.head_dim);
    assert_true(count(m.prefill, "stablehlo.concatenate") >= 2 * m.d.cfg.n_layers);
})
FIXTURE_TEST(t_stablelm_q8, "stablelm2/q8-g64-f16", check_affine(&m, 1))
FIXTURE_TEST(t_qwen3_moe, "qwen3-moe/bf16", {
    const struct cellm_config *c = &m.d.cfg;
    char t[96];
    snprintf(t, sizeof t, "tensor<%dx%dx%dxbf16>", c->n_experts, c->moe_ffn_dim, c->dim);
    has_param(m.prefill, "l0_e_gate", t);
    /* top-k: per round one max and one min-index reduction over the experts */
    assert_true(count(m.prefill, "applies stablehlo.minimum") >= c->n_experts_used * c->n_layers);
    /* routing probabilities are materialised once (exact equality tests in top-k) */
    assert_int_equal(count(m.prefill, "stablehlo.optimization_barrier"), c->n_layers);
})
FIXTURE_TEST(t_qwen3_moe_q4, "qwen3-moe/q4-g64-bf16-stacked", check_affine(&m, 1))
FIXTURE_TEST(t_smollm3, "smollm3/bf16", {
    /* a NoPE layer rotates nothing: one concatenate (of the rotated halves) for q and one for
     * k in each of the other layers */
    int rot = 0;
    for (int l = 0; l < m.d.cfg.n_layers; l++)
        rot += !m.d.layers[l].nope;
    assert_int_equal(rot, m.d.cfg.n_layers - 1);
    assert_int_equal(count(m.prefill, "stablehlo.concatenate"), 2 * rot);
    assert_int_equal(count(m.decode, "stablehlo.concatenate"), 2 * rot);
})
FIXTURE_TEST(t_olmo2, "olmo2/bf16", {
    /* post-norm: no input norm; q/k norms over the whole projection */
    assert_null(strstr(m.prefill, "%l0_attn_norm:"));
    assert_null(strstr(m.prefill, "%l0_ffn_norm:"));
    has_param(m.prefill, "l0_post_attn_norm", "tensor<64xbf16>");
    has_param(m.prefill, "l1_post_ffn_norm", "tensor<64xbf16>");
    has_param(m.prefill, "l0_q_norm_full", "tensor<64xbf16>");
    has_param(m.decode, "l1_k_norm_full", "tensor<64xbf16>");
    assert_int_equal(count(m.prefill, "stablehlo.concatenate"), 2 * m.d.cfg.n_layers);
})
FIXTURE_TEST(t_olmo3_q4, "olmo3/q4-g64-bf16", {
    check_affine(&m, 1);
    has_param(m.prefill, "l1_q_norm_full", "tensor<64xbf16>");
    assert_null(strstr(m.prefill, "%cos_l:")); /* one RoPE for both layer kinds */
})

/* Option dequant=load: affine weights become f32 parameters holding exactly the
 * reference values, and the modules unpack no codes. */
static void t_dequant_at_load(void **state)
{
    (void)state;
    struct mod m;
    load_opt("llama3-untied/q4-g64-f16", 1, &m);
    common(&m);
    check_affine(&m, 0);
    assert_int_equal(count(m.prefill, "stablehlo.shift_right_logical"), 0);
    has_param(m.prefill, "l0_wq", "tensor<64x64xf32>");
    has_param(m.prefill, "embed", "tensor<384x64xf32>");
    int i = cellm_xla_plan_find(&m.plan, "l1_w_down");
    assert_true(i >= 0);
    const struct cellm_weight *w = &m.d.layers[1].w_down;
    float row[128];
    for (int64_t r = 0; r < w->rows; r += 7) {
        cellm_weight_row(w, r, row);
        assert_memory_equal(m.plan.w[i].parts[0] + (size_t)r * w->cols * 4, row,
                            (size_t)w->cols * 4);
    }
    unload(&m);
}

static void t_no_plugin(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama-tied/bf16", CELLM_FIXTURES);
    /* an explicit path that does not exist: the message names it and says how to fix */
    struct cellm_model_params mp = cellm_model_params_default();
    mp.device = CELLM_DEVICE_XLA;
    mp.pjrt_plugin = "/nonexistent/xla_cuda_plugin.so";
    struct cellm_model *model = NULL;
    struct cellm_error err = {{0}};
    assert_int_equal(cellm_model_load(dir, &mp, &model, &err), CELLM_ERR_UNSUPPORTED);
    assert_null(model);
    assert_non_null(strstr(err.msg, "/nonexistent/xla_cuda_plugin.so"));
    assert_non_null(strstr(err.msg, "--pjrt-plugin"));
    /* no path at all: either a plugin is installed here, or the how-to message */
    char found[1024];
    struct cellm_error e2 = {{0}};
    if (cellm_pjrt_find(NULL, NULL, found, sizeof found, &e2) != CELLM_OK) {
        assert_non_null(strstr(e2.msg, "--pjrt-plugin PATH"));
        assert_non_null(strstr(e2.msg, "CELLM_PJRT_PLUGIN"));
        mp.pjrt_plugin = NULL;
        assert_int_equal(cellm_model_load(dir, &mp, &model, &err), CELLM_ERR_UNSUPPORTED);
        assert_non_null(strstr(err.msg, "--pjrt-plugin PATH"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_llama_bf16),
        cmocka_unit_test(t_llama_q4),
        cmocka_unit_test(t_llama_q3),
        cmocka_unit_test(t_llama_mixed),
        cmocka_unit_test(t_llama_tied_q8),
        cmocka_unit_test(t_llama_wide),
        cmocka_unit_test(t_mistral),
        cmocka_unit_test(t_qwen2),
        cmocka_unit_test(t_qwen3),
        cmocka_unit_test(t_qwen3_f32),
        cmocka_unit_test(t_gemma2),
        cmocka_unit_test(t_gemma2_q4),
        cmocka_unit_test(t_gemma3),
        cmocka_unit_test(t_gemma3_q8),
        cmocka_unit_test(t_phi3),
        cmocka_unit_test(t_phi3_q4),
        cmocka_unit_test(t_stablelm),
        cmocka_unit_test(t_stablelm_q8),
        cmocka_unit_test(t_qwen3_moe),
        cmocka_unit_test(t_qwen3_moe_q4),
        cmocka_unit_test(t_smollm3),
        cmocka_unit_test(t_olmo2),
        cmocka_unit_test(t_olmo3_q4),
        cmocka_unit_test(t_dequant_at_load),
        cmocka_unit_test(t_no_plugin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
