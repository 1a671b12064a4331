/*
 * test_cuda_attn.c: the q/k/v epilogue (biases, shared or per-head q/k norms, RoPE, the
 * cache write) and attention on the GPU against the CPU ops (src/exec/cpu/ops.c) and a
 * double-precision softmax, on random inputs: prefill rows (generic kernel, with and
 * without key splits, and the tiled prefill kernel) and decode rows of distinct sequences
 * holding 4, 40 and 300 positions (generic, fused, clusters per head and grouped), for
 * 1, 2, 8 and 12 q heads per kv head, head sizes 64-256, partial RoPE, a soft-cap and a
 * sliding window, attention sinks (gpt-oss), and the positional pieces of posenc.c (Llama 4's
 * interleaved RoPE, weightless q/k norm, chunked attention and NoPE temperature, Mistral 3's
 * query scale by position) against posenc.c itself; every case twice, on one contiguous cache
 * per sequence and on the paged cache (cu_row.blocks: blocks of CU_KV_BLOCK positions of two
 * layers, the second one used, at shuffled places in a pool, so a kernel that ignores the
 * table, the layer offset inside a block or a block boundary reads the wrong keys). The
 * bound of an output: a score's dot-product
 * bound moves the softmax weights by about as much, relatively, and the sums over n keys round n
 * times, times the largest value. Each case prints one line (cuda_ops_util.h); skipped without a
 * device.
 */
#include "cellm.h"
#include "cuda_ops_util.h"
#include "exec/cpu/ops.h"
#include "exec/cpu/posenc.h"
#include "exec/cuda/cuda_int.h"
#include "model/weight.h"

/* ---- q/k/v epilogue and attention ---------------------------------------------------------- */

struct acfg {
    int H, KVH, hd, rot, window;
    int qk;   /* 0 none, 1 shared RMS q/k norms, 2 per-head LayerNorm weights */
    int bias; /* q/k/v biases */
    float softcap;
    int sinks; /* a learned sink logit per head (gpt-oss) */
    /* posenc.c's pieces: 0 none (rotate-half RoPE), 1 a Llama 4 RoPE layer (interleaved
     * pairs, the weightless q/k norm; chunked when chunk > 0), 2 a Llama 4 NoPE layer (the
     * query temperature, floor_scale 8), 3 Mistral 3's query scale (beta 0.1 over 16) */
    int pos_kind, chunk;
};

/* The config and layer posenc.c reads for a case's pos_kind. */
static void pos_desc(const struct acfg *c, struct cellm_config *cfg, struct cellm_layer *L)
{
    memset(cfg, 0, sizeof *cfg);
    memset(L, 0, sizeof *L);
    cfg->norm_eps = 1e-6;
    cfg->rope_interleaved = c->pos_kind == 1 || c->pos_kind == 2;
    cfg->qk_l2norm = c->pos_kind == 1 || c->pos_kind == 2;
    cfg->attn_temp = c->pos_kind == 1 || c->pos_kind == 2;
    cfg->temp_floor = 8;
    cfg->temp_scale = 0.1;
    if (c->pos_kind == 3) {
        cfg->qscale_beta = 0.1;
        cfg->qscale_len = 16;
    }
    cfg->attn_chunk = c->chunk;
    L->nope = c->pos_kind == 2;
    L->attn = c->chunk > 0 ? CELLM_ATTN_CHUNKED : CELLM_ATTN_FULL;
    L->rot_dims = c->rot;
    L->head_dim = c->hd;
    L->rope_attn = 1.0f;
}

/* One layer's cache of one sequence, on the host and the device: contiguous, [2][cap][kd]
 * in dev (layer 0); paged, cap / CU_KV_BLOCK blocks of [PG_LAYERS][2][CU_KV_BLOCK][kd] at
 * shuffled places of the pool dev (more blocks than the table uses), layer PG_LAYER. */
#define PG_LAYERS 2
#define PG_LAYER 1
struct aseq {
    int cap, len; /* len: positions held before the rows of the step */
    float *k, *v; /* host mirror [cap][kd] */
    float *dev;
    int paged;
    int64_t dev_floats; /* of dev */
    float **blk;        /* paged: host copy of the block table */
    float **dblk;       /* paged: the block table on the device */
};

