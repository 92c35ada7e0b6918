/* test_train.c - SGD, Adam and AdamW against PyTorch's rules, LR schedules (warm-up, plateau), masks
 * and freezing during training, early stopping, keep_best, determinism across thread counts, and
 * learning on a small separable problem. The dataset is an in-memory fake plugin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qh_kernels.h"
#include "qhost/qh_engine.h"

#include "train_fixture.h"

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

/* Three full-batch Adam / AdamW steps (with label smoothing and a mask) against torch.optim's update
 * rule written out in double. */
static void adam_case(int optimizer, double smoothing)
{
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(false), *ref = net(false);
    uint8_t mask[K * C * H * W];
    for (int i = 0; i < K * C * H * W; i++)
        mask[i] = i % 3 != 0;
    qh_error err;
    assert_int_equal(qh_weight_set_mask(qh_graph_find_weight(g, "fc2.weight"), mask, &err), QH_OK);
    assert_int_equal(qh_weight_set_mask(qh_graph_find_weight(ref, "fc2.weight"), mask, &err), QH_OK);
    qh_train_config cfg = base_cfg();
    cfg.epochs = 3;
    cfg.batch_size = NTRAIN;
    cfg.schedule = QH_LR_CONSTANT;
    cfg.lr = 0.01;
    cfg.optimizer = optimizer;
    cfg.beta1 = 0.8;
    cfg.beta2 = 0.99;
    cfg.eps = 1e-6;
    cfg.weight_decay = 0.05;
    cfg.label_smoothing = smoothing;
    qh_rng r;
    qh_rng_seed(&r, 4);
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);

    static float x[NTRAIN * C * H * W], dl[NTRAIN * K];
    static int32_t y[NTRAIN];
    int64_t idx[NTRAIN];
    for (int i = 0; i < NTRAIN; i++)
        idx[i] = i;
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, idx, NTRAIN, x, y, &err), QH_OK);
    int32_t nw = qh_graph_n_weights(ref);
    double *m[4] = {0}, *v[4] = {0};
    for (int t = 1; t <= 3; t++) {
        const float *logits = qh_graph_forward(ref, x, NTRAIN, true, &r, &err);
        qh_k_softmax_xent_ls_f32_ref(NTRAIN, K, logits, y, smoothing, dl);
        assert_int_equal(qh_graph_backward(ref, dl, &err), QH_OK);
        for (int32_t i = 0; i < nw; i++) {
            qh_weight *w = qh_graph_weight(ref, i);
            int64_t n = qh_tensor_numel(w->value);
            if (!m[i]) {
                m[i] = calloc((size_t)n, sizeof(double));
                v[i] = calloc((size_t)n, sizeof(double));
            }
            float *p = qh_tensor_f32(w->value);
            const float *gr = qh_tensor_f32(w->grad);
            for (int64_t k = 0; k < n; k++) {
                if (w->mask && !w->mask[k])
                    continue;
                double pk = p[k], gk = gr[k];
                if (optimizer == QH_OPT_ADAMW)
                    pk *= 1.0 - cfg.lr * cfg.weight_decay;
                else
                    gk += cfg.weight_decay * pk;
                m[i][k] = cfg.beta1 * m[i][k] + (1.0 - cfg.beta1) * gk;
                v[i][k] = cfg.beta2 * v[i][k] + (1.0 - cfg.beta2) * gk * gk;
                double mhat = m[i][k] / (1.0 - pow(cfg.beta1, t)), vhat = v[i][k] / (1.0 - pow(cfg.beta2, t));
                p[k] = (float)(pk - cfg.lr * mhat / (sqrt(vhat) + cfg.eps));
            }
        }
    }
    for (int32_t i = 0; i < nw; i++) {
        const qh_weight *w = qh_graph_weight(g, i);
        const float *a = qh_tensor_f32(w->value), *b = qh_tensor_f32(qh_graph_weight(ref, i)->value);
        for (int64_t k = 0; k < qh_tensor_numel(w->value); k++) {
            assert_float_equal(a[k], b[k], 2e-5 * (1.0 + fabs(b[k])));
            if (w->mask && !w->mask[k])
                assert_true(a[k] == 0.0f);
        }
        free(m[i]);
        free(v[i]);
    }
    qh_graph_free(g);
    qh_graph_free(ref);
    free(d);
}

static void test_train_adam_matches_pytorch_rule(void **state)
{
    (void)state;
    adam_case(QH_OPT_ADAM, 0.0);
}

