/*
 * cellm: LLM inference from Hugging Face and MLX checkpoint directories, as published.
 *
 * The public API. Everything the CLI and the server use goes through this header.
 *
 *     struct cellm_error err;
 *     struct cellm_model *model;
 *     struct cellm_model_params mp = cellm_model_params_default();
 *     if (cellm_model_load("models/tiny", &mp, &model, &err) != CELLM_OK) {
 *         fprintf(stderr, "%s\n", err.msg);
 *         return 1;
 *     }
 *     struct cellm_ctx *ctx;
 *     struct cellm_ctx_params cp = cellm_ctx_params_default();
 *     cellm_ctx_new(model, &cp, &ctx, &err);
 *     int seq = cellm_ctx_seq_new(ctx);             // a sequence with an empty KV cache
 *     int32_t prompt[] = {1, 450, 4996};
 *     const float *logits;                          // [vocab], valid until the next eval
 *     cellm_ctx_eval_seq(ctx, seq, prompt, 3, &logits, &err);
 *     ... pick a token, feed it back with cellm_ctx_eval_seq(ctx, seq, &tok, 1, ...) ...
 *     cellm_ctx_free(ctx);
 *     cellm_model_free(model);
 *
 * Conventions
 * - Every fallible call returns an enum cellm_status and, on failure, writes one line into
 *   the caller's struct cellm_error (which may be NULL). The message names the file, tensor
 *   or key, what was found and what was expected. On success err is left untouched.
 * - A struct cellm_model is immutable after load and may be shared between threads.
 *   A struct cellm_ctx is used by one thread at a time.
 * - Every *_free accepts NULL.
 * - Status codes are never renumbered.
 */
#ifndef CELLM_H
#define CELLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum cellm_status {
    CELLM_OK = 0,
    CELLM_ERR_IO = 1,          /* a file could not be opened, read or mapped */
    CELLM_ERR_FORMAT = 2,      /* malformed input: bad JSON, bad header, wrong shape */
    CELLM_ERR_UNSUPPORTED = 3, /* well-formed but not supported: model type, dtype, RoPE kind */
    CELLM_ERR_NOMEM = 4,       /* an allocation failed */
    CELLM_ERR_ARG = 5,         /* the caller passed an invalid argument */
    CELLM_ERR_NOT_FOUND = 6,   /* a file or tensor that must exist does not */
    CELLM_ERR_DEVICE = 7,      /* an accelerator or its runtime failed */
    CELLM_ERR_RANGE = 8,       /* a length or index beyond what is allowed */
    CELLM_ERR_CANCELLED = 9,   /* the operation was cancelled */
};

#define CELLM_ERROR_MAX 512

/* One line of detail for the last failure of a call that was given this struct. */
struct cellm_error {
    char msg[CELLM_ERROR_MAX];
};

/* Static text for a status ("ok", "format error", ...). Never NULL. */
const char *cellm_status_str(enum cellm_status st);

/* ---- model ---------------------------------------------------------------------------- */

struct cellm_model;

enum cellm_device {
    CELLM_DEVICE_CPU = 0,
    CELLM_DEVICE_CUDA = 1,
    CELLM_DEVICE_XLA = 2,
};

/* Arithmetic of the forward pass. EXACT is the numeric contract (f32, logits within
 * 1e-4 * max(1, max|ref|) of transformers float32). FAST is opt-in and outside it:
 * activations rounded to bf16 against BF16 weights, quantized to int8 per block of 32
 * against MLX 4- and 8-bit weights, and the KV cache in f16; its measured tolerance is
 * in the README. Executors that do not implement FAST refuse it at load (CPU only now). */
enum cellm_precision {
    CELLM_PRECISION_EXACT = 0,
    CELLM_PRECISION_FAST = 1,
};

struct cellm_model_params {
    enum cellm_device device; /* executor; CPU is the default and the reference */
    /* CPU worker threads of this model's contexts unless cellm_ctx_params.n_threads says
     * otherwise; 0 = one per online CPU. (Each context has its own pool; this default stays
     * for callers that set it here.) */
    int n_threads;
    const char *pjrt_plugin;        /* XLA only: path of the PJRT plugin; NULL = find one */
    enum cellm_precision precision; /* EXACT (the default) or FAST */
    /* Executor options, "key=value,key=value" (NULL or "" = the defaults); read during
     * cellm_model_load only. Each executor has its own keys (cellm_exec_options_help);
     * an unknown key or a bad value is CELLM_ERR_ARG with a message naming the key, the
     * value and what was expected. The library reads no environment variable: this is
     * the one door for tuning and test switches. */
    const char *exec_options;
    /* XLA only: ':'-separated prefixes (virtualenvs, conda prefixes, site-packages
     * directories) searched for the PJRT plugin before /opt/torch/.venv, /usr/local and
     * /usr, when pjrt_plugin is NULL. NULL = the fixed ones only. */
    const char *pjrt_search;
};

