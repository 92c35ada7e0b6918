/* fake_registry.c - in-memory plugin libraries for the config tests (see fake_registry.h). */
#include "fake_registry.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- methods (never called here) */

static qh_status tiny_build(const void *cfg, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    (void)cfg, (void)in, (void)g;
    return qh_error_set(err, QH_E_UNSUPPORTED, "fake model");
}

static qh_status toy_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err)
{
    (void)cfg, (void)seed, (void)state, (void)info;
    return qh_error_set(err, QH_E_UNSUPPORTED, "fake dataset");
}

static void toy_close(void *state) { (void)state; }

static qh_status toy_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    (void)state, (void)split, (void)idx, (void)n, (void)x, (void)y;
    return qh_error_set(err, QH_E_UNSUPPORTED, "fake dataset");
}

static qh_status magnitude_prune(void *state, qh_prune_target *t, int32_t n, double sparsity, qh_error *err)
{
    (void)state, (void)t, (void)n, (void)sparsity;
    return qh_error_set(err, QH_E_UNSUPPORTED, "fake pruner");
}

static qh_status linear_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                                 qh_error *err)
{
    (void)state, (void)name, (void)w, (void)q, (void)deq;
    return qh_error_set(err, QH_E_UNSUPPORTED, "fake quantizer");
}

/* ---------------------------------------------------------------- descriptors */

static const char *const act_choices[] = {"relu", "tanh", NULL};
static const qh_param tiny_params[] = {
    {"hidden", QH_PARAM_INT, offsetof(tiny_cfg, hidden), {.i = 0}, 1, 4096, NULL,
     QH_PF_REQUIRED | QH_PF_HAS_MIN | QH_PF_HAS_MAX, "units", "hidden width"},
    QH_P_ENUM("act", tiny_cfg, act, 0, act_choices, "activation"),
    {"dropout", QH_PARAM_DOUBLE, offsetof(tiny_cfg, dropout), {.d = 0}, 0, 0.999, NULL,
     QH_PF_HAS_MIN | QH_PF_HAS_MAX, "fraction", "dropout rate"},
    QH_P_BOOL("bias", tiny_cfg, bias, 1, "use biases"),
    QH_P_STRING("init", tiny_cfg, init, "kaiming", "initializer"),
    QH_P_END,
};
static const qh_model_ops tiny_ops = {sizeof(qh_model_ops), tiny_build};
static const qh_plugin_desc tiny_desc = {sizeof(qh_plugin_desc), QH_KIND_MODEL, "tiny", "a tiny model", NULL,
                                         tiny_params, sizeof(tiny_cfg), {.model = &tiny_ops}};

static const qh_param wide_params[] = {
    QH_P_INT("width", wide_cfg, width, 64, 1, 4096, "units", "width"),
    QH_P_END,
};
static const qh_plugin_desc wide_desc = {sizeof(qh_plugin_desc), QH_KIND_MODEL, "wide", "a wide model", NULL,
                                         wide_params, sizeof(wide_cfg), {.model = &tiny_ops}};

static const qh_param toy_params[] = {
    QH_P_PATH("root", toy_cfg, root, NULL, "data directory"),
    QH_P_INT("n", toy_cfg, n, 100, 1, 1000000, "samples", "samples to generate"),
    QH_P_DOUBLE("noise", toy_cfg, noise, 0.1, 0, 1, NULL, "label noise"),
    QH_P_INT("train_limit", toy_cfg, train_limit, 5, 0, 10, "samples", "shadowed by the host key"),
    QH_P_END,
};
static const qh_dataset_ops toy_ops = {sizeof(qh_dataset_ops), toy_open, toy_close, toy_load, NULL};
static const qh_plugin_desc toy_desc = {sizeof(qh_plugin_desc), QH_KIND_DATASET, "toy", "a toy dataset", NULL,
                                        toy_params, sizeof(toy_cfg), {.dataset = &toy_ops}};

static const char *const scope_choices[] = {"layer", "global", NULL};
static const qh_param magnitude_params[] = {
    QH_P_ENUM("scope", magnitude_cfg, scope, 0, scope_choices, "per layer or over all targets"),
    QH_P_END,
};
static const qh_pruner_ops magnitude_ops = {sizeof(qh_pruner_ops), NULL, NULL, magnitude_prune, NULL};
static const qh_plugin_desc magnitude_desc = {sizeof(qh_plugin_desc), QH_KIND_PRUNER, "magnitude", "|w|", NULL,
                                              magnitude_params, sizeof(magnitude_cfg), {.pruner = &magnitude_ops}};

static const char *const gran_choices[] = {"tensor", "channel", NULL};
static const qh_param linear_params[] = {
    QH_P_INT("bits", linear_cfg, bits, 8, 2, 8, "bits", "code width"),
    QH_P_ENUM("granularity", linear_cfg, granularity, 0, gran_choices, "scale granularity"),
    QH_P_BOOL("symmetric", linear_cfg, symmetric, 1, "zero point at 0"),
    QH_P_END,
};
static const qh_quantizer_ops linear_ops = {.struct_size = sizeof(qh_quantizer_ops), .quantize = linear_quantize};
static const qh_plugin_desc linear_desc = {sizeof(qh_plugin_desc), QH_KIND_QUANTIZER, "linear", "uniform", NULL,
                                           linear_params, sizeof(linear_cfg), {.quantizer = &linear_ops}};

/* ---------------------------------------------------------------- libraries and the loader seam */

static const qh_plugin_desc *const model_plugins[] = {&tiny_desc, &wide_desc};
static const qh_plugin_desc *const other_plugins[] = {&toy_desc, &magnitude_desc, &linear_desc};

static const qh_library model_lib = {QH_LIBRARY_HEADER, .name = "fake-models", .version = "1.0.0",
                                     .license = "MIT", .n_plugins = 2, .plugins = model_plugins};
static const qh_library other_lib = {QH_LIBRARY_HEADER, .name = "fake-others", .version = "1.0.0",
                                     .license = "MIT", .n_plugins = 3, .plugins = other_plugins};

static const qh_library *model_entry(void) { return &model_lib; }
static const qh_library *other_entry(void) { return &other_lib; }

/* The "handle" is the entry function itself. */
static void *fake_open(const char *path)
{
    qh_plugin_entry_fn fn = strcmp(path, "fake-models.so") == 0 ? model_entry
                            : strcmp(path, "fake-others.so") == 0 ? other_entry : NULL;
    void *h = NULL;
    if (fn)
        memcpy(&h, &fn, sizeof h);
    return h;
}

static void *fake_sym(void *handle, const char *symbol)
{
    return strcmp(symbol, QH_PLUGIN_ENTRY_SYMBOL) == 0 ? handle : NULL;
}

static const char *fake_error(void) { return "no such fake library"; }

static const qh_dl_ops fake_dl = {fake_open, fake_sym, fake_error};

qh_registry *fake_registry_new(void)
{
    qh_registry *reg = qh_registry_new_with(&fake_dl);
    qh_error err;
    const char *libs[] = {"fake-models.so", "fake-others.so"};
    for (int i = 0; reg && i < 2; i++) {
        if (qh_registry_load_file(reg, libs[i], &err) != QH_OK) {
            fprintf(stderr, "fake registry: %s\n", err.msg);
            qh_registry_free(reg);
            return NULL;
        }
    }
    return reg;
}
