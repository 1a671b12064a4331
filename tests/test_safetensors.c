/*
 * test_safetensors.c: the safetensors container (src/checkpoint/safetensors.c).
 *
 * Well-formed images (unaligned views, scalars, empty tensors, space-padded headers,
 * __metadata__) and one malformed image per rule of the reference reader, each checked
 * for its status and for the words of its message: the file, the tensor, what was found
 * and what was expected. Files are written into a temporary directory at test time so
 * that cellm_st_open's mapping path is covered too. Allocation failure at every point of
 * a parse must give CELLM_ERR_NOMEM and leak nothing (LeakSanitizer in CI).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "base/half.h"
#include "checkpoint/safetensors.h"
#include "st_util.h"

/* Parses header + data from memory; returns the status, message in err. */
static enum cellm_status parse(const char *header, const void *data, size_t dlen,
                               struct cellm_st_file *f, struct cellm_error *err)
{
    size_t size;
    uint8_t *img = tst_st_image(header, data, dlen, &size);
    assert_non_null(img);
    err->msg[0] = 0;
    enum cellm_status st = cellm_st_parse(img, size, "bad.safetensors", f, err);
    /* views point into img: only keep it alive for successful parses the caller checks */
    if (st != CELLM_OK) {
        free(img);
        return st;
    }
    cellm_st_close(f);
    free(img);
    return st;
}

static void contains(const char *msg, const char *word)
{
    if (!strstr(msg, word)) fail_msg("message \"%s\" lacks \"%s\"", msg, word);
}

/* status and each of up to four words */
static void expect(const char *header, const void *data, size_t dlen, enum cellm_status want,
                   const char *w1, const char *w2, const char *w3, const char *w4)
{
    struct cellm_st_file f;
    struct cellm_error err;
    enum cellm_status st = parse(header, data, dlen, &f, &err);
    if (st != want)
        fail_msg("header %.120s: status %d (%s), expected %d; message: %s", header, st,
                 cellm_status_str(st), want, err.msg);
    contains(err.msg, "bad.safetensors");
    const char *w[] = {w1, w2, w3, w4};
    for (int i = 0; i < 4; i++)
        if (w[i]) contains(err.msg, w[i]);
}

static const uint8_t zeros[256];

static void well_formed(void **state)
{
    (void)state;
    /* MLX style: unsorted data order, no padding, odd total header length, metadata */
    const char *h = "{\"__metadata__\":{\"format\":\"mlx\"},"
                    "\"b\":{\"dtype\":\"U32\",\"shape\":[2,1],\"data_offsets\":[3,11]},"
                    "\"a\":{\"dtype\":\"F16\",\"shape\":[1,1],\"data_offsets\":[1,3]},"
                    "\"s\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]},"
                    "\"e\":{\"dtype\":\"BF16\",\"shape\":[4,0],\"data_offsets\":[11,11]},"
                    "\"f\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[11,12]}}";
    uint8_t data[12] = {7, 0x00, 0x3c, 1, 0, 0, 0, 2, 0, 0, 0, 0x21};
    size_t size;
    uint8_t *img = tst_st_image(h, data, sizeof data, &size);
    struct cellm_st_file f;
    struct cellm_error err;
    assert_int_equal(cellm_st_parse(img, size, "ok.safetensors", &f, &err), CELLM_OK);
    assert_int_equal(f.n, 5);
    assert_string_equal(f.format, "mlx");
    /* sorted by name */
    assert_string_equal(f.tensors[0].name, "a");
    assert_string_equal(f.tensors[4].name, "s");
    const struct cellm_st_tensor *b = cellm_st_find(&f, "b");
    assert_non_null(b);
    assert_int_equal(b->dtype, CELLM_DT_U32);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->nbytes, 8);
    assert_ptr_equal(b->data, img + 8 + strlen(h) + 3); /* an unaligned view */
    assert_int_equal(cellm_load_u32(b->data + 4), 2);
    const struct cellm_st_tensor *s = cellm_st_find(&f, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(cellm_st_numel(s), 1);
    assert_int_equal(s->data[0], 7);
    const struct cellm_st_tensor *e = cellm_st_find(&f, "e");
    assert_int_equal(cellm_st_numel(e), 0);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(cellm_st_find(&f, "f")->nbytes, 1);
    assert_null(cellm_st_find(&f, "c"));
    assert_null(cellm_st_find(&f, "__metadata__"));
    cellm_st_close(&f);
    cellm_st_close(&f); /* twice is harmless */
    free(img);

    /* HF style: header padded with spaces, no metadata, an empty file of tensors */
    struct cellm_st_file g;
    assert_int_equal(parse("{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}   ",
                           zeros, 8, &g, &err),
                     CELLM_OK);
    assert_int_equal(parse("{}", NULL, 0, &g, &err), CELLM_OK);
    assert_int_equal(parse("{\"__metadata__\":null}", NULL, 0, &g, &err), CELLM_OK);
    /* every dtype's header is readable, weights or not */
    static const char *names[] = {"F32",  "F16",     "BF16",    "F64",     "U32", "I32",
                                  "U8",   "I8",      "U16",     "I16",     "U64", "I64",
                                  "BOOL", "F8_E4M3", "F8_E5M2", "F8_E8M0", "C64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char hh[200];
        int bytes = 0;
        for (int k = 0; k < CELLM_DT_COUNT; k++)
            if (!strcmp(cellm_dtype_name((enum cellm_dtype)k), names[i]))
                bytes = cellm_dtype_bits((enum cellm_dtype)k) / 8 * 3;
        assert_true(bytes > 0);
        snprintf(hh, sizeof hh, "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%d]}}",
                 names[i], bytes);
        assert_int_equal(parse(hh, zeros, (size_t)bytes, &g, &err), CELLM_OK);
    }
}

