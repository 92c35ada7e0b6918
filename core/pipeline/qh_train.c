/* qh_train.c - mini-batch SGD training and evaluation over a dataset plugin. */
#include "graph/qh_graph_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double qh_lr_at(const qh_train_config *cfg, int64_t it, int64_t iters_per_epoch, int64_t total)
{
    switch ((qh_lr_schedule)cfg->schedule) {
    case QH_LR_STEP: {
        int64_t epoch = iters_per_epoch > 0 ? it / iters_per_epoch : 0;
        return cfg->lr * pow(cfg->gamma, (double)(epoch / (cfg->step_size > 0 ? cfg->step_size : 1)));
    }
    case QH_LR_COSINE: {
        /* Annealed per iteration (Loshchilov & Hutter 2017 without restarts). */
        double t = total > 0 ? (double)it / (double)total : 0.0;
        return cfg->min_lr + (cfg->lr - cfg->min_lr) * 0.5 * (1.0 + cos(M_PI * t));
    }
    case QH_LR_CONSTANT:
        break;
    }
    return cfg->lr;
}

/* Top-1 and top-5 hits of one row (ties count against the true class: strict '>' ranks above). */
static void rank_hits(const float *row, int64_t classes, int32_t label, int64_t *top1, int64_t *top5)
{
    float target = row[label];
    int64_t above = 0;
    for (int64_t c = 0; c < classes; c++)
        if (row[c] > target || (row[c] == target && c < label))
            above++;
    *top1 += above < 1;
    *top5 += above < 5;
}

typedef struct batch_buf {
    float *x;
    int32_t *y;
    float *dlogits;
    int64_t *idx;
} batch_buf;

static void batch_free(batch_buf *b)
{
    qh_free_aligned(b->x);
    free(b->y);
    qh_free_aligned(b->dlogits);
    free(b->idx);
}

static qh_status batch_alloc(batch_buf *b, const qh_graph *g, int64_t batch, int64_t n_idx, qh_error *err)
{
    int64_t sample = (int64_t)g->in_c * g->in_h * g->in_w;
    memset(b, 0, sizeof *b);
    b->x = qh_alloc_aligned((size_t)(batch * sample) * sizeof(float));
    b->y = malloc((size_t)batch * sizeof(int32_t));
    b->dlogits = qh_alloc_aligned((size_t)(batch * g->num_classes) * sizeof(float));
    b->idx = malloc((size_t)(n_idx > 0 ? n_idx : 1) * sizeof(int64_t));
    if (!b->x || !b->y || !b->dlogits || !b->idx) {
        batch_free(b);
        return qh_error_set(err, QH_E_NOMEM, "out of memory for a batch of %lld", (long long)batch);
    }
    return QH_OK;
}

static qh_status check_shapes(const qh_graph *g, const qh_dataset *ds, qh_error *err)
{
    const qh_dataset_info *in = &ds->info;
    if (in->channels != g->in_c || in->height != g->in_h || in->width != g->in_w)
        return qh_error_set(err, QH_E_INVAL, "dataset samples are %dx%dx%d, the model takes %dx%dx%d", in->channels,
                            in->height, in->width, g->in_c, g->in_h, g->in_w);
    if (in->num_classes != g->num_classes)
        return qh_error_set(err, QH_E_INVAL, "dataset has %d classes, the model outputs %d", in->num_classes,
                            g->num_classes);
    return QH_OK;
}

