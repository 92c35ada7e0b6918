/* test_pipeline_config.c - whole pipeline files validated against a fake registry: good files load
 * with the right values, and each malformed file under tests/data/ini/bad_*.ini reports exactly the
 * lines of its golden bad_*.err (every problem, not just the first). QH_UPDATE_GOLDEN=1 rewrites
 * the goldens instead (review the diff). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_registry.h"
#include "qhost/qh_config.h"

#define INI_DIR QH_TEST_DATA "/ini"

static qh_registry *reg;

static int group_setup(void **state)
{
    (void)state;
    reg = fake_registry_new();
    return reg ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    qh_registry_free(reg);
    return 0;
}

static char *read_all(FILE *f)
{
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    return buf;
}

static char *read_path(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *s = read_all(f);
    fclose(f);
    return s;
}

/* Removes every "<INI_DIR>/" so messages read "bad_x.ini:3: error: ..." on any checkout. */
static void strip_dir(char *s)
{
    const char *dir = INI_DIR "/";
    size_t n = strlen(dir);
    char *p;
    while ((p = strstr(s, dir)))
        memmove(p, p + n, strlen(p + n) + 1);
}

/* Loads INI_DIR/name and returns what was reported (caller frees); *pc gets the result. */
static char *load_capture(const char *name, const qh_registry *r, const qh_override *ov, int n_ov,
                          qh_pipeline_config **pc, int *n_errors)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", INI_DIR, name);
    qh_diag d = {.out = tmpfile()};
    assert_non_null(d.out);
    *pc = qh_pipeline_config_load(path, r, ov, n_ov, &d);
    char *text = read_all(d.out);
    fclose(d.out);
    strip_dir(text);
    *n_errors = d.n_errors;
    return text;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---------------------------------------------------------------- malformed files */

static const char *const bad_files[] = {
    "bad_unknown_section",   "bad_unknown_key",      "bad_duplicate_key",     "bad_duplicate_section",
    "bad_int",               "bad_double",           "bad_range",             "bad_enum",
    "bad_bool",              "bad_missing_required", "bad_missing_stages",    "bad_missing_sections",
    "bad_unknown_plugin",    "bad_stage_type",       "bad_stage_list",        "bad_syntax",
    "bad_sparsity_one",      "bad_plugin_on_evaluate", "bad_many",          "bad_train_engine",
    "bad_sweep_values",      "bad_sweep_stages",
};

static void check_bad_file(const char *base)
{
    char name[256], golden_path[1024];
    snprintf(name, sizeof name, "%s.ini", base);
    snprintf(golden_path, sizeof golden_path, "%s/%s.err", INI_DIR, base);
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture(name, reg, NULL, 0, &pc, &n_errors);
    if (getenv("QH_UPDATE_GOLDEN")) {
        FILE *f = fopen(golden_path, "wb");
        assert_non_null(f);
        fputs(got, f);
        fclose(f);
    }
    char *want = read_path(golden_path);
    if (!want)
        fail_msg("missing golden %s", golden_path);
    print_message("%s.ini: %d errors\n", base, n_errors);
    assert_null(pc);
    assert_true(n_errors > 0);
    assert_int_equal(n_errors, count_lines(got)); /* each error is one line */
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void test_bad_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_files / sizeof bad_files[0]; i++)
        check_bad_file(bad_files[i]);
}

