/* qh_sweep_table.c - the CSV of a sweep: seed 002's columns filled from the stage's keys, the cells of
 * one row, and a reader for a file an earlier, interrupted run left behind. */
#include "pipeline/qh_sweep_impl.h"

#include "config/qh_ini_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* Seed 002's columns in its order (the GPFQ reference's log; research/seeds.md 3.2) and, for a
 * quantize stage, the keys that fill them: for each name in turn the stage type's table, then the
 * plugin's; the first key found is shown, or the second found while the first is 0 (gpfq's
 * linear_scalar = 0 means "use scalar"). The calibration keys of the stage (calib) count only for a
 * data-aware quantizer: a data-free one never reads them. Train and prune stages fill none of the
 * key columns: their swept keys get columns of their own. */
static const struct {
    const char *name;
    qhi_sweep_col_kind kind;
    const char *keys[4];
    bool calib;
} seed_cols[] = {
    {"Model Name", QHI_COL_MODEL, {NULL}, false},
    {"Dataset", QHI_COL_DATASET, {NULL}, false},
    /* seed 002's batch_size: the images each layer's calibration sees */
    {"Quantization Batch Size", QHI_COL_KEY, {"calibration_images", "batch_size", NULL}, true},
    {"Original Top1 Accuracy", QHI_COL_ORIG_TOP1, {NULL}, false},
    {"Quantized Top1 Accuracy", QHI_COL_TOP1, {NULL}, false},
    {"Original Top5 Accuracy", QHI_COL_ORIG_TOP5, {NULL}, false},
    {"Quantized Top5 Accuracy", QHI_COL_TOP5, {NULL}, false},
    {"Bits", QHI_COL_KEY, {"bits", NULL}, false},
    {"MLP_Alphabet_Scalar", QHI_COL_KEY, {"linear_scalar", "mlp_scalar", "scalar", NULL}, false},
    {"CNN_Alphabet_Scalar", QHI_COL_KEY, {"conv_scalar", "cnn_scalar", "scalar", NULL}, false},
    {"MLP_Percentile", QHI_COL_KEY, {"linear_percentile", "mlp_percentile", "percentile", NULL}, false},
    {"CNN_Percentile", QHI_COL_KEY, {"conv_percentile", "cnn_percentile", "percentile", NULL}, false},
    {"Stochastic Quantization", QHI_COL_KEY, {"stochastic", "stochastic_quantization", NULL}, false},
    {"Regularizer", QHI_COL_KEY, {"regularizer", NULL}, false},
    {"Lambda", QHI_COL_KEY, {"lambda", "lamb", NULL}, false},
    {"Original Sparsity", QHI_COL_ORIG_SPARSITY, {NULL}, false},
    {"Quantized Sparsity", QHI_COL_SPARSITY, {NULL}, false},
    {"Retain_rate", QHI_COL_KEY, {"retain_rate", NULL}, true},
    {"Fusion", QHI_COL_KEY, {"fold_batchnorm", "fusion", NULL}, false},
    {"Seed", QHI_COL_SEED, {NULL}, false},
};
enum { N_SEED_COLS = sizeof seed_cols / sizeof seed_cols[0] };

/* ---------------------------------------------------------------- columns */

static void resolve_key(const qh_stage *s, const char *const *keys, bool calib, qhi_sweep_col *c)
{
    if (s->type != QH_STAGE_QUANTIZE)
        return;
    bool data_aware = s->plugin && s->plugin->ops.quantizer.quantize_calib;
    for (int i = 0; i < 4 && keys[i] && !c->fallback.p; i++) {
        qhi_sweep_key k = {qh_param_find(qh_stage_params(s->type), keys[i]), true};
        if (!k.p || (calib && !data_aware))
            k = (qhi_sweep_key){s->plugin ? qh_param_find(s->plugin->params, keys[i]) : NULL, false};
        if (k.p && !c->key.p)
            c->key = k;
        else if (k.p)
            c->fallback = k;
    }
}

static const void *cfg_of(const qhi_sweep_key *k, const void *host_cfg, const void *plugin_cfg)
{
    return k->host ? host_cfg : plugin_cfg;
}

static bool is_zero(const qhi_sweep_key *k, const void *cfg)
{
    const char *at = (const char *)cfg + k->p->offset;
    if (k->p->type == QH_PARAM_INT) {
        int64_t v;
        memcpy(&v, at, sizeof v);
        return v == 0;
    }
    if (k->p->type == QH_PARAM_DOUBLE) {
        double v;
        memcpy(&v, at, sizeof v);
        return v == 0.0;
    }
    return false;
}

