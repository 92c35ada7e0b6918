/* test_schema.c - parameter tables applied to config blocks: defaults, strict parsing of every
 * type, range and choice messages, formatting, suggestions, and the host's own tables (including
 * that docs/pipeline-reference.md documents them exactly). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "qhost/qh_config.h"

typedef struct all_cfg {
    int64_t count;
    double rate;
    int flag;
    int mode;
    const char *label;
    const char *file;
    int64_t need;
} all_cfg;

static const char *const mode_choices[] = {"tensor", "channel", "block", NULL};

static const qh_param all_params[] = {
    QH_P_INT("count", all_cfg, count, 8, 2, 8, "bits", "an int"),
    QH_P_DOUBLE("rate", all_cfg, rate, 0.25, -1, 1.5, NULL, "a double"),
    QH_P_BOOL("flag", all_cfg, flag, 1, "a bool"),
    QH_P_ENUM("mode", all_cfg, mode, 1, mode_choices, "an enum"),
    QH_P_STRING("label", all_cfg, label, "hello", "a string"),
    QH_P_PATH("file", all_cfg, file, NULL, "a path"),
    {"need", QH_PARAM_INT, offsetof(all_cfg, need), {.i = 5}, 0, 0, NULL, QH_PF_REQUIRED, NULL, "required"},
    QH_P_END,
};

static all_cfg *new_cfg(void)
{
    all_cfg *c = qh_config_new(all_params, sizeof *c);
    assert_non_null(c);
    return c;
}

/* Sets key=value and expects failure with exactly `msg` (NULL: expects success). */
static void expect_set(all_cfg *c, const char *key, const char *value, const char *msg)
{
    qh_error err = {{0}};
    qh_status st = qh_config_set(all_params, c, key, value, &err);
    if (!msg) {
        if (st != QH_OK)
            fail_msg("%s = '%s' failed: %s", key, value, err.msg);
        return;
    }
    assert_int_equal(st, QH_E_CONFIG);
    assert_string_equal(err.msg, msg);
}

static void test_defaults(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    assert_int_equal(c->count, 8);
    assert_true(c->rate == 0.25);
    assert_int_equal(c->flag, 1);
    assert_int_equal(c->mode, 1);
    assert_string_equal(c->label, "hello");
    assert_ptr_not_equal(c->label, all_params[4].def.s); /* a copy the block owns */
    assert_null(c->file);
    assert_int_equal(c->need, 0); /* required: no default applied */
    qh_config_free(all_params, c);
    /* an empty table still gives a block */
    void *empty = qh_config_new(NULL, 0);
    assert_non_null(empty);
    qh_config_free(NULL, empty);
}

static void test_int_parsing(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    expect_set(c, "count", "08", NULL); /* base 10, not octal */
    assert_int_equal(c->count, 8);
    expect_set(c, "count", "+3", NULL);
    assert_int_equal(c->count, 3);
    expect_set(c, "count", "abc", "count: 'abc' is not an integer");
    expect_set(c, "count", "1.5", "count: '1.5' is not an integer");
    expect_set(c, "count", "4x", "count: '4x' is not an integer");
    expect_set(c, "count", "", "count: '' is not an integer");
    expect_set(c, "count", "0x4", "count: '0x4' is not an integer");
    expect_set(c, "count", "99999999999999999999", "count: '99999999999999999999' does not fit in a 64-bit integer");
    expect_set(c, "count", "9", "count: 9 is above the maximum 8");
    expect_set(c, "count", "-1", "count: -1 is below the minimum 2");
    assert_int_equal(c->count, 3); /* failures leave the value alone */
    expect_set(c, "need", "-9223372036854775808", NULL);
    assert_true(c->need == INT64_MIN);
    qh_config_free(all_params, c);
}

