/*
 * cuda_mvt.cuh: the 4-bit affine decode products (one or two activation rows) on the
 * tensor cores, with the same fused neighbours as cuda_mv.cuh (norm prologue; store,
 * residual-add or gated-activation epilogue).
 *
 * Why: the scalar kernels spend at least four instructions per weight (mask, subtract,
 * dequantize, accumulate) and are issue-bound well below the memory bandwidth. Here a code
 * becomes an exact bf16 integer in one LOP3 and half a subtraction (two codes per
 * instruction), and mma.m16n8k16 does the multiply-accumulate.
 *
 * Numbers. For each row r and group g the kernel computes
 *     s[r][g] * (sum_k q[r][k] * x[k]) + b[r][g] * (sum_k x[k])       (k in group g)
 * which is the dot product of the exactly dequantized weights s*q + b with x, summed in
 * another order (distributivity instead of forming fl(s*q + b) per weight). x is split
 * exactly into three bf16 parts hi + mid + lo (as cellm_cu_split3 does for the BF16
 * GEMMs); codes are integers < 16, exact in bf16; every product q * part is exact in f32
 * and the tensor cores accumulate in f32. The three parts are the first three columns of
 * the mma's B operand (the next three for a second activation row).
 *
 * Layout. A warp's tile is 16 weight rows (8 rows of gate and the same 8 rows of up for
 * the gated epilogue): lane (g = lane/4, t = lane%4) loads V consecutive 32-bit words of
 * rows g and g+8 per "span" of 32*V columns (V = 1, 2, 4 for groups of 32, 64, >= 128),
 * so a span lies in one group. Word v of lane t holds the codes of columns
 * 8*(V*t+v) + 0..7; codes j and j+4 form one bf16x2 register, which the mma reads as two
 * adjacent k slots of that lane. The k order inside an mma is free as long as B uses the
 * same one: the block's prologue writes x's parts into shared memory already in fragment
 * order (and each span's sum of x), so a lane reads its B operand with one 16-byte load.
 *
 * Work: blocks of 8 or 16 warps (MVT_WIDE_WARPS); wk warps (1..16) share a tile and
 * meet in shared memory. They take its steps in turn (warp p steps p, p + wk, ...), so
 * that at any moment they read neighbouring 128-byte pieces of the same rows: DRAM serves
 * a weight stream faster the longer its contiguous runs (bench/cuda_notes.md round 7).
 * The first round of tiles is static (so its first loads go out before
 * griddepcontrol.wait): when it is the only one, every multiprocessor's slots get a block
 * and block b takes tiles [b * ntiles / grid, (b + 1) * ntiles / grid) ("balanced"), so
 * that no multiprocessor has twice the tiles of another. Further rounds are taken from an
 * atomic counter, which the last block to finish resets to zero for the next launch.
 *
 * Loads: a "step" is U = 8/V spans (8 words of each of a lane's two rows, plus the groups'
 * scales and biases, one aligned copy each). Long streams keep the next step in registers
 * while the current one is computed; warps with at most two steps (latency-bound products)
 * use a three-stage cp.async ring in shared memory instead (each lane reads back only what
 * it copied, so no warp barrier is needed). mvt_launch picks; both were measured. Weights
 * stored step-ordered (cu_weight.tiled, cuda_int.h) give each lane its step's 8 words of
 * a row as two 16-byte loads, and the warp's step is one contiguous 2 KB piece.
 */
#ifndef CELLM_EXEC_CUDA_MVT_CUH
#define CELLM_EXEC_CUDA_MVT_CUH

#include "cuda_mv.cuh"

/* Warps per block: 8 (two blocks per SM), or 16 (one block per SM, so the SM pays the
 * prologue once) for register-path products that fill at least half the SMs in one round
 * (mvt_launch): 8B q4 384.2-384.3 -> 395.5-399.2 tok/s, same call. Not with the ring, nor
 * for a product of few tiles, which would use half as many SMs (Qwen3-0.6B q4 lost 4% with
 * 16 everywhere: 1276-1279 -> 1224-1229; bench/cuda_notes.md round 8). */
#define MVT_WARPS 8
#define MVT_WIDE_WARPS 16
#define MVT_SMEM_MAX (200 << 10)
#define MVT_STAGES 3 /* steps of a warp's loads in flight: the one computed and two more */

/* bytes of one lane's step in the ring: V words of 2 rows for U = 8 / V spans, then the
 * scales and the biases of both rows (U 16-bit values each) */
#define MVT_LANE_BYTES(V) (64 + 8 * (8 / (V)))
/* dynamic shared memory: B fragments, span sums, the warps' rings (RING only) */
#define MVT_SMEM(V, NT, nspans, RING)                                                              \
    ((size_t)(nspans)*192 * (V) * (NT) + ((size_t)(NT) * (nspans)*4 + 15) / 16 * 16 +              \
     ((RING) ? (size_t)MVT_WARPS * MVT_STAGES * 32 * MVT_LANE_BYTES(V) : 0))

