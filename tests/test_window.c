/*
 * test_window.c: long sequences on sliding-window layers. Sliding layers keep a ring of
 * window + chunk positions and batches run in chunks, so a sequence far longer than both
 * must give the same logits whether it is fed in one call, token by token, in odd-sized
 * pieces, or with full key histories (executor option kv_ring=0).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellm.h"

enum { LEN = 480 };

/* Teacher-forced logits of LEN tokens fed `piece` at a time (0 = all at once). */
static float *run(const char *dir, int piece, int ring)
{
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.exec_options = ring ? "kv_ring=1" : "kv_ring=0";
    if (cellm_model_load(dir, &mp, &m, &err)) fail_msg("%s: %s", dir, err.msg);
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.n_threads = 2;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int vocab = cellm_model_vocab(m), seq = cellm_ctx_seq_new(ctx);
    float *out = malloc((size_t)LEN * vocab * sizeof(float));
    struct cellm_batch_item *items = malloc(LEN * sizeof *items);
    assert_non_null(out);
    assert_non_null(items);
    int step = piece ? piece : LEN;
    for (int b = 0; b < LEN; b += step) {
        int n = LEN - b < step ? LEN - b : step;
        for (int i = 0; i < n; i++)
            items[i] = (struct cellm_batch_item){(int32_t)(((b + i) * 131 + 17) % vocab), seq, 1};
        const float *l;
        if (cellm_ctx_eval(ctx, items, n, &l, &err)) fail_msg("%s: %s", dir, err.msg);
        memcpy(out + (size_t)b * vocab, l, (size_t)n * vocab * sizeof(float));
    }
    free(items);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    return out;
}

static void same(const float *a, const float *b, int vocab, const char *what)
{
    for (int p = 0; p < LEN; p++) {
        double mx = 1, e = 0;
        for (int v = 0; v < vocab; v++) {
            mx = fmax(mx, fabs(a[(size_t)p * vocab + v]));
            e = fmax(e, fabs((double)a[(size_t)p * vocab + v] - b[(size_t)p * vocab + v]));
        }
        if (!(e <= 1e-5 * mx)) fail_msg("%s: position %d differs by %g", what, p, e);
    }
}

static void check(const char *rel)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    struct cellm_error err;
    struct cellm_model *m;
    assert_int_equal(cellm_model_load(dir, NULL, &m, &err), CELLM_OK);
    int vocab = cellm_model_vocab(m);
    cellm_model_free(m);
    float *full = run(dir, 0, 0);
    float *ring_all = run(dir, 0, 1), *ring_one = run(dir, 1, 1), *ring_odd = run(dir, 37, 1);
    same(full, ring_all, vocab, "ring, one call");
    same(full, ring_one, vocab, "ring, token by token");
    same(full, ring_odd, vocab, "ring, pieces of 37");
    free(full);
    free(ring_all);
    free(ring_one);
    free(ring_odd);
}

static void t_gemma2(void **s)
{
    (void)s;
    check("gemma2/bf16"); /* window 8 on even layers, soft-caps */
}

static void t_gemma3(void **s)
{
    (void)s;
    check("gemma3/q4-g64-bf16"); /* window 8, pattern 2, local RoPE base */
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(t_gemma2), cmocka_unit_test(t_gemma3)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
