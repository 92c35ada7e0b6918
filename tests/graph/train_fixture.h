/* train_fixture.h - a tiny in-memory dataset plugin and two small networks for the training
 * tests (test_train.c, test_resume.c). Header-only: each test executable includes it once. */
#ifndef TRAIN_FIXTURE_H
#define TRAIN_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

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

#endif /* TRAIN_FIXTURE_H */
