/*
 * fast_avx2.c: fast-mode products with AVX2 (16 vector registers, no BF16 or VNNI), and
 * the f16 KV helpers (F16C) used at both x86 levels.
 *
 * BF16 weights are widened in registers (a shift and a mask split the even and odd
 * elements of 16) and multiplied in f32 with the bf16-rounded input, which is stored
 * widened and permuted per 16 into [even 8][odd 8]; every product is exact, as in
 * vdpbf16ps. Affine weights use vpmaddubsw (u8 x s8 pairs into s16) and vpmaddwd: 4-bit
 * codes directly (2 * 15 * 127 fits s16); 8-bit codes as two nibbles, 16 * hi + lo (a
 * whole byte would overflow s16: 2 * 255 * 127), so the integer sums equal the
 * reference's exactly. Tiles are
 * 4 x 2 (BF16) and 2 x 2 (affine) to stay within 16 registers.
 */
#include "fast_int.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <math.h>

#include "base/half.h"

#define TGT __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

TGT INLINE float hsum8(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/* ---- BF16 ------------------------------------------------------------------------------ */

TGT INLINE void bf16_tile(const uint8_t *w, size_t wb, const int R, const float *x, int64_t ldx,
                          const int T, int64_t K, float *y, int64_t ldy)
{
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    const __m256i hi_mask = _mm256_set1_epi32((int)0xffff0000u);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w + r * wb + 2 * k;
            if (T == 1) _mm_prefetch((const char *)(p + 4 * wb), _MM_HINT_T0);
            __m256i v = _mm256_loadu_si256((const __m256i *)p);
            __m256 lo = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            __m256 hi = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                acc[r][t] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(x + t * ldx + k), acc[r][t]);
                acc[r][t] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + t * ldx + k + 8), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            float v = hsum8(acc[r][t]);
            for (int64_t i = k; i < K; i++)
                v += cellm_bf16_to_f32(cellm_load_u16(w + r * wb + 2 * i)) * x[t * ldx + i];
            y[t * ldy + r] = v;
        }
}

#define BF16_CASE(R, T)                                                                            \
    case R * 8 + T:                                                                                \
        bf16_tile(wr, w->row_bytes, R, xt, fx->ld, T, K, yt, ldy);                                 \
        break;

TGT static void bf16_rows(const struct cellm_weight *w, int64_t r0, int64_t r1,
                          const struct cellm_fast_x *fx, float *y, int64_t ldy)
{
    int64_t K = w->cols;
    for (int64_t r = r0; r < r1; r += 4) {
        int R = r1 - r < 4 ? (int)(r1 - r) : 4;
        const uint8_t *wr = w->data + (size_t)r * w->row_bytes;
        for (int t = 0; t < fx->n; t += 2) {
            int T = fx->n - t < 2 ? fx->n - t : 2;
            const float *xt = fx->xf + t * fx->ld;
            float *yt = y + t * ldy + r;
            switch (R * 8 + T) {
                BF16_CASE(1, 1)
                BF16_CASE(1, 2)
                BF16_CASE(2, 1)
                BF16_CASE(2, 2) BF16_CASE(3, 1) BF16_CASE(3, 2) BF16_CASE(4, 1) BF16_CASE(4, 2)
            }
        }
    }
}

/* ---- affine ---------------------------------------------------------------------------- */

/* Integer dot products of a 64-element chunk: lane l holds a quarter of block l/4. */
TGT INLINE __m256i byte_dot(__m256i c, __m256i x)
{
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(c, m4), x), ones);
    __m256i hi = _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(c, 4), m4), x), ones);
    return _mm256_add_epi32(_mm256_slli_epi32(hi, 4), lo);
}

TGT INLINE __m256i chunk_dot(int bits, const uint8_t *p, __m256i x0, __m256i x1)
{
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0f);
    if (bits == 4) {
        __m256i v = _mm256_loadu_si256((const __m256i *)p);
        __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x0), ones);
        __m256i b = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, x1), ones);
        return _mm256_add_epi32(a, b);
    }
    __m256i a = byte_dot(_mm256_loadu_si256((const __m256i *)p), x0);
    __m256i b = byte_dot(_mm256_loadu_si256((const __m256i *)(p + 32)), x1);
    /* 8 lanes of block 2c and 8 of 2c+1, paired into 4 + 4 */
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), 0xD8);
}

TGT INLINE void affine_tile(const struct cellm_weight *w, int64_t r0, const int R,
                            const struct cellm_fast_x *fx, int t0, const int T, float *y,
                            int64_t ldy, const float *bexp)
{
    const int64_t K = w->cols, nb = K / 32, nc = K / 64, ng = K / w->group;
    const size_t wb = w->row_bytes;
    const uint8_t *wr = w->data + (size_t)r0 * wb;
    const uint8_t *sp = w->scales + (size_t)r0 * ng * 2;
    const int cb = w->bits == 4 ? 32 : 64; /* code bytes per chunk */
    __m256 acc[2][2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++)
            acc[r][t] = _mm256_setzero_ps();
    for (int64_t c = 0; c < nc; c++) {
        __m256i x0[2], x1[2];
        __m256 dv[2];
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            int tt = t0 + t;
            const int8_t *xq = (w->bits == 4 ? fx->qp : fx->q) + tt * fx->ld + 64 * c;
            x0[t] = _mm256_loadu_si256((const __m256i *)xq);
            x1[t] = _mm256_loadu_si256((const __m256i *)(xq + 32));
            dv[t] = _mm256_loadu_ps(fx->dl + tt * 4 * fx->ldb + 8 * c);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const uint8_t *p = wr + r * wb + cb * c;
            if (T == 1) _mm_prefetch((const char *)(p + 2 * wb), _MM_HINT_T0);
            const uint8_t *s = sp + r * ng * 2;
            float s0 = cellm_fast_scale_at(w->sdtype, s + 2 * (2 * c * 32 / w->group));
            float s1 = cellm_fast_scale_at(w->sdtype, s + 2 * ((2 * c + 1) * 32 / w->group));
            __m256 sv = _mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0));
