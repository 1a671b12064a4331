/*
 * fast_int.h: what fast.c shares with its ISA files (fast_avx512.c, fast_avx2.c): the
 * quantized activations of one product call and the per-ISA entry points.
 *
 * Layout of the 4-bit input (qp): MLX packs element 2j of a 32-block in the low nibble of
 * byte j and element 2j+1 in the high nibble. A vector of W/2 code bytes (W = 128 for
 * AVX-512, 64 for AVX2) spans W/32 blocks; its low nibbles meet qp[0, W/2) and its high
 * nibbles qp[W/2, W), where qp holds, per block j of the chunk, its 16 even elements at
 * 16j and its 16 odd ones at W/2 + 16j. Then every 32-bit lane of the integer dot product
 * sums four elements of one block, block (lane / 4) of the chunk; dl repeats each block's
 * scale four times to match. Blocks past the last full chunk stay in natural order.
 */
#ifndef CELLM_EXEC_CPU_FAST_INT_H
#define CELLM_EXEC_CPU_FAST_INT_H

#include "base/half.h"
#include "fast.h"

struct cellm_fast_x {
    int n;
    int64_t cols; /* K */
    int64_t ld;   /* row stride of bf, xf, q, qp (elements) */
    int64_t ldb;  /* row stride of d, ds (blocks); dl uses 4 * ldb */
    int chunk;    /* W of the 4-bit layout; 0 = natural order (portable) */
    uint16_t *bf; /* [n][ld] bf16(x) (AVX-512, portable) */
    float *xf;    /* [n][ld] f32(bf16(x)), per 16 elements [even 8][odd 8] (AVX2) */
    int8_t *q;    /* [n][ld] int8 codes of x, natural order */
    int8_t *qp;   /* [n][ld] the same in the 4-bit layout above */
    float *d;     /* [n][ldb] block scales */
    float *dl;    /* [n][4 * ldb] each block scale four times */
    float *ds;    /* [n][ldb] fl(d * sum q) per block */
    float *ds64;  /* [n][ldb] per group of 64: the two blocks' ds summed */
    float *ds128; /* [n][ldb] per group of 128: the two ds64 summed */
};

/* A stored 16-bit scale or bias (BF16 or F16) as f32, exactly. */
static inline float cellm_fast_scale_at(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h);
}

/* Integer dot product of block b (32 elements) of an affine row of `bits` 4 or 8 with the
 * natural-order int8 input q: the tail blocks of the ISA files. */
static inline int32_t cellm_fast_block_dot(const uint8_t *row, int bits, int64_t b, const int8_t *q)
{
    int32_t I = 0;
    if (bits == 4)
        for (int j = 0; j < 16; j++) {
            uint8_t v = row[16 * b + j];
            I += (v & 15) * q[32 * b + 2 * j] + (v >> 4) * q[32 * b + 2 * j + 1];
        }
    else
        for (int j = 0; j < 32; j++)
            I += row[32 * b + j] * q[32 * b + j];
    return I;
}

/* v plus the blocks [b0, nb) of an affine row (its codes at row, its scales at srow) that
 * follow its last whole vector chunk, against row tt of fx, in block order. */
static inline float cellm_fast_tail_blocks(const struct cellm_weight *w, const uint8_t *row,
                                           const uint8_t *srow, int bits,
                                           const struct cellm_fast_x *fx, int tt, int64_t b0,
                                           int64_t nb, float v)
{
    for (int64_t bb = b0; bb < nb; bb++) {
        int32_t I = cellm_fast_block_dot(row, bits, bb, fx->q + tt * fx->ld);
        float sd = cellm_fast_scale_at(w->sdtype, srow + 2 * (bb * 32 / w->group)) *
                   fx->d[tt * fx->ldb + bb];
        v += sd * (float)I;
    }
    return v;
}

/* The activations of the last product call (for tests). */
const struct cellm_fast_x *cellm_fast_last_x(const struct cellm_fast *f);

/* Scalar quantization of row t of fx from x[cols] (every form the layout needs). */
void cellm_fast_quant_row_ref(const float *x, struct cellm_fast_x *fx, int t, int want_bf,
                              int want_q);

#if defined(__x86_64__)
/* Rows [r0, r1) of w against every row of fx into y[t * ldy + r]; scratch: per thread,
 * 4 * ld + 32 * ldb floats (fast.c). */
void cellm_fast_rows_avx512(const struct cellm_weight *w, int64_t r0, int64_t r1,
                            const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch);
void cellm_fast_quant_row_avx512(const float *x, struct cellm_fast_x *fx, int t, int want_bf,
                                 int want_q);
void cellm_fast_rows_avx2(const struct cellm_weight *w, int64_t r0, int64_t r1,
                          const struct cellm_fast_x *fx, float *y, int64_t ldy, float *scratch);
int cellm_fast_has_avx512(void);
void cellm_fast_silu_mul_avx512(float *gate, const float *up, int64_t n);
void cellm_fast_silu_mul_avx2(float *gate, const float *up, int64_t n);
float cellm_fast_dot_f16_x86(int avx512, const float *q, const uint16_t *k, int64_t n);
void cellm_fast_axpy_f16_x86(float *y, float a, const uint16_t *v, int64_t n);
void cellm_fast_to_f16_x86(const float *x, uint16_t *out, int64_t n);
#endif

#endif
