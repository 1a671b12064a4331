/*
 * cuda_state.cu: the kernels of the state layers (docs/forward/sequence-state.md, lfm2.md,
 * qwen3-next.md): the causal depthwise conv over each sequence's window. cuda_state.c
 * drives them.
 *
 * Rows run in order within a launch: a row reads the window its sequence's earlier rows
 * left, so a batch of many sequences, or a prompt in any chunks, gives what the CPU's
 * per-token recurrence (src/exec/cpu/conv_state.c) gives. Elementwise steps round like the
 * CPU reference: __fmul_rn/__fadd_rn/__fdiv_rn keep nvcc from contracting them into fused
 * multiply-adds, and sums run in the CPU's order.
 */
#include <math.h>

#include "cuda_dev.cuh"

/* One thread per channel; the channel's window stays in registers over the rows of one
 * sequence and is written back when the next row belongs to another (or at the end). */
static __global__ void k_conv(const struct cu_conv_args a)
{
    pdl_wait();
    const int64_t ch = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (ch >= a.C) return;
    const int K = a.K;
    const int64_t C = a.C;
    float w[CU_CONV_MAX_K], win[CU_CONV_MAX_K];
    for (int j = 0; j < K; j++)
        w[j] = a.w[ch * K + j];
    float *cur = NULL; /* the window held in win[] */
    for (int i = 0; i < a.n; i++) {
        float *st = a.rows[i].st + a.off;
        if (st != cur) {
            if (cur)
                for (int j = 0; j < K - 1; j++)
                    cur[(int64_t)j * C + ch] = win[j];
            for (int j = 0; j < K - 1; j++)
                win[j] = st[(int64_t)j * C + ch];
            cur = st;
        }
        float x = a.x[(int64_t)i * a.ldx + ch];
        if (a.pre) x = __fmul_rn(a.pre[(int64_t)i * a.ldx + ch], x);
        float s = 0.0f;
        for (int j = 0; j < K - 1; j++)
            s = __fadd_rn(s, __fmul_rn(w[j], win[j]));
        float y = __fadd_rn(s, __fmul_rn(w[K - 1], x));
        for (int j = 0; j + 1 < K - 1; j++)
            win[j] = win[j + 1];
        if (K > 1) win[K - 2] = x;
        if (a.post)
            y = __fmul_rn(a.post[(int64_t)i * a.ldx + ch], y);
        else if (a.silu)
            y = __fdiv_rn(y, __fadd_rn(1.0f, expf(-y)));
        a.y[(int64_t)i * a.ldy + ch] = y;
    }
    if (cur)
        for (int j = 0; j < K - 1; j++)
            cur[(int64_t)j * C + ch] = win[j];
}

extern "C" int cellm_cu_conv(const struct cu_conv_args *a, void *stream)
{
    if (a->n <= 0 || a->C <= 0) return 0;
    if (a->K < 1 || a->K > CU_CONV_MAX_K) return (int)cudaErrorInvalidValue;
    const int T = 128;
    return cu_launch(k_conv, dim3((unsigned)((a->C + T - 1) / T)), dim3(T), 0,
                     (cudaStream_t)stream, *a);
}

/* ---- Gated DeltaNet ----------------------------------------------------------------------- */

static __device__ __forceinline__ float sigmoid_rn(float x)
{
    return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x)));
}

/* Sum of a block's values in double (any order: the reference's sums are in double too). */
static __device__ double block_dsum(double v, double *sh)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    const int w = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    __syncthreads();
    if ((threadIdx.x & 31) == 0) sh[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++)
        s += sh[i];
    return s;
}

/* Qwen3-Next's grouped projections into the conv input [q | k | v], z, b and a: per key
 * head g, [q_g, k_g, v (r heads), z (r heads)] and [b (r), a (r)]. One block per row. */
