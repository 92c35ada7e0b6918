/* test_registry_seam.c - the registry fed through its qh_dl_ops seam with in-memory libraries:
 * every descriptor and parameter-table rejection with its exact message, and the normalization
 * of vtables to the host's layout, without building a file per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_registry.h"

#define PATH "mem/qh-seam.so"

/* ---------------------------------------------------------------- the seam */

static const qh_library *g_library; /* what the one fake file's entry point returns */
static const char *g_error;         /* what the fake dlerror() reports next */

static const qh_library *seam_entry(void) { return g_library; }

static void *seam_open(const char *path)
{
    if (strcmp(path, PATH) == 0)
        return &g_library;
    g_error = "mem/missing.so: no such fake file";
    return NULL;
}

static void *seam_sym(void *handle, const char *symbol)
{
    (void)handle;
    if (strcmp(symbol, QH_PLUGIN_ENTRY_SYMBOL) != 0)
        return NULL;
    void *p;
    qh_plugin_entry_fn fn = seam_entry;
    memcpy(&p, &fn, sizeof p); /* the reverse of what the registry does with dlsym's result */
    return p;
}

static const char *seam_error(void)
{
    const char *e = g_error;
    g_error = NULL;
    return e;
}

static const qh_dl_ops seam = {seam_open, seam_sym, seam_error};

/* ---------------------------------------------------------------- plugins to break */

static qh_status m_build(const void *cfg, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    (void)cfg, (void)in, (void)g, (void)err;
    return QH_OK;
}
static qh_status d_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err)
{
    (void)cfg, (void)seed, (void)state, (void)info, (void)err;
    return QH_OK;
}
static void d_close(void *state) { (void)state; }
static qh_status d_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y, qh_error *err)
{
    (void)state, (void)split, (void)idx, (void)n, (void)x, (void)y, (void)err;
    return QH_OK;
}
static qh_status p_prune(void *state, qh_prune_target *t, int32_t n, double sparsity, qh_error *err)
{
    (void)state, (void)t, (void)n, (void)sparsity, (void)err;
    return QH_OK;
}
static qh_status q_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                            qh_error *err)
{
    (void)state, (void)name, (void)w, (void)q, (void)deq, (void)err;
    return QH_OK;
}
static int q_accepts(void *state, const char *name, const qh_tensor *w)
{
    (void)state, (void)w;
    return strstr(name, ".weight") != NULL;
}

static const qh_model_ops model_ops = {sizeof(qh_model_ops), m_build};
static const qh_dataset_ops dataset_ops = {sizeof(qh_dataset_ops), d_open, d_close, d_load, NULL};
static const qh_pruner_ops pruner_ops = {sizeof(qh_pruner_ops), NULL, NULL, p_prune, NULL};
static const qh_quantizer_ops quantizer_ops = {.struct_size = sizeof(qh_quantizer_ops), .quantize = q_quantize, .accepts = q_accepts};

typedef struct cfg {
    int64_t bits;
    double alpha;
    int mode;
    int flag;
} cfg;

static const char *const modes[] = {"tensor", "channel", NULL};
static const char *const no_choices[] = {NULL};

static qh_plugin_desc desc_of(qh_kind kind, const char *name)
{
    qh_plugin_desc d = {sizeof(qh_plugin_desc), kind, name, "a seam plugin", NULL, NULL, sizeof(cfg), {NULL}};
    switch (kind) {
    case QH_KIND_MODEL: d.ops.model = &model_ops; break;
    case QH_KIND_DATASET: d.ops.dataset = &dataset_ops; break;
    case QH_KIND_PRUNER: d.ops.pruner = &pruner_ops; break;
    case QH_KIND_QUANTIZER: d.ops.quantizer = &quantizer_ops; break;
    }
    return d;
}

static qh_library library_of(const qh_plugin_desc *const *descs, uint32_t n)
{
    qh_library lib = {QH_LIBRARY_HEADER, .name = "qh-seam", .version = "0.0.1", .license = "MIT",
                      .n_plugins = n, .plugins = descs};
    return lib;
}

