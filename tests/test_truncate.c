/*
 * test_truncate.c: cellm_ctx_seq_truncate keeps the first n positions of a sequence.
 *
 * A sequence evaluates a prompt and some more tokens, is cut back to n, and continues with
 * other tokens; its logits must equal (within the numeric contract's tolerance, as batch
 * and alone differ only in summation order) those of a fresh sequence that evaluated the
 * same ids. On a model with sliding-window layers a cut into the middle is refused
 * (CELLM_ERR_UNSUPPORTED) and a cut to 0 behaves as a fresh sequence.
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

enum { N_FIRST = 14, KEEP = 6, N_AFTER = 5 };

static float *eval_copy(struct cellm_ctx *ctx, int seq, const int32_t *ids, int n, int vocab)
{
    struct cellm_error err;
    const float *l;
    assert_int_equal(cellm_ctx_eval_seq(ctx, seq, ids, n, &l, &err), CELLM_OK);
    float *out = malloc((size_t)vocab * sizeof *out);
    assert_non_null(out);
    memcpy(out, l, (size_t)vocab * sizeof *out);
    return out;
}

static void close_enough(const float *got, const float *ref, int vocab)
{
    double mx = 1, e = 0;
    for (int v = 0; v < vocab; v++) {
        mx = fmax(mx, fabs(ref[v]));
        e = fmax(e, fabs((double)got[v] - ref[v]));
    }
    assert_true(e <= 1e-4 * mx);
}

static void check(const char *rel, int windowed)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 2;
    assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_OK);
    int vocab = cellm_model_vocab(m);
    int32_t first[N_FIRST], want[KEEP + N_AFTER];
    for (int i = 0; i < N_FIRST; i++)
        first[i] = (int32_t)((i * 37 + 11) % vocab);
    memcpy(want, first, KEEP * sizeof *want);
    for (int i = 0; i < N_AFTER; i++)
        want[KEEP + i] = (int32_t)((i * 53 + 5) % vocab);
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int seq = cellm_ctx_seq_new(ctx);
    free(eval_copy(ctx, seq, first, N_FIRST, vocab));
    /* out of range, and a no-op at the length */
    assert_int_equal(cellm_ctx_seq_truncate(ctx, seq, N_FIRST + 1, &err), CELLM_ERR_RANGE);
    assert_int_equal(cellm_ctx_seq_truncate(ctx, seq, N_FIRST, &err), CELLM_OK);
    assert_int_equal(cellm_ctx_seq_len(ctx, seq), N_FIRST);
    int keep = KEEP;
    enum cellm_status st = cellm_ctx_seq_truncate(ctx, seq, KEEP, &err);
    if (windowed) {
        assert_int_equal(st, CELLM_ERR_UNSUPPORTED);
        assert_int_equal(cellm_ctx_seq_len(ctx, seq), N_FIRST);
        assert_int_equal(cellm_ctx_seq_truncate(ctx, seq, 0, &err), CELLM_OK);
        keep = 0;
    } else {
        assert_int_equal(st, CELLM_OK);
    }
    assert_int_equal(cellm_ctx_seq_len(ctx, seq), keep);
    float *got = eval_copy(ctx, seq, want + keep, KEEP + N_AFTER - keep, vocab);
    struct cellm_ctx *fresh;
    assert_int_equal(cellm_ctx_new(m, NULL, &fresh, &err), CELLM_OK);
    float *ref = eval_copy(fresh, cellm_ctx_seq_new(fresh), want, KEEP + N_AFTER, vocab);
    close_enough(got, ref, vocab);
    free(got);
    free(ref);
    cellm_ctx_free(fresh);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

static void t_llama(void **state)
{
    (void)state;
    check("llama3-untied/bf16", 0);
}

static void t_llama_q4(void **state)
{
    (void)state;
    check("llama3-untied/q4-g64-f16", 0);
}

static void t_gemma2_window(void **state)
{
    (void)state;
    check("gemma2/bf16", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_llama),
        cmocka_unit_test(t_llama_q4),
        cmocka_unit_test(t_gemma2_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
