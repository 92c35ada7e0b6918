/* test_zoo.c - the model-zoo plugins against PyTorch (tests/golden/gen_model_names.py):
 *  - every model's state_dict listing (name, dtype, shape) and parameter count equal the ones
 *    PyTorch prints for the seed's definition (tests/data/models/names/<model>.txt);
 *  - bad options and too-small inputs fail with a message that names the problem;
 *  - a forward pass of every model gives finite logits of the right shape;
 *  - resnet20 (PyTorch-made F16 state_dict, loaded unchanged), resnet20 with option-A shortcuts
 *    and mobilenetv2_cifar (closed-form weights) reproduce PyTorch's eval-mode logits;
 *  - node outputs at inference and gradients in training, sharing buffers by liveness, give the
 *    same bits as one buffer per node, in a fraction of the memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/qh_graph_impl.h"
#include "qhost/qh_config.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_safetensors.h"

#define NAMES QH_TEST_DATA "/models/names/"
#define FORWARD_FILE QH_TEST_DATA "/models/zoo_forward.safetensors"
#define RESNET20_FILE QH_TEST_DATA "/models/resnet20_random.safetensors"

static const char *const libraries[] = {"alexnet", "alexnet_tv", "alexnet_small", "resnet20",
                                        "resnet18_cifar", "mobilenetv2_cifar", "lenet5"};

static qh_registry *reg;

static int setup(void **state)
{
    (void)state;
    qh_error err = {{0}};
    reg = qh_registry_new();
    for (size_t i = 0; i < sizeof libraries / sizeof *libraries; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/plugins/models/%s/qh-model-%s.so", QH_BUILD_ROOT, libraries[i], libraries[i]);
        if (qh_registry_load_file(reg, path, &err) != QH_OK) {
            print_error("%s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    qh_registry_free(reg);
    return 0;
}

/* Builds and finalizes `model` with "key=value" options (NULL-terminated, may be NULL) on a
 * c x h x w input with 10 classes. Returns the graph, or NULL with err set. */
static qh_graph *build(const char *model, const char *const *opts, int32_t c, int32_t h, int32_t w, qh_error *err)
{
    const qh_plugin *p = qh_registry_find(reg, QH_KIND_MODEL, model);
    assert_non_null(p);
    void *cfg = qh_config_new(p->params, p->config_size);
    assert_non_null(cfg);
    qh_graph *g = NULL;
    qh_status st = QH_OK;
    for (int i = 0; opts && opts[i] && st == QH_OK; i++) {
        char key[64];
        const char *eq = strchr(opts[i], '=');
        assert_non_null(eq);
        snprintf(key, sizeof key, "%.*s", (int)(eq - opts[i]), opts[i]);
        st = qh_config_set(p->params, cfg, key, eq + 1, err);
    }
    if (st == QH_OK) {
        g = qh_graph_new(c, h, w, 10, err);
        assert_non_null(g);
        qh_model_input in = {c, h, w, 10};
        if (qh_model_build(p, cfg, &in, g, err) != QH_OK || qh_graph_finalize(g, err) != QH_OK) {
            qh_graph_free(g);
            g = NULL;
        }
    }
    qh_config_free(p->params, cfg);
    return g;
}

/* ---------------------------------------------------------------- state_dict listings */

typedef struct zoo_case {
    const char *golden; /* tests/data/models/names/<golden>.txt */
    const char *model;
    const char *opts[3];
    int32_t c, h, w;
    bool torch_order;   /* false: PyTorch registers modules in another order than the forward pass */
    int first_op;       /* expected op of node 0, or -1 */
} zoo_case;

static const zoo_case cases[] = {
    /* the AlexNets resize other inputs to 224 x 224 first, without changing the parameters */
    {"alexnet", "alexnet", {NULL}, 3, 32, 32, false, QH_OP_RESIZE_BILINEAR},
    {"alexnet_tv", "alexnet_tv", {NULL}, 3, 224, 224, true, QH_OP_CONV2D},
    {"alexnet_small", "alexnet_small", {NULL}, 3, 32, 32, true, -1},
    {"resnet20", "resnet20", {NULL}, 3, 32, 32, true, -1},
    {"resnet20_a", "resnet20", {"shortcut=A", NULL}, 3, 32, 32, true, -1},
    {"resnet18_cifar", "resnet18_cifar", {NULL}, 3, 32, 32, true, -1},
    {"mobilenetv2_cifar", "mobilenetv2_cifar", {NULL}, 3, 32, 32, true, -1},
    {"lenet5", "lenet5", {NULL}, 1, 28, 28, true, -1},
    {"lenet5_classic", "lenet5", {"variant=classic", NULL}, 1, 28, 28, true, -1},
    {"lenet5_gpfq", "lenet5", {"variant=gpfq", NULL}, 1, 32, 32, true, -1},
};

