/* test_registry.c - loading real shared objects: one fake plugin per rejection (exact message),
 * the ABI 1.0 plugin in this 1.2 host, directory scans and the search path. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_registry.h"

#define BUILD QH_ABI_BUILD
#define FAKE(c) BUILD "/qh-fake-" c ".so"
#define COPY BUILD "/plugins/qh-fake-old-minor.so"

typedef struct rejection_case {
    const char *path;
    char reason[256];
} rejection_case;

/* Every fake, in the sorted order a directory scan meets them, with the reason it is rejected. */
static int rejection_cases(rejection_case *c)
{
    int n = 0;
#define CASE(p, ...) (c[n].path = (p), snprintf(c[n].reason, sizeof c[n].reason, __VA_ARGS__), n++)
    CASE(FAKE("bad-magic"), "bad magic 0xDEADBEEF (expected 0x51484C42)");
    CASE(FAKE("bad-name"), "plugin #0: bad name 'Bad-Name' (must match [a-z0-9_]+)");
    CASE(FAKE("dup-name"), "quantizer 'twin': declared twice in this library");
    CASE(FAKE("missing-method"), "quantizer 'missing_method': missing required method quantize");
    CASE(FAKE("newer-minor"), "built for ABI 1.5, newer than this host's 1.2");
    CASE(FAKE("no-entry"), "no qh_plugin_entry symbol (not a qhost plugin)");
    CASE(FAKE("null-entry"), "qh_plugin_entry returned NULL");
    CASE(FAKE("param-range"), "quantizer 'param_range': parameter 'bits': default 12 is outside [2, 8]");
    CASE(FAKE("param-reserved"), "quantizer 'param_reserved': parameter 'plugin' is a reserved stage key");
    CASE(FAKE("param-upper"), "quantizer 'param_upper': bad parameter name 'Bits' (must match [a-z0-9_]+)");
    CASE(FAKE("small-library"), "library struct_size 12 is smaller than %zu (ABI 1.0)", (size_t)QH_LIBRARY_SIZE_1_0);
    CASE(FAKE("small-ops"), "quantizer 'small_ops': ops struct_size %zu is smaller than %zu (ABI 1.0)",
         (size_t)QH_QUANTIZER_OPS_SIZE_1_0 - sizeof(void (*)(void)), (size_t)QH_QUANTIZER_OPS_SIZE_1_0);
    CASE(FAKE("wrong-major"), "built for ABI 2.x, this host supports 1.x");
#undef CASE
    return n;
}

static void expect_line(const char *got, const char *path, const char *reason)
{
    char want[1024];
    snprintf(want, sizeof want, "%s: %s", path, reason);
    assert_string_equal(got, want);
}

static void test_each_rejection(void **state)
{
    (void)state;
    rejection_case cases[32];
    int n = rejection_cases(cases);
    for (int i = 0; i < n; i++) {
        qh_registry *r = qh_registry_new();
        qh_error err = {{0}};
        assert_int_not_equal(qh_registry_load_file(r, cases[i].path, &err), QH_OK);
        expect_line(err.msg, cases[i].path, cases[i].reason);
        assert_int_equal(qh_registry_n_rejections(r), 1);
        assert_string_equal(qh_registry_rejection(r, 0), err.msg);
        assert_int_equal(qh_registry_count(r), 0); /* a rejected library contributes nothing */
        qh_registry_free(r);
    }
}

static void test_version_statuses(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_load_file(r, FAKE("wrong-major"), &err), QH_E_UNSUPPORTED);
    assert_int_equal(qh_registry_load_file(r, FAKE("newer-minor"), &err), QH_E_UNSUPPORTED);
    assert_int_equal(qh_registry_load_file(r, FAKE("bad-magic"), &err), QH_E_FORMAT);
    qh_registry_free(r);
}

static void test_not_a_shared_object(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    const char *garbage = QH_ABI_SRC "/qh-garbage.so";
    assert_int_equal(qh_registry_load_file(r, garbage, &err), QH_E_FORMAT);
    expect_line(err.msg, garbage, "not a loadable shared object: invalid ELF header");
    const char *missing = BUILD "/qh-no-such-plugin.so";
    assert_int_equal(qh_registry_load_file(r, missing, &err), QH_E_FORMAT);
    expect_line(err.msg, missing, "not a loadable shared object: cannot open shared object file: No such file or "
                                  "directory");
    assert_int_equal(qh_registry_n_rejections(r), 2);
    assert_int_equal(qh_registry_count(r), 0);
    qh_registry_free(r);
}

/* ---------------------------------------------------------------- the ABI 1.0 plugin */

