/* test_linear.c - the linear quantizer plugin, called directly through its ops.
 *
 * References: the closed form of each grid (computed here from the weights in double), the error
 * bound |w - deq| <= scale / 2, and the core reference decoder qh_qtensor_dequantize.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_LINEAR, QH_KIND_QUANTIZER, "linear");
    return desc ? 0 : -1;
}

static void *make_cfg(int bits, const char *gran, const char *mode)
{
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "bits", bits);
    test_set_int(desc, cfg, "granularity", strcmp(gran, "channel") == 0);
    test_set_int(desc, cfg, "mode", strcmp(mode, "asymmetric") == 0);
    return cfg;
}

/* [rows, 7, 3] weights, N(0,1)-ish with a per-row scale and one outlier; row `zero_row` all zeros. */
static qh_tensor *make_weights(int64_t rows, int zero_row, uint64_t seed)
{
    int64_t shape[3] = {rows, 7, 3};
    qh_tensor *w = qh_tensor_new(QH_F32, 3, shape, NULL);
    assert_non_null(w);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = qh_tensor_f32(w);
    for (int64_t g = 0; g < rows; g++)
        for (int64_t i = 0; i < 21; i++)
            x[g * 21 + i] = g == zero_row ? 0.0f : (float)(qh_rng_normal(&r) * (0.1 + (double)g));
    if (rows > 1 && zero_row != 1)
        x[21 + 5] = 9.0f; /* an outlier in row 1 */
    return w;
}

typedef struct run {
    qh_qtensor q;
    qh_tensor *deq;
} run;

static qh_status quantize(void *cfg, const qh_tensor *w, run *out, qh_error *err)
{
    memset(out, 0, sizeof *out);
    out->deq = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    return desc->ops.quantizer->quantize(cfg, "test.weight", w, &out->q, out->deq, err);
}

static void run_free(run *r)
{
    qh_qtensor_clear(&r->q);
    qh_tensor_free(r->deq);
}

/* Closed-form grid of one group, in double; returns scale, zero and the code range. */
static void expected_grid(const float *w, int64_t n, int bits, int asym, double *scale, int *zero, int *qmin,
                          int *qmax)
{
    double lo = 0, hi = 0, amax = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
        amax = fmax(amax, fabs(w[i]));
    }
    if (asym) {
        *qmin = 0;
        *qmax = (1 << bits) - 1;
        *scale = (hi - lo) / *qmax;
        *zero = *scale > 0 ? (int)lround(-lo / *scale) : 0;
    } else {
        *qmax = (1 << (bits - 1)) - 1;
        *qmin = -*qmax;
        *scale = amax / *qmax;
        *zero = 0;
    }
    if (*scale == 0)
        *scale = 1;
}

static void check_result(const qh_tensor *w, const run *r, int bits, int channel, int asym)
{
    int64_t n = qh_tensor_numel(w), groups = channel ? w->shape[0] : 1, len = n / groups;
    const qh_qtensor *q = &r->q;
    assert_int_equal(q->bits, bits);
    assert_int_equal(q->gran, channel ? QH_QG_CHANNEL : QH_QG_TENSOR);
    assert_int_equal(q->codes->dtype, asym ? QH_U8 : QH_I8);
    assert_int_equal(qh_tensor_numel(q->scale), groups);
    assert_int_equal(qh_qtensor_groups(q, w), groups);
    if (asym)
        assert_int_equal(qh_tensor_numel(q->zero), groups);
    else
        assert_null(q->zero);
    const float *x = qh_tensor_f32(w), *y = qh_tensor_f32(r->deq), *s = qh_tensor_f32(q->scale);
    for (int64_t g = 0; g < groups; g++) {
        double scale;
        int zero, qmin, qmax;
        expected_grid(x + g * len, len, bits, asym, &scale, &zero, &qmin, &qmax);
        assert_float_equal(s[g], scale, scale * 1e-6);
        if (asym)
            assert_int_equal(((int32_t *)q->zero->data)[g], zero);
        for (int64_t i = g * len; i < (g + 1) * len; i++) {
            int code = asym ? ((uint8_t *)q->codes->data)[i] : ((int8_t *)q->codes->data)[i];
            assert_true(code >= qmin && code <= qmax);
            /* Round to nearest: within half a step, up to float rounding of the product. */
            double e = fabs((double)x[i] - (double)y[i]);
            assert_true(e <= 0.5 * s[g] * (1 + 1e-5) + 1e-7 * fabs(x[i]));
        }
    }
    /* The plugin's dequantized values are exactly what the reference decoder makes of its codes. */
    qh_tensor *dec = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(q, dec, &err), QH_OK);
    assert_memory_equal(dec->data, r->deq->data, qh_tensor_nbytes(dec));
    qh_tensor_free(dec);
}

static void test_all_grids(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(5, 3, 7);
    for (int bits = 2; bits <= 8; bits++)
        for (int channel = 0; channel < 2; channel++)
            for (int asym = 0; asym < 2; asym++) {
                void *cfg = make_cfg(bits, channel ? "channel" : "tensor", asym ? "asymmetric" : "symmetric");
                run r;
                qh_error err = {{0}};
                assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
                check_result(w, &r, bits, channel, asym);
                run_free(&r);
                free(cfg);
            }
    qh_tensor_free(w);
}

