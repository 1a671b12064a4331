/*
 * grammar_bench.c: what constrained decoding costs per token, beside what decoding costs.
 *
 *   grammar_bench TOKENIZER_DIR [-n TOKENS] [--threads T] [MODEL_DIR...]
 *
 * Part 1, at the tokenizer's vocabulary (a Qwen2.5 tokenizer.json: 151,665 ids): the
 * vocabulary build, then a walk of TOKENS tokens through a JSON Schema grammar (nested
 * object, enum, bounded integer, bounded strings, a pattern, an array), each step the
 * engine's work for one token: the mask, applying it to a row of logits, accepting the
 * pick. Picks are uniform among the allowed tokens (seeded), a new matcher whenever the
 * grammar completes: the first starts cold, the later ones get the one the grammar kept
 * (as a server request with a schema sent before does).
 * Part 2, for each MODEL_DIR: decode time per token through cellm_gen (temperature 1, the
 * path a constrained request takes), without and with the same grammar when the model dir
 * has a tokenizer.json whose vocabulary the model covers. Numbers go to bench/grammar_notes.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cellm.h"

static const char *const SCHEMA =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":24},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},"
    "\"role\":{\"enum\":[\"admin\",\"user\",\"guest\"]},"
    "\"email\":{\"type\":\"string\",\"pattern\":\"^[a-z]{1,12}@[a-z]{1,12}\\\\.(com|org)$\"},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":10},\"maxItems\":4},"
    "\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},"
    "\"zip\":{\"type\":\"string\",\"pattern\":\"^\\\\d{5}$\"}},\"required\":[\"city\",\"zip\"]}},"
    "\"required\":[\"name\",\"age\",\"role\",\"address\"],\"additionalProperties\":false}";

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double cpu(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const struct cellm_error *e)
{
    fprintf(stderr, "grammar_bench: %s: %s\n", what, e->msg);
    exit(1);
}

static void mask_walk(const char *tokdir, int n)
{
    struct cellm_tokenizer *tok;
    struct cellm_error e;
    if (cellm_tokenizer_load(tokdir, &tok, &e)) die(tokdir, &e);
    int V = cellm_tokenizer_vocab(tok);
    double t0 = now();
    struct cellm_grammar_vocab *v;
    if (cellm_grammar_vocab_new(tok, V, &v, &e)) die("vocabulary", &e);
    double t1 = now();
    struct cellm_grammar *g;
    if (cellm_grammar_new(CELLM_GRAMMAR_JSON_SCHEMA, SCHEMA, strlen(SCHEMA), &g, &e))
        die("schema", &e);
    double t2 = now();
    printf("vocabulary: %d ids, trie built in %.1f ms; schema compiled in %.2f ms\n", V,
           1e3 * (t1 - t0), 1e3 * (t2 - t1));
    uint32_t *mask = malloc(((size_t)V + 31) / 32 * sizeof *mask);
    float *logits = malloc((size_t)V * sizeof *logits),
          *masked = malloc((size_t)V * sizeof *masked);
    int32_t *cand = malloc((size_t)V * sizeof *cand);
    double *dt = malloc((size_t)n * sizeof *dt), sum = 0, cold = 0;
    int n_cold = 0;
    for (int i = 0; i < V; i++)
        logits[i] = (float)(i % 97) * 0.01f;
    struct cellm_matcher *m = NULL;
    unsigned long long rng = 88172645463325252ULL;
    int docs = 0;
    for (int k = 0; k < n; k++) {
        if (!m || cellm_matcher_done(m)) {
            cellm_matcher_free(m);
            if (cellm_matcher_new(g, v, &m, &e)) die("matcher", &e);
            docs++;
        }
        double a = now();
        if (cellm_matcher_mask(m, mask, &e)) die("mask", &e);
        int nc = 0;
        for (int i = 0; i < V; i++) { /* as generate.c applies it */
            int ok = (mask[i >> 5] >> (i & 31)) & 1;
            masked[i] = ok ? logits[i] : -1e30f;
            if (ok) cand[nc++] = i;
        }
        if (!nc) {
            cellm_matcher_free(m);
            m = NULL;
            k--;
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        if (cellm_matcher_accept_token(m, cand[rng % (unsigned)nc], &e)) die("accept", &e);
        dt[k] = now() - a;
        sum += dt[k];
        if (docs == 1) { /* the first document: a grammar no request has used yet */
            cold += dt[k];
            n_cold++;
        }
    }
    qsort(dt, (size_t)n, sizeof *dt, cmp_d);
    printf("per token (mask + apply + accept), %d tokens over %d documents: mean %.3f ms, "
           "median %.3f ms, p90 %.3f ms, max %.3f ms (masked[0] %g)\n",
           n, docs, 1e3 * sum / n, 1e3 * dt[n / 2], 1e3 * dt[n * 9 / 10], 1e3 * dt[n - 1],
           (double)masked[0]);
    printf("  the first document (cold caches): %d tokens, mean %.3f ms; the later ones (the "
           "matcher the grammar kept, as a repeated schema gets): mean %.3f ms\n",
           n_cold, 1e3 * cold / n_cold, n > n_cold ? 1e3 * (sum - cold) / (n - n_cold) : 0.0);
    cellm_matcher_free(m);
    cellm_grammar_free(g);
    cellm_grammar_vocab_free(v);
    cellm_tokenizer_free(tok);
    free(mask);
    free(logits);
    free(masked);
    free(cand);
    free(dt);
}

