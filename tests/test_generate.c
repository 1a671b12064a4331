/*
 * test_generate.c: the generation loop that `cellm generate` and `cellm serve` share
 * (cellm_gen_*), and the behaviour they used to disagree on:
 *   1. penalties at temperature 0 are applied (the pick is the sampler's, not argmax);
 *   2. an EOS ends the output with "stop" and is neither in the ids nor in the text;
 *   3. a detokenizer failure fails the request (it never becomes "");
 *   4. a full context ends the output with "length".
 * Also: min_tokens, logprobs equal to the log-softmax of cellm_ctx_eval's logits, and
 * gens batched with a shared prompt compute it once and produce what one gen alone does.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cellm.h"

#define DEMO CELLM_TEST_DATA "/../models/wordnet-llama"

static struct cellm_model *load(const char *dir)
{
    struct cellm_error err;
    struct cellm_model *m;
    struct cellm_model_params mp = cellm_model_params_default();
    mp.n_threads = 2;
    if (cellm_model_load(dir, &mp, &m, &err)) fail_msg("%s: %s", dir, err.msg);
    return m;
}

static void fixture(char *dir, size_t n, const char *rel)
{
    snprintf(dir, n, "%s/%s", CELLM_FIXTURES, rel);
}

/* Runs one gen to its end; ids out (at most cap), returns the number of ids. */
static int run(struct cellm_ctx *ctx, const struct cellm_tokenizer *tok, const int32_t *prompt,
               int n, const struct cellm_gen_params *p, int32_t *ids, int cap,
               struct cellm_gen_out *last, char *text, size_t text_cap)
{
    struct cellm_error err;
    struct cellm_gen *g;
    if (cellm_gen_new(ctx, tok, prompt, n, p, &g, &err)) fail_msg("gen_new: %s", err.msg);
    int k = 0;
    size_t tl = 0;
    struct cellm_gen_out o;
    do {
        cellm_gen_step(ctx, &g, 1, 0, NULL, &err);
        cellm_gen_output(g, &o);
        for (int i = 0; i < o.n_ids && k < cap; i++)
            ids[k++] = o.ids[i];
        if (text && tl + o.text_len < text_cap) {
            memcpy(text + tl, o.text, o.text_len);
            tl += o.text_len;
            text[tl] = 0;
        }
    } while (!o.done);
    *last = o;
    /* o's pointers die with g: keep the error message (finish is a static string) */
    static char error[CELLM_ERROR_MAX];
    if (o.error) snprintf(error, sizeof error, "%s", o.error);
    last->error = o.error ? error : NULL;
    last->ids = NULL;
    last->text = NULL;
    last->lp = last->top = NULL;
    cellm_gen_free(g);
    return k;
}

/* 1. temperature 0 with a repetition penalty: the sampler's picks, which here differ from
 * a plain argmax loop. */
