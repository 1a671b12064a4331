/*
 * cuda_gemm.cu: entry points of the tensor-core products of three or more rows (kernels in
 * cuda_gemm.cuh): which weights they take, the tile and K-split choice, and the sum of
 * the split's partials.
 */
#include "cuda_gemm.cuh"

extern "C" int cellm_cu_gemm_supported(const struct cu_weight *w, int64_t ldx)
{
    if (w->cols < 32 || w->cols % 32 || w->cols >= ((int64_t)1 << 30) || w->rows < 1 ||
        w->rows >= ((int64_t)1 << 30) || (uintptr_t)w->data % 16 || w->row_bytes % 16 || ldx % 4)
        return 0;
    if (w->fmt == CU_W_BF16) return w->row_bytes == 2 * w->cols;
    if (w->fmt != CU_W_AFFINE || (w->bits != 4 && w->bits != 8) || w->group < 32 ||
        (w->group & (w->group - 1)) || w->cols % w->group)
        return 0;
    if (w->tiled) return w->bits == 4 && w->rows % 16 == 0 && w->cols % 256 == 0;
    return w->row_bytes == w->cols * w->bits / 8;
}

/* y = the sum of the K split's partials, in the order of the splits, plus the bias */
static __global__ void k_gemm_reduce(const struct gm_kargs a, int ks)
{
    pdl_wait();
    const int64_t R = a.roff[a.nw], total = (int64_t)a.n * R;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t col = i / R, rc = i % R;
        int wi = 0;
        while (wi + 1 < a.nw && rc >= a.roff[wi + 1])
            wi++;
        const int64_t r = rc - a.roff[wi];
        float s = a.part[i];
        for (int z = 1; z < ks; z++)
            s += a.part[(int64_t)z * total + i];
        a.y[wi][col * a.ldy[wi] + r] = s + (a.bias[wi] ? a.bias[wi][r] : 0.f);
    }
}

extern "C" int cellm_cu_gemm(const struct cu_gemm_op *op, void *stream)
{
    const struct cu_weight *w = op->w[0];
    const cudaStream_t st = (cudaStream_t)stream;
    if (op->nw < 1 || op->nw > 3 || op->n < 1 || (uintptr_t)op->x % 16 ||
        !cellm_cu_gemm_supported(w, op->ldx))
        return (int)cudaErrorInvalidValue;
    struct gm_kargs a = {};
    int tiles = 0;
    int64_t rows = 0;
    for (int i = 0; i < op->nw; i++) {
        const struct cu_weight *wi = op->w[i];
        if (!cellm_cu_gemm_supported(wi, op->ldx) || wi->fmt != w->fmt || wi->bits != w->bits ||
            wi->group != w->group || wi->cols != w->cols || wi->tiled != w->tiled ||
            wi->s_bf16 != w->s_bf16)
            return (int)cudaErrorInvalidValue;
        a.w[i] = *wi;
        a.y[i] = op->y[i];
        a.ldy[i] = op->ldy[i];
        a.bias[i] = op->bias[i];
        a.tile0[i] = tiles;
        a.roff[i] = rows;
        tiles += (int)((wi->rows + GM_BM - 1) / GM_BM);
        rows += wi->rows;
    }
    a.tile0[op->nw] = tiles;
    a.roff[op->nw] = rows;
    a.nw = op->nw;
    a.x = op->x;
    a.ldx = op->ldx;
    a.n = op->n;
    a.nchunk = (int)((w->cols + GM_BK - 1) / GM_BK);
    a.kunit = w->fmt == CU_W_AFFINE && w->group > GM_BK ? w->group / GM_BK : 1;
    a.passes = op->passes == 1 ? 1 : 3;
    a.mask = 0x000F000Fu;
    a.magic = 0x43004300u;
    const int bn = op->n <= 16 ? 16 : op->n <= 32 ? 32 : 64;
    const int ny = (op->n + bn - 1) / bn;
    /* Too few blocks to fill the multiprocessors (one block each): split K, while each
     * split keeps two or more chunks and the partials fit. */
    const int64_t blocks = (int64_t)tiles * ny, units = (a.nchunk + a.kunit - 1) / a.kunit;
    int ks = 1;
    while (ks < GM_KS_MAX && op->n <= CU_GEMM_SPLIT_ROWS && blocks * ks < op->sms &&
           units >= 4 * ks && (int64_t)2 * ks * op->n * rows <= op->part_cap)
        ks *= 2;
    a.part = op->part;
    if (ny > 65535) return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)tiles, (unsigned)ny, (unsigned)ks);
    int e;
    if (w->fmt == CU_W_BF16)
        e = cu_gemm_bf16(a, bn, grid, st);
    else {
        const int V = w->group >= 128 ? 4 : w->group / 32;
        e = w->bits == 4 ? cu_gemm_q4(a, bn, V, w->tiled, grid, st)
                         : cu_gemm_q8(a, bn, V, grid, st);
    }
    if (e || ks == 1) return e;
    return cu_launch(k_gemm_reduce, dim3(cu_blocks((int64_t)op->n * rows, 256)), dim3(256), 0, st,
                     a, ks);
}
