/*
 * opts.c: parsing executor option strings against an executor's table (opts.h).
 */
#include "base/opts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/error.h"

/* Appends to buf like snprintf at buf + *len, keeping *len the length the text needs. */
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...) CELLM_PRINTF(4, 5);
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*len < cap ? buf + *len : NULL, *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (k > 0) *len += (size_t)k;
}

/* Index of name (n bytes) among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *name, size_t n)
{
    int i = 0;
    for (const char *p = choices; *p; i++) {
        size_t k = strcspn(p, "|");
        if (k == n && !memcmp(p, name, n)) return i;
        p += k + (p[k] == '|');
    }
    return -1;
}

/* The choice at index i, written into out. */
static void choice_name(const char *choices, int i, char *out, size_t cap)
{
    const char *p = choices;
    for (; i > 0 && *p; i--)
        p += strcspn(p, "|") + (p[strcspn(p, "|")] == '|');
    size_t k = strcspn(p, "|");
    snprintf(out, cap, "%.*s", (int)k, p);
}

static void expected(const struct cellm_opt *o, char *buf, size_t cap)
{
    size_t len = 0;
    if (o->type == CELLM_OPT_INT)
        put(buf, cap, &len, "an integer in [%d, %d]", o->min, o->max);
    else if (o->type == CELLM_OPT_BOOL)
        put(buf, cap, &len, "0 or 1");
    else
        put(buf, cap, &len, "one of %s", o->choices);
}

static int parse_value(const struct cellm_opt *o, const char *v, size_t n, int *out)
{
    char tmp[64];
    if (n == 0 || n >= sizeof tmp) return 0;
    memcpy(tmp, v, n);
    tmp[n] = 0;
    if (o->type == CELLM_OPT_CHOICE) {
        int i = choice_index(o->choices, tmp, n);
        if (i < 0) return 0;
        *out = i;
        return 1;
    }
    if (o->type == CELLM_OPT_BOOL) {
        static const char *const yes[] = {"1", "on", "true", "yes"}, *const no[] = {"0", "off",
                                                                                    "false", "no"};
        for (int i = 0; i < 4; i++) {
            if (!strcmp(tmp, yes[i])) return (*out = 1), 1;
            if (!strcmp(tmp, no[i])) return (*out = 0), 1;
        }
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long x = strtol(tmp, &end, 10);
    if (errno || end == tmp || *end || x < o->min || x > o->max) return 0;
    *out = (int)x;
    return 1;
}

enum cellm_status cellm_opts_parse(const char *who, const struct cellm_opt *table, int n,
                                   const char *s, void *out, struct cellm_error *err)
{
    for (int i = 0; i < n; i++)
        *(int *)((char *)out + table[i].offset) = table[i].def;
    for (const char *p = s ? s : ""; *p;) {
        size_t k = strcspn(p, ",");
        const char *item = p;
        p += k + (p[k] == ',');
        while (k && (*item == ' ' || *item == '\t'))
            item++, k--;
        while (k && (item[k - 1] == ' ' || item[k - 1] == '\t'))
            k--;
        if (!k) continue;
        const char *eq = memchr(item, '=', k);
        if (!eq)
            return cellm_errf(err, CELLM_ERR_ARG, "%s: option '%.*s': expected key=value", who,
                              (int)k, item);
        size_t kl = (size_t)(eq - item), vl = k - kl - 1;
        const struct cellm_opt *o = NULL;
        for (int i = 0; i < n && !o; i++)
            if (strlen(table[i].key) == kl && !memcmp(table[i].key, item, kl)) o = &table[i];
        if (!o) {
            char known[512];
            size_t len = 0;
            for (int i = 0; i < n; i++)
                put(known, sizeof known, &len, "%s%s", i ? ", " : "", table[i].key);
            if (!n) snprintf(known, sizeof known, "none");
            return cellm_errf(err, CELLM_ERR_ARG, "%s: unknown option '%.*s' (known: %s)", who,
                              (int)kl, item, known);
        }
        int v = 0;
        if (!parse_value(o, eq + 1, vl, &v)) {
            char want[256];
            expected(o, want, sizeof want);
            return cellm_errf(err, CELLM_ERR_ARG, "%s: option %s: value '%.*s', expected %s", who,
                              o->key, (int)vl, eq + 1, want);
        }
        *(int *)((char *)out + o->offset) = v;
    }
    return CELLM_OK;
}

size_t cellm_opts_help(const struct cellm_opt *table, int n, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < n; i++) {
        const struct cellm_opt *o = &table[i];
        char want[256], def[64];
        if (o->type == CELLM_OPT_INT)
            snprintf(want, sizeof want, "%d..%d", o->min, o->max);
        else if (o->type == CELLM_OPT_BOOL)
            snprintf(want, sizeof want, "0|1");
        else
            snprintf(want, sizeof want, "%s", o->choices);
        if (o->type == CELLM_OPT_CHOICE)
            choice_name(o->choices, o->def, def, sizeof def);
        else
            snprintf(def, sizeof def, "%d", o->def);
        put(buf, cap, &len, "  %s=%s (default %s): %s\n", o->key, want, def, o->help);
    }
    return len;
}

size_t cellm_opts_format(const struct cellm_opt *table, int n, const void *in, char *buf,
                         size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = 0;
    for (int i = 0; i < n; i++) {
        const struct cellm_opt *o = &table[i];
        int v = *(const int *)((const char *)in + o->offset);
        if (o->type == CELLM_OPT_CHOICE) {
            char name[64];
            choice_name(o->choices, v, name, sizeof name);
            put(buf, cap, &len, "%s%s=%s", i ? "," : "", o->key, name);
        } else
            put(buf, cap, &len, "%s%s=%d", i ? "," : "", o->key, v);
    }
    return len;
}