/* The key column c shows with these config blocks. */
static const qhi_sweep_key *shown_key(const qhi_sweep_col *c, const void *host_cfg, const void *plugin_cfg)
{
    if (c->fallback.p && is_zero(&c->key, cfg_of(&c->key, host_cfg, plugin_cfg)))
        return &c->fallback;
    return &c->key;
}

static bool is_key(const qhi_sweep_key *k, const qh_sweep_axis *ax)
{
    return k->p && k->host == ax->host && strcmp(k->p->name, ax->key) == 0;
}

static bool is_swept(const qh_stage *s, const qhi_sweep_key *k)
{
    for (int32_t i = 0; i < s->n_axes; i++)
        if (is_key(k, &s->axes[i]))
            return true;
    return false;
}

/* The seed column that shows axis i at every point, else -1. */
static int32_t seed_column_of(const qhi_sweep_table *t, int32_t i)
{
    const qh_stage *s = t->s;
    const qh_sweep_axis *ax = &s->axes[i];
    for (int32_t c = 0; c < N_SEED_COLS; c++) {
        const qhi_sweep_col *col = &t->cols[c];
        if (col->kind != QHI_COL_KEY)
            continue;
        if (is_key(&col->key, ax) ||
            (is_key(&col->fallback, ax) && !is_swept(s, &col->key) &&
             shown_key(col, s->host_cfg, s->plugin_cfg) == &col->fallback))
            return c;
    }
    return -1;
}

qh_status qhi_sweep_table_open(qhi_sweep_table *t, const qh_run *run, const qh_stage *s, qh_error *err)
{
    memset(t, 0, sizeof *t);
    t->run = run;
    t->s = s;
    t->n_points = qhi_sweep_n_points(s);
    t->cols = calloc((size_t)(N_SEED_COLS + s->n_axes + 1), sizeof *t->cols);
    t->axis_col = calloc((size_t)s->n_axes + 1, sizeof *t->axis_col);
    if (!t->cols || !t->axis_col) {
        qhi_sweep_table_close(t);
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    }
    for (int32_t c = 0; c < N_SEED_COLS; c++) {
        qhi_sweep_col *col = &t->cols[t->n_cols++];
        snprintf(col->name, sizeof col->name, "%s", seed_cols[c].name);
        col->kind = seed_cols[c].kind;
        if (col->kind == QHI_COL_KEY)
            resolve_key(s, seed_cols[c].keys, seed_cols[c].calib, col);
    }
    for (int32_t i = 0; i < s->n_axes; i++) {
        t->axis_col[i] = seed_column_of(t, i);
        if (t->axis_col[i] >= 0)
            continue;
        qhi_sweep_col *col = &t->cols[t->n_cols];
        snprintf(col->name, sizeof col->name, "%s", s->axes[i].key);
        col->kind = QHI_COL_KEY;
        col->key.host = s->axes[i].host;
        col->key.p = qh_param_find(col->key.host ? qh_stage_params(s->type) : s->plugin->params, s->axes[i].key);
        t->axis_col[i] = t->n_cols++;
    }
    qhi_sweep_col *wall = &t->cols[t->n_cols++];
    snprintf(wall->name, sizeof wall->name, "Wall Time (s)");
    wall->kind = QHI_COL_WALL;
    snprintf(t->file, sizeof t->file, "sweep-%s.csv", s->name);
    snprintf(t->path, sizeof t->path, "%s/%s", run->outdir, t->file);
    return QH_OK;
}

void qhi_sweep_table_close(qhi_sweep_table *t)
{
    free(t->cols);
    free(t->axis_col);
    memset(t, 0, sizeof *t);
}

/* ---------------------------------------------------------------- cells */

bool qhi_sweep_col_is_result(const qhi_sweep_col *c)
{
    return c->kind == QHI_COL_TOP1 || c->kind == QHI_COL_TOP5 || c->kind == QHI_COL_SPARSITY ||
           c->kind == QHI_COL_WALL;
}

/* A key's value; doubles with 15 digits (a swept 1.05 reads "1.05"), booleans as seed 002's Python
 * wrote them. */
