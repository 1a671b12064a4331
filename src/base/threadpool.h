/*
 * threadpool.h: a fixed set of worker threads that run one parallel job at a time.
 *
 * cellm_pool_run(pool, fn, arg) calls fn(arg, i, n) once for every worker index
 * i in [0, n) (the calling thread is worker 0) and returns when all are done. Work is
 * split by the callee (e.g. rows [i*R/n, (i+1)*R/n)), which keeps the pool free of
 * per-task allocation. Workers spin briefly between jobs, then sleep on a condition
 * variable, because a decode step issues hundreds of small jobs.
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
