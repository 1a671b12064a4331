/*
 * plan.c: the weights of a model as parameters of the StableHLO modules (see emit.h).
 *
 * One walk over the description registers every tensor the forward pass reads, under a
 * name the emitter looks up again: "l3_wq" for layer 3's member wq of model.h's tensor
 * table ("l3_wq_q"/"_s"/"_bi" for affine parts, not "_b": "l3_router_b" is the router's
 * bias; "l3_e_gate" for stacked expert gates). Nothing is copied: a parameter is a list of
 * contiguous pieces of the mapped checkpoint (one for a tensor or a row range of a fused
 * tensor, E for experts stored one tensor each or per-expert vectors, H for StableLM's
 * per-head norms), which the executor concatenates only when there is more than one.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "exec/xla/dequant.h"
#include "exec/xla/emit.h"
#include "model/hybrid.h"

static enum cellm_xh_ty fmt_ty(enum cellm_wfmt f)
{
    return f == CELLM_W_F16 ? XH_F16 : f == CELLM_W_BF16 ? XH_BF16 : XH_F32;
}

static enum cellm_status add(struct cellm_xla_plan *p, const char *name, enum cellm_xh_ty ty,
                             int rank, const int64_t *d, int nparts, size_t part_bytes,
                             struct cellm_error *err)
{
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        struct cellm_xla_wparam *w = cellm_realloc(p->w, (size_t)cap * sizeof *w);
        if (!w) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
        p->w = w;
        p->cap = cap;
    }
    struct cellm_xla_wparam *w = &p->w[p->n];
    memset(w, 0, sizeof *w);
    snprintf(w->name, sizeof w->name, "%s", name);
    w->ty = ty;
    w->rank = rank;
    for (int i = 0; i < rank; i++)
        w->d[i] = d[i];
    w->parts = cellm_calloc((size_t)nparts, sizeof *w->parts);
    if (!w->parts) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    w->nparts = nparts;
    w->part_bytes = part_bytes;
    w->bytes = (size_t)nparts * part_bytes;
    p->n++;
    return CELLM_OK;
}

enum cellm_status cellm_xla_plan_add(struct cellm_xla_plan *p, const char *name,
                                     enum cellm_xh_ty ty, int rank, const int64_t *d, int nparts,
                                     size_t part_bytes, struct cellm_error *err)
{
    return add(p, name, ty, rank, d, nparts, part_bytes, err);
}

static enum cellm_status add_vec(struct cellm_xla_plan *p, const char *name,
                                 const struct cellm_vec *v, struct cellm_error *err)
{
    if (v->fmt == CELLM_W_NONE) return CELLM_OK;
    int64_t d[1] = {v->n};
    size_t es = v->fmt == CELLM_W_F32 ? 4 : 2;
    CELLM_TRY(add(p, name, fmt_ty(v->fmt), 1, d, 1, (size_t)v->n * es, err));
    p->w[p->n - 1].parts[0] = v->data;
    return CELLM_OK;
}

/* ne stacked matrices (ne 0 = one plain matrix ws[0]). */
static enum cellm_status add_mat(struct cellm_xla_plan *p, const char *base,
                                 const struct cellm_weight *ws, int ne, struct cellm_error *err)
{
    const struct cellm_weight *w = &ws[0];
    int n = ne ? ne : 1, r = ne ? 3 : 2;
    char name[48];
    for (int e = 1; e < n; e++)
        if (ws[e].fmt != w->fmt || ws[e].rows != w->rows || ws[e].cols != w->cols ||
            ws[e].bits != w->bits || ws[e].group != w->group || ws[e].sdtype != w->sdtype)
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                              "xla: experts of %s are stored in different formats; the XLA "
                              "executor stacks them into one tensor",
                              w->name ? w->name : base);
    if (cellm_xla_fmt_packed(w->fmt) && !p->dequant_at_load)
        return cellm_xla_plan_packed(p, base, ws, ne, err); /* dequant.c */
    if (w->fmt >= CELLM_W_AFFINE && p->dequant_at_load) {
        int64_t d[3] = {n, w->rows, w->cols};
        size_t pb = (size_t)w->rows * (size_t)w->cols * sizeof(float);
        CELLM_TRY(add(p, base, XH_F32, r, ne ? d : d + 1, n, pb, err));
        struct cellm_xla_wparam *wp = &p->w[p->n - 1];
        wp->owned = cellm_malloc((size_t)n * pb);
        if (!wp->owned)
            return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory dequantizing %s", base);
        for (int e = 0; e < n; e++) {
            float *dst = (float *)(void *)(wp->owned + (size_t)e * pb);
            for (int64_t row = 0; row < w->rows; row++)
                cellm_weight_row(&ws[e], row, dst + row * w->cols);
            wp->parts[e] = wp->owned + (size_t)e * pb;
        }
        return CELLM_OK;
    }
    if (w->fmt != CELLM_W_AFFINE) {
        int64_t d[3] = {n, w->rows, w->cols};
        CELLM_TRY(add(p, base, fmt_ty(w->fmt), r, ne ? d : d + 1, n, (size_t)w->rows * w->row_bytes,
                      err));
        for (int e = 0; e < n; e++)
            p->w[p->n - 1].parts[e] = ws[e].data;
        return CELLM_OK;
    }
    int64_t dq[3] = {n, w->rows, w->cols * w->bits / 32};
    int64_t dg[3] = {n, w->rows, w->cols / w->group};
    enum cellm_xh_ty sty = w->sdtype == CELLM_DT_BF16 ? XH_BF16 : XH_F16;
    size_t gb = (size_t)w->rows * (size_t)dg[2] * 2;
    snprintf(name, sizeof name, "%s_q", base);
    CELLM_TRY(add(p, name, XH_U32, r, ne ? dq : dq + 1, n, (size_t)w->rows * w->row_bytes, err));
    for (int e = 0; e < n; e++)
        p->w[p->n - 1].parts[e] = ws[e].data;
    snprintf(name, sizeof name, "%s_s", base);
    CELLM_TRY(add(p, name, sty, r, ne ? dg : dg + 1, n, gb, err));
    for (int e = 0; e < n; e++)
        p->w[p->n - 1].parts[e] = ws[e].scales;
    snprintf(name, sizeof name, "%s_bi", base);
    CELLM_TRY(add(p, name, sty, r, ne ? dg : dg + 1, n, gb, err));
    for (int e = 0; e < n; e++)
        p->w[p->n - 1].parts[e] = ws[e].biases;
    return CELLM_OK;
}

