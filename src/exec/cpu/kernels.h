/*
 * kernels.h: the CPU's compute kernels over weights in any stored format.
 *
 * Matrix products read the mapped weights in place: a block of rows is widened or
 * dequantized into a small per-thread f32 buffer (exactly the values of the numeric
 * contract), then multiplied with every input row while it is hot in cache; from
 * CELLM_CPU_GEMM_MIN_ROWS input rows on, as the packed-panel GEMM of gemm.h. SIMD paths
 * (AVX-512F, AVX2+FMA+F16C) are chosen at run time; the portable path gives the same
 * values up to summation order.
 */
#ifndef CELLM_EXEC_CPU_KERNELS_H
#define CELLM_EXEC_CPU_KERNELS_H

#include "base/threadpool.h"
#include "model/weight.h"

/* Rows of weight dequantized per block; scratch holds that many rows per thread. */
#define CELLM_CPU_ROW_BLOCK 16

/* Instruction-set level picked at run time. */
enum cellm_isa { CELLM_ISA_PORTABLE, CELLM_ISA_AVX2, CELLM_ISA_AVX512 };
enum cellm_isa cellm_cpu_isa(void);
/* want, capped at what the CPU has (the executor's "isa" option asks for a lower level). */
enum cellm_isa cellm_cpu_isa_cap(enum cellm_isa want);
const char *cellm_cpu_isa_name(enum cellm_isa isa);

/* y[t][r] = sum_c w[r][c] * x[t][c] for t < n, r < w->rows; x is [n][w->cols] with row
 * stride ldx, y is [n][ldy]. scratch: per-thread buffers, n_threads *
 * cellm_cpu_scratch_floats(n_threads, max_cols) floats (gemm.h). n >= CELLM_CPU_GEMM_MIN_ROWS runs
 * as a GEMM (gemm.h), n == 1 through the fused decode kernels. */
void cellm_cpu_matmul(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_weight *w,
                      const float *x, int64_t ldx, int n, float *y, int64_t ldy, float *scratch,
                      int64_t scratch_cols);

/* Several products of the same input in one parallel job (q/k/v, gate/up): one
 * synchronisation instead of one per product, and the work is balanced across all rows. */
struct cellm_cpu_mm {
    const struct cellm_weight *w;
    float *y; /* [n][ldy] */
    int64_t ldy;
};
void cellm_cpu_matmul_multi(struct cellm_pool *pool, enum cellm_isa isa,
                            const struct cellm_cpu_mm *outs, int n_outs, const float *x,
                            int64_t ldx, int n, float *scratch, int64_t scratch_cols);

/* Dequantizes rows [r0, r0+nr) into out[nr][cols] (f32), with the selected ISA. */
void cellm_cpu_dequant_rows(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0,
                            int64_t nr, float *out);

/* sum_i a[i]*b[i]. */
float cellm_cpu_dot(enum cellm_isa isa, const float *a, const float *b, int64_t n);

#endif
