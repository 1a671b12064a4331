/*
 * test_quant.c: MLX affine reconstruction (src/model/weight.c, src/exec/cpu/kernels.c).
 *
 * Tensors are built here bit by bit: codes are written into an LSB-first bit stream per
 * row (the layout of mlx_checkpoint_format.md section 2), so 3-, 5- and 6-bit codes
 * straddle 32-bit words, and the data, scales and biases sit one byte past an aligned
 * address, as in an MLX file. Every (bits, group size, scale dtype) combination is
 * decoded by the scalar reference cellm_weight_row and by cellm_cpu_dequant_rows on the
 * portable and the detected ISA, and each value must equal fl(fl(scale * q) + bias)
 * computed here with volatile floats (so no FMA can be contracted) from an independent
 * 16-bit widening. (A 16-bit scale has at most 11 significant bits and a code at most 8,
 * so fl(scale * q) is exact and only the sum rounds; a fused multiply-add would give the
 * same value. The test still keeps the two steps apart, as the contract states them.)
 * cellm_cpu_matmul on the same weights is compared with a double-precision product within
 * a summation-error bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/threadpool.h"
#include "exec/cpu/gemm.h"
#include "exec/cpu/kernels.h"
#include "model/weight.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

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

/* Independent widenings (arithmetic, not bit shuffling). */
static float ref_half(enum cellm_dtype dt, uint16_t h)
{
    int s = h >> 15;
    double v;
    if (dt == CELLM_DT_F16) {
        int e = (h >> 10) & 31, m = h & 1023;
        v = e ? ldexp((double)(m + 1024), e - 25) : ldexp((double)m, -24);
    } else {
        int e = (h >> 7) & 255, m = h & 127;
        v = e ? ldexp((double)(m + 128), e - 134) : ldexp((double)m, -133);
    }
    return (float)(s ? -v : v);
}

static uint16_t to_half(enum cellm_dtype dt, float f)
{
    return dt == CELLM_DT_F16 ? cellm_f32_to_f16(f) : cellm_f32_to_bf16(f);
}

/* fl(fl(s*q) + b), never fused. */
static float affine_ref(float s, uint32_t q, float b)
{
    volatile float prod = s * (float)q;
    volatile float sum = prod + b;
    return sum;
}

struct qtensor {
    uint8_t *block; /* one allocation: 1 spare byte + codes + scales + biases */
    struct cellm_weight w;
    uint32_t *codes; /* [rows][cols], what was packed */
    float *ref;      /* [rows][cols], expected values */
};

/* Writes code q of element i into an LSB-first bit stream. */
static void put_code(uint8_t *row, int bits, int64_t i, uint32_t q)
{
    for (int k = 0; k < bits; k++) {
        int64_t bit = i * bits + k;
        if (q >> k & 1) row[bit / 8] |= (uint8_t)(1u << (bit % 8));
    }
}

static void qtensor_make(struct qtensor *t, int64_t rows, int64_t cols, int bits, int group,
                         enum cellm_dtype sdt)
{
    memset(t, 0, sizeof *t);
    size_t row_bytes = (size_t)(cols * bits / 8);
    int64_t ng = cols / group;
    size_t cbytes = (size_t)rows * row_bytes, sbytes = (size_t)(rows * ng) * 2;
    t->block = calloc(1 + cbytes + 2 * sbytes, 1);
    t->codes = malloc((size_t)(rows * cols) * sizeof *t->codes);
    t->ref = malloc((size_t)(rows * cols) * sizeof *t->ref);
    assert_non_null(t->block);
    assert_non_null(t->codes);
    assert_non_null(t->ref);
    uint8_t *data = t->block + 1; /* odd address, like a tensor in an MLX file */
    uint8_t *scales = data + cbytes, *biases = scales + sbytes;
    uint32_t maxq = (1u << bits) - 1;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t g = 0; g < ng; g++) {
            /* negative scales for about half of the groups, as MLX writes them */
            float s = uniform(1e-3f, 0.1f) * ((next_u32() & 1) ? -1.0f : 1.0f);
            float b = uniform(-1.0f, 1.0f);
            if (g == 0 && r == 0) s = -fabsf(s); /* at least one negative scale for sure */
            uint16_t hs = to_half(sdt, s), hb = to_half(sdt, b);
            memcpy(scales + 2 * (r * ng + g), &hs, 2);
            memcpy(biases + 2 * (r * ng + g), &hb, 2);
            float fs = ref_half(sdt, hs), fb = ref_half(sdt, hb);
            for (int64_t i = g * group; i < (g + 1) * group; i++) {
                /* cover 0 and the top code in every group, random in between */
                uint32_t q = i == g * group ? 0 : i == g * group + 1 ? maxq : next_u32() & maxq;
                t->codes[r * cols + i] = q;
                put_code(data + r * row_bytes, bits, i, q);
                t->ref[r * cols + i] = affine_ref(fs, q, fb);
            }
        }
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
                                 .name = "test.weight"};
}

