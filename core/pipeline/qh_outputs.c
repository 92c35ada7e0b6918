/* qh_outputs.c - run outputs: metrics.json, results.csv, report.md, manifest.json and the packed
 * quantized model. Every file is written to a temporary name and renamed. */
#include "pipeline/qh_run_impl.h"
#include "pipeline/qh_sweep.h"
#include "qhost/qh_fileio.h"
#include "qhost/qh_safetensors.h"
#include "qh_version.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

static qh_status write_json(const char *dir, const char *file, json_t *root, qh_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    if (!text)
        return qh_error_set(err, QH_E_NOMEM, "%s: cannot serialize JSON", path);
    size_t len = strlen(text);
    char *with_nl = realloc(text, len + 2);
    if (!with_nl) {
        free(text);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    with_nl[len] = '\n';
    qh_status st = qh_atomic_write(path, with_nl, len + 1, err);
    free(with_nl);
    return st;
}

/* SQNR is infinite for an exact reconstruction: JSON has no infinity, so it is written as null. */
static json_t *db_json(double db)
{
    return isfinite(db) ? json_real(db) : json_null();
}

/* The analysis fields of a quantized layer (or of a stage's total). */
static void qa_json(json_t *o, const qh_qanalysis *a)
{
    json_object_set_new(o, "mae", json_real(a->mae));
    json_object_set_new(o, "sqnr_db", db_json(a->sqnr_db));
    json_object_set_new(o, "levels", json_integer(a->levels));
    json_object_set_new(o, "bytes_codes", json_integer(a->bytes_codes));
    json_object_set_new(o, "bytes_scales", json_integer(a->bytes_scales));
    json_object_set_new(o, "bytes_zero_points", json_integer(a->bytes_zero));
    json_object_set_new(o, "bytes_codebook", json_integer(a->bytes_codebook));
    json_object_set_new(o, "bytes_perm", json_integer(a->bytes_perm));
    json_object_set_new(o, "compression", json_real(a->compression));
}

static json_t *quant_total_json(const qh_stage_metrics *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "layers", json_integer(m->n_quantized));
    json_object_set_new(o, "numel", json_integer(m->qtotal.numel));
    json_object_set_new(o, "mse", json_real(m->qtotal.mse));
    qa_json(o, &m->qtotal);
    json_object_set_new(o, "bytes", json_integer(m->qtotal.bytes));
    return o;
}

/* Each event of a pruning schedule (or the one call of a oneshot prune stage). */
static json_t *events_json(const qh_stage_metrics *m)
{
    json_t *a = json_array();
    int32_t listed = m->n_prune_events < QHI_MAX_PRUNE_EVENTS ? m->n_prune_events : QHI_MAX_PRUNE_EVENTS;
    for (int32_t i = 0; i < listed; i++) {
        const qh_prune_event *e = &m->prune_events[i];
        json_t *x = json_object();
        if (e->epoch >= 0)
            json_object_set_new(x, "epoch", json_integer(e->epoch));
        json_object_set_new(x, "target", json_real(e->target));
        json_object_set_new(x, "sparsity", json_real(e->measured));
        if (e->undone)
            json_object_set_new(x, "undone", json_true());
        json_array_append_new(a, x);
    }
    return a;
}

void qhi_events_put(json_t *o, const qh_stage_metrics *m)
{
    if (m->n_prune_events <= 0)
        return;
    json_object_set_new(o, "prune_events", events_json(m));
    if (m->n_prune_events > QHI_MAX_PRUNE_EVENTS)
        json_object_set_new(o, "prune_events_not_listed", json_integer(m->n_prune_events - QHI_MAX_PRUNE_EVENTS));
}

static json_t *structured_json(const qh_structured_metrics *sm)
{
    json_t *o = json_object();
    json_object_set_new(o, "groups", json_integer(sm->groups));
    json_object_set_new(o, "groups_pruned", json_integer(sm->groups_pruned));
    json_object_set_new(o, "physical", json_boolean(sm->physical));
    if (!sm->physical)
        return o;
    json_object_set_new(o, "channels_before", json_integer(sm->channels_before));
    json_object_set_new(o, "channels_after", json_integer(sm->channels_after));
    json_object_set_new(o, "params_before", json_integer(sm->params_before));
    json_object_set_new(o, "params_after", json_integer(sm->params_after));
    json_object_set_new(o, "macs_before", json_integer(sm->macs_before));
    json_object_set_new(o, "macs_after", json_integer(sm->macs_after));
    json_object_set_new(o, "batch", json_integer(sm->batch));
    json_object_set_new(o, "threads", json_integer(sm->threads));
    json_object_set_new(o, "repetitions", json_integer(sm->reps));
    json_object_set_new(o, "img_s_before", json_real(sm->img_s_before));
    json_object_set_new(o, "img_s_after", json_real(sm->img_s_after));
    json_object_set_new(o, "speedup", json_real(sm->img_s_after / sm->img_s_before));
    return o;
}

