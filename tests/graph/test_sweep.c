/* test_sweep.c - sweeps: lists and ranges of stage keys parse into the right values (float ranges
 * generated, not accumulated), points run in Cartesian order (last key fastest), every point starts
 * from the state the stage received (a quantize and a prune sweep agree with single runs of their
 * points), the CSV has seed 002's columns, the best point continues down the pipeline, an
 * interrupted sweep resumes with only its missing points (torn last line dropped) and ends with the
 * CSV of an uninterrupted run, and a CSV of another sweep is refused. Synthetic data and an MLP. */
#include <math.h>
#include <unistd.h>

#include "config/qh_sweep_values.h"
#include "pipeline/qh_sweep_impl.h"
#include "pipeline_util.h"

static char tmpdir[256];
static qh_registry *reg;

static int setup(void **state)
{
    (void)state;
    const char *libs[] = {"/plugins/models/mlp/qh-model-mlp.so", "/plugins/datasets/synthetic/qh-dataset-synthetic.so",
                          "/plugins/pruners/magnitude/qh-pruner-magnitude.so",
                          "/plugins/quantizers/linear/qh-quantizer-linear.so", NULL};
    return pu_setup(tmpdir, sizeof tmpdir, "qh-sweep", libs, &reg);
}

static int teardown(void **state)
{
    (void)state;
    return pu_teardown(tmpdir, reg);
}

/* ---------------------------------------------------------------- helpers */

typedef struct fake_cfg {
    int64_t bits;
    double scalar;
    int gran;
    int flag;
    const char *name;
} fake_cfg;

static const char *const gran_choices[] = {"tensor", "channel", "block", NULL};
static const qh_param fake_params[] = {
    QH_P_INT("bits", fake_cfg, bits, 4, 1, 16, "bits", "code width"),
    QH_P_DOUBLE("scalar", fake_cfg, scalar, 1.16, 0, 100, NULL, "alphabet scalar"),
    QH_P_ENUM("granularity", fake_cfg, gran, 0, gran_choices, "groups"),
    QH_P_BOOL("flag", fake_cfg, flag, 0, "a switch"),
    QH_P_STRING("name", fake_cfg, name, "a", "a string"),
    QH_P_END,
};

static const qh_param *fake(const char *key) { return qh_param_find(fake_params, key); }

