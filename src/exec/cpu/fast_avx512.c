/*
 * fast_avx512.c: fast-mode products with AVX-512 BF16 (vdpbf16ps) and VNNI (vpdpbusd).
 *
 * BF16: tiles of up to 4 weight rows x 6 input rows of vdpbf16ps keep every accumulator
 * in a register; a tile runs over the whole row length, so its weights are read from
 * memory once per product call and from L1 for every further input row. With one input
 * row (decode) the tile is 4 x 1 and prefetches the next tile's weights, which are the
 * next contiguous bytes of the thread's range.
 *
 * Affine, decode (fewer than 4 input rows): per 128 elements, the low and high nibbles of
 * 64 code bytes meet the input in the 4-bit layout of fast_int.h; two vpdpbusd leave in
 * 32-bit lane l the integer dot product of a quarter of block l/4, converted and scaled by
 * s_g * d_b per lane (8-bit codes: two vpdpbusd over 64 elements each, lanes paired).
 * Affine, prefill: the outer-product form of op_tile (16 rows per vector, the input's
 * 4-byte groups broadcast), about twice the multiply-adds per instruction.
 */
#include "fast_int.h"
#include "kernels_x86.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include "base/half.h"

#define TGT                                                                                        \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vnni,fma,f16c,"     \
                          "avx2")))
#define INLINE static inline __attribute__((always_inline))

int cellm_fast_has_avx512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni") &&
           cellm_cpu_has_f16c();
}

/* ---- activations ----------------------------------------------------------------------- */

/* bf16 round to nearest even of 16 floats, as cellm_fast_bf16 */
TGT INLINE __m256i bf16_16(__m512 x)
{
    __m512i u = _mm512_castps_si512(x);
    __m512i r = _mm512_add_epi32(
        u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                            _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    r = _mm512_srli_epi32(r, 16);
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_cvtepi32_epi16(r);
}

TGT void cellm_fast_quant_row_avx512(const float *x, struct cellm_fast_x *fx, int t, int want_bf,
                                     int want_q)
{
    int64_t K = fx->cols;
    if (want_bf) {
        uint16_t *o = fx->bf + t * fx->ld;
        int64_t i = 0;
        for (; i + 16 <= K; i += 16)
            _mm256_storeu_si256((__m256i *)(o + i), bf16_16(_mm512_loadu_ps(x + i)));
        for (; i < K; i++)
            o[i] = cellm_fast_bf16(x[i]);
    }
    if (!want_q || K % 32) return;
    int8_t *q = fx->q + t * fx->ld, *p = fx->qp + t * fx->ld;
    float *d = fx->d + t * fx->ldb, *dl = fx->dl + t * 4 * fx->ldb, *ds = fx->ds + t * fx->ldb;
    int64_t full = K / 128 * 128;
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int64_t b = 0; b < K / 32; b++) {
        __m512 a0 = _mm512_loadu_ps(x + 32 * b), a1 = _mm512_loadu_ps(x + 32 * b + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a0), _mm512_abs_ps(a1)));
        float dd = amax / 127.0f, id = dd != 0 ? 1.0f / dd : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(a0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(a1, vid));
        q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        _mm_storeu_si128((__m128i *)(q + 32 * b), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + 32 * b + 16), _mm512_cvtepi32_epi8(q1));
        int32_t s = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        d[b] = dd;
        ds[b] = dd * (float)s;
        _mm_storeu_ps(dl + 4 * b, _mm_set1_ps(dd));
        if (32 * b < full) {
            int64_t c = 32 * b / 128 * 128;
            int j = (int)(b % 4);
            _mm_storeu_si128((__m128i *)(p + c + 16 * j),
                             _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, ie, q1)));
            _mm_storeu_si128((__m128i *)(p + c + 64 + 16 * j),
                             _mm512_cvtepi32_epi8(_mm512_permutex2var_epi32(q0, io, q1)));
        }
    }
    memcpy(p + full, q + full, (size_t)(K - full));
}

/* out[i] = the sum of v[i]'s lanes for i < 16, as one transposing tree (45 instructions
 * instead of 16 separate reductions of 8 each, which cost as much as the products of a
 * short row). */
