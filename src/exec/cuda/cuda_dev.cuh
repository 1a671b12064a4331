/*
 * cuda_dev.cuh: device helpers shared by the kernel files: 16-bit float widening, exact
 * code-to-float conversion, and the scalar reference access to a stored weight element
 * (the values every fast kernel must reproduce).
 */
#ifndef CELLM_EXEC_CUDA_DEV_CUH
#define CELLM_EXEC_CUDA_DEV_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_int.h"

static __device__ __forceinline__ float half16(uint16_t h, int is_bf16)
{
    return is_bf16 ? __uint_as_float((uint32_t)h << 16) : __half2float(__ushort_as_half(h));
}

/* exact float of a code q < 2^23: OR it into the mantissa of 2^23, subtract 2^23 */
static __device__ __forceinline__ float code_f(uint32_t q)
{
    return __fsub_rn(__uint_as_float(0x4B000000u | q), 8388608.0f);
}

/* Lanes' words per span in the tensor-core products: 1, 2, 4 for groups of 32, 64, >= 128 */
static __host__ __device__ __forceinline__ int q4_span_words(int group)
{
    return group >= 128 ? 4 : group / 32;
}

/* Where word wi (codes 8wi..8wi+7) of row r of a tiled 4-bit weight is (cuda_int.h):
 * row r is row g = r % 8 of half r / 8 % 2 of block r / 16; word wi is in step wi / 32,
 * and inside the step's 32 words of the row, span u = j / 4V, lane-in-quad lt = j % 4V / V
 * and word v = j % V (V = q4_span_words), which lane 4g + lt holds as its word u * V + v. */
static __host__ __device__ __forceinline__ int64_t cu_q4_word(int64_t cols, int group, int64_t r,
                                                              int64_t wi)
{
    const int V = q4_span_words(group), j = (int)(wi & 31);
    const int u = j / (4 * V), lt = j % (4 * V) / V, v = j % V;
    const int64_t S = cols / 256, t = r >> 4, half = (r >> 3) & 1, g = r & 7;
    return (((t * S + (wi >> 5)) * 2 + half) * 32 + g * 4 + lt) * 8 + u * V + v;
}

/* Word wi (codes 8wi..8wi+7) of row r of a 4-bit affine weight, tiled or in row order */
static __device__ __forceinline__ uint32_t cu_q4_load(const struct cu_weight &w, int64_t r,
                                                      int64_t wi)
{
    if (w.tiled) return __ldg((const uint32_t *)w.data + cu_q4_word(w.cols, w.group, r, wi));
    return __ldg((const uint32_t *)((const char *)w.data + r * w.row_bytes) + wi);
}

/* ---- the small float codes of docs/formats.md, decoded arithmetically (exact) ---------- */

/* twice an E2M1 magnitude (code & 7): 0, 1, 2, 3, 4, 6, 8, 12 as a byte of two constants */
static __device__ __forceinline__ uint32_t e2m1_x2(uint32_t c)
{
    return __byte_perm(0x03020100u, 0x0C080604u, c & 7u) & 0xffu;
}
/* E2M1 code as float: +-{0, 0.5, 1, 1.5, 2, 3, 4, 6}; code 8 is -0 */
static __device__ __forceinline__ float cu_e2m1(uint32_t c)
{
    const float m = __fmul_rn(code_f(e2m1_x2(c)), 0.5f);
    return __uint_as_float(__float_as_uint(m) | ((c & 8u) << 28));
}
/* E4M3 (float8_e4m3fn): the sign, exponent and mantissa fields moved to float32's places
 * give a value 2^-120 times the code's (a float32 subnormal for the code's subnormals,
 * m * 2^-129); times 2^120 it is exact. 0x7f/0xff are NaN. */
