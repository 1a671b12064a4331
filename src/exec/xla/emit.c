/*
 * emit.c: the forward pass of struct cellm_desc as one StableHLO module (see emit.h).
 *
 * The graph mirrors the CPU executor step by step (src/exec/cpu/cpu.c and ops.c): the
 * same norms, the half-split RoPE on the first rot_dims of each head, grouped-query
 * attention over the cache with the causal and sliding-window masks, Gemma's soft-caps,
 * sandwich norms and embedding scale, StableLM's per-head norms and parallel residual,
 * fused Phi-3 projections (row views, so one dot each) and Qwen3-MoE routing (softmax,
 * top-k by repeated argmax with the lowest index winning ties, over probabilities
 * materialised behind an optimization barrier so that equality tests are exact, renormalisation, a
 * masked-dense combination of all experts) and gpt-oss's pieces (attention sinks in the softmax,
 * router bias and top-k-then-softmax, expert biases, gate and up interleaved or apart, the
 * clamped SwiGLU), and the pieces of the families of 2025-26 in files beside this one
 * (emit_pos.c: Llama 4's interleaved RoPE, weightless q/k norm and chunk mask, the query
 * scales of Llama 4 and Mistral 3; emit_moe.c: glm4_moe's grouped sigmoid router and
 * Llama 4's, shared experts). Elementwise formulas are written with the
 * reference's operation order; every dot is f32 at precision HIGHEST. Weights arrive in
 * their stored format and are widened (convert) or dequantized (codes unpacked with
 * shifts and masks, w = s*q + b as two separately rounded ops) inside the graph. The
 * RoPE angles come in as host-computed cos/sin tables, computed exactly as the CPU does.
 */
#include "exec/xla/emit.h"
#include "exec/xla/emit_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "exec/xla/dequant.h"
#include "exec/xla/emit_state.h"
#include "model/hybrid.h"
#include "model/gemma4.h"

/* ---- weights --------------------------------------------------------------------------- */

/* [lead.., G] -> [lead.., G*group], each value repeated over its group. */
static val expand_groups(struct em *e, val x, int group)
{
    int64_t d[CELLM_XH_MAX_RANK];
    int r = x.rank;
    for (int i = 0; i < r; i++)
        d[i] = x.d[i];
    d[r] = group;
    val like = cellm_xh_shape(XH_F32, r + 1, d);
    val y = bc_lead(e, x, &like);
    d[r - 1] *= group;
    return cellm_xh_reshape(e->b, y, r, d);
}

/* MLX affine: codes [lead.., W] u32 (LSB-first bit stream per row), scales and biases
 * [lead.., G]. Returns f32 [lead.., cols] = fl(fl(s * q) + b). */
static val dequant(struct em *e, val q, val s, val bi, int bits, int group, int64_t cols)
{
    int r = q.rank;
    int64_t d[CELLM_XH_MAX_RANK];
    for (int i = 0; i < r; i++)
        d[i] = q.d[i];
    val codes;
    if (32 % bits == 0) {
        /* each word holds 32/bits whole codes */
        d[r] = 32 / bits;
        val like = cellm_xh_shape(XH_U32, r + 1, d);
        val wq = bc_lead(e, q, &like);
        val sh = cellm_xh_iota(e->b, XH_U32, r + 1, d, r);
        sh = bin(e, "multiply", sh, cellm_xh_const_int(e->b, XH_U32, bits, r + 1, d));
        val v = bin(e, "shift_right_logical", wq, sh);
        v = bin(e, "and", v, cellm_xh_const_int(e->b, XH_U32, (1 << bits) - 1, r + 1, d));
        d[r - 1] = cols;
        codes = cellm_xh_reshape(e->b, v, r, d);
    } else {
        /* codes straddle words: expand to single bits, regroup by `bits`, weigh and sum */
        d[r] = 32;
        val like = cellm_xh_shape(XH_U32, r + 1, d);
        val wq = bc_lead(e, q, &like);
        val sh = cellm_xh_iota(e->b, XH_U32, r + 1, d, r);
        val bit = bin(e, "and", bin(e, "shift_right_logical", wq, sh),
                      cellm_xh_const_int(e->b, XH_U32, 1, r + 1, d));
        d[r - 1] = cols;
        d[r] = bits;
        bit = cellm_xh_reshape(e->b, bit, r + 1, d);
        val pw = bin(e, "shift_left", cellm_xh_const_int(e->b, XH_U32, 1, r + 1, d),
                     cellm_xh_iota(e->b, XH_U32, r + 1, d, r));
        codes = cellm_xh_reduce(e->b, bin(e, "multiply", bit, pw), "add", 1, DIMS(r), 0);
    }
    val qf = cellm_xh_convert(e->b, codes, XH_F32);
    val sf = expand_groups(e, f32(e, s), group);
    val bf = expand_groups(e, f32(e, bi), group);
    return bin(e, "add", bin(e, "multiply", sf, qf), bf);
}

/* The f32 value of a matrix parameter family named `base` (plain, or _q/_s/_bi). */
static val matrix(struct em *e, const char *base, const struct cellm_weight *w)
{
    char n[48];
    if (cellm_xla_fmt_packed(w->fmt) && cellm_xla_plan_find(e->p, base) < 0)
        return cellm_xla_dequant_packed(e->b, e->p, e->w, base, w); /* dequant.c */
    if (w->fmt != CELLM_W_AFFINE || cellm_xla_plan_find(e->p, base) >= 0)
        return f32(e, P(e, base, 0)); /* stored floats, or dequantized at load */
    snprintf(n, sizeof n, "%s_q", base);
    val q = P(e, n, 0);
    snprintf(n, sizeof n, "%s_s", base);
    val s = P(e, n, 0);
    snprintf(n, sizeof n, "%s_bi", base);
    val bi = P(e, n, 0);
    return dequant(e, q, s, bi, w->bits, w->group, w->cols);
}

