/*
 * test_adapt.c: unit tests of the /v1/responses and /v1/messages adapters
 * (src/server/api_adapt.c, api_responses.c, api_messages.c) on canned JSON.
 *
 * Requests: a body in, the equivalent chat-completions request out, compared whole with
 * the expected object (instructions and system blocks, input items with function calls and
 * their outputs, reasoning items, tool_use / tool_result blocks, tools, tool_choice,
 * text.format, thinking, stream options), and every refusal naming its field. Results: a
 * chat.completion with reasoning, text and tool calls into the response object and the
 * message object (items, stop reasons, usage with cached tokens). Streams: a chat stream
 * with reasoning, text and two tool calls into the exact event sequence of each API, with
 * sequence numbers, and the final object of a stream equal to the converted non-streamed
 * result of the same output. Tool calls are converted here although the chat path refuses
 * them until it implements them: these tests hold the converters to the OpenAI shapes the
 * chat path will produce.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "server/adapt.h"

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    if (!j) fail_msg("bad JSON in the test: %s", s);
    return j;
}

static void expect_json(const cJSON *got, const char *want)
{
    cJSON *w = parse(want);
    if (!cJSON_Compare(got, w, 1)) {
        char *g = cJSON_PrintUnformatted(got);
        char *ws = cJSON_PrintUnformatted(w);
        print_error("got:  %s\nwant: %s\n", g, ws);
        free(g);
        free(ws);
        cJSON_Delete(w);
        fail();
    }
    cJSON_Delete(w);
}

static void responses_expect(const char *body, const char *want)
{
    cJSON *in = parse(body), *echo = NULL;
    struct srv_error e = {0};
    cJSON *chat = cellm_srv_responses_request(in, NULL, NULL, &echo, &e);
    if (!chat) fail_msg("refused: %s (%s)", e.msg, e.param);
    expect_json(chat, want);
    cJSON_Delete(chat);
    cJSON_Delete(echo);
    cJSON_Delete(in);
}

static void messages_expect(const char *body, int count, const char *want)
{
    cJSON *in = parse(body);
    struct srv_error e = {0};
    cJSON *chat = cellm_srv_messages_request(in, count, &e);
    if (!chat) fail_msg("refused: %s (%s)", e.msg, e.param);
    expect_json(chat, want);
    cJSON_Delete(chat);
    cJSON_Delete(in);
}

static void refused(enum srv_api api, const char *body, const char *param)
{
    cJSON *in = parse(body), *echo = NULL;
    struct srv_error e = {0};
    cJSON *chat = api == SRV_API_MESSAGES ? cellm_srv_messages_request(in, 0, &e)
                                          : cellm_srv_responses_request(in, NULL, NULL, &echo, &e);
    if (chat) fail_msg("accepted: %s", body);
    assert_int_equal(e.status, 400);
    if (strcmp(e.param, param))
        fail_msg("%s: param '%s', expected '%s' (%s)", body, e.param, param, e.msg);
    assert_non_null(strstr(e.msg, param));
    cJSON_Delete(in);
}

/* ---- requests ---------------------------------------------------------------------------- */

static void test_responses_text(void **state)
{
    (void)state;
    responses_expect(
        "{\"model\":\"m\",\"instructions\":\"be brief\",\"input\":\"hello\","
        "\"max_output_tokens\":9,\"temperature\":0,\"top_p\":0.5,\"stream\":true,\"store\":true,"
        "\"metadata\":{\"a\":\"b\"},\"text\":{\"format\":{\"type\":\"text\"}},\"seed\":3}",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":\"hello\"}],\"model\":\"m\",\"max_tokens\":9,"
        "\"temperature\":0,\"top_p\":0.5,\"stream\":true,\"stream_options\":{\"include_usage\":"
        "true},\"response_format\":{\"type\":\"text\"},\"seed\":3}");
}

