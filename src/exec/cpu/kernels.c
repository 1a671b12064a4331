/*
 * kernels.c: matrix products against stored weights (see kernels.h).
 *
 * Two paths. Batches (prefill, batched decode) dequantize a block of rows into a small
 * per-thread f32 buffer once and reuse it for every input row. Single rows (decode) use
 * fused kernels that reconstruct weights in registers and multiply at once. Both give
 * the exact values of the numeric contract (checked against the scalar reference in
 * tests); only the summation order differs. AVX-512 kernels live in kernels_avx512.c.
 */
#include "kernels.h"

#include <string.h>

#include "base/half.h"
#include "gemm.h"
#include "kernels_fp.h"
#include "kernels_x86.h"

#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define HAVE_X86 1
#define AVX2 __attribute__((target("avx2,fma,f16c")))
/* bytes ahead of the current weight read that decode kernels prefetch */
#define PREFETCH_AHEAD 4096
#endif

enum cellm_isa cellm_cpu_isa(void)
{
#if HAVE_X86
    int avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cellm_cpu_has_f16c();
    if (avx2 && __builtin_cpu_supports("avx512f")) return CELLM_ISA_AVX512;
    if (avx2) return CELLM_ISA_AVX2;
#endif
    return CELLM_ISA_PORTABLE;
}

enum cellm_isa cellm_cpu_isa_cap(enum cellm_isa want)
{
    enum cellm_isa best = cellm_cpu_isa();
    return want < best ? want : best;
}

const char *cellm_cpu_isa_name(enum cellm_isa isa)
{
    switch (isa) {
    case CELLM_ISA_AVX512:
        return "avx512f";
    case CELLM_ISA_AVX2:
        return "avx2+fma+f16c";
    default:
        return "portable";
    }
}

/* ---- portable ------------------------------------------------------------------------ */

static void dequant_row_portable(const struct cellm_weight *w, int64_t r, float *out)
{
    cellm_weight_row(w, r, out);
}

static float dot_portable(const float *a, const float *b, int64_t n)
{
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += a[i + k] * b[i + k];
    float t = 0;
    for (; i < n; i++)
        t += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* ---- AVX2 ---------------------------------------------------------------------------- */
#if HAVE_X86

AVX2 static inline float hsum(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

AVX2 static float dot_avx2(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float t = hsum(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        t += a[i] * b[i];
    return t;
}

/* Four rows against one x: shares the x loads. */
AVX2 static void dot4_avx2(const float *w, int64_t ldw, const float *x, int64_t n, float *out)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), xv, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + ldw + i), xv, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 2 * ldw + i), xv, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + 3 * ldw + i), xv, s3);
    }
    float t[4] = {hsum(s0), hsum(s1), hsum(s2), hsum(s3)};
    for (; i < n; i++)
        for (int k = 0; k < 4; k++)
            t[k] += w[k * ldw + i] * x[i];
    memcpy(out, t, sizeof t);
}

/*
 * fl(fl(s*q) + b) as one fused multiply-add. This is exact, not an approximation: s is a
 * widened 16-bit float (at most 11 significant bits) and q < 2^8, so s*q has at most 19
 * significant bits and fl(s*q) == s*q; the only rounding is that of the sum, which the
 * FMA performs once, as the separate add would.
 */
/* Four rows against three inputs: 12 accumulators, 7 loads per 12 FMAs, so prefill is
 * bound by the FMA units rather than by loads. y[t * ldy + k] for t < 3, k < 4. */
