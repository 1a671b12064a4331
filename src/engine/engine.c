/*
 * engine.c: the public model and context API over an executor.
 *
 * A model is the bound description plus the executor's per-model state (e.g. device
 * weights). A context owns sequences: their lengths live here, their KV caches in the
 * executor. Evaluation checks positions against the model's maximum and hands the batch
 * to the executor. The context also records each sequence's tokens, which is what its
 * prefix cache (engine/pcache.h) is keyed by.
 */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "engine/engine.h"
#include "engine/pcache.h"
#include "exec/exec.h"
#include "model/hybrid.h"
#include "model/info.h"
#include "model/model.h"

struct cellm_model {
    struct cellm_desc desc;
    const struct cellm_exec_vt *vt;
    void *dm;
    struct cellm_model_params params;
    char *description;
    struct cellm_info_store *info; /* cellm_model_info, built at load */
};

struct cellm_ctx {
    struct cellm_model *model;
    void *ex;
    int max_seqs;
    int *len;  /* [max_seqs] tokens in each sequence; -1 = free slot */
    int *next; /* [max_seqs] scratch of eval: the next position of each sequence */
    struct cellm_exec_row *rows;
    int rows_cap;
    float *logits;
    size_t logits_cap; /* floats */
    int32_t **toks;    /* [max_seqs] the tokens each sequence holds, [len] */
    int *toks_cap;
    struct cellm_pcache *pc; /* NULL: no prefix cache */
    int reuse;               /* slot reuse: freed sequences keep their state (kept, stamp) */
    int *kept;               /* [max_seqs] tokens a free sequence still holds in toks */
    unsigned long long *stamp, clock; /* [max_seqs] when each was freed: oldest goes first */
    /* [max_seqs] a state snapshot each sequence took (cellm_ctx_seq_snapshot) for its next
     * store: the executor's copy, the length it was taken at, its bytes */
    void **snap;
    int *snap_len;
    size_t *snap_bytes;
    void *scratch; /* cellm_ctx_scratch */
    size_t scratch_cap;
};

struct cellm_model_params cellm_model_params_default(void)
{
    struct cellm_model_params p = {.device = CELLM_DEVICE_CPU, .precision = CELLM_PRECISION_EXACT};
    return p;
}

struct cellm_ctx_params cellm_ctx_params_default(void)
{
    struct cellm_ctx_params p = {.max_seqs = 1};
    return p;
}

/* Provided by the cuda/xla executors when built, else refuse by name. */
static enum cellm_status pick_executor(enum cellm_device dev, const struct cellm_exec_vt **vt,
                                       struct cellm_error *err)
{
    switch (dev) {
    case CELLM_DEVICE_CPU:
        *vt = &cellm_exec_cpu;
        return CELLM_OK;
    case CELLM_DEVICE_CUDA:
#ifdef CELLM_CUDA
        *vt = &cellm_exec_cuda;
        return CELLM_OK;
#else
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--device cuda: this cellm was built without CUDA (configure with "
                          "-DCELLM_CUDA=ON on a machine with nvcc)");
#endif
    case CELLM_DEVICE_XLA:
        *vt = &cellm_exec_xla;
        return CELLM_OK;
    }
    return cellm_errf(err, CELLM_ERR_ARG, "unknown device %d", (int)dev);
}

size_t cellm_exec_options_help(enum cellm_device dev, char *buf, size_t cap)
{
    const struct cellm_exec_vt *vt = NULL;
    if (pick_executor(dev, &vt, NULL) != CELLM_OK) {
        if (cap) buf[0] = 0;
        return 0;
    }
    return cellm_opts_help(vt->opts, vt->n_opts, buf, cap);
}

