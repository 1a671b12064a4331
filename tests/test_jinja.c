/*
 * test_jinja.c: unit tests of the chat-template interpreter (src/tokenizer/jinja*.c).
 *
 * Small templates with hand-written expected output for each feature (the byte-for-byte
 * comparison with Python jinja2 lives in tests/chat/compare.py), refusals of what is not
 * supported with the construct and its line:column in the message, syntax and runtime
 * errors, the output/step/nesting bounds, parse-once-render-many, and allocation failure
 * at every allocation of a realistic render (each must give CELLM_ERR_NOMEM and leak
 * nothing; the sanitizer build checks the leaks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "base/alloc.h"
#include "template/jinja.h"

static enum cellm_status render(const char *tmpl, const char *vars_json, char **out,
                                struct cellm_error *err)
{
    cJSON *vars = vars_json ? cJSON_Parse(vars_json) : NULL;
    if (vars_json) assert_non_null(vars);
    enum cellm_status st = cellm_jinja_render(tmpl, strlen(tmpl), vars, out, err);
    cJSON_Delete(vars);
    return st;
}

static void expect(const char *tmpl, const char *vars, const char *want)
{
    char *out = NULL;
    struct cellm_error err = {{0}};
    enum cellm_status st = render(tmpl, vars, &out, &err);
    if (st != CELLM_OK) fail_msg("template %s: %s", tmpl, err.msg);
    if (strcmp(out, want) != 0) fail_msg("template %s\n  got  [%s]\n  want [%s]", tmpl, out, want);
    cellm_free(out);
}

static void expect_fail(const char *tmpl, const char *vars, enum cellm_status want_st,
                        const char *want_in_msg)
{
    char *out = (char *)1;
    struct cellm_error err = {{0}};
    enum cellm_status st = render(tmpl, vars, &out, &err);
    if (st != want_st) fail_msg("template %s: status %d (%s), want %d", tmpl, st, err.msg, want_st);
    assert_null(out);
    if (want_in_msg && !strstr(err.msg, want_in_msg))
        fail_msg("template %s: message [%s] lacks [%s]", tmpl, err.msg, want_in_msg);
}

static const char *conv =
    "{\"messages\":[{\"role\":\"system\",\"content\":\" Be brief. \"},"
    "{\"role\":\"user\",\"content\":\"Hi \\u00e9\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>\\nhm\\n</think>\\n\\nHello\"}],"
    "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"n\":3,\"x\":2.5,"
    "\"t\":true,\"nothing\":null}";

static void test_text_and_whitespace(void **state)
{
    (void)state;
    expect("", NULL, "");
    /* empty sequences repeated by huge counts are empty at once (a fuzzer found the loop) */
    expect("[{{ '' * 611111111111111 }}]", NULL, "[]");
    expect("{{ ([] * 611111111111111) | length }}", NULL, "0");
    expect("plain\n", NULL, "plain");
    expect("a\n\n", NULL, "a\n");
    expect("{% if true %}\nyes\n{% endif %}\nend", NULL, "yes\nend");
    expect("  {% if true %}\n    x\n  {% endif %}\n", NULL, "    x\n");
    expect("a  {{- 'b' -}}  c", NULL, "abc");
    expect("a\n  {%- if true -%}\n  b\n  {%- endif %}", NULL, "ab");
    expect("  {%+ if true %}k{% endif %}", NULL, "  k");
    expect("{% if true +%}\nk{% endif %}", NULL, "\nk");
    expect("a {# note #} b\n{# line #}\nc", NULL, "a  b\nc");
    expect("{{ 'a' }}\n{{ 'b' }}", NULL, "a\nb");
    expect("a\r\nb", NULL, "a\nb");
    expect("{% raw %}{{ x }}{% endraw %}", NULL, "{{ x }}");
}

static void test_literals_and_output(void **state)
{
    (void)state;
    expect("{{ none }}|{{ true }}|{{ False }}|{{ 42 }}|{{ -1.5 }}|{{ 1.0 }}|{{ 1e20 }}", NULL,
           "None|True|False|42|-1.5|1.0|1e+20");
    expect("{{ 0.1 + 0.2 }}|{{ 10 / 4 }}|{{ 1 / 3 }}", NULL,
           "0.30000000000000004|2.5|0.3333333333333333");
    expect("{{ 'a\\tb\\u00e9' }}|{{ \"it's\" }}|{{ 'x' 'y' }}", NULL, "a\tb\xc3\xa9|it's|xy");
    expect("{{ [1, 'a', none, true] }}|{{ {'k': 'v'} }}|{{ (1,) }}", NULL,
           "[1, 'a', None, True]|{'k': 'v'}|(1,)");
    expect("{{ [\"it's\"] }}", NULL, "[\"it's\"]");
    expect("[{{ missing }}][{{ messages[9] }}][{{ nothing }}]", conv, "[][][None]");
    expect("{{ n }}|{{ x }}|{{ t }}", conv, "3|2.5|True");
}