AVX2 static void dot4x3_avx2(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t n,
                             float *y, int64_t ldy)
{
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
    __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a23 = a00;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + ldx + i),
               x2 = _mm256_loadu_ps(x + 2 * ldx + i);
        __m256 w0 = _mm256_loadu_ps(w + i);
        a00 = _mm256_fmadd_ps(w0, x0, a00);
        a10 = _mm256_fmadd_ps(w0, x1, a10);
        a20 = _mm256_fmadd_ps(w0, x2, a20);
        __m256 w1 = _mm256_loadu_ps(w + ldw + i);
        a01 = _mm256_fmadd_ps(w1, x0, a01);
        a11 = _mm256_fmadd_ps(w1, x1, a11);
        a21 = _mm256_fmadd_ps(w1, x2, a21);
        __m256 w2 = _mm256_loadu_ps(w + 2 * ldw + i);
        a02 = _mm256_fmadd_ps(w2, x0, a02);
        a12 = _mm256_fmadd_ps(w2, x1, a12);
        a22 = _mm256_fmadd_ps(w2, x2, a22);
        __m256 w3 = _mm256_loadu_ps(w + 3 * ldw + i);
        a03 = _mm256_fmadd_ps(w3, x0, a03);
        a13 = _mm256_fmadd_ps(w3, x1, a13);
        a23 = _mm256_fmadd_ps(w3, x2, a23);
    }
    float r[3][4] = {{hsum(a00), hsum(a01), hsum(a02), hsum(a03)},
                     {hsum(a10), hsum(a11), hsum(a12), hsum(a13)},
                     {hsum(a20), hsum(a21), hsum(a22), hsum(a23)}};
    for (; i < n; i++)
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 4; k++)
                r[t][k] += w[k * ldw + i] * x[t * ldx + i];
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++)
            y[t * ldy + k] = r[t][k];
}

AVX2 static inline __m256 affine8(__m256i codes, __m256 sc, __m256 bi)
{
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(codes), sc, bi);
}

/* One scale or bias, widened with the conversion instruction. */
AVX2 static inline float scale16_fast(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : _cvtsh_ss(h);
}

AVX2 static void dequant_row_avx2(const struct cellm_weight *w, int64_t r, float *out)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    switch (w->fmt) {
    case CELLM_W_F16: {
        int64_t i = 0;
        for (; i + 8 <= w->cols; i += 8)
            _mm256_storeu_ps(out + i,
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i))));
        for (; i < w->cols; i++)
            out[i] = cellm_f16_to_f32(cellm_load_u16(row + 2 * i));
        return;
    }
    case CELLM_W_BF16: {
        int64_t i = 0;
        for (; i + 8 <= w->cols; i += 8) {
            __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(h, 16)));
        }
        for (; i < w->cols; i++)
            out[i] = cellm_bf16_to_f32(cellm_load_u16(row + 2 * i));
        return;
    }
    case CELLM_W_AFFINE:
        if (w->bits == 4 || w->bits == 8 || w->bits == 2) {
            int64_t ng = w->cols / w->group;
            const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
            const int per_word = 32 / w->bits;
            const __m256i mask = _mm256_set1_epi32((1 << w->bits) - 1);
            __m256i sh2a = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
            __m256i sh2b = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);
            for (int64_t g = 0; g < ng; g++) {
                __m256 sc = _mm256_set1_ps(scale16_fast(w->sdtype, s + 2 * g));
                __m256 bi = _mm256_set1_ps(scale16_fast(w->sdtype, b + 2 * g));
                const uint8_t *gp = row + (size_t)(g * w->group / per_word) * 4;
                float *o = out + g * w->group;
                if (w->bits == 4) {
                    /* 16 code bytes = 32 elements: split the nibbles, interleave them back
                     * into element order, widen 8 at a time */
                    const __m128i m4 = _mm_set1_epi8(0x0f);
                    for (int j = 0; j < w->group / 32; j++) {
                        __m128i v = _mm_loadu_si128((const __m128i *)(gp + 16 * j));
                        __m128i lo = _mm_and_si128(v, m4);
                        __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                        __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
                        float *oo = o + 32 * j;
                        _mm256_storeu_ps(oo, affine8(_mm256_cvtepu8_epi32(a), sc, bi));
                        _mm256_storeu_ps(
                            oo + 8, affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)), sc, bi));
                        _mm256_storeu_ps(oo + 16, affine8(_mm256_cvtepu8_epi32(b), sc, bi));
                        _mm256_storeu_ps(
                            oo + 24, affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), sc, bi));
                    }
                } else if (w->bits == 8) {
                    for (int j = 0; j < w->group / 8; j++) {
                        __m256i c =
                            _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(gp + 8 * j)));
                        _mm256_storeu_ps(o + 8 * j, affine8(c, sc, bi));
                    }
                } else {
                    for (int j = 0; j < w->group / 16; j++) {
                        __m256i v = _mm256_set1_epi32((int)cellm_load_u32(gp + 4 * j));
                        __m256i c0 = _mm256_and_si256(_mm256_srlv_epi32(v, sh2a), mask);
                        __m256i c1 = _mm256_and_si256(_mm256_srlv_epi32(v, sh2b), mask);
                        _mm256_storeu_ps(o + 16 * j, affine8(c0, sc, bi));
                        _mm256_storeu_ps(o + 16 * j + 8, affine8(c1, sc, bi));
                    }
                }
            }
            return;
        }
        break;
    default:
        break;
    }
    cellm_weight_row(w, r, out);
}

