/* test_capture.c - the calibration capture (core/calib): the patch grid and counts, the unfold
 * against a direct gather with explicit padding, seeded patch positions, X and X~ of a layer after
 * the layers before it were quantized against plain forwards of the float and of the quantized
 * network, the node-by-node executor over every op the zoo uses, H in one go and streamed, the
 * relative output error, batch-norm folding, and the refusal of grouped convs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "calib/qh_calib_impl.h"
#include "calib_test.h"

/* ---------------------------------------------------------------- graphs */

/* A: 2x9x9 -> conv1 3@3x3 p1 -> relu -> conv2 4@3x3 s2 p1 (no bias) -> bn -> relu -> maxpool 2 ->
 * flatten -> fc 5. Nodes: conv1 0, relu 1, conv2 2, bn 3, relu 4, pool 5, flatten 6, fc 7. */
static qh_graph *graph_a(void)
{
    qh_error err;
    qh_graph *g = qh_graph_new(2, 9, 9, 5, &err);
    qh_conv2d_params c1 = {.out_channels = 3, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1, .bias = true};
    qh_conv2d_params c2 = {
        .out_channels = 4, .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2, .pad_h = 1, .pad_w = 1};
    qh_pool2d_params p = {.kernel_h = 2, .kernel_w = 2};
    assert_true(qh_graph_conv2d(g, "conv1", QH_INPUT, &c1, &err) == 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_conv2d(g, "conv2", QH_PREV, &c2, &err) == 2);
    assert_true(qh_graph_batchnorm2d(g, "bn2", QH_PREV, 1e-5, 0.1, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_maxpool2d(g, NULL, QH_PREV, &p, &err) >= 0);
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) == 6);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, 5, true, &err) == 7);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    return g;
}

/* B: every other op: conv -> bn -> relu6 -> (conv s2 -> bn -> tanh) + shortcut_a -> relu -> avgpool
 * -> resize -> adaptive avgpool -> flatten -> dropout -> fc. */
static qh_graph *graph_b(void)
{
    qh_error err;
    qh_graph *g = qh_graph_new(3, 8, 8, 10, &err);
    qh_conv2d_params c1 = {.out_channels = 8, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    qh_conv2d_params c2 = {.out_channels = 16,
                           .kernel_h = 3,
                           .kernel_w = 3,
                           .stride_h = 2,
                           .stride_w = 2,
                           .pad_h = 1,
                           .pad_w = 1,
                           .bias = true};
    qh_pool2d_params p = {.kernel_h = 2, .kernel_w = 2};
    int32_t a = qh_graph_conv2d(g, "c1", QH_INPUT, &c1, &err);
    qh_graph_batchnorm2d(g, "b1", a, 1e-5, 0.1, &err);
    int32_t x = qh_graph_relu6(g, NULL, QH_PREV, &err);
    qh_graph_conv2d(g, "c2", x, &c2, &err);
    qh_graph_batchnorm2d(g, "b2", QH_PREV, 1e-5, 0.1, &err);
    int32_t main_ = qh_graph_tanh(g, NULL, QH_PREV, &err);
    int32_t sc = qh_graph_shortcut_a(g, NULL, x, 2, 16, &err);
    qh_graph_add(g, NULL, main_, sc, &err);
    qh_graph_relu(g, NULL, QH_PREV, &err);
    qh_graph_avgpool2d(g, NULL, QH_PREV, &p, &err);
    qh_graph_resize_bilinear(g, NULL, QH_PREV, 3, 3, &err);
    qh_graph_adaptive_avgpool2d(g, NULL, QH_PREV, 1, 1, &err);
    qh_graph_flatten(g, NULL, QH_PREV, &err);
    qh_graph_dropout(g, NULL, QH_PREV, 0.5, &err);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, 10, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    return g;
}

/* Random weights and batch-norm statistics (so BN is not the identity). */
static void randomize(qh_graph *g, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    qh_graph_init_params(g, &r);
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_tensor *t = g->weights[i].value;
        if (t->dtype != QH_F32)
            continue;
        bool var = strstr(t->name, "running_var") != NULL,
             bn = strstr(t->name, "running_mean") || (strncmp(t->name, "b", 1) == 0 && t->ndim == 1);
        for (int64_t k = 0; (var || bn) && k < qh_tensor_numel(t); k++)
            qh_tensor_f32(t)[k] = var ? (float)(0.5 + qh_rng_uniform(&r)) : (float)(0.3 * qh_rng_normal(&r));
    }
}

