/* test_shortcut.c - ResNet option-A shortcut: against a direct transcription of
 * F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, p // 2, p - p // 2)), the backward as its exact adjoint,
 * 1 vs 2 threads byte-equal, and finite differences. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef struct sc_shape {
    int64_t n, c_in, h, w;
    int32_t stride;
    int64_t c_out;
} sc_shape;

/* CIFAR's 16 -> 32, odd padding (3 -> 8: 2 in front, 3 behind), odd planes, stride 1 and 3, no
 * padding at all, and one big enough for several threads. */
static const sc_shape shapes[] = {{2, 16, 8, 8, 2, 32}, {1, 3, 7, 5, 2, 8}, {2, 4, 5, 6, 1, 6},
                                  {1, 2, 7, 8, 3, 5},   {3, 5, 9, 9, 2, 5}, {8, 32, 32, 32, 2, 64}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t in_count(sc_shape s) { return s.n * s.c_in * s.h * s.w; }
static int64_t out_count(sc_shape s)
{
    return s.n * s.c_out * ceil_div(s.h, s.stride) * ceil_div(s.w, s.stride);
}

/* The Python expression, index by index: output channel k holds input channel k - p // 2. */
static float expected(const sc_shape *s, const float *x, int64_t i, int64_t k, int64_t oh, int64_t ow)
{
    int64_t src = k - (s->c_out - s->c_in) / 2;
    if (src < 0 || src >= s->c_in)
        return 0.0f;
    return x[((i * s->c_in + src) * s->h + oh * s->stride) * s->w + ow * s->stride];
}

static void test_forward_matches_slicing(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        sc_shape s = shapes[k];
        int64_t ho = ceil_div(s.h, s.stride), wo = ceil_div(s.w, s.stride);
        qh_rng r;
        qh_rng_seed(&r, 600 + k);
        float *x = falloc(in_count(s)), *y[3];
        fill_uniform(&r, x, in_count(s), -2.0f, 2.0f);
        for (int t = 1; t <= 2; t++) {
            y[t] = falloc(out_count(s));
            qh_set_threads(t);
            qh_k_shortcut_a_fwd_f32(s.n, s.c_in, s.h, s.w, s.stride, s.c_out, x, y[t]);
        }
        assert_true(bytes_equal(y[1], y[2], (size_t)out_count(s) * sizeof(float)));
        for (int64_t i = 0; i < s.n; i++)
            for (int64_t c = 0; c < s.c_out; c++)
                for (int64_t oh = 0; oh < ho; oh++)
                    for (int64_t ow = 0; ow < wo; ow++)
                        assert_float_equal(y[1][((i * s.c_out + c) * ho + oh) * wo + ow],
                                           expected(&s, x, i, c, oh, ow), 0.0f);
        free(x), free(y[1]), free(y[2]);
    }
}

/* The backward is the transpose of the forward: <fwd(x), r> == <x, bwd(r)>. Both sides add the
 * same products (each x meets at most one r), so they agree to double rounding. Padding channels
 * and skipped positions must come back as exact zeros, NaN-filled output buffers notwithstanding. */
static void test_backward_is_adjoint(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        sc_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 700 + k);
        float *x = falloc(ni), *rr = falloc(no), *y = falloc(no), *dx[3];
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, rr, no, -1.0f, 1.0f);
        for (int64_t i = 0; i < no; i++)
            y[i] = NAN;
        qh_k_shortcut_a_fwd_f32(s.n, s.c_in, s.h, s.w, s.stride, s.c_out, x, y);
        for (int t = 1; t <= 2; t++) {
            dx[t] = falloc(ni);
            for (int64_t i = 0; i < ni; i++)
                dx[t][i] = NAN;
            qh_set_threads(t);
            qh_k_shortcut_a_bwd_f32(s.n, s.c_in, s.h, s.w, s.stride, s.c_out, rr, dx[t]);
        }
        assert_true(bytes_equal(dx[1], dx[2], (size_t)ni * sizeof(float)));
        double lhs = dot_f64(y, rr, no), rhs = dot_f64(x, dx[1], ni);
        assert_false(isnan(lhs) || isnan(rhs));
        assert_float_equal(lhs, rhs, 1e-9 * (1.0 + fabs(lhs)));
        free(x), free(rr), free(y), free(dx[1]), free(dx[2]);
    }
}

typedef struct fd_ctx {
    sc_shape s;
    const float *w;
    float *y;
} fd_ctx;

static double objective(const float *x, void *ctx)
{
    fd_ctx *c = ctx;
    qh_k_shortcut_a_fwd_f32(c->s.n, c->s.c_in, c->s.h, c->s.w, c->s.stride, c->s.c_out, x, c->y);
    return dot_f64(c->w, c->y, out_count(c->s));
}

static void test_finite_differences(void **state)
{
    (void)state;
    for (size_t k = 1; k < 4; k++) {
        sc_shape s = shapes[k];
        int64_t ni = in_count(s), no = out_count(s);
        qh_rng r;
        qh_rng_seed(&r, 800 + k);
        float *x = falloc(ni), *w = falloc(no), *y = falloc(no), *dx = falloc(ni), *g = falloc(ni);
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, w, no, -1.0f, 1.0f);
        fd_ctx c = {s, w, y};
        qh_k_shortcut_a_bwd_f32(s.n, s.c_in, s.h, s.w, s.stride, s.c_out, w, dx);
        finite_diff(objective, &c, x, ni, 1e-2f, g);
        assert_true(rel_err(dx, g, ni) <= 1e-3);
        free(x), free(w), free(y), free(dx), free(g);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_matches_slicing),
        cmocka_unit_test(test_backward_is_adjoint),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
