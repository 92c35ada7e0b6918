/* qh_train.c - the training loop (epochs, per-epoch evaluation, plateau, early stopping,
 * checkpoints) and evaluation over a dataset plugin. */
#include "pipeline/qh_train_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/qh_timing.h"

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
    double loss_sum = 0.0, t0 = qh_now_s();
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
                 out->top1, out->top5, out->loss, (long long)out->n, qh_now_s() - t0);
        pr->finish(pr->user, label, summary);
    }
out:
    batch_free(&b);
    return st;
}

/* ---------------------------------------------------------------- training state */

static void state_free(qhi_train_state *s, const qh_graph *g)
{
    for (int32_t i = 0; i < g->n_weights; i++) {
        if (s->m)
            qh_free_aligned(s->m[i]);
        if (s->v)
            qh_free_aligned(s->v[i]);
        if (s->best)
            qh_tensor_free(s->best[i]);
    }
    free(s->m);
    free(s->v);
    free(s->best);
    free(s->logs);
}

static float *zeroed(size_t bytes)
{
    float *p = qh_alloc_aligned(bytes ? bytes : 1);
    if (p)
        memset(p, 0, bytes);
    return p;
}

static bool maximizes(int monitor) { return monitor == QH_MONITOR_TEST_TOP1; }

static double metric_of(const qh_eval_result *r, int monitor)
{
    return monitor == QH_MONITOR_TEST_TOP1 ? r->top1 : r->loss;
}

static qh_status state_alloc(qhi_train_state *s, const qh_graph *g, const qh_train_config *cfg, int64_t n_train,
                             qh_error *err)
{
    memset(s, 0, sizeof *s);
    s->lr = cfg->lr;
    s->best_epoch = -1;
    s->n_train = n_train;
    qh_plateau_init(&s->plateau, maximizes(cfg->plateau_metric));
    qh_plateau_init(&s->watch, maximizes(cfg->early_stop_metric));
    bool adam = cfg->optimizer != QH_OPT_SGD;
    s->m = calloc((size_t)g->n_weights + 1, sizeof *s->m);
    s->v = adam ? calloc((size_t)g->n_weights + 1, sizeof *s->v) : NULL;
    s->best = calloc((size_t)g->n_weights + 1, sizeof *s->best);
    s->logs = calloc((size_t)cfg->epochs + 1, sizeof *s->logs);
    if (!s->m || (adam && !s->v) || !s->best || !s->logs)
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the optimizer state");
    for (int32_t i = 0; i < g->n_weights; i++) {
        if (g->weights[i].is_buffer)
            continue;
        size_t bytes = qh_tensor_nbytes(g->weights[i].value);
        if (!(s->m[i] = zeroed(bytes)) || (adam && !(s->v[i] = zeroed(bytes))))
            return qh_error_set(err, QH_E_NOMEM, "out of memory for the optimizer state");
    }
    return QH_OK;
}

/* keep_best: the values of every weight and buffer (masks do not change while training). */
static qh_status snapshot_best(qhi_train_state *s, const qh_graph *g, qh_error *err)
{
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_tensor *v = g->weights[i].value;
        if (!s->best[i] && !(s->best[i] = qh_tensor_clone(v, err)))
            return QH_E_NOMEM;
        memcpy(s->best[i]->data, v->data, qh_tensor_nbytes(v));
    }
    return QH_OK;
}

static void restore_best(const qhi_train_state *s, qh_graph *g)
{
    for (int32_t i = 0; i < g->n_weights; i++)
        memcpy(g->weights[i].value->data, s->best[i]->data, qh_tensor_nbytes(s->best[i]));
}

/* ---------------------------------------------------------------- the loop */

typedef struct train_run {
    qh_graph *g;
    qh_dataset *ds;
    const qh_train_config *cfg;
    const qh_progress *pr;
    qhi_train_state *s;
    batch_buf b;
    int64_t n_train, batch, iters_per_epoch, total_iters, test_limit;
} train_run;

