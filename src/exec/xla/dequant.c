/*
 * dequant.c: in-graph dequantization of mxfp4, mxfp8, nvfp4, FP8 blocks, GPTQ and AWQ
 * for the XLA executor (see dequant.h; the formulas are docs/formats.md's).
 *
 * Exactness. Every step below is either integer arithmetic on codes that fit in 32 bits
 * (shifts, masks, selects, subtractions of values below 2^9: exact by definition), a
 * reinterpretation of bits (bitcast_convert: no value changes), a widening conversion
 * (ui32 codes below 2^8 and i32 differences below 2^9 to f32, f16/bf16 scales to f32:
 * every such value is a float32), or the one float32 multiplication the reference
 * performs (code times scale). So the graph's f32 weight equals cellm_weight_row's bit
 * for bit, NaN codes and -0 included, provided the device keeps float32 subnormals (E8M0
 * code 0 is 2^-127; XLA does not flush them unless asked, xla_gpu_ftz is off by default).
 * The multiplication is exact for the small-float formats and for GPTQ/AWQ with 16-bit
 * scales, and rounds once, to nearest even as the CPU's does, for FP8 blocks and F32
 * GPTQ/AWQ scales; no other op touches the value, so there is nothing to contract into an
 * FMA.
 */
#include "exec/xla/dequant.h"

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"

typedef struct cellm_xh_val val;

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* ---- plan: the stored bytes as parameters ---------------------------------------------- */

static enum cellm_xh_ty scale_ty(enum cellm_dtype dt)
{
    return dt == CELLM_DT_F32 ? XH_F32 : dt == CELLM_DT_BF16 ? XH_BF16 : XH_F16;
}

static size_t scale_size(enum cellm_dtype dt)
{
    return dt == CELLM_DT_F32 ? 4 : 2;
}

enum which { W_CODES, W_SCALES, W_ZEROS, W_GIDX };

static const uint8_t *field(const struct cellm_weight *w, enum which k)
{
    return k == W_CODES ? w->data : k == W_SCALES ? w->scales : k == W_ZEROS ? w->zeros : w->g_idx;
}

/* Parameter base+suffix of n pieces [nr][c1 - c0] (elements of es bytes): columns
 * [c0, c1) of each expert's stored [nr][ld] array `k`, starting at byte offset `at`. The
 * whole width is the checkpoint's bytes as they are; a narrower window is copied out. */
static enum cellm_status put(struct cellm_xla_plan *p, const char *base, const char *suffix,
                             enum cellm_xh_ty ty, const struct cellm_weight *ws, int ne,
                             enum which k, size_t at, int64_t nr, int64_t ld, int64_t c0,
                             int64_t c1, size_t es, struct cellm_error *err)
{
    int n = ne ? ne : 1;
    char name[48];
    snprintf(name, sizeof name, "%s_%s", base, suffix);
    int64_t d[3] = {n, nr, c1 - c0};
    size_t row = (size_t)(c1 - c0) * es, pb = (size_t)nr * row;
    CELLM_TRY(cellm_xla_plan_add(p, name, ty, ne ? 3 : 2, ne ? d : d + 1, n, pb, err));
    struct cellm_xla_wparam *wp = &p->w[p->n - 1];
    if (c0 == 0 && c1 == ld) {
        for (int e = 0; e < n; e++)
            wp->parts[e] = field(&ws[e], k) + at;
        return CELLM_OK;
    }
    wp->owned = cellm_malloc((size_t)n * pb);
    if (!wp->owned) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory staging %s", name);
    for (int e = 0; e < n; e++) {
        const uint8_t *src = field(&ws[e], k) + at;
        uint8_t *dst = wp->owned + (size_t)e * pb;
        for (int64_t r = 0; r < nr; r++)
            memcpy(dst + (size_t)r * row, src + ((size_t)r * (size_t)ld + (size_t)c0) * es, row);
        wp->parts[e] = dst;
    }
    return CELLM_OK;
}

