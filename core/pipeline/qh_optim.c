/* qh_optim.c - learning-rate schedules (with warm-up and reduce-on-plateau) and the optimizers
 * (SGD, Adam, AdamW), each following PyTorch's definition so results carry over. */
#include "pipeline/qh_train_impl.h"

#include <math.h>

/* Warm-up is PyTorch's LinearLR(start_factor = 1/k, end_factor = 1, total_iters = k) stepped per
 * iteration, k = warmup_epochs * iters_per_epoch: factor 1/k + (1 - 1/k) * it / k. The main
 * schedule then starts at its own iteration 0 and spans the remaining iterations
 * (SequentialLR with the milestone k). */
double qh_lr_at(const qh_train_config *cfg, int64_t it, int64_t iters_per_epoch, int64_t total)
{
    int64_t warm = cfg->warmup_epochs > 0 ? cfg->warmup_epochs * iters_per_epoch : 0;
    if (it < warm) {
        double start = 1.0 / (double)warm;
        return cfg->lr * (start + (1.0 - start) * (double)it / (double)warm);
    }
    it -= warm;
    total -= warm;
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
    case QH_LR_PLATEAU: /* its drops depend on the metric: the trainer tracks them */
    case QH_LR_CONSTANT:
        break;
    }
    return cfg->lr;
}

void qh_plateau_init(qh_plateau *p, bool maximize)
{
    p->best = maximize ? -INFINITY : INFINITY;
    p->bad_epochs = 0;
}

bool qh_plateau_improves(const qh_plateau *p, double metric, bool maximize, double threshold)
{
    return maximize ? metric > p->best * (1.0 + threshold) : metric < p->best * (1.0 - threshold);
}

double qh_plateau_step(qh_plateau *p, double metric, bool maximize, double threshold, int64_t patience,
                       double factor, double min_lr, double lr)
{
    if (qh_plateau_improves(p, metric, maximize, threshold)) {
        p->best = metric;
        p->bad_epochs = 0;
    } else {
        p->bad_epochs++;
    }
    if (p->bad_epochs > patience) {
        double next = fmax(lr * factor, min_lr);
        if (lr - next > 1e-8) /* PyTorch's eps: smaller changes are ignored */
            lr = next;
        p->bad_epochs = 0;
    }
    return lr;
}

/* torch.optim.SGD (dampening 0): d = grad + wd * w; buf = d on the first step, else
 * momentum * buf + d; nesterov: d += momentum * buf, else d = buf; w -= lr * d. */
static void sgd_weight(qh_weight *w, float *buf, bool first, const qh_train_config *cfg, double lr)
{
    const float mom = (float)cfg->momentum, wd = (float)cfg->weight_decay, flr = (float)lr;
    float *v = qh_tensor_f32(w->value), *gr = qh_tensor_f32(w->grad);
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

/* torch.optim.Adam / AdamW (amsgrad off), step t >= 1:
 *   adam:  d = grad + wd * w          adamw: w *= 1 - lr * wd, d = grad
 *   m = beta1 m + (1 - beta1) d;  v = beta2 v + (1 - beta2) d^2
 *   w -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps) */
static void adam_weight(qh_weight *w, float *m, float *v2, int64_t t, const qh_train_config *cfg, double lr)
{
    const bool decoupled = cfg->optimizer == QH_OPT_ADAMW;
    const float b1 = (float)cfg->beta1, b2 = (float)cfg->beta2, c1 = (float)(1.0 - cfg->beta1),
                c2 = (float)(1.0 - cfg->beta2), eps = (float)cfg->eps;
    const float wd = decoupled ? 0.0f : (float)cfg->weight_decay;
    const float decay = decoupled ? (float)(1.0 - lr * cfg->weight_decay) : 1.0f;
    const float step_size = (float)(lr / (1.0 - pow(cfg->beta1, (double)t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(cfg->beta2, (double)t));
    float *v = qh_tensor_f32(w->value), *gr = qh_tensor_f32(w->grad);
    const uint8_t *mask = w->mask;
    int64_t n = qh_tensor_numel(w->value);
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t k = 0; k < n; k++) {
        if (mask && !mask[k]) {
            m[k] = v2[k] = v[k] = 0.0f;
            continue;
        }
        if (decoupled)
            v[k] *= decay;
        float d = gr[k] + wd * v[k];
        m[k] = m[k] * b1 + d * c1;
        v2[k] = v2[k] * b2 + c2 * d * d;
        float denom = sqrtf(v2[k]) / bc2_sqrt + eps;
        v[k] -= step_size * (m[k] / denom);
    }
}

void qhi_optimizer_step(qh_graph *g, qhi_train_state *s, const qh_train_config *cfg, double lr)
{
    s->step++;
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        if (w->is_buffer || w->frozen || !w->grad)
            continue;
        if (cfg->optimizer == QH_OPT_SGD)
            sgd_weight(w, s->m[i], s->step == 1, cfg, lr);
        else
            adam_weight(w, s->m[i], s->v[i], s->step, cfg, lr);
    }
}
