/*
 * adapt.h: the other request formats the server speaks, as adapters over chat completions.
 *
 * POST /v1/responses (OpenAI's Responses API, api_responses.c) and POST /v1/messages
 * (Anthropic's Messages API, api_messages.c) are not second implementations of generation:
 * each request is converted into the equivalent /v1/chat/completions request (a cJSON
 * object), which api.c validates, templates and tokenizes as any chat request; its result
 * (the chat.completion object) or its stream (the chat.completion.chunk events) is then
 * converted into the other API's shape. Everything the chat path learns (tools, reasoning,
 * structured output) therefore reaches these endpoints through the same fields: the
 * converters already map tool calls, tool results, reasoning_content and response formats,
 * and the chat path refuses by name what it does not implement yet.
 *
 * The converters are pure functions of JSON (no server, no model), so they are unit-tested
 * on canned JSON (tests/test_adapt.c); api_adapt.c holds the glue to the server's request
 * (struct srv_req), the stream state machine that both stream formats share, and the SSE
 * buffer; api_store.c keeps the output items of Responses answers for item_reference.
 */
#ifndef CELLM_SERVER_ADAPT_H
#define CELLM_SERVER_ADAPT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "srv.h"

/* JSON helpers the converters share (api_adapt.c): a member that is present and not
 * null; that member's string (NULL if it is none); a 400 invalid_type naming key and what
 * it must be (returns -1). Unsupported fields go to cellm_srv_refuse (srv.h). */
const cJSON *cellm_srv_adapt_get(const cJSON *o, const char *k);
const char *cellm_srv_adapt_str(const cJSON *o, const char *k);
int cellm_srv_adapt_bad(struct srv_error *e, const char *key, const char *want);

/* Which API a request came in through (srv_params.api). */
enum srv_api { SRV_API_CHAT = 0, SRV_API_RESPONSES, SRV_API_MESSAGES };

/* A growing text buffer; oom is set (and the text dropped) when an append fails. */
struct srv_buf {
    char *p;
    size_t len, cap;
    int oom;
};
void cellm_srv_buf_add(struct srv_buf *b, const char *s, size_t n);
void cellm_srv_buf_free(struct srv_buf *b);
/* Appends "event: NAME\ndata: JSON\n\n" and frees o. */
void cellm_srv_buf_event(struct srv_buf *b, const char *name, cJSON *o);

/* What a converted result needs beyond the chat result. */
struct srv_adapt_meta {
    const char *id; /* the response's id ("resp_..." / "msg_...") */
    const char *model;
    long long created;
    int n_prompt, n_cached; /* prompt tokens, and those from the prefix cache */
    /* Messages: the stop sequence that ended the generation, or NULL (end of turn, length) */
    const char *stop_sequence;
    /* Responses: request fields echoed in the response object (JSON object), or NULL */
    const cJSON *echo;
};

/* One output item of a result: reasoning, text or a function call. */
struct srv_adapt_item {
    char kind;    /* 'r' reasoning, 't' text, 'f' function call */
    int tc_index; /* 'f': the chat stream's tool_calls[].index */
    char *call_id, *name;
    struct srv_buf text; /* 'r', 't': the text; 'f': the arguments (JSON text) */
};

/* ---- requests: the body into a chat-completions request --------------------------------- */

/* A stored output item's JSON (malloc'd) by its id, or NULL (cellm_srv_store_get). */
typedef char *(*srv_item_lookup)(void *ctx, const char *id);
/* The Responses body as a chat request (new object), or NULL with e set (400 naming the
 * field). *echo (new object) gets the fields the response object repeats. item_reference
 * input items are looked up with look(ctx, id) (look NULL: none are stored). */
cJSON *cellm_srv_responses_request(const cJSON *in, srv_item_lookup look, void *ctx, cJSON **echo,
                                   struct srv_error *e);
/* The Messages body as a chat request, or NULL with e set. count: for
 * /v1/messages/count_tokens (max_tokens not required). */
cJSON *cellm_srv_messages_request(const cJSON *in, int count, struct srv_error *e);

/* ---- results ------------------------------------------------------------------------------ */

/* A chat.completion object's first choice as output items (*items malloc'd, *n of them) and
 * its finish reason; 0, or -1 when out of memory. */
int cellm_srv_adapt_items(const cJSON *chat, struct srv_adapt_item **items, int *n,
                          const char **finish);
void cellm_srv_adapt_items_free(struct srv_adapt_item *items, int n);
/* The Responses object / the Messages object of a finished result (new objects). usage is
 * the chat usage object (prompt_tokens, completion_tokens, ...) or NULL. status: 0 =
 * completed or incomplete from finish, 1 = in progress (no output, no usage yet). */
