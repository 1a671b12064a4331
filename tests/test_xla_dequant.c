/*
 * test_xla_dequant.c: the XLA executor's in-graph dequantization (src/exec/xla/dequant.c)
 * of mxfp4, mxfp8, nvfp4, FP8 blocks, GPTQ and AWQ, run without a PJRT plugin.
 *
 * For weights built by fmt_util.h (random codes, plus the special codes: E2M1 -0, E4M3
 * subnormals, -0 and NaN, E8M0 2^-127, NaN and overflow to Inf), row views at unaligned
 * offsets (fused q/k/v, gate/up), edge blocks, desc_act g_idx and stacked experts, the
 * plan uploads the stored bytes and the emitted graph is run by tests/hlo_interp.h; every
 * element must equal cellm_weight_row's bit for bit. So must the embedding-row path.
 * Then whole one-layer models in each format (written by `test_formats_load --write` into
 * $CELLM_XLA_FORMATS_DIR) must plan every projection packed, in its stored types, and emit
 * prefill and decode modules; with dequant=load they become f32 parameters instead, and
 * the interpreted prefill module must give the same logits both ways, bit for bit.
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
#include <unistd.h>

#include "base/alloc.h"
#include "exec/xla/dequant.h"
#include "exec/xla/emit.h"
#include "exec/xla/emit_state.h"
#include "fmt_util.h"
#include "hlo_interp.h"
#include "model/model.h"
#include "st_util.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The stored bytes of plan parameter i, concatenated as the executor uploads them. */
static uint8_t *param_bytes(const struct cellm_xla_wparam *w)
{
    uint8_t *b = malloc(w->bytes + 1);
    for (int k = 0; k < w->nparts; k++)
        memcpy(b + (size_t)k * w->part_bytes, w->parts[k], w->part_bytes);
    return b;
}

/* Plans ws[0..ne) (ne 0: one matrix), emits the dequantization (or, with ids, the rows
 * ids[nid] of a plain matrix), interprets it and compares with cellm_weight_row. */
static void check(const struct cellm_weight *ws, int ne, const int32_t *ids, int nid)
{
    const struct cellm_weight *w = &ws[0];
    struct cellm_xla_plan p;
    memset(&p, 0, sizeof p);
    struct cellm_error err = {{0}};
    if (cellm_xla_plan_packed(&p, "w", ws, ne, &err)) fail_msg("plan: %s", err.msg);
    for (int i = 0; i < p.n; i++) /* stored types only: nothing widened on the host */
        assert_true(p.w[i].ty != XH_F32 || w->sdtype == CELLM_DT_F32);
    struct cellm_xh b;
    cellm_xh_init(&b);
    struct cellm_xh_val pv[8], idv;
    assert_true(p.n <= 8);
    for (int i = 0; i < p.n; i++)
        pv[i] = cellm_xh_param(&b, p.w[i].name, p.w[i].ty, p.w[i].rank, p.w[i].d, -1);
    struct cellm_xh_val out;
    if (ids) {
        idv = cellm_xh_param(&b, "ids", XH_I32, 1, (const int64_t[]){nid}, -1);
        out = cellm_xla_dequant_rows(&b, &p, pv, "w", w, idv);
    } else {
        out = cellm_xla_dequant_packed(&b, &p, pv, "w", w);
    }
    cellm_xh_result(&b, &out);
    char *text = NULL;
    size_t len;
    if (cellm_xh_finish(&b, "t", &text, &len, &err)) fail_msg("emit: %s", err.msg);
    cellm_xh_free(&b);
    /* experts are dequantized as one stack, except with g_idx (a gather per expert) */
    if (ne && !ids)
        assert_int_equal(strstr(text, "stablehlo.concatenate") != NULL, w->g_idx != NULL);

    struct hi h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < p.n; i++) {
        uint8_t *bytes = param_bytes(&p.w[i]);
        hi_param(&h, text, p.w[i].name, bytes);
        free(bytes);
    }
    if (ids) hi_param(&h, text, "ids", ids);
    struct hi_t *r = hi_run(&h, text);
    if (!r) fail_msg("interpreter: %s", h.err);
    assert_int_equal(r->ty, XH_F32);
    int n = ne ? ne : 1, rows = ids ? nid : (int)w->rows;
    assert_int_equal(r->n, (int64_t)n * (ids ? 1 : 1) * rows * w->cols);
    float *row = malloc((size_t)w->cols * sizeof *row);
    for (int e = 0; e < n; e++)
        for (int k = 0; k < rows; k++) {
            int64_t src = ids ? ids[k] : k;
            cellm_weight_row(&ws[e], src, row);
            const uint32_t *got = r->v + ((int64_t)e * rows + k) * w->cols;
            for (int64_t i = 0; i < w->cols; i++)
                if (got[i] != cellm_f32_bits(row[i]))
                    fail_msg("%s%s expert %d row %lld col %lld: graph %a (0x%08x), cpu %a (0x%08x)",
                             cellm_wfmt_name(w->fmt), ids ? " rows" : "", e, (long long)src,
                             (long long)i, (double)cellm_bits_f32(got[i]), got[i], (double)row[i],
                             cellm_f32_bits(row[i]));
        }
    free(row);
    hi_free(&h);
    cellm_free(text);
    cellm_xla_plan_free(&p);
}

