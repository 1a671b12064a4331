/*
 * test_fast.c: the fast-mode kernels (src/exec/cpu/fast*.c) against a scalar model of the
 * same quantization, written here independently, on every fast ISA level the CPU has.
 *
 * What the model states (fast.h): BF16 weights meet bf16(x) (round to nearest even) and
 * every product is exact; affine weights meet x quantized per block of 32 (d = max|x|/127,
 * q = rint(x/d)) through exact integer dot products per block, combined as
 * sum_b s_g*d_b*I_b + b_g*fl(d_b*sum q). The model is summed in double; the kernels may
 * differ only by f32 summation, so the check is |got - model| <= 2^-22 * (terms + 8) *
 * sum|term|, a bound a wrong code, scale or layout exceeds by orders of magnitude. The
 * quantizers are compared bit for bit, and so is the f16 narrowing of the KV cache.
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
#include "exec/cpu/fast.h"
#include "exec/cpu/fast_int.h"
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

static double half_val(enum cellm_dtype dt, uint16_t h)
{
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h);
}

/* The test's own int8 quantization of a block (fast.h's definition). */
static int32_t quant_block(const float *x, int8_t *q, float *d)
{
    float amax = 0;
    for (int i = 0; i < 32; i++)
        amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
    volatile float dd = amax / 127.0f;
    volatile float id = dd != 0 ? 1.0f / dd : 0.0f;
    int32_t s = 0;
    for (int i = 0; i < 32; i++) {
        volatile float v = x[i] * id;
        long r = lrintf(v);
        r = r > 127 ? 127 : r < -127 ? -127 : r;
        q[i] = (int8_t)r;
        s += (int32_t)r;
    }
    *d = dd;
    return s;
}

struct wt {
    uint8_t *data, *scales, *biases;
    struct cellm_weight w;
};

static void make_weight(struct wt *t, enum cellm_wfmt fmt, int bits, int group,
                        enum cellm_dtype sdt, int64_t rows, int64_t cols)
{
    memset(t, 0, sizeof *t);
    t->w.fmt = fmt;
    t->w.rows = rows;
    t->w.cols = cols;
    t->w.name = "test";
    if (fmt == CELLM_W_BF16) {
        t->w.row_bytes = (size_t)cols * 2;
        t->data = malloc(t->w.row_bytes * rows + 1);
        for (int64_t i = 0; i < rows * cols; i++) {
            uint16_t h = cellm_f32_to_bf16(uniform(-0.5f, 0.5f));
            memcpy(t->data + 2 * i, &h, 2);
        }
    } else {
        t->w.bits = bits;
        t->w.group = group;
        t->w.sdtype = sdt;
        t->w.row_bytes = (size_t)cols * bits / 8;
        t->data = malloc(t->w.row_bytes * rows + 1);
        for (size_t i = 0; i < t->w.row_bytes * rows; i++)
            t->data[i] = (uint8_t)next_u32();
        int64_t ng = rows * cols / group;
        t->scales = malloc((size_t)ng * 2 + 1);
        t->biases = malloc((size_t)ng * 2 + 1);
        for (int64_t g = 0; g < ng; g++) {
            float s = uniform(0.002f, 0.02f) * (next_u32() & 1 ? 1 : -1);
            uint16_t hs = sdt == CELLM_DT_BF16 ? cellm_f32_to_bf16(s) : cellm_f32_to_f16(s);
            uint16_t hb = sdt == CELLM_DT_BF16 ? cellm_f32_to_bf16(uniform(-0.1f, 0.1f))
                                               : cellm_f32_to_f16(uniform(-0.1f, 0.1f));
            memcpy(t->scales + 2 * g, &hs, 2);
            memcpy(t->biases + 2 * g, &hb, 2);
        }
        t->w.scales = t->scales;
        t->w.biases = t->biases;
    }
    t->w.data = t->data;
}

static void free_weight(struct wt *t)
{
    free(t->data);
    free(t->scales);
    free(t->biases);
}

