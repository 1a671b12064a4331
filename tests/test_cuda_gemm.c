/*
 * test_cuda_gemm.c: the tensor-core GEMM (src/exec/cuda/cuda_gemm.cu) against a float64
 * dot product of the exactly dequantized weights, for every format it takes (4-bit in row
 * and step order, 8-bit, BF16), groups of 32/64/128/256, row counts that are not
 * multiples of the tiles, short last chunks, several weights in one launch, biases and
 * the K split. Random inputs of mixed magnitudes; the outputs are poisoned before each
 * launch. Skipped where no CUDA device is present (CI).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cuda_runtime.h>

#include "exec/cuda/cuda_int.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float urand(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd() & 0xffffff) / 16777216.0f;
}
static uint16_t to_bf16(float f) /* truncation: any bf16 value will do */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}
static double from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

struct hw { /* one host weight and its device copy */
    struct cu_weight w;
    double *ref; /* [rows][cols] exactly dequantized */
    void *dev[4];
};

static void make_weight(struct hw *h, int fmt, int bits, int group, int64_t rows, int64_t cols,
                        int tiled)
{
    memset(h, 0, sizeof *h);
    struct cu_weight *w = &h->w;
    w->fmt = fmt;
    w->rows = rows;
    w->cols = cols;
    h->ref = malloc((size_t)(rows * cols) * sizeof(double));
    assert_non_null(h->ref);
    if (fmt == CU_W_BF16) {
        w->row_bytes = 2 * cols;
        uint16_t *d = malloc((size_t)(rows * cols) * 2);
        for (int64_t i = 0; i < rows * cols; i++) {
            d[i] = to_bf16(urand(-1, 1) * (float)(1 << (rnd() % 4)));
            h->ref[i] = from_bf16(d[i]);
        }
        assert_int_equal(cudaMalloc(&h->dev[0], (size_t)(rows * cols) * 2), cudaSuccess);
        cudaMemcpy(h->dev[0], d, (size_t)(rows * cols) * 2, cudaMemcpyHostToDevice);
        free(d);
        w->data = h->dev[0];
        return;
    }
    w->bits = bits;
    w->group = group;
    w->s_bf16 = 1;
    w->row_bytes = cols * bits / 8;
    int64_t ng = cols / group, words = rows * w->row_bytes / 4;
    uint32_t *codes = calloc((size_t)words, 4);
    uint16_t *sc = malloc((size_t)(rows * ng) * 2), *bi = malloc((size_t)(rows * ng) * 2);
    for (int64_t i = 0; i < rows * ng; i++) {
        sc[i] = to_bf16(urand(0.001f, 0.03f));
        bi[i] = to_bf16(urand(-0.2f, 0.2f));
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            uint32_t q = rnd() & ((1u << bits) - 1);
            int64_t bit = r * w->row_bytes * 8 + c * bits;
            codes[bit / 32] |= q << (bit % 32);
            int64_t gi = r * ng + c / group;
            h->ref[r * cols + c] = from_bf16(sc[gi]) * q + from_bf16(bi[gi]);
        }
    size_t cb = (size_t)words * 4;
    assert_int_equal(cudaMalloc(&h->dev[0], cb), cudaSuccess);
    assert_int_equal(cudaMalloc(&h->dev[1], (size_t)(rows * ng) * 2), cudaSuccess);
    assert_int_equal(cudaMalloc(&h->dev[2], (size_t)(rows * ng) * 2), cudaSuccess);
    cudaMemcpy(h->dev[1], sc, (size_t)(rows * ng) * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(h->dev[2], bi, (size_t)(rows * ng) * 2, cudaMemcpyHostToDevice);
    if (tiled) {
        assert_int_equal(cudaMalloc(&h->dev[3], cb), cudaSuccess);
        cudaMemcpy(h->dev[3], codes, cb, cudaMemcpyHostToDevice);
        assert_int_equal(cellm_cu_tile_q4(h->dev[3], h->dev[0], 0, rows, cols, group, NULL), 0);
        assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    } else
        cudaMemcpy(h->dev[0], codes, cb, cudaMemcpyHostToDevice);
    w->data = h->dev[0];
    w->scales = h->dev[1];
    w->biases = h->dev[2];
    w->tiled = tiled;
    free(codes);
    free(sc);
    free(bi);
}

static void free_weight(struct hw *h)
{
    for (int i = 0; i < 4; i++)
        cudaFree(h->dev[i]);
    free(h->ref);
}

static int passes = 3; /* 1 in test_fast: fast mode's one bf16 pass */

/* nw weights of one format and width times n random rows; returns the worst error over
 * the bound sum |w||x| * 2^-20 (a wrong or missing term is ~1e3 times that) */
static void check(int fmt, int bits, int group, int tiled, int nw, const int64_t *rows,
                  int64_t cols, int n, int with_bias)
{
    struct hw h[3];
    for (int i = 0; i < nw; i++)
        make_weight(&h[i], fmt, bits, group, rows[i], cols, tiled);
    const int64_t ldx = cols + 4;
    float *x = malloc((size_t)(n * ldx) * 4);
    for (int64_t i = 0; i < n * ldx; i++)
        x[i] = urand(-1, 1) * ldexpf(1.0f, (int)(rnd() % 16) - 8);
    float *dx, *dy[3], *db[3] = {NULL, NULL, NULL}, *part;
    float *bias[3] = {NULL, NULL, NULL};
    assert_int_equal(cudaMalloc((void **)&dx, (size_t)(n * ldx) * 4), cudaSuccess);
    cudaMemcpy(dx, x, (size_t)(n * ldx) * 4, cudaMemcpyHostToDevice);
    int64_t total = 0;
    struct cu_gemm_op op = {.nw = nw, .x = dx, .ldx = ldx, .n = n, .sms = 132, .passes = passes};
    for (int i = 0; i < nw; i++) {
        total += rows[i];
        assert_int_equal(cudaMalloc((void **)&dy[i], (size_t)(n * rows[i]) * 4), cudaSuccess);
        cudaMemset(dy[i], 0xff, (size_t)(n * rows[i]) * 4); /* NaN */
        if (with_bias) {
            bias[i] = malloc((size_t)rows[i] * 4);
            for (int64_t r = 0; r < rows[i]; r++)
                bias[i][r] = urand(-1, 1);
            assert_int_equal(cudaMalloc((void **)&db[i], (size_t)rows[i] * 4), cudaSuccess);
            cudaMemcpy(db[i], bias[i], (size_t)rows[i] * 4, cudaMemcpyHostToDevice);
        }
        op.w[i] = &h[i].w;
        op.y[i] = dy[i];
        op.ldy[i] = rows[i];
        op.bias[i] = db[i];
    }
    op.part_cap = (int64_t)CU_GEMM_KS_MAX * n * total;
    assert_int_equal(cudaMalloc((void **)&part, (size_t)op.part_cap * 4), cudaSuccess);
    op.part = part;
    assert_true(cellm_cu_gemm_supported(&h[0].w, ldx));
    assert_int_equal(cellm_cu_gemm(&op, NULL), 0);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    double worst = 0;
    for (int i = 0; i < nw; i++) {
        float *y = malloc((size_t)(n * rows[i]) * 4);
        cudaMemcpy(y, dy[i], (size_t)(n * rows[i]) * 4, cudaMemcpyDeviceToHost);
        for (int t = 0; t < n; t++)
            for (int64_t r = 0; r < rows[i]; r++) {
                double ref = bias[i] ? bias[i][r] : 0, mag = fabs(ref);
                for (int64_t c = 0; c < cols; c++) {
                    double p = h[i].ref[r * cols + c] * x[t * ldx + c];
                    ref += p;
                    mag += fabs(p);
                }
                double got = y[t * rows[i] + r], e = fabs(got - ref) / (mag * ldexp(1, -20));
                if (!(e <= worst)) worst = e; /* NaN sticks */
            }
        free(y);
        cudaFree(dy[i]);
        cudaFree(db[i]);
        free(bias[i]);
        free_weight(&h[i]);
    }
    /* fast mode rounds x to bf16 (relative error <= 2^-9 per term): its bound is 2^-9,
     * 2^11 times the exact one; a missing or wrong term still exceeds it */
    const double bound = passes == 1 ? ldexp(1, 11) : 1.0;
    printf("fmt %d bits %d group %d tiled %d nw %d rows %lld cols %lld n %d passes %d: worst %.3g "
           "of bound\n",
           fmt, bits, group, tiled, nw, (long long)rows[0], (long long)cols, n, passes,
           worst / bound);
    assert_true(worst <= bound);
    cudaFree(part);
    cudaFree(dx);
    free(x);
}

static int have_gpu(void)
{
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

static void test_q4(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const int64_t r1[1] = {200}, r3[3] = {128, 48, 48}, rt[3] = {272, 272, 272};
    int ns[] = {3, 13, 40, 100};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        check(CU_W_AFFINE, 4, 32, 0, 1, r1, 160, ns[i], 0);
        check(CU_W_AFFINE, 4, 64, 0, 3, r3, 320, ns[i], 1);
        check(CU_W_AFFINE, 4, 128, 0, 1, r1, 384, ns[i], 0);
        check(CU_W_AFFINE, 4, 256, 0, 1, r1, 2048, ns[i], 1); /* split K by whole groups */
        check(CU_W_AFFINE, 4, 64, 1, 1, rt, 512, ns[i], 0);
        check(CU_W_AFFINE, 4, 32, 1, 1, rt, 2048, ns[i], 1);
        check(CU_W_AFFINE, 4, 128, 1, 3, rt, 768, ns[i], 0);
    }
}

static void test_q8(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const int64_t r1[1] = {200}, r3[3] = {64, 32, 32};
    int ns[] = {3, 17, 64, 130};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        check(CU_W_AFFINE, 8, 32, 0, 1, r1, 160, ns[i], 1);
        check(CU_W_AFFINE, 8, 64, 0, 3, r3, 2048, ns[i], 0);
        check(CU_W_AFFINE, 8, 128, 0, 1, r1, 384, ns[i], 0);
    }
}

static void test_bf16(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const int64_t r1[1] = {200}, r3[3] = {256, 64, 64};
    int ns[] = {3, 9, 33, 77};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        check(CU_W_BF16, 0, 0, 0, 1, r1, 96, ns[i], 1);
        check(CU_W_BF16, 0, 0, 0, 3, r3, 2080, ns[i], 0);
    }
}

/* Fast mode: one pass of x rounded to bf16, for every weight kind, within 2^-9. */
static void test_fast(void **state)
{
    (void)state;
    if (!have_gpu()) skip();
    const int64_t r1[1] = {200}, r3[3] = {256, 64, 64};
    passes = 1;
    int ns[] = {3, 40, 77};
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        check(CU_W_AFFINE, 4, 64, 0, 1, r1, 320, ns[i], 1);
        check(CU_W_AFFINE, 8, 32, 0, 1, r1, 160, ns[i], 0);
        check(CU_W_BF16, 0, 0, 0, 3, r3, 2080, ns[i], 1);
    }
    passes = 3;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4),
        cmocka_unit_test(test_q8),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_fast),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
