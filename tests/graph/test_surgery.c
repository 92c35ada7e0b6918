/* test_surgery.c - coupled channel groups and physical channel removal (core/graph/qh_surgery.c):
 *  - on a small hand-built residual graph (add, option-A shortcut, depthwise conv, flatten + linear)
 *    the classes and groups are the ones worked out by hand, and a grouped conv is refused by name;
 *  - the removed network computes what the masked network computes (|diff| <= 1e-5 relative) for
 *    resnet20 with shortcut A and B, mobilenetv2_cifar, lenet5, alexnet_small and mlp, after a
 *    structured prune of half the filters with random batch norm statistics;
 *  - a compacted model saves, reloads into a graph built at full size, and evaluates identically;
 *    bad channel metadata is refused with the graph unchanged;
 *  - bad input: no removable filter among the targets, sparsity 1, a layer left without channels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/qh_surgery.h"
#include "pipeline/qh_prune_run.h"
#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_safetensors.h"

static const char *const models[] = {"resnet20", "mobilenetv2_cifar", "lenet5", "alexnet_small", "mlp"};

static qh_registry *reg;
static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    qh_error err = {{0}};
    reg = qh_registry_new();
    char path[512];
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        snprintf(path, sizeof path, "%s/plugins/models/%s/qh-model-%s.so", QH_BUILD_ROOT, models[i], models[i]);
        if (qh_registry_load_file(reg, path, &err) != QH_OK)
            return print_error("%s\n", err.msg), -1;
    }
    snprintf(path, sizeof path, "%s/plugins/pruners/structured/qh-pruner-structured.so", QH_BUILD_ROOT);
    if (qh_registry_load_file(reg, path, &err) != QH_OK)
        return print_error("%s\n", err.msg), -1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qh-surgery-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    qh_registry_free(reg);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* `model` with "key=value" options on a c x h x w input, 10 classes. */
static qh_graph *build(const char *model, const char *opt, int32_t c, int32_t h, int32_t w)
{
    const qh_plugin *p = qh_registry_find(reg, QH_KIND_MODEL, model);
    assert_non_null(p);
    void *cfg = qh_config_new(p->params, p->config_size);
    qh_error err = {{0}};
    if (opt) {
        char key[64];
        const char *eq = strchr(opt, '=');
        snprintf(key, sizeof key, "%.*s", (int)(eq - opt), opt);
        assert_int_equal(qh_config_set(p->params, cfg, key, eq + 1, &err), QH_OK);
    }
    qh_graph *g = qh_graph_new(c, h, w, 10, &err);
    qh_model_input in = {c, h, w, 10};
    assert_int_equal(qh_model_build(p, cfg, &in, g, &err), QH_OK);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    qh_config_free(p->params, cfg);
    return g;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* PyTorch's initialization, then batch norms with statistics and affine parameters away from the
 * identity, so a pruned channel's post-BN output would be nonzero unless BN is masked too. */
static void randomize(qh_graph *g, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    qh_graph_init_params(g, &r);
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++) {
        qh_weight *w = qh_graph_weight(g, i);
        if (qh_graph_node_op(g, w->node) != QH_OP_BATCHNORM2D || w->value->dtype != QH_F32)
            continue;
        float *v = qh_tensor_f32(w->value);
        double lo = 0.5, hi = 1.5; /* weight, running_var */
        if (ends_with(w->value->name, ".bias"))
            lo = -0.5, hi = 0.5;
        else if (ends_with(w->value->name, ".running_mean"))
            lo = -0.2, hi = 0.2;
        for (int64_t k = 0; k < qh_tensor_numel(w->value); k++)
            v[k] = (float)(lo + (hi - lo) * qh_rng_uniform(&r));
    }
}

static float *random_input(const qh_graph *g, int64_t n, uint64_t seed)
{
    int64_t len = n * qh_graph_in_channels(g) * qh_graph_in_height(g) * qh_graph_in_width(g);
    float *x = malloc(sizeof *x * (size_t)len);
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < len; i++)
        x[i] = (float)(2.0 * qh_rng_uniform(&r) - 1.0);
    return x;
}