/*
 * Fused matrix-vector rows for decode (one input row): the weight row is reconstructed in
 * registers and multiplied at once, never stored. For 4-bit codes the input is first
 * permuted per 32-element block into [even elements][odd elements], so that the low and
 * high nibbles of 16 code bytes meet their inputs without shuffling the codes.
 */
/* [even 8][odd 8] per 16 elements, for bf16 pairs in 32-bit lanes */
AVX2 static void permute_x2(const float *x, int64_t n, float *xp)
{
    for (int64_t b = 0; b + 16 <= n; b += 16)
        for (int k = 0; k < 8; k++) {
            xp[b + k] = x[b + 2 * k];
            xp[b + 8 + k] = x[b + 2 * k + 1];
        }
}

AVX2 static void permute_x4(const float *x, int64_t n, float *xp)
{
    for (int64_t b = 0; b + 32 <= n; b += 32)
        for (int k = 0; k < 16; k++) {
            xp[b + k] = x[b + 2 * k];
            xp[b + 16 + k] = x[b + 2 * k + 1];
        }
}

AVX2 static inline __m256 fma_codes8(__m128i bytes8, __m256 sc, __m256 bi, const float *x,
                                     __m256 acc)
{
    __m256 w = affine8(_mm256_cvtepu8_epi32(bytes8), sc, bi);
    return _mm256_fmadd_ps(w, _mm256_loadu_ps(x), acc);
}

AVX2 static float row_q4(const struct cellm_weight *w, int64_t r, const float *xp)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256 sc = _mm256_set1_ps(scale16_fast(w->sdtype, s + 2 * g));
        __m256 bi = _mm256_set1_ps(scale16_fast(w->sdtype, b + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
            __m128i v = _mm_loadu_si128((const __m128i *)(row + e / 2));
            __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
            const float *x = xp + e;
            acc0 = fma_codes8(lo, sc, bi, x, acc0);
            acc1 = fma_codes8(_mm_srli_si128(lo, 8), sc, bi, x + 8, acc1);
            acc0 = fma_codes8(hi, sc, bi, x + 16, acc0);
            acc1 = fma_codes8(_mm_srli_si128(hi, 8), sc, bi, x + 24, acc1);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/* Two rows at once: the input loads are shared and four independent accumulator chains
 * hide the FMA latency. */
AVX2 static void row2_q4(const struct cellm_weight *w, int64_t r, const float *xp, float *y)
{
    const uint8_t *row0 = w->data + (size_t)r * w->row_bytes, *row1 = row0 + w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s0 = w->scales + (size_t)r * ng * 2, *b0 = w->biases + (size_t)r * ng * 2;
    const uint8_t *s1 = s0 + ng * 2, *b1 = b0 + ng * 2;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, c0 = a0, c1 = a0;
    for (int64_t g = 0; g < ng; g++) {
        __m256 sc0 = _mm256_set1_ps(scale16_fast(w->sdtype, s0 + 2 * g));
        __m256 bi0 = _mm256_set1_ps(scale16_fast(w->sdtype, b0 + 2 * g));
        __m256 sc1 = _mm256_set1_ps(scale16_fast(w->sdtype, s1 + 2 * g));
        __m256 bi1 = _mm256_set1_ps(scale16_fast(w->sdtype, b1 + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
            if (!(e & 127)) { /* once per 64-byte line of each row */
                _mm_prefetch((const char *)(row0 + e / 2 + PREFETCH_AHEAD), _MM_HINT_T0);
                _mm_prefetch((const char *)(row1 + e / 2 + PREFETCH_AHEAD), _MM_HINT_T0);
            }
            __m128i v0 = _mm_loadu_si128((const __m128i *)(row0 + e / 2));
            __m128i v1 = _mm_loadu_si128((const __m128i *)(row1 + e / 2));
            __m128i lo0 = _mm_and_si128(v0, m4), hi0 = _mm_and_si128(_mm_srli_epi16(v0, 4), m4);
            __m128i lo1 = _mm_and_si128(v1, m4), hi1 = _mm_and_si128(_mm_srli_epi16(v1, 4), m4);
            const float *x = xp + e;
            __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
            __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
            a0 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(lo0), sc0, bi0), x0, a0);
            c0 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(lo1), sc1, bi1), x0, c0);
            a1 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(lo0, 8)), sc0, bi0),
                                 x1, a1);
            c1 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(lo1, 8)), sc1, bi1),
                                 x1, c1);
            a0 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(hi0), sc0, bi0), x2, a0);
            c0 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(hi1), sc1, bi1), x2, c0);
            a1 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(hi0, 8)), sc0, bi0),
                                 x3, a1);
            c1 = _mm256_fmadd_ps(affine8(_mm256_cvtepu8_epi32(_mm_srli_si128(hi1, 8)), sc1, bi1),
                                 x3, c1);
        }
    }
    y[r] = hsum(_mm256_add_ps(a0, a1));
    y[r + 1] = hsum(_mm256_add_ps(c0, c1));
}

