/*
 * cuda_ops.cu: the forward pass's elementwise and row operations on the GPU: embedding
 * gather, norms (with the residual add fused in front), the q/k/v epilogue (biases,
 * q/k norms, RoPE, KV cache write), attention over the cache, gated activations,
 * soft-caps and the MoE router.
 *
 * Rounding follows the CPU reference (src/exec/cpu/ops.c) operation by operation: the
 * elementwise steps use __fmul_rn/__fadd_rn/__fdiv_rn so that nvcc cannot contract them
 * into fused multiply-adds; reductions (norm sums, softmax sums, dot products) may use
 * any order. RoPE's cos/sin come from the host (computed there with the CPU's own cosf
 * and sinf), so that positions rotate exactly as on the CPU.
 *
 * Attention splits each (row, head)'s keys into chunks of split_keys, one block each:
 * a block keeps its scores in shared memory, and writes either the final output (one
 * chunk) or its unnormalised partial output with its max and sum, which k_attn_combine
 * merges (long contexts at decode).
 */
#include <math.h>

#include "cuda_dev.cuh"

/* ---- embedding ------------------------------------------------------------------------ */

__global__ void k_embed(const struct cu_weight e, const struct cu_row *rows, float scale, float *x)
{
    pdl_wait();
    int i = blockIdx.x;
    int64_t tok = rows[i].token, dim = e.cols;
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
        float v = wload(e, tok, c);
        x[i * dim + c] = scale == 1.0f ? v : __fmul_rn(v, scale);
    }
}

extern "C" int cellm_cu_embed(const struct cu_weight *e, const struct cu_row *rows, int n,
                              float scale, float *x, void *stream)
{
    return cu_launch(k_embed, dim3(n), dim3(256), 0, (cudaStream_t)stream, *e, rows, scale, x);
}

/* ---- norms ---------------------------------------------------------------------------- */

#define NORM_THREADS 256

static __device__ __forceinline__ float norm_out(int kind, float xv, float mean, float r,
                                                 const float *w, const float *b, int64_t c)
{
    return norm_out_v(kind, xv, mean, r, w != NULL, w ? w[c] : 0.f, b != NULL, b ? b[c] : 0.f);
}

#define NORM_VPT 16 /* values per thread kept in registers: rows up to 4096 */

