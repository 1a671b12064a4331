/*
 * api.c: the OpenAI request format (responses are api_out.c's).
 *
 * cellm_srv_parse turns a request body into a struct srv_req or an error that names the
 * offending field, in OpenAI's shape ({"error": {"message", "type", "param", "code"}}).
 * The rule is "honour it or refuse it": every field the engine implements is read and
 * type-checked, including the other servers' names for them (llama-server's n_predict,
 * repeat_penalty, repeat_last_n, n_probs, cache_prompt; vLLM's repetition_penalty,
 * min_tokens, ignore_eos); fields whose meaning cellm cannot deliver faithfully (echo,
 * best_of, logit_bias, mirostat, ...) are refused
 * by name with HTTP 400 rather than ignored. Metadata with no effect on the output (user,
 * metadata, store, service_tier) and unknown keys are ignored, as OpenAI itself does.
 *
 * Chat messages, tools and tool_choice are api_chat.c's.
 *
 * Extensions (documented in tests/server/README.md): `prompt_ids` (a list of token ids,
 * also accepted as the standard `prompt` given as a list of integers) lets a client skip
 * the tokenizer; `return_ids: true` adds `token_ids` to each choice (and to each streamed
 * chunk); `chat_template_kwargs` (an object) is passed to the chat template.
 *
 * Sampling defaults come from the checkpoint's generation_config.json (else greedy);
 * the request's fields override them.
 *
 * Bodies are untrusted: each is checked strictly before cJSON reads it (a repeated key,
 * data after the value, raw control characters, \u0000 and deep nesting are 400
 * invalid_json), and text is tokenized only up to the context size, stopping when the
 * request's cancel flag is set (this runs on http_wait.c's prep threads).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "base/json.h"
#include "srv.h"

void cellm_srv_errorf(struct srv_error *e, int status, const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = status >= 500 ? "server_error" : "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

char *cellm_srv_error_json(const struct srv_error *e)
{
    cJSON *root = cJSON_CreateObject(), *o = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(o, "message", e->msg);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "invalid_request_error");
    if (e->param[0])
        cJSON_AddStringToObject(o, "param", e->param);
    else
        cJSON_AddNullToObject(o, "param");
    if (e->code)
        cJSON_AddStringToObject(o, "code", e->code);
    else
        cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static const char *jtype(const cJSON *j)
{
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "null";
}

/* The member, or NULL when absent or JSON null. */
static const cJSON *get(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return j && !cJSON_IsNull(j) ? j : NULL;
}

static int bad_type(struct srv_error *e, const char *key, const char *want, const cJSON *j)
{
    cellm_srv_errorf(e, 400, key, "'%s' must be %s, got %s", key, want, jtype(j));
    e->code = "invalid_type";
    return -1;
}

int cellm_srv_bad_type(struct srv_error *e, const char *key, const char *want, const cJSON *j)
{
    return bad_type(e, key, want, j);
}

/* Reads a number field in [lo, hi]; 0 = absent, 1 = read, -1 = error. */
static int num_field(const cJSON *o, const char *key, double lo, double hi, double *out,
                     struct srv_error *e)
{
    const cJSON *j = get(o, key);
    if (!j) return 0;
    if (!cJSON_IsNumber(j)) return bad_type(e, key, "a number", j);
    double v = j->valuedouble;
    if (!isfinite(v) || v < lo || v > hi) {
        cellm_srv_errorf(e, 400, key, "'%s' is %g; expected a value in [%g, %g]", key, v, lo, hi);
        return -1;
    }
    *out = v;
    return 1;
}

static int int_field(const cJSON *o, const char *key, double lo, double hi, long long *out,
                     struct srv_error *e)
{
    const cJSON *j = get(o, key);
    if (!j) return 0;
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble))
        return bad_type(e, key, "an integer", j);
    double v = j->valuedouble;
    if (v < lo || v > hi) {
        cellm_srv_errorf(e, 400, key, "'%s' is %.0f; expected an integer in [%.0f, %.0f]", key, v,
                         lo, hi);
        return -1;
    }
    *out = (long long)v;
    return 1;
}

