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
    k_embed<<<n, 256, 0, (cudaStream_t)stream>>>(*e, rows, scale, x);
    return (int)cudaGetLastError();
}

/* ---- norms ---------------------------------------------------------------------------- */

#define NORM_THREADS 256

static __device__ double block_sum_d(double v, double *sh)
{
    v = warp_sum_d(v);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    double t = 0;
    for (int k = 0; k < nw; k++)
        t += sh[k];
    return t;
}

/* y = norm(x) with weights w (and bias b): the row kernel and the per-head one share it */
static __device__ __forceinline__ float norm_out(int kind, float xv, float mean, float r,
                                                 const float *w, const float *b, int64_t c)
{
    if (kind == 2) {
        float y = __fmul_rn(__fsub_rn(xv, mean), r);
        if (w)
            y = __fmul_rn(y, w[c]);
        if (b)
            y = __fadd_rn(y, b[c]);
        return y;
    }
    float y = __fmul_rn(xv, r);
    float wi = w ? w[c] : 0.f;
    return kind == 1 ? __fmul_rn(y, __fadd_rn(1.0f, wi)) : __fmul_rn(wi, y);
}

__global__ void __launch_bounds__(NORM_THREADS) k_norm(const struct cu_norm_args a)
{
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
    k_norm<<<a->n, NORM_THREADS, 0, (cudaStream_t)stream>>>(*a);
    return (int)cudaGetLastError();
}

__global__ void k_add(float *x, const float *y, int64_t n)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], y[i]);
}

extern "C" int cellm_cu_add(float *x, const float *y, int64_t n, void *stream)
{
    k_add<<<cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(x, y, n);
    return (int)cudaGetLastError();
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
    k_qkv_post<<<grid, 32, 0, (cudaStream_t)stream>>>(*a);
    return (int)cudaGetLastError();
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

/* dynamic shared memory: q[hd] | scores[split_keys] | acc[ATT_THREADS * 2] */
__global__ void __launch_bounds__(ATT_THREADS) k_attention(const struct cu_attn_args a)
{
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
    /* weighted sum of values: groups of hd threads split the keys (hd <= 128), or each
     * thread owns dims t and t+128 (hd <= 256) */
    int ng = hd <= ATT_THREADS ? ATT_THREADS / hd : 1;
    int g = hd <= ATT_THREADS ? threadIdx.x / hd : 0, d0 = hd <= ATT_THREADS ? threadIdx.x % hd : threadIdx.x;
    float a0 = 0.f, a1 = 0.f;
    if (g < ng) {
        /* 4 keys per step with separate sums, so that their loads overlap */
        float p0[4] = {0.f, 0.f, 0.f, 0.f}, p1[4] = {0.f, 0.f, 0.f, 0.f};
        int j = g;
        for (; j + 3 * ng < nk; j += 4 * ng) {
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float *vr = V + (int64_t)(k0 + j + u * ng) * kd;
                float w = sc[j + u * ng];
                p0[u] = fmaf(w, vr[d0], p0[u]);
                if (d0 + ATT_THREADS < hd)
                    p1[u] = fmaf(w, vr[d0 + ATT_THREADS], p1[u]);
            }
        }
        for (; j < nk; j += ng) {
            const float *vr = V + (int64_t)(k0 + j) * kd;
            float w = sc[j];
            p0[0] = fmaf(w, vr[d0], p0[0]);
            if (d0 + ATT_THREADS < hd)
                p1[0] = fmaf(w, vr[d0 + ATT_THREADS], p1[0]);
        }
        a0 = (p0[0] + p0[1]) + (p0[2] + p0[3]);
        a1 = (p1[0] + p1[1]) + (p1[2] + p1[3]);
    }
    if (ng > 1) {
        if (g < ng)
            accs[threadIdx.x] = a0;
        __syncthreads();
        if (threadIdx.x < hd) {
            a0 = 0.f;
            for (int k = 0; k < ng; k++)
                a0 = __fadd_rn(a0, accs[k * hd + threadIdx.x]);
        }
    }
    if (threadIdx.x >= hd)
        return;
    if (a.nsplit == 1) {
        float inv = __fdiv_rn(1.0f, l);
        float *o = a.out + (int64_t)i * H * hd + (int64_t)h * hd;
        o[d0] = __fmul_rn(a0, inv);
        if (d0 + ATT_THREADS < hd)
            o[d0 + ATT_THREADS] = __fmul_rn(a1, inv);
        return;
    }
    float *p = a.part + (((int64_t)i * H + h) * a.nsplit + split) * (hd + 2);
    p[d0] = a0;
    if (d0 + ATT_THREADS < hd)
        p[d0 + ATT_THREADS] = a1;
    if (threadIdx.x == 0) {
        p[hd] = m;
        p[hd + 1] = l;
    }
}

