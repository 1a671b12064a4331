/*
 * gemm_bench.c: how close the CPU's GEMM (src/exec/cpu/gemm.c) comes to the FMA peak,
 * per weight format, on the products of a real model's layer.
 *
 *     gemm_bench [--rows N] [--threads T] [--reps R] [--isa portable|avx2|avx512]
 *                [--shape SUBSTRING] [--fmt f32|bf16|q4]
 *
 * Shapes are Qwen2.5-0.5B's (q/k/v, o, gate/up, down) and Llama-3.2-1B's, with random
 * weights in F32, BF16 and MLX affine 4-bit g64 (bf16 scales), N input rows (128 by
 * default, a prefill). Beside them, a loop of independent 16-lane FMAs measures the FMA
 * rate of one core the same way. Times are per-thread CPU time when T = 1 (the box this
 * runs on is shared, and CPU time hides the other tenants), wall time otherwise. The
 * best of R repetitions counts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "base/half.h"
#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"

static double clock_of(int cpu)
{
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float uniform(void)
{
    return (float)(next_u32() & 0xffffff) / (float)0x1000000 * 2.0f - 1.0f;
}

/* A random [rows][cols] weight of format f ("f32", "bf16", "q4"); *mem owns the bytes. */
static struct cellm_weight make_weight(const char *f, int64_t rows, int64_t cols, uint8_t **mem)
{
    struct cellm_weight w = {.rows = rows, .cols = cols, .name = "bench"};
    size_t n = (size_t)(rows * cols);
    if (!strcmp(f, "f32")) {
        float *p = malloc(n * 4);
        for (size_t i = 0; i < n; i++)
            p[i] = uniform() * 0.05f;
        w.fmt = CELLM_W_F32;
        w.data = (const uint8_t *)p;
        w.row_bytes = (size_t)cols * 4;
        *mem = (uint8_t *)p;
    } else if (!strcmp(f, "bf16")) {
        uint16_t *p = malloc(n * 2);
        for (size_t i = 0; i < n; i++)
            p[i] = cellm_f32_to_bf16(uniform() * 0.05f);
        w.fmt = CELLM_W_BF16;
        w.data = (const uint8_t *)p;
        w.row_bytes = (size_t)cols * 2;
        *mem = (uint8_t *)p;
    } else {
        size_t ng = n / 64;
        uint8_t *p = malloc(n / 2 + 4 * ng);
        for (size_t i = 0; i < n / 2; i++)
            p[i] = (uint8_t)next_u32();
        uint16_t *s = (uint16_t *)(p + n / 2), *b = s + ng;
        for (size_t g = 0; g < ng; g++) {
            s[g] = cellm_f32_to_bf16(uniform() * 0.01f);
            b[g] = cellm_f32_to_bf16(uniform() * 0.1f);
        }
        w.fmt = CELLM_W_AFFINE;
        w.bits = 4;
        w.group = 64;
        w.sdtype = CELLM_DT_BF16;
        w.data = p;
        w.row_bytes = (size_t)cols / 2;
        w.scales = (const uint8_t *)s;
        w.biases = (const uint8_t *)b;
        *mem = p;
    }
    return w;
}

/* Independent FMAs per second on one core (12 chains, 16 lanes each). */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static double fma_rate(void)
{
    __m512 a[12];
    for (int i = 0; i < 12; i++)
        a[i] = _mm512_set1_ps((float)i * 1e-9f);
    __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-9f);
    long iters = 20000000;
    double t0 = clock_of(1);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int k = 0; k < 12; k++)
            a[k] = _mm512_fmadd_ps(a[k], b, c);
        __asm__ volatile("" ::"v"(a[0]), "v"(a[6]), "v"(a[11]));
    }
    double t = clock_of(1) - t0;
    float s = 0;
    for (int i = 0; i < 12; i++)
        s += _mm512_reduce_add_ps(a[i]);
    return s == 12345.0f ? 0 : (double)iters * 12 / t;
}
#endif

