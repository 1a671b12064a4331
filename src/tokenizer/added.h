/*
 * added.h: added tokens of tokenizer.json and the trie that finds them in text.
 */
#ifndef CELLM_TOKENIZER_ADDED_H
#define CELLM_TOKENIZER_ADDED_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

struct cellm_tok_added {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, normalized, single_word;
};

struct trie_node;
struct cellm_tok_trie {
    struct trie_node *nodes;
    size_t n, cap;
    uint8_t first[256]; /* bytes that can start a token */
};

/* Adds text s[0..n) for added token index `token`; 0 on OOM. */
int cellm_tok_trie_add(struct cellm_tok_trie *t, const char *s, size_t n, int32_t token);
void cellm_tok_trie_free(struct cellm_tok_trie *t);

/* Cuts s[0..n) into triples (start, end, token index or SIZE_MAX for plain text). */
enum cellm_status cellm_tok_added_split(const struct cellm_tok_trie *t,
                                        const struct cellm_tok_added *toks, const char *s, size_t n,
                                        size_t **out, size_t *count, struct cellm_error *err);

#endif
