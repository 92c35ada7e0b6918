/* test_qanalysis.c - the per-layer quantization analysis (qh_qanalysis_*) against closed forms. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_parallel.h"
#include "qhost/qh_quant.h"
#include "qhost/qh_rng.h"

static qh_tensor *tensor(qh_dtype dt, int64_t rows, int64_t cols, const void *data)
{
    qh_tensor *t = qh_tensor_new(dt, 2, (int64_t[]){rows, cols}, NULL);
    assert_non_null(t);
    if (data)
        memcpy(t->data, data, qh_tensor_nbytes(t));
    return t;
}

static qh_tensor *vec(qh_dtype dt, int64_t n, const void *data)
{
    qh_tensor *t = qh_tensor_new(dt, 1, &n, NULL);
    assert_non_null(t);
    memcpy(t->data, data, qh_tensor_nbytes(t));
    return t;
}

/* w = [1 2; 3 4], one scale 1, codes [1 2; 3 5]: one error of 1. */
static void test_closed_form(void **state)
{
    (void)state;
    float w[4] = {1, 2, 3, 4}, one = 1.0f;
    int8_t c[4] = {1, 2, 3, 5};
    qh_tensor *wt = tensor(QH_F32, 2, 2, w);
    qh_qtensor q = {.bits = 8, .gran = QH_QG_TENSOR};
    q.codes = tensor(QH_I8, 2, 2, c);
    q.scale = vec(QH_F32, 1, &one);
    qh_qanalysis a;
    qh_error err = {{0}};
    assert_int_equal(qh_qanalysis_compute(wt, &q, NULL, &a, &err), QH_OK);
    assert_int_equal(a.numel, 4);
    assert_true(a.sum_sq_err == 1.0 && a.sum_abs_err == 1.0 && a.sum_sq == 30.0);
    assert_true(a.mse == 0.25 && a.mae == 0.25);
    assert_float_equal(a.sqnr_db, 10.0 * log10(30.0), 1e-12);
    assert_int_equal(a.levels, 4);
    assert_int_equal(a.bytes_codes, 4);
    assert_int_equal(a.bytes_scales, 4);
    assert_int_equal(a.bytes_zero + a.bytes_codebook + a.bytes_perm, 0);
    assert_int_equal(a.bytes, 8);
    assert_true(a.compression == 2.0);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
}

/* 4-bit asymmetric per channel, 3 x 5: codes pack to ceil(15 * 4 / 8) = 8 bytes, plus 3 scales
 * and 3 zero points; the supplied deq is used as given (here: exact, so SQNR is infinite). */
static void test_sizes_and_exact(void **state)
{
    (void)state;
    float w[15];
    uint8_t c[15];
    for (int i = 0; i < 15; i++) {
        c[i] = (uint8_t)(i % 4);
        w[i] = 0.5f * (float)((int)c[i] - 1);
    }
    float s[3] = {0.5f, 0.5f, 0.5f};
    int32_t z[3] = {1, 1, 1};
    qh_tensor *wt = tensor(QH_F32, 3, 5, w), *deq = tensor(QH_F32, 3, 5, w);
    qh_qtensor q = {.bits = 4, .gran = QH_QG_CHANNEL, .axis = 0};
    q.codes = tensor(QH_U8, 3, 5, c);
    q.scale = vec(QH_F32, 3, s);
    q.zero = vec(QH_I32, 3, z);
    qh_qanalysis a, b;
    qh_error err = {{0}};
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &a, &err), QH_OK);
    assert_int_equal(qh_qanalysis_compute(wt, &q, NULL, &b, &err), QH_OK); /* decoding gives the same */
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(a.mse == 0.0 && a.mae == 0.0);
    assert_true(isinf(a.sqnr_db) && a.sqnr_db > 0);
    assert_int_equal(a.levels, 4);
    assert_int_equal(a.bytes_codes, 8);
    assert_int_equal(a.bytes_scales, 12);
    assert_int_equal(a.bytes_zero, 12);
    assert_int_equal(a.bytes, 32);
    assert_int_equal(a.bytes, qh_qtensor_bytes(&q));
    assert_true(a.compression == 60.0 / 32.0);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
    qh_tensor_free(deq);
}