int main(int argc, char **argv)
{
    int rows = 128, threads = 1, reps = 5;
    const char *only_shape = NULL, *only_fmt = NULL;
    enum cellm_isa isa = cellm_cpu_isa();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--rows"))
            rows = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--shape"))
            only_shape = argv[i + 1];
        else if (!strcmp(argv[i], "--fmt"))
            only_fmt = argv[i + 1];
        else if (!strcmp(argv[i], "--isa"))
            isa = !strcmp(argv[i + 1], "portable") ? CELLM_ISA_PORTABLE
                  : !strcmp(argv[i + 1], "avx2")   ? CELLM_ISA_AVX2
                                                   : CELLM_ISA_AVX512;
    }
    if (isa > cellm_cpu_isa()) isa = cellm_cpu_isa();
    struct cellm_pool *pool;
    struct cellm_error err;
    if (cellm_pool_new(threads, &pool, &err)) return 1;
    int cpu = threads == 1;
#if defined(__x86_64__)
    if (cellm_cpu_isa() == CELLM_ISA_AVX512) {
        double r = fma_rate();
        printf("fma rate: %.2f G zmm FMA/s = %.1f GFLOP/s per core\n", r / 1e9, r * 32 / 1e9);
    }
#endif
    static const struct {
        const char *name;
        int64_t outs[3], cols;
    } shapes[] = {
        {"qwen0.5b qkv", {896, 128, 128}, 896},     {"qwen0.5b o", {896, 0, 0}, 896},
        {"qwen0.5b gate/up", {4864, 4864, 0}, 896}, {"qwen0.5b down", {896, 0, 0}, 4864},
        {"llama1b qkv", {2048, 512, 512}, 2048},    {"llama1b gate/up", {8192, 8192, 0}, 2048},
        {"llama1b down", {2048, 0, 0}, 8192},
    };
    static const char *fmts[] = {"f32", "bf16", "q4"};
    printf("isa %s, %d rows, %d thread(s), %s time\n", cellm_cpu_isa_name(isa), rows, threads,
           cpu ? "cpu" : "wall");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (only_shape && !strstr(shapes[s].name, only_shape)) continue;
        int64_t K = shapes[s].cols;
        float *x = malloc((size_t)rows * (size_t)K * 4);
        for (int64_t i = 0; i < rows * K; i++)
            x[i] = uniform();
        float *scratch = malloc(cellm_cpu_scratch_floats(threads, K) * 4);
        for (size_t f = 0; f < 3; f++) {
            if (only_fmt && strcmp(only_fmt, fmts[f])) continue;
            struct cellm_weight w[3];
            uint8_t *mem[3] = {0};
            float *y[3] = {0};
            struct cellm_cpu_mm mm[3];
            int no = 0;
            double flops = 0;
            for (int k = 0; k < 3 && shapes[s].outs[k]; k++, no++) {
                w[k] = make_weight(fmts[f], shapes[s].outs[k], K, &mem[k]);
                y[k] = malloc((size_t)rows * (size_t)w[k].rows * 4);
                mm[k] = (struct cellm_cpu_mm){&w[k], y[k], w[k].rows};
                flops += 2.0 * rows * (double)w[k].rows * (double)K;
            }
            double best = 1e30;
            for (int r = 0; r < reps; r++) {
                double t0 = clock_of(cpu);
                cellm_cpu_matmul_multi(pool, isa, mm, no, x, K, rows, scratch, K);
                double t = clock_of(cpu) - t0;
                if (t < best) best = t;
            }
            printf("%-18s %-5s %8.2f ms %7.1f GFLOP/s\n", shapes[s].name, fmts[f], best * 1e3,
                   flops / best / 1e9);
            for (int k = 0; k < no; k++) {
                free(mem[k]);
                free(y[k]);
            }
        }
        free(x);
        free(scratch);
    }
    cellm_pool_free(pool);
    return 0;
}
