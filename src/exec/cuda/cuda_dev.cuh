/*
 * cuda_dev.cuh: device helpers shared by the kernel files: 16-bit float widening, exact
 * code-to-float conversion, and the scalar reference access to a stored weight element
 * (the values every fast kernel must reproduce).
 */
#ifndef CELLM_EXEC_CUDA_DEV_CUH
#define CELLM_EXEC_CUDA_DEV_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_int.h"

static __device__ __forceinline__ float half16(uint16_t h, int is_bf16)
{
    return is_bf16 ? __uint_as_float((uint32_t)h << 16) : __half2float(__ushort_as_half(h));
}

/* exact float of a code q < 2^23: OR it into the mantissa of 2^23, subtract 2^23 */
static __device__ __forceinline__ float code_f(uint32_t q)
{
    return __fsub_rn(__uint_as_float(0x4B000000u | q), 8388608.0f);
}

/* Element (r, c) of a stored weight, widened; affine: fl(fl(s*q)+b) (s*q is exact). */
static __device__ __forceinline__ float wload(const struct cu_weight &w, int64_t r, int64_t c)
{
    const unsigned char *row = (const unsigned char *)w.data + r * w.row_bytes;
    switch (w.fmt) {
    case CU_W_F32: return ((const float *)row)[c];
    case CU_W_F16: return __half2float(__ushort_as_half(((const uint16_t *)row)[c]));
    case CU_W_BF16: return __uint_as_float((uint32_t)((const uint16_t *)row)[c] << 16);
    case CU_W_AFFINE: {
        int64_t bit = c * w.bits;
        const unsigned char *p = row + bit / 8;
        unsigned sh = (unsigned)(bit % 8);
        uint32_t v = p[0] | (sh + (unsigned)w.bits > 8 ? (uint32_t)p[1] << 8 : 0u);
        uint32_t q = (v >> sh) & ((1u << w.bits) - 1);
        int64_t g = r * (w.cols / w.group) + c / w.group;
        return fmaf(half16(w.scales[g], w.s_bf16), code_f(q), half16(w.biases[g], w.s_bf16));
    }
    }
    return 0.f;
}

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static inline unsigned cu_blocks(int64_t total, int threads)
{
    int64_t b = (total + threads - 1) / threads;
    return (unsigned)(b > 65536 ? 65536 : b < 1 ? 1 : b);
}

#endif
