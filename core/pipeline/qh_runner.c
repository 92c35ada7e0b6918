/* qh_runner.c - executes a validated pipeline: opens the dataset, builds the model, runs the
 * stages in order, and writes the run outputs after every stage. Policy (which tensors a stage
 * touches) lives here; the math lives in the plugins and kernels. */
#include "pipeline/qh_prune_run.h"
#include "pipeline/qh_quantize_calib.h"
#include "pipeline/qh_resume.h"
#include "pipeline/qh_sweep.h"
#include "qhost/qh_fileio.h"
#include "qh_version.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/qh_timing.h"

/* Parameters a prune or quantize stage targets: conv and linear weights (rank >= 2; biases, batch
 * norm parameters and buffers never) whose names match `targets` and not `exclude`. */
static int32_t select_targets(qh_run *run, const char *targets, const char *exclude, int32_t *out)
{
    int32_t n = 0;
    for (int32_t i = 0; i < run->g->n_weights; i++) {
        const qh_weight *w = &run->g->weights[i];
        const char *name = w->value->name;
        if (w->is_buffer || w->value->ndim < 2)
            continue;
        if (qh_name_match_list(targets, name) && !qh_name_match_list(exclude, name))
            out[n++] = i;
    }
    return n;
}

int32_t qhi_select_targets(qh_run *run, const char *targets, const char *exclude, int32_t *out)
{
    return select_targets(run, targets, exclude, out);
}

static void param_names(const qh_graph *g, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int32_t i = 0; i < g->n_weights && used + 1 < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", g->weights[i].value->name);
}

/* Parameters a train stage's `freeze` patterns name (buffers are never trained anyway). */
static int32_t mark_frozen(qh_graph *g, const char *patterns, bool frozen)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        bool hit = patterns && *patterns && !w->is_buffer && qh_name_match_list(patterns, w->value->name);
        w->frozen = hit && frozen;
        n += hit;
    }
    return n;
}

static qh_status check_freeze(qh_run *run, const qh_stage *s, qh_error *err)
{
    const char *freeze = ((const qh_train_config *)s->host_cfg)->freeze;
    if (!freeze || !*freeze || mark_frozen(run->g, freeze, false) > 0)
        return QH_OK;
    char names[2048];
    param_names(run->g, names, sizeof names);
    return qh_error_set(err, QH_E_CONFIG, "%s:%d: error: [%s]: freeze '%s' matches no parameter of model %s; it has: %s",
                        run->pc->path, s->line, s->name, freeze, run->pc->model->name, names);
}

/* Before any stage runs: every prune and quantize stage must target at least one parameter, and
 * every freeze pattern list must name one. */
static qh_status check_targets(qh_run *run, qh_error *err)
{
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(run->g->n_weights + 1));
    if (!idx)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    qh_status st = QH_OK;
    for (int i = 0; st == QH_OK && i < run->pc->n_stages; i++) {
        const qh_stage *s = &run->pc->stages[i];
        const char *targets, *exclude;
        if (s->type == QH_STAGE_PRUNE) {
            targets = ((const qh_prune_config *)s->host_cfg)->targets;
            exclude = ((const qh_prune_config *)s->host_cfg)->exclude;
        } else if (s->type == QH_STAGE_QUANTIZE) {
            targets = ((const qh_quantize_config *)s->host_cfg)->targets;
            exclude = ((const qh_quantize_config *)s->host_cfg)->exclude;
        } else if (s->type == QH_STAGE_TRAIN) {
            st = check_freeze(run, s, err);
            continue;
        } else {
            continue;
        }
        if (select_targets(run, targets, exclude, idx) == 0) {
            char names[2048];
            param_names(run->g, names, sizeof names);
            st = qh_error_set(err, QH_E_CONFIG, "%s:%d: error: [%s]: targets '%s' (exclude '%s') match no parameter of "
                              "model %s; it has: %s", run->pc->path, s->line, s->name, targets,
                              exclude ? exclude : "", run->pc->model->name, names);
        }
    }
    free(idx);
    return st;
}

