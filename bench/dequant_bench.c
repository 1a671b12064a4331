/*
 * dequant_bench.c: how fast the CPU kernels widen F16/BF16 and dequantize MLX affine
 * weights, next to memcpy over the same bytes, in the same run.
 *
 *     dequant_bench [--gib N] [--threads T] [--reps R] [--cols C]
 *
 * Each format gets a tensor of >= N GiB of stored data (random bytes; random codes with
 * normal 16-bit scales for affine 4-bit g64). All threads of a cellm thread pool walk
 * their share of the rows in blocks of CELLM_CPU_ROW_BLOCK, dequantizing each block with
 * cellm_cpu_dequant_rows into one small per-thread f32 buffer that is reused, as the
 * matmul does. The baseline is memcpy with the same pattern: the same input bytes, in the
 * same blocks per thread, into a small reused buffer, so both are bound by reading the
 * input from memory. A second baseline copies the whole input into a second array of the
 * same size (read + write traffic), as usually meant by "memcpy bandwidth".
 *
 * Reported: input GB/s (stored bytes read per second), output GB/s (f32 bytes produced
 * per second), and the input rate as a percentage of the blocked memcpy rate. The best of
 * R repetitions counts (the first touch of every page happens before timing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/half.h"
#include "base/threadpool.h"
#include "exec/cpu/kernels.h"
#include "model/weight.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- parallel jobs --------------------------------------------------------------------- */

struct fill_job {
    uint8_t *p;
    size_t n;
    int kind; /* 0 random bytes, 1 random normal f16 scales */
};

static void fill_part(void *arg, int i, int n)
{
    const struct fill_job *j = arg;
    long b, e;
    cellm_split((long)(j->n / 8), i, n, &b, &e);
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    for (long k = b; k < e; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x;
        if (j->kind == 1) /* four f16 values with exponent 10..17: |s| in [2^-5, 4) */
            v = (v & 0x83ff83ff83ff83ffull) | 0x2800280028002800ull;
        memcpy(j->p + 8 * k, &v, 8);
    }
}

static void fill(struct cellm_pool *pool, uint8_t *p, size_t n, int kind)
{
    struct fill_job j = {p, n, kind};
    cellm_pool_run(pool, fill_part, &j);
}

struct run_job {
    const struct cellm_weight *w;
    enum cellm_isa isa;
    int mode;        /* 0 dequantize, 1 memcpy blocks, 2 memcpy whole */
    float **bufs;    /* per thread: CELLM_CPU_ROW_BLOCK * cols floats */
    uint8_t *dst;    /* mode 2: a copy of the input */
    size_t in_bytes; /* modes 1, 2 */
    volatile float sink;
};

static void run_part(void *arg, int ti, int tn)
{
    struct run_job *j = arg;
    const struct cellm_weight *w = j->w;
    if (j->mode == 0) {
        int64_t nblocks = (w->rows + CELLM_CPU_ROW_BLOCK - 1) / CELLM_CPU_ROW_BLOCK;
        long b0, b1;
        cellm_split((long)nblocks, ti, tn, &b0, &b1);
        float *buf = j->bufs[ti];
        for (int64_t blk = b0; blk < b1; blk++) {
            int64_t r0 = blk * CELLM_CPU_ROW_BLOCK;
            int64_t nr = w->rows - r0 < CELLM_CPU_ROW_BLOCK ? w->rows - r0 : CELLM_CPU_ROW_BLOCK;
            cellm_cpu_dequant_rows(j->isa, w, r0, nr, buf);
        }
        if (ti == 0) j->sink = buf[0];
        return;
    }
    /* memcpy baselines over the same input bytes, in the same per-thread share */
    size_t chunk = (size_t)CELLM_CPU_ROW_BLOCK * w->row_bytes;
    long c0, c1;
    cellm_split((long)((j->in_bytes + chunk - 1) / chunk), ti, tn, &c0, &c1);
    const uint8_t *src = w->data;
    for (long c = c0; c < c1; c++) {
        size_t off = (size_t)c * chunk;
        size_t n = j->in_bytes - off < chunk ? j->in_bytes - off : chunk;
        memcpy(j->mode == 1 ? (uint8_t *)j->bufs[ti] : j->dst + off, src + off, n);
    }
    if (ti == 0 && j->mode == 1) j->sink = j->bufs[ti][0];
}

static double timed(struct cellm_pool *pool, struct run_job *j, int reps)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cellm_pool_run(pool, run_part, j);
        double t = now() - t0;
        if (t < best) best = t;
    }
    return best;
}

