/*
 * kernels_fp.c: dispatch of the quantized formats' kernels (see kernels_fp.h) and their
 * portable C.
 *
 * The SIMD loops live once in kernels_fp_simd.h (compiled by kernels_fp_avx2.c and
 * kernels_fp_avx512.c). The portable level decodes the row formats through the scalar
 * reference (model/weight.c) and the column formats (GPTQ, AWQ) through one loop here,
 * cellm_fp_col_decode, which looks each group's scale and zero up once per run of inputs
 * in that group instead of once per element, and writes rows or a GEMM panel alike.
 */
#include "kernels_fp.h"

#include "base/half.h"

static int is_col(const struct cellm_weight *w)
{
    return w->fmt == CELLM_W_GPTQ || w->fmt == CELLM_W_AWQ;
}

int cellm_cpu_fp_format(const struct cellm_weight *w)
{
    return w->fmt >= CELLM_W_MXFP4 && w->fmt <= CELLM_W_AWQ;
}

/* ---- portable GPTQ / AWQ -------------------------------------------------------------- */

/* AutoAWQ packs outputs 8j+k into nibble awq_nibble[k] of word j. */
static const int awq_nibble[8] = {0, 4, 1, 5, 2, 6, 3, 7};

static float scale_at(const struct cellm_weight *w, size_t i)
{
    switch (w->sdtype) {
    case CELLM_DT_F32:
        return cellm_bits_f32(cellm_load_u32(w->scales + 4 * i));
    case CELLM_DT_BF16:
        return cellm_bf16_to_f32(cellm_load_u16(w->scales + 2 * i));
    default:
        return cellm_f16_to_f32(cellm_load_u16(w->scales + 2 * i));
    }
}

/* Code of stored row o, input i. */
static int32_t col_code(const struct cellm_weight *w, int64_t o, int64_t i)
{
    if (w->fmt == CELLM_W_AWQ)
        return (int32_t)((cellm_load_u32(w->data + 4 * (size_t)(i * (w->ld / 8) + o / 8)) >>
                          (4 * awq_nibble[o % 8])) &
                         15);
    const int pack = 32 / w->bits;
    uint32_t word = cellm_load_u32(w->data + 4 * (size_t)((i / pack) * w->ld + o));
    return (int32_t)((word >> (w->bits * (int)(i % pack))) & ((1u << w->bits) - 1));
}

/* Zero (GPTQ v1's + 1 included) of stored row o in group g. */
static int32_t col_zero(const struct cellm_weight *w, int64_t o, int64_t g)
{
    const int pack = 32 / w->bits;
    uint32_t zw = cellm_load_u32(w->zeros + 4 * (size_t)(g * (w->ld / pack) + o / pack));
    int sh = w->fmt == CELLM_W_AWQ ? 4 * awq_nibble[o % 8] : w->bits * (int)(o % pack);
    return (int32_t)((zw >> sh) & ((1u << w->bits) - 1)) + w->zero_one;
}

void cellm_fp_col_decode(const struct cellm_weight *w, int64_t r0, int64_t nr, int64_t k0,
                         int64_t kc, float *out, int64_t so, int64_t sk)
{
    for (int64_t k = 0; k < nr; k++) {
        int64_t o = r0 + k + w->r_off, gprev = -1;
        float s = 0;
        int32_t z = 0;
        for (int64_t i = k0; i < k0 + kc; i++) {
            int64_t g = w->g_idx ? (int64_t)(int32_t)cellm_load_u32(w->g_idx + 4 * (size_t)i)
                                 : i / w->group;
            if (g != gprev) {
                z = col_zero(w, o, g);
                s = scale_at(w, (size_t)(g * w->ld + o));
                gprev = g;
            }
            /* GPTQ's reference is s * (float)(q - z), AWQ's (float)(q - z) * s: the same
             * float, as the product is exact (<= 11 + 9 significant bits with F16 scales) or
             * rounds once from the same operands (F32 scales) */
            out[k * so + (i - k0) * sk] = (float)(col_code(w, o, i) - z) * s;
        }
    }
}

int cellm_cpu_packed_dequant_rows(const struct cellm_weight *w, int64_t r0, int64_t nr, float *out)
{
    if (!is_col(w)) return 0;
    cellm_fp_col_decode(w, r0, nr, 0, w->cols, out, w->cols, 1);
    return 1;
}

/* ---- dispatch ----------------------------------------------------------------------- */

int cellm_cpu_fp_dequant(enum cellm_isa isa, const struct cellm_weight *w, int64_t r, int64_t k0,
                         int64_t kc, float *out)
{
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512) return cellm_fp_avx512_dequant(w, r, k0, kc, out);
    if (isa == CELLM_ISA_AVX2) return cellm_fp_avx2_dequant(w, r, k0, kc, out);
#endif
    (void)isa, (void)w, (void)r, (void)k0, (void)kc, (void)out;
    return 0;
}

int cellm_cpu_fp_matvec(enum cellm_isa isa, const struct cellm_weight *w, int64_t r0, int64_t r1,
                        const float *x, int64_t ldx, int n, float *y, int64_t ldy, float *scratch)
{
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512)
        return cellm_fp_avx512_matvec(w, r0, r1, x, ldx, n, y, ldy, scratch);
    if (isa == CELLM_ISA_AVX2) return cellm_fp_avx2_matvec(w, r0, r1, x, ldx, n, y, ldy, scratch);
#endif
    (void)isa, (void)w, (void)r0, (void)r1, (void)x, (void)ldx, (void)n, (void)y, (void)ldy;
    (void)scratch;
    return 0;
}

int64_t cellm_cpu_fp_panel(enum cellm_isa isa, const struct cellm_weight *w, int64_t f0, int nf,
                           int64_t k0, int64_t kc, int nr, float *p)
{
    if (!is_col(w)) return 0;
    int64_t done = 0;
#if defined(__x86_64__)
    if (isa == CELLM_ISA_AVX512) done = cellm_fp_avx512_panel(w, f0, nf, k0, kc, nr, p);
    if (isa == CELLM_ISA_AVX2) done = cellm_fp_avx2_panel(w, f0, nf, k0, kc, nr, p);
#endif
    (void)isa;
    if (done) return done;
    for (int64_t k = 0; k < kc; k++)
        for (int f = nf; f < nr; f++)
            p[k * nr + f] = 0;
    cellm_fp_col_decode(w, f0, nf, k0, kc, p, 1, nr);
    return kc;
}
