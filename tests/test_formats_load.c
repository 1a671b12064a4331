/*
 * test_formats_load.c: checkpoints in the formats of docs/formats.md, written here, through
 * config.json parsing (src/model/hparams.c, src/checkpoint/qconfig.c) and binding (src/model/bind.c).
 *
 * A one-layer Llama (dim 64, 2 heads of 32, 1 KV head, MLP 128, vocab 64, tied embeddings)
 * has its seven projections stored in the format under test; after cellm_desc_load every
 * bound projection must decode to the values the test computed (fmt_util.h). Then each
 * malformed variant (wrong block shapes, scale dtypes, a mode with bits it cannot have,
 * g_idx out of range or of the wrong length, unknown methods and keys) must fail with its
 * specific message. A Qwen3-MoE layout checks the expert-stacked gpt-oss blocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cellm.h"
#include "fmt_util.h"
#include "model/model.h"
#include "st_util.h"

#include <sys/stat.h>

enum { H = 64, I = 128, V = 64, QD = 64, KD = 32, E = 4, MI = 64 };

/* What a projection is stored as. */
enum kind { K_MXFP4, K_MXFP8, K_NVFP4, K_BLOCKS, K_FP8, K_GPTQ, K_GPTQ_DESC, K_AWQ };

struct ckpt {
    char dir[256];
    struct tst_tensor t[64];
    int n;
    struct fmt_w w[16]; /* the projections, in proj_names order */
    int nw;
    float *f32[8]; /* float tensors' storage */
    int nf;
};

static const char *const proj_names[7] = {
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
    "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const int proj_rows[7] = {QD, KD, KD, H, I, I, H};
static const int proj_cols[7] = {H, H, H, QD, H, H, I};

static struct tst_tensor *add(struct ckpt *c, const char *name, const char *dtype, int ndim,
                              int64_t d0, int64_t d1, int64_t d2, const void *data, size_t nbytes)
{
    assert_true(c->n < 64);
    struct tst_tensor *t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    int64_t d[3] = {d0, d1, d2};
    for (int i = 0; i < ndim; i++)
        t->shape[i] = d[i];
    t->data = data;
    t->nbytes = nbytes;
    return t;
}

static void add_f32(struct ckpt *c, const char *name, int64_t n0, int64_t n1)
{
    int64_t n = n0 * (n1 ? n1 : 1);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)fmt_uniform(-0.5, 1.5);
    c->f32[c->nf++] = v;
    add(c, name, "F32", n1 ? 2 : 1, n0, n1, 0, v, (size_t)n * 4);
}

/* Module `mod` ([rows][cols]) stored as kind k. */
static void add_proj(struct ckpt *c, const char *mod, enum kind k, int rows, int cols)
{
    struct fmt_w *f = &c->w[c->nw++];
    char n1[200], n2[200], n3[200], n4[200];
    switch (k) {
    case K_MXFP4:
    case K_MXFP8:
    case K_NVFP4: {
        enum cellm_wfmt fm = k == K_MXFP4   ? CELLM_W_MXFP4
                             : k == K_MXFP8 ? CELLM_W_MXFP8
                                            : CELLM_W_NVFP4;
        fmt_make_mx(f, fm, rows, cols);
        snprintf(n1, sizeof n1, "%s.weight", mod);
        snprintf(n2, sizeof n2, "%s.scales", mod);
        add(c, n1, "U32", 2, rows, cols * f->w.bits / 32, 0, f->codes, f->n_codes);
        add(c, n2, "U8", 2, rows, cols / f->w.group, 0, f->scales, f->n_scales);
        break;
    }
    case K_BLOCKS:
        fmt_make_mx(f, CELLM_W_MXFP4, rows, cols);
        snprintf(n1, sizeof n1, "%s_blocks", mod);
        snprintf(n2, sizeof n2, "%s_scales", mod);
        add(c, n1, "U8", 3, rows, cols / 32, 16, f->codes, f->n_codes);
        add(c, n2, "U8", 2, rows, cols / 32, 0, f->scales, f->n_scales);
        break;
    case K_FP8:
        fmt_make_fp8(f, rows, cols, 32, 32, CELLM_DT_F32);
        snprintf(n1, sizeof n1, "%s.weight", mod);
        snprintf(n2, sizeof n2, "%s.weight_scale_inv", mod);
        add(c, n1, "F8_E4M3", 2, rows, cols, 0, f->codes, f->n_codes);
        add(c, n2, "F32", 2, (rows + 31) / 32, (cols + 31) / 32, 0, f->scales, f->n_scales);
        break;
    case K_GPTQ:
    case K_GPTQ_DESC:
    case K_AWQ: {
        int awq = k == K_AWQ;
        fmt_make_gptq(f, awq, 4, rows, cols, 32, k == K_GPTQ_DESC, 1);
        snprintf(n1, sizeof n1, "%s.qweight", mod);
        snprintf(n2, sizeof n2, "%s.qzeros", mod);
        snprintf(n3, sizeof n3, "%s.scales", mod);
        snprintf(n4, sizeof n4, "%s.g_idx", mod);
        if (awq)
            add(c, n1, "I32", 2, cols, rows / 8, 0, f->codes, f->n_codes);
        else
            add(c, n1, "I32", 2, cols / 8, rows, 0, f->codes, f->n_codes);
        add(c, n2, "I32", 2, cols / 32, rows / 8, 0, f->zeros, f->n_zeros);
        add(c, n3, "F16", 2, cols / 32, rows, 0, f->scales, f->n_scales);
        if (f->gidx) add(c, n4, "I32", 1, cols, 0, 0, f->gidx, f->n_gidx);
        break;
    }
    }
}

