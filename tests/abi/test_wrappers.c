/* test_wrappers.c - the host wrappers: defaults for NULL optional methods, argument checks, checks
 * of what plugins hand back, and "<kind> <name>: " context on every plugin error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_registry.h"

static qh_plugin plugin_of(qh_kind kind, const char *name)
{
    static const qh_param none[] = {QH_P_END};
    qh_plugin p;
    memset(&p, 0, sizeof p);
    p.kind = kind;
    p.name = name;
    p.summary = "wrapper test";
    p.params = none;
    return p;
}

/* ---------------------------------------------------------------- dataset */

typedef struct ds_cfg {
    int classes;
    qh_status fail;      /* open fails with this status ... */
    const char *message; /* ... and this message (NULL: none) */
    int bad_label;
} ds_cfg;

static int g_closes;

static qh_status ds_open(const void *cfg, uint64_t seed, void **state, qh_dataset_info *info, qh_error *err)
{
    const ds_cfg *c = cfg;
    (void)seed;
    if (c->fail != QH_OK)
        return c->message ? qh_error_set(err, c->fail, "%s", c->message) : c->fail;
    *state = (void *)c;
    info->channels = 1;
    info->height = 2;
    info->width = 2;
    info->num_classes = c->classes;
    info->n_train = 10;
    info->n_test = 5;
    memset(info->identity, 'x', sizeof info->identity); /* unterminated on purpose */
    return QH_OK;
}

static void ds_close(void *state)
{
    (void)state;
    g_closes++;
}

static qh_status ds_load(void *state, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                         qh_error *err)
{
    const ds_cfg *c = state;
    (void)err;
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < 4; j++)
            x[i * 4 + j] = (float)(idx[i] + 100 * split);
        y[i] = c->bad_label ? 99 : (int32_t)(idx[i] % c->classes);
    }
    return QH_OK;
}

static const qh_dataset_ops ds_ops = {sizeof(qh_dataset_ops), ds_open, ds_close, ds_load, NULL};

static void test_dataset(void **state)
{
    (void)state;
    qh_plugin p = plugin_of(QH_KIND_DATASET, "fake");
    p.ops.dataset = ds_ops;
    ds_cfg cfg = {3, QH_OK, NULL, 0};
    qh_dataset ds;
    qh_error err;
    g_closes = 0;
    assert_int_equal(qh_dataset_open(&ds, &p, &cfg, 1, &err), QH_OK);
    assert_int_equal(ds.info.n_train, 10);
    assert_int_equal(strlen(ds.info.identity), sizeof ds.info.identity - 1); /* the host terminates it */

    const int64_t idx[2] = {0, 9};
    float x[8];
    int32_t y[2];
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, idx, 2, x, y, &err), QH_OK);
    assert_float_equal(x[4], 9.0f, 0);
    assert_int_equal(y[1], 0);
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TEST, idx, 2, x, y, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "dataset fake: sample index 9 out of range [0, 5)");
    const int64_t neg[1] = {-1};
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, neg, 1, x, y, &err), QH_E_INVAL);
    assert_int_equal(qh_dataset_load(&ds, (qh_split)7, idx, 2, x, y, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "dataset fake: unknown split 7");

    /* no augment method: a no-op that leaves the batch alone */
    assert_int_equal(qh_dataset_augment(&ds, NULL, x, 2, &err), QH_OK);
    assert_float_equal(x[4], 9.0f, 0);

    qh_dataset_close(&ds);
    qh_dataset_close(&ds); /* the second close does nothing */
    assert_int_equal(g_closes, 1);
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, idx, 2, x, y, &err), QH_E_INVAL);
}

