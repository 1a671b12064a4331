/*
 * kernels_x86.h: the AVX-512 kernel entry points used by kernels.c's dispatch (the AVX2
 * ones live in kernels.c itself). Each reproduces the scalar reference values of
 * model/weight.c; only summation order differs.
 */
#ifndef CELLM_EXEC_CPU_KERNELS_X86_H
#define CELLM_EXEC_CPU_KERNELS_X86_H

#include "model/weight.h"

#if defined(__x86_64__)
float cellm_avx512_dot(const float *a, const float *b, int64_t n);
/* out[k] = dot(w + k*ldw, x) for k < 4 */
void cellm_avx512_dot4(const float *w, int64_t ldw, const float *x, int64_t n, float *out);
/* y[t*ldy + k] = dot(w + k*ldw, x + t*ldx) for k < 4, t < 3 */
void cellm_avx512_dot4x3(const float *w, int64_t ldw, const float *x, int64_t ldx, int64_t n,
                         float *y, int64_t ldy);
/* Row r of w widened into out[cols]; returns 0 if the format has no AVX-512 path. */
int cellm_avx512_dequant_row(const struct cellm_weight *w, int64_t r, float *out);
/* out[i] = the n 16-bit scales or biases (BF16 or F16, dt) at p as f32, exactly (the
 * fused kernels here and fast_avx512.c's). */
void cellm_avx512_widen16(enum cellm_dtype dt, const uint8_t *p, int64_t n, float *out);
/* 1 if cellm_avx512_fused_rows handles w. */
int cellm_avx512_has_fused(const struct cellm_weight *w);
/* Input layout the fused kernels expect for w: x permuted per 32 elements into
 * [even 16][odd 16] for 4-bit and BF16 weights (written to xp), else x itself. */
const float *cellm_avx512_prepare_x(const struct cellm_weight *w, const float *x, float *xp);
/* y[r] = row r of w . x for r in [r0, r1). */
void cellm_avx512_fused_rows(const struct cellm_weight *w, int64_t r0, int64_t r1, const float *x,
                             const float *xp, float *y);
#endif

#endif