struct mvt_kargs {
    struct cu_weight w[3];
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    int tile0[4]; /* first tile of each weight; tile0[nw] = all tiles */
    int ntiles;
    const float *x;
    int64_t ldx;
    int n, act, norm_kind;
    const float *norm_w, *norm_b;
    float norm_eps;
    int nspans, gsh;      /* spans per row; log2(group / span), the span's group is span >> gsh */
    int wk, per;          /* warps per tile; most spans per warp (a multiple of the step) */
    int balanced;         /* one round, block b takes tiles [b, b + 1) * ntiles / grid */
    uint32_t mask, magic; /* 0x000F000F and 0x43004300: in registers, so one LOP3 per pair */
    int *counter;         /* [2]: next tile, finished blocks; zero between launches */
};

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
static __device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1,
                                                uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* codes j and j+4 of a word (already shifted down by 4j) as the bf16 pair (q_j, q_j+4):
 * OR-ing a code into the mantissa of 128 gives 128 + q, and the subtraction is exact */
static __device__ __forceinline__ uint32_t q4pair(uint32_t w, uint32_t mask, uint32_t magic)
{
    uint32_t v = (w & mask) | magic, r;
    asm("sub.rn.bf16x2 %0, %1, %2;" : "=r"(r) : "r"(v), "r"(magic));
    return r;
}

#endif

/* a = hi + mid + lo exactly, and b likewise (each residual is exact in f32; three bf16
 * parts hold 24 bits), each part as the bf16x2 word (a low, b high): one conversion per
 * pair and part (cvt.rn.bf16x2.f32, the same rounding as one value at a time). Fewer
 * instructions matter here: the prologue runs in every block, between
 * griddepcontrol.wait and the product. */
static __device__ __forceinline__ void split3x2(float a, float b, uint32_t &hi, uint32_t &mid,
                                                uint32_t &lo)
{
    auto pack = [](float lo16, float hi16) {
        const __nv_bfloat162 p = __floats2bfloat162_rn(lo16, hi16);
        return *(const uint32_t *)&p;
    };
    hi = pack(a, b);
    float ra = __fsub_rn(a, __uint_as_float(hi << 16));
    float rb = __fsub_rn(b, __uint_as_float(hi & 0xffff0000u));
    mid = pack(ra, rb);
    ra = __fsub_rn(ra, __uint_as_float(mid << 16));
    rb = __fsub_rn(rb, __uint_as_float(mid & 0xffff0000u));
    lo = pack(ra, rb);
}

/* the norm's weights and biases of octet o (columns 8o..8o+7), as two 16-byte loads each;
 * zeros where there are none */
static __device__ __forceinline__ void mvt_norm_w(const struct mvt_kargs &a, int o, float (&nw)[8],
                                                  float (&nb)[8])
{
    const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
    const bool hw = a.norm_w != NULL, hb = a.norm_b != NULL;
    const float4 w0 = hw ? ((const float4 *)(a.norm_w + 8 * o))[0] : z,
                 w1 = hw ? ((const float4 *)(a.norm_w + 8 * o))[1] : z,
                 b0 = hb ? ((const float4 *)(a.norm_b + 8 * o))[0] : z,
                 b1 = hb ? ((const float4 *)(a.norm_b + 8 * o))[1] : z;
    nw[0] = w0.x, nw[1] = w0.y, nw[2] = w0.z, nw[3] = w0.w;
    nw[4] = w1.x, nw[5] = w1.y, nw[6] = w1.z, nw[7] = w1.w;
    nb[0] = b0.x, nb[1] = b0.y, nb[2] = b0.z, nb[3] = b0.w;
    nb[4] = b1.x, nb[5] = b1.y, nb[6] = b1.z, nb[7] = b1.w;
}

/* Builds the B fragments of every span (and the spans' sums of x) in shared memory, from
 * the input rows, normalised first when PRO. Octet o (columns 8o..8o+7) is word v of lane
 * t of span o / (4V); its three parts go to the lanes 12*row + 4*part + t.
 *
 * An RMS norm (no mean, no bias) is deferred: the fragments hold x * w, and osc[t] receives
 * row t's 1 / rms, by which the epilogue scales the row's sums. The sum over k of
 * W[k] * (x[k] * r * w[k]) is then formed as r * (sum over k of W[k] * (x[k] * w[k])),
 * the same distributivity as the groups' scales above (the numeric contract lets a dot
 * product sum in any order). What it buys: the statistics no longer come first, so the
 * block does not read x twice with a block-wide reduction in between before its first
 * fragment (bench/cuda_notes.md round 11). Otherwise osc[t] = 1 (an exact no-op). */
