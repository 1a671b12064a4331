/*
 * engine.h: internal access to a loaded model for the generation loop (generate.c) and
 * for tests (the public API stays opaque).
 */
#ifndef CELLM_ENGINE_ENGINE_H
#define CELLM_ENGINE_ENGINE_H

#include "cellm.h"
#include "model/model.h"

const struct cellm_desc *cellm_model_desc(const struct cellm_model *m);
const char *cellm_model_device(const struct cellm_model *m);
/* The model a context runs (for the generation loop's EOS set and vocabulary). */
const struct cellm_model *cellm_ctx_model(const struct cellm_ctx *c);
/* Scratch memory owned by the context (grown as needed, freed with it) for the generation
 * loop's step buffers; NULL when out of memory. Valid until the next call. */
void *cellm_ctx_scratch(struct cellm_ctx *c, size_t bytes);
/* Makes the executor hold room for `extra` positions after the sequence's current length
 * before they are evaluated (CUDA: blocks from the context's KV pool); the error names the
 * budget when it cannot, and nothing else changes. CELLM_OK where the executor has no budget. */
enum cellm_status cellm_ctx_seq_reserve(struct cellm_ctx *c, int seq, int extra,
                                        struct cellm_error *err);

#endif
