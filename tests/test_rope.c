/*
 * test_rope.c: YaRN and longrope RoPE (src/model/hparams.c parsing, bind.c frequencies,
 * the per-forward longrope switch through the engine).
 *
 * The expected frequencies were computed independently with a Python one-off using only
 * the standard library, emulating float32 with struct.pack('f') after every operation in
 * transformers' order (modeling_rope_utils.py, _compute_yarn_parameters and
 * _compute_longrope_parameters), the correction range in Python doubles. The one libm
 * step that may differ by an ulp between that emulation (pow in double, then rounded) and
 * powf is the power, so frequencies are compared within 2^-21 relative; a wrong formula
 * (a factor misplaced, the ramp reversed, short and long swapped) is off by far more.
 * The qwen3-yarn fixture holds the bit-level check against transformers itself.
 *
 * The switch test makes a longrope copy of the phi3 fixture whose short factors are all 1
 * (then its short frequencies equal plain RoPE's bit for bit) with an explicit attention
 * factor of 1: its logits must equal the plain model's while a forward's sequence stays
 * within original_max_position_embeddings (4), and differ from the first forward that goes
 * beyond it, in one prefill and token by token, as transformers' longrope_frequency_update
 * does (long factors when max(position_ids) + 1 > original_max_position_embeddings).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellm.h"
#include "model/hparams.h"
#include "model/model.h"
#include "st_util.h"

static void contains(const char *msg, const char *word)
{
    if (word && !strstr(msg, word)) fail_msg("message \"%s\" lacks \"%s\"", msg, word);
}

static void parse_ok(const char *json, struct cellm_config *c)
{
    struct cellm_error err;
    if (cellm_config_parse(json, strlen(json), NULL, 0, "config.json", c, &err))
        fail_msg("%s\n-> %s", json, err.msg);
}

static void parse_fail(const char *json, enum cellm_status want, const char *w1, const char *w2)
{
    struct cellm_error err;
    struct cellm_config c;
    enum cellm_status st = cellm_config_parse(json, strlen(json), NULL, 0, "config.json", &c, &err);
    if (st != want)
        fail_msg("%s\n-> status %d, expected %d: %s", json, st, want, st ? err.msg : "");
    contains(err.msg, w1);
    contains(err.msg, w2);
}

static void near(const float *got, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(got[i] - want[i]) <= fabsf(want[i]) * 0x1p-21f))
            fail_msg("frequency %d: %.9g, expected %.9g", i, got[i], want[i]);
}

#define QWEN3                                                                                      \
    "{\"model_type\":\"qwen3\",\"vocab_size\":384,\"hidden_size\":64,\"num_hidden_layers\":2,"     \
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"                         \
    "\"max_position_embeddings\":512,\"rope_theta\":1000000.0"

static void yarn_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    /* the qwen3-yarn fixture's keys: betas, truncate and the attention factor default */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
                   "\"original_max_position_embeddings\":128}}",
             &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_YARN);
    assert_true(c.rope.factor == 4 && c.rope.original_max_pos == 128);
    assert_true(c.rope.beta_fast == 32 && c.rope.beta_slow == 1 && c.rope.truncate == 1);
    assert_true(fabs(c.rope.attn_factor - 1.138629436111989) < 1e-15); /* 0.1 ln 4 + 1 */
    cellm_config_free(&c);

    /* legacy "type", v5 rope_parameters with theta inside, explicit keys, 0 betas = default */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"type\":\"yarn\",\"factor\":2,"
                   "\"original_max_position_embeddings\":256,\"beta_fast\":0,\"beta_slow\":null}}",
             &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_YARN);
    assert_true(c.rope.beta_fast == 32 && c.rope.beta_slow == 1);
    cellm_config_free(&c);
    parse_ok(QWEN3 ",\"rope_parameters\":{\"rope_type\":\"yarn\",\"rope_theta\":150000,"
                   "\"factor\":32.0,\"beta_fast\":32.0,\"beta_slow\":1.0,\"truncate\":false,"
                   "\"original_max_position_embeddings\":4096}}",
             &c);
    assert_true(c.rope.theta == 150000 && c.rope.truncate == 0 && c.rope.factor == 32);
    assert_true(fabs(c.rope.attn_factor - 1.3465735902799727) < 1e-15); /* gpt-oss */
    cellm_config_free(&c);

    /* factor absent: max_position_embeddings / original (transformers 5) */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\","
                   "\"original_max_position_embeddings\":64}}",
             &c);
    assert_true(c.rope.factor == 8);
    cellm_config_free(&c);

    /* DeepSeek's mscale pair, and an explicit attention_factor winning over everything */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":40,\"mscale\":1.0,"
                   "\"mscale_all_dim\":0.707,\"original_max_position_embeddings\":4096}}",
             &c);
    double m1 = 0.1 * log(40) + 1, m2 = 0.1 * 0.707 * log(40) + 1;
    assert_true(fabs(c.rope.attn_factor - m1 / m2) < 1e-15);
    cellm_config_free(&c);
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":40,\"mscale\":1.0,"
                   "\"mscale_all_dim\":1.0,\"attention_factor\":0.5,"
                   "\"original_max_position_embeddings\":4096}}",
             &c);
    assert_true(c.rope.attn_factor == 0.5);
    cellm_config_free(&c);

    /* each field refused by name */
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":0.5,"
                     "\"original_max_position_embeddings\":128}}",
               CELLM_ERR_FORMAT, "\"factor\"", ">= 1");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,"
                     "\"original_max_position_embeddings\":-1}}",
               CELLM_ERR_FORMAT, "original_max_position_embeddings", "positive");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"beta_fast\":\"x\","
                     "\"original_max_position_embeddings\":128}}",
               CELLM_ERR_FORMAT, "beta_fast", "number");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"beta_slow\":-2,"
                     "\"original_max_position_embeddings\":128}}",
               CELLM_ERR_FORMAT, "beta_slow", "positive");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"truncate\":1,"
                     "\"original_max_position_embeddings\":128}}",
               CELLM_ERR_FORMAT, "truncate", "true or false");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,"
                     "\"attention_factor\":-1,\"original_max_position_embeddings\":128}}",
               CELLM_ERR_FORMAT, "attention_factor", "positive");
    /* families whose transformers class has no yarn in cellm's table stay refused by name */
    parse_fail("{\"model_type\":\"stablelm\",\"rope_scaling\":{\"rope_type\":\"yarn\","
               "\"factor\":4}}",
               CELLM_ERR_UNSUPPORTED, "\"yarn\"", "not supported");
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":4}}",
               CELLM_ERR_UNSUPPORTED, "\"dynamic\"", "not supported");
}