/* Expands text for key; returns the status and leaves the values in ax. */
static qh_status expand(const char *key, const char *text, qh_sweep_axis *ax, qh_error *err)
{
    return qhi_sweep_expand(fake(key), text, ax, err);
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* [pipeline] + [model] + [dataset] + [train] of every run; `rest` holds the other stages. */
static const char head[] = "[pipeline]\nseed = 5\nthreads = 2\nstages = %s\n[model]\nplugin = mlp\nhidden = 24\n"
                           "[dataset]\nplugin = synthetic\nclasses = 4\nheight = 6\nwidth = 6\ntrain_size = 320\n"
                           "test_size = 160\nnoise = 1.5\n"
                           "[train]\ntype = train\nepochs = 3\nbatch_size = 32\nlr = 0.05\n";

static const char *write_ini(const char *name, const char *stages, const char *rest)
{
    return pu_write_ini(tmpdir, name, rest, head, stages);
}

/* Counts the "point k/n" lines a sweep logs (which points ran in this process). */
static int points_run;

static void count_points(qh_log_level level, const char *component, const char *msg, void *user)
{
    (void)level, (void)component, (void)user;
    points_run += strncmp(msg, "point ", 6) == 0;
}

static qh_status run_ini(const char *ini, const char *out, bool resume, const char *stop_point, qh_error *err)
{
    qh_pipeline_config *pc = pu_config_load(reg, ini, NULL);
    if (!pc)
        return QH_E_CONFIG;
    points_run = 0;
    qh_log_set_sink(count_points, NULL);
    qh_status st = pu_config_run(pc, reg, out, resume, "QHOST_TEST_STOP_AFTER_POINT", stop_point, err);
    qh_log_set_sink(NULL, NULL);
    qh_pipeline_config_free(pc);
    return st;
}

static void out_dir(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

static qhi_csv read_csv(const char *dir, const char *stage)
{
    char path[600];
    snprintf(path, sizeof path, "%s/sweep-%s.csv", dir, stage);
    qhi_csv csv;
    qh_error err;
    assert_int_equal(qhi_csv_read(path, &csv, &err), QH_OK);
    return csv;
}

static const char *cell(const qhi_csv *csv, int32_t row, const char *col)
{
    int32_t c = qhi_csv_column(csv, col);
    if (c < 0)
        fail_msg("no column '%s'", col);
    assert_true(c < csv->n_fields[row]);
    return csv->rows[row][c];
}

/* The CSV without its last column (the wall time, the one thing that differs between runs). */
static char *without_wall(const char *path)
{
    char *text = pu_slurp(path, NULL), *out = malloc(strlen(text) + 1), *o = out;
    for (char *line = text; *line;) {
        char *nl = strchr(line, '\n'), *comma = NULL;
        for (char *p = line; p < nl; p++)
            if (*p == ',')
                comma = p;
        memcpy(o, line, (size_t)(comma - line));
        o += comma - line;
        *o++ = '\n';
        line = nl + 1;
    }
    *o = '\0';
    free(text);
    return out;
}

/* ---------------------------------------------------------------- values */

static void test_int_ranges_and_lists(void **state)
{
    (void)state;
    qh_sweep_axis ax;
    qh_error err;
    assert_int_equal(expand("bits", "1..8", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(atoi(ax.values[i]), i + 1);
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("bits", "2, 4..6 ,8", &ax, &err), QH_OK);
    const char *want[] = {"2", "4", "5", "6", "8"};
    assert_int_equal(ax.n_values, 5);
    for (int i = 0; i < 5; i++)
        assert_string_equal(ax.values[i], want[i]);
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("bits", "8:2:-2", &ax, &err), QH_OK);
    const char *down[] = {"8", "6", "4", "2"};
    assert_int_equal(ax.n_values, 4);
    for (int i = 0; i < 4; i++)
        assert_string_equal(ax.values[i], down[i]);
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("bits", "3..3", &ax, &err), QH_OK); /* one point: still a sweep, one row */
    assert_int_equal(ax.n_values, 1);
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("granularity", "tensor, channel", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 2);
    assert_string_equal(ax.values[1], "channel");
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("flag", "true,false", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 2);
    qhi_sweep_axis_clear(&ax);
}

/* 1.0:2.0:0.05 is seed 002's scalar sweep: 21 values, each start + i * step (the double nearest the
 * decimal a person would type), the stop included although (2.0 - 1.0) / 0.05 falls just short. */
static void test_float_ranges(void **state)
{
    (void)state;
    qh_sweep_axis ax;
    qh_error err;
    assert_int_equal(expand("scalar", "1.0:2.0:0.05", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 21);
    for (int i = 0; i < 21; i++) {
        char dec[16];
        snprintf(dec, sizeof dec, "%d.%02d", (100 + 5 * i) / 100, (100 + 5 * i) % 100);
        double v = strtod(ax.values[i], NULL);
        assert_true(v == strtod(dec, NULL));
        assert_true(fabs(v - (1.0 + i * 0.05)) < 1e-12);
    }
    assert_string_equal(ax.values[1], "1.05");
    assert_string_equal(ax.values[20], "2");
    qhi_sweep_axis_clear(&ax);
    /* adding 0.1 up three times gives 0.30000000000000004; the generated value is 0.3 */
    assert_int_equal(expand("scalar", "0.1:0.3:0.1", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 3);
    assert_string_equal(ax.values[2], "0.3");
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("scalar", "1:0:-0.25", &ax, &err), QH_OK);
    assert_int_equal(ax.n_values, 5);
    assert_string_equal(ax.values[4], "0");
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("scalar", "0:0.9999:0.0001", &ax, &err), QH_OK); /* exactly the maximum */
    assert_int_equal(ax.n_values, QHI_SWEEP_MAX_POINTS);
    qhi_sweep_axis_clear(&ax);
    assert_int_equal(expand("scalar", "1.16, 1..3", &ax, &err), QH_OK); /* a..b on a double key */
    assert_int_equal(ax.n_values, 4);
    qhi_sweep_axis_clear(&ax);
}

static void expect_error(const char *key, const char *text, const char *msg)
{
    qh_sweep_axis ax;
    qh_error err;
    assert_int_equal(expand(key, text, &ax, &err), QH_E_CONFIG);
    if (!strstr(err.msg, msg))
        fail_msg("'%s' = '%s': got \"%s\", expected \"%s\"", key, text, err.msg, msg);
    assert_null(ax.values);
    assert_int_equal(ax.n_values, 0);
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("scalar", "1:2:0", "the step is 0");
    expect_error("bits", "1:8:0", "the step is 0");
    expect_error("scalar", "2:1:0.5", "range '2:1:0.5' is empty: the step goes away from the stop");
    expect_error("bits", "1:8:-1", "is empty");
    expect_error("bits", "8..2", "range '8..2' is empty: its start is above its stop (count down with 8:2:-1)");
    expect_error("bits", "1..x", "'x' is not an integer");
    expect_error("scalar", "1.5..3", "'1.5' is not an integer");
    expect_error("bits", "1:8:0.5", "'0.5' is not an integer");
    expect_error("scalar", "1:nan:1", "'nan' is not a finite number");
    expect_error("scalar", "1:2", "must be start:stop:step");
    expect_error("scalar", "1:2:3:4", "must be start:stop:step");
    expect_error("bits", "2,,4", "empty value in the list '2,,4'");
    expect_error("bits", "2,", "empty value");
    expect_error("bits", "4, 2..6", "4 appears twice in '4, 2..6'");
    expect_error("scalar", "1, 1.0", "1 appears twice");
    expect_error("granularity", "tensor, tensor", "'tensor' appears twice");
    expect_error("scalar", "0:1:0.0001", "gives 10001 values; at most 10000");
    expect_error("bits", "1..20000", "gives 20000 values; at most 10000");
    expect_error("bits", "1, 2, 3..10001", "range '3..10001' gives 9999 values, 10001 with the others of the list");
    expect_error("scalar", "0:1e300:1e-300", "too many values");
}

static void test_what_is_a_list(void **state)
{
    (void)state;
    assert_true(qhi_sweep_is_list(fake("bits"), "1..8"));
    assert_true(qhi_sweep_is_list(fake("bits"), "1,2"));
    assert_true(qhi_sweep_is_list(fake("scalar"), "1:2:0.5"));
    assert_false(qhi_sweep_is_list(fake("scalar"), "-1e-3"));
    assert_false(qhi_sweep_is_list(fake("bits"), "8"));
    assert_true(qhi_sweep_is_list(fake("granularity"), "tensor,channel"));
    assert_false(qhi_sweep_is_list(fake("granularity"), "a..b")); /* reported as a bad choice instead */
    assert_false(qhi_sweep_is_list(fake("name"), "conv*, fc*"));  /* a string's commas are its own */
}

/* ---------------------------------------------------------------- points */

/* Axes in file order, the last varying fastest; the stage's blocks hold the first point. */
static void test_cartesian_order(void **state)
{
    (void)state;
    const char *ini = write_ini("order", "train, q",
                                "[q]\ntype = quantize\nplugin = linear\ngranularity = tensor, channel, block\n"
                                "targets = fc1.weight\nbits = 2..3\n");
    qh_pipeline_config *pc = pu_config_load(reg, ini, NULL);
    assert_non_null(pc);
    const qh_stage *s = &pc->stages[1];
    assert_int_equal(s->n_axes, 2);
    assert_string_equal(s->axes[0].key, "granularity");
    assert_int_equal(s->axes[0].line, 24);
    assert_false(s->axes[0].host);
    assert_int_equal(qhi_sweep_n_points(s), 6);
    const char *want[] = {"granularity=tensor, bits=2", "granularity=tensor, bits=3", "granularity=channel, bits=2",
                          "granularity=channel, bits=3", "granularity=block, bits=2", "granularity=block, bits=3"};
    for (int k = 0; k < 6; k++) {
        char buf[128];
        qhi_sweep_describe(s, k, buf, sizeof buf);
        assert_string_equal(buf, want[k]);
    }
    const qh_param *bits = qh_param_find(s->plugin->params, "bits");
    char v[32];
    qh_config_format(bits, s->plugin_cfg, v, sizeof v);
    assert_string_equal(v, "2"); /* the first point */
    qh_pipeline_config_free(pc);
}

/* ---------------------------------------------------------------- runs */

static const char quant_sweep[] = "[q]\ntype = quantize\nplugin = linear\nbits = 2..4\ngranularity = tensor, channel\n"
                                  "[eval]\ntype = evaluate\n";

/* Runs train, e0, q (one point of quant_sweep, no sweep), eval: what the sweep's row of that point
 * must say; *orig: e0's top-1, the model the sweep starts from. */
static double single_point_top1(const char *name, const char *keys, double *orig)
{
    char dir[300], rest[512];
    out_dir(dir, sizeof dir, name);
    snprintf(rest, sizeof rest, "[e0]\ntype = evaluate\n[q]\ntype = quantize\nplugin = linear\n%s\n"
             "[eval]\ntype = evaluate\n", keys);
    qh_error err;
    assert_int_equal(run_ini(write_ini(name, "train, e0, q, eval", rest), dir, false, NULL, &err), QH_OK);
    assert_int_equal(points_run, 0);
    *orig = pu_metric(dir, "e0", "top1");
    return pu_metric(dir, "eval", "top1");
}

static void test_quantize_sweep_end_to_end(void **state)
{
    (void)state;
    char dir[300];
    out_dir(dir, sizeof dir, "qsweep");
    qh_error err;
    assert_int_equal(run_ini(write_ini("qsweep", "train, q, eval", quant_sweep), dir, false, NULL, &err), QH_OK);
    assert_int_equal(points_run, 6);
    qhi_csv csv = read_csv(dir, "q");
    const char *cols[] = {"Model Name", "Dataset", "Quantization Batch Size", "Original Top1 Accuracy",
                          "Quantized Top1 Accuracy", "Original Top5 Accuracy", "Quantized Top5 Accuracy", "Bits",
                          "MLP_Alphabet_Scalar", "CNN_Alphabet_Scalar", "MLP_Percentile", "CNN_Percentile",
                          "Stochastic Quantization", "Regularizer", "Lambda", "Original Sparsity",
                          "Quantized Sparsity", "Retain_rate", "Fusion", "Seed", "granularity", "Wall Time (s)"};
    assert_int_equal(csv.n_header, 22);
    for (int i = 0; i < 22; i++)
        assert_string_equal(csv.header[i], cols[i]);
    assert_int_equal(csv.n_rows, 6);
    assert_false(csv.torn);
    for (int32_t r = 0; r < 6; r++) {
        assert_int_equal(atoi(cell(&csv, r, "Bits")), 2 + r / 2);
        assert_string_equal(cell(&csv, r, "granularity"), r % 2 ? "channel" : "tensor");
        assert_string_equal(cell(&csv, r, "Model Name"), "mlp");
        assert_string_equal(cell(&csv, r, "Seed"), "5");
        assert_string_equal(cell(&csv, r, "Quantization Batch Size"), ""); /* linear reads no calibration */
        assert_string_equal(cell(&csv, r, "Original Top1 Accuracy"), cell(&csv, 0, "Original Top1 Accuracy"));
    }
    /* the last point (after five others) equals a run of it alone, from the same trained model */
    double orig, alone = single_point_top1("q_4_channel", "bits = 4\ngranularity = channel", &orig);
    assert_true(fabs(100.0 * strtod(cell(&csv, 5, "Quantized Top1 Accuracy"), NULL) - alone) < 1e-6);
    assert_true(fabs(100.0 * strtod(cell(&csv, 0, "Original Top1 Accuracy"), NULL) - orig) < 1e-6);
    alone = single_point_top1("q_2_tensor", "bits = 2\ngranularity = tensor", &orig);
    assert_true(fabs(100.0 * strtod(cell(&csv, 0, "Quantized Top1 Accuracy"), NULL) - alone) < 1e-6);
    /* the best point continues: the stage's and the next evaluation's top-1 are the best row's */
    int32_t best = qhi_sweep_best_row(&csv, qhi_csv_column(&csv, "Quantized Top1 Accuracy"));
    double best_top1 = 100.0 * strtod(cell(&csv, best, "Quantized Top1 Accuracy"), NULL);
    for (int32_t r = 0; r < best; r++)
        assert_true(strtod(cell(&csv, r, "Quantized Top1 Accuracy"), NULL) < best_top1 / 100.0);
    assert_true(fabs(pu_metric(dir, "q", "top1") - best_top1) < 1e-6);
    assert_true(fabs(pu_metric(dir, "eval", "top1") - best_top1) < 1e-6);
    /* the run's own outputs carry the sweep summary (qh_outputs.c's hooks) */
    assert_int_equal((int)pu_metric(dir, "q", "points"), 6);
    char path[600];
    snprintf(path, sizeof path, "%s/report.md", dir);
    char *report = pu_slurp(path, NULL);
    assert_non_null(strstr(report, "## Sweep [q]"));
    free(report);
    qhi_csv_free(&csv);
}

/* Pruning only ever adds zeros, so a prune sweep going down (0.6, then 0.2) shows whether each point
 * starts from the received masks: 0.2 after 0.6 must still give 20 %. */
static void test_prune_sweep_restores_masks(void **state)
{
    (void)state;
    char dir[300];
    out_dir(dir, sizeof dir, "psweep");
    qh_error err;
    const char *ini = write_ini("psweep", "train, p, eval",
                                "[p]\ntype = prune\nplugin = magnitude\nscope = global\nsparsity = 0.6, 0.2\n"
                                "[eval]\ntype = evaluate\n");
    assert_int_equal(run_ini(ini, dir, false, NULL, &err), QH_OK);
    assert_int_equal(points_run, 2);
    qhi_csv csv = read_csv(dir, "p");
    assert_int_equal(csv.n_rows, 2);
    assert_string_equal(csv.header[20], "sparsity"); /* no seed 002 column for it */
    assert_string_equal(cell(&csv, 0, "sparsity"), "0.6");
    assert_string_equal(cell(&csv, 1, "sparsity"), "0.2");
    assert_string_equal(cell(&csv, 0, "Bits"), "");
    /* zeros over weights and biases (seed 002's measure): the targeted weights hold nearly all */
    double s0 = strtod(cell(&csv, 0, "Quantized Sparsity"), NULL);
    double s1 = strtod(cell(&csv, 1, "Quantized Sparsity"), NULL);
    assert_true(s0 > 0.55 && s0 < 0.6);
    assert_true(s1 > 0.18 && s1 < 0.2);
    int32_t best = qhi_sweep_best_row(&csv, qhi_csv_column(&csv, "Quantized Top1 Accuracy"));
    assert_true(fabs(pu_metric(dir, "eval", "top1") -
                     100.0 * strtod(cell(&csv, best, "Quantized Top1 Accuracy"), NULL)) < 1e-6);
    /* the model file after the stage is the best point's: its sparsity over the targets */
    assert_true(fabs(pu_metric(dir, "p", "sparsity") - (best == 0 ? 0.6 : 0.2)) < 1e-3);
    qhi_csv_free(&csv);
}

/* A train stage swept over its learning rate: each point fine-tunes the same model (the second
 * equals a run of it alone), and no epoch checkpoint is left behind. */
static void test_train_sweep(void **state)
{
    (void)state;
    char dir[300], alone[300], path[400];
    out_dir(dir, sizeof dir, "tsweep");
    out_dir(alone, sizeof alone, "tsweep-alone");
    qh_error err;
    const char *rest = "[ft]\ntype = train\nepochs = 2\nbatch_size = 32\nlr = %s\n[eval]\ntype = evaluate\n";
    char text[256];
    snprintf(text, sizeof text, rest, "0.05, 0.01");
    assert_int_equal(run_ini(write_ini("tsweep", "train, ft, eval", text), dir, false, NULL, &err), QH_OK);
    assert_int_equal(points_run, 2);
    snprintf(text, sizeof text, rest, "0.01");
    assert_int_equal(run_ini(write_ini("tsweep-alone", "train, ft, eval", text), alone, false, NULL, &err), QH_OK);
    qhi_csv csv = read_csv(dir, "ft");
    assert_int_equal(csv.n_rows, 2);
    assert_string_equal(cell(&csv, 1, "lr"), "0.01");
    assert_true(fabs(100.0 * strtod(cell(&csv, 1, "Quantized Top1 Accuracy"), NULL) -
                     pu_metric(alone, "eval", "top1")) < 1e-6);
    qhi_csv_free(&csv);
    snprintf(path, sizeof path, "%s/checkpoints/ft.ckpt.safetensors", dir);
    assert_int_not_equal(access(path, F_OK), 0);
}

/* Interrupted after point 2 (the test hook), then cut back to one row plus half of the next: the
 * resumed run drops the torn line, runs points 2..6 only, and the CSV equals an uninterrupted one. */
static void test_resume_runs_only_missing_points(void **state)
{
    (void)state;
    char full[300], cut[300], path[400], full_path[400];
    out_dir(full, sizeof full, "qsweep"); /* from test_quantize_sweep_end_to_end */
    out_dir(cut, sizeof cut, "qsweep-cut");
    snprintf(path, sizeof path, "%s/sweep-q.csv", cut);
    snprintf(full_path, sizeof full_path, "%s/sweep-q.csv", full);
    const char *ini = write_ini("qsweep", "train, q, eval", quant_sweep);
    qh_error err;
    if (access(full_path, F_OK) != 0)
        assert_int_equal(run_ini(ini, full, false, NULL, &err), QH_OK);
    assert_int_equal(run_ini(ini, cut, false, "2", &err), QH_E_ABORTED);
    assert_non_null(strstr(err.msg, "stopped after sweep point 2"));
    assert_int_equal(points_run, 2);
    /* keep the header, row 1 and 10 bytes of row 2 */
    char *text = pu_slurp(path, NULL);
    char *row2 = strchr(strchr(text, '\n') + 1, '\n') + 1;
    row2[10] = '\0';
    spit(path, text);
    free(text);

    assert_int_equal(run_ini(ini, cut, true, NULL, &err), QH_OK);
    assert_int_equal(points_run, 5);
    char *a = without_wall(full_path), *b = without_wall(path);
    assert_string_equal(a, b);
    free(a);
    free(b);
    assert_true(pu_metric(cut, "eval", "top1") == pu_metric(full, "eval", "top1"));

    /* a finished sweep resumed: no point runs again */
    assert_int_equal(run_ini(ini, cut, true, NULL, &err), QH_OK);
    assert_int_equal(points_run, 0);
}

/* A resumed CSV of another sweep (other columns, or other values in a column) is refused, naming
 * the file and the first difference, before any point runs. */
static void test_resume_refuses_other_csv(void **state)
{
    (void)state;
    char full[300], dir[300], path[400], cmd[1400];
    out_dir(full, sizeof full, "qsweep");
    out_dir(dir, sizeof dir, "qsweep-other");
    snprintf(path, sizeof path, "%s/sweep-q.csv", dir);
    const char *ini = write_ini("qsweep", "train, q, eval", quant_sweep);
    qh_error err;
    assert_int_equal(run_ini(ini, dir, false, "3", &err), QH_E_ABORTED);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s.good'", path, path);
    assert_int_equal(system(cmd), 0);

    char *text = pu_slurp(path, NULL), *at = strstr(text, "MLP_Alphabet_Scalar");
    memcpy(at, "MLP_Alphabet_Scalxr", 19);
    spit(path, text);
    free(text);
    assert_int_equal(run_ini(ini, dir, true, NULL, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, path));
    assert_non_null(strstr(err.msg, "column 9 is 'MLP_Alphabet_Scalxr', this sweep writes 'MLP_Alphabet_Scalar' "
                                    "there: the file comes from another sweep"));
    assert_int_equal(points_run, 0);

    /* one column fewer */
    snprintf(cmd, sizeof cmd, "cp '%s.good' '%s' && sed -i '1s/,Wall Time (s)$//' '%s'", path, path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run_ini(ini, dir, true, NULL, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, "column 22 ('Wall Time (s)') is missing"));

    /* right columns, but a row of another sweep (bits 5 where this one has 2) */
    snprintf(cmd, sizeof cmd, "cp '%s.good' '%s' && sed -i '2s/,2,,,99.9,/,5,,,99.9,/' '%s'", path, path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run_ini(ini, dir, true, NULL, &err), QH_E_CONFIG);
    assert_non_null(strstr(err.msg, "sweep-q.csv:2: column 'Bits' is '5', but point 1 of this sweep has '2'"));
    assert_int_equal(points_run, 0);

    /* and the good file continues */
    snprintf(cmd, sizeof cmd, "cp '%s.good' '%s'", path, path);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(run_ini(ini, dir, true, NULL, &err), QH_OK);
    assert_int_equal(points_run, 3);
}

/* Highest top-1 wins, the first of equals; metrics.json's and report.md's summaries say so. */
static void test_best_point_selection(void **state)
{
    (void)state;
    char path[400];
    snprintf(path, sizeof path, "%s/best.csv", tmpdir);
    spit(path, "a,Quantized Top1 Accuracy\n1,0.5\n2,0.7\n3,0.7\n4,0.6\n5,0.69999");
    qhi_csv csv;
    qh_error err;
    assert_int_equal(qhi_csv_read(path, &csv, &err), QH_OK);
    assert_true(csv.torn); /* the last line has no '\n' */
    assert_int_equal(csv.n_rows, 4);
    assert_int_equal(qhi_sweep_best_row(&csv, 1), 1);
    assert_int_equal(qhi_sweep_best_row(&csv, -1), -1);
    qhi_csv_free(&csv);
    spit(path, "x,\"a,\"\"b\"\"\",y\r\n");
    assert_int_equal(qhi_csv_read(path, &csv, &err), QH_OK);
    assert_int_equal(csv.n_header, 3);
    assert_string_equal(csv.header[1], "a,\"b\"");
    assert_string_equal(csv.header[2], "y");
    qhi_csv_free(&csv);

    /* the output hooks of a finished sweep */
    char dir[300];
    out_dir(dir, sizeof dir, "qsweep");
    qh_pipeline_config *pc = pu_config_load(reg, write_ini("qsweep", "train, q, eval", quant_sweep), NULL);
    assert_non_null(pc);
    qh_run run = {.pc = pc, .seed = 5};
    snprintf(run.outdir, sizeof run.outdir, "%s", dir);
    assert_null(qhi_sweep_json(&run, 0));
    json_t *j = qhi_sweep_json(&run, 1);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "points")), 6);
    assert_int_equal(json_integer_value(json_object_get(j, "rows")), 6);
    json_t *best = json_object_get(j, "best");
    assert_true(fabs(json_real_value(json_object_get(best, "top1")) - pu_metric(dir, "q", "top1")) < 1e-6);
    int64_t point = json_integer_value(json_object_get(best, "point"));
    char bits[16];
    snprintf(bits, sizeof bits, "%s", json_string_value(json_object_get(json_object_get(best, "values"), "bits")));
    assert_int_equal(atoi(bits), 2 + (point - 1) / 2);
    json_decref(j);
    char rpath[400];
    snprintf(rpath, sizeof rpath, "%s/sweep-report.md", tmpdir);
    FILE *f = fopen(rpath, "w");
    qhi_sweep_report(f, &run, 1);
    fclose(f);
    char *md = pu_slurp(rpath, NULL);
    assert_non_null(strstr(md, "## Sweep [q]"));
    assert_non_null(strstr(md, "6 points: bits (3) x granularity (2)"));
    char bold[32];
    snprintf(bold, sizeof bold, "| **%lld** | %s |", (long long)point, bits);
    if (!strstr(md, bold))
        fail_msg("no \"%s\" in:\n%s", bold, md);
    /* the per-bits summary: the best point's bits value leads with its top-1 over both granularities */
    char line[64];
    snprintf(line, sizeof line, "| %s | 2 | %.2f | granularity = ", bits, pu_metric(dir, "q", "top1"));
    assert_non_null(strstr(md, "By bits, over the other keys:"));
    if (!strstr(md, line))
        fail_msg("no \"%s\" in:\n%s", line, md);
    free(md);
    qh_pipeline_config_free(pc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_ranges_and_lists),
        cmocka_unit_test(test_float_ranges),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_what_is_a_list),
        cmocka_unit_test(test_cartesian_order),
        cmocka_unit_test(test_quantize_sweep_end_to_end),
        cmocka_unit_test(test_prune_sweep_restores_masks),
        cmocka_unit_test(test_train_sweep),
        cmocka_unit_test(test_resume_runs_only_missing_points),
        cmocka_unit_test(test_resume_refuses_other_csv),
        cmocka_unit_test(test_best_point_selection),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
