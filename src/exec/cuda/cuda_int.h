/*
 * cuda_int.h: what the CUDA executor's C driver (cuda.c and the files cuda_exec.h lists)
 * and its kernel files (the .cu files here and in instances/) share: the device view of a weight
 * and the launchers, each a plain C function that enqueues one kernel on a stream and returns the
 * launch's cudaError_t as an int.
 *
 * A device weight keeps the stored format: F32/F16/BF16 values, or MLX affine u32 codes
 * with 16-bit scales and biases (bits 2..8, any group that is a multiple of 32), or one of
 * the formats of docs/formats.md in its stored precision (cuda_upload.c says which of them
 * are re-laid out, and why). Vectors (norm weights, biases) are tiny and are widened to
 * f32 at upload.
 */
#ifndef CELLM_EXEC_CUDA_INT_H
#define CELLM_EXEC_CUDA_INT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Storage formats, as enum cellm_wfmt (kept numerically equal, checked in cuda.c). */
enum {
    CU_W_NONE = 0,
    CU_W_F32 = 1,
    CU_W_F16 = 2,
    CU_W_BF16 = 3,
    CU_W_AFFINE = 4,
    CU_W_MXFP4 = 5,  /* E2M1 codes, 2 per byte (low nibble first), E8M0 scales, group 32 */
    CU_W_MXFP8 = 6,  /* E4M3 codes, E8M0 scales, group 32 */
    CU_W_NVFP4 = 7,  /* E2M1 codes, E4M3 scales, group 16 */
    CU_W_FP8BLK = 8, /* E4M3 codes, F32/F16/BF16 scales per [block_rows][group] block */
    CU_W_GPTQ = 9,   /* GPTQ and AWQ alike, in the device layout of cu_weight's GPTQ fields */
    CU_W_AWQ = 10    /* host only: uploaded as CU_W_GPTQ */
};
/* cu_weight.sdt: the dtype of qs */
enum { CU_S_U8 = 0, CU_S_F32 = 1, CU_S_F16 = 2, CU_S_BF16 = 3 };

struct cu_weight {
    int fmt; /* CU_W_* */
    int64_t rows, cols;
    const void *data; /* [rows][row_bytes] on the device */
    int64_t row_bytes;
    int bits, group;        /* affine */
    int s_bf16;             /* affine: scales/biases are BF16 (else F16) */
    const uint16_t *scales; /* [rows][cols/group] */
    const uint16_t *biases;
    /* 4-bit affine only: the codes' words are in step order (cellm_cu_tile_q4), not row
     * order; scales and biases stay [rows][cols/group]. Read them through cu_q4_word. */
    int tiled;
    /* The formats of docs/formats.md (fmt > CU_W_AFFINE); bits and group as above.
     * MXFP4/NVFP4/MXFP8: data is the stored codes [rows][row_bytes], qs the U8 scales
     * [rows][cols / group]. FP8BLK: data the stored E4M3 codes [rows][cols], qs the scale
     * blocks [ceil((r_off + rows) / block_rows)][ceil(cols / group)] of dtype sdt (the
     * block rows this view touches), row r in block (r_off + r) / block_rows.
     * GPTQ (AWQ too): data [cols / (32 / bits)][rows] u32 words packed along the inputs,
     * code of (permuted) input j of row r at bits * (j % (32 / bits)) of word
     * [j / (32 / bits)][r]; zeros u8 [ngroups][rows], the stored zeros (GPTQ v1 files
     * store zero - 1: zero_one is 1 and w = s * (q - z - 1));
     * qs the scales [ngroups][rows] of dtype sdt; gidx the group of each permuted input
     * (NULL: j / group); perm the input at permuted position j and iperm its inverse (both
     * NULL: no permutation). w = s * (q - z - zero_one), exact (docs/formats.md). */
    const void *qs;
    int sdt; /* CU_S_* */
    int block_rows, r_off;
    int ngroups, zero_one;
    const uint8_t *zeros;
    const int32_t *gidx, *perm, *iperm;
    /* GPTQ only: the row layout (cellm_cu_layout with rowmaj, where the groups are j / group
     * and nothing is permuted): data [rows][cols / (32 / bits)] words packed along the
     * inputs as above, row_bytes apart, qs and zeros [rows][ngroups], s_bf16 set for BF16
     * scales. The fused decode kernels (cuda_mv.cuh) read it as they read MLX affine
     * codes, with the bias -s * (z + zero_one) formed per group (exact), since
     * s * (q - z') = s * q + (-s * z'). */
    int rowmaj;
};

