/*
 * test_config.c: config.json and generation_config.json (src/model/hparams.c,
 * family.c).
 *
 * Every fixture's config loads, and its quantization block matches the directory name
 * (qB-gG). Each family's fixture is then spot-checked for the dimensions and flags its
 * quirks decide (Gemma 2 sliding on even layers, Gemma 3's pattern, Qwen2 with
 * use_sliding_window false, Mistral's null window, StableLM's partial rotary, Phi-3's
 * fused projections, Qwen3-MoE's experts). In-memory configs cover the v4 and v5 RoPE keys,
 * the refusals (by name) of RoPE kinds and model types cellm does not implement, EOS ids
 * from generation_config.json, and Gemma 3's multimodal nesting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "model/hparams.h"

static void contains(const char *msg, const char *word)
{
    if (!strstr(msg, word)) fail_msg("message \"%s\" lacks \"%s\"", msg, word);
}

static void load_fixture(const char *rel, struct cellm_config *c)
{
    char dir[512];
    struct cellm_error err;
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    enum cellm_status st = cellm_config_load(dir, c, &err);
    if (st != CELLM_OK) fail_msg("%s: %s", rel, err.msg);
}

static void parse_ok(const char *json, const char *gen, struct cellm_config *c)
{
    struct cellm_error err;
    enum cellm_status st =
        cellm_config_parse(json, strlen(json), gen, gen ? strlen(gen) : 0, "config.json", c, &err);
    if (st != CELLM_OK) fail_msg("%s\n-> %s", json, err.msg);
}

static void parse_fail(const char *json, const char *gen, enum cellm_status want, const char *w1,
                       const char *w2)
{
    struct cellm_error err;
    struct cellm_config c;
    enum cellm_status st =
        cellm_config_parse(json, strlen(json), gen, gen ? strlen(gen) : 0, "config.json", &c, &err);
    if (st != want)
        fail_msg("%s\n-> status %d (%s), expected %d: %s", json, st, cellm_status_str(st), want,
                 st ? err.msg : "");
    contains(err.msg, "json");
    if (w1) contains(err.msg, w1);
    if (w2) contains(err.msg, w2);
}

/* The variant's name says how it is stored (tools/oracle/README.md): qB-gG is MLX affine,
 * mxfp4/mxfp8/nvfp4 are MLX modes, blocks is gpt-oss mxfp4, fp8-bN, gptqB-gG and awqB-gG are
 * Hugging Face quantization_config methods; every other name is unquantized. */
static void check_variant_quant(const char *rel, const char *name, const struct cellm_config *c)
{
    int bits = 0, group = 0, block = 0;
    static const struct {
        const char *prefix;
        int mode;
    } modes[] = {
        {"mxfp4", CELLM_QMODE_MXFP4}, {"mxfp8", CELLM_QMODE_MXFP8}, {"nvfp4", CELLM_QMODE_NVFP4}};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (!strncmp(name, modes[i].prefix, strlen(modes[i].prefix))) {
            if (c->quant.mode != modes[i].mode || c->quant.hf.method != CELLM_HFQ_NONE)
                fail_msg("%s: mode %s, method %d", rel, cellm_qmode_name(c->quant.mode),
                         c->quant.hf.method);
            return;
        }
    if (sscanf(name, "q%d-g%d", &bits, &group) == 2) {
        if (c->quant.bits != bits || c->quant.group != group || c->quant.mode != CELLM_QMODE_AFFINE)
            fail_msg("%s: quantization %d/%d", rel, c->quant.bits, c->quant.group);
    } else if (!strcmp(name, "blocks")) {
        if (c->quant.hf.method != CELLM_HFQ_MXFP4 || c->quant.bits)
            fail_msg("%s: method %d", rel, c->quant.hf.method);
    } else if (sscanf(name, "fp8-b%d", &block) == 1) {
        if (c->quant.hf.method != CELLM_HFQ_FP8 || c->quant.hf.block[0] != block ||
            c->quant.hf.block[1] != block)
            fail_msg("%s: method %d block %dx%d", rel, c->quant.hf.method, c->quant.hf.block[0],
                     c->quant.hf.block[1]);
    } else if (sscanf(name, "gptq%d-g%d", &bits, &group) == 2) {
        if (c->quant.hf.method != CELLM_HFQ_GPTQ || c->quant.hf.bits != bits ||
            c->quant.hf.group != group || c->quant.hf.desc_act != (strstr(name, "-desc") != NULL))
            fail_msg("%s: method %d bits %d group %d desc_act %d", rel, c->quant.hf.method,
                     c->quant.hf.bits, c->quant.hf.group, c->quant.hf.desc_act);
    } else if (sscanf(name, "awq%d-g%d", &bits, &group) == 2) {
        if (c->quant.hf.method != CELLM_HFQ_AWQ || c->quant.hf.bits != bits ||
            c->quant.hf.group != group)
            fail_msg("%s: method %d bits %d group %d", rel, c->quant.hf.method, c->quant.hf.bits,
                     c->quant.hf.group);
    } else if (strstr(name, "-q") && sscanf(strstr(name, "-q"), "-q%d-g%d", &bits, &group) == 2) {
        /* a mixed variant's default after a prefix (mlx-mxfp4-q8-g64: mxfp4 experts) */
        if (c->quant.bits != bits || c->quant.group != group)
            fail_msg("%s: quantization %d/%d", rel, c->quant.bits, c->quant.group);
    } else if (c->quant.bits != 0 || c->quant.hf.method != CELLM_HFQ_NONE) {
        fail_msg("%s: unexpected quantization", rel);
    }
}

