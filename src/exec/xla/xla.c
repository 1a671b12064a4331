/*
 * xla.c: the OpenXLA executor: the model as StableHLO (emit.c), run by a PJRT plugin.
 *
 * Per model: the plugin and its client (pjrt.c), the weights uploaded once in their
 * stored format (plan.c), and the compiled modules, cached by key for the life of the
 * model. Per context: each sequence's KV cache, 2 device buffers per layer of
 * [cap][n_kv][head_dim] f32, donated to every call and replaced by the call's aliased
 * results, so the cache is updated in place and never leaves the device.
 *
 * Shapes are static in StableHLO, so a call runs a bucket: T rows (1 for a decode step;
 * a power of two of at least 16 for a prefill chunk, padded with token 0) over a cache
 * of cap positions (a power of two of at least 256). A module is compiled the first time
 * its bucket is needed. Padding rows write keys and values past the real end of the
 * sequence; no real row ever attends to them (the causal mask), and real rows overwrite
 * them later. cap always covers pos0 + padded T, so the cache update never clamps. A
 * cache that must grow is copied through the host into the next bucket (rare: doubling).
 * Rows of one eval are run sequence by sequence, in chunks of at most 256 rows.
 *
 * A model with state layers (emit_state.h) also keeps, per sequence, its state tensors
 * after the KV caches in the same buffer list, donated and replaced like them; a call
 * tells the module its real row count so padding stays out of the state. A state cannot
 * be rewound: a call must continue the sequence at the position the state holds.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "base/error.h"
#include "exec/exec.h"
#include "exec/xla/emit.h"
#include "exec/xla/emit_state.h"
#include "exec/xla/pjrt.h"
#include "model/hybrid.h"

#define XLA_MIN_CAP 256
#define XLA_MIN_PREFILL 16
#define XLA_CHUNK 256

struct xla_exe {
    struct cellm_xla_key key;
    void *exe;
    size_t n_out;
};

struct xla_model {
    const struct cellm_desc *d;
    struct cellm_pjrt pj;
    struct cellm_xla_plan plan;
    void **wbuf; /* [plan.n] device weights */
    struct xla_exe *exes;
    int n_exes, cap_exes;
    double compile_s;
    char desc[512];
};

struct xla_seq {
    int cap;   /* 0 = no cache yet */
    void **kv; /* [2 * n_layers + n_state]: k_0, v_0, k_1, ..., then the state tensors */
    int len;   /* positions folded into the state tensors */
};

