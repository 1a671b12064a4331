/*
 * cuda_attn_dec.cuh: the pieces of the decode attention that both its cluster kernels
 * (cuda_attn_dec.cu) and the q/k/v product with the attention as its second phase
 * (cuda_mvt.cuh, fa_phase below) use: key splits, tile loads, the q/k/v post-processing,
 * one block's share of a kv head's keys for its G query heads (ag_block), and the merge
 * of the blocks' partial softmax states (ag_weights, ag_combine).
 */
#ifndef CELLM_EXEC_CUDA_ATTN_DEC_CUH
#define CELLM_EXEC_CUDA_ATTN_DEC_CUH

#include <math.h>

#include "cuda_dev.cuh"

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
static __device__ __forceinline__ void ad_load_tile(const float *K, const float *V, int64_t kd,
                                                    int key0, int nt, float *Ks, float *Vs)
{
    typedef ad_cfg<HD> C;
    for (int e = threadIdx.x; e < nt * (HD / 4); e += blockDim.x) {
        const int j = e / (HD / 4), d4 = e % (HD / 4) * 4;
        const unsigned ks = (unsigned)__cvta_generic_to_shared(Ks + j * C::LDK + d4),
                       vs = (unsigned)__cvta_generic_to_shared(Vs + j * HD + d4);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(ks),
                     "l"(K + (int64_t)(key0 + j) * kd + d4));
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(vs),
                     "l"(V + (int64_t)(key0 + j) * kd + d4));
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
static __device__ void ad_prefetch(const struct cu_qkv_args &qa, int i, float *cs, const float *K,
                                   const float *V, int64_t kd, int key0, int nt, float *Ks,
                                   float *Vs)
{
    const int half = qa.rot / 2;
    for (int d = threadIdx.x; d < 2 * half; d += blockDim.x)
        cs[d] = qa.cs[(int64_t)i * half * 2 + d];
    ad_load_tile<HD>(K, V, kd, key0, nt, Ks, Vs);
}

/* The keys of block `rank` of a CS-block cluster over row i's keys lo..hi (the sliding
 * window's, else all): [k0, k1); cur when it holds the current key hi (not yet cached), nkc
 * the keys it reads from the cache; K and V the cache rows of kv head kvh. */
struct ad_keys {
    int k0, k1, nkc;
    bool cur;
    const float *K, *V;
};

static __device__ __forceinline__ struct ad_keys
ad_split(const struct cu_attn_args &a, const struct cu_row &row, int kvh, int hd, int CS, int rank)
{
    struct ad_keys r;
    const int64_t kd = (int64_t)a.KVH * hd;
    const int hi = row.pos;
    int lo = 0;
    if (a.window > 0 && hi - a.window + 1 > 0) lo = hi - a.window + 1;
    const int nk = hi - lo + 1, ck = (nk + CS - 1) / CS;
    r.k0 = lo + rank * ck;
    r.k1 = min(r.k0 + ck, hi + 1);
    r.cur = r.k1 > r.k0 && r.k1 == hi + 1;
    r.nkc = r.k1 > r.k0 ? (r.cur ? r.k1 - r.k0 - 1 : r.k1 - r.k0) : 0;
    r.K = row.kv + (int64_t)a.layer * 2 * row.cap * kd + (int64_t)kvh * hd;
    r.V = r.K + row.cap * kd;
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
        x[j] = __ldcg(src + d); /* (written by other blocks of the fused kernel) */
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
    const int half = a.rot / 2;
    rope_warp(v, cs, half);
}

/* ---- a kv head's G <= AG_MAXG query heads sharing each tile of its keys (ag_block) ---- */
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

/* A block's shared memory for ag_block, carved from sm (ag_cfg::smem(G) floats). */
template <int HD> struct ag_smem {
    float *Ks, *Vs, *kcur, *vcur, *cs, *qs, *scs, *obs, *sts;
    __device__ ag_smem(float *sm, int G)
    {
        typedef ag_cfg<HD> C;
        Ks = sm, Vs = Ks + C::TK * C::LDK, kcur = Vs + C::TK * HD, vcur = kcur + HD, cs = vcur + HD,
        qs = cs + HD, scs = qs + G * HD, obs = scs + G * C::TK, sts = obs + G * HD;
    }
};

/* One block's share ks of row i's keys for kv head kvh: warp w < G computes query head
 * kvh * G + w over them with warp-level reductions only (one block barrier per tile, none
 * per softmax step) and leaves its partial state in shared memory (obs[w], sts[2w] the
 * maximum, sts[2w + 1] the sum, 0 when the block has no keys); warp G prepares the current
 * key and value and writes them to the cache. Before the call: ad_prefetch of cs and the
 * first tile, and a block barrier after it. */