__global__ void __launch_bounds__(NORM_THREADS) k_norm(const struct cu_norm_args a)
{
    pdl_wait();
    __shared__ double sh[NORM_THREADS / 32];
    int i = blockIdx.x, j = i;
    if (a.rows) {
        if (!a.rows[i].want)
            return;
        j = a.rows[i].out;
    }
    int dim = a.dim;
    float *x = a.x + (int64_t)i * dim;
    float *out = a.out + (int64_t)j * dim;
    if (dim <= NORM_THREADS * NORM_VPT) {
        /* one pass over memory: the row, its residual and the weights are loaded together
         * and kept in registers */
        float xv[NORM_VPT], wv[NORM_VPT], bv[NORM_VPT];
        const float *y = a.add ? a.add + (int64_t)i * dim : NULL;
#pragma unroll
        for (int k = 0; k < NORM_VPT; k++) {
            int c = threadIdx.x + k * NORM_THREADS;
            xv[k] = wv[k] = bv[k] = 0.f;
            if (c < dim) {
                xv[k] = x[c];
                if (y)
                    xv[k] = __fadd_rn(xv[k], y[c]);
                if (a.w)
                    wv[k] = a.w[c];
                if (a.b)
                    bv[k] = a.b[c];
            }
        }
        if (y) {
#pragma unroll
            for (int k = 0; k < NORM_VPT; k++) {
                int c = threadIdx.x + k * NORM_THREADS;
                if (c < dim)
                    x[c] = xv[k];
            }
        }
        float mean = 0.f, r;
        if (a.kind == 2) {
            double sm = 0;
#pragma unroll
            for (int k = 0; k < NORM_VPT; k++)
                sm += xv[k];
            mean = (float)(block_sum_d(sm, sh) / dim);
            double v = 0;
#pragma unroll
            for (int k = 0; k < NORM_VPT; k++)
                if (threadIdx.x + k * NORM_THREADS < dim) {
                    float d = __fsub_rn(xv[k], mean);
                    v += (double)d * d;
                }
            float var = (float)(block_sum_d(v, sh) / dim);
            r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
        } else {
            double sm = 0;
#pragma unroll
            for (int k = 0; k < NORM_VPT; k++)
                sm += (double)xv[k] * xv[k];
            float var = (float)(block_sum_d(sm, sh) / dim);
            r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
        }
#pragma unroll
        for (int k = 0; k < NORM_VPT; k++) {
            int c = threadIdx.x + k * NORM_THREADS;
            if (c < dim)
                out[c] = norm_out_v(a.kind, xv[k], mean, r, a.w != NULL, wv[k], a.b != NULL, bv[k]);
        }
        return;
    }
    if (a.add) {
        const float *y = a.add + (int64_t)i * dim;
        for (int c = threadIdx.x; c < dim; c += blockDim.x)
            x[c] = __fadd_rn(x[c], y[c]);
        __syncthreads();
    }
    float mean = 0.f, r;
    if (a.kind == 2) {
        double s = 0;
        for (int c = threadIdx.x; c < dim; c += blockDim.x)
            s += x[c];
        mean = (float)(block_sum_d(s, sh) / dim);
        double v = 0;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            float d = __fsub_rn(x[c], mean);
            v += (double)d * d;
        }
        float var = (float)(block_sum_d(v, sh) / dim);
        r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
    } else {
        double s = 0;
        for (int c = threadIdx.x; c < dim; c += blockDim.x)
            s += (double)x[c] * x[c];
        float var = (float)(block_sum_d(s, sh) / dim);
        r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, a.eps)));
    }
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        out[c] = norm_out(a.kind, x[c], mean, r, a.w, a.b, c);
}

extern "C" int cellm_cu_norm(const struct cu_norm_args *a, void *stream)
{
    return cu_launch(k_norm, dim3(a->n), dim3(NORM_THREADS), 0, (cudaStream_t)stream, *a);
}

__global__ void k_add(float *x, const float *y, int64_t n)
{
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

extern "C" int cellm_cu_add(float *x, const float *y, int64_t n, void *stream)
{
    return cu_launch(k_add, dim3(cu_blocks(n, 256)), dim3(256), 0, (cudaStream_t)stream, x, y, n);
}

/* ---- q/k/v epilogue ------------------------------------------------------------------- */

/* Norm of one head vector held in shared memory, by one warp. */
static __device__ void head_norm(float *v, int hd, int kind, const float *w, float eps)
{
    int lane = threadIdx.x;
    float mean = 0.f, r;
    if (kind == 2) {
        double s = 0;
        for (int d = lane; d < hd; d += 32)
            s += v[d];
        mean = (float)(warp_sum_d(s) / hd);
        double q = 0;
        for (int d = lane; d < hd; d += 32) {
            float t = __fsub_rn(v[d], mean);
            q += (double)t * t;
        }
        float var = (float)(warp_sum_d(q) / hd);
        r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    } else {
        double s = 0;
        for (int d = lane; d < hd; d += 32)
            s += (double)v[d] * v[d];
        float var = (float)(warp_sum_d(s) / hd);
        r = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(var, eps)));
    }
    __syncwarp();
    for (int d = lane; d < hd; d += 32)
        v[d] = norm_out(kind, v[d], mean, r, w, NULL, d);
    __syncwarp();
}

