/*
 * router.h: DeepSeek-V3's grouped sigmoid router (noaux_tc), one token at a time, as
 * transformers' DeepseekV3MoE.route_tokens_to_experts computes it in f32
 * (docs/forward/deepseek-v3.md). Self-contained so that other families with the same
 * router (GLM-4 MoE) can share it.
 */
#ifndef CELLM_EXEC_CPU_ROUTER_H
#define CELLM_EXEC_CPU_ROUTER_H

#include "model/hparams.h"
#include "model/weight.h"

struct cellm_route_grouped {
    int n_experts, k; /* E, experts per token */
    int n_group,
        topk_group; /* E splits into n_group consecutive groups; the best topk_group stay */
    int norm;       /* norm_topk_prob: the k weights divided by their sum (+ 1e-20) */
    float scale;    /* routed_scaling_factor, multiplies the weights last */
    const struct cellm_vec *corr; /* [E] e_score_correction_bias, added for the choice only */
};

/* The router of a config (cfg.router CELLM_ROUTER_SIGMOID_GROUPED) with a layer's bias. */
struct cellm_route_grouped cellm_route_grouped_of(const struct cellm_config *c,
                                                  const struct cellm_vec *corr);

/*
 * Routes one token from its router logits [E]: idx[k] the chosen experts in increasing
 * expert order (the order transformers adds their outputs in) and w[k] their weights.
 * scratch holds 2*E + n_group floats.
 */
void cellm_route_grouped(const struct cellm_route_grouped *r, const float *logits, float *scratch,
                         int *idx, float *w);

#endif
