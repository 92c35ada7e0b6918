/* pipeline_util.h - test helpers for the tests that run whole INI pipelines (graph, calib): a temp
 * dir, a registry of in-tree plugins, an INI file written into the dir, a run of it, and the run's
 * files read back. Header-only, every helper static inline: a test uses the ones it needs.
 *
 * The caller keeps its own temp dir and registry; helpers take them as arguments. */
#ifndef QH_TEST_PIPELINE_UTIL_H
#define QH_TEST_PIPELINE_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_engine.h"

/* Makes "/tmp/<prefix>-XXXXXX" in buf; 0, or -1 when mkdtemp fails. */
static inline int pu_tmpdir_make(char *buf, size_t size, const char *prefix)
{
    snprintf(buf, size, "/tmp/%s-XXXXXX", prefix);
    return mkdtemp(buf) ? 0 : -1;
}

/* rm -rf dir; 0 or -1 (a cmocka group teardown's result). */
static inline int pu_tmpdir_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A registry with the plugin libraries `libs` (paths below QH_BUILD_ROOT, NULL-terminated) loaded,
 * or NULL with the error on stderr. */
static inline qh_registry *pu_registry(const char *const *libs)
{
    qh_error err;
    qh_registry *reg = qh_registry_new();
    for (size_t i = 0; libs[i]; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s%s", QH_BUILD_ROOT, libs[i]);
        if (qh_registry_load_file(reg, path, &err) != QH_OK) {
            fprintf(stderr, "%s\n", err.msg);
            qh_registry_free(reg);
            return NULL;
        }
    }
    return reg;
}

/* A cmocka group setup's work: the temp dir "/tmp/<prefix>-XXXXXX" in dir and a registry of `libs` (as
 * pu_registry) in *reg. 0, or -1 when either fails. */
static inline int pu_setup(char *dir, size_t size, const char *prefix, const char *const *libs, qh_registry **reg)
{
    if (pu_tmpdir_make(dir, size, prefix) != 0)
        return -1;
    *reg = pu_registry(libs);
    return *reg ? 0 : -1;
}

/* The matching teardown: frees reg, removes dir. */
static inline int pu_teardown(const char *dir, qh_registry *reg)
{
    qh_registry_free(reg);
    return pu_tmpdir_remove(dir);
}

/* Writes <dir>/<name>.ini: `head` formatted with the arguments, then `rest` as it is. Returns the
 * path (a static buffer, overwritten by the next call). */
static inline const char *pu_write_ini(const char *dir, const char *name, const char *rest, const char *head, ...)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s.ini", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    va_list ap;
    va_start(ap, head);
    vfprintf(f, head, ap);
    va_end(ap);
    fputs(rest, f);
    fclose(f);
    return path;
}

/* Loads ini; its diagnostics go to diag_out (NULL: stderr). NULL when it does not load. */
static inline qh_pipeline_config *pu_config_load(const qh_registry *reg, const char *ini, FILE *diag_out)
{
    qh_diag diag = {.out = diag_out ? diag_out : stderr};
    return qh_pipeline_config_load(ini, reg, NULL, 0, &diag);
}

/* Runs pc into out. With stop_var (a test hook such as QHOST_TEST_STOP_AFTER_EPOCH), that variable
 * holds `stop` during the run (unset when stop is NULL) and is unset afterwards; without it the
 * environment is left alone. */
static inline qh_status pu_config_run(const qh_pipeline_config *pc, const qh_registry *reg, const char *out,
                                      bool resume, const char *stop_var, const char *stop, qh_error *err)
{
    if (stop_var) {
        if (stop)
            setenv(stop_var, stop, 1);
        else
            unsetenv(stop_var);
    }
    qh_run_options opt = {.output_dir = out, .resume = resume};
    qh_status st = qh_pipeline_run(pc, reg, &opt, err);
    if (stop_var)
        unsetenv(stop_var);
    return st;
}

/* Loads and runs ini (see the two above); a config that does not load returns QH_E_CONFIG. */
static inline qh_status pu_run_ini(const qh_registry *reg, const char *ini, const char *out, bool resume,
                                   FILE *diag_out, const char *stop_var, const char *stop, qh_error *err)
{
    qh_pipeline_config *pc = pu_config_load(reg, ini, diag_out);
    if (!pc)
        return QH_E_CONFIG;
    qh_status st = pu_config_run(pc, reg, out, resume, stop_var, stop, err);
    qh_pipeline_config_free(pc);
    return st;
}

/* The whole file, NUL-terminated (malloc'ed); its size in *size when size is not NULL. A missing
 * file fails the test. */
static inline char *pu_slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("missing %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (size)
        *size = (size_t)n;
    return buf;
}

/* <dir_a>/<file> and <dir_b>/<file> hold the same bytes. */
static inline void pu_assert_same_file(const char *dir_a, const char *dir_b, const char *file)
{
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/%s", dir_a, file);
    snprintf(pb, sizeof pb, "%s/%s", dir_b, file);
    size_t na, nb;
    char *x = pu_slurp(pa, &na), *y = pu_slurp(pb, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

/* <dir>/metrics.json without its "wall_s" lines (times differ from run to run); malloc'ed. */
static inline char *pu_metrics_sans_times(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    char *text = pu_slurp(path, NULL), *out = text;
    for (char *line = text, *next; *line; line = next) {
        next = strchr(line, '\n');
        next = next ? next + 1 : line + strlen(line);
        if (!memmem(line, (size_t)(next - line), "\"wall_s\"", 8)) {
            memmove(out, line, (size_t)(next - line));
            out += next - line;
        }
    }
    *out = '\0';
    return text;
}

/* The value of `key` in the metrics.json block of stage `stage`, as written (10 digits): the first
 * "key": after the stage's "name". */
static inline double pu_metric(const char *dir, const char *stage, const char *key)
{
    char path[1024], pat[128];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    char *text = pu_slurp(path, NULL);
    snprintf(pat, sizeof pat, "\"name\": \"%s\"", stage);
    char *at = strstr(text, pat);
    if (!at)
        fail_msg("no stage %s in %s", stage, path);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    char *v = strstr(at, pat);
    assert_non_null(v);
    double x = strtod(v + strlen(pat), NULL);
    free(text);
    return x;
}

#endif /* QH_TEST_PIPELINE_UTIL_H */
