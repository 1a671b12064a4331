/*
 * gemma4.h: what Gemma 4 (model_type gemma4_text, and gemma4 with the text model nested)
 * adds to the generic description: its config keys, proportional RoPE, the experts' names
 * and the per-layer-embedding tensors outside the layer table (docs/forward/gemma4.md).
 * The per-layer tensors themselves are rows of model.h's table like every family's.
 */
#ifndef CELLM_MODEL_GEMMA4_H
#define CELLM_MODEL_GEMMA4_H

#include "hparams.h"
#include "model.h"

struct cJSON; /* cjson/cJSON.h, which executors need not include */

/* The Gemma 4 keys of text config t (after the generic ones are read). */
enum cellm_status cellm_gemma4_keys(const struct cJSON *t, const char *what, struct cellm_config *c,
                                    struct cellm_error *err);
/* A "proportional" RoPE parameter set (factor, partial_rotary_factor). */
enum cellm_status cellm_gemma4_rope(const struct cJSON *o, const char *what, struct cellm_rope *r,
                                    struct cellm_error *err);
/* The experts' storage: transformers' experts.gate_up_proj or mlx-lm's experts.switch_glu. */
enum cellm_experts cellm_gemma4_probe_experts(const struct cellm_desc *d);
/* Expert tensor id of layer L (prefix p = "model.layers.N."). */
enum cellm_status cellm_gemma4_bind_experts(struct cellm_desc *d, const char *p,
                                            struct cellm_layer *L, enum cellm_lt id,
                                            struct cellm_error *err);
/* After the layers are bound: the per-layer embeddings and the full layers' RoPE table. */
enum cellm_status cellm_gemma4_bind(struct cellm_desc *d, struct cellm_error *err);
/* The per-layer embeddings' model tensors alone (cfg.ple_dim > 0; Gemma 3n's too). */
enum cellm_status cellm_gemma4_bind_ple(struct cellm_desc *d, struct cellm_error *err);
/* proportional RoPE's inverse frequencies over a head of head_dim: [head_dim / 2] */
void cellm_gemma4_inv_freq(const struct cellm_rope *r, int head_dim, float *out);

/* The Gemma 4 pieces a config uses, or NULL: an executor that lacks them refuses the model
 * by this text at load. */
const char *cellm_config_gemma4_pieces(const struct cellm_config *c);

#endif
