/*
 * emit_pos.c: the position-dependent attention pieces of Llama 4 and Mistral 3 in the
 * StableHLO graph (emit_int.h), mirroring src/exec/cpu/posenc.c operation by operation:
 * RoPE on the pairs (2j, 2j+1), the weightless q/k norm after it, the query scales by
 * position, and the chunk mask. The formulas and their float32 order are in
 * docs/forward/llama4.md and docs/forward/ministral3.md.
 */
#include "exec/xla/emit_int.h"

val cellm_xla_em_rope_pairs(struct em *e, val x, val cs, val sn)
{
    struct cellm_xh *b = e->b;
    int64_t T = x.d[0], H = x.d[1], hd = x.d[2], half = cs.d[1]; /* the table's */
    val xr = 2 * half < hd ? cellm_xh_slice(b, x, DIMS(0, 0, 0), DIMS(T, H, 2 * half)) : x;
    xr = cellm_xh_reshape(b, xr, 4, DIMS(T, H, half, 2));
    val a = cellm_xh_reshape(b, cellm_xh_slice(b, xr, DIMS(0, 0, 0, 0), DIMS(T, H, half, 1)), 3,
                             DIMS(T, H, half));
    val bb = cellm_xh_reshape(b, cellm_xh_slice(b, xr, DIMS(0, 0, 0, 1), DIMS(T, H, half, 2)), 3,
                              DIMS(T, H, half));
    val c = bc(e, cs, &a, DIMS(0, 2)), s = bc(e, sn, &a, DIMS(0, 2));
    /* torch's complex product (ac - bs, as + bc), the tables already times the factor */
    val re = bin(e, "subtract", bin(e, "multiply", a, c), bin(e, "multiply", bb, s));
    val im = bin(e, "add", bin(e, "multiply", a, s), bin(e, "multiply", bb, c));
    val pr[2] = {cellm_xh_reshape(b, re, 4, DIMS(T, H, half, 1)),
                 cellm_xh_reshape(b, im, 4, DIMS(T, H, half, 1))};
    val y = cellm_xh_reshape(b, cellm_xh_concat(b, pr, 2, 3), 3, DIMS(T, H, 2 * half));
    if (2 * half == hd) return y;
    val parts[2] = {y, cellm_xh_slice(b, x, DIMS(0, 0, 2 * half), DIMS(T, H, hd))};
    return cellm_xh_concat(b, parts, 2, 2);
}

val cellm_xla_em_l2norm(struct em *e, val x)
{
    /* x * (1 / sqrt(mean(x^2) + eps)), as the RMS norm without its weight */
    float n = (float)x.d[2], eps = (float)e->c->norm_eps;
    val ss = cellm_xh_reduce(e->b, bin(e, "multiply", x, x), "add", 1, DIMS(2), 0);
    val v = bin(e, "divide", ss, splat(e, n, &ss));
    val rs = bin(e, "divide", splat(e, 1.0f, &v),
                 cellm_xh_un(e->b, "sqrt", bin(e, "add", v, splat(e, eps, &v))));
    return bin(e, "multiply", x, bc_lead(e, rs, &x));
}

val cellm_xla_em_qscale(struct em *e, int l, val q)
{
    const struct cellm_config *c = e->c;
    struct cellm_xh *b = e->b;
    int mistral = c->qscale_beta != 0, temp = c->attn_temp && e->d->layers[l].nope;
    if (!mistral && !temp) return q;
    int64_t T = e->T;
    val pos = bin(e, "add", cellm_xh_bcast(b, e->pos0, 1, DIMS(T), NULL),
                  cellm_xh_iota(b, XH_I32, 1, DIMS(T), 0));
    pos = cellm_xh_convert(b, pos, XH_F32);
    val s;
    if (mistral) { /* 1 + beta * log(1 + floor(p / L0)), p / L0 a true division */
        val f =
            cellm_xh_un(b, "floor", bin(e, "divide", pos, splat(e, (float)c->qscale_len, &pos)));
        val lg = cellm_xh_un(b, "log", bin(e, "add", splat(e, 1.0f, &f), f));
        s = bin(e, "add", splat(e, 1.0f, &lg),
                bin(e, "multiply", splat(e, (float)c->qscale_beta, &lg), lg));
    } else { /* log1p(floor((p + 1) / floor_scale)) * attn_scale + 1 */
        val p1 = bin(e, "add", pos, splat(e, 1.0f, &pos));
        val f = cellm_xh_un(b, "floor", bin(e, "divide", p1, splat(e, (float)c->temp_floor, &p1)));
        val lg = cellm_xh_un(b, "log_plus_one", f);
        s = bin(e, "add", bin(e, "multiply", lg, splat(e, (float)c->temp_scale, &lg)),
                splat(e, 1.0f, &lg));
    }
    return bin(e, "multiply", q, bc(e, s, &q, DIMS(0)));
}

void cellm_xla_em_chunk_mask(struct em *e, val kp, val qp)
{
    const struct cellm_config *c = e->c;
    int any = 0;
    for (int l = 0; l < c->n_layers; l++)
        any |= e->d->layers[l].attn == CELLM_ATTN_CHUNKED;
    if (!any || c->attn_chunk <= 0) return;
    /* j <= i and floor(j / C) = floor(i / C): positions are >= 0, so integer division */
    val C = cellm_xh_const_int(e->b, XH_I32, c->attn_chunk, kp.rank, kp.d);
    val same = cellm_xh_compare(e->b, "EQ", bin(e, "divide", kp, C), bin(e, "divide", qp, C));
    e->mask_chunk = bin(e, "and", e->mask_full, same);
}