static void yarn_frequencies(void **state)
{
    (void)state;
    struct cellm_config c;
    float inv[32];
    double lo, hi;
    /* the qwen3-yarn fixture: dim 32, base 1e6, factor 4, original 128, truncated range */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
                   "\"original_max_position_embeddings\":128}}",
             &c);
    cellm_rope_yarn_range(&c.rope, 32, &lo, &hi);
    assert_true(lo == 0 && hi == 4); /* floor(-0.523) clamped to 0, ceil(3.49) */
    cellm_rope_inv_freq(&c.rope, 32, inv);
    static const float q3[16] = {1.0f,
                                 0.342628419f,
                                 0.111142464f,
                                 0.0328078717f,
                                 0.00790569466f,
                                 0.00333380373f,
                                 0.00140585331f,
                                 0.000592843455f,
                                 0.000250000012f,
                                 0.000105424122f,
                                 4.44569851e-05f,
                                 1.87473561e-05f,
                                 7.90569356e-06f,
                                 3.33380353e-06f,
                                 1.40585337e-06f,
                                 5.92843435e-07f};
    near(inv, q3, 16);
    cellm_config_free(&c);

    /* gpt-oss: dim 64, base 150000, factor 32, original 4096, truncate false */
    parse_ok(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":32.0,"
                   "\"beta_fast\":32.0,\"beta_slow\":1.0,\"truncate\":false,\"rope_theta\":150000,"
                   "\"original_max_position_embeddings\":4096}}",
             &c);
    assert_true(c.rope.theta == 150000); /* a rope_theta inside the RoPE object wins */
    cellm_rope_yarn_range(&c.rope, 64, &lo, &hi);
    assert_true(fabs(lo - 8.092779115512402) < 1e-12 && fabs(hi - 17.39802450158856) < 1e-12);
    cellm_rope_inv_freq(&c.rope, 64, inv);
    static const float go[32] = {1.0f,
                                 0.689044297f,
                                 0.47478205f,
                                 0.327145875f,
                                 0.225418001f,
                                 0.155322984f,
                                 0.107024416f,
                                 0.0737445652f,
                                 0.0508132726f,
                                 0.0317056961f,
                                 0.0193350017f,
                                 0.0115920492f,
                                 0.00679495931f,
                                 0.00386035908f,
                                 0.00209379266f,
                                 0.00105260219f,
                                 0.000456483918f,
                                 0.000129318694f,
                                 3.83088118e-05f,
                                 2.63964685e-05f,
                                 1.8188337e-05f,
                                 1.25325696e-05f,
                                 8.63549576e-06f,
                                 5.95023948e-06f,
                                 4.09997847e-06f,
                                 2.82506676e-06f,
                                 1.94659629e-06f,
                                 1.34129095e-06f,
                                 9.24208962e-07f,
                                 6.36820914e-07f,
                                 4.38797855e-07f,
                                 3.0235114e-07f};
    near(inv, go, 32);
    cellm_config_free(&c);
}