static const char *llama_cfg =
    "{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":64,\"intermediate_size\":128,"
    "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"head_dim\":32,\"rms_norm_eps\":1e-5,\"max_position_embeddings\":256,"
    "\"tie_word_embeddings\":true,\"bos_token_id\":1,\"eos_token_id\":2%s}";

/* --write DIR: checkpoints go to DIR/NAME and stay (for test_inspect_formats.sh). */
static const char *keep_dir;
static const char *keep_name;

static void make_dir(struct ckpt *c)
{
    if (keep_dir) {
        snprintf(c->dir, sizeof c->dir, "%s/%s", keep_dir, keep_name);
        assert_true(mkdir(c->dir, 0755) == 0);
    } else {
        assert_true(tst_mkdtemp(c->dir, sizeof c->dir));
    }
}

/* A one-layer Llama with every projection stored as k and `quant` appended to config.json. */
static void llama(struct ckpt *c, enum kind k, const char *quant)
{
    memset(c, 0, sizeof *c);
    make_dir(c);
    add_f32(c, "model.embed_tokens.weight", V, H);
    add_f32(c, "model.norm.weight", H, 0);
    add_f32(c, "model.layers.0.input_layernorm.weight", H, 0);
    add_f32(c, "model.layers.0.post_attention_layernorm.weight", H, 0);
    for (int p = 0; p < 7; p++) {
        char mod[128];
        snprintf(mod, sizeof mod, "model.layers.0.%s", proj_names[p]);
        add_proj(c, mod, k, proj_rows[p], proj_cols[p]);
    }
    char cfg[2048];
    snprintf(cfg, sizeof cfg, llama_cfg, quant);
    assert_true(tst_write_str(c->dir, "config.json", cfg));
}

static void write_st(struct ckpt *c)
{
    char p[512];
    snprintf(p, sizeof p, "%s/model.safetensors", c->dir);
    assert_true(tst_st_write(p, c->t, c->n));
}

static void ckpt_free(struct ckpt *c)
{
    if (!keep_dir) tst_rm_rf(c->dir);
    for (int i = 0; i < c->nw; i++)
        fmt_free(&c->w[i]);
    for (int i = 0; i < c->nf; i++)
        free(c->f32[i]);
}

static void expect_weight(const struct cellm_weight *w, const struct fmt_w *f, enum cellm_wfmt fmt)
{
    assert_int_equal(w->fmt, fmt);
    assert_int_equal(w->rows, f->w.rows);
    assert_int_equal(w->cols, f->w.cols);
    float *row = malloc((size_t)w->cols * sizeof *row);
    for (int64_t r = 0; r < w->rows; r++) {
        cellm_weight_row(w, r, row);
        for (int64_t i = 0; i < w->cols; i++)
            if (cellm_f32_bits(row[i]) != cellm_f32_bits(f->ref[r * w->cols + i]))
                fail_msg("%s: [%lld][%lld] = %a, expected %a", w->name, (long long)r, (long long)i,
                         (double)row[i], (double)f->ref[r * w->cols + i]);
    }
    free(row);
}

