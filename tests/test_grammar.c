/*
 * test_grammar.c: the grammar module: GBNF parsing and its errors, JSON Schema conversion
 * and refusals, the matcher over bytes (UTF-8 split across tokens included), and token
 * masks checked against a brute-force replay over a small vocabulary, cached or not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cellm.h"

static struct cellm_grammar *gbnf(const char *t)
{
    struct cellm_grammar *g = NULL;
    struct cellm_error e = {{0}};
    enum cellm_status st = cellm_grammar_new(CELLM_GRAMMAR_GBNF, t, strlen(t), &g, &e);
    if (st) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(st, CELLM_OK);
    return g;
}

static struct cellm_grammar *schema(const char *t)
{
    struct cellm_grammar *g = NULL;
    struct cellm_error e = {{0}};
    enum cellm_status st = cellm_grammar_new(CELLM_GRAMMAR_JSON_SCHEMA, t, strlen(t), &g, &e);
    if (st) fprintf(stderr, "%s\n", e.msg);
    assert_int_equal(st, CELLM_OK);
    return g;
}

/* Whether the whole of s is a complete sentence of g. */
static int accepts(const struct cellm_grammar *g, const char *s)
{
    struct cellm_matcher *m = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_matcher_new(g, NULL, &m, &e), CELLM_OK);
    int ok =
        cellm_matcher_accept_bytes(m, s, strlen(s), &e) == CELLM_OK && cellm_matcher_can_end(m);
    cellm_matcher_free(m);
    return ok;
}

static void parse_error(const char *t, enum cellm_status want, const char *needle)
{
    struct cellm_grammar *g = NULL;
    struct cellm_error e = {{0}};
    assert_int_equal(cellm_grammar_new(CELLM_GRAMMAR_GBNF, t, strlen(t), &g, &e), want);
    assert_null(g);
    if (!strstr(e.msg, needle)) fail_msg("'%s' lacks '%s'", e.msg, needle);
}

static void test_gbnf_errors(void **state)
{
    (void)state;
    parse_error("root ::= foo\n", CELLM_ERR_FORMAT, "1:10: rule 'foo' is not defined");
    parse_error("a ::= \"x\"\n", CELLM_ERR_FORMAT, "no 'root' rule");
    parse_error("root ::= \"x\n", CELLM_ERR_FORMAT, "1:10: unterminated string");
    parse_error("root ::= \"a\"\nroot ::= \"b\"\n", CELLM_ERR_FORMAT,
                "2:1: rule 'root' is defined twice");
    parse_error("root ::= [ab", CELLM_ERR_FORMAT, "unterminated character class");
    parse_error("root ::= \"\\q\"\n", CELLM_ERR_FORMAT, "unknown escape");
    parse_error("root ::= ( \"a\" \n", CELLM_ERR_FORMAT, "'(' is not closed");
    parse_error("root ::= * \"a\"\n", CELLM_ERR_FORMAT, "follows nothing");
    parse_error("root ::= x \"a\"\nx ::= y\ny ::= \"a\"? root\n", CELLM_ERR_FORMAT,
                "left-recursive");
    parse_error("root ::= \"a\"{3,2}\n", CELLM_ERR_FORMAT, "maximum is below");
    parse_error("root ::= \"a\"{99999}\n", CELLM_ERR_RANGE, "above");
    parse_error("root ::= \"a\" ::= \"b\"\n", CELLM_ERR_FORMAT, "1:14");
}