static json_t *stage_json(const qh_stage_metrics *m)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(m->name));
    json_object_set_new(o, "type", json_string(m->type));
    json_object_set_new(o, "wall_s", json_real(m->wall_s));
    if (m->evaluated) {
        json_object_set_new(o, "split", json_string(m->split));
        json_object_set_new(o, "samples", json_integer(m->eval.n));
        json_object_set_new(o, "top1", json_real(m->eval.top1));
        json_object_set_new(o, "top5", json_real(m->eval.top5));
        json_object_set_new(o, "loss", json_real(m->eval.loss));
    }
    json_object_set_new(o, "sparsity", json_real(m->sparsity));
    json_object_set_new(o, "model_bytes", json_integer(m->model_bytes));
    json_object_set_new(o, "params", json_integer(m->params));
    if (m->model_file[0])
        json_object_set_new(o, "model_file", json_string(m->model_file));
    if (m->n_epochs) {
        json_t *ep = json_array();
        for (int32_t i = 0; i < m->n_epochs; i++) {
            const qh_epoch_log *e = &m->epochs[i];
            json_t *x = json_object();
            json_object_set_new(x, "epoch", json_integer(i + 1));
            json_object_set_new(x, "train_loss", json_real(e->train_loss));
            json_object_set_new(x, "lr", json_real(e->lr_end));
            json_object_set_new(x, "wall_s", json_real(e->wall_s));
            if (e->evaluated) {
                json_object_set_new(x, "test_top1", json_real(e->test.top1));
                json_object_set_new(x, "test_loss", json_real(e->test.loss));
            }
            json_array_append_new(ep, x);
        }
        json_object_set_new(o, "epochs", ep);
    }
    json_t *layers = json_array();
    for (int32_t i = 0; i < m->n_layers; i++) {
        const qh_layer_metrics *l = &m->layers[i];
        json_t *x = json_object();
        json_object_set_new(x, "name", json_string(l->name));
        json_object_set_new(x, "numel", json_integer(l->numel));
        json_object_set_new(x, "sparsity", json_real(l->numel ? (double)l->zeros / (double)l->numel : 0.0));
        json_object_set_new(x, "bits", json_integer(l->bits));
        json_object_set_new(x, "bytes", json_integer(l->bytes));
        if (l->quantized_now) {
            json_object_set_new(x, "mse", json_real(l->mse));
            qa_json(x, &l->qa);
            if (isfinite(l->rel_err))
                json_object_set_new(x, "relative_output_error", json_real(l->rel_err));
        }
        json_array_append_new(layers, x);
    }
    json_object_set_new(o, "layers", layers);
    if (m->n_quantized > 0)
        json_object_set_new(o, "quantization", quant_total_json(m));
    qhi_events_put(o, m);
    if (m->structured.done)
        json_object_set_new(o, "structured", structured_json(&m->structured));
    return o;
}

static qh_status write_csv(const qh_run *run, qh_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/results.csv", run->outdir);
    qh_atomic_file af;
    qh_status st = qh_atomic_open(&af, path, err);
    if (st != QH_OK)
        return st;
    fprintf(af.fp, "stage,type,wall_s,top1,top5,loss,sparsity,model_bytes\n");
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        const qh_stage_metrics *m = &run->metrics[i];
        fprintf(af.fp, "%s,%s,%.3f,", m->name, m->type, m->wall_s);
        if (m->evaluated)
            fprintf(af.fp, "%.2f,%.2f,%.6f,", m->eval.top1, m->eval.top5, m->eval.loss);
        else
            fprintf(af.fp, ",,,");
        fprintf(af.fp, "%.6f,%lld\n", m->sparsity, (long long)m->model_bytes);
    }
    return qh_atomic_commit(&af, err);
}

