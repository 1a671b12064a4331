/*
 * test_toolcall.c: the tool-call and reasoning parser (src/template/toolcall.c) on canned
 * model outputs of every format: complete, fed one byte at a time, fed in token-sized
 * pieces, and malformed. Every way of feeding must give the same result, and no content
 * delta may hold part of a marker.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "template/toolcall.h"

struct got {
    char content[4096], reasoning[4096], calls[4096];
    int n_calls, bad_delta;
    /* streamed calls: the pieces of each call begun, how many began and ended, the most
     * pieces one call's arguments came in */
    char live[8][1024];
    int n_begun, n_ended, max_pieces, pieces;
    const char *const *marks; /* the style's markers */
    int last_partial;         /* the last content delta ended in part of a marker */
};

static void cat(char *dst, const char *s, size_t n)
{
    size_t l = strlen(dst);
    assert_true(l + n < 4096);
    memcpy(dst + l, s, n);
    dst[l + n] = 0;
}

/* A content delta may end in part of a marker only when it is the last (the output ended
 * there); one that is followed by more output held it back wrongly. */
static int on_content(void *ud, const char *s, size_t n)
{
    struct got *g = ud;
    if (g->last_partial) g->bad_delta = 1;
    g->last_partial = 0;
    for (size_t m = 0; g->marks[m]; m++) {
        size_t ml = strlen(g->marks[m]);
        for (size_t k = 1; k < ml && k <= n; k++)
            if (!memcmp(s + n - k, g->marks[m], k)) g->last_partial = 1;
    }
    cat(g->content, s, n);
    return 0;
}

static int on_reasoning(void *ud, const char *s, size_t n)
{
    cat(((struct got *)ud)->reasoning, s, n);
    return 0;
}

static int on_call(void *ud, const char *name, const char *args)
{
    struct got *g = ud;
    if (g->last_partial) g->bad_delta = 1;
    g->last_partial = 0;
    g->n_calls++;
    cat(g->calls, name, strlen(name));
    cat(g->calls, " ", 1);
    cat(g->calls, args, strlen(args));
    cat(g->calls, ";", 1);
    return 0;
}

static int on_begin(void *ud, const char *name)
{
    struct got *g = ud;
    assert_true(name[0]);
    assert_true(g->n_begun < 8);
    g->live[g->n_begun++][0] = 0;
    g->pieces = 0;
    return 0;
}

static int on_args(void *ud, const char *s, size_t n)
{
    struct got *g = ud;
    assert_true(g->n_begun > 0);
    assert_true(n > 0);
    char *b = g->live[g->n_begun - 1];
    assert_true(strlen(b) + n < sizeof g->live[0]);
    strncat(b, s, n);
    if (++g->pieces > g->max_pieces) g->max_pieces = g->pieces;
    return 0;
}

/* Streamed: a call completes the oldest one begun, whose pieces must add up to it. */
static int on_live_call(void *ud, const char *name, const char *args)
{
    struct got *g = ud;
    assert_true(g->n_ended < g->n_begun);
    const char *joined = g->live[g->n_ended++];
    if (!args) return 0;
    assert_string_equal(joined, args);
    return on_call(ud, name, args);
}

/* Parses out with the style of tmpl, fed in pieces of `step` bytes (0 = all at once);
 * live: with call_begin and call_args. */
