/* qh_sweep.c - runs a sweep stage (see qh_sweep.h): each point of the Cartesian product of the
 * stage's list-valued keys starts from the state the stage received (weights, buffers, masks,
 * quantized tensors), runs the stage with that point's values, is evaluated on the test split and
 * appends one CSV row, written and fsync'ed before the next point starts. */
#include "pipeline/qh_sweep_impl.h"

#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qhost/qh_fileio.h"
#include "base/qh_timing.h"

enum { EVAL_BATCH = 256 };

/* ---------------------------------------------------------------- the state a stage receives */

typedef struct model_state {
    int32_t n;
    size_t *bytes;
    void **values;    /* bytes of every weight and buffer */
    uint8_t **masks;  /* NULL: dense */
    qh_qtensor *qt;   /* deep copies of run->qt */
} model_state;

/* Copies every tensor a qtensor owns (its other fields are plain values). */
static qh_status qtensor_copy(const qh_qtensor *src, qh_qtensor *dst, qh_error *err)
{
    *dst = *src;
    qh_tensor **to[] = {&dst->codes, &dst->scale, &dst->zero, &dst->codebook, &dst->perm};
    for (int i = 0; i < 5; i++)
        *to[i] = NULL;
    const qh_tensor *from[] = {src->codes, src->scale, src->zero, src->codebook, src->perm};
    for (int i = 0; i < 5; i++) {
        if (from[i] && !(*to[i] = qh_tensor_clone(from[i], err))) {
            qh_qtensor_clear(dst);
            return QH_E_NOMEM;
        }
    }
    return QH_OK;
}

static void state_free(model_state *ms)
{
    for (int32_t i = 0; i < ms->n; i++) {
        free(ms->values ? ms->values[i] : NULL);
        free(ms->masks ? ms->masks[i] : NULL);
        if (ms->qt)
            qh_qtensor_clear(&ms->qt[i]);
    }
    free(ms->bytes);
    free(ms->values);
    free(ms->masks);
    free(ms->qt);
    memset(ms, 0, sizeof *ms);
}

static qh_status state_save(const qh_run *run, model_state *ms, qh_error *err)
{
    const qh_graph *g = run->g;
    ms->n = g->n_weights;
    ms->bytes = calloc((size_t)ms->n + 1, sizeof *ms->bytes);
    ms->values = calloc((size_t)ms->n + 1, sizeof *ms->values);
    ms->masks = calloc((size_t)ms->n + 1, sizeof *ms->masks);
    ms->qt = calloc((size_t)ms->n + 1, sizeof *ms->qt);
    bool ok = ms->bytes && ms->values && ms->masks && ms->qt;
    for (int32_t i = 0; ok && i < ms->n; i++) {
        const qh_weight *w = &g->weights[i];
        size_t nb = ms->bytes[i] = qh_tensor_nbytes(w->value);
        ok = (ms->values[i] = malloc(nb + 1)) != NULL;
        if (ok)
            memcpy(ms->values[i], w->value->data, nb);
        if (ok && w->mask && (ok = (ms->masks[i] = malloc((size_t)qh_tensor_numel(w->value) + 1)) != NULL))
            memcpy(ms->masks[i], w->mask, (size_t)qh_tensor_numel(w->value));
        if (ok && run->qt[i].bits > 0)
            ok = qtensor_copy(&run->qt[i], &ms->qt[i], err) == QH_OK;
    }
    if (!ok) {
        state_free(ms);
        return qh_error_set(err, QH_E_NOMEM, "out of memory for the sweep's copy of the model");
    }
    return QH_OK;
}