static __global__ void k_gdn_gather(const struct cu_gdn_args a)
{
    pdl_wait();
    const int i = blockIdx.x, dk = a.dk, dv = a.dv, nk = a.nk, nv = a.nv, r = nv / nk;
    const int64_t kd = (int64_t)nk * dk, vd = (int64_t)nv * dv, ch = 2 * kd + vd;
    const int64_t grp = 2 * dk + 2 * (int64_t)r * dv;
    const float *p = a.proj + (int64_t)i * (2 * kd + 2 * vd);
    const float *ba = a.proj2 + (int64_t)i * 2 * nv;
    float *cin = a.conv_in + (int64_t)i * ch, *z = a.z + (int64_t)i * vd;
    for (int64_t t = threadIdx.x; t < 2 * kd + 2 * vd; t += blockDim.x) {
        const int64_t g = t / grp, o = t % grp;
        const float v = p[t];
        if (o < dk)
            cin[g * dk + o] = v;
        else if (o < 2 * dk)
            cin[kd + g * dk + (o - dk)] = v;
        else if (o < 2 * dk + (int64_t)r * dv)
            cin[2 * kd + g * r * dv + (o - 2 * dk)] = v;
        else
            z[g * r * dv + (o - 2 * dk - (int64_t)r * dv)] = v;
    }
    for (int t = threadIdx.x; t < 2 * nv; t += blockDim.x) {
        const int g = t / (2 * r), o = t % (2 * r);
        if (o < r)
            a.b[(int64_t)i * nv + g * r + o] = ba[t];
        else
            a.a[(int64_t)i * nv + g * r + (o - r)] = ba[t];
    }
}

/* After the conv: q and k of key head blockIdx.y of row blockIdx.x normalised (l2, then q
 * times dk^-0.5); block y == nk does the row's gates: beta = sigmoid(b), log-decay
 * -exp(A_log) * softplus(a + dt_bias). */
static __global__ void k_gdn_qk(const struct cu_gdn_args a)
{
    pdl_wait();
    __shared__ double sh[32];
    const int i = blockIdx.x, g = blockIdx.y, dk = a.dk, nv = a.nv;
    const int64_t kd = (int64_t)a.nk * dk, ch = 2 * kd + (int64_t)nv * a.dv;
    if (g == a.nk) {
        for (int v = threadIdx.x; v < nv; v += blockDim.x) {
            float *bb = a.b + (int64_t)i * nv + v, *aa = a.a + (int64_t)i * nv + v;
            *bb = sigmoid_rn(*bb);
            const float na = -expf(a.a_log[v]);
            const float x = __fadd_rn(*aa, a.dt_bias[v]);
            const float sp = x > 20.0f ? x : log1pf(expf(x));
            *aa = __fmul_rn(na, sp);
        }
        return;
    }
    float *u = a.conv_out + (int64_t)i * ch;
    for (int part = 0; part < 2; part++) {
        float *x = u + (part ? kd : 0) + (int64_t)g * dk;
        double s = 0;
        for (int t = threadIdx.x; t < dk; t += blockDim.x)
            s += (double)x[t] * x[t];
        s = block_dsum(s, sh);
        const float rs = __fdiv_rn(1.0f, sqrtf(__fadd_rn((float)s, 1e-6f)));
        __syncthreads(); /* every thread has read x before it changes */
        for (int t = threadIdx.x; t < dk; t += blockDim.x) {
            float y = __fmul_rn(x[t], rs);
            x[t] = part ? y : __fmul_rn(y, a.scale);
        }
    }
}

/* The delta rule, one block per value head, one thread per column y of each [dk][dv] S,
 * rows in order (each on its sequence's S): decay, read (mem = S^T k), delta, write
 * (S += k mem^T), read out (o = S^T q), in the CPU's order of operations (deltanet.c). */
static __global__ void k_gdn_rec(const struct cu_gdn_args a)
{
    pdl_wait();
    extern __shared__ float qk[]; /* [2][dk] */
    const int v = blockIdx.x, y = threadIdx.x, dk = a.dk, dv = a.dv, nv = a.nv;
    const int kh = v / (nv / a.nk);
    const int64_t kd = (int64_t)a.nk * dk, ch = 2 * kd + (int64_t)nv * dv, vd = (int64_t)nv * dv;
    for (int i = 0; i < a.n; i++) {
        const float *u = a.conv_out + (int64_t)i * ch;
        __syncthreads(); /* the previous row's reads of qk are done */
        for (int t = threadIdx.x; t < dk; t += blockDim.x) {
            qk[t] = u[(int64_t)kh * dk + t];
            qk[dk + t] = u[kd + (int64_t)kh * dk + t];
        }
        __syncthreads();
        if (y >= dv) continue;
        float *S = a.rows[i].st + a.off + (int64_t)v * dk * dv + y;
        const float decay = expf(a.a[(int64_t)i * nv + v]);
        const float beta = a.b[(int64_t)i * nv + v];
        float mem = 0.0f;
        for (int x = 0; x < dk; x++) {
            const float s = __fmul_rn(S[(int64_t)x * dv], decay);
            S[(int64_t)x * dv] = s;
            mem = __fadd_rn(mem, __fmul_rn(s, qk[dk + x]));
        }
        mem = __fmul_rn(__fsub_rn(u[2 * kd + (int64_t)v * dv + y], mem), beta);
        float o = 0.0f;
        for (int x = 0; x < dk; x++) {
            const float s = __fadd_rn(S[(int64_t)x * dv], __fmul_rn(qk[dk + x], mem));
            S[(int64_t)x * dv] = s;
            o = __fadd_rn(o, __fmul_rn(s, qk[x]));
        }
        a.core[(int64_t)i * vd + (int64_t)v * dv + y] = o;
    }
}

