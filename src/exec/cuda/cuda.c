/*
 * cuda.c: the CUDA executor (NVIDIA GPUs), the driver side: uploads, scratch, caches and
 * the forward pass, which mirrors the CPU reference (src/exec/cpu/cpu.c) block by block.
 *
 * Per model: every weight is uploaded once, in its stored format, into one device arena
 * (F32/F16/BF16 as is; affine codes, scales and biases as is, except that the words of
 * wide 4-bit weights are put in the step order of cuda_int.h: the same words, in the order
 * the decode products read them; CELLM_CUDA_TILED=0 keeps row order); only norm weights
 * and biases, a few KB, are widened to f32. Per context: a CUDA stream, a cuBLAS handle,
 * batch buffers, and one KV cache per sequence, f32 [n_layers][2][cap][kv_dim], grown by
 * doubling like the CPU's.
 *
 * Matrix products: batches of tc_rows (3) or more rows go to the tensor-core GEMM
 * (cuda_gemm.cu) wherever it takes the weights (4- and 8-bit affine, BF16): packed
 * weights read once per tile, activations split exactly into bf16 parts in the kernel.
 * What it does not take keeps the paths below. Up to gemm_rows-1 rows go through the fused
 * dequantize-and-multiply kernels, which read each weight once per 8 rows: cuda_mv.cuh for
 * F32/F16/BF16 and 4- and 8-bit affine weights (with the norm before and the residual add or gated
 * activation after them fused in: forward_fused; one or two rows of 4-bit weights go to the
 * tensor-core variant, cuda_mvt.cuh, unless CELLM_CUDA_MMA=0), cuda_matvec.cu for the
 * other widths and with
 * CELLM_CUDA_FUSE=0 (the first-generation kernels, kept for comparison). Larger batches
 * (prefill) use cuBLAS with f32 accumulation and TF32 off: BF16 weights directly against
 * an exact three-way bf16 split of the f32 activations (hi+mid+lo = x, every product
 * exact, so this is an f32 dot product in another summation order, on tensor cores);
 * other formats are dequantized to f32 in row tiles and multiplied in f32.
 *
 * The host computes RoPE's cos/sin for the batch's positions with the CPU's own cosf and
 * sinf, so rotations match the reference bit for bit. MoE routing runs on the GPU, and
 * the expert assignment comes back to the host to group rows per expert (one sync per
 * MoE layer).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "base/alloc.h"
#include "base/error.h"
#include "cuda_int.h"
#include "exec/exec.h"

_Static_assert(CU_W_F32 == (int)CELLM_W_F32 && CU_W_F16 == (int)CELLM_W_F16 &&
                   CU_W_BF16 == (int)CELLM_W_BF16 && CU_W_AFFINE == (int)CELLM_W_AFFINE,
               "format codes");

#define MAX_ROPE_TABLES 4
#define TILE_FLOATS ((int64_t)16 << 20) /* dequantized tile for the GEMM path: 64 MB */

struct cu_layer {
    int sliding, moe, rope_table;
    struct cu_weight wq, wk, wv, wo, w_gate, w_up, w_down, router;
    struct cu_weight *e_gate, *e_up, *e_down; /* [n_experts] */
    float *attn_norm, *attn_norm_b, *post_attn_norm, *ffn_norm, *ffn_norm_b, *post_ffn_norm;
    float *bq, *bk, *bv, *bo, *q_norm, *k_norm, *qn_heads, *kn_heads, *b_gate, *b_up, *b_down;
};

struct cu_model {
    const struct cellm_desc *d;
    int dev;
    char desc[384];
    char *arena; /* every device weight and vector */
    size_t arena_bytes;
    struct cu_weight embed, head;
    float *final_norm, *final_norm_b;
    struct cu_layer *layers;
    int n_tables;
    const float *tables[MAX_ROPE_TABLES]; /* distinct inv_freq arrays of the layers */
    int gemm_rows;                        /* batches of at least this many rows use cuBLAS */
    int split3;                           /* BF16 weights: exact bf16x3 split on tensor cores */
    int graphs;                           /* capture decode steps as CUDA graphs */
    int has_moe;                          /* MoE routing syncs with the host: no graphs */
    int fuse;                             /* decode: norms, residuals, GLU fused into products */
    int mma;                              /* 4-bit decode products on the tensor cores */
    int tc_rows;  /* batches of at least this many rows: tensor-core GEMM (0: never) */
    int tc_bf16;  /* BF16 weights at every row count from tc_rows (else 8 .. gemm_rows - 1) */
    int attn_dec; /* decode attention: 0 fused, 1 by head grouping, 2 per-head, 3 grouped clusters
                   */
    int attn_pdl; /* decode attention clusters scheduled early (programmatic dependent launch) */
    int sms;      /* multiprocessors */
};

struct cu_seq {
    float *kv; /* [n_layers][2][cap][kv_dim] */
    int64_t cap;
};

/* CELLM_CUDA_PROFILE=1: events between the phases of each step (graphs off), summed per
 * phase for prefill and decode steps and printed to stderr when the context is freed. */
enum { PH_START, PH_EMBED, PH_NORM, PH_QKV, PH_ATTN, PH_O, PH_MLP, PH_DOWN, PH_MOE, PH_HEAD, PH_N };
static const char *const ph_names[PH_N] = {"start",  "embed",   "norm", "qkv", "attention",
                                           "o-proj", "gate/up", "down", "moe", "head"};
#define PROF_EVENTS 2048
struct cu_prof {
    cudaEvent_t ev[PROF_EVENTS];
    int ph[PROF_EVENTS], n, created;
    double ms[2][PH_N];
    long steps[2];
    int warm[2];
};

struct cu_ctx {
    struct cu_model *m;
    struct cu_prof *prof; /* NULL unless profiling */
    const struct cellm_desc *d;
    cudaStream_t st;
    cublasHandle_t blas;
    int max_seqs;
    struct cu_seq *seqs;
    int rows_cap;
    float *x, *h, *q, *k, *v, *att, *o, *gate, *up, *logits;
    float *router, *moe_out, *moe_w, *moe_x, *moe_g, *moe_u, *moe_y;
    int32_t *moe_idx, *moe_map;
    int32_t *att_cnt; /* fused attention: blocks done per (row, head) */
    int32_t *mv_cnt;  /* tensor-core products: next tile, blocks done */
    float *gpart;     /* tensor-core GEMM: partial sums of a K split */
    int64_t gpart_cap;
    float *am_v; /* greedy picks: candidates per row (cellm_cu_argmax) */
    int32_t *am_i, *ids;
    int distinct;           /* no two rows of this step share a sequence */
    int consecutive;        /* the rows are consecutive positions of one sequence */
    int32_t *h_idx, *h_map; /* host copies */
    struct cu_row *rows;    /* device */
    float *cs;              /* device [tables][rows][half][2] */
    void *stage;            /* pinned host: rows then cs */
    size_t stage_cap;
    float *hlogits; /* pinned host copy of the logits (a pageable copy costs ~0.1 ms) */
    size_t hlogits_cap;
    float *part; /* attention partials */
    size_t part_cap;
    float *tile; /* GEMM dequantized tile */
    size_t tile_cap;
    uint16_t *split; /* 3 x [rows][max_cols] bf16 */
    size_t split_cap;
    const float *split_of; /* within mm_multi: the input the split already holds */
    int64_t max_cols;
    int nsplit; /* attention key splits of this step (a power of two) */
    int split_keys;
    /* the captured decode step: valid while its key matches and no buffer moved */
    cudaGraphExec_t gexec;
    int g_n, g_nw, g_nsplit, g_kind; /* g_kind: row_kind() at capture */
    unsigned gen, g_gen; /* gen: bumped whenever a buffer the graph uses is reallocated */
};

#define CU_TRY(call)                                                                               \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cellm_errf(err, CELLM_ERR_DEVICE, "cuda: %s (%s:%d)", cudaGetErrorString(e_),   \
                              __FILE__, __LINE__);                                                 \
    } while (0)

#define K_TRY(call)                                                                                \
    do {                                                                                           \
        int e_ = (call);                                                                           \
        if (e_)                                                                                    \
            return cellm_errf(err, CELLM_ERR_DEVICE, "cuda kernel: %s (%s:%d)",                    \
                              cudaGetErrorString((cudaError_t)e_), __FILE__, __LINE__);            \
    } while (0)

#define BLAS_TRY(call)                                                                             \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return cellm_errf(err, CELLM_ERR_DEVICE, "cublas: %s (%s:%d)",                         \
                              cublasGetStatusString(s_), __FILE__, __LINE__);                      \
    } while (0)

static int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ---- upload ---------------------------------------------------------------------------- */

/* Two passes over the same calls: the first (base == NULL) only counts bytes. tile: 4-bit
 * weights of a qualifying shape go up in the step-ordered layout (cuda_int.h), through
 * scratch, a device buffer of UP_SCRATCH bytes (freed after the upload). */