static int64_t weight_bytes(const qh_run *run, int32_t i)
{
    if (run->qt[i].bits > 0)
        return qh_qtensor_bytes(&run->qt[i]);
    return (int64_t)qh_tensor_nbytes(run->g->weights[i].value);
}

/* Snapshot of the model state into m: sparsity, bytes, per-layer table. */
static qh_status snapshot(qh_run *run, qh_stage_metrics *m, const double *mse, qh_error *err)
{
    qh_graph *g = run->g;
    m->layers = calloc((size_t)g->n_weights + 1, sizeof *m->layers);
    if (!m->layers) {
        free(run->qa);
        run->qa = NULL;
        free(run->rel_err);
        run->rel_err = NULL;
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    int64_t zeros = 0, prunable = 0;
    m->model_bytes = 0;
    m->params = qh_graph_n_params(g);
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_tensor *v = g->weights[i].value;
        qh_layer_metrics *l = &m->layers[m->n_layers++];
        snprintf(l->name, sizeof l->name, "%s", v->name);
        l->numel = qh_tensor_numel(v);
        l->zeros = qh_tensor_count_zeros(v);
        l->bits = run->qt[i].bits > 0 ? run->qt[i].bits : 8 * (int32_t)qh_dtype_size(v->dtype);
        l->bytes = weight_bytes(run, i);
        l->mse = mse ? mse[i] : -1.0;
        l->quantized_now = mse && mse[i] >= 0.0;
        l->rel_err = l->quantized_now && run->rel_err ? run->rel_err[i] : NAN;
        if (l->quantized_now && run->qa) {
            l->qa = run->qa[i];
            qh_qanalysis_add(&m->qtotal, &l->qa);
            m->n_quantized++;
        }
        m->model_bytes += l->bytes;
        if (v->ndim >= 2) {
            zeros += l->zeros;
            prunable += l->numel;
        }
    }
    m->sparsity = prunable ? (double)zeros / (double)prunable : 0.0;
    free(run->qa); /* consumed: the analyses now live in m->layers */
    run->qa = NULL;
    free(run->rel_err);
    run->rel_err = NULL;
    return QH_OK;
}

static void drop_quantization(qh_run *run, const char *why)
{
    bool any = false;
    for (int32_t i = 0; i < run->g->n_weights; i++) {
        if (run->qt[i].bits > 0) {
            qh_qtensor_clear(&run->qt[i]);
            any = true;
        }
    }
    if (any)
        qh_log(QH_LOG_WARN, "pipeline", "%s changes quantized weights: they are float again until the next quantize stage",
               why);
}

/* Metadata of every model file: what built it, so a file says how to rebuild its graph. */
typedef struct model_meta {
    char params[1024];
    const char *keys[6];
    const char *vals[6];
} model_meta;

static void model_metadata(const qh_run *run, const char *stage, model_meta *m)
{
    size_t used = 0;
    m->params[0] = '\0';
    for (const qh_param *p = run->pc->model->params; p->name && used + 1 < sizeof m->params; p++) {
        char v[256];
        qh_config_format(p, run->pc->model_cfg, v, sizeof v);
        used += (size_t)snprintf(m->params + used, sizeof m->params - used, "%s%s=%s", used ? "," : "", p->name, v);
    }
    const char *keys[] = {"format", "architecture", "architecture_params", "dataset", "stage", "qhost_version"};
    const char *vals[] = {"pt", run->pc->model->name, m->params, run->pc->dataset->name, stage, QH_VERSION};
    memcpy(m->keys, keys, sizeof keys);
    memcpy(m->vals, vals, sizeof vals);
}

static qh_status save_model(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qh_error *err)
{
    snprintf(m->model_file, sizeof m->model_file, "model-%s.safetensors", s->name);
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", run->outdir, m->model_file);
    model_meta meta;
    model_metadata(run, s->name, &meta);
    return qh_model_save(run->g, path, true, meta.keys, meta.vals, 6, err);
}