static void parse(const char *tmpl, int in_reasoning, const cJSON *tools, const char *out,
                  size_t step, int live, struct got *g)
{
    memset(g, 0, sizeof *g);
    struct cellm_tc_style st = cellm_tc_detect(tmpl);
    static const char *const hermes[] = {"<tool_call>", "<think>", NULL};
    static const char *const hermes_nothink[] = {"<tool_call>", NULL};
    static const char *const llama[] = {"<|python_tag|>", NULL};
    static const char *const mistral[] = {"[TOOL_CALLS]", NULL};
    static const char *const harmony[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>", NULL};
    static const char *const glm[] = {"<tool_call>", "<think>", NULL};
    static const char *const ds[] = {"<｜tool▁calls▁begin｜>", "<think>", NULL};
    static const char *const lfm[] = {"<|tool_call_start|>", "<think>", NULL};
    static const char *const granite[] = {"<|tool_call|>", "<think>", NULL};
    static const char *const gemma4[] = {"<|tool_call>", "<|channel>thought", NULL};
    static const char *const kimi[] = {"<|tool_calls_section_begin|>", "<think>", NULL};
    static const char *const none[] = {NULL};
    g->marks = (st.format == CELLM_TC_HERMES || st.format == CELLM_TC_QWEN3_CODER) && !st.think
                   ? hermes_nothink
               : st.format == CELLM_TC_HERMES || st.format == CELLM_TC_QWEN3_CODER ? hermes
               : st.format == CELLM_TC_LLAMA3                                      ? llama
               : st.format == CELLM_TC_MISTRAL                                     ? mistral
               : st.format == CELLM_TC_HARMONY                                     ? harmony
               : st.format == CELLM_TC_GLM                                         ? glm
               : st.format == CELLM_TC_DEEPSEEK                                    ? ds
               : st.format == CELLM_TC_PYTHONIC                                    ? lfm
               : st.format == CELLM_TC_GRANITE                                     ? granite
               : st.format == CELLM_TC_GEMMA4                                      ? gemma4
               : st.format == CELLM_TC_KIMI_K2                                     ? kimi
                                                                                   : none;
    struct cellm_tc *p = NULL;
    struct cellm_error err;
    assert_int_equal(cellm_tc_new(&st, in_reasoning, tools, &p, &err), CELLM_OK);
    struct cellm_tc_sink k = {g,
                              on_content,
                              on_reasoning,
                              live ? on_live_call : on_call,
                              live ? on_begin : NULL,
                              live ? on_args : NULL};
    size_t n = strlen(out);
    for (size_t i = 0; i < n;) {
        size_t m = step && step < n - i ? step : n - i;
        assert_int_equal(cellm_tc_feed(p, out + i, m, &k, &err), CELLM_OK);
        i += m;
    }
    assert_int_equal(cellm_tc_finish(p, &k, &err), CELLM_OK);
    cellm_tc_free(p);
    if (live) assert_int_equal(g->n_ended, g->n_begun);
}

/* Every feeding gives content, reasoning and calls as expected. */
static void check_tools(const char *tmpl, int in_reasoning, const cJSON *tools, const char *out,
                        const char *content, const char *reasoning, const char *calls)
{
    static const size_t steps[] = {0, 1, 2, 3, 5, 7, 13};
    for (size_t i = 0; i < 2 * sizeof steps / sizeof *steps; i++) {
        struct got g;
        size_t step = steps[i % (sizeof steps / sizeof *steps)];
        int live = i >= sizeof steps / sizeof *steps;
        parse(tmpl, in_reasoning, tools, out, step, live, &g);
        if (strcmp(g.content, content) || strcmp(g.reasoning, reasoning) || strcmp(g.calls, calls))
            fprintf(stderr, "step %zu%s:\n content   [%s]\n reasoning [%s]\n calls     [%s]\n",
                    step, live ? " (live)" : "", g.content, g.reasoning, g.calls);
        assert_string_equal(g.content, content);
        assert_string_equal(g.reasoning, reasoning);
        assert_string_equal(g.calls, calls);
        assert_false(g.bad_delta);
    }
}

static void check(const char *tmpl, const char *out, const char *content, const char *reasoning,
                  const char *calls)
{
    check_tools(tmpl, 0, NULL, out, content, reasoning, calls);
}

/* Fragments of the real templates, enough for detection. */
static const char *const QWEN25 = "{{- '<tool_call>\\n{\"name\": ' }}...</tool_call>";
static const char *const QWEN3 =
    "<tool_call>...</tool_call>{%- if '</think>' in content %}<think>\\n\\n</think>";
static const char *const CODER = "<tool_call>\\n<function=\\n<parameter=</tool_call>";
static const char *const LLAMA3 = "<|start_header_id|>ipython<|end_header_id|><|python_tag|>";
static const char *const MISTRAL = "[AVAILABLE_TOOLS][TOOL_CALLS][TOOL_RESULTS]";
static const char *const HARMONY =
    "<|start|>assistant to=\" }}{{- \"functions.\" + name + \"<|channel|>commentary json<|message|>"
    "{{ args }}<|call|>";
static const char *const GEMMA = "<start_of_turn>{{ message.content }}<end_of_turn>";

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(cellm_tc_detect(QWEN25).format, CELLM_TC_HERMES);
    assert_false(cellm_tc_detect(QWEN25).think);
    assert_int_equal(cellm_tc_detect(QWEN3).format, CELLM_TC_HERMES);
    assert_true(cellm_tc_detect(QWEN3).think);
    assert_int_equal(cellm_tc_detect(CODER).format, CELLM_TC_QWEN3_CODER);
    assert_int_equal(cellm_tc_detect(LLAMA3).format, CELLM_TC_LLAMA3);
    assert_true(cellm_tc_detect(LLAMA3).keep_special);
    assert_int_equal(cellm_tc_detect(MISTRAL).format, CELLM_TC_MISTRAL);
    assert_int_equal(cellm_tc_detect(HARMONY).format, CELLM_TC_HARMONY);
    assert_int_equal(cellm_tc_detect(GEMMA).format, CELLM_TC_NONE);
    assert_int_equal(cellm_tc_detect(NULL).format, CELLM_TC_NONE);
    assert_string_equal(cellm_tc_format_name(CELLM_TC_MISTRAL), "mistral");
    assert_true(cellm_tc_prompt_opens_think("<|im_start|>assistant\n<think>\n"));
    assert_false(cellm_tc_prompt_opens_think("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    assert_false(cellm_tc_prompt_opens_think("<|im_start|>assistant\n"));
}

static void test_hermes(void **state)
{
    (void)state;
    check(QWEN25, "Hello <b>world</b> < 3", "Hello <b>world</b> < 3", "", "");
    check(QWEN25,
          "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\xc3\xbcrich\"}}\n"
          "</tool_call>",
          "", "", "get_weather {\"city\":\"Z\xc3\xbcrich\"};");
    check(QWEN25,
          "Let me check.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
          "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"x\": [1, \"}\"]}}\n</tool_call>",
          "Let me check.\n", "", "a {};b {\"x\":[1,\"}\"]};");
    /* malformed: bad JSON, no name, unterminated: all content, markers included */
    check(QWEN25, "<tool_call>\n{\"name\": \"a\", \"arguments\": {</tool_call>",
          "<tool_call>\n{\"name\": \"a\", \"arguments\": {</tool_call>", "", "");
    check(QWEN25, "<tool_call>{\"arguments\": {}}</tool_call> ok",
          "<tool_call>{\"arguments\": {}}</tool_call> ok", "", "");
    check(QWEN25, "x <tool_call>{\"name\": \"a\"", "x <tool_call>{\"name\": \"a\"", "", "");
    /* a string of arguments is passed through */
    check(QWEN25, "<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"q\\\": 1}\"}</tool_call>", "",
          "", "a {\"q\": 1};");
    /* a lone '<' at the very end is content once the output ends */
    check(QWEN25, "a <", "a <", "", "");
}

static void test_think(void **state)
{
    (void)state;
    check(QWEN3, "<think>\nThe user greets.\n</think>\n\nHello!", "Hello!", "The user greets.", "");
    check(QWEN3,
          "<think>\nNeed weather.\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": "
          "{\"city\": \"Paris\"}}\n</tool_call>",
          "", "Need weather.", "w {\"city\":\"Paris\"};");
    check(QWEN3, "<think>\n\n</think>\n\nHi", "Hi", "", "");
    /* the prompt opened <think>: the output starts as reasoning */
    check_tools(QWEN3, 1, NULL, "Hmm.\n</think>\n\nHi", "Hi", "Hmm.", "");
    /* unterminated thoughts stay reasoning */
    check(QWEN3, "<think>\nlong thought", "", "long thought", "");
    /* without <think> in the template, the tags are content */
    check(QWEN25, "<think>x</think>y", "<think>x</think>y", "", "");
}

static void test_qwen3_coder(void **state)
{
    (void)state;
    cJSON *tools = cJSON_Parse(
        "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"s\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}}}}}]");
    assert_non_null(tools);
    check_tools(CODER, 0, tools,
                "I will call.\n<tool_call>\n<function=f>\n<parameter=s>\n123\n</parameter>\n"
                "<parameter=n>\n42\n</parameter>\n</function>\n</tool_call>",
                "I will call.\n", "", "f {\"s\":\"123\",\"n\":42};");
    /* an undeclared tool: values that parse as JSON are JSON, others strings */
    check_tools(CODER, 0, tools,
                "<tool_call>\n<function=g>\n<parameter=a>\nhello world\n</parameter>\n"
                "<parameter=b>\n{\"k\": true}\n</parameter>\n</function>\n</tool_call>",
                "", "", "g {\"a\":\"hello world\",\"b\":{\"k\":true}};");
    /* malformed: no </function> */
    check_tools(CODER, 0, tools, "<tool_call>\n<function=f>\n</tool_call>",
                "<tool_call>\n<function=f>\n</tool_call>", "", "");
    cJSON_Delete(tools);
}