template <int V, int NT, int PRO>
static __device__ void mvt_prologue(const struct mvt_kargs &a, uint4 *bfr, float *xsum, double *red,
                                    double *sqr, const float (&pnw)[8], const float (&pnb)[8],
                                    float (&osc)[NT])
{
    constexpr int LB = 12 * NT;
    const int tid = threadIdx.x, K = (int)a.w[0].cols, octs = K / 8;
    const bool defer = PRO && norm_defers(a.norm_kind, a.norm_b != NULL);
    float mean[NT], rs[NT];
    double sq[NT];
#pragma unroll
    for (int t = 0; t < NT; t++) {
        mean[t] = 0.f;
        rs[t] = 1.f;
        osc[t] = 1.f;
        sq[t] = 0;
        if (!PRO || defer || t >= a.n) continue;
        rs[t] = row_norm_stats((const float4 *)(a.x + t * a.ldx), K / 4, a.norm_kind, a.norm_eps,
                               red, NULL, mean[t]);
    }
    const bool hw = a.norm_w != NULL, hb = a.norm_b != NULL;
    const int T = (int)blockDim.x, iters = (octs + T - 1) / T;
    /* the next iteration's x is loaded before this one is converted, so that a thread's
     * loads of a long row overlap (the down product's 14336 columns take 4-7 iterations) */
    float4 nx[NT][2];
    auto ldx = [&](int o, float4(&d)[NT][2]) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            d[t][0] = d[t][1] = make_float4(0.f, 0.f, 0.f, 0.f);
            if (o < octs && t < a.n) {
                const float4 *xp = (const float4 *)(a.x + t * a.ldx + 8 * o);
                d[t][0] = xp[0], d[t][1] = xp[1];
            }
        }
    };
    ldx(tid, nx);
#pragma unroll 1
    for (int it = 0; it < iters; it++) {
        const int o = it * T + tid;
        const bool ok = o < octs;
        const int sp = o / (4 * V), wv = o % (4 * V), lt = wv / V, v = wv % V;
        float4 cx[NT][2];
#pragma unroll
        for (int t = 0; t < NT; t++)
            cx[t][0] = nx[t][0], cx[t][1] = nx[t][1];
        if (it + 1 < iters) ldx(o + T, nx);
        /* the octet's norm weights (and biases); the first octet's came before the wait */
        float nw[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f},
              nb[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        if (PRO && ok) {
            if (it == 0) {
#pragma unroll
                for (int k = 0; k < 8; k++)
                    nw[k] = pnw[k], nb[k] = pnb[k];
            } else {
                mvt_norm_w(a, o, nw, nb);
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float xv[8] = {cx[t][0].x, cx[t][0].y, cx[t][0].z, cx[t][0].w,
                           cx[t][1].x, cx[t][1].y, cx[t][1].z, cx[t][1].w};
            if (PRO && defer) {
                sq[t] += (((double)xv[0] * xv[0] + (double)xv[1] * xv[1]) +
                          ((double)xv[2] * xv[2] + (double)xv[3] * xv[3])) +
                         (((double)xv[4] * xv[4] + (double)xv[5] * xv[5]) +
                          ((double)xv[6] * xv[6] + (double)xv[7] * xv[7]));
#pragma unroll
                for (int k = 0; k < 8; k++) {
                    const float wi = hw ? nw[k] : 0.f;
                    xv[k] = a.norm_kind == 1 ? __fmul_rn(xv[k], __fadd_rn(1.0f, wi))
                                             : __fmul_rn(wi, xv[k]);
                }
            } else if (PRO) {
#pragma unroll
                for (int k = 0; k < 8; k++)
                    xv[k] = norm_out_v(a.norm_kind, xv[k], mean[t], rs[t], hw, nw[k], hb, nb[k]);
            }
            uint32_t hi[4], mid[4], lo[4];
#pragma unroll
            for (int k = 0; k < 4; k++)
                split3x2(xv[k], xv[k + 4], hi[k], mid[k], lo[k]);
            float s = ((xv[0] + xv[1]) + (xv[2] + xv[3])) + ((xv[4] + xv[5]) + (xv[6] + xv[7]));
#pragma unroll
            for (int off = 1; off < 4 * V; off <<= 1)
                s += __shfl_xor_sync(0xffffffffu, s, off);
            if (!ok) continue;
            /* register order of a lane's word: (0,4) (1,5) for the first mma, (2,6) (3,7) */
            uint4 *dst = bfr + ((size_t)sp * V + v) * LB + 12 * t + lt;
            dst[0] = make_uint4(hi[0], hi[1], hi[2], hi[3]);
            dst[4] = make_uint4(mid[0], mid[1], mid[2], mid[3]);
            dst[8] = make_uint4(lo[0], lo[1], lo[2], lo[3]);
            if (wv == 0) xsum[t * a.nspans + sp] = s;
        }
    }
    if (PRO && defer) {
        const int lane = tid & 31, w = tid >> 5, nw = T >> 5;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const double v = warp_sum_d(sq[t]);
            if (lane == 0) sqr[t * 32 + w] = v;
        }
        __syncthreads();
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= a.n) continue;
            double s = 0;
            for (int k = 0; k < nw; k++)
                s += sqr[t * 32 + k];
            osc[t] = norm_rscale((float)(s / (double)K), a.norm_eps);
        }
        return;
    }
    __syncthreads();
}

/* value u of U 16-bit scales packed two per word */
template <int SBF> static __device__ __forceinline__ float mvt_s16(uint32_t w, int u)
{
    if (SBF) return __uint_as_float(u & 1 ? w & 0xffff0000u : w << 16);
    return __half2float(__ushort_as_half((uint16_t)(u & 1 ? w >> 16 : w)));
}

