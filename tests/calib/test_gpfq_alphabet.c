/* test_gpfq_alphabet.c - GPFQ's alphabet and scalar quantizers against hand-computed values: level
 * counts and storage bits per bit width (seed: 2^b + 1, strict: 2^b - 1), the radius as the mean
 * row quantile (torch.quantile's interpolation), the step, MSQ with the reference's floor(x + 1/2)
 * ties, L1 soft and L0 hard thresholding, stochastic rounding's probabilities, bad parameters. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "calib_test.h"
#include "gpfq_impl.h"

static gpfq_alphabet make(int bits, int levels, double scalar, double rad, int reg, double lambda, int stochastic)
{
    gpfq_alphabet a;
    qh_error err = {{0}};
    if (gpfq_alphabet_make(bits, levels, scalar, rad, reg, lambda, stochastic, &a, &err) != QH_OK)
        fail_msg("alphabet: %s", err.msg);
    return a;
}

static void test_levels_and_bits(void **state)
{
    (void)state;
    /* bits, K and levels (seed), storage bits (seed), K and storage bits (strict) */
    static const int table[][6] = {{1, 1, 3, 2, -1, -1}, {2, 2, 5, 3, 1, 2},    {3, 4, 9, 4, 3, 3},
                                   {4, 8, 17, 5, 7, 4},  {5, 16, 33, 6, 15, 5}, {8, 128, 257, 9, 127, 8}};
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        gpfq_alphabet a = make(table[i][0], GPFQ_LEVELS_SEED, 1.0, 1.0, GPFQ_REG_NONE, 0.0, 0);
        assert_int_equal(a.k, table[i][1]);
        assert_int_equal(gpfq_levels_count(&a), table[i][2]);
        assert_int_equal(gpfq_storage_bits(&a), table[i][3]);
        if (table[i][4] < 0)
            continue;
        gpfq_alphabet s = make(table[i][0], GPFQ_LEVELS_STRICT, 1.0, 1.0, GPFQ_REG_NONE, 0.0, 0);
        assert_int_equal(s.k, table[i][4]);
        assert_int_equal(gpfq_levels_count(&s), 2 * table[i][4] + 1);
        assert_int_equal(gpfq_storage_bits(&s), table[i][5]);
    }
    /* L0 adds the threshold levels: 2K + 3 */
    gpfq_alphabet l0 = make(2, GPFQ_LEVELS_SEED, 2.5, 1.0, GPFQ_REG_L0, 0.5, 0);
    assert_int_equal(gpfq_levels_count(&l0), 7);
    assert_int_equal(gpfq_storage_bits(&l0), 3);
}

static void test_radius_and_step(void **state)
{
    (void)state;
    const float w[] = {1.0f, -3.0f, 2.0f, 0.5f, 0.25f, -4.0f};
    assert_close(gpfq_radius(w, 2, 3, 1.0), 3.5, 1e-12);    /* row maxima 3 and 4 */
    assert_close(gpfq_radius(w, 2, 3, 0.5), 1.25, 1e-12);   /* medians 2 and 0.5 */
    assert_close(gpfq_radius(w, 2, 3, 0.75), 2.375, 1e-12); /* 2.5 and 0.5 + 0.5 * 3.5 */
    /* step = C * rad / 2^(b-1): 1.16 * 3.5 / 8 */
    gpfq_alphabet a = make(4, GPFQ_LEVELS_SEED, 1.16, gpfq_radius(w, 2, 3, 1.0), GPFQ_REG_NONE, 0.0, 0);
    assert_close(a.step, (float)(1.16 * 3.5 / 8.0), 0.0);
    gpfq_alphabet s = make(4, GPFQ_LEVELS_STRICT, 1.16, 3.5, GPFQ_REG_NONE, 0.0, 0);
    assert_close(s.step, (float)(1.16 * 3.5 / 7.0), 0.0);
    /* L0: step = (C * rad - lambda) / K */
    gpfq_alphabet l0 = make(2, GPFQ_LEVELS_SEED, 2.5, 1.0, GPFQ_REG_L0, 0.5, 0);
    assert_close(l0.step, 1.0f, 0.0);
    /* an all-zero layer still has a usable step, and everything maps to 0 */
    gpfq_alphabet z = make(4, GPFQ_LEVELS_SEED, 1.16, 0.0, GPFQ_REG_NONE, 0.0, 0);
    assert_true(z.step > 0.0f);
    assert_int_equal(gpfq_code(&z, 0.0f, NULL), 0);
}

static void test_msq(void **state)
{
    (void)state;
    gpfq_alphabet a = make(2, GPFQ_LEVELS_SEED, 2.0, 1.0, GPFQ_REG_NONE, 0.0, 0); /* step 1, K 2 */
    assert_close(a.step, 1.0f, 0.0);
    const float z[] = {0.49f, 0.5f, -0.5f, -0.51f, 1.49f, 1.5f, 7.0f, -7.0f, 0.0f};
    const int32_t want[] = {0, 1, 0, -1, 1, 2, 2, -2, 0}; /* floor(z + 1/2): ties go up */
    for (size_t i = 0; i < sizeof z / sizeof z[0]; i++) {
        assert_int_equal(gpfq_code(&a, z[i], NULL), want[i]);
        assert_close(gpfq_value(&a, want[i]), (float)want[i], 0.0);
    }
}

