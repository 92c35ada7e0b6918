/* test_batchnorm.c - batch norm 2d (train/eval forward, backward) and the fused scale/shift/activation
 * epilogue: closed forms, optimized vs reference on odd shapes, 1 vs 2 threads byte-equal, and
 * central finite differences of the training forward. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_parallel.h"

#define EPS 1e-5
#define MOMENTUM 0.1

typedef struct bn_shape {
    int64_t n, c, hw;
} bn_shape;

/* Odd sizes (vector tails, single images, single pixels); the last runs on several threads. */
static const bn_shape shapes[] = {{1, 1, 2}, {2, 3, 7}, {3, 5, 13}, {1, 4, 1}, {5, 2, 9}, {4, 9, 1089}};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

/* All the tensors of one batch-norm problem. */
typedef struct bn_data {
    bn_shape s;
    float *x, *dy, *gamma, *beta, *rm, *rv;
} bn_data;

static int64_t elems(bn_shape s) { return s.n * s.c * s.hw; }

/* Per channel an offset and a spread, so mean and variance both matter. */
static bn_data make_data(bn_shape s, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    bn_data d = {.s = s, .x = falloc(elems(s)), .dy = falloc(elems(s)), .gamma = falloc(s.c), .beta = falloc(s.c),
                 .rm = falloc(s.c), .rv = falloc(s.c)};
    fill_uniform(&r, d.x, elems(s), -2.0f, 2.0f);
    for (int64_t i = 0; i < s.n; i++)
        for (int64_t ch = 0; ch < s.c; ch++)
            for (int64_t j = 0; j < s.hw; j++)
                d.x[(i * s.c + ch) * s.hw + j] = d.x[(i * s.c + ch) * s.hw + j] * (1.0f + 0.3f * ch) + 0.7f * ch;
    fill_uniform(&r, d.dy, elems(s), -1.0f, 1.0f);
    fill_uniform(&r, d.gamma, s.c, 0.5f, 1.5f);
    fill_uniform(&r, d.beta, s.c, -1.0f, 1.0f);
    fill_uniform(&r, d.rm, s.c, -1.0f, 1.0f);
    fill_uniform(&r, d.rv, s.c, 0.5f, 2.0f);
    return d;
}

static void free_data(bn_data *d)
{
    free(d->x), free(d->dy), free(d->gamma), free(d->beta), free(d->rm), free(d->rv);
}

/* Outputs of one training step: forward, running statistics, backward. */
typedef struct bn_out {
    float *y, *rm, *rv, *sm, *si, *dx, *dg, *db;
} bn_out;

static bn_out alloc_out(bn_shape s)
{
    return (bn_out){falloc(elems(s)), falloc(s.c), falloc(s.c), falloc(s.c), falloc(s.c), falloc(elems(s)),
                    falloc(s.c), falloc(s.c)};
}

static void free_out(bn_out *o)
{
    free(o->y), free(o->rm), free(o->rv), free(o->sm), free(o->si), free(o->dx), free(o->dg), free(o->db);
}

static void train_step(const bn_data *d, int opt, bn_out *o)
{
    bn_shape s = d->s;
    memcpy(o->rm, d->rm, (size_t)s.c * sizeof(float));
    memcpy(o->rv, d->rv, (size_t)s.c * sizeof(float));
    (opt ? qh_k_bn2d_fwd_train_f32 : qh_k_bn2d_fwd_train_f32_ref)(s.n, s.c, s.hw, d->x, d->gamma, d->beta, EPS,
                                                                  MOMENTUM, o->rm, o->rv, o->y, o->sm, o->si);
    (opt ? qh_k_bn2d_bwd_f32 : qh_k_bn2d_bwd_f32_ref)(s.n, s.c, s.hw, d->x, d->dy, d->gamma, o->sm, o->si, o->dx,
                                                      o->dg, o->db);
}

/* A known channel: {1, 2, 3, 4} over two images of two pixels. Mean 2.5, biased variance 1.25,
 * unbiased 5/3; running mean 0 -> 0.25, running variance 1 -> 0.9 + 0.1 * 5/3. */
static void test_train_closed_form(void **state)
{
    (void)state;
    const float x[4] = {1, 2, 3, 4}, gamma = 2.0f, beta = 0.5f;
    for (int opt = 0; opt < 2; opt++) {
        float y[4], rm = 0.0f, rv = 1.0f, sm, si;
        (opt ? qh_k_bn2d_fwd_train_f32 : qh_k_bn2d_fwd_train_f32_ref)(2, 1, 2, x, &gamma, &beta, EPS, MOMENTUM, &rm,
                                                                      &rv, y, &sm, &si);
        assert_float_equal(sm, 2.5f, 0.0f);
        assert_float_equal(si, 1.0 / sqrt(1.25 + EPS), 1e-7);
        assert_float_equal(rm, 0.25f, 1e-7);
        assert_float_equal(rv, 0.9 + 0.1 * 5.0 / 3.0, 1e-7);
        for (int i = 0; i < 4; i++)
            assert_float_equal(y[i], (x[i] - 2.5) / sqrt(1.25 + EPS) * 2.0 + 0.5, 1e-6);
    }
}