static void make_weight(qh_tensor **w, qh_tensor **deq)
{
    const int64_t shape[2] = {2, 3};
    const float v[6] = {0.5f, -1.5f, 0.1f, 3.0f, -2.2f, 0.0f};
    *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    *deq = qh_tensor_new(QH_F32, 2, shape, NULL);
    assert_non_null(*w);
    assert_non_null(*deq);
    memcpy((*w)->data, v, sizeof v);
}

static void test_old_minor_loads(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err = {{0}};
    assert_int_equal(qh_registry_load_file(r, FAKE("old-minor"), &err), QH_OK);
    assert_int_equal(qh_registry_count(r), 1);
    const qh_plugin *p = qh_registry_find(r, QH_KIND_QUANTIZER, "old_minor");
    assert_non_null(p);
    assert_int_equal(p->abi_major, 1);
    assert_int_equal(p->abi_minor, 0);
    assert_string_equal(p->path, FAKE("old-minor"));
    assert_string_equal(p->lib_name, "qh-fake-old-minor");
    assert_int_equal(p->ops.quantizer.struct_size, QH_QUANTIZER_OPS_SIZE_1_0);
    assert_null(p->ops.quantizer.accepts); /* beyond its struct_size: zero in the host copy */
    assert_null(p->ops.quantizer.create);
    assert_non_null(p->ops.quantizer.quantize);
    assert_string_equal(p->params[0].name, "bits");

    /* accepts() falls back to the host default: F32 of rank >= 2 */
    struct { int64_t bits; } cfg = {3};
    qh_quantizer qz;
    assert_int_equal(qh_quantizer_create(&qz, p, &cfg, &err), QH_OK);
    assert_ptr_equal(qz.state, &cfg); /* no create(): state is the config block */
    const int64_t s2[2] = {2, 3}, s1[1] = {6};
    qh_tensor *m = qh_tensor_new(QH_F32, 2, s2, NULL), *v = qh_tensor_new(QH_F32, 1, s1, NULL);
    qh_tensor *mi = qh_tensor_new(QH_I32, 2, s2, NULL);
    assert_true(qh_quantizer_accepts(&qz, "fc1.weight", m));
    assert_false(qh_quantizer_accepts(&qz, "fc1.bias", v));
    assert_false(qh_quantizer_accepts(&qz, "counts", mi));
    qh_tensor_free(m);
    qh_tensor_free(v);
    qh_tensor_free(mi);

    /* quantize runs through the wrapper: symmetric rounding, scale = max|w| / 3 at 3 bits */
    qh_tensor *w, *deq;
    make_weight(&w, &deq);
    qh_qtensor q;
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_OK);
    assert_int_equal(q.bits, 3);
    assert_int_equal(q.codes->dtype, QH_I8);
    const float scale = 3.0f / 3.0f;
    assert_float_equal(qh_tensor_f32(q.scale)[0], scale, 1e-7);
    const int8_t want[6] = {1, -2, 0, 3, -2, 0}; /* round half away from zero, clamp to +-3 */
    for (int i = 0; i < 6; i++) {
        assert_int_equal(((int8_t *)q.codes->data)[i], want[i]);
        assert_float_equal(qh_tensor_f32(deq)[i], want[i] * scale, 1e-6);
    }
    qh_qtensor_clear(&q);
    qh_tensor_free(w);
    qh_tensor_free(deq);
    qh_quantizer_destroy(&qz);
    qh_registry_free(r);
}

/* ---------------------------------------------------------------- directories */

static void test_add_dir_sorted(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_add_dir(r, BUILD, &err), QH_OK);
    /* plugins/ sorts before qh-fake-*: its copy wins, the top-level one is a duplicate of the same scan */
    assert_int_equal(qh_registry_count(r), 1);
    assert_string_equal(qh_registry_get(r, 0)->path, COPY);
    rejection_case cases[32];
    int n = rejection_cases(cases);
    assert_int_equal(qh_registry_n_rejections(r), n + 1);
    for (int i = 0, k = 0; i < n + 1; i++) {
        const char *got = qh_registry_rejection(r, i);
        if (strstr(got, "qh-fake-old-minor.so")) {
            expect_line(got, FAKE("old-minor"), "quantizer 'old_minor': already provided by " COPY);
            continue;
        }
        expect_line(got, cases[k].path, cases[k].reason);
        k++;
    }
    qh_registry_free(r);
}

static void test_add_dir_missing_and_file(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_add_dir(r, BUILD "/no-such-dir", &err), QH_OK);
    assert_int_equal(qh_registry_add_dir(r, FAKE("old-minor"), &err), QH_E_IO);
    assert_string_equal(err.msg, FAKE("old-minor") ": not a directory");
    assert_int_equal(qh_registry_count(r), 0);
    assert_int_equal(qh_registry_n_rejections(r), 0);
    qh_registry_free(r);
}

