/*
 * cuda_exec.h: what the CUDA executor's host files share (private to src/exec/cuda): the
 * per-model and per-context state, the error macros, and the functions one file offers
 * the others. Who owns what:
 *   cuda.c          options, model and context lifetimes, batch buffers, the step (graphs)
 *   cuda_upload.c   the weights' upload into one device arena (per model)
 *   cuda_mm.c       product routing: which kernel takes which weight at which row count
 *   cuda_forward.c  the forward pass: attention, norms, MLP, logits
 *   cuda_prof.c     per-phase timing (cellm_ctx_params.profile)
 *   cuda_kv.c       the paged KV cache (a pool of blocks per context) and the prefix-cache
 *                   blocks
 * Kernel launchers are in cuda_int.h.
 */
#ifndef CELLM_EXEC_CUDA_EXEC_H
#define CELLM_EXEC_CUDA_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "base/blockpool.h"
#include "base/error.h"
#include "cuda_int.h"
#include "exec/exec.h"

#define MAX_ROPE_TABLES 4
#define TILE_FLOATS ((int64_t)16 << 20) /* dequantized tile for the GEMM path: 64 MB */

/* A layer on the device: model.h's tensor table with device types. Vectors (and the
 * per-head norms, concatenated [heads][head_dim]) are widened to f32; matrices keep their
 * stored format; experts are an [n_experts] host array of device weights. */
#define CU_LT_TYPE_VEC float *
#define CU_LT_TYPE_HEADS float *
#define CU_LT_TYPE_MAT struct cu_weight
#define CU_LT_TYPE_EXPERTS struct cu_weight *
#define CU_LT_TYPE_EXPERT_VECS float * /* gpt-oss biases: [n_experts][len] f32 */
/* A state layer's tensors on the device (model/hybrid.h's struct cellm_hyb_layer; vectors
 * widened to f32, the conv weight [channels][kernel]); mixer CELLM_MIXER_ATTN (0) for the
 * other layers. */
struct cu_hyb {
    int mixer;
    struct cu_weight in_proj, in_z, in_b, in_a, out_proj;
    float *conv, *a_log, *dt_bias, *norm;
    struct cu_weight sh_gate, sh_up, sh_down, sh_gate_w;
};

struct cu_layer {
    int moe, rope_table;
    enum cellm_attn attn;
#define CU_LT_FIELD(id, field, kind, ...) CU_LT_TYPE_##kind field;
    CELLM_LAYER_TENSORS(CU_LT_FIELD)
#undef CU_LT_FIELD
    struct cu_hyb hyb;
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
    /* a layer of each table: its longrope long list and attention factor */
    const struct cellm_layer *table_layer[MAX_ROPE_TABLES];
    int gemm_rows; /* batches of at least this many rows use cuBLAS */
    int split3;    /* BF16 weights: exact bf16x3 split on tensor cores */
    int graphs;    /* capture decode steps as CUDA graphs */
    int has_moe;   /* MoE routing syncs with the host: no graphs */
    int fuse;      /* decode: norms, residuals, GLU fused into products */
    int mma;       /* 4-bit decode products on the tensor cores */
    int tc_rows;   /* batches of at least this many rows: tensor-core GEMM (0: never) */
    int fast;      /* fast precision: one bf16 pass in the GEMMs (cuda_mm.c) */
    int tc_bf16;   /* BF16 weights at every row count from tc_rows (else 8 .. gemm_rows - 1) */
    int attn_dec;  /* decode attention: 0 fused, 1 by head grouping, 2 per-head, 3 grouped clusters
                    */
    int attn_pdl;  /* decode attention clusters scheduled early (programmatic dependent launch) */
    int sms;       /* multiprocessors */
    /* 0: the session-13 decode of the formats of docs/formats.md (option qdecode) */
    int qdecode;
    int kv_paged;  /* KV cache in blocks from a per-context pool (else one cache a sequence) */
    int bf16_once; /* BF16 from gemm_rows: the split's parts as one product (option bf16_once) */
    int kv_gb;     /* the pool's budget in GiB (0: from the device's free memory) */
    int kv_blocks; /* test only: the pool's budget in blocks (0: kv_gb) */
    /* sequence state (cuda_state.c): floats per sequence, and each layer's conv window and
     * recurrent states within them ([n_layers], -1 where the layer has none) */
    int64_t st_floats;
    int64_t *st_conv, *st_rec;
};