static void test_responses_items(void **state)
{
    (void)state;
    responses_expect(
        "{\"input\":["
        "{\"role\":\"developer\",\"content\":\"sys\"},"
        "{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\","
        "\"text\":\"wea\"},{\"type\":\"input_text\",\"text\":\"ther?\"}]},"
        "{\"type\":\"reasoning\",\"id\":\"rs_1\",\"summary\":[],\"content\":[{\"type\":"
        "\"reasoning_text\",\"text\":\"think\"}]},"
        "{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\","
        "\"text\":\"checking\"}]},"
        "{\"type\":\"function_call\",\"call_id\":\"c1\",\"name\":\"get\",\"arguments\":"
        "\"{\\\"city\\\":\\\"Oslo\\\"}\"},"
        "{\"type\":\"function_call\",\"call_id\":\"c2\",\"name\":\"get\",\"arguments\":\"{}\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":\"rain\"},"
        "{\"type\":\"function_call_output\",\"call_id\":\"c2\",\"output\":[{\"type\":"
        "\"input_text\",\"text\":\"sun\"}]}],"
        "\"tools\":[{\"type\":\"function\",\"name\":\"get\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"},\"strict\":true}],"
        "\"tool_choice\":{\"type\":\"function\",\"name\":\"get\"},\"parallel_tool_calls\":false,"
        "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"w\",\"schema\":{\"type\":"
        "\"object\"},\"strict\":true}},\"reasoning\":{\"effort\":\"low\"}}",
        "{\"messages\":["
        "{\"role\":\"developer\",\"content\":\"sys\"},"
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"reasoning_content\":\"think\",\"content\":\"checking\","
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get\","
        "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},{\"id\":\"c2\",\"type\":\"function\","
        "\"function\":{\"name\":\"get\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"rain\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"sun\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"},\"strict\":true}}],"
        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get\"}},"
        "\"parallel_tool_calls\":false,"
        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"w\","
        "\"schema\":{\"type\":\"object\"},\"strict\":true}},\"reasoning_effort\":\"low\"}");
}

static void test_responses_refused(void **state)
{
    (void)state;
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"previous_response_id\":\"r\"}",
            "previous_response_id");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"conversation\":\"c\"}", "conversation");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"frobnicate\":1}", "frobnicate");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"background\":true}", "background");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"truncation\":\"auto\"}", "truncation");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"include\":[\"reasoning.encrypted_content\"]}",
            "include");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"top_logprobs\":2}", "top_logprobs");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"tools\":[{\"type\":\"web_search\"}]}",
            "tools[0]");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"tool_choice\":{\"type\":\"file_search\"}}",
            "tool_choice");
    refused(SRV_API_RESPONSES, "{\"input\":\"x\",\"text\":{\"verbosity\":\"high\"}}",
            "text.verbosity");
    refused(SRV_API_RESPONSES, "{\"input\":[{\"type\":\"item_reference\",\"id\":\"m\"}]}",
            "input[0]");
    refused(SRV_API_RESPONSES,
            "{\"input\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_image\"}]}]}",
            "input[0].content");
    refused(SRV_API_RESPONSES, "{\"input\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
            "input[0].role");
    refused(SRV_API_RESPONSES, "{\"model\":\"m\"}", "input");
}

static void test_messages_request(void **state)
{
    (void)state;
    messages_expect(
        "{\"model\":\"claude\",\"max_tokens\":64,\"system\":[{\"type\":\"text\",\"text\":\"be "
        "\",\"cache_control\":{\"type\":\"ephemeral\"}},{\"type\":\"text\",\"text\":\"kind\"}],"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"hm\","
        "\"signature\":\"s\"},{\"type\":\"text\",\"text\":\"checking\"},{\"type\":\"tool_use\","
        "\"id\":\"t1\",\"name\":\"get\",\"input\":{\"city\":\"Oslo\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"no such city\"}],\"is_error\":true},"
        "{\"type\":\"text\",\"text\":\"and now?\"}]}],"
        "\"tools\":[{\"name\":\"get\",\"description\":\"d\",\"input_schema\":{\"type\":"
        "\"object\"}}],\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
        "\"stop_sequences\":[\"END\"],\"temperature\":0.5,\"top_k\":4,\"stream\":true,"
        "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024},\"metadata\":{\"user_id\":"
        "\"u\"}}",
        0,
        "{\"messages\":["
        "{\"role\":\"system\",\"content\":\"be kind\"},"
        "{\"role\":\"user\",\"content\":\"weather?\"},"
        "{\"role\":\"assistant\",\"content\":\"checking\",\"reasoning_content\":\"hm\","
        "\"tool_calls\":[{\"id\":\"t1\",\"type\":\"function\",\"function\":{\"name\":\"get\","
        "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"t1\",\"content\":\"Error: no such city\"},"
        "{\"role\":\"user\",\"content\":\"and now?\"}],"
        "\"model\":\"claude\",\"max_tokens\":64,"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"}}}],\"tool_choice\":\"required\","
        "\"parallel_tool_calls\":false,\"stop\":[\"END\"],\"temperature\":0.5,\"top_k\":4,"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"chat_template_kwargs\":{\"enable_thinking\":true}}");
    /* count_tokens: max_tokens optional, stream dropped */
    messages_expect("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                    "\"tool_choice\":{\"type\":\"tool\",\"name\":\"f\"}}",
                    1,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"model\":\"m\","
                    "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}");
}