struct uploader {
    char *base;
    size_t off;
    cudaError_t e;
    int tile;
    void *scratch;
};

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
    o->fmt = (int)w->fmt;
    o->rows = w->rows;
    o->cols = w->cols;
    o->row_bytes = (int64_t)w->row_bytes;
    const size_t n = (size_t)w->rows * w->row_bytes;
    /* where the decode products read the weight from registers (CU_RING_COLS): there the
     * step order gains 6% on the Llama-3.1-8B shape, while the products that use the
     * cp.async ring lost 3.5% with it on the Qwen3-0.6B shape (bench/cuda_notes.md
     * round 7). u->tile 2 (CELLM_CUDA_TILED=2) takes every qualifying weight: the GPU
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
static enum cellm_status check_weight(const struct cellm_weight *w, struct cellm_error *err)
{
    if (w->fmt == CELLM_W_NONE) return CELLM_OK;
    if (w->fmt > CELLM_W_AFFINE) /* docs/formats.md: CPU only so far */
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: tensor %s is stored as %s, which only the CPU "
                          "executor reads so far",
                          w->name ? w->name : "?", cellm_wfmt_name(w->fmt));
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

static enum cellm_status upload_all(struct cu_model *m, struct uploader *u)
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
    int hd = cfg->head_dim;
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        struct cu_layer *C = &m->layers[l];
        C->sliding = L->sliding;
        C->moe = L->moe;
        up_weight(u, &L->wq, &C->wq);
        up_weight(u, &L->wk, &C->wk);
        up_weight(u, &L->wv, &C->wv);
        up_weight(u, &L->wo, &C->wo);
        up_weight(u, &L->w_gate, &C->w_gate);
        up_weight(u, &L->w_up, &C->w_up);
        up_weight(u, &L->w_down, &C->w_down);
        up_weight(u, &L->router, &C->router);
        if (L->moe && L->e_gate)
            for (int e = 0; e < cfg->n_experts; e++) {
                up_weight(u, &L->e_gate[e], &C->e_gate[e]);
                up_weight(u, &L->e_up[e], &C->e_up[e]);
                up_weight(u, &L->e_down[e], &C->e_down[e]);
            }
        C->attn_norm = up_vec(u, &L->attn_norm, &st);
        C->attn_norm_b = up_vec(u, &L->attn_norm_b, &st);
        C->post_attn_norm = up_vec(u, &L->post_attn_norm, &st);
        C->ffn_norm = up_vec(u, &L->ffn_norm, &st);
        C->ffn_norm_b = up_vec(u, &L->ffn_norm_b, &st);
        C->post_ffn_norm = up_vec(u, &L->post_ffn_norm, &st);
        C->bq = up_vec(u, &L->bq, &st);
        C->bk = up_vec(u, &L->bk, &st);
        C->bv = up_vec(u, &L->bv, &st);
        C->bo = up_vec(u, &L->bo, &st);
        C->q_norm = cfg->qk_norm && !L->q_norm_heads ? up_vec(u, &L->q_norm, &st) : NULL;
        C->k_norm = cfg->qk_norm && !L->k_norm_heads ? up_vec(u, &L->k_norm, &st) : NULL;
        C->b_gate = up_vec(u, &L->b_gate, &st);
        C->b_up = up_vec(u, &L->b_up, &st);
        C->b_down = up_vec(u, &L->b_down, &st);
        C->qn_heads = C->kn_heads = NULL;
        if (L->q_norm_heads) {
            /* per-head LayerNorm weights, concatenated [H][hd] */
            size_t n = (size_t)cfg->n_heads * hd, nk = (size_t)cfg->n_kv_heads * hd;
            float *tmp = u->base ? cellm_malloc((n + nk) * sizeof(float)) : NULL;
            if (u->base && !tmp) return CELLM_ERR_NOMEM;
            if (tmp) {
                for (int h = 0; h < cfg->n_heads; h++)
                    for (int i = 0; i < hd; i++)
                        tmp[(size_t)h * hd + i] = L->q_norm_heads[h].fmt == CELLM_W_NONE
                                                      ? 1.0f
                                                      : cellm_vec_at(&L->q_norm_heads[h], i);
                for (int h = 0; h < cfg->n_kv_heads; h++)
                    for (int i = 0; i < hd; i++)
                        tmp[n + (size_t)h * hd + i] = L->k_norm_heads[h].fmt == CELLM_W_NONE
                                                          ? 1.0f
                                                          : cellm_vec_at(&L->k_norm_heads[h], i);
            }
            C->qn_heads = up_bytes(u, tmp, n * sizeof(float));
            C->kn_heads = up_bytes(u, tmp ? tmp + n : NULL, nk * sizeof(float));
            cellm_free(tmp);
        }
    }
    return st;
}

static void cu_model_free(void *p)
{
    struct cu_model *m = p;
    if (!m) return;
    if (m->arena) cudaFree(m->arena);
    if (m->layers) {
        for (int l = 0; l < m->d->cfg.n_layers; l++) {
            cellm_free(m->layers[l].e_gate);
            cellm_free(m->layers[l].e_up);
            cellm_free(m->layers[l].e_down);
        }
        cellm_free(m->layers);
    }
    cellm_free(m);
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static enum cellm_status cu_model_new(const struct cellm_desc *d,
                                      const struct cellm_model_params *mp, void **out,
                                      struct cellm_error *err)
{
    (void)mp;
    const struct cellm_config *cfg = &d->cfg;
    int ndev = 0;
    cudaError_t ce = cudaGetDeviceCount(&ndev);
    if (ce != cudaSuccess || ndev == 0)
        return cellm_errf(err, CELLM_ERR_DEVICE, "--device cuda: no usable CUDA device (%s)",
                          ce != cudaSuccess ? cudaGetErrorString(ce) : "none found");
    if (cfg->head_dim % 4 || cfg->head_dim > 256)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: head_dim %d: expected a multiple of 4 up to 256",
                          cfg->head_dim);
    const struct cellm_weight *ws[] = {&d->head};
    CELLM_TRY(check_weight(ws[0], err));
    if (d->embed.fmt > CELLM_W_AFFINE) CELLM_TRY(check_weight(&d->embed, err));
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        const struct cellm_weight *lw[] = {&L->wq,     &L->wk,   &L->wv,     &L->wo,
                                           &L->w_gate, &L->w_up, &L->w_down, &L->router};
        for (size_t i = 0; i < sizeof lw / sizeof lw[0]; i++)
            CELLM_TRY(check_weight(lw[i], err));
        if (L->moe && L->e_gate)
            for (int e = 0; e < cfg->n_experts; e++) {
                CELLM_TRY(check_weight(&L->e_gate[e], err));
                CELLM_TRY(check_weight(&L->e_up[e], err));
                CELLM_TRY(check_weight(&L->e_down[e], err));
            }
    }
    struct cu_model *m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    m->d = d;
    m->gemm_rows = env_int("CELLM_CUDA_GEMM_ROWS", 32);
    if (m->gemm_rows < 1) m->gemm_rows = 1;
    m->split3 = env_int("CELLM_CUDA_SPLIT3", 1);
    m->graphs = env_int("CELLM_CUDA_GRAPHS", 1);
    m->fuse = env_int("CELLM_CUDA_FUSE", 1);
    m->mma = env_int("CELLM_CUDA_MMA", 1);
    m->tc_rows = env_int("CELLM_CUDA_TC_ROWS", 3);
    /* BF16 weights take the GEMM only from 8 to gemm_rows - 1 rows unless asked: below, the
     * decode kernels were faster, and from gemm_rows on cuBLAS's bf16x3 (bench/cuda_notes.md
     * round 13) */
    m->tc_bf16 = env_int("CELLM_CUDA_TC_BF16", 0);
    if (m->tc_rows < 0) m->tc_rows = 0;
    m->attn_dec = env_int("CELLM_CUDA_ATTN_DEC", 1);
    /* Early scheduling (PDL) of the decode attention's clusters pays only after a q/k/v
     * product that leaves room beside it: 4-bit weights narrower than CU_RING_COLS, which
     * use the cp.async ring (Qwen3-0.6B 4-bit: 1253-1272 tok/s with it, 1212-1226
     * without). Where the product's blocks fill every SM it costs (Llama-3.1-8B 4-bit
     * 364 against 374-375; 8B BF16 156.4-156.8 against 159.9-160.0; Llama-3.2-1B BF16
     * 811-816 against 829-830; same call, bench/cuda_notes.md rounds 7-8). Launched
     * without PDL the clusters start at once, which exposed the cos/sin staging race
     * fixed by the barrier after pdl_wait (cuda_attn_dec.cu). CELLM_CUDA_ATTN_PDL=0/1
     * overrides. */
    const struct cellm_weight *wq0 = cfg->n_layers > 0 ? &d->layers[0].wq : NULL;
    m->attn_pdl = env_int("CELLM_CUDA_ATTN_PDL", wq0 && wq0->fmt == CELLM_W_AFFINE &&
                                                     wq0->bits == 4 && cfg->dim < CU_RING_COLS);
    m->layers = cellm_calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!m->layers) goto nomem;
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        struct cu_layer *C = &m->layers[l];
        int t = 0;
        while (t < m->n_tables && m->tables[t] != L->inv_freq)
            t++;
        if (t == m->n_tables) {
            if (t == MAX_ROPE_TABLES) {
                cu_model_free(m);
                return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                                  "cuda executor: more than %d RoPE tables", MAX_ROPE_TABLES);
            }
            m->tables[m->n_tables++] = L->inv_freq;
        }
        C->rope_table = t;
        m->has_moe |= L->moe;
        if (L->moe && L->e_gate) {
            C->e_gate = cellm_calloc((size_t)cfg->n_experts, sizeof *C->e_gate);
            C->e_up = cellm_calloc((size_t)cfg->n_experts, sizeof *C->e_up);
            C->e_down = cellm_calloc((size_t)cfg->n_experts, sizeof *C->e_down);
            if (!C->e_gate || !C->e_up || !C->e_down) goto nomem;
        }
    }
    /* 4-bit weights step-ordered: 0 none, 1 of CU_RING_COLS columns or more, 2 all */
    const int tile = env_int("CELLM_CUDA_TILED", 1);
    struct uploader u = {0};
    u.tile = tile;
    enum cellm_status st = upload_all(m, &u);
    if (st) {
        cu_model_free(m);
        return cellm_errf(err, st, "cuda executor: out of memory");
    }
    m->arena_bytes = u.off;
    ce = cudaMalloc((void **)&m->arena, m->arena_bytes ? m->arena_bytes : 256);
    if (ce != cudaSuccess) {
        cu_model_free(m);
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: cannot allocate %.2f GB for the weights: %s",
                          (double)u.off / 1e9, cudaGetErrorString(ce));
    }
    u = (struct uploader){m->arena, 0, cudaSuccess, tile, NULL};
    st = upload_all(m, &u);
    if (u.e == cudaSuccess) u.e = cudaDeviceSynchronize(); /* the reordering kernels */
    cudaFree(u.scratch);
    if (st || u.e != cudaSuccess) {
        cu_model_free(m);
        if (st) return cellm_errf(err, st, "cuda executor: out of memory");
        return cellm_errf(err, CELLM_ERR_DEVICE, "cuda executor: uploading weights: %s",
                          cudaGetErrorString(u.e));
    }
    struct cudaDeviceProp prop;
    cudaGetDevice(&m->dev);
    m->sms = 1;
    if (cudaGetDeviceProperties(&prop, m->dev) == cudaSuccess) {
        m->sms = prop.multiProcessorCount;
        snprintf(m->desc, sizeof m->desc, "cuda %s (sm_%d%d, %d SMs), %.2f GB of weights",
                 prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                 (double)m->arena_bytes / 1e9);
    } else
        snprintf(m->desc, sizeof m->desc, "cuda");
    *out = m;
    return CELLM_OK;