static void test_llama3(void **state)
{
    (void)state;
    check(LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", "",
          "get_weather {\"city\":\"Paris\"};");
    check(LLAMA3, "  {\"type\": \"function\", \"name\": \"f\", \"parameters\": {}}", "", "",
          "f {};");
    check(LLAMA3, "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"a\": 1}}", "", "",
          "f {\"a\":1};");
    check(LLAMA3, "The answer is {x}.", "The answer is {x}.", "", "");
    /* malformed: a JSON object that is not a call, an unterminated one */
    check(LLAMA3, "{\"city\": \"Paris\"}", "{\"city\": \"Paris\"}", "", "");
    check(LLAMA3, "{\"name\": \"f\", \"parameters\": {", "{\"name\": \"f\", \"parameters\": {", "",
          "");
    check(LLAMA3, "<|python_tag|>brave_search.call(query=\"x\")",
          "<|python_tag|>brave_search.call(query=\"x\")", "", "");
}

static void test_mistral(void **state)
{
    (void)state;
    check(MISTRAL,
          "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", "
          "\"arguments\": {}}]",
          "", "", "a {\"x\":1};b {};");
    check(MISTRAL, "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]b[ARGS]{}", "",
          "", "get_weather {\"city\":\"Paris\"};b {};");
    check(MISTRAL, "Sure.[TOOL_CALLS]f[CALL_ID]abc123XYZ[ARGS]{\"q\": \"[ARGS]\"}", "Sure.", "",
          "f {\"q\":\"[ARGS]\"};");
    check(MISTRAL, "[TOOL_CALLS] not a call", "[TOOL_CALLS] not a call", "", "");
    check(MISTRAL, "[TOOL_CALLS]f[ARGS]{\"a\": ", "[TOOL_CALLS]f[ARGS]{\"a\": ", "", "");
    check(MISTRAL, "[TOOL_CALLS][{\"x\": 1}]", "[TOOL_CALLS][{\"x\": 1}]", "", "");
    /* long calls: the JSON is read on from where the last piece stopped (a string with
     * escaped quotes and brackets spanning pieces), and a word too long for a name is text */
    static char big[3000], word[1200];
    size_t k = (size_t)snprintf(big, sizeof big, "[TOOL_CALLS]f[ARGS]{\"s\": \"");
    while (k < sizeof big - 64)
        k += (size_t)snprintf(big + k, sizeof big - k, "\\\"}]{[ ");
    snprintf(big + k, sizeof big - k, "\", \"n\": [[1], {\"a\": 2}]}");
    struct got g;
    parse(MISTRAL, 0, NULL, big, 1, 0, &g);
    assert_string_equal(g.content, "");
    assert_int_equal(strncmp(g.calls, "f {\"s\":\"\\\"}]{[ ", 12), 0);
    assert_non_null(strstr(g.calls, "\",\"n\":[[1],{\"a\":2}]};"));
    memset(word, 'w', sizeof word - 1);
    snprintf(big, sizeof big, "[TOOL_CALLS]%s[ARGS]{}", word);
    check(MISTRAL, big, big, "", "");
}