static void qtensor_free(struct qtensor *t)
{
    free(t->block);
    free(t->codes);
    free(t->ref);
}

static void expect_rows(const float *got, const float *want, int64_t n, const char *what, int bits,
                        int group, enum cellm_dtype sdt)
{
    for (int64_t i = 0; i < n; i++)
        if (cellm_f32_bits(got[i]) != cellm_f32_bits(want[i]))
            fail_msg("%s bits %d group %d %s: element %lld is %a, expected %a", what, bits, group,
                     cellm_dtype_name(sdt), (long long)i, (double)got[i], (double)want[i]);
}

/* Every instruction-set level this CPU can run, portable first. */
static int isa_list(enum cellm_isa *out)
{
    int n = 0;
    for (int i = CELLM_ISA_PORTABLE; i <= (int)cellm_cpu_isa() && n < 8; i++)
        out[n++] = (enum cellm_isa)i;
    return n;
}

static const int all_bits[] = {2, 3, 4, 5, 6, 8};
static const int all_groups[] = {32, 64, 128};
static const enum cellm_dtype all_sdt[] = {CELLM_DT_F16, CELLM_DT_BF16};

/* Every storage combination, every decoder, value for value. */
static void affine_all_formats(void **state)
{
    (void)state;
    enum { ROWS = 21, COLS = 384 };
    float *out = malloc(ROWS * COLS * sizeof *out);
    assert_non_null(out);
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (size_t bi = 0; bi < 6; bi++)
        for (size_t gi = 0; gi < 3; gi++)
            for (size_t si = 0; si < 2; si++) {
                int bits = all_bits[bi], group = all_groups[gi];
                enum cellm_dtype sdt = all_sdt[si];
                struct qtensor t;
                qtensor_make(&t, ROWS, COLS, bits, group, sdt);
                /* the inline code reader */
                for (int64_t r = 0; r < ROWS; r++)
                    for (int64_t i = 0; i < COLS; i++)
                        if (cellm_affine_code(t.w.data + r * t.w.row_bytes, bits, i) !=
                            t.codes[r * COLS + i])
                            fail_msg("bits %d: code %lld of row %lld misread", bits, (long long)i,
                                     (long long)r);
                /* scalar reference */
                for (int64_t r = 0; r < ROWS; r++)
                    cellm_weight_row(&t.w, r, out + r * COLS);
                expect_rows(out, t.ref, ROWS * COLS, "cellm_weight_row", bits, group, sdt);
                /* kernels, whole tensor and an offset sub-view (rows 5..17) */
                for (int k = 0; k < n_isa; k++) {
                    memset(out, 0, ROWS * COLS * sizeof *out);
                    cellm_cpu_dequant_rows(isas[k], &t.w, 0, ROWS, out);
                    expect_rows(out, t.ref, ROWS * COLS, cellm_cpu_isa_name(isas[k]), bits, group,
                                sdt);
                    struct cellm_weight sub = cellm_weight_rows(&t.w, 5, 12);
                    memset(out, 0, ROWS * COLS * sizeof *out);
                    cellm_cpu_dequant_rows(isas[k], &sub, 2, 10, out);
                    expect_rows(out, t.ref + 7 * COLS, 10 * COLS, "sub-view", bits, group, sdt);
                }
                qtensor_free(&t);
            }
    free(out);
}

