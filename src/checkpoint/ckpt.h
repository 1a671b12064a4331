/*
 * ckpt.h: a checkpoint directory's tensors, across one file or many shards.
 *
 * Which files: model.safetensors when present; otherwise the shards named by
 * model.safetensors.index.json's weight_map; if the index names shards that do not exist
 * (a known flaw of some published MLX repositories), every *.safetensors file present,
 * with a warning; with no index, every *.safetensors file. Each file is mapped read-only
 * exactly once. A tensor in two files is an error.
 *
 * Names: tensors are looked up by canonical Hugging Face names ("model.layers.0...").
 * Checkpoints whose text tower is nested ("language_model.model...", or
 * "model.language_model..." as re-saved by transformers v5) are mapped onto canonical
 * names; tensors of other towers (vision_tower., multi_modal_projector.) are ignored.
 * One checkpoint uses one scheme.
 */
#ifndef CELLM_CHECKPOINT_CKPT_H
#define CELLM_CHECKPOINT_CKPT_H

#include "safetensors.h"

struct cellm_ckpt_entry {
    const char *name;                /* canonical name; owned by the ckpt */
    const struct cellm_st_tensor *t; /* view in files[file] */
    int file;
    int owned_name; /* name was allocated (re-prefixed v5 names) */
};

struct cellm_ckpt {
    char *dir;
    int n_files;
    struct cellm_st_file *files;
    int n; /* tensors of the text model, sorted by name */
    struct cellm_ckpt_entry *entries;
    const char *scheme;  /* "" (canonical), "language_model." or "model.language_model." */
    int n_ignored;       /* tensors of other towers */
    char *stale_index;   /* index file that named missing shards, or NULL */
    char warnings[1024]; /* one per line */
};

enum cellm_status cellm_ckpt_open(const char *dir, struct cellm_ckpt *out, struct cellm_error *err);
void cellm_ckpt_close(struct cellm_ckpt *c);

/* Looks up a canonical name; NULL if absent. */
const struct cellm_ckpt_entry *cellm_ckpt_find(const struct cellm_ckpt *c, const char *name);

/* Base name of the file holding an entry (for messages). */
const char *cellm_ckpt_file_name(const struct cellm_ckpt *c, int file);

/* Error for a needed tensor that is absent: names the tensor, and the missing shard when a
 * stale index said where it should have been. */
enum cellm_status cellm_ckpt_missing(const struct cellm_ckpt *c, const char *name,
                                     struct cellm_error *err);

#endif
