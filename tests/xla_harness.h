/*
 * xla_harness.h: what the XLA interpreter tests (test_xla_oss, test_xla_state,
 * test_xla_families) share to run an emitted module in tests/hlo_interp.h and compare it
 * with the CPU executor: binding the plan's weights, the RoPE tables xla.c uploads and the
 * KV caches as the module's parameters; the CPU executor on the same tokens; and the
 * comparison of logits within the bound every such test uses.
 *
 * The bound: the graph and the CPU differ only in the order of their f32 sums (dots,
 * softmax denominators, the experts' combination), so the logits agree to a few hundred
 * roundings of the largest one; a missing piece (a wrong scale, mask, rotation, router,
 * sink or bias) moves them by orders of magnitude more.
 */
#ifndef CELLM_TESTS_XLA_HARNESS_H
#define CELLM_TESTS_XLA_HARNESS_H

#include <stdint.h>

#include "cellm.h"
#include "exec/xla/emit.h"
#include "exec/xla/emit_state.h"
#include "hlo_interp.h"
#include "model/model.h"

/* Weight parameter w's bytes, its pieces concatenated (malloc'd). */
uint8_t *xt_param_bytes(const struct cellm_xla_wparam *w);

/* Occurrences of needle in hay. */
int xt_count(const char *hay, const char *needle);

/* Every weight parameter of plan p into h for module text: from wbytes[i] when given
 * (xt_param_bytes of each, kept across calls), else concatenated here. */
void xt_bind_weights(struct hi *h, const char *text, const struct cellm_xla_plan *p,
                     uint8_t *const *wbytes);

/* The RoPE tables of T rows from position pos0, as xla.c uploads them
 * (cellm_xla_rope_inputs): cos_g, sin_g, then cos_l, sin_l or cos_p, sin_p. */
void xt_bind_rope(struct hi *h, const char *text, const struct cellm_desc *d,
                  const struct cellm_xla_plan *p, int pos0, int T);

/* The caches k_0, v_0, k_1, ... of cap positions: bufs[i] (2 * n_layers of them, each of
 * cellm_xla_cache_shape's size) or zeros when bufs is NULL. */
void xt_bind_caches(struct hi *h, const char *text, const struct cellm_desc *d, int cap,
                    float *const *bufs);

/* Fails (naming what, the logit, both values) when the worst |got - ref| over n logits
 * exceeds 256 roundings of the largest |ref|, or when the logits are all near zero. */
void xt_compare(const char *what, const float *got, const float *ref, int64_t n);

/* The CPU executor on model dir, one sequence. */
struct xt_cpu {
    struct cellm_model *model;
    struct cellm_ctx *ctx;
    int seq;
};
void xt_cpu_open(struct xt_cpu *cpu, const char *dir);
/* Logits of every one of the n rows tok (appended to the sequence), owned by cpu. */
const float *xt_cpu_eval(struct xt_cpu *cpu, const int32_t *tok, int n);
void xt_cpu_close(struct xt_cpu *cpu);

#endif
