/* qh_train_impl.h - the state of one training stage, shared by the loop (qh_train.c), the
 * optimizers (qh_optim.c) and the checkpoint files (qh_checkpoint.c). Everything that decides what
 * the next epoch computes lives here, so a checkpoint that saves it all resumes bit-identically. */
#ifndef QH_TRAIN_IMPL_H
#define QH_TRAIN_IMPL_H

#include "graph/qh_graph_impl.h"

typedef struct qhi_train_state {
    int64_t epoch;       /* epochs completed */
    int64_t step;        /* optimizer steps taken (Adam's bias correction; SGD's first step) */
    double lr;           /* schedule = plateau: the current learning rate */
    qh_plateau plateau;  /* schedule = plateau */
    qh_plateau watch;    /* early stopping and keep_best (threshold 0) */
    int64_t best_epoch;  /* 0-based epoch of watch.best; -1 = none yet */
    bool stopped;        /* early stopping fired */
    int64_t n_train;     /* samples per epoch: a checkpoint of another limit does not fit */
    float **m;           /* per weight: SGD momentum buffer or Adam's exp_avg; NULL for buffers */
    float **v;           /* per weight: Adam's exp_avg_sq; NULL unless adam/adamw */
    qh_tensor **best;    /* keep_best: every weight's value (buffers too) at best_epoch */
    qh_epoch_log *logs;  /* cfg->epochs entries, epoch of them filled */
} qhi_train_state;

/* One optimizer step over every trainable, unfrozen weight (PyTorch's update rules). */
void qhi_optimizer_step(qh_graph *g, qhi_train_state *s, const qh_train_config *cfg, double lr);

/* The checkpoint file: weights, buffers, masks, optimizer state, rng, schedule, early stopping,
 * keep_best snapshot, the epoch logs and the epoch hook's state (hook_state, NULL = none). Written
 * atomically. */
qh_status qhi_checkpoint_save(const char *path, const char *stage, const qh_graph *g, const qhi_train_state *s,
                              const qh_train_config *cfg, const qh_rng *rng, const char *hook_state, qh_error *err);
/* Restores everything qhi_checkpoint_save wrote, *hook_state as a copy to free() ("" when the file
 * has none); fails without touching g or s when the file does not belong to this model,
 * configuration, seed or training set. */
qh_status qhi_checkpoint_load(const char *path, qh_graph *g, qhi_train_state *s, const qh_train_config *cfg,
                              const qh_rng *rng, char **hook_state, qh_error *err);

#endif /* QH_TRAIN_IMPL_H */
