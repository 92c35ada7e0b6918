/* qh_wrappers.c - the only code that calls through plugin vtables.
 *
 * Each wrapper checks its arguments, applies the host default for a NULL optional method, checks
 * what the plugin hands back where the host relies on it, and prefixes errors with
 * "<kind> <name>: " so a user sees which plugin failed.
 */
#include "qhost/qh_registry.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Adds "<kind> <name>" to a plugin's error, or says what failed if the plugin left no message. */
static qh_status plugin_failed(const qh_plugin *p, const char *method, qh_status st, qh_error *err)
{
    if (st == QH_OK) /* defensive: a failure path must never report success */
        st = QH_E_INTERNAL;
    if (err && err->msg[0] == '\0')
        qh_error_set(err, st, "%s failed (%s)", method, qh_status_str(st));
    qh_error_prefix(err, "%s %s", qh_kind_name(p->kind), p->name);
    return st;
}

static qh_status check_plugin(const qh_plugin *p, qh_kind kind, const char *what, qh_error *err)
{
    if (!p)
        return qh_error_set(err, QH_E_INVAL, "%s: no plugin", what);
    if (p->kind != kind)
        return qh_error_set(err, QH_E_INVAL, "%s: plugin '%s' is a %s, not a %s", what, p->name,
                            qh_kind_name(p->kind), qh_kind_name(kind));
    return QH_OK;
}

/* Shared by pruner and quantizer: create() or the default (state = the config block). */
static qh_status create_state(const qh_plugin *p, qh_status (*create)(const void *, void **, qh_error *),
                              const void *cfg, void **state, qh_error *err)
{
    *state = (void *)cfg;
    if (!create)
        return QH_OK;
    qh_error_clear(err);
    qh_status st = create(cfg, state, err);
    return st == QH_OK ? QH_OK : plugin_failed(p, "create", st, err);
}

/* ---------------------------------------------------------------- model */

qh_status qh_model_build(const qh_plugin *p, const void *cfg, const qh_model_input *in, qh_graph *g,
                         qh_error *err)
{
    qh_status st = check_plugin(p, QH_KIND_MODEL, "qh_model_build", err);
    if (st != QH_OK)
        return st;
    if (!in || !g)
        return qh_error_set(err, QH_E_INVAL, "model %s: no input shape or graph", p->name);
    if (in->channels <= 0 || in->height <= 0 || in->width <= 0 || in->num_classes < 2)
        return qh_error_set(err, QH_E_INVAL, "model %s: bad input %dx%dx%d with %d classes", p->name, in->channels,
                            in->height, in->width, in->num_classes);
    qh_error_clear(err);
    st = p->ops.model.build(cfg, in, g, err);
    return st == QH_OK ? QH_OK : plugin_failed(p, "build", st, err);
}

/* ---------------------------------------------------------------- dataset */

/* What the host needs from a dataset's description; a plugin bug otherwise. */
static qh_status check_info(const qh_plugin *p, qh_dataset_info *info, qh_error *err)
{
    info->identity[sizeof info->identity - 1] = '\0';
    const int64_t sample = (int64_t)info->channels * info->height * info->width;
    if (info->channels <= 0 || info->height <= 0 || info->width <= 0 || sample > INT32_MAX)
        return qh_error_set(err, QH_E_INTERNAL, "dataset %s: open returned a bad sample shape %dx%dx%d", p->name,
                            info->channels, info->height, info->width);
    if (info->num_classes < 2)
        return qh_error_set(err, QH_E_INTERNAL, "dataset %s: open returned %d classes (need at least 2)", p->name,
                            info->num_classes);
    if (info->n_train <= 0 || info->n_test <= 0)
        return qh_error_set(err, QH_E_INTERNAL, "dataset %s: open returned %lld training and %lld test samples",
                            p->name, (long long)info->n_train, (long long)info->n_test);
    return QH_OK;
}

