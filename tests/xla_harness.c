/*
 * xla_harness.c: the shared harness of the XLA interpreter tests (xla_harness.h).
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

#include "xla_harness.h"

uint8_t *xt_param_bytes(const struct cellm_xla_wparam *w)
{
    uint8_t *b = malloc(w->bytes + 1);
    assert_non_null(b);
    for (int k = 0; k < w->nparts; k++)
        memcpy(b + (size_t)k * w->part_bytes, w->parts[k], w->part_bytes);
    return b;
}

int xt_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

void xt_bind_weights(struct hi *h, const char *text, const struct cellm_xla_plan *p,
                     uint8_t *const *wbytes)
{
    for (int i = 0; i < p->n; i++) {
        uint8_t *bytes = wbytes ? wbytes[i] : xt_param_bytes(&p->w[i]);
        if (!hi_param(h, text, p->w[i].name, bytes))
            fail_msg("weight %s: %s", p->w[i].name, h->err);
        if (!wbytes) free(bytes);
    }
}

void xt_bind_rope(struct hi *h, const char *text, const struct cellm_desc *d,
                  const struct cellm_xla_plan *p, int pos0, int T)
{
    int wide = p->half > p->prop_half ? p->half : p->prop_half, halfs[6];
    float *rope = malloc((size_t)6 * T * wide * sizeof *rope);
    assert_non_null(rope);
    int nt = cellm_xla_rope_inputs(d, p, pos0, T, pos0 + T, rope, halfs);
    assert_int_equal(nt, 2 + 2 * (p->local_rope != 0) + 2 * (p->prop_half != 0));
    const char *names[6] = {"cos_g", "sin_g", "cos_l", "sin_l", "cos_p", "sin_p"};
    if (!p->local_rope) names[2] = "cos_p", names[3] = "sin_p";
    size_t at = 0;
    for (int i = 0; i < nt; i++) {
        if (!hi_param(h, text, names[i], rope + at)) fail_msg("%s: %s", names[i], h->err);
        at += (size_t)T * halfs[i];
    }
    free(rope);
}

void xt_bind_caches(struct hi *h, const char *text, const struct cellm_desc *d, int cap,
                    float *const *bufs)
{
    int nl = 2 * d->cfg.n_layers;
    size_t most = 0;
    for (int i = 0; i < nl; i++) {
        int64_t dims[CELLM_XH_MAX_RANK];
        cellm_xla_cache_shape(d, i, cap, dims);
        size_t n = (size_t)(dims[0] * dims[1] * dims[2]);
        if (n > most) most = n;
    }
    float *zero = bufs ? NULL : calloc(most ? most : 1, sizeof *zero);
    assert_true(bufs || zero);
    for (int i = 0; i < nl; i++) {
        char n[16];
        snprintf(n, sizeof n, "%c_%d", i % 2 ? 'v' : 'k', i / 2);
        if (!hi_param(h, text, n, bufs ? (const void *)bufs[i] : zero))
            fail_msg("%s: %s", n, h->err);
    }
    free(zero);
}

void xt_compare(const char *what, const float *got, const float *ref, int64_t n)
{
    double mx = 0, worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)ref[i]));
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= worst)) worst = e, at = i;
    }
    print_message("%s: worst |xla - cpu| %.3g at %lld (largest logit %.3g)\n", what, worst,
                  (long long)at, mx);
    assert_true(mx > 0.1);
    /* a few hundred f32 roundings of the largest logit's size */
    if (!(worst <= 256 * mx / 16777216.0))
        fail_msg("%s: logit %lld: xla %a, cpu %a (worst %g)", what, (long long)at, (double)got[at],
                 (double)ref[at], worst);
}

void xt_cpu_open(struct xt_cpu *cpu, const char *dir)
{
    struct cellm_error err = {{0}};
    struct cellm_model_params mp = cellm_model_params_default();
    cpu->model = NULL;
    cpu->ctx = NULL;
    if (cellm_model_load(dir, &mp, &cpu->model, &err)) fail_msg("%s: %s", dir, err.msg);
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(cpu->model, &cp, &cpu->ctx, &err)) fail_msg("%s: %s", dir, err.msg);
    cpu->seq = cellm_ctx_seq_new(cpu->ctx);
    assert_true(cpu->seq >= 0);
}

const float *xt_cpu_eval(struct xt_cpu *cpu, const int32_t *tok, int n)
{
    struct cellm_error err = {{0}};
    struct cellm_batch_item *items = malloc((size_t)n * sizeof *items);
    assert_non_null(items);
    for (int t = 0; t < n; t++)
        items[t] = (struct cellm_batch_item){tok[t], cpu->seq, 1};
    const float *ref = NULL;
    enum cellm_status st = cellm_ctx_eval(cpu->ctx, items, n, &ref, &err);
    free(items);
    if (st) fail_msg("cpu: %s", err.msg);
    return ref;
}

void xt_cpu_close(struct xt_cpu *cpu)
{
    cellm_ctx_free(cpu->ctx);
    cellm_model_free(cpu->model);
}
