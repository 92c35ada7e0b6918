/* structured.c - filter (output channel) pruning by the L1 or L2 norm of each filter.
 *
 * A filter is one slice along dim 0 of a target weight: an output channel of a conv ([out, in, kh,
 * kw]) or a neuron of a linear layer ([out, in]). The host hands over coupled groups (prune_groups):
 * filters that residual adds, depthwise convolutions or option-A shortcuts tie together, which are
 * kept or removed as one; prune() without groups treats every filter as its own group.
 *
 * Score of a group, the same for both scopes:
 *     score = mean over its member filters f of  ||f||_p / mean_alive(||.||_p of f's layer)
 * Dividing by the layer's mean norm (over its filters not already pruned) makes layers of different
 * fan-in and scale comparable for the global ranking (an L1 norm grows with the fan-in), and the
 * mean over members keeps groups that span many layers from winning by their size alone. Within one
 * family (groups over the same layers) the order is that of the plain norms.
 *
 * Selection (`sparsity` is the fraction of groups removed; already pruned groups count first, so
 * masks only ever shrink):
 *   scope = layer:  each family of n groups loses k = min(round(sparsity * n), n - 1);
 *   scope = global: round(sparsity * N) of all N groups, lowest score first, skipping a group when
 *                   it is the last one alive of its family.
 * Either way every layer keeps at least one filter (a layer with none would cut the network), and
 * ties go to the lower group index (the channel that comes first in the graph). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_plugin.h"

typedef struct structured_cfg {
    int norm;  /* index into norm_names */
    int scope; /* index into scope_names */
} structured_cfg;

enum { NORM_L1 = 0, NORM_L2 };
enum { SCOPE_LAYER = 0, SCOPE_GLOBAL };

static const char *const norm_names[] = {"l1", "l2", NULL};
static const char *const scope_names[] = {"layer", "global", NULL};

static const qh_param params[] = {
    {"norm", QH_PARAM_ENUM, offsetof(structured_cfg, norm), {.i = NORM_L1}, 0, 0, norm_names, 0, "norm",
     "filter importance: l1 = sum |w|, l2 = sqrt(sum w^2) over the filter's weights"},
    {"scope", QH_PARAM_ENUM, offsetof(structured_cfg, scope), {.i = SCOPE_LAYER}, 0, 0, scope_names, 0, "ranking",
     "layer: every (coupled) layer loses the same fraction of its filters; global: rank all groups by their "
     "norms divided by their layer's mean norm"},
    QH_P_END,
};

/* Norms of every filter of every target, and each target's mean over its alive filters. */
typedef struct norms {
    double **f;    /* [target][filter] */
    double *mean;  /* [target] */
    int32_t n;
} norms;

static void norms_free(norms *nm)
{
    for (int32_t t = 0; nm->f && t < nm->n; t++)
        free(nm->f[t]);
    free(nm->f);
    free(nm->mean);
}

static bool filter_alive(const qh_prune_target *t, int64_t c)
{
    int64_t len = qh_tensor_numel(t->weight) / t->weight->shape[0];
    for (int64_t i = 0; i < len; i++)
        if (t->mask[c * len + i])
            return true;
    return false;
}

static double filter_norm(const qh_prune_target *t, int64_t c, int norm)
{
    int64_t len = qh_tensor_numel(t->weight) / t->weight->shape[0];
    const float *w = qh_tensor_f32(t->weight) + c * len;
    double s = 0.0;
    for (int64_t i = 0; i < len; i++)
        s += norm == NORM_L1 ? fabs((double)w[i]) : (double)w[i] * (double)w[i];
    return norm == NORM_L1 ? s : sqrt(s);
}

static qh_status norms_compute(const qh_prune_target *targets, int32_t n, int norm, norms *nm, qh_error *err)
{
    nm->n = n;
    nm->f = calloc((size_t)n + 1, sizeof *nm->f);
    nm->mean = calloc((size_t)n + 1, sizeof *nm->mean);
    if (!nm->f || !nm->mean)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int32_t t = 0; t < n; t++) {
        int64_t out = targets[t].weight->shape[0], alive = 0;
        double sum = 0.0;
        if (!(nm->f[t] = malloc(sizeof(double) * (size_t)out)))
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        for (int64_t c = 0; c < out; c++) {
            nm->f[t][c] = filter_norm(&targets[t], c, norm);
            if (filter_alive(&targets[t], c)) {
                sum += nm->f[t][c];
                alive++;
            }
        }
        nm->mean[t] = alive && sum > 0.0 ? sum / (double)alive : 1.0;
    }
    return QH_OK;
}

