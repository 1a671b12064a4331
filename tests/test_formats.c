/*
 * test_formats.c: the quantized formats of docs/formats.md (src/model/weight.c) and the
 * CPU kernels over them (src/exec/cpu/kernels.c, gemm.c).
 *
 * The small-float decoders are checked on every code against decoders written here from
 * the field definitions (fmt_util.h), including -0, the E2M1 and E4M3 subnormals, E4M3's
 * NaN codes (0x7f, 0xff: NaN, as torch's float8_e4m3fn) and the E8M0 extremes (0: 2^-127,
 * a float32 subnormal; 254: 2^127; 255: NaN, as the OCP MX spec and __nv_fp8_e8m0).
 * Each format's hand-built tensors are decoded by the scalar reference, by every ISA
 * level's row decoder, through sub-views and k-ranges, bit for bit against the values
 * computed in the test; the products (1..9 input rows: the fused decode, row-block and
 * GEMM paths) are compared with a double-precision product within a summation bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"
#include "exec/cpu/kernels_fp.h"
#include "fmt_util.h"

static void same_value(float got, double want, const char *what, long k)
{
    float w = (float)want;
    if (isnan(w)) {
        if (!isnan(got)) fail_msg("%s %ld: %a, expected NaN", what, k, (double)got);
        return;
    }
    if (cellm_f32_bits(got) != cellm_f32_bits(w))
        fail_msg("%s %ld: %a, expected %a", what, k, (double)got, (double)w);
}

static void code_tables(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 16; c++)
        same_value(cellm_e2m1(c), ref_e2m1(c), "e2m1", (long)c);
    for (unsigned c = 0; c < 256; c++) {
        same_value(cellm_e4m3(c), ref_e4m3(c), "e4m3", (long)c);
        same_value(cellm_e8m0(c), ref_e8m0(c), "e8m0", (long)c);
    }
    /* the special codes spelled out */
    assert_true(signbit(cellm_e2m1(8)) && cellm_e2m1(8) == 0.0f);
    assert_true(cellm_e2m1(1) == 0.5f && cellm_e2m1(15) == -6.0f);
    assert_true(signbit(cellm_e4m3(0x80)) && cellm_e4m3(0x80) == 0.0f);
    assert_true(cellm_e4m3(0x01) == 0x1p-9f && cellm_e4m3(0x07) == 7 * 0x1p-9f);
    assert_true(cellm_e4m3(0x7e) == 448.0f && cellm_e4m3(0xfe) == -448.0f);
    assert_true(isnan(cellm_e4m3(0x7f)) && isnan(cellm_e4m3(0xff)));
    assert_true(cellm_e8m0(0) == 0x1p-127f && cellm_e8m0(254) == 0x1p127f);
    assert_true(cellm_e8m0(127) == 1.0f && isnan(cellm_e8m0(255)));
}

static int isa_list(enum cellm_isa *out)
{
    int n = 0;
    for (int i = CELLM_ISA_PORTABLE; i <= (int)cellm_cpu_isa() && n < 8; i++)
        out[n++] = (enum cellm_isa)i;
    return n;
}

static void expect_rows(const float *got, const float *want, int64_t n, const struct fmt_w *f,
                        const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (cellm_f32_bits(got[i]) != cellm_f32_bits(want[i]) && !(isnan(got[i]) && isnan(want[i])))
            fail_msg("%s %s: element %lld is %a, expected %a", cellm_wfmt_name(f->w.fmt), what,
                     (long long)i, (double)got[i], (double)want[i]);
}