/* Codes that straddle 32-bit words, written as words by hand (section 2.2's examples). */
static void affine_straddling_by_hand(void **state)
{
    (void)state;
    static const struct {
        int bits, elem;
        uint32_t code, w0, w1;
    } cases[] = {
        /* 3-bit element 10 = bits 30-31 of word 0 + bit 0 of word 1; code 0b101 */
        {3, 10, 5, 1u << 30, 1u},
        /* 3-bit, code 0b110: bit 31 of word 0, bit 0 of word 1 */
        {3, 10, 6, 1u << 31, 1u},
        /* 6-bit element 5 = bits 30-31 of word 0 + bits 0-3 of word 1; code 0b101101 */
        {6, 5, 45, 1u << 30, 0xbu},
        /* 5-bit element 6 = bits 30-31 of word 0 + bits 0-2 of word 1; code 0b10011 */
        {5, 6, 19, 3u << 30, 0x4u},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int bits = cases[c].bits;
        int64_t cols = 32;
        size_t row_bytes = (size_t)(cols * bits / 8);
        uint8_t buf[1 + 32 + 4];
        memset(buf, 0, sizeof buf);
        uint8_t *data = buf + 1;
        memcpy(data, &cases[c].w0, 4);
        memcpy(data + 4, &cases[c].w1, 4);
        /* scale -0.5, bias 3.0 as F16 */
        uint16_t s = 0xb800, b = 0x4200;
        uint8_t sb[5];
        memcpy(sb + 1, &s, 2);
        memcpy(sb + 3, &b, 2);
        struct cellm_weight w = {.fmt = CELLM_W_AFFINE,
                                 .rows = 1,
                                 .cols = cols,
                                 .data = data,
                                 .row_bytes = row_bytes,
                                 .bits = bits,
                                 .group = 32,
                                 .sdtype = CELLM_DT_F16,
                                 .scales = sb + 1,
                                 .biases = sb + 3};
        float out[32], out2[32];
        cellm_weight_row(&w, 0, out);
        cellm_cpu_dequant_rows(cellm_cpu_isa(), &w, 0, 1, out2);
        for (int i = 0; i < 32; i++) {
            float want = i == cases[c].elem ? 3.0f - 0.5f * (float)cases[c].code : 3.0f;
            if (out[i] != want || out2[i] != want)
                fail_msg("%d-bit element %d: got %g / %g, expected %g", bits, i, (double)out[i],
                         (double)out2[i], (double)want);
        }
    }
}

/* Quantized embedding row lookup and a stacked (expert) sub-view keep their scales aligned
 * with their codes. */
static void affine_row_views(void **state)
{
    (void)state;
    struct qtensor t;
    qtensor_make(&t, 4 * 8, 128, 4, 64, CELLM_DT_BF16); /* 4 "experts" of 8 rows */
    float out[128];
    for (int e = 0; e < 4; e++) {
        struct cellm_weight ex = cellm_weight_rows(&t.w, e * 8, 8);
        for (int r = 0; r < 8; r++) {
            cellm_weight_row(&ex, r, out);
            expect_rows(out, t.ref + (e * 8 + r) * 128, 128, "expert view", 4, 64, CELLM_DT_BF16);
        }
    }
    assert_int_equal(cellm_weight_bytes(&t.w), 32 * 64 + 2 * 32 * 2 * 2);
    qtensor_free(&t);
}

