/*
 * cuda_mvq.cu: decode products (a few activation rows) of the formats of docs/formats.md
 * that the fused kernels (cuda_mv.cuh) do not take: GPTQ and AWQ, and any MXFP4/NVFP4/
 * MXFP8/FP8-block weight of a shape they decline (columns not a multiple of 16, FP8
 * blocks narrower than 16 or not a multiple of it).
 *
 * GPTQ/AWQ (the device layout of cuda_int.h, AWQ repacked to it at upload): a word holds
 * 32/bits consecutive inputs of one output row, and the words of consecutive rows are
 * adjacent. So a warp owns 32 consecutive rows, one per lane, and its loads of a word
 * index are one coalesced 128-byte read; the 8 warps of a block split the words of those
 * rows among them (warp k takes words k, k + 8, ...) and meet in shared memory, summed in
 * warp order. The inputs a word covers are the same for every lane (uniform loads of x,
 * of the group and of the permutation). With desc_act the inputs were permuted at upload
 * so that groups are contiguous (cuda_upload.c): a word then usually lies in one group
 * and takes one scale and zero; where it straddles two, each input looks its group up.
 *
 * The other formats, and GPTQ/AWQ in the row layout (cu_weight.rowmaj, which cuda_mv.cuh
 * reads but for the shapes it declines): one warp per row, each lane a stride of columns
 * through wload (the reference decoding of cuda_dev.cuh).
 *
 * Numbers: each weight is its exact reconstruction (GPTQ/AWQ s * (q - z - zero_one): at most 11 + 9
 * significant bits; FP8 blocks fl(code * scale), the reference's own rounding), products
 * accumulated in f32 in any order (the contract), plus the bias with one rounding.
 */
#include "cuda_dev.cuh"

#define MQ_WARPS 8
#define MQ_THREADS (MQ_WARPS * 32)

struct mq_args {
    struct cu_weight w;
    const float *x;
    int64_t ldx;
    int n; /* rows of this launch, <= NT */
    float *y;
    int64_t ldy;
    const float *bias;
    int vec; /* x rows 16-byte aligned and no permutation: inputs by float4 */
};

/* group of permuted input j */
static __device__ __forceinline__ int64_t mq_group(const struct cu_weight &w, int64_t j)
{
    return w.gidx ? (int64_t)__ldg(w.gidx + j) : j / w.group;
}

template <int NT, int BITS>
static __global__ void __launch_bounds__(MQ_THREADS) k_mv_gptq(const struct mq_args a)
{
    constexpr int PACK = 32 / BITS;
    constexpr uint32_t MASK = (1u << BITS) - 1;
    __shared__ float part[MQ_WARPS][NT][32];
    const struct cu_weight &w = a.w;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t r0 = (int64_t)blockIdx.x * 32, rows = w.rows;
    const int64_t r = r0 + lane < rows ? r0 + lane : rows - 1; /* spare lanes repeat a row */
    const int64_t words = w.cols / PACK;
    const uint32_t *col = (const uint32_t *)w.data + r;
    pdl_wait();
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.f;
#pragma unroll 4
    for (int64_t kw = warp; kw < words; kw += MQ_WARPS) {
        const uint32_t word = __ldg(col + kw * rows);
        const int64_t j0 = kw * PACK;
        const int64_t g0 = mq_group(w, j0);
        const bool one = mq_group(w, j0 + PACK - 1) == g0; /* the same for every lane */
        float s = cu_scale(w.qs, g0 * rows + r, w.sdt);
        int32_t z = (int32_t)__ldg(w.zeros + g0 * rows + r) + w.zero_one;
        float xv[NT][PACK];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float *xt = a.x + t * a.ldx;
            if (a.vec) {
#pragma unroll
                for (int k = 0; k < PACK; k += 4) {
                    const float4 v = __ldg((const float4 *)(xt + j0 + k));
                    xv[t][k] = v.x, xv[t][k + 1] = v.y, xv[t][k + 2] = v.z, xv[t][k + 3] = v.w;
                }
            } else {
#pragma unroll
                for (int k = 0; k < PACK; k++)
                    xv[t][k] = __ldg(xt + (w.perm ? (int64_t)__ldg(w.perm + j0 + k) : j0 + k));
            }
        }
#pragma unroll
        for (int k = 0; k < PACK; k++) {
            if (!one) {
                const int64_t g = mq_group(w, j0 + k);
                s = cu_scale(w.qs, g * rows + r, w.sdt);
                z = (int32_t)__ldg(w.zeros + g * rows + r) + w.zero_one;
            }
            const int32_t q = (int32_t)((word >> (BITS * k)) & MASK);
            const float wv = __fmul_rn(s, (float)(q - z)); /* exact */
#pragma unroll
            for (int t = 0; t < NT; t++)
                acc[t] = fmaf(wv, xv[t][k], acc[t]);
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        part[warp][t][lane] = acc[t];
    __syncthreads();
    if (warp != 0 || r0 + lane >= rows) return;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (t >= a.n) break;
        float v = part[0][t][lane];
        for (int k = 1; k < MQ_WARPS; k++)
            v += part[k][t][lane];
        if (a.bias) v = __fadd_rn(v, a.bias[r0 + lane]);
        a.y[t * a.ldy + r0 + lane] = v;
    }
}

