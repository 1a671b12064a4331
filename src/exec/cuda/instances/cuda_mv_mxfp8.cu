/* cuda_mv_mxfp8.cu: the fused decode products for one storage format (cuda_mv.cuh). */
#include "exec/cuda/cuda_mv.cuh"

int cu_mv_mxfp8(const struct mv_kargs &a, int nw, int sms, cudaStream_t st)
{
    return mv_mode<CU_W_MXFP8, 8, 0>(a, nw, sms, st);
}
