/*
 * test_ckpt.c: checkpoint directories and weight binding (src/checkpoint/ckpt.c,
 * src/model/bind.c), through cellm_desc_load and the public cellm_model_load.
 *
 * Each case starts from a small fixture, rewrites it into a temporary directory with one
 * thing wrong (a shard missing, a tensor dropped, duplicated, renamed or retyped, the
 * config contradicting the shapes) and checks the status and the words of the message:
 * the file, the tensor, what was found and what was expected. The layouts that must load
 * (every fixture, shards with a stale index, the language_model. scheme) load, and every
 * allocation failing in turn during a load gives CELLM_ERR_NOMEM without a leak.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/mapfile.h"
#include "cellm.h"
#include "checkpoint/ckpt.h"
#include "model/model.h"
#include "st_util.h"

struct work {
    char dir[256];
    struct cellm_st_file src; /* the fixture's model.safetensors */
    struct tst_tensor *t;     /* its tensors, to edit */
    int n;
};

static void contains(const char *msg, const char *word)
{
    if (!strstr(msg, word)) fail_msg("message \"%s\" lacks \"%s\"", msg, word);
}

static void path(char *buf, size_t n, const struct work *w, const char *name)
{
    snprintf(buf, n, "%s/%s", w->dir, name);
}

/* config.json of the fixture with every `from` replaced by `to` (from NULL: unchanged). */
static void write_config(struct work *w, const char *fixture, const char *from, const char *to)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s/config.json", CELLM_FIXTURES, fixture);
    char *text;
    size_t len;
    struct cellm_error err;
    assert_int_equal(cellm_read_file(p, &text, &len, &err), CELLM_OK);
    size_t cap = len * 2 + 1024, k = 0;
    char *out = malloc(cap);
    assert_non_null(out);
    for (const char *s = text; *s;) {
        if (from && !strncmp(s, from, strlen(from))) {
            k += (size_t)snprintf(out + k, cap - k, "%s", to);
            s += strlen(from);
        } else {
            out[k++] = *s++;
        }
    }
    out[k] = 0;
    assert_true(!from || strstr(text, from)); /* the edit must apply */
    path(p, sizeof p, w, "config.json");
    assert_true(tst_write(p, out, k));
    free(out);
    cellm_free(text);
}

static void start(struct work *w, const char *fixture)
{
    memset(w, 0, sizeof *w);
    assert_true(tst_mkdtemp(w->dir, sizeof w->dir));
    char p[512];
    struct cellm_error err;
    snprintf(p, sizeof p, "%s/%s/model.safetensors", CELLM_FIXTURES, fixture);
    if (cellm_st_open(p, &w->src, &err) != CELLM_OK) fail_msg("%s", err.msg);
    w->t = tst_st_list(&w->src, 8);
    assert_non_null(w->t);
    w->n = w->src.n;
    write_config(w, fixture, NULL, NULL);
}

static void finish(struct work *w)
{
    free(w->t);
    cellm_st_close(&w->src);
    tst_rm_rf(w->dir);
}

static int idx(const struct work *w, const char *name)
{
    int i = tst_find(w->t, w->n, name);
    if (i < 0) fail_msg("fixture lacks %s", name);
    return i;
}

static void drop(struct work *w, const char *name)
{
    int i = idx(w, name);
    memmove(&w->t[i], &w->t[i + 1], (size_t)(w->n - i - 1) * sizeof *w->t);
    w->n--;
}

/* Renames a tensor into the language_model. scheme. */
static void nest(struct tst_tensor *t)
{
    char nm[sizeof t->name];
    assert_true(strlen(t->name) + 15 < sizeof nm);
    memcpy(nm, "language_model.", 15);
    memcpy(nm + 15, t->name, strlen(t->name) + 1);
    memcpy(t->name, nm, sizeof nm);
}

