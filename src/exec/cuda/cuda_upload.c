/*
 * cuda_upload.c: the weights' upload (per model). Every weight goes once, in its stored
 * format, into one device arena (F32/F16/BF16 as is; affine codes, scales and biases as
 * is, except that the words of wide 4-bit weights are put in the step order of
 * cuda_int.h: the same words, in the order the decode products read them; option tiled=0
 * keeps row order); only norm weights and biases, a few KB, are widened to f32. The
 * formats of docs/formats.md go up in the layout of cuda_layout.c: MXFP4, NVFP4, MXFP8
 * and FP8 blocks as stored, GPTQ and AWQ in one input-packed layout (their stored
 * precision, re-laid out for a coalesced decode kernel; cuda_int.h, struct cu_layout).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"
#include "model/hybrid.h"
#include "model/weight.h"

_Static_assert(CU_W_MXFP4 == (int)CELLM_W_MXFP4 && CU_W_MXFP8 == (int)CELLM_W_MXFP8 &&
                   CU_W_NVFP4 == (int)CELLM_W_NVFP4 && CU_W_FP8BLK == (int)CELLM_W_FP8BLK &&
                   CU_W_GPTQ == (int)CELLM_W_GPTQ && CU_W_AWQ == (int)CELLM_W_AWQ,
               "format codes");

/* n bytes of the arena, filled from src unless src is NULL */
static void *up_bytes(struct uploader *u, const void *src, size_t n)
{
    size_t at = u->off;
    u->off += (n + 255) & ~(size_t)255;
    if (!u->base || !n || !src) return u->base ? u->base + at : NULL;
    if (u->e == cudaSuccess) u->e = cudaMemcpy(u->base + at, src, n, cudaMemcpyHostToDevice);
    return u->base + at;
}

static float *up_vec(struct uploader *u, const struct cellm_vec *v, enum cellm_status *st)
{
    if (v->fmt == CELLM_W_NONE || v->n == 0) return NULL;
    size_t n = (size_t)v->n * sizeof(float);
    if (!u->base) {
        up_bytes(u, NULL, n);
        return NULL;
    }
    float *tmp = cellm_malloc(n);
    if (!tmp) {
        *st = CELLM_ERR_NOMEM;
        return NULL;
    }
    cellm_vec_get(v, tmp);
    float *d = up_bytes(u, tmp, n);
    cellm_free(tmp);
    return d;
}

/* the codes of a 4-bit weight, reordered on the device from copies of at most
 * UP_SCRATCH bytes in u->scratch (whole blocks of 16 rows: the order stays inside them) */
#define UP_SCRATCH ((size_t)64 << 20)
static void *up_tiled(struct uploader *u, const struct cellm_weight *w, size_t n)
{
    void *dst = up_bytes(u, NULL, n);
    if (!u->base || u->e != cudaSuccess) return dst;
    if (!u->scratch) {
        u->e = cudaMalloc(&u->scratch, UP_SCRATCH);
        if (u->e != cudaSuccess) {
            u->scratch = NULL;
            return dst;
        }
    }
    const int64_t block = 16 * (int64_t)w->row_bytes;
    const int64_t per = (int64_t)UP_SCRATCH / block * 16; /* rows per copy */
    for (int64_t r0 = 0; r0 < w->rows && u->e == cudaSuccess; r0 += per) {
        const int64_t nr = w->rows - r0 < per ? w->rows - r0 : per;
        u->e = cudaMemcpy(u->scratch, (const char *)w->data + r0 * (int64_t)w->row_bytes,
                          (size_t)(nr * (int64_t)w->row_bytes), cudaMemcpyHostToDevice);
        if (u->e == cudaSuccess)
            u->e = (cudaError_t)cellm_cu_tile_q4(u->scratch, dst, r0, nr, w->cols, w->group, NULL);
    }
    return dst;
}