static void print_db(FILE *f, double db)
{
    if (isfinite(db))
        fprintf(f, "%.2f", db);
    else
        fprintf(f, "%sinf", db < 0 ? "-" : "");
}

static void quant_row(FILE *f, const char *name, int32_t bits, const qh_qanalysis *a)
{
    fprintf(f, "| %s | ", name);
    if (bits > 0)
        fprintf(f, "%d", bits);
    fprintf(f, " | %.4g | %.4g | ", a->mse, a->mae);
    print_db(f, a->sqnr_db);
    fprintf(f, " | %lld | %lld | %lld | %lld | %lld | %lld | %lld | %.2f |\n", (long long)a->levels,
            (long long)a->bytes_codes, (long long)a->bytes_scales, (long long)a->bytes_zero,
            (long long)a->bytes_codebook, (long long)a->bytes_perm, (long long)a->bytes, a->compression);
}

/* The calibrated layers' relative output errors on the calibration data, in network order of
 * the weights (calibration-<stage>.csv has them with the capture details). */
static void write_rel_errors(FILE *f, const qh_stage_metrics *m)
{
    int32_t n = 0;
    for (int32_t k = 0; k < m->n_layers; k++) {
        if (!m->layers[k].quantized_now || !isfinite(m->layers[k].rel_err))
            continue;
        if (n++ == 0)
            fprintf(f, "\nRelative output error of each calibrated layer on the calibration data "
                       "(calibration-%s.csv):", m->name);
        fprintf(f, "%s %s %.4f", n > 1 ? "," : "", m->layers[k].name, m->layers[k].rel_err);
    }
    if (n)
        fprintf(f, ".\n");
}

/* One table per quantize stage: error and storage of every tensor it quantized, then the total. */
static void write_quant_tables(FILE *f, const qh_run *run)
{
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        const qh_stage_metrics *m = &run->metrics[i];
        if (m->n_quantized == 0)
            continue;
        fprintf(f, "\n## Quantization in [%s]\n\n", m->name);
        fprintf(f, "SQNR = 10 log10(sum w^2 / sum (w - q)^2), inf for an exact tensor; levels = distinct codes "
                   "used; bytes: codes packed at their bit width, 4 per scale / zero point / code-book entry; "
                   "x fp32 = 4 * elements / bytes.\n\n");
        fprintf(f, "| parameter | bits | MSE | MAE | SQNR dB | levels | codes B | scales B | zero points B "
                   "| code book B | perm B | total B | x fp32 |\n");
        fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for (int32_t k = 0; k < m->n_layers; k++)
            if (m->layers[k].quantized_now)
                quant_row(f, m->layers[k].name, m->layers[k].bits, &m->layers[k].qa);
        quant_row(f, "**total**", 0, &m->qtotal);
        write_rel_errors(f, m);
    }
}

/* Per stage with pruning events: epoch, target and measured sparsity of each. */
static void write_event_tables(FILE *f, const qh_run *run)
{
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        const qh_stage_metrics *m = &run->metrics[i];
        if (m->n_prune_events == 0)
            continue;
        fprintf(f, "\n## Pruning events in [%s]\n\n| epochs run | target %% | measured %% |\n|---:|---:|---:|\n",
                m->name);
        for (int32_t k = 0; k < m->n_prune_events && k < QHI_MAX_PRUNE_EVENTS; k++) {
            const qh_prune_event *e = &m->prune_events[k];
            if (e->epoch >= 0)
                fprintf(f, "| %lld", (long long)e->epoch);
            else
                fprintf(f, "| (oneshot)");
            fprintf(f, " | %.2f | %.2f%s |\n", 100.0 * e->target, 100.0 * e->measured, e->undone ? " (undone)" : "");
        }
        if (m->n_prune_events > QHI_MAX_PRUNE_EVENTS)
            fprintf(f, "\n%d more events not listed.\n", m->n_prune_events - QHI_MAX_PRUNE_EVENTS);
    }
}

