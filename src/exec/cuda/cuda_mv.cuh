/*
 * cuda_mv.cuh: the decode products (a few activation rows) with their neighbours fused in:
 * optionally the norm that produces their input (prologue) and the residual add or the
 * gated activation that consumes their output (epilogue). They replace, per layer, two
 * norm kernels, the activation kernel and their round trips through global memory.
 *
 * Layout of the work: a warp owns two weight rows ("slots": rows 2g and 2g+1, or row g of
 * gate and of up for the gated epilogue). A row is cut into pieces of 8 (16-bit and f32
 * weights) or 16 (4- and 8-bit codes) columns, and lane l takes pieces l, l+32, ...: the
 * warp's loads of weights and activations are contiguous (coalesced). Each step a lane
 * issues all of its U pieces of both rows at once, so a warp keeps about 4 KB in flight;
 * the first step's loads are issued before the wait on the previous kernel (programmatic
 * dependent launch), since weights depend on nothing computed.
 *
 * Numbers: every weight is the exactly widened stored value (affine: fl(fl(s*q)+b), one
 * fmaf since s*q is exact; codes masked in place as in cuda_matvec.cu; MXFP4/NVFP4/MXFP8:
 * code times scale, exact; FP8 blocks: fl(code * scale), the reference's one rounding;
 * docs/formats.md), products are
 * accumulated in f32 in any order, and the prologue/epilogue reproduce the reference
 * kernels' rounding step by step (norm_out_v, glu_act, __fadd_rn for the residual).
 *
 * With the norm prologue, every block normalises the input rows into shared memory once
 * and then loops over row groups (the grid is a few blocks per SM), so the norm is paid
 * per block, not per row.
 */
#ifndef CELLM_EXEC_CUDA_MV_CUH
#define CELLM_EXEC_CUDA_MV_CUH

#include "cuda_dev.cuh"

#define MV_WARPS 4
#define MV_THREADS (MV_WARPS * 32)
#define MV_SMEM_MAX (64 << 10) /* prologue: input rows in shared memory */

/* The kernels are instantiated per storage format in instances/cuda_mv_*.cu (compiled in parallel);
 * cuda_mv.cu checks and dispatches. */

struct mv_kargs {
    struct cu_weight w[3];
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    const float *x;
    int64_t ldx;
    int n, epi, act, norm_kind;
    int gshift;  /* affine, MX, GPTQ: log2(group / 16), pieces per group as a shift */
    int fb_pow2; /* FP8 blocks: group is a power of two, so gshift finds a piece's block */
    int wg;      /* warps per row group (1, 2 or 4), chosen at launch */
    /* 0x4B000000 (2^23), passed as a parameter so that it sits in a register: masking a
     * code in place is then one LOP3 ((word & mask) | magic) instead of two */
    uint32_t magic;
    const float *norm_w, *norm_b;
    float norm_eps;
    int qold; /* cu_mv_op.qold: FP8/MX codes by the element-wise reference decoding */
};

/* columns per piece, 32-bit words per piece, pieces per lane and step: 16 columns of
 * codes (4-bit: two words; 8-bit: four), 8 of 16-bit or f32 values */
template <int FMT, int BITS> struct mv_piece {
    static constexpr bool Q4 = ((FMT == CU_W_AFFINE || FMT == CU_W_GPTQ) && BITS == 4) ||
                               FMT == CU_W_MXFP4 || FMT == CU_W_NVFP4;
    static constexpr int E = FMT == CU_W_F32 || FMT == CU_W_F16 || FMT == CU_W_BF16 ? 8 : 16;
    static constexpr int NW = FMT == CU_W_F32 ? 8 : Q4 ? 2 : 4;
    static constexpr int U = FMT == CU_W_F32 ? 2 : Q4 ? 8 : 4;
};