nomem:
    cu_model_free(m);
    return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
}

static const char *cu_describe(void *p)
{
    return ((struct cu_model *)p)->desc;
}

/* ---- context --------------------------------------------------------------------------- */

static void dfree(void *p)
{
    if (p) cudaFree(p);
}

static void free_rows(struct cu_ctx *c)
{
    void *bufs[] = {c->x,       c->h,      c->q,      c->k,       c->v,       c->att,   c->o,
                    c->gate,    c->up,     c->logits, c->router,  c->moe_out, c->moe_w, c->moe_x,
                    c->moe_g,   c->moe_u,  c->moe_y,  c->moe_idx, c->moe_map, c->rows,  c->cs,
                    c->att_cnt, c->mv_cnt, c->am_v,   c->am_i,    c->ids,     c->gpart};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dfree(bufs[i]);
    c->x = c->h = c->q = c->k = c->v = c->att = c->o = c->gate = c->up = c->logits = NULL;
    c->router = c->moe_out = c->moe_w = c->moe_x = c->moe_g = c->moe_u = c->moe_y = NULL;
    c->moe_idx = c->moe_map = c->att_cnt = c->mv_cnt = c->am_i = c->ids = NULL;
    c->am_v = c->gpart = NULL;
    c->gpart_cap = 0;
    c->rows = NULL;
    c->cs = NULL;
    cellm_free(c->h_idx);
    cellm_free(c->h_map);
    c->h_idx = c->h_map = NULL;
    c->rows_cap = 0;
}

static void cu_ctx_free(void *p)
{
    struct cu_ctx *c = p;
    if (!c) return;
    if (c->st) cudaStreamSynchronize(c->st);
    if (c->prof) {
        struct cu_prof *p = c->prof;
        for (int k = 0; k < 2; k++) {
            double tot = 0;
            for (int i = 1; i < PH_N; i++)
                tot += p->ms[k][i];
            if (!p->steps[k]) continue;
            fprintf(stderr, "cuda profile, %s: %ld steps after the first, %.3f ms per step:",
                    k ? "prefill" : "decode", p->steps[k], tot / p->steps[k]);
            for (int i = 1; i < PH_N; i++)
                if (p->ms[k][i] > 0)
                    fprintf(stderr, " %s %.1f%%", ph_names[i], 100 * p->ms[k][i] / tot);
            fprintf(stderr, "\n");
        }
        for (int i = 0; i < p->created; i++)
            cudaEventDestroy(p->ev[i]);
        cellm_free(p);
    }
    for (int i = 0; i < c->max_seqs && c->seqs; i++)
        dfree(c->seqs[i].kv);
    cellm_free(c->seqs);
    free_rows(c);
    if (c->gexec) cudaGraphExecDestroy(c->gexec);
    dfree(c->part);
    dfree(c->tile);
    dfree(c->split);
    if (c->stage) cudaFreeHost(c->stage);
    if (c->hlogits) cudaFreeHost(c->hlogits);
    if (c->blas) cublasDestroy(c->blas);
    if (c->st) cudaStreamDestroy(c->st);
    cellm_free(c);
}

static enum cellm_status cu_ctx_new(void *dm, int max_seqs, void **out, struct cellm_error *err)
{
    struct cu_model *m = dm;
    const struct cellm_config *cfg = &m->d->cfg;
    struct cu_ctx *c = cellm_calloc(1, sizeof *c);
    if (!c) return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    c->m = m;
    c->d = m->d;
    c->max_seqs = max_seqs;
    if (env_int("CELLM_CUDA_PROFILE", 0)) {
        c->prof = cellm_calloc(1, sizeof *c->prof);
        if (!c->prof) {
            cellm_free(c);
            return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
        }
    }
    c->seqs = cellm_calloc((size_t)max_seqs, sizeof *c->seqs);
    if (!c->seqs) {
        cu_ctx_free(c);
        return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    }
    int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim;
    c->max_cols = max64(max64(cfg->dim, qd), max64(cfg->ffn_dim, cfg->moe_ffn_dim));
    enum cellm_status st = CELLM_OK;
    cudaError_t e = cudaSetDevice(m->dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        st = cellm_errf(err, CELLM_ERR_DEVICE, "cuda: %s", cudaGetErrorString(e));
    else {
        cublasStatus_t bs = cublasCreate(&c->blas);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->st);
        if (bs == CUBLAS_STATUS_SUCCESS)
            bs = cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH); /* no TF32 */
        if (bs != CUBLAS_STATUS_SUCCESS)
            st = cellm_errf(err, CELLM_ERR_DEVICE, "cublas: %s", cublasGetStatusString(bs));
    }
    if (st) {
        cu_ctx_free(c);
        return st;
    }
    *out = c;
    return CELLM_OK;
}

static void cu_seq_truncate(void *p, int seq, int from)
{
    struct cu_ctx *c = p;
    if (seq < 0 || seq >= c->max_seqs) return;
    if (from == 0 && c->seqs[seq].kv) {
        cudaStreamSynchronize(c->st);
        cudaFree(c->seqs[seq].kv);
        c->seqs[seq].kv = NULL;
        c->seqs[seq].cap = 0;
    }
}

static enum cellm_status dgrow(void **p, size_t *cap, size_t need, struct cellm_error *err)
{
    if (need <= *cap) return CELLM_OK;
    if (*p) {
        cudaFree(*p);
        *p = NULL;
        *cap = 0;
    }
    CU_TRY(cudaMalloc(p, need));
    *cap = need;
    return CELLM_OK;
}

#define DALLOC(ptr, count)                                                                         \
    do {                                                                                           \
        size_t n_ = (size_t)(count) * sizeof *(ptr);                                               \
        CU_TRY(cudaMalloc((void **)&(ptr), n_ ? n_ : 16));                                         \
    } while (0)

