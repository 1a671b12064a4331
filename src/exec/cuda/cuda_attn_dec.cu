/*
 * cuda_attn_dec.cu: decode attention for batches of distinct sequences as one thread-block
 * cluster per (row, head) (k_attn_dec), or per (row, kv head) with the kv head's query heads
 * sharing each tile (k_attn_gqa, below), for head sizes 64, 128 and 256.
 *
 * Why: at batch 1 attention is a chain of dependent memory round trips, not bandwidth
 * (k_attn_fused spends ~14 us per layer on a few hundred keys). Here:
 * - the cluster's CS blocks split the row's keys evenly (the split follows the position
 *   at run time, so a captured graph stays valid as the context grows);
 * - before griddepcontrol.wait, each block loads its first tile of cached keys and values
 *   into shared memory, and RoPE's cos/sin: none of them is written by the kernels this
 *   one waits for (earlier positions were cached by earlier steps);
 * - after the wait, one round trip fetches q (and the current k, v), with their biases
 *   and norm weights loaded alongside;
 * - the blocks merge their partial softmax states through distributed shared memory, not
 *   global memory and an atomic counter.
 *
 * Numbers follow k_attn_fused: scores are fl(q.k * scale) (optionally soft-capped),
 * exp(s - max), and the splits merge as in combine_head (M over non-empty splits,
 * weights exp(m_s - M), out = sum_s o_s e_s * (1 / L)). A block with more keys than one
 * tile rescales its running sums between tiles (online softmax). An attention sink
 * (cu_attn_args.sinks) enters only the merge: M = max(M, sink), L += exp(sink - M), one term
 * per head, its logit loaded before griddepcontrol.wait.
 */
#include <cooperative_groups.h>
#include <math.h>

#include "cuda_dev.cuh"

namespace cg = cooperative_groups;

#define AD_THREADS 128
#define AD_WARPS (AD_THREADS / 32)

template <int HD> struct ad_cfg {
    static constexpr int TK = HD > 128 ? 32 : 48; /* keys per shared-memory tile */
    static constexpr int LDK = HD + 4; /* padded key rows: 4 keys per phase, no conflicts */
    static constexpr int DPT = (HD + AD_THREADS - 1) / AD_THREADS; /* output dims per thread */
    /* floats: K tile | V tile | q | kcur | vcur | scores | cos/sin | partial out | m, l */
    static constexpr int SMEM = TK * LDK + TK * HD + 3 * HD + TK + HD + HD + 2;
};

/* keys [key0, key0 + nt) of the cache into the shared tiles, as asynchronous copies
 * (every copy of the tile in flight at once; no registers held): ad_wait before use */
template <int HD>
static __device__ __forceinline__ void ad_load_tile(const struct cu_kvh &kv, int key0, int nt,
                                                    float *Ks, float *Vs)
{
    typedef ad_cfg<HD> C;
    for (int e = threadIdx.x; e < nt * (HD / 4); e += blockDim.x) {
        const int j = e / (HD / 4), d4 = e % (HD / 4) * 4;
        const unsigned ks = (unsigned)__cvta_generic_to_shared(Ks + j * C::LDK + d4),
                       vs = (unsigned)__cvta_generic_to_shared(Vs + j * HD + d4);
        const float *kp = kv.k(key0 + j) + d4;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(ks), "l"(kp));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(vs), "l"(kp + kv.vd));
    }
}

/* this thread's copies have landed (a barrier then publishes everyone's) */
static __device__ __forceinline__ void ad_wait()
{
    asm volatile("cp.async.wait_all;" ::: "memory");
}

/* What a block may fetch before griddepcontrol.wait (the kernels waited for write none of
 * it): row i's RoPE cos/sin into cs, and its first tile of at most TK cached keys and values
 * from key0 (asynchronous: ad_wait before use). Each thread stores its own share of cs: a
 * block barrier must come before any warp reads it. */
template <int HD>
static __device__ void ad_prefetch(const struct cu_qkv_args &qa, int i, float *cs,
                                   const struct cu_kvh &kv, int key0, int nt, float *Ks, float *Vs)
{
    const int half = qa.rot / 2;
    for (int d = threadIdx.x; d < 2 * half; d += blockDim.x)
        cs[d] = qa.cs[(int64_t)i * half * 2 + d];
    ad_load_tile<HD>(kv, key0, nt, Ks, Vs);
}

