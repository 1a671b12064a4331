/*
 * test_tokenizer.c: unit tests of the tokenizer on small committed tokenizer.json files.
 *
 * tests/tok/unit/<name>/tokenizer.json each exercise a few components (byte-level BPE with
 * added-token flags and a template; a Llama-3-style Split regex with NFC; SentencePiece-
 * style BPE with byte fallback, unk fusing and a decoder chain; Metaspace; a normalizer
 * sequence; every Split behaviour). tests/tok/unit/expected.jsonl holds the reference
 * implementation's answers for them (tests/tok/reference_unit.js). Also: refusals of
 * unsupported components, the streaming decoder on split characters, and regex and
 * normalization facts checked by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "base/mapfile.h"
#include "cellm.h"
#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

static void check_line(const cJSON *row)
{
    const char *name = cJSON_GetArrayItem(row, 0)->valuestring;
    const char *text = cJSON_GetArrayItem(row, 1)->valuestring;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tok/unit/%s", CELLM_TEST_DATA, name);
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    if (cellm_tokenizer_load(dir, &tok, &err) != CELLM_OK) fail_msg("%s: %s", dir, err.msg);
    for (int sp = 1; sp >= 0; sp--) {
        const cJSON *want = cJSON_GetArrayItem(row, sp ? 2 : 3);
        int32_t *ids;
        size_t n;
        assert_int_equal(cellm_tokenizer_encode(tok, text, strlen(text), sp, &ids, &n, &err),
                         CELLM_OK);
        int same = (int)n == cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++)
            same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        if (!same) {
            char *w = cJSON_PrintUnformatted(want);
            fprintf(stderr, "%s \"%s\" add_special=%d: want %s, got", name, text, sp, w);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n");
            free(w);
        }
        free(ids);
        assert_true(same);
    }
    const cJSON *e1 = cJSON_GetArrayItem(row, 2);
    size_t n1 = (size_t)cJSON_GetArraySize(e1);
    int32_t *ids = malloc((n1 + 1) * sizeof *ids);
    for (size_t i = 0; i < n1; i++)
        ids[i] = cJSON_GetArrayItem(e1, (int)i)->valueint;
    for (int skip = 0; skip < 2; skip++) {
        char *out;
        assert_int_equal(cellm_tokenizer_decode(tok, ids, n1, skip, &out, &err), CELLM_OK);
        const char *want = cJSON_GetArrayItem(row, 4 + skip)->valuestring;
        if (strcmp(out, want))
            fprintf(stderr, "%s \"%s\" decode skip=%d: want \"%s\", got \"%s\"\n", name, text, skip,
                    want, out);
        assert_string_equal(out, want);
        free(out);
    }
    free(ids);
    cellm_tokenizer_free(tok);
}

static void test_against_reference(void **state)
{
    (void)state;
    char *data;
    size_t len;
    struct cellm_error err;
    assert_int_equal(cellm_read_file(CELLM_TEST_DATA "/tok/unit/expected.jsonl", &data, &len, &err),
                     CELLM_OK);
    int rows = 0;
    for (char *line = strtok(data, "\n"); line; line = strtok(NULL, "\n")) {
        cJSON *row = cJSON_Parse(line);
        assert_non_null(row);
        check_line(row);
        cJSON_Delete(row);
        rows++;
    }
    assert_true(rows >= 20);
    free(data);
}

/* Writes tokenizer.json into a fresh directory and loads it; returns the status. */
static enum cellm_status load_text(const char *json, struct cellm_error *err)
{
    char dir[] = "/tmp/cellm-tok-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
    struct cellm_tokenizer *tok = NULL;
    enum cellm_status st = cellm_tokenizer_load(dir, &tok, err);
    cellm_tokenizer_free(tok);
    unlink(path);
    rmdir(dir);
    return st;
}

#define MODEL                                                                                      \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "                  \
    "\"merges\": [\"a b\"]}"

/* A checkpoint directory with tokenizer.json and chat_template.jinja; loads it. */
static enum cellm_status load_with_template(const char *tmpl, struct cellm_tokenizer **tok,
                                            struct cellm_error *err)
{
    char dir[] = "/tmp/cellm-tok-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/tokenizer.json", dir);
    snprintf(p2, sizeof p2, "%s/chat_template.jinja", dir);
    FILE *f = fopen(p1, "w");
    assert_non_null(f);
    fputs("{" MODEL "}", f);
    fclose(f);
    assert_non_null(f = fopen(p2, "w"));
    fputs(tmpl, f);
    fclose(f);
    enum cellm_status st = cellm_tokenizer_load(dir, tok, err);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    return st;
}