static qh_status state_restore(qh_run *run, const model_state *ms, qh_error *err)
{
    qh_graph *g = run->g;
    bool same = g->n_weights == ms->n;
    for (int32_t i = 0; same && i < ms->n; i++)
        same = qh_tensor_nbytes(g->weights[i].value) == ms->bytes[i];
    if (!same) /* e.g. a prune stage that rebuilt the model without its pruned channels */
        return qh_error_set(err, QH_E_UNSUPPORTED, "the stage changed the model's layers, so the next point cannot "
                            "start from the model the stage received");
    for (int32_t i = 0; i < ms->n; i++) {
        qh_weight *w = &g->weights[i];
        int64_t numel = qh_tensor_numel(w->value);
        memcpy(w->value->data, ms->values[i], qh_tensor_nbytes(w->value));
        if (!ms->masks[i]) {
            free(w->mask); /* pruned by the last point */
            w->mask = NULL;
        } else {
            if (!w->mask && !(w->mask = malloc((size_t)numel + 1)))
                return qh_error_set(err, QH_E_NOMEM, "out of memory");
            memcpy(w->mask, ms->masks[i], (size_t)numel);
        }
        qh_qtensor_clear(&run->qt[i]);
        if (ms->qt[i].bits > 0 && qtensor_copy(&ms->qt[i], &run->qt[i], err) != QH_OK)
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    return QH_OK;
}

/* Seed 002's sparsity: exact zeros over every conv and linear weight and bias. */
static double seed_sparsity(const qh_graph *g)
{
    int64_t zeros = 0, total = 0;
    for (int32_t i = 0; i < g->n_weights; i++) {
        const qh_weight *w = &g->weights[i];
        qh_op op = g->nodes[w->node].op;
        if (w->is_buffer || (op != QH_OP_CONV2D && op != QH_OP_LINEAR))
            continue;
        zeros += qh_tensor_count_zeros(w->value);
        total += qh_tensor_numel(w->value);
    }
    return total ? (double)zeros / (double)total : 0.0;
}

/* ---------------------------------------------------------------- one point's configuration */

static size_t host_cfg_size(qh_stage_type t)
{
    switch (t) {
    case QH_STAGE_TRAIN: return sizeof(qh_train_config);
    case QH_STAGE_EVALUATE: return sizeof(qh_evaluate_config);
    case QH_STAGE_PRUNE: return sizeof(qh_prune_config);
    case QH_STAGE_QUANTIZE: return sizeof(qh_quantize_config);
    case QH_STAGE_EXPORT: return sizeof(qh_export_config);
    case QH_STAGE_TYPE_COUNT: break;
    }
    return 0;
}

/* A config block equal to src, owning copies of its strings. */
static void *cfg_clone(const qh_param *params, const void *src, size_t size)
{
    char *dst = malloc(size ? size : 1);
    if (!dst)
        return NULL;
    memcpy(dst, src, size);
    char *none = NULL;
    for (const qh_param *p = params; p && p->name; p++) /* nothing owned yet: safe to free */
        if (p->type == QH_PARAM_STRING || p->type == QH_PARAM_PATH)
            memcpy(dst + p->offset, &none, sizeof none);
    for (const qh_param *p = params; p && p->name; p++) {
        if (p->type != QH_PARAM_STRING && p->type != QH_PARAM_PATH)
            continue;
        char *s;
        memcpy(&s, (const char *)src + p->offset, sizeof s);
        if (s && !(s = strdup(s))) {
            qh_config_free(params, dst);
            return NULL;
        }
        memcpy(dst + p->offset, &s, sizeof s);
    }
    return dst;
}

/* The config blocks of stage s at one point. */
typedef struct point_cfg {
    void *host_cfg, *plugin_cfg;
} point_cfg;

static void point_close(const qh_stage *s, point_cfg *pt)
{
    qh_config_free(qh_stage_params(s->type), pt->host_cfg);
    if (s->plugin)
        qh_config_free(s->plugin->params, pt->plugin_cfg);
    memset(pt, 0, sizeof *pt);
}

/* Copies of s's config blocks with the values of point k. */
static qh_status point_open(const qh_stage *s, int64_t k, point_cfg *pt, qh_error *err)
{
    pt->host_cfg = cfg_clone(qh_stage_params(s->type), s->host_cfg, host_cfg_size(s->type));
    pt->plugin_cfg = s->plugin ? cfg_clone(s->plugin->params, s->plugin_cfg, s->plugin->config_size) : NULL;
    if (!pt->host_cfg || (s->plugin && !pt->plugin_cfg)) {
        point_close(s, pt);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    qh_status st = qhi_sweep_apply(s, k, pt->host_cfg, pt->plugin_cfg, err);
    /* a train checkpoint belongs to one point: a sweep resumes point by point instead */
    if (st == QH_OK && s->type == QH_STAGE_TRAIN)
        ((qh_train_config *)pt->host_cfg)->checkpoint = 0;
    if (st != QH_OK)
        point_close(s, pt);
    return st;
}

/* ---------------------------------------------------------------- the sweep */

typedef struct sweep {
    qh_run *run;
    const qh_stage *s;
    qhi_stage_fn run_stage;
    qhi_sweep_table t;
    model_state input;   /* the state the stage received */
    qh_eval_result orig; /* its evaluation */
    double orig_sparsity;
    int64_t n_done;      /* rows in the CSV */
    int fd;              /* the CSV, open for appending */
} sweep;

static qh_status evaluate(qh_run *run, qh_eval_result *r, qh_error *err)
{
    return qh_evaluate(run->g, &run->ds, QH_SPLIT_TEST, run->pc->dataset_limits->test_limit, EVAL_BATCH,
                       run->opt->progress, r, err);
}

/* Runs the stage with the blocks of a point. The runner and its helpers know a stage by its place in
 * pc->stages (its metrics are run->metrics at the same index), so the point's blocks take the place
 * of the stage's own for the call, and are put back after it. */
static qh_status run_with(const sweep *sw, const point_cfg *pt, qh_stage_metrics *m, qh_error *err)
{
    qh_stage *s = (qh_stage *)sw->s;
    void *host_cfg = s->host_cfg, *plugin_cfg = s->plugin_cfg;
    s->host_cfg = pt->host_cfg;
    s->plugin_cfg = pt->plugin_cfg;
    qh_status st = sw->run_stage(sw->run, s, m, err);
    s->host_cfg = host_cfg;
    s->plugin_cfg = plugin_cfg;
    return st;
}

static qhi_sweep_cells context_cells(const sweep *sw, const point_cfg *pt)
{
    return (qhi_sweep_cells){.host_cfg = pt->host_cfg, .plugin_cfg = pt->plugin_cfg, .orig_top1 = sw->orig.top1,
                             .orig_top5 = sw->orig.top5, .orig_sparsity = sw->orig_sparsity};
}

static qh_status write_all(int fd, const char *s, size_t n, const char *path, qh_error *err)
{
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0)
            return qh_error_set(err, QH_E_IO, "%s: write failed", path);
        s += w;
        n -= (size_t)w;
    }
    /* the row is the point's only record: it must survive a crash right after */
    return fsync(fd) == 0 ? QH_OK : qh_error_set(err, QH_E_IO, "%s: fsync failed", path);
}