/* A large common offset must not eat the precision of the normalized output. */
static void test_train_large_offset(void **state)
{
    (void)state;
    enum { M = 64 };
    float x[M], y[M], gamma = 1.0f, beta = 0.0f, rm = 0.0f, rv = 1.0f, sm, si;
    double var = 0.0;
    for (int i = 0; i < M; i++) {
        x[i] = 4096.0f + (float)(i % 8) - 3.5f;
        var += ((i % 8) - 3.5) * ((i % 8) - 3.5) / M;
    }
    for (int opt = 0; opt < 2; opt++) {
        (opt ? qh_k_bn2d_fwd_train_f32 : qh_k_bn2d_fwd_train_f32_ref)(4, 1, 16, x, &gamma, &beta, EPS, MOMENTUM,
                                                                      &rm, &rv, y, &sm, &si);
        for (int i = 0; i < M; i++)
            assert_float_equal(y[i], ((i % 8) - 3.5) / sqrt(var + EPS), 1e-6);
    }
}

/* The optimized sums run in another (fixed) order than the reference's, so they agree to rounding;
 * across thread counts the optimized version is byte-identical. */
static void test_train_opt_vs_ref_threads(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        bn_data d = make_data(shapes[k], 10 + k);
        bn_out o[3] = {alloc_out(d.s), alloc_out(d.s), alloc_out(d.s)};
        train_step(&d, 0, &o[0]);
        for (int t = 1; t <= 2; t++) {
            qh_set_threads(t);
            train_step(&d, 1, &o[t]);
        }
        int64_t n = elems(d.s), c = d.s.c;
        assert_true(rel_err(o[1].y, o[0].y, n) <= 1e-6);
        assert_true(rel_err(o[1].rm, o[0].rm, c) <= 1e-6);
        assert_true(rel_err(o[1].rv, o[0].rv, c) <= 1e-6);
        assert_true(rel_err(o[1].si, o[0].si, c) <= 1e-6);
        assert_true(rel_err(o[1].dx, o[0].dx, n) <= 1e-5);
        assert_true(rel_err(o[1].dg, o[0].dg, c) <= 1e-6);
        assert_true(rel_err(o[1].db, o[0].db, c) <= 1e-6);
        size_t nb = (size_t)n * sizeof(float), cb = (size_t)c * sizeof(float);
        assert_true(bytes_equal(o[1].y, o[2].y, nb) && bytes_equal(o[1].dx, o[2].dx, nb));
        assert_true(bytes_equal(o[1].rm, o[2].rm, cb) && bytes_equal(o[1].rv, o[2].rv, cb));
        assert_true(bytes_equal(o[1].sm, o[2].sm, cb) && bytes_equal(o[1].si, o[2].si, cb));
        assert_true(bytes_equal(o[1].dg, o[2].dg, cb) && bytes_equal(o[1].db, o[2].db, cb));
        for (int v = 0; v < 3; v++)
            free_out(&o[v]);
        free_data(&d);
    }
}

/* dx == NULL still yields dgamma and dbeta, the same bytes as with dx. */
static void test_bwd_without_dx(void **state)
{
    (void)state;
    bn_data d = make_data(shapes[2], 7);
    bn_out o = alloc_out(d.s);
    float *dg = falloc(d.s.c), *db = falloc(d.s.c);
    for (int opt = 0; opt < 2; opt++) {
        train_step(&d, opt, &o);
        (opt ? qh_k_bn2d_bwd_f32 : qh_k_bn2d_bwd_f32_ref)(d.s.n, d.s.c, d.s.hw, d.x, d.dy, d.gamma, o.sm, o.si, NULL,
                                                          dg, db);
        assert_memory_equal(dg, o.dg, (size_t)d.s.c * sizeof(float));
        assert_memory_equal(db, o.db, (size_t)d.s.c * sizeof(float));
    }
    free(dg), free(db);
    free_out(&o);
    free_data(&d);
}

/* Eval forward: same coefficients in both versions, so the same bytes; also the closed form. */
static void test_eval(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_SHAPES; k++) {
        bn_data d = make_data(shapes[k], 30 + k);
        int64_t n = elems(d.s);
        float *y[3] = {falloc(n), falloc(n), falloc(n)};
        qh_k_bn2d_fwd_eval_f32_ref(d.s.n, d.s.c, d.s.hw, d.x, d.gamma, d.beta, d.rm, d.rv, EPS, y[0]);
        for (int t = 1; t <= 2; t++) {
            qh_set_threads(t);
            qh_k_bn2d_fwd_eval_f32(d.s.n, d.s.c, d.s.hw, d.x, d.gamma, d.beta, d.rm, d.rv, EPS, y[t]);
            assert_true(bytes_equal(y[t], y[0], (size_t)n * sizeof(float)));
        }
        for (int64_t i = 0; i < n; i++) {
            int64_t ch = i / d.s.hw % d.s.c;
            double want = (d.x[i] - d.rm[ch]) / sqrt(d.rv[ch] + EPS) * d.gamma[ch] + d.beta[ch];
            assert_float_equal(y[0][i], want, 1e-5);
        }
        for (int v = 0; v < 3; v++)
            free(y[v]);
        free_data(&d);
    }
}

