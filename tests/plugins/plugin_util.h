/* plugin_util.h - test helpers: open an in-tree plugin .so directly and give it a default config.
 *
 * The tests call the plugin's ops without the registry, so they exercise the plugin alone. The
 * config block is filled from the plugin's own parameter table, by type, the way the host does.
 */
#ifndef QH_TEST_PLUGIN_UTIL_H
#define QH_TEST_PLUGIN_UTIL_H

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Every parameter documents itself: help and unit present (the --list-plugins contract). */
static inline int test_params_documented(const qh_plugin_desc *d)
{
    for (const qh_param *p = d->params; p && p->name; p++)
        if (!p->help || !p->help[0] || !p->unit || !p->unit[0])
            return 0;
    return 1;
}


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
    return d->ops.quantizer->quantize(cfg, "test.weight", w, &out->q, out->deq, err);
}

static inline void test_qrun_free(test_qrun *r)
{
    qh_qtensor_clear(&r->q);
    qh_tensor_free(r->deq);
}

#endif /* QH_TEST_PLUGIN_UTIL_H */
