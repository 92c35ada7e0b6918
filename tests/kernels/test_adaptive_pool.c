/* test_adaptive_pool.c - adaptive average pooling: PyTorch's (uneven, overlapping) bins in closed
 * form, optimized vs reference bit for bit, 1 vs 2 threads, finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef struct ap_shape {
    int64_t n, c, h, w, ho, wo;
} ap_shape;

/* Global pooling, divisible, uneven (13 -> 6), output larger than input (bins overlap), 1-wide, and
 * one big enough for several threads. */
static const ap_shape shapes[] = {{2, 3, 5, 7, 1, 1},   {1, 2, 8, 8, 4, 2},   {2, 2, 13, 13, 6, 6},
                                  {1, 3, 7, 7, 2, 3},   {2, 1, 3, 4, 5, 7},   {3, 2, 1, 9, 1, 4},
                                  {4, 16, 31, 29, 7, 5}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static int64_t in_count(ap_shape s) { return s.n * s.c * s.h * s.w; }
static int64_t out_count(ap_shape s) { return s.n * s.c * s.ho * s.wo; }

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

static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        ap_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 400 + k);
        float *x = falloc(ni), *dy = falloc(no), *y[3], *dx[3];
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, dy, no, -1.0f, 1.0f);
        for (int v = 0; v < 3; v++)
            y[v] = falloc(no), dx[v] = falloc(ni);
        qh_k_adaptive_avgpool2d_fwd_f32_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[0]);
        qh_k_adaptive_avgpool2d_bwd_f32_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[0]);
        for (int v = 1; v < 3; v++) {
            qh_set_threads(v);
            qh_k_adaptive_avgpool2d_fwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[v]);
            qh_k_adaptive_avgpool2d_bwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[v]);
            assert_true(bytes_equal(y[v], y[0], (size_t)no * sizeof(float)));
            assert_true(bytes_equal(dx[v], dx[0], (size_t)ni * sizeof(float)));
        }
        for (int v = 0; v < 3; v++)
            free(y[v]), free(dx[v]);
        free(x), free(dy);
    }
}

typedef struct fd_ctx {
    ap_shape s;
    const float *w;
    float *y;
} fd_ctx;

static double objective(const float *x, void *ctx)
{
    fd_ctx *c = ctx;
    qh_k_adaptive_avgpool2d_fwd_f32(c->s.n, c->s.c, c->s.h, c->s.w, c->s.ho, c->s.wo, x, c->y);
    return dot_f64(c->w, c->y, out_count(c->s));
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t k = 0; k + 1 < N_SHAPES; k++) {
        ap_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 500 + k);
        float *x = falloc(ni), *w = falloc(no), *y = falloc(no), *dx = falloc(ni), *g = falloc(ni);
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, w, no, -1.0f, 1.0f);
        fd_ctx c = {s, w, y};
        qh_k_adaptive_avgpool2d_bwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, w, dx);
        finite_diff(objective, &c, x, ni, 1e-2f, g);
        double e = rel_err(dx, g, ni);
        if (!(e <= 1e-3))
            fail_msg("shape %zu: relative error %.3g", k, e);
        free(x), free(w), free(y), free(dx), free(g);
    }
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
