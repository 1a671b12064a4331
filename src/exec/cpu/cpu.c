/*
 * cpu.c: the CPU executor, the default and the reference.
 *
 * One forward pass handles any batch of rows: the prefill of one sequence, one decode
 * step of many sequences, or a mix. Every projection is one matrix product over all rows
 * (each weight block is read once per step for the whole batch); attention is per row
 * and head over that row's sequence cache, which holds keys (after RoPE) and values in
 * f32, [pos][kv_head][head_dim] per layer, grown by doubling as the context grows.
 * Sliding layers attend to exactly their window and keep only what it can reach: a ring
 * of window + CHUNK positions (position p in slot p % ring). Batches are run in chunks of
 * at most CHUNK rows, which bounds the scratch buffers for long prompts and lets a chunk
 * write its keys into the ring before attending without overwriting keys still needed.
 *
 * --precision fast (fast.h) changes three things and nothing else: products of weights
 * that fast.c handles go through its kernels (the MoE router stays exact), SiLU uses its
 * polynomial exp, and the KV cache holds f16 instead of f32 (the element type is chosen
 * when the context is made). Exact mode is untouched.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "altup.h"
#include "base/alloc.h"
#include "base/error.h"
#include "exec/exec.h"
#include "fast.h"
#include "gemm.h"
#include "gemma4.h"
#include "kernels.h"
#include "mla.h"
#include "ops.h"
#include "router.h"
#include "cpu_ctx.h"
#include "posenc.h"
#include "seqstate.h"

static const struct cellm_opt cpu_opt_table[] = {
    {"isa", CELLM_OPT_CHOICE, 0, 0, 0, "auto|portable|avx2|avx512", offsetof(struct cpu_opts, isa),
     "SIMD level of the kernels, capped at what the CPU has (auto: the best it has)"},
    {"kv_ring", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct cpu_opts, kv_ring),
     "test only: 0 keeps whole key histories for sliding-window layers instead of a ring"},
};
#define CPU_N_OPTS ((int)(sizeof cpu_opt_table / sizeof cpu_opt_table[0]))

/* ---- model ----------------------------------------------------------------------------- */

static enum cellm_status cpu_model_new(const struct cellm_desc *d,
                                       const struct cellm_model_params *mp, void **out,
                                       struct cellm_error *err)
{
    struct cpu_model *m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    m->d = d;
    enum cellm_status st = cellm_opts_parse("cpu executor", cpu_opt_table, CPU_N_OPTS,
                                            mp ? mp->exec_options : NULL, &m->opts, err);
    if (st) {
        cellm_free(m);
        return st;
    }
    m->isa = m->opts.isa ? cellm_cpu_isa_cap((enum cellm_isa)(m->opts.isa - 1)) : cellm_cpu_isa();
    m->fast = mp && mp->precision == CELLM_PRECISION_FAST;
    m->fisa = cellm_fast_isa(m->isa);
    if (m->fast)
        snprintf(m->desc, sizeof m->desc, "cpu (%s; fast: %s, f16 KV)", cellm_cpu_isa_name(m->isa),
                 cellm_fast_isa_name(m->fisa));
    else
        snprintf(m->desc, sizeof m->desc, "cpu (%s)", cellm_cpu_isa_name(m->isa));
    *out = m;
    return CELLM_OK;
}

static void cpu_model_free(void *p)
{
    cellm_free(p);
}

static const char *cpu_describe(void *p)
{
    return ((struct cpu_model *)p)->desc;
}

/* ---- context --------------------------------------------------------------------------- */

static void seq_free(const struct cellm_desc *d, struct cpu_seq *s)
{
    if (s->k)
        for (int l = 0; l < d->cfg.n_layers; l++) {
            cellm_free(s->k[l]);
            cellm_free(s->v[l]);
        }
    if (s->k16)
        for (int l = 0; l < d->cfg.n_layers; l++) {
            cellm_free(s->k16[l]);
            cellm_free(s->v16[l]);
        }
    cellm_free(s->k);
    cellm_free(s->v);
    cellm_free(s->k16);
    cellm_free(s->v16);
    cellm_cpu_state_free(d, &s->st);
    memset(s, 0, sizeof *s);
}

