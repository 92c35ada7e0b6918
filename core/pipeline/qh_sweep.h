/* qh_sweep.h - running a stage whose keys hold lists or ranges (a sweep): every point of the
 * Cartesian product runs from the state the stage received, is evaluated on the test split and
 * appends one row to <output>/sweep-<stage>.csv (seed 002's columns); an interrupted sweep resumes
 * after its last complete row; the best point (highest test top-1, the first of equals) is run once
 * more and its model continues down the pipeline (docs/pipeline-reference.md, "Sweeps"). */
#ifndef QH_SWEEP_H
#define QH_SWEEP_H

#include <jansson.h>
#include <stdio.h>

#include "pipeline/qh_run_impl.h"

/* How the runner runs one stage (its run_stage): the sweep calls it once per point. */
typedef qh_status (*qhi_stage_fn)(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qh_error *err);

/* Runs sweep stage s (s->n_axes > 0). m ends as the best point's own stage metrics, evaluated on the
 * test split. With run->opt->resume, the points already in the stage's CSV are skipped. */
qh_status qhi_sweep_stage(qh_run *run, const qh_stage *s, qh_stage_metrics *m, qhi_stage_fn run_stage,
                          qh_error *err);

/* ---- for the run outputs (qh_outputs.c), read from the stage's CSV; stage = index in run->pc->stages */

/* {"csv", "points", "rows", "keys", "best": {"point", "values", "top1", "top5", "sparsity"}} (top-1/-5 in
 * percent, like the rest of metrics.json), or NULL when the stage is no sweep or its CSV is unreadable. */
json_t *qhi_sweep_json(const qh_run *run, int32_t stage);
/* A "## Sweep [<stage>]" section for report.md: the points, their accuracies and the best one. Writes
 * nothing when the stage is no sweep. */
void qhi_sweep_report(FILE *f, const qh_run *run, int32_t stage);

#endif /* QH_SWEEP_H */
