/*
 * test_xla_oss.c: gpt-oss on the XLA executor without a PJRT plugin. For each gpt-oss
 * fixture (Hugging Face f32, bf16 and mxfp4 blocks), the emitted prefill module (16 rows
 * from position 0, every row's logits) is run by tests/hlo_interp.h on the plan's stored
 * bytes and the RoPE tables xla.c would upload (YaRN frequencies times the attention
 * factor), and its logits are compared with the CPU executor's on the same tokens. The
 * graph and the CPU reference differ only in the order of their f32 sums (dots, softmax
 * denominators), so the logits agree to a few ulps of the largest one; a missing sink, a
 * wrong router, bias or activation moves them by orders of magnitude more. The modules
 * must also hold the pieces: the sink and expert-bias parameters, one gate_up dot per
 * MoE layer for the interleaved layout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>

#include "base/alloc.h"
#include "cellm.h"
#include "exec/xla/emit.h"
#include "hlo_interp.h"
#include "model/model.h"
#include "xla_harness.h"

#define NT 16

static void variant(const char *var)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gpt-oss/%s", CELLM_FIXTURES, var);
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(dir, &d, &err)) fail_msg("%s: %s", var, err.msg);
    const struct cellm_config *c = &d.cfg;
    assert_true(c->attn_sinks && c->swiglu_clamp && c->router == CELLM_ROUTER_TOPK_SOFTMAX);
    assert_int_equal(cellm_xla_supported(&d, &err), CELLM_OK);
    struct cellm_xla_plan p;
    if (cellm_xla_plan_build(&d, 0, &p, &err)) fail_msg("%s: plan: %s", var, err.msg);
    assert_true(cellm_xla_plan_find(&p, "l0_sinks") >= 0);
    assert_true(cellm_xla_plan_find(&p, "l0_router_b") >= 0);
    assert_true(cellm_xla_plan_find(&p, "l0_e_down_b") >= 0);
    struct cellm_xla_key kp = {NT, 256, 1};
    char *text = NULL;
    size_t len;
    if (cellm_xla_emit(&d, &p, &kp, &text, &len, &err)) fail_msg("%s: emit: %s", var, err.msg);
    if (d.experts == CELLM_EXPERTS_INTERLEAVED) {
        assert_true(cellm_xla_plan_find(&p, "l0_e_gate_up_b") >= 0);
        /* q k v o, two attention dots, router, gate_up, down per layer; the head */
        assert_int_equal(xt_count(text, "stablehlo.dot_general"), c->n_layers * 9 + 1);
    }

    /* the graph, interpreted */
    struct hi h;
    memset(&h, 0, sizeof h);
    xt_bind_weights(&h, text, &p, NULL);
    int32_t tok[NT], pos0 = 0;
    for (int t = 0; t < NT; t++)
        tok[t] = (int32_t)((37 * t + 11) % c->vocab);
    hi_param(&h, text, "tokens", tok);
    hi_param(&h, text, "pos0", &pos0);
    xt_bind_rope(&h, text, &d, &p, pos0, NT);
    xt_bind_caches(&h, text, &d, 256, NULL);
    struct hi_t *r = hi_run(&h, text);
    if (!r) fail_msg("%s: interpreter: %s", var, h.err);
    assert_int_equal(r->n, (int64_t)NT * c->vocab);

    /* the CPU executor on the same tokens */
    struct xt_cpu cpu;
    xt_cpu_open(&cpu, dir);
    const float *ref = xt_cpu_eval(&cpu, tok, NT);
    float *got = malloc((size_t)r->n * sizeof *got); /* the interpreter holds f32 bits */
    assert_non_null(got);
    memcpy(got, r->v, (size_t)r->n * sizeof *got);
    xt_compare(var, got, ref, r->n);
    free(got);
    xt_cpu_close(&cpu);
    hi_free(&h);
    cellm_free(text);
    cellm_xla_plan_free(&p);
    cellm_desc_free(&d);
}

static void f32(void **state)
{
    (void)state;
    variant("f32");
}

static void bf16(void **state)
{
    (void)state;
    variant("bf16");
}

static void blocks(void **state)
{
    (void)state;
    variant("blocks");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f32),
        cmocka_unit_test(bf16),
        cmocka_unit_test(blocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
