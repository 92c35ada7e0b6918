/* qh_prune_run.c - prune stages inside a run (see qh_prune_run.h). */
#include "pipeline/qh_prune_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/qh_prune_schedule.h"

/* ---------------------------------------------------------------- the targeted weights */

/* The weights one prune stage targets, with a private copy of each mask for the pruner to shrink. */
typedef struct prune_set {
    int32_t n;
    int32_t *idx;
    qh_prune_target *t;
} prune_set;

static void set_close(prune_set *ps)
{
    for (int32_t k = 0; ps->t && k < ps->n; k++)
        free(ps->t[k].mask);
    free(ps->t);
    free(ps->idx);
    memset(ps, 0, sizeof *ps);
}

static qh_status set_open(qh_run *run, const qh_stage *s, prune_set *ps, qh_error *err)
{
    const qh_prune_config *cfg = s->host_cfg;
    memset(ps, 0, sizeof *ps);
    ps->idx = malloc(sizeof(int32_t) * (size_t)(run->g->n_weights + 1));
    ps->t = calloc((size_t)run->g->n_weights + 1, sizeof *ps->t);
    if (!ps->idx || !ps->t) {
        set_close(ps);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    ps->n = qhi_select_targets(run, cfg->targets, cfg->exclude, ps->idx);
    for (int32_t k = 0; k < ps->n; k++) {
        qh_weight *w = &run->g->weights[ps->idx[k]];
        int64_t numel = qh_tensor_numel(w->value);
        ps->t[k] = (qh_prune_target){w->value->name, w->value, malloc((size_t)numel + 1)};
        if (!ps->t[k].mask) {
            set_close(ps);
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        }
        for (int64_t e = 0; e < numel; e++)
            ps->t[k].mask[e] = w->mask ? w->mask[e] : 1;
    }
    return QH_OK;
}

/* Fraction of the targeted weights their masks prune, as seed 000 measures it. */
static double measured_sparsity(const qh_run *run, const qh_stage *s)
{
    const qh_prune_config *cfg = s->host_cfg;
    int64_t zeros = 0, total = 0;
    for (int32_t i = 0; i < run->g->n_weights; i++) {
        const qh_weight *w = &run->g->weights[i];
        const char *name = w->value->name;
        if (w->is_buffer || w->value->ndim < 2 || !qh_name_match_list(cfg->targets, name) ||
            qh_name_match_list(cfg->exclude, name))
            continue;
        int64_t numel = qh_tensor_numel(w->value);
        total += numel;
        for (int64_t e = 0; w->mask && e < numel; e++)
            zeros += !w->mask[e];
    }
    return total ? (double)zeros / (double)total : 0.0;
}

static qh_status call_pruner(const qh_stage *s, prune_set *ps, double sparsity, qh_error *err)
{
    qh_pruner pr = {0};
    qh_status st = qh_pruner_create(&pr, s->plugin, s->plugin_cfg, err);
    if (st != QH_OK)
        return st;
    st = qh_pruner_prune(&pr, ps->t, ps->n, sparsity, err);
    qh_pruner_destroy(&pr);
    return st;
}

/* Moves the pruner's masks into the model; a pruner may only ever remove weights. */
static qh_status set_apply(qh_run *run, const qh_stage *s, prune_set *ps, qh_error *err)
{
    for (int32_t k = 0; k < ps->n; k++) {
        const qh_weight *w = &run->g->weights[ps->idx[k]];
        int64_t numel = qh_tensor_numel(w->value);
        for (int64_t e = 0; w->mask && e < numel; e++)
            if (!w->mask[e] && ps->t[k].mask[e])
                return qh_error_set(err, QH_E_INTERNAL, "pruner %s revived pruned weight %lld of %s", s->plugin->name,
                                    (long long)e, ps->t[k].name);
    }
    for (int32_t k = 0; k < ps->n; k++) {
        if (run->qt[ps->idx[k]].bits > 0) {
            qh_qtensor_clear(&run->qt[ps->idx[k]]);
            qh_log(QH_LOG_WARN, s->name, "%s was quantized; pruning returns it to float", ps->t[k].name);
        }
        qh_status st = qh_weight_set_mask(&run->g->weights[ps->idx[k]], ps->t[k].mask, err);
        if (st != QH_OK)
            return st;
    }
    return QH_OK;
}

/* One pruning step of stage s at `sparsity` (the pruner keeps what is already pruned). */
static qh_status prune_to(qh_run *run, const qh_stage *s, double sparsity, qh_error *err)
{
    prune_set ps;
    qh_status st = set_open(run, s, &ps, err);
    if (st == QH_OK && (st = call_pruner(s, &ps, sparsity, err)) == QH_OK)
        st = set_apply(run, s, &ps, err);
    set_close(&ps);
    return st;
}

/* ---------------------------------------------------------------- checks and the one-shot stage */

qh_status qhi_prune_check(qh_run *run, qh_error *err)
{
    for (int i = 0; i < run->pc->n_stages; i++) {
        const qh_stage *s = &run->pc->stages[i];
        if (s->type != QH_STAGE_PRUNE)
            continue;
        prune_set ps;
        qh_status st = set_open(run, s, &ps, err);
        if (st == QH_OK)
            st = call_pruner(s, &ps, ((const qh_prune_config *)s->host_cfg)->sparsity, err);
        set_close(&ps);
        if (st == QH_E_NOMEM)
            return st;
        if (st != QH_OK) {
            qh_error_prefix(err, "%s:%d: error: [%s]", run->pc->path, s->line, s->name);
            return QH_E_CONFIG;
        }
    }
    return QH_OK;
}

qh_status qhi_prune_stage(qh_run *run, const qh_stage *s, qh_error *err)
{
    const qh_prune_config *cfg = s->host_cfg;
    if (cfg->schedule != QH_PRUNE_ONESHOT) {
        qh_log(QH_LOG_INFO, s->name, "prunes during [%s] (sparsity now %.2f %%)", cfg->during,
               100.0 * measured_sparsity(run, s));
        return QH_OK;
    }
    qh_status st = prune_to(run, s, cfg->sparsity, err);
    if (st == QH_OK)
        qh_log(QH_LOG_INFO, s->name, "pruned with %s: %.2f %% of the targeted weights are zero", s->plugin->name,
               100.0 * measured_sparsity(run, s));
    return st;
}

/* ---------------------------------------------------------------- schedules during a train stage */

struct qhi_prune_hook {
    qh_run *run;
    const qh_stage *s;      /* the prune stage */
    const qh_prune_config *cfg;
    int64_t epochs;         /* of the train stage */
    double s0;              /* measured sparsity when the train stage starts */
    double ref_top1;        /* iterative: test top-1 when the train stage starts */
    int64_t rounds;         /* iterative: rounds pruned so far */
    bool done;
    qh_tensor **best;       /* iterative: every weight before the current round */
    uint8_t **best_mask;    /*   and its mask (NULL: none) */
};

static qh_status eval_top1(qh_run *run, double *top1, qh_error *err)
{
    qh_eval_result r;
    qh_status st = qh_evaluate(run->g, &run->ds, QH_SPLIT_TEST, run->pc->dataset_limits->test_limit, 256,
                               run->opt->progress, &r, err);
    *top1 = r.top1;
    return st;
}

qh_status qhi_prune_hook_begin(qh_run *run, const qh_stage *train, qhi_prune_hook **out, qh_error *err)
{
    *out = NULL;
    const qh_stage *s = NULL;
    for (int i = 0; i < run->pc->n_stages && !s; i++) {
        const qh_stage *p = &run->pc->stages[i];
        const qh_prune_config *c = p->host_cfg;
        if (p->type == QH_STAGE_PRUNE && c->schedule != QH_PRUNE_ONESHOT && strcmp(c->during, train->name) == 0)
            s = p;
    }
    if (!s)
        return QH_OK;
    qhi_prune_hook *h = calloc(1, sizeof *h);
    if (!h)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    *h = (qhi_prune_hook){.run = run, .s = s, .cfg = s->host_cfg,
                          .epochs = ((const qh_train_config *)train->host_cfg)->epochs};
    h->s0 = measured_sparsity(run, s);
    *out = h;
    if (h->cfg->schedule != QH_PRUNE_ITERATIVE)
        return QH_OK;
    h->best = calloc((size_t)run->g->n_weights + 1, sizeof *h->best);
    h->best_mask = calloc((size_t)run->g->n_weights + 1, sizeof *h->best_mask);
    if (!h->best || !h->best_mask)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    qh_status st = eval_top1(run, &h->ref_top1, err);
    if (st == QH_OK)
        qh_log(QH_LOG_INFO, s->name, "iterative: top-1 %.2f %% at the start of [%s]; rounds stop below %.2f %%",
               h->ref_top1, train->name, h->ref_top1 - h->cfg->tolerance);
    return st;
}

bool qhi_prune_hook_blocks_checkpoint(const qhi_prune_hook *h)
{
    return h && h->cfg->schedule == QH_PRUNE_ITERATIVE;
}

void qhi_prune_hook_end(qhi_prune_hook *h)
{
    if (!h)
        return;
    for (int32_t i = 0; h->best && i < h->run->g->n_weights; i++) {
        qh_tensor_free(h->best[i]);
        free(h->best_mask[i]);
    }
    free(h->best);
    free(h->best_mask);
    free(h);
}

static qh_status save_best(qhi_prune_hook *h, qh_error *err)
{
    qh_graph *g = h->run->g;
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_weight *w = &g->weights[i];
        size_t numel = (size_t)qh_tensor_numel(w->value);
        if (!h->best[i] && !(h->best[i] = qh_tensor_clone(w->value, err)))
            return QH_E_NOMEM;
        memcpy(h->best[i]->data, w->value->data, qh_tensor_nbytes(w->value));
        free(h->best_mask[i]);
        h->best_mask[i] = NULL;
        if (w->mask && !(h->best_mask[i] = malloc(numel)))
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        if (w->mask)
            memcpy(h->best_mask[i], w->mask, numel);
    }
    return QH_OK;
}