/* asynchronous copies into shared memory (cp.async): N bytes, aligned on both sides */
template <int N> static __device__ __forceinline__ void mvt_cp(void *dst, const void *src)
{
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    if constexpr (N == 16)
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src));
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;" ::"r"(d), "l"(src), "n"(N));
}

/* U consecutive 16-bit values (aligned on 2U bytes), packed two per word */
template <int U>
static __device__ __forceinline__ void mvt_load16(const uint16_t *p, uint32_t (&out)[U / 2])
{
    if constexpr (U == 8) {
        uint4 v = __ldg((const uint4 *)p);
        out[0] = v.x, out[1] = v.y, out[2 % (U / 2)] = v.z, out[3 % (U / 2)] = v.w;
    } else if constexpr (U == 4) {
        uint2 v = __ldg((const uint2 *)p);
        out[0] = v.x, out[1 % (U / 2)] = v.y;
    } else {
        out[0] = __ldg((const uint32_t *)p);
    }
}

/* one step's loads of a lane: V words of rows g and g+8 for U spans, and their groups'
 * scales and biases */
template <int U, int V> struct mvt_step {
    uint32_t w[2][U][V];
    uint32_t s[2][U / 2], b[2][U / 2];
};

/* A multiprocessor's registers hold its blocks (two of 8 warps, or one of 16) at no more
 * than 128 per thread. Unasked, the compiler stays there for all but one instance (group
 * 32, two rows, norm prologue: 176). */