/* Writes tensors [from, to) of the list into one file. */
static void write_part(struct work *w, const char *name, int from, int to)
{
    char p[512];
    path(p, sizeof p, w, name);
    assert_true(tst_st_write(p, w->t + from, to - from));
}

static void write_all(struct work *w)
{
    write_part(w, "model.safetensors", 0, w->n);
}

static enum cellm_status load(struct work *w, struct cellm_error *err)
{
    struct cellm_desc d;
    err->msg[0] = 0;
    enum cellm_status st = cellm_desc_load(w->dir, &d, err);
    if (st == CELLM_OK) cellm_desc_free(&d);
    return st;
}

static void expect_fail(struct work *w, enum cellm_status want, const char *w1, const char *w2,
                        const char *w3)
{
    struct cellm_error err;
    enum cellm_status st = load(w, &err);
    if (st != want)
        fail_msg("status %d (%s), expected %d (%s); message: %s", st, cellm_status_str(st), want,
                 cellm_status_str(want), st ? err.msg : "");
    const char *ws[] = {w1, w2, w3};
    for (int i = 0; i < 3; i++)
        if (ws[i]) contains(err.msg, ws[i]);
}

/* ---- layouts that load ----------------------------------------------------------------- */

static void every_fixture_binds(void **state)
{
    (void)state;
    DIR *top = opendir(CELLM_FIXTURES);
    assert_non_null(top);
    struct dirent *fam;
    int count = 0;
    while ((fam = readdir(top))) {
        char fdir[512];
        snprintf(fdir, sizeof fdir, "%s/%s", CELLM_FIXTURES, fam->d_name);
        DIR *d = fam->d_name[0] == '.' ? NULL : opendir(fdir);
        struct dirent *v;
        while (d && (v = readdir(d))) {
            if (v->d_name[0] == '.') continue;
            char dir[800];
            snprintf(dir, sizeof dir, "%s/%s", fdir, v->d_name);
            struct cellm_desc desc;
            struct cellm_error err;
            if (cellm_desc_load(dir, &desc, &err) != CELLM_OK) fail_msg("%s: %s", dir, err.msg);
            assert_true(desc.n_params > 0 && desc.n_bytes > 0);
            assert_string_equal(desc.warnings, "");
            /* Qwen3.5's published multimodal layout carries its vision tower (skipped) */
            if (!strcmp(v->d_name, "bf16-vlm") && !strncmp(fam->d_name, "qwen3.5", 7))
                assert_true(desc.ckpt.n_ignored > 0);
            else
                assert_int_equal(desc.ckpt.n_ignored, 0);
            /* quantized fixtures bind affine weights with the config's parameters */
            int bits, group;
            if (sscanf(v->d_name, "q%d-g%d", &bits, &group) == 2) {
                const struct cellm_weight *q =
                    &desc.layers[0].wq; /* Granite keeps o_proj at 8 bits */
                assert_int_equal(q->fmt, CELLM_W_AFFINE);
                assert_int_equal(q->bits, bits);
                assert_int_equal(q->group, group);
                assert_int_equal(q->sdtype,
                                 strstr(v->d_name, "bf16") ? CELLM_DT_BF16 : CELLM_DT_F16);
                assert_int_equal(desc.embed.fmt, CELLM_W_AFFINE);
            }
            if (strstr(v->d_name, "shard")) {
                int shards = 0;
                sscanf(strstr(v->d_name, "shard"), "shard%d", &shards);
                assert_int_equal(desc.ckpt.n_files, shards);
            } else {
                assert_int_equal(desc.ckpt.n_files, 1);
            }
            if (desc.cfg.tie_embeddings) assert_ptr_equal(desc.head.data, desc.embed.data);
            cellm_desc_free(&desc);
            count++;
        }
        if (d) closedir(d);
    }
    closedir(top);
    assert_true(count >= 48);
}

/* Specific layouts: v5 fused experts are covered by the fixtures' siblings; here the
 * mixed-bits and stacked/per-expert MoE and the VLM scheme are checked in detail. */