/* Every fixture directory loads; quantization matches its name. */
static void every_fixture_loads(void **state)
{
    (void)state;
    DIR *top = opendir(CELLM_FIXTURES);
    assert_non_null(top);
    struct dirent *fam;
    int count = 0;
    while ((fam = readdir(top))) {
        if (fam->d_name[0] == '.') continue;
        char fdir[512];
        snprintf(fdir, sizeof fdir, "%s/%s", CELLM_FIXTURES, fam->d_name);
        DIR *d = opendir(fdir);
        if (!d) continue;
        struct dirent *v;
        while ((v = readdir(d))) {
            if (v->d_name[0] == '.') continue;
            char rel[600];
            snprintf(rel, sizeof rel, "%s/%s", fam->d_name, v->d_name);
            struct cellm_config c;
            load_fixture(rel, &c);
            check_variant_quant(rel, v->d_name, &c);
            assert_true(c.vocab > 0 && c.dim > 0 && c.n_layers > 0 && c.head_dim > 0);
            assert_true(c.n_heads % c.n_kv_heads == 0);
            assert_true(c.rot_dims > 0 && c.rot_dims <= c.head_dim);
            assert_true(c.n_eos >= 1);
            cellm_config_free(&c);
            count++;
        }
        closedir(d);
    }
    closedir(top);
    assert_true(count >= 48);
}

static void fixture_families(void **state)
{
    (void)state;
    struct cellm_config c;

    load_fixture("gemma2/bf16", &c);
    assert_string_equal(c.model_type, "gemma2");
    assert_int_equal(c.n_layers, 2);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.window, 8);
    assert_int_equal(c.layer_sliding[0], 1); /* even layers slide */
    assert_int_equal(c.layer_sliding[1], 0);
    assert_true(c.attn_softcap == 50.0 && c.final_softcap == 30.0);
    assert_int_equal(c.norm, CELLM_NORM_RMS_PLUS_ONE);
    assert_true(c.block == CELLM_BLOCK_SANDWICH && c.embed_scale && c.tie_embeddings);
    assert_int_equal(c.act, CELLM_ACT_GELU_TANH);
    assert_true(fabs(c.attn_scale - 0.25) < 1e-15); /* query_pre_attn_scalar 16 */
    cellm_config_free(&c);

    load_fixture("gemma3/bf16", &c);
    assert_string_equal(c.model_type, "gemma3_text");
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.n_kv_heads, 1);
    assert_int_equal(c.window, 8);
    static const uint8_t g3[4] = {1, 0, 1, 0}; /* sliding_window_pattern 2 */
    assert_memory_equal(c.layer_sliding, g3, 4);
    assert_true(c.rope.theta == 1e6 && c.rope_local.theta == 10000);
    assert_int_equal(c.rope.kind, CELLM_ROPE_DEFAULT);
    assert_true(c.qk_norm && !c.qk_norm_per_head);
    assert_true(c.attn_softcap == 0 && c.final_softcap == 0); /* null = none */
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos[0], 1);
    assert_int_equal(c.eos[1], 106);
    cellm_config_free(&c);

    load_fixture("gemma3/q4-g64-bf16-vlm", &c); /* nested text_config, top-level quant */
    assert_string_equal(c.model_type, "gemma3_text");
    assert_int_equal(c.dim, 64);
    assert_int_equal(c.n_layers, 4);
    assert_int_equal(c.quant.bits, 4);
    assert_int_equal(c.quant.group, 64);
    assert_int_equal(c.tie_embeddings, 1);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.layer_sliding[2], 1);
    assert_int_equal(c.layer_sliding[3], 0);
    cellm_config_free(&c);

    load_fixture("qwen2/bf16", &c);
    assert_int_equal(c.window, 0); /* use_sliding_window false */
    for (int i = 0; i < c.n_layers; i++)
        assert_int_equal(c.layer_sliding[i], 0);
    assert_true(c.qkv_bias && !c.o_bias);
    assert_int_equal(c.tie_embeddings, 1);
    cellm_config_free(&c);

    load_fixture("mistral/bf16", &c); /* "sliding_window": null */
    assert_int_equal(c.window, 0);
    assert_int_equal(c.layer_sliding[0], 0);
    assert_int_equal(c.head_dim, 16);
    assert_true(!c.qkv_bias && !c.o_bias);
    cellm_config_free(&c);

    load_fixture("stablelm2/bf16", &c);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.rot_dims, 4); /* partial_rotary_factor 0.25 */
    assert_int_equal(c.norm, CELLM_NORM_LAYER);
    assert_true(c.qkv_bias && !c.qk_norm && c.block == CELLM_BLOCK_PRE_NORM);
    assert_true(c.norm_eps == 1e-5);
    cellm_config_free(&c);

    load_fixture("phi3/bf16", &c);
    assert_true(c.fused_qkv && c.fused_gate_up);
    assert_int_equal(c.window, 0);
    assert_int_equal(c.head_dim, 16);
    cellm_config_free(&c);

    load_fixture("qwen3-moe/bf16", &c);
    assert_int_equal(c.n_experts, 8);
    assert_int_equal(c.n_experts_used, 2);
    assert_int_equal(c.moe_ffn_dim, 64);
    assert_int_equal(c.norm_topk_prob, 1);
    assert_true(c.layer_moe[0] && c.layer_moe[1]);
    assert_true(c.qk_norm);
    cellm_config_free(&c);

    load_fixture("qwen3-moe/q4-g64-bf16-stacked", &c); /* router overridden to 8 bits */
    int bits = 0, group = 0;
    assert_int_equal(cellm_quant_module(&c.quant, "model.layers.1.mlp.gate", &bits, &group, NULL),
                     1);
    assert_int_equal(bits, 8);
    assert_int_equal(
        cellm_quant_module(&c.quant, "model.layers.1.mlp.down_proj", &bits, &group, NULL), 1);
    assert_int_equal(bits, 4);
    cellm_config_free(&c);

    load_fixture("qwen3/bf16", &c);
    assert_int_equal(c.head_dim, 32); /* explicit head_dim, not dim / heads */
    assert_true(c.qk_norm);
    assert_int_equal(
        cellm_quant_module(&c.quant, "model.layers.0.mlp.up_proj", &bits, &group, NULL), -1);
    cellm_config_free(&c);

    load_fixture("llama3-untied/bf16", &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LLAMA3);
    assert_true(c.rope.factor == 8 && c.rope.low_freq_factor == 1 && c.rope.high_freq_factor == 4 &&
                c.rope.original_max_pos == 32);
    assert_true(c.rope.theta == 500000.0);
    assert_int_equal(c.tie_embeddings, 0);
    assert_int_equal(c.bos, 1);
    cellm_config_free(&c);
}

