/*
 * gemm_avx512.c: the AVX-512F micro-kernel of the GEMM (see gemm.h, gemm.c).
 *
 * A tile is MR = 12 input rows by NR = 32 output features: 24 zmm accumulators, and per
 * k two loads of the packed panel and 12 broadcasts of x feeding 24 FMAs, so the two FMA
 * pipes, not the loads, set the pace (24 independent chains also cover the FMA latency).
 * The panel is transposed from decoded rows with 16 x 16 in-register transposes.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define INLINE inline __attribute__((always_inline))
#define NR CELLM_GEMM_NR_AVX512
#define MR CELLM_GEMM_MR_AVX512

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

AVX512 void cellm_gemm_pack_avx512(const float *tmp, int64_t kc, float *p)
{
    int64_t k0 = 0;
    for (; k0 + 16 <= kc; k0 += 16)
        for (int h = 0; h < NR; h += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_loadu_ps(tmp + (h + i) * kc + k0);
            transpose16(r);
            for (int i = 0; i < 16; i++)
                _mm512_storeu_ps(p + (k0 + i) * NR + h, r[i]);
        }
    for (; k0 < kc; k0++)
        for (int f = 0; f < NR; f++)
            p[k0 * NR + f] = tmp[f * kc + k0];
}

AVX512 static INLINE void tile(const int mr, const float *xp, const float *p, int64_t kc, float *y,
                               int64_t ldy, int ncols, int add)
{
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int t = 0; t < mr; t++)
        c0[t] = c1[t] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 w0 = _mm512_loadu_ps(p + k * NR), w1 = _mm512_loadu_ps(p + k * NR + 16);
        const float *xk = xp + k * MR;
#pragma GCC unroll 16
        for (int t = 0; t < mr; t++) {
            __m512 xv = _mm512_set1_ps(xk[t]);
            c0[t] = _mm512_fmadd_ps(w0, xv, c0[t]);
            c1[t] = _mm512_fmadd_ps(w1, xv, c1[t]);
        }
    }
    __mmask16 m0 = ncols >= 16 ? 0xffff : (__mmask16)((1u << ncols) - 1);
    __mmask16 m1 = ncols >= 32 ? 0xffff : ncols <= 16 ? 0 : (__mmask16)((1u << (ncols - 16)) - 1);
#pragma GCC unroll 16
    for (int t = 0; t < mr; t++) {
        float *yt = y + t * ldy;
        if (add) {
            c0[t] = _mm512_add_ps(c0[t], _mm512_maskz_loadu_ps(m0, yt));
            c1[t] = _mm512_add_ps(c1[t], _mm512_maskz_loadu_ps(m1, yt + 16));
        }
        _mm512_mask_storeu_ps(yt, m0, c0[t]);
        _mm512_mask_storeu_ps(yt + 16, m1, c1[t]);
    }
}

/* One specialisation per tile height, so each keeps its accumulators in registers. */
_Static_assert(MR == 12, "one case per tile height up to MR");
AVX512 void cellm_gemm_tile_avx512(int mr, const float *xp, const float *p, int64_t kc, float *y,
                                   int64_t ldy, int ncols, int add)
{
    switch (mr) {
#define CASE(m)                                                                                    \
    case m:                                                                                        \
        tile(m, xp, p, kc, y, ldy, ncols, add);                                                    \
        break;
        CASE(1)
        CASE(2)
        CASE(3)
        CASE(4)
        CASE(5)
        CASE(6)
        CASE(7)
        CASE(8)
        CASE(9)
        CASE(10)
        CASE(11)
        CASE(12)
#undef CASE
    default:
        break;
    }
}
#endif
