/*
 * sampler.c: turns a row of logits into the next token.
 *
 * Pipeline, in this order (the same order as cellm.h documents):
 *   1. penalties over the last penalty_last_n accepted tokens (-1 = all of them):
 *      repetition (Hugging Face: each distinct token's logit is divided by the penalty
 *      when positive, multiplied when negative), then frequency and presence (OpenAI:
 *      logit -= count * frequency + (count > 0) * presence);
 *   2. temperature: 0 means greedy, the argmax with the lowest id on ties, and no use of
 *      the generator at all; otherwise weights w = exp((logit - max) / T);
 *   3. top-k: the k best tokens (ordered by logit, then by lower id);
 *   4. top-p: the shortest prefix of the tokens in descending order whose probability,
 *      renormalised over what top-k kept, sums to at least p (never empty);
 *   5. min-p: tokens whose probability is below min_p times the largest are dropped;
 *   6. one draw from the kept weights with the sampler's own xoshiro256** generator,
 *      seeded through splitmix64, so a seed fixes the whole sequence.
 *
 * Vocabularies run to 260k ids, so nothing sorts the whole vocabulary when it can be
 * avoided. Top-k keeps a k-element min-heap while scanning the logits (O(V) plus
 * O(k log k) in practice). Top-p without top-k buckets the ids by log-weight in O(V),
 * finds the bucket where the nucleus ends, and orders only that bucket (a heap popped
 * as far as needed), so it too avoids V log V. Min-p is a threshold
 * on the weights and needs no order. All scratch arrays ([vocab] each) live in the
 * sampler, allocated once.
 *
 * The penalties keep their counts incrementally: accept() adds the new token to a count
 * array and, with a finite window, removes the token that falls out of a ring buffer; a
 * list of the ids with a nonzero count lets a penalty pass touch only those ids. So
 * accept() never allocates and a penalty pass costs O(distinct tokens in the window).
 *
 * NaN logits are treated as -inf (never drawn). If the largest logit is +inf the
 * distribution is undefined; the sampler then returns the greedy token.
 */
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"
#include "base/mapfile.h"
#include "cellm.h"
#include "engine/sampler_internal.h"

#define NUCLEUS_BUCKETS 2048
#define NUCLEUS_SCALE 64

struct cellm_sampler {
    struct cellm_sampler_params p;
    int vocab;
    uint64_t rng[4]; /* xoshiro256** state */

    /* scratch, [vocab] each */
    float *logits;  /* input after NaN clean-up and penalties */
    float *w;       /* unnormalised weights exp((logit - max) / T), only where computed */
    int32_t *heap;  /* ids being selected (top-k heap, or the top-p max-heap) */
    int32_t *cand;  /* kept ids, in draw order */
    int n_cand;     /* number of kept ids */
    double w_total; /* sum of the weights of the kept ids */
    double bucket_w[NUCLEUS_BUCKETS]; /* top-p: weight per log-weight bucket */

    /* penalties; NULL when no penalty is active */
    int32_t *counts;   /* [vocab] occurrences of each id within the window */
    int32_t *distinct; /* [vocab] ids with counts > 0, in no particular order */
    int32_t *where;    /* [vocab] index of an id in distinct, valid while counts > 0 */
    int n_distinct;
    int32_t *ring; /* [penalty_last_n] the window, when penalty_last_n > 0 */
    int ring_len;  /* tokens in the ring */
    int ring_head; /* the oldest token's slot once the ring is full */
};

/* ---- parameters ------------------------------------------------------------------------ */

struct cellm_sampler_params cellm_sampler_params_default(void)
{
    struct cellm_sampler_params p = {
        .temperature = 0.0f,
        .top_k = 0,
        .top_p = 1.0f,
        .min_p = 0.0f,
        .repetition_penalty = 1.0f,
        .frequency_penalty = 0.0f,
        .presence_penalty = 0.0f,
        .penalty_last_n = -1,
        .seed = 0,
    };
    return p;
}