template <int HD>
static __device__ void ag_block(const struct cu_attn_args &a, const struct cu_qkv_args &qa, int i,
                                int kvh, const struct ad_keys &ks, const ag_smem<HD> &s)
{
    typedef ag_cfg<HD> C;
    constexpr int TK = C::TK, LDK = C::LDK, DPL = C::DPL;
    const int G = a.H / a.KVH, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t kd = (int64_t)a.KVH * HD;
    const struct cu_row row = a.rows[i];
    const int k0 = ks.k0, k1 = ks.k1, nkc = ks.nkc;
    const bool cur = ks.cur;
    float *q = s.qs + warp * HD, *kcur = s.kcur, *vcur = s.vcur;
    if (warp < G)
        ad_head_post<HD>(qa, i, 1, kvh * G + warp, q, s.cs);
    else if (warp == G && cur) {
        ad_head_post<HD>(qa, i, 0, kvh, kcur, s.cs);
        const float *vsrc = qa.v + i * kd + (int64_t)kvh * HD;
        for (int d = lane; d < HD; d += 32)
            vcur[d] = qa.bv ? __fadd_rn(__ldcg(vsrc + d), qa.bv[(int64_t)kvh * HD + d])
                            : __ldcg(vsrc + d);
        __syncwarp();
        float *kc = row.kv + (int64_t)a.layer * 2 * row.cap * kd + (int64_t)row.pos * kd +
                    (int64_t)kvh * HD,
              *vc = kc + row.cap * kd;
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
    float *sc = s.scs + warp * TK;
#pragma unroll 1
    for (int t0 = 0; t0 < nkc; t0 += TK) {
        const int nt = min(TK, nkc - t0);
        if (t0 > 0) {
            __syncthreads(); /* the previous tile's readers are done */
            ad_load_tile<HD>(ks.K, ks.V, kd, k0 + t0, nt, s.Ks, s.Vs);
            ad_wait();
            __syncthreads();
        }
        if (!qw) continue;
        /* scores: lane j over keys j, j + 32 (q read as a broadcast) */
        float sj[TK / 32], tm = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < TK / 32; jj++) {
            const int j = lane + 32 * jj;
            sj[jj] = -INFINITY;
            if (j < nt) {
                float dot = 0.f;
#pragma unroll 8
                for (int d = 0; d < HD; d += 4) {
                    const float4 kv = *(const float4 *)(s.Ks + j * LDK + d),
                                 qv = *(const float4 *)(q + d);
                    dot = fmaf(qv.x, kv.x, dot);
                    dot = fmaf(qv.y, kv.y, dot);
                    dot = fmaf(qv.z, kv.z, dot);
                    dot = fmaf(qv.w, kv.w, dot);
                }
                sj[jj] = attn_score(dot, a);
                tm = fmaxf(tm, sj[jj]);
            }
        }
        const float mn = fmaxf(m, warp_max(tm));
        const float corr = l == 0.f ? 1.f : expf(__fsub_rn(m, mn));
        float ps = 0.f;
#pragma unroll
        for (int jj = 0; jj < TK / 32; jj++) {
            const int j = lane + 32 * jj;
            if (j < nt) {
                const float e = expf(__fsub_rn(sj[jj], mn));
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
            const float *vr = s.Vs + j * HD + DPL * lane;
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
            s.obs[warp * HD + DPL * lane + k] = o[k];
        if (lane == 0) {
            s.sts[2 * warp] = m;
            s.sts[2 * warp + 1] = k1 > k0 ? l : 0.f;
        }
    }
}

/* The merge weights of one head over the CS <= 16 blocks of its keys, by one warp: lane
 * s < CS holds block s's maximum ms and sum ls. Block s's weight exp(ms - M) goes to ew[s]
 * (0 for an empty block and for s >= CS), the total L to ew[16]. */
static __device__ __forceinline__ void ag_weights(float ms, float ls, int CS, float *ew)
{
    const int lane = threadIdx.x & 31;
    const float M = warp_max(ls > 0 ? ms : -INFINITY);
    const float e = ls > 0 ? expf(ms - M) : 0.f;
    const float L = warp_sum(ls > 0 ? ls * e : 0.f);
    if (lane < 16) ew[lane] = lane < CS ? e : 0.f;
    if (lane == 0) ew[16] = L;
}

/* One output value from the blocks' partial values part(s) and ag_weights' ew: every
 * load in flight at once, then the sum in block order */
template <typename Part>
static __device__ __forceinline__ float ag_combine(const float *ew, Part part)
{
    float v[16];
#pragma unroll
    for (int s = 0; s < 16; s++)
        v[s] = ew[s] > 0 ? part(s) : 0.f;
    float acc = 0.f;
#pragma unroll
    for (int s = 0; s < 16; s++)
        acc += v[s] * ew[s];
    return acc * (1.0f / ew[16]);
}

/* ---- the attention as the second phase of the q/k/v product (cuda_mvt.cuh, k_mvt_fa) ----
 *
 * Why: launched after the q/k/v product, the attention's clusters wait for whole GPCs of
 * free SMs, ~7 of its ~12 us per layer on the Llama-3.1-8B shape (bench/cuda_notes.md
 * rounds 6-9). Here the product's blocks, all resident at once (one round, one per SM),
 * meet at a grid barrier once their q/k/v rows are written, and block b < KVH * CS then
 * serves split b % CS of kv head b / CS with ag_block, as a cluster's block would. The
 * splits merge through global memory: each block leaves its heads' partial states, and the
 * last of a kv head's CS blocks to arrive (a counter) combines them, in the same order and
 * with the same operations as the clusters. The first tile of cached keys is requested
 * before the product starts. One row (n = 1) only. */

/* the grid barrier's spin: an acquire load at GPU scope */
static __device__ __forceinline__ int fa_ld_acquire(const int *p)
{
    int v;
    asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* Before griddepcontrol.wait: this block's split of its kv head's keys (none past the
 * units) and the prefetch of cos/sin and its first tile into sm (ag_smem). */
template <int HD> static __device__ struct ad_keys fa_start(const struct cu_fa_args &f, float *sm)
{
    const int KVH = f.aa.KVH, unit = (int)blockIdx.x;
    struct ad_keys ks = {0, 0, 0, false, NULL, NULL};
    if (unit >= KVH * f.cs) return ks;
    const ag_smem<HD> s(sm, f.aa.H / KVH);
    ks = ad_split(f.aa, f.aa.rows[0], unit / f.cs, HD, f.cs, unit % f.cs);
    ad_prefetch<HD>(f.qa, 0, s.cs, ks.K, ks.V, (int64_t)KVH * HD, ks.k0,
                    min(ks.nkc, ag_cfg<HD>::TK), s.Ks, s.Vs);
    return ks;
}

/* After the product: the grid barrier, this block's split, the merge by the last block of
 * each kv head. f.cnt: [0] arrivals at the barrier, [1] blocks done (the last one resets
 * both), [2 + kvh] the kv head's splits done (its last one resets it). */
template <int HD>
static __device__ void fa_phase(const struct cu_fa_args &f, float *sm, const struct ad_keys &ks)
{
    constexpr int P = HD + 2, TK = ag_cfg<HD>::TK;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int KVH = f.aa.KVH, G = f.aa.H / KVH, CS = f.cs, unit = (int)blockIdx.x;
    __shared__ int last;
    __syncthreads(); /* this block's q/k/v stores come before its arrival */
    if (tid == 0) {
        __threadfence();
        atomicAdd(f.cnt, 1);
        while (fa_ld_acquire(f.cnt) < (int)gridDim.x) {
        }
        __threadfence();
    }
    __syncthreads();
    if (unit < KVH * CS) {
        const int kvh = unit / CS, rank = unit % CS;
        const ag_smem<HD> s(sm, G);
        ag_block<HD>(f.aa, f.qa, 0, kvh, ks, s);
        __syncthreads();
        float *pk = f.part + (size_t)kvh * CS * G * P, *pb = pk + (size_t)rank * G * P;
        for (int e = tid; e < G * P; e += blockDim.x) {
            const int w = e / P, d = e % P;
            pb[e] = d < HD ? s.obs[w * HD + d] : s.sts[2 * w + d - HD];
        }
        __syncthreads();
        if (tid == 0) {
            __threadfence();
            last = atomicAdd(f.cnt + 2 + kvh, 1) == CS - 1;
            if (last) {
                f.cnt[2 + kvh] = 0;
                __threadfence();
            }
        }
        __syncthreads();
        if (last) {
            if (warp < G) {
                float ms = -INFINITY, ls = 0.f;
                if (lane < CS) {
                    ms = __ldcg(pk + ((size_t)lane * G + warp) * P + HD);
                    ls = __ldcg(pk + ((size_t)lane * G + warp) * P + HD + 1);
                }
                ag_weights(ms, ls, CS, s.scs + warp * TK);
            }
            __syncthreads();
            for (int idx = tid; idx < G * HD; idx += blockDim.x) {
                const int w = idx / HD, d = idx % HD;
                f.aa.out[(int64_t)kvh * G * HD + idx] = ag_combine(s.scs + w * TK, [&](int b) {
                    return __ldcg(pk + ((size_t)b * G + w) * P + d);
                });
            }
        }
    }
    if (tid == 0 && atomicAdd(f.cnt + 1, 1) == (int)gridDim.x - 1) {
        f.cnt[0] = 0;
        f.cnt[1] = 0;
    }
}

#endif
