/*
 * test_attack.c: the library side of the attack suite (issue 23); the server side is
 * tests/server/attack.mjs.
 *
 * Each case is an input an attacker controls (a request body, a tokenizer.json, a
 * checkpoint directory) that once cost minutes, gigabytes or a crash, and must now fail
 * fast with an error that names the problem: strict JSON, regex backtracking and nesting,
 * recursion on a small thread stack, tokenization that stops at a token limit or on
 * cancellation, FIFOs and devices in place of files, vocabulary ids far beyond the
 * vocabulary, normalizers that multiply text, a config whose head_dim no tensor has, and
 * an index naming 200,000 shards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "cellm.h"
#include "checkpoint/ckpt.h"
#include "tokenizer/regex.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cellm_attack_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- strict JSON ------------------------------------------------------------------------ */

static void strict_bad(const char *text, const char *needle)
{
    struct cellm_error err = {0};
    assert_int_equal(cellm_json_check_strict(text, strlen(text), "body", 64, &err),
                     CELLM_ERR_FORMAT);
    if (!strstr(err.msg, needle)) fail_msg("'%s': message '%s' lacks '%s'", text, err.msg, needle);
}

static void test_json_strict(void **state)
{
    (void)state;
    struct cellm_error err;
    const char *good[] = {"{}", " [1, -2.5e3, true, false, null, \"x\\n\\u00e9\"] ",
                          "{\"a\":{\"a\":1},\"b\":[{\"a\":1},{\"a\":2}]}", "\"\\ud83d\\ude00\""};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        if (cellm_json_check_strict(good[i], strlen(good[i]), "body", 64, &err))
            fail_msg("%s: %s", good[i], err.msg);
    strict_bad("{\"max_tokens\":1,\"max_tokens\":100000}", "duplicate key \"max_tokens\"");
    strict_bad("{\"max_tokens\":1,\"max_tok\\u0065ns\":2}", "duplicate key \"max_tokens\"");
    strict_bad("{\"a\":1} {\"b\":2}", "trailing data");
    strict_bad("{\"a\":1}x", "trailing data");
    strict_bad("{\"a\":\"x\ty\"}", "raw control character");
    strict_bad("{\"stop\":\"e\\u0000zzz\"}", "\\u0000");
    strict_bad("{\"a\":01}", "expected ',' or '}'");
    strict_bad("{\"a\":1,}", "expected a string key");
    strict_bad("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]"
               "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
               "nesting too deep");
    /* 200,000 distinct keys: sorted, not compared pairwise */
    size_t n = 200000, cap = n * 16 + 16, len = 0;
    char *big = malloc(cap);
    big[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(big + len, cap - len, "%s\"k%zu\":1", i ? "," : "", i);
    big[len++] = '}';
    double t0 = now();
    assert_int_equal(cellm_json_check_strict(big, len, "big", 64, &err), CELLM_OK);
    assert_true(now() - t0 < 2.0);
    free(big);
}

/* ---- regex ------------------------------------------------------------------------------ */

static enum cellm_status find_all(const char *pat, const char *text, size_t reps,
                                  const struct cellm_regex_limits *lim, struct cellm_error *err)
{
    struct cellm_regex *re;
    enum cellm_status st = cellm_regex_compile(pat, "test", &re, err);
    if (st) return st;
    size_t tl = strlen(text), n = tl * reps;
    uint32_t *cps = malloc(n * sizeof *cps);
    for (size_t i = 0; i < n; i++)
        cps[i] = (unsigned char)text[i % tl];
    size_t *sp = NULL, nm = 0;
    st = cellm_regex_find_all(re, cps, n, lim, &sp, &nm, err);
    free(sp);
    free(cps);
    cellm_regex_free(re);
    return st;
}

static void test_regex_budget(void **state)
{
    (void)state;
    struct cellm_error err;
    double t0 = now();
    /* exponential backtracking: the budget stops it and the error names the pattern */
    assert_int_equal(find_all("(a+)+b", "a", 10000, NULL, &err), CELLM_ERR_RANGE);
    double dt = now() - t0;
    printf("(a+)+b on 10,000 characters: %.3f s: %s\n", dt, err.msg);
    assert_true(dt < 1.0);
    assert_non_null(strstr(err.msg, "(a+)+b"));
    /* a quadratic search (every attempt in budget, the sum not) is bounded as well */
    t0 = now();
    assert_int_equal(find_all("a*b", "a", 20000, NULL, &err), CELLM_ERR_RANGE);
    assert_true(now() - t0 < 5.0);
    /* the ordinary patterns stay fine on long input */
    assert_int_equal(find_all("\\s+(?!\\S)|\\s+|\\p{L}+", "ab cd  ", 100000, NULL, &err), CELLM_OK);
    /* cancellation */
    _Atomic int cancel = 1;
    struct cellm_regex_limits lim = {.cancel = &cancel};
    assert_int_equal(find_all("(a+)+b", "a", 10000, &lim, &err), CELLM_ERR_CANCELLED);
}

static void test_regex_nesting(void **state)
{
    (void)state;
    size_t n = 50000;
    char *pat = malloc(2 * n + 2);
    for (size_t i = 0; i < n; i++) {
        pat[i] = '(';
        pat[n + 1 + i] = ')';
    }
    pat[n] = 'a';
    pat[2 * n + 1] = 0;
    struct cellm_regex *re = NULL;
    struct cellm_error err;
    assert_int_equal(cellm_regex_compile(pat, "test", &re, &err), CELLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "nests groups deeper"));
    /* quantifiers stacked on one atom nest the same way */
    for (size_t i = 0; i < n; i++)
        memcpy(pat + 1 + 3 * (i % 16000), "{1}", 3);
    pat[0] = 'a';
    pat[1 + 3 * 16000] = 0;
    assert_int_equal(cellm_regex_compile(pat, "test", &re, &err), CELLM_ERR_UNSUPPORTED);
    free(pat);
    assert_int_equal(cellm_regex_compile("((((a))))+", "test", &re, &err), CELLM_OK);
    cellm_regex_free(re);
}