static enum cellm_status check_params(const struct cellm_sampler_params *p, const char *what,
                                      struct cellm_error *err)
{
    CELLM_FAIL_IF(!(p->temperature >= 0.0f) || isinf(p->temperature), err, CELLM_ERR_ARG,
                  "%s: temperature is %g, expected a finite number >= 0", what,
                  (double)p->temperature);
    CELLM_FAIL_IF(p->top_k < 0, err, CELLM_ERR_ARG, "%s: top_k is %d, expected >= 0 (0 = off)",
                  what, p->top_k);
    CELLM_FAIL_IF(!(p->top_p >= 0.0f && p->top_p <= 1.0f), err, CELLM_ERR_ARG,
                  "%s: top_p is %g, expected a number in [0, 1] (1 = off)", what, (double)p->top_p);
    CELLM_FAIL_IF(!(p->min_p >= 0.0f && p->min_p <= 1.0f), err, CELLM_ERR_ARG,
                  "%s: min_p is %g, expected a number in [0, 1] (0 = off)", what, (double)p->min_p);
    CELLM_FAIL_IF(!(p->repetition_penalty > 0.0f) || isinf(p->repetition_penalty), err,
                  CELLM_ERR_ARG,
                  "%s: repetition_penalty is %g, expected a finite number > 0 (1 = off)", what,
                  (double)p->repetition_penalty);
    CELLM_FAIL_IF(!isfinite(p->frequency_penalty), err, CELLM_ERR_ARG,
                  "%s: frequency_penalty is %g, expected a finite number (0 = off)", what,
                  (double)p->frequency_penalty);
    CELLM_FAIL_IF(!isfinite(p->presence_penalty), err, CELLM_ERR_ARG,
                  "%s: presence_penalty is %g, expected a finite number (0 = off)", what,
                  (double)p->presence_penalty);
    CELLM_FAIL_IF(p->penalty_last_n < -1, err, CELLM_ERR_ARG,
                  "%s: penalty_last_n is %d, expected -1 (all) or a count >= 0", what,
                  p->penalty_last_n);
    return CELLM_OK;
}

/* Reads one number key of generation_config.json into *dst when present, checking that it
 * lies in [lo, hi]. */
static enum cellm_status read_num(const cJSON *root, const char *key, const char *path, double lo,
                                  double hi, float *dst, int *seen, struct cellm_error *err)
{
    double v;
    if (!cellm_json_get(root, key)) return CELLM_OK;
    CELLM_TRY(cellm_json_num(root, key, path, 0.0, &v, err));
    CELLM_FAIL_IF(!(v >= lo && v <= hi), err, CELLM_ERR_FORMAT,
                  "%s: \"%s\" is %g, expected a number in [%g, %g]", path, key, v, lo, hi);
    *dst = (float)v;
    *seen = 1;
    return CELLM_OK;
}

static enum cellm_status parse_generation_config(const cJSON *root, const char *path,
                                                 struct cellm_sampler_params *p,
                                                 struct cellm_error *err)
{
    CELLM_FAIL_IF(!cJSON_IsObject(root), err, CELLM_ERR_FORMAT,
                  "%s: the top level is a %s, expected an object", path, cellm_json_type(root));

