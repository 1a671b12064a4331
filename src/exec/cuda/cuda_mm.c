/*
 * cuda_mm.c: product routing, the one place that decides which kernel multiplies which
 * weight at which row count:
 *   rows >= tc_rows (option, 3; 0 = never), weights the GEMM takes (4/8-bit affine; BF16
 *       from 8 to gemm_rows - 1 rows unless tc_bf16): the tensor-core GEMM
 *       (cuda_gemm.cuh), packed weights read once per tile
 *   rows < gemm_rows (option, 32): the fused decode kernels, cuda_mv.cuh for F32/F16/BF16
 *       and 4/8-bit affine (one or two rows of 4-bit on the tensor cores, cuda_mvt.cuh,
 *       unless mma=0; MXFP4, NVFP4, MXFP8 and FP8 blocks too), cuda_matvec.cu for
 *       2/3/5/6-bit affine and with fuse=0, cuda_mvq.cu for GPTQ/AWQ and the shapes of
 *       the other formats of docs/formats.md that cuda_mv.cuh declines (and with fuse=0)
 *   rows >= gemm_rows: cuBLAS with f32 accumulation and TF32 off: BF16 weights against an
 *       exact three-way bf16 split of the activations (split3), F32 directly, other
 *       formats (those of docs/formats.md too) dequantized exactly to f32 in row tiles
 * Fast precision (cellm_model_params.precision): the tensor-core GEMM and the BF16 cuBLAS
 * path use only the first part of the split, x rounded to bf16 (one pass instead of three);
 * the decode kernels, attention and the f32 KV cache are those of exact mode.
 * Also the MLP and MoE blocks built on these products (gpt-oss's experts too: biases on every
 * projection, the clamped SwiGLU, gate and up stored apart or as one interleaved gate_up).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"
#include "exec/cpu/router.h"

enum cellm_status cellm_cuda_dgrow(void **p, size_t *cap, size_t need, struct cellm_error *err)
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

/* Whether the tensor-core GEMM (cuda_gemm.cu) takes n rows of x (rows ldx floats apart; 0
 * when not known yet) times these weights, in one launch. It takes every batch of
 * tc_rows or more rows whose weights it supports: those rows would otherwise run the
 * scalar decode kernels (fewer than gemm_rows) or, from gemm_rows on, cuBLAS on f32 tiles
 * of dequantized affine weights or three bf16 GEMMs over BF16 weights. */
int cellm_cuda_tc_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
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
                            .sms = c->m->sms,
                            .passes = c->m->fast && !c->exact ? 1 : 3};
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
int cellm_cuda_mv_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
                     int with_norm)
{
    if (!c->m->fuse || n >= c->m->gemm_rows || cellm_cuda_tc_ok(c, ws, nw, n, 0)) return 0;
    for (int i = 0; i < nw; i++)
        if (!cellm_cu_mv_supported(ws[i], n, with_norm) || ws[i]->fmt != ws[0]->fmt ||
            ws[i]->bits != ws[0]->bits || ws[i]->group != ws[0]->group ||
            ws[i]->s_bf16 != ws[0]->s_bf16 || ws[i]->cols != ws[0]->cols)
            return 0;
    return 1;
}

/* One fused decode product; the tensor-core kernels take it when they can (and may). With
 * ws != NULL, the op's op->nw weights and outputs come from ws, ys and ld. */
enum cellm_status cellm_cuda_mv_run(struct cu_ctx *c, struct cu_mv_op *op,
                                    const struct cu_weight *const *ws, float *const *ys,
                                    const int64_t *ld, struct cellm_error *err)
{
    for (int i = 0; ws && i < op->nw; i++) {
        op->w[i] = ws[i];
        op->y[i] = ys[i];
        op->ldy[i] = ld[i];
    }
    op->mma = c->m->mma;
    op->qold = !c->m->qdecode;
    op->counter = c->mv_cnt;
    K_TRY(cellm_cu_mv(op, c->m->sms, c->st));
    return CELLM_OK;
}

/* BF16 weights against the three parts of x's split (in c->split, [3][n][cols]) as ONE
 * product of 3n columns, so the weights are read once rather than once per part, in row
 * chunks whose [3n][chunk] result fits the tile buffer; then y = (p0 + p1) + p2, the same
 * f32 additions the three accumulating products made (each part's dot in f32 on the tensor
 * cores, as before). */