static void cpu_ctx_free(void *p)
{
    struct cpu_ctx *c = p;
    if (!c) return;
    for (int i = 0; i < c->max_seqs && c->seqs; i++)
        seq_free(c->d, &c->seqs[i]);
    cellm_free(c->seqs);
    float *bufs[] = {c->x,     c->h,     c->q,     c->k,      c->v,          c->att,
                     c->o,     c->gate,  c->up,    c->router, c->moe_out,    c->moe_w,
                     c->moe_x, c->moe_g, c->moe_u, c->moe_y,  c->mm_scratch, c->scores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        cellm_free(bufs[i]);
    cellm_free(c->moe_idx);
    cellm_free(c->moe_rows);
    cellm_free(c->routes);
    cellm_cpu_hyb_free(&c->hyb);
    cellm_fast_free(c->fast);
    cellm_mla_free(c->mla);
    cellm_cpu_g4_free(c->g4);
    cellm_cpu_g3n_free(c->g3n);
    cellm_pool_free(c->pool);
    cellm_free(c);
}

static enum cellm_status cpu_ctx_new(void *dm, const struct cellm_ctx_params *cp, void **out,
                                     struct cellm_error *err)
{
    const int max_seqs = cp->max_seqs;
    struct cpu_model *m = dm;
    const struct cellm_config *cfg = &m->d->cfg;
    struct cpu_ctx *c = cellm_calloc(1, sizeof *c);
    if (!c) return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    c->m = m;
    c->d = m->d;
    c->max_seqs = max_seqs;
    enum cellm_status st = cellm_pool_new(cp->n_threads, &c->pool, err);
    if (st) {
        cellm_free(c);
        return st;
    }
    c->seqs = cellm_calloc((size_t)max_seqs, sizeof *c->seqs);
    /* kv_ring=0 keeps full histories for sliding layers (tests compare both) */
    if (cfg->window > 0 && cfg->window + CHUNK < cfg->max_pos && m->opts.kv_ring)
        c->ring = cfg->window + CHUNK;
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &m->d->layers[l];
        c->qd_max = max_i64(c->qd_max, (int64_t)cfg->n_heads * L->head_dim);
        c->kd_max = max_i64(c->kd_max, (int64_t)layer_kd(c, l));
        c->ffn_max = max_i64(c->ffn_max, L->ffn_dim);
    }
    c->ffn_max = max_i64(c->ffn_max, cfg->shared_ffn_dim); /* the shared experts' buffers */
    c->mm_cols = max_i64(max_i64(cfg->dim, c->qd_max), max_i64(c->ffn_max, cfg->moe_ffn_dim));
    c->mm_cols = max_i64(c->mm_cols, cellm_hybrid_max_cols(cfg));
    if (cfg->mla) c->mm_cols = max_i64(c->mm_cols, cellm_mla_max_cols(cfg));
    c->mm_scratch = cellm_malloc(cellm_cpu_scratch_floats(cellm_pool_size(c->pool), c->mm_cols) *
                                 sizeof(float));
    if (!c->seqs || !c->mm_scratch) {
        cpu_ctx_free(c);
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
    }
    if (m->fast && (st = cellm_fast_new(m->fisa, cellm_pool_size(c->pool), CHUNK, c->mm_cols,
                                        &c->fast, err))) {
        cpu_ctx_free(c);
        return st;
    }
    if (cfg->mla &&
        (st = cellm_mla_new(m->d, m->isa, cellm_pool_size(c->pool), max_seqs, &c->mla, err))) {
        cpu_ctx_free(c);
        return st;
    }
    *out = c;
    return CELLM_OK;
}

static void cpu_seq_truncate(void *p, int seq, int from)
{
    struct cpu_ctx *c = p;
    if (seq < 0 || seq >= c->max_seqs) return;
    if (from == 0) seq_free(c->d, &c->seqs[seq]);
    /* otherwise positions >= from are simply overwritten by later rows (a sequence state
     * keeps its length: eval refuses a row before it, seqstate.h) */
    if (from == 0 && c->mla) cellm_mla_seq_free(c->mla, seq);
    /* otherwise positions >= from are simply overwritten by later rows */
}

static int grow(float **p, size_t n)
{
    float *q = cellm_realloc(*p, n * sizeof(float));
    if (!q) return 0;
    *p = q;
    return 1;
}

static int grow16(uint16_t **p, size_t n)
{
    uint16_t *q = cellm_realloc(*p, n * sizeof(uint16_t));
    if (!q) return 0;
    *p = q;
    return 1;
}

/* Batch buffers for n rows. */
static enum cellm_status reserve_rows(struct cpu_ctx *c, int n, struct cellm_error *err)
{
    if (n <= c->rows_cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    size_t r = (size_t)n;
    size_t qd = (size_t)c->qd_max, kd = (size_t)c->kd_max;
    size_t ffn = (size_t)max_i64(c->ffn_max, 1), ku = (size_t)max_i64(cfg->n_experts_used, 1);
    int ok = grow(&c->x, r * cfg->dim) && grow(&c->h, r * cfg->dim) && grow(&c->q, r * qd) &&
             grow(&c->k, r * kd) && grow(&c->v, r * kd) && grow(&c->att, r * qd) &&
             grow(&c->o, r * cfg->dim) && grow(&c->gate, r * ffn) && grow(&c->up, r * ffn);
    if (ok && cfg->n_experts) {
        size_t mi = (size_t)cfg->moe_ffn_dim;
        ok = grow(&c->router, r * cfg->n_experts + 2 * cfg->n_experts + cfg->n_group) &&
             grow(&c->moe_out, r * ku * cfg->dim) && grow(&c->moe_w, r * ku) &&
             grow(&c->moe_x, r * cfg->dim) &&
             grow(&c->moe_g, r * mi * 2) /* gpt-oss: gate_up rows */ && grow(&c->moe_u, r * mi) &&
             grow(&c->moe_y, r * cfg->dim);
        int *a = ok ? cellm_realloc(c->moe_idx, r * ku * sizeof(int)) : NULL;
        if (a) c->moe_idx = a;
        int *b = a ? cellm_realloc(c->moe_rows, r * sizeof(int)) : NULL;
        if (b) c->moe_rows = b;
        ok = ok && a && b;
    }
    if (!ok)
        return cellm_errf(err, CELLM_ERR_NOMEM,
                          "cpu executor: out of memory for a batch of %d rows", n);
    if (cfg->gemma4 || cfg->gemma3n) CELLM_TRY(cellm_cpu_g4_reserve(&c->g4, c->d, n, err));
    if (cfg->gemma3n) CELLM_TRY(cellm_cpu_g3n_reserve(&c->g3n, c->d, n, err));
    c->rows_cap = n;
    return CELLM_OK;
}

/* KV room for positions < need in sequence s. */
enum cellm_status cellm_cpu_reserve_seq(struct cpu_ctx *c, struct cpu_seq *s, int need,
                                        struct cellm_error *err)
{
    if (c->mla) return cellm_mla_reserve(c->mla, (int)(s - c->seqs), need, err);
    if (need <= s->cap) return CELLM_OK;
    const struct cellm_config *cfg = &c->d->cfg;
    int L = cfg->n_layers;
    if (c->fast && !s->k16) {
        s->k16 = cellm_calloc((size_t)L, sizeof *s->k16);
        s->v16 = cellm_calloc((size_t)L, sizeof *s->v16);
        if (!s->k16 || !s->v16)
            return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for a KV cache");
    } else if (!c->fast && !s->k) {
        s->k = cellm_calloc((size_t)L, sizeof *s->k);
        s->v = cellm_calloc((size_t)L, sizeof *s->v);
        if (!s->k || !s->v)
            return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for a KV cache");
    }
    int cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > cfg->max_pos && need <= cfg->max_pos) cap = cfg->max_pos;
    for (int l = 0; l < L; l++) {
        if (c->d->layers[l].mixer != CELLM_MIXER_ATTN) continue; /* state, no KV */
        size_t kd = layer_kd(c, l);
        if (!kv_own(c, l)) continue;
        /* a sliding layer's ring is allocated once */
        if (is_ring(c, l) && (c->fast ? (void *)s->k16[l] : (void *)s->k[l])) continue;
        size_t slots = is_ring(c, l) ? (size_t)c->ring : (size_t)cap;
        int ok = c->fast ? grow16(&s->k16[l], slots * kd) && grow16(&s->v16[l], slots * kd)
                         : grow(&s->k[l], slots * kd) && grow(&s->v[l], slots * kd);
        if (!ok)
            return cellm_errf(err, CELLM_ERR_NOMEM,
                              "cpu executor: out of memory growing a KV cache to %d positions",
                              cap);
    }
    s->cap = cap;
    return CELLM_OK;
}

