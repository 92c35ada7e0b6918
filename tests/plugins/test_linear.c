/* test_linear.c - the linear quantizer plugin, called directly through its ops.
 *
 * References: the closed form of each grid (computed here from the weights in double), the error
 * bound |w - deq| <= scale / 2, and the core reference decoder qh_qtensor_dequantize.
 */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../plugins/quantizers/linear/linear_impl.h"
#include "plugin_util.h"
#include "qhost/qh_parallel.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_LINEAR, QH_KIND_QUANTIZER, "linear");
    return desc ? 0 : -1;
}

/* Sets enum parameter `name` to the choice spelled `value` (fails the test if there is none). */
static void set_enum(void *cfg, const char *name, const char *value)
{
    const qh_param *p = test_param(desc, name);
    assert_non_null(p);
    for (int i = 0; p->choices[i]; i++)
        if (strcmp(p->choices[i], value) == 0) {
            test_set_int(desc, cfg, name, i);
            return;
        }
    fail_msg("parameter %s has no choice %s", name, value);
}

static void *make_cfg(int bits, const char *gran, const char *mode)
{
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "bits", bits);
    set_enum(cfg, "granularity", gran);
    set_enum(cfg, "mode", mode);
    return cfg;
}

/* [rows, 7, 3] weights, N(0,1)-ish with a per-row scale and one outlier; row `zero_row` all zeros. */
static qh_tensor *make_weights(int64_t rows, int zero_row, uint64_t seed)
{
    int64_t shape[3] = {rows, 7, 3};
    qh_tensor *w = qh_tensor_new(QH_F32, 3, shape, NULL);
    assert_non_null(w);
    qh_rng r;
    qh_rng_seed(&r, seed);
    float *x = qh_tensor_f32(w);
    for (int64_t g = 0; g < rows; g++)
        for (int64_t i = 0; i < 21; i++)
            x[g * 21 + i] = g == zero_row ? 0.0f : (float)(qh_rng_normal(&r) * (0.1 + (double)g));
    if (rows > 1 && zero_row != 1)
        x[21 + 5] = 9.0f; /* an outlier in row 1 */
    return w;
}

static qh_status quantize(void *cfg, const qh_tensor *w, test_qrun *out, qh_error *err)
{
    return test_quantize(desc, cfg, w, out, err);
}

/* Closed-form grid of one group, in double; returns scale, zero and the code range. */
static void expected_grid(const float *w, int64_t n, int bits, int asym, double *scale, int *zero, int *qmin,
                          int *qmax)
{
    double lo = 0, hi = 0, amax = 0;
    for (int64_t i = 0; i < n; i++) {
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
        amax = fmax(amax, fabs(w[i]));
    }
    if (asym) {
        *qmin = 0;
        *qmax = (1 << bits) - 1;
        *scale = (hi - lo) / *qmax;
        *zero = *scale > 0 ? (int)lround(-lo / *scale) : 0;
    } else {
        *qmax = (1 << (bits - 1)) - 1;
        *qmin = -*qmax;
        *scale = amax / *qmax;
        *zero = 0;
    }
    if (*scale == 0)
        *scale = 1;
}

static void check_result(const qh_tensor *w, const test_qrun *r, int bits, int channel, int asym)
{
    int64_t n = qh_tensor_numel(w), groups = channel ? w->shape[0] : 1, len = n / groups;
    const qh_qtensor *q = &r->q;
    assert_int_equal(q->bits, bits);
    assert_int_equal(q->gran, channel ? QH_QG_CHANNEL : QH_QG_TENSOR);
    assert_int_equal(q->codes->dtype, asym ? QH_U8 : QH_I8);
    assert_int_equal(qh_tensor_numel(q->scale), groups);
    assert_int_equal(qh_qtensor_groups(q, w), groups);
    if (asym)
        assert_int_equal(qh_tensor_numel(q->zero), groups);
    else
        assert_null(q->zero);
    const float *x = qh_tensor_f32(w), *y = qh_tensor_f32(r->deq), *s = qh_tensor_f32(q->scale);
    for (int64_t g = 0; g < groups; g++) {
        double scale;
        int zero, qmin, qmax;
        expected_grid(x + g * len, len, bits, asym, &scale, &zero, &qmin, &qmax);
        assert_float_equal(s[g], scale, scale * 1e-6);
        if (asym)
            assert_int_equal(((int32_t *)q->zero->data)[g], zero);
        for (int64_t i = g * len; i < (g + 1) * len; i++) {
            int code = asym ? ((uint8_t *)q->codes->data)[i] : ((int8_t *)q->codes->data)[i];
            assert_true(code >= qmin && code <= qmax);
            /* Round to nearest: within half a step, up to float rounding of the product. */
            double e = fabs((double)x[i] - (double)y[i]);
            assert_true(e <= 0.5 * s[g] * (1 + 1e-5) + 1e-7 * fabs(x[i]));
        }
    }
    test_check_decoder(r);
}

