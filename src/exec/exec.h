/*
 * exec.h: the executor interface. An executor turns the generic model description plus a
 * batch of rows (token, sequence, position) into logits, and owns whatever it needs for
 * that: device copies of weights (per model), KV caches and scratch (per context).
 * Executors branch on the description's flags, never on family names.
 */
#ifndef CELLM_EXEC_EXEC_H
#define CELLM_EXEC_EXEC_H

#include "base/opts.h"
#include "cellm.h"
#include "model/model.h"
#include "model/row.h" /* struct cellm_exec_row */

struct cellm_exec_vt {
    const char *name;
    /* 1 if model_new accepts CELLM_PRECISION_FAST; the engine refuses it otherwise. */
    int has_fast;
    /* The executor's option table (base/opts.h): model_new parses mp->exec_options with
     * it; cellm_exec_options_help lists it. */
    const struct cellm_opt *opts;
    int n_opts;
    /* Per model: e.g. upload weights. */
    enum cellm_status (*model_new)(const struct cellm_desc *d, const struct cellm_model_params *mp,
                                   void **dm, struct cellm_error *err);
    void (*model_free)(void *dm);
    /* Per context: KV caches for cp->max_seqs sequences (already >= 1), scratch, and the
     * CPU's thread pool of cp->n_threads workers. */
    enum cellm_status (*ctx_new)(void *dm, const struct cellm_ctx_params *cp, void **ex,
                                 struct cellm_error *err);
    void (*ctx_free)(void *ex);
    /* Forgets everything cached for a sequence from position `from` on (0 = all). */
    void (*seq_truncate)(void *ex, int seq, int from);
    /* Runs n rows; writes the logits of rows with want_logits, in row order, to
     * logits[n_want][vocab] (host memory). Positions beyond the model's maximum are
     * refused by the caller. */
    enum cellm_status (*eval)(void *ex, const struct cellm_exec_row *rows, int n, float *logits,
                              struct cellm_error *err);
    /* Optional: the same, but writes for each row with want_logits the id cellm_argmax
     * would pick from its logits to ids[n_want] instead of the logits. Where it is NULL
     * the engine runs eval and picks on the host. */
    enum cellm_status (*eval_argmax)(void *ex, const struct cellm_exec_row *rows, int n,
                                     int32_t *ids, struct cellm_error *err);
    /* Optional: the experts the last eval picked, ids[rows][n_layers][n_experts_used] in
     * row order (-1 in layers without experts); returns how many ints it wrote, 0 when it
     * records none or cap is too small. */
    int (*routes)(void *ex, int32_t *ids, int cap);
    /* Optional: the context's per-phase times (cellm_ctx_profile; out is zeroed). */
    void (*profile)(void *ex, struct cellm_profile *out);
    /* Short description of the device ("cpu avx2+fma+f16c, 2 threads"). */
    const char *(*describe)(void *dm);

    /* Optional, all or none: copies of KV state for the engine's prefix cache (see
     * engine/pcache.h). A block holds the keys and values of positions [pos, pos + n) of
     * one sequence for every full-attention layer, and for the sliding-window layers only
     * when CELLM_KV_WINDOW is in `flags` at save: a sequence that resumes at position L
     * needs a sliding layer's keys of [L - window, L) only, and a ring may already have
     * dropped older ones. Blocks are opaque to the engine (host memory on the CPU, device
     * memory on CUDA). */
    /* Bytes of a block of n positions (with or without the window layers). */
    size_t (*kv_block_bytes)(void *ex, int n, int flags);
    /* Allocates *blk and copies the positions into it; the sequence must hold them (and,
     * with CELLM_KV_WINDOW, pos >= kv_window_first). */
    enum cellm_status (*kv_save)(void *ex, int seq, int pos, int n, int flags, void **blk,
                                 struct cellm_error *err);
    /* Writes a saved block back into a sequence at the same positions, growing its cache
     * as needed. flags: the block's CELLM_KV_WINDOW (its layout) and CELLM_KV_LOAD_WINDOW
     * (also write the window layers; else only the full-attention layers). */
    enum cellm_status (*kv_load)(void *ex, int seq, int pos, int n, int flags, const void *blk,
                                 struct cellm_error *err);
    void (*kv_block_free)(void *ex, void *blk);
    /* The oldest position whose sliding-window keys a sequence of len positions still
     * holds (0 when nothing is dropped). */
    int (*kv_window_first)(void *ex, int seq, int len);

    /* Optional, all or none, and only beside the kv_* entries: snapshots of a sequence's
     * state (model/hybrid.h: the conv window and recurrent states of every state layer),
     * which let the prefix cache resume a prefix of a model with state (engine/pcache.h).
     * A snapshot is that state at the sequence's current length, opaque to the engine. */
    /* Allocates *snap, of *bytes, and copies the sequence's state into it. */
    enum cellm_status (*state_save)(void *ex, int seq, void **snap, size_t *bytes,
                                    struct cellm_error *err);
    /* Makes a snapshot the sequence's state (its length included: the next row must
     * continue at the snapshot's length; the engine has loaded the KV rows before it). */
    enum cellm_status (*state_load)(void *ex, int seq, const void *snap, struct cellm_error *err);
    void (*state_free)(void *ex, void *snap);

    /* Optional: makes room for positions [0, n) of a sequence before a step (an executor
     * whose KV cache has a budget: CUDA's pool), so that running out fails only the
     * requests that ask for more; eval still reserves whatever its rows lack. */
    enum cellm_status (*seq_reserve)(void *ex, int seq, int n, struct cellm_error *err);
};

/* kv_save / kv_load flags. */
#define CELLM_KV_WINDOW 1
#define CELLM_KV_LOAD_WINDOW 2

extern const struct cellm_exec_vt cellm_exec_cpu;
#ifdef CELLM_CUDA
extern const struct cellm_exec_vt cellm_exec_cuda;
#endif
extern const struct cellm_exec_vt cellm_exec_xla;

#endif
