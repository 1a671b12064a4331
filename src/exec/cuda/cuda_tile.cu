/*
 * cuda_tile.cu: the step-ordered layout of 4-bit affine codes (cuda_int.h says what it
 * is, cu_q4_word in cuda_dev.cuh where each word goes), written once at upload.
 */
#include "cuda_dev.cuh"

extern "C" int cellm_cu_tile_q4_ok(int bits, int group, int64_t rows, int64_t cols)
{
    return bits == 4 && (group == 32 || group == 64 || group == 128) && rows > 0 &&
           rows % 16 == 0 && cols > 0 && cols % 256 == 0;
}

/* one thread per source word: reads in row order, writes within the word's 2 KB step */
static __global__ void k_tile_q4(const uint32_t *__restrict__ src, uint32_t *__restrict__ dst, int64_t r0,
                          int64_t nr, int64_t cols, int group)
{
    const int64_t rw = cols / 8, total = nr * rw;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[cu_q4_word(cols, group, r0 + i / rw, i % rw)] = src[i];
}

extern "C" int cellm_cu_tile_q4(const void *src, void *dst, int64_t r0, int64_t nr, int64_t cols,
                                int group, void *stream)
{
    if (!cellm_cu_tile_q4_ok(4, group, nr, cols) || r0 % 16 || src == dst)
        return (int)cudaErrorInvalidValue;
    const int64_t total = nr * (cols / 8);
    int64_t blocks = (total + 255) / 256;
    if (blocks > 65536) blocks = 65536;
    k_tile_q4<<<(unsigned)blocks, 256, 0, (cudaStream_t)stream>>>(
        (const uint32_t *)src, (uint32_t *)dst, r0, nr, cols, group);
    return (int)cudaGetLastError();
}
