/*
 * test_jinja_render.c: command-line front end of the chat-template interpreter for the
 * differential tests (tests/chat/compare.py runs it beside tests/chat/render.py).
 *
 *   test_jinja_render TEMPLATE VARS.json
 *
 * TEMPLATE is a template file, or a tokenizer_config.json whose "chat_template" is used (a
 * string, or the entry named "default" of a list). The rendering goes to stdout as raw
 * bytes; on failure the status and message go to stderr and the exit code is 1 (2 for a
 * usage or file problem).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/json.h"
#include "template/jinja.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    size_t k;
    while (p && (k = fread(p + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (!q) {
                free(p);
                p = NULL;
            }
            p = q;
        }
    }
    fclose(f);
    if (p) p[n < cap ? n : cap - 1] = 0;
    *len = n;
    return p;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s TEMPLATE VARS.json\n", argv[0]);
        return 2;
    }
    size_t tlen, vlen;
    char *tsrc = slurp(argv[1], &tlen), *vsrc = slurp(argv[2], &vlen);
    if (!tsrc || !vsrc) {
        fprintf(stderr, "cannot read %s\n", tsrc ? argv[2] : argv[1]);
        return 2;
    }
    const char *tmpl = tsrc;
    cJSON *cfg = NULL;
    size_t n = strlen(argv[1]);
    if (n > 5 && !strcmp(argv[1] + n - 5, ".json")) {
        cfg = cJSON_ParseWithLength(tsrc, tlen);
        const cJSON *ct = cfg ? cJSON_GetObjectItemCaseSensitive(cfg, "chat_template") : NULL;
        if (cJSON_IsArray(ct)) {
            const cJSON *e;
            const cJSON *pick = NULL;
            cJSON_ArrayForEach(e, ct)
            {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(e, "name");
                if (cJSON_IsString(nm) && !strcmp(nm->valuestring, "default"))
                    pick = cJSON_GetObjectItemCaseSensitive(e, "template");
            }
            ct = pick;
        }
        if (!cJSON_IsString(ct)) {
            fprintf(stderr, "%s: no chat_template string\n", argv[1]);
            return 2;
        }
        tmpl = ct->valuestring;
        tlen = strlen(tmpl);
    }
    cJSON *vars = cJSON_ParseWithLength(vsrc, vlen);
    if (!vars) {
        fprintf(stderr, "%s: bad JSON\n", argv[2]);
        return 2;
    }
    char *out = NULL;
    struct cellm_error err = {{0}};
    enum cellm_status st = cellm_jinja_render(tmpl, tlen, vars, &out, &err);
    int rc = 0;
    if (st != CELLM_OK) {
        fprintf(stderr, "ERROR %s: %s\n", cellm_status_str(st), err.msg);
        rc = 1;
    } else {
        fwrite(out, 1, strlen(out), stdout);
    }
    cellm_free(out);
    cJSON_Delete(vars);
    cJSON_Delete(cfg);
    free(tsrc);
    free(vsrc);
    return rc;
}
