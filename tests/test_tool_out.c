/*
 * test_tool_out.c: the response side of tool calls and reasoning (src/server/api_out.c),
 * on requests filled in by hand as the scheduler would leave them: message.tool_calls
 * with content null and finish_reason "tool_calls", reasoning_content, and the stream's
 * delta.reasoning_content and delta.tool_calls (a head with index, id, type, name and
 * empty arguments, then the arguments in the pieces they arrived in) in OpenAI's order,
 * a stream delivered in several pieces giving the same events as one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "server/srv.h"

static struct cellm_server server;

static struct srv_req *request(void)
{
    struct srv_req *r = calloc(1, sizeof *r);
    assert_non_null(r);
    pthread_cond_init(&r->cv, NULL);
    r->p.chat = 1;
    r->p.n = 1;
    r->p.logprobs = -1;
    r->p.parse_out = 1;
    r->p.tool_calls = 1;
    snprintf(r->id, sizeof r->id, "chatcmpl-test");
    r->ch = calloc(1, sizeof *r->ch);
    assert_non_null(r->ch);
    r->ch[0].r = r;
    return r;
}

static void set_text(char **p, size_t *len, size_t *cap, const char *t)
{
    free(*p);
    *p = strdup(t);
    *len = strlen(t);
    *cap = *len + 1;
}

static void add_call(struct srv_choice *c, const char *id, const char *name, const char *args)
{
    c->calls = realloc(c->calls, (size_t)(c->n_calls + 1) * sizeof *c->calls);
    assert_non_null(c->calls);
    struct srv_call *k = &c->calls[c->n_calls++];
    snprintf(k->id, sizeof k->id, "%s", id);
    k->name = strdup(name);
    k->args = strdup(args);
    k->args_len = strlen(args);
}

/* The scheduler's streamed call: more of the last call's arguments arrived. */
static void grow_args(struct srv_choice *c, const char *more)
{
    struct srv_call *k = &c->calls[c->n_calls - 1];
    k->args = realloc(k->args, k->args_len + strlen(more) + 1);
    assert_non_null(k->args);
    strcpy(k->args + k->args_len, more);
    k->args_len += strlen(more);
}

static void test_message(void **state)
{
    (void)state;
    struct srv_req *r = request();
    struct srv_choice *c = &r->ch[0];
    set_text(&c->text, &c->text_len, &c->text_cap, "\n");
    set_text(&c->reasoning, &c->reasoning_len, &c->reasoning_cap, "Need the weather.");
    add_call(c, "call_1", "get_weather", "{\"city\":\"Paris\"}");
    add_call(c, "call_2", "get_time", "{}");
    c->done = 1;
    c->finish = "tool_calls";
    r->done = 1;
    char *body = cellm_srv_response_json(&server, r);
    cJSON *o = cJSON_Parse(body);
    assert_non_null(o);
    cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0);
    cJSON *m = cJSON_GetObjectItem(ch, "message");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "content")));
    assert_string_equal(cJSON_GetObjectItem(m, "reasoning_content")->valuestring,
                        "Need the weather.");
    assert_string_equal(cJSON_GetObjectItem(ch, "finish_reason")->valuestring, "tool_calls");
    cJSON *tc = cJSON_GetObjectItem(m, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(tc), 2);
    cJSON *t0 = cJSON_GetArrayItem(tc, 0), *f0 = cJSON_GetObjectItem(t0, "function");
    assert_string_equal(cJSON_GetObjectItem(t0, "id")->valuestring, "call_1");
    assert_string_equal(cJSON_GetObjectItem(t0, "type")->valuestring, "function");
    assert_null(cJSON_GetObjectItem(t0, "index"));
    assert_string_equal(cJSON_GetObjectItem(f0, "name")->valuestring, "get_weather");
    assert_string_equal(cJSON_GetObjectItem(f0, "arguments")->valuestring, "{\"city\":\"Paris\"}");
    cJSON_Delete(o);
    free(body);
    /* with text beside the calls, content is that text */
    set_text(&c->text, &c->text_len, &c->text_cap, "Let me check.");
    body = cellm_srv_response_json(&server, r);
    o = cJSON_Parse(body);
    m = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "choices"), 0), "message");
    assert_string_equal(cJSON_GetObjectItem(m, "content")->valuestring, "Let me check.");
    cJSON_Delete(o);
    free(body);
    cellm_srv_req_free(r);
}