struct cellm_model_params cellm_model_params_default(void);

/* Writes into buf (at most cap bytes with the NUL, truncating) one line per option of the
 * executor for dev: "  key=range (default D): help". Returns the length the whole text
 * needs; 0 with "" when this build lacks that executor (CUDA without -DCELLM_CUDA=ON). */
size_t cellm_exec_options_help(enum cellm_device dev, char *buf, size_t cap);

/* Loads a checkpoint directory (config.json + safetensors, HF or MLX layout). The weights
 * are mapped read-only and stay mapped until cellm_model_free. */
enum cellm_status cellm_model_load(const char *dir, const struct cellm_model_params *params,
                                   struct cellm_model **out, struct cellm_error *err);
void cellm_model_free(struct cellm_model *model);

/* Sizes of the loaded model. */
int cellm_model_vocab(const struct cellm_model *model);
int cellm_model_max_context(const struct cellm_model *model);
/* End-of-sequence ids (generation_config.json, else config.json). The pointer lives as
 * long as the model. */
const int32_t *cellm_model_eos(const struct cellm_model *model, int *n);
/* The precision the model was loaded with. */
enum cellm_precision cellm_model_precision(const struct cellm_model *model);
/* "exact" or "fast" (NULL for a value outside the enum). */
const char *cellm_precision_name(enum cellm_precision p);
/* Warnings produced while loading (one per line, "" if none); lives as long as the model. */
const char *cellm_model_warnings(const struct cellm_model *model);

/* ---- what a model is (cellm inspect) ---------------------------------------------------- */

/* One labelled line of a description: "attention q, k, v, o" / "affine 4-bit g64 bf16". */
struct cellm_info_line {
    const char *key;
    const char *value;
};

/* One file of the checkpoint. */
struct cellm_info_shard {
    const char *file; /* name inside the model directory */
    uint64_t bytes;
    int n_tensors;
};

/* A loaded model described for people and tools: the config as cellm read it, how every
 * tensor group is stored, its size and where it runs. Strings are never NULL unless said. */
struct cellm_model_info {
    const char *family; /* model_type of the text model ("qwen3", "gemma3_text", ...) */
    int vocab, dim, n_layers, ffn_dim, max_pos;
    int n_heads, n_kv_heads, head_dim, rot_dims;
    double attn_scale;          /* multiplier of q.k */
    const char *rope;           /* "default, theta 10000", "llama3, theta ..., factor ..." */
    const char *rope_local;     /* the sliding layers' RoPE where it differs, else NULL */
    int rope_long_after;        /* longrope: a forward whose sequence passes this many tokens
                                   rotates with the long factors (transformers picks them per
                                   forward); 0 for every other RoPE */
    int window;                 /* sliding window in positions; 0 = none */
    int n_sliding;              /* layers that slide */
    const char *sliding_layers; /* "0,2,4" ("..." ends a long list) */
    double attn_softcap, final_softcap; /* 0 = none */
    const char *block; /* norm, activation and block structure, e.g. "RMSNorm eps 1e-06, silu" */
    int n_experts, n_experts_used, moe_ffn_dim; /* 0 without experts */
    int n_moe_layers;
    const char *moe_layers;     /* "0,1" */
    const char *experts_layout; /* "per-expert tensors", "stacked (mlx-lm switch_mlp)", ... */
    int norm_topk_prob;         /* the top-k routing weights are renormalised */
    const char *sinks;          /* attention sinks (gpt-oss), else NULL */
    const char *router;         /* the router's order and biases where not plain softmax then
                                   top-k (gpt-oss), else NULL */
    const char *expert_act;     /* the experts' activation where it is not the family's (the
                                   clamped SwiGLU of gpt-oss), else NULL */
    int bos;                    /* -1 = none */
    int n_eos;
    const int32_t *eos;
    const char *quantization; /* the config's quantization block in words; NULL = none */
    int n_storage;            /* storage of each tensor group: embedding, head, ... norms */
    const struct cellm_info_line *storage;
    uint64_t n_params;   /* logical parameters (quantized ones counted unpacked) */
    uint64_t n_bytes;    /* bytes of the weights */
    uint64_t step_bytes; /* bytes one decode step of one stream reads: all but an untied
                            embedding's, and of the routed experts n_experts_used of n_experts */
    const char *names;   /* tensor naming scheme: "canonical" or a prefix such as
                            "language_model.*" */
    int n_ignored;       /* tensors of other towers (vision, audio) left unread */
    int n_shards;
    const struct cellm_info_shard *shards;
    const char *device;         /* the executor and its device ("cpu (avx512f)") */
    const char *warnings;       /* load warnings, one per line, "" if none */
    const char *shared_experts; /* experts every token goes through beside the routed ones
                                   (glm4_moe: "ffn 1408, ..."), else NULL */
    const char *positions; /* position-dependent attention beyond RoPE and windows (Llama 4's
                              NoPE layers, chunks and query temperature, Mistral 3's query
                              scale), else NULL */
    /* layers that keep per-sequence state instead of a KV cache (LFM2's short convolutions,
     * Gated DeltaNet), and its size, in words; NULL for a model without them */
    const char *state;
    /* multi-head latent attention (DeepSeek-V3): ranks, head parts and the cached latent
     * in words, else NULL */
    const char *mla;
    /* layers unlike the others and what every layer adds (Gemma 4: the full layers' head
     * size and KV heads, KV sharing, per-layer embeddings, layer_scalar), else NULL */
    const char *layer_notes;
};