struct small_stack_job {
    enum cellm_status st;
    struct cellm_error err;
};

static void *small_stack_main(void *arg)
{
    struct small_stack_job *j = arg;
    /* each iteration of a non-class repeat recurses: the depth follows the text */
    j->st = find_all("(a|b)+", "ab", 20000, NULL, &j->err);
    return NULL;
}

static void test_regex_small_stack(void **state)
{
    (void)state;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 << 10);
    pthread_t t;
    struct small_stack_job j = {0};
    assert_int_equal(pthread_create(&t, &a, small_stack_main, &j), 0);
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    /* an error, not a crash */
    assert_int_equal(j.st, CELLM_ERR_RANGE);
    assert_non_null(strstr(j.err.msg, "stack"));
}

/* ---- tokenizer -------------------------------------------------------------------------- */

static void tokenizer_dir(const char *name, const char *vocab_extra, const char *normalizer,
                          const char *pattern, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    char *j = malloc(1 << 16);
    snprintf(j, 1 << 16,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],"
             "\"normalizer\":%s,\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":"
             "\"%s\"},\"behavior\":\"Isolated\",\"invert\":false},\"post_processor\":null,"
             "\"decoder\":null,\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":"
             "\"?\",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
             "\"fuse_unk\":false,\"byte_fallback\":false,\"vocab\":{\"?\":0,\"a\":1,\"b\":2,"
             "\" \":3%s},\"merges\":[]}}",
             normalizer, pattern, vocab_extra);
    write_file(dir, "tokenizer.json", j);
    free(j);
}

static void test_tokenizer_bounds(void **state)
{
    (void)state;
    char dir[512];
    struct cellm_error err;
    struct cellm_tokenizer *tok = NULL;
    /* an id of 1e9 in a vocabulary of five entries */
    tokenizer_dir("bigid", ",\"x\":1000000000", "null", "\\\\s+|[^\\\\s]+", dir, sizeof dir);
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_ERR_FORMAT);
    getrusage(RUSAGE_SELF, &r1);
    assert_non_null(strstr(err.msg, "1000000000"));
    assert_true(r1.ru_maxrss - r0.ru_maxrss < 100 * 1024); /* KiB */

    /* chained Replace normalizers: each multiplies the text by 8 */
    char norm[2048] = "{\"type\":\"Sequence\",\"normalizers\":[";
    for (int i = 0; i < 8; i++)
        strcat(norm, i ? ",{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":"
                         "\"aaaaaaaa\"}"
                       : "{\"type\":\"Replace\",\"pattern\":{\"String\":\"a\"},\"content\":"
                         "\"aaaaaaaa\"}");
    strcat(norm, "]}");
    tokenizer_dir("grow", "", norm, "\\\\s+|[^\\\\s]+", dir, sizeof dir);
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = now();
    assert_int_equal(cellm_tokenizer_encode(tok, "aaaa aaaa", 9, 0, &ids, &n, &err),
                     CELLM_ERR_RANGE);
    if (!strstr(err.msg, "normalizer") && !strstr(err.msg, "replace")) fail_msg("%s", err.msg);
    assert_true(now() - t0 < 2.0);
    cellm_tokenizer_free(tok);

    /* a ReDoS Split pattern: the encode fails with the pattern named, within a second */
    tokenizer_dir("redos", "", "null", "(a+)+b", dir, sizeof dir);
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    char *text = malloc(10001);
    memset(text, 'a', 10000);
    text[10000] = 0;
    t0 = now();
    assert_int_equal(cellm_tokenizer_encode(tok, text, 10000, 0, &ids, &n, &err), CELLM_ERR_RANGE);
    assert_true(now() - t0 < 1.0);
    assert_non_null(strstr(err.msg, "(a+)+b"));
    cellm_tokenizer_free(tok);

    /* a token limit stops the encode; a cancelled one stops at once */
    tokenizer_dir("plain", "", "null", "\\\\s+|[^\\\\s]+", dir, sizeof dir);
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    for (int i = 0; i < 10000; i++)
        text[i] = i % 2 ? ' ' : 'a';
    struct cellm_encode_opts o = {.max_ids = 100};
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, 10000, 0, &o, &ids, &n, &err),
                     CELLM_ERR_RANGE);
    assert_non_null(strstr(err.msg, "more than 100 tokens"));
    o.max_ids = 10000;
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, 10000, 0, &o, &ids, &n, &err),
                     CELLM_OK);
    assert_int_equal(n, 10000);
    free(ids);
    _Atomic int cancel = 1;
    o.cancel = &cancel;
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, 10000, 0, &o, &ids, &n, &err),
                     CELLM_ERR_CANCELLED);
    cellm_tokenizer_free(tok);
    free(text);
}

