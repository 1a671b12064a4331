/*
 * cuda.c: the CUDA executor (NVIDIA GPUs), the driver side: its options, the model and
 * context lifetimes, the batch buffers, and the step (rows and RoPE tables up, the forward
 * pass, captured as a CUDA graph for decode, and the logits or greedy ids back).
 * cuda_exec.h says which file owns the rest (upload, product routing, forward pass,
 * profiling, KV caches).
 *
 * Per model: the weights in one device arena (cuda_upload.c). Per context: a CUDA stream,
 * a cuBLAS handle, batch buffers, and the KV cache, a pool of blocks that the sequences
 * take from and give back (cuda_kv.c).
 *
 * The host computes RoPE's cos/sin for the batch's positions with the CPU's own cosf and
 * sinf, so rotations match the reference bit for bit. MoE routing runs on the GPU, and
 * the expert assignment comes back to the host to group rows per expert (one sync per
 * MoE layer).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "cuda_exec.h"
#include "exec/cpu/posenc.h"
#include "model/hybrid.h"
#include "model/gemma4.h"

_Static_assert(CU_W_F32 == (int)CELLM_W_F32 && CU_W_F16 == (int)CELLM_W_F16 &&
                   CU_W_BF16 == (int)CELLM_W_BF16 && CU_W_AFFINE == (int)CELLM_W_AFFINE,
               "format codes");

/* The device expert array of tensor id (an EXPERTS row of model.h's table) in C. */
static struct cu_weight **cu_experts(struct cu_layer *C, enum cellm_lt id)
{
    return (struct cu_weight **)(void *)((char *)C + cellm_cu_layer_offset[id]);
}

static void cu_model_free(void *p)
{
    struct cu_model *m = p;
    if (!m) return;
    if (m->arena) cudaFree(m->arena);
    if (m->layers) {
        for (int l = 0; l < m->d->cfg.n_layers; l++)
            for (int id = 0; id < CELLM_LT_N; id++)
                if (cellm_layer_tensors[id].kind == CELLM_TK_EXPERTS)
                    cellm_free(*cu_experts(&m->layers[l], (enum cellm_lt)id));
        cellm_free(m->layers);
    }
    cellm_cuda_state_model_free(m);
    cellm_free(m);
}

/* The executor's options (cellm_model_params.exec_options); "test only" keys force one of
 * the paths the default rules choose between, for the GPU conformance modes. */
struct cu_opts {
    int gemm_rows, tc_rows, tc_bf16, graphs, split3, fuse, mma, attn_dec, attn_pdl, tiled, qdecode;
    int kv_paged, kv_gb, kv_blocks, bf16_once, untested;
};