/* Back to the model before the last round: values, and masks (the one place a mask grows back,
 * because the whole round is undone). */
static void restore_best(qhi_prune_hook *h)
{
    qh_graph *g = h->run->g;
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        memcpy(w->value->data, h->best[i]->data, qh_tensor_nbytes(w->value));
        if (h->best_mask[i] && w->mask)
            memcpy(w->mask, h->best_mask[i], (size_t)qh_tensor_numel(w->value));
        else if (!h->best_mask[i]) {
            free(w->mask);
            w->mask = NULL;
        }
    }
}

static qh_status event(qhi_prune_hook *h, int64_t t, double target, const char *what, qh_error *err)
{
    qh_status st = prune_to(h->run, h->s, target, err);
    if (st == QH_OK)
        qh_log(QH_LOG_INFO, h->s->name, "after %lld epochs of [%s]: %s to %.2f %%, measured %.2f %%", (long long)t,
               h->cfg->during, what, 100.0 * target, 100.0 * measured_sparsity(h->run, h->s));
    return st;
}

static qh_status geometric(qhi_prune_hook *h, int64_t t, qh_error *err)
{
    const qh_prune_config *c = h->cfg;
    if (t >= h->epochs || !qh_prune_is_event(c->start_epoch, c->every_epochs, -1, t))
        return QH_OK;
    if (qh_prune_reached(measured_sparsity(h->run, h->s), c->sparsity))
        return QH_OK; /* seed 000 stops pruning once the measured sparsity reaches the target */
    int64_t k = (t - c->start_epoch) / c->every_epochs + 1;
    char what[64];
    snprintf(what, sizeof what, "geometric event %lld", (long long)k);
    return event(h, t, qh_prune_geometric_at(h->s0, c->rate, k), what, err);
}