    /* Work on a copy so that a failure leaves *p as it was. */
    struct cellm_sampler_params q = *p;
    int sampling_keys = 0, do_sample = 0, has_do_sample = 0;
    CELLM_TRY(read_num(root, "temperature", path, 0.0, 1e30, &q.temperature, &sampling_keys, err));
    CELLM_TRY(read_num(root, "top_p", path, 0.0, 1.0, &q.top_p, &sampling_keys, err));
    CELLM_TRY(read_num(root, "min_p", path, 0.0, 1.0, &q.min_p, &sampling_keys, err));
    int unused = 0;
    CELLM_TRY(read_num(root, "repetition_penalty", path, 1e-30, 1e30, &q.repetition_penalty,
                       &unused, err));
    const cJSON *k = cellm_json_get(root, "top_k");
    if (k) {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(k, "top_k", path, 0, INT32_MAX, &v, err));
        q.top_k = (int)v;
        sampling_keys = 1;
    }
    if (cellm_json_get(root, "do_sample")) {
        CELLM_TRY(cellm_json_bool(root, "do_sample", path, 0, &do_sample, err));
        has_do_sample = 1;
    }

    if (has_do_sample ? !do_sample : !sampling_keys) {
        q.temperature = 0.0f; /* greedy, as transformers' generate() */
    } else if (q.temperature == 0.0f && !cellm_json_get(root, "temperature")) {
        q.temperature = 1.0f; /* sampling asked for, temperature left at transformers' 1 */
    }
    *p = q;
    return CELLM_OK;
}

enum cellm_status cellm_sampler_params_from_dir(const char *dir, struct cellm_sampler_params *p,
                                                struct cellm_error *err)
{
    CELLM_FAIL_IF(!dir || !p, err, CELLM_ERR_ARG, "cellm_sampler_params_from_dir: NULL argument");
    char *path = cellm_path_join(dir, "generation_config.json");
    CELLM_FAIL_IF(!path, err, CELLM_ERR_NOMEM, "%s: out of memory joining a path", dir);
    if (!cellm_file_exists(path)) {
        cellm_free(path);
        return CELLM_OK;
    }
    cJSON *root = NULL;
    enum cellm_status st = cellm_json_load(path, &root, err);
    if (st == CELLM_OK) st = parse_generation_config(root, path, p, err);
    cJSON_Delete(root);
    cellm_free(path);
    return st;
}

/* ---- generator: splitmix64 seeds xoshiro256** ---------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t cellm_sampler_next_u64(struct cellm_sampler *s)
{
    uint64_t *st = s->rng;
    uint64_t out = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return out;
}

/* A uniform double in [0, 1) with 53 random bits. */
static double next_unit(struct cellm_sampler *s)
{
    return (double)(cellm_sampler_next_u64(s) >> 11) * 0x1.0p-53;
}

/* ---- lifetime and history -------------------------------------------------------------- */