/* y[N, rows] = x[N, cols] . W^T (+ bias). */
static val linear(struct em *e, val x, const char *base, const struct cellm_weight *w, val bias)
{
    val W = matrix(e, base, w);
    val y = cellm_xh_dot(e->b, x, W, 0, NULL, NULL, 1, 1);
    if (cellm_xh_ok(&bias)) y = bin(e, "add", y, bc_tail(e, f32(e, bias), &y));
    return y;
}

/* x times layer l's matrix id, plus its bias (bias_id < 0: none). */
static val linear_l(struct em *e, val x, int l, enum cellm_lt id, int bias_id)
{
    char base[48];
    snprintf(base, sizeof base, "l%d_%s", l, cellm_layer_tensors[id].field);
    val bias = bias_id >= 0 ? PL(e, l, (enum cellm_lt)bias_id) : none();
    return linear(e, x, base, cellm_layer_weight(&e->d->layers[l], id), bias);
}

/* ---- elementwise blocks ---------------------------------------------------------------- */

/* Norm over the last dim of x; w (and b) broadcast over x's trailing dims. */
static val norm(struct em *e, enum cellm_norm_kind kind, val x, val w, val bias)
{
    int r = x.rank;
    float n = (float)x.d[r - 1], eps = (float)e->c->norm_eps;
    val y;
    if (kind == CELLM_NORM_LAYER) {
        val s = cellm_xh_reduce(e->b, x, "add", 1, DIMS(r - 1), 0);
        val mean = bin(e, "divide", s, splat(e, n, &s));
        val dl = bin(e, "subtract", x, bc_lead(e, mean, &x));
        val v = cellm_xh_reduce(e->b, bin(e, "multiply", dl, dl), "add", 1, DIMS(r - 1), 0);
        v = bin(e, "divide", v, splat(e, n, &v));
        val rs = bin(e, "divide", splat(e, 1.0f, &v),
                     cellm_xh_un(e->b, "sqrt", bin(e, "add", v, splat(e, eps, &v))));
        y = bin(e, "multiply", dl, bc_lead(e, rs, &x));
        if (cellm_xh_ok(&w)) y = bin(e, "multiply", y, bc_tail(e, f32(e, w), &x));
        if (cellm_xh_ok(&bias)) y = bin(e, "add", y, bc_tail(e, f32(e, bias), &x));
        return y;
    }
    val ss = cellm_xh_reduce(e->b, bin(e, "multiply", x, x), "add", 1, DIMS(r - 1), 0);
    val v = bin(e, "divide", ss, splat(e, n, &ss));
    if (kind == CELLM_NORM_RMS_DIV) { /* Gemma 3n: x / sqrt(mean + eps), then * w */
        val root = cellm_xh_un(e->b, "sqrt", bin(e, "add", v, splat(e, eps, &v)));
        y = bin(e, "divide", x, bc_lead(e, root, &x));
        return cellm_xh_ok(&w) ? bin(e, "multiply", y, bc_tail(e, f32(e, w), &x)) : y;
    }
    val rs = bin(e, "divide", splat(e, 1.0f, &v),
                 cellm_xh_un(e->b, "sqrt", bin(e, "add", v, splat(e, eps, &v))));
    y = bin(e, "multiply", x, bc_lead(e, rs, &x));
    val wf = bc_tail(e, f32(e, w), &x);
    if (kind == CELLM_NORM_RMS_PLUS_ONE)
        return bin(e, "multiply", y, bin(e, "add", splat(e, 1.0f, &wf), wf));
    return bin(e, "multiply", wf, y);
}

/* The config's norm with layer l's weight id and bias (bias_id < 0: none). */
static val norm_l(struct em *e, val x, int l, enum cellm_lt id, int bias_id)
{
    return norm(e, e->c->norm, x, PL(e, l, id),
                bias_id >= 0 ? PL(e, l, (enum cellm_lt)bias_id) : none());
}

/* c * tanh(x / c) */
static val softcap(struct em *e, val x, double cap)
{
    val t = cellm_xh_un(e->b, "tanh", bin(e, "divide", x, splat(e, (float)cap, &x)));
    return bin(e, "multiply", splat(e, (float)cap, &x), t);
}

/* act(g) * u, the reference formulas. */
static val glu(struct em *e, val g, val u)
{
    val y;
    if (e->c->act == CELLM_ACT_SILU) {
        val den = bin(e, "add", splat(e, 1.0f, &g),
                      cellm_xh_un(e->b, "exponential", cellm_xh_un(e->b, "negate", g)));
        y = bin(e, "divide", g, den);
    } else {
        const float beta = (float)(M_SQRT2 * M_2_SQRTPI * 0.5), kappa = 0.044715f;
        val cube = bin(e, "multiply", bin(e, "multiply", g, g), g);
        val inner = bin(e, "multiply", splat(e, beta, &g),
                        bin(e, "add", g, bin(e, "multiply", splat(e, kappa, &g), cube)));
        val t = bin(e, "add", splat(e, 1.0f, &g), cellm_xh_un(e->b, "tanh", inner));
        y = bin(e, "multiply", bin(e, "multiply", splat(e, 0.5f, &g), g), t);
    }
    return bin(e, "multiply", y, u);
}

