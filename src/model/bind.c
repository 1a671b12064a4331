/*
 * bind.c: finding each weight of the generic description in the checkpoint.
 *
 * A module P is quantized when P.scales exists; its bits and group size come from the
 * config (per-module override or global) and must agree with the shapes of P.weight
 * (U32 codes), P.scales and P.biases (both F16 or both BF16). Otherwise P.weight must be
 * F32, F16 or BF16 with exactly the expected shape. Stacked tensors (experts) carry a
 * leading axis. Every mismatch is an error naming the tensor.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/half.h"
#include "hybrid.h"
#include "gemma3n.h"
#include "gemma4.h"
#include "model.h"

struct binder {
    struct cellm_desc *d;
    struct cellm_error *err;
};

static const char *fname(const struct binder *b, const struct cellm_ckpt_entry *e)
{
    return cellm_ckpt_file_name(&b->d->ckpt, e->file);
}

static enum cellm_wfmt float_fmt(enum cellm_dtype dt)
{
    switch (dt) {
    case CELLM_DT_F32:
        return CELLM_W_F32;
    case CELLM_DT_F16:
        return CELLM_W_F16;
    case CELLM_DT_BF16:
        return CELLM_W_BF16;
    default:
        return CELLM_W_NONE;
    }
}

static void shape_str(const struct cellm_st_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* A float vector P (full tensor name) of n elements; optional if !required. */
static enum cellm_status bind_vec(struct binder *b, const char *name, int64_t n, int required,
                                  struct cellm_vec *v)
{
    memset(v, 0, sizeof *v);
    const struct cellm_ckpt_entry *e = cellm_ckpt_find(&b->d->ckpt, name);
    if (!e) {
        if (required) return cellm_ckpt_missing(&b->d->ckpt, name, b->err);
        return CELLM_OK;
    }
    const struct cellm_st_tensor *t = e->t;
    v->fmt = float_fmt(t->dtype);
    if (v->fmt == CELLM_W_NONE)
        return cellm_errf(b->err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s has dtype %s; expected F32, F16 or BF16", fname(b, e),
                          name, cellm_dtype_name(t->dtype));
    if (t->ndim != 1 || t->shape[0] != n) {
        char s[96];
        shape_str(t, s, sizeof s);
        return cellm_errf(b->err, CELLM_ERR_FORMAT, "%s: tensor %s has shape %s; expected [%lld]",
                          fname(b, e), name, s, (long long)n);
    }
    v->n = n;
    v->data = t->data;
    b->d->n_params += (uint64_t)n;
    b->d->n_bytes += t->nbytes;
    return CELLM_OK;
}

/* Shape check of a stacked-or-plain tensor: [n_stack,] d0, d1[, d2]. */
static int shape_is(const struct cellm_st_tensor *t, int64_t n_stack, int n, const int64_t *d)
{
    int off = n_stack ? 1 : 0;
    if (t->ndim != n + off || (n_stack && t->shape[0] != n_stack)) return 0;
    for (int i = 0; i < n; i++)
        if (t->shape[off + i] != d[i]) return 0;
    return 1;
}

static enum cellm_status bad_shape(struct binder *b, const struct cellm_ckpt_entry *e,
                                   int64_t n_stack, int n, const int64_t *d, const char *why)
{
    char s[96], want[128];
    shape_str(e->t, s, sizeof s);
    size_t k = (size_t)snprintf(want, sizeof want, "[%s", n_stack ? "E, " : "");
    for (int i = 0; i < n && k < sizeof want; i++)
        k += (size_t)snprintf(want + k, sizeof want - k, "%s%lld", i ? ", " : "", (long long)d[i]);
    if (k < sizeof want) snprintf(want + k, sizeof want - k, "]");
    return cellm_errf(b->err, CELLM_ERR_FORMAT, "%s: tensor %s has shape %s; %s expects %s",
                      fname(b, e), e->name, s, why, want);
}

static enum cellm_status bad_dtype(struct binder *b, const struct cellm_ckpt_entry *e,
                                   const char *expected)
{
    return cellm_errf(b->err, CELLM_ERR_FORMAT, "%s: tensor %s has dtype %s; expected %s",
                      fname(b, e), e->name, cellm_dtype_name(e->t->dtype), expected);
}

/* MLX mxfp4 / mxfp8 / nvfp4: P.weight U32 codes, P.scales U8, no biases. */
static enum cellm_status bind_mx(struct binder *b, const char *mod, int mode,
                                 const struct cellm_ckpt_entry *we,
                                 const struct cellm_ckpt_entry *se, int64_t n_stack,
                                 struct cellm_weight *w)
{
    char bname[280];
    snprintf(bname, sizeof bname, "%s.biases", mod);
    const char *mname = cellm_qmode_name(mode);
    if (cellm_ckpt_find(&b->d->ckpt, bname))
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s exists but mode \"%s\" (config.json) has no biases",
                          fname(b, se), bname, mname);
    snprintf(bname, sizeof bname, "%s.global_scale", mod);
    if (cellm_ckpt_find(&b->d->ckpt, bname))
        return cellm_errf(b->err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s: an nvfp4 global scale is not supported", fname(b, se),
                          bname);
    int bits = mode == CELLM_QMODE_MXFP8 ? 8 : 4, group = mode == CELLM_QMODE_NVFP4 ? 16 : 32;
    enum cellm_dtype sdt = se->t->dtype;
    int e4m3_scales = mode == CELLM_QMODE_NVFP4;
    if (sdt != CELLM_DT_U8 && sdt != (e4m3_scales ? CELLM_DT_F8_E4M3 : CELLM_DT_F8_E8M0))
        return bad_dtype(b, se,
                         e4m3_scales ? "U8 (E4M3 scales of mode \"nvfp4\")"
                                     : "U8 (E8M0 scales of an mx mode)");
    if (we->t->dtype != CELLM_DT_U32) return bad_dtype(b, we, "U32 codes");
    if (w->cols % group)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %lld columns are not a multiple of mode \"%s\"'s group "
                          "size %d",
                          fname(b, we), we->name, (long long)w->cols, mname, group);
    int64_t dw[2] = {w->rows, w->cols * bits / 32}, ds[2] = {w->rows, w->cols / group};
    char why[64];
    snprintf(why, sizeof why, "mode \"%s\"", mname);
    if (!shape_is(we->t, n_stack, 2, dw)) return bad_shape(b, we, n_stack, 2, dw, why);
    if (!shape_is(se->t, n_stack, 2, ds)) return bad_shape(b, se, n_stack, 2, ds, why);
    w->fmt = mode == CELLM_QMODE_MXFP4   ? CELLM_W_MXFP4
             : mode == CELLM_QMODE_MXFP8 ? CELLM_W_MXFP8
                                         : CELLM_W_NVFP4;
    w->bits = bits;
    w->group = group;
    w->sdtype = CELLM_DT_U8;
    w->row_bytes = (size_t)w->cols * (size_t)bits / 8;
    w->scales = se->t->data;
    w->data = we->t->data;
    b->d->n_bytes += we->t->nbytes + se->t->nbytes;
    return CELLM_OK;
}

