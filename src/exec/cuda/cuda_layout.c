/*
 * cuda_layout.c: the device layout of the quantized formats of docs/formats.md, built on
 * the host from a weight view (cuda_int.h, struct cu_layout, says what each format's is).
 * Only GPTQ and AWQ are rewritten: their stored forms differ (codes packed along the
 * inputs or, in AWQ's interleaved order, along the outputs), views of fused projections
 * are column ranges of the stored words, and with desc_act the groups are scattered over
 * the inputs. One layout for both, with the inputs permuted to make groups contiguous,
 * lets one coalesced kernel read them (cuda_mvq.cu). The codes stay 4 or 8 bits, the
 * scales their stored dtype; the zeros (1/group of the codes) are widened to bytes.
 */
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/half.h"
#include "cuda_exec.h"
#include "model/weight.h"

static int sdt_of(enum cellm_dtype dt)
{
    return dt == CELLM_DT_F32 ? CU_S_F32 : dt == CELLM_DT_BF16 ? CU_S_BF16 : CU_S_F16;
}

static size_t sdt_size(int sdt)
{
    return sdt == CU_S_F32 ? 4 : sdt == CU_S_U8 ? 1 : 2;
}

/* AutoAWQ packs outputs 8j+k into nibble awq_nib[k] of word j (docs/formats.md) */
static const int awq_nib[8] = {0, 4, 1, 5, 2, 6, 3, 7};

/* the stored code of input i, output o (of the stored matrix) */
static uint32_t stored_code(const struct cellm_weight *w, int64_t i, int64_t o)
{
    if (w->fmt == CELLM_W_AWQ)
        return cellm_load_u32(w->data + 4 * (size_t)(i * (w->ld / 8) + o / 8)) >>
                   (4 * awq_nib[o % 8]) &
               15u;
    const int64_t pack = 32 / w->bits;
    return cellm_load_u32(w->data + 4 * (size_t)((i / pack) * w->ld + o)) >>
               (w->bits * (int)(i % pack)) &
           ((1u << w->bits) - 1);
}

/* the stored zero of group g, output o */
static uint32_t stored_zero(const struct cellm_weight *w, int64_t g, int64_t o)
{
    if (w->fmt == CELLM_W_AWQ)
        return cellm_load_u32(w->zeros + 4 * (size_t)(g * (w->ld / 8) + o / 8)) >>
                   (4 * awq_nib[o % 8]) &
               15u;
    const int64_t pack = 32 / w->bits;
    return cellm_load_u32(w->zeros + 4 * (size_t)(g * (w->ld / pack) + o / pack)) >>
               (w->bits * (int)(o % pack)) &
           ((1u << w->bits) - 1);
}

static void *own(struct cu_layout *l, int i, size_t n)
{
    l->owned[i] = cellm_malloc(n ? n : 1);
    l->part[i] = l->owned[i];
    return l->owned[i];
}

/* GPTQ/AWQ in the row layout (cu_weight.rowmaj): every part rewritten row by row, so that
 * a warp of the fused decode kernels reads a row's codes, scales and zeros contiguously */
static int layout_gptq_rows(const struct cellm_weight *w, int sizes_only, struct cu_layout *l)
{
    const int64_t R = w->rows, C = w->cols, ng = w->ngroups, o0 = w->r_off;
    const int bits = w->bits, pack = 32 / bits;
    struct cu_weight *d = &l->w;
    const size_t es = sdt_size(d->sdt), wpr = (size_t)(C / pack);
    d->rowmaj = 1;
    d->row_bytes = (int64_t)wpr * 4;
    d->s_bf16 = d->sdt == CU_S_BF16;
    l->bytes[CU_P_DATA] = wpr * (size_t)R * 4;
    if (sizes_only) return 0;
    uint32_t *q = own(l, CU_P_DATA, l->bytes[CU_P_DATA]);
    uint8_t *z = own(l, CU_P_ZEROS, l->bytes[CU_P_ZEROS]);
    uint8_t *s = own(l, CU_P_QS, l->bytes[CU_P_QS]);
    if (!q || !z || !s) return -1;
    for (int64_t o = 0; o < R; o++)
        for (int64_t kw = 0; kw < C / pack; kw++) {
            uint32_t word = 0;
            if (w->fmt == CELLM_W_GPTQ)
                word = cellm_load_u32(w->data + 4 * (size_t)(kw * w->ld + o0 + o));
            else
                for (int k = 0; k < pack; k++)
                    word |= stored_code(w, kw * pack + k, o0 + o) << (bits * k);
            q[(size_t)o * wpr + (size_t)kw] = word;
        }
    for (int64_t o = 0; o < R; o++)
        for (int64_t g = 0; g < ng; g++) {
            z[o * ng + g] = (uint8_t)stored_zero(w, g, o0 + o);
            memcpy(s + (size_t)(o * ng + g) * es, w->scales + (size_t)(g * w->ld + o0 + o) * es,
                   es);
        }
    return 0;
}

