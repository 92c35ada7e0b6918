/* test_kmeans.c - the kmeans (Deep Compression weight sharing) quantizer, called through its ops.
 *
 * References: a hand-solved example, a plain serial Lloyd's algorithm written here (linear scan
 * over the centroids, sums in element order), and the core decoder qh_qtensor_dequantize.
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
    desc = test_plugin_desc(PLUGIN_KMEANS, QH_KIND_QUANTIZER, "kmeans");
    return desc ? 0 : -1;
}

static void *make_cfg(int bits, int max_iter)
{
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "bits", bits);
    test_set_int(desc, cfg, "max_iter", max_iter);
    return cfg;
}

typedef test_qrun run;
#define run_free test_qrun_free

static qh_status quantize(void *cfg, const qh_tensor *w, run *out, qh_error *err)
{
    return test_quantize(desc, cfg, w, out, err);
}

static qh_tensor *from_values(const float *v, int64_t n)
{
    qh_tensor *w = qh_tensor_new(QH_F32, 2, (int64_t[]){1, n}, NULL);
    memcpy(w->data, v, sizeof(float) * (size_t)n);
    return w;
}

static qh_tensor *make_weights(int64_t rows, int64_t cols, uint64_t seed)
{
    qh_tensor *w = qh_tensor_new(QH_F32, 2, (int64_t[]){rows, cols}, NULL);
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < rows * cols; i++)
        qh_tensor_f32(w)[i] = (float)(qh_rng_normal(&r) * 0.1);
    return w;
}

/* codes, code book and deq agree with the core decoder; the size is ceil(n * bits / 8) + 4 k. */
static void check_form(const qh_tensor *w, const run *r, int bits)
{
    const qh_qtensor *q = &r->q;
    int64_t n = qh_tensor_numel(w), k = (int64_t)1 << bits;
    assert_int_equal(q->bits, bits);
    assert_int_equal(q->codes->dtype, QH_U8);
    assert_null(q->scale);
    assert_null(q->zero);
    assert_int_equal(qh_tensor_numel(q->codebook), k);
    assert_int_equal(qh_qtensor_bytes(q), (n * bits + 7) / 8 + 4 * k);
    const uint8_t *c = q->codes->data;
    for (int64_t i = 0; i < n; i++)
        assert_true(c[i] < k);
    qh_tensor *dec = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(q, dec, &err), QH_OK);
    assert_memory_equal(dec->data, r->deq->data, qh_tensor_nbytes(dec));
    qh_tensor_free(dec);
}