/* Loads lib through the seam and checks the one-line rejection "PATH: <reason>". */
static void expect_rejected(const qh_library *lib, const char *reason)
{
    qh_registry *r = qh_registry_new_with(&seam);
    qh_error err = {{0}};
    g_library = lib;
    assert_int_not_equal(qh_registry_load_file(r, PATH, &err), QH_OK);
    char want[512];
    snprintf(want, sizeof want, "%s: %s", PATH, reason);
    assert_string_equal(err.msg, want);
    assert_int_equal(qh_registry_n_rejections(r), 1);
    assert_string_equal(qh_registry_rejection(r, 0), want);
    assert_int_equal(qh_registry_count(r), 0);
    qh_registry_free(r);
}

static void expect_desc_rejected(const qh_plugin_desc *d, const char *reason)
{
    const qh_plugin_desc *descs[] = {d};
    qh_library lib = library_of(descs, 1);
    expect_rejected(&lib, reason);
}

/* ---------------------------------------------------------------- tests */

static void test_library_rejections(void **state)
{
    (void)state;
    qh_plugin_desc d = desc_of(QH_KIND_QUANTIZER, "q");
    const qh_plugin_desc *descs[] = {&d};
    qh_library lib = library_of(descs, 0);
    expect_rejected(&lib, "library declares no plugins");
    lib = library_of(NULL, 1);
    expect_rejected(&lib, "library declares no plugins");
    const qh_plugin_desc *none[] = {&d, NULL};
    lib = library_of(none, 2);
    expect_rejected(&lib, "plugin #1: descriptor is NULL");
    expect_rejected(NULL, "qh_plugin_entry returned NULL");
}

static void test_desc_rejections(void **state)
{
    (void)state;
    char want[256];
    qh_plugin_desc d = desc_of(QH_KIND_QUANTIZER, "q");
    d.struct_size = 8;
    snprintf(want, sizeof want, "plugin #0: descriptor struct_size 8 is smaller than %zu (ABI 1.0)",
             (size_t)QH_PLUGIN_DESC_SIZE_1_0);
    expect_desc_rejected(&d, want);

    d = desc_of(QH_KIND_QUANTIZER, NULL);
    expect_desc_rejected(&d, "plugin #0: missing name");
    d = desc_of(QH_KIND_QUANTIZER, "");
    expect_desc_rejected(&d, "plugin #0: missing name");
    d = desc_of(QH_KIND_QUANTIZER, "two words");
    expect_desc_rejected(&d, "plugin #0: bad name 'two words' (must match [a-z0-9_]+)");
    d = desc_of(QH_KIND_QUANTIZER, "k");
    d.kind = (qh_kind)9;
    expect_desc_rejected(&d, "plugin 'k': unknown kind 9");
    d = desc_of(QH_KIND_QUANTIZER, "q");
    d.summary = NULL;
    expect_desc_rejected(&d, "quantizer 'q': missing summary");
    d = desc_of(QH_KIND_PRUNER, "p");
    d.ops.pruner = NULL;
    expect_desc_rejected(&d, "pruner 'p': ops is NULL");
}

