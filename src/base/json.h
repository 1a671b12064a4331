/*
 * json.h: typed reads from cJSON trees with errors that name the file and key.
 *
 * Every getter distinguishes "absent" (or JSON null: the default applies, *present = 0)
 * from "present with the wrong type" (CELLM_ERR_FORMAT naming file, key, found and
 * expected types). `what` is the file name (or "file: section") used in messages.
 */
#ifndef CELLM_BASE_JSON_H
#define CELLM_BASE_JSON_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "cellm.h"

/* Parses text[0..len); on failure the error names `what` and the byte offset. */
enum cellm_status cellm_json_parse(const char *text, size_t len, const char *what, cJSON **out,
                                   struct cellm_error *err);
/* Checks text[0..len) strictly (json_strict.c): exactly one value with only whitespace
 * after it, no repeated key in an object, no raw control character and no \u0000 in a
 * string, nesting at most max_depth. The error names the problem, `what` and the byte
 * offset. cJSON accepts all of these; run this first where the input is untrusted. */
enum cellm_status cellm_json_check_strict(const char *text, size_t len, const char *what,
                                          int max_depth, struct cellm_error *err);
/* Reads and parses a file (a regular file of at most CELLM_JSON_MAX_FILE bytes). */
enum cellm_status cellm_json_load(const char *path, cJSON **out, struct cellm_error *err);

/* Type name of a node for messages ("number", "string", ...). */
const char *cellm_json_type(const cJSON *j);

enum cellm_status cellm_json_int(const cJSON *obj, const char *key, const char *what, int64_t def,
                                 int64_t *out, struct cellm_error *err);
enum cellm_status cellm_json_num(const cJSON *obj, const char *key, const char *what, double def,
                                 double *out, struct cellm_error *err);
enum cellm_status cellm_json_bool(const cJSON *obj, const char *key, const char *what, int def,
                                  int *out, struct cellm_error *err);
/* *out points into the tree (or is def). */
enum cellm_status cellm_json_str(const cJSON *obj, const char *key, const char *what,
                                 const char *def, const char **out, struct cellm_error *err);
/* A number node that holds an integer in [lo, hi]. */
enum cellm_status cellm_json_as_int(const cJSON *j, const char *key, const char *what, int64_t lo,
                                    int64_t hi, int64_t *out, struct cellm_error *err);
/* The member, or NULL when absent or null. */
const cJSON *cellm_json_get(const cJSON *obj, const char *key);

#endif
