/*
 * cuda_attn.cu: attention at the GPU: the q/k/v epilogue (biases, q/k norms, RoPE, KV
 * cache write), attention of each row and head over its sequence's cache, the merge of
 * key splits, and for decode batches of distinct sequences one kernel doing all three.
 *
 * Rounding follows the CPU reference (src/exec/cpu/ops.c) operation by operation (see
 * cuda_ops.cu); RoPE's cos/sin come from the host.
 *
 * Attention splits each (row, head)'s keys into chunks of split_keys, one block each:
 * a block keeps its scores in shared memory, and writes either the final output (one
 * chunk) or its unnormalised partial output with its max and sum, which are merged by
 * k_attn_combine, or, in the fused kernel, by the last block of the (row, head) to finish.
 *
 * Attention sinks (gpt-oss; cu_attn_args.sinks): the head's sink logit joins the maximum and
 * adds exp(sink - max) to the denominator, once per (row, head): in the block when the keys
 * are not split, else in the merge; the prefill kernel starts its online softmax at max =
 * sink, sum = 1.
 */
#include <math.h>

#include "cuda_dev.cuh"

/* ---- q/k/v epilogue ------------------------------------------------------------------- */

/* Norm of one head vector held in shared memory, by one warp. */
static __device__ void head_norm(float *v, int hd, int kind, const float *w, float eps)
{
    int lane = threadIdx.x & 31;
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
        r = norm_rscale(var, eps);
    } else {
        double s = 0;
        for (int d = lane; d < hd; d += 32)
            s += (double)v[d] * v[d];
        float var = (float)(warp_sum_d(s) / hd);
        r = norm_rscale(var, eps);
    }
    __syncwarp();
    for (int d = lane; d < hd; d += 32)
        v[d] = norm_out(kind, v[d], mean, r, w, NULL, d);
    __syncwarp();
}

/* Head h of row i's q (isq) or k projection, with its bias, norm and RoPE, into v (shared
 * memory), by one warp. */
static __device__ void head_post(const struct cu_qkv_args &a, int i, int isq, int h, float *v)
{
    const int lane = threadIdx.x & 31, hd = a.hd;
    const int64_t qd = (int64_t)a.H * hd, kd = (int64_t)a.KVH * hd;
    const float *src = isq ? a.q + i * qd + (int64_t)h * hd : a.k + i * kd + (int64_t)h * hd;
    const float *bias = isq ? a.bq : a.bk;
    for (int d = lane; d < hd; d += 32) {
        float t = src[d];
        if (bias) t = __fadd_rn(t, bias[(int64_t)h * hd + d]);
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
    head_pos_warp(a, v, a.cs + (int64_t)i * half * 2, i, isq, hd);
}

/* Head h of row i's v projection with its bias, into v, by one warp. */
static __device__ void head_v(const struct cu_qkv_args &a, int i, int h, float *v)
{
    const int lane = threadIdx.x & 31, hd = a.hd;
    const float *vs = a.v + i * (int64_t)a.KVH * hd + (int64_t)h * hd;
    for (int d = lane; d < hd; d += 32) {
        float t = vs[d];
        if (a.bv) t = __fadd_rn(t, a.bv[(int64_t)h * hd + d]);
        v[d] = t;
    }
    __syncwarp();
}

static __global__ void k_qkv_post(const struct cu_qkv_args a)
{
    pdl_wait();
    __shared__ float v[512];
    int i = blockIdx.x, hh = blockIdx.y, lane = threadIdx.x, hd = a.hd;
    int64_t qd = (int64_t)a.H * hd, kd = (int64_t)a.KVH * hd;
    const struct cu_row row = a.rows[i];
    int isq = hh < a.H, h = isq ? hh : hh - a.H;
    head_post(a, i, isq, h, v);
    if (isq) {
        float *dst = a.q + i * qd + (int64_t)h * hd;
        for (int d = lane; d < hd; d += 32)
            dst[d] = v[d];
        return;
    }
    float *kc = cu_kv_at(row, a.layer, kd, row.pos) + (int64_t)h * hd;
    float *vc = kc + row.cap * kd;
    for (int d = lane; d < hd; d += 32)
        kc[d] = v[d];
    __syncwarp();
    head_v(a, i, h, v);
    for (int d = lane; d < hd; d += 32)
        vc[d] = v[d];
}

extern "C" int cellm_cu_qkv_post(const struct cu_qkv_args *a, void *stream)
{
    if (a->hd > 512 || a->n <= 0) return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)a->n, (unsigned)(a->H + a->KVH));
    return cu_launch(k_qkv_post, dim3(grid), dim3(32), 0, (cudaStream_t)stream, *a);
}