enum cellm_status cellm_xla_plan_packed(struct cellm_xla_plan *p, const char *base,
                                        const struct cellm_weight *ws, int ne,
                                        struct cellm_error *err)
{
    const struct cellm_weight *w = &ws[0];
    const char *nm = w->name ? w->name : base;
    for (int e = 1; e < ne; e++)
        if (ws[e].fmt != w->fmt || ws[e].rows != w->rows || ws[e].cols != w->cols ||
            ws[e].bits != w->bits || ws[e].group != w->group || ws[e].sdtype != w->sdtype ||
            ws[e].block_rows != w->block_rows || ws[e].r_off != w->r_off || ws[e].ld != w->ld ||
            ws[e].ngroups != w->ngroups || ws[e].zero_one != w->zero_one ||
            !ws[e].g_idx != !w->g_idx)
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                              "xla: the experts of %s are not stored alike (expert %d differs "
                              "from expert 0 in format, shape, group, scales or row offset); "
                              "the XLA executor stacks them into one tensor",
                              nm, e);
    int64_t R = w->rows, C = w->cols;
    switch (w->fmt) {
    case CELLM_W_MXFP4:
    case CELLM_W_NVFP4:
    case CELLM_W_MXFP8: {
        int64_t rb = (int64_t)w->row_bytes, G = C / w->group;
        CELLM_TRY(put(p, base, "q", XH_U8, ws, ne, W_CODES, 0, R, rb, 0, rb, 1, err));
        return put(p, base, "s", XH_U8, ws, ne, W_SCALES, 0, R, G, 0, G, 1, err);
    }
    case CELLM_W_FP8BLK: {
        int64_t bn = w->block_rows, bk = w->group, SC = (C + bk - 1) / bk;
        int64_t s0 = w->r_off / bn, s1 = (w->r_off + R - 1) / bn + 1;
        size_t es = scale_size(w->sdtype);
        CELLM_TRY(put(p, base, "q", XH_U8, ws, ne, W_CODES, 0, R, C, 0, C, 1, err));
        /* the scale rows of the view's stored rows: contiguous in the checkpoint */
        return put(p, base, "s", scale_ty(w->sdtype), ws, ne, W_SCALES, (size_t)(s0 * SC) * es,
                   s1 - s0, SC, 0, SC, es, err);
    }
    case CELLM_W_GPTQ:
    case CELLM_W_AWQ: {
        int64_t pack = 32 / w->bits, ld = w->ld, ng = w->ngroups;
        int64_t z0 = w->r_off / pack, z1 = (w->r_off + R + pack - 1) / pack;
        if (w->fmt == CELLM_W_GPTQ)
            CELLM_TRY(put(p, base, "q", XH_U32, ws, ne, W_CODES, 0, C / pack, ld, w->r_off,
                          w->r_off + R, 4, err));
        else
            CELLM_TRY(put(p, base, "q", XH_U32, ws, ne, W_CODES, 0, C, ld / pack, z0, z1, 4, err));
        CELLM_TRY(put(p, base, "z", XH_U32, ws, ne, W_ZEROS, 0, ng, ld / pack, z0, z1, 4, err));
        CELLM_TRY(put(p, base, "s", scale_ty(w->sdtype), ws, ne, W_SCALES, 0, ng, ld, w->r_off,
                      w->r_off + R, scale_size(w->sdtype), err));
        if (w->g_idx) CELLM_TRY(put(p, base, "g", XH_I32, ws, ne, W_GIDX, 0, 1, C, 0, C, 4, err));
        return CELLM_OK;
    }
    default:
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "xla: tensor %s: format %s is not packed", nm,
                          cellm_wfmt_name(w->fmt));
    }
}

/* ---- graph ----------------------------------------------------------------------------- */

static val bin(struct cellm_xh *b, const char *op, val x, val y)
{
    return cellm_xh_bin(b, op, x, y);
}

/* A ui32 (or i32) constant shaped like x. */
static val kc(struct cellm_xh *b, val x, int64_t v)
{
    return cellm_xh_const_int(b, x.ty, v, x.rank, x.d);
}

static val opk(struct cellm_xh *b, const char *op, val x, int64_t v)
{
    return bin(b, op, x, kc(b, x, v));
}

static val cmpk(struct cellm_xh *b, const char *dir, val x, int64_t v)
{
    return cellm_xh_compare(b, dir, x, kc(b, x, v));
}

/* x [d.., n] -> [d.., n, k]: every element repeated k times along a new last dim. */
static val spread(struct cellm_xh *b, val x, int64_t k)
{
    int64_t d[CELLM_XH_MAX_RANK], dims[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++) {
        d[i] = x.d[i];
        dims[i] = i;
    }
    d[x.rank] = k;
    return cellm_xh_bcast(b, x, x.rank + 1, d, dims);
}

/* [d.., n, k] -> [d.., n*k] */
static val merge_last(struct cellm_xh *b, val x)
{
    int64_t d[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank - 1; i++)
        d[i] = x.d[i];
    d[x.rank - 2] *= x.d[x.rank - 1];
    return cellm_xh_reshape(b, x, x.rank - 1, d);
}

