/*
 * blockpool.c: the block pool of blockpool.h. The free ids are a stack: the block given
 * back last is taken first (its memory is the most likely to be warm in a cache), and a
 * table returns its blocks last to first, so a sequence that is cleared and refilled gets
 * the same blocks in the same order.
 */
#include "base/blockpool.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"

enum cellm_status cellm_blockpool_init(struct cellm_blockpool *p, int block, int32_t limit,
                                       int32_t step, size_t block_bytes, const char *budget,
                                       struct cellm_error *err)
{
    memset(p, 0, sizeof *p);
    if (block < 1 || (block & (block - 1)) || limit < 1 || step < 1)
        return cellm_errf(err, CELLM_ERR_ARG,
                          "block pool: %d positions per block, %ld blocks, growth of %ld: expected "
                          "a power of two and at least one block",
                          block, (long)limit, (long)step);
    p->free = cellm_malloc((size_t)limit * sizeof *p->free);
    if (!p->free) return cellm_errf(err, CELLM_ERR_NOMEM, "block pool: out of memory");
    p->block = block;
    p->limit = limit;
    p->step = step < limit ? step : limit;
    p->block_bytes = block_bytes;
    snprintf(p->budget, sizeof p->budget, "%s", budget ? budget : "the budget");
    return CELLM_OK;
}

void cellm_blockpool_free(struct cellm_blockpool *p)
{
    if (!p) return;
    cellm_free(p->free);
    p->free = NULL;
    p->n_free = p->made = 0;
}

int32_t cellm_blockpool_in_use(const struct cellm_blockpool *p)
{
    return p->made - p->n_free;
}

enum cellm_status cellm_blockpool_reserve(struct cellm_blockpool *p, struct cellm_blocktable *t,
                                          int64_t need, struct cellm_error *err)
{
    int64_t want = (need + p->block - 1) / p->block;
    if (want <= t->n) return CELLM_OK;
    const double gib = 1024.0 * 1024.0 * 1024.0;
    if (want > t->max)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "KV cache: a sequence asked for %lld positions, but its block table "
                          "holds %ld blocks of %d (%lld positions; %s allows %ld blocks)",
                          (long long)need, (long)t->max, p->block, (long long)t->max * p->block,
                          p->budget, (long)p->limit);
    int64_t more = want - t->n;
    if (more > (int64_t)p->n_free + (p->limit - p->made))
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "KV cache pool exhausted: a sequence holding %lld positions asked for "
                          "%lld (%lld more blocks of %d positions), but %ld of the %ld blocks "
                          "(%.2f GiB, %s) are in use and %ld are free; raise the budget "
                          "(--kv-gb) or serve fewer or shorter sequences at once",
                          (long long)t->n * p->block, (long long)need, (long long)more, p->block,
                          (long)cellm_blockpool_in_use(p), (long)p->limit,
                          (double)p->limit * (double)p->block_bytes / gib, p->budget,
                          (long)(p->n_free + (p->limit - p->made)));
    while (p->n_free < more) {
        int32_t to = p->limit - p->made < p->step ? p->limit : p->made + p->step;
        if (p->grow) CELLM_TRY(p->grow(p->arg, p->made, to, err));
        /* pushed last to first, so the lowest new id is taken first */
        for (int32_t id = to - 1; id >= p->made; id--)
            p->free[p->n_free++] = id;
        p->made = to;
    }
    while (t->n < want)
        t->ids[t->n++] = p->free[--p->n_free];
    return CELLM_OK;
}

void cellm_blockpool_truncate(struct cellm_blockpool *p, struct cellm_blocktable *t, int64_t from)
{
    int64_t keep = from <= 0 ? 0 : (from + p->block - 1) / p->block;
    while (t->n > keep)
        p->free[p->n_free++] = t->ids[--t->n];
}
