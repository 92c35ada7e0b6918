/* test_gpfq_plugin.c - the gpfq plugin through its vtable: parameters documented, what it accepts
 * and asks for, bad combinations refused by create(), quantize_calib's output (codes, step, bits,
 * the L0 code book) decoding exactly to the dequantized weights, its codes equal to the loop run
 * directly, pruned weights kept at 0, the data-free path as plain rounding, and GPFQ's output error
 * below rounding's on the same alphabet. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../plugins/plugin_util.h"
#include "calib_test.h"
#include "gpfq_impl.h"

static const qh_plugin_desc *desc;

static int setup(void **state)
{
    (void)state;
    desc = test_plugin_desc(PLUGIN_GPFQ, QH_KIND_QUANTIZER, "gpfq");
    return desc ? 0 : -1;
}

static const qh_quantizer_ops *ops(void)
{
    return desc->ops.quantizer;
}

/* A layer with X~ = X + noise (the network before it slightly quantized). */
typedef struct data {
    qh_tensor *w;
    float *x, *xq;
    int64_t n, d, m;
} data;

static data make_data(int64_t n, int64_t d, int64_t m, uint64_t seed)
{
    data s = {NULL, malloc(sizeof(float) * (size_t)(m * d)), malloc(sizeof(float) * (size_t)(m * d)), n, d, m};
    int64_t shape[2] = {n, d};
    s.w = qh_tensor_new(QH_F32, 2, shape, NULL);
    qh_tensor_set_name(s.w, "fc.weight");
    qh_rng r;
    qh_rng_seed(&r, seed);
    for (int64_t i = 0; i < n * d; i++)
        qh_tensor_f32(s.w)[i] = (float)(0.2 * qh_rng_normal(&r));
    for (int64_t i = 0; i < m * d; i++) {
        double v = qh_rng_normal(&r);
        s.x[i] = (float)(v > 0 ? v : 0.0);
        s.xq[i] = s.x[i] + (float)(0.02 * qh_rng_normal(&r));
    }
    return s;
}

static void data_free(data *s)
{
    qh_tensor_free(s->w);
    free(s->x);
    free(s->xq);
}

static qh_calib_layer layer_of(const data *s, const uint8_t *mask)
{
    qh_calib_layer c = {.struct_size = sizeof c,
                        .name = "fc.weight",
                        .w = s->w,
                        .rows = s->n,
                        .cols = s->d,
                        .m = s->m,
                        .x = s->x,
                        .xq = s->xq,
                        .index = 3,
                        .mask = mask};
    return c;
}

/* ||X W^T - X~ Q^T||_F / ||X W^T||_F in double. */
static double rel_error(const data *s, const float *q)
{
    double num = 0.0, den = 0.0;
    const float *w = qh_tensor_f32(s->w);
    for (int64_t i = 0; i < s->m; i++)
        for (int64_t k = 0; k < s->n; k++) {
            double y = 0.0, yq = 0.0;
            for (int64_t t = 0; t < s->d; t++) {
                y += (double)s->x[i * s->d + t] * w[k * s->d + t];
                yq += (double)s->xq[i * s->d + t] * q[k * s->d + t];
            }
            num += (y - yq) * (y - yq);
            den += y * y;
        }
    return sqrt(num / den);
}

/* deq must equal the host's reference decoder on q, bit for bit. */
static void expect_decodes(const test_qrun *r)
{
    qh_tensor *dec = qh_tensor_new(QH_F32, r->deq->ndim, r->deq->shape, NULL);
    qh_error err;
    assert_int_equal(qh_qtensor_dequantize(&r->q, dec, &err), QH_OK);
    assert_memory_equal(dec->data, r->deq->data, qh_tensor_nbytes(dec));
    qh_tensor_free(dec);
}

/* An instance of cfg (the host creates one per stage). */
static void *instance(void *cfg)
{
    void *st = NULL;
    qh_error err;
    if (ops()->create(cfg, &st, &err) != QH_OK)
        fail_msg("create: %s", err.msg);
    return st;
}

static qh_status calib_run(void *cfg, const qh_calib_layer *c, test_qrun *r, qh_error *err)
{
    memset(r, 0, sizeof *r);
    r->deq = qh_tensor_new(QH_F32, c->w->ndim, c->w->shape, NULL);
    void *st = NULL;
    qh_status rc = ops()->create(cfg, &st, err);
    if (rc == QH_OK) {
        rc = ops()->quantize_calib(st, c, &r->q, r->deq, err);
        ops()->destroy(st);
    }
    return rc;
}

