/*
 * jinja.h: the chat-template interpreter, a subset of Jinja2 as transformers configures it.
 *
 * Hugging Face checkpoints carry their prompt format as a Jinja2 template in
 * tokenizer_config.json. This module renders such a template byte for byte as Python's
 * jinja2 does inside transformers' apply_chat_template: an ImmutableSandboxedEnvironment
 * with trim_blocks and lstrip_blocks on, the loopcontrols extension (break, continue), a
 * tojson filter with ensure_ascii off and key order kept, and the globals
 * raise_exception(msg) and strftime_now(fmt). Variables come from a cJSON object
 * (messages, add_generation_prompt, bos_token, eos_token, tools, enable_thinking, ...).
 *
 * What is supported: text, {{ }}, {% %}, {# #}, whitespace control (-, +); if/elif/else,
 * for (tuple targets, loop.*, filter condition, else, break, continue), set (names,
 * tuples, namespace attributes, block form), macros and their calls; Python literals,
 * lists, tuples, dicts, attribute and subscript access, slices, arithmetic, ~, comparisons,
 * and/or/not, in, is-tests, inline if/else, filters and the common str and dict methods.
 * A template that uses anything else (extends, include, import, call blocks, filter
 * blocks, unknown filters or tests...) is refused with CELLM_ERR_UNSUPPORTED and a
 * message naming the construct and its line:column.
 *
 * Errors: syntax errors are CELLM_ERR_FORMAT; raise_exception() in the template is
 * CELLM_ERR_ARG (the conversation does not suit the template); Python type errors at
 * render time are CELLM_ERR_FORMAT; exceeding the output, memory, step or nesting bounds
 * is CELLM_ERR_RANGE. Every message carries the template line:column.
 *
 * Known differences from Python: a JSON number whose value is integral is an int (cJSON
 * does not keep "1.0" apart from "1"); lower/upper/title/capitalize change ASCII letters
 * only; strftime_now uses the process's C locale and local time.
 */
#ifndef CELLM_TEMPLATE_JINJA_H
#define CELLM_TEMPLATE_JINJA_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "cellm.h"

/* A parsed template: immutable, may be rendered many times and from several threads. */
struct cellm_jinja_tmpl;

/* Parses tmpl[0..len) (UTF-8, need not be NUL-terminated). *out is freed with
 * cellm_jinja_free. */
enum cellm_status cellm_jinja_parse(const char *tmpl, size_t len, struct cellm_jinja_tmpl **out,
                                    struct cellm_error *err);

/* Renders a parsed template. vars: a JSON object (or NULL) of template variables; it must
 * outlive the call only. *out is NUL-terminated, allocated with cellm_malloc; the caller
 * frees it with cellm_free. On failure *out is NULL. */
enum cellm_status cellm_jinja_render_parsed(const struct cellm_jinja_tmpl *t, const cJSON *vars,
                                            char **out, struct cellm_error *err);

/* Accepts NULL. */
void cellm_jinja_free(struct cellm_jinja_tmpl *t);

/* Parse and render in one call. */
enum cellm_status cellm_jinja_render(const char *tmpl, size_t len, const cJSON *vars, char **out,
                                     struct cellm_error *err);

#endif
