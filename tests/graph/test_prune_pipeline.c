/* test_prune_pipeline.c - pruning through qh_pipeline_run (synthetic data, MLP): a pruned,
 * fine-tuned, exported model reloaded into a new run evaluates identically and keeps its masks
 * through more training; geometric, AGP and iterative schedules during a train stage end where
 * their math says; a run interrupted inside a geometric schedule resumes bit-identically, its
 * event log included (a checkpoint whose log does not parse is refused); N:M masks hold in the
 * saved model; bad pruning input fails before anything runs. */
#include <math.h>
#include <unistd.h>

#include "pipeline/qh_prune_schedule.h"
#include "pipeline_util.h"
#include "qhost/qh_safetensors.h"

static char tmpdir[256];
static qh_registry *reg;

static int setup(void **state)
{
    (void)state;
    const char *libs[] = {"/plugins/models/mlp/qh-model-mlp.so", "/plugins/datasets/synthetic/qh-dataset-synthetic.so",
                          "/plugins/pruners/magnitude/qh-pruner-magnitude.so", "/plugins/pruners/nm/qh-pruner-nm.so",
                          NULL};
    return pu_setup(tmpdir, sizeof tmpdir, "qh-prune", libs, &reg);
}

static int teardown(void **state)
{
    (void)state;
    return pu_teardown(tmpdir, reg);
}

/* [pipeline] + [model] + [dataset] of every test; `rest` holds the stages. */
static const char head[] = "[pipeline]\nseed = 7\nthreads = 2\nstages = %s\n[model]\nplugin = mlp\nhidden = 24\n%s\n"
                           "[dataset]\nplugin = synthetic\nclasses = 4\nheight = 6\nwidth = 6\ntrain_size = 320\n"
                           "test_size = 160\nnoise = 1.5\n"
                           "[train]\ntype = train\nepochs = 3\nbatch_size = 32\nlr = 0.05\n";

static const char *write_ini(const char *name, const char *stages, const char *model_extra, const char *rest)
{
    return pu_write_ini(tmpdir, name, rest, head, stages, model_extra);
}

/* Loads and runs; config errors go to `diag_out` (NULL: stderr) and return QH_E_CONFIG. */
static qh_status run_ini(const char *ini, const char *out, bool resume, const char *stop, FILE *diag_out,
                         qh_error *err)
{
    return pu_run_ini(reg, ini, out, resume, diag_out, "QHOST_TEST_STOP_AFTER_EPOCH", stop, err);
}

typedef struct masks_of {
    qh_safetensors *f;
    int64_t zeros, total;
} masks_of;

/* Counts pruned entries of every "<w>_mask" in a model file and checks the weight is 0 there. */
static masks_of read_masks(const char *dir, const char *file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    masks_of m = {0};
    qh_error err;
    assert_int_equal(qh_safetensors_read(path, &m.f, &err), QH_OK);
    const char *names[] = {"fc1.weight", "fc2.weight"};
    for (int i = 0; i < 2; i++) {
        char mn[64];
        snprintf(mn, sizeof mn, "%s_mask", names[i]);
        const qh_tensor *w = qh_safetensors_find(m.f, names[i]), *k = qh_safetensors_find(m.f, mn);
        assert_non_null(w);
        int64_t n = qh_tensor_numel(w);
        m.total += n;
        if (!k)
            continue;
        const float *x = qh_tensor_f32(w);
        const uint8_t *b = k->data;
        for (int64_t e = 0; e < n; e++)
            if (!b[e]) {
                m.zeros++;
                assert_true(x[e] == 0.0f);
            }
    }
    return m;
}

/* ---------------------------------------------------------------- masks are model state */

