/* cuda_gemm_bf16.cu: the tensor-core products of BF16 weights (cuda_gemm.cuh). */
#include "exec/cuda/cuda_gemm.cuh"

int cu_gemm_bf16(const struct gm_kargs &a, int bn, dim3 grid, cudaStream_t st)
{
    return gm_launch_bn<GF_BF16, 1, 0>(a, bn, grid, st);
}
