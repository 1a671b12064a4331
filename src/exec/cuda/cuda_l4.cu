/*
 * cuda_l4.cu: Llama 4's MoE steps on the GPU (docs/forward/llama4.md, "Feed-forward"): each
 * chosen expert's input is the token times its router score, and the experts' outputs are
 * summed in ascending expert id onto the shared expert's output, as the CPU executor's
 * moe_sum_shared (src/exec/cpu/cpu.c) rounds them. The router itself runs on the host with
 * the CPU's code (cuda_mm.c). The positional pieces (interleaved RoPE, the weightless q/k
 * norm, the query scales, chunked attention) are in cuda_dev.cuh's head_pos_warp and
 * attn_first_key, shared by every attention kernel.
 */
#include "cuda_dev.cuh"

static __global__ void k_gather_scaled(const float *src, const int32_t *map, const float *w, int K,
                                       int m, int dim, float *dst)
{
    pdl_wait();
    int64_t total = (int64_t)m * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i / dim, c = i % dim;
        dst[i] = __fmul_rn(src[(int64_t)(map[j] / K) * dim + c], w[map[j]]);
    }
}

extern "C" int cellm_cu_gather_rows_scaled(const float *src, const int32_t *map, const float *w,
                                           int K, int m, int dim, float *dst, void *stream)
{
    return cu_launch(k_gather_scaled, dim3(cu_blocks((int64_t)m * dim, 256)), dim3(256), 0,
                     (cudaStream_t)stream, src, map, w, K, m, dim, dst);
}

static __global__ void k_moe_sum_shared(const float *y, const int32_t *idx, int n, int K, int dim,
                                        float *out)
{
    pdl_wait();
    int64_t total = (int64_t)n * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / dim, c = i % dim;
        const int32_t *id = idx + r * K;
        /* the ranks in ascending expert id (top-k ids are distinct): K passes, each taking
         * the smallest id above the previous one */
        float acc = 0.f;
        int prev = -1;
        for (int pass = 0; pass < K; pass++) {
            int best = -1;
            for (int k = 0; k < K; k++)
                if (id[k] > prev && (best < 0 || id[k] < id[best])) best = k;
            if (best < 0) break;
            float v = y[(r * K + best) * dim + c];
            acc = pass == 0 ? v : __fadd_rn(acc, v);
            prev = id[best];
        }
        out[i] = __fadd_rn(out[i], acc);
    }
}

extern "C" int cellm_cu_moe_sum_shared(const float *y, const int32_t *idx, int n, int K, int dim,
                                       float *out, void *stream)
{
    return cu_launch(k_moe_sum_shared, dim3(cu_blocks((int64_t)n * dim, 256)), dim3(256), 0,
                     (cudaStream_t)stream, y, idx, n, K, dim, out);
}
