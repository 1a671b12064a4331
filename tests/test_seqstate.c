/*
 * test_seqstate.c: per-sequence state beyond the KV cache (docs/forward/sequence-state.md)
 * on the hybrid fixtures (LFM2's conv windows, Gated DeltaNet's conv windows and recurrent
 * states):
 * - a prompt evaluated in pieces (1 row, 7 rows, 64 rows, and one eval of 300 rows, which
 *   the CPU executor itself runs as chunks of 256) gives every position's logits as one
 *   pass does: the state after a piece feeds the next;
 * - truncating a sequence to a position inside its history is refused by name (a state
 *   cannot be rewound), truncating to 0 resets it: the same prompt then gives bitwise the
 *   same logits as in a fresh context;
 * - a freed slot is resumed only whole (its history is the beginning of the new prompt),
 *   and then continues exactly; a partial common prefix starts from nothing;
 * - the prefix cache stays off for these models, and asking for one changes nothing.
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
#include "exec/xla/emit.h"
#include "model/hybrid.h"
#include "model/model.h"

enum { LEN = 300 };

static void prompt(int vocab, int32_t *p, int n, int salt)
{
    for (int i = 0; i < n; i++)
        p[i] = (int32_t)((i * 131 + 17 + salt * (i > 40 ? 7 : 0)) % vocab);
}

/* Feeds p[from..n) to seq in pieces of `piece`, every position's logits into out[pos]. */
static void feed(struct cellm_ctx *ctx, int seq, const int32_t *p, int from, int n, int piece,
                 float *out, int vocab)
{
    struct cellm_batch_item items[LEN];
    struct cellm_error err;
    for (int b = from; b < n; b += piece) {
        int m = n - b < piece ? n - b : piece;
        for (int i = 0; i < m; i++)
            items[i] = (struct cellm_batch_item){p[b + i], seq, 1};
        const float *l;
        if (cellm_ctx_eval(ctx, items, m, &l, &err)) fail_msg("eval at %d: %s", b, err.msg);
        if (out) memcpy(out + (size_t)b * vocab, l, (size_t)m * vocab * sizeof(float));
    }
}

/* Positions [from, n) of a and b within the numeric contract's tolerance. */
static void same(const char *what, const float *a, const float *b, int from, int n, int vocab)
{
    for (int p = from; p < n; p++) {
        double mx = 1, e = 0;
        for (int v = 0; v < vocab; v++) {
            double r = a[(size_t)p * vocab + v], g = b[(size_t)p * vocab + v];
            mx = fmax(mx, fabs(r));
            e = fmax(e, fabs(g - r));
        }
        if (!(e <= 1e-4 * mx)) fail_msg("%s: position %d differs by %g", what, p, e);
    }
}

static void check(const char *rel)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 2;
    if (cellm_model_load(dir, &mp, &m, &err)) fail_msg("%s: %s", rel, err.msg);
    assert_non_null(cellm_model_info(m)->state);
    const int vocab = cellm_model_vocab(m);
    int32_t p[LEN], q[LEN];
    prompt(vocab, p, LEN, 0);
    prompt(vocab, q, LEN, 1); /* shares 41 tokens with p */
    size_t sz = (size_t)LEN * vocab * sizeof(float);
    float *one = malloc(sz), *got = malloc(sz);
    assert_non_null(one);
    assert_non_null(got);

    /* one pass, then pieces */
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int seq = cellm_ctx_seq_new(ctx);
    feed(ctx, seq, p, 0, LEN, LEN, one, vocab);
    const int pieces[] = {1, 7, 64};
    for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
        assert_int_equal(cellm_ctx_seq_truncate(ctx, seq, 0, &err), CELLM_OK);
        feed(ctx, seq, p, 0, LEN, pieces[k], got, vocab);
        char what[128];
        snprintf(what, sizeof what, "%s: pieces of %d against one pass", rel, pieces[k]);
        same(what, one, got, 0, LEN, vocab);
    }

    /* cut back inside the history: refused, naming why; the sequence is unchanged */
    enum cellm_status st = cellm_ctx_seq_truncate(ctx, seq, LEN / 2, &err);
    assert_int_equal(st, CELLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "cannot be rewound"));
    assert_int_equal(cellm_ctx_seq_len(ctx, seq), LEN);
    /* to 0: a fresh state, bitwise what the first pass gave */
    assert_int_equal(cellm_ctx_seq_truncate(ctx, seq, 0, &err), CELLM_OK);
    feed(ctx, seq, p, 0, LEN, LEN, got, vocab);
    assert_memory_equal(one, got, sz);
    cellm_ctx_free(ctx);

    /* slot reuse: a freed sequence resumes only whole */
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = 2;
    cp.reuse_slots = 1;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int kept = -1;
    seq = cellm_ctx_seq_new_for(ctx, p, LEN, &kept);
    feed(ctx, seq, p, 0, 100, 100, NULL, vocab);
    cellm_ctx_seq_free(ctx, seq);
    int s2 = cellm_ctx_seq_new_for(ctx, p, LEN, &kept);
    assert_int_equal(s2, seq);
    assert_int_equal(kept, 100);
    feed(ctx, s2, p, kept, LEN, 50, got, vocab);
    same("slot resumed whole", one, got, kept, LEN, vocab);
    cellm_ctx_seq_free(ctx, s2);
    s2 = cellm_ctx_seq_new_for(ctx, q, LEN, &kept); /* shares 41 of the 300 kept */
    assert_int_equal(kept, 0);
    cellm_ctx_seq_free(ctx, s2);
    cellm_ctx_free(ctx);

    /* a prefix cache of a model with state keeps only what a snapshot makes resumable
     * (test_prefix_cache checks attaching from snapshots); without one nothing is stored,
     * and results are unchanged */
    struct cellm_ctx_params pc = cellm_ctx_params_default();
    pc.cache_bytes = (size_t)1 << 26;
    assert_int_equal(cellm_ctx_new(m, &pc, &ctx, &err), CELLM_OK);
    struct cellm_cache_stats cs;
    cellm_ctx_cache_stats(ctx, &cs);
    assert_int_equal(cs.block, 32);
    assert_int_equal(cs.state, 1);
    seq = cellm_ctx_seq_new(ctx);
    int len = -1;
    assert_int_equal(cellm_ctx_seq_attach(ctx, seq, p, LEN, &len, &err), CELLM_OK);
    assert_int_equal(len, 0);
    feed(ctx, seq, p, 0, LEN, LEN, got, vocab);
    assert_int_equal(cellm_ctx_seq_store(ctx, seq, &err), CELLM_OK);
    cellm_ctx_cache_stats(ctx, &cs);
    assert_int_equal(cs.blocks, 0);
    assert_memory_equal(one, got, sz);
    cellm_ctx_free(ctx);

    free(one);
    free(got);
    cellm_model_free(m);
}