#define LLAMA_HEAD                                                                                 \
    "{\"model_type\":\"llama\",\"vocab_size\":100,\"hidden_size\":64,\"num_hidden_layers\":2,"     \
    "\"num_attention_heads\":4,\"intermediate_size\":128"

/* MLX modes: global, per module (an entry without "mode" is affine, as mlx's
 * to_quantized), the sizes each mode fixes, and the Hugging Face methods. */
static void quant_modes(void **state)
{
    (void)state;
    struct cellm_config c;
    int bits = 0, group = 0, mode = -1;
    parse_ok(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":32,\"mode\":\"mxfp4\","
                        "\"model.layers.0.mlp.gate\":{\"bits\":8,\"group_size\":64},"
                        "\"model.layers.1.mlp.up_proj\":{\"mode\":\"nvfp4\"},"
                        "\"lm_head\":true}}",
             NULL, &c);
    assert_int_equal(c.quant.mode, CELLM_QMODE_MXFP4);
    assert_int_equal(cellm_quant_module(&c.quant, "model.layers.0.mlp.gate", &bits, &group, &mode),
                     1);
    assert_true(bits == 8 && group == 64 && mode == CELLM_QMODE_AFFINE);
    assert_int_equal(
        cellm_quant_module(&c.quant, "model.layers.1.mlp.up_proj", &bits, &group, &mode), 1);
    assert_true(bits == 4 && group == 16 && mode == CELLM_QMODE_NVFP4); /* the mode's sizes */
    assert_int_equal(cellm_quant_module(&c.quant, "lm_head", &bits, &group, &mode), 1);
    assert_true(bits == 4 && group == 32 && mode == CELLM_QMODE_MXFP4);
    assert_int_equal(
        cellm_quant_module(&c.quant, "model.layers.0.mlp.up_proj", &bits, &group, &mode), 1);
    assert_true(mode == CELLM_QMODE_MXFP4);
    cellm_config_free(&c);
    /* a mode without sizes takes its own */
    parse_ok(LLAMA_HEAD ",\"quantization\":{\"mode\":\"mxfp8\"}}", NULL, &c);
    assert_true(c.quant.bits == 8 && c.quant.group == 32 && c.quant.mode == CELLM_QMODE_MXFP8);
    cellm_config_free(&c);
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":32,\"mode\":\"mxfp8\"}}",
               NULL, CELLM_ERR_FORMAT, "mode \"mxfp8\" has 8-bit codes; bits is 4", NULL);
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":64,\"mode\":\"mxfp4\","
                          "\"model.layers.0.mlp.gate\":{\"mode\":\"nvfp4\",\"group_size\":32}}}",
               NULL, CELLM_ERR_FORMAT, "quantization: mode \"mxfp4\" has group size 32", NULL);
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":32,\"mode\":\"mxfp4\","
                          "\"model.layers.0.mlp.gate\":{\"mode\":\"nvfp4\",\"group_size\":32}}}",
               NULL, CELLM_ERR_FORMAT,
               "quantization.model.layers.0.mlp.gate: mode \"nvfp4\" has group size 16", NULL);
    /* Hugging Face methods */
    parse_ok(LLAMA_HEAD ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":8,"
                        "\"group_size\":-1,\"desc_act\":true,\"checkpoint_format\":\"gptq_v2\"}}",
             NULL, &c);
    assert_true(c.quant.hf.method == CELLM_HFQ_GPTQ && c.quant.hf.bits == 8 &&
                c.quant.hf.group == 0 && c.quant.hf.desc_act && !c.quant.hf.zero_one);
    assert_int_equal(c.quant.bits, 0);
    cellm_config_free(&c);
    parse_ok(LLAMA_HEAD ",\"quantization_config\":{\"quant_method\":\"fp8\","
                        "\"weight_block_size\":[128,64]}}",
             NULL, &c);
    assert_true(c.quant.hf.method == CELLM_HFQ_FP8 && c.quant.hf.block[0] == 128 &&
                c.quant.hf.block[1] == 64);
    cellm_config_free(&c);
    parse_fail(LLAMA_HEAD ",\"quantization_config\":{\"quant_method\":\"hqq\"}}", NULL,
               CELLM_ERR_UNSUPPORTED, "quant_method \"hqq\" is not supported", NULL);
}