static void test_messages_refused(void **state)
{
    (void)state;
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    refused(SRV_API_MESSAGES, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
            "max_tokens");
    snprintf(b, sizeof b, "{\"max_tokens\":5,%s,\"frobnicate\":1}", m);
    refused(SRV_API_MESSAGES, b, "frobnicate");
    snprintf(b, sizeof b,
             "{\"max_tokens\":5,%s,\"tools\":[{\"type\":\"bash_20250124\",\"name\":"
             "\"bash\"}]}",
             m);
    refused(SRV_API_MESSAGES, b, "tools[0]");
    snprintf(b, sizeof b, "{\"max_tokens\":5,%s,\"tool_choice\":{\"type\":\"sometimes\"}}", m);
    refused(SRV_API_MESSAGES, b, "tool_choice");
    snprintf(b, sizeof b, "{\"max_tokens\":5,%s,\"thinking\":{\"type\":\"adaptive\"}}", m);
    refused(SRV_API_MESSAGES, b, "thinking");
    snprintf(b, sizeof b, "{\"max_tokens\":5,%s,\"mcp_servers\":[]}", m);
    refused(SRV_API_MESSAGES, b, "mcp_servers");
    refused(SRV_API_MESSAGES,
            "{\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\","
            "\"source\":{}}]}]}",
            "messages[0].content[0]");
    refused(SRV_API_MESSAGES,
            "{\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
            "\"tool_result\",\"tool_use_id\":\"x\"}]}]}",
            "messages[0].content[0]");
    refused(SRV_API_MESSAGES,
            "{\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}",
            "messages[0].role");
    refused(SRV_API_MESSAGES, "{\"max_tokens\":5}", "messages");
}

/* ---- results ------------------------------------------------------------------------------- */

static const char *const chat_tools =
    "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,"
    "\"message\":{\"role\":\"assistant\",\"content\":\"Let me look.\",\"reasoning_content\":"
    "\"need data\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":"
    "{\"name\":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},{\"id\":\"call_b\","
    "\"type\":\"function\",\"function\":{\"name\":\"time\",\"arguments\":\"{}\"}}]},"
    "\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":"
    "7,\"total_tokens\":27,\"prompt_tokens_details\":{\"cached_tokens\":16}}}";

static const struct srv_adapt_meta meta = {
    .id = "resp_abc", .model = "tiny", .created = 1700000000, .n_prompt = 20, .n_cached = 16};

