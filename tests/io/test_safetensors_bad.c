/* test_safetensors_bad.c - malformed files are refused with one clear line; garbage never crashes.
 * Every bad file is generated here, in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "qhost/qh_rng.h"
#include "qhost/qh_safetensors.h"
#include "st_test_util.h"

static int setup(void **state)
{
    st_tmpdir *d = malloc(sizeof *d);
    if (!d || st_tmpdir_make(d) != 0) {
        free(d);
        return -1;
    }
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    st_tmpdir_remove(*state);
    free(*state);
    return 0;
}

/* 8-byte little-endian length (given explicitly so it can lie), the header text, then data_bytes bytes. */
static void write_file(const char *path, uint64_t declared, const char *header, size_t data_bytes)
{
    size_t hlen = strlen(header), size = 8 + hlen + data_bytes;
    unsigned char *buf = calloc(1, size);
    assert_non_null(buf);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)(declared >> (8 * i));
    memcpy(buf + 8, header, hlen);
    assert_int_equal(st_write_bytes(path, buf, size), 0);
    free(buf);
}

static void expect_refused(const char *path, qh_status want, const char *what)
{
    qh_safetensors *st = NULL;
    qh_error err = {{0}};
    qh_status got = qh_safetensors_read(path, &st, &err);
    if (got != want)
        fail_msg("%s: status %d, want %d (%s)", path, got, want, err.msg);
    assert_null(st);
    if (!strstr(err.msg, what))
        fail_msg("message '%s' lacks '%s'", err.msg, what);
    assert_true(strncmp(err.msg, path, strlen(path)) == 0); /* names the file first */
    assert_null(strchr(err.msg, '\n'));
}

static void expect_header_refused(const st_tmpdir *d, const char *header, size_t data_bytes, const char *what)
{
    char path[512];
    st_tmpdir_file(d, "x.safetensors", path, sizeof path);
    write_file(path, strlen(header), header, data_bytes);
    expect_refused(path, QH_E_FORMAT, what);
}

static void test_too_short(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "x.safetensors", path, sizeof path);
    assert_int_equal(st_write_bytes(path, "", 0), 0);
    expect_refused(path, QH_E_FORMAT, "file is 0 bytes, too short");
    assert_int_equal(st_write_bytes(path, "\x02\0\0\0\0\0\0", 7), 0);
    expect_refused(path, QH_E_FORMAT, "file is 7 bytes, too short");
}

static void test_header_length(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "x.safetensors", path, sizeof path);
    write_file(path, 4096, "{}", 1000 - 8 - 2);
    expect_refused(path, QH_E_FORMAT, "x.safetensors: header length 4096 runs past the end of the file (1000 bytes)");
    write_file(path, 1ull << 40, "{}", 0);
    expect_refused(path, QH_E_FORMAT, "header length 1099511627776 is larger than the 100000000-byte limit");
    write_file(path, UINT64_MAX, "{}", 0);
    expect_refused(path, QH_E_FORMAT, "is larger than");
    write_file(path, 3, "{}", 0); /* one byte past the end */
    expect_refused(path, QH_E_FORMAT, "header length 3 runs past the end of the file (10 bytes)");
}

static void test_not_json(void **state)
{
    expect_header_refused(*state, "{\"a\": ", 0, "header is not valid JSON");
    expect_header_refused(*state, "", 0, "header is not valid JSON");
    expect_header_refused(*state, "{} trailing", 0, "header is not valid JSON");
    expect_header_refused(*state, "[1, 2]", 0, "header is not a JSON object");
    expect_header_refused(*state, "\"text\"", 0, "header is not a JSON object");
    expect_header_refused(*state, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                          8, "duplicate");
}