static void rope_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    /* v4: rope_scaling with "type" (old) and with "rope_type" */
    parse_ok(LLAMA_HEAD ",\"rope_theta\":5000,\"rope_scaling\":{\"type\":\"linear\",\"factor\":4}}",
             NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LINEAR);
    assert_true(c.rope.theta == 5000 && c.rope.factor == 4);
    assert_int_equal(c.window, 0);
    assert_int_equal(c.n_kv_heads, 4); /* defaults to num_attention_heads */
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.bos, 1); /* LlamaConfig defaults */
    assert_int_equal(c.eos[0], 2);
    cellm_config_free(&c);
    parse_ok(LLAMA_HEAD ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}", NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LINEAR);
    assert_true(c.rope.theta == 10000); /* class default */
    cellm_config_free(&c);
    parse_ok(LLAMA_HEAD ",\"rope_scaling\":{\"type\":\"default\"}}", NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_DEFAULT);
    cellm_config_free(&c);
    /* v5: rope_parameters carries theta */
    parse_ok(LLAMA_HEAD ",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000,"
                        "\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
                        "\"original_max_position_embeddings\":8192}}",
             NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LLAMA3);
    assert_true(c.rope.theta == 500000 && c.rope.original_max_pos == 8192);
    cellm_config_free(&c);
    parse_ok(LLAMA_HEAD ",\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":7}}", NULL,
             &c);
    assert_true(c.rope.theta == 7 && c.rope.kind == CELLM_ROPE_DEFAULT);
    cellm_config_free(&c);
    /* v5 stablelm: partial_rotary_factor inside rope_parameters */
    parse_ok("{\"model_type\":\"stablelm\",\"hidden_size\":64,\"num_attention_heads\":4,"
             "\"num_key_value_heads\":4,"
             "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":10000,"
             "\"partial_rotary_factor\":0.5}}",
             NULL, &c);
    assert_int_equal(c.rot_dims, 8);
    cellm_config_free(&c);

    /* Gemma 3 v5: nested per layer type */
    parse_ok("{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"num_hidden_layers\":6,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":16,"
             "\"sliding_window\":16,\"rope_parameters\":{"
             "\"full_attention\":{\"rope_type\":\"linear\",\"factor\":8,\"rope_theta\":1000000},"
             "\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000}},"
             "\"layer_types\":[\"sliding_attention\",\"sliding_attention\",\"full_attention\","
             "\"sliding_attention\",\"sliding_attention\",\"full_attention\"]}",
             NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LINEAR);
    assert_true(c.rope.factor == 8 && c.rope.theta == 1e6);
    assert_int_equal(c.rope_local.kind, CELLM_ROPE_DEFAULT);
    assert_true(c.rope_local.theta == 10000);
    static const uint8_t lt[6] = {1, 1, 0, 1, 1, 0};
    assert_memory_equal(c.layer_sliding, lt, 6);
    cellm_config_free(&c);
    /* Gemma 3 v4: rope_scaling applies to global layers only; default pattern 6 */
    parse_ok("{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":7,"
             "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8},"
             "\"rope_local_base_freq\":10000}",
             NULL, &c);
    assert_int_equal(c.rope.kind, CELLM_ROPE_LINEAR);
    assert_true(c.rope.theta == 1e6);
    assert_int_equal(c.rope_local.kind, CELLM_ROPE_DEFAULT);
    static const uint8_t p6[7] = {1, 1, 1, 1, 1, 0, 1};
    assert_memory_equal(c.layer_sliding, p6, 7);
    assert_int_equal(c.window, 4096);
    cellm_config_free(&c);

    /* refused by name */
    parse_fail(LLAMA_HEAD ",\"rope_scaling\":{\"rope_type\":\"ntk\",\"factor\":4}}", NULL,
               CELLM_ERR_UNSUPPORTED, "\"ntk\"", "not supported");
    parse_fail(LLAMA_HEAD ",\"rope_scaling\":{\"type\":\"dynamic\",\"factor\":2}}", NULL,
               CELLM_ERR_UNSUPPORTED, "\"dynamic\"", "not supported");
    parse_fail(LLAMA_HEAD ",\"rope_scaling\":{\"type\":\"longrope\","
                          "\"short_factor\":[1],\"long_factor\":[1]}}",
               NULL, CELLM_ERR_UNSUPPORTED, "\"longrope\"", "not supported");
    parse_fail("{\"model_type\":\"gemma2\",\"rope_parameters\":{\"rope_type\":\"yarn\","
               "\"factor\":4}}",
               NULL, CELLM_ERR_UNSUPPORTED, "\"yarn\"", NULL);
    parse_fail("{\"model_type\":\"gemma3_text\",\"rope_parameters\":{\"full_attention\":"
               "{\"rope_type\":\"yarn\",\"factor\":8},\"sliding_attention\":{}}}",
               NULL, CELLM_ERR_UNSUPPORTED, "\"yarn\"", NULL);
    parse_fail(LLAMA_HEAD ",\"rope_scaling\":{\"rope_type\":\"linear\"}}", NULL, CELLM_ERR_FORMAT,
               "linear", "\"factor\"");
    parse_fail(LLAMA_HEAD ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}", NULL,
               CELLM_ERR_FORMAT, "low_freq_factor", NULL);
}