/* Half-split rotation of the first 2*half dims of x [T, H, hd]. */
static val rope(struct em *e, val x, val cs, val sn)
{
    int64_t T = x.d[0], H = x.d[1], hd = x.d[2], half = cs.d[1]; /* the table's */
    val x1 = cellm_xh_slice(e->b, x, DIMS(0, 0, 0), DIMS(T, H, half));
    val x2 = cellm_xh_slice(e->b, x, DIMS(0, 0, half), DIMS(T, H, 2 * half));
    val c = bc(e, cs, &x1, DIMS(0, 2)), s = bc(e, sn, &x1, DIMS(0, 2));
    val parts[3];
    parts[0] = bin(e, "subtract", bin(e, "multiply", x1, c), bin(e, "multiply", x2, s));
    parts[1] = bin(e, "add", bin(e, "multiply", x2, c), bin(e, "multiply", x1, s));
    int n = 2;
    if (2 * half < hd) parts[n++] = cellm_xh_slice(e->b, x, DIMS(0, 0, 2 * half), DIMS(T, H, hd));
    return cellm_xh_concat(e->b, parts, n, 2);
}

/* 1 / (1 + exp(-x)) */
static val sigmoid(struct em *e, val x)
{
    val den = bin(e, "add", splat(e, 1.0f, &x),
                  cellm_xh_un(e->b, "exponential", cellm_xh_un(e->b, "negate", x)));
    return bin(e, "divide", splat(e, 1.0f, &x), den);
}

/* ---- blocks ---------------------------------------------------------------------------- */

static val attention(struct em *e, int l, val h)
{
    const struct cellm_config *c = e->c;
    const struct cellm_layer *L = &e->d->layers[l];
    struct cellm_xh *b = e->b;
    /* the layer's geometry (Gemma 4's full layers have their own); a KV-shared layer
     * (Gemma 4) projects only its queries and reads layer kv_src's cache */
    int64_t T = e->T, H = c->n_heads, KV = L->n_kv_heads, G = H / KV, hd = L->head_dim;
    int own = L->kv_src == l;
    val q = linear_l(e, h, l, CELLM_LT_WQ, CELLM_LT_BQ);
    val k = own ? linear_l(e, h, l, CELLM_LT_WK, CELLM_LT_BK) : none();
    /* Gemma 4's k=v full layers: the values are the raw keys */
    val v = !own                        ? none()
            : L->wv.fmt == CELLM_W_NONE ? k
                                        : linear_l(e, h, l, CELLM_LT_WV, CELLM_LT_BV);
    val gate = none();
    if (c->attn_out_gate) { /* Qwen3-Next / 3.5: per head [query d | output gate d] */
        val qg = cellm_xh_reshape(b, q, 3, DIMS(T, H, 2 * hd));
        gate = cellm_xh_reshape(b, cellm_xh_slice(b, qg, DIMS(0, 0, hd), DIMS(T, H, 2 * hd)), 2,
                                DIMS(T, H * hd));
        q = cellm_xh_reshape(b, cellm_xh_slice(b, qg, DIMS(0, 0, 0), DIMS(T, H, hd)), 2,
                             DIMS(T, H * hd));
    }
    if (c->qk_norm_full) { /* OLMo 2: one norm over the whole projection, before the heads */
        q = norm(e, c->norm, q, PL(e, l, CELLM_LT_Q_NORM_FULL), none());
        if (own) k = norm(e, c->norm, k, PL(e, l, CELLM_LT_K_NORM_FULL), none());
    }
    q = cellm_xh_reshape(b, q, 3, DIMS(T, H, hd));
    if (own) {
        k = cellm_xh_reshape(b, k, 3, DIMS(T, KV, hd));
        v = cellm_xh_reshape(b, v, 3, DIMS(T, KV, hd));
    }
    if (L->q_norm_heads) {
        q = norm(e, CELLM_NORM_LAYER, q, PL(e, l, CELLM_LT_Q_NORM_HEADS), none());
        if (own) k = norm(e, CELLM_NORM_LAYER, k, PL(e, l, CELLM_LT_K_NORM_HEADS), none());
    } else if (c->qk_norm) {
        q = norm(e, c->norm, q, PL(e, l, CELLM_LT_Q_NORM), none());
        if (own) k = norm(e, c->norm, k, PL(e, l, CELLM_LT_K_NORM), none());
    }
    if (own && c->gemma4) v = cellm_xla_em_l2norm(e, v); /* Gemma 4's weightless v norm */
    if (own && c->gemma3n) v = norm(e, c->norm, v, none(), none()); /* Gemma 3n's */
    int sliding = L->attn == CELLM_ATTN_SLIDING;
    int local = sliding && e->p->local_rope;
    if (!L->nope) { /* SmolLM3's and Llama 4's NoPE layers use q and k as projected */
        val cs = local ? e->cos_l : e->cos_g, sn = local ? e->sin_l : e->sin_g;
        if (e->p->prop_half && L->attn == CELLM_ATTN_FULL) /* Gemma 4's proportional RoPE */
            cs = e->cos_p, sn = e->sin_p;
        if (c->rope_interleaved) { /* Llama 4 (emit_pos.c) */
            q = cellm_xla_em_rope_pairs(e, q, cs, sn);
            if (own) k = cellm_xla_em_rope_pairs(e, k, cs, sn);
        } else {
            q = rope(e, q, cs, sn);
            if (own) k = rope(e, k, cs, sn);
        }
        if (c->qk_l2norm) { /* Llama 4: after RoPE, on RoPE layers only */
            q = cellm_xla_em_l2norm(e, q);
            k = cellm_xla_em_l2norm(e, k);
        }
    }
    q = cellm_xla_em_qscale(e, l, q); /* Mistral 3, Llama 4's NoPE layers; else q */
    val kc = e->cache[2 * L->kv_src], vc = e->cache[2 * L->kv_src + 1]; /* updated already */
    if (own) {
        val starts[3] = {e->pos0, e->zero, e->zero};
        kc = cellm_xh_dyn_update(b, e->cache[2 * l], k, starts);
        vc = cellm_xh_dyn_update(b, e->cache[2 * l + 1], v, starts);
        e->cache[2 * l] = kc;
        e->cache[2 * l + 1] = vc;
    }
    /* scores [KV, T, G, cap] */
    val q4 = cellm_xh_reshape(b, q, 4, DIMS(T, KV, G, hd));
    val s = cellm_xh_dot(b, q4, kc, 1, DIMS(1), DIMS(1), 3, 2);
    s = bin(e, "multiply", s, splat(e, (float)c->attn_scale, &s));
    if (c->attn_softcap > 0) s = softcap(e, s, c->attn_softcap);
    val mask = sliding && c->window > 0                             ? e->mask_win
               : L->attn == CELLM_ATTN_CHUNKED && c->attn_chunk > 0 ? e->mask_chunk
                                                                    : e->mask_full;
    val ninf = splat(e, -INFINITY, &s);
    s = cellm_xh_select(b, bc(e, mask, &s, DIMS(1, 3)), s, ninf);
    val m = cellm_xh_reduce(b, s, "maximum", 1, DIMS(3), -INFINITY);
    /* gpt-oss's sinks [H] = [KV, G]: one more logit per row in the max and the sum, no value */
    val sk = PL(e, l, CELLM_LT_SINKS);
    if (cellm_xh_ok(&sk)) {
        sk = bc(e, cellm_xh_reshape(b, f32(e, sk), 2, DIMS(KV, G)), &m, DIMS(0, 2));
        m = bin(e, "maximum", m, sk);
    }
    val ex = cellm_xh_un(b, "exponential", bin(e, "subtract", s, bc_lead(e, m, &s)));
    val sum = cellm_xh_reduce(b, ex, "add", 1, DIMS(3), 0);
    if (cellm_xh_ok(&sk))
        sum = bin(e, "add", sum, cellm_xh_un(b, "exponential", bin(e, "subtract", sk, m)));
    val inv = bin(e, "divide", splat(e, 1.0f, &sum), sum);
    val pr = bin(e, "multiply", ex, bc_lead(e, inv, &ex));
    /* out [KV, T, G, hd] -> [T, H*hd] */
    val o = cellm_xh_dot(b, pr, vc, 1, DIMS(0), DIMS(1), 3, 0);
    o = cellm_xh_transpose(b, o, DIMS(1, 0, 2, 3));
    o = cellm_xh_reshape(b, o, 2, DIMS(T, H * hd));
    if (cellm_xh_ok(&gate)) o = bin(e, "multiply", o, sigmoid(e, gate));
    return linear_l(e, o, l, CELLM_LT_WO, CELLM_LT_BO);
}

