/*
 * st_util.h: helpers for tests that build checkpoints at test time.
 *
 * A temporary directory per test (removed recursively afterwards), raw safetensors files
 * from a header string and a data blob, well-formed files from a list of tensors (offsets
 * assigned contiguously, in list order), and a fixture's tensors as such a list so that a
 * test can drop, rename, retype or split them and write the result.
 */
#ifndef CELLM_TESTS_ST_UTIL_H
#define CELLM_TESTS_ST_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/safetensors.h"

struct tst_tensor {
    char name[200];
    char dtype[16];
    int ndim;
    int64_t shape[4];
    const void *data;   /* NULL: zeros */
    size_t nbytes;
};

/* Creates a fresh directory under $TMPDIR (or /tmp); returns 0 on failure. */
static inline int tst_mkdtemp(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/cellm-test-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf) != NULL;
}

static inline int tst_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void tst_rm_rf(const char *dir)
{
    nftw(dir, tst_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline int tst_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok;
}

static inline int tst_write_str(const char *dir, const char *name, const char *text)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return tst_write(p, text, strlen(text));
}

/* Copies a whole file; 0 on failure. */
static inline int tst_copy(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    int ok = buf && fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    ok = ok && tst_write(to, buf, (size_t)n);
    free(buf);
    return ok;
}

/* An in-memory safetensors image: u64 length, header, then data_len bytes of data. */
static inline uint8_t *tst_st_image(const char *header, const void *data, size_t data_len,
                                    size_t *size)
{
    size_t h = strlen(header);
    *size = 0;
    uint8_t *img = calloc(1, 8 + h + data_len + 1);
    if (!img)
        return NULL;
    uint64_t n = h;
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(n >> (8 * i));
    memcpy(img + 8, header, h);
    if (data && data_len)
        memcpy(img + 8 + h, data, data_len);
    *size = 8 + h + data_len;
    return img;
}

static inline int tst_st_raw(const char *path, const char *header, const void *data,
                             size_t data_len)
{
    size_t size;
    uint8_t *img = tst_st_image(header, data, data_len, &size);
    int ok = img && tst_write(path, img, size);
    free(img);
    return ok;
}

/* A well-formed file (header in list order, data contiguous in list order). */
static inline int tst_st_write(const char *path, const struct tst_tensor *t, int n)
{
    size_t cap = 256 + (size_t)n * 320, len = 0, total = 0;
    char *h = malloc(cap);
    if (!h)
        return 0;
    len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\":{\"format\":\"mlx\"}");
    for (int i = 0; i < n; i++) {
        len += (size_t)snprintf(h + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[",
                                t[i].name, t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? "," : "",
                                    (long long)t[i].shape[d]);
        len += (size_t)snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", total,
                                total + t[i].nbytes);
        total += t[i].nbytes;
    }
    snprintf(h + len, cap - len, "}");
    uint8_t *data = calloc(1, total + 1);
    if (!data) {
        free(h);
        return 0;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        if (t[i].data)
            memcpy(data + off, t[i].data, t[i].nbytes);
        off += t[i].nbytes;
    }
    int ok = tst_st_raw(path, h, data, total);
    free(h);
    free(data);
    return ok;
}

/* The tensors of an open file as a malloc'd list (data points into f's mapping). */
static inline struct tst_tensor *tst_st_list(const struct cellm_st_file *f, int extra)
{
    struct tst_tensor *t = calloc((size_t)(f->n + extra + 1), sizeof *t);
    if (!t)
        return NULL;
    for (int i = 0; i < f->n; i++) {
        const struct cellm_st_tensor *s = &f->tensors[i];
        snprintf(t[i].name, sizeof t[i].name, "%s", s->name);
        snprintf(t[i].dtype, sizeof t[i].dtype, "%s", cellm_dtype_name(s->dtype));
        t[i].ndim = s->ndim;
        for (int d = 0; d < s->ndim && d < 4; d++)
            t[i].shape[d] = s->shape[d];
        t[i].data = s->data;
        t[i].nbytes = (size_t)s->nbytes;
    }
    return t;
}

/* Index of a tensor by name in a list, or -1. */
static inline int tst_find(const struct tst_tensor *t, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return i;
    return -1;
}

#endif