static qh_status free_run(void *cfg, const qh_tensor *w, test_qrun *r, qh_error *err)
{
    void *st = instance(cfg);
    qh_status rc = test_quantize(desc, st, w, r, err);
    ops()->destroy(st);
    return rc;
}

static void test_descriptor(void **state)
{
    (void)state;
    assert_true(test_params_documented(desc));
    assert_non_null(ops()->calib_needs);
    assert_non_null(ops()->quantize_calib);
    void *cfg = test_config_defaults(desc), *st = instance(cfg);
    int64_t shape[2] = {4, 4}, one[1] = {4};
    qh_tensor *w = qh_tensor_new(QH_F32, 2, shape, NULL), *b = qh_tensor_new(QH_F32, 1, one, NULL);
    assert_int_equal(ops()->calib_needs(st, "fc1.weight", w), QH_CALIB_X | QH_CALIB_XQ);
    ops()->destroy(st);
    test_set_int(desc, cfg, "data_free", 1);
    test_set_str(desc, cfg, "skip", "fc*, conv2.*");
    st = instance(cfg);
    assert_int_equal(ops()->calib_needs(st, "fc1.weight", w), 0u);
    assert_false(ops()->accepts(st, "fc1.weight", w));
    assert_false(ops()->accepts(st, "conv2.weight", w));
    assert_true(ops()->accepts(st, "conv1.weight", w));
    assert_false(ops()->accepts(st, "conv1.bias", b)); /* rank 1 */
    ops()->destroy(st);
    qh_tensor_free(w);
    qh_tensor_free(b);
    free(cfg);
}

static void expect_create_error(const char *key, int64_t v, const char *key2, int64_t v2, const char *msg)
{
    void *cfg = test_config_defaults(desc), *st;
    test_set_int(desc, cfg, key, v);
    if (key2)
        test_set_int(desc, cfg, key2, v2);
    qh_error err = {{0}};
    assert_int_equal(ops()->create(cfg, &st, &err), QH_E_INVAL);
    assert_string_equal(err.msg, msg);
    free(cfg);
}

static void test_create_refuses(void **state)
{
    (void)state;
    expect_create_error("bits", 0, NULL, 0, "bits = 0 outside [1, 12]");
    expect_create_error("bits", 1, "levels", GPFQ_LEVELS_STRICT,
                        "levels = strict needs bits >= 2 (1 bit leaves only the level 0)");
    expect_create_error("stochastic", 1, "regularizer", GPFQ_REG_L1,
                        "stochastic rounding works with regularizer = none only (as in the reference)");
    void *cfg = test_config_defaults(desc), *st;
    qh_error err;
    assert_int_equal(ops()->create(cfg, &st, &err), QH_OK);
    ops()->destroy(st);
    free(cfg);
}

static void test_calib_output(void **state)
{
    (void)state;
    data s = make_data(5, 12, 64, 1);
    void *cfg = test_config_defaults(desc); /* 4 bits, C = 1.16, percentile 1 */
    qh_calib_layer c = layer_of(&s, NULL);
    test_qrun r;
    qh_error err;
    assert_int_equal(calib_run(cfg, &c, &r, &err), QH_OK);
    assert_int_equal(r.q.bits, 5);
    assert_int_equal(r.q.gran, QH_QG_TENSOR);
    assert_int_equal(r.q.codes->dtype, QH_I8);
    assert_null(r.q.codebook);
    double rad = gpfq_radius(qh_tensor_f32(s.w), 5, 12, 1.0);
    assert_close(qh_tensor_f32(r.q.scale)[0], (float)(1.16 * rad / 8.0), 0.0);
    expect_decodes(&r);
    /* the same codes as the loop run directly (stream of layer index 3, seed 0) */
    gpfq_problem p = {.rows = 5, .cols = 12, .m = 64, .mpad = gpfq_mpad(64), .w = qh_tensor_f32(s.w)};
    qh_error e2;
    assert_int_equal(gpfq_alphabet_make(4, GPFQ_LEVELS_SEED, 1.16, rad, GPFQ_REG_NONE, 0.1, 0, &p.a, &e2), QH_OK);
    float *xt = qh_alloc_aligned(sizeof(float) * 12 * (size_t)p.mpad),
          *xqt = qh_alloc_aligned(sizeof(float) * 12 * (size_t)p.mpad);
    float nrm[12];
    gpfq_transpose(s.x, 64, 12, p.mpad, xt, NULL);
    gpfq_transpose(s.xq, 64, 12, p.mpad, xqt, nrm);
    p.xt = xt, p.xqt = xqt, p.nrm = nrm;
    int32_t codes[60];
    gpfq_run_ref(&p, codes);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(((int8_t *)r.q.codes->data)[i], codes[i]);
        assert_true(abs(codes[i]) <= 8);
    }
    qh_free_aligned(xt);
    qh_free_aligned(xqt);
    test_qrun_free(&r);
    free(cfg);
    data_free(&s);
}