#pragma GCC unroll 2
            for (int t = 0; t < T; t++) {
                __m256i i = chunk_dot(w->bits, p, x0[t], x1[t]);
                acc[r][t] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), _mm256_mul_ps(sv, dv[t]), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 2
    for (int r = 0; r < R; r++)
#pragma GCC unroll 2
        for (int t = 0; t < T; t++) {
            int tt = t0 + t;
            float v = cellm_fast_tail_blocks(w, wr + r * wb, sp + r * ng * 2, w->bits, fx, tt,
                                             nc * 2, nb, hsum8(acc[r][t]));
            const float *be = bexp + r * nb, *ds = fx->ds + tt * fx->ldb;
            __m256 a = _mm256_setzero_ps();
            int64_t b = 0;
            for (; b + 8 <= nb; b += 8)
                a = _mm256_fmadd_ps(_mm256_loadu_ps(be + b), _mm256_loadu_ps(ds + b), a);
            float bs = hsum8(a);
            for (; b < nb; b++)
                bs += be[b] * ds[b];
            y[tt * ldy + r0 + r] = v + bs;
        }
}

#define AFF_CASE(R, T)                                                                             \
    case R * 8 + T:                                                                                \
        affine_tile(w, r, R, fx, t, T, y, ldy, scratch);                                           \
        break;

TGT static void affine_rows(const struct cellm_weight *w, int64_t r0, int64_t r1,
                            const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch)
{
    int64_t nb = w->cols / 32, ng = w->cols / w->group, bpg = w->group / 32;
    for (int64_t r = r0; r < r1; r += 2) {
        int R = r1 - r < 2 ? (int)(r1 - r) : 2;
        for (int k = 0; k < R; k++) {
            const uint8_t *bp = w->biases + (size_t)(r + k) * ng * 2;
            for (int64_t b = 0; b < nb; b++)
                scratch[k * nb + b] = cellm_fast_scale_at(w->sdtype, bp + 2 * (b / bpg));
        }
        for (int t = 0; t < fx->n; t += 2) {
            int T = fx->n - t < 2 ? fx->n - t : 2;
            switch (R * 8 + T) {
                AFF_CASE(1, 1) AFF_CASE(1, 2) AFF_CASE(2, 1) AFF_CASE(2, 2)
            }
        }
    }
}

void cellm_fast_rows_avx2(const struct cellm_weight *w, int64_t r0, int64_t r1,
                          const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch)
{
    if (w->fmt == CELLM_W_BF16)
        bf16_rows(w, r0, r1, fx, y, ldy);
    else
        affine_rows(w, r0, r1, fx, y, ldy, scratch);
}

/* ---- SiLU (as fast_avx512.c's) --------------------------------------------------------- */

/* Past the last 8: expf, as the portable path. */
static void silu_tail(float *gate, const float *up, int64_t i, int64_t n)
{
    for (; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* 2^n through the exponent field (n in [-126, 127] after the clamp) */
TGT INLINE __m256 pow2_mul(__m256 p, __m256 n)
{
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#define FS_ATTR TGT
#define FS_V __m256
#define FS_W 8
#define FS_SET1(f) _mm256_set1_ps(f)
#define FS_ZERO() _mm256_setzero_ps()
#define FS_LOAD(p) _mm256_loadu_ps(p)
#define FS_STORE(p, v) _mm256_storeu_ps(p, v)
#define FS_MIN(a, b) _mm256_min_ps(a, b)
#define FS_MAX(a, b) _mm256_max_ps(a, b)
#define FS_ADD(a, b) _mm256_add_ps(a, b)
#define FS_SUB(a, b) _mm256_sub_ps(a, b)
#define FS_MUL(a, b) _mm256_mul_ps(a, b)
#define FS_DIV(a, b) _mm256_div_ps(a, b)
#define FS_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FS_FNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define FS_ROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define FS_POW2(p, n) pow2_mul(p, n)
#define FS_TAIL silu_tail
#define FS_FN(name) name##_avx2
#include "fast_silu.h"

/* ---- f16 KV cache ---------------------------------------------------------------------- */

TGT void cellm_fast_to_f16_x86(const float *x, uint16_t *out, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(
            (__m128i *)(out + i),
            _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        out[i] = cellm_f32_to_f16(x[i]);
}

TGT float cellm_fast_dot_f16_x86(int avx512, const float *q, const uint16_t *k, int64_t n)
{
    (void)avx512;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i + 8))), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i),
                             _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + i))), a0);
    float s = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++)
        s += q[i] * cellm_f16_to_f32(k[i]);
    return s;
}

TGT void cellm_fast_axpy_f16_x86(float *y, float a, const uint16_t *v, int64_t n)
{
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(
            y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + i))),
                                   _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] += a * cellm_f16_to_f32(v[i]);
}
#endif
