/*
 * generate.c: the generation loop (struct cellm_gen, cellm_gen_step), the one copy that
 * `cellm generate` and `cellm serve` share. cellm.h states the rules it decides once
 * (EOS, greedy, detokenizer failures, a full context, stop strings).
 *
 * It lives in src/engine/ but is built into cellm_text, since it needs both the context
 * and the tokenizer's streaming detokenizer.
 *
 * A step: every unfinished gen that decodes contributes its last pick as one row; gens
 * still in their prompt first take what the prefix cache holds of it, then contribute
 * prompt rows in array order up to the prefill budget. A gen whose next whole block is
 * being computed by an earlier gen of the same step list waits instead: that block will be
 * in the cache after the step (gens store their full blocks after each prefill step), so
 * a system prompt shared by concurrent requests is computed once.
 *
 * A model with sequence state resumes a cached prefix only at a snapshot of its state
 * (cellm_ctx_seq_snapshot): a gen stops its prefill at the last whole block before its
 * prompt's last token, takes the snapshot there (stored with the blocks right after the
 * step), and prefills the rest in the next step; its decode takes one at each block boundary
 * (the last is stored when the gen ends: a chat's next turn resumes after the answer). Its
 * gens never wait for one another: a block another gen completes carries no snapshot
 * unless it is that gen's own boundary.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "cellm.h"
#include "engine/engine.h"

#define MAX_TOP 20

struct cellm_gen {
    struct cellm_ctx *ctx;
    const struct cellm_tokenizer *tok;
    struct cellm_gen_params p;
    char **stop;
    int32_t *prompt;
    int n_prompt, limit, vocab, block;
    int snap_at;     /* state models: where the prefill stops for a snapshot (0: none) */
    int state_cache; /* a model with state and a prefix cache: snapshots during decode too */
    int seq, n_fed, n_cached, n_gen;
    int32_t last; /* the pick to feed next */
    int32_t *eos;
    int n_eos;
    struct cellm_sampler *smp;
    struct cellm_detok *dt;
    float *masked; /* [vocab] logits with EOS masked (min_tokens) or the grammar's mask */
    char *pend;    /* decoded text not yet released (stop holdback) */
    size_t pend_len, pend_cap;
    char *out; /* released in the last step */
    size_t out_len, out_cap;
    int32_t out_id;
    int n_out;
    struct cellm_logprob lp, top[MAX_TOP];
    const char *finish;
    char error[CELLM_ERROR_MAX];
    int failed, done;
    int taking; /* prompt rows in the step being run */
    /* the grammar: NULL = unconstrained; its mask, [(vocab + 31) / 32] */
    struct cellm_matcher *matcher;
    uint32_t *allow;
};

struct cellm_gen_params cellm_gen_params_default(void)
{
    struct cellm_gen_params p;
    memset(&p, 0, sizeof p);
    p.logprobs = -1;
    p.use_cache = 1;
    p.sampling = cellm_sampler_params_default();
    return p;
}

void cellm_gen_free(struct cellm_gen *g)
{
    if (!g) return;
    if (g->seq >= 0) {
        if (g->p.use_cache && !g->failed) cellm_ctx_seq_store(g->ctx, g->seq, NULL);
        if (g->failed) cellm_ctx_seq_truncate(g->ctx, g->seq, 0, NULL); /* nothing kept */
        cellm_ctx_seq_free(g->ctx, g->seq);
    }
    for (int i = 0; g->stop && i < g->p.n_stop; i++)
        cellm_free(g->stop[i]);
    cellm_free(g->stop);
    cellm_free(g->prompt);
    cellm_free(g->eos);
    cellm_sampler_free(g->smp);
    cellm_detok_free(g->dt);
    cellm_free(g->masked);
    cellm_matcher_free(g->matcher);
    cellm_free(g->allow);
    cellm_free(g->pend);
    cellm_free(g->out);
    cellm_free(g);
}

