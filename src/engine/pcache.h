/*
 * pcache.h: the prefix cache of a context (engine-private; the public face is
 * cellm_ctx_seq_attach / cellm_ctx_seq_store / cellm_ctx_cache_stats in cellm.h).
 *
 * Owns: the cached blocks (their executor copies of KV state), the hash chain that finds
 * them by the tokens from position 0, the memory budget and LRU eviction, the counters.
 * It does not own sequences: the engine passes a sequence's tokens and its executor.
 *
 * Design (docs/prefix-cache.md has the long form):
 * - A block is `block` consecutive positions, [k*block, (k+1)*block). Its key is a hash
 *   of all tokens from 0 to its end (a chain: hash(parent key, own tokens)); a lookup
 *   walks from block 0 and checks each candidate's own tokens and parent pointer, so a
 *   hash collision can never attach the wrong state.
 * - Blocks are copied into a sequence, never shared by pointer: executors stay simple
 *   (each sequence keeps its private contiguous or ring cache), and a block can be
 *   evicted at any moment without any sequence noticing. Copying costs a memcpy per
 *   position and layer, far below recomputing it.
 * - Sliding-window layers: a sequence that resumes at position L needs their keys of
 *   [L - window, L) only. A block saved while the ring still held its positions carries
 *   the window layers (CELLM_KV_WINDOW); an older one carries the full-attention layers
 *   only. A match may end at L only if every block overlapping [L - window, L) carries
 *   the window layers; otherwise the match is shortened until it does.
 * - Sequence state (model/hybrid.h: conv windows, recurrent states) summarises the whole
 *   prefix and cannot be rebuilt from per-position rows. For such a model a block may also
 *   carry a snapshot of every state layer at its end (the executor's state_save), and a
 *   match may end only at a block that carries one: attach loads the attention layers' KV
 *   rows of the chain and the snapshot of its last block. Snapshots are large (a whole
 *   recurrent state each), so the engine takes two per request at most (where its prompt's
 *   last whole block ends, and where its answer's does), and store keeps blocks only up to
 *   a snapshot.
 * - Eviction: least recently used among leaves (blocks no cached block continues), so a
 *   chain never loses an inner block while its tail stays, and among the snapshots of
 *   inner blocks (dropped alone: the blocks after them still need their KV rows).
 */
#ifndef CELLM_ENGINE_PCACHE_H
#define CELLM_ENGINE_PCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"
#include "exec/exec.h"

struct cellm_pcache;

/* block: positions per block (> 0); budget: bytes of executor blocks and snapshots at
 * most; window: the model's sliding window if any layer slides, else 0; state: 1 for a
 * model with sequence state (the executor must have state_save/_load/_free). */
enum cellm_status cellm_pcache_new(const struct cellm_exec_vt *vt, void *ex, int block,
                                   size_t budget, int window, int state, struct cellm_pcache **out,
                                   struct cellm_error *err);
void cellm_pcache_free(struct cellm_pcache *pc);

/* Sequence `seq` holds tokens[0..len). Loads the longest cached continuation that ends at a
 * block boundary L <= max (len < L; with state, at a block that carries a snapshot, which
 * becomes the sequence's state), and sets *new_len to L (len when nothing matched).
 * Counts a hit or a miss. */
enum cellm_status cellm_pcache_attach(struct cellm_pcache *pc, int seq, const int32_t *tokens,
                                      int len, int max, int *new_len, struct cellm_error *err);

/* Caches the whole blocks of tokens[0..len) that sequence `seq` holds (blocks already
 * cached are refreshed for LRU, and given their window layers where they lacked them).
 * snap (NULL for none): a snapshot of the sequence's state taken when it held snap_len
 * positions (a whole number of blocks, <= len), of snap_bytes; it goes to the block that
 * ends there, and the cache owns it from this call on (it frees it when it keeps it not).
 * With state, new blocks are stored only up to snap_len. Running out of budget is not an
 * error: what does not fit is not cached. */
enum cellm_status cellm_pcache_store(struct cellm_pcache *pc, int seq, const int32_t *tokens,
                                     int len, void *snap, int snap_len, size_t snap_bytes,
                                     struct cellm_error *err);

void cellm_pcache_stats(const struct cellm_pcache *pc, struct cellm_cache_stats *out);

#endif