static double train_loss(const train_run *t, int64_t n, const float *logits)
{
    const qh_graph *g = t->g;
    if (t->cfg->label_smoothing > 0.0)
        return qh_k_softmax_xent_ls_f32(n, g->num_classes, logits, t->b.y, t->cfg->label_smoothing, t->b.dlogits);
    return qh_k_softmax_xent_f32(n, g->num_classes, logits, t->b.y, t->b.dlogits);
}

static qh_status train_batch(train_run *t, qh_rng *er, int64_t epoch, int64_t start, int64_t n, double *loss,
                             qh_error *err)
{
    qh_graph *g = t->g;
    qh_status st;
    if ((st = qh_dataset_load(t->ds, QH_SPLIT_TRAIN, t->b.idx + start, n, t->b.x, t->b.y, err)) != QH_OK ||
        (st = qh_dataset_augment(t->ds, er, t->b.x, n, err)) != QH_OK)
        return st;
    for (int64_t k = 0; k < n; k++)
        if (t->b.y[k] < 0 || t->b.y[k] >= g->num_classes)
            return qh_error_set(err, QH_E_FORMAT, "training sample %lld has label %d outside [0, %d)",
                                (long long)t->b.idx[start + k], t->b.y[k], g->num_classes);
    const float *logits = qh_graph_forward(g, t->b.x, n, true, er, err);
    if (!logits)
        return QH_E_NOMEM;
    *loss = train_loss(t, n, logits);
    if (!isfinite(*loss))
        return qh_error_set(err, QH_E_ABORTED, "training diverged at epoch %lld (loss %g): lower lr",
                            (long long)epoch + 1, *loss);
    return qh_graph_backward(g, t->b.dlogits, err);
}

/* One pass over the training set. Its shuffle, augmentation and dropout come from a generator
 * forked for this epoch alone, so epoch e computes the same whether or not e - 1 ran in this
 * process (resume). */
static qh_status train_epoch(train_run *t, const qh_rng *rng, int64_t epoch, qh_epoch_log *log, qh_error *err)
{
    const qh_train_config *cfg = t->cfg;
    qh_rng er = qh_rng_fork(rng, (uint64_t)epoch);
    double t0 = qh_now_s(), loss_sum = 0.0, lr = cfg->lr;
    int64_t warm = cfg->warmup_epochs * t->iters_per_epoch, it = epoch * t->iters_per_epoch;
    char label[64];
    snprintf(label, sizeof label, "train epoch %lld/%lld", (long long)epoch + 1, (long long)cfg->epochs);
    for (int64_t k = 0; k < t->n_train; k++)
        t->b.idx[k] = k;
    qh_rng_shuffle_i64(&er, t->b.idx, t->n_train);
    for (int64_t start = 0; start < t->n_train; start += t->batch, it++) {
        int64_t n = t->n_train - start < t->batch ? t->n_train - start : t->batch;
        double loss = 0.0;
        qh_status st = train_batch(t, &er, epoch, start, n, &loss, err);
        if (st != QH_OK)
            return st;
        loss_sum += loss * (double)n;
        lr = cfg->schedule == QH_LR_PLATEAU && it >= warm ? t->s->lr
                                                           : qh_lr_at(cfg, it, t->iters_per_epoch, t->total_iters);
        qhi_optimizer_step(t->g, t->s, cfg, lr);
        if (t->pr && t->pr->update) {
            char extra[64];
            snprintf(extra, sizeof extra, "loss %.4f lr %.4g", loss_sum / (double)(start + n), lr);
            t->pr->update(t->pr->user, label, start + n, t->n_train, extra);
        }
    }
    *log = (qh_epoch_log){.train_loss = loss_sum / (double)t->n_train, .lr_end = lr, .wall_s = qh_now_s() - t0};
    if (t->pr && t->pr->finish) {
        char summary[160];
        snprintf(summary, sizeof summary, "loss %.4f, lr %.4g, %.1f s (%.0f img/s)", log->train_loss, lr,
                 log->wall_s, (double)t->n_train / log->wall_s);
        t->pr->finish(t->pr->user, label, summary);
    }
    return QH_OK;
}

static bool needs_eval(const qh_train_config *cfg)
{
    return cfg->eval_each_epoch || cfg->schedule == QH_LR_PLATEAU || cfg->early_stop_patience > 0 ||
           cfg->keep_best;
}

