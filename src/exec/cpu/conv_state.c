/*
 * conv_state.c: per-sequence state storage of the CPU executor, LFM2's short gated
 * convolution, the shared expert and the gated-attention helpers (seqstate.h).
 * Elementwise code rounds like the reference (the build has -ffp-contract=off).
 */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "ops.h"
#include "seqstate.h"

enum cellm_status cellm_cpu_state_reserve(const struct cellm_desc *d, struct cellm_cpu_state *s,
                                          struct cellm_error *err)
{
    if (s->conv) return CELLM_OK;
    const struct cellm_config *c = &d->cfg;
    s->conv = cellm_calloc((size_t)c->n_layers, sizeof *s->conv);
    s->rec = cellm_calloc((size_t)c->n_layers, sizeof *s->rec);
    int ok = s->conv && s->rec;
    for (int l = 0; ok && l < c->n_layers; l++) {
        int64_t nc = cellm_hybrid_conv_floats(c, l), nr = cellm_hybrid_rec_floats(c, l);
        if (nc) ok = (s->conv[l] = cellm_calloc((size_t)nc, sizeof(float))) != NULL;
        if (ok && nr) ok = (s->rec[l] = cellm_calloc((size_t)nr, sizeof(float))) != NULL;
    }
    s->len = 0;
    if (!ok) {
        cellm_cpu_state_free(d, s);
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for a sequence's conv/recurrent state");
    }
    return CELLM_OK;
}

void cellm_cpu_state_free(const struct cellm_desc *d, struct cellm_cpu_state *s)
{
    for (int l = 0; l < d->cfg.n_layers; l++) {
        if (s->conv) cellm_free(s->conv[l]);
        if (s->rec) cellm_free(s->rec[l]);
    }
    cellm_free(s->conv);
    cellm_free(s->rec);
    memset(s, 0, sizeof *s);
}

enum cellm_status cellm_cpu_hyb_begin(const struct cellm_desc *d, struct cellm_cpu_hyb *h,
                                      const struct cellm_exec_row *rows, int n,
                                      struct cellm_cpu_state *states, size_t stride,
                                      struct cellm_error *err)
{
    if (d->cfg.lin_dv > CELLM_CPU_GDN_MAX_DV)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cpu executor: linear_value_head_dim %d exceeds the %d it supports",
                          d->cfg.lin_dv, CELLM_CPU_GDN_MAX_DV);
    CELLM_TRY(cellm_cpu_hyb_reserve(&d->cfg, h, n, err));
    for (int i = 0; i < n; i++) {
        struct cellm_cpu_state *st =
            (struct cellm_cpu_state *)(void *)((char *)states + (size_t)rows[i].seq * stride);
        CELLM_TRY(cellm_cpu_state_reserve(d, st, err));
        h->row_st[i] = st;
    }
    for (int i = 0; i < n; i++)
        CELLM_TRY(cellm_state_row_check(&d->cfg, rows, i, h->row_st[i]->len, err));
    return CELLM_OK;
}

void cellm_cpu_hyb_end(struct cellm_cpu_hyb *h, const struct cellm_exec_row *rows, int n)
{
    for (int i = 0; i < n; i++)
        h->row_st[i]->len = rows[i].pos + 1;
}

int cellm_cpu_state_mixer(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                          struct cellm_cpu_hyb *h, const float *x, int n, float *out)
{
    switch (d->layers[l].mixer) {
    case CELLM_MIXER_CONV:
        cellm_cpu_conv_block(e, d, l, h, x, n, out);
        return 1;
    case CELLM_MIXER_GDN:
        cellm_cpu_gdn_block(e, d, l, h, x, n, out);
        return 1;
    default:
        return 0;
    }
}

static int grow(float **p, size_t n)
{
    float *q = cellm_realloc(*p, (n ? n : 1) * sizeof(float));
    if (!q) return 0;
    *p = q;
    return 1;
}

enum cellm_status cellm_cpu_hyb_reserve(const struct cellm_config *c, struct cellm_cpu_hyb *h,
                                        int rows, struct cellm_error *err)
{
    if (rows <= h->rows) return CELLM_OK;
    size_t r = (size_t)rows, H = (size_t)c->dim;
    size_t kd = (size_t)c->lin_nk * c->lin_dk, vd = (size_t)c->lin_nv * c->lin_dv;
    size_t ch = (size_t)cellm_hybrid_channels(c), nv = (size_t)c->lin_nv;
    size_t proj = c->hybrid == CELLM_HYBRID_LFM2 ? 3 * H : 2 * kd + 2 * vd;
    size_t qd = (size_t)c->n_heads * c->head_dim, S = (size_t)c->shared_ffn_dim;
    int ok = grow(&h->proj, r * proj) && grow(&h->proj2, r * 2 * nv) && grow(&h->conv, r * ch) &&
             grow(&h->core, r * (vd > H ? vd : H)) && grow(&h->z, r * vd) && grow(&h->b, r * nv) &&
             grow(&h->a, r * nv) && grow(&h->qg, r * 2 * qd) && grow(&h->sh_g, r * S) &&
             grow(&h->sh_u, r * S) && grow(&h->sh_y, r * H) && grow(&h->sh_w, r);
    struct cellm_cpu_state **st = ok ? cellm_realloc(h->row_st, r * sizeof *st) : NULL;
    if (st) h->row_st = st;
    if (!ok || !st)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for the state blocks of %d rows", rows);
    h->rows = rows;
    return CELLM_OK;
}