/* y = W x against a double-precision product of the exact weights. */
static void check_matmul(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_weight *w,
                         const float *wref, int n)
{
    int64_t R = w->rows, C = w->cols, ldx = C + 3, ldy = R + 5;
    float *x = malloc((size_t)(n * ldx) * sizeof *x);
    float *y = malloc((size_t)(n * ldy) * sizeof *y);
    int nt = cellm_pool_size(pool);
    float *scratch = malloc(cellm_cpu_scratch_floats(nt, C) * sizeof *scratch);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(scratch);
    for (int64_t i = 0; i < n * ldx; i++)
        x[i] = uniform(-1, 1);
    for (int64_t i = 0; i < n * ldy; i++)
        y[i] = NAN;
    cellm_cpu_matmul(pool, isa, w, x, ldx, n, y, ldy, scratch, C);
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < R; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < C; c++) {
                ref += (double)wref[r * C + c] * (double)x[t * ldx + c];
                mag += fabs((double)wref[r * C + c] * (double)x[t * ldx + c]);
            }
            /* float summation of C products: |err| <= C * 2^-24 * sum|w x| (loose by 2x) */
            double tol = 2.0 * (double)C * 0x1p-24 * mag + 1e-30;
            double got = y[t * ldy + r];
            if (!(fabs(got - ref) <= tol))
                fail_msg("%s matmul %s: y[%d][%lld] = %.9g, reference %.9g (tol %.3g)",
                         cellm_cpu_isa_name(isa), cellm_wfmt_name(w->fmt), t, (long long)r, got,
                         ref, tol);
        }
    /* nothing written between rows of y */
    for (int t = 0; t < n; t++)
        for (int64_t r = R; r < ldy; r++)
            assert_true(isnan(y[t * ldy + r]));
    free(x);
    free(y);
    free(scratch);
}

static void matmul_against_double(void **state)
{
    (void)state;
    struct cellm_pool *pool;
    struct cellm_error err;
    assert_int_equal(cellm_pool_new(3, &pool, &err), CELLM_OK);
    enum cellm_isa isas[8];
    int n_isa = isa_list(isas);
    for (size_t bi = 0; bi < 6; bi++) {
        int bits = all_bits[bi], group = all_groups[bi % 3];
        enum cellm_dtype sdt = all_sdt[bi % 2];
        struct qtensor t;
        /* 53 rows: three full row blocks, a partial one, and rows past a multiple of 4 */
        qtensor_make(&t, 53, 256, bits, group, sdt);
        for (int k = 0; k < n_isa; k++) {
            check_matmul(pool, isas[k], &t.w, t.ref, 1); /* single thread path */
            check_matmul(pool, isas[k], &t.w, t.ref, 5); /* pool path */
        }
        qtensor_free(&t);
    }
    /* float formats too, from odd addresses; 256 columns take the fused decode kernels,
     * 200 the generic path */
    enum { R = 37, CMAX = 256 };
    uint8_t *raw = malloc(1 + (size_t)R * CMAX * 4);
    float *wref = malloc((size_t)R * CMAX * sizeof *wref);
    assert_non_null(raw);
    assert_non_null(wref);
    for (int f = 0; f < 6; f++) {
        const int64_t C = f < 3 ? 200 : CMAX;
        enum cellm_wfmt fmt = f % 3 == 0 ? CELLM_W_F32 : f % 3 == 1 ? CELLM_W_F16 : CELLM_W_BF16;
        size_t es = fmt == CELLM_W_F32 ? 4 : 2;
        for (int64_t i = 0; i < R * C; i++) {
            float v = uniform(-2, 2);
            if (fmt == CELLM_W_F32) {
                memcpy(raw + 1 + 4 * i, &v, 4);
                wref[i] = v;
            } else {
                enum cellm_dtype dt = fmt == CELLM_W_F16 ? CELLM_DT_F16 : CELLM_DT_BF16;
                uint16_t h = to_half(dt, v);
                memcpy(raw + 1 + 2 * i, &h, 2);
                wref[i] = ref_half(dt, h);
            }
        }
        struct cellm_weight w = {
            .fmt = fmt, .rows = R, .cols = C, .data = raw + 1, .row_bytes = C * es};
        for (int k = 0; k < n_isa; k++) {
            check_matmul(pool, isas[k], &w, wref, 1);
            check_matmul(pool, isas[k], &w, wref, 7);
        }
    }
    free(raw);
    free(wref);
    cellm_pool_free(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(affine_all_formats),
        cmocka_unit_test(affine_straddling_by_hand),
        cmocka_unit_test(affine_row_views),
        cmocka_unit_test(matmul_against_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
