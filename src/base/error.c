/*
 * error.c - status names and the thread-local error message.
 */
#include "base/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>



static _Thread_local char tl_msg[CUA_MSG_CAP];

static const char *const status_names[CUA_STATUS_COUNT] = {
    [CUA_OK] = "CUA_OK",
    [CUA_ERR_INVALID_ARG] = "CUA_ERR_INVALID_ARG",
    [CUA_ERR_OUT_OF_MEMORY] = "CUA_ERR_OUT_OF_MEMORY",
    [CUA_ERR_LIMIT] = "CUA_ERR_LIMIT",
    [CUA_ERR_INVALID_POINTER] = "CUA_ERR_INVALID_POINTER",
    [CUA_ERR_DOUBLE_FREE] = "CUA_ERR_DOUBLE_FREE",
    [CUA_ERR_DESTROYED] = "CUA_ERR_DESTROYED",
    [CUA_ERR_BUSY] = "CUA_ERR_BUSY",
    [CUA_ERR_BACKEND] = "CUA_ERR_BACKEND",
    [CUA_ERR_NOT_SUPPORTED] = "CUA_ERR_NOT_SUPPORTED",
    [CUA_ERR_NO_DEVICE] = "CUA_ERR_NO_DEVICE",
    [CUA_ERR_CONFIG] = "CUA_ERR_CONFIG",
    [CUA_ERR_CORRUPT] = "CUA_ERR_CORRUPT",
    [CUA_ERR_IO] = "CUA_ERR_IO",
    [CUA_ERR_NOT_FOUND] = "CUA_ERR_NOT_FOUND",
    [CUA_ERR_OFFLOADED] = "CUA_ERR_OFFLOADED",
};

const char *cua_status_name(cua_status status)
{
    if ((unsigned)status >= CUA_STATUS_COUNT) return "CUA_STATUS_UNKNOWN";
    return status_names[status];
}

const char *cua_last_error(void) { return tl_msg; }

void _cua_error_stash(char *buf, size_t cap)
{
    snprintf(buf, cap, "%s", tl_msg);
}

void _cua_error_restore(const char *buf)
{
    snprintf(tl_msg, sizeof tl_msg, "%s", buf);
}

static void vset(const char *fmt, va_list ap, const char *keep)
{
    vsnprintf(tl_msg, CUA_MSG_CAP, fmt, ap);
    if (!keep || !*keep) return;
    size_t used = strlen(tl_msg);
    if (used + 3 >= CUA_MSG_CAP) return;
    size_t k = strnlen(keep, CUA_MSG_CAP - used - 3);
    tl_msg[used] = ':';
    tl_msg[used + 1] = ' ';
    memcpy(tl_msg + used + 2, keep, k);
    tl_msg[used + 2 + k] = 0;
}

cua_status _cua_error(cua_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap, NULL);
    va_end(ap);
    return status;
}

cua_status _cua_error_wrap(cua_status status, const char *fmt, ...)
{
    char prev[CUA_MSG_CAP];
    memcpy(prev, tl_msg, sizeof prev);
    va_list ap;
    va_start(ap, fmt);
    vset(fmt, ap, prev);
    va_end(ap);
    return status;
}

const char *_cua_fmt_bytes(char *buf, size_t cap, uint64_t bytes)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes;
    unsigned u = 0;
    while (v >= 1024.0 && u + 1 < CUA_ARRAY_LEN(units)) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, cap, "%.1f %s", v, units[u]);
    return buf;
}

void _cua_assert_fail(const char *expr, const char *file, int line)
{
    /* An internal invariant is broken: continuing could hand out memory that is
     * in use. Debug builds stop here; the message is kept for a debugger. */
    _cua_error(CUA_ERR_CORRUPT, "cuarena assertion failed: %s (%s:%d)", expr, file, line);
    abort();
}

void _cua_put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*len < cap ? buf + *len : NULL, *len < cap ? cap - *len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) *len += (size_t)n;
}
