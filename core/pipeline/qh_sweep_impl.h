/* qh_sweep_impl.h - the table of a sweep (its CSV columns and cells) and a small CSV reader, shared by
 * qh_sweep.c (running), qh_sweep_table.c and qh_sweep_report.c (the run outputs). */
#ifndef QH_SWEEP_IMPL_H
#define QH_SWEEP_IMPL_H

#include "config/qh_sweep_values.h"
#include "pipeline/qh_sweep.h"

typedef enum qhi_sweep_col_kind {
    QHI_COL_MODEL = 0,     /* [model] plugin */
    QHI_COL_DATASET,       /* [dataset] plugin */
    QHI_COL_SEED,          /* [pipeline] seed */
    QHI_COL_ORIG_TOP1,     /* the model the stage received, as a fraction */
    QHI_COL_ORIG_TOP5,
    QHI_COL_ORIG_SPARSITY, /* seed 002's sparsity: zeros over conv/linear weights and biases */
    QHI_COL_TOP1,          /* after the point ("Quantized ..." in seed 002's names) */
    QHI_COL_TOP5,
    QHI_COL_SPARSITY,
    QHI_COL_KEY,           /* the value of a stage key at the point ("" when the stage has no such key) */
    QHI_COL_WALL           /* seconds the point took (stage and evaluation) */
} qhi_sweep_col_kind;

typedef struct qhi_sweep_key {
    const qh_param *p; /* NULL: none */
    bool host;         /* p is in the stage type's own table (else in its plugin's) */
} qhi_sweep_key;

typedef struct qhi_sweep_col {
    char name[64];
    qhi_sweep_col_kind kind;
    /* QHI_COL_KEY: the key shown (p NULL: the stage has none of the column's keys), and the one shown
     * instead while the first is 0 (gpfq: linear_scalar = 0 means "use scalar") */
    qhi_sweep_key key, fallback;
} qhi_sweep_col;

typedef struct qhi_sweep_table {
    const qh_run *run;
    const qh_stage *s;
    int64_t n_points;
    int32_t n_cols;
    qhi_sweep_col *cols;
    int32_t *axis_col;   /* the column of each axis */
    char file[300];      /* "sweep-<stage>.csv" */
    char path[4400];     /* in the output directory */
} qhi_sweep_table;

/* Columns of stage s: seed 002's twenty, one per swept key that maps to none of them, then the wall
 * time. */
qh_status qhi_sweep_table_open(qhi_sweep_table *t, const qh_run *run, const qh_stage *s, qh_error *err);
void qhi_sweep_table_close(qhi_sweep_table *t);

/* What one row says. host_cfg/plugin_cfg: the stage's config blocks at the point. */
typedef struct qhi_sweep_cells {
    const void *host_cfg, *plugin_cfg;
    double orig_top1, orig_top5, orig_sparsity; /* percent, percent, fraction */
    bool has_result;
    double top1, top5, sparsity, wall_s;
} qhi_sweep_cells;

/* Results (accuracy, sparsity and time after the point) are measured; every other cell follows from
 * the pipeline, the point and the stage's input, so a resumed file must repeat it exactly. */
bool qhi_sweep_col_is_result(const qhi_sweep_col *c);
/* The text of column c (empty when it does not apply; a result column without a result is empty). */
void qhi_sweep_cell(const qhi_sweep_table *t, int32_t c, const qhi_sweep_cells *v, char *buf, size_t size);
/* The header line or a row, CSV-quoted where needed, with its '\n' (heap; NULL when out of memory). */
char *qhi_sweep_header_line(const qhi_sweep_table *t);
char *qhi_sweep_row_line(const qhi_sweep_table *t, const qhi_sweep_cells *v);

/* A CSV file as read: the header, the complete rows, and whether a last line was cut short. */
typedef struct qhi_csv {
    int32_t n_header;
    char **header;
    int32_t n_rows;
    int32_t *n_fields; /* per row */
    char ***rows;
    size_t good_bytes; /* the file's length up to and including its last '\n' */
    bool torn;         /* bytes after the last '\n' (an interrupted write) */
} qhi_csv;

/* Reads path; QH_E_IO when it cannot be opened. An empty file or one without a complete line has
 * n_header = 0. */
qh_status qhi_csv_read(const char *path, qhi_csv *csv, qh_error *err);
void qhi_csv_free(qhi_csv *csv);
int32_t qhi_csv_column(const qhi_csv *csv, const char *name); /* -1 when absent */

/* The best row: highest value in column top1_col (the first of equals); -1 when there is no row. */
int32_t qhi_sweep_best_row(const qhi_csv *csv, int32_t top1_col);

#endif /* QH_SWEEP_IMPL_H */