static void mx_formats(void **state)
{
    (void)state;
    static const enum cellm_wfmt fm[3] = {CELLM_W_MXFP4, CELLM_W_MXFP8, CELLM_W_NVFP4};
    static const int32_t ids[5] = {3, 0, 11, 3, 7};
    for (int k = 0; k < 3; k++) {
        struct fmt_w f;
        fmt_make_mx(&f, fm[k], 12, 96);
        /* the special codes, in row 0 (scales per group g) and row 2 (codes): E8M0 2^-127
         * (g 0: subnormal products), NaN (g 1), 2^127 (g 2: times 6 or 448 is Inf); E4M3
         * subnormal, -0 and NaN scales (nvfp4) and codes (mxfp8); E2M1 -0 */
        if (fm[k] == CELLM_W_NVFP4) {
            f.scales[0] = 0x01, f.scales[1] = 0x87, f.scales[2] = 0x7f, f.scales[3] = 0x80;
        } else {
            f.scales[0] = 0, f.scales[1] = 255, f.scales[2] = 254;
        }
        if (fm[k] == CELLM_W_MXFP8) {
            static const uint8_t sp[8] = {0x7f, 0xff, 0x80, 0x00, 0x01, 0x07, 0x87, 0x7e};
            memcpy(f.codes + f.w.row_bytes * 2, sp, 8);
            f.codes[3] = 0x07;  /* 2^-9 * 7/8 * 2^-127: a float32 subnormal */
            f.codes[70] = 0x7e; /* 448 * 2^127: Inf */
        } else {
            f.codes[f.w.row_bytes * 2] = 0x87; /* -0 and 6 */
            f.codes[3] = 0x11;                 /* 0.5 * 2^-127 */
            f.codes[40] = 0x77;                /* 6 * 2^127: Inf (mxfp4) */
        }
        float r0[96];
        cellm_weight_row(&f.w, 0, r0);
        if (fm[k] != CELLM_W_NVFP4) { /* the cases above are there */
            assert_true(r0[3 * (fm[k] == CELLM_W_MXFP8 ? 1 : 2)] != 0);
            assert_true(fabsf(r0[3 * (fm[k] == CELLM_W_MXFP8 ? 1 : 2)]) < 0x1p-126f);
            assert_true(isnan(r0[40]));
            assert_true(isinf(r0[fm[k] == CELLM_W_MXFP8 ? 70 : 80]));
        }
        check(&f.w, 0, NULL, 0);
        check(&f.w, 0, ids, 5);
        /* experts: three views of 4 rows of the stacked tensor */
        struct cellm_weight ex[3];
        for (int e = 0; e < 3; e++)
            ex[e] = cellm_weight_rows(&f.w, 4 * e, 4);
        check(ex, 3, NULL, 0);
        fmt_free(&f);
    }
}

