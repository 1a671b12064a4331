/*
 * hub.c: -m resolution: directories, helpful refusals of files, and the Hugging Face
 * cache layout (models--ORG--NAME/{refs/REV, snapshots/COMMIT/}).
 */
#include "hub.h"

#include "cli/args.h"
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

int hub_parse_ref(const char *s, struct hub_ref *r)
{
    const char *at = strchr(s, '@');
    size_t n = at ? (size_t)(at - s) : strlen(s);
    const char *slash = memchr(s, '/', n);
    if (!slash || slash == s || slash + 1 == s + n || n >= sizeof r->repo) return 0;
    if (s[0] == '.' || slash[1] == '.') return 0; /* ./x, ../x, x/.y are paths */
    for (size_t i = 0; i < n; i++)
        if (s + i != slash && !name_char(s[i])) return 0;
    memcpy(r->repo, s, n);
    r->repo[n] = 0;
    const char *rev = at ? at + 1 : "main";
    if (!*rev || strlen(rev) >= sizeof r->revision || strstr(rev, "..")) return 0;
    for (const char *p = rev; *p; p++)
        if (!name_char(*p) && *p != '/') return 0;
    snprintf(r->revision, sizeof r->revision, "%s", rev);
    return 1;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *hub_cache_dir(void)
{
    const char *e = getenv("HF_HUB_CACHE");
    if (e && *e) return strdup(e);
    e = getenv("HF_HOME");
    if (e && *e) return join(e, "hub");
    e = getenv("XDG_CACHE_HOME");
    if (e && *e) return join(e, "huggingface/hub");
    e = getenv("HOME");
    return join(e && *e ? e : ".", ".cache/huggingface/hub");
}

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The first line of a small file, without its newline, into buf. */
static int read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    if (!ok) return 0;
    buf[strcspn(buf, "\r\n")] = 0;
    return *buf != 0;
}

char *hub_snapshot(const struct hub_ref *r)
{
    char *cache = hub_cache_dir();
    if (!cache) return NULL;
    char folder[600], repo[256];
    snprintf(repo, sizeof repo, "%s", r->repo);
    *strchr(repo, '/') = 0;
    snprintf(folder, sizeof folder, "%s/models--%s--%s", cache, repo, strchr(r->repo, '/') + 1);
    free(cache);
    /* a branch or tag names a commit through refs/; a commit names its snapshot itself */
    char path[1200], commit[128];
    snprintf(path, sizeof path, "%s/refs/%s", folder, r->revision);
    if (!read_line(path, commit, sizeof commit)) snprintf(commit, sizeof commit, "%s", r->revision);
    snprintf(path, sizeof path, "%s/snapshots/%s", folder, commit);
    return is_dir(path) ? strdup(path) : NULL;
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* A file given to -m: say what it is and what cellm wants instead. */
static void refuse_file(const char *cmd, const char *arg)
{
    char magic[4] = {0};
    FILE *f = fopen(arg, "rb");
    if (f) {
        if (fread(magic, 1, 4, f) != 4) memset(magic, 0, 4);
        fclose(f);
    }
    if (!memcmp(magic, "GGUF", 4) || has_suffix(arg, ".gguf")) {
        fprintf(stderr,
                "cellm %s: %s is a GGUF file, which cellm does not read. cellm loads checkpoint "
                "directories as published on Hugging Face (config.json, tokenizer.json, "
                "*.safetensors): give -m that directory, or the original repository's name "
                "(cellm pull ORG/NAME downloads it)\n",
                cmd, arg);
        return;
    }
    if (has_suffix(arg, ".safetensors")) {
        char *dir = strdup(arg);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        const char *parent = slash ? (*slash = 0, *dir ? dir : "/") : ".";
        fprintf(stderr,
                "cellm %s: %s is a single .safetensors file; cellm needs the checkpoint "
                "directory that holds it with config.json and tokenizer.json: -m %s\n",
                cmd, arg, parent);
        free(dir);
        return;
    }
    fprintf(stderr,
            "cellm %s: %s is a file; -m takes a checkpoint directory (config.json, "
            "tokenizer.json, *.safetensors) or a Hugging Face name ORG/NAME\n",
            cmd, arg);
}

char *hub_resolve_model(const char *cmd, const char *arg, int download)
{
    struct stat st;
    if (stat(arg, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return strdup(arg);
        refuse_file(cmd, arg);
        return NULL;
    }
    int stat_errno = errno;
    struct hub_ref r;
    if (hub_parse_ref(arg, &r)) {
        char *snap = hub_snapshot(&r);
        if (snap) return snap;
        if (download) return hub_pull(cmd, &r, 0);
        char *cache = hub_cache_dir();
        fprintf(stderr,
                "cellm %s: %s is neither a directory nor in the Hugging Face cache (%s); "
                "`cellm pull %s` or --download fetches it\n",
                cmd, arg, cache ? cache : "?", arg);
        free(cache);
        return NULL;
    }
    fprintf(stderr,
            "cellm %s: %s: no such directory (%s). -m takes a checkpoint directory "
            "(config.json, tokenizer.json, *.safetensors) or a Hugging Face name ORG/NAME\n",
            cmd, arg, strerror(stat_errno));
    return NULL;
}

int cellm_cmd_pull(int argc, char **argv)
{
    const char *name = NULL;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: cellm pull ORG/NAME[@REVISION] [-q]\n"
                   "Downloads what a checkpoint needs (config, tokenizer files, chat template,\n"
                   "the safetensors weights the index names) into the Hugging Face cache, the\n"
                   "one transformers and mlx-lm use: $HF_HUB_CACHE, else $HF_HOME/hub, else\n"
                   "~/.cache/huggingface/hub. Interrupted transfers resume; every file is\n"
                   "checked against the hub's size and sha256. $HF_TOKEN (or the token of\n"
                   "`huggingface-cli login`) is sent for gated repositories; $HF_ENDPOINT\n"
                   "names another hub. Afterwards, -m ORG/NAME finds it.\n"
                   "  -q, --quiet    no progress lines\n"
                   "  -h, --help     this text\n");
            return 0;
        }
        if (!strcmp(argv[i], "-q") || !strcmp(argv[i], "--quiet")) {
            quiet = 1;
        } else if (argv[i][0] == '-') {
            static const char *const known[] = {"--quiet", "-q", "--help", NULL};
            cli_unknown("pull", argv[i], known);
            return 2;
        } else if (name) {
            fprintf(stderr, "cellm pull: one ORG/NAME expected, got '%s' and '%s'\n", name,
                    argv[i]);
            return 2;
        } else {
            name = argv[i];
        }
    }
    struct hub_ref r;
    if (!name || !hub_parse_ref(name, &r)) {
        fprintf(stderr,
                "cellm pull: expected ORG/NAME[@REVISION], e.g. "
                "mlx-community/Qwen2.5-0.5B-Instruct-4bit%s%s%s\n",
                name ? ", got '" : "", name ? name : "", name ? "'" : "");
        return 2;
    }
    char *dir = hub_pull("pull", &r, quiet);
    if (!dir) return 1;
    printf("%s\n", dir);
    free(dir);
    return 0;
}
