/* test_kmeans.c - the kmeans (Deep Compression weight sharing) quantizer, called through its ops.
 *
 * References: a hand-solved example, a plain serial Lloyd's algorithm written here (linear scan
 * over the centroids, sums in element order; on these weights double sums are exact, as the
 * plugin's integer sums are), and the core decoder qh_qtensor_dequantize. The plugin's own two
 * paths (km_ref.c: a pass per iteration; km_fast.c: sorted weights, prefix sums, step table) are
 * compiled in and compared byte for byte.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/kmeans/km_impl.h"
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
    return test_config_ints(desc, "bits", bits, "max_iter", max_iter);
}

static qh_status quantize(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err)
{
    return test_quantize(desc, cfg, w, out, err);
}

static qh_tensor *make_weights(int64_t rows, int64_t cols, uint64_t seed)
{
    return test_gaussian(2, (int64_t[]){rows, cols}, seed, 0.1, NULL);
}

/* codes, code book and deq agree with the core decoder; the size is ceil(n * bits / 8) + 4 k. */
static void check_form(const qh_tensor *w, const test_qrun *r, int bits)
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
    test_check_decoder(r);
}

/* Two clusters by hand: init {.05, 1.2}; {.05, .1, .2} and {1, 1.1, 1.2} -> their means. */
static void test_hand_example(void **state)
{
    (void)state;
    float v[6] = {0.05f, 0.1f, 0.2f, 1.0f, 1.1f, 1.2f};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, 6}, v);
    void *cfg = make_cfg(1, 100);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    check_form(w, &r, 1);
    const float *book = qh_tensor_f32(r.q.codebook);
    assert_true(book[0] == (float)(((double)v[0] + v[1] + v[2]) / 3));
    assert_true(book[1] == (float)(((double)v[3] + v[4] + v[5]) / 3));
    const uint8_t *c = r.q.codes->data;
    for (int i = 0; i < 6; i++)
        assert_int_equal(c[i], i >= 3);
    test_qrun_free(&r);
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
        changed |= pass == 0; /* the first assignment has nothing to compare with: always one update */
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
            test_qrun r = test_quantize_ok(quantize, cfg, w);
            check_form(w, &r, bits);
            assert_memory_equal(qh_tensor_f32(r.q.codebook), c, sizeof(float) * (size_t)k);
            assert_memory_equal(r.q.codes->data, codes, (size_t)n);
            test_qrun_free(&r);
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
        test_qrun r = test_quantize_ok(quantize, cfg, w);
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
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* Two far-apart values and 4 centroids: the middle two never get a weight and keep their place. */
static void test_empty_clusters(void **state)
{
    (void)state;
    float v[7] = {1, 1, 1, 1, 9, 9, 9};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, 7}, v);
    void *cfg = make_cfg(2, 100);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    check_form(w, &r, 2);
    const float *book = qh_tensor_f32(r.q.codebook);
    assert_true(book[0] == 1.0f && book[3] == 9.0f);
    assert_true(book[1] == 1.0f + 8.0f * (1.0f / 3.0f) && book[2] == 1.0f + 8.0f * (2.0f / 3.0f));
    for (int i = 0; i < 7; i++)
        assert_true(qh_tensor_f32(r.deq)[i] == v[i]);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* All zeros (a seed's NaN / endless-loop case): finite, exact, terminates. */
static void test_constant(void **state)
{
    (void)state;
    float v[5] = {0, 0, 0, 0, 0};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){1, 5}, v);
    void *cfg = make_cfg(4, 100);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    check_form(w, &r, 4);
    for (int i = 0; i < 5; i++)
        assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Pruned weights stay pruned: with exact zeros (+0 and -0) code 0 is 0.0 and belongs to exactly the
 * zeros; the other 2^bits - 1 values are Lloyd's centroids of the nonzero weights alone (the
 * reference here runs on the nonzero values with k - 1 centroids). */
static void test_pruned_zeros(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(40, 100, 9);
    float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w), nz = 0;
    for (int64_t i = 0; i < n; i++)
        if (i % 3 != 1) /* two thirds pruned, some as -0 */
            x[i] = i % 7 == 0 ? -0.0f : 0.0f;
    float *vals = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0.0f)
            vals[nz++] = x[i];
    uint8_t *ref_codes = malloc((size_t)nz);
    for (int bits = 1; bits <= 5; bits++) {
        int k = 1 << bits;
        float c[32];
        ref_kmeans(vals, nz, k - 1, 100, c, ref_codes);
        void *cfg = make_cfg(bits, 100);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        check_form(w, &r, bits);
        const float *book = qh_tensor_f32(r.q.codebook), *y = qh_tensor_f32(r.deq);
        const uint8_t *code = r.q.codes->data;
        assert_true(book[0] == 0.0f && !signbit(book[0]));
        assert_memory_equal(book + 1, c, sizeof(float) * (size_t)(k - 1));
        for (int64_t i = 0, j = 0; i < n; i++) {
            if (x[i] == 0.0f) {
                assert_int_equal(code[i], 0);
                assert_true(y[i] == 0.0f);
            } else {
                assert_int_equal(code[i], ref_codes[j++] + 1);
                assert_true(y[i] != 0.0f);
            }
        }
        test_qrun_free(&r);
        free(cfg);
    }
    free(vals);
    free(ref_codes);
    qh_tensor_free(w);
}