/* The description of a loaded model; it lives (unchanged) as long as the model. */
const struct cellm_model_info *cellm_model_info(const struct cellm_model *model);

/* The model types cellm runs, i = 0, 1, ... until NULL; *title (unless title is NULL) says
 * what the type covers ("Qwen2/2.5"). Static strings. */
const char *cellm_family_name(int i, const char **title);

/* ---- context: sequences, KV caches, scratch ------------------------------------------- */

struct cellm_ctx;

struct cellm_ctx_params {
    int max_seqs;       /* sequences that may exist at once; 0 = 1 */
    int n_threads;      /* CPU worker threads of this context's pool; 0 = the model's
                         * n_threads (whose 0 is one per online CPU) */
    int profile;        /* 1: time the phases of each step (CUDA; slower: no graphs); read
                         * them with cellm_ctx_profile */
    size_t cache_bytes; /* prefix cache budget (host memory on the CPU, device memory on
                         * CUDA); 0 = no prefix cache */
    int cache_block;    /* positions per prefix-cache block; 0 = 32 */
    int reuse_slots;    /* keep a freed sequence's KV state in place for
                         * cellm_ctx_seq_new_for (below); on by itself when cache_bytes > 0
                         * and the executor has no block copies for a prefix cache (XLA),
                         * or the model keeps sequence state (a slot resumed whole keeps
                         * it; the cache resumes only at its snapshots) */
};

struct cellm_ctx_params cellm_ctx_params_default(void);

enum cellm_status cellm_ctx_new(struct cellm_model *model, const struct cellm_ctx_params *params,
                                struct cellm_ctx **out, struct cellm_error *err);
void cellm_ctx_free(struct cellm_ctx *ctx);

/* Per-phase times of a context created with profile = 1, summed over its steps since
 * creation, apart for decode (index 0: steps of fewer rows than the executor's GEMM
 * threshold) and prefill (index 1); the first step of each kind warms up and is not
 * counted. */
#define CELLM_PROFILE_PHASES 16
struct cellm_profile {
    int n_phases;                            /* 0: nothing measured (no profiler) */
    const char *phase[CELLM_PROFILE_PHASES]; /* static names ("qkv", "attention", ...) */
    long steps[2];                           /* steps measured */
    double ms[2][CELLM_PROFILE_PHASES];      /* milliseconds per phase, all steps */
};
/* Fills out (zeros and n_phases 0 where the executor has no profiler or profile was off). */
void cellm_ctx_profile(const struct cellm_ctx *ctx, struct cellm_profile *out);

/* Creates an empty sequence; returns its id (>= 0), or -1 when max_seqs exist already. */
int cellm_ctx_seq_new(struct cellm_ctx *ctx);
/* Creates a sequence for a prompt of n tokens. With slot reuse (reuse_slots above), freed
 * sequences keep their KV state, and this takes the free one whose tokens begin the prompt
 * for longest, keeping that common part (at most n - 1 tokens: the last prompt token is
 * always evaluated, its logits give the first pick); *kept receives its length, and the
 * sequence continues from there, as if those tokens had just been evaluated. On a model
 * with sliding-window layers only a whole held sequence is kept (their caches cannot
 * forget their last positions). Without slot reuse this is cellm_ctx_seq_new, *kept = 0.
 * Returns -1 when max_seqs exist already. */
int cellm_ctx_seq_new_for(struct cellm_ctx *ctx, const int32_t *tokens, int n, int *kept);
/* Frees a sequence and its KV cache (with slot reuse: keeps its state for
 * cellm_ctx_seq_new_for until the slot is taken again). */
void cellm_ctx_seq_free(struct cellm_ctx *ctx, int seq);
/* Number of tokens in the sequence's KV cache. */
int cellm_ctx_seq_len(const struct cellm_ctx *ctx, int seq);
/* Forgets the sequence's tokens from position n on (n <= its length), keeping the first n
 * cached: a client that edits the end of a conversation re-evaluates only what changed.
 * CELLM_ERR_UNSUPPORTED for 0 < n < length on a model with sliding-window layers (their
 * caches keep only the window): truncate to 0 there. */
