/*
 * kernels_fp.c: AVX2 and AVX-512 row decoders for E2M1 / E4M3 codes (see kernels_fp.h).
 *
 * E2M1 is a table lookup in registers: the magnitude (3 bits) through a permute of the 8
 * values, the sign bit moved to bit 31 (AVX2), or all 16 signed values in one permute
 * (AVX-512). E4M3 is built from its bits as in cellm_e4m3: a normal code's fields shifted
 * into float32's with the exponent rebiased by 120, a subnormal as m * 2^-9, 0x7f as NaN.
 * Scales are widened once per group (E8M0 and E4M3 scalars, FP8 blocks' F32/BF16/F16).
 */
#include "kernels_fp.h"

#include <string.h>

#include "base/half.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))

static float group_scale(const struct cellm_weight *w, const uint8_t *s)
{
    return w->fmt == CELLM_W_NVFP4 ? cellm_e4m3(*s) : cellm_e8m0(*s);
}

/* FP8 block scale of row r, block column b. */
static float block_scale(const struct cellm_weight *w, int64_t r, int64_t b)
{
    int64_t sc = (w->cols + w->group - 1) / w->group;
    size_t i = (size_t)(((r + w->r_off) / w->block_rows) * sc + b);
    switch (w->sdtype) {
    case CELLM_DT_F32:
        return cellm_bits_f32(cellm_load_u32(w->scales + 4 * i));
    case CELLM_DT_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(w->scales + 2 * i));
    default:
        return cellm_f16_to_f32(cellm_load_u16(w->scales + 2 * i));
    }
}

/* ---- AVX2 ---------------------------------------------------------------------------- */

/* 8 E2M1 codes (one per 32-bit lane) as floats. */
AVX2 static inline __m256 e2m1x8(__m256i c)
{
    const __m256 mag = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    __m256 v = _mm256_permutevar8x32_ps(mag, c); /* uses the low 3 bits */
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(8)), 28);
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}

/* 8 E4M3 codes (one per 32-bit lane) as floats. */
AVX2 static inline __m256 e4m3x8(__m256i c)
{
    __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7f));
    __m256i normal = _mm256_add_epi32(_mm256_slli_epi32(mag, 20), _mm256_set1_epi32(120 << 23));
    __m256 sub = _mm256_mul_ps(_mm256_cvtepi32_ps(mag), _mm256_set1_ps(0x1p-9f));
    __m256 is_normal = _mm256_castsi256_ps(_mm256_cmpgt_epi32(mag, _mm256_set1_epi32(7)));
    __m256 v = _mm256_blendv_ps(sub, _mm256_castsi256_ps(normal), is_normal);
    __m256 is_nan = _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7f)));
    v = _mm256_blendv_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)), is_nan);
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24);
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}

/* n (a multiple of 16) E2M1 codes from p (low nibble first) times sc into out. */
AVX2 static void e2m1_run_avx2(const uint8_t *p, int64_t n, __m256 sc, float *out)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    for (int64_t e = 0; e < n; e += 16) {
        __m128i v = _mm_loadl_epi64((const __m128i *)(p + e / 2));
        __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
        __m128i a = _mm_unpacklo_epi8(lo, hi); /* elements e .. e+15 in order */
        _mm256_storeu_ps(out + e, _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(a)), sc));
        _mm256_storeu_ps(out + e + 8,
                         _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8))), sc));
    }
}

AVX2 static void e4m3_run_avx2(const uint8_t *p, int64_t n, __m256 sc, float *out)
{
    int64_t e = 0;
    for (; e + 8 <= n; e += 8) {
        __m256i c = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + e)));
        _mm256_storeu_ps(out + e, _mm256_mul_ps(e4m3x8(c), sc));
    }
    for (; e < n; e++)
        out[e] = cellm_e4m3(p[e]) * _mm256_cvtss_f32(sc);
}

