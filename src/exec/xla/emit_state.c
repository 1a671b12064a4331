/*
 * emit_state.c: per-sequence state layers in the StableHLO modules (emit_state.h).
 *
 * LFM2's conv block mirrors cellm_cpu_conv_block (src/exec/cpu/conv_state.c): one
 * in_proj product split into B, C and x~, Bx = B * x~, the causal depthwise conv of Bx
 * over the window, y = C * u, one out_proj product. The conv of row t reads the rows
 * t..t+K-1 of [window; Bx] and sums its K products in the CPU's order (from zero, taps in
 * order), so its values are the CPU's bit for bit; only the products' f32 sums may be
 * ordered differently by the plugin.
 */
#include "exec/xla/emit_state.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "model/hybrid.h"

typedef struct cellm_xh_val val;

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

int cellm_xla_state_supported(const struct cellm_config *c)
{
    if (!cellm_config_has_state(c)) return 1;
    if (c->conv_kernel < 2) return 0;
    return c->hybrid == CELLM_HYBRID_LFM2 || c->hybrid == CELLM_HYBRID_QWEN3_5 ||
           c->hybrid == CELLM_HYBRID_QWEN3_NEXT;
}

/* Tensors of layer l's state: a conv window, and a recurrent state for Gated DeltaNet. */
static int layer_states(const struct cellm_desc *d, int l)
{
    switch (d->layers[l].mixer) {
    case CELLM_MIXER_CONV:
        return 1;
    case CELLM_MIXER_GDN:
        return 2;
    default:
        return 0;
    }
}

int cellm_xla_state_count(const struct cellm_desc *d)
{
    int n = 0;
    for (int l = 0; l < d->cfg.n_layers; l++)
        n += layer_states(d, l);
    return n;
}

int cellm_xla_state_shape(const struct cellm_desc *d, int i, int64_t *dims)
{
    const struct cellm_config *c = &d->cfg;
    for (int l = 0; l < c->n_layers; l++) {
        int n = layer_states(d, l);
        if (i >= n) {
            i -= n;
            continue;
        }
        if (i == 0) { /* the conv window, oldest input first */
            dims[0] = c->conv_kernel - 1;
            dims[1] = cellm_hybrid_channels(c);
            return 2;
        }
        dims[0] = c->lin_nv; /* S [nV][dk][dv] */
        dims[1] = c->lin_dk;
        dims[2] = c->lin_dv;
        return 3;
    }
    return 0;
}

void cellm_xla_cache_shape(const struct cellm_desc *d, int i, int64_t cap, int64_t dims[3])
{
    const struct cellm_config *c = &d->cfg;
    int l = i / 2, v = i % 2;
    dims[0] = dims[1] = dims[2] = 1;
    if (d->layers[l].mixer != CELLM_MIXER_ATTN) return;
    if (c->mla) {
        if (!v) dims[0] = cap, dims[2] = (int64_t)c->kv_lora_rank + c->qk_rope_dim;
        return;
    }
    dims[0] = cap; /* the layer's own geometry (Gemma 4's full layers differ) */
    dims[1] = d->layers[l].n_kv_heads;
    dims[2] = d->layers[l].head_dim;
}

enum cellm_status cellm_xla_state_declare(struct cellm_xh *b, const struct cellm_desc *d,
                                          int first_result, struct cellm_xla_st *st,
                                          struct cellm_error *err)
{
    memset(st, 0, sizeof *st);
    st->n = cellm_xla_state_count(d);
    if (!st->n) return CELLM_OK;
    int nl = d->cfg.n_layers;
    st->s = cellm_calloc((size_t)st->n, sizeof *st->s);
    st->first = cellm_calloc((size_t)nl, sizeof *st->first);
    if (!st->s || !st->first) {
        cellm_xla_state_free(st);
        return cellm_errf(err, CELLM_ERR_NOMEM, "xla emitter: out of memory");
    }
    st->nreal = cellm_xh_param(b, "nreal", XH_I32, 0, NULL, -1);
    for (int l = 0, i = 0; l < nl; l++) {
        st->first[l] = layer_states(d, l) ? i : -1;
        for (int k = 0; k < layer_states(d, l); k++, i++) {
            int64_t dims[CELLM_XH_MAX_RANK];
            int r = cellm_xla_state_shape(d, i, dims);
            char n[32];
            snprintf(n, sizeof n, "cs_%d", i);
            st->s[i] = cellm_xh_param(b, n, XH_F32, r, dims, first_result + i);
        }
    }
    return CELLM_OK;
}