enum cellm_status cellm_gen_new(struct cellm_ctx *ctx, const struct cellm_tokenizer *tok,
                                const int32_t *prompt, int n, const struct cellm_gen_params *p,
                                struct cellm_gen **out, struct cellm_error *err)
{
    *out = NULL;
    const struct cellm_model *m = cellm_ctx_model(ctx);
    int vocab = cellm_model_vocab(m), maxc = cellm_model_max_context(m);
    struct cellm_gen_params gp = p ? *p : cellm_gen_params_default();
    int limit = gp.ctx_limit > 0 && gp.ctx_limit < maxc ? gp.ctx_limit : maxc;
    if (n <= 0 || !prompt) return cellm_errf(err, CELLM_ERR_ARG, "generate: the prompt is empty");
    if (n >= limit)
        return cellm_errf(err, CELLM_ERR_RANGE,
                          "generate: the prompt has %d tokens, which leaves no room in the "
                          "context of %d tokens",
                          n, limit);
    if (gp.max_tokens < 0 || gp.min_tokens < 0 || gp.n_stop < 0 || gp.logprobs < -1 ||
        gp.logprobs > MAX_TOP)
        return cellm_errf(err, CELLM_ERR_ARG,
                          "generate: max_tokens %d, min_tokens %d, n_stop %d, logprobs %d; "
                          "expected >= 0, >= 0, >= 0 and -1..%d",
                          gp.max_tokens, gp.min_tokens, gp.n_stop, gp.logprobs, MAX_TOP);
    if (gp.n_stop && !tok)
        return cellm_errf(err, CELLM_ERR_ARG, "generate: stop strings need a tokenizer");
    if (gp.grammar && cellm_grammar_vocab_size(gp.grammar_vocab) != vocab)
        return cellm_errf(err, CELLM_ERR_ARG,
                          "generate: a grammar needs the vocabulary of the model's %d ids; "
                          "got one of %d",
                          vocab, cellm_grammar_vocab_size(gp.grammar_vocab));
    for (int i = 0; i < n; i++)
        if (prompt[i] < 0 || prompt[i] >= vocab)
            return cellm_errf(err, CELLM_ERR_RANGE,
                              "generate: prompt id %d (at %d) is outside the vocabulary [0, %d)",
                              prompt[i], i, vocab);
    struct cellm_gen *g = cellm_calloc(1, sizeof *g);
    if (!g) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory");
    g->ctx = ctx;
    g->tok = tok;
    g->p = gp;
    g->p.stop = NULL;
    g->seq = -1;
    g->n_prompt = n;
    g->limit = limit;
    g->vocab = vocab;
    struct cellm_cache_stats cs;
    cellm_ctx_cache_stats(ctx, &cs);
    g->block = cs.block;
    /* the last whole block before the last prompt token: the same prompt, or one that
     * extends it, attaches up to there */
    if (gp.use_cache && cs.state) g->snap_at = (n - 1) / cs.block * cs.block;
    g->state_cache = gp.use_cache && cs.state && cs.block > 0;
    enum cellm_status st = CELLM_ERR_NOMEM;
    int n1 = 0, n2 = 0;
    const int32_t *e1 = cellm_model_eos(m, &n1), *e2 = tok ? cellm_tokenizer_eos(tok, &n2) : NULL;
    g->prompt = cellm_malloc((size_t)n * sizeof *g->prompt);
    g->eos = cellm_malloc((size_t)(n1 + n2 + 1) * sizeof *g->eos);
    g->stop = cellm_calloc((size_t)gp.n_stop + 1, sizeof *g->stop);
    if (!g->prompt || !g->eos || !g->stop) goto fail;
    memcpy(g->prompt, prompt, (size_t)n * sizeof *prompt);
    for (int i = 0; i < gp.n_stop; i++)
        if (!(g->stop[i] = cellm_strdup(gp.stop[i]))) goto fail;
    g->p.n_stop = 0;
    for (int i = 0; i < gp.n_stop; i++) /* an empty stop string would end every output at once */
        if (g->stop[i][0])
            g->stop[g->p.n_stop++] = g->stop[i];
        else
            cellm_free(g->stop[i]);
    for (int i = 0; i < n1 + n2; i++) {
        int32_t id = i < n1 ? e1[i] : e2[i - n1], dup = 0;
        for (int k = 0; k < g->n_eos; k++)
            dup |= g->eos[k] == id;
        if (!dup && id >= 0 && id < vocab) g->eos[g->n_eos++] = id;
    }
    if (((gp.min_tokens && g->n_eos && !gp.ignore_eos) || gp.grammar) &&
        !(g->masked = cellm_malloc((size_t)vocab * sizeof *g->masked)))
        goto fail;
    if (gp.grammar) {
        if (!(g->allow = cellm_malloc(((size_t)vocab + 31) / 32 * sizeof *g->allow))) goto fail;
        if ((st = cellm_matcher_new(gp.grammar, gp.grammar_vocab, &g->matcher, err))) goto fail;
    }
    if ((st = cellm_sampler_new(&gp.sampling, vocab, &g->smp, err))) goto fail;
    if (tok && (st = cellm_detok_new(tok, &g->dt, err))) goto fail;
    if (g->dt) cellm_detok_keep_special(g->dt, gp.keep_special);
    for (int i = 0; i < n; i++)
        cellm_sampler_accept(g->smp, prompt[i]);
    /* with slot reuse (a context without a block cache), a freed sequence sharing the
     * prompt's beginning is resumed where the two part */
    int kept = 0;
    g->seq = gp.use_cache ? cellm_ctx_seq_new_for(ctx, prompt, n, &kept) : cellm_ctx_seq_new(ctx);
    if (g->seq < 0) {
        st = cellm_errf(err, CELLM_ERR_RANGE, "generate: no free sequence in the context");
        goto fail;
    }
    g->n_fed = g->n_cached = kept;
    *out = g;
    return CELLM_OK;
fail:
    if (st == CELLM_ERR_NOMEM) cellm_errf(err, st, "out of memory");
    g->failed = 1;
    cellm_gen_free(g);
    return st;
}