__global__ void k_qkv_post(const struct cu_qkv_args a)
{
    pdl_wait();
    __shared__ float v[512];
    int i = blockIdx.x, hh = blockIdx.y, lane = threadIdx.x, hd = a.hd;
    int64_t qd = (int64_t)a.H * hd, kd = (int64_t)a.KVH * hd;
    const struct cu_row row = a.rows[i];
    int isq = hh < a.H, h = isq ? hh : hh - a.H;
    float *src = isq ? a.q + i * qd + (int64_t)h * hd : a.k + i * kd + (int64_t)h * hd;
    const float *bias = isq ? a.bq : a.bk;
    for (int d = lane; d < hd; d += 32) {
        float t = src[d];
        if (bias)
            t = __fadd_rn(t, bias[(int64_t)h * hd + d]);
        v[d] = t;
    }
    __syncwarp();
    const float *nh = isq ? a.qn_heads : a.kn_heads;
    const float *ns = isq ? a.qn : a.kn;
    if (nh)
        head_norm(v, hd, 2, nh + (int64_t)h * hd, a.eps);
    else if (ns)
        head_norm(v, hd, a.qk_kind, ns, a.eps);
    int half = a.rot / 2;
    const float *cs = a.cs + (int64_t)i * half * 2;
    for (int d = lane; d < half; d += 32) {
        float c = cs[2 * d], s = cs[2 * d + 1];
        float x0 = v[d], x1 = v[d + half];
        float ac = __fmul_rn(x0, c), bs = __fmul_rn(x1, s), bc = __fmul_rn(x1, c),
              as = __fmul_rn(x0, s);
        v[d] = __fsub_rn(ac, bs);
        v[d + half] = __fadd_rn(bc, as);
    }
    __syncwarp();
    if (isq) {
        for (int d = lane; d < hd; d += 32)
            src[d] = v[d];
        return;
    }
    float *kc = row.kv + (int64_t)a.layer * 2 * row.cap * kd + (int64_t)row.pos * kd + (int64_t)h * hd;
    float *vc = kc + row.cap * kd;
    const float *vs = a.v + i * kd + (int64_t)h * hd;
    for (int d = lane; d < hd; d += 32) {
        kc[d] = v[d];
        float t = vs[d];
        if (a.bv)
            t = __fadd_rn(t, a.bv[(int64_t)h * hd + d]);
        vc[d] = t;
    }
}

extern "C" int cellm_cu_qkv_post(const struct cu_qkv_args *a, void *stream)
{
    if (a->hd > 512 || a->n <= 0)
        return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)a->n, (unsigned)(a->H + a->KVH));
    return cu_launch(k_qkv_post, dim3(grid), dim3(32), 0, (cudaStream_t)stream, *a);
}

/* ---- attention ------------------------------------------------------------------------ */

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)

