/* test_nm.c - the N:M pruner: every group of M weights along the input channels keeps at most N,
 * and exactly the N of largest |w| (compared with a sort of each group); masks only shrink; bad
 * parameters and shapes are refused with messages naming what is wrong. */
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
    desc = test_plugin_desc(PLUGIN_NM, QH_KIND_PRUNER, "nm");
    return desc ? 0 : -1;
}

/* A weight of `shape` on a coarse grid (exact ties, both signs) and a mask with ~`masked` pruned. */
static qh_tensor *make_weight(int ndim, const int64_t *shape, uint64_t seed, double masked, uint8_t **mask)
{
    qh_tensor *w = qh_tensor_new(QH_F32, ndim, shape, NULL);
    assert_non_null(w);
    int64_t n = qh_tensor_numel(w);
    *mask = malloc((size_t)n);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = qh_tensor_f32(w);
    for (int64_t i = 0; i < n; i++) {
        x[i] = (float)((int)qh_rng_below(&r, 21) - 10) * 0.1f;
        (*mask)[i] = qh_rng_uniform(&r) >= masked;
    }
    return w;
}

typedef struct member {
    uint32_t rank_key; /* 0: masked; else 1 + |w| bits */
    int j;
} member;

static int member_cmp(const void *pa, const void *pb)
{
    const member *a = pa, *b = pb;
    if (a->rank_key != b->rank_key)
        return a->rank_key > b->rank_key ? -1 : 1; /* larger first */
    return a->j - b->j;                           /* ties: lower channel first */
}

/* Checks the N:M result of one weight against a per-group sort of its input masks. */
static void check_groups(const qh_tensor *w, const uint8_t *before, const uint8_t *after, int n, int m)
{
    int64_t out = w->shape[0], in = w->shape[1], spatial = qh_tensor_numel(w) / (out * in);
    const float *x = qh_tensor_f32(w);
    int64_t groups = 0;
    for (int64_t o = 0; o < out; o++)
        for (int64_t c0 = 0; c0 < in; c0 += m)
            for (int64_t p = 0; p < spatial; p++, groups++) {
                member g[16];
                int kept = 0;
                for (int j = 0; j < m; j++) {
                    int64_t e = (o * in + c0 + j) * spatial + p;
                    float a = fabsf(x[e]);
                    uint32_t bits;
                    memcpy(&bits, &a, sizeof bits);
                    g[j] = (member){before[e] ? bits + 1 : 0, j};
                    kept += after[e];
                    if (!before[e] && after[e])
                        fail_msg("revived element %lld", (long long)e);
                }
                assert_true(kept <= n);
                qsort(g, (size_t)m, sizeof g[0], member_cmp);
                for (int r = 0; r < m; r++) {
                    int64_t e = (o * in + c0 + g[r].j) * spatial + p;
                    uint8_t want = r < n && g[r].rank_key != 0;
                    if (after[e] != want)
                        fail_msg("group (%lld, %lld, %lld): channel %d has mask %d, expected %d", (long long)o,
                                 (long long)c0, (long long)p, g[r].j, after[e], want);
                }
            }
    assert_true(groups == qh_tensor_numel(w) / m);
}

static void run_case(int n, int m, int ndim, const int64_t *shape, double masked, uint64_t seed)
{
    void *cfg = test_config_defaults(desc);
    assert_int_equal(test_set_int(desc, cfg, "n", n), 0);
    assert_int_equal(test_set_int(desc, cfg, "m", m), 0);
    qh_error err = {{0}};
    void *st = NULL;
    assert_int_equal(desc->ops.pruner->create(cfg, &st, &err), QH_OK);
    uint8_t *mask;
    qh_tensor *w = make_weight(ndim, shape, seed, masked, &mask);
    int64_t numel = qh_tensor_numel(w);
    uint8_t *before = malloc((size_t)numel);
    memcpy(before, mask, (size_t)numel);
    qh_prune_target t = {"conv.weight", w, mask};
    assert_int_equal(desc->ops.pruner->prune(st, &t, 1, 0.0, &err), QH_OK);
    check_groups(w, before, mask, n, m);
    if (masked == 0.0) { /* dense before: exactly 1 - n/m pruned */
        int64_t zeros = 0;
        for (int64_t i = 0; i < numel; i++)
            zeros += !mask[i];
        assert_int_equal(zeros, numel / m * (m - n));
    }
    /* pruning again changes nothing: the pattern already holds */
    memcpy(before, mask, (size_t)numel);
    assert_int_equal(desc->ops.pruner->prune(st, &t, 1, 1.0 - (double)n / m, &err), QH_OK);
    assert_memory_equal(before, mask, (size_t)numel);
    free(before);
    free(mask);
    qh_tensor_free(w);
    free(cfg);
}

