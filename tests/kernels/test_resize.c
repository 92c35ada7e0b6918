/* test_resize.c - bilinear resize (align_corners = False): identity, a ramp in closed form with the
 * clamped borders, optimized vs reference bit for bit, 1 vs 2 threads, the backward as adjoint of
 * the forward, and finite differences. */
#include "kernels/qh_kernels.h"
#include "resample_check.h"

/* Up (7x), down, mixed, odd, to and from one pixel, and one large enough for several threads. */
static const rsm_shape shapes[] = {{1, 2, 8, 8, 56, 56}, {2, 2, 7, 9, 4, 5}, {1, 3, 5, 4, 9, 3}, {2, 1, 1, 6, 3, 1},
                                  {1, 2, 6, 1, 1, 4},   {1, 1, 3, 3, 3, 3}, {2, 8, 32, 32, 45, 37}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void test_identity(void **state)
{
    (void)state;
    qh_rng r;
    qh_rng_seed(&r, 1);
    float x[2 * 5 * 7], y[2 * 5 * 7];
    fill_uniform(&r, x, 70, -3.0f, 3.0f);
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_resize_bilinear_fwd_f32 : qh_k_resize_bilinear_fwd_f32_ref)(1, 2, 5, 7, 5, 7, x, y);
        assert_memory_equal(x, y, sizeof x);
    }
}

/* A row x[j] = j resized 4 -> 8: source (d + 0.5) / 2 - 0.5 interpolates the ramp exactly, except
 * where it is clamped: below 0 at d = 0, past the last pixel at d = 7. */
static void test_ramp_closed_form(void **state)
{
    (void)state;
    const float x[4] = {0, 1, 2, 3};
    float y[8];
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_resize_bilinear_fwd_f32 : qh_k_resize_bilinear_fwd_f32_ref)(1, 1, 1, 4, 1, 8, x, y);
        for (int d = 0; d < 8; d++)
            assert_float_equal(y[d], fmin(fmax(0.5 * d - 0.25, 0.0), 3.0), 1e-6);
    }
    /* 8 -> 4 halves: each output is the mean of two inputs, (d + 0.5) * 2 - 0.5 = 2d + 0.5 */
    const float z[8] = {1, 3, -2, 6, 0, 0, 5, 7};
    float v[4];
    qh_k_resize_bilinear_fwd_f32(1, 1, 1, 8, 1, 4, z, v);
    for (int d = 0; d < 4; d++)
        assert_float_equal(v[d], (z[2 * d] + z[2 * d + 1]) / 2.0f, 1e-6);
}

static const rsm_kernel bilinear = {qh_k_resize_bilinear_fwd_f32_ref, qh_k_resize_bilinear_bwd_f32_ref,
                                    qh_k_resize_bilinear_fwd_f32, qh_k_resize_bilinear_bwd_f32};

static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++)
        rsm_check_opt(&bilinear, shapes[k], 900 + k, true);
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t k = 1; k + 1 < N_SHAPES; k++)
        rsm_check_fd(&bilinear, shapes[k], 1000 + k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_ramp_closed_form),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
