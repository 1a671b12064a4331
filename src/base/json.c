/*
 * json.c: cJSON parsing and typed member access with precise errors.
 */
#include "json.h"

#include <math.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "mapfile.h"

enum cellm_status cellm_json_parse(const char *text, size_t len, const char *what, cJSON **out,
                                   struct cellm_error *err)
{
    const char *end = NULL;
    *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!*out) {
        size_t off = end && end >= text ? (size_t)(end - text) : 0;
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: invalid JSON near byte %zu", what, off);
    }
    return CELLM_OK;
}

enum cellm_status cellm_json_load(const char *path, cJSON **out, struct cellm_error *err)
{
    char *text;
    size_t len;
    *out = NULL;
    CELLM_TRY(cellm_read_file(path, &text, &len, err));
    enum cellm_status st = cellm_json_parse(text, len, path, out, err);
    cellm_free(text);
    return st;
}

const char *cellm_json_type(const cJSON *j)
{
    if (!j) return "nothing";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsBool(j)) return "boolean";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid";
}

const cJSON *cellm_json_get(const cJSON *obj, const char *key)
{
    if (!obj || !cJSON_IsObject(obj)) return NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j || cJSON_IsNull(j)) return NULL;
    return j;
}

enum cellm_status cellm_json_as_int(const cJSON *j, const char *key, const char *what, int64_t lo,
                                    int64_t hi, int64_t *out, struct cellm_error *err)
{
    if (!cJSON_IsNumber(j))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is a %s, expected an integer", what,
                          key, cellm_json_type(j));
    double d = j->valuedouble;
    if (!(d == floor(d)) || d < (double)lo || d > (double)hi)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: \"%s\" is %g, expected an integer in [%lld, %lld]", what, key, d,
                          (long long)lo, (long long)hi);
    *out = (int64_t)d;
    return CELLM_OK;
}

enum cellm_status cellm_json_int(const cJSON *obj, const char *key, const char *what, int64_t def,
                                 int64_t *out, struct cellm_error *err)
{
    const cJSON *j = cellm_json_get(obj, key);
    if (!j) {
        *out = def;
        return CELLM_OK;
    }
    return cellm_json_as_int(j, key, what, INT64_MIN / 2, INT64_MAX / 2, out, err);
}

enum cellm_status cellm_json_num(const cJSON *obj, const char *key, const char *what, double def,
                                 double *out, struct cellm_error *err)
{
    const cJSON *j = cellm_json_get(obj, key);
    if (!j) {
        *out = def;
        return CELLM_OK;
    }
    if (!cJSON_IsNumber(j))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is a %s, expected a number", what, key,
                          cellm_json_type(j));
    *out = j->valuedouble;
    return CELLM_OK;
}

enum cellm_status cellm_json_bool(const cJSON *obj, const char *key, const char *what, int def,
                                  int *out, struct cellm_error *err)
{
    const cJSON *j = cellm_json_get(obj, key);
    if (!j) {
        *out = def;
        return CELLM_OK;
    }
    if (!cJSON_IsBool(j))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is a %s, expected true or false", what,
                          key, cellm_json_type(j));
    *out = cJSON_IsTrue(j);
    return CELLM_OK;
}

enum cellm_status cellm_json_str(const cJSON *obj, const char *key, const char *what,
                                 const char *def, const char **out, struct cellm_error *err)
{
    const cJSON *j = cellm_json_get(obj, key);
    if (!j) {
        *out = def;
        return CELLM_OK;
    }
    if (!cJSON_IsString(j))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: \"%s\" is a %s, expected a string", what, key,
                          cellm_json_type(j));
    *out = j->valuestring;
    return CELLM_OK;
}