qh_status qh_dataset_open(qh_dataset *ds, const qh_plugin *p, const void *cfg, uint64_t seed, qh_error *err)
{
    if (!ds)
        return qh_error_set(err, QH_E_INVAL, "qh_dataset_open: no dataset");
    memset(ds, 0, sizeof *ds);
    qh_status st = check_plugin(p, QH_KIND_DATASET, "qh_dataset_open", err);
    if (st != QH_OK)
        return st;
    qh_dataset_info info;
    memset(&info, 0, sizeof info);
    void *state = NULL;
    qh_error_clear(err);
    st = p->ops.dataset.open(cfg, seed, &state, &info, err);
    if (st != QH_OK)
        return plugin_failed(p, "open", st, err);
    st = check_info(p, &info, err);
    if (st != QH_OK) {
        p->ops.dataset.close(state);
        return st;
    }
    ds->plugin = p;
    ds->state = state;
    ds->info = info;
    return QH_OK;
}

void qh_dataset_close(qh_dataset *ds)
{
    if (!ds || !ds->plugin)
        return;
    ds->plugin->ops.dataset.close(ds->state);
    memset(ds, 0, sizeof *ds);
}

qh_status qh_dataset_load(qh_dataset *ds, qh_split split, const int64_t *idx, int64_t n, float *x, int32_t *y,
                          qh_error *err)
{
    if (!ds || !ds->plugin)
        return qh_error_set(err, QH_E_INVAL, "qh_dataset_load: dataset not open");
    const qh_plugin *p = ds->plugin;
    if (split != QH_SPLIT_TRAIN && split != QH_SPLIT_TEST)
        return qh_error_set(err, QH_E_INVAL, "dataset %s: unknown split %d", p->name, (int)split);
    if (n < 0 || (n > 0 && (!idx || !x || !y)))
        return qh_error_set(err, QH_E_INVAL, "dataset %s: bad batch (n = %lld)", p->name, (long long)n);
    /* the host checks indices so a plugin can trust them */
    const int64_t size = split == QH_SPLIT_TRAIN ? ds->info.n_train : ds->info.n_test;
    for (int64_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= size)
            return qh_error_set(err, QH_E_INVAL, "dataset %s: sample index %lld out of range [0, %lld)", p->name,
                                (long long)idx[i], (long long)size);
    if (n == 0)
        return QH_OK;
    qh_error_clear(err);
    qh_status st = p->ops.dataset.load(ds->state, split, idx, n, x, y, err);
    if (st != QH_OK)
        return plugin_failed(p, "load", st, err);
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= ds->info.num_classes)
            return qh_error_set(err, QH_E_INTERNAL, "dataset %s: load returned label %d (expected 0..%d)", p->name,
                                y[i], ds->info.num_classes - 1);
    return QH_OK;
}

qh_status qh_dataset_augment(qh_dataset *ds, qh_rng *rng, float *x, int64_t n, qh_error *err)
{
    if (!ds || !ds->plugin)
        return qh_error_set(err, QH_E_INVAL, "qh_dataset_augment: dataset not open");
    const qh_plugin *p = ds->plugin;
    if (!p->ops.dataset.augment || n == 0)
        return QH_OK;
    if (!rng || !x || n < 0)
        return qh_error_set(err, QH_E_INVAL, "dataset %s: bad augment batch (n = %lld)", p->name, (long long)n);
    qh_error_clear(err);
    qh_status st = p->ops.dataset.augment(ds->state, rng, x, n, err);
    return st == QH_OK ? QH_OK : plugin_failed(p, "augment", st, err);
}

/* ---------------------------------------------------------------- pruner */

qh_status qh_pruner_create(qh_pruner *pr, const qh_plugin *p, const void *cfg, qh_error *err)
{
    if (!pr)
        return qh_error_set(err, QH_E_INVAL, "qh_pruner_create: no pruner");
    memset(pr, 0, sizeof *pr);
    qh_status st = check_plugin(p, QH_KIND_PRUNER, "qh_pruner_create", err);
    if (st == QH_OK)
        st = create_state(p, p->ops.pruner.create, cfg, &pr->state, err);
    if (st != QH_OK) {
        pr->state = NULL;
        return st;
    }
    pr->plugin = p;
    return QH_OK;
}

void qh_pruner_destroy(qh_pruner *pr)
{
    if (!pr || !pr->plugin)
        return;
    if (pr->plugin->ops.pruner.destroy)
        pr->plugin->ops.pruner.destroy(pr->state);
    memset(pr, 0, sizeof *pr);
}

