/*
 * vocab.h: struct cellm_grammar_vocab (vocab.c): the tokens' bytes and their trie, shared by
 * the matcher (match.c). Immutable once built; any number of matchers may read it.
 */
#ifndef CELLM_GRAMMAR_VOCAB_H
#define CELLM_GRAMMAR_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"
#include "tokenizer/tokenizer.h"

#define GV_MAX_LEN 1024 /* longer tokens are left out of the trie (never allowed) */

struct cellm_grammar_vocab {
    int n_vocab;
    uint8_t *bytes;  /* every token's bytes, back to back */
    size_t *off;     /* [n_vocab] where each token's bytes start */
    uint32_t *len;   /* [n_vocab] 0 = no bytes (special, or too long): never allowed */
    int32_t *sorted; /* [n_sorted] ids with bytes, sorted by bytes then id */
    int n_sorted, max_len;
    uint64_t hash; /* of every id's bytes: a matcher kept for reuse checks it (vocab.c) */
    /* the trie in preorder: [n_nodes]; node 0 is the root (no byte) */
    uint32_t n_nodes;
    uint8_t *nbyte;
    uint16_t *ndepth;
    uint32_t *nend; /* one past the node's subtree */
    uint32_t *ntok; /* ids ending at the node: sorted[ntok[i] .. ntok[i] + nhere[i]) */
    uint32_t *nhere;
};

#endif