static void load_ok(struct ckpt *c, enum cellm_wfmt fmt)
{
    write_st(c);
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(c->dir, &d, &err) != CELLM_OK) fail_msg("%s", err.msg);
    const struct cellm_layer *L = &d.layers[0];
    const struct cellm_weight *ws[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                        &L->w_gate, &L->w_up, &L->w_down};
    for (int p = 0; p < 7; p++)
        expect_weight(ws[p], &c->w[p], fmt);
    cellm_desc_free(&d);
}

/* Loads c and expects failure with all of the given words in the message. */
static void load_fails(struct ckpt *c, enum cellm_status want, const char *w1, const char *w2)
{
    write_st(c);
    struct cellm_desc d;
    struct cellm_error err;
    enum cellm_status st = cellm_desc_load(c->dir, &d, &err);
    if (st == CELLM_OK) {
        cellm_desc_free(&d);
        fail_msg("loaded; expected \"%s\"", w1);
    }
    if (st != want)
        fail_msg("status %s, expected %s: %s", cellm_status_str(st), cellm_status_str(want),
                 err.msg);
    if (w1 && !strstr(err.msg, w1)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, w1);
    if (w2 && !strstr(err.msg, w2)) fail_msg("message \"%s\" lacks \"%s\"", err.msg, w2);
}

static int find(struct ckpt *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) return i;
    fail_msg("no tensor %s", name);
    return -1;
}

static const char *q_mx(const char *mode, int bits, int group)
{
    static char buf[256];
    snprintf(buf, sizeof buf, ",\"quantization\":{\"group_size\":%d,\"bits\":%d,\"mode\":\"%s\"}",
             group, bits, mode);
    return buf;
}

static void mlx_modes_load(void **state)
{
    (void)state;
    struct ckpt c;
    llama(&c, K_MXFP4, q_mx("mxfp4", 4, 32));
    load_ok(&c, CELLM_W_MXFP4);
    ckpt_free(&c);
    llama(&c, K_MXFP8, q_mx("mxfp8", 8, 32));
    load_ok(&c, CELLM_W_MXFP8);
    ckpt_free(&c);
    llama(&c, K_NVFP4, q_mx("nvfp4", 4, 16));
    load_ok(&c, CELLM_W_NVFP4);
    ckpt_free(&c);
    /* the same key under quantization_config (mlx-lm writes both) */
    llama(&c, K_NVFP4,
          ",\"quantization_config\":{\"group_size\":16,\"bits\":4,\"mode\":\"nvfp4\"}");
    load_ok(&c, CELLM_W_NVFP4);
    ckpt_free(&c);
}

/* Global nvfp4, per-module mxfp8 and mxfp4 overrides carrying their own mode. */
static void mlx_mixed_modes(void **state)
{
    (void)state;
    struct ckpt c;
    memset(&c, 0, sizeof c);
    assert_true(tst_mkdtemp(c.dir, sizeof c.dir));
    add_f32(&c, "model.embed_tokens.weight", V, H);
    add_f32(&c, "model.norm.weight", H, 0);
    add_f32(&c, "model.layers.0.input_layernorm.weight", H, 0);
    add_f32(&c, "model.layers.0.post_attention_layernorm.weight", H, 0);
    enum kind kinds[7] = {K_NVFP4, K_MXFP8, K_NVFP4, K_NVFP4, K_MXFP4, K_NVFP4, K_MXFP8};
    for (int p = 0; p < 7; p++) {
        char mod[128];
        snprintf(mod, sizeof mod, "model.layers.0.%s", proj_names[p]);
        add_proj(&c, mod, kinds[p], proj_rows[p], proj_cols[p]);
    }
    char cfg[2048];
    snprintf(
        cfg, sizeof cfg, llama_cfg,
        ",\"quantization\":{\"group_size\":16,\"bits\":4,\"mode\":\"nvfp4\","
        "\"model.layers.0.self_attn.k_proj\":{\"group_size\":32,\"bits\":8,\"mode\":\"mxfp8\"},"
        "\"model.layers.0.mlp.gate_proj\":{\"group_size\":32,\"bits\":4,\"mode\":\"mxfp4\"},"
        "\"model.layers.0.mlp.down_proj\":{\"mode\":\"mxfp8\"}}");
    assert_true(tst_write_str(c.dir, "config.json", cfg));
    write_st(&c);
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(c.dir, &d, &err) != CELLM_OK) fail_msg("%s", err.msg);
    const struct cellm_layer *L = &d.layers[0];
    const struct cellm_weight *ws[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                        &L->w_gate, &L->w_up, &L->w_down};
    enum cellm_wfmt fm[7] = {CELLM_W_NVFP4, CELLM_W_MXFP8, CELLM_W_NVFP4, CELLM_W_NVFP4,
                             CELLM_W_MXFP4, CELLM_W_NVFP4, CELLM_W_MXFP8};
    for (int p = 0; p < 7; p++)
        expect_weight(ws[p], &c.w[p], fm[p]);
    cellm_desc_free(&d);
    ckpt_free(&c);
}

