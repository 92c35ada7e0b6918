/* test_magnitude.c - the magnitude pruner against a brute-force reference (sort every weight by
 * (already masked first, |w|, target index, element index) and prune the first k). */
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
    desc = test_plugin_desc(PLUGIN_MAGNITUDE, QH_KIND_PRUNER, "magnitude");
    return desc ? 0 : -1;
}

enum { NT = 3 };
static const int64_t sizes[NT] = {100, 257, 1000};

typedef struct net {
    qh_tensor *w[NT];
    uint8_t *mask[NT];
    qh_prune_target t[NT];
} net;

/* Weights on a coarse grid (many exact ties, both signs, both zeros) and ~10 % already masked. */
static void net_make(net *n, uint64_t seed)
{
    qh_rng r;
    qh_rng_seed(&r, seed);
    static const char *names[NT] = {"a.weight", "b.weight", "c.weight"};
    for (int i = 0; i < NT; i++) {
        n->w[i] = qh_tensor_new(QH_F32, 1, &sizes[i], NULL);
        n->mask[i] = malloc((size_t)sizes[i]);
        float *x = qh_tensor_f32(n->w[i]);
        for (int64_t e = 0; e < sizes[i]; e++) {
            x[e] = (float)((int)qh_rng_below(&r, 41) - 20) * 0.05f;
            if (x[e] == 0.0f && qh_rng_below(&r, 2))
                x[e] = -0.0f;
            n->mask[i][e] = qh_rng_uniform(&r) >= 0.1;
        }
        n->t[i] = (qh_prune_target){names[i], n->w[i], n->mask[i]};
    }
}

static void net_free(net *n)
{
    for (int i = 0; i < NT; i++) {
        qh_tensor_free(n->w[i]);
        free(n->mask[i]);
    }
}

typedef struct item {
    int masked;
    float mag;
    int t;
    int64_t e;
} item;

static int item_cmp(const void *pa, const void *pb)
{
    const item *a = pa, *b = pb;
    if (a->masked != b->masked)
        return a->masked ? -1 : 1;
    if (a->mag != b->mag)
        return a->mag < b->mag ? -1 : 1;
    if (a->t != b->t)
        return a->t < b->t ? -1 : 1;
    return a->e < b->e ? -1 : a->e > b->e;
}

/* The expected masks for targets [t0, t1) pruned together to `sparsity`. */
static void reference(const net *n, int t0, int t1, double sparsity, uint8_t *out[NT])
{
    int64_t total = 0;
    for (int i = t0; i < t1; i++)
        total += sizes[i];
    item *all = malloc((size_t)total * sizeof *all);
    int64_t m = 0;
    for (int i = t0; i < t1; i++) {
        memcpy(out[i], n->mask[i], (size_t)sizes[i]);
        for (int64_t e = 0; e < sizes[i]; e++)
            all[m++] = (item){!n->mask[i][e], fabsf(qh_tensor_f32(n->w[i])[e]), i, e};
    }
    qsort(all, (size_t)total, sizeof *all, item_cmp);
    int64_t k = llround(sparsity * (double)total);
    for (int64_t j = 0; j < k; j++)
        out[all[j].t][all[j].e] = 0;
    free(all);
}

static int64_t count_pruned(uint8_t *const mask[NT], int t0, int t1)
{
    int64_t c = 0;
    for (int i = t0; i < t1; i++)
        for (int64_t e = 0; e < sizes[i]; e++)
            c += !mask[i][e];
    return c;
}

static void check_shrinks(const net *before, const net *after)
{
    for (int i = 0; i < NT; i++)
        for (int64_t e = 0; e < sizes[i]; e++)
            assert_true(after->mask[i][e] <= before->mask[i][e]);
}

static void prune(int scope_layer, net *n, double sparsity)
{
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "scope", scope_layer);
    qh_error err = {{0}};
    assert_int_equal(desc->ops.pruner->prune(cfg, n->t, NT, sparsity, &err), QH_OK);
    free(cfg);
}

