/*
 * emit_moe.c: the sigmoid routers in the StableHLO graph (emit_int.h), as
 * src/exec/cpu/router.c computes them per token:
 *
 * - glm4_moe's grouped router: s = sigmoid(logits), c = s + e_score_correction_bias; each of
 *   n_group contiguous groups scores the sum of its two best c; the topk_group best groups
 *   stay, the others' choices become 0; the k best choices are the experts, weighted by
 *   their plain s, renormalised by (sum + 1e-20) where norm_topk_prob, times
 *   routed_scaling_factor. The shared experts are added by emit.c's ffn().
 * - Llama 4's router: the k best logits, each through the sigmoid, scale the chosen
 *   experts' input (not their output); the output is shared(x) + the experts' sum.
 *
 * Every top-k is k rounds of argmax (the highest value, the lowest index on ties, the CPU's
 * order), over scores materialised behind an optimization barrier so that the equality
 * tests compare stored values. The experts run masked-dense as in emit.c: every expert on
 * every row, zero weight (or, for Llama 4, zero input) where not chosen.
 */
#include "exec/xla/emit_int.h"

#define MAX_K 64

void cellm_xla_em_topk(struct em *e, val s, int K, val *oh, val *v)
{
    struct cellm_xh *b = e->b;
    int64_t T = s.d[0], N = s.d[1];
    val iota = cellm_xh_iota(b, XH_I32, 2, DIMS(T, N), 1);
    val big = cellm_xh_const_int(b, XH_I32, N, 2, DIMS(T, N));
    val ninf = splat(e, -INFINITY, &s);
    for (int k = 0; k < K; k++) {
        val m = cellm_xh_reduce(b, s, "maximum", 1, DIMS(1), -INFINITY);
        val eq = cellm_xh_compare(b, "EQ", s, bc_lead(e, m, &s));
        val idx =
            cellm_xh_reduce(b, cellm_xh_select(b, eq, iota, big), "minimum", 1, DIMS(1), (double)N);
        oh[k] = cellm_xh_compare(b, "EQ", iota, bc_lead(e, idx, &iota));
        v[k] = m;
        s = cellm_xh_select(b, oh[k], ninf, s);
    }
}

/* 1 / (1 + exp(-x)), router.c's order */
static val sigmoid(struct em *e, val x)
{
    val den = bin(e, "add", splat(e, 1.0f, &x),
                  cellm_xh_un(e->b, "exponential", cellm_xh_un(e->b, "negate", x)));
    return bin(e, "divide", splat(e, 1.0f, &den), den);
}

/* glm4_moe: the weights w[k] [T] of the picks oh[k] from the router logits r [T, E]. */
static void route_grouped(struct em *e, int l, val r, val *oh, val *w)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int64_t T = e->T, E = c->n_experts, G = c->n_group, per = E / G;
    int K = c->n_experts_used;
    val p = cellm_xh_barrier(b, sigmoid(e, r));
    val corr = bin(e, "add", p, bc_tail(e, f32(e, PL(e, l, CELLM_LT_ROUTER_CORR)), &p));
    corr = cellm_xh_barrier(b, corr);
    /* each group's two best corrected scores, summed (a tie counts twice, as on the CPU) */
    val c3 = cellm_xh_reshape(b, corr, 3, DIMS(T, G, per));
    val a = cellm_xh_reduce(b, c3, "maximum", 1, DIMS(2), -INFINITY);
    val iota = cellm_xh_iota(b, XH_I32, 3, DIMS(T, G, per), 2);
    val big = cellm_xh_const_int(b, XH_I32, per, 3, DIMS(T, G, per));
    val eq = cellm_xh_compare(b, "EQ", c3, bc_lead(e, a, &c3));
    val ia =
        cellm_xh_reduce(b, cellm_xh_select(b, eq, iota, big), "minimum", 1, DIMS(2), (double)per);
    val first = cellm_xh_compare(b, "EQ", iota, bc_lead(e, ia, &iota));
    val rest = cellm_xh_select(b, first, splat(e, -INFINITY, &c3), c3);
    val a2 = cellm_xh_reduce(b, rest, "maximum", 1, DIMS(2), -INFINITY);
    val gs = cellm_xh_barrier(b, bin(e, "add", a, a2)); /* [T, G] */
    val goh[MAX_K], gv[MAX_K];
    int KG = c->topk_group < MAX_K ? c->topk_group : MAX_K;
    cellm_xla_em_topk(e, gs, KG, goh, gv);
    val kept = goh[0];
    for (int q = 1; q < KG; q++)
        kept = bin(e, "or", kept, goh[q]);
    val kept3 = bc(e, kept, &c3, DIMS(0, 1));
    kept3 = cellm_xh_reshape(b, kept3, 2, DIMS(T, E));
    /* the choices of dropped groups are 0, not -inf (transformers' masked_fill) */
    val choice = cellm_xh_select(b, kept3, corr, splat(e, 0.0f, &corr));
    val cv[MAX_K];
    cellm_xla_em_topk(e, choice, K, oh, cv);
    /* the picks' plain sigmoid scores: the one unmasked element of each row */
    val ninf = splat(e, -INFINITY, &p);
    val sum = none();
    for (int k = 0; k < K; k++) {
        w[k] = cellm_xh_reduce(b, cellm_xh_select(b, oh[k], p, ninf), "maximum", 1, DIMS(1),
                               -INFINITY);
        sum = k ? bin(e, "add", sum, w[k]) : w[0];
    }
    if (c->norm_topk_prob) {
        val den = bin(e, "add", sum, splat(e, 1e-20f, &sum));
        for (int k = 0; k < K; k++)
            w[k] = bin(e, "divide", w[k], den);
    }
    for (int k = 0; k < K; k++)
        w[k] = bin(e, "multiply", w[k], splat(e, (float)c->routed_scale, &w[k]));
}