/* The step-ordered layout of 4-bit affine codes (what cu_weight.tiled says), for the
 * tensor-core decode products (cuda_mvt.cuh): each block of 16 rows is stored as steps of
 * 256 columns, step s of block t at words [(t * S + s) * 512, +512) with S = cols / 256;
 * inside a step, rows 0-7 then rows 8-15 of the block, 256 words each, as 32 lanes x 8
 * words in the order the products' lanes load them (cu_q4_word has the map). A warp's step
 * is then one contiguous 2 KB read instead of 16 pieces of 128 bytes 2 KB or more apart,
 * which DRAM serves ~6% faster end to end (bench/cuda_notes.md round 7). The words stay
 * the stored ones, only their order changes: the same bytes, the same size.
 * cellm_cu_tile_q4_ok: the shape qualifies (4 bits, group 32, 64 or 128, rows % 16 == 0,
 * cols % 256 == 0). cellm_cu_tile_q4 writes rows [r0, r0 + nr) of a weight, given in row
 * order in src ([nr][cols / 8] words), to their places in dst, the whole weight's words;
 * r0 and nr are multiples of 16 (the order stays inside blocks of 16 rows). */
int cellm_cu_tile_q4_ok(int bits, int group, int64_t rows, int64_t cols);
/* The 4-bit decode products of one activation row read weights of fewer columns through a
 * cp.async ring in shared memory, of this many or more from registers (cuda_mvt.cuh); the
 * executor stores step-ordered only the latter by default (cuda_upload.c). */
#define CU_RING_COLS 4096
int cellm_cu_tile_q4(const void *src, void *dst, int64_t r0, int64_t nr, int64_t cols, int group,
                     void *stream);

/* The device layout of a weight of the formats of docs/formats.md, built on the host
 * (cuda_layout.c) by the upload and by the per-op tests: w has every field but the device
 * pointers; part[i] (bytes[i] long, NULL when absent) is what goes to the device for
 * data, qs, zeros, gidx, perm and iperm, either the checkpoint's own bytes or a buffer
 * of owned[i]. MXFP4/NVFP4/MXFP8: the stored codes and scales. FP8 blocks: the stored
 * codes, and the scale rows of the blocks the view touches. GPTQ and AWQ: re-laid out
 * (cuda_int.h's GPTQ fields): AWQ's output-packed words repacked along the inputs as
 * GPTQ's (one decode kernel for both, coalesced), the zeros unpacked to bytes, a view's rows cut
 * out of the stored matrix, and with a g_idx that is not i / group the inputs permuted so that each
 * group's are contiguous (codes repacked in that order; the kernels permute x). Codes and scales
 * keep their precision. With sizes_only, only w and bytes are filled (nothing is allocated).
 * With rowmaj, a GPTQ/AWQ weight whose groups need no permutation and that the fused
 * kernels take (F16/BF16 scales, groups a power of two of 16 or more dividing the columns)
 * takes the row layout (cu_weight.rowmaj) instead of the input-major one.
 * Returns 0, or -1 when out of memory. cellm_cu_layout_point: w with its device pointers from
 * dev[]. */
enum { CU_P_DATA, CU_P_QS, CU_P_ZEROS, CU_P_GIDX, CU_P_PERM, CU_P_IPERM, CU_P_N };
struct cellm_weight;
struct cu_layout {
    struct cu_weight w;
    const void *part[CU_P_N];
    size_t bytes[CU_P_N];
    void *owned[CU_P_N];
};
int cellm_cu_layout(const struct cellm_weight *w, int sizes_only, int rowmaj, struct cu_layout *l);
void cellm_cu_layout_point(const struct cu_layout *l, void *const *dev, struct cu_weight *out);
void cellm_cu_layout_free(struct cu_layout *l);