/* Two clusters by hand: init {0, 1.2}; {0, .1, .2} and {1, 1.1, 1.2} -> centroids .1 and 1.1. */
static void test_hand_example(void **state)
{
    (void)state;
    float v[6] = {0.0f, 0.1f, 0.2f, 1.0f, 1.1f, 1.2f};
    qh_tensor *w = from_values(v, 6);
    void *cfg = make_cfg(1, 100);
    run r;
    qh_error err = {{0}};
    assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
    check_form(w, &r, 1);
    const float *book = qh_tensor_f32(r.q.codebook);
    assert_true(book[0] == (float)(((double)v[0] + v[1] + v[2]) / 3));
    assert_true(book[1] == (float)(((double)v[3] + v[4] + v[5]) / 3));
    const uint8_t *c = r.q.codes->data;
    for (int i = 0; i < 6; i++)
        assert_int_equal(c[i], i >= 3);
    run_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Serial Lloyd's algorithm from the definition. Returns the number of updates done. */
static int ref_kmeans(const float *x, int64_t n, int k, int max_iter, float *c, uint8_t *codes)
{
    float lo = x[0], hi = x[0];
    for (int64_t i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    for (int j = 0; j < k; j++)
        c[j] = lo + (hi - lo) * ((float)j / (float)(k - 1));
    c[k - 1] = hi;
    int it = 0, changed = 1;
    memset(codes, 0, (size_t)n);
    for (int pass = 0;; pass++) {
        if (pass > 0) {
            if (!changed || it == max_iter)
                break;
            double s[256] = {0};
            int64_t m[256] = {0};
            for (int64_t i = 0; i < n; i++) { /* each cluster's sum in element order */
                s[codes[i]] += x[i];
                m[codes[i]]++;
            }
            for (int j = 0; j < k; j++)
                if (m[j])
                    c[j] = (float)(s[j] / (double)m[j]);
            it++;
        }
        changed = 0;
        for (int64_t i = 0; i < n; i++) {
            int best = 0;
            for (int j = 1; j < k; j++)
                if (fabsf(x[i] - c[j]) < fabsf(x[i] - c[best]))
                    best = j;
            changed += codes[i] != best;
            codes[i] = (uint8_t)best;
        }
    }
    return it;
}

static void test_against_reference(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(60, 250, 1); /* 15000 elements, one chunk */
    int64_t n = qh_tensor_numel(w);
    uint8_t *codes = malloc((size_t)n);
    for (int bits = 1; bits <= 6; bits++) {
        for (int max_iter = 3; max_iter <= 100; max_iter += 97) {
            int k = 1 << bits;
            float c[64];
            ref_kmeans(qh_tensor_f32(w), n, k, max_iter, c, codes);
            void *cfg = make_cfg(bits, max_iter);
            run r;
            qh_error err = {{0}};
            assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
            check_form(w, &r, bits);
            assert_memory_equal(qh_tensor_f32(r.q.codebook), c, sizeof(float) * (size_t)k);
            assert_memory_equal(r.q.codes->data, codes, (size_t)n);
            run_free(&r);
            free(cfg);
        }
    }
    free(codes);
    qh_tensor_free(w);
}

static double mse_of(const float *x, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return s / (double)n;
}

/* Lloyd's iterations only lower the error: converged <= one update <= the linear initialization. */
static void test_error_decreases(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(50, 80, 4);
    int64_t n = qh_tensor_numel(w);
    double prev = INFINITY;
    for (int max_iter = 1; max_iter <= 100; max_iter *= 10) {
        void *cfg = make_cfg(3, max_iter);
        run r;
        qh_error err = {{0}};
        assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
        double e = mse_of(qh_tensor_f32(w), qh_tensor_f32(r.deq), n);
        assert_true(e <= prev);
        prev = e;
        /* every code is the nearest entry of the final code book, even when stopped by max_iter */
        const float *book = qh_tensor_f32(r.q.codebook);
        for (int64_t i = 0; i < n; i++) {
            float x = qh_tensor_f32(w)[i];
            float d = fabsf(x - book[((uint8_t *)r.q.codes->data)[i]]);
            for (int j = 0; j < 8; j++)
                assert_true(d <= fabsf(x - book[j]));
        }
        run_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* Two far-apart values and 4 centroids: the middle two never get a weight and keep their place. */
static void test_empty_clusters(void **state)
{
    (void)state;
    float v[7] = {0, 0, 0, 0, 9, 9, 9};
    qh_tensor *w = from_values(v, 7);
    void *cfg = make_cfg(2, 100);
    run r;
    qh_error err = {{0}};
    assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
    check_form(w, &r, 2);
    const float *book = qh_tensor_f32(r.q.codebook);
    assert_true(book[0] == 0.0f && book[3] == 9.0f);
    assert_true(book[1] == 9.0f * (1.0f / 3.0f) && book[2] == 9.0f * (2.0f / 3.0f));
    for (int i = 0; i < 7; i++)
        assert_true(qh_tensor_f32(r.deq)[i] == v[i]);
    run_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* All zeros (a seed's NaN / endless-loop case): finite, exact, terminates. */
static void test_constant(void **state)
{
    (void)state;
    float v[5] = {0, 0, 0, 0, 0};
    qh_tensor *w = from_values(v, 5);
    void *cfg = make_cfg(4, 100);
    run r;
    qh_error err = {{0}};
    assert_int_equal(quantize(cfg, w, &r, &err), QH_OK);
    check_form(w, &r, 4);
    for (int i = 0; i < 5; i++)
        assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
    run_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(300, 1001, 8); /* ~9 chunks of 32 Ki */
    void *cfg = make_cfg(5, 100);
    run a, b;
    qh_error err = {{0}};
    qh_set_threads(1);
    assert_int_equal(quantize(cfg, w, &a, &err), QH_OK);
    qh_set_threads(2);
    assert_int_equal(quantize(cfg, w, &b, &err), QH_OK);
    assert_memory_equal(a.q.codes->data, b.q.codes->data, qh_tensor_nbytes(a.q.codes));
    assert_memory_equal(a.q.codebook->data, b.q.codebook->data, qh_tensor_nbytes(a.q.codebook));
    assert_memory_equal(a.deq->data, b.deq->data, qh_tensor_nbytes(a.deq));
    run_free(&a);
    run_free(&b);
    free(cfg);
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(3, 7, 5);
    void *cfg = make_cfg(4, 100);
    run r;
    qh_error err = {{0}};
    qh_tensor_f32(w)[4] = INFINITY;
    assert_int_not_equal(quantize(cfg, w, &r, &err), QH_OK);
    assert_non_null(strstr(err.msg, "test.weight"));
    assert_non_null(strstr(err.msg, "element 4"));
    assert_null(r.q.codes);
    qh_tensor_free(r.deq);
    qh_tensor_f32(w)[4] = 0.0f;
    test_set_int(desc, cfg, "bits", 9);
    assert_int_not_equal(quantize(cfg, w, &r, &err), QH_OK);
    assert_non_null(strstr(err.msg, "bits = 9"));
    qh_tensor_free(r.deq);
    test_set_int(desc, cfg, "bits", 0);
    assert_int_not_equal(quantize(cfg, w, &r, &err), QH_OK);
    qh_tensor_free(r.deq);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_KMEANS);
    assert_string_equal(lib->name, "qhost-quantizer-kmeans");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
    const qh_param *bits = test_param(desc, "bits");
    assert_true(bits->min == 1 && bits->max == 8);
    assert_int_equal(test_param(desc, "max_iter")->def.i, 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_error_decreases),
        cmocka_unit_test(test_empty_clusters),
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