static void test_penalty_at_temp0(void **state)
{
    (void)state;
    char dir[1024];
    fixture(dir, sizeof dir, "llama3-untied/bf16");
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int vocab = cellm_model_vocab(m);
    int32_t prompt[5] = {1, 2, 3, 4, 5}, ids[40], want[40], plain[40];
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = 40;
    p.ignore_eos = 1;
    p.sampling.repetition_penalty = 5.0f;
    struct cellm_gen_out o;
    int n = run(ctx, NULL, prompt, 5, &p, ids, 40, &o, NULL, 0);
    assert_int_equal(n, 40);
    assert_string_equal(o.finish, "length");
    /* the reference: the sampler over the logits of each step, and argmax alone */
    for (int pass = 0; pass < 2; pass++) {
        struct cellm_sampler *s;
        assert_int_equal(cellm_sampler_new(&p.sampling, vocab, &s, &err), CELLM_OK);
        for (int i = 0; i < 5; i++)
            cellm_sampler_accept(s, prompt[i]);
        int seq = cellm_ctx_seq_new(ctx);
        const float *l;
        assert_int_equal(cellm_ctx_eval_seq(ctx, seq, prompt, 5, &l, &err), CELLM_OK);
        int32_t *out = pass ? plain : want;
        for (int i = 0; i < 40; i++) {
            out[i] = pass ? cellm_argmax(l, vocab) : cellm_sampler_sample(s, l);
            cellm_sampler_accept(s, out[i]);
            assert_int_equal(cellm_ctx_eval_seq(ctx, seq, &out[i], 1, &l, &err), CELLM_OK);
        }
        cellm_ctx_seq_free(ctx, seq);
        cellm_sampler_free(s);
    }
    assert_memory_equal(ids, want, sizeof ids);
    assert_memory_not_equal(ids, plain, sizeof ids); /* else this test could not fail */
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

static int32_t *encode(const struct cellm_tokenizer *tok, const char *text, int *n)
{
    struct cellm_error err;
    int32_t *ids;
    size_t k;
    assert_int_equal(cellm_tokenizer_encode(tok, text, strlen(text), 1, &ids, &k, &err), CELLM_OK);
    *n = (int)k;
    return ids;
}

/* 2. EOS: "stop", not among the ids, not in the text; min_tokens holds it off. */
static void test_eos(void **state)
{
    (void)state;
    if (access(DEMO "/tokenizer.json", R_OK)) skip();
    struct cellm_model *m = load(DEMO);
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    assert_int_equal(cellm_tokenizer_load(DEMO, &tok, &err), CELLM_OK);
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int n, n_eos;
    int32_t *prompt = encode(tok, "The cat", &n), ids[64];
    const int32_t *eos = cellm_model_eos(m, &n_eos);
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = 60;
    struct cellm_gen_out o;
    char text[1024];
    int k = run(ctx, tok, prompt, n, &p, ids, 64, &o, text, sizeof text);
    assert_string_equal(o.finish, "stop");
    assert_int_equal(o.n_gen, k + 1); /* the EOS was picked, and dropped */
    for (int i = 0; i < k; i++)
        for (int e = 0; e < n_eos; e++)
            assert_int_not_equal(ids[i], eos[e]);
    char *dec;
    assert_int_equal(cellm_tokenizer_decode(tok, ids, (size_t)k, 1, &dec, &err), CELLM_OK);
    assert_string_equal(text, dec);
    free(dec);
    /* min_tokens: no EOS before then */
    p.min_tokens = k + 4;
    int k2 = run(ctx, tok, prompt, n, &p, ids, 64, &o, NULL, 0);
    assert_true(k2 >= k + 4);
    free(prompt);
    cellm_ctx_free(ctx);
    cellm_tokenizer_free(tok);
    cellm_model_free(m);
}

/* 3. A tokenizer that cannot decode the model's ids (its vocabulary is 3 pieces): the gen
 * fails with the detokenizer's message. */
static void test_detok_error(void **state)
{
    (void)state;
    char dir[] = "/tmp/cellm-gen-XXXXXX", path[256], src[1024];
    assert_non_null(mkdtemp(dir));
    fixture(src, sizeof src, "llama3-untied/bf16");
    const char *files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char from[1100];
        snprintf(from, sizeof from, "%s/%s", src, files[i]);
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        assert_int_equal(symlink(from, path), 0);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, "
          "\"merges\": [\"a b\"]}}",
          f);
    fclose(f);
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    assert_int_equal(cellm_tokenizer_load(dir, &tok, &err), CELLM_OK);
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int32_t prompt[3] = {0, 1, 2}, ids[64];
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = 64;
    p.ignore_eos = 1;
    struct cellm_gen_out o;
    run(ctx, tok, prompt, 3, &p, ids, 64, &o, NULL, 0);
    assert_non_null(o.error);
    assert_null(o.finish);
    assert_non_null(strstr(o.error, "detokenizer"));
    cellm_ctx_free(ctx);
    cellm_tokenizer_free(tok);
    cellm_model_free(m);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    rmdir(dir);
}