/* The paged KV cache (cuda_kv.c): a block holds CU_KV_BLOCK positions of every layer,
 * [n_layers][2][CU_KV_BLOCK][kv_dim], so inside a block the layout is that of a contiguous
 * cache of cap = CU_KV_BLOCK positions. 32 = the prefill kernel's key tile (PF_KT) and the
 * prefix cache's default block: no tile straddles two blocks. */
#define CU_KV_SHIFT 5
#define CU_KV_BLOCK (1 << CU_KV_SHIFT)

/* Per-row data of one eval, on the device. The cache of position p, layer l: keys at
 * base + (l * 2 * cap + p') * kv_dim, values cap * kv_dim further, where base, p' are
 * blocks[p >> CU_KV_SHIFT], p & (CU_KV_BLOCK - 1) (paged; cap = CU_KV_BLOCK) or kv, p (one
 * contiguous cache, blocks NULL). Kernels read it through cu_kv_at (cuda_dev.cuh). */
struct cu_row {
    int32_t token, seq, pos, want;
    int32_t out; /* index among the rows that want logits, -1 if none */
    int32_t pad;
    float *kv;   /* contiguous: the sequence's cache [n_layers][2][cap][kv_dim]; paged: NULL */
    int64_t cap; /* positions in that cache (paged: CU_KV_BLOCK) */
    float *const *blocks; /* paged: the sequence's block table (device), else NULL */
    float *st; /* the sequence's conv/recurrent state (cuda_state.c), NULL without */
};

/* y[t][r] = sum_c w[r][c] x[t][c] (+ bias[r]) for t < n; fused dequantize and multiply. */
int cellm_cu_matvec(const struct cu_weight *w, const float *x, int64_t ldx, int n, float *y,
                    int64_t ldy, const float *bias, void *stream);
/* The same for nw <= 3 weights of one format and width sharing x, in one launch. */
int cellm_cu_matvec_multi(const struct cu_weight *const *ws, int nw, const float *x, int64_t ldx,
                          int n, float *const *ys, const int64_t *ldys, const float *const *biases,
                          void *stream);
/* Decode products (n <= 8 rows is where they pay) of the formats of docs/formats.md
 * (cuda_mvq.cu): y[t] = W x[t] (+ bias) for the weights the fused kernels below do not
 * take (cellm_cu_mv_supported is 0): GPTQ/AWQ through a kernel that reads their
 * input-packed words coalesced, any other through a per-element kernel. */
int cellm_cu_mvq(const struct cu_weight *w, const float *x, int64_t ldx, int n, float *y,
                 int64_t ldy, const float *bias, void *stream);
/* Decode products with fused neighbours (cuda_mv.cu), for F32/F16/BF16, 4/8-bit affine,
 * MXFP4, NVFP4, MXFP8 and FP8 block weights (FP8 blocks whose group is a multiple of 16). With
 * norm_kind >= 0 the n input rows are first normalised (norm_w, norm_b, as cellm_cu_norm without
 * the residual add). The epilogue either stores y = W x (+ bias), adds into it (y += W x (+ bias):
 * the residual), or, for a gate/up pair of weights, stores y[0] = act(gate + bias[0]) * (up +
 * bias[1]). */
enum { CU_EPI_STORE = 0, CU_EPI_ADD = 1, CU_EPI_GLU = 2 };
struct cu_mv_op {
    const struct cu_weight *w[3];
    int nw; /* weights sharing x (1..3); CU_EPI_GLU: 2, gate then up */
    const float *x;
    int64_t ldx;
    int n; /* activation rows */
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    int epi, act;
    int norm_kind; /* -1: x is used as is */
    const float *norm_w, *norm_b;
    float norm_eps;
    /* 4-bit weights, one or two rows: the tensor-core kernels (cuda_mvt.cuh) may take
     * the product when mma is set; they need counter, two ints that are zero between
     * launches (each launch leaves them zero). */
    int mma;
    int *counter;
    /* test only (option qdecode=0): FP8/MX codes decoded element by element as in session
     * 13, for comparison */
    int qold;
};
/* Whether cellm_cu_mv takes this weight for n rows (with the norm prologue or not). */
int cellm_cu_mv_supported(const struct cu_weight *w, int n, int with_norm);
int cellm_cu_mv(const struct cu_mv_op *op, int sms, void *stream);
/* Tensor-core products of three or more activation rows (cuda_gemm.cu): 4- and 8-bit
 * affine (row order or step-ordered) and BF16 weights, read packed once per tile of
 * weight rows and never dequantized to memory; activations split exactly into three bf16
 * parts in the kernel (cuda_gemm.cuh says why the result is an f32 dot product).
 * cellm_cu_gemm_supported: the weight's format and shape qualify, with x rows ldx floats
 * apart. cellm_cu_gemm: ys[i] = ws[i] x (+ bias) for nw <= 3 weights of one format and
 * width; with few tiles the K range is split among blocks whose partials go to part
 * (part_cap floats; a split needs ks * n * the weights' rows of them) and are then summed
 * in a fixed order. */