/* gpt-oss (transformers) mxfp4: P_blocks U8 [.., rows, G, 16], P_scales U8 [.., rows, G]. */
static enum cellm_status bind_blocks(struct binder *b, const struct cellm_ckpt_entry *be,
                                     const char *sname, int64_t n_stack, struct cellm_weight *w)
{
    const struct cellm_ckpt_entry *se = cellm_ckpt_find(&b->d->ckpt, sname);
    if (!se) return cellm_ckpt_missing(&b->d->ckpt, sname, b->err);
    if (b->d->cfg.quant.hf.method != CELLM_HFQ_MXFP4)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s is mxfp4 blocks but config.json's quantization_config "
                          "has quant_method \"%s\"; expected \"mxfp4\"",
                          fname(b, be), be->name, cellm_hfq_name(b->d->cfg.quant.hf.method));
    if (be->t->dtype != CELLM_DT_U8) return bad_dtype(b, be, "U8 (two E2M1 codes per byte)");
    if (se->t->dtype != CELLM_DT_U8) return bad_dtype(b, se, "U8 (E8M0 scales)");
    if (w->cols % 32)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %lld columns are not a multiple of mxfp4's 32",
                          fname(b, be), be->name, (long long)w->cols);
    int64_t db[3] = {w->rows, w->cols / 32, 16}, ds[2] = {w->rows, w->cols / 32};
    if (!shape_is(be->t, n_stack, 3, db)) return bad_shape(b, be, n_stack, 3, db, "mxfp4");
    if (!shape_is(se->t, n_stack, 2, ds)) return bad_shape(b, se, n_stack, 2, ds, "mxfp4");
    w->fmt = CELLM_W_MXFP4;
    w->bits = 4;
    w->group = 32;
    w->sdtype = CELLM_DT_U8;
    w->row_bytes = (size_t)w->cols / 2;
    w->scales = se->t->data;
    w->data = be->t->data;
    b->d->n_bytes += be->t->nbytes + se->t->nbytes;
    return CELLM_OK;
}

/* FP8 E4M3 weight + weight_scale_inv [ceil(rows/bn), ceil(cols/bk)]. */
static enum cellm_status bind_fp8(struct binder *b, const char *mod,
                                  const struct cellm_ckpt_entry *we, int64_t n_stack,
                                  struct cellm_weight *w)
{
    const struct cellm_hf_quant *q = &b->d->cfg.quant.hf;
    char sname[280];
    snprintf(sname, sizeof sname, "%s.weight_scale_inv", mod);
    const struct cellm_ckpt_entry *se = cellm_ckpt_find(&b->d->ckpt, sname);
    if (q->method != CELLM_HFQ_FP8)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s is F8_E4M3 but config.json's quantization_config has "
                          "quant_method \"%s\"; expected \"fp8\" with weight_block_size",
                          fname(b, we), we->name, cellm_hfq_name(q->method));
    if (!se) return cellm_ckpt_missing(&b->d->ckpt, sname, b->err);
    enum cellm_dtype sdt = se->t->dtype;
    if (sdt != CELLM_DT_F32 && sdt != CELLM_DT_BF16 && sdt != CELLM_DT_F16)
        return bad_dtype(b, se, "F32, BF16 or F16 block scales");
    if (n_stack)
        return cellm_errf(b->err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s: stacked FP8 experts are not supported", fname(b, we),
                          we->name);
    int64_t bn = q->block[0], bk = q->block[1];
    int64_t dw[2] = {w->rows, w->cols}, ds[2] = {(w->rows + bn - 1) / bn, (w->cols + bk - 1) / bk};
    if (!shape_is(we->t, 0, 2, dw)) return bad_shape(b, we, 0, 2, dw, "the config");
    if (!shape_is(se->t, 0, 2, ds))
        return bad_shape(b, se, 0, 2, ds, "weight_block_size from config.json");
    w->fmt = CELLM_W_FP8BLK;
    w->bits = 8;
    w->group = (int)bk;
    w->block_rows = (int)bn;
    w->sdtype = sdt;
    w->row_bytes = (size_t)w->cols;
    w->scales = se->t->data;
    w->data = we->t->data;
    b->d->n_bytes += we->t->nbytes + se->t->nbytes;
    return CELLM_OK;
}

