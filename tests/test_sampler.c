/*
 * test_sampler.c: unit tests of the sampler (src/engine/sampler.c).
 *
 * Greedy and top-k 1 are checked against a plain argmax; determinism against the seed;
 * the penalties value by value against hand arithmetic; the candidate set of every
 * truncation (top-k, top-p, min-p, and their mixes) against an independent reference
 * that sorts the whole vocabulary; and the draws themselves with a chi-square test of
 * 200k samples against the reference distribution (fixed seed, bound at p ~ 1e-6, so the
 * test is deterministic and a real bias fails it). generation_config.json parsing runs
 * on small files written into a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/alloc.h"
#include "cellm.h"
#include "engine/sampler_internal.h"

static struct cellm_sampler *new_sampler(const struct cellm_sampler_params *p, int vocab)
{
    struct cellm_sampler *s = NULL;
    struct cellm_error err = {{0}};
    enum cellm_status st = cellm_sampler_new(p, vocab, &s, &err);
    if (st != CELLM_OK) fail_msg("cellm_sampler_new: %s", err.msg);
    return s;
}

/* A deterministic pseudo-random logit vector, independent of the sampler's generator. */
static void fill_logits(float *l, int n, uint32_t seed, float scale)
{
    uint32_t x = seed * 2654435761u + 1;
    for (int i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        l[i] = scale * ((float)(x >> 8) / 16777216.0f - 0.5f);
    }
}

