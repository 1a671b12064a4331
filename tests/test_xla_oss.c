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

#define NT 16

static uint8_t *param_bytes(const struct cellm_xla_wparam *w)
{
    uint8_t *b = malloc(w->bytes + 1);
    assert_non_null(b);
    for (int k = 0; k < w->nparts; k++)
        memcpy(b + (size_t)k * w->part_bytes, w->parts[k], w->part_bytes);
    return b;
}

/* cos and sin [NT][half] of layer L's rotation at positions 0..NT-1, as xla.c makes them. */
static void tables(const struct cellm_layer *L, int half, float *cs, float *sn)
{
    const float *inv = cellm_layer_inv_freq(L, NT);
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < half; i++) {
            float angle = inv[i] * (float)t;
            cs[t * half + i] = cosf(angle) * L->rope_attn;
            sn[t * half + i] = sinf(angle) * L->rope_attn;
        }
}

static const struct cellm_layer *first_layer(const struct cellm_desc *d, int sliding)
{
    for (int l = 0; l < d->cfg.n_layers; l++)
        if ((d->layers[l].attn == CELLM_ATTN_SLIDING) == sliding) return &d->layers[l];
    return &d->layers[0];
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

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
        assert_int_equal(count(text, "stablehlo.dot_general"), c->n_layers * 9 + 1);
    }

    /* the graph, interpreted */
    struct hi h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < p.n; i++) {
        uint8_t *bytes = param_bytes(&p.w[i]);
        hi_param(&h, text, p.w[i].name, bytes);
        free(bytes);
    }
    int32_t tok[NT], pos0 = 0;
    for (int t = 0; t < NT; t++)
        tok[t] = (int32_t)((37 * t + 11) % c->vocab);
    int half = p.half;
    float *cg = malloc((size_t)4 * NT * half * sizeof(float));
    assert_non_null(cg);
    float *sg = cg + NT * half, *cl = sg + NT * half, *sl = cl + NT * half;
    tables(first_layer(&d, 0), half, cg, sg);
    tables(first_layer(&d, 1), half, cl, sl);
    size_t kv = (size_t)256 * c->n_kv_heads * c->head_dim;
    float *zero = calloc(kv, sizeof *zero);
    assert_non_null(zero);
    hi_param(&h, text, "tokens", tok);
    hi_param(&h, text, "pos0", &pos0);
    hi_param(&h, text, "cos_g", cg);
    hi_param(&h, text, "sin_g", sg);
    if (p.local_rope) {
        hi_param(&h, text, "cos_l", cl);
        hi_param(&h, text, "sin_l", sl);
    }
    for (int l = 0; l < c->n_layers; l++) {
        char n[16];
        snprintf(n, sizeof n, "k_%d", l);
        hi_param(&h, text, n, zero);
        snprintf(n, sizeof n, "v_%d", l);
        hi_param(&h, text, n, zero);
    }
    struct hi_t *r = hi_run(&h, text);
    if (!r) fail_msg("%s: interpreter: %s", var, h.err);
    assert_int_equal(r->n, (int64_t)NT * c->vocab);

    /* the CPU executor on the same tokens */
    struct cellm_model_params mp = cellm_model_params_default();
    struct cellm_model *model = NULL;
    struct cellm_ctx *ctx = NULL;
    if (cellm_model_load(dir, &mp, &model, &err)) fail_msg("%s: %s", var, err.msg);
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(model, &cp, &ctx, &err)) fail_msg("%s: %s", var, err.msg);
    int seq = cellm_ctx_seq_new(ctx);
    assert_true(seq >= 0);
    struct cellm_batch_item items[NT];
    for (int t = 0; t < NT; t++)
        items[t] = (struct cellm_batch_item){tok[t], seq, 1};
    const float *ref = NULL;
    if (cellm_ctx_eval(ctx, items, NT, &ref, &err)) fail_msg("%s: %s", var, err.msg);
    double mx = 0, worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < r->n; i++)
        mx = fmax(mx, fabs((double)ref[i]));
    for (int64_t i = 0; i < r->n; i++) {
        float got;
        memcpy(&got, &r->v[i], sizeof got);
        double e = fabs((double)got - ref[i]);
        if (!(e <= worst)) worst = e, at = i;
    }
    print_message("%s: worst |xla - cpu| %.3g at %lld (largest logit %.3g)\n", var, worst,
                  (long long)at, mx);
    assert_true(mx > 0.1);
    /* a few hundred f32 roundings of the largest logit's size */
    if (!(worst <= 256 * mx / 16777216.0))
        fail_msg("%s: logit %lld: xla %a, cpu %a", var, (long long)at,
                 (double)((const float *)(const void *)r->v)[at], (double)ref[at]);
    cellm_ctx_free(ctx);
    cellm_model_free(model);
    hi_free(&h);
    free(cg);
    free(zero);
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