/* Symmetric: the largest |w| maps to +-qmax exactly (the restricted range never uses -2^(b-1)). */
static void test_symmetric_extremes(void **state)
{
    (void)state;
    int64_t shape[2] = {2, 4};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    float v[8] = {-7.0f, 2.5f, -2.5f, 0.0f, /* scale 1: exact halves */
                  0.1f, 0.3f, 3.0f, -0.2f};
    memcpy(w->data, v, sizeof v);
    void *cfg = make_cfg(4, "channel", "symmetric");
    run r;
    qh_error err = {{0}};
    assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
    const int8_t *c = r.q.codes->data;
    assert_true(qh_tensor_f32(r.q.scale)[0] == 1.0f);
    assert_true(qh_tensor_f32(r.q.scale)[1] == 3.0f / 7.0f);
    assert_int_equal(c[0], -7);
    assert_int_equal(c[1], 3);  /* 2.5: half away from zero */
    assert_int_equal(c[2], -3); /* -2.5 likewise */
    assert_int_equal(c[3], 0);
    assert_int_equal(c[4], 0);  /* 0.1 / (3/7) = 0.23 */
    assert_int_equal(c[5], 1);  /* 0.3 / (3/7) = 0.7 */
    assert_int_equal(c[6], 7);
    assert_int_equal(c[7], 0);  /* -0.2 / (3/7) = -0.47 */
    run_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Asymmetric: the range is stretched to include 0, and 0 (and the zero point) decode to exactly 0. */
static void test_asymmetric_zero_exact(void **state)
{
    (void)state;
    int64_t shape[2] = {3, 6};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    float v[18] = {0.3f, 0.7f, 0.0f, 1.0f, 0.45f, 0.9f,        /* all >= 0: zero point 0 */
                   -0.8f, -0.1f, 0.0f, -0.33f, -0.5f, -0.01f,  /* all <= 0: zero point qmax */
                   -0.37f, 0.0f, 1.3f, 0.77f, -0.05f, 0.0f};   /* both signs */
    memcpy(w->data, v, sizeof v);
    for (int bits = 2; bits <= 8; bits++) {
        void *cfg = make_cfg(bits, "channel", "asymmetric");
        run r;
        qh_error err = {{0}};
        assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
        const int32_t *z = r.q.zero->data;
        const uint8_t *c = r.q.codes->data;
        int qmax = (1 << bits) - 1;
        assert_int_equal(z[0], 0);
        assert_int_equal(z[1], qmax);
        assert_in_range(z[2], 1, qmax - 1);
        const float *y = qh_tensor_f32(r.deq);
        for (int i = 0; i < 18; i++)
            if (v[i] == 0.0f) {
                assert_true(y[i] == 0.0f);
                assert_int_equal(c[i], z[i / 6]);
            }
        assert_int_equal(c[3], qmax); /* the maximum of row 0 is the top code */
        assert_int_equal(c[6], 0);    /* the minimum of row 1 is the bottom code */
        check_result(w, &r, bits, 1, 1);
        run_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_zero_channel(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(4, 2, 11);
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(8, "channel", asym ? "asymmetric" : "symmetric");
        run r;
        qh_error err = {{0}};
        assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
        assert_true(qh_tensor_f32(r.q.scale)[2] == 1.0f);
        const uint8_t *c = r.q.codes->data; /* one byte per code in both modes */
        for (int i = 2 * 21; i < 3 * 21; i++) {
            assert_int_equal(c[i], 0);
            assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
        }
        if (asym)
            assert_int_equal(((int32_t *)r.q.zero->data)[2], 0);
        run_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(97, -1, 3);
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(5, "channel", asym ? "asymmetric" : "symmetric");
        run a, b;
        qh_error err = {{0}};
        qh_set_threads(1);
        assert_int_equal(quantize(cfg, w, &a, &err), QH_OK);
        qh_set_threads(2);
        assert_int_equal(quantize(cfg, w, &b, &err), QH_OK);
        assert_memory_equal(a.deq->data, b.deq->data, qh_tensor_nbytes(a.deq));
        assert_memory_equal(a.q.codes->data, b.q.codes->data, qh_tensor_nbytes(a.q.codes));
        assert_memory_equal(a.q.scale->data, b.q.scale->data, qh_tensor_nbytes(a.q.scale));
        run_free(&a);
        run_free(&b);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(3, -1, 5);
    void *cfg = make_cfg(8, "channel", "symmetric");
    run r;
    qh_error err = {{0}};
    qh_tensor_f32(w)[10] = NAN;
    assert_int_not_equal(quantize(cfg, w, &r, &err), QH_OK);
    assert_non_null(strstr(err.msg, "test.weight"));
    assert_non_null(strstr(err.msg, "element 10"));
    assert_null(r.q.codes); /* nothing allocated on failure */
    qh_tensor_free(r.deq);
    qh_tensor_f32(w)[10] = 0.0f;
    test_set_int(desc, cfg, "bits", 9);
    assert_int_not_equal(quantize(cfg, w, &r, &err), QH_OK);
    assert_non_null(strstr(err.msg, "bits"));
    qh_tensor_free(r.deq);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_LINEAR);
    assert_string_equal(lib->name, "qhost-quantizer-linear");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
    const qh_param *bits = test_param(desc, "bits");
    assert_int_equal(bits->def.i, 8);
    assert_true(bits->min == 2 && bits->max == 8);
    assert_string_equal(test_param(desc, "granularity")->choices[test_param(desc, "granularity")->def.i],
                        "channel");
    assert_string_equal(test_param(desc, "mode")->choices[test_param(desc, "mode")->def.i], "symmetric");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_all_grids),
        cmocka_unit_test(test_symmetric_extremes),
        cmocka_unit_test(test_asymmetric_zero_exact),
        cmocka_unit_test(test_zero_channel),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
