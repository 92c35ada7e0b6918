/* test_train.c - SGD semantics, LR schedules, masks during training, determinism across thread
 * counts, and learning on a small separable problem. The dataset is an in-memory fake plugin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qh_kernels.h"
#include "qhost/qh_engine.h"

/* ---- a tiny in-memory dataset: 4 classes of 1x6x6 images, class c lights up quadrant c ---- */
enum { C = 1, H = 6, W = 6, K = 4, NTRAIN = 256, NTEST = 128 };

typedef struct mem_ds {
    float x[2][NTRAIN][C * H * W];
    int32_t y[2][NTRAIN];
} mem_ds;

static qh_status mem_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    mem_ds *d = state;
    int64_t limit = split == QH_SPLIT_TRAIN ? NTRAIN : NTEST;
    for (int64_t i = 0; i < n; i++) {
        if (idx[i] < 0 || idx[i] >= limit)
            return qh_error_set(err, QH_E_INVAL, "index %lld out of range", (long long)idx[i]);
        memcpy(x + i * C * H * W, d->x[split][idx[i]], sizeof d->x[0][0]);
        y[i] = d->y[split][idx[i]];
    }
    return QH_OK;
}

static mem_ds *make_data(void)
{
    mem_ds *d = calloc(1, sizeof *d);
    qh_rng r;
    qh_rng_seed(&r, 5);
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < NTRAIN; i++) {
            int c = (int)qh_rng_below(&r, K);
            d->y[s][i] = c;
            for (int p = 0; p < H * W; p++) {
                int q = (p / W >= H / 2) * 2 + (p % W >= W / 2);
                d->x[s][i][p] = (float)(0.7 * qh_rng_normal(&r) + (q == c ? 1.0 : 0.0));
            }
        }
    return d;
}

static qh_plugin mem_plugin;

static void open_mem(qh_dataset *ds, mem_ds *d)
{
    memset(&mem_plugin, 0, sizeof mem_plugin);
    mem_plugin.kind = QH_KIND_DATASET;
    mem_plugin.name = "mem";
    mem_plugin.ops.dataset.load = mem_load;
    memset(ds, 0, sizeof *ds);
    ds->plugin = &mem_plugin;
    ds->state = d;
    ds->info = (qh_dataset_info){.channels = C, .height = H, .width = W, .num_classes = K, .n_train = NTRAIN,
                                 .n_test = NTEST};
}

static qh_graph *net(bool conv)
{
    qh_error err;
    qh_graph *g = qh_graph_new(C, H, W, K, &err);
    if (conv) {
        qh_conv2d_params c = {.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1, .bias = true};
        qh_pool2d_params p = {.kernel_h = 2, .kernel_w = 2};
        assert_true(qh_graph_conv2d(g, "conv1", QH_INPUT, &c, &err) >= 0);
        assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
        assert_true(qh_graph_maxpool2d(g, "pool", QH_PREV, &p, &err) >= 0);
    }
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) >= 0);
    if (conv) {
        assert_true(qh_graph_linear(g, "fc1", QH_PREV, 16, true, &err) >= 0);
        assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
        assert_true(qh_graph_dropout(g, NULL, QH_PREV, 0.2, &err) >= 0);
    }
    assert_true(qh_graph_linear(g, "fc2", QH_PREV, K, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    qh_rng r;
    qh_rng_seed(&r, 1);
    qh_graph_init_params(g, &r);
    return g;
}

static qh_train_config base_cfg(void)
{
    qh_train_config c = {.epochs = 4, .batch_size = 32, .lr = 0.1, .momentum = 0.9, .nesterov = 1,
                         .weight_decay = 1e-4, .schedule = QH_LR_COSINE, .step_size = 1, .gamma = 0.5};
    return c;
}

static void test_train_learns_separable_data(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(true);
    qh_error err;
    qh_eval_result before, after;
    assert_int_equal(qh_evaluate(g, &ds, QH_SPLIT_TEST, 0, 50, NULL, &before, &err), QH_OK);
    qh_train_config cfg = base_cfg();
    qh_rng r;
    qh_rng_seed(&r, 2);
    qh_epoch_log logs[4];
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, logs, &err), QH_OK);
    assert_int_equal(qh_evaluate(g, &ds, QH_SPLIT_TEST, 0, 50, NULL, &after, &err), QH_OK);
    assert_int_equal(after.n, NTEST);
    assert_true(after.top1 > 90.0);
    assert_true(after.loss < before.loss);
    assert_true(logs[3].train_loss < logs[0].train_loss);
    assert_true(after.top5 >= after.top1);
    assert_float_equal(after.top5, 100.0, 1e-9); /* 4 classes: top-5 always hits */
    qh_graph_free(g);
    free(d);
}

static void train_with_threads(int threads, qh_graph **out)
{
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_set_threads(threads);
    qh_graph *g = net(true);
    qh_train_config cfg = base_cfg();
    cfg.epochs = 2;
    qh_rng r;
    qh_rng_seed(&r, 3);
    qh_error err;
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);
    *out = g;
    free(d);
}

static void test_train_identical_for_1_and_2_threads(void **state)
{
    (void)state;
    qh_graph *a, *b;
    train_with_threads(1, &a);
    train_with_threads(2, &b);
    for (int32_t i = 0; i < qh_graph_n_weights(a); i++)
        assert_memory_equal(qh_graph_weight(a, i)->value->data, qh_graph_weight(b, i)->value->data,
                            qh_tensor_nbytes(qh_graph_weight(a, i)->value));
    qh_graph_free(a);
    qh_graph_free(b);
}