static void hf_formats_load(void **state)
{
    (void)state;
    struct ckpt c;
    llama(&c, K_BLOCKS, ",\"quantization_config\":{\"quant_method\":\"mxfp4\"}");
    load_ok(&c, CELLM_W_MXFP4);
    ckpt_free(&c);
    llama(&c, K_FP8,
          ",\"quantization_config\":{\"quant_method\":\"fp8\",\"activation_scheme\":\"dynamic\","
          "\"weight_block_size\":[32,32],\"fmt\":\"e4m3\"}");
    load_ok(&c, CELLM_W_FP8BLK);
    ckpt_free(&c);
    llama(&c, K_GPTQ,
          ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,"
          "\"desc_act\":false,\"sym\":true,\"damp_percent\":0.01,\"true_sequential\":true}");
    load_ok(&c, CELLM_W_GPTQ);
    ckpt_free(&c);
    llama(&c, K_GPTQ_DESC,
          ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,"
          "\"desc_act\":true,\"sym\":false,\"checkpoint_format\":\"gptq\"}");
    load_ok(&c, CELLM_W_GPTQ);
    ckpt_free(&c);
    llama(&c, K_AWQ,
          ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32,"
          "\"zero_point\":true,\"version\":\"gemm\"}");
    load_ok(&c, CELLM_W_AWQ);
    ckpt_free(&c);
}

/* gpt-oss-style stacked expert blocks in a Qwen3-MoE layer. */
static void stacked_expert_blocks(void **state)
{
    (void)state;
    struct ckpt c;
    memset(&c, 0, sizeof c);
    assert_true(tst_mkdtemp(c.dir, sizeof c.dir));
    add_f32(&c, "model.embed_tokens.weight", V, H);
    add_f32(&c, "model.norm.weight", H, 0);
    add_f32(&c, "model.layers.0.input_layernorm.weight", H, 0);
    add_f32(&c, "model.layers.0.post_attention_layernorm.weight", H, 0);
    add_f32(&c, "model.layers.0.self_attn.q_norm.weight", 32, 0);
    add_f32(&c, "model.layers.0.self_attn.k_norm.weight", 32, 0);
    add_f32(&c, "model.layers.0.mlp.gate.weight", E, H);
    for (int p = 0; p < 4; p++) {
        char mod[128];
        snprintf(mod, sizeof mod, "model.layers.0.%s", proj_names[p]);
        add_proj(&c, mod, K_BLOCKS, proj_rows[p], proj_cols[p]);
    }
    /* one fmt_w per whole stack: E experts of [2*MI][H] and of [H][MI] */
    add_proj(&c, "model.layers.0.mlp.experts.gate_up_proj", K_BLOCKS, E * 2 * MI, H);
    add_proj(&c, "model.layers.0.mlp.experts.down_proj", K_BLOCKS, E * H, MI);
    /* the stacked shapes: [E, rows, G, 16] and [E, rows, G] */
    for (int k = c.n - 4; k < c.n; k++) {
        struct tst_tensor *t = &c.t[k];
        int64_t rows = t->shape[0] / E;
        for (int i = t->ndim; i > 1; i--)
            t->shape[i] = t->shape[i - 1];
        t->shape[0] = E;
        t->shape[1] = rows;
        t->ndim++;
    }
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"qwen3_moe\",\"vocab_size\":64,\"hidden_size\":64,"
             "\"intermediate_size\":128,\"moe_intermediate_size\":%d,\"num_hidden_layers\":1,"
             "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":32,"
             "\"num_experts\":%d,\"num_experts_per_tok\":2,\"norm_topk_prob\":true,"
             "\"tie_word_embeddings\":true,\"quantization_config\":{\"quant_method\":\"mxfp4\","
             "\"modules_to_not_convert\":[\"model.layers.*.mlp.gate\",\"lm_head\"]}}",
             MI, E);
    assert_true(tst_write_str(c.dir, "config.json", cfg));
    write_st(&c);
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(c.dir, &d, &err) != CELLM_OK) fail_msg("%s", err.msg);
    const struct cellm_layer *L = &d.layers[0];
    struct fmt_w *gu = &c.w[4], *dn = &c.w[5];
    float *row = malloc(H * sizeof *row);
    for (int e = 0; e < E; e++)
        for (int r = 0; r < MI; r++) {
            /* gate rows then up rows of each expert's fused [2*MI][H] block */
            cellm_weight_row(&L->e_gate[e], r, row);
            assert_memory_equal(row, gu->ref + ((size_t)e * 2 * MI + r) * H, H * 4);
            cellm_weight_row(&L->e_up[e], r, row);
            assert_memory_equal(row, gu->ref + ((size_t)e * 2 * MI + MI + r) * H, H * 4);
        }
    for (int e = 0; e < E; e++)
        for (int r = 0; r < H; r++) {
            cellm_weight_row(&L->e_down[e], r, row);
            assert_memory_equal(row, dn->ref + ((size_t)e * H + r) * MI, MI * 4);
        }
    free(row);
    cellm_desc_free(&d);
    ckpt_free(&c);
}

