/*
 * gemm_tile.h: the GEMM's packing and register-blocked micro-kernel, written once for the
 * vector ISAs (see gemm.h). gemm_avx2.c and gemm_avx512.c each include it once, after
 * defining what differs between them:
 *
 *   GT_ATTR                     the target attribute of every function here
 *   GT_V, GT_W                  the float vector type and its lanes (8 or 16)
 *   GT_LOAD(p), GT_STORE(p, v)  unaligned load and store
 *   GT_ZERO(), GT_BCAST(p)      zero, and *p in every lane
 *   GT_FMA(a, b, c)             a * b + c in one rounding
 *   GT_TRANSPOSE(r)             r[i] = row i of a GT_W x GT_W block in, column i out
 *   GT_STORE_ROW(yt, c0, c1, ncols, add)
 *                               writes (or adds) the first ncols of a row of two vectors
 *   GT_FN(name)                 the public name of a function (its ISA suffix)
 *   NR, MR, MRS                 the micro-kernel's panel width, tile height and lanes
 *
 * The summation order is the same for every ISA level: per output, k in order, one FMA
 * per k, the partial sum of a k block added to y afterwards.
 */
#ifndef GT_FN
#error "define the ISA's macros before including gemm_tile.h"
#endif

#define GT_INLINE inline __attribute__((always_inline))

GT_ATTR void GT_FN(cellm_gemm_packx)(const float *x, int64_t ldx, int rows, int64_t kc, float *xp)
{
    _Static_assert(MRS == GT_W && MR <= GT_W, "one transpose per GT_W columns of a tile");
    for (int t0 = 0; t0 < rows; t0 += MR) {
        float *tile = xp + (size_t)(t0 / MR * MRS) * (size_t)kc;
        int nt = rows - t0 < MR ? rows - t0 : MR;
        const float *src = x + (size_t)t0 * (size_t)ldx;
        int64_t k0 = 0;
        for (; k0 + GT_W <= kc; k0 += GT_W) {
            GT_V r[GT_W];
            for (int i = 0; i < GT_W; i++)
                r[i] = i < nt ? GT_LOAD(src + i * ldx + k0) : GT_ZERO();
            GT_TRANSPOSE(r);
            for (int i = 0; i < GT_W; i++)
                GT_STORE(tile + (k0 + i) * MRS, r[i]);
        }
        for (; k0 < kc; k0++)
            for (int i = 0; i < MRS; i++)
                tile[k0 * MRS + i] = i < nt ? src[i * ldx + k0] : 0;
    }
}

GT_ATTR void GT_FN(cellm_gemm_pack)(const float *tmp, int64_t ldt, int64_t kc, float *p)
{
    int64_t k0 = 0;
    for (; k0 + GT_W <= kc; k0 += GT_W)
        for (int h = 0; h < NR; h += GT_W) {
            GT_V r[GT_W];
            for (int i = 0; i < GT_W; i++)
                r[i] = GT_LOAD(tmp + (h + i) * ldt + k0);
            GT_TRANSPOSE(r);
            for (int i = 0; i < GT_W; i++)
                GT_STORE(p + (k0 + i) * NR + h, r[i]);
        }
    for (; k0 < kc; k0++)
        for (int f = 0; f < NR; f++)
            p[k0 * NR + f] = tmp[f * ldt + k0];
}

_Static_assert(NR == 2 * GT_W, "a panel is two vectors wide");

GT_ATTR static GT_INLINE void gt_tile(const int mr, const float *xp, const float *p, int64_t kc,
                                      float *y, int64_t ldy, int ncols, int add)
{
    GT_V c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int t = 0; t < mr; t++)
        c0[t] = c1[t] = GT_ZERO();
    for (int64_t k = 0; k < kc; k++) {
        GT_V w0 = GT_LOAD(p + k * NR), w1 = GT_LOAD(p + k * NR + GT_W);
        const float *xk = xp + k * MRS;
#pragma GCC unroll 16
        for (int t = 0; t < mr; t++) {
            GT_V xv = GT_BCAST(xk + t);
            c0[t] = GT_FMA(w0, xv, c0[t]);
            c1[t] = GT_FMA(w1, xv, c1[t]);
        }
    }
#pragma GCC unroll 16
    for (int t = 0; t < mr; t++)
        GT_STORE_ROW(y + t * ldy, c0[t], c1[t], ncols, add);
}

/* One specialisation per tile height, so each keeps its accumulators in registers. */
_Static_assert(MR <= 12, "one case per tile height up to MR");
GT_ATTR void GT_FN(cellm_gemm_tile)(int mr, const float *xp, const float *p, int64_t kc, float *y,
                                    int64_t ldy, int ncols, int add)
{
    switch (mr) {
#define GT_CASE(m)                                                                                 \
    case m:                                                                                        \
        gt_tile(m, xp, p, kc, y, ldy, ncols, add);                                                 \
        break;
        GT_CASE(1)
        GT_CASE(2)
        GT_CASE(3)
        GT_CASE(4)
        GT_CASE(5)
        GT_CASE(6)
#if MR >= 12
        GT_CASE(7)
        GT_CASE(8)
        GT_CASE(9)
        GT_CASE(10)
        GT_CASE(11)
        GT_CASE(12)
#elif MR != 6
#error "gemm_tile.h has cases for MR 6 and 12"
#endif
#undef GT_CASE
    default:
        break;
    }
}

#undef GT_INLINE
