/* test_linear.c - fully connected layer: optimized vs reference, 1 vs 2 threads byte-equal, and the
 * backward of both against central finite differences of L = sum(y * r) computed in double. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "kgemm_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

typedef struct lin {
    int64_t n, in, out;
    float *x, *w, *b, *dy;
} lin;

static lin make_lin(int64_t n, int64_t in, int64_t out, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    lin l = {n, in, out, NULL, NULL, NULL, NULL};
    l.x = kg_random(&r, (size_t)(n * in));
    l.w = kg_random(&r, (size_t)(out * in));
    l.b = kg_random(&r, (size_t)out);
    l.dy = kg_random(&r, (size_t)(n * out));
    return l;
}

static void free_lin(lin *l)
{
    free(l->x);
    free(l->w);
    free(l->b);
    free(l->dy);
}

static const int64_t shapes[][3] = {{1, 1, 1}, {3, 7, 17}, {5, 33, 1}, {1, 400, 120}, {256, 400, 120},
                                    {256, 120, 84}, {256, 84, 10}, {17, 300, 23}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

static void test_forward(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        lin l = make_lin(shapes[i][0], shapes[i][1], shapes[i][2], 10 + i);
        size_t ny = (size_t)(l.n * l.out);
        float *want = kg_alloc(ny), *got = kg_alloc(ny);
        for (int bias = 0; bias < 2; bias++) {
            const float *b = bias ? l.b : NULL;
            qh_k_linear_fwd_f32_ref(l.n, l.in, l.out, l.x, l.w, b, want);
            qh_k_linear_fwd_f32(l.n, l.in, l.out, l.x, l.w, b, got);
            assert_true(kg_rel_err(got, want, ny) <= 1e-5);
        }
        free(want);
        free(got);
        free_lin(&l);
    }
}

static void test_backward(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_SHAPES; i++) {
        lin l = make_lin(shapes[i][0], shapes[i][1], shapes[i][2], 20 + i);
        size_t nx = (size_t)(l.n * l.in), nw = (size_t)(l.out * l.in), nb = (size_t)l.out;
        float *dx0 = kg_alloc(nx), *dw0 = kg_alloc(nw), *db0 = kg_alloc(nb);
        float *dx1 = kg_alloc(nx), *dw1 = kg_alloc(nw), *db1 = kg_alloc(nb);
        qh_k_linear_bwd_f32_ref(l.n, l.in, l.out, l.x, l.w, l.dy, dx0, dw0, db0);
        qh_k_linear_bwd_f32(l.n, l.in, l.out, l.x, l.w, l.dy, dx1, dw1, db1);
        assert_true(kg_rel_err(dx1, dx0, nx) <= 1e-5);
        assert_true(kg_rel_err(dw1, dw0, nw) <= 1e-5);
        assert_true(kg_rel_err(db1, db0, nb) <= 1e-5);
        /* dx and db may be skipped; dw must not change */
        float *dw2 = kg_alloc(nw);
        qh_k_linear_bwd_f32(l.n, l.in, l.out, l.x, l.w, l.dy, NULL, dw2, NULL);
        assert_memory_equal(dw1, dw2, sizeof(float) * nw);
        free(dw2);
        free(dx0), free(dw0), free(db0), free(dx1), free(dw1), free(db1);
        free_lin(&l);
    }
}

static void test_thread_invariance(void **state)
{
    (void)state;
    int saved = qh_threads();
    lin l = make_lin(256, 400, 120, 30);
    size_t ny = 256 * 120, nx = 256 * 400, nw = 120 * 400;
    float *out[2][4];
    for (int t = 0; t < 2; t++) {
        qh_set_threads(t + 1);
        out[t][0] = kg_alloc(ny), out[t][1] = kg_alloc(nx), out[t][2] = kg_alloc(nw), out[t][3] = kg_alloc(120);
        qh_k_linear_fwd_f32(l.n, l.in, l.out, l.x, l.w, l.b, out[t][0]);
        qh_k_linear_bwd_f32(l.n, l.in, l.out, l.x, l.w, l.dy, out[t][1], out[t][2], out[t][3]);
    }
    const size_t sizes[4] = {ny, nx, nw, 120};
    for (int k = 0; k < 4; k++) {
        assert_memory_equal(out[0][k], out[1][k], sizeof(float) * sizes[k]);
        free(out[0][k]);
        free(out[1][k]);
    }
    free_lin(&l);
    qh_set_threads(saved);
}

/* ---------------------------------------------------------------- finite differences */

/* L = sum(y * r) with y = x W^T + b, all in double. */
static double loss_d(const lin *l, const double *x, const double *w, const double *b, const float *r)
{
    double L = 0.0;
    for (int64_t i = 0; i < l->n; i++)
        for (int64_t o = 0; o < l->out; o++) {
            double y = b[o];
            for (int64_t k = 0; k < l->in; k++)
                y += x[i * l->in + k] * w[o * l->in + k];
            L += y * r[i * l->out + o];
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

/* Central differences of L with respect to every element of p (one of x, w, b). */
static void fd_grad(const lin *l, double *x, double *w, double *b, double *p, size_t np, const float *r, double *g)
{
    const double eps = 1e-3;
    for (size_t i = 0; i < np; i++) {
        double keep = p[i];
        p[i] = keep + eps;
        double up = loss_d(l, x, w, b, r);
        p[i] = keep - eps;
        double down = loss_d(l, x, w, b, r);
        p[i] = keep;
        g[i] = (up - down) / (2.0 * eps);
    }
}

typedef void (*bwd_fn)(int64_t, int64_t, int64_t, const float *, const float *, const float *, float *, float *,
                       float *);

static void check_fd(int64_t n, int64_t in, int64_t out, bwd_fn bwd, uint64_t seed)
{
    lin l = make_lin(n, in, out, seed); /* l.dy plays r: dL/dy = r */
    size_t nx = (size_t)(n * in), nw = (size_t)(out * in), nb = (size_t)out;
    double *x = to_double(l.x, nx), *w = to_double(l.w, nw), *b = to_double(l.b, nb);
    double *g = malloc(sizeof(double) * (nx + nw + nb));
    assert_non_null(g);
    fd_grad(&l, x, w, b, x, nx, l.dy, g);
    fd_grad(&l, x, w, b, w, nw, l.dy, g + nx);
    fd_grad(&l, x, w, b, b, nb, l.dy, g + nx + nw);
    float *dx = kg_alloc(nx), *dw = kg_alloc(nw), *db = kg_alloc(nb);
    bwd(n, in, out, l.x, l.w, l.dy, dx, dw, db);
    assert_true(kg_rel_err_d(dx, g, nx) <= 1e-3);
    assert_true(kg_rel_err_d(dw, g + nx, nw) <= 1e-3);
    assert_true(kg_rel_err_d(db, g + nx + nw, nb) <= 1e-3);
    free(dx), free(dw), free(db), free(g), free(x), free(w), free(b);
    free_lin(&l);
}

static void test_finite_differences(void **state)
{
    (void)state;
    const int64_t fd_shapes[][3] = {{1, 1, 1}, {3, 7, 5}, {4, 20, 17}, {9, 33, 10}};
    for (size_t i = 0; i < sizeof fd_shapes / sizeof fd_shapes[0]; i++) {
        check_fd(fd_shapes[i][0], fd_shapes[i][1], fd_shapes[i][2], qh_k_linear_bwd_f32_ref, 40 + i);
        check_fd(fd_shapes[i][0], fd_shapes[i][1], fd_shapes[i][2], qh_k_linear_bwd_f32, 50 + i);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward),
        cmocka_unit_test(test_backward),
        cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
