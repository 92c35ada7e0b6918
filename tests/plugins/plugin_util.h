/* plugin_util.h - test helpers: open an in-tree plugin .so directly and give it a default config;
 * for quantizers, the checks every quantizer test makes (run, decode, threads, fast paths, refusals).
 *
 * The tests call the plugin's ops without the registry, so they exercise the plugin alone. The
 * config block is filled from the plugin's own parameter table, by type, the way the host does.
 * Everything here is `static inline`: a test uses what it needs without unused-function warnings.
 */
#ifndef QH_TEST_PLUGIN_UTIL_H
#define QH_TEST_PLUGIN_UTIL_H

#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_plugin.h"

/* Loads `path` and returns its descriptor `name` of `kind`, or NULL (with a note on stderr). */
static inline const qh_plugin_desc *test_plugin_desc(const char *path, qh_kind kind, const char *name)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen %s: %s\n", path, dlerror());
        return NULL;
    }
    qh_plugin_entry_fn entry = (qh_plugin_entry_fn)(uintptr_t)dlsym(h, QH_PLUGIN_ENTRY_SYMBOL);
    const qh_library *lib = entry ? entry() : NULL;
    if (!lib || lib->magic != QH_PLUGIN_MAGIC || lib->abi_major != QH_ABI_MAJOR)
        return NULL;
    for (uint32_t i = 0; i < lib->n_plugins; i++)
        if (lib->plugins[i]->kind == kind && strcmp(lib->plugins[i]->name, name) == 0)
            return lib->plugins[i];
    return NULL;
}

/* Returns the library record of the already-loaded `path` (for name/version/license checks). */
static inline const qh_library *test_plugin_library(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return NULL;
    qh_plugin_entry_fn entry = (qh_plugin_entry_fn)(uintptr_t)dlsym(h, QH_PLUGIN_ENTRY_SYMBOL);
    return entry ? entry() : NULL;
}