static int32_t ref_argmax(const float *l, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* ---- greedy ---------------------------------------------------------------------------- */

static void test_greedy_ties(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    assert_true(p.temperature == 0.0f);
    struct cellm_sampler *s = new_sampler(&p, 6);
    float l[6] = {1.0f, 3.0f, -2.0f, 3.0f, NAN, 3.0f};
    for (int i = 0; i < 5; i++)
        assert_int_equal(cellm_sampler_sample(s, l), 1);
    float m[6] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(cellm_sampler_sample(s, m), 0);
    float n[6] = {NAN, -5.0f, NAN, NAN, -4.0f, -4.0f};
    assert_int_equal(cellm_sampler_sample(s, n), 4);
    cellm_sampler_free(s);

    /* greedy ignores the seed and the filters */
    p.seed = 99;
    p.top_k = 3;
    p.top_p = 0.5f;
    s = new_sampler(&p, 6);
    assert_int_equal(cellm_sampler_sample(s, l), 1);
    cellm_sampler_free(s);
}

static void test_greedy_large_vocab(void **state)
{
    (void)state;
    const int v = 151936;
    float *l = malloc(sizeof(float) * v);
    struct cellm_sampler_params p = cellm_sampler_params_default();
    struct cellm_sampler *g = new_sampler(&p, v);
    p.temperature = 0.7f;
    p.top_k = 1;
    p.seed = 5;
    struct cellm_sampler *k1 = new_sampler(&p, v);
    for (uint32_t round = 0; round < 20; round++) {
        fill_logits(l, v, round, 20.0f);
        if (round % 2) l[v - 1 - round] = l[ref_argmax(l, v)]; /* a tie: the lower id must win */
        int32_t want = ref_argmax(l, v);
        assert_int_equal(cellm_sampler_sample(g, l), want);
        assert_int_equal(cellm_sampler_sample(k1, l), want);
    }
    cellm_sampler_free(g);
    cellm_sampler_free(k1);
    free(l);
}

/* cellm_argmax against the plain loop on vectors of every length around the 64-logit
 * blocks, with NaN, infinities, signed zeros and ties mixed in, and all-NaN/-inf rows. */
static int32_t plain_argmax(const float *l, int n)
{
    int32_t best = -1;
    float bv = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (l[i] > bv) {
            bv = l[i];
            best = i;
        }
    for (int32_t i = 0; best < 0 && i < n; i++)
        if (!isnan(l[i])) best = i;
    return best < 0 ? 0 : best;
}

static void test_argmax_edges(void **state)
{
    (void)state;
    float l[300];
    uint32_t r = 12345;
    int checked = 0;
    for (int trial = 0; trial < 4000; trial++) {
        const int n = trial % 300;
        for (int i = 0; i < n; i++) {
            r = r * 1664525u + 1013904223u;
            const uint32_t k = (r >> 8) % 12;
            l[i] = k == 0   ? NAN
                   : k == 1 ? -INFINITY
                   : k == 2 ? (trial % 7 ? INFINITY : -INFINITY)
                   : k == 3 ? 0.0f
                   : k == 4 ? -0.0f
                            : (float)((r >> 16) % 5);
            if (trial % 11 == 0) l[i] = trial % 2 ? NAN : -INFINITY; /* nothing to pick */
        }
        assert_int_equal(cellm_argmax(l, n), plain_argmax(l, n));
        checked++;
    }
    assert_int_equal(checked, 4000);
    float big[1000];
    fill_logits(big, 1000, 3, 5.0f);
    big[640] = 100.0f, big[700] = 100.0f; /* the maximum twice, in two blocks */
    assert_int_equal(cellm_argmax(big, 1000), 640);
    big[17] = 100.0f; /* and once more in the first block */
    assert_int_equal(cellm_argmax(big, 1000), 17);
    assert_int_equal(cellm_argmax(big, 0), 0);
}

/* ---- determinism ----------------------------------------------------------------------- */

static void draw_seq(uint64_t seed, int32_t *out, int n, const float *l, int v)
{
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.temperature = 1.0f;
    p.top_p = 0.9f;
    p.seed = seed;
    struct cellm_sampler *s = new_sampler(&p, v);
    for (int i = 0; i < n; i++)
        out[i] = cellm_sampler_sample(s, l);
    cellm_sampler_free(s);
}

static void test_seed(void **state)
{
    (void)state;
    enum { V = 1000, N = 200 };
    float l[V];
    fill_logits(l, V, 7, 4.0f);
    int32_t a[N], b[N], c[N];
    draw_seq(42, a, N, l, V);
    draw_seq(42, b, N, l, V);
    draw_seq(43, c, N, l, V);
    assert_memory_equal(a, b, sizeof a);
    int differ = 0;
    for (int i = 0; i < N; i++)
        differ += a[i] != c[i];
    assert_true(differ > N / 2);

    /* the logits are not modified */
    float copy[V];
    memcpy(copy, l, sizeof l);
    draw_seq(1, a, 3, l, V);
    assert_memory_equal(copy, l, sizeof l);
}

static void test_generator_zero_seed(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    struct cellm_sampler *s = new_sampler(&p, 4);
    uint64_t x = cellm_sampler_next_u64(s), y = cellm_sampler_next_u64(s);
    assert_true(x != 0 || y != 0);
    assert_true(x != y);
    cellm_sampler_free(s);
}

/* ---- penalties --------------------------------------------------------------------------- */

static void test_penalties_by_hand(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    p.penalty_last_n = -1;
    struct cellm_sampler *s = new_sampler(&p, 8);
    int32_t hist[] = {1, 2, 2, 5, 1, 1, 7, -3, 8, 100}; /* the last three are ignored */
    for (size_t i = 0; i < sizeof hist / sizeof hist[0]; i++)
        cellm_sampler_accept(s, hist[i]);
    float l[8] = {1.0f, 4.0f, -3.0f, 2.0f, 5.0f, 0.0f, 6.0f, -1.0f};
    cellm_sampler_penalize(s, l);
    /* id 1: count 3, positive: 4/2 - (3*0.5 + 0.25) = 0.25 */
    /* id 2: count 2, negative: -3*2 - (2*0.5 + 0.25) = -7.25 */
    /* id 5: count 1, zero: 0 - 0.75 = -0.75 */
    /* id 7: count 1, negative: -1*2 - 0.75 = -2.75 */
    float want[8] = {1.0f, 0.25f, -7.25f, 2.0f, 5.0f, -0.75f, 6.0f, -2.75f};
    for (int i = 0; i < 8; i++)
        assert_float_equal(l[i], want[i], 0.0f);
    cellm_sampler_free(s);

    /* repetition penalty only: a distinct token is penalised once, whatever its count */
    p = cellm_sampler_params_default();
    p.repetition_penalty = 1.5f;
    s = new_sampler(&p, 4);
    cellm_sampler_accept(s, 3);
    cellm_sampler_accept(s, 3);
    cellm_sampler_accept(s, 3);
    float m[4] = {3.0f, 3.0f, 3.0f, 3.0f};
    cellm_sampler_penalize(s, m);
    assert_float_equal(m[3], 2.0f, 0.0f);
    assert_float_equal(m[0], 3.0f, 0.0f);
    cellm_sampler_free(s);
}

static void test_penalty_window(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.frequency_penalty = 1.0f;
    p.presence_penalty = 10.0f;
    p.penalty_last_n = 3;
    struct cellm_sampler *s = new_sampler(&p, 6);
    int32_t hist[] = {0, 0, 1, 2, 2, 3}; /* window = {2, 2, 3} */
    for (int i = 0; i < 6; i++)
        cellm_sampler_accept(s, hist[i]);
    float l[6] = {0};
    cellm_sampler_penalize(s, l);
    float want[6] = {0.0f, 0.0f, -12.0f, -11.0f, 0.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want[i], 0.0f);
    /* slide further: window = {3, 4, 4} */
    cellm_sampler_accept(s, 4);
    cellm_sampler_accept(s, 4);
    memset(l, 0, sizeof l);
    cellm_sampler_penalize(s, l);
    float want2[6] = {0.0f, 0.0f, 0.0f, -11.0f, -12.0f, 0.0f};
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], want2[i], 0.0f);
    cellm_sampler_free(s);

    /* penalty_last_n 0: no penalty at all */
    p.penalty_last_n = 0;
    s = new_sampler(&p, 6);
    cellm_sampler_accept(s, 1);
    memset(l, 0, sizeof l);
    cellm_sampler_penalize(s, l);
    for (int i = 0; i < 6; i++)
        assert_float_equal(l[i], 0.0f, 0.0f);
    cellm_sampler_free(s);
}