TGT INLINE void reduce16(const __m512 v[16], float *out)
{
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
        b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    /* b[i], 128-bit lane k: partial sums of v[4i..4i+3] over lane k */
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xEE));
    _mm512_storeu_ps(out, _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88),
                                        _mm512_shuffle_f32x4(c[0], c[1], 0xDD)));
}

/* ---- BF16 ------------------------------------------------------------------------------ */

TGT INLINE void bf16_tile(const uint8_t *w, size_t wb, const int R, const uint16_t *x, int64_t ldx,
                          const int T, int64_t K, float *y, int64_t ldy)
{
    __m512 acc[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512i wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            /* the next tile's bytes at this offset: the thread's range is contiguous */
            if (T == 1) _mm_prefetch((const char *)(w + (r + 4) * wb + 2 * k), _MM_HINT_T0);
            wv[r] = _mm512_loadu_si512((const void *)(w + r * wb + 2 * k));
        }
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            __m512i xv = _mm512_loadu_si512((const void *)(x + t * ldx + k));
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    if (k < K) {
        __mmask32 m = (__mmask32)((1ull << (K - k)) - 1);
        __m512i wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            wv[r] = _mm512_maskz_loadu_epi16(m, w + r * wb + 2 * k);
#pragma GCC unroll 6
        for (int t = 0; t < T; t++) {
            __m512i xv = _mm512_maskz_loadu_epi16(m, x + t * ldx + k);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++)
                acc[r][t] = _mm512_dpbf16_ps(acc[r][t], (__m512bh)wv[r], (__m512bh)xv);
        }
    }
    if (R == 4 && T == 6) {
        __m512 v[16], u[16];
        float s[16], z[16];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
#pragma GCC unroll 4
            for (int t = 0; t < 4; t++) {
                v[4 * r + t] = acc[r][t];
                u[4 * r + t] = t < 2 ? acc[r][4 + t] : _mm512_setzero_ps();
            }
        reduce16(v, s);
        reduce16(u, z);
        for (int r = 0; r < 4; r++) {
            for (int t = 0; t < 4; t++)
                y[t * ldy + r] = s[4 * r + t];
            for (int t = 0; t < 2; t++)
                y[(4 + t) * ldy + r] = z[4 * r + t];
        }
        return;
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 6
        for (int t = 0; t < T; t++)
            y[t * ldy + r] = _mm512_reduce_add_ps(acc[r][t]);
}

#define BF16_CASE(R, T)                                                                            \
    case R * 8 + T:                                                                                \
        bf16_tile(wr, w->row_bytes, R, xt, fx->ld, T, K, yt, ldy);                                 \
        break;
#define BF16_CASES(R)                                                                              \
    BF16_CASE(R, 1) BF16_CASE(R, 2) BF16_CASE(R, 3) BF16_CASE(R, 4) BF16_CASE(R, 5) BF16_CASE(R, 6)

TGT static void bf16_rows(const struct cellm_weight *w, int64_t r0, int64_t r1,
                          const struct cellm_fast_x *fx, float *y, int64_t ldy)
{
    int64_t K = w->cols;
    for (int64_t r = r0; r < r1; r += 4) {
        int R = r1 - r < 4 ? (int)(r1 - r) : 4;
        const uint8_t *wr = w->data + (size_t)r * w->row_bytes;
        /* several input rows: fetch the next tile while this one computes */
        if (fx->n > 1)
            for (size_t b = 0; b < 4 * w->row_bytes; b += 64)
                _mm_prefetch((const char *)(wr + 4 * w->row_bytes + b), _MM_HINT_T1);
        for (int t = 0; t < fx->n; t += 6) {
            int T = fx->n - t < 6 ? fx->n - t : 6;
            const uint16_t *xt = fx->bf + t * fx->ld;
            float *yt = y + t * ldy + r;
            switch (R * 8 + T) {
                BF16_CASES(1) BF16_CASES(2) BF16_CASES(3) BF16_CASES(4)
            }
        }
    }
}

/* ---- affine ---------------------------------------------------------------------------- */

/* The weight scales of one 128-element chunk, one per 32-bit lane (lane l: block l/4). */
TGT INLINE __m512 chunk_scales(const uint8_t *sp, int group, enum cellm_dtype dt, int64_t c,
                               __m512i idx)
{
    int per = 128 / group; /* groups in a chunk: 4, 2 or 1 */
    __m128i h = _mm_maskz_loadu_epi16((__mmask8)((1u << per) - 1), sp + 2 * c * per);
    __m128 f = dt == CELLM_DT_BF16 ? _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(h), 16))
                                   : _mm_cvtph_ps(h);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(f));
}