/* Eval-mode logits of n samples, copied. */
static float *logits(qh_graph *g, const float *x, int64_t n)
{
    qh_error err = {{0}};
    const float *y = qh_graph_forward(g, x, n, false, NULL, &err);
    assert_non_null(y);
    float *out = malloc(sizeof *out * (size_t)(n * qh_graph_num_classes(g)));
    memcpy(out, y, sizeof *out * (size_t)(n * qh_graph_num_classes(g)));
    return out;
}

static qh_status structured(qh_graph *g, const char *targets, double sparsity, int32_t *pruned, qh_error *err)
{
    const qh_plugin *p = qh_registry_find(reg, QH_KIND_PRUNER, "structured");
    void *cfg = qh_config_new(p->params, p->config_size);
    qh_pruner pr = {0};
    int32_t groups = 0, np = 0;
    qh_status st = qh_pruner_create(&pr, p, cfg, err);
    assert_int_equal(st, QH_OK);
    st = qhi_prune_structured(g, &pr, targets, "", sparsity, true, &groups, &np, err);
    qh_pruner_destroy(&pr);
    qh_config_free(p->params, cfg);
    if (pruned)
        *pruned = np;
    return st;
}

static int64_t out_channels(const qh_graph *g, const char *name)
{
    for (int32_t i = 0; i < qh_graph_n_nodes(g); i++)
        if (strcmp(qh_graph_node_name(g, i), name) == 0) {
            int64_t shape[QH_MAX_DIMS];
            qh_graph_node_shape(g, i, shape);
            return shape[0];
        }
    fail_msg("no layer %s", name);
    return -1;
}

/* ---------------------------------------------------------------- classes on a hand-built graph */

/* a (2 -> 4) -> bn -> relu = x;  b(x) -> bn;  add(b, x) -> relu = y;  c(y) -> 8 -> bn;
 * shortcut_a(y) -> 8 (front 2);  add -> relu;  dw (depthwise 8) -> relu -> pool -> flatten -> fc. */
