/*
 * gemm_avx2.c: the AVX2+FMA micro-kernel of the GEMM (see gemm.h, gemm.c).
 *
 * A tile is MR = 6 input rows by NR = 16 output features: 12 ymm accumulators, two panel
 * loads and six broadcasts per 12 FMAs, and one register to spare out of 16. The panel
 * is transposed from decoded rows with 8 x 8 in-register transposes.
 * The packing and the micro-kernel loop are gemm_tile.h's, shared with the other ISA;
 * this file gives it the vector operations, the transpose and the row store.
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

/* Row t of a tile: the first ncols of c0|c1 into (or added to) y. */
AVX2 static INLINE void store_row(float *yt, __m256 c0, __m256 c1, int ncols, int add)
{
    if (ncols == NR) {
        if (add) {
            c0 = _mm256_add_ps(c0, _mm256_loadu_ps(yt));
            c1 = _mm256_add_ps(c1, _mm256_loadu_ps(yt + 8));
        }
        _mm256_storeu_ps(yt, c0);
        _mm256_storeu_ps(yt + 8, c1);
        return;
    }
    /* a partial panel: only its first ncols features exist in y */
    float buf[NR];
    _mm256_storeu_ps(buf, c0);
    _mm256_storeu_ps(buf + 8, c1);
    for (int c = 0; c < ncols; c++)
        yt[c] = add ? yt[c] + buf[c] : buf[c];
}

#define GT_ATTR AVX2
#define GT_V __m256
#define GT_W 8
#define GT_LOAD(p) _mm256_loadu_ps(p)
#define GT_STORE(p, v) _mm256_storeu_ps(p, v)
#define GT_ZERO() _mm256_setzero_ps()
#define GT_BCAST(p) _mm256_broadcast_ss(p)
#define GT_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define GT_TRANSPOSE(r) transpose8(r)
#define GT_STORE_ROW store_row
#define GT_FN(name) name##_avx2
#include "gemm_tile.h"
#endif
