/* test_surgery_pipeline.c - structured pruning through qh_pipeline_run (synthetic data, MLP):
 *  - physical = true removes half of each hidden layer, metrics.json reports parameters, MACs and
 *    inference speed before and after, and the model file reloads into a new run (built at full
 *    size from the plugin) that evaluates identically;
 *  - a masked structured schedule (geometric during fine-tuning) lists every event (epoch, target,
 *    measured sparsity) in metrics.json, exactly as the schedule's arithmetic says; a later
 *    `sparsity = 0, physical = true` stage removes what it masked without changing the function;
 *  - a run interrupted in the fine-tuning after a removal resumes to the same files, byte for byte;
 *  - physical = true with an unstructured pruner or a schedule is refused before anything runs. */
#include <math.h>
#include <unistd.h>

#include <jansson.h>

#include "pipeline_util.h"

static char tmpdir[256];
static qh_registry *reg;

static int setup(void **state)
{
    (void)state;
    const char *libs[] = {"/plugins/models/mlp/qh-model-mlp.so", "/plugins/datasets/synthetic/qh-dataset-synthetic.so",
                          "/plugins/pruners/magnitude/qh-pruner-magnitude.so",
                          "/plugins/pruners/structured/qh-pruner-structured.so", NULL};
    return pu_setup(tmpdir, sizeof tmpdir, "qh-struct", libs, &reg);
}

static int teardown(void **state)
{
    (void)state;
    return pu_teardown(tmpdir, reg);
}

static const char head[] = "[pipeline]\nseed = 3\nthreads = 2\nstages = %s\n[model]\nplugin = mlp\nhidden = 24,16\n%s\n"
                           "[dataset]\nplugin = synthetic\nclasses = 4\nheight = 6\nwidth = 6\ntrain_size = 320\n"
                           "test_size = 160\nnoise = 1.5\n"
                           "[eval]\ntype = evaluate\n";
#define TRAIN "[train]\ntype = train\nepochs = 3\nbatch_size = 32\nlr = 0.05\n"

static const char *write_ini(const char *name, const char *stages, const char *model_extra, const char *rest)
{
    return pu_write_ini(tmpdir, name, rest, head, stages, model_extra);
}

/* Leaves QHOST_TEST_STOP_AFTER_EPOCH to the caller (test_resume_after_removal sets it around runs). */
static qh_status run_ini(const char *ini, const char *out, FILE *diag_out, qh_error *err)
{
    return pu_run_ini(reg, ini, out, false, diag_out, NULL, NULL, err);
}

/* The stage object named `stage` of <dir>/metrics.json (owned by *root). */
static json_t *stage_of(const char *dir, const char *stage, json_t **root)
{
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.json", dir);
    json_error_t je;
    *root = json_load_file(path, 0, &je);
    assert_non_null(*root);
    json_t *stages = json_object_get(*root, "stages");
    for (size_t i = 0; i < json_array_size(stages); i++) {
        json_t *s = json_array_get(stages, i);
        if (strcmp(json_string_value(json_object_get(s, "name")), stage) == 0)
            return s;
    }
    fail_msg("no stage %s in %s", stage, path);
    return NULL;
}

static double num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!v)
        fail_msg("no key %s", key);
    return json_number_value(v);
}

/* One number of stage `stage`: its own key, or one of its object `obj` ("structured"). */
static double metric(const char *dir, const char *stage, const char *obj, const char *key)
{
    json_t *root, *s = stage_of(dir, stage, &root);
    double v = num(obj ? json_object_get(s, obj) : s, key);
    json_decref(root);
    return v;
}

/* mlp 36 -> 24 -> 16 -> 4 and the same with 12 and 8 hidden units */
static const double params_full = 24 * 36 + 24 + 16 * 24 + 16 + 4 * 16 + 4;
static const double params_half = 12 * 36 + 12 + 8 * 12 + 8 + 4 * 8 + 4;

