/*
 * test_memory.c: weights are mapped, never copied. Builds a ~48 MB BF16 checkpoint at
 * test time, loads it and generates; checks that the library's own allocations stay far
 * below the weight bytes (no allocation proportional to them) and that peak RSS is about
 * the mapped file plus the KV cache.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "cellm.h"

enum { DIM = 512, FFN = 1024, LAYERS = 4, HEADS = 8, VOCAB = 16384 };

static char dir[256];
static enum cellm_precision precision = CELLM_PRECISION_EXACT;
static size_t weight_bytes;

struct tensor {
    char name[96];
    int64_t rows, cols; /* cols 0 = vector */
};

static size_t tensor_bytes(const struct tensor *t)
{
    return (size_t)(t->cols ? t->rows * t->cols : t->rows) * 2;
}

static void write_checkpoint(void)
{
    struct tensor ts[64];
    int n = 0;
#define ADD(r, c, ...)                                                                             \
    (snprintf(ts[n].name, sizeof ts[n].name, __VA_ARGS__), ts[n].rows = r, ts[n].cols = c, n++)
    ADD(VOCAB, DIM, "model.embed_tokens.weight");
    for (int l = 0; l < LAYERS; l++) {
        ADD(DIM, 0, "model.layers.%d.input_layernorm.weight", l);
        ADD(DIM, 0, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(DIM, DIM, "model.layers.%d.self_attn.q_proj.weight", l);
        ADD(DIM, DIM, "model.layers.%d.self_attn.k_proj.weight", l);
        ADD(DIM, DIM, "model.layers.%d.self_attn.v_proj.weight", l);
        ADD(DIM, DIM, "model.layers.%d.self_attn.o_proj.weight", l);
        ADD(FFN, DIM, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(FFN, DIM, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(DIM, FFN, "model.layers.%d.mlp.down_proj.weight", l);
    }
    ADD(DIM, 0, "model.norm.weight");
    ADD(VOCAB, DIM, "lm_head.weight");
    char hdr[16384];
    size_t h = 0, off = 0;
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "{");
    for (int i = 0; i < n; i++) {
        size_t b = tensor_bytes(&ts[i]);
        if (ts[i].cols)
            h += (size_t)snprintf(
                hdr + h, sizeof hdr - h,
                "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld,%lld],\"data_offsets\":[%zu,%zu]}",
                i ? "," : "", ts[i].name, (long long)ts[i].rows, (long long)ts[i].cols, off,
                off + b);
        else
            h += (size_t)snprintf(
                hdr + h, sizeof hdr - h,
                "%s\"%s\":{\"dtype\":\"BF16\",\"shape\":[%lld],\"data_offsets\":[%zu,%zu]}",
                i ? "," : "", ts[i].name, (long long)ts[i].rows, off, off + b);
        off += b;
    }
    h += (size_t)snprintf(hdr + h, sizeof hdr - h, "}");
    weight_bytes = off;
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t hl = h;
    fwrite(&hl, 8, 1, f);
    fwrite(hdr, 1, h, f);
    uint16_t buf[4096];
    uint32_t s = 12345;
    for (size_t done = 0; done < off; done += sizeof buf) {
        for (size_t k = 0; k < 4096; k++) {
            s = s * 1664525u + 1013904223u;
            buf[k] = (uint16_t)(0x3c00 | (s >> 16 & 0x80ff)); /* small values of both signs */
        }
        size_t w = off - done < sizeof buf ? off - done : sizeof buf;
        fwrite(buf, 1, w, f);
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(
        f,
        "{\"model_type\":\"llama\",\"vocab_size\":%d,\"hidden_size\":%d,\"intermediate_size\":%d,"
        "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
        "\"max_position_embeddings\":4096,\"tie_word_embeddings\":false}",
        VOCAB, DIM, FFN, LAYERS, HEADS, HEADS);
    fclose(f);
}

static long rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_weights_are_not_copied(void **state)
{
    (void)state;
    long rss0 = rss_kib();
    size_t a0 = cellm_alloc_bytes();
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 2;
    mp.precision = precision;
    assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_OK);
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int seq = cellm_ctx_seq_new(ctx);
    int32_t prompt[16];
    for (int i = 0; i < 16; i++)
        prompt[i] = i * 7 + 1;
    const float *logits;
    assert_int_equal(cellm_ctx_eval_seq(ctx, seq, prompt, 16, &logits, &err), CELLM_OK);
    for (int i = 0; i < 48; i++) {
        int32_t t = (int32_t)(i * 131 % VOCAB);
        assert_int_equal(cellm_ctx_eval_seq(ctx, seq, &t, 1, &logits, &err), CELLM_OK);
    }
    size_t allocated = cellm_alloc_bytes() - a0;
    long rss = rss_kib() - rss0;
    /* KV cache: 64 positions (growth rounds up) x layers x 2 x dim x 4 bytes: tiny */
    size_t kv = 64u * LAYERS * 2 * DIM * 4;
    printf("weights %zu bytes, library allocations %zu bytes, rss growth %ld KiB\n", weight_bytes,
           allocated, rss);
    assert_true(allocated < weight_bytes / 10);
    assert_true((size_t)rss * 1024 < weight_bytes + kv + (size_t)24 * 1024 * 1024);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

int main(int argc, char **argv)
{
    /* "fast": the same bounds with --precision fast (a separate process, so that the peak
     * RSS of one mode does not hide the other's) */
    if (argc > 1 && !strcmp(argv[1], "fast")) precision = CELLM_PRECISION_FAST;
    snprintf(dir, sizeof dir, "/tmp/cellm-memtest-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_weights_are_not_copied),
    };
    write_checkpoint();
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) rc = 1;
    return rc;
}
