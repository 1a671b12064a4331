/*
 * test_half.c: exact widening of F16, BF16 and F32 weights (src/base/half.h, the F32 and
 * 16-bit paths of src/model/weight.c).
 *
 * The reference widening here is arithmetic, not bit manipulation: a binary16 value is
 * (-1)^s * m * 2^(e-25) computed with ldexp in double and rounded to float (exact, every
 * binary16 value is a float). All 65536 patterns go through the scalar cellm_f16_to_f32
 * and the bulk cellm_f16_to_f32_n (F16C when the CPU has it), from an unaligned buffer and
 * with a tail that is not a multiple of 8. NaNs compare by class, sign and payload: F16C
 * quiets signalling NaNs (sets the top mantissa bit), which the scalar path does not.
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
#include "model/weight.h"

/* Independent binary16 -> float: value arithmetic, no shared bit tricks. */
static float ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -24);
    else
        v = ldexp((double)(m + 1024), e - 25);
    return (float)(s ? -v : v);
}

/* Independent bfloat16 -> float: 8-bit exponent, 7-bit mantissa. */
static float ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 255)
        v = m ? NAN : INFINITY;
    else if (e == 0)
        v = ldexp((double)m, -133);
    else
        v = ldexp((double)(m + 128), e - 134);
    return (float)(s ? -v : v);
}

/* got must equal want exactly (bits); NaNs: same sign, and payload `payload` (the input's
 * mantissa shifted into place) below the quiet bit. */
static void check_same(float got, float want, uint32_t payload, unsigned pattern, const char *what)
{
    uint32_t g = cellm_f32_bits(got), w = cellm_f32_bits(want);
    if (isnan(want)) {
        if (!isnan(got))
            fail_msg("%s 0x%04x: got %g (0x%08x), expected NaN", what, pattern, (double)got, g);
        if ((g >> 31) != (w >> 31)) fail_msg("%s 0x%04x: NaN sign lost", what, pattern);
        if ((g & 0x3fffffu) != (payload & 0x3fffffu))
            fail_msg("%s 0x%04x: NaN payload 0x%06x, expected 0x%06x", what, pattern, g & 0x3fffffu,
                     payload & 0x3fffffu);
        return;
    }
    if (g != w)
        fail_msg("%s 0x%04x: got %a (0x%08x), expected %a (0x%08x)", what, pattern, (double)got, g,
                 (double)want, w);
}

static void all_f16_patterns(void **state)
{
    (void)state;
    /* one spare byte in front so that the bulk source is odd-aligned */
    uint8_t *raw = malloc(2 * 65536 + 1);
    float *out = malloc(65536 * sizeof *out);
    assert_non_null(raw);
    assert_non_null(out);
    for (unsigned i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        memcpy(raw + 1 + 2 * i, &h, 2);
    }
    cellm_f16_to_f32_n(raw + 1, out, 65536);
    for (unsigned i = 0; i < 65536; i++) {
        float want = ref_f16((uint16_t)i);
        uint32_t payload = (uint32_t)(i & 1023) << 13;
        check_same(cellm_f16_to_f32((uint16_t)i), want, payload, i, "scalar f16");
        check_same(out[i], want, payload, i, "bulk f16");
    }
    /* odd counts exercise the scalar tail of the bulk routine */
    for (size_t n = 1; n < 20; n++) {
        memset(out, 0xff, 32 * sizeof *out);
        cellm_f16_to_f32_n(raw + 1 + 2 * 0x3c00, out, n);
        for (size_t k = 0; k < n; k++)
            check_same(out[k], ref_f16((uint16_t)(0x3c00 + k)), 0, (unsigned)(0x3c00 + k),
                       "bulk f16 tail");
        assert_int_equal(cellm_f32_bits(out[n]), 0xffffffffu); /* nothing written past n */
    }
    free(raw);
    free(out);
}

static void all_bf16_patterns(void **state)
{
    (void)state;
    uint8_t *raw = malloc(2 * 65536 + 3);
    float *out = malloc(65536 * sizeof *out);
    assert_non_null(raw);
    assert_non_null(out);
    for (unsigned i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        memcpy(raw + 3 + 2 * i, &h, 2);
    }
    cellm_bf16_to_f32_n(raw + 3, out, 65536);
    for (unsigned i = 0; i < 65536; i++) {
        float want = ref_bf16((uint16_t)i);
        uint32_t payload = (uint32_t)(i & 127) << 16;
        check_same(cellm_bf16_to_f32((uint16_t)i), want, payload, i, "scalar bf16");
        check_same(out[i], want, payload, i, "bulk bf16");
        /* bf16 widening is a shift, so even NaNs keep every bit */
        assert_int_equal(cellm_f32_bits(out[i]), (uint32_t)i << 16);
    }
    free(raw);
    free(out);
}

