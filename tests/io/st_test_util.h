/* st_test_util.h - temporary directories and raw files for the safetensors tests. */
#ifndef ST_TEST_UTIL_H
#define ST_TEST_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct st_tmpdir {
    char path[256];
} st_tmpdir;

static inline int st_tmpdir_make(st_tmpdir *d)
{
    const char *base = getenv("TMPDIR");
    snprintf(d->path, sizeof d->path, "%s/qh-st-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(d->path) ? 0 : -1;
}

/* Number of entries in the directory whose name contains `part` (NULL: all entries). */
static inline int st_tmpdir_count(const st_tmpdir *d, const char *part)
{
    DIR *dir = opendir(d->path);
    int n = 0;
    for (struct dirent *e; dir && (e = readdir(dir));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && (!part || strstr(e->d_name, part)))
            n++;
    if (dir)
        closedir(dir);
    return n;
}

/* The tests only ever create plain files in the directory. */
static inline void st_tmpdir_remove(st_tmpdir *d)
{
    DIR *dir = opendir(d->path);
    char file[512];
    for (struct dirent *e; dir && (e = readdir(dir));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(file, sizeof file, "%s/%s", d->path, e->d_name);
        unlink(file);
    }
    if (dir)
        closedir(dir);
    rmdir(d->path);
}

static inline const char *st_tmpdir_file(const st_tmpdir *d, const char *name, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s", d->path, name);
    return buf;
}

/* Replaces the file by a new one: truncating in place makes ext4 flush on close (auto_da_alloc),
 * which turns the fuzz loop's thousands of rewrites into seconds of disk waits. */
static inline int st_write_bytes(const char *path, const void *data, size_t size)
{
    unlink(path);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    size_t done = size ? fwrite(data, 1, size, fp) : 0;
    return fclose(fp) == 0 && done == size ? 0 : -1;
}

#endif /* ST_TEST_UTIL_H */
