/*
 * kernels_fp_simd.h: the SIMD loops of kernels_fp.h, written once and compiled per ISA by
 * kernels_fp_avx2.c (8 lanes) and kernels_fp_avx512.c (16 lanes). Not a public header:
 * each of those files defines the vector types and primitives below and then includes it.
 *
 * Every format has one lane step, "decode L codes into f32 lanes":
 *   E2M1 / E4M3 (mxfp4, nvfp4, mxfp8, FP8 blocks): L consecutive inputs of one row;
 *   GPTQ / AWQ: L consecutive outputs of one input (their words pack several outputs, or
 *   a column of inputs whose neighbouring columns are the neighbouring outputs).
 * and one scale step per group. The loops around them are shared: row_run decodes (into
 * memory) or multiplies (with x) a row segment of any row format; col_run does the same
 * for L outputs of a column format, multiplying up to CELLM_CPU_FP_MAX_ROWS inputs or
 * storing into a GEMM panel. The lane values are exactly those of model/weight.c:
 *   row formats: w = code * scale, a product of two small floats, exact in f32 (FP8
 *     blocks: e4m3 * f32 scale, rounded once, as the reference's float32 multiply);
 *   GPTQ: reference s * (float)(q - z - zero_one); AWQ: (float)(q - z) * s. Here, with
 *     z' = z + zero_one, one fused q * s - (z' * s): z' * s is exact (at most 9 + 11
 *     significant bits with F16 scales, 9 + 8 with BF16), and the FMA rounds the exact
 *     q * s - z' * s = s * (q - z'), itself a float of at most 20 significant bits, to
 *     itself. So nothing rounds, on either side, and the values are equal but for the
 *     sign of a zero weight (q = z, s < 0: the reference's -0, the FMA's +0), which no
 *     sum from +0 can tell apart; the GEMM panels, stored, take (q - z') * s instead, bit
 *     for bit. (F32 scales, where the reference's product does round, take the portable
 *     path.)
 *
 * The includer defines ATTR (target attribute), AI (ATTR + always_inline), FN(name), L,
 * V (float vector), VI (int32 vector) and the primitives
 *   v_zero v_set1 v_halves(a, b) (a in the low L/2 lanes, b in the others) v_loadu v_storeu v_add
 * v_sub v_mul v_fma(a, b, c) = a*b + c, v_fms(a, b, c) = a*b - c, v_hsum, v_first (lane 0), v_cvt
 * (int to float), v_bits / vi_bits (casts), v_sel_gt / v_sel_eq(a, b, yes, no) (per lane: int a > b
 * / a == b ? yes : no), vi_set1 vi_and vi_or vi_add, vi_sll / vi_srl (all lanes by a count),
 * vi_srlv (per-lane counts), vi_perm(v, idx) (lane idx[l] of v, idx < 8), vi_loadu (L words),
 * vi_words(p, nw) (nw <= 5 words, the rest zero, nothing read past them), vi_u8 (L bytes), vi_nib
 * (L / 2 bytes: L nibbles, low first), v_e2m1 (codes 0..15 of int lanes as E2M1 values),
 * v_scales(p, dtype) (L F16 or BF16 values).
 */

/* ---- scales, once per group ----------------------------------------------------------- */

AI float any_scale(enum cellm_dtype dt, const uint8_t *p, size_t i)
{
    switch (dt) {
    case CELLM_DT_F32:
        return cellm_bits_f32(cellm_load_u32(p + 4 * i));
    case CELLM_DT_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(p + 2 * i));
    default:
        return cellm_f16_to_f32(cellm_load_u16(p + 2 * i));
    }
}

/* E4M3 codes (one per lane) as floats, as cellm_e4m3: a normal code's fields shifted into
 * float32's with the exponent rebiased by 120, a subnormal as m * 2^-9, 0x7f as NaN. */
AI V e4m3_lanes(VI c)
{
    VI mag = vi_and(c, vi_set1(0x7f));
    V normal = v_bits(vi_add(vi_sll(mag, 20), vi_set1(120 << 23)));
    V v = v_sel_gt(mag, vi_set1(7), normal, v_mul(v_cvt(mag), v_set1(0x1p-9f)));
    v = v_sel_eq(mag, vi_set1(0x7f), v_bits(vi_set1(0x7fc00000)), v);
    return v_bits(vi_or(vi_bits(v), vi_sll(vi_and(c, vi_set1(0x80)), 24)));
}

