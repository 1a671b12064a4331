/*
 * engine.c: the public model and context API over an executor.
 *
 * A model is the bound description plus the executor's per-model state (e.g. device
 * weights). A context owns sequences: their lengths live here, their KV caches in the
 * executor. Evaluation checks positions against the model's maximum and hands the batch
 * to the executor.
 */
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "exec/exec.h"
#include "model/model.h"

struct cellm_model {
    struct cellm_desc desc;
    const struct cellm_exec_vt *vt;
    void *dm;
    struct cellm_model_params params;
    char *description;
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
};

struct cellm_model_params cellm_model_params_default(void)
{
    struct cellm_model_params p = {CELLM_DEVICE_CPU, 0, NULL, CELLM_PRECISION_EXACT};
    return p;
}

struct cellm_ctx_params cellm_ctx_params_default(void)
{
    struct cellm_ctx_params p = {1};
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
    *out = m;
    return CELLM_OK;
}

void cellm_model_free(struct cellm_model *m)
{
    if (!m) return;
    if (m->dm) m->vt->model_free(m->dm);
    cellm_desc_free(&m->desc);
    cellm_free(m->description);
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
    if (!c->len || !c->next) {
        cellm_free(c->len);
        cellm_free(c->next);
        cellm_free(c);
        return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < max_seqs; i++)
        c->len[i] = -1;
    enum cellm_status st = model->vt->ctx_new(model->dm, max_seqs, &c->ex, err);
    if (st) {
        cellm_free(c->len);
        cellm_free(c->next);
        cellm_free(c);
        return st;
    }
    *out = c;
    return CELLM_OK;
}

void cellm_ctx_free(struct cellm_ctx *c)
{
    if (!c) return;
    if (c->ex) c->model->vt->ctx_free(c->ex);
    cellm_free(c->len);
    cellm_free(c->next);
    cellm_free(c->rows);
    cellm_free(c->logits);
    cellm_free(c);
}

int cellm_ctx_seq_new(struct cellm_ctx *c)
{
    for (int i = 0; i < c->max_seqs; i++)
        if (c->len[i] < 0) {
            c->len[i] = 0;
            return i;
        }
    return -1;
}

void cellm_ctx_seq_free(struct cellm_ctx *c, int seq)
{
    if (!c || seq < 0 || seq >= c->max_seqs || c->len[seq] < 0) return;
    c->model->vt->seq_truncate(c->ex, seq, 0);
    c->len[seq] = -1;
}

int cellm_ctx_seq_len(const struct cellm_ctx *c, int seq)
{
    if (seq < 0 || seq >= c->max_seqs) return -1;
    return c->len[seq];
}

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
        c->rows[i] = (struct cellm_exec_row){items[i].token, s, pos, items[i].want_logits != 0};
    }
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
    for (int i = 0; i < n; i++)
        c->len[items[i].seq]++;
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
