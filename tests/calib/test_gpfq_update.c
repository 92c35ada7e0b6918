/* test_gpfq_update.c - GPFQ's loop: tiny layers worked by hand (plain, L1, L0, X~ != X), the codes
 * of the reference and the fast loop against a plain transcription of the seed's algorithm (U as an
 * N x m matrix, in double), pruned weights held at 0, identical codes for 1, 2 and 3 threads
 * (deterministic and stochastic rounding), and the transpose the loop reads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calib_test.h"
#include "gpfq_impl.h"

/* A problem over row-major X, X~ (m x d); the arrays live until problem_free. */
typedef struct owned {
    gpfq_problem p;
    float *xt, *xqt, *nrm;
} owned;

static owned problem(const float *w, const float *x, const float *xq, int64_t n, int64_t d, int64_t m, gpfq_alphabet a,
                     const uint8_t *mask)
{
    owned o;
    memset(&o, 0, sizeof o);
    int64_t mpad = gpfq_mpad(m);
    o.xt = qh_alloc_aligned(sizeof(float) * (size_t)(d * mpad));
    o.xqt = qh_alloc_aligned(sizeof(float) * (size_t)(d * mpad));
    o.nrm = malloc(sizeof(float) * (size_t)d);
    assert_non_null(o.xt);
    assert_non_null(o.xqt);
    gpfq_transpose(x, m, d, mpad, o.xt, NULL);
    gpfq_transpose(xq, m, d, mpad, o.xqt, o.nrm);
    o.p = (gpfq_problem){.rows = n,
                         .cols = d,
                         .m = m,
                         .mpad = mpad,
                         .w = w,
                         .xt = o.xt,
                         .xqt = o.xqt,
                         .nrm = o.nrm,
                         .mask = mask,
                         .a = a};
    qh_rng_seed(&o.p.rng, 3);
    return o;
}

static void problem_free(owned *o)
{
    qh_free_aligned(o->xt);
    qh_free_aligned(o->xqt);
    free(o->nrm);
}

static gpfq_alphabet alphabet(float step, int32_t k, int reg, float lambda, int stochastic)
{
    gpfq_alphabet a = {.step = step, .k = k, .reg = reg, .lambda = lambda, .stochastic = stochastic};
    return a;
}

/* Both loops on one problem: codes must be `want` and ||U||^2 `unorm`. */
static void expect_codes(owned *o, const int32_t *want, double unorm)
{
    int64_t n = o->p.rows * o->p.cols;
    int32_t *c1 = calloc((size_t)n, sizeof *c1), *c2 = calloc((size_t)n, sizeof *c2);
    double u1 = gpfq_run_ref(&o->p, c1), u2 = gpfq_run(&o->p, c2);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(c1[i], want[i]);
        assert_int_equal(c2[i], want[i]);
    }
    assert_close(u1, unorm, 1e-6);
    assert_close(u2, unorm, 1e-6);
    free(c1);
    free(c2);
}

/* Samples are the rows: X's columns are X_0 = (1, 1), X_1 = (1, 0); w = (0.2, 0.2); step 0.5, K 2.
 * t = 0: u = (0.2, 0.2), z = 0.4 / 2 = 0.2 -> 0.  t = 1: u = (0.4, 0.2), z = 0.4 -> 1 (0.5),
 * u = (-0.1, 0.2), ||U||^2 = 0.05. Rounding each weight alone would give (0, 0). */
static const float hand_x[] = {1.0f, 1.0f, 1.0f, 0.0f};
static const float hand_w[] = {0.2f, 0.2f};

static void test_hand_plain(void **state)
{
    (void)state;
    owned o = problem(hand_w, hand_x, hand_x, 1, 2, 2, alphabet(0.5f, 2, GPFQ_REG_NONE, 0.0f, 0), NULL);
    expect_codes(&o, (const int32_t[]){0, 1}, 0.05);
    problem_free(&o);
}

/* X~ differs: X~_0 = (1, 0.5). t = 0: z = (0.2 + 0.1) / 1.25 = 0.24 -> 0, u = (0.2, 0.2).
 * t = 1: u = (0.4, 0.2), z = 0.4 -> 1, u = (-0.1, 0.2). */
