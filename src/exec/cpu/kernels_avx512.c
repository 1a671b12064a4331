/*
 * kernels_avx512.c: AVX-512F kernels (16 lanes), chosen at run time when the CPU has them.
 *
 * Same structure as the AVX2 kernels of kernels.c: widen or dequantize in registers and
 * multiply. The affine value fl(fl(s*q)+b) is one FMA (exact; see kernels.c). 16-bit
 * pairs and 4-bit nibble pairs are matched with an input permuted per 32 elements into
 * [even 16][odd 16], so the codes are never shuffled.
 */
#include "kernels_x86.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <string.h>

#include "base/half.h"

#define AVX512 __attribute__((target("avx512f,f16c,fma,avx2")))
/* The four-row decode kernels prefetch the same columns of the next four rows: the data
 * they read next, one group's worth of bytes ahead. (A fixed distance of 4 KiB fell on
 * the next row of the same group, already being read, when rows are 4 KiB long.) */

AVX512 static inline float scale_of(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : _cvtsh_ss(h);
}

AVX512 float cellm_avx512_dot(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    float t = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; i < n; i++)
        t += a[i] * b[i];
    return t;
}

AVX512 void cellm_avx512_dot4(const float *w, int64_t ldw, const float *x, int64_t n, float *out)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), xv, s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + ldw + i), xv, s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 2 * ldw + i), xv, s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + 3 * ldw + i), xv, s3);
    }
    float t[4] = {_mm512_reduce_add_ps(s0), _mm512_reduce_add_ps(s1), _mm512_reduce_add_ps(s2),
                  _mm512_reduce_add_ps(s3)};
    for (; i < n; i++)
        for (int k = 0; k < 4; k++)
            t[k] += w[k * ldw + i] * x[i];
    for (int k = 0; k < 4; k++)
        out[k] = t[k];
}

AVX512 void cellm_avx512_dot4x3(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t n,
                                float *y, int64_t ldy)
{
    __m512 a[3][4];
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++)
            a[t][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv[3] = {_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + ldx + i),
                        _mm512_loadu_ps(x + 2 * ldx + i)};
        for (int k = 0; k < 4; k++) {
            __m512 wv = _mm512_loadu_ps(w + k * ldw + i);
            for (int t = 0; t < 3; t++)
                a[t][k] = _mm512_fmadd_ps(wv, xv[t], a[t][k]);
        }
    }
    float r[3][4];
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++)
            r[t][k] = _mm512_reduce_add_ps(a[t][k]);
    for (; i < n; i++)
        for (int t = 0; t < 3; t++)
            for (int k = 0; k < 4; k++)
                r[t][k] += w[k * ldw + i] * x[t * ldx + i];
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 4; k++)
            y[t * ldy + k] = r[t][k];
}

AVX512 static inline __m512 affine16(__m128i bytes16, __m512 sc, __m512 bi)
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes16)), sc, bi);
}

/* Eight codes of a b-bit stream (b <= 7) starting at byte p, bit 0, into eight 32-bit
 * lanes: one 64-bit word is read (only the b bytes at the row's end, which may end the
 * mapping), broadcast, and each lane shifted by its code's offset. */
AVX512 static inline __m256i codes8(const uint8_t *p, const uint8_t *end, int b, __m512i shifts,
                                    __m512i mask)
{
    uint64_t v = 0;
    if (p + 8 <= end)
        memcpy(&v, p, 8); /* the codes beyond these eight are masked off */
    else
        memcpy(&v, p, (size_t)b);
    __m512i q = _mm512_and_si512(_mm512_srlv_epi64(_mm512_set1_epi64((long long)v), shifts), mask);
    return _mm512_cvtepi64_epi32(q);
}

/* Affine rows of 2, 3, 5 or 6 bits (groups of 16 or more codes): 16 codes at a time as two
 * runs of eight, then fl(fl(s*q)+b) as one FMA (exact, as for 4 and 8 bits). */