qh_status qh_evaluate(qh_graph *g, qh_dataset *ds, qh_split split, int64_t limit, int64_t batch,
                      const qh_progress *pr, qh_eval_result *out, qh_error *err)
{
    qh_status st = check_shapes(g, ds, err);
    if (st != QH_OK)
        return st;
    int64_t total = split == QH_SPLIT_TRAIN ? ds->info.n_train : ds->info.n_test;
    if (limit > 0 && limit < total)
        total = limit;
    if (batch < 1)
        batch = 256;
    batch_buf b;
    if ((st = batch_alloc(&b, g, batch, batch, err)) != QH_OK)
        return st;
    double loss_sum = 0.0, t0 = now_s();
    int64_t top1 = 0, top5 = 0;
    const char *label = split == QH_SPLIT_TRAIN ? "evaluate (train split)" : "evaluate";
    for (int64_t start = 0; start < total; start += batch) {
        int64_t n = total - start < batch ? total - start : batch;
        for (int64_t k = 0; k < n; k++)
            b.idx[k] = start + k;
        if ((st = qh_dataset_load(ds, split, b.idx, n, b.x, b.y, err)) != QH_OK)
            goto out;
        const float *logits = qh_graph_forward(g, b.x, n, false, NULL, err);
        if (!logits) {
            st = QH_E_NOMEM;
            goto out;
        }
        for (int64_t k = 0; k < n; k++)
            if (b.y[k] < 0 || b.y[k] >= g->num_classes) {
                st = qh_error_set(err, QH_E_FORMAT, "sample %lld has label %d outside [0, %d)",
                                  (long long)(start + k), b.y[k], g->num_classes);
                goto out;
            }
        loss_sum += qh_k_softmax_xent_f32(n, g->num_classes, logits, b.y, NULL) * (double)n;
        for (int64_t k = 0; k < n; k++)
            rank_hits(logits + k * g->num_classes, g->num_classes, b.y[k], &top1, &top5);
        if (pr && pr->update)
            pr->update(pr->user, label, start + n, total, NULL);
    }
    out->n = total;
    out->loss = total ? loss_sum / (double)total : 0.0;
    out->top1 = total ? 100.0 * (double)top1 / (double)total : 0.0;
    out->top5 = total ? 100.0 * (double)top5 / (double)total : 0.0;
    if (pr && pr->finish) {
        char summary[128];
        snprintf(summary, sizeof summary, "top-1 %.2f %%, top-5 %.2f %%, loss %.4f over %lld samples, %.1f s",
                 out->top1, out->top5, out->loss, (long long)out->n, now_s() - t0);
        pr->finish(pr->user, label, summary);
    }
out:
    batch_free(&b);
    return st;
}

/* One SGD step with PyTorch's semantics (torch.optim.SGD, dampening 0): g = grad + wd * w;
 * buf = g on the first step, else momentum * buf + g; nesterov: g += momentum * buf, else g = buf;
 * w -= lr * g. Masked entries keep gradient, momentum and value at exactly zero. */
static void sgd_step(qh_graph *g, float **bufs, bool first, const qh_train_config *cfg, double lr)
{
    const float mom = (float)cfg->momentum, wd = (float)cfg->weight_decay, flr = (float)lr;
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        float *v = qh_tensor_f32(w->value), *gr = qh_tensor_f32(w->grad), *buf = bufs[i];
        const uint8_t *mask = w->mask;
        int64_t n = qh_tensor_numel(w->value);
#pragma omp parallel for schedule(static) if (n > 16384)
        for (int64_t k = 0; k < n; k++) {
            if (mask && !mask[k]) {
                buf[k] = 0.0f;
                v[k] = 0.0f;
                continue;
            }
            float d = gr[k] + wd * v[k];
            if (mom != 0.0f) {
                buf[k] = first ? d : mom * buf[k] + d;
                d = cfg->nesterov ? d + mom * buf[k] : buf[k];
            }
            v[k] -= flr * d;
        }
    }
}

