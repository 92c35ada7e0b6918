/* test_conv2d.c - conv2d: optimized (im2col + GEMM, depthwise direct) vs the direct reference on
 * strides, padding, groups, depthwise, 1x1 and rectangular kernels, batch 1/3/20; 1 vs 2 threads
 * byte-equal; backward of both against central finite differences of L = sum(y * r) in double. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kgemm_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

/* n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, groups */
static const int shapes[][12] = {
    {3, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1},   /* LeNet conv1 */
    {3, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1},  /* LeNet conv2 */
    {1, 3, 9, 11, 4, 3, 3, 2, 2, 1, 1, 1},    /* stride 2, padding */
    {3, 4, 8, 7, 6, 3, 3, 1, 1, 1, 1, 2},     /* groups 2 */
    {3, 5, 9, 9, 5, 3, 3, 1, 1, 1, 1, 5},     /* depthwise */
    {2, 4, 10, 9, 4, 3, 3, 2, 2, 1, 1, 4},    /* depthwise, stride 2 */
    {2, 3, 6, 6, 6, 3, 3, 1, 1, 1, 1, 3},     /* channel multiplier 2: grouped, not depthwise */
    {3, 8, 6, 6, 5, 1, 1, 1, 1, 0, 0, 1},     /* 1x1 (no col2im) */
    {2, 8, 7, 7, 4, 1, 1, 2, 2, 0, 0, 1},     /* 1x1, stride 2 */
    {2, 6, 5, 5, 4, 1, 1, 1, 1, 0, 0, 2},     /* 1x1, groups 2 */
    {1, 3, 10, 12, 4, 3, 5, 1, 2, 1, 2, 1},   /* rectangular kernel and stride */
    {1, 2, 5, 5, 3, 3, 3, 1, 1, 2, 2, 1},     /* padding as large as the kernel */
    {20, 3, 8, 8, 7, 3, 3, 1, 1, 1, 1, 1},    /* more images than chunks */
    {3, 2, 4, 4, 3, 4, 4, 3, 3, 0, 0, 1},     /* kernel = input, stride leaves pixels unused */
    {2, 32, 6, 6, 5, 3, 3, 1, 1, 1, 1, 1},    /* GEMM depth 288 > one KC block */
    {1, 2, 66, 64, 3, 3, 3, 1, 1, 1, 1, 1},   /* 4224 output pixels: too wide for the packed im2col */
    {1, 455, 3, 3, 2, 3, 3, 1, 1, 1, 1, 1},   /* depth 4095: many KC blocks, dw dots of 9 */
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static qh_conv2d_shape shape_of(const int *v)
{
    qh_conv2d_shape s = {.n = v[0], .c_in = v[1], .h_in = v[2], .w_in = v[3], .c_out = v[4], .kh = v[5],
                         .kw = v[6], .sh = v[7], .sw = v[8], .ph = v[9], .pw = v[10], .groups = v[11]};
    qh_conv2d_shape_finish(&s);
    return s;
}

typedef struct conv_data {
    qh_conv2d_shape s;
    size_t nx, nw, nb, ny;
    float *x, *w, *b, *dy;
} conv_data;

static conv_data make_data(const int *v, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    conv_data d = {.s = shape_of(v)};
    const qh_conv2d_shape *s = &d.s;
    d.nx = (size_t)(s->n * s->c_in * s->h_in * s->w_in);
    d.nw = (size_t)(s->c_out * (s->c_in / s->groups) * s->kh * s->kw);
    d.nb = (size_t)s->c_out;
    d.ny = (size_t)(s->n * s->c_out * s->h_out * s->w_out);
    d.x = kg_random(&r, d.nx);
    d.w = kg_random(&r, d.nw);
    d.b = kg_random(&r, d.nb);
    d.dy = kg_random(&r, d.ny);
    return d;
}

static void free_data(conv_data *d)
{
    free(d->x), free(d->w), free(d->b), free(d->dy);
}

static void *ws_for(const qh_conv2d_shape *s)
{
    void *ws = malloc(qh_k_conv2d_ws_size(s) + 1);
    assert_non_null(ws);
    return ws;
}

static void test_shape_finish(void **state)
{
    (void)state;
    qh_conv2d_shape s = {.h_in = 28, .w_in = 27, .kh = 5, .kw = 3, .sh = 1, .sw = 2, .ph = 2, .pw = 0};
    qh_conv2d_shape_finish(&s);
    assert_int_equal(s.h_out, 28);
    assert_int_equal(s.w_out, 13);
}

static void test_forward(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        conv_data d = make_data(shapes[i], 100 + i);
        float *want = kg_alloc(d.ny), *got = kg_alloc(d.ny), *own = kg_alloc(d.ny);
        void *ws = ws_for(&d.s);
        for (int bias = 0; bias < 2; bias++) {
            const float *b = bias ? d.b : NULL;
            qh_k_conv2d_fwd_f32_ref(&d.s, d.x, d.w, b, want);
            /* an unaligned workspace must work too */
            qh_k_conv2d_fwd_f32(&d.s, d.x, d.w, b, got, (char *)ws + 1);
            double err = kg_rel_err(got, want, d.ny);
            if (!(err <= 1e-5))
                fail_msg("conv fwd shape %zu bias %d: rel err %g", i, bias, err);
            qh_k_conv2d_fwd_f32(&d.s, d.x, d.w, b, own, NULL); /* allocates its own scratch */
            assert_memory_equal(got, own, sizeof(float) * d.ny);
        }
        free(ws), free(want), free(got), free(own);
        free_data(&d);
    }
}