/* The phi3-longrope fixture case: head_dim 16, partial rotary 0.75 (12 rotary dims). */
#define PHI3_HEAD                                                                                  \
    "{\"model_type\":\"phi3\",\"vocab_size\":256,\"hidden_size\":64,\"num_hidden_layers\":2,"      \
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"max_position_embeddings\":128,"         \
    "\"rope_theta\":10000.0,\"partial_rotary_factor\":0.75"
#define SHORT6 "[1.0,1.05,1.1,1.2,1.5,2.0]"
#define LONG6 "[1.0,1.25,2.0,3.5,6.0,9.0]"

static void longrope_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_ok(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                       "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6 "}}",
             &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LONGROPE);
    assert_int_equal(c.rot_dims, 12);
    assert_int_equal(c.rope.n_factors, 6);
    assert_true(c.rope.original_max_pos == 4 && c.rope.factor == 32);
    assert_true(c.rope.short_factor[1] == 1.05f && c.rope.long_factor[5] == 9.0f);
    /* sqrt(1 + ln(128/4) / ln 4) */
    assert_true(fabs(c.rope.attn_factor - 1.8708286933869707) < 1e-15);
    /* sliding layers (none here) would share it */
    assert_int_equal(c.rope_local.kind, CELLM_ROPE_LONGROPE);
    cellm_config_free(&c);

    /* v5: rope_parameters carries everything; legacy "su"; explicit factor and attention */
    parse_ok(PHI3_HEAD ",\"rope_parameters\":{\"rope_type\":\"longrope\",\"rope_theta\":10000,"
                       "\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6
                       ",\"original_max_position_embeddings\":8,\"factor\":4,"
                       "\"attention_factor\":1.25}}",
             &c);
    assert_true(c.rope.original_max_pos == 8 && c.rope.factor == 4 && c.rope.attn_factor == 1.25);
    cellm_config_free(&c);
    parse_ok(PHI3_HEAD ",\"original_max_position_embeddings\":64,\"rope_scaling\":{\"type\":"
                       "\"su\",\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6 "}}",
             &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LONGROPE);
    assert_true(fabs(c.rope.attn_factor - sqrt(1 + log(2.0) / log(64.0))) < 1e-15);
    cellm_config_free(&c);
    /* factor 1 (no extension): attention factor 1 */
    parse_ok(PHI3_HEAD ",\"original_max_position_embeddings\":128,\"rope_scaling\":{\"type\":"
                       "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6 "}}",
             &c);
    assert_true(c.rope.attn_factor == 1);
    cellm_config_free(&c);

    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":[1,1,1,1],\"long_factor\":[1,1,1,1]}}",
               CELLM_ERR_FORMAT, "4 entries", "expected 6");
    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":[1,2]}}",
               CELLM_ERR_FORMAT, "long_factor", "6 entries");
    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":" SHORT6 "}}",
               CELLM_ERR_FORMAT, "\"long_factor\"", NULL);
    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":[1,1,\"a\",1,1,1],\"long_factor\":" LONG6
                         "}}",
               CELLM_ERR_FORMAT, "short_factor[2]", "positive number");
    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":{}}}",
               CELLM_ERR_FORMAT, "long_factor", "list of numbers");
    parse_fail(PHI3_HEAD ",\"rope_scaling\":{\"type\":\"longrope\",\"short_factor\":" SHORT6
                         ",\"long_factor\":" LONG6 "}}",
               CELLM_ERR_FORMAT, "original_max_position_embeddings", NULL);
    parse_fail(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                         "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6
                         ",\"attention_factor\":0}}",
               CELLM_ERR_FORMAT, "attention_factor", "positive");
    /* longrope is Phi-3's; a Llama config asking for it is refused by name */
    parse_fail(QWEN3 ",\"rope_scaling\":{\"rope_type\":\"longrope\",\"short_factor\":[1],"
                     "\"long_factor\":[1]}}",
               CELLM_ERR_UNSUPPORTED, "\"longrope\"", "not supported");
}

