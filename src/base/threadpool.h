/*
 * threadpool.h: a fixed set of worker threads that run one parallel job at a time.
 *
 * cellm_pool_run(pool, fn, arg) calls fn(arg, i, n) once for every part i in [0, n),
 * n = pool size, and returns when all are done. Work is split by the callee (e.g. rows
 * [i*R/n, (i+1)*R/n)); per-part scratch may be indexed by i, since each part runs on one
 * thread at a time. Which thread runs a part is not fixed: the caller runs parts too and
 * takes over parts that busy workers have not claimed, so a descheduled worker costs
 * little. Workers spin briefly between jobs, then sleep, because a decode step issues
 * hundreds of small jobs.
 */
#ifndef CELLM_BASE_THREADPOOL_H
#define CELLM_BASE_THREADPOOL_H

#include "cellm.h"

struct cellm_pool;

typedef void (*cellm_pool_fn)(void *arg, int i, int n);

/* n_threads <= 0: one per online CPU. */
enum cellm_status cellm_pool_new(int n_threads, struct cellm_pool **out, struct cellm_error *err);
void cellm_pool_free(struct cellm_pool *pool);
int cellm_pool_size(const struct cellm_pool *pool);
void cellm_pool_run(struct cellm_pool *pool, cellm_pool_fn fn, void *arg);

/* Splits [0, total) into n nearly equal parts; part i is [*b, *e). */
static inline void cellm_split(long total, int i, int n, long *b, long *e)
{
    *b = total * i / n;
    *e = total * (i + 1) / n;
}

#endif