static int put(char **b, size_t *len, size_t *cap, const char *src, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        char *nb = cellm_realloc(*b, c);
        if (!nb) return -1;
        *b = nb;
        *cap = c;
    }
    memcpy(*b + *len, src, n);
    *len += n;
    (*b)[*len] = 0;
    return 0;
}

/* Longest suffix of t[0..n) that is a proper prefix of a stop string. */
static size_t holdback(const char *t, size_t n, char *const *stops, int ns)
{
    size_t best = 0;
    for (int i = 0; i < ns; i++) {
        size_t L = strlen(stops[i]);
        for (size_t k = L - 1 < n ? L - 1 : n; k > best; k--)
            if (!memcmp(t + n - k, stops[i], k)) {
                best = k;
                break;
            }
    }
    return best;
}

static void fail_gen(struct cellm_gen *g, const char *msg)
{
    snprintf(g->error, sizeof g->error, "%s", msg);
    g->failed = g->done = 1;
    g->finish = NULL;
}

/* Moves n bytes of held text to the step's output. */
static int release(struct cellm_gen *g, size_t n)
{
    if (!n) return 0;
    if (put(&g->out, &g->out_len, &g->out_cap, g->pend, n)) return -1;
    memmove(g->pend, g->pend + n, g->pend_len - n);
    g->pend_len -= n;
    return 0;
}

static int is_eos(const struct cellm_gen *g, int32_t t)
{
    if (g->p.ignore_eos) return 0;
    for (int i = 0; i < g->n_eos; i++)
        if (g->eos[i] == t) return 1;
    return 0;
}

