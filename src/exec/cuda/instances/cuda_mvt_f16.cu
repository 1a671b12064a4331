/* cuda_mvt_f16.cu: the tensor-core 4-bit decode products, F16 scales (cuda_mvt.cuh). */
#include "exec/cuda/cuda_mvt.cuh"

int cu_mvt_f16(const struct mvt_kargs &a, int V, int pro, int epi, int sms, cudaStream_t st)
{
    return mvt_dispatch<0>(a, V, pro, epi, sms, st);
}
