/*
 * seqstate.h: the CPU executor's per-sequence state beyond the KV cache, and the blocks
 * that use it (docs/forward/sequence-state.md, lfm2.md, qwen3-next.md).
 *
 * A sequence holds, for every state layer (model/hybrid.h), a conv window (the last K-1
 * conv inputs of each channel, oldest first) and, for Gated DeltaNet layers, one [dk][dv]
 * matrix S per value head, all f32 and zero at the start (zero left padding, the
 * reference's initial_state=None). `len` counts the positions folded in: a row must
 * continue at exactly that position, since a state cannot be rewound. Rows of many
 * sequences run in one batch, each row reading and updating only its own sequence's
 * state, in row order (rows of one sequence arrive in order), so a batch gives what each
 * sequence gives alone, and a prompt split into chunks gives what one pass gives: the
 * recurrence is evaluated token by token in both prefill and decode.
 *
 * conv_state.c: storage, LFM2's short gated conv block, the shared expert and the gated
 * attention helpers. deltanet.c: the Gated DeltaNet block.
 */
#ifndef CELLM_EXEC_CPU_SEQSTATE_H
#define CELLM_EXEC_CPU_SEQSTATE_H

#include "base/threadpool.h"
#include "cellm.h"
#include "exec/exec.h"
#include "fast.h"
#include "kernels.h"
#include "model/hybrid.h"
#include "model/model.h"

struct cellm_cpu_state {
    float **conv; /* [n_layers]: [(K-1)][channels], NULL for attention layers */
    float **rec;  /* [n_layers]: [nV][dk][dv], NULL but for Gated DeltaNet layers */
    int len;      /* positions folded into the state */
};

/* What the blocks need of the executor: its products (exact or fast) and its pool. */
struct cellm_cpu_env {
    void *ctx;
    void (*matmul)(void *ctx, const struct cellm_weight *w, const float *x, int64_t ldx, int n,
                   float *y, int64_t ldy);
    /* the exact products even in fast mode: every product of the state blocks (and the
     * shared expert's gate, like the router). The recurrence carries a rounding forward
     * to every later token and the conv block multiplies two projections; with the fast
     * kernels there, the fixtures' fast-mode logits leave fast mode's stated tolerance
     * (by 1.3x to 1.7x). Attention layers, MLPs, experts and the head stay fast. */
    void (*matmul_exact)(void *ctx, const struct cellm_weight *w, const float *x, int64_t ldx,
                         int n, float *y, int64_t ldy);
    struct cellm_pool *pool;
    int fast;
    enum cellm_fast_isa fisa;
};

/* Batch buffers of the state blocks. */
struct cellm_cpu_hyb {
    int rows;
    float *proj, *proj2, *conv, *core, *z, *b, *a, *qg, *sh_g, *sh_u, *sh_y, *sh_w;
    struct cellm_cpu_state **row_st; /* [rows]: the state of each row's sequence */
};

/* Before a forward over rows[0..n): batch buffers, each row's sequence state (allocated
 * zeroed on a sequence's first row; states[k] at byte stride `stride` is sequence k's),
 * and the check that every row continues its sequence (cellm_state_row_check). */
enum cellm_status cellm_cpu_hyb_begin(const struct cellm_desc *d, struct cellm_cpu_hyb *h,
                                      const struct cellm_exec_row *rows, int n,
                                      struct cellm_cpu_state *states, size_t stride,
                                      struct cellm_error *err);
/* After it: the states now hold the rows' positions. */
void cellm_cpu_hyb_end(struct cellm_cpu_hyb *h, const struct cellm_exec_row *rows, int n);
/* Runs layer l's mixer when it is a state layer (conv or Gated DeltaNet) and returns 1;
 * returns 0 for an attention layer. */
int cellm_cpu_state_mixer(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                          struct cellm_cpu_hyb *h, const float *x, int n, float *out);

/* The widest value head the Gated DeltaNet block takes (cellm_cpu_hyb_begin refuses more). */
#define CELLM_CPU_GDN_MAX_DV 512

/* Allocates s's state (zeroed) if it has none yet. */
enum cellm_status cellm_cpu_state_reserve(const struct cellm_desc *d, struct cellm_cpu_state *s,
                                          struct cellm_error *err);
void cellm_cpu_state_free(const struct cellm_desc *d, struct cellm_cpu_state *s);

enum cellm_status cellm_cpu_hyb_reserve(const struct cellm_config *c, struct cellm_cpu_hyb *h,
                                        int rows, struct cellm_error *err);
void cellm_cpu_hyb_free(struct cellm_cpu_hyb *h);

/* LFM2's conv operator of layer l on n rows of x [n][dim] into out [n][dim]. */
void cellm_cpu_conv_block(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                          struct cellm_cpu_hyb *h, const float *x, int n, float *out);
/* The Gated DeltaNet operator of layer l, likewise. */
void cellm_cpu_gdn_block(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                         struct cellm_cpu_hyb *h, const float *x, int n, float *out);
/* out += sigmoid(x . shared_gate) * shared_expert(x), n rows. */
void cellm_cpu_shared_expert(const struct cellm_cpu_env *e, const struct cellm_desc *d,
                             const struct cellm_layer *L, struct cellm_cpu_hyb *h, const float *x,
                             int n, float *out);
/* Gated attention: splits h->qg [n][nH][2d] into q [n][nH*d] and the gates (kept in
 * h->qg's place), and later multiplies att [n][nH*d] by sigmoid(gate). */
void cellm_cpu_attn_gate_split(const struct cellm_config *c, struct cellm_cpu_hyb *h, float *q,
                               int n);
void cellm_cpu_attn_gate_apply(const struct cellm_config *c, const struct cellm_cpu_hyb *h,
                               float *att, int n);

/* Shared by the blocks (conv_state.c): the causal depthwise conv of row i's channels x[C]
 * over the window win[(K-1)][C] with weights w [C][K], into y[C], then x joins the window. */
void cellm_cpu_conv_step(const struct cellm_vec *w, int K, int64_t C, float *win, const float *x,
                         float *y);

#endif