/* Model value of row r against x, and the sum of |terms| for the bound. */
static double model(const struct cellm_weight *w, int64_t r, const float *x, double *mag,
                    int *terms)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    double y = 0, m = 0;
    if (w->fmt == CELLM_W_BF16) {
        for (int64_t i = 0; i < w->cols; i++) {
            uint16_t h;
            memcpy(&h, row + 2 * i, 2);
            double p =
                (double)cellm_bf16_to_f32(h) * (double)cellm_bf16_to_f32(cellm_f32_to_bf16(x[i]));
            y += p;
            m += fabs(p);
        }
        *terms = (int)w->cols;
    } else {
        int64_t ng = w->cols / w->group;
        for (int64_t b = 0; b < w->cols / 32; b++) {
            int8_t q[32];
            float d;
            int32_t s = quant_block(x + 32 * b, q, &d), I = 0;
            for (int i = 0; i < 32; i++)
                I += (int32_t)cellm_affine_code(row, w->bits, 32 * b + i) * q[i];
            int64_t g = b * 32 / w->group;
            uint16_t hs, hb;
            memcpy(&hs, w->scales + 2 * (r * ng + g), 2);
            memcpy(&hb, w->biases + 2 * (r * ng + g), 2);
            volatile float ds = d * (float)s;
            double a = half_val(w->sdtype, hs) * (double)d * I, c = half_val(w->sdtype, hb) * ds;
            y += a + c;
            m += fabs(a) + fabs(c);
        }
        *terms = (int)(2 * w->cols / 32);
    }
    *mag = m;
    return y;
}

static void fill_x(float *x, int n, int64_t cols)
{
    for (int64_t i = 0; i < n * cols; i++)
        x[i] = uniform(-2, 2);
    x[3] = 40;                                 /* an outlier */
    if (cols >= 64) memset(x + 32, 0, 32 * 4); /* a zero block */
}

static void check_products(enum cellm_fast_isa isa, struct cellm_pool *pool, struct wt *a,
                           struct wt *b, int n)
{
    int64_t K = a->w.cols, R = a->w.rows;
    struct cellm_fast *f;
    struct cellm_error err;
    assert_int_equal(cellm_fast_new(isa, cellm_pool_size(pool), 8, K, &f, &err), CELLM_OK);
    float *x = malloc(sizeof(float) * n * K);
    fill_x(x, n, K);
    int64_t ldy = R + 3;
    float *ya = calloc((size_t)(n * ldy), sizeof(float)), *yb = calloc((size_t)(n * ldy), 4);
    struct cellm_cpu_mm outs[2] = {{&a->w, ya, ldy}, {&b->w, yb, ldy}};
    cellm_fast_matmul_multi(f, pool, outs, 2, x, K, n);
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < n; t++)
            for (int64_t r = 0; r < outs[k].w->rows; r++) {
                double mag;
                int terms;
                double want = model(outs[k].w, r, x + t * K, &mag, &terms);
                double got = outs[k].y[t * ldy + r];
                double bound = ldexp(1, -22) * (terms + 8) * mag + 1e-30;
                if (!(fabs(got - want) <= bound))
                    fail_msg("%s %s bits %d group %d K %lld n %d: y[%d][%lld] = %.9g, model "
                             "%.9g (bound %.3g)",
                             cellm_fast_isa_name(isa), cellm_wfmt_name(outs[k].w->fmt),
                             outs[k].w->bits, outs[k].w->group, (long long)K, n, t, (long long)r,
                             got, want, bound);
            }
    free(x);
    free(ya);
    free(yb);
    cellm_fast_free(f);
}

static int isa_levels(enum cellm_fast_isa *out)
{
    int n = 0;
    for (int i = CELLM_FAST_PORTABLE; i <= (int)cellm_fast_isa(cellm_cpu_isa()); i++)
        out[n++] = (enum cellm_fast_isa)i;
    return n;
}