/* GPTQ/AWQ: the permutation (if any), codes, zeros and scales of the view */
static int layout_gptq(const struct cellm_weight *w, int sizes_only, int rowmaj,
                       struct cu_layout *l)
{
    const int64_t R = w->rows, C = w->cols, ng = w->ngroups, o0 = w->r_off;
    const int bits = w->bits, pack = 32 / bits;
    const int sdt = sdt_of(w->sdtype);
    struct cu_weight *d = &l->w;
    d->fmt = CU_W_GPTQ;
    d->sdt = sdt;
    d->ngroups = (int)ng;
    d->zero_one = w->fmt == CELLM_W_GPTQ ? w->zero_one : 0;
    l->bytes[CU_P_DATA] = (size_t)(C / pack) * (size_t)R * 4;
    l->bytes[CU_P_ZEROS] = (size_t)ng * (size_t)R;
    l->bytes[CU_P_QS] = (size_t)ng * (size_t)R * sdt_size(sdt);
    /* a g_idx that is i / group needs no permutation (GPTQ files store one without
     * desc_act too) */
    int sequential = 1;
    for (int64_t i = 0; w->g_idx && sequential && i < C; i++)
        sequential = (int64_t)(int32_t)cellm_load_u32(w->g_idx + 4 * i) == i / w->group;
    int32_t *perm = NULL, *gidx = NULL;
    if (!sequential) {
        l->bytes[CU_P_PERM] = l->bytes[CU_P_IPERM] = l->bytes[CU_P_GIDX] = (size_t)C * 4;
        if (sizes_only) return 0;
        /* a stable counting sort of the inputs by group (the loader checked the range) */
        size_t *start = cellm_calloc((size_t)ng + 1, sizeof *start);
        perm = own(l, CU_P_PERM, (size_t)C * 4);
        gidx = own(l, CU_P_GIDX, (size_t)C * 4);
        int32_t *iperm = own(l, CU_P_IPERM, (size_t)C * 4);
        if (!start || !perm || !gidx || !iperm) {
            cellm_free(start);
            return -1;
        }
        for (int64_t i = 0; i < C; i++)
            start[(int32_t)cellm_load_u32(w->g_idx + 4 * i) + 1]++;
        for (int64_t g = 0; g < ng; g++)
            start[g + 1] += start[g];
        for (int64_t i = 0; i < C; i++) {
            const int32_t g = (int32_t)cellm_load_u32(w->g_idx + 4 * i);
            const size_t j = start[g]++;
            perm[j] = (int32_t)i;
            gidx[j] = g;
            iperm[i] = (int32_t)j;
        }
        cellm_free(start);
        /* groups of exactly `group` inputs each (desc_act as GPTQ writes it): j / group */
        int even = 1;
        for (int64_t j = 0; even && j < C; j++)
            even = gidx[j] == j / w->group;
        if (even) {
            cellm_free(l->owned[CU_P_GIDX]);
            l->owned[CU_P_GIDX] = NULL;
            l->part[CU_P_GIDX] = gidx = NULL;
            l->bytes[CU_P_GIDX] = 0;
        }
    }
    /* the row layout only where the fused kernels take it (cellm_cu_mv_supported): F16/BF16
     * scales, power-of-two groups of whole pieces of 16; elsewhere cuda_mvq.cu's kernel for
     * the input-major layout is the faster */
    if (!perm && rowmaj && sdt != CU_S_F32 && w->group >= 16 && !(w->group & (w->group - 1)) &&
        C % w->group == 0)
        return layout_gptq_rows(w, sizes_only, l);
    if (sizes_only) return 0;
    /* codes: GPTQ's own words when nothing moves, else repacked */
    if (w->fmt == CELLM_W_GPTQ && !perm && o0 == 0 && R == w->ld) {
        l->part[CU_P_DATA] = w->data;
    } else {
        uint32_t *q = own(l, CU_P_DATA, l->bytes[CU_P_DATA]);
        if (!q) return -1;
        for (int64_t kw = 0; kw < C / pack; kw++)
            for (int64_t o = 0; o < R; o++) {
                uint32_t word = 0;
                for (int k = 0; k < pack; k++) {
                    const int64_t j = kw * pack + k, i = perm ? perm[j] : j;
                    word |= stored_code(w, i, o0 + o) << (bits * k);
                }
                q[kw * R + o] = word;
            }
    }
    uint8_t *z = own(l, CU_P_ZEROS, l->bytes[CU_P_ZEROS]);
    if (!z) return -1;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t o = 0; o < R; o++)
            z[g * R + o] = (uint8_t)stored_zero(w, g, o0 + o);
    const size_t es = sdt_size(sdt);
    if (o0 == 0 && R == w->ld) {
        l->part[CU_P_QS] = w->scales;
    } else {
        uint8_t *s = own(l, CU_P_QS, l->bytes[CU_P_QS]);
        if (!s) return -1;
        for (int64_t g = 0; g < ng; g++)
            memcpy(s + (size_t)(g * R) * es, w->scales + (size_t)(g * w->ld + o0) * es,
                   (size_t)R * es);
    }
    return 0;
}