static int bool_field(const cJSON *o, const char *key, int *out, struct srv_error *e)
{
    const cJSON *j = get(o, key);
    if (!j) return 0;
    if (!cJSON_IsBool(j)) return bad_type(e, key, "a boolean", j);
    *out = cJSON_IsTrue(j);
    return 1;
}

static int refuse(struct srv_error *e, const char *key, const char *why)
{
    cellm_srv_errorf(e, 400, key, "'%s' is not supported by this server: %s", key, why);
    e->code = "unsupported_parameter";
    return -1;
}

int cellm_srv_refuse(struct srv_error *e, const char *key, const char *why)
{
    return refuse(e, key, why);
}

/* Fields cellm cannot honour faithfully: refused when present with a non-default value. */
static int check_unsupported(const cJSON *o, int chat, struct srv_error *e)
{
    const cJSON *j;
    /* constraints other than response_format, grammar, json_schema, guided_json and
     * guided_grammar (api_grammar.c) */
    static const char *const constrained[] = {"guided_regex",
                                              "guided_whitespace_pattern",
                                              "structured_outputs",
                                              "guided_decoding_backend",
                                              "regex",
                                              "ebnf"};
    for (size_t i = 0; i < sizeof constrained / sizeof *constrained; i++)
        if (get(o, constrained[i]))
            return refuse(e, constrained[i],
                          "use response_format, grammar (GBNF), json_schema or guided_json");
    /* samplers cellm does not have: refused unless they hold their "off" value */
    static const struct {
        const char *key;
        double off;
    } samplers[] = {{"mirostat", 0},       {"typical_p", 1},       {"tfs_z", 1},
                    {"dry_multiplier", 0}, {"xtc_probability", 0}, {"top_n_sigma", -1},
                    {"length_penalty", 1}, {"dynatemp_range", 0},  {"top_a", 0}};
    for (size_t i = 0; i < sizeof samplers / sizeof *samplers; i++)
        if ((j = get(o, samplers[i].key)) &&
            !(cJSON_IsNumber(j) && j->valuedouble == samplers[i].off))
            return refuse(e, samplers[i].key, "this sampler is not implemented");
    static const char *const other[] = {"prompt_logprobs",
                                        "stop_token_ids",
                                        "bad_words",
                                        "allowed_token_ids",
                                        "logits_processors",
                                        "use_beam_search",
                                        "n_keep",
                                        "n_indent",
                                        "lora",
                                        "image_data",
                                        "input_extra",
                                        "add_special"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        if ((j = get(o, other[i])) && !cJSON_IsFalse(j) &&
            !(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 0))
            return refuse(e, other[i], "not implemented by cellm");
    if ((j = get(o, "include_stop_str_in_output")) && !cJSON_IsFalse(j))
        return refuse(e, "include_stop_str_in_output", "stop strings are never included");
    if ((j = get(o, "skip_special_tokens")) && !cJSON_IsTrue(j))
        return refuse(e, "skip_special_tokens", "special tokens are always skipped in text");
    if (!chat && (j = get(o, "tools")) && !(cJSON_IsArray(j) && cJSON_GetArraySize(j) == 0))
        return refuse(e, "tools", "tools are for /v1/chat/completions");
    if (!chat && get(o, "tool_choice"))
        return refuse(e, "tool_choice", "tools are for /v1/chat/completions");
    if (get(o, "functions") || get(o, "function_call"))
        return refuse(e, get(o, "functions") ? "functions" : "function_call",
                      "function calling is not implemented");
    if ((j = get(o, "echo")) && !cJSON_IsFalse(j))
        return refuse(e, "echo", "the prompt is not echoed");
    if ((j = get(o, "best_of")) && !(cJSON_IsNumber(j) && j->valuedouble == 1))
        return refuse(e, "best_of", "only best_of = 1");
    if ((j = get(o, "suffix"))) return refuse(e, "suffix", "fill-in-the-middle is not implemented");
    if ((j = get(o, "logit_bias")) && !(cJSON_IsObject(j) && !j->child))
        return refuse(e, "logit_bias", "logit biases are not implemented");
    if ((j = get(o, "audio")) || (j = get(o, "modalities")) || (j = get(o, "prediction")))
        return refuse(e, j->string, "only text in, text out");
    return 0;
}

static int ids_from_array(struct cellm_server *s, const cJSON *a, const char *key,
                          struct srv_params *p, struct srv_error *e)
{
    int n = cJSON_GetArraySize(a);
    if (n == 0) {
        cellm_srv_errorf(e, 400, key, "'%s' is empty", key);
        return -1;
    }
    p->prompt = malloc((size_t)n * sizeof *p->prompt);
    if (!p->prompt) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a)
    {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble))
            return bad_type(e, key, "a list of integer token ids", x);
        if (x->valuedouble < 0 || x->valuedouble >= s->vocab) {
            cellm_srv_errorf(e, 400, key, "'%s'[%d] = %.0f is outside the vocabulary [0, %d)", key,
                             i, x->valuedouble, s->vocab);
            return -1;
        }
        p->prompt[i++] = (int32_t)x->valuedouble;
    }
    p->n_prompt = n;
    return 0;
}

