/*
 * safetensors.c: header parsing and validation.
 *
 * The JSON header is parsed with cJSON. Entries are validated one by one (dtype known,
 * shape of non-negative integers, two offsets with END >= BEGIN, byte size matching the
 * shape), then sorted by BEGIN to prove the data region is covered exactly once from 0 to
 * its end, and the file length checked against it. Finally the views are sorted by name
 * for lookup, which also exposes duplicate names (JSON parsers keep both copies).
 */
#include "safetensors.h"

#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/error.h"
#include "base/json.h"

static const struct {
    const char *name;
    int bits;
} dtypes[CELLM_DT_COUNT] = {
    [CELLM_DT_F32] = {"F32", 32},
    [CELLM_DT_F16] = {"F16", 16},
    [CELLM_DT_BF16] = {"BF16", 16},
    [CELLM_DT_F64] = {"F64", 64},
    [CELLM_DT_U32] = {"U32", 32},
    [CELLM_DT_I32] = {"I32", 32},
    [CELLM_DT_U8] = {"U8", 8},
    [CELLM_DT_I8] = {"I8", 8},
    [CELLM_DT_U16] = {"U16", 16},
    [CELLM_DT_I16] = {"I16", 16},
    [CELLM_DT_U64] = {"U64", 64},
    [CELLM_DT_I64] = {"I64", 64},
    [CELLM_DT_BOOL] = {"BOOL", 8},
    [CELLM_DT_F8_E4M3] = {"F8_E4M3", 8},
    [CELLM_DT_F8_E5M2] = {"F8_E5M2", 8},
    [CELLM_DT_F8_E8M0] = {"F8_E8M0", 8},
    [CELLM_DT_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [CELLM_DT_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [CELLM_DT_F4] = {"F4", 4},
    [CELLM_DT_F6_E2M3] = {"F6_E2M3", 6},
    [CELLM_DT_F6_E3M2] = {"F6_E3M2", 6},
    [CELLM_DT_C64] = {"C64", 64},
};

const char *cellm_dtype_name(enum cellm_dtype dt)
{
    return (unsigned)dt < CELLM_DT_COUNT ? dtypes[dt].name : "?";
}

int cellm_dtype_bits(enum cellm_dtype dt)
{
    return (unsigned)dt < CELLM_DT_COUNT ? dtypes[dt].bits : 0;
}

uint64_t cellm_st_numel(const struct cellm_st_tensor *t)
{
    uint64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= (uint64_t)t->shape[i];
    return n;
}

void cellm_st_close(struct cellm_st_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        cellm_free(f->tensors[i].name);
    cellm_free(f->tensors);
    cellm_free(f->format);
    cellm_free(f->path);
    cellm_mapfile_close(&f->map);
    memset(f, 0, sizeof *f);
}

struct span {
    uint64_t begin, end;
    int index;
};

static int by_begin(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
    const struct cellm_st_tensor *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Validates one header entry into t (name set by caller) and its span. */
static enum cellm_status parse_entry(const cJSON *e, const char *what, struct cellm_st_tensor *t,
                                     struct span *sp, struct cellm_error *err)
{
    const char *nm = e->string;
    if (!cJSON_IsObject(e))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s: entry is a %s, expected an object",
                          what, nm, cellm_json_type(e));
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s: \"dtype\" missing or not a string",
                          what, nm);
    int found = -1;
    for (int i = 0; i < CELLM_DT_COUNT; i++)
        if (!strcmp(dt->valuestring, dtypes[i].name)) found = i;
    if (found < 0)
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.40s\"", what, nm,
                          dt->valuestring);
    t->dtype = (enum cellm_dtype)found;
    if (!cJSON_IsArray(sh))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s: \"shape\" missing or not an array",
                          what, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > CELLM_MAX_DIMS)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %d dimensions, at most %d supported", what, nm, nd,
                          CELLM_MAX_DIMS);
    t->ndim = nd;
    /* elements x bits must not overflow: keep the running product below 2^60 / 64 */
    uint64_t numel = 1;
    int k = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        int64_t v;
        CELLM_TRY(cellm_json_as_int(d, "shape", what, 0, (int64_t)1 << 50, &v, err));
        t->shape[k++] = v;
        if (v != 0 && numel > ((uint64_t)1 << 56) / (uint64_t)v)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s: shape overflows", what, nm);
        numel *= (uint64_t)v;
    }
    uint64_t bits = numel * (uint64_t)dtypes[found].bits;
    if (bits % 8)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: %llu elements of %s do not fill whole bytes", what, nm,
                          (unsigned long long)numel, dtypes[found].name);
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: \"data_offsets\" must be an array of two integers", what,
                          nm);
    int64_t b, en;
    CELLM_TRY(cellm_json_as_int(cJSON_GetArrayItem(off, 0), "data_offsets", what, 0,
                                (int64_t)1 << 52, &b, err));
    CELLM_TRY(cellm_json_as_int(cJSON_GetArrayItem(off, 1), "data_offsets", what, 0,
                                (int64_t)1 << 52, &en, err));
    if (en < b)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: tensor %s: data_offsets [%lld, %lld] end before they begin", what,
                          nm, (long long)b, (long long)en);
    if ((uint64_t)(en - b) != bits / 8)
        return cellm_errf(
            err, CELLM_ERR_FORMAT,
            "%s: tensor %s: data_offsets span %lld bytes but shape and dtype %s need %llu", what,
            nm, (long long)(en - b), dtypes[found].name, (unsigned long long)(bits / 8));
    t->nbytes = bits / 8;
    sp->begin = (uint64_t)b;
    sp->end = (uint64_t)en;
    return CELLM_OK;
}