struct xla_ctx {
    struct xla_model *m;
    int max_seqs;
    struct xla_seq *seqs;
    float *host;     /* staging for logits, RoPE tables, cache copies */
    size_t host_cap; /* floats */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int pj_type(enum cellm_xh_ty t)
{
    switch (t) {
    case XH_F16:
        return PJ_F16;
    case XH_BF16:
        return PJ_BF16;
    case XH_I32:
        return PJ_S32;
    case XH_U32:
        return PJ_U32;
    case XH_U8:
        return PJ_U8;
    default:
        return PJ_F32;
    }
}

static int64_t pow2_at_least(int64_t x, int64_t lo)
{
    int64_t p = lo;
    while (p < x)
        p *= 2;
    return p;
}

/* ---- model ----------------------------------------------------------------------------- */

static void xla_model_free(void *p)
{
    struct xla_model *m = p;
    if (!m) return;
    for (int i = 0; i < m->n_exes; i++)
        cellm_pjrt_exe_free(&m->pj, m->exes[i].exe);
    cellm_free(m->exes);
    if (m->wbuf)
        for (int i = 0; i < m->plan.n; i++)
            cellm_pjrt_buffer_free(&m->pj, m->wbuf[i]);
    cellm_free(m->wbuf);
    cellm_xla_plan_free(&m->plan);
    if (m->pj.api) cellm_pjrt_close(&m->pj);
    cellm_free(m);
}

static enum cellm_status upload_weights(struct xla_model *m, struct cellm_error *err)
{
    m->wbuf = cellm_calloc((size_t)m->plan.n + 1, sizeof *m->wbuf);
    if (!m->wbuf) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    for (int i = 0; i < m->plan.n; i++) {
        const struct cellm_xla_wparam *w = &m->plan.w[i];
        const void *src = w->parts[0];
        uint8_t *stage = NULL;
        if (w->nparts > 1) {
            stage = cellm_malloc(w->bytes);
            if (!stage)
                return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory staging %s", w->name);
            for (int k = 0; k < w->nparts; k++)
                memcpy(stage + (size_t)k * w->part_bytes, w->parts[k], w->part_bytes);
            src = stage;
        }
        enum cellm_status st =
            cellm_pjrt_upload(&m->pj, src, pj_type(w->ty), w->d, w->rank, &m->wbuf[i], err);
        cellm_free(stage);
        if (st) return cellm_errf_prefix(err, st, "weight %s", w->name);
    }
    return CELLM_OK;
}

/* The executor's options (cellm_model_params.exec_options). */
struct xla_opts {
    int dequant; /* 0 graph, 1 load */
};

static const struct cellm_opt xla_opt_table[] = {
    {"dequant", CELLM_OPT_CHOICE, 0, 0, 0, "graph|load", offsetof(struct xla_opts, dequant),
     "quantized weights (MLX affine, mxfp4, mxfp8, nvfp4, FP8 blocks, GPTQ, AWQ): uploaded "
     "as stored and dequantized in the graph, or dequantized to f32 at load"},
};
#define XLA_N_OPTS ((int)(sizeof xla_opt_table / sizeof xla_opt_table[0]))

static enum cellm_status xla_model_new(const struct cellm_desc *d,
                                       const struct cellm_model_params *mp, void **out,
                                       struct cellm_error *err)
{
    *out = NULL;
    char path[1024];
    struct xla_opts opts;
    CELLM_TRY(cellm_opts_parse("xla executor", xla_opt_table, XLA_N_OPTS,
                               mp ? mp->exec_options : NULL, &opts, err));
    CELLM_TRY(cellm_pjrt_find(mp ? mp->pjrt_plugin : NULL, mp ? mp->pjrt_search : NULL, path,
                              sizeof path, err));
    CELLM_TRY(cellm_xla_supported(d, err));
    struct xla_model *m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    m->d = d;
    enum cellm_status st = cellm_pjrt_open(path, &m->pj, err);
    if (!st) st = cellm_xla_plan_build(d, opts.dequant, &m->plan, err);
    if (!st) st = upload_weights(m, err);
    if (st) {
        xla_model_free(m);
        return st;
    }
    snprintf(m->desc, sizeof m->desc, "xla (%s%s%s, PJRT %d.%d, %.300s)", m->pj.platform,
             m->pj.kind[0] ? " " : "", m->pj.kind, m->pj.major, m->pj.minor, m->pj.path);
    *out = m;
    return CELLM_OK;
}

static const char *xla_describe(void *p)
{
    return ((struct xla_model *)p)->desc;
}

static enum cellm_status get_exe(struct xla_model *m, const struct cellm_xla_key *k,
                                 struct xla_exe **out, struct cellm_error *err)
{
    for (int i = 0; i < m->n_exes; i++)
        if (!memcmp(&m->exes[i].key, k, sizeof *k)) {
            *out = &m->exes[i];
            return CELLM_OK;
        }
    if (m->n_exes == m->cap_exes) {
        int cap = m->cap_exes ? 2 * m->cap_exes : 8;
        struct xla_exe *e = cellm_realloc(m->exes, (size_t)cap * sizeof *e);
        if (!e) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
        m->exes = e;
        m->cap_exes = cap;
    }
    char *text;
    size_t len;
    CELLM_TRY(cellm_xla_emit(m->d, &m->plan, k, &text, &len, err));
    double t0 = now_s();
    struct xla_exe *e = &m->exes[m->n_exes];
    memset(e, 0, sizeof *e);
    e->key = *k;
    enum cellm_status st = cellm_pjrt_compile(&m->pj, text, len, &e->exe, &e->n_out, err);
    cellm_free(text);
    m->compile_s += now_s() - t0;
    if (st) return st;
    size_t want = 1 + 2 * (size_t)m->d->cfg.n_layers + (size_t)cellm_xla_state_count(m->d);
    if (e->n_out != want) {
        cellm_pjrt_exe_free(&m->pj, e->exe);
        return cellm_errf(err, CELLM_ERR_DEVICE,
                          "xla: the compiled model has %zu results, expected %zu", e->n_out, want);
    }
    m->n_exes++;
    *out = e;
    return CELLM_OK;
}

/* ---- context --------------------------------------------------------------------------- */

static void seq_drop(struct xla_ctx *c, struct xla_seq *s)
{
    if (s->kv)
        for (int i = 0; i < 2 * c->m->d->cfg.n_layers + cellm_xla_state_count(c->m->d); i++)
            cellm_pjrt_buffer_free(&c->m->pj, s->kv[i]);
    cellm_free(s->kv);
    s->kv = NULL;
    s->cap = 0;
    s->len = 0;
}

static void xla_ctx_free(void *p)
{
    struct xla_ctx *c = p;
    if (!c) return;
    for (int i = 0; c->seqs && i < c->max_seqs; i++)
        seq_drop(c, &c->seqs[i]);
    cellm_free(c->seqs);
    cellm_free(c->host);
    cellm_free(c);
}

static enum cellm_status xla_ctx_new(void *dm, const struct cellm_ctx_params *cp, void **out,
                                     struct cellm_error *err)
{
    const int max_seqs = cp->max_seqs;
    struct xla_ctx *c = cellm_calloc(1, sizeof *c);
    if (!c) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    c->m = dm;
    c->max_seqs = max_seqs;
    c->seqs = cellm_calloc((size_t)max_seqs, sizeof *c->seqs);
    if (!c->seqs) {
        cellm_free(c);
        return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    }
    *out = c;
    return CELLM_OK;
}

static void xla_seq_truncate(void *p, int seq, int from)
{
    struct xla_ctx *c = p;
    if (seq >= 0 && seq < c->max_seqs && from == 0) seq_drop(c, &c->seqs[seq]);
    /* otherwise positions >= from are overwritten by later rows */
}

static enum cellm_status host_room(struct xla_ctx *c, size_t floats, struct cellm_error *err)
{
    if (floats <= c->host_cap) return CELLM_OK;
    float *h = cellm_realloc(c->host, floats * sizeof(float));
    if (!h) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of host memory (%zu floats)", floats);
    c->host = h;
    c->host_cap = floats;
    return CELLM_OK;
}

/* Gives sequence s a cache of `cap` positions, keeping what it holds. */
static enum cellm_status seq_reserve(struct xla_ctx *c, struct xla_seq *s, int cap,
                                     struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->m->d->cfg;
    int n = 2 * cfg->n_layers;
    if (s->cap >= cap) return CELLM_OK;
    if (!s->kv) {
        int ns = cellm_xla_state_count(c->m->d);
        s->kv = cellm_calloc((size_t)(n + ns), sizeof *s->kv);
        if (!s->kv) return cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
        for (int i = 0; i < ns; i++) { /* the states start at zero */
            int64_t sd[CELLM_XH_MAX_RANK];
            int r = cellm_xla_state_shape(c->m->d, i, sd);
            size_t nf = 1;
            for (int k = 0; k < r; k++)
                nf *= (size_t)sd[k];
            CELLM_TRY(host_room(c, nf, err));
            memset(c->host, 0, nf * sizeof(float));
            CELLM_TRY(cellm_pjrt_upload(&c->m->pj, c->host, PJ_F32, sd, r, &s->kv[n + i], err));
        }
    }
    for (int i = 0; i < n; i++) { /* per layer kind: emit_state.h */
        int64_t dims[3], old[3];
        cellm_xla_cache_shape(c->m->d, i, cap, dims);
        cellm_xla_cache_shape(c->m->d, i, s->cap, old);
        if (s->kv[i] && dims[0] == old[0]) continue; /* a placeholder, the same at any cap */
        size_t nf = (size_t)(dims[0] * dims[1] * dims[2]);
        CELLM_TRY(host_room(c, nf, err));
        memset(c->host, 0, nf * sizeof(float));
        if (s->kv[i])
            CELLM_TRY(cellm_pjrt_download(&c->m->pj, s->kv[i], c->host,
                                          (size_t)(old[0] * old[1] * old[2]) * sizeof(float), err));
        void *nb;
        CELLM_TRY(cellm_pjrt_upload(&c->m->pj, c->host, PJ_F32, dims, 3, &nb, err));
        cellm_pjrt_buffer_free(&c->m->pj, s->kv[i]);
        s->kv[i] = nb;
    }
    s->cap = cap;
    return CELLM_OK;
}

/* One call: T consecutive rows of one sequence. Writes the wanted logits at *logits. */
static enum cellm_status run(struct xla_ctx *c, const struct cellm_exec_row *r, int T,
                             float *logits, int *n_written, struct cellm_error *err)
{
    struct xla_model *m = c->m;
    const struct cellm_desc *d = m->d;
    const struct cellm_config *cfg = &d->cfg;
    int seq = r[0].seq, p0 = r[0].pos, nw = 0, V = cfg->vocab, half = m->plan.half;
    if (seq < 0 || seq >= c->max_seqs)
        return cellm_errf(err, CELLM_ERR_ARG, "xla: sequence %d out of range", seq);
    if (p0 < 0 || (int64_t)p0 + T > cfg->max_pos)
        return cellm_errf(err, CELLM_ERR_RANGE,
                          "sequence %d would reach %lld tokens, beyond the model's maximum context "
                          "of %d (max_position_embeddings)",
                          seq, (long long)p0 + T, cfg->max_pos);
    for (int i = 0; i < T; i++) {
        if (r[i].token < 0 || r[i].token >= V)
            return cellm_errf(err, CELLM_ERR_RANGE, "token id %d is outside the vocabulary [0, %d)",
                              r[i].token, V);
        nw += r[i].want_logits != 0;
    }
    struct cellm_xla_key k;
    memset(&k, 0, sizeof k);
    k.T = T == 1 ? 1 : (int)pow2_at_least(T, XLA_MIN_PREFILL);
    k.all_logits = nw > 1 || (nw == 1 && !r[T - 1].want_logits);
    struct xla_seq *s = &c->seqs[seq];
    int ns = cellm_xla_state_count(d);
    if (ns) CELLM_TRY(cellm_state_row_check(cfg, r, 0, s->kv ? s->len : 0, err));
    int64_t cap = pow2_at_least((int64_t)p0 + k.T, XLA_MIN_CAP);
    if (cap < s->cap) cap = s->cap;
    k.cap = (int)cap;
    CELLM_TRY(seq_reserve(c, s, k.cap, err));
    struct xla_exe *e = NULL;
    CELLM_TRY(get_exe(m, &k, &e, err));

    /* inputs: the RoPE tables (cellm_xla_rope_inputs: 2, 4 or, with Gemma 4's full-layer
     * table, 4 of two sizes), then the tokens */
    int n_rope = 2 + (m->plan.local_rope ? 2 : 0) + (m->plan.prop_half ? 2 : 0);
    int wide = half > m->plan.prop_half ? half : m->plan.prop_half;
    size_t tab = (size_t)k.T * (size_t)wide;
    CELLM_TRY(host_room(c, tab * n_rope + (size_t)k.T, err));
    int32_t *tok = (int32_t *)(c->host + tab * n_rope);
    for (int t = 0; t < k.T; t++)
        tok[t] = t < T ? r[t].token : 0;
    /* one sequence per call: its rows share seq_len, so longrope picks one list */
    int halfs[6];
    n_rope = cellm_xla_rope_inputs(d, &m->plan, p0, k.T, r[T - 1].seq_len, c->host, halfs);
    int nl = 2 * cfg->n_layers, n_in = 3 + n_rope;
    void *in[10] = {0}; /* tokens, pos0, last, up to 6 tables, nreal */
    int32_t pos0 = p0, last = T - 1, nreal = T;
    int64_t dt[1] = {k.T};
    enum cellm_status st = cellm_pjrt_upload(&m->pj, tok, PJ_S32, dt, 1, &in[0], err);
    if (!st) st = cellm_pjrt_upload(&m->pj, &pos0, PJ_S32, NULL, 0, &in[1], err);
    if (!st) st = cellm_pjrt_upload(&m->pj, &last, PJ_S32, NULL, 0, &in[2], err);
    size_t at = 0; /* the tables lie one after another, each k.T x its half */
    for (int i = 0; !st && i < n_rope; i++) {
        int64_t dr[2] = {k.T, halfs[i]};
        st = cellm_pjrt_upload(&m->pj, c->host + at, PJ_F32, dr, 2, &in[3 + i], err);
        at += (size_t)k.T * (size_t)halfs[i];
    }
    if (!st && ns) st = cellm_pjrt_upload(&m->pj, &nreal, PJ_S32, NULL, 0, &in[n_in], err);
    size_t n_args =
        (size_t)m->plan.n + (size_t)(n_in - k.all_logits) + (size_t)nl + (ns ? 1 + (size_t)ns : 0);
    void **args = st ? NULL : cellm_malloc(n_args * sizeof *args);
    void **out = st ? NULL : cellm_calloc(e->n_out, sizeof *out);
    if (!st && (!args || !out)) st = cellm_errf(err, CELLM_ERR_NOMEM, "xla: out of memory");
    if (!st) {
        size_t a = 0;
        for (int i = 0; i < m->plan.n; i++)
            args[a++] = m->wbuf[i];
        for (int i = 0; i < n_in; i++)
            if (!(i == 2 && k.all_logits)) args[a++] = in[i];
        for (int i = 0; i < nl; i++)
            args[a++] = s->kv[i];
        if (ns) args[a++] = in[n_in];
        for (int i = 0; i < ns; i++)
            args[a++] = s->kv[nl + i];
        st = cellm_pjrt_execute(&m->pj, e->exe, args, n_args, out, e->n_out, err);
        /* the caches were donated: whatever happened, the old handles are spent */
        for (int i = 0; i < nl + ns; i++) {
            cellm_pjrt_buffer_free(&m->pj, s->kv[i]);
            s->kv[i] = st ? NULL : out[1 + i];
        }
        if (st) {
            for (size_t i = 0; i < e->n_out; i++)
                cellm_pjrt_buffer_free(&m->pj, out[i]);
            seq_drop(c, s);
        } else {
            s->len = p0 + T;
        }
    }
    if (!st) {
        size_t rows = k.all_logits ? (size_t)k.T : 1;
        st = host_room(c, rows * (size_t)V, err);
        if (!st)
            st =
                cellm_pjrt_download(&m->pj, out[0], c->host, rows * (size_t)V * sizeof(float), err);
        if (!st) {
            int w = 0;
            for (int t = 0; t < T; t++)
                if (r[t].want_logits) {
                    const float *src = c->host + (k.all_logits ? (size_t)t * V : 0);
                    memcpy(logits + (size_t)w * V, src, (size_t)V * sizeof(float));
                    w++;
                }
            *n_written = w;
        }
        cellm_pjrt_buffer_free(&m->pj, out[0]);
    }
    for (int i = 0; i < n_in + 1; i++)
        cellm_pjrt_buffer_free(&m->pj, in[i]);
    cellm_free(args);
    cellm_free(out);
    return st;
}

static enum cellm_status xla_eval(void *p, const struct cellm_exec_row *rows, int n, float *logits,
                                  struct cellm_error *err)
{
    struct xla_ctx *c = p;
    size_t V = (size_t)c->m->d->cfg.vocab, w = 0;
    for (int i = 0; i < n;) {
        int j = i + 1;
        while (j < n && j - i < XLA_CHUNK && rows[j].seq == rows[i].seq &&
               rows[j].pos == rows[j - 1].pos + 1)
            j++;
        int got = 0;
        CELLM_TRY(run(c, rows + i, j - i, logits + w * V, &got, err));
        w += (size_t)got;
        i = j;
    }
    return CELLM_OK;
}

const struct cellm_exec_vt cellm_exec_xla = {
    .name = "xla",
    .model_new = xla_model_new,
    .model_free = xla_model_free,
    .opts = xla_opt_table,
    .n_opts = XLA_N_OPTS,
    .ctx_new = xla_ctx_new,
    .ctx_free = xla_ctx_free,
    .seq_truncate = xla_seq_truncate,
    .eval = xla_eval,
    .describe = xla_describe,
};