/* The chat template is parsed at load: a broken one fails the load with its line:column;
 * cellm_tokenizer_chat_vars passes tool-call arguments given as a JSON string as an
 * object; a broken template set later is refused and the old one stays. */
static void test_chat_template_at_load(void **state)
{
    (void)state;
    struct cellm_tokenizer *tok = NULL;
    struct cellm_error err = {{0}};
    assert_int_equal(load_with_template("{% if x %}\nhello {{ y }\n", &tok, &err),
                     CELLM_ERR_FORMAT);
    assert_null(tok);
    if (!strstr(err.msg, "chat_template.jinja") || !strstr(err.msg, "2:"))
        fail_msg("message \"%s\" should name the file and the line", err.msg);
    assert_int_equal(load_with_template("{% for m in messages %}{{ m.role }}:"
                                        "{{ m.tool_calls[0].function.arguments.city }}"
                                        "{% endfor %}{{ tools[0].function.name }}{{ flag }}",
                                        &tok, &err),
                     CELLM_OK);
    assert_true(cellm_tokenizer_has_chat_template(tok));
    char *text = NULL;
    const char *vars = "{\"messages\": [{\"role\": \"assistant\", \"content\": \"\", "
                       "\"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": "
                       "\"w\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]}], \"tools\": "
                       "[{\"type\": \"function\", \"function\": {\"name\": \"w\"}}], \"flag\": 7}";
    assert_int_equal(cellm_tokenizer_chat_vars(tok, vars, 1, &text, &err), CELLM_OK);
    assert_string_equal(text, "assistant:Paris"
                              "w7");
    free(text);
    assert_int_equal(cellm_tokenizer_set_chat_template(tok, "{{ x", &err), CELLM_ERR_FORMAT);
    assert_int_equal(cellm_tokenizer_chat_vars(tok, vars, 1, &text, &err), CELLM_OK);
    assert_string_equal(text, "assistant:Paris"
                              "w7");
    free(text);
    assert_int_equal(cellm_tokenizer_set_chat_template(tok, "[{{ flag }}]", &err), CELLM_OK);
    assert_int_equal(cellm_tokenizer_chat_vars(tok, vars, 1, &text, &err), CELLM_OK);
    assert_string_equal(text, "[7]");
    free(text);
    assert_int_equal(cellm_tokenizer_chat_vars(tok, "{\"messages\": 5}", 1, &text, &err),
                     CELLM_ERR_ARG);
    cellm_tokenizer_free(tok);
}

static void expect_refusal(const char *json, const char *needle)
{
    struct cellm_error err = {{0}};
    assert_int_equal(load_text(json, &err), CELLM_ERR_UNSUPPORTED);
    if (!strstr(err.msg, needle) || !strstr(err.msg, "tokenizer.json"))
        fail_msg("message \"%s\" should name \"%s\" and the file", err.msg, needle);
}

static void test_refusals(void **state)
{
    (void)state;
    struct cellm_error err;
    assert_int_equal(load_text("{" MODEL "}", &err), CELLM_OK);
    expect_refusal("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram");
    expect_refusal("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "WordPiece");
    expect_refusal("{\"normalizer\": {\"type\": \"BertNormalizer\"}, " MODEL "}", "BertNormalizer");
    expect_refusal("{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": "
                   "\"Precompiled\"}]}, " MODEL "}",
                   "Precompiled");
    expect_refusal("{\"pre_tokenizer\": {\"type\": \"Punctuation\"}, " MODEL "}", "Punctuation");
    expect_refusal("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": "
                   "\"(a)\\\\1\"}, \"behavior\": \"Isolated\"}, " MODEL "}",
                   "escape");
    expect_refusal("{\"decoder\": {\"type\": \"WordPiece\"}, " MODEL "}", "WordPiece");
    expect_refusal("{\"post_processor\": {\"type\": \"RobertaProcessing\"}, " MODEL "}",
                   "RobertaProcessing");
    expect_refusal("{\"truncation\": {\"max_length\": 8}, " MODEL "}", "truncation");
    expect_refusal("{\"extra_thing\": 1, " MODEL "}", "extra_thing");
    expect_refusal("{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, "
                   "\"merges\": []}}",
                   "dropout");
    assert_int_equal(load_text("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
                               "\"merges\": [\"a c\"]}}",
                               &err),
                     CELLM_ERR_FORMAT);
    assert_int_equal(load_text("{\"model\": ", &err), CELLM_ERR_FORMAT);
    struct cellm_tokenizer *tok;
    assert_int_equal(cellm_tokenizer_load("/nonexistent-dir", &tok, &err), CELLM_ERR_NOT_FOUND);
}

static void test_streaming(void **state)
{
    (void)state;
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    assert_int_equal(cellm_tokenizer_load(CELLM_TEST_DATA "/tok/unit/spm", &tok, &err), CELLM_OK);
    const char *text = "xyz \xF0\x9F\x98\x80 h\xC3\xA9llo";
    int32_t *ids;
    size_t n;
    assert_int_equal(cellm_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err), CELLM_OK);
    struct cellm_detok *d;
    assert_int_equal(cellm_detok_new(tok, &d, &err), CELLM_OK);
    char acc[128] = "";
    for (size_t i = 0; i < n; i++) {
        const char *piece;
        assert_int_equal(cellm_detok_push(d, ids[i], &piece, &err), CELLM_OK);
        size_t pl = strlen(piece);
        assert_int_equal(cellm_utf8_valid_prefix((const uint8_t *)piece, pl), pl);
        strcat(acc, piece);
    }
    assert_string_equal(acc, text);
    assert_int_equal(cellm_detok_push(d, 1 << 20, &(const char *){0}, &err), CELLM_ERR_RANGE);
    cellm_detok_free(d);
    free(ids);
    int32_t bad = 99999;
    char *out;
    assert_int_equal(cellm_tokenizer_decode(tok, &bad, 1, 0, &out, &err), CELLM_ERR_RANGE);
    assert_string_equal(cellm_tokenizer_piece(tok, 1), "<s>");
    assert_null(cellm_tokenizer_piece(tok, -1));
    cellm_tokenizer_free(tok);
}