static void test_garbage_in_dir(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_add_dir(r, QH_ABI_SRC, &err), QH_OK); /* only qh-garbage.so matches */
    assert_int_equal(qh_registry_count(r), 0);
    assert_int_equal(qh_registry_n_rejections(r), 1);
    expect_line(qh_registry_rejection(r, 0), QH_ABI_SRC "/qh-garbage.so",
                "not a loadable shared object: invalid ELF header");
    qh_registry_free(r);
}

/* A plugin found again in a later search directory is skipped without a rejection. */
static void test_scan_first_dir_wins(void **state)
{
    (void)state;
    unsetenv("QHOST_PLUGIN_PATH");
    qh_registry *r = qh_registry_new();
    qh_error err;
    const char *dirs[] = {BUILD "/plugins", BUILD, BUILD "/plugins"};
    assert_int_equal(qh_registry_scan(r, dirs, 3, NULL, &err), QH_OK);
    assert_int_equal(qh_registry_count(r), 1);
    assert_string_equal(qh_registry_find(r, QH_KIND_QUANTIZER, "old_minor")->path, COPY);
    rejection_case cases[32];
    assert_int_equal(qh_registry_n_rejections(r), rejection_cases(cases));
    qh_registry_free(r);
}

static void test_scan_env_and_exe_dir(void **state)
{
    (void)state;
    qh_error err;
    setenv("QHOST_PLUGIN_PATH", BUILD "/no-such-dir:" BUILD "/plugins:", 1);
    qh_registry *r = qh_registry_new();
    assert_int_equal(qh_registry_scan(r, NULL, 0, NULL, &err), QH_OK);
    assert_int_equal(qh_registry_count(r), 1);
    assert_string_equal(qh_registry_get(r, 0)->path, COPY);
    assert_int_equal(qh_registry_n_rejections(r), 0);
    qh_registry_free(r);
    unsetenv("QHOST_PLUGIN_PATH");

    /* <dir of the executable>/plugins, from a path and from a bare name (then /proc/self/exe) */
    const char *exes[] = {BUILD "/test-registry", "test-registry"};
    for (int i = 0; i < 2; i++) {
        r = qh_registry_new();
        assert_int_equal(qh_registry_scan(r, NULL, 0, exes[i], &err), QH_OK);
        assert_int_equal(qh_registry_count(r), 1);
        assert_string_equal(qh_registry_get(r, 0)->path, COPY);
        qh_registry_free(r);
    }

    /* an explicit --plugin-dir that is a file is an error; a missing one is not */
    r = qh_registry_new();
    const char *bad[] = {BUILD "/no-such-dir", FAKE("old-minor")};
    assert_int_equal(qh_registry_scan(r, bad, 2, NULL, &err), QH_E_IO);
    assert_string_equal(err.msg, FAKE("old-minor") ": not a directory");
    qh_registry_free(r);
}

/* A plugin loaded again outside a scan is a rejection: only search order may shadow. */
static void test_already_registered(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_load_file(r, COPY, &err), QH_OK);
    assert_int_not_equal(qh_registry_load_file(r, FAKE("old-minor"), &err), QH_OK);
    expect_line(err.msg, FAKE("old-minor"), "quantizer 'old_minor': already provided by " COPY);
    assert_int_equal(qh_registry_count(r), 1);
    qh_registry_free(r);
}

static void test_kind_names(void **state)
{
    (void)state;
    const char *names[] = {"model", "dataset", "pruner", "quantizer"};
    for (int k = QH_KIND_MODEL; k <= QH_KIND_QUANTIZER; k++) {
        qh_kind back;
        assert_string_equal(qh_kind_name((qh_kind)k), names[k - 1]);
        assert_true(qh_kind_from_name(names[k - 1], &back));
        assert_int_equal(back, k);
    }
    qh_kind unused;
    assert_false(qh_kind_from_name("quantiser", &unused));
    assert_false(qh_kind_from_name(NULL, &unused));
    assert_string_equal(qh_kind_name((qh_kind)0), "unknown");
}

int main(void)
{
    qh_log_set_level(QH_LOG_ERROR); /* the scans warn about every fake; the assertions check them */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_rejection),
        cmocka_unit_test(test_version_statuses),
        cmocka_unit_test(test_not_a_shared_object),
        cmocka_unit_test(test_old_minor_loads),
        cmocka_unit_test(test_add_dir_sorted),
        cmocka_unit_test(test_add_dir_missing_and_file),
        cmocka_unit_test(test_garbage_in_dir),
        cmocka_unit_test(test_scan_first_dir_wins),
        cmocka_unit_test(test_scan_env_and_exe_dir),
        cmocka_unit_test(test_already_registered),
        cmocka_unit_test(test_kind_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