static qh_status check_targets(const qh_plugin *p, const qh_prune_target *t, int32_t n, qh_error *err)
{
    if (n < 0 || (n > 0 && !t))
        return qh_error_set(err, QH_E_INVAL, "pruner %s: bad target list (n = %d)", p->name, n);
    for (int32_t i = 0; i < n; i++) {
        if (!t[i].name || !t[i].weight || !t[i].mask)
            return qh_error_set(err, QH_E_INVAL, "pruner %s: target #%d lacks a name, weight or mask", p->name, i);
        if (t[i].weight->dtype != QH_F32)
            return qh_error_set(err, QH_E_INVAL, "pruner %s: %s is %s, not F32", p->name, t[i].name,
                                qh_dtype_name(t[i].weight->dtype));
    }
    return QH_OK;
}

/* Copies of the masks before the call, to hold the plugin to "masks only ever shrink". */
static uint8_t *save_masks(const qh_prune_target *t, int32_t n)
{
    int64_t total = 0;
    for (int32_t i = 0; i < n; i++)
        total += qh_tensor_numel(t[i].weight);
    uint8_t *copy = malloc(total > 0 ? (size_t)total : 1);
    for (int64_t i = 0, off = 0; copy && i < n; off += qh_tensor_numel(t[i].weight), i++)
        memcpy(copy + off, t[i].mask, (size_t)qh_tensor_numel(t[i].weight));
    return copy;
}

/* Normalizes masks to 0/1 and restores the old ones if a pruned weight came back. */
static qh_status check_masks(const qh_plugin *p, qh_prune_target *t, int32_t n, const uint8_t *old, qh_error *err)
{
    const char *regrown = NULL;
    for (int64_t i = 0, off = 0; i < n; off += qh_tensor_numel(t[i].weight), i++) {
        int64_t numel = qh_tensor_numel(t[i].weight);
        for (int64_t j = 0; j < numel; j++) {
            t[i].mask[j] = t[i].mask[j] != 0;
            if (t[i].mask[j] && !old[off + j] && !regrown)
                regrown = t[i].name;
        }
    }
    if (!regrown)
        return QH_OK;
    for (int64_t i = 0, off = 0; i < n; off += qh_tensor_numel(t[i].weight), i++)
        memcpy(t[i].mask, old + off, (size_t)qh_tensor_numel(t[i].weight));
    return qh_error_set(err, QH_E_INTERNAL, "pruner %s: prune revived pruned weights of %s (masks may only shrink)",
                        p->name, regrown);
}

qh_status qh_pruner_prune(qh_pruner *pr, qh_prune_target *targets, int32_t n, double sparsity, qh_error *err)
{
    if (!pr || !pr->plugin)
        return qh_error_set(err, QH_E_INVAL, "qh_pruner_prune: pruner not created");
    const qh_plugin *p = pr->plugin;
    if (!isfinite(sparsity) || sparsity < 0.0 || sparsity >= 1.0)
        return qh_error_set(err, QH_E_INVAL, "pruner %s: sparsity %g is not in [0, 1)", p->name, sparsity);
    qh_status st = check_targets(p, targets, n, err);
    if (st != QH_OK || n == 0)
        return st;
    uint8_t *old = save_masks(targets, n);
    if (!old)
        return qh_error_set(err, QH_E_NOMEM, "pruner %s: out of memory", p->name);
    qh_error_clear(err);
    st = p->ops.pruner.prune(pr->state, targets, n, sparsity, err);
    st = st == QH_OK ? check_masks(p, targets, n, old, err) : plugin_failed(p, "prune", st, err);
    free(old);
    return st;
}

/* ---------------------------------------------------------------- quantizer */

qh_status qh_quantizer_create(qh_quantizer *qz, const qh_plugin *p, const void *cfg, qh_error *err)
{
    if (!qz)
        return qh_error_set(err, QH_E_INVAL, "qh_quantizer_create: no quantizer");
    memset(qz, 0, sizeof *qz);
    qh_status st = check_plugin(p, QH_KIND_QUANTIZER, "qh_quantizer_create", err);
    if (st == QH_OK)
        st = create_state(p, p->ops.quantizer.create, cfg, &qz->state, err);
    if (st != QH_OK) {
        qz->state = NULL;
        return st;
    }
    qz->plugin = p;
    return QH_OK;
}