/* ---- attention ------------------------------------------------------------------------- */

struct attn_job {
    struct cpu_ctx *c;
    const struct cellm_exec_row *rows;
    int n, layer;
};

/* The softmax of head h's scores, widened by its sink logit when the layer has sinks. */
static void softmax_row(const struct cellm_layer *L, int h, float *sc, int n)
{
    if (L->sinks.fmt != CELLM_W_NONE)
        cellm_op_softmax_sink(sc, n, cellm_vec_at(&L->sinks, h));
    else
        cellm_op_softmax(sc, n);
}

static void attn_part(void *arg, int ti, int tn)
{
    const struct attn_job *j = arg;
    struct cpu_ctx *c = j->c;
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cellm_layer *L = &c->d->layers[j->layer];
    int H = cfg->n_heads, hd = L->head_dim, group = cfg->n_heads / L->n_kv_heads;
    size_t kd = (size_t)L->n_kv_heads * hd, qd = (size_t)H * hd;
    int src = L->kv_src; /* its own cache, or the earlier layer's it shares */
    float scale = (float)cfg->attn_scale, cap = (float)cfg->attn_softcap;
    float *sc = c->scores + (size_t)ti * c->score_cap;
    long b, e;
    cellm_split((long)j->n * H, ti, tn, &b, &e);
    for (long t = b; t < e; t++) {
        int i = (int)(t / H), h = (int)(t % H), kvh = h / group;
        const struct cellm_exec_row *row = &j->rows[i];
        const struct cpu_seq *s = &c->seqs[row->seq];
        int hi = row->pos, lo = cellm_attn_first_key(cfg, L, hi);
        const float *q = c->q + (size_t)i * qd + (size_t)h * hd;
        const float *K = s->k ? s->k[src] : NULL, *V = s->v ? s->v[src] : NULL;
        int nk = hi - lo + 1;
        float *out = c->att + (size_t)i * qd + (size_t)h * hd;
        if (c->fast) { /* f16 cache */
            enum cellm_fast_isa fi = c->m->fisa;
            const uint16_t *K16 = s->k16[src], *V16 = s->v16[src];
            for (int p = 0; p < nk; p++) {
                size_t slot = kv_slot(c, src, lo + p);
                sc[p] = cellm_fast_dot_f16(fi, q, K16 + slot * kd + (size_t)kvh * hd, hd) * scale;
            }
            if (cap > 0) cellm_op_softcap(sc, nk, cap);
            softmax_row(L, h, sc, nk);
            memset(out, 0, (size_t)hd * sizeof *out);
            for (int p = 0; p < nk; p++)
                cellm_fast_axpy_f16(fi, out, sc[p],
                                    V16 + kv_slot(c, src, lo + p) * kd + (size_t)kvh * hd, hd);
            continue;
        }
        for (int p = 0; p < nk; p++) {
            size_t slot = kv_slot(c, src, lo + p);
            float dot = cellm_cpu_dot(c->m->isa, q, K + slot * kd + (size_t)kvh * hd, hd);
            sc[p] = dot * scale;
        }
        if (cap > 0) cellm_op_softcap(sc, nk, cap);
        softmax_row(L, h, sc, nk);
        for (int d = 0; d < hd; d++)
            out[d] = 0;
        for (int p = 0; p < nk; p++) {
            const float *vv = V + kv_slot(c, src, lo + p) * kd + (size_t)kvh * hd;
            float w = sc[p];
            for (int d = 0; d < hd; d++)
                out[d] += w * vv[d];
        }
    }
}

/* ---- blocks ---------------------------------------------------------------------------- */