static void test_results(void **state)
{
    (void)state;
    cJSON *chat = parse(chat_tools);
    cJSON *r = cellm_srv_adapt_result(SRV_API_RESPONSES, chat, &meta);
    expect_json(
        cJSON_GetObjectItem(r, "output"),
        "[{\"type\":\"reasoning\",\"id\":\"rs_abc_0\",\"summary\":[],\"content\":[{\"type\":"
        "\"reasoning_text\",\"text\":\"need data\"}]},"
        "{\"type\":\"message\",\"id\":\"msg_abc_1\",\"status\":\"completed\",\"role\":"
        "\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"Let me look.\","
        "\"annotations\":[],\"logprobs\":[]}]},"
        "{\"type\":\"function_call\",\"id\":\"fc_abc_2\",\"status\":\"completed\","
        "\"call_id\":\"call_a\",\"name\":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"},"
        "{\"type\":\"function_call\",\"id\":\"fc_abc_3\",\"status\":\"completed\","
        "\"call_id\":\"call_b\",\"name\":\"time\",\"arguments\":\"{}\"}]");
    expect_json(cJSON_GetObjectItem(r, "usage"),
                "{\"input_tokens\":20,\"input_tokens_details\":{\"cached_tokens\":16},"
                "\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":0},"
                "\"total_tokens\":27}");
    assert_string_equal(cJSON_GetObjectItem(r, "status")->valuestring, "completed");
    assert_string_equal(cJSON_GetObjectItem(r, "object")->valuestring, "response");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(r, "store")));
    cJSON_Delete(r);

    struct srv_adapt_meta mm = meta;
    mm.id = "msg_abc";
    r = cellm_srv_adapt_result(SRV_API_MESSAGES, chat, &mm);
    expect_json(r, "{\"id\":\"msg_abc\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
                   "\"tiny\",\"content\":["
                   "{\"type\":\"thinking\",\"thinking\":\"need data\",\"signature\":\"\"},"
                   "{\"type\":\"text\",\"text\":\"Let me look.\"},"
                   "{\"type\":\"tool_use\",\"id\":\"call_a\",\"name\":\"get\",\"input\":"
                   "{\"city\":\"Oslo\"}},"
                   "{\"type\":\"tool_use\",\"id\":\"call_b\",\"name\":\"time\",\"input\":{}}],"
                   "\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{"
                   "\"input_tokens\":4,\"cache_creation_input_tokens\":0,"
                   "\"cache_read_input_tokens\":16,\"output_tokens\":7}}");
    cJSON_Delete(r);
    cJSON_Delete(chat);

    /* the token limit; a stop sequence */
    chat = parse("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"abc\"},"
                 "\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":3,"
                 "\"completion_tokens\":2}}");
    r = cellm_srv_adapt_result(SRV_API_RESPONSES, chat, &meta);
    assert_string_equal(cJSON_GetObjectItem(r, "status")->valuestring, "incomplete");
    expect_json(cJSON_GetObjectItem(r, "incomplete_details"), "{\"reason\":\"max_output_tokens\"}");
    cJSON_Delete(r);
    r = cellm_srv_adapt_result(SRV_API_MESSAGES, chat, &mm);
    assert_string_equal(cJSON_GetObjectItem(r, "stop_reason")->valuestring, "max_tokens");
    cJSON_Delete(r);
    cJSON_Delete(chat);
    chat = parse("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                 "\"finish_reason\":\"stop\"}]}");
    mm.stop_sequence = "END";
    r = cellm_srv_adapt_result(SRV_API_MESSAGES, chat, &mm);
    assert_string_equal(cJSON_GetObjectItem(r, "stop_reason")->valuestring, "stop_sequence");
    assert_string_equal(cJSON_GetObjectItem(r, "stop_sequence")->valuestring, "END");
    expect_json(cJSON_GetObjectItem(r, "content"), "[{\"type\":\"text\",\"text\":\"\"}]");
    cJSON_Delete(r);
    mm.stop_sequence = NULL;
    r = cellm_srv_adapt_result(SRV_API_MESSAGES, chat, &mm);
    assert_string_equal(cJSON_GetObjectItem(r, "stop_reason")->valuestring, "end_turn");
    cJSON_Delete(r);
    cJSON_Delete(chat);
}

/* ---- streams ------------------------------------------------------------------------------- */

/* The chat stream of chat_tools' output, as api_out.c and a tool-call parser emit it. */
static const char *const chunks[] = {
    "{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"need "
    "\"},\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"data\"},\"finish_reason\":null}]"
    "}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Let me\"},\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\" look.\"},\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
    "\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"\"}}]},"
    "\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"city\\\":\"}}]},\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"\\\"Oslo\\\"}\"}}]},\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
    "\"type\":\"function\",\"function\":{\"name\":\"time\",\"arguments\":\"{}\"}}]},"
    "\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}",
    "{\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":7,\"total_tokens\":27,"
    "\"prompt_tokens_details\":{\"cached_tokens\":16}}}",
    NULL, /* [DONE] */
};

