/*
 * emit_mla.c: DeepSeek-V3's multi-head latent attention in the StableHLO modules
 * (docs/forward/deepseek-v3.md), in the absorbed form of the CPU (src/exec/cpu/mla.c).
 *
 * The cache of an MLA layer is the latent: k_l is [cap, 1, r + qk_rope] (the normed c~
 * then the rotated k_pe of each position) and v_l a placeholder [1, 1, 1]
 * (cellm_xla_cache_shape). The query moves into the latent space once per row and head
 * (q~_h = Wk_h^T q_nope_h), the score of key p is [q~_h, q_pe_h] . [c~_p, k_pe_p] times
 * the scale, the softmax-weighted sum of the latents goes through Wv_h at the end, and
 * o_proj follows. Wk_h and Wv_h come from kv_b_proj (Hugging Face) or from mlx-lm's per
 * head embed_q / unembed_out. The products are the CPU's; only the order of the f32
 * sums may differ (the reassociation argument of the spec).
 */
#include <math.h>
#include <stdio.h>

#include "exec/xla/emit_state.h"
#include "model/model.h"

typedef struct cellm_xh_val val;

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* The latent projections' own norms: DeepseekV3RMSNorm's default eps (as mla.c). */
#define MLA_NORM_EPS 1e-6f

static val splat(struct cellm_xh *b, float v, const val *like)
{
    return cellm_xh_const_f32(b, v, like->rank, like->d);
}

static val bin(struct cellm_xh *b, const char *op, val x, val y)
{
    return cellm_xh_bin(b, op, x, y);
}

static const char *pname(char *n, size_t sz, int l, enum cellm_lt id)
{
    snprintf(n, sz, "l%d_%s", l, cellm_layer_tensors[id].field);
    return n;
}

/* x [T, n] times layer l's matrix id. */
static val lin(void *em, val x, const struct cellm_desc *d, int l, enum cellm_lt id)
{
    char n[48];
    return cellm_xla_em_linear(em, x, pname(n, sizeof n, l, id),
                               cellm_layer_weight(&d->layers[l], id));
}

/* RMSNorm of x [T, n] with layer l's vector id, as cellm_op_norm: w * (x * r). */
static val rms(void *em, struct cellm_xh *b, val x, int l, enum cellm_lt id)
{
    char n[48];
    val w = cellm_xh_convert(b, cellm_xla_em_param(em, pname(n, sizeof n, l, id)), XH_F32);
    val ss = cellm_xh_reduce(b, bin(b, "multiply", x, x), "add", 1, DIMS(1), 0);
    val var = bin(b, "divide", ss, splat(b, (float)x.d[1], &ss));
    val r = bin(b, "divide", splat(b, 1.0f, &var),
                cellm_xh_un(b, "sqrt", bin(b, "add", var, splat(b, MLA_NORM_EPS, &var))));
    val y = bin(b, "multiply", x, cellm_xh_bcast(b, r, 2, x.d, DIMS(0)));
    return bin(b, "multiply", cellm_xh_bcast(b, w, 2, x.d, DIMS(1)), y);
}

/* Rotate-half RoPE of x [.., dr] (last dim) with tables [T, dr/2] on dim 0; first the
 * pairs (2i, 2i+1) move to (i, i + dr/2) when the model interleaves. */
static val rope(struct cellm_xh *b, const struct cellm_config *c, val x, val cs, val sn)
{
    int r = x.rank;
    int64_t dr = x.d[r - 1], half = dr / 2, d[CELLM_XH_MAX_RANK], lo[CELLM_XH_MAX_RANK];
    for (int i = 0; i < r; i++)
        d[i] = x.d[i], lo[i] = 0;
    if (c->rope_interleave) {
        int64_t d2[CELLM_XH_MAX_RANK], perm[CELLM_XH_MAX_RANK];
        for (int i = 0; i < r - 1; i++)
            d2[i] = x.d[i], perm[i] = i;
        d2[r - 1] = half;
        d2[r] = 2;
        perm[r - 1] = r;
        perm[r] = r - 1;
        x = cellm_xh_transpose(b, cellm_xh_reshape(b, x, r + 1, d2), perm);
        x = cellm_xh_reshape(b, x, r, d);
    }
    d[r - 1] = half;
    val x1 = cellm_xh_slice(b, x, lo, d);
    lo[r - 1] = half;
    d[r - 1] = dr;
    val x2 = cellm_xh_slice(b, x, lo, d);
    int64_t bd[2] = {0, r - 1};
    val cb = cellm_xh_bcast(b, cs, r, x1.d, bd), sb = cellm_xh_bcast(b, sn, r, x1.d, bd);
    val parts[2];
    parts[0] = bin(b, "subtract", bin(b, "multiply", x1, cb), bin(b, "multiply", x2, sb));
    parts[1] = bin(b, "add", bin(b, "multiply", x2, cb), bin(b, "multiply", x1, sb));
    return cellm_xh_concat(b, parts, 2, r - 1);
}