/* Products of one input: in fast mode, those fast.c handles go through its kernels (in one
 * parallel job), the rest through the exact ones. */
static void matmul_multi(struct cpu_ctx *c, const struct cellm_cpu_mm *outs, int n_outs,
                         const float *x, int64_t ldx, int n)
{
    if (!c->fast) {
        cellm_cpu_matmul_multi(c->pool, c->m->isa, outs, n_outs, x, ldx, n, c->mm_scratch,
                               c->mm_cols);
        return;
    }
    struct cellm_cpu_mm fast[4], exact[4];
    int nf = 0, ne = 0;
    for (int k = 0; k < n_outs && k < 4; k++) {
        if (cellm_fast_handles(outs[k].w))
            fast[nf++] = outs[k];
        else
            exact[ne++] = outs[k];
    }
    if (nf) cellm_fast_matmul_multi(c->fast, c->pool, fast, nf, x, ldx, n);
    if (ne)
        cellm_cpu_matmul_multi(c->pool, c->m->isa, exact, ne, x, ldx, n, c->mm_scratch, c->mm_cols);
}

static void matmul(struct cpu_ctx *c, const struct cellm_weight *w, const float *x, int64_t ldx,
                   int n, float *y, int64_t ldy)
{
    const struct cellm_cpu_mm o = {w, y, ldy};
    matmul_multi(c, &o, 1, x, ldx, n);
}

/* The products the blocks outside this file call (seqstate.h, mla.h, gemma4.h): the
 * executor's (fast in fast mode), and the exact one. */
static void env_matmul(void *ctx, const struct cellm_weight *w, const float *x, int64_t ldx, int n,
                       float *y, int64_t ldy)
{
    matmul(ctx, w, x, ldx, n, y, ldy);
}

static void env_matmul_exact(void *ctx, const struct cellm_weight *w, const float *x, int64_t ldx,
                             int n, float *y, int64_t ldy)
{
    struct cpu_ctx *c = ctx;
    cellm_cpu_matmul(c->pool, c->m->isa, w, x, ldx, n, y, ldy, c->mm_scratch, c->mm_cols);
}

static enum cellm_status attention(struct cpu_ctx *c, int l, const struct cellm_exec_row *rows,
                                   int n, const float *hin, float *out, struct cellm_error *err)
{
    if (c->mla)
        return cellm_mla_attention(c->mla, c->pool, l, rows, n, hin, out, env_matmul, c, err);
    const struct cellm_config *cfg = &c->d->cfg;
    const struct cellm_layer *L = &c->d->layers[l];
    int hd = L->head_dim, dim = cfg->dim, own = kv_own(c, l);
    int64_t qd = (int64_t)cfg->n_heads * hd, kd = (int64_t)L->n_kv_heads * hd;
    float eps = (float)cfg->norm_eps;
    const struct cellm_vec no_weight = {CELLM_W_NONE, 0, NULL}; /* Gemma 3n's v norm */
    /* a KV-shared layer projects only its queries; a k=v layer has no v_proj (Gemma 4);
     * gated attention (Qwen3-Next) projects each head's queries and output gates together */
    const struct cellm_cpu_mm qkv[3] = {
        {&L->wq, cfg->attn_out_gate ? c->hyb.qg : c->q, cfg->attn_out_gate ? 2 * qd : qd},
        {&L->wk, c->k, kd},
        {&L->wv, c->v, kd}};
    int has_v = own && L->wv.fmt != CELLM_W_NONE, n_mm = own ? (has_v ? 3 : 2) : 1;
    if (c->fast && (cfg->gemma4 || cfg->gemma3n)) {
        /* Gemma 4 and Gemma 3n norm every q, k and v head right after these products and
         * scale q.k by 1: the norms blow fast mode's activation rounding of a small head up to full
         * size and the scores carry it unscaled, so these products stay exact (as the router) */
        cellm_cpu_matmul_multi(c->pool, c->m->isa, qkv, n_mm, hin, dim, n, c->mm_scratch,
                               c->mm_cols);
    } else {
        matmul_multi(c, qkv, n_mm, hin, dim, n);
    }
    if (cfg->attn_out_gate) cellm_cpu_attn_gate_split(cfg, &c->hyb, c->q, n);
    for (int i = 0; i < n; i++) {
        float *q = c->q + i * qd, *k = c->k + i * kd, *v = c->v + i * kd;
        const float *inv_freq = cellm_layer_inv_freq(L, rows[i].seq_len);
        float qscale = cellm_query_scale(cfg, L, rows[i].pos);
        cellm_op_add_vec(q, &L->bq, qd);
        if (cfg->qk_norm_full) /* OLMo 2: one norm over all heads, before RoPE */
            cellm_op_norm(cfg->norm, eps, &L->q_norm_full, NULL, q, q, qd);
        for (int h = 0; h < cfg->n_heads; h++) {
            float *qh = q + h * hd;
            if (L->q_norm_heads)
                cellm_op_norm(CELLM_NORM_LAYER, eps, &L->q_norm_heads[h], NULL, qh, qh, hd);
            else if (cfg->qk_norm)
                cellm_op_norm(cfg->norm, eps, &L->q_norm, NULL, qh, qh, hd);
            cellm_op_head_pos(cfg, L, qh, inv_freq, rows[i].pos, qscale);
        }
        if (!own) continue;
        cellm_op_add_vec(k, &L->bk, kd);
        if (has_v)
            cellm_op_add_vec(v, &L->bv, kd);
        else
            memcpy(v, k, (size_t)kd * sizeof(float)); /* k=v: the values are the raw keys */
        if (cfg->qk_norm_full) cellm_op_norm(cfg->norm, eps, &L->k_norm_full, NULL, k, k, kd);
        for (int h = 0; h < L->n_kv_heads; h++) {
            float *kh = k + h * hd;
            if (L->k_norm_heads)
                cellm_op_norm(CELLM_NORM_LAYER, eps, &L->k_norm_heads[h], NULL, kh, kh, hd);
            else if (cfg->qk_norm)
                cellm_op_norm(cfg->norm, eps, &L->k_norm, NULL, kh, kh, hd);
            cellm_op_head_pos(cfg, L, kh, inv_freq, rows[i].pos, 1.0f);
            if (cfg->gemma4) cellm_cpu_g4_v_norm(v + h * hd, hd, eps);
            if (cfg->gemma3n)
                cellm_op_norm(cfg->norm, eps, &no_weight, NULL, v + h * hd, v + h * hd, hd);
        }
        struct cpu_seq *s = &c->seqs[rows[i].seq];
        size_t slot = kv_slot(c, l, rows[i].pos);
        if (c->fast) {
            cellm_fast_to_f16(c->m->fisa, k, s->k16[l] + slot * kd, kd);
            cellm_fast_to_f16(c->m->fisa, v, s->v16[l] + slot * kd, kd);
            continue;
        }
        memcpy(s->k[l] + slot * kd, k, (size_t)kd * sizeof(float));
        memcpy(s->v[l] + slot * kd, v, (size_t)kd * sizeof(float));
    }
    struct attn_job j = {c, rows, n, l};
    cellm_pool_run(c->pool, attn_part, &j);
    if (cfg->attn_out_gate) cellm_cpu_attn_gate_apply(cfg, &c->hyb, c->att, n);
    matmul(c, &L->wo, c->att, qd, n, out, dim);
    for (int i = 0; i < n; i++)
        cellm_op_add_vec(out + (size_t)i * dim, &L->bo, dim);
    (void)err;
    return CELLM_OK;
}

