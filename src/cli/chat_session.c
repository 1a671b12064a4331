/*
 * chat_session.c: a conversation in the KV cache (see chat_session.h).
 */
#include "chat_session.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common.h"

static int fail(struct cellm_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return 0;
}

int chat_session_init(struct chat_session *s, struct cellm_model *m, struct cellm_tokenizer *tok,
                      int max_ctx, struct cellm_error *err)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->tok = tok;
    s->think = 1;
    s->n_predict = 512;
    s->sp = cellm_sampler_params_default();
    int model_max = cellm_model_max_context(m);
    s->max_ctx = max_ctx > 0 && max_ctx < model_max ? max_ctx : model_max;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(m, &cp, &s->ctx, err)) return 0;
    s->seq = cellm_ctx_seq_new(s->ctx);
    return 1;
}

void chat_session_clear(struct chat_session *s)
{
    for (int i = 0; i < s->n_msgs; i++) {
        free(s->msgs[i].role);
        free(s->msgs[i].content);
    }
    s->n_msgs = 0;
    if (s->ctx) cellm_ctx_seq_truncate(s->ctx, s->seq, 0, NULL);
    s->n_cached = 0;
}

void chat_session_free(struct chat_session *s)
{
    chat_session_clear(s);
    free(s->msgs);
    free(s->cached);
    free(s->system);
    cellm_ctx_free(s->ctx);
    memset(s, 0, sizeof *s);
}

int chat_session_add(struct chat_session *s, const char *role, const char *content)
{
    if (s->n_msgs == s->cap_msgs) {
        int cap = s->cap_msgs ? 2 * s->cap_msgs : 8;
        struct chat_msg *m = realloc(s->msgs, (size_t)cap * sizeof *m);
        if (!m) return 0;
        s->msgs = m;
        s->cap_msgs = cap;
    }
    char *r = strdup(role), *c = strdup(content);
    if (!r || !c) {
        free(r);
        free(c);
        return 0;
    }
    s->msgs[s->n_msgs++] = (struct chat_msg){r, c};
    return 1;
}

int chat_session_set_system(struct chat_session *s, const char *text)
{
    free(s->system);
    s->system = text && *text ? strdup(text) : NULL;
    return !text || !*text || s->system;
}

/* The conversation through the template, as ids (malloc'd). */
static int render(struct chat_session *s, int32_t **ids, size_t *n, struct cellm_error *err)
{
    struct cellm_chat_message *m = malloc((size_t)(s->n_msgs + 1) * sizeof *m);
    if (!m) return fail(err, "out of memory");
    size_t k = 0;
    if (s->system) m[k++] = (struct cellm_chat_message){"system", s->system};
    for (int i = 0; i < s->n_msgs; i++)
        m[k++] = (struct cellm_chat_message){s->msgs[i].role, s->msgs[i].content};
    char *text = NULL;
    enum cellm_status st = cellm_tokenizer_chat(
        s->tok, m, k, 1, s->think ? NULL : "{\"enable_thinking\": false}", &text, err);
    free(m);
    if (st) return 0;
    /* the rendered template carries its own special tokens */
    st = cellm_tokenizer_encode(s->tok, text, strlen(text), 0, ids, n, err);
    free(text);
    return st == CELLM_OK;
}

static int cache_push(struct chat_session *s, int32_t id)
{
    if (s->n_cached == s->cap_cached) {
        int cap = s->cap_cached ? 2 * s->cap_cached : 256;
        int32_t *c = realloc(s->cached, (size_t)cap * sizeof *c);
        if (!c) return 0;
        s->cached = c;
        s->cap_cached = cap;
    }
    s->cached[s->n_cached++] = id;
    return 1;
}

/* Makes the cache hold ids[0..n) and returns the last position's logits: keeps the common
 * prefix, drops the rest, evaluates the suffix. */
static int prefill(struct chat_session *s, const int32_t *ids, int n, const float **logits,
                   struct chat_stats *st, struct cellm_error *err)
{
    int lcp = 0;
    while (lcp < n && lcp < s->n_cached && ids[lcp] == s->cached[lcp])
        lcp++;
    /* the last id must be evaluated again to have its logits */
    if (lcp == n) lcp = n - 1;
    enum cellm_status tr = cellm_ctx_seq_truncate(s->ctx, s->seq, lcp, err);
    if (tr == CELLM_ERR_UNSUPPORTED) { /* sliding-window caches: start over */
        lcp = 0;
        tr = cellm_ctx_seq_truncate(s->ctx, s->seq, 0, err);
    }
    if (tr) return 0;
    s->n_cached = lcp;
    st->prompt_cached = lcp;
    st->prompt_new = n - lcp;
    double t0 = cli_now();
    if (cellm_ctx_eval_seq(s->ctx, s->seq, ids + lcp, n - lcp, logits, err)) {
        /* the cache may hold part of the suffix now: forget all of it */
        cellm_ctx_seq_truncate(s->ctx, s->seq, lcp, NULL);
        return 0;
    }
    st->prefill_s = cli_now() - t0;
    for (int i = lcp; i < n; i++)
        if (!cache_push(s, ids[i])) return fail(err, "out of memory");
    return 1;
}

static int is_eos(const int32_t *a, int na, const int32_t *b, int nb, int32_t t)
{
    for (int i = 0; i < na; i++)
        if (a[i] == t) return 1;
    for (int i = 0; i < nb; i++)
        if (b[i] == t) return 1;
    return 0;
}