/* One E4M3 code (an nvfp4 scale, a tail element) through the lanes: no call, whose
 * clobbered vector registers would cost more than the decode. */
AI float e4m3_1(unsigned c)
{
    return v_first(e4m3_lanes(vi_set1((int)c)));
}

/* The scales of one row: MX one byte per group (E8M0, or E4M3 for nvfp4), FP8 blocks one
 * F32/BF16/F16 value per block of its block row. Set up once per row, so that the loops
 * divide nothing per group. */
struct row_scales {
    const uint8_t *p;
    size_t base; /* FP8 blocks: index of the row's first block */
    enum cellm_wfmt fmt;
    enum cellm_dtype dt;
};

AI struct row_scales row_scales_of(const struct cellm_weight *w, int64_t r)
{
    struct row_scales rs = {w->scales, 0, w->fmt, w->sdtype};
    if (w->fmt == CELLM_W_FP8BLK)
        rs.base =
            (size_t)(((r + w->r_off) / w->block_rows) * ((w->cols + w->group - 1) / w->group));
    else
        rs.p += (size_t)r * (size_t)(w->cols / w->group);
    return rs;
}

AI float row_scale(const struct row_scales *rs, int64_t g)
{
    switch (rs->fmt) {
    case CELLM_W_NVFP4:
        return e4m3_1(rs->p[g]);
    case CELLM_W_FP8BLK:
        return any_scale(rs->dt, rs->p, rs->base + (size_t)g);
    default:
        return cellm_e8m0(rs->p[g]);
    }
}

/* E4M3 scales g .. g + L of a row (fewer at its end, where nothing past it is read). */
AI void row_scales_e4m3(const struct row_scales *rs, int64_t g, int64_t ng, float *out)
{
    if (g + L <= ng) {
        v_storeu(out, e4m3_lanes(vi_u8(rs->p + g)));
        return;
    }
    for (int64_t k = 0; g + k < ng; k++)
        out[k] = e4m3_1(rs->p[g + k]);
}

/* ---- lanes along a row ----------------------------------------------------------------- */

/* L codes of a row from element e (even for E2M1), unscaled. */
AI V row_lanes(const uint8_t *row, int64_t e, int fp4)
{
    return fp4 ? v_e2m1(vi_nib(row + e / 2)) : e4m3_lanes(vi_u8(row + e));
}

/* Elements [k0, k0 + kc) of row r (k0 even for E2M1), w = code * scale: stored to out when
 * x is NULL, else multiplied with x[i] and summed into *a0, *a1 (and *tail for elements
 * past a group's last whole vector). */
AI void row_run(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc, int fp4,
                const float *x, float *out, V *a0, V *a1, float *tail)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    const struct row_scales rs = row_scales_of(w, r);
    const int64_t k1 = k0 + kc;
    int64_t g = k0 / w->group, end = g * w->group;
    for (int64_t i = k0; i < k1; g++) {
        end = end + w->group < k1 ? end + w->group : k1;
        float s = row_scale(&rs, g);
        V sv = v_set1(s);
        if (x)
            for (; i + 2 * L <= end; i += 2 * L) {
                *a0 = v_fma(v_mul(row_lanes(row, i, fp4), sv), v_loadu(x + i), *a0);
                *a1 = v_fma(v_mul(row_lanes(row, i + L, fp4), sv), v_loadu(x + i + L), *a1);
            }
        for (; i + L <= end; i += L) {
            V wv = v_mul(row_lanes(row, i, fp4), sv);
            if (x)
                *a0 = v_fma(wv, v_loadu(x + i), *a0);
            else
                v_storeu(out + (i - k0), wv);
        }
        for (; i < end; i++) {
            float wv =
                (fp4 ? cellm_e2m1((unsigned)row[i / 2] >> (4 * (i & 1))) : e4m3_1(row[i])) * s;
            if (x)
                *tail += wv * x[i];
            else
                out[i - k0] = wv;
        }
    }
}

