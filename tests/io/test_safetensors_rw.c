/* test_safetensors_rw.c - write/read round trips, metadata, writer refusals, atomic output, inspect. */
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

/* A tensor of the given dtype and shape filled with random bytes (every bit pattern must survive). */
static qh_tensor *random_tensor(qh_rng *r, qh_dtype dt, int32_t ndim, const int64_t *shape, const char *name)
{
    qh_tensor *t = qh_tensor_new(dt, ndim, shape, NULL);
    assert_non_null(t);
    unsigned char *p = t->data;
    for (size_t i = 0; i < qh_tensor_nbytes(t); i++)
        p[i] = (unsigned char)qh_rng_next(r);
    qh_tensor_set_name(t, name);
    return t;
}

static char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *size = (size_t)ftell(fp);
    rewind(fp);
    char *buf = malloc(*size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *size, fp), *size);
    buf[*size] = '\0';
    fclose(fp);
    return buf;
}

static void free_all(qh_tensor **t, int n)
{
    for (int i = 0; i < n; i++)
        qh_tensor_free(t[i]);
}

/* Every dtype, ranks 0..3, one empty tensor; the reader must give back the same bytes in the same order. */
static void test_roundtrip_every_dtype(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "all.safetensors", path, sizeof path);
    qh_rng r;
    qh_rng_seed(&r, 42);
    enum { N = QH_DTYPE_COUNT + 1 };
    qh_tensor *t[N];
    int64_t total = 0;
    for (int i = 0; i < QH_DTYPE_COUNT; i++) {
        int64_t shape[3] = {3, 1 + i % 4, 2};
        char name[32];
        snprintf(name, sizeof name, "layer%d.%s", i, qh_dtype_name((qh_dtype)i));
        t[i] = random_tensor(&r, (qh_dtype)i, i % 4, shape, name);
        total += (int64_t)qh_tensor_nbytes(t[i]);
    }
    t[N - 1] = random_tensor(&r, QH_F32, 2, (int64_t[]){0, 5}, "empty");
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)t, N, NULL, NULL, 0, &err), QH_OK);

    qh_safetensors *st = NULL;
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    assert_int_equal(st->n_tensors, N);
    assert_int_equal(st->n_meta, 0);
    assert_int_equal(st->header_bytes % 8, 0);
    assert_int_equal(st->file_bytes, 8 + st->header_bytes + total);
    for (int i = 0; i < N; i++) {
        const qh_tensor *g = st->tensors[i];
        assert_string_equal(g->name, t[i]->name);
        assert_int_equal(g->dtype, t[i]->dtype);
        assert_int_equal(g->ndim, t[i]->ndim);
        assert_memory_equal(g->shape, t[i]->shape, sizeof g->shape[0] * (size_t)g->ndim);
        assert_memory_equal(g->stride, t[i]->stride, sizeof g->stride[0] * (size_t)g->ndim);
        assert_int_equal((uintptr_t)g->data % 64, 0);
        if (qh_tensor_nbytes(g))
            assert_memory_equal(g->data, t[i]->data, qh_tensor_nbytes(g));
        assert_ptr_equal(qh_safetensors_find(st, t[i]->name), g);
    }
    assert_null(qh_safetensors_find(st, "missing"));
    qh_safetensors_free(st);
    free_all(t, N);
}

/* The header is compact JSON padded with spaces to 8 bytes, data offsets back to back in the given order. */
static void test_header_layout(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "layout.safetensors", path, sizeof path);
    qh_rng r;
    qh_rng_seed(&r, 7);
    qh_tensor *t[2] = {random_tensor(&r, QH_F32, 1, (int64_t[]){3}, "b"),
                       random_tensor(&r, QH_I8, 1, (int64_t[]){5}, "a")};
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)t, 2, NULL, NULL, 0, &err), QH_OK);
    size_t size;
    char *raw = slurp(path, &size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | (unsigned char)raw[i];
    assert_int_equal(n % 8, 0);
    assert_int_equal(size, 8 + n + 12 + 5);
    const char *want = "{\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                       "\"a\":{\"dtype\":\"I8\",\"shape\":[5],\"data_offsets\":[12,17]}}";
    assert_memory_equal(raw + 8, want, strlen(want));
    for (size_t i = 8 + strlen(want); i < 8 + n; i++)
        assert_int_equal(raw[i], ' ');
    assert_null(strstr(raw + 8, "__metadata__")); /* only written when there is metadata */
    free(raw);
    free_all(t, 2);
}