static const struct cellm_opt cu_opt_table[] = {
    {"gemm_rows", CELLM_OPT_INT, 1, 1 << 20, 32, NULL, offsetof(struct cu_opts, gemm_rows),
     "batches of at least this many rows take the prefill path (cuBLAS), fewer the decode "
     "kernels"},
    {"tc_rows", CELLM_OPT_INT, 0, 1 << 20, 3, NULL, offsetof(struct cu_opts, tc_rows),
     "batches of at least this many rows use the tensor-core GEMM where it takes the weights "
     "(0: never); BF16 weights only from 8 to gemm_rows - 1 rows unless tc_bf16"},
    /* below 8 rows the decode kernels were faster, from gemm_rows on cuBLAS's bf16x3
     * (bench/cuda_notes.md round 13) */
    {"tc_bf16", CELLM_OPT_BOOL, 0, 1, 0, NULL, offsetof(struct cu_opts, tc_bf16),
     "test only: BF16 weights take the tensor-core GEMM at every row count from tc_rows"},
    {"graphs", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cu_opts, graphs),
     "capture decode steps as CUDA graphs"},
    {"split3", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cu_opts, split3),
     "BF16 prefill: exact bf16x3 split of the activations on the tensor cores (0: f32 tiles)"},
    {"fuse", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cu_opts, fuse),
     "test only: 0 runs the first-generation kernels (separate norm, GLU and attention)"},
    {"mma", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cu_opts, mma),
     "test only: 0 keeps 4-bit decode products of one or two rows off the tensor cores"},
    {"attn_dec", CELLM_OPT_INT, 0, 3, 1, NULL, offsetof(struct cu_opts, attn_dec),
     "test only: decode attention 0 fused kernel, 1 the measured rule, 2 per-head clusters, "
     "3 grouped clusters"},
    {"attn_pdl", CELLM_OPT_INT, -1, 1, -1, NULL, offsetof(struct cu_opts, attn_pdl),
     "test only: decode attention clusters scheduled early (PDL): -1 the measured rule, 0 off, "
     "1 on"},
    {"tiled", CELLM_OPT_INT, 0, 2, 1, NULL, offsetof(struct cu_opts, tiled),
     "test only: 4-bit codes step-ordered on the device: 0 none, 1 weights of 4096 "
     "columns or more (CU_RING_COLS), 2 every qualifying weight"},
    {"qdecode", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cu_opts, qdecode),
     "test only: 0 keeps the session-13 decode of the formats of docs/formats.md (GPTQ/AWQ "
     "input-major, one lane per row; FP8/MX codes decoded element by element) for comparison"},
    /* off by default until the paged kernels have run on a GPU (written in session 15,
     * when no device could be had; tests/gpu/run.sh's mode paged runs them) */
    {"kv_paged", CELLM_OPT_BOOL, 0, 1, 0, NULL, offsetof(struct cu_opts, kv_paged),
     "KV cache in blocks of 32 positions from a per-context pool (0: one contiguous cache per "
     "sequence, grown and freed with cudaMalloc/cudaFree); --kv-gb sets it"},
    {"kv_gb", CELLM_OPT_INT, 0, 1 << 20, 0, NULL, offsetof(struct cu_opts, kv_gb),
     "the KV pool's budget per context in GiB (0: 90% of the free device memory less 1 GiB and "
     "the prefix cache, at most every sequence at max_position_embeddings); --kv-gb"},
    {"kv_blocks", CELLM_OPT_INT, 0, 1 << 30, 0, NULL, offsetof(struct cu_opts, kv_blocks),
     "test only: the KV pool's budget in blocks of 32 positions (0: kv_gb)"},
    /* off by default until it has run on a GPU, as kv_paged */
    {"bf16_once", CELLM_OPT_BOOL, 0, 1, 0, NULL, offsetof(struct cu_opts, bf16_once),
     "BF16 weights from gemm_rows rows: the three parts of the activations' split as one "
     "cuBLAS product of three times the rows, the weights read once (0: three products)"},
    {"untested", CELLM_OPT_BOOL, 0, 1, 0, NULL, offsetof(struct cu_opts, untested),
     "accept the models whose CUDA kernels have not yet run on a GPU: Mistral 3's query scale, "
     "Llama 4, LFM2 and dense Qwen3.5 (else they are refused by name)"},
};
#define CU_N_OPTS ((int)(sizeof cu_opt_table / sizeof cu_opt_table[0]))