enum cellm_status cellm_model_load(const char *dir, const struct cellm_model_params *params,
                                   struct cellm_model **out, struct cellm_error *err)
{
    *out = NULL;
    struct cellm_model_params p = params ? *params : cellm_model_params_default();
    const struct cellm_exec_vt *vt = NULL;
    CELLM_TRY(pick_executor(p.device, &vt, err));
    if (!cellm_precision_name(p.precision))
        return cellm_errf(err, CELLM_ERR_ARG, "precision %d: expected exact (0) or fast (1)",
                          (int)p.precision);
    if (p.precision == CELLM_PRECISION_FAST && !vt->has_fast)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "--precision fast: the %s executor does not implement it (the cpu "
                          "executor does); use --precision exact",
                          vt->name);
    struct cellm_model *m = cellm_calloc(1, sizeof *m);
    if (!m) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    m->params = p;
    m->vt = vt;
    enum cellm_status st = cellm_desc_load(dir, &m->desc, err);
    if (st) {
        cellm_free(m);
        return st;
    }
    if ((st = vt->model_new(&m->desc, &m->params, &m->dm, err))) {
        cellm_desc_free(&m->desc);
        cellm_free(m);
        return st;
    }
    m->info = cellm_calloc(1, sizeof *m->info);
    if (!m->info) st = cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    if (!st) st = cellm_info_build(&m->desc, cellm_model_device(m), m->info, err);
    if (st) {
        cellm_model_free(m);
        return st;
    }
    *out = m;
    return CELLM_OK;
}

void cellm_model_free(struct cellm_model *m)
{
    if (!m) return;
    if (m->dm) m->vt->model_free(m->dm);
    cellm_desc_free(&m->desc);
    cellm_free(m->description);
    cellm_info_free(m->info);
    cellm_free(m->info);
    cellm_free(m);
}

int cellm_model_vocab(const struct cellm_model *m)
{
    return m->desc.cfg.vocab;
}

int cellm_model_max_context(const struct cellm_model *m)
{
    return m->desc.cfg.max_pos;
}

const int32_t *cellm_model_eos(const struct cellm_model *m, int *n)
{
    *n = m->desc.cfg.n_eos;
    return m->desc.cfg.eos;
}

enum cellm_precision cellm_model_precision(const struct cellm_model *m)
{
    return m->params.precision;
}

const char *cellm_precision_name(enum cellm_precision p)
{
    switch (p) {
    case CELLM_PRECISION_EXACT:
        return "exact";
    case CELLM_PRECISION_FAST:
        return "fast";
    }
    return NULL;
}

const char *cellm_model_warnings(const struct cellm_model *m)
{
    return m->desc.warnings;
}

const struct cellm_model_info *cellm_model_info(const struct cellm_model *m)
{
    return &m->info->pub;
}

const struct cellm_desc *cellm_model_desc(const struct cellm_model *m)
{
    return &m->desc;
}

const char *cellm_model_device(const struct cellm_model *m)
{
    return m->vt->describe ? m->vt->describe(m->dm) : m->vt->name;
}

/* ---- context --------------------------------------------------------------------------- */

enum cellm_status cellm_ctx_new(struct cellm_model *model, const struct cellm_ctx_params *params,
                                struct cellm_ctx **out, struct cellm_error *err)
{
    *out = NULL;
    int max_seqs = params && params->max_seqs > 0 ? params->max_seqs : 1;
    struct cellm_ctx *c = cellm_calloc(1, sizeof *c);
    if (!c) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    c->model = model;
    c->max_seqs = max_seqs;
    c->len = cellm_malloc((size_t)max_seqs * sizeof *c->len);
    c->next = cellm_malloc((size_t)max_seqs * sizeof *c->next);
    c->toks = cellm_calloc((size_t)max_seqs, sizeof *c->toks);
    c->toks_cap = cellm_calloc((size_t)max_seqs, sizeof *c->toks_cap);
    c->kept = cellm_calloc((size_t)max_seqs, sizeof *c->kept);
    c->stamp = cellm_calloc((size_t)max_seqs, sizeof *c->stamp);
    c->snap = cellm_calloc((size_t)max_seqs, sizeof *c->snap);
    c->snap_len = cellm_calloc((size_t)max_seqs, sizeof *c->snap_len);
    c->snap_bytes = cellm_calloc((size_t)max_seqs, sizeof *c->snap_bytes);
    if (!c->len || !c->next || !c->toks || !c->toks_cap || !c->kept || !c->stamp || !c->snap ||
        !c->snap_len || !c->snap_bytes) {
        cellm_ctx_free(c);
        return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < max_seqs; i++)
        c->len[i] = -1;
    struct cellm_ctx_params ep = params ? *params : cellm_ctx_params_default();
    ep.max_seqs = max_seqs;
    if (ep.n_threads <= 0) ep.n_threads = model->params.n_threads;
    enum cellm_status st = model->vt->ctx_new(model->dm, &ep, &c->ex, err);
    if (st) {
        cellm_ctx_free(c);
        return st;
    }
    const struct cellm_exec_vt *vt = model->vt;
    /* A model with sequence state (model/hybrid.h: conv windows, recurrent states) cannot
     * resume a prefix from KV blocks alone, and the state cannot be rewound to a block
     * boundary: its prefix cache also keeps snapshots of the state (pcache.h), and stays
     * off on an executor without them (docs/forward/sequence-state.md). Slots are reused
     * too when a new prompt extends a freed sequence's whole history. */
    const int has_state = cellm_config_has_state(&model->desc.cfg);
    if (params && params->cache_bytes > 0 && vt->kv_save && (!has_state || vt->state_save)) {
        const struct cellm_config *cfg = &model->desc.cfg;
        int window = 0;
        for (int l = 0; l < cfg->n_layers; l++)
            if (model->desc.layers[l].attn == CELLM_ATTN_SLIDING) window = cfg->window;
        int block = params->cache_block > 0 ? params->cache_block : 32;
        st =
            cellm_pcache_new(vt, c->ex, block, params->cache_bytes, window, has_state, &c->pc, err);
        if (st) {
            cellm_ctx_free(c);
            return st;
        }
    }
    c->reuse =
        params && (params->reuse_slots || (params->cache_bytes > 0 && (!vt->kv_save || has_state)));
    *out = c;
    return CELLM_OK;
}

