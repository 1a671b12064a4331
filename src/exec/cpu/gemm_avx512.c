/*
 * gemm_avx512.c: the AVX-512F micro-kernel of the GEMM (see gemm.h, gemm.c).
 *
 * A tile is MR = 12 input rows by NR = 32 output features: 24 zmm accumulators, and per
 * k two loads of the packed panel and 12 broadcasts of x feeding 24 FMAs, so the two FMA
 * pipes, not the loads, set the pace (24 independent chains also cover the FMA latency).
 *
 * Panels of F32, F16, BF16 and 4/8-bit affine weights are decoded here straight from the
 * stored bytes: 16 rows x 16 k loaded and widened (affine: the codes, as exact floats),
 * one 16 x 16 transpose, then per k one FMA with the 16 rows' scales and biases (BF16:
 * 16 rows x 32 k per step, transposed as bf16 pairs). Other formats come decoded row by
 * row from kernels.c and are transposed here; x tiles are transposed the same way.
 * The packing and the micro-kernel loop are gemm_tile.h's, shared with the other ISA;
 * this file gives it the vector operations, the transpose and the row store.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "base/half.h"

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define INLINE inline __attribute__((always_inline))
#define NR CELLM_GEMM_NR_AVX512
#define MR CELLM_GEMM_MR_AVX512
#define MRS CELLM_GEMM_MRS_AVX512

/* r[i] = row i of a 16 x 16 block in, column i out. */
AVX512 static INLINE void transpose16(__m512 r[16])
{
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4q + j], lane L: column 4L + j of rows 4q..4q+3 */
    for (int q = 0; q < 4; q++) {
        __m512 a = t[4 * q], b = t[4 * q + 1], c = t[4 * q + 2], d = t[4 * q + 3];
        u[4 * q] = _mm512_shuffle_ps(a, c, 0x44);
        u[4 * q + 1] = _mm512_shuffle_ps(a, c, 0xee);
        u[4 * q + 2] = _mm512_shuffle_ps(b, d, 0x44);
        u[4 * q + 3] = _mm512_shuffle_ps(b, d, 0xee);
    }
    for (int j = 0; j < 4; j++) {
        __m512 v = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        __m512 w = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        __m512 w2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
        r[j] = _mm512_shuffle_f32x4(v, v2, 0x88);
        r[4 + j] = _mm512_shuffle_f32x4(w, w2, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v, v2, 0xdd);
        r[12 + j] = _mm512_shuffle_f32x4(w, w2, 0xdd);
    }
}

/* Row t of a tile: the first ncols of c0|c1 into (or added to) y, through masks. */
AVX512 static INLINE void store_row(float *yt, __m512 c0, __m512 c1, int ncols, int add)
{
    __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
    __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
    if (add) {
        c0 = _mm512_add_ps(c0, _mm512_maskz_loadu_ps(m0, yt));
        c1 = _mm512_add_ps(c1, _mm512_maskz_loadu_ps(m1, yt + 16));
    }
    _mm512_mask_storeu_ps(yt, m0, c0);
    _mm512_mask_storeu_ps(yt + 16, m1, c1);
}

#define GT_ATTR AVX512
#define GT_V __m512
#define GT_W 16
#define GT_LOAD(p) _mm512_loadu_ps(p)
#define GT_STORE(p, v) _mm512_storeu_ps(p, v)
#define GT_ZERO() _mm512_setzero_ps()
#define GT_BCAST(p) _mm512_set1_ps(*(p))
#define GT_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define GT_TRANSPOSE(r) transpose16(r)
#define GT_STORE_ROW store_row
#define GT_FN(name) name##_avx512
#include "gemm_tile.h"

/* The stored formats the direct panel decoder handles. */
enum kind { K_BF16, K_F16, K_F32, K_Q8, K_Q4 };

/* Elements [k, k + 16) of a row as f32: the stored values for 16-bit and f32 formats, the
 * codes for affine ones (scaled after the transposition). */
AVX512 static INLINE __m512 load16(const enum kind kind, const uint8_t *row, int64_t k)
{
    switch (kind) {
    case K_BF16: {
        __m256i h = _mm256_loadu_si256((const __m256i *)(row + 2 * k));
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    case K_F16:
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * k)));
    case K_F32:
        return _mm512_loadu_ps(row + 4 * k);
    case K_Q8:
        return _mm512_cvtepi32_ps(
            _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + k))));
    default: {
        /* 4 bits: element 2i in the low nibble of byte i, 2i + 1 in the high one */
        __m128i v = _mm_loadl_epi64((const __m128i *)(row + k / 2)), m4 = _mm_set1_epi8(0x0f);
        __m128i c =
            _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
        return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c));
    }
    }
}

AVX512 static INLINE float half_of(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = (uint16_t)(p[0] | p[1] << 8);
    return dt == CELLM_DT_BF16 ? cellm_bits_f32((uint32_t)h << 16) : _cvtsh_ss(h);
}

/* The scale and bias of the group holding column k, of each of 16 rows (one per lane). */
AVX512 static INLINE void group_scales(const struct cellm_weight *w, int64_t f0, int rows,
                                       int64_t ng, int64_t k, __m512 *sc, __m512 *bi)
{
    float s[16] = {0}, b[16] = {0};
    size_t g = (size_t)(k / w->group);
    for (int i = 0; i < rows; i++) {
        size_t at = ((size_t)(f0 + i) * (size_t)ng + g) * 2;
        s[i] = half_of(w->sdtype, w->scales + at);
        b[i] = half_of(w->sdtype, w->biases + at);
    }
    *sc = _mm512_loadu_ps(s);
    *bi = _mm512_loadu_ps(b);
}