static qh_status run_quantize(qh_run *run, const qh_stage *s, double *mse, qh_error *err)
{
    const qh_quantize_config *cfg = s->host_cfg;
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(run->g->n_weights + 1));
    qh_quantizer qz = {0};
    qh_status st = QH_OK;
    bool created = false;
    free(run->qa); /* the analyses this stage makes, for its snapshot */
    run->qa = calloc((size_t)run->g->n_weights + 1, sizeof *run->qa);
    free(run->rel_err);
    run->rel_err = malloc(sizeof(double) * (size_t)(run->g->n_weights + 1));
    for (int32_t i = 0; run->rel_err && i < run->g->n_weights; i++)
        run->rel_err[i] = NAN;
    if (!idx || !run->qa || !run->rel_err) {
        free(idx);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    int32_t n = select_targets(run, cfg->targets, cfg->exclude, idx);
    if ((st = qh_quantizer_create(&qz, s->plugin, s->plugin_cfg, err)) != QH_OK)
        goto out;
    created = true;
    int32_t done = 0;
    /* data-aware quantizers (and batch-norm folding): calibration capture, qh_quantize_calib.c */
    bool calib = qhi_quantize_wants_calib(run, s, &qz, idx, n);
    if (calib && (st = qhi_quantize_calib(run, s, &qz, idx, n, mse, &done, err)) != QH_OK)
        goto out;
    for (int32_t k = 0; !calib && k < n; k++) {
        qh_weight *w = &run->g->weights[idx[k]];
        if (!qh_quantizer_accepts(&qz, w->value->name, w->value)) {
            qh_log(QH_LOG_INFO, s->name, "%s: skipped (not accepted by %s)", w->value->name, s->plugin->name);
            continue;
        }
        qh_tensor *deq = qh_tensor_new(QH_F32, w->value->ndim, w->value->shape, err);
        if (!deq) {
            st = QH_E_NOMEM;
            goto out;
        }
        qh_qtensor q = {0};
        st = qh_quantizer_quantize(&qz, w->value->name, w->value, &q, deq, err);
        if (st == QH_OK)
            st = qh_qanalysis_compute(w->value, &q, deq, &run->qa[idx[k]], err);
        if (st != QH_OK) {
            qh_qtensor_clear(&q);
            qh_tensor_free(deq);
            qh_error_prefix(err, "tensor %s", w->value->name);
            goto out;
        }
        mse[idx[k]] = run->qa[idx[k]].mse;
        memcpy(w->value->data, deq->data, qh_tensor_nbytes(deq));
        qh_tensor_free(deq);
        qh_qtensor_clear(&run->qt[idx[k]]);
        run->qt[idx[k]] = q;
        done++;
    }
    qh_graph_apply_masks(run->g);
    qh_log(QH_LOG_INFO, s->name, "quantized %d of %d targeted tensors with %s", done, n, s->plugin->name);
out:
    if (created)
        qh_quantizer_destroy(&qz);
    free(idx);
    if (st != QH_OK) {
        free(run->qa);
        run->qa = NULL;
        free(run->rel_err);
        run->rel_err = NULL;
    }
    return st;
}

static qh_status run_export(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qh_error *err)
{
    const qh_export_config *cfg = s->host_cfg;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", run->outdir, cfg->file);
    snprintf(m->model_file, sizeof m->model_file, "%s", cfg->file);
    model_meta meta;
    model_metadata(run, s->name, &meta);
    qh_status st = qh_model_save(run->g, path, cfg->masks, meta.keys, meta.vals, 6, err);
    if (st != QH_OK)
        return st;
    bool any = false;
    for (int32_t i = 0; i < run->g->n_weights; i++)
        any |= run->qt[i].bits > 0;
    if (!any)
        return QH_OK;
    /* model.safetensors -> model.quantized.safetensors */
    char qpath[4480];
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot && (!slash || dot > slash))
        snprintf(qpath, sizeof qpath, "%.*s.quantized%s", (int)(dot - path), path, dot);
    else
        snprintf(qpath, sizeof qpath, "%s.quantized", path);
    return qhi_write_quantized(run, qpath, err);
}

