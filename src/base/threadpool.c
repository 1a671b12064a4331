/*
 * threadpool.c: the worker pool.
 *
 * A job is n parts (n = pool size). Parts are claimed, not assigned: the caller and the
 * workers take the next unclaimed part with a compare-and-swap on one 64-bit word that
 * holds the job's generation and the next part index, so a worker that wakes late (the
 * machine is busy, it was descheduled) finds nothing to claim instead of holding the
 * caller up, and can never claim a part of a newer job. The caller returns once every
 * part is done. Idle workers spin briefly, then sleep on a condition variable.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"

struct cellm_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic uint64_t claim; /* generation << 32 | next part */
    atomic_int done;        /* parts finished in the current job */
    atomic_int stop;
    cellm_pool_fn fn;
    void *arg;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
}

/* Runs parts of generation gen until none is left; returns how many it ran. */
static int run_parts(struct cellm_pool *pool, uint32_t gen)
{
    int ran = 0;
    for (;;) {
        uint64_t c = atomic_load_explicit(&pool->claim, memory_order_acquire);
        uint32_t part = (uint32_t)c;
        if ((uint32_t)(c >> 32) != gen || part >= (uint32_t)pool->n) return ran;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        pool->fn(pool->arg, (int)part, pool->n);
        atomic_fetch_add_explicit(&pool->done, 1, memory_order_release);
        ran++;
    }
}

static void *worker_main(void *p)
{
    struct cellm_pool *pool = p;
    uint32_t seen = 0;
    for (;;) {
        int spins = 0;
        uint32_t gen;
        while ((gen = (uint32_t)(atomic_load_explicit(&pool->claim, memory_order_acquire) >> 32)) ==
                   seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < 20000) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while ((uint32_t)(atomic_load(&pool->claim) >> 32) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = gen;
        run_parts(pool, gen);
    }
}

enum cellm_status cellm_pool_new(int n_threads, struct cellm_pool **out, struct cellm_error *err)
{
    *out = NULL;
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256) n_threads = 256;
    struct cellm_pool *pool = cellm_calloc(1, sizeof *pool);
    if (!pool) return cellm_errf(err, CELLM_ERR_NOMEM, "thread pool: out of memory");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = cellm_calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) {
        pool->n = 1;
        cellm_pool_free(pool);
        return cellm_errf(err, CELLM_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        if (pthread_create(&pool->threads[i], NULL, worker_main, pool) != 0) {
            pool->n = i;
            cellm_pool_free(pool);
            return cellm_errf(err, CELLM_ERR_IO, "thread pool: cannot start thread %d", i);
        }
    }
    *out = pool;
    return CELLM_OK;
}

void cellm_pool_free(struct cellm_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->stop, 1);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    if (pool->threads)
        for (int i = 1; i < pool->n; i++)
            pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->cv);
    cellm_free(pool->threads);
    cellm_free(pool);
}

int cellm_pool_size(const struct cellm_pool *pool)
{
    return pool ? pool->n : 1;
}

void cellm_pool_run(struct cellm_pool *pool, cellm_pool_fn fn, void *arg)
{
    if (!pool || pool->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    /* no part of the previous job is running: the caller waited for all of them */
    pool->fn = fn;
    pool->arg = arg;
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    uint32_t gen = (uint32_t)(atomic_load(&pool->claim) >> 32) + 1;
    pthread_mutex_lock(&pool->mu);
    atomic_store_explicit(&pool->claim, (uint64_t)gen << 32, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    run_parts(pool, gen);
    int spins = 0;
    while (atomic_load_explicit(&pool->done, memory_order_acquire) < pool->n) {
        if (++spins > 2000)
            sched_yield(); /* a worker holding a part was descheduled */
        else
            cpu_relax();
    }
}