/* The attention the Gemma 3n layer (altup.h) calls. */
static enum cellm_status env_attention(void *ctx, int l, const struct cellm_exec_row *rows, int n,
                                       const float *h, float *out, struct cellm_error *err)
{
    return attention(ctx, l, rows, n, h, out, err);
}

static void dense_mlp(struct cpu_ctx *c, const struct cellm_weight *wg,
                      const struct cellm_weight *wu, const struct cellm_weight *wd,
                      const struct cellm_vec *bg, const struct cellm_vec *bu,
                      const struct cellm_vec *bd, const float *x, int n, float *gate, float *up,
                      float *out)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t I = wg->rows, dim = cfg->dim;
    const struct cellm_cpu_mm gu[2] = {{wg, gate, I}, {wu, up, I}};
    matmul_multi(c, gu, 2, x, dim, n);
    for (int i = 0; i < n; i++) {
        if (bg) cellm_op_add_vec(gate + i * I, bg, I);
        if (bu) cellm_op_add_vec(up + i * I, bu, I);
        if (c->fast)
            cellm_fast_glu(c->m->fisa, cfg->act, gate + i * I, up + i * I, I);
        else
            cellm_op_glu(cfg->act, gate + i * I, up + i * I, I);
    }
    matmul(c, wd, gate, I, n, out, dim);
    if (bd)
        for (int i = 0; i < n; i++)
            cellm_op_add_vec(out + i * dim, bd, dim);
}

/*
 * A gpt-oss expert over m gathered rows of moe_x into moe_y: projections with biases and
 * the clamped SwiGLU. The Hugging Face layout computes gate and up as one interleaved
 * [2I] row (gate i at 2i, up i at 2i+1); mlx-lm's has them apart.
 */
static void oss_expert(struct cpu_ctx *c, const struct cellm_layer *L, int e, int m)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t I = cfg->moe_ffn_dim, dim = cfg->dim;
    float alpha = (float)cfg->swiglu_alpha, limit = (float)cfg->swiglu_limit;
    float *act;
    if (c->d->experts == CELLM_EXPERTS_INTERLEAVED) {
        matmul(c, &L->e_gate_up[e], c->moe_x, dim, m, c->moe_g, 2 * I);
        for (int r = 0; r < m; r++) {
            float *gu = c->moe_g + (size_t)r * 2 * I;
            cellm_op_add_vec(gu, &L->e_gate_up_b[e], 2 * I);
            cellm_op_swiglu_clamp(gu, gu + 1, 2, c->moe_u + (size_t)r * I, I, alpha, limit);
        }
        act = c->moe_u;
    } else {
        const struct cellm_cpu_mm gu[2] = {{&L->e_gate[e], c->moe_g, I},
                                           {&L->e_up[e], c->moe_u, I}};
        matmul_multi(c, gu, 2, c->moe_x, dim, m);
        for (int r = 0; r < m; r++) {
            float *g = c->moe_g + (size_t)r * I, *u = c->moe_u + (size_t)r * I;
            cellm_op_add_vec(g, &L->e_gate_b[e], I);
            cellm_op_add_vec(u, &L->e_up_b[e], I);
            cellm_op_swiglu_clamp(g, u, 1, g, I, alpha, limit);
        }
        act = c->moe_g;
    }
    matmul(c, &L->e_down[e], act, I, m, c->moe_y, dim);
    for (int r = 0; r < m; r++)
        cellm_op_add_vec(c->moe_y + (size_t)r * dim, &L->e_down_b[e], dim);
}