static void model_types_and_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_fail("{\"model_type\":\"falcon\"}", NULL, CELLM_ERR_UNSUPPORTED, "\"falcon\"",
               "qwen3_moe");
    parse_fail("{\"hidden_size\":64}", NULL, CELLM_ERR_FORMAT, "\"model_type\" is missing", NULL);
    parse_fail("{\"model_type\":\"gemma3\"}", NULL, CELLM_ERR_FORMAT, "text_config", NULL);
    parse_fail("{\"model_type\":\"gemma3\",\"text_config\":{\"model_type\":\"gemma3_text\"},"
               "\"quantization\":{\"bits\":7,\"group_size\":64}}",
               NULL, CELLM_ERR_UNSUPPORTED, "7-bit", "2, 3, 4, 5, 6 or 8");
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":48}}", NULL,
               CELLM_ERR_UNSUPPORTED, "group size 48", NULL);
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":32,\"mode\":\"mxint4\"}}",
               NULL, CELLM_ERR_UNSUPPORTED, "\"mxint4\"", NULL);
    parse_fail(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":64,"
                          "\"model.layers.0.mlp.down_proj\":{\"bits\":7,\"group_size\":64}}}",
               NULL, CELLM_ERR_UNSUPPORTED, "model.layers.0.mlp.down_proj", "7-bit");
    parse_fail(LLAMA_HEAD ",\"hidden_act\":\"relu\"}", NULL, CELLM_ERR_UNSUPPORTED, "\"relu\"",
               NULL);
    parse_fail(LLAMA_HEAD ",\"num_key_value_heads\":3}", NULL, CELLM_ERR_FORMAT,
               "num_key_value_heads 3", NULL);
    parse_fail("{\"model_type\":\"llama\",\"hidden_size\":\"64\"}", NULL, CELLM_ERR_FORMAT,
               "hidden_size", "string");
    parse_fail("{\"model_type\":\"llama\",\"num_hidden_layers\":0}", NULL, CELLM_ERR_FORMAT,
               "num_hidden_layers", NULL);
    /* found by fuzz_config: a 113-byte config asking for 654564691 layers */
    parse_fail("{\"model_type\":\"gemma3_text\",\"num_hidden_layers\":654564691}", NULL,
               CELLM_ERR_FORMAT, "num_hidden_layers", NULL);
    parse_fail("{\"model_type\":\"llama\",\"num_hidden_layers\":65537}", NULL, CELLM_ERR_FORMAT,
               "num_hidden_layers", "65536");
    parse_ok("{\"model_type\":\"llama\",\"num_hidden_layers\":65536}", NULL, &c);
    assert_int_equal(c.n_layers, 65536);
    cellm_config_free(&c);
    parse_fail("[1]", NULL, CELLM_ERR_FORMAT, "expected a JSON object", NULL);
    parse_fail("{\"model_type\":", NULL, CELLM_ERR_FORMAT, "invalid JSON", NULL);
    parse_fail("{\"model_type\":\"qwen3_moe\",\"num_experts\":4,\"num_experts_per_tok\":8}", NULL,
               CELLM_ERR_FORMAT, "num_experts_per_tok 8", NULL);

    /* per-module overrides: false, true, a dict; language_model. prefix stripped */
    parse_ok(LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":64,"
                        "\"language_model.lm_head\":false,"
                        "\"model.embed_tokens\":{\"bits\":8},"
                        "\"model.layers.0.mlp.up_proj\":true}}",
             NULL, &c);
    int bits = 0, group = 0;
    assert_int_equal(cellm_quant_module(&c.quant, "lm_head", &bits, &group, NULL), 0);
    assert_int_equal(cellm_quant_module(&c.quant, "model.embed_tokens", &bits, &group, NULL), 1);
    assert_int_equal(bits, 8);
    assert_int_equal(group, 64);
    assert_int_equal(
        cellm_quant_module(&c.quant, "model.layers.0.mlp.up_proj", &bits, &group, NULL), 1);
    assert_int_equal(bits, 4);
    cellm_config_free(&c);

    /* qwen2 with use_sliding_window true: layers >= max_window_layers slide */
    parse_ok("{\"model_type\":\"qwen2\",\"hidden_size\":64,\"num_attention_heads\":4,"
             "\"num_key_value_heads\":2,\"num_hidden_layers\":4,\"use_sliding_window\":true,"
             "\"sliding_window\":32,\"max_window_layers\":2}",
             NULL, &c);
    static const uint8_t q2[4] = {0, 0, 1, 1};
    assert_memory_equal(c.layer_sliding, q2, 4);
    assert_int_equal(c.window, 32);
    cellm_config_free(&c);
    /* mistral: window absent = class default 4096 on every layer */
    parse_ok("{\"model_type\":\"mistral\",\"num_hidden_layers\":2}", NULL, &c);
    assert_int_equal(c.window, 4096);
    assert_true(c.layer_sliding[0] && c.layer_sliding[1]);
    assert_int_equal(c.n_kv_heads, 8);
    cellm_config_free(&c);
    /* qwen3_moe: mlp_only_layers and decoder_sparse_step */
    parse_ok("{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":4,\"num_experts\":4,"
             "\"num_experts_per_tok\":2,\"decoder_sparse_step\":2,\"mlp_only_layers\":[3]}",
             NULL, &c);
    static const uint8_t moe[4] = {0, 1, 0, 0};
    assert_memory_equal(c.layer_moe, moe, 4);
    cellm_config_free(&c);
}

/* gpt_oss (docs/forward/gpt-oss.md): layer_types, experts as wide as intermediate_size,
 * experts_per_token as a fallback, attention_bias true by default, swiglu keys. */
