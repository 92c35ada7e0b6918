/* test_depthwise_bwd.c - the AVX2 3x3 depthwise backward (qh_k_dwconv3x3_bwd_f32): against the
 * direct reference on strides 1 and 2 and plane sizes around the 8-lane vectors (1 to 33 wide,
 * odd and even), MobileNetV2's 32x32 / 16x16 / 8x8 planes; dx skipped; thread counts 1, 2, 3
 * byte-equal (also through qh_k_conv2d_bwd_f32, which dispatches to it); the shapes it declines
 * leave the outputs untouched; the depthwise forward's column-phase copy on strides 1-3 and
 * paddings 0-2; gradients against central finite differences in double. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kgemm_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

/* n, channels, h, w, stride */
static const int shapes[][5] = {
    {2, 3, 9, 9, 1},   {2, 3, 9, 9, 2},   {1, 2, 1, 1, 1},   {1, 2, 1, 1, 2},   {3, 2, 2, 3, 2},
    {2, 4, 5, 7, 1},   {2, 4, 8, 8, 1},   {2, 4, 8, 8, 2},   {1, 3, 16, 16, 2}, {1, 3, 17, 15, 2},
    {2, 2, 13, 31, 1}, {2, 2, 11, 33, 2}, {1, 2, 6, 32, 2},  {1, 2, 4, 34, 2},  {4, 5, 32, 32, 1},
    {3, 6, 32, 32, 2}, {5, 7, 16, 16, 1}, {6, 3, 8, 8, 1},  {11, 3, 9, 9, 2}, {10, 2, 7, 7, 1},
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* The kernel declines machines without AVX2/FMA (the plain loops run instead): nothing to test. */
static void need_avx2(void)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return;
#endif
    skip();
}

static qh_conv2d_shape dw_shape(const int *v)
{
    qh_conv2d_shape s = {.n = v[0], .c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[1], .kh = 3, .kw = 3,
                         .sh = v[4], .sw = v[4], .ph = 1, .pw = 1, .groups = v[1]};
    qh_conv2d_shape_finish(&s);
    return s;
}

typedef struct dw_data {
    qh_conv2d_shape s;
    size_t nx, nw, ny;
    float *x, *w, *dy;
} dw_data;

static dw_data make_data(qh_conv2d_shape s, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    dw_data d = {.s = s};
    d.nx = (size_t)(s.n * s.c_in * s.h_in * s.w_in);
    d.nw = (size_t)(s.c_out * (s.c_in / s.groups) * s.kh * s.kw);
    d.ny = (size_t)(s.n * s.c_out * s.h_out * s.w_out);
    d.x = kg_random(&r, d.nx);
    d.w = kg_random(&r, d.nw);
    d.dy = kg_random(&r, d.ny);
    return d;
}

static void free_data(dw_data *d)
{
    free(d->x), free(d->w), free(d->dy);
}