static void test_gbnf_match(void **state)
{
    (void)state;
    struct cellm_grammar *g = gbnf("# a comment\n"
                                   "root ::= \"a\" [0-9]+ tail? # trailing\n"
                                   "tail ::= \"x\"\n"
                                   "  | \"yz\" | ( \"w\"\n   \"v\" ){2,3}\n");
    assert_true(accepts(g, "a1"));
    assert_true(accepts(g, "a123yz"));
    assert_true(accepts(g, "a0x"));
    assert_true(accepts(g, "a0wvwv"));
    assert_true(accepts(g, "a0wvwvwv"));
    assert_false(accepts(g, "a0wv"));
    assert_false(accepts(g, "a0wvwvwvwv"));
    assert_false(accepts(g, "a"));
    assert_false(accepts(g, "ab"));
    assert_false(accepts(g, "a1y"));
    cellm_grammar_free(g);
    /* code points: negation, ranges beyond ASCII, '.', escapes */
    g = gbnf("root ::= [^a\\n] [\\u00e0-\\u00ff]* . \"\\x41\"\n");
    assert_true(accepts(g, "b\xC3\xA9\xC3\xA0zA"));
    assert_true(accepts(g, "\xE2\x82\xAC\xF0\x9F\x98\x80"
                           "A"));
    assert_false(accepts(g, "a.A"));
    assert_false(accepts(g, "b\xC3\xBF\xC4\x80")); /* U+0100 is beyond the range, then no A */
    assert_false(accepts(g, "b\xC3"));             /* half a character */
    assert_false(accepts(g, "b\xE0\x81\xBB"
                            "A")); /* an overlong '{' is no character */
    assert_false(accepts(g, "b\xED\xA0\x80"
                            "A")); /* nor is a surrogate */
    assert_false(accepts(g, "\xC0\xBB"
                            "bA"));
    cellm_grammar_free(g);
    /* right recursion runs in constant depth: a long input is fine */
    g = gbnf("root ::= (\"ab\")* \"c\"\n");
    char big[20003];
    for (int i = 0; i < 10000; i++)
        memcpy(big + 2 * i, "ab", 2);
    memcpy(big + 20000, "c", 2);
    assert_true(accepts(g, big));
    cellm_grammar_free(g);
}

static void test_done_and_end(void **state)
{
    (void)state;
    struct cellm_grammar *g = gbnf("root ::= \"ab\" \"c\"?\n");
    struct cellm_matcher *m = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_matcher_new(g, NULL, &m, &e), CELLM_OK);
    assert_false(cellm_matcher_can_end(m));
    assert_int_equal(cellm_matcher_accept_bytes(m, "ab", 2, &e), CELLM_OK);
    assert_true(cellm_matcher_can_end(m));
    assert_false(cellm_matcher_done(m));
    assert_int_equal(cellm_matcher_accept_bytes(m, "x", 1, &e), CELLM_ERR_ARG);
    assert_int_equal(cellm_matcher_accept_bytes(m, "c", 1, &e), CELLM_OK); /* unchanged by x */
    assert_true(cellm_matcher_done(m));
    cellm_matcher_free(m);
    cellm_grammar_free(g);
}

static void schema_refused(const char *t, enum cellm_status want, const char *needle)
{
    struct cellm_grammar *g = NULL;
    struct cellm_error e = {{0}};
    assert_int_equal(cellm_grammar_new(CELLM_GRAMMAR_JSON_SCHEMA, t, strlen(t), &g, &e), want);
    assert_null(g);
    if (!strstr(e.msg, needle)) fail_msg("'%s' lacks '%s'", e.msg, needle);
}