struct cu_gemm_op {
    const struct cu_weight *w[3];
    int nw;
    const float *x;
    int64_t ldx;
    int n;
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    float *part;
    int64_t part_cap;
    int sms;
    int passes; /* 3: the exact split of x (hi, mid, lo); 1: x rounded to bf16 (fast mode) */
};
#define CU_GEMM_KS_MAX 4      /* most K splits */
#define CU_GEMM_SPLIT_ROWS 64 /* batches that may split K have at most this many rows */
int cellm_cu_gemm_supported(const struct cu_weight *w, int64_t ldx);
int cellm_cu_gemm(const struct cu_gemm_op *op, void *stream);
/* Rows [r0, r0+nr) of w widened to f32: out[nr][cols]. */
int cellm_cu_dequant(const struct cu_weight *w, int64_t r0, int64_t nr, float *out, void *stream);
/* x[n][cols] (row stride ldx) split exactly into three bf16 parts hi+mid+lo, each [n][cols]. */
int cellm_cu_split3(const float *x, int64_t ldx, int n, int64_t cols, uint16_t *hi, uint16_t *mid,
                    uint16_t *lo, void *stream);
/* y[t][r] = (p[t][r] + p[n + t][r]) + p[2n + t][r] for p [3n][rows] (row stride rows): the
 * three parts of a split product summed in the order of three accumulating products. */
int cellm_cu_sum3(const float *p, int64_t rows, int n, float *y, int64_t ldy, void *stream);
/* y[t][r] += bias[r] */
int cellm_cu_add_bias(float *y, int64_t ldy, int n, int64_t m, const float *bias, void *stream);

/* x[i] = embed row of rows[i].token, times scale (when scale != 1). */
int cellm_cu_embed(const struct cu_weight *e, const struct cu_row *rows, int n, float scale,
                   float *x, void *stream);

/* Norms: kind 0 RMS, 1 RMS (1+w), 2 LayerNorm. If add != NULL: x += add first (written
 * back). out row j = norm(x row i) for every row i (or, with rows != NULL, the rows that
 * want logits, at their out index). */
struct cu_norm_args {
    float *x;
    const float *add;
    float *out;
    const float *w, *b;        /* b may be NULL */
    const struct cu_row *rows; /* gather mode when non-NULL */
    int n, dim, kind;
    float eps;
};
int cellm_cu_norm(const struct cu_norm_args *a, void *stream);
/* x = x + y elementwise. */
int cellm_cu_add(float *x, const float *y, int64_t n, void *stream);

/* After the q/k/v projections: biases, q/k norms, RoPE (cos/sin per row), cache write. */
struct cu_qkv_args {
    float *q, *k, *v;                 /* [n][qd], [n][kd], [n][kd] */
    const float *bq, *bk, *bv;        /* may be NULL */
    const float *qn, *kn;             /* shared per-head norm weights [hd] or NULL */
    const float *qn_heads, *kn_heads; /* per-head LayerNorm weights [H][hd], [KVH][hd] or NULL */
    int qk_kind;                      /* norm kind for the shared weights */
    float eps;
    const float *cs; /* [n][rot/2][2] cos, sin */
    const struct cu_row *rows;
    int n, H, KVH, hd, rot, layer;
    /* The positional pieces after the norms, in posenc.c's order (cellm_op_head_pos):
     * nope: no rotation (a NoPE layer); pairs: Llama 4's interleaved RoPE (dims 2j, 2j + 1)
     * instead of rotate-half; l2norm: then Llama 4's weightless q/k norm (eps above; only
     * with the rotation); qs: each query head of row i times qs[2 * i] (Mistral 3's scale by
     * position, Llama 4's temperature on NoPE layers), or NULL. qs lives beside cs on the
     * device and is written with it every step, so a captured graph stays valid. */
    int nope, pairs, l2norm;
    const float *qs;
};
int cellm_cu_qkv_post(const struct cu_qkv_args *a, void *stream);