/* an FP8 block scale: element g of the block row at p (dtype sdt, CU_S_*) */
static __device__ __forceinline__ float mv_fb_scale(const uint8_t *p, int g, int sdt)
{
    return sdt == CU_S_F32   ? __ldg((const float *)p + g)
           : sdt == CU_S_F16 ? __half2float(__ushort_as_half(__ldg((const uint16_t *)p + g)))
                             : __uint_as_float((uint32_t)__ldg((const uint16_t *)p + g) << 16);
}

template <int SBF> static __device__ __forceinline__ float s16(uint16_t h)
{
    return SBF ? __uint_as_float((uint32_t)h << 16) : __half2float(__ushort_as_half(h));
}

/* the 8 weights of columns [8h, 8h+8) of a piece, widened. FP8/MX codes: with fast, ss[1]
 * is the scale times 2^126 (E2M1) or 2^120 (E4M3), finite, and each code is moved into a
 * float's bits by two or three integer operations (no conversion instructions, which run
 * at a quarter of the rate or less and made these formats compute-bound) so that the float
 * is the code's value times 2^-126 or 2^-120 exactly, subnormal codes included: one
 * multiplication then gives code * scale rounded once, as the reference. */
template <int FMT, int BITS, int NW>
static __device__ __forceinline__ void mv_decode(const uint32_t (&raw)[NW], int h, const float *ss,
                                                 float b, uint32_t magic, bool fast, float (&wv)[8])
{
    if (FMT == CU_W_F32) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            wv[k] = __uint_as_float(raw[k]);
    } else if (FMT == CU_W_BF16) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            wv[2 * k] = __uint_as_float(raw[k] << 16);
            wv[2 * k + 1] = __uint_as_float(raw[k] & 0xffff0000u);
        }
    } else if (FMT == CU_W_F16) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __half22float2(*(const __half2 *)&raw[k]);
            wv[2 * k] = f.x;
            wv[2 * k + 1] = f.y;
        }
    } else if (FMT == CU_W_MXFP4 || FMT == CU_W_NVFP4) {
        /* E2M1 code k at bit 4k: twice its magnitude (an integer, exact), the sign in bit 31,
         * times half the group's scale (ss[0], exact): code * scale exactly */
        const uint32_t w0 = raw[h];
        if (fast) {
            /* code k moved to bits 28-31, then shifted arithmetically by 6: the sign stays in
             * bit 31, the magnitude lands in bits 22-24 (the exponent's low two bits and the
             * mantissa's top one), the code's value times 2^-126 */
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const int32_t v = (int32_t)(k == 7 ? w0 : w0 << (28 - 4 * k));
                wv[k] = __fmul_rn(__uint_as_float((uint32_t)(v >> 6) & 0x81C00000u), ss[1]);
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint32_t c = w0 >> (4 * k);
            const float m = __uint_as_float(__float_as_uint(code_f(e2m1_x2(c))) | ((c & 8u) << 28));
            wv[k] = __fmul_rn(m, ss[0]);
        }
    } else if (FMT == CU_W_MXFP8 || FMT == CU_W_FP8BLK) {
        /* E4M3 code k of the 8 is byte k % 4 of word 2h + k / 4 */
        const uint32_t a0 = raw[2 * h], a1 = raw[2 * h + 1];
        /* a NaN code (0x7f, 0xff) among the 8 takes the reference decoding: (b & 0x7f) + 1
         * reaches bit 7 only for those, without carries between the bytes */
        const uint32_t nan =
            (((a0 & 0x7f7f7f7fu) + 0x01010101u) | ((a1 & 0x7f7f7f7fu) + 0x01010101u)) & 0x80808080u;
        if (fast && !nan) {
            /* code k moved to bits 24-31, then shifted arithmetically by 4: the sign stays in
             * bit 31, exponent and mantissa land in bits 20-26, the code's value times 2^-120 */
#pragma unroll
            for (int k = 0; k < 8; k++) {
                const uint32_t wd = k < 4 ? a0 : a1;
                const int32_t v = (int32_t)(k % 4 == 3 ? wd : wd << (24 - 8 * (k % 4)));
                wv[k] = __fmul_rn(__uint_as_float((uint32_t)(v >> 4) & 0x87F00000u), ss[1]);
            }
            return;
        }
#pragma unroll
        for (int k = 0; k < 8; k++)
            wv[k] = __fmul_rn(cu_e4m3((raw[2 * h + k / 4] >> (8 * (k % 4))) & 255u), ss[0]);
    } else if (BITS == 4) {
        /* code k sits at bit 4k; masked in place, 2^23 + q*2^(4k) is exact for 4k+4 <= 23,
         * and ss[j] = s*2^-4j undoes the scaling exactly. Codes 5..7 are shifted down by
         * 12 first. */
        const uint32_t w0 = raw[h], w1 = w0 >> 12;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint32_t word = k < 5 ? w0 : w1;
            const int sh = k < 5 ? 4 * k : 4 * k - 12;
            const float q = __fsub_rn(__uint_as_float(magic | (word & (15u << sh))), 8388608.0f);
            wv[k] = fmaf(ss[sh / 4], q, b);
        }
    } else { /* 8 bits: codes 0,1 of a word in place, 2,3 after a shift by 16 */
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint32_t word = (k & 2) ? raw[2 * h + k / 4] >> 16 : raw[2 * h + k / 4];
            const int sh = (k & 1) * 8;
            const float q = __fsub_rn(__uint_as_float(magic | (word & (255u << sh))), 8388608.0f);
            wv[k] = fmaf(ss[sh / 8], q, b);
        }
    }
}

