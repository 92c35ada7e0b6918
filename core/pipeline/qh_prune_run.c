/* qh_prune_run.c - prune stages inside a run (see qh_prune_run.h). */
#include "pipeline/qh_prune_run.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "graph/qh_surgery.h"
#include "pipeline/qh_prune_schedule.h"
#include "base/qh_timing.h"

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

static qh_status set_open_g(qh_graph *g, const char *targets, const char *exclude, prune_set *ps, qh_error *err)
{
    memset(ps, 0, sizeof *ps);
    ps->idx = malloc(sizeof(int32_t) * (size_t)(g->n_weights + 1));
    ps->t = calloc((size_t)g->n_weights + 1, sizeof *ps->t);
    if (!ps->idx || !ps->t) {
        set_close(ps);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    qh_run view = {.g = g}; /* target selection reads only the graph */
    ps->n = qhi_select_targets(&view, targets, exclude, ps->idx);
    for (int32_t k = 0; k < ps->n; k++) {
        qh_weight *w = &g->weights[ps->idx[k]];
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

static qh_status set_open(qh_run *run, const qh_stage *s, prune_set *ps, qh_error *err)
{
    const qh_prune_config *cfg = s->host_cfg;
    return set_open_g(run->g, cfg->targets, cfg->exclude, ps, err);
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
        qh_status st = qh_weight_set_mask(&run->g->weights[ps->idx[k]], ps->t[k].mask, err);
        if (st != QH_OK)
            return st;
    }
    return QH_OK;
}

/* Pruning returns the targeted weights to float: their codes no longer match. */
static void drop_target_quantization(qh_run *run, const qh_stage *s, const prune_set *ps)
{
    for (int32_t k = 0; k < ps->n; k++)
        if (run->qt[ps->idx[k]].bits > 0) {
            qh_qtensor_clear(&run->qt[ps->idx[k]]);
            qh_log(QH_LOG_WARN, s->name, "%s was quantized; pruning returns it to float", ps->t[k].name);
        }
}

/* ---------------------------------------------------------------- structured criteria */

static bool is_structured(const qh_plugin *p) { return p->ops.pruner.prune_groups != NULL; }

qh_status qhi_pruner_prune_groups(qh_pruner *pr, const qh_prune_target *targets, int32_t n, qh_channel_group *groups,
                                  int32_t n_groups, double sparsity, qh_error *err)
{
    const qh_plugin *p = pr->plugin;
    if (!p || !p->ops.pruner.prune_groups)
        return qh_error_set(err, QH_E_INVAL, "pruner %s has no structured method (prune_groups)", p ? p->name : "?");
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return qh_error_set(err, QH_E_INVAL, "pruner %s: sparsity %g is not in [0, 1)", p->name, sparsity);
    uint8_t *before = malloc((size_t)n_groups + 1);
    if (!before)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t k = 0; k < n_groups; k++)
        before[k] = groups[k].keep;
    qh_status st = p->ops.pruner.prune_groups(pr->state, targets, n, groups, n_groups, sparsity, err);
    for (int32_t k = 0; st == QH_OK && k < n_groups; k++) {
        if (groups[k].keep > 1)
            groups[k].keep = 1;
        if (groups[k].keep && !before[k])
            st = qh_error_set(err, QH_E_INTERNAL, "pruner %s revived pruned channel group %d (masks may only shrink)",
                              p->name, k);
    }
    free(before);
    if (st != QH_OK)
        qh_error_prefix(err, "pruner %s", p->name);
    return st;
}

/* The groups and what the pruner made of them, for one call. */
typedef struct structured_call {
    prune_set ps;
    qhi_chmap map;
    qhi_groups groups;
} structured_call;

static void structured_close(structured_call *c)
{
    qhi_groups_free(&c->groups);
    qhi_chmap_free(&c->map);
    set_close(&c->ps);
}

static qh_status structured_open(qh_graph *g, const char *targets, const char *exclude, structured_call *c,
                                 qh_error *err)
{
    memset(c, 0, sizeof *c);
    qh_status st = set_open_g(g, targets, exclude, &c->ps, err);
    const uint8_t **masks = calloc((size_t)c->ps.n + 1, sizeof *masks);
    if (st == QH_OK && !masks)
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t k = 0; st == QH_OK && k < c->ps.n; k++)
        masks[k] = c->ps.t[k].mask;
    if (st == QH_OK && (st = qhi_chmap_build(g, &c->map, err)) == QH_OK)
        st = qhi_groups_build(g, &c->map, c->ps.idx, c->ps.n, masks, &c->groups, err);
    free(masks);
    if (st == QH_OK && c->groups.n == 0)
        st = qh_error_set(err, QH_E_INVAL, "targets '%s' (exclude '%s') hold no removable filter: the output layer's "
                          "filters, and filters tied to a layer outside the targets, cannot be removed", targets,
                          exclude ? exclude : "");
    return st;
}