static void layouts_in_detail(void **state)
{
    (void)state;
    struct cellm_desc d;
    struct cellm_error err;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama3-untied/q4-g64-f16-mixed", CELLM_FIXTURES);
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    assert_int_equal(d.layers[0].w_down.bits, 8);
    assert_int_equal(d.layers[0].w_up.bits, 4);
    cellm_desc_free(&d);

    snprintf(dir, sizeof dir, "%s/qwen3-moe/q4-g64-bf16-stacked", CELLM_FIXTURES);
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    assert_true(d.layers[1].moe);
    assert_int_equal(d.layers[1].router.bits, 8);
    assert_int_equal(d.layers[1].router.rows, 8);
    /* the stacked experts are quantized too (the fixture as remade on 2026-12-07) */
    assert_int_equal(d.layers[1].e_down[7].fmt, CELLM_W_AFFINE);
    assert_int_equal(d.layers[1].e_down[7].bits, 4);
    assert_int_equal(d.layers[1].e_down[7].group, 64);
    assert_int_equal(d.layers[1].e_down[7].rows, 64);
    /* [rows][cols / group] 16-bit scales per expert, experts back to back */
    assert_ptr_equal(d.layers[1].e_down[7].scales,
                     d.layers[1].e_down[0].scales + 7 * 64 * (d.layers[1].e_down[0].cols / 64) * 2);
    /* expert 7's codes are the last slice of the stacked tensor */
    assert_ptr_equal(d.layers[1].e_gate[7].data,
                     d.layers[1].e_gate[0].data + 7 * 64 * d.layers[1].e_gate[0].row_bytes);
    cellm_desc_free(&d);

    snprintf(dir, sizeof dir, "%s/qwen3-moe/bf16", CELLM_FIXTURES);
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    assert_int_equal(d.layers[0].e_up[3].fmt, CELLM_W_BF16);
    assert_int_equal(d.layers[0].e_up[3].rows, 64);
    cellm_desc_free(&d);

    snprintf(dir, sizeof dir, "%s/gemma3/q4-g64-bf16-vlm", CELLM_FIXTURES);
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    assert_string_equal(d.ckpt.scheme, "language_model.");
    assert_int_equal(d.embed.fmt, CELLM_W_AFFINE);
    assert_ptr_equal(d.head.scales, d.embed.scales); /* tied to the quantized embedding */
    cellm_desc_free(&d);

    snprintf(dir, sizeof dir, "%s/phi3/q4-g64-f16", CELLM_FIXTURES);
    assert_int_equal(cellm_desc_load(dir, &d, &err), CELLM_OK);
    /* fused qkv_proj split into views: k starts n_heads*head_dim rows in */
    assert_ptr_equal(d.layers[0].wk.data, d.layers[0].wq.data + 64 * d.layers[0].wq.row_bytes);
    assert_ptr_equal(d.layers[0].wk.scales, d.layers[0].wq.scales + 64 * (64 / 64) * 2);
    assert_ptr_equal(d.layers[0].w_up.data,
                     d.layers[0].w_gate.data + 128 * d.layers[0].w_gate.row_bytes);
    cellm_desc_free(&d);
}

/* Shards named by a stale index that the present files cover: loads, with a warning. */
static void stale_index_fallback_loads(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/q4-g64-f16");
    write_part(&w, "model-00001-of-00002.safetensors", 0, w.n / 2);
    write_part(&w, "model-00002-of-00002.safetensors", w.n / 2, w.n);
    /* the index of the unquantized source repo: three shards, none present */
    char idx_json[16384];
    size_t k = (size_t)snprintf(idx_json, sizeof idx_json,
                                "{\"metadata\":{\"total_size\":1},\"weight_map\":{");
    for (int i = 0; i < w.n; i++)
        k += (size_t)snprintf(idx_json + k, sizeof idx_json - k,
                              "%s\"%s\":\"model-0000%d-of-00003.safetensors\"", i ? "," : "",
                              w.t[i].name, 1 + i % 3);
    snprintf(idx_json + k, sizeof idx_json - k, "}}");
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json", idx_json));

    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 1;
    struct cellm_model *m;
    struct cellm_error err;
    if (cellm_model_load(w.dir, &mp, &m, &err) != CELLM_OK) fail_msg("%s", err.msg);
    const char *warn = cellm_model_warnings(m);
    contains(warn, "model.safetensors.index.json");
    contains(warn, "-of-00003.safetensors");
    contains(warn, "does not exist");
    cellm_model_free(m);
    finish(&w);
}