static enum cellm_status cu_model_new(const struct cellm_desc *d,
                                      const struct cellm_model_params *mp, void **out,
                                      struct cellm_error *err)
{
    const struct cellm_config *cfg = &d->cfg;
    struct cu_opts o;
    CELLM_TRY(cellm_opts_parse("cuda executor", cu_opt_table, CU_N_OPTS,
                               mp ? mp->exec_options : NULL, &o, err));
    if (cfg->residual_mult != 1 || cfg->logits_div != 1)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device cuda: residual_multiplier %g / logits_scaling %g (Granite) "
                          "are not implemented by the CUDA executor yet; use --device cpu",
                          cfg->residual_mult, cfg->logits_div);
    if (cfg->qk_norm_full && cfg->qkv_bias)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device cuda: attention_bias with full-width q/k norms (OLMo 2) is not "
                          "implemented by the CUDA executor yet; use --device cpu");
    /* state: cuda_state.c refuses the state layers it lacks */
    if (!o.kv_paged && (o.kv_gb || o.kv_blocks))
        return cellm_errf(err, CELLM_ERR_ARG,
                          "cuda executor: kv_gb=%d / kv_blocks=%d budget the paged KV pool, but "
                          "kv_paged=0 keeps one cache per sequence: set kv_paged=1 (--kv-gb does)",
                          o.kv_gb, o.kv_blocks);
    /* state: cellm_cuda_state_family_ok says which state layers this executor builds */
    const unsigned fresh = CELLM_PIECES_QSCALE | CELLM_PIECES_L4 | CELLM_PIECES_STATE;
    const char *missing =
        cellm_config_missing(cfg, CELLM_PIECES_GPT_OSS | CELLM_PIECES_GROUPED_MOE | fresh);
    if (!missing && !cellm_cuda_state_family_ok(cfg)) missing = cellm_config_state_pieces(cfg);
    if (missing)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: model_type %s needs %s, which the CUDA executor does "
                          "not implement yet; use --device cpu",
                          cfg->model_type, missing);
    /* kernels written when no GPU could be had to run them (session 15): opt-in until the
     * GPU conformance run has passed them */
    missing = cellm_config_missing(cfg, CELLM_PIECES_GPT_OSS | CELLM_PIECES_GROUPED_MOE);
    if (missing && !o.untested)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "cuda executor: model_type %s needs %s, whose CUDA kernels have not "
                          "run on a GPU yet; use --device cpu, or --exec-opt untested=1 to try "
                          "them",
                          cfg->model_type, missing);
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
    CELLM_TRY(cellm_cuda_check_weight(ws[0], err));
    if (d->embed.fmt > CELLM_W_AFFINE) CELLM_TRY(cellm_cuda_check_weight(&d->embed, err));
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        for (int id = 0; id < CELLM_LT_N; id++) {
            enum cellm_tkind k = cellm_layer_tensors[id].kind;
            if (k == CELLM_TK_MAT)
                CELLM_TRY(cellm_cuda_check_weight(cellm_layer_weight(L, (enum cellm_lt)id), err));
            const struct cellm_weight *w =
                k == CELLM_TK_EXPERTS ? cellm_layer_experts(L, (enum cellm_lt)id) : NULL;
            for (int e = 0, parts = cellm_layer_parts(d, L, (enum cellm_lt)id); w && e < parts; e++)
                CELLM_TRY(cellm_cuda_check_weight(&w[e], err));
        }
        const struct cellm_hyb_layer *hy = L->hyb;
        const struct cellm_weight *hw[] = {
            hy ? &hy->in_proj : NULL, hy ? &hy->in_z : NULL,     hy ? &hy->in_b : NULL,
            hy ? &hy->in_a : NULL,    hy ? &hy->out_proj : NULL, hy ? &hy->sh_gate : NULL,
            hy ? &hy->sh_up : NULL,   hy ? &hy->sh_down : NULL,  hy ? &hy->sh_gate_w : NULL};
        for (size_t k = 0; hy && k < sizeof hw / sizeof hw[0]; k++)
            CELLM_TRY(cellm_cuda_check_weight(hw[k], err));
    }
    struct cu_model *m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    enum cellm_status st;
    m->d = d;
    m->gemm_rows = o.gemm_rows;
    m->split3 = o.split3;
    m->graphs = o.graphs;
    m->fuse = o.fuse;
    m->mma = o.mma;
    m->qdecode = o.qdecode;
    m->kv_paged = o.kv_paged;
    m->bf16_once = o.bf16_once;
    m->kv_gb = o.kv_gb;
    m->kv_blocks = o.kv_blocks;
    m->tc_rows = o.tc_rows;
    m->tc_bf16 = o.tc_bf16;
    m->fast = mp && mp->precision == CELLM_PRECISION_FAST;
    m->attn_dec = o.attn_dec;
    /* Early scheduling (PDL) of the decode attention's clusters pays only after a q/k/v
     * product that leaves room beside it: 4-bit weights narrower than CU_RING_COLS, which
     * use the cp.async ring (Qwen3-0.6B 4-bit: 1253-1272 tok/s with it, 1212-1226
     * without). Where the product's blocks fill every SM it costs (Llama-3.1-8B 4-bit
     * 364 against 374-375; 8B BF16 156.4-156.8 against 159.9-160.0; Llama-3.2-1B BF16
     * 811-816 against 829-830; same call, bench/cuda_notes.md rounds 7-8). Launched
     * without PDL the clusters start at once, which exposed the cos/sin staging race
     * fixed by the barrier after pdl_wait (cuda_attn_dec.cu). Option attn_pdl=0/1
     * overrides. */
    const struct cellm_weight *wq0 = cfg->n_layers > 0 ? &d->layers[0].wq : NULL;
    m->attn_pdl = o.attn_pdl >= 0 ? o.attn_pdl
                                  : wq0 && wq0->fmt == CELLM_W_AFFINE && wq0->bits == 4 &&
                                        cfg->dim < CU_RING_COLS;
    m->layers = cellm_calloc((size_t)cfg->n_layers, sizeof *m->layers);
    if (!m->layers) goto nomem;
    if ((st = cellm_cuda_state_init(m, err))) {
        cu_model_free(m);
        return st;
    }
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
            m->table_layer[m->n_tables] = L;
            m->tables[m->n_tables++] = L->inv_freq;
        }
        C->rope_table = t;
        m->has_moe |= L->moe;
        for (int id = 0; id < CELLM_LT_N; id++) {
            int parts = cellm_layer_parts(d, L, (enum cellm_lt)id);
            if (cellm_layer_tensors[id].kind != CELLM_TK_EXPERTS || !parts) continue;
            if (!(*cu_experts(C, (enum cellm_lt)id) =
                      cellm_calloc((size_t)parts, sizeof(struct cu_weight))))
                goto nomem;
        }
    }
    /* 4-bit weights step-ordered: 0 none, 1 of CU_RING_COLS columns or more, 2 all */
    const int tile = o.tiled;
    struct uploader u = {0};
    u.tile = tile;
    u.rowmaj = o.qdecode;
    st = cellm_cuda_upload_all(m, &u);
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
    u = (struct uploader){m->arena, 0, cudaSuccess, tile, NULL, o.qdecode};
    st = cellm_cuda_upload_all(m, &u);
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
    /* the effective options, so that a report of a run (inspect, bench) says which paths
     * it took */
    size_t len = strlen(m->desc);
    if (len + 16 < sizeof m->desc) {
        len += (size_t)snprintf(m->desc + len, sizeof m->desc - len, "; options ");
        cellm_opts_format(cu_opt_table, CU_N_OPTS, &o, m->desc + len, sizeof m->desc - len);
    }
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
    cellm_free(c->h_logits);
    cellm_free(c->h_w);
    c->h_logits = c->h_w = NULL;
    c->rows_cap = 0;
    cellm_cuda_state_rows_free(c);
}