/* The keys of block `rank` of a CS-block cluster over row i's keys lo..hi (the sliding
 * window's, else all): [k0, k1); cur when it holds the current key hi (not yet cached), nkc
 * the keys it reads from the cache; kv the cache of kv head kvh. */
struct ad_keys {
    int k0, k1, nkc;
    bool cur;
    struct cu_kvh kv;
};

static __device__ __forceinline__ struct ad_keys
ad_split(const struct cu_attn_args &a, const struct cu_row &row, int kvh, int hd, int CS, int rank)
{
    struct ad_keys r;
    const int64_t kd = (int64_t)a.KVH * hd;
    const int hi = row.pos;
    const int lo = attn_first_key(a, hi);
    const int nk = hi - lo + 1, ck = (nk + CS - 1) / CS;
    r.k0 = lo + rank * ck;
    r.k1 = min(r.k0 + ck, hi + 1);
    r.cur = r.k1 > r.k0 && r.k1 == hi + 1;
    r.nkc = r.k1 > r.k0 ? (r.cur ? r.k1 - r.k0 - 1 : r.k1 - r.k0) : 0;
    r.kv = cu_kv_head(row, a.layer, kd, (int64_t)kvh * hd);
    return r;
}

/* One head vector of row i (q if isq, else k) with bias, norm and RoPE into v (shared),
 * by one warp; every global load is issued before the first use. The norm reproduces
 * head_norm (cuda_attn.cu) operation by operation. */
template <int HD>
static __device__ void ad_head_post(const struct cu_qkv_args &a, int i, int isq, int h, float *v,
                                    const float *cs)
{
    constexpr int J = HD / 32;
    const int lane = threadIdx.x & 31;
    const int64_t qd = (int64_t)a.H * HD, kd = (int64_t)a.KVH * HD;
    const float *src = isq ? a.q + i * qd + (int64_t)h * HD : a.k + i * kd + (int64_t)h * HD;
    const float *bias = isq ? a.bq : a.bk;
    const float *nh = isq ? a.qn_heads : a.kn_heads, *ns = isq ? a.qn : a.kn;
    const float *nw = nh ? nh + (int64_t)h * HD : ns;
    const int kind = nh ? 2 : a.qk_kind;
    float x[J], b[J], w[J];
#pragma unroll
    for (int j = 0; j < J; j++) {
        const int d = lane + 32 * j;
        x[j] = src[d];
        b[j] = bias ? bias[(int64_t)h * HD + d] : 0.f;
        w[j] = nw ? nw[d] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < J; j++)
        if (bias) x[j] = __fadd_rn(x[j], b[j]);
    if (nw) {
        float mean = 0.f, r;
        if (kind == 2) {
            double s = 0;
#pragma unroll
            for (int j = 0; j < J; j++)
                s += x[j];
            mean = (float)(warp_sum_d(s) / HD);
            double q = 0;
#pragma unroll
            for (int j = 0; j < J; j++) {
                float t = __fsub_rn(x[j], mean);
                q += (double)t * t;
            }
            r = norm_rscale((float)(warp_sum_d(q) / HD), a.eps);
        } else {
            double s = 0;
#pragma unroll
            for (int j = 0; j < J; j++)
                s += (double)x[j] * x[j];
            r = norm_rscale((float)(warp_sum_d(s) / HD), a.eps);
        }
#pragma unroll
        for (int j = 0; j < J; j++)
            x[j] = norm_out_v(kind, x[j], mean, r, true, w[j], false, 0.f);
    }
#pragma unroll
    for (int j = 0; j < J; j++)
        v[lane + 32 * j] = x[j];
    __syncwarp();
    head_pos_warp(a, v, cs, i, isq, HD);
}