/* ---- malformed -------------------------------------------------------------------------- */

static void mx_malformed(void **state)
{
    (void)state;
    struct ckpt c;
    /* config: a mode with bits or a group it cannot have, an unknown mode */
    llama(&c, K_MXFP4, q_mx("mxfp4", 8, 32));
    load_fails(&c, CELLM_ERR_FORMAT, "quantization: mode \"mxfp4\" has 4-bit codes; bits is 8",
               NULL);
    ckpt_free(&c);
    llama(&c, K_NVFP4, q_mx("nvfp4", 4, 32));
    load_fails(&c, CELLM_ERR_FORMAT,
               "quantization: mode \"nvfp4\" has group size 16; group_size is 32", NULL);
    ckpt_free(&c);
    llama(&c, K_MXFP4, q_mx("mxint4", 4, 32));
    load_fails(&c, CELLM_ERR_UNSUPPORTED, "quantization mode \"mxint4\" is not supported", NULL);
    ckpt_free(&c);
    /* scales of the wrong dtype */
    llama(&c, K_MXFP4, q_mx("mxfp4", 4, 32));
    int k = find(&c, "model.layers.0.self_attn.q_proj.scales");
    snprintf(c.t[k].dtype, sizeof c.t[k].dtype, "I8");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj.scales has dtype I8; expected U8 (E8M0 "
               "scales of an mx mode)",
               NULL);
    ckpt_free(&c);
    /* scales shaped for another group size */
    llama(&c, K_NVFP4, q_mx("nvfp4", 4, 16));
    k = find(&c, "model.layers.0.mlp.down_proj.scales");
    c.t[k].shape[1] = 4;
    c.t[k].nbytes = 64 * 4;
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.mlp.down_proj.scales has shape [64, 4]; mode \"nvfp4\" "
               "expects [64, 8]",
               NULL);
    ckpt_free(&c);
    /* codes of the wrong width */
    llama(&c, K_MXFP8, q_mx("mxfp8", 8, 32));
    k = find(&c, "model.layers.0.self_attn.o_proj.weight");
    c.t[k].shape[1] = 8;
    c.t[k].nbytes = 64 * 8 * 4;
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.o_proj.weight has shape [64, 8]; mode \"mxfp8\" "
               "expects [64, 16]",
               NULL);
    ckpt_free(&c);
    /* biases with a mode that has none */
    llama(&c, K_MXFP4, q_mx("mxfp4", 4, 32));
    add(&c, "model.layers.0.mlp.up_proj.biases", "F16", 2, 128, 2, 0, NULL, 128 * 2 * 2);
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.mlp.up_proj.biases exists but mode \"mxfp4\" (config.json) "
               "has no biases",
               NULL);
    ckpt_free(&c);
    /* gpt-oss blocks: wrong block width, wrong config */
    llama(&c, K_BLOCKS, ",\"quantization_config\":{\"quant_method\":\"mxfp4\"}");
    k = find(&c, "model.layers.0.self_attn.k_proj_blocks");
    c.t[k].shape[2] = 8;
    c.t[k].nbytes /= 2;
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.k_proj_blocks has shape [32, 2, 8]; mxfp4 expects "
               "[32, 2, 16]",
               NULL);
    ckpt_free(&c);
    llama(&c, K_BLOCKS, "");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj_blocks is mxfp4 blocks but config.json's "
               "quantization_config has quant_method \"none\"",
               NULL);
    ckpt_free(&c);
}

