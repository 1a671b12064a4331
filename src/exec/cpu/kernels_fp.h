/*
 * kernels_fp.h: SIMD row decoders for the small-float formats of docs/formats.md (MLX
 * mxfp4 / mxfp8 / nvfp4, gpt-oss mxfp4 blocks, FP8 E4M3 block scales).
 *
 * kernels.c's cellm_cpu_dequant_rows asks these first for such weights; they decode a row
 * (or a k-range of one) into f32 scratch, with the values of model/weight.c bit for bit:
 * every value here is a product of two small floats, exact in float32 (the FP8 block
 * product rounds once, as the scalar reference's multiply does).
 */
#ifndef CELLM_EXEC_CPU_KERNELS_FP_H
#define CELLM_EXEC_CPU_KERNELS_FP_H

#include "kernels.h"

/* Row r of w, columns [k0, k0 + kc), into out[kc] with isa; 0 if not handled (another
 * format, or an ISA without a path here: the caller falls back). */
int cellm_cpu_fp_dequant(enum cellm_isa isa, const struct cellm_weight *w, int64_t r, int64_t k0,
                         int64_t kc, float *out);

/* Decode (one input row): y[r] = w[r] . x for r in [r0, r1), weights reconstructed exactly
 * in registers and multiplied at once; 0 if not handled here. xp: scratch of w->cols
 * floats for a permuted copy of x (NULL: none). */
int cellm_cpu_fp_fused_rows(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0,
                            int64_t r1, const float *x, float *xp, float *y);

/* GPTQ / AWQ rows [r0, r0+nr) of w into out[nr][cols] (portable; every ISA uses it);
 * 0 for other formats. */
int cellm_cpu_packed_dequant_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out);

#endif
