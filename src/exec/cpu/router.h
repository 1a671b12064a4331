/*
 * router.h: which experts a token of a MoE layer goes to, and with what weights, from the
 * router's logits (enum cellm_router in model/hparams.h).
 *
 * The executor computes the logits (one exact f32 product per token against mlp.gate);
 * everything after that is here, per token, in f32 with the reference's rounding steps.
 * The spec struct holds only numbers and vectors, not a layer, so that another family's
 * router of the same kind (DeepSeek-V3's noaux_tc is CELLM_ROUTER_SIGMOID_GROUP) fills it
 * from its own tensors, and so that a device executor can run the same code on the host.
 *
 * Ties: equal scores rank by expert index (the lower first). NaN scores rank last, so a
 * broken checkpoint picks valid indices rather than reading out of range.
 */
#ifndef CELLM_EXEC_CPU_ROUTER_H
#define CELLM_EXEC_CPU_ROUTER_H

#include "model/model.h"

struct cellm_route_spec {
    enum cellm_router kind;
    int n_experts, k;   /* k experts per token, k <= n_experts */
    int norm_topk_prob; /* the k weights are divided by their sum */
    /* added to the logits before anything else (gpt-oss's router bias); NULL or fmt NONE =
     * none */
    const struct cellm_vec *bias;
    /* CELLM_ROUTER_SIGMOID_GROUP only: */
    const struct cellm_vec *corr; /* [n_experts] e_score_correction_bias: choosing only */
    int n_group, topk_group;      /* n_experts / n_group contiguous experts per group */
    float scale;                  /* routed_scaling_factor, multiplies the k weights */
};

/* The spec of layer L's router under config c. */
void cellm_route_spec_of(const struct cellm_config *c, const struct cellm_layer *L,
                         struct cellm_route_spec *out);

/*
 * One token: logits [n_experts] (overwritten: they become the scores) to idx[k] (experts
 * in rank order, best first) and w[k] (their weights, in the same order).
 *   SOFTMAX_TOPK       softmax over all, top k, renormalised when norm_topk_prob
 *   TOPK_SOFTMAX       top k of the logits, softmax over those k
 *   SIGMOID_INPUT      top k of the logits, w = sigmoid(logit) (Llama 4)
 *   SIGMOID_GROUP      s = sigmoid(logit); choice = s + corr; a group scores the sum of its
 *                      two best choices; the topk_group best groups stay, the choices of
 *                      the others become 0.0 (not -inf: a dropped group's expert can still
 *                      win when fewer than k kept choices are positive, as in transformers);
 *                      top k of the choices; w = s at those experts, divided by
 *                      (sum + 1e-20) when norm_topk_prob, times scale
 */
void cellm_route_token(const struct cellm_route_spec *s, float *logits, int *idx, float *w);

#endif