template <int SBF, int V, int NT, int PRO, int EPI, int RING, int W>
static __global__ void __launch_bounds__(32 * W, W == MVT_WARPS ? 2 : 1) k_mvt(const struct mvt_kargs a)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 /* bf16x2 arithmetic; mvt_launch checks */
    constexpr int U = 8 / V, LB = 12 * NT;
    extern __shared__ uint4 bfr[]; /* [nspans][V][LB], then float xsum[NT][nspans] */
    __shared__ double red[W];
    __shared__ double sqr[NT * 32]; /* the deferred norm's sums of squares, per warp */
    __shared__ float partial[W][NT][16];
    __shared__ int next_base;
    float *xsum = (float *)(bfr + (size_t)a.nspans * V * LB);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, lt = lane & 3;
    const int wk = a.wk, part = warp % wk, tpb = W / wk;
    /* this warp's steps of its tile: j = 0 .. nst-1 start at span (part + j * wk) * U */
    const int nsteps_row = a.nspans / U;
    const int nst = part < nsteps_row ? (nsteps_row - part + wk - 1) / wk : 0;
    const int ngr = (int)(a.w[0].cols / a.w[0].group);
    const bool multi = (int64_t)gridDim.x * tpb < a.ntiles;

    /* this warp's ring of MVT_STAGES steps; chunk c (16 bytes) of lane l's step at
     * [slot][c][l], so that a warp's 16-byte reads of one chunk are conflict-free */
    constexpr int NC = MVT_LANE_BYTES(V) / 16, S = MVT_STAGES;
    uint4 *ring = (uint4 *)((char *)xsum + ((size_t)NT * a.nspans * 4 + 15) / 16 * 16) +
                  (size_t)warp * S * NC * 32;
    mvt_step<U, V> buf[2]; /* registers: the step computed and the next (RING: buf[0]) */
    mvt_step<U, V> &st = buf[0];
    const uint32_t *rp[2];
    const uint32_t *tp[2]; /* tiled weights: this lane's 8 words of step 0 of each row half */
    const uint16_t *spp[2], *bpp[2];
    const bool tiled = a.w[0].tiled;
    int64_t row[2];
    int wi = 0;

    /* the rows of tile ti: lane's rows g and g+8 (gate and up rows g for the GLU) */
    auto setup = [&](int ti) {
        if (EPI == CU_EPI_GLU) {
            wi = 0;
            const int64_t r = min((int64_t)ti * 8 + g, a.w[0].rows - 1);
            row[0] = row[1] = (int64_t)ti * 8 + g;
            rp[0] = (const uint32_t *)((const char *)a.w[0].data + r * a.w[0].row_bytes);
            rp[1] = (const uint32_t *)((const char *)a.w[1].data + r * a.w[1].row_bytes);
            /* gate (and up) rows 8ti..8ti+7: half ti % 2 of block ti / 2 */
            const int64_t o = ((int64_t)(ti >> 1) * nsteps_row * 2 + (ti & 1)) * 256 + lane * 8;
            tp[0] = (const uint32_t *)a.w[0].data + o;
            tp[1] = (const uint32_t *)a.w[1].data + o;
            spp[0] = a.w[0].scales + r * ngr, bpp[0] = a.w[0].biases + r * ngr;
            spp[1] = a.w[1].scales + r * ngr, bpp[1] = a.w[1].biases + r * ngr;
        } else {
            wi = ti >= a.tile0[1] ? (ti >= a.tile0[2] ? 2 : 1) : 0;
            const struct cu_weight &w = wi == 0 ? a.w[0] : wi == 1 ? a.w[1] : a.w[2];
            const int lt0 = ti - (wi == 0 ? 0 : wi == 1 ? a.tile0[1] : a.tile0[2]);
#pragma unroll
            for (int s = 0; s < 2; s++) {
                row[s] = (int64_t)lt0 * 16 + g + 8 * s;
                const int64_t r = min(row[s], w.rows - 1);
                rp[s] = (const uint32_t *)((const char *)w.data + r * w.row_bytes);
                tp[s] =
                    (const uint32_t *)w.data + ((int64_t)lt0 * nsteps_row * 2 + s) * 256 + lane * 8;
                spp[s] = w.scales + r * ngr, bpp[s] = w.biases + r * ngr;
            }
        }
    };
    /* without the ring: a step's loads straight into registers */
    auto load = [&](int sp, mvt_step<U, V> &b) {
        if (tiled) { /* the lane's 8 words of each row, contiguous */
#pragma unroll
            for (int r = 0; r < 2; r++) {
#pragma unroll
                for (int k = 0; k < 2; k++) {
                    const uint4 v = __ldg((const uint4 *)(tp[r] + (int64_t)(sp / U) * 512) + k);
                    const uint32_t f[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        b.w[r][(4 * k + e) / V][(4 * k + e) % V] = f[e];
                }
                mvt_load16<U>(spp[r] + sp, b.s[r]);
                mvt_load16<U>(bpp[r] + sp, b.b[r]);
            }
            return;
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const uint32_t *p = rp[r] + (sp + u) * 4 * V + V * lt;
                if constexpr (V == 1) {
                    b.w[r][u][0] = __ldg(p);
                } else if constexpr (V == 2) {
                    uint2 v = __ldg((const uint2 *)p);
                    b.w[r][u][0] = v.x, b.w[r][u][1] = v.y;
                } else {
                    uint4 v = __ldg((const uint4 *)p);
                    b.w[r][u][0] = v.x, b.w[r][u][1 % V] = v.y;
                    b.w[r][u][2 % V] = v.z, b.w[r][u][3 % V] = v.w;
                }
            }
            mvt_load16<U>(spp[r] + sp, b.s[r]);
            mvt_load16<U>(bpp[r] + sp, b.b[r]);
        }
    };
    /* step j of the current tile into slot j % S (an empty group past the last step keeps
     * the group count uniform). Each lane copies only what it reads back itself. */
    auto issue = [&](int j, int nsteps) {
        if (j < nsteps) {
            const int sp = (part + j * wk) * U;
            char *base = (char *)(ring + (size_t)(j % S) * NC * 32 + lane);
            auto at = [&](int off) { return base + (off / 16) * 32 * 16 + off % 16; };
#pragma unroll
            for (int r = 0; r < 2; r++) {
                if (tiled) {
                    const uint32_t *src = tp[r] + (int64_t)(sp / U) * 512;
                    mvt_cp<16>(at(r * 32), src);
                    mvt_cp<16>(at(r * 32 + 16), src + 4);
                } else {
#pragma unroll
                    for (int u = 0; u < U; u++)
                        mvt_cp<4 * V>(at(((r * U + u) * V) * 4), rp[r] + (sp + u) * 4 * V + V * lt);
                }
                mvt_cp<2 * U>(at(64 + (2 * r) * 2 * U), spp[r] + sp);
                mvt_cp<2 * U>(at(64 + (2 * r + 1) * 2 * U), bpp[r] + sp);
            }
        }
        asm volatile("cp.async.commit_group;" ::: "memory");
    };
    /* slot j % S back into registers */
    auto fetch = [&](int j) {
        uint32_t w[NC * 4];
#pragma unroll
        for (int c = 0; c < NC; c++) {
            const uint4 v = ring[((size_t)(j % S) * NC + c) * 32 + lane];
            w[4 * c] = v.x, w[4 * c + 1] = v.y, w[4 * c + 2] = v.z, w[4 * c + 3] = v.w;
        }
#pragma unroll
        for (int r = 0; r < 2; r++) {
#pragma unroll
            for (int u = 0; u < U; u++)
#pragma unroll
                for (int v = 0; v < V; v++)
                    st.w[r][u][v] = w[(r * U + u) * V + v];
#pragma unroll
            for (int k = 0; k < U / 2; k++) {
                st.s[r][k] = w[16 + (2 * r) * (U / 2) + k];
                st.b[r][k] = w[16 + (2 * r + 1) * (U / 2) + k];
            }
        }
    };
    float acc[4], accb[NT][2];
    auto compute = [&](int sp, const mvt_step<U, V> &st) {
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int s = sp + u;
            uint4 bv[V];
#pragma unroll
            for (int v = 0; v < V; v++)
                bv[v] = lane < LB ? bfr[((size_t)s * V + v) * LB + lane] : make_uint4(0, 0, 0, 0);
            float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int v = 0; v < V; v++) {
                const uint32_t w0 = st.w[0][u][v], w1 = st.w[1][u][v];
                /* codes (0,4) (1,5) then (2,6) (3,7) */
                mma_bf16(d, q4pair(w0, a.mask, a.magic), q4pair(w1, a.mask, a.magic),
                         q4pair(w0 >> 4, a.mask, a.magic), q4pair(w1 >> 4, a.mask, a.magic),
                         bv[v].x, bv[v].y);
                mma_bf16(d, q4pair(w0 >> 8, a.mask, a.magic), q4pair(w1 >> 8, a.mask, a.magic),
                         q4pair(w0 >> 12, a.mask, a.magic), q4pair(w1 >> 12, a.mask, a.magic),
                         bv[v].z, bv[v].w);
            }
            const float s0 = mvt_s16<SBF>(st.s[0][u / 2], u), s1 = mvt_s16<SBF>(st.s[1][u / 2], u);
            const float b0 = mvt_s16<SBF>(st.b[0][u / 2], u), b1 = mvt_s16<SBF>(st.b[1][u / 2], u);
            acc[0] = fmaf(s0, d[0], acc[0]);
            acc[1] = fmaf(s0, d[1], acc[1]);
            acc[2] = fmaf(s1, d[2], acc[2]);
            acc[3] = fmaf(s1, d[3], acc[3]);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float xs = xsum[t * a.nspans + s];
                accb[t][0] = fmaf(b0, xs, accb[t][0]);
                accb[t][1] = fmaf(b1, xs, accb[t][1]);
            }
        }
    };

    int base = blockIdx.x * tpb, end = a.ntiles;
    if (a.balanced) {
        base = (int)((int64_t)blockIdx.x * a.ntiles / gridDim.x);
        end = (int)((int64_t)(blockIdx.x + 1) * a.ntiles / gridDim.x);
    }
    if (base >= a.ntiles) return; /* (only when the grid is larger than the work) */
    /* the norm's weights of this thread's first octet are constants, so they are loaded
     * before the wait, off the prologue's path: 8B q4 397.9-399.4 -> 400.4-401.9 tok/s,
     * Qwen3-0.6B q4 even (same call; bench/cuda_notes.md round 9) */
    float pnw[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f},
          pnb[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (PRO && (int)threadIdx.x < (int)(a.w[0].cols / 8)) mvt_norm_w(a, threadIdx.x, pnw, pnb);
    bool preloaded = false;
    if (base + warp / wk < end && nst > 0) {
        setup(base + warp / wk);
        if constexpr (RING) {
            for (int j = 0; j < S - 1; j++)
                issue(j, nst);
        } else {
            load(part * U, buf[0]);
        }
        preloaded = true;
    }
    pdl_wait();
    /* the residual's values in the first tile's rows, read now, so that the epilogue's add
     * does not wait for a load at the very end of the product (only this lane writes them) */
    float res[NT][2];
    bool have_res = false;
    if (EPI == CU_EPI_ADD && preloaded && part == 0 && lt == 0) {
        const struct cu_weight &w = wi == 0 ? a.w[0] : wi == 1 ? a.w[1] : a.w[2];
        const float *y = wi == 0 ? a.y[0] : wi == 1 ? a.y[1] : a.y[2];
        const int64_t ldy = wi == 0 ? a.ldy[0] : wi == 1 ? a.ldy[1] : a.ldy[2];
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int s = 0; s < 2; s++)
                res[t][s] = t < a.n && row[s] < w.rows ? y[t * ldy + row[s]] : 0.f;
        have_res = true;
    }
    float osc[NT]; /* the rows' deferred norm scales (or 1) */
    mvt_prologue<V, NT, PRO>(a, bfr, xsum, red, sqr, pnw, pnb, osc);

