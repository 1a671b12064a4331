/*
 * test_xla_families.c: the families of 2025-26 on the XLA executor without a PJRT plugin.
 * For every variant of the fixtures of smollm3 (NoPE layers), glm4_moe (grouped sigmoid
 * router, shared experts, first dense layers, partial rotary), ministral3 (YaRN, query
 * scale by position) and llama4 (interleaved RoPE, NoPE layers with the temperature,
 * weightless q/k norm, chunked attention, sigmoid router scaling the experts' input beside
 * a shared expert) and gemma4 (dense: per-layer head sizes, KV sharing, proportional RoPE's
 * own table, the v norm, per-layer embeddings, layer_scalar), the modules the executor would
 * compile for a 32-row prefill from position 0 (every row's logits) and for the decode step after
 * it (the last row's logits over the caches the prefill returned) are emitted by cellm_xla_emit
 * with the executor's keys and run by tests/hlo_interp.h on the plan's stored bytes and the RoPE
 * tables of cellm_xla_rope_inputs (the function xla.c uploads them from). Their logits are compared
 * with the CPU executor's on the same tokens.
 *
 * 32 rows reach past the pieces' first boundaries in these fixtures: Mistral 3's scale
 * changes at position 16 (original_max_position_embeddings), Llama 4's chunks are 16
 * positions and its temperature steps every 8. The bound is test_xla_oss's: the graph and
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

#define NT 32   /* prefill rows (a power of two of at least 16: xla.c's bucket) */
#define CAP 256 /* xla.c's smallest cache */

static uint8_t *param_bytes(const struct cellm_xla_wparam *w)
{
    uint8_t *b = malloc(w->bytes + 1);
    assert_non_null(b);
    for (int k = 0; k < w->nparts; k++)
        memcpy(b + (size_t)k * w->part_bytes, w->parts[k], w->part_bytes);
    return b;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Worst |xla - cpu| over n logits within the bound, else a failure naming the logit. */
static void compare(const char *what, const struct hi_t *r, const float *ref, int64_t n)
{
    assert_int_equal(r->n, n);
    double mx = 0, worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        float got;
        memcpy(&got, &r->v[i], sizeof got);
        double e = fabs((double)got - ref[i]);
        if (!(e <= worst)) worst = e, at = i;
    }
    print_message("%s: worst |xla - cpu| %.3g at %lld (largest logit %.3g)\n", what, worst,
                  (long long)at, mx);
    assert_true(mx > 0.1);
    if (!(worst <= 256 * mx / 16777216.0)) {
        float got;
        memcpy(&got, &r->v[at], sizeof got);
        fail_msg("%s: logit %lld: xla %a, cpu %a (worst %g)", what, (long long)at, (double)got,
                 (double)ref[at], worst);
    }
}

/* One module run: weights, tokens, pos0, last (decode), RoPE tables, caches (NULL: zeros).
 * Returns 1 + 2 * n_layers results into res (owned by h). */
static void run_module(struct hi *h, const struct cellm_desc *d, const struct cellm_xla_plan *p,
                       const char *text, const int32_t *tok, int T, int32_t pos0, int decode,
                       struct hi_t *const *caches, struct hi_t **res)
{
    const struct cellm_config *c = &d->cfg;
    for (int i = 0; i < p->n; i++) {
        uint8_t *bytes = param_bytes(&p->w[i]);
        assert_true(hi_param(h, text, p->w[i].name, bytes));
        free(bytes);
    }
    int32_t last = 0;
    assert_true(hi_param(h, text, "tokens", tok));
    assert_true(hi_param(h, text, "pos0", &pos0));
    if (decode) assert_true(hi_param(h, text, "last", &last));
    int wide = p->half > p->prop_half ? p->half : p->prop_half, halfs[6];
    float *rope = malloc((size_t)6 * T * wide * sizeof *rope);
    assert_non_null(rope);
    int nt = cellm_xla_rope_inputs(d, p, pos0, T, pos0 + T, rope, halfs);
    assert_int_equal(nt, 2 + 2 * (p->local_rope != 0) + 2 * (p->prop_half != 0));
    const char *names[6] = {"cos_g", "sin_g", "cos_l", "sin_l", "cos_p", "sin_p"};
    if (!p->local_rope) names[2] = "cos_p", names[3] = "sin_p";
    size_t at = 0;
    for (int i = 0; i < nt; i++) {
        assert_true(hi_param(h, text, names[i], rope + at));
        at += (size_t)T * halfs[i];
    }
    free(rope);
    size_t kvmax = 0;
    for (int l = 0; l < c->n_layers; l++)
        if ((size_t)d->layers[l].n_kv_heads * d->layers[l].head_dim > kvmax)
            kvmax = (size_t)d->layers[l].n_kv_heads * d->layers[l].head_dim;
    float *zero = calloc((size_t)CAP * kvmax, sizeof *zero);
    assert_non_null(zero);
    for (int i = 0; i < 2 * c->n_layers; i++) {
        char n[16];
        const struct cellm_layer *L = &d->layers[i / 2];
        size_t kv = (size_t)CAP * L->n_kv_heads * L->head_dim;
        snprintf(n, sizeof n, "%c_%d", i % 2 ? 'v' : 'k', i / 2);
        if (caches) assert_int_equal(caches[i]->n, (int64_t)kv);
        assert_true(hi_param(h, text, n, caches ? (const void *)caches[i]->v : zero));
    }
    free(zero);
    int n = hi_run_all(h, text, res, 1 + 2 * c->n_layers);
    if (n != 1 + 2 * c->n_layers) fail_msg("interpreter: %s", h->err);
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
        assert_int_equal(count(text, "stablehlo.log "), c->n_layers); /* one scale per layer */
    }
    if (!strcmp(family, "llama4")) {
        assert_true(c->rope_interleaved && c->qk_l2norm && c->attn_temp);
        assert_int_equal(c->router, CELLM_ROUTER_SIGMOID_INPUT);
        assert_true(nope > 0);
        /* the temperature on each NoPE layer's queries */
        assert_int_equal(count(text, "stablehlo.log_plus_one"), nope);
        assert_true(count(text, "stablehlo.divide") > 0);
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
    snprintf(what, sizeof what, "%s/%s prefill", family, var);
    compare(what, r1[0], ref, (int64_t)NT * c->vocab);
    items[0] = (struct cellm_batch_item){tok[NT], seq, 1};
    if (cellm_ctx_eval(ctx, items, 1, &ref, &err)) fail_msg("%s: %s", var, err.msg);
    snprintf(what, sizeof what, "%s/%s decode at %d", family, var, NT);
    compare(what, r2[0], ref, c->vocab);

    cellm_ctx_free(ctx);
    cellm_model_free(model);
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

/* Gemma 4's MoE block (the 26B-A4B shape) is not in the graph: refused by name at load. */
static void gemma4_moe_refused(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/gemma4-moe/bf16", CELLM_FIXTURES);
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(dir, &d, &err)) fail_msg("%s", err.msg);
    assert_true(d.cfg.moe_parallel);
    assert_int_equal(cellm_xla_supported(&d, &err), CELLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "MoE block"));
    assert_non_null(strstr(err.msg, "--device cpu"));
    cellm_desc_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(smollm3), cmocka_unit_test(glm4_moe), cmocka_unit_test(ministral3),
        cmocka_unit_test(llama4),  cmocka_unit_test(gemma4),   cmocka_unit_test(gemma4_moe_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
