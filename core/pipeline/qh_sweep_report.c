/* qh_sweep_report.c - what a finished sweep contributes to metrics.json and report.md, read back
 * from its CSV (so a resumed run reports the points of the earlier run too). */
#include "pipeline/qh_sweep_impl.h"

#include <stdlib.h>
#include <string.h>

enum { REPORT_MAX_ROWS = 100, REPORT_TOP_ROWS = 20 };

typedef struct sweep_view {
    const qh_stage *s;
    qhi_sweep_table t;
    qhi_csv csv;
    int32_t top1, top5, sparsity, wall, orig_top1, orig_top5; /* CSV columns, -1 when absent */
    int32_t *axis;       /* CSV column of each swept key */
    int32_t best;        /* row */
} sweep_view;

static void view_close(sweep_view *v)
{
    qhi_csv_free(&v->csv);
    qhi_sweep_table_close(&v->t);
    free(v->axis);
}

static bool view_open(sweep_view *v, const qh_run *run, int32_t stage)
{
    memset(v, 0, sizeof *v);
    if (stage < 0 || stage >= run->pc->n_stages || run->pc->stages[stage].n_axes == 0)
        return false;
    v->s = &run->pc->stages[stage];
    qh_error err;
    if (qhi_sweep_table_open(&v->t, run, v->s, &err) != QH_OK || qhi_csv_read(v->t.path, &v->csv, &err) != QH_OK ||
        !(v->axis = calloc((size_t)v->s->n_axes, sizeof *v->axis))) {
        view_close(v);
        return false;
    }
    v->top1 = qhi_csv_column(&v->csv, "Quantized Top1 Accuracy");
    v->top5 = qhi_csv_column(&v->csv, "Quantized Top5 Accuracy");
    v->sparsity = qhi_csv_column(&v->csv, "Quantized Sparsity");
    v->wall = qhi_csv_column(&v->csv, "Wall Time (s)");
    v->orig_top1 = qhi_csv_column(&v->csv, "Original Top1 Accuracy");
    v->orig_top5 = qhi_csv_column(&v->csv, "Original Top5 Accuracy");
    for (int32_t i = 0; i < v->s->n_axes; i++)
        v->axis[i] = qhi_csv_column(&v->csv, v->t.cols[v->t.axis_col[i]].name);
    v->best = qhi_sweep_best_row(&v->csv, v->top1);
    return true;
}

static const char *field(const sweep_view *v, int32_t row, int32_t col)
{
    return row >= 0 && col >= 0 && col < v->csv.n_fields[row] ? v->csv.rows[row][col] : "";
}

/* A fraction from the CSV as a percentage. */
static double pct(const sweep_view *v, int32_t row, int32_t col)
{
    return 100.0 * strtod(field(v, row, col), NULL);
}

json_t *qhi_sweep_json(const qh_run *run, int32_t stage)
{
    sweep_view v;
    if (!view_open(&v, run, stage))
        return NULL;
    json_t *o = json_object(), *keys = json_array();
    json_object_set_new(o, "csv", json_string(v.t.file));
    json_object_set_new(o, "points", json_integer(v.t.n_points));
    json_object_set_new(o, "rows", json_integer(v.csv.n_rows));
    for (int32_t i = 0; i < v.s->n_axes; i++)
        json_array_append_new(keys, json_string(v.s->axes[i].key));
    json_object_set_new(o, "keys", keys);
    if (v.best >= 0) {
        json_t *b = json_object(), *vals = json_object();
        json_object_set_new(b, "point", json_integer(v.best + 1));
        for (int32_t i = 0; i < v.s->n_axes; i++)
            json_object_set_new(vals, v.s->axes[i].key, json_string(field(&v, v.best, v.axis[i])));
        json_object_set_new(b, "values", vals);
        json_object_set_new(b, "top1", json_real(pct(&v, v.best, v.top1)));
        json_object_set_new(b, "top5", json_real(pct(&v, v.best, v.top5)));
        json_object_set_new(b, "sparsity", json_real(strtod(field(&v, v.best, v.sparsity), NULL)));
        json_object_set_new(o, "best", b);
    }
    view_close(&v);
    return o;
}

static void report_row(FILE *f, const sweep_view *v, int32_t r)
{
    bool best = r == v->best;
    fprintf(f, best ? "| **%d** |" : "| %d |", r + 1);
    for (int32_t i = 0; i < v->s->n_axes; i++)
        fprintf(f, " %s |", field(v, r, v->axis[i]));
    fprintf(f, " %.2f | %.2f | %.2f | %s |\n", pct(v, r, v->top1), pct(v, r, v->top5), pct(v, r, v->sparsity),
            field(v, r, v->wall));
}

