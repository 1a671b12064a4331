/*
 * test_cuda_layout.c: the device layout of the formats of docs/formats.md (cuda_layout.c,
 * struct cu_layout in cuda_int.h), decoded on the host the way the kernels index it
 * (cuda_dev.cuh's wload and decoders, cuda_mv.cuh's pieces and group shifts, cuda_mvq.cu's
 * one scale per word within a group), element by element against cellm_weight_row; and
 * the device decoders' arithmetic (E2M1 by twice its magnitude, E4M3 times 2^120, E8M0)
 * against weight.h's on every code. Needs no GPU: it runs wherever the CUDA build does.
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

#include "base/half.h"
#include "exec/cuda/cuda_int.h"
#include "model/weight.h"

#include "cuda_ops_util.h"
#include "cuda_qweights.h"

/* cuda_dev.cuh's decoders, in C, as the device computes them */
static float bits_f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t f_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float emu_e2m1(uint32_t c)
{
    static const uint8_t x2[8] = {0, 1, 2, 3, 4, 6, 8, 12}; /* __byte_perm's constants */
    return bits_f(f_bits((float)x2[c & 7] * 0.5f) | ((c & 8u) << 28));
}
static float emu_e4m3(uint32_t c)
{
    float f = bits_f(((c & 0x80u) << 24) | ((c & 0x7fu) << 20)) * 0x1p120f;
    return (c & 0x7fu) == 0x7fu ? bits_f(0x7fc00000u) : f;
}
/* mv_decode's fast decodings (no conversion instructions): code k of a word moved to the top
 * and shifted arithmetically, giving the E2M1 value times 2^-126 or the E4M3 value times
 * 2^-120 (the folded scale undoes it: checked here through 2^126 and 2^120) */
static float emu_e2m1_fast(uint32_t word, int k)
{
    const int32_t v = (int32_t)(k == 7 ? word : word << (28 - 4 * k));
    return bits_f((uint32_t)(v >> 6) & 0x81C00000u) * 0x1p126f;
}
static float emu_e4m3_fast(uint32_t word, int k)
{
    const int32_t v = (int32_t)(k == 3 ? word : word << (24 - 8 * k));
    return bits_f((uint32_t)(v >> 4) & 0x87F00000u) * 0x1p120f;
}
static int emu_e4m3_nan(uint32_t word)
{
    return (((word & 0x7f7f7f7fu) + 0x01010101u) & 0x80808080u) != 0;
}
static float emu_e8m0(uint32_t c)
{
    c &= 0xffu;
    return bits_f(c == 255u ? 0x7fc00000u : c ? c << 23 : 0x00400000u);
}
static float emu_scale(const uint8_t *p, int64_t i, int sdt)
{
    uint16_t u;
    float f;
    switch (sdt) {
    case CU_S_F32:
        memcpy(&f, p + 4 * i, 4);
        return f;
    case CU_S_F16:
        memcpy(&u, p + 2 * i, 2);
        return cellm_f16_to_f32(u);
    case CU_S_BF16:
        memcpy(&u, p + 2 * i, 2);
        return cellm_bf16_to_f32(u);
    default:
        return p[i];
    }
}

/* element (r, c) of a weight in its device layout (l.part: host copies), the way wload and,
 * for GPTQ, k_mv_gptq (a word's one scale when its inputs share a group) read it */
static float emu_at(const struct cu_layout *l, int64_t r, int64_t c)
{
    const struct cu_weight *w = &l->w;
    const uint8_t *data = l->part[CU_P_DATA], *qs = l->part[CU_P_QS];
    const uint8_t *row = data + r * w->row_bytes;
    switch (w->fmt) {
    case CU_W_MXFP4:
    case CU_W_NVFP4: {
        /* k_mv: the piece of 16 columns c / 16, its group p >> gshift, half the scale */
        int gshift = w->group == 32 ? 1 : 0;
        uint32_t sc = qs[r * (w->cols / w->group) + ((c / 16) >> gshift)];
        float hs = (w->fmt == CU_W_NVFP4 ? emu_e4m3(sc) : emu_e8m0(sc)) * 0.5f;
        uint32_t word;
        memcpy(&word, row + (c / 8) * 4, 4); /* raw[h] of the piece: 8 codes */
        uint32_t code = word >> (4 * (c % 8));
        float m = bits_f(f_bits((float)((const uint8_t[]){0, 1, 2, 3, 4, 6, 8, 12})[code & 7]) |
                         ((code & 8u) << 28));
        float v = m * hs;
        float v2 = emu_e2m1(code) * (hs * 2); /* wload's order */
        return f_bits(v) == f_bits(v2) ? v : NAN;
    }
    case CU_W_MXFP8:
        return emu_e4m3(row[c]) * emu_e8m0(qs[r * (w->cols / w->group) + ((c / 16) >> 1)]);
    case CU_W_FP8BLK: {
        const int64_t srow = (r + w->r_off) / w->block_rows * ((w->cols + w->group - 1) / w->group);
        return emu_e4m3(row[c]) * emu_scale(qs, srow + c / w->group, w->sdt);
    }
    case CU_W_GPTQ: {
        const int32_t *perm = l->part[CU_P_PERM], *iperm = l->part[CU_P_IPERM],
                      *gidx = l->part[CU_P_GIDX];
        const uint8_t *zeros = l->part[CU_P_ZEROS];
        const int pack = 32 / w->bits;
        const int64_t j = iperm ? iperm[c] : c, kw = j / pack, j0 = kw * pack;
        if (perm && perm[j] != c) return NAN;
        uint32_t word;
        if (w->rowmaj) { /* k_mv's reading: a row's words, scales and zeros contiguous */
            if (perm || gidx || w->row_bytes != w->cols / pack * 4) return NAN;
            memcpy(&word, data + r * w->row_bytes + 4 * kw, 4);
            const int64_t g = j / w->group;
            const int32_t q = (int32_t)((word >> (w->bits * (j % pack))) & ((1u << w->bits) - 1));
            const float s = emu_scale(qs, r * w->ngroups + g, w->sdt);
            const float b = s * -(float)((int32_t)zeros[r * w->ngroups + g] + w->zero_one);
            return fmaf(s, (float)q, b);
        }
        memcpy(&word, data + 4 * (kw * w->rows + r), 4);
        int64_t g0 = gidx ? gidx[j0] : j0 / w->group,
                g1 = gidx ? gidx[j0 + pack - 1] : (j0 + pack - 1) / w->group;
        int64_t g = g0 == g1 ? g0 : gidx ? gidx[j] : j / w->group;
        int32_t q = (int32_t)((word >> (w->bits * (j % pack))) & ((1u << w->bits) - 1));
        int32_t z = (int32_t)zeros[g * w->rows + r] + w->zero_one;
        return emu_scale(qs, g * w->rows + r, w->sdt) * (float)(q - z);
    }
    }
    return NAN;
}