static void longrope_frequencies(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_ok(PHI3_HEAD ",\"original_max_position_embeddings\":4,\"rope_scaling\":{\"type\":"
                       "\"longrope\",\"short_factor\":" SHORT6 ",\"long_factor\":" LONG6 "}}",
             &c);
    float s[6], l[6];
    cellm_rope_inv_freq(&c.rope, c.rot_dims, s);
    cellm_rope_inv_freq_long(&c.rope, c.rot_dims, l);
    static const float ws[6] = {1.0f,           0.205184266f,   0.0421962552f,
                                0.00833333284f, 0.00143628952f, 0.000232079474f};
    static const float wl[6] = {1.0f,           0.172354758f,    0.023207942f,
                                0.00285714283f, 0.000359072379f, 5.15732208e-05f};
    near(s, ws, 6);
    near(l, wl, 6);

    /* the switch: long once the forward's sequence exceeds original_max_position_embeddings */
    float g[6];
    struct cellm_layer L = {.inv_freq = s, .inv_freq_long = l, .rope_long_after = 4};
    assert_ptr_equal(cellm_layer_inv_freq(&L, 1), s);
    assert_ptr_equal(cellm_layer_inv_freq(&L, 4), s);
    assert_ptr_equal(cellm_layer_inv_freq(&L, 5), l);
    assert_ptr_equal(cellm_layer_inv_freq(&L, 1000), l);
    struct cellm_layer plain = {.inv_freq = g};
    assert_ptr_equal(cellm_layer_inv_freq(&plain, 1000), g);
    cellm_config_free(&c);
}

/* Writes dir/config.json as the phi3 fixture's with a longrope rope_scaling. */
static void write_longrope_copy(const char *src, const char *dir)
{
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    /* head_dim 16: 8 factors; the short ones are all 1 so that short equals plain RoPE */
    fprintf(f, "{\"model_type\":\"phi3\",\"vocab_size\":384,\"hidden_size\":64,"
               "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
               "\"num_key_value_heads\":4,\"rms_norm_eps\":1e-05,\"rope_theta\":10000.0,"
               "\"max_position_embeddings\":512,\"original_max_position_embeddings\":4,"
               "\"hidden_act\":\"silu\",\"tie_word_embeddings\":false,\"sliding_window\":null,"
               "\"rope_scaling\":{\"type\":\"longrope\",\"attention_factor\":1.0,"
               "\"short_factor\":[1,1,1,1,1,1,1,1],\"long_factor\":[1,1.5,2,3,4,5,6,8]}}");
    fclose(f);
    char from[1100];
    snprintf(from, sizeof from, "%s/model.safetensors", src);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    assert_int_equal(symlink(from, p), 0);
}

static int same(const float *a, const float *b, int n)
{
    return !memcmp(a, b, (size_t)n * sizeof *a);
}

