/* test_resize.c - bilinear resize (align_corners = False): identity, a ramp in closed form with the
 * clamped borders, optimized vs reference bit for bit, 1 vs 2 threads, the backward as adjoint of
 * the forward, and finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef struct rs_shape {
    int64_t n, c, h, w, ho, wo;
} rs_shape;

/* Up (7x), down, mixed, odd, to and from one pixel, and one large enough for several threads. */
static const rs_shape shapes[] = {{1, 2, 8, 8, 56, 56}, {2, 2, 7, 9, 4, 5}, {1, 3, 5, 4, 9, 3}, {2, 1, 1, 6, 3, 1},
                                  {1, 2, 6, 1, 1, 4},   {1, 1, 3, 3, 3, 3}, {2, 8, 32, 32, 45, 37}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static int64_t in_count(rs_shape s) { return s.n * s.c * s.h * s.w; }
static int64_t out_count(rs_shape s) { return s.n * s.c * s.ho * s.wo; }

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

static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        rs_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 900 + k);
        float *x = falloc(ni), *dy = falloc(no), *y[3], *dx[3];
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, dy, no, -1.0f, 1.0f);
        for (int v = 0; v < 3; v++)
            y[v] = falloc(no), dx[v] = falloc(ni);
        qh_k_resize_bilinear_fwd_f32_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[0]);
        qh_k_resize_bilinear_bwd_f32_ref(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[0]);
        for (int v = 1; v < 3; v++) {
            qh_set_threads(v);
            qh_k_resize_bilinear_fwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, x, y[v]);
            qh_k_resize_bilinear_bwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, dy, dx[v]);
            assert_true(bytes_equal(y[v], y[0], (size_t)no * sizeof(float)));
            assert_true(bytes_equal(dx[v], dx[0], (size_t)ni * sizeof(float)));
        }
        /* adjoint: <resize(x), dy> == <x, resize_bwd(dy)> up to float rounding of the weights */
        double lhs = dot_f64(y[0], dy, no), rhs = dot_f64(x, dx[0], ni);
        assert_float_equal(lhs, rhs, 1e-5 * (1.0 + fabs(lhs)));
        for (int v = 0; v < 3; v++)
            free(y[v]), free(dx[v]);
        free(x), free(dy);
    }
}

typedef struct fd_ctx {
    rs_shape s;
    const float *w;
    float *y;
} fd_ctx;

static double objective(const float *x, void *ctx)
{
    fd_ctx *c = ctx;
    qh_k_resize_bilinear_fwd_f32(c->s.n, c->s.c, c->s.h, c->s.w, c->s.ho, c->s.wo, x, c->y);
    return dot_f64(c->w, c->y, out_count(c->s));
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t k = 1; k + 1 < N_SHAPES; k++) {
        rs_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 1000 + k);
        float *x = falloc(ni), *w = falloc(no), *y = falloc(no), *dx = falloc(ni), *g = falloc(ni);
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, w, no, -1.0f, 1.0f);
        fd_ctx c = {s, w, y};
        qh_k_resize_bilinear_bwd_f32(s.n, s.c, s.h, s.w, s.ho, s.wo, w, dx);
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
        cmocka_unit_test(test_identity),
        cmocka_unit_test(test_ramp_closed_form),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