AVX512 static int dequant_row_packed(const struct cellm_weight *w, int64_t r, float *out)
{
    const int b = w->bits;
    if (b > 7 || w->group % 16) return 0;
    const uint8_t *row = w->data + (size_t)r * w->row_bytes, *end = row + w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s = w->scales + (size_t)r * ng * 2, *bs = w->biases + (size_t)r * ng * 2;
    const __m512i shifts = _mm512_setr_epi64(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
    const __m512i mask = _mm512_set1_epi64((1 << b) - 1);
    for (int64_t g = 0; g < ng; g++) {
        __m512 sc = _mm512_set1_ps(scale_of(w->sdtype, s + 2 * g));
        __m512 bi = _mm512_set1_ps(scale_of(w->sdtype, bs + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 16) {
            const uint8_t *p = row + e * b / 8; /* e is a multiple of 8: a byte boundary */
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(codes8(p, end, b, shifts, mask)),
                                           codes8(p + b, end, b, shifts, mask), 1);
            _mm512_storeu_ps(out + e, _mm512_fmadd_ps(_mm512_cvtepi32_ps(q), sc, bi));
        }
    }
    return 1;
}

AVX512 int cellm_avx512_dequant_row(const struct cellm_weight *w, int64_t r, float *out)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t n = w->cols, i = 0;
    switch (w->fmt) {
    case CELLM_W_F16:
        for (; i + 16 <= n; i += 16)
            _mm512_storeu_ps(out + i,
                             _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i))));
        for (; i < n; i++)
            out[i] = cellm_f16_to_f32(cellm_load_u16(row + 2 * i));
        return 1;
    case CELLM_W_BF16:
        for (; i + 16 <= n; i += 16) {
            __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(row + 2 * i)));
            _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
        }
        for (; i < n; i++)
            out[i] = cellm_bf16_to_f32(cellm_load_u16(row + 2 * i));
        return 1;
    case CELLM_W_AFFINE: {
        if (w->bits != 4 && w->bits != 8) return dequant_row_packed(w, r, out);
        if (w->group % 32) return 0;
        int64_t ng = n / w->group;
        const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
        const __m128i m4 = _mm_set1_epi8(0x0f);
        for (int64_t g = 0; g < ng; g++) {
            __m512 sc = _mm512_set1_ps(scale_of(w->sdtype, s + 2 * g));
            __m512 bi = _mm512_set1_ps(scale_of(w->sdtype, b + 2 * g));
            for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
                if (w->bits == 8) {
                    _mm512_storeu_ps(out + e,
                                     affine16(_mm_loadu_si128((const __m128i *)(row + e)), sc, bi));
                    _mm512_storeu_ps(
                        out + e + 16,
                        affine16(_mm_loadu_si128((const __m128i *)(row + e + 16)), sc, bi));
                } else {
                    __m128i v = _mm_loadu_si128((const __m128i *)(row + e / 2));
                    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                    /* interleave the nibbles back into element order (a scatter store
                     * here ran at a fifth of the speed) */
                    _mm512_storeu_ps(out + e, affine16(_mm_unpacklo_epi8(lo, hi), sc, bi));
                    _mm512_storeu_ps(out + e + 16, affine16(_mm_unpackhi_epi8(lo, hi), sc, bi));
                }
            }
        }
        return 1;
    }
    default:
        return 0;
    }
}

int cellm_avx512_has_fused(const struct cellm_weight *w)
{
    if (w->cols % 32) return 0;
    if (w->fmt == CELLM_W_AFFINE) return (w->bits == 4 || w->bits == 8) && w->group % 32 == 0;
    return w->fmt == CELLM_W_BF16 || w->fmt == CELLM_W_F16;
}