/* The point's run: its stage, then the evaluation; appends its row. */
static qh_status run_point(sweep *sw, int64_t k, qh_error *err)
{
    point_cfg pt;
    qh_stage_metrics *pm = calloc(1, sizeof *pm); /* large (per-event arrays): not on the stack */
    qh_eval_result r = {0};
    char what[512];
    qhi_sweep_describe(sw->s, k, what, sizeof what);
    qh_status st = pm ? state_restore(sw->run, &sw->input, err) : qh_error_set(err, QH_E_NOMEM, "out of memory");
    if (st == QH_OK)
        st = point_open(sw->s, k, &pt, err);
    if (st != QH_OK) {
        free(pm);
        return st;
    }
    double t0 = qh_now_s();
    st = run_with(sw, &pt, pm, err);
    free(pm->layers);
    free(pm->epochs);
    free(pm);
    if (st == QH_OK)
        st = evaluate(sw->run, &r, err);
    qhi_sweep_cells v = context_cells(sw, &pt);
    v.has_result = true;
    v.top1 = r.top1;
    v.top5 = r.top5;
    v.sparsity = seed_sparsity(sw->run->g);
    v.wall_s = qh_now_s() - t0;
    char *line = st == QH_OK ? qhi_sweep_row_line(&sw->t, &v) : NULL;
    if (st == QH_OK && !line)
        st = qh_error_set(err, QH_E_NOMEM, "out of memory");
    if (st == QH_OK)
        st = write_all(sw->fd, line, strlen(line), sw->t.path, err);
    free(line);
    point_close(sw->s, &pt);
    if (st != QH_OK) {
        qh_error_prefix(err, "sweep point %lld (%s)", (long long)k + 1, what);
        return st;
    }
    qh_log(QH_LOG_INFO, sw->s->name, "point %lld/%lld (%s): top-1 %.2f %%, top-5 %.2f %%, sparsity %.2f %% (%.1f s)",
           (long long)k + 1, (long long)sw->t.n_points, what, r.top1, r.top5, 100.0 * v.sparsity, v.wall_s);
    return QH_OK;
}

