/*
 * fuzz_grammar.c: libFuzzer target for the grammar engine: GBNF or JSON Schema in, masks out.
 *
 * The first byte picks the input kind (even: GBNF, odd: JSON Schema) and drives the walk;
 * the rest is the grammar text. When it compiles, a matcher walks a small fixed vocabulary
 * (ASCII, multi-byte characters, lone UTF-8 lead and continuation bytes, JSON punctuation)
 * for up to 48 tokens, each step checking that the mask agrees with accept_token on the
 * pick and on a token the mask refuses, that a refused token leaves the matcher as it was
 * (the same mask after it), and that a grammar that is done allows nothing.
 */
#include <stdint.h>
#include <string.h>

#include "cellm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const extra[] = {
    "\xC3\xA9",     "\xC3",         "\xA9", "\xE2\x82\xAC", "\xE2\x82", "\xF0\x9F\x98\x80",
    "\xED\xA0\x80", "\xE0\x81\xBB", "{\"",  "\": ",         "\", \"",   "true",
    "null",         "-1",           "12",   "\\\"",         "ab",       "\"}"};
#define NX ((int)(sizeof extra / sizeof *extra))
#define NV (95 + 3 + NX)

static struct cellm_grammar_vocab *vocab(void)
{
    static struct cellm_grammar_vocab *v;
    static char ascii[98][2];
    if (v) return v;
    const char *t[NV];
    size_t l[NV];
    for (int i = 0; i < 95; i++) { /* printable ASCII, then \n \t and NUL */
        ascii[i][0] = (char)(32 + i);
        t[i] = ascii[i];
        l[i] = 1;
    }
    ascii[95][0] = '\n';
    ascii[96][0] = '\t';
    ascii[97][0] = 0;
    for (int i = 95; i < 98; i++) {
        t[i] = ascii[i];
        l[i] = 1;
    }
    for (int i = 0; i < NX; i++) {
        t[98 + i] = extra[i];
        l[98 + i] = strlen(extra[i]);
    }
    struct cellm_error e;
    if (cellm_grammar_vocab_from_bytes(t, l, NV, &v, &e)) __builtin_trap();
    return v;
}

static int bit(const uint32_t *m, int i)
{
    return (m[i >> 5] >> (i & 31)) & 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct cellm_grammar *g = NULL;
    struct cellm_error e;
    enum cellm_grammar_kind kind = data[0] & 1 ? CELLM_GRAMMAR_JSON_SCHEMA : CELLM_GRAMMAR_GBNF;
    if (cellm_grammar_new(kind, (const char *)data + 1, size - 1, &g, &e)) return 0;
    struct cellm_grammar_vocab *v = vocab();
    struct cellm_matcher *m = NULL;
    if (cellm_matcher_new(g, v, &m, &e)) {
        cellm_grammar_free(g);
        return 0;
    }
    uint32_t mask[(NV + 31) / 32], after[(NV + 31) / 32];
    unsigned seed = data[0];
    for (int step = 0; step < 48; step++) {
        if (cellm_matcher_mask(m, mask, &e)) break; /* a limit: no finding */
        int n = 0, refused = -1;
        for (int i = 0; i < NV; i++) {
            n += bit(mask, i);
            if (!bit(mask, i) && refused < 0 && (unsigned)i >= seed % NV) refused = i;
        }
        if (cellm_matcher_done(m) && n) __builtin_trap();
        if (refused >= 0) {
            if (cellm_matcher_accept_token(m, refused, &e) == CELLM_OK) __builtin_trap();
            if (cellm_matcher_mask(m, after, &e) == CELLM_OK && memcmp(mask, after, sizeof mask))
                __builtin_trap();
        }
        if (!n) break;
        int k = (int)(seed % (unsigned)n), pick = -1;
        for (int i = 0; i < NV && pick < 0; i++)
            if (bit(mask, i) && k-- == 0) pick = i;
        enum cellm_status st = cellm_matcher_accept_token(m, pick, &e);
        if (st == CELLM_ERR_RANGE) break; /* a limit (an ambiguous grammar): no finding */
        if (st != CELLM_OK) __builtin_trap();
        seed = seed * 1103515245u + 12345u + (unsigned)step;
        seed ^= seed >> 16;
    }
    cellm_matcher_free(m);
    cellm_grammar_free(g);
    return 0;
}
