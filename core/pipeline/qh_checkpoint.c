/* qh_checkpoint.c - the per-epoch checkpoint of a training stage, one safetensors file:
 *   <param>            every weight and buffer, as in the model (F32; I64 counters)
 *   <param>_mask       U8, for pruned parameters
 *   opt.m.<param>      SGD momentum buffer or Adam's exp_avg (trainable parameters)
 *   opt.v.<param>      Adam's exp_avg_sq (adam, adamw)
 *   best.<param>       keep_best: the values at the best epoch so far
 *   train.counters     I64 [epoch, step, plateau bad epochs, watch bad epochs, best epoch, stopped,
 *                      samples per epoch, epochs]
 *   train.state        F64 [lr, plateau best, watch best]
 *   train.rng          U64 [4] the stage's generator (each epoch forks it)
 *   train.epochs       F64 [epochs done, 8] per-epoch logs
 * and metadata format = qhost-checkpoint, version, stage, config (the stage's keys, one per line)
 * and, when the stage has an epoch hook with state, hook (its text, e.g. a pruning event log).
 * Every value is stored in binary, so restoring it is exact. */
#include "pipeline/qh_train_impl.h"
#include "qhost/qh_safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_COUNTERS = 8, N_STATE = 3, LOG_COLS = 8 };

/* The stage's keys as "key=value" lines: a checkpoint only continues the configuration that wrote it.
 * `checkpoint` itself is left out (it must be on to resume at all). */
static void config_text(const qh_train_config *cfg, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const qh_param *p = qh_stage_params(QH_STAGE_TRAIN); p->name && used + 1 < size; p++) {
        if (strcmp(p->name, "checkpoint") == 0)
            continue;
        char v[512];
        qh_config_format(p, cfg, v, sizeof v);
        used += (size_t)snprintf(buf + used, size - used, "%s=%s\n", p->name, v);
    }
}

typedef struct view_list {
    qh_tensor *views;
    const qh_tensor **list;
    int32_t n, cap;
} view_list;

/* A tensor header over existing data (nothing is copied). */
static qh_status add_view(view_list *l, const qh_tensor *like, qh_dtype dt, const char *prefix, const char *name,
                          const char *suffix, void *data, qh_error *err)
{
    qh_tensor *t = &l->views[l->n];
    *t = *like;
    t->dtype = dt;
    t->data = data;
    int len = snprintf(t->name, sizeof t->name, "%s%s%s", prefix, name, suffix);
    if (len < 0 || (size_t)len >= sizeof t->name)
        return qh_error_set(err, QH_E_INVAL, "parameter name '%s' is too long for a checkpoint entry", name);
    l->list[l->n] = t;
    l->n++;
    return QH_OK;
}

static qh_tensor shape_of(qh_dtype dt, int32_t ndim, int64_t d0, int64_t d1)
{
    qh_tensor t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    return t;
}

static void pack_scalars(const qhi_train_state *s, const qh_train_config *cfg, int64_t *counters, double *state)
{
    int64_t c[N_COUNTERS] = {s->epoch,        s->step,    s->plateau.bad_epochs, s->watch.bad_epochs,
                             s->best_epoch,   s->stopped, s->n_train,            cfg->epochs};
    double d[N_STATE] = {s->lr, s->plateau.best, s->watch.best};
    memcpy(counters, c, sizeof c);
    memcpy(state, d, sizeof d);
}

static void pack_logs(const qhi_train_state *s, double *out)
{
    for (int64_t e = 0; e < s->epoch; e++) {
        const qh_epoch_log *l = &s->logs[e];
        double row[LOG_COLS] = {l->train_loss, l->lr_end,   l->wall_s,   l->evaluated,
                                l->test.loss,  l->test.top1, l->test.top5, (double)l->test.n};
        memcpy(out + e * LOG_COLS, row, sizeof row);
    }
}

