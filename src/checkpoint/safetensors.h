/*
 * safetensors.h: the safetensors container, parsed and validated in place.
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON, then one byte
 * buffer. Parsing checks everything the reference reader checks (header size bounds,
 * JSON schema, known dtypes, offsets contiguous from 0 with no gap or overlap, byte size
 * = elements x element size, buffer exactly as long as the data) and produces tensor
 * views that point into the caller's buffer (usually a read-only mapping). Views may be
 * unaligned: MLX writes no padding, so readers must use memcpy-style loads.
 */
#ifndef CELLM_CHECKPOINT_SAFETENSORS_H
#define CELLM_CHECKPOINT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "base/mapfile.h"
#include "cellm.h"

enum cellm_dtype {
    CELLM_DT_F32,
    CELLM_DT_F16,
    CELLM_DT_BF16,
    CELLM_DT_F64,
    CELLM_DT_U32,
    CELLM_DT_I32,
    CELLM_DT_U8,
    CELLM_DT_I8,
    CELLM_DT_U16,
    CELLM_DT_I16,
    CELLM_DT_U64,
    CELLM_DT_I64,
    CELLM_DT_BOOL,
    CELLM_DT_F8_E4M3,
    CELLM_DT_F8_E5M2,
    CELLM_DT_F8_E8M0,
    CELLM_DT_F8_E4M3FNUZ,
    CELLM_DT_F8_E5M2FNUZ,
    CELLM_DT_F4,
    CELLM_DT_F6_E2M3,
    CELLM_DT_F6_E3M2,
    CELLM_DT_C64,
    CELLM_DT_COUNT
};

/* The dtype's name as in safetensors headers ("F32", ...). */
const char *cellm_dtype_name(enum cellm_dtype dt);
/* Bits per element (4 for F4, 6 for F6_*, 8 for U8, ...). */
int cellm_dtype_bits(enum cellm_dtype dt);

#define CELLM_MAX_DIMS 8
#define CELLM_ST_MAX_HEADER 100000000u

struct cellm_st_tensor {
    char *name; /* as in the header; owned by the file */
    enum cellm_dtype dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[CELLM_MAX_DIMS];
    uint64_t nbytes;
    const uint8_t *data; /* into the buffer; may be unaligned */
};

struct cellm_st_file {
    char *path;                      /* owned */
    struct cellm_mapfile map;        /* the mapping, when opened from a path */
    int n;                           /* tensors, sorted by name */
    struct cellm_st_tensor *tensors; /* owned */
    char *format;                    /* __metadata__.format, or NULL; owned */
};

/* Parses a safetensors image already in memory (not copied: views point into buf).
 * `what` names the file in error messages. */
enum cellm_status cellm_st_parse(const uint8_t *buf, size_t size, const char *what,
                                 struct cellm_st_file *out, struct cellm_error *err);

/* Maps path read-only and parses it. */
enum cellm_status cellm_st_open(const char *path, struct cellm_st_file *out,
                                struct cellm_error *err);

/* Releases views, names and the mapping. Safe on a zeroed struct. */
void cellm_st_close(struct cellm_st_file *f);

/* Binary search by exact name; NULL if absent. */
const struct cellm_st_tensor *cellm_st_find(const struct cellm_st_file *f, const char *name);

/* Elements of a tensor (product of its shape; 1 for a scalar). */
uint64_t cellm_st_numel(const struct cellm_st_tensor *t);

#endif