/* A stale index whose missing shard held needed tensors: the error names both. */
static void stale_index_missing_shard(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/q4-g64-f16");
    /* the embedding goes in the shard that is not there */
    struct tst_tensor *sorted = malloc((size_t)w.n * sizeof *sorted);
    assert_non_null(sorted);
    int a = 0, b = 0;
    for (int i = 0; i < w.n; i++)
        if (strncmp(w.t[i].name, "model.embed_tokens.", 19)) sorted[a++] = w.t[i];
    for (int i = 0; i < w.n; i++)
        if (!strncmp(w.t[i].name, "model.embed_tokens.", 19)) sorted[a + b++] = w.t[i];
    memcpy(w.t, sorted, (size_t)w.n * sizeof *sorted);
    free(sorted);
    write_part(&w, "model-00001-of-00002.safetensors", 0, a);
    char idx_json[16384];
    size_t k = (size_t)snprintf(idx_json, sizeof idx_json, "{\"weight_map\":{");
    for (int i = 0; i < w.n; i++)
        k += (size_t)snprintf(idx_json + k, sizeof idx_json - k,
                              "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", i ? "," : "",
                              w.t[i].name, i < a ? 1 : 2);
    snprintf(idx_json + k, sizeof idx_json - k, "}}");
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json", idx_json));
    expect_fail(&w, CELLM_ERR_NOT_FOUND, "model-00002-of-00002.safetensors",
                "tensor model.embed_tokens.weight is missing", "does not exist");
    /* through the public API too */
    struct cellm_model *m = NULL;
    struct cellm_error err;
    assert_int_equal(cellm_model_load(w.dir, NULL, &m, &err), CELLM_ERR_NOT_FOUND);
    assert_null(m);
    contains(err.msg, "model-00002-of-00002.safetensors");
    finish(&w);
}

/* With a complete index, every named shard must hold what the index says. */
static void index_disagrees(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/bf16");
    write_part(&w, "model-00001-of-00002.safetensors", 0, w.n / 2);
    write_part(&w, "model-00002-of-00002.safetensors", w.n / 2, w.n);
    char idx_json[16384];
    size_t k = (size_t)snprintf(idx_json, sizeof idx_json, "{\"weight_map\":{");
    for (int i = 0; i < w.n; i++) /* everything claimed by shard 1 */
        k += (size_t)snprintf(idx_json + k, sizeof idx_json - k,
                              "%s\"%s\":\"model-00001-of-00002.safetensors\"", i ? "," : "",
                              w.t[i].name);
    k += (size_t)snprintf(idx_json + k, sizeof idx_json - k,
                          ",\"x\":\"model-00002-of-00002.safetensors\"}}");
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json", idx_json));
    expect_fail(&w, CELLM_ERR_FORMAT, "model.safetensors.index.json", "weight_map puts tensor",
                "model-00001-of-00002.safetensors");
    /* an index entry that tries to leave the directory */
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json",
                              "{\"weight_map\":{\"a\":\"../model.safetensors\"}}"));
    expect_fail(&w, CELLM_ERR_FORMAT, "../model.safetensors", "expected a file in the directory",
                NULL);
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json", "{\"weight_map\":[]}"));
    expect_fail(&w, CELLM_ERR_FORMAT, "weight_map", "not an object", NULL);
    assert_true(tst_write_str(w.dir, "model.safetensors.index.json", "{\"weight_map\":"));
    expect_fail(&w, CELLM_ERR_FORMAT, "model.safetensors.index.json", "invalid JSON", NULL);
    finish(&w);
}

