/*
 * cli.h: the subcommands of the `cellm` program. Each returns the process exit status and
 * prints its own errors (one line on stderr).
 */
#ifndef CELLM_CLI_H
#define CELLM_CLI_H

int cellm_cmd_inspect(int argc, char **argv);
int cellm_cmd_verify(int argc, char **argv);
int cellm_cmd_generate(int argc, char **argv);
int cellm_cmd_bench(int argc, char **argv);
int cellm_cmd_tokenize(int argc, char **argv);
int cellm_cmd_serve(int argc, char **argv);
int cellm_cmd_chat(int argc, char **argv);
int cellm_cmd_pull(int argc, char **argv);
/* `generate -i`: the chat command with generate's arguments. */
int cli_generate_interactive(int argc, char **argv);

#endif
