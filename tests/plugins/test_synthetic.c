/* test_synthetic.c - the synthetic dataset: determinism, order independence, noise level, learnability. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_SYNTHETIC, QH_KIND_DATASET, "synthetic");
    return desc ? 0 : -1;
}

typedef struct ds {
    void *cfg, *state;
    qh_dataset_info info;
    int64_t px;
} ds;

static void ds_open(ds *d, uint64_t seed, int64_t offset)
{
    d->cfg = test_config_defaults(desc);
    test_set_int(desc, d->cfg, "seed_offset", offset);
    qh_error err = {{0}};
    assert_int_equal(desc->ops.dataset->open(d->cfg, seed, &d->state, &d->info, &err), QH_OK);
    d->px = (int64_t)d->info.channels * d->info.height * d->info.width;
}

static void ds_close(ds *d)
{
    desc->ops.dataset->close(d->state);
    free(d->cfg);
}

/* Samples [0, n) of split into fresh buffers. */
static float *load_range(ds *d, qh_split split, int64_t n, int32_t **labels)
{
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    for (int64_t i = 0; i < n; i++)
        idx[i] = i;
    float *x = malloc((size_t)(n * d->px) * sizeof *x);
    *labels = malloc((size_t)n * sizeof **labels);
    qh_error err = {{0}};
    assert_int_equal(desc->ops.dataset->load(d->state, split, idx, n, x, *labels, &err), QH_OK);
    free(idx);
    return x;
}

static void test_info(void **state)
{
    (void)state;
    ds d;
    ds_open(&d, 42, 0);
    assert_int_equal(d.info.channels, 1);
    assert_int_equal(d.info.height, 28);
    assert_int_equal(d.info.width, 28);
    assert_int_equal(d.info.num_classes, 10);
    assert_int_equal(d.info.n_train, 2048);
    assert_int_equal(d.info.n_test, 512);
    assert_non_null(strstr(d.info.identity, "seed=42"));
    assert_null(desc->ops.dataset->augment);
    ds_close(&d);
    ds_open(&d, 42, 5);
    assert_non_null(strstr(d.info.identity, "seed=47"));
    ds_close(&d);
}

/* Any index yields the same sample whatever the batch, the order or the thread count. */
static void test_order_independent(void **state)
{
    (void)state;
    ds d;
    ds_open(&d, 42, 0);
    int64_t n = 64;
    int32_t *y;
    qh_set_threads(2);
    float *x = load_range(&d, QH_SPLIT_TRAIN, n, &y);
    qh_set_threads(1);
    float *one = malloc((size_t)d.px * sizeof *one);
    qh_error err = {{0}};
    for (int64_t i = n - 1; i >= 0; i -= 3) {
        int32_t label;
        assert_int_equal(desc->ops.dataset->load(d.state, QH_SPLIT_TRAIN, &i, 1, one, &label, &err), QH_OK);
        assert_memory_equal(one, x + i * d.px, (size_t)d.px * sizeof *one);
        assert_int_equal(label, y[i]);
        assert_int_equal(label, i % 10);
    }
    /* A shuffled batch with repeats. */
    int64_t idx[5] = {17, 3, 17, 63, 0};
    float *b = malloc(5 * (size_t)d.px * sizeof *b);
    int32_t yb[5];
    assert_int_equal(desc->ops.dataset->load(d.state, QH_SPLIT_TRAIN, idx, 5, b, yb, &err), QH_OK);
    for (int j = 0; j < 5; j++)
        assert_memory_equal(b + j * d.px, x + idx[j] * d.px, (size_t)d.px * sizeof *b);
    /* The test split is another stream: same label, different noise. */
    int64_t zero = 0;
    int32_t label;
    assert_int_equal(desc->ops.dataset->load(d.state, QH_SPLIT_TEST, &zero, 1, one, &label, &err), QH_OK);
    assert_int_equal(label, 0);
    assert_memory_not_equal(one, x, (size_t)d.px * sizeof *one);
    free(b);
    free(one);
    free(x);
    free(y);
    ds_close(&d);
}

static void test_seeded(void **state)
{
    (void)state;
    ds a, b, c;
    ds_open(&a, 7, 0);
    ds_open(&b, 7, 0);
    ds_open(&c, 7, 1);
    int32_t *ya, *yb, *yc;
    float *xa = load_range(&a, QH_SPLIT_TEST, 20, &ya), *xb = load_range(&b, QH_SPLIT_TEST, 20, &yb);
    float *xc = load_range(&c, QH_SPLIT_TEST, 20, &yc);
    assert_memory_equal(xa, xb, (size_t)(20 * a.px) * sizeof *xa);
    assert_memory_not_equal(xa, xc, (size_t)(20 * a.px) * sizeof *xa);
    assert_string_equal(a.info.identity, b.info.identity);
    free(xa), free(xb), free(xc), free(ya), free(yb), free(yc);
    ds_close(&a), ds_close(&b), ds_close(&c);
}

