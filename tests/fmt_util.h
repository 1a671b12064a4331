/*
 * fmt_util.h: builds weights in the quantized formats of docs/formats.md for tests.
 *
 * Each builder packs random codes the way the format's writer does (MLX's LSB-first
 * words, gpt-oss's blocks, AutoGPTQ's input-packed and AutoAWQ's interleaved
 * output-packed words) and computes the expected float32 matrix independently of
 * src/model/weight.c: small floats by arithmetic on their fields (not a table), the
 * product in double and then rounded to float (exact products stay exact; the FP8 block
 * product rounds exactly once, as the float32 reference does).
 */
#ifndef CELLM_TESTS_FMT_UTIL_H
#define CELLM_TESTS_FMT_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "model/weight.h"

static uint64_t fmt_rng = 0x2545f4914f6cdd1dull;

static inline uint32_t fmt_u32(void)
{
    fmt_rng ^= fmt_rng << 13;
    fmt_rng ^= fmt_rng >> 7;
    fmt_rng ^= fmt_rng << 17;
    return (uint32_t)(fmt_rng >> 16);
}

static inline double fmt_uniform(double lo, double hi)
{
    return lo + (hi - lo) * (double)(fmt_u32() & 0xffffff) / (double)0x1000000;
}

/* Independent decoders, from the field definitions. */
static inline double ref_e2m1(unsigned c)
{
    int s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
    double v = e ? ldexp(1.0 + 0.5 * m, e - 1) : 0.5 * m;
    return s ? -v : v;
}