static void test_hand_xq(void **state)
{
    (void)state;
    const float xq[] = {1.0f, 1.0f, 0.5f, 0.0f};
    owned o = problem(hand_w, hand_x, xq, 1, 2, 2, alphabet(0.5f, 2, GPFQ_REG_NONE, 0.0f, 0), NULL);
    expect_codes(&o, (const int32_t[]){0, 1}, 0.05);
    problem_free(&o);
    /* a zero column of X~ gives code 0 whatever u is: t = 1 sees (0, 0) */
    const float xq0[] = {1.0f, 0.0f, 1.0f, 0.0f};
    o = problem(hand_w, hand_x, xq0, 1, 2, 2, alphabet(0.5f, 2, GPFQ_REG_NONE, 0.0f, 0), NULL);
    /* t = 0: z = 0.4 / 2 -> 0; t = 1: norm 0 -> 0; u = (0.4, 0.2) */
    expect_codes(&o, (const int32_t[]){0, 0}, 0.2);
    problem_free(&o);
}

/* L1, lambda 0.2: t = 1 sees z = 0.4 -> 0.2 -> 0; u = (0.4, 0.2), ||U||^2 = 0.2. */
static void test_hand_l1(void **state)
{
    (void)state;
    owned o = problem(hand_w, hand_x, hand_x, 1, 2, 2, alphabet(0.5f, 2, GPFQ_REG_L1, 0.2f, 0), NULL);
    expect_codes(&o, (const int32_t[]){0, 0}, 0.2);
    problem_free(&o);
}

/* L0, lambda 0.3, step 0.5: t = 0: z = 0.2 <= 0.3 -> 0. t = 1: z = 0.4 > 0.3, (0.4 - 0.3) / 0.5
 * rounds to 0 -> level number 1, value 0.3; u = (0.1, 0.2), ||U||^2 = 0.05. */
static void test_hand_l0(void **state)
{
    (void)state;
    gpfq_alphabet a = alphabet(0.5f, 2, GPFQ_REG_L0, 0.3f, 0);
    owned o = problem(hand_w, hand_x, hand_x, 1, 2, 2, a, NULL);
    expect_codes(&o, (const int32_t[]){0, 1}, 0.05);
    assert_close(gpfq_value(&a, 1), 0.3f, 0.0);
    problem_free(&o);
}

/* A pruned weight stays 0 and its share of the output is carried to the next coordinate: with
 * w_0 masked, t = 1 sees u = (0.4, 0.2) as above but t = 0 is forced to 0 even if z were large. */
static void test_hand_mask(void **state)
{
    (void)state;
    const float w[] = {2.0f, 0.2f};
    const uint8_t mask[] = {0, 1};
    owned o = problem(w, hand_x, hand_x, 1, 2, 2, alphabet(0.5f, 2, GPFQ_REG_NONE, 0.0f, 0), mask);
    /* t = 0: u = (2, 2), forced 0; t = 1: u = (2.2, 2), z = 2.2 -> clipped to 2 (1.0), u = (1.2, 2) */
    expect_codes(&o, (const int32_t[]){0, 2}, 1.44 + 4.0);
    problem_free(&o);
}

/* ---------------------------------------------------------------- against the seed's algorithm */

/* The seed's loop as written (step_algorithm.py, _quantization): all neurons at once, U is N x m. */
static double seed_gpfq(const float *w, const float *x, const float *xq, int64_t n, int64_t d, int64_t m,
                        const gpfq_alphabet *a, const uint8_t *mask, int32_t *codes)
{
    double *u = calloc((size_t)(n * m), sizeof *u);
    assert_non_null(u);
    for (int64_t t = 0; t < d; t++) {
        double norm = 0.0;
        for (int64_t i = 0; i < m; i++)
            norm += (double)xq[i * d + t] * xq[i * d + t];
        for (int64_t k = 0; k < n; k++) {
            double dot = 0.0;
            for (int64_t i = 0; i < m; i++) {
                u[k * m + i] += (double)w[k * d + t] * x[i * d + t];
                dot += u[k * m + i] * xq[i * d + t];
            }
            int32_t c = norm > 0.0 ? gpfq_code(a, (float)(dot / norm), NULL) : 0;
            if (mask && !mask[k * d + t])
                c = 0;
            codes[k * d + t] = c;
            for (int64_t i = 0; i < m; i++)
                u[k * m + i] -= (double)gpfq_value(a, c) * xq[i * d + t];
        }
    }
    double s = 0.0;
    for (int64_t i = 0; i < n * m; i++)
        s += u[i] * u[i];
    free(u);
    return s;
}

