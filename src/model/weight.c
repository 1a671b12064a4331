/*
 * weight.c: scalar reference access to weights in any storage format. Kernels have
 * faster paths; these define the values they must reproduce.
 */
#include "weight.h"

#include <math.h>

#include "base/half.h"

static inline float scale_any(enum cellm_dtype dt, const uint8_t *p)
{
    switch (dt) {
    case CELLM_DT_F32:
        return cellm_bits_f32(cellm_load_u32(p));
    case CELLM_DT_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(p));
    default:
        return cellm_f16_to_f32(cellm_load_u16(p));
    }
}

static size_t dt_size(enum cellm_dtype dt)
{
    return dt == CELLM_DT_F32 ? 4 : 2;
}

static int is_mx(enum cellm_wfmt f)
{
    return f == CELLM_W_MXFP4 || f == CELLM_W_MXFP8 || f == CELLM_W_NVFP4;
}

struct cellm_weight cellm_weight_rows(const struct cellm_weight *w, int64_t r0, int64_t n)
{
    struct cellm_weight v = *w;
    v.rows = n;
    v.data = w->data + (size_t)r0 * w->row_bytes;
    if (w->fmt == CELLM_W_AFFINE) {
        size_t gbytes = (size_t)(w->cols / w->group) * 2;
        v.scales = w->scales + (size_t)r0 * gbytes;
        v.biases = w->biases + (size_t)r0 * gbytes;
    } else if (is_mx(w->fmt)) {
        v.scales = w->scales + (size_t)r0 * (size_t)(w->cols / w->group);
    } else if (w->fmt == CELLM_W_FP8BLK || w->fmt == CELLM_W_GPTQ || w->fmt == CELLM_W_AWQ) {
        v.r_off = w->r_off + r0; /* GPTQ/AWQ have row_bytes 0: data stays put */
    }
    return v;
}

static inline float half16(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h);
}

/* AutoAWQ packs outputs 8j+k into nibble kAWQ[k] of word j. */
static const int awq_nibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/* Element i of row r for the formats without a whole-row fast path here. */
static float packed_at(const struct cellm_weight *w, int64_t r, int64_t i)
{
    int64_t o = r + w->r_off;
    const uint32_t mask = (1u << w->bits) - 1;
    const int64_t pack = 32 / w->bits;
    switch (w->fmt) {
    case CELLM_W_FP8BLK: {
        int64_t sc_cols = (w->cols + w->group - 1) / w->group;
        size_t si = (size_t)((o / w->block_rows) * sc_cols + i / w->group);
        float s = scale_any(w->sdtype, w->scales + si * dt_size(w->sdtype));
        float q = cellm_e4m3(w->data[(size_t)r * w->row_bytes + (size_t)i]);
        return q * s; /* rounds once, as the float32 reference's multiply does */
    }
    case CELLM_W_GPTQ: {
        uint32_t word = cellm_load_u32(w->data + 4 * (size_t)((i / pack) * w->ld + o));
        int32_t q = (int32_t)((word >> (w->bits * (i % pack))) & mask);
        int64_t g =
            w->g_idx ? (int64_t)(int32_t)cellm_load_u32(w->g_idx + 4 * (size_t)i) : i / w->group;
        uint32_t zw = cellm_load_u32(w->zeros + 4 * (size_t)(g * (w->ld / pack) + o / pack));
        int32_t z = (int32_t)((zw >> (w->bits * (o % pack))) & mask);
        float s = scale_any(w->sdtype, w->scales + dt_size(w->sdtype) * (size_t)(g * w->ld + o));
        return s * (float)(q - z - w->zero_one); /* <= 11 + 9 significant bits: exact */
    }
    case CELLM_W_AWQ: {
        int sh = 4 * awq_nibble[o % 8];
        uint32_t word = cellm_load_u32(w->data + 4 * (size_t)(i * (w->ld / 8) + o / 8));
        int64_t g = i / w->group;
        uint32_t zw = cellm_load_u32(w->zeros + 4 * (size_t)(g * (w->ld / 8) + o / 8));
        int32_t q = (int32_t)((word >> sh) & 15), z = (int32_t)((zw >> sh) & 15);
        float s = scale_any(w->sdtype, w->scales + dt_size(w->sdtype) * (size_t)(g * w->ld + o));
        return (float)(q - z) * s;
    }
    default:
        return 0;
    }
}

void cellm_weight_row_seg(const struct cellm_weight *w, int64_t r, int64_t k0, int64_t kc,
                          float *out)
{
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    if (is_mx(w->fmt)) {
        const uint8_t *s = w->scales + (size_t)r * (size_t)(w->cols / w->group);
        for (int64_t i = k0; i < k0 + kc;) {
            int64_t g = i / w->group,
                    end = (g + 1) * w->group < k0 + kc ? (g + 1) * w->group : k0 + kc;
            float sc = w->fmt == CELLM_W_NVFP4 ? cellm_e4m3(s[g]) : cellm_e8m0(s[g]);
            /* exact: small floats times a power of two or an E4M3 value */
            if (w->fmt == CELLM_W_MXFP8)
                for (; i < end; i++)
                    out[i - k0] = cellm_e4m3(row[i]) * sc;
            else
                for (; i < end; i++)
                    out[i - k0] = cellm_e2m1((unsigned)row[i / 2] >> (4 * (i & 1))) * sc;
        }
        return;
    }
    if (w->fmt == CELLM_W_FP8BLK || w->fmt == CELLM_W_GPTQ || w->fmt == CELLM_W_AWQ) {
        for (int64_t i = k0; i < k0 + kc; i++)
            out[i - k0] = packed_at(w, r, i);
        return;
    }
    switch (w->fmt) {
    case CELLM_W_F32:
        for (int64_t i = 0; i < kc; i++)
            out[i] = cellm_bits_f32(cellm_load_u32(row + 4 * (k0 + i)));
        return;
    case CELLM_W_F16:
        cellm_f16_to_f32_n(row + 2 * k0, out, (size_t)kc);
        return;
    case CELLM_W_BF16:
        cellm_bf16_to_f32_n(row + 2 * k0, out, (size_t)kc);
        return;
    case CELLM_W_AFFINE: {
        int64_t ng = w->cols / w->group;
        const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
        for (int64_t i = k0; i < k0 + kc; i++) {
            int64_t g = i / w->group;
            float sc = scale_any(w->sdtype, s + 2 * g), bi = scale_any(w->sdtype, b + 2 * g);
            float prod = sc * (float)cellm_affine_code(row, w->bits, i);
            out[i - k0] = prod + bi;
        }
        return;
    }
    default:
        for (int64_t i = 0; i < kc; i++)
            out[i] = 0;
        return;
    }
}