/* x with a new dim of size n after dim k, every element repeated along it. */
static val spread_at(struct cellm_xh *b, val x, int k, int64_t n)
{
    int64_t d[CELLM_XH_MAX_RANK], dims[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++) {
        dims[i] = i <= k ? i : i + 1;
        d[dims[i]] = x.d[i];
    }
    d[k + 1] = n;
    return cellm_xh_bcast(b, x, x.rank + 1, d, dims);
}

/* Dims k and k+1 of x merged into one. */
static val merge_at(struct cellm_xh *b, val x, int k)
{
    int64_t d[CELLM_XH_MAX_RANK];
    for (int i = 0, j = 0; i < x.rank; i++, j++) {
        d[j] = x.d[i];
        if (i == k) d[j] *= x.d[++i];
    }
    return cellm_xh_reshape(b, x, x.rank - 1, d);
}

/* x[.., lo:hi, ..] along dim k. */
static val cut(struct cellm_xh *b, val x, int k, int64_t lo, int64_t hi)
{
    int64_t l[CELLM_XH_MAX_RANK], h[CELLM_XH_MAX_RANK];
    for (int i = 0; i < x.rank; i++) {
        l[i] = i == k ? lo : 0;
        h[i] = i == k ? hi : x.d[i];
    }
    return cellm_xh_slice(b, x, l, h);
}

/* E2M1 codes (ui32, 0..15) as f32. The magnitude field m = c & 7 is e<<1 | mantissa;
 * for e >= 1 it moves into float32's exponent and top mantissa bit with the exponent
 * rebias (2^(e-1) needs 126 + e), and the two values with e = 0 are 0 and 0.5 (0x3f000000
 * = m * 0x3f000000 for m in {0, 1}). The sign bit 3 becomes bit 31 (code 8 is -0). */
static val e2m1(struct cellm_xh *b, val c)
{
    val m = opk(b, "and", c, 7);
    val big = opk(b, "add", opk(b, "shift_left", m, 22), 126 << 23);
    val small = opk(b, "multiply", m, 0x3f000000);
    val bits = cellm_xh_select(b, cmpk(b, "LT", m, 2), small, big);
    bits = bin(b, "or", bits, opk(b, "shift_left", opk(b, "and", c, 8), 28));
    return cellm_xh_bitcast(b, bits, XH_F32);
}

/* E4M3 (float8_e4m3fn) codes (ui32, 0..255) as f32, as cellm_e4m3: a normal code's
 * 4-bit exponent and 3-bit mantissa move into float32's fields (shift by 20, rebias by
 * 120); a subnormal is m * 2^-9 (m < 8 converts exactly, the power-of-two product is
 * exact and a float32 normal); 0x7f/0xff are the quiet NaN; the sign is bit 7. */
static val e4m3(struct cellm_xh *b, val c)
{
    val m = opk(b, "and", c, 0x7f);
    val normal = opk(b, "add", opk(b, "shift_left", m, 20), 120 << 23);
    val mf = cellm_xh_convert(b, m, XH_F32);
    val sub = bin(b, "multiply", mf, cellm_xh_const_f32(b, 0x1p-9f, mf.rank, mf.d));
    val bits = cellm_xh_select(b, cmpk(b, "LT", m, 8), cellm_xh_bitcast(b, sub, XH_U32), normal);
    bits = cellm_xh_select(b, cmpk(b, "EQ", m, 0x7f), kc(b, m, 0x7fc00000), bits);
    bits = bin(b, "or", bits, opk(b, "shift_left", opk(b, "and", c, 0x80), 24));
    return cellm_xh_bitcast(b, bits, XH_F32);
}

/* E8M0 scales (ui32, 0..255): 2^(c-127) is c in float32's exponent field; c = 0 is the
 * subnormal 2^-127 (0x00400000) and c = 255 the quiet NaN, as cellm_e8m0. */
static val e8m0(struct cellm_xh *b, val c)
{
    val bits =
        cellm_xh_select(b, cmpk(b, "EQ", c, 0), kc(b, c, 0x00400000), opk(b, "shift_left", c, 23));
    bits = cellm_xh_select(b, cmpk(b, "EQ", c, 255), kc(b, c, 0x7fc00000), bits);
    return cellm_xh_bitcast(b, bits, XH_F32);
}

/* mx formats, any number of leading dims: q ui8 [.., rows, row_bytes], s ui8 [.., rows, G].
 * w = code * scale, exact (docs/formats.md: at most 6 significant bits). */
