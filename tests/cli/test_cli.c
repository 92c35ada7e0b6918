/* test_cli.c - the qhost command line as a user meets it: exit codes, messages, listings, a full
 * pipeline run with its outputs, reloading an exported model, and bad input of every kind
 * leaving no output behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qhost/qh_registry.h"

#define CLI_DATA QH_TEST_DATA "/cli"

static char tmpdir[64];
static char out_text[1 << 16], err_text[1 << 16];

static void slurp(const char *path, char *buf, size_t size)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs `qhost ARGS` with stdout/stderr captured; returns the exit status. */
static int qhost(const char *fmt, ...)
{
    char args[2048], cmd[4096], o[128], e[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(o, sizeof o, "%s/stdout", tmpdir);
    snprintf(e, sizeof e, "%s/stderr", tmpdir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s' </dev/null", QHOST_EXE, args, o, e);
    int st = system(cmd);
    slurp(o, out_text, sizeof out_text);
    slurp(e, err_text, sizeof err_text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qh-cli-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_cli_usage_and_flags(void **state)
{
    (void)state;
    assert_int_equal(qhost("--help"), 0);
    assert_non_null(strstr(out_text, "usage: qhost"));
    assert_non_null(strstr(out_text, "--list-plugins"));
    assert_int_equal(qhost("--version"), 0);
    assert_non_null(strstr(out_text, "plugin ABI 1.2"));
    assert_int_equal(qhost("--frobnicate x.ini"), 2);
    assert_non_null(strstr(err_text, "unknown option '--frobnicate'"));
    assert_int_equal(qhost("-j"), 2);
    assert_non_null(strstr(err_text, "needs a value"));
    assert_int_equal(qhost("-j zero x.ini"), 2);
    assert_non_null(strstr(err_text, "-j 'zero': expected a thread count"));
    assert_int_equal(qhost(""), 2);
    assert_non_null(strstr(err_text, "no pipeline given"));
    assert_int_equal(qhost("a.ini b.ini"), 2);
    assert_int_equal(qhost("--set nodot=3 x.ini"), 2);
    assert_non_null(strstr(err_text, "--set 'nodot=3': expected SECTION.KEY=VALUE"));
    assert_int_equal(qhost("/nonexistent/p.ini"), 2);
    assert_non_null(strstr(err_text, "/nonexistent/p.ini"));
}

/* Every parameter of every plugin appears with its help text. */
static void test_cli_list_plugins_verbose(void **state)
{
    (void)state;
    assert_int_equal(qhost("--list-plugins -v"), 0);
    qh_registry *reg = qh_registry_new();
    qh_error err;
    assert_int_equal(qh_registry_add_dir(reg, QH_BUILD_ROOT "/plugins", &err), QH_OK);
    assert_true(qh_registry_count(reg) >= 6);
    for (int i = 0; i < qh_registry_count(reg); i++) {
        const qh_plugin *p = qh_registry_get(reg, i);
        assert_non_null(strstr(out_text, p->summary));
        for (const qh_param *q = p->params; q->name; q++) {
            assert_non_null(q->help);
            assert_non_null(strstr(out_text, q->help));
        }
    }
    qh_registry_free(reg);
    assert_int_equal(qhost("--describe quantizer/linear"), 0);
    assert_non_null(strstr(out_text, "granularity"));
    assert_int_equal(qhost("--describe nosuch"), 2);
    assert_non_null(strstr(err_text, "no plugin named 'nosuch'"));
}

static void test_cli_bad_pipeline_reports_all_and_writes_nothing(void **state)
{
    (void)state;
    char out[256], golden[4096], want[8192];
    snprintf(out, sizeof out, "%s/never", tmpdir);
    assert_int_equal(qhost("-o '%s' " CLI_DATA "/bad_cli.ini", out), 2);
    slurp(CLI_DATA "/bad_cli.err", golden, sizeof golden);
    /* @INI@ stands for the path given on the command line */
    size_t w = 0;
    for (const char *p = golden; *p && w + 64 < sizeof want;) {
        if (strncmp(p, "@INI@", 5) == 0) {
            w += (size_t)snprintf(want + w, sizeof want - w, "%s", CLI_DATA "/bad_cli.ini");
            p += 5;
        } else {
            want[w++] = *p++;
        }
    }
    want[w] = '\0';
    assert_string_equal(err_text, want);
    assert_false(exists(out));
}

static bool same_file(const char *a, const char *b)
{
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
    return system(cmd) == 0;
}

/* An interrupted run continued with --resume ends with the same files as an uninterrupted one. */
static void test_cli_resume_is_bit_identical(void **state)
{
    (void)state;
    char full[256], cut[256], a[512], b[512];
    snprintf(full, sizeof full, "%s/full", tmpdir);
    snprintf(cut, sizeof cut, "%s/cut", tmpdir);
    assert_int_equal(qhost("-q -o '%s' " CLI_DATA "/synthetic_full.ini", full), 0);
    assert_int_not_equal(setenv("QHOST_TEST_STOP_AFTER_EPOCH", "2", 1), -1);
    int rc = qhost("-q -o '%s' " CLI_DATA "/synthetic_full.ini", cut);
    unsetenv("QHOST_TEST_STOP_AFTER_EPOCH");
    assert_int_equal(rc, 1);
    snprintf(a, sizeof a, "%s/final.safetensors", cut);
    assert_false(exists(a));
    assert_int_equal(qhost("-q --resume -o '%s' " CLI_DATA "/synthetic_full.ini", cut), 0);
    const char *files[] = {"final.safetensors", "final.quantized.safetensors", "model-train.safetensors",
                           "model-finetune.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", full, files[i]);
        snprintf(b, sizeof b, "%s/%s", cut, files[i]);
        if (!same_file(a, b))
            fail_msg("%s differs after --resume", files[i]);
    }
}

/* Every pipeline in examples/ stays valid. */
static void test_cli_examples_validate(void **state)
{
    (void)state;
    DIR *d = opendir(QH_SOURCE_ROOT "/examples");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0)
            continue;
        if (qhost("--check '" QH_SOURCE_ROOT "/examples/%s'", e->d_name) != 0)
            fail_msg("examples/%s:\n%s", e->d_name, err_text);
        n++;
    }
    closedir(d);
    assert_true(n >= 3);
}

/* `qhost --summary` prints exactly the parameter counts of the seeds' models (issue 3). */
static void test_cli_summary_parameter_counts(void **state)
{
    (void)state;
    static const struct {
        const char *args;
        const char *params;
    } cases[] = {
        {"alexnet", "params: 57047114\n"},
        {"alexnet_tv", "params: 44428106\n"},
        {"alexnet_small", "params: 21594506\n"},
        {"resnet20", "params: 272474\n"},
        {"resnet20 --set shortcut=A", "params: 269722\n"},
        {"resnet18_cifar", "params: 11173962\n"},
        {"mobilenetv2_cifar", "params: 2236682\n"},
        {"lenet5 --set input=1x28x28", "params: 61706\n"},
        {"lenet5 --set variant=gpfq --set input=1x32x32", "params: 61706\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (qhost("--summary %s", cases[i].args) != 0 || !strstr(out_text, cases[i].params) ||
            !strstr(out_text, "\nmacs: "))
            fail_msg("--summary %s:\n%s%s", cases[i].args, out_text, err_text);
    }
    /* The GPFQ LeNet (a plain chain, no batch norm to fold): at inference two buffers of the largest
     * output (6x28x28 = 4704 floats) take turns: 37632 B; in training all 11 outputs are kept
     * (14602 floats), the gradients take turns in two such buffers (9408) and the gradient scratch
     * holds the largest input (4704): 28714 floats = 114856 B. */
    assert_int_equal(qhost("--summary lenet5 --set variant=gpfq --set input=1x32x32"), 0);
    assert_non_null(strstr(out_text, "buffers per sample: inference 36.8 KiB, training 112.2 KiB\n"));
    /* ResNet-20 with option-A shortcuts: 40.55 MMAC per 3x32x32 image, as the anchors count it */
    assert_int_equal(qhost("--summary resnet20 --set shortcut=A"), 0);
    assert_non_null(strstr(out_text, "macs: 40551040\n"));
    assert_int_equal(qhost("--summary resnet20 --set shortcut=C"), 2);
    assert_non_null(strstr(err_text, "'C' is not one of: B, A"));
    assert_int_equal(qhost("--summary alexnet_small --set input=3x8x8"), 2);
    assert_non_null(strstr(err_text, "too small"));
    assert_int_equal(qhost("--summary nosuchnet"), 2);
    assert_non_null(strstr(err_text, "unknown model 'nosuchnet'"));
    /* the AlexNets' shared input stage: a resize below 63 pixels, or none on a small input */
    const char *alexnets[] = {"alexnet", "alexnet_tv"};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(qhost("--summary %s --set resize=10", alexnets[i]), 2);
        assert_non_null(strstr(err_text, "resize = 10 is below the smallest size it can take, 63"));
        assert_int_equal(qhost("--summary %s --set resize=0 --set input=3x32x32", alexnets[i]), 2);
        assert_non_null(strstr(err_text, "a 32x32 input is too small (at least 63x63)"));
        assert_int_equal(qhost("--summary %s --set resize=0 --set input=3x64x64", alexnets[i]), 0);
    }
}

