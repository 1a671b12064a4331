/*
 * gemma3n.h: what Gemma 3n (model_type gemma3n_text, and gemma3n with the text model nested)
 * adds to the generic description (docs/forward/gemma3n.md): its config keys (AltUp,
 * LAuReL, activation sparsity, per-layer embeddings, KV sharing), the model-level AltUp
 * projections outside the layer table, and the standard-normal quantile of the sparsity cut.
 * The per-layer tensors are rows of model.h's table; the per-layer embeddings and the KV
 * sharing rule are Gemma 4's (model/gemma4.h, cellm_layer_geometry).
 */
#ifndef CELLM_MODEL_GEMMA3N_H
#define CELLM_MODEL_GEMMA3N_H

#include "hparams.h"
#include "model.h"

struct cJSON; /* cjson/cJSON.h, which executors need not include */

/* The Gemma 3n keys of text config t (after the generic ones are read). */
enum cellm_status cellm_gemma3n_keys(const struct cJSON *t, const char *what,
                                     struct cellm_config *c, struct cellm_error *err);
/* After the layers are bound: the per-layer embeddings and the AltUp projections. */
enum cellm_status cellm_gemma3n_bind(struct cellm_desc *d, struct cellm_error *err);
/* torch.distributions.Normal(0, 1).icdf(p) for a float32 p in (0, 1), rounded as torch's
 * float32 ops round it: fl(fl(erfinv(fl(2p) - 1)) * fl(sqrt 2)) (1.6448536 for 0.95). */
float cellm_gemma3n_std_multiplier(float p);

/* The Gemma 3n pieces a config uses, or NULL: an executor that lacks them refuses the model
 * by this text at load. */
const char *cellm_config_gemma3n_pieces(const struct cellm_config *c);

#endif