static qh_status add_weights(view_list *l, const qh_graph *g, const qhi_train_state *s, qh_error *err)
{
    qh_status st = QH_OK;
    for (int32_t i = 0; st == QH_OK && i < g->n_weights; i++)
        st = add_view(l, g->weights[i].value, g->weights[i].value->dtype, "", g->weights[i].value->name, "",
                      g->weights[i].value->data, err);
    for (int32_t i = 0; st == QH_OK && i < g->n_weights; i++) {
        const qh_weight *w = &g->weights[i];
        const char *name = w->value->name;
        if (w->mask)
            st = add_view(l, w->value, QH_U8, "", name, "_mask", w->mask, err);
        if (st == QH_OK && s->m[i])
            st = add_view(l, w->value, QH_F32, "opt.m.", name, "", s->m[i], err);
        if (st == QH_OK && s->v && s->v[i])
            st = add_view(l, w->value, QH_F32, "opt.v.", name, "", s->v[i], err);
        if (st == QH_OK && s->best[i])
            st = add_view(l, w->value, w->value->dtype, "best.", name, "", s->best[i]->data, err);
    }
    return st;
}

qh_status qhi_checkpoint_save(const char *path, const char *stage, const qh_graph *g, const qhi_train_state *s,
                              const qh_train_config *cfg, const qh_rng *rng, const char *hook_state, qh_error *err)
{
    view_list l = {0};
    l.cap = 5 * g->n_weights + 8;
    l.views = calloc((size_t)l.cap, sizeof *l.views);
    l.list = calloc((size_t)l.cap, sizeof *l.list);
    double *logs = malloc(sizeof(double) * LOG_COLS * (size_t)(s->epoch + 1));
    char *config = malloc(16384);
    qh_status st = QH_OK;
    if (!l.views || !l.list || !logs || !config) {
        st = qh_error_set(err, QH_E_NOMEM, "out of memory for a checkpoint");
        goto out;
    }
    int64_t counters[N_COUNTERS];
    double state[N_STATE];
    uint64_t rng_state[4];
    memcpy(rng_state, rng->s, sizeof rng_state);
    pack_scalars(s, cfg, counters, state);
    pack_logs(s, logs);
    qh_tensor shapes[4] = {shape_of(QH_I64, 1, N_COUNTERS, 0), shape_of(QH_F64, 1, N_STATE, 0),
                           shape_of(QH_U64, 1, 4, 0), shape_of(QH_F64, 2, s->epoch, LOG_COLS)};
    if ((st = add_weights(&l, g, s, err)) != QH_OK ||
        (st = add_view(&l, &shapes[0], QH_I64, "", "train.counters", "", counters, err)) != QH_OK ||
        (st = add_view(&l, &shapes[1], QH_F64, "", "train.state", "", state, err)) != QH_OK ||
        (st = add_view(&l, &shapes[2], QH_U64, "", "train.rng", "", rng_state, err)) != QH_OK ||
        (st = add_view(&l, &shapes[3], QH_F64, "", "train.epochs", "", logs, err)) != QH_OK)
        goto out;
    config_text(cfg, config, 16384);
    const char *keys[] = {"format", "version", "stage", "config", "hook"};
    const char *vals[] = {"qhost-checkpoint", "1", stage ? stage : "", config, hook_state};
    st = qh_safetensors_write(path, l.list, l.n, keys, vals, hook_state ? 5 : 4, err);
out:
    free(config);
    free(logs);
    free(l.list);
    free(l.views);
    return st;
}

/* ---------------------------------------------------------------- loading */

static const qh_tensor *need(const qh_safetensors *f, const char *path, const char *prefix, const char *name,
                             const char *suffix, const qh_tensor *like, qh_dtype dt, qh_error *err)
{
    char full[QH_NAME_MAX + 16];
    snprintf(full, sizeof full, "%s%s%s", prefix, name, suffix);
    const qh_tensor *t = qh_safetensors_find(f, full);
    char a[96], b[96];
    if (!t) {
        qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' is missing", path, full);
        return NULL;
    }
    bool same = t->dtype == dt && t->ndim == like->ndim;
    for (int32_t d = 0; same && d < t->ndim; d++)
        same = t->shape[d] == like->shape[d];
    if (!same) {
        qh_error_set(err, QH_E_FORMAT, "%s: tensor '%s' is %s %s, the model needs %s %s", path, full,
                     qh_dtype_name(t->dtype), qh_shape_str(t, a, sizeof a), qh_dtype_name(dt),
                     qh_shape_str(like, b, sizeof b));
        return NULL;
    }
    return t;
}

