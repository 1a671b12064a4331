/*
 * cuda_argmax.cu: the greedy pick of each logits row on the device (cellm_cu_argmax), so
 * that a greedy step copies one id per row to the host instead of the whole vocabulary.
 *
 * The pick is cellm_argmax's: the first index of the largest value that is not NaN, and 0
 * when every value is NaN. Two launches: AM_BLOCKS blocks per row each reduce a slice to a
 * (value, index) candidate, then one block per row reduces the candidates. Candidates are
 * ordered by value, then by lower index, so the order of the reductions does not matter.
 */
#include <math.h>

#include "cuda_dev.cuh"

#define AM_BLOCKS 64
#define AM_THREADS 256

/* whether candidate (v, i) beats (bv, bi); i < 0 is no candidate, and NaN never becomes
 * one, so an incumbent is never NaN */
static __device__ __forceinline__ bool am_better(float v, int i, float bv, int bi)
{
    return i >= 0 && !isnan(v) && (bi < 0 || v > bv || (v == bv && i < bi));
}

/* the block's best candidate, in thread 0 */
static __device__ void am_block(float &v, int &i)
{
    __shared__ float sv[AM_THREADS / 32];
    __shared__ int si[AM_THREADS / 32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (am_better(ov, oi, v, i)) v = ov, i = oi;
    }
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sv[w] = v, si[w] = i;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int k = 1; k < nw; k++)
            if (am_better(sv[k], si[k], v, i)) v = sv[k], i = si[k];
}

static __global__ void __launch_bounds__(AM_THREADS)
    k_argmax_part(const float *x, int64_t vocab, float *pv, int *pi)
{
    pdl_wait();
    const int r = blockIdx.y, b = blockIdx.x;
    const int64_t per = (vocab + gridDim.x - 1) / gridDim.x, lo = b * per;
    const int64_t hi = lo + per < vocab ? lo + per : vocab;
    const float *xr = x + r * vocab;
    float v = -INFINITY;
    int i = -1;
    for (int64_t k = lo + threadIdx.x; k < hi; k += blockDim.x) {
        const float e = xr[k];
        if (am_better(e, (int)k, v, i)) v = e, i = (int)k;
    }
    am_block(v, i);
    if (threadIdx.x == 0) pv[r * gridDim.x + b] = v, pi[r * gridDim.x + b] = i;
}

static __global__ void __launch_bounds__(AM_BLOCKS)
    k_argmax_final(const float *pv, const int *pi, int32_t *ids)
{
    pdl_wait();
    const int r = blockIdx.x;
    float v = pv[r * AM_BLOCKS + threadIdx.x];
    int i = pi[r * AM_BLOCKS + threadIdx.x];
    am_block(v, i);
    if (threadIdx.x == 0) ids[r] = i < 0 ? 0 : i;
}

extern "C" int cellm_cu_argmax_scratch(void)
{
    return AM_BLOCKS;
}

extern "C" int cellm_cu_argmax(const float *x, int rows, int64_t vocab, float *pv, int *pi,
                               int32_t *ids, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (rows < 1 || vocab < 1 || vocab > INT32_MAX) return (int)cudaErrorInvalidValue;
    int e = cu_launch(k_argmax_part, dim3(AM_BLOCKS, (unsigned)rows), dim3(AM_THREADS), 0, st, x,
                      vocab, pv, pi);
    if (e) return e;
    return cu_launch(k_argmax_final, dim3((unsigned)rows), dim3(AM_BLOCKS), 0, st,
                     (const float *)pv, (const int *)pi, ids);
}