/* checkpoints/<stage>.ckpt.safetensors in the output directory; "" when the stage writes none. */
static void checkpoint_path(const qh_run *run, const qh_stage *s, char *buf, size_t size)
{
    const qh_train_config *cfg = s->host_cfg;
    buf[0] = '\0';
    if (s->type == QH_STAGE_TRAIN && cfg->checkpoint)
        snprintf(buf, size, "%s/checkpoints/%s.ckpt.safetensors", run->outdir, s->name);
}

/* QHOST_TEST_STOP_AFTER_EPOCH=N (a test hook, documented in docs/pipeline-reference.md): every
 * train stage fails with "stopped" once its epoch N ran, after writing that epoch's checkpoint. */
static int64_t stop_hook(void)
{
    const char *v = getenv("QHOST_TEST_STOP_AFTER_EPOCH");
    char *end;
    long long n = v ? strtoll(v, &end, 10) : 0;
    return v && *v && !*end && n > 0 ? (int64_t)n : 0;
}

static qh_status run_train(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qh_error *err)
{
    const qh_train_config *cfg = s->host_cfg;
    drop_quantization(run, s->name);
    if (!(m->epochs = calloc((size_t)cfg->epochs, sizeof *m->epochs)))
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    char ckpt[4400], dir[4400];
    checkpoint_path(run, s, ckpt, sizeof ckpt);
    snprintf(dir, sizeof dir, "%s/checkpoints", run->outdir);
    qh_status st;
    if (ckpt[0] && (st = qh_mkdir_p(dir, err)) != QH_OK)
        return st;
    int32_t n_frozen = mark_frozen(run->g, cfg->freeze, true);
    if (n_frozen)
        qh_log(QH_LOG_INFO, s->name, "%d parameters frozen (%s)", n_frozen, cfg->freeze);
    qh_train_options o = {.checkpoint = ckpt[0] ? ckpt : NULL, .stage = s->name, .resume = run->opt->resume,
                          .stop_after_epoch = stop_hook()};
    qhi_prune_hook *hook = NULL;
    if ((st = qhi_prune_hook_begin(run, s, &hook, err)) != QH_OK) {
        qhi_prune_hook_end(hook);
        mark_frozen(run->g, cfg->freeze, false);
        return st;
    }
    if (hook) {
        o.epoch_hook = qhi_prune_hook_call;
        o.hook_save = qhi_prune_hook_save;
        o.hook_restore = qhi_prune_hook_restore;
        o.hook_user = hook;
        if (qhi_prune_hook_blocks_checkpoint(hook))
            o.checkpoint = NULL;
    }
    qh_rng rng = qh_rng_fork(&run->rng, 1000u + (uint64_t)run->n_stages_done);
    st = qh_train_ex(run->g, &run->ds, cfg, run->pc->dataset_limits->train_limit,
                     run->pc->dataset_limits->test_limit, &rng, run->opt->progress, m->epochs, &o, err);
    qhi_prune_hook_end(hook);
    mark_frozen(run->g, cfg->freeze, false);
    m->n_epochs = (int32_t)o.epochs_done;
    m->restored_s = 0.0;
    for (int64_t e = 0; e < o.resumed_at && e < o.epochs_done; e++)
        m->restored_s += m->epochs[e].wall_s;
    /* the training buffers (an output and a gradient per node) are not kept for the stages after:
     * inference allocates its own, shared by liveness, a fraction of them */
    qhi_graph_free_exec(run->g);
    return st;
}