static val mx(struct cellm_xh *b, const struct cellm_weight *w, val q, val s)
{
    val c = cellm_xh_convert(b, q, XH_U32);
    if (w->fmt != CELLM_W_MXFP8) {
        /* byte k holds element 2k in its low nibble, 2k+1 in its high nibble */
        c = spread(b, c, 2);
        val sh = cellm_xh_iota(b, XH_U32, c.rank, c.d, c.rank - 1);
        c = merge_last(
            b, opk(b, "and", bin(b, "shift_right_logical", c, opk(b, "multiply", sh, 4)), 15));
    }
    val code = w->fmt == CELLM_W_MXFP8 ? e4m3(b, c) : e2m1(b, c);
    val sc = cellm_xh_convert(b, s, XH_U32);
    sc = w->fmt == CELLM_W_NVFP4 ? e4m3(b, sc) : e8m0(b, sc);
    return bin(b, "multiply", code, merge_last(b, spread(b, sc, w->group)));
}

/* FP8 blocks: q ui8 [.., rows, cols], s [.., SR, SC] (the scale rows from the view's first
 * stored row's block on; leading dims: experts). w = fl(e4m3(q) * s[block]): the
 * reference's one rounding. */
static val fp8blk(struct cellm_xh *b, const struct cellm_weight *w, val q, val s)
{
    int64_t R = w->rows, C = w->cols, bn = w->block_rows, bk = w->group, off = w->r_off % bn;
    int l = q.rank - 2;
    val code = e4m3(b, cellm_xh_convert(b, q, XH_U32));
    val sf = cellm_xh_convert(b, s, XH_F32); /* f16/bf16 widen exactly */
    /* each scale over its bn x bk block; edge blocks are cut to the matrix (partial) */
    sf = merge_at(b, spread_at(b, sf, l + 1, bk), l + 1);
    sf = merge_at(b, spread_at(b, sf, l, bn), l);
    sf = cut(b, cut(b, sf, l, off, off + R), l + 1, 0, C);
    return bin(b, "multiply", code, sf);
}

/* [n, W] packed words -> [n, W * pack] codes in element order. GPTQ packs element k of a
 * word at bits*k; AWQ puts element 8j+k in nibble (k>>1) + 4(k&1) of word j, i.e. the
 * order 0 4 1 5 2 6 3 7 (docs/formats.md). */
static val unpack(struct cellm_xh *b, val x, int bits, int awq)
{
    int64_t pack = 32 / bits;
    val c = spread(b, x, pack);
    val k = cellm_xh_iota(b, XH_U32, c.rank, c.d, c.rank - 1);
    val sh = awq ? opk(b, "multiply",
                       bin(b, "add", opk(b, "shift_right_logical", k, 1),
                           opk(b, "multiply", opk(b, "and", k, 1), 4)),
                       4)
                 : opk(b, "multiply", k, bits);
    return merge_last(b, opk(b, "and", bin(b, "shift_right_logical", c, sh), (1 << bits) - 1));
}

/* x [.., ng, R] -> [.., cols, R]: row g repeated over the `group` inputs of group g. */
static val per_input(struct cellm_xh *b, val x, int64_t group)
{
    return merge_at(b, spread_at(b, x, x.rank - 2, group), x.rank - 2);
}

/* GPTQ / AWQ in the parameters of dequant.h (leading dims: experts; with g_idx, one matrix
 * only). Returns [.., rows, cols]. */
static val gptq_awq(struct cellm_xh *b, const struct cellm_weight *w, val q, val z, val s, val g)
{
    int awq = w->fmt == CELLM_W_AWQ, bits = w->bits, l = q.rank - 2;
    int64_t R = w->rows, C = w->cols, pack = 32 / bits, off = w->r_off % pack;
    val codes; /* [.., cols, R] */
    if (awq) {
        codes = cut(b, unpack(b, q, bits, 1), l + 1, off, off + R);
    } else {
        /* [C/pack, R] words -> [C/pack, pack, R]: input i is element i % pack of word i / pack */
        val c = spread_at(b, q, l, pack);
        val sh = opk(b, "multiply", cellm_xh_iota(b, XH_U32, c.rank, c.d, l + 1), bits);
        c = opk(b, "and", bin(b, "shift_right_logical", c, sh), (1 << bits) - 1);
        codes = merge_at(b, c, l);
    }
    val zs = cut(b, unpack(b, z, bits, awq), l + 1, off, off + R); /* [.., ng, R] */
    val sf = cellm_xh_convert(b, s, XH_F32);
    if (cellm_xh_ok(&g)) { /* desc_act: the group of each input (checked in range at load) */
        val gi = cellm_xh_reshape(b, g, 1, DIMS(C));
        zs = cellm_xh_gather_rows(b, zs, gi);
        sf = cellm_xh_gather_rows(b, sf, gi);
    } else {
        zs = per_input(b, zs, w->group);
        sf = per_input(b, sf, w->group);
    }
    /* q - z - zero_one: integers of at most 9 bits, exact in i32 and in f32 */
    val dq =
        bin(b, "subtract", cellm_xh_convert(b, codes, XH_I32), cellm_xh_convert(b, zs, XH_I32));
    if (w->zero_one) dq = opk(b, "subtract", dq, w->zero_one);
    val wt = bin(b, "multiply", sf, cellm_xh_convert(b, dq, XH_F32));
    return cellm_xh_transpose(b, wt, l ? DIMS(0, 2, 1) : DIMS(1, 0));
}