AVX2 static float row_q8(const struct cellm_weight *w, int64_t r, const float *x)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m256 sc = _mm256_set1_ps(scale16_fast(w->sdtype, s + 2 * g));
        __m256 bi = _mm256_set1_ps(scale16_fast(w->sdtype, b + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(row + e));
            acc0 = fma_codes8(v, sc, bi, x + e, acc0);
            acc1 = fma_codes8(_mm_srli_si128(v, 8), sc, bi, x + e + 8, acc1);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

AVX2 static float row_half(const struct cellm_weight *w, int64_t r, const float *x, const float *xp)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t i = 0, n = w->cols;
    if (w->fmt == CELLM_W_BF16) {
        /* 32-bit lane k holds elements 2k (low half) and 2k+1 (high half); x is
         * pre-permuted per 16 elements into [even 8][odd 8] (permute_x2) */
        const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
        for (; i + 16 <= n; i += 16) {
            /* the hardware prefetcher stops at 4 KiB pages; run ahead across them */
            _mm_prefetch((const char *)(row + 2 * i + PREFETCH_AHEAD), _MM_HINT_T0);
            __m256i a = _mm256_loadu_si256((const __m256i *)(row + 2 * i));
            __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));
            __m256 hi = _mm256_castsi256_ps(_mm256_and_si256(a, hi_mask));
            acc0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xp + i), acc0);
            acc1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xp + i + 8), acc1);
        }
    } else {
        for (; i + 16 <= n; i += 16) {
            __m256 w0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
            __m256 w1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i + 16)));
            acc0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), acc0);
            acc1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), acc1);
        }
    }
    float t = hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint16_t h = cellm_load_u16(row + 2 * i);
        t += (w->fmt == CELLM_W_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h)) * x[i];
    }
    return t;
}

/* 1 if a fused decode row kernel exists for w. */
static int has_fused_row(const struct cellm_weight *w)
{
    if (w->fmt == CELLM_W_AFFINE) return (w->bits == 4 || w->bits == 8) && w->cols % 32 == 0;
    return w->fmt == CELLM_W_BF16 || w->fmt == CELLM_W_F16;
}

/* y[r] for rows [r0, r1) of a fused-capable weight; xp is x (permuted for 4-bit). */
AVX2 static void fused_rows(const struct cellm_weight *w, int64_t r0, int64_t r1, const float *x,
                            const float *xp, float *y)
{
    int64_t r = r0;
    if (w->fmt == CELLM_W_AFFINE && w->bits == 4)
        for (; r + 2 <= r1; r += 2)
            row2_q4(w, r, xp, y);
    for (; r < r1; r++) {
        if (w->fmt == CELLM_W_AFFINE)
            y[r] = w->bits == 4 ? row_q4(w, r, xp) : row_q8(w, r, x);
        else
            y[r] = row_half(w, r, x, xp);
    }
}
#endif