static void test_reload_evaluates_identically(void **state)
{
    (void)state;
    char a[300], b[300], w[400];
    snprintf(a, sizeof a, "%s/a", tmpdir);
    snprintf(b, sizeof b, "%s/b", tmpdir);
    qh_error err;
    const char *ini = write_ini("a", "train, prune, finetune, eval, export", "",
                                "[prune]\ntype = prune\nplugin = magnitude\nsparsity = 0.7\n"
                                "[finetune]\ntype = train\nepochs = 2\nbatch_size = 32\nlr = 0.02\n"
                                "[eval]\ntype = evaluate\n[export]\ntype = export\nmasks = true\n");
    assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    masks_of ma = read_masks(a, "model.safetensors");
    assert_int_equal(ma.zeros, llround(0.7 * (double)ma.total));

    /* a new run from the exported file: same evaluation, then more training keeps every mask */
    snprintf(w, sizeof w, "weights = %s/model.safetensors", a);
    ini = write_ini("b", "eval, train, export", w, /* [train]: 3 more epochs */
                    "[eval]\ntype = evaluate\n[export]\ntype = export\nmasks = true\n");
    assert_int_equal(run_ini(ini, b, false, NULL, NULL, &err), QH_OK);
    const char *keys[] = {"top1", "top5", "loss"};
    for (int i = 0; i < 3; i++)
        assert_true(pu_metric(a, "eval", keys[i]) == pu_metric(b, "eval", keys[i]));
    masks_of mb = read_masks(b, "model.safetensors");
    assert_int_equal(mb.zeros, ma.zeros);
    const qh_tensor *ka = qh_safetensors_find(ma.f, "fc1.weight_mask"), *kb = qh_safetensors_find(mb.f, "fc1.weight_mask");
    assert_memory_equal(ka->data, kb->data, qh_tensor_nbytes(ka));
    /* and the weights did train */
    const qh_tensor *wa = qh_safetensors_find(ma.f, "fc1.weight"), *wb = qh_safetensors_find(mb.f, "fc1.weight");
    assert_true(memcmp(wa->data, wb->data, qh_tensor_nbytes(wa)) != 0);
    qh_safetensors_free(ma.f);
    qh_safetensors_free(mb.f);
}

/* ---------------------------------------------------------------- schedules */

static const char geometric_rest[] = "[p]\ntype = prune\nplugin = magnitude\nscope = layer\nsparsity = 0.5\n"
                                     "schedule = geometric\nduring = finetune\nrate = 0.1\nstart_epoch = 1\n"
                                     "[finetune]\ntype = train\nepochs = 9\nbatch_size = 32\nlr = 0.02\n"
                                     "schedule = constant\n[eval]\ntype = evaluate\n";

/* Seed 000: events after epochs 1..7 of [finetune]; per layer 1 - 0.9^7 = 52.17 % (each layer's
 * count rounds on its own), then no more events. */
static void test_geometric_during_training(void **state)
{
    (void)state;
    char a[300];
    snprintf(a, sizeof a, "%s/geo", tmpdir);
    qh_error err;
    const char *ini = write_ini("geo", "train, p, finetune, eval", "", geometric_rest);
    assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    masks_of m = read_masks(a, "model-finetune.safetensors");
    int64_t expect = llround(qh_prune_geometric_at(0, 0.1, 7) * 24 * 36) + llround(qh_prune_geometric_at(0, 0.1, 7) * 4 * 24);
    assert_int_equal(m.zeros, expect);
    assert_true(qh_prune_reached((double)m.zeros / (double)m.total, 0.5));
    qh_safetensors_free(m.f);
    /* the prune stage itself changed nothing: its model is the trained one */
    assert_true(pu_metric(a, "p", "sparsity") == 0.0);
}

/* The checkpoint at `path` with its metadata "hook" (the epoch hook's state) replaced by `text`. */
static void rewrite_hook_state(const char *path, const char *text)
{
    qh_safetensors *f;
    qh_error err;
    assert_int_equal(qh_safetensors_read(path, &f, &err), QH_OK);
    const char *vals[16];
    assert_true(f->n_meta <= 16);
    bool found = false;
    for (int32_t i = 0; i < f->n_meta; i++) {
        found |= strcmp(f->meta_keys[i], "hook") == 0;
        vals[i] = strcmp(f->meta_keys[i], "hook") == 0 ? text : f->meta_values[i];
    }
    assert_true(found);
    assert_int_equal(qh_safetensors_write(path, (const qh_tensor *const *)f->tensors, f->n_tensors,
                                          (const char *const *)f->meta_keys, vals, f->n_meta, &err), QH_OK);
    qh_safetensors_free(f);
}

/* Interrupted inside [finetune] (after its epoch 2, in the middle of the events) and resumed: the
 * same files as an uninterrupted run, and the same metrics, every pruning event listed (the one
 * before the cut travels in the checkpoint). */