/* GPTQ / AWQ: P.qweight, P.qzeros, P.scales (and GPTQ's optional P.g_idx). */
static enum cellm_status bind_gptq_awq(struct binder *b, const char *mod,
                                       const struct cellm_ckpt_entry *qe, int64_t n_stack,
                                       struct cellm_weight *w)
{
    const struct cellm_hf_quant *q = &b->d->cfg.quant.hf;
    struct cellm_ckpt *ck = &b->d->ckpt;
    if (q->method != CELLM_HFQ_GPTQ && q->method != CELLM_HFQ_AWQ)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s exists but config.json's quantization_config has "
                          "quant_method \"%s\"; expected \"gptq\" or \"awq\"",
                          fname(b, qe), qe->name, cellm_hfq_name(q->method));
    if (n_stack)
        return cellm_errf(b->err, CELLM_ERR_UNSUPPORTED,
                          "%s: tensor %s: stacked GPTQ/AWQ experts are not supported", fname(b, qe),
                          qe->name);
    int awq = q->method == CELLM_HFQ_AWQ, bits = q->bits, pack = 32 / bits;
    const char *mname = awq ? "AWQ" : "GPTQ";
    char zname[280], sname[280], gname[280];
    snprintf(zname, sizeof zname, "%s.qzeros", mod);
    snprintf(sname, sizeof sname, "%s.scales", mod);
    snprintf(gname, sizeof gname, "%s.g_idx", mod);
    const struct cellm_ckpt_entry *ze = cellm_ckpt_find(ck, zname),
                                  *se = cellm_ckpt_find(ck, sname);
    const struct cellm_ckpt_entry *ge = cellm_ckpt_find(ck, gname);
    if (!ze) return cellm_ckpt_missing(ck, zname, b->err);
    if (!se) return cellm_ckpt_missing(ck, sname, b->err);
    int64_t R = w->rows, C = w->cols;
    int64_t group = q->group ? q->group : C;
    if (C % group)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %lld input features are not a multiple of group_size "
                          "%lld",
                          fname(b, qe), qe->name, (long long)C, (long long)group);
    if (C % pack || R % pack)
        return cellm_errf(b->err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %lld x %lld weights cannot be packed %d per 32-bit word",
                          fname(b, qe), qe->name, (long long)R, (long long)C, pack);
    int64_t ng = C / group;
    if (qe->t->dtype != CELLM_DT_I32 && qe->t->dtype != CELLM_DT_U32)
        return bad_dtype(b, qe, "I32 packed codes");
    if (ze->t->dtype != CELLM_DT_I32 && ze->t->dtype != CELLM_DT_U32)
        return bad_dtype(b, ze, "I32 packed zeros");
    if (se->t->dtype != CELLM_DT_F16 && se->t->dtype != CELLM_DT_BF16 &&
        se->t->dtype != CELLM_DT_F32)
        return bad_dtype(b, se, "F16 scales");
    int64_t dq[2] = {awq ? C : C / pack, awq ? R / pack : R};
    int64_t dz[2] = {ng, R / pack}, ds[2] = {ng, R};
    char why[64];
    snprintf(why, sizeof why, "%s %d-bit with group_size %lld", mname, bits, (long long)group);
    if (!shape_is(qe->t, 0, 2, dq)) return bad_shape(b, qe, 0, 2, dq, why);
    if (!shape_is(ze->t, 0, 2, dz)) return bad_shape(b, ze, 0, 2, dz, why);
    if (!shape_is(se->t, 0, 2, ds)) return bad_shape(b, se, 0, 2, ds, why);
    if (ge && awq)
        return cellm_errf(b->err, CELLM_ERR_FORMAT, "%s: tensor %s: AWQ has no g_idx", fname(b, ge),
                          gname);
    if (ge) {
        int64_t dg[1] = {C};
        if (ge->t->dtype != CELLM_DT_I32) return bad_dtype(b, ge, "I32");
        if (!shape_is(ge->t, 0, 1, dg)) return bad_shape(b, ge, 0, 1, dg, "one group per input");
        for (int64_t i = 0; i < C; i++) {
            int32_t g = (int32_t)cellm_load_u32(ge->t->data + 4 * i);
            if (g < 0 || g >= ng)
                return cellm_errf(b->err, CELLM_ERR_FORMAT,
                                  "%s: tensor %s: g_idx[%lld] is %d; expected a group in [0, "
                                  "%lld)",
                                  fname(b, ge), gname, (long long)i, g, (long long)ng);
        }
        b->d->n_bytes += ge->t->nbytes;
    } else if (q->desc_act) {
        return cellm_ckpt_missing(ck, gname, b->err);
    }
    w->fmt = awq ? CELLM_W_AWQ : CELLM_W_GPTQ;
    w->bits = bits;
    w->group = (int)group;
    w->ngroups = (int)ng;
    w->ld = R;
    w->sdtype = se->t->dtype;
    w->row_bytes = 0; /* column-packed: views move r_off, not data */
    w->data = qe->t->data;
    w->zeros = ze->t->data;
    w->scales = se->t->data;
    w->g_idx = ge ? ge->t->data : NULL;
    w->zero_one = awq ? 0 : q->zero_one;
    b->d->n_bytes += qe->t->nbytes + ze->t->nbytes + se->t->nbytes;
    return CELLM_OK;
}

/*
 * Matrix module `mod` (no suffix) of logical shape [n_stack x] [rows][cols]. out receives
 * n_stack views (n_stack 0 = a plain 2-D tensor).
 */