static void test_operators(void **state)
{
    (void)state;
    expect("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 8 }} {{ 3 * 'ab' }}", NULL,
           "3 -4 2 256 ababab");
    expect("{{ 1 ~ 'a' ~ none ~ undefinedvar }}", NULL, "1aNone");
    expect("{{ 'a' + 'b' }}{{ [1] + [2] }}", NULL, "ab[1, 2]");
    expect("{{ 1 < 2 < 3 }} {{ 2 == 2.0 }} {{ 'b' > 'a' }} {{ [1] != [1] }}", NULL,
           "True True True False");
    expect("{{ 0 or 'y' }}|{{ 1 and 'z' }}|{{ not '' }}", NULL, "y|z|True");
    expect("{{ 'at' in 'cat' }} {{ 2 not in [1, 2] }} {{ 'k' in {'k': 1} }}", NULL,
           "True False True");
    expect("{{ 'a' if false else 'b' }}[{{ 'a' if false }}]", NULL, "b[]");
    expect("{{ 'a' + ' b '|trim }}|{{ -3|abs }}", NULL, "ab|3");
}

static void test_access(void **state)
{
    (void)state;
    expect("{{ messages[0].role }}|{{ messages[-1]['role'] }}|{{ messages|length }}", conv,
           "system|assistant|3");
    expect("{% for m in messages[::-1] %}{{ m.role[0] }}{% endfor %}", conv, "aus");
    expect("{{ [1,2,3,4][1:3] }}{{ 'h\xc3\xa9llo'[1] }}{{ 'abc'[::-1] }}", NULL,
           "[2, 3]\xc3\xa9"
           "cba");
    expect("{{ messages[1].content.split(' ')[0] }}", conv, "Hi");
    expect("{% set d = {'a': 1} %}{{ d.items()|list }}|{{ d.get('z', 0) }}", NULL, "[('a', 1)]|0");
}

static void test_statements(void **state)
{
    (void)state;
    expect("{% for m in messages %}{{ loop.index }}{{ loop.first }}{{ loop.last }},{% endfor %}",
           conv, "1TrueFalse,2FalseFalse,3FalseTrue,");
    expect("{% for x in [] %}x{% else %}none{% endfor %}", NULL, "none");
    expect("{% for x in range(6) if x is odd %}{{ x }}{{ loop.length }}{% endfor %}", NULL,
           "133353");
    expect("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}{{ v }}{% endfor %}", NULL, "a1b2");
    expect("{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}"
           "{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}",
           NULL, "023");
    expect("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{{ x }}{% endfor %}{{ x }}",
           NULL, "231");
    expect("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}"
           "{% endfor %}{{ ns.n }}",
           NULL, "6");
    expect("{% if n > 5 %}a{% elif n > 2 %}b{% else %}c{% endif %}", conv, "b");
    expect("{% set a, b = [1, 2] %}{{ b }}{{ a }}", NULL, "21");
    expect("{% set s %}x{{ 1 }}{% endset %}[{{ s }}]", NULL, "[x1]");
    expect("{% macro f(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ f(1) }}{{ f(2, b=3) }}", NULL,
           "1B23");
}

static void test_filters_and_tests(void **state)
{
    (void)state;
    expect("{{ ' \xe3\x80\x80x\xc2\xa0 '|trim }}|{{ 'AbC'|lower }}|{{ 'abc'|upper }}", NULL,
           "x|abc|ABC");
    expect("{{ nope|default('d') }}|{{ ''|default('d', true) }}|{{ [3, 1]|first }}", NULL, "d|d|3");
    expect("{{ messages|map(attribute='role')|join(',') }}", conv, "system,user,assistant");
    expect("{{ messages|selectattr('role', 'equalto', 'user')|list|length }}", conv, "1");
    expect("{{ messages|rejectattr('role', 'in', ['user'])|list|length }}", conv, "2");
    expect("{{ {'b': [1, 2.5], 'a': 'é\"'}|tojson }}", NULL, "{\"b\": [1, 2.5], \"a\": \"é\\\"\"}");
    expect("{{ {'a': [1]}|tojson(indent=2) }}", NULL, "{\n  \"a\": [\n    1\n  ]\n}");
    expect("{{ 'aXa'|replace('a', 'b') }}|{{ [3, 1, 2]|sort|list }}|{{ 'ab'|reverse }}", NULL,
           "bXb|[1, 2, 3]|ba");
    expect("{{ x is defined }}{{ nope is defined }}{{ nothing is none }}{{ 'a' is string }}"
           "{{ {} is mapping }}{{ 4 is divisibleby 2 }}{{ t is true }}{{ 1 is false }}",
           conv, "TrueFalseTrueTrueTrueTrueTrueFalse");
}