/* The router (router.h) per token in f32, then the weighted sum over the k ranks. Tokens
 * are grouped per expert so that each expert's weights are read once per step. */
static void moe_scale_row(float *x, float w, int64_t n)
{
    for (int64_t d = 0; d < n; d++)
        x[d] = x[d] * w;
}

/* Llama 4: out = shared(x) + (the chosen experts' outputs summed in expert order), as
 * transformers adds the [E, T, H] sum over experts (exact zeros for the others) to the
 * shared expert's output. */
static void moe_sum_shared(struct cpu_ctx *c, const struct cellm_layer *L, const float *x, int n,
                           float *out)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int K = cfg->n_experts_used;
    int64_t dim = cfg->dim;
    dense_mlp(c, &L->s_gate, &L->s_up, &L->s_down, NULL, NULL, NULL, x, n, c->gate, c->up, out);
    for (int i = 0; i < n; i++) {
        const int *idx = c->moe_idx + (size_t)i * K;
        float *o = out + (size_t)i * dim, *acc = c->moe_y; /* free again after the experts */
        int first = 1;
        for (int e = 0; e < cfg->n_experts; e++)
            for (int k = 0; k < K; k++) {
                if (idx[k] != e) continue;
                const float *y = c->moe_out + ((size_t)i * K + k) * dim;
                for (int64_t d = 0; d < dim; d++)
                    acc[d] = first ? y[d] : acc[d] + y[d];
                first = 0;
            }
        for (int64_t d = 0; d < dim; d++)
            o[d] = o[d] + acc[d];
    }
}

/* Qwen3-MoE: softmax router over all experts in f32, top-k, optional renormalisation;
 * gpt-oss: router logits with a bias, top-k of the logits, softmax over those k. Then the
 * weighted sum over the k ranks. Tokens are grouped per expert so that each expert's
 * weights are read once per step. */
static void moe(struct cpu_ctx *c, const struct cellm_layer *L, const float *x, int n, float *out)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int E = cfg->n_experts, K = cfg->n_experts_used;
    int64_t dim = cfg->dim, I = cfg->moe_ffn_dim;
    /* exact in fast mode too: a rounding that reorders two experts changes the output by
     * far more than the rounding itself */
    cellm_cpu_matmul(c->pool, c->m->isa, &L->router, x, dim, n, c->router, E, c->mm_scratch,
                     c->mm_cols);
    struct cellm_route_spec spec;
    cellm_route_spec_of(cfg, L, &spec);
    for (int i = 0; i < n; i++) {
        int *idx = c->moe_idx + (size_t)i * K;
        cellm_route_token(&spec, c->router + (size_t)i * E, idx, c->moe_w + (size_t)i * K);
        int32_t *rt = c->routes + ((size_t)(c->route_base + i) * (size_t)cfg->n_layers +
                                   (size_t)(L - c->d->layers)) *
                                      (size_t)K;
        for (int k = 0; k < K; k++)
            rt[k] = idx[k];
    }
    for (int e = 0; e < E; e++) {
        int m = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < K; k++)
                if (c->moe_idx[(size_t)i * K + k] == e) {
                    c->moe_rows[m] = i * K + k;
                    memcpy(c->moe_x + (size_t)m * dim, x + (size_t)i * dim,
                           (size_t)dim * sizeof(float));
                    if (cfg->router == CELLM_ROUTER_SIGMOID_INPUT) /* Llama 4 scales the input */
                        moe_scale_row(c->moe_x + (size_t)m * dim, c->moe_w[(size_t)i * K + k], dim);
                    m++;
                }
        if (!m) continue;
        if (cfg->swiglu_clamp)
            oss_expert(c, L, e, m);
        else
            dense_mlp(c, &L->e_gate[e], &L->e_up[e], &L->e_down[e], NULL, NULL, NULL, c->moe_x, m,
                      c->moe_g, c->moe_u, c->moe_y);
        for (int r = 0; r < m; r++)
            memcpy(c->moe_out + (size_t)c->moe_rows[r] * dim, c->moe_y + (size_t)r * dim,
                   (size_t)dim * sizeof(float));
    }
    if (cfg->router == CELLM_ROUTER_SIGMOID_INPUT) {
        moe_sum_shared(c, L, x, n, out);
        return;
    }
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * dim;
        for (int64_t d = 0; d < dim; d++)
            o[d] = 0;
        for (int k = 0; k < K; k++) {
            float w = c->moe_w[(size_t)i * K + k];
            const float *y = c->moe_out + ((size_t)i * K + k) * dim;
            for (int64_t d = 0; d < dim; d++) {
                float t = w * y[d];
                o[d] = o[d] + t;
            }
        }
    }
    (void)I;
}

static void add_rows(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] + y[i];
}

/* x + y * m, the residual of a sub-block (Granite's residual_multiplier m; else plain) */
static void residual(const struct cpu_ctx *c, float *x, const float *y, int64_t n)
{
    const double m = c->d->cfg.residual_mult;
    if (m == 1) {
        add_rows(x, y, n);
        return;
    }
    const float mf = (float)m;
    for (int64_t i = 0; i < n; i++)
        x[i] = x[i] + y[i] * mf;
}

/* n rows of x [n][dim] normed into out (which may be x) */
static void norm_rows(struct cpu_ctx *c, const struct cellm_vec *w, const struct cellm_vec *b,
                      const float *x, float *out, int n)
{
    const struct cellm_config *cfg = &c->d->cfg;
    int64_t dim = cfg->dim;
    for (int i = 0; i < n; i++)
        cellm_op_norm(cfg->norm, (float)cfg->norm_eps, w, b, x + i * dim, out + i * dim, dim);
}