/* After epoch `epoch`: evaluation, the plateau schedule (from the first epoch after warm-up, as
 * PyTorch would step it after the warm-up scheduler), early stopping and the keep_best snapshot. */
static qh_status after_epoch(train_run *t, int64_t epoch, qh_epoch_log *log, qh_error *err)
{
    const qh_train_config *cfg = t->cfg;
    qhi_train_state *s = t->s;
    if (!needs_eval(cfg))
        return QH_OK;
    /* at the training batch: the activation and gradient buffers are sized for it already (a larger
     * evaluation batch would reallocate every one of them in the middle of training) */
    qh_status st = qh_evaluate(t->g, t->ds, QH_SPLIT_TEST, t->test_limit, cfg->batch_size, t->pr, &log->test, err);
    if (st != QH_OK)
        return st;
    log->evaluated = true;
    if (cfg->schedule == QH_LR_PLATEAU && epoch >= cfg->warmup_epochs) {
        double before = s->lr;
        s->lr = qh_plateau_step(&s->plateau, metric_of(&log->test, cfg->plateau_metric),
                                maximizes(cfg->plateau_metric), cfg->plateau_threshold, cfg->plateau_patience,
                                cfg->plateau_factor, cfg->min_lr, s->lr);
        if (s->lr != before)
            qh_log(QH_LOG_INFO, "train", "epoch %lld: no improvement of %s: lr %.4g -> %.4g", (long long)epoch + 1,
                   cfg->plateau_metric == QH_MONITOR_TEST_TOP1 ? "test_top1" : "test_loss", before, s->lr);
    }
    if (cfg->early_stop_patience <= 0 && !cfg->keep_best)
        return QH_OK;
    double metric = metric_of(&log->test, cfg->early_stop_metric);
    if (qh_plateau_improves(&s->watch, metric, maximizes(cfg->early_stop_metric), 0.0)) {
        s->watch.best = metric;
        s->watch.bad_epochs = 0;
        s->best_epoch = epoch;
        if (cfg->keep_best && (st = snapshot_best(s, t->g, err)) != QH_OK)
            return st;
    } else if (cfg->early_stop_patience > 0 && ++s->watch.bad_epochs >= cfg->early_stop_patience) {
        s->stopped = true;
        qh_log(QH_LOG_INFO, "train", "early stop after epoch %lld: no improvement for %lld epochs",
               (long long)epoch + 1, (long long)s->watch.bad_epochs);
    }
    return QH_OK;
}

/* The caller's epoch hook (pruning schedules): it may change masks, which the optimizer then
 * honours from its next step on, and end the stage (*stop). */
static qh_status call_hook(train_run *t, qh_train_options *opt, int64_t epochs_done, bool *stop, qh_error *err)
{
    *stop = false;
    if (!opt || !opt->epoch_hook)
        return QH_OK;
    qh_status st = opt->epoch_hook(opt->hook_user, t->g, epochs_done, stop, err);
    if (st == QH_OK)
        qh_graph_apply_masks(t->g);
    return st;
}

static qh_status save_checkpoint(const train_run *t, const qh_train_options *opt, const qh_rng *rng, qh_error *err)
{
    char *hook_state = opt->hook_save ? opt->hook_save(opt->hook_user) : NULL;
    qh_status st = qhi_checkpoint_save(opt->checkpoint, opt->stage, t->g, t->s, t->cfg, rng, hook_state, err);
    free(hook_state);
    return st;
}

/* Continues from the checkpoint: the training state, then the epoch hook's own. */
static qh_status load_checkpoint(qh_graph *g, qhi_train_state *s, const qh_train_config *cfg, const qh_rng *rng,
                                 qh_train_options *opt, qh_error *err)
{
    char *hook_state = NULL;
    qh_status st = qhi_checkpoint_load(opt->checkpoint, g, s, cfg, rng, &hook_state, err);
    if (st == QH_OK && opt->hook_restore && (st = opt->hook_restore(opt->hook_user, hook_state, err)) != QH_OK)
        qh_error_prefix(err, "%s", opt->checkpoint);
    free(hook_state);
    if (st != QH_OK)
        return st;
    opt->resumed_at = s->epoch;
    qh_log(QH_LOG_INFO, "train", "resumed from %s after epoch %lld", opt->checkpoint, (long long)s->epoch);
    return QH_OK;
}