static const char *q_fp8 =
    ",\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[32,32]}";
static const char *q_gptq = ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
                            "\"group_size\":32,\"desc_act\":true}";

static void hf_malformed(void **state)
{
    (void)state;
    struct ckpt c;
    llama(&c, K_FP8, q_fp8);
    int k = find(&c, "model.layers.0.mlp.gate_proj.weight_scale_inv");
    c.t[k].shape[0] = 3;
    c.t[k].nbytes = 3 * 2 * 4;
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.mlp.gate_proj.weight_scale_inv has shape [3, 2]; "
               "weight_block_size from config.json expects [4, 2]",
               NULL);
    ckpt_free(&c);
    llama(&c, K_FP8, q_fp8);
    k = find(&c, "model.layers.0.mlp.gate_proj.weight_scale_inv");
    snprintf(c.t[k].dtype, sizeof c.t[k].dtype, "U8");
    c.t[k].nbytes /= 4;
    load_fails(&c, CELLM_ERR_FORMAT,
               "weight_scale_inv has dtype U8; expected F32, BF16 or F16 block scales", NULL);
    ckpt_free(&c);
    llama(&c, K_FP8, "");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj.weight is F8_E4M3 but config.json's "
               "quantization_config has quant_method \"none\"",
               NULL);
    ckpt_free(&c);
    /* g_idx out of range, of the wrong length, missing under desc_act */
    llama(&c, K_GPTQ_DESC, q_gptq);
    int32_t *g = (int32_t *)(void *)c.w[0].gidx;
    g[17] = 2; /* q_proj has 64 inputs: groups 0 and 1 */
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj.g_idx: g_idx[17] is 2; expected a group "
               "in [0, 2)",
               NULL);
    ckpt_free(&c);
    llama(&c, K_GPTQ_DESC, q_gptq);
    g = (int32_t *)(void *)c.w[1].gidx;
    g[3] = -1;
    load_fails(&c, CELLM_ERR_FORMAT, "g_idx[3] is -1; expected a group in [0, 2)", NULL);
    ckpt_free(&c);
    llama(&c, K_GPTQ_DESC, q_gptq);
    k = find(&c, "model.layers.0.mlp.down_proj.g_idx");
    c.t[k].shape[0] = 64;
    c.t[k].nbytes = 64 * 4;
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.mlp.down_proj.g_idx has shape [64]; one group per input "
               "expects [128]",
               NULL);
    ckpt_free(&c);
    llama(&c, K_GPTQ, q_gptq); /* desc_act true but no g_idx tensors */
    load_fails(&c, CELLM_ERR_NOT_FOUND, "model.layers.0.self_attn.q_proj.g_idx", NULL);
    ckpt_free(&c);
    /* zeros and codes shaped for another packing */
    llama(&c, K_GPTQ,
          ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
          "\"group_size\":64}");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj.qzeros has shape [2, 8]; GPTQ 4-bit with "
               "group_size 64 expects [1, 8]",
               NULL);
    ckpt_free(&c);
    llama(&c, K_AWQ,
          ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
          "\"group_size\":32}");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.q_proj.qweight has shape [64, 8]; GPTQ 4-bit "
               "with group_size 32 expects [8, 64]",
               NULL);
    ckpt_free(&c);
    llama(&c, K_AWQ,
          ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,"
          "\"group_size\":32}");
    k = find(&c, "model.layers.0.self_attn.v_proj.scales");
    snprintf(c.t[k].dtype, sizeof c.t[k].dtype, "I16");
    load_fails(&c, CELLM_ERR_FORMAT,
               "tensor model.layers.0.self_attn.v_proj.scales has dtype I16; expected F16 scales",
               NULL);
    ckpt_free(&c);
}

