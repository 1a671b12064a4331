/*
 * test_info.c: the byte count `cellm bench` turns into "GB/s of weights". One decode step
 * of one stream reads every weight but an untied embedding's (one row of it), and of the
 * routed experts only n_experts_used of n_experts. The expected figures are computed here
 * from the BF16 fixtures' shapes, not from the engine's own sums.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "cellm.h"

static const struct cellm_model_info *load(const char *rel, struct cellm_model **m)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, rel);
    struct cellm_error err;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 1;
    if (cellm_model_load(dir, &mp, m, &err)) fail_msg("%s: %s", rel, err.msg);
    return cellm_model_info(*m);
}

/* qwen3-moe/bf16: untied, every layer routed, 8 experts of which 2 per token. */
static void moe_counts_the_active_experts(void **state)
{
    (void)state;
    struct cellm_model *m;
    const struct cellm_model_info *in = load("qwen3-moe/bf16", &m);
    assert_int_equal(in->n_experts, 8);
    assert_int_equal(in->n_experts_used, 2);
    assert_int_equal(in->n_moe_layers, in->n_layers);
    uint64_t embed = (uint64_t)in->vocab * (uint64_t)in->dim * 2;
    uint64_t experts = (uint64_t)in->n_layers * (uint64_t)in->n_experts * 3 *
                       (uint64_t)in->moe_ffn_dim * (uint64_t)in->dim * 2;
    uint64_t idle = experts / 8 * 6;
    assert_true(in->n_bytes > embed + experts);
    assert_int_equal(in->step_bytes, in->n_bytes - embed - idle);
    cellm_model_free(m);
}

/* gpt-oss/bf16: experts stacked with gate/up rows interleaved; the same rule. */
static void stacked_experts_count_too(void **state)
{
    (void)state;
    struct cellm_model *m;
    const struct cellm_model_info *in = load("gpt-oss/bf16", &m);
    assert_true(in->n_experts > in->n_experts_used);
    uint64_t embed = (uint64_t)in->vocab * (uint64_t)in->dim * 2;
    uint64_t experts = (uint64_t)in->n_layers * (uint64_t)in->n_experts * 3 *
                       (uint64_t)in->moe_ffn_dim * (uint64_t)in->dim * 2;
    uint64_t idle =
        experts / (uint64_t)in->n_experts * (uint64_t)(in->n_experts - in->n_experts_used);
    assert_int_equal(in->step_bytes, in->n_bytes - embed - idle);
    cellm_model_free(m);
}

/* qwen3/bf16 (dense): everything but the embedding when untied, everything when tied. */
static void dense_reads_everything_but_the_embedding(void **state)
{
    (void)state;
    struct cellm_model *m;
    const struct cellm_model_info *in = load("qwen3/bf16", &m);
    assert_int_equal(in->n_experts, 0);
    uint64_t embed = (uint64_t)in->vocab * (uint64_t)in->dim * 2;
    assert_true(in->step_bytes == in->n_bytes || in->step_bytes == in->n_bytes - embed);
    cellm_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(moe_counts_the_active_experts),
        cmocka_unit_test(stacked_experts_count_too),
        cmocka_unit_test(dense_reads_everything_but_the_embedding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