AVX2 static int fp_avx2(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc, float *out)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    if (w->fmt == CELLM_W_FP8BLK) {
        for (int64_t i = k0; i < k0 + kc;) {
            int64_t b = i / w->group, end = (b + 1) * w->group;
            if (end > k0 + kc) end = k0 + kc;
            e4m3_run_avx2(row + i, end - i, _mm256_set1_ps(block_scale(w, r, b)), out + (i - k0));
            i = end;
        }
        return 1;
    }
    /* MX formats: k0 and kc are whole groups (the GEMM's k blocks are multiples of 128) */
    if (k0 % w->group || kc % w->group) return 0;
    const uint8_t *s = w->scales + (size_t)r * (size_t)(w->cols / w->group);
    for (int64_t g = k0 / w->group; g < (k0 + kc) / w->group; g++) {
        __m256 sc = _mm256_set1_ps(group_scale(w, s + g));
        float *o = out + (g * w->group - k0);
        if (w->fmt == CELLM_W_MXFP8)
            e4m3_run_avx2(row + g * w->group, w->group, sc, o);
        else
            e2m1_run_avx2(row + g * w->group / 2, w->group, sc, o);
    }
    return 1;
}

/* ---- AVX-512 ------------------------------------------------------------------------- */

AVX512 static inline __m512 e4m3x16(__m512i c)
{
    __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7f));
    __m512i normal = _mm512_add_epi32(_mm512_slli_epi32(mag, 20), _mm512_set1_epi32(120 << 23));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(mag), _mm512_set1_ps(0x1p-9f));
    v = _mm512_mask_mov_ps(v, _mm512_cmpgt_epi32_mask(mag, _mm512_set1_epi32(7)),
                           _mm512_castsi512_ps(normal));
    v = _mm512_mask_mov_ps(v, _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f)),
                           _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
    __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(v), sign));
}

AVX512 static void e2m1_run_avx512(const uint8_t *p, int64_t n, __m512 sc, float *out)
{
    const __m512 tbl = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                      -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    int64_t e = 0;
    for (; e + 32 <= n; e += 32) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + e / 2));
        __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
        __m512i a = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
        __m512i b = _mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi));
        _mm512_storeu_ps(out + e, _mm512_mul_ps(_mm512_permutexvar_ps(a, tbl), sc));
        _mm512_storeu_ps(out + e + 16, _mm512_mul_ps(_mm512_permutexvar_ps(b, tbl), sc));
    }
    if (e < n) { /* a 16-element group (nvfp4) */
        __m128i v = _mm_loadl_epi64((const __m128i *)(p + e / 2));
        __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
        __m512i a = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
        _mm512_storeu_ps(out + e, _mm512_mul_ps(_mm512_permutexvar_ps(a, tbl), sc));
    }
}

AVX512 static void e4m3_run_avx512(const uint8_t *p, int64_t n, __m512 sc, float *out)
{
    int64_t e = 0;
    for (; e + 16 <= n; e += 16) {
        __m512i c = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + e)));
        _mm512_storeu_ps(out + e, _mm512_mul_ps(e4m3x16(c), sc));
    }
    float s = _mm512_cvtss_f32(sc);
    for (; e < n; e++)
        out[e] = cellm_e4m3(p[e]) * s;
}

AVX512 static int fp_avx512(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc,
                            float *out)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    if (w->fmt == CELLM_W_FP8BLK) {
        for (int64_t i = k0; i < k0 + kc;) {
            int64_t b = i / w->group, end = (b + 1) * w->group;
            if (end > k0 + kc) end = k0 + kc;
            e4m3_run_avx512(row + i, end - i, _mm512_set1_ps(block_scale(w, r, b)), out + (i - k0));
            i = end;
        }
        return 1;
    }
    if (k0 % w->group || kc % w->group) return 0;
    const uint8_t *s = w->scales + (size_t)r * (size_t)(w->cols / w->group);
    for (int64_t g = k0 / w->group; g < (k0 + kc) / w->group; g++) {
        __m512 sc = _mm512_set1_ps(group_scale(w, s + g));
        float *o = out + (g * w->group - k0);
        if (w->fmt == CELLM_W_MXFP8)
            e4m3_run_avx512(row + g * w->group, w->group, sc, o);
        else
            e2m1_run_avx512(row + g * w->group / 2, w->group, sc, o);
    }
    return 1;
}