/* Normalises the n input rows into xs[NT][cols] (rows >= n are zeros), as k_norm does.
 * Loads are float4 and unrolled so that a thread's loads are in flight together.
 * An RMS norm (no mean, no bias) is deferred as in cuda_mvt.cuh: xs holds x * w and osc[t]
 * receives row t's 1 / rms, by which the epilogue scales the row's sums (one pass over x
 * instead of two with a block-wide reduction between them); otherwise osc[t] stays as the
 * caller set it (1). */
template <int NT>
static __device__ void mv_prologue(const struct mv_kargs &a, int64_t cols, float *xs, double *red,
                                   double (*sqr)[MV_WARPS], float (&osc)[NT])
{
    const int tid = threadIdx.x, c4 = (int)(cols / 4);
    const float4 *nw4 = (const float4 *)a.norm_w, *nb4 = (const float4 *)a.norm_b;
    const bool defer = norm_defers(a.norm_kind, nb4 != NULL);
#pragma unroll 1
    for (int t = 0; t < NT; t++) {
        float4 *o = (float4 *)(xs + t * cols);
        if (t >= a.n) {
            for (int c = tid; c < c4; c += MV_THREADS)
                o[c] = make_float4(0.f, 0.f, 0.f, 0.f);
            continue;
        }
        if (defer) {
            const float4 *x = (const float4 *)(a.x + t * a.ldx);
            const bool hw = nw4 != NULL;
            double q = 0;
#pragma unroll 8
            for (int c = tid; c < c4; c += MV_THREADS) {
                float4 v = x[c];
                const float4 w = hw ? nw4[c] : make_float4(0.f, 0.f, 0.f, 0.f);
                q += ((double)v.x * v.x + (double)v.y * v.y) +
                     ((double)v.z * v.z + (double)v.w * v.w);
                if (a.norm_kind == 1) {
                    v.x = __fmul_rn(v.x, __fadd_rn(1.0f, w.x));
                    v.y = __fmul_rn(v.y, __fadd_rn(1.0f, w.y));
                    v.z = __fmul_rn(v.z, __fadd_rn(1.0f, w.z));
                    v.w = __fmul_rn(v.w, __fadd_rn(1.0f, w.w));
                } else {
                    v.x = __fmul_rn(w.x, v.x), v.y = __fmul_rn(w.y, v.y);
                    v.z = __fmul_rn(w.z, v.z), v.w = __fmul_rn(w.w, v.w);
                }
                o[c] = v;
            }
            q = warp_sum_d(q);
            if ((tid & 31) == 0) sqr[t][tid >> 5] = q;
            continue;
        }
        float mean;
        const float r = row_norm_stats((const float4 *)(a.x + t * a.ldx), c4, a.norm_kind,
                                       a.norm_eps, red, o, mean);
        const bool hw = nw4 != NULL, hb = nb4 != NULL;
#pragma unroll 8
        for (int c = tid; c < c4; c += MV_THREADS) {
            float4 v = o[c], w = hw ? nw4[c] : make_float4(0.f, 0.f, 0.f, 0.f),
                   b = hb ? nb4[c] : make_float4(0.f, 0.f, 0.f, 0.f);
            v.x = norm_out_v(a.norm_kind, v.x, mean, r, hw, w.x, hb, b.x);
            v.y = norm_out_v(a.norm_kind, v.y, mean, r, hw, w.y, hb, b.y);
            v.z = norm_out_v(a.norm_kind, v.z, mean, r, hw, w.z, hb, b.z);
            v.w = norm_out_v(a.norm_kind, v.w, mean, r, hw, w.w, hb, b.w);
            o[c] = v;
        }
    }
    __syncthreads();
    if (!defer) return;
#pragma unroll
    for (int t = 0; t < NT; t++) {
        if (t >= a.n) break;
        double q = 0;
        for (int k = 0; k < MV_WARPS; k++)
            q += sqr[t][k];
        osc[t] = norm_rscale((float)(q / (double)cols), a.norm_eps);
    }
}