static void fp8_blocks(void **state)
{
    (void)state;
    static const int32_t ids[4] = {39, 0, 17, 16};
    for (int dt = 0; dt < 2; dt++) {
        struct fmt_w f;
        /* 40 x 72 in 16 x 32 blocks: the last block row and column are partial */
        fmt_make_fp8(&f, 40, 72, 16, 32, dt ? CELLM_DT_BF16 : CELLM_DT_F32);
        f.codes[5] = 0x7f, f.codes[6] = 0x80, f.codes[7] = 0x03;
        check(&f.w, 0, NULL, 0);
        check(&f.w, 0, ids, 4);
        /* views starting inside a block (fused q/k/v) */
        struct cellm_weight v1 = cellm_weight_rows(&f.w, 5, 20),
                            v2 = cellm_weight_rows(&f.w, 24, 16);
        check(&v1, 0, NULL, 0);
        check(&v2, 0, NULL, 0);
        static const int32_t vid[3] = {19, 0, 10};
        check(&v1, 0, vid, 3);
        /* experts one tensor each (also views at the same offset) */
        struct fmt_w g;
        fmt_make_fp8(&g, 40, 72, 16, 32, dt ? CELLM_DT_BF16 : CELLM_DT_F32);
        struct cellm_weight ex[2] = {cellm_weight_rows(&f.w, 8, 24),
                                     cellm_weight_rows(&g.w, 8, 24)};
        check(ex, 2, NULL, 0);
        fmt_free(&g);
        fmt_free(&f);
    }
}

static void gptq_awq(void **state)
{
    (void)state;
    static const struct {
        int awq, bits, group, gidx, zero_one;
    } v[] = {
        {0, 4, 32, 0, 1}, {0, 4, 32, 1, 1}, {0, 8, 64, 0, 1}, {0, 4, 0, 0, 0},
        {0, 8, 32, 1, 0}, {1, 4, 32, 0, 0}, {1, 4, 64, 0, 0},
    };
    static const int32_t ids[3] = {5, 31, 0};
    for (size_t k = 0; k < sizeof v / sizeof *v; k++) {
        struct fmt_w f, g;
        fmt_make_gptq(&f, v[k].awq, v[k].bits, 32, 128, v[k].group, v[k].gidx, v[k].zero_one);
        check(&f.w, 0, NULL, 0);
        check(&f.w, 0, ids, 3);
        /* views: aligned to the packing and not (zeros and AWQ codes are packed along rows) */
        struct cellm_weight a = cellm_weight_rows(&f.w, 8, 16), b = cellm_weight_rows(&f.w, 4, 12),
                            c = cellm_weight_rows(&f.w, 13, 19);
        check(&a, 0, NULL, 0);
        check(&b, 0, NULL, 0);
        check(&c, 0, NULL, 0);
        /* experts one tensor each */
        fmt_make_gptq(&g, v[k].awq, v[k].bits, 32, 128, v[k].group, v[k].gidx, v[k].zero_one);
        struct cellm_weight ex[2] = {cellm_weight_rows(&f.w, 4, 12),
                                     cellm_weight_rows(&g.w, 4, 12)};
        check(ex, 2, NULL, 0);
        fmt_free(&g);
        fmt_free(&f);
    }
}

/* Experts the executor cannot stack (different groups) are refused by name. */
static void experts_unlike(void **state)
{
    (void)state;
    struct fmt_w f, g;
    fmt_make_gptq(&f, 0, 4, 32, 128, 32, 0, 1);
    fmt_make_gptq(&g, 0, 4, 32, 128, 64, 0, 1);
    struct cellm_weight ex[2] = {f.w, g.w};
    struct cellm_xla_plan p;
    memset(&p, 0, sizeof p);
    struct cellm_error err = {{0}};
    assert_int_equal(cellm_xla_plan_packed(&p, "w", ex, 2, &err), CELLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "test.qweight"));
    assert_non_null(strstr(err.msg, "expert 1"));
    cellm_xla_plan_free(&p);
    fmt_free(&f);
    fmt_free(&g);
}

