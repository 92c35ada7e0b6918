/* qh_status.c - error messages with context added on the way up. */
#include "qhost/qh_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

qh_status qh_error_set(qh_error *err, qh_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return st;
}

void qh_error_prefix(qh_error *err, const char *fmt, ...)
{
    if (!err)
        return;
    char ctx[QH_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    /* "<ctx>: <old>", truncating the old message's tail if it does not fit */
    size_t cap = sizeof err->msg - 1, clen = strlen(ctx);
    if (clen + 2 > cap)
        clen = cap - 2;
    size_t olen = strnlen(err->msg, cap);
    if (clen + 2 + olen > cap)
        olen = cap - clen - 2;
    memmove(err->msg + clen + 2, err->msg, olen);
    memcpy(err->msg, ctx, clen);
    err->msg[clen] = ':';
    err->msg[clen + 1] = ' ';
    err->msg[clen + 2 + olen] = '\0';
}

void qh_error_clear(qh_error *err)
{
    if (err)
        err->msg[0] = '\0';
}

const char *qh_status_str(qh_status st)
{
    switch (st) {
    case QH_OK: return "ok";
    case QH_E_INVAL: return "invalid argument";
    case QH_E_NOMEM: return "out of memory";
    case QH_E_UNSUPPORTED: return "unsupported";
    case QH_E_IO: return "i/o error";
    case QH_E_FORMAT: return "malformed input";
    case QH_E_INTERNAL: return "internal error";
    case QH_E_ABORTED: return "aborted";
    case QH_E_CONFIG: return "configuration error";
    }
    return "unknown status";
}
