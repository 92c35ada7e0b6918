/* bench_lenet5.c - LeNet-5 (the lenet5 plugin) training and inference throughput, batch 256.
 * Prints one JSON line: {"threads", "infer_img_s", "train_img_s", ...}; run_lenet5.sh runs it
 * side by side with PyTorch (pytorch_lenet5.py) and prints the ratios.
 * Training = the full qh_train loop (shuffle, batch copy, forward, loss, backward, SGD step) over
 * in-memory random data; inference = qh_graph_forward on one batch. Medians of repeated runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"

enum { BATCH = 256, N_TRAIN = 256 * 12 };

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct mem {
    float *x;
    int32_t *y;
} mem;

static qh_status mem_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    (void)split;
    (void)err;
    mem *m = state;
    for (int64_t i = 0; i < n; i++) {
        memcpy(x + i * 784, m->x + idx[i] * 784, 784 * sizeof(float));
        y[i] = m->y[idx[i]];
    }
    return QH_OK;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    qh_set_threads(threads);
    qh_error err = {{0}};
    qh_registry *reg = qh_registry_new();
    if (qh_registry_load_file(reg, QH_BUILD_ROOT "/plugins/models/lenet5/qh-model-lenet5.so", &err) != QH_OK) {
        fprintf(stderr, "bench-lenet5: %s\n", err.msg);
        return 1;
    }
    const qh_plugin *mp = qh_registry_find(reg, QH_KIND_MODEL, "lenet5");
    void *cfg = qh_config_new(mp->params, mp->config_size);
    qh_graph *g = qh_graph_new(1, 28, 28, 10, &err);
    qh_model_input in = {1, 28, 28, 10};
    if (qh_model_build(mp, cfg, &in, g, &err) != QH_OK || qh_graph_finalize(g, &err) != QH_OK) {
        fprintf(stderr, "bench-lenet5: %s\n", err.msg);
        return 1;
    }
    qh_rng rng;
    qh_rng_seed(&rng, 0);
    qh_graph_init_params(g, &rng);
    mem m = {malloc(sizeof(float) * N_TRAIN * 784), malloc(sizeof(int32_t) * N_TRAIN)};
    for (int64_t i = 0; i < (int64_t)N_TRAIN * 784; i++)
        m.x[i] = (float)qh_rng_normal(&rng);
    for (int i = 0; i < N_TRAIN; i++)
        m.y[i] = (int32_t)qh_rng_below(&rng, 10);

    /* inference: repeated forward passes of one batch, ~0.5 s per measurement */
    double inf[32], trn[32];
    reps = reps < 1 ? 1 : reps > 32 ? 32 : reps;
    qh_graph_forward(g, m.x, BATCH, false, NULL, &err); /* warm-up */
    for (int r = 0; r < reps; r++) {
        int iters = 0;
        double t0 = now_s(), t;
        do {
            qh_graph_forward(g, m.x + (iters % 12) * BATCH * 784, BATCH, false, NULL, &err);
            iters++;
        } while ((t = now_s() - t0) < 0.5);
        inf[r] = iters * (double)BATCH / t;
    }
    /* training: one epoch over 12 batches of 256 per measurement */
    qh_plugin dsp = {.kind = QH_KIND_DATASET, .name = "mem"};
    dsp.ops.dataset.load = mem_load;
    qh_dataset ds = {.plugin = &dsp, .state = &m,
                     .info = {.channels = 1, .height = 28, .width = 28, .num_classes = 10, .n_train = N_TRAIN,
                              .n_test = N_TRAIN}};
    qh_train_config tc = {.epochs = 1, .batch_size = BATCH, .lr = 0.01, .momentum = 0.9, .schedule = QH_LR_CONSTANT};
    qh_train(g, &ds, &tc, 0, 0, &rng, NULL, NULL, &err); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        if (qh_train(g, &ds, &tc, 0, 0, &rng, NULL, NULL, &err) != QH_OK) {
            fprintf(stderr, "bench-lenet5: %s\n", err.msg);
            return 1;
        }
        trn[r] = N_TRAIN / (now_s() - t0);
    }
    qsort(inf, (size_t)reps, sizeof inf[0], cmp_double);
    qsort(trn, (size_t)reps, sizeof trn[0], cmp_double);
    printf("{\"impl\": \"qhost\", \"threads\": %d, \"batch\": %d, \"reps\": %d, \"infer_img_s\": %.1f, "
           "\"infer_min\": %.1f, \"infer_max\": %.1f, \"train_img_s\": %.1f, \"train_min\": %.1f, \"train_max\": %.1f}\n",
           threads, BATCH, reps, inf[reps / 2], inf[0], inf[reps - 1], trn[reps / 2], trn[0], trn[reps - 1]);
    free(m.x);
    free(m.y);
    qh_graph_free(g);
    qh_config_free(mp->params, cfg);
    qh_registry_free(reg);
    return 0;
}