/* ---- attention ------------------------------------------------------------------------ */

#define ATT_THREADS 128
#define ATT_WARPS (ATT_THREADS / 32)

/* Merges the nsplit partials of (row i, head h) into the output; ew: nsplit floats of
 * shared memory (each split's weight exp(m_s - M), 0 for empty splits). The partials may
 * come from other blocks of the same grid: read around L1. */
static __device__ void combine_head(const struct cu_attn_args &a, int i, int h, float *ew,
                                    float *red)
{
    const int hd = a.hd, H = a.H;
    const float *p = a.part + ((int64_t)i * H + h) * a.nsplit * (hd + 2);
    float M = -INFINITY;
    for (int s = threadIdx.x; s < a.nsplit; s += ATT_THREADS) {
        float m = __ldcg(p + s * (hd + 2) + hd), l = __ldcg(p + s * (hd + 2) + hd + 1);
        ew[s] = m;
        if (l > 0) M = fmaxf(M, m);
    }
    M = block_max_w<ATT_WARPS>(M, red);
    const float sink = a.sinks ? a.sinks[h] : -INFINITY;
    M = fmaxf(M, sink);
    float L = 0.f;
    for (int s = threadIdx.x; s < a.nsplit; s += ATT_THREADS) {
        float l = __ldcg(p + s * (hd + 2) + hd + 1);
        float e = l > 0 ? expf(ew[s] - M) : 0.f;
        ew[s] = e;
        L += l > 0 ? l * e : 0.f;
    }
    L = block_sum_w<ATT_WARPS>(L, red); /* its barriers also publish ew */
    if (a.sinks) L += expf(sink - M);
    float inv = 1.0f / L;
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float o = 0.f;
#pragma unroll 4
        for (int s = 0; s < a.nsplit; s++)
            o += __ldcg(p + s * (hd + 2) + d) * ew[s];
        a.out[(int64_t)i * H * hd + (int64_t)h * hd + d] = o * inv;
    }
}

/*
 * One block: keys [k0, k1) of (row, head). Dynamic shared memory:
 * q[hd] | kcur[hd] | vcur[hd] | scores[max(split_keys, nsplit)] | acc[ATT_THREADS * 4].
 * FUSED: the block first makes its own q (and, if its keys end at the row's position,
 * that position's key and value) from the raw projections (head_post), so the current
 * key comes from shared memory; the first q head of each kv group writes it to the
 * cache. Only valid when no two rows of the batch share a sequence. With key splits,
 * the last block of a (row, head) to finish merges the partials (counter).
 */
