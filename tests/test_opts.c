/*
 * test_opts.c: executor options (base/opts.h and cellm_model_params.exec_options).
 * Defaults apply where a key is absent; every type parses its documented forms; an unknown
 * key, a missing '=', a non-number, an out-of-range number and an unknown choice are each
 * refused with a message naming the key, the value and what was expected; the CPU
 * executor's keys reach it through cellm_model_load, and a bad one fails the load; the
 * per-thread pool size travels in cellm_ctx_params.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/opts.h"
#include "cellm.h"
#include "engine/engine.h"

struct t_opts {
    int rows, flag, mode;
};

static const struct cellm_opt table[] = {
    {"rows", CELLM_OPT_INT, 1, 64, 32, NULL, offsetof(struct t_opts, rows), "rows help"},
    {"flag", CELLM_OPT_BOOL, 0, 1, 1, NULL, offsetof(struct t_opts, flag), "flag help"},
    {"mode", CELLM_OPT_CHOICE, 0, 0, 1, "auto|fast|slow", offsetof(struct t_opts, mode),
     "mode help"},
};
#define N ((int)(sizeof table / sizeof table[0]))

static enum cellm_status parse(const char *s, struct t_opts *o, struct cellm_error *err)
{
    memset(o, 0x55, sizeof *o); /* every field must be written */
    return cellm_opts_parse("test executor", table, N, s, o, err);
}

static void t_defaults(void **state)
{
    (void)state;
    struct t_opts o;
    struct cellm_error err = {{0}};
    const char *empty[] = {NULL, "", ",", " , ,"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(parse(empty[i], &o, &err), CELLM_OK);
        assert_int_equal(o.rows, 32);
        assert_int_equal(o.flag, 1);
        assert_int_equal(o.mode, 1);
    }
}

static void t_values(void **state)
{
    (void)state;
    struct t_opts o;
    struct cellm_error err = {{0}};
    assert_int_equal(parse("rows=7,flag=0,mode=slow", &o, &err), CELLM_OK);
    assert_int_equal(o.rows, 7);
    assert_int_equal(o.flag, 0);
    assert_int_equal(o.mode, 2);
    /* spaces around items, the last one wins, bool spellings */
    assert_int_equal(parse(" rows=1 , rows=64,flag=off, mode=auto ", &o, &err), CELLM_OK);
    assert_int_equal(o.rows, 64);
    assert_int_equal(o.flag, 0);
    assert_int_equal(o.mode, 0);
    assert_int_equal(parse("flag=yes", &o, &err), CELLM_OK);
    assert_int_equal(o.flag, 1);
    assert_int_equal(o.rows, 32);
}

static void refused(const char *s, const char *const *want)
{
    struct t_opts o;
    struct cellm_error err = {{0}};
    assert_int_equal(parse(s, &o, &err), CELLM_ERR_ARG);
    for (; *want; want++)
        if (!strstr(err.msg, *want)) fail_msg("'%s': message '%s' lacks '%s'", s, err.msg, *want);
}

static void t_refused(void **state)
{
    (void)state;
    refused("bogus=1", (const char *const[]){"test executor", "unknown option 'bogus'",
                                             "rows, flag, mode", NULL});
    refused("rows", (const char *const[]){"'rows'", "key=value", NULL});
    refused("rows=abc", (const char *const[]){"rows", "'abc'", "integer in [1, 64]", NULL});
    refused("rows=65", (const char *const[]){"rows", "'65'", "[1, 64]", NULL});
    refused("rows=0", (const char *const[]){"'0'", NULL});
    refused("rows=3x", (const char *const[]){"'3x'", NULL});
    refused("rows=", (const char *const[]){"rows", "''", NULL});
    refused("flag=2", (const char *const[]){"flag", "'2'", "0 or 1", NULL});
    refused("mode=quick", (const char *const[]){"mode", "'quick'", "auto|fast|slow", NULL});
    refused("rows=8,bogus=1", (const char *const[]){"'bogus'", NULL});
}