__global__ void k_attn_combine(const struct cu_attn_args a)
{
    int hd = a.hd, H = a.H;
    int i = blockIdx.x / H, h = blockIdx.x % H;
    const float *p = a.part + ((int64_t)i * H + h) * a.nsplit * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < a.nsplit; s++)
        if (p[s * (hd + 2) + hd + 1] > 0)
            M = fmaxf(M, p[s * (hd + 2) + hd]);
    float L = 0.f;
    for (int s = 0; s < a.nsplit; s++) {
        float l = p[s * (hd + 2) + hd + 1];
        if (l > 0)
            L += l * expf(p[s * (hd + 2) + hd] - M);
    }
    float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.f;
        for (int s = 0; s < a.nsplit; s++) {
            float l = p[s * (hd + 2) + hd + 1];
            if (l > 0)
                o += p[s * (hd + 2) + d] * expf(p[s * (hd + 2) + hd] - M);
        }
        a.out[(int64_t)i * H * hd + (int64_t)h * hd + d] = o * inv;
    }
}

extern "C" int cellm_cu_attention(const struct cu_attn_args *a, void *stream)
{
    if (a->hd % 4 || a->hd > 2 * ATT_THREADS)
        return (int)cudaErrorInvalidValue;
    size_t sh = ((size_t)a->hd + (size_t)a->split_keys + 2 * ATT_THREADS) * sizeof(float);
    dim3 grid((unsigned)(a->n * a->H), (unsigned)a->nsplit);
    k_attention<<<grid, ATT_THREADS, sh, (cudaStream_t)stream>>>(*a);
    int e = (int)cudaGetLastError();
    if (e || a->nsplit == 1)
        return e;
    k_attn_combine<<<a->n * a->H, 128, 0, (cudaStream_t)stream>>>(*a);
    return (int)cudaGetLastError();
}

/* ---- activations ---------------------------------------------------------------------- */

__global__ void k_glu(float *gate, const float *up, int64_t total, int64_t m, const float *bg,
                      const float *bu, int act)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t c = i % m;
        float g = gate[i], u = up[i];
        if (bg)
            g = __fadd_rn(g, bg[c]);
        if (bu)
            u = __fadd_rn(u, bu[c]);
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
        gate[i] = __fmul_rn(y, u);
    }
}

extern "C" int cellm_cu_glu(float *gate, const float *up, int n, int64_t m, const float *bg,
                            const float *bu, int act, void *stream)
{
    int64_t total = (int64_t)n * m;
    k_glu<<<cu_blocks(total, 256), 256, 0, (cudaStream_t)stream>>>(gate, up, total, m, bg, bu, act);
    return (int)cudaGetLastError();
}

__global__ void k_softcap(float *x, int64_t n, float c)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(c, tanhf(__fdiv_rn(x[i], c)));
}

extern "C" int cellm_cu_softcap(float *x, int64_t n, float c, void *stream)
{
    k_softcap<<<cu_blocks(n, 256), 256, 0, (cudaStream_t)stream>>>(x, n, c);
    return (int)cudaGetLastError();
}

/* ---- mixture of experts --------------------------------------------------------------- */

/* one thread per row: the router is small and this mirrors the CPU's selection exactly */
__global__ void k_moe_route(const float *logits, int n, int E, int K, int renorm, int32_t *idx,
                            float *wout)
{
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
    k_moe_route<<<(n + 63) / 64, 64, 0, (cudaStream_t)stream>>>(logits, n, E, K, renorm, idx, w);
    return (int)cudaGetLastError();
}

__global__ void k_gather_rows(const float *src, const int32_t *map, int K, int m, int dim, float *dst)
{
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
    k_gather_rows<<<cu_blocks((int64_t)m * dim, 256), 256, 0, (cudaStream_t)stream>>>(src, map, K, m, dim, dst);
    return (int)cudaGetLastError();
}

__global__ void k_scatter_rows(const float *src, const int32_t *map, int m, int dim, float *dst)
{
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
    k_scatter_rows<<<cu_blocks((int64_t)m * dim, 256), 256, 0, (cudaStream_t)stream>>>(src, map, m, dim, dst);
    return (int)cudaGetLastError();
}

__global__ void k_moe_combine(const float *y, const float *w, int n, int K, int dim, float *out)
{
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
    k_moe_combine<<<cu_blocks((int64_t)n * dim, 256), 256, 0, (cudaStream_t)stream>>>(y, w, n, K, dim, out);
    return (int)cudaGetLastError();
}
