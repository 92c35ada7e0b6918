/* qh_run_impl.h - state of one pipeline run, shared by the runner and the output writers. */
#ifndef QH_RUN_IMPL_H
#define QH_RUN_IMPL_H

#include "graph/qh_graph_impl.h"
#include "qhost/qh_engine.h"
#include "qhost/qh_quant.h"

typedef struct qh_layer_metrics {
    char name[QH_NAME_MAX];
    int64_t numel;
    int64_t zeros;
    int32_t bits;      /* as stored: the quantizer's code width, else the dtype's (32 fp32, 64 int64) */
    int64_t bytes;     /* storage of this parameter (quantized or fp32) */
    double mse;        /* quantization error against the weights before the stage (quantize stages) */
    bool quantized_now;
    qh_qanalysis qa;   /* error and size analysis of the quantization (quantized_now only) */
    double rel_err;    /* calibrated: ||X W^T - X~ Q^T|| / ||X W^T|| on the calibration data; NAN otherwise */
} qh_layer_metrics;

/* One pruning event (issue 4): the call of a oneshot prune stage, or an event of a schedule during
 * a train stage. */
typedef struct qh_prune_event {
    int64_t epoch;     /* epochs of the train stage run before the event; -1: a oneshot prune stage */
    double target;     /* the sparsity asked of the pruner */
    double measured;   /* zeros of the masks over the targeted weights afterwards (fraction) */
    bool undone;       /* iterative: the round was undone (top-1 fell below the tolerance) */
} qh_prune_event;

#define QHI_MAX_PRUNE_EVENTS 128 /* more are counted, not listed */

/* A structured prune stage: groups pruned and, with physical removal, the model before and after
 * (inference timed side by side: same batch, threads and process, interleaved repetitions). */
typedef struct qh_structured_metrics {
    bool done;
    bool physical;
    int32_t groups, groups_pruned;        /* coupled filter groups over the targets; pruned in total */
    int64_t channels_before, channels_after; /* output channels of conv and linear layers */
    int64_t params_before, params_after;
    int64_t macs_before, macs_after;      /* per sample */
    int64_t batch;
    int32_t threads, reps;
    double img_s_before, img_s_after;     /* medians */
} qh_structured_metrics;

typedef struct qh_stage_metrics {
    char name[QH_NAME_MAX];
    const char *type;
    double wall_s;
    bool evaluated;
    qh_eval_result eval;
    const char *split;
    double sparsity;       /* fraction of zeros over conv/linear weights (rank >= 2) */
    int64_t model_bytes;   /* parameters as stored: quantized tensors by their codes + scales, the rest fp32 */
    int64_t params;
    char model_file[256];  /* written after the stage, or "" */
    int32_t n_layers;
    qh_layer_metrics *layers;
    int32_t n_quantized;   /* layers quantized by this stage */
    qh_qanalysis qtotal;   /* their analyses added up (qh_qanalysis_add) */
    int32_t n_epochs;
    qh_epoch_log *epochs;
    double restored_s;     /* train stage resumed from a checkpoint: the recorded time of its restored epochs */
    /* appended (issue 4), filled by qh_prune_run.c: pruning events of this stage, structured pruning */
    int32_t n_prune_events;
    qh_prune_event prune_events[QHI_MAX_PRUNE_EVENTS];
    qh_structured_metrics structured;
} qh_stage_metrics;

typedef struct qh_run {
    const qh_pipeline_config *pc;
    const qh_registry *reg;
    const qh_run_options *opt;
    char outdir[4096];
    int threads;
    uint64_t seed;
    qh_graph *g;
    qh_dataset ds;
    bool ds_open;
    qh_rng rng;
    qh_qtensor *qt;         /* per weight; bits == 0 when not quantized */
    qh_qanalysis *qa;       /* per weight: made by a quantize stage, handed to its snapshot, then freed */
    double *rel_err;        /* per weight, alongside qa: a calibrated layer's relative output error (NAN: none) */
    int32_t n_stages_done;
    qh_stage_metrics *metrics;
    char started_at[32];
} qh_run;

/* Rewrites metrics.json, results.csv and report.md from run->metrics[0..n_stages_done). */
qh_status qhi_write_metrics(const qh_run *run, qh_error *err);
/* A stage's pruning events as metrics.json keeps them ("prune_events", the listed ones, and
 * "prune_events_not_listed"): put into the object o (qh_outputs.c), read back from it (qh_resume.c),
 * in metrics.json and in a train stage's checkpoint. */
struct json_t;
void qhi_events_put(struct json_t *o, const qh_stage_metrics *m);
void qhi_events_get(const struct json_t *o, qh_stage_metrics *m);
qh_status qhi_write_manifest(const qh_run *run, qh_error *err);
/* Writes the quantized form (codes packed at their bit width, scales, zero points, code books,
 * permutations) with one JSON description per weight in the metadata (read by `qhost inspect`). */
qh_status qhi_write_quantized(const qh_run *run, const char *path, qh_error *err);

#endif /* QH_RUN_IMPL_H */