/* Every problem of a file with many is reported, one per line, in file order. */
static void test_all_errors_reported(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("bad_many.ini", reg, NULL, 0, &pc, &n_errors);
    assert_null(pc);
    assert_true(n_errors >= 14);
    const char *must[] = {
        "bad_many.ini:3: error: [pipeline] seed: -1 is below the minimum 0\n",
        "bad_many.ini:4: error: [pipeline] threads: 'two' is not an integer\n",
        "bad_many.ini:5: error: [pipeline] stages: no section [missing] for stage 'missing'\n",
        "bad_many.ini:9: error: [model] hidden: 0 is below the minimum 1\n",
        "bad_many.ini:21: error: duplicate key 'epochs' in [train] (first set on line 20)\n",
        "bad_many.ini:22: error: unknown key 'lrr' in [train]; did you mean 'lr'?\n",
        "bad_many.ini:34: error: [int8] granularity: 'row' is not one of: tensor, channel\n",
        "bad_many.ini:40: error: unknown section [extra]; add it to 'stages' in [pipeline] if it is a stage\n",
    };
    int last = -1;
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        const char *at = strstr(got, must[i]);
        if (!at)
            fail_msg("not reported: %s\nreported:\n%s", must[i], got);
        assert_true(at - got > last); /* file order */
        last = (int)(at - got);
    }
    free(got);
}

/* ---------------------------------------------------------------- good files */

static void test_good_train_engine(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_train_engine.ini", reg, NULL, 0, &pc, &n_errors);
    assert_string_equal(got, "");
    assert_non_null(pc);
    free(got);
    assert_string_equal(pc->model_host->weights_exclude, "fc2.*, head.*");
    const qh_train_config *t = pc->stages[0].host_cfg;
    assert_int_equal(t->optimizer, QH_OPT_ADAMW);
    assert_float_equal(t->beta1, 0.8, 0);
    assert_float_equal(t->beta2, 0.99, 0);
    assert_float_equal(t->eps, 1e-6, 0);
    assert_int_equal(t->schedule, QH_LR_PLATEAU);
    assert_int_equal(t->warmup_epochs, 2);
    assert_int_equal(t->plateau_metric, QH_MONITOR_TEST_TOP1);
    assert_int_equal(t->plateau_patience, 3);
    assert_float_equal(t->plateau_factor, 0.5, 0);
    assert_float_equal(t->plateau_threshold, 0.01, 0);
    assert_float_equal(t->label_smoothing, 0.1, 0);
    assert_int_equal(t->early_stop_patience, 4);
    assert_int_equal(t->early_stop_metric, QH_MONITOR_TEST_TOP1);
    assert_int_equal(t->keep_best, 1);
    assert_string_equal(t->freeze, "features.*");
    assert_int_equal(t->checkpoint, 0);
    qh_pipeline_config_free(pc);

    /* the defaults: sgd, PyTorch's Adam and plateau constants, checkpoints on, nothing frozen */
    qh_train_config *d = qh_config_new(qh_stage_params(QH_STAGE_TRAIN), sizeof *d);
    assert_non_null(d);
    assert_int_equal(d->optimizer, QH_OPT_SGD);
    assert_float_equal(d->beta1, 0.9, 0);
    assert_float_equal(d->beta2, 0.999, 0);
    assert_float_equal(d->eps, 1e-8, 0);
    assert_int_equal(d->plateau_metric, QH_MONITOR_TEST_LOSS);
    assert_int_equal(d->plateau_patience, 10);
    assert_float_equal(d->plateau_factor, 0.1, 0);
    assert_float_equal(d->plateau_threshold, 1e-4, 0);
    assert_int_equal(d->warmup_epochs, 0);
    assert_float_equal(d->label_smoothing, 0, 0);
    assert_int_equal(d->early_stop_patience, 0);
    assert_int_equal(d->keep_best, 0);
    assert_int_equal(d->checkpoint, 1);
    assert_string_equal(d->freeze, "");
    qh_config_free(qh_stage_params(QH_STAGE_TRAIN), d);
    got = load_capture("good_minimal.ini", reg, NULL, 0, &pc, &n_errors);
    assert_non_null(pc);
    free(got);
    assert_string_equal(pc->model_host->weights_exclude, "");
    qh_pipeline_config_free(pc);
}