void cellm_cpu_dequant_rows(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0,
                            int64_t nr, float *out)
{
    if (cellm_cpu_packed_dequant_rows(w, r0, nr, out)) return; /* GPTQ, AWQ */
    for (int64_t i = 0; i < nr; i++) {
        /* the small-float formats of docs/formats.md */
        if (w->fmt > CELLM_W_AFFINE &&
            cellm_cpu_fp_dequant(isa, w, r0 + i, 0, w->cols, out + i * w->cols))
            continue;
#if HAVE_X86
        if (isa == CELLM_ISA_AVX512 && cellm_avx512_dequant_row(w, r0 + i, out + i * w->cols))
            continue;
        if (isa >= CELLM_ISA_AVX2) {
            dequant_row_avx2(w, r0 + i, out + i * w->cols);
            continue;
        }
#endif
        (void)isa;
        dequant_row_portable(w, r0 + i, out + i * w->cols);
    }
}

float cellm_cpu_dot(enum cellm_isa isa, const float *a, const float *b, int64_t n)
{
#if HAVE_X86
    if (isa == CELLM_ISA_AVX512) return cellm_avx512_dot(a, b, n);
    if (isa == CELLM_ISA_AVX2) return dot_avx2(a, b, n);
#endif
    (void)isa;
    return dot_portable(a, b, n);
}

struct matmul_job {
    const struct cellm_cpu_mm *outs;
    int n_outs;
    enum cellm_isa isa;
    const float *x;
    int64_t ldx;
    int n;
    float *scratch;
    int64_t scratch_cols;
};

static int64_t row_blocks(const struct cellm_weight *w)
{
    return (w->rows + CELLM_CPU_ROW_BLOCK - 1) / CELLM_CPU_ROW_BLOCK;
}

/* Row blocks [b0, b1) of one product. */
static void matmul_blocks(const struct matmul_job *j, const struct cellm_cpu_mm *o, int64_t b0,
                          int64_t b1, float *buf)
{
    const struct cellm_weight *w = o->w;
    int64_t cols = w->cols;
    if (cellm_cpu_fp_format(w)) { /* kernels_fp.h: the formats of docs/formats.md */
        int64_t r1 = b1 * CELLM_CPU_ROW_BLOCK < w->rows ? b1 * CELLM_CPU_ROW_BLOCK : w->rows;
        if (cellm_cpu_fp_matvec(j->isa, w, b0 * CELLM_CPU_ROW_BLOCK, r1, j->x, j->ldx, j->n, o->y,
                                o->ldy, buf))
            return;
    }
#if HAVE_X86
    if (j->isa == CELLM_ISA_AVX512 && j->n == 1 && cellm_avx512_has_fused(w)) {
        const float *xp = cellm_avx512_prepare_x(w, j->x, buf);
        int64_t r1 = b1 * CELLM_CPU_ROW_BLOCK < w->rows ? b1 * CELLM_CPU_ROW_BLOCK : w->rows;
        cellm_avx512_fused_rows(w, b0 * CELLM_CPU_ROW_BLOCK, r1, j->x, xp, o->y);
        return;
    }
    if (j->isa >= CELLM_ISA_AVX2 && j->n == 1 && has_fused_row(w)) {
        const float *xp = j->x;
        if (w->fmt == CELLM_W_AFFINE && w->bits == 4) {
            permute_x4(j->x, cols, buf);
            xp = buf;
        } else if (w->fmt == CELLM_W_BF16) {
            permute_x2(j->x, cols, buf);
            xp = buf;
        }
        int64_t r1 = b1 * CELLM_CPU_ROW_BLOCK < w->rows ? b1 * CELLM_CPU_ROW_BLOCK : w->rows;
        fused_rows(w, b0 * CELLM_CPU_ROW_BLOCK, r1, j->x, xp, o->y);
        return;
    }
#endif
    for (int64_t blk = b0; blk < b1; blk++) {
        int64_t r0 = blk * CELLM_CPU_ROW_BLOCK;
        int64_t nr = w->rows - r0 < CELLM_CPU_ROW_BLOCK ? w->rows - r0 : CELLM_CPU_ROW_BLOCK;
        cellm_cpu_dequant_rows(j->isa, w, r0, nr, buf);
        int t = 0;
#if HAVE_X86
        if (j->isa >= CELLM_ISA_AVX2)
            for (; t + 3 <= j->n; t += 3) {
                int64_t r = 0;
                for (; r + 4 <= nr; r += 4)
                    (j->isa == CELLM_ISA_AVX512 ? cellm_avx512_dot4x3 : dot4x3_avx2)(
                        buf + r * cols, cols, j->x + (size_t)t * j->ldx, j->ldx, cols,
                        o->y + (size_t)t * o->ldy + r0 + r, o->ldy);
                for (; r < nr; r++)
                    for (int k = 0; k < 3; k++)
                        o->y[(size_t)(t + k) * o->ldy + r0 + r] = cellm_cpu_dot(
                            j->isa, buf + r * cols, j->x + (size_t)(t + k) * j->ldx, cols);
            }
#endif
        for (; t < j->n; t++) {
            const float *x = j->x + (size_t)t * j->ldx;
            float *y = o->y + (size_t)t * o->ldy + r0;
            int64_t r = 0;
#if HAVE_X86
            if (j->isa == CELLM_ISA_AVX512)
                for (; r + 4 <= nr; r += 4)
                    cellm_avx512_dot4(buf + r * cols, cols, x, cols, y + r);
            if (j->isa == CELLM_ISA_AVX2)
                for (; r + 4 <= nr; r += 4)
                    dot4_avx2(buf + r * cols, cols, x, cols, y + r);
#endif
            for (; r < nr; r++)
                y[r] = cellm_cpu_dot(j->isa, buf + r * cols, x, cols);
        }
    }
}