/* Structured prune stages: groups pruned; with physical removal the model before and after. */
static void write_structured_tables(FILE *f, const qh_run *run)
{
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        const qh_structured_metrics *sm = &run->metrics[i].structured;
        if (!sm->done)
            continue;
        fprintf(f, "\n## Structured pruning in [%s]\n\n%d of %d coupled filter groups pruned", run->metrics[i].name,
                sm->groups_pruned, sm->groups);
        if (!sm->physical) {
            fprintf(f, " (masked; the model keeps its shape).\n");
            continue;
        }
        fprintf(f, " and removed. Inference measured side by side in one process: batch %lld, %d threads, median of "
                   "%d interleaved repetitions.\n\n", (long long)sm->batch, sm->threads, sm->reps);
        fprintf(f, "| | before | after | after / before |\n|---|---:|---:|---:|\n");
        fprintf(f, "| conv + linear output channels | %lld | %lld | %.3f |\n", (long long)sm->channels_before,
                (long long)sm->channels_after, (double)sm->channels_after / (double)sm->channels_before);
        fprintf(f, "| parameters | %lld | %lld | %.3f |\n", (long long)sm->params_before, (long long)sm->params_after,
                (double)sm->params_after / (double)sm->params_before);
        fprintf(f, "| MACs per sample | %lld | %lld | %.3f |\n", (long long)sm->macs_before, (long long)sm->macs_after,
                (double)sm->macs_after / (double)sm->macs_before);
        fprintf(f, "| inference img/s | %.1f | %.1f | %.2f |\n", sm->img_s_before, sm->img_s_after,
                sm->img_s_after / sm->img_s_before);
    }
}

static qh_status write_report(const qh_run *run, qh_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/report.md", run->outdir);
    qh_atomic_file af;
    qh_status st = qh_atomic_open(&af, path, err);
    if (st != QH_OK)
        return st;
    FILE *f = af.fp;
    fprintf(f, "# %s\n\n", run->pc->global->name);
    fprintf(f, "Model `%s`, dataset `%s`, seed %llu, %d threads, qhost %s. Started %s.\n\n", run->pc->model->name,
            run->pc->dataset->name, (unsigned long long)run->seed, run->threads, QH_VERSION, run->started_at);
    fprintf(f, "| stage | type | top-1 %% | top-5 %% | loss | sparsity %% | model bytes | wall s |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|\n");
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        const qh_stage_metrics *m = &run->metrics[i];
        if (m->evaluated)
            fprintf(f, "| %s | %s | %.2f | %.2f | %.4f | %.2f | %lld | %.2f |\n", m->name, m->type, m->eval.top1,
                    m->eval.top5, m->eval.loss, 100.0 * m->sparsity, (long long)m->model_bytes, m->wall_s);
        else
            fprintf(f, "| %s | %s |  |  |  | %.2f | %lld | %.2f |\n", m->name, m->type, 100.0 * m->sparsity,
                    (long long)m->model_bytes, m->wall_s);
    }
    if (run->n_stages_done > 0) {
        const qh_stage_metrics *m = &run->metrics[run->n_stages_done - 1];
        fprintf(f, "\n## Parameters after [%s]\n\n", m->name);
        fprintf(f, "| parameter | elements | sparsity %% | bits | bytes |\n|---|---:|---:|---:|---:|\n");
        for (int32_t i = 0; i < m->n_layers; i++) {
            const qh_layer_metrics *l = &m->layers[i];
            fprintf(f, "| %s | %lld | %.2f | %d | %lld |\n", l->name, (long long)l->numel,
                    l->numel ? 100.0 * (double)l->zeros / (double)l->numel : 0.0, l->bits,
                    (long long)l->bytes);
        }
    }
    write_quant_tables(f, run);
    for (int32_t i = 0; i < run->n_stages_done; i++)
        qhi_sweep_report(f, run, i);
    write_event_tables(f, run);
    write_structured_tables(f, run);
    return qh_atomic_commit(&af, err);
}

qh_status qhi_write_metrics(const qh_run *run, qh_error *err)
{
    json_t *root = json_object();
    json_object_set_new(root, "pipeline", json_string(run->pc->global->name));
    json_t *stages = json_array();
    for (int32_t i = 0; i < run->n_stages_done; i++) {
        json_t *o = stage_json(&run->metrics[i]);
        json_t *sw = qhi_sweep_json(run, i); /* NULL unless stage i is a sweep */
        if (sw)
            json_object_set_new(o, "sweep", sw);
        json_array_append_new(stages, o);
    }
    json_object_set_new(root, "stages", stages);
    qh_status st = write_json(run->outdir, "metrics.json", root, err);
    json_decref(root);
    if (st == QH_OK)
        st = write_csv(run, err);
    if (st == QH_OK)
        st = write_report(run, err);
    return st;
}

