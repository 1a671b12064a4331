/*
 * gemm_avx2.c: the AVX2+FMA micro-kernel of the GEMM (see gemm.h, gemm.c).
 *
 * A tile is MR = 6 input rows by NR = 16 output features: 12 ymm accumulators, two panel
 * loads and six broadcasts per 12 FMAs, and one register to spare out of 16. The panel
 * is transposed from decoded rows with 8 x 8 in-register transposes.
 */
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE inline __attribute__((always_inline))
#define NR CELLM_GEMM_NR_AVX2
#define MR CELLM_GEMM_MR_AVX2
#define MRS CELLM_GEMM_MRS_AVX2

/* r[i] = row i of an 8 x 8 block in, column i out. */
AVX2 static INLINE void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    /* u[4q + j], lane L: column 4L + j of rows 4q..4q+3 */
    for (int q = 0; q < 2; q++) {
        __m256 a = t[4 * q], b = t[4 * q + 1], c = t[4 * q + 2], d = t[4 * q + 3];
        u[4 * q] = _mm256_shuffle_ps(a, c, 0x44);
        u[4 * q + 1] = _mm256_shuffle_ps(a, c, 0xee);
        u[4 * q + 2] = _mm256_shuffle_ps(b, d, 0x44);
        u[4 * q + 3] = _mm256_shuffle_ps(b, d, 0xee);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

AVX2 void cellm_gemm_packx_avx2(const float *x, int64_t ldx, int rows, int64_t kc, float *xp)
{
    _Static_assert(MRS == 8 && MR <= 8, "one 8 x 8 transpose per 8 columns of a tile");
    for (int t0 = 0; t0 < rows; t0 += MR) {
        float *tile = xp + (size_t)(t0 / MR * MRS) * (size_t)kc;
        int nt = rows - t0 < MR ? rows - t0 : MR;
        const float *src = x + (size_t)t0 * (size_t)ldx;
        int64_t k0 = 0;
        for (; k0 + 8 <= kc; k0 += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < nt ? _mm256_loadu_ps(src + i * ldx + k0) : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(tile + (k0 + i) * MRS, r[i]);
        }
        for (; k0 < kc; k0++)
            for (int i = 0; i < MRS; i++)
                tile[k0 * MRS + i] = i < nt ? src[i * ldx + k0] : 0;
    }
}

AVX2 void cellm_gemm_pack_avx2(const float *tmp, int64_t ldt, int64_t kc, float *p)
{
    int64_t k0 = 0;
    for (; k0 + 8 <= kc; k0 += 8)
        for (int h = 0; h < NR; h += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(tmp + (h + i) * ldt + k0);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(p + (k0 + i) * NR + h, r[i]);
        }
    for (; k0 < kc; k0++)
        for (int f = 0; f < NR; f++)
            p[k0 * NR + f] = tmp[f * ldt + k0];
}

AVX2 static INLINE void tile(const int mr, const float *xp, const float *p, int64_t kc, float *y,
                             int64_t ldy, int ncols, int add)
{
    __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
    for (int t = 0; t < mr; t++)
        c0[t] = c1[t] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m256 w0 = _mm256_loadu_ps(p + k * NR), w1 = _mm256_loadu_ps(p + k * NR + 8);
        const float *xk = xp + k * MRS;
#pragma GCC unroll 8
        for (int t = 0; t < mr; t++) {
            __m256 xv = _mm256_broadcast_ss(xk + t);
            c0[t] = _mm256_fmadd_ps(w0, xv, c0[t]);
            c1[t] = _mm256_fmadd_ps(w1, xv, c1[t]);
        }
    }
    if (ncols == NR) {
#pragma GCC unroll 8
        for (int t = 0; t < mr; t++) {
            float *yt = y + t * ldy;
            if (add) {
                c0[t] = _mm256_add_ps(c0[t], _mm256_loadu_ps(yt));
                c1[t] = _mm256_add_ps(c1[t], _mm256_loadu_ps(yt + 8));
            }
            _mm256_storeu_ps(yt, c0[t]);
            _mm256_storeu_ps(yt + 8, c1[t]);
        }
        return;
    }
    /* a partial panel: only its first ncols features exist in y */
    float buf[NR];
#pragma GCC unroll 8
    for (int t = 0; t < mr; t++) {
        float *yt = y + t * ldy;
        _mm256_storeu_ps(buf, c0[t]);
        _mm256_storeu_ps(buf + 8, c1[t]);
        for (int c = 0; c < ncols; c++)
            yt[c] = add ? yt[c] + buf[c] : buf[c];
    }
}

/* One specialisation per tile height, so each keeps its accumulators in registers. */
_Static_assert(MR == 6, "one case per tile height up to MR");
AVX2 void cellm_gemm_tile_avx2(int mr, const float *xp, const float *p, int64_t kc, float *y,
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
#undef CASE
    default:
        break;
    }
}
#endif