template <bool FUSED>
static __device__ void attn_block(const struct cu_attn_args &a, const struct cu_qkv_args &qa,
                                  int *counter)
{
    extern __shared__ float smem[];
    __shared__ float red[ATT_WARPS];
    __shared__ int last;
    int hd = a.hd, H = a.H, G = H / a.KVH;
    int i = blockIdx.x / H, h = blockIdx.x % H, split = blockIdx.y;
    int kvh = h / G;
    const struct cu_row row = a.rows[i];
    int64_t kd = (int64_t)a.KVH * hd;
    int hi = row.pos, lo = attn_first_key(a, hi);
    int k0 = lo + split * a.split_keys, k1 = k0 + a.split_keys;
    if (k1 > hi + 1) k1 = hi + 1;
    const int nk = k1 - k0, cur = FUSED && nk > 0 && k1 == hi + 1;
    const int nkc = cur ? nk - 1 : nk; /* keys read from the cache */
    const int nsc = a.split_keys > a.nsplit ? a.split_keys : a.nsplit;
    float *q = smem, *kcur = q + hd, *vcur = kcur + hd, *sc = vcur + hd, *accs = sc + nsc;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const struct cu_kvh kv = cu_kv_head(row, a.layer, kd, (int64_t)kvh * hd);
    if (FUSED) {
        /* keys before the row's position were written by earlier steps, not by the kernels
         * this one waits for: pull them into L2 while the previous kernel finishes */
        const int lines = (hd * 4 + 127) / 128;
        for (int t = threadIdx.x; t < nkc * lines * 2; t += ATT_THREADS) {
            int key = t / (lines * 2), r = t % (lines * 2);
            const float *base = (r & 1) ? kv.v(k0 + key) : kv.k(k0 + key);
            asm volatile("prefetch.global.L2 [%0];" ::"l"(base + (r >> 1) * 32));
        }
    }
    pdl_wait();
    if (FUSED) {
        if (warp == 0)
            head_post(qa, i, 1, h, q);
        else if (warp == 1 && cur)
            head_post(qa, i, 0, kvh, kcur);
        else if (warp == 2 && cur)
            head_v(qa, i, kvh, vcur);
        __syncthreads();
        if (cur && h % G == 0) {
            float *kc = cu_kv_at(row, a.layer, kd, hi) + (int64_t)kvh * hd, *vc = kc + row.cap * kd;
            for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
                kc[d] = kcur[d];
                vc[d] = vcur[d];
            }
        }
    } else {
        const float *qg = a.q + (int64_t)i * H * hd + (int64_t)h * hd;
        for (int d = threadIdx.x; d < hd; d += ATT_THREADS)
            q[d] = qg[d];
        __syncthreads();
    }
    /* each warp scores KPW keys at a time: their loads are in flight together */
    constexpr int KPW = 8;
    for (int j0 = warp * KPW; j0 < nkc; j0 += ATT_WARPS * KPW) {
        float dot[KPW];
#pragma unroll
        for (int u = 0; u < KPW; u++)
            dot[u] = 0.f;
        for (int d = lane * 4; d < hd; d += 128) {
            float4 kr[KPW];
#pragma unroll
            for (int u = 0; u < KPW; u++)
                kr[u] = j0 + u < nkc ? *(const float4 *)(kv.k(k0 + j0 + u) + d)
                                     : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < KPW; u++) {
                dot[u] = fmaf(q[d], kr[u].x, dot[u]);
                dot[u] = fmaf(q[d + 1], kr[u].y, dot[u]);
                dot[u] = fmaf(q[d + 2], kr[u].z, dot[u]);
                dot[u] = fmaf(q[d + 3], kr[u].w, dot[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < KPW; u++) {
            float t = warp_sum(dot[u]);
            if (lane == 0 && j0 + u < nkc) sc[j0 + u] = attn_score(t, a);
        }
    }
    if (cur && warp == ATT_WARPS - 1) {
        float dot = 0.f;
        for (int d = lane; d < hd; d += 32)
            dot = fmaf(q[d], kcur[d], dot);
        dot = warp_sum(dot);
        if (lane == 0) sc[nk - 1] = attn_score(dot, a);
    }
    __syncthreads();
    float m = -INFINITY;
    for (int j = threadIdx.x; j < nk; j += ATT_THREADS)
        m = fmaxf(m, sc[j]);
    m = block_max_w<ATT_WARPS>(m, red);
    /* the sink once per (row, head): here when the keys are not split, else in the merge */
    const bool sink = a.sinks && a.nsplit == 1;
    const float sl = sink ? a.sinks[h] : -INFINITY;
    m = fmaxf(m, sl);
    float l = 0.f;
    if (nk > 0)
        for (int j = threadIdx.x; j < nk; j += ATT_THREADS) {
            float e = expf(__fsub_rn(sc[j], m));
            sc[j] = e;
            l += e;
        }
    l = block_sum_w<ATT_WARPS>(l, red);
    if (sink) l = __fadd_rn(l, expf(__fsub_rn(sl, m)));
    /* weighted sum of values: hd/4 threads per key, each owning 4 dims (16-byte loads),
     * ng groups of them split the keys; 4 keys in flight per thread */
    const int tpk = hd / 4, ng = ATT_THREADS / tpk;
    const int g = threadIdx.x / tpk, d4 = (threadIdx.x % tpk) * 4;
    if (g < ng) {
        constexpr int VK = 8; /* keys in flight per thread */
        float4 p[VK];
#pragma unroll
        for (int u = 0; u < VK; u++)
            p[u] = make_float4(0.f, 0.f, 0.f, 0.f);
        /* every pass has VK loads in flight (the last one masked): a serial tail of
         * dependent loads would cost a memory round trip per key */
        for (int j = g; j < nkc; j += VK * ng) {
            float4 vv[VK];
#pragma unroll
            for (int u = 0; u < VK; u++)
                vv[u] = j + u * ng < nkc ? *(const float4 *)(kv.v(k0 + j + u * ng) + d4)
                                         : make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
            for (int u = 0; u < VK; u++) {
                float w = j + u * ng < nkc ? sc[j + u * ng] : 0.f;
                p[u].x = fmaf(w, vv[u].x, p[u].x);
                p[u].y = fmaf(w, vv[u].y, p[u].y);
                p[u].z = fmaf(w, vv[u].z, p[u].z);
                p[u].w = fmaf(w, vv[u].w, p[u].w);
            }
        }
#pragma unroll
        for (int u = 1; u < VK; u++) {
            p[0].x += p[u].x;
            p[0].y += p[u].y;
            p[0].z += p[u].z;
            p[0].w += p[u].w;
        }
        *(float4 *)(accs + g * hd + d4) = p[0];
    }
    __syncthreads();
    float inv = a.nsplit == 1 ? __fdiv_rn(1.0f, l) : 0.f;
    float *o = a.out + (int64_t)i * H * hd + (int64_t)h * hd;
    float *pp = a.part + (((int64_t)i * H + h) * a.nsplit + split) * (hd + 2);
    for (int d = threadIdx.x; d < hd; d += ATT_THREADS) {
        float v = 0.f;
        for (int k = 0; k < ng; k++)
            v += accs[k * hd + d];
        if (cur) v = fmaf(sc[nk - 1], vcur[d], v);
        if (a.nsplit == 1)
            o[d] = __fmul_rn(v, inv);
        else
            pp[d] = v;
    }
    if (a.nsplit > 1 && threadIdx.x == 0) {
        pp[hd] = m;
        pp[hd + 1] = l;
    }
    if (!FUSED || a.nsplit == 1) return;
    /* the last of this (row, head)'s blocks to get here merges the splits */
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        int done = atomicAdd(counter + blockIdx.x, 1);
        last = done == a.nsplit - 1;
        if (last) counter[blockIdx.x] = 0; /* ready for the next launch */
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    combine_head(a, i, h, sc, red);
}

static __global__ void __launch_bounds__(ATT_THREADS) k_attention(const struct cu_attn_args a)
{
    const struct cu_qkv_args none = {};
    attn_block<false>(a, none, NULL);
}

static __global__ void __launch_bounds__(ATT_THREADS)
    k_attn_fused(const struct cu_attn_args a, const struct cu_qkv_args qa, int *counter)
{
    attn_block<true>(a, qa, counter);
}

static __global__ void __launch_bounds__(ATT_THREADS) k_attn_combine(const struct cu_attn_args a)
{
    pdl_wait();
    extern __shared__ float ew[];
    __shared__ float red[ATT_WARPS];
    combine_head(a, blockIdx.x / a.H, blockIdx.x % a.H, ew, red);
}

static size_t attn_smem(const struct cu_attn_args *a)
{
    size_t nsc = (size_t)(a->split_keys > a->nsplit ? a->split_keys : a->nsplit);
    return (3 * (size_t)a->hd + nsc + 4 * ATT_THREADS) * sizeof(float);
}

static int attn_smem_ok(const struct cu_attn_args *a, const void *k)
{
    size_t sh = attn_smem(a);
    if (sh <= 48 * 1024) return 0;
    return (int)cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh);
}