static float *nan_filled(size_t n)
{
    float *p = kg_alloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static void test_vs_reference(void **state)
{
    (void)state;
    need_avx2();
    for (size_t i = 0; i < N_SHAPES; i++) {
        dw_data d = make_data(dw_shape(shapes[i]), 500 + i);
        float *dx_want = kg_alloc(d.nx), *dw_want = kg_alloc(d.nw);
        float *dx = nan_filled(d.nx), *dw = nan_filled(d.nw), *dw2 = nan_filled(d.nw);
        qh_k_conv2d_bwd_f32_ref(&d.s, d.x, d.w, d.dy, dx_want, dw_want, NULL);
        assert_true(qh_k_dwconv3x3_bwd_f32(&d.s, d.x, d.w, d.dy, dx, dw));
        double ex = kg_rel_err(dx, dx_want, d.nx), ew = kg_rel_err(dw, dw_want, d.nw);
        if (!(ex <= 1e-5 && ew <= 1e-5))
            fail_msg("shape %zu (%dx%d stride %d): rel err dx %g dw %g", i, shapes[i][2], shapes[i][3],
                     shapes[i][4], ex, ew);
        /* without dx: the same dw, and dw is overwritten (NaN before) */
        assert_true(qh_k_dwconv3x3_bwd_f32(&d.s, d.x, d.w, d.dy, NULL, dw2));
        assert_memory_equal(dw, dw2, sizeof(float) * d.nw);
        free(dx_want), free(dw_want), free(dx), free(dw), free(dw2);
        free_data(&d);
    }
}

static void test_thread_invariance(void **state)
{
    (void)state;
    need_avx2();
    int saved = qh_threads();
    /* several images per chunk; several channel blocks (130 channels) */
    const int big[][5] = {{7, 5, 32, 32, 1}, {19, 3, 16, 16, 2}, {5, 33, 8, 8, 1}, {3, 130, 6, 6, 2}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        dw_data d = make_data(dw_shape(big[i]), 600 + i);
        float *dx[3], *dw[3], *dx_c = kg_alloc(d.nx), *dw_c = kg_alloc(d.nw), *db = kg_alloc((size_t)d.s.c_out);
        for (int t = 0; t < 3; t++) {
            qh_set_threads(t + 1);
            dx[t] = kg_alloc(d.nx);
            dw[t] = kg_alloc(d.nw);
            assert_true(qh_k_dwconv3x3_bwd_f32(&d.s, d.x, d.w, d.dy, dx[t], dw[t]));
        }
        for (int t = 1; t < 3; t++) {
            assert_memory_equal(dx[0], dx[t], sizeof(float) * d.nx);
            assert_memory_equal(dw[0], dw[t], sizeof(float) * d.nw);
        }
        qh_k_conv2d_bwd_f32(&d.s, d.x, d.w, d.dy, dx_c, dw_c, db, NULL); /* the conv entry point routes here */
        assert_memory_equal(dx[0], dx_c, sizeof(float) * d.nx);
        assert_memory_equal(dw[0], dw_c, sizeof(float) * d.nw);
        for (int t = 0; t < 3; t++)
            free(dx[t]), free(dw[t]);
        free(dx_c), free(dw_c), free(db);
        free_data(&d);
    }
    qh_set_threads(saved);
}

/* Shapes outside 3x3 / padding 1 / stride 1-2 / depthwise are declined and nothing is written. */
static void test_declines(void **state)
{
    (void)state;
    /* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, groups */
    const int other[][12] = {
        {1, 4, 8, 8, 4, 5, 5, 1, 1, 2, 2, 4}, /* 5x5 */
        {1, 4, 8, 8, 4, 3, 3, 1, 1, 0, 0, 4}, /* no padding */
        {1, 4, 9, 9, 4, 3, 3, 3, 3, 1, 1, 4}, /* stride 3 */
        {1, 4, 8, 8, 4, 3, 3, 1, 2, 1, 1, 4}, /* unequal strides */
        {1, 4, 8, 8, 8, 3, 3, 1, 1, 1, 1, 4}, /* channel multiplier 2 */
        {1, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 1}, /* dense */
        {1, 4, 8, 8, 4, 3, 3, 1, 1, 1, 1, 2}, /* grouped */
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        const int *v = other[i];
        qh_conv2d_shape s = {.n = v[0], .c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[4], .kh = v[5],
                             .kw = v[6], .sh = v[7], .sw = v[8], .ph = v[9], .pw = v[10], .groups = v[11]};
        qh_conv2d_shape_finish(&s);
        dw_data d = make_data(s, 700 + i);
        float *dx = nan_filled(d.nx), *dw = nan_filled(d.nw);
        if (qh_k_dwconv3x3_bwd_f32(&d.s, d.x, d.w, d.dy, dx, dw))
            fail_msg("shape %zu accepted", i);
        for (size_t k = 0; k < d.nx; k++)
            assert_true(isnan(dx[k]));
        for (size_t k = 0; k < d.nw; k++)
            assert_true(isnan(dw[k]));
        free(dx), free(dw);
        free_data(&d);
    }
}

/* The depthwise forward's column-phase copy (qh_conv2d.c) on strides 1-3 and paddings 0-2. */
static void test_forward_phases(void **state)
{
    (void)state;
    /* n, c, h, w, k, stride, pad */
    const int fw[][7] = {{2, 3, 9, 9, 3, 2, 1}, {1, 2, 10, 11, 3, 2, 0}, {2, 2, 11, 13, 5, 3, 2},
                         {1, 3, 7, 12, 3, 3, 1}, {2, 2, 8, 9, 5, 2, 2}, {1, 2, 12, 17, 3, 1, 0}};
    for (size_t i = 0; i < sizeof fw / sizeof fw[0]; i++) {
        const int *v = fw[i];
        qh_conv2d_shape s = {.n = v[0], .c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[1], .kh = v[4],
                             .kw = v[4], .sh = v[5], .sw = v[5], .ph = v[6], .pw = v[6], .groups = v[1]};
        qh_conv2d_shape_finish(&s);
        dw_data d = make_data(s, 900 + i);
        float *want = kg_alloc(d.ny), *got = kg_alloc(d.ny);
        qh_k_conv2d_fwd_f32_ref(&d.s, d.x, d.w, NULL, want);
        qh_k_conv2d_fwd_f32(&d.s, d.x, d.w, NULL, got, NULL);
        double e = kg_rel_err(got, want, d.ny);
        if (!(e <= 1e-5))
            fail_msg("forward shape %zu: rel err %g", i, e);
        free(want), free(got);
        free_data(&d);
    }
}

/* ---------------------------------------------------------------- finite differences */

/* L = sum(y * r) of a double-precision depthwise convolution (written independently of the kernels). */
static double loss_d(const qh_conv2d_shape *s, const double *x, const double *w, const float *r)
{
    double L = 0.0;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t c = 0; c < s->c_in; c++)
            for (int64_t oh = 0; oh < s->h_out; oh++)
                for (int64_t ow = 0; ow < s->w_out; ow++) {
                    double y = 0.0;
                    for (int64_t ki = 0; ki < 3; ki++)
                        for (int64_t kj = 0; kj < 3; kj++) {
                            int64_t ih = oh * s->sh + ki - 1, iw = ow * s->sw + kj - 1;
                            if (ih >= 0 && ih < s->h_in && iw >= 0 && iw < s->w_in)
                                y += x[((n * s->c_in + c) * s->h_in + ih) * s->w_in + iw] * w[c * 9 + ki * 3 + kj];
                        }
                    L += y * r[((n * s->c_in + c) * s->h_out + oh) * s->w_out + ow];
                }
    return L;
}

