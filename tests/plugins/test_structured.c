/* test_structured.c - the structured (filter) pruner alone: L1 and L2 ranking on weights whose norms
 * are computed by hand, the global ranking of normalized norms, coupled groups and families, at
 * least one filter kept per layer, masks that only shrink, ties, and bad input. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plugin_util.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_STRUCTURED, QH_KIND_PRUNER, "structured");
    return desc && desc->ops.pruner->prune_groups ? 0 : -1;
}

/* A weight [rows, cols] from values, with an all-ones mask. */
typedef struct layer {
    qh_tensor *w;
    uint8_t *mask;
} layer;

static qh_prune_target layer_make(layer *l, const char *name, int64_t rows, int64_t cols, const float *v)
{
    int64_t shape[2] = {rows, cols};
    l->w = qh_tensor_new(QH_F32, 2, shape, NULL);
    l->mask = malloc((size_t)(rows * cols));
    memcpy(l->w->data, v, sizeof(float) * (size_t)(rows * cols));
    memset(l->mask, 1, (size_t)(rows * cols));
    return (qh_prune_target){name, l->w, l->mask};
}

static void layer_free(layer *l)
{
    qh_tensor_free(l->w);
    free(l->mask);
}

static void *config(const char *norm, const char *scope)
{
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "norm", strcmp(norm, "l2") == 0);
    test_set_int(desc, cfg, "scope", strcmp(scope, "global") == 0);
    return cfg;
}

/* 1 when every element of row r of the layer is masked, 0 when none is; fails otherwise. */
static int row_pruned(const layer *l, int64_t r)
{
    int64_t cols = l->w->shape[1], zeros = 0;
    for (int64_t c = 0; c < cols; c++)
        zeros += !l->mask[r * cols + c];
    assert_true(zeros == 0 || zeros == cols);
    return zeros == cols;
}

/* f0 = (3, 0, 0, 0): L1 3, L2 3.  f1 = (1, 1, 1, 1): L1 4, L2 2.  Half of the filters go: L1 removes
 * f0, L2 removes f1. */
static void test_l1_l2_by_hand(void **state)
{
    (void)state;
    const float v[8] = {3, 0, 0, 0, 1, 1, 1, 1};
    const char *norms[2] = {"l1", "l2"};
    for (int k = 0; k < 2; k++) {
        layer l;
        qh_prune_target t = layer_make(&l, "conv.weight", 2, 4, v);
        void *cfg = config(norms[k], "layer");
        qh_error err;
        assert_int_equal(desc->ops.pruner->prune(cfg, &t, 1, 0.5, &err), QH_OK);
        assert_int_equal(row_pruned(&l, 0), k == 0);
        assert_int_equal(row_pruned(&l, 1), k == 1);
        free(cfg);
        layer_free(&l);
    }
}

/* Layer a: L1 norms 1, 2, 3 (mean 2: scores 0.5, 1, 1.5); layer b: 10, 40 (mean 25: 0.4, 1.6). The
 * global ranking of 0.4 of the 5 filters (2) takes b's 10 and a's 1, though a's 2 is smaller than b's
 * 10 in raw terms. Per layer, round(0.4 * 3) = 1 of a and round(0.4 * 2) = 1 of b. */
static void test_global_normalized(void **state)
{
    (void)state;
    const float va[6] = {1, 0, -2, 0, 0, 3}, vb[4] = {-10, 0, 20, 20};
    const char *scopes[2] = {"global", "layer"};
    for (int k = 0; k < 2; k++) {
        layer a, b;
        qh_prune_target t[2] = {layer_make(&a, "a.weight", 3, 2, va), layer_make(&b, "b.weight", 2, 2, vb)};
        void *cfg = config("l1", scopes[k]);
        qh_error err;
        assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.4, &err), QH_OK);
        assert_int_equal(row_pruned(&a, 0), 1);
        assert_int_equal(row_pruned(&a, 1), 0);
        assert_int_equal(row_pruned(&a, 2), 0);
        assert_int_equal(row_pruned(&b, 0), 1);
        assert_int_equal(row_pruned(&b, 1), 0);
        free(cfg);
        layer_free(&a);
        layer_free(&b);
    }
}

/* Coupled groups: a's filter c with b's filter c (a residual pair), plus c's filters alone. Scores
 * (L2, normalized by each layer's mean): pair c = mean(a_c / mean_a, b_c / mean_b). */
