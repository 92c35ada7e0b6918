/* test_pool.c - max/average pooling: shapes, PyTorch semantics, optimized vs reference,
 * thread-count independence and finite-difference gradients. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

static qh_pool2d_shape make_shape(int64_t n, int64_t c, int64_t h, int64_t w, int32_t kh, int32_t kw, int32_t sh,
                                  int32_t sw, int32_t ph, int32_t pw)
{
    qh_pool2d_shape s = {.n = n, .c = c, .h_in = h, .w_in = w, .kh = kh, .kw = kw, .sh = sh, .sw = sw,
                         .ph = ph, .pw = pw};
    qh_pool2d_shape_finish(&s);
    return s;
}

static int64_t in_count(const qh_pool2d_shape *s) { return s->n * s->c * s->h_in * s->w_in; }
static int64_t out_count(const qh_pool2d_shape *s) { return s->n * s->c * s->h_out * s->w_out; }

/* Odd shapes, asymmetric kernels/strides/padding, overlapping windows; rows wide enough for the
 * eight-output AVX2 path of max pooling (stride 1 and 2, with their border outputs); the last is
 * big enough to run on several threads. */
static qh_pool2d_shape cases(int k)
{
    switch (k) {
    case 0: return make_shape(1, 1, 4, 4, 2, 2, 2, 2, 0, 0);
    case 1: return make_shape(2, 3, 7, 9, 3, 2, 2, 1, 1, 0);
    case 2: return make_shape(1, 2, 5, 6, 3, 3, 2, 2, 1, 1);
    case 3: return make_shape(3, 1, 9, 5, 1, 3, 1, 2, 0, 1);
    case 4: return make_shape(2, 2, 6, 7, 4, 3, 1, 3, 2, 1);
    case 5: return make_shape(2, 3, 13, 67, 3, 3, 2, 2, 0, 0);
    case 6: return make_shape(1, 2, 9, 40, 3, 3, 1, 1, 1, 1);
    case 7: return make_shape(1, 1, 6, 45, 2, 2, 2, 2, 0, 0);
    case 8: return make_shape(1, 2, 5, 29, 2, 4, 1, 2, 1, 2);
    default: return make_shape(4, 8, 33, 31, 3, 3, 2, 2, 1, 1);
    }
}
#define N_CASES 10

static void test_shape_finish(void **state)
{
    (void)state;
    qh_pool2d_shape s = make_shape(1, 1, 28, 28, 2, 2, 2, 2, 0, 0);
    assert_int_equal(s.h_out, 14);
    assert_int_equal(s.w_out, 14);
    s = make_shape(1, 1, 7, 8, 3, 3, 2, 2, 1, 1); /* floor((7+2-3)/2)+1, floor((8+2-3)/2)+1 */
    assert_int_equal(s.h_out, 4);
    assert_int_equal(s.w_out, 4);
    s = make_shape(1, 1, 5, 5, 2, 2, 2, 2, 0, 0); /* floor mode drops the last row and column */
    assert_int_equal(s.h_out, 2);
    s = make_shape(1, 1, 1, 5, 3, 3, 1, 1, 0, 0); /* kernel larger than the input */
    assert_int_equal(s.h_out, 0);
}

/* Every case: 1 thread and 2 threads give the reference's exact bytes, forward and backward, with
 * NaNs, exact ties and +0/-0 ties in the input; without argmax (inference) the same values. */
