/*
 * emit_g3n.c: Gemma 3n's layers in the StableHLO graph (emit_int.h), in the order of
 * src/exec/cpu/altup.c (docs/forward/gemma3n.md): the AltUp streams in from the scaled
 * embeddings and out before the final norm, and each layer's predict, LAuReL beside the
 * attention, the MLP with activation sparsity, correct, and the per-layer input added to
 * every stream but the first. The per-layer inputs themselves are Gemma 4's (emit_g4.c);
 * the attention (KV sharing, the weightless v norm, scale 1) is emit.c's.
 */
#include "exec/xla/emit_int.h"
#include "model/gemma3n.h"

/* fl(sqrt(mean(x^2))) of each row of x [T, D], [T] */
static val root_mean_square(struct em *e, val x)
{
    val ss = cellm_xh_reduce(e->b, bin(e, "multiply", x, x), "add", 1, DIMS(1), 0);
    return cellm_xh_un(e->b, "sqrt", bin(e, "divide", ss, splat(e, (float)x.d[1], &ss)));
}

/* a * m / fl(sqrt(max(mean(a^2), 1e-5))): a projection brought to magnitude m [T] */
static val match_magnitude(struct em *e, val a, val m)
{
    val ss = cellm_xh_reduce(e->b, bin(e, "multiply", a, a), "add", 1, DIMS(1), 0);
    val mean = bin(e, "divide", ss, splat(e, (float)a.d[1], &ss));
    val s = cellm_xh_un(e->b, "sqrt", bin(e, "maximum", mean, splat(e, 1e-5f, &mean)));
    val t = bin(e, "multiply", a, bc_lead(e, m, &a));
    return bin(e, "divide", t, bc_lead(e, s, &t));
}

/* column k of x [T, N], broadcast to like [T, D] */
static val col(struct em *e, val x, int k, const val *like)
{
    val c = cellm_xh_slice(e->b, x, DIMS(0, k), DIMS(x.d[0], k + 1));
    return bc_lead(e, cellm_xh_reshape(e->b, c, 1, DIMS(x.d[0])), like);
}

void cellm_xla_em_g3n_embed(struct em *e, val x)
{
    const struct cellm_config *c = e->c;
    char n[32];
    e->alt[0] = x;
    val m = root_mean_square(e, x);
    for (int k = 1; k < c->altup_n; k++) {
        snprintf(n, sizeof n, "altup_proj%d", k - 1);
        val a = cellm_xla_em_linear(e, x, n, &e->d->altup_proj[k - 1]);
        e->alt[k] = match_magnitude(e, a, m);
    }
}

val cellm_xla_em_g3n_unembed(struct em *e)
{
    const struct cellm_config *c = e->c;
    char n[32];
    val x0 = e->alt[0], x = x0, m = root_mean_square(e, x0);
    for (int k = 1; k < c->altup_n; k++) {
        snprintf(n, sizeof n, "altup_unembed%d", k - 1);
        val t = cellm_xla_em_linear(e, e->alt[k], n, &e->d->altup_unembed[k - 1]);
        x = bin(e, "add", x, match_magnitude(e, t, m)); /* torch.mean: the sum in stream order */
    }
    return bin(e, "divide", x, splat(e, (float)c->altup_n, &x));
}

/* tanh(modality_router(router_norm(x) * fl(1/dim))), [T, n] */
static val route(struct em *e, int l, val x)
{
    const float scale = (float)(1.0 / (double)e->c->dim); /* torch.tensor(hidden_size ** -1.0) */
    val t = cellm_xla_em_norm(e, e->c->norm, x, PL(e, l, CELLM_LT_ALTUP_NORM));
    t = bin(e, "multiply", t, splat(e, scale, &t));
    return cellm_xh_un(e->b, "tanh", cellm_xla_em_linear_l(e, t, l, CELLM_LT_ALTUP_ROUTER, -1));
}

/* relu(gate - (mean + std * z)) over each row of gate [T, I], the biased std */
static val sparsify(struct em *e, val g, float z)
{
    struct cellm_xh *b = e->b;
    val s = cellm_xh_reduce(b, g, "add", 1, DIMS(1), 0);
    val mean = bin(e, "divide", s, splat(e, (float)g.d[1], &s));
    val dv = bin(e, "subtract", g, bc_lead(e, mean, &g));
    val v = cellm_xh_reduce(b, bin(e, "multiply", dv, dv), "add", 1, DIMS(1), 0);
    val sd = cellm_xh_un(b, "sqrt", bin(e, "divide", v, splat(e, (float)g.d[1], &v)));
    val cut = bin(e, "add", mean, bin(e, "multiply", sd, splat(e, z, &sd)));
    val x = bin(e, "subtract", g, bc_lead(e, cut, &g));
    return bin(e, "maximum", x, splat(e, 0.0f, &x));
}

