/*
 * gemm.h: the CPU's matrix-matrix product against stored weights, for prefill and
 * batched decode (several input rows at once).
 *
 *     y[t][o] = sum_k x[t][k] * w[o][k]     t < n, o < w->rows, k < w->cols
 *
 * The weights are read in place, a panel of output features times a block of k at a
 * time, widened or dequantized once (exactly the values of the numeric contract: by
 * kernels.c's row decoders, or on AVX-512 for F32/F16/BF16 and 4/8-bit affine straight
 * into registers) and laid out [k][feature] for a register-blocked micro-kernel that
 * broadcasts x and keeps a tile of y in registers. Each thread owns a
 * range of panels across all the products of one call and runs every input row against
 * them, so the weights are decoded once per call per row block, not once per row.
 * Only the summation order differs from the scalar reference. The n == 1 decode path
 * stays in kernels.c (fused, bandwidth-bound); cellm_cpu_matmul_multi calls this for
 * larger n.
 */
#ifndef CELLM_EXEC_CPU_GEMM_H
#define CELLM_EXEC_CPU_GEMM_H

#include <stddef.h>

#include "kernels.h"

/* Smallest number of input rows for which cellm_cpu_matmul_multi uses the GEMM: for 2 and
 * 3 rows the row-block path of kernels.c was as fast or faster (bench/cpu_notes.md). */
#define CELLM_CPU_GEMM_MIN_ROWS 4

/* Floats of scratch that products with up to max_cols inputs need on n_threads threads
 * (both the GEMM and the row-block path of kernels.c fit in it). */
size_t cellm_cpu_scratch_floats(int n_threads, int64_t max_cols);

/* The products of outs[0..n_outs) with the same x ([n][ldx], f32), on all threads of pool.
 * Every w->cols is the same (the length of a row of x), and no y overlaps x (y holds
 * partial sums while x is still read). scratch:
 * cellm_cpu_scratch_floats(cellm_pool_size(pool), scratch_cols) floats, where
 * scratch_cols >= w->cols. */
void cellm_cpu_gemm(struct cellm_pool *pool, enum cellm_isa isa, const struct cellm_cpu_mm *outs,
                    int n_outs, const float *x, int64_t ldx, int n, float *scratch,
                    int64_t scratch_cols);

/* ---- per-ISA pieces (gemm_avx512.c, gemm_avx2.c) ---- */

/* p[k*NR + r] = tmp[r*ldt + k] for r < NR, k < kc: the transposition of a decoded panel. */
typedef void (*cellm_gemm_pack_fn)(const float *tmp, int64_t ldt, int64_t kc, float *p);
/* Row tiles of x: rows [0, rows) of x (row stride ldx), columns [0, kc), into
 * ceil(rows / MR) tiles of [kc][MRS] floats, tile i at xp + i * kc * MRS (row t of the tile
 * in lane t, lanes from MR on and rows past the end zero). */
typedef void (*cellm_gemm_packx_fn)(const float *x, int64_t ldx, int rows, int64_t kc, float *xp);
/* y[t*ldy + c] (+)= sum_k xp[k*MRS + t] * p[k*NR + c] for t < mr (<= MR), c < ncols
 * (<= NR), with the ISA's MR, MRS and NR: xp is a packed row tile [kc][MRS], p a packed
 * panel [kc][NR]. add: accumulate into y, else overwrite it. */
typedef void (*cellm_gemm_tile_fn)(int mr, const float *xp, const float *p, int64_t kc, float *y,
                                   int64_t ldy, int ncols, int add);

#if defined(__x86_64__)
/* 1 if cellm_gemm_panel_avx512 decodes w's format. */
int cellm_gemm_panel_avx512_ok(const struct cellm_weight *w);
/* Rows [f0, f0 + nf) of w (zero past nf, nf <= 32), columns [k0, k0 + kc), decoded straight
 * into the packed panel p[k][32] with in-register transposes, for the first kc rounded
 * down to 16 columns; returns that count. */
int64_t cellm_gemm_panel_avx512(const struct cellm_weight *w, int64_t f0, int nf, int64_t k0,
                                int64_t kc, float *p);
void cellm_gemm_packx_avx512(const float *x, int64_t ldx, int rows, int64_t kc, float *xp);
void cellm_gemm_pack_avx512(const float *tmp, int64_t ldt, int64_t kc, float *p);
void cellm_gemm_tile_avx512(int mr, const float *xp, const float *p, int64_t kc, float *y,
                            int64_t ldy, int ncols, int add);
void cellm_gemm_packx_avx2(const float *x, int64_t ldx, int rows, int64_t kc, float *xp);
void cellm_gemm_pack_avx2(const float *tmp, int64_t ldt, int64_t kc, float *p);
void cellm_gemm_tile_avx2(int mr, const float *xp, const float *p, int64_t kc, float *y,
                          int64_t ldy, int ncols, int add);
#endif

/* Panel widths (output features), row-tile heights and their lanes in a packed tile (a
 * power of two, so that x packs with in-register transposes) of the micro-kernels. */
#define CELLM_GEMM_NR_AVX512 32
#define CELLM_GEMM_MR_AVX512 12
#define CELLM_GEMM_MRS_AVX512 16
#define CELLM_GEMM_NR_AVX2 16
#define CELLM_GEMM_MR_AVX2 6
#define CELLM_GEMM_MRS_AVX2 8
#define CELLM_GEMM_NR_PORTABLE 16
#define CELLM_GEMM_MR_PORTABLE 4
#define CELLM_GEMM_MRS_PORTABLE 4

#endif