#pragma unroll 1
    for (;;) {
        const int ti = base + warp / wk;
        const bool mine = ti < end;
#pragma unroll
        for (int k = 0; k < 4; k++)
            acc[k] = 0.f;
#pragma unroll
        for (int t = 0; t < NT; t++)
            accb[t][0] = accb[t][1] = 0.f;
        if (mine && nst > 0 && RING) {
            if (!preloaded) {
                setup(ti);
                for (int j = 0; j < S - 1; j++)
                    issue(j, nst);
            }
#pragma unroll 1
            for (int j = 0; j < nst; j++) {
                asm volatile("cp.async.wait_group %0;" ::"n"(S - 2) : "memory");
                fetch(j);
                issue(j + S - 1, nst); /* into the slot read one step ago */
                compute((part + j * wk) * U, st);
            }
        } else if (mine && nst > 0) {
            if (!preloaded) {
                setup(ti);
                load(part * U, buf[0]);
            }
            /* two steps per pass: the next step's loads are in flight during the math */
            const int du = wk * U;
#pragma unroll 1
            for (int j = 0; j < nst; j += 2) {
                const int sp = (part + j * wk) * U;
                if (j + 1 < nst) load(sp + du, buf[1]);
                compute(sp, buf[0]);
                if (j + 1 >= nst) break;
                if (j + 2 < nst) load(sp + 2 * du, buf[0]);
                compute(sp + du, buf[1]);
            }
        }
        preloaded = false;
        /* columns 3t..3t+2 of D are row t's parts: lane lt holds columns 2lt and 2lt+1 */
        float tot[NT][2];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int c0 = 2 * lt, c1 = 2 * lt + 1;
            const bool k0 = c0 / 3 == t, k1 = c1 / 3 == t;
            float v0 = (k0 ? acc[0] : 0.f) + (k1 ? acc[1] : 0.f);
            float v1 = (k0 ? acc[2] : 0.f) + (k1 ? acc[3] : 0.f);
            v0 += __shfl_xor_sync(0xffffffffu, v0, 1);
            v1 += __shfl_xor_sync(0xffffffffu, v1, 1);
            v0 += __shfl_xor_sync(0xffffffffu, v0, 2);
            v1 += __shfl_xor_sync(0xffffffffu, v1, 2);
            tot[t][0] = v0 + accb[t][0];
            tot[t][1] = v1 + accb[t][1];
        }
        if (wk > 1) {
            if (lt == 0)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    partial[warp][t][g] = tot[t][0];
                    partial[warp][t][g + 8] = tot[t][1];
                }
            __syncthreads();
            if (part == 0)
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    float v0 = partial[warp][t][g], v1 = partial[warp][t][g + 8];
                    for (int k = 1; k < wk; k++) {
                        v0 += partial[warp + k][t][g];
                        v1 += partial[warp + k][t][g + 8];
                    }
                    tot[t][0] = v0, tot[t][1] = v1;
                }
            __syncthreads();
        }
        if (mine && part == 0 && lt == 0) {
#pragma unroll
            for (int t = 0; t < NT; t++) {
                if (t >= a.n) break;
                if (EPI == CU_EPI_GLU) {
                    const int64_t r = row[0];
                    if (r < a.w[0].rows) {
                        float gt = __fmul_rn(tot[t][0], osc[t]), up = __fmul_rn(tot[t][1], osc[t]);
                        if (a.bias[0]) gt = __fadd_rn(gt, a.bias[0][r]);
                        if (a.bias[1]) up = __fadd_rn(up, a.bias[1][r]);
                        a.y[0][t * a.ldy[0] + r] = glu_act(gt, up, a.act);
                    }
                } else {
                    const struct cu_weight &w = wi == 0 ? a.w[0] : wi == 1 ? a.w[1] : a.w[2];
                    float *y = wi == 0 ? a.y[0] : wi == 1 ? a.y[1] : a.y[2];
                    const int64_t ldy = wi == 0 ? a.ldy[0] : wi == 1 ? a.ldy[1] : a.ldy[2];
                    const float *bias = wi == 0 ? a.bias[0] : wi == 1 ? a.bias[1] : a.bias[2];
#pragma unroll
                    for (int s = 0; s < 2; s++) {
                        const int64_t r = row[s];
                        if (r >= w.rows) continue;
                        const float u = __fmul_rn(tot[t][s], osc[t]);
                        const float o = bias ? __fadd_rn(u, bias[r]) : u;
                        float *dst = y + t * ldy + r;
                        *dst = EPI == CU_EPI_ADD ? __fadd_rn(have_res ? res[t][s] : *dst, o) : o;
                    }
                }
            }
        }
        have_res = false;
        if (!multi) break;
        __syncthreads(); /* everyone has read next_base */
        if (threadIdx.x == 0) next_base = (int)gridDim.x * tpb + atomicAdd(&a.counter[0], tpb);
        __syncthreads();
        base = next_base;
        if (base >= a.ntiles) break;
    }
    if (multi && threadIdx.x == 0) {
        /* every block has taken its last tile before it counts itself finished */
        __threadfence();
        if (atomicAdd(&a.counter[1], 1) == (int)gridDim.x - 1) {
            a.counter[0] = 0;
            a.counter[1] = 0;
        }
    }