typedef struct grads {
    float *dx, *dw, *db;
} grads;

static grads alloc_grads(const conv_data *d)
{
    grads g = {kg_alloc(d->nx), kg_alloc(d->nw), kg_alloc(d->nb)};
    return g;
}

static void free_grads(grads *g)
{
    free(g->dx), free(g->dw), free(g->db);
}

static void run_bwd(const conv_data *d, grads *g, void *ws)
{
    qh_k_conv2d_bwd_f32(&d->s, d->x, d->w, d->dy, g->dx, g->dw, g->db, ws);
}

static void test_backward(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        conv_data d = make_data(shapes[i], 200 + i);
        grads want = alloc_grads(&d), got = alloc_grads(&d);
        void *ws = ws_for(&d.s);
        qh_k_conv2d_bwd_f32_ref(&d.s, d.x, d.w, d.dy, want.dx, want.dw, want.db);
        run_bwd(&d, &got, ws);
        double e[3] = {kg_rel_err(got.dx, want.dx, d.nx), kg_rel_err(got.dw, want.dw, d.nw),
                       kg_rel_err(got.db, want.db, d.nb)};
        if (!(e[0] <= 1e-5 && e[1] <= 1e-5 && e[2] <= 1e-5))
            fail_msg("conv bwd shape %zu: rel err dx %g dw %g db %g", i, e[0], e[1], e[2]);
        /* skipping dx and db leaves dw unchanged; the outputs are overwritten, not accumulated */
        float *dw2 = kg_alloc(d.nw);
        for (size_t k = 0; k < d.nw; k++)
            dw2[k] = NAN;
        qh_k_conv2d_bwd_f32(&d.s, d.x, d.w, d.dy, NULL, dw2, NULL, NULL);
        assert_memory_equal(got.dw, dw2, sizeof(float) * d.nw);
        free(dw2), free(ws);
        free_grads(&want), free_grads(&got);
        free_data(&d);
    }
}

static void test_thread_invariance(void **state)
{
    (void)state;
    int saved = qh_threads();
    const int big[][12] = {{20, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 1},
                           {17, 1, 28, 28, 6, 5, 5, 1, 1, 2, 2, 1},
                           {9, 8, 9, 9, 8, 3, 3, 2, 2, 1, 1, 8},
                           {5, 8, 6, 6, 12, 3, 3, 1, 1, 1, 1, 2}};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        conv_data d = make_data(big[i], 300 + i);
        void *ws = ws_for(&d.s);
        float *y[2];
        grads g[2];
        for (int t = 0; t < 2; t++) {
            qh_set_threads(t + 1);
            y[t] = kg_alloc(d.ny);
            g[t] = alloc_grads(&d);
            qh_k_conv2d_fwd_f32(&d.s, d.x, d.w, d.b, y[t], ws);
            run_bwd(&d, &g[t], ws);
        }
        assert_memory_equal(y[0], y[1], sizeof(float) * d.ny);
        assert_memory_equal(g[0].dx, g[1].dx, sizeof(float) * d.nx);
        assert_memory_equal(g[0].dw, g[1].dw, sizeof(float) * d.nw);
        assert_memory_equal(g[0].db, g[1].db, sizeof(float) * d.nb);
        for (int t = 0; t < 2; t++)
            free(y[t]), free_grads(&g[t]);
        free(ws);
        free_data(&d);
    }
    qh_set_threads(saved);
}