static enum cellm_status parse_header(const cJSON *root, const uint8_t *data, uint64_t data_size,
                                      const char *what, struct cellm_st_file *out,
                                      struct cellm_error *err)
{
    if (!cJSON_IsObject(root))
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: header is a JSON %s, expected an object",
                          what, cellm_json_type(root));
    int count = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root)
    {
        if (!e->string)
            return cellm_errf(err, CELLM_ERR_FORMAT, "%s: header entry without a name", what);
        if (strcmp(e->string, "__metadata__")) count++;
    }
    out->tensors = cellm_calloc((size_t)count, sizeof *out->tensors);
    struct span *spans = cellm_calloc((size_t)count, sizeof *spans);
    if (!out->tensors || !spans) {
        cellm_free(spans);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory for %d tensors", what, count);
    }
    enum cellm_status st = CELLM_OK;
    cJSON_ArrayForEach(e, root)
    {
        if (!strcmp(e->string, "__metadata__")) {
            if (cJSON_IsNull(e)) continue;
            if (!cJSON_IsObject(e)) {
                st = cellm_errf(err, CELLM_ERR_FORMAT,
                                "%s: __metadata__ is a %s, expected an object", what,
                                cellm_json_type(e));
                goto done;
            }
            const cJSON *m;
            cJSON_ArrayForEach(m, e)
            {
                if (!cJSON_IsString(m)) {
                    st = cellm_errf(err, CELLM_ERR_FORMAT,
                                    "%s: __metadata__.%s is a %s, expected a string", what,
                                    m->string, cellm_json_type(m));
                    goto done;
                }
                if (!strcmp(m->string, "format") && !out->format) {
                    out->format = cellm_strdup(m->valuestring);
                    if (!out->format) {
                        st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
                        goto done;
                    }
                }
            }
            continue;
        }
        struct cellm_st_tensor *t = &out->tensors[out->n];
        t->name = cellm_strdup(e->string);
        if (!t->name) {
            st = cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", what);
            goto done;
        }
        out->n++;
        spans[out->n - 1].index = out->n - 1;
        st = parse_entry(e, what, t, &spans[out->n - 1], err);
        if (st) goto done;
    }
    qsort(spans, (size_t)out->n, sizeof *spans, by_begin);
    uint64_t pos = 0;
    for (int i = 0; i < out->n; i++) {
        const struct span *s = &spans[i];
        if (s->begin != pos) {
            st = cellm_errf(
                err, CELLM_ERR_FORMAT,
                "%s: tensor %s: data_offsets [%llu, %llu] %s (expected it to start at %llu)", what,
                out->tensors[s->index].name, (unsigned long long)s->begin,
                (unsigned long long)s->end,
                s->begin < pos ? "overlap the previous tensor" : "leave a gap",
                (unsigned long long)pos);
            goto done;
        }
        pos = s->end;
    }
    if (pos != data_size) {
        st = cellm_errf(err, CELLM_ERR_FORMAT,
                        "%s: tensor data ends at byte %llu of the data region but the file holds "
                        "%llu bytes there%s",
                        what, (unsigned long long)pos, (unsigned long long)data_size,
                        pos > data_size ? " (file truncated?)" : " (trailing bytes)");
        goto done;
    }
    for (int i = 0; i < out->n; i++)
        out->tensors[spans[i].index].data = data + spans[i].begin;
    qsort(out->tensors, (size_t)out->n, sizeof *out->tensors, by_name);
    for (int i = 1; i < out->n; i++)
        if (!strcmp(out->tensors[i - 1].name, out->tensors[i].name)) {
            st = cellm_errf(err, CELLM_ERR_FORMAT, "%s: tensor %s appears twice in the header",
                            what, out->tensors[i].name);
            goto done;
        }