static void test_good_full(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_full.ini", reg, NULL, 0, &pc, &n_errors);
    assert_string_equal(got, "");
    assert_non_null(pc);
    free(got);

    assert_string_equal(pc->global->name, "good_full");
    assert_string_equal(pc->global->output, "runs/good_full");
    assert_int_equal(pc->global->seed, 42);
    assert_int_equal(pc->global->threads, 2);

    assert_string_equal(pc->model->name, "tiny");
    const tiny_cfg *m = pc->model_cfg;
    assert_int_equal(m->hidden, 32);
    assert_int_equal(m->act, 1);
    assert_int_equal(m->bias, 1);
    assert_string_equal(m->init, "kaiming");
    assert_string_equal(pc->model_host->weights, "init/tiny.safetensors");

    assert_string_equal(pc->dataset->name, "toy");
    const toy_cfg *ds = pc->dataset_cfg;
    assert_string_equal(ds->root, "/data/with;semicolon"); /* quoted: the ';' is no comment */
    assert_int_equal(ds->n, 100);
    assert_int_equal(ds->train_limit, 5); /* the host key of that name took the value */
    assert_int_equal(pc->dataset_limits->train_limit, 1000);
    assert_int_equal(pc->dataset_limits->test_limit, 8);

    const char *names[] = {"train", "eval_fp32", "prune50", "finetune", "int8", "export"};
    qh_stage_type types[] = {QH_STAGE_TRAIN, QH_STAGE_EVALUATE, QH_STAGE_PRUNE,
                             QH_STAGE_TRAIN, QH_STAGE_QUANTIZE, QH_STAGE_EXPORT};
    int lines[] = {20, 31, 36, 43, 48, 54};
    assert_int_equal(pc->n_stages, 6);
    for (int i = 0; i < 6; i++) {
        assert_string_equal(pc->stages[i].name, names[i]);
        assert_int_equal(pc->stages[i].type, types[i]);
        assert_int_equal(pc->stages[i].line, lines[i]);
        assert_non_null(pc->stages[i].host_cfg);
    }

    const qh_train_config *t = pc->stages[0].host_cfg;
    assert_int_equal(t->epochs, 3);
    assert_int_equal(t->batch_size, 128);
    assert_true(t->lr == 0.1 && t->momentum == 0 && t->gamma == 0.5);
    assert_int_equal(t->nesterov, 1);
    assert_int_equal(t->schedule, QH_LR_STEP);
    assert_int_equal(t->step_size, 2);
    assert_int_equal(t->eval_each_epoch, 1);
    assert_null(pc->stages[0].plugin);

    const qh_evaluate_config *e = pc->stages[1].host_cfg;
    assert_int_equal(e->split, QH_SPLIT_TRAIN);
    assert_int_equal(e->batch_size, 512);

    const qh_prune_config *p = pc->stages[2].host_cfg;
    assert_true(p->sparsity == 0.5);
    assert_string_equal(p->targets, "*.weight");
    assert_string_equal(p->exclude, "fc3.*");
    assert_string_equal(pc->stages[2].plugin->name, "magnitude");
    assert_int_equal(((const magnitude_cfg *)pc->stages[2].plugin_cfg)->scope, 1);

    const qh_train_config *ft = pc->stages[3].host_cfg;
    assert_true(ft->lr == 0.01); /* "LR": keys are case-insensitive */
    assert_int_equal(ft->schedule, QH_LR_COSINE);

    const linear_cfg *q = pc->stages[4].plugin_cfg;
    assert_int_equal(q->bits, 4);
    assert_int_equal(q->granularity, 1);
    assert_int_equal(q->symmetric, 1);

    const qh_export_config *x = pc->stages[5].host_cfg;
    assert_string_equal(x->file, "model.safetensors");
    assert_int_equal(x->masks, 0);

    char *text = read_path(INI_DIR "/good_full.ini");
    assert_string_equal(pc->text, text);
    free(text);
    qh_pipeline_config_free(pc);
}