static qh_graph *toy(int32_t c_groups)
{
    qh_error err = {{0}};
    qh_graph *g = qh_graph_new(2, 5, 5, 3, &err);
    qh_conv2d_params k3 = {.out_channels = 4, .kernel_h = 3, .kernel_w = 3, .pad_h = 1, .pad_w = 1};
    qh_conv2d_params c8 = k3, dw = k3;
    c8.out_channels = 8;
    c8.groups = c_groups;
    dw.out_channels = 8;
    dw.groups = 8;
    dw.bias = true;
    int32_t x, y;
    assert_true(qh_graph_conv2d(g, "a", QH_INPUT, &k3, &err) >= 0);
    assert_true(qh_graph_batchnorm2d(g, "abn", QH_PREV, 1e-5, 0.1, &err) >= 0);
    assert_true((x = qh_graph_relu(g, NULL, QH_PREV, &err)) >= 0);
    assert_true(qh_graph_conv2d(g, "b", x, &k3, &err) >= 0);
    int32_t bb = qh_graph_batchnorm2d(g, "bbn", QH_PREV, 1e-5, 0.1, &err);
    assert_true(qh_graph_add(g, NULL, bb, x, &err) >= 0);
    assert_true((y = qh_graph_relu(g, NULL, QH_PREV, &err)) >= 0);
    assert_true(qh_graph_conv2d(g, "c", y, &c8, &err) >= 0);
    int32_t cb = qh_graph_batchnorm2d(g, "cbn", QH_PREV, 1e-5, 0.1, &err);
    int32_t sc = qh_graph_shortcut_a(g, "sc", y, 1, 8, &err);
    assert_true(qh_graph_add(g, NULL, cb, sc, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_conv2d(g, "dw", QH_PREV, &dw, &err) >= 0);
    assert_true(qh_graph_relu(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_adaptive_avgpool2d(g, "pool", QH_PREV, 1, 1, &err) >= 0);
    assert_true(qh_graph_flatten(g, NULL, QH_PREV, &err) >= 0);
    assert_true(qh_graph_linear(g, "fc", QH_PREV, 3, true, &err) >= 0);
    assert_int_equal(qh_graph_finalize(g, &err), QH_OK);
    return g;
}

static int32_t node_of(const qh_graph *g, const char *name)
{
    for (int32_t i = 0; i < qh_graph_n_nodes(g); i++)
        if (strcmp(qh_graph_node_name(g, i), name) == 0)
            return i;
    fail_msg("no layer %s", name);
    return -1;
}

/* Indices of the rank >= 2 weights (conv, linear) in graph order, minus `skip` (or NULL). */
static int32_t weight_targets(qh_graph *g, const char *skip, int32_t *out)
{
    int32_t n = 0;
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++) {
        const qh_weight *w = qh_graph_weight(g, i);
        if (w->value->ndim >= 2 && !(skip && strcmp(w->value->name, skip) == 0))
            out[n++] = i;
    }
    return n;
}

static void test_toy_classes(void **state)
{
    (void)state;
    qh_graph *g = toy(1);
    qhi_chmap m;
    qh_error err = {{0}};
    assert_int_equal(qhi_chmap_build(g, &m, &err), QH_OK);
    int32_t a = node_of(g, "a"), b = node_of(g, "b"), c = node_of(g, "c"), dw = node_of(g, "dw"),
            fc = node_of(g, "fc");
    for (int64_t k = 0; k < 4; k++) {
        int32_t cls = qhi_chmap_class(&m, a, k);
        assert_int_equal(qhi_chmap_class(&m, b, k), cls);           /* add */
        assert_int_equal(qhi_chmap_class(&m, c, k + 2), cls);       /* shortcut: out k + front <- in k */
        assert_int_equal(qhi_chmap_class(&m, dw, k + 2), cls);      /* depthwise */
        assert_int_not_equal(qhi_chmap_class(&m, a, (k + 1) % 4), cls);
        assert_false(m.pinned[cls]);
    }
    for (int64_t k = 0; k < 2; k++) { /* padding channels: low k with high front + in + k */
        assert_int_equal(qhi_chmap_class(&m, c, k), qhi_chmap_class(&m, c, 6 + k));
        assert_int_equal(qhi_chmap_class(&m, dw, 6 + k), qhi_chmap_class(&m, c, k));
        assert_int_not_equal(qhi_chmap_class(&m, c, k), qhi_chmap_class(&m, a, 0));
    }
    assert_true(m.pinned[qhi_chmap_class(&m, fc, 0)]);
    assert_true(m.pinned[qhi_chmap_class(&m, QH_INPUT, 1)]);

    int32_t tg[8];
    int32_t n = weight_targets(g, NULL, tg);
    qhi_groups gr;
    assert_int_equal(qhi_groups_build(g, &m, tg, n, NULL, &gr, &err), QH_OK);
    assert_int_equal(gr.n, 6); /* 4 tied channels, 2 padding pairs; fc's outputs are the model's */
    assert_int_equal(gr.n_families, 2);
    for (int32_t k = 0; k < gr.n; k++) {
        assert_int_equal(gr.groups[k].n_members, 4);
        assert_int_equal(gr.groups[k].keep, 1);
    }
    const qh_channel_group *g0 = &gr.groups[qhi_chmap_class(&m, a, 0) < qhi_chmap_class(&m, c, 0) ? 0 : 2];
    assert_int_equal(g0->channel[0], 0); /* a's filter 0, b's 0, c's 2, dw's 2, in graph order */
    assert_int_equal(g0->channel[1], 0);
    assert_int_equal(g0->channel[2], 2);
    assert_int_equal(g0->channel[3], 2);
    qhi_groups_free(&gr);
    /* without b among the targets the tied channels cannot go: only the padding pairs remain */
    n = weight_targets(g, "b.weight", tg);
    assert_int_equal(qhi_groups_build(g, &m, tg, n, NULL, &gr, &err), QH_OK);
    assert_int_equal(gr.n, 2);
    qhi_groups_free(&gr);
    qhi_chmap_free(&m);
    qh_graph_free(g);

    g = toy(2); /* c as a grouped (not depthwise) conv */
    assert_int_equal(qhi_chmap_build(g, &m, &err), QH_E_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "conv2d 'c': grouped convolution (groups = 2)"));
    qh_graph_free(g);
}

