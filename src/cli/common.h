/*
 * common.h: option parsing and model loading shared by the subcommands.
 */
#ifndef CELLM_CLI_COMMON_H
#define CELLM_CLI_COMMON_H

#include <stdint.h>

#include "cellm.h"
#include "cli/args.h"

struct cli_opts {
    const char *model_dir;     /* -m as given, then (cli_resolve) the checkpoint directory */
    char resolved[4096];       /* where cli_resolve keeps the directory */
    const char *given;         /* -m as given (set by cli_resolve) */
    int download;              /* --download: pull ORG/NAME when absent from the cache */
    const char *chat_template; /* --chat-template FILE (where a command accepts it) */
    struct cellm_model_params mp;
    char exec_opts[2048]; /* --exec-opt / --exec-options, joined with ',' (mp.exec_options) */
    int kv_gb;            /* --kv-gb (0: not given); travels in exec_opts as kv_gb= */
};

/* The common flags, for "did you mean" (NULL-terminated). */
extern const char *const cli_common_flags[];
/* Their help lines. */
#define CLI_COMMON_HELP                                                                            \
    "  -m, --model DIR|ORG/NAME[@REV]  checkpoint directory, or a name in the Hugging Face "       \
    "cache\n"                                                                                      \
    "  --download           fetch ORG/NAME into the cache first if it is not there\n"              \
    "  --device cpu|cuda|xla  executor (default cpu)\n"                                            \
    "  -t, --threads N      CPU threads (default: one per CPU)\n"                                  \
    "  --precision exact|fast  fast: bf16/int8 activations, f16 KV cache (CPU; default exact)\n"   \
    "  --pjrt-plugin FILE   XLA only: the PJRT plugin (else $CELLM_PJRT_PLUGIN, else searched)\n"  \
    "  --exec-opt KEY=VALUE executor option (repeatable); --exec-opt help lists them\n"            \
    "  --exec-options K=V,K=V  several executor options at once\n"                                 \
    "  --kv-gb N            CUDA: the KV cache pool's budget in GiB per context (default: most "   \
    "of the free device memory)\n"

/* If argv[*i] is a common option (-m/--model, --download, --device, -t/--threads,
 * --precision, --pjrt-plugin, --exec-opt, --exec-options, --kv-gb), consumes it (and its value) and
 * returns 1; returns -1 on a bad value (message printed), 0 if not a common option.
 * --exec-opt help (or --exec-options help) prints every executor's options and exits 0. */
int cli_common_opt(struct cli_opts *o, int argc, char **argv, int *i);

/* Resolves -m (hub.h): a directory, or ORG/NAME in the cache (downloaded with
 * --download). Returns 0 with a message printed when there is none. */
int cli_resolve(struct cli_opts *o, const char *cmd);

/* The value of option argv[*i] (advancing *i), or NULL with a message. */
const char *cli_value(int argc, char **argv, int *i);

/* Parses ids separated by commas and/or spaces ("1,2,3", "1 2 3") into a malloc'd array.
 * Returns 0 and prints on error. Ids are printed comma-separated everywhere. */
int cli_parse_ids(const char *s, int32_t **ids, int *n);

/* Loads the model, printing the error on failure. The environment the library does not
 * read is read here: $CELLM_PJRT_PLUGIN when --pjrt-plugin is absent, and $VIRTUAL_ENV,
 * $CONDA_PREFIX, $PYTHONPATH and ~/.local as places to search for the plugin. */
struct cellm_model *cli_load_model(const struct cli_opts *o, const char *cmd);

/* Loads the tokenizer of o->model_dir and applies --chat-template; NULL with a message. */
struct cellm_tokenizer *cli_load_tokenizer(const struct cli_opts *o, const char *cmd);

/* Sampling flags shared by generate and chat: --temp/--temperature, --top-k, --top-p,
 * --min-p, --repeat-penalty, --frequency-penalty, --presence-penalty, -s/--seed. What is
 * not given comes from generation_config.json. */
struct cli_sampling {
    struct cellm_sampler_params sp;
    int set_temp, set_topk, set_topp, set_minp, set_rep, set_seed, random_seed;
};
extern const char *const cli_sampling_flags[];
#define CLI_SAMPLING_HELP                                                                          \
    "  --temp, --temperature T  (0 = greedy)   --top-k K   --top-p P   --min-p P\n"                \
    "  --repeat-penalty R   --frequency-penalty F   --presence-penalty P\n"                        \
    "                       sampling; defaults from generation_config.json\n"                      \
    "  -s, --seed S         seed; -1 or none = a random seed (printed with --verbose)\n"

void cli_sampling_init(struct cli_sampling *s);
/* Consumes a sampling flag like cli_common_opt: 1 taken, -1 bad value, 0 not one. */
int cli_sampling_opt(struct cli_sampling *s, int argc, char **argv, int *i);
/* The parameters for dir: generation_config.json, then the flags; a random seed unless one
 * was given (printed to stderr when verbose). Returns 0 with a message on failure. */
int cli_sampling_params(const struct cli_sampling *s, const char *cmd, const char *dir, int verbose,
                        struct cellm_sampler_params *out);

double cli_now(void);

#endif
