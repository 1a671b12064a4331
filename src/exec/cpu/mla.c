/*
 * mla.c: multi-head latent attention (mla.h), in the absorbed form for every row.
 *
 * transformers expands the cached latent c~_t into per-head keys k_nope = Wk_h c~_t and
 * values v = Wv_h c~_t (Wk_h, Wv_h: head h's rows of kv_b_proj). Here the query is moved
 * into the latent space instead: q~_h = Wk_h^T q_nope_h once per row and head, the score
 * of key t is [q~_h, q_pe_h] . [c~_t, k_pe_t] (one dot product of r + qk_rope), and the
 * softmax-weighted sum of the latents goes through Wv_h once at the end. Every product of
 * the expanded form appears here too; only where partial sums round moves (the
 * reassociation argument of docs/forward/deepseek-v3.md, within the contract's "any
 * summation order"), so exact and fast mode both use it. The cache is then the latent and
 * the rope key only, r + qk_rope floats per position and layer, in f32 in both modes.
 *
 * The trade-off: a long prefill pays r + qk_rope per (query, key, head) instead of
 * qk_nope + qk_rope + v_head_dim after a one-off expansion; decode, the common case,
 * reads far less. Work is split over heads: each thread widens its heads' Wk_h and Wv_h
 * once per call (shared by every row of the batch) into its scratch.
 */
#include "mla.h"

#include <string.h>

#include "base/alloc.h"
#include "ops.h"

/* The latent projections' own norms: DeepseekV3RMSNorm's default eps, not rms_norm_eps. */
#define MLA_NORM_EPS 1e-6f

struct mla_seq {
    int cap;    /* positions allocated */
    float **kv; /* [n_layers] of [cap][r + qk_rope]: c~ then the rotated k_pe */
};

struct cellm_mla {
    const struct cellm_desc *d;
    enum cellm_isa isa;
    int n_threads, max_seqs;
    struct mla_seq *seqs;
    int rows_cap;
    float *qa;  /* [rows][q_lora_rank] */
    float *q;   /* [rows][n_heads][qk_nope + qk_rope] */
    float *kva; /* [rows][r + qk_rope] */
    float *att; /* [rows][n_heads][v_head_dim] */
    float *thr; /* per thread, thr_floats each: Wk_h^T, Wv_h, a widening buffer, q cat,
                   the latent sum, scores */
    size_t thr_floats;
    int score_cap;
};

int64_t cellm_mla_max_cols(const struct cellm_config *c)
{
    int64_t m = c->dim;
    int64_t cols[] = {c->q_lora_rank, c->kv_lora_rank, (int64_t)c->n_heads * c->v_head_dim,
                      c->qk_nope_dim, (int64_t)c->moe_ffn_dim * c->n_shared_experts};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++)
        if (cols[i] > m) m = cols[i];
    return m;
}

enum cellm_status cellm_mla_new(const struct cellm_desc *d, enum cellm_isa isa, int n_threads,
                                int max_seqs, struct cellm_mla **out, struct cellm_error *err)
{
    struct cellm_mla *m = cellm_calloc(1, sizeof *m);
    if (m) m->seqs = cellm_calloc((size_t)max_seqs, sizeof *m->seqs);
    if (!m || !m->seqs) {
        cellm_free(m);
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for MLA");
    }
    m->d = d;
    m->isa = isa;
    m->n_threads = n_threads;
    m->max_seqs = max_seqs;
    *out = m;
    return CELLM_OK;
}

void cellm_mla_seq_free(struct cellm_mla *m, int seq)
{
    struct mla_seq *s = &m->seqs[seq];
    if (s->kv)
        for (int l = 0; l < m->d->cfg.n_layers; l++)
            cellm_free(s->kv[l]);
    cellm_free(s->kv);
    memset(s, 0, sizeof *s);
}