static void test_geometric_resume_bit_identical(void **state)
{
    (void)state;
    char a[300];
    snprintf(a, sizeof a, "%s/geo", tmpdir); /* from the test above */
    qh_error err;
    const char *ini = write_ini("geo", "train, p, finetune, eval", "", geometric_rest);
    if (access(a, F_OK) != 0)
        assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    char cut[300];
    snprintf(cut, sizeof cut, "%s/geo-cut2", tmpdir);
    /* stop after epoch 2: [train] stops, resume stops [finetune] after its 2nd epoch, resume ends */
    assert_int_equal(run_ini(ini, cut, false, "2", NULL, &err), QH_E_ABORTED);
    assert_int_equal(run_ini(ini, cut, true, "2", NULL, &err), QH_E_ABORTED);
    assert_non_null(strstr(err.msg, "finetune"));
    /* a checkpoint whose event log does not parse is refused, naming the stage */
    char ck[400];
    snprintf(ck, sizeof ck, "%s/checkpoints/finetune.ckpt.safetensors", cut);
    size_t n;
    char *good = pu_slurp(ck, &n);
    rewrite_hook_state(ck, "{\"prune_events\": [");
    assert_int_equal(run_ini(ini, cut, true, NULL, NULL, &err), QH_E_FORMAT);
    assert_non_null(strstr(err.msg, "finetune.ckpt.safetensors: metadata 'hook' (the pruning events of [finetune]) "
                                    "does not parse"));
    FILE *f = fopen(ck, "wb");
    assert_int_equal(fwrite(good, 1, n, f), n);
    fclose(f);
    free(good);
    assert_int_equal(run_ini(ini, cut, true, NULL, NULL, &err), QH_OK);
    const char *files[] = {"model-finetune.safetensors", "model-train.safetensors"};
    for (int i = 0; i < 2; i++)
        pu_assert_same_file(a, cut, files[i]);
    char *ma = pu_metrics_sans_times(a), *mb = pu_metrics_sans_times(cut);
    assert_non_null(strstr(ma, "\"prune_events\""));
    assert_string_equal(ma, mb);
    free(ma);
    free(mb);
}

/* AGP to 90 % in 3 steps every 2 epochs: global magnitude, so exactly round(0.9 N) pruned. */
static void test_agp_during_training(void **state)
{
    (void)state;
    char a[300];
    snprintf(a, sizeof a, "%s/agp", tmpdir);
    qh_error err;
    const char *ini = write_ini("agp", "train, p, finetune, eval", "",
                                "[p]\ntype = prune\nplugin = magnitude\nsparsity = 0.9\nschedule = agp\n"
                                "during = finetune\nevery_epochs = 2\nsteps = 3\n"
                                "[finetune]\ntype = train\nepochs = 7\nbatch_size = 32\nlr = 0.02\n"
                                "[eval]\ntype = evaluate\n");
    assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    masks_of m = read_masks(a, "model-finetune.safetensors");
    assert_int_equal(m.zeros, llround(0.9 * (double)m.total));
    qh_safetensors_free(m.f);
}

/* Seed 003: rounds of 30 % global pruning + 1 epoch; toward 99 % the accuracy gives out first, and
 * the model kept is the last within tolerance; with a huge tolerance the target ends it. */
static void test_iterative_keeps_last_within_tolerance(void **state)
{
    (void)state;
    char a[300], b[300];
    snprintf(a, sizeof a, "%s/it", tmpdir);
    snprintf(b, sizeof b, "%s/it-all", tmpdir);
    qh_error err;
    const char rest[] = "[eval_dense]\ntype = evaluate\n"
                        "[p]\ntype = prune\nplugin = magnitude\nsparsity = 0.99\nschedule = iterative\n"
                        "during = finetune\nrate = 0.3\ntolerance = %s\n"
                        "[finetune]\ntype = train\nepochs = 13\nbatch_size = 32\nlr = 0.02\nschedule = constant\n"
                        "[eval]\ntype = evaluate\n";
    char text[1024];
    snprintf(text, sizeof text, rest, "2");
    const char *ini = write_ini("it", "train, eval_dense, p, finetune, eval", "", text);
    assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    double dense = pu_metric(a, "eval_dense", "top1"), kept = pu_metric(a, "eval", "top1");
    double sp = pu_metric(a, "eval", "sparsity");
    assert_true(kept >= dense - 2.0);
    assert_true(sp > 0.3 && sp < 0.99);
    /* the kept model is one of the rounds' sparsities (1 - 0.7^k over the targets) */
    double k = log(1.0 - sp) / log(0.7);
    assert_true(fabs(k - round(k)) < 0.01);

    snprintf(text, sizeof text, rest, "100");
    ini = write_ini("it-all", "train, eval_dense, p, finetune, eval", "", text);
    assert_int_equal(run_ini(ini, b, false, NULL, NULL, &err), QH_OK);
    assert_true(qh_prune_reached(pu_metric(b, "eval", "sparsity"), 0.99));
}

/* ---------------------------------------------------------------- N:M */