static void test_python_strings(void **state)
{
    (void)state;
    const char *t =
        "{% set c = messages[2].content %}"
        "[{{ c.split('</think>')[-1].lstrip('\\n') }}]"
        "[{{ c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') }}]"
        "{{ c.startswith('<think>') }}{{ c.endswith(('x', 'lo')) }}";
    expect(t, conv, "[Hello][hm]TrueTrue");
    expect("{{ ' a  b '.split() }}|{{ 'a,b'.split(',', 1) }}|{{ 'x'.strip('x') }}|", NULL,
           "['a', 'b']|['a', 'b']||");
}

static void test_refusals(void **state)
{
    (void)state;
    expect_fail("{% include 'x' %}", NULL, CELLM_ERR_UNSUPPORTED,
                "1:4: unsupported: tag 'include'");
    expect_fail("{% extends 'x' %}", NULL, CELLM_ERR_UNSUPPORTED, "tag 'extends'");
    expect_fail("ab\n  {{ x|wordwrap }}", NULL, CELLM_ERR_UNSUPPORTED,
                "2:8: unsupported: filter 'wordwrap'");
    expect_fail("{{ x is prime }}", NULL, CELLM_ERR_UNSUPPORTED, "1:9: unsupported: test 'prime'");
    expect_fail("{% call f() %}{% endcall %}", NULL, CELLM_ERR_UNSUPPORTED, "tag 'call'");
    expect_fail("{% for x in y recursive %}{% endfor %}", NULL, CELLM_ERR_UNSUPPORTED, "recursive");
    expect_fail("{% filter upper %}x{% endfilter %}", NULL, CELLM_ERR_UNSUPPORTED, "tag 'filter'");
    expect_fail("{{ f(*a) }}", NULL, CELLM_ERR_UNSUPPORTED, "*args");
    expect_fail("{{ '%s' % 1 }}", NULL, CELLM_ERR_UNSUPPORTED, "1:9");
    expect_fail("{{ 'a'.format(1) }}", NULL, CELLM_ERR_UNSUPPORTED, "str method 'format'");
    expect_fail("{{ [1]|tojson(separators=(',', ':')) }}", NULL, CELLM_ERR_UNSUPPORTED,
                "separators");
}

static void test_errors(void **state)
{
    (void)state;
    expect_fail("{% if true %}x", NULL, CELLM_ERR_FORMAT, "expected 'elif'");
    expect_fail("{{ 'abc }}", NULL, CELLM_ERR_FORMAT, "1:4: unterminated string");
    expect_fail("{{ 1 +  }}", NULL, CELLM_ERR_FORMAT, NULL);
    expect_fail("{% endfor %}", NULL, CELLM_ERR_FORMAT, "unexpected 'endfor'");
    expect_fail("{% break %}", NULL, CELLM_ERR_FORMAT, "outside of a loop");
    expect_fail("{# open", NULL, CELLM_ERR_FORMAT, "comment");
    expect_fail("{{ raise_exception('roles must alternate') }}", NULL, CELLM_ERR_ARG,
                "1:4: raise_exception: roles must alternate");
    expect_fail("{{ foo.bar }}", NULL, CELLM_ERR_FORMAT, "'foo' is undefined");
    expect_fail("{{ messages[7].role }}", conv, CELLM_ERR_FORMAT, "list object has no element 7");
    expect_fail("{{ 'a' + 1 }}", NULL, CELLM_ERR_FORMAT, "unsupported operand type(s) for +");
    expect_fail("{{ nope|tojson }}", NULL, CELLM_ERR_FORMAT, "not JSON serializable");
    expect_fail("{% set d = {} %}{% set d.a = 1 %}", NULL, CELLM_ERR_FORMAT, "non-namespace");
    expect_fail("{{ 1 // 0 }}", NULL, CELLM_ERR_FORMAT, "division by zero");
}