void cellm_mla_free(struct cellm_mla *m)
{
    if (!m) return;
    for (int i = 0; i < m->max_seqs; i++)
        cellm_mla_seq_free(m, i);
    cellm_free(m->seqs);
    cellm_free(m->qa);
    cellm_free(m->q);
    cellm_free(m->kva);
    cellm_free(m->att);
    cellm_free(m->thr);
    cellm_free(m);
}

static size_t entry(const struct cellm_config *c)
{
    return (size_t)c->kv_lora_rank + (size_t)c->qk_rope_dim;
}

static int grow(float **p, size_t n)
{
    float *q = cellm_realloc(*p, (n ? n : 1) * sizeof(float));
    if (!q) return 0;
    *p = q;
    return 1;
}

enum cellm_status cellm_mla_reserve(struct cellm_mla *m, int seq, int need, struct cellm_error *err)
{
    struct mla_seq *s = &m->seqs[seq];
    const struct cellm_config *c = &m->d->cfg;
    if (need <= s->cap) return CELLM_OK;
    if (!s->kv && !(s->kv = cellm_calloc((size_t)c->n_layers, sizeof *s->kv)))
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for a latent cache");
    int cap = s->cap ? s->cap : 64;
    while (cap < need)
        cap *= 2;
    if (cap > c->max_pos && need <= c->max_pos) cap = c->max_pos;
    for (int l = 0; l < c->n_layers; l++)
        if (!grow(&s->kv[l], (size_t)cap * entry(c)))
            return cellm_errf(err, CELLM_ERR_NOMEM,
                              "cpu executor: out of memory growing a latent cache to %d positions",
                              cap);
    s->cap = cap;
    return CELLM_OK;
}

static enum cellm_status reserve_rows(struct cellm_mla *m, int n, int keys, struct cellm_error *err)
{
    const struct cellm_config *c = &m->d->cfg;
    size_t r = (size_t)c->kv_lora_rank, dn = (size_t)c->qk_nope_dim, dv = (size_t)c->v_head_dim;
    size_t qd = (size_t)c->n_heads * (size_t)c->head_dim;
    if (n > m->rows_cap) {
        size_t k = (size_t)n;
        int ok = grow(&m->qa, k * (size_t)c->q_lora_rank) && grow(&m->q, k * qd) &&
                 grow(&m->kva, k * entry(c)) && grow(&m->att, k * (size_t)c->n_heads * dv);
        if (!ok)
            return cellm_errf(err, CELLM_ERR_NOMEM,
                              "cpu executor: out of memory for an MLA batch of %d rows", n);
        m->rows_cap = n;
    }
    if (keys > m->score_cap || !m->thr) {
        int cap = keys < 256 ? 256 : keys;
        size_t per = r * dn + dv * r + (dn > dv ? dn : dv) * r + entry(c) + r + (size_t)cap;
        if (!grow(&m->thr, per * (size_t)m->n_threads))
            return cellm_errf(err, CELLM_ERR_NOMEM,
                              "cpu executor: out of memory for MLA attention scratch");
        m->thr_floats = per;
        m->score_cap = cap;
    }
    return CELLM_OK;
}

/* transformers' rope_interleave: the pairs (2i, 2i+1) are moved to (i, i + n/2) before the
 * rotate-half rotation; queries and keys alike, so their dot products are unchanged. */
static void deinterleave(float *x, int n)
{
    float t[512];
    for (int i = 0; i < n / 2; i++) {
        t[i] = x[2 * i];
        t[n / 2 + i] = x[2 * i + 1];
    }
    memcpy(x, t, (size_t)n * sizeof *x);
}

struct head_job {
    struct cellm_mla *m;
    const struct cellm_exec_row *rows;
    int n, l;
};