static val param(const struct cellm_xla_plan *p, const val *pv, const char *base,
                 const char *suffix)
{
    char n[48];
    snprintf(n, sizeof n, "%s_%s", base, suffix);
    int i = cellm_xla_plan_find(p, n);
    if (i >= 0) return pv[i];
    val none;
    memset(&none, 0, sizeof none);
    return none;
}

/* Expert e of a stacked parameter as rank-2 (missing stays missing). */
static val expert(struct cellm_xh *b, val x, int64_t e)
{
    if (!cellm_xh_ok(&x)) return x;
    val y = cellm_xh_slice(b, x, DIMS(e, 0, 0), DIMS(e + 1, x.d[1], x.d[2]));
    return cellm_xh_reshape(b, y, 2, DIMS(x.d[1], x.d[2]));
}

static val one(struct cellm_xh *b, const struct cellm_weight *w, val q, val s, val z, val g)
{
    return w->fmt == CELLM_W_FP8BLK ? fp8blk(b, w, q, s) : gptq_awq(b, w, q, z, s, g);
}

val cellm_xla_dequant_packed(struct cellm_xh *b, const struct cellm_xla_plan *p, const val *pv,
                             const char *base, const struct cellm_weight *w)
{
    val q = param(p, pv, base, "q"), s = param(p, pv, base, "s");
    val z = param(p, pv, base, "z"), g = param(p, pv, base, "g");
    if (w->fmt == CELLM_W_MXFP4 || w->fmt == CELLM_W_NVFP4 || w->fmt == CELLM_W_MXFP8)
        return mx(b, w, q, s);
    if (!cellm_xh_ok(&q) || q.rank == 2 || !cellm_xh_ok(&g)) return one(b, w, q, s, z, g);
    /* experts with g_idx (each its own permutation): one matrix at a time */
    int64_t E = q.d[0];
    val *parts = cellm_calloc((size_t)E, sizeof *parts);
    if (!parts) return cellm_xh_concat(b, NULL, 0, 0); /* records the failure */
    for (int64_t e = 0; e < E; e++) {
        val m = one(b, w, expert(b, q, e), expert(b, s, e), expert(b, z, e), expert(b, g, e));
        parts[e] = cellm_xh_reshape(b, m, 3, DIMS(1, w->rows, w->cols));
    }
    val r = cellm_xh_concat(b, parts, (int)E, 0);
    cellm_free(parts);
    return r;
}

val cellm_xla_dequant_rows(struct cellm_xh *b, const struct cellm_xla_plan *p, const val *pv,
                           const char *base, const struct cellm_weight *w, val ids)
{
    val q = param(p, pv, base, "q"), s = param(p, pv, base, "s");
    switch (w->fmt) {
    case CELLM_W_MXFP4:
    case CELLM_W_NVFP4:
    case CELLM_W_MXFP8:
        return mx(b, w, cellm_xh_gather_rows(b, q, ids), cellm_xh_gather_rows(b, s, ids));
    case CELLM_W_FP8BLK: {
        /* row r's scales are scale row (r + off) / bn of the uploaded ones */
        int64_t T = ids.d[0], bn = w->block_rows, bk = w->group, C = w->cols;
        val si = opk(b, "divide", opk(b, "add", ids, w->r_off % bn), bn);
        val code = e4m3(b, cellm_xh_convert(b, cellm_xh_gather_rows(b, q, ids), XH_U32));
        val sf = cellm_xh_convert(b, cellm_xh_gather_rows(b, s, si), XH_F32);
        sf = merge_last(b, spread(b, sf, bk));
        sf = cellm_xh_slice(b, sf, DIMS(0, 0), DIMS(T, C));
        return bin(b, "multiply", code, sf);
    }
    default: /* column-packed: every row needs the whole matrix's words */
        return cellm_xh_gather_rows(b, cellm_xla_dequant_packed(b, p, pv, base, w), ids);
    }
}
