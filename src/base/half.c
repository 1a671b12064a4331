/*
 * half.c: bulk 16-bit float widening (F16C when available, else the scalar bit routines)
 * and round-to-nearest-even narrowing for tools and tests.
 */
#include "half.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#define CELLM_X86 1
#endif

int cellm_cpu_has_f16c(void)
{
#if CELLM_X86
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    return 0;
#endif
}

uint16_t cellm_f32_to_bf16(float f)
{
    uint32_t u = cellm_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

uint16_t cellm_f32_to_f16(float f)
{
    uint32_t u = cellm_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;
    if (a >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) {                /* below the smallest normal: subnormal or zero */
        if (a < 0x33000000u) return sign; /* below half the smallest subnormal */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 + (112 - e) ... m / 2^(shift) */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1);
    r -= 112u << 23;
    return sign | (uint16_t)(r >> 13);
}

#if CELLM_X86
__attribute__((target("f16c,avx2"))) static void f16_n_f16c(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
    }
    for (; i < n; i++)
        dst[i] = cellm_f16_to_f32(cellm_load_u16(s + 2 * i));
}

__attribute__((target("avx2"))) static void bf16_n_avx2(const void *src, float *dst, size_t n)
{
    const uint8_t *s = src;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(s + 2 * i));
        __m256i w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(w));
    }
    for (; i < n; i++)
        dst[i] = cellm_bf16_to_f32(cellm_load_u16(s + 2 * i));
}
#endif

void cellm_f16_to_f32_n(const void *src, float *dst, size_t n)
{
#if CELLM_X86
    if (cellm_cpu_has_f16c() && __builtin_cpu_supports("avx2")) {
        f16_n_f16c(src, dst, n);
        return;
    }
#endif
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = cellm_f16_to_f32(cellm_load_u16(s + 2 * i));
}

void cellm_bf16_to_f32_n(const void *src, float *dst, size_t n)
{
#if CELLM_X86
    if (__builtin_cpu_supports("avx2")) {
        bf16_n_avx2(src, dst, n);
        return;
    }
#endif
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = cellm_bf16_to_f32(cellm_load_u16(s + 2 * i));
}
