/* test_stable_embedding.c - the stable_embedding quantizer plugin (seed 001's sorted-group method).
 *
 * References: the definition itself (a stable order by |w|, groups of g consecutive sorted
 * elements, absmax per group), checked element by element from the permutation the plugin stores;
 * the core reference decoder (which must restore the original order); and the size formula.
 * The plugin's fast path (se_fast.c: bucket partition, in-cache ranking, outputs in flat order) is
 * compiled in and compared byte for byte with its reference sort.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/stable_embedding/se_impl.h"
#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_SE, QH_KIND_QUANTIZER, "stable_embedding");
    return desc ? 0 : -1;
}

enum { C_DT = 0, C_FP8 };

static void *make_cfg(int bits, int code, int group, int seed)
{
    return test_config_ints(desc, "bits", bits, "code", code, "group", group, "mode", seed);
}

/* One call through the plugin's lifecycle: create (its state keeps working memory), quantize, destroy. */
static qh_status quantize(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err)
{
    const qh_quantizer_ops *ops = desc->ops.quantizer;
    void *st = NULL;
    memset(out, 0, sizeof *out);
    qh_status s = ops->create(cfg, &st, err);
    if (s != QH_OK)
        return s;
    out->deq = qh_tensor_new(QH_F32, w->ndim, w->shape, NULL);
    s = ops->quantize(st, TEST_TENSOR_NAME, w, &out->q, out->deq, err);
    ops->destroy(st);
    return s;
}

static qh_tensor *gaussian(int32_t ndim, const int64_t *shape, uint64_t seed)
{
    return test_gaussian(ndim, shape, seed, 0.1, NULL);
}

/* The stored permutation is the stable order by |w| (within segments of seg elements), groups are
 * block-sized runs of it, and each group's scale comes from its absmax. Returns the max error
 * relative to the group absmax. */
static double check_structure(const qh_tensor *w, const test_qrun *r, int64_t seg, int fp8)
{
    int64_t n = qh_tensor_numel(w), g = r->q.block;
    const float *x = qh_tensor_f32(w), *s = qh_tensor_f32(r->q.scale), *y = qh_tensor_f32(r->deq);
    const int32_t *p = r->q.perm->data;
    assert_int_equal(r->q.gran, QH_QG_FLAT_BLOCK);
    int32_t *at = malloc((size_t)n * sizeof *at); /* at[position] = element */
    for (int64_t i = 0; i < n; i++)
        at[i] = -1;
    for (int64_t i = 0; i < n; i++) {
        assert_in_range(p[i], 0, n - 1);
        assert_int_equal(at[p[i]], -1);
        at[p[i]] = (int32_t)i;
        assert_int_equal(p[i] / seg, i / seg); /* stays in its segment */
    }
    for (int64_t k = 1; k < n; k++) {
        if (k % seg == 0)
            continue;
        float a = fabsf(x[at[k - 1]]), b = fabsf(x[at[k]]);
        assert_true(a < b || (a == b && at[k - 1] < at[k])); /* ascending, ties by index */
    }
    double worst = 0;
    int64_t groups = (n + g - 1) / g;
    assert_int_equal(qh_tensor_numel(r->q.scale), groups);
    for (int64_t gi = 0; gi < groups; gi++) {
        float amax = 0;
        for (int64_t k = gi * g; k < n && k < (gi + 1) * g; k++)
            amax = fmaxf(amax, fabsf(x[at[k]]));
        assert_true(s[gi] == (fp8 ? amax / 448.0f : amax > 0 ? amax : 1.0f));
        for (int64_t k = gi * g; k < n && k < (gi + 1) * g; k++)
            if (amax > 0)
                worst = fmax(worst, fabs((double)x[at[k]] - y[at[k]]) / amax);
    }
    free(at);
    test_check_decoder(r);
    return worst;
}

/* Round trip: dequantized values come back in the original order; the error per element is at most
 * half the largest gap of the code, or the distance from -1 to the most negative code (the map has
 * +1 but not -1), relative to the group absmax. */