qh_status qhi_prune_structured(qh_graph *g, qh_pruner *pr, const char *targets, const char *exclude, double sparsity,
                               bool apply, int32_t *n_groups, int32_t *n_pruned, qh_error *err)
{
    structured_call c;
    qh_status st = structured_open(g, targets, exclude, &c, err);
    if (st == QH_OK)
        st = qhi_pruner_prune_groups(pr, c.ps.t, c.ps.n, c.groups.groups, c.groups.n, sparsity, err);
    if (st == QH_OK && apply)
        st = qhi_groups_apply(g, &c.map, &c.groups, err);
    if (st == QH_OK) {
        *n_groups = c.groups.n;
        *n_pruned = 0;
        for (int32_t k = 0; k < c.groups.n; k++)
            *n_pruned += !c.groups.groups[k].keep;
    }
    structured_close(&c);
    return st;
}

/* One structured step of stage s (apply = false: a dry run that changes nothing). */
static qh_status structured_to(qh_run *run, const qh_stage *s, double sparsity, bool apply, qh_error *err)
{
    const qh_prune_config *cfg = s->host_cfg;
    qh_pruner pr = {0};
    int32_t groups = 0, pruned = 0;
    qh_status st = qh_pruner_create(&pr, s->plugin, s->plugin_cfg, err);
    if (st != QH_OK)
        return st;
    st = qhi_prune_structured(run->g, &pr, cfg->targets, cfg->exclude, sparsity, apply, &groups, &pruned, err);
    qh_pruner_destroy(&pr);
    if (st != QH_OK || !apply)
        return st;
    prune_set ps;
    if ((st = set_open(run, s, &ps, err)) == QH_OK)
        drop_target_quantization(run, s, &ps);
    set_close(&ps);
    if (run->metrics) {
        qh_structured_metrics *sm = &run->metrics[s - run->pc->stages].structured;
        sm->done = true;
        sm->groups = groups;
        sm->groups_pruned = pruned;
    }
    qh_log(QH_LOG_INFO, s->name, "%s: %d of %d filter groups pruned", s->plugin->name, pruned, groups);
    return st;
}

/* One pruning step of stage s at `sparsity` (the pruner keeps what is already pruned). */
static qh_status prune_to(qh_run *run, const qh_stage *s, double sparsity, qh_error *err)
{
    if (is_structured(s->plugin))
        return structured_to(run, s, sparsity, true, err);
    prune_set ps;
    qh_status st = set_open(run, s, &ps, err);
    if (st == QH_OK && (st = call_pruner(s, &ps, sparsity, err)) == QH_OK) {
        drop_target_quantization(run, s, &ps);
        st = set_apply(run, s, &ps, err);
    }
    set_close(&ps);
    return st;
}

/* Adds an event to the list of stage `owner` (a oneshot prune stage or a train stage); returns it,
 * or NULL when it is only counted (no metrics yet, or the list is full). */
static qh_prune_event *record_event(qh_run *run, const qh_stage *owner, int64_t epoch, double target,
                                    double measured)
{
    if (!run->metrics)
        return NULL;
    qh_stage_metrics *m = &run->metrics[owner - run->pc->stages];
    if (m->n_prune_events++ >= QHI_MAX_PRUNE_EVENTS)
        return NULL; /* counted, not listed */
    qh_prune_event *e = &m->prune_events[m->n_prune_events - 1];
    *e = (qh_prune_event){epoch, target, measured, false};
    return e;
}

