/* qh_resume.c - restores the finished stages of an interrupted run from its output directory. */
#include "pipeline/qh_resume.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double num(const json_t *o, const char *key)
{
    return json_number_value(json_object_get(o, key));
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static qh_status parse_epochs(const json_t *arr, qh_stage_metrics *m, qh_error *err)
{
    size_t n = json_array_size(arr);
    if (!n)
        return QH_OK;
    if (!(m->epochs = calloc(n, sizeof *m->epochs)))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    m->n_epochs = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        qh_epoch_log *l = &m->epochs[i];
        l->train_loss = num(e, "train_loss");
        l->lr_end = num(e, "lr");
        l->wall_s = num(e, "wall_s");
        l->evaluated = json_object_get(e, "test_top1") != NULL;
        l->test.top1 = num(e, "test_top1");
        l->test.loss = num(e, "test_loss");
    }
    return QH_OK;
}

/* metrics.json keeps a layer's sparsity, not its zero count: numel * sparsity rounds back to it
 * (10 significant digits are far finer than 1 / numel). */
static qh_status parse_layers(const json_t *arr, qh_stage_metrics *m, qh_error *err)
{
    size_t n = json_array_size(arr);
    if (!(m->layers = calloc(n + 1, sizeof *m->layers)))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    m->n_layers = (int32_t)n;
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(arr, i);
        qh_layer_metrics *l = &m->layers[i];
        snprintf(l->name, sizeof l->name, "%s", str(e, "name"));
        l->numel = (int64_t)num(e, "numel");
        l->zeros = (int64_t)llround(num(e, "sparsity") * (double)l->numel);
        l->bits = (int32_t)num(e, "bits");
        l->bytes = (int64_t)num(e, "bytes");
        l->quantized_now = json_object_get(e, "mse") != NULL;
        l->mse = l->quantized_now ? num(e, "mse") : -1.0;
        l->rel_err = json_object_get(e, "relative_output_error") ? num(e, "relative_output_error") : NAN;
    }
    return QH_OK;
}

void qhi_events_get(const json_t *o, qh_stage_metrics *m)
{
    const json_t *arr = json_object_get(o, "prune_events");
    size_t n = json_array_size(arr);
    m->n_prune_events = 0;
    for (size_t i = 0; i < n && i < QHI_MAX_PRUNE_EVENTS; i++) {
        const json_t *e = json_array_get(arr, i);
        qh_prune_event *x = &m->prune_events[m->n_prune_events++];
        x->epoch = json_object_get(e, "epoch") ? (int64_t)num(e, "epoch") : -1;
        x->target = num(e, "target");
        x->measured = num(e, "sparsity");
        x->undone = json_is_true(json_object_get(e, "undone"));
    }
    m->n_prune_events += (int32_t)num(o, "prune_events_not_listed");
}

/* A structured prune stage's summary (structured_json in qh_outputs.c). */
static void parse_structured(const json_t *o, qh_structured_metrics *sm)
{
    if (!json_is_object(o))
        return;
    sm->done = true;
    sm->groups = (int32_t)num(o, "groups");
    sm->groups_pruned = (int32_t)num(o, "groups_pruned");
    sm->physical = json_is_true(json_object_get(o, "physical"));
    if (!sm->physical)
        return;
    sm->channels_before = (int64_t)num(o, "channels_before");
    sm->channels_after = (int64_t)num(o, "channels_after");
    sm->params_before = (int64_t)num(o, "params_before");
    sm->params_after = (int64_t)num(o, "params_after");
    sm->macs_before = (int64_t)num(o, "macs_before");
    sm->macs_after = (int64_t)num(o, "macs_after");
    sm->batch = (int64_t)num(o, "batch");
    sm->threads = (int32_t)num(o, "threads");
    sm->reps = (int32_t)num(o, "repetitions");
    sm->img_s_before = num(o, "img_s_before");
    sm->img_s_after = num(o, "img_s_after");
}