static void up_weight(struct uploader *u, const struct cellm_weight *w, struct cu_weight *o)
{
    memset(o, 0, sizeof *o);
    if (w->fmt == CELLM_W_NONE) return;
    if (w->fmt > CELLM_W_AFFINE) {
        struct cu_layout l;
        if (cellm_cu_layout(w, !u->base, u->rowmaj, &l)) {
            if (u->e == cudaSuccess) u->e = cudaErrorMemoryAllocation; /* host memory */
            return;
        }
        void *dev[CU_P_N];
        for (int i = 0; i < CU_P_N; i++)
            dev[i] = l.bytes[i] ? up_bytes(u, l.part[i], l.bytes[i]) : NULL;
        cellm_cu_layout_point(&l, dev, o);
        cellm_cu_layout_free(&l);
        return;
    }
    o->fmt = (int)w->fmt;
    o->rows = w->rows;
    o->cols = w->cols;
    o->row_bytes = (int64_t)w->row_bytes;
    const size_t n = (size_t)w->rows * w->row_bytes;
    /* where the decode products read the weight from registers (CU_RING_COLS): there the
     * step order gains 6% on the Llama-3.1-8B shape, while the products that use the
     * cp.async ring lost 3.5% with it on the Qwen3-0.6B shape (bench/cuda_notes.md
     * round 7). u->tile 2 (option tiled=2) takes every qualifying weight: the GPU
     * conformance runs the tiny fixtures that way. */
    o->tiled = u->tile && w->fmt == CELLM_W_AFFINE &&
               cellm_cu_tile_q4_ok(w->bits, w->group, w->rows, w->cols) &&
               (u->tile == 2 || w->cols >= CU_RING_COLS) && 16 * (size_t)w->row_bytes <= UP_SCRATCH;
    o->data = o->tiled ? up_tiled(u, w, n) : up_bytes(u, w->data, n);
    if (w->fmt == CELLM_W_AFFINE) {
        size_t sb = (size_t)w->rows * (size_t)(w->cols / w->group) * 2;
        o->bits = w->bits;
        o->group = w->group;
        o->s_bf16 = w->sdtype == CELLM_DT_BF16;
        o->scales = up_bytes(u, w->scales, sb);
        o->biases = up_bytes(u, w->biases, sb);
    }
}

/* Checks what the kernels assume of a weight used in products. */
enum cellm_status cellm_cuda_check_weight(const struct cellm_weight *w, struct cellm_error *err)
{
    if (w->fmt == CELLM_W_NONE) return CELLM_OK;
    if (w->fmt > CELLM_W_AFFINE) { /* docs/formats.md; any shape the loader binds */
        const int gq = w->fmt == CELLM_W_GPTQ || w->fmt == CELLM_W_AWQ;
        if ((gq && w->bits != 4 && w->bits != 8) || (w->fmt == CELLM_W_AWQ && w->bits != 4) ||
            (w->fmt == CELLM_W_FP8BLK && (w->block_rows < 1 || w->group < 1)))
            return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                              "cuda executor: tensor %s: %s with %d bits, group %d and block "
                              "rows %d is not supported (GPTQ 4 or 8 bits, AWQ 4)",
                              w->name ? w->name : "?", cellm_wfmt_name(w->fmt), w->bits, w->group,
                              w->block_rows);
        return CELLM_OK;
    }
    if (w->cols % 32 && w->fmt == CELLM_W_AFFINE)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: tensor %s: %lld columns, expected a multiple of 32",
                          w->name ? w->name : "?", (long long)w->cols);
    if (w->cols % 8)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: tensor %s: %lld columns, expected a multiple of 8",
                          w->name ? w->name : "?", (long long)w->cols);
    if (w->fmt == CELLM_W_AFFINE && (w->group % 32 || w->bits < 2 || w->bits > 8 || w->bits == 7))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: tensor %s: %d-bit affine with group %d is not supported",
                          w->name ? w->name : "?", w->bits, w->group);
    return CELLM_OK;
}

const size_t cellm_cu_layer_offset[CELLM_LT_N] = {
#define CU_OFF(id, field, ...) offsetof(struct cu_layer, field),
    CELLM_LAYER_TENSORS(CU_OFF)
#undef CU_OFF
};

/* One f32 array [parts][len] of per-expert vectors (gpt-oss's expert biases). */
static float *up_expert_vecs(struct uploader *u, const struct cellm_vec *v, int parts,
                             enum cellm_status *st)
{
    if (!v || !parts || v[0].fmt == CELLM_W_NONE) return NULL;
    const int64_t len = v[0].n;
    size_t n = (size_t)parts * (size_t)len;
    float *tmp = u->base ? cellm_malloc(n * sizeof(float)) : NULL;
    if (u->base && !tmp) {
        *st = CELLM_ERR_NOMEM;
        return NULL;
    }
    for (int e = 0; tmp && e < parts; e++)
        for (int64_t i = 0; i < len; i++)
            tmp[(size_t)e * len + i] = i < v[e].n ? cellm_vec_at(&v[e], i) : 0.0f;
    float *dst = up_bytes(u, tmp, n * sizeof(float));
    cellm_free(tmp);
    return dst;
}