/* ---------------------------------------------------------------- physical removal */

enum { TIME_BATCH = 256, TIME_REPS = 5 };

/* Inference of both graphs on the same test images, in one process with the run's threads: a
 * warm-up each, then TIME_REPS repetitions alternating which goes first; medians. */
static qh_status time_pair(qh_run *run, qh_graph *a, qh_graph *b, qh_structured_metrics *sm, qh_error *err)
{
    const qh_dataset_info *in = &run->ds.info;
    int64_t n = in->n_test < TIME_BATCH ? in->n_test : TIME_BATCH, sample = (int64_t)in->channels * in->height * in->width;
    float *x = malloc(sizeof *x * (size_t)(n * sample + 1));
    int32_t *y = malloc(sizeof *y * (size_t)(n + 1));
    int64_t *idx = malloc(sizeof *idx * (size_t)(n + 1));
    double ta[TIME_REPS], tb[TIME_REPS];
    qh_status st = x && y && idx && n > 0 ? QH_OK : qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int64_t i = 0; st == QH_OK && i < n; i++)
        idx[i] = i;
    if (st == QH_OK)
        st = qh_dataset_load(&run->ds, QH_SPLIT_TEST, idx, n, x, y, err);
    qh_graph *pair[2] = {a, b};
    for (int r = -1; st == QH_OK && r < TIME_REPS; r++)
        for (int k = 0; st == QH_OK && k < 2; k++) {
            int which = (r & 1) ? 1 - k : k;
            double t0 = qh_now_s();
            if (!qh_graph_forward(pair[which], x, n, false, NULL, err))
                st = QH_E_NOMEM;
            else if (r >= 0)
                (which ? tb : ta)[r] = qh_now_s() - t0;
        }
    if (st == QH_OK) {
        qsort(ta, TIME_REPS, sizeof *ta, qh_cmp_double);
        qsort(tb, TIME_REPS, sizeof *tb, qh_cmp_double);
        sm->batch = n;
        sm->threads = run->threads;
        sm->reps = TIME_REPS;
        sm->img_s_before = (double)n / ta[TIME_REPS / 2];
        sm->img_s_after = (double)n / tb[TIME_REPS / 2];
    }
    free(x);
    free(y);
    free(idx);
    return st;
}

static int64_t filter_channels(const qh_graph *g)
{
    int64_t n = 0;
    for (int32_t i = 0; i < qh_graph_n_nodes(g); i++)
        if (qh_graph_node_op(g, i) == QH_OP_CONV2D || qh_graph_node_op(g, i) == QH_OP_LINEAR)
            n += g->nodes[i].shape[0];
    return n;
}

/* Rebuilds run->g without its dead channels (in place: the graph pointer stays the same). */
static qh_status remove_channels(qh_run *run, const qh_stage *s, qh_error *err)
{
    qh_structured_metrics *sm = &run->metrics[s - run->pc->stages].structured;
    qh_graph *ng = qh_graph_compact(run->g, err);
    if (!ng)
        return QH_E_INVAL;
    sm->physical = true;
    sm->params_before = qh_graph_n_params(run->g);
    sm->params_after = qh_graph_n_params(ng);
    sm->macs_before = qh_graph_macs(run->g);
    sm->macs_after = qh_graph_macs(ng);
    sm->channels_before = filter_channels(run->g);
    sm->channels_after = filter_channels(ng);
    qh_status st = time_pair(run, run->g, ng, sm, err);
    if (st != QH_OK) {
        qh_graph_free(ng);
        return st;
    }
    bool quantized = false;
    for (int32_t i = 0; i < run->g->n_weights; i++) {
        quantized |= run->qt[i].bits > 0;
        qh_qtensor_clear(&run->qt[i]); /* every shape may change */
    }
    if (quantized)
        qh_log(QH_LOG_WARN, s->name, "removing channels returns the quantized weights to float");
    qhi_graph_swap(run->g, ng);
    qh_graph_free(ng);
    qh_log(QH_LOG_INFO, s->name, "removed %lld of %lld channels: %lld -> %lld parameters, %lld -> %lld MACs per "
           "sample, inference %.0f -> %.0f img/s (%.2fx; batch %lld, %d threads)",
           (long long)(sm->channels_before - sm->channels_after), (long long)sm->channels_before,
           (long long)sm->params_before, (long long)sm->params_after, (long long)sm->macs_before,
           (long long)sm->macs_after, sm->img_s_before, sm->img_s_after, sm->img_s_after / sm->img_s_before,
           (long long)sm->batch, sm->threads);
    return QH_OK;
}