qh_status qh_train(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                   qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_error *err)
{
    qh_status st = check_shapes(g, ds, err);
    if (st != QH_OK)
        return st;
    int64_t n_train = ds->info.n_train;
    if (limit > 0 && limit < n_train)
        n_train = limit;
    if (n_train < 1)
        return qh_error_set(err, QH_E_INVAL, "no training samples");
    int64_t batch = cfg->batch_size > 0 ? cfg->batch_size : 128;
    if (batch > n_train)
        batch = n_train;
    batch_buf b;
    if ((st = batch_alloc(&b, g, batch, n_train, err)) != QH_OK)
        return st;
    float **bufs = calloc((size_t)g->n_weights + 1, sizeof *bufs);
    if (!bufs) {
        batch_free(&b);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    for (int32_t i = 0; i < g->n_weights; i++) {
        bufs[i] = qh_alloc_aligned(qh_tensor_nbytes(g->weights[i].value));
        if (!bufs[i]) {
            st = qh_error_set(err, QH_E_NOMEM, "out of memory for momentum buffers");
            goto out;
        }
        memset(bufs[i], 0, qh_tensor_nbytes(g->weights[i].value));
    }
    qh_graph_apply_masks(g);
    /* Incomplete last batches are kept (PyTorch's drop_last = False). */
    int64_t iters_per_epoch = (n_train + batch - 1) / batch;
    int64_t total_iters = iters_per_epoch * cfg->epochs, it = 0;
    for (int64_t k = 0; k < n_train; k++)
        b.idx[k] = k;
    for (int64_t epoch = 0; epoch < cfg->epochs; epoch++) {
        double t0 = now_s(), loss_sum = 0.0, lr = cfg->lr;
        char label[64];
        snprintf(label, sizeof label, "train epoch %lld/%lld", (long long)epoch + 1, (long long)cfg->epochs);
        qh_rng_shuffle_i64(rng, b.idx, n_train);
        for (int64_t start = 0; start < n_train; start += batch, it++) {
            int64_t n = n_train - start < batch ? n_train - start : batch;
            if ((st = qh_dataset_load(ds, QH_SPLIT_TRAIN, b.idx + start, n, b.x, b.y, err)) != QH_OK ||
                (st = qh_dataset_augment(ds, rng, b.x, n, err)) != QH_OK)
                goto out;
            for (int64_t k = 0; k < n; k++)
                if (b.y[k] < 0 || b.y[k] >= g->num_classes) {
                    st = qh_error_set(err, QH_E_FORMAT, "training sample %lld has label %d outside [0, %d)",
                                      (long long)b.idx[start + k], b.y[k], g->num_classes);
                    goto out;
                }
            const float *logits = qh_graph_forward(g, b.x, n, true, rng, err);
            if (!logits) {
                st = QH_E_NOMEM;
                goto out;
            }
            double loss = qh_k_softmax_xent_f32(n, g->num_classes, logits, b.y, b.dlogits);
            if (!isfinite(loss)) {
                st = qh_error_set(err, QH_E_ABORTED, "training diverged at epoch %lld (loss %g): lower lr",
                                  (long long)epoch + 1, loss);
                goto out;
            }
            loss_sum += loss * (double)n;
            if ((st = qh_graph_backward(g, b.dlogits, err)) != QH_OK)
                goto out;
            lr = qh_lr_at(cfg, it, iters_per_epoch, total_iters);
            sgd_step(g, bufs, it == 0, cfg, lr);
            if (pr && pr->update) {
                char extra[64];
                snprintf(extra, sizeof extra, "loss %.4f lr %.4g", loss_sum / (double)(start + n), lr);
                pr->update(pr->user, label, start + n, n_train, extra);
            }
        }
        qh_epoch_log log = {.train_loss = loss_sum / (double)n_train, .lr_end = lr, .wall_s = now_s() - t0};
        char summary[160];
        snprintf(summary, sizeof summary, "loss %.4f, lr %.4g, %.1f s (%.0f img/s)", log.train_loss, lr, log.wall_s,
                 (double)n_train / log.wall_s);
        if (pr && pr->finish)
            pr->finish(pr->user, label, summary);
        if (cfg->eval_each_epoch) {
            if ((st = qh_evaluate(g, ds, QH_SPLIT_TEST, test_limit, 256, pr, &log.test, err)) != QH_OK)
                goto out;
            log.evaluated = true;
        }
        if (epochs_out)
            epochs_out[epoch] = log;
    }
out:
    for (int32_t i = 0; i < g->n_weights; i++)
        qh_free_aligned(bufs[i]);
    free(bufs);
    batch_free(&b);
    return st;
}