static qh_status parse_stage(const json_t *o, const qh_stage *s, qh_stage_metrics *m, qh_error *err)
{
    snprintf(m->name, sizeof m->name, "%s", s->name);
    m->type = qh_stage_type_name(s->type);
    m->wall_s = num(o, "wall_s");
    m->evaluated = json_object_get(o, "split") != NULL;
    if (m->evaluated) {
        m->split = strcmp(str(o, "split"), "train") == 0 ? "train" : "test";
        m->eval.n = (int64_t)num(o, "samples");
        m->eval.top1 = num(o, "top1");
        m->eval.top5 = num(o, "top5");
        m->eval.loss = num(o, "loss");
    }
    m->sparsity = num(o, "sparsity");
    m->model_bytes = (int64_t)num(o, "model_bytes");
    m->params = (int64_t)num(o, "params");
    snprintf(m->model_file, sizeof m->model_file, "%s", str(o, "model_file"));
    qhi_events_get(o, m);
    parse_structured(json_object_get(o, "structured"), &m->structured);
    qh_status st = parse_epochs(json_object_get(o, "epochs"), m, err);
    return st == QH_OK ? parse_layers(json_object_get(o, "layers"), m, err) : st;
}

/* How many of the n finished stages can be skipped; *file: index of the stage whose model file
 * holds the state after them (-1: the initial model). */
static int32_t plan(const qh_run *run, int32_t n, int32_t *file)
{
    int32_t best = 0, last_file = -1;
    bool quantized = false;
    *file = -1;
    for (int32_t k = 0; k < n; k++) {
        qh_stage_type t = run->pc->stages[k].type;
        if (t == QH_STAGE_TRAIN || t == QH_STAGE_PRUNE || t == QH_STAGE_QUANTIZE)
            last_file = k;
        if (t == QH_STAGE_TRAIN)
            quantized = false;
        if (t == QH_STAGE_QUANTIZE)
            quantized = true;
        char path[4400];
        if (last_file >= 0)
            snprintf(path, sizeof path, "%s/model-%s.safetensors", run->outdir, run->pc->stages[last_file].name);
        if (!quantized && (last_file < 0 || access(path, R_OK) == 0)) {
            best = k + 1;
            *file = last_file;
        }
    }
    return best;
}

static qh_status check_same_pipeline(const qh_run *run, const char *path, const json_t *stages, qh_error *err)
{
    if (!json_is_array(stages))
        return qh_error_set(err, QH_E_FORMAT, "%s: no 'stages' list", path);
    if ((int)json_array_size(stages) > run->pc->n_stages)
        return qh_error_set(err, QH_E_INVAL, "%s lists %zu stages, the pipeline has %d: resume needs the same pipeline",
                            path, json_array_size(stages), run->pc->n_stages);
    for (size_t i = 0; i < json_array_size(stages); i++) {
        const json_t *o = json_array_get(stages, i);
        const qh_stage *s = &run->pc->stages[i];
        if (strcmp(str(o, "name"), s->name) != 0 || strcmp(str(o, "type"), qh_stage_type_name(s->type)) != 0)
            return qh_error_set(err, QH_E_INVAL, "%s lists stage %zu as [%s] (%s), the pipeline has [%s] (%s): resume "
                                "needs the same pipeline", path, i + 1, str(o, "name"), str(o, "type"), s->name,
                                qh_stage_type_name(s->type));
    }
    return QH_OK;
}

qh_status qhi_resume(qh_run *run, int32_t *n_skip, qh_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/metrics.json", run->outdir);
    *n_skip = 0;
    if (access(path, F_OK) != 0) {
        qh_log(QH_LOG_INFO, "resume", "%s: no finished stage yet", run->outdir);
        return QH_OK;
    }
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return qh_error_set(err, QH_E_FORMAT, "%s:%d: %s", path, je.line, je.text);
    const json_t *stages = json_object_get(root, "stages");
    qh_status st = check_same_pipeline(run, path, stages, err);
    int32_t file = -1, n = st == QH_OK ? plan(run, (int32_t)json_array_size(stages), &file) : 0;
    for (int32_t i = 0; st == QH_OK && i < n; i++)
        st = parse_stage(json_array_get(stages, (size_t)i), &run->pc->stages[i], &run->metrics[i], err);
    json_decref(root);
    if (st == QH_OK && file >= 0) {
        snprintf(path, sizeof path, "%s/model-%s.safetensors", run->outdir, run->pc->stages[file].name);
        if ((st = qh_model_load(run->g, path, err)) != QH_OK)
            qh_error_prefix(err, "resume");
    }
    if (st != QH_OK)
        return st;
    *n_skip = n;
    if (n == run->pc->n_stages)
        qh_log(QH_LOG_INFO, "resume", "every stage had finished in %s", run->outdir);
    else if (n > 0)
        qh_log(QH_LOG_INFO, "resume", "stages 1-%d restored from %s; continuing with stage %d", n, run->outdir, n + 1);
    return QH_OK;
}