template <int FMT, int BITS, int SBF, int NT, int PRO, int EPI>
static __global__ void __launch_bounds__(MV_THREADS) k_mv(const struct mv_kargs a)
{
    typedef mv_piece<FMT, BITS> PC;
    constexpr int E = PC::E, NW = PC::NW, U = PC::U, S = 2;
    extern __shared__ float xs[];
    __shared__ double red[MV_WARPS];
    __shared__ double sqr[NT][MV_WARPS]; /* the deferred norm's sums of squares */
    __shared__ float partial[MV_WARPS][NT][S];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const unsigned wi = EPI == CU_EPI_GLU ? 0 : blockIdx.y;
    /* constant indices only, so that the parameters stay out of local memory */
    const struct cu_weight w0 = wi == 0 ? a.w[0] : wi == 1 ? a.w[1] : a.w[2];
    const struct cu_weight w1 = EPI == CU_EPI_GLU ? a.w[1] : w0;
    float *__restrict__ y = wi == 0 ? a.y[0] : wi == 1 ? a.y[1] : a.y[2];
    const int64_t ldy = wi == 0 ? a.ldy[0] : wi == 1 ? a.ldy[1] : a.ldy[2];
    const float *__restrict__ bias = wi == 0 ? a.bias[0] : wi == 1 ? a.bias[1] : a.bias[2];
    const int64_t rows = w0.rows, cols = w0.cols;
    const int P = (int)(cols / E); /* pieces per row: 32-bit index arithmetic below */
    constexpr bool MX = FMT == CU_W_MXFP4 || FMT == CU_W_NVFP4 || FMT == CU_W_MXFP8;
    constexpr bool FB = FMT == CU_W_FP8BLK;
    constexpr bool GQ = FMT == CU_W_GPTQ; /* the row layout (cu_weight.rowmaj) */
    const int64_t ngr = FMT == CU_W_AFFINE || MX || GQ ? cols / w0.group : 0;
    const int64_t groups = EPI == CU_EPI_GLU ? rows : (rows + 1) / 2;
    /* wg warps share a group, each taking every wg-th chunk of 32 pieces */
    const int wg = a.wg, part = warp % wg, gpb = MV_WARPS / wg;
    const int chunks = (P + 31) / 32;
    const int steps = (chunks + U * wg - 1) / (U * wg);
    const float *__restrict__ xg = PRO ? xs : a.x;
    const int64_t ldx = PRO ? cols : a.ldx;

    uint32_t raw[S][U][NW];
    float sc[S][U], bi[S][U];
    const char *rp[S];
    int64_t rix[S]; /* the slots' rows (tiled 4-bit weights are read word by word) */
    const uint16_t *spp[S], *bpp[S];
    const uint8_t *zpp[S]; /* GPTQ: the row's zeros */
    const uint8_t *spb[S]; /* MX: the row's U8 scales; FP8 blocks: its block row's scales */
    int64_t gb = (int64_t)blockIdx.x * gpb; /* the block's first group this round */
    bool preloaded = false;

#define MV_PIECE(st, u) ((((st)*U + (u)) * wg + part) * 32 + lane)
#define MV_SETUP(g)                                                                                \
    do {                                                                                           \
        for (int s_ = 0; s_ < S; s_++) {                                                           \
            const struct cu_weight &ws_ = s_ == 0 ? w0 : w1;                                       \
            int64_t r_ = EPI == CU_EPI_GLU ? (g) : 2 * (g) + s_;                                   \
            r_ = r_ < rows ? r_ : rows - 1;                                                        \
            rix[s_] = r_;                                                                          \
            rp[s_] = (const char *)ws_.data + r_ * ws_.row_bytes;                                  \
            if (FMT == CU_W_AFFINE) {                                                              \
                spp[s_] = ws_.scales + r_ * ngr;                                                   \
                bpp[s_] = ws_.biases + r_ * ngr;                                                   \
            }                                                                                      \
            if (MX) spb[s_] = (const uint8_t *)ws_.qs + r_ * ngr;                                  \
            if (GQ) {                                                                              \
                spp[s_] = (const uint16_t *)ws_.qs + r_ * ngr;                                     \
                zpp[s_] = ws_.zeros + r_ * ngr;                                                    \
            }                                                                                      \
            if (FB)                                                                                \
                spb[s_] = (const uint8_t *)ws_.qs +                                                \
                          cu_fp8_srow(ws_, r_) * (ws_.sdt == CU_S_F32 ? 4 : 2);                    \
        }                                                                                          \
    } while (0)
#define MV_LOAD(st)                                                                                \
    do {                                                                                           \
        _Pragma("unroll") for (int s_ = 0; s_ < S; s_++)                                           \
        {                                                                                          \
            _Pragma("unroll") for (int u_ = 0; u_ < U; u_++)                                       \
            {                                                                                      \
                const int p_ = MV_PIECE(st, u_);                                                   \
                const bool ok_ = p_ < P;                                                           \
                const struct cu_weight &wt_ = s_ == 0 ? w0 : w1;                                   \
                if (NW == 2 && wt_.tiled) {                                                        \
                    raw[s_][u_][0] = ok_ ? cu_q4_load(wt_, rix[s_], 2 * p_) : 0u;                  \
                    raw[s_][u_][1] = ok_ ? cu_q4_load(wt_, rix[s_], 2 * p_ + 1) : 0u;              \
                } else if (NW == 2) {                                                              \
                    uint2 v_ = ok_ ? __ldg((const uint2 *)rp[s_] + p_) : make_uint2(0, 0);         \
                    raw[s_][u_][0] = v_.x, raw[s_][u_][1] = v_.y;                                  \
                } else {                                                                           \
                    _Pragma("unroll") for (int k_ = 0; k_ < NW / 4; k_++)                          \
                    {                                                                              \
                        uint4 v_ = ok_ ? __ldg((const uint4 *)rp[s_] + p_ * (NW / 4) + k_)         \
                                       : make_uint4(0, 0, 0, 0);                                   \
                        raw[s_][u_][4 * k_] = v_.x, raw[s_][u_][4 * k_ + 1] = v_.y;                \
                        raw[s_][u_][4 * k_ + 2] = v_.z, raw[s_][u_][4 * k_ + 3] = v_.w;            \
                    }                                                                              \
                }                                                                                  \
                if (FMT == CU_W_AFFINE) {                                                          \
                    const int g_ = ok_ ? p_ >> a.gshift : 0;                                       \
                    sc[s_][u_] = s16<SBF>(__ldg(spp[s_] + g_));                                    \
                    bi[s_][u_] = s16<SBF>(__ldg(bpp[s_] + g_));                                    \
                }                                                                                  \
                if (MX) { /* E2M1 pieces take half the scale (mv_decode), exact */                 \
                    const float m_ =                                                               \
                        cu_mx_scale(FMT, __ldg(spb[s_] + (ok_ ? p_ >> a.gshift : 0)));             \
                    sc[s_][u_] = FMT == CU_W_MXFP8 ? m_ : __fmul_rn(m_, 0.5f);                     \
                }                                                                                  \
                if (FB) /* a division by a run-time value costs ~20 instructions */                \
                    sc[s_][u_] = mv_fb_scale(spb[s_],                                              \
                                             !ok_        ? 0                                       \
                                             : a.fb_pow2 ? p_ >> a.gshift                          \
                                                         : p_ * 16 / wt_.group,                    \
                                             wt_.sdt);                                             \
                if (GQ) { /* the bias -s * (z + zero_one): at most 11 + 9 bits, exact */           \
                    const int g_ = ok_ ? p_ >> a.gshift : 0;                                       \
                    sc[s_][u_] = s16<SBF>(__ldg(spp[s_] + g_));                                    \
                    bi[s_][u_] =                                                                   \
                        __fmul_rn(sc[s_][u_], -(float)((int)__ldg(zpp[s_] + g_) + wt_.zero_one));  \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    } while (0)

    /* a block without rows leaves at once (its norm would be wasted) */
    if (gb >= groups) return;
    /* the first group's first step: loaded before waiting on the previous kernel */
    if (gb + warp / wg < groups) {
        MV_SETUP(gb + warp / wg);
        MV_LOAD(0);
        preloaded = true;
    }
    pdl_wait();
    float osc[NT]; /* the rows' deferred norm scales (or 1) */
#pragma unroll
    for (int t = 0; t < NT; t++)
        osc[t] = 1.f;
    if (PRO) mv_prologue<NT>(a, cols, xs, red, sqr, osc);

        /* every warp of the block goes round together (the partial sums meet in shared memory) */
#pragma unroll 1
    for (; gb < groups; gb += (int64_t)gridDim.x * gpb) {
        const int64_t gi = gb + warp / wg;
        const bool mine = gi < groups;
        float acc[NT][S];
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int s = 0; s < S; s++)
                acc[t][s] = 0.f;
        if (mine) {
            if (!preloaded) MV_SETUP(gi);
#pragma unroll 1
            for (int st = 0; st < steps; st++) {
                if (!preloaded) MV_LOAD(st);
                preloaded = false;
#pragma unroll
                for (int u = 0; u < U; u++) {
                    const int p = MV_PIECE(st, u);
                    if (p >= P) break;
                    float ss[S][5];
                    bool fq[S]; /* FP8/MX: the fast decoding (mv_decode) */
#pragma unroll
                    for (int s = 0; s < S; s++) {
                        fq[s] = false;
                        if (FMT == CU_W_AFFINE || GQ) {
                            ss[s][0] = sc[s][u];
#pragma unroll
                            for (int j = 1; j < (BITS == 4 ? 5 : 2); j++)
                                ss[s][j] = __fmul_rn(
                                    sc[s][u], __uint_as_float((uint32_t)(127 - BITS * j) << 23));
                        } else if (MX || FB) {
                            ss[s][0] = sc[s][u];
                            /* E2M1 pieces hold half the scale */
                            ss[s][1] =
                                __fmul_rn(sc[s][u], FMT == CU_W_MXFP8 || FB ? 0x1p120f : 0x1p127f);
                            fq[s] = !a.qold && fabsf(ss[s][1]) <= 3.40282347e38f;
                        }
                    }
#pragma unroll
                    for (int h = 0; h < E / 8; h++) {
                        float xv[NT][8];
#pragma unroll
                        for (int t = 0; t < NT; t++) {
                            const float4 *xp = (const float4 *)(xg + t * ldx + (p * E + h * 8));
                            float4 v0, v1;
                            if (PRO) {
                                v0 = xp[0], v1 = xp[1];
                            } else {
                                v0 = __ldg(xp), v1 = __ldg(xp + 1);
                            }
                            xv[t][0] = v0.x, xv[t][1] = v0.y, xv[t][2] = v0.z, xv[t][3] = v0.w;
                            xv[t][4] = v1.x, xv[t][5] = v1.y, xv[t][6] = v1.z, xv[t][7] = v1.w;
                        }
#pragma unroll
                        for (int s = 0; s < S; s++) {
                            float wv[8];
                            mv_decode<FMT, BITS, NW>(raw[s][u], h, ss[s], bi[s][u], a.magic, fq[s],
                                                     wv);
#pragma unroll
                            for (int t = 0; t < NT; t++)
#pragma unroll
                                for (int k = 0; k < 8; k++)
                                    acc[t][s] = fmaf(wv[k], xv[t][k], acc[t][s]);
                        }
                    }
                }
            }
        }
        preloaded = false;
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int s = 0; s < S; s++)
                acc[t][s] = warp_sum(acc[t][s]);
        if (wg > 1) {
            if (lane == 0)
#pragma unroll
                for (int t = 0; t < NT; t++)
#pragma unroll
                    for (int s = 0; s < S; s++)
                        partial[warp][t][s] = acc[t][s];
            __syncthreads();
            if (part == 0)
#pragma unroll
                for (int t = 0; t < NT; t++)
#pragma unroll
                    for (int s = 0; s < S; s++) {
                        float v = partial[warp][t][s];
                        for (int k = 1; k < wg; k++)
                            v += partial[warp + k][t][s];
                        acc[t][s] = v;
                    }
            __syncthreads();
        }
        if (!mine || part != 0 || lane != 0) continue;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= a.n) break;
            if (EPI == CU_EPI_GLU) {
                float g = __fmul_rn(acc[t][0], osc[t]), u = __fmul_rn(acc[t][1], osc[t]);
                if (a.bias[0]) g = __fadd_rn(g, a.bias[0][gi]);
                if (a.bias[1]) u = __fadd_rn(u, a.bias[1][gi]);
                y[t * ldy + gi] = glu_act(g, u, a.act);
            } else {
#pragma unroll
                for (int s = 0; s < S; s++) {
                    const int64_t r = 2 * gi + s;
                    if (r >= rows) break;
                    const float v = __fmul_rn(acc[t][s], osc[t]);
                    float o = bias ? __fadd_rn(v, bias[r]) : v;
                    float *dst = y + t * ldy + r;
                    *dst = EPI == CU_EPI_ADD ? __fadd_rn(*dst, o) : o;
                }
            }
        }
    }