static void matmul_part(void *arg, int ti, int tn)
{
    const struct matmul_job *j = arg;
    float *buf = j->scratch + (size_t)ti * CELLM_CPU_ROW_BLOCK * (size_t)j->scratch_cols;
    int64_t total = 0;
    for (int k = 0; k < j->n_outs; k++)
        total += row_blocks(j->outs[k].w);
    long g0, g1;
    cellm_split((long)total, ti, tn, &g0, &g1);
    int64_t off = 0;
    for (int k = 0; k < j->n_outs; k++) {
        int64_t nb = row_blocks(j->outs[k].w);
        int64_t lo = g0 > off ? g0 : off, hi = g1 < off + nb ? g1 : off + nb;
        if (lo < hi) matmul_blocks(j, &j->outs[k], lo - off, hi - off, buf);
        off += nb;
    }
}

void cellm_cpu_matmul_multi(struct cellm_pool *pool, enum cellm_isa isa,
                            const struct cellm_cpu_mm *outs, int n_outs, const float *x,
                            int64_t ldx, int n, float *scratch, int64_t scratch_cols)
{
    if (n >= CELLM_CPU_GEMM_MIN_ROWS) {
        cellm_cpu_gemm(pool, isa, outs, n_outs, x, ldx, n, scratch, scratch_cols);
        return;
    }
    struct matmul_job j = {outs, n_outs, isa, x, ldx, n, scratch, scratch_cols};
    int64_t work = 0;
    for (int k = 0; k < n_outs; k++)
        work += (int64_t)n * outs[k].w->rows * outs[k].w->cols;
    /* small products are not worth waking the workers */
    if (work < 32768)
        matmul_part(&j, 0, 1);
    else
        cellm_pool_run(pool, matmul_part, &j);
}

void cellm_cpu_matmul(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_weight *w,
                      const float *x, int64_t ldx, int n, float *y, int64_t ldy, float *scratch,
                      int64_t scratch_cols)
{
    struct cellm_cpu_mm o = {w, y, ldy};
    cellm_cpu_matmul_multi(pool, isa, &o, 1, x, ldx, n, scratch, scratch_cols);
}