/* Runs the chunks through a stream of api; returns the events (names in *names, joined by
 * spaces) as a JSON array of their data objects. */
static cJSON *run_stream(enum srv_api api, const struct srv_adapt_meta *m, char *names, size_t cap)
{
    struct srv_adapt_stream *st = cellm_srv_adapt_stream_new(api);
    struct srv_buf b = {0};
    for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
        cJSON *c = chunks[i] ? parse(chunks[i]) : NULL;
        cellm_srv_adapt_stream_feed(st, m, c, &b);
        cJSON_Delete(c);
    }
    assert_false(b.oom);
    cellm_srv_adapt_stream_free(st);
    cJSON *evs = cJSON_CreateArray();
    names[0] = 0;
    for (char *p = b.p; p && *p;) {
        assert_int_equal(strncmp(p, "event: ", 7), 0);
        char *nl = strchr(p, '\n');
        assert_non_null(nl);
        *nl = 0;
        char *data = nl + 1;
        assert_int_equal(strncmp(data, "data: ", 6), 0);
        char *end = strstr(data, "\n\n");
        assert_non_null(end);
        *end = 0;
        cJSON *d = parse(data + 6);
        /* the SSE event name is the data's type */
        assert_string_equal(cJSON_GetObjectItem(d, "type")->valuestring, p + 7);
        if (names[0]) strncat(names, " ", cap - strlen(names) - 1);
        strncat(names, p + 7, cap - strlen(names) - 1);
        cJSON_AddItemToArray(evs, d);
        p = end + 2;
    }
    cellm_srv_buf_free(&b);
    return evs;
}

static void test_stream_responses(void **state)
{
    (void)state;
    char names[4096];
    cJSON *evs = run_stream(SRV_API_RESPONSES, &meta, names, sizeof names);
    assert_string_equal(
        names, "response.created response.in_progress "
               "response.output_item.added response.content_part.added "
               "response.reasoning_text.delta response.reasoning_text.delta "
               "response.reasoning_text.done response.content_part.done response.output_item.done "
               "response.output_item.added response.content_part.added "
               "response.output_text.delta response.output_text.delta "
               "response.output_text.done response.content_part.done response.output_item.done "
               "response.output_item.added response.function_call_arguments.delta "
               "response.function_call_arguments.delta response.function_call_arguments.done "
               "response.output_item.done "
               "response.output_item.added response.function_call_arguments.delta "
               "response.function_call_arguments.done response.output_item.done "
               "response.completed");
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, evs)
    {
        assert_int_equal(cJSON_GetObjectItem(e, "sequence_number")->valueint, i);
        i++;
    }
    /* the text deltas name their item */
    cJSON *d = cJSON_GetArrayItem(evs, 11);
    assert_string_equal(cJSON_GetObjectItem(d, "delta")->valuestring, "Let me");
    assert_string_equal(cJSON_GetObjectItem(d, "item_id")->valuestring, "msg_abc_1");
    assert_int_equal(cJSON_GetObjectItem(d, "output_index")->valueint, 1);
    /* the arguments, whole, at .done */
    d = cJSON_GetArrayItem(evs, 19);
    assert_string_equal(cJSON_GetObjectItem(d, "arguments")->valuestring, "{\"city\":\"Oslo\"}");
    assert_string_equal(cJSON_GetObjectItem(d, "name")->valuestring, "get");
    /* the final response equals the non-streamed conversion of the same output */
    cJSON *chat = parse(chat_tools);
    cJSON *whole = cellm_srv_adapt_result(SRV_API_RESPONSES, chat, &meta);
    cJSON *fin =
        cJSON_GetObjectItem(cJSON_GetArrayItem(evs, cJSON_GetArraySize(evs) - 1), "response");
    assert_true(cJSON_Compare(fin, whole, 1));
    cJSON_Delete(whole);
    cJSON_Delete(chat);
    cJSON_Delete(evs);
}