/* ---------------------------------------------------------------- checks and the one-shot stage */

/* What a stage asks that its pruner cannot give. */
static qh_status check_physical(const qh_stage *s, qh_error *err)
{
    const qh_prune_config *cfg = s->host_cfg;
    if (cfg->physical && !is_structured(s->plugin))
        return qh_error_set(err, QH_E_INVAL, "physical = true needs a structured pruner (one that prunes whole "
                            "filters, e.g. structured); %s is not", s->plugin->name);
    return QH_OK;
}

qh_status qhi_prune_check(qh_run *run, qh_error *err)
{
    for (int i = 0; i < run->pc->n_stages; i++) {
        const qh_stage *s = &run->pc->stages[i];
        if (s->type != QH_STAGE_PRUNE)
            continue;
        double sparsity = ((const qh_prune_config *)s->host_cfg)->sparsity;
        qh_status st = check_physical(s, err);
        if (st == QH_OK && is_structured(s->plugin)) {
            st = structured_to(run, s, sparsity, false, err);
        } else if (st == QH_OK) {
            prune_set ps;
            if ((st = set_open(run, s, &ps, err)) == QH_OK)
                st = call_pruner(s, &ps, sparsity, err);
            set_close(&ps);
        }
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
    if (st != QH_OK)
        return st;
    double measured = measured_sparsity(run, s);
    record_event(run, s, -1, cfg->sparsity, measured);
    qh_log(QH_LOG_INFO, s->name, "pruned with %s: %.2f %% of the targeted weights are zero", s->plugin->name,
           100.0 * measured);
    return cfg->physical ? remove_channels(run, s, err) : QH_OK;
}

/* ---------------------------------------------------------------- schedules during a train stage */

struct qhi_prune_hook {
    qh_run *run;
    const qh_stage *s;      /* the prune stage */
    const qh_stage *train;  /* the train stage whose epochs carry the events */
    qh_prune_event *last;   /* the last event recorded */
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
    *h = (qhi_prune_hook){.run = run, .s = s, .train = train, .cfg = s->host_cfg,
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

static qh_stage_metrics *hook_metrics(const qhi_prune_hook *h)
{
    return h->run->metrics ? &h->run->metrics[h->train - h->run->pc->stages] : NULL;
}

char *qhi_prune_hook_save(void *user)
{
    const qh_stage_metrics *m = hook_metrics(user);
    json_t *o = m ? json_object() : NULL;
    if (!o)
        return NULL;
    qhi_events_put(o, m);
    char *text = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return text;
}

qh_status qhi_prune_hook_restore(void *user, const char *text, qh_error *err)
{
    qh_stage_metrics *m = hook_metrics(user);
    if (!m || !*text)
        return QH_OK;
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return qh_error_set(err, QH_E_FORMAT, "metadata 'hook' (the pruning events of [%s]) does not parse: %s",
                            ((const qhi_prune_hook *)user)->train->name, je.text);
    }
    qhi_events_get(o, m);
    json_decref(o);
    return QH_OK;
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
    if (st != QH_OK)
        return st;
    double measured = measured_sparsity(h->run, h->s);
    h->last = record_event(h->run, h->train, t, target, measured);
    qh_log(QH_LOG_INFO, h->s->name, "after %lld epochs of [%s]: %s to %.2f %%, measured %.2f %%", (long long)t,
           h->cfg->during, what, 100.0 * target, 100.0 * measured);
    return QH_OK;
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
            if (h->last)
                h->last->undone = true;
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