void cellm_xla_state_results(struct cellm_xh *b, const struct cellm_xla_st *st)
{
    for (int i = 0; i < st->n; i++)
        cellm_xh_result(b, &st->s[i]);
}

void cellm_xla_state_free(struct cellm_xla_st *st)
{
    cellm_free(st->s);
    cellm_free(st->first);
    memset(st, 0, sizeof *st);
}

val cellm_xla_state_conv(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                         struct cellm_xla_st *st, int l, int si, val x)
{
    int64_t T = x.d[0], C = x.d[1], K = d->cfg.conv_kernel;
    val parts[2] = {st->s[si], x};
    val X = cellm_xh_concat(b, parts, 2, 0); /* [K-1+T, C] */
    char n[48];
    snprintf(n, sizeof n, "l%d_h_conv", l);
    val cw = cellm_xla_em_param(em, n);
    cw = cellm_xh_reshape(b, cellm_xh_convert(b, cw, XH_F32), 2, DIMS(C, K));
    val u = cellm_xh_const_f32(b, 0.0f, 2, DIMS(T, C));
    for (int64_t j = 0; j < K; j++) {
        val xj = cellm_xh_slice(b, X, DIMS(j, 0), DIMS(j + T, C));
        val wj = cellm_xh_reshape(b, cellm_xh_slice(b, cw, DIMS(0, j), DIMS(C, j + 1)), 1, DIMS(C));
        wj = cellm_xh_bcast(b, wj, 2, DIMS(T, C), DIMS(1));
        u = cellm_xh_bin(b, "add", u, cellm_xh_bin(b, "multiply", wj, xj));
    }
    /* the window after the call: the K-1 inputs before row nreal */
    val zero = cellm_xh_const_int(b, XH_I32, 0, 0, NULL);
    val starts[2] = {st->nreal, zero};
    st->s[si] = cellm_xh_dyn_slice(b, X, starts, DIMS(K - 1, C));
    return u;
}

/* LFM2's short gated conv of layer l (docs/forward/lfm2.md). */
static val conv_block(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                      struct cellm_xla_st *st, int l, val h)
{
    const struct cellm_hyb_layer *w = d->layers[l].hyb;
    int64_t T = h.d[0], H = d->cfg.dim;
    char n[48];
    snprintf(n, sizeof n, "l%d_h_in", l);
    val p = cellm_xla_em_linear(em, h, n, &w->in_proj); /* [T, 3H]: B, C, x~ */
    val B = cellm_xh_slice(b, p, DIMS(0, 0), DIMS(T, H));
    val C = cellm_xh_slice(b, p, DIMS(0, H), DIMS(T, 2 * H));
    val xt = cellm_xh_slice(b, p, DIMS(0, 2 * H), DIMS(T, 3 * H));
    val u = cellm_xla_state_conv(em, b, d, st, l, st->first[l], cellm_xh_bin(b, "multiply", B, xt));
    val y = cellm_xh_bin(b, "multiply", C, u);
    snprintf(n, sizeof n, "l%d_h_out", l);
    return cellm_xla_em_linear(em, y, n, &w->out_proj);
}

val cellm_xla_state_mixer(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                          struct cellm_xla_st *st, int l, val h)
{
    if (d->layers[l].mixer == CELLM_MIXER_GDN) return cellm_xla_gdn_block(em, b, d, st, l, h);
    return conv_block(em, b, d, st, l, h);
}