static void test_bad_entries(void **state)
{
    const st_tmpdir *d = *state;
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F13\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                          "x.safetensors: tensor 'w': unknown dtype 'F13'");
    expect_header_refused(d, "{\"w\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                          "tensor 'w': dtype is not a string");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'w': missing data_offsets");
    expect_header_refused(d, "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing dtype");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor 'w': missing shape");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
                          "tensor 'w': unexpected field 'x'");
    expect_header_refused(d, "{\"w\":[1]}", 4, "tensor 'w': entry is not an object");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,4]}}", 4,
                          "tensor 'w': shape[1] is not a non-negative integer");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4,
                          "tensor 'w': shape[0] is not a non-negative integer");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4,
                          "tensor 'w': shape is not an array");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 4,
                          "tensor 'w': shape has rank 9, more than 8");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                          "tensor 'w': data_offsets is not a pair");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4,
                          "tensor 'w': data_offsets is not a pair");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
                          "tensor 'w': data_offsets [4, 0] end before they begin");
}

static void test_sizes_and_offsets(void **state)
{
    const st_tmpdir *d = *state;
    expect_header_refused(d, "{\"fc1.weight\":{\"dtype\":\"F32\",\"shape\":[10,20],\"data_offsets\":[0,400]}}", 800,
                          "x.safetensors: tensor 'fc1.weight': data_offsets [0, 400] do not match shape [10, 20] of "
                          "F32 (800 bytes)");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]}}", 8,
                          "tensor 'w': data_offsets [0, 8] do not match shape [] of F32 (4 bytes)");
    expect_header_refused(d,
                          "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296,4294967296],"
                          "\"data_offsets\":[0,8]}}",
                          8, "of F64 (too many bytes)");
    expect_header_refused(d, "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                          "tensor 'w': data_offsets [0, 8] run past the end of the data (4 bytes)");
    expect_header_refused(d,
                          "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                          "\"data_offsets\":[9223372036854775800,9223372036854775807]}}",
                          4, "run past the end of the data");
    expect_header_refused(d,
                          "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]},"
                          "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                          12, "x.safetensors: tensors 'a' and 'b' overlap at byte offset 4");
    /* a range nested inside a longer one, with a third in between in offset order */
    expect_header_refused(d,
                          "{\"big\":{\"dtype\":\"U8\",\"shape\":[16],\"data_offsets\":[0,16]},"
                          "\"mid\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[10,12]}}",
                          16, "tensors 'big' and 'mid' overlap at byte offset 10");
}

static void test_bad_metadata(void **state)
{
    const st_tmpdir *d = *state;
    expect_header_refused(d, "{\"__metadata__\":{\"k\":1}}", 0, "__metadata__: value of 'k' is not a string");
    expect_header_refused(d, "{\"__metadata__\":{\"a\":\"ok\",\"k\":null}}", 0, "value of 'k' is not a string");
    expect_header_refused(d, "{\"__metadata__\":[\"k\"]}", 0, "__metadata__ is not an object");
    expect_header_refused(d, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate");
}

/* Names from the file are cut and sanitised so an error stays one bounded line. */
static void test_hostile_names(void **state)
{
    char header[1024];
    char long_name[400];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    snprintf(header, sizeof header, "{\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", long_name);
    expect_header_refused(*state, header, 4, "nnn...': name longer than 127 bytes");
    snprintf(header, sizeof header, "{\"%.100s\":{\"dtype\":\"F13\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             long_name);
    expect_header_refused(*state, header, 4, "nnn...': unknown dtype 'F13'");
    expect_header_refused(*state, "{\"a\\nb\":{\"dtype\":\"F13\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                          "tensor 'a?b': unknown dtype");
}

/* Empty tensors may sit anywhere, even inside another range: they own no bytes. Gaps are allowed. */
static void test_accepts_empty_and_gaps(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "x.safetensors", path, sizeof path);
    const char *header = "{\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[2,2]},"
                         "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                         "\"b\":{\"dtype\":\"I16\",\"shape\":[2],\"data_offsets\":[8,12]}}   ";
    write_file(path, strlen(header), header, 12);
    qh_safetensors *st = NULL;
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    assert_int_equal(st->n_tensors, 3);
    assert_string_equal(st->tensors[0]->name, "a");
    assert_string_equal(st->tensors[1]->name, "e");
    assert_string_equal(st->tensors[2]->name, "b");
    assert_int_equal(st->header_bytes, strlen(header));
    assert_int_equal(st->file_bytes, 8 + strlen(header) + 12);
    qh_safetensors_free(st);
}

/* A valid file with several tensors and metadata: the starting point for the fuzzing. */
static unsigned char *valid_file(const st_tmpdir *d, size_t *size)
{
    char path[512];
    st_tmpdir_file(d, "valid.safetensors", path, sizeof path);
    qh_tensor *t[3] = {qh_tensor_new(QH_F32, 2, (int64_t[]){2, 3}, NULL),
                       qh_tensor_new(QH_I8, 1, (int64_t[]){5}, NULL), qh_tensor_new(QH_BF16, 0, NULL, NULL)};
    const char *names[] = {"fc1.weight", "fc1.bias", "scale"};
    for (int i = 0; i < 3; i++) {
        qh_tensor_set_name(t[i], names[i]);
        memset(t[i]->data, 0x11 * (i + 1), qh_tensor_nbytes(t[i]));
    }
    const char *keys[] = {"format"}, *values[] = {"pt"};
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)t, 3, keys, values, 1, &err), QH_OK);
    for (int i = 0; i < 3; i++)
        qh_tensor_free(t[i]);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    unsigned char *buf = malloc(4096);
    *size = fread(buf, 1, 4096, fp);
    fclose(fp);
    return buf;
}

