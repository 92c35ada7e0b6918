/* test_bn_act.c - batch norm + ReLU/ReLU6 in one training pass (qh_k_bn2d_fwd_train_act_f32), and
 * the graph's use of it: optimized vs reference; byte-equal to the unfused optimized kernels (batch
 * norm, then the activation) and across 1/2 threads; a graph conv -> bn -> ReLU6 -> conv -> bn ->
 * ReLU -> linear trained one step gives byte-for-byte the outputs, running statistics and gradients
 * of the same chain of unfused kernels (the activations' backward masks read from the folded output). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "keltw_check.h"
#include "kernels/qh_kernels.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_parallel.h"

#define EPS 1e-5
#define MOMENTUM 0.1

static float *fcopy(const float *a, int64_t n)
{
    float *p = falloc(n);
    assert_non_null(p);
    memcpy(p, a, sizeof(float) * (size_t)n);
    return p;
}

/* ---------------------------------------------------------------- kernel */

typedef struct bn_case {
    int64_t n, c, hw;
    float *x, *gamma, *beta, *rm, *rv;
} bn_case;

static bn_case make_case(int64_t n, int64_t c, int64_t hw, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    bn_case k = {n, c, hw, falloc(n * c * hw), falloc(c), falloc(c), falloc(c), falloc(c)};
    fill_uniform(&r, k.x, n * c * hw, -3.0f, 9.0f); /* both clamps of ReLU6 are reached */
    fill_uniform(&r, k.gamma, c, 0.5f, 4.0f);
    fill_uniform(&r, k.beta, c, -1.0f, 3.0f);
    fill_uniform(&r, k.rm, c, -1.0f, 1.0f);
    fill_uniform(&r, k.rv, c, 0.5f, 2.0f);
    return k;
}

static void free_case(bn_case *k)
{
    free(k->x), free(k->gamma), free(k->beta), free(k->rm), free(k->rv);
}

typedef struct bn_res {
    float *y, *rm, *rv, *sm, *si;
} bn_res;

typedef void (*train_act_fn)(int64_t, int64_t, int64_t, const float *, const float *, const float *, double, double,
                             float *, float *, int, float *, float *, float *);

static bn_res run_act(const bn_case *k, train_act_fn f, int relu)
{
    bn_res r = {falloc(k->n * k->c * k->hw), fcopy(k->rm, k->c), fcopy(k->rv, k->c), falloc(k->c), falloc(k->c)};
    f(k->n, k->c, k->hw, k->x, k->gamma, k->beta, EPS, MOMENTUM, r.rm, r.rv, relu, r.y, r.sm, r.si);
    return r;
}

static void free_res(bn_res *r)
{
    free(r->y), free(r->rm), free(r->rv), free(r->sm), free(r->si);
}

static void assert_res_equal(const bn_res *a, const bn_res *b, const bn_case *k)
{
    size_t nb = sizeof(float) * (size_t)(k->n * k->c * k->hw), cb = sizeof(float) * (size_t)k->c;
    assert_memory_equal(a->y, b->y, nb);
    assert_memory_equal(a->rm, b->rm, cb);
    assert_memory_equal(a->rv, b->rv, cb);
    assert_memory_equal(a->sm, b->sm, cb);
    assert_memory_equal(a->si, b->si, cb);
}

static void test_kernel(void **state)
{
    (void)state;
    const int64_t shapes[][3] = {{1, 1, 3}, {2, 3, 7}, {3, 5, 17}, {4, 6, 1}, {8, 9, 1024}};
    int saved = qh_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        bn_case k = make_case(shapes[s][0], shapes[s][1], shapes[s][2], 40 + s);
        int64_t n = k.n * k.c * k.hw;
        for (int relu = 0; relu <= 6; relu += relu ? 5 : 1) {
            qh_set_threads(1);
            bn_res ref = run_act(&k, qh_k_bn2d_fwd_train_act_f32_ref, relu);
            bn_res one = run_act(&k, qh_k_bn2d_fwd_train_act_f32, relu);
            qh_set_threads(2);
            bn_res two = run_act(&k, qh_k_bn2d_fwd_train_act_f32, relu);
            if (!(rel_err(one.y, ref.y, n) <= 1e-6 && rel_err(one.rv, ref.rv, k.c) <= 1e-6 &&
                  rel_err(one.si, ref.si, k.c) <= 1e-6))
                fail_msg("shape %zu relu %d: fused kernel vs reference", s, relu);
            assert_res_equal(&one, &two, &k);
            /* unfused: batch norm, then the activation in place */
            bn_res un = {falloc(n), fcopy(k.rm, k.c), fcopy(k.rv, k.c), falloc(k.c), falloc(k.c)};
            qh_k_bn2d_fwd_train_f32(k.n, k.c, k.hw, k.x, k.gamma, k.beta, EPS, MOMENTUM, un.rm, un.rv, un.y, un.sm,
                                    un.si);
            if (relu == 1)
                qh_k_relu_fwd_f32(n, un.y, un.y);
            if (relu == 6)
                qh_k_relu6_fwd_f32(n, un.y, un.y);
            assert_res_equal(&one, &un, &k);
            free_res(&ref), free_res(&one), free_res(&two), free_res(&un);
        }
        free_case(&k);
    }
    qh_set_threads(saved);
}