/* km_run's reference and fast paths, byte for byte: codes, book, deq (and codes alone), the number
 * of updates, on Gaussian weights, pruned ones, few distinct values (empty clusters, ties), a
 * constant tensor and a wide dynamic range; each with 1 and 2 threads. */
static void run_both(const qh_tensor *w, int bits, int max_iter)
{
    int64_t n = qh_tensor_numel(w), k = (int64_t)1 << bits;
    kmeans_cfg cfg = {bits, max_iter};
    uint8_t *c[3];
    float *d[3], b[3][256];
    km_info info[3];
    for (int v = 0; v < 3; v++) { /* reference 1 thread, fast 1 thread, fast 2 threads */
        c[v] = malloc((size_t)n);
        d[v] = malloc(sizeof(float) * (size_t)n);
        qh_set_threads(v == 2 ? 2 : 1);
        km_out o = {c[v], b[v], d[v]};
        assert_int_equal(km_run(&cfg, w, &o, v > 0, &info[v]), KM_OK);
    }
    for (int v = 1; v < 3; v++) {
        assert_memory_equal(c[0], c[v], (size_t)n);
        assert_memory_equal(b[0], b[v], sizeof(float) * (size_t)k);
        assert_memory_equal(d[0], d[v], sizeof(float) * (size_t)n);
        assert_int_equal(info[0].updates, info[v].updates);
        assert_int_equal(info[0].converged, info[v].converged);
    }
    km_out o = {c[1], b[1], NULL}; /* codes only */
    memset(c[1], 0xEE, (size_t)n);
    assert_int_equal(km_run(&cfg, w, &o, 1, NULL), KM_OK);
    assert_memory_equal(c[0], c[1], (size_t)n);
    for (int v = 0; v < 3; v++) {
        free(c[v]);
        free(d[v]);
    }
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    qh_tensor *g = make_weights(123, 457, 21); /* 56211 elements: several chunks and a tail */
    for (int bits = 1; bits <= 8; bits++)
        run_both(g, bits, bits == 8 ? 20 : 100);
    float *x = qh_tensor_f32(g);
    int64_t n = qh_tensor_numel(g);
    qh_tensor *p = qh_tensor_clone(g, NULL), *q = qh_tensor_clone(g, NULL), *e = qh_tensor_clone(g, NULL);
    float *xp = qh_tensor_f32(p), *xq = qh_tensor_f32(q), *xe = qh_tensor_f32(e);
    for (int64_t i = 0; i < n; i++) {
        xp[i] = i % 4 ? 0.0f : x[i];                     /* 75 % pruned */
        xq[i] = (float)((int)(x[i] * 20.0f)) * 0.125f;   /* few distinct values, exact zeros among them */
        xe[i] = x[i] * (i % 5 == 0 ? 1e-30f : 1e6f);     /* magnitudes 36 decades apart */
    }
    for (int bits = 2; bits <= 8; bits += 3) {
        run_both(p, bits, 100);
        run_both(q, bits, 100);
        run_both(e, bits, 30);
    }
    for (int64_t i = 0; i < n; i++)
        xq[i] = 0.75f;
    run_both(q, 4, 100); /* constant */
    for (int64_t i = 0; i < n; i++)
        xq[i] = i % 2 ? 0.0f : -0.0f;
    run_both(q, 3, 100); /* all zeros */
    qh_tensor_free(g);
    qh_tensor_free(p);
    qh_tensor_free(q);
    qh_tensor_free(e);
    qh_set_threads(1);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(300, 1001, 8); /* ~9 chunks of 32 Ki */
    void *cfg = make_cfg(5, 100);
    test_assert_threads_identical(quantize, cfg, w, TEST_SAME_CODES | TEST_SAME_CODEBOOK | TEST_SAME_DEQ);
    free(cfg);
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(3, 7, 5);
    void *cfg = make_cfg(4, 100);
    qh_error err = {{0}};
    qh_tensor_f32(w)[4] = INFINITY;
    test_expect_reject(quantize, cfg, w, "element 4", TEST_REJ_NAMED | TEST_REJ_NO_CODES, &err);
    qh_tensor_f32(w)[4] = 0.0f;
    test_set_int(desc, cfg, "bits", 9);
    test_expect_reject(quantize, cfg, w, "bits = 9", 0, &err);
    test_set_int(desc, cfg, "bits", 0);
    test_expect_reject(quantize, cfg, w, NULL, 0, &err);
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
        cmocka_unit_test(test_pruned_zeros),
        cmocka_unit_test(test_fast_matches_reference),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
