/*
 * main.c: `cellm <command> ...` dispatch. The only place that may exit the process.
 */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"chat", cellm_cmd_chat, "an interactive conversation (history kept in the KV cache)"},
    {"generate", cellm_cmd_generate, "generate text or ids from a prompt"},
    {"pull", cellm_cmd_pull, "download ORG/NAME into the Hugging Face cache"},
    {"verify", cellm_cmd_verify, "check a checkpoint against reference outputs"},
    {"inspect", cellm_cmd_inspect, "describe a checkpoint: config, tensors, storage, shards"},
    {"bench", cellm_cmd_bench, "load time, prefill and decode speed, memory"},
    {"tokenize", cellm_cmd_tokenize, "text to ids, ids to text"},
    {"serve", cellm_cmd_serve, "OpenAI-compatible HTTP server"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cellm <command> -m DIR|ORG/NAME [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`cellm <command> --help` lists a command's options; `cellm --version` the "
               "build.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V") || !strcmp(argv[1], "version")) {
        cli_print_version(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    if (argv[1][0] == '-') {
        /* `cellm -m DIR -p ...`: options before a command */
        fprintf(stderr, "cellm: '%s' before a command; options follow it: cellm generate %s ...\n",
                argv[1], argv[1]);
        usage(stderr);
        return 2;
    }
    const char *names[sizeof commands / sizeof commands[0] + 1];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        names[i] = commands[i].name;
    names[sizeof commands / sizeof commands[0]] = NULL;
    cli_unknown_command(argv[1], names);
    usage(stderr);
    return 2;
}