typedef struct layer {
    int64_t n, d, m;
    float *w, *x, *xq;
    uint8_t *mask;
} layer;

static layer random_layer(int64_t n, int64_t d, int64_t m, uint64_t seed, bool masked)
{
    layer l = {n,
               d,
               m,
               malloc(sizeof(float) * (size_t)(n * d)),
               malloc(sizeof(float) * (size_t)(m * d)),
               malloc(sizeof(float) * (size_t)(m * d)),
               masked ? malloc((size_t)(n * d)) : NULL};
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < n * d; i++)
        l.w[i] = (float)(0.3 * qh_rng_normal(&r));
    for (int64_t i = 0; i < m * d; i++) {
        double v = qh_rng_normal(&r);
        l.x[i] = (float)(v > 0 ? v : 0.1 * v); /* post-activation-like, some negatives */
        l.xq[i] = (float)(l.x[i] + 0.05 * qh_rng_normal(&r));
    }
    for (int64_t i = 0; masked && i < n * d; i++)
        l.mask[i] = qh_rng_uniform(&r) < 0.6;
    for (int64_t i = 0; masked && i < n * d; i++)
        l.w[i] = l.mask[i] ? l.w[i] : 0.0f; /* pruned weights are 0, as the host keeps them */
    return l;
}

static void layer_free(layer *l)
{
    free(l->w);
    free(l->x);
    free(l->xq);
    free(l->mask);
}

static void compare_with_seed(int bits, int reg, double lambda, bool masked)
{
    layer l = random_layer(7, 13, 50, 100 + (uint64_t)bits, masked);
    gpfq_alphabet a;
    qh_error err;
    assert_int_equal(
        gpfq_alphabet_make(bits, GPFQ_LEVELS_SEED, 1.16, gpfq_radius(l.w, l.n, l.d, 1.0), reg, lambda, 0, &a, &err),
        QH_OK);
    int32_t *want = calloc((size_t)(l.n * l.d), sizeof *want), *got = calloc((size_t)(l.n * l.d), sizeof *got);
    double u_seed = seed_gpfq(l.w, l.x, l.xq, l.n, l.d, l.m, &a, l.mask, want);
    owned o = problem(l.w, l.x, l.xq, l.n, l.d, l.m, a, l.mask);
    double u_ref = gpfq_run_ref(&o.p, got);
    assert_memory_equal(got, want, sizeof(int32_t) * (size_t)(l.n * l.d));
    double u_fast = gpfq_run(&o.p, got);
    assert_memory_equal(got, want, sizeof(int32_t) * (size_t)(l.n * l.d));
    assert_close(u_ref, u_seed, 1e-4 * u_seed);
    assert_close(u_fast, u_seed, 1e-4 * u_seed);
    int nonzero = 0, pruned_nonzero = 0;
    for (int64_t i = 0; i < l.n * l.d; i++) {
        nonzero += want[i] != 0;
        pruned_nonzero += l.mask && !l.mask[i] && want[i] != 0;
        assert_true(abs(want[i]) <= a.k + (reg == GPFQ_REG_L0));
    }
    assert_true(nonzero > 0); /* a real test: not everything rounds to 0 */
    assert_int_equal(pruned_nonzero, 0);
    problem_free(&o);
    free(want);
    free(got);
    layer_free(&l);
}

static void test_seed_plain(void **state)
{
    (void)state;
    for (int bits = 1; bits <= 5; bits++)
        compare_with_seed(bits, GPFQ_REG_NONE, 0.0, false);
}

