/* qh_fileio.h - atomic output files: write to "<path>.tmp.<pid>", fsync, rename over <path>.
 * An interrupted run never leaves a truncated artifact under the final name. */
#ifndef QH_FILEIO_H
#define QH_FILEIO_H

#include <stdio.h>

#include "qh_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qh_atomic_file {
    FILE *fp;
    char path[4096];
    char tmp_path[4160];
} qh_atomic_file;

qh_status qh_atomic_open(qh_atomic_file *af, const char *path, qh_error *err);
/* Flushes, closes and renames; on any write error removes the temporary and fails. */
qh_status qh_atomic_commit(qh_atomic_file *af, qh_error *err);
/* Closes and removes the temporary (safe to call after commit: then a no-op). */
void qh_atomic_abort(qh_atomic_file *af);
/* Whole buffer in one go. */
qh_status qh_atomic_write(const char *path, const void *data, size_t size, qh_error *err);
/* mkdir -p */
qh_status qh_mkdir_p(const char *dir, qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_FILEIO_H */