/* ---- fused decode rows (one input row): weights reconstructed in registers ---------- */

AVX512 static inline __m512 e2m1x16(__m512i c)
{
    const __m512 tbl = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                      -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_permutexvar_ps(c, tbl);
}

/* sum_i w[r][i] * x[i] with w = code * scale formed exactly, then one FMA per weight (the
 * products of the reconstructed weights, as the row-block path computes them). */
AVX512 static float row_fp_avx512(const struct cellm_weight *w, int64_t r, const float *x)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    const __m128i m4 = _mm_set1_epi8(0x0f);
    int64_t G = w->group, n = w->cols;
    const uint8_t *s = w->scales + (size_t)r * (size_t)(w->fmt == CELLM_W_FP8BLK ? 0 : n / G);
    for (int64_t g0 = 0; g0 < n; g0 += G) {
        float scf =
            w->fmt == CELLM_W_FP8BLK ? block_scale(w, r, g0 / G) : group_scale(w, s + g0 / G);
        __m512 sc = _mm512_set1_ps(scf);
        int64_t end = g0 + G < n ? g0 + G : n, e = g0;
        if (w->fmt == CELLM_W_MXFP4 || w->fmt == CELLM_W_NVFP4) {
            for (; e + 32 <= end; e += 32) {
                __m128i v = _mm_loadu_si128((const __m128i *)(row + e / 2));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                __m512 w0 =
                    _mm512_mul_ps(e2m1x16(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi))), sc);
                __m512 w1 =
                    _mm512_mul_ps(e2m1x16(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi))), sc);
                a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + e), a0);
                a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + e + 16), a1);
            }
            if (e + 16 <= end) {
                __m128i v = _mm_loadl_epi64((const __m128i *)(row + e / 2));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                __m512 w0 =
                    _mm512_mul_ps(e2m1x16(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi))), sc);
                a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + e), a0);
                e += 16;
            }
        } else {
            for (; e + 32 <= end; e += 32) {
                __m512 w0 = _mm512_mul_ps(
                    e4m3x16(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + e)))), sc);
                __m512 w1 = _mm512_mul_ps(
                    e4m3x16(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + e + 16)))),
                    sc);
                a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + e), a0);
                a1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + e + 16), a1);
            }
        }
        float t = 0;
        for (; e < end; e++) { /* FP8 blocks' partial last block */
            float wv = cellm_e4m3(row[e]) * scf;
            t += wv * x[e];
        }
        if (t != 0)
            a0 = _mm512_add_ps(a0, _mm512_setr_ps(t, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* mxfp4 decode rows, two at a time, against x permuted per 32 elements into [even 16][odd
 * 16] (xp): the low nibbles of 16 code bytes are the even elements, the high ones the odd,
 * so codes need no interleaving shuffle; four accumulator chains. Same products as
 * row_fp_avx512 (w formed exactly, one FMA each), in another summation order. */
AVX512 static void rows2_mxfp4_avx512(const struct cellm_weight *w, int64_t r, const float *xp,
                                      float *y)
{
    const uint8_t *row0 = w->data + (size_t)r * w->row_bytes, *row1 = row0 + w->row_bytes;
    const uint8_t *s0 = w->scales + (size_t)r * (size_t)(w->cols / 32), *s1 = s0 + w->cols / 32;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, c0 = a0, c1 = a0;
    for (int64_t e = 0; e < w->cols; e += 32) {
        __m512 sc0 = _mm512_set1_ps(cellm_e8m0(s0[e / 32]));
        __m512 sc1 = _mm512_set1_ps(cellm_e8m0(s1[e / 32]));
        __m128i v0 = _mm_loadu_si128((const __m128i *)(row0 + e / 2));
        __m128i v1 = _mm_loadu_si128((const __m128i *)(row1 + e / 2));
        __m512 xe = _mm512_loadu_ps(xp + e), xo = _mm512_loadu_ps(xp + e + 16);
        __m512i lo0 = _mm512_cvtepu8_epi32(_mm_and_si128(v0, m4));
        __m512i hi0 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v0, 4), m4));
        __m512i lo1 = _mm512_cvtepu8_epi32(_mm_and_si128(v1, m4));
        __m512i hi1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v1, 4), m4));
        a0 = _mm512_fmadd_ps(_mm512_mul_ps(e2m1x16(lo0), sc0), xe, a0);
        a1 = _mm512_fmadd_ps(_mm512_mul_ps(e2m1x16(hi0), sc0), xo, a1);
        c0 = _mm512_fmadd_ps(_mm512_mul_ps(e2m1x16(lo1), sc1), xe, c0);
        c1 = _mm512_fmadd_ps(_mm512_mul_ps(e2m1x16(hi1), sc1), xo, c1);
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(c0, c1));
}

