/*
 * test_gemm.c: the CPU GEMM (src/exec/cpu/gemm.c) against the scalar reference.
 *
 * Weights in every stored format (F32, F16, BF16; MLX affine 2/3/4/5/6/8 bits, groups
 * 32/64/128, f16 and bf16 scales) are built here at odd addresses; their reference values
 * come from cellm_weight_row (itself checked value by value in test_quant.c). Shapes are
 * chosen to hit every edge of the blocking: rows that are not a multiple of any panel
 * width, K of two k blocks (K > 1024), float K that is not a multiple of 16, and every
 * row count from 1 to 37 (full and partial row tiles of every ISA).
 *
 * Two checks, on every instruction-set level this CPU runs:
 *  - exact values: with x the identity, y = W^T, and each y[t][o] must equal the
 *    reference weight W[o][t] bit for bit (one product of 1.0 and the rest 0.0 sum
 *    exactly), so every decoded, transposed and packed weight is the contract's value;
 *  - products (through cellm_cpu_gemm and through cellm_cpu_matmul_multi's dispatch): y
 *    against a double-precision product of the reference weights, within the
 *    bound of any f32 summation order of K terms (FMA or not), gamma_K * sum |w x| with
 *    gamma_K = K u / (1 - K u), u = 2^-24; nothing may be written between rows of y.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"
#include "model/weight.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint32_t next_u32(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static float uniform(float lo, float hi)
{
    return lo + (hi - lo) * (float)(next_u32() & 0xffffff) / (float)0x1000000;
}

/* A weight in its stored bytes plus its reference values. */
struct tw {
    uint8_t *block;
    struct cellm_weight w;
    float *ref; /* [rows][cols] from cellm_weight_row */
};

static void tw_finish(struct tw *t)
{
    t->ref = malloc((size_t)(t->w.rows * t->w.cols) * sizeof *t->ref);
    assert_non_null(t->ref);
    for (int64_t r = 0; r < t->w.rows; r++)
        cellm_weight_row(&t->w, r, t->ref + r * t->w.cols);
}

static void tw_float(struct tw *t, enum cellm_wfmt fmt, int64_t rows, int64_t cols)
{
    size_t es = fmt == CELLM_W_F32 ? 4 : 2, n = (size_t)(rows * cols);
    t->block = malloc(1 + n * es);
    assert_non_null(t->block);
    uint8_t *data = t->block + 1; /* odd address, as in a safetensors file */
    for (size_t i = 0; i < n; i++) {
        float v = uniform(-2, 2);
        if (fmt == CELLM_W_F32) {
            memcpy(data + 4 * i, &v, 4);
        } else {
            uint16_t h = fmt == CELLM_W_F16 ? cellm_f32_to_f16(v) : cellm_f32_to_bf16(v);
            memcpy(data + 2 * i, &h, 2);
        }
    }
    t->w = (struct cellm_weight){.fmt = fmt,
                                 .rows = rows,
                                 .cols = cols,
                                 .data = data,
                                 .row_bytes = (size_t)cols * es,
                                 .name = "test.float"};
    tw_finish(t);
}

static void tw_affine(struct tw *t, int64_t rows, int64_t cols, int bits, int group,
                      enum cellm_dtype sdt)
{
    size_t row_bytes = (size_t)(cols * bits / 8), cbytes = (size_t)rows * row_bytes;
    size_t sbytes = (size_t)(rows * (cols / group)) * 2;
    t->block = calloc(1 + cbytes + 2 * sbytes, 1);
    assert_non_null(t->block);
    uint8_t *data = t->block + 1, *scales = data + cbytes, *biases = scales + sbytes;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < cols; i++) {
            uint32_t q = next_u32() & ((1u << bits) - 1);
            for (int k = 0; k < bits; k++) {
                int64_t bit = i * bits + k;
                if (q >> k & 1) data[r * (int64_t)row_bytes + bit / 8] |= (uint8_t)(1u << bit % 8);
            }
        }
    for (size_t g = 0; g < sbytes / 2; g++) {
        float s = uniform(1e-3f, 0.1f) * ((next_u32() & 1) ? -1.0f : 1.0f), b = uniform(-1, 1);
        uint16_t hs = sdt == CELLM_DT_F16 ? cellm_f32_to_f16(s) : cellm_f32_to_bf16(s);
        uint16_t hb = sdt == CELLM_DT_F16 ? cellm_f32_to_f16(b) : cellm_f32_to_bf16(b);
        memcpy(scales + 2 * g, &hs, 2);
        memcpy(biases + 2 * g, &hb, 2);
    }
    t->w = (struct cellm_weight){.fmt = CELLM_W_AFFINE,
                                 .rows = rows,
                                 .cols = cols,
                                 .data = data,
                                 .row_bytes = row_bytes,
                                 .bits = bits,
                                 .group = group,
                                 .sdtype = sdt,
                                 .scales = scales,
                                 .biases = biases,
                                 .name = "test.affine"};
    tw_finish(t);
}