/* The device address of position p's key (half 0) or value (half 1). */
static float *aseq_at(const struct aseq *s, int half, int64_t p, int64_t kd)
{
    if (!s->paged) return s->dev + ((int64_t)half * s->cap + p) * kd;
    return s->blk[p / CU_KV_BLOCK] +
           ((int64_t)(2 * PG_LAYER + half) * CU_KV_BLOCK + p % CU_KV_BLOCK) * kd;
}

/* The reference of one head vector after its bias, norm and RoPE (CPU ops). */
static void ref_head(const struct acfg *c, const float *src, const float *bias, const float *nw,
                     int kind, const float *inv_freq, int pos, int isq, float *out)
{
    for (int d = 0; d < c->hd; d++)
        out[d] = bias ? src[d] + bias[d] : src[d];
    if (nw) {
        struct cellm_vec v = {CELLM_W_F32, c->hd, (const uint8_t *)nw};
        cellm_op_norm((enum cellm_norm_kind)kind, 1e-6f, &v, NULL, out, out, c->hd);
    }
    if (c->pos_kind) {
        struct cellm_config cfg;
        struct cellm_layer L;
        pos_desc(c, &cfg, &L);
        cellm_op_head_pos(&cfg, &L, out, inv_freq, pos,
                          isq ? cellm_query_scale(&cfg, &L, pos) : 1.0f);
        return;
    }
    cellm_op_rope(out, c->rot, inv_freq, pos);
}

/* One case: rows (seq, pos) through a launcher; mode 0 qkv_post + attention (generic, with
 * split_keys sk), 1 qkv_post + attention_prefill, 2 attention_fused, 3 and 4 attention_dec
 * per head and grouped. */