cJSON *cellm_srv_responses_object(const struct srv_adapt_meta *m,
                                  const struct srv_adapt_item *items, int n, const char *finish,
                                  const cJSON *usage, int in_progress);
cJSON *cellm_srv_messages_object(const struct srv_adapt_meta *m, const struct srv_adapt_item *items,
                                 int n, const char *finish, const cJSON *usage);
/* A whole chat.completion object converted (new object; NULL when out of memory). */
cJSON *cellm_srv_adapt_result(enum srv_api api, const cJSON *chat, const struct srv_adapt_meta *m);

/* ---- streams ------------------------------------------------------------------------------- */

/* The per-stream state: what was sent of which item. */
struct srv_adapt_stream {
    enum srv_api api;
    int started, ended;
    int seq;                      /* Responses: the next sequence_number */
    struct srv_adapt_item *items; /* in output order */
    int n_items, cap_items;
    int open; /* the item whose deltas are being sent, or -1 */
    char *finish;
    cJSON *usage;
    int stored; /* Responses: the finished items went to the item store */
};

/* What each API emits as the shared state machine walks a chat stream (api_responses.c,
 * api_messages.c). */
struct srv_adapt_events {
    void (*start)(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b);
    void (*open)(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                 struct srv_buf *b);
    void (*delta)(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                  const char *frag, struct srv_buf *b);
    void (*close)(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, int k,
                  struct srv_buf *b);
    void (*end)(struct srv_adapt_stream *st, const struct srv_adapt_meta *m, struct srv_buf *b);
    void (*error)(struct srv_adapt_stream *st, const cJSON *err, struct srv_buf *b);
};
extern const struct srv_adapt_events cellm_srv_responses_events;
extern const struct srv_adapt_events cellm_srv_messages_events;

struct srv_adapt_stream *cellm_srv_adapt_stream_new(enum srv_api api);
void cellm_srv_adapt_stream_free(struct srv_adapt_stream *st);
/* Feeds one event of a chat stream: a chat.completion.chunk, an {"error": {...}} object, or
 * NULL for [DONE]; appends the API's SSE events to b (b->oom when out of memory). */
void cellm_srv_adapt_stream_feed(struct srv_adapt_stream *st, const struct srv_adapt_meta *m,
                                 const cJSON *chunk, struct srv_buf *b);

/* ---- stored items (api_store.c) ------------------------------------------------------------ */

/* The output items of past Responses answers, by id, for item_reference: in memory, at
 * most max_bytes, the oldest evicted first; thread-safe. */
struct srv_item_store;
struct srv_item_store *cellm_srv_store_new(size_t max_bytes);
void cellm_srv_store_free(struct srv_item_store *st);
void cellm_srv_store_put(struct srv_item_store *st, const char *id, const char *json);
/* store: a struct srv_item_store (the srv_item_lookup shape). */
char *cellm_srv_store_get(void *store, const char *id);
/* Keeps every item of a response object's output. */
void cellm_srv_store_response(struct srv_item_store *st, const cJSON *resp);
/* How much the server keeps. */
#define CELLM_SRV_STORE_BYTES ((size_t)16 << 20)

/* ---- errors ---------------------------------------------------------------------------------- */

/* The error body in the API's shape (Messages: {"type": "error", "error": {type, message}}). */
char *cellm_srv_adapt_error_json(enum srv_api api, const struct srv_error *e);
/* Anthropic's error type for an HTTP status. */
const char *cellm_srv_messages_error_type(int status);

/* ---- the server's side (api_adapt.c) --------------------------------------------------------- */

/* Parses a /v1/responses or /v1/messages body into a submitted-ready chat request, like
 * cellm_srv_parse_opts; errors name the API's own fields. */
int cellm_srv_adapt_parse(struct cellm_server *s, enum srv_api api, const char *body, size_t len,
                          const _Atomic int *cancel, pthread_cond_t *wake, struct srv_req **out,
                          struct srv_error *e);
/* /v1/messages/count_tokens: {"input_tokens": N} (malloc'd in *out), or e set. */
int cellm_srv_messages_count(struct cellm_server *s, const char *body, size_t len,
                             const _Atomic int *cancel, char **out, struct srv_error *e);
/* The response body of a done request whose chat.completion object is chat (taken). */
char *cellm_srv_adapt_response(const struct cellm_server *s, const struct srv_req *r, cJSON *chat);
/* The SSE text for the chat SSE text ev (taken: "data: ...\n\n" records), advancing the
 * stream's adapter state in pos. NULL when out of memory. */
char *cellm_srv_adapt_events(const struct cellm_server *s, const struct srv_req *r,
                             struct srv_stream_pos *pos, char *ev);

#endif