void cellm_xla_em_g3n_layer(struct em *e, int l)
{
    const struct cellm_config *c = e->c;
    const struct cellm_layer *L = &e->d->layers[l];
    struct cellm_xh *b = e->b;
    int N = c->altup_n, A = c->altup_active;
    int64_t T = e->T;
    /* predict: P[y] = sum_x v[y*n + x] * X[x] + X[y], v = prediction_coefs(router(X[a])) */
    val v = cellm_xla_em_linear_l(e, route(e, l, e->alt[A]), l, CELLM_LT_ALTUP_PRED, -1);
    val P[CELLM_XLA_MAX_ALTUP];
    for (int y = 0; y < N; y++) {
        val s = none();
        for (int x = 0; x < N; x++) {
            val t = bin(e, "multiply", col(e, v, y * N + x, &e->alt[x]), e->alt[x]);
            s = x ? bin(e, "add", s, t) : t;
        }
        P[y] = bin(e, "add", s, e->alt[y]);
    }
    val z = P[A];
    val h = cellm_xla_em_norm(e, c->norm, z, PL(e, l, CELLM_LT_ATTN_NORM));
    /* LAuReL: h + norm(right(left(h))) */
    val lau = cellm_xla_em_linear_l(e, h, l, CELLM_LT_LAUREL_L, -1);
    lau = cellm_xla_em_linear_l(e, lau, l, CELLM_LT_LAUREL_R, -1);
    lau = bin(e, "add", h, cellm_xla_em_norm(e, c->norm, lau, PL(e, l, CELLM_LT_LAUREL_NORM)));
    val o = cellm_xla_em_attention(e, l, h);
    o = cellm_xla_em_norm(e, c->norm, o, PL(e, l, CELLM_LT_POST_ATTN_NORM));
    /* (z + attn + laurel) / math.sqrt(2), in f32 */
    val y = bin(e, "add", bin(e, "add", z, o), lau);
    y = bin(e, "divide", y, splat(e, (float)M_SQRT2, &y));
    /* the MLP, its gate cut on the sparse layers */
    val hn = cellm_xla_em_norm(e, c->norm, y, PL(e, l, CELLM_LT_FFN_NORM));
    val g = cellm_xla_em_linear_l(e, hn, l, CELLM_LT_W_GATE, -1);
    val u = cellm_xla_em_linear_l(e, hn, l, CELLM_LT_W_UP, -1);
    float p = c->layer_sparsity ? c->layer_sparsity[l] : 0;
    if (p > 0) g = sparsify(e, g, cellm_gemma3n_std_multiplier(p));
    val m = cellm_xla_em_linear_l(e, cellm_xla_em_glu(e, g, u), l, CELLM_LT_W_DOWN, -1);
    m = cellm_xla_em_norm(e, c->norm, m, PL(e, l, CELLM_LT_POST_FFN_NORM));
    y = bin(e, "add", y, m);
    /* correct: X[k] = (y - P[a]) * (correction_coefs(router(y)) + 1)[k] + P[k], the
     * coefficients clipped to altup_coef_clip */
    val r = route(e, l, y);
    char n[48];
    snprintf(n, sizeof n, "l%d_%s", l, cellm_layer_tensors[CELLM_LT_ALTUP_CORR].field);
    val cw = cellm_xla_em_matrix(e, n, &L->altup_corr); /* [n, n] */
    if (c->altup_clip > 0) {
        const float clip = (float)c->altup_clip;
        cw = bin(e, "maximum", bin(e, "minimum", cw, splat(e, clip, &cw)), splat(e, -clip, &cw));
    }
    val cc = cellm_xh_dot(b, r, cw, 0, NULL, NULL, 1, 1); /* [T, n] */
    cc = bin(e, "add", cc, splat(e, 1.0f, &cc));
    val delta = bin(e, "subtract", y, P[A]);
    for (int k = 0; k < N; k++)
        e->alt[k] = bin(e, "add", bin(e, "multiply", delta, col(e, cc, k, &delta)), P[k]);
    /* the per-layer input: every stream but the first gets
     * norm(proj(act(gate(X[a] * correct_output_scale)) * ple[l])) */
    int64_t PD = c->ple_dim;
    val t = e->alt[A];
    if (c->altup_correct_scale)
        t = bin(e, "multiply", t, bc_tail(e, f32(e, PL(e, l, CELLM_LT_ALTUP_SCALE)), &t));
    val pg = cellm_xla_em_linear_l(e, t, l, CELLM_LT_PLE_GATE, -1); /* [T, P] */
    val pl = cellm_xh_slice(b, e->ple, DIMS(0, l, 0), DIMS(T, l + 1, PD));
    pl = cellm_xh_reshape(b, pl, 2, DIMS(T, PD));
    t = cellm_xla_em_linear_l(e, cellm_xla_em_glu(e, pg, pl), l, CELLM_LT_PLE_PROJ, -1);
    t = cellm_xla_em_norm(e, c->norm, t, PL(e, l, CELLM_LT_PLE_NORM));
    for (int k = 1; k < N; k++)
        e->alt[k] = bin(e, "add", e->alt[k], t);
}