static void products(void **state)
{
    (void)state;
    struct cellm_pool *pool;
    struct cellm_error err;
    assert_int_equal(cellm_pool_new(2, &pool, &err), CELLM_OK);
    enum cellm_fast_isa isas[4];
    int ni = isa_levels(isas);
    static const int64_t Ks[] = {64, 576, 640, 1024};
    static const int ns[] = {1, 2, 5, 7};
    static const struct {
        enum cellm_wfmt fmt;
        int bits, group;
        enum cellm_dtype sdt;
    } fmts[] = {{CELLM_W_BF16, 0, 0, CELLM_DT_BF16},    {CELLM_W_AFFINE, 4, 64, CELLM_DT_BF16},
                {CELLM_W_AFFINE, 4, 32, CELLM_DT_F16},  {CELLM_W_AFFINE, 4, 128, CELLM_DT_F16},
                {CELLM_W_AFFINE, 8, 64, CELLM_DT_F16},  {CELLM_W_AFFINE, 8, 32, CELLM_DT_BF16},
                {CELLM_W_AFFINE, 8, 128, CELLM_DT_BF16}};
    int checked = 0;
    for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++)
        for (size_t ki = 0; ki < 4; ki++) {
            int64_t K = Ks[ki];
            if (fmts[fi].group && K % fmts[fi].group) continue;
            struct wt a, b;
            make_weight(&a, fmts[fi].fmt, fmts[fi].bits, fmts[fi].group, fmts[fi].sdt, 13, K);
            make_weight(&b, fmts[fi].fmt, fmts[fi].bits, fmts[fi].group, fmts[fi].sdt, 6, K);
            assert_true(cellm_fast_handles(&a.w));
            for (int ii = 0; ii < ni; ii++)
                for (size_t nn = 0; nn < 4; nn++) {
                    check_products(isas[ii], pool, &a, &b, ns[nn]);
                    checked++;
                }
            free_weight(&a);
            free_weight(&b);
        }
    assert_true(checked >= 4 * 20);
    cellm_pool_free(pool);
}

static void handles(void **state)
{
    (void)state;
    struct wt t;
    make_weight(&t, CELLM_W_AFFINE, 4, 64, CELLM_DT_F16, 2, 128);
    assert_true(cellm_fast_handles(&t.w));
    t.w.bits = 3;
    assert_false(cellm_fast_handles(&t.w));
    t.w.bits = 6;
    assert_false(cellm_fast_handles(&t.w));
    t.w.fmt = CELLM_W_F16;
    assert_false(cellm_fast_handles(&t.w));
    t.w.fmt = CELLM_W_F32;
    assert_false(cellm_fast_handles(&t.w));
    free_weight(&t);
}

/* The library's quantizers, reference and SIMD, equal the test's bit for bit. */
static void quantizers(void **state)
{
    (void)state;
    enum { K = 640 };
    float x[K];
    fill_x(x, 1, K);
    x[100] = -1e-30f; /* tiny values quantize to 0 */
    for (int b = 0; b < K / 32; b++) {
        int8_t q[32], qr[32];
        float d, dr;
        int32_t s = cellm_fast_quant_block(x + 32 * b, q, &d),
                sr = quant_block(x + 32 * b, qr, &dr);
        assert_int_equal(s, sr);
        assert_memory_equal(q, qr, 32);
        assert_true(memcmp(&d, &dr, 4) == 0);
    }
    enum cellm_fast_isa isas[4];
    int ni = isa_levels(isas);
    for (int ii = 0; ii < ni; ii++) {
        struct cellm_fast *f;
        struct cellm_error err;
        struct cellm_pool *pool;
        assert_int_equal(cellm_pool_new(1, &pool, &err), CELLM_OK);
        assert_int_equal(cellm_fast_new(isas[ii], 1, 1, K, &f, &err), CELLM_OK);
        /* the ISA's quantizer runs inside a product; its forms must equal the reference's */
        struct wt t;
        make_weight(&t, CELLM_W_AFFINE, 4, 64, CELLM_DT_F16, 4, K);
        float y[4];
        struct cellm_cpu_mm o = {&t.w, y, 4};
        cellm_fast_matmul_multi(f, pool, &o, 1, x, K, 1);
        const struct cellm_fast_x *fx = cellm_fast_last_x(f);
        struct cellm_fast_x ref = *fx;
        int8_t q[K], qp[K];
        float d[K / 32], ds[K / 32], dl[K / 8];
        uint16_t bf[K];
        float xf[K];
        ref.q = q;
        ref.qp = fx->qp ? qp : NULL;
        ref.d = d;
        ref.ds = ds;
        ref.dl = dl;
        ref.bf = fx->bf ? bf : NULL;
        ref.xf = fx->xf ? xf : NULL;
        cellm_fast_quant_row_ref(x, &ref, 0, 1, 1);
        assert_memory_equal(fx->q, q, K);
        if (fx->qp) assert_memory_equal(fx->qp, qp, K);
        assert_memory_equal(fx->d, d, sizeof d);
        assert_memory_equal(fx->ds, ds, sizeof ds);
        assert_memory_equal(fx->dl, dl, sizeof dl);
        free_weight(&t);
        /* bf16 forms: through a BF16 product */
        make_weight(&t, CELLM_W_BF16, 0, 0, CELLM_DT_BF16, 4, K);
        cellm_fast_matmul_multi(f, pool, &o, 1, x, K, 1);
        cellm_fast_quant_row_ref(x, &ref, 0, 1, 0);
        if (fx->bf) {
            assert_memory_equal(fx->bf, bf, sizeof bf);
            for (int i = 0; i < K; i++)
                assert_int_equal(bf[i], cellm_f32_to_bf16(x[i]));
        }
        if (fx->xf) assert_memory_equal(fx->xf, xf, sizeof xf);
        free_weight(&t);
        cellm_fast_free(f);
        cellm_pool_free(pool);
    }
}

