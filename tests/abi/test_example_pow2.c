/* test_example_pow2.c - the out-of-tree example quantizer (examples/plugins/pow2) loaded like any
 * plugin; its nearest-level search (log domain) against a brute-force search over the code book. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_registry.h"

typedef struct pow2_cfg { /* mirrors the plugin's config block */
    int64_t bits;
    int range;
} pow2_cfg;

/* Weights of mixed sign and magnitude over four decades, from a fixed LCG. */
static void fill_weights(float *w, int n)
{
    uint32_t s = 12345u;
    for (int i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        float u = (float)(s >> 8) / 16777216.0f;        /* [0, 1) */
        float mag = powf(10.0f, -4.0f * u) * 3.0f;       /* 3e-4 .. 3 */
        w[i] = (s & 1u) ? -mag : mag;
    }
    w[7] = 0.0f;
}

static void check_one(const qh_plugin *p, int64_t bits, int range)
{
    enum { ROWS = 16, COLS = 32, N = ROWS * COLS };
    const int64_t shape[2] = {ROWS, COLS};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL), *deq = qh_tensor_new(QH_F32, 2, shape, NULL);
    fill_weights(qh_tensor_f32(w), N);
    pow2_cfg cfg = {bits, range};
    qh_quantizer qz;
    qh_qtensor q;
    qh_error err;
    assert_int_equal(qh_quantizer_create(&qz, p, &cfg, &err), QH_OK);
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_OK);

    const int levels = (1 << (bits - 1)) - 1;
    assert_int_equal(qh_tensor_numel(q.codebook), 2 * levels + 1);
    const float *cb = qh_tensor_f32(q.codebook);
    const float top = qh_tensor_f32(q.scale)[0];
    float amax = 0;
    for (int i = 0; i < N; i++)
        amax = fmaxf(amax, fabsf(qh_tensor_f32(w)[i]));
    if (range == 0) {
        assert_float_equal(top, amax, 0);
    } else {
        int e;
        assert_float_equal(frexpf(top, &e), 0.5f, 0); /* an exact power of two ... */
        assert_true(top >= amax && top < 2 * amax);   /* ... the smallest one above max|w| */
    }
    for (int i = 0; i < N; i++) {
        float x = qh_tensor_f32(w)[i];
        int best = 0; /* brute force: the nearest of all code-book levels */
        for (int c = 1; c < 2 * levels + 1; c++)
            if (fabsf(cb[c] * top - x) < fabsf(cb[best] * top - x))
                best = c;
        int32_t code = ((int32_t *)q.codes->data)[i];
        assert_int_equal(code, best);
        assert_float_equal(qh_tensor_f32(deq)[i], cb[code] * top, 0);
    }
    qh_qtensor_clear(&q);
    qh_quantizer_destroy(&qz);
    qh_tensor_free(w);
    qh_tensor_free(deq);
}

static void test_pow2(void **state)
{
    (void)state;
    qh_registry *r = qh_registry_new();
    qh_error err = {{0}};
    assert_int_equal(qh_registry_load_file(r, QH_ABI_BUILD "/example-pow2.so", &err), QH_OK);
    const qh_plugin *p = qh_registry_find(r, QH_KIND_QUANTIZER, "pow2");
    assert_non_null(p);
    for (int64_t bits = 2; bits <= 8; bits++)
        for (int range = 0; range < 2; range++)
            check_one(p, bits, range);

    /* its ABI 1.1 accepts(): weight matrices only */
    const int64_t s2[2] = {2, 2}, s1[1] = {2};
    qh_tensor *m = qh_tensor_new(QH_F32, 2, s2, NULL), *v = qh_tensor_new(QH_F32, 1, s1, NULL);
    pow2_cfg cfg = {4, 0};
    qh_quantizer qz;
    assert_int_equal(qh_quantizer_create(&qz, p, &cfg, &err), QH_OK);
    assert_true(qh_quantizer_accepts(&qz, "fc1.weight", m));
    assert_false(qh_quantizer_accepts(&qz, "fc1.bias", m));
    assert_false(qh_quantizer_accepts(&qz, "fc1.weight", v));
    qh_quantizer_destroy(&qz);
    qh_tensor_free(m);
    qh_tensor_free(v);
    qh_registry_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pow2)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
