/*
 * sampler_internal.h: the parts of the sampler that tests look into.
 *
 * The public API (cellm.h) only picks a token. Tests need to see the intermediate
 * results to check them by hand: the logits after the penalties, and the candidate set
 * with its renormalised probabilities after temperature, top-k, top-p and min-p. Both
 * functions below use exactly the code paths cellm_sampler_sample uses, so what the
 * tests check is what sampling does.
 */
#ifndef CELLM_ENGINE_SAMPLER_INTERNAL_H
#define CELLM_ENGINE_SAMPLER_INTERNAL_H

#include <stdint.h>

#include "cellm.h"

/* Applies the repetition, frequency and presence penalties of s, over the tokens it has
 * accepted within its window, to logits[vocab] in place. */
void cellm_sampler_penalize(const struct cellm_sampler *s, float *logits);

/* Runs the whole pipeline short of the draw on logits[vocab] (not modified) and writes
 * the tokens that may be drawn to ids and their probabilities (summing to 1) to probs,
 * both [vocab], in the order the draw walks them (descending with top-k; otherwise mostly
 * ascending id). Returns how many were written. With temperature
 * 0 it writes the one greedy token with probability 1. Does not advance the generator. */
int cellm_sampler_candidates(struct cellm_sampler *s, const float *logits, int32_t *ids,
                             float *probs);

/* The next 64 bits of the sampler's generator (xoshiro256**). */
uint64_t cellm_sampler_next_u64(struct cellm_sampler *s);

#endif