static __device__ float block_max(float v, float *sh)
{
    v = warp_max(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    float t = sh[0];
    for (int k = 1; k < ATT_WARPS; k++)
        t = fmaxf(t, sh[k]);
    return t;
}

static __device__ float block_sum(float v, float *sh)
{
    v = warp_sum(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    float t = 0;
    for (int k = 0; k < ATT_WARPS; k++)
        t += sh[k];
    return t;
}

/* dynamic shared memory: q[hd] | scores[split_keys] | acc[ATT_THREADS * 4] */
__global__ void __launch_bounds__(ATT_THREADS) k_attention(const struct cu_attn_args a)
{
    pdl_wait();
    extern __shared__ float smem[];
    __shared__ float red[ATT_WARPS];
    int hd = a.hd, H = a.H;
    int i = blockIdx.x / H, h = blockIdx.x % H, split = blockIdx.y;
    int kvh = h / (H / a.KVH);
    const struct cu_row row = a.rows[i];
    int64_t kd = (int64_t)a.KVH * hd;
    int hi = row.pos, lo = 0;
    if (a.window > 0 && hi - a.window + 1 > 0)
        lo = hi - a.window + 1;
    int k0 = lo + split * a.split_keys, k1 = k0 + a.split_keys;
    if (k1 > hi + 1)
        k1 = hi + 1;
    int nk = k1 - k0;
    float *q = smem, *sc = smem + hd, *accs = sc + a.split_keys;
    const float *qg = a.q + (int64_t)i * H * hd + (int64_t)h * hd;
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS)
        q[d] = qg[d];
    __syncthreads();
    const float *K = row.kv + (int64_t)a.layer * 2 * row.cap * kd + (int64_t)kvh * hd;
    const float *V = K + row.cap * kd;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    /* each warp scores 4 keys at a time: their loads are in flight together */
    for (int j0 = warp * 4; j0 < nk; j0 += ATT_WARPS * 4) {
        float dot[4] = {0.f, 0.f, 0.f, 0.f};
        for (int d = lane * 4; d < hd; d += 128) {
            float4 kv[4];
#pragma unroll
            for (int u = 0; u < 4; u++)
                kv[u] = j0 + u < nk ? *(const float4 *)(K + (int64_t)(k0 + j0 + u) * kd + d)
                                    : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                dot[u] = fmaf(q[d], kv[u].x, dot[u]);
                dot[u] = fmaf(q[d + 1], kv[u].y, dot[u]);
                dot[u] = fmaf(q[d + 2], kv[u].z, dot[u]);
                dot[u] = fmaf(q[d + 3], kv[u].w, dot[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            float t = warp_sum(dot[u]);
            if (lane == 0 && j0 + u < nk) {
                float s = __fmul_rn(t, a.scale);
                if (a.softcap > 0)
                    s = __fmul_rn(a.softcap, tanhf(__fdiv_rn(s, a.softcap)));
                sc[j0 + u] = s;
            }
        }
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < nk; j += ATT_THREADS)
        m = fmaxf(m, sc[j]);
    m = block_max(m, red);
    float l = 0.f;
    if (nk > 0)
        for (int j = threadIdx.x; j < nk; j += ATT_THREADS) {
            float e = expf(__fsub_rn(sc[j], m));
            sc[j] = e;
            l += e;
        }
    l = block_sum(l, red);
    /* weighted sum of values: hd/4 threads per key, each owning 4 dims (16-byte loads),
     * ng groups of them split the keys; 4 keys in flight per thread */
    const int tpk = hd / 4, ng = ATT_THREADS / tpk;
    const int g = threadIdx.x / tpk, d4 = (threadIdx.x % tpk) * 4;
    if (g < ng) {
        float4 p[4];
#pragma unroll
        for (int u = 0; u < 4; u++)
            p[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        int j = g;
        for (; j + 3 * ng < nk; j += 4 * ng) {
            float4 vv[4];
#pragma unroll
            for (int u = 0; u < 4; u++)
                vv[u] = *(const float4 *)(V + (int64_t)(k0 + j + u * ng) * kd + d4);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                float w = sc[j + u * ng];
                p[u].x = fmaf(w, vv[u].x, p[u].x);
                p[u].y = fmaf(w, vv[u].y, p[u].y);
                p[u].z = fmaf(w, vv[u].z, p[u].z);
                p[u].w = fmaf(w, vv[u].w, p[u].w);
            }
        }
        for (; j < nk; j += ng) {
            float4 vv = *(const float4 *)(V + (int64_t)(k0 + j) * kd + d4);
            float w = sc[j];
            p[0].x = fmaf(w, vv.x, p[0].x);
            p[0].y = fmaf(w, vv.y, p[0].y);
            p[0].z = fmaf(w, vv.z, p[0].z);
            p[0].w = fmaf(w, vv.w, p[0].w);
        }
        float *dst = accs + g * hd + d4;
        dst[0] = (p[0].x + p[1].x) + (p[2].x + p[3].x);
        dst[1] = (p[0].y + p[1].y) + (p[2].y + p[3].y);
        dst[2] = (p[0].z + p[1].z) + (p[2].z + p[3].z);
        dst[3] = (p[0].w + p[1].w) + (p[2].w + p[3].w);
    }
    __syncthreads();
    float inv = a.nsplit == 1 ? __fdiv_rn(1.0f, l) : 0.f;
    float *o = a.out + (int64_t)i * H * hd + (int64_t)h * hd;
    float *pp = a.part + (((int64_t)i * H + h) * a.nsplit + split) * (hd + 2);
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float v = 0.f;
        for (int k = 0; k < ng; k++)
            v += accs[k * hd + d];
        if (a.nsplit == 1)
            o[d] = __fmul_rn(v, inv);
        else
            pp[d] = v;
    }
    if (a.nsplit > 1 && threadIdx.x == 0) {
        pp[hd] = m;
        pp[hd + 1] = l;
    }
}

/* dynamic shared memory: the weight of each split, exp(m_s - M) (0 for empty splits) */
__global__ void __launch_bounds__(ATT_THREADS) k_attn_combine(const struct cu_attn_args a)
{
    pdl_wait();
    extern __shared__ float ew[];
    __shared__ float red[ATT_WARPS];
    int hd = a.hd, H = a.H;
    int i = blockIdx.x / H, h = blockIdx.x % H;
    const float *p = a.part + ((int64_t)i * H + h) * a.nsplit * (hd + 2);
    float M = -INFINITY;
    for (int s = threadIdx.x; s < a.nsplit; s += ATT_THREADS) {
        float m = p[s * (hd + 2) + hd], l = p[s * (hd + 2) + hd + 1];
        ew[s] = m;
        if (l > 0)
            M = fmaxf(M, m);
    }
    M = block_max(M, red);
    float L = 0.f;
    for (int s = threadIdx.x; s < a.nsplit; s += ATT_THREADS) {
        float l = p[s * (hd + 2) + hd + 1];
        float e = l > 0 ? expf(ew[s] - M) : 0.f;
        ew[s] = e;
        L += l > 0 ? l * e : 0.f;
    }
    L = block_sum(L, red); /* its barriers also publish ew */
    float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float o = 0.f;
#pragma unroll 4
        for (int s = 0; s < a.nsplit; s++)
            o += p[s * (hd + 2) + d] * ew[s];
        a.out[(int64_t)i * H * hd + (int64_t)h * hd + d] = o * inv;
    }
}

extern "C" int cellm_cu_attention(const struct cu_attn_args *a, void *stream)
{
    if (a->hd % 4 || a->hd > 2 * ATT_THREADS)
        return (int)cudaErrorInvalidValue;
    size_t sh = ((size_t)a->hd + (size_t)a->split_keys + 4 * ATT_THREADS) * sizeof(float);
    dim3 grid((unsigned)(a->n * a->H), (unsigned)a->nsplit);
    int e = cu_launch(k_attention, grid, dim3(ATT_THREADS), sh, (cudaStream_t)stream, *a);
    if (e || a->nsplit == 1)
        return e;
    return cu_launch(k_attn_combine, dim3(a->n * a->H), dim3(ATT_THREADS), (size_t)a->nsplit * sizeof(float),
                     (cudaStream_t)stream, *a);
}

/* ---- activations ---------------------------------------------------------------------- */

__global__ void k_glu(float *gate, const float *up, int64_t total, int64_t m, const float *bg,
                      const float *bu, int act)
{
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i % m;
        float g = gate[i], u = up[i];
        if (bg)
            g = __fadd_rn(g, bg[c]);
        if (bu)
            u = __fadd_rn(u, bu[c]);
        gate[i] = glu_act(g, u, act);
    }
}