/* The feed-forward sub-block of a layer: its experts, or its dense MLP. */
static void ffn(struct cpu_ctx *c, const struct cellm_layer *L, const float *x, int n, float *out)
{
    if (L->moe && !c->d->cfg.moe_parallel) { /* Gemma 4's experts run beside the MLP */
        moe(c, L, x, n, out);
        /* shared experts: routed + shared(x); Llama 4's moe() sums its own in its order */
        if (L->s_gate.fmt != CELLM_W_NONE && !c->d->cfg.shared_expert) {
            dense_mlp(c, &L->s_gate, &L->s_up, &L->s_down, NULL, NULL, NULL, x, n, c->gate, c->up,
                      c->moe_y);
            add_rows(out, c->moe_y, (int64_t)n * c->d->cfg.dim);
        }
        if (L->hyb && L->hyb->sh_gate.fmt != CELLM_W_NONE)
            cellm_cpu_shared_expert(&c->env, c->d, L, &c->hyb, x, n, out);
    } else
        dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, &L->b_gate, &L->b_up, &L->b_down, x, n,
                  c->gate, c->up, out);
}

/* ---- eval ------------------------------------------------------------------------------ */

static enum cellm_status eval_chunk(struct cpu_ctx *c, const struct cellm_exec_row *rows, int n,
                                    float *logits, struct cellm_error *err)
{
    const struct cellm_desc *d = c->d;
    const struct cellm_config *cfg = &d->cfg;
    int64_t dim = cfg->dim;
    float eps = (float)cfg->norm_eps;
    CELLM_TRY(reserve_rows(c, n, err));
    int max_keys = 0;
    for (int i = 0; i < n; i++) {
        if (rows[i].seq < 0 || rows[i].seq >= c->max_seqs)
            return cellm_errf(err, CELLM_ERR_ARG, "row %d: sequence %d out of range", i,
                              rows[i].seq);
        if (rows[i].token < 0 || rows[i].token >= cfg->vocab)
            return cellm_errf(err, CELLM_ERR_RANGE, "token id %d is outside the vocabulary [0, %d)",
                              rows[i].token, cfg->vocab);
        CELLM_TRY(cellm_cpu_reserve_seq(c, &c->seqs[rows[i].seq], rows[i].pos + 1, err));
        if (rows[i].pos + 1 > max_keys) max_keys = rows[i].pos + 1;
    }
    if (cfg->hybrid) {
        c->env = (struct cellm_cpu_env){c,       env_matmul, env_matmul_exact,
                                        c->pool, c->m->fast, c->m->fisa};
        CELLM_TRY(cellm_cpu_hyb_begin(d, &c->hyb, rows, n, &c->seqs[0].st, sizeof *c->seqs, err));
    }
    if (max_keys > c->score_cap) {
        int cap = max_keys < 256 ? 256 : max_keys;
        float *s = cellm_realloc(c->scores, (size_t)cellm_pool_size(c->pool) * cap * sizeof(float));
        if (!s)
            return cellm_errf(err, CELLM_ERR_NOMEM,
                              "cpu executor: out of memory for attention scores");
        c->scores = s;
        c->score_cap = cap;
    }
    for (int i = 0; i < n; i++) {
        float *x = c->x + (size_t)i * dim;
        cellm_cpu_dequant_rows(c->m->isa, &d->embed, rows[i].token, 1, x);
        if (cfg->embed_scale)
            for (int64_t k = 0; k < dim; k++)
                x[k] = x[k] * d->embed_scale;
    }
    struct cellm_cpu_g4_env env = {c,          env_matmul, env_matmul_exact, c->fast != NULL,
                                   c->m->fisa, c->m->isa};
    if (cfg->ple_dim) cellm_cpu_g4_ple(c->g4, &env, d, rows, c->x, n);
    const struct cellm_cpu_g3n_env g3env = {env, env_attention};
    if (cfg->gemma3n) cellm_cpu_g3n_embed(c->g3n, &env, d, c->x, n);
    for (int l = 0; l < cfg->n_layers; l++) {
        const struct cellm_layer *L = &d->layers[l];
        if (cfg->gemma3n) { /* AltUp streams around attention and MLP (altup.h) */
            CELLM_TRY(cellm_cpu_g3n_layer(c->g3n, &g3env, d, l, rows, n,
                                          cellm_cpu_g4_ple_inputs(c->g4), err));
            continue;
        }
        if (cfg->block == CELLM_BLOCK_POST_NORM) { /* x + norm(attn(x)), then x + norm(mlp(x)) */
            CELLM_TRY(attention(c, l, rows, n, c->x, c->o, err));
            norm_rows(c, &L->post_attn_norm, NULL, c->o, c->o, n);
            add_rows(c->x, c->o, (int64_t)n * dim);
            ffn(c, L, c->x, n, c->o);
            norm_rows(c, &L->post_ffn_norm, NULL, c->o, c->o, n);
            add_rows(c->x, c->o, (int64_t)n * dim);
            continue;
        }
        norm_rows(c, &L->attn_norm, &L->attn_norm_b, c->x, c->h, n);
        if (!cellm_cpu_state_mixer(&c->env, d, l, &c->hyb, c->h, n, c->o))
            CELLM_TRY(attention(c, l, rows, n, c->h, c->o, err));
        switch (cfg->block) {
        case CELLM_BLOCK_PARALLEL: /* x + attn(h) + mlp(h), h = the input norm */
            dense_mlp(c, &L->w_gate, &L->w_up, &L->w_down, NULL, NULL, NULL, c->h, n, c->gate,
                      c->up, c->h);
            for (int i = 0; i < n; i++) {
                add_rows(c->x + i * dim, c->o + i * dim, dim);
                add_rows(c->x + i * dim, c->h + i * dim, dim);
            }
            break;
        case CELLM_BLOCK_SANDWICH: /* x + norm(attn(h)), then x + norm(mlp(norm(x))) */
            norm_rows(c, &L->post_attn_norm, NULL, c->o, c->o, n);
            add_rows(c->x, c->o, (int64_t)n * dim);
            norm_rows(c, &L->ffn_norm, &L->ffn_norm_b, c->x, c->h, n);
            ffn(c, L, c->h, n, c->o);
            if (L->moe && cfg->moe_parallel) /* Gemma 4: the experts beside the MLP */
                cellm_cpu_g4_moe(c->g4, &env, d, l, c->x, c->o, n,
                                 c->routes +
                                     (size_t)c->route_base * cfg->n_layers * cfg->n_experts_used);
            norm_rows(c, &L->post_ffn_norm, NULL, c->o, c->o, n);
            add_rows(c->x, c->o, (int64_t)n * dim);
            if (cfg->gemma4) cellm_cpu_g4_layer_end(c->g4, &env, d, l, c->x, n);
            break;
        case CELLM_BLOCK_PRE_NORM: /* x + attn(h), then x + mlp(norm(x)) */
            residual(c, c->x, c->o, (int64_t)n * dim);
            norm_rows(c, &L->ffn_norm, &L->ffn_norm_b, c->x, c->h, n);
            ffn(c, L, c->h, n, c->o);
            residual(c, c->x, c->o, (int64_t)n * dim);
            break;
        case CELLM_BLOCK_POST_NORM: /* above */
            break;
        }
    }
    if (cfg->hybrid) cellm_cpu_hyb_end(&c->hyb, rows, n);
    if (cfg->gemma3n) cellm_cpu_g3n_unembed(c->g3n, &env, d, c->x, n);
    /* final norm of the rows that want logits, gathered, then the head */
    int nw = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].want_logits)
            cellm_op_norm(cfg->norm, eps, &d->final_norm, &d->final_norm_b, c->x + i * dim,
                          c->o + (size_t)(nw++) * dim, dim);
    if (nw) {
        matmul(c, &d->head, c->o, dim, nw, logits, cfg->vocab);
        if (cfg->logits_div != 1) { /* Granite: logits / logits_scaling */
            const float div = (float)cfg->logits_div;
            for (int64_t i = 0; i < (int64_t)nw * cfg->vocab; i++)
                logits[i] = logits[i] / div;
        }
        if (cfg->final_softcap > 0)
            cellm_op_softcap(logits, (int64_t)nw * cfg->vocab, (float)cfg->final_softcap);
    }
    return CELLM_OK;
}