static void test_stream_messages(void **state)
{
    (void)state;
    char names[4096];
    struct srv_adapt_meta mm = meta;
    mm.id = "msg_abc";
    cJSON *evs = run_stream(SRV_API_MESSAGES, &mm, names, sizeof names);
    assert_string_equal(names, "message_start ping "
                               "content_block_start content_block_delta content_block_delta "
                               "content_block_stop "
                               "content_block_start content_block_delta content_block_delta "
                               "content_block_stop "
                               "content_block_start content_block_delta content_block_delta "
                               "content_block_stop "
                               "content_block_start content_block_delta content_block_stop "
                               "message_delta message_stop");
    expect_json(cJSON_GetArrayItem(evs, 3),
                "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                "\"thinking_delta\",\"thinking\":\"need \"}}");
    expect_json(cJSON_GetArrayItem(evs, 7),
                "{\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\","
                "\"text\":\"Let me\"}}");
    expect_json(cJSON_GetArrayItem(evs, 10),
                "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
                "\"tool_use\",\"id\":\"call_a\",\"name\":\"get\",\"input\":{}}}");
    expect_json(cJSON_GetArrayItem(evs, 11),
                "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
                "\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}");
    expect_json(cJSON_GetArrayItem(evs, 17),
                "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
                "\"stop_sequence\":null},\"usage\":{\"input_tokens\":4,"
                "\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":16,"
                "\"output_tokens\":7}}");
    cJSON *start = cJSON_GetObjectItem(cJSON_GetArrayItem(evs, 0), "message");
    assert_string_equal(cJSON_GetObjectItem(start, "id")->valuestring, "msg_abc");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(start, "content")), 0);
    cJSON_Delete(evs);
}

/* A stream with no output still has one (empty) text item; an error ends it. */
static void test_stream_empty_and_error(void **state)
{
    (void)state;
    for (int api = SRV_API_RESPONSES; api <= SRV_API_MESSAGES; api++) {
        struct srv_adapt_stream *st = cellm_srv_adapt_stream_new((enum srv_api)api);
        struct srv_buf b = {0};
        cJSON *c = parse("{\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}");
        cellm_srv_adapt_stream_feed(st, &meta, c, &b);
        cellm_srv_adapt_stream_feed(st, &meta, NULL, &b);
        cJSON_Delete(c);
        assert_non_null(strstr(b.p, api == SRV_API_MESSAGES
                                        ? "\"type\":\"text\",\"text\":\"\""
                                        : "\"type\":\"output_text\",\"text\":\"\""));
        assert_non_null(strstr(b.p, api == SRV_API_MESSAGES ? "event: message_stop"
                                                            : "event: response.completed"));
        cellm_srv_adapt_stream_free(st);
        cellm_srv_buf_free(&b);

        st = cellm_srv_adapt_stream_new((enum srv_api)api);
        c = parse("{\"error\":{\"message\":\"server is shutting down\",\"type\":\"server_error\","
                  "\"param\":null,\"code\":null}}");
        cellm_srv_adapt_stream_feed(st, &meta, c, &b);
        cellm_srv_adapt_stream_feed(st, &meta, NULL, &b); /* nothing after the error */
        cJSON_Delete(c);
        assert_int_equal(strncmp(b.p, "event: error\ndata: ", 19), 0);
        assert_null(strstr(b.p + 1, "event: "));
        assert_non_null(strstr(b.p, "server is shutting down"));
        if (api == SRV_API_MESSAGES) assert_non_null(strstr(b.p, "\"type\":\"api_error\""));
        cellm_srv_adapt_stream_free(st);
        cellm_srv_buf_free(&b);
    }
}