static void gpt_oss_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_ok("{\"model_type\":\"gpt_oss\",\"hidden_size\":64,\"intermediate_size\":96,"
             "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
             "\"head_dim\":16,\"num_local_experts\":8,\"experts_per_token\":3,"
             "\"sliding_window\":8,\"layer_types\":[\"full_attention\",\"sliding_attention\","
             "\"full_attention\"]}",
             NULL, &c);
    static const uint8_t sl[3] = {0, 1, 0}, moe[3] = {1, 1, 1};
    assert_memory_equal(c.layer_sliding, sl, 3);
    assert_memory_equal(c.layer_moe, moe, 3);
    assert_int_equal(c.window, 8);
    assert_int_equal(c.n_experts, 8);
    assert_int_equal(c.n_experts_used, 3);
    assert_int_equal(c.moe_ffn_dim, 96);
    assert_int_equal(c.head_dim, 16);
    assert_true(c.qkv_bias && c.o_bias && c.attn_sinks && c.expert_bias && c.swiglu_clamp);
    assert_int_equal(c.router, CELLM_ROUTER_TOPK_SOFTMAX);
    assert_true(c.swiglu_limit == 7.0 && c.swiglu_alpha == 1.702);
    assert_false(c.norm_topk_prob);
    cellm_config_free(&c);
    /* class defaults: even layers slide (window 128), 4 experts per token; keys win */
    parse_ok("{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":4,\"num_local_experts\":8,"
             "\"experts_per_token\":3,\"num_experts_per_tok\":2,\"attention_bias\":false,"
             "\"swiglu_limit\":5.5,\"swiglu_alpha\":2}",
             NULL, &c);
    static const uint8_t even[4] = {1, 0, 1, 0};
    assert_memory_equal(c.layer_sliding, even, 4);
    assert_int_equal(c.window, 128);
    assert_int_equal(c.n_experts_used, 2);
    assert_false(c.qkv_bias || c.o_bias);
    assert_true(c.swiglu_limit == 5.5 && c.swiglu_alpha == 2.0);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":1}", NULL, &c);
    assert_int_equal(c.n_experts, 128);
    assert_int_equal(c.n_experts_used, 4);
    assert_true(c.qkv_bias && c.o_bias);
    cellm_config_free(&c);
    parse_fail("{\"model_type\":\"gpt_oss\",\"swiglu_limit\":-1}", NULL, CELLM_ERR_FORMAT,
               "swiglu_limit -1", NULL);
    parse_fail("{\"model_type\":\"gpt_oss\",\"num_local_experts\":4,\"num_experts_per_tok\":5}",
               NULL, CELLM_ERR_FORMAT, "num_experts_per_tok 5", NULL);
    parse_fail("{\"model_type\":\"gpt_oss\",\"num_hidden_layers\":2,\"layer_types\":"
               "[\"sliding_attention\",\"chunked_attention\"]}",
               NULL, CELLM_ERR_FORMAT, "layer_types[1]", NULL);
    /* a Qwen3-MoE config keeps softmax-then-top-k and no gpt-oss pieces */
    parse_ok("{\"model_type\":\"qwen3_moe\",\"num_hidden_layers\":1,\"num_experts\":4,"
             "\"num_experts_per_tok\":2}",
             NULL, &c);
    assert_int_equal(c.router, CELLM_ROUTER_SOFTMAX_TOPK);
    assert_false(c.attn_sinks || c.expert_bias || c.swiglu_clamp);
    cellm_config_free(&c);
}

static void eos_ids(void **state)
{
    (void)state;
    struct cellm_config c;
    /* generation_config.json wins, as an int */
    parse_ok(LLAMA_HEAD ",\"eos_token_id\":[5,6]}", "{\"eos_token_id\":7}", &c);
    assert_int_equal(c.n_eos, 1);
    assert_int_equal(c.eos[0], 7);
    cellm_config_free(&c);
    /* ... and as a list */
    parse_ok(LLAMA_HEAD ",\"eos_token_id\":2}", "{\"bos_token_id\":1,\"eos_token_id\":[9,10,11]}",
             &c);
    assert_int_equal(c.n_eos, 3);
    assert_int_equal(c.eos[2], 11);
    cellm_config_free(&c);
    /* without eos in generation_config.json, config.json's stays */
    parse_ok(LLAMA_HEAD ",\"eos_token_id\":[5,6]}", "{\"do_sample\":true}", &c);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos[1], 6);
    cellm_config_free(&c);
    /* qwen2 has no class default */
    parse_ok("{\"model_type\":\"qwen2\"}", NULL, &c);
    assert_int_equal(c.n_eos, 0);
    assert_int_equal(c.bos, -1);
    cellm_config_free(&c);
    parse_fail(LLAMA_HEAD "}", "{\"eos_token_id\":\"x\"}", CELLM_ERR_FORMAT, "eos_token_id",
               "expected an integer or a list");
    parse_fail(LLAMA_HEAD "}", "{\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", CELLM_ERR_RANGE,
               "eos_token_id", NULL);
    parse_fail(LLAMA_HEAD "}", "{\"eos_token_id\":", CELLM_ERR_FORMAT, "generation_config.json",
               "invalid JSON");
    /* Gemma 3 multimodal: eos at the top level */
    parse_ok("{\"model_type\":\"gemma3\",\"eos_token_id\":[1,106],\"text_config\":"
             "{\"model_type\":\"gemma3_text\",\"eos_token_id\":1}}",
             NULL, &c);
    assert_int_equal(c.n_eos, 2);
    cellm_config_free(&c);
}