/* ---- whole models ------------------------------------------------------------------- */

/* Runs a prefill module (16 rows from position 0, empty caches) on fixed inputs; returns
 * its logits [16][vocab] (malloc'd). */
static float *run_prefill(const struct cellm_desc *d, const struct cellm_xla_plan *p,
                          const char *text)
{
    const struct cellm_config *c = &d->cfg;
    struct hi h;
    memset(&h, 0, sizeof h);
    for (int i = 0; i < p->n; i++) {
        uint8_t *bytes = param_bytes(&p->w[i]);
        hi_param(&h, text, p->w[i].name, bytes);
        free(bytes);
    }
    int32_t tok[16], pos0 = 0;
    for (int t = 0; t < 16; t++)
        tok[t] = (int32_t)((7 * t + 3) % c->vocab);
    int half = p->half > p->prop_half ? p->half : p->prop_half; /* Gemma 4's cos_p is wider */
    float *tab = malloc((size_t)16 * half * sizeof *tab);
    for (int t = 0; t < 16; t++)
        for (int i = 0; i < half; i++)
            tab[t * half + i] = cosf(0.1f * (float)(t * (i + 1)));
    size_t kv = 0; /* the widest layer's cache (Gemma 4's full layers have their own) */
    for (int l = 0; l < c->n_layers; l++)
        if ((size_t)256 * d->layers[l].n_kv_heads * d->layers[l].head_dim > kv)
            kv = (size_t)256 * d->layers[l].n_kv_heads * d->layers[l].head_dim;
    int ns = cellm_xla_state_count(d); /* state tensors (emit_state.h), zero at the start */
    for (int i = 0; i < ns; i++) {
        int64_t sd[CELLM_XH_MAX_RANK], nf = 1;
        for (int k = cellm_xla_state_shape(d, i, sd) - 1; k >= 0; k--)
            nf *= sd[k];
        if ((size_t)nf > kv) kv = (size_t)nf;
    }
    float *zero = calloc(kv, sizeof *zero);
    hi_param(&h, text, "tokens", tok);
    hi_param(&h, text, "pos0", &pos0);
    hi_param(&h, text, "cos_g", tab);
    hi_param(&h, text, "sin_g", tab);
    if (p->local_rope) {
        hi_param(&h, text, "cos_l", tab);
        hi_param(&h, text, "sin_l", tab);
    }
    if (p->prop_half) {
        hi_param(&h, text, "cos_p", tab);
        hi_param(&h, text, "sin_p", tab);
    }
    for (int l = 0; l < c->n_layers; l++) {
        char n[16];
        snprintf(n, sizeof n, "k_%d", l);
        hi_param(&h, text, n, zero);
        snprintf(n, sizeof n, "v_%d", l);
        hi_param(&h, text, n, zero);
    }
    int32_t nreal = 16; /* every row is real */
    if (ns) hi_param(&h, text, "nreal", &nreal);
    for (int i = 0; i < ns; i++) {
        char n[16];
        snprintf(n, sizeof n, "cs_%d", i);
        hi_param(&h, text, n, zero);
    }
    struct hi_t *r = hi_run(&h, text);
    if (!r) fail_msg("interpreter: %s", h.err);
    assert_int_equal(r->n, 16 * (int64_t)c->vocab);
    float *out = malloc((size_t)r->n * sizeof *out);
    memcpy(out, r->v, (size_t)r->n * 4);
    hi_free(&h);
    free(tab);
    free(zero);
    return out;
}

/* Whether the plan uploads any weight packed (affine or the formats of dequant.h). */
static int any_packed(const struct cellm_xla_plan *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->w[i].ty == XH_U8 || p->w[i].ty == XH_U32) return 1;
    return 0;
}