static json_t *plugin_json(const qh_plugin *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "kind", json_string(qh_kind_name(p->kind)));
    json_object_set_new(o, "name", json_string(p->name));
    json_object_set_new(o, "version", json_string(p->version ? p->version : ""));
    char abi[32];
    snprintf(abi, sizeof abi, "%u.%u", p->abi_major, p->abi_minor);
    json_object_set_new(o, "abi", json_string(abi));
    json_object_set_new(o, "file", json_string(p->path));
    return o;
}

static json_t *config_json(const qh_plugin *p, const void *cfg)
{
    json_t *o = json_object();
    for (const qh_param *q = p->params; q->name; q++) {
        char v[512];
        qh_config_format(q, cfg, v, sizeof v);
        json_object_set_new(o, q->name, json_string(v));
    }
    return o;
}

static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            const char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ')
                    c++;
                snprintf(buf, size, "%.*s", (int)strcspn(c, "\n"), c);
            }
            break;
        }
    }
    fclose(f);
}

qh_status qhi_write_manifest(const qh_run *run, qh_error *err)
{
    const qh_pipeline_config *pc = run->pc;
    json_t *root = json_object();
    json_object_set_new(root, "qhost_version", json_string(QH_VERSION));
    char abi[32];
    snprintf(abi, sizeof abi, "%d.%d", QH_ABI_MAJOR, QH_ABI_MINOR);
    json_object_set_new(root, "abi", json_string(abi));
    json_object_set_new(root, "started_at", json_string(run->started_at));
    json_object_set_new(root, "pipeline_file", json_string(pc->path));
    json_object_set_new(root, "pipeline_text", json_string(pc->text ? pc->text : ""));
    json_object_set_new(root, "seed", json_integer((json_int_t)run->seed));
    json_object_set_new(root, "threads", json_integer(run->threads));
    json_object_set_new(root, "output", json_string(run->outdir));
    json_t *plugins = json_array();
    json_t *m = plugin_json(pc->model);
    json_object_set_new(m, "config", config_json(pc->model, pc->model_cfg));
    json_array_append_new(plugins, m);
    json_t *d = plugin_json(pc->dataset);
    json_object_set_new(d, "config", config_json(pc->dataset, pc->dataset_cfg));
    json_array_append_new(plugins, d);
    for (int i = 0; i < pc->n_stages; i++) {
        if (!pc->stages[i].plugin)
            continue;
        json_t *s = plugin_json(pc->stages[i].plugin);
        json_object_set_new(s, "stage", json_string(pc->stages[i].name));
        json_object_set_new(s, "config", config_json(pc->stages[i].plugin, pc->stages[i].plugin_cfg));
        json_array_append_new(plugins, s);
    }
    json_object_set_new(root, "plugins", plugins);
    json_t *ds = json_object();
    json_object_set_new(ds, "plugin", json_string(pc->dataset->name));
    json_object_set_new(ds, "identity", json_string(run->ds.info.identity));
    json_object_set_new(ds, "train_samples", json_integer(run->ds.info.n_train));
    json_object_set_new(ds, "test_samples", json_integer(run->ds.info.n_test));
    json_object_set_new(root, "dataset", ds);
    json_t *host = json_object();
    struct utsname u;
    if (uname(&u) == 0) {
        json_object_set_new(host, "hostname", json_string(u.nodename));
        char os[600];
        snprintf(os, sizeof os, "%s %s %s", u.sysname, u.release, u.machine);
        json_object_set_new(host, "os", json_string(os));
    }
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    json_object_set_new(host, "cpu", json_string(cpu));
    json_object_set_new(host, "cores", json_integer(sysconf(_SC_NPROCESSORS_ONLN)));
    json_object_set_new(root, "host", host);
    qh_status st = write_json(run->outdir, "manifest.json", root, err);
    json_decref(root);
    return st;
}

