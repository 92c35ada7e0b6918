/* test_resume.c - checkpoints and resume: a training stage interrupted after epoch 2 and resumed
 * from its checkpoint ends with exactly the bytes of an uninterrupted run (SGD + cosine, AdamW +
 * plateau + keep_best + early stopping); checkpoints of another configuration or seed are refused;
 * and a whole pipeline (train, prune, fine-tune, evaluate, export) interrupted twice and resumed
 * with qh_run_options.resume writes the same model files and metrics. Also [model]
 * weights_exclude (a head with another class count) through the runner. */
#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include "base/qh_timing.h"
#include "pipeline_util.h"
#include "qhost/qh_safetensors.h"
#include "train_fixture.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    return pu_tmpdir_make(tmpdir, sizeof tmpdir, "qh-resume");
}

static int teardown(void **state)
{
    (void)state;
    return pu_tmpdir_remove(tmpdir);
}

static qh_train_config sgd_cosine(void)
{
    return (qh_train_config){.epochs = 4, .batch_size = 48, .lr = 0.1, .momentum = 0.9, .nesterov = 1,
                             .weight_decay = 1e-3, .schedule = QH_LR_COSINE, .min_lr = 0.001, .checkpoint = 1};
}

static qh_train_config adamw_plateau(void)
{
    return (qh_train_config){.epochs = 4, .batch_size = 40, .lr = 0.01, .optimizer = QH_OPT_ADAMW, .beta1 = 0.9,
                             .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .schedule = QH_LR_PLATEAU,
                             .plateau_metric = QH_MONITOR_TEST_TOP1, .plateau_patience = 0, .plateau_factor = 0.5,
                             .warmup_epochs = 1, .label_smoothing = 0.1, .early_stop_patience = 3,
                             .early_stop_metric = QH_MONITOR_TEST_LOSS, .keep_best = 1, .checkpoint = 1};
}

static qh_graph *masked_net(void)
{
    qh_graph *g = net(true);
    qh_weight *w = qh_graph_find_weight(g, "fc1.weight");
    int64_t n = qh_tensor_numel(w->value);
    uint8_t *mask = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        mask[i] = i % 4 != 1;
    qh_error err;
    assert_int_equal(qh_weight_set_mask(w, mask, &err), QH_OK);
    free(mask);
    return g;
}

static void assert_same_weights(qh_graph *a, qh_graph *b)
{
    assert_int_equal(qh_graph_n_weights(a), qh_graph_n_weights(b));
    for (int32_t i = 0; i < qh_graph_n_weights(a); i++)
        assert_memory_equal(qh_graph_weight(a, i)->value->data, qh_graph_weight(b, i)->value->data,
                            qh_tensor_nbytes(qh_graph_weight(a, i)->value));
}

static void assert_same_logs(const qh_epoch_log *a, const qh_epoch_log *b, int n)
{
    for (int e = 0; e < n; e++) {
        assert_memory_equal(&a[e].train_loss, &b[e].train_loss, sizeof(double));
        assert_memory_equal(&a[e].lr_end, &b[e].lr_end, sizeof(double));
        assert_int_equal(a[e].evaluated, b[e].evaluated);
        assert_memory_equal(&a[e].test.loss, &b[e].test.loss, sizeof(double));
        assert_memory_equal(&a[e].test.top1, &b[e].test.top1, sizeof(double));
    }
}