/* Every decoder, the whole tensor, a sub-view and k-ranges. */
static void check_decode(const struct fmt_w *f)
{
    int64_t R = f->w.rows, C = f->w.cols;
    float *out = malloc((size_t)(R * C) * sizeof *out);
    assert_non_null(out);
    for (int64_t r = 0; r < R; r++)
        cellm_weight_row(&f->w, r, out + r * C);
    expect_rows(out, f->ref, R * C, f, "cellm_weight_row");
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (int k = 0; k < n_isa; k++) {
        memset(out, 0, (size_t)(R * C) * sizeof *out);
        cellm_cpu_dequant_rows(isas[k], &f->w, 0, R, out);
        expect_rows(out, f->ref, R * C, f, cellm_cpu_isa_name(isas[k]));
        /* rows 5.. of a view starting at row 3 (fused q/k/v, gate/up are such views) */
        struct cellm_weight v = cellm_weight_rows(&f->w, 3, R - 3);
        cellm_cpu_dequant_rows(isas[k], &v, 2, R - 5, out);
        expect_rows(out, f->ref + 5 * C, (R - 5) * C, f, "sub-view");
    }
    /* the SIMD decoders on k-ranges of whole groups (the GEMM's k blocks) */
    for (int k = 0; k < n_isa; k++)
        for (int64_t r = 0; r < R; r += 3) {
            int64_t k0 = f->w.group, kc = C - 2 * f->w.group;
            if (cellm_cpu_fp_dequant(isas[k], &f->w, r, k0, kc, out))
                expect_rows(out, f->ref + r * C + k0, kc, f, "cellm_cpu_fp_dequant");
        }
    /* k-ranges on group boundaries and inside groups */
    int64_t k0s[3] = {0, f->w.group, 5}, kcs[3] = {C, C - f->w.group, C - 9};
    for (int j = 0; j < 3; j++)
        for (int64_t r = 0; r < R; r += 4) {
            cellm_weight_row_seg(&f->w, r, k0s[j], kcs[j], out);
            expect_rows(out, f->ref + r * C + k0s[j], kcs[j], f, "cellm_weight_row_seg");
        }
    free(out);
}

/* y = W x (n input rows) against a double-precision product of the expected weights. */
static void check_matmul(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_weight *w,
                         const float *want, int n)
{
    int64_t R = w->rows, C = w->cols, ldx = C + 3, ldy = R + 5;
    float *x = malloc((size_t)(n * ldx) * sizeof *x);
    float *y = malloc((size_t)(n * ldy) * sizeof *y);
    float *scratch = malloc(cellm_cpu_scratch_floats(cellm_pool_size(pool), C) * sizeof *scratch);
    assert_true(x && y && scratch);
    for (int64_t i = 0; i < n * ldx; i++)
        x[i] = (float)fmt_uniform(-1, 1);
    for (int64_t i = 0; i < n * ldy; i++)
        y[i] = NAN;
    cellm_cpu_matmul(pool, isa, w, x, ldx, n, y, ldy, scratch, C);
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < R; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < C; c++) {
                double p = (double)want[r * C + c] * (double)x[t * ldx + c];
                ref += p;
                mag += fabs(p);
            }
            double tol = 2.0 * (double)C * 0x1p-24 * mag + 1e-30;
            if (!(fabs(y[t * ldy + r] - ref) <= tol))
                fail_msg("%s matmul %s n=%d: y[%d][%lld] = %.9g, reference %.9g (tol %.3g)",
                         cellm_cpu_isa_name(isa), cellm_wfmt_name(w->fmt), n, t, (long long)r,
                         (double)y[t * ldy + r], ref, tol);
        }
    for (int t = 0; t < n; t++)
        for (int64_t r = R; r < ldy; r++)
            assert_true(isnan(y[t * ldy + r]));
    free(x);
    free(y);
    free(scratch);
}

/* GEMM panels of GPTQ/AWQ (cellm_cpu_fp_panel) at every ISA level, bit for bit: first
 * panels and a last one narrower than the panel (zeros past it), from row 0 and from an
 * odd row, whole rows and a k-range. */