const float *cellm_avx512_prepare_x(const struct cellm_weight *w, const float *x, float *xp)
{
    if (!((w->fmt == CELLM_W_AFFINE && w->bits == 4) || w->fmt == CELLM_W_BF16)) return x;
    for (int64_t b = 0; b + 32 <= w->cols; b += 32)
        for (int k = 0; k < 16; k++) {
            xp[b + k] = x[b + 2 * k];
            xp[b + 16 + k] = x[b + 2 * k + 1];
        }
    return xp;
}

AVX512 static float row_q4(const struct cellm_weight *w, int64_t r, const float *xp)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512 sc = _mm512_set1_ps(scale_of(w->sdtype, s + 2 * g));
        __m512 bi = _mm512_set1_ps(scale_of(w->sdtype, b + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
            __m128i v = _mm_loadu_si128((const __m128i *)(row + e / 2));
            __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
            acc0 = _mm512_fmadd_ps(affine16(lo, sc, bi), _mm512_loadu_ps(xp + e), acc0);
            acc1 = _mm512_fmadd_ps(affine16(hi, sc, bi), _mm512_loadu_ps(xp + e + 16), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 static float row_q8(const struct cellm_weight *w, int64_t r, const float *x)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    int64_t ng = w->cols / w->group;
    const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        __m512 sc = _mm512_set1_ps(scale_of(w->sdtype, s + 2 * g));
        __m512 bi = _mm512_set1_ps(scale_of(w->sdtype, b + 2 * g));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
            acc0 = _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)(row + e)), sc, bi),
                                   _mm512_loadu_ps(x + e), acc0);
            acc1 =
                _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)(row + e + 16)), sc, bi),
                                _mm512_loadu_ps(x + e + 16), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

AVX512 static float row_half(const struct cellm_weight *w, int64_t r, const float *x,
                             const float *xp)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t n = w->cols;
    if (w->fmt == CELLM_W_BF16) {
        const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
        for (int64_t i = 0; i + 32 <= n; i += 32) {
            __m512i a = _mm512_loadu_si512((const void *)(row + 2 * i));
            __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
            __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(a, hi_mask));
            acc0 = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xp + i), acc0);
            acc1 = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xp + i + 16), acc1);
        }
    } else {
        for (int64_t i = 0; i + 32 <= n; i += 32) {
            __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i)));
            __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i + 32)));
            acc0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i), acc0);
            acc1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i + 16), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/*
 * Four rows at a time: the input loads are shared, and eight independent accumulator
 * chains keep the FMA units busy, so decode stays bound by memory rather than by the
 * latency of one chain (a row at a time, two chains, reached about half the bandwidth).
 */
AVX512 static void rows4_bf16(const struct cellm_weight *w, int64_t r, const float *xp, float *y)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    const size_t rb = w->row_bytes;
    const __m512i hi_mask = _mm512_set1_epi32((int)0xffff0000u);
    __m512 a[4][2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        a[k][0] = a[k][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i + 32 <= w->cols; i += 32) {
        __m512 x0 = _mm512_loadu_ps(xp + i), x1 = _mm512_loadu_ps(xp + i + 16);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const uint8_t *p = row + k * rb + 2 * i;
            _mm_prefetch((const char *)(p + 4 * rb), _MM_HINT_T0);
            __m512i v = _mm512_loadu_si512((const void *)p);
            __m512 lo = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            __m512 hi = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
            a[k][0] = _mm512_fmadd_ps(lo, x0, a[k][0]);
            a[k][1] = _mm512_fmadd_ps(hi, x1, a[k][1]);
        }
    }
    for (int k = 0; k < 4; k++)
        y[r + k] = _mm512_reduce_add_ps(_mm512_add_ps(a[k][0], a[k][1]));
}