extern "C" int cellm_cu_attention(const struct cu_attn_args *a, void *stream)
{
    if (a->hd % 4 || a->hd > 2 * ATT_THREADS) return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)(a->n * a->H), (unsigned)a->nsplit);
    int e = attn_smem_ok(a, (const void *)k_attention);
    if (!e)
        e = cu_launch(k_attention, grid, dim3(ATT_THREADS), attn_smem(a), (cudaStream_t)stream, *a);
    if (e || a->nsplit == 1) return e;
    return cu_launch(k_attn_combine, dim3(a->n * a->H), dim3(ATT_THREADS),
                     (size_t)a->nsplit * sizeof(float), (cudaStream_t)stream, *a);
}

extern "C" int cellm_cu_attention_fused(const struct cu_qkv_args *qa, const struct cu_attn_args *a,
                                        int *counters, void *stream)
{
    if (a->hd % 4 || a->hd > 2 * ATT_THREADS || a->hd > 512 || ATT_WARPS < 4)
        return (int)cudaErrorInvalidValue;
    dim3 grid((unsigned)(a->n * a->H), (unsigned)a->nsplit);
    int e = attn_smem_ok(a, (const void *)k_attn_fused);
    if (!e)
        e = cu_launch(k_attn_fused, grid, dim3(ATT_THREADS), attn_smem(a), (cudaStream_t)stream, *a,
                      *qa, counters);
    return e;
}