static enum cellm_status bind_matrix(struct binder *b, const char *mod, int64_t n_stack,
                                     int64_t rows, int64_t cols, struct cellm_weight *out)
{
    struct cellm_ckpt *ck = &b->d->ckpt;
    char wname[256], sname[256], bname[256];
    snprintf(wname, sizeof wname, "%s.weight", mod);
    snprintf(sname, sizeof sname, "%s.scales", mod);
    snprintf(bname, sizeof bname, "%s.biases", mod);
    const struct cellm_ckpt_entry *we = cellm_ckpt_find(ck, wname);
    const struct cellm_ckpt_entry *se = cellm_ckpt_find(ck, sname);
    int64_t stack = n_stack ? n_stack : 1;
    struct cellm_weight w;
    memset(&w, 0, sizeof w);
    w.rows = rows;
    w.cols = cols;
    if (!we) {
        /* the quantized layouts without a P.weight: GPTQ/AWQ and gpt-oss mxfp4 */
        char qname[280], blname[280], bsname[280];
        snprintf(qname, sizeof qname, "%s.qweight", mod);
        snprintf(blname, sizeof blname, "%s_blocks", mod);
        snprintf(bsname, sizeof bsname, "%s_scales", mod);
        const struct cellm_ckpt_entry *qe = cellm_ckpt_find(ck, qname);
        const struct cellm_ckpt_entry *bl = cellm_ckpt_find(ck, blname);
        if (!qe && !bl) return cellm_ckpt_missing(ck, wname, b->err);
        w.name = qe ? qe->name : bl->name;
        CELLM_TRY(qe ? bind_gptq_awq(b, mod, qe, n_stack, &w)
                     : bind_blocks(b, bl, bsname, n_stack, &w));
        goto bound;
    }
    const struct cellm_st_tensor *wt = we->t;
    int nd = n_stack ? 3 : 2;
    w.name = we->name;
    char s[96];
    int mode = CELLM_QMODE_AFFINE, mbits, mgroup;
    if (se && cellm_quant_module(&b->d->cfg.quant, mod, &mbits, &mgroup, &mode) == 1 &&
        mode != CELLM_QMODE_AFFINE) {
        CELLM_TRY(bind_mx(b, mod, mode, we, se, n_stack, &w));
        goto bound;
    }
    if (wt->dtype == CELLM_DT_F8_E4M3) {
        CELLM_TRY(bind_fp8(b, mod, we, n_stack, &w));
        goto bound;
    }
    if (se) {
        const struct cellm_ckpt_entry *be = cellm_ckpt_find(ck, bname);
        if (!be)
            return cellm_errf(
                b->err, CELLM_ERR_FORMAT,
                "%s: tensor %s exists but %s does not; affine quantization needs both",
                fname(b, se), sname, bname);
        const struct cellm_st_tensor *st = se->t, *bt = be->t;
        int bits, group;
        int q = cellm_quant_module(&b->d->cfg.quant, mod, &bits, &group, NULL);
        if (q < 0)
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s is quantized (has .scales) but config.json has no "
                              "\"quantization\" block",
                              fname(b, se), wname);
        if (q == 0)
            return cellm_errf(
                b->err, CELLM_ERR_FORMAT,
                "%s: tensor %s has .scales but config.json quantization says \"%s\": false",
                fname(b, se), wname, mod);
        if (st->dtype != bt->dtype || (st->dtype != CELLM_DT_F16 && st->dtype != CELLM_DT_BF16))
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s has dtype %s but its biases are %s; scales and biases "
                              "must share one 16-bit type",
                              fname(b, se), sname, cellm_dtype_name(st->dtype),
                              cellm_dtype_name(bt->dtype));
        if (wt->dtype != CELLM_DT_U32)
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s is quantized but has dtype %s; expected U32 codes",
                              fname(b, we), wname, cellm_dtype_name(wt->dtype));
        if (cols % group || (cols * bits) % 32) {
            return cellm_errf(
                b->err, CELLM_ERR_FORMAT,
                "%s: tensor %s: %lld columns cannot be quantized with group size %d and %d bits",
                fname(b, we), wname, (long long)cols, group, bits);
        }
        int64_t wcols = cols * bits / 32, gcols = cols / group;
        int ok = wt->ndim == nd && wt->shape[nd - 1] == wcols && wt->shape[nd - 2] == rows &&
                 (!n_stack || wt->shape[0] == n_stack);
        if (!ok) {
            shape_str(wt, s, sizeof s);
            /* say what the stored shape would mean, the usual cause being bits/group */
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s has shape %s; with %d bits the config implies "
                              "%s[%lld, %lld] (%lld x %lld weights)",
                              fname(b, we), wname, s, bits, n_stack ? "[E, ...] " : "",
                              (long long)rows, (long long)wcols, (long long)rows, (long long)cols);
        }
        ok = st->ndim == nd && bt->ndim == nd && st->shape[nd - 1] == gcols &&
             st->shape[nd - 2] == rows && bt->shape[nd - 1] == gcols && bt->shape[nd - 2] == rows &&
             (!n_stack || (st->shape[0] == n_stack && bt->shape[0] == n_stack));
        if (!ok) {
            shape_str(st, s, sizeof s);
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s has shape %s; with group size %d expected [%lld, "
                              "%lld] (and the same for biases)",
                              fname(b, se), sname, s, group, (long long)rows, (long long)gcols);
        }
        w.fmt = CELLM_W_AFFINE;
        w.bits = bits;
        w.group = group;
        w.sdtype = st->dtype;
        w.row_bytes = (size_t)wcols * 4;
        w.scales = st->data;
        w.biases = bt->data;
        b->d->n_bytes += wt->nbytes + st->nbytes + bt->nbytes;
    } else {
        w.fmt = float_fmt(wt->dtype);
        if (w.fmt == CELLM_W_NONE)
            return cellm_errf(b->err, CELLM_ERR_UNSUPPORTED,
                              "%s: tensor %s has dtype %s; weights must be F32, F16, BF16, MLX "
                              "quantized (U32 with .scales) or a format of docs/formats.md",
                              fname(b, we), wname, cellm_dtype_name(wt->dtype));
        int ok = wt->ndim == nd && wt->shape[nd - 1] == cols && wt->shape[nd - 2] == rows &&
                 (!n_stack || wt->shape[0] == n_stack);
        if (!ok) {
            shape_str(wt, s, sizeof s);
            if (n_stack)
                return cellm_errf(
                    b->err, CELLM_ERR_FORMAT,
                    "%s: tensor %s has shape %s; the config implies [%lld, %lld, %lld]",
                    fname(b, we), wname, s, (long long)n_stack, (long long)rows, (long long)cols);
            return cellm_errf(b->err, CELLM_ERR_FORMAT,
                              "%s: tensor %s has shape %s; the config implies [%lld, %lld]",
                              fname(b, we), wname, s, (long long)rows, (long long)cols);
        }
        w.row_bytes = (size_t)cols * (w.fmt == CELLM_W_F32 ? 4 : 2);
        b->d->n_bytes += wt->nbytes;
    }
    w.data = wt->data;
bound:
    b->d->n_params += (uint64_t)(stack * rows * cols);
    for (int64_t e = 0; e < stack; e++)
        out[e] = cellm_weight_rows(&w, e * rows, rows);
    return CELLM_OK;
}

/*
 * The layer's tensors, walked in the order of model.h's table. The table holds the
 * canonical Hugging Face names; the other names a checkpoint may use are the data below.
 */

/* Sandwich blocks call the norm before the MLP pre_feedforward_layernorm (Gemma), and the
 * name the table gives it is the post-attention norm's there. */
static const char *const sandwich_ffn_norm = "pre_feedforward_layernorm.weight";

/* Projections stored as one matrix whose rows are the parts, in this order. */
struct fused {
    enum cellm_lt parts[3];
    int n;
    const char *name;
};
static const struct fused fused_qkv = {
    {CELLM_LT_WQ, CELLM_LT_WK, CELLM_LT_WV}, 3, "self_attn.qkv_proj"}; /* Phi-3 */
static const struct fused fused_gate_up = {
    {CELLM_LT_W_GATE, CELLM_LT_W_UP}, 2, "mlp.gate_up_proj"}; /* Phi-3 */
static const struct fused fused_experts = {
    {CELLM_LT_E_GATE, CELLM_LT_E_UP}, 2, "mlp.experts.gate_up_proj"}; /* transformers v5 */

/* The expert tensors of the stacked layouts ([E, rows, cols] each). */
static const char *stacked_name(enum cellm_experts layout, enum cellm_lt id)
{
    if (layout == CELLM_EXPERTS_STACKED)
        return id == CELLM_LT_E_GATE ? "mlp.switch_mlp.gate_proj"
               : id == CELLM_LT_E_UP ? "mlp.switch_mlp.up_proj"
                                     : "mlp.switch_mlp.down_proj";
    if (layout == CELLM_EXPERTS_STACKED_OSS)
        return id == CELLM_LT_E_GATE ? "mlp.experts.gate_proj"
               : id == CELLM_LT_E_UP ? "mlp.experts.up_proj"
                                     : "mlp.experts.down_proj";
    if (id == CELLM_LT_E_GATE_UP) return "mlp.experts.gate_up_proj"; /* INTERLEAVED */
    return "mlp.experts.down_proj"; /* FUSED_V5 (gate and up are fused_experts), INTERLEAVED */
}