static int no_tokenizer(struct srv_error *e, const char *key)
{
    cellm_srv_errorf(e, 400, key,
                     "'%s' needs a tokenizer, and this checkpoint has no tokenizer.json; send "
                     "token ids in 'prompt_ids' to /v1/completions",
                     key);
    return -1;
}

int cellm_srv_tokenize_text(struct cellm_server *s, const char *text, int add_special,
                            const char *key, struct srv_params *p, struct srv_error *e)
{
    int32_t *ids = NULL;
    size_t n = 0;
    struct cellm_error ce;
    /* a prompt of ctx_size tokens is refused below: no need to encode further than that */
    struct cellm_encode_opts eo = {.max_ids = (size_t)s->ctx_size, .cancel = p->cancel};
    enum cellm_status st =
        cellm_tokenizer_encode_opts(s->tok, text, strlen(text), add_special, &eo, &ids, &n, &ce);
    if (st == CELLM_ERR_RANGE && strstr(ce.msg, "more than")) {
        cellm_srv_errorf(e, 400, key,
                         "the prompt has more than %d tokens, which leaves no room in the "
                         "context of %d tokens",
                         s->ctx_size, s->ctx_size);
        e->code = "context_length_exceeded";
        return -1;
    }
    if (st == CELLM_ERR_CANCELLED) {
        cellm_srv_errorf(e, 503, key, "the tokenization was cancelled");
        e->code = "cancelled";
        return -1;
    }
    if (st) {
        cellm_srv_errorf(e, 400, key, "'%s' could not be tokenized: %s", key, ce.msg);
        return -1;
    }
    if (n == 0) {
        free(ids);
        cellm_srv_errorf(e, 400, key, "'%s' is empty", key);
        return -1;
    }
    if (n > 0x7fffffff) {
        free(ids);
        cellm_srv_errorf(e, 400, key, "'%s' is too long", key);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->vocab) {
            cellm_srv_errorf(e, 400, key,
                             "'%s' tokenizes to id %d, outside the model's vocabulary [0, %d)", key,
                             ids[i], s->vocab);
            free(ids);
            return -1;
        }
    p->prompt = ids;
    p->n_prompt = (int)n;
    return 0;
}