static inline const qh_param *test_param(const qh_plugin_desc *d, const char *name)
{
    for (const qh_param *p = d->params; p && p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* calloc'ed config block with every parameter at its default. */
static inline void *test_config_defaults(const qh_plugin_desc *d)
{
    char *cfg = calloc(1, d->config_size ? d->config_size : 1);
    for (const qh_param *p = d->params; cfg && p && p->name; p++) {
        switch (p->type) {
        case QH_PARAM_INT: memcpy(cfg + p->offset, &p->def.i, sizeof(int64_t)); break;
        case QH_PARAM_DOUBLE: memcpy(cfg + p->offset, &p->def.d, sizeof(double)); break;
        case QH_PARAM_BOOL:
        case QH_PARAM_ENUM: {
            int v = (int)p->def.i;
            memcpy(cfg + p->offset, &v, sizeof v);
            break;
        }
        case QH_PARAM_STRING:
        case QH_PARAM_PATH: memcpy(cfg + p->offset, &p->def.s, sizeof(const char *)); break;
        }
    }
    return cfg;
}

/* Sets parameter `name` in cfg (the field types the host uses for each parameter type). */
static inline int test_set_int(const qh_plugin_desc *d, void *cfg, const char *name, int64_t v)
{
    const qh_param *p = test_param(d, name);
    if (!p)
        return -1;
    if (p->type == QH_PARAM_INT) {
        memcpy((char *)cfg + p->offset, &v, sizeof v);
    } else {
        int i = (int)v;
        memcpy((char *)cfg + p->offset, &i, sizeof i);
    }
    return 0;
}

static inline int test_set_double(const qh_plugin_desc *d, void *cfg, const char *name, double v)
{
    const qh_param *p = test_param(d, name);
    if (!p || p->type != QH_PARAM_DOUBLE)
        return -1;
    memcpy((char *)cfg + p->offset, &v, sizeof v);
    return 0;
}

static inline int test_set_str(const qh_plugin_desc *d, void *cfg, const char *name, const char *v)
{
    const qh_param *p = test_param(d, name);
    if (!p || (p->type != QH_PARAM_STRING && p->type != QH_PARAM_PATH))
        return -1;
    memcpy((char *)cfg + p->offset, &v, sizeof v);
    return 0;
}

/* Config with every parameter at its default except the int / bool / enum ones named, given as
 * (const char *name, int value) pairs; use through test_config_ints(d, name, value, ...). */
static inline void *test_config_ints_(const qh_plugin_desc *d, ...)
{
    void *cfg = test_config_defaults(d);
    va_list ap;
    va_start(ap, d);
    for (const char *name; (name = va_arg(ap, const char *)) != NULL;)
        test_set_int(d, cfg, name, va_arg(ap, int));
    va_end(ap);
    return cfg;
}
#define test_config_ints(d, ...) test_config_ints_((d), __VA_ARGS__, (const char *)NULL)

/* Every parameter documents itself: help and unit present (the --list-plugins contract). */
static inline int test_params_documented(const qh_plugin_desc *d)
{
    for (const qh_param *p = d->params; p && p->name; p++)
        if (!p->help || !p->help[0] || !p->unit || !p->unit[0])
            return 0;
    return 1;
}


/* The tensor name quantizer tests pass (messages that should, or should not, carry it). */
#define TEST_TENSOR_NAME "test.weight"

/* One quantizer call through the plugin's vtable: codes and parameters in q, values in deq. */
typedef struct test_qrun {
    qh_qtensor q;
    qh_tensor *deq;
} test_qrun;

static inline qh_status test_quantize(const qh_plugin_desc *d, void *cfg, const qh_tensor *w, test_qrun *out,
                                      qh_error *err)
{
    memset(out, 0, sizeof *out);
    out->deq = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    return d->ops.quantizer->quantize(cfg, TEST_TENSOR_NAME, w, &out->q, out->deq, err);
}

static inline void test_qrun_free(test_qrun *r)
{
    qh_qtensor_clear(&r->q);
    qh_tensor_free(r->deq);
}

/* ---- quantizer checks. Each takes the test's own quantize call (test_quantize bound to its
 * descriptor, or a create/quantize/destroy lifecycle), so they serve stateless and stateful plugins. */

typedef qh_status (*test_quantize_fn)(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err);

/* One quantize call that must succeed. */
static inline test_qrun test_quantize_ok(test_quantize_fn quantize, void *cfg, const qh_tensor *w)
{
    test_qrun r;
    qh_error err = {{0}};
    assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
    return r;
}

/* The same on `threads` threads (left set). */
static inline test_qrun test_quantize_threads(test_quantize_fn quantize, void *cfg, const qh_tensor *w, int threads)
{
    qh_set_threads(threads);
    return test_quantize_ok(quantize, cfg, w);
}

/* The plugin's dequantized values are exactly what the core reference decoder makes of its codes. */
static inline void test_check_decoder(const test_qrun *r)
{
    qh_tensor *dec = qh_tensor_new(QH_F32, r->deq->ndim, r->deq->shape, NULL);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(&r->q, dec, &err), QH_OK);
    assert_memory_equal(dec->data, r->deq->data, qh_tensor_nbytes(dec));
    qh_tensor_free(dec);
}

/* Which parts of two results test_assert_same compares byte for byte. */
enum {
    TEST_SAME_DEQ = 1 << 0,
    TEST_SAME_CODES = 1 << 1,
    TEST_SAME_SCALE = 1 << 2,
    TEST_SAME_CODEBOOK = 1 << 3,
    TEST_SAME_PERM = 1 << 4,
};

static inline void test_assert_same(const test_qrun *a, const test_qrun *b, unsigned what)
{
    if (what & TEST_SAME_DEQ)
        assert_memory_equal(a->deq->data, b->deq->data, qh_tensor_nbytes(a->deq));
    if (what & TEST_SAME_CODES)
        assert_memory_equal(a->q.codes->data, b->q.codes->data, qh_tensor_nbytes(a->q.codes));
    if (what & TEST_SAME_SCALE)
        assert_memory_equal(a->q.scale->data, b->q.scale->data, qh_tensor_nbytes(a->q.scale));
    if (what & TEST_SAME_CODEBOOK)
        assert_memory_equal(a->q.codebook->data, b->q.codebook->data, qh_tensor_nbytes(a->q.codebook));
    if (what & TEST_SAME_PERM)
        assert_memory_equal(a->q.perm->data, b->q.perm->data, qh_tensor_nbytes(a->q.perm));
}

/* 1 and 2 threads give the same bytes in the parts named by `what` (threads left at 2). */
static inline void test_assert_threads_identical(test_quantize_fn quantize, void *cfg, const qh_tensor *w,
                                                 unsigned what)
{
    test_qrun a = test_quantize_threads(quantize, cfg, w, 1);
    test_qrun b = test_quantize_threads(quantize, cfg, w, 2);
    test_assert_same(&a, &b, what);
    test_qrun_free(&a);
    test_qrun_free(&b);
}

/* How test_expect_reject checks the message beyond the text it must contain. */
enum {
    TEST_REJ_NAMED = 1 << 0,    /* names the tensor (the plugin adds it) */
    TEST_REJ_UNNAMED = 1 << 1,  /* does not (the host adds it) */
    TEST_REJ_NO_CODES = 1 << 2, /* nothing allocated on failure */
};

/* One quantize call that must fail with a message containing `want` (NULL: not checked). err keeps
 * the message; the caller passes the same one through a series of refusals. */
static inline void test_expect_reject(test_quantize_fn quantize, void *cfg, const qh_tensor *w, const char *want,
                                      unsigned flags, qh_error *err)
{
    test_qrun r;
    assert_int_not_equal(quantize(cfg, w, &r, err), QH_OK);
    if (want)
        assert_non_null(strstr(err->msg, want));
    if (flags & TEST_REJ_NAMED)
        assert_non_null(strstr(err->msg, TEST_TENSOR_NAME));
    if (flags & TEST_REJ_UNNAMED)
        assert_null(strstr(err->msg, TEST_TENSOR_NAME));
    if (flags & TEST_REJ_NO_CODES)
        assert_null(r.q.codes);
    qh_tensor_free(r.deq);
}

/* Code i of a codes tensor of any integer code type, as a number. */
static inline int64_t test_code_at(const qh_tensor *c, int64_t i)
{
    switch (c->dtype) {
    case QH_I8: return ((const int8_t *)c->data)[i];
    case QH_U8: return ((const uint8_t *)c->data)[i];
    case QH_I16: return ((const int16_t *)c->data)[i];
    default: return ((const uint16_t *)c->data)[i];
    }
}

/* ---- test tensors */

/* F32 tensor of `shape` holding v (numel values); NULL if it cannot be made. */
static inline qh_tensor *test_tensor_from(int32_t ndim, const int64_t *shape, const float *v)
{
    qh_tensor *w = qh_tensor_new(QH_F32, ndim, shape, NULL);
    if (w)
        memcpy(w->data, v, sizeof(float) * (size_t)qh_tensor_numel(w));
    return w;
}

/* Standard deviation of element i of a tensor whose last dimension is cols. */
typedef double (*test_sd_fn)(int64_t i, int64_t cols);

/* F32 tensor of normal draws from qh_rng seeded with `seed`, in element order, times sd (or times
 * sd_at(i, cols) when sd_at is given). */
static inline qh_tensor *test_gaussian(int32_t ndim, const int64_t *shape, uint64_t seed, double sd, test_sd_fn sd_at)
{
    qh_tensor *w = qh_tensor_new(QH_F32, ndim, shape, NULL);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w), cols = shape[ndim - 1];
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(qh_rng_normal(&r) * (sd_at ? sd_at(i, cols) : sd));
    return w;
}