static val mlp(struct em *e, int l, val h)
{
    val g = linear_l(e, h, l, CELLM_LT_W_GATE, CELLM_LT_B_GATE);
    val u = linear_l(e, h, l, CELLM_LT_W_UP, CELLM_LT_B_UP);
    return linear_l(e, glu(e, g, u), l, CELLM_LT_W_DOWN, CELLM_LT_B_DOWN);
}

/* gpt-oss's clamped SwiGLU, in cellm_op_swiglu_clamp's order of operations. */
static val swiglu_clamp(struct em *e, val g, val u)
{
    const float alpha = (float)e->c->swiglu_alpha, limit = (float)e->c->swiglu_limit;
    g = bin(e, "minimum", g, splat(e, limit, &g));
    u = bin(e, "maximum", bin(e, "minimum", u, splat(e, limit, &u)), splat(e, -limit, &u));
    val t = bin(e, "multiply", g, splat(e, alpha, &g));
    val den = bin(e, "add", splat(e, 1.0f, &t),
                  cellm_xh_un(e->b, "exponential", cellm_xh_un(e->b, "negate", t)));
    val glu = bin(e, "multiply", g, bin(e, "divide", splat(e, 1.0f, &den), den));
    return bin(e, "multiply", bin(e, "add", u, splat(e, 1.0f, &u)), glu);
}

/* x [T, E, n] plus layer l's per-expert bias id ([E, n]) when it has one. */
static val expert_bias(struct em *e, val x, int l, enum cellm_lt id)
{
    val bv = PL(e, l, id);
    return cellm_xh_ok(&bv) ? bin(e, "add", x, bc(e, f32(e, bv), &x, DIMS(1, 2))) : x;
}

/* Every expert of layer l on every row of h, [E, T, D]: Qwen3-MoE's GLU, or gpt-oss's
 * experts (biases, the clamped SwiGLU, gate and up interleaved in one gate_up or apart). */