/* Per-head norm weights [parts][len] as one f32 array (1 where a head has none). */
static float *up_heads(struct uploader *u, const struct cellm_vec *v, int parts, int64_t len,
                       enum cellm_status *st)
{
    size_t n = (size_t)parts * (size_t)len;
    float *tmp = u->base ? cellm_malloc(n * sizeof(float)) : NULL;
    if (u->base && !tmp) {
        *st = CELLM_ERR_NOMEM;
        return NULL;
    }
    if (tmp)
        for (int h = 0; h < parts; h++)
            for (int64_t i = 0; i < len; i++)
                tmp[(size_t)h * len + i] = v[h].fmt == CELLM_W_NONE ? 1.0f : cellm_vec_at(&v[h], i);
    float *dst = up_bytes(u, tmp, n * sizeof(float));
    cellm_free(tmp);
    return dst;
}

enum cellm_status cellm_cuda_upload_all(struct cu_model *m, struct uploader *u)
{
    const struct cellm_desc *d = m->d;
    const struct cellm_config *cfg = &d->cfg;
    enum cellm_status st = CELLM_OK;
    up_weight(u, &d->embed, &m->embed);
    if (d->head.data == d->embed.data && d->head.fmt == d->embed.fmt)
        m->head = m->embed;
    else
        up_weight(u, &d->head, &m->head);
    m->final_norm = up_vec(u, &d->final_norm, &st);
    m->final_norm_b = up_vec(u, &d->final_norm_b, &st);
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        struct cu_layer *C = &m->layers[l];
        C->attn = L->attn;
        C->moe = L->moe;
        for (int id = 0; id < CELLM_LT_N; id++) {
            void *dst = (char *)C + cellm_cu_layer_offset[id];
            int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
            switch (cellm_layer_tensors[id].kind) {
            case CELLM_TK_VEC:
                *(float **)dst = up_vec(u, cellm_layer_vec(L, (enum cellm_lt)id), &st);
                break;
            case CELLM_TK_MAT:
                up_weight(u, cellm_layer_weight(L, (enum cellm_lt)id), dst);
                break;
            case CELLM_TK_HEADS: {
                const struct cellm_vec *v = cellm_layer_heads(L, (enum cellm_lt)id);
                *(float **)dst = v && parts ? up_heads(u, v, parts, cfg->head_dim, &st) : NULL;
                if (st) return st;
                break;
            }
            case CELLM_TK_EXPERTS: {
                const struct cellm_weight *w = cellm_layer_experts(L, (enum cellm_lt)id);
                struct cu_weight *cw = *(struct cu_weight **)dst;
                for (int e = 0; w && cw && e < parts; e++)
                    up_weight(u, &w[e], &cw[e]);
                break;
            }
            case CELLM_TK_EXPERT_VECS:
                *(float **)dst =
                    up_expert_vecs(u, cellm_layer_expert_vecs(L, (enum cellm_lt)id), parts, &st);
                if (st) return st;
                break;
            }
        }
        /* a state layer's tensors and the shared expert (model/hybrid.h) */
        const struct cellm_hyb_layer *hy = L->hyb;
        C->hyb.mixer = (int)L->mixer;
        if (hy) {
            up_weight(u, &hy->in_proj, &C->hyb.in_proj);
            up_weight(u, &hy->in_z, &C->hyb.in_z);
            up_weight(u, &hy->in_b, &C->hyb.in_b);
            up_weight(u, &hy->in_a, &C->hyb.in_a);
            up_weight(u, &hy->out_proj, &C->hyb.out_proj);
            up_weight(u, &hy->sh_gate, &C->hyb.sh_gate);
            up_weight(u, &hy->sh_up, &C->hyb.sh_up);
            up_weight(u, &hy->sh_down, &C->hyb.sh_down);
            up_weight(u, &hy->sh_gate_w, &C->hyb.sh_gate_w);
            C->hyb.conv = up_vec(u, &hy->conv, &st);
            C->hyb.a_log = up_vec(u, &hy->a_log, &st);
            C->hyb.dt_bias = up_vec(u, &hy->dt_bias, &st);
            C->hyb.norm = up_vec(u, &hy->norm, &st);
            if (st) return st;
        }
    }
    return st;
}