#endif
}

/* what mvt_launch returns when this build has no sm_90 code for the device */
#define MVT_UNAVAILABLE (-1)

/* warps per tile, spans per warp and blocks for kernel k (blocks of `warps`) with smem bytes */
static int mvt_plan(const void *k, int warps, size_t smem, int U, int sms, int balance,
                    struct mvt_kargs &a, int64_t &blocks)
{
    if (smem > 48 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k, 32 * warps, smem) !=
            cudaSuccess ||
        per_sm < 1)
        per_sm = 1;
    /* at most two blocks per multiprocessor (one of 16 warps): each block pays the prologue
     * once. Warps per tile: as many as keep every tile in the first round (a second round
     * of a few blocks would double the time) and give each warp at least a whole step. */
    const int64_t cap = (int64_t)sms * (per_sm < 2 ? per_sm : 2);
    a.wk = 1;
    while (a.wk < warps && (int64_t)a.ntiles * a.wk * 2 <= cap * warps && a.nspans >= U * a.wk * 2)
        a.wk *= 2;
    a.per = (a.nspans + a.wk - 1) / a.wk;
    a.per = (a.per + U - 1) / U * U;
    const int tpb = warps / a.wk;
    blocks = (a.ntiles + tpb - 1) / tpb;
    if (blocks > cap) blocks = cap;
    /* one round that leaves slots empty: spread it over all of them (decode 8B q4
     * 326 -> 331 tok/s, same call; not with the ring, where Qwen3-0.6B lost 9%) */
    a.balanced = 0;
    if (balance && blocks < cap && a.ntiles >= cap) {
        blocks = cap;
        a.balanced = 1;
    }
    return 0;
}