static void attn_case(const struct acfg *c, int mode, int n, const int *seq, const int *pos,
                      struct aseq *S, int ns, int sk, int sms, const char *what)
{
    const int H = c->H, KVH = c->KVH, hd = c->hd, half = c->rot / 2, G = H / KVH;
    const int64_t qd = (int64_t)H * hd, kd = (int64_t)KVH * hd;
    char shape[160];
    static const char *const pk[] = {"", " l4-rope", " l4-nope", " m3-scale"};
    snprintf(shape, sizeof shape, "H%d/%d hd%d rot%d w%d c%d%s%s, %d rows%s%s", H, KVH, hd,
             c->rot, c->window, c->chunk, c->sinks ? " sinks" : "", pk[c->pos_kind], n, what,
             S[0].paged ? ", paged" : "");
    const int layer = S[0].paged ? PG_LAYER : 0;
    static const char *const names[] = {"attention", "attn prefill", "attn fused", "attn dec",
                                        "attn dec grouped"};
    if (mode >= 3 && !cellm_cu_attention_dec_supported(hd, c->rot)) return;
    if (mode == 4 && G > 8) return;
    float *q = malloc((size_t)(n * qd) * sizeof(float)),
          *k = malloc((size_t)(n * kd) * sizeof(float));
    float *v = malloc((size_t)(n * kd) * sizeof(float)),
          *cs = malloc((size_t)n * half * 2 * sizeof(float));
    float *bq = malloc(qd * sizeof(float)), *bk = malloc(kd * sizeof(float)),
          *bv = malloc(kd * sizeof(float));
    float *qn = malloc((size_t)qd * sizeof(float)), *kn = malloc((size_t)kd * sizeof(float));
    float *inv = malloc((size_t)half * sizeof(float)),
          *qp = malloc((size_t)(n * qd) * sizeof(float)), *sk_ = malloc((size_t)H * sizeof(float));
    float *qs = malloc((size_t)n * 2 * sizeof(float));
    assert_true(q && k && v && cs && bq && bk && bv && qn && kn && inv && qp && sk_ && qs);
    struct cellm_config pcfg;
    struct cellm_layer pl;
    pos_desc(c, &pcfg, &pl);
    for (int i = 0; i < n; i++) { /* as cu_run writes them beside cos/sin */
        qs[2 * i] = cellm_query_scale(&pcfg, &pl, pos[i]);
        qs[2 * i + 1] = 0;
    }
    /* sinks from well below to well above the scores (|s| <~ 2): head 0's dominates */
    fill(sk_, H, -3, 3);
    sk_[0] = 4;
    fill(q, n * qd, -1, 1);
    fill(k, n * kd, -1, 1);
    fill(v, n * kd, -1, 1);
    fill(bq, qd, -0.3f, 0.3f);
    fill(bk, kd, -0.3f, 0.3f);
    fill(bv, kd, -0.3f, 0.3f);
    fill(qn, qd, 0.5f, 2.f); /* per-head: [H][hd]; shared: the first hd */
    fill(kn, kd, 0.5f, 2.f);
    for (int i = 0; i < half; i++)
        inv[i] = powf(10000.f, -(float)(2 * i) / (float)c->rot);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            float angle = inv[j] * (float)pos[i];
            cs[((size_t)i * half + j) * 2] = cosf(angle);
            cs[((size_t)i * half + j) * 2 + 1] = sinf(angle);
        }
    /* the reference: the rows' heads after the epilogue, their keys and values written */
    for (int s = 0; s < ns; s++) /* forget what an earlier case wrote past len */
        for (int64_t p = S[s].len; p < S[s].cap; p++)
            for (int64_t d = 0; d < kd; d++)
                S[s].k[p * kd + d] = S[s].v[p * kd + d] = 0;
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < H; h++)
            ref_head(c, q + i * qd + h * hd, c->bias ? bq + h * hd : NULL,
                     c->qk == 2   ? qn + h * hd
                     : c->qk == 1 ? qn
                                  : NULL,
                     c->qk == 2 ? 2 : 0, inv, pos[i], 1, qp + i * qd + h * hd);
        struct aseq *sq = &S[seq[i]];
        for (int h = 0; h < KVH; h++) {
            ref_head(c, k + i * kd + h * hd, c->bias ? bk + h * hd : NULL,
                     c->qk == 2   ? kn + h * hd
                     : c->qk == 1 ? kn
                                  : NULL,
                     c->qk == 2 ? 2 : 0, inv, pos[i], 0, sq->k + (int64_t)pos[i] * kd + h * hd);
            for (int d = 0; d < hd; d++)
                sq->v[(int64_t)pos[i] * kd + h * hd + d] =
                    c->bias ? v[i * kd + h * hd + d] + bv[h * hd + d] : v[i * kd + h * hd + d];
        }
    }
    /* the device: caches holding the first len positions, rows, inputs */
    struct cu_row *rows = calloc((size_t)n, sizeof *rows);
    assert_non_null(rows);
    int max_keys = 0;
    for (int s = 0; s < ns; s++) {
        assert_int_equal(cudaMemset(S[s].dev, 0, (size_t)S[s].dev_floats * sizeof(float)),
                         cudaSuccess);
        for (int64_t p = 0; p < S[s].len; p++) {
            assert_int_equal(cudaMemcpy(aseq_at(&S[s], 0, p, kd), S[s].k + p * kd,
                                        (size_t)kd * sizeof(float), cudaMemcpyHostToDevice),
                             cudaSuccess);
            assert_int_equal(cudaMemcpy(aseq_at(&S[s], 1, p, kd), S[s].v + p * kd,
                                        (size_t)kd * sizeof(float), cudaMemcpyHostToDevice),
                             cudaSuccess);
        }
    }
    for (int i = 0; i < n; i++) {
        const struct aseq *sq = &S[seq[i]];
        rows[i] = (struct cu_row){0, seq[i], pos[i], 1, i, 0, sq->dev, sq->cap, NULL, NULL};
        if (sq->paged) {
            rows[i].kv = NULL;
            rows[i].cap = CU_KV_BLOCK;
            rows[i].blocks = (float *const *)sq->dblk;
        }
        if (pos[i] + 1 > max_keys) max_keys = pos[i] + 1;
    }
    int keys = c->window && c->window < max_keys ? c->window : max_keys, nsplit = 1;
    if (c->chunk && c->chunk < keys) keys = c->chunk;
    while (nsplit * sk < keys)
        nsplit *= 2;
    struct cu_row *drows = dput(rows, (size_t)n * sizeof *rows);
    float *dq = dput(q, (size_t)(n * qd) * sizeof(float)),
          *dk = dput(k, (size_t)(n * kd) * sizeof(float));
    float *dv = dput(v, (size_t)(n * kd) * sizeof(float)),
          *dcs = dput(cs, (size_t)n * half * 2 * sizeof(float));
    float *dbq = dput(bq, qd * sizeof(float)), *dbk = dput(bk, kd * sizeof(float)),
          *dbv = dput(bv, kd * sizeof(float));
    float *dqn = dput(qn, qd * sizeof(float)), *dkn = dput(kn, kd * sizeof(float));
    float *dsk = dput(sk_, (size_t)H * sizeof(float));
    float *dqs = dput(qs, (size_t)n * 2 * sizeof(float));
    float *dout = dpoison((size_t)(n * qd)), *dpart = dpoison((size_t)n * H * nsplit * (hd + 2));
    int *cnt = dput(NULL, (size_t)n * H * sizeof(int));
    assert_int_equal(cudaMemset(cnt, 0, (size_t)n * H * sizeof(int)), cudaSuccess);
    struct cu_qkv_args qa = {.q = dq,
                             .k = dk,
                             .v = dv,
                             .bq = c->bias ? dbq : NULL,
                             .bk = c->bias ? dbk : NULL,
                             .bv = c->bias ? dbv : NULL,
                             .qn = c->qk == 1 ? dqn : NULL,
                             .kn = c->qk == 1 ? dkn : NULL,
                             .qn_heads = c->qk == 2 ? dqn : NULL,
                             .kn_heads = c->qk == 2 ? dkn : NULL,
                             .qk_kind = 0,
                             .eps = 1e-6f,
                             .cs = dcs,
                             .rows = drows,
                             .n = n,
                             .H = H,
                             .KVH = KVH,
                             .hd = hd,
                             .rot = c->rot,
                             .layer = layer,
                             .nope = pl.nope,
                             .pairs = pcfg.rope_interleaved,
                             .l2norm = pcfg.qk_l2norm,
                             .qs = pcfg.qscale_beta != 0 || pcfg.attn_temp ? dqs : NULL};
    struct cu_attn_args aa = {.q = dq,
                              .out = dout,
                              .part = dpart,
                              .rows = drows,
                              .n = n,
                              .H = H,
                              .KVH = KVH,
                              .hd = hd,
                              .layer = layer,
                              .window = c->window,
                              .nsplit = nsplit,
                              .split_keys = sk,
                              .scale = 1.0f / sqrtf((float)hd),
                              .softcap = c->softcap,
                              .sinks = c->sinks ? dsk : NULL,
                              .chunk = c->chunk};
    if (mode <= 1) LAUNCH(cellm_cu_qkv_post(&qa, NULL));
    if (mode == 0) LAUNCH(cellm_cu_attention(&aa, NULL));
    if (mode == 1) LAUNCH(cellm_cu_attention_prefill(&aa, NULL));
    if (mode == 2) LAUNCH(cellm_cu_attention_fused(&qa, &aa, cnt, NULL));
    if (mode >= 3) LAUNCH(cellm_cu_attention_dec(&qa, &aa, mode == 4, 0, sms, NULL));
    float *out = malloc((size_t)(n * qd) * sizeof(float)),
          *got = malloc((size_t)(n * qd) * sizeof(float));
    assert_true(out && got);
    dget(out, dout, (size_t)(n * qd) * sizeof(float));
    struct worst w;
    worst_init(&w);
    const double scale = 1.0 / sqrt((double)hd);
    double *sc = malloc((size_t)(max_keys + 1) * sizeof(double));
    assert_non_null(sc);
    for (int i = 0; i < n; i++) {
        const struct aseq *sq = &S[seq[i]];
        int lo = c->window && pos[i] - c->window + 1 > 0 ? pos[i] - c->window + 1 : 0;
        if (c->chunk) lo = cellm_attn_first_key(&pcfg, &pl, pos[i]);
        for (int h = 0; h < H; h++) {
            const float *qh = qp + i * qd + h * hd;
            const int64_t ko = (int64_t)(h / G) * hd;
            double mx = -INFINITY, sum = 0, qk = 0, vmax = 0;
            for (int j = lo; j <= pos[i]; j++) {
                double s = 0, m = 0;
                for (int d = 0; d < hd; d++) {
                    s += (double)qh[d] * sq->k[(int64_t)j * kd + ko + d];
                    m += fabs((double)qh[d] * sq->k[(int64_t)j * kd + ko + d]);
                }
                s *= scale;
                if (c->softcap > 0) s = c->softcap * tanh(s / c->softcap);
                sc[j - lo] = s;
                mx = fmax(mx, s);
                qk = fmax(qk, m * scale);
                for (int d = 0; d < hd; d++)
                    vmax = fmax(vmax, fabs(sq->v[(int64_t)j * kd + ko + d]));
            }
            /* the sink joins the max and the denominator, and has no value */
            if (c->sinks) mx = fmax(mx, sk_[h]);
            for (int j = lo; j <= pos[i]; j++)
                sum += sc[j - lo] = exp(sc[j - lo] - mx);
            if (c->sinks) sum += exp(sk_[h] - mx);
            /* a score's error moves the weights by about as much, relatively; the sums
             * of n keys round n times; exp and the division a few times */
            const double ds = (double)(hd + 8) * EPS32 * qk;
            const double bound = vmax * (4 * ds + (double)(pos[i] - lo + 16) * 4 * EPS32) + 1e-7;
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int j = lo; j <= pos[i]; j++)
                    o += sc[j - lo] / sum * sq->v[(int64_t)j * kd + ko + d];
                worst_add(&w, i * qd + h * hd + d, o, out[i * qd + h * hd + d], bound);
            }
        }
    }
    report(names[mode], "f32", shape, &w);
    /* the epilogue's results: q in place (not for the fused kernels, which keep it), the
     * keys and values of the rows in the caches */
    if (mode <= 1) {
        dget(got, dq, (size_t)(n * qd) * sizeof(float));
        worst_init(&w);
        for (int64_t i = 0; i < n * qd; i++)
            worst_add(&w, i, qp[i], got[i], 16 * EPS32 * fmax(1, fabs(qp[i])));
        report("qkv_post q", "f32", shape, &w);
    }
    worst_init(&w);
    for (int i = 0; i < n; i++) {
        const struct aseq *sq = &S[seq[i]];
        float kv[2 * 512];
        dget(kv, aseq_at(sq, 0, pos[i], kd), (size_t)kd * sizeof(float));
        dget(kv + kd, aseq_at(sq, 1, pos[i], kd), (size_t)kd * sizeof(float));
        for (int64_t d = 0; d < kd; d++) {
            double rk = sq->k[(int64_t)pos[i] * kd + d], rv = sq->v[(int64_t)pos[i] * kd + d];
            worst_add(&w, i * 2 * kd + d, rk, kv[d], 16 * EPS32 * fmax(1, fabs(rk)));
            worst_add(&w, i * 2 * kd + kd + d, rv, kv[kd + d], 1e-300);
        }
    }
    report(mode <= 1   ? "qkv_post cache"
           : mode == 2 ? "fused cache"
                       : "dec cache",
           "f32", shape, &w);
    void *bufs[] = {drows, dq, dk, dv, dcs, dbq, dbk, dbv, dqn, dkn, dout, dpart, cnt, dsk, dqs};
    for (size_t b = 0; b < sizeof bufs / sizeof bufs[0]; b++)
        cudaFree(bufs[b]);
    free(q), free(k), free(v), free(cs), free(bq), free(bk), free(bv), free(qn), free(kn);
    free(inv), free(qp), free(rows), free(out), free(got), free(sc), free(sk_), free(qs);
}