/* 4 epochs in one go vs. 2 epochs, a checkpoint, a fresh graph and 2 more from the checkpoint. */
static void resume_case(qh_train_config cfg, const char *name)
{
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_rng r;
    qh_rng_seed(&r, 11);
    qh_error err;
    char ckpt[512], ckpt_full[512];
    snprintf(ckpt, sizeof ckpt, "%s/%s.ckpt.safetensors", tmpdir, name);
    snprintf(ckpt_full, sizeof ckpt_full, "%s/%s-full.ckpt.safetensors", tmpdir, name);

    qh_graph *full = masked_net();
    qh_epoch_log logs_full[4], logs_res[4];
    qh_train_options o = {.checkpoint = ckpt_full, .stage = name};
    assert_int_equal(qh_train_ex(full, &ds, &cfg, 0, 0, &r, NULL, logs_full, &o, &err), QH_OK);
    int64_t done = o.epochs_done;

    qh_graph *part = masked_net();
    o = (qh_train_options){.checkpoint = ckpt, .stage = name, .stop_after_epoch = 2};
    assert_int_equal(qh_train_ex(part, &ds, &cfg, 0, 0, &r, NULL, logs_res, &o, &err), QH_E_ABORTED);
    assert_int_equal(o.epochs_done, 2);
    assert_int_equal(access(ckpt, R_OK), 0);
    qh_graph_free(part);

    qh_graph *resumed = net(true); /* no mask: the checkpoint brings it back */
    memset(logs_res, 0, sizeof logs_res);
    o = (qh_train_options){.checkpoint = ckpt, .stage = name, .resume = true, .stop_after_epoch = 2};
    assert_int_equal(qh_train_ex(resumed, &ds, &cfg, 0, 0, &r, NULL, logs_res, &o, &err), QH_OK);
    assert_int_equal(o.resumed_at, 2);
    assert_int_equal(o.epochs_done, done);
    assert_non_null(qh_graph_find_weight(resumed, "fc1.weight")->mask);
    assert_same_weights(full, resumed);
    assert_same_logs(logs_full, logs_res, (int)done);
    qh_graph_free(full);
    qh_graph_free(resumed);
    free(d);
}

static void test_resume_sgd_cosine_bit_identical(void **state)
{
    (void)state;
    resume_case(sgd_cosine(), "sgd");
}

static void test_resume_adamw_plateau_bit_identical(void **state)
{
    (void)state;
    resume_case(adamw_plateau(), "adamw");
}

/* The checkpoint also carries the plateau's drops: with patience 0 and top-1 not rising on every
 * epoch the resumed learning rate must be the reduced one. */
static void test_resume_carries_plateau_drops(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_train_config cfg = adamw_plateau();
    cfg.early_stop_patience = 0;
    cfg.keep_best = 0;
    cfg.epochs = 6;
    qh_rng r;
    qh_rng_seed(&r, 11);
    qh_error err;
    qh_epoch_log logs[6];
    qh_graph *g = net(true);
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 0, &r, NULL, logs, NULL, &err), QH_OK);
    assert_true(logs[5].lr_end < cfg.lr); /* else the drops are untested */
    qh_graph_free(g);
    free(d);
}

static void test_resume_refuses_other_config_or_seed(void **state)
{
    (void)state;
    mem_ds *d = make_data();
    qh_dataset ds;
    open_mem(&ds, d);
    qh_train_config cfg = sgd_cosine();
    qh_rng r;
    qh_rng_seed(&r, 11);
    qh_error err;
    char ckpt[512];
    snprintf(ckpt, sizeof ckpt, "%s/refuse.ckpt.safetensors", tmpdir);
    qh_graph *g = net(true);
    qh_train_options o = {.checkpoint = ckpt, .stop_after_epoch = 1};
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &o, &err), QH_E_ABORTED);

    cfg.lr = 0.2;
    o = (qh_train_options){.checkpoint = ckpt, .resume = true};
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 0, &r, NULL, NULL, &o, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "lr=0.1"));
    assert_non_null(strstr(err.msg, "lr=0.2"));

    cfg.lr = 0.1;
    qh_rng other;
    qh_rng_seed(&other, 12);
    assert_int_equal(qh_train_ex(g, &ds, &cfg, 0, 0, &other, NULL, NULL, &o, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "another seed"));

    assert_int_equal(qh_train_ex(g, &ds, &cfg, 100, 0, &r, NULL, NULL, &o, &err), QH_E_INVAL);
    assert_non_null(strstr(err.msg, "training samples"));

    qh_graph *small = net(false); /* other parameters: named */
    assert_int_equal(qh_train_ex(small, &ds, &cfg, 0, 0, &r, NULL, NULL, &o, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "fc2.weight"));
    qh_graph_free(small);
    qh_graph_free(g);
    free(d);
}