/* The whole forward pass with weights dequantized in the graph and at load: the same ops
 * on the same values, so the same logits bit for bit (and real numbers). Returns 0 when
 * the model has no packed weights (nothing to compare). */
static int graph_vs_load(const char *label, const struct cellm_desc *d)
{
    struct cellm_error err = {{0}};
    float *logits[2];
    for (int load = 0; load < 2; load++) {
        struct cellm_xla_plan p;
        if (cellm_xla_plan_build(d, load, &p, &err)) fail_msg("%s: plan: %s", label, err.msg);
        if (!load && !any_packed(&p)) {
            cellm_xla_plan_free(&p);
            return 0;
        }
        if (load) assert_false(any_packed(&p));
        struct cellm_xla_key kp = {16, 256, 1};
        char *pre = NULL;
        size_t len;
        if (cellm_xla_emit(d, &p, &kp, &pre, &len, &err)) fail_msg("%s: %s", label, err.msg);
        logits[load] = run_prefill(d, &p, pre);
        cellm_free(pre);
        cellm_xla_plan_free(&p);
    }
    int64_t n = 16 * (int64_t)d->cfg.vocab;
    double mx = 0;
    for (int64_t i = 0; i < n; i++) {
        if (cellm_f32_bits(logits[0][i]) != cellm_f32_bits(logits[1][i]))
            fail_msg("%s: logit %lld: graph %a, load %a", label, (long long)i, (double)logits[0][i],
                     (double)logits[1][i]);
        if (!isfinite(logits[0][i]))
            fail_msg("%s: logit %lld is %a", label, (long long)i, (double)logits[0][i]);
        mx = fmax(mx, fabs((double)logits[0][i]));
    }
    assert_true(mx > 0);
    free(logits[0]);
    free(logits[1]);
    return 1;
}

static void model(const char *name, enum cellm_wfmt fmt)
{
    const char *dir = getenv("CELLM_XLA_FORMATS_DIR");
    if (!dir) skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(path, &d, &err)) fail_msg("%s: %s", name, err.msg);
    assert_int_equal(d.layers[0].wq.fmt, fmt);
    for (int load = 0; load < 2; load++) {
        struct cellm_xla_plan p;
        if (cellm_xla_plan_build(&d, load, &p, &err)) fail_msg("%s: plan: %s", name, err.msg);
        static const char *const mats[7] = {"l0_wq",     "l0_wk",   "l0_wv",    "l0_wo",
                                            "l0_w_gate", "l0_w_up", "l0_w_down"};
        for (int m = 0; m < 7; m++) {
            char n[48];
            snprintf(n, sizeof n, "%s_q", mats[m]);
            int packed = cellm_xla_plan_find(&p, n), plain = cellm_xla_plan_find(&p, mats[m]);
            if (load) { /* dequant=load: one f32 parameter of the reference values */
                assert_int_equal(packed, -1);
                assert_true(plain >= 0);
                assert_int_equal(p.w[plain].ty, XH_F32);
            } else {
                assert_int_equal(plain, -1);
                assert_true(packed >= 0);
                assert_int_equal(p.w[packed].ty,
                                 fmt == CELLM_W_GPTQ || fmt == CELLM_W_AWQ ? XH_U32 : XH_U8);
            }
        }
        struct cellm_xla_key kd = {1, 256, 0};
        char *dec = NULL;
        size_t len;
        if (cellm_xla_emit(&d, &p, &kd, &dec, &len, &err)) fail_msg("%s: %s", name, err.msg);
        /* one dot per projection, two per attention, the head */
        assert_int_equal(count(dec, "stablehlo.dot_general"), 4 + 2 + 3 + 1);
        int bitcasts = count(dec, "stablehlo.bitcast_convert");
        if (load)
            assert_int_equal(bitcasts, 0);
        else if (fmt != CELLM_W_GPTQ && fmt != CELLM_W_AWQ)
            assert_true(bitcasts >= 7); /* small floats built from their bits */
        else
            assert_true(count(dec, "stablehlo.shift_right_logical") >= 14); /* codes, zeros */
        if (!load && fmt == CELLM_W_GPTQ) assert_true(count(dec, "stablehlo.gather") >= 14);
        cellm_free(dec);
        cellm_xla_plan_free(&p);
    }
    assert_true(graph_vs_load(name, &d));
    cellm_desc_free(&d);
}