enum cellm_status cellm_ctx_seq_truncate(struct cellm_ctx *ctx, int seq, int n,
                                         struct cellm_error *err);

/* One row of a batch: append `token` to sequence `seq`; if want_logits, the logits of
 * that position are returned. */
struct cellm_batch_item {
    int32_t token;
    int32_t seq;
    int32_t want_logits;
};

/* Runs the model over n items at once (prefill of one sequence, decode of many, or any
 * mix). Items of one sequence must appear in order. On success *logits points to
 * [n_want][vocab] floats, in item order, valid until the next call on this context. */
enum cellm_status cellm_ctx_eval(struct cellm_ctx *ctx, const struct cellm_batch_item *items, int n,
                                 const float **logits, struct cellm_error *err);

/* The same step for a greedy client: for each item with want_logits, ids receives (in item
 * order) the id cellm_argmax would pick from that position's logits, and the logits stay
 * where they were computed (on a GPU they do not cross to the host: a 128k-entry
 * vocabulary is half a megabyte per row and step). */
enum cellm_status cellm_ctx_eval_argmax(struct cellm_ctx *ctx, const struct cellm_batch_item *items,
                                        int n, int32_t *ids, struct cellm_error *err);

/* MoE models: the experts the last eval picked for each of its n items,
 * ids[n][n_layers][n_experts_used] (-1 in layers without experts). Returns the ints
 * written; 0 where the executor does not record them (only the CPU does) or cap is too
 * small. For checks of fast mode: a position whose experts differ from exact mode's
 * took another path through the model. */
int cellm_ctx_routes(const struct cellm_ctx *ctx, int32_t *ids, int cap);

/* Convenience: appends n tokens to one sequence; *logits = the last position's logits. */
enum cellm_status cellm_ctx_eval_seq(struct cellm_ctx *ctx, int seq, const int32_t *tokens, int n,
                                     const float **logits, struct cellm_error *err);

/* ---- prefix cache ----------------------------------------------------------------------
 * With cache_bytes > 0 (and an executor that supports it: CPU, CUDA; for a model with
 * sequence state, the CPU), a context keeps copies of the KV state of whole blocks of
 * cache_block positions of the sequences it stores, found again by their tokens from
 * position 0. A sequence whose tokens start with
 * cached blocks gets them copied in and is evaluated from there on; the logits that
 * follow equal those of evaluating every token (bit for bit on the CPU). Least recently
 * used blocks are evicted to stay within cache_bytes. Without a cache both calls below
 * do nothing and succeed. */

/* Extends sequence seq, which holds tokens[0..len), with the longest cached continuation
 * within tokens[0..n) that ends at a block boundary; *len_out receives the sequence's new
 * length (len when nothing was found). CELLM_ERR_ARG when the sequence does not hold
 * tokens[0..len) (as recorded by the evaluations that filled it). */
enum cellm_status cellm_ctx_seq_attach(struct cellm_ctx *ctx, int seq, const int32_t *tokens, int n,
                                       int *len_out, struct cellm_error *err);
/* Caches the whole blocks of what seq holds, and the snapshot cellm_ctx_seq_snapshot took
 * (for a model with sequence state: then only the blocks up to the snapshot are new).
 * Running out of budget is not an error. */
enum cellm_status cellm_ctx_seq_store(struct cellm_ctx *ctx, int seq, struct cellm_error *err);

/* A model with sequence state (conv windows, recurrent states: cellm_cache_stats.state)
 * resumes a cached prefix only where a snapshot of that state was kept: a snapshot holds
 * the state of every state layer at one position (megabytes for a real model), so the
 * cache keeps one per stored prefix, where the caller asks. This takes one of seq's state
 * now; its length must be a whole number of blocks (> 0). The sequence keeps it (replacing
 * an earlier one) until cellm_ctx_seq_store caches it with the block that ends there, or
 * until the sequence is freed or truncated. The generation loop (cellm_gen_*) splits a
 * prompt's prefill at its last whole block before the last token and takes it there, so
 * that the same prompt, or one that extends it, resumes from it; and during decode at each
 * block boundary (the last one is cached when the request ends), so that a chat's next
 * turn resumes after the answer. Does nothing without a cache or for a model without
 * state. */
enum cellm_status cellm_ctx_seq_snapshot(struct cellm_ctx *ctx, int seq, struct cellm_error *err);

struct cellm_cache_stats {
    int block;                                   /* positions per block (0: no cache) */
    size_t budget_bytes, bytes, blocks;          /* the budget; what the cached blocks hold now
                                                  * (bytes: with their snapshots) */
    unsigned long long lookups, hits, misses;    /* attach calls that found blocks, or none */
    unsigned long long hit_tokens;               /* positions attached instead of evaluated */
    unsigned long long stored_blocks, evictions; /* evictions: blocks, and snapshots alone */
    int state;        /* 1: the model keeps sequence state; a match ends at a snapshot */
    size_t snapshots; /* blocks that carry a state snapshot now */
    unsigned long long stored_snapshots;
};
void cellm_ctx_cache_stats(const struct cellm_ctx *ctx, struct cellm_cache_stats *out);

