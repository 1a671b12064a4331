/*
 * test_xla_families.c: the families of 2025-26 on the XLA executor without a PJRT plugin.
 * For every variant of the fixtures of smollm3 (NoPE layers), glm4_moe (grouped sigmoid
 * router, shared experts, first dense layers, partial rotary), ministral3 (YaRN, query
 * scale by position) and llama4 (interleaved RoPE, NoPE layers with the temperature,
 * weightless q/k norm, chunked attention, sigmoid router scaling the experts' input beside
 * a shared expert) and gemma4 (dense: per-layer head sizes, KV sharing, proportional RoPE's
 * own table, the v norm, per-layer embeddings, layer_scalar), gemma4-moe (the router with
 * its own norm and scales, softmax top-k, the experts beside the dense MLP) and gemma3n (AltUp
 * streams, LAuReL, activation sparsity, per-layer inputs, KV sharing), the modules the
 * executor would compile for a 32-row prefill from position 0 (every row's logits) and for the
 * decode step after it (the last row's logits over the caches the prefill returned) are emitted by
 * cellm_xla_emit with the executor's keys and run by tests/hlo_interp.h on the plan's stored bytes
 * and the RoPE tables of cellm_xla_rope_inputs (the function xla.c uploads them from). Their logits
 * are compared with the CPU executor's on the same tokens.
 *
 * 32 rows reach past the pieces' first boundaries in these fixtures: Mistral 3's scale
 * changes at position 16 (original_max_position_embeddings), Llama 4's chunks are 16
 * positions and its temperature steps every 8. The bound is tests/xla_harness.h's: the graph and
 * the CPU differ only in the order of their f32 sums (dots, softmax denominators, the
 * experts' combination), so the logits agree to a few hundred roundings of the largest
 * one; a missing piece (a wrong scale, mask, rotation or router) moves them by far more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <math.h>

#include "base/alloc.h"
#include "cellm.h"
#include "exec/xla/emit.h"
#include "hlo_interp.h"
#include "model/model.h"
#include "xla_harness.h"

#define NT 32   /* prefill rows (a power of two of at least 16: xla.c's bucket) */
#define CAP 256 /* xla.c's smallest cache */

/* One module run: weights, tokens, pos0, last (decode), RoPE tables, caches (NULL: zeros).
 * Returns 1 + 2 * n_layers results into res (owned by h). */
static void run_module(struct hi *h, const struct cellm_desc *d, const struct cellm_xla_plan *p,
                       const char *text, const int32_t *tok, int T, int32_t pos0, int decode,
                       struct hi_t *const *caches, struct hi_t **res)
{
    const struct cellm_config *c = &d->cfg;
    xt_bind_weights(h, text, p, NULL);
    int32_t last = 0;
    assert_true(hi_param(h, text, "tokens", tok));
    assert_true(hi_param(h, text, "pos0", &pos0));
    if (decode) assert_true(hi_param(h, text, "last", &last));
    xt_bind_rope(h, text, d, p, pos0, T);
    float *kv[2 * 256];
    assert_true(c->n_layers <= 256);
    for (int i = 0; caches && i < 2 * c->n_layers; i++) {
        const struct cellm_layer *L = &d->layers[i / 2];
        assert_int_equal(caches[i]->n, (int64_t)CAP * L->n_kv_heads * L->head_dim);
        kv[i] = (float *)(void *)caches[i]->v;
    }
    xt_bind_caches(h, text, d, CAP, caches ? kv : NULL);
    int n = hi_run_all(h, text, res, 1 + 2 * c->n_layers);
    if (n != 1 + 2 * c->n_layers) fail_msg("interpreter: %s", h->err);
}

/* The logits of run r, compared with the CPU's n. */
static void compare(const char *what, const struct hi_t *r, const float *ref, int64_t n)
{
    assert_int_equal(r->n, n);
    float *got = malloc((size_t)n * sizeof *got); /* the interpreter holds f32 bits */
    assert_non_null(got);
    memcpy(got, r->v, (size_t)n * sizeof *got);
    xt_compare(what, got, ref, n);
    free(got);
}