static void test_metadata(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "meta.safetensors", path, sizeof path);
    qh_rng r;
    qh_rng_seed(&r, 3);
    qh_tensor *t = random_tensor(&r, QH_BF16, 2, (int64_t[]){2, 2}, "w");
    const char *keys[] = {"format", "note", "empty"};
    const char *values[] = {"pt", "line one\nline \"two\" \xc3\xa9", ""};
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)&t, 1, keys, values, 3, &err), QH_OK);
    qh_safetensors *st = NULL;
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    assert_int_equal(st->n_meta, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(st->meta_keys[i], keys[i]);
        assert_string_equal(qh_safetensors_meta(st, keys[i]), values[i]);
    }
    assert_null(qh_safetensors_meta(st, "absent"));
    qh_safetensors_free(st);

    /* No tensors at all is a valid file too. */
    assert_int_equal(qh_safetensors_write(path, NULL, 0, keys, values, 1, &err), QH_OK);
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    assert_int_equal(st->n_tensors, 0);
    assert_string_equal(qh_safetensors_meta(st, "format"), "pt");
    qh_safetensors_free(st);
    qh_tensor_free(t);
}

static void expect_write_refused(const st_tmpdir *d, const qh_tensor *const *t, int n, const char **keys,
                                 const char **values, int n_meta, const char *what)
{
    char path[512];
    st_tmpdir_file(d, "refused.safetensors", path, sizeof path);
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, t, n, keys, values, n_meta, &err), QH_E_INVAL);
    if (!strstr(err.msg, what))
        fail_msg("message '%s' lacks '%s'", err.msg, what);
    assert_non_null(strstr(err.msg, path));
    assert_int_equal(st_tmpdir_count(d, NULL), 0);
}

static void test_write_refusals(void **state)
{
    qh_rng r;
    qh_rng_seed(&r, 5);
    qh_tensor *a = random_tensor(&r, QH_F32, 1, (int64_t[]){2}, "same");
    qh_tensor *b = random_tensor(&r, QH_F32, 1, (int64_t[]){2}, "same");
    qh_tensor *unnamed = random_tensor(&r, QH_F32, 1, (int64_t[]){2}, "");
    qh_tensor *reserved = random_tensor(&r, QH_F32, 1, (int64_t[]){2}, "__metadata__");
    qh_tensor *bad_utf8 = random_tensor(&r, QH_F32, 1, (int64_t[]){2}, "w\xff");
    const qh_tensor *dup[] = {a, b}, *noname[] = {a, unnamed}, *res[] = {reserved}, *utf[] = {bad_utf8};
    const char *keys[] = {"k", "k"}, *values[] = {"1", "2"};
    expect_write_refused(*state, dup, 2, NULL, NULL, 0, "duplicate tensor name 'same'");
    expect_write_refused(*state, noname, 2, NULL, NULL, 0, "tensor #1 has no name");
    expect_write_refused(*state, res, 1, NULL, NULL, 0, "reserved");
    expect_write_refused(*state, utf, 1, NULL, NULL, 0, "UTF-8");
    expect_write_refused(*state, dup, 1, keys, values, 2, "duplicate metadata key 'k'");
    qh_tensor_free(a);
    qh_tensor_free(b);
    qh_tensor_free(unnamed);
    qh_tensor_free(reserved);
    qh_tensor_free(bad_utf8);
}

static void test_write_missing_directory(void **state)
{
    const st_tmpdir *d = *state;
    char path[512];
    st_tmpdir_file(d, "no/such/dir/x.safetensors", path, sizeof path);
    qh_rng r;
    qh_rng_seed(&r, 9);
    qh_tensor *t = random_tensor(&r, QH_F32, 1, (int64_t[]){4}, "w");
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)&t, 1, NULL, NULL, 0, &err), QH_E_IO);
    assert_non_null(strstr(err.msg, "no/such/dir"));
    assert_null(strchr(err.msg, '\n'));
    assert_int_equal(st_tmpdir_count(d, NULL), 0);
    qh_tensor_free(t);
}