static enum cellm_status reserve_rows(struct cu_ctx *c, int n, struct cellm_error *err)
{
    if (n <= c->rows_cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    cudaStreamSynchronize(c->st);
    free_rows(c);
    size_t r = (size_t)(n < 8 ? 8 : n);
    size_t qd = (size_t)cfg->n_heads * cfg->head_dim, kd = (size_t)cfg->n_kv_heads * cfg->head_dim;
    size_t ffn = (size_t)max64(cfg->ffn_dim, 1), dim = (size_t)cfg->dim;
    DALLOC(c->x, r * dim);
    DALLOC(c->h, r * dim);
    DALLOC(c->o, r * dim);
    DALLOC(c->q, r * qd);
    DALLOC(c->k, r * kd);
    DALLOC(c->v, r * kd);
    DALLOC(c->att, r * qd);
    DALLOC(c->gate, r * ffn);
    DALLOC(c->up, r * ffn);
    DALLOC(c->logits, r * (size_t)cfg->vocab);
    DALLOC(c->am_v, r * (size_t)cellm_cu_argmax_scratch());
    DALLOC(c->am_i, r * (size_t)cellm_cu_argmax_scratch());
    DALLOC(c->ids, r);
    DALLOC(c->rows, r);
    DALLOC(c->att_cnt, r * (size_t)cfg->n_heads);
    CU_TRY(cudaMemset(c->att_cnt, 0, r * (size_t)cfg->n_heads * sizeof(int32_t)));
    DALLOC(c->mv_cnt, 2);
    CU_TRY(cudaMemset(c->mv_cnt, 0, 2 * sizeof(int32_t)));
    /* the K split's partials of the tensor-core GEMM, for the batches that may split
     * (cellm_cu_gemm: up to CU_GEMM_KS_MAX splits while the blocks do not fill the
     * multiprocessors, which takes few rows); the widest launch is gate and up together */
    if (c->m->tc_rows > 0) {
        size_t pr = qd + 2 * kd, pn = r < CU_GEMM_SPLIT_ROWS ? r : CU_GEMM_SPLIT_ROWS;
        if (2 * ffn > pr) pr = 2 * ffn;
        if (dim > pr) pr = dim;
        if (cfg->n_experts && 2 * (size_t)cfg->moe_ffn_dim > pr) pr = 2 * (size_t)cfg->moe_ffn_dim;
        c->gpart_cap = (int64_t)(CU_GEMM_KS_MAX * pn * pr);
        DALLOC(c->gpart, (size_t)c->gpart_cap);
    }
    DALLOC(c->cs, (size_t)MAX_ROPE_TABLES * r * (size_t)(cfg->rot_dims / 2 + 1) * 2);
    if (cfg->n_experts) {
        size_t K = (size_t)cfg->n_experts_used, mi = (size_t)cfg->moe_ffn_dim;
        DALLOC(c->router, r * (size_t)cfg->n_experts);
        DALLOC(c->moe_out, r * K * dim);
        DALLOC(c->moe_w, r * K);
        DALLOC(c->moe_idx, r * K);
        DALLOC(c->moe_map, r * K);
        DALLOC(c->moe_x, r * K * dim);
        DALLOC(c->moe_g, r * K * mi);
        DALLOC(c->moe_u, r * K * mi);
        DALLOC(c->moe_y, r * K * dim);
        c->h_idx = cellm_malloc(r * K * sizeof(int32_t));
        c->h_map = cellm_malloc(r * K * sizeof(int32_t));
        if (!c->h_idx || !c->h_map)
            return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    }
    size_t stage = r * sizeof(struct cu_row) + (size_t)MAX_ROPE_TABLES * r *
                                                   (size_t)(cfg->rot_dims / 2 + 1) * 2 *
                                                   sizeof(float);
    if (stage > c->stage_cap) {
        if (c->stage) cudaFreeHost(c->stage);
        c->stage = NULL;
        c->stage_cap = 0;
        CU_TRY(cudaMallocHost(&c->stage, stage));
        c->stage_cap = stage;
    }
    c->rows_cap = (int)r;
    c->gen++;
    return CELLM_OK;
}

static enum cellm_status reserve_seq(struct cu_ctx *c, struct cu_seq *s, int need,
                                     struct cellm_error *err)
{
    if (need <= s->cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t kd = (int64_t)cfg->n_kv_heads * cfg->head_dim, L = cfg->n_layers;
    int64_t cap = s->cap ? s->cap : 256;
    while (cap < need)
        cap *= 2;
    if (cap > cfg->max_pos && need <= cfg->max_pos) cap = cfg->max_pos;
    float *kv;
    cudaError_t e = cudaMalloc((void **)&kv, (size_t)(L * 2 * cap * kd) * sizeof(float));
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: cannot grow a KV cache to %lld positions: %s",
                          (long long)cap, cudaGetErrorString(e));
    if (s->kv) {
        for (int64_t p = 0; p < L * 2; p++)
            CU_TRY(cudaMemcpyAsync(kv + p * cap * kd, s->kv + p * s->cap * kd,
                                   (size_t)(s->cap * kd) * sizeof(float), cudaMemcpyDeviceToDevice,
                                   c->st));
        CU_TRY(cudaStreamSynchronize(c->st));
        cudaFree(s->kv);
    }
    s->kv = kv;
    s->cap = cap;
    return CELLM_OK;
}

/* ---- blocks ---------------------------------------------------------------------------- */

/* y[t] = W x[t] (+ bias), n rows. */
/* Ends the phase ph of the current step (profiling only). */
static void prof_mark(struct cu_ctx *c, int ph)
{
    struct cu_prof *p = c->prof;
    if (!p || p->n >= PROF_EVENTS) return;
    if (p->n == p->created) {
        if (cudaEventCreate(&p->ev[p->n]) != cudaSuccess) return;
        p->created++;
    }
    if (cudaEventRecord(p->ev[p->n], c->st) == cudaSuccess) p->ph[p->n++] = ph;
}

/* After the step's sync: adds each phase's time to the totals of its kind of step. */
static void prof_collect(struct cu_ctx *c, int prefill)
{
    struct cu_prof *p = c->prof;
    if (!p) return;
    /* the first step of each kind warms up (cuBLAS heuristics, first launches): not counted */
    if (!p->warm[prefill]) {
        p->warm[prefill] = 1;
        p->n = 0;
        return;
    }
    for (int i = 1; i < p->n; i++) {
        float ms = 0;
        if (cudaEventElapsedTime(&ms, p->ev[i - 1], p->ev[i]) == cudaSuccess)
            p->ms[prefill][p->ph[i]] += ms;
    }
    p->steps[prefill]++;
    p->n = 0;
}

/* Whether the tensor-core GEMM (cuda_gemm.cu) takes n rows of x (rows ldx floats apart; 0
 * when not known yet) times these weights, in one launch. It takes every batch of
 * tc_rows or more rows whose weights it supports: those rows would otherwise run the
 * scalar decode kernels (fewer than gemm_rows) or, from gemm_rows on, cuBLAS on f32 tiles
 * of dequantized affine weights or three bf16 GEMMs over BF16 weights. */
static int tc_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
                 int64_t ldx)
{
    if (!c->m->tc_rows || n < c->m->tc_rows) return 0;
    if (ws[0]->fmt == CU_W_BF16 && !c->m->tc_bf16 && (n < 8 || n >= c->m->gemm_rows)) return 0;
    for (int i = 0; i < nw; i++)
        if (!cellm_cu_gemm_supported(ws[i], ldx) || ws[i]->fmt != ws[0]->fmt ||
            ws[i]->bits != ws[0]->bits || ws[i]->group != ws[0]->group ||
            ws[i]->s_bf16 != ws[0]->s_bf16 || ws[i]->cols != ws[0]->cols ||
            ws[i]->tiled != ws[0]->tiled)
            return 0;
    return 1;
}

static enum cellm_status tc_run(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                const float *x, int64_t ldx, int n, float *const *ys,
                                const int64_t *ldys, const float *const *biases,
                                struct cellm_error *err)
{
    struct cu_gemm_op op = {.nw = nw,
                            .x = x,
                            .ldx = ldx,
                            .n = n,
                            .part = c->gpart,
                            .part_cap = c->gpart_cap,
                            .sms = c->m->sms};
    for (int i = 0; i < nw; i++) {
        op.w[i] = ws[i];
        op.y[i] = ys[i];
        op.ldy[i] = ldys[i];
        op.bias[i] = biases ? biases[i] : NULL;
    }
    K_TRY(cellm_cu_gemm(&op, c->st));
    return CELLM_OK;
}