/* Attention of each row and head over its sequence's cache (keys lo..pos). */
struct cu_attn_args {
    const float *q; /* [n][H*hd] */
    float *out;     /* [n][H*hd] */
    float *part;    /* [n][H][nsplit][hd+2] scratch */
    const struct cu_row *rows;
    int n, H, KVH, hd, layer, window, nsplit, split_keys;
    float scale, softcap;
    /* [H] a learned logit per head that joins each row's softmax denominator only (gpt-oss
     * attention sinks: no value, so the weights sum to less than 1), or NULL */
    const float *sinks;
    /* Llama 4's chunked layers: a row at position p sees the keys from p / chunk * chunk
     * (its own chunk) to p; 0 = none (then window, if set, bounds the keys) */
    int chunk;
};
int cellm_cu_attention(const struct cu_attn_args *a, void *stream);
/* Attention of n rows that are consecutive positions of one sequence (prefill), keys
 * tiled through shared memory. head_dim a multiple of 4 up to 256. */
int cellm_cu_attention_prefill(const struct cu_attn_args *a, void *stream);
/* qkv_post and attention in one kernel, for batches whose rows are of distinct sequences
 * (a row's current key is kept in shared memory, not read back from the cache).
 * counters: n*H ints, zero before the first launch (each launch leaves them zero). */
int cellm_cu_attention_fused(const struct cu_qkv_args *qa, const struct cu_attn_args *a,
                             int *counters, void *stream);

/* The same as thread-block clusters (cuda_attn_dec.cu), one per (row, head), or with
 * grouped set one per (row, kv head) serving its H / KVH <= 8 query heads: the key splits
 * follow the position at run time and merge through distributed shared memory. With pdl
 * the clusters may be scheduled before the kernel in front of them ends (programmatic
 * dependent launch, as every other kernel here), else only after it. */
int cellm_cu_attention_dec_supported(int hd, int rot);
int cellm_cu_attention_dec(const struct cu_qkv_args *qa, const struct cu_attn_args *a, int grouped,
                           int pdl, int sms, void *stream);

/* gate = act(gate + bg) * (up + bu), [n][m]; act 0 silu, 1 gelu tanh, 2 gelu erf. */
int cellm_cu_glu(float *gate, const float *up, int n, int64_t m, const float *bg, const float *bu,
                 int act, void *stream);
/* ids[r] = cellm_argmax(x + r * vocab, vocab) for r < rows (cuda_argmax.cu); pv and pi
 * hold rows * cellm_cu_argmax_scratch() candidates. */
int cellm_cu_argmax_scratch(void);
int cellm_cu_argmax(const float *x, int rows, int64_t vocab, float *pv, int *pi, int32_t *ids,
                    void *stream);
/* x = c * tanh(x / c) */
int cellm_cu_softcap(float *x, int64_t n, float c, void *stream);

/* MoE: router logits [n][E] -> softmax, top-k indices and weights (renormalised if asked). */
int cellm_cu_moe_route(const float *logits, int n, int E, int K, int renorm, int32_t *idx, float *w,
                       void *stream);
/* gpt-oss's router: logits [n][E] (+ bias[E] when not NULL), the top k of them (ties to the
 * lower index), then a softmax over those k only (renormalised if asked). */
int cellm_cu_moe_route_topk(const float *logits, const float *bias, int n, int E, int K, int renorm,
                            int32_t *idx, float *w, void *stream);
/* gpt-oss's clamped SwiGLU of n rows of m features: gate g = min(gate, limit), up
 * u = clamp(up, -limit, limit), out = (u + 1) * (g * sigmoid(g * alpha)), as
 * cellm_op_swiglu_clamp. Feature c of row r reads gate[r * ld + c * stride] and
 * up[r * ld + c * stride] (the interleaved gate_up rows: up = gate + 1, stride 2) and writes
 * out[r * m + c]; out may be gate when stride is 1. */