#undef MV_PIECE
#undef MV_SETUP
#undef MV_LOAD
}

template <int FMT, int BITS, int SBF, int NT, int PRO, int EPI>
static int mv_launch(const struct mv_kargs &a, int nw, int sms, cudaStream_t st)
{
    auto k = k_mv<FMT, BITS, SBF, NT, PRO, EPI>;
    const int64_t rows = a.w[0].rows;
    int64_t groups = EPI == CU_EPI_GLU ? rows : (rows + 1) / 2;
    int64_t blocks = (groups + MV_WARPS - 1) / MV_WARPS;
    size_t smem = PRO ? (size_t)NT * (size_t)a.w[0].cols * sizeof(float) : 0;
    if (smem > 48 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
    }
    /* warps per group: enough warps for the memory system (about 64 per multiprocessor)
     * when the product has few rows */
    struct mv_kargs b = a;
    int64_t all = groups; /* row groups of every weight of the launch */
    for (int i = 1; i < nw && EPI != CU_EPI_GLU; i++)
        all += (a.w[i].rows + 1) / 2;
    /* each warp keeps at least one full step of loads (U chunks of 32 pieces) */
    const int64_t chunks = (a.w[0].cols / mv_piece<FMT, BITS>::E + 31) / 32;
    b.wg = 1;
    while (b.wg < MV_WARPS && all * b.wg * 2 <= (int64_t)sms * 64 &&
           chunks >= (int64_t)mv_piece<FMT, BITS>::U * b.wg * 2)
        b.wg *= 2;
    const int64_t gpb = MV_WARPS / b.wg;
    blocks = (groups + gpb - 1) / gpb;
    if (PRO) {
        /* with the norm in front: one pass of resident blocks looping over the groups, so
         * that the norm is computed once per block */
        int per_sm = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, MV_THREADS, smem) !=
                cudaSuccess ||
            per_sm < 1)
            per_sm = 1;
        const int64_t resident = (int64_t)sms * per_sm / (EPI == CU_EPI_GLU ? 1 : nw);
        if (blocks > resident) blocks = resident > 0 ? resident : 1;
    }
    return cu_launch(k, dim3((unsigned)blocks, (unsigned)(EPI == CU_EPI_GLU ? 1 : nw)),
                     dim3(MV_THREADS), smem, st, b);
}