/* Hand values, written out rather than computed. */
static void f16_hand_values(void **state)
{
    (void)state;
    static const struct {
        uint16_t h;
        uint32_t bits;
    } v[] = {
        {0x0000, 0x00000000},                       /* +0 */
        {0x8000, 0x80000000},                       /* -0 */
        {0x3c00, 0x3f800000},                       /* 1.0 */
        {0xbc00, 0xbf800000},                       /* -1.0 */
        {0x3555, 0x3eaaa000},                       /* 0.333251953125 */
        {0x0001, 0x33800000},                       /* smallest subnormal 2^-24 */
        {0x8001, 0xb3800000}, {0x03ff, 0x387fc000}, /* largest subnormal 1023 * 2^-24 */
        {0x0400, 0x38800000},                       /* smallest normal 2^-14 */
        {0x7bff, 0x477fe000},                       /* largest normal 65504 */
        {0xfbff, 0xc77fe000}, {0x7c00, 0x7f800000}, /* +inf */
        {0xfc00, 0xff800000},                       /* -inf */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t buf[2 * 9 + 1];
        float out[9];
        for (int k = 0; k < 9; k++)
            memcpy(buf + 1 + 2 * k, &v[i].h, 2);
        cellm_f16_to_f32_n(buf + 1, out, 9); /* 8 through SIMD, 1 through the tail */
        assert_int_equal(cellm_f32_bits(cellm_f16_to_f32(v[i].h)), v[i].bits);
        assert_int_equal(cellm_f32_bits(out[0]), v[i].bits);
        assert_int_equal(cellm_f32_bits(out[8]), v[i].bits);
    }
    assert_true(cellm_f16_to_f32(0x0001) == 0x1p-24f);
    assert_true(cellm_f16_to_f32(0x7bff) == 65504.0f);
    assert_true(cellm_f16_to_f32(0x3c00) == 1.0f);
    assert_true(signbit(cellm_f16_to_f32(0x8000)) && cellm_f16_to_f32(0x8000) == 0.0f);
    assert_true(isinf(cellm_f16_to_f32(0xfc00)) && cellm_f16_to_f32(0xfc00) < 0);
    /* quiet NaN keeps its bits exactly on both paths */
    uint16_t qnan = 0x7e00;
    float out[8];
    uint8_t buf[16];
    for (int k = 0; k < 8; k++)
        memcpy(buf + 2 * k, &qnan, 2);
    cellm_f16_to_f32_n(buf, out, 8);
    assert_true(isnan(cellm_f16_to_f32(qnan)));
    assert_int_equal(cellm_f32_bits(cellm_f16_to_f32(qnan)), 0x7fc00000u);
    assert_int_equal(cellm_f32_bits(out[0]), 0x7fc00000u);
    assert_true(isnan(cellm_f16_to_f32(0xfd01))); /* signalling NaN with payload 0x101 */
}

static void bf16_hand_values(void **state)
{
    (void)state;
    static const struct {
        uint16_t h;
        uint32_t bits;
    } v[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, /* +-0 */
        {0x3f80, 0x3f800000}, {0xbf80, 0xbf800000}, /* +-1 */
        {0x0001, 0x00010000},                       /* smallest subnormal 2^-133 */
        {0x0080, 0x00800000},                       /* smallest normal 2^-126 */
        {0x7f7f, 0x7f7f0000},                       /* largest normal */
        {0x7f80, 0x7f800000}, {0xff80, 0xff800000}, /* +-inf */
        {0x7fc0, 0x7fc00000},                       /* NaN */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t buf[2 * 9 + 1];
        float out[9];
        for (int k = 0; k < 9; k++)
            memcpy(buf + 1 + 2 * k, &v[i].h, 2);
        cellm_bf16_to_f32_n(buf + 1, out, 9);
        assert_int_equal(cellm_f32_bits(cellm_bf16_to_f32(v[i].h)), v[i].bits);
        assert_int_equal(cellm_f32_bits(out[0]), v[i].bits);
        assert_int_equal(cellm_f32_bits(out[8]), v[i].bits);
    }
    assert_true(cellm_bf16_to_f32(0x0001) == 0x1p-133f);
    assert_true(cellm_bf16_to_f32(0x7f7f) == 0x1.fep127f);
    assert_true(isnan(cellm_bf16_to_f32(0x7fc0)));
}