static enum cellm_status cpu_eval(void *p, const struct cellm_exec_row *rows, int n, float *logits,
                                  struct cellm_error *err)
{
    struct cpu_ctx *c = p;
    const struct cellm_config *cfg = &c->d->cfg;
    c->routes_rows = 0;
    if (cfg->n_experts) { /* every row's experts, for cellm_ctx_routes */
        size_t need = (size_t)n * (size_t)cfg->n_layers * (size_t)cfg->n_experts_used;
        if (need > c->routes_cap) {
            int32_t *r = cellm_realloc(c->routes, need * sizeof *r);
            if (!r) return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory");
            c->routes = r;
            c->routes_cap = need;
        }
        memset(c->routes, 0xff, need * sizeof *c->routes); /* -1: a layer without experts */
    }
    for (int b = 0; b < n; b += CHUNK) {
        int m = n - b < CHUNK ? n - b : CHUNK;
        c->route_base = b;
        CELLM_TRY(eval_chunk(c, rows + b, m, logits, err));
        for (int i = 0; i < m; i++)
            logits += rows[b + i].want_logits ? c->d->cfg.vocab : 0;
    }
    if (cfg->n_experts) c->routes_rows = n;
    return CELLM_OK;
}

static int cpu_routes(void *p, int32_t *ids, int cap)
{
    const struct cpu_ctx *c = p;
    const struct cellm_config *cfg = &c->d->cfg;
    size_t n = (size_t)c->routes_rows * (size_t)cfg->n_layers * (size_t)cfg->n_experts_used;
    if (!n || (size_t)cap < n) return 0;
    memcpy(ids, c->routes, n * sizeof *ids);
    return (int)n;
}

const struct cellm_exec_vt cellm_exec_cpu = {
    .name = "cpu",
    .has_fast = 1,
    .opts = cpu_opt_table,
    .n_opts = CPU_N_OPTS,
    .model_new = cpu_model_new,
    .model_free = cpu_model_free,
    .ctx_new = cpu_ctx_new,
    .ctx_free = cpu_ctx_free,
    .seq_truncate = cpu_seq_truncate,
    .routes = cpu_routes,
    .eval = cpu_eval,
    .describe = cpu_describe,
    .kv_block_bytes = cellm_cpu_kv_block_bytes,
    .kv_save = cellm_cpu_kv_save,
    .kv_load = cellm_cpu_kv_load,
    .kv_block_free = cellm_cpu_kv_block_free,
    .kv_window_first = cellm_cpu_kv_window_first,
    .state_save = cellm_cpu_state_save,
    .state_load = cellm_cpu_state_load,
    .state_free = cellm_cpu_kv_block_free,
};
