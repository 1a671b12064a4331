/*
 * engine.h: internal access to a loaded model for the CLI's inspect/bench commands and
 * for tests (the public API stays opaque).
 */
#ifndef CELLM_ENGINE_ENGINE_H
#define CELLM_ENGINE_ENGINE_H

#include "cellm.h"
#include "model/model.h"

const struct cellm_desc *cellm_model_desc(const struct cellm_model *m);
const char *cellm_model_device(const struct cellm_model *m);

#endif
