/* qh_prune_run.h - prune stages inside a run: the one-shot stage, the check of every pruner before
 * any stage runs, and the epoch hook through which geometric, iterative and AGP schedules prune
 * during the epochs of a train stage (qh_prune_schedule.h holds their math). */
#ifndef QH_PRUNE_RUN_H
#define QH_PRUNE_RUN_H

#include "pipeline/qh_run_impl.h"

/* The parameters a prune or quantize stage targets (qh_runner.c): indices into run->g->weights. */
int32_t qhi_select_targets(qh_run *run, const char *targets, const char *exclude, int32_t *out);

/* Before any stage: creates every prune stage's pruner and runs it on copies of the masks at the
 * stage's target, so a bad plugin parameter (n >= m) or a tensor the criterion refuses fails as
 * "<file>:<line>: error: [<stage>]: ..." with nothing run. The model is left unchanged. */
qh_status qhi_prune_check(qh_run *run, qh_error *err);

/* Runs prune stage s: schedule = oneshot prunes now (and with physical = true rebuilds run->g
 * without the pruned channels, timing both models); the other schedules only log, their events run
 * in the train stage named by `during`. */
qh_status qhi_prune_stage(qh_run *run, const qh_stage *s, qh_error *err);

/* Structured pruning (a pruner with prune_groups): the host wrapper of that method (sparsity in
 * [0, 1), groups may only go from kept to pruned), and one whole step on a graph: the coupled
 * groups of the weights selected by targets / exclude (qh_surgery.h), the pruner's choice, and
 * (apply) the masks of every filter, bias and batch norm channel of the pruned groups. With apply
 * false nothing changes (the check before a run). Fails when the targets hold no removable filter. */
qh_status qhi_pruner_prune_groups(qh_pruner *pr, const qh_prune_target *targets, int32_t n, qh_channel_group *groups,
                                  int32_t n_groups, double sparsity, qh_error *err);
qh_status qhi_prune_structured(qh_graph *g, qh_pruner *pr, const char *targets, const char *exclude, double sparsity,
                               bool apply, int32_t *n_groups, int32_t *n_pruned, qh_error *err);

/* The hook a train stage carries when a prune stage's schedule names it (NULL: none). begin() takes
 * what the schedule measures at the start of the stage (sparsity; iterative: test top-1). */
typedef struct qhi_prune_hook qhi_prune_hook;

qh_status qhi_prune_hook_begin(qh_run *run, const qh_stage *train, qhi_prune_hook **out, qh_error *err);
/* The qh_train_options.epoch_hook to pass with user = the hook. */
qh_status qhi_prune_hook_call(void *user, qh_graph *g, int64_t epochs_done, bool *stop, qh_error *err);
/* Iterative schedules keep their best model in memory only: the stage runs without checkpoints, so
 * --resume runs it again from its start (bit-identical, just not shorter). */
bool qhi_prune_hook_blocks_checkpoint(const qhi_prune_hook *h);
/* qh_train_options.hook_save and hook_restore: the events the schedule recorded so far (the train
 * stage's prune_events) travel in the stage's checkpoint, so a resumed stage lists them all. */
char *qhi_prune_hook_save(void *user);
qh_status qhi_prune_hook_restore(void *user, const char *text, qh_error *err);
void qhi_prune_hook_end(qhi_prune_hook *h);

#endif /* QH_PRUNE_RUN_H */