static __device__ __forceinline__ float cu_e4m3(uint32_t c)
{
    const float f = __fmul_rn(__uint_as_float(((c & 0x80u) << 24) | ((c & 0x7fu) << 20)), 0x1p120f);
    return (c & 0x7fu) == 0x7fu ? __uint_as_float(0x7fc00000u) : f;
}
/* E8M0 scale: 2^(c - 127); 255 is NaN; 0 is 2^-127 (the float32 subnormal 0x00400000) */
static __device__ __forceinline__ float cu_e8m0(uint32_t c)
{
    c &= 0xffu;
    return __uint_as_float(c == 255u ? 0x7fc00000u : c ? c << 23 : 0x00400000u);
}
/* element i of a scale array of dtype sdt (CU_S_*), widened (exact) */
static __device__ __forceinline__ float cu_scale(const void *p, int64_t i, int sdt)
{
    switch (sdt) {
    case CU_S_F32:
        return __ldg((const float *)p + i);
    case CU_S_F16:
        return __half2float(__ushort_as_half(__ldg((const uint16_t *)p + i)));
    case CU_S_BF16:
        return __uint_as_float((uint32_t)__ldg((const uint16_t *)p + i) << 16);
    default:
        return (float)__ldg((const uint8_t *)p + i);
    }
}
/* the scale of a group of an MX-family weight: E8M0, or E4M3 for NVFP4 */
static __device__ __forceinline__ float cu_mx_scale(int fmt, uint32_t c)
{
    return fmt == CU_W_NVFP4 ? cu_e4m3(c) : cu_e8m0(c);
}
/* the scale block row of row r of an FP8 block weight, as an index of its first block */
static __device__ __forceinline__ int64_t cu_fp8_srow(const struct cu_weight &w, int64_t r)
{
    return (r + w.r_off) / w.block_rows * ((w.cols + w.group - 1) / w.group);
}
/* GPTQ (device layout, cuda_int.h, input-major or rowmaj): element at permuted input j of
 * row r */
static __device__ __forceinline__ float cu_gptq_at(const struct cu_weight &w, int64_t r, int64_t j)
{
    const int pack = 32 / w.bits;
    const uint32_t word =
        __ldg((const uint32_t *)w.data +
              (w.rowmaj ? r * (w.cols / pack) + j / pack : (j / pack) * w.rows + r));
    const int32_t q = (int32_t)((word >> (w.bits * (int)(j % pack))) & ((1u << w.bits) - 1));
    const int64_t g = w.gidx ? (int64_t)__ldg(w.gidx + j) : j / w.group;
    const int64_t gi = w.rowmaj ? r * w.ngroups + g : g * w.rows + r;
    const int32_t z = (int32_t)__ldg(w.zeros + gi) + w.zero_one;
    return __fmul_rn(cu_scale(w.qs, gi, w.sdt), (float)(q - z));
}

/* Element (r, c) of a stored weight, widened; affine: fl(fl(s*q)+b) (s*q is exact); the
 * formats of docs/formats.md by their reference formulas (exact but FP8 blocks' product,
 * which rounds once as the reference's does). */
static __device__ __forceinline__ float wload(const struct cu_weight &w, int64_t r, int64_t c)
{
    const unsigned char *row = (const unsigned char *)w.data + r * w.row_bytes;
    switch (w.fmt) {
    case CU_W_F32:
        return ((const float *)row)[c];
    case CU_W_F16:
        return __half2float(__ushort_as_half(((const uint16_t *)row)[c]));
    case CU_W_BF16:
        return __uint_as_float((uint32_t)((const uint16_t *)row)[c] << 16);
    case CU_W_AFFINE: {
        uint32_t q;
        if (w.tiled) {
            q = (cu_q4_load(w, r, c / 8) >> (4 * (c % 8))) & 15u;
        } else {
            int64_t bit = c * w.bits;
            const unsigned char *p = row + bit / 8;
            unsigned sh = (unsigned)(bit % 8);
            uint32_t v = p[0] | (sh + (unsigned)w.bits > 8 ? (uint32_t)p[1] << 8 : 0u);
            q = (v >> sh) & ((1u << w.bits) - 1);
        }
        int64_t g = r * (w.cols / w.group) + c / w.group;
        return fmaf(half16(w.scales[g], w.s_bf16), code_f(q), half16(w.biases[g], w.s_bf16));
    }
    case CU_W_MXFP4:
    case CU_W_NVFP4: {
        const float s =
            cu_mx_scale(w.fmt, ((const uint8_t *)w.qs)[r * (w.cols / w.group) + c / w.group]);
        return __fmul_rn(cu_e2m1((uint32_t)row[c / 2] >> (4 * (c & 1))), s);
    }
    case CU_W_MXFP8: {
        const float s = cu_e8m0(((const uint8_t *)w.qs)[r * (w.cols / w.group) + c / w.group]);
        return __fmul_rn(cu_e4m3(row[c]), s);
    }
    case CU_W_FP8BLK:
        return __fmul_rn(cu_e4m3(row[c]), cu_scale(w.qs, cu_fp8_srow(w, r) + c / w.group, w.sdt));
    case CU_W_GPTQ:
        return cu_gptq_at(w, r, w.iperm ? (int64_t)w.iperm[c] : c);
    }
    return 0.f;
}

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* sum over the block (every thread gets it); sh holds one double per warp */
static __device__ double block_sum_d(double v, double *sh)
{
    v = warp_sum_d(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int k = 0; k < nw; k++)
        t += sh[k];
    return t;
}

