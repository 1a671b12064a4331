/*
 * cmd_tokenize.c: `cellm tokenize`: text to ids (or pieces), and ids back to text.
 *
 *     cellm tokenize -m DIR [--no-special] [--pieces] TEXT
 *     cellm tokenize -m DIR --decode 1,2,3 [--skip-special]
 *
 * Ids are printed comma-separated and read separated by commas or spaces.
 *
 * Only the tokenizer files of DIR are read, never the weights.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cellm.h"
#include "cli.h"
#include "common.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: cellm tokenize -m MODEL [--no-special] [--pieces] TEXT\n"
               "       cellm tokenize -m MODEL --decode IDS [--skip-special]\n"
               "  -m, --model DIR|ORG/NAME[@REV]  checkpoint directory, or a name in the Hugging\n"
               "                  Face cache\n"
               "  --download      fetch ORG/NAME into the cache first if it is not there\n"
               "  --no-special    do not add the post-processor's special tokens (BOS ...)\n"
               "  --pieces        print vocabulary pieces (space-separated) instead of ids\n"
               "  --decode IDS    print the text of ids separated by commas or spaces (as\n"
               "                  tokenize and generate --ids print them: 1,2,3)\n"
               "  --skip-special  with --decode, drop special tokens\n"
               "  -h, --help      this text\n");
}

static int decode_ids(struct cellm_tokenizer *tok, const char *list, int skip)
{
    int32_t *ids = NULL;
    int nid = 0;
    if (!cli_parse_ids(list, &ids, &nid)) return 2;
    size_t n = (size_t)nid;
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
    static const char *const flags[] = {
        "-m", "--model",    "--decode", "--no-special", "--pieces", "--skip-special", "--help",
        "-h", "--download", NULL};
    struct cli_opts o = {0};
    const char *text = NULL, *decode = NULL;
    int special = 1, pieces = 0, skip = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(o.model_dir = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--download")) {
            o.download = 1;
        } else if (!strcmp(argv[i], "--decode")) {
            if (!(decode = cli_value(argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--no-special")) {
            special = 0;
        } else if (!strcmp(argv[i], "--pieces")) {
            pieces = 1;
        } else if (!strcmp(argv[i], "--skip-special")) {
            skip = 1;
        } else if (argv[i][0] == '-' && argv[i][1] && !text) {
            cli_unknown("tokenize", argv[i], flags);
            return 2;
        } else if (!text) {
            text = argv[i];
        } else {
            fprintf(stderr, "cellm tokenize: one TEXT argument expected (quote it)\n");
            return 2;
        }
    }
    if (!o.model_dir || (!text && !decode) || (text && decode)) {
        usage(stderr);
        return 2;
    }
    if (!cli_resolve(&o, "tokenize")) return 2;
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    if (cellm_tokenizer_load(o.model_dir, &tok, &err) != CELLM_OK) {
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
                else /* the format --decode, --prompt-ids and generate --ids share */
                    printf("%s%d", i ? "," : "", ids[i]);
            }
            printf("\n");
            free(ids);
        }
    }
    cellm_tokenizer_free(tok);
    return rc;
}
