/*
 * cuda_gemm.cuh: the tensor-core products of three or more activation rows (prefill and
 * batched decode) for 4- and 8-bit MLX affine and BF16 weights: y[t][r] = sum_k W[r][k]
 * x[t][k] (+ bias), with mma.m16n8k16 (bf16 in, f32 accumulate). The instances live in
 * cuda_gemm_*.cu, the entry points in cuda_gemm.cu.
 *
 * Numbers, the same forms as the decode products (cuda_mvt.cuh). x is split exactly into
 * three bf16 parts hi + mid + lo (24 bits); every product of a part with an exact bf16
 * weight is exact in f32, and the tensor cores accumulate in f32, so each output is an
 * f32 dot product of x with the weights in another summation order. Affine codes are
 * exact bf16 integers (4-bit: OR-ed into the mantissa of 128 and 128 subtracted; 8-bit:
 * through an exact f32 and an exact conversion, since 255 needs 8 significant bits); per
 * group the block forms s * sum(q * x) + b * sum(x), the dot product of the exactly
 * dequantized weights s*q + b in another rounding order. BF16 weights are multiplied as
 * they are, three passes against the three parts.
 *
 * Tiles: a block owns GM_BM weight rows (of one or up to three weights sharing x, one
 * after the other) and BN activation rows, and walks K in chunks of GM_BK columns through
 * a GM_STAGES-deep cp.async ring in shared memory: the packed codes (never dequantized to
 * memory) and the f32 activations, which each warp splits into bf16 parts as it builds its
 * B fragments. 8 warps: WM along the weight rows (MT m-tiles of 16 each) and WN along the
 * activation rows (two n-tiles of 8 each).
 *
 * K order. Inside a span of 32V columns (V = 1, 2, 4 words per lane for groups of 32, 64
 * and >= 128; V = 1 for BF16), lane t of a quad holds the V units of 8 columns
 * 8(V t + v) + 0..7; units pair columns j and j + 4 into one bf16x2 register, which the
 * mma reads as two adjacent k slots of that lane, B alike. This is the decode products'
 * order, and the order of the step-ordered 4-bit layout (cu_weight.tiled): a tiled
 * weight's chunk is one 16-byte piece per lane, copied as it is. Row-ordered codes are
 * put in the same lane order in shared memory by the copy.
 *
 * Split K: with few blocks (decode batches), the chunks are divided among gridDim.z
 * blocks, which write partial sums; a second kernel adds them in a fixed order (so a
 * result does not depend on timing) with the bias.
 */
#ifndef CELLM_EXEC_CUDA_GEMM_CUH
#define CELLM_EXEC_CUDA_GEMM_CUH

#include "cuda_dev.cuh"

#define GM_BM 128
#define GM_BK 128
#define GM_THREADS 256
#define GM_STAGES 3
#define GM_KS_MAX CU_GEMM_KS_MAX

enum { GF_Q4 = 0, GF_Q8 = 1, GF_BF16 = 2 };

struct gm_kargs {
    struct cu_weight w[3];
    float *y[3];
    int64_t ldy[3];
    const float *bias[3];
    int tile0[4];    /* first GM_BM tile of each weight; tile0[nw] = all tiles */
    int64_t roff[4]; /* first row of each weight among the partials' rows; roff[nw] = all */
    int nw;
    const float *x;
    int64_t ldx;
    int n;
    int nchunk;  /* GM_BK chunks of K */
    int kunit;   /* chunks per unit of the K split (whole groups) */
    float *part; /* split K: [gridDim.z][n][roff[nw]] */
    uint32_t mask, magic;
    int passes; /* 3 exact; 1 = only the bf16-rounded activations (fast mode) */
};

template <int FMT> struct gm_fmt;
template <> struct gm_fmt<GF_Q4> {
    static constexpr int A_BYTES = GM_BM * GM_BK / 2; /* one 16-byte piece per lane and row half */
};
template <> struct gm_fmt<GF_Q8> {
    static constexpr int A_BYTES = GM_BM * GM_BK;
};
template <> struct gm_fmt<GF_BF16> {
    static constexpr int A_BYTES = GM_BM * GM_BK * 2;
};