/* Overwriting goes through temporary + rename: the old file is replaced and no *.tmp.* file stays. */
static void test_write_leaves_no_temporary(void **state)
{
    const st_tmpdir *d = *state;
    char path[512];
    st_tmpdir_file(d, "model.safetensors", path, sizeof path);
    qh_rng r;
    qh_rng_seed(&r, 11);
    qh_error err = {{0}};
    for (int round = 0; round < 3; round++) {
        qh_tensor *t = random_tensor(&r, QH_F16, 1, (int64_t[]){round + 1}, "w");
        assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)&t, 1, NULL, NULL, 0, &err), QH_OK);
        assert_int_equal(st_tmpdir_count(d, ".tmp."), 0);
        assert_int_equal(st_tmpdir_count(d, NULL), 1);
        qh_safetensors *st = NULL;
        assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
        assert_int_equal(st->tensors[0]->shape[0], round + 1);
        assert_memory_equal(st->tensors[0]->data, t->data, qh_tensor_nbytes(t));
        qh_safetensors_free(st);
        qh_tensor_free(t);
    }
}

static void test_read_missing_file(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "absent.safetensors", path, sizeof path);
    qh_safetensors *st = (qh_safetensors *)&st; /* must be reset to NULL */
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_E_IO);
    assert_null(st);
    assert_non_null(strstr(err.msg, "absent.safetensors: cannot open: No such file"));
}

static char *inspect_to_string(const char *path, qh_status *status, qh_error *err)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    *status = qh_safetensors_inspect(path, out, err);
    fclose(out);
    return text;
}

static void test_inspect(void **state)
{
    char path[512];
    st_tmpdir_file(*state, "pruned.safetensors", path, sizeof path);
    /* fc.weight: 8 elements, 6 zeros (one of them -0.0); fc.bias: 4 int8, 1 zero; total 12 params, 7 zeros */
    qh_tensor *w = qh_tensor_new(QH_F32, 2, (int64_t[]){2, 4}, NULL);
    qh_tensor *b = qh_tensor_new(QH_I8, 1, (int64_t[]){4}, NULL);
    qh_tensor_set_name(w, "fc.weight");
    qh_tensor_set_name(b, "fc.bias");
    qh_tensor_f32(w)[1] = 0.5f;
    qh_tensor_f32(w)[6] = -3.0f;
    qh_tensor_f32(w)[3] = -0.0f;
    ((int8_t *)b->data)[0] = 1;
    ((int8_t *)b->data)[2] = -1;
    ((int8_t *)b->data)[3] = 7;
    const qh_tensor *t[] = {w, b};
    const char *keys[] = {"zeta", "alpha"}, *values[] = {"last", "multi\nline"};
    qh_error err = {{0}};
    assert_int_equal(qh_safetensors_write(path, t, 2, keys, values, 2, &err), QH_OK);
    qh_status status;
    char *text = inspect_to_string(path, &status, &err);
    assert_int_equal(status, QH_OK);
    const char *want[] = {"fc.weight  F32      [2, 4]", "            8             6     75.00%\n",
                          "fc.bias    I8       [4]", "            4             1     25.00%\n",
                          "total: 2 tensors, 12 params, 36 bytes, 7 zeros, sparsity 58.33%\n",
                          "metadata:\n  alpha = multi\\nline\n  zeta = last\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(text, want[i]))
            fail_msg("inspect output lacks '%s':\n%s", want[i], text);
    assert_true(strstr(text, "fc.weight") < strstr(text, "fc.bias"));
    free(text);

    text = inspect_to_string("/nonexistent/x.safetensors", &status, &err);
    assert_int_equal(status, QH_E_IO);
    assert_string_equal(text, "");
    free(text);
    qh_tensor_free(w);
    qh_tensor_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_every_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_missing_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_leaves_no_temporary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inspect, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