/* ---- prefill: tiles of queries over tiles of keys ------------------------------------ */

#define PF_QT 32               /* query rows per block */
#define PF_KT 32               /* keys per tile */
#define PF_THREADS (PF_QT * 8) /* 8 threads per query row */
#define PF_LDP (PF_KT + 1)     /* padded rows of P: the 4 rows a warp reads sit in distinct banks */

/*
 * Attention of n consecutive positions of one sequence (rows i = 0..n-1 at positions
 * rows[0].pos + i), one block per (32 rows, head): every key and value tile is read from
 * the cache once per block instead of once per row. Softmax is online: per tile, the
 * row's running max m, sum l and output are rescaled by exp(m_old - m_new), as the key
 * splits are merged at decode. Thread t owns row t/8: 4 scores of each tile (keys t%8 +
 * 8k) and an eighth of the row's output (dims 4*(t%8) + 32k + 0..3).
 * Dynamic shared memory: Q[32][hd+4] | K[32][hd+4] | V[32][hd] | P[32][33] (Q and K rows
 * padded so that a warp's 16-byte reads of 4 rows or 8 keys fall in distinct banks).
 */
template <int HD> /* the head dimension, or 0: a.hd (loops unroll for the common sizes) */
static __global__ void __launch_bounds__(PF_THREADS) k_attn_prefill(const struct cu_attn_args a)
{
    pdl_wait();
    extern __shared__ float smem[];
    const int hd = HD ? HD : a.hd, H = a.H, h = blockIdx.y, kvh = h / (H / a.KVH), ldk = hd + 4,
              ldq = hd + 4;
    const int i0 = blockIdx.x * PF_QT, t = threadIdx.x, r = t / 8, c = t % 8;
    float *Qs = smem, *Ks = Qs + PF_QT * ldq, *Vs = Ks + PF_KT * ldk, *Ps = Vs + PF_KT * hd;
    const struct cu_row row0 = a.rows[0];
    const int64_t kd = (int64_t)a.KVH * hd;
    const struct cu_kvh kv = cu_kv_head(row0, a.layer, kd, (int64_t)kvh * hd);
    const int nr = a.n - i0 < PF_QT ? a.n - i0 : PF_QT; /* rows of this block */
    const int p0 = row0.pos + i0, pr = p0 + r;          /* first row's and my row's position */
    const bool valid = r < nr;
    /* the first key is non-decreasing in the position: row 0's is the block's lowest */
    const int lo_r = attn_first_key(a, pr), lo0 = attn_first_key(a, p0);
    const int kend = p0 + nr - 1; /* last key any row sees */
    for (int e = t; e < PF_QT * hd / 4; e += PF_THREADS) {
        int rr = e / (hd / 4), d4 = e % (hd / 4) * 4;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (rr < nr)
            v = *(const float4 *)(a.q + (int64_t)(i0 + rr) * H * hd + (int64_t)h * hd + d4);
        *(float4 *)(Qs + rr * ldq + d4) = v;
    }
    const int ND = (hd + 31) / 32; /* float4 output pieces per thread (hd <= 256) */
    float4 o[8];
#pragma unroll
    for (int k = 0; k < 8; k++)
        o[k] = make_float4(0.f, 0.f, 0.f, 0.f);
    /* with a sink, the online softmax starts from its logit: max = sink, sum = exp(0) */
    float m = a.sinks ? a.sinks[h] : -INFINITY, l = a.sinks ? 1.f : 0.f;
    for (int kb = lo0 - lo0 % PF_KT; kb <= kend; kb += PF_KT) {
        __syncthreads(); /* the previous tile's readers are done (and Q is stored) */
        for (int e = t; e < PF_KT * hd / 4; e += PF_THREADS) {
            int j = e / (hd / 4), d4 = e % (hd / 4) * 4;
            float4 kr = make_float4(0.f, 0.f, 0.f, 0.f), vv = kr;
            if (kb + j <= kend) {
                const float *kp = kv.k(kb + j) + d4;
                kr = *(const float4 *)kp;
                vv = *(const float4 *)(kp + kv.vd);
            }
            *(float4 *)(Ks + j * ldk + d4) = kr;
            *(float4 *)(Vs + j * hd + d4) = vv;
        }
        __syncthreads();
        float s[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll 8
        for (int d = 0; d < hd; d += 4) {
            float4 qv = *(const float4 *)(Qs + r * ldq + d);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float4 kx = *(const float4 *)(Ks + (c + 8 * k) * ldk + d);
                s[k] = fmaf(qv.x, kx.x, s[k]);
                s[k] = fmaf(qv.y, kx.y, s[k]);
                s[k] = fmaf(qv.z, kx.z, s[k]);
                s[k] = fmaf(qv.w, kx.w, s[k]);
            }
        }
        float tmax = -INFINITY;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int key = kb + c + 8 * k;
            s[k] = valid && key >= lo_r && key <= pr ? attn_score(s[k], a) : -INFINITY;
            tmax = fmaxf(tmax, s[k]);
        }
#pragma unroll
        for (int off = 4; off > 0; off >>= 1)
            tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, off));
        const float mn = fmaxf(m, tmax);
        /* a row that has seen no key yet keeps m = -inf: nothing to rescale */
        const float corr = mn == -INFINITY ? 1.f : expf(__fsub_rn(m, mn));
        float ps = 0.f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float e = s[k] == -INFINITY ? 0.f : expf(__fsub_rn(s[k], mn));
            Ps[r * PF_LDP + c + 8 * k] = e;
            ps += e;
        }
