/* qh_quantize_calib.c - a quantize stage whose quantizer learns from data (GPFQ, GPTQ, ...).
 *
 * Policy only: which layers get which treatment and in what order. The capture (core/calib) and
 * the method (the plugin) do the work. Layers are quantized in network order so each one's X~ is
 * the input of the network quantized so far, which is what GPFQ's error feedback needs; data-free
 * targets in between (grouped convs, layers the plugin wants no data for) are quantized in the same
 * order for the same reason. */
#include "pipeline/qh_quantize_calib.h"

#include "calib/qh_calib_impl.h"
#include "qhost/qh_fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/qh_timing.h"

typedef enum { T_SKIP = 0, T_DATA_FREE, T_CALIB } target_kind;
static const char *const kind_names[] = {"skipped", "data-free", "calibrated"};

/* One target and what happened to it (the rows of calibration-<stage>.csv). */
typedef struct target {
    int32_t w, node;
    uint32_t needs;
    target_kind kind;
    int64_t rows, cols, m;
    double capture_s, quantize_s, rel_err;
} target;

static int by_node(const void *a, const void *b)
{
    const target *x = a, *y = b;
    return x->node != y->node ? (x->node > y->node) - (x->node < y->node) : (x->w > y->w) - (x->w < y->w);
}

static bool grouped(const qh_graph *g, int32_t node)
{
    return node >= 0 && g->nodes[node].op == QH_OP_CONV2D && g->nodes[node].u.conv.groups > 1;
}

bool qhi_quantize_wants_calib(const qh_run *run, const qh_stage *s, qh_quantizer *qz, const int32_t *idx, int32_t n)
{
    if (((const qh_quantize_config *)s->host_cfg)->fold_batchnorm)
        return true;
    for (int32_t k = 0; k < n; k++) {
        const qh_tensor *w = run->g->weights[idx[k]].value;
        if (qh_quantizer_accepts(qz, w->name, w) && qh_quantizer_calib_needs(qz, w->name, w))
            return true;
    }
    return false;
}

/* Targets in network order, each classified. */
static target *plan_targets(const qh_run *run, const qh_stage *s, qh_quantizer *qz, const int32_t *idx, int32_t n)
{
    target *t = calloc((size_t)n + 1, sizeof *t);
    for (int32_t k = 0; t && k < n; k++) {
        const qh_weight *w = &run->g->weights[idx[k]];
        t[k] = (target){.w = idx[k], .node = w->node, .rel_err = NAN};
        if (!qh_quantizer_accepts(qz, w->value->name, w->value))
            continue;
        t[k].needs = qh_quantizer_calib_needs(qz, w->value->name, w->value);
        t[k].kind = t[k].needs ? T_CALIB : T_DATA_FREE;
        if (t[k].needs && grouped(run->g, w->node)) {
            qh_log(QH_LOG_INFO, s->name, "%s: grouped conv (%d groups): quantized data-free by %s", w->value->name,
                   run->g->nodes[w->node].u.conv.groups, s->plugin->name);
            t[k].kind = T_DATA_FREE;
            t[k].needs = 0;
        }
    }
    if (t)
        qsort(t, (size_t)n, sizeof *t, by_node);
    return t;
}

/* The calibration images: calibration_images drawn without replacement (seeded) from the split. */
static qh_status load_images(qh_run *run, const qh_stage *s, float **out, qh_error *err)
{
    const qh_quantize_config *cfg = s->host_cfg;
    qh_split split = (qh_split)cfg->calibration_split;
    bool train = split == QH_SPLIT_TRAIN;
    int64_t size = train ? run->ds.info.n_train : run->ds.info.n_test;
    int64_t limit = train ? run->pc->dataset_limits->train_limit : run->pc->dataset_limits->test_limit;
    if (limit > 0 && limit < size)
        size = limit;
    int64_t k = cfg->calibration_images;
    *out = NULL;
    if (k > size)
        return qh_error_set(err, QH_E_CONFIG,
                            "%s:%d: error: [%s]: calibration_images = %lld, but the %s split has "
                            "only %lld images%s",
                            run->pc->path, s->line, s->name, (long long)k, train ? "train" : "test", (long long)size,
                            limit > 0 ? (train ? " (train_limit)" : " (test_limit)") : "");
    int64_t per = (int64_t)run->ds.info.channels * run->ds.info.height * run->ds.info.width;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)size);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)k);
    float *x = malloc(sizeof(float) * (size_t)(k * per));
    qh_status st = ids && labels && x
                       ? QH_OK
                       : qh_error_set(err, QH_E_NOMEM, "out of memory for %lld calibration images", (long long)k);
    if (st == QH_OK) {
        for (int64_t i = 0; i < size; i++)
            ids[i] = i;
        qh_rng base, r;
        qh_rng_seed(&base, (uint64_t)cfg->calibration_seed);
        r = qh_rng_fork(&base, 0);
        qh_rng_shuffle_i64(&r, ids, size);
        st = qh_dataset_load(&run->ds, split, ids, k, x, labels, err);
    }
    free(ids);
    free(labels);
    if (st != QH_OK)
        free(x);
    else
        *out = x;
    return st;
}