static void check_panels(const struct fmt_w *f)
{
    const struct cellm_weight *w = &f->w;
    if (w->fmt != CELLM_W_GPTQ && w->fmt != CELLM_W_AWQ) return;
    int64_t R = w->rows, C = w->cols, pack = 32 / w->bits;
    float *p = malloc((size_t)(32 * C) * sizeof *p);
    assert_non_null(p);
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (int k = 0; k < n_isa; k++) {
        const int nr = isas[k] == CELLM_ISA_AVX512 ? CELLM_GEMM_NR_AVX512 : CELLM_GEMM_NR_AVX2;
        int64_t f0s[3] = {0, 5, R > nr ? R - nr / 2 : R / 2};
        for (int a = 0; a < 3; a++)
            for (int64_t k0 = 0; k0<C; k0 += C / pack / 2 * pack> 0 ? C / pack / 2 * pack : C) {
                int64_t f0 = f0s[a], kc = C - k0;
                int nf = R - f0 < nr ? (int)(R - f0) : nr;
                if (nf <= 0) continue;
                for (int64_t i = 0; i < kc * nr; i++)
                    p[i] = NAN;
                assert_int_equal(cellm_cpu_fp_panel(isas[k], w, f0, nf, k0, kc, nr, p), kc);
                for (int64_t i = 0; i < kc; i++)
                    for (int c = 0; c < nr; c++) {
                        float want = c < nf ? f->ref[(f0 + c) * C + k0 + i] : 0.0f;
                        if (cellm_f32_bits(p[i * nr + c]) != cellm_f32_bits(want))
                            fail_msg("%s %s panel f0 %lld nf %d k0 %lld: p[%lld][%d] = %a, "
                                     "expected %a",
                                     cellm_cpu_isa_name(isas[k]), cellm_wfmt_name(w->fmt),
                                     (long long)f0, nf, (long long)k0, (long long)i, c,
                                     (double)p[i * nr + c], (double)want);
                    }
            }
    }
    free(p);
}

static void check_all(struct fmt_w *f)
{
    check_decode(f);
    struct cellm_pool *pool;
    struct cellm_error err;
    assert_int_equal(cellm_pool_new(3, &pool, &err), CELLM_OK);
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (int k = 0; k < n_isa; k++)
        for (int n = 1; n <= 9; n++) {
            check_matmul(pool, isas[k], &f->w, f->ref, n);
            if (f->w.rows > 3) { /* a view from row 3: vectors of outputs off their words */
                struct cellm_weight v = cellm_weight_rows(&f->w, 3, f->w.rows - 3);
                check_matmul(pool, isas[k], &v, f->ref + 3 * f->w.cols, n);
            }
        }
    check_panels(f);
    cellm_pool_free(pool);
    fmt_free(f);
}

static void mx_formats(void **state)
{
    (void)state;
    struct fmt_w f;
    fmt_make_mx(&f, CELLM_W_MXFP4, 37, 256);
    assert_true(fabs(cellm_weight_bpw(&f.w) - 4.25) < 1e-12);
    check_all(&f);
    fmt_make_mx(&f, CELLM_W_MXFP8, 21, 192);
    assert_true(fabs(cellm_weight_bpw(&f.w) - 8.25) < 1e-12);
    check_all(&f);
    fmt_make_mx(&f, CELLM_W_NVFP4, 19, 160);
    assert_true(fabs(cellm_weight_bpw(&f.w) - 4.5) < 1e-12);
    check_all(&f);
    /* wider than the GEMM's k block (1024): later blocks start inside the row */
    fmt_make_mx(&f, CELLM_W_MXFP4, 9, 2304);
    check_all(&f);
    fmt_make_mx(&f, CELLM_W_NVFP4, 6, 1040);
    check_all(&f);
}