static void copy_weights(qh_graph *dst, const qh_graph *src)
{
    assert_int_equal(dst->n_weights, src->n_weights);
    for (int32_t i = 0; i < src->n_weights; i++)
        memcpy(dst->weights[i].value->data, src->weights[i].value->data, qh_tensor_nbytes(src->weights[i].value));
}

static float *images(int64_t n, int64_t per, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (size_t)(n * per));
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < n * per; i++)
        x[i] = (float)qh_rng_normal(&r);
    return x;
}

/* "Quantizes" a weight in place: multiples of 0.05. */
static void round_weight(qh_graph *g, const char *name)
{
    qh_tensor *t = qh_graph_find_weight(g, name)->value;
    for (int64_t k = 0; k < qh_tensor_numel(t); k++)
        qh_tensor_f32(t)[k] = roundf(qh_tensor_f32(t)[k] / 0.05f) * 0.05f;
}

/* ---------------------------------------------------------------- patches */

static void test_grid_and_counts(void **state)
{
    (void)state;
    qh_node nd;
    memset(&nd, 0, sizeof nd);
    nd.op = QH_OP_CONV2D;
    nd.in_shape[0] = 1, nd.in_shape[1] = 28, nd.in_shape[2] = 28;
    nd.u.conv = (qh_conv2d_params){.out_channels = 6,
                                   .kernel_h = 5,
                                   .kernel_w = 5,
                                   .stride_h = 1,
                                   .stride_w = 1,
                                   .pad_h = 2,
                                   .pad_w = 2,
                                   .groups = 1};
    int64_t lh, lw;
    qhi_calib_patch_grid(&nd, QH_PATCH_KERNEL, &lh, &lw); /* (28 + 4 - 5) / 5 + 1 */
    assert_int_equal(lh, 6);
    assert_int_equal(lw, 6);
    qhi_calib_patch_grid(&nd, QH_PATCH_STRIDE, &lh, &lw);
    assert_int_equal(lh * lw, 784);
    /* LeNet-5's conv1 on 2048 images in the GPFQ reference: 2048 * int(0.25 * 36 + 1) = 20480 */
    assert_int_equal(2048 * qhi_calib_patches_per_image(36, 0.25), 20480);
    assert_int_equal(qhi_calib_patches_per_image(100, 0.25), 26);
    assert_int_equal(qhi_calib_patches_per_image(784, 1.0), 784);
    assert_int_equal(qhi_calib_patches_per_image(36, 0.0001), 1);
}

static void test_unfold_direct(void **state)
{
    (void)state;
    enum { C = 2, H = 7, W = 6, KH = 3, KW = 2, SY = 2, SX = 3, PH = 1, PW = 0 };
    float *x = images(1, C * H * W, 5);
    int64_t lh = (H + 2 * PH - KH) / SY + 1, lw = (W + 2 * PW - KW) / SX + 1, l = lh * lw;
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)l);
    for (int64_t p = 0; p < l; p++)
        pos[p] = l - 1 - p; /* any order */
    float *rows = malloc(sizeof(float) * (size_t)(l * C * KH * KW));
    qhi_calib_unfold(x, C, H, W, KH, KW, SY, SX, PH, PW, lw, pos, l, rows);
    /* direct: a zero-padded copy, then plain indexing */
    float pad[C][H + 2 * PH][W + 2 * PW];
    memset(pad, 0, sizeof pad);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int z = 0; z < W; z++)
                pad[c][y + PH][z + PW] = x[(c * H + y) * W + z];
    for (int64_t p = 0; p < l; p++) {
        int64_t py = pos[p] / lw, px = pos[p] % lw;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < KH; i++)
                for (int j = 0; j < KW; j++)
                    assert_true(rows[p * C * KH * KW + (c * KH + i) * KW + j] == pad[c][py * SY + i][px * SX + j]);
    }
    free(x);
    free(pos);
    free(rows);
}

static void test_patch_pick(void **state)
{
    (void)state;
    int64_t a[26], b[26], c[26];
    qhi_calib_patch_pick(9, 3, 17, 100, 26, false, a);
    qhi_calib_patch_pick(9, 3, 17, 100, 26, false, b);
    qhi_calib_patch_pick(9, 3, 18, 100, 26, false, c);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a); /* another image, other patches */
    for (int i = 0; i < 26; i++)
        assert_true(a[i] >= 0 && a[i] < 100);
    qhi_calib_patch_pick(9, 3, 17, 26, 26, true, a);
    for (int i = 0; i < 26; i++)
        assert_int_equal(a[i], i);
}