/* Head h's Wk_h^T [r][dn] into kt and Wv_h [dv][r] into wv, widened to f32. */
static void load_head(const struct cellm_mla *m, const struct cellm_layer *L, int h, float *kt,
                      float *wv, float *tmp)
{
    const struct cellm_config *c = &m->d->cfg;
    int64_t r = c->kv_lora_rank, dn = c->qk_nope_dim, dv = c->v_head_dim;
    if (m->d->mla_split) { /* mlx-lm keeps them per head, Wk_h already transposed */
        cellm_cpu_dequant_rows(m->isa, &L->mla_embed_q[h], 0, r, kt);
        cellm_cpu_dequant_rows(m->isa, &L->mla_unembed[h], 0, dv, wv);
        return;
    }
    int64_t row0 = (int64_t)h * (dn + dv);
    cellm_cpu_dequant_rows(m->isa, &L->mla_kv_b, row0, dn, tmp);
    for (int64_t i = 0; i < dn; i++)
        for (int64_t j = 0; j < r; j++)
            kt[j * dn + i] = tmp[i * r + j];
    cellm_cpu_dequant_rows(m->isa, &L->mla_kv_b, row0 + dn, dv, wv);
}

static void head_part(void *arg, int ti, int tn)
{
    const struct head_job *j = arg;
    struct cellm_mla *m = j->m;
    const struct cellm_config *c = &m->d->cfg;
    const struct cellm_layer *L = &m->d->layers[j->l];
    const int r = c->kv_lora_rank, dn = c->qk_nope_dim, dr = c->qk_rope_dim, dv = c->v_head_dim;
    const int dq = c->head_dim, H = c->n_heads, ent = r + dr;
    const float scale = (float)c->attn_scale;
    float *kt = m->thr + (size_t)ti * m->thr_floats;
    float *wv = kt + (size_t)r * dn, *tmp = wv + (size_t)dv * r;
    float *qc = tmp + (size_t)(dn > dv ? dn : dv) * r, *lat = qc + ent, *sc = lat + r;
    long b, e;
    cellm_split(H, ti, tn, &b, &e);
    for (long h = b; h < e; h++) {
        load_head(m, L, (int)h, kt, wv, tmp);
        for (int i = 0; i < j->n; i++) {
            const struct cellm_exec_row *row = &j->rows[i];
            const float *kv = m->seqs[row->seq].kv[j->l];
            const float *qn = m->q + ((size_t)i * H + (size_t)h) * dq;
            for (int k = 0; k < r; k++)
                qc[k] = cellm_cpu_dot(m->isa, kt + (size_t)k * dn, qn, dn);
            memcpy(qc + r, qn + dn, (size_t)dr * sizeof *qc);
            int nk = row->pos + 1;
            for (int p = 0; p < nk; p++)
                sc[p] = cellm_cpu_dot(m->isa, qc, kv + (size_t)p * ent, ent) * scale;
            cellm_op_softmax(sc, nk);
            for (int k = 0; k < r; k++)
                lat[k] = 0;
            for (int p = 0; p < nk; p++) {
                const float *ct = kv + (size_t)p * ent, w = sc[p];
                for (int k = 0; k < r; k++)
                    lat[k] += w * ct[k];
            }
            float *o = m->att + ((size_t)i * H + (size_t)h) * dv;
            for (int d = 0; d < dv; d++)
                o[d] = cellm_cpu_dot(m->isa, wv + (size_t)d * r, lat, r);
        }
    }
}