/* E2M1 rows r (and r + 1 when two) against x permuted per 2L elements into [even L][odd L]
 * (xp): the low nibbles of L code bytes are the even elements, the high ones the odd, so
 * the codes need no interleaving shuffle. Needs cols a multiple of 2L and the group one
 * too, or the group L (halves: the first L/2 lanes of either half of a 2L chunk lie in
 * its first group, the others in the second). */
AI void dot_fp4_perm(const struct cellm_weight *w, int64_t r, int two, int halves, const float *xp,
                     float *y)
{
    const uint8_t *row0 = w->data + (size_t)r * w->row_bytes, *row1 = row0 + w->row_bytes;
    V a0 = v_zero(), a1 = a0, c0 = a0, c1 = a0, s0 = a0, s1 = a0;
    const VI m4 = vi_set1(15);
    const struct row_scales rs0 = row_scales_of(w, r), rs1 = row_scales_of(w, r + two);
    const int64_t step = halves ? 2 * L : w->group; /* elements per scale vector */
    const int64_t ng = w->cols / w->group;
    float sb0[L], sb1[L]; /* halves (nvfp4): L E4M3 scales decoded at once */
    for (int64_t g0 = 0, g = 0; g0 < w->cols; g0 += step) {
        if (halves) {
            int k = (int)(g % L);
            if (k == 0) {
                row_scales_e4m3(&rs0, g, ng, sb0);
                if (two) row_scales_e4m3(&rs1, g, ng, sb1);
            }
            s0 = v_halves(sb0[k], sb0[k + 1]);
            if (two) s1 = v_halves(sb1[k], sb1[k + 1]);
            g += 2;
        } else {
            s0 = v_set1(row_scale(&rs0, g));
            if (two) s1 = v_set1(row_scale(&rs1, g));
            g++;
        }
        for (int64_t e = g0; e < g0 + step; e += 2 * L) {
            V xe = v_loadu(xp + e), xo = v_loadu(xp + e + L);
            VI b0 = vi_u8(row0 + e / 2);
            a0 = v_fma(v_mul(v_e2m1(vi_and(b0, m4)), s0), xe, a0);
            a1 = v_fma(v_mul(v_e2m1(vi_srl(b0, 4)), s0), xo, a1);
            if (two) {
                VI b1 = vi_u8(row1 + e / 2);
                c0 = v_fma(v_mul(v_e2m1(vi_and(b1, m4)), s1), xe, c0);
                c1 = v_fma(v_mul(v_e2m1(vi_srl(b1, 4)), s1), xo, c1);
            }
        }
    }
    y[r] = v_hsum(v_add(a0, a1));
    if (two) y[r + 1] = v_hsum(v_add(c0, c1));
}

static int row_format(const struct cellm_weight *w)
{
    return w->fmt == CELLM_W_MXFP4 || w->fmt == CELLM_W_MXFP8 || w->fmt == CELLM_W_NVFP4 ||
           w->fmt == CELLM_W_FP8BLK;
}

static int is_fp4(const struct cellm_weight *w)
{
    return w->fmt == CELLM_W_MXFP4 || w->fmt == CELLM_W_NVFP4;
}

ATTR int FN(dequant)(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc, float *out)
{
    if (!row_format(w) || (is_fp4(w) && (k0 & 1))) return 0;
    if (is_fp4(w))
        row_run(w, r, k0, kc, 1, NULL, out, NULL, NULL, NULL);
    else
        row_run(w, r, k0, kc, 0, NULL, out, NULL, NULL, NULL);
    return 1;
}

ATTR static float row_dot4(const struct cellm_weight *w, int64_t r, const float *x)
{
    V a0 = v_zero(), a1 = v_zero();
    float t = 0;
    row_run(w, r, 0, w->cols, 1, x, NULL, &a0, &a1, &t);
    return v_hsum(v_add(a0, a1)) + t;
}

