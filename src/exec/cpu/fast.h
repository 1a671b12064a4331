/*
 * fast.h: the CPU's fast-mode products and KV helpers (--precision fast), which are
 * outside the numeric contract by design and measured against the fixtures instead.
 *
 * What is computed, exactly (the scalar model the tests check every ISA against):
 * - BF16 weights: y = sum_i w_i * bf16(x_i), bf16() rounding to nearest even. Each
 *   product is exact in f32; only the f32 summation rounds (order per ISA).
 * - MLX affine weights of 4 or 8 bits: x is quantized per block of 32 elements,
 *   d = max|x| / 127 (f32), q_i = rint(x_i * (1/d)) in [-127, 127]; then per block b in
 *   weight group g
 *       y = sum_b  s_g * d_b * I_b  +  b_g * ds_b,   I_b = sum_{i in b} code_i * q_i (exact,
 *                                                    integer), ds_b = fl(d_b * sum q_i)
 *   i.e. the group-factored form s*sum(q*x) + b*sum(x) on the quantized activations.
 * Other formats (F32, F16, affine 2/3/5/6-bit) are not handled here: the executor sends
 * them through the exact kernels (cellm_fast_handles).
 *
 * The KV cache of fast mode holds f16 (round to nearest even); attention widens it.
 *
 * ISA levels: AVX-512 with BF16 and VNNI (vdpbf16ps, vpdpbusd), AVX2 (f32 FMA on widened
 * bf16, vpmaddubsw for the int8 dots), portable C. Products are register-blocked tiles of
 * weight rows x input rows over the weights as mapped (no copy); the activations are
 * rounded or quantized once per product call into per-context buffers.
 */
#ifndef CELLM_EXEC_CPU_FAST_H
#define CELLM_EXEC_CPU_FAST_H

#include <string.h>

#include "cellm.h"
#include "model/hparams.h"
#include "kernels.h"

enum cellm_fast_isa { CELLM_FAST_PORTABLE, CELLM_FAST_AVX2, CELLM_FAST_AVX512 };

/* The best fast level the CPU has, capped at the exact mode's level `cap` (so that
 * the executor option isa=portable|avx2 caps both). */
enum cellm_fast_isa cellm_fast_isa(enum cellm_isa cap);
const char *cellm_fast_isa_name(enum cellm_fast_isa isa);

/* 1 if the fast products handle w; else the exact kernels must. */
int cellm_fast_handles(const struct cellm_weight *w);

/* bf16(x), round to nearest even (NaN stays NaN). */
static inline uint16_t cellm_fast_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* The reference int8 quantization of one block of 32: q[32], *d, returns sum(q). */
int32_t cellm_fast_quant_block(const float *x, int8_t *q, float *d);

/* Per-context state: buffers for the quantized activations of up to max_rows rows of up
 * to max_cols columns, and per-thread scratch. */
struct cellm_fast;
enum cellm_status cellm_fast_new(enum cellm_fast_isa isa, int n_threads, int max_rows,
                                 int64_t max_cols, struct cellm_fast **out,
                                 struct cellm_error *err);
void cellm_fast_free(struct cellm_fast *f);

/* outs[k].y[t][r] = row r of outs[k].w . x[t] for t < n (n <= max_rows), every outs[k].w
 * handled (cellm_fast_handles) and of the same cols (<= max_cols). */
void cellm_fast_matmul_multi(struct cellm_fast *f, struct cellm_pool *pool,
                             const struct cellm_cpu_mm *outs, int n_outs, const float *x,
                             int64_t ldx, int n);

/* gate = act(gate) * up. SiLU with a polynomial exp (about 2 ulp) on x86; every other
 * case as cellm_op_glu. */
void cellm_fast_glu(enum cellm_fast_isa isa, enum cellm_act act, float *gate, const float *up,
                    int64_t n);

/* KV cache helpers: out[i] = f16(x[i]); sum q[i]*f32(k[i]); y[i] += a * f32(v[i]). */
void cellm_fast_to_f16(enum cellm_fast_isa isa, const float *x, uint16_t *out, int64_t n);
float cellm_fast_dot_f16(enum cellm_fast_isa isa, const float *q, const uint16_t *k, int64_t n);
void cellm_fast_axpy_f16(enum cellm_fast_isa isa, float *y, float a, const uint16_t *v, int64_t n);

#endif