/* ---------------------------------------------------------------- the CSV of an interrupted run */

static qh_status check_header(const sweep *sw, const qhi_csv *csv, qh_error *err)
{
    const qhi_sweep_table *t = &sw->t;
    int32_t n = csv->n_header > t->n_cols ? csv->n_header : t->n_cols;
    for (int32_t c = 0; c < n; c++) {
        const char *have = c < csv->n_header ? csv->header[c] : NULL, *want = c < t->n_cols ? t->cols[c].name : NULL;
        if (have && want && strcmp(have, want) == 0)
            continue;
        if (!have)
            return qh_error_set(err, QH_E_CONFIG, "%s: column %d ('%s') is missing: the file comes from another sweep; "
                                "move it away to start this one over", t->path, c + 1, want);
        if (!want)
            return qh_error_set(err, QH_E_CONFIG, "%s: column %d ('%s') is not one this sweep writes: the file comes "
                                "from another sweep; move it away to start this one over", t->path, c + 1, have);
        return qh_error_set(err, QH_E_CONFIG, "%s: column %d is '%s', this sweep writes '%s' there: the file comes "
                            "from another sweep; move it away to start this one over", t->path, c + 1, have, want);
    }
    return QH_OK;
}

/* A finished row must say what this run would write for its point, apart from what was measured. */
static qh_status check_row(const sweep *sw, const qhi_csv *csv, int32_t i, qh_error *err)
{
    const qhi_sweep_table *t = &sw->t;
    int line = i + 2;
    if (i >= t->n_points)
        return qh_error_set(err, QH_E_CONFIG, "%s:%d: more rows than the %lld points of the sweep of [%s]: the file "
                            "comes from another sweep; move it away to start this one over", t->path, line,
                            (long long)t->n_points, sw->s->name);
    if (csv->n_fields[i] != t->n_cols)
        return qh_error_set(err, QH_E_FORMAT, "%s:%d: %d fields, the header has %d", t->path, line, csv->n_fields[i],
                            t->n_cols);
    point_cfg pt;
    qh_status st = point_open(sw->s, i, &pt, err);
    if (st != QH_OK)
        return st;
    qhi_sweep_cells v = context_cells(sw, &pt);
    char want[512];
    for (int32_t c = 0; st == QH_OK && c < t->n_cols; c++) {
        if (qhi_sweep_col_is_result(&t->cols[c]))
            continue;
        qhi_sweep_cell(t, c, &v, want, sizeof want);
        if (strcmp(csv->rows[i][c], want) != 0)
            st = qh_error_set(err, QH_E_CONFIG, "%s:%d: column '%s' is '%s', but point %d of this sweep has '%s': the "
                              "rows come from another sweep or another input model; move the file away to start "
                              "over", t->path, line, t->cols[c].name, csv->rows[i][c], i + 1, want);
    }
    point_close(sw->s, &pt);
    return st;
}