static void test_global_matches_bruteforce(void **state)
{
    (void)state;
    static const double sp[] = {0.0, 0.05, 0.1, 0.3, 0.5, 0.77, 0.95, 0.999};
    for (size_t s = 0; s < sizeof sp / sizeof sp[0]; s++) {
        net n, orig;
        net_make(&n, 100 + s);
        net_make(&orig, 100 + s);
        uint8_t *want[NT];
        for (int i = 0; i < NT; i++)
            want[i] = malloc((size_t)sizes[i]);
        reference(&n, 0, NT, sp[s], want);
        prune(0, &n, sp[s]);
        for (int i = 0; i < NT; i++)
            assert_memory_equal(n.mask[i], want[i], (size_t)sizes[i]);
        int64_t k = llround(sp[s] * (100 + 257 + 1000));
        int64_t already = count_pruned(orig.mask, 0, NT);
        assert_int_equal(count_pruned(n.mask, 0, NT), k > already ? k : already);
        check_shrinks(&orig, &n);
        for (int i = 0; i < NT; i++)
            free(want[i]);
        net_free(&n);
        net_free(&orig);
    }
}

static void test_layer_matches_bruteforce(void **state)
{
    (void)state;
    static const double sp[] = {0.1, 0.5, 0.9};
    for (size_t s = 0; s < sizeof sp / sizeof sp[0]; s++) {
        net n, orig;
        net_make(&n, 200 + s);
        net_make(&orig, 200 + s);
        uint8_t *want[NT];
        for (int i = 0; i < NT; i++) {
            want[i] = malloc((size_t)sizes[i]);
            reference(&n, i, i + 1, sp[s], want);
        }
        prune(1, &n, sp[s]);
        for (int i = 0; i < NT; i++) {
            assert_memory_equal(n.mask[i], want[i], (size_t)sizes[i]);
            int64_t k = llround(sp[s] * (double)sizes[i]);
            int64_t already = count_pruned(orig.mask, i, i + 1);
            assert_int_equal(count_pruned(n.mask, i, i + 1), k > already ? k : already);
        }
        check_shrinks(&orig, &n);
        for (int i = 0; i < NT; i++)
            free(want[i]);
        net_free(&n);
        net_free(&orig);
    }
}

/* All weights equal: the lower (target, element) indices go first, exactly k of them. */
static void test_tie_rule(void **state)
{
    (void)state;
    int64_t four = 4;
    qh_tensor *a = qh_tensor_new(QH_F32, 1, &four, NULL), *b = qh_tensor_new(QH_F32, 1, &four, NULL);
    for (int e = 0; e < 4; e++)
        qh_tensor_f32(a)[e] = qh_tensor_f32(b)[e] = (e % 2) ? -0.5f : 0.5f;
    uint8_t ma[4] = {1, 1, 1, 1}, mb[4] = {1, 1, 1, 1};
    qh_prune_target t[2] = {{"a", a, ma}, {"b", b, mb}};
    void *cfg = test_config_defaults(desc);
    qh_error err = {{0}};
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.625, &err), QH_OK); /* k = 5 */
    static const uint8_t wa[4] = {0, 0, 0, 0}, wb[4] = {0, 1, 1, 1};
    assert_memory_equal(ma, wa, 4);
    assert_memory_equal(mb, wb, 4);
    /* An already-masked weight ranks before an equal unmasked one, even a later one. */
    memset(ma, 1, 4);
    memset(mb, 1, 4);
    mb[3] = 0;
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.25, &err), QH_OK); /* k = 2 */
    static const uint8_t wa2[4] = {0, 1, 1, 1}, wb2[4] = {1, 1, 1, 0};
    assert_memory_equal(ma, wa2, 4);
    assert_memory_equal(mb, wb2, 4);
    /* More already masked than k: nothing changes (masks never grow back). */
    memset(ma, 0, 4);
    assert_int_equal(desc->ops.pruner->prune(cfg, t, 2, 0.25, &err), QH_OK);
    assert_memory_equal(ma, ((uint8_t[4]){0, 0, 0, 0}), 4);
    assert_memory_equal(mb, wb2, 4);
    free(cfg);
    qh_tensor_free(a);
    qh_tensor_free(b);
}