static void models(void **state)
{
    (void)state;
    model("mxfp4", CELLM_W_MXFP4);
    model("mxfp8", CELLM_W_MXFP8);
    model("nvfp4", CELLM_W_NVFP4);
    model("gptoss-mxfp4", CELLM_W_MXFP4);
    model("fp8", CELLM_W_FP8BLK);
    model("gptq", CELLM_W_GPTQ);
    model("awq", CELLM_W_AWQ);
}

/* ---- Qwen3-MoE layers in the new formats (written here) --------------------------------- */

enum { MH = 64, ME = 4, MI = 64, MV = 64 };

struct mk {
    char dir[256];
    struct tst_tensor t[96];
    int n;
    struct fmt_w w[48];
    int nw;
    float *f[8];
    int nf;
};

static void mk_add(struct mk *m, const char *name, const char *dtype, int ndim, const int64_t *d,
                   const void *data, size_t nbytes)
{
    assert_true(m->n < 96);
    struct tst_tensor *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = d[i];
    t->data = data;
    t->nbytes = nbytes;
}

static void mk_f32(struct mk *m, const char *name, int64_t n0, int64_t n1)
{
    int64_t n = n0 * (n1 ? n1 : 1);
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)fmt_uniform(-0.5, 1.5);
    m->f[m->nf++] = v;
    mk_add(m, name, "F32", n1 ? 2 : 1, (const int64_t[]){n0, n1}, v, (size_t)n * 4);
}

enum mkind { MK_NVFP4, MK_BLOCKS, MK_GPTQ, MK_FP8 };

/* Module `stem` [E * rows][cols] (E 0: a plain matrix, else stacked [E, rows, cols]). */
static void mk_proj(struct mk *m, const char *stem, enum mkind k, int E, int64_t rows, int64_t cols)
{
    struct fmt_w *f = &m->w[m->nw++];
    int64_t R = (E ? E : 1) * rows, lead = E ? 1 : 0;
    char n1[160], n2[160], n3[160];
    int64_t d[4] = {E, rows, 0, 0};
    if (k == MK_NVFP4 || k == MK_BLOCKS) {
        fmt_make_mx(f, k == MK_NVFP4 ? CELLM_W_NVFP4 : CELLM_W_MXFP4, R, cols);
        int64_t G = cols / f->w.group;
        if (k == MK_NVFP4) {
            snprintf(n1, sizeof n1, "%s.weight", stem);
            snprintf(n2, sizeof n2, "%s.scales", stem);
            d[2] = cols / 8;
            mk_add(m, n1, "U32", 2 + (int)lead, d + 1 - lead, f->codes, f->n_codes);
        } else {
            snprintf(n1, sizeof n1, "%s_blocks", stem);
            snprintf(n2, sizeof n2, "%s_scales", stem);
            d[2] = G, d[3] = 16;
            mk_add(m, n1, "U8", 3 + (int)lead, d + 1 - lead, f->codes, f->n_codes);
        }
        d[2] = G;
        mk_add(m, n2, "U8", 2 + (int)lead, d + 1 - lead, f->scales, f->n_scales);
        return;
    }
    assert_int_equal(E, 0);
    if (k == MK_FP8) {
        fmt_make_fp8(f, rows, cols, 48, 48, CELLM_DT_BF16);
        snprintf(n1, sizeof n1, "%s.weight", stem);
        snprintf(n2, sizeof n2, "%s.weight_scale_inv", stem);
        mk_add(m, n1, "F8_E4M3", 2, (const int64_t[]){rows, cols}, f->codes, f->n_codes);
        mk_add(m, n2, "BF16", 2, (const int64_t[]){(rows + 47) / 48, (cols + 47) / 48}, f->scales,
               f->n_scales);
        return;
    }
    fmt_make_gptq(f, 0, 4, rows, cols, 32, 1, 1);
    snprintf(n1, sizeof n1, "%s.qweight", stem);
    snprintf(n2, sizeof n2, "%s.qzeros", stem);
    snprintf(n3, sizeof n3, "%s.scales", stem);
    mk_add(m, n1, "I32", 2, (const int64_t[]){cols / 8, rows}, f->codes, f->n_codes);
    mk_add(m, n2, "I32", 2, (const int64_t[]){cols / 32, rows / 8}, f->zeros, f->n_zeros);
    mk_add(m, n3, "F16", 2, (const int64_t[]){cols / 32, rows}, f->scales, f->n_scales);
    snprintf(n3, sizeof n3, "%s.g_idx", stem);
    mk_add(m, n3, "I32", 1, (const int64_t[]){cols}, f->gidx, f->n_gidx);
}