static void kv_f16(void **state)
{
    (void)state;
    enum { N = 77 };
    float x[N], q[N], y[N], y0[N];
    uint16_t h[N];
    for (int i = 0; i < N; i++) {
        x[i] = uniform(-3, 3);
        q[i] = uniform(-1, 1);
        y0[i] = uniform(-1, 1);
    }
    x[5] = 1e-6f; /* an f16 subnormal */
    x[6] = 70000; /* beyond f16: inf */
    enum cellm_fast_isa isas[4];
    int ni = isa_levels(isas);
    for (int ii = 0; ii < ni; ii++) {
        cellm_fast_to_f16(isas[ii], x, h, N);
        for (int i = 0; i < N; i++)
            assert_int_equal(h[i], cellm_f32_to_f16(x[i]));
        h[6] = cellm_f32_to_f16(1.5f);
        double want = 0, mag = 0;
        for (int i = 0; i < N; i++) {
            want += (double)q[i] * cellm_f16_to_f32(h[i]);
            mag += fabs((double)q[i] * cellm_f16_to_f32(h[i]));
        }
        float got = cellm_fast_dot_f16(isas[ii], q, h, N);
        assert_true(fabs(got - want) <= ldexp(1, -22) * N * mag);
        memcpy(y, y0, sizeof y);
        cellm_fast_axpy_f16(isas[ii], y, 0.375f, h, N);
        for (int i = 0; i < N; i++) {
            double e = y0[i] + 0.375 * cellm_f16_to_f32(h[i]);
            assert_true(fabs(y[i] - e) <= ldexp(1, -23) * (fabs(e) + fabs(y0[i]) + 1e-30));
        }
    }
}

/* SiLU(g) * up within 2^-20 relative of the double value (or 1e-30 absolute, where exp's
 * argument is clamped to [-87, 88]), over the range that matters and the clamps. */
static void silu(void **state)
{
    (void)state;
    enum { N = 1000 };
    float g[N], up[N], out[N];
    for (int i = 0; i < N; i++) {
        g[i] = i < 900 ? uniform(-20, 20) : uniform(-200, 200);
        up[i] = uniform(-3, 3);
    }
    enum cellm_fast_isa isas[4];
    int ni = isa_levels(isas);
    for (int ii = 0; ii < ni; ii++) {
        memcpy(out, g, sizeof out);
        cellm_fast_glu(isas[ii], CELLM_ACT_SILU, out, up, N - 3);
        for (int i = 0; i < N - 3; i++) {
            double want = g[i] / (1 + exp(-(double)g[i])) * up[i];
            if (!(fabs(out[i] - want) <= ldexp(1, -20) * fabs(want) + 1e-30))
                fail_msg("%s: silu(%g) * %g = %.9g, want %.9g", cellm_fast_isa_name(isas[ii]), g[i],
                         up[i], out[i], want);
        }
        for (int i = N - 3; i < N; i++)
            assert_true(out[i] == g[i]); /* past n: untouched */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(handles), cmocka_unit_test(quantizers), cmocka_unit_test(products),
        cmocka_unit_test(kv_f16),  cmocka_unit_test(silu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
