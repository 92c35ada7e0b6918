/* test_qtensor.c - the quantized-tensor helpers: group counts, storage size, reference decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_quant.h"

static qh_tensor *new_t(qh_dtype dt, int32_t ndim, int64_t a, int64_t b, int64_t c)
{
    int64_t shape[3] = {a, b, c};
    qh_tensor *t = qh_tensor_new(dt, ndim, shape, NULL);
    assert_non_null(t);
    return t;
}

static void test_groups(void **state)
{
    (void)state;
    qh_tensor *w = new_t(QH_F32, 3, 4, 6, 10);
    qh_qtensor q = {.gran = QH_QG_TENSOR};
    assert_int_equal(qh_qtensor_groups(&q, w), 1);
    q.gran = QH_QG_CHANNEL;
    q.axis = 0;
    assert_int_equal(qh_qtensor_groups(&q, w), 4);
    q.axis = 1;
    assert_int_equal(qh_qtensor_groups(&q, w), 6);
    q.axis = 3; /* no such axis */
    assert_int_equal(qh_qtensor_groups(&q, w), 0);
    q.gran = QH_QG_BLOCK;
    q.block = 5;
    assert_int_equal(qh_qtensor_groups(&q, w), 4 * 6 * 2);
    q.block = 4; /* 10 columns: blocks of 4, 4 and a partial 2 */
    assert_int_equal(qh_qtensor_groups(&q, w), 4 * 6 * 3);
    q.block = 0;
    assert_int_equal(qh_qtensor_groups(&q, w), 0);
    qh_tensor_free(w);
}

static void test_bytes(void **state)
{
    (void)state;
    qh_qtensor q = {.bits = 4, .gran = QH_QG_CHANNEL};
    q.codes = new_t(QH_I8, 2, 3, 5, 0); /* 15 codes * 4 bits = 60 bits -> 8 bytes */
    q.scale = new_t(QH_F32, 1, 3, 0, 0);
    assert_int_equal(qh_qtensor_bytes(&q), 8 + 3 * 4);
    q.zero = new_t(QH_I32, 1, 3, 0, 0);
    assert_int_equal(qh_qtensor_bytes(&q), 8 + 3 * 4 + 3 * 4);
    q.bits = 3; /* 45 bits -> 6 bytes */
    assert_int_equal(qh_qtensor_bytes(&q), 6 + 24);
    q.codebook = new_t(QH_F32, 1, 8, 0, 0);
    assert_int_equal(qh_qtensor_bytes(&q), 6 + 24 + 32);
    qh_qtensor_clear(&q);
    assert_null(q.codes);
    assert_null(q.scale);
    assert_null(q.zero);
    assert_null(q.codebook);
    assert_int_equal(q.bits, 0);
    assert_int_equal(qh_qtensor_bytes(&q), 0);
    qh_qtensor_clear(&q); /* twice is harmless */
}

/* Per-channel along axis 1 of a [2, 3, 2] tensor: group = (i / 2) % 3. */
static void test_dequantize_channel_axis1(void **state)
{
    (void)state;
    qh_qtensor q = {.bits = 8, .gran = QH_QG_CHANNEL, .axis = 1};
    q.codes = new_t(QH_U8, 3, 2, 3, 2);
    q.scale = new_t(QH_F32, 1, 3, 0, 0);
    q.zero = new_t(QH_I32, 1, 3, 0, 0);
    uint8_t *c = q.codes->data;
    for (int i = 0; i < 12; i++)
        c[i] = (uint8_t)(10 + i);
    float *s = qh_tensor_f32(q.scale);
    int32_t *z = q.zero->data;
    s[0] = 0.5f, s[1] = 0.25f, s[2] = 2.0f;
    z[0] = 10, z[1] = 0, z[2] = 20;
    qh_tensor *out = new_t(QH_F32, 3, 2, 3, 2);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    const float *o = qh_tensor_f32(out);
    for (int i = 0; i < 12; i++) {
        int g = (i / 2) % 3;
        assert_true(o[i] == s[g] * (float)(c[i] - z[g]));
    }
    assert_true(o[0] == 0.0f);
    assert_true(o[4] == 2.0f * (14 - 20));
    qh_tensor_free(out);
    qh_qtensor_clear(&q);
}