AVX512 static void rows4_f16(const struct cellm_weight *w, int64_t r, const float *x, float *y)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    const size_t rb = w->row_bytes;
    __m512 a[4][2];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        a[k][0] = a[k][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i + 32 <= w->cols; i += 32) {
        __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const uint8_t *p = row + k * rb + 2 * i;
            _mm_prefetch((const char *)(p + 4 * rb), _MM_HINT_T0);
            __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
            __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 32)));
            a[k][0] = _mm512_fmadd_ps(w0, x0, a[k][0]);
            a[k][1] = _mm512_fmadd_ps(w1, x1, a[k][1]);
        }
    }
    for (int k = 0; k < 4; k++)
        y[r + k] = _mm512_reduce_add_ps(_mm512_add_ps(a[k][0], a[k][1]));
}

AVX512 void cellm_avx512_widen16(enum cellm_dtype dt, const uint8_t *p, int64_t n, float *out)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(p + 2 * i));
        _mm512_storeu_ps(out + i,
                         dt == CELLM_DT_BF16
                             ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                             : _mm512_cvtph_ps(h));
    }
    for (; i < n; i++)
        out[i] = scale_of(dt, p + 2 * i);
}

/* Groups per row up to which rows4_q4 and rows4_q8 keep the rows' scales and biases on the stack.
 */
#define AFFINE_MAX_GROUPS 256

/*
 * 4-bit rows, four at a time, by table lookup: per group and row, the 16 possible weights
 * fl(fl(s*q)+b) are formed once (one FMA over q = 0..15, exact as argued in kernels.c) and
 * each code selects its weight with vpermps, which reads only the low four bits of each
 * index lane: the low nibbles need no mask and the high nibbles one shift. One FMA per 16
 * weights instead of two, with the reference's values. The rows' scales and biases are
 * widened up front, 16 at a time, so a group costs two broadcasts and an FMA per row.
 */
AVX512 static void rows4_q4(const struct cellm_weight *w, int64_t r, const float *xp, float *y)
{
    const size_t rb = w->row_bytes;
    const uint8_t *row = w->data + (size_t)r * rb;
    const int64_t ng = w->cols / w->group;
    float sc[4][AFFINE_MAX_GROUPS], bi[4][AFFINE_MAX_GROUPS];
    for (int k = 0; k < 4; k++) {
        cellm_avx512_widen16(w->sdtype, w->scales + (size_t)(r + k) * ng * 2, ng, sc[k]);
        cellm_avx512_widen16(w->sdtype, w->biases + (size_t)(r + k) * ng * 2, ng, bi[k]);
    }
    const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    for (int64_t g = 0; g < ng; g++) {
        __m512 t0 = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[0][g]), _mm512_set1_ps(bi[0][g]));
        __m512 t1 = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[1][g]), _mm512_set1_ps(bi[1][g]));
        __m512 t2 = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[2][g]), _mm512_set1_ps(bi[2][g]));
        __m512 t3 = _mm512_fmadd_ps(iota, _mm512_set1_ps(sc[3][g]), _mm512_set1_ps(bi[3][g]));
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 32) {
            const uint8_t *p = row + e / 2;
            if (!(e & 127))
                for (int k = 0; k < 4; k++)
                    _mm_prefetch((const char *)(p + (k + 4) * rb), _MM_HINT_T0);
            __m512 x0 = _mm512_loadu_ps(xp + e), x1 = _mm512_loadu_ps(xp + e + 16);
            __m512i q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
            __m512i q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + rb)));
            __m512i q2 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * rb)));
            __m512i q3 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 3 * rb)));
            a0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(q0, t0), x0, a0);
            a1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(q1, t1), x0, a1);
            a2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(q2, t2), x0, a2);
            a3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(q3, t3), x0, a3);
            c0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q0, 4), t0), x1, c0);
            c1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q1, 4), t1), x1, c1);
            c2 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q2, 4), t2), x1, c2);
            c3 = _mm512_fmadd_ps(_mm512_permutexvar_ps(_mm512_srli_epi32(q3, 4), t3), x1, c3);
        }
    }
    y[r] = _mm512_reduce_add_ps(_mm512_add_ps(a0, c0));
    y[r + 1] = _mm512_reduce_add_ps(_mm512_add_ps(a1, c1));
    y[r + 2] = _mm512_reduce_add_ps(_mm512_add_ps(a2, c2));
    y[r + 3] = _mm512_reduce_add_ps(_mm512_add_ps(a3, c3));
}

