/*
 * test_tok_hub.c: cellm's tokenizer against the reference on real tokenizer.json files.
 *
 *     test_tok_hub DIR
 *
 * DIR holds tokenizer.json and expected.txt, written by tests/tok/reference.js (the Hugging
 * Face tokenizers library) from the committed corpus; .ci/setup.d/20-tokenizers.sh fetches
 * and prepares them. For every case: encode with and without special tokens, decode keeping
 * and skipping special tokens, and the streaming decoder, all identical to the reference.
 * When DIR is absent the test is skipped (exit 77), except under CELLM_CI where it fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mapfile.h"
#include "cellm.h"

static int failures;

static size_t unhex(const char *h, char *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (char)v;
    }
    return n;
}

static size_t parse_ids(const char *s, int32_t *out)
{
    size_t n = 0;
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s) break;
        out[n++] = (int32_t)v;
        s = end;
    }
    return n;
}

static void report(int c, const char *what, const int32_t *got, size_t ng, const int32_t *want,
                   size_t nw)
{
    size_t i = 0;
    while (i < ng && i < nw && got[i] == want[i])
        i++;
    fprintf(stderr, "case %d: %s differs at index %zu (got %zu ids, want %zu): got %d, want %d\n",
            c, what, i, ng, nw, i < ng ? got[i] : -1, i < nw ? want[i] : -1);
    failures++;
}

static void check_case(struct cellm_tokenizer *tok, int c, const char *in, size_t inl,
                       const int32_t *e1, size_t n1, const int32_t *e0, size_t n0, const char *d0,
                       size_t d0l, const char *d1, size_t d1l)
{
    struct cellm_error err;
    int32_t *ids;
    size_t n;
    for (int sp = 0; sp < 2; sp++) {
        if (cellm_tokenizer_encode(tok, in, inl, sp, &ids, &n, &err) != CELLM_OK) {
            fprintf(stderr, "case %d: encode failed: %s\n", c, err.msg);
            failures++;
            return;
        }
        const int32_t *w = sp ? e1 : e0;
        size_t nw = sp ? n1 : n0;
        if (n != nw || memcmp(ids, w, n * sizeof *ids))
            report(c, sp ? "encode(add_special=1)" : "encode(add_special=0)", ids, n, w, nw);
        free(ids);
    }
    for (int skip = 0; skip < 2; skip++) {
        char *text;
        if (cellm_tokenizer_decode(tok, e1, n1, skip, &text, &err) != CELLM_OK) {
            fprintf(stderr, "case %d: decode failed: %s\n", c, err.msg);
            failures++;
            return;
        }
        const char *w = skip ? d1 : d0;
        size_t wl = skip ? d1l : d0l;
        if (strlen(text) != wl || memcmp(text, w, wl)) {
            fprintf(stderr,
                    "case %d: decode(skip_special=%d) differs: got \"%.80s\", want "
                    "\"%.*s\"\n",
                    c, skip, text, (int)(wl > 80 ? 80 : wl), w);
            failures++;
        }
        free(text);
    }
    /* streaming: the pushes concatenate to the skip-special decoding */
    struct cellm_detok *d;
    if (cellm_detok_new(tok, &d, &err) != CELLM_OK) {
        failures++;
        return;
    }
    char *acc = malloc(d1l + 64);
    size_t al = 0;
    for (size_t i = 0; i < n1; i++) {
        const char *piece;
        if (cellm_detok_push(d, e1[i], &piece, &err) != CELLM_OK) {
            fprintf(stderr, "case %d: detok failed: %s\n", c, err.msg);
            failures++;
            break;
        }
        size_t pl = strlen(piece);
        if (al + pl > d1l) {
            fprintf(stderr, "case %d: streaming emitted more than the decoding\n", c);
            failures++;
            break;
        }
        memcpy(acc + al, piece, pl);
        al += pl;
    }
    int tail_bad = d1l >= 3 && !memcmp(d1 + d1l - 3, "\xEF\xBF\xBD", 3);
    if (memcmp(acc, d1, al) || (!tail_bad && al != d1l)) {
        fprintf(stderr, "case %d: streaming text differs from decode (%zu vs %zu bytes)\n", c, al,
                d1l);
        failures++;
    }
    free(acc);
    cellm_detok_free(d);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_tok_hub DIR\n");
        return 2;
    }
    char *exp = cellm_path_join(argv[1], "expected.txt");
    if (!cellm_file_exists(exp)) {
        free(exp);
        if (getenv("CELLM_CI")) {
            fprintf(stderr, "%s: reference data missing; run .ci/setup.d/20-tokenizers.sh\n",
                    argv[1]);
            return 1;
        }
        fprintf(stderr,
                "%s: reference data missing; skipped (run "
                "`bash .ci/setup.d/20-tokenizers.sh`)\n",
                argv[1]);
        return 77;
    }
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    if (cellm_tokenizer_load(argv[1], &tok, &err) != CELLM_OK) {
        fprintf(stderr, "load: %s\n", err.msg);
        free(exp);
        return 1;
    }
    char *data;
    size_t len;
    if (cellm_read_file(exp, &data, &len, &err) != CELLM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    free(exp);
    /* five lines per case; buffers sized by the file */
    char *in = malloc(len), *d0 = malloc(len), *d1 = malloc(len);
    int32_t *e1 = malloc(len * sizeof *e1), *e0 = malloc(len * sizeof *e0);
    size_t inl = 0, n1 = 0, n0 = 0, d0l = 0, d1l = 0;
    int cases = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "in ", 3) || !strcmp(line, "in"))
            inl = unhex(line + 2 + (line[2] == ' '), in);
        else if (!strncmp(line, "e1", 2))
            n1 = parse_ids(line + 2, e1);
        else if (!strncmp(line, "e0", 2))
            n0 = parse_ids(line + 2, e0);
        else if (!strncmp(line, "d0", 2))
            d0l = unhex(line + 2 + (line[2] == ' '), d0);
        else if (!strncmp(line, "d1", 2)) {
            d1l = unhex(line + 2 + (line[2] == ' '), d1);
            check_case(tok, cases++, in, inl, e1, n1, e0, n0, d0, d0l, d1, d1l);
        }
    }
    printf("%s: %d cases, %d failures\n", argv[1], cases, failures);
    free(in);
    free(d0);
    free(d1);
    free(e1);
    free(e0);
    free(data);
    cellm_tokenizer_free(tok);
    return failures || !cases ? 1 : 0;
}