static qh_status run_stage(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qh_error *err)
{
    double *mse = NULL;
    qh_status st = QH_OK;
    int64_t train_limit = run->pc->dataset_limits->train_limit, test_limit = run->pc->dataset_limits->test_limit;
    switch (s->type) {
    case QH_STAGE_TRAIN:
        st = run_train(run, s, m, err);
        break;
    case QH_STAGE_EVALUATE: {
        const qh_evaluate_config *cfg = s->host_cfg;
        qh_split split = (qh_split)cfg->split;
        m->split = split == QH_SPLIT_TRAIN ? "train" : "test";
        st = qh_evaluate(run->g, &run->ds, split, split == QH_SPLIT_TRAIN ? train_limit : test_limit, cfg->batch_size,
                         run->opt->progress, &m->eval, err);
        m->evaluated = st == QH_OK;
        if (st == QH_OK)
            qh_log(QH_LOG_DEBUG, s->name, "top-1 %.2f %%  top-5 %.2f %%  loss %.4f  (%lld %s samples)", m->eval.top1,
                   m->eval.top5, m->eval.loss, (long long)m->eval.n, m->split);
        break;
    }
    case QH_STAGE_PRUNE:
        st = qhi_prune_stage(run, s, err);
        break;
    case QH_STAGE_QUANTIZE:
        mse = malloc(sizeof(double) * (size_t)(run->g->n_weights + 1));
        if (!mse)
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        for (int32_t i = 0; i < run->g->n_weights; i++)
            mse[i] = -1.0;
        st = run_quantize(run, s, mse, err);
        break;
    case QH_STAGE_EXPORT:
        st = run_export(run, s, m, err);
        break;
    case QH_STAGE_TYPE_COUNT:
        break;
    }
    if (st == QH_OK)
        st = snapshot(run, m, mse, err);
    free(mse);
    if (st == QH_OK && (s->type == QH_STAGE_TRAIN || s->type == QH_STAGE_PRUNE || s->type == QH_STAGE_QUANTIZE))
        st = save_model(run, s, m, err);
    return st;
}

static qh_status open_run(qh_run *run, qh_error *err)
{
    const qh_pipeline_config *pc = run->pc;
    qh_status st;
    if ((st = qh_dataset_open(&run->ds, pc->dataset, pc->dataset_cfg, run->seed, err)) != QH_OK) {
        qh_error_prefix(err, "[dataset]");
        return st;
    }
    run->ds_open = true;
    const qh_dataset_info *in = &run->ds.info;
    run->g = qh_graph_new(in->channels, in->height, in->width, in->num_classes, err);
    if (!run->g)
        return QH_E_NOMEM;
    qh_model_input mi = {in->channels, in->height, in->width, in->num_classes};
    if ((st = qh_model_build(pc->model, pc->model_cfg, &mi, run->g, err)) != QH_OK ||
        (st = qh_graph_finalize(run->g, err)) != QH_OK) {
        qh_error_prefix(err, "[model]");
        return st;
    }
    qh_rng init = qh_rng_fork(&run->rng, 1);
    qh_graph_init_params(run->g, &init);
    if (pc->model_host && pc->model_host->weights && *pc->model_host->weights) {
        const char *exclude = pc->model_host->weights_exclude;
        if ((st = qh_model_load_ex(run->g, pc->model_host->weights, exclude, err)) != QH_OK) {
            qh_error_prefix(err, "[model] weights");
            return st;
        }
        int32_t kept = 0;
        for (int32_t i = 0; exclude && *exclude && i < run->g->n_weights; i++)
            kept += qh_name_match_list(exclude, run->g->weights[i].value->name);
        if (kept)
            qh_log(QH_LOG_INFO, "model", "loaded weights from %s except %d parameters matching '%s' (initialized)",
                   pc->model_host->weights, kept, exclude);
        else
            qh_log(QH_LOG_INFO, "model", "loaded weights from %s", pc->model_host->weights);
    }
    /* The output directory appears only once the inputs are known to be good. */
    run->qt = calloc((size_t)run->g->n_weights + 1, sizeof *run->qt);
    if (!run->qt)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    if ((st = check_targets(run, err)) != QH_OK || (st = qhi_prune_check(run, err)) != QH_OK ||
        (st = qh_mkdir_p(run->outdir, err)) != QH_OK)
        return st;
    run->metrics = calloc((size_t)pc->n_stages + 1, sizeof *run->metrics);
    if (!run->qt || !run->metrics)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    qh_log(QH_LOG_INFO, "model", "%s: %lld parameters, %lld MACs per sample, input %dx%dx%d, %d classes",
           pc->model->name, (long long)qh_graph_n_params(run->g), (long long)qh_graph_macs(run->g), in->channels,
           in->height, in->width, in->num_classes);
    return QH_OK;
}