static void test_harmony(void **state)
{
    (void)state;
    check(HARMONY,
          "<|channel|>analysis<|message|>User asks weather. Call tool.<|end|><|start|>assistant"
          "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>"
          "{\"city\":\"Paris\"}<|call|>",
          "", "User asks weather. Call tool.", "get_weather {\"city\":\"Paris\"};");
    /* <|call|> and <|return|> end the generation (EOS): the text may stop before them */
    check(HARMONY,
          "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final"
          "<|message|>It is sunny.",
          "It is sunny.", "Think.", "");
    check(HARMONY,
          "<|start|>assistant to=functions.f<|channel|>commentary json<|message|>{\"a\": [1]}", "",
          "", "f {\"a\":[1]};");
    /* not harmony at all: plain content */
    check(HARMONY, "Plain answer.", "Plain answer.", "", "");
    /* malformed arguments: the body is content */
    check(HARMONY, "<|channel|>commentary to=functions.f<|message|>{oops", "{oops", "", "");
}

/* The real templates of tests/data/hub (fetched by .ci/setup.d/20-tokenizers.sh): each
 * detected as its family writes calls. Skipped without the data. */
static void test_detect_hub(void **state)
{
    (void)state;
    static const struct {
        const char *model;
        enum cellm_tc_format f;
        int think;
    } want[] = {{"qwen2_5", CELLM_TC_HERMES, 0},  {"qwen3", CELLM_TC_HERMES, 1},
                {"llama3_2", CELLM_TC_LLAMA3, 0}, {"mistral_nemo", CELLM_TC_MISTRAL, 0},
                {"gemma3", CELLM_TC_NONE, 0},     {"llama3", CELLM_TC_NONE, 0}};
    int seen = 0;
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s/tokenizer_config.json", CELLM_HUB_DIR, want[i].model);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)len + 1);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (size_t)len, f);
        fclose(f);
        buf[n] = 0;
        cJSON *cfg = cJSON_Parse(buf);
        free(buf);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(cfg, "chat_template");
        assert_true(cJSON_IsString(t));
        struct cellm_tc_style st = cellm_tc_detect(t->valuestring);
        if (st.format != want[i].f)
            fprintf(stderr, "%s: %s\n", want[i].model, cellm_tc_format_name(st.format));
        assert_int_equal(st.format, want[i].f);
        assert_int_equal(st.think, want[i].think);
        cJSON_Delete(cfg);
        seen++;
    }
    if (!seen) skip();
}

