/*
 * test_blockpool.c: the block pool behind the CUDA executor's paged KV cache
 * (src/base/blockpool.h), without a device: tables grow block by block from a free list
 * that is made step blocks at a time (the grow callback sees each step once), no block is
 * ever in two tables, blocks given back are taken again without growing, a reservation
 * the budget cannot hold fails with a message naming the budget, the blocks in use and
 * what was asked and leaves everything as it was, a failing grow does too, and a table's
 * own capacity is enforced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "base/blockpool.h"

struct grow_log {
    int calls, fail_at; /* fail the call numbered fail_at (1-based; 0 never) */
    int32_t from[16], to[16];
};

static enum cellm_status grow(void *arg, int32_t from, int32_t to, struct cellm_error *err)
{
    struct grow_log *g = arg;
    if (g->fail_at && g->calls + 1 == g->fail_at)
        return cellm_errf(err, CELLM_ERR_DEVICE, "test: no device memory for blocks %d..%d",
                          (int)from, (int)to - 1);
    g->from[g->calls] = from;
    g->to[g->calls] = to;
    g->calls++;
    return CELLM_OK;
}

/* Every id of every table is below made, and no id is in two tables or also free. */
static void check_disjoint(const struct cellm_blockpool *p, struct cellm_blocktable *const *ts,
                           int nt)
{
    char seen[256] = {0};
    assert_true(p->made <= 256);
    for (int k = 0; k < nt; k++)
        for (int32_t b = 0; b < ts[k]->n; b++) {
            int32_t id = ts[k]->ids[b];
            assert_true(id >= 0 && id < p->made);
            assert_int_equal(seen[id], 0);
            seen[id] = 1;
        }
    for (int32_t f = 0; f < p->n_free; f++) {
        assert_int_equal(seen[p->free[f]], 0);
        seen[p->free[f]] = 1;
    }
    for (int32_t id = 0; id < p->made; id++)
        assert_int_equal(seen[id], 1); /* nothing lost */
}

static void t_grow_and_reuse(void **state)
{
    (void)state;
    struct cellm_blockpool p;
    struct cellm_error err;
    struct grow_log g = {0};
    assert_int_equal(cellm_blockpool_init(&p, 16, 20, 8, 1024, "kv_gb=1", &err), CELLM_OK);
    p.grow = grow;
    p.arg = &g;
    int32_t ia[20], ib[20];
    struct cellm_blocktable a = {ia, 0, 20}, b = {ib, 0, 20};
    struct cellm_blocktable *ts[] = {&a, &b};
    /* 1 position: one block, and the first growth makes 8 */
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 1, &err), CELLM_OK);
    assert_int_equal(a.n, 1);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.from[0], 0);
    assert_int_equal(g.to[0], 8);
    assert_int_equal(ia[0], 0); /* the lowest new id first */
    /* within the block: nothing taken */
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 16, &err), CELLM_OK);
    assert_int_equal(a.n, 1);
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 17, &err), CELLM_OK);
    assert_int_equal(a.n, 2);
    /* b takes 9 blocks: 6 free, then one more growth of 8 */
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 9 * 16, &err), CELLM_OK);
    assert_int_equal(b.n, 9);
    assert_int_equal(g.calls, 2);
    assert_int_equal(g.from[1], 8);
    assert_int_equal(g.to[1], 16);
    assert_int_equal(cellm_blockpool_in_use(&p), 11);
    check_disjoint(&p, ts, 2);
    /* the last growth stops at the limit: 16 -> 20 */
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 9 * 16, &err), CELLM_OK);
    assert_int_equal(g.calls, 3);
    assert_int_equal(g.from[2], 16);
    assert_int_equal(g.to[2], 20);
    assert_int_equal(p.made, 20);
    assert_int_equal(cellm_blockpool_in_use(&p), 18);
    check_disjoint(&p, ts, 2);
    /* a truncation inside block 2 keeps blocks 0..2 of b */
    int32_t kept[3] = {ib[0], ib[1], ib[2]};
    cellm_blockpool_truncate(&p, &b, 2 * 16 + 1);
    assert_int_equal(b.n, 3);
    assert_memory_equal(ib, kept, sizeof kept);
    assert_int_equal(cellm_blockpool_in_use(&p), 12);
    check_disjoint(&p, ts, 2);
    /* cleared and refilled: the same blocks in the same order, no growth */
    int32_t before[9];
    memcpy(before, ia, sizeof before);
    cellm_blockpool_truncate(&p, &a, 0);
    assert_int_equal(a.n, 0);
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 9 * 16, &err), CELLM_OK);
    assert_memory_equal(ia, before, sizeof before);
    assert_int_equal(g.calls, 3);
    check_disjoint(&p, ts, 2);
    cellm_blockpool_free(&p);
}

