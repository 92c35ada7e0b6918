/* test_ini.c - the line-aware INI reader: line numbers, lowercasing, values exactly as iniparser
 * reads them, and the problems iniparser hides (duplicates) or rejects (syntax, long lines), each
 * reported once with its line while the rest of the file still loads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "qhost/qh_config.h"

typedef struct fixture {
    char dir[256];
    char path[512];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/qh-test-ini-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof fx->path, "%s/t.ini", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

static void write_file(const fixture *fx, const char *text, size_t n)
{
    FILE *f = fopen(fx->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, n, f), n);
    fclose(f);
}

/* Loads text; returns the diagnostics with the temporary directory replaced by nothing. */
static qh_ini *load(const fixture *fx, const char *text, size_t n, char *diag, size_t size, int *n_errors)
{
    write_file(fx, text, n);
    qh_diag d = {.out = tmpfile()};
    assert_non_null(d.out);
    qh_ini *ini = qh_ini_load(fx->path, &d);
    rewind(d.out);
    size_t got = fread(diag, 1, size - 1, d.out);
    diag[got] = '\0';
    fclose(d.out);
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/", fx->dir);
    char *p;
    while ((p = strstr(diag, prefix)))
        memmove(p, p + strlen(prefix), strlen(p + strlen(prefix)) + 1);
    *n_errors = d.n_errors;
    return ini;
}

static qh_ini *load_str(const fixture *fx, const char *text, char *diag, size_t size, int *n_errors)
{
    return load(fx, text, strlen(text), diag, size, n_errors);
}

static void expect_entry(const qh_ini *ini, const char *sec, const char *key, const char *value, int line)
{
    const qh_ini_section *s = qh_ini_find_section(ini, sec);
    if (!s)
        fail_msg("no section [%s]", sec);
    const qh_ini_entry *e = qh_ini_find(s, key);
    if (!e)
        fail_msg("no key %s in [%s]", key, sec);
    assert_string_equal(e->value, value);
    assert_int_equal(e->line, line);
}

static void test_values_and_lines(void **state)
{
    const fixture *fx = *state;
    char diag[4096];
    int n_err;
    qh_ini *ini = load_str(fx,
                           "; comment\n"
                           "# another\n"
                           "\n"
                           "[ First ]\n"                     /* 4 */
                           "  Key = Value  \n"               /* 5 */
                           "quoted = \"a;b # c\" ; note\n"   /* 6 */
                           "single = 'x#y'\n"                /* 7 */
                           "inline = v ; comment\n"          /* 8 */
                           "hash = v2 # comment\n"           /* 9 */
                           "empty =\n"                       /* 10 */
                           "empty_quotes = \"\"\n"           /* 11 */
                           "joined = a \\\n"                 /* 12 */
                           "  b\n"                           /* 13 */
                           "eq = a=b\r\n"                    /* 14 */
                           "[second]\n"                      /* 15 */
                           "k=1\n",                          /* 16 */
                           diag, sizeof diag, &n_err);
    assert_non_null(ini);
    assert_string_equal(diag, "");
    assert_int_equal(n_err, 0);
    assert_int_equal(ini->n_sections, 2);
    assert_string_equal(ini->sections[0].name, "first");
    assert_int_equal(ini->sections[0].line, 4);
    assert_string_equal(ini->sections[1].name, "second");
    assert_int_equal(ini->sections[1].line, 15);
    assert_int_equal(ini->sections[0].n_entries, 9);
    expect_entry(ini, "first", "key", "Value", 5);
    expect_entry(ini, "first", "quoted", "a;b # c", 6);
    expect_entry(ini, "first", "single", "x#y", 7);
    expect_entry(ini, "first", "inline", "v", 8);
    expect_entry(ini, "first", "hash", "v2", 9);
    expect_entry(ini, "first", "empty", "", 10);
    expect_entry(ini, "first", "empty_quotes", "", 11);
    expect_entry(ini, "first", "joined", "a   b", 12); /* as iniparser joins continued lines */
    expect_entry(ini, "first", "eq", "a=b", 14);
    expect_entry(ini, "second", "k", "1", 16);
    assert_null(qh_ini_find(&ini->sections[1], "missing"));
    assert_null(qh_ini_find_section(ini, "third"));
    qh_ini_free(ini);
}

static void test_duplicates(void **state)
{
    const fixture *fx = *state;
    char diag[4096];
    int n_err;
    qh_ini *ini = load_str(fx,
                           "[train]\n"      /* 1 */
                           "lr = 0.1\n"     /* 2 */
                           "epochs = 2\n"   /* 3 */
                           "LR = 0.2\n"     /* 4 */
                           "[eval]\n"       /* 5 */
                           "[TRAIN]\n"      /* 6 */
                           "epochs = 5\n"   /* 7 */
                           "momentum = 0\n", /* 8 */
                           diag, sizeof diag, &n_err);
    assert_non_null(ini);
    assert_string_equal(diag, "t.ini:4: error: duplicate key 'lr' in [train] (first set on line 2)\n"
                              "t.ini:6: error: duplicate section [train] (first on line 1)\n"
                              "t.ini:7: error: duplicate key 'epochs' in [train] (first set on line 3)\n");
    assert_int_equal(n_err, 3);
    /* the repeated section continues the first, as in iniparser */
    assert_int_equal(ini->n_sections, 2);
    expect_entry(ini, "train", "momentum", "0", 8);
    expect_entry(ini, "train", "lr", "0.2", 2); /* iniparser keeps the last value; the line is the first */
    qh_ini_free(ini);
}