/* "name dtype shape" of a graph tensor, as the golden files spell it. */
static void describe(const qh_tensor *t, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s %s ", t->name, qh_dtype_name(t->dtype));
    if (t->ndim == 0)
        snprintf(buf + n, size - (size_t)n, "scalar");
    for (int d = 0; d < t->ndim; d++)
        n += snprintf(buf + n, size - (size_t)n, d ? "x%lld" : "%lld", (long long)t->shape[d]);
}

static void check_listing(const zoo_case *zc)
{
    char path[512], line[512], want[512];
    snprintf(path, sizeof path, NAMES "%s.txt", zc->golden);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    qh_error err = {{0}};
    qh_graph *g = build(zc->model, zc->opts, zc->c, zc->h, zc->w, &err);
    if (!g)
        fail_msg("%s: %s", zc->golden, err.msg);
    int32_t i = 0;
    long long params = -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (sscanf(line, "params %lld", &params) == 1)
            break;
        char name[256];
        assert_int_equal(sscanf(line, "%255s", name), 1);
        qh_weight *w = zc->torch_order ? (i < qh_graph_n_weights(g) ? qh_graph_weight(g, i) : NULL)
                                       : qh_graph_find_weight(g, name);
        if (!w)
            fail_msg("%s: PyTorch has '%s', the graph has no such entry (position %d)", zc->golden, line, i);
        describe(w->value, want, sizeof want);
        if (strcmp(want, line) != 0)
            fail_msg("%s: entry %d is '%s', PyTorch has '%s'", zc->golden, i, want, line);
        assert_int_equal(w->is_buffer, strstr(name, "running_") || strstr(name, "num_batches_tracked"));
        i++;
    }
    fclose(f);
    /* same count + every PyTorch name present once = the same set */
    assert_int_equal(qh_graph_n_weights(g), i);
    assert_int_equal(qh_graph_n_params(g), params);
    if (zc->first_op >= 0)
        assert_int_equal(qh_graph_node_op(g, 0), zc->first_op);
    if (zc->first_op == QH_OP_RESIZE_BILINEAR) {
        int64_t shape[QH_MAX_DIMS];
        assert_int_equal(qh_graph_node_shape(g, 0, shape), 3);
        assert_true(shape[0] == zc->c && shape[1] == 224 && shape[2] == 224);
    }
    print_message("%-18s %3d tensors, %lld parameters\n", zc->golden, i, params);
    qh_graph_free(g);
}

static void test_listings(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_listing(&cases[i]);
}

/* ---------------------------------------------------------------- errors people see */

static void expect_error(const char *model, const char *const *opts, int32_t c, int32_t h, int32_t w,
                         const char *const *needles)
{
    qh_error err = {{0}};
    qh_graph *g = build(model, opts, c, h, w, &err);
    if (g)
        fail_msg("%s on %dx%dx%d built but should have failed", model, c, h, w);
    print_message("%s: %s\n", model, err.msg);
    for (int i = 0; needles[i]; i++)
        if (!strstr(err.msg, needles[i]))
            fail_msg("message '%s' lacks '%s'", err.msg, needles[i]);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("resnet20", (const char *const[]){"shortcut=C", NULL}, 3, 32, 32,
                 (const char *const[]){"shortcut", "'C'", "B, A", NULL});
    expect_error("lenet5", (const char *const[]){"variant=lenet", NULL}, 1, 28, 28,
                 (const char *const[]){"variant", "gpfq", NULL});
    expect_error("alexnet_small", NULL, 3, 8, 8, (const char *const[]){"alexnet_small", "8x8", "too small", NULL});
    expect_error("alexnet", (const char *const[]){"resize=0", NULL}, 3, 32, 32,
                 (const char *const[]){"alexnet", "32x32", "too small", "resize", NULL});
    expect_error("alexnet_tv", (const char *const[]){"resize=62", NULL}, 3, 32, 32,
                 (const char *const[]){"alexnet_tv", "resize = 62", "63", NULL});
    expect_error("lenet5", (const char *const[]){"variant=gpfq", NULL}, 1, 28, 28,
                 (const char *const[]){"gpfq", "32x32", "28x28", NULL});
}