/* Methods and keys refused by name. */
static void hf_refused(void **state)
{
    (void)state;
    static const struct {
        const char *q, *msg;
        enum cellm_status st;
    } cases[] = {
        {"{\"quant_method\":\"bitsandbytes\",\"load_in_4bit\":true}",
         "quantization_config.quant_method \"bitsandbytes\" is not supported",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,\"foo\":1}",
         "quantization_config.foo: key not supported for quant_method \"gptq\"",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"gptq\",\"bits\":3,\"group_size\":32}",
         "quantization_config.bits is 3; cellm reads GPTQ with 4 or 8 bits", CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":0}",
         "quantization_config.group_size is 0; expected -1 or a positive group size",
         CELLM_ERR_FORMAT},
        {"{\"quant_method\":\"gptq\",\"bits\":4,\"checkpoint_format\":\"marlin\"}",
         "quantization_config.checkpoint_format is \"marlin\"; cellm reads \"gptq\" or "
         "\"gptq_v2\"",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":128,\"version\":\"gemv\"}",
         "quantization_config.version is \"gemv\"; cellm reads \"gemm\"", CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":128,\"zero_point\":false}",
         "quantization_config.zero_point is false", CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"awq\",\"bits\":8,\"group_size\":128}",
         "quantization_config.bits is 8; AWQ (version gemm) packs 4-bit codes",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"fp8\",\"weight_block_size\":[128,128],\"activation_scheme\":"
         "\"static\"}",
         "quantization_config.activation_scheme is \"static\"; cellm reads \"dynamic\"",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"fp8\"}", "quantization_config.weight_block_size is missing",
         CELLM_ERR_UNSUPPORTED},
        {"{\"quant_method\":\"fp8\",\"weight_block_size\":[128]}",
         "quantization_config.weight_block_size: expected an array of 2 positive integers",
         CELLM_ERR_FORMAT},
        {"{\"quant_method\":\"mxfp4\",\"modules_to_not_convert\":\"lm_head\"}",
         "quantization_config.modules_to_not_convert is a string, expected an array",
         CELLM_ERR_FORMAT},
        {"[1]", "\"quantization_config\" is a array, expected an object", CELLM_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char q[512];
        snprintf(q, sizeof q, ",\"quantization_config\":%s", cases[i].q);
        struct ckpt c;
        llama(&c, K_MXFP4, q);
        load_fails(&c, cases[i].st, cases[i].msg, NULL);
        ckpt_free(&c);
    }
}

/* ---- the whole model ---------------------------------------------------------------- */

/* The same Llama with its projections stored as the test's F32 values. */
static void write_twin(const struct ckpt *c, const char *dir)
{
    struct tst_tensor t[16];
    for (int i = 0; i < 4; i++)
        t[i] = c->t[i]; /* embedding and norms come first */
    for (int p = 0; p < 7; p++) {
        struct tst_tensor *x = &t[4 + p];
        memset(x, 0, sizeof *x);
        snprintf(x->name, sizeof x->name, "model.layers.0.%s.weight", proj_names[p]);
        snprintf(x->dtype, sizeof x->dtype, "F32");
        x->ndim = 2;
        x->shape[0] = proj_rows[p];
        x->shape[1] = proj_cols[p];
        x->data = c->w[p].ref;
        x->nbytes = (size_t)proj_rows[p] * (size_t)proj_cols[p] * 4;
    }
    char path[512], cfg[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_true(tst_st_write(path, t, 11));
    snprintf(cfg, sizeof cfg, llama_cfg, "");
    assert_true(tst_write_str(dir, "config.json", cfg));
}

/* Prompt logits (a 7-token prefill: the GEMM path) and 3 decode steps (the decode path). */
static float *run_model(const char *dir, enum cellm_precision prec)
{
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 2;
    mp.precision = prec;
    struct cellm_model *m;
    struct cellm_ctx *ctx;
    struct cellm_error err;
    if (cellm_model_load(dir, &mp, &m, &err) != CELLM_OK) fail_msg("%s", err.msg);
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(m, &cp, &ctx, &err) != CELLM_OK) fail_msg("%s", err.msg);
    int seq = cellm_ctx_seq_new(ctx);
    float *out = malloc(10 * V * sizeof *out);
    struct cellm_batch_item items[7];
    static const int32_t prompt[7] = {1, 5, 9, 13, 2, 40, 63};
    for (int i = 0; i < 7; i++)
        items[i] = (struct cellm_batch_item){prompt[i], seq, 1};
    const float *lg;
    if (cellm_ctx_eval(ctx, items, 7, &lg, &err) != CELLM_OK) fail_msg("%s", err.msg);
    memcpy(out, lg, 7 * V * sizeof *out);
    for (int s = 0; s < 3; s++) {
        struct cellm_batch_item it = {(int32_t)(7 * s + 3), seq, 1};
        if (cellm_ctx_eval(ctx, &it, 1, &lg, &err) != CELLM_OK) fail_msg("%s", err.msg);
        memcpy(out + (7 + s) * V, lg, V * sizeof *out);
    }
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return out;
}

/* A model stored in each format computes what the model with its dequantized weights
 * computes, bit for bit (exact mode: the products use the exactly reconstructed weights,
 * through the same kernels' summation order), and in fast mode too, against the F32 model
 * in fast mode (F32 weights and these formats both take the exact products there). */
static void engine_matches_dequantized(void **state)
{
    (void)state;
    static const struct {
        enum kind k;
        const char *q;
    } v[] = {
        {K_MXFP4, ",\"quantization\":{\"group_size\":32,\"bits\":4,\"mode\":\"mxfp4\"}"},
        {K_MXFP8, ",\"quantization\":{\"group_size\":32,\"bits\":8,\"mode\":\"mxfp8\"}"},
        {K_NVFP4, ",\"quantization\":{\"group_size\":16,\"bits\":4,\"mode\":\"nvfp4\"}"},
        {K_BLOCKS, ",\"quantization_config\":{\"quant_method\":\"mxfp4\"}"},
        {K_FP8,
         ",\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[32,32]}"},
        {K_GPTQ_DESC, ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
                      "\"group_size\":32,\"desc_act\":true}"},
        {K_AWQ, ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32}"},
    };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        struct ckpt c;
        llama(&c, v[i].k, v[i].q);
        write_st(&c);
        char twin[256];
        assert_true(tst_mkdtemp(twin, sizeof twin));
        write_twin(&c, twin);
        for (int prec = 0; prec < 2; prec++) {
            float *a = run_model(c.dir, (enum cellm_precision)prec);
            float *b = run_model(twin, (enum cellm_precision)prec);
            /* prompt rows: the GEMM reads both through the same packed panels, so bit for
             * bit; decode rows: the fused small-float kernels sum in another order than
             * the F32 row-block path, so within float32 summation error: 64- and
             * 128-term sums, relative 2^-24 each, through one layer, bounded by 2^-14 of
             * the row's largest logit */
            for (int k = 0; k < 10 * V; k++) {
                int row = k / V;
                if (!isfinite(b[k]))
                    fail_msg("%s: logit %d of row %d is %a", v[i].q, k % V, row, (double)b[k]);
                double mx = 0;
                for (int t = 0; t < V; t++)
                    mx = fmax(mx, fabs((double)b[row * V + t]));
                int ok = row < 7 ? cellm_f32_bits(a[k]) == cellm_f32_bits(b[k])
                                 : fabs((double)a[k] - (double)b[k]) <= 0x1p-14 * mx;
                if (!ok)
                    fail_msg("%s (%s): logit %d of row %d is %a; dequantized F32 model: %a", v[i].q,
                             prec ? "fast" : "exact", k % V, row, (double)a[k], (double)b[k]);
            }
            free(a);
            free(b);
        }
        tst_rm_rf(twin);
        ckpt_free(&c);
    }
}