static void test_l0_book(void **state)
{
    (void)state;
    data s = make_data(6, 20, 80, 2);
    void *cfg = test_config_defaults(desc);
    test_set_int(desc, cfg, "bits", 3);
    test_set_int(desc, cfg, "regularizer", GPFQ_REG_L0);
    test_set_double(desc, cfg, "lambda", 0.05);
    qh_calib_layer c = layer_of(&s, NULL);
    test_qrun r;
    qh_error err;
    assert_int_equal(calib_run(cfg, &c, &r, &err), QH_OK);
    assert_int_equal(r.q.codes->dtype, QH_U8);
    assert_null(r.q.scale);
    assert_int_equal(qh_tensor_numel(r.q.codebook), 11); /* 2K + 3, K = 4 */
    assert_int_equal(r.q.bits, 4);
    const float *book = qh_tensor_f32(r.q.codebook);
    assert_true(book[5] == 0.0f);
    assert_close(book[6], 0.05f, 0.0); /* the smallest nonzero level is lambda */
    assert_true(book[6] == -book[4]);
    for (int i = 1; i < 11; i++)
        assert_true(book[i] > book[i - 1]);
    expect_decodes(&r);
    test_qrun_free(&r);
    /* lambda beyond the radius: the message names the layer's numbers */
    test_set_double(desc, cfg, "lambda", 100.0);
    assert_int_equal(calib_run(cfg, &c, &r, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "regularizer L0: lambda = 100 is not below scalar * radius"));
    test_qrun_free(&r);
    free(cfg);
    data_free(&s);
}

static void test_mask_and_data_free(void **state)
{
    (void)state;
    data s = make_data(4, 10, 50, 3);
    uint8_t mask[40];
    for (int i = 0; i < 40; i++) {
        mask[i] = i % 3 != 0;
        if (!mask[i])
            qh_tensor_f32(s.w)[i] = 0.0f;
    }
    void *cfg = test_config_defaults(desc);
    qh_calib_layer c = layer_of(&s, mask);
    test_qrun r;
    qh_error err;
    assert_int_equal(calib_run(cfg, &c, &r, &err), QH_OK);
    for (int i = 0; i < 40; i++)
        if (!mask[i])
            assert_true(qh_tensor_f32(r.deq)[i] == 0.0f);
    test_qrun_free(&r);
    /* data-free: each weight rounded alone, floor(w / step + 1/2) clipped to [-8, 8] */
    assert_int_equal(free_run(cfg, s.w, &r, &err), QH_OK);
    float step = qh_tensor_f32(r.q.scale)[0];
    for (int i = 0; i < 40; i++) {
        float k = floorf(qh_tensor_f32(s.w)[i] / step + 0.5f);
        k = k > 8 ? 8 : k < -8 ? -8 : k;
        assert_int_equal(((int8_t *)r.q.codes->data)[i], (int)k);
    }
    expect_decodes(&r);
    test_qrun_free(&r);
    free(cfg);
    data_free(&s);
}

/* The point of GPFQ: on the same alphabet its layer output error is below plain rounding's. */
static void test_beats_rounding(void **state)
{
    (void)state;
    for (int bits = 2; bits <= 4; bits++) {
        data s = make_data(8, 32, 256, 10 + (uint64_t)bits);
        void *cfg = test_config_defaults(desc);
        test_set_int(desc, cfg, "bits", bits);
        qh_calib_layer c = layer_of(&s, NULL);
        test_qrun g, n;
        qh_error err;
        assert_int_equal(calib_run(cfg, &c, &g, &err), QH_OK);
        assert_int_equal(free_run(cfg, s.w, &n, &err), QH_OK);
        double eg = rel_error(&s, qh_tensor_f32(g.deq)), en = rel_error(&s, qh_tensor_f32(n.deq));
        if (!(eg < 0.9 * en))
            fail_msg("bits %d: GPFQ error %.4f not clearly below rounding's %.4f", bits, eg, en);
        test_qrun_free(&g);
        test_qrun_free(&n);
        free(cfg);
        data_free(&s);
    }
}

int main(void)
{
    qh_set_threads(2);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),         cmocka_unit_test(test_create_refuses),
        cmocka_unit_test(test_calib_output),       cmocka_unit_test(test_l0_book),
        cmocka_unit_test(test_mask_and_data_free), cmocka_unit_test(test_beats_rounding),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