#pragma unroll
        for (int off = 4; off > 0; off >>= 1)
            ps += __shfl_xor_sync(0xffffffffu, ps, off);
        l = l * corr + ps;
        m = mn;
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (k < ND && 4 * c + 32 * k < hd) {
                o[k].x *= corr;
                o[k].y *= corr;
                o[k].z *= corr;
                o[k].w *= corr;
            }
        __syncwarp(); /* a row's 8 threads share a warp: its P row is visible */
#pragma unroll 4
        for (int j = 0; j < PF_KT; j++) {
            const float p = Ps[r * PF_LDP + j];
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (k < ND && 4 * c + 32 * k < hd) {
                    float4 vv = *(const float4 *)(Vs + j * hd + 4 * c + 32 * k);
                    o[k].x = fmaf(p, vv.x, o[k].x);
                    o[k].y = fmaf(p, vv.y, o[k].y);
                    o[k].z = fmaf(p, vv.z, o[k].z);
                    o[k].w = fmaf(p, vv.w, o[k].w);
                }
        }
    }
    if (!valid) return;
    const float inv = __fdiv_rn(1.0f, l);
    float *out = a.out + (int64_t)(i0 + r) * H * hd + (int64_t)h * hd;
#pragma unroll
    for (int k = 0; k < 8; k++)
        if (k < ND && 4 * c + 32 * k < hd) {
            float4 v = o[k];
            v.x = __fmul_rn(v.x, inv);
            v.y = __fmul_rn(v.y, inv);
            v.z = __fmul_rn(v.z, inv);
            v.w = __fmul_rn(v.w, inv);
            *(float4 *)(out + 4 * c + 32 * k) = v;
        }
}

extern "C" int cellm_cu_attention_prefill(const struct cu_attn_args *a, void *stream)
{
    if (a->hd % 4 || a->hd > 256 || a->n < 1) return (int)cudaErrorInvalidValue;
    size_t sh = ((size_t)PF_QT * (a->hd + 4) + (size_t)PF_KT * (a->hd + 4) + (size_t)PF_KT * a->hd +
                 PF_QT * PF_LDP) *
                sizeof(float);
    void (*k)(const struct cu_attn_args) = a->hd == 64    ? k_attn_prefill<64>
                                           : a->hd == 128 ? k_attn_prefill<128>
                                           : a->hd == 256 ? k_attn_prefill<256>
                                                          : k_attn_prefill<0>;
    if (sh > 48 * 1024) {
        cudaError_t e =
            cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh);
        if (e != cudaSuccess) return (int)e;
    }
    dim3 grid((unsigned)((a->n + PF_QT - 1) / PF_QT), (unsigned)a->H);
    return cu_launch(k, grid, dim3(PF_THREADS), sh, (cudaStream_t)stream, *a);
}