static void test_good_minimal_defaults(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_minimal.ini", reg, NULL, 0, &pc, &n_errors);
    assert_string_equal(got, "");
    free(got);
    assert_non_null(pc);
    assert_string_equal(pc->global->name, "good_minimal");
    assert_string_equal(pc->global->output, "runs/good_minimal");
    assert_int_equal(pc->global->seed, 0);
    assert_int_equal(pc->global->threads, 0);
    assert_int_equal(pc->dataset_limits->train_limit, 0);
    assert_null(pc->model_host->weights);
    assert_int_equal(pc->n_stages, 1);
    const qh_evaluate_config *e = pc->stages[0].host_cfg;
    assert_int_equal(e->batch_size, 256);
    assert_int_equal(e->split, QH_SPLIT_TEST);
    const toy_cfg *ds = pc->dataset_cfg;
    assert_null(ds->root);
    assert_true(ds->noise == 0.1);
    qh_pipeline_config_free(pc);
}

/* ---------------------------------------------------------------- --set overrides */

static void test_overrides_apply(void **state)
{
    (void)state;
    const qh_override ov[] = {
        {"pipeline", "seed", "7"},
        {"EVAL", "Batch_Size", "64"},     /* names are case-insensitive, like the file's */
        {"model", "hidden", "16"},        /* replaces the file's 8 */
        {"dataset", "noise", "0.5"},      /* a key the file does not set */
        {"pipeline", "name", "ovr"},      /* the default output follows the name */
        {"model", "hidden", "24"},        /* a later --set wins */
    };
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_minimal.ini", reg, ov, 6, &pc, &n_errors);
    assert_string_equal(got, "");
    free(got);
    assert_non_null(pc);
    assert_int_equal(pc->global->seed, 7);
    assert_string_equal(pc->global->output, "runs/ovr");
    assert_int_equal(((const qh_evaluate_config *)pc->stages[0].host_cfg)->batch_size, 64);
    assert_int_equal(((const tiny_cfg *)pc->model_cfg)->hidden, 24);
    assert_true(((const toy_cfg *)pc->dataset_cfg)->noise == 0.5);
    qh_pipeline_config_free(pc);
}

static void test_overrides_errors(void **state)
{
    (void)state;
    const qh_override ov[] = {
        {"eval", "batch_size", "abc"},
        {"nosuch", "key", "1"},
        {"eval", "bogus", "1"},
        {"eval", "", "1"},
        {"model", "plugin", "wide"}, /* [model] hidden is not a parameter of wide */
    };
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_minimal.ini", reg, ov, 5, &pc, &n_errors);
    assert_null(pc);
    /* lines of the file first, then the overrides in command-line order */
    assert_string_equal(got, "good_minimal.ini:6: error: unknown key 'hidden' in [model]\n"
                             "--set eval.batch_size: error: [eval] batch_size: 'abc' is not an integer\n"
                             "--set nosuch.key: error: no section [nosuch] in good_minimal.ini\n"
                             "--set eval.bogus: error: unknown key 'bogus' in [eval]\n"
                             "--set eval.: error: expected section.key=value\n");
    assert_int_equal(n_errors, 5);
    free(got);
}

/* ---------------------------------------------------------------- other failures */

static void test_unreadable_file(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("does_not_exist.ini", reg, NULL, 0, &pc, &n_errors);
    assert_null(pc);
    assert_string_equal(got, "does_not_exist.ini: error: cannot read file: No such file or directory\n");
    assert_int_equal(n_errors, 1);
    free(got);
}

static void test_empty_registry(void **state)
{
    (void)state;
    qh_pipeline_config *pc;
    int n_errors;
    char *got = load_capture("good_minimal.ini", NULL, NULL, 0, &pc, &n_errors);
    assert_null(pc);
    assert_string_equal(got, "good_minimal.ini:5: error: unknown model 'tiny' in [model]; available: (none)\n"
                             "good_minimal.ini:9: error: unknown dataset 'toy' in [dataset]; available: (none)\n");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_good_full),
        cmocka_unit_test(test_good_train_engine),
        cmocka_unit_test(test_good_minimal_defaults),
        cmocka_unit_test(test_overrides_apply),
        cmocka_unit_test(test_overrides_errors),
        cmocka_unit_test(test_unreadable_file),
        cmocka_unit_test(test_empty_registry),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