static void tensor_in_two_shards(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/bf16");
    write_part(&w, "model-00001-of-00002.safetensors", 0, w.n / 2 + 1);
    write_part(&w, "model-00002-of-00002.safetensors", w.n / 2, w.n);
    char both[256];
    snprintf(both, sizeof both, "tensor %s is in both", w.t[w.n / 2].name);
    expect_fail(&w, CELLM_ERR_FORMAT, both, "model-00001-of-00002.safetensors",
                "model-00002-of-00002.safetensors");
    finish(&w);
}

static void missing_tensor(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/bf16");
    drop(&w, "model.layers.1.mlp.up_proj.weight");
    write_all(&w);
    expect_fail(&w, CELLM_ERR_NOT_FOUND, "model.layers.1.mlp.up_proj.weight", "missing", NULL);
    finish(&w);

    start(&w, "llama3-untied/bf16");
    drop(&w, "lm_head.weight"); /* untied: the head is needed */
    write_all(&w);
    expect_fail(&w, CELLM_ERR_NOT_FOUND, "lm_head.weight", "missing", NULL);
    finish(&w);

    /* an empty directory */
    start(&w, "llama3-untied/bf16");
    expect_fail(&w, CELLM_ERR_NOT_FOUND, "no model.safetensors", NULL, NULL);
    finish(&w);
}

static void shape_contradicts_config(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/bf16");
    write_all(&w);
    write_config(&w, "llama3-untied/bf16", "\"intermediate_size\": 128",
                 "\"intermediate_size\": 96");
    expect_fail(&w, CELLM_ERR_FORMAT, "model.layers.0.mlp.gate_proj.weight has shape [128, 64]",
                "the config implies [96, 64]", "model.safetensors");
    finish(&w);

    /* quantized: 8 bits in the config, 4-bit codes on disk */
    start(&w, "llama3-untied/q4-g64-f16");
    write_all(&w);
    write_config(&w, "llama3-untied/q4-g64-f16", "\"bits\": 4", "\"bits\": 8");
    expect_fail(&w, CELLM_ERR_FORMAT, "model.embed_tokens.weight has shape [384, 8]",
                "with 8 bits the config implies [384, 16]", NULL);
    finish(&w);

    /* group size 32 in the config, scales for 64 on disk */
    start(&w, "llama3-untied/q4-g64-f16");
    write_all(&w);
    write_config(&w, "llama3-untied/q4-g64-f16", "\"group_size\": 64", "\"group_size\": 32");
    expect_fail(&w, CELLM_ERR_FORMAT, "model.embed_tokens.scales has shape [384, 1]",
                "with group size 32 expected [384, 2]", NULL);
    finish(&w);

    /* a norm vector of the wrong length */
    start(&w, "llama3-untied/bf16");
    w.t[idx(&w, "model.norm.weight")].shape[0] = 32;
    w.t[idx(&w, "model.norm.weight")].nbytes = 64;
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT, "model.norm.weight has shape [32]", "expected [64]", NULL);
    finish(&w);
}

