/*
 * chat_session.h: one conversation held in a model's KV cache, for `cellm chat`.
 *
 * Owns the messages, the sequence and a copy of the ids in its cache. A turn renders the
 * whole conversation through the chat template, keeps the longest common prefix of the
 * new ids with the cached ones, drops the rest from the cache and prefills only the new
 * suffix, so a turn costs its own tokens, not the history's. The reply loop (sample, EOS,
 * stream) is chat_session_reply: the part to move onto the library's generation API.
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
    int seq, max_ctx;
    int32_t *cached; /* the ids in the sequence's KV cache, in order */
    int n_cached, cap_cached;
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
    const char *finish; /* "stop" (EOS), "length", "interrupted", "context" */
};

int chat_session_init(struct chat_session *s, struct cellm_model *m, struct cellm_tokenizer *tok,
                      int max_ctx, struct cellm_error *err);
void chat_session_free(struct chat_session *s);

/* Appends a message (copied). */
int chat_session_add(struct chat_session *s, const char *role, const char *content);
/* Sets the system prompt (NULL or "" = none). */
int chat_session_set_system(struct chat_session *s, const char *text);
/* Forgets the messages (the system prompt stays) and empties the cache. */
void chat_session_clear(struct chat_session *s);

/* Answers the last user message: prefills what is new, then streams the reply's text to
 * out as it is sampled, until EOS, n_predict, the context
 * or *stop becoming nonzero (Ctrl-C). The reply (even a cut one) joins the history. */
enum cellm_status chat_session_reply(struct chat_session *s, FILE *out, volatile sig_atomic_t *stop,
                                     struct chat_stats *st, struct cellm_error *err);

/* Writes {"system": ..., "messages": [{role, content}...]} to path. */
int chat_session_save(const struct chat_session *s, const char *path, struct cellm_error *err);
/* Replaces the conversation with a file written by chat_session_save (or a bare list of
 * {role, content}); the cache is kept and reused as far as it matches. */
int chat_session_load(struct chat_session *s, const char *path, struct cellm_error *err);

#endif
