/*
 * kernels_fp_avx2.c: the loops of kernels_fp_simd.h on 8 lanes (AVX2, FMA, F16C).
 *
 * E2M1's magnitude goes through a permute of its 8 values and the sign bit moves to bit
 * 31; the column formats' words spread to lanes with a permute and per-lane shifts; the
 * partial word loads are masked (nothing past the last word is touched).
 */
#include "kernels_fp.h"

#include "base/half.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define ATTR __attribute__((target("avx2,fma,f16c")))
#define AI ATTR static inline __attribute__((always_inline))
#define FN(name) cellm_fp_avx2_##name
#define L 8
typedef __m256 V;
typedef __m256i VI;

AI V v_zero(void)
{
    return _mm256_setzero_ps();
}
AI V v_set1(float f)
{
    return _mm256_set1_ps(f);
}
AI V v_halves(float a, float b)
{
    return _mm256_blend_ps(_mm256_set1_ps(a), _mm256_set1_ps(b), 0xf0);
}
AI float v_first(V v)
{
    return _mm256_cvtss_f32(v);
}
AI V v_loadu(const float *p)
{
    return _mm256_loadu_ps(p);
}
AI void v_storeu(float *p, V v)
{
    _mm256_storeu_ps(p, v);
}
AI V v_add(V a, V b)
{
    return _mm256_add_ps(a, b);
}
AI V v_sub(V a, V b)
{
    return _mm256_sub_ps(a, b);
}
AI V v_mul(V a, V b)
{
    return _mm256_mul_ps(a, b);
}
AI V v_fms(V a, V b, V c)
{
    return _mm256_fmsub_ps(a, b, c);
}
AI V v_fma(V a, V b, V c)
{
    return _mm256_fmadd_ps(a, b, c);
}
AI V v_cvt(VI v)
{
    return _mm256_cvtepi32_ps(v);
}
AI V v_bits(VI v)
{
    return _mm256_castsi256_ps(v);
}
AI VI vi_bits(V v)
{
    return _mm256_castps_si256(v);
}
AI V v_sel_gt(VI a, VI b, V yes, V no)
{
    return _mm256_blendv_ps(no, yes, _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)));
}
AI V v_sel_eq(VI a, VI b, V yes, V no)
{
    return _mm256_blendv_ps(no, yes, _mm256_castsi256_ps(_mm256_cmpeq_epi32(a, b)));
}
AI VI vi_set1(int i)
{
    return _mm256_set1_epi32(i);
}
AI VI vi_and(VI a, VI b)
{
    return _mm256_and_si256(a, b);
}
AI VI vi_or(VI a, VI b)
{
    return _mm256_or_si256(a, b);
}
AI VI vi_add(VI a, VI b)
{
    return _mm256_add_epi32(a, b);
}
AI VI vi_sll(VI v, int n)
{
    return _mm256_sll_epi32(v, _mm_cvtsi32_si128(n));
}
AI VI vi_srl(VI v, int n)
{
    return _mm256_srl_epi32(v, _mm_cvtsi32_si128(n));
}
AI VI vi_srlv(VI v, VI n)
{
    return _mm256_srlv_epi32(v, n);
}
AI VI vi_perm(VI v, VI idx)
{
    return _mm256_permutevar8x32_epi32(v, idx);
}
AI VI vi_loadu(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}
AI VI vi_u8(const uint8_t *p)
{
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
}

AI float v_hsum(V v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* At most 3 words on 8 lanes (8-bit zeros); lanes past nw are zero and not read. */
AI VI vi_words(const uint8_t *p, int nw)
{
    __m128i m = _mm_cmpgt_epi32(_mm_set1_epi32(nw), _mm_setr_epi32(0, 1, 2, 3));
    return _mm256_zextsi128_si256(_mm_maskload_epi32((const int *)p, m));
}

AI VI vi_nib(const uint8_t *p)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i v = _mm_cvtsi32_si128((int)cellm_load_u32(p));
    __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
    return _mm256_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

AI V v_e2m1(VI c)
{
    const __m256 mag = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    __m256 v = _mm256_permutevar8x32_ps(mag, c); /* uses the low 3 bits */
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(8)), 28);
    return _mm256_xor_ps(v, _mm256_castsi256_ps(sign));
}

AI V v_scales(const uint8_t *p, size_t i, enum cellm_dtype dt)
{
    if (dt == CELLM_DT_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p + 2 * i))), 16));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * i)));
}

#include "kernels_fp_simd.h"

#endif
