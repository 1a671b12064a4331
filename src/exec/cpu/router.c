/*
 * router.c: the grouped sigmoid router (router.h).
 *
 * Choice and weight are apart: experts are chosen by sigmoid(logit) + correction bias,
 * within the best groups (a group scores the sum of its two best choice scores; the
 * experts of the other groups score exactly 0.0 rather than minus infinity, as
 * transformers' masked_fill does, so with negative biases a dropped expert can still win),
 * and weighed by the sigmoid alone. Ties go to the lower index, as a stable top-k would.
 */
#include "router.h"

#include <math.h>

/* index of the largest v[i] among those not yet taken (taken[i] == 0) */
static int best_of(const float *v, const unsigned char *taken, int n)
{
    int b = -1;
    for (int i = 0; i < n; i++)
        if (!taken[i] && (b < 0 || v[i] > v[b])) b = i;
    return b;
}

struct cellm_route_grouped cellm_route_grouped_of(const struct cellm_config *c,
                                                  const struct cellm_vec *corr)
{
    struct cellm_route_grouped r = {c->n_experts,  c->n_experts_used, c->n_group,
                                    c->topk_group, c->norm_topk_prob, (float)c->routed_scale,
                                    corr};
    return r;
}

void cellm_route_grouped(const struct cellm_route_grouped *r, const float *logits, float *scratch,
                         int *idx, float *w)
{
    const int E = r->n_experts, G = r->n_group, per = E / G;
    float *s = scratch, *choice = scratch + E, *gscore = scratch + 2 * E;
    unsigned char taken[1024]; /* n_group and E of released models are at most 256 */
    for (int e = 0; e < E; e++) {
        s[e] = 1.0f / (1.0f + expf(-logits[e]));
        choice[e] = s[e] + cellm_vec_at(r->corr, e);
    }
    for (int g = 0; g < G; g++) {
        const float *c = choice + g * per;
        int a = 0;
        for (int i = 1; i < per; i++)
            if (c[i] > c[a]) a = i;
        int b = a == 0 ? 1 : 0;
        for (int i = 0; i < per; i++)
            if (i != a && c[i] > c[b]) b = i;
        gscore[g] = c[a] + c[b];
    }
    /* keep the topk_group best groups; the others' experts score 0 */
    for (int g = 0; g < G; g++)
        taken[g] = 0;
    for (int t = 0; t < r->topk_group; t++)
        taken[best_of(gscore, taken, G)] = 2;
    for (int g = 0; g < G; g++)
        if (taken[g] != 2)
            for (int i = 0; i < per; i++)
                choice[g * per + i] = 0.0f;
    for (int e = 0; e < E; e++)
        taken[e] = 0;
    for (int k = 0; k < r->k; k++)
        taken[best_of(choice, taken, E)] = 1;
    int k = 0;
    float sum = 0;
    for (int e = 0; e < E; e++)
        if (taken[e]) {
            idx[k] = e;
            w[k] = s[e];
            k++;
        }
    if (r->norm) {
        for (int j = 0; j < r->k; j++)
            sum += w[j];
        float den = sum + 1e-20f;
        for (int j = 0; j < r->k; j++)
            w[j] = w[j] / den;
    }
    for (int j = 0; j < r->k; j++)
        w[j] = w[j] * r->scale;
}