static val experts(struct em *e, int l, val h)
{
    const struct cellm_layer *L = &e->d->layers[l];
    struct cellm_xh *b = e->b;
    int64_t T = e->T, E = e->c->n_experts, I = e->c->moe_ffn_dim;
    char n[48];
    val g, u, act;
    if (e->d->experts == CELLM_EXPERTS_INTERLEAVED) {
        snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_GATE_UP].field);
        val gu = cellm_xh_dot(b, h, matrix(e, n, &L->e_gate_up[0]), 0, NULL, NULL, 1, 2);
        gu = expert_bias(e, gu, l, CELLM_LT_E_GATE_UP_B); /* [T, E, 2I]: gate 2i, up 2i + 1 */
        gu = cellm_xh_reshape(b, gu, 4, DIMS(T, E, I, 2));
        g = cellm_xh_reshape(b, cellm_xh_slice(b, gu, DIMS(0, 0, 0, 0), DIMS(T, E, I, 1)), 3,
                             DIMS(T, E, I));
        u = cellm_xh_reshape(b, cellm_xh_slice(b, gu, DIMS(0, 0, 0, 1), DIMS(T, E, I, 2)), 3,
                             DIMS(T, E, I));
    } else {
        snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_GATE].field);
        g = cellm_xh_dot(b, h, matrix(e, n, &L->e_gate[0]), 0, NULL, NULL, 1, 2); /* [T,E,I] */
        snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_UP].field);
        u = cellm_xh_dot(b, h, matrix(e, n, &L->e_up[0]), 0, NULL, NULL, 1, 2);
        g = expert_bias(e, g, l, CELLM_LT_E_GATE_B);
        u = expert_bias(e, u, l, CELLM_LT_E_UP_B);
    }
    act = e->c->swiglu_clamp ? swiglu_clamp(e, g, u) : glu(e, g, u);
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_DOWN].field);
    val y = cellm_xh_dot(b, act, matrix(e, n, &L->e_down[0]), 1, DIMS(1), DIMS(0), 2, 2);
    val bd = PL(e, l, CELLM_LT_E_DOWN_B); /* [E, D] */
    if (cellm_xh_ok(&bd)) y = bin(e, "add", y, bc(e, f32(e, bd), &y, DIMS(0, 2)));
    return y;
}

/* y plus Qwen3-Next's shared expert of layer l when it has one (model/hybrid.h):
 * y + sigmoid(h . shared_gate) * down(glu(gate h, up h)), in the CPU's order. */
static val hyb_shared(struct em *e, int l, val h, val y)
{
    const struct cellm_hyb_layer *w = e->d->layers[l].hyb;
    if (!w || w->sh_gate.fmt == CELLM_W_NONE) return y;
    char n[48];
    snprintf(n, sizeof n, "l%d_h_shg", l);
    val g = linear(e, h, n, &w->sh_gate, none());
    snprintf(n, sizeof n, "l%d_h_shu", l);
    val u = linear(e, h, n, &w->sh_up, none());
    snprintf(n, sizeof n, "l%d_h_shd", l);
    val sy = linear(e, glu(e, g, u), n, &w->sh_down, none());
    snprintf(n, sizeof n, "l%d_h_shw", l);
    val sw = sigmoid(e, linear(e, h, n, &w->sh_gate_w, none())); /* [T, 1] */
    sw = cellm_xh_reshape(e->b, sw, 1, DIMS(e->T));
    return bin(e, "add", y, bin(e, "multiply", bc_lead(e, sw, &sy), sy));
}

static val moe(struct em *e, int l, val h)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int64_t T = e->T, E = c->n_experts;
    int K = c->n_experts_used;
    if (c->router == CELLM_ROUTER_SIGMOID_GROUP || c->router == CELLM_ROUTER_SIGMOID_INPUT)
        return cellm_xla_em_moe_sigmoid(e, l, h);                  /* emit_moe.c */
    val r = linear_l(e, h, l, CELLM_LT_ROUTER, CELLM_LT_ROUTER_B); /* [T, E] */
    val pr = r; /* gpt-oss: top-k of the logits, then a softmax over those k (below) */
    if (c->router == CELLM_ROUTER_SOFTMAX_TOPK) {
        val m0 = cellm_xh_reduce(b, r, "maximum", 1, DIMS(1), -INFINITY);
        val ex = cellm_xh_un(b, "exponential", bin(e, "subtract", r, bc_lead(e, m0, &r)));
        val sum = cellm_xh_reduce(b, ex, "add", 1, DIMS(1), 0);
        pr = bin(e, "multiply", ex, bc_lead(e, bin(e, "divide", splat(e, 1.0f, &sum), sum), &ex));
    }
    /* Materialise the probabilities (logits) once: the max below is compared for equality
     * with them, and a fusion that recomputed them (exp, FMA) could round differently. */
    pr = cellm_xh_barrier(b, pr);
    /* top-k: k rounds of argmax (lowest index on ties), each winner then masked out */
    val iota = cellm_xh_iota(b, XH_I32, 2, DIMS(T, E), 1);
    val big = cellm_xh_const_int(b, XH_I32, E, 2, DIMS(T, E));
    val ninf = splat(e, -INFINITY, &pr);
    val oh[64], wk[64];
    if (K > 64) K = 64;
    for (int k = 0; k < K; k++) {
        val m = cellm_xh_reduce(b, pr, "maximum", 1, DIMS(1), -INFINITY);
        val eq = cellm_xh_compare(b, "EQ", pr, bc_lead(e, m, &pr));
        val idx =
            cellm_xh_reduce(b, cellm_xh_select(b, eq, iota, big), "minimum", 1, DIMS(1), (double)E);
        oh[k] = cellm_xh_compare(b, "EQ", iota, bc_lead(e, idx, &iota));
        wk[k] = m;
        pr = cellm_xh_select(b, oh[k], ninf, pr);
    }
    if (c->router == CELLM_ROUTER_TOPK_SOFTMAX) { /* cellm_op_softmax over the k picks */
        val s = none(), mx = wk[0];               /* the first pick is the max */
        for (int k = 0; k < K; k++) {
            wk[k] = cellm_xh_un(b, "exponential", bin(e, "subtract", wk[k], mx));
            s = k ? bin(e, "add", s, wk[k]) : wk[k];
        }
        val inv = bin(e, "divide", splat(e, 1.0f, &s), s);
        for (int k = 0; k < K; k++)
            wk[k] = bin(e, "multiply", wk[k], inv);
    }
    if (c->norm_topk_prob) {
        val s = wk[0];
        for (int k = 1; k < K; k++)
            s = bin(e, "add", s, wk[k]);
        for (int k = 0; k < K; k++)
            wk[k] = bin(e, "divide", wk[k], s);
    }
    val comb = splat(e, 0.0f, &ninf);
    for (int k = 0; k < K; k++)
        comb = cellm_xh_select(b, oh[k], bc_lead(e, wk[k], &comb), comb);
    /* every expert on every row, combined with the routing weights (zero elsewhere) */
    val y = experts(e, l, h); /* [E, T, D] */
    val cw = bc(e, comb, &y, DIMS(1, 0));
    return hyb_shared(e, l, h, cellm_xh_reduce(b, bin(e, "multiply", y, cw), "add", 1, DIMS(0), 0));
}