template <int HD>
static __global__ void __launch_bounds__(AD_THREADS)
    k_attn_dec(const struct cu_attn_args a, const struct cu_qkv_args qa)
{
    typedef ad_cfg<HD> C;
    constexpr int TK = C::TK, LDK = C::LDK;
    extern __shared__ float sm[];
    __shared__ float red[AD_WARPS];
    float *Ks = sm, *Vs = Ks + TK * LDK, *q = Vs + TK * HD, *kcur = q + HD, *vcur = kcur + HD,
          *sc = vcur + HD, *cs = sc + TK, *ob = cs + HD, *st = ob + HD;
    cg::cluster_group cl = cg::this_cluster();
    const int CS = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int H = a.H, G = H / a.KVH, i = blockIdx.y / H, h = blockIdx.y % H, kvh = h / G;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const struct cu_row row = a.rows[i];
    const int64_t kd = (int64_t)a.KVH * HD;
    const int hi = row.pos;
    const struct ad_keys ks = ad_split(a, row, kvh, HD, CS, rank);
    const int k0 = ks.k0, k1 = ks.k1, nkc = ks.nkc;
    const bool cur = ks.cur;
    const struct cu_kvh &kv = ks.kv;
    const float sink = a.sinks && warp == 0 ? a.sinks[h] : -INFINITY; /* a weight */

    ad_prefetch<HD>(qa, i, cs, kv, k0, min(nkc, TK), Ks, Vs);
    pdl_wait();
    __syncthreads(); /* every thread's part of cs is in before any warp rotates with it */

    if (warp == 0)
        ad_head_post<HD>(qa, i, 1, h, q, cs);
    else if (warp == 1 && cur)
        ad_head_post<HD>(qa, i, 0, kvh, kcur, cs);
    else if (warp == 2 && cur) {
        const float *vs = qa.v + i * kd + (int64_t)kvh * HD;
        float x[HD / 32], b[HD / 32];
#pragma unroll
        for (int j = 0; j < HD / 32; j++) {
            x[j] = vs[lane + 32 * j];
            b[j] = qa.bv ? qa.bv[(int64_t)kvh * HD + lane + 32 * j] : 0.f;
        }
#pragma unroll
        for (int j = 0; j < HD / 32; j++)
            vcur[lane + 32 * j] = qa.bv ? __fadd_rn(x[j], b[j]) : x[j];
    }
    ad_wait(); /* the first tile, requested before the wait */
    __syncthreads();
    if (cur && h % G == 0) {
        float *kc = cu_kv_at(row, a.layer, kd, hi) + (int64_t)kvh * HD, *vc = kc + row.cap * kd;
        for (int d = tid; d < HD; d += AD_THREADS) {
            kc[d] = kcur[d];
            vc[d] = vcur[d];
        }
    }
    /* the current key's score first, so that with one tile the maximum is taken over all
     * of the block's keys at once, as in k_attn_fused */
    float m = -INFINITY, l = 0.f, scur = -INFINITY;
    if (cur) {
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < HD / 32; j++)
            dot = fmaf(q[lane + 32 * j], kcur[lane + 32 * j], dot);
        scur = attn_score(warp_sum(dot), a);
        m = scur;
    }
    float o[C::DPT];
#pragma unroll
    for (int k = 0; k < C::DPT; k++)
        o[k] = 0.f;