static char *emit(const struct cellm_desc *d, const struct cellm_xla_plan *p, int T, int all)
{
    struct cellm_xla_key k = {T, CAP, all};
    char *text = NULL;
    size_t len;
    struct cellm_error err = {{0}};
    if (cellm_xla_emit(d, p, &k, &text, &len, &err)) fail_msg("emit: %s", err.msg);
    return text;
}

/* The pieces each family's module must hold, beyond its logits. */
static void structure(const char *family, const struct cellm_desc *d,
                      const struct cellm_xla_plan *p, const char *text)
{
    const struct cellm_config *c = &d->cfg;
    int nope = 0;
    for (int l = 0; l < c->n_layers; l++)
        nope += d->layers[l].nope;
    if (!strcmp(family, "smollm3")) assert_true(nope > 0 && nope < c->n_layers);
    if (!strcmp(family, "glm4-moe")) {
        assert_int_equal(c->router, CELLM_ROUTER_SIGMOID_GROUP);
        assert_false(d->layers[0].moe); /* first_k_dense_replace */
        assert_true(d->layers[1].moe);
        assert_true(cellm_xla_plan_find(p, "l1_router_corr") >= 0);
        assert_true(cellm_xla_plan_find(p, "l1_s_gate") >= 0 ||
                    cellm_xla_plan_find(p, "l1_s_gate_q") >= 0);
        assert_true(c->rot_dims < c->head_dim);
    }
    if (!strcmp(family, "ministral3")) {
        assert_true(c->qscale_beta != 0);
        assert_int_equal(xt_count(text, "stablehlo.log "), c->n_layers); /* one scale per layer */
    }
    if (!strcmp(family, "llama4")) {
        assert_true(c->rope_interleaved && c->qk_l2norm && c->attn_temp);
        assert_int_equal(c->router, CELLM_ROUTER_SIGMOID_INPUT);
        assert_true(nope > 0);
        /* the temperature on each NoPE layer's queries */
        assert_int_equal(xt_count(text, "stablehlo.log_plus_one"), nope);
        assert_true(xt_count(text, "stablehlo.divide") > 0);
    }
    if (!strcmp(family, "gemma4")) {
        assert_true(c->gemma4 && c->ple_dim > 0 && c->n_kv_shared > 0);
        assert_true(p->prop_half > p->half && !p->local_rope);
        assert_true(strstr(text, "%cos_p: tensor<") != NULL);
        assert_true(cellm_xla_plan_find(p, "ple_model") >= 0);
        /* a KV-shared layer projects no keys */
        char n[32];
        snprintf(n, sizeof n, "l%d_wk", c->n_layers - 1);
        assert_true(cellm_xla_plan_find(p, n) < 0);
    }
    if (!strcmp(family, "gemma3n")) {
        assert_true(c->gemma3n && c->altup_n > 1 && c->laurel_rank > 0 && c->n_kv_shared > 0);
        assert_true(c->layer_sparsity && c->layer_sparsity[0] > 0);
        assert_true(p->local_rope);
        assert_true(cellm_xla_plan_find(p, "altup_proj0") >= 0 ||
                    cellm_xla_plan_find(p, "altup_proj0_q") >= 0);
        /* each layer's two routers and two GELUs (MLP, per-layer gate), the final soft-cap */
        assert_int_equal(xt_count(text, "stablehlo.tanh"), 4 * c->n_layers + 1);
    }
    if (!strcmp(family, "gemma4-moe")) {
        assert_true(c->gemma4 && c->moe_parallel && c->n_experts_used < c->n_experts);
        for (int l = 0; l < c->n_layers; l++)
            assert_true(d->layers[l].moe);
        /* the router's scales and the block's norms beside the MLP's */
        assert_true(cellm_xla_plan_find(p, "l0_router_scale") >= 0);
        assert_true(cellm_xla_plan_find(p, "l0_expert_scale") >= 0);
        assert_true(cellm_xla_plan_find(p, "l0_post_ffn_norm2") >= 0);
        assert_true(cellm_xla_plan_find(p, "l0_w_gate") >= 0 ||
                    cellm_xla_plan_find(p, "l0_w_gate_q") >= 0);
        assert_true(cellm_xla_plan_find(p, "l0_e_gate") >= 0 ||
                    cellm_xla_plan_find(p, "l0_e_gate_q") >= 0);
    }
}