static void tw_free(struct tw *t)
{
    free(t->block);
    free(t->ref);
}

static int isa_list(enum cellm_isa *out)
{
    int n = 0;
    for (int i = CELLM_ISA_PORTABLE; i <= (int)cellm_cpu_isa() && n < 8; i++)
        out[n++] = (enum cellm_isa)i;
    return n;
}

static float *scratch_for(struct cellm_pool *pool, int64_t cols)
{
    float *s = malloc(cellm_cpu_scratch_floats(cellm_pool_size(pool), cols) * 4);
    assert_non_null(s);
    return s;
}

static const char *what(const struct cellm_weight *w)
{
    static char buf[64];
    if (w->fmt != CELLM_W_AFFINE) return cellm_wfmt_name(w->fmt);
    snprintf(buf, sizeof buf, "affine %d-bit g%d %s", w->bits, w->group,
             cellm_dtype_name(w->sdtype));
    return buf;
}

/* x = identity: y[t][o] must be the reference weight W[o][t], bit for bit. */
static void check_exact(struct cellm_pool *pool, enum cellm_isa isa, const struct tw *t)
{
    int64_t K = t->w.cols, R = t->w.rows, ldy = R + 3;
    float *x = calloc((size_t)(K * K), sizeof *x);
    float *y = malloc((size_t)(K * ldy) * sizeof *y);
    float *scratch = scratch_for(pool, K);
    assert_non_null(x);
    assert_non_null(y);
    for (int64_t k = 0; k < K; k++)
        x[k * K + k] = 1.0f;
    struct cellm_cpu_mm o = {&t->w, y, ldy};
    cellm_cpu_gemm(pool, isa, &o, 1, x, K, (int)K, scratch, K);
    for (int64_t k = 0; k < K; k++)
        for (int64_t r = 0; r < R; r++) {
            float got = y[k * ldy + r], want = t->ref[r * K + k];
            if (!(got == want))
                fail_msg("%s, %s: weight [%lld][%lld] came out %a, reference %a",
                         cellm_cpu_isa_name(isa), what(&t->w), (long long)r, (long long)k,
                         (double)got, (double)want);
        }
    free(x);
    free(y);
    free(scratch);
}

/* Several products of one x through cellm_cpu_gemm (direct) or cellm_cpu_matmul_multi
 * (the GEMM from CELLM_CPU_GEMM_MIN_ROWS rows on), each against double precision. */
static void check_products(struct cellm_pool *pool, enum cellm_isa isa, const struct tw *ts, int nt,
                           int n, int direct)
{
    int64_t K = ts[0].w.cols, ldx = K + 3;
    float *x = malloc((size_t)(n * ldx) * sizeof *x);
    float *scratch = scratch_for(pool, K);
    assert_non_null(x);
    for (int64_t i = 0; i < n * ldx; i++)
        x[i] = uniform(-1, 1);
    struct cellm_cpu_mm outs[4];
    for (int k = 0; k < nt; k++) {
        int64_t ldy = ts[k].w.rows + 5;
        float *y = malloc((size_t)(n * ldy) * sizeof *y);
        assert_non_null(y);
        for (int64_t i = 0; i < n * ldy; i++)
            y[i] = NAN;
        outs[k] = (struct cellm_cpu_mm){&ts[k].w, y, ldy};
    }
    if (direct)
        cellm_cpu_gemm(pool, isa, outs, nt, x, ldx, n, scratch, K);
    else
        cellm_cpu_matmul_multi(pool, isa, outs, nt, x, ldx, n, scratch, K);
    const double u = 0x1p-24, gamma = (double)K * u / (1 - (double)K * u);
    for (int k = 0; k < nt; k++) {
        const float *wref = ts[k].ref;
        int64_t R = ts[k].w.rows, ldy = outs[k].ldy;
        for (int t = 0; t < n; t++) {
            for (int64_t r = 0; r < R; r++) {
                double ref = 0, mag = 0;
                for (int64_t c = 0; c < K; c++) {
                    double p = (double)wref[r * K + c] * (double)x[t * ldx + c];
                    ref += p;
                    mag += fabs(p);
                }
                double got = outs[k].y[t * ldy + r], tol = gamma * mag;
                if (!(fabs(got - ref) <= tol))
                    fail_msg("%s, %s, n=%d, product %d: y[%d][%lld] = %.9g, reference %.9g "
                             "(bound %.3g)",
                             cellm_cpu_isa_name(isa), what(&ts[k].w), n, k, t, (long long)r, got,
                             ref, tol);
            }
            for (int64_t r = R; r < ldy; r++)
                if (!isnan(outs[k].y[t * ldy + r]))
                    fail_msg("%s, %s: y[%d][%lld] written past the product's %lld rows",
                             cellm_cpu_isa_name(isa), what(&ts[k].w), t, (long long)r,
                             (long long)R);
        }
        free(outs[k].y);
    }
    free(x);
    free(scratch);
}