/* Frees the snapshot sequence seq took and no store has cached. */
static void drop_snapshot(struct cellm_ctx *c, int seq)
{
    if (c->snap[seq]) c->model->vt->state_free(c->ex, c->snap[seq]);
    c->snap[seq] = NULL;
    c->snap_len[seq] = 0;
    c->snap_bytes[seq] = 0;
}

void cellm_ctx_free(struct cellm_ctx *c)
{
    if (!c) return;
    for (int i = 0; c->ex && c->snap && i < c->max_seqs; i++)
        drop_snapshot(c, i);
    cellm_pcache_free(c->pc); /* before the executor: its blocks are the executor's */
    if (c->ex) c->model->vt->ctx_free(c->ex);
    for (int i = 0; c->toks && i < c->max_seqs; i++)
        cellm_free(c->toks[i]);
    cellm_free(c->toks);
    cellm_free(c->toks_cap);
    cellm_free(c->kept);
    cellm_free(c->stamp);
    cellm_free(c->snap);
    cellm_free(c->snap_len);
    cellm_free(c->snap_bytes);
    cellm_free(c->scratch);
    cellm_free(c->len);
    cellm_free(c->next);
    cellm_free(c->rows);
    cellm_free(c->logits);
    cellm_free(c);
}

/* Takes free slot i holding `keep` of its kept tokens: the executor forgets the rest. */
static int take_slot(struct cellm_ctx *c, int i, int keep)
{
    if (keep < c->kept[i]) c->model->vt->seq_truncate(c->ex, i, keep);
    c->len[i] = keep;
    c->kept[i] = 0;
    return i;
}

int cellm_ctx_seq_new(struct cellm_ctx *c)
{
    int kept = 0;
    return cellm_ctx_seq_new_for(c, NULL, 0, &kept);
}

int cellm_ctx_seq_new_for(struct cellm_ctx *c, const int32_t *tokens, int n, int *kept)
{
    *kept = 0;
    /* the free slot with the longest usable common prefix; among equals an empty one,
     * else the one freed longest ago */
    int best = -1, best_keep = -1;
    /* sliding rings and sequence state cannot be cut back: a slot is reused whole or not */
    const int sliding =
        c->model->desc.cfg.window > 0 || cellm_config_has_state(&c->model->desc.cfg);
    for (int i = 0; i < c->max_seqs; i++) {
        if (c->len[i] >= 0) continue;
        int keep = 0;
        if (c->reuse && tokens && c->kept[i] > 0) {
            const int lim = c->kept[i] < n - 1 ? c->kept[i] : n - 1;
            while (keep < lim && c->toks[i][keep] == tokens[keep])
                keep++;
            if (sliding && keep < c->kept[i]) keep = 0;
        }
        const int better =
            best < 0 || keep > best_keep ||
            (keep == best_keep &&
             (c->kept[best] > 0 && (c->kept[i] == 0 || c->stamp[i] < c->stamp[best])));
        if (better) {
            best = i;
            best_keep = keep;
        }
    }
    if (best < 0) return -1;
    *kept = best_keep;
    return take_slot(c, best, best_keep);
}

