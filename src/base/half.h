/*
 * half.h: exact widening of 16-bit floats (IEEE binary16 and bfloat16) to f32.
 *
 * Both widenings are exact: every 16-bit pattern maps to the one f32 with the same value
 * (NaN stays NaN with its payload shifted in, as the hardware does). Scalar versions are
 * portable bit manipulation; the bulk versions use F16C/AVX2 when the CPU has them.
 */
#ifndef CELLM_BASE_HALF_H
#define CELLM_BASE_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline float cellm_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint32_t cellm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float cellm_bf16_to_f32(uint16_t h)
{
    return cellm_bits_f32((uint32_t)h << 16);
}

static inline float cellm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {
        /* subnormal: normalise the mantissa */
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    return cellm_bits_f32(bits);
}

/* Round-to-nearest-even narrowing, for tests and tools (not used on weights). */
uint16_t cellm_f32_to_f16(float f);
uint16_t cellm_f32_to_bf16(float f);

/* 1 if the CPU has the F16C conversion instructions (CPUID; clang's
 * __builtin_cpu_supports does not know "f16c"). */
int cellm_cpu_has_f16c(void);

/* Bulk widening of n little-endian values from possibly unaligned memory. */
void cellm_f16_to_f32_n(const void *src, float *dst, size_t n);
void cellm_bf16_to_f32_n(const void *src, float *dst, size_t n);

/* Reads a little-endian value from possibly unaligned memory. */
static inline uint16_t cellm_load_u16(const void *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t cellm_load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

#endif