/* The result of one tensor into the run, as run_quantize stores it. */
static qh_status store(qh_run *run, const target *t, qh_qtensor *q, qh_tensor *deq, double *mse, qh_error *err)
{
    qh_weight *w = &run->g->weights[t->w];
    qh_status st = qh_qanalysis_compute(w->value, q, deq, &run->qa[t->w], err);
    if (st != QH_OK)
        return st;
    mse[t->w] = run->qa[t->w].mse;
    if (run->rel_err)
        run->rel_err[t->w] = t->rel_err;
    memcpy(w->value->data, deq->data, qh_tensor_nbytes(deq));
    qh_qtensor_clear(&run->qt[t->w]);
    run->qt[t->w] = *q;
    memset(q, 0, sizeof *q);
    return QH_OK;
}

/* One target quantized from its captured data. */
static qh_status quantize_one_calib(qh_run *run, const qh_stage *s, qh_quantizer *qz, qhi_calib *cs, target *t,
                                    int32_t index, qh_qtensor *q, qh_tensor *deq, qh_error *err)
{
    qh_weight *w = &run->g->weights[t->w];
    double t0 = qh_now_s();
    qhi_calib_data d;
    qh_status st = qhi_calib_capture(cs, t->node, index, t->needs, &d, err);
    double t1 = qh_now_s();
    if (st == QH_OK) {
        qh_calib_layer c = qhi_calib_layer_of(&d, w, index);
        st = qh_quantizer_quantize_calib(qz, &c, q, deq, err);
    }
    double t2 = qh_now_s();
    if (st == QH_OK)
        st = qhi_calib_rel_error(&d, qh_tensor_f32(w->value), qh_tensor_f32(deq), &t->rel_err, err);
    t->rows = d.rows;
    t->cols = d.cols;
    t->m = d.m;
    t->capture_s = t1 - t0;
    t->quantize_s = t2 - t1;
    qhi_calib_data_free(&d);
    if (st == QH_OK)
        qh_log(QH_LOG_INFO, s->name,
               "%s: %lld x %lld, m = %lld samples, relative output error %.5f (capture %.3f s, "
               "%s %.3f s)",
               w->value->name, (long long)t->rows, (long long)t->cols, (long long)t->m, t->rel_err, t->capture_s,
               s->plugin->name, t->quantize_s);
    return st;
}

static qh_status quantize_one(qh_run *run, const qh_stage *s, qh_quantizer *qz, qhi_calib *cs, target *t, int32_t index,
                              double *mse, qh_error *err)
{
    qh_weight *w = &run->g->weights[t->w];
    qh_status st = cs ? qhi_calib_keep_original(cs, t->node, err) : QH_OK;
    if (st != QH_OK)
        return st;
    qh_tensor *deq = qh_tensor_new(QH_F32, w->value->ndim, w->value->shape, err);
    if (!deq)
        return QH_E_NOMEM;
    qh_qtensor q = {0};
    if (t->kind == T_CALIB) {
        st = quantize_one_calib(run, s, qz, cs, t, index, &q, deq, err);
    } else {
        double t0 = qh_now_s();
        st = qh_quantizer_quantize(qz, w->value->name, w->value, &q, deq, err);
        t->quantize_s = qh_now_s() - t0;
    }
    if (st == QH_OK)
        st = store(run, t, &q, deq, mse, err);
    qh_qtensor_clear(&q);
    qh_tensor_free(deq);
    if (st != QH_OK)
        qh_error_prefix(err, "tensor %s", w->value->name);
    return st;
}