static void t_exhausted(void **state)
{
    (void)state;
    struct cellm_blockpool p;
    struct cellm_error err;
    assert_int_equal(cellm_blockpool_init(&p, 32, 6, 4, 1 << 20, "kv_gb=2", &err), CELLM_OK);
    int32_t ia[8], ib[8];
    struct cellm_blocktable a = {ia, 0, 8}, b = {ib, 0, 8};
    struct cellm_blocktable *ts[] = {&a, &b};
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 4 * 32, &err), CELLM_OK);
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 32, &err), CELLM_OK);
    /* b asks for 3 more blocks; 1 is left: refused whole, nothing taken */
    memset(&err, 0, sizeof err);
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 4 * 32, &err), CELLM_ERR_NOMEM);
    assert_int_equal(b.n, 1);
    assert_int_equal(cellm_blockpool_in_use(&p), 5);
    assert_non_null(strstr(err.msg, "exhausted"));
    assert_non_null(strstr(err.msg, "kv_gb=2"));           /* the budget */
    assert_non_null(strstr(err.msg, "5 of the 6 blocks")); /* in use */
    assert_non_null(strstr(err.msg, "asked for 128"));     /* what was asked */
    assert_non_null(strstr(err.msg, "3 more blocks"));
    check_disjoint(&p, ts, 2);
    /* the last block still goes to whoever fits */
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 2 * 32, &err), CELLM_OK);
    assert_int_equal(cellm_blockpool_in_use(&p), 6);
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 2 * 32 + 1, &err), CELLM_ERR_NOMEM);
    /* a's blocks given back serve b */
    cellm_blockpool_truncate(&p, &a, 0);
    assert_int_equal(cellm_blockpool_reserve(&p, &b, 6 * 32, &err), CELLM_OK);
    assert_int_equal(b.n, 6);
    check_disjoint(&p, ts, 2);
    /* a table's own capacity */
    cellm_blockpool_truncate(&p, &b, 0);
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 9 * 32, &err), CELLM_ERR_NOMEM);
    assert_non_null(strstr(err.msg, "block table holds 8 blocks"));
    assert_int_equal(a.n, 0);
    cellm_blockpool_free(&p);
}

static void t_grow_fails(void **state)
{
    (void)state;
    struct cellm_blockpool p;
    struct cellm_error err;
    struct grow_log g = {0};
    g.fail_at = 2;
    assert_int_equal(cellm_blockpool_init(&p, 16, 32, 4, 64, NULL, &err), CELLM_OK);
    p.grow = grow;
    p.arg = &g;
    int32_t ia[32];
    struct cellm_blocktable a = {ia, 0, 32};
    struct cellm_blocktable *ts[] = {&a};
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 3 * 16, &err), CELLM_OK);
    /* 6 blocks: 1 free, then the growth fails: the device's status, a unchanged */
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 6 * 16, &err), CELLM_ERR_DEVICE);
    assert_non_null(strstr(err.msg, "no device memory for blocks 4..7"));
    assert_int_equal(a.n, 3);
    assert_int_equal(p.made, 4);
    check_disjoint(&p, ts, 1);
    g.fail_at = 0;
    assert_int_equal(cellm_blockpool_reserve(&p, &a, 6 * 16, &err), CELLM_OK);
    assert_int_equal(a.n, 6);
    check_disjoint(&p, ts, 1);
    cellm_blockpool_free(&p);
}

static void t_init(void **state)
{
    (void)state;
    struct cellm_blockpool p;
    struct cellm_error err;
    assert_int_equal(cellm_blockpool_init(&p, 24, 4, 1, 64, NULL, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "24 positions per block"));
    assert_int_equal(cellm_blockpool_init(&p, 16, 0, 1, 64, NULL, &err), CELLM_ERR_ARG);
    cellm_alloc_fail_after(0);
    assert_int_equal(cellm_blockpool_init(&p, 16, 4, 1, 64, NULL, &err), CELLM_ERR_NOMEM);
    cellm_alloc_fail_after(-1);
    /* a step larger than the limit is the limit */
    assert_int_equal(cellm_blockpool_init(&p, 16, 4, 100, 64, NULL, &err), CELLM_OK);
    assert_int_equal(p.step, 4);
    cellm_blockpool_free(&p);
    cellm_blockpool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_grow_and_reuse),
        cmocka_unit_test(t_exhausted),
        cmocka_unit_test(t_grow_fails),
        cmocka_unit_test(t_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