int cellm_cu_swiglu_clamp(const float *gate, const float *up, int64_t ld, int64_t stride,
                          float *out, int n, int64_t m, float alpha, float limit, void *stream);
/* dst[j] = src[map[j] / K] rows of dim, for j < m. */
int cellm_cu_gather_rows(const float *src, const int32_t *map, int K, int m, int dim, float *dst,
                         void *stream);
/* dst[map[j]] = src[j] rows of dim. */
int cellm_cu_scatter_rows(const float *src, const int32_t *map, int m, int dim, float *dst,
                          void *stream);
/* out[i] = sum_k w[i][k] * y[i][k] (rank order, separately rounded). */
int cellm_cu_moe_combine(const float *y, const float *w, int n, int K, int dim, float *out,
                         void *stream);
/* Llama 4 (cuda_l4.cu): dst[j] = src[map[j] / K] * w[map[j]], each expert's input times
 * its router score. */
int cellm_cu_gather_rows_scaled(const float *src, const int32_t *map, const float *w, int K, int m,
                                int dim, float *dst, void *stream);
/* Llama 4: out[i] += the K rows y[i][k] summed in ascending expert id idx[i][k] (the first
 * taken as is, then added one by one), as the CPU's moe_sum_shared. */
int cellm_cu_moe_sum_shared(const float *y, const int32_t *idx, int n, int K, int dim, float *out,
                            void *stream);

/* ---- sequence state (cuda_state.cu) ------------------------------------------------------
 * The causal depthwise conv of the state layers (docs/forward/sequence-state.md), rows in
 * order, each over its own sequence's window rows[i].st + off ([(K-1)][C], oldest first,
 * updated as the CPU's cellm_cpu_conv_step does). Row i's input per channel is
 * x[i][ch] (times pre[i][ch] when pre is given: LFM2's B * x~); its output, times
 * post[i][ch] when given (LFM2's C), or through SiLU when silu is set, goes to y[i][ch].
 * w: [C][K] f32. K <= CU_CONV_MAX_K. */
#define CU_CONV_MAX_K 8
struct cu_conv_args {
    const float *x, *pre, *post; /* [n] rows ldx apart (pre and post too) */
    int64_t ldx;
    float *y; /* [n] rows ldy apart */
    int64_t ldy;
    const float *w;
    int K;
    int64_t C;
    const struct cu_row *rows;
    int n;
    int64_t off; /* the layer's window within each sequence's state */
    int silu;
};
int cellm_cu_conv(const struct cu_conv_args *a, void *stream);

/* The Gated DeltaNet operator's stages (docs/forward/qwen3-next.md), after its products:
 * GATHER (Qwen3-Next only) splits the grouped projections proj [n][2Kd + 2Vd] and proj2
 * [n][2nV] into conv_in [n][C], z [n][Vd], b and a [n][nV]; then cellm_cu_conv (SiLU) makes
 * conv_out [n][C] = [q | k | v]; QK normalises q and k per key head (l2, q times scale)
 * and turns b into beta = sigmoid(b) and a into the log-decay -exp(a_log) * softplus(a +
 * dt_bias); REC runs the delta rule per value head over the rows in order, each on its
 * sequence's states rows[i].st + off ([nV][dk][dv]), into core [n][Vd]; NORM applies the
 * gated RMSNorm (norm [dv], eps) with silu(z) in place. dv <= 1024. */
enum { CU_GDN_GATHER, CU_GDN_QK, CU_GDN_REC, CU_GDN_NORM };
struct cu_gdn_args {
    const float *proj, *proj2;
    float *conv_in, *conv_out, *z, *b, *a, *core;
    const float *a_log, *dt_bias, *norm;
    const struct cu_row *rows;
    int n, nk, nv, dk, dv;
    int64_t off;
    float scale, eps;
};
int cellm_cu_gdn(const struct cu_gdn_args *a, int stage, void *stream);
/* Gated attention: qg [n][H][2 hd] holds each head's queries then its output gates.
 * apply 0: q [n][H hd] = the queries; apply 1: att [n][H hd] *= sigmoid(the gates). */
int cellm_cu_attn_gate(const float *qg, float *q_or_att, int n, int H, int hd, int apply,
                       void *stream);

#ifdef __cplusplus
}
#endif

#endif