static void test_schema(void **state)
{
    (void)state;
    struct cellm_grammar *g =
        schema("{\"type\":\"object\",\"properties\":{"
               "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":4},"
               "\"age\":{\"type\":\"integer\",\"minimum\":3,\"maximum\":117},"
               "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\",2]},\"minItems\":1,"
               "\"maxItems\":2},"
               "\"kind\":{\"const\":\"k\"},"
               "\"opt\":{\"type\":[\"boolean\",\"null\"]}},"
               "\"required\":[\"name\",\"age\",\"tags\"],\"additionalProperties\":false}");
    assert_true(accepts(g, "{\"name\": \"ab\", \"age\": 3, \"tags\": [\"x\"]}"));
    assert_true(accepts(g, "{\"name\":\"a\\\"\",\"age\":117,\"tags\":[2, \"y\"],\"kind\":\"k\"}"));
    assert_true(accepts(g, "{\"name\":\"abcd\",\"age\":40,\"tags\":[\"y\"],\"opt\":null}"));
    assert_true(accepts(
        g, "{\"name\":\"\xC3\xA9\",\"age\":40,\"tags\":[\"y\"],\"kind\":\"k\",\"opt\":true}"));
    assert_false(accepts(g, "{\"name\":\"\",\"age\":40,\"tags\":[\"y\"]}"));      /* minLength */
    assert_false(accepts(g, "{\"name\":\"abcde\",\"age\":40,\"tags\":[\"y\"]}")); /* maxLength */
    assert_false(accepts(g, "{\"name\":\"a\",\"tags\":[\"y\"]}"));                /* required */
    assert_false(accepts(g, "{\"name\":\"a\",\"age\":40,\"tags\":[]}"));          /* minItems */
    assert_false(accepts(g, "{\"name\":\"a\",\"age\":40,\"tags\":[2,2,2]}"));     /* maxItems */
    assert_false(accepts(g, "{\"name\":\"a\",\"age\":40,\"tags\":[3]}"));         /* enum */
    assert_false(accepts(g, "{\"name\":\"a\",\"age\":40,\"tags\":[2],\"z\":1}")); /* additional */
    assert_false(accepts(g, "{\"age\":40,\"name\":\"a\",\"tags\":[2]}"));         /* order */
    /* integer bounds, every value near them */
    char buf[128];
    for (int i = -20; i <= 1200; i++) {
        snprintf(buf, sizeof buf, "{\"name\":\"a\",\"age\":%d,\"tags\":[2]}", i);
        if (accepts(g, buf) != (i >= 3 && i <= 117)) fail_msg("age %d", i);
    }
    assert_false(accepts(g, "{\"name\":\"a\",\"age\":007,\"tags\":[2]}"));
    cellm_grammar_free(g);
    const struct {
        long lo, hi;
    } ranges[] = {{-1234, -17}, {-5, 5}, {0, 0}, {10, 99}, {99, 100}, {-1, 1000}};
    for (size_t r = 0; r < sizeof ranges / sizeof *ranges; r++) {
        snprintf(buf, sizeof buf, "{\"type\":\"integer\",\"minimum\":%ld,\"maximum\":%ld}",
                 ranges[r].lo, ranges[r].hi);
        g = schema(buf);
        for (long i = -1500; i <= 1500; i++) {
            snprintf(buf, sizeof buf, "%ld", i);
            if (accepts(g, buf) != (i >= ranges[r].lo && i <= ranges[r].hi))
                fail_msg("%ld in [%ld, %ld]", i, ranges[r].lo, ranges[r].hi);
        }
        cellm_grammar_free(g);
    }
    /* $defs, recursion, anyOf, exclusive bounds, numbers */
    g = schema(
        "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\","
        "\"exclusiveMinimum\":0,\"exclusiveMaximum\":10},\"next\":{\"anyOf\":[{\"$ref\":"
        "\"#/$defs/node\"},{\"type\":\"null\"}]}},\"required\":[\"v\",\"next\"]}},"
        "\"$ref\":\"#/$defs/node\"}");
    assert_true(accepts(g, "{\"v\":1,\"next\":{\"v\":9,\"next\":null}}"));
    assert_false(accepts(g, "{\"v\":0,\"next\":null}"));
    assert_false(accepts(g, "{\"v\":10,\"next\":null}"));
    cellm_grammar_free(g);
    g = schema("{\"type\":\"number\"}");
    assert_true(accepts(g, "-0.25"));
    assert_true(accepts(g, "12"));
    assert_false(accepts(g, "1."));
    assert_false(accepts(g, "01"));
    cellm_grammar_free(g);
    /* patterns */
    g = schema("{\"type\":\"string\",\"pattern\":\"^[a-c]{2}\\\\d(-[^x]+)?$\"}");
    assert_true(accepts(g, "\"ab1\""));
    assert_true(accepts(g, "\"cc9-yy\""));
    assert_true(accepts(g, "\"cc9-\\\"\"")); /* the class takes '"', written as \" */
    assert_false(accepts(g, "\"abc\""));
    assert_false(accepts(g, "\"ab1-x\""));
    cellm_grammar_free(g);
    g = schema("{\"type\":\"string\",\"pattern\":\"b+c\"}"); /* unanchored */
    assert_true(accepts(g, "\"xxbbcyy\""));
    assert_false(accepts(g, "\"xxcyy\""));
    cellm_grammar_free(g);
    /* json_object mode */
    struct cellm_grammar *o = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_grammar_new(CELLM_GRAMMAR_JSON_OBJECT, NULL, 0, &o, &e), CELLM_OK);
    assert_true(accepts(o, "{\"a\": [1, {\"b\": null}, \"x\"], \"c\": -1.5}"));
    assert_false(accepts(o, "[1]"));
    assert_false(accepts(o, "{\"a\" 1}"));
    cellm_grammar_free(o);
    /* refusals name the keyword and its path */
    schema_refused("{\"type\":\"object\",\"properties\":{\"d\":{\"type\":\"string\",\"format\":"
                   "\"date\"}}}",
                   CELLM_ERR_UNSUPPORTED, "'format' is not supported at /properties/d");
    schema_refused("{\"items\":{\"not\":{}}}", CELLM_ERR_UNSUPPORTED,
                   "'not' is not supported at /items");
    schema_refused("{\"type\":\"number\",\"minimum\":1.5}", CELLM_ERR_UNSUPPORTED, "type number");
    schema_refused("{\"type\":\"string\",\"pattern\":\"(?=a)\"}", CELLM_ERR_UNSUPPORTED,
                   "lookaround");
    schema_refused("{\"type\":\"string\",\"pattern\":\"(a)\\\\1\"}", CELLM_ERR_UNSUPPORTED,
                   "backreferences");
    schema_refused("{\"$ref\":\"http://x/y\"}", CELLM_ERR_UNSUPPORTED, "'$ref'");
    schema_refused("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", CELLM_ERR_UNSUPPORTED,
                   "no integer");
    schema_refused("{\"type\":\"array\",\"uniqueItems\":true}", CELLM_ERR_UNSUPPORTED,
                   "'uniqueItems'");
    schema_refused("{\"type\":\"objekt\"}", CELLM_ERR_FORMAT, "objekt");
    schema_refused("{", CELLM_ERR_FORMAT, "not valid JSON");
}