/* Whether the fused decode kernels (cuda_mv.cu) take these weights, sharing one input. */
static int mv_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
                 int with_norm)
{
    if (!c->m->fuse || n >= c->m->gemm_rows || tc_ok(c, ws, nw, n, 0)) return 0;
    for (int i = 0; i < nw; i++)
        if (!cellm_cu_mv_supported(ws[i], n, with_norm) || ws[i]->fmt != ws[0]->fmt ||
            ws[i]->bits != ws[0]->bits || ws[i]->group != ws[0]->group ||
            ws[i]->s_bf16 != ws[0]->s_bf16 || ws[i]->cols != ws[0]->cols)
            return 0;
    return 1;
}

/* One fused decode product; the tensor-core kernels take it when they can (and may). With
 * ws != NULL, the op's op->nw weights and outputs come from ws, ys and ld. */
static enum cellm_status mv_run(struct cu_ctx *c, struct cu_mv_op *op,
                                const struct cu_weight *const *ws, float *const *ys,
                                const int64_t *ld, struct cellm_error *err)
{
    for (int i = 0; ws && i < op->nw; i++) {
        op->w[i] = ws[i];
        op->y[i] = ys[i];
        op->ldy[i] = ld[i];
    }
    op->mma = c->m->mma;
    op->counter = c->mv_cnt;
    K_TRY(cellm_cu_mv(op, c->m->sms, c->st));
    return CELLM_OK;
}

static enum cellm_status mm(struct cu_ctx *c, const struct cu_weight *w, const float *x,
                            int64_t ldx, int n, float *y, int64_t ldy, const float *bias,
                            struct cellm_error *err)
{
    if (tc_ok(c, &w, 1, n, ldx)) {
        const float *bs[1] = {bias};
        return tc_run(c, &w, 1, x, ldx, n, &y, &ldy, bs, err);
    }
    if (mv_ok(c, &w, 1, n, 0)) {
        struct cu_mv_op op = {.w = {w},
                              .nw = 1,
                              .x = x,
                              .ldx = ldx,
                              .n = n,
                              .y = {y},
                              .ldy = {ldy},
                              .bias = {bias},
                              .epi = CU_EPI_STORE,
                              .norm_kind = -1};
        CELLM_TRY(mv_run(c, &op, NULL, NULL, NULL, err));
    } else if (n < c->m->gemm_rows)
        K_TRY(cellm_cu_matvec(w, x, ldx, n, y, ldy, bias, c->st));
    else {
        const float one = 1.0f, zero = 0.0f;
        if (w->fmt == CU_W_BF16 && c->m->split3) {
            size_t per = (size_t)n * (size_t)w->cols;
            if (c->split_of != x) {
                CELLM_TRY(
                    dgrow((void **)&c->split, &c->split_cap, 3 * per * sizeof(uint16_t), err));
                K_TRY(cellm_cu_split3(x, ldx, n, w->cols, c->split, c->split + per,
                                      c->split + 2 * per, c->st));
            }
            for (int p = 0; p < 3; p++)
                BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n,
                                      (int)w->cols, &one, w->data, CUDA_R_16BF, (int)w->cols,
                                      c->split + p * per, CUDA_R_16BF, (int)w->cols,
                                      p ? &one : &zero, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT));
        } else if (w->fmt == CU_W_F32) {
            BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols,
                                  &one, w->data, CUDA_R_32F, (int)w->cols, x, CUDA_R_32F, (int)ldx,
                                  &zero, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
        } else {
            int64_t tr = TILE_FLOATS / w->cols;
            if (tr > w->rows) tr = w->rows;
            CELLM_TRY(dgrow((void **)&c->tile, &c->tile_cap, (size_t)(tr * w->cols) * sizeof(float),
                            err));
            for (int64_t r0 = 0; r0 < w->rows; r0 += tr) {
                int64_t nr = w->rows - r0 < tr ? w->rows - r0 : tr;
                K_TRY(cellm_cu_dequant(w, r0, nr, c->tile, c->st));
                BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, n, (int)w->cols,
                                      &one, c->tile, CUDA_R_32F, (int)w->cols, x, CUDA_R_32F,
                                      (int)ldx, &zero, y + r0, CUDA_R_32F, (int)ldy,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            }
        }
        if (bias) K_TRY(cellm_cu_add_bias(y, ldy, n, w->rows, bias, c->st));
    }
    return CELLM_OK;
}

/* Several products of one input, in one launch when the formats agree (q/k/v, gate/up). */
static enum cellm_status mm_multi(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                  const float *x, int64_t ldx, int n, float *const *ys,
                                  const int64_t *ldys, struct cellm_error *err)
{
    if (tc_ok(c, ws, nw, n, ldx)) return tc_run(c, ws, nw, x, ldx, n, ys, ldys, NULL, err);
    int same = n < c->m->gemm_rows;
    for (int i = 1; i < nw; i++)
        same = same && ws[i]->fmt == ws[0]->fmt && ws[i]->bits == ws[0]->bits &&
               ws[i]->cols == ws[0]->cols;
    if (same && mv_ok(c, ws, nw, n, 0)) {
        struct cu_mv_op op = {
            .nw = nw, .x = x, .ldx = ldx, .n = n, .epi = CU_EPI_STORE, .norm_kind = -1};
        return mv_run(c, &op, ws, ys, ldys, err);
    }
    if (same) {
        K_TRY(cellm_cu_matvec_multi(ws, nw, x, ldx, n, ys, ldys, NULL, c->st));
        return CELLM_OK;
    }
    /* one split of x serves every weight (the outputs are other buffers) */
    enum cellm_status st = CELLM_OK;
    int cols_agree = 1;
    for (int i = 1; i < nw; i++)
        cols_agree &= ws[i]->cols == ws[0]->cols;
    c->split_of = NULL;
    for (int i = 0; i < nw && !st; i++) {
        st = mm(c, ws[i], x, ldx, n, ys[i], ldys[i], NULL, err);
        if (ws[i]->fmt == CU_W_BF16 && cols_agree && n >= c->m->gemm_rows) c->split_of = x;
    }
    c->split_of = NULL;
    return st;
}

static enum cellm_status dense_mlp(struct cu_ctx *c, const struct cu_weight *wg,
                                   const struct cu_weight *wu, const struct cu_weight *wd,
                                   const float *bg, const float *bu, const float *bd,
                                   const float *x, int n, float *gate, float *up, float *out,
                                   struct cellm_error *err)
{
    int64_t I = wg->rows, dim = c->d->cfg.dim;
    const struct cu_weight *ws[2] = {wg, wu};
    float *ys[2] = {gate, up};
    int64_t ld[2] = {I, I};
    CELLM_TRY(mm_multi(c, ws, 2, x, dim, n, ys, ld, err));
    K_TRY(cellm_cu_glu(gate, up, n, I, bg, bu, (int)c->d->cfg.act, c->st));
    prof_mark(c, PH_MLP);
    CELLM_TRY(mm(c, wd, gate, I, n, out, dim, bd, err));
    prof_mark(c, PH_DOWN);
    return CELLM_OK;
}

static enum cellm_status moe(struct cu_ctx *c, const struct cu_layer *L, const float *x, int n,
                             float *out, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int E = cfg->n_experts, K = cfg->n_experts_used, dim = cfg->dim;
    CELLM_TRY(mm(c, &L->router, x, dim, n, c->router, E, NULL, err));
    K_TRY(cellm_cu_moe_route(c->router, n, E, K, cfg->norm_topk_prob, c->moe_idx, c->moe_w, c->st));
    CU_TRY(cudaMemcpyAsync(c->h_idx, c->moe_idx, (size_t)n * K * sizeof(int32_t),
                           cudaMemcpyDeviceToHost, c->st));
    CU_TRY(cudaStreamSynchronize(c->st));
    /* rows per expert, concatenated: map entries are i*K + k */
    int starts[1025], total = 0;
    if (E > 1024)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED, "cuda executor: %d experts (at most 1024)",
                          E);
    for (int e = 0; e < E; e++) {
        starts[e] = total;
        for (int j = 0; j < n * K; j++)
            if (c->h_idx[j] == e) c->h_map[total++] = j;
    }
    starts[E] = total;
    CU_TRY(cudaMemcpyAsync(c->moe_map, c->h_map, (size_t)total * sizeof(int32_t),
                           cudaMemcpyHostToDevice, c->st));
    for (int e = 0; e < E; e++) {
        int m = starts[e + 1] - starts[e];
        if (!m) continue;
        const int32_t *map = c->moe_map + starts[e];
        K_TRY(cellm_cu_gather_rows(x, map, K, m, dim, c->moe_x, c->st));
        CELLM_TRY(dense_mlp(c, &L->e_gate[e], &L->e_up[e], &L->e_down[e], NULL, NULL, NULL,
                            c->moe_x, m, c->moe_g, c->moe_u, c->moe_y, err));
        K_TRY(cellm_cu_scatter_rows(c->moe_y, map, m, dim, c->moe_out, c->st));
    }
    K_TRY(cellm_cu_moe_combine(c->moe_out, c->moe_w, n, K, dim, out, c->st));
    /* the host map must outlive the copy above */
    CU_TRY(cudaStreamSynchronize(c->st));
    return CELLM_OK;
}