void cellm_weight_row(const struct cellm_weight *w, int64_t r, float *out)
{
    if (w->fmt > CELLM_W_AFFINE) {
        cellm_weight_row_seg(w, r, 0, w->cols, out);
        return;
    }
    const uint8_t *row = w->data + (size_t)r * w->row_bytes;
    switch (w->fmt) {
    case CELLM_W_F32:
        for (int64_t i = 0; i < w->cols; i++)
            out[i] = cellm_bits_f32(cellm_load_u32(row + 4 * i));
        break;
    case CELLM_W_F16:
        cellm_f16_to_f32_n(row, out, (size_t)w->cols);
        break;
    case CELLM_W_BF16:
        cellm_bf16_to_f32_n(row, out, (size_t)w->cols);
        break;
    case CELLM_W_AFFINE: {
        int64_t ng = w->cols / w->group;
        const uint8_t *s = w->scales + (size_t)r * ng * 2, *b = w->biases + (size_t)r * ng * 2;
        for (int64_t g = 0; g < ng; g++) {
            float sc = half16(w->sdtype, s + 2 * g), bi = half16(w->sdtype, b + 2 * g);
            for (int64_t i = g * w->group; i < (g + 1) * w->group; i++) {
                float prod = sc * (float)cellm_affine_code(row, w->bits, i);
                out[i] = prod + bi;
            }
        }
        break;
    }
    case CELLM_W_NONE:
        for (int64_t i = 0; i < w->cols; i++)
            out[i] = 0;
        break;
    default: /* handled above */
        break;
    }
}

float cellm_vec_at(const struct cellm_vec *v, int64_t i)
{
    switch (v->fmt) {
    case CELLM_W_F32:
        return cellm_bits_f32(cellm_load_u32(v->data + 4 * i));
    case CELLM_W_F16:
        return cellm_f16_to_f32(cellm_load_u16(v->data + 2 * i));
    case CELLM_W_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(v->data + 2 * i));
    default:
        return 0;
    }
}

void cellm_vec_get(const struct cellm_vec *v, float *out)
{
    for (int64_t i = 0; i < v->n; i++)
        out[i] = cellm_vec_at(v, i);
}

size_t cellm_weight_bytes(const struct cellm_weight *w)
{
    size_t n = (size_t)w->rows * w->row_bytes;
    size_t rc = (size_t)w->rows * (size_t)w->cols;
    switch (w->fmt) {
    case CELLM_W_AFFINE:
        n += 2 * (size_t)w->rows * (size_t)(w->cols / w->group) * 2;
        break;
    case CELLM_W_MXFP4:
    case CELLM_W_MXFP8:
    case CELLM_W_NVFP4:
        n += (size_t)w->rows * (size_t)(w->cols / w->group);
        break;
    case CELLM_W_FP8BLK:
        n += (size_t)((w->rows + w->block_rows - 1) / w->block_rows) *
             (size_t)((w->cols + w->group - 1) / w->group) * dt_size(w->sdtype);
        break;
    case CELLM_W_GPTQ:
    case CELLM_W_AWQ:
        /* codes, then per group and row a scale and a packed zero */
        n = rc * (size_t)w->bits / 8 +
            (size_t)w->ngroups * (size_t)w->rows * (8 * dt_size(w->sdtype) + (size_t)w->bits) / 8;
        if (w->g_idx) n += (size_t)w->cols * 4;
        break;
    default:
        break;
    }
    return n;
}

double cellm_weight_bpw(const struct cellm_weight *w)
{
    double n = (double)w->rows * (double)w->cols;
    return n > 0 ? 8.0 * (double)cellm_weight_bytes(w) / n : 0;
}

const char *cellm_wfmt_name(enum cellm_wfmt f)
{
    switch (f) {
    case CELLM_W_NONE:
        return "none";
    case CELLM_W_F32:
        return "F32";
    case CELLM_W_F16:
        return "F16";
    case CELLM_W_BF16:
        return "BF16";
    case CELLM_W_AFFINE:
        return "affine";
    case CELLM_W_MXFP4:
        return "mxfp4";
    case CELLM_W_MXFP8:
        return "mxfp8";
    case CELLM_W_NVFP4:
        return "nvfp4";
    case CELLM_W_FP8BLK:
        return "fp8-block";
    case CELLM_W_GPTQ:
        return "gptq";
    case CELLM_W_AWQ:
        return "awq";
    }
    return "?";
}