/* Continues the CSV of an interrupted run: drops a torn last line, checks what is there, counts the
 * finished points. *fresh: there is nothing to continue (no file, or not even a complete header). */
static qh_status resume_csv(sweep *sw, bool *fresh, qh_error *err)
{
    qhi_csv csv;
    *fresh = access(sw->t.path, F_OK) != 0;
    if (*fresh)
        return QH_OK;
    qh_status st = qhi_csv_read(sw->t.path, &csv, err);
    if (st == QH_OK && csv.n_header == 0) { /* not even the header was complete */
        *fresh = true;
        qhi_csv_free(&csv);
        return QH_OK;
    }
    if (st == QH_OK)
        st = check_header(sw, &csv, err);
    for (int32_t i = 0; st == QH_OK && i < csv.n_rows; i++)
        st = check_row(sw, &csv, i, err);
    if (st == QH_OK && csv.torn) {
        qh_log(QH_LOG_WARN, sw->s->name, "%s: dropping its incomplete last line (an interrupted write)", sw->t.path);
        if (truncate(sw->t.path, (off_t)csv.good_bytes) != 0)
            st = qh_error_set(err, QH_E_IO, "%s: cannot drop its incomplete last line", sw->t.path);
    }
    if (st == QH_OK)
        sw->n_done = csv.n_rows;
    qhi_csv_free(&csv);
    return st;
}