/* The documented minimum sizes are the real ones: one pixel less fails, the minimum builds (for
 * the AlexNets, test_forward_smoke runs them with resize = 63). */
static void test_min_sizes(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_graph *g = build("alexnet_small", NULL, 3, 15, 15, &err);
    if (!g)
        fail_msg("%s", err.msg);
    qh_graph_free(g);
    assert_null(build("alexnet_small", NULL, 3, 14, 15, &err));
    assert_null(build("alexnet_small", NULL, 3, 15, 14, &err));
}

/* ---------------------------------------------------------------- forward passes */

/* Finite logits of shape 2 x 10 after PyTorch-style initialization, in eval and training mode. */
static void smoke(const char *model, const char *const *opts, int32_t c, int32_t h, int32_t w)
{
    qh_error err = {{0}};
    qh_graph *g = build(model, opts, c, h, w, &err);
    if (!g)
        fail_msg("%s: %s", model, err.msg);
    qh_rng rng;
    qh_rng_seed(&rng, 7);
    qh_graph_init_params(g, &rng);
    int64_t n = 2 * (int64_t)c * h * w;
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)qh_rng_normal(&rng);
    for (int training = 0; training < 2; training++) {
        const float *y = qh_graph_forward(g, x, 2, training, &rng, &err);
        if (!y)
            fail_msg("%s forward: %s", model, err.msg);
        assert_int_equal(qh_graph_num_classes(g), 10);
        double spread = 0.0;
        for (int i = 0; i < 20; i++) {
            if (!isfinite(y[i]))
                fail_msg("%s: logit %d is %g", model, i, y[i]);
            spread += fabs(y[i] - y[0]);
        }
        assert_true(spread > 0.0); /* not a constant output */
    }
    print_message("%s on %dx%dx%d: finite logits\n", model, c, h, w);
    free(x);
    qh_graph_free(g);
}

static void test_forward_smoke(void **state)
{
    (void)state;
    smoke("alexnet", (const char *const[]){"resize=63", NULL}, 3, 32, 32);
    smoke("alexnet_tv", (const char *const[]){"resize=63", NULL}, 3, 32, 32);
    smoke("alexnet_small", NULL, 3, 32, 32);
    smoke("resnet20", NULL, 3, 32, 32);
    smoke("resnet20", (const char *const[]){"shortcut=A", NULL}, 1, 28, 28);
    smoke("resnet18_cifar", NULL, 3, 32, 32);
    smoke("mobilenetv2_cifar", NULL, 3, 32, 32);
    smoke("lenet5", (const char *const[]){"variant=gpfq", NULL}, 1, 32, 32);
}

/* tests/golden/gen_model_names.py zoo_value: splitmix64 of fnv1a(name) + index -> u in [-1, 1). */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static double zoo_uniform(uint64_t h, int64_t i)
{
    uint64_t z = h + (uint64_t)i + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-52 - 1.0;
}

static void fill_zoo_values(qh_graph *g)
{
    for (int32_t k = 0; k < qh_graph_n_weights(g); k++) {
        qh_tensor *t = qh_graph_weight(g, k)->value;
        if (t->dtype != QH_F32)
            continue; /* num_batches_tracked */
        const char *leaf = strrchr(t->name, '.') + 1;
        uint64_t h = fnv1a(t->name);
        int64_t n = qh_tensor_numel(t), fan_in = t->ndim >= 2 ? n / t->shape[0] : 0;
        float *v = qh_tensor_f32(t);
        for (int64_t i = 0; i < n; i++) {
            double u = zoo_uniform(h, i);
            if (strcmp(leaf, "weight") == 0 && t->ndim >= 2)
                v[i] = (float)(u * sqrt(3.0 / (double)fan_in));
            else if (strcmp(leaf, "weight") == 0)
                v[i] = (float)(1.0 + 0.25 * u);
            else if (strcmp(leaf, "running_var") == 0)
                v[i] = (float)(1.0 + 0.5 * u);
            else
                v[i] = (float)(0.1 * u);
        }
    }
}