static void test_penalty_changes_greedy(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.repetition_penalty = 1.3f;
    struct cellm_sampler *s = new_sampler(&p, 3);
    float l[3] = {1.0f, 1.2f, 0.5f};
    assert_int_equal(cellm_sampler_sample(s, l), 1);
    cellm_sampler_accept(s, 1); /* 1.2 / 1.3 < 1.0 */
    assert_int_equal(cellm_sampler_sample(s, l), 0);
    assert_float_equal(l[1], 1.2f, 0.0f);
    cellm_sampler_free(s);
}

/* cellm_sampler_is_greedy: true exactly where sample() is cellm_argmax (which the device
 * pick of cellm_ctx_eval_argmax reproduces): temperature 0 and no penalty */
static void test_is_greedy(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    struct cellm_sampler *s = new_sampler(&p, 4);
    assert_true(cellm_sampler_is_greedy(s));
    float l[4] = {NAN, 2.0f, 3.0f, 3.0f};
    assert_int_equal(cellm_sampler_sample(s, l), cellm_argmax(l, 4));
    cellm_sampler_free(s);
    p.repetition_penalty = 1.3f; /* a penalty can change the greedy pick */
    s = new_sampler(&p, 4);
    assert_false(cellm_sampler_is_greedy(s));
    cellm_sampler_free(s);
    p = cellm_sampler_params_default();
    p.temperature = 0.7f;
    s = new_sampler(&p, 4);
    assert_false(cellm_sampler_is_greedy(s));
    cellm_sampler_free(s);
    assert_false(cellm_sampler_is_greedy(NULL));
}

/* ---- truncation: reference and chi-square ------------------------------------------- */

static const float *g_sort_logits;

static int cmp_desc(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = g_sort_logits[x], ly = g_sort_logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x < y ? -1 : 1;
}

/* The reference pipeline, written the naive way (full sort, doubles): returns the kept
 * ids in descending order with their probabilities. */