/* The first line where the stored configuration and the current one differ. */
static qh_status config_mismatch(const char *path, const char *stored, const char *now, qh_error *err)
{
    while (*stored && *now) {
        size_t a = strcspn(stored, "\n"), b = strcspn(now, "\n");
        if (a != b || memcmp(stored, now, a) != 0)
            return qh_error_set(err, QH_E_INVAL,
                                "%s was written with %.*s; the stage now has %.*s (delete the checkpoint to start the "
                                "stage over)", path, (int)a, stored, (int)b, now);
        stored += a + (stored[a] == '\n');
        now += b + (now[b] == '\n');
    }
    if (*stored || *now)
        return qh_error_set(err, QH_E_INVAL, "%s was written by another version of the [train] keys", path);
    return QH_OK;
}

static qh_status check_header(const qh_safetensors *f, const char *path, const qh_train_config *cfg,
                              const qh_rng *rng, qh_error *err)
{
    const char *format = qh_safetensors_meta(f, "format"), *config = qh_safetensors_meta(f, "config");
    if (!format || strcmp(format, "qhost-checkpoint") != 0 || !config)
        return qh_error_set(err, QH_E_FORMAT, "%s: not a qhost checkpoint", path);
    char *now = malloc(16384);
    if (!now)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    config_text(cfg, now, 16384);
    qh_status st = config_mismatch(path, config, now, err);
    free(now);
    if (st != QH_OK)
        return st;
    qh_tensor r = shape_of(QH_U64, 1, 4, 0);
    const qh_tensor *t = need(f, path, "", "train.rng", "", &r, QH_U64, err);
    if (!t)
        return QH_E_FORMAT;
    if (memcmp(t->data, rng->s, sizeof rng->s) != 0)
        return qh_error_set(err, QH_E_INVAL, "%s was written with another seed or stage order", path);
    return QH_OK;
}

/* Every tensor the state needs, validated before anything changes. */
static qh_status check_tensors(const qh_safetensors *f, const char *path, const qh_graph *g,
                               const qhi_train_state *s, bool with_best, qh_error *err)
{
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_tensor *v = g->weights[i].value;
        if (!need(f, path, "", v->name, "", v, v->dtype, err) ||
            (s->m[i] && !need(f, path, "opt.m.", v->name, "", v, QH_F32, err)) ||
            (s->v && s->v[i] && !need(f, path, "opt.v.", v->name, "", v, QH_F32, err)) ||
            (with_best && !need(f, path, "best.", v->name, "", v, v->dtype, err)))
            return QH_E_FORMAT;
        char mask[QH_NAME_MAX + 8];
        snprintf(mask, sizeof mask, "%s_mask", v->name);
        if (qh_safetensors_find(f, mask) && !need(f, path, "", v->name, "_mask", v, QH_U8, err))
            return QH_E_FORMAT;
    }
    return QH_OK;
}

static void restore_logs(qhi_train_state *s, const double *rows)
{
    for (int64_t e = 0; e < s->epoch; e++) {
        const double *r = rows + e * LOG_COLS;
        s->logs[e] = (qh_epoch_log){.train_loss = r[0], .lr_end = r[1], .wall_s = r[2], .evaluated = r[3] != 0.0,
                                    .test = {.loss = r[4], .top1 = r[5], .top5 = r[6], .n = (int64_t)r[7]}};
    }
}