static void test_seed_regularized(void **state)
{
    (void)state;
    compare_with_seed(4, GPFQ_REG_L1, 0.02, false);
    compare_with_seed(3, GPFQ_REG_L0, 0.05, false);
    compare_with_seed(4, GPFQ_REG_NONE, 0.0, true);
}

/* ---------------------------------------------------------------- thread counts */

static void threads_case(bool stochastic)
{
    layer l = random_layer(37, 64, 300, 77, false);
    gpfq_alphabet a;
    qh_error err;
    assert_int_equal(gpfq_alphabet_make(3, GPFQ_LEVELS_SEED, 1.16, gpfq_radius(l.w, l.n, l.d, 1.0), GPFQ_REG_NONE, 0.0,
                                        stochastic, &a, &err),
                     QH_OK);
    owned o = problem(l.w, l.x, l.xq, l.n, l.d, l.m, a, NULL);
    size_t bytes = sizeof(int32_t) * (size_t)(l.n * l.d);
    int32_t *one = malloc(bytes), *many = malloc(bytes);
    qh_set_threads(1);
    double u1 = gpfq_run(&o.p, one);
    for (int t = 2; t <= 3; t++) {
        qh_set_threads(t);
        double ut = gpfq_run(&o.p, many);
        assert_memory_equal(one, many, bytes);
        assert_true(u1 == ut); /* summed in block order */
    }
    gpfq_run_ref(&o.p, many); /* the same per-neuron streams in the reference */
    assert_memory_equal(one, many, bytes);
    qh_set_threads(2);
    problem_free(&o);
    free(one);
    free(many);
    layer_free(&l);
}

static void test_thread_invariance(void **state)
{
    (void)state;
    threads_case(false);
    threads_case(true);
}

static void transpose_case(int64_t m, int64_t d)
{
    float *x = malloc(sizeof(float) * (size_t)(m * d));
    for (int64_t i = 0; i < m * d; i++)
        x[i] = (float)(i % 17) - 8.0f + 0.25f * (float)(i % 5);
    int64_t mpad = gpfq_mpad(m);
    assert_int_equal(mpad % 16, 0);
    assert_true(mpad >= m && mpad < m + 16);
    float *xt = qh_alloc_aligned(sizeof(float) * (size_t)(d * mpad));
    float *ref = qh_alloc_aligned(sizeof(float) * (size_t)(d * mpad)), *nrm = malloc(sizeof(float) * (size_t)d);
    memset(xt, 0x7f, sizeof(float) * (size_t)(d * mpad)); /* garbage the padding must overwrite */
    gpfq_transpose(x, m, d, mpad, xt, nrm);
    gpfq_transpose_ref(x, m, d, mpad, ref);
    assert_memory_equal(xt, ref, sizeof(float) * (size_t)(d * mpad));
    for (int64_t t = 0; t < d; t++) {
        double s = 0.0;
        for (int64_t i = 0; i < m; i++) {
            assert_true(xt[t * mpad + i] == x[i * d + t]);
            s += (double)x[i * d + t] * x[i * d + t];
        }
        for (int64_t i = m; i < mpad; i++)
            assert_true(xt[t * mpad + i] == 0.0f);
        assert_close(nrm[t], s, 1e-6 * s);
    }
    qh_free_aligned(xt);
    qh_free_aligned(ref);
    free(nrm);
    free(x);
}

/* The fast transpose (8 x 8 AVX2 blocks) equals the plain one, padding included, for edge shapes. */
static void test_transpose(void **state)
{
    (void)state;
    const int64_t shapes[][2] = {{70, 9}, {13, 16}, {8, 8}, {1, 1}, {100, 25}, {33, 400}, {16, 7}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        transpose_case(shapes[k][0], shapes[k][1]);
}

int main(void)
{
    qh_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_plain),       cmocka_unit_test(test_hand_xq),
        cmocka_unit_test(test_hand_l1),          cmocka_unit_test(test_hand_l0),
        cmocka_unit_test(test_hand_mask),        cmocka_unit_test(test_seed_plain),
        cmocka_unit_test(test_seed_regularized), cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_transpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