/* 4. The context fills: "length" after exactly the room left. */
static void test_context_full(void **state)
{
    (void)state;
    char dir[1024];
    fixture(dir, sizeof dir, "qwen3/bf16");
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    int32_t prompt[6] = {3, 1, 4, 1, 5, 9}, ids[64];
    struct cellm_gen_params p = cellm_gen_params_default();
    p.ignore_eos = 1;
    p.ctx_limit = 6 + 7;
    struct cellm_gen_out o;
    int k = run(ctx, NULL, prompt, 6, &p, ids, 64, &o, NULL, 0);
    assert_string_equal(o.finish, "length");
    assert_int_equal(k, 7);
    /* and at the model's own maximum: no error from the engine, "length" */
    p.ctx_limit = 0;
    int maxc = cellm_model_max_context(m);
    int32_t *big = calloc((size_t)maxc, sizeof *big);
    for (int i = 0; i < maxc - 3; i++)
        big[i] = (i * 13 + 1) % cellm_model_vocab(m);
    k = run(ctx, NULL, big, maxc - 3, &p, ids, 64, &o, NULL, 0);
    assert_null(o.error);
    assert_string_equal(o.finish, "length");
    assert_int_equal(k, 3);
    free(big);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

/* logprobs: the log-softmax of cellm_ctx_eval's logits, the top ones in order. */
static void test_logprobs(void **state)
{
    (void)state;
    char dir[1024];
    fixture(dir, sizeof dir, "gemma2/bf16");
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    struct cellm_ctx *ctx;
    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = 2;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    int vocab = cellm_model_vocab(m);
    int32_t prompt[4] = {7, 8, 9, 10};
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = 8;
    p.ignore_eos = 1;
    p.logprobs = 5;
    p.sampling.temperature = 0.8f;
    p.sampling.seed = 42;
    struct cellm_gen *g;
    assert_int_equal(cellm_gen_new(ctx, NULL, prompt, 4, &p, &g, &err), CELLM_OK);
    int ref = cellm_ctx_seq_new(ctx);
    assert_true(ref >= 0);
    const float *l;
    assert_int_equal(cellm_ctx_eval_seq(ctx, ref, prompt, 4, &l, &err), CELLM_OK);
    float *row = malloc((size_t)vocab * sizeof *row);
    struct cellm_gen_out o;
    for (int step = 0; step < 8; step++) {
        memcpy(row, l, (size_t)vocab * sizeof *row);
        assert_int_equal(cellm_gen_step(ctx, &g, 1, 0, NULL, &err), CELLM_OK);
        cellm_gen_output(g, &o);
        assert_int_equal(o.n_ids, 1);
        assert_int_equal(o.n_top, 5);
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < vocab; v++)
            mx = fmax(mx, row[v]);
        for (int v = 0; v < vocab; v++)
            sum += exp(row[v] - mx);
        double lse = mx + log(sum);
        assert_true(fabs(o.lp[0].logprob - (row[o.ids[0]] - lse)) < 1e-5);
        for (int k = 0; k < 5; k++) {
            int32_t id = o.top[k].id;
            assert_true(fabs(o.top[k].logprob - (row[id] - lse)) < 1e-5);
            int better = 0; /* exactly k ids are more likely (ties: lower id first) */
            for (int v = 0; v < vocab; v++)
                better += row[v] > row[id] || (row[v] == row[id] && v < id);
            assert_int_equal(better, k);
        }
        assert_int_equal(cellm_ctx_eval_seq(ctx, ref, o.ids, 1, &l, &err), CELLM_OK);
    }
    free(row);
    cellm_gen_free(g);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

/* Three gens with one long prompt, stepped together with a prefix cache: the prompt is
 * computed about once, and each produces what a gen alone in a cold context does. */
static void test_shared_prompt(void **state)
{
    (void)state;
    char dir[1024];
    fixture(dir, sizeof dir, "gemma3/bf16");
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    enum { N = 150, GEN = 12 };
    int32_t prompt[N], alone[GEN], ids[3][GEN];
    for (int i = 0; i < N; i++)
        prompt[i] = (i * 29 + 11) % cellm_model_vocab(m);
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = GEN;
    p.ignore_eos = 1;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    struct cellm_gen_out o;
    run(ctx, NULL, prompt, N, &p, alone, GEN, &o, NULL, 0);
    cellm_ctx_free(ctx);

    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.max_seqs = 3;
    cp.cache_bytes = 64 << 20;
    cp.cache_block = 16;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    struct cellm_gen *g[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(cellm_gen_new(ctx, NULL, prompt, N, &p, &g[i], &err), CELLM_OK);
    int prefill = 0, waited = 0, done = 0, k[3] = {0, 0, 0};
    while (done < 3) {
        struct cellm_gen_step_stats ss;
        assert_int_equal(cellm_gen_step(ctx, g, 3, 64, &ss, &err), CELLM_OK);
        prefill += ss.prefill_rows;
        waited += ss.waiting;
        done = 0;
        for (int i = 0; i < 3; i++) {
            cellm_gen_output(g[i], &o);
            for (int j = 0; j < o.n_ids; j++)
                ids[i][k[i]++] = o.ids[j];
            done += o.done;
        }
    }
    for (int i = 0; i < 3; i++) {
        assert_memory_equal(ids[i], alone, sizeof alone);
        cellm_gen_output(g[i], &o);
        if (i) assert_int_equal(o.n_cached, (N - 1) / 16 * 16);
        cellm_gen_free(g[i]);
    }
    assert_true(waited > 0);
    assert_int_equal(prefill, N + 2 * (N - (N - 1) / 16 * 16));
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

/* Runs one gen to its end, stepping it alone; returns the prompt rows it prefilled. */
static int run_rows(struct cellm_ctx *ctx, const int32_t *prompt, int n,
                    const struct cellm_gen_params *p, int32_t *ids, struct cellm_gen_out *last)
{
    struct cellm_error err;
    struct cellm_gen *g;
    if (cellm_gen_new(ctx, NULL, prompt, n, p, &g, &err)) fail_msg("gen_new: %s", err.msg);
    int rows = 0, k = 0;
    struct cellm_gen_out o;
    do {
        struct cellm_gen_step_stats ss;
        if (cellm_gen_step(ctx, &g, 1, 0, &ss, &err)) fail_msg("step: %s", err.msg);
        rows += ss.prefill_rows;
        cellm_gen_output(g, &o);
        for (int i = 0; i < o.n_ids; i++)
            ids[k++] = o.ids[i];
    } while (!o.done);
    *last = o;
    last->ids = NULL;
    last->text = NULL;
    last->lp = last->top = NULL;
    cellm_gen_free(g);
    return rows;
}

/* A model with sequence state and a prefix cache: a chat's first turn leaves a snapshot of
 * the state where its prompt's last whole block ends, and the second turn (its prompt
 * extends the first's, and its slot was taken by another request meanwhile) resumes from
 * it, with the ids a cold context gives. */
static void state_turns(const char *rel)
{
    char dir[1024];
    fixture(dir, sizeof dir, rel);
    struct cellm_model *m = load(dir);
    struct cellm_error err;
    enum { N1 = 70, GEN = 8, N2 = N1 + GEN + 20, NQ = 40, B = 16 };
    const int vocab = cellm_model_vocab(m);
    int32_t p1[N1], p2[N2], q[NQ], cold1[GEN], cold2[GEN], ids[GEN];
    for (int i = 0; i < N1; i++)
        p1[i] = (i * 37 + 5) % vocab;
    for (int i = 0; i < NQ; i++)
        q[i] = (i * 11 + 3) % vocab;
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = GEN;
    p.ignore_eos = 1;
    struct cellm_gen_out o;
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    run_rows(ctx, p1, N1, &p, cold1, &o);
    memcpy(p2, p1, sizeof p1);
    memcpy(p2 + N1, cold1, sizeof cold1);
    for (int i = N1 + GEN; i < N2; i++)
        p2[i] = (i * 13 + 1) % vocab;
    const int rows_cold = run_rows(ctx, p2, N2, &p, cold2, &o);
    assert_int_equal(rows_cold, N2);
    cellm_ctx_free(ctx);

    struct cellm_ctx_params cp = cellm_ctx_params_default();
    cp.cache_bytes = 64 << 20;
    cp.cache_block = B;
    assert_int_equal(cellm_ctx_new(m, &cp, &ctx, &err), CELLM_OK);
    assert_int_equal(run_rows(ctx, p1, N1, &p, ids, &o), N1);
    assert_memory_equal(ids, cold1, sizeof ids);
    struct cellm_cache_stats cs;
    cellm_ctx_cache_stats(ctx, &cs);
    assert_int_equal(cs.snapshots, 1);
    assert_int_equal(cs.blocks, (N1 - 1) / B);
    run_rows(ctx, q, NQ, &p, ids, &o); /* takes the only slot: its history is gone */
    const int rows = run_rows(ctx, p2, N2, &p, ids, &o);
    assert_int_equal(o.n_cached, (N1 - 1) / B * B);
    assert_int_equal(rows, N2 - o.n_cached);
    assert_memory_equal(ids, cold2, sizeof ids);
    /* the same again from the first turn's slot, kept whole (slot reuse: 77 positions
     * with their state), which the snapshot turn 2 left at 96 then extends */
    run_rows(ctx, p1, N1, &p, ids, &o);
    const int rows_slot = run_rows(ctx, p2, N2, &p, ids, &o);
    assert_int_equal(o.n_cached, (N2 - 1) / B * B);
    assert_true(o.n_cached > N1 + GEN - 1);
    assert_memory_equal(ids, cold2, sizeof ids);
    printf("%s: turn 2 (%d prompt tokens) prefilled %d rows without a cache, %d from the "
           "first turn's snapshot, %d from a kept slot and its own snapshot\n",
           rel, N2, rows_cold, rows, rows_slot);
    /* a longer answer: turn 1's decode leaves its snapshot at its last whole block (96, past
     * the prompt's 64), so turn 2 resumes after most of the answer */
    enum { GEN3 = 30, N3 = N1 + GEN3 + 20 };
    int32_t p3[N3], a3[GEN3], cold3[GEN], ids3[GEN3];
    p.max_tokens = GEN3;
    run_rows(ctx, p1, N1, &p, a3, &o);
    memcpy(p3, p1, sizeof p1);
    memcpy(p3 + N1, a3, sizeof a3);
    for (int i = N1 + GEN3; i < N3; i++)
        p3[i] = (i * 17 + 2) % vocab;
    p.max_tokens = GEN;
    run_rows(ctx, q, NQ, &p, ids3, &o); /* the slot goes to another request again */
    const int rows3 = run_rows(ctx, p3, N3, &p, ids3, &o);
    assert_int_equal(o.n_cached, (N1 + GEN3 - 1) / B * B);
    assert_int_equal(rows3, N3 - o.n_cached);
    cellm_ctx_free(ctx);
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    assert_int_equal(run_rows(ctx, p3, N3, &p, cold3, &o), N3);
    assert_memory_equal(ids3, cold3, sizeof cold3);
    printf("%s: after a %d-token answer, turn 2 (%d prompt tokens) prefilled %d rows\n", rel, GEN3,
           N3, rows3);
    cellm_ctx_free(ctx);
    cellm_model_free(m);
}

static void test_state_turns(void **state)
{
    (void)state;
    state_turns("lfm2/f32");
    state_turns("qwen3.5/bf16");
}

/* 7. A grammar: every output follows it, greedy or sampled, ends with "stop" once the
 * grammar is complete (no EOS needed), and logprobs stay those of the raw logits. */
static void test_grammar(void **state)
{
    (void)state;
    if (access(DEMO "/tokenizer.json", R_OK)) skip();
    struct cellm_model *m = load(DEMO);
    struct cellm_error err;
    struct cellm_tokenizer *tok;
    assert_int_equal(cellm_tokenizer_load(DEMO, &tok, &err), CELLM_OK);
    struct cellm_ctx *ctx;
    assert_int_equal(cellm_ctx_new(m, NULL, &ctx, &err), CELLM_OK);
    struct cellm_grammar_vocab *v;
    assert_int_equal(cellm_grammar_vocab_new(tok, cellm_model_vocab(m), &v, &err), CELLM_OK);
    const char *gbnf = "root ::= (\"yes\" | \"no\") \", \" [0-9] [0-9]? \"%\"\n";
    struct cellm_grammar *g;
    assert_int_equal(cellm_grammar_new(CELLM_GRAMMAR_GBNF, gbnf, strlen(gbnf), &g, &err), CELLM_OK);
    int n;
    int32_t *prompt = encode(tok, "The cat", &n), ids[64];
    struct cellm_gen_params p = cellm_gen_params_default();
    p.max_tokens = 60;
    p.grammar = g;
    struct cellm_gen *gen;
    assert_int_equal(cellm_gen_new(ctx, tok, prompt, n, &p, &gen, &err), CELLM_ERR_ARG);
    p.grammar_vocab = v;
    p.logprobs = 1;
    for (int seed = 0; seed < 6; seed++) {
        p.sampling.temperature = seed ? 1.5f : 0.0f;
        p.sampling.seed = (uint64_t)seed;
        struct cellm_gen_out o;
        char text[256];
        int k = run(ctx, tok, prompt, n, &p, ids, 64, &o, text, sizeof text);
        assert_null(o.error);
        assert_string_equal(o.finish, "stop");
        assert_int_equal(o.n_gen, k); /* ended by the grammar, not by an EOS */
        const char *d = text + (strncmp(text, "yes", 3) ? 2 : 3);
        if (strncmp(text, "yes, ", 5) && strncmp(text, "no, ", 4)) fail_msg("'%s'", text);
        d += 2;
        int digits = 0;
        while (*d >= '0' && *d <= '9') {
            d++;
            digits++;
        }
        if (digits < 1 || digits > 2 || strcmp(d, "%")) fail_msg("'%s'", text);
    }
    free(prompt);
    cellm_grammar_free(g);
    cellm_grammar_vocab_free(v);
    cellm_ctx_free(ctx);
    cellm_tokenizer_free(tok);
    cellm_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_penalty_at_temp0), cmocka_unit_test(test_eos),
        cmocka_unit_test(test_detok_error),      cmocka_unit_test(test_context_full),
        cmocka_unit_test(test_logprobs),         cmocka_unit_test(test_shared_prompt),
        cmocka_unit_test(test_grammar),          cmocka_unit_test(test_state_turns),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