static qh_status check_target(const qh_prune_target *t, int32_t idx, qh_error *err)
{
    const char *name = t->name ? t->name : "?";
    if (!t->weight || t->weight->dtype != QH_F32 || !t->mask)
        return qh_error_set(err, QH_E_INVAL, "target %d (%s): needs an F32 weight and a mask", idx, name);
    if (t->weight->ndim < 2 || t->weight->shape[0] < 1)
        return qh_error_set(err, QH_E_INVAL, "%s: filters are slices of a weight [out, in, ...], not rank %d", name,
                            t->weight->ndim);
    const float *w = qh_tensor_f32(t->weight);
    int64_t n = qh_tensor_numel(t->weight);
    for (int64_t i = 0; i < n; i++)
        if (isnan(w[i]))
            return qh_error_set(err, QH_E_INVAL, "%s: element %lld is NaN", name, (long long)i);
    return QH_OK;
}

static qh_status check_groups(const qh_prune_target *targets, int32_t n_targets, const qh_channel_group *groups,
                              int32_t n_groups, qh_error *err)
{
    for (int32_t g = 0; g < n_groups; g++) {
        const qh_channel_group *gr = &groups[g];
        if (gr->n_members < 1 || !gr->target || !gr->channel || gr->family < 0)
            return qh_error_set(err, QH_E_INVAL, "group %d: no members or no family", g);
        for (int32_t m = 0; m < gr->n_members; m++)
            if (gr->target[m] < 0 || gr->target[m] >= n_targets || gr->channel[m] < 0 ||
                gr->channel[m] >= targets[gr->target[m]].weight->shape[0])
                return qh_error_set(err, QH_E_INVAL, "group %d: member %d names no filter of the targets", g, m);
    }
    return QH_OK;
}

/* ---------------------------------------------------------------- ranking and selection */

typedef struct ranked {
    double score;
    int32_t group;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->group > y->group) - (x->group < y->group);
}

static double group_score(const qh_channel_group *gr, const norms *nm)
{
    double s = 0.0;
    for (int32_t m = 0; m < gr->n_members; m++)
        s += nm->f[gr->target[m]][gr->channel[m]] / nm->mean[gr->target[m]];
    return s / gr->n_members;
}

/* Prunes up to `want` more of the alive groups in order, never the last alive one of a family. */
static void take_lowest(qh_channel_group *groups, const ranked *order, int32_t n_order, int64_t want,
                        int32_t *alive_in_family)
{
    for (int32_t i = 0; i < n_order && want > 0; i++) {
        qh_channel_group *gr = &groups[order[i].group];
        if (alive_in_family[gr->family] <= 1)
            continue;
        gr->keep = 0;
        alive_in_family[gr->family]--;
        want--;
    }
}