static void test_opt_matches_ref(void **state)
{
    (void)state;
    for (int k = 0; k < N_CASES; k++) {
        qh_pool2d_shape s = cases(k);
        int64_t ni = in_count(&s), no = out_count(&s);
        qh_rng r;
        qh_rng_seed(&r, 100 + k);
        float *x = falloc(ni), *dy = falloc(no);
        fill_uniform(&r, x, ni, -2.0f, 2.0f);
        fill_uniform(&r, dy, no, -1.0f, 1.0f);
        for (int64_t i = 1; i < ni; i++) {
            if (i % 13 == 0)
                x[i] = x[i - 1];
            if (i % 29 == 0)
                x[i - 1] = 0.0f, x[i] = -0.0f;
            if (i % 97 == 5)
                x[i] = NAN;
        }
        float *y[3], *dx[3], *ay[3], *adx[3];
        int32_t *am[3];
        for (int v = 0; v < 3; v++) {
            y[v] = falloc(no), dx[v] = falloc(ni), ay[v] = falloc(no), adx[v] = falloc(ni);
            am[v] = calloc((size_t)no + 1, sizeof(int32_t));
        }
        qh_k_maxpool2d_fwd_f32_ref(&s, x, y[0], am[0]);
        qh_k_maxpool2d_bwd_f32_ref(&s, dy, am[0], dx[0]);
        qh_k_avgpool2d_fwd_f32_ref(&s, x, ay[0]);
        qh_k_avgpool2d_bwd_f32_ref(&s, dy, adx[0]);
        for (int v = 1; v < 3; v++) {
            qh_set_threads(v);
            qh_k_maxpool2d_fwd_f32(&s, x, y[v], am[v]);
            qh_k_maxpool2d_bwd_f32(&s, dy, am[v], dx[v]);
            qh_k_avgpool2d_fwd_f32(&s, x, ay[v]);
            qh_k_avgpool2d_bwd_f32(&s, dy, adx[v]);
            assert_true(bytes_equal(y[v], y[0], (size_t)no * sizeof(float)));
            assert_true(bytes_equal(am[v], am[0], (size_t)no * sizeof(int32_t)));
            float *yv = falloc(no);
            qh_k_maxpool2d_fwd_f32(&s, x, yv, NULL);
            assert_true(bytes_equal(yv, y[0], (size_t)no * sizeof(float)));
            free(yv);
            assert_true(bytes_equal(dx[v], dx[0], (size_t)ni * sizeof(float)));
            assert_true(bytes_equal(ay[v], ay[0], (size_t)no * sizeof(float)));
            assert_true(bytes_equal(adx[v], adx[0], (size_t)ni * sizeof(float)));
        }
        for (int v = 0; v < 3; v++)
            free(y[v]), free(dx[v]), free(ay[v]), free(adx[v]), free(am[v]);
        free(x), free(dy);
    }
}

/* Padding is -inf for max (a negative plane stays negative) and 0 for avg, counted in the divisor. */
static void test_padding_semantics(void **state)
{
    (void)state;
    qh_pool2d_shape s = make_shape(1, 1, 4, 4, 3, 3, 2, 2, 1, 1); /* 2 x 2 output */
    float x[16], y[4], ay[4];
    int32_t am[4];
    for (int i = 0; i < 16; i++)
        x[i] = -1.0f - (float)i;
    qh_k_maxpool2d_fwd_f32(&s, x, y, am);
    const float want_max[4] = {-1.0f, -2.0f, -5.0f, -6.0f};
    const int32_t want_arg[4] = {0, 1, 4, 5};
    assert_memory_equal(y, want_max, sizeof y);
    assert_memory_equal(am, want_arg, sizeof am);
    for (int i = 0; i < 16; i++)
        x[i] = 1.0f;
    qh_k_avgpool2d_fwd_f32(&s, x, ay);
    const float want_avg[4] = {4.0f / 9, 6.0f / 9, 6.0f / 9, 1.0f}; /* real taps of 9: 4, 6, 6, 9 */
    for (int i = 0; i < 4; i++)
        assert_float_equal(ay[i], want_avg[i], 1e-7);
}