/* Per-head vectors stacked to [n][hd] (StableLM's norms), or per-expert ones to [E][len]
 * (gpt-oss's expert biases). */
static enum cellm_status add_heads(struct cellm_xla_plan *p, const char *name,
                                   const struct cellm_vec *v, int n, struct cellm_error *err)
{
    for (int h = 1; h < n; h++)
        if (v[h].fmt != v[0].fmt)
            return cellm_errf(
                err, CELLM_ERR_UNSUPPORTED,
                "xla: per-head or per-expert vectors of one layer are stored in different "
                "formats");
    int64_t d[2] = {n, v[0].n};
    size_t es = v[0].fmt == CELLM_W_F32 ? 4 : 2;
    CELLM_TRY(add(p, name, fmt_ty(v[0].fmt), 2, d, n, (size_t)v[0].n * es, err));
    for (int h = 0; h < n; h++)
        p->w[p->n - 1].parts[h] = v[h].data;
    return CELLM_OK;
}

int cellm_xla_plan_find(const struct cellm_xla_plan *p, const char *name)
{
    for (int i = 0; i < p->n; i++)
        if (!strcmp(p->w[i].name, name)) return i;
    return -1;
}

void cellm_xla_plan_free(struct cellm_xla_plan *p)
{
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        cellm_free(p->w[i].parts);
        cellm_free(p->w[i].owned);
    }
    cellm_free(p->w);
    memset(p, 0, sizeof *p);
}

