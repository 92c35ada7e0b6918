/* test_dropout.c - inverted dropout: mask statistics, reproducibility, forward/backward agreement. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

#define N 200003

static uint8_t *make_mask(int64_t n, double p, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    uint8_t *m = malloc((size_t)n);
    qh_k_dropout_mask(n, p, &r, m);
    return m;
}

/* The kept fraction is binomial: within 6 standard deviations of 1 - p. */
static void test_mask_fraction(void **state)
{
    (void)state;
    const double ps[] = {0.1, 0.5, 0.8};
    for (size_t k = 0; k < 3; k++) {
        uint8_t *m = make_mask(N, ps[k], 42 + k);
        int64_t kept = 0;
        for (int64_t i = 0; i < N; i++) {
            assert_true(m[i] <= 1);
            kept += m[i];
        }
        double frac = (double)kept / N, sd = sqrt(ps[k] * (1 - ps[k]) / N);
        assert_true(fabs(frac - (1 - ps[k])) <= 6 * sd);
        free(m);
    }
}

static void test_same_seed_same_mask(void **state)
{
    (void)state;
    uint8_t *a = make_mask(N, 0.3, 9), *b = make_mask(N, 0.3, 9), *c = make_mask(N, 0.3, 10);
    assert_memory_equal(a, b, N);
    assert_memory_not_equal(a, c, N);
    /* One uniform draw per element, in element order: the mask is a pure function of the stream. */
    qh_rng r;
    qh_rng_seed(&r, 9);
    for (int64_t i = 0; i < N; i++)
        assert_int_equal(a[i], qh_rng_uniform(&r) >= 0.3);
    free(a), free(b), free(c);
}

/* y = x / (1-p) where kept, exactly 0 where dropped; dx uses the same mask and scale; 1 and 2
 * threads agree byte for byte. */
static void test_forward_backward(void **state)
{
    (void)state;
    double p = 0.3;
    float scale = (float)(1.0 / (1.0 - p));
    uint8_t *m = make_mask(N, p, 5);
    qh_rng r;
    qh_rng_seed(&r, 6);
    float *x = falloc(N), *dy = falloc(N), *y1 = falloc(N), *y2 = falloc(N), *dx1 = falloc(N), *dx2 = falloc(N);
    fill_uniform(&r, x, N, -2.0f, 2.0f);
    fill_uniform(&r, dy, N, -2.0f, 2.0f);
    qh_set_threads(1);
    qh_k_dropout_fwd_f32(N, p, m, x, y1);
    qh_k_dropout_bwd_f32(N, p, m, dy, dx1);
    qh_set_threads(2);
    qh_k_dropout_fwd_f32(N, p, m, x, y2);
    qh_k_dropout_bwd_f32(N, p, m, dy, dx2);
    assert_true(bytes_equal(y1, y2, N * sizeof(float)));
    assert_true(bytes_equal(dx1, dx2, N * sizeof(float)));
    for (int64_t i = 0; i < N; i++) {
        assert_true(y1[i] == (m[i] ? x[i] * scale : 0.0f));
        assert_true(dx1[i] == (m[i] ? dy[i] * scale : 0.0f));
    }
    free(m), free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2);
}

/* Dropped elements stay 0 even when the input is Inf or NaN. */
static void test_dropped_nonfinite(void **state)
{
    (void)state;
    const float x[4] = {INFINITY, NAN, 1.0f, -INFINITY};
    const uint8_t m[4] = {0, 0, 1, 0};
    float y[4];
    qh_k_dropout_fwd_f32(4, 0.5, m, x, y);
    assert_true(y[0] == 0.0f && y[1] == 0.0f && y[2] == 2.0f && y[3] == 0.0f);
}

/* p == 0 keeps everything and copies the input unchanged. */
static void test_p_zero_copies(void **state)
{
    (void)state;
    uint8_t *m = make_mask(1001, 0.0, 3);
    float *x = falloc(1001), *y = falloc(1001);
    qh_rng r;
    qh_rng_seed(&r, 4);
    fill_uniform(&r, x, 1001, -1.0f, 1.0f);
    for (int i = 0; i < 1001; i++)
        assert_int_equal(m[i], 1);
    qh_k_dropout_fwd_f32(1001, 0.0, m, x, y);
    assert_memory_equal(x, y, 1001 * sizeof(float));
    free(m), free(x), free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_fraction),
        cmocka_unit_test(test_same_seed_same_mask),
        cmocka_unit_test(test_forward_backward),
        cmocka_unit_test(test_dropped_nonfinite),
        cmocka_unit_test(test_p_zero_copies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