/* ---------------------------------------------------------------- graph: folded vs the unfused chain */

enum { N = 5, CIN = 2, H = 7, C1 = 4, C2 = 3, CLS = 3 };

static qh_graph *chain_graph(void)
{
    qh_error err;
    qh_graph *g = qh_graph_new(CIN, H, H, CLS, &err);
    assert_non_null(g);
    qh_conv2d_params c1 = {.out_channels = C1, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1, .bias = true};
    qh_conv2d_params c2 = {.out_channels = C2, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1, .bias = true};
    assert_true(qh_graph_conv2d(g, "conv1", QH_INPUT, &c1, &err) >= 0);
    assert_true(qh_graph_batchnorm2d(g, "bn1", QH_PREV, EPS, MOMENTUM, &err) >= 0);
    assert_true(qh_graph_relu6(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_conv2d(g, "conv2", QH_PREV, &c2, &err) >= 0);
    assert_true(qh_graph_batchnorm2d(g, "bn2", QH_PREV, EPS, MOMENTUM, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, CLS, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    qh_rng r;
    qh_rng_seed(&r, 77);
    qh_graph_init_params(g, &r);
    /* gamma large and beta shifted, so ReLU6 clamps at both ends */
    float *g1 = qh_tensor_f32(qh_graph_find_weight(g, "bn1.weight")->value);
    float *b1 = qh_tensor_f32(qh_graph_find_weight(g, "bn1.bias")->value);
    for (int k = 0; k < C1; k++)
        g1[k] = 4.0f + (float)k, b1[k] = 1.5f;
    return g;
}

static float *wv(qh_graph *g, const char *name) { return qh_tensor_f32(qh_graph_find_weight(g, name)->value); }
static float *wg(qh_graph *g, const char *name) { return qh_tensor_f32(qh_graph_find_weight(g, name)->grad); }

typedef struct chain_grads {
    float *logits, *rm1, *rv1, *rm2, *rv2;
    float *dw1, *db1, *dg1, *dbeta1, *dw2, *db2, *dg2, *dbeta2, *dfw, *dfb;
} chain_grads;

static qh_conv2d_shape conv_shape(int64_t cin, int64_t cout)
{
    qh_conv2d_shape s = {.n = N, .c_in = cin, .h_in = H, .w_in = H, .c_out = cout, .kh = 3, .kw = 3, .sh = 1,
                         .sw = 1, .ph = 1, .pw = 1, .groups = 1};
    qh_conv2d_shape_finish(&s);
    return s;
}

/* One training step through the unfused optimized kernels, with the graph's parameters. */
static chain_grads manual_step(qh_graph *g, const float *x, const int32_t *y)
{
    const int64_t hw = H * H, a1 = N * C1 * hw, a2 = N * C2 * hw;
    qh_conv2d_shape s1 = conv_shape(CIN, C1), s2 = conv_shape(C1, C2);
    chain_grads o = {falloc(N * CLS), fcopy(wv(g, "bn1.running_mean"), C1), fcopy(wv(g, "bn1.running_var"), C1),
                     fcopy(wv(g, "bn2.running_mean"), C2), fcopy(wv(g, "bn2.running_var"), C2),
                     falloc(C1 * CIN * 9), falloc(C1), falloc(C1), falloc(C1), falloc(C2 * C1 * 9), falloc(C2),
                     falloc(C2), falloc(C2), falloc(CLS * C2 * hw), falloc(CLS)};
    float *c1 = falloc(a1), *b1 = falloc(a1), *r1 = falloc(a1), *c2 = falloc(a2), *b2 = falloc(a2), *r2 = falloc(a2);
    float sm1[C1], si1[C1], sm2[C2], si2[C2];
    qh_k_conv2d_fwd_f32(&s1, x, wv(g, "conv1.weight"), wv(g, "conv1.bias"), c1, NULL);
    qh_k_bn2d_fwd_train_f32(N, C1, hw, c1, wv(g, "bn1.weight"), wv(g, "bn1.bias"), EPS, MOMENTUM, o.rm1, o.rv1, b1,
                            sm1, si1);
    qh_k_relu6_fwd_f32(a1, b1, r1);
    qh_k_conv2d_fwd_f32(&s2, r1, wv(g, "conv2.weight"), wv(g, "conv2.bias"), c2, NULL);
    qh_k_bn2d_fwd_train_f32(N, C2, hw, c2, wv(g, "bn2.weight"), wv(g, "bn2.bias"), EPS, MOMENTUM, o.rm2, o.rv2, b2,
                            sm2, si2);
    qh_k_relu_fwd_f32(a2, b2, r2);
    qh_k_linear_fwd_f32(N, C2 * hw, CLS, r2, wv(g, "fc.weight"), wv(g, "fc.bias"), o.logits);
    float dl[N * CLS];
    qh_k_softmax_xent_f32(N, CLS, o.logits, y, dl);
    float *d2 = falloc(a2), *d1 = falloc(a1);
    qh_k_linear_bwd_f32(N, C2 * hw, CLS, r2, wv(g, "fc.weight"), dl, d2, o.dfw, o.dfb);
    qh_k_relu_bwd_f32(a2, r2, d2, d2);
    qh_k_bn2d_bwd_f32(N, C2, hw, c2, d2, wv(g, "bn2.weight"), sm2, si2, b2, o.dg2, o.dbeta2);
    qh_k_conv2d_bwd_f32(&s2, r1, wv(g, "conv2.weight"), b2, d1, o.dw2, o.db2, NULL);
    qh_k_relu6_bwd_f32(a1, b1, d1, d1);
    qh_k_bn2d_bwd_f32(N, C1, hw, c1, d1, wv(g, "bn1.weight"), sm1, si1, b1, o.dg1, o.dbeta1);
    qh_k_conv2d_bwd_f32(&s1, x, wv(g, "conv1.weight"), b1, NULL, o.dw1, o.db1, NULL);
    free(c1), free(b1), free(r1), free(c2), free(b2), free(r2), free(d1), free(d2);
    return o;
}

static void free_grads(chain_grads *o)
{
    free(o->logits), free(o->rm1), free(o->rv1), free(o->rm2), free(o->rv2), free(o->dw1), free(o->db1);
    free(o->dg1), free(o->dbeta1), free(o->dw2), free(o->db2), free(o->dg2), free(o->dbeta2), free(o->dfw);
    free(o->dfb);
}

static void expect_equal(qh_graph *g, const char *name, bool grad, const float *want, int64_t n)
{
    const float *got = grad ? wg(g, name) : wv(g, name);
    if (memcmp(got, want, sizeof(float) * (size_t)n) != 0)
        fail_msg("%s%s differs from the unfused chain (rel err %g)", name, grad ? " gradient" : "",
                 rel_err(got, want, n));
}

static void test_graph_training_fold(void **state)
{
    (void)state;
    qh_rng r;
    qh_rng_seed(&r, 9);
    float x[N * CIN * H * H];
    fill_uniform(&r, x, N * CIN * H * H, -2.0f, 2.0f);
    int32_t y[N] = {0, 2, 1, 2, 0};
    qh_graph *g = chain_graph();
    chain_grads want = manual_step(g, x, y); /* before the graph updates the running statistics */
    qh_error err;
    const float *logits = qh_graph_forward(g, x, N, true, &r, &err);
    assert_non_null(logits);
    assert_memory_equal(logits, want.logits, sizeof(float) * N * CLS);
    float dl[N * CLS];
    qh_k_softmax_xent_f32(N, CLS, logits, y, dl);
    assert_int_equal(qh_graph_backward(g, dl, &err), QH_OK);
    expect_equal(g, "bn1.running_mean", false, want.rm1, C1);
    expect_equal(g, "bn1.running_var", false, want.rv1, C1);
    expect_equal(g, "bn2.running_mean", false, want.rm2, C2);
    expect_equal(g, "bn2.running_var", false, want.rv2, C2);
    expect_equal(g, "conv1.weight", true, want.dw1, C1 * CIN * 9);
    expect_equal(g, "conv1.bias", true, want.db1, C1);
    expect_equal(g, "bn1.weight", true, want.dg1, C1);
    expect_equal(g, "bn1.bias", true, want.dbeta1, C1);
    expect_equal(g, "conv2.weight", true, want.dw2, C2 * C1 * 9);
    expect_equal(g, "conv2.bias", true, want.db2, C2);
    expect_equal(g, "bn2.weight", true, want.dg2, C2);
    expect_equal(g, "bn2.bias", true, want.dbeta2, C2);
    expect_equal(g, "fc.weight", true, want.dfw, CLS * C2 * H * H);
    expect_equal(g, "fc.bias", true, want.dfb, CLS);
    free_grads(&want);
    qh_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel),
        cmocka_unit_test(test_graph_training_fold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