/* Either a clean success or a one-line error naming the file; ASan/UBSan catch the rest. */
static void read_any(const char *path, const void *bytes, size_t size, int *ok)
{
    assert_int_equal(st_write_bytes(path, bytes, size), 0);
    qh_safetensors *st = NULL;
    qh_error err = {{0}};
    qh_status s = qh_safetensors_read(path, &st, &err);
    if (s == QH_OK) {
        assert_non_null(st);
        for (int32_t i = 0; i < st->n_tensors; i++)
            assert_int_equal(qh_tensor_count_zeros(st->tensors[i]) >= 0, 1);
        qh_safetensors_free(st);
        (*ok)++;
        return;
    }
    assert_null(st);
    assert_true(s == QH_E_FORMAT);
    assert_true(strncmp(err.msg, path, strlen(path)) == 0);
    assert_null(strchr(err.msg, '\n'));
}

static void test_fuzz_truncations(void **state)
{
    size_t size;
    unsigned char *good = valid_file(*state, &size);
    char path[512];
    st_tmpdir_file(*state, "fuzz.safetensors", path, sizeof path);
    int ok = 0;
    for (size_t len = 0; len < size; len++)
        read_any(path, good, len, &ok);
    assert_int_equal(ok, 0); /* the last tensor ends at the end of the file: every cut is an error */
    read_any(path, good, size, &ok);
    assert_int_equal(ok, 1);
    free(good);
}

static void test_fuzz_random_bytes(void **state)
{
    size_t size;
    unsigned char *good = valid_file(*state, &size);
    char path[512];
    st_tmpdir_file(*state, "fuzz.safetensors", path, sizeof path);
    unsigned char buf[4096];
    qh_rng r;
    qh_rng_seed(&r, 20240601);
    int ok = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, good, size);
        size_t len = size;
        int flips = 1 + (int)qh_rng_below(&r, 4);
        for (int f = 0; f < flips; f++) /* mostly inside the header, where the parsing is */
            buf[qh_rng_below(&r, iter % 4 ? 8 + (uint64_t)(size - 8) / 2 : size)] = (unsigned char)qh_rng_next(&r);
        if (iter % 3 == 0)
            len = (size_t)qh_rng_below(&r, size + 1);
        read_any(path, buf, len, &ok);
    }
    for (int iter = 0; iter < 500; iter++) { /* pure garbage, sometimes with a plausible length prefix */
        size_t len = (size_t)qh_rng_below(&r, sizeof buf);
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)qh_rng_next(&r);
        if (len >= 8 && iter % 2) {
            uint64_t n = qh_rng_below(&r, len - 7);
            for (int i = 0; i < 8; i++)
                buf[i] = (unsigned char)(n >> (8 * i));
        }
        read_any(path, buf, len, &ok);
    }
    assert_true(ok > 0); /* flips in padding or data keep the file valid: both paths were exercised */
    free(good);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_too_short, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_entries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sizes_and_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accepts_empty_and_gaps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz_truncations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fuzz_random_bytes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