void cellm_ctx_seq_free(struct cellm_ctx *c, int seq)
{
    if (!c || seq < 0 || seq >= c->max_seqs || c->len[seq] < 0) return;
    drop_snapshot(c, seq);
    if (c->reuse && c->len[seq] > 0 && c->len[seq] <= c->toks_cap[seq]) {
        c->kept[seq] = c->len[seq]; /* the executor keeps the positions; toks keeps the ids */
        c->stamp[seq] = ++c->clock;
    } else {
        c->model->vt->seq_truncate(c->ex, seq, 0);
        c->kept[seq] = 0;
    }
    c->len[seq] = -1;
}

int cellm_ctx_routes(const struct cellm_ctx *c, int32_t *ids, int cap)
{
    if (!c || !ids || cap <= 0 || !c->model->vt->routes) return 0;
    return c->model->vt->routes(c->ex, ids, cap);
}

enum cellm_status cellm_ctx_seq_reserve(struct cellm_ctx *c, int seq, int extra,
                                        struct cellm_error *err)
{
    if (!c || seq < 0 || seq >= c->max_seqs || c->len[seq] < 0)
        return cellm_errf(err, CELLM_ERR_ARG, "seq_reserve: sequence %d does not exist", seq);
    if (!c->model->vt->seq_reserve || extra <= 0) return CELLM_OK;
    return c->model->vt->seq_reserve(c->ex, seq, c->len[seq] + extra, err);
}

int cellm_ctx_seq_len(const struct cellm_ctx *c, int seq)
{
    if (seq < 0 || seq >= c->max_seqs) return -1;
    return c->len[seq];
}

enum cellm_status cellm_ctx_seq_truncate(struct cellm_ctx *c, int seq, int n,
                                         struct cellm_error *err)
{
    if (!c || seq < 0 || seq >= c->max_seqs || c->len[seq] < 0)
        return cellm_errf(err, CELLM_ERR_ARG, "seq_truncate: sequence %d does not exist", seq);
    if (n < 0 || n > c->len[seq])
        return cellm_errf(err, CELLM_ERR_RANGE,
                          "seq_truncate: %d is outside the sequence's length [0, %d]", n,
                          c->len[seq]);
    /* a sliding-window layer keeps a ring of its last positions, whose older slots the
     * positions after n may have overwritten: only a full reset is safe there */
    if (n > 0 && n < c->len[seq] && c->model->desc.cfg.window > 0)
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "seq_truncate: the model's sliding-window layers keep only their "
                          "window; truncate to 0 and evaluate again");
    /* a conv window or recurrent state holds the whole history folded in; it cannot be
     * rewound (docs/forward/sequence-state.md) */
    const struct cellm_config *cfg = &c->model->desc.cfg;
    if (n > 0 && n < c->len[seq] && cellm_config_has_state(cfg))
        return cellm_errf(err, CELLM_ERR_UNSUPPORTED,
                          "seq_truncate: layer %d of model_type %s keeps a recurrent/conv state "
                          "of all %d positions, which cannot be rewound to position %d; "
                          "truncate to 0 and evaluate again (a new sequence may attach the "
                          "prefix from the prefix cache where it kept a snapshot)",
                          cellm_config_first_state_layer(cfg), cfg->model_type, c->len[seq], n);
    /* executors forget position n on; the cache stays allocated */
    if (n < c->snap_len[seq]) drop_snapshot(c, seq);
    c->model->vt->seq_truncate(c->ex, seq, n);
    c->len[seq] = n;
    return CELLM_OK;
}

static enum cellm_status toks_reserve(struct cellm_ctx *c, int s, int need,
                                      struct cellm_error *err);