static int ref_candidates(const float *l, int v, const struct cellm_sampler_params *p, int32_t *ids,
                          double *probs)
{
    int32_t *ord = malloc(sizeof(int32_t) * v);
    double *pr = malloc(sizeof(double) * v);
    for (int i = 0; i < v; i++)
        ord[i] = i;
    g_sort_logits = l;
    qsort(ord, v, sizeof *ord, cmp_desc);
    int n = p->top_k > 0 && p->top_k < v ? p->top_k : v;
    double mx = l[ord[0]] / p->temperature, z = 0.0;
    for (int j = 0; j < n; j++) {
        pr[j] = exp(l[ord[j]] / p->temperature - mx);
        z += pr[j];
    }
    for (int j = 0; j < n; j++)
        pr[j] /= z;
    if (p->top_p < 1.0f) {
        double c = 0.0;
        int j = 0;
        while (j < n) {
            c += pr[j++];
            if (c >= p->top_p - 1e-12) break;
        }
        n = j;
    }
    int m = 0;
    for (int j = 0; j < n; j++)
        if (j == 0 || pr[j] >= p->min_p * pr[0]) m = j + 1;
    z = 0.0;
    for (int j = 0; j < m; j++)
        z += pr[j];
    for (int j = 0; j < m; j++) {
        ids[j] = ord[j];
        probs[j] = pr[j] / z;
    }
    free(ord);
    free(pr);
    return m;
}

/* Upper (1 - 1e-6) quantile of chi-square with df degrees of freedom (Wilson-Hilferty). */
static double chi2_bound(int df)
{
    const double zq = 4.753; /* standard normal quantile at 1 - 1e-6 */
    double a = 2.0 / (9.0 * df);
    double c = 1.0 - a + zq * sqrt(a);
    return df * c * c * c;
}

static void check_combo(const float *l, int v, struct cellm_sampler_params p, int draws,
                        const char *name)
{
    int32_t *ids = malloc(sizeof(int32_t) * v), *rid = malloc(sizeof(int32_t) * v);
    float *probs = malloc(sizeof(float) * v);
    double *rp = malloc(sizeof(double) * v);
    long *hits = calloc((size_t)v, sizeof(long));
    int rn = ref_candidates(l, v, &p, rid, rp);

    struct cellm_sampler *s = new_sampler(&p, v);
    int n = cellm_sampler_candidates(s, l, ids, probs);
    if (n != rn) fail_msg("%s: %d candidates, reference %d", name, n, rn);
    /* same set and probabilities (the order may differ without top-k/top-p) */
    double *pos = calloc((size_t)v, sizeof(double));
    for (int j = 0; j < rn; j++)
        pos[rid[j]] = rp[j] + 1.0; /* +1 marks membership */
    for (int j = 0; j < n; j++) {
        if (pos[ids[j]] == 0.0) fail_msg("%s: id %d kept, reference drops it", name, ids[j]);
        if (fabs(probs[j] - (pos[ids[j]] - 1.0)) > 1e-5)
            fail_msg("%s: id %d has p %g, reference %g", name, ids[j], probs[j], pos[ids[j]] - 1.0);
    }

    for (int i = 0; i < draws; i++) {
        int32_t t = cellm_sampler_sample(s, l);
        assert_true(t >= 0 && t < v);
        if (pos[t] == 0.0) fail_msg("%s: drew id %d, which the truncation drops", name, t);
        hits[t]++;
    }
    /* chi-square over the kept ids, pooling those with expected count < 5 */
    double chi = 0.0, pool_e = 0.0, pool_o = 0.0;
    int cells = 0;
    for (int j = 0; j < rn; j++) {
        double e = rp[j] * draws, o = (double)hits[rid[j]];
        if (e < 5.0) {
            pool_e += e;
            pool_o += o;
            continue;
        }
        chi += (o - e) * (o - e) / e;
        cells++;
    }
    if (pool_e > 0.0) {
        chi += (pool_o - pool_e) * (pool_o - pool_e) / (pool_e > 1.0 ? pool_e : 1.0);
        cells++;
    }
    if (cells > 1 && chi > chi2_bound(cells - 1))
        fail_msg("%s: chi-square %g over %d cells exceeds %g", name, chi, cells,
                 chi2_bound(cells - 1));
    if (cells == 1 && rn == 1) assert_int_equal(hits[rid[0]], draws);
    cellm_sampler_free(s);
    free(ids);
    free(rid);
    free(probs);
    free(rp);
    free(hits);
    free(pos);
}