static void test_ops_rejections(void **state)
{
    (void)state;
    char want[256];
    qh_model_ops mo = model_ops;
    mo.struct_size = 4;
    qh_plugin_desc d = desc_of(QH_KIND_MODEL, "m");
    d.ops.model = &mo;
    snprintf(want, sizeof want, "model 'm': ops struct_size 4 is smaller than %zu (ABI 1.0)",
             (size_t)QH_MODEL_OPS_SIZE_1_0);
    expect_desc_rejected(&d, want);
    mo = (qh_model_ops){sizeof mo, NULL};
    expect_desc_rejected(&d, "model 'm': missing required method build");

    /* dataset: all three of open, close and load are required, augment is not */
    const char *method[] = {"open", "close", "load"};
    for (int i = 0; i < 3; i++) {
        qh_dataset_ops dso = dataset_ops;
        if (i == 0)
            dso.open = NULL;
        else if (i == 1)
            dso.close = NULL;
        else
            dso.load = NULL;
        d = desc_of(QH_KIND_DATASET, "d");
        d.ops.dataset = &dso;
        snprintf(want, sizeof want, "dataset 'd': missing required method %s", method[i]);
        expect_desc_rejected(&d, want);
    }
    qh_pruner_ops po = {sizeof po, NULL, NULL, NULL, NULL};
    d = desc_of(QH_KIND_PRUNER, "p");
    d.ops.pruner = &po;
    expect_desc_rejected(&d, "pruner 'p': missing required method prune");
    qh_quantizer_ops qo = {.struct_size = QH_QUANTIZER_OPS_SIZE_1_0};
    d = desc_of(QH_KIND_QUANTIZER, "q");
    d.ops.quantizer = &qo;
    expect_desc_rejected(&d, "quantizer 'q': missing required method quantize");
}

static void expect_params_rejected(const qh_param *params, size_t config_size, const char *reason)
{
    qh_plugin_desc d = desc_of(QH_KIND_QUANTIZER, "q");
    d.params = params;
    d.config_size = config_size;
    char want[256];
    snprintf(want, sizeof want, "quantizer 'q': %s", reason);
    expect_desc_rejected(&d, want);
}

static void test_param_rejections(void **state)
{
    (void)state;
    const qh_param dup[] = {QH_P_INT("bits", cfg, bits, 4, 2, 8, "bits", "width"),
                            QH_P_INT("bits", cfg, bits, 4, 2, 8, "bits", "again"), QH_P_END};
    expect_params_rejected(dup, sizeof(cfg), "duplicate parameter 'bits'");
    const qh_param type[] = {QH_P_STRING("type", cfg, bits, NULL, "a stage key"), QH_P_END};
    expect_params_rejected(type, sizeof(cfg), "parameter 'type' is a reserved stage key");
    const qh_param upper[] = {QH_P_BOOL("Flag", cfg, flag, 0, "upper case"), QH_P_END};
    expect_params_rejected(upper, sizeof(cfg), "bad parameter name 'Flag' (must match [a-z0-9_]+)");
    const qh_param empty_name[] = {QH_P_BOOL("", cfg, flag, 0, "no name"), QH_P_END};
    expect_params_rejected(empty_name, sizeof(cfg), "bad parameter name '' (must match [a-z0-9_]+)");
    const qh_param enum0[] = {QH_P_ENUM("mode", cfg, mode, 0, NULL, "no choices"), QH_P_END};
    expect_params_rejected(enum0, sizeof(cfg), "parameter 'mode': enum without choices");
    const qh_param enum_empty[] = {QH_P_ENUM("mode", cfg, mode, 0, no_choices, "empty choices"), QH_P_END};
    expect_params_rejected(enum_empty, sizeof(cfg), "parameter 'mode': enum without choices");
    const qh_param enum3[] = {QH_P_ENUM("mode", cfg, mode, 3, modes, "bad default"), QH_P_END};
    expect_params_rejected(enum3, sizeof(cfg), "parameter 'mode': default index 3 is out of range (2 choices)");
    const qh_param alpha[] = {QH_P_DOUBLE("alpha", cfg, alpha, 1.5, 0.0, 1.0, NULL, "a fraction"), QH_P_END};
    expect_params_rejected(alpha, sizeof(cfg), "parameter 'alpha': default 1.5 is outside [0, 1]");
    const qh_param flag[] = {QH_P_BOOL("flag", cfg, flag, 2, "not a bool"), QH_P_END};
    expect_params_rejected(flag, sizeof(cfg), "parameter 'flag': bool default 2 is not 0 or 1");
    const qh_param bits[] = {QH_P_INT("bits", cfg, bits, 4, 2, 8, "bits", "width"), QH_P_END};
    expect_params_rejected(bits, 0, "config_size is 0 but parameters are declared");
    const qh_param beyond[] = {{"bits", QH_PARAM_INT, 8, {.i = 4}, 0, 0, NULL, 0, NULL, "past the end"}, QH_P_END};
    expect_params_rejected(beyond, 12, "parameter 'bits': offset 8 + size 8 is beyond config_size 12");
    const qh_param unknown[] = {{"x", (qh_param_type)42, 0, {.i = 0}, 0, 0, NULL, 0, NULL, "?"}, QH_P_END};
    expect_params_rejected(unknown, sizeof(cfg), "parameter 'x': unknown type 42");
}

