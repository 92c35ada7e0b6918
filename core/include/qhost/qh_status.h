/* qh_status.h - status codes and the error out-parameter shared by host and plugins.
 *
 * Every fallible function returns a qh_status (0 = ok, negative = failure) and takes a
 * qh_error * last. Messages are written into a fixed buffer so no allocation crosses the
 * plugin boundary; callers add context on the way up with qh_error_prefix(), so a user reads
 *   stage [int8] (quantizer linear): tensor fc1.weight: 84 columns not divisible by block 32
 */
#ifndef QH_STATUS_H
#define QH_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qh_status {
    QH_OK = 0,
    QH_E_INVAL = -1,       /* bad argument or value supplied by the user */
    QH_E_NOMEM = -2,       /* allocation failed */
    QH_E_UNSUPPORTED = -3, /* valid request the component cannot serve */
    QH_E_IO = -4,          /* file system or stream failure */
    QH_E_FORMAT = -5,      /* malformed file contents */
    QH_E_INTERNAL = -6,    /* broken invariant inside qhost */
    QH_E_ABORTED = -7,     /* interrupted (signal, user) */
    QH_E_CONFIG = -8       /* pipeline/INI configuration error (exit code 2) */
} qh_status;

#define QH_ERROR_MSG_MAX 512

typedef struct qh_error {
    char msg[QH_ERROR_MSG_MAX];
} qh_error;

#if defined(__GNUC__) || defined(__clang__)
#define QH_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))
#else
#define QH_PRINTF(fmt_idx, arg_idx)
#endif

/* Writes the message (err may be NULL) and returns st, so `return qh_error_set(err, QH_E_INVAL, ...)`. */
qh_status qh_error_set(qh_error *err, qh_status st, const char *fmt, ...) QH_PRINTF(3, 4);
/* Prepends "<context>: " to the message already in err. */
void qh_error_prefix(qh_error *err, const char *fmt, ...) QH_PRINTF(2, 3);
/* Resets the message to the empty string. */
void qh_error_clear(qh_error *err);
/* A short fixed name for a status ("invalid argument", ...). */
const char *qh_status_str(qh_status st);

#ifdef __cplusplus
}
#endif
#endif /* QH_STATUS_H */