static void test_dataset_bad_info_and_failures(void **state)
{
    (void)state;
    qh_plugin p = plugin_of(QH_KIND_DATASET, "fake");
    p.ops.dataset = ds_ops;
    qh_dataset ds;
    qh_error err;
    g_closes = 0;
    ds_cfg one_class = {1, QH_OK, NULL, 0};
    assert_int_equal(qh_dataset_open(&ds, &p, &one_class, 1, &err), QH_E_INTERNAL);
    assert_string_equal(err.msg, "dataset fake: open returned 1 classes (need at least 2)");
    assert_int_equal(g_closes, 1); /* what it opened is closed again */
    assert_null(ds.plugin);

    ds_cfg silent = {3, QH_E_IO, NULL, 0};
    assert_int_equal(qh_dataset_open(&ds, &p, &silent, 1, &err), QH_E_IO);
    assert_string_equal(err.msg, "dataset fake: open failed (i/o error)");
    ds_cfg said = {3, QH_E_FORMAT, "train-images.gz: bad magic", 0};
    assert_int_equal(qh_dataset_open(&ds, &p, &said, 1, &err), QH_E_FORMAT);
    assert_string_equal(err.msg, "dataset fake: train-images.gz: bad magic");
    assert_int_equal(g_closes, 1); /* a failed open is not closed */

    ds_cfg labels = {3, QH_OK, NULL, 1};
    assert_int_equal(qh_dataset_open(&ds, &p, &labels, 1, &err), QH_OK);
    const int64_t idx[1] = {2};
    float x[4];
    int32_t y[1];
    assert_int_equal(qh_dataset_load(&ds, QH_SPLIT_TRAIN, idx, 1, x, y, &err), QH_E_INTERNAL);
    assert_string_equal(err.msg, "dataset fake: load returned label 99 (expected 0..2)");
    qh_dataset_close(&ds);

    qh_plugin q = plugin_of(QH_KIND_QUANTIZER, "linear");
    assert_int_equal(qh_dataset_open(&ds, &q, &labels, 1, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "qh_dataset_open: plugin 'linear' is a quantizer, not a dataset");
}

/* ---------------------------------------------------------------- model */

static qh_status m_build(const void *cfg, const qh_model_input *in, qh_graph *g, qh_error *err)
{
    (void)cfg, (void)g;
    return qh_error_set(err, QH_E_UNSUPPORTED, "%d classes are too many", in->num_classes);
}

static void test_model(void **state)
{
    (void)state;
    qh_plugin p = plugin_of(QH_KIND_MODEL, "tiny");
    p.ops.model = (qh_model_ops){sizeof(qh_model_ops), m_build};
    qh_error err;
    int dummy;
    qh_graph *g = (qh_graph *)(void *)&dummy; /* never touched by this build() */
    qh_model_input in = {1, 28, 28, 1000};
    assert_int_equal(qh_model_build(&p, NULL, &in, g, &err), QH_E_UNSUPPORTED);
    assert_string_equal(err.msg, "model tiny: 1000 classes are too many");
    in.height = 0;
    assert_int_equal(qh_model_build(&p, NULL, &in, g, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "model tiny: bad input 1x0x28 with 1000 classes");
    assert_int_equal(qh_model_build(NULL, NULL, &in, g, &err), QH_E_INVAL);
}

/* ---------------------------------------------------------------- pruner */

static int g_destroys;

/* Prunes element 0 of every target; with cfg "revive" set it keeps everything instead. */
static qh_status pr_prune(void *state, qh_prune_target *t, int32_t n, double sparsity, qh_error *err)
{
    const int *revive = state;
    (void)sparsity;
    if (!revive)
        return qh_error_set(err, QH_E_INVAL, "no config");
    for (int32_t i = 0; i < n; i++) {
        if (*revive)
            memset(t[i].mask, 1, (size_t)qh_tensor_numel(t[i].weight));
        else
            t[i].mask[0] = 0;
    }
    return QH_OK;
}

static qh_status pr_create(const void *cfg, void **state, qh_error *err)
{
    if (*(const int *)cfg < 0)
        return qh_error_set(err, QH_E_CONFIG, "negative");
    *state = (void *)cfg;
    return QH_OK;
}

static void pr_destroy(void *state)
{
    (void)state;
    g_destroys++;
}

static void test_pruner(void **state)
{
    (void)state;
    qh_plugin p = plugin_of(QH_KIND_PRUNER, "first");
    p.ops.pruner = (qh_pruner_ops){sizeof(qh_pruner_ops), NULL, NULL, pr_prune, NULL};
    const int64_t shape[2] = {2, 2};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    uint8_t mask[4] = {1, 1, 0, 1};
    qh_prune_target t = {"fc1.weight", w, mask};
    qh_error err;
    int revive = 0;
    qh_pruner pr;
    assert_int_equal(qh_pruner_create(&pr, &p, &revive, &err), QH_OK);
    assert_ptr_equal(pr.state, &revive); /* default create(): the config block */
    assert_int_equal(qh_pruner_prune(&pr, &t, 1, 0.5, &err), QH_OK);
    assert_memory_equal(mask, ((uint8_t[4]){0, 1, 0, 1}), 4);
    assert_int_equal(qh_pruner_prune(&pr, &t, 1, 1.0, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "pruner first: sparsity 1 is not in [0, 1)");

    revive = 1; /* a buggy criterion: brings pruned weights back */
    assert_int_equal(qh_pruner_prune(&pr, &t, 1, 0.5, &err), QH_E_INTERNAL);
    assert_string_equal(err.msg, "pruner first: prune revived pruned weights of fc1.weight (masks may only shrink)");
    assert_memory_equal(mask, ((uint8_t[4]){0, 1, 0, 1}), 4); /* restored */
    qh_pruner_destroy(&pr);

    /* create/destroy pair up: destroy runs once, and never after a failed create */
    p.ops.pruner.create = pr_create;
    p.ops.pruner.destroy = pr_destroy;
    g_destroys = 0;
    int bad = -1;
    assert_int_equal(qh_pruner_create(&pr, &p, &bad, &err), QH_E_CONFIG);
    assert_string_equal(err.msg, "pruner first: negative");
    qh_pruner_destroy(&pr);
    assert_int_equal(g_destroys, 0);
    assert_int_equal(qh_pruner_create(&pr, &p, &revive, &err), QH_OK);
    qh_pruner_destroy(&pr);
    qh_pruner_destroy(&pr);
    assert_int_equal(g_destroys, 1);
    assert_int_equal(qh_pruner_prune(&pr, &t, 1, 0.5, &err), QH_E_INVAL);
    qh_tensor_free(w);
}

/* ---------------------------------------------------------------- quantizer */

typedef enum q_mode { Q_GOOD, Q_FAIL_AFTER_ALLOC, Q_WRONG_SHAPE } q_mode;

/* Binary-ish: codes = sign (in {-1, 0, 1}), one scale = mean |w|. */
static qh_status q_quantize(void *state, const char *name, const qh_tensor *w, qh_qtensor *q, qh_tensor *deq,
                            qh_error *err)
{
    const q_mode *mode = state;
    (void)name;
    const int64_t one = 1;
    q->bits = 2;
    q->codes = qh_tensor_new(QH_I8, *mode == Q_WRONG_SHAPE ? 1 : w->ndim, w->shape, err);
    q->scale = qh_tensor_new(QH_F32, 1, &one, err);
    if (*mode == Q_FAIL_AFTER_ALLOC)
        return qh_error_set(err, QH_E_UNSUPPORTED, "84 columns not divisible by block 32");
    const int64_t n = qh_tensor_numel(w);
    float mean = 0;
    for (int64_t i = 0; i < n; i++)
        mean += qh_tensor_f32(w)[i] < 0 ? -qh_tensor_f32(w)[i] : qh_tensor_f32(w)[i];
    mean /= (float)n;
    qh_tensor_f32(q->scale)[0] = mean;
    for (int64_t i = 0; i < qh_tensor_numel(q->codes); i++) {
        float v = qh_tensor_f32(w)[i];
        ((int8_t *)q->codes->data)[i] = (int8_t)((v > 0) - (v < 0));
        qh_tensor_f32(deq)[i] = mean * ((int8_t *)q->codes->data)[i];
    }
    return QH_OK;
}

static void test_quantizer(void **state)
{
    (void)state;
    qh_plugin p = plugin_of(QH_KIND_QUANTIZER, "sign");
    p.ops.quantizer = (qh_quantizer_ops){.struct_size = sizeof(qh_quantizer_ops), .quantize = q_quantize};
    const int64_t shape[2] = {2, 2};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    qh_tensor *deq = qh_tensor_new(QH_F32, 2, shape, NULL);
    const float v[4] = {1.0f, -3.0f, 0.0f, 2.0f};
    memcpy(w->data, v, sizeof v);
    q_mode mode = Q_GOOD;
    qh_quantizer qz;
    qh_qtensor q;
    qh_error err;
    assert_int_equal(qh_quantizer_create(&qz, &p, &mode, &err), QH_OK);
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_OK);
    assert_float_equal(qh_tensor_f32(deq)[1], -1.5f, 1e-6);
    assert_float_equal(qh_tensor_f32(deq)[2], 0.0f, 0);
    qh_qtensor_clear(&q);

    /* errors carry plugin and tensor; what the plugin allocated is freed (ASan checks) */
    mode = Q_FAIL_AFTER_ALLOC;
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_E_UNSUPPORTED);
    assert_string_equal(err.msg, "quantizer sign: tensor fc1.weight: 84 columns not divisible by block 32");
    assert_null(q.codes);
    mode = Q_WRONG_SHAPE;
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_E_INTERNAL);
    assert_string_equal(err.msg, "quantizer sign: tensor fc1.weight: quantize returned a bad result: "
                                 "codes missing or not in the weight's shape");
    assert_null(q.codes);

    const int64_t other[2] = {4, 1};
    qh_tensor *odd = qh_tensor_new(QH_F32, 2, other, NULL);
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, odd, &err), QH_E_INVAL);
    assert_string_equal(err.msg, "quantizer sign: tensor fc1.weight: weight and dequantized output must be F32 of "
                                 "one shape");
    qh_tensor_free(odd);
    qh_quantizer_destroy(&qz);
    assert_int_equal(qh_quantizer_quantize(&qz, "fc1.weight", w, &q, deq, &err), QH_E_INVAL);
    assert_false(qh_quantizer_accepts(&qz, "fc1.weight", w)); /* destroyed: nothing accepted */
    qh_tensor_free(w);
    qh_tensor_free(deq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dataset),
        cmocka_unit_test(test_dataset_bad_info_and_failures),
        cmocka_unit_test(test_model),
        cmocka_unit_test(test_pruner),
        cmocka_unit_test(test_quantizer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