static double *to_double(const float *a, size_t n)
{
    double *d = malloc(sizeof(double) * n);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++)
        d[i] = a[i];
    return d;
}

/* g[i] = dL/dv[i] by central differences (L is linear in each value, so eps only meets rounding). */
static void fd_grad(const dw_data *d, double *x, double *w, double *v, size_t nv, double *g)
{
    const double eps = 1e-3;
    for (size_t i = 0; i < nv; i++) {
        double keep = v[i];
        v[i] = keep + eps;
        double up = loss_d(&d->s, x, w, d->dy);
        v[i] = keep - eps;
        double down = loss_d(&d->s, x, w, d->dy);
        v[i] = keep;
        g[i] = (up - down) / (2.0 * eps);
    }
}

static void test_finite_differences(void **state)
{
    (void)state;
    need_avx2();
    const int small[][5] = {{2, 2, 5, 6, 1}, {2, 2, 7, 6, 2}, {1, 3, 4, 9, 2}, {1, 2, 3, 10, 1}};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        dw_data d = make_data(dw_shape(small[i]), 800 + i);
        double *x = to_double(d.x, d.nx), *w = to_double(d.w, d.nw);
        double *fdx = malloc(sizeof(double) * d.nx), *fdw = malloc(sizeof(double) * d.nw);
        assert_non_null(fdx);
        assert_non_null(fdw);
        fd_grad(&d, x, w, x, d.nx, fdx);
        fd_grad(&d, x, w, w, d.nw, fdw);
        float *dx = kg_alloc(d.nx), *dw = kg_alloc(d.nw);
        assert_true(qh_k_dwconv3x3_bwd_f32(&d.s, d.x, d.w, d.dy, dx, dw));
        double ex = kg_rel_err_d(dx, fdx, d.nx), ew = kg_rel_err_d(dw, fdw, d.nw);
        if (!(ex <= 1e-4 && ew <= 1e-4))
            fail_msg("shape %zu vs finite differences: dx %g dw %g", i, ex, ew);
        free(dx), free(dw), free(fdx), free(fdw), free(x), free(w);
        free_data(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_declines),
        cmocka_unit_test(test_forward_phases),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