static qh_status restore_weights(const qh_safetensors *f, qh_graph *g, qhi_train_state *s, bool with_best,
                                 qh_error *err)
{
    char name[QH_NAME_MAX + 16];
    for (int32_t i = 0; i < g->n_weights; i++) {
        qh_weight *w = &g->weights[i];
        size_t bytes = qh_tensor_nbytes(w->value);
        memcpy(w->value->data, qh_safetensors_find(f, w->value->name)->data, bytes);
        if (s->m[i]) {
            snprintf(name, sizeof name, "opt.m.%s", w->value->name);
            memcpy(s->m[i], qh_safetensors_find(f, name)->data, bytes);
        }
        if (s->v && s->v[i]) {
            snprintf(name, sizeof name, "opt.v.%s", w->value->name);
            memcpy(s->v[i], qh_safetensors_find(f, name)->data, bytes);
        }
        if (with_best) {
            snprintf(name, sizeof name, "best.%s", w->value->name);
            const qh_tensor *b = qh_safetensors_find(f, name);
            if (!s->best[i] && !(s->best[i] = qh_tensor_clone(b, err)))
                return QH_E_NOMEM;
            memcpy(s->best[i]->data, b->data, bytes);
        }
        snprintf(name, sizeof name, "%s_mask", w->value->name);
        const qh_tensor *mask = qh_safetensors_find(f, name);
        free(w->mask);
        w->mask = NULL;
        qh_status st;
        if (mask && (st = qh_weight_set_mask(w, mask->data, err)) != QH_OK)
            return st;
    }
    return QH_OK;
}

qh_status qhi_checkpoint_load(const char *path, qh_graph *g, qhi_train_state *s, const qh_train_config *cfg,
                              const qh_rng *rng, char **hook_state, qh_error *err)
{
    qh_safetensors *f = NULL;
    *hook_state = NULL;
    qh_status st = qh_safetensors_read(path, &f, err);
    if (st != QH_OK)
        return st;
    if ((st = check_header(f, path, cfg, rng, err)) != QH_OK)
        goto out;
    qh_tensor cs = shape_of(QH_I64, 1, N_COUNTERS, 0), ss = shape_of(QH_F64, 1, N_STATE, 0);
    const qh_tensor *ct = need(f, path, "", "train.counters", "", &cs, QH_I64, err);
    const qh_tensor *stt = ct ? need(f, path, "", "train.state", "", &ss, QH_F64, err) : NULL;
    if (!stt) {
        st = QH_E_FORMAT;
        goto out;
    }
    const int64_t *c = ct->data;
    const double *d = stt->data;
    if (c[0] < 1 || c[0] > cfg->epochs || c[7] != cfg->epochs || c[1] < 0) {
        st = qh_error_set(err, QH_E_FORMAT, "%s: epoch %lld of %lld is out of range", path, (long long)c[0],
                          (long long)c[7]);
        goto out;
    }
    if (c[6] != s->n_train) {
        st = qh_error_set(err, QH_E_INVAL, "%s was written for %lld training samples per epoch, this run has %lld",
                          path, (long long)c[6], (long long)s->n_train);
        goto out;
    }
    bool with_best = cfg->keep_best && c[4] >= 0;
    qh_tensor ls = shape_of(QH_F64, 2, c[0], LOG_COLS);
    const qh_tensor *logs = need(f, path, "", "train.epochs", "", &ls, QH_F64, err);
    if (!logs || (st = check_tensors(f, path, g, s, with_best, err)) != QH_OK) {
        st = st != QH_OK ? st : QH_E_FORMAT;
        goto out;
    }
    s->epoch = c[0];
    s->step = c[1];
    s->plateau.bad_epochs = c[2];
    s->watch.bad_epochs = c[3];
    s->best_epoch = c[4];
    s->stopped = c[5] != 0;
    s->lr = d[0];
    s->plateau.best = d[1];
    s->watch.best = d[2];
    const char *hook = qh_safetensors_meta(f, "hook");
    if (!(*hook_state = strdup(hook ? hook : ""))) {
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
        goto out;
    }
    restore_logs(s, logs->data);
    st = restore_weights(f, g, s, with_best, err);
out:
    qh_safetensors_free(f);
    return st;
}