/* Allocation failures during a parse: NOMEM and no leak. */
static void allocation_failures(void **state)
{
    (void)state;
    const char *json = LLAMA_HEAD ",\"quantization\":{\"bits\":4,\"group_size\":64,"
                                  "\"model.layers.0.mlp.up_proj\":false}}";
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
        struct cellm_config c;
        struct cellm_error err;
        cellm_alloc_fail_after(n);
        enum cellm_status st =
            cellm_config_parse(json, strlen(json), NULL, 0, "config.json", &c, &err);
        cellm_alloc_fail_after(-1);
        if (st == CELLM_OK) {
            ok = 1;
            assert_int_equal(c.quant.n_overrides, 1);
            cellm_config_free(&c);
        } else if (st != CELLM_ERR_NOMEM) {
            fail_msg("allocation %ld failing gave %d: %s", n, st, err.msg);
        }
    }
    assert_true(ok);
}

/* Every model type cellm_family_name lists parses from a config of only its model_type
 * (the class defaults fill the rest), and its error message lists exactly those types. */
static void listed_families_parse(void **state)
{
    (void)state;
    const char *name, *title;
    int n = 0;
    for (int i = 0; (name = cellm_family_name(i, &title)); i++, n++) {
        assert_non_null(title);
        char json[128];
        /* Gemma 3n's default num_kv_shared_layers (15) needs more layers than 2 */
        snprintf(json, sizeof json,
                 "{\"model_type\":\"%s\",\"num_hidden_layers\":2,\"num_kv_shared_layers\":0}",
                 name);
        struct cellm_config c;
        parse_ok(json, NULL, &c);
        assert_string_equal(c.model_type, name);
        cellm_config_free(&c);
    }
    assert_true(n >= 9);
    assert_null(cellm_family_name(n, &title));
    struct cellm_config c; /* the block topology is named once, from the config */
    parse_ok("{\"model_type\":\"stablelm\",\"use_parallel_residual\":true}", NULL, &c);
    assert_int_equal(c.block, CELLM_BLOCK_PARALLEL);
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"gemma2\"}", NULL, &c);
    assert_int_equal(c.block, CELLM_BLOCK_SANDWICH);
    cellm_config_free(&c);
    /* Granite's multipliers (transformers GraniteConfig keys; defaults 1) */
    parse_ok("{\"model_type\":\"granite\",\"embedding_multiplier\":12.0,"
             "\"attention_multiplier\":0.0078125,\"residual_multiplier\":0.22,"
             "\"logits_scaling\":8.0}",
             NULL, &c);
    assert_true(c.block == CELLM_BLOCK_PRE_NORM && c.embed_scale && c.embed_mult == 12.0);
    assert_true(c.attn_scale == 0.0078125 && c.residual_mult == 0.22 && c.logits_div == 8.0);
    assert_true(c.head_dim == 128 && !c.tie_embeddings); /* 4096 / 32; untied by default */
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"granite\"}", NULL, &c);
    assert_true(c.embed_mult == 1 && c.attn_scale == 1 && c.residual_mult == 1 &&
                c.logits_div == 1);
    cellm_config_free(&c);
    parse_fail("{\"model_type\":\"granite\",\"logits_scaling\":0}", NULL, CELLM_ERR_FORMAT,
               "logits_scaling", NULL);
    assert_null(cellm_family_name(-1, NULL));
    parse_fail("{\"model_type\":\"bloom\"}", NULL, CELLM_ERR_UNSUPPORTED, "bloom",
               "llama, mistral, qwen2, qwen3, qwen3_moe, gemma2, gemma3_text, gemma3, stablelm, "
               "phi3, granite");
}

/* glm4_moe (docs/forward/glm4_moe.md): the grouped sigmoid router's keys, dense layers
 * before first_k_dense_replace, shared experts, q/k/v bias without o, use_qk_norm. */
static void glm4_moe_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    parse_ok("{\"model_type\":\"glm4_moe\",\"hidden_size\":64,\"intermediate_size\":128,"
             "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
             "\"head_dim\":32,\"partial_rotary_factor\":0.5,\"attention_bias\":true,"
             "\"use_qk_norm\":true,\"moe_intermediate_size\":32,\"n_routed_experts\":16,"
             "\"n_shared_experts\":2,\"num_experts_per_tok\":4,\"n_group\":4,\"topk_group\":2,"
             "\"routed_scaling_factor\":2.5,\"first_k_dense_replace\":2,"
             "\"num_nextn_predict_layers\":1}",
             NULL, &c);
    static const uint8_t moe[4] = {0, 0, 1, 1};
    assert_memory_equal(c.layer_moe, moe, 4);
    assert_int_equal(c.router, CELLM_ROUTER_SIGMOID_GROUP);
    assert_int_equal(c.n_experts, 16);
    assert_int_equal(c.n_experts_used, 4);
    assert_int_equal(c.n_group, 4);
    assert_int_equal(c.topk_group, 2);
    assert_true(c.routed_scale == 2.5);
    assert_int_equal(c.moe_ffn_dim, 32);
    assert_int_equal(c.shared_ffn_dim, 64); /* moe_intermediate_size * n_shared_experts */
    assert_int_equal(c.rot_dims, 16);
    assert_true(c.qkv_bias && !c.o_bias && c.qk_norm && c.norm_topk_prob);
    cellm_config_free(&c);
    /* class defaults: 128 experts, 8 per token, one group, one shared expert, layer 0 dense,
     * no bias, no q/k norm, factor 1; untied */
    parse_ok("{\"model_type\":\"glm4_moe\",\"num_hidden_layers\":2}", NULL, &c);
    assert_true(c.n_experts == 128 && c.n_experts_used == 8 && c.n_group == 1 &&
                c.topk_group == 1 && c.routed_scale == 1.0);
    assert_true(c.shared_ffn_dim == 1408 && !c.layer_moe[0] && c.layer_moe[1]);
    assert_true(!c.qkv_bias && !c.o_bias && !c.qk_norm && !c.tie_embeddings);
    assert_int_equal(c.rot_dims, 64); /* head_dim 128, partial 0.5 */
    cellm_config_free(&c);
    parse_ok("{\"model_type\":\"glm4_moe\",\"num_hidden_layers\":2,\"n_shared_experts\":0,"
             "\"num_local_experts\":8,\"num_experts_per_tok\":2}",
             NULL, &c);
    assert_true(c.shared_ffn_dim == 0 && c.n_experts == 8);
    cellm_config_free(&c);
    /* groups of unequal size, of one expert, more kept groups than groups */
    parse_fail("{\"model_type\":\"glm4_moe\",\"n_routed_experts\":12,\"n_group\":5}", NULL,
               CELLM_ERR_FORMAT, "n_group 5", NULL);
    parse_fail("{\"model_type\":\"glm4_moe\",\"n_routed_experts\":8,\"n_group\":8,"
               "\"num_experts_per_tok\":2}",
               NULL, CELLM_ERR_FORMAT, "two experts or more", NULL);
    parse_fail("{\"model_type\":\"glm4_moe\",\"n_group\":4,\"topk_group\":5}", NULL,
               CELLM_ERR_FORMAT, "topk_group 5", NULL);
    parse_fail("{\"model_type\":\"glm4_moe\",\"n_shared_experts\":-1}", NULL, CELLM_ERR_FORMAT,
               "n_shared_experts", NULL);
    parse_fail("{\"model_type\":\"glm4_moe\",\"first_k_dense_replace\":-1}", NULL, CELLM_ERR_FORMAT,
               "first_k_dense_replace", NULL);
}