done:
    cellm_free(spans);
    return st;
}

enum cellm_status cellm_st_parse(const uint8_t *buf, size_t size, const char *what,
                                 struct cellm_st_file *out, struct cellm_error *err)
{
    memset(out, 0, sizeof *out);
    if (size < 8)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: %zu bytes, too short for a safetensors file (8-byte header length)",
                          what, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | buf[i];
    if (n > CELLM_ST_MAX_HEADER)
        return cellm_errf(
            err, CELLM_ERR_FORMAT,
            "%s: header length %llu exceeds the limit of %u bytes (not a safetensors file?)", what,
            (unsigned long long)n, CELLM_ST_MAX_HEADER);
    if (n > size - 8)
        return cellm_errf(err, CELLM_ERR_FORMAT,
                          "%s: header length %llu runs past the end of the %zu-byte file", what,
                          (unsigned long long)n, size);
    if (n < 2 || buf[8] != '{')
        return cellm_errf(err, CELLM_ERR_FORMAT, "%s: header does not start with '{'", what);
    cJSON *root;
    CELLM_TRY(cellm_json_parse((const char *)buf + 8, (size_t)n, what, &root, err));
    enum cellm_status st = parse_header(root, buf + 8 + n, size - 8 - n, what, out, err);
    cJSON_Delete(root);
    if (st != CELLM_OK) {
        struct cellm_mapfile keep = out->map;
        out->map.data = NULL;
        cellm_st_close(out);
        out->map = keep;
    }
    return st;
}

enum cellm_status cellm_st_open(const char *path, struct cellm_st_file *out,
                                struct cellm_error *err)
{
    struct cellm_mapfile m;
    memset(out, 0, sizeof *out);
    CELLM_TRY(cellm_mapfile_open(path, &m, err));
    enum cellm_status st = cellm_st_parse(m.data, m.size, path, out, err);
    if (st != CELLM_OK) {
        cellm_mapfile_close(&m);
        return st;
    }
    out->map = m;
    out->path = cellm_strdup(path);
    if (!out->path) {
        cellm_st_close(out);
        return cellm_errf(err, CELLM_ERR_NOMEM, "%s: out of memory", path);
    }
    return CELLM_OK;
}

const struct cellm_st_tensor *cellm_st_find(const struct cellm_st_file *f, const char *name)
{
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (c == 0) return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}
