/*
 * kernels_fp.h: CPU kernels for the quantized formats of docs/formats.md (MLX mxfp4 /
 * mxfp8 / nvfp4, gpt-oss mxfp4 blocks, FP8 E4M3 block scales, GPTQ, AWQ).
 *
 * One decode structure serves every format: a per-format step turns stored codes into f32
 * lanes holding exactly the values of model/weight.c, and shared loops consume the lanes.
 * Two lane directions exist, because the formats store their codes two ways:
 *   - along a row (E2M1 / E4M3 codes of mxfp4, nvfp4, mxfp8, FP8 blocks): a vector holds
 *     consecutive inputs of one output row, and decode is a dot product with x;
 *   - across outputs (GPTQ, AWQ: words packed along inputs or outputs of an [in][out]-like
 *     matrix): a vector holds consecutive outputs of one input, and decode is an axpy of
 *     the broadcast x[i], which also serves a few input rows at once and writes the GEMM's
 *     [k][feature] panels directly, without a transpose.
 * The SIMD loops are written once (kernels_fp_simd.h) and compiled per ISA
 * (kernels_fp_avx2.c, kernels_fp_avx512.c); the portable C lives in kernels_fp.c.
 * Only the summation order differs from the scalar reference.
 */
#ifndef CELLM_EXEC_CPU_KERNELS_FP_H
#define CELLM_EXEC_CPU_KERNELS_FP_H

#include "kernels.h"

/* Input rows up to which cellm_cpu_fp_matvec decodes GPTQ/AWQ weights once for all rows
 * (the row-block path and the GEMM take more). */
#define CELLM_CPU_FP_MAX_ROWS 3

/* 1 if w is one of the formats of this module. */
int cellm_cpu_fp_format(const struct cellm_weight *w);

/* Row r of w, columns [k0, k0 + kc), into out[kc] with isa; 0 if not handled (another
 * format, GPTQ/AWQ (column-packed: see cellm_cpu_fp_panel), or an ISA without a path
 * here: the caller falls back to the scalar reference). */
int cellm_cpu_fp_dequant(enum cellm_isa isa, const struct cellm_weight *w, int64_t r, int64_t k0,
                         int64_t kc, float *out);

/* Decode of n input rows x[n][ldx]: y[t][r] = w[r] . x[t] for r in [r0, r1), t < n, with
 * the weights reconstructed in registers; 0 if not handled here (n = 1 for the row formats,
 * n <= CELLM_CPU_FP_MAX_ROWS for GPTQ/AWQ; SIMD ISAs only). scratch: CELLM_CPU_ROW_BLOCK *
 * w->cols floats (kernels.c's per-thread rows: a permuted copy of x, a decoded row, or
 * GPTQ's per-group scale table). */
int cellm_cpu_fp_matvec(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0, int64_t r1,
                        const float *x, int64_t ldx, int n, float *y, int64_t ldy, float *scratch);

/* GEMM panel of a GPTQ/AWQ weight: rows [f0, f0 + nf) (zero from nf to nr), columns
 * [k0, k0 + kc), into p[kc][nr]; returns kc, or 0 for other formats. */
int64_t cellm_cpu_fp_panel(enum cellm_isa isa, const struct cellm_weight *w, int64_t f0, int nf,
                           int64_t k0, int64_t kc, int nr, float *p);

/* GPTQ / AWQ rows [r0, r0+nr) of w into out[nr][cols] (portable); 0 for other formats. */
int cellm_cpu_packed_dequant_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out);

/* ---- per-ISA entry points (kernels_fp_avx2.c, kernels_fp_avx512.c), same contracts ---- */
#define CELLM_FP_ISA_DECLS(isa)                                                                    \
    int cellm_fp_##isa##_dequant(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc,  \
                                 float *out);                                                      \
    int cellm_fp_##isa##_matvec(const struct cellm_weight *w, int64_t r0, int64_t r1,              \
                                const float *x, int64_t ldx, int n, float *y, int64_t ldy,         \
                                float *scratch);                                                   \
    int64_t cellm_fp_##isa##_panel(const struct cellm_weight *w, int64_t f0, int nf, int64_t k0,   \
                                   int64_t kc, int nr, float *p);
#if defined(__x86_64__)
CELLM_FP_ISA_DECLS(avx2)
CELLM_FP_ISA_DECLS(avx512)
#endif

/* Portable decode of GPTQ/AWQ view rows [r0, r0 + nr), columns [k0, k0 + kc): element
 * (r, i) to out[(r - r0) * so + (i - k0) * sk] (rows: so = kc, sk = 1; a panel: so = 1,
 * sk = its width). The SIMD files use it for edges narrower than a vector. */
void cellm_fp_col_decode(const struct cellm_weight *w, int64_t r0, int64_t nr, int64_t k0,
                         int64_t kc, float *out, int64_t so, int64_t sk);

#endif