/* The data events of an SSE text, as one JSON array (the [DONE] event as the string). */
static void events(const char *sse, cJSON *out)
{
    for (const char *p = sse; (p = strstr(p, "data: "));) {
        p += 6;
        const char *e = strstr(p, "\n\n");
        assert_non_null(e);
        char *d = strndup(p, (size_t)(e - p));
        cJSON *j = strcmp(d, "[DONE]") ? cJSON_Parse(d) : cJSON_CreateString("[DONE]");
        assert_non_null(j);
        cJSON_AddItemToArray(out, j);
        free(d);
        p = e;
    }
}

static cJSON *delta(cJSON *ev)
{
    return cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(ev, "choices"), 0), "delta");
}

static void test_stream(void **state)
{
    (void)state;
    struct srv_req *r = request();
    struct srv_choice *c = &r->ch[0];
    struct srv_stream_pos pos;
    assert_int_equal(cellm_srv_stream_pos_init(&pos, 1), 0);
    cJSON *all = cJSON_CreateArray();
    /* first the thoughts */
    set_text(&c->reasoning, &c->reasoning_len, &c->reasoning_cap, "Need ");
    char *s = cellm_srv_stream_events(&server, r, &pos);
    events(s, all);
    free(s);
    set_text(&c->reasoning, &c->reasoning_len, &c->reasoning_cap, "Need weather.");
    /* a call streamed as it is generated: its head and the arguments so far */
    add_call(c, "call_1", "get_weather", "{\"city\":");
    assert_true(cellm_srv_stream_pending(r, &pos));
    s = cellm_srv_stream_events(&server, r, &pos);
    events(s, all);
    free(s);
    assert_false(cellm_srv_stream_pending(r, &pos));
    grow_args(c, "\"Paris\"}");
    c->done = 1;
    c->finish = "tool_calls";
    r->done = 1;
    assert_true(cellm_srv_stream_pending(r, &pos));
    s = cellm_srv_stream_events(&server, r, &pos);
    events(s, all);
    free(s);
    assert_false(cellm_srv_stream_pending(r, &pos) && !r->done);
    /* role; "Need "; "weather."; call head; the arguments in two pieces; finish; [DONE] */
    assert_int_equal(cJSON_GetArraySize(all), 8);
    assert_string_equal(cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 0)), "role")->valuestring,
                        "assistant");
    assert_string_equal(
        cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 1)), "reasoning_content")->valuestring,
        "Need ");
    assert_string_equal(
        cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 2)), "reasoning_content")->valuestring,
        "weather.");
    cJSON *h =
        cJSON_GetArrayItem(cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 3)), "tool_calls"), 0);
    assert_int_equal(cJSON_GetObjectItem(h, "index")->valueint, 0);
    assert_string_equal(cJSON_GetObjectItem(h, "id")->valuestring, "call_1");
    assert_string_equal(cJSON_GetObjectItem(h, "type")->valuestring, "function");
    cJSON *hf = cJSON_GetObjectItem(h, "function");
    assert_string_equal(cJSON_GetObjectItem(hf, "name")->valuestring, "get_weather");
    assert_string_equal(cJSON_GetObjectItem(hf, "arguments")->valuestring, "");
    cJSON *a =
        cJSON_GetArrayItem(cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 4)), "tool_calls"), 0);
    assert_int_equal(cJSON_GetObjectItem(a, "index")->valueint, 0);
    assert_null(cJSON_GetObjectItem(a, "id"));
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(a, "function"), "arguments")->valuestring,
        "{\"city\":");
    a = cJSON_GetArrayItem(cJSON_GetObjectItem(delta(cJSON_GetArrayItem(all, 5)), "tool_calls"), 0);
    assert_int_equal(cJSON_GetObjectItem(a, "index")->valueint, 0);
    assert_null(cJSON_GetObjectItem(a, "id"));
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(a, "function"), "arguments")->valuestring,
        "\"Paris\"}");
    cJSON *fin = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(all, 6), "choices"), 0);
    assert_string_equal(cJSON_GetObjectItem(fin, "finish_reason")->valuestring, "tool_calls");
    assert_string_equal(cJSON_GetArrayItem(all, 7)->valuestring, "[DONE]");
    cJSON_Delete(all);
    cellm_srv_stream_pos_free(&pos);
    cellm_srv_req_free(r);
}

int main(void)
{
    server.o.model_name = "m";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_message),
        cmocka_unit_test(test_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
