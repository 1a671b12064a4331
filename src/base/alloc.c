/*
 * alloc.c: malloc wrappers with per-thread failure injection for tests.
 */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

static _Thread_local long fail_after = -1;
static _Thread_local size_t bytes_requested;

size_t cellm_alloc_bytes(void)
{
    return bytes_requested;
}

void cellm_alloc_fail_after(long n)
{
    fail_after = n;
}

static int should_fail_n(size_t n)
{
    bytes_requested += n;
    if (fail_after < 0) return 0;
    if (fail_after == 0) return 1;
    fail_after--;
    return 0;
}

#define should_fail() should_fail_n(0)

void *cellm_malloc(size_t n)
{
    if (should_fail_n(n)) return NULL;
    return malloc(n ? n : 1);
}

void *cellm_calloc(size_t count, size_t size)
{
    if (should_fail_n(count * size)) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *cellm_realloc(void *p, size_t n)
{
    if (should_fail_n(n)) return NULL;
    return realloc(p, n ? n : 1);
}

void cellm_free(void *p)
{
    free(p);
}

char *cellm_strndup(const char *s, size_t n)
{
    char *d = cellm_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

char *cellm_strdup(const char *s)
{
    return cellm_strndup(s, strlen(s));
}

void *cellm_aligned_alloc(size_t align, size_t n)
{
    if (should_fail_n(n)) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : 1) != 0) return NULL;
    return p;
}
