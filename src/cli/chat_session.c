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
                      int max_ctx, const struct cellm_ctx_params *cp, struct cellm_error *err)
{
    memset(s, 0, sizeof *s);
    s->model = m;
    s->tok = tok;
    s->think = 1;
    s->n_predict = 512;
    s->sp = cellm_sampler_params_default();
    int model_max = cellm_model_max_context(m);
    s->max_ctx = max_ctx > 0 && max_ctx < model_max ? max_ctx : model_max;
    s->cp = *cp;
    return cellm_ctx_new(m, &s->cp, &s->ctx, err) == CELLM_OK;
}

static void forget_messages(struct chat_session *s)
{
    for (int i = 0; i < s->n_msgs; i++) {
        free(s->msgs[i].role);
        free(s->msgs[i].content);
    }
    s->n_msgs = 0;
}

int chat_session_clear(struct chat_session *s, struct cellm_error *err)
{
    /* a new context is the way to empty its prefix cache: after /clear the first
     * question costs what it cost in a new session */
    struct cellm_ctx *ctx;
    if (cellm_ctx_new(s->model, &s->cp, &ctx, err)) return 0;
    cellm_ctx_free(s->ctx);
    s->ctx = ctx;
    forget_messages(s);
    return 1;
}

void chat_session_free(struct chat_session *s)
{
    forget_messages(s);
    free(s->msgs);
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

enum cellm_status chat_session_reply(struct chat_session *s, FILE *out, volatile sig_atomic_t *stop,
                                     struct chat_stats *st, struct cellm_error *err)
{
    memset(st, 0, sizeof *st);
    int32_t *ids = NULL, *reply_ids = NULL;
    size_t n = 0;
    struct cellm_gen *gen = NULL;
    enum cellm_status rc = CELLM_ERR_ARG;
    if (!render(s, &ids, &n, err)) goto done;
    if ((int)n >= s->max_ctx) {
        fail(err, "the conversation is %zu tokens, the context holds %d: /clear starts over", n,
             s->max_ctx);
        rc = CELLM_ERR_RANGE;
        goto done;
    }
    struct cellm_gen_params gp = cellm_gen_params_default();
    gp.max_tokens = s->n_predict;
    gp.ignore_eos = s->ignore_eos;
    gp.ctx_limit = s->max_ctx;
    gp.sampling = s->sp;
    gp.sampling.seed += (uint64_t)s->turns; /* a fresh draw each turn, reproducible from --seed */
    reply_ids = malloc(((size_t)s->n_predict + 1) * sizeof *reply_ids);
    if (!reply_ids) {
        fail(err, "out of memory");
        rc = CELLM_ERR_NOMEM;
        goto done;
    }
    if ((rc = cellm_gen_new(s->ctx, s->tok, ids, (int)n, &gp, &gen, err))) goto done;
    struct cellm_gen_out o = {0};
    int n_reply = 0, steps = 0;
    double t0 = cli_now(), t1 = t0;
    st->finish = "length";
    for (;;) {
        /* the first step prefills what the cache lacks and picks the first token */
        if ((rc = cellm_gen_step(s->ctx, &gen, 1, 0, NULL, err))) goto done;
        cellm_gen_output(gen, &o);
        if (steps++ == 0) {
            t1 = cli_now();
            st->prompt_cached = o.n_cached;
            st->prompt_new = o.n_prompt - o.n_cached;
        }
        fwrite(o.text, 1, o.text_len, out);
        fflush(out);
        for (int i = 0; i < o.n_ids && n_reply < s->n_predict; i++)
            reply_ids[n_reply++] = o.ids[i];
        if (o.done) break;
        if (*stop) {
            st->finish = "interrupted";
            break;
        }
    }
    if (o.error) {
        fail(err, "%s", o.error);
        rc = CELLM_ERR_FORMAT;
        goto done;
    }
    if (o.finish) /* the engine says "length" for a full context as for max_tokens */
        st->finish = !strcmp(o.finish, "stop") ? "stop"
                     : o.n_gen < s->n_predict  ? "context"
                                               : "length";
    st->generated = n_reply;
    st->prefill_s = t1 - t0;
    st->decode_s = cli_now() - t1;
    s->turns++;
    /* the reply as text joins the history; the next turn's render re-tokenizes it and
     * attaches the cached blocks as far as the ids agree */
    char *reply = NULL;
    if ((rc = cellm_tokenizer_decode(s->tok, reply_ids, (size_t)n_reply, 1, &reply, err)))
        goto done;
    int ok = chat_session_add(s, "assistant", reply);
    free(reply);
    if (!ok) {
        fail(err, "out of memory");
        rc = CELLM_ERR_NOMEM;
        goto done;
    }
    rc = CELLM_OK;
done:
    cellm_gen_free(gen); /* stores the conversation's blocks for the next turn */
    free(ids);
    free(reply_ids);
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
    forget_messages(s);
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
