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

/* Trains with SGD (momentum, Nesterov, weight decay) and the LR schedule of cfg over shuffled
 * mini-batches of the first `limit` training samples (0 = all). Masks hold throughout: masked
 * gradients and momenta are zero and masked weights stay exactly 0. epochs_out (may be NULL)
 * receives cfg->epochs entries. */
qh_status qh_train(qh_graph *g, qh_dataset *ds, const qh_train_config *cfg, int64_t limit, int64_t test_limit,
                   qh_rng *rng, const qh_progress *pr, qh_epoch_log *epochs_out, qh_error *err);

/* Learning rate at iteration it of total (schedule of cfg). */
double qh_lr_at(const qh_train_config *cfg, int64_t it, int64_t iters_per_epoch, int64_t total);

/* ---------------------------------------------------------------- the pipeline runner */

typedef struct qh_run_options {
    const char *output_dir; /* overrides [pipeline] output when non-NULL */
    int threads;            /* > 0 overrides [pipeline] threads */
    const qh_progress *progress;
    const char *exe_path;   /* for the manifest */
} qh_run_options;

/* Runs a validated pipeline; writes the run outputs. Returns non-OK on a run-time failure. */
qh_status qh_pipeline_run(const qh_pipeline_config *pc, const qh_registry *reg, const qh_run_options *opt,
                          qh_error *err);

#ifdef __cplusplus
}
#endif
#endif /* QH_ENGINE_H */
