/* test_eltwise.c - ReLU and tanh: optimized vs reference, thread-count independence, gradients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

/* Odd lengths around the 8-lane vector width, plus one above the threading threshold. */
static const int64_t sizes[] = {1, 7, 8, 9, 31, 1001, 100003};
#define N_SIZES (sizeof sizes / sizeof sizes[0])

/* Random values with the special cases the vector path must treat like the scalar one. */
static float *special_input(int64_t n, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = falloc(n);
    fill_uniform(&r, x, n, -3.0f, 3.0f);
    const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f, -1e-40f, 20.0f, -20.0f};
    for (size_t k = 0; k < sizeof special / sizeof special[0] && (int64_t)k * 3 < n; k++)
        x[k * 3] = special[k];
    return x;
}

typedef void (*un_fn)(int64_t, const float *, float *);
typedef void (*bin_fn)(int64_t, const float *, const float *, float *);

static void check_unary(un_fn opt, un_fn ref)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t n = sizes[s];
        float *x = special_input(n, 11 + s), *a = falloc(n), *b = falloc(n), *c = falloc(n);
        ref(n, x, a);
        qh_set_threads(1);
        opt(n, x, b);
        qh_set_threads(2);
        opt(n, x, c);
        assert_true(bytes_equal(a, b, (size_t)n * sizeof *a));
        assert_true(bytes_equal(b, c, (size_t)n * sizeof *b));
        free(x), free(a), free(b), free(c);
    }
}

static void check_binary(bin_fn opt, bin_fn ref)
{
    for (size_t s = 0; s < N_SIZES; s++) {
        int64_t n = sizes[s];
        float *y = special_input(n, 21 + s), *dy = special_input(n, 31 + s);
        float *a = falloc(n), *b = falloc(n), *c = falloc(n);
        ref(n, y, dy, a);
        qh_set_threads(1);
        opt(n, y, dy, b);
        qh_set_threads(2);
        opt(n, y, dy, c);
        assert_true(bytes_equal(a, b, (size_t)n * sizeof *a));
        assert_true(bytes_equal(b, c, (size_t)n * sizeof *b));
        free(y), free(dy), free(a), free(b), free(c);
    }
}

static void test_relu_opt_matches_ref(void **state)
{
    (void)state;
    check_unary(qh_k_relu_fwd_f32, qh_k_relu_fwd_f32_ref);
    check_binary(qh_k_relu_bwd_f32, qh_k_relu_bwd_f32_ref);
}

static void test_tanh_opt_matches_ref(void **state)
{
    (void)state;
    check_unary(qh_k_tanh_fwd_f32, qh_k_tanh_fwd_f32_ref);
    check_binary(qh_k_tanh_bwd_f32, qh_k_tanh_bwd_f32_ref);
}

/* ReLU: y = max(x, 0) and dx = dy exactly where x > 0, 0 elsewhere (derived from x, not from y). */
static void test_relu_values_and_exact_grad(void **state)
{
    (void)state;
    int64_t n = 1001;
    float *x = special_input(n, 5), *y = falloc(n), *dy = special_input(n, 6), *dx = falloc(n);
    qh_k_relu_fwd_f32(n, x, y);
    qh_k_relu_bwd_f32(n, y, dy, dx);
    for (int64_t i = 0; i < n; i++) {
        int pos = x[i] > 0.0f;
        assert_true(pos ? y[i] == x[i] : (y[i] == 0.0f && !signbit(y[i])));
        if (pos)
            assert_memory_equal(&dx[i], &dy[i], sizeof(float));
        else
            assert_true(dx[i] == 0.0f);
    }
    free(x), free(y), free(dy), free(dx);
}

/* tanhf against the double-precision tanh: within 2 ulp. */
static void test_tanh_forward_accuracy(void **state)
{
    (void)state;
    int64_t n = 4099;
    qh_rng r;
    qh_rng_seed(&r, 7);
    float *x = falloc(n), *y = falloc(n);
    fill_uniform(&r, x, n, -9.0f, 9.0f);
    qh_k_tanh_fwd_f32(n, x, y);
    for (int64_t i = 0; i < n; i++) {
        double t = tanh((double)x[i]);
        assert_true(fabs((double)y[i] - t) <= 2.0 * fabs(nextafterf((float)t, 2.0f) - (float)t));
    }
    free(x), free(y);
}

typedef struct tanh_ctx {
    int64_t n;
    const float *w;
    float *y;
} tanh_ctx;

static double tanh_objective(const float *x, void *ctx)
{
    tanh_ctx *c = ctx;
    qh_k_tanh_fwd_f32(c->n, x, c->y);
    return dot_f64(c->w, c->y, c->n);
}

static void test_tanh_grad_finite_diff(void **state)
{
    (void)state;
    int64_t n = 67;
    qh_rng r;
    qh_rng_seed(&r, 8);
    float *x = falloc(n), *y = falloc(n), *dy = falloc(n), *dx = falloc(n), *fd = falloc(n);
    fill_uniform(&r, x, n, -2.5f, 2.5f);
    fill_uniform(&r, dy, n, -1.0f, 1.0f);
    qh_k_tanh_fwd_f32(n, x, y);
    qh_k_tanh_bwd_f32(n, y, dy, dx);
    tanh_ctx c = {n, dy, falloc(n)};
    finite_diff(tanh_objective, &c, x, n, 1e-2f, fd);
    assert_true(rel_err(dx, fd, n) <= 1e-3);
    free(x), free(y), free(dy), free(dx), free(fd), free(c.y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_opt_matches_ref),
        cmocka_unit_test(test_tanh_opt_matches_ref),
        cmocka_unit_test(test_relu_values_and_exact_grad),
        cmocka_unit_test(test_tanh_forward_accuracy),
        cmocka_unit_test(test_tanh_grad_finite_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
