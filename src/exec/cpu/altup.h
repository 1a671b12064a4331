/*
 * altup.h: the CPU executor's Gemma 3n layer (docs/forward/gemma3n.md): n AltUp residual
 * streams per row, each layer's predict step (a router and prediction_coefs mix the
 * streams), LAuReL's low-rank branch beside attention, the MLP with its gaussian top-k
 * activation cut, the correct step, and the per-layer input added to every stream but the
 * first. The streams live here between cellm_cpu_g3n_embed and cellm_cpu_g3n_unembed;
 * attention is the executor's own (a callback), the per-layer embeddings Gemma 4's
 * (gemma4.h, cellm_cpu_g4_ple).
 */
#ifndef CELLM_EXEC_CPU_ALTUP_H
#define CELLM_EXEC_CPU_ALTUP_H

#include "gemma4.h"

/* The executor's attention of layer l over n rows: h [n][dim] in, out [n][dim]. */
typedef enum cellm_status (*cellm_cpu_g3n_attn)(void *ctx, int l, const struct cellm_exec_row *rows,
                                                int n, const float *h, float *out,
                                                struct cellm_error *err);
struct cellm_cpu_g3n_env {
    struct cellm_cpu_g4_env mm; /* products, fast mode and kernel levels */
    cellm_cpu_g3n_attn attention;
};

struct cellm_cpu_g3n; /* the streams and scratch of a batch of rows */

/* Buffers for n rows (grown, never shrunk). */
enum cellm_status cellm_cpu_g3n_reserve(struct cellm_cpu_g3n **g, const struct cellm_desc *d, int n,
                                        struct cellm_error *err);
void cellm_cpu_g3n_free(struct cellm_cpu_g3n *g);

/* The streams of n rows from their scaled embeddings x [n][dim]: x itself, then each
 * altup_projections product rescaled to x's root mean square. */
void cellm_cpu_g3n_embed(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                         const struct cellm_desc *d, const float *x, int n);
/* Layer l on the streams of n rows; ple [n][n_layers * ple_dim] are the per-layer inputs. */
enum cellm_status cellm_cpu_g3n_layer(struct cellm_cpu_g3n *g, const struct cellm_cpu_g3n_env *env,
                                      const struct cellm_desc *d, int l,
                                      const struct cellm_exec_row *rows, int n, const float *ple,
                                      struct cellm_error *err);
/* The streams back to one row each into x [n][dim]: the altup_unembed_projections products
 * rescaled to stream 0's root mean square, then the mean of the streams (before the final
 * norm). */
void cellm_cpu_g3n_unembed(struct cellm_cpu_g3n *g, const struct cellm_cpu_g4_env *env,
                           const struct cellm_desc *d, float *x, int n);
/* The gaussian top-k cut of one gate row in place: relu(g - (mean + std * z)), mean and
 * biased std over the row (exposed for tests). */
void cellm_cpu_g3n_sparsify(float *gate, int64_t n, float z);

#endif