static int completion_prompt(struct cellm_server *s, const cJSON *o, struct srv_params *p,
                             struct srv_error *e)
{
    const cJSON *pi = get(o, "prompt_ids"), *pr = get(o, "prompt");
    if (pi && pr) {
        cellm_srv_errorf(e, 400, "prompt_ids", "give either 'prompt' or 'prompt_ids', not both");
        return -1;
    }
    if (pi) {
        if (!cJSON_IsArray(pi)) return bad_type(e, "prompt_ids", "a list of integer token ids", pi);
        return ids_from_array(s, pi, "prompt_ids", p, e);
    }
    if (!pr) {
        cellm_srv_errorf(e, 400, "prompt", "'prompt' is required");
        e->code = "missing_required_parameter";
        return -1;
    }
    if (cJSON_IsArray(pr)) {
        const cJSON *first = pr->child;
        if (first && cJSON_IsNumber(first)) return ids_from_array(s, pr, "prompt", p, e);
        if (cJSON_GetArraySize(pr) != 1)
            return refuse(e, "prompt", "exactly one prompt per request (a list of one string)");
        pr = first;
    }
    if (!cJSON_IsString(pr)) return bad_type(e, "prompt", "a string or a list of token ids", pr);
    if (!s->tok) return no_tokenizer(e, "prompt");
    return cellm_srv_tokenize_text(s, pr->valuestring, 1, "prompt", p, e);
}

