/* test_relu6_add.c - ReLU6 and the residual add: closed forms at the clamps, optimized vs reference
 * bit for bit (vector tails, special values), 1 vs 2 threads byte-equal, finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

/* Lengths around the 8-lane vectors; the last is split over threads. */
static const int64_t lengths[] = {0, 1, 7, 8, 9, 31, 100, 70001};
#define N_LENGTHS (sizeof lengths / sizeof lengths[0])

/* Values in [-3, 9] with the clamp points, signed zeros, infinities and NaN sprinkled in. */
static void fill_special(qh_rng *r, float *x, int64_t n)
{
    const float special[] = {0.0f, -0.0f, 6.0f, 5.9999995f, 6.0000005f, 1e-45f, -1e-45f, INFINITY, -INFINITY, NAN};
    fill_uniform(r, x, n, -3.0f, 9.0f);
    for (int64_t i = 0; i < n; i += 3)
        x[i] = special[(i / 3) % (sizeof special / sizeof special[0])];
}

static void test_relu6_closed_form(void **state)
{
    (void)state;
    const float x[9] = {-2.0f, -0.0f, 0.0f, 1e-45f, 3.0f, 5.9999995f, 6.0f, 7.5f, INFINITY};
    const float want_y[9] = {0.0f, 0.0f, 0.0f, 1e-45f, 3.0f, 5.9999995f, 6.0f, 6.0f, 6.0f};
    const float want_dx[9] = {0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f}; /* strict (0, 6) */
    float dy[9], y[9], dx[9];
    for (int i = 0; i < 9; i++)
        dy[i] = 1.0f;
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_relu6_fwd_f32 : qh_k_relu6_fwd_f32_ref)(9, x, y);
        (opt ? qh_k_relu6_bwd_f32 : qh_k_relu6_bwd_f32_ref)(9, x, dy, dx);
        for (int i = 0; i < 9; i++) {
            assert_float_equal(y[i], want_y[i], 0.0f);
            assert_float_equal(dx[i], want_dx[i], 0.0f);
        }
    }
}

static void test_add_closed_form(void **state)
{
    (void)state;
    float a[11], b[11], y[11];
    for (int i = 0; i < 11; i++)
        a[i] = (float)i, b[i] = 0.5f - (float)(2 * i);
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_add_f32 : qh_k_add_f32_ref)(11, a, b, y);
        for (int i = 0; i < 11; i++)
            assert_float_equal(y[i], 0.5f - (float)i, 0.0f);
    }
}

/* Optimized == reference byte for byte, for 1 and 2 threads, including NaN and the clamp points. */
static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LENGTHS; k++) {
        int64_t n = lengths[k];
        qh_rng r;
        qh_rng_seed(&r, 300 + k);
        float *x = falloc(n), *b = falloc(n), *dy = falloc(n);
        fill_special(&r, x, n);
        fill_uniform(&r, b, n, -5.0f, 5.0f);
        fill_uniform(&r, dy, n, -1.0f, 1.0f);
        float *out[3][3]; /* [version][y, dx, sum] */
        for (int v = 0; v < 3; v++)
            for (int j = 0; j < 3; j++)
                out[v][j] = falloc(n);
        qh_k_relu6_fwd_f32_ref(n, x, out[0][0]);
        qh_k_relu6_bwd_f32_ref(n, x, dy, out[0][1]);
        qh_k_add_f32_ref(n, x, b, out[0][2]);
        for (int v = 1; v < 3; v++) {
            qh_set_threads(v);
            qh_k_relu6_fwd_f32(n, x, out[v][0]);
            qh_k_relu6_bwd_f32(n, x, dy, out[v][1]);
            qh_k_add_f32(n, x, b, out[v][2]);
            for (int j = 0; j < 3; j++)
                assert_true(bytes_equal(out[v][j], out[0][j], (size_t)n * sizeof(float)));
        }
        for (int v = 0; v < 3; v++)
            for (int j = 0; j < 3; j++)
                free(out[v][j]);
        free(x), free(b), free(dy);
    }
}

/* Writing the sum over either input is safe: every output reads only its own position. */
static void test_add_in_place(void **state)
{
    (void)state;
    enum { N = 1003 };
    qh_rng r;
    qh_rng_seed(&r, 9);
    float a[N], b[N], want[N], y[N];
    fill_uniform(&r, a, N, -1.0f, 1.0f);
    fill_uniform(&r, b, N, -1.0f, 1.0f);
    qh_k_add_f32_ref(N, a, b, want);
    memcpy(y, a, sizeof y);
    qh_k_add_f32(N, y, b, y);
    assert_memory_equal(y, want, sizeof y);
    memcpy(y, b, sizeof y);
    qh_k_add_f32(N, a, y, y);
    assert_memory_equal(y, want, sizeof y);
}

typedef struct fd_ctx {
    const float *w;
    float *y;
    int64_t n;
} fd_ctx;

static double relu6_objective(const float *x, void *ctx)
{
    fd_ctx *c = ctx;
    qh_k_relu6_fwd_f32(c->n, x, c->y);
    return dot_f64(c->w, c->y, c->n);
}

/* Inputs kept 0.05 away from the kinks at 0 and 6, where the derivative is undefined. */
static void test_relu6_finite_differences(void **state)
{
    (void)state;
    enum { N = 97 };
    qh_rng r;
    qh_rng_seed(&r, 11);
    float x[N], w[N], y[N], dx[N], g[N];
    fill_uniform(&r, x, N, -3.0f, 9.0f);
    fill_uniform(&r, w, N, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) {
        if (fabsf(x[i]) < 0.05f)
            x[i] = x[i] < 0 ? -0.05f : 0.05f;
        if (fabsf(x[i] - 6.0f) < 0.05f)
            x[i] = x[i] < 6.0f ? 5.95f : 6.05f;
    }
    fd_ctx c = {w, y, N};
    qh_k_relu6_bwd_f32(N, x, w, dx);
    finite_diff(relu6_objective, &c, x, N, 1e-2f, g);
    assert_true(rel_err(dx, g, N) <= 1e-3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu6_closed_form),
        cmocka_unit_test(test_add_closed_form),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_add_in_place),
        cmocka_unit_test(test_relu6_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