struct cu_seq {
    float *kv; /* contiguous (option kv_paged=0): [n_layers][2][cap][kv_dim] */
    int64_t cap;
    struct cellm_blocktable tab; /* paged: its blocks (ids into the context's pool) */
    float *st;  /* conv windows and recurrent states (cuda_state.c), NULL until the first row */
    int st_len; /* positions folded into st */
};

/* The paged KV cache of a context (cuda_kv.c): a pool of blocks of CU_KV_BLOCK positions
 * of every layer, made chunk by chunk (one cudaMalloc of pool.step blocks each) up to the
 * budget and never freed before the context; each sequence's block table on the host
 * (ids), as device pointers in pinned memory (ptr) and on the device (dptr), tmax entries
 * a sequence. Kernels find a block through the row's table pointer (cu_row.blocks), which
 * stays put, so captured graphs stay valid as sequences come and go. */
struct cu_kv {
    int paged;
    struct cellm_blockpool pool;
    char **chunks; /* [pool.limit / pool.step + 1] */
    int32_t *ids;  /* host [max_seqs][tmax] */
    float **ptr;   /* pinned host [max_seqs][tmax] */
    float **dptr;  /* device [max_seqs][tmax] */
    int32_t tmax;
};

/* cellm_ctx_params.profile: events between the phases of each step (graphs off), summed per
 * phase for prefill and decode steps, read by cellm_ctx_profile. */
enum { PH_START, PH_EMBED, PH_NORM, PH_QKV, PH_ATTN, PH_O, PH_MLP, PH_DOWN, PH_MOE, PH_HEAD, PH_N };
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
    struct cu_kv kv;
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
    float *h_logits, *h_w;  /* host: the grouped router's logits and weights (cellm_cuda_moe) */
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
    /* the state layers' batch buffers (cuda_state.c, allocated with the rows) */
    float *hy_proj, *hy_proj2, *hy_conv, *hy_core, *hy_z, *hy_b, *hy_a, *hy_qg;
    /* 1 while the state layers' products run: exact even in fast mode (cuda_mm.c), as on
     * the CPU (src/exec/cpu/seqstate.h says why) */
    int exact;
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

static inline int64_t max64(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* ---- cuda_upload.c ----------------------------------------------------------------------- */

/* Offsets of the tensor table's members in struct cu_layer, by CELLM_LT_ id. */
extern const size_t cellm_cu_layer_offset[CELLM_LT_N];

/* Two passes over the same calls: the first (base == NULL) only counts bytes. tile: 4-bit
 * weights of a qualifying shape go up in the step-ordered layout (cuda_int.h), through
 * scratch, a device buffer of UP_SCRATCH bytes (freed after the upload). */
struct uploader {
    char *base;
    size_t off;
    cudaError_t e;
    int tile;
    void *scratch;
    int rowmaj; /* GPTQ/AWQ in the row layout where it applies (cellm_cu_layout) */
};

enum cellm_status cellm_cuda_check_weight(const struct cellm_weight *w, struct cellm_error *err);
enum cellm_status cellm_cuda_upload_all(struct cu_model *m, struct uploader *u);

/* ---- cuda_mm.c --------------------------------------------------------------------------- */

/* Grows a device buffer to need bytes (its old contents are dropped). */
enum cellm_status cellm_cuda_dgrow(void **p, size_t *cap, size_t need, struct cellm_error *err);
int cellm_cuda_tc_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
                     int64_t ldx);
int cellm_cuda_mv_ok(const struct cu_ctx *c, const struct cu_weight *const *ws, int nw, int n,
                     int with_norm);
enum cellm_status cellm_cuda_mv_run(struct cu_ctx *c, struct cu_mv_op *op,
                                    const struct cu_weight *const *ws, float *const *ys,
                                    const int64_t *ld, struct cellm_error *err);
/* y = W x (+ bias) for n rows, through whichever kernel takes them. */
enum cellm_status cellm_cuda_mm(struct cu_ctx *c, const struct cu_weight *w, const float *x,
                                int64_t ldx, int n, float *y, int64_t ldy, const float *bias,
                                struct cellm_error *err);
enum cellm_status cellm_cuda_mm_multi(struct cu_ctx *c, const struct cu_weight *const *ws, int nw,
                                      const float *x, int64_t ldx, int n, float *const *ys,
                                      const int64_t *ldys, struct cellm_error *err);