/* From the q/k/v projections in c->q, c->k, c->v to the attention output in c->att:
 * biases, q/k norms, RoPE, cache write, attention. */
static enum cellm_status attn_core(struct cu_ctx *c, int l, int n, int max_keys,
                                   struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_layer *L = &c->m->layers[l];
    int hd = cfg->head_dim, H = cfg->n_heads, KVH = cfg->n_kv_heads;
    int half = cfg->rot_dims / 2;
    struct cu_qkv_args qa = {.q = c->q,
                             .k = c->k,
                             .v = c->v,
                             .bq = L->bq,
                             .bk = L->bk,
                             .bv = L->bv,
                             .qn = L->q_norm,
                             .kn = L->k_norm,
                             .qn_heads = L->qn_heads,
                             .kn_heads = L->kn_heads,
                             .qk_kind = (int)cfg->norm,
                             .eps = (float)cfg->norm_eps,
                             .cs = c->cs +
                                   (size_t)L->rope_table * c->rows_cap * (size_t)(half + 1) * 2,
                             .rows = c->rows,
                             .n = n,
                             .H = H,
                             .KVH = KVH,
                             .hd = hd,
                             .rot = cfg->rot_dims,
                             .layer = l};
    int window = L->sliding && cfg->window > 0 ? cfg->window : 0;
    int keys = window && window < max_keys ? window : max_keys;
    int sk = c->split_keys, nsplit = 1;
    while (nsplit * sk < keys)
        nsplit *= 2;
    struct cu_attn_args aa = {.q = c->q,
                              .out = c->att,
                              .part = c->part,
                              .rows = c->rows,
                              .n = n,
                              .H = H,
                              .KVH = KVH,
                              .hd = hd,
                              .layer = l,
                              .window = window,
                              .nsplit = nsplit,
                              .split_keys = sk,
                              .scale = (float)cfg->attn_scale,
                              .softcap = (float)cfg->attn_softcap};
    /* Decode attention as clusters (cuda_attn_dec.cu): one per (row, q head), or one per
     * (row, kv head) whose blocks share each key tile among the kv head's q heads. Measured
     * (bench/cuda_notes.md, round 5): with two q heads per kv head (Qwen3-0.6B shape) the
     * grouped clusters beat the per-head ones by 8-10% in decode; with four (Llama-3.1-8B
     * shape) they match the single-launch fused kernel at ~550 keys (0 to -4% over three
     * machines; per-head clusters lose 5-8% there) and beat it by 12-14% at ~2100. So:
     * CELLM_CUDA_ATTN_DEC 1 (default) grouped clusters for 2..8 q heads per kv head,
     * per-head clusters for one, the fused kernel for more; 0 never clusters; 2 per-head
     * clusters; 3 grouped clusters (up to 8 q heads per kv head, else per-head). */
    const int G = H / KVH, mode = c->m->attn_dec;
    const int dec = mode >= 2 || (mode == 1 && G <= 8);
    const int grouped = (mode == 3 || (mode == 1 && G >= 2)) && G <= 8;
    if (c->m->fuse && n < c->m->gemm_rows && c->distinct && dec &&
        cellm_cu_attention_dec_supported(hd, cfg->rot_dims))
        K_TRY(cellm_cu_attention_dec(&qa, &aa, grouped, c->m->attn_pdl, c->m->sms, c->st));
    else if (c->m->fuse && n < c->m->gemm_rows && c->distinct)
        K_TRY(cellm_cu_attention_fused(&qa, &aa, c->att_cnt, c->st));
    else {
        K_TRY(cellm_cu_qkv_post(&qa, c->st));
        if (c->m->fuse && c->consecutive && n > 1)
            K_TRY(cellm_cu_attention_prefill(&aa, c->st));
        else
            K_TRY(cellm_cu_attention(&aa, c->st));
    }
    return CELLM_OK;
}

static enum cellm_status attention(struct cu_ctx *c, int l, int n, int max_keys, const float *hin,
                                   float *out, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cu_layer *L = &c->m->layers[l];
    int hd = cfg->head_dim, dim = cfg->dim;
    int64_t qd = (int64_t)cfg->n_heads * hd, kd = (int64_t)cfg->n_kv_heads * hd;
    const struct cu_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
    float *ys[3] = {c->q, c->k, c->v};
    int64_t ld[3] = {qd, kd, kd};
    CELLM_TRY(mm_multi(c, ws, 3, hin, dim, n, ys, ld, err));
    prof_mark(c, PH_QKV);
    CELLM_TRY(attn_core(c, l, n, max_keys, err));
    prof_mark(c, PH_ATTN);
    CELLM_TRY(mm(c, &L->wo, c->att, qd, n, out, dim, L->bo, err));
    prof_mark(c, PH_O);
    return CELLM_OK;
}

/* ---- eval ------------------------------------------------------------------------------ */

static enum cellm_status norm(struct cu_ctx *c, float *x, const float *add, float *out,
                              const float *w, const float *b, int n, const struct cu_row *gather,
                              struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    struct cu_norm_args a = {.x = x,
                             .add = add,
                             .out = out,
                             .w = w,
                             .b = b,
                             .rows = gather,
                             .n = n,
                             .dim = cfg->dim,
                             .kind = (int)cfg->norm,
                             .eps = (float)cfg->norm_eps};
    K_TRY(cellm_cu_norm(&a, c->st));
    return CELLM_OK;
}

/* ys[i] = ws[i] norm(x) for the decode rows: the norm fused in front of the products when
 * the kernels take them, else the norm kernel into c->h and then the products. */
static enum cellm_status proj_normed(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                     const float *nwt, const float *nb, int n, float *const *ys,
                                     const int64_t *ld, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    if (!mv_ok(c, ws, nw, n, 1)) {
        CELLM_TRY(norm(c, c->x, NULL, c->h, nwt, nb, n, NULL, err));
        return mm_multi(c, ws, nw, c->h, cfg->dim, n, ys, ld, err);
    }
    struct cu_mv_op op = {.nw = nw,
                          .x = c->x,
                          .ldx = cfg->dim,
                          .n = n,
                          .epi = CU_EPI_STORE,
                          .norm_kind = (int)cfg->norm,
                          .norm_w = nwt,
                          .norm_b = nb,
                          .norm_eps = (float)cfg->norm_eps};
    CELLM_TRY(mv_run(c, &op, ws, ys, ld, err));
    return CELLM_OK;
}

/* The residual: x += w in (+ bias), in the product's epilogue when possible. */
static enum cellm_status proj_add(struct cu_ctx *c, const struct cu_weight *w, const float *in,
                                  int64_t ldin, int n, const float *bias, struct cellm_error *err)
{
    int64_t dim = c->d->cfg.dim;
    if (!mv_ok(c, &w, 1, n, 0)) {
        CELLM_TRY(mm(c, w, in, ldin, n, c->o, dim, bias, err));
        K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
        return CELLM_OK;
    }
    struct cu_mv_op op = {.w = {w},
                          .nw = 1,
                          .x = in,
                          .ldx = ldin,
                          .n = n,
                          .y = {c->x},
                          .ldy = {dim},
                          .bias = {bias},
                          .epi = CU_EPI_ADD,
                          .norm_kind = -1};
    CELLM_TRY(mv_run(c, &op, NULL, NULL, NULL, err));
    return CELLM_OK;
}

