/*
 * gemma4.h: the CPU executor's Gemma 4 blocks (docs/forward/gemma4.md): the per-layer
 * embeddings (PLE) computed once per forward and added at the end of every layer, the
 * layer_scalar, the weightless v norm, and the MoE block that runs beside the dense MLP.
 * cpu.c calls these from its sandwich block when cfg.gemma4 is set; the attention changes
 * (per-layer head sizes, KV sharing, k=v) are in cpu.c's attention itself.
 */
#ifndef CELLM_EXEC_CPU_GEMMA4_H
#define CELLM_EXEC_CPU_GEMMA4_H

#include "exec/exec.h"
#include "fast.h"
#include "kernels.h"

/* What the blocks need of the executor: its matrix product (fast mode's kernels when on)
 * and the exact one (the router, as cpu.c's MoE keeps it exact). */
typedef void (*cellm_cpu_g4_mm)(void *ctx, const struct cellm_weight *w, const float *x,
                                int64_t ldx, int n, float *y, int64_t ldy);
struct cellm_cpu_g4_env {
    void *ctx;
    cellm_cpu_g4_mm matmul, matmul_exact;
    int fast;
    enum cellm_fast_isa fisa;
    enum cellm_isa isa;
};

struct cellm_cpu_g4; /* buffers for a batch of rows */

/* Buffers for n rows (grown, never shrunk). */
enum cellm_status cellm_cpu_g4_reserve(struct cellm_cpu_g4 **g, const struct cellm_desc *d, int n,
                                       struct cellm_error *err);
void cellm_cpu_g4_free(struct cellm_cpu_g4 *g);

/* Per-layer inputs of n rows from their tokens and scaled embeddings x [n][dim]. */
void cellm_cpu_g4_ple(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                      const struct cellm_desc *d, const struct cellm_exec_row *rows, const float *x,
                      int n);
/* The per-layer inputs of the last cellm_cpu_g4_ple, [rows][n_layers * ple_dim]. */
const float *cellm_cpu_g4_ple_inputs(const struct cellm_cpu_g4 *g);
/* RMS norm without a weight, in place (the v norm; the router's norm). */
void cellm_cpu_g4_v_norm(float *x, int64_t n, float eps);
/* Layer l's MoE block: o (the dense MLP's output) becomes post_feedforward_layernorm_1(o) +
 * post_feedforward_layernorm_2(experts(pre_feedforward_layernorm_2(x))), x the residual
 * [n][dim]. routes receives the experts, [n][n_layers][k] for row 0 of the chunk. */
void cellm_cpu_g4_moe(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                      const struct cellm_desc *d, int l, const float *x, float *o, int n,
                      int32_t *routes);
/* The end of layer l: x += the per-layer input's block (PLE), then x *= layer_scalar. */
void cellm_cpu_g4_layer_end(struct cellm_cpu_g4 *g, const struct cellm_cpu_g4_env *env,
                            const struct cellm_desc *d, int l, float *x, int n);

#endif