static void test_round_trip(void **state)
{
    (void)state;
    int64_t shape[2] = {37, 29}; /* 1073 elements: the last group is short */
    qh_tensor *w = gaussian(2, shape, 1);
    for (int bits = 2; bits <= 8; bits++) {
        void *cfg = make_cfg(bits, C_DT, 64, 0);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        double worst = check_structure(w, &r, 1073, 0);
        const float *bk = qh_tensor_f32(r.q.codebook);
        double gap = 0;
        for (int64_t j = 1; j < qh_tensor_numel(r.q.codebook); j++)
            gap = fmax(gap, (double)bk[j] - bk[j - 1]);
        assert_true(worst <= fmax(0.5 * gap, 1.0 + bk[0]) + 1e-6); /* + float rounding of code * scale */
        test_qrun_free(&r);
        free(cfg);
    }
    void *cfg = make_cfg(8, C_FP8, 64, 0);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    check_structure(w, &r, 1073, 1);
    const float *x = qh_tensor_f32(w), *y = qh_tensor_f32(r.deq);
    for (int64_t i = 0; i < 1073; i++) /* E4M3 half ulp; subnormal range bounded by the group scale */
        assert_true(fabs((double)x[i] - y[i]) <=
                    fmax(fabs(x[i]) / 16, qh_tensor_f32(r.q.scale)[r.q.perm ? ((int32_t *)r.q.perm->data)[i] / 64 : 0] *
                                              ldexp(1, -10)) * (1 + 1e-6));
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Size: packed codes + 4 bytes per group scale + the permutation at ceil(log2(numel)) bits. */
static void test_size(void **state)
{
    (void)state;
    int64_t shape[2] = {100, 41}; /* 4100 elements: 13-bit indices */
    qh_tensor *w = gaussian(2, shape, 2);
    for (int bits = 3; bits <= 8; bits += 5) {
        void *cfg = make_cfg(bits, C_DT, 256, 0);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        int64_t groups = (4100 + 255) / 256;
        assert_int_equal(qh_qtensor_bytes(&r.q), (4100 * bits + 7) / 8 + 4 * groups + (4100 * 13 + 7) / 8);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* Ties in magnitude (+-0.5, +0 / -0) keep the index order: the result is deterministic. */
static void test_ties(void **state)
{
    (void)state;
    float v[12] = {0.5f, -0.5f, 0.0f, 0.25f, -0.0f, 0.5f, -0.25f, 0.0f, 0.5f, -0.5f, 0.25f, 0.0f};
    int64_t shape[2] = {3, 4};
    qh_tensor *w = test_tensor_from(2, shape, v);
    void *cfg = make_cfg(8, C_DT, 4, 0);
    test_qrun a = test_quantize_ok(quantize, cfg, w);
    check_structure(w, &a, 12, 0);
    /* order: zeros 2,4,7,11; quarters 3,6,10; halves 0,1,5,8,9 */
    const int32_t want[12] = {7, 8, 0, 4, 1, 9, 5, 2, 10, 11, 6, 3};
    assert_memory_equal(a.q.perm->data, want, sizeof want);
    assert_true(qh_tensor_f32(a.q.scale)[0] == 1.0f); /* the all-zero group */
    const float *y = qh_tensor_f32(a.deq);
    for (int i = 0; i < 12; i++) /* 0 and +absmax are codes; -absmax and the quarters are not */
        if (v[i] == 0.0f || v[i] == 0.5f)
            assert_true(y[i] == v[i]);
        else
            assert_float_equal(y[i], v[i], 0.01);
    test_qrun b = test_quantize_ok(quantize, cfg, w);
    assert_memory_equal(a.q.codes->data, b.q.codes->data, qh_tensor_nbytes(a.q.codes));
    test_qrun_free(&a);
    test_qrun_free(&b);
    free(cfg);
    qh_tensor_free(w);
}

/* seed001: conv weights sorted within each [filter, channel] slice, groups of kw; linear weights
 * sorted whole, groups of out_features; the seed's codes (337-level DT for N = 8, 240-level FP8). */
static void test_seed_mode(void **state)
{
    (void)state;
    int64_t cs[4] = {4, 3, 5, 5}, ls[2] = {10, 30};
    qh_tensor *conv = gaussian(4, cs, 3), *lin = gaussian(2, ls, 4);
    for (int code = 0; code < 2; code++) {
        void *cfg = make_cfg(8, code, 64, 1);
        test_qrun r = test_quantize_ok(quantize, cfg, conv);
        assert_int_equal(r.q.block, 5);
        assert_int_equal(qh_tensor_numel(r.q.codebook), code == C_DT ? 337 : 240);
        assert_int_equal(r.q.bits, code == C_DT ? 9 : 8);
        assert_int_equal(qh_tensor_numel(r.q.scale), 4 * 3 * 5);
        check_structure(conv, &r, 25, 0);
        test_qrun_free(&r);
        r = test_quantize_ok(quantize, cfg, lin);
        assert_int_equal(r.q.block, 10);
        check_structure(lin, &r, 300, 0);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(conv);
    qh_tensor_free(lin);
}

/* The reference decoder refuses a perm that is not a permutation. */
static void test_bad_perm(void **state)
{
    (void)state;
    int64_t shape[2] = {8, 8};
    qh_tensor *w = gaussian(2, shape, 5);
    void *cfg = make_cfg(8, C_DT, 16, 0);
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    int32_t *p = r.q.perm->data;
    p[3] = p[4];
    qh_tensor *dec = qh_tensor_new(QH_F32, 2, shape, NULL);
    qh_error err = {{0}};
    assert_int_not_equal(qh_qtensor_dequantize(&r.q, dec, &err), QH_OK);
    assert_non_null(strstr(err.msg, "perm"));
    qh_tensor_free(dec);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

static void test_threads_identical(void **state)
{
    (void)state;
    int64_t shape[2] = {301, 97};
    qh_tensor *w = gaussian(2, shape, 6);
    int64_t cs[4] = {16, 8, 3, 3};
    qh_tensor *conv = gaussian(4, cs, 7);
    for (int k = 0; k < 4; k++) {
        void *cfg = make_cfg(8, k & 1, 128, k >> 1);
        const qh_tensor *t = k >> 1 ? conv : w;
        test_assert_threads_identical(quantize, cfg, t, TEST_SAME_DEQ | TEST_SAME_CODES | TEST_SAME_PERM);
        free(cfg);
    }
    qh_tensor_free(w);
    qh_tensor_free(conv);
}

/* se_run's reference and fast paths: codes, scales, perm, values (and without values), with 1 and
 * 2 threads; the fast path keeps its working memory between calls as the plugin does. */
typedef struct se_case {
    const se_cfg *cfg;
    const qh_tensor *w;
    se_scratch scratch;
} se_case;

static void se_path(void *ctx, int fast, void *const *out)
{
    se_case *k = ctx;
    se_out o = {out[0], out[1], out[2], out[3]};
    assert_int_equal(se_run(k->cfg, k->w, &o, fast, &k->scratch), SE_OK);
}

static void compare_runs(const se_cfg *cfg, const qh_tensor *w)
{
    size_t n = (size_t)qh_tensor_numel(w), groups = (n + (size_t)cfg->group - 1) / (size_t)cfg->group;
    se_case k = {cfg, w, {0}};
    const test_path_out spec[4] = {
        {n + 1, n, 0},
        {sizeof(float) * (groups + 1), sizeof(float) * groups, 0},
        {sizeof(int32_t) * (n + 1), sizeof(int32_t) * n, 0},
        {sizeof(float) * (n + 1), sizeof(float) * n, 1},
    };
    test_compare_paths(se_path, &k, spec, 4);
    se_scratch_free(&k.scratch);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    int64_t shape[2] = {61, 1013}; /* 61793 elements: not a multiple of 32 or of the groups */
    qh_tensor *w = gaussian(2, shape, 9);
    static const int64_t groups[] = {256, 2, 3, 1000, 61793, 100000};
    for (int bits = 2; bits <= 8; bits++)
        for (int g = 0; g < 6; g++) {
            if (bits != 8 && g > 1)
                continue;
            se_cfg cfg = {bits, SE_CODE_DT, SE_MODE_CANONICAL, groups[g]};
            compare_runs(&cfg, w);
            if (bits == 8) {
                cfg.code = SE_CODE_FP8;
                compare_runs(&cfg, w);
            }
        }
    /* ties everywhere: few distinct magnitudes of both signs, +0 and -0, 40 % pruned */
    float *x = qh_tensor_f32(w);
    int64_t n = qh_tensor_numel(w);
    for (int64_t i = 0; i < n; i++)
        x[i] = i % 5 < 2 ? (i % 2 ? -0.0f : 0.0f) : (float)((int)(x[i] * 30.0f)) / 64.0f;
    for (int g = 0; g < 4; g++) {
        se_cfg cfg = {8, SE_CODE_DT, SE_MODE_CANONICAL, groups[g]};
        compare_runs(&cfg, w);
    }
    qh_tensor_free(w);
    /* one magnitude bucket of more than 2^17 elements (the counting-sort branch) and a tensor larger
     * than QQ_NT_MIN (values streamed) */
    int64_t big[2] = {3, 800001};
    qh_tensor *b = gaussian(2, big, 10);
    float *y = qh_tensor_f32(b);
    for (int64_t i = 0; i < 3 * 800001; i += 9)
        y[i] = i % 2 ? 0.3f + 1e-7f * (float)(i % 1000) : -0.3f;
    se_cfg cfg = {8, SE_CODE_DT, SE_MODE_CANONICAL, 256};
    compare_runs(&cfg, b);
    cfg.code = SE_CODE_FP8;
    compare_runs(&cfg, b);
    qh_tensor_free(b);
}

static void test_rejects(void **state)
{
    (void)state;
    int64_t shape[2] = {4, 4};
    qh_tensor *w = gaussian(2, shape, 8);
    void *cfg = make_cfg(8, C_DT, 4, 0);
    qh_error err = {{0}};
    qh_tensor_f32(w)[5] = INFINITY;
    test_expect_reject(quantize, cfg, w, "element 5 is infinite", TEST_REJ_UNNAMED, &err);
    qh_tensor_f32(w)[5] = 0.0f;
    test_set_int(desc, cfg, "code", C_FP8);
    test_set_int(desc, cfg, "bits", 4);
    test_expect_reject(quantize, cfg, w, "fp8_e4m3", 0, &err);
    test_set_int(desc, cfg, "bits", 8);
    test_set_int(desc, cfg, "group", 1);
    test_expect_reject(quantize, cfg, w, "group = 1 outside", 0, &err);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_true(test_params_documented(desc));
    const qh_param *code = test_param(desc, "code");
    assert_string_equal(code->choices[code->def.i], "dynamic_tree");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_size),       cmocka_unit_test(test_ties),
        cmocka_unit_test(test_seed_mode),  cmocka_unit_test(test_bad_perm),
        cmocka_unit_test(test_threads_identical), cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_fast_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
