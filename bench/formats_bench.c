/*
 * formats_bench.c: the CPU kernels of the quantized formats (src/exec/cpu/kernels_fp*.c)
 * on one thread: decode (one input row, the fused kernels) in GB/s of stored bytes and
 * prefill (128 input rows, the GEMM) in GFLOP/s, per format, beside 4-bit MLX affine and
 * BF16 as references. Weights are random, built by tests/fmt_util.h (the same packing as
 * the tests). Per-thread CPU time, best of 3 rounds: the development box is shared, and
 * CPU time hides the other tenants better than wall time (not entirely: caches and memory
 * bandwidth are shared too).
 *
 *     formats_bench [--isa portable|avx2|avx512] [--rows R] [--cols C] [--fmt NAME]
 */
#include <stdio.h>
#include <time.h>

#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"
#include "../tests/fmt_util.h"

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* MLX affine 4-bit, group 64, f16 scales and biases: the format the formats compete with. */
static void make_affine(struct fmt_w *f, int64_t R, int64_t C)
{
    memset(f, 0, sizeof *f);
    int64_t ng = C / 64;
    f->n_codes = (size_t)(R * C / 2);
    f->block = malloc(f->n_codes);
    f->scales = malloc((size_t)(R * ng) * 4);
    for (size_t i = 0; i < f->n_codes; i++)
        f->block[i] = (uint8_t)fmt_u32();
    for (int64_t i = 0; i < 2 * R * ng; i++) {
        uint16_t h = cellm_f32_to_f16((float)fmt_uniform(-0.05, 0.05));
        memcpy(f->scales + 2 * i, &h, 2);
    }
    f->w = (struct cellm_weight){.fmt = CELLM_W_AFFINE,
                                 .rows = R,
                                 .cols = C,
                                 .data = f->block,
                                 .row_bytes = (size_t)C / 2,
                                 .bits = 4,
                                 .group = 64,
                                 .sdtype = CELLM_DT_F16,
                                 .scales = f->scales,
                                 .biases = f->scales + 2 * R * ng,
                                 .name = "affine"};
}

static void make_bf16(struct fmt_w *f, int64_t R, int64_t C)
{
    memset(f, 0, sizeof *f);
    f->block = malloc((size_t)(R * C) * 2);
    for (int64_t i = 0; i < R * C; i++) {
        uint16_t h = cellm_f32_to_bf16((float)fmt_uniform(-0.05, 0.05));
        memcpy(f->block + 2 * i, &h, 2);
    }
    f->w = (struct cellm_weight){.fmt = CELLM_W_BF16,
                                 .rows = R,
                                 .cols = C,
                                 .data = f->block,
                                 .row_bytes = (size_t)C * 2,
                                 .name = "bf16"};
}

static const char *names[] = {"bf16",    "q4g64",     "mxfp4",     "nvfp4",     "mxfp8",
                              "fp8b128", "gptq4g128", "gptq4-act", "gptq8g128", "awq4g128"};

static void make(int k, struct fmt_w *f, int64_t R, int64_t C)
{
    switch (k) {
    case 0:
        make_bf16(f, R, C);
        break;
    case 1:
        make_affine(f, R, C);
        break;
    case 2:
        fmt_make_mx(f, CELLM_W_MXFP4, R, C);
        break;
    case 3:
        fmt_make_mx(f, CELLM_W_NVFP4, R, C);
        break;
    case 4:
        fmt_make_mx(f, CELLM_W_MXFP8, R, C);
        break;
    case 5:
        fmt_make_fp8(f, R, C, 128, 128, CELLM_DT_F32);
        break;
    case 6:
        fmt_make_gptq(f, 0, 4, R, C, 128, 0, 1);
        break;
    case 7:
        fmt_make_gptq(f, 0, 4, R, C, 128, 1, 1);
        break;
    case 8:
        fmt_make_gptq(f, 0, 8, R, C, 128, 0, 1);
        break;
    default:
        fmt_make_gptq(f, 1, 4, R, C, 128, 0, 0);
        break;
    }
}

/* Best seconds per call of reps products with n input rows. */
static double time_it(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_weight *w,
                      int n, int reps)
{
    int64_t C = w->cols;
    float *x = malloc(sizeof(float) * (size_t)(n * C)),
          *y = malloc(sizeof(float) * (size_t)(n * w->rows));
    float *scratch = malloc(sizeof(float) * cellm_cpu_scratch_floats(1, C));
    for (int64_t i = 0; i < n * C; i++)
        x[i] = (float)fmt_uniform(-1, 1);
    cellm_cpu_matmul(pool, isa, w, x, C, n, y, w->rows, scratch, C);
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = cpu_now();
        for (int r = 0; r < reps; r++)
            cellm_cpu_matmul(pool, isa, w, x, C, n, y, w->rows, scratch, C);
        double t = (cpu_now() - t0) / reps;
        if (t < best) best = t;
    }
    free(x);
    free(y);
    free(scratch);
    return best;
}

int main(int argc, char **argv)
{
    enum cellm_isa isa = cellm_cpu_isa();
    int64_t R = 4096, C = 2048;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--isa"))
            isa = cellm_cpu_isa_cap(!strcmp(argv[i + 1], "portable") ? CELLM_ISA_PORTABLE
                                    : !strcmp(argv[i + 1], "avx2")   ? CELLM_ISA_AVX2
                                                                     : CELLM_ISA_AVX512);
        else if (!strcmp(argv[i], "--rows"))
            R = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--cols"))
            C = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fmt"))
            only = argv[i + 1];
    }
    struct cellm_error err;
    struct cellm_pool *pool;
    if (cellm_pool_new(1, &pool, &err)) return 1;
    printf("formats_bench: isa %s, 1 thread, %lld x %lld weights\n", cellm_cpu_isa_name(isa),
           (long long)R, (long long)C);
    printf("%-10s %6s %12s %12s %14s\n", "format", "bpw", "decode GB/s", "decode ms",
           "prefill GFLOP/s");
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
        if (only && strcmp(only, names[k])) continue;
        struct fmt_w f;
        make(k, &f, R, C);
        double bytes = (double)cellm_weight_bytes(&f.w);
        if (f.w.fmt == CELLM_W_AFFINE || f.w.fmt == CELLM_W_BF16)
            bytes =
                f.w.fmt == CELLM_W_BF16 ? (double)(R * C * 2) : (double)(R * C) * (0.5 + 4.0 / 64);
        double td = time_it(pool, isa, &f.w, 1, 20);
        double tp = time_it(pool, isa, &f.w, 128, 2);
        printf("%-10s %6.2f %12.2f %12.3f %14.1f\n", names[k], 8 * bytes / (double)(R * C),
               bytes / td / 1e9, td * 1e3, 2.0 * 128 * (double)(R * C) / tp / 1e9);
        fflush(stdout);
        if (f.w.fmt == CELLM_W_AFFINE || f.w.fmt == CELLM_W_BF16) {
            free(f.block);
            free(f.scales);
            memset(&f, 0, sizeof f);
        } else {
            fmt_free(&f);
        }
    }
    cellm_pool_free(pool);
    return 0;
}