ATTR static float row_dot8(const struct cellm_weight *w, int64_t r, const float *x)
{
    V a0 = v_zero(), a1 = v_zero();
    float t = 0;
    row_run(w, r, 0, w->cols, 0, x, NULL, &a0, &a1, &t);
    return v_hsum(v_add(a0, a1)) + t;
}

ATTR static void row_matvec(const struct cellm_weight *w, int64_t r0, int64_t r1, const float *x,
                            float *y, float *xp)
{
    int64_t r = r0;
    const int halves = w->group == L;
    if (is_fp4(w) && (w->group % (2 * L) == 0 || halves) && w->cols % (2 * L) == 0 && xp) {
        for (int64_t b = 0; b < w->cols; b += 2 * L)
            for (int k = 0; k < L; k++) {
                xp[b + k] = x[b + 2 * k];
                xp[b + L + k] = x[b + 2 * k + 1];
            }
        for (; r + 2 <= r1; r += 2)
            halves ? dot_fp4_perm(w, r, 1, 1, xp, y) : dot_fp4_perm(w, r, 1, 0, xp, y);
        if (r < r1) halves ? dot_fp4_perm(w, r, 0, 1, xp, y) : dot_fp4_perm(w, r, 0, 0, xp, y);
        return;
    }
    for (; r < r1; r++)
        y[r] = is_fp4(w) ? row_dot4(w, r, x) : row_dot8(w, r, x);
}

/* ---- lanes across outputs (GPTQ, AWQ) ------------------------------------------------- */

/* Where each of L consecutive outputs o.. finds its code in words packed along outputs,
 * `per` codes to a word (GPTQ zeros: bits-wide fields in order; AWQ codes and zeros:
 * AutoAWQ's nibble order): word idx[l] after word w0, shifted right by sh[l]. */
struct lane_map {
    VI idx, sh;
    int nw;     /* words spanned */
    int64_t w0; /* first word */
};

AI void lane_map_init(struct lane_map *m, int64_t o, int bits, int awq)
{
    static const int awq_nib[8] = {0, 4, 1, 5, 2, 6, 3, 7};
    const int64_t per = 32 / bits;
    int32_t idx[L], sh[L];
    for (int l = 0; l < L; l++) {
        idx[l] = (int32_t)((o + l) / per - o / per);
        sh[l] = awq ? 4 * awq_nib[(o + l) % 8] : bits * (int)((o + l) % per);
    }
    m->idx = vi_loadu(idx);
    m->sh = vi_loadu(sh);
    m->nw = idx[L - 1] + 1;
    m->w0 = o / per;
}

/* The L codes of a lane map from the words at p (word w0 of their row). */
AI VI lane_codes(const uint8_t *p, const struct lane_map *m, uint32_t mask)
{
    return vi_and(vi_srlv(vi_perm(vi_words(p, m->nw), m->idx), m->sh), vi_set1((int)mask));
}

/* Scale and zero lanes of group g (GPTQ v1's + 1 included), and their product (exact). */
AI void col_params(const struct cellm_weight *w, int64_t g, int64_t o, const struct lane_map *zm,
                   uint32_t mask, V *s, V *z, V *zs)
{
    const int64_t per = 32 / w->bits;
    VI zq = lane_codes(w->zeros + 4 * (size_t)(g * (w->ld / per) + zm->w0), zm, mask);
    *s = v_scales(w->scales, (size_t)(g * w->ld + o), w->sdtype);
    *z = v_cvt(vi_add(zq, vi_set1(w->zero_one)));
    *zs = v_mul(*z, *s);
}

/* Word-rows ahead (GPTQ) or input rows ahead (AWQ) that col_run prefetches: the strip of
 * one pass is a column of the stored matrix, whose lines the hardware does not predict. */
#define COL_AHEAD 8
/* Accumulator chains per input row in col_run (inputs taken in turn): enough to cover the
 * FMA latency, as many as the registers hold beside the lanes' scales and zeros. */
#define COL_CHAINS (L == 16 ? 4 : 2)

/* Outputs o .. o + L (rows of the stored matrix) over inputs [k0, k0 + kc) (multiples of
 * the codes per word): the lane vector of each input, w = (q - z) * s, goes to
 * acc[t][i % COL_CHAINS] += w * x[t][i] for t < n, or, with n = 0, to p + (i - k0) * nr. */