static int stop_field(const cJSON *o, struct srv_params *p, struct srv_error *e)
{
    const cJSON *st = get(o, "stop");
    if (!st) return 0;
    int n = cJSON_IsArray(st) ? cJSON_GetArraySize(st) : 1;
    if (!cJSON_IsArray(st) && !cJSON_IsString(st))
        return bad_type(e, "stop", "a string or a list of strings", st);
    if (n > 16) {
        cellm_srv_errorf(e, 400, "stop", "'stop' has %d strings; at most 16", n);
        return -1;
    }
    p->stop = calloc((size_t)(n ? n : 1), sizeof *p->stop);
    if (!p->stop) {
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    const cJSON *x = cJSON_IsArray(st) ? st->child : st;
    for (; x; x = cJSON_IsArray(st) ? x->next : NULL) {
        if (!cJSON_IsString(x)) return bad_type(e, "stop", "a string or a list of strings", x);
        if (!x->valuestring[0]) continue; /* an empty stop string would end every request at once */
        if (!(p->stop[p->n_stop++] = strdup(x->valuestring))) {
            cellm_srv_errorf(e, 500, NULL, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int sampling_fields(const cJSON *o, struct srv_params *p, struct srv_error *e)
{
    double v;
    long long iv;
    int r;
    struct cellm_sampler_params *sp = &p->sp;
    if ((r = num_field(o, "temperature", 0, 2, &v, e)) < 0) return -1;
    if (r) sp->temperature = (float)v;
    if ((r = num_field(o, "top_p", 0, 1, &v, e)) < 0) return -1;
    if (r) sp->top_p = (float)v;
    if ((r = int_field(o, "top_k", 0, 1e9, &iv, e)) < 0) return -1;
    if (r) sp->top_k = (int)iv;
    if ((r = num_field(o, "min_p", 0, 1, &v, e)) < 0) return -1;
    if (r) sp->min_p = (float)v;
    if ((r = num_field(o, "presence_penalty", -2, 2, &v, e)) < 0) return -1;
    if (r) sp->presence_penalty = (float)v;
    if ((r = num_field(o, "frequency_penalty", -2, 2, &v, e)) < 0) return -1;
    if (r) sp->frequency_penalty = (float)v;
    if ((r = num_field(o, "repetition_penalty", 1e-6, 100, &v, e)) < 0) return -1;
    if (r) sp->repetition_penalty = (float)v;
    if ((r = num_field(o, "repeat_penalty", 1e-6, 100, &v, e)) < 0) return -1; /* llama.cpp */
    if (r) sp->repetition_penalty = (float)v;
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "penalty_last_n" : "repeat_last_n";
        if ((r = int_field(o, key, -1, 1e9, &iv, e)) < 0) return -1;
        if (r) sp->penalty_last_n = iv == 0 ? 0 : (int)iv;
    }
    if ((r = int_field(o, "seed", -9.2e18, 9.2e18, &iv, e)) < 0) return -1;
    if (r) sp->seed = (uint64_t)iv;
    return 0;
}

/* logprobs / top_logprobs (chat: a boolean and a count; completions: a count) and
 * llama-server's n_probs. */
static int logprob_fields(const cJSON *o, int chat, struct srv_params *p, struct srv_error *e)
{
    const cJSON *j = get(o, "logprobs");
    long long iv;
    int rc;
    if (chat) {
        int on = 0;
        if (bool_field(o, "logprobs", &on, e) < 0) return -1;
        if ((rc = int_field(o, "top_logprobs", 0, 20, &iv, e)) < 0) return -1;
        if (rc && !on) {
            cellm_srv_errorf(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
            return -1;
        }
        if (on) p->logprobs = rc ? (int)iv : 0;
    } else if (j) {
        if ((rc = int_field(o, "logprobs", 0, 20, &iv, e)) < 0) return -1;
        p->logprobs = (int)iv;
    }
    if ((rc = int_field(o, "n_probs", 0, 20, &iv, e)) < 0) return -1;
    if (rc && iv > 0) p->logprobs = (int)iv;
    return 0;
}

/* ignore_eos, min_tokens, cache_prompt. */
static int extra_fields(const cJSON *o, struct srv_params *p, struct srv_error *e)
{
    long long iv;
    int rc;
    if (bool_field(o, "ignore_eos", &p->ignore_eos, e) < 0) return -1;
    if (bool_field(o, "cache_prompt", &p->cache_prompt, e) < 0) return -1;
    if ((rc = int_field(o, "min_tokens", 0, 1e9, &iv, e)) < 0) return -1;
    if (rc) p->min_tokens = (int)iv;
    return 0;
}

int cellm_srv_parse(struct cellm_server *s, int chat, const char *body, size_t len,
                    struct srv_req **out, struct srv_error *e)
{
    return cellm_srv_parse_opts(s, chat, body, len, NULL, NULL, out, e);
}

int cellm_srv_parse_opts(struct cellm_server *s, int chat, const char *body, size_t len,
                         const _Atomic int *cancel, pthread_cond_t *wake, struct srv_req **out,
                         struct srv_error *e)
{
    *out = NULL;
    memset(e, 0, sizeof *e);
    /* cJSON takes the first of two equal keys, stops after the first value, accepts raw
     * control characters and cuts strings at \u0000: all refused here, by name */
    struct cellm_error je;
    if (cellm_json_check_strict(body, len, "the request body", 64, &je)) {
        cellm_srv_errorf(e, 400, NULL, "%s", je.msg);
        e->code = "invalid_json";
        return -1;
    }
    const char *endp = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(body, len, &endp, 0);
    if (!o) {
        size_t off = endp && endp >= body ? (size_t)(endp - body) : 0;
        cellm_srv_errorf(e, 400, NULL, "the request body is not valid JSON (error near byte %zu)",
                         off);
        e->code = "invalid_json";
        return -1;
    }
    struct srv_req *r = calloc(1, sizeof *r);
    if (!r) {
        cJSON_Delete(o);
        cellm_srv_errorf(e, 500, NULL, "out of memory");
        return -1;
    }
    pthread_cond_init(&r->cv, NULL);
    r->wake = wake;
    struct srv_params *p = &r->p;
    p->cancel = cancel;
    p->chat = chat;
    p->sp = s->sp_default;
    p->max_tokens = -1;
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        p->sp.seed = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^
                     (uint64_t)(uintptr_t)r;
        r->created = (long long)ts.tv_sec;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        r->t_start = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
    }
    const cJSON *j;
    long long iv;
    int rc;
    if (!cJSON_IsObject(o)) {
        cellm_srv_errorf(e, 400, NULL, "the request body must be a JSON object, got %s", jtype(o));
        goto fail;
    }
    if ((j = get(o, "model")) && !cJSON_IsString(j)) {
        bad_type(e, "model", "a string", j);
        goto fail;
    }
    if (check_unsupported(o, chat, e)) goto fail;
    p->n = 1;
    p->logprobs = -1;
    p->cache_prompt = 1;
    if ((rc = int_field(o, "n", 1, 64, &iv, e)) < 0) goto fail;
    if (rc) p->n = (int)iv;
    if (logprob_fields(o, chat, p, e) || extra_fields(o, p, e)) goto fail;
    if (bool_field(o, "stream", &p->stream, e) < 0 ||
        bool_field(o, "return_ids", &p->return_ids, e) < 0)
        goto fail;
    if ((j = get(o, "stream_options"))) {
        if (!cJSON_IsObject(j)) {
            bad_type(e, "stream_options", "an object", j);
            goto fail;
        }
        int iu = 0;
        if (bool_field(j, "include_usage", &iu, e) < 0) {
            snprintf(e->param, sizeof e->param, "stream_options.include_usage");
            goto fail;
        }
        p->include_usage = iu;
    }
    const char *max_key = "max_tokens";
    for (int k = 0; k < 3; k++) {
        const char *key = k == 0 ? "n_predict" : k == 1 ? "max_tokens" : "max_completion_tokens";
        if ((rc = int_field(o, key, k ? 1 : -1, 1e9, &iv, e)) < 0) goto fail;
        if (rc && iv == 0) {
            cellm_srv_errorf(e, 400, key, "'%s' is 0; expected -1 (no limit) or at least 1", key);
            goto fail;
        }
        if (rc) {
            p->max_tokens = (int)iv; /* n_predict -1: the rest of the context */
            max_key = key;
        }
    }
    if (stop_field(o, p, e) || sampling_fields(o, p, e)) goto fail;
    if (cellm_srv_grammar_fields(s, o, p, e)) goto fail;
    if (p->n_stop && !s->tok) {
        cellm_srv_errorf(e, 400, "stop",
                         "'stop' needs a tokenizer to match text, and this checkpoint has no "
                         "tokenizer.json");
        goto fail;
    }
    if ((chat ? cellm_srv_chat_prompt(s, o, p, e) : completion_prompt(s, o, p, e))) goto fail;
    /* the context: prompt plus generated tokens must fit */
    if (p->n_prompt >= s->ctx_size) {
        cellm_srv_errorf(e, 400, chat ? "messages" : "prompt",
                         "the prompt has %d tokens, which leaves no room in the context of %d "
                         "tokens",
                         p->n_prompt, s->ctx_size);
        e->code = "context_length_exceeded";
        goto fail;
    }
    if (p->max_tokens > 0 && p->n_prompt + p->max_tokens > s->ctx_size) {
        cellm_srv_errorf(e, 400, max_key,
                         "the prompt (%d tokens) plus max_tokens (%d) is %d tokens, beyond the "
                         "context of %d tokens",
                         p->n_prompt, p->max_tokens, p->n_prompt + p->max_tokens, s->ctx_size);
        e->code = "context_length_exceeded";
        goto fail;
    }
    if (p->max_tokens < 0) {
        /* OpenAI's defaults: 16 for legacy completions, the rest of the context for chat;
         * n_predict -1: the rest of the context */
        int room = s->ctx_size - p->n_prompt;
        p->max_tokens = chat || get(o, "n_predict") ? room : (room < 16 ? room : 16);
    }
    if (p->min_tokens > p->max_tokens) {
        cellm_srv_errorf(e, 400, "min_tokens", "'min_tokens' (%d) is more than max_tokens (%d)",
                         p->min_tokens, p->max_tokens);
        goto fail;
    }
    if (!(r->ch = calloc((size_t)p->n, sizeof *r->ch))) goto fail;
    for (int k = 0; k < p->n; k++) {
        r->ch[k].r = r;
        r->ch[k].index = k;
        r->ch[k].slot = -1;
    }
    cJSON_Delete(o);
    *out = r;
    return 0;
fail:
    if (!e->status) cellm_srv_errorf(e, 500, NULL, "out of memory");
    cJSON_Delete(o);
    cellm_srv_req_free(r);
    return -1;
}

/* ---- request log, tokenize ----------------------------------------------------------------- */

static cJSON *parse_object(const char *body, size_t len, struct srv_error *e)
{
    struct cellm_error je;
    if (cellm_json_check_strict(body, len, "the request body", 64, &je)) {
        cellm_srv_errorf(e, 400, NULL, "%s", je.msg);
        e->code = "invalid_json";
        return NULL;
    }
    cJSON *o = cJSON_ParseWithLength(body, len);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        cellm_srv_errorf(e, 400, NULL, "the request body must be a JSON object");
        e->code = "invalid_json";
        return NULL;
    }
    return o;
}

int cellm_srv_tokenize(struct cellm_server *s, const char *body, size_t len,
                       const _Atomic int *cancel, char **out, struct srv_error *e)
{
    memset(e, 0, sizeof *e);
    cJSON *o = parse_object(body, len, e);
    if (!o) return -1;
    int rc = -1, add_special = 0, with_pieces = 0;
    const cJSON *c = get(o, "content");
    struct srv_params p = {.cancel = cancel};
    if (!c || !cJSON_IsString(c)) {
        if (c)
            bad_type(e, "content", "a string", c);
        else
            cellm_srv_errorf(e, 400, "content", "'content' is required");
    } else if (bool_field(o, "add_special", &add_special, e) >= 0 &&
               bool_field(o, "with_pieces", &with_pieces, e) >= 0) {
        if (!s->tok) {
            no_tokenizer(e, "content");
        } else if (!c->valuestring[0] ||
                   !cellm_srv_tokenize_text(s, c->valuestring, add_special, "content", &p, e)) {
            cJSON *r = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(r, "tokens");
            for (int i = 0; i < p.n_prompt; i++) {
                if (!with_pieces) {
                    cJSON_AddItemToArray(a, cJSON_CreateNumber(p.prompt[i]));
                    continue;
                }
                cJSON *x = cJSON_CreateObject();
                char *t = cellm_srv_token_text(s, p.prompt[i]);
                cJSON_AddNumberToObject(x, "id", p.prompt[i]);
                cJSON_AddStringToObject(x, "piece", t ? t : "");
                free(t);
                cJSON_AddItemToArray(a, x);
            }
            *out = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            rc = *out ? 0 : -1;
            if (rc) cellm_srv_errorf(e, 500, NULL, "out of memory");
        }
    }
    free(p.prompt);
    cJSON_Delete(o);
    return rc;
}

int cellm_srv_detokenize(struct cellm_server *s, const char *body, size_t len, char **out,
                         struct srv_error *e)
{
    memset(e, 0, sizeof *e);
    cJSON *o = parse_object(body, len, e);
    if (!o) return -1;
    int rc = -1;
    const cJSON *t = get(o, "tokens");
    struct srv_params p = {0};
    if (!t || !cJSON_IsArray(t)) {
        if (t)
            bad_type(e, "tokens", "a list of integer token ids", t);
        else
            cellm_srv_errorf(e, 400, "tokens", "'tokens' is required");
    } else if (!s->tok) {
        no_tokenizer(e, "tokens");
    } else if (cJSON_GetArraySize(t) == 0 || !ids_from_array(s, t, "tokens", &p, e)) {
        char *text = NULL;
        struct cellm_error ce;
        if (cellm_tokenizer_decode(s->tok, p.prompt, (size_t)p.n_prompt, 0, &text, &ce)) {
            cellm_srv_errorf(e, 400, "tokens", "the ids could not be decoded: %s", ce.msg);
        } else {
            cJSON *r = cJSON_CreateObject();
            cJSON_AddStringToObject(r, "content", text);
            free(text);
            *out = cJSON_PrintUnformatted(r);
            cJSON_Delete(r);
            rc = *out ? 0 : -1;
            if (rc) cellm_srv_errorf(e, 500, NULL, "out of memory");
        }
    }
    free(p.prompt);
    cJSON_Delete(o);
    return rc;
}