/* The epilogue for relu 0, 1 and 6: closed form, in place, optimized == reference, any threads. */
static void test_scale_shift_act(void **state)
{
    (void)state;
    const int acts[3] = {0, 1, 6};
    for (size_t k = 0; k < N_SHAPES; k++)
        for (int a = 0; a < 3; a++) {
            bn_data d = make_data(shapes[k], 50 + k);
            int64_t n = elems(d.s);
            float *y[3] = {falloc(n), falloc(n), falloc(n)}, *in_place = falloc(n);
            for (int64_t i = 0; i < n; i++)
                d.x[i] *= 4.0f; /* reach past 6 */
            qh_k_scale_shift_act_f32_ref(d.s.n, d.s.c, d.s.hw, d.x, d.gamma, d.beta, acts[a], y[0]);
            for (int t = 1; t <= 2; t++) {
                qh_set_threads(t);
                qh_k_scale_shift_act_f32(d.s.n, d.s.c, d.s.hw, d.x, d.gamma, d.beta, acts[a], y[t]);
                assert_true(bytes_equal(y[t], y[0], (size_t)n * sizeof(float)));
            }
            memcpy(in_place, d.x, (size_t)n * sizeof(float));
            qh_k_scale_shift_act_f32(d.s.n, d.s.c, d.s.hw, in_place, d.gamma, d.beta, acts[a], in_place);
            assert_true(bytes_equal(in_place, y[0], (size_t)n * sizeof(float)));
            for (int64_t i = 0; i < n; i++) {
                int64_t ch = i / d.s.hw % d.s.c;
                double v = (double)d.x[i] * d.gamma[ch] + d.beta[ch];
                v = acts[a] ? fmax(v, 0.0) : v;
                v = acts[a] == 6 ? fmin(v, 6.0) : v;
                assert_float_equal(y[0][i], v, 1e-5);
            }
            for (int v = 0; v < 3; v++)
                free(y[v]);
            free(in_place);
            free_data(&d);
        }
}

/* ---------------------------------------------------------------- finite differences */

typedef struct fd_ctx {
    bn_data *d;
    int opt;
    float *y, *rm, *rv, *sm, *si;
} fd_ctx;

/* sum(dy * y) of the training forward; x, gamma, beta are read from the data, which the finite
 * difference perturbs in place. */
static double objective(const float *unused, void *ctx)
{
    (void)unused;
    fd_ctx *c = ctx;
    bn_shape s = c->d->s;
    (c->opt ? qh_k_bn2d_fwd_train_f32 : qh_k_bn2d_fwd_train_f32_ref)(s.n, s.c, s.hw, c->d->x, c->d->gamma,
                                                                     c->d->beta, EPS, MOMENTUM, c->rm, c->rv, c->y,
                                                                     c->sm, c->si);
    return dot_f64(c->d->dy, c->y, elems(s));
}

static void test_finite_differences(void **state)
{
    (void)state;
    const bn_shape fd_shapes[] = {{2, 3, 5}, {3, 2, 4}};
    for (size_t k = 0; k < 2; k++)
        for (int opt = 0; opt < 2; opt++) {
            bn_data d = make_data(fd_shapes[k], 70 + k);
            bn_shape s = d.s;
            bn_out o = alloc_out(s);
            train_step(&d, opt, &o);
            fd_ctx c = {&d, opt, falloc(elems(s)), falloc(s.c), falloc(s.c), falloc(s.c), falloc(s.c)};
            float *gx = falloc(elems(s)), *gg = falloc(s.c), *gb = falloc(s.c);
            finite_diff(objective, &c, d.x, elems(s), 1e-2f, gx);
            finite_diff(objective, &c, d.gamma, s.c, 1e-2f, gg);
            finite_diff(objective, &c, d.beta, s.c, 1e-2f, gb);
            double ex = rel_err(o.dx, gx, elems(s)), eg = rel_err(o.dg, gg, s.c), eb = rel_err(o.db, gb, s.c);
            if (!(ex <= 1e-3 && eg <= 1e-3 && eb <= 1e-3))
                fail_msg("shape %zu opt %d: dx %.3g dgamma %.3g dbeta %.3g", k, opt, ex, eg, eb);
            free(gx), free(gg), free(gb), free(c.y), free(c.rm), free(c.rv), free(c.sm), free(c.si);
            free_out(&o);
            free_data(&d);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_closed_form),
        cmocka_unit_test(test_train_large_offset),
        cmocka_unit_test(test_train_opt_vs_ref_threads),
        cmocka_unit_test(test_bwd_without_dx),
        cmocka_unit_test(test_eval),
        cmocka_unit_test(test_scale_shift_act),
        cmocka_unit_test(test_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