static int penalties_active(const struct cellm_sampler_params *p)
{
    return p->penalty_last_n != 0 && (p->repetition_penalty != 1.0f ||
                                      p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

void cellm_sampler_free(struct cellm_sampler *s)
{
    if (!s) return;
    cellm_free(s->logits);
    cellm_free(s->w);
    cellm_free(s->heap);
    cellm_free(s->cand);
    cellm_free(s->counts);
    cellm_free(s->distinct);
    cellm_free(s->where);
    cellm_free(s->ring);
    cellm_free(s);
}

enum cellm_status cellm_sampler_new(const struct cellm_sampler_params *p, int vocab,
                                    struct cellm_sampler **out, struct cellm_error *err)
{
    CELLM_FAIL_IF(!out, err, CELLM_ERR_ARG, "cellm_sampler_new: out is NULL");
    *out = NULL;
    CELLM_FAIL_IF(!p, err, CELLM_ERR_ARG, "cellm_sampler_new: params is NULL");
    CELLM_FAIL_IF(vocab <= 0, err, CELLM_ERR_ARG, "sampler: vocab is %d, expected > 0", vocab);
    CELLM_TRY(check_params(p, "sampler", err));

    struct cellm_sampler *s = cellm_calloc(1, sizeof *s);
    CELLM_FAIL_IF(!s, err, CELLM_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->vocab = vocab;
    size_t v = (size_t)vocab;
    int ok = (s->logits = cellm_malloc(v * sizeof *s->logits)) != NULL;
    if (ok && p->temperature > 0.0f) {
        ok = (s->w = cellm_malloc(v * sizeof *s->w)) && (s->heap = cellm_malloc(v * 4)) &&
             (s->cand = cellm_malloc(v * 4));
    }
    if (ok && penalties_active(p)) {
        ok = (s->counts = cellm_calloc(v, 4)) && (s->distinct = cellm_malloc(v * 4)) &&
             (s->where = cellm_malloc(v * 4));
        if (ok && p->penalty_last_n > 0)
            ok = (s->ring = cellm_malloc((size_t)p->penalty_last_n * 4)) != NULL;
    }
    if (!ok) {
        cellm_sampler_free(s);
        return cellm_errf(err, CELLM_ERR_NOMEM, "sampler: out of memory for a vocab of %d", vocab);
    }
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    *out = s;
    return CELLM_OK;
}

static void count_add(struct cellm_sampler *s, int32_t t)
{
    if (s->counts[t]++ == 0) {
        s->where[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void count_remove(struct cellm_sampler *s, int32_t t)
{
    if (--s->counts[t] == 0) {
        int32_t last = s->distinct[--s->n_distinct];
        s->distinct[s->where[t]] = last;
        s->where[last] = s->where[t];
    }
}

void cellm_sampler_accept(struct cellm_sampler *s, int32_t token)
{
    if (!s || !s->counts || token < 0 || token >= s->vocab) return;
    int n = s->p.penalty_last_n;
    if (n > 0) {
        if (s->ring_len < n) {
            s->ring[s->ring_len++] = token;
        } else {
            count_remove(s, s->ring[s->ring_head]);
            s->ring[s->ring_head] = token;
            s->ring_head = (s->ring_head + 1) % n;
        }
    }
    count_add(s, token);
}

void cellm_sampler_penalize(const struct cellm_sampler *s, float *logits)
{
    if (!s->counts) return;
    const float rep = s->p.repetition_penalty;
    const float freq = s->p.frequency_penalty, pres = s->p.presence_penalty;
    for (int i = 0; i < s->n_distinct; i++) {
        int32_t t = s->distinct[i];
        float l = logits[t];
        if (rep != 1.0f) l = l > 0.0f ? l / rep : l * rep;
        l -= (float)s->counts[t] * freq + pres;
        logits[t] = l;
    }
}

/* ---- selection ------------------------------------------------------------------------- */

/* The order every step uses: higher logit first, then lower id. A total order, so top-k
 * and top-p are deterministic under ties. */
static int better(const float *l, int32_t a, int32_t b)
{
    return l[a] > l[b] || (l[a] == l[b] && a < b);
}

/* Blocks of 64 logits: a branch-free maximum per block over 8 independent lanes (the
 * compiler turns it into vector max instructions), then a scan for the first index only in
 * the first block that holds the overall maximum. A plain compare-and-branch loop took
 * ~290 us per token over a 152k vocabulary on the GPU machine's host, a quarter of a
 * small model's decode step; this is ~5x faster. NaN never passes a comparison, so it is
 * never the maximum, as in the plain loop. */
int cellm_sampler_is_greedy(const struct cellm_sampler *s)
{
    return s && s->p.temperature == 0.0f && !s->counts;
}

int32_t cellm_argmax(const float *l, int n)
{
    float bv = -INFINITY;
    int32_t best = -1, blk = -1, i = 0;
    for (; i + 64 <= n; i += 64) {
        float m[8];
        for (int k = 0; k < 8; k++)
            m[k] = -INFINITY;
        for (int j = 0; j < 64; j += 8)
            for (int k = 0; k < 8; k++) {
                const float v = l[i + j + k];
                m[k] = v > m[k] ? v : m[k];
            }
        float bm = m[0];
        for (int k = 1; k < 8; k++)
            bm = m[k] > bm ? m[k] : bm;
        if (bm > bv) {
            bv = bm;
            blk = i;
        }
    }
    for (int k = 0; blk >= 0 && k < 64; k++)
        if (l[blk + k] == bv) {
            best = blk + k;
            break;
        }
    for (; i < n; i++)
        if (l[i] > bv) {
            bv = l[i];
            best = i;
        }
    for (i = 0; best < 0 && i < n; i++)
        if (!isnan(l[i])) best = i;
    return best < 0 ? 0 : best;
}

/* Restores a heap whose root may be out of place. With worst_on_top the root is the worst
 * element (a min-heap for top-k); otherwise it is the best (a max-heap for top-p). */
static void sift_down(const float *l, int32_t *h, int n, int i, int worst_on_top)
{
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && (worst_on_top ? better(l, h[c], h[c + 1]) : better(l, h[c + 1], h[c])))
            c++;
        if (worst_on_top ? !better(l, h[i], h[c]) : !better(l, h[c], h[i])) return;
        int32_t t = h[i];
        h[i] = h[c];
        h[c] = t;
        i = c;
    }
}

/* Puts the k best ids of l into s->cand, best first. */
static void select_top_k(struct cellm_sampler *s, int k)
{
    const float *l = s->logits;
    int32_t *h = s->heap;
    for (int32_t i = 0; i < k; i++)
        h[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(l, h, k, i, 1);
    for (int32_t i = k; i < s->vocab; i++) {
        if (better(l, i, h[0])) {
            h[0] = i;
            sift_down(l, h, k, 0, 1);
        }
    }
    /* Pop the worst repeatedly; it goes to the back of cand. */
    for (int n = k; n > 0; n--) {
        s->cand[n - 1] = h[0];
        h[0] = h[n - 1];
        sift_down(l, h, n - 1, 0, 1);
    }
}

/* Bucket of a token for the nucleus search: its log-weight distance from the maximum,
 * (lmax - l) / T, in steps of 1/NUCLEUS_SCALE; everything from NUCLEUS_BUCKETS /
 * NUCLEUS_SCALE on (a weight below e^-32) shares the last bucket. The key is monotone in
 * the logit, so buckets never reorder tokens. */
static int nucleus_bucket(float l, float lmax, float inv_t)
{
    float d = lmax - l;
    if (d == 0.0f) return 0; /* even when 1/T overflowed */
    d *= inv_t;
    return d < (float)NUCLEUS_BUCKETS / NUCLEUS_SCALE ? (int)(d * NUCLEUS_SCALE)
                                                      : NUCLEUS_BUCKETS - 1;
}

/* Top-p (then min-p) over all ids, without sorting them: a histogram of the weights by
 * bucket finds the bucket where the cumulative weight reaches target; the buckets before
 * it are kept whole (unordered), and only the ids of that bucket are ordered, by popping
 * a max-heap until the target is met. Fills s->cand and returns the count; *total gets
 * the kept weight. */
static int select_nucleus(struct cellm_sampler *s, float lmax, float inv_t, double target,
                          double *total)
{
    const float *l = s->logits, *w = s->w;
    const double min_p = s->p.min_p;
    const int v = s->vocab;
    double *bw = s->bucket_w;
    memset(bw, 0, sizeof s->bucket_w);
    for (int i = 0; i < v; i++)
        bw[nucleus_bucket(l[i], lmax, inv_t)] += w[i];
    int b = 0;
    double acc = 0.0;
    for (; b < NUCLEUS_BUCKETS - 1; b++) {
        if (acc + bw[b] >= target) break;
        acc += bw[b];
    }

    int n = 0, m = 0;
    int32_t *h = s->heap, *cand = s->cand;
    for (int32_t i = 0; i < v; i++) {
        int bi = nucleus_bucket(l[i], lmax, inv_t);
        if (bi < b) {
            if (w[i] > 0.0f && w[i] >= min_p) {
                cand[n++] = i;
                *total += w[i];
            }
        } else if (bi == b) {
            h[m++] = i;
        }
    }
    for (int i = m / 2 - 1; i >= 0; i--)
        sift_down(l, h, m, i, 0);
    while (m > 0) {
        int32_t t = h[0];
        if (n > 0 && (w[t] < min_p || w[t] == 0.0f)) break; /* all that follow weigh less */
        cand[n++] = t;
        *total += w[t];
        acc += w[t];
        if (acc >= target) break;
        h[0] = h[--m];
        sift_down(l, h, m, 0, 0);
    }
    return n;
}

/* exp(d / T) for d = logit - max <= 0; d == 0 gives 1 even when 1/T overflowed. */
static float weight(float d, float inv_t)
{
    return d == 0.0f ? 1.0f : expf(d * inv_t);
}

/* Steps 2-5: fills s->cand[0..n_cand), s->w for those ids and s->w_total. Returns -1 when
 * there is a distribution to draw from, or the token to return outright (greedy). */
static int32_t prepare(struct cellm_sampler *s, const float *in)
{
    const int v = s->vocab;
    if (cellm_sampler_is_greedy(s))
        return cellm_argmax(in, v); /* plain greedy reads the logits in place */
    float *l = s->logits;
    for (int i = 0; i < v; i++)
        l[i] = isnan(in[i]) ? -INFINITY : in[i];
    cellm_sampler_penalize(s, l); /* finite penalties cannot turn a non-NaN into NaN */

    int32_t best = cellm_argmax(l, v);
    if (s->p.temperature == 0.0f || !(l[best] < INFINITY) || !(l[best] > -INFINITY)) return best;

    const float inv_t = 1.0f / s->p.temperature;
    const float lmax = l[best];
    const double top_p = s->p.top_p, min_p = s->p.min_p;
    const int k = s->p.top_k;
    float *w = s->w;
    int32_t *cand = s->cand;
    int n = 0;
    double total = 0.0;

    if (k > 0 && k < v) {
        /* top-k, then top-p and min-p over the sorted k */
        select_top_k(s, k);
        double z = 0.0;
        for (int j = 0; j < k; j++) {
            w[cand[j]] = weight(l[cand[j]] - lmax, inv_t);
            z += w[cand[j]];
        }
        for (n = 0; n < k; n++) {
            float wj = w[cand[n]];
            if (n > 0 && (wj < min_p || wj == 0.0f)) break;
            total += wj;
            if (total >= top_p * z) {
                n++;
                break;
            }
        }
    } else {
        double z = 0.0;
        for (int i = 0; i < v; i++) {
            w[i] = weight(l[i] - lmax, inv_t);
            z += w[i];
        }
        if (top_p < 1.0) {
            n = select_nucleus(s, lmax, inv_t, top_p * z, &total);
        } else {
            for (int32_t i = 0; i < v; i++) {
                if (w[i] > 0.0f && w[i] >= min_p) {
                    cand[n++] = i;
                    total += w[i];
                }
            }
        }
    }
    s->n_cand = n;
    s->w_total = total;
    return -1;
}

int32_t cellm_sampler_sample(struct cellm_sampler *s, const float *logits)
{
    if (!s || !logits) return -1;
    int32_t t = prepare(s, logits);
    if (t >= 0) return t;
    double r = next_unit(s) * s->w_total, acc = 0.0;
    int32_t last = s->cand[0];
    for (int j = 0; j < s->n_cand; j++) {
        int32_t id = s->cand[j];
        if (s->w[id] > 0.0f) {
            acc += s->w[id];
            last = id;
            if (r < acc) return id;
        }
    }
    return last; /* r rounded up to the total */
}

int cellm_sampler_candidates(struct cellm_sampler *s, const float *logits, int32_t *ids,
                             float *probs)
{
    int32_t t = prepare(s, logits);
    if (t >= 0) {
        ids[0] = t;
        probs[0] = 1.0f;
        return 1;
    }
    for (int j = 0; j < s->n_cand; j++) {
        ids[j] = s->cand[j];
        probs[j] = (float)(s->w[s->cand[j]] / s->w_total);
    }
    return s->n_cand;
}