/* Opens the CSV for appending: continued with --resume, else started anew (atomically, header only). */
static qh_status open_csv(sweep *sw, qh_error *err)
{
    bool fresh = true;
    qh_status st = sw->run->opt->resume ? resume_csv(sw, &fresh, err) : QH_OK;
    if (st != QH_OK)
        return st;
    if (fresh) {
        char *header = qhi_sweep_header_line(&sw->t);
        if (!header)
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        st = qh_atomic_write(sw->t.path, header, strlen(header), err);
        free(header);
        if (st != QH_OK)
            return st;
    }
    sw->fd = open(sw->t.path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (sw->fd < 0)
        return qh_error_set(err, QH_E_IO, "%s: cannot open for appending", sw->t.path);
    if (sw->n_done > 0)
        qh_log(QH_LOG_INFO, sw->s->name, "%lld of %lld points already in %s; continuing with point %lld",
               (long long)sw->n_done, (long long)sw->t.n_points, sw->t.path, (long long)sw->n_done + 1);
    return QH_OK;
}

/* QHOST_TEST_STOP_AFTER_POINT=N (a test hook, docs/pipeline-reference.md): a sweep fails with
 * "stopped" once its CSV holds N rows. */
static int64_t stop_after_point(void)
{
    const char *v = getenv("QHOST_TEST_STOP_AFTER_POINT");
    char *end;
    long long n = v ? strtoll(v, &end, 10) : 0;
    return v && *v && !*end && n > 0 ? (int64_t)n : 0;
}

/* The best point, from the CSV as written: highest test top-1, the first of equals. */
static qh_status best_point(const sweep *sw, int64_t *best, double *top1, qh_error *err)
{
    qhi_csv csv;
    qh_status st = qhi_csv_read(sw->t.path, &csv, err);
    if (st != QH_OK)
        return st;
    int32_t col = qhi_csv_column(&csv, "Quantized Top1 Accuracy");
    int32_t b = qhi_sweep_best_row(&csv, col);
    if (b < 0 || csv.n_rows != sw->t.n_points)
        st = qh_error_set(err, QH_E_INTERNAL, "%s: %d rows for %lld points", sw->t.path, csv.n_rows,
                          (long long)sw->t.n_points);
    else
        *top1 = 100.0 * strtod(csv.rows[b][col], NULL);
    *best = b;
    qhi_csv_free(&csv);
    return st;
}

/* Empties m, keeping what the runner set before the stage: the points may have added to it (the
 * prune helpers record their events in the stage's own metrics). */
static void reset_metrics(qh_stage_metrics *m)
{
    char name[sizeof m->name];
    const char *type = m->type;
    memcpy(name, m->name, sizeof name);
    free(m->layers);
    free(m->epochs);
    memset(m, 0, sizeof *m);
    memcpy(m->name, name, sizeof name);
    m->type = type;
}

/* The best point runs once more (every point is deterministic), so its model file, per-layer metrics
 * and quantized tensors come from an ordinary run of the stage, also when it ran before a resume. */
static qh_status rerun_best(sweep *sw, qh_stage_metrics *m, qh_error *err)
{
    int64_t best = 0;
    double top1 = 0.0;
    qh_status st = best_point(sw, &best, &top1, err);
    char what[512];
    qhi_sweep_describe(sw->s, best, what, sizeof what);
    point_cfg pt;
    if (st == QH_OK && (st = state_restore(sw->run, &sw->input, err)) == QH_OK &&
        (st = point_open(sw->s, best, &pt, err)) == QH_OK) {
        qh_log(QH_LOG_INFO, sw->s->name, "best: point %lld (%s), top-1 %.2f %%; running it again for the pipeline",
               (long long)best + 1, what, top1);
        reset_metrics(m);
        st = run_with(sw, &pt, m, err);
        point_close(sw->s, &pt);
    }
    if (st == QH_OK && (st = evaluate(sw->run, &m->eval, err)) == QH_OK) {
        m->evaluated = true;
        m->split = "test";
        if (fabs(m->eval.top1 - top1) > 1e-6)
            qh_log(QH_LOG_WARN, sw->s->name, "the best point gave top-1 %.4f %% when run again, %.4f %% in the sweep",
                   m->eval.top1, top1);
    }
    return st;
}

qh_status qhi_sweep_stage(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qhi_stage_fn run_stage,
                          qh_error *err)
{
    sweep sw = {.run = run, .s = s, .run_stage = run_stage, .fd = -1};
    qh_status st = qhi_sweep_table_open(&sw.t, run, s, err);
    if (st == QH_OK && sw.t.n_points < 1)
        st = qh_error_set(err, QH_E_INTERNAL, "[%s]: the sweep has no points", s->name);
    if (st == QH_OK)
        st = state_save(run, &sw.input, err);
    if (st == QH_OK && (st = evaluate(run, &sw.orig, err)) == QH_OK) {
        sw.orig_sparsity = seed_sparsity(run->g);
        qh_log(QH_LOG_INFO, s->name, "sweep of %lld points into %s; the model it starts from: top-1 %.2f %%, "
               "top-5 %.2f %%", (long long)sw.t.n_points, sw.t.path, sw.orig.top1, sw.orig.top5);
    }
    if (st == QH_OK)
        st = open_csv(&sw, err);
    int64_t stop = stop_after_point();
    for (int64_t k = sw.n_done; st == QH_OK && k < sw.t.n_points; k++) {
        st = run_point(&sw, k, err);
        if (st == QH_OK && stop > 0 && k + 1 >= stop && k + 1 < sw.t.n_points)
            st = qh_error_set(err, QH_E_ABORTED, "stopped after sweep point %lld (QHOST_TEST_STOP_AFTER_POINT)",
                              (long long)k + 1);
    }
    if (sw.fd >= 0)
        close(sw.fd);
    if (st == QH_OK)
        st = rerun_best(&sw, m, err);
    state_free(&sw.input);
    qhi_sweep_table_close(&sw.t);
    return st;
}