/* A new pick for g: EOS, stop strings, length; what it releases. */
static void emit(struct cellm_gen *g, int32_t t)
{
    g->n_gen++;
    if (is_eos(g, t)) {
        g->finish = "stop";
        g->done = 1;
        if (release(g, g->pend_len)) fail_gen(g, "out of memory");
        return;
    }
    if (g->matcher) {
        struct cellm_error e;
        if (cellm_matcher_accept_token(g->matcher, t, &e)) {
            fail_gen(g, e.msg);
            return;
        }
    }
    cellm_sampler_accept(g->smp, t);
    g->out_id = t;
    g->n_out = 1;
    g->last = t;
    if (g->dt) {
        const char *piece;
        struct cellm_error e;
        if (cellm_detok_push(g->dt, t, &piece, &e)) {
            fail_gen(g, e.msg);
            return;
        }
        if (put(&g->pend, &g->pend_len, &g->pend_cap, piece, strlen(piece))) {
            fail_gen(g, "out of memory");
            return;
        }
    }
    size_t cut = (size_t)-1;
    for (int i = 0; i < g->p.n_stop && g->pend; i++) {
        const char *hit = memmem(g->pend, g->pend_len, g->stop[i], strlen(g->stop[i]));
        if (hit && (size_t)(hit - g->pend) < cut) cut = (size_t)(hit - g->pend);
    }
    size_t n;
    if (cut != (size_t)-1) {
        g->finish = "stop";
        n = cut;
    } else {
        int full = (g->p.max_tokens > 0 && g->n_gen >= g->p.max_tokens) ||
                   g->n_prompt + g->n_gen >= g->limit;
        if (full) g->finish = "length";
        if (!full && g->matcher && cellm_matcher_done(g->matcher)) { /* nothing else may follow */
            g->finish = "stop";
            full = 1;
        }
        n = full ? g->pend_len : g->pend_len - holdback(g->pend, g->pend_len, g->stop, g->p.n_stop);
    }
    if (release(g, n)) fail_gen(g, "out of memory");
    if (g->finish) g->done = 1;
}

/* Log-softmax of the raw logits: the pick's and the n best. */
static void logprobs(struct cellm_gen *g, const float *l, int32_t pick)
{
    int V = g->vocab, k = g->p.logprobs;
    float mx = -INFINITY;
    for (int i = 0; i < V; i++)
        if (l[i] > mx) mx = l[i];
    double sum = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)l[i] - mx);
    double lse = mx + log(sum);
    g->lp = (struct cellm_logprob){pick, (float)(l[pick] - lse)};
    int have = 0;
    for (int i = 0; i < V && k > 0; i++) {
        if (have == k && !(l[i] > l[g->top[k - 1].id])) continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && l[g->top[j - 1].id] < l[i]) { /* ties keep the lower id first */
            g->top[j] = g->top[j - 1];
            j--;
        }
        g->top[j].id = i;
    }
    for (int j = 0; j < have; j++)
        g->top[j].logprob = (float)(l[g->top[j].id] - lse);
}

/* The grammar's mask over l, into g->masked: -inf for what it does not allow, EOS only
 * where it may end. -1 (and g failed) when nothing is allowed. */
static int constrain(struct cellm_gen *g, const float *l)
{
    struct cellm_error e;
    if (cellm_matcher_mask(g->matcher, g->allow, &e)) {
        fail_gen(g, e.msg);
        return -1;
    }
    int any = 0;
    for (int i = 0; i < g->vocab; i++) {
        int ok = (g->allow[i >> 5] >> (i & 31)) & 1;
        g->masked[i] = ok ? l[i] : -INFINITY;
        any |= ok;
    }
    int end = cellm_matcher_can_end(g->matcher) && !g->p.ignore_eos &&
              !(g->n_gen < g->p.min_tokens && !cellm_matcher_done(g->matcher));
    for (int i = 0; i < g->n_eos && end; i++)
        g->masked[g->eos[i]] = l[g->eos[i]];
    if (!any && end && !g->n_eos) { /* complete, and no EOS to say so: stop here */
        g->finish = "stop";
        g->done = 1;
        if (release(g, g->pend_len)) fail_gen(g, "out of memory");
        return -1;
    }
    if (!any && !end) {
        fail_gen(g, "grammar: no token of the vocabulary can continue the output here");
        return -1;
    }
    return 0;
}

