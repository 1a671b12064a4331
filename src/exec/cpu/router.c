/*
 * router.c: the MoE routers of router.h, per token.
 *
 * Top-k is k passes over the experts, each taking the best one ranked after the previous
 * pick in the order (score descending, index ascending): O(n_experts * k) with no flags or
 * scratch, which is nothing beside the expert products (k <= 8 in the released models).
 * The grouped router never materialises its masked choice scores: a pass reads each one
 * through choice(), so a token needs no buffer beyond its logits.
 */
#include "router.h"

#include <math.h>

#include "ops.h"

typedef float (*score_fn)(const void *ctx, int i);

/* Whether (va, a) ranks before (vb, b): the higher score, then the lower index; NaN last. */
static int before(float va, int a, float vb, int b)
{
    if (isnan(va)) va = -INFINITY;
    if (isnan(vb)) vb = -INFINITY;
    return va > vb || (va == vb && a < b);
}

static void topk(score_fn f, const void *ctx, int n, int k, int *idx)
{
    int prev = -1;
    float pv = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        float bv = 0;
        for (int e = 0; e < n; e++) {
            float v = f(ctx, e);
            if (prev >= 0 && !before(pv, prev, v, e)) continue; /* taken already */
            if (best < 0 || before(v, e, bv, best)) {
                best = e;
                bv = v;
            }
        }
        idx[j] = prev = best;
        pv = bv;
    }
}

static float array_score(const void *ctx, int i)
{
    return ((const float *)ctx)[i];
}

struct grouped {
    const struct cellm_route_spec *s;
    const float *sig;                            /* [n_experts] sigmoid scores */
    unsigned char kept[CELLM_MAX_EXPERT_GROUPS]; /* group g stays */
    int per_group;
};

/* s + correction bias, one f32 addition as in transformers */
static float corrected(const struct grouped *g, int e)
{
    return g->sig[e] + cellm_vec_at(g->s->corr, e);
}

static float choice(const void *ctx, int e)
{
    const struct grouped *g = ctx;
    return g->kept[e / g->per_group] ? corrected(g, e) : 0.0f;
}

static void route_grouped(const struct cellm_route_spec *s, float *p, int *idx, float *w)
{
    int E = s->n_experts, K = s->k, G = s->n_group;
    for (int e = 0; e < E; e++)
        p[e] = 1.0f / (1.0f + expf(-p[e]));
    struct grouped g = {.s = s, .sig = p, .per_group = E / G};
    float gs[CELLM_MAX_EXPERT_GROUPS];
    int gi[CELLM_MAX_EXPERT_GROUPS];
    for (int q = 0; q < G; q++) { /* the group's two best choices, summed */
        float a = -INFINITY, b = -INFINITY;
        for (int e = q * g.per_group; e < (q + 1) * g.per_group; e++) {
            float v = corrected(&g, e);
            if (isnan(v)) continue;
            if (v > a) {
                b = a;
                a = v;
            } else if (v > b) {
                b = v;
            }
        }
        gs[q] = a + b;
    }
    topk(array_score, gs, G, s->topk_group, gi);
    for (int q = 0; q < s->topk_group; q++)
        g.kept[gi[q]] = 1;
    topk(choice, &g, E, K, idx);
    float sum = 0;
    for (int k = 0; k < K; k++) {
        w[k] = p[idx[k]];
        sum = sum + w[k];
    }
    if (s->norm_topk_prob) {
        float den = sum + 1e-20f;
        for (int k = 0; k < K; k++)
            w[k] = w[k] / den;
    }
    for (int k = 0; k < K; k++)
        w[k] = w[k] * s->scale;
}

void cellm_route_spec_of(const struct cellm_config *c, const struct cellm_layer *L,
                         struct cellm_route_spec *out)
{
    out->kind = c->router;
    out->n_experts = c->n_experts;
    out->k = c->n_experts_used;
    out->norm_topk_prob = c->norm_topk_prob;
    out->bias = &L->router_b;
    out->corr = &L->router_corr;
    out->n_group = c->n_group;
    out->topk_group = c->topk_group;
    out->scale = (float)c->routed_scale;
}

void cellm_route_token(const struct cellm_route_spec *s, float *p, int *idx, float *w)
{
    int E = s->n_experts, K = s->k;
    if (s->kind == CELLM_ROUTER_SIGMOID_GROUP) {
        route_grouped(s, p, idx, w);
        return;
    }
    if (s->bias && s->bias->fmt != CELLM_W_NONE) cellm_op_add_vec(p, s->bias, E);
    if (s->kind == CELLM_ROUTER_SOFTMAX_TOPK) cellm_op_softmax(p, E);
    topk(array_score, p, E, K, idx);
    for (int k = 0; k < K; k++)
        w[k] = p[idx[k]];
    if (s->kind == CELLM_ROUTER_TOPK_SOFTMAX) cellm_op_softmax(w, K);
    if (s->kind == CELLM_ROUTER_SIGMOID_INPUT) /* Llama 4: the score scales the expert's input */
        for (int k = 0; k < K; k++)
            w[k] = 1.0f / (1.0f + expf(-w[k]));
    if (s->norm_topk_prob) {
        float sum = 0;
        for (int k = 0; k < K; k++)
            sum += w[k];
        for (int k = 0; k < K; k++)
            w[k] = w[k] / sum;
    }
}
