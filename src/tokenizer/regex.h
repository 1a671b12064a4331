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

/* Compiles a UTF-8 pattern; anything outside the supported subset is CELLM_ERR_UNSUPPORTED
 * with a message naming the construct (`what` prefixes messages). */
enum cellm_status cellm_regex_compile(const char *pat, const char *what, struct cellm_regex **out,
                                      struct cellm_error *err);
void cellm_regex_free(struct cellm_regex *re);

/* All non-overlapping non-empty matches in cps[0..n), as pairs (start, end) of code point
 * indices into *spans (cellm_malloc'd, 2 * *nmatch entries). */
enum cellm_status cellm_regex_find_all(const struct cellm_regex *re, const uint32_t *cps, size_t n,
                                       size_t **spans, size_t *nmatch, struct cellm_error *err);

#endif