int cellm_cu_layout(const struct cellm_weight *w, int sizes_only, int rowmaj, struct cu_layout *l)
{
    memset(l, 0, sizeof *l);
    struct cu_weight *d = &l->w;
    d->fmt = (int)w->fmt;
    d->rows = w->rows;
    d->cols = w->cols;
    d->row_bytes = (int64_t)w->row_bytes;
    d->bits = w->bits;
    d->group = w->group;
    switch (w->fmt) {
    case CELLM_W_MXFP4:
    case CELLM_W_MXFP8:
    case CELLM_W_NVFP4:
        d->sdt = CU_S_U8;
        l->part[CU_P_DATA] = w->data;
        l->bytes[CU_P_DATA] = (size_t)w->rows * w->row_bytes;
        l->part[CU_P_QS] = w->scales;
        l->bytes[CU_P_QS] = (size_t)w->rows * (size_t)(w->cols / w->group);
        return 0;
    case CELLM_W_FP8BLK: {
        /* the view's rows start at row r_off of the stored matrix: keep the scale rows of
         * the blocks it touches, and its offset inside the first */
        const int64_t bn = w->block_rows, sc_cols = (w->cols + w->group - 1) / w->group;
        const int64_t b0 = w->r_off / bn, nb = (w->r_off % bn + w->rows + bn - 1) / bn;
        d->sdt = sdt_of(w->sdtype);
        d->block_rows = (int)bn;
        d->r_off = (int)(w->r_off % bn);
        l->part[CU_P_DATA] = w->data;
        l->bytes[CU_P_DATA] = (size_t)w->rows * w->row_bytes;
        l->part[CU_P_QS] = w->scales + (size_t)(b0 * sc_cols) * sdt_size(d->sdt);
        l->bytes[CU_P_QS] = (size_t)(nb * sc_cols) * sdt_size(d->sdt);
        return 0;
    }
    case CELLM_W_GPTQ:
    case CELLM_W_AWQ:
        if (layout_gptq(w, sizes_only, rowmaj, l)) {
            cellm_cu_layout_free(l);
            return -1;
        }
        return 0;
    default:
        return -1;
    }
}

void cellm_cu_layout_point(const struct cu_layout *l, void *const *dev, struct cu_weight *out)
{
    *out = l->w;
    out->data = dev[CU_P_DATA];
    out->qs = dev[CU_P_QS];
    out->zeros = dev[CU_P_ZEROS];
    out->gidx = dev[CU_P_GIDX];
    out->perm = dev[CU_P_PERM];
    out->iperm = dev[CU_P_IPERM];
}

void cellm_cu_layout_free(struct cu_layout *l)
{
    for (int i = 0; i < CU_P_N; i++) {
        cellm_free(l->owned[i]);
        l->owned[i] = NULL;
    }
}