/* A token limit stops pre-tokenization as soon as the pieces outnumber it: a 1 MiB prompt
 * for a 512-token context is refused without splitting (or holding) the whole text. */
static void test_tokenizer_early_stop(void **state)
{
    (void)state;
    char dir[512];
    struct cellm_error err;
    struct cellm_tokenizer *tok = NULL;
    tokenizer_dir("early", "", "null", "\\\\s+|[^\\\\s]+", dir, sizeof dir);
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    size_t len = (size_t)1 << 20;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++)
        text[i] = i % 4 == 3 ? ' ' : "ab"[i % 2];
    int32_t *ids = NULL;
    size_t n = 0;
    struct cellm_encode_opts o = {.max_ids = 512};
    size_t b0 = cellm_alloc_bytes();
    double t0 = now();
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, len, 0, &o, &ids, &n, &err),
                     CELLM_ERR_RANGE);
    double dt = now() - t0;
    double per_byte = (double)(cellm_alloc_bytes() - b0) / (double)len;
    assert_non_null(strstr(err.msg, "more than 512 tokens"));
    print_message("1 MiB prompt, limit 512 tokens: refused in %.1f ms, %.2f bytes allocated per "
                  "input byte\n",
                  dt * 1e3, per_byte);
    /* walking the whole text allocated 77 bytes per input byte (code points, offsets,
     * spans, every piece twice); what is left is about 8: the code points and the copies
     * of the text (bench notes in tests/server/README.md) */
    assert_true(per_byte < 16.0);

    /* the stop changes no result: exactly max_ids tokens pass, one fewer is refused */
    size_t small = 4000;
    assert_int_equal(cellm_tokenizer_encode(tok, text, small, 0, &ids, &n, &err), CELLM_OK);
    int32_t *want = ids;
    size_t nwant = n;
    o.max_ids = nwant;
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, small, 0, &o, &ids, &n, &err),
                     CELLM_OK);
    assert_int_equal(n, nwant);
    assert_memory_equal(ids, want, n * sizeof *ids);
    free(ids);
    o.max_ids = nwant - 1;
    assert_int_equal(cellm_tokenizer_encode_opts(tok, text, small, 0, &o, &ids, &n, &err),
                     CELLM_ERR_RANGE);
    free(want);
    cellm_tokenizer_free(tok);
    free(text);
}

/* ---- files and checkpoints -------------------------------------------------------------- */

static void test_special_files(void **state)
{
    (void)state;
    char p[512];
    snprintf(p, sizeof p, "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(p, 0644), 0);
    char *text = NULL;
    size_t len;
    struct cellm_error err;
    double t0 = now();
    assert_int_equal(cellm_read_file(p, &text, &len, &err), CELLM_ERR_IO);
    assert_non_null(strstr(err.msg, "not a regular file"));
    assert_int_equal(cellm_read_file("/dev/zero", &text, &len, &err), CELLM_ERR_IO);
    struct cellm_mapfile m;
    assert_int_equal(cellm_mapfile_open(p, &m, &err), CELLM_ERR_IO);
    assert_true(now() - t0 < 1.0);
    /* the size cap */
    snprintf(p, sizeof p, "%s/big.json", tmpdir);
    write_file(tmpdir, "big.json", "[1,2,3,4,5,6,7,8,9,10]");
    assert_int_equal(cellm_read_file_max(p, 8, &text, &len, &err), CELLM_ERR_RANGE);
    assert_int_equal(cellm_read_file_max(p, 64, &text, &len, &err), CELLM_OK);
    free(text);
}

static void copy_fixture(const char *name, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s/%s", tmpdir, name);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp -r %s/llama3-untied/bf16 %s", CELLM_FIXTURES, dir);
    assert_int_equal(system(cmd), 0);
}