AI void col_run(const struct cellm_weight *w, int64_t o, int64_t k0, int64_t kc, int bits, int awq,
                int n, const float *x, int64_t ldx, V acc[][COL_CHAINS], float *p, int nr,
                const float *tab)
{
    const int pack = 32 / bits;
    const uint32_t mask = (1u << bits) - 1;
    struct lane_map zm;
    lane_map_init(&zm, o, bits, awq); /* AWQ codes use the zeros' map */
    V s = v_zero(), z = v_zero(), zs = v_zero();
    int64_t gprev = -1, gend = k0;
    const int64_t awq_ld = w->ld / 8;
    for (int64_t i0 = k0; i0 < k0 + kc; i0 += pack) {
        VI wd = vi_set1(0);
        if (awq) {
            _mm_prefetch(
                (const char *)(w->data + 4 * (size_t)((i0 + COL_AHEAD * pack) * awq_ld + zm.w0)),
                _MM_HINT_T0);
        } else {
            const uint8_t *q = w->data + 4 * (size_t)((i0 / pack) * w->ld + o);
            _mm_prefetch((const char *)(q + 4 * (size_t)(COL_AHEAD * w->ld)), _MM_HINT_T0);
            wd = vi_loadu(q);
        }
#pragma GCC unroll 8
        for (int j = 0; j < pack; j++) {
            int64_t i = i0 + j;
            if (tab) { /* g_idx with a table of s and z * s per group (decode) */
                const float *e =
                    tab + 2 * L * (size_t)(int32_t)cellm_load_u32(w->g_idx + 4 * (size_t)i);
                s = v_loadu(e);
                zs = v_loadu(e + L);
            } else if (w->g_idx) {
                int64_t g = (int32_t)cellm_load_u32(w->g_idx + 4 * (size_t)i);
                if (g != gprev) {
                    col_params(w, g, o, &zm, mask, &s, &z, &zs);
                    gprev = g;
                }
            } else if (i >= gend) {
                int64_t g = i / w->group;
                col_params(w, g, o, &zm, mask, &s, &z, &zs);
                gend = (g + 1) * w->group;
            }
            VI q = awq ? lane_codes(w->data + 4 * (size_t)(i * awq_ld + zm.w0), &zm, 15)
                       : vi_and(vi_srl(wd, bits * j), vi_set1((int)mask));
            /* s * (q - z), exact: see the top of this file */
            V wv = n ? v_fms(v_cvt(q), s, zs) : v_mul(v_sub(v_cvt(q), z), s);
            if (n == 0) v_storeu(p + (size_t)(i - k0) * (size_t)nr, wv);
            for (int t = 0; t < n; t++)
                acc[t][j % COL_CHAINS] = v_fma(wv, v_set1(x[(size_t)t * (size_t)ldx + (size_t)i]),
                                               acc[t][j % COL_CHAINS]);
        }
    }
}

static int col_format(const struct cellm_weight *w)
{
    return w->fmt == CELLM_W_GPTQ || w->fmt == CELLM_W_AWQ;
}

/* AWQ decode of one input row over the 8L outputs from view row r (stored row o = r + r_off
 * a multiple of 8): one load of L words per input serves them all. Lane l of vector m
 * holds nibble m of word l, output 8l + awq_out[m]; nibble positions [m0, m0 + MW) per
 * pass (MW = 8 on 16 lanes: 8 accumulators, scales and zeros fit the 32 registers; 4 on 8
 * lanes). The values are col_run's (the zero folded into one exact FMA). */