/* Llama 4: every expert on its own input h * weight (0 where not chosen), [E, T, D]. */
static val experts_scaled(struct em *e, int l, val h, val comb)
{
    const struct cellm_layer *L = &e->d->layers[l];
    struct cellm_xh *b = e->b;
    int64_t T = e->T, E = e->c->n_experts, D = e->c->dim;
    char n[48];
    val like = cellm_xh_shape(XH_F32, 3, DIMS(E, T, D));
    val xe = bin(e, "multiply", bc(e, h, &like, DIMS(1, 2)), bc(e, comb, &like, DIMS(1, 0)));
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_GATE].field);
    val g = cellm_xh_dot(b, xe, cellm_xla_em_matrix(e, n, &L->e_gate[0]), 1, DIMS(0), DIMS(0), 2,
                         2); /* [E, T, I] */
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_UP].field);
    val u = cellm_xh_dot(b, xe, cellm_xla_em_matrix(e, n, &L->e_up[0]), 1, DIMS(0), DIMS(0), 2, 2);
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_E_DOWN].field);
    return cellm_xh_dot(b, cellm_xla_em_glu(e, g, u), cellm_xla_em_matrix(e, n, &L->e_down[0]), 1,
                        DIMS(0), DIMS(0), 2, 2);
}

val cellm_xla_em_moe_sigmoid(struct em *e, int l, val h)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int K = c->n_experts_used < MAX_K ? c->n_experts_used : MAX_K;
    val r = cellm_xla_em_linear_l(e, h, l, CELLM_LT_ROUTER, CELLM_LT_ROUTER_B); /* [T, E] */
    val oh[MAX_K], w[MAX_K];
    if (c->router == CELLM_ROUTER_SIGMOID_GROUP) {
        route_grouped(e, l, r, oh, w);
    } else { /* Llama 4: top-k of the logits, then each through the sigmoid */
        cellm_xla_em_topk(e, cellm_xh_barrier(b, r), K, oh, w);
        for (int k = 0; k < K; k++)
            w[k] = sigmoid(e, w[k]);
        if (c->norm_topk_prob) {
            val s = w[0];
            for (int k = 1; k < K; k++)
                s = bin(e, "add", s, w[k]);
            for (int k = 0; k < K; k++)
                w[k] = bin(e, "divide", w[k], s);
        }
    }
    val comb = splat(e, 0.0f, &r); /* [T, E]: each row's weight of each expert */
    for (int k = 0; k < K; k++)
        comb = cellm_xh_select(b, oh[k], bc_lead(e, w[k], &comb), comb);
    if (c->router == CELLM_ROUTER_SIGMOID_GROUP) {
        val y = cellm_xla_em_experts(e, l, h); /* [E, T, D] */
        val cw = bc(e, comb, &y, DIMS(1, 0));
        return cellm_xh_reduce(b, bin(e, "multiply", y, cw), "add", 1, DIMS(0), 0);
    }
    val y = cellm_xh_reduce(b, experts_scaled(e, l, h, comb), "add", 1, DIMS(0), 0);
    return bin(e, "add", cellm_xla_em_shared(e, l, h), y);
}