static void scales_biases_mismatch(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/q4-g64-f16");
    strcpy(w.t[idx(&w, "model.layers.0.self_attn.q_proj.scales")].dtype, "BF16");
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT,
                "model.safetensors: tensor model.layers.0.self_attn.q_proj.scales has dtype BF16 "
                "but its biases are F16",
                "share one 16-bit type", NULL);
    finish(&w);

    /* both F32: same dtype, but not a 16-bit pair */
    start(&w, "llama3-untied/q4-g64-f16");
    static uint8_t zeros4[64 * 4 * 2];
    for (int k = 0; k < 2; k++) {
        struct tst_tensor *t = &w.t[idx(&w, k ? "model.layers.0.self_attn.q_proj.biases"
                                              : "model.layers.0.self_attn.q_proj.scales")];
        strcpy(t->dtype, "F32");
        t->nbytes *= 2;
        t->data = zeros4;
    }
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT, "q_proj.scales has dtype F32", "biases are F32", "16-bit");
    finish(&w);

    /* scales without biases */
    start(&w, "llama3-untied/q4-g64-f16");
    drop(&w, "model.layers.0.mlp.up_proj.biases");
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT, "model.layers.0.mlp.up_proj.scales exists",
                "model.layers.0.mlp.up_proj.biases does not", NULL);
    finish(&w);

    /* codes that are not U32 */
    start(&w, "llama3-untied/q4-g64-f16");
    strcpy(w.t[idx(&w, "model.layers.0.mlp.up_proj.weight")].dtype, "I32");
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT, "model.layers.0.mlp.up_proj.weight is quantized", "dtype I32",
                "expected U32");
    finish(&w);
}

static void f64_weights(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/bf16");
    struct tst_tensor *t = &w.t[idx(&w, "model.layers.0.mlp.down_proj.weight")];
    strcpy(t->dtype, "F64");
    t->nbytes *= 4;
    t->data = NULL; /* zeros */
    write_all(&w);
    expect_fail(&w, CELLM_ERR_UNSUPPORTED, "model.layers.0.mlp.down_proj.weight has dtype F64",
                "F32, F16, BF16", NULL);
    finish(&w);
    /* a norm vector in I8 */
    start(&w, "llama3-untied/bf16");
    t = &w.t[idx(&w, "model.norm.weight")];
    strcpy(t->dtype, "I8");
    t->nbytes /= 2;
    write_all(&w);
    expect_fail(&w, CELLM_ERR_UNSUPPORTED, "model.norm.weight has dtype I8", NULL, NULL);
    finish(&w);
}

static void quantization_config_errors(void **state)
{
    (void)state;
    struct work w;
    start(&w, "llama3-untied/q4-g64-f16");
    write_all(&w);
    write_config(&w, "llama3-untied/q4-g64-f16", "\"bits\": 4", "\"bits\": 7");
    expect_fail(&w, CELLM_ERR_UNSUPPORTED, "config.json", "7-bit quantization is not supported",
                NULL);
    finish(&w);

    /* per-module override false, yet the module has .scales */
    start(&w, "llama3-untied/q4-g64-f16");
    write_all(&w);
    write_config(&w, "llama3-untied/q4-g64-f16", "\"quantization\": {",
                 "\"quantization\": {\"model.layers.0.mlp.up_proj\": false, ");
    expect_fail(&w, CELLM_ERR_FORMAT, "model.layers.0.mlp.up_proj.weight has .scales",
                "\"model.layers.0.mlp.up_proj\": false", NULL);
    finish(&w);

    /* no quantization block at all (neither key: mlx-lm writes the same block under both,
     * and a quantization_config without quant_method is read as MLX's) */
    start(&w, "llama3-untied/q4-g64-f16");
    write_all(&w);
    write_config(&w, "llama3-untied/q4-g64-f16", "\"quantization", "\"not_quantization");
    expect_fail(&w, CELLM_ERR_FORMAT, "model.embed_tokens.weight is quantized",
                "no \"quantization\" block", NULL);
    finish(&w);

    /* unknown model type, refused by name before any tensor is read */
    start(&w, "llama3-untied/bf16");
    write_all(&w);
    write_config(&w, "llama3-untied/bf16", "\"model_type\": \"llama\"",
                 "\"model_type\": \"bert\"");
    expect_fail(&w, CELLM_ERR_UNSUPPORTED, "\"bert\"", "config.json", NULL);
    finish(&w);
}

