/*
 * toolcall.h: what a model's output means when it calls tools or thinks aloud.
 *
 * Each model family writes tool calls in the syntax its chat template taught it. This
 * module tells the syntax from the template's text (never from the model's name) and
 * parses the generated text, fed in increments as it is produced, into three streams:
 * content (the answer), reasoning (thoughts: Qwen3's <think>...</think>, gpt-oss's
 * analysis channel) and complete tool calls (a name and the arguments as a JSON text).
 *
 * Formats:
 *   hermes       <tool_call>{"name": N, "arguments": {...}}</tool_call> (Qwen2.5, Qwen3)
 *   qwen3_coder  <tool_call><function=N><parameter=P>V</parameter>...</function></tool_call>
 *   llama3       {"name": N, "parameters": {...}} as the whole answer, or after <|python_tag|>
 *   mistral      [TOOL_CALLS][{"name": N, "arguments": {...}}, ...] (older) and
 *                [TOOL_CALLS]N[ARGS]{...} (newer, repeated per call)
 *   harmony      gpt-oss: <|channel|>commentary to=functions.N ...<|message|>{...}<|call|>;
 *                the analysis channel is reasoning, the final channel content
 *   glm          GLM-4.5/4.6: <tool_call>N<arg_key>K</arg_key><arg_value>V</arg_value>...
 *                </tool_call>; a value is JSON unless the tool declares it a string or it
 *                does not parse as JSON (then the text as written)
 *   deepseek     DeepSeek-V3.1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>N<｜tool▁sep｜>{...}
 *                <｜tool▁call▁end｜>...<｜tool▁calls▁end｜> (also V3/R1's
 *                function<｜tool▁sep｜>N\n```json\n{...}\n``` calls)
 *   pythonic     LFM2: <|tool_call_start|>[f(a=1, b='x'), g()]<|tool_call_end|>, Python
 *                literals (strings, numbers, True/False/None, lists, dicts) made JSON
 *   granite      Granite 3.x: <|tool_call|>[{"name": N, "arguments": {...}}, ...]
 *   kimi_k2      Kimi K2: <|tool_calls_section_begin|><|tool_call_begin|>functions.N:0
 *                <|tool_call_argument_begin|>{...}<|tool_call_end|>...<|tool_calls_section_end|>
 *   gemma4       Gemma 4: <|tool_call>call:N{k:<|"|>text<|"|>,n:1,m:{...},l:[...]}<tool_call|>,
 *                one call a block; its reasoning is <|channel>thought\n...<channel|>
 *
 * glm, deepseek, kimi_k2, pythonic and gemma4 calls reach a call_begin sink whole, when their block is
 * complete (their arguments are not JSON text that could be sent as it is generated).
 *
 * Streaming rules: text that may be the start of a marker is held back until the next
 * increment decides it, so a half tag never reaches the content. A call is reported once
 * it is complete (its closing marker, the end of its JSON value, or the end of the text):
 * only then is it known to be well-formed. A malformed call (JSON that does not parse, no
 * name, an unterminated call at the end) is given back as content, markers included, which
 * is what llama-server and vLLM's parsers do with output they cannot parse.
 *
 * A sink may also take a call as it is generated (call_begin, call_args): its name once
 * the call's head is read, then its arguments in pieces, as vLLM and llama-server stream
 * them; call() then completes it. The arguments are the model's own JSON text without the
 * whitespace outside strings (a qwen3_coder call's: the object its parameters make, as
 * cJSON prints it), so the pieces joined equal what a sink without call_begin receives. A
 * call that turns out malformed after its head was sent ends with call(name, NULL) and its
 * text then goes to the content as above: what was streamed cannot be taken back.
 *
 * Reasoning: with a template that knows <think>, the text between <think> and </think>
 * is reasoning (also from the very start when the generation prompt opened <think>),
 * without the whitespace next to the tags; whitespace that opens the answer after
 * </think> is dropped too. Gemma 4's <|channel>thought ... <channel|> is read the same way. Content is otherwise passed through byte for byte.
 */
#ifndef CELLM_TEMPLATE_TOOLCALL_H
#define CELLM_TEMPLATE_TOOLCALL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "cellm.h"

enum cellm_tc_format {
    CELLM_TC_NONE = 0, /* the template shows no tool-call syntax cellm knows */
    CELLM_TC_HERMES,
    CELLM_TC_QWEN3_CODER,
    CELLM_TC_LLAMA3,
    CELLM_TC_MISTRAL,
    CELLM_TC_HARMONY,
    CELLM_TC_GLM,
    CELLM_TC_DEEPSEEK,
    CELLM_TC_PYTHONIC,
    CELLM_TC_GRANITE,
    CELLM_TC_GEMMA4,
    CELLM_TC_KIMI_K2,
};

/* What a template implies about its model's output. */
struct cellm_tc_style {
    enum cellm_tc_format format;
    int think;        /* <think>...</think> carries reasoning */
    int keep_special; /* the markers are special tokens: decode with them kept */
    int think_channel; /* the reasoning is Gemma 4's <|channel>thought ...<channel|> */
};

/* Reads the style off a template's source (NULL: none). */
struct cellm_tc_style cellm_tc_detect(const char *tmpl);

/* "hermes", "qwen3_coder", "llama3", "mistral", "harmony", "glm", "deepseek", "pythonic",
 * "granite", "gemma4", "kimi_k2" or "none". */
const char *cellm_tc_format_name(enum cellm_tc_format f);

/* Where the parsed output goes. Each callback returns 0, or nonzero to stop the parse
 * (out of memory); s is not NUL-terminated. call's name and args are NUL-terminated;
 * args is a JSON text (an object, "{}" when the model gave none). */
struct cellm_tc_sink {
    void *ud;
    int (*content)(void *ud, const char *s, size_t n);
    int (*reasoning)(void *ud, const char *s, size_t n);
    int (*call)(void *ud, const char *name, const char *args);
    /* Optional (both or neither): every call then opens with call_begin, sends its
     * arguments through call_args (to the last call begun) and is completed by call(), in
     * the order begun, with args the pieces joined, or NULL for a call that proved
     * malformed after it began. */
    int (*call_begin)(void *ud, const char *name);
    int (*call_args)(void *ud, const char *s, size_t n);
};

struct cellm_tc;

/* A parser for one output. in_reasoning: the prompt ended inside <think> (the generation
 * prompt opened it), so the output starts as reasoning. tools: NULL or the request's
 * tools list (qwen3_coder reads each parameter's declared type from it); copied. */
enum cellm_status cellm_tc_new(const struct cellm_tc_style *style, int in_reasoning,
                               const cJSON *tools, struct cellm_tc **out, struct cellm_error *err);
void cellm_tc_free(struct cellm_tc *p);

/* Feeds the next n bytes of output; whatever they decide goes to the sink. */
enum cellm_status cellm_tc_feed(struct cellm_tc *p, const char *s, size_t n,
                                const struct cellm_tc_sink *sink, struct cellm_error *err);

/* The output has ended: everything held back is decided (an unfinished call is content,
 * unfinished reasoning is reasoning). */
enum cellm_status cellm_tc_finish(struct cellm_tc *p, const struct cellm_tc_sink *sink,
                                  struct cellm_error *err);

/* Whether the prompt text ends inside an open <think> (the generation prompt opened it). */
int cellm_tc_prompt_opens_think(const char *prompt);

#endif