/* Seconds per generated token over n tokens (gens restarted when they finish), wall clock;
 * *cpu_s gets the process CPU seconds per token (steadier on a shared machine). */
static double decode(struct cellm_ctx *ctx, struct cellm_tokenizer *tok,
                     const struct cellm_grammar *g, const struct cellm_grammar_vocab *v, int n,
                     double *cpu_s)
{
    double busy_cpu = 0;
    struct cellm_gen_params p = cellm_gen_params_default();
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 5;
    p.use_cache = 0;
    p.ignore_eos = !g;
    p.grammar = g;
    p.grammar_vocab = v;
    int32_t prompt[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct cellm_error e;
    int got = 0;
    double busy = 0;
    while (got < n) {
        struct cellm_gen *gen;
        p.max_tokens = n - got;
        if (cellm_gen_new(ctx, tok, prompt, 8, &p, &gen, &e)) die("gen", &e);
        struct cellm_gen_out o;
        cellm_gen_step(ctx, &gen, 1, 0, NULL, &e); /* the prompt: not timed */
        cellm_gen_output(gen, &o);
        got += o.n_ids;
        while (!o.done) {
            double a = now(), c = cpu();
            if (cellm_gen_step(ctx, &gen, 1, 0, NULL, &e)) die("step", &e);
            busy += now() - a;
            busy_cpu += cpu() - c;
            cellm_gen_output(gen, &o);
            got += o.n_ids;
            if (o.error) {
                fprintf(stderr, "grammar_bench: the generation failed: %s\n", o.error);
                exit(1);
            }
        }
        cellm_gen_free(gen);
    }
    *cpu_s = busy_cpu / n;
    return busy / n;
}

static void model_run(const char *dir, int threads, int n)
{
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = threads;
    struct cellm_model *model;
    struct cellm_ctx *ctx;
    struct cellm_error e;
    if (cellm_model_load(dir, &mp, &model, &e)) die(dir, &e);
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    if (cellm_ctx_new(model, &cp, &ctx, &e)) die("context", &e);
    struct cellm_tokenizer *tok = NULL;
    struct cellm_grammar_vocab *v = NULL;
    struct cellm_grammar *g = NULL;
    int V = cellm_model_vocab(model);
    if (!cellm_tokenizer_load(dir, &tok, &e) && !cellm_grammar_vocab_new(tok, V, &v, &e))
        cellm_grammar_new(CELLM_GRAMMAR_JSON_SCHEMA, SCHEMA, strlen(SCHEMA), &g, &e);
    /* no detokenizer in either run: random weights pick ids the tokenizer lacks, and the
     * difference between the runs is then the grammar alone */
    double pc, wc;
    double plain = decode(ctx, NULL, NULL, NULL, n, &pc);
    printf("%s: vocabulary %d, %d threads: decode %.3f ms/token (CPU %.3f ms)", dir, V, threads,
           1e3 * plain, 1e3 * pc);
    fflush(stdout);
    if (g) {
        double with = decode(ctx, NULL, g, v, n, &wc);
        printf(", with the schema grammar %.3f ms/token (CPU %.3f ms): %+.1f%% wall, %+.1f%% CPU",
               1e3 * with, 1e3 * wc, 100.0 * (with - plain) / plain, 100.0 * (wc - pc) / pc);
    }
    printf("\n");
    cellm_grammar_free(g);
    cellm_grammar_vocab_free(v);
    cellm_tokenizer_free(tok);
    cellm_ctx_free(ctx);
    cellm_model_free(model);
}

int main(int argc, char **argv)
{
    int n = 512, threads = 0, first = 0;
    const char *tokdir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            n = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!tokdir) {
            tokdir = argv[i];
        } else if (!first) {
            first = i;
        }
    }
    if (!tokdir || n < 1) {
        fprintf(stderr, "usage: grammar_bench TOKENIZER_DIR [-n TOKENS] [--threads T] "
                        "[MODEL_DIR...]\n");
        return 2;
    }
    mask_walk(tokdir, n);
    for (int i = first; first && i < argc; i++) {
        if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--threads")) {
            i++;
            continue;
        }
        model_run(argv[i], threads, n < 128 ? n : 128);
    }
    return 0;
}