/* ---------------------------------------------------------------- X and X~ through a quantized prefix */

/* Rows of the capture of conv node j vs the unfold of `act` (the node's input, n images). */
static void expect_patches(const qh_graph *g, int32_t j, const float *act, int64_t n, const qhi_calib_options *o,
                           int32_t index, const float *rows)
{
    const qh_node *nd = &g->nodes[j];
    int64_t lh, lw;
    qhi_calib_patch_grid(nd, o->patch_stride, &lh, &lw);
    int64_t k = qhi_calib_patches_per_image(lh * lw, o->retain_rate), cols = nd->in_shape[0] * 9;
    int64_t pos[1024];
    float want[1024 * 36];
    bool own = o->patch_stride == QH_PATCH_STRIDE;
    for (int64_t i = 0; i < n; i++) {
        qhi_calib_patch_pick(o->seed, index, i, lh * lw, k, o->retain_rate >= 1.0, pos);
        qhi_calib_unfold(act + i * nd->in_numel, nd->in_shape[0], nd->in_shape[1], nd->in_shape[2], 3, 3,
                         own ? nd->u.conv.stride_h : 3, own ? nd->u.conv.stride_w : 3, 1, 1, lw, pos, k, want);
        for (int64_t r = 0; r < k * cols; r++)
            assert_close(rows[i * k * cols + r], want[r], 1e-5 * (1.0 + fabsf(want[r])));
    }
}

static const float *forward_at(qh_graph *g, const float *x, int64_t n, int32_t node)
{
    qh_error err;
    g->private_buffers = true; /* an inner node's value is read after the pass */
    assert_non_null(qh_graph_forward(g, x, n, false, NULL, &err));
    return g->nodes[node].cur;
}

static void prefix_case(int patch_stride, double retain, int64_t batch)
{
    enum { N = 11 };
    qh_graph *g = graph_a(), *go = graph_a(), *gq = graph_a();
    randomize(g, 1);
    copy_weights(go, g);
    copy_weights(gq, g);
    float *x = images(N, 2 * 81, 2);
    qhi_calib_options o = {.batch = batch, .seed = 4, .patch_stride = patch_stride, .retain_rate = retain};
    qhi_calib *s;
    qh_error err;
    assert_int_equal(qhi_calib_new(g, x, N, &o, true, &s, &err), QH_OK);
    qhi_calib_data d;
    /* conv1: X = X~ = patches of the images */
    assert_int_equal(qhi_calib_keep_original(s, 0, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s, 0, 0, QH_CALIB_X | QH_CALIB_XQ, &d, &err), QH_OK);
    assert_int_equal(d.cols, 18);
    expect_patches(g, 0, x, N, &o, 0, d.x);
    assert_memory_equal(d.x, d.xq, sizeof(float) * (size_t)(d.m * d.cols));
    qhi_calib_data_free(&d);
    round_weight(g, "conv1.weight");
    round_weight(gq, "conv1.weight");
    /* conv2: X from the float network, X~ from the one with conv1 quantized; H = X~^T X~ */
    assert_int_equal(qhi_calib_keep_original(s, 2, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s, 2, 1, QH_CALIB_X | QH_CALIB_XQ | QH_CALIB_H, &d, &err), QH_OK);
    expect_patches(g, 2, forward_at(go, x, N, 1), N, &o, 1, d.x);
    expect_patches(g, 2, forward_at(gq, x, N, 1), N, &o, 1, d.xq);
    for (int64_t a = 0; a < d.cols; a++)
        for (int64_t b = 0; b < d.cols; b++) {
            double h = 0.0;
            for (int64_t i = 0; i < d.m; i++)
                h += (double)d.xq[i * d.cols + a] * d.xq[i * d.cols + b];
            assert_close(d.h[a * d.cols + b], h, 1e-5 * (1.0 + fabs(h)));
            assert_true(d.h[a * d.cols + b] == d.h[b * d.cols + a]);
        }
    qhi_calib_data_free(&d);
    round_weight(g, "conv2.weight");
    round_weight(gq, "conv2.weight");
    /* fc: its input rows are the flattened pooled maps */
    assert_int_equal(qhi_calib_keep_original(s, 7, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s, 7, 2, QH_CALIB_X | QH_CALIB_XQ, &d, &err), QH_OK);
    assert_int_equal(d.m, N);
    assert_int_equal(d.cols, 16);
    const float *fo = forward_at(go, x, N, 6), *fq;
    for (int64_t i = 0; i < N * 16; i++)
        assert_close(d.x[i], fo[i], 1e-5 * (1.0 + fabsf(fo[i])));
    fq = forward_at(gq, x, N, 6);
    for (int64_t i = 0; i < N * 16; i++)
        assert_close(d.xq[i], fq[i], 1e-5 * (1.0 + fabsf(fq[i])));
    assert_memory_not_equal(d.x, d.xq, sizeof(float) * 16); /* the quantized prefix shows */
    assert_true(qhi_calib_peak_bytes(s) > 0);
    qhi_calib_data_free(&d);
    qhi_calib_free(s);
    free(x);
    qh_graph_free(g);
    qh_graph_free(go);
    qh_graph_free(gq);
}