static qh_status select_groups(const structured_cfg *cfg, qh_channel_group *groups, int32_t n_groups,
                               const norms *nm, double sparsity, qh_error *err)
{
    int32_t n_fam = 0;
    for (int32_t g = 0; g < n_groups; g++)
        n_fam = groups[g].family + 1 > n_fam ? groups[g].family + 1 : n_fam;
    int32_t *total = calloc((size_t)n_fam + 1, sizeof *total), *alive = calloc((size_t)n_fam + 1, sizeof *alive);
    ranked *order = malloc(sizeof *order * ((size_t)n_groups + 1));
    if (!total || !alive || !order) {
        free(total);
        free(alive);
        free(order);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    int32_t n_alive = 0;
    for (int32_t g = 0; g < n_groups; g++) {
        total[groups[g].family]++;
        if (groups[g].keep) {
            alive[groups[g].family]++;
            order[n_alive++] = (ranked){group_score(&groups[g], nm), g};
        }
    }
    qsort(order, (size_t)n_alive, sizeof *order, cmp_ranked);
    if (cfg->scope == SCOPE_GLOBAL) {
        int64_t k = llround(sparsity * (double)n_groups);
        take_lowest(groups, order, n_alive, k - (n_groups - n_alive), alive);
    } else {
        /* per family: the same sorted list, filtered to that family */
        for (int32_t f = 0; f < n_fam; f++) {
            int64_t k = llround(sparsity * (double)total[f]);
            if (k > total[f] - 1)
                k = total[f] - 1;
            int64_t want = k - (total[f] - alive[f]);
            for (int32_t i = 0; i < n_alive && want > 0; i++) {
                qh_channel_group *gr = &groups[order[i].group];
                if (gr->family != f || alive[f] <= 1)
                    continue;
                gr->keep = 0;
                alive[f]--;
                want--;
            }
        }
    }
    free(total);
    free(alive);
    free(order);
    return QH_OK;
}

/* ---------------------------------------------------------------- the two entry points */

static qh_status check_all(const qh_prune_target *targets, int32_t n, double sparsity, qh_error *err)
{
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return qh_error_set(err, QH_E_INVAL, "sparsity %g outside [0, 1)", sparsity);
    if (n < 0 || (n > 0 && !targets))
        return qh_error_set(err, QH_E_INVAL, "bad target list");
    for (int32_t t = 0; t < n; t++) {
        qh_status st = check_target(&targets[t], t, err);
        if (st != QH_OK)
            return st;
    }
    return QH_OK;
}

static qh_status structured_prune_groups(void *state, const qh_prune_target *targets, int32_t n_targets,
                                         qh_channel_group *groups, int32_t n_groups, double sparsity,
                                         qh_error *err)
{
    const structured_cfg *cfg = state;
    if ((unsigned)cfg->norm > NORM_L2 || (unsigned)cfg->scope > SCOPE_GLOBAL)
        return qh_error_set(err, QH_E_INVAL, "norm or scope index out of range");
    qh_status st = check_all(targets, n_targets, sparsity, err);
    if (st == QH_OK && (n_groups < 0 || (n_groups > 0 && !groups)))
        st = qh_error_set(err, QH_E_INVAL, "bad group list");
    if (st == QH_OK)
        st = check_groups(targets, n_targets, groups, n_groups, err);
    if (st != QH_OK)
        return st;
    norms nm = {0};
    if ((st = norms_compute(targets, n_targets, cfg->norm, &nm, err)) == QH_OK)
        st = select_groups(cfg, groups, n_groups, &nm, sparsity, err);
    norms_free(&nm);
    return st;
}

/* Without the graph: every filter is its own group and each target its own family; the pruned
 * filters are masked whole in the targets' masks. */
static qh_status structured_prune(void *state, qh_prune_target *targets, int32_t n, double sparsity, qh_error *err)
{
    qh_status st = check_all(targets, n, sparsity, err);
    if (st != QH_OK)
        return st;
    int64_t total = 0;
    for (int32_t t = 0; t < n; t++)
        total += targets[t].weight->shape[0];
    qh_channel_group *groups = calloc((size_t)total + 1, sizeof *groups);
    int32_t *tgt = malloc(sizeof *tgt * ((size_t)total + 1));
    int64_t *ch = malloc(sizeof *ch * ((size_t)total + 1));
    if (!groups || !tgt || !ch || total > INT32_MAX) {
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
        goto out;
    }
    int32_t g = 0;
    for (int32_t t = 0; t < n; t++)
        for (int64_t c = 0; c < targets[t].weight->shape[0]; c++, g++) {
            tgt[g] = t;
            ch[g] = c;
            groups[g] = (qh_channel_group){t, 1, &tgt[g], &ch[g], filter_alive(&targets[t], c)};
        }
    if ((st = structured_prune_groups(state, targets, n, groups, g, sparsity, err)) != QH_OK)
        goto out;
    for (int32_t k = 0; k < g; k++) {
        if (groups[k].keep)
            continue;
        int64_t len = qh_tensor_numel(targets[tgt[k]].weight) / targets[tgt[k]].weight->shape[0];
        memset(targets[tgt[k]].mask + ch[k] * len, 0, (size_t)len);
    }
out:
    free(groups);
    free(tgt);
    free(ch);
    return st;
}

static const qh_pruner_ops structured_ops = {
    .struct_size = sizeof(qh_pruner_ops),
    .prune = structured_prune,
    .prune_groups = structured_prune_groups,
};

static const qh_plugin_desc structured_desc = {
    .struct_size = sizeof(qh_plugin_desc),
    .kind = QH_KIND_PRUNER,
    .name = "structured",
    .summary = "filter (output channel) pruning by L1 or L2 norm, per layer or global; with physical removal",
    .help = "Removes whole filters with their biases and batch norm channels; filters tied by residual adds, "
            "depthwise convolutions or option-A shortcuts go together. `sparsity` is the fraction of (coupled) "
            "filter groups removed; every layer keeps at least one. With `physical = true` on the prune stage the "
            "model is rebuilt with fewer channels.",
    .params = params,
    .config_size = sizeof(structured_cfg),
    .ops.pruner = &structured_ops,
};

static const qh_plugin_desc *const structured_plugins[] = {&structured_desc};

static const qh_library structured_lib = {
    QH_LIBRARY_HEADER,
    .name = "qhost-pruner-structured",
    .version = "1.0.0",
    .license = "MIT",
    .n_plugins = 1,
    .plugins = structured_plugins,
};

QH_PLUGIN_LIBRARY(structured_lib)