/* The warps' values v folded with op over a block of WARPS warps (every thread gets the
 * result, in warp order); sh: a float per warp */
template <int WARPS, typename Op> static __device__ float block_fold_w(float v, float *sh, Op op)
{
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    float t = sh[0];
    for (int k = 1; k < WARPS; k++)
        t = op(t, sh[k]);
    return t;
}

/* max and sum over a block of WARPS warps (the sums here are of non-negative terms) */
template <int WARPS> static __device__ float block_max_w(float v, float *sh)
{
    return block_fold_w<WARPS>(warp_max(v), sh, [](float a, float b) { return fmaxf(a, b); });
}

template <int WARPS> static __device__ float block_sum_w(float v, float *sh)
{
    return block_fold_w<WARPS>(warp_sum(v), sh, [](float a, float b) { return a + b; });
}

/* The KV cache of a row (cu_row says the layout): keys of position pos, layer l; its values
 * are row.cap * kd floats further. */
static __device__ __forceinline__ float *cu_kv_at(const struct cu_row &row, int layer, int64_t kd,
                                                  int pos)
{
    float *base = row.blocks ? row.blocks[pos >> CU_KV_SHIFT] : row.kv;
    const int p = row.blocks ? pos & (CU_KV_BLOCK - 1) : pos;
    return base + ((int64_t)layer * 2 * row.cap + p) * kd;
}

/* One layer and kv head of a row's cache, for kernels that walk its keys: k(pos) the key
 * row of position pos, v(pos) its value row. */
struct cu_kvh {
    float *const *blk; /* paged: the block table; NULL: contiguous from base */
    float *base;
    int64_t kd, off, vd; /* row stride; layer and head offset; keys to values */
    __device__ __forceinline__ float *k(int pos) const
    {
        return blk ? blk[pos >> CU_KV_SHIFT] + off + (int64_t)(pos & (CU_KV_BLOCK - 1)) * kd
                   : base + off + (int64_t)pos * kd;
    }
    __device__ __forceinline__ float *v(int pos) const
    {
        return k(pos) + vd;
    }
};

static __device__ __forceinline__ struct cu_kvh cu_kv_head(const struct cu_row &row, int layer,
                                                           int64_t kd, int64_t head_off)
{
    struct cu_kvh r;
    r.blk = row.blocks;
    r.base = row.kv;
    r.kd = kd;
    r.off = (int64_t)layer * 2 * row.cap * kd + head_off;
    r.vd = row.cap * kd;
    return r;
}

/* an attention score from q.k: fl(dot * scale), soft-capped as c * tanh(s / c) when c > 0 */
static __device__ __forceinline__ float attn_score(float dot, const struct cu_attn_args &a)
{
    float s = __fmul_rn(dot, a.scale);
    if (a.softcap > 0) s = __fmul_rn(a.softcap, tanhf(__fdiv_rn(s, a.softcap)));
    return s;
}

/* RoPE (rotate-half) of a head vector in shared memory, by one warp: the pairs (d, d + half)
 * turned by cos/sin at cs[2d], cs[2d + 1], rounded step by step as the CPU reference */
static __device__ __forceinline__ void rope_warp(float *v, const float *cs, int half)
{
    for (int d = threadIdx.x & 31; d < half; d += 32) {
        float c = cs[2 * d], s = cs[2 * d + 1];
        float x0 = v[d], x1 = v[d + half];
        float ac = __fmul_rn(x0, c), bs = __fmul_rn(x1, s), bc = __fmul_rn(x1, c),
              as = __fmul_rn(x0, s);
        v[d] = __fsub_rn(ac, bs);
        v[d + half] = __fadd_rn(bc, as);
    }
    __syncwarp();
}

/* Llama 4's RoPE of a head vector in shared memory, by one warp: the pairs (2d, 2d + 1) as
 * complex numbers times cos + i sin, rounded as posenc.c's rope_pairs: (ac - bs, as + bc) */