/* What the thread checks compare. */
#define DEQ_CODES_SCALE (TEST_SAME_DEQ | TEST_SAME_CODES | TEST_SAME_SCALE)

static void test_all_grids(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(5, 3, 7);
    for (int bits = 2; bits <= 8; bits++)
        for (int channel = 0; channel < 2; channel++)
            for (int asym = 0; asym < 2; asym++) {
                void *cfg = make_cfg(bits, channel ? "channel" : "tensor", asym ? "asymmetric" : "symmetric");
                test_qrun r = test_quantize_ok(quantize, cfg, w);
                check_result(w, &r, bits, channel, asym);
                test_qrun_free(&r);
                free(cfg);
            }
    qh_tensor_free(w);
}

/* Symmetric: the largest |w| maps to +-qmax exactly (the restricted range never uses -2^(b-1)). */
static void test_symmetric_extremes(void **state)
{
    (void)state;
    float v[8] = {-7.0f, 2.5f, -2.5f, 0.0f, /* scale 1: exact halves */
                  0.1f, 0.3f, 3.0f, -0.2f};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){2, 4}, v);
    void *cfg = make_cfg(4, "channel", "symmetric");
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    const int8_t *c = r.q.codes->data;
    assert_true(qh_tensor_f32(r.q.scale)[0] == 1.0f);
    assert_true(qh_tensor_f32(r.q.scale)[1] == 3.0f / 7.0f);
    assert_int_equal(c[0], -7);
    assert_int_equal(c[1], 3);  /* 2.5: half away from zero */
    assert_int_equal(c[2], -3); /* -2.5 likewise */
    assert_int_equal(c[3], 0);
    assert_int_equal(c[4], 0);  /* 0.1 / (3/7) = 0.23 */
    assert_int_equal(c[5], 1);  /* 0.3 / (3/7) = 0.7 */
    assert_int_equal(c[6], 7);
    assert_int_equal(c[7], 0);  /* -0.2 / (3/7) = -0.47 */
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Asymmetric: the range is stretched to include 0, and 0 (and the zero point) decode to exactly 0. */
static void test_asymmetric_zero_exact(void **state)
{
    (void)state;
    float v[18] = {0.3f, 0.7f, 0.0f, 1.0f, 0.45f, 0.9f,        /* all >= 0: zero point 0 */
                   -0.8f, -0.1f, 0.0f, -0.33f, -0.5f, -0.01f,  /* all <= 0: zero point qmax */
                   -0.37f, 0.0f, 1.3f, 0.77f, -0.05f, 0.0f};   /* both signs */
    qh_tensor *w = test_tensor_from(2, (int64_t[]){3, 6}, v);
    for (int bits = 2; bits <= 8; bits++) {
        void *cfg = make_cfg(bits, "channel", "asymmetric");
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        const int32_t *z = r.q.zero->data;
        const uint8_t *c = r.q.codes->data;
        int qmax = (1 << bits) - 1;
        assert_int_equal(z[0], 0);
        assert_int_equal(z[1], qmax);
        assert_in_range(z[2], 1, qmax - 1);
        const float *y = qh_tensor_f32(r.deq);
        for (int i = 0; i < 18; i++)
            if (v[i] == 0.0f) {
                assert_true(y[i] == 0.0f);
                assert_int_equal(c[i], z[i / 6]);
            }
        assert_int_equal(c[3], qmax); /* the maximum of row 0 is the top code */
        assert_int_equal(c[6], 0);    /* the minimum of row 1 is the bottom code */
        check_result(w, &r, bits, 1, 1);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_zero_channel(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(4, 2, 11);
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(8, "channel", asym ? "asymmetric" : "symmetric");
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        assert_true(qh_tensor_f32(r.q.scale)[2] == 1.0f);
        const uint8_t *c = r.q.codes->data; /* one byte per code in both modes */
        for (int i = 2 * 21; i < 3 * 21; i++) {
            assert_int_equal(c[i], 0);
            assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
        }
        if (asym)
            assert_int_equal(((int32_t *)r.q.zero->data)[2], 0);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_threads_identical(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(97, -1, 3);
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(5, "channel", asym ? "asymmetric" : "symmetric");
        test_assert_threads_identical(quantize, cfg, w, DEQ_CODES_SCALE);
        free(cfg);
    }
    qh_tensor_free(w);
}

static void test_rejects(void **state)
{
    (void)state;
    qh_tensor *w = make_weights(3, -1, 5);
    void *cfg = make_cfg(8, "channel", "symmetric");
    qh_error err = {{0}};
    qh_tensor_f32(w)[10] = NAN;
    /* named by the plugin; nothing allocated on failure */
    test_expect_reject(quantize, cfg, w, "element 10", TEST_REJ_NAMED | TEST_REJ_NO_CODES, &err);
    qh_tensor_f32(w)[10] = 0.0f;
    test_set_int(desc, cfg, "bits", 17);
    test_expect_reject(quantize, cfg, w, "bits = 17", 0, &err);
    test_set_int(desc, cfg, "bits", 1);
    test_expect_reject(quantize, cfg, w, "bits = 1", 0, &err);
    test_set_int(desc, cfg, "bits", 8);
    set_enum(cfg, "mode", "seed001");
    set_enum(cfg, "rounding", "stochastic");
    test_expect_reject(quantize, cfg, w, "seed001", 0, &err);
    set_enum(cfg, "mode", "symmetric");
    set_enum(cfg, "granularity", "block");
    test_set_int(desc, cfg, "block_size", 0);
    test_expect_reject(quantize, cfg, w, "block_size", 0, &err);
    free(cfg);
    qh_tensor_free(w);
}

static void test_descriptor(void **state)
{
    (void)state;
    const qh_library *lib = test_plugin_library(PLUGIN_LINEAR);
    assert_string_equal(lib->name, "qhost-quantizer-linear");
    assert_string_equal(lib->license, "MIT");
    assert_true(test_params_documented(desc));
    const qh_param *bits = test_param(desc, "bits");
    assert_int_equal(bits->def.i, 8);
    assert_true(bits->min == 2 && bits->max == 16);
    assert_int_equal(test_param(desc, "block_size")->def.i, 64);
    assert_string_equal(test_param(desc, "rounding")->choices[test_param(desc, "rounding")->def.i], "nearest");
    assert_string_equal(test_param(desc, "range")->choices[test_param(desc, "range")->def.i], "minmax");
    assert_string_equal(test_param(desc, "granularity")->choices[test_param(desc, "granularity")->def.i],
                        "channel");
    assert_string_equal(test_param(desc, "mode")->choices[test_param(desc, "mode")->def.i], "symmetric");
}

/* ------------------------------------------------------------ 1.1: blocks, 16 bits, rounding, ranges */

/* Group g's range [start, start + len) computed here from the definition (rows of `cols`, blocks
 * of `block` with a shorter last block). gran: 0 tensor, 1 channel, 2 block. */
static void ref_group(const qh_tensor *w, int gran, int64_t block, int64_t g, int64_t *start, int64_t *len)
{
    int64_t n = qh_tensor_numel(w), cols = w->shape[w->ndim - 1];
    if (gran == 0) {
        *start = 0;
        *len = n;
    } else if (gran == 1) {
        *len = n / w->shape[0];
        *start = g * *len;
    } else {
        int64_t per_row = (cols + block - 1) / block, b = g % per_row;
        *start = g / per_row * cols + b * block;
        *len = cols - b * block < block ? cols - b * block : block;
    }
}

static int64_t ref_groups(const qh_tensor *w, int gran, int64_t block)
{
    int64_t cols = w->shape[w->ndim - 1];
    return gran == 0 ? 1 : gran == 1 ? w->shape[0] : qh_tensor_numel(w) / cols * ((cols + block - 1) / block);
}

static void check_generic(const qh_tensor *w, const test_qrun *r, int bits, int gran, int64_t block, int asym)
{
    const qh_qtensor *q = &r->q;
    int64_t groups = ref_groups(w, gran, block);
    qh_dtype want = bits <= 8 ? (asym ? QH_U8 : QH_I8) : (asym ? QH_U16 : QH_I16);
    assert_int_equal(q->codes->dtype, want);
    assert_int_equal(q->gran, gran == 0 ? QH_QG_TENSOR : gran == 1 ? QH_QG_CHANNEL : QH_QG_BLOCK);
    if (gran == 2)
        assert_int_equal(q->block, block);
    assert_int_equal(qh_tensor_numel(q->scale), groups);
    assert_int_equal(qh_qtensor_groups(q, w), groups);
    const float *x = qh_tensor_f32(w), *y = qh_tensor_f32(r->deq), *s = qh_tensor_f32(q->scale);
    for (int64_t g = 0; g < groups; g++) {
        int64_t start, len;
        ref_group(w, gran, block, g, &start, &len);
        double scale;
        int zero, qmin, qmax;
        expected_grid(x + start, len, bits, asym, &scale, &zero, &qmin, &qmax);
        assert_float_equal(s[g], scale, scale * 1e-6);
        if (asym)
            assert_int_equal(((int32_t *)q->zero->data)[g], zero);
        for (int64_t i = start; i < start + len; i++) {
            int64_t code = test_code_at(q->codes, i);
            assert_true(code >= qmin && code <= qmax);
            assert_true(fabs((double)x[i] - (double)y[i]) <= 0.5 * s[g] * (1 + 1e-5) + 1e-7 * fabs(x[i]));
        }
    }
    test_check_decoder(r);
}

/* Gaussian weights whose spread cycles with period 7 along the flat order. */
static double cycle_sd(int64_t i, int64_t cols)
{
    (void)cols;
    return 0.05 + 0.01 * (double)(i % 7);
}

static qh_tensor *make_matrix(int64_t rows, int64_t cols, uint64_t seed)
{
    return test_gaussian(2, (int64_t[]){rows, cols}, seed, 0, cycle_sd);
}

/* Every granularity (blocks that divide the row, that do not, and that exceed it) at 2..16 bits. */
static void test_blocks_and_wide_codes(void **state)
{
    (void)state;
    qh_tensor *w = make_matrix(6, 10, 21);
    static const char *const grans[] = {"tensor", "channel", "block"};
    static const int64_t blocks[] = {4, 5, 16};
    static const int bit_list[] = {2, 5, 8, 9, 12, 16};
    for (size_t b = 0; b < sizeof bit_list / sizeof bit_list[0]; b++)
        for (int gran = 0; gran < 3; gran++)
            for (int k = 0; k < (gran == 2 ? 3 : 1); k++)
                for (int asym = 0; asym < 2; asym++) {
                    void *cfg = make_cfg(bit_list[b], grans[gran], asym ? "asymmetric" : "symmetric");
                    test_set_int(desc, cfg, "block_size", blocks[k]);
                    test_qrun r = test_quantize_ok(quantize, cfg, w);
                    check_generic(w, &r, bit_list[b], gran, blocks[k], asym);
                    test_qrun_free(&r);
                    free(cfg);
                }
    qh_tensor_free(w);
}

/* Half-way values round away from zero exactly as roundf, including the neighbours of halves. */
static void test_round_half_away(void **state)
{
    (void)state;
    int64_t shape[2] = {1, 4 * 254 + 1};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    float *x = qh_tensor_f32(w);
    int64_t n = 0;
    x[n++] = 127.0f; /* amax 127, qmax 127: scale exactly 1 */
    for (int i = -127; i < 127; i++) {
        float h = (float)i + 0.5f;
        x[n++] = h;
        x[n++] = nextafterf(h, 0.0f);
        x[n++] = nextafterf(h, h > 0 ? 1e9f : -1e9f);
        x[n++] = (float)i + 0.25f;
    }
    void *cfg = make_cfg(8, "tensor", "symmetric");
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    assert_true(qh_tensor_f32(r.q.scale)[0] == 1.0f);
    for (int64_t i = 0; i < n; i++) {
        float want = fminf(fmaxf(roundf(x[i]), -127.0f), 127.0f);
        assert_int_equal(((int8_t *)r.q.codes->data)[i], (int)want);
    }
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* Stochastic rounding: codes are floor or ceil of w / scale, the same for 1 and 2 threads and for
 * a repeated run, different for another seed, and unbiased on average. */
static void test_stochastic(void **state)
{
    (void)state;
    /* 3 x 70000: more than one 64 Ki work range in the single-group (tensor) case */
    qh_tensor *w = make_matrix(3, 70000, 5);
    static const char *const grans[] = {"tensor", "channel", "block"};
    for (int gran = 0; gran < 3; gran++) {
        void *cfg = make_cfg(4, grans[gran], "asymmetric");
        set_enum(cfg, "rounding", "stochastic");
        test_set_int(desc, cfg, "seed", 42);
        test_qrun a = test_quantize_threads(quantize, cfg, w, 1);
        test_qrun b = test_quantize_threads(quantize, cfg, w, 2);
        test_assert_same(&a, &b, DEQ_CODES_SCALE);
        test_set_int(desc, cfg, "seed", 43);
        test_qrun c = test_quantize_threads(quantize, cfg, w, 2);
        assert_memory_not_equal(a.q.codes->data, c.q.codes->data, qh_tensor_nbytes(a.q.codes));
        const float *x = qh_tensor_f32(w), *y = qh_tensor_f32(a.deq);
        double bias = 0.0;
        int64_t n = qh_tensor_numel(w), up = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t start, len, g = gran == 0 ? 0 : gran == 1 ? i / 70000 : i / 64; /* rows hold 70000 = whole blocks + 48 */
            if (gran == 2)
                g = (i / 70000) * ((70000 + 63) / 64) + (i % 70000) / 64;
            ref_group(w, gran, 64, g, &start, &len);
            assert_true(i >= start && i < start + len);
            float s = qh_tensor_f32(a.q.scale)[g];
            double e = (double)y[i] - (double)x[i];
            assert_true(fabs(e) <= s * (1 + 1e-5)); /* within one step */
            bias += e;
            up += e > 0;
        }
        /* |mean error| far below a step (deterministic: fixed seed) */
        assert_true(fabs(bias / (double)n) < 0.01 * qh_tensor_f32(a.q.scale)[0]);
        assert_true(up > n / 4 && up < 3 * n / 4);
        test_check_decoder(&a);
        test_qrun_free(&a);
        test_qrun_free(&b);
        test_qrun_free(&c);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* numpy's percentile (linear interpolation) of v[0..n), computed by sorting a copy. */
static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double ref_percentile(const float *v, int64_t n, double p)
{
    float *s = malloc(sizeof(float) * (size_t)n);
    memcpy(s, v, sizeof(float) * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_f);
    double pos = p / 100.0 * (double)(n - 1);
    int64_t k = (int64_t)pos;
    double r = k + 1 < n ? s[k] + (pos - (double)k) * (s[k + 1] - s[k]) : s[n - 1];
    free(s);
    return r;
}

static void test_percentile_range(void **state)
{
    (void)state;
    qh_tensor *w = make_matrix(4, 501, 9);
    float *x = qh_tensor_f32(w);
    x[7] = 5.0f; /* outliers the percentile clips */
    x[600] = -4.0f;
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(6, "channel", asym ? "asymmetric" : "symmetric");
        set_enum(cfg, "range", "percentile");
        test_set_double(desc, cfg, "percentile", 99.0);
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        for (int g = 0; g < 4; g++) {
            const float *row = x + g * 501;
            double scale;
            if (asym) {
                double lo = fmin(ref_percentile(row, 501, 1.0), 0), hi = fmax(ref_percentile(row, 501, 99.0), 0);
                scale = (hi - lo) / 63.0;
                assert_int_equal(((int32_t *)r.q.zero->data)[g], (int)lround(-lo / scale));
            } else {
                float a[501];
                for (int i = 0; i < 501; i++)
                    a[i] = fabsf(row[i]);
                scale = ref_percentile(a, 501, 99.0) / 31.0;
            }
            assert_float_equal(qh_tensor_f32(r.q.scale)[g], scale, scale * 1e-5);
        }
        /* the outliers are clipped to the end codes */
        assert_int_equal(test_code_at(r.q.codes, 7), asym ? 63 : 31);
        assert_int_equal(test_code_at(r.q.codes, 600), asym ? 0 : -31);
        test_qrun_free(&r);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* The MSE search against a brute-force search written here from the definition. */
static double ref_sse(const float *x, int64_t n, double amax_or_lo, double hi, int bits, int asym, float *scale_out)
{
    float scale;
    int32_t zero = 0, qmin, qmax;
    if (asym) {
        qmin = 0;
        qmax = (1 << bits) - 1;
        scale = ((float)hi - (float)amax_or_lo) / (float)qmax;
        zero = (int32_t)fminf(fmaxf(roundf(-(float)amax_or_lo / scale), 0.0f), (float)qmax);
    } else {
        qmax = (1 << (bits - 1)) - 1;
        qmin = -qmax;
        scale = (float)amax_or_lo / (float)qmax;
    }
    double sse = 0;
    for (int64_t i = 0; i < n; i++) {
        float c = fminf(fmaxf(roundf(x[i] / scale) + (float)zero, (float)qmin), (float)qmax);
        double d = (double)x[i] - (double)(scale * (c - (float)zero));
        sse += d * d;
    }
    *scale_out = scale;
    return sse;
}

static void test_mse_range(void **state)
{
    (void)state;
    qh_tensor *w = make_matrix(3, 400, 13);
    float *x = qh_tensor_f32(w);
    x[5] = 3.0f; /* an outlier makes clipping worthwhile */
    for (int asym = 0; asym < 2; asym++) {
        void *cfg = make_cfg(3, "channel", asym ? "asymmetric" : "symmetric");
        set_enum(cfg, "range", "mse");
        test_qrun r = test_quantize_ok(quantize, cfg, w);
        set_enum(cfg, "range", "minmax");
        test_qrun mm = test_quantize_ok(quantize, cfg, w);
        for (int g = 0; g < 3; g++) {
            const float *row = x + g * 400;
            float lo = 0, hi = 0;
            for (int i = 0; i < 400; i++) {
                lo = fminf(lo, row[i]);
                hi = fmaxf(hi, row[i]);
            }
            double best = INFINITY;
            float best_scale = 0;
            for (int k = 0; k < 100; k++) {
                float rr = (float)(1.0 - 0.5 * k / 99.0), s;
                double e = asym ? ref_sse(row, 400, lo * rr, hi * rr, 3, 1, &s)
                                : ref_sse(row, 400, fmaxf(-lo, hi) * rr, 0, 3, 0, &s);
                if (e < best) {
                    best = e;
                    best_scale = s;
                }
            }
            assert_true(qh_tensor_f32(r.q.scale)[g] == best_scale);
            double got = 0, base = 0;
            for (int i = 0; i < 400; i++) {
                double d = (double)row[i] - qh_tensor_f32(r.deq)[g * 400 + i];
                double e = (double)row[i] - qh_tensor_f32(mm.deq)[g * 400 + i];
                got += d * d;
                base += e * e;
            }
            assert_float_equal(got, best, best * 1e-9);
            assert_true(got <= base);
        }
        /* 3-bit grids of Gaussian rows gain from clipping (the outlier row keeps it, too costly to clip) */
        assert_true(qh_tensor_f32(r.q.scale)[1] < qh_tensor_f32(mm.q.scale)[1]);
        assert_true(qh_tensor_f32(r.q.scale)[2] < qh_tensor_f32(mm.q.scale)[2]);
        test_qrun_free(&r);
        test_qrun_free(&mm);
        free(cfg);
    }
    qh_tensor_free(w);
}

/* Seed 001's quantize_requantize written again from seeds.md 2.2 for int8 (b bits in general):
 * S = (t_max - t_min) / (max W - min W) in float32; q = W * S cast to the b-bit integer type
 * (truncation toward zero, wrapping on overflow, as torch on x86: int32 truncation, low bits kept);
 * dequantized = q / S. */
static void seed_reference(const float *x, int64_t n, int bits, int32_t *codes, float *deq)
{
    float mx = x[0], mn = x[0];
    for (int64_t i = 1; i < n; i++) {
        mx = x[i] > mx ? x[i] : mx;
        mn = x[i] < mn ? x[i] : mn;
    }
    float t_range = (float)((1 << (bits - 1)) - 1) - (float)(-(1 << (bits - 1)));
    float S = t_range / (mx - mn);
    for (int64_t i = 0; i < n; i++) {
        int32_t t = (int32_t)(x[i] * S);                  /* C's float -> int conversion truncates */
        int32_t m = t & ((1 << bits) - 1);                /* keep the low bits ... */
        codes[i] = m >= (1 << (bits - 1)) ? m - (1 << bits) : m; /* ... as two's complement */
        deq[i] = (float)codes[i] / S;
    }
}

static void test_seed001(void **state)
{
    (void)state;
    int64_t shape[2] = {3, 50};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL);
    float *x = qh_tensor_f32(w);
    qh_rng rng;
    qh_rng_seed(&rng, 3);
    for (int i = 0; i < 150; i++)
        x[i] = (float)qh_rng_normal(&rng) * 0.1f;
    for (int i = 100; i < 150; i++)
        x[i] = fabsf(x[i]) + 0.01f; /* row 2 all positive: max * S > 127 wraps, as in the seed */
    static const char *const grans[] = {"tensor", "channel"};
    for (int gran = 0; gran < 2; gran++)
        for (int bits = 2; bits <= 16; bits += 2) {
            void *cfg = make_cfg(bits, grans[gran], "seed001");
            test_qrun r = test_quantize_ok(quantize, cfg, w);
            assert_null(r.q.zero);
            assert_int_equal(r.q.codes->dtype, bits <= 8 ? QH_I8 : QH_I16);
            int64_t groups = gran ? 3 : 1, len = 150 / groups;
            int wrapped = 0;
            for (int64_t g = 0; g < groups; g++) {
                int32_t codes[150];
                float deq[150];
                seed_reference(x + g * len, len, bits, codes, deq);
                for (int64_t i = 0; i < len; i++) {
                    int64_t k = g * len + i;
                    assert_int_equal(test_code_at(r.q.codes, k), codes[i]);
                    /* stored as code * (1 / S): within two ulps of code / S */
                    float got = qh_tensor_f32(r.deq)[k];
                    assert_true(fabsf(got - deq[i]) <= 2.0f * fabsf(deq[i]) * FLT_EPSILON);
                    wrapped += (deq[i] < 0) != (x[k] < 0) && codes[i] != 0;
                }
            }
            if (gran == 1 && bits == 8)
                assert_true(wrapped > 0); /* the seed's overflow is reproduced, not fixed */
            test_qrun_free(&r);
            free(cfg);
        }
    qh_tensor_free(w);
}

/* The seed's NaN on a constant (e.g. all-zero) group is not reproduced: finite, exact zeros. */
static void test_seed001_degenerate(void **state)
{
    (void)state;
    float v[8] = {0, 0, 0, 0, 0.25f, 0.25f, 0.25f, 0.25f};
    qh_tensor *w = test_tensor_from(2, (int64_t[]){2, 4}, v);
    void *cfg = make_cfg(8, "channel", "seed001");
    test_qrun r = test_quantize_ok(quantize, cfg, w);
    for (int i = 0; i < 8; i++)
        assert_true(isfinite(qh_tensor_f32(r.deq)[i]));
    for (int i = 0; i < 4; i++)
        assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
    /* constant 0.25: range [-0.25, 0.25], S = 255 / 0.5, code trunc(127.5) = 127 */
    assert_int_equal(test_code_at(r.q.codes, 4), 127);
    assert_float_equal(qh_tensor_f32(r.deq)[4], 0.25 * 127 / 127.5, 1e-7);
    test_qrun_free(&r);
    free(cfg);
    qh_tensor_free(w);
}

/* lin_run's reference loops (fast = 0) and fast ones, byte for byte, with 1 and 2 threads, with and
 * without the dequantized output. */
typedef struct lin_case {
    const linear_cfg *cfg;
    const qh_tensor *w;
    qh_dtype dt;
} lin_case;

static void lin_path(void *ctx, int fast, void *const *out)
{
    const lin_case *k = ctx;
    lin_out o = {out[0], k->dt, out[1], k->cfg->mode == LIN_MODE_ASYMMETRIC ? out[2] : NULL, out[3]};
    assert_int_equal(lin_run(k->cfg, k->w, &o, fast) >= 0, 1);
}

static void compare_paths(const linear_cfg *cfg, const qh_tensor *w)
{
    size_t n = (size_t)qh_tensor_numel(w);
    lin_layout l = lin_make_layout(cfg, w);
    lin_case k = {cfg, w, lin_code_dtype(cfg)};
    size_t cs = qh_dtype_size(k.dt) * n, gs = (size_t)(l.groups > 0 ? l.groups : 1);
    const test_path_out spec[4] = {
        {cs + 1, cs, 0},
        {gs * sizeof(float), gs * sizeof(float), 0},
        {gs * sizeof(int32_t), gs * sizeof(int32_t), 0},
        {(n + 1) * sizeof(float), n * sizeof(float), 1},
    };
    test_compare_paths(lin_path, &k, spec, 4);
}

static void test_fast_matches_reference(void **state)
{
    (void)state;
    qh_tensor *w = make_matrix(37, 301, 31); /* rows not a multiple of 32 elements */
    float *x = qh_tensor_f32(w);
    for (int i = 0; i < 301; i++) /* row 0: exact halfway values at scale 1 (amax 127), and -0 */
        x[i] = i == 0 ? 127.0f : i == 1 ? -0.0f : (float)(i % 255 - 127) + (i % 2 ? 0.5f : -0.5f);
    for (int i = 301; i < 602; i++) /* row 1: all zeros */
        x[i] = 0.0f;
    static const int bits[] = {2, 5, 8, 12, 16};
    static const int64_t blocks[] = {64, 7, 1, 1000};
    for (int gran = LIN_GRAN_TENSOR; gran <= LIN_GRAN_BLOCK; gran++)
        for (int mode = LIN_MODE_SYMMETRIC; mode <= LIN_MODE_SEED001; mode++)
            for (int b = 0; b < 5; b++)
                for (int k = 0; k < (gran == LIN_GRAN_BLOCK ? 4 : 1); k++) {
                    linear_cfg cfg = {bits[b], gran, mode, blocks[k], LIN_ROUND_NEAREST, LIN_RANGE_MINMAX, 99.9, 0};
                    compare_paths(&cfg, w);
                    if (mode != LIN_MODE_SEED001 && k == 0 && (b == 1 || b == 2)) {
                        cfg.range = LIN_RANGE_MSE;
                        compare_paths(&cfg, w);
                        cfg.range = LIN_RANGE_PERCENTILE;
                        compare_paths(&cfg, w);
                    }
                }
    qh_tensor_free(w);
    /* larger than QQ_NT_MIN: the dequantized values are streamed past the cache */
    qh_tensor *big = make_matrix(2, 1100003, 32);
    for (int gran = LIN_GRAN_TENSOR; gran <= LIN_GRAN_BLOCK; gran++) {
        linear_cfg cfg = {8, gran, LIN_MODE_ASYMMETRIC, 4096, LIN_ROUND_NEAREST, LIN_RANGE_MINMAX, 99.9, 0};
        compare_paths(&cfg, big);
    }
    qh_tensor_free(big);
}

/* Every option combination gives the same bits on 1 and 2 threads. */
static void test_threads_all_options(void **state)
{
    (void)state;
    qh_tensor *w = make_matrix(2, 70001, 17); /* a single-group tensor spans several work ranges */
    static const char *const grans[] = {"tensor", "channel", "block"};
    static const char *const ranges[] = {"minmax", "percentile", "mse"};
    static const char *const modes[] = {"symmetric", "asymmetric"};
    for (int gran = 0; gran < 3; gran++)
        for (int rg = 0; rg < 3; rg++)
            for (int m = 0; m < 2; m++)
                for (int sr = 0; sr < 2; sr++) {
                    void *cfg = make_cfg(5, grans[gran], modes[m]);
                    set_enum(cfg, "range", ranges[rg]);
                    set_enum(cfg, "rounding", sr ? "stochastic" : "nearest");
                    test_set_int(desc, cfg, "block_size", 100);
                    test_assert_threads_identical(quantize, cfg, w, DEQ_CODES_SCALE);
                    free(cfg);
                }
    qh_tensor_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_all_grids),
        cmocka_unit_test(test_symmetric_extremes),
        cmocka_unit_test(test_asymmetric_zero_exact),
        cmocka_unit_test(test_zero_channel),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_blocks_and_wide_codes),
        cmocka_unit_test(test_round_half_away),
        cmocka_unit_test(test_stochastic),
        cmocka_unit_test(test_percentile_range),
        cmocka_unit_test(test_mse_range),
        cmocka_unit_test(test_seed001),
        cmocka_unit_test(test_seed001_degenerate),
        cmocka_unit_test(test_threads_all_options),
        cmocka_unit_test(test_fast_matches_reference),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