static void close_run(qh_run *run)
{
    if (run->metrics)
        for (int32_t i = 0; i < run->pc->n_stages; i++) {
            free(run->metrics[i].layers);
            free(run->metrics[i].epochs);
        }
    free(run->metrics);
    if (run->qt && run->g)
        for (int32_t i = 0; i < run->g->n_weights; i++)
            qh_qtensor_clear(&run->qt[i]);
    free(run->qt);
    qh_graph_free(run->g);
    if (run->ds_open)
        qh_dataset_close(&run->ds);
}

qh_status qh_pipeline_run(const qh_pipeline_config *pc, const qh_registry *reg, const qh_run_options *opt,
                          qh_error *err)
{
    qh_run run = {.pc = pc, .reg = reg, .opt = opt};
    const char *out = opt->output_dir ? opt->output_dir : pc->global->output;
    snprintf(run.outdir, sizeof run.outdir, "%s", out);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    run.threads = opt->threads > 0 ? opt->threads : pc->global->threads > 0 ? (int)pc->global->threads
                                                                             : (int)(cores > 0 ? cores : 1);
    qh_set_threads(run.threads);
    run.seed = (uint64_t)pc->global->seed;
    qh_rng_seed(&run.rng, run.seed);
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(run.started_at, sizeof run.started_at, "%Y-%m-%dT%H:%M:%SZ", &tm);

    qh_status st = open_run(&run, err);
    int32_t first = 0;
    if (st == QH_OK && opt->resume && (st = qhi_resume(&run, &first, err)) == QH_OK)
        run.n_stages_done = first;
    if (st == QH_OK)
        st = qhi_write_manifest(&run, err);
    for (int32_t i = first; st == QH_OK && i < pc->n_stages; i++) {
        const qh_stage *s = &pc->stages[i];
        qh_stage_metrics *m = &run.metrics[i];
        snprintf(m->name, sizeof m->name, "%s", s->name);
        m->type = qh_stage_type_name(s->type);
        qh_log(QH_LOG_INFO, "pipeline", "stage %d/%d [%s] (%s%s%s)", i + 1, pc->n_stages, s->name, m->type,
               s->plugin ? " " : "", s->plugin ? s->plugin->name : "");
        double t0 = qh_now_s();
        st = s->n_axes > 0 ? qhi_sweep_stage(&run, s, m, run_stage, err) : run_stage(&run, s, m, err);
        m->wall_s = qh_now_s() - t0;
        if (s->n_axes == 0)
            m->wall_s += m->restored_s; /* a resumed train stage: its time before the checkpoint too */
        if (st != QH_OK) {
            qh_error_prefix(err, "stage [%s] (%s%s%s)", s->name, m->type, s->plugin ? " " : "",
                            s->plugin ? s->plugin->name : "");
            break;
        }
        run.n_stages_done = i + 1;
        st = qhi_write_metrics(&run, err);
        char ckpt[4400];
        checkpoint_path(&run, s, ckpt, sizeof ckpt);
        if (st == QH_OK && ckpt[0])
            unlink(ckpt); /* the model file and metrics.json now hold the stage's result */
    }
    if (st == QH_OK)
        qh_log(QH_LOG_INFO, "pipeline", "done: outputs in %s", run.outdir);
    close_run(&run);
    return st;
}