static json_t *load_json(const char *dir, const char *file);

/* `--summary MODEL --set weights=FILE` shows the model as the file loads it: a structured prune
 * with physical removal writes a compacted MLP, whose summary counts what metrics.json says is left. */
static void test_cli_summary_of_compacted_model(void **state)
{
    (void)state;
    char out[256];
    snprintf(out, sizeof out, "%s/compact", tmpdir);
    assert_int_equal(qhost("-q -o '%s' " CLI_DATA "/structured_physical.ini", out), 0);
    json_t *m = load_json(out, "metrics.json");
    json_t *sm = json_object_get(json_array_get(json_object_get(m, "stages"), 1), "structured");
    json_int_t before = json_integer_value(json_object_get(sm, "params_before"));
    json_int_t after = json_integer_value(json_object_get(sm, "params_after"));
    assert_true(after > 0 && after < before);
    json_decref(m);
    /* --resume over the finished run keeps the prune stage's reports (they used to be dropped) */
    assert_int_equal(qhost("-q --resume -o '%s' " CLI_DATA "/structured_physical.ini", out), 0);
    m = load_json(out, "metrics.json");
    json_t *st = json_array_get(json_object_get(m, "stages"), 1);
    sm = json_object_get(st, "structured");
    assert_int_equal(json_integer_value(json_object_get(sm, "params_after")), after);
    assert_true(json_is_true(json_object_get(sm, "physical")));
    json_t *ev = json_object_get(st, "prune_events");
    assert_int_equal(json_array_size(ev), 1);
    assert_float_equal(json_real_value(json_object_get(json_array_get(ev, 0), "target")), 0.5, 1e-12);
    json_decref(m);
    char line[64];
    assert_int_equal(qhost("--summary mlp --set hidden=32 --set input=1x8x8"), 0);
    snprintf(line, sizeof line, "params: %lld\n", (long long)before);
    if (!strstr(out_text, line))
        fail_msg("no '%s' in:\n%s", line, out_text);
    assert_int_equal(qhost("--summary mlp --set hidden=32 --set input=1x8x8 --set weights='%s/model-shrink.safetensors'",
                           out),
                     0);
    snprintf(line, sizeof line, "params: %lld\n", (long long)after);
    if (!strstr(out_text, line))
        fail_msg("no '%s' in:\n%s", line, out_text);
    /* a file that does not fit the model: the loader's message, exit 2 */
    assert_int_equal(qhost("--summary mlp --set hidden=16 --set input=1x8x8 --set weights='%s/model-train.safetensors'",
                           out),
                     2);
    assert_non_null(strstr(err_text, "model-train.safetensors"));
}

