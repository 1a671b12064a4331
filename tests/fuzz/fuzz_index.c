/*
 * fuzz_index.c: libFuzzer target for model.safetensors.index.json handling in
 * cellm_ckpt_open.
 *
 * A temporary directory, made once, holds two tiny valid shards
 * (model-00001-of-00002.safetensors with model.a, model-00002-of-00002.safetensors with
 * model.b). Each input is written there as the index and the directory opened: a valid
 * index, one that disagrees with the shards, names missing (stale) or hostile files, or
 * is not JSON at all. An accepted checkpoint is queried, including the missing-tensor
 * message that rereads a stale index.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[256];
static char index_path[512];

static void write_file(const char *name, const void *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) __builtin_trap();
    fclose(f);
}

static void write_shard(const char *name, const char *tensor)
{
    char h[256], img[512];
    int hl = snprintf(h, sizeof h,
                      "{\"__metadata__\":{\"format\":\"mlx\"},\"%s\":{\"dtype\":\"F16\","
                      "\"shape\":[2],\"data_offsets\":[0,4]}}",
                      tensor);
    uint64_t n = (uint64_t)hl;
    for (int i = 0; i < 8; i++)
        img[i] = (char)(n >> (8 * i));
    memcpy(img + 8, h, (size_t)hl);
    memset(img + 8 + hl, 0x3c, 4);
    write_file(name, img, 8 + (size_t)hl + 4);
}

static void setup(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cellm-fuzz-index-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(dir)) __builtin_trap();
    write_shard("model-00001-of-00002.safetensors", "model.a");
    write_shard("model-00002-of-00002.safetensors", "model.b");
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) setup();
    write_file("model.safetensors.index.json", data, size);
    struct cellm_ckpt c;
    struct cellm_error err;
    if (cellm_ckpt_open(dir, &c, &err) == CELLM_OK) {
        if (c.n < 1 || c.n_files < 1 || c.n_files > 2) __builtin_trap();
        for (int i = 0; i < c.n; i++)
            if (cellm_ckpt_find(&c, c.entries[i].name) == NULL) __builtin_trap();
        cellm_ckpt_missing(&c, "model.zzz", &err);
        cellm_ckpt_missing(&c, "a", &err);
        cellm_ckpt_close(&c);
    }
    return 0;
}
