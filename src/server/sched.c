/*
 * sched.c: continuous batching.
 *
 * One scheduler thread owns the cellm_ctx. It keeps `parallel` slots; each holds a
 * request with its own sequence (KV cache), sampler and streaming detokenizer. Every
 * step is ONE cellm_ctx_eval over:
 *   - one row per slot in decode (its last sampled token), and
 *   - prompt rows of slots still in prefill, up to PREFILL_BUDGET rows per step shared
 *     among them in admission order (chunked prefill),
 * so each weight is read once per step for all of them. A prompt whose last row is in
 * the step gets its first token from that row's logits and decodes from the next step
 * on. Requests wait in a bounded FIFO until a slot is free; finished, failed or
 * cancelled ones give their slot back between steps, which disturbs no one else (each
 * sequence's KV cache is its own, and the CPU executor computes every row independently
 * of the others in the batch, so batched results equal single ones bit for bit).
 *
 * The trade-off: a large prompt slows the decode steps that share its chunks (bounded by
 * PREFILL_BUDGET) instead of stalling them for a whole prompt, and costs nothing when no
 * one is prefilling.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srv.h"

#define PREFILL_BUDGET 256

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void cellm_srv_req_free(struct srv_req *r)
{
    if (!r) return;
    free(r->p.prompt);
    for (int i = 0; i < r->p.n_stop; i++)
        free(r->p.stop[i]);
    free(r->p.stop);
    cellm_sampler_free(r->smp);
    cellm_detok_free(r->detok);
    free(r->pend);
    free(r->text);
    free(r->ids);
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
    r->refs = 2; /* the connection and the scheduler */
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

/* Marks r done (under s->mu) and wakes its connection. */
static void finish_locked(struct srv_req *r, const char *why)
{
    r->done = 1;
    r->finish = why;
    cellm_srv_req_wake_locked(r);
}

static void fail_locked(struct srv_req *r, int status, const char *msg)
{
    if (r->done) return;
    cellm_srv_errorf(&r->err, status, NULL, "%s", msg);
    r->failed = 1;
    finish_locked(r, NULL);
}

/* Frees r's slot and its sequence (under s->mu, on the scheduler thread). */
static void vacate_locked(struct cellm_server *s, struct srv_req *r)
{
    if (r->seq >= 0) cellm_ctx_seq_free(s->ctx, r->seq);
    r->seq = -1;
    cellm_sampler_free(r->smp);
    r->smp = NULL;
    cellm_detok_free(r->detok);
    r->detok = NULL;
    s->slots[r->slot] = NULL;
    s->n_active--;
    release_locked(r);
}

/* A new token for r: decides on eos, stop strings and length, publishes the output.
 * Returns 1 when r finished. Scheduler thread. */
static int emit(struct cellm_server *s, struct srv_req *r, int32_t tok)
{
    const char *finish = NULL;
    int is_eos = 0;
    for (int i = 0; i < s->n_eos; i++)
        is_eos |= s->eos[i] == tok;
    size_t release = 0;
    const char *piece = "";
    int oom = 0;
    r->n_gen++;
    if (is_eos) {
        finish = "stop";
        release = r->pend_len;
    } else {
        cellm_sampler_accept(r->smp, tok);
        if (r->detok) {
            struct cellm_error ce;
            if (cellm_detok_push(r->detok, tok, &piece, &ce)) piece = "";
            oom = append(&r->pend, &r->pend_len, &r->pend_cap, piece, strlen(piece));
        }
        /* the earliest complete stop string ends the output before it */
        size_t cut = (size_t)-1;
        for (int i = 0; i < r->p.n_stop && r->pend; i++) {
            const char *hit = memmem(r->pend, r->pend_len, r->p.stop[i], strlen(r->p.stop[i]));
            if (hit && (size_t)(hit - r->pend) < cut) cut = (size_t)(hit - r->pend);
        }
        if (cut != (size_t)-1) {
            finish = "stop";
            release = cut;
        } else {
            int full = r->n_gen >= r->p.max_tokens || r->p.n_prompt + r->n_gen >= s->ctx_size;
            if (full) finish = "length";
            release = full ? r->pend_len
                           : r->pend_len - holdback(r->pend, r->pend_len, r->p.stop, r->p.n_stop);
        }
    }
    pthread_mutex_lock(&s->mu);
    s->m.tokens_out++;
    if (!is_eos && r->n_ids == r->ids_cap) {
        int c = r->ids_cap ? 2 * r->ids_cap : 64;
        int32_t *ids = realloc(r->ids, (size_t)c * sizeof *ids);
        if (ids) {
            r->ids = ids;
            r->ids_cap = c;
        } else
            oom = 1;
    }
    if (!is_eos && !oom) r->ids[r->n_ids++] = tok;
    if (release && !oom) oom = append(&r->text, &r->text_len, &r->text_cap, r->pend, release);
    if (oom) {
        fail_locked(r, 500, "out of memory");
    } else if (finish) {
        finish_locked(r, finish);
    } else {
        cellm_srv_req_wake_locked(r);
    }
    int done = r->done;
    pthread_mutex_unlock(&s->mu);
    if (release && !oom && !done) {
        memmove(r->pend, r->pend + release, r->pend_len - release);
        r->pend_len -= release;
    }
    return done;
}