extern "C" int cellm_cu_glu(float *gate, const float *up, int n, int64_t m, const float *bg,
                            const float *bu, int act, void *stream)
{
    int64_t total = (int64_t)n * m;
    return cu_launch(k_glu, dim3(cu_blocks(total, 256)), dim3(256), 0, (cudaStream_t)stream, gate, up, total, m, bg, bu, act);
}

__global__ void k_softcap(float *x, int64_t n, float c)
{
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(c, tanhf(__fdiv_rn(x[i], c)));
}

extern "C" int cellm_cu_softcap(float *x, int64_t n, float c, void *stream)
{
    return cu_launch(k_softcap, dim3(cu_blocks(n, 256)), dim3(256), 0, (cudaStream_t)stream, x, n, c);
}

/* ---- mixture of experts --------------------------------------------------------------- */

/* one thread per row: the router is small and this mirrors the CPU's selection exactly */
__global__ void k_moe_route(const float *logits, int n, int E, int K, int renorm, int32_t *idx,
                            float *wout)
{
    pdl_wait();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float *x = logits + (int64_t)i * E;
    float m = -INFINITY;
    for (int e = 0; e < E; e++)
        m = x[e] > m ? x[e] : m;
    double s = 0;
    for (int e = 0; e < E; e++)
        s += expf(__fsub_rn(x[e], m));
    float inv = __fdiv_rn(1.0f, (float)s);
    int32_t *id = idx + (int64_t)i * K;
    float *w = wout + (int64_t)i * K;
    for (int k = 0; k < K; k++) {
        int best = -1;
        float bp = 0.f;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int j = 0; j < k; j++)
                taken |= id[j] == e;
            float p = __fmul_rn(expf(__fsub_rn(x[e], m)), inv);
            if (!taken && (best < 0 || p > bp)) {
                best = e;
                bp = p;
            }
        }
        id[k] = best;
        w[k] = bp;
    }
    if (renorm) {
        float t = 0.f;
        for (int k = 0; k < K; k++)
            t = __fadd_rn(t, w[k]);
        for (int k = 0; k < K; k++)
            w[k] = __fdiv_rn(w[k], t);
    }
}