/* The token g picks from its logits row (-1 when g failed). */
static int32_t pick(struct cellm_gen *g, const float *l)
{
    const float *in = l;
    if (g->matcher) {
        if (constrain(g, l)) return -1;
        in = g->masked;
    } else if (g->masked && g->n_gen < g->p.min_tokens) {
        memcpy(g->masked, l, (size_t)g->vocab * sizeof *l);
        for (int i = 0; i < g->n_eos; i++)
            g->masked[g->eos[i]] = -INFINITY;
        in = g->masked;
    }
    int32_t t = cellm_sampler_sample(g->smp, in);
    if (g->p.logprobs >= 0) logprobs(g, l, t);
    return t;
}

/* Whether g's pick can be made on the device: a plain argmax with nothing to report. */
static int device_pick(const struct cellm_gen *g)
{
    return cellm_sampler_is_greedy(g->smp) && g->p.logprobs < 0 && !g->matcher &&
           !(g->masked && g->n_gen < g->p.min_tokens);
}

static int lcp(const struct cellm_gen *a, const struct cellm_gen *b)
{
    int n = a->n_prompt < b->n_prompt ? a->n_prompt : b->n_prompt, i = 0;
    while (i < n && a->prompt[i] == b->prompt[i])
        i++;
    return i;
}

/* Whether g should wait for an earlier gen that is computing a whole block g needs. */
static int waits(struct cellm_gen *const *gens, int i)
{
    const struct cellm_gen *g = gens[i];
    if (!g->block || !g->p.use_cache || g->snap_at) return 0;
    int need = (g->n_fed / g->block + 1) * g->block; /* the end of g's next whole block */
    if (need > g->n_prompt - 1) return 0;            /* the last prompt token is never attached */
    for (int j = 0; j < i; j++) {
        const struct cellm_gen *h = gens[j];
        if (h->done || !h->p.use_cache || h->n_fed >= h->n_prompt || h->n_fed >= need) continue;
        if (lcp(g, h) >= need) return 1;
    }
    return 0;
}

