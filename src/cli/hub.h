/*
 * hub.h: models by name. Resolves `-m` to a checkpoint directory: a directory as given,
 * or ORG/NAME[@REVISION] in the local Hugging Face cache (the layout huggingface_hub,
 * transformers and mlx-lm share), downloading it there on request (pull.c).
 *
 * Reads the environment (the CLI may; the library may not): HF_HUB_CACHE, HF_HOME,
 * XDG_CACHE_HOME, HOME for the cache; HF_ENDPOINT and HF_TOKEN for downloads.
 */
#ifndef CELLM_CLI_HUB_H
#define CELLM_CLI_HUB_H

/* A repository name split from "ORG/NAME[@REVISION]". */
struct hub_ref {
    char repo[256];     /* ORG/NAME */
    char revision[128]; /* "main" unless given */
};

/* Parses "ORG/NAME[@REV]". Returns 0 if s does not look like a repository name. */
int hub_parse_ref(const char *s, struct hub_ref *r);

/* The hub cache directory (malloc'd): $HF_HUB_CACHE, $HF_HOME/hub,
 * $XDG_CACHE_HOME/huggingface/hub or ~/.cache/huggingface/hub. */
char *hub_cache_dir(void);

/* The snapshot directory of r in the cache (malloc'd), or NULL when it is not there. */
char *hub_snapshot(const struct hub_ref *r);

/* Resolves the -m value of command `cmd` to a checkpoint directory (malloc'd). An
 * existing directory is returned as is. A file (GGUF, a lone .safetensors, anything
 * else) or a missing path is refused with a message that says what cellm needs and how
 * to get it. ORG/NAME[@REV] resolves in the cache, and is downloaded first when
 * `download` is set and it is absent. NULL on failure (message printed). */
char *hub_resolve_model(const char *cmd, const char *arg, int download);

/* Downloads r into the cache (pull.c); returns the snapshot directory (malloc'd) or NULL
 * with a message printed. `quiet` drops the progress lines. */
char *hub_pull(const char *cmd, const struct hub_ref *r, int quiet);

#endif