/* The same lanes through the weight paths (F32 read with memcpy, F16/BF16 rows and vectors),
 * from an unaligned mapping-like buffer. */
static void weight_rows_float_formats(void **state)
{
    (void)state;
    static const uint32_t f32[] = {0x00000000, 0x80000000, 0x3f800000, 0x00000001, 0x7f7fffff,
                                   0x7f800000, 0xff800000, 0x7fc00001, 0xc0490fdb};
    static const uint16_t f16[] = {0x0000, 0x8000, 0x3c00, 0x0001, 0x7bff,
                                   0x7c00, 0xfc00, 0x7e01, 0xc248};
    static const uint16_t bf16[] = {0x0000, 0x8000, 0x3f80, 0x0001, 0x7f7f,
                                    0x7f80, 0xff80, 0x7fc1, 0xc049};
    enum { N = 9 };
    uint8_t buf[4 * N * 2 + 1];
    float out[2 * N];

    /* F32: two rows so the second starts at an odd address too */
    for (int r = 0; r < 2; r++)
        memcpy(buf + 1 + 4 * N * r, f32, sizeof f32);
    struct cellm_weight w = {
        .fmt = CELLM_W_F32, .rows = 2, .cols = N, .data = buf + 1, .row_bytes = 4 * N};
    cellm_weight_row(&w, 1, out);
    for (int i = 0; i < N; i++)
        assert_int_equal(cellm_f32_bits(out[i]), f32[i]);
    struct cellm_vec v = {.fmt = CELLM_W_F32, .n = N, .data = buf + 1};
    cellm_vec_get(&v, out);
    for (int i = 0; i < N; i++)
        assert_int_equal(cellm_f32_bits(out[i]), f32[i]);

    for (int r = 0; r < 2; r++)
        memcpy(buf + 1 + 2 * N * r, f16, sizeof f16);
    w = (struct cellm_weight){
        .fmt = CELLM_W_F16, .rows = 2, .cols = N, .data = buf + 1, .row_bytes = 2 * N};
    cellm_weight_row(&w, 1, out);
    v = (struct cellm_vec){.fmt = CELLM_W_F16, .n = N, .data = buf + 1};
    for (int i = 0; i < N; i++) {
        check_same(out[i], ref_f16(f16[i]), (uint32_t)(f16[i] & 1023) << 13, f16[i], "F16 row");
        check_same(cellm_vec_at(&v, i), ref_f16(f16[i]), (uint32_t)(f16[i] & 1023) << 13, f16[i],
                   "F16 vec");
    }

    for (int r = 0; r < 2; r++)
        memcpy(buf + 1 + 2 * N * r, bf16, sizeof bf16);
    w = (struct cellm_weight){
        .fmt = CELLM_W_BF16, .rows = 2, .cols = N, .data = buf + 1, .row_bytes = 2 * N};
    cellm_weight_row(&w, 1, out);
    v = (struct cellm_vec){.fmt = CELLM_W_BF16, .n = N, .data = buf + 1};
    for (int i = 0; i < N; i++) {
        assert_int_equal(cellm_f32_bits(out[i]), (uint32_t)bf16[i] << 16);
        assert_int_equal(cellm_f32_bits(cellm_vec_at(&v, i)), (uint32_t)bf16[i] << 16);
    }
}

/* Narrowing (used by tools and tests) round-trips every finite f16 and rounds to even. */
static void narrowing_round_trip(void **state)
{
    (void)state;
    for (unsigned i = 0; i < 65536; i++) {
        float f = ref_f16((uint16_t)i);
        if (isnan(f))
            assert_true(isnan(cellm_f16_to_f32(cellm_f32_to_f16(f))));
        else
            assert_int_equal(cellm_f32_to_f16(f), i);
    }
    assert_int_equal(cellm_f32_to_f16(65520.0f), 0x7c00); /* overflows to inf */
    assert_int_equal(cellm_f32_to_f16(65519.0f), 0x7bff);
    assert_int_equal(cellm_f32_to_f16(0x1p-25f), 0x0000);        /* tie to even: 0 */
    assert_int_equal(cellm_f32_to_f16(0x1.8p-24f), 0x0002);      /* tie to even: 2 */
    assert_int_equal(cellm_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80); /* tie to even */
    assert_int_equal(cellm_f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(all_f16_patterns),          cmocka_unit_test(all_bf16_patterns),
        cmocka_unit_test(f16_hand_values),           cmocka_unit_test(bf16_hand_values),
        cmocka_unit_test(weight_rows_float_formats), cmocka_unit_test(narrowing_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
