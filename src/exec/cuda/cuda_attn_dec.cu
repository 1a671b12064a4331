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
 * tile rescales its running sums between tiles (online softmax).
 */
#include <cooperative_groups.h>

#include "cuda_attn_dec.cuh"

namespace cg = cooperative_groups;

template <int HD>
__global__ void __launch_bounds__(AD_THREADS)
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
    const float *K = ks.K, *V = ks.V;

    ad_prefetch<HD>(qa, i, cs, K, V, kd, k0, min(nkc, TK), Ks, Vs);
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
        float *kc = row.kv + (int64_t)a.layer * 2 * row.cap * kd + (int64_t)hi * kd +
                    (int64_t)kvh * HD,
              *vc = kc + row.cap * kd;
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
            ad_load_tile<HD>(K, V, kd, k0 + t0, nt, Ks, Vs);
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
        const float M = warp_max(ls > 0 ? ms : -INFINITY);
        const float e = ls > 0 ? expf(ms - M) : 0.f;
        const float L = warp_sum(ls > 0 ? ls * e : 0.f);
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
 * each block copies its share of the keys and values once (ag_block), and the blocks merge
 * their heads' partial states through distributed shared memory. The numbers are those of
 * k_attn_dec, per head. */
template <int HD>
__global__ void __launch_bounds__(32 * (AG_MAXG + 1))
    k_attn_gqa(const struct cu_attn_args a, const struct cu_qkv_args qa)
{
    extern __shared__ float sm[];
    cg::cluster_group cl = cg::this_cluster();
    const int CS = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    const int KVH = a.KVH, G = a.H / KVH, i = blockIdx.y / KVH, kvh = blockIdx.y % KVH;
    const ag_smem<HD> s(sm, G);
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const struct ad_keys ks = ad_split(a, a.rows[i], kvh, HD, CS, rank);

    ad_prefetch<HD>(qa, i, s.cs, ks.K, ks.V, (int64_t)KVH * HD, ks.k0, min(ks.nkc, ag_cfg<HD>::TK),
                    s.Ks, s.Vs);
    pdl_wait();
    __syncthreads(); /* every thread's part of cs is in before any warp rotates with it */
    ag_block<HD>(a, qa, i, kvh, ks, s);
    cl.sync();
    /* warp w: the merge weights of head w over the cluster's blocks (into its score row) */
    if (warp < G) {
        float ms = -INFINITY, ls = 0.f;
        if (lane < CS) {
            const float *rs = cl.map_shared_rank(s.sts, lane);
            ms = rs[2 * warp];
            ls = rs[2 * warp + 1];
        }
        ag_weights(ms, ls, CS, s.scs + warp * ag_cfg<HD>::TK);
    }
    __syncthreads();
    /* this block's share of the G * HD outputs */
    const int per = (G * HD + CS - 1) / CS;
    for (int t = tid; t < per; t += blockDim.x) {
        const int idx = rank * per + t;
        if (idx >= G * HD) break;
        const int w = idx / HD;
        a.out[(int64_t)i * a.H * HD + (int64_t)kvh * G * HD + idx] = ag_combine(
            s.scs + w * ag_cfg<HD>::TK, [&](int b) { return cl.map_shared_rank(s.obs, b)[idx]; });
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