/* A buffer the description owns (freed by cellm_desc_free). */
static void *own(struct binder *b, size_t n)
{
    struct cellm_desc *d = b->d;
    void **list = cellm_realloc(d->owned, (size_t)(d->n_owned + 1) * sizeof *list);
    if (!list) return NULL;
    d->owned = list;
    void *p = cellm_malloc(n ? n : 1);
    if (p) d->owned[d->n_owned++] = p;
    return p;
}

/*
 * gpt-oss's float experts as transformers stores its parameters: [E, in, out] (x @ W).
 * The kernels read [out][in] rows, so the stack is transposed once into owned memory, in
 * its stored type (no rounding). The mxfp4 blocks are already [out][in] and stay mapped.
 */
static enum cellm_status bind_transposed(struct binder *b, const struct cellm_ckpt_entry *e,
                                         int64_t n_stack, int64_t rows, int64_t cols,
                                         struct cellm_weight *out)
{
    const struct cellm_st_tensor *t = e->t;
    enum cellm_wfmt fmt = float_fmt(t->dtype);
    if (fmt == CELLM_W_NONE) return bad_dtype(b, e, "F32, F16 or BF16 (or mxfp4 _blocks)");
    int64_t want[2] = {cols, rows};
    if (!shape_is(t, n_stack, 2, want))
        return bad_shape(b, e, n_stack, 2, want, "an [experts, in, out] parameter");
    size_t es = fmt == CELLM_W_F32 ? 4 : 2;
    uint8_t *buf = own(b, (size_t)(n_stack * rows * cols) * es);
    if (!buf) return cellm_errf(b->err, CELLM_ERR_NOMEM, "%s: out of memory", e->name);
    for (int64_t x = 0; x < n_stack; x++) {
        const uint8_t *src = t->data + (size_t)(x * rows * cols) * es;
        uint8_t *dst = buf + (size_t)(x * rows * cols) * es;
        for (int64_t i = 0; i < cols; i++)
            for (int64_t o = 0; o < rows; o++)
                memcpy(dst + (size_t)(o * cols + i) * es, src + (size_t)(i * rows + o) * es, es);
    }
    struct cellm_weight w;
    memset(&w, 0, sizeof w);
    w.fmt = fmt;
    w.rows = rows;
    w.cols = cols;
    w.name = e->name;
    w.row_bytes = (size_t)cols * es;
    w.data = buf;
    b->d->n_params += (uint64_t)(n_stack * rows * cols);
    b->d->n_bytes += t->nbytes;
    for (int64_t x = 0; x < n_stack; x++)
        out[x] = cellm_weight_rows(&w, x * rows, rows);
    return CELLM_OK;
}

/* One float vector per expert, stored as one [E, n] tensor. */
static enum cellm_status bind_expert_vecs(struct binder *b, const char *name, int64_t n_stack,
                                          int64_t n, struct cellm_vec *out)
{
    const struct cellm_ckpt_entry *e = cellm_ckpt_find(&b->d->ckpt, name);
    if (!e) return cellm_ckpt_missing(&b->d->ckpt, name, b->err);
    enum cellm_wfmt fmt = float_fmt(e->t->dtype);
    if (fmt == CELLM_W_NONE) return bad_dtype(b, e, "F32, F16 or BF16");
    int64_t want[1] = {n};
    if (!shape_is(e->t, n_stack, 1, want)) return bad_shape(b, e, n_stack, 1, want, "the config");
    size_t es = fmt == CELLM_W_F32 ? 4 : 2;
    for (int64_t x = 0; x < n_stack; x++) {
        out[x].fmt = fmt;
        out[x].n = n;
        out[x].data = e->t->data + (size_t)(x * n) * es;
    }
    b->d->n_params += (uint64_t)(n_stack * n);
    b->d->n_bytes += e->t->nbytes;
    return CELLM_OK;
}

/* prefix + name with its "%d" (if any) replaced by k; Llama 4's feed-forward names
 * ("feed_forward." for "mlp.", "feed_forward.router" for the router "mlp.gate",
 * "feed_forward.shared_expert." for "mlp.shared_experts.") */
static void tensor_name(const struct cellm_desc *d, char *out, size_t cap, const char *prefix,
                        const char *name, int k)
{
    char renamed[128];
    if (d->cfg.feed_forward && !strncmp(name, "mlp.", 4)) {
        if (!strcmp(name, "mlp.gate"))
            snprintf(renamed, sizeof renamed, "feed_forward.router");
        else if (!strncmp(name, "mlp.shared_experts.", 19)) /* one shared expert, singular */
            snprintf(renamed, sizeof renamed, "feed_forward.shared_expert.%s", name + 19);
        else
            snprintf(renamed, sizeof renamed, "feed_forward.%s", name + 4);
        name = renamed;
    }
    const char *pct = strstr(name, "%d");
    if (!pct) {
        snprintf(out, cap, "%s%s", prefix, name);
        return;
    }
    snprintf(out, cap, "%s%.*s%d%s", prefix, (int)(pct - name), name, k, pct + 2);
}

static void *layer_member(struct cellm_layer *L, enum cellm_lt id)
{
    return (char *)L + cellm_layer_tensors[id].offset;
}

/* Which fused group a projection belongs to in this config, or NULL. */
static const struct fused *fused_of(const struct cellm_desc *d, enum cellm_lt id)
{
    const struct cellm_config *c = &d->cfg;
    const struct fused *f = NULL;
    if (c->fused_qkv && (id == CELLM_LT_WQ || id == CELLM_LT_WK || id == CELLM_LT_WV))
        f = &fused_qkv;
    else if (c->fused_gate_up && (id == CELLM_LT_W_GATE || id == CELLM_LT_W_UP))
        f = &fused_gate_up;
    else if (((d->experts == CELLM_EXPERTS_FUSED_V5 && !c->gemma4) ||
              d->experts == CELLM_EXPERTS_FUSED_IN_OUT) &&
             (id == CELLM_LT_E_GATE || id == CELLM_LT_E_UP))
        f = &fused_experts;
    return f;
}

