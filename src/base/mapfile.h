/*
 * mapfile.h: read-only file mappings.
 *
 * A checkpoint file is mapped once, read-only and shared, and never copied: tensors are
 * views into the mapping. Empty files map to a NULL pointer with size 0.
 */
#ifndef CELLM_BASE_MAPFILE_H
#define CELLM_BASE_MAPFILE_H

#include <stddef.h>
#include <stdint.h>

#include "cellm.h"

struct cellm_mapfile {
    const uint8_t *data; /* PROT_READ mapping, or NULL when size == 0 */
    size_t size;
};

enum cellm_status cellm_mapfile_open(const char *path, struct cellm_mapfile *out,
                                     struct cellm_error *err);
void cellm_mapfile_close(struct cellm_mapfile *m);

/* Largest file cellm_read_file reads (JSON configs, tokenizer.json, templates): the
 * largest known tokenizer.json is a few tens of MB. */
#define CELLM_READ_FILE_MAX ((size_t)256 << 20)

/* Reads a whole (small) regular file into a NUL-terminated malloc'd buffer. Anything
 * but a regular file (a FIFO, /dev/zero) is refused without blocking, and so is a file
 * over CELLM_READ_FILE_MAX bytes (or `max` for cellm_read_file_max). */
enum cellm_status cellm_read_file(const char *path, char **out, size_t *len,
                                  struct cellm_error *err);
enum cellm_status cellm_read_file_max(const char *path, size_t max, char **out, size_t *len,
                                      struct cellm_error *err);

/* 1 if path names an existing regular file. */
int cellm_file_exists(const char *path);

/* Joins dir and name with one '/'; malloc'd, NULL on allocation failure. */
char *cellm_path_join(const char *dir, const char *name);

#endif
