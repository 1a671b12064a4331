/*
 * bench_tokenizer.c: encoding speed of cellm's tokenizer (not a test).
 *
 *     cc -O2 -Iinclude bench/bench_tokenizer.c build/libcellm_text.a build/libcellm_core.a \
 *        -lcjson -lm -lpthread -o bench_tokenizer
 *     ./bench_tokenizer tests/data/hub/llama3 tests/tok/corpus/mixed.txt [MB]
 *
 * Repeats the file up to MB megabytes (default 1), encodes it once as one text, and prints
 * the time and MB/s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenizer DIR TEXTFILE [MB]\n");
        return 2;
    }
    double mb = argc > 3 ? atof(argv[3]) : 1.0;
    FILE *f = fopen(argv[2], "rb");
    if (!f) return 1;
    size_t want = (size_t)(mb * 1024 * 1024), len = 0;
    char *text = malloc(want + 1), chunk[65536];
    size_t got;
    while (len < want) {
        if (!(got = fread(chunk, 1, sizeof chunk, f))) {
            rewind(f);
            continue;
        }
        size_t k = got < want - len ? got : want - len;
        memcpy(text + len, chunk, k);
        len += k;
    }
    fclose(f);
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    double t0 = now();
    if (cellm_tokenizer_load(argv[1], &tok, &err) != CELLM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t1 = now();
    int32_t *ids;
    size_t n;
    if (cellm_tokenizer_encode(tok, text, len, 0, &ids, &n, &err) != CELLM_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double t2 = now();
    printf("%s: load %.3f s; encode %.2f MB -> %zu ids in %.3f s = %.2f MB/s\n", argv[1], t1 - t0,
           (double)len / 1048576.0, n, t2 - t1, (double)len / 1048576.0 / (t2 - t1));
    free(ids);
    free(text);
    cellm_tokenizer_free(tok);
    return 0;
}