/* One Qwen3-MoE layer: attention and experts stored as k (nvfp4: the MLX layout with
 * switch_mlp stacks, a quantized router and a quantized tied embedding; blocks: gpt-oss
 * stacked fused gate_up_proj; GPTQ and FP8: one tensor per expert). */
static void moe_model(enum mkind k, const char *quant)
{
    struct mk m;
    memset(&m, 0, sizeof m);
    assert_true(tst_mkdtemp(m.dir, sizeof m.dir));
    if (k == MK_NVFP4)
        mk_proj(&m, "model.embed_tokens", k, 0, MV, MH);
    else
        mk_f32(&m, "model.embed_tokens.weight", MV, MH);
    mk_f32(&m, "model.norm.weight", MH, 0);
    mk_f32(&m, "model.layers.0.input_layernorm.weight", MH, 0);
    mk_f32(&m, "model.layers.0.post_attention_layernorm.weight", MH, 0);
    mk_f32(&m, "model.layers.0.self_attn.q_norm.weight", 32, 0);
    mk_f32(&m, "model.layers.0.self_attn.k_norm.weight", 32, 0);
    if (k == MK_NVFP4)
        mk_proj(&m, "model.layers.0.mlp.gate", k, 0, ME, MH);
    else
        mk_f32(&m, "model.layers.0.mlp.gate.weight", ME, MH);
    static const char *const attn[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
    static const int ar[4] = {64, 32, 32, 64};
    for (int i = 0; i < 4; i++) {
        char stem[128];
        snprintf(stem, sizeof stem, "model.layers.0.self_attn.%s", attn[i]);
        mk_proj(&m, stem, k, 0, ar[i], 64);
    }
    if (k == MK_NVFP4) {
        mk_proj(&m, "model.layers.0.mlp.switch_mlp.gate_proj", k, ME, MI, MH);
        mk_proj(&m, "model.layers.0.mlp.switch_mlp.up_proj", k, ME, MI, MH);
        mk_proj(&m, "model.layers.0.mlp.switch_mlp.down_proj", k, ME, MH, MI);
    } else if (k == MK_BLOCKS) {
        mk_proj(&m, "model.layers.0.mlp.experts.gate_up_proj", k, ME, 2 * MI, MH);
        mk_proj(&m, "model.layers.0.mlp.experts.down_proj", k, ME, MH, MI);
    } else {
        for (int e = 0; e < ME; e++) {
            char stem[128];
            snprintf(stem, sizeof stem, "model.layers.0.mlp.experts.%d.gate_proj", e);
            mk_proj(&m, stem, k, 0, MI, MH);
            snprintf(stem, sizeof stem, "model.layers.0.mlp.experts.%d.up_proj", e);
            mk_proj(&m, stem, k, 0, MI, MH);
            snprintf(stem, sizeof stem, "model.layers.0.mlp.experts.%d.down_proj", e);
            mk_proj(&m, stem, k, 0, MH, MI);
        }
    }
    char cfg[1024], path[512];
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"qwen3_moe\",\"vocab_size\":%d,\"hidden_size\":%d,"
             "\"intermediate_size\":128,\"moe_intermediate_size\":%d,\"num_hidden_layers\":1,"
             "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":32,"
             "\"num_experts\":%d,\"num_experts_per_tok\":2,\"norm_topk_prob\":true,"
             "\"max_position_embeddings\":256,\"tie_word_embeddings\":true%s}",
             MV, MH, MI, ME, quant);
    assert_true(tst_write_str(m.dir, "config.json", cfg));
    snprintf(path, sizeof path, "%s/model.safetensors", m.dir);
    assert_true(tst_st_write(path, m.t, m.n));
    struct cellm_desc d;
    struct cellm_error err = {{0}};
    if (cellm_desc_load(m.dir, &d, &err)) fail_msg("%s: %s", quant, err.msg);
    assert_true(d.layers[0].moe);
    assert_true(graph_vs_load(quant, &d));
    cellm_desc_free(&d);
    tst_rm_rf(m.dir);
    for (int i = 0; i < m.nw; i++)
        fmt_free(&m.w[i]);
    for (int i = 0; i < m.nf; i++)
        free(m.f[i]);
}