extern "C" int cellm_cu_moe_route(const float *logits, int n, int E, int K, int renorm,
                                  int32_t *idx, float *w, void *stream)
{
    return cu_launch(k_moe_route, dim3((n + 63) / 64), dim3(64), 0, (cudaStream_t)stream, logits, n, E, K, renorm, idx, w);
}

__global__ void k_gather_rows(const float *src, const int32_t *map, int K, int m, int dim, float *dst)
{
    pdl_wait();
    int64_t total = (int64_t)m * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i / dim, c = i % dim;
        dst[i] = src[(int64_t)(map[j] / K) * dim + c];
    }
}

extern "C" int cellm_cu_gather_rows(const float *src, const int32_t *map, int K, int m, int dim,
                                    float *dst, void *stream)
{
    return cu_launch(k_gather_rows, dim3(cu_blocks((int64_t)m * dim, 256)), dim3(256), 0, (cudaStream_t)stream, src, map, K, m, dim, dst);
}

__global__ void k_scatter_rows(const float *src, const int32_t *map, int m, int dim, float *dst)
{
    pdl_wait();
    int64_t total = (int64_t)m * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t j = i / dim, c = i % dim;
        dst[(int64_t)map[j] * dim + c] = src[i];
    }
}

extern "C" int cellm_cu_scatter_rows(const float *src, const int32_t *map, int m, int dim,
                                     float *dst, void *stream)
{
    return cu_launch(k_scatter_rows, dim3(cu_blocks((int64_t)m * dim, 256)), dim3(256), 0, (cudaStream_t)stream, src, map, m, dim, dst);
}

__global__ void k_moe_combine(const float *y, const float *w, int n, int K, int dim, float *out)
{
    pdl_wait();
    int64_t total = (int64_t)n * dim;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / dim, c = i % dim;
        float o = 0.f;
        for (int k = 0; k < K; k++)
            o = __fadd_rn(o, __fmul_rn(w[r * K + k], y[(r * K + k) * dim + c]));
        out[i] = o;
    }
}

extern "C" int cellm_cu_moe_combine(const float *y, const float *w, int n, int K, int dim,
                                    float *out, void *stream)
{
    return cu_launch(k_moe_combine, dim3(cu_blocks((int64_t)n * dim, 256)), dim3(256), 0, (cudaStream_t)stream, y, w, n, K, dim, out);
}