/* ---------------------------------------------------------------- whole pipelines */

static qh_registry *registry(void)
{
    const char *libs[] = {"/plugins/models/mlp/qh-model-mlp.so", "/plugins/datasets/synthetic/qh-dataset-synthetic.so",
                          "/plugins/pruners/magnitude/qh-pruner-magnitude.so", NULL};
    qh_registry *reg = pu_registry(libs);
    assert_non_null(reg);
    return reg;
}

static const char pipeline_text[] = "[pipeline]\nseed = 5\nthreads = 2\nstages = train, prune, finetune, eval, "
                                    "export\n[model]\nplugin = mlp\nhidden = 24\n%s\n[dataset]\nplugin = synthetic\n"
                                    "classes = %d\nheight = 6\nwidth = 6\ntrain_size = 300\ntest_size = 100\n"
                                    "[train]\ntype = train\nepochs = 3\nbatch_size = 32\nlr = 0.05\n"
                                    "schedule = plateau\nplateau_patience = 0\n%s\n[prune]\ntype = prune\n"
                                    "plugin = magnitude\nsparsity = 0.5\n[finetune]\ntype = train\nepochs = 3\n"
                                    "batch_size = 50\nlr = 0.01\noptimizer = adamw\nwarmup_epochs = 1\n"
                                    "freeze = fc1.*\n[eval]\ntype = evaluate\n[export]\ntype = export\n";

static qh_status run_pipeline(const qh_registry *reg, const char *dir, const char *model_extra, int classes,
                              const char *train_extra, bool resume, const char *stop, qh_error *err)
{
    const char *ini = pu_write_ini(tmpdir, "p", "", pipeline_text, model_extra, classes, train_extra);
    qh_pipeline_config *pc = pu_config_load(reg, ini, NULL);
    assert_non_null(pc);
    qh_status st = pu_config_run(pc, reg, dir, resume, "QHOST_TEST_STOP_AFTER_EPOCH", stop, err);
    qh_pipeline_config_free(pc);
    return st;
}