/* x += mlp(norm(x)) for a dense layer: norm, gate/up and the activation in one kernel. */
static enum cellm_status mlp_fused(struct cu_ctx *c, const struct cu_layer *L, int n,
                                   struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t I = L->w_gate.rows;
    const struct cu_weight *ws[2] = {&L->w_gate, &L->w_up};
    int pro = mv_ok(c, ws, 2, n, 1) && L->w_up.rows == I;
    if (!pro) CELLM_TRY(norm(c, c->x, NULL, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
    if (pro || (mv_ok(c, ws, 2, n, 0) && L->w_up.rows == I)) {
        struct cu_mv_op op = {.w = {ws[0], ws[1]},
                              .nw = 2,
                              .x = pro ? c->x : c->h,
                              .ldx = cfg->dim,
                              .n = n,
                              .y = {c->gate},
                              .ldy = {I},
                              .bias = {L->b_gate, L->b_up},
                              .epi = CU_EPI_GLU,
                              .act = (int)cfg->act,
                              .norm_kind = pro ? (int)cfg->norm : -1,
                              .norm_w = L->ffn_norm,
                              .norm_b = L->ffn_norm_b,
                              .norm_eps = (float)cfg->norm_eps};
        CELLM_TRY(mv_run(c, &op, NULL, NULL, NULL, err));
    } else {
        float *ys[2] = {c->gate, c->up};
        int64_t ld[2] = {I, I};
        CELLM_TRY(mm_multi(c, ws, 2, c->h, cfg->dim, n, ys, ld, err));
        K_TRY(cellm_cu_glu(c->gate, c->up, n, I, L->b_gate, L->b_up, (int)cfg->act, c->st));
    }
    prof_mark(c, PH_MLP);
    CELLM_TRY(proj_add(c, &L->w_down, c->gate, I, n, L->b_down, err));
    prof_mark(c, PH_DOWN);
    return CELLM_OK;
}

/* The final norm and the head for the rows that want logits, then the soft-cap. With
 * fuse_norm and every row wanting logits, the norm runs in the head's prologue; otherwise
 * the norm gathers the rows that want logits into c->h, in order. */
static enum cellm_status logits_out(struct cu_ctx *c, int n, int nw, int fuse_norm,
                                    struct cellm_error *err)
{
    const struct cu_model *m = c->m;
    const struct cellm_config *cfg = &c->d->cfg;
    if (!nw) return CELLM_OK;
    if (fuse_norm && nw == n) {
        float *ys[1] = {c->logits};
        int64_t ld[1] = {cfg->vocab};
        const struct cu_weight *hw[1] = {&m->head};
        CELLM_TRY(proj_normed(c, hw, 1, m->final_norm, m->final_norm_b, n, ys, ld, err));
    } else {
        CELLM_TRY(norm(c, c->x, NULL, c->h, m->final_norm, m->final_norm_b, n, c->rows, err));
        CELLM_TRY(mm(c, &m->head, c->h, cfg->dim, nw, c->logits, cfg->vocab, NULL, err));
    }
    if (cfg->final_softcap > 0)
        K_TRY(cellm_cu_softcap(c->logits, (int64_t)nw * cfg->vocab, (float)cfg->final_softcap,
                               c->st));
    prof_mark(c, PH_HEAD);
    return CELLM_OK;
}

/* Decode steps of pre-norm models, after the embedding: every residual add lands in a
 * product's epilogue and every norm in the next product's prologue (where the kernels take
 * the weights). */
static enum cellm_status forward_fused(struct cu_ctx *c, int n, int nw, int max_keys,
                                       struct cellm_error *err)
{
    struct cu_model *m = c->m;
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t dim = cfg->dim, hd = cfg->head_dim;
    int64_t qd = cfg->n_heads * hd, kd = cfg->n_kv_heads * hd;
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cu_layer *L = &m->layers[l];
        const struct cu_weight *ws[3] = {&L->wq, &L->wk, &L->wv};
        float *ys[3] = {c->q, c->k, c->v};
        int64_t ld[3] = {qd, kd, kd};
        CELLM_TRY(proj_normed(c, ws, 3, L->attn_norm, L->attn_norm_b, n, ys, ld, err));
        prof_mark(c, PH_QKV);
        CELLM_TRY(attn_core(c, l, n, max_keys, err));
        prof_mark(c, PH_ATTN);
        CELLM_TRY(proj_add(c, &L->wo, c->att, qd, n, L->bo, err));
        prof_mark(c, PH_O);
        if (L->moe) {
            CELLM_TRY(norm(c, c->x, NULL, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
            CELLM_TRY(moe(c, L, c->h, n, c->o, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            prof_mark(c, PH_MOE);
        } else
            CELLM_TRY(mlp_fused(c, L, n, err));
    }
    return logits_out(c, n, nw, 1, err);
}

/* Every kernel of one step, from the embedding to the logits (device); capturable. */
static enum cellm_status forward(struct cu_ctx *c, int n, int nw, int max_keys,
                                 struct cellm_error *err)
{
    struct cu_model *m = c->m;
    const struct cellm_desc *d = c->d;
    const struct cellm_config *cfg = &d->cfg;
    int64_t dim = cfg->dim;
    K_TRY(cellm_cu_embed(&m->embed, c->rows, n, cfg->embed_scale ? d->embed_scale : 1.0f, c->x,
                         c->st));
    prof_mark(c, PH_EMBED);
    if (m->fuse && n < m->gemm_rows && !cfg->parallel_residual && !cfg->sandwich_norms)
        return forward_fused(c, n, nw, max_keys, err);
    const float *pending = NULL; /* residual still to be added to x */
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cu_layer *L = &m->layers[l];
        CELLM_TRY(norm(c, c->x, pending, c->h, L->attn_norm, L->attn_norm_b, n, NULL, err));
        prof_mark(c, PH_NORM);
        CELLM_TRY(attention(c, l, n, max_keys, c->h, c->o, err));
        if (cfg->parallel_residual) {
            CELLM_TRY(dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, NULL, NULL, NULL, c->h, n,
                                c->gate, c->up, c->h, err));
            K_TRY(cellm_cu_add(c->x, c->o, (int64_t)n * dim, c->st));
            pending = c->h;
            continue;
        }
        if (cfg->sandwich_norms)
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_attn_norm, NULL, n, NULL, err));
        CELLM_TRY(norm(c, c->x, c->o, c->h, L->ffn_norm, L->ffn_norm_b, n, NULL, err));
        prof_mark(c, PH_NORM);
        if (L->moe) {
            CELLM_TRY(moe(c, L, c->h, n, c->o, err));
            prof_mark(c, PH_MOE);
        } else
            CELLM_TRY(dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, L->b_gate, L->b_up, L->b_down,
                                c->h, n, c->gate, c->up, c->o, err));
        if (cfg->sandwich_norms)
            CELLM_TRY(norm(c, c->o, NULL, c->o, L->post_ffn_norm, NULL, n, NULL, err));
        prof_mark(c, PH_NORM);
        pending = c->o;
    }
    if (pending) K_TRY(cellm_cu_add(c->x, pending, (int64_t)n * dim, c->st));
    return logits_out(c, n, nw, 0, err);
}

/* The row properties that choose kernels (attn_core), part of a captured graph's key. */
static int row_kind(const struct cu_ctx *c)
{
    return c->distinct + 2 * c->consecutive;
}