/* The feed-forward sub-block: the layer's experts or its MLP. */
static val ffn(struct em *e, int l, val h)
{
    const struct cellm_layer *L = &e->d->layers[l];
    if (!L->moe || e->c->moe_parallel) return mlp(e, l, h); /* Gemma 4: experts beside */
    val y = moe(e, l, h);
    /* shared experts: routed + shared(h), as the CPU adds them; Llama 4's moe() adds its
     * shared expert itself, in its own order */
    if (L->s_gate.fmt != CELLM_W_NONE && !e->c->shared_expert)
        y = bin(e, "add", y, cellm_xla_em_shared(e, l, h));
    return y;
}

val cellm_xla_em_matrix(struct em *e, const char *base, const struct cellm_weight *w)
{
    return matrix(e, base, w);
}

val cellm_xla_em_linear_l(struct em *e, val x, int l, enum cellm_lt id, int bias_id)
{
    return linear_l(e, x, l, id, bias_id);
}

val cellm_xla_em_norm(struct em *e, enum cellm_norm_kind kind, val x, val w)
{
    return norm(e, kind, x, w, none());
}

val cellm_xla_em_glu(struct em *e, val g, val u)
{
    return glu(e, g, u);
}

val cellm_xla_em_shared(struct em *e, int l, val h)
{
    val g = linear_l(e, h, l, CELLM_LT_S_GATE, -1);
    val u = linear_l(e, h, l, CELLM_LT_S_UP, -1);
    return linear_l(e, glu(e, g, u), l, CELLM_LT_S_DOWN, -1);
}

val cellm_xla_em_experts(struct em *e, int l, val h)
{
    return experts(e, l, h);
}

val cellm_xla_em_attention(struct em *e, int l, val h)
{
    return attention(e, l, h);
}

/* ---- module ---------------------------------------------------------------------------- */

enum cellm_status cellm_xla_supported(const struct cellm_desc *d, struct cellm_error *err)
{
    const struct cellm_config *c = &d->cfg;
    unsigned have = CELLM_PIECES_GPT_OSS | CELLM_PIECES_GROUPED_MOE | CELLM_PIECES_L4 |
                    CELLM_PIECES_QSCALE | CELLM_PIECES_GEMMA4 | CELLM_PIECES_GEMMA3N |
                    CELLM_PIECES_MLA;                             /* MLA: emit_mla.c */
    if (cellm_xla_state_supported(c)) have |= CELLM_PIECES_STATE; /* emit_state.c, emit_gdn.c */
    const char *missing = cellm_config_missing(c, have);
    if (missing)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: model_type %s needs %s, which the XLA executor does not "
                          "implement yet; use --device cpu",
                          c->model_type, missing);
    if (c->act != CELLM_ACT_SILU && c->act != CELLM_ACT_GELU_TANH)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: activation exact GELU (erf) is not implemented by the XLA "
                          "executor; use --device cpu");
    if (c->rot_dims < 2 || c->rot_dims % 2 || c->rot_dims > c->head_dim)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: %d rotary dims of %d per head are not supported",
                          c->rot_dims, c->head_dim);
    if (c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "--device xla: %d heads over %d KV heads",
                          c->n_heads, c->n_kv_heads);
    if (c->residual_mult != 1 || c->logits_div != 1)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: residual_multiplier %g / logits_scaling %g (Granite) are "
                          "not implemented by the XLA executor yet; use --device cpu",
                          c->residual_mult, c->logits_div);
    if (c->gemma3n && (c->altup_n > CELLM_XLA_MAX_ALTUP || c->altup_active >= c->altup_n))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: Gemma 3n with %d AltUp streams (active %d); the XLA "
                          "executor holds at most %d",
                          c->altup_n, c->altup_active, CELLM_XLA_MAX_ALTUP);
    if (c->n_experts_used > 64)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device xla: %d experts per token (at most 64)", c->n_experts_used);
    return CELLM_OK;
}