static void variant(const char *family, const char *var)
{
    char dir[1024], what[256];
    snprintf(dir, sizeof dir, "%s/%s/%s", CELLM_FIXTURES, family, var);
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(dir, &d, &err)) fail_msg("%s/%s: %s", family, var, err.msg);
    const struct cellm_config *c = &d.cfg;
    if (cellm_xla_supported(&d, &err)) fail_msg("%s/%s: %s", family, var, err.msg);
    struct cellm_xla_plan p;
    if (cellm_xla_plan_build(&d, 0, &p, &err)) fail_msg("%s/%s: plan: %s", family, var, err.msg);
    char *pre = emit(&d, &p, NT, 1), *dec = emit(&d, &p, 1, 0);
    structure(family, &d, &p, pre);

    int32_t tok[NT + 1];
    for (int t = 0; t <= NT; t++)
        tok[t] = (int32_t)((37 * t + 11) % c->vocab);
    struct hi h1, h2;
    memset(&h1, 0, sizeof h1);
    memset(&h2, 0, sizeof h2);
    struct hi_t **r1 = calloc(2 * (size_t)c->n_layers + 1, sizeof *r1);
    struct hi_t **r2 = calloc(2 * (size_t)c->n_layers + 1, sizeof *r2);
    assert_true(r1 && r2);
    run_module(&h1, &d, &p, pre, tok, NT, 0, 0, NULL, r1);
    run_module(&h2, &d, &p, dec, tok + NT, 1, NT, 1, r1 + 1, r2);

    /* the CPU executor on the same tokens */
    struct xt_cpu cpu;
    xt_cpu_open(&cpu, dir);
    const float *ref = xt_cpu_eval(&cpu, tok, NT);
    snprintf(what, sizeof what, "%s/%s prefill", family, var);
    compare(what, r1[0], ref, (int64_t)NT * c->vocab);
    ref = xt_cpu_eval(&cpu, tok + NT, 1);
    snprintf(what, sizeof what, "%s/%s decode at %d", family, var, NT);
    compare(what, r2[0], ref, c->vocab);

    xt_cpu_close(&cpu);
    free(r1);
    free(r2);
    hi_free(&h1);
    hi_free(&h2);
    cellm_free(pre);
    cellm_free(dec);
    cellm_xla_plan_free(&p);
    cellm_desc_free(&d);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every variant directory of tests/fixtures/<family>, in name order. */
static void family(const char *fam)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", CELLM_FIXTURES, fam);
    DIR *dp = opendir(dir);
    if (!dp) fail_msg("%s: no fixtures", dir);
    char *vars[64];
    int n = 0;
    for (struct dirent *de; (de = readdir(dp)) && n < 64;)
        if (de->d_name[0] != '.') vars[n++] = strdup(de->d_name);
    closedir(dp);
    assert_true(n >= 3); /* f32, bf16 and a quantized layout at least */
    qsort(vars, (size_t)n, sizeof *vars, by_name);
    for (int i = 0; i < n; i++) {
        variant(fam, vars[i]);
        free(vars[i]);
    }
}

static void smollm3(void **state)
{
    (void)state;
    family("smollm3");
}

static void glm4_moe(void **state)
{
    (void)state;
    family("glm4-moe");
}

static void ministral3(void **state)
{
    (void)state;
    family("ministral3");
}

static void llama4(void **state)
{
    (void)state;
    family("llama4");
}

static void gemma4(void **state)
{
    (void)state;
    family("gemma4");
}

/* Gemma 3n: AltUp streams, LAuReL, activation sparsity, per-layer inputs, KV sharing. */
static void gemma3n(void **state)
{
    (void)state;
    family("gemma3n");
}

/* Gemma 4's MoE block (the 26B-A4B shape): experts beside the dense MLP in every layer. */
static void gemma4_moe(void **state)
{
    (void)state;
    family("gemma4-moe");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(smollm3), cmocka_unit_test(glm4_moe), cmocka_unit_test(ministral3),
        cmocka_unit_test(llama4),  cmocka_unit_test(gemma4),   cmocka_unit_test(gemma4_moe),
        cmocka_unit_test(gemma3n),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