static void malformed_container(void **state)
{
    (void)state;
    struct cellm_st_file f;
    struct cellm_error err;
    /* fewer than 8 bytes */
    assert_int_equal(cellm_st_parse((const uint8_t *)"\x02\0\0", 3, "bad.safetensors", &f, &err),
                     CELLM_ERR_FORMAT);
    contains(err.msg, "bad.safetensors");
    contains(err.msg, "3 bytes");
    contains(err.msg, "too short");
    /* header length past the end */
    uint8_t img[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_int_equal(cellm_st_parse(img, 10, "bad.safetensors", &f, &err), CELLM_ERR_FORMAT);
    contains(err.msg, "header length 200");
    contains(err.msg, "past the end of the 10-byte file");
    /* u64 that would overflow 8 + N */
    memset(img, 0xff, 8);
    assert_int_equal(cellm_st_parse(img, 16, "bad.safetensors", &f, &err), CELLM_ERR_FORMAT);
    contains(err.msg, "exceeds the limit");
    /* absurd header length, refused before allocating anything: every allocation fails */
    uint64_t n = 150000000ull;
    for (int i = 0; i < 8; i++)
        img[i] = (uint8_t)(n >> (8 * i));
    cellm_alloc_fail_after(0);
    enum cellm_status st = cellm_st_parse(img, 16, "bad.safetensors", &f, &err);
    cellm_alloc_fail_after(-1);
    assert_int_equal(st, CELLM_ERR_FORMAT);
    contains(err.msg, "header length 150000000 exceeds the limit of 100000000 bytes");
    /* not an object */
    expect("[1, 2]", NULL, 0, CELLM_ERR_FORMAT, "does not start with '{'", NULL, NULL, NULL);
    expect("{\"a\": ", NULL, 0, CELLM_ERR_FORMAT, "invalid JSON", NULL, NULL, NULL);
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", zeros, 4,
           CELLM_ERR_FORMAT, "invalid JSON", NULL, NULL, NULL);
}

static void malformed_entries(void **state)
{
    (void)state;
    /* truncated data: the entries need 16 bytes, the file holds 10 */
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 10,
           CELLM_ERR_FORMAT, "ends at byte 16", "holds 10 bytes", "truncated", NULL);
    /* offsets out of range of the file */
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4000,4004]}}", zeros, 4,
           CELLM_ERR_FORMAT, "tensor w", "[4000, 4004]", "gap", "expected it to start at 0");
    expect("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", zeros, 4,
           CELLM_ERR_FORMAT, "data_offsets", "expected an integer", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", zeros, 1,
           CELLM_ERR_FORMAT, "data_offsets", "is -1", NULL, NULL);
    /* overlapping */
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
           zeros, 12, CELLM_ERR_FORMAT, "tensor b", "[4, 12]", "overlap", NULL);
    /* identical spans (both tensors on the same bytes) */
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
           zeros, 8, CELLM_ERR_FORMAT, "[0, 8]", "overlap", NULL, NULL);
    /* gap between tensors */
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
           zeros, 12, CELLM_ERR_FORMAT, "tensor b", "leave a gap", "start at 4", NULL);
    /* bytes after the last tensor */
    expect("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 6,
           CELLM_ERR_FORMAT, "ends at byte 4", "holds 6", "trailing bytes", NULL);
    /* unknown dtype */
    expect("{\"w\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]}}", zeros, 1,
           CELLM_ERR_FORMAT, "tensor w", "unknown dtype \"F7\"", NULL, NULL);
    expect("{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,1]}}", zeros, 1, CELLM_ERR_FORMAT,
           "tensor w", "\"dtype\"", "not a string", NULL);
    /* duplicate tensor name */
    expect("{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
           zeros, 2, CELLM_ERR_FORMAT, "tensor w", "appears twice", NULL, NULL);
    /* shape / byte size mismatch */
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", zeros, 8,
           CELLM_ERR_FORMAT, "tensor w", "span 8 bytes", "F32 need 12", NULL);
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", zeros, 8,
           CELLM_ERR_FORMAT, "tensor w", "end before they begin", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", zeros, 2,
           CELLM_ERR_FORMAT, "tensor w", "3 elements of F4", "whole bytes", NULL);
    /* schema */
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", zeros, 4,
           CELLM_ERR_FORMAT, "shape", "is -1", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", zeros, 4,
           CELLM_ERR_FORMAT, "shape", "expected an integer", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
           zeros, 4, CELLM_ERR_FORMAT, "tensor w", "9 dimensions", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"U8\",\"shape\":[1048576,1048576,1048576,1048576],"
           "\"data_offsets\":[0,4]}}",
           zeros, 4, CELLM_ERR_FORMAT, "tensor w", "overflows", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", zeros, 4,
           CELLM_ERR_FORMAT, "tensor w", "\"shape\"", NULL, NULL);
    expect("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", zeros, 4,
           CELLM_ERR_FORMAT, "tensor w", "two integers", NULL, NULL);
    expect("{\"w\":[1]}", NULL, 0, CELLM_ERR_FORMAT, "tensor w", "expected an object", NULL, NULL);
    expect("{\"__metadata__\":{\"format\":5}}", NULL, 0, CELLM_ERR_FORMAT, "__metadata__.format",
           "expected a string", NULL, NULL);
    expect("{\"__metadata__\":[1]}", NULL, 0, CELLM_ERR_FORMAT, "__metadata__",
           "expected an object", NULL, NULL);
}