template <int FMT, int BITS, int SBF, int PRO, int EPI>
static int mv_nt(struct mv_kargs a, int nw, int sms, cudaStream_t st)
{
    if (PRO) { /* one launch: every row's norm sits in shared memory */
        switch (a.n <= 1 ? 1 : a.n <= 2 ? 2 : a.n <= 4 ? 4 : 8) {
        case 1:
            return mv_launch<FMT, BITS, SBF, 1, PRO, EPI>(a, nw, sms, st);
        case 2:
            return mv_launch<FMT, BITS, SBF, 2, PRO, EPI>(a, nw, sms, st);
        case 4:
            return mv_launch<FMT, BITS, SBF, 4, PRO, EPI>(a, nw, sms, st);
        default:
            return mv_launch<FMT, BITS, SBF, 8, PRO, EPI>(a, nw, sms, st);
        }
    }
    const int n = a.n;
    for (int t0 = 0; t0 < n;) {
        struct mv_kargs b = a;
        int left = n - t0, e;
        b.x += (int64_t)t0 * a.ldx;
        for (int i = 0; i < 3; i++)
            if (b.y[i]) b.y[i] += (int64_t)t0 * a.ldy[i];
        b.n = left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
        switch (b.n) {
        case 8:
            e = mv_launch<FMT, BITS, SBF, 8, PRO, EPI>(b, nw, sms, st);
            break;
        case 4:
            e = mv_launch<FMT, BITS, SBF, 4, PRO, EPI>(b, nw, sms, st);
            break;
        case 2:
            e = mv_launch<FMT, BITS, SBF, 2, PRO, EPI>(b, nw, sms, st);
            break;
        default:
            e = mv_launch<FMT, BITS, SBF, 1, PRO, EPI>(b, nw, sms, st);
            break;
        }
        if (e) return e;
        t0 += b.n;
    }
    return 0;
}

