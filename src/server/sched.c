/*
 * sched.c: continuous batching over the engine's generation loop.
 *
 * One scheduler thread owns the cellm_ctx. It keeps `parallel` slots; each holds one
 * choice of a request (a request with n > 1 has n choices, admitted one slot at a time)
 * as a struct cellm_gen. Every step is ONE cellm_gen_step over the slots' gens: the
 * engine puts a decode row for each choice that decodes, then prompt rows of choices
 * still in prefill up to batch_rows (--batch-size) rows per step in slot order (chunked prefill),
 * attaching what the prefix cache holds first and letting a choice wait while an earlier
 * one computes blocks they share (so n choices, or concurrent chats with one system
 * prompt, compute that prompt once). The engine decides EOS, stops, greedy picks and
 * lengths; this file only queues, admits, publishes the output under the server mutex,
 * reaps cancelled requests and keeps the metrics. Requests wait in a bounded FIFO until a
 * slot is free; finished, failed or cancelled choices give their slot back between steps,
 * which disturbs no one else (each sequence's KV cache is its own, and the CPU executor
 * computes every row independently of the others in the batch).
 *
 * The trade-off: a large prompt slows the decode steps that share its chunks (bounded by
 * batch_rows) instead of stalling them for a whole prompt, and costs nothing when no
 * one is prefilling.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cellm_srv_req_free(struct srv_req *r)
{
    if (!r) return;
    free(r->p.echo);
    free(r->p.prompt);
    for (int i = 0; i < r->p.n_stop; i++)
        free(r->p.stop[i]);
    free(r->p.stop);
    for (int k = 0; r->ch && k < r->p.n; k++) {
        cellm_gen_free(r->ch[k].gen);
        free(r->ch[k].text);
        free(r->ch[k].ids);
        free(r->ch[k].lp);
        free(r->ch[k].top);
        cellm_tc_free(r->ch[k].tc);
        free(r->ch[k].reasoning);
        for (int i = 0; i < r->ch[k].n_calls; i++) {
            free(r->ch[k].calls[i].name);
            free(r->ch[k].calls[i].args);
        }
        free(r->ch[k].calls);
    }
    cJSON_Delete(r->p.tools);
    free(r->ch);
    cellm_grammar_free(r->p.grammar); /* after the gens: their matchers go back to it */
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Under s->mu. */
static void release_locked(struct srv_req *r)
{
    if (--r->refs == 0) cellm_srv_req_free(r);
}

void cellm_srv_req_release(struct cellm_server *s, struct srv_req *r)
{
    pthread_mutex_lock(&s->mu);
    if (!r->done) {
        r->cancelled = 1;
        pthread_cond_signal(&s->sched_cv);
    }
    release_locked(r);
    pthread_mutex_unlock(&s->mu);
}