static void test_two_four_linear_and_conv(void **state)
{
    (void)state;
    const int64_t lin[] = {7, 16}, conv[] = {5, 8, 3, 3};
    run_case(2, 4, 2, lin, 0.0, 1);
    run_case(2, 4, 4, conv, 0.0, 2);
}

static void test_other_patterns_and_existing_masks(void **state)
{
    (void)state;
    const int64_t conv[] = {3, 16, 2, 3}, lin[] = {4, 12};
    run_case(1, 4, 4, conv, 0.0, 3);
    run_case(4, 8, 4, conv, 0.3, 4);
    run_case(3, 16, 4, conv, 0.0, 5);
    run_case(1, 2, 2, lin, 0.5, 6);
    run_case(2, 3, 2, lin, 0.2, 7);
}

/* Group membership along the input channels, not along memory: for a conv [1, 4, 1, 2] the two
 * groups are the even and the odd elements. */
static void test_groups_run_along_input_channels(void **state)
{
    (void)state;
    void *cfg = test_config_defaults(desc); /* 2:4 */
    qh_error err = {{0}};
    const int64_t shape[] = {1, 4, 1, 2};
    qh_tensor *w = qh_tensor_new(QH_F32, 4, shape, NULL);
    const float v[] = {1, -8, 2, 7, 3, 6, 4, -5}; /* (c, x): c0x0 c0x1 c1x0 c1x1 ... */
    memcpy(w->data, v, sizeof v);
    uint8_t mask[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    qh_prune_target t = {"c.weight", w, mask};
    assert_int_equal(desc->ops.pruner->prune(cfg, &t, 1, 0.0, &err), QH_OK);
    const uint8_t expect[8] = {0, 1, 0, 1, 1, 0, 1, 0}; /* x0: keep 3, 4; x1: keep -8, 7 */
    assert_memory_equal(mask, expect, 8);
    qh_tensor_free(w);
    free(cfg);
}

static void test_refusals(void **state)
{
    (void)state;
    void *cfg = test_config_defaults(desc);
    qh_error err = {{0}};
    void *st = NULL;
    test_set_int(desc, cfg, "n", 4);
    assert_int_equal(desc->ops.pruner->create(cfg, &st, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, "n = 4"));
    assert_non_null(strstr(err.msg, "m = 4"));
    test_set_int(desc, cfg, "n", 2);
    assert_int_equal(desc->ops.pruner->create(cfg, &st, &err), QH_OK);

    const int64_t shape[] = {3, 6, 5, 5}; /* LeNet-5's conv2: 6 input channels */
    uint8_t *mask;
    qh_tensor *w = make_weight(4, shape, 9, 0.0, &mask);
    qh_prune_target t = {"conv2.weight", w, mask};
    assert_int_equal(desc->ops.pruner->prune(st, &t, 1, 0.0, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "conv2.weight"));
    assert_non_null(strstr(err.msg, "6 input channels"));
    assert_non_null(strstr(err.msg, "m = 4"));
    for (int64_t i = 0; i < qh_tensor_numel(w); i++)
        assert_int_equal(mask[i], 1); /* refused before touching anything */
    qh_tensor_free(w);
    free(mask);

    const int64_t lin[] = {2, 8};
    w = make_weight(2, lin, 10, 0.0, &mask);
    t = (qh_prune_target){"fc.weight", w, mask};
    assert_int_equal(desc->ops.pruner->prune(st, &t, 1, 0.3, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "0.5"));
    qh_tensor_free(w);
    free(mask);
    free(cfg);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_true(test_params_documented(desc));
    assert_non_null(test_param(desc, "n"));
    assert_non_null(test_param(desc, "m"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_two_four_linear_and_conv),
        cmocka_unit_test(test_other_patterns_and_existing_masks),
        cmocka_unit_test(test_groups_run_along_input_channels),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_descriptor),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