/* -0, subnormals, NaN and the E8M0 extremes inside real tensors. */
static void mx_special_values(void **state)
{
    (void)state;
    struct fmt_w f;
    fmt_make_mx(&f, CELLM_W_MXFP8, 2, 64);
    uint8_t *row = f.codes;
    f.scales[0] = 0;   /* 2^-127 */
    f.scales[1] = 254; /* 2^127 */
    row[0] = 0x80;     /* -0 */
    row[1] = 0x01;     /* smallest subnormal 2^-9: times 2^-127 is 2^-136, still exact */
    row[2] = 0x7f;     /* NaN */
    row[3] = 0x08;     /* 2^-6 * 2^-127 = 2^-133, a float32 subnormal, exact */
    row[32] = 0x7e;    /* 448 * 2^127 overflows to +Inf, as in the reference */
    row[33] = 0x38;    /* 1.0 * 2^127 */
    float out[64];
    cellm_weight_row(&f.w, 0, out);
    assert_true(out[0] == 0.0f && signbit(out[0]));
    assert_true(out[1] == 0x1p-136f);
    assert_true(isnan(out[2]));
    assert_true(out[3] == 0x1p-133f);
    assert_true(isinf(out[32]) && out[32] > 0);
    assert_true(out[33] == 0x1p127f);
    f.scales[0] = 255; /* a NaN scale makes its whole group NaN */
    cellm_weight_row(&f.w, 0, out);
    for (int i = 0; i < 32; i++)
        assert_true(isnan(out[i]));
    fmt_free(&f);
    fmt_make_mx(&f, CELLM_W_MXFP4, 1, 32);
    f.codes[0] = 0x18; /* element 0: code 8 (-0), element 1: code 1 (0.5, subnormal) */
    f.scales[0] = 127;
    cellm_weight_row(&f.w, 0, out);
    assert_true(out[0] == 0.0f && signbit(out[0]) && out[1] == 0.5f);
    fmt_free(&f);
    fmt_make_mx(&f, CELLM_W_NVFP4, 1, 16);
    f.codes[0] = 0x77;  /* 6, 6 */
    f.scales[0] = 0x81; /* E4M3 -2^-9: negative scales are representable */
    cellm_weight_row(&f.w, 0, out);
    assert_true(out[0] == -6 * 0x1p-9f && out[1] == -6 * 0x1p-9f);
    fmt_free(&f);
}

static void fp8_blocks(void **state)
{
    (void)state;
    struct fmt_w f;
    /* partial blocks at the bottom and the right, as DeepSeek's 7168 / 128 is not */
    fmt_make_fp8(&f, 40, 200, 16, 64, CELLM_DT_F32);
    check_all(&f);
    fmt_make_fp8(&f, 33, 128, 32, 32, CELLM_DT_BF16);
    check_all(&f);
    fmt_make_fp8(&f, 7, 1100, 4, 128, CELLM_DT_F32);
    check_all(&f);
    /* a product that must round: 1.125 * (1 + 2^-23) is not a float */
    fmt_make_fp8(&f, 1, 32, 128, 128, CELLM_DT_F32);
    float s = 1.0f + 0x1p-23f, out[32];
    memcpy(f.scales, &s, 4);
    f.codes[0] = 0x39; /* 1.125 */
    cellm_weight_row(&f.w, 0, out);
    volatile float a = 1.125f, b = s;
    assert_true(out[0] == a * b);
    assert_true(out[0] != (float)(1.125 * (double)s) || a * b == (float)(1.125 * (double)s));
    fmt_free(&f);
}

static void gptq_awq(void **state)
{
    (void)state;
    struct fmt_w f;
    fmt_make_gptq(&f, 0, 4, 24, 256, 64, 0, 1); /* v1 zeros, sequential groups */
    check_all(&f);
    fmt_make_gptq(&f, 0, 4, 32, 128, 32, 1, 1); /* desc_act: g_idx */
    check_all(&f);
    fmt_make_gptq(&f, 0, 8, 20, 96, 0, 0, 0); /* 8-bit, one group (-1), v2 zeros */
    check_all(&f);
    fmt_make_gptq(&f, 0, 8, 16, 128, 32, 1, 1);
    check_all(&f);
    fmt_make_gptq(&f, 1, 4, 32, 128, 64, 0, 0); /* AWQ */
    check_all(&f);
    fmt_make_gptq(&f, 1, 4, 16, 256, 128, 0, 0);
    check_all(&f);
    fmt_make_gptq(&f, 0, 4, 8, 1280, 128, 1, 1);
    check_all(&f);
}

