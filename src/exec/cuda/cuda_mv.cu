/*
 * cuda_mv.cu: entry points of the fused decode products (kernels in cuda_mv.cuh): which
 * weights they take, argument checks, and the dispatch to the per-format instances.
 */
#include "cuda_mv.cuh"
#include "cuda_mvt.cuh"

extern "C" int cellm_cu_mv_supported(const struct cu_weight *w, int n, int with_norm)
{
    int fmt_ok =
        w->fmt == CU_W_F32 || w->fmt == CU_W_F16 || w->fmt == CU_W_BF16 ||
        (w->fmt == CU_W_AFFINE && (w->bits == 4 || w->bits == 8) && w->group >= 16 &&
         !(w->group & (w->group - 1))) ||
        /* MX: a piece of 16 columns lies in one group of 16 or 32 */
        ((w->fmt == CU_W_MXFP4 || w->fmt == CU_W_MXFP8) && w->group == 32) ||
        (w->fmt == CU_W_NVFP4 && w->group == 16) ||
        /* FP8 blocks: likewise in one block of columns */
        (w->fmt == CU_W_FP8BLK && w->group > 0 && w->group % 16 == 0 && w->block_rows > 0) ||
        /* GPTQ/AWQ in the row layout, read as affine codes: power-of-two groups of
         * whole pieces, 16-bit scales (the bias -s * z' is exact only for those) */
        (w->fmt == CU_W_GPTQ && w->rowmaj && !w->perm && !w->gidx &&
         (w->bits == 4 || w->bits == 8) && w->group >= 16 && !(w->group & (w->group - 1)) &&
         w->cols % w->group == 0 && (w->sdt == CU_S_F16 || w->sdt == CU_S_BF16));
    if (!fmt_ok || n < 1 || w->cols % 16 || w->cols > ((int64_t)1 << 30)) return 0;
    if (with_norm) {
        int nt = n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : n <= 8 ? 8 : 0;
        if (!nt || (int64_t)nt * w->cols * (int64_t)sizeof(float) > MV_SMEM_MAX) return 0;
    }
    return 1;
}

/* The input rows, the norm in front and the activation: what both kernel families take */
template <typename A> static void op_inputs(const struct cu_mv_op *op, A &a)
{
    a.x = op->x;
    a.ldx = op->ldx;
    a.n = op->n;
    a.act = op->act;
    a.norm_kind = op->norm_kind;
    a.norm_w = op->norm_w;
    a.norm_b = op->norm_b;
    a.norm_eps = op->norm_eps;
}

/* The tensor-core path (cuda_mvt.cuh), when it takes the op: 4-bit codes, a power-of-two
 * group of 32 or more, whole steps of spans, aligned rows and scales, B in shared memory. */
static int mvt_try(const struct cu_mv_op *op, int nw, int sms, cudaStream_t st, int *taken)
{
    const struct cu_weight *w = op->w[0];
    *taken = 0;
    if (!op->mma || !op->counter || w->fmt != CU_W_AFFINE || w->bits != 4 || op->n > 2 ||
        w->group < 32 || (w->group & (w->group - 1)) || w->cols >= ((int64_t)1 << 30))
        return 0;
    const int V = w->group >= 128 ? 4 : w->group / 32, U = 8 / V, NT = op->n > 1 ? 2 : 1;
    const int64_t span = 32 * V, nspans = w->cols / span;
    if (w->cols % span || nspans % U || MVT_SMEM(V, NT, nspans, 0) > MVT_SMEM_MAX) return 0;
    struct mvt_kargs a = {};
    int svec = 1, t = 0;
    const int64_t ngr = w->cols / w->group;
    for (int i = 0; i < nw; i++) {
        const struct cu_weight *wi = op->w[i];
        if ((uintptr_t)wi->data % 16 || wi->row_bytes % 16 || wi->rows >= ((int64_t)1 << 30))
            return 0;
        svec = svec && (uintptr_t)wi->scales % 16 == 0 && (uintptr_t)wi->biases % 16 == 0;
        if (wi->tiled != w->tiled) return 0; /* one layout per launch */
        a.w[i] = *wi;
        a.bias[i] = op->bias[i];
        a.tile0[i] = t;
        if (op->epi == CU_EPI_GLU) { /* a tile is 8 rows of gate and the same 8 of up */
            t = (int)((wi->rows + 7) / 8);
            if (i == 0) {
                a.y[0] = op->y[0];
                a.ldy[0] = op->ldy[0];
            }
        } else {
            t += (int)((wi->rows + 15) / 16);
            a.y[i] = op->y[i];
            a.ldy[i] = op->ldy[i];
        }
    }
    for (int i = nw; i < 4; i++)
        a.tile0[i] = t;
    a.ntiles = t;
    op_inputs(op, a);
    a.nspans = (int)nspans;
    for (int q = w->group / (int)span; q > 1; q >>= 1)
        a.gsh++;
    /* a step's scales are one aligned copy: consecutive groups, whole steps per row */
    if (!svec || a.gsh != 0 || ngr % U) return 0;
    a.mask = 0x000F000Fu;
    a.magic = 0x43004300u;
    a.counter = op->counter;
    const int pro = op->norm_kind >= 0;
    const int e = w->s_bf16 ? cu_mvt_bf16(a, V, pro, op->epi, sms, st)
                            : cu_mvt_f16(a, V, pro, op->epi, sms, st);
    *taken = e != MVT_UNAVAILABLE;
    return *taken ? e : 0;
}

