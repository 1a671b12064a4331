/*
 * fast_silu.h: the fast precision's SiLU (gate = silu(gate) * up), written once for the
 * vector ISAs. fast_avx2.c and fast_avx512.c each include it once after defining:
 *
 *   FS_ATTR                the target attribute
 *   FS_V, FS_W             the float vector type and its lanes
 *   FS_SET1(f), FS_ZERO()  f in every lane, zero
 *   FS_LOAD(p), FS_STORE(p, v), FS_MIN, FS_MAX, FS_ADD, FS_SUB, FS_MUL, FS_DIV
 *   FS_FMA(a, b, c)        a * b + c, FS_FNMA(a, b, c) c - a * b (one rounding each)
 *   FS_ROUND(x)            x to the nearest integer (ties to even)
 *   FS_POW2(p, n)          p * 2^n for an integer-valued n in [-126, 127]
 *   FS_TAIL(gate, up, i, n) the elements [i, n) past the last whole vector
 *   FS_FN(name)            the public name (its ISA suffix)
 */
#ifndef FS_FN
#error "define the ISA's macros before including fast_silu.h"
#endif

/* exp(x) to about 2 ulp: x = n ln2 + r, |r| <= ln2/2, a degree-6 polynomial in r, scaled
 * by 2^n. */
FS_ATTR static inline __attribute__((always_inline)) FS_V fs_exp(FS_V x)
{
    x = FS_MIN(FS_MAX(x, FS_SET1(-87.0f)), FS_SET1(88.0f));
    FS_V n = FS_ROUND(FS_MUL(x, FS_SET1(1.44269504f)));
    FS_V r = FS_FNMA(n, FS_SET1(0.693145752f), x);
    r = FS_FNMA(n, FS_SET1(1.42860677e-6f), r);
    FS_V p = FS_SET1(1.0f / 720);
    p = FS_FMA(p, r, FS_SET1(1.0f / 120));
    p = FS_FMA(p, r, FS_SET1(1.0f / 24));
    p = FS_FMA(p, r, FS_SET1(1.0f / 6));
    p = FS_FMA(p, r, FS_SET1(0.5f));
    p = FS_FMA(p, r, FS_SET1(1.0f));
    p = FS_FMA(p, r, FS_SET1(1.0f));
    return FS_POW2(p, n);
}

/* g / (1 + exp(-g)) * u */
FS_ATTR static inline __attribute__((always_inline)) FS_V fs_silu_mul(FS_V g, FS_V u)
{
    FS_V e = fs_exp(FS_SUB(FS_ZERO(), g));
    return FS_MUL(FS_DIV(g, FS_ADD(FS_SET1(1.0f), e)), u);
}

FS_ATTR void FS_FN(cellm_fast_silu_mul)(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + FS_W <= n; i += FS_W)
        FS_STORE(gate + i, fs_silu_mul(FS_LOAD(gate + i), FS_LOAD(up + i)));
    if (i < n) FS_TAIL(gate, up, i, n);
}