/* A fused group: one matrix of the parts' rows together, split into row views. */
static enum cellm_status bind_fused(struct binder *b, const char *p, struct cellm_layer *L,
                                    const struct fused *f, int n_stack)
{
    const struct cellm_config *c = &b->d->cfg;
    int64_t rows = 0, r[3];
    for (int k = 0; k < f->n; k++)
        rows += r[k] = cellm_layer_dim(c, L, cellm_layer_tensors[f->parts[k]].rows);
    int64_t cols = cellm_layer_dim(c, L, cellm_layer_tensors[f->parts[0]].cols);
    int stack = n_stack ? n_stack : 1;
    struct cellm_weight *all = cellm_calloc((size_t)stack, sizeof *all);
    if (!all) return cellm_errf(b->err, CELLM_ERR_NOMEM, "out of memory");
    char mod[256];
    tensor_name(b->d, mod, sizeof mod, p, f->name, 0);
    const struct cellm_ckpt_entry *bare = cellm_ckpt_find(&b->d->ckpt, mod);
    enum cellm_status st = bare && b->d->experts == CELLM_EXPERTS_FUSED_IN_OUT
                               ? bind_transposed(b, bare, n_stack, rows, cols, all)
                               : bind_matrix(b, mod, n_stack, rows, cols, all);
    for (int e = 0; st == CELLM_OK && e < stack; e++) {
        int64_t r0 = 0;
        for (int k = 0; k < f->n; k++) {
            void *m = layer_member(L, f->parts[k]);
            struct cellm_weight *dst = n_stack ? *(struct cellm_weight **)m + e : m;
            *dst = cellm_weight_rows(&all[e], r0, r[k]);
            r0 += r[k];
        }
    }
    cellm_free(all);
    return st;
}

static enum cellm_status bind_tensor(struct binder *b, const char *p, struct cellm_layer *L,
                                     enum cellm_lt id, int parts)
{
    const struct cellm_desc *d = b->d;
    const struct cellm_tensor_spec *s = &cellm_layer_tensors[id];
    int64_t rows = cellm_layer_dim(&d->cfg, L, s->rows),
            cols = cellm_layer_dim(&d->cfg, L, s->cols);
    const char *name = s->name;
    if (id == CELLM_LT_ROUTER && d->cfg.gemma4) name = "router.proj";
    if (id == CELLM_LT_FFN_NORM && d->cfg.block == CELLM_BLOCK_SANDWICH) name = sandwich_ffn_norm;
    /* gpt-oss calls its router mlp.router; mlx-lm's biases of the experts are P.bias */
    if (id == CELLM_LT_ROUTER && d->cfg.expert_bias) name = "mlp.router";
    if (id == CELLM_LT_E_DOWN_B && d->experts == CELLM_EXPERTS_STACKED_OSS)
        name = "mlp.experts.down_proj.bias";
    if (d->cfg.hybrid) name = cellm_hybrid_alias(&d->cfg, name);
    /* gated attention: q_proj holds per head d queries then d output gates */
    if (id == CELLM_LT_WQ && d->cfg.attn_out_gate) rows *= 2;
    void *m = layer_member(L, id);
    char full[256];
    switch (s->kind) {
    case CELLM_TK_VEC:
        tensor_name(d, full, sizeof full, p, name, 0);
        return bind_vec(b, full, rows, 1, m);
    case CELLM_TK_HEADS: {
        struct cellm_vec *v = cellm_calloc((size_t)parts, sizeof *v);
        if (!v) return cellm_errf(b->err, CELLM_ERR_NOMEM, "out of memory");
        *(struct cellm_vec **)m = v;
        for (int h = 0; h < parts; h++) {
            tensor_name(d, full, sizeof full, p, name, h);
            CELLM_TRY(bind_vec(b, full, cols, 1, &v[h]));
        }
        return CELLM_OK;
    }
    case CELLM_TK_MAT:
        tensor_name(d, full, sizeof full, p, name, 0);
        return bind_matrix(b, full, 0, rows, cols, m);
    case CELLM_TK_EXPERTS: {
        struct cellm_weight *w = *(struct cellm_weight **)m; /* allocated by bind_layer */
        if (s->need == CELLM_NEED_MLA_SPLIT) {               /* mlx-lm's [n_heads, rows, cols] */
            tensor_name(d, full, sizeof full, p, name, 0);
            return bind_matrix(b, full, parts, rows, cols, w);
        }
        if (d->cfg.gemma4) return cellm_gemma4_bind_experts(b->d, p, L, id, b->err);
        if (d->experts != CELLM_EXPERTS_SPLIT) {
            tensor_name(d, full, sizeof full, p, stacked_name(d->experts, id), 0);
            const struct cellm_ckpt_entry *bare = cellm_ckpt_find(&d->ckpt, full);
            if (bare && (d->experts == CELLM_EXPERTS_INTERLEAVED ||
                         d->experts == CELLM_EXPERTS_FUSED_IN_OUT))
                return bind_transposed(b, bare, parts, rows, cols, w);
            return bind_matrix(b, full, parts, rows, cols, w);
        }
        for (int e = 0; e < parts; e++) {
            tensor_name(d, full, sizeof full, p, name, e);
            CELLM_TRY(bind_matrix(b, full, 0, rows, cols, &w[e]));
        }
        return CELLM_OK;
    }
    case CELLM_TK_EXPERT_VECS: {
        struct cellm_vec *v = *(struct cellm_vec **)m; /* allocated by bind_layer */
        tensor_name(d, full, sizeof full, p, name, 0);
        return bind_expert_vecs(b, full, parts, cols, v);
    }
    }
    return CELLM_OK;
}

static enum cellm_status bind_layer(struct binder *b, int i)
{
    struct cellm_desc *d = b->d;
    const struct cellm_config *c = &d->cfg;
    struct cellm_layer *L = &d->layers[i];
    char p[64];
    snprintf(p, sizeof p, "model.layers.%d.", i);
    L->attn = c->layer_sliding[i]                       ? CELLM_ATTN_SLIDING
              : c->layer_chunked && c->layer_chunked[i] ? CELLM_ATTN_CHUNKED
                                                        : CELLM_ATTN_FULL;
    L->nope = c->layer_nope && c->layer_nope[i];
    L->moe = c->layer_moe[i];
    L->mixer = c->layer_mixer ? c->layer_mixer[i] : CELLM_MIXER_ATTN;
    cellm_layer_geometry(c, i, L);
    /* the expert arrays exist before a fused group fills two of them */
    for (int id = 0; id < CELLM_LT_N; id++) {
        int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
        enum cellm_tkind k = cellm_layer_tensors[id].kind;
        if (!parts || (k != CELLM_TK_EXPERTS && k != CELLM_TK_EXPERT_VECS)) continue;
        void **w = layer_member(L, (enum cellm_lt)id);
        size_t size =
            k == CELLM_TK_EXPERTS ? sizeof(struct cellm_weight) : sizeof(struct cellm_vec);
        if (!(*w = cellm_calloc((size_t)parts, size)))
            return cellm_errf(b->err, CELLM_ERR_NOMEM, "out of memory");
    }
    for (int id = 0; id < CELLM_LT_N; id++) {
        int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
        if (!parts) continue;
        const struct fused *f = fused_of(d, (enum cellm_lt)id);
        if (f && (int)f->parts[0] != id) continue; /* bound with its group's first part */
        int stacked = cellm_layer_tensors[id].kind == CELLM_TK_EXPERTS ? parts : 0;
        CELLM_TRY(f ? bind_fused(b, p, L, f, stacked)
                    : bind_tensor(b, p, L, (enum cellm_lt)id, parts));
    }
    if (c->hybrid) return cellm_hybrid_bind_layer(d, i, L, b->err);
    return CELLM_OK;
}