/* One step: the logits of the wanting items into c->logits, or with ids their argmax. */
static enum cellm_status ctx_eval(struct cellm_ctx *c, const struct cellm_batch_item *items, int n,
                                  int32_t *ids, struct cellm_error *err)
{
    const struct cellm_config *cfg = &c->model->desc.cfg;
    if (n <= 0) return cellm_errf(err, CELLM_ERR_ARG, "eval: empty batch");
    if (n > c->rows_cap) {
        struct cellm_exec_row *r = cellm_realloc(c->rows, (size_t)n * sizeof *r);
        if (!r) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
        c->rows = r;
        c->rows_cap = n;
    }
    int nw = 0;
    for (int i = 0; i < n; i++) {
        int s = items[i].seq;
        if (s < 0 || s >= c->max_seqs || c->len[s] < 0)
            return cellm_errf(err, CELLM_ERR_ARG,
                              "eval: item %d names sequence %d, which does not exist", i, s);
        if (items[i].token < 0 || items[i].token >= cfg->vocab)
            return cellm_errf(err, CELLM_ERR_RANGE,
                              "eval: token id %d is outside the vocabulary [0, %d)", items[i].token,
                              cfg->vocab);
        nw += items[i].want_logits != 0;
    }
    /* positions: each sequence's length plus its earlier items in this batch */
    memcpy(c->next, c->len, (size_t)c->max_seqs * sizeof *c->next);
    for (int i = 0; i < n; i++) {
        int s = items[i].seq;
        int pos = c->next[s]++;
        if (pos >= cfg->max_pos)
            return cellm_errf(err, CELLM_ERR_RANGE,
                              "sequence %d would reach %d tokens, beyond the model's maximum "
                              "context of %d (max_position_embeddings)",
                              s, pos + 1, cfg->max_pos);
        c->rows[i] = (struct cellm_exec_row){items[i].token, s, pos, items[i].want_logits != 0, 0};
    }
    for (int i = 0; i < n; i++)
        c->rows[i].seq_len = c->next[c->rows[i].seq];
    for (int s = 0; s < c->max_seqs; s++)
        if (c->next[s] > c->len[s]) CELLM_TRY(toks_reserve(c, s, c->next[s], err));
    const struct cellm_exec_vt *vt = c->model->vt;
    if (ids && vt->eval_argmax) {
        CELLM_TRY(vt->eval_argmax(c->ex, c->rows, n, ids, err));
    } else {
        size_t need = (size_t)nw * (size_t)cfg->vocab;
        if (need > c->logits_cap) {
            float *l = cellm_realloc(c->logits, need * sizeof(float));
            if (!l) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory for logits");
            c->logits = l;
            c->logits_cap = need;
        }
        CELLM_TRY(vt->eval(c->ex, c->rows, n, c->logits, err));
        for (int j = 0; ids && j < nw; j++)
            ids[j] = cellm_argmax(c->logits + (size_t)j * cfg->vocab, cfg->vocab);
    }
    for (int i = 0; i < n; i++) {
        int s = items[i].seq;
        if (c->len[s] < c->toks_cap[s]) c->toks[s][c->len[s]] = items[i].token;
        c->len[s]++;
    }
    return CELLM_OK;
}

/* Room in the token log of s for need tokens. */
static enum cellm_status toks_reserve(struct cellm_ctx *c, int s, int need, struct cellm_error *err)
{
    if (need <= c->toks_cap[s]) return CELLM_OK;
    int cap = c->toks_cap[s] ? c->toks_cap[s] : 256;
    while (cap < need)
        cap *= 2;
    int32_t *t = cellm_realloc(c->toks[s], (size_t)cap * sizeof *t);
    if (!t) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    c->toks[s] = t;
    c->toks_cap[s] = cap;
    return CELLM_OK;
}

enum cellm_status cellm_ctx_eval(struct cellm_ctx *c, const struct cellm_batch_item *items, int n,
                                 const float **logits, struct cellm_error *err)
{
    CELLM_TRY(ctx_eval(c, items, n, NULL, err));
    if (logits) *logits = c->logits;
    return CELLM_OK;
}

enum cellm_status cellm_ctx_eval_argmax(struct cellm_ctx *c, const struct cellm_batch_item *items,
                                        int n, int32_t *ids, struct cellm_error *err)
{
    if (!ids) return cellm_errf(err, CELLM_ERR_ARG, "eval_argmax: ids is NULL");
    return ctx_eval(c, items, n, ids, err);
}