static void test_choice(void **state)
{
    (void)state;
    struct cellm_grammar_part parts[2] = {
        {"<tool_call>{\"name\": \"a\", \"arguments\": ",
         "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},\"required\":[\"x\"]}",
         "}</tool_call>"},
        {"B:", NULL, NULL}};
    struct cellm_grammar *g = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_grammar_choice(parts, 2, &g, &e), CELLM_OK);
    assert_true(accepts(g, "<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 5}}</tool_call>"));
    assert_true(accepts(g, "B:{\"q\": true}"));
    assert_false(accepts(g, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>"));
    assert_false(accepts(g, "B:[]"));
    cellm_grammar_free(g);
}

/* ---- masks against brute force ---- */

static const char *const toks[] = {"{",
                                   "}",
                                   "\"",
                                   ",",
                                   ":",
                                   " ",
                                   "\": ",
                                   "{\"",
                                   "\"}",
                                   "a",
                                   "b",
                                   "ab",
                                   "abc",
                                   "x",
                                   "1",
                                   "12",
                                   "0",
                                   "-",
                                   "-1",
                                   "true",
                                   "tr",
                                   "ue",
                                   "null",
                                   "[",
                                   "]",
                                   "[1",
                                   "\xC3",
                                   "\xA9",
                                   "\xC3\xA9",
                                   "\xE2\x82",
                                   "\xAC",
                                   "\\",
                                   "\\\"",
                                   "\n",
                                   "na",
                                   "me",
                                   "name",
                                   "\"name\"",
                                   "age",
                                   "\"age\": ",
                                   "{\"name\": \"",
                                   ".",
                                   "5",
                                   "99",
                                   "ok",
                                   "\xC3\x80",
                                   "\xC3\xA9\xC3\x80",
                                   "\xE2\x82\xACok"};
#define NT ((int)(sizeof toks / sizeof *toks))

static struct cellm_grammar_vocab *small_vocab(void)
{
    size_t lens[NT + 2];
    const char *t[NT + 2];
    for (int i = 0; i < NT; i++) {
        t[i] = toks[i];
        lens[i] = strlen(toks[i]);
    }
    t[NT] = NULL; /* a special token: never allowed */
    lens[NT] = 0;
    t[NT + 1] = "a"; /* a duplicate of "a" */
    lens[NT + 1] = 1;
    struct cellm_grammar_vocab *v = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_grammar_vocab_from_bytes(t, lens, NT + 2, &v, &e), CELLM_OK);
    return v;
}