static void test_train_masked_weights_stay_zero(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(true);
    qh_weight *w = qh_graph_find_weight(g, "fc1.weight");
    int64_t n = qh_tensor_numel(w->value);
    uint8_t *mask = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        mask[i] = (i * 7) % 10 >= 5;
    qh_error err;
    assert_int_equal(qh_weight_set_mask(w, mask, &err), QH_OK);
    qh_train_config cfg = base_cfg();
    cfg.weight_decay = 0.01;
    qh_rng r;
    qh_rng_seed(&r, 4);
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);
    const float *v = qh_tensor_f32(w->value);
    int64_t alive_nonzero = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i])
            assert_true(v[i] == 0.0f);
        else
            alive_nonzero += v[i] != 0.0f;
    }
    assert_true(alive_nonzero > n / 3);
    free(mask);
    qh_graph_free(g);
    free(d);
}

/* Two full-batch SGD steps against torch.optim.SGD's update written out in double. */
static void test_train_sgd_matches_pytorch_rule(void **state)
{
    (void)state;
    for (int nesterov = 0; nesterov <= 1; nesterov++) {
        mem_ds *d = make_data();
        qh_dataset ds;
        open_mem(&ds, d);
        qh_graph *g = net(false), *ref = net(false);
        qh_train_config cfg = base_cfg();
        cfg.epochs = 2;
        cfg.batch_size = NTRAIN; /* one step per epoch */
        cfg.schedule = QH_LR_CONSTANT;
        cfg.nesterov = nesterov;
        cfg.weight_decay = 0.05;
        qh_rng r;
        qh_rng_seed(&r, 4);
        qh_error err;
        assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);

        /* reference: same data in index order, gradients from the (separately tested) backward */
        static float x[NTRAIN * C * H * W];
        static int32_t y[NTRAIN];
        int64_t idx[NTRAIN];
        for (int i = 0; i < NTRAIN; i++)
            idx[i] = i;
        assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, idx, NTRAIN, x, y, &err), QH_OK);
        int32_t nw = qh_graph_n_weights(ref);
        double *buf[8] = {0};
        for (int step = 0; step < 2; step++) {
            const float *logits = qh_graph_forward(ref, x, NTRAIN, true, &r, &err);
            static float dl[NTRAIN * K];
            qh_k_softmax_xent_f32_ref(NTRAIN, K, logits, y, dl);
            assert_int_equal(qh_graph_backward(ref, dl, &err), QH_OK);
            for (int32_t i = 0; i < nw; i++) {
                qh_weight *w = qh_graph_weight(ref, i);
                int64_t n = qh_tensor_numel(w->value);
                if (!buf[i])
                    buf[i] = calloc((size_t)n, sizeof(double));
                float *v = qh_tensor_f32(w->value);
                const float *gr = qh_tensor_f32(w->grad);
                for (int64_t k = 0; k < n; k++) {
                    double gk = gr[k] + cfg.weight_decay * v[k];
                    buf[i][k] = step == 0 ? gk : cfg.momentum * buf[i][k] + gk;
                    double upd = nesterov ? gk + cfg.momentum * buf[i][k] : buf[i][k];
                    v[k] = (float)(v[k] - cfg.lr * upd);
                }
            }
        }
        for (int32_t i = 0; i < nw; i++) {
            const float *a = qh_tensor_f32(qh_graph_weight(g, i)->value);
            const float *b = qh_tensor_f32(qh_graph_weight(ref, i)->value);
            for (int64_t k = 0; k < qh_tensor_numel(qh_graph_weight(g, i)->value); k++)
                assert_float_equal(a[k], b[k], 1e-5 * (1.0 + fabs(b[k])));
            free(buf[i]);
        }
        qh_graph_free(g);
        qh_graph_free(ref);
        free(d);
    }
}

static void test_lr_schedules(void **state)
{
    (void)state;
    qh_train_config c = base_cfg();
    c.lr = 0.1;
    c.min_lr = 0.001;
    c.schedule = QH_LR_COSINE;
    assert_float_equal(qh_lr_at(&c, 0, 10, 100), 0.1, 1e-12);
    assert_float_equal(qh_lr_at(&c, 50, 10, 100), 0.001 + 0.099 * 0.5, 1e-12);
    assert_float_equal(qh_lr_at(&c, 100, 10, 100), 0.001, 1e-12);
    c.schedule = QH_LR_STEP;
    c.step_size = 3;
    c.gamma = 0.1;
    assert_float_equal(qh_lr_at(&c, 29, 10, 100), 0.1, 1e-12);
    assert_float_equal(qh_lr_at(&c, 30, 10, 100), 0.01, 1e-12);
    assert_float_equal(qh_lr_at(&c, 65, 10, 100), 0.001, 1e-12);
    c.schedule = QH_LR_CONSTANT;
    assert_float_equal(qh_lr_at(&c, 77, 10, 100), 0.1, 1e-12);
}

static void test_train_rejects_shape_mismatch(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    ds.info.num_classes = 5;
    qh_graph *g = net(false);
    qh_train_config cfg = base_cfg();
    qh_rng r;
    qh_rng_seed(&r, 1);
    qh_error err;
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "dataset has 5 classes, the model outputs 4"));
    qh_graph_free(g);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_learns_separable_data),
        cmocka_unit_test(test_train_identical_for_1_and_2_threads),
        cmocka_unit_test(test_train_masked_weights_stay_zero),
        cmocka_unit_test(test_train_sgd_matches_pytorch_rule),
        cmocka_unit_test(test_lr_schedules),
        cmocka_unit_test(test_train_rejects_shape_mismatch),
    };
    return cmocka_run_group_tests_name("train", tests, NULL, NULL);
}
