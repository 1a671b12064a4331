/*
 * fuzz_tokenizer.c: libFuzzer target: encodes arbitrary bytes with a small committed
 * tokenizer.json (byte-level BPE with a Llama-3-style Split regex, NFC, added tokens), then
 * decodes the ids and streams them through the detokenizer. Any crash, leak or sanitizer
 * report is a bug; every input must encode.
 */
#include <stdint.h>
#include <stdlib.h>

#include "cellm.h"

#ifndef CELLM_TEST_DATA
#define CELLM_TEST_DATA "tests"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cellm_tokenizer *tok;
    struct cellm_error err;
    if (!tok && cellm_tokenizer_load(CELLM_TEST_DATA "/tok/fuzz", &tok, &err) != CELLM_OK) abort();
    int32_t *ids;
    size_t n;
    if (cellm_tokenizer_encode(tok, (const char *)data, size, size & 1, &ids, &n, &err) != CELLM_OK)
        abort();
    char *text;
    if (cellm_tokenizer_decode(tok, ids, n, 0, &text, &err) != CELLM_OK) abort();
    free(text);
    struct cellm_detok *d;
    if (cellm_detok_new(tok, &d, &err) == CELLM_OK) {
        for (size_t i = 0; i < n; i++) {
            const char *t;
            if (cellm_detok_push(d, ids[i], &t, &err) != CELLM_OK) abort();
        }
        cellm_detok_free(d);
    }
    free(ids);
    return 0;
}