static void test_quantized_prefix(void **state)
{
    (void)state;
    prefix_case(QH_PATCH_KERNEL, 0.25, 4);
    prefix_case(QH_PATCH_STRIDE, 1.0, 11);
    prefix_case(QH_PATCH_STRIDE, 0.5, 1);
}

/* Every op of graph B, chunked (batch 3): the fc's captured input equals a plain forward's. */
static void test_executor_ops(void **state)
{
    (void)state;
    enum { N = 7 };
    qh_graph *g = graph_b(), *gr = graph_b();
    randomize(g, 3);
    copy_weights(gr, g);
    float *x = images(N, 3 * 64, 4);
    qhi_calib_options o = {.batch = 3, .seed = 1, .patch_stride = QH_PATCH_STRIDE, .retain_rate = 1.0};
    qhi_calib *s;
    qh_error err;
    assert_int_equal(qhi_calib_new(g, x, N, &o, false, &s, &err), QH_OK);
    int32_t fc = g->n_nodes - 1;
    qhi_calib_data d;
    assert_int_equal(qhi_calib_capture(s, fc, 2, QH_CALIB_XQ, &d, &err), QH_OK);
    const float *want = forward_at(gr, x, N, g->nodes[fc].input);
    for (int64_t i = 0; i < N * 16; i++)
        assert_close(d.xq[i], want[i], 1e-5 * (1.0 + fabsf(want[i])));
    /* without the original network, X cannot be asked for */
    qhi_calib_data_free(&d);
    qhi_calib_free(s);
    assert_int_equal(qhi_calib_new(g, x, N, &o, false, &s, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s, fc, 2, QH_CALIB_X, &d, &err), QH_E_INTERNAL);
    qhi_calib_free(s);
    free(x);
    qh_graph_free(g);
    qh_graph_free(gr);
}

/* H alone (X~ never materialized, patches of `batch` images at a time) equals H next to X~. */
static void test_h_streamed(void **state)
{
    (void)state;
    enum { N = 9 };
    qh_graph *g = graph_a();
    randomize(g, 6);
    float *x = images(N, 2 * 81, 7);
    qhi_calib_options o = {.batch = 2, .seed = 3, .patch_stride = QH_PATCH_STRIDE, .retain_rate = 0.7};
    qh_error err;
    qhi_calib *s1, *s2;
    qhi_calib_data a, b;
    assert_int_equal(qhi_calib_new(g, x, N, &o, false, &s1, &err), QH_OK);
    assert_int_equal(qhi_calib_new(g, x, N, &o, false, &s2, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s1, 2, 1, QH_CALIB_XQ | QH_CALIB_H, &a, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s2, 2, 1, QH_CALIB_H, &b, &err), QH_OK);
    assert_null(b.xq);
    assert_int_equal(a.cols, b.cols);
    for (int64_t i = 0; i < a.cols * a.cols; i++)
        assert_close(b.h[i], a.h[i], 1e-5 * (1.0 + fabs(a.h[i])));
    qhi_calib_data_free(&a);
    qhi_calib_data_free(&b);
    qhi_calib_free(s1);
    qhi_calib_free(s2);
    free(x);
    qh_graph_free(g);
}

/* ---------------------------------------------------------------- error, folding, groups */