static void test_double_parsing(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    expect_set(c, "rate", "1e-3", NULL);
    assert_true(c->rate == 1e-3);
    expect_set(c, "rate", ".5", NULL);
    assert_true(c->rate == 0.5);
    expect_set(c, "rate", "-1", NULL); /* bounds are inclusive */
    expect_set(c, "rate", "1.5", NULL);
    expect_set(c, "rate", "fast", "rate: 'fast' is not a number");
    expect_set(c, "rate", "0.5x", "rate: '0.5x' is not a number");
    expect_set(c, "rate", "", "rate: '' is not a number");
    expect_set(c, "rate", "nan", "rate: 'nan' is not a finite number");
    expect_set(c, "rate", "-inf", "rate: '-inf' is not a finite number");
    expect_set(c, "rate", "1e999", "rate: '1e999' is not a finite number");
    expect_set(c, "rate", "1.50001", "rate: 1.50001 is above the maximum 1.5");
    expect_set(c, "rate", "-2", "rate: -2 is below the minimum -1");
    assert_true(c->rate == 1.5);
    qh_config_free(all_params, c);
}

static void test_bool_parsing(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        expect_set(c, "flag", no[i], NULL);
        assert_int_equal(c->flag, 0);
        expect_set(c, "flag", yes[i], NULL);
        assert_int_equal(c->flag, 1);
    }
    const char *msg = "flag: '%s' is not a boolean (use true/false, yes/no, on/off or 1/0)";
    const char *bad[] = {"True", "yes_please", "", "2", "y"};
    for (int i = 0; i < 5; i++) {
        char want[256];
        snprintf(want, sizeof want, msg, bad[i]);
        expect_set(c, "flag", bad[i], want);
    }
    qh_config_free(all_params, c);
}

static void test_enum_and_strings(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    expect_set(c, "mode", "block", NULL);
    assert_int_equal(c->mode, 2);
    expect_set(c, "mode", "Channel", "mode: 'Channel' is not one of: tensor, channel, block");
    expect_set(c, "mode", "", "mode: '' is not one of: tensor, channel, block");
    expect_set(c, "label", "first", NULL);
    expect_set(c, "label", "second", NULL); /* the first copy is freed (ASan would say otherwise) */
    assert_string_equal(c->label, "second");
    expect_set(c, "label", "", NULL);
    assert_string_equal(c->label, "");
    expect_set(c, "file", "a;b/c d.bin", NULL);
    assert_string_equal(c->file, "a;b/c d.bin");
    expect_set(c, "nope", "1", "unknown key 'nope'");
    qh_config_free(all_params, c);
}

static void test_format(void **state)
{
    (void)state;
    all_cfg *c = new_cfg();
    const char *want[] = {"8", "0.25", "true", "channel", "hello", "(unset)", "0"};
    const char *want_def[] = {"8", "0.25", "true", "channel", "hello", "(unset)", "(required)"};
    char buf[64];
    for (int i = 0; all_params[i].name; i++) {
        qh_config_format(&all_params[i], c, buf, sizeof buf);
        assert_string_equal(buf, want[i]);
        qh_param_format_default(&all_params[i], buf, sizeof buf);
        assert_string_equal(buf, want_def[i]);
    }
    c->mode = 7; /* a corrupted block formats safely */
    qh_config_format(&all_params[3], c, buf, sizeof buf);
    assert_string_equal(buf, "(invalid)");
    qh_config_free(all_params, c);
    assert_string_equal(qh_param_type_name(QH_PARAM_BOOL), "bool");
    assert_string_equal(qh_param_type_name(QH_PARAM_INT), "int");
    assert_string_equal(qh_param_type_name(QH_PARAM_DOUBLE), "double");
    assert_string_equal(qh_param_type_name(QH_PARAM_STRING), "string");
    assert_string_equal(qh_param_type_name(QH_PARAM_ENUM), "enum");
    assert_string_equal(qh_param_type_name(QH_PARAM_PATH), "path");
}

static void test_suggest(void **state)
{
    (void)state;
    const qh_param *train = qh_stage_params(QH_STAGE_TRAIN);
    assert_string_equal(qh_param_suggest(train, "epoch"), "epochs");
    assert_string_equal(qh_param_suggest(train, "lrr"), "lr");
    assert_string_equal(qh_param_suggest(train, "l"), "lr");
    assert_string_equal(qh_param_suggest(train, "batchsize"), "batch_size");
    assert_string_equal(qh_param_suggest(train, "momentun"), "momentum");
    assert_string_equal(qh_param_suggest(train, "min-lr"), "min_lr");
    assert_null(qh_param_suggest(train, "x"));        /* shares nothing with "lr" */
    assert_null(qh_param_suggest(train, "colour"));
    assert_null(qh_param_suggest(train, "decay")); /* distance 7 from weight_decay */
    assert_null(qh_param_suggest(train, ""));
    assert_null(qh_param_suggest(NULL, "lr"));
    assert_ptr_equal(qh_param_find(train, "gamma"), &train[8]);
    assert_null(qh_param_find(train, "Gamma"));
}