/* The experts' storage, from the first MoE layer's tensors (every layer is then bound as
 * that layout, and a layer stored otherwise is missing its tensors). */
static enum cellm_experts probe_experts(const struct cellm_desc *d)
{
    const struct cellm_config *c = &d->cfg;
    int l = 0;
    while (l < c->n_layers && !c->layer_moe[l])
        l++;
    if (l == c->n_layers) return CELLM_EXPERTS_NONE;
    if (c->gemma4) return cellm_gemma4_probe_experts(d);
    char n[300];
    if (c->expert_bias) { /* gpt-oss: mlx-lm splits gate_up_proj by row parity */
        snprintf(n, sizeof n, "model.layers.%d.%s.weight", l,
                 stacked_name(CELLM_EXPERTS_STACKED_OSS, CELLM_LT_E_GATE));
        return cellm_ckpt_find(&d->ckpt, n) ? CELLM_EXPERTS_STACKED_OSS : CELLM_EXPERTS_INTERLEAVED;
    }
    if (c->feed_forward) { /* Llama 4: mlx-lm's sanitize splits gate_up_proj */
        snprintf(n, sizeof n, "model.layers.%d.feed_forward.experts.gate_proj.weight", l);
        return cellm_ckpt_find(&d->ckpt, n) ? CELLM_EXPERTS_STACKED_OSS
                                            : CELLM_EXPERTS_FUSED_IN_OUT;
    }
    snprintf(n, sizeof n, "model.layers.%d.%s.weight", l,
             stacked_name(CELLM_EXPERTS_STACKED, CELLM_LT_E_GATE));
    if (cellm_ckpt_find(&d->ckpt, n)) return CELLM_EXPERTS_STACKED;
    snprintf(n, sizeof n, "model.layers.%d.%s.weight", l, fused_experts.name);
    if (cellm_ckpt_find(&d->ckpt, n)) return CELLM_EXPERTS_FUSED_V5;
    snprintf(n, sizeof n, "model.layers.%d.%s_blocks", l, fused_experts.name); /* gpt-oss mxfp4 */
    if (cellm_ckpt_find(&d->ckpt, n)) return CELLM_EXPERTS_FUSED_V5;
    return CELLM_EXPERTS_SPLIT;
}

/* YaRN's correction range (find_correction_range), in double as Python computes it: the
 * dimension at which a frequency turns `rot` times over the original context. */
void cellm_rope_yarn_range(const struct cellm_rope *r, int dim, double *low, double *high)
{
    double lb = 2 * log(r->theta), orig = r->original_max_pos;
    double lo = (dim * log(orig / (r->beta_fast * 2 * M_PI))) / lb;
    double hi = (dim * log(orig / (r->beta_slow * 2 * M_PI))) / lb;
    if (r->truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0) lo = 0;
    if (hi > dim - 1) hi = dim - 1;
    if (lo == hi) hi += 0.001; /* transformers' guard against a zero-width ramp */
    *low = lo;
    *high = hi;
}

/* transformers' float32 inverse frequencies, with the scaling variants cellm accepts. Each
 * step is one f32 rounding in torch's order: the exponent fl(fl(2i) / rot), the power
 * powf(fl(theta), e) (the one libm-dependent step), then the variant's f32 arithmetic.
 * For longrope this is the short list; cellm_rope_inv_freq_long gives the long one. */
void cellm_rope_inv_freq(const struct cellm_rope *r, int rot, float *out)
{
    float base = (float)r->theta;
    double ylo = 0, yhi = 1;
    if (r->kind == CELLM_ROPE_YARN) cellm_rope_yarn_range(r, rot, &ylo, &yhi);
    for (int i = 0; i < rot / 2; i++) {
        float e = (float)(2 * i) / (float)rot;
        float pos = powf(base, e);
        float inv = 1.0f / pos;
        if (r->kind == CELLM_ROPE_LINEAR) {
            inv = inv / (float)r->factor;
        } else if (r->kind == CELLM_ROPE_LLAMA3) {
            float factor = (float)r->factor, lo = (float)r->low_freq_factor,
                  hi = (float)r->high_freq_factor, old = (float)r->original_max_pos;
            float low_wl = old / lo, high_wl = old / hi;
            /* scalar / tensor is reciprocal-then-multiply in torch */
            float wavelen = (1.0f / inv) * (float)(2 * M_PI);
            if (wavelen > low_wl) {
                inv = inv / factor;
            } else if (!(wavelen < high_wl)) {
                float s = ((1.0f / wavelen) * old - lo) / (hi - lo);
                inv = (1.0f - s) * (inv / factor) + s * inv;
            }
        } else if (r->kind == CELLM_ROPE_YARN) {
            /* interpolation 1 / fl(factor * pos); the ramp (arange - low) / (high - low)
             * with both Python scalars taken to f32, clamped to [0, 1]; the extrapolation
             * weight w = 1 - ramp; inv = interp * (1 - w) + extrap * w */
            float interp = 1.0f / ((float)r->factor * pos);
            float ramp = ((float)i - (float)ylo) / (float)(yhi - ylo);
            ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
            float w = 1.0f - ramp;
            float a = interp * (1.0f - w), b = inv * w;
            inv = a + b;
        } else if (r->kind == CELLM_ROPE_LONGROPE) {
            inv = 1.0f / (r->short_factor[i] * pos);
        }
        out[i] = inv;
    }
}

void cellm_rope_inv_freq_long(const struct cellm_rope *r, int rot, float *out)
{
    float base = (float)r->theta;
    for (int i = 0; i < rot / 2; i++) {
        float e = (float)(2 * i) / (float)rot;
        out[i] = 1.0f / (r->long_factor[i] * powf(base, e));
    }
}