/* ---- a plugin's reference and fast paths (compiled into the test), compared byte for byte over
 * four runs: the reference on 1 thread, then the fast path on 1 thread, on 2 threads, and on 2
 * threads without the dequantized values. */

enum { TEST_PATH_RUNS = 4, TEST_PATH_MAX_OUT = 6 };

/* One output buffer of a path: bytes calloc'ed per run, bytes compared with the reference run, and
 * whether it is the dequantized values (NULL in the last run, and not compared there). */
typedef struct test_path_out {
    size_t alloc, cmp;
    int values;
} test_path_out;

/* Runs the reference (fast = 0) or fast path of the test's case ctx into out[] (in spec order). */
typedef void (*test_path_fn)(void *ctx, int fast, void *const *out);

static inline void test_compare_paths(test_path_fn run, void *ctx, const test_path_out *spec, int n_out)
{
    assert_true(n_out <= TEST_PATH_MAX_OUT);
    void *buf[TEST_PATH_RUNS][TEST_PATH_MAX_OUT];
    for (int v = 0; v < TEST_PATH_RUNS; v++) {
        void *out[TEST_PATH_MAX_OUT];
        for (int i = 0; i < n_out; i++) {
            buf[v][i] = calloc(spec[i].alloc, 1);
            out[i] = v == TEST_PATH_RUNS - 1 && spec[i].values ? NULL : buf[v][i];
        }
        qh_set_threads(v >= 2 ? 2 : 1);
        run(ctx, v > 0, out);
    }
    for (int v = 1; v < TEST_PATH_RUNS; v++)
        for (int i = 0; i < n_out; i++)
            if (v < TEST_PATH_RUNS - 1 || !spec[i].values)
                assert_memory_equal(buf[0][i], buf[v][i], spec[i].cmp);
    for (int v = 0; v < TEST_PATH_RUNS; v++)
        for (int i = 0; i < n_out; i++)
            free(buf[v][i]);
    qh_set_threads(1);
}

#endif /* QH_TEST_PLUGIN_UTIL_H */
