/*
 * test_batch.c: a batch of many sequences gives what each sequence gives alone.
 *
 * For several fixtures: four sequences with prompts of different lengths are prefilled,
 * then decoded together (one row per sequence in each cellm_ctx_eval, as the server's
 * continuous batching does) for a number of greedy steps; each is also run alone in its
 * own context. Greedy ids must be identical and logits within the numeric contract's
 * tolerance; every third step asks for the greedy picks only (cellm_ctx_eval_argmax),
 * which must be the same ids. The device comes from CELLM_TEST_DEVICE (cpu, cuda, xla;
 * default cpu), so the GPU scripts run the same test, with the executor options in
 * CELLM_TEST_EXEC_OPTIONS (untested=1 on cuda for the models whose kernels are opt-in).
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

enum { NSEQ = 4, STEPS = 12 };

static enum cellm_device test_device(void)
{
    const char *d = getenv("CELLM_TEST_DEVICE");
    if (d && !strcmp(d, "cuda")) return CELLM_DEVICE_CUDA;
    if (d && !strcmp(d, "xla")) return CELLM_DEVICE_XLA;
    return CELLM_DEVICE_CPU;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

static void prompt_of(int s, int32_t *p, int *n, int vocab)
{
    *n = 3 + 5 * s;
    for (int i = 0; i < *n; i++)
        p[i] = (int32_t)((i * 37 + s * 101 + 7) % vocab);
}

/* One sequence alone: ids[STEPS] and logits[STEPS][vocab]. */
static void run_alone(struct cellm_model *m, int s, int32_t *ids, float *logits)
{
    struct cellm_error err;
    struct cellm_ctx *ctx;
    int vocab = cellm_model_vocab(m), n;
    int32_t p[64];
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int seq = cellm_ctx_seq_new(ctx);
    prompt_of(s, p, &n, vocab);
    const float *l;
    assert_int_equal(cellm_ctx_eval_seq(ctx, seq, p, n, &l, &err), CELLM_OK);
    for (int t = 0; t < STEPS; t++) {
        memcpy(logits + (size_t)t * vocab, l, (size_t)vocab * sizeof(float));
        ids[t] = argmax(l, vocab);
        if (t + 1 < STEPS)
            assert_int_equal(cellm_ctx_eval_seq(ctx, seq, &ids[t], 1, &l, &err), CELLM_OK);
    }
    cellm_ctx_free(ctx);
}

static void check_fixture(const char *rel)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.device = test_device();
    mp.n_threads = 2;
    /* executor options for the device run (tests/gpu: untested=1 on cuda) */
    mp.exec_options = getenv("CELLM_TEST_EXEC_OPTIONS");
    enum cellm_status st = cellm_model_load(dir, &mp, &m, &err);
    /* a family an executor refuses by name (deepseek_v3 on CUDA and XLA) */
    if (st == CELLM_ERR_UNSUPPORTED && mp.device != CELLM_DEVICE_CPU) skip();
    if (st != CELLM_OK) fail_msg("%s: %s", rel, err.msg);
    int vocab = cellm_model_vocab(m);
    int32_t alone_ids[NSEQ][STEPS];
    float *alone = malloc((size_t)NSEQ * STEPS * vocab * sizeof(float));
    assert_non_null(alone);
    for (int s = 0; s < NSEQ; s++)
        run_alone(m, s, alone_ids[s], alone + (size_t)s * STEPS * vocab);

    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = NSEQ;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int seq[NSEQ];
    int32_t next[NSEQ];
    const float *l;
    for (int s = 0; s < NSEQ; s++) {
        int32_t p[64];
        int n;
        seq[s] = cellm_ctx_seq_new(ctx);
        assert_true(seq[s] >= 0);
        prompt_of(s, p, &n, vocab);
        assert_int_equal(cellm_ctx_eval_seq(ctx, seq[s], p, n, &l, &err), CELLM_OK);
        next[s] = argmax(l, vocab);
        assert_int_equal(next[s], alone_ids[s][0]);
    }
    for (int t = 1; t < STEPS; t++) {
        struct cellm_batch_item items[NSEQ];
        for (int s = 0; s < NSEQ; s++)
            items[s] = (struct cellm_batch_item){next[s], seq[s], 1};
        if (t % 3 == 2) {
            /* greedy picks only (on the device where it has them): the same ids; one row
             * that wants nothing keeps the picks in the order of the rows that do */
            int32_t ids[NSEQ];
            items[1].want_logits = 0;
            if (cellm_ctx_eval_argmax(ctx, items, NSEQ, ids, &err) != CELLM_OK)
                fail_msg("%s: batched greedy step %d: %s", rel, t, err.msg);
            for (int s = 0, j = 0; s < NSEQ; s++) {
                if (s == 1) continue;
                next[s] = ids[j++];
                if (next[s] != alone_ids[s][t])
                    fail_msg("%s: sequence %d step %d: id %d picked batched, %d alone", rel, s, t,
                             next[s], alone_ids[s][t]);
            }
            next[1] = alone_ids[1][t];
            continue;
        }
        if (cellm_ctx_eval(ctx, items, NSEQ, &l, &err) != CELLM_OK)
            fail_msg("%s: batched step %d: %s", rel, t, err.msg);
        for (int s = 0; s < NSEQ; s++) {
            const float *got = l + (size_t)s * vocab;
            const float *ref = alone + ((size_t)s * STEPS + t) * vocab;
            double mx = 1, e = 0;
            for (int v = 0; v < vocab; v++) {
                mx = fmax(mx, fabs(ref[v]));
                e = fmax(e, fabs((double)got[v] - ref[v]));
            }
            if (!(e <= 1e-4 * mx))
                fail_msg("%s: sequence %d step %d: logits differ by %g", rel, s, t, e);
            next[s] = argmax(got, vocab);
            if (next[s] != alone_ids[s][t])
                fail_msg("%s: sequence %d step %d: id %d batched, %d alone", rel, s, t, next[s],
                         alone_ids[s][t]);
        }
    }
    /* a freed sequence's slot is reused with an empty cache */
    cellm_ctx_seq_free(ctx, seq[1]);
    assert_int_equal(cellm_ctx_seq_new(ctx), seq[1]);
    assert_int_equal(cellm_ctx_seq_len(ctx, seq[1]), 0);
    cellm_ctx_free(ctx);
    free(alone);
    cellm_model_free(m);
}