extern "C" int cellm_cu_mv(const struct cu_mv_op *op, int sms, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    struct mv_kargs a = {};
    const int nw = op->epi == CU_EPI_GLU ? 2 : op->nw;
    if (nw < 1 || nw > 3 || (op->epi == CU_EPI_ADD && op->norm_kind >= 0) || op->ldx % 4)
        return (int)cudaErrorInvalidValue;
    const struct cu_weight *w = op->w[0];
    for (int i = 0; i < nw; i++) {
        const struct cu_weight *wi = op->w[i];
        if (wi->fmt != w->fmt || wi->cols != w->cols || wi->bits != w->bits ||
            wi->group != w->group || wi->s_bf16 != w->s_bf16 ||
            !cellm_cu_mv_supported(wi, op->n, op->norm_kind >= 0) ||
            (op->epi == CU_EPI_GLU && wi->rows != w->rows))
            return (int)cudaErrorInvalidValue;
        a.w[i] = *wi;
        a.bias[i] = op->bias[i];
        if (op->epi != CU_EPI_GLU || i == 0) {
            a.y[i] = op->y[i];
            a.ldy[i] = op->ldy[i];
        }
    }
    int taken, e = mvt_try(op, nw, sms, st, &taken);
    if (taken) return e;
    op_inputs(op, a);
    a.qold = op->qold;
    a.epi = op->epi;
    a.magic = 0x4B000000u;
    for (int g = w->group / 16; g > 1; g >>= 1)
        a.gshift++;
    a.fb_pow2 = w->group >= 16 && !(w->group & (w->group - 1));
    switch (w->fmt) {
    case CU_W_MXFP4:
        return cu_mv_mxfp4(a, nw, sms, st);
    case CU_W_NVFP4:
        return cu_mv_nvfp4(a, nw, sms, st);
    case CU_W_MXFP8:
        return cu_mv_mxfp8(a, nw, sms, st);
    case CU_W_FP8BLK:
        return cu_mv_fp8blk(a, nw, sms, st);
    case CU_W_GPTQ:
        if (w->bits == 4)
            return w->s_bf16 ? cu_mv_gptq4_bf16(a, nw, sms, st) : cu_mv_gptq4_f16(a, nw, sms, st);
        return w->s_bf16 ? cu_mv_gptq8_bf16(a, nw, sms, st) : cu_mv_gptq8_f16(a, nw, sms, st);
    case CU_W_F32:
        return cu_mv_f32(a, nw, sms, st);
    case CU_W_F16:
        return cu_mv_f16(a, nw, sms, st);
    case CU_W_BF16:
        return cu_mv_bf16(a, nw, sms, st);
    default:
        if (w->bits == 4)
            return w->s_bf16 ? cu_mv_q4_bf16(a, nw, sms, st) : cu_mv_q4_f16(a, nw, sms, st);
        return w->s_bf16 ? cu_mv_q8_bf16(a, nw, sms, st) : cu_mv_q8_f16(a, nw, sms, st);
    }
}