/* ---- tokenizer and chat templates ------------------------------------------------------ */

struct cellm_tokenizer;

/* Loads tokenizer.json (+ tokenizer_config.json, special_tokens_map.json,
 * generation_config.json, chat_template.jinja) from a checkpoint directory. Needs no
 * weights. Anything in tokenizer.json that cellm does not implement is refused by name. */
enum cellm_status cellm_tokenizer_load(const char *dir, struct cellm_tokenizer **out,
                                       struct cellm_error *err);
void cellm_tokenizer_free(struct cellm_tokenizer *tok);

/* Number of ids (model vocabulary plus added tokens). */
int cellm_tokenizer_vocab(const struct cellm_tokenizer *tok);

/* Encodes UTF-8 text as the reference's encode(text, add_special_tokens). *ids is
 * allocated with malloc; the caller frees it with free(). */
enum cellm_status cellm_tokenizer_encode(const struct cellm_tokenizer *tok, const char *text,
                                         size_t len, int add_special, int32_t **ids, size_t *n,
                                         struct cellm_error *err);

/* Bounds of one encode, for input that may be hostile (a server's prompts). */
struct cellm_encode_opts {
    size_t max_ids;            /* > 0: stop with CELLM_ERR_RANGE once more ids than this
                                  would result (a prompt beyond the context is refused
                                  without encoding all of it) */
    const _Atomic int *cancel; /* NULL, or polled: nonzero stops with CELLM_ERR_CANCELLED */
    uint64_t regex_steps;      /* backtracking steps per regex match attempt; 0 = 10^7
                                  (Oniguruma's default); beyond it the encode fails with an
                                  error naming the pattern */
};

/* cellm_tokenizer_encode within the bounds of o (NULL = none but the regex default). */
enum cellm_status cellm_tokenizer_encode_opts(const struct cellm_tokenizer *tok, const char *text,
                                              size_t len, int add_special,
                                              const struct cellm_encode_opts *o, int32_t **ids,
                                              size_t *n, struct cellm_error *err);

/* Decodes ids to UTF-8 text (skip_special drops special tokens). *text is NUL-terminated,
 * allocated with malloc; the caller frees it. */
enum cellm_status cellm_tokenizer_decode(const struct cellm_tokenizer *tok, const int32_t *ids,
                                         size_t n, int skip_special, char **text,
                                         struct cellm_error *err);

/* The vocabulary string of one id (as stored in tokenizer.json), or NULL if out of range.
 * Lives as long as the tokenizer. */
const char *cellm_tokenizer_piece(const struct cellm_tokenizer *tok, int32_t id);

/* End-of-sequence ids the tokenizer knows of (eos_token of tokenizer_config.json and
 * generation_config.json). Lives as long as the tokenizer. */
const int32_t *cellm_tokenizer_eos(const struct cellm_tokenizer *tok, int *n);

/* Streaming decoder: feed ids one at a time, get back only complete UTF-8 text. */
struct cellm_detok;
enum cellm_status cellm_detok_new(const struct cellm_tokenizer *tok, struct cellm_detok **out,
                                  struct cellm_error *err);
void cellm_detok_free(struct cellm_detok *d);
/* Appends one id; *text points to the newly complete text (NUL-terminated, possibly ""),
 * valid until the next call on d. */
enum cellm_status cellm_detok_push(struct cellm_detok *d, int32_t id, const char **text,
                                   struct cellm_error *err);

struct cellm_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8 */
};

/* Renders the checkpoint's chat template, as transformers' apply_chat_template would.
 * extra_json: NULL or a JSON object of extra template variables, e.g.
 * {"enable_thinking": false}. *text is malloc'd, NUL-terminated; the caller frees it. */
enum cellm_status cellm_tokenizer_chat(const struct cellm_tokenizer *tok,
                                       const struct cellm_chat_message *msgs, size_t n,
                                       int add_generation_prompt, const char *extra_json,
                                       char **text, struct cellm_error *err);

/* Replaces the checkpoint's chat template with tmpl (Jinja source, copied) for every later
 * cellm_tokenizer_chat; NULL restores the checkpoint's. Not thread-safe: call it before the
 * tokenizer is shared. */
enum cellm_status cellm_tokenizer_set_chat_template(struct cellm_tokenizer *tok, const char *tmpl,
                                                    struct cellm_error *err);

/* Whether cellm_tokenizer_chat has a template to render (the checkpoint's or one set). */
int cellm_tokenizer_has_chat_template(const struct cellm_tokenizer *tok);

