/* test_xent.c - softmax cross-entropy: closed forms, stability, optimized vs reference, thread-count
 * independence and the gradient against finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

static void random_case(uint64_t seed, int64_t n, int64_t classes, float scale, float *z, int32_t *labels)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    fill_uniform(&r, z, n * classes, -scale, scale);
    for (int64_t i = 0; i < n; i++)
        labels[i] = (int32_t)qh_rng_below(&r, (uint64_t)classes);
}

/* Equal logits: loss = log(classes) and dlogits = (1/classes - onehot) / n. */
static void test_uniform_logits_closed_form(void **state)
{
    (void)state;
    enum { n = 3, C = 5 };
    float z[n * C], g[n * C];
    const int32_t labels[n] = {0, 4, 2};
    for (int i = 0; i < n * C; i++)
        z[i] = 0.75f;
    double loss = qh_k_softmax_xent_f32(n, C, z, labels, g);
    assert_true(fabs(loss - log((double)C)) <= 1e-12);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < C; j++)
            assert_float_equal(g[i * C + j], (float)((1.0 / C - (j == labels[i])) / n), 1e-8);
}

/* Huge logits do not overflow: shifting a row by a constant leaves the loss unchanged. */
static void test_stable_for_large_logits(void **state)
{
    (void)state;
    enum { n = 4, C = 7 };
    float z[n * C], zs[n * C], g[n * C], gs[n * C];
    int32_t labels[n];
    random_case(1, n, C, 3.0f, z, labels);
    for (int i = 0; i < n * C; i++)
        zs[i] = z[i] + 1.0e4f;
    double a = qh_k_softmax_xent_f32(n, C, z, labels, g);
    double b = qh_k_softmax_xent_f32(n, C, zs, labels, gs);
    assert_true(isfinite(b));
    assert_true(fabs(a - b) <= 1e-3); /* the shift itself rounds the logits to ~1e-3 */
    assert_true(rel_err(gs, g, n * C) <= 1e-2);
    zs[0] = 3.0e38f; /* one dominant logit: softmax is one-hot there, loss stays finite */
    assert_true(isfinite(qh_k_softmax_xent_f32(n, C, zs, labels, gs)));
}

/* Odd shapes, and a batch larger than the optimized version's summation block: the optimized
 * result is close to the reference and identical for 1 and 2 threads. */
static void test_opt_matches_ref_and_threads(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{1, 1}, {1, 3}, {7, 10}, {33, 17}, {1000, 10}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t n = shapes[k][0], C = shapes[k][1];
        float *z = falloc(n * C), *g0 = falloc(n * C), *g1 = falloc(n * C), *g2 = falloc(n * C);
        int32_t *labels = malloc((size_t)n * sizeof *labels);
        random_case(10 + k, n, C, 6.0f, z, labels);
        double l0 = qh_k_softmax_xent_f32_ref(n, C, z, labels, g0);
        qh_set_threads(1);
        double l1 = qh_k_softmax_xent_f32(n, C, z, labels, g1);
        qh_set_threads(2);
        double l2 = qh_k_softmax_xent_f32(n, C, z, labels, g2);
        assert_true(fabs(l1 - l0) <= 1e-12 * fmax(1.0, fabs(l0)));
        assert_true(rel_err(g1, g0, n * C) <= 1e-6);
        assert_memory_equal(&l1, &l2, sizeof l1);
        assert_true(bytes_equal(g1, g2, (size_t)(n * C) * sizeof(float)));
        /* NULL dlogits is allowed and does not change the loss */
        double l3 = qh_k_softmax_xent_f32(n, C, z, labels, NULL);
        assert_memory_equal(&l1, &l3, sizeof l1);
        free(z), free(g0), free(g1), free(g2), free(labels);
    }
}

typedef struct xent_ctx {
    int64_t n, classes;
    const int32_t *labels;
} xent_ctx;

static double xent_objective(const float *z, void *ctx)
{
    xent_ctx *c = ctx;
    return qh_k_softmax_xent_f32(c->n, c->classes, z, c->labels, NULL);
}

static void test_grad_finite_diff(void **state)
{
    (void)state;
    enum { n = 6, C = 9 };
    float z[n * C], g[n * C], fd[n * C], gr[n * C];
    int32_t labels[n];
    random_case(77, n, C, 4.0f, z, labels);
    qh_k_softmax_xent_f32(n, C, z, labels, g);
    qh_k_softmax_xent_f32_ref(n, C, z, labels, gr);
    xent_ctx c = {n, C, labels};
    finite_diff(xent_objective, &c, z, n * C, 1e-2f, fd);
    assert_true(rel_err(g, fd, n * C) <= 1e-3);
    assert_true(rel_err(gr, fd, n * C) <= 1e-3);
}

/* A label out of range is a caller bug: the result is NaN rather than an out-of-bounds read. */
static void test_bad_label_is_nan(void **state)
{
    (void)state;
    float z[6] = {0, 1, 2, 3, 4, 5}, g[6];
    const int32_t labels[2] = {1, 3};
    assert_true(isnan(qh_k_softmax_xent_f32(2, 3, z, labels, g)));
    assert_true(isnan(g[3]) && !isnan(g[0]));
    assert_true(isnan(qh_k_softmax_xent_f32_ref(2, 3, z, labels, g)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uniform_logits_closed_form),
        cmocka_unit_test(test_stable_for_large_logits),
        cmocka_unit_test(test_opt_matches_ref_and_threads),
        cmocka_unit_test(test_grad_finite_diff),
        cmocka_unit_test(test_bad_label_is_nan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