/* The gated RMSNorm per (row, value head): (w * (o * rsqrt(mean(o^2) + eps))) * silu(z). */
static __global__ void k_gdn_norm(const struct cu_gdn_args a)
{
    pdl_wait();
    __shared__ double sh[32];
    const int i = blockIdx.x, v = blockIdx.y, dv = a.dv;
    const int64_t base = (int64_t)i * a.nv * dv + (int64_t)v * dv;
    float *o = a.core + base;
    const float *z = a.z + base;
    double s = 0;
    for (int y = threadIdx.x; y < dv; y += blockDim.x)
        s += (double)o[y] * o[y];
    s = block_dsum(s, sh);
    const float rs = __fdiv_rn(1.0f, sqrtf(__fadd_rn((float)(s / dv), a.eps)));
    for (int y = threadIdx.x; y < dv; y += blockDim.x) {
        const float nrm = __fmul_rn(a.norm[y], __fmul_rn(o[y], rs));
        const float sz = __fdiv_rn(z[y], __fadd_rn(1.0f, expf(-z[y])));
        o[y] = __fmul_rn(nrm, sz);
    }
}

extern "C" int cellm_cu_gdn(const struct cu_gdn_args *a, int stage, void *stream)
{
    if (a->n <= 0) return 0;
    cudaStream_t st = (cudaStream_t)stream;
    switch (stage) {
    case CU_GDN_GATHER:
        return cu_launch(k_gdn_gather, dim3(a->n), dim3(256), 0, st, *a);
    case CU_GDN_QK:
        return cu_launch(k_gdn_qk, dim3(a->n, a->nk + 1), dim3(128), 0, st, *a);
    case CU_GDN_REC: {
        if (a->dv > 1024) return (int)cudaErrorInvalidValue;
        const int T = (a->dv + 31) / 32 * 32;
        return cu_launch(k_gdn_rec, dim3(a->nv), dim3(T), (size_t)2 * a->dk * sizeof(float), st,
                         *a);
    }
    case CU_GDN_NORM:
        return cu_launch(k_gdn_norm, dim3(a->n, a->nv), dim3(128), 0, st, *a);
    }
    return (int)cudaErrorInvalidValue;
}

/* ---- gated attention (Qwen3-Next / Qwen3.5) --------------------------------------------- */

static __global__ void k_gate_split(const float *qg, float *q, int H, int hd)
{
    pdl_wait();
    const int i = blockIdx.x;
    const int64_t qd = (int64_t)H * hd;
    for (int64_t t = threadIdx.x; t < qd; t += blockDim.x)
        q[i * qd + t] = qg[i * 2 * qd + (t / hd) * 2 * hd + t % hd];
}

static __global__ void k_gate_apply(const float *qg, float *att, int H, int hd)
{
    pdl_wait();
    const int i = blockIdx.x;
    const int64_t qd = (int64_t)H * hd;
    for (int64_t t = threadIdx.x; t < qd; t += blockDim.x) {
        const float g = qg[i * 2 * qd + (t / hd) * 2 * hd + hd + t % hd];
        att[i * qd + t] = __fmul_rn(att[i * qd + t], sigmoid_rn(g));
    }
}

extern "C" int cellm_cu_attn_gate(const float *qg, float *q_or_att, int n, int H, int hd,
                                  int apply, void *stream)
{
    if (n <= 0) return 0;
    if (apply)
        return cu_launch(k_gate_apply, dim3(n), dim3(256), 0, (cudaStream_t)stream, qg, q_or_att,
                         H, hd);
    return cu_launch(k_gate_split, dim3(n), dim3(256), 0, (cudaStream_t)stream, qg, q_or_att, H,
                     hd);
}
