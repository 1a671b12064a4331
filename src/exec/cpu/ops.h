/*
 * ops.h: elementwise and row operations of the forward pass, written to round like the
 * reference (separately rounded f32 operations; the file is built with
 * -ffp-contract=off so that no multiply-add is fused behind our back).
 */
#ifndef CELLM_EXEC_CPU_OPS_H
#define CELLM_EXEC_CPU_OPS_H

#include <stdint.h>

#include "model/hparams.h"
#include "model/weight.h"

/* out = norm(x) over n elements; b may be absent (fmt NONE). out may equal x. An absent w
 * (fmt NONE) of CELLM_NORM_RMS_DIV is the weightless norm (Gemma 3n's v norm). */
void cellm_op_norm(enum cellm_norm_kind kind, float eps, const struct cellm_vec *w,
                   const struct cellm_vec *b, const float *x, float *out, int64_t n);
/* In-place rotary embedding of one head vector (half-split layout, first rot dims). */
void cellm_op_rope(float *x, int rot, const float *inv_freq, int32_t pos);
/* The same with cos and sin multiplied by attn (YaRN's and longrope's attention factor). */
void cellm_op_rope_scaled(float *x, int rot, const float *inv_freq, float attn, int32_t pos);
/* act(gate) * up, into gate. */
void cellm_op_glu(enum cellm_act act, float *gate, const float *up, int64_t n);
/* x = c * tanh(x / c) */
void cellm_op_softcap(float *x, int64_t n, float c);
/* In-place softmax over n scores; reference rounding (max, exp, sum, multiply by 1/sum). */
void cellm_op_softmax(float *x, int64_t n);
/* Softmax of a row widened by one more logit, sink, which joins the max and the sum but
 * is dropped afterwards (gpt-oss's attention sinks): the n weights sum to less than 1. */
void cellm_op_softmax_sink(float *x, int64_t n, float sink);
/* gpt-oss's clamped SwiGLU over n features: gate[i * stride] and up[i * stride] (stride 2
 * reads the interleaved gate_up rows, 1 separate ones), into out[i]:
 *   g = min(gate, limit), u = clamp(up, -limit, limit), out = (u + 1) * (g * sigmoid(g * alpha))
 * out may be gate when stride is 1. */
void cellm_op_swiglu_clamp(const float *gate, const float *up, int64_t stride, float *out,
                           int64_t n, float alpha, float limit);
/* y += b (vector in any float format) */
void cellm_op_add_vec(float *y, const struct cellm_vec *b, int64_t n);

#endif
