/* cuda_gemm_q8.cu: the tensor-core products of 8-bit affine weights (cuda_gemm.cuh). */
#include "exec/cuda/cuda_gemm.cuh"

int cu_gemm_q8(const struct gm_kargs &a, int bn, int V, dim3 grid, cudaStream_t st)
{
    switch (V) {
    case 1:
        return gm_launch_bn<GF_Q8, 1, 0>(a, bn, grid, st);
    case 2:
        return gm_launch_bn<GF_Q8, 2, 0>(a, bn, grid, st);
    case 4:
        return gm_launch_bn<GF_Q8, 4, 0>(a, bn, grid, st);
    }
    return (int)cudaErrorInvalidValue;
}
