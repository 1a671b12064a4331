/*
 * info.h: struct cellm_model_info (cellm.h) of a bound description, with the strings it
 * points to. The engine builds one per model at load (cellm_model_info returns it).
 */
#ifndef CELLM_MODEL_INFO_H
#define CELLM_MODEL_INFO_H

#include "cellm.h"
#include "model.h"
#include "hybrid.h"

#define CELLM_INFO_LINES 24

struct cellm_info_store {
    struct cellm_model_info pub;
    char rope[1024], rope_local[1024], sliding[256], moe_layers[256], block[256], quant[256];
    char names[64], router[160], expert_act[96], shared[96];
    char state[384]; /* sequence state (hybrid.h) */
    char mla[192]; /* latent attention (DeepSeek-V3) */
    struct cellm_info_line lines[CELLM_INFO_LINES];
    char keys[CELLM_INFO_LINES][128], vals[CELLM_INFO_LINES][512];
    struct cellm_info_shard *shards; /* [n_files] */
    char positions[512];
    char layer_notes[512];
};

/* Fills st from d; device is kept as given (it must outlive st). */
enum cellm_status cellm_info_build(const struct cellm_desc *d, const char *device,
                                   struct cellm_info_store *st, struct cellm_error *err);
void cellm_info_free(struct cellm_info_store *st);

#endif