/* any format wload reads: one warp per row */
template <int NT>
static __global__ void __launch_bounds__(MQ_THREADS) k_mv_any(const struct mq_args a)
{
    const struct cu_weight &w = a.w;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t r = (int64_t)blockIdx.x * MQ_WARPS + warp;
    pdl_wait();
    if (r >= w.rows) return;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.f;
#pragma unroll 4
    for (int64_t c = lane; c < w.cols; c += 32) {
        const float wv = wload(w, r, c);
#pragma unroll
        for (int t = 0; t < NT; t++)
            acc[t] = fmaf(wv, __ldg(a.x + t * a.ldx + c), acc[t]);
    }
#pragma unroll
    for (int t = 0; t < NT; t++) {
        const float v = warp_sum(acc[t]);
        if (lane == 0 && t < a.n) a.y[t * a.ldy + r] = a.bias ? __fadd_rn(v, a.bias[r]) : v;
    }
}

template <int NT> static int mq_launch(const struct mq_args &a, cudaStream_t st)
{
    const struct cu_weight &w = a.w;
    if (w.fmt == CU_W_GPTQ && !w.rowmaj) { /* the row layout goes through wload */
        const dim3 grid((unsigned)((w.rows + 31) / 32));
        return w.bits == 4 ? cu_launch(k_mv_gptq<NT, 4>, grid, dim3(MQ_THREADS), 0, st, a)
                           : cu_launch(k_mv_gptq<NT, 8>, grid, dim3(MQ_THREADS), 0, st, a);
    }
    return cu_launch(k_mv_any<NT>, dim3((unsigned)((w.rows + MQ_WARPS - 1) / MQ_WARPS)),
                     dim3(MQ_THREADS), 0, st, a);
}

extern "C" int cellm_cu_mvq(const struct cu_weight *w, const float *x, int64_t ldx, int n, float *y,
                            int64_t ldy, const float *bias, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (w->fmt <= CU_W_AFFINE || w->fmt == CU_W_AWQ || n < 1 || w->rows < 1 ||
        (w->fmt == CU_W_GPTQ && ((w->bits != 4 && w->bits != 8) || w->cols % (32 / w->bits) ||
                                 (!w->gidx && w->group < 1))))
        return (int)cudaErrorInvalidValue;
    struct mq_args a = {};
    a.w = *w;
    a.ldx = ldx;
    a.ldy = ldy;
    a.bias = bias;
    a.vec = !w->perm && ldx % 4 == 0 && (uintptr_t)x % 16 == 0;
    for (int t0 = 0; t0 < n;) {
        const int left = n - t0, nt = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        a.x = x + (int64_t)t0 * ldx;
        a.y = y + (int64_t)t0 * ldy;
        a.n = nt;
        const int e = nt == 8   ? mq_launch<8>(a, st)
                      : nt == 4 ? mq_launch<4>(a, st)
                      : nt == 2 ? mq_launch<2>(a, st)
                                : mq_launch<1>(a, st);
        if (e) return e;
        t0 += nt;
    }
    return 0;
}