static void test_dequantize_block_and_codebook(void **state)
{
    (void)state;
    /* [2, 5] with blocks of 2: groups per row 3 (last one partial), 6 in all. */
    qh_qtensor q = {.bits = 4, .gran = QH_QG_BLOCK, .block = 2};
    q.codes = new_t(QH_I16, 2, 2, 5, 0);
    q.scale = new_t(QH_F32, 1, 6, 0, 0);
    int16_t *c = q.codes->data;
    float *s = qh_tensor_f32(q.scale);
    for (int i = 0; i < 10; i++)
        c[i] = (int16_t)(i - 4);
    for (int g = 0; g < 6; g++)
        s[g] = (float)(g + 1);
    qh_tensor *out = new_t(QH_F32, 2, 2, 5, 0);
    qh_error err = {{0}};
    assert_int_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    const float *o = qh_tensor_f32(out);
    static const int group[10] = {0, 0, 1, 1, 2, 3, 3, 4, 4, 5};
    for (int i = 0; i < 10; i++)
        assert_true(o[i] == s[group[i]] * (float)(i - 4));

    /* Code book with per-tensor scale: value = book[code] * scale. */
    qh_qtensor_clear(&q);
    q = (qh_qtensor){.bits = 2, .gran = QH_QG_TENSOR};
    q.codes = new_t(QH_U8, 2, 2, 5, 0);
    q.codebook = new_t(QH_F32, 1, 4, 0, 0);
    float *book = qh_tensor_f32(q.codebook);
    book[0] = -1.5f, book[1] = -0.25f, book[2] = 0.0f, book[3] = 0.75f;
    uint8_t *u = q.codes->data;
    for (int i = 0; i < 10; i++)
        u[i] = (uint8_t)(i % 4);
    assert_int_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    for (int i = 0; i < 10; i++)
        assert_true(o[i] == book[i % 4]);
    q.scale = new_t(QH_F32, 1, 1, 0, 0);
    qh_tensor_f32(q.scale)[0] = 2.0f;
    assert_int_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    for (int i = 0; i < 10; i++)
        assert_true(o[i] == 2.0f * book[i % 4]);
    u[7] = 4; /* outside the 4-entry book */
    assert_int_not_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    assert_non_null(strstr(err.msg, "element 7"));
    qh_tensor_free(out);
    qh_qtensor_clear(&q);
}

static void test_dequantize_rejects(void **state)
{
    (void)state;
    qh_error err = {{0}};
    qh_qtensor q = {.bits = 8, .gran = QH_QG_CHANNEL, .axis = 0};
    q.codes = new_t(QH_I8, 2, 3, 4, 0);
    qh_tensor *out = new_t(QH_F32, 2, 3, 4, 0);
    assert_int_not_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK); /* no scales */
    q.scale = new_t(QH_F32, 1, 2, 0, 0);                                /* wrong group count */
    assert_int_not_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    assert_non_null(strstr(err.msg, "scale"));
    qh_tensor_free(q.scale);
    q.scale = new_t(QH_F32, 1, 3, 0, 0);
    assert_int_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    qh_tensor *bad = new_t(QH_F32, 2, 4, 3, 0); /* same numel, other shape */
    assert_int_not_equal(qh_qtensor_dequantize(&q, bad, &err), QH_OK);
    q.zero = new_t(QH_F32, 1, 3, 0, 0); /* zero points must be I32 */
    assert_int_not_equal(qh_qtensor_dequantize(&q, out, &err), QH_OK);
    assert_non_null(strstr(err.msg, "zero"));
    qh_tensor_free(bad);
    qh_tensor_free(out);
    qh_qtensor_clear(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_dequantize_channel_axis1),
        cmocka_unit_test(test_dequantize_block_and_codebook),
        cmocka_unit_test(test_dequantize_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