static void key_cell(const qhi_sweep_key *k, const void *cfg, char *buf, size_t size)
{
    const char *at = (const char *)cfg + k->p->offset;
    switch (k->p->type) {
    case QH_PARAM_INT: {
        int64_t v;
        memcpy(&v, at, sizeof v);
        snprintf(buf, size, "%" PRId64, v);
        return;
    }
    case QH_PARAM_DOUBLE: {
        double v;
        memcpy(&v, at, sizeof v);
        snprintf(buf, size, "%.15g", v);
        return;
    }
    case QH_PARAM_BOOL: {
        int v;
        memcpy(&v, at, sizeof v);
        snprintf(buf, size, "%s", v ? "True" : "False");
        return;
    }
    case QH_PARAM_STRING:
    case QH_PARAM_PATH: {
        const char *s;
        memcpy(&s, at, sizeof s);
        snprintf(buf, size, "%s", s ? s : "");
        return;
    }
    case QH_PARAM_ENUM: qh_config_format(k->p, cfg, buf, size); return;
    }
    buf[0] = '\0';
}

void qhi_sweep_cell(const qhi_sweep_table *t, int32_t c, const qhi_sweep_cells *v, char *buf, size_t size)
{
    const qhi_sweep_col *col = &t->cols[c];
    buf[0] = '\0';
    if (qhi_sweep_col_is_result(col) && !v->has_result)
        return;
    switch (col->kind) {
    case QHI_COL_MODEL: snprintf(buf, size, "%s", t->run->pc->model->name); return;
    case QHI_COL_DATASET: snprintf(buf, size, "%s", t->run->pc->dataset->name); return;
    case QHI_COL_SEED: snprintf(buf, size, "%" PRIu64, t->run->seed); return;
    /* accuracies as fractions, as in seed 002's logs */
    case QHI_COL_ORIG_TOP1: snprintf(buf, size, "%.10g", v->orig_top1 / 100.0); return;
    case QHI_COL_ORIG_TOP5: snprintf(buf, size, "%.10g", v->orig_top5 / 100.0); return;
    case QHI_COL_ORIG_SPARSITY: snprintf(buf, size, "%.10g", v->orig_sparsity); return;
    case QHI_COL_TOP1: snprintf(buf, size, "%.10g", v->top1 / 100.0); return;
    case QHI_COL_TOP5: snprintf(buf, size, "%.10g", v->top5 / 100.0); return;
    case QHI_COL_SPARSITY: snprintf(buf, size, "%.10g", v->sparsity); return;
    case QHI_COL_WALL: snprintf(buf, size, "%.3f", v->wall_s); return;
    case QHI_COL_KEY:
        if (col->key.p) {
            const qhi_sweep_key *k = shown_key(col, v->host_cfg, v->plugin_cfg);
            key_cell(k, cfg_of(k, v->host_cfg, v->plugin_cfg), buf, size);
        }
        return;
    }
}

/* ---------------------------------------------------------------- lines */

typedef struct text {
    char *s;
    size_t n, cap;
    bool oom;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->oom)
        return;
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        while (cap < t->n + n + 1)
            cap *= 2;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->oom = true;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = '\0';
}

/* RFC 4180: a field with a comma, a quote or a line break is quoted, its quotes doubled. */
static void put_field(text *t, int32_t i, const char *f)
{
    if (i > 0)
        put(t, ",", 1);
    if (!f[strcspn(f, ",\"\r\n")]) {
        put(t, f, strlen(f));
        return;
    }
    put(t, "\"", 1);
    for (const char *q = f; *q; q++) {
        put(t, q, 1);
        if (*q == '"')
            put(t, q, 1);
    }
    put(t, "\"", 1);
}

static char *finish(text *t)
{
    put(t, "\n", 1);
    if (t->oom) {
        free(t->s);
        return NULL;
    }
    return t->s;
}

char *qhi_sweep_header_line(const qhi_sweep_table *t)
{
    text out = {0};
    for (int32_t c = 0; c < t->n_cols; c++)
        put_field(&out, c, t->cols[c].name);
    return finish(&out);
}

char *qhi_sweep_row_line(const qhi_sweep_table *t, const qhi_sweep_cells *v)
{
    text out = {0};
    char cell[512];
    for (int32_t c = 0; c < t->n_cols; c++) {
        qhi_sweep_cell(t, c, v, cell, sizeof cell);
        put_field(&out, c, cell);
    }
    return finish(&out);
}

/* ---------------------------------------------------------------- reading */

typedef struct fields {
    int32_t n, cap;
    char **f;
} fields;