/* Every malformed pipeline of tests/data/ini: exit 2, a file:line message, no output directory. */
static void test_cli_every_bad_ini_exits_2(void **state)
{
    (void)state;
    DIR *d = opendir(QH_TEST_DATA "/ini");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "bad_", 4) != 0 || len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0)
            continue;
        char out[256], ini[512], where[600];
        snprintf(out, sizeof out, "%s/bad-out", tmpdir);
        snprintf(ini, sizeof ini, QH_TEST_DATA "/ini/%s", e->d_name);
        snprintf(where, sizeof where, "%s:", ini);
        int rc = qhost("-o '%s' '%s'", out, ini);
        if (rc != 2 || !strstr(err_text, where) || !strstr(err_text, ": error: ") || exists(out))
            fail_msg("%s: exit %d, stderr:\n%s", ini, rc, err_text);
        n++;
    }
    closedir(d);
    assert_true(n >= 12);
}

static void test_cli_runtime_error_names_file(void **state)
{
    (void)state;
    char out[256];
    snprintf(out, sizeof out, "%s/never2", tmpdir);
    assert_int_equal(qhost("-q -o '%s' " CLI_DATA "/missing_data.ini", out), 1);
    assert_non_null(strstr(err_text, "/nonexistent/fashion/train-images-idx3-ubyte.gz"));
    assert_false(exists(out));
    /* garbage weights: the model file is named, nothing is written */
    char junk[256];
    snprintf(junk, sizeof junk, "%s/junk.safetensors", tmpdir);
    FILE *f = fopen(junk, "w");
    fputs("this is not a safetensors file at all", f);
    fclose(f);
    assert_int_equal(qhost("-q -o '%s' --set model.weights='%s' " CLI_DATA "/reload.ini", out, junk), 1);
    assert_non_null(strstr(err_text, junk));
    assert_false(exists(out));
    /* targets that match no parameter: a configuration error found before any stage runs */
    assert_int_equal(qhost("-q -o '%s' --set prune.targets='conv*' " CLI_DATA "/synthetic_full.ini", out), 2);
    assert_non_null(strstr(err_text, "synthetic_full.ini:30: error: [prune]: targets 'conv*' (exclude '') match no "
                                     "parameter of model mlp; it has: fc1.weight, fc1.bias, fc2.weight, fc2.bias"));
    assert_false(exists(out));
    assert_int_equal(qhost("inspect '%s'", junk), 1);
    assert_non_null(strstr(err_text, junk));
}