enum cellm_status chat_session_reply(struct chat_session *s, FILE *out, volatile sig_atomic_t *stop,
                                     struct chat_stats *st, struct cellm_error *err)
{
    memset(st, 0, sizeof *st);
    int32_t *ids = NULL, *gen = NULL;
    size_t n = 0;
    struct cellm_sampler *smp = NULL;
    struct cellm_detok *dt = NULL;
    enum cellm_status rc = CELLM_ERR_ARG;
    if (!render(s, &ids, &n, err)) goto done;
    if ((int)n >= s->max_ctx) {
        fail(err, "the conversation is %zu tokens, the context holds %d: /clear starts over", n,
             s->max_ctx);
        rc = CELLM_ERR_RANGE;
        goto done;
    }
    struct cellm_sampler_params sp = s->sp;
    sp.seed += (uint64_t)s->turns; /* a fresh draw each turn, reproducible from --seed */
    if (cellm_sampler_new(&sp, cellm_model_vocab(s->model), &smp, err) ||
        cellm_detok_new(s->tok, &dt, err))
        goto done;
    const float *logits;
    if (!prefill(s, ids, (int)n, &logits, st, err)) goto done;
    for (size_t i = 0; i < n; i++)
        cellm_sampler_accept(smp, ids[i]);
    int n_eos = 0, n_teos = 0;
    const int32_t *eos = cellm_model_eos(s->model, &n_eos);
    const int32_t *teos = cellm_tokenizer_eos(s->tok, &n_teos);
    gen = malloc(((size_t)s->n_predict + 1) * sizeof *gen);
    if (!gen) {
        fail(err, "out of memory");
        goto done;
    }
    int ng = 0;
    st->finish = "length";
    double t0 = cli_now();
    for (;;) {
        if (*stop) {
            st->finish = "interrupted";
            break;
        }
        int32_t t = cellm_sampler_sample(smp, logits);
        if (!s->ignore_eos && is_eos(eos, n_eos, teos, n_teos, t)) {
            st->finish = "stop";
            break;
        }
        cellm_sampler_accept(smp, t);
        gen[ng++] = t;
        const char *piece;
        if (cellm_detok_push(dt, t, &piece, err)) goto done;
        fputs(piece, out);
        fflush(out);
        if (ng >= s->n_predict) break;
        if (s->n_cached >= s->max_ctx) {
            st->finish = "context";
            break;
        }
        if (cellm_ctx_eval_seq(s->ctx, s->seq, &t, 1, &logits, err)) goto done;
        if (!cache_push(s, t)) {
            fail(err, "out of memory");
            goto done;
        }
    }
    st->generated = ng;
    st->decode_s = cli_now() - t0;
    s->turns++;
    /* the reply as text joins the history; the next turn's render re-tokenizes it and
     * reuses the cache as far as the ids agree */
    char *reply = NULL;
    if (cellm_tokenizer_decode(s->tok, gen, (size_t)ng, 1, &reply, err)) goto done;
    int ok = chat_session_add(s, "assistant", reply);
    free(reply);
    if (!ok) {
        fail(err, "out of memory");
        goto done;
    }
    rc = CELLM_OK;
done:
    free(ids);
    free(gen);
    cellm_sampler_free(smp);
    cellm_detok_free(dt);
    return rc;
}

int chat_session_save(const struct chat_session *s, const char *path, struct cellm_error *err)
{
    cJSON *root = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(root, "messages");
    int ok = root && list;
    if (ok && s->system) ok = cJSON_AddStringToObject(root, "system", s->system) != NULL;
    for (int i = 0; ok && i < s->n_msgs; i++) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddItemToArray(list, m) &&
             cJSON_AddStringToObject(m, "role", s->msgs[i].role) &&
             cJSON_AddStringToObject(m, "content", s->msgs[i].content);
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return fail(err, "out of memory");
    FILE *f = fopen(path, "w");
    ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f)) ok = 0;
    free(text);
    return ok ? 1 : fail(err, "%s: cannot write", path);
}

int chat_session_load(struct chat_session *s, const char *path, struct cellm_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - 1 - n, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) free(buf);
            buf = b;
        }
    }
    fclose(f);
    if (!buf) return fail(err, "out of memory");
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    free(buf);
    const cJSON *list =
        cJSON_IsArray(root) ? root : cJSON_GetObjectItemCaseSensitive(root, "messages");
    const cJSON *sys = cJSON_GetObjectItemCaseSensitive(root, "system"), *m;
    if (!cJSON_IsArray(list)) {
        cJSON_Delete(root);
        return fail(err, "%s: expected {\"messages\": [{\"role\": ..., \"content\": ...}]}", path);
    }
    cJSON_ArrayForEach(m, list)
    {
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
        if (!role || !c) {
            cJSON_Delete(root);
            return fail(err, "%s: every message needs a string \"role\" and \"content\"", path);
        }
    }
    /* the cache stays: the next turn reuses it as far as the loaded history matches */
    for (int i = 0; i < s->n_msgs; i++) {
        free(s->msgs[i].role);
        free(s->msgs[i].content);
    }
    s->n_msgs = 0;
    int ok = 1;
    char *system_text = cJSON_IsString(sys) ? sys->valuestring : NULL;
    cJSON_ArrayForEach(m, list)
    {
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "content"));
        if (!strcmp(role, "system") && !system_text)
            system_text = (char *)c;
        else if (strcmp(role, "system"))
            ok = ok && chat_session_add(s, role, c);
    }
    if (ok && cJSON_IsString(sys))
        ok = chat_session_set_system(s, sys->valuestring);
    else if (ok && system_text)
        ok = chat_session_set_system(s, system_text);
    cJSON_Delete(root);
    return ok ? 1 : fail(err, "out of memory");
}