static void bench_one(struct cellm_pool *pool, enum cellm_isa isa, const char *label,
                      struct cellm_weight *w, size_t in_bytes, float **bufs, int reps)
{
    struct run_job j = {.w = w, .isa = isa, .bufs = bufs, .in_bytes = in_bytes};
    size_t out_bytes = (size_t)w->rows * (size_t)w->cols * sizeof(float);
    /* warm-up of each mode once, then the best of reps */
    j.mode = 0;
    timed(pool, &j, 1);
    double td = timed(pool, &j, reps);
    j.mode = 1;
    timed(pool, &j, 1);
    double tm = timed(pool, &j, reps);
    j.mode = 2;
    j.dst = malloc(in_bytes);
    double tw = 0;
    if (j.dst) {
        fill(pool, j.dst, in_bytes, 0); /* touch the destination pages first */
        tw = timed(pool, &j, reps);
        free(j.dst);
    }
    double gin = (double)in_bytes / td / 1e9, gout = (double)out_bytes / td / 1e9;
    double gm = (double)in_bytes / tm / 1e9, gw = tw > 0 ? (double)in_bytes / tw / 1e9 : 0;
    printf("%-18s %8.2f GiB in  %7.2f GB/s in  %7.2f GB/s f32 out | memcpy %7.2f GB/s "
           "(blocks) %7.2f GB/s (whole) | %5.1f%% of memcpy\n",
           label, (double)in_bytes / (1u << 30), gin, gout, gm, gw, 100.0 * gin / gm);
}

int main(int argc, char **argv)
{
    double gib = 1.0;
    int threads = 0, reps = 3;
    int64_t cols = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gib") && i + 1 < argc)
            gib = atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cols") && i + 1 < argc)
            cols = atoll(argv[++i]);
        else {
            fprintf(stderr,
                    "usage: %s [--gib N (1)] [--threads T (all)] [--reps R (3)] "
                    "[--cols C (4096, a multiple of 64)]\n",
                    argv[0]);
            return 2;
        }
    }
    if (gib <= 0 || reps < 1 || cols < 64 || cols % 64) {
        fprintf(stderr, "dequant_bench: bad arguments\n");
        return 2;
    }
    struct cellm_pool *pool;
    struct cellm_error err;
    if (cellm_pool_new(threads, &pool, &err) != CELLM_OK) {
        fprintf(stderr, "dequant_bench: %s\n", err.msg);
        return 1;
    }
    int nt = cellm_pool_size(pool);
    /* a benchmark program, not the library: it may read the environment */
    const char *want = getenv("CELLM_CPU_ISA");
    enum cellm_isa isa = cellm_cpu_isa_cap(want && !strcmp(want, "portable") ? CELLM_ISA_PORTABLE
                                           : want && !strcmp(want, "avx2")   ? CELLM_ISA_AVX2
                                                                             : CELLM_ISA_AVX512);
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    for (int t = 0; t < nt && bufs; t++)
        bufs[t] = aligned_alloc(64, (size_t)CELLM_CPU_ROW_BLOCK * (size_t)cols * sizeof(float));
    printf("dequant_bench: %d threads, isa %s, rows of %lld columns, blocks of %d rows, "
           "best of %d\n",
           nt, cellm_cpu_isa_name(isa), (long long)cols, CELLM_CPU_ROW_BLOCK, reps);
    size_t target = (size_t)(gib * (double)(1ull << 30));

    for (int f = 0; f < 3; f++) {
        struct cellm_weight w = {.cols = cols, .name = "bench"};
        size_t in_bytes, extra = 0;
        const char *label;
        if (f < 2) {
            w.fmt = f == 0 ? CELLM_W_F16 : CELLM_W_BF16;
            w.row_bytes = (size_t)cols * 2;
            label = f == 0 ? "F16 -> f32" : "BF16 -> f32";
        } else {
            w.fmt = CELLM_W_AFFINE;
            w.bits = 4;
            w.group = 64;
            w.sdtype = CELLM_DT_F16;
            w.row_bytes = (size_t)cols / 2;
            extra = 2 * (size_t)(cols / 64) * 2; /* scales + biases per row */
            label = "affine 4-bit g64";
        }
        w.rows = (int64_t)((target + w.row_bytes - 1) / w.row_bytes);
        in_bytes = (size_t)w.rows * w.row_bytes;
        size_t sb = (size_t)w.rows * extra / 2;
        /* one byte of offset: tensors in MLX files are unaligned */
        uint8_t *mem = malloc(in_bytes + 2 * sb + 64);
        if (!mem || !bufs) {
            fprintf(stderr, "dequant_bench: cannot allocate %zu bytes\n", in_bytes + 2 * sb);
            return 1;
        }
        w.data = mem + 1;
        fill(pool, mem, in_bytes + 64, 0);
        if (sb) {
            uint8_t *s = mem + in_bytes + 32;
            fill(pool, s, 2 * sb, 1);
            w.scales = s;
            w.biases = s + sb;
        }
        /* the scales and biases are read too: count them as input */
        bench_one(pool, isa, label, &w, in_bytes, bufs, reps);
        if (sb)
            printf("%-18s (input above counts codes only; scales + biases add %.1f%%)\n", "",
                   100.0 * (double)(2 * sb) / (double)in_bytes);
        free(mem);
    }
    for (int t = 0; t < nt && bufs; t++)
        free(bufs[t]);
    free(bufs);
    cellm_pool_free(pool);
    return 0;
}
