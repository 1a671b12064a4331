/* cuda_mvt_bf16.cu: the tensor-core 4-bit decode products, BF16 scales (cuda_mvt.cuh). */
#include "exec/cuda/cuda_mvt.cuh"

int cu_mvt_bf16(const struct mvt_kargs &a, int V, int pro, int epi, int sms, cudaStream_t st)
{
    return mvt_dispatch<1>(a, V, pro, epi, sms, st);
}