static json_t *load_json(const char *dir, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s", path, je.text);
    return j;
}

static void test_cli_full_pipeline_outputs_and_reload(void **state)
{
    (void)state;
    char out[256];
    snprintf(out, sizeof out, "%s/run", tmpdir);
    assert_int_equal(qhost("-o '%s' " CLI_DATA "/synthetic_full.ini", out), 0);
    assert_non_null(strstr(err_text, "stage 8/8 [export]"));
    const char *files[] = {"metrics.json", "results.csv", "report.md", "manifest.json", "model-train.safetensors",
                           "model-prune.safetensors", "model-finetune.safetensors", "model-quant.safetensors",
                           "final.safetensors", "final.quantized.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        if (!exists(p))
            fail_msg("missing output %s", p);
    }
    DIR *d = opendir(out);
    for (struct dirent *e; (e = readdir(d));)
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);

    json_t *m = load_json(out, "metrics.json");
    json_t *stages = json_object_get(m, "stages");
    assert_int_equal(json_array_size(stages), 8);
    double quant_top1 = -1, dense_bytes = 0, quant_bytes = 0;
    for (size_t i = 0; i < json_array_size(stages); i++) {
        json_t *s = json_array_get(stages, i);
        const char *type = json_string_value(json_object_get(s, "type"));
        const char *name = json_string_value(json_object_get(s, "name"));
        assert_non_null(json_object_get(s, "wall_s"));
        assert_non_null(json_object_get(s, "sparsity"));
        assert_non_null(json_object_get(s, "model_bytes"));
        bool eval = strcmp(type, "evaluate") == 0;
        assert_int_equal(json_object_get(s, "top1") != NULL, eval);
        assert_int_equal(json_object_get(s, "top5") != NULL, eval);
        assert_int_equal(json_object_get(s, "loss") != NULL, eval);
        if (strcmp(name, "eval_dense") == 0) {
            assert_true(json_real_value(json_object_get(s, "top1")) > 40.0);
            dense_bytes = (double)json_integer_value(json_object_get(s, "model_bytes"));
            assert_float_equal(json_real_value(json_object_get(s, "sparsity")), 0.0, 1e-12);
        }
        if (strcmp(name, "eval_quant") == 0) {
            quant_top1 = json_real_value(json_object_get(s, "top1"));
            quant_bytes = (double)json_integer_value(json_object_get(s, "model_bytes"));
            assert_float_equal(json_real_value(json_object_get(s, "sparsity")), 0.6, 0.01);
        }
        if (strcmp(name, "train") == 0)
            assert_int_equal(json_array_size(json_object_get(s, "epochs")), 3);
    }
    assert_true(quant_bytes > 0 && quant_bytes < dense_bytes / 4);
    json_decref(m);

    json_t *man = load_json(out, "manifest.json");
    assert_non_null(strstr(json_string_value(json_object_get(man, "pipeline_text")), "[pipeline]"));
    assert_int_equal(json_integer_value(json_object_get(man, "seed")), 3);
    assert_int_equal(json_integer_value(json_object_get(man, "threads")), 2);
    assert_true(json_array_size(json_object_get(man, "plugins")) == 4);
    json_t *p0 = json_array_get(json_object_get(man, "plugins"), 0);
    assert_string_equal(json_string_value(json_object_get(p0, "name")), "mlp");
    assert_string_equal(json_string_value(json_object_get(p0, "abi")), "1.2");
    assert_non_null(json_string_value(json_object_get(p0, "version")));
    assert_non_null(json_string_value(json_object_get(json_object_get(man, "dataset"), "identity")));
    assert_non_null(json_object_get(json_object_get(man, "host"), "cpu"));
    json_decref(man);

    char p[512], text[8192];
    snprintf(p, sizeof p, "%s/report.md", out);
    slurp(p, text, sizeof text);
    assert_non_null(strstr(text, "| stage | type | top-1 % | top-5 % | loss | sparsity % | model bytes | wall s |"));
    snprintf(p, sizeof p, "%s/results.csv", out);
    slurp(p, text, sizeof text);
    assert_non_null(strstr(text, "stage,type,wall_s,top1,top5,loss,sparsity,model_bytes\n"));

    /* The exported model evaluates identically after reloading it. */
    char out2[256];
    snprintf(out2, sizeof out2, "%s/reload", tmpdir);
    assert_int_equal(qhost("-q -o '%s' --set model.weights='%s/final.safetensors' " CLI_DATA "/reload.ini", out2, out),
                     0);
    json_t *m2 = load_json(out2, "metrics.json");
    double top1 = json_real_value(json_object_get(json_array_get(json_object_get(m2, "stages"), 0), "top1"));
    assert_float_equal(top1, quant_top1, 1e-9);
    double sp = json_real_value(json_object_get(json_array_get(json_object_get(m2, "stages"), 0), "sparsity"));
    assert_float_equal(sp, 0.6, 0.01);
    json_decref(m2);

    assert_int_equal(qhost("inspect '%s/final.safetensors'", out), 0);
    assert_non_null(strstr(out_text, "fc1.weight_mask"));
    assert_non_null(strstr(out_text, "fc2.bias"));
    assert_int_equal(qhost("--check " CLI_DATA "/synthetic_full.ini"), 0);
    assert_non_null(strstr(out_text, "OK (8 stages)"));
}

