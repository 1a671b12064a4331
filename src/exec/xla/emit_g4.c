/*
 * emit_g4.c: Gemma 4's per-layer embeddings (PLE) and layer end in the StableHLO graph
 * (emit_int.h), in the order of src/exec/cpu/gemma4.c (docs/forward/gemma4.md). The
 * attention pieces (per-layer geometry, KV sharing, k=v, the v norm, proportional RoPE's
 * own table) are in emit.c's attention. The MoE block beside the MLP (enable_moe_block) runs
 * its experts masked-dense as emit.c's other routers do: every expert on every row, zero
 * weight where not chosen.
 */
#include "exec/xla/emit_int.h"

void cellm_xla_em_g4_ple(struct em *e, val x)
{
    const struct cellm_desc *d = e->d;
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int64_t T = e->T, NL = c->n_layers, PD = c->ple_dim;
    const float proj_scale = (float)(1.0 / sqrt((double)c->dim)); /* hidden_size ** -0.5 */
    const float in_scale = (float)(1.0 / sqrt(2.0));              /* 2.0 ** -0.5 */
    /* the model projection of the scaled embeddings, per layer times proj_scale and normed */
    val W = cellm_xla_em_matrix(e, "ple_model", &d->ple_model);
    val u = cellm_xh_dot(b, x, W, 0, NULL, NULL, 1, 1); /* [T, NL * P] */
    u = cellm_xh_reshape(b, u, 3, DIMS(T, NL, PD));
    u = bin(e, "multiply", u, splat(e, proj_scale, &u));
    u = cellm_xla_em_norm(e, c->norm, u, P(e, "ple_norm", 0)); /* Gemma 3n divides */
    /* the per-layer embedding rows; ids beyond its vocabulary read row 0 (mlx-lm) */
    val ids = e->tokens;
    val lim = cellm_xh_const_int(b, XH_I32, c->ple_vocab, 1, DIMS(T));
    ids = cellm_xh_select(b, cellm_xh_compare(b, "LT", ids, lim), ids,
                          cellm_xh_const_int(b, XH_I32, 0, 1, DIMS(T)));
    val pe = cellm_xla_em_rows(e, "ple_embed", &d->ple_embed, ids); /* [T, NL * P] */
    pe = cellm_xh_reshape(b, pe, 3, DIMS(T, NL, PD));
    val tk = bin(e, "multiply", pe, splat(e, d->ple_scale, &pe));
    e->ple = bin(e, "multiply", bin(e, "add", u, tk), splat(e, in_scale, &u));
}

val cellm_xla_em_g4_layer_end(struct em *e, int l, val x)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int64_t T = e->T, PD = c->ple_dim;
    if (PD > 0) { /* x + norm(proj(act(gate(x)) * ple[l])) */
        val g = cellm_xla_em_linear_l(e, x, l, CELLM_LT_PLE_GATE, -1); /* [T, P] */
        val pl = cellm_xh_slice(b, e->ple, DIMS(0, l, 0), DIMS(T, l + 1, PD));
        pl = cellm_xh_reshape(b, pl, 2, DIMS(T, PD));
        val y = cellm_xla_em_linear_l(e, cellm_xla_em_glu(e, g, pl), l, CELLM_LT_PLE_PROJ, -1);
        y = cellm_xla_em_norm(e, CELLM_NORM_RMS, y, PL(e, l, CELLM_LT_PLE_NORM));
        x = bin(e, "add", x, y);
    }
    val s = cellm_xh_reshape(b, f32(e, PL(e, l, CELLM_LT_LAYER_SCALAR)), 0, NULL);
    return bin(e, "multiply", x, cellm_xh_bcast(b, s, x.rank, x.d, NULL));
}

val cellm_xla_em_g4_moe(struct em *e, int l, val x, val m)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int64_t T = e->T, D = c->dim;
    int K = c->n_experts_used < 64 ? c->n_experts_used : 64;
    const float root = (float)(1.0 / sqrt((double)D)); /* hidden_size ** -0.5 */
    /* the router's input: the weightless RMS norm of the residual, times its scale and root */
    val r = cellm_xh_reshape(b, x, 3, DIMS(T, 1, D));
    r = cellm_xh_reshape(b, cellm_xla_em_l2norm(e, r), 2, DIMS(T, D));
    r = bin(e, "multiply", r, bc_tail(e, f32(e, PL(e, l, CELLM_LT_ROUTER_SCALE)), &r));
    r = bin(e, "multiply", r, splat(e, root, &r));
    r = cellm_xla_em_linear_l(e, r, l, CELLM_LT_ROUTER, -1); /* [T, E] */
    /* softmax over the experts, cellm_op_softmax's order */
    val m0 = cellm_xh_reduce(b, r, "maximum", 1, DIMS(1), -INFINITY);
    val ex = cellm_xh_un(b, "exponential", bin(e, "subtract", r, bc_lead(e, m0, &r)));
    val sum = cellm_xh_reduce(b, ex, "add", 1, DIMS(1), 0);
    val pr = bin(e, "multiply", ex, bc_lead(e, bin(e, "divide", splat(e, 1.0f, &sum), sum), &ex));
    /* materialised once: the top-k compares the stored probabilities for equality */
    val oh[64], w[64];
    cellm_xla_em_topk(e, cellm_xh_barrier(b, pr), K, oh, w);
    val s = w[0];
    for (int k = 1; k < K; k++)
        s = bin(e, "add", s, w[k]);
    val comb = splat(e, 0.0f, &pr); /* [T, E]: each row's weight of each expert */
    for (int k = 0; k < K; k++)
        comb = cellm_xh_select(b, oh[k], bc_lead(e, bin(e, "divide", w[k], s), &comb), comb);
    /* each pick's renormalised weight times its expert's per_expert_scale (0 elsewhere) */
    val sc = f32(e, PL(e, l, CELLM_LT_EXPERT_SCALE)); /* [E] */
    comb = bin(e, "multiply", comb, bc_tail(e, sc, &comb));
    /* the experts on pre_feedforward_layernorm_2 of the residual, summed with their weights */
    val hn = cellm_xla_em_norm(e, CELLM_NORM_RMS, x, PL(e, l, CELLM_LT_PRE_FFN_NORM2));
    val y = cellm_xla_em_experts(e, l, hn); /* [E, T, D] */
    val acc = cellm_xh_reduce(b, bin(e, "multiply", y, bc(e, comb, &y, DIMS(1, 0))), "add", 1,
                              DIMS(0), 0);
    /* the MLP's and the experts' outputs, each normed, summed */
    m = cellm_xla_em_norm(e, CELLM_NORM_RMS, m, PL(e, l, CELLM_LT_POST_FFN_NORM1));
    acc = cellm_xla_em_norm(e, CELLM_NORM_RMS, acc, PL(e, l, CELLM_LT_POST_FFN_NORM2));
    return bin(e, "add", m, acc);
}
