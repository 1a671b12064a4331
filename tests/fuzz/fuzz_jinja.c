/*
 * fuzz_jinja.c: libFuzzer target for the chat-template interpreter. The input is split at
 * the first NUL byte: the part before is the template, the part after (if any) is a JSON
 * object of variables; with no NUL a fixed conversation is used. Every input must end in
 * CELLM_OK or an error status, never a crash, a leak, or unbounded time or memory.
 */
#include <stdint.h>
#include <string.h>

#include "base/alloc.h"
#include "template/jinja.h"

static const char default_vars[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"sys\"},{\"role\":\"user\","
    "\"content\":\"hi <think>x</think> \\u00e9\"},{\"role\":\"assistant\",\"content\":"
    "\"<think>\\nr\\n</think>\\n\\nok\",\"tool_calls\":[{\"function\":{\"name\":\"f\","
    "\"arguments\":{\"a\":1}}}]}],\"add_generation_prompt\":true,\"bos_token\":\"<s>\","
    "\"eos_token\":\"</s>\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const char *nul = memchr(text, 0, size);
    size_t tlen = nul ? (size_t)(nul - text) : size;
    cJSON *vars = NULL;
    if (nul)
        vars = cJSON_ParseWithLength(nul + 1, size - tlen - 1);
    else
        vars = cJSON_Parse(default_vars);
    char *out = NULL;
    struct cellm_error err;
    struct cellm_jinja_tmpl *t = NULL;
    if (cellm_jinja_parse(text, tlen, &t, &err) == CELLM_OK) {
        if (cellm_jinja_render_parsed(t, vars, &out, &err) == CELLM_OK) cellm_free(out);
        cellm_jinja_free(t);
    }
    cJSON_Delete(vars);
    return 0;
}