static void compare_logits(const char *model, const float *y, const qh_tensor *ref)
{
    assert_int_equal(qh_tensor_numel(ref), 20);
    const float *r = qh_tensor_f32(ref);
    double maxref = 0.0, maxerr = 0.0;
    for (int i = 0; i < 20; i++) {
        maxref = fmax(maxref, fabs(r[i]));
        maxerr = fmax(maxerr, fabs((double)y[i] - r[i]));
    }
    print_message("%s: max |logit| %.4f, max |qhost - PyTorch| %.3g\n", model, maxref, maxerr);
    assert_true(maxref > 0.01); /* the reference is not degenerate */
    assert_true(maxerr <= 1e-5 * maxref); /* float32 accumulation-order noise is ~1e-7 */
}

/* A model with zoo_value weights against its logits "<golden>.logits" in the forward file. */
static void check_closed_form(const qh_safetensors *file, const char *golden, const char *model,
                              const char *const *opts, const float *x)
{
    qh_error err = {{0}};
    char key[80];
    snprintf(key, sizeof key, "%s.logits", golden);
    qh_graph *g = build(model, opts, 3, 32, 32, &err);
    if (!g)
        fail_msg("%s: %s", golden, err.msg);
    fill_zoo_values(g);
    const float *y = qh_graph_forward(g, x, 2, false, NULL, &err);
    if (!y)
        fail_msg("%s: %s", golden, err.msg);
    compare_logits(golden, y, qh_safetensors_find(file, key));
    qh_graph_free(g);
}

static void test_golden_logits(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_safetensors *file = NULL;
    if (qh_safetensors_read(FORWARD_FILE, &file, &err) != QH_OK)
        fail_msg("%s", err.msg);
    const qh_tensor *x = qh_safetensors_find(file, "input");
    assert_non_null(x);
    assert_int_equal(qh_tensor_numel(x), 2 * 3 * 32 * 32);

    qh_graph *g = build("resnet20", NULL, 3, 32, 32, &err);
    assert_non_null(g);
    if (qh_model_load(g, RESNET20_FILE, &err) != QH_OK)
        fail_msg("%s", err.msg);
    const float *y = qh_graph_forward(g, qh_tensor_f32(x), 2, false, NULL, &err);
    if (!y)
        fail_msg("resnet20: %s", err.msg);
    compare_logits("resnet20", y, qh_safetensors_find(file, "resnet20.logits"));
    qh_graph_free(g);

    check_closed_form(file, "resnet20_a", "resnet20", (const char *const[]){"shortcut=A", NULL}, qh_tensor_f32(x));
    check_closed_form(file, "mobilenetv2_cifar", "mobilenetv2_cifar", NULL, qh_tensor_f32(x));
    qh_safetensors_free(file);
}

/* One model at inference, shared output buffers against one buffer per node (private_buffers): the
 * same logits bit for bit, twice in a row; returns private bytes / shared bytes. */
static double shared_case(const char *model, const char *const *opts, int32_t c, int32_t h, int32_t w)
{
    enum { N = 3 };
    qh_error err = {{0}};
    qh_graph *gs = build(model, opts, c, h, w, &err), *gp = build(model, opts, c, h, w, &err);
    assert_non_null(gs);
    assert_non_null(gp);
    fill_zoo_values(gs);
    fill_zoo_values(gp);
    gp->private_buffers = true;
    int64_t sample = (int64_t)c * h * w;
    float *x = malloc(sizeof(float) * (size_t)(N * sample));
    for (int64_t i = 0; i < N * sample; i++)
        x[i] = (float)zoo_uniform(7, i);
    float ys[N * 10], yp[N * 10];
    for (int rep = 0; rep < 2; rep++) {
        const float *a = qh_graph_forward(gs, x, N, false, NULL, &err), *b = qh_graph_forward(gp, x, N, false, NULL, &err);
        assert_non_null(a);
        assert_non_null(b);
        memcpy(ys, a, sizeof ys);
        memcpy(yp, b, sizeof yp);
        assert_memory_equal(ys, yp, sizeof ys);
    }
    assert_true(gs->shared_outs && !gp->shared_outs);
    int64_t per_infer, per_train; /* what --summary reports is what a pass allocates */
    assert_int_equal(qh_graph_buffer_bytes(gs, &per_infer, &per_train, &err), QH_OK);
    assert_true(gs->act_bytes == N * per_infer);
    double ratio = (double)gp->act_bytes / (double)gs->act_bytes;
    print_message("%s on %dx%dx%d: %d shared buffers, %.1f KiB vs %.1f KiB one per node (%.1fx)\n", model, c, h,
                  w, gs->n_slots, gs->act_bytes / 1024.0, gp->act_bytes / 1024.0, ratio);
    free(x);
    qh_graph_free(gs);
    qh_graph_free(gp);
    return ratio;
}