static void test_params_accepted(void **state)
{
    (void)state;
    /* a required parameter's default is ignored, so it may lie outside the range */
    const qh_param params[] = {
        {"bits", QH_PARAM_INT, offsetof(cfg, bits), {.i = 0}, 2, 8, NULL,
         QH_PF_REQUIRED | QH_PF_HAS_MIN | QH_PF_HAS_MAX, "bits", "required"},
        QH_P_DOUBLE("alpha", cfg, alpha, 1.0, 0.0, 1.0, NULL, "edge of the range"),
        QH_P_ENUM("mode", cfg, mode, 1, modes, "last choice"),
        QH_P_BOOL("flag", cfg, flag, 1, "a bool"),
        QH_P_END,
    };
    qh_plugin_desc d = desc_of(QH_KIND_QUANTIZER, "q");
    d.params = params;
    const qh_plugin_desc *descs[] = {&d};
    qh_library lib = library_of(descs, 1);
    g_library = &lib;
    qh_registry *r = qh_registry_new_with(&seam);
    qh_error err = {{0}};
    assert_int_equal(qh_registry_load_file(r, PATH, &err), QH_OK);
    assert_ptr_equal(qh_registry_find(r, QH_KIND_QUANTIZER, "q")->params, params);
    qh_registry_free(r);
}

static void test_loader_errors(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new_with(&seam);
    qh_error err;
    /* the loader's text loses its leading "<path>: " so the path is not said twice */
    assert_int_equal(qh_registry_load_file(r, "mem/missing.so", &err), QH_E_FORMAT);
    assert_string_equal(err.msg, "mem/missing.so: not a loadable shared object: no such fake file");
    qh_registry_free(r);
}

/* Four kinds in one library; names listed per kind; NULL params become an empty table. */
static void test_good_library(void **state)
{
    (void)state;
    qh_plugin_desc d[5] = {desc_of(QH_KIND_DATASET, "synthetic"), desc_of(QH_KIND_DATASET, "idx"),
                           desc_of(QH_KIND_MODEL, "mlp"), desc_of(QH_KIND_PRUNER, "mlp"),
                           desc_of(QH_KIND_QUANTIZER, "linear")};
    const qh_plugin_desc *descs[] = {&d[0], &d[1], &d[2], &d[3], &d[4]};
    qh_library lib = library_of(descs, 5);
    g_library = &lib;
    qh_registry *r = qh_registry_new_with(&seam);
    qh_error err = {{0}};
    assert_int_equal(qh_registry_load_file(r, PATH, &err), QH_OK);
    assert_int_equal(qh_registry_count(r), 5);
    assert_int_equal(qh_registry_n_rejections(r), 0);
    char names[64];
    qh_registry_names(r, QH_KIND_DATASET, names, sizeof names);
    assert_string_equal(names, "idx, synthetic");
    qh_registry_names(r, QH_KIND_PRUNER, names, sizeof names);
    assert_string_equal(names, "mlp"); /* same name, different kind: no clash */
    qh_registry_names(r, (qh_kind)9, names, sizeof names);
    assert_string_equal(names, "");
    qh_registry_names(r, QH_KIND_DATASET, names, 6);
    assert_string_equal(names, "idx, "); /* truncated, still terminated */
    const qh_plugin *p = qh_registry_find(r, QH_KIND_MODEL, "mlp");
    assert_non_null(p);
    assert_non_null(p->params);
    assert_null(p->params[0].name);
    assert_string_equal(p->lib_name, "qh-seam");
    assert_string_equal(p->version, "0.0.1");
    assert_string_equal(p->path, PATH);
    assert_null(qh_registry_find(r, QH_KIND_MODEL, "linear"));
    assert_null(qh_registry_get(r, 5));
    assert_null(qh_registry_rejection(r, 0));
    qh_registry_free(r);
}