enum cellm_status cellm_ctx_eval_seq(struct cellm_ctx *c, int seq, const int32_t *tokens, int n,
                                     const float **logits, struct cellm_error *err)
{
    if (n <= 0) return cellm_errf(err, CELLM_ERR_ARG, "eval: no tokens");
    struct cellm_batch_item *items = cellm_malloc((size_t)n * sizeof *items);
    if (!items) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        items[i] = (struct cellm_batch_item){tokens[i], seq, i == n - 1};
    enum cellm_status st = cellm_ctx_eval(c, items, n, logits, err);
    cellm_free(items);
    return st;
}

const struct cellm_model *cellm_ctx_model(const struct cellm_ctx *c)
{
    return c->model;
}

void *cellm_ctx_scratch(struct cellm_ctx *c, size_t bytes)
{
    if (bytes > c->scratch_cap) {
        void *p = cellm_realloc(c->scratch, bytes);
        if (!p) return NULL;
        c->scratch = p;
        c->scratch_cap = bytes;
    }
    return c->scratch;
}

/* ---- prefix cache ---------------------------------------------------------------------- */

static enum cellm_status check_seq(const struct cellm_ctx *c, int seq, const char *what,
                                   struct cellm_error *err)
{
    if (seq < 0 || seq >= c->max_seqs || c->len[seq] < 0)
        return cellm_errf(err, CELLM_ERR_ARG, "%s: sequence %d does not exist", what, seq);
    return CELLM_OK;
}

enum cellm_status cellm_ctx_seq_attach(struct cellm_ctx *c, int seq, const int32_t *tokens, int n,
                                       int *len_out, struct cellm_error *err)
{
    CELLM_TRY(check_seq(c, seq, "seq_attach", err));
    int len = c->len[seq];
    *len_out = len;
    if (n < len || (len && memcmp(c->toks[seq], tokens, (size_t)len * sizeof *tokens)))
        return cellm_errf(err, CELLM_ERR_ARG,
                          "seq_attach: sequence %d holds %d tokens that do not begin the %d given",
                          seq, len, n);
    if (!c->pc || n == len) return CELLM_OK;
    if (n > c->model->desc.cfg.max_pos) n = c->model->desc.cfg.max_pos;
    CELLM_TRY(toks_reserve(c, seq, n, err));
    int L = len;
    CELLM_TRY(cellm_pcache_attach(c->pc, seq, tokens, len, n, &L, err));
    memcpy(c->toks[seq] + len, tokens + len, (size_t)(L - len) * sizeof *tokens);
    c->len[seq] = L;
    *len_out = L;
    return CELLM_OK;
}

enum cellm_status cellm_ctx_seq_store(struct cellm_ctx *c, int seq, struct cellm_error *err)
{
    CELLM_TRY(check_seq(c, seq, "seq_store", err));
    if (!c->pc) return CELLM_OK;
    void *snap = c->snap[seq]; /* the cache owns it from here on */
    int at = c->snap_len[seq];
    c->snap[seq] = NULL;
    c->snap_len[seq] = 0;
    return cellm_pcache_store(c->pc, seq, c->toks[seq], c->len[seq], snap, at, c->snap_bytes[seq],
                              err);
}

enum cellm_status cellm_ctx_seq_snapshot(struct cellm_ctx *c, int seq, struct cellm_error *err)
{
    CELLM_TRY(check_seq(c, seq, "seq_snapshot", err));
    struct cellm_cache_stats cs;
    cellm_ctx_cache_stats(c, &cs);
    if (!cs.state) return CELLM_OK;
    const int len = c->len[seq];
    if (len <= 0 || len % cs.block)
        return cellm_errf(err, CELLM_ERR_ARG,
                          "seq_snapshot: sequence %d holds %d positions; a snapshot is taken "
                          "at a whole number (> 0) of blocks of %d",
                          seq, len, cs.block);
    drop_snapshot(c, seq);
    CELLM_TRY(c->model->vt->state_save(c->ex, seq, &c->snap[seq], &c->snap_bytes[seq], err));
    c->snap_len[seq] = len;
    return CELLM_OK;
}

void cellm_ctx_profile(const struct cellm_ctx *c, struct cellm_profile *out)
{
    memset(out, 0, sizeof *out);
    if (c && c->model->vt->profile) c->model->vt->profile(c->ex, out);
}

void cellm_ctx_cache_stats(const struct cellm_ctx *c, struct cellm_cache_stats *out)
{
    memset(out, 0, sizeof *out);
    if (c && c->pc) cellm_pcache_stats(c->pc, out);
}