static enum cellm_status declare(struct em *e, const struct cellm_xla_key *k,
                                 struct cellm_error *err)
{
    struct cellm_xh *b = e->b;
    const struct cellm_config *c = e->c;
    for (int i = 0; i < e->p->n; i++) {
        const struct cellm_xla_wparam *w = &e->p->w[i];
        e->w[i] = cellm_xh_param(b, w->name, w->ty, w->rank, w->d, -1);
    }
    int64_t T = k->T, half = e->p->half;
    e->tokens = cellm_xh_param(b, "tokens", XH_I32, 1, DIMS(T), -1);
    e->pos0 = cellm_xh_param(b, "pos0", XH_I32, 0, NULL, -1);
    e->last = k->all_logits ? none() : cellm_xh_param(b, "last", XH_I32, 0, NULL, -1);
    e->cos_g = cellm_xh_param(b, "cos_g", XH_F32, 2, DIMS(T, half), -1);
    e->sin_g = cellm_xh_param(b, "sin_g", XH_F32, 2, DIMS(T, half), -1);
    if (e->p->local_rope) {
        e->cos_l = cellm_xh_param(b, "cos_l", XH_F32, 2, DIMS(T, half), -1);
        e->sin_l = cellm_xh_param(b, "sin_l", XH_F32, 2, DIMS(T, half), -1);
    }
    if (e->p->prop_half) {
        int64_t ph = e->p->prop_half;
        e->cos_p = cellm_xh_param(b, "cos_p", XH_F32, 2, DIMS(T, ph), -1);
        e->sin_p = cellm_xh_param(b, "sin_p", XH_F32, 2, DIMS(T, ph), -1);
    }
    for (int l = 0; l < c->n_layers; l++) {
        char n[32];
        int64_t cd[3]; /* state and MLA layers keep other caches (emit_state.h) */
        cellm_xla_cache_shape(e->d, 2 * l, k->cap, cd);
        snprintf(n, sizeof n, "k_%d", l);
        e->cache[2 * l] = cellm_xh_param(b, n, XH_F32, 3, cd, 1 + 2 * l);
        cellm_xla_cache_shape(e->d, 2 * l + 1, k->cap, cd);
        snprintf(n, sizeof n, "v_%d", l);
        e->cache[2 * l + 1] = cellm_xh_param(b, n, XH_F32, 3, cd, 2 + 2 * l);
    }
    return cellm_xla_state_declare(b, e->d, 1 + 2 * c->n_layers, &e->st, err);
}

static void masks(struct em *e, int64_t cap)
{
    struct cellm_xh *b = e->b;
    int64_t T = e->T;
    val qpos = bin(e, "add", cellm_xh_bcast(b, e->pos0, 1, DIMS(T), NULL),
                   cellm_xh_iota(b, XH_I32, 1, DIMS(T), 0));
    val kp = cellm_xh_iota(b, XH_I32, 2, DIMS(T, cap), 1);
    val qp = bc(e, qpos, &kp, DIMS(0));
    e->mask_full = cellm_xh_compare(b, "LE", kp, qp);
    int any = 0;
    for (int l = 0; l < e->c->n_layers; l++)
        any |= e->d->layers[l].attn == CELLM_ATTN_SLIDING;
    if (any && e->c->window > 0) {
        val lo =
            bin(e, "subtract", qp, cellm_xh_const_int(b, XH_I32, e->c->window, 2, DIMS(T, cap)));
        e->mask_win = bin(e, "and", e->mask_full, cellm_xh_compare(b, "GT", kp, lo));
    }
    cellm_xla_em_chunk_mask(e, kp, qp);
}

val cellm_xla_em_rows(struct em *e, const char *base, const struct cellm_weight *w, val ids)
{
    struct cellm_xh *b = e->b;
    char n[48];
    if (w->fmt == CELLM_W_AFFINE && cellm_xla_plan_find(e->p, base) < 0) {
        snprintf(n, sizeof n, "%s_q", base);
        val q = cellm_xh_gather_rows(b, P(e, n, 0), ids);
        snprintf(n, sizeof n, "%s_s", base);
        val s = cellm_xh_gather_rows(b, P(e, n, 0), ids);
        snprintf(n, sizeof n, "%s_bi", base);
        val bi = cellm_xh_gather_rows(b, P(e, n, 0), ids);
        return dequant(e, q, s, bi, w->bits, w->group, w->cols);
    }
    if (cellm_xla_fmt_packed(w->fmt) && cellm_xla_plan_find(e->p, base) < 0)
        return cellm_xla_dequant_rows(b, e->p, e->w, base, w, ids);
    return f32(e, cellm_xh_gather_rows(b, P(e, base, 0), ids));
}