static int tok_bytes(int id, const char **s)
{
    if (id == NT) return -1;
    *s = id == NT + 1 ? "a" : toks[id];
    return (int)strlen(*s);
}

/* Walks a path of tokens; at each step compares the mask with replaying prefix + token on a
 * fresh matcher, and the cached mask (asked twice) with the first. */
static void check_masks(const struct cellm_grammar *g, const struct cellm_grammar_vocab *v,
                        const int *path, int n)
{
    struct cellm_matcher *m = NULL, *r = NULL;
    struct cellm_error e;
    assert_int_equal(cellm_matcher_new(g, v, &m, &e), CELLM_OK);
    uint32_t mask[8], again[8];
    char prefix[512];
    size_t plen = 0;
    for (int step = 0; step <= n; step++) {
        assert_int_equal(cellm_matcher_mask(m, mask, &e), CELLM_OK);
        assert_int_equal(cellm_matcher_mask(m, again, &e), CELLM_OK);
        assert_memory_equal(mask, again, sizeof mask[0] * (((size_t)NT + 2 + 31) / 32));
        for (int id = 0; id < NT + 2; id++) {
            const char *s = "";
            int L = tok_bytes(id, &s), want = 0;
            if (L > 0) {
                assert_int_equal(cellm_matcher_new(g, NULL, &r, &e), CELLM_OK);
                want = cellm_matcher_accept_bytes(r, prefix, plen, &e) == CELLM_OK &&
                       cellm_matcher_accept_bytes(r, s, (size_t)L, &e) == CELLM_OK;
                cellm_matcher_free(r);
            }
            int got = (mask[id / 32] >> (id % 32)) & 1;
            if (got != want)
                fail_msg("step %d token %d ('%s'): mask %d, replay %d", step, id, L > 0 ? s : "",
                         got, want);
        }
        if (step == n) break;
        const char *s = "";
        int L = tok_bytes(path[step], &s);
        assert_int_equal(cellm_matcher_accept_token(m, path[step], &e), CELLM_OK);
        memcpy(prefix + plen, s, (size_t)L);
        plen += (size_t)L;
    }
    cellm_matcher_free(m);
}

static int id_of(const char *s)
{
    for (int i = 0; i < NT; i++)
        if (!strcmp(toks[i], s)) return i;
    fail_msg("no token '%s'", s);
    return -1;
}