static void naming_schemes(void **state)
{
    (void)state;
    /* all under language_model.: loads */
    struct work w;
    start(&w, "llama3-untied/bf16");
    for (int i = 0; i < w.n; i++) {
        nest(&w.t[i]);
    }
    /* and a vision tower that is ignored */
    static const uint8_t z[8];
    w.t[w.n++] = (struct tst_tensor){.name = "vision_tower.patch.weight",
                                     .dtype = "F32",
                                     .ndim = 1,
                                     .shape = {2},
                                     .data = z,
                                     .nbytes = 8};
    write_all(&w);
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(w.dir, &d, &err) != CELLM_OK) fail_msg("%s", err.msg);
    assert_string_equal(d.ckpt.scheme, "language_model.");
    assert_int_equal(d.ckpt.n_ignored, 1);
    cellm_desc_free(&d);
    finish(&w);

    /* the same with one layer left under model.: refused */
    start(&w, "llama3-untied/bf16");
    for (int i = 0; i < w.n; i++) {
        if (strstr(w.t[i].name, "layers.1.")) continue;
        nest(&w.t[i]);
    }
    write_all(&w);
    expect_fail(&w, CELLM_ERR_FORMAT, "mix naming schemes", "language_model.", "model.layers.1.");
    finish(&w);

    /* a missing tensor in the language_model. scheme is named with its prefix */
    start(&w, "llama3-untied/bf16");
    drop(&w, "model.layers.0.self_attn.k_proj.weight");
    for (int i = 0; i < w.n; i++) {
        nest(&w.t[i]);
    }
    write_all(&w);
    expect_fail(&w, CELLM_ERR_NOT_FOUND, "language_model.model.layers.0.self_attn.k_proj.weight",
                "missing", NULL);
    finish(&w);
}

/* Every allocation failing in turn while loading: NOMEM each time, then success. */
static void allocation_failures(void **state)
{
    (void)state;
    static const char *fixtures[] = {"llama3-untied/f16-shard4", "qwen3-moe/q4-g64-bf16-stacked",
                                     "stablelm2/q4-g64-f16"};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, fixtures[f]);
        int ok = 0;
        long n;
        for (n = 0; n < 5000 && !ok; n++) {
            struct cellm_desc d;
            struct cellm_error err;
            cellm_alloc_fail_after(n);
            enum cellm_status st = cellm_desc_load(dir, &d, &err);
            cellm_alloc_fail_after(-1);
            if (st == CELLM_OK) {
                ok = 1;
                cellm_desc_free(&d);
            } else if (st != CELLM_ERR_NOMEM) {
                fail_msg("%s: allocation %ld failing gave %d: %s", fixtures[f], n, st, err.msg);
            }
        }
        assert_true(ok);
        assert_true(n > 10);
    }
    /* and through the public API, with the executor's allocations */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/llama-tied/q4-g64-f16", CELLM_FIXTURES);
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 1;
    int ok = 0;
    for (long n = 0; n < 5000 && !ok; n++) {
        struct cellm_model *m = NULL;
        struct cellm_error err;
        cellm_alloc_fail_after(n);
        enum cellm_status st = cellm_model_load(dir, &mp, &m, &err);
        cellm_alloc_fail_after(-1);
        if (st == CELLM_OK) {
            ok = 1;
            cellm_model_free(m);
        } else if (st != CELLM_ERR_NOMEM) {
            fail_msg("cellm_model_load: allocation %ld failing gave %d: %s", n, st, err.msg);
        } else {
            assert_null(m);
        }
    }
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_fixture_binds),
        cmocka_unit_test(layouts_in_detail),
        cmocka_unit_test(stale_index_fallback_loads),
        cmocka_unit_test(stale_index_missing_shard),
        cmocka_unit_test(index_disagrees),
        cmocka_unit_test(tensor_in_two_shards),
        cmocka_unit_test(missing_tensor),
        cmocka_unit_test(shape_contradicts_config),
        cmocka_unit_test(scales_biases_mismatch),
        cmocka_unit_test(f64_weights),
        cmocka_unit_test(quantization_config_errors),
        cmocka_unit_test(naming_schemes),
        cmocka_unit_test(allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