/* Layer l's tensors under "l<l>_<field>" (model.h's table; absent ones are skipped). */
static enum cellm_status build_layer(const struct cellm_desc *d, int l, struct cellm_xla_plan *p,
                                     struct cellm_error *err)
{
    const struct cellm_layer *L = &d->layers[l];
    for (int id = 0; id < CELLM_LT_N; id++) {
        const struct cellm_tensor_spec *s = &cellm_layer_tensors[id];
        int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
        if (!parts) continue;
        char n[48];
        snprintf(n, sizeof n, "l%d_%s", l, s->field);
        switch (s->kind) {
        case CELLM_TK_VEC:
            CELLM_TRY(add_vec(p, n, cellm_layer_vec(L, (enum cellm_lt)id), err));
            break;
        case CELLM_TK_HEADS:
            CELLM_TRY(add_heads(p, n, cellm_layer_heads(L, (enum cellm_lt)id), parts, err));
            break;
        case CELLM_TK_MAT:
            CELLM_TRY(add_mat(p, n, cellm_layer_weight(L, (enum cellm_lt)id), 0, err));
            break;
        case CELLM_TK_EXPERTS:
            CELLM_TRY(add_mat(p, n, cellm_layer_experts(L, (enum cellm_lt)id), parts, err));
            break;
        case CELLM_TK_EXPERT_VECS:
            CELLM_TRY(add_heads(p, n, cellm_layer_expert_vecs(L, (enum cellm_lt)id), parts, err));
            break;
        }
    }
    return CELLM_OK;
}

/* Layer l's state-layer tensors and shared expert (model/hybrid.h; emit_state.c and
 * emit_gdn.c read them): "l3_h_in", "l3_h_z", "l3_h_b", "l3_h_a", "l3_h_out", the conv
 * taps "l3_h_conv" [channels * kernel], "l3_h_alog", "l3_h_dtb", "l3_h_norm", and the
 * shared expert "l3_h_shg", "l3_h_shu", "l3_h_shd", "l3_h_shw". */
static enum cellm_status build_state(const struct cellm_desc *d, int l, struct cellm_xla_plan *p,
                                     struct cellm_error *err)
{
    const struct cellm_hyb_layer *h = d->layers[l].hyb;
    if (!h) return CELLM_OK;
    const struct {
        const char *n;
        const struct cellm_weight *w;
    } mats[] = {{"in", &h->in_proj}, {"z", &h->in_z},       {"b", &h->in_b},
                {"a", &h->in_a},     {"out", &h->out_proj}, {"shg", &h->sh_gate},
                {"shu", &h->sh_up},  {"shd", &h->sh_down},  {"shw", &h->sh_gate_w}};
    const struct {
        const char *n;
        const struct cellm_vec *v;
    } vecs[] = {{"conv", &h->conv}, {"alog", &h->a_log}, {"dtb", &h->dt_bias}, {"norm", &h->norm}};
    char n[48];
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        if (mats[i].w->fmt == CELLM_W_NONE) continue;
        snprintf(n, sizeof n, "l%d_h_%s", l, mats[i].n);
        CELLM_TRY(add_mat(p, n, mats[i].w, 0, err));
    }
    for (size_t i = 0; i < sizeof vecs / sizeof vecs[0]; i++) {
        snprintf(n, sizeof n, "l%d_h_%s", l, vecs[i].n);
        CELLM_TRY(add_vec(p, n, vecs[i].v, err)); /* absent vectors are skipped */
    }
    return CELLM_OK;
}