static void test_distribution_small(void **state)
{
    (void)state;
    enum { V = 24 };
    float l[V];
    fill_logits(l, V, 3, 6.0f);
    l[5] = l[9]; /* a tie across the truncation boundaries */
    struct {
        float t;
        int k;
        float top_p, min_p;
    } combos[] = {
        {1.0f, 0, 1.0f, 0.0f},    {0.7f, 0, 1.0f, 0.0f},  {1.5f, 5, 1.0f, 0.0f},
        {1.0f, 0, 0.8f, 0.0f},    {0.8f, 0, 1.0f, 0.1f},  {1.0f, 10, 0.9f, 0.0f},
        {1.2f, 12, 0.95f, 0.05f}, {2.0f, 0, 0.5f, 0.2f},  {1.0f, 3, 1.0f, 0.5f},
        {1.0f, 0, 0.0f, 0.0f},    {0.5f, 24, 1.0f, 0.0f}, {1.0f, 100, 0.7f, 0.0f},
    };
    for (size_t c = 0; c < sizeof combos / sizeof combos[0]; c++) {
        struct cellm_sampler_params p = cellm_sampler_params_default();
        p.temperature = combos[c].t;
        p.top_k = combos[c].k;
        p.top_p = combos[c].top_p;
        p.min_p = combos[c].min_p;
        p.seed = 1234 + c;
        char name[96];
        snprintf(name, sizeof name, "T=%g k=%d top_p=%g min_p=%g", (double)p.temperature, p.top_k,
                 (double)p.top_p, (double)p.min_p);
        check_combo(l, V, p, 200000, name);
    }
}

static void test_distribution_large_vocab(void **state)
{
    (void)state;
    const int v = 151936;
    float *l = malloc(sizeof(float) * v);
    fill_logits(l, v, 11, 24.0f);
    struct {
        float t;
        int k;
        float top_p, min_p;
    } combos[] = {
        {1.0f, 40, 1.0f, 0.0f},   {0.8f, 50, 0.9f, 0.0f}, {1.0f, 0, 0.95f, 0.0f},
        {0.6f, 20, 0.95f, 0.05f}, {1.0f, 0, 1.0f, 0.3f},
    };
    for (size_t c = 0; c < sizeof combos / sizeof combos[0]; c++) {
        struct cellm_sampler_params p = cellm_sampler_params_default();
        p.temperature = combos[c].t;
        p.top_k = combos[c].k;
        p.top_p = combos[c].top_p;
        p.min_p = combos[c].min_p;
        p.seed = 77 + c;
        char name[96];
        snprintf(name, sizeof name, "V=%d T=%g k=%d top_p=%g min_p=%g", v, (double)p.temperature,
                 p.top_k, (double)p.top_p, (double)p.min_p);
        check_combo(l, v, p, 1000, name);
    }
    free(l);
}