/* Renders the chat template with the variables of one JSON object, as
 * apply_chat_template(messages, tools=, documents=, add_generation_prompt=, **kwargs)
 * would: vars_json holds "messages" (required) and any of "tools", "documents" and
 * template kwargs ("enable_thinking", "reasoning_effort", ...); the special tokens of
 * tokenizer_config.json are added unless vars_json sets them, and add_generation_prompt
 * is set. Messages are in OpenAI's shape: an assistant's tool_calls[].function.arguments
 * given as a JSON string is passed to the template as the object it encodes (templates
 * iterate over it or print it with tojson; llama-server does the same). */
enum cellm_status cellm_tokenizer_chat_vars(const struct cellm_tokenizer *tok,
                                            const char *vars_json, int add_generation_prompt,
                                            char **text, struct cellm_error *err);

/* The Jinja source of the template in use (the one set, else the checkpoint's), or NULL.
 * Lives until the next cellm_tokenizer_set_chat_template or the tokenizer's free. */
const char *cellm_tokenizer_chat_template(const struct cellm_tokenizer *tok);

/* With keep nonzero, d's later text includes special tokens (a tool call's or a reasoning
 * channel's markers are special tokens in some families: Llama's <|python_tag|>,
 * gpt-oss's <|channel|>, Mistral's [TOOL_CALLS]). */
void cellm_detok_keep_special(struct cellm_detok *d, int keep);

/* ---- sampling ------------------------------------------------------------------------- */

/* Order of application: repetition, frequency and presence penalties over the last
 * penalty_last_n tokens; temperature; top-k; top-p; min-p; a draw from the seeded
 * generator. temperature 0 is greedy (argmax, lowest index on ties). */
struct cellm_sampler_params {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off (HF semantics: divide positive, multiply negative) */
    float frequency_penalty;  /* 0 = off (OpenAI semantics) */
    float presence_penalty;   /* 0 = off (OpenAI semantics) */
    int penalty_last_n;       /* window of past tokens for the penalties; -1 = all */
    uint64_t seed;            /* generator seed */
};

/* Greedy (temperature 0), every filter and penalty off, penalty_last_n -1, seed 0. */
struct cellm_sampler_params cellm_sampler_params_default(void);

/* Fills temperature/top_k/top_p/min_p/repetition_penalty from generation_config.json of dir
 * where it sets them. do_sample false, or do_sample absent and none of temperature, top_k,
 * top_p, min_p present, means greedy (temperature 0); do_sample true without a temperature
 * turns a temperature of 0 into 1. A missing file leaves p unchanged; so does a failure
 * (CELLM_ERR_FORMAT naming the file and key for a wrong type or out-of-range value). */
enum cellm_status cellm_sampler_params_from_dir(const char *dir, struct cellm_sampler_params *p,
                                                struct cellm_error *err);

/* A sampler for one sequence (one thread at a time): its penalty history, its generator
 * state (seeded from p->seed) and [vocab]-sized scratch. Checks p (CELLM_ERR_ARG naming the
 * field: temperature >= 0, top_k >= 0, top_p and min_p in [0, 1], repetition_penalty > 0,
 * penalty_last_n >= -1). */
struct cellm_sampler;
enum cellm_status cellm_sampler_new(const struct cellm_sampler_params *p, int vocab,
                                    struct cellm_sampler **out, struct cellm_error *err);
void cellm_sampler_free(struct cellm_sampler *s);
/* Records a token of the context (prompt or generated) for the penalties; ids outside
 * [0, vocab) are ignored. Never allocates. */
void cellm_sampler_accept(struct cellm_sampler *s, int32_t token);
/* Picks the next token from logits [vocab] (not modified). NaN logits are never picked; if
 * the largest logit is +inf, the greedy token is returned. Returns -1 only for NULL args. */
int32_t cellm_sampler_sample(struct cellm_sampler *s, const float *logits);
/* Whether cellm_sampler_sample is plain greedy here (temperature 0, no penalty): then its
 * pick is cellm_argmax's, which cellm_ctx_eval_argmax can make without the logits. */
int cellm_sampler_is_greedy(const struct cellm_sampler *s);
/* The greedy token: the first index of the largest of n logits. NaN never wins; if every
 * logit is NaN or -inf, the first that is not NaN (0 if none, or n <= 0). */
int32_t cellm_argmax(const float *logits, int n);

/* ---- constrained decoding (src/grammar/) ------------------------------------------------
 * A grammar restricts what a generation may produce: llama-server's GBNF, or a JSON Schema
 * compiled to GBNF (see README "Structured output" for the keywords supported; any other
 * keyword is refused by name with its JSON path: a schema is never silently loosened).
 * A compiled grammar is immutable and may be shared by any number of generations and
 * threads. A matcher is one generation's position in a grammar (one thread at a time).
 * The vocabulary (each token's bytes, and a trie over them) is built once per tokenizer. */

