/* test_adaptive_pool.c - adaptive average pooling: PyTorch's (uneven, overlapping) bins in closed
 * form, optimized vs reference bit for bit, 1 vs 2 threads, the backward as adjoint of the
 * forward, finite differences. */
#include "kernels/qh_kernels.h"
#include "resample_check.h"

/* Global pooling, divisible, uneven (13 -> 6), output larger than input (bins overlap), 1-wide, and
 * one big enough for several threads. */
static const rsm_shape shapes[] = {{2, 3, 5, 7, 1, 1},   {1, 2, 8, 8, 4, 2},   {2, 2, 13, 13, 6, 6},
                                  {1, 3, 7, 7, 2, 3},   {2, 1, 3, 4, 5, 7},   {3, 2, 1, 9, 1, 4},
                                  {4, 16, 31, 29, 7, 5}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* 13 -> 6: bins [floor(13i/6), ceil(13(i+1)/6)) = [0,3) [2,5) [4,7) [6,9) [8,11) [10,13), checked on
 * x[h][w] = 100 h + w, whose bin average is 100 * mean(rows) + mean(columns). */
static void test_uneven_bins(void **state)
{
    (void)state;
    const int lo[6] = {0, 2, 4, 6, 8, 10}, hi[6] = {3, 5, 7, 9, 11, 13};
    float x[13 * 13], y[36];
    for (int h = 0; h < 13; h++)
        for (int w = 0; w < 13; w++)
            x[h * 13 + w] = (float)(100 * h + w);
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_adaptive_avgpool2d_fwd_f32 : qh_k_adaptive_avgpool2d_fwd_f32_ref)(1, 1, 13, 13, 6, 6, x, y);
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 6; j++) {
                double want = 100.0 * (lo[i] + hi[i] - 1) / 2.0 + (lo[j] + hi[j] - 1) / 2.0;
                assert_float_equal(y[i * 6 + j], want, 1e-3);
            }
    }
}

/* Output 1 x 1 is the plane mean; its gradient spreads dy / (h w) evenly. */
static void test_global(void **state)
{
    (void)state;
    float x[2 * 35], y[2], dy[2] = {3.5f, -7.0f}, dx[2 * 35];
    double mean[2] = {0, 0};
    for (int i = 0; i < 70; i++) {
        x[i] = (float)((i * 37) % 11) - 4.0f;
        mean[i / 35] += x[i] / 35.0;
    }
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_adaptive_avgpool2d_fwd_f32 : qh_k_adaptive_avgpool2d_fwd_f32_ref)(1, 2, 5, 7, 1, 1, x, y);
        (opt ? qh_k_adaptive_avgpool2d_bwd_f32 : qh_k_adaptive_avgpool2d_bwd_f32_ref)(1, 2, 5, 7, 1, 1, dy, dx);
        for (int p = 0; p < 2; p++) {
            assert_float_equal(y[p], mean[p], 1e-6);
            for (int i = 0; i < 35; i++)
                assert_float_equal(dx[p * 35 + i], dy[p] / 35.0f, 0.0f);
        }
    }
}

static const rsm_kernel adaptive = {qh_k_adaptive_avgpool2d_fwd_f32_ref, qh_k_adaptive_avgpool2d_bwd_f32_ref,
                                    qh_k_adaptive_avgpool2d_fwd_f32, qh_k_adaptive_avgpool2d_bwd_f32};

static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++)
        rsm_check_opt(&adaptive, shapes[k], 400 + k, true);
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t k = 0; k + 1 < N_SHAPES; k++)
        rsm_check_fd(&adaptive, shapes[k], 500 + k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uneven_bins),
        cmocka_unit_test(test_global),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