#define FIXTURE(fn, path)                                                                          \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        check_fixture(path);                                                                       \
    }

FIXTURE(t_llama_bf16, "llama3-untied/bf16")
FIXTURE(t_llama_q4, "llama3-untied/q4-g64-f16")
FIXTURE(t_llama_q3, "llama3-untied/q3-g64-bf16")
FIXTURE(t_qwen3_moe_q4, "qwen3-moe/q4-g64-bf16-stacked")
FIXTURE(t_gemma2, "gemma2/bf16")
FIXTURE(t_gemma3_q8, "gemma3/q8-g64-bf16")
FIXTURE(t_stablelm_q4, "stablelm2/q4-g64-f16")
FIXTURE(t_phi3_q4, "phi3/q4-g64-f16")
/* sequence state: conv windows (LFM2), Gated DeltaNet recurrent states */
FIXTURE(t_lfm2_q4, "lfm2/mlx-q4-g32-bf16")
FIXTURE(t_qwen3_next, "qwen3-next/bf16")
FIXTURE(t_qwen3_5, "qwen3.5/f32")
FIXTURE(t_qwen3_5_moe_q4, "qwen3.5-moe/mlx-q4-g32-bf16")
FIXTURE(t_deepseek_f32, "deepseek-v3/f32")
FIXTURE(t_deepseek_q4, "deepseek-v3/mlx-q4-g32-bf16")
/* AltUp streams, KV sharing across a sliding ring (Gemma 3n) */
FIXTURE(t_gemma3n_q4, "gemma3n/q4-g32-bf16")

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_llama_bf16),  cmocka_unit_test(t_llama_q4),
        cmocka_unit_test(t_llama_q3),    cmocka_unit_test(t_qwen3_moe_q4),
        cmocka_unit_test(t_gemma2),      cmocka_unit_test(t_gemma3_q8),
        cmocka_unit_test(t_stablelm_q4), cmocka_unit_test(t_phi3_q4),
        cmocka_unit_test(t_lfm2_q4),     cmocka_unit_test(t_qwen3_next),
        cmocka_unit_test(t_qwen3_5),     cmocka_unit_test(t_qwen3_5_moe_q4),
        cmocka_unit_test(t_llama_bf16),   cmocka_unit_test(t_llama_q4),
        cmocka_unit_test(t_llama_q3),     cmocka_unit_test(t_qwen3_moe_q4),
        cmocka_unit_test(t_gemma2),       cmocka_unit_test(t_gemma3_q8),
        cmocka_unit_test(t_stablelm_q4),  cmocka_unit_test(t_phi3_q4),
        cmocka_unit_test(t_deepseek_f32), cmocka_unit_test(t_deepseek_q4),
        cmocka_unit_test(t_gemma3n_q4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