static void cu_ctx_free(void *p)
{
    struct cu_ctx *c = p;
    if (!c) return;
    if (c->st) cudaStreamSynchronize(c->st);
    if (c->prof) {
        struct cu_prof *p = c->prof;
        for (int i = 0; i < p->created; i++)
            cudaEventDestroy(p->ev[i]);
        cellm_free(p);
    }
    cellm_cuda_kv_free(c);
    for (int i = 0; i < c->max_seqs && c->seqs; i++)
        cellm_cuda_state_clear(c, &c->seqs[i]);
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

static enum cellm_status cu_ctx_new(void *dm, const struct cellm_ctx_params *cp, void **out,
                                    struct cellm_error *err)
{
    const int max_seqs = cp->max_seqs;
    struct cu_model *m = dm;
    const struct cellm_config *cfg = &m->d->cfg;
    struct cu_ctx *c = cellm_calloc(1, sizeof *c);
    if (!c) return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
    c->m = m;
    c->d = m->d;
    c->max_seqs = max_seqs;
    if (cp->profile) {
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
    c->max_cols = max64(c->max_cols, cfg->shared_ffn_dim);
    c->max_cols = max64(c->max_cols, cellm_hybrid_max_cols(cfg));
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
    if (!st) st = cellm_cuda_kv_init(c, cp->cache_bytes, err);
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
    cellm_cuda_seq_release(c, seq, from);
    /* a state is never cut back: the engine refuses 0 < from < len (sequence-state.md) */
    if (from == 0 && c->seqs[seq].st) {
        cudaStreamSynchronize(c->st);
        cellm_cuda_state_clear(c, &c->seqs[seq]);
    }
}

static enum cellm_status cu_seq_reserve(void *p, int seq, int n, struct cellm_error *err)
{
    struct cu_ctx *c = p;
    if (seq < 0 || seq >= c->max_seqs)
        return cellm_errf(err, CELLM_ERR_ARG, "sequence %d out of range", seq);
    CU_TRY(cudaSetDevice(c->m->dev));
    return cellm_cuda_reserve_seq(c, seq, n, err);
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
    /* gate and up also hold the shared experts' rows (glm4_moe) */
    size_t ffn = (size_t)max64(max64(cfg->ffn_dim, cfg->shared_ffn_dim), 1), dim = (size_t)cfg->dim;
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
        if (cfg->hybrid) { /* the state layers' in_proj (cuda_state.c) */
            size_t hp =
                cfg->hybrid == CELLM_HYBRID_LFM2
                    ? 3 * dim
                    : 2 * (size_t)cfg->lin_nk * cfg->lin_dk + 2 * (size_t)cfg->lin_nv * cfg->lin_dv;
            if (hp > pr) pr = hp;
        }
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
        /* gpt-oss's interleaved gate_up rows are 2 * mi wide */
        DALLOC(c->moe_g, r * K * mi * (cfg->swiglu_clamp ? 2 : 1));
        DALLOC(c->moe_u, r * K * mi);
        DALLOC(c->moe_y, r * K * dim);
        c->h_idx = cellm_malloc(r * K * sizeof(int32_t));
        c->h_map = cellm_malloc(r * K * sizeof(int32_t));
        if (cfg->router == CELLM_ROUTER_SIGMOID_GROUP ||
            cfg->router == CELLM_ROUTER_SIGMOID_INPUT) {
            c->h_logits = cellm_malloc(r * (size_t)cfg->n_experts * sizeof(float));
            c->h_w = cellm_malloc(r * K * sizeof(float));
            if (!c->h_logits || !c->h_w)
                return cellm_errf(err, CELLM_ERR_NOMEM, "cuda executor: out of memory");
        }
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
    CELLM_TRY(cellm_cuda_state_rows(c, r, err));
    c->rows_cap = (int)r;
    c->gen++;
    return CELLM_OK;
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
            CELLM_TRY(cellm_cuda_dgrow((void **)&c->part, &c->part_cap, need, err));
            c->gen++;
        }
    }
    if (!c->m->graphs || c->prof || c->m->has_moe || n >= c->m->gemm_rows)
        return cellm_cuda_forward(c, n, nw, max_keys, err);
    if (!c->gexec || c->g_n != n || c->g_nw != nw || c->g_nsplit != c->nsplit ||
        c->g_gen != c->gen || c->g_kind != row_kind(c)) {
        if (c->gexec) cudaGraphExecDestroy(c->gexec);
        c->gexec = NULL;
        cudaGraph_t g;
        CU_TRY(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
        enum cellm_status st = cellm_cuda_forward(c, n, nw, max_keys, err);
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
        CELLM_TRY(cellm_cuda_reserve_seq(c, rows[i].seq, rows[i].pos + 1, err));
        if (rows[i].pos + 1 > max_keys) max_keys = rows[i].pos + 1;
    }
    /* rows and RoPE tables, one upload */
    struct cu_row *hr = c->stage;
    int half = cfg->rot_dims / 2;
    size_t tstride = (size_t)c->rows_cap * (size_t)(half + 1) * 2;
    float *hcs = (float *)((char *)c->stage + (size_t)c->rows_cap * sizeof(struct cu_row));
    for (int i = 0; i < n; i++) {
        hr[i] = (struct cu_row){rows[i].token,
                                rows[i].seq,
                                rows[i].pos,
                                rows[i].want_logits != 0,
                                rows[i].want_logits ? nw : -1,
                                0,
                                NULL,
                                0,
                                NULL,
                                NULL};
        cellm_cuda_kv_row(c, rows[i].seq, &hr[i]);
        nw += rows[i].want_logits != 0;
        float pos = (float)rows[i].pos;
        for (int t = 0; t < m->n_tables; t++) {
            float *cs = hcs + (size_t)t * tstride + (size_t)i * half * 2;
            const struct cellm_layer *TL = m->table_layer[t];
            const float *inv = cellm_layer_inv_freq(TL, rows[i].seq_len);
            float attn = TL->rope_attn; /* YaRN/longrope: cos and sin times it, in f32 */
            for (int k = 0; k < half; k++) {
                float angle = inv[k] * pos;
                cs[2 * k] = cosf(angle) * attn;
                cs[2 * k + 1] = sinf(angle) * attn;
            }
            /* the table's last pair per row: the query scale of its layers at this position
             * (Mistral 3, Llama 4's NoPE layers; cu_qkv_args.qs), computed as the CPU does */
            float *qs = hcs + (size_t)t * tstride + (size_t)c->rows_cap * half * 2 + 2 * (size_t)i;
            qs[0] = cellm_query_scale(cfg, TL, rows[i].pos);
            qs[1] = 0;
        }
    }
    CELLM_TRY(cellm_cuda_state_begin(c, rows, n, hr, err));
    CU_TRY(cudaMemcpyAsync(c->rows, hr, (size_t)n * sizeof *hr, cudaMemcpyHostToDevice, c->st));
    CU_TRY(cudaMemcpyAsync(c->cs, hcs, (size_t)m->n_tables * tstride * sizeof(float),
                           cudaMemcpyHostToDevice, c->st));

    cellm_cuda_prof_mark(c, PH_START);
    CELLM_TRY(run_step(c, n, nw, max_keys, err));
    cellm_cuda_state_end(c, rows, n);
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
    cellm_cuda_prof_collect(c, n >= m->gemm_rows);
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

const struct cellm_exec_vt cellm_exec_cuda = {
    .name = "cuda",
    .has_fast = 1,
    .opts = cu_opt_table,
    .n_opts = CU_N_OPTS,
    .model_new = cu_model_new,
    .model_free = cu_model_free,
    .ctx_new = cu_ctx_new,
    .ctx_free = cu_ctx_free,
    .seq_truncate = cu_seq_truncate,
    .eval = cu_eval,
    .eval_argmax = cu_eval_argmax,
    .describe = cu_describe,
    .profile = cellm_cuda_profile,
    .kv_block_bytes = cellm_cuda_kv_block_bytes,
    .kv_save = cellm_cuda_kv_save,
    .kv_load = cellm_cuda_kv_load,
    .kv_block_free = cellm_cuda_kv_block_free,
    .kv_window_first = cellm_cuda_kv_window_first,
    .seq_reserve = cu_seq_reserve,
};
