/*
 * weight.h: views of weights in their stored format.
 *
 * A struct cellm_weight is a matrix [rows][cols] (a Linear's [out][in], or an embedding's
 * [vocab][dim]) that points into the mapped checkpoint: F32, F16 or BF16 values, or MLX
 * affine codes with their scales and biases. Nothing is widened at load; kernels read
 * the stored bytes (possibly unaligned) and reconstruct exactly
 *     w = fl(fl(scale * q) + bias)     (affine; scale and bias widened exactly)
 * Sub-views (rows r0..r1 of a fused projection, one expert of a stacked tensor) are
 * views too. The other quantized formats (docs/formats.md gives each one's reference
 * formula and why the float32 reconstruction is exact) are views of the same kind:
 *     MXFP4/MXFP8/NVFP4: w = code * scale   (E2M1/E4M3 codes, E8M0/E4M3 group scales)
 *     FP8 blocks:        w = fl(e4m3(q) * s[o / block_rows][i / group])
 *     GPTQ:              w = s[g][o] * (q - z - zero_one),  g = g_idx[i] or i / group
 *     AWQ:               w = (q - z) * s[i / group][o]
 * GPTQ and AWQ store their codes column-packed ([in][out]-like); their views keep the
 * stored matrix's width (ld) and a row offset (r_off) instead of moving data.
 */
#ifndef CELLM_MODEL_WEIGHT_H
#define CELLM_MODEL_WEIGHT_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint/safetensors.h"

enum cellm_wfmt {
    CELLM_W_NONE = 0, /* absent (e.g. an optional bias) */
    CELLM_W_F32,
    CELLM_W_F16,
    CELLM_W_BF16,
    CELLM_W_AFFINE, /* MLX affine: U32 codes + 16-bit scales and biases */
    CELLM_W_MXFP4,  /* E2M1 codes (2 per byte, low nibble first), U8 E8M0 scales, group 32 */
    CELLM_W_MXFP8,  /* E4M3 codes, U8 E8M0 scales, group 32 */
    CELLM_W_NVFP4,  /* E2M1 codes, U8 E4M3 scales, group 16 */
    CELLM_W_FP8BLK, /* E4M3 codes, F32/BF16 scales per [block_rows][group] block */
    CELLM_W_GPTQ,   /* I32 codes packed along inputs, zeros along outputs, F16 scales */
    CELLM_W_AWQ,    /* I32 codes and zeros packed along outputs (AWQ order), F16 scales */
};

struct cellm_weight {
    enum cellm_wfmt fmt;
    int64_t rows, cols;
    const uint8_t *data; /* row r starts at data + r * row_bytes */
    size_t row_bytes;
    /* affine only */
    int bits;                /* 2, 3, 4, 5, 6 or 8; codes form an LSB-first bit stream per row */
    int group;               /* 32, 64 or 128 consecutive elements share a scale and bias */
    enum cellm_dtype sdtype; /* F16 or BF16, scales and biases alike */
    const uint8_t *scales;   /* [rows][cols / group] */
    const uint8_t *biases;   /* [rows][cols / group] */
    const char *name;        /* tensor name for messages (lives in the checkpoint) */
    /* FP8BLK, GPTQ, AWQ: rows of this view start at row r_off of the stored matrix */
    int64_t r_off;
    int block_rows;       /* FP8BLK: rows per scale block (group = columns per block) */
    int64_t ld;           /* GPTQ, AWQ: out features of the stored matrix */
    const uint8_t *zeros; /* GPTQ, AWQ: I32 packed zeros [ngroups][ld * bits / 32] */
    const uint8_t *g_idx; /* GPTQ: I32 [cols] group of each input, NULL = i / group */
    int ngroups;          /* GPTQ, AWQ: rows of scales and zeros */
    int zero_one;         /* GPTQ v1: stored zeros are zero - 1 */
};

/* A vector (norm weight, bias) in F32, F16 or BF16. */
struct cellm_vec {
    enum cellm_wfmt fmt; /* CELLM_W_NONE when absent */
    int64_t n;
    const uint8_t *data;
};

/* Rows [r0, r0+n) of w. */
struct cellm_weight cellm_weight_rows(const struct cellm_weight *w, int64_t r0, int64_t n);

/* Widens/dequantizes row r into out[cols] (reference scalar path). */
void cellm_weight_row(const struct cellm_weight *w, int64_t r, float *out);

/* Element i of a vector, widened. */
float cellm_vec_at(const struct cellm_vec *v, int64_t i);
/* Widens the whole vector into out[n]. */
void cellm_vec_get(const struct cellm_vec *v, float *out);

/* Code i of an affine row (bit stream, codes may straddle 32-bit words). */
static inline uint32_t cellm_affine_code(const uint8_t *row, int bits, int64_t i)
{
    uint64_t bit = (uint64_t)i * (uint64_t)bits;
    const uint8_t *p = row + bit / 8;
    unsigned shift = (unsigned)(bit % 8);
    /* at most 8 + 7 bits needed: two bytes suffice */
    uint32_t v = p[0] | (shift + (unsigned)bits > 8 ? (uint32_t)p[1] << 8 : 0);
    return (v >> shift) & ((1u << bits) - 1);
}

/* E2M1 code (4 bits) as float: +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}; code 8 is -0. */
static inline float cellm_e2m1(unsigned c)
{
    static const float v[16] = {0.0f,  0.5f,  1.0f,  1.5f,  2.0f,  3.0f,  4.0f,  6.0f,
                                -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    return v[c & 15];
}
/* E4M3 (float8_e4m3fn): exponent bias 7, subnormals m * 2^-9, 0x7f/0xff NaN, no Inf.
 * Built from bits: a normal code's exponent and mantissa fields move into float32's
 * (rebias 120); a subnormal is m * 2^-9, exact. */
static inline float cellm_e4m3(unsigned c)
{
    uint32_t sign = (uint32_t)(c & 0x80) << 24, mag = c & 0x7f, bits;
    if (mag == 0x7f) {
        bits = 0x7fc00000u;
    } else if (mag >= 8) {
        bits = (mag << 20) + (120u << 23);
    } else {
        float f = (float)mag * 0x1p-9f;
        uint32_t u;
        __builtin_memcpy(&u, &f, 4);
        bits = u;
    }
    bits |= sign;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}
/* E8M0 scale: 2^(c - 127); 255 is NaN; 0 is 2^-127, float32's subnormal 0x00400000. */
static inline float cellm_e8m0(unsigned c)
{
    c &= 0xff;
    uint32_t bits = c == 255 ? 0x7fc00000u : c ? (uint32_t)c << 23 : 0x00400000u;
    float f;
    __builtin_memcpy(&f, &bits, 4);
    return f;
}

/* Elements [k0, k0 + kc) of row r, as cellm_weight_row gives them. */
void cellm_weight_row_seg(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc,
                          float *out);

/* Bits of storage per weight (codes, scales, zeros and biases together). */
double cellm_weight_bpw(const struct cellm_weight *w);

/* Bytes a weight occupies in the checkpoint (codes + scales + biases). */
size_t cellm_weight_bytes(const struct cellm_weight *w);

const char *cellm_wfmt_name(enum cellm_wfmt f);

#endif