static constexpr size_t gm_smem(int fmt, int bn)
{
    return (size_t)GM_STAGES * ((fmt == GF_Q4   ? gm_fmt<GF_Q4>::A_BYTES
                                 : fmt == GF_Q8 ? gm_fmt<GF_Q8>::A_BYTES
                                                : gm_fmt<GF_BF16>::A_BYTES) +
                                (size_t)bn * GM_BK * 4);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
static __device__ __forceinline__ void gm_cp16(void *s, const void *g, bool ok)
{
    const unsigned sa = (unsigned)__cvta_generic_to_shared(s);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sa), "l"(g),
                 "r"(ok ? 16 : 0));
}
template <int SZ> static __device__ __forceinline__ void gm_cp(void *s, const void *g, bool ok)
{
    const unsigned sa = (unsigned)__cvta_generic_to_shared(s);
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;" ::"r"(sa), "l"(g), "n"(SZ),
                 "r"(ok ? SZ : 0));
}
static __device__ __forceinline__ void gm_commit()
{
    asm volatile("cp.async.commit_group;");
}
template <int N> static __device__ __forceinline__ void gm_wait()
{
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
}
#endif

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
static __device__ __forceinline__ void gm_mma(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                              uint32_t a3, uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ uint32_t gm_pack(float lo16, float hi16)
{
    const __nv_bfloat162 p = __floats2bfloat162_rn(lo16, hi16);
    return *(const uint32_t *)&p;
}

/* a = hi + mid + lo exactly, and b likewise, each part as the bf16x2 word (a low, b high) */
static __device__ __forceinline__ void gm_split(float a, float b, uint32_t &hi, uint32_t &mid,
                                                uint32_t &lo)
{
    hi = gm_pack(a, b);
    float ra = __fsub_rn(a, __uint_as_float(hi << 16));
    float rb = __fsub_rn(b, __uint_as_float(hi & 0xffff0000u));
    mid = gm_pack(ra, rb);
    ra = __fsub_rn(ra, __uint_as_float(mid << 16));
    rb = __fsub_rn(rb, __uint_as_float(mid & 0xffff0000u));
    lo = gm_pack(ra, rb);
}

/* byte j of w as an exact f32 (2^23 + q - 2^23) */
static __device__ __forceinline__ float gm_q8f(uint32_t w, uint32_t sel)
{
    return __fsub_rn(__uint_as_float(__byte_perm(w, 0x4B000000u, sel)), 8388608.0f);
}
#endif

/* 16-byte piece p (0..31) of activation row r inside a chunk: a swizzle that keeps the
 * lanes of a quarter warp on distinct banks for every V */
static __device__ __forceinline__ int gm_swz(int p, int r)
{
    return p ^ ((((p >> 3) & 3) << 1) | (r & 1));
}

/* Copies chunk kc of the block's weight rows [r0, r0 + GM_BM) and activation rows
 * [n0, n0 + BN) into one stage; what lies outside the matrices becomes zeros. */
template <int FMT, int BN, int V, int TILED>
static __device__ __forceinline__ void gm_load(const struct gm_kargs &a, const struct cu_weight &w,
                                               int64_t r0, int n0, int kc, char *sa, float *sb)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const int tid = threadIdx.x;
    const int64_t K = w.cols;
    const char *wd = (const char *)w.data;
    if (FMT == GF_Q4 && TILED) {
        const int64_t S = K / 256;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int p = tid + i * GM_THREADS, b16 = p >> 6, h = (p >> 5) & 1, L = p & 31;
            const int64_t t16 = (r0 >> 4) + b16;
            const bool ok = t16 * 16 < w.rows;
            const int64_t word =
                ok ? (((t16 * S + kc / 2) * 2 + h) * 32 + L) * 8 + (kc & 1) * 4 : 0;
            gm_cp16(sa + p * 16, wd + word * 4, ok);
        }
    } else if (FMT == GF_Q4) {
        /* pieces of V words: row r, piece pr (words pr*V.. of the chunk's 16) */
        constexpr int PR = 16 / V;
#pragma unroll
        for (int i = 0; i < 8 / V; i++) {
            const int p = tid + i * GM_THREADS, r = p / PR, pr = p % PR, j = pr * V;
            const int u = j / (4 * V), lt = j % (4 * V) / V;
            const bool ok = r0 + r < w.rows && (int64_t)kc * GM_BK + 8 * j < K;
            const int sw = (((r >> 4) * 2 + ((r >> 3) & 1)) * 32 + (r & 7) * 4 + lt) * 4 + u * V;
            const char *g = ok ? wd + (r0 + r) * w.row_bytes + (int64_t)kc * 64 + j * 4 : wd;
            gm_cp<4 * V>(sa + sw * 4, g, ok);
        }
    } else {
        /* units of 8 columns (8 bytes of 8-bit codes, 16 bytes of BF16) */
        constexpr int UB = FMT == GF_Q8 ? 8 : 16;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int p = tid + i * GM_THREADS, r = p >> 4, uc = p & 15;
            const int u = uc / (4 * V), lt = uc % (4 * V) / V, v = uc % V, iu = u * V + v;
            const int L = (r & 7) * 4 + lt;
            const int phys = FMT == GF_Q8 ? iu ^ ((L >> 2) & 3) : iu ^ ((L >> 1) & 3);
            const bool ok = r0 + r < w.rows && (int64_t)kc * GM_BK + 8 * uc < K;
            const char *g =
                ok ? wd + (r0 + r) * w.row_bytes + ((int64_t)kc * GM_BK + 8 * uc) * UB / 8 : wd;
            char *s = sa + ((((r >> 4) * 2 + ((r >> 3) & 1)) * 32 + L) * 4 + phys) * UB;
            if (UB == 16)
                gm_cp16(s, g, ok);
            else
                gm_cp<8>(s, g, ok);
        }
    }