/* Every element of each case's device layout, decoded on the host as the kernels index it,
 * equals cellm_weight_row's; and the decoders agree with weight.h's on every code. */
static void t_layout(void **state)
{
    (void)state;
    for (uint32_t c = 0; c < 256; c++) {
        float a = emu_e4m3(c), b = cellm_e4m3(c);
        assert_true(f_bits(a) == f_bits(b) || (a != a && b != b));
        a = emu_e8m0(c), b = cellm_e8m0(c);
        assert_true(f_bits(a) == f_bits(b) || (a != a && b != b));
        assert_int_equal(f_bits(emu_e2m1(c & 15)), f_bits(cellm_e2m1(c & 15)));
        /* the fast decodings at every place of a word whose other codes are random */
        for (int k = 0; k < 4; k++) {
            const uint32_t word = (rnd() & ~(0xffu << (8 * k))) | c << (8 * k);
            int has_nan = 0;
            for (int b = 0; b < 4; b++)
                has_nan |= (word >> (8 * b) & 0x7fu) == 0x7fu;
            assert_int_equal(emu_e4m3_nan(word), has_nan);
            if ((c & 0x7f) != 0x7f)
                assert_int_equal(f_bits(emu_e4m3_fast(word, k)), f_bits(cellm_e4m3(c)));
        }
        for (int k = 0; k < 8; k++) {
            const uint32_t word = (rnd() & ~(0xfu << (4 * k))) | (c & 15) << (4 * k);
            assert_int_equal(f_bits(emu_e2m1_fast(word, k)), f_bits(cellm_e2m1(c & 15)));
        }
    }
    int n_before = n_fail;
    for (size_t f = 0; f < 2 * N_Q_CASES; f++) {
        /* each case in the row layout where it applies (GPTQ/AWQ), then the input-major */
        const int rowmaj = f < N_Q_CASES;
        struct qw t;
        qw_make(&t, &q_cases[f % N_Q_CASES]);
        struct cu_layout l;
        assert_int_equal(cellm_cu_layout(&t.h, 0, rowmaj, &l), 0);
        struct cu_layout sz; /* the upload's first pass counts at least as many bytes */
        assert_int_equal(cellm_cu_layout(&t.h, 1, rowmaj, &sz), 0);
        /* the row layout exactly where nothing is permuted and the fused kernels take it */
        const struct qspec *qs = &q_cases[f % N_Q_CASES];
        const int gq = qs->fmt == CU_W_GPTQ || qs->fmt == CU_W_AWQ;
        assert_int_equal(l.w.rowmaj, rowmaj && gq && !l.part[CU_P_PERM] &&
                                         qs->sdt != CELLM_DT_F32 && !(qs->group & (qs->group - 1)));
        assert_int_equal(sz.w.rowmaj, l.w.rowmaj);
        for (int i = 0; i < CU_P_N; i++)
            assert_true(sz.bytes[i] >= l.bytes[i]);
        cellm_cu_layout_free(&sz);
        struct worst w;
        worst_init(&w);
        for (int64_t r = 0; r < t.h.rows; r++)
            for (int64_t c = 0; c < t.h.cols; c++)
                worst_add(&w, r * t.h.cols + c, t.ref[r * t.h.cols + c], emu_at(&l, r, c), 1e-300);
        char shape[64];
        snprintf(shape, sizeof shape, "%lldx%lld%s", (long long)t.h.rows, (long long)t.h.cols,
                 l.w.rowmaj ? " rows" : "");
        report("layout (host)", t.name, shape, &w);
        cellm_cu_layout_free(&l);
        qw_free(&t);
    }
    if (n_fail > n_before) fail_msg("%d of the layout cases failed", n_fail - n_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_layout),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_cuda_layout: %d cases, %d failed\n", n_cases, n_fail);
    return rc;
}