/* Streamed, a long call's arguments arrive in many pieces, not at its end: fed a byte at a
 * time, at least `min` pieces for the call, and the same result as not streamed. */
static void live_pieces(const char *tmpl, const cJSON *tools, const char *out, const char *calls,
                        int min)
{
    struct got whole, live;
    parse(tmpl, 0, tools, out, 0, 0, &whole);
    parse(tmpl, 0, tools, out, 1, 1, &live);
    assert_string_equal(live.calls, calls);
    assert_string_equal(whole.calls, calls);
    assert_string_equal(live.content, whole.content);
    if (live.max_pieces < min) fprintf(stderr, "%d pieces for %s\n", live.max_pieces, out);
    assert_true(live.max_pieces >= min);
}

static void test_live(void **state)
{
    (void)state;
    cJSON *tools = cJSON_Parse(
        "[{\"type\":\"function\",\"function\":{\"name\":\"write\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"path\":{\"type\":\"string\"},\"text\":{\"type\":"
        "\"string\"},\"n\":{\"type\":\"integer\"}}}}}]");
    assert_non_null(tools);
    const char *args = "{\"path\":\"a.txt\",\"text\":\"line one\\nline \\\"two\\\"\",\"n\":7}";
    char want[256];
    snprintf(want, sizeof want, "write %s;", args);
    live_pieces(QWEN25, NULL,
                "<tool_call>\n{\"name\": \"write\", \"arguments\": {\"path\": \"a.txt\", \"text\": "
                "\"line one\\nline \\\"two\\\"\", \"n\": 7}}\n</tool_call>",
                want, 20);
    live_pieces(CODER, tools,
                "<tool_call>\n<function=write>\n<parameter=path>\na.txt\n</parameter>\n"
                "<parameter=text>\nline one\nline \"two\"\n</parameter>\n<parameter=n>\n7\n"
                "</parameter>\n</function>\n</tool_call>",
                want, 10);
    live_pieces(LLAMA3, NULL,
                "{\"name\": \"write\", \"parameters\": {\"path\": \"a.txt\", \"text\": \"line "
                "one\\nline \\\"two\\\"\", \"n\": 7}}",
                want, 20);
    live_pieces(MISTRAL, NULL,
                "[TOOL_CALLS]write[ARGS]{\"path\": \"a.txt\", \"text\": \"line one\\nline "
                "\\\"two\\\"\", \"n\": 7}",
                want, 20);
    live_pieces(
        MISTRAL, NULL,
        "[TOOL_CALLS][{\"name\": \"write\", \"arguments\": {\"path\": \"a.txt\", \"text\": "
        "\"line one\\nline \\\"two\\\"\", \"n\": 7}}, {\"name\": \"f\", \"arguments\": {}}]",
        "write {\"path\":\"a.txt\",\"text\":\"line one\\nline \\\"two\\\"\",\"n\":7};f {};", 20);
    live_pieces(HARMONY, NULL,
                "<|channel|>commentary to=functions.write <|constrain|>json<|message|>{\"path\": "
                "\"a.txt\", \"text\": \"line one\\nline \\\"two\\\"\", \"n\": 7}<|call|>",
                want, 20);
    /* a head of another shape is sent whole, once complete */
    live_pieces(QWEN25, NULL,
                "<tool_call>{\"arguments\": {\"n\": 7}, \"name\": \"write\"}</tool_call>",
                "write {\"n\":7};", 1);
    cJSON_Delete(tools);
}

