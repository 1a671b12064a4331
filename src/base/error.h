/*
 * error.h: how every internal function reports failure.
 *
 * A fallible function returns enum cellm_status and, on failure, formats one line into a
 * struct cellm_error supplied by the caller (NULL is allowed: the text is dropped). The
 * first failure writes the message; callers that add context use cellm_errf_prefix.
 */
#ifndef CELLM_BASE_ERROR_H
#define CELLM_BASE_ERROR_H

#include "cellm.h"

#if defined(__GNUC__)
#define CELLM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define CELLM_PRINTF(a, b)
#endif

/* Writes the message and returns st, so that `return cellm_errf(err, ST, ...)` reads well. */
enum cellm_status cellm_errf(struct cellm_error *err, enum cellm_status st, const char *fmt, ...)
    CELLM_PRINTF(3, 4);

/* Puts "prefix: " in front of the message already in err; returns st. */
enum cellm_status cellm_errf_prefix(struct cellm_error *err, enum cellm_status st, const char *fmt,
                                    ...) CELLM_PRINTF(3, 4);

/* Fail with a formatted message when cond holds. */
#define CELLM_FAIL_IF(cond, err, st, ...)                                                          \
    do {                                                                                           \
        if (cond) return cellm_errf((err), (st), __VA_ARGS__);                                     \
    } while (0)

/* Propagate a failure status. */
#define CELLM_TRY(expr)                                                                            \
    do {                                                                                           \
        enum cellm_status st_ = (expr);                                                            \
        if (st_ != CELLM_OK) return st_;                                                           \
    } while (0)

#endif