/* 8-bit rows, four at a time: the weight fl(fl(s*q)+b) is one FMA per 16 codes (exact, as
 * for 4 bits), then one FMA with the shared input; scales and biases widened up front. */
AVX512 static void rows4_q8(const struct cellm_weight *w, int64_t r, const float *x, float *y)
{
    const size_t rb = w->row_bytes;
    const uint8_t *row = w->data + (size_t)r * rb;
    const int64_t ng = w->cols / w->group;
    float sc[4][AFFINE_MAX_GROUPS], bi[4][AFFINE_MAX_GROUPS];
    for (int k = 0; k < 4; k++) {
        cellm_avx512_widen16(w->sdtype, w->scales + (size_t)(r + k) * ng * 2, ng, sc[k]);
        cellm_avx512_widen16(w->sdtype, w->biases + (size_t)(r + k) * ng * 2, ng, bi[k]);
    }
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t g = 0; g < ng; g++) {
        __m512 s0 = _mm512_set1_ps(sc[0][g]), b0 = _mm512_set1_ps(bi[0][g]);
        __m512 s1 = _mm512_set1_ps(sc[1][g]), b1 = _mm512_set1_ps(bi[1][g]);
        __m512 s2 = _mm512_set1_ps(sc[2][g]), b2 = _mm512_set1_ps(bi[2][g]);
        __m512 s3 = _mm512_set1_ps(sc[3][g]), b3 = _mm512_set1_ps(bi[3][g]);
        for (int64_t e = g * w->group; e < (g + 1) * w->group; e += 16) {
            const uint8_t *p = row + e;
            if (!(e & 63))
                for (int k = 0; k < 4; k++)
                    _mm_prefetch((const char *)(p + (k + 4) * rb), _MM_HINT_T0);
            __m512 xv = _mm512_loadu_ps(x + e);
            a0 = _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)p), s0, b0), xv, a0);
            a1 = _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)(p + rb)), s1, b1), xv,
                                 a1);
            a2 = _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)(p + 2 * rb)), s2, b2),
                                 xv, a2);
            a3 = _mm512_fmadd_ps(affine16(_mm_loadu_si128((const __m128i *)(p + 3 * rb)), s3, b3),
                                 xv, a3);
        }
    }
    y[r] = _mm512_reduce_add_ps(a0);
    y[r + 1] = _mm512_reduce_add_ps(a1);
    y[r + 2] = _mm512_reduce_add_ps(a2);
    y[r + 3] = _mm512_reduce_add_ps(a3);
}

void cellm_avx512_fused_rows(const struct cellm_weight *w, int64_t r0, int64_t r1, const float *x,
                             const float *xp, float *y)
{
    int64_t r = r0;
    if (w->fmt == CELLM_W_BF16)
        for (; r + 4 <= r1; r += 4)
            rows4_bf16(w, r, xp, y);
    else if (w->fmt == CELLM_W_F16)
        for (; r + 4 <= r1; r += 4)
            rows4_f16(w, r, x, y);
    else if (w->fmt == CELLM_W_AFFINE && w->bits == 4 && w->cols / w->group <= AFFINE_MAX_GROUPS)
        for (; r + 4 <= r1; r += 4)
            rows4_q4(w, r, xp, y);
    else if (w->fmt == CELLM_W_AFFINE && w->bits == 8 && w->cols / w->group <= AFFINE_MAX_GROUPS)
        for (; r + 4 <= r1; r += 4)
            rows4_q8(w, r, x, y);

    for (; r < r1; r++) {
        if (w->fmt == CELLM_W_AFFINE)
            y[r] = w->bits == 4 ? row_q4(w, r, xp) : row_q8(w, r, x);
        else
            y[r] = row_half(w, r, x, xp);
    }
}
#endif
