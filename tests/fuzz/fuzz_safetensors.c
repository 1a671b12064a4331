/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors container parser.
 *
 * The input is a whole file image. Whatever cellm_st_parse accepts must describe views
 * inside the input (each view's first and last byte are read, so ASan reports a view that
 * strays), sorted and unique by name, with sizes that match their shapes.
 */
#include <stdint.h>
#include <string.h>

#include "checkpoint/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cellm_st_file f;
    struct cellm_error err;
    if (cellm_st_parse(data, size, "fuzz.safetensors", &f, &err) != CELLM_OK) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < f.n; i++) {
        const struct cellm_st_tensor *t = &f.tensors[i];
        if (t->nbytes) {
            sink ^= t->data[0];
            sink ^= t->data[t->nbytes - 1];
        }
        if (t->data < data || t->data + t->nbytes > data + size) __builtin_trap();
        if (cellm_st_numel(t) * (uint64_t)cellm_dtype_bits(t->dtype) != t->nbytes * 8)
            __builtin_trap();
        if (i && strcmp(f.tensors[i - 1].name, t->name) >= 0) __builtin_trap();
        if (cellm_st_find(&f, t->name) != t) __builtin_trap();
    }
    (void)sink;
    cellm_st_close(&f);
    return 0;
}
