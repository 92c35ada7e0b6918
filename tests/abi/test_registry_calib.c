/* test_registry_calib.c - ABI 1.2's data-aware quantizer methods on the host side: a plugin with
 * calib_needs but no quantize_calib is rejected with its exact message (through the registry's
 * dlopen seam), a 1.1 plugin (smaller ops) reads as data-free, and the wrappers check what goes in
 * (the data the plugin asked for) and what comes out (pruned weights stay 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_registry.h"

#define PATH "mem/qh-calib.so"

/* ---------------------------------------------------------------- the seam: one in-memory library */

static const qh_library *g_library;

static const qh_library *seam_entry(void)
{
    return g_library;
}
static void *seam_open(const char *path)
{
    return strcmp(path, PATH) == 0 ? &g_library : NULL;
}
static void *seam_sym(void *handle, const char *symbol)
{
    (void)handle;
    if (strcmp(symbol, QH_PLUGIN_ENTRY_SYMBOL) != 0)
        return NULL;
    void *p;
    qh_plugin_entry_fn fn = seam_entry;
    memcpy(&p, &fn, sizeof p);
    return p;
}
static const char *seam_error(void)
{
    return "no such fake file";
}
static const qh_dl_ops seam = {seam_open, seam_sym, seam_error};

/* ---------------------------------------------------------------- a data-aware quantizer */

static int g_revive; /* quantize_calib makes weight 0 nonzero */

static qh_status fill(const qh_tensor *w, qh_qtensor *q, qh_tensor *deq)
{
    int64_t one = 1;
    q->bits = 8;
    q->gran = QH_QG_TENSOR;
    q->codes = qh_tensor_new(QH_I8, w->ndim, w->shape, NULL);
    q->scale = qh_tensor_new(QH_F32, 1, &one, NULL);
    qh_tensor_f32(q->scale)[0] = 1.0f;
    memset(deq->data, 0, qh_tensor_nbytes(deq));
    if (g_revive) {
        ((int8_t *)q->codes->data)[0] = 1;
        qh_tensor_f32(deq)[0] = 1.0f;
    }
    return QH_OK;
}

static qh_status q_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                            qh_error *err)
{
    (void)state, (void)name, (void)err;
    return fill(w, q, deq);
}
static uint32_t q_needs(void *state, const char *name, const qh_tensor *w)
{
    (void)state, (void)w;
    return strstr(name, "fc") ? QH_CALIB_XQ | QH_CALIB_H : 0;
}
static qh_status q_calib(void *state, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq, qh_error *err)
{
    (void)state, (void)err;
    return fill(c->w, q, deq);
}

static const qh_quantizer_ops half_ops = {.struct_size = sizeof(qh_quantizer_ops),
                                          .quantize = q_quantize,
                                          .calib_needs = q_needs}; /* quantize_calib forgotten */
static const qh_quantizer_ops full_ops = {
    .struct_size = sizeof(qh_quantizer_ops), .quantize = q_quantize, .calib_needs = q_needs, .quantize_calib = q_calib};
/* a 1.1 plugin: its ops end after accepts, so calib_needs lies beyond what the host copies */
static const qh_quantizer_ops old_ops = {.struct_size = offsetof(qh_quantizer_ops, calib_needs),
                                         .quantize = q_quantize,
                                         .calib_needs = q_needs,
                                         .quantize_calib = q_calib};

static qh_registry *load(const qh_quantizer_ops *ops, qh_status want, qh_error *err)
{
    static qh_plugin_desc d;
    static const qh_plugin_desc *descs[] = {&d};
    static qh_library lib;
    d = (qh_plugin_desc){sizeof(qh_plugin_desc), QH_KIND_QUANTIZER, "calib", "a data-aware fake", NULL, NULL, 8,
                         {.quantizer = ops}};
    lib = (qh_library){QH_LIBRARY_HEADER, .name = "qh-calib", .version = "0.0.1",
                       .license = "MIT",  .n_plugins = 1,     .plugins = descs};
    g_library = &lib;
    qh_registry *r = qh_registry_new_with(&seam);
    assert_int_equal(qh_registry_load_file(r, PATH, err), want);
    return r;
}

static void test_rejects_needs_without_method(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_registry *r = load(&half_ops, QH_E_FORMAT, &err);
    assert_string_equal(err.msg, PATH ": quantizer 'calib': missing required method quantize_calib (it has "
                                      "calib_needs)");
    assert_int_equal(qh_registry_count(r), 0);
    qh_registry_free(r);
}

static void test_old_plugin_is_data_free(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_registry *r = load(&old_ops, QH_OK, &err);
    qh_quantizer qz;
    assert_int_equal(qh_quantizer_create(&qz, qh_registry_get(r, 0), NULL, &err), QH_OK);
    int64_t shape[2] = {2, 3};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, &err);
    assert_int_equal(qh_quantizer_calib_needs(&qz, "fc.weight", w), 0u);
    qh_quantizer_destroy(&qz);
    qh_tensor_free(w);
    qh_registry_free(r);
}

static void test_wrappers(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_registry *r = load(&full_ops, QH_OK, &err);
    qh_quantizer qz;
    assert_int_equal(qh_quantizer_create(&qz, qh_registry_get(r, 0), NULL, &err), QH_OK);
    int64_t shape[2] = {2, 3};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, &err), *deq = qh_tensor_new(QH_F32, 2, shape, &err);
    assert_int_equal(qh_quantizer_calib_needs(&qz, "fc.weight", w), QH_CALIB_XQ | QH_CALIB_H);
    assert_int_equal(qh_quantizer_calib_needs(&qz, "conv.weight", w), 0u);
    float xq[4 * 3] = {0};
    double h[9] = {0};
    qh_calib_layer c = {.struct_size = sizeof c, .name = "fc.weight", .w = w, .rows = 2, .cols = 3, .m = 4, .xq = xq};
    qh_qtensor q;
    /* asked for H, given none */
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "quantizer calib: tensor fc.weight: the data the quantizer asked for is missing");
    c.h = h;
    c.m = 0;
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "quantizer calib: tensor fc.weight: no calibration samples");
    c.m = 4;
    c.cols = 4;
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "quantizer calib: tensor fc.weight: rows x cols does not match the weight");
    c.cols = 3;
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_OK);
    qh_qtensor_clear(&q);
    /* a pruned weight that comes back nonzero is the plugin's bug */
    const uint8_t mask[6] = {0, 1, 1, 1, 1, 1};
    c.mask = mask;
    g_revive = 1;
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_E_INTERNAL);
    assert_string_equal(err.msg, "quantizer calib: tensor fc.weight: quantize_calib made pruned weight #0 nonzero "
                                 "(masked weights must stay 0)");
    assert_null(q.codes); /* cleared */
    g_revive = 0;
    assert_int_equal(qh_quantizer_quantize_calib(&qz, &c, &q, deq, &err), QH_OK);
    qh_qtensor_clear(&q);
    qh_quantizer_destroy(&qz);
    qh_tensor_free(w);
    qh_tensor_free(deq);
    qh_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_needs_without_method),
        cmocka_unit_test(test_old_plugin_is_data_free),
        cmocka_unit_test(test_wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