static qh_status agp(qhi_prune_hook *h, int64_t t, qh_error *err)
{
    const qh_prune_config *c = h->cfg;
    if (t >= h->epochs || !qh_prune_is_event(c->start_epoch, c->every_epochs, c->steps, t))
        return QH_OK;
    char what[64];
    snprintf(what, sizeof what, "agp event %lld of %lld", (long long)((t - c->start_epoch) / c->every_epochs),
             (long long)c->steps);
    double s_t = qh_prune_agp_at(c->initial_sparsity, c->sparsity, c->start_epoch, c->every_epochs, c->steps, t);
    return event(h, t, s_t, what, err);
}

/* Seed 003: at each round's end, test top-1 decides between going on, stopping at the target, and
 * undoing the round that lost too much. */
static qh_status iterative(qhi_prune_hook *h, int64_t t, bool *stop, qh_error *err)
{
    const qh_prune_config *c = h->cfg;
    bool at_event = qh_prune_is_event(c->start_epoch, c->every_epochs, -1, t);
    qh_status st;
    if (!at_event && t < h->epochs)
        return QH_OK;
    if (h->rounds > 0) {
        double top1, sp = measured_sparsity(h->run, h->s);
        if ((st = eval_top1(h->run, &top1, err)) != QH_OK)
            return st;
        if (top1 < h->ref_top1 - c->tolerance) {
            restore_best(h);
            qh_log(QH_LOG_INFO, h->s->name, "round %lld: top-1 %.2f %% at sparsity %.2f %% is more than %g points "
                   "below %.2f %%: kept the model of round %lld (sparsity %.2f %%)", (long long)h->rounds, top1,
                   100.0 * sp, c->tolerance, h->ref_top1, (long long)h->rounds - 1,
                   100.0 * measured_sparsity(h->run, h->s));
            h->done = *stop = true;
            return QH_OK;
        }
        qh_log(QH_LOG_INFO, h->s->name, "round %lld: top-1 %.2f %% at sparsity %.2f %%", (long long)h->rounds, top1,
               100.0 * sp);
        if (qh_prune_reached(sp, c->sparsity)) {
            h->done = *stop = true;
            return QH_OK;
        }
    }
    if (!at_event || t >= h->epochs)
        return QH_OK;
    if ((st = save_best(h, err)) != QH_OK)
        return st;
    h->rounds++;
    char what[64];
    snprintf(what, sizeof what, "iterative round %lld", (long long)h->rounds);
    return event(h, t, qh_prune_geometric_at(h->s0, c->rate, h->rounds), what, err);
}

qh_status qhi_prune_hook_call(void *user, qh_graph *g, int64_t epochs_done, bool *stop, qh_error *err)
{
    qhi_prune_hook *h = user;
    (void)g; /* the run's graph */
    *stop = false;
    if (h->done)
        return QH_OK;
    qh_status st = QH_OK;
    switch ((qh_prune_schedule)h->cfg->schedule) {
    case QH_PRUNE_GEOMETRIC: st = geometric(h, epochs_done, err); break;
    case QH_PRUNE_AGP: st = agp(h, epochs_done, err); break;
    case QH_PRUNE_ITERATIVE: st = iterative(h, epochs_done, stop, err); break;
    case QH_PRUNE_ONESHOT: break;
    }
    if (st != QH_OK)
        qh_error_prefix(err, "pruning schedule of [%s]", h->s->name);
    return st;
}