enum cellm_status cellm_mla_attention(struct cellm_mla *m, struct cellm_pool *pool, int l,
                                      const struct cellm_exec_row *rows, int n, const float *h,
                                      float *out, cellm_mla_mm_fn mm, void *mm_ctx,
                                      struct cellm_error *err)
{
    const struct cellm_config *c = &m->d->cfg;
    const struct cellm_layer *L = &m->d->layers[l];
    const int r = c->kv_lora_rank, dn = c->qk_nope_dim, dr = c->qk_rope_dim, dq = c->head_dim;
    const int64_t dim = c->dim, qd = (int64_t)c->n_heads * dq, ent = r + dr;
    int keys = 0;
    for (int i = 0; i < n; i++)
        if (rows[i].pos + 1 > keys) keys = rows[i].pos + 1;
    CELLM_TRY(reserve_rows(m, n, keys, err));
    if (c->q_lora_rank) {
        mm(mm_ctx, &L->mla_q_a, h, dim, n, m->qa, c->q_lora_rank);
        for (int i = 0; i < n; i++) {
            float *qa = m->qa + (size_t)i * c->q_lora_rank;
            cellm_op_norm(CELLM_NORM_RMS, MLA_NORM_EPS, &L->mla_q_a_norm, NULL, qa, qa,
                          c->q_lora_rank);
        }
        mm(mm_ctx, &L->mla_q_b, m->qa, c->q_lora_rank, n, m->q, qd);
    } else {
        mm(mm_ctx, &L->mla_q, h, dim, n, m->q, qd);
    }
    mm(mm_ctx, &L->mla_kv_a, h, dim, n, m->kva, ent);
    for (int i = 0; i < n; i++) {
        const struct cellm_exec_row *row = &rows[i];
        const float *inv_freq = cellm_layer_inv_freq(L, row->seq_len);
        float *kv = m->kva + (size_t)i * ent;
        cellm_op_norm(CELLM_NORM_RMS, MLA_NORM_EPS, &L->mla_kv_a_norm, NULL, kv, kv, r);
        if (c->rope_interleave) deinterleave(kv + r, dr);
        cellm_op_rope_scaled(kv + r, dr, inv_freq, L->rope_attn, row->pos);
        for (int hh = 0; hh < c->n_heads; hh++) {
            float *qpe = m->q + (size_t)i * qd + (size_t)hh * dq + dn;
            if (c->rope_interleave) deinterleave(qpe, dr);
            cellm_op_rope_scaled(qpe, dr, inv_freq, L->rope_attn, row->pos);
        }
        memcpy(m->seqs[row->seq].kv[l] + (size_t)row->pos * ent, kv, (size_t)ent * sizeof *kv);
    }
    struct head_job j = {m, rows, n, l};
    cellm_pool_run(pool, head_part, &j);
    mm(mm_ctx, &L->mla_o, m->att, (int64_t)c->n_heads * c->v_head_dim, n, out, dim);
    return CELLM_OK;
}

size_t cellm_mla_block_bytes(const struct cellm_mla *m, int n)
{
    const struct cellm_config *c = &m->d->cfg;
    return (size_t)c->n_layers * (size_t)n * entry(c) * sizeof(float);
}

enum cellm_status cellm_mla_kv_save(struct cellm_mla *m, int seq, int pos, int n, void **blk,
                                    struct cellm_error *err)
{
    const struct cellm_config *c = &m->d->cfg;
    const struct mla_seq *s = &m->seqs[seq];
    if (!s->kv || pos + n > s->cap)
        return cellm_errf(err, CELLM_ERR_ARG, "kv_save: sequence %d does not hold positions %d..%d",
                          seq, pos, pos + n - 1);
    char *b = cellm_malloc(cellm_mla_block_bytes(m, n));
    if (!b)
        return cellm_errf(err, CELLM_ERR_NOMEM, "cpu executor: out of memory for a cache block");
    size_t rows = (size_t)n * entry(c) * sizeof(float);
    for (int l = 0; l < c->n_layers; l++)
        memcpy(b + (size_t)l * rows, s->kv[l] + (size_t)pos * entry(c), rows);
    *blk = b;
    return CELLM_OK;
}

enum cellm_status cellm_mla_kv_load(struct cellm_mla *m, int seq, int pos, int n, const void *blk,
                                    struct cellm_error *err)
{
    const struct cellm_config *c = &m->d->cfg;
    CELLM_TRY(cellm_mla_reserve(m, seq, pos + n, err));
    struct mla_seq *s = &m->seqs[seq];
    size_t rows = (size_t)n * entry(c) * sizeof(float);
    for (int l = 0; l < c->n_layers; l++)
        memcpy(s->kv[l] + (size_t)pos * entry(c), (const char *)blk + (size_t)l * rows, rows);
    return CELLM_OK;
}