/* ---------------------------------------------------------------- the host tables */

static void check_table(const qh_param *t, size_t size)
{
    assert_non_null(t);
    void *cfg = qh_config_new(t, size);
    assert_non_null(cfg);
    for (const qh_param *p = t; p->name; p++) {
        assert_true(p->help && p->help[0]);
        assert_true(strcmp(p->name, "type") != 0 && strcmp(p->name, "plugin") != 0);
        assert_true(p->offset < size);
        char buf[64];
        qh_param_format_default(p, buf, sizeof buf);
        /* each default (but a required key's) passes the table's own checks */
        if (!(p->flags & QH_PF_REQUIRED) && !(p->type == QH_PARAM_STRING || p->type == QH_PARAM_PATH)) {
            qh_error err;
            if (qh_config_set(t, cfg, p->name, buf, &err) != QH_OK)
                fail_msg("default of %s: %s", p->name, err.msg);
        }
    }
    qh_config_free(t, cfg);
}

static void test_host_tables(void **state)
{
    (void)state;
    check_table(qh_global_params(), sizeof(qh_global_config));
    check_table(qh_dataset_host_params(), sizeof(qh_dataset_limits));
    check_table(qh_model_host_params(), sizeof(qh_model_host_config));
    size_t sizes[] = {sizeof(qh_train_config), sizeof(qh_evaluate_config), sizeof(qh_prune_config),
                      sizeof(qh_quantize_config), sizeof(qh_export_config)};
    const char *names[] = {"train", "evaluate", "prune", "quantize", "export"};
    for (int t = 0; t < QH_STAGE_TYPE_COUNT; t++) {
        check_table(qh_stage_params((qh_stage_type)t), sizes[t]);
        assert_string_equal(qh_stage_type_name((qh_stage_type)t), names[t]);
    }
    assert_null(qh_stage_params(QH_STAGE_TYPE_COUNT));
    /* enum indices are the C enums */
    qh_train_config *tc = qh_config_new(qh_stage_params(QH_STAGE_TRAIN), sizeof *tc);
    assert_int_equal(tc->schedule, QH_LR_COSINE);
    assert_true(tc->lr == 0.05 && tc->momentum == 0.9);
    qh_config_free(qh_stage_params(QH_STAGE_TRAIN), tc);
    qh_evaluate_config *ec = qh_config_new(qh_stage_params(QH_STAGE_EVALUATE), sizeof *ec);
    assert_int_equal(ec->split, QH_SPLIT_TEST);
    qh_error err;
    assert_int_equal(qh_config_set(qh_stage_params(QH_STAGE_EVALUATE), ec, "split", "train", &err), QH_OK);
    assert_int_equal(ec->split, QH_SPLIT_TRAIN);
    qh_config_free(qh_stage_params(QH_STAGE_EVALUATE), ec);
    assert_true(qh_param_find(qh_stage_params(QH_STAGE_PRUNE), "sparsity")->flags & QH_PF_REQUIRED);
}

/* ---------------------------------------------------------------- docs stay identical to the tables */

/* Keys whose documented range excludes an end (checked in qh_pipeline_config.c). */
static bool in_list(const char *key, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(key, *list) == 0)
            return true;
    return false;
}

static bool open_min(const char *table, const char *key)
{
    static const char *const train[] = {"lr", "gamma", "eps", "plateau_factor", NULL};
    return strcmp(table, "train") == 0 && in_list(key, train);
}

static bool open_max(const char *table, const char *key)
{
    static const char *const train[] = {"momentum", "beta1", "beta2", "plateau_factor", "label_smoothing", NULL};
    return (strcmp(table, "train") == 0 && in_list(key, train)) ||
           (strcmp(table, "prune") == 0 && strcmp(key, "sparsity") == 0);
}