/* Packs codes at `bits` each, least significant bit first; signed codes as two's complement. */
static qh_tensor *pack_codes(const qh_qtensor *q, qh_error *err)
{
    int64_t n = qh_tensor_numel(q->codes);
    int64_t bytes = (n * q->bits + 7) / 8;
    int64_t shape[1] = {bytes};
    qh_tensor *p = qh_tensor_new(QH_U8, 1, shape, err);
    if (!p)
        return NULL;
    uint8_t *out = p->data;
    uint32_t mask = q->bits >= 32 ? 0xffffffffu : ((1u << q->bits) - 1u);
    int64_t bit = 0;
    for (int64_t i = 0; i < n; i++, bit += q->bits) {
        int64_t v;
        switch (q->codes->dtype) {
        case QH_I8: v = ((const int8_t *)q->codes->data)[i]; break;
        case QH_U8: v = ((const uint8_t *)q->codes->data)[i]; break;
        case QH_I16: v = ((const int16_t *)q->codes->data)[i]; break;
        case QH_U16: v = ((const uint16_t *)q->codes->data)[i]; break;
        default: v = ((const int32_t *)q->codes->data)[i]; break;
        }
        uint32_t u = (uint32_t)v & mask;
        for (int b = 0; b < q->bits; b++)
            if (u >> b & 1u)
                out[(bit + b) >> 3] |= (uint8_t)(1u << ((bit + b) & 7));
    }
    return p;
}

qh_status qhi_write_quantized(const qh_run *run, const char *path, qh_error *err)
{
    const qh_graph *g = run->g;
    int32_t cap = 5 * g->n_weights + 1, n = 0, nm = 0;
    const qh_tensor **list = calloc((size_t)cap, sizeof *list);
    qh_tensor **owned = calloc((size_t)cap, sizeof *owned);
    char **mk = calloc((size_t)g->n_weights + 2, sizeof *mk), **mv = calloc((size_t)g->n_weights + 2, sizeof *mv);
    qh_status st = QH_OK;
    if (!list || !owned || !mk || !mv) {
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
        goto out;
    }
    static const char *gran_names[] = {"tensor", "channel", "block", "flat_block"};
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_qtensor *q = &run->qt[i];
        const qh_tensor *w = g->weights[i].value;
        if (q->bits <= 0) {
            list[n++] = w; /* float parameters travel as they are */
            continue;
        }
        qh_tensor *packed = pack_codes(q, err);
        if (!packed) {
            st = QH_E_NOMEM;
            goto out;
        }
        char name[QH_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s.codes", w->name);
        qh_tensor_set_name(packed, name);
        owned[n] = packed;
        list[n++] = packed;
        const qh_tensor *parts[4] = {q->scale, q->zero, q->codebook, q->perm};
        const char *suffix[4] = {"scale", "zero_point", "codebook", "perm"};
        for (int k = 0; k < 4; k++) {
            if (!parts[k])
                continue;
            qh_tensor *c = qh_tensor_clone(parts[k], err);
            if (!c) {
                st = QH_E_NOMEM;
                goto out;
            }
            snprintf(name, sizeof name, "%s.%s", w->name, suffix[k]);
            qh_tensor_set_name(c, name);
            owned[n] = c;
            list[n++] = c;
        }
        char shape[128], desc[512];
        qh_shape_str(w, shape, sizeof shape);
        snprintf(desc, sizeof desc,
                 "{\"bits\": %d, \"granularity\": \"%s\", \"axis\": %d, \"block\": %d, \"code_dtype\": \"%s\", "
                 "\"shape\": %s, \"packing\": \"lsb-first\", \"codebook_fixed\": %s}",
                 q->bits, (unsigned)q->gran < 4 ? gran_names[q->gran] : "?", q->axis, q->block,
                 qh_dtype_name(q->codes->dtype), shape, q->book_fixed ? "true" : "false");
        mk[nm] = strdup(w->name);
        mv[nm] = strdup(desc);
        if (!mk[nm] || !mv[nm]) {
            st = qh_error_set(err, QH_E_NOMEM, "out of memory");
            nm++;
            goto out;
        }
        nm++;
    }
    mk[nm] = strdup("qhost_version");
    mv[nm] = strdup(QH_VERSION);
    nm++;
    st = qh_safetensors_write(path, list, n, (const char *const *)mk, (const char *const *)mv, nm, err);
out:
    for (int32_t i = 0; owned && i < cap; i++)
        qh_tensor_free(owned[i]);
    for (int32_t i = 0; mk && mv && i < nm; i++) {
        free(mk[i]);
        free(mv[i]);
    }
    free(mk);
    free(mv);
    free(owned);
    free(list);
    return st;
}
