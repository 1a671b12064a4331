/*
 * test_cuda_kv.c: the CUDA executor's paged KV cache end to end, on a fixture (GPU only:
 * each test skips itself where no CUDA device is present).
 * - A prompt of 45 tokens and 40 greedy steps (positions cross two block boundaries) give
 *   the same ids, and logits within the numeric contract, on the paged cache and on the
 *   contiguous one (kv_paged=0); a second sequence of the same context, after the first is
 *   freed, takes the freed blocks and gives the same logits again.
 * - With a budget of 3 blocks (kv_blocks=3): a second sequence that needs more than is left
 *   is refused, by cellm_ctx_seq_reserve and by an eval alike, with a message naming the
 *   pool and the budget; the first sequence goes on undisturbed; once it is freed the
 *   second gets its blocks; a sequence longer than the whole budget is refused.
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
#include "engine/engine.h"

#define FIXTURE "qwen3/bf16"
enum { PROMPT = 45, STEPS = 40 };

static struct cellm_model *load(const char *opts)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, FIXTURE);
    struct cellm_model_params mp = cellm_model_params_default();
    mp.device = CELLM_DEVICE_CUDA;
    mp.exec_options = opts;
    struct cellm_model *m = NULL;
    struct cellm_error err;
    enum cellm_status st = cellm_model_load(dir, &mp, &m, &err);
    if (st == CELLM_ERR_DEVICE || st == CELLM_ERR_UNSUPPORTED) {
        printf("test_cuda_kv: skipped: %s\n", err.msg);
        return NULL;
    }
    if (st) fail_msg("%s (%s): %s", FIXTURE, opts ? opts : "defaults", err.msg);
    return m;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* PROMPT tokens then STEPS greedy ones on a new sequence of ctx: ids and logits per step. */
static void run(struct cellm_ctx *ctx, int vocab, int32_t *ids, float *logits)
{
    struct cellm_error err;
    int32_t p[PROMPT];
    for (int i = 0; i < PROMPT; i++)
        p[i] = (int32_t)((i * 37 + 11) % vocab);
    int seq = cellm_ctx_seq_new(ctx);
    assert_true(seq >= 0);
    const float *l;
    if (cellm_ctx_eval_seq(ctx, seq, p, PROMPT, &l, &err)) fail_msg("prefill: %s", err.msg);
    for (int t = 0; t < STEPS; t++) {
        memcpy(logits + (size_t)t * vocab, l, (size_t)vocab * sizeof(float));
        ids[t] = argmax(l, vocab);
        if (t + 1 < STEPS && cellm_ctx_eval_seq(ctx, seq, &ids[t], 1, &l, &err))
            fail_msg("decode step %d: %s", t, err.msg);
    }
    cellm_ctx_seq_free(ctx, seq);
}

static void same(const char *what, const int32_t *ids, const float *lg, const int32_t *ref_ids,
                 const float *ref, int vocab)
{
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        if (ids[t] != ref_ids[t])
            fail_msg("%s: step %d picks %d, the reference %d", what, t, ids[t], ref_ids[t]);
        double mx = 1;
        for (int v = 0; v < vocab; v++)
            mx = fmax(mx, fabs(ref[(size_t)t * vocab + v]));
        for (int v = 0; v < vocab; v++) {
            double d =
                fabs((double)lg[(size_t)t * vocab + v] - ref[(size_t)t * vocab + v]) / (1e-4 * mx);
            if (d > worst) worst = d;
        }
    }
    printf("test_cuda_kv: %s: %d ids equal, worst logit %.3f of tolerance\n", what, STEPS, worst);
    assert_true(worst <= 1.0);
}

static void t_same_as_contiguous(void **state)
{
    (void)state;
    struct cellm_model *mc = load("kv_paged=0");
    if (!mc) skip();
    struct cellm_model *mp = load("kv_paged=1");
    assert_non_null(mp);
    int vocab = cellm_model_vocab(mc);
    float *ref = malloc((size_t)STEPS * vocab * sizeof(float)),
          *got = malloc((size_t)STEPS * vocab * sizeof(float));
    int32_t ref_ids[STEPS], ids[STEPS];
    assert_true(ref && got);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(mc, NULL, &ctx, &err), CELLM_OK);
    run(ctx, vocab, ref_ids, ref);
    cellm_ctx_free(ctx);
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = 2;
    assert_int_equal(cellm_ctx_new(mp, &cp, &ctx, &err), CELLM_OK);
    run(ctx, vocab, ids, got);
    same("paged against contiguous", ids, got, ref_ids, ref, vocab);
    run(ctx, vocab, ids, got); /* the freed blocks, taken again */
    same("paged, blocks reused", ids, got, ref_ids, ref, vocab);
    cellm_ctx_free(ctx);
    cellm_model_free(mp);
    cellm_model_free(mc);
    free(ref);
    free(got);
}

static void t_exhausted(void **state)
{
    (void)state;
    struct cellm_model *m = load("kv_paged=1,kv_blocks=3");
    if (!m) skip();
    int vocab = cellm_model_vocab(m);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = 3;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int32_t p[100];
    for (int i = 0; i < 100; i++)
        p[i] = (int32_t)((i * 13 + 5) % vocab);
    const float *l;
    int a = cellm_ctx_seq_new(ctx), b = cellm_ctx_seq_new(ctx);
    assert_int_equal(cellm_ctx_eval_seq(ctx, a, p, 40, &l, &err), CELLM_OK); /* 2 blocks */
    /* b needs 2 blocks, 1 is left */
    memset(&err, 0, sizeof err);
    assert_int_equal(cellm_ctx_seq_reserve(ctx, b, 40, &err), CELLM_ERR_NOMEM);
    printf("test_cuda_kv: refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "exhausted"));
    assert_non_null(strstr(err.msg, "kv_blocks=3"));
    assert_non_null(strstr(err.msg, "2 of the 3 blocks"));
    memset(&err, 0, sizeof err);
    assert_int_not_equal(cellm_ctx_eval_seq(ctx, b, p, 40, &l, &err), CELLM_OK);
    assert_non_null(strstr(err.msg, "exhausted"));
    /* a goes on (position 40 is inside its second block) */
    int32_t t = (int32_t)argmax(l, vocab);
    assert_int_equal(cellm_ctx_eval_seq(ctx, a, &t, 1, &l, &err), CELLM_OK);
    /* a freed: b gets the blocks */
    cellm_ctx_seq_free(ctx, a);
    cellm_ctx_seq_free(ctx, b);
    b = cellm_ctx_seq_new(ctx);
    assert_int_equal(cellm_ctx_eval_seq(ctx, b, p, 40, &l, &err), CELLM_OK);
    cellm_ctx_seq_free(ctx, b);
    /* longer than the whole budget (3 blocks of 32) */
    int c = cellm_ctx_seq_new(ctx);
    memset(&err, 0, sizeof err);
    assert_int_not_equal(cellm_ctx_eval_seq(ctx, c, p, 97, &l, &err), CELLM_OK);
    printf("test_cuda_kv: refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "kv_blocks=3"));
    cellm_ctx_seq_free(ctx, c);
    c = cellm_ctx_seq_new(ctx);
    assert_int_equal(cellm_ctx_eval_seq(ctx, c, p, 96, &l, &err), CELLM_OK);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_same_as_contiguous),
        cmocka_unit_test(t_exhausted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
