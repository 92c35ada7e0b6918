/* test_graph.c - graph building, forward/backward orchestration against finite differences,
 * masks, and model files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/qh_kernels.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_safetensors.h"

/* conv(2->4, 3x3 pad 1) -> tanh -> maxpool 2 -> conv(4->3, 2x2 stride 1) -> relu -> avgpool 2 ->
 * flatten -> linear 5 -> relu -> dropout(0) -> linear classes: every op the graph knows. */
static qh_graph *small_net(int classes)
{
    qh_error err;
    qh_graph *g = qh_graph_new(2, 8, 8, classes, &err);
    assert_non_null(g);
    qh_conv2d_params c1 = {.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1, .bias = true};
    qh_conv2d_params c2 = {.out_channels = 3, .kernel_h = 2, .kernel_w = 2, .bias = false};
    qh_pool2d_params p2 = {.kernel_h = 2, .kernel_w = 2};
    assert_true(qh_graph_conv2d(g, "conv1", QH_INPUT, &c1, &err) >= 0);
    assert_true(qh_graph_tanh(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_maxpool2d(g, "pool1", QH_PREV, &p2, &err) >= 0);
    assert_true(qh_graph_conv2d(g, "conv2", QH_PREV, &c2, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    qh_pool2d_params p1 = {.kernel_h = 3, .kernel_w = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1};
    assert_true(qh_graph_avgpool2d(g, "pool2", QH_PREV, &p1, &err) >= 0);
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc1", QH_PREV, 5, true, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_dropout(g, NULL, QH_PREV, 0.0, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc2", QH_PREV, classes, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    qh_rng r;
    qh_rng_seed(&r, 7);
    qh_graph_init_params(g, &r);
    return g;
}

static void test_graph_shapes_and_names(void **state)
{
    (void)state;
    qh_graph *g = small_net(3);
    assert_int_equal(qh_graph_n_weights(g), 7);
    assert_string_equal(qh_graph_weight(g, 0)->value->name, "conv1.weight");
    assert_string_equal(qh_graph_weight(g, 1)->value->name, "conv1.bias");
    assert_string_equal(qh_graph_weight(g, 2)->value->name, "conv2.weight");
    assert_string_equal(qh_graph_weight(g, 6)->value->name, "fc2.bias");
    /* conv1 4*2*9+4 = 76, conv2 3*4*4 = 48, fc1 5*27+5 = 140, fc2 3*5+3 = 18 */
    assert_int_equal(qh_graph_n_params(g), 76 + 48 + 140 + 18);
    int64_t shape[QH_MAX_DIMS];
    assert_int_equal(qh_graph_node_shape(g, 3, shape), 3);
    assert_int_equal(shape[0], 3);
    assert_int_equal(shape[1], 3);
    assert_int_equal(shape[2], 3);
    assert_non_null(qh_graph_find_weight(g, "fc1.weight"));
    assert_null(qh_graph_find_weight(g, "fc9.weight"));
    qh_graph_free(g);
}

static void test_graph_build_errors(void **state)
{
    (void)state;
    qh_error err;
    qh_graph *g = qh_graph_new(1, 4, 4, 10, &err);
    qh_conv2d_params big = {.out_channels = 2, .kernel_h = 7, .kernel_w = 7};
    assert_int_equal(qh_graph_conv2d(g, "conv1", QH_INPUT, &big, &err), -1);
    assert_non_null(strstr(err.msg, "larger than padded input"));
    assert_int_equal(qh_graph_linear(g, "fc", QH_INPUT, 10, true, &err), -1);
    assert_non_null(strstr(err.msg, "flatten"));
    assert_int_equal(qh_graph_finalize(g, &err), QH_E_INVAL);
    assert_true(qh_graph_flatten(g, NULL, QH_INPUT, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, 7, true, &err) >= 0);
    assert_int_equal(qh_graph_linear(g, "fc", QH_PREV, 10, true, &err), -1);
    assert_non_null(strstr(err.msg, "duplicate parameter name 'fc.weight'"));
    assert_int_equal(qh_graph_finalize(g, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "expected 10 classes"));
    qh_graph_free(g);
}

static double loss_of(qh_graph *g, const float *x, int64_t n, const int32_t *y)
{
    qh_error err;
    const float *logits = qh_graph_forward(g, x, n, false, NULL, &err);
    assert_non_null(logits);
    return qh_k_softmax_xent_f32_ref(n, qh_graph_num_classes(g), logits, y, NULL);
}

/* Backward through the whole graph against central differences of the mean cross-entropy. */
static void test_graph_backward_matches_finite_differences(void **state)
{
    (void)state;
    const int64_t n = 3;
    qh_graph *g = small_net(3);
    qh_rng r;
    qh_rng_seed(&r, 11);
    float x[3 * 2 * 8 * 8];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)qh_rng_normal(&r);
    int32_t y[3] = {0, 2, 1};
    qh_error err;
    const float *logits = qh_graph_forward(g, x, n, true, &r, &err);
    assert_non_null(logits);
    float dlogits[9];
    qh_k_softmax_xent_f32_ref(n, 3, logits, y, dlogits);
    assert_int_equal(qh_graph_backward(g, dlogits, &err), QH_OK);
    int checked = 0, kinks = 0;
    for (int32_t wi = 0; wi < qh_graph_n_weights(g); wi++) {
        qh_weight *w = qh_graph_weight(g, wi);
        float *v = qh_tensor_f32(w->value);
        const float *gr = qh_tensor_f32(w->grad);
        int64_t numel = qh_tensor_numel(w->value);
        for (int64_t k = 0; k < numel; k++) {
            const float eps = 3e-3f;
            float keep = v[k];
            v[k] = keep + eps;
            double lp = loss_of(g, x, n, y);
            v[k] = keep - eps;
            double lm = loss_of(g, x, n, y);
            v[k] = keep;
            double fd = (lp - lm) / (2.0 * eps);
            double denom = fmax(fabs(fd), fabs((double)gr[k]));
            if (denom < 1e-3)
                continue; /* both ~0: a dead ReLU or a pooled-away input; float noise dominates */
            /* 5e-5: float rounding of a loss near 1 divided by 2 eps */
            if (fabs(fd - (double)gr[k]) > 2e-2 * denom + 5e-5) {
                print_message("%s[%lld]: fd %.6g backward %.6g\n", w->value->name, (long long)k, fd, (double)gr[k]);
                kinks++;
            }
            checked++;
        }
    }
    /* A step across a ReLU kink or a max-pool switch may disagree; a wrong backward disagrees everywhere. */
    print_message("checked %d, disagreeing %d\n", checked, kinks);
    assert_true(checked > 15);
    assert_true(kinks <= 1);
    qh_graph_free(g);
}

static void test_graph_forward_batch_independent(void **state)
{
    (void)state;
    qh_graph *g = small_net(4);
    qh_rng r;
    qh_rng_seed(&r, 3);
    float x[5 * 128];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)qh_rng_normal(&r);
    qh_error err;
    float all[5 * 4];
    memcpy(all, qh_graph_forward(g, x, 5, false, NULL, &err), sizeof all);
    for (int i = 0; i < 5; i++) {
        const float *one = qh_graph_forward(g, x + i * 128, 1, false, NULL, &err);
        for (int c = 0; c < 4; c++)
            assert_float_equal(one[c], all[i * 4 + c], 1e-5);
    }
    qh_graph_free(g);
}

static void test_graph_save_load_with_masks(void **state)
{
    (void)state;
    char dir[] = "/tmp/qh-graph-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    qh_graph *a = small_net(3);
    qh_error err;
    qh_weight *w = qh_graph_find_weight(a, "fc1.weight");
    int64_t numel = qh_tensor_numel(w->value);
    uint8_t *mask = malloc((size_t)numel);
    for (int64_t i = 0; i < numel; i++)
        mask[i] = i % 3 != 0;
    assert_int_equal(qh_weight_set_mask(w, mask, &err), QH_OK);
    const char *k[] = {"architecture"}, *v[] = {"small"};
    assert_int_equal(qh_model_save(a, path, true, k, v, 1, &err), QH_OK);
    qh_graph *b = small_net(3);
    qh_rng r;
    qh_rng_seed(&r, 99);
    qh_graph_init_params(b, &r); /* different values before loading */
    assert_int_equal(qh_model_load(b, path, &err), QH_OK);
    for (int32_t i = 0; i < qh_graph_n_weights(a); i++)
        assert_memory_equal(qh_graph_weight(a, i)->value->data, qh_graph_weight(b, i)->value->data,
                            qh_tensor_nbytes(qh_graph_weight(a, i)->value));
    qh_weight *wb = qh_graph_find_weight(b, "fc1.weight");
    assert_non_null(wb->mask);
    assert_memory_equal(wb->mask, mask, (size_t)numel);
    assert_null(qh_graph_find_weight(b, "fc2.weight")->mask);
    /* the same logits after reload */
    float x[128];
    for (int i = 0; i < 128; i++)
        x[i] = (float)sin(i);
    float la[3];
    memcpy(la, qh_graph_forward(a, x, 1, false, NULL, &err), sizeof la);
    const float *lb = qh_graph_forward(b, x, 1, false, NULL, &err);
    assert_memory_equal(la, lb, sizeof la);
    free(mask);
    qh_graph_free(a);
    qh_graph_free(b);
    remove(path);
    rmdir(dir);
}

static void test_graph_load_rejects_mismatches(void **state)
{
    (void)state;
    char dir[] = "/tmp/qh-graph-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    qh_error err;
    /* one tensor of the wrong shape */
    int64_t s[2] = {4, 4};
    qh_tensor *t = qh_tensor_new(QH_F32, 2, s, &err);
    qh_tensor_set_name(t, "fc1.weight");
    const qh_tensor *list[1] = {t};
    assert_int_equal(qh_safetensors_write(path, list, 1, NULL, NULL, 0, &err), QH_OK);
    qh_graph *g = small_net(3);
    float before = qh_tensor_f32(qh_graph_weight(g, 0)->value)[0];
    assert_int_equal(qh_model_load(g, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "tensor 'fc1.weight' has shape [4, 4], the model expects [5, 27]"));
    assert_float_equal(qh_tensor_f32(qh_graph_weight(g, 0)->value)[0], before, 0.0); /* untouched */
    /* an unknown tensor */
    qh_tensor_set_name(t, "head.weight");
    assert_int_equal(qh_safetensors_write(path, list, 1, NULL, NULL, 0, &err), QH_OK);
    assert_int_equal(qh_model_load(g, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "'head.weight' is not a parameter of this model"));
    /* a missing parameter */
    int64_t s1[1] = {3};
    qh_tensor *b = qh_tensor_new(QH_F32, 1, s1, &err);
    qh_tensor_set_name(b, "fc2.bias");
    list[0] = b;
    assert_int_equal(qh_safetensors_write(path, list, 1, NULL, NULL, 0, &err), QH_OK);
    assert_int_equal(qh_model_load(g, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "parameter 'conv1.weight' is missing"));
    qh_tensor_free(t);
    qh_tensor_free(b);
    qh_graph_free(g);
    remove(path);
    rmdir(dir);
}


/* A residual network over every model-zoo op: conv -> BN -> ReLU6, a block with BN + ReLU and an
 * option-A shortcut add, adaptive pooling, bilinear resize. `gap` inserts dropout(0) between BN and
 * ReLU, which is the identity but keeps the inference fusion from applying. `smooth` puts tanh in
 * place of the ReLUs: finite differences across the kinks of hundreds of ReLUs feeding a global
 * pool are not a test of the graph (the ReLU kernels have their own exact tests). */
static qh_graph *zoo_net(bool gap, bool smooth)
{
    qh_error err;
    qh_graph *g = qh_graph_new(2, 6, 6, 3, &err);
    assert_non_null(g);
    qh_conv2d_params c1 = {.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    qh_conv2d_params c2 = {.out_channels = 6, .kernel_h = 3, .kernel_w = 3, .stride_h = 2, .stride_w = 2,
                           .pad_h = 1, .pad_w = 1};
    assert_true(qh_graph_resize_bilinear(g, "resize", QH_INPUT, 9, 7, &err) >= 0);
    assert_true(qh_graph_conv2d(g, "conv1", QH_PREV, &c1, &err) >= 0);
    assert_true(qh_graph_batchnorm2d(g, "bn1", QH_PREV, 1e-5, 0.1, &err) >= 0);
    if (gap)
        assert_true(qh_graph_dropout(g, NULL, QH_PREV, 0.0, &err) >= 0);
    int32_t stem = smooth ? qh_graph_tanh(g, NULL, QH_PREV, &err) : qh_graph_relu6(g, NULL, QH_PREV, &err);
    assert_true(stem >= 0);
    assert_true(qh_graph_conv2d(g, "block.conv", stem, &c2, &err) >= 0);
    assert_true(qh_graph_batchnorm2d(g, "block.bn", QH_PREV, 1e-5, 0.1, &err) >= 0);
    if (gap)
        assert_true(qh_graph_dropout(g, NULL, QH_PREV, 0.0, &err) >= 0);
    int32_t body = smooth ? qh_graph_tanh(g, NULL, QH_PREV, &err) : qh_graph_relu(g, NULL, QH_PREV, &err);
    int32_t sc = qh_graph_shortcut_a(g, "shortcut", stem, 2, 6, &err);
    assert_true(body >= 0 && sc >= 0);
    assert_true(qh_graph_add(g, "add", body, sc, &err) >= 0);
    assert_true(qh_graph_adaptive_avgpool2d(g, "pool", QH_PREV, 2, 1, &err) >= 0);
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, 3, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    qh_rng r;
    qh_rng_seed(&r, 21);
    qh_graph_init_params(g, &r);
    /* non-trivial batch-norm affine parameters */
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++) {
        qh_weight *w = qh_graph_weight(g, i);
        if (w->value->ndim == 1 && strstr(w->value->name, "bn") && !w->is_buffer)
            for (int64_t k = 0; k < qh_tensor_numel(w->value); k++)
                qh_tensor_f32(w->value)[k] += (float)(0.3 * qh_rng_normal(&r));
    }
    return g;
}

static double train_loss_of(qh_graph *g, const float *x, int64_t n, const int32_t *y)
{
    qh_error err;
    const float *logits = qh_graph_forward(g, x, n, true, NULL, &err);
    assert_non_null(logits);
    return qh_k_softmax_xent_f32_ref(n, qh_graph_num_classes(g), logits, y, NULL);
}

static void test_graph_zoo_ops_backward_matches_finite_differences(void **state)
{
    (void)state;
    const int64_t n = 4;
    qh_graph *g = zoo_net(false, true);
    assert_int_equal(qh_graph_n_params(g), 72 + 4 + 4 + 216 + 6 + 6 + 12 * 3 + 3);
    qh_rng r;
    qh_rng_seed(&r, 5);
    float x[4 * 2 * 6 * 6];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)qh_rng_normal(&r);
    int32_t y[4] = {0, 2, 1, 2};
    qh_error err;
    const float *logits = qh_graph_forward(g, x, n, true, &r, &err);
    assert_non_null(logits);
    float dl[12];
    qh_k_softmax_xent_f32_ref(n, 3, logits, y, dl);
    assert_int_equal(qh_graph_backward(g, dl, &err), QH_OK);
    int checked = 0, kinks = 0;
    for (int32_t wi = 0; wi < qh_graph_n_weights(g); wi++) {
        qh_weight *w = qh_graph_weight(g, wi);
        if (w->is_buffer)
            continue;
        float *v = qh_tensor_f32(w->value);
        const float *gr = qh_tensor_f32(w->grad);
        for (int64_t k = 0; k < qh_tensor_numel(w->value); k++) {
            const float eps = 3e-3f;
            float keep = v[k];
            v[k] = keep + eps;
            double lp = train_loss_of(g, x, n, y);
            v[k] = keep - eps;
            double lm = train_loss_of(g, x, n, y);
            v[k] = keep;
            double fd = (lp - lm) / (2.0 * eps), denom = fmax(fabs(fd), fabs((double)gr[k]));
            if (denom < 1e-3)
                continue;
            if (fabs(fd - (double)gr[k]) > 2e-2 * denom + 5e-5) {
                print_message("%s[%lld]: fd %.6g backward %.6g\n", w->value->name, (long long)k, fd, (double)gr[k]);
                kinks++;
            }
            checked++;
        }
    }
    assert_true(checked > 60);
    assert_int_equal(kinks, 0);
    qh_graph_free(g);
}

