/*
 * matvec_bench.c: throughput of the CPU decode products (one input row) per format, in
 * stored bytes per second of the calling thread's CPU time, for a weight that fits in L2
 * (the kernel's compute rate) and one far larger than the caches (memory-bound rate).
 * Thread CPU time rather than wall time, so a busy machine skews the numbers less.
 *
 *     matvec_bench [--isa portable|avx2|avx512]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/half.h"
#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"
#include "model/weight.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

struct fmt_case {
    const char *name;
    enum cellm_wfmt fmt;
    int bits;
};

/* A weight of rows x cols in the given format over random bytes (affine: group 64, bf16
 * scales and biases around 2^-4). Returns the bytes it occupies; *buf owns the storage. */
static size_t make_weight(const struct fmt_case *fc, int64_t rows, int64_t cols,
                          struct cellm_weight *w, uint8_t **buf)
{
    size_t row_bytes = fc->fmt == CELLM_W_AFFINE ? (size_t)cols * fc->bits / 8 : (size_t)cols * 2;
    size_t ng = fc->fmt == CELLM_W_AFFINE ? (size_t)(cols / 64) : 0;
    size_t total = row_bytes * rows + 4 * ng * rows;
    uint8_t *b = malloc(total);
    if (!b) return 0;
    for (size_t i = 0; i < total; i++)
        b[i] = (uint8_t)(rand() >> 7);
    uint16_t *sc = (uint16_t *)(b + row_bytes * rows);
    for (size_t i = 0; i < 2 * ng * rows; i++)
        sc[i] = (uint16_t)(0x3d00 + (rand() & 0xff));
    if (fc->fmt == CELLM_W_BF16)
        for (size_t i = 0; i < (size_t)(rows * cols); i++)
            ((uint16_t *)b)[i] = (uint16_t)(0x3c00 + (rand() & 0x1ff));
    if (fc->fmt == CELLM_W_F16)
        for (size_t i = 0; i < (size_t)(rows * cols); i++)
            ((uint16_t *)b)[i] = (uint16_t)(0x2c00 + (rand() & 0xfff));
    *w = (struct cellm_weight){.fmt = fc->fmt,
                               .rows = rows,
                               .cols = cols,
                               .data = b,
                               .row_bytes = row_bytes,
                               .name = fc->name};
    if (fc->fmt == CELLM_W_AFFINE) {
        w->bits = fc->bits;
        w->group = 64;
        w->sdtype = CELLM_DT_BF16;
        w->scales = (const uint8_t *)sc;
        w->biases = (const uint8_t *)(sc + ng * rows);
    }
    *buf = b;
    return total;
}

/* The small-float formats of docs/formats.md over random codes (NaN codes included: they
 * cost the same) and scales near 1. */
static size_t make_fp_weight(const struct fmt_case *fc, int64_t rows, int64_t cols,
                             struct cellm_weight *w, uint8_t **buf)
{
    int bits = fc->bits, group = fc->fmt == CELLM_W_NVFP4    ? 16
                                 : fc->fmt == CELLM_W_FP8BLK ? 128
                                                             : 32;
    size_t row_bytes = (size_t)cols * bits / 8;
    size_t ns = fc->fmt == CELLM_W_FP8BLK ? (size_t)((rows + 127) / 128 * (cols / 128)) * 4
                                          : (size_t)(rows * (cols / group));
    size_t total = row_bytes * rows + ns;
    uint8_t *b = malloc(total);
    if (!b) return 0;
    for (size_t i = 0; i < total; i++)
        b[i] = (uint8_t)(rand() >> 7);
    uint8_t *sc = b + row_bytes * rows;
    for (size_t i = 0; i < ns; i++)
        sc[i] = fc->fmt == CELLM_W_FP8BLK ? (i % 4 == 3 ? 0x3c : 0) : (uint8_t)(0x30 + rand() % 16);
    *w = (struct cellm_weight){.fmt = fc->fmt,
                               .rows = rows,
                               .cols = cols,
                               .data = b,
                               .row_bytes = row_bytes,
                               .bits = bits,
                               .group = group,
                               .block_rows = 128,
                               .sdtype = fc->fmt == CELLM_W_FP8BLK ? CELLM_DT_F32 : CELLM_DT_U8,
                               .scales = sc,
                               .name = fc->name};
    if (fc->fmt != CELLM_W_FP8BLK)
        for (size_t i = 0; i < ns; i++)
            sc[i] = (uint8_t)(fc->fmt == CELLM_W_NVFP4 ? 0x30 + rand() % 16 : 120 + rand() % 14);
    *buf = b;
    return total;
}

int main(int argc, char **argv)
{
    enum cellm_isa isa = cellm_cpu_isa();
    if (argc == 3 && !strcmp(argv[1], "--isa")) {
        enum cellm_isa want = !strcmp(argv[2], "portable") ? CELLM_ISA_PORTABLE
                              : !strcmp(argv[2], "avx2")   ? CELLM_ISA_AVX2
                                                           : CELLM_ISA_AVX512;
        if (want < isa) isa = want;
    }
    static const struct fmt_case cases[] = {
        {"bf16", CELLM_W_BF16, 0},     {"f16", CELLM_W_F16, 0},      {"q4g64", CELLM_W_AFFINE, 4},
        {"q8g64", CELLM_W_AFFINE, 8},  {"q3g64", CELLM_W_AFFINE, 3}, {"q6g64", CELLM_W_AFFINE, 6},
        {"mxfp4", CELLM_W_MXFP4, 4},   {"nvfp4", CELLM_W_NVFP4, 4},  {"mxfp8", CELLM_W_MXFP8, 8},
        {"fp8b128", CELLM_W_FP8BLK, 8}};
    struct cellm_error err;
    struct cellm_pool *pool;
    if (cellm_pool_new(1, &pool, &err)) return 1;
    const int64_t cols = 1024;
    printf("matvec_bench: isa %s, 1 thread, rows of %lld columns, GB/s of stored bytes per CPU "
           "second\n",
           cellm_cpu_isa_name(isa), (long long)cols);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        double rate[2];
        for (int big = 0; big < 2; big++) {
            int64_t rows = big ? 131072 : 64; /* ~256 MiB or ~128 KiB of bf16 */
            struct cellm_weight w;
            uint8_t *buf;
            size_t bytes = cases[k].fmt > CELLM_W_AFFINE
                               ? make_fp_weight(&cases[k], rows, cols, &w, &buf)
                               : make_weight(&cases[k], rows, cols, &w, &buf);
            float *x = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * rows);
            float *scratch = malloc(sizeof(float) * (size_t)cellm_cpu_scratch_floats(1, cols));
            if (!bytes || !x || !y || !scratch) return 1;
            for (int64_t i = 0; i < cols; i++)
                x[i] = (float)(rand() % 1000) / 1000.0f - 0.5f;
            int reps = big ? 4 : 20000;
            cellm_cpu_matmul(pool, isa, &w, x, cols, 1, y, rows, scratch, cols);
            double best = 1e30;
            for (int round = 0; round < 3; round++) {
                double t0 = cpu_now();
                for (int r = 0; r < reps; r++)
                    cellm_cpu_matmul(pool, isa, &w, x, cols, 1, y, rows, scratch, cols);
                double t = cpu_now() - t0;
                if (t < best) best = t;
            }
            rate[big] = (double)bytes * reps / best / 1e9;
            free(buf);
            free(x);
            free(y);
            free(scratch);
        }
        printf("%-7s in L2 %6.1f GB/s   from memory %6.1f GB/s\n", cases[k].name, rate[0], rate[1]);
    }
    cellm_pool_free(pool);
    return 0;
}