enum cellm_status cellm_cuda_dense_mlp(struct cu_ctx *c, const struct cu_weight *wg,
                                       const struct cu_weight *wu, const struct cu_weight *wd,
                                       const float *bg, const float *bu, const float *bd,
                                       const float *x, int n, float *gate, float *up, float *out,
                                       struct cellm_error *err);
enum cellm_status cellm_cuda_moe(struct cu_ctx *c, const struct cu_layer *L, const float *x, int n,
                                 float *out, struct cellm_error *err);

/* ---- cuda_forward.c ---------------------------------------------------------------------- */

/* Every kernel of one step, from the embedding to the logits (device); capturable. */
enum cellm_status cellm_cuda_forward(struct cu_ctx *c, int n, int nw, int max_keys,
                                     struct cellm_error *err);

/* ---- cuda_state.c ------------------------------------------------------------------------ */

/* Whether the state layers of cfg are ones this executor builds (LFM2's short convolutions,
 * dense Qwen3.5's Gated DeltaNet), or cfg has none. */
int cellm_cuda_state_family_ok(const struct cellm_config *cfg);
/* At load: the state layout of the model (m->st_*), or a refusal of what the kernels lack. */
enum cellm_status cellm_cuda_state_init(struct cu_model *m, struct cellm_error *err);
void cellm_cuda_state_model_free(struct cu_model *m);
/* With the rows: the state blocks' batch buffers for r rows (free_rows frees them). */
enum cellm_status cellm_cuda_state_rows(struct cu_ctx *c, size_t r, struct cellm_error *err);
void cellm_cuda_state_rows_free(struct cu_ctx *c);
/* Before a step: each row's sequence state (allocated zeroed on its first row) into
 * hr[i].st, and the check that every row continues its sequence's state. */
enum cellm_status cellm_cuda_state_begin(struct cu_ctx *c, const struct cellm_exec_row *rows, int n,
                                         struct cu_row *hr, struct cellm_error *err);
/* After it: the states hold the rows' positions. */
void cellm_cuda_state_end(struct cu_ctx *c, const struct cellm_exec_row *rows, int n);
/* Frees a sequence's state (truncation to 0, the context's end). */
void cellm_cuda_state_clear(struct cu_ctx *c, struct cu_seq *s);
/* Layer l's mixer when it is a state layer: in [n][dim] -> out [n][dim]. */
enum cellm_status cellm_cuda_state_mixer(struct cu_ctx *c, int l, int n, const float *in,
                                         float *out, struct cellm_error *err);

/* ---- cuda_prof.c ------------------------------------------------------------------------- */

void cellm_cuda_prof_mark(struct cu_ctx *c, int ph);
void cellm_cuda_prof_collect(struct cu_ctx *c, int prefill);
void cellm_cuda_profile(void *p, struct cellm_profile *out);

/* ---- cuda_kv.c --------------------------------------------------------------------------- */

/* The context's KV pool (nothing is allocated on the device until a sequence needs it);
 * cache_bytes: the prefix cache's budget, left out of an automatic pool budget. */
enum cellm_status cellm_cuda_kv_init(struct cu_ctx *c, size_t cache_bytes, struct cellm_error *err);
void cellm_cuda_kv_free(struct cu_ctx *c);
/* Grows sequence seq's KV cache to hold need positions (keeping what it holds). */
enum cellm_status cellm_cuda_reserve_seq(struct cu_ctx *c, int seq, int need,
                                         struct cellm_error *err);
/* Forgets positions from on of sequence seq (0: all): paged, its blocks past them go back
 * to the pool; contiguous, from 0 frees the cache. */
void cellm_cuda_seq_release(struct cu_ctx *c, int seq, int from);
/* The cache fields of a row of sequence seq (kv, cap, blocks). */
void cellm_cuda_kv_row(const struct cu_ctx *c, int seq, struct cu_row *r);
size_t cellm_cuda_kv_block_bytes(void *p, int n, int flags);
enum cellm_status cellm_cuda_kv_save(void *p, int seq, int pos, int n, int flags, void **blk,
                                     struct cellm_error *err);
enum cellm_status cellm_cuda_kv_load(void *p, int seq, int pos, int n, int flags, const void *blk,
                                     struct cellm_error *err);
void cellm_cuda_kv_block_free(void *p, void *blk);
int cellm_cuda_kv_window_first(void *p, int seq, int len);

#endif
