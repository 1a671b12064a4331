/*
 * posenc.h: the position-dependent steps of CPU attention that vary by family: RoPE in
 * either layout (or none on Llama 4's NoPE layers), Llama 4's weightless q/k norm after
 * RoPE, the query scales by position (Llama 4's temperature on NoPE layers, Mistral 3's
 * llama_4_scaling), and the first key a query sees (sliding window, chunk).
 * Rounded like the reference, one f32 operation at a time (built with -ffp-contract=off
 * as ops.c is).
 */
#ifndef CELLM_EXEC_CPU_POSENC_H
#define CELLM_EXEC_CPU_POSENC_H

#include <stdint.h>

#include "model/model.h"

/* The first key position a query at pos attends to in layer L (the last is pos). */
int cellm_attn_first_key(const struct cellm_config *cfg, const struct cellm_layer *L, int pos);

/* The factor a query at absolute position pos is multiplied by after RoPE in layer L;
 * exactly 1 where the family has none. */
float cellm_query_scale(const struct cellm_config *cfg, const struct cellm_layer *L, int32_t pos);

/* One head vector x of head_dim after its projection (and any pre-RoPE norm): RoPE with
 * inv_freq at pos in the config's layout (none in a NoPE layer), then the weightless q/k
 * norm where the config has it, then * qscale when x is a query (pass 1 for keys). */
void cellm_op_head_pos(const struct cellm_config *cfg, const struct cellm_layer *L, float *x,
                       const float *inv_freq, int32_t pos, float qscale);

#endif