static void moe_models(void **state)
{
    (void)state;
    moe_model(MK_NVFP4, ",\"quantization\":{\"group_size\":16,\"bits\":4,\"mode\":\"nvfp4\"}");
    moe_model(MK_BLOCKS, ",\"quantization_config\":{\"quant_method\":\"mxfp4\"}");
    moe_model(MK_GPTQ, ",\"quantization_config\":{\"quant_method\":\"gptq\",\"bits\":4,"
                       "\"group_size\":32,\"desc_act\":true}");
    moe_model(MK_FP8, ",\"quantization_config\":{\"quant_method\":\"fp8\","
                      "\"weight_block_size\":[48,48]}");
}

/* Every quantized fixture under tests/fixtures (MLX affine today; the variants of
 * docs/formats.md where the fixture maker has written them): graph and load agree. */
static void fixtures(void **state)
{
    (void)state;
    DIR *top = opendir(CELLM_FIXTURES);
    assert_non_null(top);
    int n = 0;
    struct dirent *fe;
    while ((fe = readdir(top)) != NULL) {
        if (fe->d_name[0] == '.') continue;
        char fam[1024];
        snprintf(fam, sizeof fam, "%s/%s", CELLM_FIXTURES, fe->d_name);
        DIR *sub = opendir(fam);
        if (!sub) continue;
        struct dirent *ve;
        while ((ve = readdir(sub)) != NULL) {
            char dir[2048], label[600], cfg[2100];
            snprintf(dir, sizeof dir, "%s/%s", fam, ve->d_name);
            snprintf(cfg, sizeof cfg, "%s/config.json", dir);
            if (ve->d_name[0] == '.' || access(cfg, R_OK)) continue;
            snprintf(label, sizeof label, "%s/%s", fe->d_name, ve->d_name);
            struct cellm_desc d;
            struct cellm_error err = {{0}};
            if (cellm_desc_load(dir, &d, &err)) fail_msg("%s: %s", label, err.msg);
            struct cellm_xla_plan p;
            int ok = cellm_xla_supported(&d, &err) == CELLM_OK;
            if (ok) {
                if (cellm_xla_plan_build(&d, 0, &p, &err)) fail_msg("%s: %s", label, err.msg);
                int packed = any_packed(&p);
                cellm_xla_plan_free(&p);
                if (packed && graph_vs_load(label, &d)) {
                    print_message("graph = load: %s\n", label);
                    n++;
                }
            }
            cellm_desc_free(&d);
        }
        closedir(sub);
    }
    closedir(top);
    assert_true(n >= 10); /* the MLX affine fixtures at least */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mx_formats), cmocka_unit_test(fp8_blocks),
        cmocka_unit_test(gptq_awq),   cmocka_unit_test(experts_unlike),
        cmocka_unit_test(models),     cmocka_unit_test(moe_models),
        cmocka_unit_test(fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
