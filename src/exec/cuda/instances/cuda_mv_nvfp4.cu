/* cuda_mv_nvfp4.cu: the fused decode products for one storage format (cuda_mv.cuh). */
#include "exec/cuda/cuda_mv.cuh"

int cu_mv_nvfp4(const struct mv_kargs &a, int nw, int sms, cudaStream_t st)
{
    return mv_mode<CU_W_NVFP4, 4, 0>(a, nw, sms, st);
}