enum cellm_status cellm_gen_step(struct cellm_ctx *ctx, struct cellm_gen *const *gens, int n,
                                 int prefill_budget, struct cellm_gen_step_stats *stats,
                                 struct cellm_error *err)
{
    struct cellm_gen_step_stats ss = {0, 0, 0};
    int rows = 0;
    for (int i = 0; i < n; i++) {
        struct cellm_gen *g = gens[i];
        g->out_len = 0;
        if (g->out) g->out[0] = 0;
        g->n_out = 0;
        if (g->done) continue;
        if (g->n_fed < g->n_prompt) {
            rows += g->n_prompt - g->n_fed;
        } else {
            rows++;
        }
    }
    size_t nr = (size_t)(rows ? rows : 1);
    char *scr =
        cellm_ctx_scratch(ctx, nr * (sizeof(struct cellm_batch_item) + 2 * sizeof(int32_t)));
    if (!scr) return cellm_errf(err, CELLM_ERR_NOMEM, "out of memory for a step of %d rows", rows);
    struct cellm_batch_item *items = (struct cellm_batch_item *)scr;
    int32_t *owner = (int32_t *)(items + nr), *picks = owner + nr;
    int ni = 0, nw = 0;
    struct cellm_error re;
    for (int i = 0; i < n; i++) {
        struct cellm_gen *g = gens[i];
        g->taking = 0;
        if (g->done || g->n_fed < g->n_prompt) continue;
        /* a KV budget that cannot hold one more position fails this gen only */
        if (cellm_ctx_seq_reserve(ctx, g->seq, 1, &re)) {
            fail_gen(g, re.msg);
            continue;
        }
        items[ni++] = (struct cellm_batch_item){g->last, g->seq, 1};
        owner[nw++] = i;
        ss.decode_rows++;
    }
    for (int i = 0; i < n; i++) {
        struct cellm_gen *g = gens[i];
        if (g->done || g->n_fed >= g->n_prompt) continue;
        if (prefill_budget > 0 && ss.prefill_rows >= prefill_budget) break;
        if (g->p.use_cache && g->block) {
            /* the last prompt token is always evaluated: its logits give the first pick */
            int len = g->n_fed;
            struct cellm_error e;
            if (cellm_ctx_seq_attach(ctx, g->seq, g->prompt, g->n_prompt - 1, &len, &e)) {
                fail_gen(g, e.msg);
                continue;
            }
            g->n_cached += len - g->n_fed;
            g->n_fed = len;
        }
        if (waits(gens, i)) {
            ss.waiting++;
            continue;
        }
        int take = g->n_prompt - g->n_fed;
        if (g->n_fed < g->snap_at && take > g->snap_at - g->n_fed) take = g->snap_at - g->n_fed;
        if (prefill_budget > 0 && take > prefill_budget - ss.prefill_rows)
            take = prefill_budget - ss.prefill_rows;
        if (cellm_ctx_seq_reserve(ctx, g->seq, take, &re)) {
            fail_gen(g, re.msg);
            continue;
        }
        for (int k = 0; k < take; k++) {
            int last = g->n_fed + k + 1 == g->n_prompt;
            items[ni++] = (struct cellm_batch_item){g->prompt[g->n_fed + k], g->seq, last};
            if (last) owner[nw++] = i;
        }
        g->taking = take;
        ss.prefill_rows += take;
    }
    if (stats) *stats = ss;
    if (!ni) return CELLM_OK;
    int greedy = 1;
    for (int k = 0; k < nw; k++)
        greedy &= device_pick(gens[owner[k]]);
    const float *logits = NULL;
    enum cellm_status st = greedy ? cellm_ctx_eval_argmax(ctx, items, ni, picks, err)
                                  : cellm_ctx_eval(ctx, items, ni, &logits, err);
    if (st) {
        for (int i = 0; i < n; i++) {
            struct cellm_gen *g = gens[i];
            int had = g->taking > 0;
            for (int k = 0; k < nw; k++)
                had |= owner[k] == i;
            if (had && !g->done) fail_gen(g, err ? err->msg : "evaluation failed");
        }
        return st;
    }
    /* prompt rows are in: advance, and cache the whole blocks they completed, so that a
     * gen waiting for them (or a later request) attaches instead of computing */
    for (int i = 0; i < n; i++) {
        struct cellm_gen *g = gens[i];
        if (!g->taking) continue;
        int before = g->n_fed;
        g->n_fed += g->taking;
        /* a snapshot or a cache that cannot store is no error: the prefix is then not kept */
        if (g->n_fed == g->snap_at) cellm_ctx_seq_snapshot(ctx, g->seq, NULL);
        if (g->p.use_cache && g->block && g->n_fed / g->block > before / g->block)
            cellm_ctx_seq_store(ctx, g->seq, NULL);
    }
    /* state models: a decode row that completes a block leaves a snapshot there (the one
     * before it is dropped), which the gen's store at its end caches, so that a chat's next
     * turn resumes after this answer rather than at this prompt's last block */
    for (int k = 0; k < ss.decode_rows; k++) {
        struct cellm_gen *g = gens[owner[k]];
        if (g->state_cache && cellm_ctx_seq_len(ctx, g->seq) % g->block == 0)
            cellm_ctx_seq_snapshot(ctx, g->seq, NULL);
    }
    for (int k = 0; k < nw; k++) {
        struct cellm_gen *g = gens[owner[k]];
        int32_t t = greedy ? picks[k] : pick(g, logits + (size_t)k * g->vocab);
        if (t >= 0) emit(g, t);
    }
    return CELLM_OK;
}

void cellm_gen_output(const struct cellm_gen *g, struct cellm_gen_out *o)
{
    memset(o, 0, sizeof *o);
    o->ids = &g->out_id;
    o->n_ids = g->n_out;
    o->text = g->out ? g->out : "";
    o->text_len = g->out_len;
    if (g->p.logprobs >= 0 && g->n_out) {
        o->lp = &g->lp;
        o->top = g->top;
        o->n_top = g->p.logprobs;
    }
    o->finish = g->finish;
    o->error = g->failed ? g->error : NULL;
    o->done = g->done;
    o->n_prompt = g->n_prompt;
    o->n_cached = g->n_cached;
    o->n_gen = g->n_gen;
    o->in_prompt = g->n_prompt - g->n_fed;
}
