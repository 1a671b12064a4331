/*
 * main.c: `cellm <command> ...` dispatch. The only place that may exit the process.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} commands[] = {
    {"generate", cellm_cmd_generate, "generate text or ids from a prompt"},
    {"verify", cellm_cmd_verify, "check a checkpoint against reference outputs"},
    {"inspect", cellm_cmd_inspect, "describe a checkpoint: config, tensors, storage, shards"},
    {"bench", cellm_cmd_bench, "load time, prefill and decode speed, memory"},
    {"tokenize", cellm_cmd_tokenize, "text to ids, ids to text"},
    {"serve", cellm_cmd_serve, "OpenAI-compatible HTTP server"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cellm <command> -m DIR [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`cellm <command> --help` lists a command's options.\n");
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
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "cellm: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