/* sum_b bexp[b] * ds[b] */
TGT INLINE float bias_dot(const float *bexp, const float *ds, int64_t nb)
{
    __m512 a = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 16 <= nb; b += 16)
        a = _mm512_fmadd_ps(_mm512_loadu_ps(bexp + b), _mm512_loadu_ps(ds + b), a);
    if (b < nb) {
        __mmask16 m = (__mmask16)((1u << (nb - b)) - 1);
        a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, bexp + b), _mm512_maskz_loadu_ps(m, ds + b),
                            a);
    }
    return _mm512_reduce_add_ps(a);
}

TGT INLINE void affine_tile(const struct cellm_weight *w, const int BITS, int64_t r0, const int R,
                            const struct cellm_fast_x *fx, int t0, const int T, float *y,
                            int64_t ldy, const float *bw, const float *dsg, __m512i idx)
{
    const int64_t K = w->cols, nb = K / 32, nc = K / 128, ng = K / w->group;
    const size_t wb = w->row_bytes;
    const uint8_t *wr = w->data + (size_t)r0 * wb;
    const uint8_t *sp = w->scales + (size_t)r0 * ng * 2;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    __m512 acc[4][3];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm512_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        __m512i a[4], b[4];
        __m512 s[4];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            if (BITS == 4) {
                const uint8_t *p = wr + r * wb + 64 * c;
                if (T == 1) _mm_prefetch((const char *)(p + 4 * wb), _MM_HINT_T0);
                __m512i v = _mm512_loadu_si512((const void *)p);
                a[r] = _mm512_and_si512(v, m4);
                b[r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
            } else {
                const uint8_t *p = wr + r * wb + 128 * c;
                if (T == 1) {
                    _mm_prefetch((const char *)(p + 4 * wb), _MM_HINT_T0);
                    _mm_prefetch((const char *)(p + 4 * wb + 64), _MM_HINT_T0);
                }
                a[r] = _mm512_loadu_si512((const void *)p);
                b[r] = _mm512_loadu_si512((const void *)(p + 64));
            }
            s[r] = chunk_scales(sp + r * ng * 2, w->group, w->sdtype, c, idx);
        }
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            const int8_t *xq = (BITS == 4 ? fx->qp : fx->q) + (t0 + t) * fx->ld + 128 * c;
            __m512i x0 = _mm512_loadu_si512((const void *)xq);
            __m512i x1 = _mm512_loadu_si512((const void *)(xq + 64));
            __m512 dv = _mm512_loadu_ps(fx->dl + (t0 + t) * 4 * fx->ldb + 16 * c);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                __m512i i;
                if (BITS == 4) {
                    i = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a[r], x0);
                    i = _mm512_dpbusd_epi32(i, b[r], x1);
                } else {
                    __m512i i0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), a[r], x0);
                    __m512i i1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), b[r], x1);
                    i = _mm512_add_epi32(_mm512_permutex2var_epi32(i0, ie, i1),
                                         _mm512_permutex2var_epi32(i0, io, i1));
                }
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(s[r], dv), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 3
        for (int t = 0; t < T; t++) {
            int tt = t0 + t;
            float v = cellm_fast_tail_blocks(w, wr + r * wb, sp + r * ng * 2, BITS, fx, tt, nc * 4,
                                             nb, _mm512_reduce_add_ps(acc[r][t]));
            y[tt * ldy + r0 + r] = v + bias_dot(bw + r * ng, dsg + tt * fx->ldb, ng);
        }
}

/*
 * Prefill, outer-product form: a panel of 16 weight rows is repacked so that one vector
 * holds 4 consecutive codes of each of the 16 rows, and the input's matching 4 bytes are
 * broadcast: one vpdpbusd is then 64 multiply-adds into 16 row sums, a block of 32 is 8 of
 * them into one integer accumulator per row, and only then comes one conversion and one
 * FMA (by the block's activation scale, a broadcast scalar); the weight scale and the
 * bias term are applied once per group. No horizontal reduction: lane l is row l.
 * W: [block][4-byte group j][row] u32, S and B: [group][row] f32.
 */