/* calibration-<stage>.csv: one row per target, what the capture and the method did. */
static qh_status write_csv(const qh_run *run, const qh_stage *s, const target *t, int32_t n, qh_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/calibration-%s.csv", run->outdir, s->name);
    qh_atomic_file af;
    qh_status st = qh_atomic_open(&af, path, err);
    if (st != QH_OK)
        return st;
    fprintf(af.fp, "layer,index,treatment,rows,cols,samples,capture_s,quantize_s,relative_output_error\n");
    for (int32_t k = 0; k < n; k++) {
        fprintf(af.fp, "%s,%d,%s,%lld,%lld,%lld,%.4f,%.4f,", run->g->weights[t[k].w].value->name, k,
                kind_names[t[k].kind], (long long)t[k].rows, (long long)t[k].cols, (long long)t[k].m, t[k].capture_s,
                t[k].quantize_s);
        if (isfinite(t[k].rel_err))
            fprintf(af.fp, "%.6f", t[k].rel_err);
        fputc('\n', af.fp);
    }
    return qh_atomic_commit(&af, err);
}

static qh_status open_session(qh_run *run, const qh_stage *s, const target *t, int32_t n, qhi_calib **cs, qh_error *err)
{
    const qh_quantize_config *cfg = s->host_cfg;
    bool any = false, with_x = false;
    for (int32_t k = 0; k < n; k++) {
        any |= t[k].kind == T_CALIB;
        with_x |= t[k].kind == T_CALIB && (t[k].needs & QH_CALIB_X);
    }
    *cs = NULL;
    if (!any)
        return QH_OK;
    float *images;
    qh_status st = load_images(run, s, &images, err);
    if (st != QH_OK)
        return st;
    qhi_calib_options o = {.batch = cfg->calibration_batch,
                           .seed = (uint64_t)cfg->calibration_seed,
                           .patch_stride = cfg->patch_stride,
                           .retain_rate = cfg->retain_rate};
    st = qhi_calib_new(run->g, images, cfg->calibration_images, &o, with_x, cs, err);
    free(images);
    return st;
}

qh_status qhi_quantize_calib(qh_run *run, const qh_stage *s, qh_quantizer *qz, const int32_t *idx, int32_t n,
                             double *mse, int32_t *done, qh_error *err)
{
    *done = 0;
    if (((const qh_quantize_config *)s->host_cfg)->fold_batchnorm)
        qh_log(QH_LOG_INFO, s->name, "folded %d batch norms into their convs",
               qhi_calib_fold_batchnorm(run->g, idx, n));
    target *t = plan_targets(run, s, qz, idx, n);
    if (!t)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    qhi_calib *cs = NULL;
    double t0 = qh_now_s();
    qh_status st = open_session(run, s, t, n, &cs, err);
    const qh_progress *pr = run->opt->progress;
    char label[160];
    snprintf(label, sizeof label, "quantize [%s]", s->name);
    for (int32_t k = 0; st == QH_OK && k < n; k++) {
        if (t[k].kind == T_SKIP) {
            qh_log(QH_LOG_INFO, s->name, "%s: skipped (not accepted by %s)", run->g->weights[t[k].w].value->name,
                   s->plugin->name);
        } else if ((st = quantize_one(run, s, qz, cs, &t[k], k, mse, err)) == QH_OK) {
            (*done)++;
        }
        if (pr && pr->update)
            pr->update(pr->user, label, k + 1, n, NULL);
    }
    char summary[160];
    snprintf(summary, sizeof summary, "%d of %d layers in %.2f s", *done, n, qh_now_s() - t0);
    if (pr && pr->finish)
        pr->finish(pr->user, label, summary);
    if (cs)
        qh_log(QH_LOG_INFO, s->name, "calibration: %lld images, %.2f s in all, activations peak %.1f MiB",
               (long long)((const qh_quantize_config *)s->host_cfg)->calibration_images, qh_now_s() - t0,
               (double)qhi_calib_peak_bytes(cs) / (1024.0 * 1024.0));
    qhi_calib_free(cs);
    if (st == QH_OK)
        st = write_csv(run, s, t, n, err);
    free(t);
    return st;
}