/* ---------------------------------------------------------------- finite differences */

/* L = sum(y * r) of a double-precision direct convolution (written independently of the kernels). */
static double loss_d(const qh_conv2d_shape *s, const double *x, const double *w, const double *b, const float *r)
{
    int64_t cig = s->c_in / s->groups, cog = s->c_out / s->groups;
    double L = 0.0;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->c_out; oc++)
            for (int64_t oh = 0; oh < s->h_out; oh++)
                for (int64_t ow = 0; ow < s->w_out; ow++) {
                    double y = b[oc];
                    for (int64_t ci = 0; ci < cig; ci++)
                        for (int64_t ki = 0; ki < s->kh; ki++)
                            for (int64_t kj = 0; kj < s->kw; kj++) {
                                int64_t ih = oh * s->sh + ki - s->ph, iw = ow * s->sw + kj - s->pw;
                                if (ih >= 0 && ih < s->h_in && iw >= 0 && iw < s->w_in)
                                    y += x[((n * s->c_in + oc / cog * cig + ci) * s->h_in + ih) * s->w_in + iw] *
                                         w[((oc * cig + ci) * s->kh + ki) * s->kw + kj];
                            }
                    L += y * r[((n * s->c_out + oc) * s->h_out + oh) * s->w_out + ow];
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

typedef struct dparams {
    double *x, *w, *b;
} dparams;

static void fd_grad(const conv_data *d, dparams *p, double *v, size_t nv, double *g)
{
    const double eps = 1e-3;
    for (size_t i = 0; i < nv; i++) {
        double keep = v[i];
        v[i] = keep + eps;
        double up = loss_d(&d->s, p->x, p->w, p->b, d->dy);
        v[i] = keep - eps;
        double down = loss_d(&d->s, p->x, p->w, p->b, d->dy);
        v[i] = keep;
        g[i] = (up - down) / (2.0 * eps);
    }
}

static void check_fd(const conv_data *d, const grads *got, const double *fd, const char *who, size_t i)
{
    double e[3] = {kg_rel_err_d(got->dx, fd, d->nx), kg_rel_err_d(got->dw, fd + d->nx, d->nw),
                   kg_rel_err_d(got->db, fd + d->nx + d->nw, d->nb)};
    if (!(e[0] <= 1e-3 && e[1] <= 1e-3 && e[2] <= 1e-3))
        fail_msg("%s shape %zu vs finite differences: dx %g dw %g db %g", who, i, e[0], e[1], e[2]);
}

static void test_finite_differences(void **state)
{
    (void)state;
    const int small[][12] = {{2, 1, 8, 8, 3, 5, 5, 1, 1, 2, 2, 1},  {2, 4, 6, 5, 4, 3, 3, 2, 1, 1, 0, 2},
                             {2, 3, 6, 6, 3, 3, 3, 2, 2, 1, 1, 3},  {1, 4, 5, 5, 3, 1, 1, 1, 1, 0, 0, 1},
                             {3, 2, 7, 9, 3, 2, 4, 2, 3, 1, 2, 1}};
    for (size_t i = 0; i < sizeof small / sizeof small[0]; i++) {
        conv_data d = make_data(small[i], 400 + i);
        dparams p = {to_double(d.x, d.nx), to_double(d.w, d.nw), to_double(d.b, d.nb)};
        double *fd = malloc(sizeof(double) * (d.nx + d.nw + d.nb));
        assert_non_null(fd);
        fd_grad(&d, &p, p.x, d.nx, fd);
        fd_grad(&d, &p, p.w, d.nw, fd + d.nx);
        fd_grad(&d, &p, p.b, d.nb, fd + d.nx + d.nw);
        grads ref = alloc_grads(&d), opt = alloc_grads(&d);
        qh_k_conv2d_bwd_f32_ref(&d.s, d.x, d.w, d.dy, ref.dx, ref.dw, ref.db);
        run_bwd(&d, &opt, NULL);
        check_fd(&d, &ref, fd, "reference", i);
        check_fd(&d, &opt, fd, "optimized", i);
        free_grads(&ref), free_grads(&opt);
        free(fd), free(p.x), free(p.w), free(p.b);
        free_data(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_finish),
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
