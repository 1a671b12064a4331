/*
 * kernels_fp_avx512.c: the loops of kernels_fp_simd.h on 16 lanes (AVX-512F).
 *
 * E2M1 is one permute of its 16 signed values; the column formats' words spread to lanes
 * with a permute and per-lane shifts; the partial word loads are masked (nothing past the
 * last word is touched, which matters at the end of a mapped tensor).
 */
#include "kernels_fp.h"

#include "base/half.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ATTR __attribute__((target("avx512f,avx2,fma,f16c")))
#define AI ATTR static inline __attribute__((always_inline))
#define FN(name) cellm_fp_avx512_##name
#define L 16
typedef __m512 V;
typedef __m512i VI;

AI V v_zero(void)
{
    return _mm512_setzero_ps();
}
AI V v_set1(float f)
{
    return _mm512_set1_ps(f);
}
AI V v_halves(float a, float b)
{
    return _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(a), _mm512_set1_ps(b));
}
AI float v_first(V v)
{
    return _mm512_cvtss_f32(v);
}
AI V v_loadu(const float *p)
{
    return _mm512_loadu_ps(p);
}
AI void v_storeu(float *p, V v)
{
    _mm512_storeu_ps(p, v);
}
AI V v_add(V a, V b)
{
    return _mm512_add_ps(a, b);
}
AI V v_sub(V a, V b)
{
    return _mm512_sub_ps(a, b);
}
AI V v_mul(V a, V b)
{
    return _mm512_mul_ps(a, b);
}
AI V v_fms(V a, V b, V c)
{
    return _mm512_fmsub_ps(a, b, c);
}
AI V v_fma(V a, V b, V c)
{
    return _mm512_fmadd_ps(a, b, c);
}
AI float v_hsum(V v)
{
    return _mm512_reduce_add_ps(v);
}
AI V v_cvt(VI v)
{
    return _mm512_cvtepi32_ps(v);
}
AI V v_bits(VI v)
{
    return _mm512_castsi512_ps(v);
}
AI VI vi_bits(V v)
{
    return _mm512_castps_si512(v);
}
AI V v_sel_gt(VI a, VI b, V yes, V no)
{
    return _mm512_mask_mov_ps(no, _mm512_cmpgt_epi32_mask(a, b), yes);
}
AI V v_sel_eq(VI a, VI b, V yes, V no)
{
    return _mm512_mask_mov_ps(no, _mm512_cmpeq_epi32_mask(a, b), yes);
}
AI VI vi_set1(int i)
{
    return _mm512_set1_epi32(i);
}
AI VI vi_and(VI a, VI b)
{
    return _mm512_and_si512(a, b);
}
AI VI vi_or(VI a, VI b)
{
    return _mm512_or_si512(a, b);
}
AI VI vi_add(VI a, VI b)
{
    return _mm512_add_epi32(a, b);
}
AI VI vi_sll(VI v, int n)
{
    return _mm512_sll_epi32(v, _mm_cvtsi32_si128(n));
}
AI VI vi_srl(VI v, int n)
{
    return _mm512_srl_epi32(v, _mm_cvtsi32_si128(n));
}
AI VI vi_srlv(VI v, VI n)
{
    return _mm512_srlv_epi32(v, n);
}
AI VI vi_perm(VI v, VI idx)
{
    return _mm512_permutexvar_epi32(idx, v);
}
AI VI vi_loadu(const void *p)
{
    return _mm512_loadu_si512(p);
}
AI VI vi_words(const uint8_t *p, int nw)
{
    return _mm512_maskz_loadu_epi32((__mmask16)((1u << nw) - 1), p);
}
AI VI vi_u8(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

AI VI vi_nib(const uint8_t *p)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

AI V v_e2m1(VI c)
{
    const __m512 tbl = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f,
                                      -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_permutexvar_ps(c, tbl);
}

AI V v_scales(const uint8_t *p, size_t i, enum cellm_dtype dt)
{
    if (dt == CELLM_DT_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p + 2 * i))), 16));
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * i)));
}

#include "kernels_fp_simd.h"

#endif