#pragma unroll
    for (int i = 0; i < BN * 32 / GM_THREADS; i++) {
        const int p = tid + i * GM_THREADS, r = p >> 5, pc = p & 31;
        const int64_t col = (int64_t)kc * GM_BK + pc * 4;
        const bool ok = n0 + r < a.n && col < K;
        const float *g = ok ? a.x + (int64_t)(n0 + r) * a.ldx + col : a.x;
        gm_cp16(sb + r * GM_BK + gm_swz(pc, r) * 4, g, ok);
    }
#endif
}

/* The four bf16x2 registers (codes j, j + 4) of unit iu of the lane's row half h of m-tile
 * b16, from the stage in shared memory. */
template <int FMT>
static __device__ __forceinline__ void gm_afrag(const char *sa, int b16, int h, int lane, int iu,
                                                const uint4 &q4w, uint32_t mask, uint32_t magic,
                                                uint32_t (&f)[4])
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    if (FMT == GF_Q4) {
        const uint32_t w = iu == 0 ? q4w.x : iu == 1 ? q4w.y : iu == 2 ? q4w.z : q4w.w;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t v = ((w >> (4 * j)) & mask) | magic;
            asm("sub.rn.bf16x2 %0, %1, %2;" : "=r"(f[j]) : "r"(v), "r"(magic));
        }
    } else if (FMT == GF_Q8) {
        const int phys = iu ^ ((lane >> 2) & 3);
        const uint2 u = *(const uint2 *)(sa + (((b16 * 2 + h) * 32 + lane) * 4 + phys) * 8);
#pragma unroll
        for (int j = 0; j < 4; j++)
            f[j] = gm_pack(gm_q8f(u.x, 0x7440u | j), gm_q8f(u.y, 0x7440u | j));
    } else {
        const int phys = iu ^ ((lane >> 1) & 3);
        const uint4 u = *(const uint4 *)(sa + (((b16 * 2 + h) * 32 + lane) * 4 + phys) * 16);
        f[0] = __byte_perm(u.x, u.z, 0x5410);
        f[1] = __byte_perm(u.x, u.z, 0x7632);
        f[2] = __byte_perm(u.y, u.w, 0x5410);
        f[3] = __byte_perm(u.y, u.w, 0x7632);
    }
#endif
}

template <int FMT, int BN, int V, int TILED>
static __global__ void __launch_bounds__(GM_THREADS, 1) k_gemm(const struct gm_kargs a)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int WN = BN / 16, WM = 8 / WN, MT = GM_BM / WM / 16, NT = 2;
    constexpr bool AFF = FMT != GF_BF16;
    constexpr int A_BYTES = gm_fmt<FMT>::A_BYTES, UNITS = 4; /* units of 8 columns per lane */
    extern __shared__ __align__(16) char gm_sm[];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WM, wn = warp / WM, g = lane >> 2, t = lane & 3;
    int wi = 0;
    while (wi + 1 < a.nw && (int)blockIdx.x >= a.tile0[wi + 1])
        wi++;
    const struct cu_weight &w = a.w[wi];
    const int64_t r0 = (int64_t)(blockIdx.x - a.tile0[wi]) * GM_BM;
    const int n0 = blockIdx.y * BN;
    const int K = (int)w.cols, group = AFF ? w.group : GM_BK, ngr = AFF ? K / group : 1;
    /* this block's chunks: whole units of the K split */
    const int units = (a.nchunk + a.kunit - 1) / a.kunit;
    const int c0 = (int)((int64_t)units * blockIdx.z / gridDim.z) * a.kunit;
    int c1 = (int)((int64_t)units * (blockIdx.z + 1) / gridDim.z) * a.kunit;
    if (c1 > a.nchunk) c1 = a.nchunk;
    const int nch = c1 - c0;

    auto stage_a = [&](int s) { return gm_sm + (size_t)s * (A_BYTES + BN * GM_BK * 4); };
    auto stage_b = [&](int s) { return (float *)(stage_a(s) + A_BYTES); };

    pdl_wait();