static inline double ref_e4m3(unsigned c)
{
    int s = (c >> 7) & 1, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e ? ldexp(1.0 + m / 8.0, e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}

static inline double ref_e8m0(unsigned c)
{
    return c == 255 ? NAN : ldexp(1.0, (int)c - 127);
}

/* A weight with its storage and expected values. */
struct fmt_w {
    struct cellm_weight w;
    uint8_t *codes, *scales, *zeros, *gidx; /* owned; codes at an odd address */
    size_t n_codes, n_scales, n_zeros, n_gidx;
    uint8_t *block;
    float *ref; /* [rows][cols] */
};

static inline void fmt_free(struct fmt_w *f)
{
    free(f->block);
    free(f->scales);
    free(f->zeros);
    free(f->gidx);
    free(f->ref);
    memset(f, 0, sizeof *f);
}

static inline void put_u32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

/* A random E4M3 code that is not NaN (sign included unless positive). */
static inline uint8_t rand_e4m3(int positive)
{
    uint8_t c = (uint8_t)fmt_u32();
    if ((c & 0x7f) == 0x7f) c ^= 1;
    if (positive) c &= 0x7f;
    return c;
}

/* MLX mxfp4 / mxfp8 / nvfp4 (and gpt-oss blocks, the same bytes). */
static inline void fmt_make_mx(struct fmt_w *f, enum cellm_wfmt fmt, int64_t R, int64_t C)
{
    memset(f, 0, sizeof *f);
    int bits = fmt == CELLM_W_MXFP8 ? 8 : 4, group = fmt == CELLM_W_NVFP4 ? 16 : 32;
    int64_t ng = C / group;
    f->n_codes = (size_t)(R * C * bits / 8);
    f->n_scales = (size_t)(R * ng);
    f->block = calloc(f->n_codes + 1, 1);
    f->scales = malloc(f->n_scales);
    f->ref = malloc((size_t)(R * C) * sizeof(float));
    f->codes = f->block + 1;
    for (int64_t r = 0; r < R; r++)
        for (int64_t g = 0; g < ng; g++) {
            /* weights of moderate size, so that a model built of them stays finite: E8M0
             * 2^-17..2^-6 for E4M3 codes (up to 448), 2^-9..2^0 for E2M1 (up to 6) */
            uint8_t sc = fmt == CELLM_W_NVFP4   ? rand_e4m3(0)
                         : fmt == CELLM_W_MXFP8 ? (uint8_t)(110 + fmt_u32() % 12)
                                                : (uint8_t)(118 + fmt_u32() % 10);
            f->scales[r * ng + g] = sc;
            double s = fmt == CELLM_W_NVFP4 ? ref_e4m3(sc) : ref_e8m0(sc);
            for (int64_t i = g * group; i < (g + 1) * group; i++) {
                unsigned q;
                uint8_t *row = f->codes + r * (C * bits / 8);
                if (bits == 8) {
                    q = rand_e4m3(0);
                    row[i] = (uint8_t)q;
                } else {
                    q = fmt_u32() & 15;
                    row[i / 2] |= (uint8_t)(q << (4 * (i & 1)));
                }
                double v = bits == 8 ? ref_e4m3(q) : ref_e2m1(q);
                f->ref[r * C + i] = (float)(v * s);
            }
        }
    f->w = (struct cellm_weight){.fmt = fmt,
                                 .rows = R,
                                 .cols = C,
                                 .data = f->codes,
                                 .row_bytes = (size_t)(C * bits / 8),
                                 .bits = bits,
                                 .group = group,
                                 .sdtype = CELLM_DT_U8,
                                 .scales = f->scales,
                                 .name = "test.weight"};
}

/* FP8 E4M3 with F32 (or BF16) block scales [ceil(R/bn)][ceil(C/bk)]. */
static inline void fmt_make_fp8(struct fmt_w *f, int64_t R, int64_t C, int bn, int bk,
                                enum cellm_dtype sdt)
{
    memset(f, 0, sizeof *f);
    int64_t sr = (R + bn - 1) / bn, sc = (C + bk - 1) / bk;
    size_t ss = sdt == CELLM_DT_F32 ? 4 : 2;
    f->n_codes = (size_t)(R * C);
    f->n_scales = (size_t)(sr * sc) * ss;
    f->block = calloc(f->n_codes + 1, 1);
    f->scales = malloc(f->n_scales);
    f->ref = malloc((size_t)(R * C) * sizeof(float));
    f->codes = f->block + 1;
    double *s = malloc((size_t)(sr * sc) * sizeof *s);
    for (int64_t k = 0; k < sr * sc; k++) {
        float v = (float)fmt_uniform(1e-4, 3e-2); /* a general float32: products round */
        if (sdt == CELLM_DT_F32) {
            memcpy(f->scales + 4 * k, &v, 4);
            s[k] = v;
        } else {
            uint16_t h = cellm_f32_to_bf16(v);
            memcpy(f->scales + 2 * k, &h, 2);
            s[k] = cellm_bf16_to_f32(h);
        }
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < C; i++) {
            uint8_t q = rand_e4m3(0);
            f->codes[r * C + i] = q;
            f->ref[r * C + i] = (float)(ref_e4m3(q) * s[(r / bn) * sc + i / bk]);
        }
    free(s);
    f->w = (struct cellm_weight){.fmt = CELLM_W_FP8BLK,
                                 .rows = R,
                                 .cols = C,
                                 .data = f->codes,
                                 .row_bytes = (size_t)C,
                                 .bits = 8,
                                 .group = bk,
                                 .block_rows = bn,
                                 .sdtype = sdt,
                                 .scales = f->scales,
                                 .name = "test.weight"};
}

/* GPTQ (awq 0) or AWQ (awq 1); group 0 = one group; gidx: random group per input (GPTQ
 * desc_act); zero_one: GPTQ v1 stored zeros. */
static inline void fmt_make_gptq(struct fmt_w *f, int awq, int bits, int64_t R, int64_t C,
                                 int group, int gidx, int zero_one)
{
    static const int awq_pos[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    memset(f, 0, sizeof *f);
    int pack = 32 / bits;
    int64_t G = group ? group : C, ng = C / G;
    uint32_t mask = (1u << bits) - 1;
    f->n_codes = (size_t)(R * C * bits / 8);
    f->n_zeros = (size_t)(ng * R * bits / 8);
    f->n_scales = (size_t)(ng * R) * 2;
    f->block = calloc(f->n_codes + 1, 1);
    f->codes = f->block + 1;
    f->zeros = calloc(f->n_zeros, 1);
    f->scales = malloc(f->n_scales);
    f->ref = malloc((size_t)(R * C) * sizeof(float));
    int32_t *gi = NULL;
    if (gidx) {
        f->n_gidx = (size_t)C * 4;
        f->gidx = malloc(f->n_gidx);
        gi = (int32_t *)(void *)f->gidx;
        for (int64_t i = 0; i < C; i++)
            gi[i] = (int32_t)(fmt_u32() % (uint32_t)ng);
    }
    uint32_t *zq = calloc((size_t)(ng * R), sizeof *zq);
    double *sv = malloc((size_t)(ng * R) * sizeof *sv);
    for (int64_t g = 0; g < ng; g++)
        for (int64_t o = 0; o < R; o++) {
            uint32_t z = fmt_u32() & mask;
            zq[g * R + o] = z;
            int64_t word = g * (R / pack) + o / pack;
            int sh = awq ? 4 * awq_pos[o % 8] : bits * (int)(o % pack);
            uint32_t cur;
            memcpy(&cur, f->zeros + 4 * word, 4);
            put_u32(f->zeros + 4 * word, cur | z << sh);
            uint16_t h = cellm_f32_to_f16((float)fmt_uniform(-0.05, 0.05));
            memcpy(f->scales + 2 * (g * R + o), &h, 2);
            sv[g * R + o] = cellm_f16_to_f32(h);
        }
    for (int64_t o = 0; o < R; o++)
        for (int64_t i = 0; i < C; i++) {
            uint32_t q = fmt_u32() & mask;
            int64_t word = awq ? i * (R / 8) + o / 8 : (i / pack) * R + o;
            int sh = awq ? 4 * awq_pos[o % 8] : bits * (int)(i % pack);
            uint32_t cur;
            memcpy(&cur, f->codes + 4 * word, 4);
            put_u32(f->codes + 4 * word, cur | q << sh);
            int64_t g = gi ? gi[i] : i / G;
            double d = (double)q - (double)zq[g * R + o] - (awq ? 0 : zero_one);
            f->ref[o * C + i] = (float)(sv[g * R + o] * d);
        }
    free(zq);
    free(sv);
    f->w = (struct cellm_weight){.fmt = awq ? CELLM_W_AWQ : CELLM_W_GPTQ,
                                 .rows = R,
                                 .cols = C,
                                 .data = f->codes,
                                 .row_bytes = 0,
                                 .bits = bits,
                                 .group = (int)G,
                                 .sdtype = CELLM_DT_F16,
                                 .scales = f->scales,
                                 .zeros = f->zeros,
                                 .g_idx = f->gidx,
                                 .ngroups = (int)ng,
                                 .ld = R,
                                 .zero_one = awq ? 0 : zero_one,
                                 .name = "test.qweight"};
}

#endif