/* The real templates committed in tests/chat/templates: each detected as its family
 * writes calls (they are in the repository, so this never skips). */
/* Fragments of GLM-4.5's, DeepSeek-V3.1's, LFM2's and Granite 3.3's templates. */
static const char *const GLM = "<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n"
                               "<arg_value>{arg-value-1}</arg_value></tool_call><think></think>";
static const char *const DS = "{{'<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>'+ tool['function']["
                              "'name'] + '<｜tool▁sep｜>'}}{{'</think>'}}{{'<think>'}}";
static const char *const LFM2 =
    "{{- \"<|tool_call_start|>[\" + calls + \"]<|tool_call_end|>\" -}}<think></think>";
static const char *const GRANITE = "respond only with <|tool_call|> followed by a JSON list";

static void test_glm(void **state)
{
    (void)state;
    cJSON *tools = cJSON_Parse(
        "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
        "\"object\",\"properties\":{\"s\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"}}}}}]");
    assert_non_null(tools);
    /* GLM-4.5: the name on its own line, reasoning first */
    check_tools(GLM, 0, tools,
                "<think>Call f.</think>\nSure.\n<tool_call>f\n<arg_key>s</arg_key>\n<arg_value>123"
                "</arg_value>\n<arg_key>n</arg_key>\n<arg_value>42</arg_value>\n</tool_call>",
                "Sure.\n", "Call f.", "f {\"s\":\"123\",\"n\":42};");
    /* GLM-4.6: no newlines; two calls; an undeclared tool: JSON when it parses */
    check_tools(GLM, 0, tools,
                "<tool_call>g<arg_key>a</arg_key><arg_value>hello world</arg_value><arg_key>b"
                "</arg_key><arg_value>{\"k\": [1, true]}</arg_value></tool_call>\n"
                "<tool_call>f</tool_call>",
                "", "", "g {\"a\":\"hello world\",\"b\":{\"k\":[1,true]}};f {};");
    /* "12 apples" is not the number 12 */
    check_tools(GLM, 0, NULL,
                "<tool_call>g<arg_key>a</arg_key><arg_value>12 apples</arg_value>"
                "</tool_call>",
                "", "", "g {\"a\":\"12 apples\"};");
    /* malformed: a value not closed, a name with a space, a repeated key, no </tool_call> */
    check_tools(GLM, 0, tools, "<tool_call>f<arg_key>s</arg_key><arg_value>x</tool_call>ok",
                "<tool_call>f<arg_key>s</arg_key><arg_value>x</tool_call>ok", "", "");
    check_tools(GLM, 0, tools, "<tool_call>f g</tool_call>", "<tool_call>f g</tool_call>", "", "");
    check_tools(GLM, 0, tools,
                "<tool_call>f<arg_key>s</arg_key><arg_value>1</arg_value><arg_key>s</arg_key>"
                "<arg_value>2</arg_value></tool_call>",
                "<tool_call>f<arg_key>s</arg_key><arg_value>1</arg_value><arg_key>s</arg_key>"
                "<arg_value>2</arg_value></tool_call>",
                "", "");
    check_tools(GLM, 0, tools, "<tool_call>f<arg_key>s</arg_key>",
                "<tool_call>f<arg_key>s</arg_key>", "", "");
    cJSON_Delete(tools);
}