typedef struct ranked {
    double top1;
    int32_t row;
} ranked;

/* Higher top-1 first; equals in point order (qsort is not stable). */
static int by_top1(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    return x->top1 != y->top1 ? (x->top1 < y->top1 ? 1 : -1) : (x->row > y->row) - (x->row < y->row);
}

static void report_rows(FILE *f, sweep_view *v)
{
    int32_t n = v->csv.n_rows;
    ranked *order = malloc(sizeof(ranked) * ((size_t)n + 1));
    if (!order)
        return;
    for (int32_t i = 0; i < n; i++)
        order[i] = (ranked){pct(v, i, v->top1), i};
    if (n > REPORT_MAX_ROWS) { /* a long sweep: its best points here, all of them in the CSV */
        qsort(order, (size_t)n, sizeof *order, by_top1);
        n = REPORT_TOP_ROWS;
        fprintf(f, "The %d best points by top-1 (all %d are in the CSV):\n\n", n, v->csv.n_rows);
    }
    fprintf(f, "| point |");
    for (int32_t i = 0; i < v->s->n_axes; i++)
        fprintf(f, " %s |", v->s->axes[i].key);
    fprintf(f, " top-1 %% | top-5 %% | sparsity %% | wall s |\n|---:|");
    for (int32_t i = 0; i < v->s->n_axes; i++)
        fprintf(f, "---|");
    fprintf(f, "---:|---:|---:|---:|\n");
    for (int32_t i = 0; i < n; i++)
        report_row(f, v, order[i].row);
    free(order);
}

/* With two or more keys: one line per value of the first key, the best and the worst point over
 * the others (e.g. seed 002's bits x scalar grid: the best scalar at each bit width). */
static void report_by_first_key(FILE *f, const sweep_view *v)
{
    const qh_sweep_axis *a = &v->s->axes[0];
    if (v->s->n_axes < 2 || v->top1 < 0 || v->axis[0] < 0)
        return;
    fprintf(f, "By %s, over the other keys:\n\n| %s | points | best top-1 %% | at |", a->key, a->key);
    fprintf(f, " worst top-1 %% | at |\n|---|---:|---:|---|---:|---|\n");
    for (int32_t k = 0; k < a->n_values; k++) {
        int32_t best = -1, worst = -1, n = 0;
        for (int32_t r = 0; r < v->csv.n_rows; r++) {
            if (strcmp(field(v, r, v->axis[0]), a->values[k]) != 0)
                continue;
            n++;
            if (best < 0 || pct(v, r, v->top1) > pct(v, best, v->top1))
                best = r;
            if (worst < 0 || pct(v, r, v->top1) < pct(v, worst, v->top1))
                worst = r;
        }
        if (n == 0)
            continue;
        fprintf(f, "| %s | %d |", a->values[k], (int)n);
        for (int32_t pass = 0; pass < 2; pass++) {
            int32_t r = pass ? worst : best;
            fprintf(f, " %.2f | ", pct(v, r, v->top1));
            for (int32_t i = 1; i < v->s->n_axes; i++)
                fprintf(f, "%s%s = %s", i > 1 ? ", " : "", v->s->axes[i].key, field(v, r, v->axis[i]));
            fprintf(f, " |");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\n");
}

void qhi_sweep_report(FILE *f, const qh_run *run, int32_t stage)
{
    sweep_view v;
    if (!view_open(&v, run, stage))
        return;
    fprintf(f, "\n## Sweep [%s]\n\n%lld points:", v.s->name, (long long)v.t.n_points);
    for (int32_t i = 0; i < v.s->n_axes; i++)
        fprintf(f, "%s %s (%d)", i ? " x" : "", v.s->axes[i].key, (int)v.s->axes[i].n_values);
    fprintf(f, ", the last key varying fastest; one row each in `%s` (seed 002's columns, accuracies as "
               "fractions). The model the stage started from: top-1 %.2f %%, top-5 %.2f %%.\n\n",
            v.t.file, pct(&v, 0, v.orig_top1), pct(&v, 0, v.orig_top5));
    if (v.best >= 0) {
        fprintf(f, "Best: point %d (", v.best + 1);
        for (int32_t i = 0; i < v.s->n_axes; i++)
            fprintf(f, "%s%s = %s", i ? ", " : "", v.s->axes[i].key, field(&v, v.best, v.axis[i]));
        fprintf(f, "), top-1 %.2f %%, top-5 %.2f %%: its model continues down the pipeline.\n\n",
                pct(&v, v.best, v.top1), pct(&v, v.best, v.top5));
    }
    report_by_first_key(f, &v);
    report_rows(f, &v);
    view_close(&v);
}