TGT INLINE void op_tile(const int T, const uint8_t *W, const float *S, const float *B, int64_t nb,
                        int bpg, const struct cellm_fast_x *fx, int t0, const float *dsg, float *y,
                        int64_t ldy, __mmask16 rows)
{
    __m512 acc[8], accg[8];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb / bpg; g++) {
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            accg[t] = _mm512_setzero_ps();
        for (int64_t b = g * bpg; b < (g + 1) * bpg; b++) {
            __m512i ai[8];
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                ai[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                __m512i wv = _mm512_loadu_si512((const void *)(W + (b * 8 + j) * 64));
#pragma GCC unroll 8
                for (int t = 0; t < T; t++) {
                    int32_t xb;
                    memcpy(&xb, fx->q + (t0 + t) * fx->ld + 32 * b + 4 * j, 4);
                    ai[t] = _mm512_dpbusd_epi32(ai[t], wv, _mm512_set1_epi32(xb));
                }
            }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                accg[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ai[t]),
                                          _mm512_set1_ps(fx->d[(t0 + t) * fx->ldb + b]), accg[t]);
        }
        __m512 sv = _mm512_loadu_ps(S + 16 * g), bv = _mm512_loadu_ps(B + 16 * g);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            acc[t] = _mm512_fmadd_ps(accg[t], sv, acc[t]);
            acc[t] = _mm512_fmadd_ps(bv, _mm512_set1_ps(dsg[(t0 + t) * fx->ldb + g]), acc[t]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        _mm512_mask_storeu_ps(y + (t0 + t) * ldy, rows, acc[t]);
}

/* Rows [r, r + R) (R <= 16) repacked for op_tile; rows past R are zero. */
TGT static void op_pack(const struct cellm_weight *w, int64_t r, int R, uint8_t *W, float *S,
                        float *B)
{
    const int64_t nb = w->cols / 32, ng = w->cols / w->group;
    const __m128i m4 = _mm_set1_epi8(0x0f);
    for (int l = 0; l < 16; l++) {
        if (l >= R) {
            for (int64_t q = 0; q < nb * 8; q++)
                memset(W + q * 64 + 4 * l, 0, 4);
            for (int64_t g = 0; g < ng; g++)
                S[16 * g + l] = B[16 * g + l] = 0;
            continue;
        }
        const uint8_t *row = w->data + (size_t)(r + l) * w->row_bytes;
        _mm_prefetch((const char *)(row + 16 * w->row_bytes), _MM_HINT_T1);
        for (int64_t b = 0; b < nb; b++) {
            uint8_t e[32]; /* codes of the block in element order */
            if (w->bits == 4) {
                __m128i v = _mm_loadu_si128((const __m128i *)(row + 16 * b));
                __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
                _mm_storeu_si128((__m128i *)e, _mm_unpacklo_epi8(lo, hi));
                _mm_storeu_si128((__m128i *)(e + 16), _mm_unpackhi_epi8(lo, hi));
            } else {
                memcpy(e, row + 32 * b, 32);
            }
            for (int j = 0; j < 8; j++)
                memcpy(W + (b * 8 + j) * 64 + 4 * l, e + 4 * j, 4);
        }
        const uint8_t *sp = w->scales + (size_t)(r + l) * ng * 2;
        const uint8_t *bp = w->biases + (size_t)(r + l) * ng * 2;
        for (int64_t g = 0; g < ng; g++) {
            S[16 * g + l] = cellm_fast_scale_at(w->sdtype, sp + 2 * g);
            B[16 * g + l] = cellm_fast_scale_at(w->sdtype, bp + 2 * g);
        }
    }
}

#define OP_CASE(T)                                                                                 \
    case T:                                                                                        \
        op_tile(T, W, S, B, nb, bpg, fx, t, dsg, y + r, ldy, rows);                                \
        break;

