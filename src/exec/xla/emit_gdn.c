/*
 * emit_gdn.c: the Gated DeltaNet block of Qwen3-Next / Qwen3.5 in the StableHLO modules
 * (docs/forward/qwen3-next.md, "Linear-attention layers"), mirroring cellm_cpu_gdn_block
 * (src/exec/cpu/deltanet.c).
 *
 * Projections (Qwen3-Next's grouped per key head, Qwen3.5's apart), the causal conv over
 * the sequence's window (emit_state.c) and silu, q and k L2-normalised per key head, q
 * scaled, the gates beta = sigmoid(b) and decay = exp(-exp(A_log) * softplus(a + dt_bias)).
 * The delta rule is the per-token recurrence, as on the CPU, written as a stablehlo.while
 * over the call's real rows (nreal): each step decays S, reads k^T S, writes k delta^T and
 * reads q^T S into the output row. Every value the loop reads is carried through it, so
 * the module does not rely on implicit capture. The gated RMSNorm per value head and
 * out_proj follow. The CPU accumulates the two L2 and RMS sums in double; the graph in
 * f32 (a rounding of those sums, within the contract).
 */
#include <math.h>
#include <stdio.h>

#include "exec/xla/emit_state.h"
#include "model/hybrid.h"

typedef struct cellm_xh_val val;

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

static val splat(struct cellm_xh *b, float v, const val *like)
{
    return cellm_xh_const_f32(b, v, like->rank, like->d);
}

static val bin(struct cellm_xh *b, const char *op, val x, val y)
{
    return cellm_xh_bin(b, op, x, y);
}

/* 1 / (1 + exp(-x)) */
static val sigmoid(struct cellm_xh *b, val x)
{
    val den = bin(b, "add", splat(b, 1.0f, &x),
                  cellm_xh_un(b, "exponential", cellm_xh_un(b, "negate", x)));
    return bin(b, "divide", splat(b, 1.0f, &x), den);
}

/* x / (1 + exp(-x)) */
static val silu(struct cellm_xh *b, val x)
{
    val den = bin(b, "add", splat(b, 1.0f, &x),
                  cellm_xh_un(b, "exponential", cellm_xh_un(b, "negate", x)));
    return bin(b, "divide", x, den);
}

/* x [T, n, dk] * rsqrt(sum(x^2) + 1e-6) over dk, as 1 / sqrt. */
static val l2norm(struct cellm_xh *b, val x)
{
    val ss = cellm_xh_reduce(b, bin(b, "multiply", x, x), "add", 1, DIMS(2), 0);
    val r = bin(b, "divide", splat(b, 1.0f, &ss),
                cellm_xh_un(b, "sqrt", bin(b, "add", ss, splat(b, 1e-6f, &ss))));
    return bin(b, "multiply", x, cellm_xh_bcast(b, r, 3, x.d, DIMS(0, 1)));
}

/* A [lead, n] vector parameter of layer l ("l<l>_h_<name>") widened to f32 [n]. */
static val vecp(void *em, struct cellm_xh *b, int l, const char *name)
{
    char n[48];
    snprintf(n, sizeof n, "l%d_h_%s", l, name);
    return cellm_xh_convert(b, cellm_xla_em_param(em, n), XH_F32);
}

static val lin(void *em, val x, int l, const char *name, const struct cellm_weight *w)
{
    char n[48];
    snprintf(n, sizeof n, "l%d_h_%s", l, name);
    return cellm_xla_em_linear(em, x, n, w);
}

/* [T, G, W] columns [a, a + n) as [T, G * n]. */
static val cols(struct cellm_xh *b, val x, int64_t a, int64_t n)
{
    int64_t T = x.d[0], G = x.d[1];
    val s = cellm_xh_slice(b, x, DIMS(0, 0, a), DIMS(T, G, a + n));
    return cellm_xh_reshape(b, s, 2, DIMS(T, G * n));
}