enum cellm_status cellm_xla_plan_build(const struct cellm_desc *d, int dequant_at_load,
                                       struct cellm_xla_plan *p, struct cellm_error *err)
{
    memset(p, 0, sizeof *p);
    const struct cellm_config *c = &d->cfg;
    p->half = c->rot_dims / 2;
    p->dequant_at_load = dequant_at_load;
    if (c->gemma4) p->prop_half = c->global_head_dim / 2; /* cos_g, sin_g: sliding layers */
    for (int l = 0; !p->prop_half && l < c->n_layers; l++)
        if (d->layers[l].attn == CELLM_ATTN_SLIDING &&
            d->layers[l].inv_freq != d->inv_freq_global &&
            (memcmp(d->inv_freq_local, d->inv_freq_global, (size_t)p->half * sizeof(float)) ||
             c->rope.attn_factor != c->rope_local.attn_factor ||
             c->rope.kind != c->rope_local.kind))
            p->local_rope = 1;
    enum cellm_status st = add_mat(p, "embed", &d->embed, 0, err);
    if (!st && !c->tie_embeddings) st = add_mat(p, "head", &d->head, 0, err);
    if (!st) st = add_vec(p, "final_norm", &d->final_norm, err);
    if (!st) st = add_vec(p, "final_norm_b", &d->final_norm_b, err);
    if (!st && c->ple_dim > 0) /* Gemma 4's per-layer embeddings (emit_g4.c) */
        st = add_mat(p, "ple_embed", &d->ple_embed, 0, err);
    if (!st && c->ple_dim > 0) st = add_mat(p, "ple_model", &d->ple_model, 0, err);
    if (!st && c->ple_dim > 0) st = add_vec(p, "ple_norm", &d->ple_norm, err);
    for (int k = 0; !st && c->gemma3n && k < c->altup_n - 1; k++) { /* emit_g3n.c */
        char n[32];
        snprintf(n, sizeof n, "altup_proj%d", k);
        st = add_mat(p, n, &d->altup_proj[k], 0, err);
        snprintf(n, sizeof n, "altup_unembed%d", k);
        if (!st) st = add_mat(p, n, &d->altup_unembed[k], 0, err);
    }
    for (int l = 0; !st && l < c->n_layers; l++)
        st = build_layer(d, l, p, err);
    for (int l = 0; !st && l < c->n_layers; l++)
        st = build_state(d, l, p, err);
    if (st) cellm_xla_plan_free(p);
    return st;
}

/* cos/sin of the rows' angles times the attention factor (YaRN, longrope; else 1), exactly
 * as the CPU's RoPE computes them. */
static void rope_tables(const float *inv_freq, float attn, int half, int p0, int T, float *cs,
                        float *sn)
{
    for (int t = 0; t < T; t++) {
        float pos = (float)(p0 + t);
        for (int i = 0; i < half; i++) {
            float angle = inv_freq[i] * pos;
            cs[(size_t)t * half + i] = cosf(angle) * attn;
            sn[(size_t)t * half + i] = sinf(angle) * attn;
        }
    }
}

/* The first layer of the given attention kind that rotates (its RoPE table, factor,
 * longrope switch): NoPE layers do not read the tables. */
static const struct cellm_layer *rope_layer(const struct cellm_desc *d, int sliding)
{
    for (int l = 0; l < d->cfg.n_layers; l++)
        if ((d->layers[l].attn == CELLM_ATTN_SLIDING) == sliding && !d->layers[l].nope)
            return &d->layers[l];
    return &d->layers[0];
}

int cellm_xla_rope_inputs(const struct cellm_desc *d, const struct cellm_xla_plan *p, int p0, int T,
                          int32_t seq_len, float *out, int *halfs)
{
    size_t tab = (size_t)T * (size_t)p->half;
    const struct cellm_layer *gl = rope_layer(d, 0), *ll = rope_layer(d, 1);
    int n = 0;
    /* Gemma 4: cos_g, sin_g are the sliding layers'; the full layers have cos_p, sin_p */
    const struct cellm_layer *first = p->prop_half ? ll : gl;
    rope_tables(cellm_layer_inv_freq(first, seq_len), first->rope_attn, p->half, p0, T, out,
                out + tab);
    halfs[n++] = p->half;
    halfs[n++] = p->half;
    if (p->local_rope) {
        rope_tables(cellm_layer_inv_freq(ll, seq_len), ll->rope_attn, p->half, p0, T, out + 2 * tab,
                    out + 3 * tab);
        halfs[n++] = p->half;
        halfs[n++] = p->half;
    }
    if (p->prop_half) {
        float *o = out + (size_t)n * tab;
        size_t ptab = (size_t)T * (size_t)p->prop_half;
        rope_tables(cellm_layer_inv_freq(gl, seq_len), gl->rope_attn, p->prop_half, p0, T, o,
                    o + ptab);
        halfs[n++] = p->prop_half;
        halfs[n++] = p->prop_half;
    }
    return n;
}