/* Writes one checkpoint per format under dir (they stay). */
static int write_all(const char *dir)
{
    static const struct {
        const char *name;
        enum kind k;
        const char *q;
    } v[] = {
        {"mxfp4", K_MXFP4, ",\"quantization\":{\"group_size\":32,\"bits\":4,\"mode\":\"mxfp4\"}"},
        {"mxfp8", K_MXFP8, ",\"quantization\":{\"group_size\":32,\"bits\":8,\"mode\":\"mxfp8\"}"},
        {"nvfp4", K_NVFP4, ",\"quantization\":{\"group_size\":16,\"bits\":4,\"mode\":\"nvfp4\"}"},
        {"gptoss-mxfp4", K_BLOCKS, ",\"quantization_config\":{\"quant_method\":\"mxfp4\"}"},
        {"fp8", K_FP8,
         ",\"quantization_config\":{\"quant_method\":\"fp8\",\"weight_block_size\":[32,32]}"},
        {"gptq", K_GPTQ_DESC,
         ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":32,"
         "\"desc_act\":true}"},
        {"awq", K_AWQ,
         ",\"quantization_config\":{\"quant_method\":\"awq\",\"bits\":4,\"group_size\":32,"
         "\"version\":\"GEMM\"}"},
    };
    keep_dir = dir;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        struct ckpt c;
        keep_name = v[i].name;
        llama(&c, v[i].k, v[i].q);
        write_st(&c);
        ckpt_free(&c);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_all(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlx_modes_load),  cmocka_unit_test(mlx_mixed_modes),
        cmocka_unit_test(hf_formats_load), cmocka_unit_test(stacked_expert_blocks),
        cmocka_unit_test(mx_malformed),    cmocka_unit_test(hf_malformed),
        cmocka_unit_test(hf_refused),      cmocka_unit_test(engine_matches_dequantized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