static void forward(struct em *e, const struct cellm_xla_key *k)
{
    struct cellm_xh *b = e->b;
    const struct cellm_desc *d = e->d;
    const struct cellm_config *c = e->c;
    e->zero = cellm_xh_const_int(b, XH_I32, 0, 0, NULL);
    masks(e, k->cap);
    val x = cellm_xla_em_rows(e, "embed", &d->embed, e->tokens);
    if (c->embed_scale) x = bin(e, "multiply", x, splat(e, d->embed_scale, &x));
    if (c->ple_dim > 0) cellm_xla_em_g4_ple(e, x); /* Gemma 4 and 3n (emit_g4.c) */
    if (c->gemma3n) cellm_xla_em_g3n_embed(e, x);  /* emit_g3n.c */
    for (int l = 0; l < c->n_layers; l++) {
        if (c->gemma3n) { /* AltUp streams around attention and MLP */
            cellm_xla_em_g3n_layer(e, l);
            continue;
        }
        /* a post-norm block's attention reads the residual itself */
        val h = c->block == CELLM_BLOCK_POST_NORM
                    ? x
                    : norm_l(e, x, l, CELLM_LT_ATTN_NORM, CELLM_LT_ATTN_NORM_B);
        val o = d->layers[l].mixer != CELLM_MIXER_ATTN
                    ? cellm_xla_state_mixer(e, b, d, &e->st, l, h)
                : c->mla ? cellm_xla_mla_attention(e, b, d, l, h, e->pos0, e->mask_full, e->cos_g,
                                                   e->sin_g, &e->cache[2 * l])
                         : attention(e, l, h),
            m;
        switch (c->block) {
        case CELLM_BLOCK_PARALLEL: /* x + attn(h) + mlp(h) */
            x = bin(e, "add", bin(e, "add", x, o), mlp(e, l, h));
            break;
        case CELLM_BLOCK_SANDWICH: /* x + norm(attn(h)), then x + norm(mlp(norm(x))) */
            x = bin(e, "add", x, norm_l(e, o, l, CELLM_LT_POST_ATTN_NORM, -1));
            m = ffn(e, l, norm_l(e, x, l, CELLM_LT_FFN_NORM, CELLM_LT_FFN_NORM_B));
            if (d->layers[l].moe && c->moe_parallel) m = cellm_xla_em_g4_moe(e, l, x, m);
            x = bin(e, "add", x, norm_l(e, m, l, CELLM_LT_POST_FFN_NORM, -1));
            if (c->gemma4) x = cellm_xla_em_g4_layer_end(e, l, x); /* emit_g4.c */
            break;
        case CELLM_BLOCK_PRE_NORM: /* x + attn(h), then x + mlp(norm(x)) */
            x = bin(e, "add", x, o);
            m = ffn(e, l, norm_l(e, x, l, CELLM_LT_FFN_NORM, CELLM_LT_FFN_NORM_B));
            x = bin(e, "add", x, m);
            break;
        case CELLM_BLOCK_POST_NORM: /* x + norm(attn(x)), then x + norm(mlp(x)) */
            x = bin(e, "add", x, norm_l(e, o, l, CELLM_LT_POST_ATTN_NORM, -1));
            x = bin(e, "add", x, norm_l(e, ffn(e, l, x), l, CELLM_LT_POST_FFN_NORM, -1));
            break;
        }
    }
    if (c->gemma3n) x = cellm_xla_em_g3n_unembed(e); /* emit_g3n.c */
    if (!k->all_logits) {
        val st[2] = {e->last, e->zero};
        x = cellm_xh_dyn_slice(b, x, st, DIMS(1, c->dim));
    }
    x = norm(e, c->norm, x, P(e, "final_norm", 0), P(e, "final_norm_b", 0));
    val logits = c->tie_embeddings ? linear(e, x, "embed", &d->embed, none())
                                   : linear(e, x, "head", &d->head, none());
    if (c->final_softcap > 0) logits = softcap(e, logits, c->final_softcap);
    cellm_xh_result(b, &logits);
    for (int i = 0; i < 2 * c->n_layers; i++)
        cellm_xh_result(b, &e->cache[i]);
    cellm_xla_state_results(b, &e->st);
}

/* For emit_state.c: the helpers above, on an opaque emitter. */
val cellm_xla_em_linear(void *em, val x, const char *base, const struct cellm_weight *w)
{
    return linear(em, x, base, w, none());
}

val cellm_xla_em_weight(void *em, const char *base, const struct cellm_weight *w)
{
    return matrix(em, base, w);
}

val cellm_xla_em_param(void *em, const char *name)
{
    struct em *e = em;
    int i = cellm_xla_plan_find(e->p, name);
    return i < 0 ? none() : e->w[i];
}

enum cellm_status cellm_xla_emit(const struct cellm_desc *d, const struct cellm_xla_plan *p,
                                 const struct cellm_xla_key *k, char **text, size_t *len,
                                 struct cellm_error *err)
{
    *text = NULL;
    CELLM_TRY(cellm_xla_supported(d, err));
    if (k->T < 1 || k->cap < k->T)
        return cellm_errf(err, CELLM_ERR_ARG, "xla emitter: %d rows over a cache of %d", k->T,
                          k->cap);
    struct cellm_xh b;
    cellm_xh_init(&b);
    struct em e;
    memset(&e, 0, sizeof e);
    e.b = &b;
    e.d = d;
    e.c = &d->cfg;
    e.p = p;
    e.T = k->T;
    e.w = cellm_calloc((size_t)p->n + 1, sizeof *e.w);
    e.cache = cellm_calloc(2 * (size_t)d->cfg.n_layers + 1, sizeof *e.cache);
    if (!e.w || !e.cache) {
        cellm_free(e.w);
        cellm_free(e.cache);
        return cellm_errf(err, CELLM_ERR_NOMEM, "xla emitter: out of memory");
    }
    enum cellm_status st = declare(&e, k, err);
    if (!st) forward(&e, k);
    char name[64];
    snprintf(name, sizeof name, "cellm_%s_t%d_c%d", k->all_logits ? "all" : "last", k->T, k->cap);
    if (!st) st = cellm_xh_finish(&b, name, text, len, err);
    cellm_xla_state_free(&e.st);
    cellm_xh_free(&b);
    cellm_free(e.w);
    cellm_free(e.cache);
    return st;
}
