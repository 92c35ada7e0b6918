/* qh_diag.c - GCC-style "<file>:<line>: error: <msg>" diagnostics, counted so that validation can
 * report every problem first and decide afterwards whether to go on. */
#include "qhost/qh_config.h"

#include <stdarg.h>
#include <stdio.h>

static void diag_emit(qh_diag *d, const char *severity, const char *file, int line, const char *fmt,
                      va_list ap)
{
    if (!d->out)
        return;
    if (line > 0)
        fprintf(d->out, "%s:%d: %s: ", file, line, severity);
    else
        fprintf(d->out, "%s: %s: ", file, severity);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    fflush(d->out);
}

void qh_diag_error(qh_diag *d, const char *file, int line, const char *fmt, ...)
{
    if (!d)
        return;
    d->n_errors++;
    va_list ap;
    va_start(ap, fmt);
    diag_emit(d, "error", file, line, fmt, ap);
    va_end(ap);
}

void qh_diag_warn(qh_diag *d, const char *file, int line, const char *fmt, ...)
{
    if (!d)
        return;
    d->n_warnings++;
    va_list ap;
    va_start(ap, fmt);
    diag_emit(d, "warning", file, line, fmt, ap);
    va_end(ap);
}