/* The same rules through cellm_st_open on files, and a file that does not exist. */
static void files_on_disk(void **state)
{
    (void)state;
    char dir[256], p[512];
    assert_true(tst_mkdtemp(dir, sizeof dir));
    struct cellm_st_file f;
    struct cellm_error err;
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    float v[3] = {1.5f, -2.0f, 0.25f};
    struct tst_tensor t = {
        .name = "w", .dtype = "F32", .ndim = 1, .shape = {3}, .data = v, .nbytes = sizeof v};
    assert_true(tst_st_write(p, &t, 1));
    assert_int_equal(cellm_st_open(p, &f, &err), CELLM_OK);
    assert_string_equal(f.path, p);
    float got;
    memcpy(&got, cellm_st_find(&f, "w")->data + 8, 4);
    assert_true(got == 0.25f);
    cellm_st_close(&f);

    /* truncated copy of the same file */
    FILE *fp = fopen(p, "r+b");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fclose(fp);
    assert_int_equal(truncate(p, len - 5), 0);
    assert_int_equal(cellm_st_open(p, &f, &err), CELLM_ERR_FORMAT);
    contains(err.msg, p);
    contains(err.msg, "truncated");
    /* truncated inside the header */
    assert_int_equal(truncate(p, 20), 0);
    assert_int_equal(cellm_st_open(p, &f, &err), CELLM_ERR_FORMAT);
    contains(err.msg, "past the end");
    /* empty file */
    assert_int_equal(truncate(p, 0), 0);
    assert_int_equal(cellm_st_open(p, &f, &err), CELLM_ERR_FORMAT);
    contains(err.msg, "too short");
    /* missing */
    snprintf(p, sizeof p, "%s/absent.safetensors", dir);
    assert_int_equal(cellm_st_open(p, &f, &err), CELLM_ERR_NOT_FOUND);
    contains(err.msg, "absent.safetensors");
    /* a directory is not a file */
    assert_int_equal(cellm_st_open(dir, &f, &err), CELLM_ERR_IO);
    tst_rm_rf(dir);
}

/* Every allocation of a parse failing in turn: NOMEM, never a crash or a leak. */
static void allocation_failures(void **state)
{
    (void)state;
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}";
    size_t size;
    uint8_t *img = tst_st_image(h, zeros, 8, &size);
    int ok = 0;
    for (long n = 0; n < 100 && !ok; n++) {
        struct cellm_st_file f;
        struct cellm_error err;
        cellm_alloc_fail_after(n);
        enum cellm_status st = cellm_st_parse(img, size, "x.safetensors", &f, &err);
        cellm_alloc_fail_after(-1);
        if (st == CELLM_OK) {
            ok = 1;
            assert_true(n > 0);
            assert_int_equal(f.n, 2);
            cellm_st_close(&f);
        } else if (st != CELLM_ERR_NOMEM) {
            fail_msg("allocation %ld failing gave status %d: %s", n, st, err.msg);
        }
    }
    assert_true(ok);
    free(img);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(well_formed),         cmocka_unit_test(malformed_container),
        cmocka_unit_test(malformed_entries),   cmocka_unit_test(files_on_disk),
        cmocka_unit_test(allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
