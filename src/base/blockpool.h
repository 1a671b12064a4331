/*
 * blockpool.h: a pool of fixed-size blocks handed out by id, and the block tables of its
 * owners. The CUDA executor's paged KV cache is its user: a sequence owns a table whose
 * entry b is the block holding its positions [b * block, (b + 1) * block).
 *
 * The pool knows nothing of memory. Ids [0, made) exist; when the free ids run out, the
 * owner's grow callback makes `step` more (a device allocation of that many blocks), up
 * to `limit`, the budget. Freed ids go back on a stack and are taken again first, so a
 * server in steady state touches no allocator. A reservation is all or nothing: a table
 * either grows to cover what was asked or stays as it was, and running out names the
 * budget, the blocks in use and what was asked. Plain C without device calls, so that
 * the policy is tested in CI (tests/test_blockpool.c).
 */
#ifndef CELLM_BASE_BLOCKPOOL_H
#define CELLM_BASE_BLOCKPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct cellm_blockpool {
    int block;             /* positions per block */
    int32_t limit;         /* blocks the budget allows */
    int32_t made;          /* blocks that exist: ids [0, made) */
    int32_t step;          /* blocks made by one growth (the last may be short, at limit) */
    int32_t n_free, *free; /* free ids, a stack of capacity limit */
    size_t block_bytes;    /* for messages */
    char budget[64];       /* names the budget in messages, e.g. "kv_gb=4" */
    /* Makes blocks [from, to) exist (from is a multiple of step); CELLM_OK or a status with
     * the message in err. NULL: the ids need nothing behind them (tests). */
    enum cellm_status (*grow)(void *arg, int32_t from, int32_t to, struct cellm_error *err);
    void *arg;
};

/* One owner's blocks: ids[b] holds positions [b * block, (b + 1) * block). The storage of
 * ids (max entries) belongs to the caller. */
struct cellm_blocktable {
    int32_t *ids;
    int32_t n, max;
};

/* A pool of at most limit blocks of block positions (block_bytes each), grown step blocks
 * at a time; budget names the budget in messages. */
enum cellm_status cellm_blockpool_init(struct cellm_blockpool *p, int block, int32_t limit,
                                       int32_t step, size_t block_bytes, const char *budget,
                                       struct cellm_error *err);
void cellm_blockpool_free(struct cellm_blockpool *p);

/* Blocks held by tables now. */
int32_t cellm_blockpool_in_use(const struct cellm_blockpool *p);

/* Makes t cover positions [0, need). On failure t is unchanged: CELLM_ERR_NOMEM when the
 * budget (or t's capacity) cannot hold them, naming the budget, the blocks in use and what
 * was asked; the grow callback's status when the memory behind new blocks cannot be made. */
enum cellm_status cellm_blockpool_reserve(struct cellm_blockpool *p, struct cellm_blocktable *t,
                                          int64_t need, struct cellm_error *err);

/* Gives back the blocks of t that hold no position below from (from = 0: all of them). */
void cellm_blockpool_truncate(struct cellm_blockpool *p, struct cellm_blocktable *t, int64_t from);

#endif