static void aseq_init(struct aseq *s, int len, int64_t kd, int paged)
{
    memset(s, 0, sizeof *s);
    s->len = len;
    s->cap = (len + 1 + 255) / 256 * 256;
    s->k = calloc((size_t)(s->cap * kd), sizeof(float));
    s->v = calloc((size_t)(s->cap * kd), sizeof(float));
    assert_true(s->k && s->v);
    fill(s->k, len * kd, -1.5f, 1.5f); /* earlier positions, already past the epilogue */
    fill(s->v, len * kd, -1, 1);
    s->paged = paged;
    if (!paged) {
        s->dev_floats = 2 * s->cap * kd;
        s->dev = dput(NULL, (size_t)s->dev_floats * sizeof(float));
        return;
    }
    /* a pool of twice the blocks the table needs; the table takes a shuffled half */
    const int nb = s->cap / CU_KV_BLOCK, pool = 2 * nb;
    const int64_t bf = (int64_t)PG_LAYERS * 2 * CU_KV_BLOCK * kd;
    s->dev_floats = pool * bf;
    s->dev = dput(NULL, (size_t)s->dev_floats * sizeof(float));
    int *perm = malloc((size_t)pool * sizeof *perm);
    s->blk = malloc((size_t)nb * sizeof *s->blk);
    assert_true(perm && s->blk);
    for (int b = 0; b < pool; b++)
        perm[b] = b;
    for (int b = pool - 1; b > 0; b--) {
        int j = (int)(rnd() % (uint32_t)(b + 1)), t = perm[b];
        perm[b] = perm[j];
        perm[j] = t;
    }
    for (int b = 0; b < nb; b++)
        s->blk[b] = s->dev + perm[b] * bf;
    s->dblk = dput(s->blk, (size_t)nb * sizeof *s->blk);
    free(perm);
}