template <int FMT, int BITS, int SBF>
static int mv_mode(const struct mv_kargs &a, int nw, int sms, cudaStream_t st)
{
    const int pro = a.norm_kind >= 0;
    switch (a.epi) {
    case CU_EPI_STORE:
        return pro ? mv_nt<FMT, BITS, SBF, 1, CU_EPI_STORE>(a, nw, sms, st)
                   : mv_nt<FMT, BITS, SBF, 0, CU_EPI_STORE>(a, nw, sms, st);
    case CU_EPI_ADD:
        return mv_nt<FMT, BITS, SBF, 0, CU_EPI_ADD>(a, nw, sms, st);
    default:
        return pro ? mv_nt<FMT, BITS, SBF, 1, CU_EPI_GLU>(a, nw, sms, st)
                   : mv_nt<FMT, BITS, SBF, 0, CU_EPI_GLU>(a, nw, sms, st);
    }
}

/* one per instantiating file */
int cu_mv_f32(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_f16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_q4_f16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_q4_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_q8_f16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_q8_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_mxfp4(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_nvfp4(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_mxfp8(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_fp8blk(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_gptq4_f16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_gptq4_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_gptq8_f16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);
int cu_mv_gptq8_bf16(const struct mv_kargs &a, int nw, int sms, cudaStream_t st);

#endif