/* Gemma 4's keys (docs/forward/gemma4.md): the fixture's E2B shape, the MoE shape and the
 * multimodal wrapper, transformers' defaults and the refusals. */
static void gemma4_keys(void **state)
{
    (void)state;
    struct cellm_config c;
    load_fixture("gemma4/f32", &c);
    assert_true(c.gemma4 && c.attn_scale == 1.0 && c.norm == CELLM_NORM_RMS);
    assert_true(c.head_dim == 16 && c.global_head_dim == 32 && c.n_global_kv_heads == 1);
    assert_true(c.ple_dim == 32 && c.ple_vocab == 256 && c.n_kv_shared == 2 && c.double_wide);
    assert_true(!c.k_eq_v && !c.moe_parallel && c.n_experts == 0);
    assert_int_equal(c.rope.kind, CELLM_ROPE_PROPORTIONAL);
    assert_true(c.rope.partial == 0.25 && c.rope.theta == 1e6 && c.rope_local.theta == 10000);
    cellm_config_free(&c);
    load_fixture("gemma4-moe/f32", &c);
    assert_true(c.k_eq_v && c.n_global_kv_heads == 1 && c.n_kv_heads == 2 && c.ple_dim == 0);
    assert_true(c.moe_parallel && c.n_experts == 8 && c.n_experts_used == 2);
    assert_true(c.moe_ffn_dim == 32 && c.norm_topk_prob && c.layer_moe[0] && c.layer_moe[1]);
    cellm_config_free(&c);
    /* the wrapper: text_config nested; layer_types absent = sliding but every 6th, and the
     * last layer full whatever the pattern says */
    parse_ok("{\"model_type\":\"gemma4\",\"text_config\":{\"num_hidden_layers\":8,"
             "\"sliding_window\":16}}",
             NULL, &c);
    assert_string_equal(c.model_type, "gemma4_text");
    static const uint8_t slide[8] = {1, 1, 1, 1, 1, 0, 1, 0};
    assert_memory_equal(c.layer_sliding, slide, 8);
    assert_true(c.global_head_dim == 512 && c.ple_dim == 256 && c.ple_vocab == 262144);
    assert_true(c.n_global_kv_heads == c.n_kv_heads); /* without k=v: the sliding count */
    cellm_config_free(&c);
    parse_fail("{\"model_type\":\"gemma4_text\",\"use_bidirectional_attention\":\"all\"}", NULL,
               CELLM_ERR_UNSUPPORTED, "use_bidirectional_attention", NULL);
    parse_fail("{\"model_type\":\"gemma4_text\",\"num_hidden_layers\":4,"
               "\"num_kv_shared_layers\":4}",
               NULL, CELLM_ERR_FORMAT, "num_kv_shared_layers", NULL);
    parse_fail("{\"model_type\":\"gemma4_text\",\"enable_moe_block\":true}", NULL, CELLM_ERR_FORMAT,
               "num_experts", NULL);
    parse_fail("{\"model_type\":\"gemma4_text\",\"rope_parameters\":{\"full_attention\":{"
               "\"rope_type\":\"proportional\",\"partial_rotary_factor\":1.5}}}",
               NULL, CELLM_ERR_FORMAT, "partial_rotary_factor", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_fixture_loads),   cmocka_unit_test(fixture_families),
        cmocka_unit_test(listed_families_parse), cmocka_unit_test(rope_keys),
        cmocka_unit_test(quant_modes),           cmocka_unit_test(model_types_and_keys),
        cmocka_unit_test(gpt_oss_keys),          cmocka_unit_test(eos_ids),
        cmocka_unit_test(allocation_failures),   cmocka_unit_test(glm4_moe_keys),
        cmocka_unit_test(gemma4_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
