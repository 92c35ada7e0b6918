/* qh_fileio.c - atomic file output (temporary + rename) and mkdir -p. */
#define _POSIX_C_SOURCE 200809L
#include "qhost/qh_fileio.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qh_status qh_atomic_open(qh_atomic_file *af, const char *path, qh_error *err)
{
    memset(af, 0, sizeof *af);
    if (strlen(path) >= sizeof af->path)
        return qh_error_set(err, QH_E_INVAL, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->fp = fopen(af->tmp_path, "wb");
    if (!af->fp)
        return qh_error_set(err, QH_E_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
    return QH_OK;
}

qh_status qh_atomic_commit(qh_atomic_file *af, qh_error *err)
{
    if (!af->fp)
        return qh_error_set(err, QH_E_INTERNAL, "%s: not open", af->path);
    int bad = ferror(af->fp);
    if (fflush(af->fp) != 0)
        bad = 1;
    if (!bad && fsync(fileno(af->fp)) != 0 && errno != EINVAL)
        bad = 1;
    int saved = errno;
    if (fclose(af->fp) != 0)
        bad = 1;
    af->fp = NULL;
    if (bad) {
        remove(af->tmp_path);
        return qh_error_set(err, QH_E_IO, "%s: write failed: %s", af->path, strerror(saved ? saved : EIO));
    }
    if (rename(af->tmp_path, af->path) != 0) {
        saved = errno;
        remove(af->tmp_path);
        return qh_error_set(err, QH_E_IO, "%s: cannot rename into place: %s", af->path, strerror(saved));
    }
    return QH_OK;
}

void qh_atomic_abort(qh_atomic_file *af)
{
    if (af->fp) {
        fclose(af->fp);
        af->fp = NULL;
        remove(af->tmp_path);
    }
}

qh_status qh_atomic_write(const char *path, const void *data, size_t size, qh_error *err)
{
    qh_atomic_file af;
    qh_status st = qh_atomic_open(&af, path, err);
    if (st != QH_OK)
        return st;
    if (size && fwrite(data, 1, size, af.fp) != size) {
        qh_atomic_abort(&af);
        return qh_error_set(err, QH_E_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return qh_atomic_commit(&af, err);
}

qh_status qh_mkdir_p(const char *dir, qh_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf)
        return qh_error_set(err, QH_E_INVAL, "%s: path too long", dir);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return qh_error_set(err, QH_E_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
        return qh_error_set(err, QH_E_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return qh_error_set(err, QH_E_IO, "%s: not a directory", buf);
    return QH_OK;
}