static void doc_bound(double v, char *buf, size_t size)
{
    if (v == (double)(int64_t)v)
        snprintf(buf, size, "%lld", (long long)v);
    else
        snprintf(buf, size, "%g", v);
}

/* "| `epochs` | int | `1` | [1, 10000] | epochs | passes over the training set |" */
static void doc_row(const char *table, const qh_param *p, char *row, size_t size)
{
    char def[128], range[160] = "", lo[32], hi[32];
    qh_param_format_default(p, def, sizeof def);
    char shown_def[160];
    if (def[0] == '(')
        snprintf(shown_def, sizeof shown_def, "%s", def);
    else
        snprintf(shown_def, sizeof shown_def, "`%s`", def[0] ? def : "\"\"");
    if (p->type == QH_PARAM_INT || p->type == QH_PARAM_DOUBLE) {
        doc_bound(p->min, lo, sizeof lo);
        doc_bound(p->max, hi, sizeof hi);
        if ((p->flags & QH_PF_HAS_MIN) && (p->flags & QH_PF_HAS_MAX))
            snprintf(range, sizeof range, "%s%s, %s%s", open_min(table, p->name) ? "(" : "[", lo, hi,
                     open_max(table, p->name) ? ")" : "]");
        else if (p->flags & QH_PF_HAS_MIN)
            snprintf(range, sizeof range, ">= %s", lo);
    } else if (p->type == QH_PARAM_ENUM) {
        size_t used = 0;
        for (int i = 0; p->choices[i]; i++)
            used += (size_t)snprintf(range + used, sizeof range - used, "%s`%s`", i ? ", " : "", p->choices[i]);
    } else if (p->type == QH_PARAM_BOOL) {
        snprintf(range, sizeof range, "true/false");
    }
    snprintf(row, size, "| `%s` | %s | %s | %s | %s | %s |", p->name, qh_param_type_name(p->type), shown_def, range,
             p->unit ? p->unit : "", p->help);
}

static void test_docs_match_tables(void **state)
{
    (void)state;
    char *doc = NULL;
    FILE *f = fopen(QH_TEST_DATA "/../../docs/pipeline-reference.md", "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    doc = malloc((size_t)n + 1);
    assert_non_null(doc);
    assert_int_equal(fread(doc, 1, (size_t)n, f), (size_t)n);
    doc[n] = '\0';
    fclose(f);
    struct {
        const char *name;
        const qh_param *params;
    } tables[] = {
        {"pipeline", qh_global_params()},
        {"model", qh_model_host_params()},
        {"dataset", qh_dataset_host_params()},
        {"train", qh_stage_params(QH_STAGE_TRAIN)},
        {"evaluate", qh_stage_params(QH_STAGE_EVALUATE)},
        {"prune", qh_stage_params(QH_STAGE_PRUNE)},
        {"quantize", qh_stage_params(QH_STAGE_QUANTIZE)},
        {"export", qh_stage_params(QH_STAGE_EXPORT)},
    };
    int missing = 0;
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++) {
        /* each table's rows sit under its own heading, in table order */
        char heading[64];
        snprintf(heading, sizeof heading, "<!-- keys:%s -->", tables[t].name);
        const char *at = strstr(doc, heading);
        if (!at)
            fail_msg("docs/pipeline-reference.md lacks %s", heading);
        for (const qh_param *p = tables[t].params; p->name; p++) {
            char row[1024];
            doc_row(tables[t].name, p, row, sizeof row);
            const char *found = strstr(at, row);
            if (!found) {
                print_error("docs/pipeline-reference.md, after %s, lacks:\n%s\n", heading, row);
                missing++;
            } else {
                at = found;
            }
        }
    }
    free(doc);
    assert_int_equal(missing, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),       cmocka_unit_test(test_int_parsing),
        cmocka_unit_test(test_double_parsing), cmocka_unit_test(test_bool_parsing),
        cmocka_unit_test(test_enum_and_strings), cmocka_unit_test(test_format),
        cmocka_unit_test(test_suggest),        cmocka_unit_test(test_host_tables),
        cmocka_unit_test(test_docs_match_tables),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