TGT static void affine_rows_op(const struct cellm_weight *w, int64_t r0, int64_t r1,
                               const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch,
                               const float *dsg)
{
    const int64_t nb = w->cols / 32, ng = w->cols / w->group;
    const int bpg = w->group / 32;
    uint8_t *W = (uint8_t *)scratch;
    float *S = scratch + 4 * fx->ld, *B = S + 16 * ng;
    for (int64_t r = r0; r < r1; r += 16) {
        int R = r1 - r < 16 ? (int)(r1 - r) : 16;
        __mmask16 rows = (__mmask16)((1u << R) - 1);
        op_pack(w, r, R, W, S, B);
        for (int t = 0; t < fx->n; t += 8) {
            int T = fx->n - t < 8 ? fx->n - t : 8;
            switch (T) {
                OP_CASE(1)
                OP_CASE(2) OP_CASE(3) OP_CASE(4) OP_CASE(5) OP_CASE(6) OP_CASE(7) OP_CASE(8)
            }
        }
    }
}

#define AFF_CASE(B, R, T)                                                                          \
    case B * 64 + R * 8 + T:                                                                       \
        affine_tile(w, B, r, R, fx, t, T, y, ldy, scratch, dsg, idx);                              \
        break;
#define AFF_CASES(B, R) AFF_CASE(B, R, 1) AFF_CASE(B, R, 2) AFF_CASE(B, R, 3)

TGT static void affine_rows(const struct cellm_weight *w, int64_t r0, int64_t r1,
                            const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch)
{
    int64_t ng = w->cols / w->group;
    int sh = w->group == 32 ? 2 : w->group == 64 ? 3 : 4; /* lane -> group of the chunk */
    const float *dsg = w->group == 32 ? fx->ds : w->group == 64 ? fx->ds64 : fx->ds128;
    __m512i idx = _mm512_srli_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), sh);
    if (fx->n >= 4) {
        affine_rows_op(w, r0, r1, fx, y, ldy, scratch, dsg);
        return;
    }
    for (int64_t r = r0; r < r1; r += 4) {
        int R = r1 - r < 4 ? (int)(r1 - r) : 4;
        /* biases widened, for the bias term of every input row */
        for (int k = 0; k < R; k++)
            cellm_avx512_widen16(w->sdtype, w->biases + (size_t)(r + k) * ng * 2, ng,
                                 scratch + k * ng);
        for (int t = 0; t < fx->n; t += 3) {
            int T = fx->n - t < 3 ? fx->n - t : 3;
            switch (w->bits * 64 + R * 8 + T) {
                AFF_CASES(4, 1)
                AFF_CASES(4, 2)
                AFF_CASES(4, 3)
                AFF_CASES(4, 4) AFF_CASES(8, 1) AFF_CASES(8, 2) AFF_CASES(8, 3) AFF_CASES(8, 4)
            }
        }
    }
}

/* ---- SiLU ------------------------------------------------------------------------------ */

/* Past the last 16: the same polynomial on a masked vector (after the template). */
TGT static void silu_tail(float *gate, const float *up, int64_t i, int64_t n);

#define FS_ATTR TGT
#define FS_V __m512
#define FS_W 16
#define FS_SET1(f) _mm512_set1_ps(f)
#define FS_ZERO() _mm512_setzero_ps()
#define FS_LOAD(p) _mm512_loadu_ps(p)
#define FS_STORE(p, v) _mm512_storeu_ps(p, v)
#define FS_MIN(a, b) _mm512_min_ps(a, b)
#define FS_MAX(a, b) _mm512_max_ps(a, b)
#define FS_ADD(a, b) _mm512_add_ps(a, b)
#define FS_SUB(a, b) _mm512_sub_ps(a, b)
#define FS_MUL(a, b) _mm512_mul_ps(a, b)
#define FS_DIV(a, b) _mm512_div_ps(a, b)
#define FS_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FS_FNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define FS_ROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define FS_POW2(p, n) _mm512_scalef_ps(p, n)
#define FS_TAIL silu_tail
#define FS_FN(name) name##_avx512
#include "fast_silu.h"

TGT static void silu_tail(float *gate, const float *up, int64_t i, int64_t n)
{
    __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
    __m512 v = fs_silu_mul(_mm512_maskz_loadu_ps(m, gate + i), _mm512_maskz_loadu_ps(m, up + i));
    _mm512_mask_storeu_ps(gate + i, m, v);
}

void cellm_fast_rows_avx512(const struct cellm_weight *w, int64_t r0, int64_t r1,
                            const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch)
{
    if (w->fmt == CELLM_W_BF16)
        bf16_rows(w, r0, r1, fx, y, ldy);
    else
        affine_rows(w, r0, r1, fx, y, ldy, scratch);
}
#endif