static void test_nm_in_a_pipeline(void **state)
{
    (void)state;
    char a[300];
    snprintf(a, sizeof a, "%s/nm", tmpdir);
    qh_error err;
    const char *ini = write_ini("nm", "train, p, eval", "",
                                "[p]\ntype = prune\nplugin = nm\nn = 2\nm = 4\n[eval]\ntype = evaluate\n");
    assert_int_equal(run_ini(ini, a, false, NULL, NULL, &err), QH_OK);
    masks_of m = read_masks(a, "model-p.safetensors");
    assert_int_equal(m.zeros * 2, m.total);
    const qh_tensor *k = qh_safetensors_find(m.f, "fc1.weight_mask");
    const uint8_t *b = k->data;
    for (int64_t g = 0; g < qh_tensor_numel(k) / 4; g++)
        assert_int_equal(b[4 * g] + b[4 * g + 1] + b[4 * g + 2] + b[4 * g + 3], 2);
    qh_safetensors_free(m.f);
}

/* ---------------------------------------------------------------- bad input: nothing runs */

/* Every message of a run that must fail before doing anything: the diagnostics, then err. */
static char *config_errors(const char *name, const char *stages, const char *rest)
{
    const char *ini = write_ini(name, stages, "", rest);
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    char out[300];
    snprintf(out, sizeof out, "%s/%s-out", tmpdir, name);
    qh_error err;
    qh_status st = run_ini(ini, out, false, NULL, mem, &err);
    if (st != QH_OK)
        fputs(err.msg, mem);
    fclose(mem);
    assert_int_equal(st, QH_E_CONFIG);
    assert_int_not_equal(access(out, F_OK), 0);
    return text;
}

static void expect_in(const char *text, const char *what)
{
    if (!text || !strstr(text, what))
        fail_msg("expected '%s' in:\n%s", what, text ? text : "(no output)");
}

static void test_bad_input_reported_before_anything_runs(void **state)
{
    (void)state;
    char *t = config_errors("bad1", "train, p, nm, ft",
                            "[p]\ntype = prune\nplugin = magnitude\nsparsity = 1\n"
                            "[nm]\ntype = prune\nplugin = nm\nn = 4\nm = 4\nsparsity = 0.5\n"
                            "[ft]\ntype = train\nepochs = 2\n");
    expect_in(t, "bad1.ini:25: error: [p] sparsity: 1 must be below 1");
    expect_in(t, "bad1.ini:26: error: [nm] pruner nm: n = 4 must be at least 1 and below m = 4");
    expect_in(t, "bad1.ini:31: error: [nm] sparsity: pruner nm fixes the sparsity at 1 - n/m; remove this key");
    free(t);

    t = config_errors("bad2", "train, p, q, ft, ev",
                      "[p]\ntype = prune\nplugin = magnitude\nsparsity = 0.9\nschedule = geometric\n"
                      "during = ft\nevery_epochs = 2\n"
                      "[q]\ntype = prune\nplugin = magnitude\nsparsity = 0.5\nschedule = agp\nduring = nowhere\n"
                      "[ft]\ntype = train\nepochs = 20\n[ev]\ntype = evaluate\n");
    expect_in(t, "bad2.ini:27: error: [p] schedule = geometric cannot reach sparsity 0.9 in [ft]: its last event "
                 "comes after epoch 42, but [ft] trains 20 epochs (it needs at least 43)");
    expect_in(t, "bad2.ini:34: error: [q] during: 'nowhere' is not a stage listed in [pipeline] stages");
    free(t);

    t = config_errors("bad3", "train, ft, p, ev",
                      "[p]\ntype = prune\nplugin = magnitude\nsparsity = 0.5\nschedule = agp\nduring = ft\n"
                      "rate = 0.2\n[ft]\ntype = train\nepochs = 20\n[ev]\ntype = evaluate\n");
    expect_in(t, "[p] during: [ft] runs before this stage; list it after [p]");
    expect_in(t, "[p] rate: applies only with schedule = geometric or iterative");
    free(t);

    /* found by the pruner itself, still before any stage: 36 inputs are no multiple of 8 */
    t = config_errors("bad4", "train, p", "[p]\ntype = prune\nplugin = nm\nn = 2\nm = 8\n");
    expect_in(t, "bad4.ini:22: error: [p]: pruner nm: fc1.weight: 36 input channels are not a multiple of m = 8");
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reload_evaluates_identically),
        cmocka_unit_test(test_geometric_during_training),
        cmocka_unit_test(test_geometric_resume_bit_identical),
        cmocka_unit_test(test_agp_during_training),
        cmocka_unit_test(test_iterative_keeps_last_within_tolerance),
        cmocka_unit_test(test_nm_in_a_pipeline),
        cmocka_unit_test(test_bad_input_reported_before_anything_runs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