static void longrope_switch_in_engine(void **state)
{
    (void)state;
    char src[512], dir[512];
    snprintf(src, sizeof src, "%s/phi3/bf16", CELLM_FIXTURES);
    assert_true(tst_mkdtemp(dir, sizeof dir));
    write_longrope_copy(src, dir);
    struct cellm_error err;
    struct cellm_model *plain, *lr;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 1;
    if (cellm_model_load(src, &mp, &plain, &err)) fail_msg("%s", err.msg);
    if (cellm_model_load(dir, &mp, &lr, &err)) fail_msg("%s", err.msg);
    int V = cellm_model_vocab(plain);
    enum { N = 8 };
    const int32_t toks[N] = {5, 17, 42, 99, 7, 230, 11, 64};
    float *a = malloc((size_t)N * V * sizeof *a), *b = malloc((size_t)N * V * sizeof *b);
    assert_true(a && b);

    /* token by token: identical through position 3 (sequence length <= 4), then the forward
     * that reaches length 5 takes the long factors */
    struct cellm_model *ms[2] = {plain, lr};
    float *outs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        struct cellm_ctx *ctx;
        assert_int_equal(cellm_ctx_new(ms[k], NULL, &ctx, &err), CELLM_OK);
        int seq = cellm_ctx_seq_new(ctx);
        for (int i = 0; i < N; i++) {
            const float *l;
            assert_int_equal(cellm_ctx_eval_seq(ctx, seq, &toks[i], 1, &l, &err), CELLM_OK);
            memcpy(outs[k] + (size_t)i * V, l, (size_t)V * sizeof(float));
        }
        cellm_ctx_free(ctx);
    }
    for (int i = 0; i < 4; i++)
        if (!same(a + (size_t)i * V, b + (size_t)i * V, V))
            fail_msg("decode position %d: longrope differs from plain RoPE within the short range",
                     i);
    assert_false(same(a + 4 * (size_t)V, b + 4 * (size_t)V, V));

    /* one prefill: of 4 tokens, short factors (last row as plain RoPE's); of 5, long */
    for (int n = 4; n <= 5; n++) {
        for (int k = 0; k < 2; k++) {
            struct cellm_ctx *ctx;
            assert_int_equal(cellm_ctx_new(ms[k], NULL, &ctx, &err), CELLM_OK);
            int seq = cellm_ctx_seq_new(ctx);
            const float *l;
            assert_int_equal(cellm_ctx_eval_seq(ctx, seq, toks, n, &l, &err), CELLM_OK);
            memcpy(outs[k], l, (size_t)V * sizeof(float));
            cellm_ctx_free(ctx);
        }
        if (n == 4)
            assert_true(same(a, b, V));
        else
            assert_false(same(a, b, V));
    }
    /* a prefill of 5 rotates position 1 with the long factors too (per forward, not per
     * position): its logits differ from the token-by-token ones at position 1 */
    {
        struct cellm_batch_item items[5];
        struct cellm_ctx *ctx;
        assert_int_equal(cellm_ctx_new(lr, NULL, &ctx, &err), CELLM_OK);
        int seq = cellm_ctx_seq_new(ctx);
        for (int i = 0; i < 5; i++)
            items[i] = (struct cellm_batch_item){toks[i], seq, 1};
        const float *l;
        assert_int_equal(cellm_ctx_eval(ctx, items, 5, &l, &err), CELLM_OK);
        /* plain RoPE's row 1 is what short factors give there */
        float *ref = malloc((size_t)V * sizeof *ref);
        struct cellm_ctx *c2;
        assert_int_equal(cellm_ctx_new(plain, NULL, &c2, &err), CELLM_OK);
        int s2 = cellm_ctx_seq_new(c2);
        const float *l2;
        assert_int_equal(cellm_ctx_eval_seq(c2, s2, toks, 2, &l2, &err), CELLM_OK);
        memcpy(ref, l2, (size_t)V * sizeof(float));
        assert_false(same(l + (size_t)V, ref, V));
        free(ref);
        cellm_ctx_free(c2);
        cellm_ctx_free(ctx);
    }
    free(a);
    free(b);
    cellm_model_free(plain);
    cellm_model_free(lr);
    tst_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(yarn_keys),
        cmocka_unit_test(yarn_frequencies),
        cmocka_unit_test(longrope_keys),
        cmocka_unit_test(longrope_frequencies),
        cmocka_unit_test(longrope_switch_in_engine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