struct cellm_grammar;
struct cellm_grammar_vocab;
struct cellm_matcher;

enum cellm_grammar_kind {
    CELLM_GRAMMAR_GBNF = 0,        /* text is GBNF with a `root` rule */
    CELLM_GRAMMAR_JSON_SCHEMA = 1, /* text is a JSON Schema (JSON text) */
    CELLM_GRAMMAR_JSON_OBJECT = 2  /* any JSON object; text is ignored (may be NULL) */
};

/* Compiles text[0..len). Errors: CELLM_ERR_FORMAT (syntax, with line:column for GBNF),
 * CELLM_ERR_UNSUPPORTED (a schema keyword not supported: the message names it and its JSON
 * path, e.g. "json_schema: 'format' at /properties/when is not supported"). */
enum cellm_status cellm_grammar_new(enum cellm_grammar_kind kind, const char *text, size_t len,
                                    struct cellm_grammar **out, struct cellm_error *err);

/* One way to answer: the literal prefix, then JSON valid for schema (JSON text; NULL = any
 * JSON object), then the literal suffix. For forced tool calls, e.g. prefix
 * "<tool_call>
{"name": "get_weather", "arguments": ", suffix "}
</tool_call>". */
struct cellm_grammar_part {
    const char *prefix; /* NULL = "" */
    const char *schema;
    const char *suffix; /* NULL = "" */
};
/* A grammar accepting exactly one of parts[0..n) (n >= 1), each as described above. */
enum cellm_status cellm_grammar_choice(const struct cellm_grammar_part *parts, int n,
                                       struct cellm_grammar **out, struct cellm_error *err);
/* Another owner of g (returns g): each owner calls cellm_grammar_free; the last frees it.
 * Thread-safe. */
struct cellm_grammar *cellm_grammar_ref(struct cellm_grammar *g);
void cellm_grammar_free(struct cellm_grammar *g);
/* The GBNF the grammar was compiled from (schemas included). Lives as long as g. */
const char *cellm_grammar_text(const struct cellm_grammar *g);

/* The vocabulary of tok's first n_vocab ids (the model's size). Special tokens and ids
 * without text are never allowed by a grammar. Immutable; free after every user. */
enum cellm_status cellm_grammar_vocab_new(const struct cellm_tokenizer *tok, int n_vocab,
                                          struct cellm_grammar_vocab **out,
                                          struct cellm_error *err);
/* The same from explicit byte strings (tokens[i] NULL or lens[i] 0: never allowed). */
enum cellm_status cellm_grammar_vocab_from_bytes(const char *const *tokens, const size_t *lens,
                                                 int n, struct cellm_grammar_vocab **out,
                                                 struct cellm_error *err);
int cellm_grammar_vocab_size(const struct cellm_grammar_vocab *v);
void cellm_grammar_vocab_free(struct cellm_grammar_vocab *v);

/* A matcher at the start of g; v may be NULL (then only accept_bytes works). Both must
 * outlive it. A grammar keeps the matchers of finished generations (cellm_matcher_free)
 * and hands them out again with their caches, so that masks computed for one request
 * serve the next request with the same grammar object. */
enum cellm_status cellm_matcher_new(const struct cellm_grammar *g,
                                    const struct cellm_grammar_vocab *v, struct cellm_matcher **out,
                                    struct cellm_error *err);
void cellm_matcher_free(struct cellm_matcher *m);
/* Sets bit id (mask[id / 32] >> id % 32) for every token allowed next, clears the rest
 * ((n_vocab + 31) / 32 words). EOS is not among them: it is allowed when can_end. */
enum cellm_status cellm_matcher_mask(struct cellm_matcher *m, uint32_t *mask,
                                     struct cellm_error *err);
/* Advances by a token / by bytes. CELLM_ERR_ARG (and no change) when not allowed. */
enum cellm_status cellm_matcher_accept_token(struct cellm_matcher *m, int32_t id,
                                             struct cellm_error *err);
enum cellm_status cellm_matcher_accept_bytes(struct cellm_matcher *m, const void *bytes, size_t n,
                                             struct cellm_error *err);
/* Whether the grammar may end here; whether it must (nothing else can follow). */
int cellm_matcher_can_end(const struct cellm_matcher *m);
int cellm_matcher_done(const struct cellm_matcher *m);

/* ---- generation ------------------------------------------------------------------------
 * The one generation loop, shared by `cellm generate` and `cellm serve`. A struct
 * cellm_gen is one request: its prompt, its sequence in a context, its sampler, its
 * end-of-sequence set, its detokenizer and stop strings. cellm_gen_step advances many of
 * them by one batched evaluation.
 *
 * Decided here once for every front end:
 * - EOS is the union of the model's ids and the tokenizer's. A picked EOS ends the
 *   output with "stop" and is neither printed nor returned among the ids (unless
 *   ignore_eos, when it is an ordinary token).
 * - "Greedy" is the sampler's own verdict (cellm_sampler_is_greedy), so penalties at
 *   temperature 0 are applied: only a plain argmax is made on the device.
 * - A detokenizer failure fails the request (cellm_gen_error), it never becomes "".
 * - A context that is full ends the output with "length", as max_tokens does.
 * - Stop strings end the output before their first occurrence; text that might be the
 *   start of one is held back until it is known not to be. */

