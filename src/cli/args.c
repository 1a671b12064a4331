/*
 * args.c: strict option values, the unknown-option message, prompt files, --version.
 */
#include "args.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cli/version.h"
#include "exec/cpu/kernels.h"

int cli_int(const char *cmd, const char *flag, const char *v, long lo, long hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long n = v && *v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || n < lo || n > hi) {
        fprintf(stderr, "cellm %s: %s expects an integer in [%ld, %ld], got '%s'\n", cmd, flag, lo,
                hi, v ? v : "");
        return 0;
    }
    *out = (int)n;
    return 1;
}

int cli_float(const char *cmd, const char *flag, const char *v, double lo, double hi, float *out)
{
    char *end = NULL;
    errno = 0;
    double x = v && *v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !isfinite(x) || x < lo || x > hi) {
        fprintf(stderr, "cellm %s: %s expects a number in [%g, %g], got '%s'\n", cmd, flag, lo, hi,
                v ? v : "");
        return 0;
    }
    *out = (float)x;
    return 1;
}

int cli_seed(const char *cmd, const char *flag, const char *v, uint64_t *seed, int *random_seed)
{
    if (v && !strcmp(v, "-1")) {
        *random_seed = 1;
        return 1;
    }
    char *end = NULL;
    errno = 0;
    /* strtoull accepts "-5" (and wraps it): only plain digits are a seed */
    int digits = v && *v >= '0' && *v <= '9';
    unsigned long long s = digits ? strtoull(v, &end, 10) : 0;
    if (!digits || *end || errno) {
        fprintf(stderr,
                "cellm %s: %s expects an integer in [0, 18446744073709551615] or -1 (random), "
                "got '%s'\n",
                cmd, flag, v ? v : "");
        return 0;
    }
    *seed = s;
    *random_seed = 0;
    return 1;
}

uint64_t cli_random_seed(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof s, 0) == (ssize_t)sizeof s) return s;
    /* no random source: the clock and the process id still differ between runs */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^
           ((uint64_t)getpid() << 32);
}

/* Edit distance between a and b (both short flags). */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 64;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t sub = diag + (a[i - 1] != b[j - 1]);
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[lb];
}

const char *cli_nearest(const char *s, const char *const *known)
{
    const char *best = NULL;
    size_t bd = (size_t)-1;
    for (size_t i = 0; known && known[i]; i++) {
        size_t d = distance(s, known[i]);
        if (d < bd) bd = d, best = known[i];
    }
    /* close enough to be a typo: a third of the letters at most */
    return best && bd <= (strlen(s) + 2) / 3 ? best : NULL;
}

void cli_unknown(const char *cmd, const char *a, const char *const *known)
{
    /* llama.cpp's layer offload has no meaning here: a model runs on one device */
    if (!strcmp(a, "-ngl") || !strcmp(a, "--n-gpu-layers") || !strcmp(a, "--gpu-layers")) {
        fprintf(stderr,
                "cellm %s: unknown option '%s': cellm runs the whole model on one device; "
                "use --device cuda\n",
                cmd, a);
        return;
    }
    /* compare without an "=value" tail: --temp=0.7 is not an accepted spelling */
    char key[64];
    snprintf(key, sizeof key, "%s", a);
    char *eq = strchr(key, '=');
    if (eq) *eq = 0;
    const char *best = cli_nearest(key, known);
    if (best)
        fprintf(stderr, "cellm %s: unknown option '%s' (did you mean %s%s?)\n", cmd, a, best,
                eq ? " VALUE, with a space" : "");
    else
        fprintf(stderr, "cellm %s: unknown option '%s' (cellm %s --help lists them)\n", cmd, a,
                cmd);
}

void cli_unknown_command(const char *a, const char *const *known)
{
    const char *best = cli_nearest(a, known);
    if (best)
        fprintf(stderr, "cellm: unknown command '%s' (did you mean %s?)\n", a, best);
    else
        fprintf(stderr, "cellm: unknown command '%s'\n", a);
}

char *cli_read_file(const char *cmd, const char *path)
{
    int is_stdin = !strcmp(path, "-");
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cellm %s: %s: %s\n", cmd, path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 == cap) {
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - 1 - n, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    if (!is_stdin) fclose(f);
    if (!buf || bad) {
        fprintf(stderr, "cellm %s: %s: %s\n", cmd, is_stdin ? "stdin" : path,
                buf ? "read error" : "out of memory");
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    return buf;
}

void cli_print_version(FILE *f)
{
    fprintf(f, "cellm %s (git %s)\n", CELLM_VERSION, CELLM_GIT_REVISION);
#ifdef CELLM_CUDA
    fprintf(f, "CUDA: yes\n");
#else
    fprintf(f, "CUDA: no (configure with -DCELLM_CUDA=ON)\n");
#endif
    fprintf(f, "XLA: yes (loads a PJRT plugin at run time)\n");
    fprintf(f, "CPU kernels: portable, avx2+fma+f16c, avx512f; this CPU: %s\n",
            cellm_cpu_isa_name(cellm_cpu_isa()));
#ifdef CELLM_HAVE_MHD
    fprintf(f, "serve: yes (libmicrohttpd)\n");
#else
    fprintf(f, "serve: no (install libmicrohttpd-dev)\n");
#endif
#ifdef CELLM_HAVE_CURL
    fprintf(f, "pull: yes (libcurl)\n");
#else
    fprintf(f, "pull: no (install libcurl4-openssl-dev)\n");
#endif
    fprintf(f, "build: %s, %s\n", CELLM_BUILD_TYPE, __VERSION__);
}