static void test_train_adamw_with_label_smoothing_matches_pytorch_rule(void **state)
{
    (void)state;
    adam_case(QH_OPT_ADAMW, 0.1);
}

/* Adam's first step moves every unmasked weight by about lr whatever the gradient's scale: a check
 * of the optimizer that does not share the reference's arithmetic. */
static void test_train_adam_first_step_size(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(false), *before = net(false);
    qh_train_config cfg = base_cfg();
    cfg.epochs = 1;
    cfg.batch_size = NTRAIN;
    cfg.schedule = QH_LR_CONSTANT;
    cfg.lr = 1e-3;
    cfg.optimizer = QH_OPT_ADAM;
    cfg.beta1 = 0.9;
    cfg.beta2 = 0.999;
    cfg.eps = 1e-8;
    cfg.weight_decay = 0;
    qh_rng r;
    qh_rng_seed(&r, 4);
    qh_error err;
    assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);
    const float *a = qh_tensor_f32(qh_graph_find_weight(g, "fc2.weight")->value);
    const float *b = qh_tensor_f32(qh_graph_find_weight(before, "fc2.weight")->value);
    for (int k = 0; k < K * C * H * W; k++)
        assert_float_equal(fabs((double)a[k] - b[k]), 1e-3, 2e-5);
    qh_graph_free(g);
    qh_graph_free(before);
    free(d);
}

static void test_plateau_min_and_max(void **state)
{
    (void)state;
    /* min mode (test_loss), patience 2, factor 0.5, threshold 0.1 (relative) */
    const double loss[] = {1.0, 0.95, 0.95, 0.89, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5};
    const double want_min[] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25};
    qh_plateau p;
    qh_plateau_init(&p, false);
    double lr = 1.0;
    for (int i = 0; i < 11; i++) {
        lr = qh_plateau_step(&p, loss[i], false, 0.1, 2, 0.5, 0.0, lr);
        assert_float_equal(lr, want_min[i], 1e-15);
    }
    /* max mode (test_top1), patience 1, floor 0.3; rising top-1 is good, a loss-like fall is bad */
    const double top1[] = {50, 60, 59, 58, 57, 70, 70, 70, 70};
    const double want_max[] = {1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3};
    qh_plateau_init(&p, true);
    lr = 1.0;
    for (int i = 0; i < 9; i++) {
        lr = qh_plateau_step(&p, top1[i], true, 0.0, 1, 0.5, 0.3, lr);
        assert_float_equal(lr, want_max[i], 1e-15);
    }
    assert_float_equal(p.best, 70.0, 0.0);
    /* the same falling sequence in min mode improves every time: no drop */
    qh_plateau_init(&p, false);
    lr = 1.0;
    for (int i = 1; i < 5; i++)
        lr = qh_plateau_step(&p, top1[i], false, 0.0, 1, 0.5, 0.0, lr);
    assert_float_equal(lr, 1.0, 0.0);
}

static void test_lr_warmup(void **state)
{
    (void)state;
    qh_train_config c = base_cfg();
    c.lr = 0.1;
    c.min_lr = 0.0;
    c.warmup_epochs = 2;
    c.schedule = QH_LR_COSINE;
    /* 10 iterations per epoch, 6 epochs: k = 20 warm-up iterations, then cosine over 40 */
    const double k = 20.0;
    for (int it = 0; it < 20; it++)
        assert_float_equal(qh_lr_at(&c, it, 10, 60), 0.1 * (1.0 / k + (1.0 - 1.0 / k) * it / k), 1e-15);
    assert_float_equal(qh_lr_at(&c, 0, 10, 60), 0.1 / 20.0, 1e-15);
    assert_float_equal(qh_lr_at(&c, 20, 10, 60), 0.1, 1e-15);
    assert_float_equal(qh_lr_at(&c, 40, 10, 60), 0.05, 1e-15);
    assert_float_equal(qh_lr_at(&c, 60, 10, 60), 0.0, 1e-15);
    c.schedule = QH_LR_STEP;
    c.step_size = 1;
    c.gamma = 0.5;
    assert_float_equal(qh_lr_at(&c, 29, 10, 60), 0.1, 1e-15);
    assert_float_equal(qh_lr_at(&c, 30, 10, 60), 0.05, 1e-15);
    c.schedule = QH_LR_PLATEAU;
    assert_float_equal(qh_lr_at(&c, 5, 10, 60), 0.1 * (1.0 / k + (1.0 - 1.0 / k) * 5 / k), 1e-15);
    assert_float_equal(qh_lr_at(&c, 45, 10, 60), 0.1, 1e-15);
}