#pragma unroll
    for (int s = 0; s < GM_STAGES - 1; s++) {
        if (s < nch) gm_load<FMT, BN, V, TILED>(a, w, r0, n0, c0 + s, stage_a(s), stage_b(s));
        gm_commit();
    }

    /* gacc: the tensor cores' accumulators, summed into acc (ordinary f32 adds) at the end of
     * every group (affine) or chunk (BF16). The tensor cores add their products with an
     * alignment to the largest term that truncates, not rounds: over a whole K that drifts
     * past f32 summation (2.4 x 2^-20 of sum |w x| at K = 2080 on an H100), over one chunk
     * it stays within it. */
    float acc[MT][NT][4], gacc[MT][NT][4];
    float sc[MT][2], bi[MT][2], xs[NT];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                acc[i][j][e] = 0.f;
                gacc[i][j][e] = 0.f;
            }
#pragma unroll
    for (int j = 0; j < NT; j++)
        xs[j] = 0.f;
#pragma unroll
    for (int i = 0; i < MT; i++)
        sc[i][0] = sc[i][1] = bi[i][0] = bi[i][1] = 0.f;
    /* rows of the lane's fragments, clamped for the scale loads */
    int64_t srow[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int64_t r = r0 + (wm * MT + i) * 16 + h * 8 + g;
            srow[i][h] = r < w.rows ? r : w.rows - 1;
        }
    /* whether the warp's n-tiles hold any row */
    const bool nlive0 = n0 + wn * 16 < a.n, nlive1 = n0 + wn * 16 + 8 < a.n;

#pragma unroll 1
    for (int it = 0; it < nch; it++) {
        gm_wait<GM_STAGES - 2>();
        __syncthreads();
        {
            const int nx = it + GM_STAGES - 1;
            if (nx < nch)
                gm_load<FMT, BN, V, TILED>(a, w, r0, n0, c0 + nx, stage_a(nx % GM_STAGES),
                                           stage_b(nx % GM_STAGES));
            gm_commit();
        }
        const int kc = c0 + it;
        const char *sa = stage_a(it % GM_STAGES);
        const float *sb = stage_b(it % GM_STAGES);
        uint4 q4w[MT][2];
        if (FMT == GF_Q4) {
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    q4w[i][h] = *(const uint4 *)(sa + (((wm * MT + i) * 2 + h) * 32 + lane) * 16);
        }
#pragma unroll
        for (int iu = 0; iu < UNITS; iu++) {
            const int u = iu / V, v = iu % V;
            const int col0 = kc * GM_BK + 32 * V * u; /* first column of the span */
            if (col0 >= K) break;                     /* the last chunk may be short */
            if (AFF && v == 0 && col0 % group == 0) {
                const int gi = col0 / group;
#pragma unroll
                for (int i = 0; i < MT; i++)
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int64_t si = srow[i][h] * ngr + gi;
                        sc[i][h] = half16(w.scales[si], w.s_bf16);
                        bi[i][h] = half16(w.biases[si], w.s_bf16);
                    }
            }
            /* B: the unit's 8 columns of the lane's activation row in each n-tile */
            uint32_t bh[NT][4], bm[NT][4], bl[NT][4];
            const int p0 = (32 * V * u + 8 * (V * t + v)) / 4;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const int rl = wn * 16 + j * 8 + g;
                const float4 x0 = *(const float4 *)(sb + rl * GM_BK + gm_swz(p0, rl) * 4);
                const float4 x1 = *(const float4 *)(sb + rl * GM_BK + gm_swz(p0 + 1, rl) * 4);
                gm_split(x0.x, x1.x, bh[j][0], bm[j][0], bl[j][0]);
                gm_split(x0.y, x1.y, bh[j][1], bm[j][1], bl[j][1]);
                gm_split(x0.z, x1.z, bh[j][2], bm[j][2], bl[j][2]);
                gm_split(x0.w, x1.w, bh[j][3], bm[j][3], bl[j][3]);
                if (AFF) xs[j] += ((x0.x + x0.y) + (x0.z + x0.w)) + ((x1.x + x1.y) + (x1.z + x1.w));
            }