val cellm_xla_mla_attention(void *em, struct cellm_xh *b, const struct cellm_desc *d, int l, val h,
                            val pos0, val mask, val cs, val sn, val *cache)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_layer *L = &d->layers[l];
    const int64_t T = h.d[0], H = c->n_heads, r = c->kv_lora_rank, dn = c->qk_nope_dim;
    const int64_t dr = c->qk_rope_dim, dv = c->v_head_dim, dq = dn + dr, ent = r + dr;
    const int64_t cap = cache->d[0];
    char n[48];
    val q;
    if (c->q_lora_rank) {
        val qa = rms(em, b, lin(em, h, d, l, CELLM_LT_MLA_Q_A), l, CELLM_LT_MLA_Q_A_NORM);
        q = lin(em, qa, d, l, CELLM_LT_MLA_Q_B);
    } else {
        q = lin(em, h, d, l, CELLM_LT_MLA_Q);
    }
    q = cellm_xh_reshape(b, q, 3, DIMS(T, H, dq));
    val kva = lin(em, h, d, l, CELLM_LT_MLA_KV_A); /* [T, r + dr] */
    val lat = rms(em, b, cellm_xh_slice(b, kva, DIMS(0, 0), DIMS(T, r)), l, CELLM_LT_MLA_KV_A_NORM);
    val kpe = rope(b, c, cellm_xh_slice(b, kva, DIMS(0, r), DIMS(T, ent)), cs, sn);
    val parts[2] = {lat, kpe};
    val entry = cellm_xh_reshape(b, cellm_xh_concat(b, parts, 2, 1), 3, DIMS(T, 1, ent));
    val zero = cellm_xh_const_int(b, XH_I32, 0, 0, NULL);
    val starts[3] = {pos0, zero, zero};
    *cache = cellm_xh_dyn_update(b, *cache, entry, starts);
    val kv = cellm_xh_reshape(b, *cache, 2, DIMS(cap, ent));
    val qn = cellm_xh_slice(b, q, DIMS(0, 0, 0), DIMS(T, H, dn));
    val qpe = rope(b, c, cellm_xh_slice(b, q, DIMS(0, 0, dn), DIMS(T, H, dq)), cs, sn);
    /* Wk_h [H, dn, r] (or its transpose per head) and Wv_h [H, dv, r] */
    val qc, wv;
    if (d->mla_split) {
        val wk = cellm_xla_em_weight(em, pname(n, sizeof n, l, CELLM_LT_MLA_EMBED_Q),
                                     &L->mla_embed_q[0]); /* [H, r, dn] */
        wv = cellm_xla_em_weight(em, pname(n, sizeof n, l, CELLM_LT_MLA_UNEMBED),
                                 &L->mla_unembed[0]);            /* [H, dv, r] */
        qc = cellm_xh_dot(b, qn, wk, 1, DIMS(1), DIMS(0), 2, 2); /* [H, T, r] */
    } else {
        val kvb = cellm_xla_em_weight(em, pname(n, sizeof n, l, CELLM_LT_MLA_KV_B), &L->mla_kv_b);
        kvb = cellm_xh_reshape(b, kvb, 3, DIMS(H, dn + dv, r));
        val wk = cellm_xh_slice(b, kvb, DIMS(0, 0, 0), DIMS(H, dn, r));
        wv = cellm_xh_slice(b, kvb, DIMS(0, dn, 0), DIMS(H, dn + dv, r));
        qc = cellm_xh_dot(b, qn, wk, 1, DIMS(1), DIMS(0), 2, 1); /* [H, T, r] */
    }
    val qparts[2] = {qc, cellm_xh_transpose(b, qpe, DIMS(1, 0, 2))};
    val qcat = cellm_xh_concat(b, qparts, 2, 2);            /* [H, T, ent] */
    val s = cellm_xh_dot(b, qcat, kv, 0, NULL, NULL, 2, 1); /* [H, T, cap] */
    s = bin(b, "multiply", s, splat(b, (float)c->attn_scale, &s));
    s = cellm_xh_select(b, cellm_xh_bcast(b, mask, 3, s.d, DIMS(1, 2)), s, splat(b, -INFINITY, &s));
    val m = cellm_xh_reduce(b, s, "maximum", 1, DIMS(2), -INFINITY);
    val ex = cellm_xh_un(b, "exponential",
                         bin(b, "subtract", s, cellm_xh_bcast(b, m, 3, s.d, DIMS(0, 1))));
    val sum = cellm_xh_reduce(b, ex, "add", 1, DIMS(2), 0);
    val inv = bin(b, "divide", splat(b, 1.0f, &sum), sum);
    val pr = bin(b, "multiply", ex, cellm_xh_bcast(b, inv, 3, ex.d, DIMS(0, 1)));
    val kl = cellm_xh_slice(b, kv, DIMS(0, 0), DIMS(cap, r));
    val ls = cellm_xh_dot(b, pr, kl, 0, NULL, NULL, 2, 0);      /* [H, T, r] */
    val o = cellm_xh_dot(b, ls, wv, 1, DIMS(0), DIMS(0), 2, 2); /* [H, T, dv] */
    o = cellm_xh_reshape(b, cellm_xh_transpose(b, o, DIMS(1, 0, 2)), 2, DIMS(T, H * dv));
    return lin(em, o, d, l, CELLM_LT_MLA_O);
}