static void test_l1(void **state)
{
    (void)state;
    gpfq_alphabet a = make(2, GPFQ_LEVELS_SEED, 2.0, 1.0, GPFQ_REG_L1, 0.3, 0); /* step 1, lambda 0.3 */
    assert_int_equal(gpfq_code(&a, 0.2f, NULL), 0);                             /* below lambda */
    assert_int_equal(gpfq_code(&a, 0.7f, NULL), 0);                             /* 0.4 -> 0 */
    assert_int_equal(gpfq_code(&a, 0.85f, NULL), 1);                            /* 0.55 -> 1 */
    assert_int_equal(gpfq_code(&a, -1.9f, NULL), -2);                           /* -1.6 -> -2 */
    assert_int_equal(gpfq_code(&a, 9.0f, NULL), 2);                             /* clipped at K */
    assert_close(gpfq_value(&a, -2), -2.0f, 0.0);
}

static void test_l0(void **state)
{
    (void)state;
    gpfq_alphabet a = make(2, GPFQ_LEVELS_SEED, 2.5, 1.0, GPFQ_REG_L0, 0.5, 0); /* step 1, lambda 0.5, K 2 */
    /* |z| <= lambda -> 0; else sign(z) (lambda + step * min(|floor((|z| - lambda) / step + 1/2)|, K)) */
    const float z[] = {0.5f, -0.5f, 0.6f, 2.0f, -1.2f, 100.0f, -100.0f};
    const int32_t code[] = {0, 0, 1, 3, -2, 3, -3};
    const float value[] = {0.0f, 0.0f, 0.5f, 2.5f, -1.5f, 2.5f, -2.5f};
    for (size_t i = 0; i < sizeof z / sizeof z[0]; i++) {
        assert_int_equal(gpfq_code(&a, z[i], NULL), code[i]);
        assert_close(gpfq_value(&a, code[i]), value[i], 0.0);
    }
}

static void test_stochastic(void **state)
{
    (void)state;
    gpfq_alphabet a = make(4, GPFQ_LEVELS_SEED, 8.0, 1.0, GPFQ_REG_NONE, 0.0, 1); /* step 1, K 8 */
    qh_rng r;
    qh_rng_seed(&r, 11);
    int down = 0, n = 40000;
    for (int i = 0; i < n; i++) {
        int32_t c = gpfq_code(&a, 0.25f, &r);
        assert_true(c == 0 || c == 1);
        down += c == 0;
    }
    /* P(down) = 1 - frac = 0.75; 40000 draws: sd 0.0022 */
    assert_true(fabs((double)down / n - 0.75) < 0.01);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(gpfq_code(&a, 3.0f, &r), 3);   /* on a level: always that level */
        assert_int_equal(gpfq_code(&a, 100.0f, &r), 8); /* clipped */
        assert_int_equal(gpfq_code(&a, -100.0f, &r), -8);
    }
    /* the same stream gives the same codes */
    qh_rng r1, r2;
    qh_rng_seed(&r1, 5);
    qh_rng_seed(&r2, 5);
    for (int i = 0; i < 100; i++)
        assert_int_equal(gpfq_code(&a, 0.1f * (float)i - 3.3f, &r1), gpfq_code(&a, 0.1f * (float)i - 3.3f, &r2));
}

static void expect_error(int bits, int levels, double scalar, double rad, int reg, double lambda, int stochastic,
                         const char *msg)
{
    gpfq_alphabet a;
    qh_error err = {{0}};
    assert_int_equal(gpfq_alphabet_make(bits, levels, scalar, rad, reg, lambda, stochastic, &a, &err), QH_E_INVAL);
    if (!strstr(err.msg, msg))
        fail_msg("got '%s', expected it to contain '%s'", err.msg, msg);
}

static void test_bad_parameters(void **state)
{
    (void)state;
    expect_error(0, GPFQ_LEVELS_SEED, 1.16, 1.0, GPFQ_REG_NONE, 0.0, 0, "bits = 0 outside [1, 12]");
    expect_error(1, GPFQ_LEVELS_STRICT, 1.16, 1.0, GPFQ_REG_NONE, 0.0, 0, "levels = strict needs bits >= 2");
    expect_error(4, GPFQ_LEVELS_SEED, 1.16, 1.0, GPFQ_REG_L1, 0.1, 1,
                 "stochastic rounding works with regularizer = none");
    expect_error(4, GPFQ_LEVELS_SEED, 1.0, 2.0, GPFQ_REG_L0, 3.0, 0,
                 "regularizer L0: lambda = 3 is not below scalar * radius = 2");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_and_bits),
        cmocka_unit_test(test_radius_and_step),
        cmocka_unit_test(test_msq),
        cmocka_unit_test(test_l1),
        cmocka_unit_test(test_l0),
        cmocka_unit_test(test_stochastic),
        cmocka_unit_test(test_bad_parameters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
