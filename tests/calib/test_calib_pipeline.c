/* test_calib_pipeline.c - GPFQ through qh_pipeline_run (synthetic data): a trained LeNet-5 quantized
 * with calibration lands on the alphabet and writes calibration-<stage>.csv; 1 and 2 threads give
 * byte-identical models; a pruned model stays pruned; batch norms fold; the data-free switch skips
 * the capture; and bad input fails with clear messages (bits < 1, no or too few calibration images,
 * a target pattern matching nothing, an L0 lambda beyond the alphabet). */
#include <math.h>
#include <unistd.h>

#include "pipeline_util.h"
#include "qhost/qh_safetensors.h"

static char tmpdir[256];
static char trained[600]; /* a LeNet-5 trained once by setup */
static qh_registry *reg;

static const char head[] = "[pipeline]\nseed = 3\nthreads = %d\nstages = %s\n[model]\nplugin = %s\n%s\n"
                           "[dataset]\nplugin = synthetic\nclasses = 4\ntrain_size = 400\ntest_size = 80\n"
                           "noise = 1.0\n%s\n";

static const char *write_ini(const char *name, int threads, const char *stages, const char *model,
                             const char *model_extra, const char *dataset_extra, const char *rest)
{
    return pu_write_ini(tmpdir, name, rest, head, threads, stages, model, model_extra, dataset_extra);
}

/* Loads and runs; config errors go to diag_out and return QH_E_CONFIG. */
static qh_status run_ini(const char *ini, const char *out, FILE *diag_out, qh_error *err)
{
    return pu_run_ini(reg, ini, out, false, diag_out, NULL, NULL, err);
}