static bool add_field(fields *r, const char *s, size_t n)
{
    if (r->n == r->cap) {
        int32_t cap = r->cap ? 2 * r->cap : 32;
        char **grown = realloc(r->f, (size_t)cap * sizeof *grown);
        if (!grown)
            return false;
        r->f = grown;
        r->cap = cap;
    }
    char *copy = malloc(n + 1);
    if (!copy)
        return false;
    memcpy(copy, s, n);
    copy[n] = '\0';
    r->f[r->n++] = copy;
    return true;
}

/* Splits one record starting at *pos; returns false when the text ends before its '\n' (a torn line)
 * or memory runs out (*oom). Quoted fields may hold commas, doubled quotes and line breaks. */
static bool parse_record(const char *s, size_t len, size_t *pos, fields *r, bool *oom)
{
    size_t i = *pos;
    char *buf = malloc(len - i + 1);
    if (!buf)
        return !(*oom = true);
    size_t n = 0;
    bool quoted = false;
    for (; i < len; i++) {
        char ch = s[i];
        if (quoted) {
            if (ch == '"' && i + 1 < len && s[i + 1] == '"')
                buf[n++] = s[++i];
            else if (ch == '"')
                quoted = false;
            else
                buf[n++] = ch;
        } else if (ch == '"') {
            quoted = true;
        } else if (ch == ',' || ch == '\n') {
            if (n > 0 && buf[n - 1] == '\r' && ch == '\n')
                n--;
            if (!add_field(r, buf, n)) {
                free(buf);
                return !(*oom = true);
            }
            n = 0;
            if (ch == '\n') {
                free(buf);
                *pos = i + 1;
                return true;
            }
        } else {
            buf[n++] = ch;
        }
    }
    free(buf);
    return false;
}

static void free_fields(char **f, int32_t n)
{
    for (int32_t i = 0; f && i < n; i++)
        free(f[i]);
    free(f);
}

void qhi_csv_free(qhi_csv *csv)
{
    free_fields(csv->header, csv->n_header);
    for (int32_t i = 0; i < csv->n_rows; i++)
        free_fields(csv->rows[i], csv->n_fields[i]);
    free(csv->rows);
    free(csv->n_fields);
    memset(csv, 0, sizeof *csv);
}

static bool add_row(qhi_csv *csv, fields *r)
{
    char ***rows = realloc(csv->rows, (size_t)(csv->n_rows + 1) * sizeof *rows);
    if (rows)
        csv->rows = rows;
    int32_t *nf = realloc(csv->n_fields, (size_t)(csv->n_rows + 1) * sizeof *nf);
    if (nf)
        csv->n_fields = nf;
    if (!rows || !nf)
        return false;
    csv->rows[csv->n_rows] = r->f;
    csv->n_fields[csv->n_rows++] = r->n;
    return true;
}

qh_status qhi_csv_read(const char *path, qhi_csv *csv, qh_error *err)
{
    memset(csv, 0, sizeof *csv);
    size_t len = 0, pos = 0;
    char *s = NULL;
    if (!qh_ini_read_text(path, &s, &len))
        return qh_error_set(err, errno == ENOMEM ? QH_E_NOMEM : QH_E_IO, "%s: %s", path, strerror(errno));
    bool oom = false;
    while (pos < len && !oom) {
        fields r = {0};
        size_t start = pos;
        if (!parse_record(s, len, &pos, &r, &oom)) {
            free_fields(r.f, r.n);
            csv->torn = !oom && start < len;
            break;
        }
        csv->good_bytes = pos;
        if (!csv->header) {
            csv->header = r.f;
            csv->n_header = r.n;
        } else if (!add_row(csv, &r)) {
            free_fields(r.f, r.n);
            oom = true;
        }
    }
    free(s);
    if (oom) {
        qhi_csv_free(csv);
        return qh_error_set(err, QH_E_NOMEM, "%s: out of memory", path);
    }
    return QH_OK;
}

int32_t qhi_csv_column(const qhi_csv *csv, const char *name)
{
    for (int32_t i = 0; i < csv->n_header; i++)
        if (strcmp(csv->header[i], name) == 0)
            return i;
    return -1;
}

int32_t qhi_sweep_best_row(const qhi_csv *csv, int32_t top1_col)
{
    int32_t best = -1;
    double best_v = 0.0;
    for (int32_t i = 0; top1_col >= 0 && i < csv->n_rows; i++) {
        if (top1_col >= csv->n_fields[i])
            continue;
        double v = strtod(csv->rows[i][top1_col], NULL);
        if (best < 0 || v > best_v) { /* strictly above: the first of equals stays */
            best = i;
            best_v = v;
        }
    }
    return best;
}