enum cellm_status cellm_desc_load(const char *dir, struct cellm_desc *d, struct cellm_error *err)
{
    memset(d, 0, sizeof *d);
    CELLM_TRY(cellm_config_load(dir, &d->cfg, err));
    enum cellm_status st = cellm_ckpt_open(dir, &d->ckpt, err);
    if (st) {
        cellm_config_free(&d->cfg);
        return st;
    }
    memcpy(d->warnings, d->ckpt.warnings, sizeof d->warnings);
    struct binder b = {d, err};
    const struct cellm_config *c = &d->cfg;
    d->layers = cellm_calloc((size_t)c->n_layers, sizeof *d->layers);
    if (!d->layers) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    d->embed_scale = c->embed_mult != 0 ? (float)c->embed_mult
                     : c->embed_scale   ? (float)sqrt((double)c->dim)
                                        : 1.0f;
    if ((st = bind_matrix(&b, "model.embed_tokens", 0, c->vocab, c->dim, &d->embed))) goto fail;
    if (c->tie_embeddings) {
        d->head = d->embed;
    } else if ((st = bind_matrix(&b, "lm_head", 0, c->vocab, c->dim, &d->head))) {
        goto fail;
    }
    if (c->hybrid && (st = cellm_hybrid_probe(d, err))) goto fail;
    if ((st = bind_vec(&b, c->hybrid ? cellm_hybrid_final_norm(c) : "model.norm.weight", c->dim, 1,
                       &d->final_norm)))
        goto fail;
    if (c->norm == CELLM_NORM_LAYER &&
        (st = bind_vec(&b, "model.norm.bias", c->dim, 1, &d->final_norm_b)))
        goto fail;
    d->experts = probe_experts(d);
    d->mla_split = c->mla && cellm_ckpt_find(&d->ckpt, "model.layers.0.self_attn.embed_q.weight");
    for (int i = 0; i < c->n_layers; i++)
        if ((st = bind_layer(&b, i))) goto fail;
    /* sized by head_dim from config.json: only now that every tensor has been checked
     * against the config is head_dim known to match real weights (a config claiming
     * 2^30 would otherwise cost gigabytes before the first shape error) */
    d->inv_freq_global = cellm_calloc((size_t)c->rot_dims / 2 + 1, sizeof(float));
    d->inv_freq_local = cellm_calloc((size_t)c->rot_dims / 2 + 1, sizeof(float));
    if (!d->inv_freq_global || !d->inv_freq_local) {
        st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    cellm_rope_inv_freq(&c->rope, c->rot_dims, d->inv_freq_global);
    cellm_rope_inv_freq(&c->rope_local, c->rot_dims, d->inv_freq_local);
    if (c->rope.kind == CELLM_ROPE_LONGROPE) {
        d->inv_freq_long = cellm_calloc((size_t)c->rot_dims / 2 + 1, sizeof(float));
        if (!d->inv_freq_long) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
        cellm_rope_inv_freq_long(&c->rope, c->rot_dims, d->inv_freq_long);
    }
    for (int i = 0; i < c->n_layers && c->layer_nope; i++)
        if (c->layer_nope[i] && !d->inv_freq_none &&
            !(d->inv_freq_none = cellm_calloc((size_t)c->rot_dims / 2 + 1, sizeof(float)))) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
    for (int i = 0; i < c->n_layers; i++) {
        struct cellm_layer *L = &d->layers[i];
        const struct cellm_rope *r = L->attn == CELLM_ATTN_SLIDING ? &c->rope_local : &c->rope;
        L->inv_freq = L->attn == CELLM_ATTN_SLIDING ? d->inv_freq_local : d->inv_freq_global;
        L->rope_attn = (float)r->attn_factor;
        if (c->layer_nope && c->layer_nope[i]) {
            L->nope = 1;
            L->inv_freq = d->inv_freq_none;
            L->rope_attn = 1;
            continue;
        }
        if (r->kind == CELLM_ROPE_LONGROPE) {
            L->inv_freq_long = d->inv_freq_long;
            /* a switch length beyond int32 is never reached: max_pos bounds positions */
            L->rope_long_after =
                r->original_max_pos >= INT32_MAX ? INT32_MAX : (int32_t)r->original_max_pos;
        }
    }
    if (c->gemma4 && (st = cellm_gemma4_bind(d, err))) goto fail;
    if (c->gemma3n && (st = cellm_gemma3n_bind(d, err))) goto fail;
    return CELLM_OK;
fail:
    cellm_desc_free(d);
    return st;
}

void *cellm_desc_own(struct cellm_desc *d, size_t n)
{
    struct binder b = {d, NULL};
    return own(&b, n);
}

void cellm_desc_free(struct cellm_desc *d)
{
    if (!d) return;
    if (d->layers)
        for (int i = 0; i < d->cfg.n_layers; i++)
            for (int id = 0; id < CELLM_LT_N; id++) {
                enum cellm_tkind k = cellm_layer_tensors[id].kind;
                if (k == CELLM_TK_HEADS || k == CELLM_TK_EXPERTS || k == CELLM_TK_EXPERT_VECS)
                    cellm_free(*(void **)layer_member(&d->layers[i], (enum cellm_lt)id));
                if (id == 0) cellm_free(d->layers[i].hyb);
            }
    cellm_free(d->layers);
    for (int i = 0; i < d->n_owned; i++)
        cellm_free(d->owned[i]);
    cellm_free(d->owned);
    cellm_free(d->inv_freq_global);
    cellm_free(d->inv_freq_local);
    cellm_free(d->inv_freq_long);
    cellm_free(d->inv_freq_none);
    cellm_ckpt_close(&d->ckpt);
    cellm_config_free(&d->cfg);
    memset(d, 0, sizeof *d);
}

/* For the state layers' binder (hybrid.c): the same checks as the table's tensors. */
enum cellm_status cellm_bind_matrix(struct cellm_desc *d, const char *mod, int64_t n_stack,
                                    int64_t rows, int64_t cols, struct cellm_weight *out,
                                    struct cellm_error *err)
{
    struct binder b = {d, err};
    return bind_matrix(&b, mod, n_stack, rows, cols, out);
}

enum cellm_status cellm_bind_vec(struct cellm_desc *d, const char *name, int64_t n, int required,
                                 struct cellm_vec *v, struct cellm_error *err)
{
    struct binder b = {d, err};
    return bind_vec(&b, name, n, required, v);
}