AVX2 static inline float hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

AVX2 static float row_fp_avx2(const struct cellm_weight *w, int64_t r, const float *x)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    const __m128i m4 = _mm_set1_epi8(0x0f);
    int64_t G = w->group, n = w->cols;
    const uint8_t *s = w->scales + (size_t)r * (size_t)(w->fmt == CELLM_W_FP8BLK ? 0 : n / G);
    float tail = 0;
    for (int64_t g0 = 0; g0 < n; g0 += G) {
        float scf =
            w->fmt == CELLM_W_FP8BLK ? block_scale(w, r, g0 / G) : group_scale(w, s + g0 / G);
        __m256 sc = _mm256_set1_ps(scf);
        int64_t end = g0 + G < n ? g0 + G : n, e = g0;
        if (w->fmt == CELLM_W_MXFP4 || w->fmt == CELLM_W_NVFP4) {
            for (; e + 16 <= end; e += 16) {
                __m128i v = _mm_loadl_epi64((const __m128i *)(row + e / 2));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                __m128i a = _mm_unpacklo_epi8(lo, hi);
                __m256 w0 = _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(a)), sc);
                __m256 w1 = _mm256_mul_ps(e2m1x8(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8))), sc);
                a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + e), a0);
                a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + e + 8), a1);
            }
        } else {
            for (; e + 16 <= end; e += 16) {
                __m128i v = _mm_loadu_si128((const __m128i *)(row + e));
                __m256 w0 = _mm256_mul_ps(e4m3x8(_mm256_cvtepu8_epi32(v)), sc);
                __m256 w1 = _mm256_mul_ps(e4m3x8(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8))), sc);
                a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + e), a0);
                a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + e + 8), a1);
            }
        }
        for (; e < end; e++) {
            float wv = cellm_e4m3(row[e]) * scf;
            tail += wv * x[e];
        }
    }
    return hsum8(_mm256_add_ps(a0, a1)) + tail;
}
#endif

/* ---- GPTQ / AWQ: a block of rows at once ------------------------------------------
 * Their words pack 8 (4-bit) or 4 (8-bit) codes along inputs (GPTQ) or outputs (AWQ), so
 * one row's codes are strided across the stored matrix. The rows of a block are decoded
 * one after another, so neighbouring rows read neighbouring words of cache lines the
 * previous row brought in; scale and zero are looked up once per group run rather than
 * per element. The values are those of cellm_weight_row (s * (q - z - zero_one), exact). */

static float scale16(const struct cellm_weight *w, size_t i)
{
    switch (w->sdtype) {
    case CELLM_DT_F32:
        return cellm_bits_f32(cellm_load_u32(w->scales + 4 * i));
    case CELLM_DT_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(w->scales + 2 * i));
    default:
        return cellm_f16_to_f32(cellm_load_u16(w->scales + 2 * i));
    }
}