static void aseq_free(struct aseq *s)
{
    free(s->k);
    free(s->v);
    free(s->blk);
    cudaFree(s->dev);
    if (s->dblk) cudaFree(s->dblk);
}

static void t_attention(void **state)
{
    (void)state;
    int sms = 0;
    if (!device_or_skip(&sms)) skip();
    int n_before = n_fail;
    const struct acfg cfgs[] = {
        {4, 2, 64, 64, 0, 1, 1, 0.f, 0, 0, 0}, /* Qwen-like: shared RMS q/k norms, biases */
        /* 8 q heads per kv head, partial RoPE, per-head LN, soft-cap */
        {8, 1, 128, 64, 0, 2, 0, 20.f, 0, 0, 0},
        /* one q head per kv head, hd 256, a sliding window */
        {2, 2, 256, 256, 16, 0, 1, 0.f, 0, 0, 0},
        {12, 1, 64, 32, 0, 0, 0, 0.f, 0, 0, 0}, /* 12 q heads per kv head (no grouped clusters) */
        /* gpt-oss: sinks, biases, a sliding window, 8 and 1 q heads per kv head, hd 64 and 16
         * (16: no clusters) */
        {8, 1, 64, 64, 16, 0, 1, 0.f, 1, 0, 0},
        {4, 4, 64, 64, 0, 0, 1, 0.f, 1, 0, 0},
        {4, 2, 16, 16, 8, 0, 1, 0.f, 1, 0, 0},
        /* Llama 4: a chunked RoPE layer (chunks of 16: the 40 prefill rows span three, the
         * decode rows at 40 and 300 see only their chunk), a NoPE layer with the temperature
         * (floor_scale 8); Mistral 3's query scale (steps at 16, 32: decode rows at 40, 300) */
        {8, 2, 64, 64, 0, 0, 0, 0.f, 0, 1, 16},
        {4, 1, 128, 128, 0, 0, 1, 0.f, 0, 2, 0},
        {4, 1, 128, 128, 0, 1, 0, 0.f, 0, 3, 0},
    };
    for (size_t ci = 0; ci < 2 * sizeof cfgs / sizeof cfgs[0]; ci++) {
        const int paged = ci >= sizeof cfgs / sizeof cfgs[0];
        const struct acfg *c = &cfgs[ci % (sizeof cfgs / sizeof cfgs[0])];
        const int64_t kd = (int64_t)c->KVH * c->hd;
        /* prefill: one sequence, rows at positions 0..n-1 */
        static const int pn[] = {1, 3, 40};
        for (size_t k = 0; k < 3; k++) {
            int n = pn[k], seq[40], pos[40];
            for (int i = 0; i < n; i++)
                seq[i] = 0, pos[i] = i;
            struct aseq s;
            aseq_init(&s, 0, kd, paged);
            attn_case(c, 0, n, seq, pos, &s, 1, 1024, sms, "");
            attn_case(c, 0, n, seq, pos, &s, 1, 16, sms, ", key splits of 16");
            if (n > 1) attn_case(c, 1, n, seq, pos, &s, 1, 1024, sms, "");
            aseq_free(&s);
        }
        /* decode: one row for each of three sequences holding 4, 40 and 300 positions */
        struct aseq S[3];
        int lens[3] = {4, 40, 300}, seq[3] = {0, 1, 2};
        for (int s = 0; s < 3; s++)
            aseq_init(&S[s], lens[s], kd, paged);
        for (int mode = 0; mode <= 4; mode++) {
            if (mode == 1) continue; /* prefill-only kernel */
            attn_case(c, mode, 3, seq, lens, S, 3, 32, sms, ", decode");
            attn_case(c, mode, 1, seq + 1, lens + 1, S, 3, 32, sms, ", decode");
        }
        for (int s = 0; s < 3; s++)
            aseq_free(&S[s]);
    }
    if (n_fail > n_before)
        fail_msg("%d of the attention cases failed (lines with FAIL)", n_fail - n_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_attention),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    printf("test_cuda_attn: %d cases, %d failed\n", n_cases, n_fail);
    return rc;
}
