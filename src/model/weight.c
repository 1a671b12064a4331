/*
 * weight.c: scalar reference access to weights in any storage format. Kernels have
 * faster paths; these define the values they must reproduce.
 */
#include "weight.h"

#include "base/half.h"

struct cellm_weight cellm_weight_rows(const struct cellm_weight *w, int64_t r0, int64_t n)
{
    struct cellm_weight v = *w;
    v.rows = n;
    v.data = w->data + (size_t)r0 * w->row_bytes;
    if (w->fmt == CELLM_W_AFFINE) {
        size_t gbytes = (size_t)(w->cols / w->group) * 2;
        v.scales = w->scales + (size_t)r0 * gbytes;
        v.biases = w->biases + (size_t)r0 * gbytes;
    }
    return v;
}

static inline float half16(enum cellm_dtype dt, const uint8_t *p)
{
    uint16_t h = cellm_load_u16(p);
    return dt == CELLM_DT_BF16 ? cellm_bf16_to_f32(h) : cellm_f16_to_f32(h);
}

void cellm_weight_row(const struct cellm_weight *w, int64_t r, float *out)
{
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
    if (w->fmt == CELLM_W_AFFINE) n += 2 * (size_t)w->rows * (size_t)(w->cols / w->group) * 2;
    return n;
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
    }
    return "?";
}