static void test_physical_and_reload(void **state)
{
    (void)state;
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/phys", tmpdir);
    snprintf(b, sizeof b, "%s/reload", tmpdir);
    qh_error err;
    const char *ini = write_ini("phys", "train, p, eval, export", "",
                                TRAIN "[p]\ntype = prune\nplugin = structured\nsparsity = 0.5\nphysical = true\n"
                                "[export]\ntype = export\n");
    assert_int_equal(run_ini(ini, a, NULL, &err), QH_OK);
    json_t *root, *p = stage_of(a, "p", &root), *sm = json_object_get(p, "structured");
    assert_non_null(sm);
    assert_true(json_is_true(json_object_get(sm, "physical")));
    assert_true(num(sm, "groups") == 40 && num(sm, "groups_pruned") == 20);
    assert_true(num(sm, "params_before") == params_full && num(sm, "params_after") == params_half);
    assert_true(num(p, "params") == params_half);
    assert_true(num(sm, "macs_before") == 24 * 36 + 16 * 24 + 4 * 16);
    assert_true(num(sm, "macs_after") == 12 * 36 + 8 * 12 + 4 * 8);
    assert_true(num(sm, "channels_before") == 44 && num(sm, "channels_after") == 24);
    assert_true(num(sm, "batch") == 160 && num(sm, "threads") == 2);
    assert_true(num(sm, "img_s_before") > 0 && num(sm, "img_s_after") > 0);
    json_t *ev = json_object_get(p, "prune_events");
    assert_int_equal(json_array_size(ev), 1);
    assert_null(json_object_get(json_array_get(ev, 0), "epoch")); /* oneshot */
    double top1 = metric(a, "eval", NULL, "top1");
    json_decref(root);

    /* a new run builds the MLP at full size and loads the compacted file into it */
    char rest[700];
    snprintf(rest, sizeof rest, "weights = %s/model-p.safetensors", a);
    ini = write_ini("reload", "eval", rest, "");
    assert_int_equal(run_ini(ini, b, NULL, &err), QH_OK);
    json_t *r2, *e2 = stage_of(b, "eval", &r2);
    assert_true(num(e2, "top1") == top1);
    assert_true(num(e2, "params") == params_half);
    json_decref(r2);
    char report[600];
    snprintf(report, sizeof report, "%s/report.md", a);
    char *text = pu_slurp(report, NULL);
    assert_non_null(strstr(text, "## Structured pruning in [p]"));
    assert_non_null(strstr(text, "| parameters | 1356 | 584 | 0.431 |"));
    free(text);
}

/* Geometric, rate 0.25, per layer: fc1 (24 filters) keeps losing round(s * 24), fc2 round(s * 16);
 * the measured sparsity counts fc3 (not prunable: the model's output) too. */
static void test_events_and_later_compaction(void **state)
{
    (void)state;
    char a[300];
    snprintf(a, sizeof a, "%s/geo", tmpdir);
    qh_error err;
    const char *ini = write_ini("geo", "train, p, finetune, eval_masked, compact, eval", "",
                                TRAIN "[p]\ntype = prune\nplugin = structured\nsparsity = 0.5\nschedule = geometric\n"
                                "during = finetune\nrate = 0.25\n"
                                "[finetune]\ntype = train\nepochs = 4\nbatch_size = 32\nlr = 0.02\n"
                                "[eval_masked]\ntype = evaluate\n"
                                "[compact]\ntype = prune\nplugin = structured\nsparsity = 0\nphysical = true\n");
    assert_int_equal(run_ini(ini, a, NULL, &err), QH_OK);
    json_t *root, *ft = stage_of(a, "finetune", &root), *ev = json_object_get(ft, "prune_events");
    const double targets[3] = {0.25, 1 - 0.75 * 0.75, 1 - 0.75 * 0.75 * 0.75};
    const double zeros[3] = {6 * 36 + 4 * 24, 11 * 36 + 7 * 24, 14 * 36 + 9 * 24}; /* round(s * 24), round(s * 16) */
    assert_int_equal(json_array_size(ev), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(ev, i);
        assert_true(num(e, "epoch") == (double)i);
        assert_true(fabs(num(e, "target") - targets[i]) < 1e-9);
        assert_true(fabs(num(e, "sparsity") - zeros[i] / (params_full - 24 - 16 - 4)) < 1e-9);
    }
    assert_true(metric(a, "compact", "structured", "params_after") ==
                (24 - 14) * 36 + 10 + (16 - 9) * 10 + 7 + 4 * 7 + 4);
    double masked = metric(a, "eval_masked", NULL, "loss"), removed = metric(a, "eval", NULL, "loss");
    assert_true(fabs(masked - removed) < 1e-5);
    json_decref(root);
}