static void test_masks(void **state)
{
    (void)state;
    struct cellm_grammar_vocab *v = small_vocab();
    struct cellm_grammar *g =
        schema("{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":"
               "{\"type\":\"integer\",\"minimum\":-9,\"maximum\":99}},\"required\":[\"name\"]}");
    const char *walk[] = {
        "{\"name\": \"", "a", "\xC3", "\xA9", "\\\"", "\xE2\x82", "\xAC", "a", "\"", ",", " ",
        "\"age\": ",     "-", "5",    "}"};
    int path[32], n = (int)(sizeof walk / sizeof *walk);
    for (int i = 0; i < n; i++)
        path[i] = id_of(walk[i]);
    check_masks(g, v, path, n);
    check_masks(g, v, path, n); /* again, on the matcher the grammar kept: warm caches */
    /* the string's inside is one state: after "a" and after "é" the cached mask serves */
    cellm_grammar_free(g);
    g = gbnf("root ::= (\"ab\" | [0-9]+ | [\\u00e1-\\u00ff] | \"\\u20ac\")* \"ok\"\n");
    const char *w2[] = {"ab", "1", "12", "\xC3", "\xA9", "\xE2\x82", "\xAC", "a", "b", "ok"};
    n = (int)(sizeof w2 / sizeof *w2);
    for (int i = 0; i < n; i++)
        path[i] = id_of(w2[i]);
    check_masks(g, v, path, n);
    cellm_grammar_free(g);
    /* a grammar that is done allows no token; the special token and EOS are never in masks */
    g = gbnf("root ::= \"ab\"\n");
    struct cellm_matcher *m = NULL;
    struct cellm_error e;
    uint32_t mask[8];
    assert_int_equal(cellm_matcher_new(g, v, &m, &e), CELLM_OK);
    assert_int_equal(cellm_matcher_accept_token(m, id_of("ab"), &e), CELLM_OK);
    assert_true(cellm_matcher_done(m));
    assert_int_equal(cellm_matcher_mask(m, mask, &e), CELLM_OK);
    for (int i = 0; i < 2; i++)
        assert_int_equal(mask[i], 0);
    assert_int_equal(cellm_matcher_accept_token(m, NT, &e), CELLM_ERR_ARG);
    cellm_matcher_free(m);
    cellm_grammar_free(g);
    cellm_grammar_vocab_free(v);
}

/* A grammar with millions of parses at once (every split of the a's between the two
 * repetitions) fails with a limit, as an error that names it, instead of running for
 * minutes; the matcher stays failed. A fuzzer found it (CI, session 16). */
static void test_ambiguous_limit(void **state)
{
    (void)state;
    struct cellm_grammar_vocab *v = small_vocab();
    struct cellm_grammar *g = gbnf("root ::= (\"a\"{0,4096}){0,4096}\n");
    struct cellm_matcher *m = NULL;
    struct cellm_error e = {{0}};
    uint32_t mask[8];
    assert_int_equal(cellm_matcher_new(g, v, &m, &e), CELLM_OK);
    enum cellm_status st = CELLM_OK;
    for (int i = 0; i < 64 && st == CELLM_OK; i++) {
        st = cellm_matcher_mask(m, mask, &e);
        if (st == CELLM_OK) st = cellm_matcher_accept_token(m, id_of("a"), &e);
    }
    assert_int_equal(st, CELLM_ERR_RANGE);
    if (!strstr(e.msg, "too ambiguous")) fail_msg("'%s' lacks 'too ambiguous'", e.msg);
    assert_int_equal(cellm_matcher_mask(m, mask, &e), CELLM_ERR_RANGE);
    cellm_matcher_free(m);
    cellm_grammar_free(g);
    /* the same language, unambiguous, runs to the end */
    g = gbnf("root ::= \"a\"*\n");
    assert_int_equal(cellm_matcher_new(g, v, &m, &e), CELLM_OK);
    for (int i = 0; i < 64; i++) {
        assert_int_equal(cellm_matcher_mask(m, mask, &e), CELLM_OK);
        assert_int_equal(cellm_matcher_accept_token(m, id_of("a"), &e), CELLM_OK);
    }
    cellm_matcher_free(m);
    cellm_grammar_free(g);
    cellm_grammar_vocab_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gbnf_errors),     cmocka_unit_test(test_gbnf_match),
        cmocka_unit_test(test_done_and_end),    cmocka_unit_test(test_schema),
        cmocka_unit_test(test_choice),          cmocka_unit_test(test_masks),
        cmocka_unit_test(test_ambiguous_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