static void test_pipeline_resume_matches_uninterrupted(void **state)
{
    (void)state;
    qh_registry *reg = registry();
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/full", tmpdir);
    snprintf(b, sizeof b, "%s/cut", tmpdir);
    qh_error err;
    assert_int_equal(run_pipeline(reg, a, "", 4, "", false, NULL, &err), QH_OK);
    /* cut inside [train] after epoch 1; resuming cuts again inside [finetune] after its epoch 1 */
    assert_int_equal(run_pipeline(reg, b, "", 4, "", false, "1", &err), QH_E_ABORTED);
    char ck[400];
    snprintf(ck, sizeof ck, "%s/checkpoints/train.ckpt.safetensors", b);
    assert_int_equal(access(ck, R_OK), 0);
    assert_int_equal(run_pipeline(reg, b, "", 4, "", true, "1", &err), QH_E_ABORTED);
    assert_non_null(strstr(err.msg, "finetune"));
    assert_int_not_equal(access(ck, F_OK), 0); /* the finished stage's checkpoint is gone */
    assert_int_equal(run_pipeline(reg, b, "", 4, "", true, NULL, &err), QH_OK);
    const char *files[] = {"model-train.safetensors", "model-prune.safetensors", "model-finetune.safetensors",
                           "model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        pu_assert_same_file(a, b, files[i]);
    char *ma = pu_metrics_sans_times(a), *mb = pu_metrics_sans_times(b);
    assert_string_equal(ma, mb);
    free(ma);
    free(mb);
    /* resuming a finished run does nothing new and keeps the results */
    assert_int_equal(run_pipeline(reg, b, "", 4, "", true, NULL, &err), QH_OK);
    pu_assert_same_file(a, b, "model.safetensors");

    /* a new head: 3 classes, fc1 from the 4-class run (kept by freezing it), fc2 initialized */
    char w[600], c[300];
    snprintf(w, sizeof w, "weights = %s/model-finetune.safetensors", a);
    snprintf(c, sizeof c, "%s/head", tmpdir);
    assert_int_equal(run_pipeline(reg, c, w, 3, "freeze = fc1.*", false, NULL, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "fc2.weight"));
    snprintf(w, sizeof w, "weights = %s/model-finetune.safetensors\nweights_exclude = fc2.*", a);
    assert_int_equal(run_pipeline(reg, c, w, 3, "freeze = fc1.*", false, NULL, &err), QH_OK);
    char pa[600], pc[600];
    snprintf(pa, sizeof pa, "%s/model-finetune.safetensors", a);
    snprintf(pc, sizeof pc, "%s/model-train.safetensors", c);
    qh_safetensors *fa, *fc;
    assert_int_equal(qh_safetensors_read(pa, &fa, &err), QH_OK);
    assert_int_equal(qh_safetensors_read(pc, &fc, &err), QH_OK);
    const qh_tensor *wa = qh_safetensors_find(fa, "fc1.weight"), *wc = qh_safetensors_find(fc, "fc1.weight");
    assert_memory_equal(wa->data, wc->data, qh_tensor_nbytes(wa));
    assert_int_equal(qh_safetensors_find(fa, "fc2.weight")->shape[0], 4);
    assert_int_equal(qh_safetensors_find(fc, "fc2.weight")->shape[0], 3);
    qh_safetensors_free(fa);
    qh_safetensors_free(fc);
    qh_registry_free(reg);
}

/* Overwrites the recorded wall time of epoch `e` (0-based) in a train checkpoint: row e, column 2
 * of its F64 tensor train.epochs (qh_checkpoint.c). */
static void set_checkpoint_epoch_wall(const char *path, int64_t e, double seconds)
{
    qh_safetensors *f;
    qh_error err;
    assert_int_equal(qh_safetensors_read(path, &f, &err), QH_OK);
    qh_tensor *t = (qh_tensor *)qh_safetensors_find(f, "train.epochs");
    assert_non_null(t);
    assert_int_equal(t->dtype, QH_F64);
    ((double *)t->data)[e * 8 + 2] = seconds;
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)f->tensors, f->n_tensors,
                                          (const char *const *)f->meta_keys, (const char *const *)f->meta_values,
                                          f->n_meta, &err),
                     QH_OK);
    qh_safetensors_free(f);
}

/* A train stage resumed from its checkpoint reports, as its wall time, the recorded time of the
 * restored epochs plus its own: the resumed run's stage is not shown as shorter than its epochs. */
static void test_resumed_stage_time_includes_restored_epochs(void **state)
{
    (void)state;
    qh_registry *reg = registry();
    char d[300], ck[400];
    snprintf(d, sizeof d, "%s/timed", tmpdir);
    snprintf(ck, sizeof ck, "%s/checkpoints/train.ckpt.safetensors", d);
    qh_error err;
    assert_int_equal(run_pipeline(reg, d, "", 4, "", false, "1", &err), QH_E_ABORTED);
    set_checkpoint_epoch_wall(ck, 0, 1000.0);
    double t0 = qh_now_s();
    assert_int_equal(run_pipeline(reg, d, "", 4, "", true, NULL, &err), QH_OK);
    double t = qh_now_s() - t0, wall = pu_metric(d, "train", "wall_s");
    assert_true(wall >= 1000.0 && wall <= 1000.0 + t);
    assert_true(pu_metric(d, "finetune", "wall_s") < t); /* a stage run whole: its own time only */
    qh_registry_free(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_sgd_cosine_bit_identical),
        cmocka_unit_test(test_resume_adamw_plateau_bit_identical),
        cmocka_unit_test(test_resume_carries_plateau_drops),
        cmocka_unit_test(test_resume_refuses_other_config_or_seed),
        cmocka_unit_test(test_pipeline_resume_matches_uninterrupted),
        cmocka_unit_test(test_resumed_stage_time_includes_restored_epochs),
    };
    return cmocka_run_group_tests_name("resume", tests, setup, teardown);
}