/* Ties: the first maximum in window order wins, as in PyTorch. */
static void test_max_ties_first_wins(void **state)
{
    (void)state;
    qh_pool2d_shape s = make_shape(1, 1, 5, 5, 3, 3, 2, 2, 0, 0); /* windows start at 0 and 2 */
    float x[25], y[4];
    int32_t am[4], am_ref[4];
    for (int i = 0; i < 25; i++)
        x[i] = 3.0f;
    qh_k_maxpool2d_fwd_f32(&s, x, y, am);
    qh_k_maxpool2d_fwd_f32_ref(&s, x, y, am_ref);
    const int32_t want[4] = {0, 2, 10, 12};
    assert_memory_equal(am, want, sizeof am);
    assert_memory_equal(am_ref, want, sizeof am);
    /* a row wide enough for the eight-output path: every window's first tap */
    s = make_shape(1, 1, 5, 40, 3, 3, 2, 2, 0, 0); /* 2 x 19 */
    float xw[200], yw[38];
    int32_t aw[38];
    for (int i = 0; i < 200; i++)
        xw[i] = 3.0f;
    qh_k_maxpool2d_fwd_f32(&s, xw, yw, aw);
    for (int oh = 0; oh < 2; oh++)
        for (int ow = 0; ow < 19; ow++)
            assert_int_equal(aw[oh * 19 + ow], oh * 2 * 40 + ow * 2);
}

typedef struct pool_ctx {
    const qh_pool2d_shape *s;
    const float *w;
    float *y;
    int32_t *am;
    int is_max;
} pool_ctx;

static double pool_objective(const float *x, void *ctx)
{
    pool_ctx *c = ctx;
    if (c->is_max)
        qh_k_maxpool2d_fwd_f32(c->s, x, c->y, c->am);
    else
        qh_k_avgpool2d_fwd_f32(c->s, x, c->y);
    return dot_f64(c->w, c->y, out_count(c->s));
}

/* Values on a shuffled grid with spacing 0.05 > 2h, so no perturbation can change a winner. */
static void grid_input(qh_rng *r, float *x, int64_t n)
{
    int64_t *perm = malloc((size_t)n * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    qh_rng_shuffle_i64(r, perm, n);
    for (int64_t i = 0; i < n; i++)
        x[i] = 0.05f * (float)(perm[i] - n / 2);
    free(perm);
}

static void check_grad(int is_max)
{
    for (int k = 0; k < N_CASES - 1; k++) {
        qh_pool2d_shape s = cases(k);
        int64_t ni = in_count(&s), no = out_count(&s);
        qh_rng r;
        qh_rng_seed(&r, 300 + k);
        float *x = falloc(ni), *dy = falloc(no), *dx = falloc(ni), *fd = falloc(ni), *y = falloc(no);
        int32_t *am = calloc((size_t)no + 1, sizeof(int32_t));
        grid_input(&r, x, ni);
        fill_uniform(&r, dy, no, -1.0f, 1.0f);
        if (is_max) {
            qh_k_maxpool2d_fwd_f32(&s, x, y, am);
            qh_k_maxpool2d_bwd_f32(&s, dy, am, dx);
        } else {
            qh_k_avgpool2d_bwd_f32(&s, dy, dx);
        }
        pool_ctx c = {&s, dy, y, am, is_max};
        /* Average pooling is linear, so a long step is exact and keeps rounding noise small. */
        finite_diff(pool_objective, &c, x, ni, is_max ? 1e-2f : 0.25f, fd);
        assert_true(rel_err(dx, fd, ni) <= 1e-3);
        free(x), free(dy), free(dx), free(fd), free(y), free(am);
    }
}

static void test_maxpool_grad_finite_diff(void **state)
{
    (void)state;
    check_grad(1);
}

static void test_avgpool_grad_finite_diff(void **state)
{
    (void)state;
    check_grad(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_finish),
        cmocka_unit_test(test_opt_matches_ref),
        cmocka_unit_test(test_padding_semantics),
        cmocka_unit_test(test_max_ties_first_wins),
        cmocka_unit_test(test_maxpool_grad_finite_diff),
        cmocka_unit_test(test_avgpool_grad_finite_diff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
