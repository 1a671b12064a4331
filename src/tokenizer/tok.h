/*
 * tok.h: the tokenizer's internal structures, shared by its files.
 *
 * A tokenizer is the pipeline of tokenizer.json: added tokens are cut out of the raw text
 * first, the rest is normalized, pre-tokenized into pieces, and each piece is encoded by
 * the BPE model; the post-processor adds special tokens. Decoding maps ids to their strings
 * and runs the decoder chain. Every stage works on plain byte strings: offsets are not
 * tracked, since cellm only needs ids and text. Pieces live in one growable buffer with
 * (offset, length) spans, so a stage rebuilds its output in one allocation pattern.
 */
#ifndef CELLM_TOKENIZER_TOK_H
#define CELLM_TOKENIZER_TOK_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "cellm.h"
#include "tokenizer/regex.h"

/* A growable byte string. */
struct cellm_tok_buf {
    char *p;
    size_t n, cap;
};
int cellm_tok_buf_put(struct cellm_tok_buf *b, const void *s, size_t n); /* 0 on OOM */

/* A list of strings (pieces of text or decoded tokens) in one buffer. at0 marks a piece
 * that starts at offset 0 of the original input (Metaspace's "first" scheme needs it). */
struct cellm_tok_pieces {
    struct cellm_tok_buf text;
    size_t *span; /* [2 * n]: offset, length */
    uint8_t *at0; /* [n] */
    size_t n, cap;
};
int cellm_tok_pieces_add(struct cellm_tok_pieces *p, const char *s, size_t len, int at0);
void cellm_tok_pieces_free(struct cellm_tok_pieces *p);
#define CELLM_PIECE(ps, i) ((ps)->text.p + (ps)->span[2 * (i)])
#define CELLM_PIECE_LEN(ps, i) ((ps)->span[2 * (i) + 1])

/* A string-or-regex pattern of Split, Replace (normalizer and decoder). */
struct cellm_tok_pattern {
    char *literal; /* String pattern, or NULL */
    size_t literal_len;
    struct cellm_regex *re; /* Regex pattern, or NULL */
};
enum cellm_status cellm_tok_pattern_parse(const cJSON *j, const char *what,
                                          struct cellm_tok_pattern *p, struct cellm_error *err);
void cellm_tok_pattern_free(struct cellm_tok_pattern *p);
/* Spans (start, end, is_match) triples covering s[0..n) in order; *out cellm_malloc'd. */
enum cellm_status cellm_tok_pattern_split(const struct cellm_tok_pattern *p, const char *s,
                                          size_t n, const struct cellm_regex_limits *lim,
                                          size_t **out, size_t *count, struct cellm_error *err);
/* Replaces every match in s[0..n) with content, appending to b; CELLM_ERR_RANGE (and
 * nothing appended) when b would hold more than limit bytes. */
enum cellm_status cellm_tok_pattern_replace(const struct cellm_tok_pattern *p, const char *s,
                                            size_t n, const char *content, size_t limit,
                                            const struct cellm_regex_limits *lim,
                                            struct cellm_tok_buf *b, struct cellm_error *err);

/* Components, parsed from their JSON objects. `what` names the file for messages. */
struct cellm_tok_norm;
struct cellm_tok_pre;
struct cellm_tok_dec;
enum cellm_status cellm_tok_norm_parse(const cJSON *j, const char *what,
                                       struct cellm_tok_norm **out, struct cellm_error *err);
void cellm_tok_norm_free(struct cellm_tok_norm *n);
/* Normalizes s[0..n) into a new malloc'd string. */
enum cellm_status cellm_tok_norm_apply(const struct cellm_tok_norm *nm, const char *s, size_t n,
                                       const struct cellm_regex_limits *lim, char **out,
                                       size_t *out_len, struct cellm_error *err);

enum cellm_status cellm_tok_pre_parse(const cJSON *j, const char *what, struct cellm_tok_pre **out,
                                      struct cellm_error *err);