/* 16 rows [f0, f0 + rows) (zero past rows) of columns [k0, k0 + kd), kd a multiple of 16,
 * into p[k][NR] at column offset 0 of p (the caller offsets p by the half). */
AVX512 static INLINE void half_panel(const enum kind kind, const struct cellm_weight *w, int64_t f0,
                                     int rows, int64_t k0, int64_t kd, float *p)
{
    const uint8_t *row0 = w->data + (size_t)f0 * w->row_bytes;
    size_t rb = w->row_bytes;
    /* rows past the panel's end read its last row, and their lanes are cleared */
    const uint8_t *rp[16];
    for (int i = 0; i < 16; i++)
        rp[i] = row0 + (size_t)(i < rows ? i : rows - 1) * rb;
    __mmask16 live = (__mmask16)((1u << rows) - 1);
    int64_t ng = kind >= K_Q8 ? w->cols / w->group : 0;
    __m512 sc = _mm512_setzero_ps(), bi = sc;
    int64_t kk = 0;
    if (kind == K_BF16)
        /* 32 k at a time: a whole line of each row, transposed as 16 x 16 pairs of bf16,
         * then the pairs split into even and odd k; half the shuffles per weight */
        for (; kk + 32 <= kd; kk += 32) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_castsi512_ps(_mm512_loadu_si512(rp[i] + 2 * (k0 + kk)));
            transpose16(r);
            const __m512i hi = _mm512_set1_epi32((int)0xffff0000u);
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                __m512i v = _mm512_castps_si512(r[i]);
                __m512 even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
                __m512 odd = _mm512_castsi512_ps(_mm512_and_si512(v, hi));
                _mm512_storeu_ps(p + (kk + 2 * i) * NR, _mm512_maskz_mov_ps(live, even));
                _mm512_storeu_ps(p + (kk + 2 * i + 1) * NR, _mm512_maskz_mov_ps(live, odd));
            }
        }
    if (kind == K_Q4)
        /* 128 k at a time: a whole line of each row, transposed as 16 x 16 words of 8
         * codes (element 8j + m in bits 4m..4m+3 of word j), then the codes peeled off */
        for (; kk + 128 <= kd; kk += 128) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_castsi512_ps(_mm512_loadu_si512(rp[i] + (k0 + kk) / 2));
            transpose16(r);
            const __m512i m4 = _mm512_set1_epi32(0xf);
            for (int j = 0; j < 16; j++) {
                int64_t k = k0 + kk + 8 * j;
                if (k % w->group == 0) group_scales(w, f0, rows, ng, k, &sc, &bi);
                __m512i v = _mm512_castps_si512(r[j]);
#pragma GCC unroll 8
                for (int m = 0; m < 8; m++) {
                    __m512 q =
                        _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, 4 * m), m4));
                    /* fl(s*q + b) in one rounding is fl(fl(s*q) + b) (kernels.c) */
                    __m512 wv = _mm512_fmadd_ps(q, sc, bi);
                    _mm512_storeu_ps(p + (kk + 8 * j + m) * NR, _mm512_maskz_mov_ps(live, wv));
                }
            }
        }
    for (; kk < kd; kk += 16) {
        int64_t k = k0 + kk;
        if (kind >= K_Q8 && k % w->group == 0) group_scales(w, f0, rows, ng, k, &sc, &bi);
        __m512 r[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++)
            r[i] = load16(kind, rp[i], k);
        transpose16(r);
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            /* fl(s*q + b) in one rounding is fl(fl(s*q) + b): s*q is exact (kernels.c) */
            __m512 v = kind >= K_Q8 ? _mm512_fmadd_ps(r[i], sc, bi) : r[i];
            _mm512_storeu_ps(p + (kk + i) * NR, _mm512_maskz_mov_ps(live, v));
        }
    }
}

int cellm_gemm_panel_avx512_ok(const struct cellm_weight *w)
{
    if (w->fmt == CELLM_W_AFFINE) return (w->bits == 4 || w->bits == 8) && w->group % 16 == 0;
    return w->fmt == CELLM_W_BF16 || w->fmt == CELLM_W_F16 || w->fmt == CELLM_W_F32;
}

AVX512 int64_t cellm_gemm_panel_avx512(const struct cellm_weight *w, int64_t f0, int nf, int64_t k0,
                                       int64_t kc, float *p)
{
    int64_t kd = kc & ~(int64_t)15;
    enum kind kind = w->fmt == CELLM_W_BF16  ? K_BF16
                     : w->fmt == CELLM_W_F16 ? K_F16
                     : w->fmt == CELLM_W_F32 ? K_F32
                     : w->bits == 8          ? K_Q8
                                             : K_Q4;
    for (int h = 0; h < NR; h += 16) {
        int rows = nf - h < 16 ? nf - h : 16;
        if (rows <= 0) { /* a panel of at most 16 rows: its upper half is zero */
            for (int64_t k = 0; k < kd; k++)
                _mm512_storeu_ps(p + k * NR + h, _mm512_setzero_ps());
            continue;
        }
        switch (kind) {
        case K_BF16:
            half_panel(K_BF16, w, f0 + h, rows, k0, kd, p + h);
            break;
        case K_F16:
            half_panel(K_F16, w, f0 + h, rows, k0, kd, p + h);
            break;
        case K_F32:
            half_panel(K_F32, w, f0 + h, rows, k0, kd, p + h);
            break;
        case K_Q8:
            half_panel(K_Q8, w, f0 + h, rows, k0, kd, p + h);
            break;
        case K_Q4:
            half_panel(K_Q4, w, f0 + h, rows, k0, kd, p + h);
            break;
        }
    }
    return kd;
}

#endif
