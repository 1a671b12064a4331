/*
 * tokenizer.h: struct cellm_tokenizer, shared by tokenizer.c, detok.c and chat.c.
 */
#ifndef CELLM_TOKENIZER_TOKENIZER_H
#define CELLM_TOKENIZER_TOKENIZER_H

#include "tokenizer/added.h"
#include "tokenizer/tok.h"

struct cellm_tokenizer {
    struct cellm_tok_bpe *bpe;
    struct cellm_tok_norm *norm; /* NULL = none */
    struct cellm_tok_pre *pre;   /* NULL = none */
    struct cellm_tok_dec *dec;   /* NULL = join pieces with " " */
    int32_t *post;               /* template for one sequence; -1 marks the text */
    size_t npost;
    struct cellm_tok_added *added;
    size_t nadded;
    struct cellm_tok_trie raw_trie, norm_trie;
    int32_t size;      /* number of ids */
    int32_t *added_of; /* [size]: index into added, or -1 */
    int32_t *eos;
    int neos;
    cJSON *config;       /* tokenizer_config.json, or NULL */
    char *template_file; /* chat_template.jinja, or NULL */
    char *template_set;  /* cellm_tokenizer_set_chat_template's, or NULL: wins */
    struct cellm_jinja_tmpl *template_parsed;     /* the checkpoint's, parsed at load */
    struct cellm_jinja_tmpl *template_set_parsed; /* template_set's */
    char *what;                                   /* path of tokenizer.json, for messages */
    /* every pre-tokenized piece is provably at least one id (no stage drops text, and
     * the model encodes any non-empty piece): pre-tokenization can stop once it has more
     * pieces than an encode may produce ids */
    int pre_bounded;
};

/* The token string of an id: the added token's content or the model's piece. */
const char *cellm_tok_id_str(const struct cellm_tokenizer *tok, int32_t id, size_t *len);

/* chat.c: parses the checkpoint's chat template, if any (at load: a broken template
 * fails the load with its line:column). */
enum cellm_status cellm_tok_chat_prepare(struct cellm_tokenizer *tok, struct cellm_error *err);

/* Decodes ids into b (appended, NUL-terminated). */
enum cellm_status cellm_tok_decode_raw(const struct cellm_tokenizer *tok, const int32_t *ids,
                                       size_t n, int skip_special, struct cellm_tok_buf *b,
                                       struct cellm_error *err);

/* Appends the bytes id stands for in generated text to b, and sets *text: 0 for special
 * tokens and ids without a string (nothing appended), 1 otherwise. For the grammar's
 * vocabulary (src/grammar/vocab.c). */
enum cellm_status cellm_tokenizer_token_bytes(const struct cellm_tokenizer *tok, int32_t id,
                                              struct cellm_tok_buf *b, int *text,
                                              struct cellm_error *err);

#endif