static qh_status train_loop(train_run *t, qh_rng *rng, qh_train_options *opt, qh_error *err)
{
    qhi_train_state *s = t->s;
    bool resumed = opt && opt->resumed_at > 0, stop = false;
    for (int64_t epoch = s->epoch; epoch < t->cfg->epochs && !s->stopped; epoch++) {
        qh_epoch_log log;
        qh_status st = call_hook(t, opt, epoch, &stop, err);
        if (st != QH_OK || stop)
            return st;
        st = train_epoch(t, rng, epoch, &log, err);
        if (st == QH_OK)
            st = after_epoch(t, epoch, &log, err);
        if (st != QH_OK)
            return st;
        s->logs[epoch] = log;
        s->epoch = epoch + 1;
        if (opt && opt->checkpoint && (st = save_checkpoint(t, opt, rng, err)) != QH_OK)
            return st;
        if (opt && opt->stop_after_epoch > 0 && s->epoch == opt->stop_after_epoch && !s->stopped &&
            s->epoch < t->cfg->epochs)
            return qh_error_set(err, QH_E_ABORTED, "stopped after epoch %lld (test hook%s)", (long long)s->epoch,
                                resumed ? ", resumed run" : "");
    }
    return call_hook(t, opt, s->epoch, &stop, err);
}

qh_status qh_train_ex(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                      qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_train_options *opt,
                      qh_error *err)
{
    qh_status st = check_shapes(g, ds, err);
    if (st != QH_OK)
        return st;
    train_run t = {.g = g, .ds = ds, .cfg = cfg, .pr = pr, .test_limit = test_limit};
    t.n_train = ds->info.n_train;
    if (limit > 0 && limit < t.n_train)
        t.n_train = limit;
    if (t.n_train < 1)
        return qh_error_set(err, QH_E_INVAL, "no training samples");
    t.batch = cfg->batch_size > 0 ? cfg->batch_size : 128;
    if (t.batch > t.n_train)
        t.batch = t.n_train;
    /* Incomplete last batches are kept (PyTorch's drop_last = False). */
    t.iters_per_epoch = (t.n_train + t.batch - 1) / t.batch;
    t.total_iters = t.iters_per_epoch * cfg->epochs;
    qhi_train_state s;
    t.s = &s;
    if (opt)
        opt->epochs_done = opt->resumed_at = opt->best_epoch = 0;
    if ((st = state_alloc(&s, g, cfg, t.n_train, err)) != QH_OK ||
        (st = batch_alloc(&t.b, g, t.batch, t.n_train, err)) != QH_OK) {
        state_free(&s, g);
        return st;
    }
    qh_graph_apply_masks(g);
    if (opt && opt->resume && opt->checkpoint && access(opt->checkpoint, F_OK) == 0 &&
        (st = load_checkpoint(g, &s, cfg, rng, opt, err)) != QH_OK)
        goto out;
    st = train_loop(&t, rng, opt, err);
    if (st == QH_OK && cfg->keep_best && s.best_epoch >= 0) {
        if (s.best_epoch != s.epoch - 1) {
            restore_best(&s, g);
            qh_log(QH_LOG_INFO, "train", "kept the weights of epoch %lld, the best one", (long long)s.best_epoch + 1);
        }
        if (opt)
            opt->best_epoch = s.best_epoch + 1;
    }
out:
    if (epochs_out)
        memcpy(epochs_out, s.logs, (size_t)s.epoch * sizeof *s.logs);
    if (opt)
        opt->epochs_done = s.epoch;
    batch_free(&t.b);
    state_free(&s, g);
    return st;
}

qh_status qh_train(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                   qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_error *err)
{
    return qh_train_ex(g, ds, cfg, limit, test_limit, rng, pr, epochs_out, NULL, err);
}
