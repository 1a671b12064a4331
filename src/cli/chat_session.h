/*
 * chat_session.h: one conversation for `cellm chat`, answered by the engine's generation
 * loop (cellm_gen_*, the one `cellm generate` and the server run).
 *
 * Owns the messages and a context whose prefix cache holds the conversation. A turn
 * renders the whole conversation through the chat template and hands the ids to a
 * cellm_gen: it attaches the cached blocks the ids start with (the history, as far as it
 * re-tokenizes to what was computed) and prefills only the rest; when the reply ends the
 * gen stores its blocks for the next turn. So a turn costs its own tokens, not the
 * history's, and on the CPU sliding-window models keep their history too (the cache
 * keeps their window layers; a sequence cut back could not). With blocks of one position
 * (the CPU default) a turn reuses exactly the longest common prefix. Without a prefix
 * cache (XLA, or a budget of 0) every turn prefills the whole conversation.
 */
#ifndef CELLM_CLI_CHAT_SESSION_H
#define CELLM_CLI_CHAT_SESSION_H

#include <signal.h>
#include <stdio.h>

#include "cellm.h"

struct chat_msg {
    char *role, *content;
};

struct chat_session {
    struct cellm_model *model;   /* borrowed */
    struct cellm_tokenizer *tok; /* borrowed */
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp; /* ctx's parameters (its prefix cache), for /clear */
    int max_ctx;
    char *system; /* NULL = none */
    struct chat_msg *msgs;
    int n_msgs, cap_msgs;
    struct cellm_sampler_params sp;
    int n_predict;  /* reply tokens at most */
    int think;      /* 0: enable_thinking=false */
    int ignore_eos; /* reply past end-of-sequence ids */
    int turns;      /* replies so far (varies the seed per turn) */
};

/* What one reply did, for the stats line. */
struct chat_stats {
    int prompt_new, prompt_cached; /* prefilled ids, and ids reused from the cache */
    int generated;
    double prefill_s, decode_s;
    const char *finish; /* "stop" (EOS or a stop string), "length" (n_predict),
                         * "interrupted", "context" (the context is full) */
};

/* cp: the context's parameters; its cache_bytes is what keeps the history between turns. */
int chat_session_init(struct chat_session *s, struct cellm_model *m, struct cellm_tokenizer *tok,
                      int max_ctx, const struct cellm_ctx_params *cp, struct cellm_error *err);
void chat_session_free(struct chat_session *s);

/* Appends a message (copied). */
int chat_session_add(struct chat_session *s, const char *role, const char *content);
/* Sets the system prompt (NULL or "" = none). */
int chat_session_set_system(struct chat_session *s, const char *text);
/* Forgets the messages (the system prompt stays) and empties the prefix cache (a new
 * context). 0 with err set when the new context cannot be made (the old one stays). */
int chat_session_clear(struct chat_session *s, struct cellm_error *err);

/* Answers the last user message: prefills what the cache lacks, then streams the reply's
 * text to out as it is released, until EOS, n_predict, the context or *stop becoming
 * nonzero (Ctrl-C, checked between tokens). The reply (even a cut one) joins the history. */
enum cellm_status chat_session_reply(struct chat_session *s, FILE *out, volatile sig_atomic_t *stop,
                                     struct chat_stats *st, struct cellm_error *err);

/* Writes {"system": ..., "messages": [{role, content}...]} to path. */
int chat_session_save(const struct chat_session *s, const char *path, struct cellm_error *err);
/* Replaces the conversation with a file written by chat_session_save (or a bare list of
 * {role, content}); the cache is kept and reused as far as it matches. */
int chat_session_load(struct chat_session *s, const char *path, struct cellm_error *err);

#endif
