/*
 * threadpool.c: the worker pool. A job is published by bumping a generation counter;
 * workers spin on it for a short while and then wait on a condition variable. Completion
 * is an atomic countdown that the caller spins on (jobs are short).
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "alloc.h"
#include "error.h"

struct cellm_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint gen;
    atomic_int pending;
    atomic_int stop;
    cellm_pool_fn fn;
    void *arg;
};

struct worker_arg {
    struct cellm_pool *pool;
    int index;
};

static void *worker_main(void *p)
{
    struct worker_arg *wa = p;
    struct cellm_pool *pool = wa->pool;
    int index = wa->index;
    cellm_free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < 20000) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#endif
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop))
            return NULL;
        seen = g;
        pool->fn(pool->arg, index, pool->n);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

enum cellm_status cellm_pool_new(int n_threads, struct cellm_pool **out, struct cellm_error *err)
{
    *out = NULL;
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    if (n_threads > 256)
        n_threads = 256;
    struct cellm_pool *pool = cellm_calloc(1, sizeof *pool);
    if (!pool)
        return cellm_errf(err, CELLM_ERR_NOMEM, "thread pool: out of memory");
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    pool->threads = cellm_calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) {
        cellm_pool_free(pool);
        return cellm_errf(err, CELLM_ERR_NOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = cellm_malloc(sizeof *wa);
        if (!wa) {
            pool->n = i;
            cellm_pool_free(pool);
            return cellm_errf(err, CELLM_ERR_NOMEM, "thread pool: out of memory");
        }
        wa->pool = pool;
        wa->index = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, wa) != 0) {
            cellm_free(wa);
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
    if (!pool)
        return;
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
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->n - 1);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_release);
    pthread_cond_broadcast(&pool->cv);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->n);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0) {
        if (++spins > 4000) /* workers may be descheduled: give them the core */
            sched_yield();
#if defined(__x86_64__)
        else
            __builtin_ia32_pause();
#endif
    }
}