void cellm_tok_pre_free(struct cellm_tok_pre *p);
/* Replaces *pieces by its pre-tokenization. lim: NULL or the regex limits. With
 * lim->max_matches set, a stage that would produce more pieces than that stops early with
 * CELLM_ERR_RANGE and a message starting "pre-tokenizer: more than" or "regex: more than"
 * (the caller bounds the pieces only when cellm_tok_pre_keeps says none can vanish). */
enum cellm_status cellm_tok_pre_apply(const struct cellm_tok_pre *p,
                                      struct cellm_tok_pieces *pieces,
                                      const struct cellm_regex_limits *lim,
                                      struct cellm_error *err);

/* 1 when no stage of p drops text (no Removed behaviour, no Whitespace splitting): every
 * non-empty piece a stage receives then leaves at least one non-empty piece, so a stage's
 * piece count is a lower bound on the final one. */
int cellm_tok_pre_keeps(const struct cellm_tok_pre *p);
/* 1 when p has a ByteLevel stage (its pieces are then made of the 256 byte characters). */
int cellm_tok_pre_byte_level(const struct cellm_tok_pre *p);

enum cellm_status cellm_tok_dec_parse(const cJSON *j, const char *what, struct cellm_tok_dec **out,
                                      struct cellm_error *err);
void cellm_tok_dec_free(struct cellm_tok_dec *d);
/* Runs the decoder chain over the token strings in *pieces (replaced by the result). */
enum cellm_status cellm_tok_dec_apply(const struct cellm_tok_dec *d,
                                      struct cellm_tok_pieces *pieces, struct cellm_error *err);

/* Replaces *cur (one token's string) by the bytes the decoder chain gives it in the middle
 * of a text (no UTF-8 repair, no Strip); for constrained decoding. */
enum cellm_status cellm_tok_dec_token(const struct cellm_tok_dec *d, struct cellm_tok_buf *cur,
                                      struct cellm_error *err);

/* The byte-level alphabet: byte b is shown as code point cellm_tok_byte_char(b). */
uint32_t cellm_tok_byte_char(uint8_t b);
/* Inverse; -1 when cp is not one of the 256. */
int cellm_tok_char_byte(uint32_t cp);

/* Lossy UTF-8: invalid sequences become U+FFFD (one per maximal invalid part). */
enum cellm_status cellm_tok_utf8_lossy(const char *s, size_t n, struct cellm_tok_buf *b);

/* ---- BPE model ---- */

/* Ids may leave holes (ids given to added tokens only), but never more than this many:
 * every id must be below the number of entries that exist plus this slack. */
#define CELLM_TOK_ID_SLACK 65536

struct cellm_tok_bpe;
enum cellm_status cellm_tok_bpe_parse(const cJSON *model, const char *what,
                                      struct cellm_tok_bpe **out, struct cellm_error *err);
void cellm_tok_bpe_free(struct cellm_tok_bpe *b);
int32_t cellm_tok_bpe_size(const struct cellm_tok_bpe *b); /* 1 + largest id */
const char *cellm_tok_bpe_piece(const struct cellm_tok_bpe *b, int32_t id);
int32_t cellm_tok_bpe_lookup(const struct cellm_tok_bpe *b, const char *s, size_t n);
/* 1 when every non-empty piece encodes to at least one id: the model has an unknown token,
 * byte fallback covering all 256 bytes, or (byte_level: the pieces are byte characters)
 * all 256 byte characters in its vocabulary. Otherwise unknown characters vanish. */
int cellm_tok_bpe_total(const struct cellm_tok_bpe *b, int byte_level);

/* An id vector. */
struct cellm_tok_ids {
    int32_t *v;
    size_t n, cap;
};
int cellm_tok_ids_push(struct cellm_tok_ids *ids, int32_t id); /* 0 on OOM */

/* A per-call cache of encoded words (the tokenizer itself stays immutable). */
struct cellm_tok_cache;
struct cellm_tok_cache *cellm_tok_cache_new(void);
void cellm_tok_cache_free(struct cellm_tok_cache *c);
/* Encodes one pre-tokenized piece, appending its ids. */
enum cellm_status cellm_tok_bpe_encode(const struct cellm_tok_bpe *b, struct cellm_tok_cache *c,
                                       const char *s, size_t n, struct cellm_tok_ids *ids,
                                       struct cellm_error *err);

#endif