static int setup(void **state)
{
    (void)state;
    const char *libs[] = {"/plugins/models/lenet5/qh-model-lenet5.so", "/plugins/models/resnet20/qh-model-resnet20.so",
                          "/plugins/datasets/synthetic/qh-dataset-synthetic.so",
                          "/plugins/pruners/magnitude/qh-pruner-magnitude.so",
                          "/plugins/quantizers/gpfq/qh-quantizer-gpfq.so", NULL};
    if (pu_setup(tmpdir, sizeof tmpdir, "qh-calib", libs, &reg) != 0)
        return -1;
    qh_error err;
    char out[400];
    snprintf(out, sizeof out, "%s/train", tmpdir);
    const char *ini = write_ini("train", 2, "train, export", "lenet5", "", "",
                                "[train]\ntype = train\nepochs = 2\nbatch_size = 32\nlr = 0.05\n"
                                "[export]\ntype = export\nfile = lenet.safetensors\n");
    if (run_ini(ini, out, NULL, &err) != QH_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    snprintf(trained, sizeof trained, "weights = %s/lenet.safetensors", out);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return pu_teardown(tmpdir, reg);
}

static const char gpfq_stage[] = "[gpfq]\ntype = quantize\nplugin = gpfq\ncalibration_images = 96\n"
                                 "calibration_batch = 40\n%s\n";

static qh_status run_gpfq(const char *name, int threads, const char *extra, const char *model_extra, char *out,
                          size_t out_size, qh_error *err)
{
    char rest[1024];
    snprintf(rest, sizeof rest, gpfq_stage, extra);
    snprintf(out, out_size, "%s/%s", tmpdir, name);
    return run_ini(write_ini(name, threads, "gpfq", "lenet5", model_extra, "", rest), out, NULL, err);
}

/* Every weight of the quantized tensors lies on step * k, |k| <= K, per the .quantized file's step. */
static void test_gpfq_stage(void **state)
{
    (void)state;
    char out[600], path[700];
    qh_error err;
    assert_int_equal(run_gpfq("lenet_gpfq", 2, "bits = 3", trained, out, sizeof out, &err), QH_OK);
    snprintf(path, sizeof path, "%s/calibration-gpfq.csv", out);
    char *csv = pu_slurp(path, NULL);
    assert_non_null(csv);
    assert_non_null(
        strstr(csv, "layer,index,treatment,rows,cols,samples,capture_s,quantize_s,relative_output_error\n"));
    /* conv1: 96 images x int(0.25 * 36 + 1) patches of 1 x 5 x 5; fc1: 96 rows of 400 */
    assert_non_null(strstr(csv, "conv1.weight,0,calibrated,6,25,960,"));
    assert_non_null(strstr(csv, "fc1.weight,2,calibrated,120,400,96,"));
    assert_non_null(strstr(csv, "fc3.weight,4,calibrated,4,84,96,"));
    /* each layer's relative output error also in metrics.json (its "layers" entry) and report.md */
    const char *row = strstr(csv, "fc1.weight,");
    const char *eol = row ? strchr(row, '\n') : NULL, *last = eol;
    while (last && last > row && last[-1] != ',')
        last--;
    assert_non_null(last);
    double rel = strtod(last, NULL);
    assert_true(rel > 0.0 && rel < 1.0);
    free(csv);
    snprintf(path, sizeof path, "%s/metrics.json", out);
    char *json = pu_slurp(path, NULL);
    const char *entry = strstr(json, "\"name\": \"fc1.weight\"");
    const char *next = entry ? strstr(entry + 1, "\"name\":") : NULL;
    const char *key = entry ? strstr(entry, "\"relative_output_error\": ") : NULL;
    if (!key || (next && key > next))
        fail_msg("no relative_output_error in fc1.weight's metrics.json entry");
    assert_true(fabs(strtod(key + strlen("\"relative_output_error\": "), NULL) - rel) < 1e-6);
    free(json);
    snprintf(path, sizeof path, "%s/report.md", out);
    char *md = pu_slurp(path, NULL), line[64];
    snprintf(line, sizeof line, " fc1.weight %.4f", rel);
    assert_non_null(strstr(md, "Relative output error of each calibrated layer on the calibration data"));
    if (!strstr(md, line))
        fail_msg("no '%s' in report.md", line);
    free(md);
    snprintf(path, sizeof path, "%s/model-gpfq.safetensors", out);
    qh_safetensors *st = NULL;
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    const qh_tensor *w = qh_safetensors_find(st, "fc1.weight");
    assert_non_null(w);
    float step = 0.0f;
    for (int64_t i = 0; i < qh_tensor_numel(w); i++) /* the smallest nonzero magnitude is the step */
        if (qh_tensor_f32(w)[i] != 0.0f && (step == 0.0f || fabsf(qh_tensor_f32(w)[i]) < step))
            step = fabsf(qh_tensor_f32(w)[i]);
    int distinct[9] = {0};
    for (int64_t i = 0; i < qh_tensor_numel(w); i++) {
        float k = qh_tensor_f32(w)[i] / step;
        assert_true(fabsf(k - roundf(k)) < 1e-4f);
        assert_true(fabsf(k) <= 4.0f); /* 3 bits: K = 4 */
        distinct[(int)roundf(k) + 4] = 1;
    }
    int levels = 0;
    for (int i = 0; i < 9; i++)
        levels += distinct[i];
    assert_true(levels >= 5); /* really quantized, and not to a couple of values */
    qh_safetensors_free(st);
}

static void test_threads_identical(void **state)
{
    (void)state;
    char out1[600], out2[600];
    qh_error err;
    assert_int_equal(run_gpfq("t1", 1, "stochastic = true\nretain_rate = 0.5\n", trained, out1, sizeof out1, &err),
                     QH_OK);
    assert_int_equal(run_gpfq("t2", 2, "stochastic = true\nretain_rate = 0.5\n", trained, out2, sizeof out2, &err),
                     QH_OK);
    pu_assert_same_file(out1, out2, "model-gpfq.safetensors");
}

/* Prune half the weights, then GPFQ: the pruned weights are still exactly 0 afterwards. */
static void test_pruned_stays_pruned(void **state)
{
    (void)state;
    char out[600], path[700], rest[1024];
    qh_error err;
    snprintf(rest, sizeof rest,
             "[prune]\ntype = prune\nplugin = magnitude\nsparsity = 0.5\n"
             "%s",
             "");
    char stage[512];
    snprintf(stage, sizeof stage, gpfq_stage, "");
    strncat(rest, stage, sizeof rest - strlen(rest) - 1);
    snprintf(out, sizeof out, "%s/pruned", tmpdir);
    assert_int_equal(run_ini(write_ini("pruned", 2, "prune, gpfq", "lenet5", trained, "", rest), out, NULL, &err),
                     QH_OK);
    snprintf(path, sizeof path, "%s/model-gpfq.safetensors", out);
    qh_safetensors *st = NULL;
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    const char *names[] = {"conv2.weight", "fc1.weight"};
    for (int k = 0; k < 2; k++) {
        char mask_name[64];
        snprintf(mask_name, sizeof mask_name, "%s_mask", names[k]);
        const qh_tensor *w = qh_safetensors_find(st, names[k]), *m = qh_safetensors_find(st, mask_name);
        assert_non_null(w);
        assert_non_null(m);
        int64_t pruned = 0;
        for (int64_t i = 0; i < qh_tensor_numel(w); i++)
            if (!((const uint8_t *)m->data)[i]) {
                assert_true(qh_tensor_f32(w)[i] == 0.0f);
                pruned++;
            }
        assert_true(pruned > 0);
    }
    qh_safetensors_free(st);
}

/* ResNet-20 (random init, 4 images): BN folded into the convs before GPFQ. */
static void test_fold_batchnorm(void **state)
{
    (void)state;
    char out[600], path[700];
    qh_error err;
    const char *rest = "[gpfq]\ntype = quantize\nplugin = gpfq\nbits = 4\ncalibration_images = 4\n"
                       "fold_batchnorm = true\ntargets = layer1.0.*\n";
    snprintf(out, sizeof out, "%s/fold", tmpdir);
    assert_int_equal(run_ini(write_ini("fold", 2, "gpfq", "resnet20", "", "", rest), out, NULL, &err), QH_OK);
    snprintf(path, sizeof path, "%s/model-gpfq.safetensors", out);
    qh_safetensors *st = NULL;
    assert_int_equal(qh_safetensors_read(path, &st, &err), QH_OK);
    /* a fresh BN has var 1; folded, its variance is 1 - eps (scale exactly 1), untargeted ones keep 1 */
    const qh_tensor *folded = qh_safetensors_find(st, "layer1.0.bn2.running_var");
    const qh_tensor *kept = qh_safetensors_find(st, "layer1.1.bn1.running_var");
    for (int c = 0; c < 16; c++) {
        assert_true(qh_tensor_f32(folded)[c] == (float)(1.0 - 1e-5));
        assert_true(qh_tensor_f32(kept)[c] == 1.0f);
    }
    qh_safetensors_free(st);
}

static void test_data_free_skips_capture(void **state)
{
    (void)state;
    char out[600], path[700];
    qh_error err;
    assert_int_equal(run_gpfq("free", 2, "data_free = true\n", trained, out, sizeof out, &err), QH_OK);
    snprintf(path, sizeof path, "%s/calibration-gpfq.csv", out);
    assert_int_equal(access(path, F_OK), -1);
}

/* ---------------------------------------------------------------- bad input */

static void expect_config_error(const char *name, const char *extra, const char *msg)
{
    char rest[1024], out[600];
    snprintf(rest, sizeof rest, gpfq_stage, extra);
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    FILE *diag = tmpfile();
    qh_error err = {{0}};
    assert_int_equal(run_ini(write_ini(name, 2, "gpfq", "lenet5", trained, "", rest), out, diag, &err), QH_E_CONFIG);
    rewind(diag);
    char text[2048] = "";
    size_t n = fread(text, 1, sizeof text - 1, diag);
    text[n] = '\0';
    fclose(diag);
    if (!strstr(text, msg))
        fail_msg("expected '%s' in:\n%s", msg, text);
}

static void expect_run_error(const char *name, const char *extra, const char *dataset_extra, const char *msg)
{
    char rest[1024], out[600];
    snprintf(rest, sizeof rest, gpfq_stage, extra);
    snprintf(out, sizeof out, "%s/%s", tmpdir, name);
    qh_error err = {{0}};
    assert_int_not_equal(run_ini(write_ini(name, 2, "gpfq", "lenet5", trained, dataset_extra, rest), out, NULL, &err),
                         QH_OK);
    if (!strstr(err.msg, msg))
        fail_msg("expected '%s' in '%s'", msg, err.msg);
}

static void test_bad_input(void **state)
{
    (void)state;
    expect_config_error("bits0", "bits = 0", "bits: 0 is below the minimum 1");
    expect_config_error("rate0", "retain_rate = 0", "retain_rate: 0 is below the minimum 0.0001");
    expect_run_error("toofew", "calibration_split = test", "",
                     "[gpfq]: calibration_images = 96, but the test split has only 80 images");
    expect_run_error("limit", "", "train_limit = 50",
                     "[gpfq]: calibration_images = 96, but the train split has only 50 images (train_limit)");
    expect_run_error("nomatch", "targets = nothing.*", "", "targets 'nothing.*' (exclude '') match no parameter");
    expect_run_error("l0", "regularizer = l0\nlambda = 50", "",
                     "tensor conv1.weight: regularizer L0: lambda = 50 is not below scalar * radius");
}

static void test_no_images(void **state)
{
    (void)state;
    char out[600];
    qh_error err;
    snprintf(out, sizeof out, "%s/zero", tmpdir);
    FILE *diag = tmpfile();
    const char *rest = "[gpfq]\ntype = quantize\nplugin = gpfq\ncalibration_images = 0\n";
    assert_int_equal(run_ini(write_ini("zero", 2, "gpfq", "lenet5", trained, "", rest), out, diag, &err), QH_E_CONFIG);
    rewind(diag);
    char text[1024] = "";
    size_t n = fread(text, 1, sizeof text - 1, diag);
    text[n] = '\0';
    fclose(diag);
    assert_non_null(strstr(text, "calibration_images: 0 is below the minimum 1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpfq_stage),
        cmocka_unit_test(test_threads_identical),
        cmocka_unit_test(test_pruned_stays_pruned),
        cmocka_unit_test(test_fold_batchnorm),
        cmocka_unit_test(test_data_free_skips_capture),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_no_images),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