/* Interrupted in the fine-tuning after a physical removal and resumed: the compacted model file is
 * loaded into the full-size graph, the checkpoint continues it, and the files equal those of an
 * uninterrupted run byte for byte. */
static void test_resume_after_removal(void **state)
{
    (void)state;
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/res-a", tmpdir);
    snprintf(b, sizeof b, "%s/res-b", tmpdir);
    qh_error err;
    const char *ini = write_ini("res", "train, p, finetune, eval", "",
                                TRAIN "[p]\ntype = prune\nplugin = structured\nsparsity = 0.5\nphysical = true\n"
                                "[finetune]\ntype = train\nepochs = 3\nbatch_size = 32\nlr = 0.02\n");
    assert_int_equal(run_ini(ini, a, NULL, &err), QH_OK);
    setenv("QHOST_TEST_STOP_AFTER_EPOCH", "2", 1);
    assert_int_equal(run_ini(ini, b, NULL, &err), QH_E_ABORTED); /* in [train] */
    qh_pipeline_config *pc = pu_config_load(reg, ini, NULL);
    assert_int_equal(pu_config_run(pc, reg, b, true, NULL, NULL, &err), QH_E_ABORTED); /* in [finetune] */
    assert_non_null(strstr(err.msg, "finetune"));
    unsetenv("QHOST_TEST_STOP_AFTER_EPOCH");
    assert_int_equal(pu_config_run(pc, reg, b, true, NULL, NULL, &err), QH_OK);
    qh_pipeline_config_free(pc);
    const char *files[] = {"model-p.safetensors", "model-finetune.safetensors"};
    for (int i = 0; i < 2; i++)
        pu_assert_same_file(a, b, files[i]);
    assert_true(metric(b, "eval", NULL, "params") == params_half);
}

static void test_refused(void **state)
{
    (void)state;
    char a[300], msg[4096];
    snprintf(a, sizeof a, "%s/bad", tmpdir);
    qh_error err = {{0}};
    const char *ini = write_ini("bad1", "eval, p", "",
                                "[p]\ntype = prune\nplugin = magnitude\nsparsity = 0.5\nphysical = true\n");
    assert_int_equal(run_ini(ini, a, NULL, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, "bad1.ini:")); /* file:line of the stage */
    assert_non_null(strstr(err.msg, ": error: [p]: physical = true needs a structured pruner"));
    FILE *diag = fmemopen(msg, sizeof msg, "w");
    ini = write_ini("bad2", "eval, p, finetune", "",
                    "[p]\ntype = prune\nplugin = structured\nsparsity = 0.5\nphysical = true\nschedule = agp\n"
                    "during = finetune\n[finetune]\ntype = train\nepochs = 12\n");
    assert_int_equal(run_ini(ini, a, diag, &err), QH_E_CONFIG);
    fclose(diag);
    assert_non_null(strstr(msg, "[p] physical: applies only with schedule = oneshot"));
    ini = write_ini("bad3", "eval, p", "", "[p]\ntype = prune\nplugin = structured\nsparsity = 0.5\n"
                    "targets = fc3.weight\n");
    assert_int_equal(run_ini(ini, a, NULL, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, "targets 'fc3.weight' (exclude '') hold no removable filter"));
    assert_int_equal(access(a, F_OK), -1); /* nothing ran */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_physical_and_reload),
        cmocka_unit_test(test_events_and_later_compaction),
        cmocka_unit_test(test_resume_after_removal),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