static void test_bounds(void **state)
{
    (void)state;
    /* output: 2^27 bytes wanted, 64 MiB allowed */
    expect_fail("{% set s = 'x' * 1048576 %}{% for i in range(128) %}{{ s }}{% endfor %}", NULL,
                CELLM_ERR_RANGE, "longer than");
    /* steps */
    expect_fail("{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}"
                "{% endfor %}",
                NULL, CELLM_ERR_RANGE, "too many steps");
    /* macro recursion */
    expect_fail("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", NULL, CELLM_ERR_RANGE,
                "nested too deeply");
    /* parser nesting */
    char deep[4000];
    size_t k = 0;
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{{ ");
    for (int i = 0; i < 1000; i++)
        deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++)
        deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    expect_fail(deep, NULL, CELLM_ERR_RANGE, "nested too deeply");
    expect_fail("{{ range(200000)|length }}", NULL, CELLM_ERR_RANGE, "Range too big");
}

static void test_parse_once(void **state)
{
    (void)state;
    const char *t = "{% for m in messages %}[{{ m.role }}]{% endfor %}";
    struct cellm_jinja_tmpl *tm;
    struct cellm_error err;
    assert_int_equal(cellm_jinja_parse(t, strlen(t), &tm, &err), CELLM_OK);
    for (int i = 0; i < 3; i++) {
        cJSON *v = cJSON_Parse(conv);
        char *out;
        assert_int_equal(cellm_jinja_render_parsed(tm, v, &out, &err), CELLM_OK);
        assert_string_equal(out, "[system][user][assistant]");
        cellm_free(out);
        cJSON_Delete(v);
    }
    char *out;
    assert_int_equal(cellm_jinja_render_parsed(tm, NULL, &out, &err), CELLM_OK);
    assert_string_equal(out, "");
    cellm_free(out);
    cJSON *arr = cJSON_Parse("[1]");
    assert_int_equal(cellm_jinja_render_parsed(tm, arr, &out, &err), CELLM_ERR_ARG);
    cJSON_Delete(arr);
    cellm_jinja_free(tm);
    cellm_jinja_free(NULL);
    /* a template need not be NUL-terminated */
    assert_int_equal(cellm_jinja_render("{{ 1 }}XYZ", 7, NULL, &out, &err), CELLM_OK);
    assert_string_equal(out, "1");
    cellm_free(out);
}

/* A Qwen3-shaped template exercising most paths; every allocation in turn fails. */
static void test_alloc_failure(void **state)
{
    (void)state;
    const char *t =
        "{%- set ns = namespace(last=messages|length - 1) %}"
        "{%- for m in messages[::-1] %}{%- if m.role == 'user' %}{% set ns.last = loop.index0 %}"
        "{%- endif %}{%- endfor %}"
        "{%- for m in messages %}<|{{ m.role }}|>{{ m.content.split('</think>')[-1]|trim }}"
        "{{ m|tojson }}{{ [m.role, 1.5]|join(' ') }}{% endfor %}"
        "{%- if add_generation_prompt %}{{ bos_token ~ 'go' }}{% endif %}";
    char *want = NULL;
    struct cellm_error err;
    cJSON *v = cJSON_Parse(conv);
    assert_int_equal(cellm_jinja_render(t, strlen(t), v, &want, &err), CELLM_OK);
    int ok = 0;
    for (long n = 0; n < 400 && !ok; n++) {
        char *out = NULL;
        cellm_alloc_fail_after(n);
        enum cellm_status st = cellm_jinja_render(t, strlen(t), v, &out, &err);
        cellm_alloc_fail_after(-1);
        if (st == CELLM_OK) {
            assert_string_equal(out, want);
            cellm_free(out);
            ok = 1;
        } else {
            if (st != CELLM_ERR_NOMEM) fail_msg("fail after %ld: status %d: %s", n, st, err.msg);
            assert_null(out);
        }
    }
    assert_true(ok);
    cellm_free(want);
    cJSON_Delete(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_and_whitespace),
        cmocka_unit_test(test_literals_and_output),
        cmocka_unit_test(test_operators),
        cmocka_unit_test(test_access),
        cmocka_unit_test(test_statements),
        cmocka_unit_test(test_filters_and_tests),
        cmocka_unit_test(test_python_strings),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_parse_once),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