static void split_check(const char *pat, const char *text, const char *want)
{
    struct cellm_regex *re;
    struct cellm_error err;
    assert_int_equal(cellm_regex_compile(pat, "test", &re, &err), CELLM_OK);
    uint32_t cps[256];
    size_t n = 0, *sp, nm;
    for (size_t i = 0, l = strlen(text); i < l;)
        i += cellm_utf8_next((const uint8_t *)text + i, l - i, &cps[n++]);
    assert_int_equal(cellm_regex_find_all(re, cps, n, NULL, &sp, &nm, &err), CELLM_OK);
    char got[512] = "";
    for (size_t k = 0; k < nm; k++) {
        char b[32];
        snprintf(b, sizeof b, "%s%zu-%zu", k ? "," : "", sp[2 * k], sp[2 * k + 1]);
        strcat(got, b);
    }
    assert_string_equal(got, want);
    free(sp);
    cellm_regex_free(re);
}

static void test_regex(void **state)
{
    (void)state;
    split_check("\\s+(?!\\S)|\\s+", "a   b  ", "1-3,3-4,5-7");
    split_check("(?i:'s|'t)", "'S 'ſ 'T", "0-2,3-5,6-8");
    split_check("\\p{N}{1,3}", "12345", "0-3,3-5");
    split_check("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+", " h\xC3\xA9llo", "0-6");
    split_check("a*?b|c{2,}", "aab cccc", "0-3,4-8");
    split_check("\\p{Lu}\\P{Lu}", "Ab AB Ac", "0-2,4-6,6-8");
}

static void test_unicode(void **state)
{
    (void)state;
    struct cellm_error err;
    struct {
        const char *in, *want;
        enum cellm_uni_form f;
    } cases[] = {
        {"e\xCC\x81", "\xC3\xA9", CELLM_NFC},
        {"\xC3\xA9", "e\xCC\x81", CELLM_NFD},
        {"\xEF\xAC\x81", "fi", CELLM_NFKC},
        {"\xE1\x84\x80\xE1\x85\xA1", "\xEA\xB0\x80", CELLM_NFC}, /* Hangul */
        {"a\xCC\xA3\xCC\x82", "\xE1\xBA\xAD", CELLM_NFC},        /* reorder */
        {"\xE2\x84\xAB", "\xC3\x85", CELLM_NFC},                 /* singleton */
        {"plain ascii", "plain ascii", CELLM_NFKC},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        size_t len;
        assert_int_equal(
            cellm_uni_normalize(cases[i].in, strlen(cases[i].in), cases[i].f, &out, &len, &err),
            CELLM_OK);
        assert_string_equal(out, cases[i].want);
        free(out);
    }
    assert_int_equal(cellm_uni_cat('A'), CELLM_UC_Lu);
    assert_int_equal(cellm_uni_cat(0x4E00), CELLM_UC_Lo);
    assert_int_equal(cellm_uni_cat(0x1F600), CELLM_UC_So);
    assert_true(cellm_uni_is_space(0x3000));
    assert_false(cellm_uni_is_space(0x180E));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_chat_template_at_load),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_unicode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