struct cellm_gen_params {
    int max_tokens;          /* tokens generated at most; 0 = until EOS, a stop or a full context */
    int min_tokens;          /* EOS cannot be picked before this many (its logits are masked) */
    const char *const *stop; /* stop strings (copied); need a tokenizer */
    int n_stop;
    int ignore_eos;   /* EOS ids are ordinary tokens */
    int logprobs;     /* -1 = none; 0..20: the picked token's log-probability and this
                       * many most likely alternatives (log-softmax of the raw logits) */
    int ctx_limit;    /* prompt + generated tokens at most; 0 = the model's maximum */
    int use_cache;    /* attach a cached prefix of the prompt, and store what was computed */
    int keep_special; /* the text includes special tokens (cellm_detok_keep_special) */
    struct cellm_sampler_params sampling;
    /* NULL, or the grammar the output must follow (borrowed: it must outlive the gen),
     * with the vocabulary of the gen's tokenizer (required with a grammar). Tokens the
     * grammar does not allow get -inf before the sampler picks (never on the device argmax
     * path); EOS is allowed exactly where the grammar may end, and a grammar that is
     * complete ends the output with "stop". logprobs stay those of the raw logits. */
    const struct cellm_grammar *grammar;
    const struct cellm_grammar_vocab *grammar_vocab;
};

/* max_tokens 0, min_tokens 0, no stops, logprobs -1, ctx_limit 0, use_cache 1, greedy. */
struct cellm_gen_params cellm_gen_params_default(void);

struct cellm_gen;

/* Takes a sequence of ctx (CELLM_ERR_RANGE when none is free) for a prompt of n >= 1 ids.
 * tok may be NULL (ids only: no text, and stop strings are refused). */
enum cellm_status cellm_gen_new(struct cellm_ctx *ctx, const struct cellm_tokenizer *tok,
                                const int32_t *prompt, int n, const struct cellm_gen_params *p,
                                struct cellm_gen **out, struct cellm_error *err);
/* Frees the gen and gives its sequence back (storing its blocks in the prefix cache
 * first when use_cache). Accepts NULL. */
void cellm_gen_free(struct cellm_gen *g);

/* One batched evaluation over the unfinished gens among gens[0..n): one row for each gen
 * that decodes, then prompt rows of gens still in their prompt, up to prefill_budget rows
 * in array order (0 = no limit). A gen in its prompt first attaches what the prefix cache
 * holds of it, and waits (takes no rows) while an earlier gen of the array is computing
 * blocks that it shares, so that a shared prefix is computed once. When every gen that
 * picks a token in this step is greedy (and wants no logprobs), the picks are made where
 * the logits are (cellm_ctx_eval_argmax). A failed evaluation fails every gen that had a
 * row in it and is returned; a gen's own failure (its detokenizer) only ends that gen. */
struct cellm_gen_step_stats {
    int prefill_rows, decode_rows; /* rows evaluated in the step */
    int waiting;                   /* gens that waited for a shared prefix */
};
enum cellm_status cellm_gen_step(struct cellm_ctx *ctx, struct cellm_gen *const *gens, int n,
                                 int prefill_budget, struct cellm_gen_step_stats *stats,
                                 struct cellm_error *err);

struct cellm_logprob {
    int32_t id;
    float logprob;
};

/* What the last step produced for g, and where g stands. Pointers live until the next
 * step or cellm_gen_free. */
struct cellm_gen_out {
    const int32_t *ids; /* tokens picked in the last step (0 or 1; no EOS) */
    int n_ids;
    const char *text; /* text released in the last step (NUL-terminated) */
    size_t text_len;
    const struct cellm_logprob *lp;  /* [n_ids] the picked tokens' log-probabilities */
    const struct cellm_logprob *top; /* [n_ids][n_top] alternatives, most likely first */
    int n_top;
    const char *finish; /* NULL while running, then "stop" or "length" */
    const char *error;  /* NULL, or why g failed (then finish is NULL and g is done) */
    int done;
    int n_prompt, n_cached; /* prompt tokens, and how many of them came from the cache */
    int n_gen;              /* tokens picked so far (an EOS that ended it included) */
    int in_prompt;          /* prompt tokens not yet evaluated */
};
void cellm_gen_output(const struct cellm_gen *g, struct cellm_gen_out *out);

#ifdef __cplusplus
}
#endif
#endif