static __device__ __forceinline__ void rope_pairs_warp(float *v, const float *cs, int half)
{
    for (int d = threadIdx.x & 31; d < half; d += 32) {
        float c = cs[2 * d], s = cs[2 * d + 1];
        float x0 = v[2 * d], x1 = v[2 * d + 1];
        float ac = __fmul_rn(x0, c), bs = __fmul_rn(x1, s), as = __fmul_rn(x0, s),
              bc = __fmul_rn(x1, c);
        v[2 * d] = __fsub_rn(ac, bs);
        v[2 * d + 1] = __fadd_rn(as, bc);
    }
    __syncwarp();
}

/* The first key a row at position pos attends to: its chunk's first (Llama 4's chunked
 * layers), the sliding window's, else 0 (posenc.c's cellm_attn_first_key) */
static __device__ __forceinline__ int attn_first_key(const struct cu_attn_args &a, int pos)
{
    if (a.chunk > 0) return pos / a.chunk * a.chunk;
    if (a.window > 0 && pos - a.window + 1 > 0) return pos - a.window + 1;
    return 0;
}

/* y = norm(x) with weights w (and bias b): the row kernels and the per-head one share it */
static __device__ __forceinline__ float norm_out_v(int kind, float xv, float mean, float r, bool hw,
                                                   float wv, bool hb, float bv)
{
    if (kind == 2) {
        float y = __fmul_rn(__fsub_rn(xv, mean), r);
        if (hw) y = __fmul_rn(y, wv);
        if (hb) y = __fadd_rn(y, bv);
        return y;
    }
    float y = __fmul_rn(xv, r);
    float wi = hw ? wv : 0.f;
    return kind == 1 ? __fmul_rn(y, __fadd_rn(1.0f, wi)) : __fmul_rn(wi, y);
}

/* Whether a product's norm prologue may defer the norm's scale to the product's rows (the
 * decode products in cuda_mv.cuh and cuda_mvt.cuh): RMS norms without a bias, where
 * norm(x) = x * r * w is linear in x for a fixed r. Their input is then x * w (x * (1 + w)
 * for kind 1), formed inline there: a version that called norm_out_v with r = 1 and mean 0
 * (same values) cost 1-3% of decode speed in those register-bound kernels
 * (bench/cuda_notes.md round 11). */
static __device__ __forceinline__ bool norm_defers(int kind, bool has_bias)
{
    return kind != 2 && !has_bias;
}

static __device__ __forceinline__ float norm_out(int kind, float xv, float mean, float r,
                                                 const float *w, const float *b, int64_t c)
{
    return norm_out_v(kind, xv, mean, r, w != NULL, w ? w[c] : 0.f, b != NULL, b ? b[c] : 0.f);
}

/* 1 / sqrt(var + eps), rounded step by step as the reference norms do */
static __device__ __forceinline__ float norm_rscale(float var, float eps)
{
    return __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
}

/* The positional steps of a q (isq) or k head vector of row i in shared memory after its
 * norm, by one warp, in posenc.c's order (cellm_op_head_pos): RoPE (rotate-half or
 * interleaved pairs; none on a NoPE layer), then the weightless q/k norm x * rsqrt(mean(x^2)
 * + eps) (summed in double as head_norm), then the query's per-row scale. cs: the row's
 * cos/sin pairs. */
static __device__ void head_pos_warp(const struct cu_qkv_args &a, float *v, const float *cs, int i,
                                     int isq, int hd)
{
    const int lane = threadIdx.x & 31;
    if (!a.nope) {
        if (a.pairs)
            rope_pairs_warp(v, cs, a.rot / 2);
        else
            rope_warp(v, cs, a.rot / 2);
        if (a.l2norm) {
            double s = 0;
            for (int d = lane; d < hd; d += 32)
                s += (double)v[d] * v[d];
            float r = norm_rscale((float)(warp_sum_d(s) / hd), a.eps);
            __syncwarp();
            for (int d = lane; d < hd; d += 32)
                v[d] = __fmul_rn(v[d], r);
            __syncwarp();
        }
    }
    if (isq && a.qs) {
        const float s = a.qs[2 * (int64_t)i];
        for (int d = lane; d < hd; d += 32)
            v[d] = __fmul_rn(v[d], s);
        __syncwarp();
    }
}