static void test_syntax_errors_do_not_hide_the_rest(void **state)
{
    const fixture *fx = *state;
    char diag[4096];
    int n_err;
    qh_ini *ini = load_str(fx,
                           "top = 1\n"          /* 1 */
                           "[a]\n"              /* 2 */
                           "epochs 10\n"        /* 3 */
                           "= 3\n"              /* 4 */
                           "[b\n"               /* 5 */
                           "[c] ; note\n"       /* 6 */
                           "x = \"lost\"\n"     /* 7 */
                           "[bad:name]\n"       /* 8 */
                           "skipped = 1\n"      /* 9 */
                           "[with-dash]\n"      /* 10 */
                           "[]\n"               /* 11 */
                           "[d]\n"              /* 12 */
                           "y = 2\n",           /* 13 */
                           diag, sizeof diag, &n_err);
    assert_non_null(ini);
    assert_string_equal(diag,
                        "t.ini:1: error: key 'top' outside any section\n"
                        "t.ini:3: error: syntax error: 'epochs 10' is neither a [section] header nor 'key = value'\n"
                        "t.ini:4: error: syntax error: '= 3' is neither a [section] header nor 'key = value'\n"
                        "t.ini:5: error: syntax error: '[b' is neither a [section] header nor 'key = value'\n"
                        "t.ini:6: error: syntax error: '[c] ; note' is neither a [section] header nor 'key = value'\n"
                        "t.ini:8: error: invalid section name [bad:name]: ':' is not allowed\n"
                        "t.ini:10: error: invalid section name [with-dash]: use only letters, digits and '_'\n"
                        "t.ini:11: error: invalid section name []: use only letters, digits and '_'\n");
    assert_int_equal(n_err, 8);
    assert_int_equal(ini->n_sections, 2);
    /* after a broken header its keys belong to no section, rather than silently to [a] */
    assert_int_equal(qh_ini_find_section(ini, "a")->n_entries, 0);
    expect_entry(ini, "d", "y", "2", 13);
    qh_ini_free(ini);
}

static void test_long_lines(void **state)
{
    const fixture *fx = *state;
    char diag[4096];
    int n_err;
    char text[4096];
    /* iniparser's limit: 1022 bytes before the newline */
    for (int len = 1021; len <= 1023; len++) {
        int v = len - 4; /* "k = " */
        int n = snprintf(text, sizeof text, "[s]\nk = %0*d\nnext = ok\n", v, 7);
        qh_ini *ini = load(fx, text, (size_t)n, diag, sizeof diag, &n_err);
        assert_non_null(ini);
        if (len <= 1022) {
            assert_string_equal(diag, "");
            const qh_ini_entry *e = qh_ini_find(qh_ini_find_section(ini, "s"), "k");
            assert_non_null(e);
            assert_int_equal(strlen(e->value), (size_t)v);
        } else {
            assert_string_equal(diag, "t.ini:2: error: line is too long (iniparser reads at most 1022 bytes a line)\n");
            assert_null(qh_ini_find(qh_ini_find_section(ini, "s"), "k"));
        }
        expect_entry(ini, "s", "next", "ok", 3);
        qh_ini_free(ini);
    }
    /* the same limit holds for a line without a final newline */
    int n = snprintf(text, sizeof text, "[s]\nk = %0*d", 1019, 7);
    qh_ini *ini = load(fx, text, (size_t)n, diag, sizeof diag, &n_err);
    assert_int_equal(n_err, 1);
    qh_ini_free(ini);
}

static void test_odd_bytes(void **state)
{
    const fixture *fx = *state;
    char diag[4096];
    int n_err;
    static const char nul[] = "[s]\na = 1\nb = x\0y\nc = 3\n";
    qh_ini *ini = load(fx, nul, sizeof nul - 1, diag, sizeof diag, &n_err);
    assert_non_null(ini);
    assert_string_equal(diag, "t.ini:3: error: line contains a NUL byte\n");
    expect_entry(ini, "s", "c", "3", 4);
    qh_ini_free(ini);

    ini = load_str(fx, "[s]\na = 1\nb = 2 \\\n", diag, sizeof diag, &n_err);
    assert_string_equal(diag, "t.ini:3: error: line ends in '\\' but the file ends there\n");
    expect_entry(ini, "s", "a", "1", 2);
    qh_ini_free(ini);

    ini = load_str(fx, "", diag, sizeof diag, &n_err);
    assert_non_null(ini);
    assert_int_equal(ini->n_sections, 0);
    assert_int_equal(n_err, 0);
    qh_ini_free(ini);
}

static void test_unreadable(void **state)
{
    const fixture *fx = *state;
    char path[600];
    snprintf(path, sizeof path, "%s/missing.ini", fx->dir);
    qh_diag d = {.out = NULL}; /* counting only */
    assert_null(qh_ini_load(path, &d));
    assert_int_equal(d.n_errors, 1);
    assert_null(qh_ini_load(fx->dir, &d)); /* a directory cannot be read as a file */
    assert_int_equal(d.n_errors, 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_and_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_errors_do_not_hide_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_odd_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