/* Runs the step's kernels, through a captured graph for small batches (decode). */
static enum cellm_status run_step(struct cu_ctx *c, int n, int nw, int max_keys,
                                  struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    /* decode: short key splits, so that each block is one pass of loads (8 keys a warp) */
    c->split_keys = n * cfg->n_heads >= 264 ? 1024 : 32;
    c->nsplit = 1;
    while (c->nsplit * c->split_keys < max_keys)
        c->nsplit *= 2;
    if (c->nsplit > 1) {
        size_t need = (size_t)n * cfg->n_heads * c->nsplit * (cfg->head_dim + 2) * sizeof(float);
        if (need > c->part_cap) {
            CELLM_TRY(dgrow((void **)&c->part, &c->part_cap, need, err));
            c->gen++;
        }
    }
    if (!c->m->graphs || c->prof || c->m->has_moe || n >= c->m->gemm_rows)
        return forward(c, n, nw, max_keys, err);
    if (!c->gexec || c->g_n != n || c->g_nw != nw || c->g_nsplit != c->nsplit ||
        c->g_gen != c->gen || c->g_kind != row_kind(c)) {
        if (c->gexec) cudaGraphExecDestroy(c->gexec);
        c->gexec = NULL;
        cudaGraph_t g;
        CU_TRY(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
        enum cellm_status st = forward(c, n, nw, max_keys, err);
        cudaError_t e = cudaStreamEndCapture(c->st, &g);
        if (st) {
            if (e == cudaSuccess) cudaGraphDestroy(g);
            return st;
        }
        CU_TRY(e);
        e = cudaGraphInstantiate(&c->gexec, g, 0);
        cudaGraphDestroy(g);
        CU_TRY(e);
        c->g_n = n;
        c->g_nw = nw;
        c->g_nsplit = c->nsplit;
        c->g_kind = row_kind(c);
        c->g_gen = c->gen;
    }
    CU_TRY(cudaGraphLaunch(c->gexec, c->st));
    return CELLM_OK;
}

/* One step; the logits of the wanting rows to logits, or with ids their greedy picks only. */
static enum cellm_status cu_run(void *p, const struct cellm_exec_row *rows, int n, float *logits,
                                int32_t *ids, struct cellm_error *err)
{
    struct cu_ctx *c = p;
    struct cu_model *m = c->m;
    const struct cellm_desc *d = c->d;
    const struct cellm_config *cfg = &d->cfg;
    CU_TRY(cudaSetDevice(m->dev));
    CELLM_TRY(reserve_rows(c, n, err));
    int max_keys = 0, nw = 0;
    /* distinct sequences matter only to the decode kernels (n < gemm_rows): the quadratic
     * check stays off prefill batches */
    c->distinct = n < m->gemm_rows;
    c->consecutive = 1;
    for (int i = 0; i < n; i++) {
        c->consecutive &= rows[i].seq == rows[0].seq && rows[i].pos == rows[0].pos + i;
        for (int j = 0; j < i && c->distinct; j++)
            c->distinct = rows[j].seq != rows[i].seq;
        if (rows[i].seq < 0 || rows[i].seq >= c->max_seqs)
            return cellm_errf(err, CELLM_ERR_ARG, "row %d: sequence %d out of range", i,
                              rows[i].seq);
        if (rows[i].token < 0 || rows[i].token >= cfg->vocab)
            return cellm_errf(err, CELLM_ERR_RANGE, "token id %d is outside the vocabulary [0, %d)",
                              rows[i].token, cfg->vocab);
        CELLM_TRY(reserve_seq(c, &c->seqs[rows[i].seq], rows[i].pos + 1, err));
        if (rows[i].pos + 1 > max_keys) max_keys = rows[i].pos + 1;
    }
    /* rows and RoPE tables, one upload */
    struct cu_row *hr = c->stage;
    int half = cfg->rot_dims / 2;
    size_t tstride = (size_t)c->rows_cap * (size_t)(half + 1) * 2;
    float *hcs = (float *)((char *)c->stage + (size_t)c->rows_cap * sizeof(struct cu_row));
    for (int i = 0; i < n; i++) {
        const struct cu_seq *s = &c->seqs[rows[i].seq];
        hr[i] = (struct cu_row){rows[i].token,
                                rows[i].seq,
                                rows[i].pos,
                                rows[i].want_logits != 0,
                                rows[i].want_logits ? nw : -1,
                                0,
                                s->kv,
                                s->cap};
        nw += rows[i].want_logits != 0;
        float pos = (float)rows[i].pos;
        for (int t = 0; t < m->n_tables; t++) {
            float *cs = hcs + (size_t)t * tstride + (size_t)i * half * 2;
            for (int k = 0; k < half; k++) {
                float angle = m->tables[t][k] * pos;
                cs[2 * k] = cosf(angle);
                cs[2 * k + 1] = sinf(angle);
            }
        }
    }
    CU_TRY(cudaMemcpyAsync(c->rows, hr, (size_t)n * sizeof *hr, cudaMemcpyHostToDevice, c->st));
    CU_TRY(cudaMemcpyAsync(c->cs, hcs, (size_t)m->n_tables * tstride * sizeof(float),
                           cudaMemcpyHostToDevice, c->st));

    prof_mark(c, PH_START);
    CELLM_TRY(run_step(c, n, nw, max_keys, err));
    /* greedy picks come back through the pinned stage (its upload above is done by then),
     * logits through their own pinned buffer */
    size_t bytes = ids ? (size_t)nw * sizeof(int32_t) : (size_t)nw * cfg->vocab * sizeof(float);
    void *host = c->stage;
    if (ids && nw) {
        K_TRY(cellm_cu_argmax(c->logits, nw, cfg->vocab, c->am_v, c->am_i, c->ids, c->st));
        CU_TRY(cudaMemcpyAsync(host, c->ids, bytes, cudaMemcpyDeviceToHost, c->st));
    } else if (nw) {
        if (bytes > c->hlogits_cap) {
            if (c->hlogits) cudaFreeHost(c->hlogits);
            c->hlogits = NULL;
            c->hlogits_cap = 0;
            CU_TRY(cudaMallocHost((void **)&c->hlogits, bytes));
            c->hlogits_cap = bytes;
        }
        host = c->hlogits;
        CU_TRY(cudaMemcpyAsync(host, c->logits, bytes, cudaMemcpyDeviceToHost, c->st));
    }
    CU_TRY(cudaStreamSynchronize(c->st));
    CU_TRY(cudaGetLastError());
    if (nw) memcpy(ids ? (void *)ids : (void *)logits, host, bytes);
    prof_collect(c, n >= m->gemm_rows);
    return CELLM_OK;
}

static enum cellm_status cu_eval(void *p, const struct cellm_exec_row *rows, int n, float *logits,
                                 struct cellm_error *err)
{
    return cu_run(p, rows, n, logits, NULL, err);
}

static enum cellm_status cu_eval_argmax(void *p, const struct cellm_exec_row *rows, int n,
                                        int32_t *ids, struct cellm_error *err)
{
    return cu_run(p, rows, n, NULL, ids, err);
}

/* ---- prefix-cache blocks ------------------------------------------------------------------
 * A block is device memory: for each layer whose data it holds (full-attention layers
 * always, sliding ones with CELLM_KV_WINDOW; this executor keeps whole histories, so it
 * always can), K[n][kv_dim] then V[n][kv_dim]. Positions [pos, pos + n) of one half of
 * one layer are contiguous in a sequence's cache ([n_layers][2][cap][kv_dim]), so a save
 * or a load is two device-to-device copies per layer, queued on the context's stream
 * like every step (which orders them against the evaluations around them). */

static int kv_has_layer(const struct cu_ctx *c, int l, int flags)
{
    return !c->d->layers[l].sliding || (flags & CELLM_KV_WINDOW);
}

static size_t cu_kv_block_bytes(void *p, int n, int flags)
{
    struct cu_ctx *c = p;
    size_t kd = (size_t)c->d->cfg.n_kv_heads * c->d->cfg.head_dim, b = 0;
    for (int l = 0; l < c->d->cfg.n_layers; l++)
        if (kv_has_layer(c, l, flags)) b += 2 * (size_t)n * kd * sizeof(float);
    return b;
}

/* Queues the copies between a sequence's cache and a block (to = 1: into the cache). */
static enum cellm_status kv_copy(struct cu_ctx *c, struct cu_seq *s, int pos, int n, int flags,
                                 float *blk, int to, struct cellm_error *err)
{
    size_t kd = (size_t)c->d->cfg.n_kv_heads * c->d->cfg.head_dim, off = 0;
    size_t bytes = (size_t)n * kd * sizeof(float);
    for (int l = 0; l < c->d->cfg.n_layers; l++) {
        if (!kv_has_layer(c, l, flags)) continue;
        int write = !to || !c->d->layers[l].sliding || (flags & CELLM_KV_LOAD_WINDOW);
        for (int half = 0; half < 2 && write; half++) {
            float *cache = s->kv + ((size_t)(2 * l + half) * (size_t)s->cap + (size_t)pos) * kd;
            float *b = blk + off + (size_t)half * n * kd;
            CU_TRY(cudaMemcpyAsync(to ? cache : b, to ? b : cache, bytes, cudaMemcpyDeviceToDevice,
                                   c->st));
        }
        off += 2 * (size_t)n * kd;
    }
    return CELLM_OK;
}

static enum cellm_status cu_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                    struct cellm_error *err)
{
    struct cu_ctx *c = p;
    struct cu_seq *s = &c->seqs[seq];
    if (!s->kv || pos + n > s->cap)
        return cellm_errf(err, CELLM_ERR_ARG, "kv_save: sequence %d does not hold positions %d..%d",
                          seq, pos, pos + n - 1);
    float *b = NULL;
    cudaError_t e = cudaMalloc((void **)&b, cu_kv_block_bytes(c, n, flags));
    if (e != cudaSuccess)
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "cuda executor: no device memory for a cache "
                          "block: %s",
                          cudaGetErrorString(e));
    enum cellm_status st = kv_copy(c, s, pos, n, flags, b, 0, err);
    if (st) {
        cudaFree(b);
        return st;
    }
    *blk = b;
    return CELLM_OK;
}

static enum cellm_status cu_kv_load(void *p, int seq, int pos, int n, int flags, const void *blk,
                                    struct cellm_error *err)
{
    struct cu_ctx *c = p;
    struct cu_seq *s = &c->seqs[seq];
    CELLM_TRY(reserve_seq(c, s, pos + n, err));
    return kv_copy(c, s, pos, n, flags, (float *)blk, 1, err);
}

static void cu_kv_block_free(void *p, void *blk)
{
    struct cu_ctx *c = p;
    cudaStreamSynchronize(c->st); /* copies from it may still be queued */
    cudaFree(blk);
}

static int cu_kv_window_first(void *p, int seq, int len)
{
    (void)p;
    (void)seq;
    (void)len;
    return 0; /* whole histories: nothing is dropped */
}

const struct cellm_exec_vt cellm_exec_cuda = {
    .name = "cuda",
    .model_new = cu_model_new,
    .model_free = cu_model_free,
    .ctx_new = cu_ctx_new,
    .ctx_free = cu_ctx_free,
    .seq_truncate = cu_seq_truncate,
    .eval = cu_eval,
    .eval_argmax = cu_eval_argmax,
    .describe = cu_describe,
    .kv_block_bytes = cu_kv_block_bytes,
    .kv_save = cu_kv_save,
    .kv_load = cu_kv_load,
    .kv_block_free = cu_kv_block_free,
    .kv_window_first = cu_kv_window_first,
};