/* One training step's forward and backward (dropout drawn from the same seed), shared gradient
 * buffers against one per node: the same gradient of every weight, bit for bit, twice in a row;
 * returns private bytes / shared bytes. */
static double shared_train_case(const char *model, const char *const *opts, int32_t c, int32_t h, int32_t w)
{
    enum { N = 3 };
    qh_error err = {{0}};
    qh_graph *g[2] = {build(model, opts, c, h, w, &err), build(model, opts, c, h, w, &err)};
    int64_t sample = (int64_t)c * h * w;
    float *x = malloc(sizeof(float) * (size_t)(N * sample)), dy[N * 10];
    for (int64_t i = 0; i < N * sample; i++)
        x[i] = (float)zoo_uniform(11, i);
    for (int i = 0; i < N * 10; i++)
        dy[i] = (float)zoo_uniform(13, i) / N;
    g[1]->private_buffers = true;
    for (int v = 0; v < 2; v++) {
        assert_non_null(g[v]);
        fill_zoo_values(g[v]);
    }
    for (int rep = 0; rep < 2; rep++)
        for (int v = 0; v < 2; v++) {
            qh_rng rng;
            qh_rng_seed(&rng, 5 + (uint64_t)rep);
            assert_non_null(qh_graph_forward(g[v], x, N, true, &rng, &err));
            assert_int_equal(qh_graph_backward(g[v], dy, &err), QH_OK);
        }
    for (int32_t k = 0; k < qh_graph_n_weights(g[0]); k++) {
        const qh_weight *a = qh_graph_weight(g[0], k), *b = qh_graph_weight(g[1], k);
        if (a->grad)
            assert_memory_equal(a->grad->data, b->grad->data, qh_tensor_nbytes(a->grad));
    }
    assert_true(g[0]->shared_grads && !g[1]->shared_grads);
    int64_t per_infer, per_train;
    assert_int_equal(qh_graph_buffer_bytes(g[0], &per_infer, &per_train, &err), QH_OK);
    assert_true(g[0]->act_bytes == N * per_train);
    double ratio = (double)g[1]->act_bytes / (double)g[0]->act_bytes;
    print_message("%s on %dx%dx%d, training: %d shared gradient buffers, %.1f KiB vs %.1f KiB (%.2fx)\n", model, c,
                  h, w, g[0]->n_slots, g[0]->act_bytes / 1024.0, g[1]->act_bytes / 1024.0, ratio);
    free(x);
    qh_graph_free(g[0]);
    qh_graph_free(g[1]);
    return ratio;
}

static void test_shared_buffers(void **state)
{
    (void)state;
    assert_true(shared_case("alexnet", (const char *const[]){"resize=63", NULL}, 3, 32, 32) > 1.0);
    assert_true(shared_case("alexnet_small", NULL, 3, 32, 32) > 1.0);
    assert_true(shared_case("resnet20", (const char *const[]){"shortcut=A", NULL}, 1, 28, 28) > 4.0);
    assert_true(shared_case("resnet18_cifar", NULL, 3, 32, 32) > 3.0);
    assert_true(shared_case("mobilenetv2_cifar", NULL, 3, 32, 32) > 4.0);
    assert_true(shared_case("lenet5", (const char *const[]){"variant=gpfq", NULL}, 1, 32, 32) > 1.0);
    /* training: every output is kept, gradients share */
    assert_true(shared_train_case("alexnet_small", NULL, 3, 32, 32) > 1.2);
    assert_true(shared_train_case("resnet20", (const char *const[]){"shortcut=A", NULL}, 1, 28, 28) > 1.5);
    assert_true(shared_train_case("mobilenetv2_cifar", NULL, 3, 32, 32) > 1.5);
    assert_true(shared_train_case("lenet5", NULL, 1, 28, 28) > 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listings),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_min_sizes),
        cmocka_unit_test(test_forward_smoke),
        cmocka_unit_test(test_golden_logits),
        cmocka_unit_test(test_shared_buffers),
    };
    return cmocka_run_group_tests_name("zoo", tests, setup, teardown);
}