static void test_checkpoint_bounds(void **state)
{
    (void)state;
    char dir[512], cmd[2048];
    struct cellm_error err;
    /* head_dim 2^30 against q_proj tensors of 64 x 64 */
    copy_fixture("hd", dir, sizeof dir);
    snprintf(cmd, sizeof cmd,
             "sed -i 's/\"hidden_act\"/\"head_dim\": 1073741824, \"hidden_act\"/' %s/config.json",
             dir);
    assert_int_equal(system(cmd), 0);
    struct cellm_model *m = NULL;
    struct rusage r0, r1;
    getrusage(RUSAGE_SELF, &r0);
    double t0 = now();
    assert_int_equal(cellm_model_load(dir, NULL, &m, &err), CELLM_ERR_FORMAT);
    getrusage(RUSAGE_SELF, &r1);
    printf("head_dim 2^30: %.3f s, +%ld KiB: %s\n", now() - t0, r1.ru_maxrss - r0.ru_maxrss,
           err.msg);
    assert_true(now() - t0 < 2.0);
    assert_true(r1.ru_maxrss - r0.ru_maxrss < 200 * 1024);
    assert_non_null(strstr(err.msg, "q_proj"));

    /* config.json as a FIFO: refused, not waited on */
    copy_fixture("fifo-ckpt", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "rm %s/config.json && mkfifo %s/config.json", dir, dir);
    assert_int_equal(system(cmd), 0);
    t0 = now();
    assert_int_not_equal(cellm_model_load(dir, NULL, &m, &err), CELLM_OK);
    assert_true(now() - t0 < 2.0);

    /* config.json a symbolic link to /dev/zero: refused, not read without end */
    copy_fixture("zero-ckpt", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "rm %s/config.json && ln -s /dev/zero %s/config.json", dir, dir);
    assert_int_equal(system(cmd), 0);
    t0 = now();
    assert_int_not_equal(cellm_model_load(dir, NULL, &m, &err), CELLM_OK);
    assert_non_null(strstr(err.msg, "config.json"));
    assert_true(now() - t0 < 2.0);
    /* the weights, or tokenizer.json, as a FIFO: refused without blocking in open() */
    copy_fixture("fifo-shard", dir, sizeof dir);
    snprintf(cmd, sizeof cmd,
             "rm %s/model.safetensors && mkfifo %s/model.safetensors && mkfifo "
             "%s/tokenizer.json",
             dir, dir, dir);
    assert_int_equal(system(cmd), 0);
    t0 = now();
    assert_int_not_equal(cellm_model_load(dir, NULL, &m, &err), CELLM_OK);
    struct cellm_tokenizer *tok = NULL;
    assert_int_not_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    assert_non_null(strstr(err.msg, "tokenizer.json"));
    assert_true(now() - t0 < 2.0);
    /* an index naming 200,000 shards: deduplicated in O(n log n), then found missing */
    copy_fixture("shards", dir, sizeof dir);
    snprintf(cmd, sizeof cmd, "mv %s/model.safetensors %s/model-00001.safetensors", dir, dir);
    assert_int_equal(system(cmd), 0);
    size_t n = 200000, cap = n * 64 + 64, len = 0;
    char *idx = malloc(cap);
    len += (size_t)snprintf(idx, cap, "{\"weight_map\":{");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(idx + len, cap - len, "%s\"t%zu\":\"s%zu.safetensors\"",
                                i ? "," : "", i, (i * 7919) % n);
    snprintf(idx + len, cap - len, "}}");
    write_file(dir, "model.safetensors.index.json", idx);
    free(idx);
    struct cellm_ckpt c;
    t0 = now();
    enum cellm_status st = cellm_ckpt_open(dir, &c, &err);
    printf("index of 200,000 shards: %.3f s\n", now() - t0);
    assert_true(now() - t0 < 5.0);
    if (st == CELLM_OK) cellm_ckpt_close(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_strict),       cmocka_unit_test(test_regex_budget),
        cmocka_unit_test(test_regex_nesting),     cmocka_unit_test(test_regex_small_stack),
        cmocka_unit_test(test_tokenizer_bounds),  cmocka_unit_test(test_special_files),
        cmocka_unit_test(test_checkpoint_bounds), cmocka_unit_test(test_tokenizer_early_stop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