#define AWQ_MW (L == 16 ? 8 : 4)
AI void awq_wide(const struct cellm_weight *w, int64_t r, int m0, const float *x, float *y)
{
    static const int awq_out[8] = {0, 2, 4, 6, 1, 3, 5, 7}; /* nibble m holds output 8j + this */
    const int64_t ldw = w->ld / 8, w0 = (r + w->r_off) / 8;
    V acc[AWQ_MW], s[AWQ_MW], zs[AWQ_MW];
    float sc[AWQ_MW][L] __attribute__((aligned(64)));
    for (int m = 0; m < AWQ_MW; m++)
        acc[m] = v_zero();
    for (int64_t g0 = 0; g0 < w->cols; g0 += w->group) {
        int64_t g = g0 / w->group;
        for (int m = 0; m < AWQ_MW; m++)
            for (int l = 0; l < L; l++)
                sc[m][l] = any_scale(w->sdtype, w->scales,
                                     (size_t)(g * w->ld + 8 * (w0 + l) + awq_out[m0 + m]));
        VI zw = vi_loadu(w->zeros + 4 * (size_t)(g * ldw + w0));
        for (int m = 0; m < AWQ_MW; m++) {
            s[m] = v_loadu(sc[m]);
            zs[m] = v_mul(v_cvt(vi_and(vi_srl(zw, 4 * (m0 + m)), vi_set1(15))), s[m]);
        }
        for (int64_t i = g0; i < g0 + w->group; i++) {
            const uint8_t *q = w->data + 4 * (size_t)(i * ldw + w0);
            _mm_prefetch((const char *)(q + 4 * (size_t)(COL_AHEAD * ldw)), _MM_HINT_T0);
            VI wd = vi_loadu(q);
            V xb = v_set1(x[i]);
#pragma GCC unroll 8
            for (int m = 0; m < AWQ_MW; m++) {
                V q_m = v_cvt(vi_and(vi_srl(wd, 4 * (m0 + m)), vi_set1(15)));
                acc[m] = v_fma(v_fms(q_m, s[m], zs[m]), xb, acc[m]);
            }
        }
    }
    for (int m = 0; m < AWQ_MW; m++) {
        v_storeu(sc[m], acc[m]);
        for (int l = 0; l < L; l++)
            y[r + 8 * l + awq_out[m0 + m]] = sc[m][l];
    }
}

/* GPTQ with g_idx (desc_act): the scale and z * s lanes of every group of the L outputs
 * from stored row o, tab[g][2][L], so that an input whose group differs from its
 * neighbour's costs two loads, not a decode of zeros and scales. */
ATTR static void col_table(const struct cellm_weight *w, int64_t o, float *tab)
{
    const uint32_t mask = (1u << w->bits) - 1;
    struct lane_map zm;
    lane_map_init(&zm, o, w->bits, 0);
    for (int64_t g = 0; g < w->ngroups; g++) {
        V s, z, zs;
        col_params(w, g, o, &zm, mask, &s, &z, &zs);
        v_storeu(tab + 2 * L * g, s);
        v_storeu(tab + 2 * L * g + L, zs);
    }
}

/* y[t][r] for view rows [r, r + L), n input rows, all inputs. */
AI void col_block(const struct cellm_weight *w, int64_t r, int bits, int awq, int n, const float *x,
                  int64_t ldx, float *y, int64_t ldy, const float *tab)
{
    V acc[CELLM_CPU_FP_MAX_ROWS][COL_CHAINS];
    for (int t = 0; t < n; t++)
        for (int c = 0; c < COL_CHAINS; c++)
            acc[t][c] = v_zero();
    col_run(w, r + w->r_off, 0, w->cols, bits, awq, n, x, ldx, acc, NULL, 0, tab);
    for (int t = 0; t < n; t++) {
        V a = acc[t][0];
        for (int c = 1; c < COL_CHAINS; c++)
            a = v_add(a, acc[t][c]);
        v_storeu(y + (size_t)t * (size_t)ldy + r, a);
    }
}

/* The instances: one per packing and input row count, so that the loops above unroll. */
#define COL_BLOCK_N(bits, awq)                                                                     \
    switch (n) {                                                                                   \
    case 1:                                                                                        \
        col_block(w, r, bits, awq, 1, x, ldx, y, ldy, tab);                                        \
        break;                                                                                     \
    case 2:                                                                                        \
        col_block(w, r, bits, awq, 2, x, ldx, y, ldy, tab);                                        \
        break;                                                                                     \
    default:                                                                                       \
        col_block(w, r, bits, awq, 3, x, ldx, y, ldy, tab);                                        \
        break;                                                                                     \
    }