int cellm_srv_submit(struct cellm_server *s, struct srv_req *r, struct srv_error *e)
{
    pthread_mutex_lock(&s->mu);
    if (s->stopping) {
        pthread_mutex_unlock(&s->mu);
        cellm_srv_errorf(e, 503, NULL, "the server is shutting down");
        return -1;
    }
    /* the queue holds o.queue requests beyond the free slots (admission is asynchronous) */
    if (s->q_len >= s->o.queue + (s->o.parallel - s->n_active)) {
        s->m.req_rejected_full++;
        pthread_mutex_unlock(&s->mu);
        cellm_srv_errorf(e, 503, NULL,
                         "the server is busy: %d requests are running and %d waiting; retry later",
                         s->n_active, s->q_len);
        e->code = "server_busy";
        return -1;
    }
    snprintf(r->id, sizeof r->id, "%s-%llx%08llx", r->p.chat ? "chatcmpl" : "cmpl", ++s->next_id,
             (unsigned long long)(r->p.sp.seed & 0xffffffffu));
    r->refs = 2; /* the connection and the queue; each admitted choice takes one more */
    r->next = NULL;
    if (s->q_tail)
        s->q_tail->next = r;
    else
        s->q_head = r;
    s->q_tail = r;
    s->q_len++;
    s->m.tokens_in += (unsigned long long)r->p.n_prompt;
    pthread_cond_signal(&s->sched_cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

/* ---- output ------------------------------------------------------------------------------ */

static int append(char **buf, size_t *len, size_t *cap, const char *src, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 64;
        while (c < *len + n + 1)
            c *= 2;
        char *b = realloc(*buf, c);
        if (!b) return -1;
        *buf = b;
        *cap = c;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
    (*buf)[*len] = 0;
    return 0;
}

/* Fails r (under s->mu): every choice ends, the connection wakes; slots are reaped. */
static void fail_locked(struct srv_req *r, int status, const char *msg)
{
    if (r->done) return;
    cellm_srv_errorf(&r->err, status, NULL, "%s", msg);
    r->failed = 1;
    r->done = 1;
    cellm_srv_req_wake_locked(r);
}

/* Frees a choice's slot and its gen (under s->mu, on the scheduler thread). */
static void vacate_locked(struct cellm_server *s, struct srv_choice *c)
{
    cellm_gen_free(c->gen); /* stores its blocks in the prefix cache */
    c->gen = NULL;
    s->slots[c->slot] = NULL;
    s->n_active--;
    release_locked(c->r);
}

/* The tool-call parser's sink: content, reasoning and calls into the choice (under
 * s->mu, from publish_locked). */
static int on_content(void *ud, const char *t, size_t n)
{
    struct srv_choice *c = ud;
    return append(&c->text, &c->text_len, &c->text_cap, t, n);
}

static int on_reasoning(void *ud, const char *t, size_t n)
{
    struct srv_choice *c = ud;
    return append(&c->reasoning, &c->reasoning_len, &c->reasoning_cap, t, n);
}

/* A call id: "call_" and 24 letters and digits, or 9 for Mistral, whose templates refuse
 * any other length in the history. */
static void call_id(struct srv_choice *c, char *id, size_t cap)
{
    static const char al[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = c->r->p.sp.seed ^ ((uint64_t)c->index << 48) ^ ((uint64_t)c->n_calls << 40) ^
                 (uint64_t)(uintptr_t)c;
    int mistral = c->r->p.tc.format == CELLM_TC_MISTRAL;
    size_t w = mistral ? 0 : (size_t)snprintf(id, cap, "call_");
    for (size_t i = 0; i < (mistral ? 9u : 24u) && w + 1 < cap; i++) {
        x ^= x >> 12, x ^= x << 25, x ^= x >> 27; /* xorshift64* */
        id[w++] = al[(x * 0x2545F4914F6CDD1Dull >> 33) % (sizeof al - 1)];
    }
    id[w] = 0;
}

/* A new call with the name and arguments given (args "" while streamed). */
static int add_call(struct srv_choice *c, const char *name, const char *args)
{
    if (c->n_calls == c->calls_cap) {
        int cap = c->calls_cap ? 2 * c->calls_cap : 4;
        struct srv_call *v = realloc(c->calls, (size_t)cap * sizeof *v);
        if (!v) return -1;
        c->calls = v;
        c->calls_cap = cap;
    }
    struct srv_call *k = &c->calls[c->n_calls];
    call_id(c, k->id, sizeof k->id);
    k->name = strdup(name);
    k->args = strdup(args);
    k->args_len = strlen(args);
    if (!k->name || !k->args) {
        free(k->name);
        free(k->args);
        return -1;
    }
    c->n_calls++;
    return 0;
}

/* Streamed calls (a stream with tools): each call is published as it is generated, its
 * head once its name is known and its arguments in pieces (api_out.c sends what is new);
 * with parallel_tool_calls false, calls after the first are dropped here. */
static int keep_call(const struct srv_choice *c, int j)
{
    return j == 0 || c->r->p.parallel_tool_calls;
}

static int on_call_begin(void *ud, const char *name)
{
    struct srv_choice *c = ud;
    return keep_call(c, c->calls_begun++) ? add_call(c, name, "") : 0;
}

static int on_call_args(void *ud, const char *s, size_t n)
{
    struct srv_choice *c = ud;
    if (!c->n_calls || !keep_call(c, c->calls_begun - 1)) return 0;
    struct srv_call *k = &c->calls[c->n_calls - 1];
    char *a = realloc(k->args, k->args_len + n + 1);
    if (!a) return -1;
    memcpy(a + k->args_len, s, n);
    k->args_len += n;
    a[k->args_len] = 0;
    k->args = a;
    return 0;
}

static int on_call(void *ud, const char *name, const char *args)
{
    struct srv_choice *c = ud;
    if (c->r->p.stream && c->r->p.tool_calls) {
        /* completes the oldest call begun; its arguments have all been given in pieces
         * (NULL: it proved malformed; what was sent stands) */
        (void)name;
        (void)args;
        c->calls_ended++;
        return 0;
    }
    if (!c->r->p.tool_calls) /* a call the request did not allow (harmony): show it */
        return on_content(ud, args, strlen(args));
    if (c->n_calls && !c->r->p.parallel_tool_calls) return 0; /* the first call only */
    return add_call(c, name, args);
}

/* Publishes what the last step produced for c (under s->mu). Returns 1 when c is done. */
static int publish_locked(struct cellm_server *s, struct srv_choice *c)
{
    struct srv_req *r = c->r;
    struct cellm_gen_out o;
    cellm_gen_output(c->gen, &o);
    c->n_cached = o.n_cached;
    if (o.error) {
        fail_locked(r, 500, o.error);
        return 1;
    }
    int oom = 0;
    if (o.n_ids && c->n_ids + o.n_ids > c->ids_cap) {
        int cap = c->ids_cap ? 2 * c->ids_cap : 64;
        int32_t *ids = realloc(c->ids, (size_t)cap * sizeof *ids);
        if (ids) c->ids = ids;
        if (ids && r->p.logprobs >= 0) {
            int nt = r->p.logprobs ? r->p.logprobs : 1;
            struct cellm_logprob *lp = realloc(c->lp, (size_t)cap * sizeof *lp);
            if (lp) c->lp = lp;
            struct cellm_logprob *tp = lp ? realloc(c->top, (size_t)cap * nt * sizeof *tp) : NULL;
            if (tp) c->top = tp;
            ids = tp ? ids : NULL;
        }
        if (ids)
            c->ids_cap = cap;
        else
            oom = 1;
    }
    for (int i = 0; !oom && i < o.n_ids; i++) {
        if (r->p.logprobs >= 0 && o.lp) {
            c->lp[c->n_ids] = o.lp[i];
            memcpy(c->top + (size_t)c->n_ids * (r->p.logprobs ? r->p.logprobs : 1),
                   o.top + (size_t)i * o.n_top, (size_t)o.n_top * sizeof *o.top);
        }
        c->ids[c->n_ids++] = o.ids[i];
    }
    s->m.tokens_out += (unsigned long long)o.n_ids;
    if (c->tc) {
        /* streamed with tools: calls as they are generated */
        int live = r->p.stream && r->p.tool_calls;
        struct cellm_tc_sink k = {c,
                                  on_content,
                                  on_reasoning,
                                  on_call,
                                  live ? on_call_begin : NULL,
                                  live ? on_call_args : NULL};
        struct cellm_error ce;
        if (!oom && o.text_len) oom = cellm_tc_feed(c->tc, o.text, o.text_len, &k, &ce) != 0;
        if (!oom && o.done) oom = cellm_tc_finish(c->tc, &k, &ce) != 0;
    } else if (!oom && o.text_len) {
        oom = append(&c->text, &c->text_len, &c->text_cap, o.text, o.text_len);
    }
    if (oom) {
        fail_locked(r, 500, "out of memory");
        return 1;
    }
    if (o.done) {
        c->done = 1;
        c->finish = o.finish;
        /* OpenAI's reason when the answer is tool calls */
        if (c->n_calls && o.finish && !strcmp(o.finish, "stop")) c->finish = "tool_calls";
        if (++r->n_done == r->p.n) r->done = 1;
    }
    /* wakes a suspended connection too (through r->wake), not only a waiting thread */
    if (o.n_ids || o.text_len || o.done) cellm_srv_req_wake_locked(r);
    return o.done;
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void dequeue_locked(struct cellm_server *s)
{
    struct srv_req *r = s->q_head;
    s->q_head = r->next;
    if (!s->q_head) s->q_tail = NULL;
    s->q_len--;
    r->next = NULL;
    release_locked(r); /* the queue's reference */
}

/* Moves queued choices into free slots (under s->mu). */
static void admit_locked(struct cellm_server *s)
{
    for (int i = 0; i < s->o.parallel && s->q_head; i++) {
        if (s->slots[i]) continue;
        struct srv_req *r = s->q_head;
        if (r->cancelled || r->done) {
            if (r->cancelled && !r->n_admitted) s->m.req_cancelled++;
            dequeue_locked(s);
            i--;
            continue;
        }
        struct srv_choice *c = &r->ch[r->n_admitted];
        struct cellm_gen_params gp = cellm_gen_params_default();
        gp.max_tokens = r->p.max_tokens;
        gp.min_tokens = r->p.min_tokens;
        gp.stop = (const char *const *)r->p.stop;
        gp.n_stop = r->p.n_stop;
        gp.ignore_eos = r->p.ignore_eos;
        gp.logprobs = r->p.logprobs;
        gp.ctx_limit = s->ctx_size;
        gp.use_cache = r->p.cache_prompt;
        gp.sampling = r->p.sp;
        gp.grammar = r->p.grammar;
        gp.grammar_vocab = s->gvocab;
        gp.sampling.seed += (uint64_t)c->index; /* choices differ when they sample */
        gp.keep_special = r->p.parse_out && r->p.tc.keep_special;
        struct cellm_error ce;
        if ((r->p.parse_out &&
             cellm_tc_new(&r->p.tc, r->p.in_reasoning, r->p.tools, &c->tc, &ce)) ||
            cellm_gen_new(s->ctx, s->tok, r->p.prompt, r->p.n_prompt, &gp, &c->gen, &ce)) {
            fail_locked(r, 500, ce.msg);
            dequeue_locked(s);
            i--;
            continue;
        }
        c->slot = i;
        s->slots[i] = c;
        s->n_active++;
        r->refs++;
        if (++r->n_admitted == r->p.n) dequeue_locked(s);
    }
}

static void reap_locked(struct cellm_server *s)
{
    for (int i = 0; i < s->o.parallel; i++) {
        struct srv_choice *c = s->slots[i];
        if (c && (c->r->cancelled || c->r->failed)) {
            if (c->r->cancelled && !c->r->done) {
                s->m.req_cancelled++;
                c->r->done = 1;
                cellm_srv_req_wake_locked(c->r);
            }
            vacate_locked(s, c);
        }
    }
    struct srv_req **pp = &s->q_head, *last = NULL;
    while (*pp) {
        struct srv_req *r = *pp;
        if (r->cancelled && !r->n_admitted) {
            *pp = r->next;
            s->q_len--;
            s->m.req_cancelled++;
            release_locked(r);
        } else {
            last = r;
            pp = &r->next;
        }
    }
    s->q_tail = last;
}

static void fail_all_locked(struct cellm_server *s, const char *msg)
{
    for (int i = 0; i < s->o.parallel; i++)
        if (s->slots[i]) {
            fail_locked(s->slots[i]->r, 503, msg);
            vacate_locked(s, s->slots[i]);
        }
    while (s->q_head) {
        fail_locked(s->q_head, 503, msg);
        dequeue_locked(s);
    }
}

static void *sched_main(void *arg)
{
    struct cellm_server *s = arg;
    struct cellm_gen **gens = malloc((size_t)s->o.parallel * sizeof *gens);
    struct srv_choice **who = malloc((size_t)s->o.parallel * sizeof *who);
    int budget = s->o.batch_rows > 0 ? s->o.batch_rows : CELLM_SERVER_BATCH_ROWS;
    pthread_mutex_lock(&s->mu);
    if (!gens || !who) {
        s->stopping = 1;
        fail_all_locked(s, "out of memory");
    }
    for (;;) {
        for (;;) {
            reap_locked(s);
            if (s->stopping) break;
            admit_locked(s);
            if (s->n_active) break;
            /* idle: cellm_server_stop's drain may be waiting for the last slot to empty */
            pthread_cond_broadcast(&s->idle_cv);
            pthread_cond_wait(&s->sched_cv, &s->mu);
        }
        if (s->stopping) {
            fail_all_locked(s, "the server is shutting down");
            break;
        }
        int n = 0;
        for (int i = 0; i < s->o.parallel; i++)
            if (s->slots[i]) {
                who[n] = s->slots[i];
                gens[n++] = s->slots[i]->gen;
            }
        pthread_mutex_unlock(&s->mu);

        struct cellm_gen_step_stats ss;
        struct cellm_error ce;
        double t0 = now_s();
        cellm_gen_step(s->ctx, gens, n, budget, &ss, &ce); /* failures are per gen */
        double dt = now_s() - t0;

        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < n; k++)
            if (!who[k]->r->failed && publish_locked(s, who[k]) && s->slots[who[k]->slot] == who[k])
                vacate_locked(s, who[k]);
        int rows = ss.prefill_rows + ss.decode_rows;
        s->m.steps += rows > 0;
        if (ss.decode_rows > s->m.max_rows_decode) s->m.max_rows_decode = ss.decode_rows;
        s->m.prefill_tok += (unsigned long long)ss.prefill_rows;
        s->m.decode_tok += (unsigned long long)ss.decode_rows;
        if (rows) {
            s->m.prefill_s += dt * ss.prefill_rows / rows;
            s->m.decode_s += dt * ss.decode_rows / rows;
        }
        s->m.cache_waits += (unsigned long long)ss.waiting;
        cellm_ctx_cache_stats(s->ctx, &s->m.cache);
    }
    pthread_mutex_unlock(&s->mu);
    free(gens);
    free(who);
    return NULL;
}

int cellm_srv_sched_start(struct cellm_server *s, struct cellm_error *err)
{
    int e = pthread_create(&s->sched_thread, NULL, sched_main, s);
    if (e) {
        snprintf(err->msg, sizeof err->msg, "cannot start the scheduler thread: %s", strerror(e));
        return -1;
    }
    s->sched_started = 1;
    return 0;
}

void cellm_srv_sched_stop(struct cellm_server *s)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->sched_cv);
    pthread_mutex_unlock(&s->mu);
    if (s->sched_started) pthread_join(s->sched_thread, NULL);
    s->sched_started = 0;
}

/* ---- metrics ----------------------------------------------------------------------------- */

char *cellm_srv_metrics_text(struct cellm_server *s)
{
    pthread_mutex_lock(&s->mu);
    struct srv_metrics m = s->m;
    int q = s->q_len, act = s->n_active;
    pthread_mutex_unlock(&s->mu);
    size_t cap = 8192;
    char *t = malloc(cap);
    if (!t) return NULL;
    snprintf(t, cap,
             "# HELP cellm_requests_total Requests received, by endpoint.\n"
             "# TYPE cellm_requests_total counter\n"
             "cellm_requests_total{endpoint=\"completions\"} %llu\n"
             "cellm_requests_total{endpoint=\"chat_completions\"} %llu\n"
             "cellm_requests_total{endpoint=\"other\"} %llu\n"
             "# HELP cellm_requests_failed_total Requests answered with an HTTP error.\n"
             "# TYPE cellm_requests_failed_total counter\n"
             "cellm_requests_failed_total %llu\n"
             "# HELP cellm_requests_rejected_busy_total Requests refused with 503 (queue full).\n"
             "# TYPE cellm_requests_rejected_busy_total counter\n"
             "cellm_requests_rejected_busy_total %llu\n"
             "# HELP cellm_requests_cancelled_total Requests whose client went away.\n"
             "# TYPE cellm_requests_cancelled_total counter\n"
             "cellm_requests_cancelled_total %llu\n"
             "# HELP cellm_prompt_tokens_total Prompt tokens accepted.\n"
             "# TYPE cellm_prompt_tokens_total counter\n"
             "cellm_prompt_tokens_total %llu\n"
             "# HELP cellm_generated_tokens_total Tokens generated.\n"
             "# TYPE cellm_generated_tokens_total counter\n"
             "cellm_generated_tokens_total %llu\n"
             "# HELP cellm_queue_depth Requests waiting for a slot.\n"
             "# TYPE cellm_queue_depth gauge\n"
             "cellm_queue_depth %d\n"
             "# HELP cellm_active_slots Requests being prefilled or decoded.\n"
             "# TYPE cellm_active_slots gauge\n"
             "cellm_active_slots %d\n"
             "# HELP cellm_slots Slots (--parallel).\n"
             "# TYPE cellm_slots gauge\n"
             "cellm_slots %d\n"
             "# HELP cellm_steps_total Batched model steps.\n"
             "# TYPE cellm_steps_total counter\n"
             "cellm_steps_total %llu\n"
             "# HELP cellm_decode_batch_max Most sequences decoded together in one step.\n"
             "# TYPE cellm_decode_batch_max gauge\n"
             "cellm_decode_batch_max %d\n"
             "# HELP cellm_prefill_tokens_total Prompt rows evaluated.\n"
             "# TYPE cellm_prefill_tokens_total counter\n"
             "cellm_prefill_tokens_total %llu\n"
             "# HELP cellm_prefill_seconds_total Step time attributed to prompt rows.\n"
             "# TYPE cellm_prefill_seconds_total counter\n"
             "cellm_prefill_seconds_total %.6f\n"
             "# HELP cellm_decode_tokens_total Decode rows evaluated.\n"
             "# TYPE cellm_decode_tokens_total counter\n"
             "cellm_decode_tokens_total %llu\n"
             "# HELP cellm_decode_seconds_total Step time attributed to decode rows.\n"
             "# TYPE cellm_decode_seconds_total counter\n"
             "cellm_decode_seconds_total %.6f\n"
             "# HELP cellm_prefill_tokens_per_second Prompt rows per second of step time (steps "
             "are split by row share).\n"
             "# TYPE cellm_prefill_tokens_per_second gauge\n"
             "cellm_prefill_tokens_per_second %.3f\n"
             "# HELP cellm_decode_tokens_per_second Decode rows per second of step time, all "
             "streams together.\n"
             "# TYPE cellm_decode_tokens_per_second gauge\n"
             "cellm_decode_tokens_per_second %.3f\n"
             "# HELP cellm_prefix_cache_lookups_total Prompts looked up in the prefix cache.\n"
             "# TYPE cellm_prefix_cache_lookups_total counter\n"
             "cellm_prefix_cache_lookups_total %llu\n"
             "# HELP cellm_prefix_cache_hits_total Lookups that attached cached blocks.\n"
             "# TYPE cellm_prefix_cache_hits_total counter\n"
             "cellm_prefix_cache_hits_total %llu\n"
             "# HELP cellm_prefix_cache_misses_total Lookups that found nothing to attach.\n"
             "# TYPE cellm_prefix_cache_misses_total counter\n"
             "cellm_prefix_cache_misses_total %llu\n"
             "# HELP cellm_prefix_cache_cached_tokens_total Prompt tokens attached instead of "
             "evaluated.\n"
             "# TYPE cellm_prefix_cache_cached_tokens_total counter\n"
             "cellm_prefix_cache_cached_tokens_total %llu\n"
             "# HELP cellm_prefix_cache_evictions_total Blocks (or snapshots alone) evicted, least "
             "recently used.\n"
             "# TYPE cellm_prefix_cache_evictions_total counter\n"
             "cellm_prefix_cache_evictions_total %llu\n"
             "# HELP cellm_prefix_cache_stored_blocks_total Blocks stored.\n"
             "# TYPE cellm_prefix_cache_stored_blocks_total counter\n"
             "cellm_prefix_cache_stored_blocks_total %llu\n"
             "# HELP cellm_prefix_cache_blocks Blocks held now.\n"
             "# TYPE cellm_prefix_cache_blocks gauge\n"
             "cellm_prefix_cache_blocks %zu\n"
             "# HELP cellm_prefix_cache_snapshots Held blocks that carry a snapshot of a "
             "model's sequence state (conv windows, recurrent states).\n"
             "# TYPE cellm_prefix_cache_snapshots gauge\n"
             "cellm_prefix_cache_snapshots %zu\n"
             "# HELP cellm_prefix_cache_bytes Bytes the held blocks take (with their "
             "snapshots).\n"
             "# TYPE cellm_prefix_cache_bytes gauge\n"
             "cellm_prefix_cache_bytes %zu\n"
             "# HELP cellm_prefix_cache_budget_bytes The cache's budget (--cache-ram / "
             "--cache-gpu).\n"
             "# TYPE cellm_prefix_cache_budget_bytes gauge\n"
             "cellm_prefix_cache_budget_bytes %zu\n"
             "# HELP cellm_prefix_cache_waits_total Prefill steps a request waited for a prefix "
             "another was computing.\n"
             "# TYPE cellm_prefix_cache_waits_total counter\n"
             "cellm_prefix_cache_waits_total %llu\n",
             m.req_completions, m.req_chat, m.req_other, m.req_errors, m.req_rejected_full,
             m.req_cancelled, m.tokens_in, m.tokens_out, q, act, s->o.parallel, m.steps,
             m.max_rows_decode, m.prefill_tok, m.prefill_s, m.decode_tok, m.decode_s,
             m.prefill_s > 0 ? (double)m.prefill_tok / m.prefill_s : 0.0,
             m.decode_s > 0 ? (double)m.decode_tok / m.decode_s : 0.0, m.cache.lookups,
             m.cache.hits, m.cache.misses, m.cache.hit_tokens, m.cache.evictions,
             m.cache.stored_blocks, m.cache.blocks, m.cache.snapshots, m.cache.bytes,
             m.cache.budget_bytes, m.cache_waits);
    return t;
}