/* All-zero weights decoded to something else: no signal, some noise: -inf. */
static void test_zero_signal(void **state)
{
    (void)state;
    float w[2] = {0, 0}, d[2] = {0.5f, 0};
    qh_tensor *wt = tensor(QH_F32, 1, 2, w), *deq = tensor(QH_F32, 1, 2, d);
    uint8_t c[2] = {1, 0};
    float book[2] = {0, 0.5f};
    qh_qtensor q = {.bits = 1, .gran = QH_QG_TENSOR};
    q.codes = tensor(QH_U8, 1, 2, c);
    q.codebook = vec(QH_F32, 2, book);
    qh_qanalysis a;
    qh_error err = {{0}};
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &a, &err), QH_OK);
    assert_true(isinf(a.sqnr_db) && a.sqnr_db < 0);
    assert_true(a.mse == 0.125 && a.mae == 0.25);
    assert_int_equal(a.bytes_codes, 1);
    assert_int_equal(a.bytes_codebook, 8);
    assert_int_equal(a.bytes, 9);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
    qh_tensor_free(deq);
}

/* A permutation is counted at ceil(log2(8)) = 3 bits per element (3 bytes); a fixed (published)
 * code book is not counted. The parts add up to qh_qtensor_bytes. */
static void test_perm_and_fixed_book(void **state)
{
    (void)state;
    float w[8] = {0.1f, -0.2f, 0.3f, 0.0f, 1.0f, -1.0f, 0.5f, 0.25f};
    uint8_t c[8] = {2, 1, 2, 1, 3, 0, 3, 2};
    int32_t perm[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float scale[2] = {0.3f, 1.0f}, book[4] = {-1.0f, 0.0f, 0.5f, 1.0f};
    qh_tensor *wt = tensor(QH_F32, 2, 4, w);
    qh_qtensor q = {.bits = 2, .gran = QH_QG_FLAT_BLOCK, .block = 4, .book_fixed = 1};
    q.codes = tensor(QH_U8, 2, 4, c);
    q.scale = vec(QH_F32, 2, scale);
    q.codebook = vec(QH_F32, 4, book);
    q.perm = vec(QH_I32, 8, perm);
    qh_qanalysis a;
    qh_error err = {{0}};
    assert_int_equal(qh_qanalysis_compute(wt, &q, NULL, &a, &err), QH_OK);
    assert_int_equal(a.bytes_codes, 2);
    assert_int_equal(a.bytes_scales, 8);
    assert_int_equal(a.bytes_codebook, 0);
    assert_int_equal(a.bytes_perm, 3);
    assert_int_equal(a.bytes, 13);
    assert_int_equal(a.levels, 4);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
}

/* Distinct levels of 16- and 32-bit codes (table and sort paths). */
static void test_levels_wide(void **state)
{
    (void)state;
    float w[4] = {0};
    int16_t c16[4] = {-300, 7, -300, 32767};
    int32_t c32[4] = {5, -3, 5, 100000};
    float one = 1.0f;
    qh_tensor *wt = tensor(QH_F32, 2, 2, w);
    qh_qtensor q = {.bits = 16, .gran = QH_QG_TENSOR};
    q.codes = tensor(QH_I16, 2, 2, c16);
    q.scale = vec(QH_F32, 1, &one);
    qh_tensor *deq = tensor(QH_F32, 2, 2, w);
    qh_qanalysis a;
    qh_error err = {{0}};
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &a, &err), QH_OK);
    assert_int_equal(a.levels, 3);
    qh_tensor_free(q.codes);
    q.codes = tensor(QH_I32, 2, 2, c32);
    q.bits = 32;
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &a, &err), QH_OK);
    assert_int_equal(a.levels, 3);
    assert_int_equal(a.bytes_codes, 16);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
    qh_tensor_free(deq);
}