#pragma unroll 1
    for (int t0 = 0; t0 < nkc; t0 += TK) {
        const int nt = min(TK, nkc - t0);
        if (t0 > 0) {
            __syncthreads(); /* the previous tile's readers are done */
            ad_load_tile<HD>(kv, k0 + t0, nt, Ks, Vs);
            ad_wait();
            __syncthreads();
        }
        /* scores: 4 threads per key, each over every fourth float4 of the head (the
         * passes are uniform across the block: the shuffles need whole warps) */
        for (int j0 = 0; j0 < nt; j0 += AD_THREADS / 4) {
            const int j = j0 + tid / 4, part = tid % 4, jj = j < nt ? j : 0;
            float dot = 0.f;
#pragma unroll
            for (int d = part * 4; d < HD; d += 16) {
                float4 kv = *(const float4 *)(Ks + jj * LDK + d), qv = *(const float4 *)(q + d);
                dot = fmaf(qv.x, kv.x, dot);
                dot = fmaf(qv.y, kv.y, dot);
                dot = fmaf(qv.z, kv.z, dot);
                dot = fmaf(qv.w, kv.w, dot);
            }
            dot += __shfl_xor_sync(0xffffffffu, dot, 1);
            dot += __shfl_xor_sync(0xffffffffu, dot, 2);
            if (part == 0 && j < nt) sc[j] = attn_score(dot, a);
        }
        __syncthreads();
        float tm = -INFINITY;
        for (int j = tid; j < nt; j += AD_THREADS)
            tm = fmaxf(tm, sc[j]);
        tm = block_max_w<AD_WARPS>(tm, red);
        const float mn = fmaxf(m, tm);
        /* nothing accumulated yet: no rescaling (m may be the current key's score) */
        const float corr = l == 0.f ? 1.f : expf(__fsub_rn(m, mn));
        float ps = 0.f;
        for (int j = tid; j < nt; j += AD_THREADS) {
            const float e = expf(__fsub_rn(sc[j], mn));
            sc[j] = e;
            ps += e;
        }
        ps = block_sum_w<AD_WARPS>(ps, red); /* its barriers publish sc */
        l = l == 0.f ? ps : __fadd_rn(__fmul_rn(l, corr), ps);
        m = mn;
#pragma unroll
        for (int k = 0; k < C::DPT; k++) {
            const int d = tid + k * AD_THREADS;
            if (d >= HD) break;
            float acc = 0.f;
#pragma unroll 8
            for (int j = 0; j < nt; j++)
                acc = fmaf(sc[j], Vs[j * HD + d], acc);
            o[k] = t0 == 0 ? acc : fmaf(o[k], corr, acc);
        }
    }
    if (cur) {
        const float e = expf(__fsub_rn(scur, m));
        l = nkc > 0 ? __fadd_rn(l, e) : e;
#pragma unroll
        for (int k = 0; k < C::DPT; k++) {
            const int d = tid + k * AD_THREADS;
            if (d < HD) o[k] = fmaf(e, vcur[d], o[k]);
        }
    }
    /* publish this block's state and merge through distributed shared memory */
#pragma unroll
    for (int k = 0; k < C::DPT; k++) {
        const int d = tid + k * AD_THREADS;
        if (d < HD) ob[d] = o[k];
    }
    if (tid == 0) {
        st[0] = m;
        st[1] = k1 > k0 ? l : 0.f;
    }
    cl.sync();
    /* lane s of warp 0 reads block s's max and sum; the weights go to shared memory */
    float *ew = sc; /* the scores are no longer needed */
    if (warp == 0) {
        float ms = -INFINITY, ls = 0.f;
        if (lane < CS) {
            const float *rs = cl.map_shared_rank(st, lane);
            ms = rs[0];
            ls = rs[1];
        }
        const float M = fmaxf(warp_max(ls > 0 ? ms : -INFINITY), sink);
        const float e = ls > 0 ? expf(ms - M) : 0.f;
        float L = warp_sum(ls > 0 ? ls * e : 0.f);
        if (a.sinks) L += expf(sink - M);
        if (lane < 16) ew[lane] = lane < CS ? e : 0.f; /* (TK >= 32 scores of room) */
        if (lane == 0) ew[16] = L;
    }
    __syncthreads();
    /* this block's share of the output dims: every block's partial, all loads in flight */
    const int per = (HD + CS - 1) / CS, d = rank * per + tid;
    if (tid < per && d < HD) {
        float v[16];
#pragma unroll
        for (int s = 0; s < 16; s++)
            v[s] = ew[s] > 0 ? cl.map_shared_rank(ob, s)[d] : 0.f;
        float acc = 0.f;
#pragma unroll
        for (int s = 0; s < 16; s++)
            acc += v[s] * ew[s];
        a.out[(int64_t)i * H * HD + (int64_t)h * HD + d] = acc * (1.0f / ew[16]);
    }
    cl.sync(); /* the other blocks' reads of this block's shared memory are done */
}

/* Kernel k as one cluster per unit ((row, head) or (row, kv head)), blocks of `threads`
 * with smem bytes each: 16 blocks per cluster when every cluster fits at once, else 8. */
