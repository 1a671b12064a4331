/*
 * grammar.h: the grammar module's shared internals (constrained decoding).
 *
 * The module owns four things, bottom up:
 *  - the compiled grammar (struct cellm_grammar): rules of alternatives, each alternative a
 *    run of elements in one flat array ended by GE_END. An element is a character class
 *    (sorted, merged, non-negated code point ranges; negation is resolved at compile time)
 *    or a rule reference. Repetition, optional parts and groups are desugared into helper
 *    rules by the GBNF parser (gbnf.c), so the matcher knows only classes and references;
 *  - JSON Schema to GBNF text (schema.c, with regex patterns in pattern.c);
 *  - the vocabulary trie (vocab.c): every token's bytes, sorted, as a preorder trie;
 *  - the matcher (match.c): a pushdown recognizer whose stacks are hash-consed, and a lazily
 *    built byte automaton over sets of stacks, with the token masks cached per state.
 * It knows nothing of models; the engine applies masks to logits (generate.c).
 */
#ifndef CELLM_GRAMMAR_GRAMMAR_H
#define CELLM_GRAMMAR_GRAMMAR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

#define GR_IDLE 4 /* matchers kept per grammar */

enum { GE_END = 0, GE_CHAR = 1, GE_REF = 2 };

/* Frees a matcher for good (cellm_matcher_free may keep it in its grammar instead). */
struct cellm_matcher;
void cellm_gr_matcher_destroy(struct cellm_matcher *m);

struct gr_elem {
    uint32_t type;
    uint32_t a; /* GE_CHAR: first range (index into ranges, in pairs); GE_REF: rule */
    uint32_t b; /* GE_CHAR: number of ranges */
};

struct gr_rule {
    uint32_t first_alt, n_alts; /* into cellm_grammar.alts */
};

struct cellm_grammar {
    struct gr_elem *el; /* every alternative's elements, each run ended by GE_END */
    size_t n_el;
    uint32_t *ranges; /* [lo, hi] pairs, inclusive */
    size_t n_ranges;
    uint32_t *alts; /* element index where each alternative starts */
    size_t n_alts;
    struct gr_rule *rules;
    size_t n_rules;
    uint32_t root;
    char *text; /* the GBNF source it was compiled from */
    /* shared ownership (cellm_grammar_ref), and matchers of finished generations kept with
     * their caches, so that the next generation with this grammar starts warm */
    atomic_int refs;
    pthread_mutex_t mu;
    struct cellm_matcher *idle[GR_IDLE];
    int n_idle;
};

/* Limits that keep a hostile grammar from exhausting memory (refused with CELLM_ERR_RANGE). */
#define GR_MAX_ELEMS (1u << 20)
#define GR_MAX_REPEAT 4096

/* Parses llama-server GBNF text (root rule "root") into g. Errors carry line:column. */
enum cellm_status cellm_gr_parse(const char *text, size_t len, struct cellm_grammar **out,
                                 struct cellm_error *err);

/* JSON Schema text to GBNF text (malloc'd, NUL-terminated). json_object: any JSON object. */
struct gr_buf {
    char *p;
    size_t n, cap;
    int oom;
};
void cellm_gr_buf_put(struct gr_buf *b, const char *s, size_t n);
void cellm_gr_buf_puts(struct gr_buf *b, const char *s);
void cellm_gr_buf_printf(struct gr_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* A GBNF string literal for bytes s[0..n) (quoted and escaped). */
void cellm_gr_buf_literal(struct gr_buf *b, const char *s, size_t n);

/* Appends GBNF rules for a schema: its root rule is named `<prefix>root`. Rules common to
 * all schemas (json-string, json-value, ...) are appended once per buffer, tracked in
 * *common. */
struct gr_schema_ctx;
enum cellm_status cellm_gr_schema_rules(const char *schema, size_t len, const char *prefix,
                                        struct gr_buf *out, unsigned *common,
                                        struct cellm_error *err);
void cellm_gr_common_rules(struct gr_buf *out, unsigned *common, unsigned which);
enum { GR_C_WS = 1, GR_C_STRING = 2, GR_C_NUMBER = 4, GR_C_VALUE = 8, GR_C_INT = 16 };

/* Regex (ECMAScript subset) to a GBNF expression over the characters of a JSON string's
 * content (escapes included). Appends to out; refuses what it does not support. */
enum cellm_status cellm_gr_pattern(const char *re, struct gr_buf *out, const char *where,
                                   struct cellm_error *err);

/* Ranges helpers (pattern.c): normalize [lo,hi] pairs in place, return the new count. */
size_t cellm_gr_ranges_norm(uint32_t *r, size_t n);
size_t cellm_gr_ranges_negate(const uint32_t *r, size_t n, uint32_t *out);

#endif