void cellm_cpu_hyb_free(struct cellm_cpu_hyb *h)
{
    float *b[] = {h->proj, h->proj2, h->conv, h->core, h->z,    h->b,
                  h->a,    h->qg,    h->sh_g, h->sh_u, h->sh_y, h->sh_w};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        cellm_free(b[i]);
    cellm_free(h->row_st);
    memset(h, 0, sizeof *h);
}

void cellm_cpu_conv_step(const struct cellm_vec *w, int K, int64_t C, float *win, const float *x,
                         float *y)
{
    for (int64_t ch = 0; ch < C; ch++) {
        float s = 0;
        for (int j = 0; j < K - 1; j++) {
            float t = cellm_vec_at(w, ch * K + j) * win[(size_t)j * C + ch];
            s = s + t;
        }
        float t = cellm_vec_at(w, ch * K + K - 1) * x[ch];
        y[ch] = s + t;
    }
    if (K < 2) return;
    memmove(win, win + C, (size_t)(K - 2) * (size_t)C * sizeof(float));
    memcpy(win + (size_t)(K - 2) * C, x, (size_t)C * sizeof(float));
}

/*
 * LFM2 (docs/forward/lfm2.md): BCx = in_proj(x) split into B, C, x~; Bx = B * x~; u = the
 * causal depthwise conv of Bx (kernel L, no activation); y = C * u; out_proj(y).
 */
void cellm_cpu_conv_block(const struct cellm_cpu_env *e, const struct cellm_desc *d, int l,
                          struct cellm_cpu_hyb *h, const float *x, int n, float *out)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_hyb_layer *w = d->layers[l].hyb;
    int64_t H = c->dim;
    e->matmul_exact(e->ctx, &w->in_proj, x, H, n, h->proj, 3 * H);
    for (int i = 0; i < n; i++) {
        float *p = h->proj + (size_t)i * 3 * H, *bx = h->conv + (size_t)i * H;
        const float *B = p, *C = p + H, *xt = p + 2 * H;
        for (int64_t k = 0; k < H; k++)
            bx[k] = B[k] * xt[k];
        float *u = h->core + (size_t)i * H;
        cellm_cpu_conv_step(&w->conv, c->conv_kernel, H, h->row_st[i]->conv[l], bx, u);
        for (int64_t k = 0; k < H; k++)
            u[k] = C[k] * u[k];
    }
    e->matmul_exact(e->ctx, &w->out_proj, h->core, H, n, out, H);
}

static float sigmoidf(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void cellm_cpu_shared_expert(const struct cellm_cpu_env *e, const struct cellm_desc *d,
                             const struct cellm_layer *L, struct cellm_cpu_hyb *h, const float *x,
                             int n, float *out)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_hyb_layer *w = L->hyb;
    int64_t H = c->dim, S = c->shared_ffn_dim;
    e->matmul(e->ctx, &w->sh_gate, x, H, n, h->sh_g, S);
    e->matmul(e->ctx, &w->sh_up, x, H, n, h->sh_u, S);
    e->matmul_exact(e->ctx, &w->sh_gate_w, x, H, n, h->sh_w, 1);
    for (int i = 0; i < n; i++) {
        float *g = h->sh_g + (size_t)i * S;
        const float *u = h->sh_u + (size_t)i * S;
        if (e->fast)
            cellm_fast_glu(e->fisa, c->act, g, u, S);
        else
            cellm_op_glu(c->act, g, u, S);
    }
    e->matmul(e->ctx, &w->sh_down, h->sh_g, S, n, h->sh_y, H);
    for (int i = 0; i < n; i++) {
        float gate = sigmoidf(h->sh_w[i]);
        float *o = out + (size_t)i * H;
        const float *y = h->sh_y + (size_t)i * H;
        for (int64_t k = 0; k < H; k++) {
            float t = gate * y[k];
            o[k] = o[k] + t;
        }
    }
}

void cellm_cpu_attn_gate_split(const struct cellm_config *c, struct cellm_cpu_hyb *h, float *q,
                               int n)
{
    int64_t hd = c->head_dim, nh = c->n_heads, qd = nh * hd;
    for (int i = 0; i < n; i++) {
        float *qg = h->qg + (size_t)i * 2 * qd;
        for (int64_t k = 0; k < nh; k++)
            memcpy(q + (size_t)i * qd + k * hd, qg + k * 2 * hd, (size_t)hd * sizeof(float));
        /* the gates move to the front half of the row, in head order */
        for (int64_t k = 0; k < nh; k++)
            memmove(qg + k * hd, qg + k * 2 * hd + hd, (size_t)hd * sizeof(float));
    }
}

void cellm_cpu_attn_gate_apply(const struct cellm_config *c, const struct cellm_cpu_hyb *h,
                               float *att, int n)
{
    int64_t qd = (int64_t)c->n_heads * c->head_dim;
    for (int i = 0; i < n; i++) {
        const float *g = h->qg + (size_t)i * 2 * qd;
        float *a = att + (size_t)i * qd;
        for (int64_t k = 0; k < qd; k++)
            a[k] = a[k] * sigmoidf(g[k]);
    }
}