/* The host reads only struct_size bytes: a method past a 1.0 struct_size is never seen. */
static void test_normalization(void **state)
{
    (void)state;
    qh_quantizer_ops ops_1_0 = quantizer_ops; /* accepts is set in memory ... */
    ops_1_0.struct_size = QH_QUANTIZER_OPS_SIZE_1_0; /* ... but lies beyond what the plugin declares */
    qh_plugin_desc d[2] = {desc_of(QH_KIND_QUANTIZER, "old"), desc_of(QH_KIND_QUANTIZER, "new")};
    d[0].ops.quantizer = &ops_1_0;
    const qh_plugin_desc *descs[] = {&d[0], &d[1]};
    qh_library lib = library_of(descs, 2);
    lib.abi_minor = 0;
    g_library = &lib;
    qh_registry *r = qh_registry_new_with(&seam);
    qh_error err = {{0}};
    assert_int_equal(qh_registry_load_file(r, PATH, &err), QH_OK);
    const qh_plugin *old = qh_registry_find(r, QH_KIND_QUANTIZER, "old");
    const qh_plugin *cur = qh_registry_find(r, QH_KIND_QUANTIZER, "new");
    assert_null(old->ops.quantizer.accepts);
    assert_ptr_equal(cur->ops.quantizer.accepts, q_accepts);

    const int64_t shape[1] = {4};
    qh_tensor *bias = qh_tensor_new(QH_F32, 1, shape, NULL);
    qh_quantizer qa, qb;
    assert_int_equal(qh_quantizer_create(&qa, old, NULL, &err), QH_OK);
    assert_int_equal(qh_quantizer_create(&qb, cur, NULL, &err), QH_OK);
    assert_false(qh_quantizer_accepts(&qa, "emb.weight", bias)); /* host default: rank 1 is skipped */
    assert_true(qh_quantizer_accepts(&qb, "emb.weight", bias));  /* the plugin's own rule */
    assert_false(qh_quantizer_accepts(&qb, "fc.bias", bias));
    qh_quantizer_destroy(&qa);
    qh_quantizer_destroy(&qb);
    qh_tensor_free(bias);
    qh_registry_free(r);
}

/* Duplicates within one library reject it whole, even when the first copy was fine. */
static void test_duplicate_in_library(void **state)
{
    (void)state;
    qh_plugin_desc d[3] = {desc_of(QH_KIND_MODEL, "lenet5"), desc_of(QH_KIND_QUANTIZER, "x"),
                           desc_of(QH_KIND_QUANTIZER, "x")};
    const qh_plugin_desc *descs[] = {&d[0], &d[1], &d[2]};
    qh_library lib = library_of(descs, 3);
    expect_rejected(&lib, "quantizer 'x': declared twice in this library");
}

int main(void)
{
    qh_log_set_level(QH_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_rejections),
        cmocka_unit_test(test_desc_rejections),
        cmocka_unit_test(test_ops_rejections),
        cmocka_unit_test(test_param_rejections),
        cmocka_unit_test(test_params_accepted),
        cmocka_unit_test(test_loader_errors),
        cmocka_unit_test(test_good_library),
        cmocka_unit_test(test_normalization),
        cmocka_unit_test(test_duplicate_in_library),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