/* The statistics of a row norm over cols = 4 * c4 values, by the whole block, as k_norm
 * computes them (sums in double): returns 1/sqrt(var + eps) and sets mean (LayerNorm,
 * kind 2; else 0). copy, when given, receives the row (shared memory) on the way. */
static __device__ float row_norm_stats(const float4 *x, int c4, int kind, float eps, double *red,
                                       float4 *copy, float &mean)
{
    const int tid = threadIdx.x, nt = blockDim.x;
    double s = 0;
#pragma unroll 8
    for (int c = tid; c < c4; c += nt) {
        float4 v = x[c];
        if (copy) copy[c] = v;
        if (kind == 2)
            s += ((double)v.x + (double)v.y) + ((double)v.z + (double)v.w);
        else
            s += ((double)v.x * v.x + (double)v.y * v.y) + ((double)v.z * v.z + (double)v.w * v.w);
    }
    s = block_sum_d(s, red);
    mean = 0.f;
    if (kind == 2) {
        mean = (float)(s / (4.0 * c4));
        const float4 *src = copy ? copy : x; /* a thread reads back only what it copied */
        double q = 0;
#pragma unroll 8
        for (int c = tid; c < c4; c += nt) {
            float4 v = src[c];
            float d0 = __fsub_rn(v.x, mean), d1 = __fsub_rn(v.y, mean), d2 = __fsub_rn(v.z, mean),
                  d3 = __fsub_rn(v.w, mean);
            q += ((double)d0 * d0 + (double)d1 * d1) + ((double)d2 * d2 + (double)d3 * d3);
        }
        s = block_sum_d(q, red);
    }
    return norm_rscale((float)(s / (4.0 * c4)), eps);
}

/* act(g) * u for the gated MLPs: act 0 silu, 1 gelu (tanh), 2 gelu (erf); reference rounding */
static __device__ __forceinline__ float glu_act(float g, float u, int act)
{
    float y;
    if (act == 0) {
        y = __fdiv_rn(g, __fadd_rn(1.0f, expf(-g)));
    } else if (act == 1) {
        const float beta = (float)(1.4142135623730951 * 1.1283791670955126 * 0.5),
                    kappa = 0.044715f;
        float cube = __fmul_rn(__fmul_rn(g, g), g);
        float inner = __fmul_rn(beta, __fadd_rn(g, __fmul_rn(kappa, cube)));
        y = __fmul_rn(__fmul_rn(0.5f, g), __fadd_rn(1.0f, tanhf(inner)));
    } else {
        y = __fmul_rn(__fmul_rn(g, 0.5f),
                      __fadd_rn(1.0f, erff(__fmul_rn(g, (float)0.70710678118654752440))));
    }
    return __fmul_rn(y, u);
}

/*
 * Programmatic dependent launch. Every kernel is launched with programmatic stream
 * serialization (cu_launch) and starts with pdl_wait(): it first lets the next kernel of
 * the stream be scheduled (its blocks then sit in their own pdl_wait), then waits until
 * the previous grid has completed and its writes are visible. So no kernel reads or
 * writes global memory that a predecessor touches before that predecessor is done, while
 * the launch latency between dependent kernels overlaps the previous kernel's tail.
 * Work that depends on nothing earlier (prefetching weights) may come before it.
 */
static __device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* prefetch [p, p + n) into L2, lines split among the 32 lanes of a warp */
static __device__ __forceinline__ void prefetch_l2(const void *p, int64_t n, int lane)
{
#pragma unroll 1
    for (int64_t o = (int64_t)lane * 128; o < n; o += 32 * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)p + o));
}

template <typename... KArgs, typename... Args>
static inline int cu_launch(void (*k)(KArgs...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t st, Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cfg.attrs = at;
    /* only kernels compiled for sm_90 or later wait in pdl_wait (a build for an older
     * target, JIT-compiled on Hopper, must keep plain stream order) */
    struct cudaFuncAttributes fa;
    cfg.numAttrs = cudaFuncGetAttributes(&fa, k) == cudaSuccess && fa.ptxVersion >= 90 ? 1 : 0;
    return (int)cudaLaunchKernelEx(&cfg, k, args...);
}

static inline unsigned cu_blocks(int64_t total, int threads)
{
    int64_t b = (total + threads - 1) / threads;
    return (unsigned)(b > 65536 ? 65536 : b < 1 ? 1 : b);
}

#endif
