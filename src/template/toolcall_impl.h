/*
 * toolcall_impl.h: what toolcall.c (the parser) and toolcall_stream.c (calls sent while
 * they are generated) share: the parser's state and a few text helpers. Internal to
 * src/template.
 */
#ifndef CELLM_TEMPLATE_TOOLCALL_IMPL_H
#define CELLM_TEMPLATE_TOOLCALL_IMPL_H

#include "template/toolcall.h"

enum tc_state { S_TEXT, S_REASON, S_CALL, S_HEADER, S_BODY, S_PLAIN };
enum tc_body { B_CONTENT, B_REASON, B_CALL };

/* Where the streamed view of the current call block is (toolcall_stream.c). */
enum tc_preview {
    PV_HEAD,      /* before a call's head (name) */
    PV_ARGS,      /* inside its JSON arguments */
    PV_AFTER,     /* a Mistral list: after an element's arguments */
    PV_XML_PARAM, /* qwen3_coder: between parameters */
    PV_XML_SVAL,  /* qwen3_coder: inside a string parameter's value */
    PV_OFF,       /* nothing more to stream for this block (done, or not a shape it reads) */
};

/* The JSON reader that drops whitespace outside strings and finds the value's end. */
struct tc_mini {
    int depth, str, esc;
};

/* How far json_span has read a JSON value that starts at base of the pending text: the
 * value's text arrives a token at a time, and reading it again from its start at every
 * token would make a long call quadratic. */
struct tc_jscan {
    size_t base, pos;
    int open, started, depth, str, esc;
};

/* A call of the current block that has been begun, and the arguments sent for it. */
struct tc_sent {
    char *name;
    char *args;
    size_t n, cap;
};

struct cellm_tc {
    struct cellm_tc_style st;
    cJSON *tools;
    enum tc_state state;
    char *pend;
    size_t n, cap;
    int skip_ws;        /* drop whitespace that opens what comes next */
    int started;        /* something other than whitespace has been decided */
    const char *opener; /* the marker that opened the call ("" for a bare JSON call) */
    enum tc_body body;  /* harmony: what the current message's body is */
    char *callee;       /* harmony: the function the current message calls */
    /* streaming (a sink with call_begin): the view of the call block being generated */
    const struct cellm_tc_sink *user; /* the caller's sink while a block completes */
    enum tc_preview pv;
    size_t pv_pos;    /* bytes of pend read by the view */
    size_t pv_vstart; /* PV_XML_SVAL: where the value starts */
    int pv_vfirst;    /* PV_XML_SVAL: its first byte (a newline to drop) is not read yet */
    int pv_list;      /* a Mistral list of calls */
    int pv_nparams;   /* qwen3_coder: parameters sent */
    struct tc_mini mini;
    struct tc_jscan js;
    struct tc_sent *sent;
    int n_sent, cap_sent, n_done;
};

static inline int tc_is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Length of the longest end of s[0..n) that is a proper start of one of marks. */
size_t tc_held(const char *s, size_t n, const char *const *marks, int nm);
/* The declared JSON type of function fn's parameter par in the tools list, or NULL. */
const char *tc_param_type(const cJSON *tools, const char *fn, const char *par);
/* s[0..n) without the whitespace at either end, malloc'd. */
char *tc_dup_trim(const char *s, size_t n);

/* Reads n bytes of a JSON value that opens with '{' or '[' (its first byte included),
 * writing to out (room for n bytes) what is not whitespace outside strings; stops after
 * the byte that closes the value (*closed = 1). Returns the bytes written, *used read. */
size_t tc_mini_feed(struct tc_mini *m, const char *s, size_t n, char *out, size_t *used,
                    int *closed);
/* The JSON value s[0..n) without the whitespace outside strings, malloc'd. */
char *tc_minify(const char *s, size_t n);

/* toolcall_stream.c. A new call block starts (state S_CALL, or a harmony call body). */
void tc_stream_reset(struct cellm_tc *p);
/* The sink call_step reports complete calls to while streaming: each is matched with the
 * call begun for it, its unsent arguments sent, then completed. */
struct cellm_tc_sink tc_stream_sink(struct cellm_tc *p, const struct cellm_tc_sink *user);
/* Sends what the block's text so far shows of its calls (pend[0..limit)). -1 = the sink
 * failed. */
int tc_stream_preview(struct cellm_tc *p, const struct cellm_tc_sink *k, size_t limit);
/* The block ended without completing the calls begun (malformed): each ends with NULL
 * arguments. Then the block's state is reset. -1 = the sink failed. */
int tc_stream_abandon(struct cellm_tc *p, const struct cellm_tc_sink *k);

/* toolcall_fmt.c: the calls of one block (its text between the markers that open and
 * close it). Return 0 when all were reported, 1 when the block is malformed (nothing
 * reported), -1 when the sink failed. GLM: "NAME<arg_key>K</arg_key><arg_value>V</arg_value>
 * ..." (tools gives the declared types); DeepSeek: "<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>{...}
 * <｜tool▁call▁end｜>..."; pythonic (LFM2): "[f(a=1, b='x'), g()]". */
#define TC_DS_CALLS "<｜tool▁calls▁begin｜>"
#define TC_DS_CALLS_END "<｜tool▁calls▁end｜>"
#define TC_DS_CALL "<｜tool▁call▁begin｜>"
#define TC_DS_SEP "<｜tool▁sep｜>"
#define TC_DS_CALL_END "<｜tool▁call▁end｜>"
int tc_call_glm(const cJSON *tools, const char *s, size_t n, const struct cellm_tc_sink *k);
int tc_calls_deepseek(const char *s, size_t n, const struct cellm_tc_sink *k);
/* Kimi K2: "<|tool_call_begin|>functions.NAME:0<|tool_call_argument_begin|>{...}
 * <|tool_call_end|>..." */
int tc_calls_kimi(const char *s, size_t n, const struct cellm_tc_sink *k);
int tc_calls_pythonic(const char *s, size_t n, const struct cellm_tc_sink *k);
/* Gemma 4: "call:NAME{key:<|"|>text<|"|>,n:1}" (one call a block). */
int tc_call_gemma4(const char *s, size_t n, const struct cellm_tc_sink *k);

#endif