static void test_coupled_groups(void **state)
{
    (void)state;
    const float va[3] = {1, 2, 3}, vb[3] = {30, 20, 10}, vc[2] = {5, 6};
    layer a, b, c;
    qh_prune_target t[3] = {layer_make(&a, "a.weight", 3, 1, va), layer_make(&b, "b.weight", 3, 1, vb),
                            layer_make(&c, "c.weight", 2, 1, vc)};
    int32_t tg[8] = {0, 1, 0, 1, 0, 1, 2, 2};
    int64_t ch[8] = {0, 0, 1, 1, 2, 2, 0, 1};
    qh_channel_group g[5] = {{0, 2, &tg[0], &ch[0], 1}, {0, 2, &tg[2], &ch[2], 1}, {0, 2, &tg[4], &ch[4], 1},
                             {1, 1, &tg[6], &ch[6], 1}, {1, 1, &tg[7], &ch[7], 1}};
    /* pair scores: (1/2 + 30/20)/2 = 1.0, (2/2 + 20/20)/2 = 1.0, (3/2 + 10/20)/2 = 1.0: a three-way tie,
     * broken by the group index; layer c: 5/5.5 < 6/5.5 */
    void *cfg = config("l2", "layer");
    qh_error err;
    assert_int_equal(desc->ops.pruner->prune_groups(cfg, t, 3, g, 5, 0.5, &err), QH_OK);
    /* family 0: round(1.5) = 2 of 3 (the lower indices); family 1: round(1) = 1 of 2 */
    assert_int_equal(g[0].keep, 0);
    assert_int_equal(g[1].keep, 0);
    assert_int_equal(g[2].keep, 1);
    assert_int_equal(g[3].keep, 0);
    assert_int_equal(g[4].keep, 1);
    /* the pruner never touches masks through prune_groups: the host masks */
    for (int i = 0; i < 3; i++)
        assert_int_equal(a.mask[i], 1);
    /* global, with b's first filter raised: pair 0 scores (1/2 + 60/30)/2 = 1.25 and is kept */
    qh_tensor_f32(b.w)[0] = 60;
    for (int i = 0; i < 5; i++)
        g[i].keep = 1;
    free(cfg);
    cfg = config("l2", "global");
    assert_int_equal(desc->ops.pruner->prune_groups(cfg, t, 3, g, 5, 0.4, &err), QH_OK); /* 2 of 5 */
    /* scores: pair0 1.25, pair1 (1 + 20/30)/2 = 0.833, pair2 (1.5 + 10/30)/2 = 0.917, c0 0.909, c1 1.09 */
    assert_int_equal(g[0].keep, 1);
    assert_int_equal(g[1].keep, 0);
    assert_int_equal(g[2].keep, 1);
    assert_int_equal(g[3].keep, 0);
    assert_int_equal(g[4].keep, 1);
    free(cfg);
    layer_free(&a);
    layer_free(&b);
    layer_free(&c);
}

/* A layer never loses its last filter: per layer k = min(round(s n), n - 1); globally the last alive
 * group of a family is skipped. Already pruned groups count first and stay pruned. */
static void test_keeps_one_and_only_shrinks(void **state)
{
    (void)state;
    const float va[2] = {1, 2}, vb[1] = {0.001f};
    layer a, b;
    qh_prune_target t[2] = {layer_make(&a, "a.weight", 2, 1, va), layer_make(&b, "b.weight", 1, 1, vb)};
    void *cfg = config("l1", "layer");
    qh_error err;
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.9, &err), QH_OK);
    assert_int_equal(row_pruned(&a, 0), 1);
    assert_int_equal(row_pruned(&a, 1), 0);
    assert_int_equal(row_pruned(&b, 0), 0);
    free(cfg);
    cfg = config("l1", "global");
    memset(a.mask, 1, 2);
    a.mask[1] = 0; /* filter 1 (the larger) already pruned: it counts first */
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.34, &err), QH_OK); /* round(1.02) = 1: nothing more */
    assert_int_equal(row_pruned(&a, 0), 0);
    assert_int_equal(row_pruned(&a, 1), 1);
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.9, &err), QH_OK); /* a's last and b's only stay */
    assert_int_equal(row_pruned(&a, 0), 0);
    assert_int_equal(row_pruned(&b, 0), 0);
    free(cfg);
    layer_free(&a);
    layer_free(&b);
}

static void test_bad_input(void **state)
{
    (void)state;
    const float v[4] = {1, 2, 3, NAN};
    layer l;
    qh_prune_target t = layer_make(&l, "x.weight", 2, 2, v);
    void *cfg = config("l1", "layer");
    qh_error err;
    assert_int_equal(desc->ops.pruner->prune(cfg, &t, 1, 1.0, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "outside [0, 1)"));
    assert_int_equal(desc->ops.pruner->prune(cfg, &t, 1, -0.1, &err), QH_E_INVAL);
    assert_int_equal(desc->ops.pruner->prune(cfg, &t, 1, 0.5, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "NaN"));
    qh_tensor_f32(l.w)[3] = 4;
    int32_t tg[1] = {1};
    int64_t ch[1] = {0};
    qh_channel_group g = {0, 1, tg, ch, 1};
    assert_int_equal(desc->ops.pruner->prune_groups(cfg, &t, 1, &g, 1, 0.5, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "names no filter"));
    tg[0] = 0;
    ch[0] = 2;
    assert_int_equal(desc->ops.pruner->prune_groups(cfg, &t, 1, &g, 1, 0.5, &err), QH_E_INVAL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(l.mask[i], 1); /* nothing changed */
    free(cfg);
    layer_free(&l);
    assert_true(test_params_documented(desc));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_l1_l2_by_hand),
        cmocka_unit_test(test_global_normalized),
        cmocka_unit_test(test_coupled_groups),
        cmocka_unit_test(test_keeps_one_and_only_shrinks),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