static void test_truncated_never_drawn(void **state)
{
    (void)state;
    enum { V = 8 };
    /* ids 0..2 hold almost all the mass; the rest must never come out */
    float l[V] = {5.0f, 4.9f, 4.8f, -1.0f, 0.0f, 4.7f, -30.0f, NAN};
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.temperature = 3.0f; /* a flat distribution makes a leak likely */
    p.top_k = 3;
    p.seed = 9;
    struct cellm_sampler *s = new_sampler(&p, V);
    long seen[V] = {0};
    for (int i = 0; i < 100000; i++)
        seen[cellm_sampler_sample(s, l)]++;
    for (int i = 3; i < V; i++)
        assert_int_equal(seen[i], 0);
    for (int i = 0; i < 3; i++)
        assert_true(seen[i] > 30000);
    cellm_sampler_free(s);

    /* min-p 1 keeps only the maximum; top-p 0 as well */
    p.top_k = 0;
    p.min_p = 1.0f;
    s = new_sampler(&p, V);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cellm_sampler_sample(s, l), 0);
    cellm_sampler_free(s);
    p.min_p = 0.0f;
    p.top_p = 0.0f;
    s = new_sampler(&p, V);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(cellm_sampler_sample(s, l), 0);
    cellm_sampler_free(s);

    /* -inf and NaN are never drawn, even with no truncation at all */
    float m[V] = {-INFINITY, 0.0f, NAN, -INFINITY, 0.0f, -INFINITY, NAN, -INFINITY};
    p = cellm_sampler_params_default();
    p.temperature = 1.0f;
    p.top_k = 6;
    s = new_sampler(&p, V);
    for (int i = 0; i < 10000; i++) {
        int32_t t = cellm_sampler_sample(s, m);
        assert_true(t == 1 || t == 4);
    }
    cellm_sampler_free(s);
}

/* ---- arguments and allocation failure ------------------------------------------------ */

static void test_bad_params(void **state)
{
    (void)state;
    struct cellm_sampler *s = (struct cellm_sampler *)&s;
    struct cellm_error err = {{0}};
    struct cellm_sampler_params p = cellm_sampler_params_default();
    assert_int_equal(cellm_sampler_new(&p, 0, &s, &err), CELLM_ERR_ARG);
    assert_null(s);
    p.temperature = -1.0f;
    assert_int_equal(cellm_sampler_new(&p, 10, &s, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "temperature"));
    p = cellm_sampler_params_default();
    p.top_p = 1.5f;
    assert_int_equal(cellm_sampler_new(&p, 10, &s, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "top_p"));
    p = cellm_sampler_params_default();
    p.repetition_penalty = 0.0f;
    assert_int_equal(cellm_sampler_new(&p, 10, &s, &err), CELLM_ERR_ARG);
    assert_non_null(strstr(err.msg, "repetition_penalty"));
    p = cellm_sampler_params_default();
    p.top_k = -2;
    assert_int_equal(cellm_sampler_new(&p, 10, &s, &err), CELLM_ERR_ARG);
    p = cellm_sampler_params_default();
    p.penalty_last_n = -2;
    assert_int_equal(cellm_sampler_new(&p, 10, &s, &err), CELLM_ERR_ARG);
    cellm_sampler_free(NULL);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    struct cellm_sampler_params p = cellm_sampler_params_default();
    p.temperature = 1.0f;
    p.repetition_penalty = 1.1f;
    p.penalty_last_n = 16;
    int ok = 0;
    for (long n = 0; n < 50 && !ok; n++) {
        struct cellm_sampler *s = NULL;
        struct cellm_error err = {{0}};
        cellm_alloc_fail_after(n);
        enum cellm_status st = cellm_sampler_new(&p, 100, &s, &err);
        cellm_alloc_fail_after(-1);
        if (st == CELLM_OK) {
            ok = 1;
            cellm_sampler_free(s);
        } else {
            assert_int_equal(st, CELLM_ERR_NOMEM);
            assert_null(s);
        }
    }
    assert_true(ok);
}

/* ---- generation_config.json --------------------------------------------------------- */

static char g_dir[64];