static void test_error_shape(void **state)
{
    (void)state;
    struct srv_error e = {0};
    cellm_srv_errorf(&e, 401, NULL, "missing or wrong API key");
    char *t = cellm_srv_adapt_error_json(SRV_API_MESSAGES, &e);
    cJSON *j = parse(t);
    expect_json(j, "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
                   "\"message\":\"missing or wrong API key\"}}");
    cJSON_Delete(j);
    free(t);
    assert_string_equal(cellm_srv_messages_error_type(400), "invalid_request_error");
    assert_string_equal(cellm_srv_messages_error_type(404), "not_found_error");
    assert_string_equal(cellm_srv_messages_error_type(503), "overloaded_error");
    assert_string_equal(cellm_srv_messages_error_type(500), "api_error");
    t = cellm_srv_adapt_error_json(SRV_API_RESPONSES, &e);
    j = parse(t);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "param"));
    cJSON_Delete(j);
    free(t);
}

/* item_reference: an output item of an earlier response, from the store, read as if sent. */
static void test_item_reference(void **state)
{
    (void)state;
    struct srv_item_store *st = cellm_srv_store_new(1 << 20);
    cJSON *chat = parse(chat_tools);
    cJSON *r = cellm_srv_adapt_result(SRV_API_RESPONSES, chat, &meta);
    cellm_srv_store_response(st, r);
    cJSON_Delete(r);
    cJSON_Delete(chat);
    cJSON *in = parse("{\"input\":[{\"role\":\"user\",\"content\":\"weather?\"},"
                      "{\"type\":\"item_reference\",\"id\":\"rs_abc_0\"},"
                      "{\"type\":\"item_reference\",\"id\":\"msg_abc_1\"},"
                      "{\"type\":\"item_reference\",\"id\":\"fc_abc_2\"},"
                      "{\"type\":\"function_call_output\",\"call_id\":\"call_a\","
                      "\"output\":\"rain\"}]}");
    cJSON *echo = NULL;
    struct srv_error e = {0};
    cJSON *c = cellm_srv_responses_request(in, cellm_srv_store_get, st, &echo, &e);
    if (!c) fail_msg("refused: %s", e.msg);
    expect_json(cJSON_GetObjectItem(c, "messages"),
                "[{\"role\":\"user\",\"content\":\"weather?\"},"
                "{\"role\":\"assistant\",\"reasoning_content\":\"need data\",\"content\":"
                "\"Let me look.\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\","
                "\"function\":{\"name\":\"get\",\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":\"rain\"}]");
    cJSON_Delete(c);
    cJSON_Delete(echo);
    cJSON_Delete(in);
    /* an id not held: 400 naming the item */
    in = parse("{\"input\":[{\"type\":\"item_reference\",\"id\":\"msg_gone\"}]}");
    memset(&e, 0, sizeof e);
    assert_null(cellm_srv_responses_request(in, cellm_srv_store_get, st, &echo, &e));
    assert_string_equal(e.param, "input[0]");
    assert_non_null(strstr(e.msg, "msg_gone"));
    cJSON_Delete(in);
    cellm_srv_store_free(st);
}

/* The store keeps the newest items within its byte budget. */
static void test_store_bound(void **state)
{
    (void)state;
    struct srv_item_store *st = cellm_srv_store_new(4096);
    char id[32], json[256];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "msg_%d", i);
        snprintf(json, sizeof json, "{\"id\":\"%s\",\"pad\":\"%0100d\"}", id, i);
        cellm_srv_store_put(st, id, json);
    }
    char *t = cellm_srv_store_get(st, "msg_99");
    assert_non_null(t);
    assert_non_null(strstr(t, "\"msg_99\""));
    free(t);
    assert_null(cellm_srv_store_get(st, "msg_0")); /* evicted */
    int held = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "msg_%d", i);
        char *x = cellm_srv_store_get(st, id);
        held += x != NULL;
        free(x);
    }
    assert_true(held > 5 && held < 40); /* about 4096 / (item + overhead) */
    cellm_srv_store_free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_responses_text),         cmocka_unit_test(test_responses_items),
        cmocka_unit_test(test_responses_refused),      cmocka_unit_test(test_messages_request),
        cmocka_unit_test(test_messages_refused),       cmocka_unit_test(test_results),
        cmocka_unit_test(test_stream_responses),       cmocka_unit_test(test_stream_messages),
        cmocka_unit_test(test_stream_empty_and_error), cmocka_unit_test(test_error_shape),
        cmocka_unit_test(test_item_reference),         cmocka_unit_test(test_store_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
