/*
 * regex.h: the small backtracking regex engine used by Split pre-tokenizers and Replace.
 *
 * It covers what tokenizer.json patterns use: literals, `.`, classes with ranges and
 * negation, \s \S \d \D \w \W, Unicode categories \p{L} \p{Lu} \P{N} ..., alternation,
 * groups ( ) (?: ) (?i: ) (?i), greedy and lazy quantifiers ? * + {n,m}, lookahead (?= )
 * (?! ), and anchors ^ $. Semantics are those of Perl-style engines (Oniguruma, which the
 * reference uses): leftmost match, alternatives tried in order. It matches over decoded code
 * points so that classes are tested once per character.
 */
#ifndef CELLM_TOKENIZER_REGEX_H
#define CELLM_TOKENIZER_REGEX_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

struct cellm_regex;

/* Limits of one search. Matching backtracks, so a pattern like (a+)+b costs exponential
 * time in the input; like Oniguruma's retry limit (what the reference tokenizers use),
 * each match attempt gets a budget of steps, and running out fails the search with an
 * error that names the pattern. Recursion follows the real stack of the calling thread
 * (whatever its size), stopping with an error well before its end. */
struct cellm_regex_limits {
    uint64_t match_steps;      /* per match attempt; 0 = CELLM_REGEX_STEPS */
    const _Atomic int *cancel; /* polled; nonzero ends the search with CELLM_ERR_CANCELLED */
    size_t max_matches;        /* > 0: finding more matches than this ends the search with
                                  CELLM_ERR_RANGE, message "regex: more than N matches" (the
                                  tokenizer's early stop; see cellm_tok_pre_apply) */
};
#define CELLM_REGEX_STEPS 10000000ull /* Oniguruma's default retry limit in match */
/* A whole search may take CELLM_REGEX_STEPS plus this many steps per input character
 * (real tokenizer patterns take a few per character). */
#define CELLM_REGEX_STEPS_PER_CHAR 1000ull
/* Groups and quantifiers nest at most this deep in a pattern (deeper ones are refused at
 * compile time: the parser and the matcher recurse once per level). */
#define CELLM_REGEX_MAX_NEST 256

/* Compiles a UTF-8 pattern; anything outside the supported subset is CELLM_ERR_UNSUPPORTED
 * with a message naming the construct (`what` prefixes messages). */
enum cellm_status cellm_regex_compile(const char *pat, const char *what, struct cellm_regex **out,
                                      struct cellm_error *err);
void cellm_regex_free(struct cellm_regex *re);

/* All non-overlapping non-empty matches in cps[0..n), as pairs (start, end) of code point
 * indices into *spans (cellm_malloc'd, 2 * *nmatch entries). */
enum cellm_status cellm_regex_find_all(const struct cellm_regex *re, const uint32_t *cps, size_t n,
                                       const struct cellm_regex_limits *lim, size_t **spans,
                                       size_t *nmatch, struct cellm_error *err);

#endif
