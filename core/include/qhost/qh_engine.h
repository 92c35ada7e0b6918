/* qh_engine.h - host side of models: graph lifecycle, forward/backward, model files, training and
 * evaluation, and the pipeline runner. Plugins do not need this header. */
#ifndef QH_ENGINE_H
#define QH_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "qh_config.h"
#include "qh_graph.h"
#include "qh_registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- graph lifecycle and execution */

/* An empty graph for per-sample input (channels, height, width) and num_classes outputs. */
qh_graph *qh_graph_new(int32_t channels, int32_t height, int32_t width, int32_t num_classes, qh_error *err);
void qh_graph_free(qh_graph *g);
int32_t qh_graph_num_classes(const qh_graph *g);
/* Checks the finished graph: at least one node, last output is [num_classes]. */
qh_status qh_graph_finalize(qh_graph *g, qh_error *err);
/* PyTorch's default initialization: weights and biases of conv/linear ~ U(-1/sqrt(fan_in), +). */
void qh_graph_init_params(qh_graph *g, qh_rng *rng);
/* MACs per sample of conv and linear layers. */
int64_t qh_graph_macs(const qh_graph *g);

/* Forward pass over a batch x (n * C*H*W floats). training enables dropout (drawn from rng) and
 * keeps what backward needs. Returns the logits (n * num_classes), owned by the graph. */
const float *qh_graph_forward(qh_graph *g, const float *x, int64_t n, bool training, qh_rng *rng, qh_error *err);
/* Backward from dlogits (n * num_classes) of the last forward(training = true); fills every
 * weight's grad (overwritten). */
qh_status qh_graph_backward(qh_graph *g, const float *dlogits, qh_error *err);
/* Bytes per sample of the batch-sized buffers the passes allocate, as the executor lays them out:
 * *inference for evaluation (node outputs sharing buffers by liveness), *training for a training
 * step (every output kept; gradients shared; max-pool indices, dropout masks, gradient scratch).
 * Not included: weights, optimizer state, the convolution workspace (not proportional to the
 * batch). */
qh_status qh_graph_buffer_bytes(qh_graph *g, int64_t *inference, int64_t *training, qh_error *err);

/* Sets the mask of a weight (allocating it) and zeroes the masked values. */
qh_status qh_weight_set_mask(qh_weight *w, const uint8_t *mask, qh_error *err);
/* Re-applies every mask (value = 0 where mask = 0). */
void qh_graph_apply_masks(qh_graph *g);

/* ---------------------------------------------------------------- model files */

/* Writes every parameter (F32, state_dict names, graph order), plus "<name>_mask" U8 tensors for
 * masked parameters when with_masks, and string metadata. Atomic. */
qh_status qh_model_save(const qh_graph *g, const char *path, bool with_masks, const char *const *meta_keys,
                        const char *const *meta_values, int32_t n_meta, qh_error *err);
/* Loads parameters by name (F32, F64, F16 or BF16 converted to F32); every parameter must be present
 * with its exact shape; "<name>_mask" tensors restore masks; any other tensor is an error. */
qh_status qh_model_load(qh_graph *g, const char *path, qh_error *err);

/* Like qh_model_load, but parameters whose names match `exclude` (comma-separated globs, may be
 * NULL) are neither loaded nor required: they keep their current (initial) values, and file tensors
 * matching it are ignored whatever their shape - e.g. a classifier head replaced with a new class
 * count (exclude = "classifier.6.*"). */
qh_status qh_model_load_ex(qh_graph *g, const char *path, const char *exclude, qh_error *err);

/* Does name match one of the comma-separated glob patterns (fnmatch)? */
bool qh_name_match_list(const char *patterns, const char *name);

/* ---------------------------------------------------------------- training and evaluation */

typedef struct qh_progress {
    /* label: "train epoch 3/10", done/total in samples; extra: "loss 0.412" (may be NULL). */
    void (*update)(void *user, const char *label, int64_t done, int64_t total, const char *extra);
    /* Called when a labelled task ends (after its last update). */
    void (*finish)(void *user, const char *label, const char *summary);
    void *user;
} qh_progress;

typedef struct qh_eval_result {
    double loss;  /* mean cross-entropy */
    double top1;  /* percent */
    double top5;  /* percent */
    int64_t n;
} qh_eval_result;

qh_status qh_evaluate(qh_graph *g, qh_dataset *ds, qh_split split, int64_t limit, int64_t batch,
                      const qh_progress *pr, qh_eval_result *out, qh_error *err);

typedef struct qh_epoch_log {
    double train_loss;
    double lr_end;
    double wall_s;
    bool evaluated;
    qh_eval_result test;
} qh_epoch_log;