#pragma unroll
            for (int i = 0; i < MT; i++) {
                uint32_t fa[4], fb[4]; /* rows g and g + 8 */
                gm_afrag<FMT>(sa, wm * MT + i, 0, lane, iu, q4w[i][0], a.mask, a.magic, fa);
                gm_afrag<FMT>(sa, wm * MT + i, 1, lane, iu, q4w[i][1], a.mask, a.magic, fb);
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    if (!(j == 0 ? nlive0 : nlive1)) continue;
                    float(&d)[4] = gacc[i][j];
#pragma unroll
                    for (int st = 0; st < 2; st++) {
                        gm_mma(d, fa[2 * st], fb[2 * st], fa[2 * st + 1], fb[2 * st + 1],
                               bh[j][2 * st], bh[j][2 * st + 1]);
                        if (a.passes == 1) continue; /* uniform: the whole launch */
                        gm_mma(d, fa[2 * st], fb[2 * st], fa[2 * st + 1], fb[2 * st + 1],
                               bm[j][2 * st], bm[j][2 * st + 1]);
                        gm_mma(d, fa[2 * st], fb[2 * st], fa[2 * st + 1], fb[2 * st + 1],
                               bl[j][2 * st], bl[j][2 * st + 1]);
                    }
                }
            }
            if (AFF && v == V - 1 && (col0 + 32 * V) % group == 0) {
                /* the group is complete: y += s * sum(q x) + b * sum(x) */
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    float s = xs[j];
                    s += __shfl_xor_sync(0xffffffffu, s, 1);
                    s += __shfl_xor_sync(0xffffffffu, s, 2);
                    const float c0s = __shfl_sync(0xffffffffu, s, (2 * t) * 4);
                    const float c1s = __shfl_sync(0xffffffffu, s, (2 * t + 1) * 4);
                    xs[j] = 0.f;
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        float(&d)[4] = gacc[i][j];
                        acc[i][j][0] += fmaf(sc[i][0], d[0], bi[i][0] * c0s);
                        acc[i][j][1] += fmaf(sc[i][0], d[1], bi[i][0] * c1s);
                        acc[i][j][2] += fmaf(sc[i][1], d[2], bi[i][1] * c0s);
                        acc[i][j][3] += fmaf(sc[i][1], d[3], bi[i][1] * c1s);
                        d[0] = d[1] = d[2] = d[3] = 0.f;
                    }
                }
            }
        }
        if (!AFF) {
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NT; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        acc[i][j][e] += gacc[i][j][e];
                        gacc[i][j][e] = 0.f;
                    }
        }
    }
    gm_wait<0>();

    /* store: fragment element e is (row g + 8 (e >> 1), activation column 2t + (e & 1)) */
    const bool split = gridDim.z > 1;
    const int64_t prow = a.roff[a.nw];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t r = r0 + (wm * MT + i) * 16 + (e >> 1) * 8 + g;
                const int col = n0 + wn * 16 + j * 8 + 2 * t + (e & 1);
                if (r >= w.rows || col >= a.n) continue;
                if (split)
                    a.part[((int64_t)blockIdx.z * a.n + col) * prow + a.roff[wi] + r] =
                        acc[i][j][e];
                else
                    a.y[wi][(int64_t)col * a.ldy[wi] + r] =
                        acc[i][j][e] + (a.bias[wi] ? a.bias[wi][r] : 0.f);
            }
#endif
}

/* launches one instance (instances/cuda_gemm_q4.cu, _q8.cu, _bf16.cu) */
int cu_gemm_q4(const struct gm_kargs &a, int bn, int V, int tiled, dim3 grid, cudaStream_t st);
int cu_gemm_q8(const struct gm_kargs &a, int bn, int V, dim3 grid, cudaStream_t st);
int cu_gemm_bf16(const struct gm_kargs &a, int bn, dim3 grid, cudaStream_t st);

template <int FMT, int BN, int V, int TILED>
static int gm_launch(const struct gm_kargs &a, dim3 grid, cudaStream_t st)
{
    void (*k)(const struct gm_kargs) = k_gemm<FMT, BN, V, TILED>;
    const size_t smem = gm_smem(FMT, BN);
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return (int)e;
    return cu_launch(k, grid, dim3(GM_THREADS), smem, st, a);
}

template <int FMT, int V, int TILED>
static int gm_launch_bn(const struct gm_kargs &a, int bn, dim3 grid, cudaStream_t st)
{
    switch (bn) {
    case 16:
        return gm_launch<FMT, 16, V, TILED>(a, grid, st);
    case 32:
        return gm_launch<FMT, 32, V, TILED>(a, grid, st);
    case 64:
        return gm_launch<FMT, 64, V, TILED>(a, grid, st);
    }
    return (int)cudaErrorInvalidValue;
}

#endif