/* Totals add the sums (not the ratios): mse = sum of errors / all elements. */
static void test_add(void **state)
{
    (void)state;
    qh_qanalysis a = {.numel = 4, .sum_sq_err = 1, .sum_abs_err = 1, .sum_sq = 30, .levels = 4, .bytes_codes = 4,
                      .bytes_scales = 4, .bytes = 8};
    qh_qanalysis b = {.numel = 12, .sum_sq_err = 3, .sum_abs_err = 5, .sum_sq = 10, .levels = 9, .bytes_codes = 6,
                      .bytes_codebook = 10, .bytes = 16};
    qh_qanalysis t;
    memset(&t, 0, sizeof t);
    qh_qanalysis_add(&t, &a);
    qh_qanalysis_add(&t, &b);
    assert_int_equal(t.numel, 16);
    assert_true(t.mse == 0.25 && t.mae == 0.375);
    assert_float_equal(t.sqnr_db, 10.0, 1e-12);
    assert_int_equal(t.levels, 9);
    assert_int_equal(t.bytes, 24);
    assert_int_equal(t.bytes_codes + t.bytes_scales + t.bytes_codebook, 24);
    assert_true(t.compression == 64.0 / 24.0);
}

/* Sums over many chunks: the same bits on 1 and 2 threads, and equal to a plain sum up to rounding. */
static void test_threads_identical(void **state)
{
    (void)state;
    int64_t rows = 7, cols = 40001, n = rows * cols;
    qh_tensor *wt = tensor(QH_F32, rows, cols, NULL), *deq = tensor(QH_F32, rows, cols, NULL);
    qh_qtensor q = {.bits = 8, .gran = QH_QG_TENSOR};
    q.codes = tensor(QH_I8, rows, cols, NULL);
    float one = 1.0f;
    q.scale = vec(QH_F32, 1, &one);
    qh_rng r;
    qh_rng_seed(&r, 1);
    double plain = 0;
    for (int64_t i = 0; i < n; i++) {
        qh_tensor_f32(wt)[i] = (float)qh_rng_normal(&r);
        qh_tensor_f32(deq)[i] = qh_tensor_f32(wt)[i] + (float)(0.01 * qh_rng_normal(&r));
        ((int8_t *)q.codes->data)[i] = (int8_t)(i % 200 - 100);
        double d = (double)qh_tensor_f32(wt)[i] - (double)qh_tensor_f32(deq)[i];
        plain += d * d;
    }
    qh_qanalysis a, b;
    qh_error err = {{0}};
    qh_set_threads(1);
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &a, &err), QH_OK);
    qh_set_threads(2);
    assert_int_equal(qh_qanalysis_compute(wt, &q, deq, &b, &err), QH_OK);
    assert_memory_equal(&a, &b, sizeof a);
    assert_float_equal(a.sum_sq_err, plain, plain * 1e-12);
    assert_int_equal(a.levels, 200);
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
    qh_tensor_free(deq);
}

static void test_rejects(void **state)
{
    (void)state;
    float w[4] = {0};
    int8_t c[2] = {0};
    float one = 1.0f;
    qh_tensor *wt = tensor(QH_F32, 2, 2, w);
    qh_tensor_set_name(wt, "fc.weight");
    qh_qtensor q = {.bits = 8, .gran = QH_QG_TENSOR};
    q.codes = tensor(QH_I8, 1, 2, c);
    q.scale = vec(QH_F32, 1, &one);
    qh_qanalysis a;
    qh_error err = {{0}};
    assert_int_not_equal(qh_qanalysis_compute(wt, &q, NULL, &a, &err), QH_OK);
    assert_non_null(strstr(err.msg, "fc.weight"));
    qh_qtensor_clear(&q);
    qh_tensor_free(wt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_closed_form),     cmocka_unit_test(test_sizes_and_exact),
        cmocka_unit_test(test_zero_signal),     cmocka_unit_test(test_perm_and_fixed_book),
        cmocka_unit_test(test_levels_wide),     cmocka_unit_test(test_add),
        cmocka_unit_test(test_threads_identical), cmocka_unit_test(test_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
