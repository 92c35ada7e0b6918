/* test_safetensors_golden.c - a file written from PyTorch values (tests/golden/gen_safetensors.py) reads
 * back exactly: every value of every dtype, in data-offset order, and the metadata.
 * Expected values come from the committed JSON; half and bfloat16 are decoded here independently. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "qhost/qh_safetensors.h"

#define GOLDEN QH_TEST_DATA "/safetensors/golden.safetensors"
#define EXPECTED QH_TEST_DATA "/safetensors/golden_expected.json"

/* IEEE binary16 -> double, straight from the definition (sign, 5-bit exponent bias 15, 10-bit fraction). */
static double half_to_double(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
    double v;
    if (exp == 0)
        v = ldexp(frac, -24);
    else if (exp == 31)
        v = frac ? NAN : INFINITY;
    else
        v = ldexp(1024 + frac, exp - 25);
    return sign ? -v : v;
}

static double bf16_to_double(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Expected floats are numbers or the strings "nan", "inf", "-inf". */
static double expected_real(json_t *v)
{
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        return !strcmp(s, "nan") ? NAN : !strcmp(s, "inf") ? INFINITY : -INFINITY;
    }
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void check_real(double got, double want, const char *name, size_t i)
{
    if (isnan(want) ? !isnan(got) : (got != want || signbit(got) != signbit(want)))
        fail_msg("%s[%zu] = %.17g, want %.17g", name, i, got, want);
}

static double real_at(const qh_tensor *t, size_t i)
{
    switch (t->dtype) {
    case QH_F32: return ((const float *)t->data)[i];
    case QH_F64: return ((const double *)t->data)[i];
    case QH_F16: return half_to_double(((const uint16_t *)t->data)[i]);
    case QH_BF16: return bf16_to_double(((const uint16_t *)t->data)[i]);
    default: fail_msg("%s is not a float tensor", t->name);
    }
    return 0;
}

static long long int_at(const qh_tensor *t, size_t i)
{
    switch (t->dtype) {
    case QH_I64: return ((const int64_t *)t->data)[i];
    case QH_I32: return ((const int32_t *)t->data)[i];
    case QH_I16: return ((const int16_t *)t->data)[i];
    case QH_I8: return ((const int8_t *)t->data)[i];
    case QH_U8: return ((const uint8_t *)t->data)[i];
    default: fail_msg("%s is not an integer tensor", t->name);
    }
    return 0;
}

static void check_values(const qh_tensor *t, json_t *values)
{
    assert_int_equal(json_array_size(values), qh_tensor_numel(t));
    for (size_t i = 0; i < json_array_size(values); i++) {
        json_t *v = json_array_get(values, i);
        if (t->dtype == QH_BOOL) {
            assert_true(json_is_boolean(v));
            assert_int_equal(((const uint8_t *)t->data)[i], json_is_true(v));
        } else if (t->dtype == QH_F32 || t->dtype == QH_F64 || t->dtype == QH_F16 || t->dtype == QH_BF16) {
            check_real(real_at(t, i), expected_real(v), t->name, i);
        } else {
            assert_true(json_is_integer(v));
            if (int_at(t, i) != json_integer_value(v))
                fail_msg("%s[%zu] = %lld, want %lld", t->name, i, int_at(t, i), (long long)json_integer_value(v));
        }
    }
}

static void test_golden_values(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *want = json_load_file(EXPECTED, 0, &jerr);
    if (!want)
        fail_msg("%s: %s", EXPECTED, jerr.text);
    qh_safetensors *st = NULL;
    qh_error err = {{0}};
    if (qh_safetensors_read(GOLDEN, &st, &err) != QH_OK)
        fail_msg("%s", err.msg);

    json_t *tensors = json_object_get(want, "tensors");
    assert_int_equal(st->n_tensors, json_array_size(tensors));
    int dtypes_seen[QH_DTYPE_COUNT] = {0};
    for (int32_t i = 0; i < st->n_tensors; i++) {
        const qh_tensor *t = st->tensors[i]; /* data-offset order == the order the script listed them */
        json_t *w = json_array_get(tensors, (size_t)i), *shape = json_object_get(w, "shape");
        assert_string_equal(t->name, json_string_value(json_object_get(w, "name")));
        assert_string_equal(qh_dtype_name(t->dtype), json_string_value(json_object_get(w, "dtype")));
        assert_int_equal(t->ndim, json_array_size(shape));
        for (int32_t d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
        check_values(t, json_object_get(w, "values"));
        dtypes_seen[t->dtype] = 1;
    }
    const qh_dtype torch_dtypes[] = {QH_F32, QH_F64, QH_F16, QH_BF16, QH_I64, QH_I32, QH_I16, QH_I8, QH_U8, QH_BOOL};
    for (size_t i = 0; i < sizeof torch_dtypes / sizeof torch_dtypes[0]; i++)
        assert_true(dtypes_seen[torch_dtypes[i]]);

    json_t *meta = json_object_get(want, "metadata");
    assert_int_equal(st->n_meta, json_object_size(meta));
    const char *key;
    json_t *val;
    json_object_foreach(meta, key, val) {
        assert_non_null(qh_safetensors_meta(st, key));
        assert_string_equal(qh_safetensors_meta(st, key), json_string_value(val));
    }
    qh_safetensors_free(st);
    json_decref(want);
}

static void test_golden_inspect(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_inspect(GOLDEN, out, &err), QH_OK);
    fclose(out);
    /* empty.f32 has no elements: no sparsity to report; mask.bool has 3 False of 6 */
    const char *want[] = {"\nempty.f32     F32      [0, 3]", "            0             0          -\n",
                          "\nmask.bool     BOOL     [2, 3]", "            6             3     50.00%\n",
                          "total: 13 tensors, ", "\nmetadata:\n  format = pt\n  producer = gen_safetensors.py\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("inspect output lacks '%s':\n%s", want[i], text);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_values),
        cmocka_unit_test(test_golden_inspect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