static const int all_bits[] = {2, 3, 4, 5, 6, 8};
static const int all_groups[] = {32, 64, 128};

/* Every format's values survive decoding, transposition and packing exactly. */
static void gemm_exact_values(void **state)
{
    (void)state;
    struct cellm_pool *pool;
    struct cellm_error err;
    assert_int_equal(cellm_pool_new(3, &pool, &err), CELLM_OK);
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (int f = 0; f < 3; f++) {
        struct tw t;
        /* 1037 columns: two k blocks, the second not a multiple of 16 */
        tw_float(&t, f == 0 ? CELLM_W_F32 : f == 1 ? CELLM_W_F16 : CELLM_W_BF16, 45, 1037);
        for (int k = 0; k < n_isa; k++)
            check_exact(pool, isas[k], &t);
        tw_free(&t);
    }
    for (size_t bi = 0; bi < 6; bi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (int si = 0; si < 2; si++) {
                struct tw t;
                /* 1152 columns: two k blocks, a multiple of every group */
                tw_affine(&t, 45, 1152, all_bits[bi], all_groups[gi],
                          si ? CELLM_DT_BF16 : CELLM_DT_F16);
                for (int k = 0; k < n_isa; k++)
                    check_exact(pool, isas[k], &t);
                tw_free(&t);
            }
    cellm_pool_free(pool);
}

/* Random inputs, 1 to 37 rows, one to three products sharing them, one and three threads. */
static void gemm_products(void **state)
{
    (void)state;
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (int threads = 1; threads <= 3; threads += 2) {
        struct cellm_pool *pool;
        struct cellm_error err;
        assert_int_equal(cellm_pool_new(threads, &pool, &err), CELLM_OK);
        struct tw fl[3], af[3];
        tw_float(&fl[0], CELLM_W_BF16, 45, 1037);
        tw_float(&fl[1], CELLM_W_F16, 16, 1037);
        tw_float(&fl[2], CELLM_W_F32, 7, 1037);
        tw_affine(&af[0], 45, 1152, 4, 64, CELLM_DT_BF16);
        tw_affine(&af[1], 33, 1152, 8, 32, CELLM_DT_F16);
        tw_affine(&af[2], 5, 1152, 3, 128, CELLM_DT_BF16);
        for (int k = 0; k < n_isa; k++)
            for (int n = 1; n <= 37; n++)
                for (int direct = 0; direct < 2; direct++) {
                    check_products(pool, isas[k], fl, 3, n, direct);
                    check_products(pool, isas[k], af, 3, n, direct);
                }
        /* the remaining widths, one product each, at a few row counts */
        for (size_t bi = 0; bi < 6; bi++) {
            struct tw t;
            tw_affine(&t, 37, 384, all_bits[bi], all_groups[bi % 3],
                      bi % 2 ? CELLM_DT_F16 : CELLM_DT_BF16);
            for (int k = 0; k < n_isa; k++) {
                check_products(pool, isas[k], &t, 1, 2, 1);
                check_products(pool, isas[k], &t, 1, 13, 0);
            }
            tw_free(&t);
        }
        for (int i = 0; i < 3; i++) {
            tw_free(&fl[i]);
            tw_free(&af[i]);
        }
        cellm_pool_free(pool);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemm_exact_values),
        cmocka_unit_test(gemm_products),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