/* Large random set: 1 and 2 threads agree, and the count is exact. */
static void test_large_threads(void **state)
{
    (void)state;
    int64_t shapes[3][2] = {{500, 400}, {120, 500}, {10, 1200}};
    qh_tensor *w[3];
    uint8_t *m1[3], *m2[3];
    qh_prune_target t1[3], t2[3];
    qh_rng r;
    qh_rng_seed(&r, 9);
    int64_t total = 0;
    for (int i = 0; i < 3; i++) {
        w[i] = qh_tensor_new(QH_F32, 2, shapes[i], NULL);
        int64_t n = qh_tensor_numel(w[i]);
        total += n;
        for (int64_t e = 0; e < n; e++)
            qh_tensor_f32(w[i])[e] = (float)qh_rng_normal(&r);
        m1[i] = malloc((size_t)n);
        m2[i] = malloc((size_t)n);
        t1[i] = (qh_prune_target){"w", w[i], m1[i]};
        t2[i] = (qh_prune_target){"w", w[i], m2[i]};
    }
    for (int scope = 0; scope < 2; scope++) {
        for (int i = 0; i < 3; i++) {
            memset(m1[i], 1, (size_t)qh_tensor_numel(w[i]));
            memset(m2[i], 1, (size_t)qh_tensor_numel(w[i]));
        }
        void *cfg = test_config_defaults(desc);
        test_set_int(desc, cfg, "scope", scope);
        qh_error err = {{0}};
        qh_set_threads(1);
        assert_int_equal(desc->ops.pruner->prune(cfg, t1, 3, 0.8, &err), QH_OK);
        qh_set_threads(2);
        assert_int_equal(desc->ops.pruner->prune(cfg, t2, 3, 0.8, &err), QH_OK);
        int64_t pruned = 0;
        for (int i = 0; i < 3; i++) {
            int64_t n = qh_tensor_numel(w[i]);
            assert_memory_equal(m1[i], m2[i], (size_t)n);
            for (int64_t e = 0; e < n; e++)
                pruned += !m1[i][e];
        }
        assert_int_equal(pruned, llround(0.8 * (double)total));
        free(cfg);
    }
    for (int i = 0; i < 3; i++) {
        qh_tensor_free(w[i]);
        free(m1[i]);
        free(m2[i]);
    }
}

static void test_rejects(void **state)
{
    (void)state;
    net n;
    net_make(&n, 5);
    void *cfg = test_config_defaults(desc);
    qh_error err = {{0}};
    assert_int_not_equal(desc->ops.pruner->prune(cfg, n.t, NT, 1.0, &err), QH_OK);
    assert_non_null(strstr(err.msg, "sparsity"));
    assert_int_not_equal(desc->ops.pruner->prune(cfg, n.t, NT, -0.1, &err), QH_OK);
    assert_int_not_equal(desc->ops.pruner->prune(cfg, n.t, NT, NAN, &err), QH_OK);
    qh_tensor_f32(n.w[1])[17] = NAN;
    assert_int_not_equal(desc->ops.pruner->prune(cfg, n.t, NT, 0.5, &err), QH_OK);
    assert_non_null(strstr(err.msg, "b.weight"));
    assert_non_null(strstr(err.msg, "element 17"));
    free(cfg);
    net_free(&n);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_MAGNITUDE);
    assert_string_equal(lib->name, "qhost-pruner-magnitude");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
    const qh_param *p = test_param(desc, "scope");
    assert_string_equal(p->choices[p->def.i], "global");
    assert_string_equal(p->choices[1], "layer");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_global_matches_bruteforce),
        cmocka_unit_test(test_layer_matches_bruteforce),
        cmocka_unit_test(test_tie_rule),
        cmocka_unit_test(test_large_threads),
        cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