static enum cellm_status bf16_split_product(struct cu_ctx *c, const struct cu_weight *w, int n,
                                            float *y, int64_t ldy, struct cellm_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    int64_t chunk = TILE_FLOATS / (3 * (int64_t)n) / 128 * 128;
    if (chunk < 128) chunk = 128;
    if (chunk > w->rows) chunk = w->rows;
    CELLM_TRY(cellm_cuda_dgrow((void **)&c->tile, &c->tile_cap,
                               (size_t)(3 * (int64_t)n * chunk) * sizeof(float), err));
    const uint16_t *wd = (const uint16_t *)w->data;
    for (int64_t r0 = 0; r0 < w->rows; r0 += chunk) {
        int64_t nr = w->rows - r0 < chunk ? w->rows - r0 : chunk;
        BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)nr, 3 * n, (int)w->cols, &one,
                              wd + r0 * w->cols, CUDA_R_16BF, (int)w->cols, c->split, CUDA_R_16BF,
                              (int)w->cols, &zero, c->tile, CUDA_R_32F, (int)nr, CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT));
        K_TRY(cellm_cu_sum3(c->tile, nr, n, y + r0, ldy, c->st));
    }
    return CELLM_OK;
}

enum cellm_status cellm_cuda_mm(struct cu_ctx *c, const struct cu_weight *w, const float *x,
                                int64_t ldx, int n, float *y, int64_t ldy, const float *bias,
                                struct cellm_error *err)
{
    if (cellm_cuda_tc_ok(c, &w, 1, n, ldx)) {
        const float *bs[1] = {bias};
        return tc_run(c, &w, 1, x, ldx, n, &y, &ldy, bs, err);
    }
    if (cellm_cuda_mv_ok(c, &w, 1, n, 0)) {
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
        CELLM_TRY(cellm_cuda_mv_run(c, &op, NULL, NULL, NULL, err));
    } else if (n < c->m->gemm_rows && w->fmt > CU_W_AFFINE)
        K_TRY(cellm_cu_mvq(w, x, ldx, n, y, ldy, bias, c->st));
    else if (n < c->m->gemm_rows)
        K_TRY(cellm_cu_matvec(w, x, ldx, n, y, ldy, bias, c->st));
    else {
        const float one = 1.0f, zero = 0.0f;
        if (w->fmt == CU_W_BF16 && c->m->split3) {
            size_t per = (size_t)n * (size_t)w->cols;
            if (c->split_of != x) {
                CELLM_TRY(cellm_cuda_dgrow((void **)&c->split, &c->split_cap,
                                           3 * per * sizeof(uint16_t), err));
                K_TRY(cellm_cu_split3(x, ldx, n, w->cols, c->split, c->split + per,
                                      c->split + 2 * per, c->st));
            }
            if (c->m->fast && !c->exact) /* x rounded to bf16: the first part only */
                BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n,
                                      (int)w->cols, &one, w->data, CUDA_R_16BF, (int)w->cols,
                                      c->split, CUDA_R_16BF, (int)w->cols, &zero, y, CUDA_R_32F,
                                      (int)ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            else if (c->m->bf16_once)
                CELLM_TRY(bf16_split_product(c, w, n, y, ldy, err));
            else /* three accumulating products, the weights read once per part */
                for (int p = 0; p < 3; p++)
                    BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n,
                                          (int)w->cols, &one, w->data, CUDA_R_16BF, (int)w->cols,
                                          c->split + p * per, CUDA_R_16BF, (int)w->cols,
                                          p ? &one : &zero, y, CUDA_R_32F, (int)ldy,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        } else if (w->fmt == CU_W_F32) {
            BLAS_TRY(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols,
                                  &one, w->data, CUDA_R_32F, (int)w->cols, x, CUDA_R_32F, (int)ldx,
                                  &zero, y, CUDA_R_32F, (int)ldy, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT));
        } else {
            int64_t tr = TILE_FLOATS / w->cols;
            if (tr > w->rows) tr = w->rows;
            CELLM_TRY(cellm_cuda_dgrow((void **)&c->tile, &c->tile_cap,
                                       (size_t)(tr * w->cols) * sizeof(float), err));
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
enum cellm_status cellm_cuda_mm_multi(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                      const float *x, int64_t ldx, int n, float *const *ys,
                                      const int64_t *ldys, struct cellm_error *err)
{
    if (cellm_cuda_tc_ok(c, ws, nw, n, ldx))
        return tc_run(c, ws, nw, x, ldx, n, ys, ldys, NULL, err);
    int same = n < c->m->gemm_rows;
    for (int i = 1; i < nw; i++)
        same = same && ws[i]->fmt == ws[0]->fmt && ws[i]->bits == ws[0]->bits &&
               ws[i]->cols == ws[0]->cols;
    if (same && cellm_cuda_mv_ok(c, ws, nw, n, 0)) {
        struct cu_mv_op op = {
            .nw = nw, .x = x, .ldx = ldx, .n = n, .epi = CU_EPI_STORE, .norm_kind = -1};
        return cellm_cuda_mv_run(c, &op, ws, ys, ldys, err);
    }
    if (same && ws[0]->fmt <= CU_W_AFFINE) {
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
        st = cellm_cuda_mm(c, ws[i], x, ldx, n, ys[i], ldys[i], NULL, err);
        if (ws[i]->fmt == CU_W_BF16 && cols_agree && n >= c->m->gemm_rows) c->split_of = x;
    }
    c->split_of = NULL;
    return st;
}

enum cellm_status cellm_cuda_dense_mlp(struct cu_ctx *c, const struct cu_weight *wg,
                                       const struct cu_weight *wu, const struct cu_weight *wd,
                                       const float *bg, const float *bu, const float *bd,
                                       const float *x, int n, float *gate, float *up, float *out,
                                       struct cellm_error *err)
{
    int64_t I = wg->rows, dim = c->d->cfg.dim;
    const struct cu_weight *ws[2] = {wg, wu};
    float *ys[2] = {gate, up};
    int64_t ld[2] = {I, I};
    CELLM_TRY(cellm_cuda_mm_multi(c, ws, 2, x, dim, n, ys, ld, err));
    K_TRY(cellm_cu_glu(gate, up, n, I, bg, bu, (int)c->d->cfg.act, c->st));
    cellm_cuda_prof_mark(c, PH_MLP);
    CELLM_TRY(cellm_cuda_mm(c, wd, gate, I, n, out, dim, bd, err));
    cellm_cuda_prof_mark(c, PH_DOWN);
    return CELLM_OK;
}

/*
 * A gpt-oss expert over the m gathered rows of c->moe_x into c->moe_y, as the CPU's
 * oss_expert: every product with its bias (added to the product, one rounding), the clamped
 * SwiGLU, then down. The Hugging Face layout computes one interleaved [2I] row per token
 * (gate i at 2i, up i at 2i + 1) into moe_g, whose activation goes to moe_u; mlx-lm's keeps
 * gate and up apart.
 */
static enum cellm_status oss_expert(struct cu_ctx *c, const struct cu_layer *L, int e, int m,
                                    struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    const int64_t I = cfg->moe_ffn_dim, dim = cfg->dim;
    const float alpha = (float)cfg->swiglu_alpha, limit = (float)cfg->swiglu_limit;
    float *act;
    if (c->d->experts == CELLM_EXPERTS_INTERLEAVED) {
        const float *b = L->e_gate_up_b ? L->e_gate_up_b + (size_t)e * 2 * I : NULL;
        CELLM_TRY(cellm_cuda_mm(c, &L->e_gate_up[e], c->moe_x, dim, m, c->moe_g, 2 * I, b, err));
        K_TRY(cellm_cu_swiglu_clamp(c->moe_g, c->moe_g + 1, 2 * I, 2, c->moe_u, m, I, alpha, limit,
                                    c->st));
        act = c->moe_u;
    } else {
        const float *bg = L->e_gate_b ? L->e_gate_b + (size_t)e * I : NULL;
        const float *bu = L->e_up_b ? L->e_up_b + (size_t)e * I : NULL;
        CELLM_TRY(cellm_cuda_mm(c, &L->e_gate[e], c->moe_x, dim, m, c->moe_g, I, bg, err));
        CELLM_TRY(cellm_cuda_mm(c, &L->e_up[e], c->moe_x, dim, m, c->moe_u, I, bu, err));
        K_TRY(cellm_cu_swiglu_clamp(c->moe_g, c->moe_u, I, 1, c->moe_g, m, I, alpha, limit, c->st));
        act = c->moe_g;
    }
    cellm_cuda_prof_mark(c, PH_MLP);
    const float *bd = L->e_down_b ? L->e_down_b + (size_t)e * dim : NULL;
    CELLM_TRY(cellm_cuda_mm(c, &L->e_down[e], act, I, m, c->moe_y, dim, bd, err));
    cellm_cuda_prof_mark(c, PH_DOWN);
    return CELLM_OK;
}

enum cellm_status cellm_cuda_moe(struct cu_ctx *c, const struct cu_layer *L, const float *x, int n,
                                 float *out, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int E = cfg->n_experts, K = cfg->n_experts_used, dim = cfg->dim;
    CELLM_TRY(cellm_cuda_mm(c, &L->router, x, dim, n, c->router, E, L->router_b, err));
    const int l4 = cfg->router == CELLM_ROUTER_SIGMOID_INPUT;
    if (cfg->router == CELLM_ROUTER_SIGMOID_GROUP || l4) {
        /* glm4_moe's grouped router and Llama 4's sigmoid one run on the host with the CPU
         * executor's code (exec/cpu/router.h), so both executors choose alike: the choice
         * comes back to the host for the expert map anyway, and E logits a token are little
         * beside it */
        CU_TRY(cudaMemcpyAsync(c->h_logits, c->router, (size_t)n * E * sizeof(float),
                               cudaMemcpyDeviceToHost, c->st));
        CU_TRY(cudaStreamSynchronize(c->st));
        struct cellm_route_spec spec;
        cellm_route_spec_of(cfg, &c->d->layers[L - c->m->layers], &spec);
        for (int i = 0; i < n; i++)
            cellm_route_token(&spec, c->h_logits + (size_t)i * E, c->h_idx + (size_t)i * K,
                              c->h_w + (size_t)i * K);
        CU_TRY(cudaMemcpyAsync(c->moe_w, c->h_w, (size_t)n * K * sizeof(float),
                               cudaMemcpyHostToDevice, c->st));
        if (l4) /* the sum in expert order reads the choice on the device */
            CU_TRY(cudaMemcpyAsync(c->moe_idx, c->h_idx, (size_t)n * K * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, c->st));
    } else {
        if (cfg->router == CELLM_ROUTER_TOPK_SOFTMAX)
            K_TRY(cellm_cu_moe_route_topk(c->router, NULL, n, E, K, cfg->norm_topk_prob, c->moe_idx,
                                          c->moe_w, c->st));
        else
            K_TRY(cellm_cu_moe_route(c->router, n, E, K, cfg->norm_topk_prob, c->moe_idx, c->moe_w,
                                     c->st));
        CU_TRY(cudaMemcpyAsync(c->h_idx, c->moe_idx, (size_t)n * K * sizeof(int32_t),
                               cudaMemcpyDeviceToHost, c->st));
        CU_TRY(cudaStreamSynchronize(c->st));
    }
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
        if (l4) /* Llama 4: the router score scales the expert's input */
            K_TRY(cellm_cu_gather_rows_scaled(x, map, c->moe_w, K, m, dim, c->moe_x, c->st));
        else
            K_TRY(cellm_cu_gather_rows(x, map, K, m, dim, c->moe_x, c->st));
        if (cfg->swiglu_clamp)
            CELLM_TRY(oss_expert(c, L, e, m, err));
        else
            CELLM_TRY(cellm_cuda_dense_mlp(c, &L->e_gate[e], &L->e_up[e], &L->e_down[e], NULL, NULL,
                                           NULL, c->moe_x, m, c->moe_g, c->moe_u, c->moe_y, err));
        K_TRY(cellm_cu_scatter_rows(c->moe_y, map, m, dim, c->moe_out, c->st));
    }
    if (l4) { /* out = shared(x) + the experts' outputs summed in expert order */
        CELLM_TRY(cellm_cuda_dense_mlp(c, &L->s_gate, &L->s_up, &L->s_down, NULL, NULL, NULL, x, n,
                                       c->gate, c->up, out, err));
        K_TRY(cellm_cu_moe_sum_shared(c->moe_out, c->moe_idx, n, K, dim, out, c->st));
    } else
        K_TRY(cellm_cu_moe_combine(c->moe_out, c->moe_w, n, K, dim, out, c->st));
    if (L->s_gate.fmt != CU_W_NONE && !l4) { /* shared experts (glm4_moe): routed + shared(x) */
        CELLM_TRY(cellm_cuda_dense_mlp(c, &L->s_gate, &L->s_up, &L->s_down, NULL, NULL, NULL, x, n,
                                       c->gate, c->up, c->moe_y, err));
        K_TRY(cellm_cu_add(out, c->moe_y, (int64_t)n * dim, c->st));
    }
    /* the host map (and weights) must outlive the copies above */
    CU_TRY(cudaStreamSynchronize(c->st));
    return CELLM_OK;
}
