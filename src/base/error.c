/*
 * error.c: formatting of error messages and the static status texts.
 */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cellm_status_str(enum cellm_status st)
{
    switch (st) {
    case CELLM_OK:
        return "ok";
    case CELLM_ERR_IO:
        return "i/o error";
    case CELLM_ERR_FORMAT:
        return "format error";
    case CELLM_ERR_UNSUPPORTED:
        return "unsupported";
    case CELLM_ERR_NOMEM:
        return "out of memory";
    case CELLM_ERR_ARG:
        return "invalid argument";
    case CELLM_ERR_NOT_FOUND:
        return "not found";
    case CELLM_ERR_DEVICE:
        return "device error";
    case CELLM_ERR_RANGE:
        return "out of range";
    case CELLM_ERR_CANCELLED:
        return "cancelled";
    }
    return "unknown status";
}

enum cellm_status cellm_errf(struct cellm_error *err, enum cellm_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

enum cellm_status cellm_errf_prefix(struct cellm_error *err, enum cellm_status st, const char *fmt,
                                    ...)
{
    if (err) {
        char prefix[CELLM_ERROR_MAX], old[CELLM_ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = 0;
        snprintf(err->msg, sizeof err->msg, "%.240s: %.260s", prefix, old);
    }
    return st;
}