/* A model with batch norm: metrics.json and report.md give each tensor's stored width (fp32 32 bits,
 * the int64 num_batches_tracked counters 64) and bytes. */
static void test_cli_bn_model_stored_widths(void **state)
{
    (void)state;
    char ini[256], out[256];
    snprintf(ini, sizeof ini, "%s/bn.ini", tmpdir);
    snprintf(out, sizeof out, "%s/bn", tmpdir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fputs("[pipeline]\nseed = 1\nstages = eval\n[model]\nplugin = resnet20\n[dataset]\nplugin = synthetic\n"
          "channels = 3\nheight = 8\nwidth = 8\ntrain_size = 8\ntest_size = 8\n[eval]\ntype = evaluate\n",
          f);
    fclose(f);
    assert_int_equal(qhost("-q -o '%s' '%s'", out, ini), 0);
    json_t *m = load_json(out, "metrics.json");
    json_t *layers = json_object_get(json_array_get(json_object_get(m, "stages"), 0), "layers");
    int counters = 0, floats = 0;
    for (size_t i = 0; i < json_array_size(layers); i++) {
        json_t *l = json_array_get(layers, i);
        const char *name = json_string_value(json_object_get(l, "name"));
        json_int_t bits = json_integer_value(json_object_get(l, "bits"));
        json_int_t numel = json_integer_value(json_object_get(l, "numel"));
        json_int_t bytes = json_integer_value(json_object_get(l, "bytes"));
        if (strstr(name, "num_batches_tracked")) {
            assert_int_equal(bits, 64);
            assert_int_equal(bytes, 8);
            counters++;
        } else {
            assert_int_equal(bits, 32);
            assert_int_equal(bytes, 4 * numel);
            floats++;
        }
    }
    assert_int_equal(counters, 21); /* resnet20 (1x1-conv shortcuts): stem + 9 blocks x 2 + 2 shortcuts */
    assert_true(floats > 0);
    json_decref(m);
    char p[512], text[1 << 15];
    snprintf(p, sizeof p, "%s/report.md", out);
    slurp(p, text, sizeof text);
    assert_non_null(strstr(text, "| bn1.num_batches_tracked | 1 | 100.00 | 64 | 8 |"));
    assert_non_null(strstr(text, "| conv1.weight | 432 | 0.00 | 32 | 1728 |"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_usage_and_flags),
        cmocka_unit_test(test_cli_list_plugins_verbose),
        cmocka_unit_test(test_cli_bad_pipeline_reports_all_and_writes_nothing),
        cmocka_unit_test(test_cli_summary_parameter_counts),
        cmocka_unit_test(test_cli_summary_of_compacted_model),
        cmocka_unit_test(test_cli_examples_validate),
        cmocka_unit_test(test_cli_resume_is_bit_identical),
        cmocka_unit_test(test_cli_every_bad_ini_exits_2),
        cmocka_unit_test(test_cli_runtime_error_names_file),
        cmocka_unit_test(test_cli_full_pipeline_outputs_and_reload),
        cmocka_unit_test(test_cli_bn_model_stored_widths),
    };
    return cmocka_run_group_tests_name("cli", tests, setup, teardown);
}