static void t_help_format(void **state)
{
    (void)state;
    char buf[512];
    size_t n = cellm_opts_help(table, N, buf, sizeof buf);
    assert_int_equal(n, strlen(buf));
    assert_non_null(strstr(buf, "  rows=1..64 (default 32): rows help\n"));
    assert_non_null(strstr(buf, "  flag=0|1 (default 1): flag help\n"));
    assert_non_null(strstr(buf, "  mode=auto|fast|slow (default fast): mode help\n"));
    /* truncation still reports the whole length */
    char small[8];
    assert_int_equal(cellm_opts_help(table, N, small, sizeof small), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    struct t_opts o = {5, 0, 2};
    cellm_opts_format(table, N, &o, buf, sizeof buf);
    assert_string_equal(buf, "rows=5,flag=0,mode=slow");
}

static void t_model_load(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/llama-tied/bf16", CELLM_FIXTURES);
    struct cellm_model_params mp = cellm_model_params_default();
    struct cellm_model *m = NULL;
    struct cellm_error err = {{0}};
    mp.exec_options = "isa=sse9";
    assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_ERR_ARG);
    assert_null(m);
    assert_non_null(strstr(err.msg, "cpu executor"));
    assert_non_null(strstr(err.msg, "'sse9'"));
    assert_non_null(strstr(err.msg, "auto|portable|avx2|avx512"));
    /* a key of another executor is unknown here */
    mp.exec_options = "tc_rows=3";
    assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "unknown option 'tc_rows'"));
    /* the portable kernels, named in the device description */
    mp.exec_options = "isa=portable,kv_ring=0";
    assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_OK);
    assert_non_null(strstr(cellm_model_device(m), "portable"));
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.n_threads = 3;
    struct cellm_ctx *ctx = NULL;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int seq = cellm_ctx_seq_new(ctx);
    const int32_t toks[3] = {1, 2, 3};
    const float *logits = NULL;
    assert_int_equal(cellm_ctx_eval_seq(ctx, seq, toks, 3, &logits, &err), CELLM_OK);
    assert_non_null(logits);
    /* no profiler on the CPU: nothing measured */
    struct cellm_profile prof;
    memset(&prof, 0x55, sizeof prof);
    cellm_ctx_profile(ctx, &prof);
    assert_int_equal(prof.n_phases, 0);
    assert_int_equal(prof.steps[0] + prof.steps[1], 0);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
    /* the listing names every CPU key */
    char buf[2048];
    assert_true(cellm_exec_options_help(CELLM_DEVICE_CPU, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "isa="));
    assert_non_null(strstr(buf, "kv_ring="));
    assert_true(cellm_exec_options_help(CELLM_DEVICE_XLA, buf, sizeof buf) > 0);
    assert_non_null(strstr(buf, "dequant=graph|load"));
    /* CUDA: its options are parsed before any device is looked for, so a CUDA build
     * refuses a bad one by name on a machine without a GPU too */
    if (cellm_exec_options_help(CELLM_DEVICE_CUDA, buf, sizeof buf) > 0) {
        assert_non_null(strstr(buf, "tc_rows="));
        assert_non_null(strstr(buf, "attn_dec=0..3"));
        mp.device = CELLM_DEVICE_CUDA;
        mp.exec_options = "tc_rows=3,attn_dec=9";
        assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_ERR_ARG);
        assert_non_null(strstr(err.msg, "cuda executor: option attn_dec: value '9'"));
        assert_non_null(strstr(err.msg, "[0, 3]"));
        mp.exec_options = "isa=avx2";
        assert_int_equal(cellm_model_load(dir, &mp, &m, &err), CELLM_ERR_ARG);
        assert_non_null(strstr(err.msg, "unknown option 'isa'"));
    } else
        assert_string_equal(buf, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_defaults),   cmocka_unit_test(t_values),
        cmocka_unit_test(t_refused),    cmocka_unit_test(t_help_format),
        cmocka_unit_test(t_model_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