static void test_deepseek(void **state)
{
    (void)state;
    /* V3.1: the generation prompt opened <think> */
    check_tools(
        DS, 1, NULL,
        "Weather and time.</think>Checking.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>"
        "get_weather<｜tool▁sep｜>{\"city\": \"Oslo\"}<｜tool▁call▁end｜><｜tool▁call▁begin｜>"
        "now<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
        "Checking.", "Weather and time.", "get_weather {\"city\":\"Oslo\"};now {};");
    /* V3 and R1: the name after "function", the arguments in a fence */
    check(DS,
          "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n"
          "{\"a\": [1, 2]}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
          "", "", "f {\"a\":[1,2]};");
    /* malformed: arguments that are not an object (neither call is reported), no end */
    check(DS,
          "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>"
          "<｜tool▁call▁begin｜>g<｜tool▁sep｜>[1]<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
          "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{}<｜tool▁call▁end｜>"
          "<｜tool▁call▁begin｜>g<｜tool▁sep｜>[1]<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
          "", "");
    check(DS, "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\"",
          "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{\"a\"", "", "");
}

static void test_pythonic(void **state)
{
    (void)state;
    check(LFM2,
          "<think>Look it up.</think>Let me check.<|tool_call_start|>[get_weather(city='Par\\'is', "
          "days=3, metric=True, ratio=1e5, tags=[\"a\", 'b'], opt={\"x\": None, \"y\": -2.5}), "
          "now()]<|tool_call_end|>Done.",
          "Let me check.Done.", "Look it up.",
          "get_weather {\"city\":\"Par'is\",\"days\":3,\"metric\":true,\"ratio\":1e5,"
          "\"tags\":[\"a\",\"b\"],\"opt\":{\"x\":null,\"y\":-2.5}};now {};");
    /* malformed: a positional argument, an empty list, a bare word, no end */
    check(LFM2, "<|tool_call_start|>[f(1)]<|tool_call_end|>",
          "<|tool_call_start|>[f(1)]<|tool_call_end|>", "", "");
    check(LFM2, "<|tool_call_start|>[]<|tool_call_end|>", "<|tool_call_start|>[]<|tool_call_end|>",
          "", "");
    check(LFM2, "<|tool_call_start|>[f(a=b)]<|tool_call_end|>",
          "<|tool_call_start|>[f(a=b)]<|tool_call_end|>", "", "");
    check(LFM2, "<|tool_call_start|>[f(a=1)]", "<|tool_call_start|>[f(a=1)]", "", "");
}

static void test_granite(void **state)
{
    (void)state;
    check(GRANITE,
          "<|tool_call|>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", "
          "\"arguments\": {}}]",
          "", "", "a {\"x\":1};b {};");
    check(GRANITE, "<|tool_call|> nothing", "<|tool_call|> nothing", "", "");
    check(GRANITE, "<|tool_call|>[{\"x\": 1}]", "<|tool_call|>[{\"x\": 1}]", "", "");
}

static const char *const GEMMA4 = "{{- '<|tool_call>call:' + function['name'] + '{' -}}"
                                  "{{- '}<tool_call|>' -}}{{- '<|channel>thought\\n<channel|>' -}}";

static void test_gemma4(void **state)
{
    (void)state;
    check(GEMMA4,
          "Checking.<|tool_call>call:get_weather{city:<|\"|>Bern, \"CH\"<|\"|>,days:3,"
          "metric:true,where:{lat:46.9,lon:-7e1},hours:[9,12],spots:[{name:<|\"|>Aare<|\"|>}],"
          "none:null}<tool_call|><|tool_call>call:now{}<tool_call|>",
          "Checking.", "",
          "get_weather {\"city\":\"Bern, \\\"CH\\\"\",\"days\":3,\"metric\":true,\"where\":"
          "{\"lat\":46.9,\"lon\":-7e1},\"hours\":[9,12],\"spots\":[{\"name\":\"Aare\"}],"
          "\"none\":null};now {};");
    /* the thought channel is reasoning */
    check(GEMMA4, "<|channel>thought\nNeed the time.<channel|>\n<|tool_call>call:now{}<tool_call|>",
          "", "Need the time.", "now {};");
    check(GEMMA4, "<|channel>thought\n<channel|>Hi <|channel>there", "Hi <|channel>there", "", "");
    /* malformed: a bare word, a string not closed, no end, no call: */
    check(GEMMA4, "<|tool_call>call:f{a:b}<tool_call|>", "<|tool_call>call:f{a:b}<tool_call|>", "",
          "");
    check(GEMMA4, "<|tool_call>call:f{a:<|\"|>x}<tool_call|>",
          "<|tool_call>call:f{a:<|\"|>x}<tool_call|>", "", "");
    check(GEMMA4, "<|tool_call>call:f{a:1}", "<|tool_call>call:f{a:1}", "", "");
    check(GEMMA4, "<|tool_call>f{}<tool_call|>", "<|tool_call>f{}<tool_call|>", "", "");
}