#define FIXTURE(fn, path)                                                                          \
    static void fn(void **state)                                                                   \
    {                                                                                              \
        (void)state;                                                                               \
        check(path);                                                                               \
    }

FIXTURE(t_lfm2, "lfm2/f32")
FIXTURE(t_qwen3_next, "qwen3-next/f32")
FIXTURE(t_qwen3_5, "qwen3.5/bf16")
FIXTURE(t_qwen3_5_moe, "qwen3.5-moe/mlx-q4-g32-bf16")

/* The XLA executor takes these models (checked on the description, so that no PJRT plugin
 * is needed here; tests/test_xla_state.c runs their graphs against this executor). */
static void t_xla_accepts(void **state)
{
    (void)state;
    const char *rels[] = {"lfm2/f32", "qwen3.5/f32", "qwen3-next/f32"};
    const char *what[] = {"LFM2", "Gated DeltaNet", "Gated DeltaNet"};
    for (int i = 0; i < 3; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rels[i]);
        struct cellm_desc d;
        struct cellm_error err;
        if (cellm_desc_load(dir, &d, &err)) fail_msg("%s: %s", rels[i], err.msg);
        assert_non_null(cellm_config_state_pieces(&d.cfg));
        assert_non_null(strstr(cellm_config_state_pieces(&d.cfg), what[i]));
        if (cellm_xla_supported(&d, &err)) fail_msg("%s: %s", rels[i], err.msg);
        cellm_desc_free(&d);
    }
}

/* The one continuity check of every executor (cellm_state_row_check): a row continues the
 * step's previous row of its sequence, or else the state's held length; the message names
 * the sequence, the position, the first state layer and what the state holds. */
static void t_row_check(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, "lfm2/f32");
    struct cellm_desc d;
    struct cellm_error err;
    if (cellm_desc_load(dir, &d, &err)) fail_msg("lfm2: %s", err.msg);
    const struct cellm_exec_row rows[] = {
        {7, 0, 5, 0, 9}, {7, 1, 0, 0, 1}, {7, 0, 6, 0, 9}, {7, 0, 8, 1, 9}};
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 0, 5, &err), CELLM_OK);
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 1, 0, &err), CELLM_OK);
    /* an earlier row of the sequence decides, not the held length */
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 2, 99, &err), CELLM_OK);
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 3, 5, &err), CELLM_ERR_ARG);
    char want[128];
    snprintf(want, sizeof want,
             "sequence 0: a row at position 8, but the conv/recurrent state of layer %d holds "
             "positions [0, 7)",
             cellm_config_first_state_layer(&d.cfg));
    assert_non_null(strstr(err.msg, want));
    /* a first row that is not where the state stands: rewound, or skipping */
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 0, 6, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "cannot be rewound or skip positions"));
    assert_int_equal(cellm_state_row_check(&d.cfg, rows, 1, 3, &err), CELLM_ERR_ARG);
    cellm_desc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_lfm2),
        cmocka_unit_test(t_qwen3_next),
        cmocka_unit_test(t_qwen3_5),
        cmocka_unit_test(t_qwen3_5_moe),
        cmocka_unit_test(t_xla_accepts),
        cmocka_unit_test(t_row_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
