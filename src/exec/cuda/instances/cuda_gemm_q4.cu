/* cuda_gemm_q4.cu: the tensor-core products of 4-bit affine weights (cuda_gemm.cuh). */
#include "exec/cuda/cuda_gemm.cuh"

int cu_gemm_q4(const struct gm_kargs &a, int bn, int V, int tiled, dim3 grid, cudaStream_t st)
{
    if (tiled) {
        switch (V) {
        case 1:
            return gm_launch_bn<GF_Q4, 1, 1>(a, bn, grid, st);
        case 2:
            return gm_launch_bn<GF_Q4, 2, 1>(a, bn, grid, st);
        case 4:
            return gm_launch_bn<GF_Q4, 4, 1>(a, bn, grid, st);
        }
    } else {
        switch (V) {
        case 1:
            return gm_launch_bn<GF_Q4, 1, 0>(a, bn, grid, st);
        case 2:
            return gm_launch_bn<GF_Q4, 2, 0>(a, bn, grid, st);
        case 4:
            return gm_launch_bn<GF_Q4, 4, 0>(a, bn, grid, st);
        }
    }
    return (int)cudaErrorInvalidValue;
}