/* Two samples of one class differ by noise * (N1 - N2): per-pixel variance 2 noise^2. */
static void test_noise_level(void **state)
{
    (void)state;
    ds d;
    ds_open(&d, 3, 0);
    int32_t *y;
    float *x = load_range(&d, QH_SPLIT_TRAIN, 20, &y);
    double s2 = 0;
    int64_t m = 0;
    for (int i = 0; i < 10; i++)
        for (int64_t j = 0; j < d.px; j++, m++) {
            double diff = (double)x[i * d.px + j] - (double)x[(i + 10) * d.px + j];
            s2 += diff * diff;
        }
    double var = s2 / (double)m;
    assert_float_equal(var, 2 * 0.5 * 0.5, 0.05); /* 7840 draws: sd of the estimate ~ 0.008 */
    /* Different classes differ by their prototypes too: much larger spread. */
    double c2 = 0;
    for (int64_t j = 0; j < d.px; j++) {
        double diff = (double)x[j] - (double)x[d.px + j];
        c2 += diff * diff;
    }
    assert_true(c2 / (double)d.px > 2.0);
    free(x);
    free(y);
    ds_close(&d);
}

/* A linear softmax classifier, 3 epochs of plain SGD, must pass 90 % on the test split. */
static void sgd_epoch(const float *x, const int32_t *y, int64_t n, int64_t px, int classes, float *W, float *b)
{
    float logits[16];
    for (int64_t i = 0; i < n; i++) {
        const float *xi = x + i * px;
        float mx = -INFINITY, sum = 0;
        for (int c = 0; c < classes; c++) {
            float z = b[c];
            for (int64_t j = 0; j < px; j++)
                z += W[c * px + j] * xi[j];
            logits[c] = z;
            mx = fmaxf(mx, z);
        }
        for (int c = 0; c < classes; c++)
            sum += (logits[c] = expf(logits[c] - mx));
        for (int c = 0; c < classes; c++) {
            float g = 0.01f * (logits[c] / sum - (c == y[i]));
            b[c] -= g;
            for (int64_t j = 0; j < px; j++)
                W[c * px + j] -= g * xi[j];
        }
    }
}

static void test_learnable(void **state)
{
    (void)state;
    ds d;
    ds_open(&d, 1234, 0);
    int32_t *ytr, *yte;
    float *xtr = load_range(&d, QH_SPLIT_TRAIN, d.info.n_train, &ytr);
    float *xte = load_range(&d, QH_SPLIT_TEST, d.info.n_test, &yte);
    int classes = d.info.num_classes;
    float *W = calloc((size_t)(classes * d.px), sizeof *W), b[16] = {0};
    for (int e = 0; e < 3; e++)
        sgd_epoch(xtr, ytr, d.info.n_train, d.px, classes, W, b);
    int64_t correct = 0;
    for (int64_t i = 0; i < d.info.n_test; i++) {
        int best = 0;
        float bestz = -INFINITY;
        for (int c = 0; c < classes; c++) {
            float z = b[c];
            for (int64_t j = 0; j < d.px; j++)
                z += W[c * d.px + j] * xte[i * d.px + j];
            if (z > bestz)
                bestz = z, best = c;
        }
        correct += best == yte[i];
    }
    assert_true(correct > 0.9 * (double)d.info.n_test);
    free(W), free(xtr), free(xte), free(ytr), free(yte);
    ds_close(&d);
}

static void test_rejects(void **state)
{
    (void)state;
    ds d;
    ds_open(&d, 1, 0);
    float x[28 * 28];
    int32_t y;
    int64_t bad = 512;
    qh_error err = {{0}};
    assert_int_not_equal(desc->ops.dataset->load(d.state, QH_SPLIT_TEST, &bad, 1, x, &y, &err), QH_OK);
    assert_non_null(strstr(err.msg, "512"));
    bad = -1;
    assert_int_not_equal(desc->ops.dataset->load(d.state, QH_SPLIT_TRAIN, &bad, 1, x, &y, &err), QH_OK);
    ds_close(&d);
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "classes", 1);
    void *st = NULL;
    qh_dataset_info info;
    assert_int_not_equal(desc->ops.dataset->open(cfg, 0, &st, &info, &err), QH_OK);
    free(cfg);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_SYNTHETIC);
    assert_string_equal(lib->name, "qhost-dataset-synthetic");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_info),
        cmocka_unit_test(test_order_independent),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_noise_level),
        cmocka_unit_test(test_learnable),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