/* ---- the loop ---------------------------------------------------------------------------- */

/* Moves queued requests into free slots (under s->mu). */
static void admit_locked(struct cellm_server *s)
{
    for (int i = 0; i < s->o.parallel && s->q_head; i++) {
        if (s->slots[i]) continue;
        struct srv_req *r = s->q_head;
        s->q_head = r->next;
        if (!s->q_head) s->q_tail = NULL;
        s->q_len--;
        r->next = NULL;
        if (r->cancelled) {
            s->m.req_cancelled++;
            release_locked(r);
            i--;
            continue;
        }
        struct cellm_error ce;
        r->slot = i;
        s->slots[i] = r;
        s->n_active++;
        r->seq = cellm_ctx_seq_new(s->ctx);
        if (r->seq < 0 || cellm_sampler_new(&r->p.sp, s->vocab, &r->smp, &ce) ||
            (s->tok && cellm_detok_new(s->tok, &r->detok, &ce))) {
            fail_locked(r, 500, r->seq < 0 ? "no free sequence in the context" : ce.msg);
            vacate_locked(s, r);
            continue;
        }
        for (int k = 0; k < r->p.n_prompt; k++)
            cellm_sampler_accept(r->smp, r->p.prompt[k]);
    }
}

static void reap_cancelled_locked(struct cellm_server *s)
{
    for (int i = 0; i < s->o.parallel; i++) {
        struct srv_req *r = s->slots[i];
        if (r && r->cancelled) {
            s->m.req_cancelled++;
            r->done = 1;
            vacate_locked(s, r);
        }
    }
    struct srv_req **pp = &s->q_head, *last = NULL;
    while (*pp) {
        struct srv_req *r = *pp;
        if (r->cancelled) {
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
            fail_locked(s->slots[i], 503, msg);
            vacate_locked(s, s->slots[i]);
        }
    while (s->q_head) {
        struct srv_req *r = s->q_head;
        s->q_head = r->next;
        fail_locked(r, 503, msg);
        release_locked(r);
    }
    s->q_tail = NULL;
    s->q_len = 0;
}

static void *sched_main(void *arg)
{
    struct cellm_server *s = arg;
    int cap = s->o.parallel + PREFILL_BUDGET;
    struct cellm_batch_item *items = malloc((size_t)cap * sizeof *items);
    int *owner = malloc((size_t)cap * sizeof *owner); /* slot of each logits row */
    int *finished = malloc((size_t)cap * sizeof *finished);
    int32_t *picks = malloc((size_t)cap * sizeof *picks); /* greedy steps: each row's pick */
    pthread_mutex_lock(&s->mu);
    if (!items || !owner || !finished || !picks) {
        s->stopping = 1;
        fail_all_locked(s, "out of memory");
    }
    for (;;) {
        for (;;) {
            reap_cancelled_locked(s);
            if (s->stopping) break;
            admit_locked(s);
            if (s->n_active) break;
            pthread_cond_wait(&s->sched_cv, &s->mu);
        }
        if (s->stopping) {
            fail_all_locked(s, "the server is shutting down");
            break;
        }
        pthread_mutex_unlock(&s->mu);

        /* one step: decode rows first, then prefill chunks */
        int n = 0, nw = 0, n_pre = 0, n_dec = 0;
        for (int i = 0; i < s->o.parallel; i++) {
            struct srv_req *r = s->slots[i];
            if (r && r->n_fed == r->p.n_prompt) {
                items[n++] = (struct cellm_batch_item){r->last, r->seq, 1};
                owner[nw++] = i;
                n_dec++;
            }
        }
        for (int i = 0; i < s->o.parallel && n_pre < PREFILL_BUDGET; i++) {
            struct srv_req *r = s->slots[i];
            if (!r || r->n_fed == r->p.n_prompt) continue;
            int take = r->p.n_prompt - r->n_fed;
            if (take > PREFILL_BUDGET - n_pre) take = PREFILL_BUDGET - n_pre;
            for (int k = 0; k < take; k++) {
                int last = r->n_fed + k + 1 == r->p.n_prompt;
                items[n++] = (struct cellm_batch_item){r->p.prompt[r->n_fed + k], r->seq, last};
                if (last) owner[nw++] = i;
            }
            r->n_fed += take;
            n_pre += take;
        }
        /* when every row that gets a token samples greedily, only the picks are fetched */
        int greedy = 1;
        for (int k = 0; k < nw; k++)
            greedy &= cellm_sampler_is_greedy(s->slots[owner[k]]->smp);
        double t0 = now_s();
        const float *logits = NULL;
        struct cellm_error ce;
        enum cellm_status st = greedy ? cellm_ctx_eval_argmax(s->ctx, items, n, picks, &ce)
                                      : cellm_ctx_eval(s->ctx, items, n, &logits, &ce);
        double dt = now_s() - t0;

        if (st) {
            pthread_mutex_lock(&s->mu);
            for (int k = 0; k < n; k++)
                for (int i = 0; i < s->o.parallel; i++)
                    if (s->slots[i] && s->slots[i]->seq == items[k].seq) {
                        fail_locked(s->slots[i], 500, ce.msg);
                        vacate_locked(s, s->slots[i]);
                    }
            continue; /* holds the lock, as the loop expects */
        }
        for (int k = 0; k < nw; k++) {
            struct srv_req *r = s->slots[owner[k]];
            int32_t tok = greedy
                              ? picks[k]
                              : cellm_sampler_sample(r->smp, logits + (size_t)k * (size_t)s->vocab);
            r->last = tok;
            finished[k] = emit(s, r, tok);
        }
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < nw; k++)
            if (finished[k] && s->slots[owner[k]]) vacate_locked(s, s->slots[owner[k]]);
        s->m.steps++;
        if (n_dec > s->m.max_rows_decode) s->m.max_rows_decode = n_dec;
        s->m.prefill_tok += (unsigned long long)n_pre;
        s->m.decode_tok += (unsigned long long)n_dec;
        s->m.prefill_s += dt * n_pre / n;
        s->m.decode_s += dt * n_dec / n;
    }
    pthread_mutex_unlock(&s->mu);
    free(items);
    free(owner);
    free(finished);
    free(picks);
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
    size_t cap = 4096;
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
             "cellm_decode_tokens_per_second %.3f\n",
             m.req_completions, m.req_chat, m.req_other, m.req_errors, m.req_rejected_full,
             m.req_cancelled, m.tokens_in, m.tokens_out, q, act, s->o.parallel, m.steps,
             m.max_rows_decode, m.prefill_tok, m.prefill_s, m.decode_tok, m.decode_s,
             m.prefill_s > 0 ? (double)m.prefill_tok / m.prefill_s : 0.0,
             m.decode_s > 0 ? (double)m.decode_tok / m.decode_s : 0.0);
    return t;
}