static void test_graph_batchnorm_running_stats_and_fused_inference(void **state)
{
    (void)state;
    qh_graph *a = zoo_net(false, false), *b = zoo_net(true, false);
    qh_rng r;
    qh_rng_seed(&r, 8);
    float x[6 * 72];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)(2.0 + qh_rng_normal(&r));
    qh_error err;
    for (int step = 0; step < 3; step++) { /* move the running statistics away from 0 / 1 */
        assert_non_null(qh_graph_forward(a, x, 6, true, &r, &err));
        assert_non_null(qh_graph_forward(b, x, 6, true, &r, &err));
    }
    qh_weight *nbt = qh_graph_find_weight(a, "bn1.num_batches_tracked");
    assert_non_null(nbt);
    assert_true(nbt->is_buffer);
    assert_int_equal(((int64_t *)nbt->value->data)[0], 3);
    const float *rm = qh_tensor_f32(qh_graph_find_weight(a, "bn1.running_mean")->value);
    assert_true(fabsf(rm[0]) > 1e-3f);
    float fused[18];
    memcpy(fused, qh_graph_forward(a, x, 6, false, NULL, &err), sizeof fused);
    const float *plain = qh_graph_forward(b, x, 6, false, NULL, &err);
    for (int i = 0; i < 18; i++)
        assert_float_equal(fused[i], plain[i], 1e-5 * (1.0 + fabs(plain[i])));
    qh_graph_free(a);
    qh_graph_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_graph_shapes_and_names),
        cmocka_unit_test(test_graph_build_errors),
        cmocka_unit_test(test_graph_backward_matches_finite_differences),
        cmocka_unit_test(test_graph_forward_batch_independent),
        cmocka_unit_test(test_graph_save_load_with_masks),
        cmocka_unit_test(test_graph_load_rejects_mismatches),
        cmocka_unit_test(test_graph_zoo_ops_backward_matches_finite_differences),
        cmocka_unit_test(test_graph_batchnorm_running_stats_and_fused_inference),
    };
    return cmocka_run_group_tests_name("graph", tests, NULL, NULL);
}