static void test_train_frozen_weights_unchanged(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(true), *before = net(true);
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++)
        qh_graph_weight(g, i)->frozen = strncmp(qh_graph_weight(g, i)->value->name, "conv1.", 6) == 0;
    for (int opt = QH_OPT_SGD; opt <= QH_OPT_ADAMW; opt++) {
        qh_train_config cfg = base_cfg();
        cfg.epochs = 2;
        cfg.optimizer = opt;
        cfg.beta1 = 0.9;
        cfg.beta2 = 0.999;
        cfg.eps = 1e-8;
        cfg.weight_decay = 0.1;
        qh_rng r;
        qh_rng_seed(&r, 7);
        qh_error err;
        assert_int_equal(qh_train(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &err), QH_OK);
    }
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++) {
        const qh_tensor *a = qh_graph_weight(g, i)->value, *b = qh_graph_weight(before, i)->value;
        bool same = memcmp(a->data, b->data, qh_tensor_nbytes(a)) == 0;
        assert_int_equal(same, qh_graph_weight(g, i)->frozen); /* frozen: identical; the rest trained */
    }
    qh_graph_free(g);
    qh_graph_free(before);
    free(d);
}

/* With a learning rate too small to change any prediction, top-1 never improves after the first
 * epoch: patience 2 stops after epoch 3. */
static void test_train_early_stop(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(false);
    qh_train_config cfg = base_cfg();
    cfg.epochs = 10;
    cfg.lr = 1e-12;
    cfg.schedule = QH_LR_CONSTANT;
    cfg.early_stop_patience = 2;
    cfg.early_stop_metric = QH_MONITOR_TEST_TOP1;
    qh_rng r;
    qh_rng_seed(&r, 7);
    qh_error err;
    qh_epoch_log logs[10];
    qh_train_options o = {0};
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 0, &r, NULL, logs, &o, &err), QH_OK);
    assert_int_equal(o.epochs_done, 3);
    for (int e = 0; e < 3; e++) {
        assert_true(logs[e].evaluated);
        assert_float_equal(logs[e].test.top1, logs[0].test.top1, 0.0);
    }
    qh_graph_free(g);
    free(d);
}

/* keep_best ends with the weights of the best epoch: the same as a run of just that many epochs. */
static void test_train_keep_best(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_graph *g = net(true);
    qh_train_config cfg = base_cfg();
    cfg.epochs = 8;
    cfg.lr = 0.6; /* large and constant: the test loss jumps around */
    cfg.schedule = QH_LR_CONSTANT;
    cfg.keep_best = 1;
    qh_rng r;
    qh_rng_seed(&r, 9);
    qh_error err;
    qh_epoch_log logs[8];
    qh_train_options o = {0};
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 64, &r, NULL, logs, &o, &err), QH_OK);
    assert_int_equal(o.epochs_done, 8);
    assert_true(o.best_epoch >= 1 && o.best_epoch < 8); /* else the test would prove nothing */
    for (int e = 0; e < 8; e++)
        assert_true(logs[e].test.loss >= logs[o.best_epoch - 1].test.loss);
    qh_graph *h = net(true);
    cfg.epochs = o.best_epoch;
    cfg.keep_best = 0;
    assert_int_equal(qh_train_ex(h, &ds, &cfg, 0, 64, &r, NULL, NULL, NULL, &err), QH_OK);
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++)
        assert_memory_equal(qh_graph_weight(g, i)->value->data, qh_graph_weight(h, i)->value->data,
                            qh_tensor_nbytes(qh_graph_weight(g, i)->value));
    qh_graph_free(g);
    qh_graph_free(h);
    free(d);
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
        cmocka_unit_test(test_train_adam_matches_pytorch_rule),
        cmocka_unit_test(test_train_adamw_with_label_smoothing_matches_pytorch_rule),
        cmocka_unit_test(test_train_adam_first_step_size),
        cmocka_unit_test(test_plateau_min_and_max),
        cmocka_unit_test(test_lr_warmup),
        cmocka_unit_test(test_train_frozen_weights_unchanged),
        cmocka_unit_test(test_train_early_stop),
        cmocka_unit_test(test_train_keep_best),
    };
    return cmocka_run_group_tests_name("train", tests, NULL, NULL);
}