static int ad_cluster_launch(void (*k)(struct cu_attn_args, struct cu_qkv_args), size_t smem,
                             int units, int threads, int pdl, int sms, const struct cu_qkv_args *qa,
                             const struct cu_attn_args *a, cudaStream_t st)
{
    cudaError_t e = cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(k, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (e != cudaSuccess) return (int)e;
    const int per_sm = (int)((228u << 10) / (smem + (1u << 10)));
    const int CS = (int64_t)units * 16 <= (int64_t)sms * per_sm ? 16 : 8;
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = (unsigned)CS;
    at[0].val.clusterDim.y = 1;
    at[0].val.clusterDim.z = 1;
    at[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[1].val.programmaticStreamSerializationAllowed = 1;
    cfg.gridDim = dim3((unsigned)CS, (unsigned)units);
    cfg.blockDim = dim3((unsigned)threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 2 : 1;
    return (int)cudaLaunchKernelEx(&cfg, k, *a, *qa);
}

template <int HD>
static int ad_launch(const struct cu_qkv_args *qa, const struct cu_attn_args *a, int pdl, int sms,
                     cudaStream_t st)
{
    return ad_cluster_launch(k_attn_dec<HD>, (size_t)ad_cfg<HD>::SMEM * sizeof(float), a->n * a->H,
                             AD_THREADS, pdl, sms, qa, a, st);
}

/* ---- one cluster per (row, kv head): the kv head's G <= 8 query heads share each tile ----
 *
 * Where several query heads read one kv head (G = H / KVH > 1), a cluster per query head
 * loads every key and value G times. Here a cluster of CS blocks serves a (row, kv head):
 * each block copies its share of the keys and values once, and warp w (< G) computes query
 * head kvh * G + w over them with warp-level reductions only (one block barrier per tile,
 * none per softmax step); warp G prepares the current key and value. The numbers are those
 * of k_attn_dec, per head. */
#define AG_MAXG 8

template <int HD> struct ag_cfg {
    static constexpr int TK = HD > 128 ? 32 : 64; /* keys per shared-memory tile */
    static constexpr int LDK = ad_cfg<HD>::LDK;   /* ad_load_tile's padded key rows */
    static constexpr int DPL = HD / 32;           /* output dims per lane */
    /* floats: K tile | V tile | kcur | vcur | cos/sin | q [G] | scores [G] | partial [G] | m, l [G]
     */
    static constexpr size_t smem(int G)
    {
        return (size_t)TK * LDK + TK * HD + 3 * HD + (size_t)G * (HD + TK + HD + 2);
    }
};

template <int HD>
static __global__ void __launch_bounds__(32 * (AG_MAXG + 1))
    k_attn_gqa(const struct cu_attn_args a, const struct cu_qkv_args qa)
{
    typedef ag_cfg<HD> C;
    constexpr int TK = C::TK, LDK = C::LDK, DPL = C::DPL;
    extern __shared__ float sm[];
    cg::cluster_group cl = cg::this_cluster();
    const int CS = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int H = a.H, KVH = a.KVH, G = H / KVH, i = blockIdx.y / KVH, kvh = blockIdx.y % KVH;
    float *Ks = sm, *Vs = Ks + TK * LDK, *kcur = Vs + TK * HD, *vcur = kcur + HD, *cs = vcur + HD,
          *qs = cs + HD, *scs = qs + G * HD, *obs = scs + G * TK, *sts = obs + G * HD;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const struct cu_row row = a.rows[i];
    const int64_t kd = (int64_t)KVH * HD;
    const int hi = row.pos;
    const struct ad_keys ks = ad_split(a, row, kvh, HD, CS, rank);
    const int k0 = ks.k0, k1 = ks.k1, nkc = ks.nkc;
    const bool cur = ks.cur;
    const struct cu_kvh &kv = ks.kv;
    const float sink = a.sinks && warp < G ? a.sinks[kvh * G + warp] : -INFINITY; /* a weight */

    ad_prefetch<HD>(qa, i, cs, kv, k0, min(nkc, TK), Ks, Vs);
    pdl_wait();
    __syncthreads(); /* every thread's part of cs is in before any warp rotates with it */

    float *q = qs + warp * HD;
    if (warp < G)
        ad_head_post<HD>(qa, i, 1, kvh * G + warp, q, cs);
    else if (cur) {
        ad_head_post<HD>(qa, i, 0, kvh, kcur, cs);
        const float *vsrc = qa.v + i * kd + (int64_t)kvh * HD;
        for (int d = lane; d < HD; d += 32)
            vcur[d] = qa.bv ? __fadd_rn(vsrc[d], qa.bv[(int64_t)kvh * HD + d]) : vsrc[d];
        __syncwarp();
        float *kc = cu_kv_at(row, a.layer, kd, hi) + (int64_t)kvh * HD, *vc = kc + row.cap * kd;
        for (int d = lane; d < HD; d += 32) {
            kc[d] = kcur[d];
            vc[d] = vcur[d];
        }
    }
    ad_wait();
    __syncthreads();
    const bool qw = warp < G;
    float m = -INFINITY, l = 0.f, scur = -INFINITY;
    if (qw && cur) {
        float dot = 0.f;
#pragma unroll
        for (int j = 0; j < HD / 32; j++)
            dot = fmaf(q[lane + 32 * j], kcur[lane + 32 * j], dot);
        scur = attn_score(warp_sum(dot), a);
        m = scur;
    }
    float o[DPL];
#pragma unroll
    for (int k = 0; k < DPL; k++)
        o[k] = 0.f;
    float *sc = scs + warp * TK;
#pragma unroll 1
    for (int t0 = 0; t0 < nkc; t0 += TK) {
        const int nt = min(TK, nkc - t0);
        if (t0 > 0) {
            __syncthreads(); /* the previous tile's readers are done */
            ad_load_tile<HD>(kv, k0 + t0, nt, Ks, Vs);
            ad_wait();
            __syncthreads();
        }
        if (!qw) continue;
        /* scores: lane j over keys j, j + 32 (q read as a broadcast) */
        float s[TK / 32], tm = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < TK / 32; jj++) {
            const int j = lane + 32 * jj;
            s[jj] = -INFINITY;
            if (j < nt) {
                float dot = 0.f;
#pragma unroll 8
                for (int d = 0; d < HD; d += 4) {
                    const float4 kv = *(const float4 *)(Ks + j * LDK + d),
                                 qv = *(const float4 *)(q + d);
                    dot = fmaf(qv.x, kv.x, dot);
                    dot = fmaf(qv.y, kv.y, dot);
                    dot = fmaf(qv.z, kv.z, dot);
                    dot = fmaf(qv.w, kv.w, dot);
                }
                s[jj] = attn_score(dot, a);
                tm = fmaxf(tm, s[jj]);
            }
        }
        const float mn = fmaxf(m, warp_max(tm));
        const float corr = l == 0.f ? 1.f : expf(__fsub_rn(m, mn));
        float ps = 0.f;
#pragma unroll
        for (int jj = 0; jj < TK / 32; jj++) {
            const int j = lane + 32 * jj;
            if (j < nt) {
                const float e = expf(__fsub_rn(s[jj], mn));
                sc[j] = e;
                ps += e;
            }
        }
        ps = warp_sum(ps);
        __syncwarp();
        l = l == 0.f ? ps : __fadd_rn(__fmul_rn(l, corr), ps);
        m = mn;
        /* lane holds dims DPL * lane .. + DPL - 1 */
        float acc[DPL];
#pragma unroll
        for (int k = 0; k < DPL; k++)
            acc[k] = 0.f;
#pragma unroll 4
        for (int j = 0; j < nt; j++) {
            const float p = sc[j];
            const float *vr = Vs + j * HD + DPL * lane;
#pragma unroll
            for (int k = 0; k < DPL; k += 2) {
                const float2 v2 = *(const float2 *)(vr + k);
                acc[k] = fmaf(p, v2.x, acc[k]);
                acc[k + 1] = fmaf(p, v2.y, acc[k + 1]);
            }
        }
#pragma unroll
        for (int k = 0; k < DPL; k++)
            o[k] = t0 == 0 ? acc[k] : fmaf(o[k], corr, acc[k]);
        __syncwarp(); /* sc is rewritten by the next tile */
    }
    if (qw) {
        if (cur) {
            const float e = expf(__fsub_rn(scur, m));
            l = nkc > 0 ? __fadd_rn(l, e) : e;
#pragma unroll
            for (int k = 0; k < DPL; k++)
                o[k] = fmaf(e, vcur[DPL * lane + k], o[k]);
        }
#pragma unroll
        for (int k = 0; k < DPL; k++)
            obs[warp * HD + DPL * lane + k] = o[k];
        if (lane == 0) {
            sts[2 * warp] = m;
            sts[2 * warp + 1] = k1 > k0 ? l : 0.f;
        }
    }
    cl.sync();
    /* warp w: the merge weights of head w over the cluster's blocks (into its score row) */
    if (qw) {
        float ms = -INFINITY, ls = 0.f;
        if (lane < CS) {
            const float *rs = cl.map_shared_rank(sts, lane);
            ms = rs[2 * warp];
            ls = rs[2 * warp + 1];
        }
        const float M = fmaxf(warp_max(ls > 0 ? ms : -INFINITY), sink);
        const float e = ls > 0 ? expf(ms - M) : 0.f;
        float L = warp_sum(ls > 0 ? ls * e : 0.f);
        if (a.sinks) L += expf(sink - M);
        if (lane < 16) sc[lane] = lane < CS ? e : 0.f;
        if (lane == 0) sc[16] = L;
    }
    __syncthreads();
    /* this block's share of the G * HD outputs */
    const int per = (G * HD + CS - 1) / CS;
    for (int t = tid; t < per; t += blockDim.x) {
        const int idx = rank * per + t;
        if (idx >= G * HD) break;
        const int w = idx / HD, d = idx % HD;
        const float *ew = scs + w * TK;
        float v[16];
#pragma unroll
        for (int s = 0; s < 16; s++)
            v[s] = ew[s] > 0 ? cl.map_shared_rank(obs, s)[w * HD + d] : 0.f;
        float acc = 0.f;
#pragma unroll
        for (int s = 0; s < 16; s++)
            acc += v[s] * ew[s];
        a.out[(int64_t)i * H * HD + (int64_t)(kvh * G + w) * HD + d] = acc * (1.0f / ew[16]);
    }
    cl.sync(); /* the other blocks' reads of this block's shared memory are done */
}

template <int HD>
static int ag_launch(const struct cu_qkv_args *qa, const struct cu_attn_args *a, int pdl, int sms,
                     cudaStream_t st)
{
    const int G = a->H / a->KVH;
    return ad_cluster_launch(k_attn_gqa<HD>, ag_cfg<HD>::smem(G) * sizeof(float), a->n * a->KVH,
                             32 * (G + 1), pdl, sms, qa, a, st);
}

extern "C" int cellm_cu_attention_dec_supported(int hd, int rot)
{
    return (hd == 64 || hd == 128 || hd == 256) && rot <= hd && rot % 2 == 0;
}

extern "C" int cellm_cu_attention_dec(const struct cu_qkv_args *qa, const struct cu_attn_args *a,
                                      int grouped, int pdl, int sms, void *stream)
{
    cudaStream_t st = (cudaStream_t)stream;
    if (!cellm_cu_attention_dec_supported(a->hd, qa->rot) || a->n < 1 || a->H % a->KVH ||
        (grouped && a->H / a->KVH > AG_MAXG))
        return (int)cudaErrorInvalidValue;
    if (grouped) switch (a->hd) {
        case 64:
            return ag_launch<64>(qa, a, pdl, sms, st);
        case 128:
            return ag_launch<128>(qa, a, pdl, sms, st);
        default:
            return ag_launch<256>(qa, a, pdl, sms, st);
        }
    switch (a->hd) {
    case 64:
        return ad_launch<64>(qa, a, pdl, sms, st);
    case 128:
        return ad_launch<128>(qa, a, pdl, sms, st);
    default:
        return ad_launch<256>(qa, a, pdl, sms, st);
    }
}