/* Random tensors of many shapes (rows 1 up, odd sizes, partial vectors, groups and blocks)
 * through every path at every ISA level. */
static void random_shapes(void **state)
{
    (void)state;
    struct fmt_w f;
    static const int64_t mx_rows[] = {1, 2, 3, 17, 33};
    for (int k = 0; k < 5; k++) {
        int64_t R = mx_rows[k];
        fmt_make_mx(&f, CELLM_W_MXFP4, R, 32 * (1 + 2 * k));
        check_all(&f);
        fmt_make_mx(&f, CELLM_W_NVFP4, R, 16 * (1 + 2 * k));
        check_all(&f);
        fmt_make_mx(&f, CELLM_W_MXFP8, R, 32 * (3 + k));
        check_all(&f);
        fmt_make_fp8(&f, R + 4, 13 + 40 * k, 3 + k, 8 + 8 * k,
                     k & 1 ? CELLM_DT_BF16 : CELLM_DT_F32);
        check_all(&f);
    }
    /* nvfp4 on the permuted input: scales decoded 16 at a time, and fewer at a row's end */
    fmt_make_mx(&f, CELLM_W_NVFP4, 5, 288);
    check_all(&f);
    fmt_make_mx(&f, CELLM_W_NVFP4, 3, 512);
    check_all(&f);
    static const int64_t q_rows[] = {8, 24, 40, 56, 72};
    for (int k = 0; k < 5; k++) {
        int64_t R = q_rows[k];
        fmt_make_gptq(&f, 0, 4, R, 32 * (1 + 2 * k), 32, k & 1, k & 1);
        check_all(&f);
        fmt_make_gptq(&f, 0, 8, R - 4, 64 + 32 * k, k == 2 ? 0 : 32, k == 3, 1);
        check_all(&f);
        fmt_make_gptq(&f, 1, 4, R, 64 * (1 + k), k & 1 ? 32 : 64, 0, 0);
        check_all(&f);
    }
    /* AWQ wide enough for its one-load-per-input decode (8 vectors of outputs) */
    fmt_make_gptq(&f, 1, 4, 264, 128, 64, 0, 0);
    check_all(&f);
    /* F32 scales (the same values): the SIMD levels leave them to the portable decoder */
    fmt_make_gptq(&f, 0, 4, 40, 128, 32, 1, 1);
    size_t ns = f.n_scales / 2;
    uint8_t *s32 = malloc(4 * ns);
    assert_non_null(s32);
    for (size_t i = 0; i < ns; i++) {
        float v = cellm_f16_to_f32(cellm_load_u16(f.scales + 2 * i));
        memcpy(s32 + 4 * i, &v, 4);
    }
    free(f.scales);
    f.scales = s32;
    f.w.scales = s32;
    f.w.sdtype = CELLM_DT_F32;
    check_all(&f);
}

/* The AWQ nibble order by hand: outputs 0..7 of one input from one word. */
static void awq_order(void **state)
{
    (void)state;
    struct fmt_w f;
    fmt_make_gptq(&f, 1, 4, 8, 32, 32, 0, 0);
    memset(f.codes, 0, f.n_codes);
    memset(f.zeros, 0, f.n_zeros);
    uint16_t one = 0x3c00; /* f16 1.0 */
    for (int o = 0; o < 8; o++)
        memcpy(f.scales + 2 * o, &one, 2);
    put_u32(f.codes, 0x76543210u); /* nibble p holds p: output k reads nibble [0,4,1,5,..][k] */
    static const float want[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    float out[32];
    for (int o = 0; o < 8; o++) {
        cellm_weight_row(&f.w, o, out);
        assert_true(out[0] == want[o]);
    }
    fmt_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(code_tables),       cmocka_unit_test(mx_formats),
        cmocka_unit_test(mx_special_values), cmocka_unit_test(fp8_blocks),
        cmocka_unit_test(gptq_awq),          cmocka_unit_test(awq_order),
        cmocka_unit_test(random_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
