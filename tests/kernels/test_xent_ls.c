/* test_xent_ls.c - softmax cross-entropy with label smoothing: s = 0 against the plain kernel,
 * closed forms, optimized vs reference, 1 vs 2 threads byte-equal, finite differences of the loss,
 * and bad labels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef double (*xent_ls_fn)(int64_t, int64_t, const float *, const int32_t *, double, float *);
static const xent_ls_fn versions[2] = {qh_k_softmax_xent_ls_f32_ref, qh_k_softmax_xent_ls_f32};

static void make_batch(uint64_t seed, int64_t n, int64_t classes, float *z, int32_t *labels)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    fill_uniform(&r, z, n * classes, -6.0f, 6.0f);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)qh_rng_below(&r, (uint64_t)classes);
}

/* Without smoothing the loss and gradient are those of qh_k_softmax_xent_f32. */
static void test_zero_smoothing_is_plain(void **state)
{
    (void)state;
    enum { N = 13, K = 7 };
    float z[N * K], g0[N * K], g[N * K];
    int32_t labels[N];
    make_batch(3, N, K, z, labels);
    double want = qh_k_softmax_xent_f32_ref(N, K, z, labels, g0);
    for (int opt = 0; opt < 2; opt++) {
        double got = versions[opt](N, K, z, labels, 0.0, g);
        assert_float_equal(got, want, 1e-12 * want);
        assert_true(rel_err(g, g0, N * K) <= 1e-6);
    }
}

/* Equal logits: softmax is uniform, so the loss is log K for every s and dlogits = (1/K - q) / n. */
static void test_uniform_logits(void **state)
{
    (void)state;
    enum { N = 3, K = 5 };
    const double s = 0.1;
    float z[N * K], g[N * K];
    int32_t labels[N] = {0, 4, 2};
    for (int i = 0; i < N * K; i++)
        z[i] = 1.25f;
    for (int opt = 0; opt < 2; opt++) {
        double loss = versions[opt](N, K, z, labels, s, g);
        assert_float_equal(loss, log((double)K), 1e-12);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < K; j++) {
                double q = (1.0 - s) * (j == labels[i]) + s / K;
                assert_float_equal(g[i * K + j], (1.0 / K - q) / N, 1e-7);
            }
    }
}

/* A confident correct prediction still pays for the smoothing mass: with z = (a, 0, ..., 0) and
 * label 0, loss = (1 - s)(lse - a) + s (lse - a / K), lse = log(e^a + K - 1). */
static void test_confident_row(void **state)
{
    (void)state;
    enum { K = 4 };
    const double s = 0.2, a = 8.0;
    float z[K] = {(float)a, 0, 0, 0};
    int32_t label = 0;
    double lse = log(exp(a) + K - 1), want = (1 - s) * (lse - a) + s * (lse - a / K);
    for (int opt = 0; opt < 2; opt++)
        assert_float_equal(versions[opt](1, K, z, &label, s, NULL), want, 1e-12);
}

/* Rows sum to 0 in the gradient; opt agrees with ref; 1 and 2 threads give the same bytes. */
static void test_opt_matches_ref(void **state)
{
    (void)state;
    const int64_t sizes[][2] = {{1, 1}, {5, 3}, {17, 10}, {300, 37}, {600, 100}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k][0], c = sizes[k][1];
        float *z = falloc(n * c), *g[3] = {falloc(n * c), falloc(n * c), falloc(n * c)};
        int32_t *labels = calloc((size_t)n, sizeof *labels);
        make_batch(20 + k, n, c, z, labels);
        double loss[3];
        loss[0] = qh_k_softmax_xent_ls_f32_ref(n, c, z, labels, 0.1, g[0]);
        for (int t = 1; t <= 2; t++) {
            qh_set_threads(t);
            loss[t] = qh_k_softmax_xent_ls_f32(n, c, z, labels, 0.1, g[t]);
        }
        assert_float_equal(loss[1], loss[0], 1e-12 * fabs(loss[0]) + 1e-15);
        assert_true(rel_err(g[1], g[0], n * c) <= 1e-6);
        assert_memory_equal(&loss[1], &loss[2], sizeof(double));
        assert_true(bytes_equal(g[1], g[2], (size_t)(n * c) * sizeof(float)));
        for (int64_t i = 0; i < n; i++) {
            double row = 0.0;
            for (int64_t j = 0; j < c; j++)
                row += g[1][i * c + j];
            assert_float_equal(row, 0.0, 1e-7);
        }
        for (int v = 0; v < 3; v++)
            free(g[v]);
        free(z), free(labels);
    }
}

typedef struct fd_ctx {
    int64_t n, classes;
    const int32_t *labels;
    int opt;
} fd_ctx;

static double objective(const float *z, void *ctx)
{
    fd_ctx *c = ctx;
    return versions[c->opt](c->n, c->classes, z, c->labels, 0.1, NULL);
}

static void test_finite_differences(void **state)
{
    (void)state;
    enum { N = 4, K = 9 };
    float z[N * K], g[N * K], fd[N * K];
    int32_t labels[N];
    make_batch(77, N, K, z, labels);
    for (int opt = 0; opt < 2; opt++) {
        fd_ctx c = {N, K, labels, opt};
        versions[opt](N, K, z, labels, 0.1, g);
        finite_diff(objective, &c, z, N * K, 1e-2f, fd);
        assert_true(rel_err(g, fd, N * K) <= 1e-3);
    }
}

/* A label outside [0, classes) poisons its row and the loss instead of reading out of bounds. */
static void test_bad_label(void **state)
{
    (void)state;
    enum { N = 2, K = 3 };
    float z[N * K] = {1, 2, 3, 4, 5, 6}, g[N * K];
    int32_t labels[N] = {1, 3};
    for (int opt = 0; opt < 2; opt++) {
        assert_true(isnan(versions[opt](N, K, z, labels, 0.1, g)));
        assert_false(isnan(g[0]));
        assert_true(isnan(g[K]));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_smoothing_is_plain),
        cmocka_unit_test(test_uniform_logits),
        cmocka_unit_test(test_confident_row),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_bad_label),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
