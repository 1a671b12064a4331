/*
 * test_threadpool.c: every part of every job runs exactly once, whatever the number of
 * threads (more threads than cores included, so workers are often descheduled), and a
 * job's results are complete when cellm_pool_run returns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/threadpool.h"

struct job {
    int calls[256];
    long sum[256];
    int n_seen;
};

static void part(void *arg, int i, int n)
{
    struct job *j = arg;
    long b, e, s = 0;
    cellm_split(100000, i, n, &b, &e);
    for (long k = b; k < e; k++)
        s += k;
    j->calls[i]++;
    j->sum[i] = s;
    j->n_seen = n;
}

static void run_many(int threads)
{
    struct cellm_pool *pool;
    struct cellm_error err;
    assert_int_equal(cellm_pool_new(threads, &pool, &err), CELLM_OK);
    assert_int_equal(cellm_pool_size(pool), threads);
    for (int rep = 0; rep < 2000; rep++) {
        struct job j;
        memset(&j, 0, sizeof j);
        cellm_pool_run(pool, part, &j);
        long total = 0;
        for (int i = 0; i < threads; i++) {
            assert_int_equal(j.calls[i], 1);
            total += j.sum[i];
        }
        assert_int_equal(j.n_seen, threads);
        assert_true(total == 100000L * 99999L / 2);
    }
    cellm_pool_free(pool);
}

static void test_one(void **s)
{
    (void)s;
    run_many(1);
}

static void test_two(void **s)
{
    (void)s;
    run_many(2);
}

static void test_oversubscribed(void **s)
{
    (void)s;
    run_many(9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one),
        cmocka_unit_test(test_two),
        cmocka_unit_test(test_oversubscribed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
