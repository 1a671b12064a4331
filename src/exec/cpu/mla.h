/*
 * mla.h: multi-head latent attention on the CPU (DeepSeek-V3, Kimi K2; cfg.mla), with its
 * own per-sequence cache of the compressed latent.
 *
 * Owns, per context: for every sequence and layer the normalised latent c~ [r] and the
 * rotated shared rope key k_pe [qk_rope] of each position (r + qk_rope floats, 576 for V3,
 * instead of full keys and values), the batch buffers of the projections, and per-thread
 * scratch. The executor (cpu.c) calls cellm_mla_attention in place of its attention block
 * and routes sequence lifetime and prefix-cache blocks here.
 */
#ifndef CELLM_EXEC_CPU_MLA_H
#define CELLM_EXEC_CPU_MLA_H

#include "base/error.h"
#include "base/threadpool.h"
#include "exec/exec.h"
#include "kernels.h"

struct cellm_mla;

/* y[n][ldy] = x[n][ldx] W^T through the executor's product (exact or fast). */
typedef void (*cellm_mla_mm_fn)(void *ctx, const struct cellm_weight *w, const float *x,
                                int64_t ldx, int n, float *y, int64_t ldy);

enum cellm_status cellm_mla_new(const struct cellm_desc *d, enum cellm_isa isa, int n_threads,
                                int max_seqs, struct cellm_mla **out, struct cellm_error *err);
void cellm_mla_free(struct cellm_mla *m);
/* The widest input of an MLA projection (for the executor's matmul scratch). */
int64_t cellm_mla_max_cols(const struct cellm_config *c);
/* Cache room for positions < need of sequence seq. */
enum cellm_status cellm_mla_reserve(struct cellm_mla *m, int seq, int need,
                                    struct cellm_error *err);
/* Drops sequence seq's cache. */
void cellm_mla_seq_free(struct cellm_mla *m, int seq);

/* Layer l's attention block for n rows: out[n][dim] from the normed input h[n][dim]. */
enum cellm_status cellm_mla_attention(struct cellm_mla *m, struct cellm_pool *pool, int l,
                                      const struct cellm_exec_row *rows, int n, const float *h,
                                      float *out, cellm_mla_mm_fn mm, void *mm_ctx,
                                      struct cellm_error *err);

/* Prefix-cache blocks: for each layer, positions [pos, pos + n) of the latent cache,
 * [n][r + qk_rope] f32, back to back. */
size_t cellm_mla_block_bytes(const struct cellm_mla *m, int n);
enum cellm_status cellm_mla_kv_save(struct cellm_mla *m, int seq, int pos, int n, void **blk,
                                    struct cellm_error *err);
enum cellm_status cellm_mla_kv_load(struct cellm_mla *m, int seq, int pos, int n, const void *blk,
                                    struct cellm_error *err);

#endif