/* The delta rule over rows [0, nreal): S [nV, dk, dv] in and out; o [T, nV, dv]. */
static val recurrence(struct cellm_xh *b, val nreal, val *S, val Q, val K, val V, val beta,
                      val decay)
{
    int64_t T = Q.d[0], nv = Q.d[1], dk = Q.d[2], dv = V.d[2];
    enum { I, S_, O, Q_, K_, V_, B_, D_, N_, NC };
    val init[NC], a[NC], next[NC], res[NC];
    init[I] = cellm_xh_const_int(b, XH_I32, 0, 0, NULL);
    init[S_] = *S;
    init[O] = cellm_xh_const_f32(b, 0.0f, 3, DIMS(T, nv, dv));
    init[Q_] = Q;
    init[K_] = K;
    init[V_] = V;
    init[B_] = beta;
    init[D_] = decay;
    init[N_] = nreal;
    cellm_xh_while(b, NC, init, a);
    cellm_xh_while_do(b, cellm_xh_compare(b, "LT", a[I], a[N_]));
    val zero = cellm_xh_const_int(b, XH_I32, 0, 0, NULL);
    val st3[3] = {a[I], zero, zero}, st2[2] = {a[I], zero};
    val qt =
        cellm_xh_reshape(b, cellm_xh_dyn_slice(b, a[Q_], st3, DIMS(1, nv, dk)), 2, DIMS(nv, dk));
    val kt =
        cellm_xh_reshape(b, cellm_xh_dyn_slice(b, a[K_], st3, DIMS(1, nv, dk)), 2, DIMS(nv, dk));
    val vt =
        cellm_xh_reshape(b, cellm_xh_dyn_slice(b, a[V_], st3, DIMS(1, nv, dv)), 2, DIMS(nv, dv));
    val bt = cellm_xh_reshape(b, cellm_xh_dyn_slice(b, a[B_], st2, DIMS(1, nv)), 1, DIMS(nv));
    val dt = cellm_xh_reshape(b, cellm_xh_dyn_slice(b, a[D_], st2, DIMS(1, nv)), 1, DIMS(nv));
    val s = a[S_];
    s = bin(b, "multiply", s, cellm_xh_bcast(b, dt, 3, s.d, DIMS(0))); /* decay */
    val m = cellm_xh_dot(b, kt, s, 1, DIMS(0), DIMS(0), 1, 1);         /* [nv, dv] */
    val delta =
        bin(b, "multiply", bin(b, "subtract", vt, m), cellm_xh_bcast(b, bt, 2, m.d, DIMS(0)));
    val outer = bin(b, "multiply", cellm_xh_bcast(b, kt, 3, s.d, DIMS(0, 1)),
                    cellm_xh_bcast(b, delta, 3, s.d, DIMS(0, 2)));
    s = bin(b, "add", s, outer);                               /* write */
    val o = cellm_xh_dot(b, qt, s, 1, DIMS(0), DIMS(0), 1, 1); /* read after */
    next[I] = bin(b, "add", a[I], cellm_xh_const_int(b, XH_I32, 1, 0, NULL));
    next[S_] = s;
    next[O] = cellm_xh_dyn_update(b, a[O], cellm_xh_reshape(b, o, 3, DIMS(1, nv, dv)), st3);
    for (int i = Q_; i < NC; i++)
        next[i] = a[i];
    cellm_xh_while_end(b, next, res);
    *S = res[S_];
    return res[O];
}

