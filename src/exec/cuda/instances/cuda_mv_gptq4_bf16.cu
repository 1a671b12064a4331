/* cuda_mv_gptq4_bf16.cu: the fused decode products for one storage format (cuda_mv.cuh). */
#include "exec/cuda/cuda_mv.cuh"

int cu_mv_gptq4_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st)
{
    return mv_mode<CU_W_GPTQ, 4, 1>(a, nw, sms, st);
}