static const char *const KIMI = "<|tool_calls_section_begin|>{%- for tool_call in calls -%}"
                                "<|tool_call_begin|>{{ id }}<|tool_call_argument_begin|>"
                                "<|tool_call_end|><think></think>";

static void test_kimi(void **state)
{
    (void)state;
    check(KIMI,
          "<think>Two calls.</think>On it.<|tool_calls_section_begin|>\n<|tool_call_begin|>"
          "functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Oslo\"}"
          "<|tool_call_end|>\n<|tool_call_begin|>functions.now:1<|tool_call_argument_begin|>{}"
          "<|tool_call_end|><|tool_calls_section_end|>",
          "On it.", "Two calls.", "get_weather {\"city\":\"Oslo\"};now {};");
    /* malformed: an id without its index, arguments that are not an object, no end */
    check(KIMI,
          "<|tool_calls_section_begin|><|tool_call_begin|>functions.f<|tool_call_argument_begin|>"
          "{}<|tool_call_end|><|tool_calls_section_end|>",
          "<|tool_calls_section_begin|><|tool_call_begin|>functions.f<|tool_call_argument_begin|>"
          "{}<|tool_call_end|><|tool_calls_section_end|>",
          "", "");
    check(KIMI,
          "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
          "\"x\"<|tool_call_end|><|tool_calls_section_end|>",
          "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>"
          "\"x\"<|tool_call_end|><|tool_calls_section_end|>",
          "", "");
    check(KIMI, "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0",
          "<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0", "", "");
}

static void test_detect_real(void **state)
{
    (void)state;
    static const struct {
        const char *file;
        enum cellm_tc_format f;
        int think;
    } want[] = {{"gpt_oss.jinja", CELLM_TC_HARMONY, 0},
                {"qwen3_coder.jinja", CELLM_TC_QWEN3_CODER, 0},
                {"mistral_small_3_2.jinja", CELLM_TC_MISTRAL, 0},
                {"devstral_small_2507.jinja", CELLM_TC_MISTRAL, 0},
                {"glm_4_5.jinja", CELLM_TC_GLM, 1},
                {"glm_4_6.jinja", CELLM_TC_GLM, 1},
                {"deepseek_v3_1.jinja", CELLM_TC_DEEPSEEK, 1},
                {"lfm2_5_8b_a1b.jinja", CELLM_TC_PYTHONIC, 1},
                {"granite_3_3.jinja", CELLM_TC_GRANITE, 1},
                {"kimi_k2.jinja", CELLM_TC_NONE, 0},
                {"kimi_k2_thinking.jinja", CELLM_TC_KIMI_K2, 1},
                {"gemma4.jinja", CELLM_TC_GEMMA4, 1}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", CELLM_TEMPLATE_DIR, want[i].file);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long len = ftell(f);
        fseek(f, 0, SEEK_SET);
        char *buf = malloc((size_t)len + 1);
        assert_non_null(buf);
        size_t n = fread(buf, 1, (size_t)len, f);
        fclose(f);
        buf[n] = 0;
        struct cellm_tc_style st = cellm_tc_detect(buf);
        free(buf);
        if (st.format != want[i].f)
            fprintf(stderr, "%s: %s\n", want[i].file, cellm_tc_format_name(st.format));
        assert_int_equal(st.format, want[i].f);
        assert_int_equal(st.think, want[i].think);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_detect),      cmocka_unit_test(test_hermes),
        cmocka_unit_test(test_think),       cmocka_unit_test(test_qwen3_coder),
        cmocka_unit_test(test_llama3),      cmocka_unit_test(test_mistral),
        cmocka_unit_test(test_harmony),     cmocka_unit_test(test_detect_hub),
        cmocka_unit_test(test_detect_real), cmocka_unit_test(test_live),
        cmocka_unit_test(test_glm),         cmocka_unit_test(test_deepseek),
        cmocka_unit_test(test_pythonic),    cmocka_unit_test(test_granite),
        cmocka_unit_test(test_gemma4),      cmocka_unit_test(test_kimi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