ATTR static void col_block_any(const struct cellm_weight *w, int64_t r, int n, const float *x,
                               int64_t ldx, float *y, int64_t ldy, const float *tab)
{
    if (w->fmt == CELLM_W_AWQ) {
        COL_BLOCK_N(4, 1)
    } else if (w->bits == 4) {
        COL_BLOCK_N(4, 0)
    } else {
        COL_BLOCK_N(8, 0)
    }
}

ATTR static void col_panel_any(const struct cellm_weight *w, int64_t o, int64_t k0, int64_t kc,
                               float *p, int nr)
{
    if (w->fmt == CELLM_W_AWQ)
        col_run(w, o, k0, kc, 4, 1, 0, NULL, 0, NULL, p, nr, NULL);
    else if (w->bits == 4)
        col_run(w, o, k0, kc, 4, 0, 0, NULL, 0, NULL, p, nr, NULL);
    else
        col_run(w, o, k0, kc, 8, 0, 0, NULL, 0, NULL, p, nr, NULL);
}

static int col_ok(const struct cellm_weight *w)
{
    return col_format(w) && (w->bits == 4 || (w->bits == 8 && w->fmt == CELLM_W_GPTQ)) &&
           (w->sdtype == CELLM_DT_F16 || w->sdtype == CELLM_DT_BF16);
}

ATTR int FN(matvec)(const struct cellm_weight *w, int64_t r0, int64_t r1, const float *x,
                    int64_t ldx, int n, float *y, int64_t ldy, float *scratch)
{
    if (row_format(w)) {
        if (n != 1) return 0;
        row_matvec(w, r0, r1, x, y, scratch);
        return 1;
    }
    if (!col_ok(w) || n < 1 || n > CELLM_CPU_FP_MAX_ROWS || !scratch) return 0;
    int64_t r = r0;
    if (w->fmt == CELLM_W_AWQ && n == 1 && (r + w->r_off) % 8 == 0)
        for (; r + 8 * L <= r1; r += 8 * L)
            for (int m0 = 0; m0 < 8; m0 += AWQ_MW)
                awq_wide(w, r, m0, x, y);
    const int tab = w->g_idx && (int64_t)w->ngroups * 2 * L <= CELLM_CPU_ROW_BLOCK * w->cols;
    for (; r + L <= r1; r += L) {
        if (tab) col_table(w, r + w->r_off, scratch);
        col_block_any(w, r, n, x, ldx, y, ldy, tab ? scratch : NULL);
    }
    for (; r < r1; r++) { /* fewer rows than a vector: one decoded row at a time */
        cellm_fp_col_decode(w, r, 1, 0, w->cols, scratch, w->cols, 1);
        for (int t = 0; t < n; t++) {
            V a0 = v_zero();
            float tail = 0;
            int64_t i = 0;
            const float *xt = x + (size_t)t * (size_t)ldx;
            for (; i + L <= w->cols; i += L)
                a0 = v_fma(v_loadu(scratch + i), v_loadu(xt + i), a0);
            for (; i < w->cols; i++)
                tail += scratch[i] * xt[i];
            y[(size_t)t * (size_t)ldy + r] = v_hsum(a0) + tail;
        }
    }
    return 1;
}

ATTR int64_t FN(panel)(const struct cellm_weight *w, int64_t f0, int nf, int64_t k0, int64_t kc,
                       int nr, float *p)
{
    const int pack = 32 / (w->bits ? w->bits : 32);
    if (!col_ok(w) || nr % L || k0 % pack || kc % pack) return 0;
    for (int b = 0; b < nr; b += L) {
        int nb = nf - b < 0 ? 0 : nf - b > L ? L : nf - b;
        if (nb == L) {
            col_panel_any(w, f0 + b + w->r_off, k0, kc, p + b, nr);
            continue;
        }
        /* the last panel's partial block: zeros past nf, the rest decoded one by one */
        for (int64_t k = 0; k < kc; k++)
            for (int l = nb; l < L; l++)
                p[k * nr + b + l] = 0;
        if (nb > 0) cellm_fp_col_decode(w, f0 + b, nb, k0, kc, p + b, 1, nr);
    }
    return kc;
}