/* Trains with the optimizer (SGD, Adam, AdamW) and LR schedule of cfg over shuffled mini-batches
 * of the first `limit` training samples (0 = all). Masks hold throughout: masked gradients and
 * optimizer states are zero and masked weights stay exactly 0; frozen weights and buffers are not
 * updated. epochs_out (may be NULL) receives one entry per epoch run (cfg->epochs unless early
 * stopping ends sooner). Equals qh_train_ex without options (no checkpoints). */
qh_status qh_train(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                   qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_error *err);

/* Learning rate at iteration it of total (warm-up, then the schedule of cfg; for plateau the
 * learning rate before any drop). */
double qh_lr_at(const qh_train_config *cfg, int64_t it, int64_t iters_per_epoch, int64_t total);

/* ---------------------------------------------------------------- the pipeline runner */

typedef struct qh_run_options {
    const char *output_dir; /* overrides [pipeline] output when non-NULL */
    int threads;            /* > 0 overrides [pipeline] threads */
    const qh_progress *progress;
    const char *exe_path;   /* for the manifest */
    bool resume;            /* continue the run in output_dir (finished stages are skipped) */
} qh_run_options;

/* Runs a validated pipeline; writes the run outputs. Returns non-OK on a run-time failure. */
qh_status qh_pipeline_run(const qh_pipeline_config *pc, const qh_registry *reg, const qh_run_options *opt,
                          qh_error *err);

/* ---------------------------------------------------------------- the full training engine (issue 3) */

/* ReduceLROnPlateau state (PyTorch: mode min or max, threshold_mode 'rel', cooldown 0). */
typedef struct qh_plateau {
    double best;        /* best metric so far; +inf (min) or -inf (max) before the first */
    int64_t bad_epochs; /* epochs since the last improvement */
} qh_plateau;

void qh_plateau_init(qh_plateau *p, bool maximize);
/* Is metric an improvement over p->best by the relative threshold (PyTorch's is_better)? */
bool qh_plateau_improves(const qh_plateau *p, double metric, bool maximize, double threshold);
/* One ReduceLROnPlateau.step(metric): updates best and the count of bad epochs; when that count
 * exceeds patience, lr becomes max(lr * factor, min_lr) (unless that changes it by less than 1e-8)
 * and the count restarts. Returns the (new) learning rate. */
double qh_plateau_step(qh_plateau *p, double metric, bool maximize, double threshold, int64_t patience,
                       double factor, double min_lr, double lr);

typedef struct qh_train_options {
    const char *checkpoint;   /* written (atomically) after every epoch; NULL = none */
    const char *stage;        /* stage name stored in the checkpoint (may be NULL) */
    bool resume;              /* continue from `checkpoint` when that file exists */
    int64_t stop_after_epoch; /* test hook: return QH_E_ABORTED once epoch N (1-based) ran; 0 = never */
    /* out */
    int64_t epochs_done;      /* entries written to epochs_out (early stopping may end sooner) */
    int64_t resumed_at;       /* epochs restored from the checkpoint (0 = fresh start) */
    int64_t best_epoch;       /* 1-based epoch whose weights keep_best restored; 0 = none */
    /* appended (issue 4), optional: called before every epoch with the number of epochs completed
     * (so resumed runs call it exactly as uninterrupted ones) and once after the last epoch; it may
     * change masks (pruning schedules) and set *stop to end the stage there. */
    qh_status (*epoch_hook)(void *user, qh_graph *g, int64_t epochs_done, bool *stop, qh_error *err);
    void *hook_user;
    /* appended, optional: the hook's own state, kept in every checkpoint so that a resumed stage
     * gets it back (a pruning schedule's event log). hook_save returns text the caller frees with
     * free() (NULL: nothing to keep); on resume hook_restore receives it, or "" when the checkpoint
     * holds none, before the first epoch_hook call. */
    char *(*hook_save)(void *user);
    qh_status (*hook_restore)(void *user, const char *text, qh_error *err);
} qh_train_options;

/* qh_train with the options above. Every epoch's shuffle, augmentation and dropout draw from
 * qh_rng_fork(rng, epoch), so a resumed run continues bit-identically; rng is not advanced. */
qh_status qh_train_ex(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                      qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_train_options *opt,
                      qh_error *err);

/* ---------------------------------------------------------------- physical channel removal (issue 4) */

/* A new graph without the output channels that are identically 0 in g: the pruned filters of a
 * structured pruner (filter, bias and batch norm weight and bias all 0), with every consumer (next
 * conv's input channels, depthwise groups, a linear layer's inputs after flatten) narrowed to match
 * and residual connections kept consistent (core/graph/qh_surgery.c). Its outputs equal g's up to
 * the order of float additions. g is unchanged. Model files of the result record its channel counts
 * (metadata "qhost_channels"), and qh_model_load rebuilds a graph to them, so a compacted model
 * saves and reloads like any other. A layer that would lose every channel, a grouped (not
 * depthwise) convolution, or an op it does not know is refused, naming the layer. */
qh_graph *qh_graph_compact(const qh_graph *g, qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_ENGINE_H */
