/*
 * hparams_l4.h: the config keys of Llama 4 text and Mistral 3 text that no other family
 * has (docs/forward/llama4.md, docs/forward/ministral3.md), read after the generic keys.
 */
#ifndef CELLM_MODEL_HPARAMS_L4_H
#define CELLM_MODEL_HPARAMS_L4_H

#include "base/json.h"
#include "hparams.h"

/* Llama 4: the MoE keys (num_local_experts, interleave_moe_layer_step or moe_layers, the two
 * intermediate sizes), NoPE layers, chunked attention, the q/k norm and the temperature.
 * t is the text config; c already holds the generic keys and its per-layer arrays. */
enum cellm_status cellm_config_llama4(const cJSON *t, const char *what, struct cellm_config *c,
                                      struct cellm_error *err);
/* Mistral 3: yarn RoPE when the config names none, and the query scale by position
 * (rope_parameters.llama_4_scaling_beta over original_max_position_embeddings). */
enum cellm_status cellm_config_ministral3(const cJSON *t, const char *what, struct cellm_config *c,
                                          struct cellm_error *err);

#endif