static void gptq_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out)
{
    const int bits = w->bits, pack = 32 / bits;
    const uint32_t mask = (1u << bits) - 1;
    const int64_t C = w->cols, ld = w->ld;
    for (int64_t k = 0; k < nr; k++) {
        int64_t o = r0 + k + w->r_off;
        const int zsh = bits * (int)(o % pack);
        float *dst = out + k * C;
        int64_t gprev = -1;
        float s = 0;
        int32_t z = 0;
        for (int64_t i0 = 0; i0 < C; i0 += pack) {
            uint32_t word = cellm_load_u32(w->data + 4 * (size_t)((i0 / pack) * ld + o));
            for (int j = 0; j < pack; j++) {
                int64_t i = i0 + j;
                int64_t g = w->g_idx ? (int64_t)(int32_t)cellm_load_u32(w->g_idx + 4 * (size_t)i)
                                     : i / w->group;
                if (g != gprev) {
                    uint32_t zw =
                        cellm_load_u32(w->zeros + 4 * (size_t)(g * (ld / pack) + o / pack));
                    z = (int32_t)((zw >> zsh) & mask) + w->zero_one;
                    s = scale16(w, (size_t)(g * ld + o));
                    gprev = g;
                }
                dst[i] = s * (float)((int32_t)((word >> (bits * j)) & mask) - z);
            }
        }
    }
}

static void awq_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out)
{
    static const int nib[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    const int64_t C = w->cols, ldw = w->ld / 8;
    for (int64_t k = 0; k < nr; k++) {
        int64_t o = r0 + k + w->r_off;
        const int sh = 4 * nib[o % 8];
        float *dst = out + k * C;
        for (int64_t g0 = 0; g0 < C; g0 += w->group) {
            int64_t g = g0 / w->group;
            int32_t z =
                (int32_t)((cellm_load_u32(w->zeros + 4 * (size_t)(g * ldw + o / 8)) >> sh) & 15);
            float s = scale16(w, (size_t)(g * w->ld + o));
            const uint8_t *col = w->data + 4 * (size_t)(o / 8);
            for (int64_t i = g0; i < g0 + w->group; i++)
                dst[i] =
                    (float)((int32_t)((cellm_load_u32(col + 4 * (size_t)(i * ldw)) >> sh) & 15) -
                            z) *
                    s;
        }
    }
}

int cellm_cpu_packed_dequant_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out)
{
    if (w->fmt == CELLM_W_GPTQ)
        gptq_rows(w, r0, nr, out);
    else if (w->fmt == CELLM_W_AWQ)
        awq_rows(w, r0, nr, out);
    else
        return 0;
    return 1;
}

int cellm_cpu_fp_fused_rows(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0,
                            int64_t r1, const float *x, float *xp, float *y)
{
    if (w->fmt != CELLM_W_MXFP4 && w->fmt != CELLM_W_MXFP8 && w->fmt != CELLM_W_NVFP4 &&
        w->fmt != CELLM_W_FP8BLK)
        return 0;
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512) {
        int64_t r = r0;
        if (w->fmt == CELLM_W_MXFP4 && w->cols % 32 == 0 && xp) {
            for (int64_t b = 0; b < w->cols; b += 32)
                for (int k = 0; k < 16; k++) {
                    xp[b + k] = x[b + 2 * k];
                    xp[b + 16 + k] = x[b + 2 * k + 1];
                }
            for (; r + 2 <= r1; r += 2)
                rows2_mxfp4_avx512(w, r, xp, y);
        }
        for (; r < r1; r++)
            y[r] = row_fp_avx512(w, r, x);
        return 1;
    }
    if (isa == CELLM_ISA_AVX2) {
        for (int64_t r = r0; r < r1; r++)
            y[r] = row_fp_avx2(w, r, x);
        return 1;
    }
#endif
    (void)isa;
    (void)r0;
    (void)r1;
    (void)x;
    (void)y;
    return 0;
}

int cellm_cpu_fp_dequant(enum cellm_isa isa, const struct cellm_weight *w, int64_t r, int64_t k0,
                         int64_t kc, float *out)
{
    if (w->fmt != CELLM_W_MXFP4 && w->fmt != CELLM_W_MXFP8 && w->fmt != CELLM_W_NVFP4 &&
        w->fmt != CELLM_W_FP8BLK)
        return 0;
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512) return fp_avx512(w, r, k0, kc, out);
    if (isa == CELLM_ISA_AVX2) return fp_avx2(w, r, k0, kc, out);
#endif
    (void)isa;
    (void)r;
    (void)k0;
    (void)kc;
    (void)out;
    return 0;
}