val cellm_xla_gdn_block(void *em, struct cellm_xh *b, const struct cellm_desc *d,
                        struct cellm_xla_st *st, int l, val h)
{
    const struct cellm_config *c = &d->cfg;
    const struct cellm_hyb_layer *w = d->layers[l].hyb;
    const int64_t T = h.d[0], dk = c->lin_dk, dv = c->lin_dv, nk = c->lin_nk, nv = c->lin_nv;
    const int64_t r = nv / nk, kd = nk * dk, vd = nv * dv, C = 2 * kd + vd;
    val qkv, z, bb, aa;
    if (c->hybrid == CELLM_HYBRID_QWEN3_NEXT) { /* per key head: q, k, v (r heads), z (r) */
        val p = lin(em, h, l, "in", &w->in_proj);
        p = cellm_xh_reshape(b, p, 3, DIMS(T, nk, 2 * dk + 2 * r * dv));
        val parts[3] = {cols(b, p, 0, dk), cols(b, p, dk, dk), cols(b, p, 2 * dk, r * dv)};
        qkv = cellm_xh_concat(b, parts, 3, 1);
        z = cols(b, p, 2 * dk + r * dv, r * dv);
        val ba = cellm_xh_reshape(b, lin(em, h, l, "b", &w->in_b), 3, DIMS(T, nk, 2 * r));
        bb = cols(b, ba, 0, r);
        aa = cols(b, ba, r, r);
    } else {
        qkv = lin(em, h, l, "in", &w->in_proj);
        z = lin(em, h, l, "z", &w->in_z);
        bb = lin(em, h, l, "b", &w->in_b);
        aa = lin(em, h, l, "a", &w->in_a);
    }
    val u = silu(b, cellm_xla_state_conv(em, b, d, st, l, st->first[l], qkv)); /* [T, C] */
    val q = cellm_xh_reshape(b, cellm_xh_slice(b, u, DIMS(0, 0), DIMS(T, kd)), 3, DIMS(T, nk, dk));
    val k =
        cellm_xh_reshape(b, cellm_xh_slice(b, u, DIMS(0, kd), DIMS(T, 2 * kd)), 3, DIMS(T, nk, dk));
    val v =
        cellm_xh_reshape(b, cellm_xh_slice(b, u, DIMS(0, 2 * kd), DIMS(T, C)), 3, DIMS(T, nv, dv));
    q = l2norm(b, q);
    k = l2norm(b, k);
    q = bin(b, "multiply", q, splat(b, (float)(1.0 / sqrt((double)dk)), &q));
    /* key head g serves value heads g*r .. g*r + r - 1 */
    q = cellm_xh_reshape(b, cellm_xh_bcast(b, q, 4, DIMS(T, nk, r, dk), DIMS(0, 1, 3)), 3,
                         DIMS(T, nv, dk));
    k = cellm_xh_reshape(b, cellm_xh_bcast(b, k, 4, DIMS(T, nk, r, dk), DIMS(0, 1, 3)), 3,
                         DIMS(T, nv, dk));
    val beta = sigmoid(b, bb);
    val na = cellm_xh_un(b, "negate", cellm_xh_un(b, "exponential", vecp(em, b, l, "alog")));
    val y = bin(b, "add", aa, cellm_xh_bcast(b, vecp(em, b, l, "dtb"), 2, aa.d, DIMS(1)));
    val sp = cellm_xh_select(b, cellm_xh_compare(b, "GT", y, splat(b, 20.0f, &y)), y,
                             cellm_xh_un(b, "log_plus_one", cellm_xh_un(b, "exponential", y)));
    val decay = cellm_xh_un(b, "exponential",
                            bin(b, "multiply", cellm_xh_bcast(b, na, 2, sp.d, DIMS(1)), sp));
    int si = st->first[l] + 1;
    val o = recurrence(b, st->nreal, &st->s[si], q, k, v, beta, decay); /* [T, nv, dv] */
    /* gated RMSNorm per value head: (w * (o * rs)) * silu(z) */
    val ss = cellm_xh_reduce(b, bin(b, "multiply", o, o), "add", 1, DIMS(2), 0);
    val ms = bin(b, "divide", ss, splat(b, (float)dv, &ss));
    val rs = bin(b, "divide", splat(b, 1.0f, &ms),
                 cellm_xh_un(b, "sqrt", bin(b, "add", ms, splat(b, (float)c->norm_eps, &ms))));
    val nrm = bin(b, "multiply", cellm_xh_bcast(b, vecp(em, b, l, "norm"), 3, o.d, DIMS(2)),
                  bin(b, "multiply", o, cellm_xh_bcast(b, rs, 3, o.d, DIMS(0, 1))));
    val z3 = cellm_xh_reshape(b, z, 3, DIMS(T, nv, dv));
    val g = cellm_xh_reshape(b, bin(b, "multiply", nrm, silu(b, z3)), 2, DIMS(T, vd));
    return lin(em, g, l, "out", &w->out_proj);
}
