/*
 * cmd_tokenize.c: `cellm tokenize`: text to ids (or pieces), and ids back to text.
 *
 *     cellm tokenize -m DIR [--no-special] [--pieces] TEXT
 *     cellm tokenize -m DIR --decode 1,2,3 [--skip-special]
 *
 * Only the tokenizer files of DIR are read, never the weights.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellm.h"
#include "cli.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cellm tokenize -m DIR [--no-special] [--pieces] TEXT\n"
               "       cellm tokenize -m DIR --decode ID,ID,... [--skip-special]\n"
               "  --no-special    do not add the post-processor's special tokens (BOS ...)\n"
               "  --pieces        print vocabulary pieces instead of ids\n"
               "  --decode IDS    print the text of comma-separated ids\n"
               "  --skip-special  with --decode, drop special tokens\n");
}

static int decode_ids(struct cellm_tokenizer *tok, const char *list, int skip)
{
    size_t cap = 16, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    const char *p = list;
    while (ids && *p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "cellm tokenize: --decode expects comma-separated ids, got '%s'\n",
                    list);
            free(ids);
            return 2;
        }
        if (n == cap) {
            int32_t *t = realloc(ids, 2 * cap * sizeof *t);
            if (!t) break;
            ids = t;
            cap *= 2;
        }
        ids[n++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!ids) {
        fprintf(stderr, "cellm tokenize: out of memory\n");
        return 1;
    }
    struct cellm_error err;
    char *text;
    if (cellm_tokenizer_decode(tok, ids, n, skip, &text, &err) != CELLM_OK) {
        fprintf(stderr, "cellm tokenize: %s\n", err.msg);
        free(ids);
        return 1;
    }
    printf("%s\n", text);
    free(text);
    free(ids);
    return 0;
}

int cellm_cmd_tokenize(int argc, char **argv)
{
    const char *dir = NULL, *text = NULL, *decode = NULL;
    int special = 1, pieces = 0, skip = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            dir = argv[++i];
        } else if (!strcmp(argv[i], "--decode") && i + 1 < argc) {
            decode = argv[++i];
        } else if (!strcmp(argv[i], "--no-special")) {
            special = 0;
        } else if (!strcmp(argv[i], "--pieces")) {
            pieces = 1;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip = 1;
        } else if (argv[i][0] == '-' && argv[i][1] && !text) {
            fprintf(stderr, "cellm tokenize: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!text) {
            text = argv[i];
        } else {
            fprintf(stderr, "cellm tokenize: one TEXT argument expected (quote it)\n");
            return 2;
        }
    }
    if (!dir || (!text && !decode) || (text && decode)) {
        usage(stderr);
        return 2;
    }
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    if (cellm_tokenizer_load(dir, &tok, &err) != CELLM_OK) {
        fprintf(stderr, "cellm tokenize: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (decode) {
        rc = decode_ids(tok, decode, skip);
    } else {
        int32_t *ids;
        size_t n;
        if (cellm_tokenizer_encode(tok, text, strlen(text), special, &ids, &n, &err) != CELLM_OK) {
            fprintf(stderr, "cellm tokenize: %s\n", err.msg);
            rc = 1;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (pieces)
                    printf("%s%s", i ? " " : "", cellm_tokenizer_piece(tok, ids[i]));
                else
                    printf("%s%d", i ? " " : "", ids[i]);
            }
            printf("\n");
            free(ids);
        }
    }
    cellm_tokenizer_free(tok);
    return rc;
}