/* Pruning a tied group and a padding pair of the toy leaves a centred shortcut 3 -> 6. */
static void test_toy_removal(void **state)
{
    (void)state;
    qh_graph *g = toy(1);
    randomize(g, 11);
    float *x = random_input(g, 3, 12), *dense = logits(g, x, 3);
    qh_error err = {{0}};
    int32_t pruned;
    assert_int_equal(structured(g, "*.weight", 0.4, &pruned, &err), QH_OK); /* round(0.4 * 4) = 2, round(0.8) = 1 */
    assert_int_equal(pruned, 3);
    float *masked = logits(g, x, 3);
    qh_graph *ng = qh_graph_compact(g, &err);
    assert_non_null(ng);
    assert_int_equal(out_channels(ng, "a"), 2);
    assert_int_equal(out_channels(ng, "c"), 4);
    assert_int_equal(out_channels(ng, "sc"), 4);
    assert_int_equal(out_channels(ng, "dw"), 4);
    float *removed = logits(ng, x, 3);
    double changed = 0;
    for (int i = 0; i < 9; i++) {
        assert_true(fabsf(removed[i] - masked[i]) <= 1e-5f * fmaxf(1.0f, fabsf(masked[i])));
        changed += fabs(masked[i] - dense[i]);
    }
    assert_true(changed > 1e-3); /* the pruning did change the function */
    free(x);
    free(dense);
    free(masked);
    free(removed);
    qh_graph_free(ng);
    qh_graph_free(g);
}

/* ---------------------------------------------------------------- removed == masked on the zoo */

typedef struct zoo_case {
    const char *model, *opt;
    int32_t c, h, w;
    const char *layer;    /* a layer whose channels are checked */
    int64_t before, after;
} zoo_case;

static void check_zoo_case(const zoo_case *zc)
{
    qh_graph *g = build(zc->model, zc->opt, zc->c, zc->h, zc->w);
    randomize(g, 5);
    float *x = random_input(g, 2, 6);
    qh_error err = {{0}};
    int32_t pruned;
    assert_int_equal(structured(g, "*.weight", 0.5, &pruned, &err), QH_OK);
    assert_true(pruned > 0);
    float *masked = logits(g, x, 2);
    qh_graph *ng = qh_graph_compact(g, &err);
    if (!ng)
        fail_msg("%s: %s", zc->model, err.msg);
    assert_true(qh_graph_n_params(ng) < qh_graph_n_params(g));
    assert_true(qh_graph_macs(ng) < qh_graph_macs(g));
    assert_int_equal(out_channels(g, zc->layer), zc->before);
    assert_int_equal(out_channels(ng, zc->layer), zc->after);
    float *removed = logits(ng, x, 2);
    for (int i = 0; i < 20; i++)
        if (!(fabsf(removed[i] - masked[i]) <= 1e-5f * fmaxf(1.0f, fabsf(masked[i]))))
            fail_msg("%s: logit %d: removed %.8g, masked %.8g", zc->model, i, removed[i], masked[i]);
    free(x);
    free(masked);
    free(removed);
    qh_graph_free(ng);
    qh_graph_free(g);
}

