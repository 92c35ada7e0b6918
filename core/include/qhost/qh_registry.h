/* qh_registry.h - host side of the plugin ABI: discovery, validation, and the host wrappers that
 * alone call through plugin vtables (applying defaults for NULL optional methods). */
#ifndef QH_REGISTRY_H
#define QH_REGISTRY_H

#include <stdbool.h>

#include "qh_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A validated plugin as the host keeps it: normalized, zero-extended copies of the plugin's
 * descriptor and ops, so fields a 1.0 plugin never declared read as NULL. */
typedef struct qh_plugin {
    qh_kind kind;
    const char *name;
    const char *summary;
    const char *help;
    const qh_param *params; /* never NULL: an empty table when the plugin declares none */
    size_t config_size;
    const char *version;    /* library version */
    const char *lib_name;
    uint16_t abi_major, abi_minor; /* what the library was built against */
    char path[4096];        /* the shared object it came from */
    union {
        qh_model_ops model;
        qh_dataset_ops dataset;
        qh_pruner_ops pruner;
        qh_quantizer_ops quantizer;
    } ops;
} qh_plugin;

typedef struct qh_registry qh_registry;

/* Hooks around dlopen/dlsym/dlerror so tests can feed descriptors without files (SQLite VFS style). */
typedef struct qh_dl_ops {
    void *(*open)(const char *path);
    void *(*sym)(void *handle, const char *symbol);
    const char *(*error)(void);
} qh_dl_ops;

qh_registry *qh_registry_new(void);
/* Same, with custom loader hooks (NULL = dlopen). */
qh_registry *qh_registry_new_with(const qh_dl_ops *dl);
/* Frees the registry's tables; loaded libraries stay mapped until the process exits. */
void qh_registry_free(qh_registry *r);

/* Loads one shared object. On rejection returns non-OK and err holds exactly one line
 * "<path>: <reason>"; the line is also kept in the rejection list. */
qh_status qh_registry_load_file(qh_registry *r, const char *path, qh_error *err);
/* Loads every qh-*.so under dir (recursing up to 3 levels). Rejections are recorded, not fatal.
 * A missing directory is not an error. */
qh_status qh_registry_add_dir(qh_registry *r, const char *dir, qh_error *err);
/* The whole search path, in order: extra_dirs (from --plugin-dir), $QHOST_PLUGIN_PATH
 * (':'-separated), the compiled-in plugin directory, and <directory of exe>/plugins.
 * A plugin whose kind and name were already registered from an earlier directory is skipped. */
qh_status qh_registry_scan(qh_registry *r, const char *const *extra_dirs, int n_extra, const char *exe_path,
                           qh_error *err);

int qh_registry_count(const qh_registry *r);
const qh_plugin *qh_registry_get(const qh_registry *r, int i);
const qh_plugin *qh_registry_find(const qh_registry *r, qh_kind kind, const char *name);
/* Comma-separated names of the plugins of one kind, sorted: "idx, synthetic". */
void qh_registry_names(const qh_registry *r, qh_kind kind, char *buf, size_t size);
int qh_registry_n_rejections(const qh_registry *r);
const char *qh_registry_rejection(const qh_registry *r, int i);

const char *qh_kind_name(qh_kind kind); /* "model", "dataset", "pruner", "quantizer" */
bool qh_kind_from_name(const char *name, qh_kind *out);

/* ---------------------------------------------------------------- host wrappers */

qh_status qh_model_build(const qh_plugin *p, const void *cfg, const qh_model_input *in, qh_graph *g,
                         qh_error *err);

typedef struct qh_dataset {
    const qh_plugin *plugin;
    void *state;
    qh_dataset_info info;
} qh_dataset;

qh_status qh_dataset_open(qh_dataset *ds, const qh_plugin *p, const void *cfg, uint64_t seed, qh_error *err);
void qh_dataset_close(qh_dataset *ds);
qh_status qh_dataset_load(qh_dataset *ds, qh_split split, const int64_t *idx, int64_t n, float *x,
                          int32_t *y, qh_error *err);
/* No-op when the plugin has no augment method. */
qh_status qh_dataset_augment(qh_dataset *ds, qh_rng *rng, float *x, int64_t n, qh_error *err);

typedef struct qh_pruner {
    const qh_plugin *plugin;
    void *state;
} qh_pruner;

qh_status qh_pruner_create(qh_pruner *pr, const qh_plugin *p, const void *cfg, qh_error *err);
void qh_pruner_destroy(qh_pruner *pr);
qh_status qh_pruner_prune(qh_pruner *pr, qh_prune_target *targets, int32_t n, double sparsity, qh_error *err);

typedef struct qh_quantizer {
    const qh_plugin *plugin;
    void *state;
} qh_quantizer;

qh_status qh_quantizer_create(qh_quantizer *qz, const qh_plugin *p, const void *cfg, qh_error *err);
void qh_quantizer_destroy(qh_quantizer *qz);
/* Default when the plugin has no accepts(): F32 tensors of rank >= 2. */
bool qh_quantizer_accepts(qh_quantizer *qz, const char *name, const qh_tensor *w);
qh_status qh_quantizer_quantize(qh_quantizer *qz, const char *name, const qh_tensor *w, qh_qtensor *q,
                                qh_tensor *deq, qh_error *err);

/* --- 1.2: data-aware quantizers --- */
/* The QH_CALIB_* bits the plugin needs to quantize w; 0 (data-free) without a calib_needs method. */
uint32_t qh_quantizer_calib_needs(qh_quantizer *qz, const char *name, const qh_tensor *w);
/* quantize_calib with the checks of qh_quantizer_quantize, on one layer's calibration data; the
 * data the plugin asked for must be present, and pruned weights (c->mask) must come back 0. */
qh_status qh_quantizer_quantize_calib(qh_quantizer *qz, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq,
                                      qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_REGISTRY_H */