static void write_config(const char *text)
{
    char path[128];
    snprintf(path, sizeof path, "%s/generation_config.json", g_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/cellm_sampler_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/generation_config.json", g_dir);
    unlink(path);
    rmdir(g_dir);
    return 0;
}

static void test_config(void **state)
{
    (void)state;
    struct cellm_error err = {{0}};
    struct cellm_sampler_params p = cellm_sampler_params_default(), d = p;
    p.temperature = 0.5f;

    /* no file: unchanged */
    struct cellm_sampler_params q = p;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_memory_equal(&q, &p, sizeof p);

    write_config("{\"do_sample\": true, \"temperature\": 0.6, \"top_k\": 20, \"top_p\": 0.95,"
                 " \"min_p\": 0.01, \"repetition_penalty\": 1.05, \"eos_token_id\": [1, 2]}");
    q = d;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_float_equal(q.temperature, 0.6f, 0.0f);
    assert_int_equal(q.top_k, 20);
    assert_float_equal(q.top_p, 0.95f, 0.0f);
    assert_float_equal(q.min_p, 0.01f, 0.0f);
    assert_float_equal(q.repetition_penalty, 1.05f, 0.0f);
    assert_int_equal(q.penalty_last_n, d.penalty_last_n);

    /* do_sample false: greedy, even with a temperature */
    write_config("{\"do_sample\": false, \"temperature\": 0.6, \"top_p\": 0.9}");
    q = p;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_float_equal(q.temperature, 0.0f, 0.0f);
    assert_float_equal(q.top_p, 0.9f, 0.0f);

    /* absent do_sample, no sampling keys: greedy */
    write_config("{\"bos_token_id\": 1, \"repetition_penalty\": 1.1}");
    q = p;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_float_equal(q.temperature, 0.0f, 0.0f);
    assert_float_equal(q.repetition_penalty, 1.1f, 0.0f);

    /* absent do_sample with sampling keys: sample with them */
    write_config("{\"top_k\": 50, \"temperature\": null}");
    q = d;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_int_equal(q.top_k, 50);
    assert_float_equal(q.temperature, 1.0f, 0.0f);

    /* do_sample true without temperature keeps a nonzero temperature */
    write_config("{\"do_sample\": true}");
    q = p;
    assert_int_equal(cellm_sampler_params_from_dir(g_dir, &q, &err), CELLM_OK);
    assert_float_equal(q.temperature, 0.5f, 0.0f);
}

static void expect_config_error(const char *text, const char *key)
{
    struct cellm_error err = {{0}};
    struct cellm_sampler_params p = cellm_sampler_params_default(), q = p;
    write_config(text);
    enum cellm_status st = cellm_sampler_params_from_dir(g_dir, &q, &err);
    if (st != CELLM_ERR_FORMAT) fail_msg("%s: status %d, expected a format error", text, st);
    if (!strstr(err.msg, "generation_config.json") || !strstr(err.msg, key))
        fail_msg("%s: message \"%s\" does not name the file and \"%s\"", text, err.msg, key);
    assert_memory_equal(&q, &p, sizeof p);
}

static void test_config_errors(void **state)
{
    (void)state;
    expect_config_error("{\"top_k\": \"50\"}", "top_k");
    expect_config_error("{\"top_k\": 2.5}", "top_k");
    expect_config_error("{\"top_k\": -1}", "top_k");
    expect_config_error("{\"temperature\": \"hot\"}", "temperature");
    expect_config_error("{\"temperature\": -0.5}", "temperature");
    expect_config_error("{\"top_p\": [0.9]}", "top_p");
    expect_config_error("{\"top_p\": 1.5}", "top_p");
    expect_config_error("{\"min_p\": true}", "min_p");
    expect_config_error("{\"repetition_penalty\": {}}", "repetition_penalty");
    expect_config_error("{\"do_sample\": 1}", "do_sample");
    expect_config_error("{\"do_sample\": true, ", "JSON");
    expect_config_error("[1, 2]", "object");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_ties),
        cmocka_unit_test(test_greedy_large_vocab),
        cmocka_unit_test(test_argmax_edges),
        cmocka_unit_test(test_seed),
        cmocka_unit_test(test_generator_zero_seed),
        cmocka_unit_test(test_penalties_by_hand),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_penalty_changes_greedy),
        cmocka_unit_test(test_is_greedy),
        cmocka_unit_test(test_distribution_small),
        cmocka_unit_test(test_distribution_large_vocab),
        cmocka_unit_test(test_truncated_never_drawn),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test_setup_teardown(test_config, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_config_errors, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