static void test_removed_equals_masked(void **state)
{
    (void)state;
    const zoo_case cases[] = {
        {"resnet20", "shortcut=A", 3, 12, 12, "layer2.0.shortcut", 32, 16},
        {"resnet20", "shortcut=B", 3, 12, 12, "layer3.0.downsample.0", 64, 32},
        {"mobilenetv2_cifar", NULL, 3, 8, 8, "features.5.conv.1.0", 192, 96}, /* depthwise */
        {"lenet5", NULL, 1, 28, 28, "conv2", 16, 8},
        {"alexnet_small", NULL, 3, 15, 15, "features.3", 256, 128},
        {"mlp", "hidden=24,16", 1, 6, 6, "fc1", 24, 12},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_zoo_case(&cases[i]);
}

/* ---------------------------------------------------------------- files */

static void test_save_reload(void **state)
{
    (void)state;
    qh_graph *g = build("resnet20", "shortcut=A", 3, 12, 12);
    randomize(g, 21);
    qh_error err = {{0}};
    assert_int_equal(structured(g, "*.weight", 0.5, NULL, &err), QH_OK);
    qh_graph *ng = qh_graph_compact(g, &err);
    assert_non_null(ng);
    char path[400];
    snprintf(path, sizeof path, "%s/compact.safetensors", tmpdir);
    const char *keys[1] = {"architecture"}, *vals[1] = {"resnet20"};
    assert_int_equal(qh_model_save(ng, path, true, keys, vals, 1, &err), QH_OK);
    qh_safetensors *f;
    assert_int_equal(qh_safetensors_read(path, &f, &err), QH_OK);
    const char *meta = qh_safetensors_meta(f, QHI_CHANNELS_META);
    assert_non_null(meta);
    assert_non_null(strstr(meta, "conv1=8,layer1.0.conv1=8,"));
    assert_non_null(strstr(meta, "layer2.0.shortcut=16"));
    assert_non_null(strstr(meta, "fc=10"));
    assert_int_equal(qh_tensor_numel(qh_safetensors_find(f, "layer3.2.conv2.weight")), 32 * 32 * 9);
    qh_safetensors_free(f);

    qh_graph *fresh = build("resnet20", "shortcut=A", 3, 12, 12); /* full size, as a plugin builds it */
    assert_int_equal(qh_model_load(fresh, path, &err), QH_OK);
    assert_int_equal(qh_graph_n_params(fresh), qh_graph_n_params(ng));
    float *x = random_input(g, 2, 22), *a = logits(ng, x, 2), *b = logits(fresh, x, 2);
    assert_memory_equal(a, b, sizeof(float) * 20);
    /* saved again, the reloaded graph writes the same counts */
    char again[400];
    snprintf(again, sizeof again, "%s/again.safetensors", tmpdir);
    assert_int_equal(qh_model_save(fresh, again, true, keys, vals, 1, &err), QH_OK);
    qh_graph *third = build("resnet20", "shortcut=A", 3, 12, 12);
    assert_int_equal(qh_model_load(third, again, &err), QH_OK);
    float *c = logits(third, x, 2);
    assert_memory_equal(a, c, sizeof(float) * 20);

    /* bad metadata: refused, naming the layer; the graph keeps its shape */
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    const char *bk[1] = {QHI_CHANNELS_META}, *bv[1] = {"conv1=8,nosuch=3"};
    assert_int_equal(qh_model_save(g, path, false, bk, bv, 1, &err), QH_OK);
    int64_t before = qh_graph_n_params(third);
    assert_int_equal(qh_model_load(third, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "'nosuch' is not a conv, linear or shortcut layer"));
    assert_int_equal(qh_graph_n_params(third), before);
    bv[0] = "layer1.0.conv2=4"; /* the residual add of layer1.0 cannot take 4 and 8 channels */
    assert_int_equal(qh_model_save(g, path, false, bk, bv, 1, &err), QH_OK);
    assert_int_equal(qh_model_load(third, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "do not fit this model"));
    bv[0] = "layer1.0.conv1=5"; /* a graph that fits, but the tensors are the full model's */
    assert_int_equal(qh_model_save(g, path, false, bk, bv, 1, &err), QH_OK);
    assert_int_equal(qh_model_load(third, path, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "'conv1.weight' has shape [16, 3, 3, 3], the model expects [8, 3, 3, 3]"));
    assert_int_equal(qh_graph_n_params(third), before);
    free(x);
    free(a);
    free(b);
    free(c);
    qh_graph_free(third);
    qh_graph_free(fresh);
    qh_graph_free(ng);
    qh_graph_free(g);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(void **state)
{
    (void)state;
    qh_graph *g = build("resnet20", "shortcut=A", 3, 12, 12);
    randomize(g, 31);
    qh_error err = {{0}};
    assert_int_equal(structured(g, "fc.weight", 0.5, NULL, &err), QH_E_INVAL); /* the output layer only */
    assert_non_null(strstr(err.msg, "targets 'fc.weight' (exclude '') hold no removable filter"));
    assert_int_equal(structured(g, "*.weight", 1.0, NULL, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "sparsity 1 is not in [0, 1)"));
    for (int32_t i = 0; i < qh_graph_n_weights(g); i++)
        assert_null(qh_graph_weight(g, i)->mask); /* nothing was pruned */
    qh_graph_free(g);

    /* a layer whose every filter is zero would vanish: refused by name */
    g = build("mlp", "hidden=24,16", 1, 6, 6);
    randomize(g, 32);
    memset(qh_graph_find_weight(g, "fc1.weight")->value->data, 0, sizeof(float) * 24 * 36);
    memset(qh_graph_find_weight(g, "fc1.bias")->value->data, 0, sizeof(float) * 24);
    assert_null(qh_graph_compact(g, &err));
    assert_non_null(strstr(err.msg, "channel removal would leave layer 'fc1' without channels"));
    qh_graph_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_toy_classes),
        cmocka_unit_test(test_toy_removal),
        cmocka_unit_test(test_removed_equals_masked),
        cmocka_unit_test(test_save_reload),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