void qh_quantizer_destroy(qh_quantizer *qz)
{
    if (!qz || !qz->plugin)
        return;
    if (qz->plugin->ops.quantizer.destroy)
        qz->plugin->ops.quantizer.destroy(qz->state);
    memset(qz, 0, sizeof *qz);
}

bool qh_quantizer_accepts(qh_quantizer *qz, const char *name, const qh_tensor *w)
{
    if (!qz || !qz->plugin || !w)
        return false;
    if (!qz->plugin->ops.quantizer.accepts) /* 1.0 plugins and those without an opinion */
        return w->dtype == QH_F32 && w->ndim >= 2;
    return qz->plugin->ops.quantizer.accepts(qz->state, name ? name : "", w) != 0;
}

static bool same_shape(const qh_tensor *a, const qh_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* What is wrong with the qtensor a plugin produced for w (per qh_quant.h), or NULL. */
static const char *qtensor_problem(const qh_qtensor *q, const qh_tensor *w, char *buf, size_t size)
{
    if (!q->codes || !same_shape(q->codes, w))
        return "codes missing or not in the weight's shape";
    qh_dtype dt = q->codes->dtype;
    if (dt != QH_I8 && dt != QH_U8 && dt != QH_I16 && dt != QH_I32) {
        snprintf(buf, size, "codes have dtype %s", qh_dtype_name(dt));
        return buf;
    }
    if (q->bits < 2 || q->bits > 16) {
        snprintf(buf, size, "bits %d is outside 2..16", q->bits);
        return buf;
    }
    int64_t groups = qh_qtensor_groups(q, w);
    if (groups <= 0)
        return "bad grouping";
    if (q->scale && (q->scale->dtype != QH_F32 || qh_tensor_numel(q->scale) != groups)) {
        snprintf(buf, size, "scale is not F32 [%lld]", (long long)groups);
        return buf;
    }
    if (q->zero && (q->zero->dtype != QH_I32 || qh_tensor_numel(q->zero) != groups)) {
        snprintf(buf, size, "zero is not I32 [%lld]", (long long)groups);
        return buf;
    }
    if (q->codebook && q->codebook->dtype != QH_F32)
        return "codebook is not F32";
    if (!q->scale && !q->codebook)
        return "neither scale nor codebook";
    return NULL;
}

qh_status qh_quantizer_quantize(qh_quantizer *qz, const char *name, const qh_tensor *w, qh_qtensor *q,
                                qh_tensor *deq, qh_error *err)
{
    if (!qz || !qz->plugin)
        return qh_error_set(err, QH_E_INVAL, "qh_quantizer_quantize: quantizer not created");
    const qh_plugin *p = qz->plugin;
    if (!name)
        name = "";
    if (!w || !q || !deq)
        return qh_error_set(err, QH_E_INVAL, "quantizer %s: tensor %s: missing weight, output or dequantized tensor",
                            p->name, name);
    if (w->dtype != QH_F32 || deq->dtype != QH_F32 || !same_shape(w, deq))
        return qh_error_set(err, QH_E_INVAL, "quantizer %s: tensor %s: weight and dequantized output must be F32 "
                            "of one shape", p->name, name);
    memset(q, 0, sizeof *q); /* the plugin allocates into it; the caller passes a cleared one */
    qh_error_clear(err);
    qh_status st = p->ops.quantizer.quantize(qz->state, name, w, q, deq, err);
    if (st != QH_OK) {
        qh_qtensor_clear(q); /* partial outputs are host-owned too */
        if (err && err->msg[0] == '\0')
            qh_error_set(err, st, "quantize failed (%s)", qh_status_str(st));
        qh_error_prefix(err, "quantizer %s: tensor %s", p->name, name);
        return st;
    }
    char buf[160];
    const char *why = qtensor_problem(q, w, buf, sizeof buf);
    if (why) {
        qh_qtensor_clear(q);
        return qh_error_set(err, QH_E_INTERNAL, "quantizer %s: tensor %s: quantize returned a bad result: %s",
                            p->name, name, why);
    }
    return QH_OK;
}

/* ---------------------------------------------------------------- quantizer, data-aware (1.2) */

uint32_t qh_quantizer_calib_needs(qh_quantizer *qz, const char *name, const qh_tensor *w)
{
    if (!qz || !qz->plugin || !w || !qz->plugin->ops.quantizer.calib_needs || !qz->plugin->ops.quantizer.quantize_calib)
        return 0;
    uint32_t needs = qz->plugin->ops.quantizer.calib_needs(qz->state, name ? name : "", w);
    return needs & (QH_CALIB_X | QH_CALIB_XQ | QH_CALIB_H);
}

/* What is wrong with the layer record the host is about to hand over, or NULL. */
static const char *calib_problem(const qh_calib_layer *c, uint32_t needs)
{
    if (c->struct_size < sizeof *c)
        return "layer record older than this host";
    if (!c->w || c->w->dtype != QH_F32 || c->w->ndim < 2)
        return "weight missing or not an F32 tensor of rank >= 2";
    if (c->rows < 1 || c->cols < 1 || c->rows * c->cols != qh_tensor_numel(c->w))
        return "rows x cols does not match the weight";
    if (c->m < 1)
        return "no calibration samples";
    if (((needs & QH_CALIB_X) && !c->x) || ((needs & QH_CALIB_XQ) && !c->xq) || ((needs & QH_CALIB_H) && !c->h))
        return "the data the quantizer asked for is missing";
    return NULL;
}

/* Pruned weights stay pruned: the first masked element the plugin made nonzero, or -1. */
static int64_t revived_weight(const qh_calib_layer *c, const qh_tensor *deq)
{
    const float *v = qh_tensor_f32(deq);
    for (int64_t i = 0; c->mask && i < c->rows * c->cols; i++)
        if (!c->mask[i] && v[i] != 0.0f)
            return i;
    return -1;
}

qh_status qh_quantizer_quantize_calib(qh_quantizer *qz, const qh_calib_layer *c, qh_qtensor *q, qh_tensor *deq,
                                      qh_error *err)
{
    if (!qz || !qz->plugin)
        return qh_error_set(err, QH_E_INVAL, "qh_quantizer_quantize_calib: quantizer not created");
    const qh_plugin *p = qz->plugin;
    if (!c || !q || !deq)
        return qh_error_set(err, QH_E_INVAL, "quantizer %s: missing layer, output or dequantized tensor", p->name);
    const char *name = c->name ? c->name : "";
    if (!p->ops.quantizer.quantize_calib)
        return qh_error_set(err, QH_E_UNSUPPORTED, "quantizer %s: tensor %s: no quantize_calib method", p->name, name);
    const char *why = calib_problem(c, c->w ? qh_quantizer_calib_needs(qz, name, c->w) : 0);
    if (why)
        return qh_error_set(err, QH_E_INVAL, "quantizer %s: tensor %s: %s", p->name, name, why);
    if (deq->dtype != QH_F32 || !same_shape(c->w, deq))
        return qh_error_set(err, QH_E_INVAL, "quantizer %s: tensor %s: weight and dequantized output must be F32 "
                            "of one shape", p->name, name);
    memset(q, 0, sizeof *q);
    qh_error_clear(err);
    qh_status st = p->ops.quantizer.quantize_calib(qz->state, c, q, deq, err);
    if (st != QH_OK) {
        qh_qtensor_clear(q);
        if (err && err->msg[0] == '\0')
            qh_error_set(err, st, "quantize_calib failed (%s)", qh_status_str(st));
        qh_error_prefix(err, "quantizer %s: tensor %s", p->name, name);
        return st;
    }
    char buf[160];
    why = qtensor_problem(q, c->w, buf, sizeof buf);
    int64_t revived = why ? -1 : revived_weight(c, deq);
    if (why || revived >= 0) {
        qh_qtensor_clear(q);
        if (why)
            return qh_error_set(err, QH_E_INTERNAL, "quantizer %s: tensor %s: quantize_calib returned a bad result: %s",
                                p->name, name, why);
        return qh_error_set(err, QH_E_INTERNAL, "quantizer %s: tensor %s: quantize_calib made pruned weight #%lld "
                            "nonzero (masked weights must stay 0)", p->name, name, (long long)revived);
    }
    return QH_OK;
}
