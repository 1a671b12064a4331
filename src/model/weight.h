/*
 * weight.h: views of weights in their stored format.
 *
 * A struct cellm_weight is a matrix [rows][cols] (a Linear's [out][in], or an embedding's
 * [vocab][dim]) that points into the mapped checkpoint: F32, F16 or BF16 values, or MLX
 * affine codes with their scales and biases. Nothing is widened at load; kernels read
 * the stored bytes (possibly unaligned) and reconstruct exactly
 *     w = fl(fl(scale * q) + bias)     (affine; scale and bias widened exactly)
 * Sub-views (rows r0..r1 of a fused projection, one expert of a stacked tensor) are
 * views too.
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

/* Bytes a weight occupies in the checkpoint (codes + scales + biases). */
size_t cellm_weight_bytes(const struct cellm_weight *w);

const char *cellm_wfmt_name(enum cellm_wfmt f);

#endif
