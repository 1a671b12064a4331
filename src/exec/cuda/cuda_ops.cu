/*
 * cuda_ops.cu: the forward pass's elementwise and row operations on the GPU: embedding
 * gather, norms (with the residual add fused in front), gated activations (gpt-oss's
 * clamped SwiGLU too), soft-caps and the MoE routers. Attention and the q/k/v epilogue are
 * in cuda_attn.cu.
 *
 * Rounding follows the CPU reference (src/exec/cpu/ops.c) operation by operation: the
 * elementwise steps use __fmul_rn/__fadd_rn/__fdiv_rn so that nvcc cannot contract them
 * into fused multiply-adds; reductions (norm sums, softmax sums, dot products) may use
 * any order. RoPE's cos/sin come from the host (computed there with the CPU's own cosf
 * and sinf), so that positions rotate exactly as on the CPU.
 */
#include <math.h>

#include "cuda_dev.cuh"

/* ---- embedding ------------------------------------------------------------------------ */

static __global__ void k_embed(const struct cu_weight e, const struct cu_row *rows, float scale, float *x)
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

#define NORM_VPT 16 /* values per thread kept in registers: rows up to 4096 */

static __global__ void __launch_bounds__(NORM_THREADS) k_norm(const struct cu_norm_args a)
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
            r = norm_rscale(var, a.eps);
        } else {
            double sm = 0;
#pragma unroll
            for (int k = 0; k < NORM_VPT; k++)
                sm += (double)xv[k] * xv[k];
            float var = (float)(block_sum_d(sm, sh) / dim);
            r = norm_rscale(var, a.eps);
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
        r = norm_rscale(var, a.eps);
    } else {
        double s = 0;
        for (int c = threadIdx.x; c < dim; c += blockDim.x)
            s += (double)x[c] * x[c];
        float var = (float)(block_sum_d(s, sh) / dim);
        r = norm_rscale(var, a.eps);
    }
    for (int c = threadIdx.x; c < dim; c += blockDim.x)
        out[c] = norm_out(a.kind, x[c], mean, r, a.w, a.b, c);
}

extern "C" int cellm_cu_norm(const struct cu_norm_args *a, void *stream)
{
    return cu_launch(k_norm, dim3(a->n), dim3(NORM_THREADS), 0, (cudaStream_t)stream, *a);
}

static __global__ void k_add(float *x, const float *y, int64_t n)
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

/* ---- activations ---------------------------------------------------------------------- */

static __global__ void k_glu(float *gate, const float *up, int64_t total, int64_t m, const float *bg,
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

static __global__ void k_softcap(float *x, int64_t n, float c)
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
static __global__ void k_moe_route(const float *logits, int n, int E, int K, int renorm, int32_t *idx,
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

/* gpt-oss: one thread per row, mirroring the CPU's moe(): logits + bias, the top k by
 * repeated selection (strictly greater: ties go to the lower index), then
 * cellm_op_softmax over the k chosen logits */
static __global__ void k_moe_route_topk(const float *logits, const float *bias, int n, int E, int K,
                                        int renorm, int32_t *idx, float *wout)
{
    pdl_wait();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    const float *x = logits + (int64_t)i * E;
    int32_t *id = idx + (int64_t)i * K;
    float *w = wout + (int64_t)i * K;
    for (int k = 0; k < K; k++) {
        int best = -1;
        float bp = 0.f;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int j = 0; j < k; j++)
                taken |= id[j] == e;
            float p = bias ? __fadd_rn(x[e], bias[e]) : x[e];
            if (!taken && (best < 0 || p > bp)) {
                best = e;
                bp = p;
            }
        }
        id[k] = best;
        w[k] = bp;
    }
    float m = -INFINITY;
    for (int k = 0; k < K; k++)
        m = w[k] > m ? w[k] : m;
    double s = 0;
    for (int k = 0; k < K; k++) {
        w[k] = expf(__fsub_rn(w[k], m));
        s += w[k];
    }
    float inv = __fdiv_rn(1.0f, (float)s);
    for (int k = 0; k < K; k++)
        w[k] = __fmul_rn(w[k], inv);
    if (renorm) {
        float t = 0.f;
        for (int k = 0; k < K; k++)
            t = __fadd_rn(t, w[k]);
        for (int k = 0; k < K; k++)
            w[k] = __fdiv_rn(w[k], t);
    }
}

extern "C" int cellm_cu_moe_route_topk(const float *logits, const float *bias, int n, int E, int K,
                                       int renorm, int32_t *idx, float *w, void *stream)
{
    return cu_launch(k_moe_route_topk, dim3((n + 63) / 64), dim3(64), 0, (cudaStream_t)stream,
                     logits, bias, n, E, K, renorm, idx, w);
}

/* gpt-oss's expert activation, rounded step by step as cellm_op_swiglu_clamp */
static __global__ void k_swiglu_clamp(const float *gate, const float *up, int64_t ld, int64_t stride,
                                      float *out, int64_t total, int64_t m, float alpha, float limit)
{
    pdl_wait();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / m, c = i % m, at = r * ld + c * stride;
        float g = gate[at], u = up[at];
        /* torch.clamp: the gate only from above, up on both sides (NaN passes through) */
        g = g > limit ? limit : g;
        u = u > limit ? limit : u < -limit ? -limit : u;
        float t = __fmul_rn(g, alpha);
        float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-t)));
        float glu = __fmul_rn(g, sig);
        out[i] = __fmul_rn(__fadd_rn(u, 1.0f), glu);
    }
}

extern "C" int cellm_cu_swiglu_clamp(const float *gate, const float *up, int64_t ld, int64_t stride,
                                     float *out, int n, int64_t m, float alpha, float limit,
                                     void *stream)
{
    int64_t total = (int64_t)n * m;
    return cu_launch(k_swiglu_clamp, dim3(cu_blocks(total, 256)), dim3(256), 0,
                     (cudaStream_t)stream, gate, up, ld, stride, out, total, m, alpha, limit);
}

static __global__ void k_gather_rows(const float *src, const int32_t *map, int K, int m, int dim, float *dst)
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

static __global__ void k_scatter_rows(const float *src, const int32_t *map, int m, int dim, float *dst)
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

static __global__ void k_moe_combine(const float *y, const float *w, int n, int K, int dim, float *out)
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