/* The register-pipelined kernel, or, when each warp has at most two steps of one
 * activation row of fewer than CU_RING_COLS columns (latency-bound products), the
 * cp.async ring, measured faster there
 * (Qwen3-0.6B shape, 4-bit: 778-801 -> 834-869 tok/s) and slower on long streams
 * (Llama-3.1-8B shape: 313 -> 274). */
template <int SBF, int V, int NT, int PRO, int EPI>
static int mvt_launch(struct mvt_kargs a, int sms, cudaStream_t st)
{
    constexpr int U = 8 / V;
    auto k = k_mvt<SBF, V, NT, PRO, EPI, 0, MVT_WARPS>;
    struct cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, k) != cudaSuccess || fa.binaryVersion < 90)
        return MVT_UNAVAILABLE;
    const struct mvt_kargs a0 = a;
    int64_t blocks = 0;
    size_t smem = MVT_SMEM(V, NT, a.nspans, 0);
    int e = mvt_plan((const void *)k, MVT_WARPS, smem, U, sms, 1, a, blocks);
    if (e) return e;
    /* the ring only for rows shorter than CU_RING_COLS: on the Llama-3.1-8B shape the o
     * product (4096 columns, two steps per warp) is faster from registers (decode
     * 339.7-341.9 tok/s against 335.8-337.2 with the ring, same call; bench/cuda_notes.md
     * round 6), while the Qwen3-0.6B shape's products (1024-3072 columns) keep theirs
     * (1249-1264 against 1190-1213 without) */
    if (NT == 1 && a.per <= 2 * U && a.w[0].cols < CU_RING_COLS &&
        MVT_SMEM(V, NT, a.nspans, 1) <= MVT_SMEM_MAX) {
        auto kr = k_mvt<SBF, V, NT, PRO, EPI, NT == 1, MVT_WARPS>;
        smem = MVT_SMEM(V, NT, a.nspans, 1);
        e = mvt_plan((const void *)kr, MVT_WARPS, smem, U, sms, 0, a, blocks);
        if (e) return e;
        return cu_launch(kr, dim3((unsigned)blocks), dim3(32 * MVT_WARPS), smem, st, a);
    }
    /* one round over at least half the SMs: blocks of 16 warps */
    auto kw = k_mvt<SBF, V, NT, PRO, EPI, 0, MVT_WIDE_WARPS>;
    struct mvt_kargs aw = a0;
    int64_t bw = 0;
    e = mvt_plan((const void *)kw, MVT_WIDE_WARPS, smem, U, sms, 1, aw, bw);
    if (e) return e;
    if (bw * (MVT_WIDE_WARPS / aw.wk) >= aw.ntiles && 2 * bw >= sms)
        return cu_launch(kw, dim3((unsigned)bw), dim3(32 * MVT_WIDE_WARPS), smem, st, aw);
    return cu_launch(k, dim3((unsigned)blocks), dim3(32 * MVT_WARPS), smem, st, a);
}

template <int SBF, int V, int NT>
static int mvt_mode(const struct mvt_kargs &a, int pro, int epi, int sms, cudaStream_t st)
{
    switch (epi) {
    case CU_EPI_STORE:
        return pro ? mvt_launch<SBF, V, NT, 1, CU_EPI_STORE>(a, sms, st)
                   : mvt_launch<SBF, V, NT, 0, CU_EPI_STORE>(a, sms, st);
    case CU_EPI_ADD:
        return mvt_launch<SBF, V, NT, 0, CU_EPI_ADD>(a, sms, st);
    default:
        return pro ? mvt_launch<SBF, V, NT, 1, CU_EPI_GLU>(a, sms, st)
                   : mvt_launch<SBF, V, NT, 0, CU_EPI_GLU>(a, sms, st);
    }
}

template <int SBF>
static int mvt_dispatch(const struct mvt_kargs &a, int V, int pro, int epi, int sms,
                        cudaStream_t st)
{
    const int nt2 = a.n > 1;
    switch (V * 2 + nt2) {
    case 2:
        return mvt_mode<SBF, 1, 1>(a, pro, epi, sms, st);
    case 3:
        return mvt_mode<SBF, 1, 2>(a, pro, epi, sms, st);
    case 4:
        return mvt_mode<SBF, 2, 1>(a, pro, epi, sms, st);
    case 5:
        return mvt_mode<SBF, 2, 2>(a, pro, epi, sms, st);
    case 8:
        return mvt_mode<SBF, 4, 1>(a, pro, epi, sms, st);
    default:
        return mvt_mode<SBF, 4, 2>(a, pro, epi, sms, st);
    }
}

int cu_mvt_f16(const struct mvt_kargs &a, int V, int pro, int epi, int sms, cudaStream_t st);
int cu_mvt_bf16(const struct mvt_kargs &a, int V, int pro, int epi, int sms, cudaStream_t st);

#endif
