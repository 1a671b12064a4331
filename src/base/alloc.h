/*
 * alloc.h: the one allocation wrapper of the library.
 *
 * All library allocations go through these so that tests can make the n-th allocation
 * fail (cellm_alloc_fail_after) and check that every path reports CELLM_ERR_NOMEM and
 * leaks nothing. The failure counter is per thread, so tests on one thread do not
 * disturb others; production code never sets it.
 */
#ifndef CELLM_BASE_ALLOC_H
#define CELLM_BASE_ALLOC_H

#include <stddef.h>

void *cellm_malloc(size_t n);
void *cellm_calloc(size_t count, size_t size);
void *cellm_realloc(void *p, size_t n);
void cellm_free(void *p);
char *cellm_strdup(const char *s);
char *cellm_strndup(const char *s, size_t n);

/* Aligned allocation (align a power of two >= sizeof(void*)); free with cellm_free. */
void *cellm_aligned_alloc(size_t align, size_t n);

/* Test hook: after `n` more successful allocations on this thread, every allocation
 * fails; n < 0 switches failure injection off. */
void cellm_alloc_fail_after(long n);

/* Test hook: bytes requested by this thread so far (monotonic; an upper bound on what
 * this thread's allocations can have held at once). */
size_t cellm_alloc_bytes(void);

#endif