static void test_rel_error(void **state)
{
    (void)state;
    enum { M = 1500, D = 5, R = 3 }; /* more rows than one GEMM chunk */
    float *x = images(1, M * D, 8), *xq = images(1, M * D, 9), w[R * D], q[R * D];
    for (int i = 0; i < R * D; i++) {
        w[i] = 0.1f * (float)(i % 7) - 0.3f;
        q[i] = roundf(w[i] / 0.25f) * 0.25f;
    }
    double num = 0.0, den = 0.0, num_h = 0.0, den_h = 0.0;
    for (int i = 0; i < M; i++)
        for (int r = 0; r < R; r++) {
            double y = 0.0, yq = 0.0, yh = 0.0;
            for (int t = 0; t < D; t++) {
                y += (double)x[i * D + t] * w[r * D + t];
                yq += (double)xq[i * D + t] * q[r * D + t];
                yh += (double)xq[i * D + t] * w[r * D + t];
            }
            num += (y - yq) * (y - yq);
            den += y * y;
            num_h += (yh - yq) * (yh - yq);
            den_h += yh * yh;
        }
    qhi_calib_data d = {.rows = R, .cols = D, .m = M, .x = x, .xq = xq};
    double rel;
    qh_error err;
    assert_int_equal(qhi_calib_rel_error(&d, w, q, &rel, &err), QH_OK);
    assert_close(rel, sqrt(num / den), 1e-5);
    /* from H alone: X~ stands for X */
    double *h = calloc(D * D, sizeof(double));
    assert_int_equal(qhi_calib_gram_add(xq, M, D, h, &err), QH_OK);
    qhi_calib_data dh = {.rows = R, .cols = D, .m = M, .h = h};
    assert_int_equal(qhi_calib_rel_error(&dh, w, q, &rel, &err), QH_OK);
    assert_close(rel, sqrt(num_h / den_h), 1e-5);
    free(h);
    free(x);
    free(xq);
}

static void test_fold_batchnorm(void **state)
{
    (void)state;
    enum { N = 5 };
    qh_graph *g = graph_a();
    randomize(g, 10);
    float *x = images(N, 2 * 81, 11);
    qh_error err;
    float before[N * 5];
    memcpy(before, qh_graph_forward(g, x, N, false, NULL, &err), sizeof before);
    int32_t widx[] = {(int32_t)(qh_graph_find_weight(g, "conv1.weight") - g->weights),
                      (int32_t)(qh_graph_find_weight(g, "conv2.weight") - g->weights)};
    assert_int_equal(qhi_calib_fold_batchnorm(g, widx, 2), 1); /* conv1 has no batch norm after it */
    const float *after = qh_graph_forward(g, x, N, false, NULL, &err);
    for (int i = 0; i < N * 5; i++)
        assert_close(after[i], before[i], 1e-4 * (1.0 + fabsf(before[i])));
    const float *gamma = qh_tensor_f32(qh_graph_find_weight(g, "bn2.weight")->value);
    const float *mean = qh_tensor_f32(qh_graph_find_weight(g, "bn2.running_mean")->value);
    for (int c = 0; c < 4; c++) {
        assert_true(gamma[c] == 1.0f);
        assert_true(mean[c] == 0.0f);
    }
    free(x);
    qh_graph_free(g);
}

static void test_grouped_refused(void **state)
{
    (void)state;
    qh_error err;
    qh_graph *g = qh_graph_new(4, 5, 5, 3, &err);
    qh_conv2d_params c = {.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .groups = 2};
    qh_graph_conv2d(g, "dw", QH_INPUT, &c, &err);
    qh_graph_flatten(g, NULL, QH_PREV, &err);
    qh_graph_linear(g, "fc", QH_PREV, 3, false, &err);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    float *x = images(2, 100, 1);
    qhi_calib_options o = {.batch = 2, .seed = 1, .patch_stride = QH_PATCH_KERNEL, .retain_rate = 0.25};
    qhi_calib *s;
    qhi_calib_data d;
    assert_int_equal(qhi_calib_new(g, x, 2, &o, true, &s, &err), QH_OK);
    assert_int_equal(qhi_calib_capture(s, 0, 0, QH_CALIB_XQ, &d, &err), QH_E_UNSUPPORTED);
    assert_string_equal(err.msg, "calibration: conv 'dw' has 2 groups");
    qhi_calib_free(s);
    free(x);
    qh_graph_free(g);
}

int main(void)
{
    qh_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grid_and_counts), cmocka_unit_test(test_unfold_direct),
        cmocka_unit_test(test_patch_pick),      cmocka_unit_test(test_quantized_prefix),
        cmocka_unit_test(test_executor_ops),    cmocka_unit_test(test_h_streamed),
        cmocka_unit_test(test_rel_error),       cmocka_unit_test(test_fold_batchnorm),
        cmocka_unit_test(test_grouped_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
