/* qh_prune_schedule.h - the math of the host's pruning schedules, as pure functions (no graph, no
 * I/O), so that the sequences they produce are unit-tested on their own.
 *
 * Time is counted in epochs of the train stage named by `during`: "event at t" means "after t of its
 * epochs have run" (t = 0: before its first epoch). Every schedule places its events at
 *   t_j = start_epoch + j * every_epochs,  j = 0, 1, ...
 */
#ifndef QH_PRUNE_SCHEDULE_H
#define QH_PRUNE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qhost/qh_config.h"

/* Geometric (seed 000) and iterative (seed 003): after k events, each removing `rate` of the weights
 * still remaining, starting from sparsity s0: 1 - (1 - s0) (1 - rate)^k. */
double qh_prune_geometric_at(double s0, double rate, int64_t k);

/* Has a measured sparsity reached target? Compared at 0.01 % resolution, as seed 000 does (it
 * rounds the measured percentage to two decimals), so 1 - 0.9^22 = 90.15 % reaches 90 % and the
 * floating-point noise of 1 - (1 - r)^k never decides. */
bool qh_prune_reached(double measured, double target);

/* Events a geometric schedule needs from s0 to reach target (0 when s0 already does); -1 when it
 * never does (rate 0) or needs more than 100000. */
int64_t qh_prune_geometric_events(double s0, double rate, double target);

/* AGP (Zhu & Gupta 2017): s_t = s_f + (s_i - s_f) (1 - (t - t0) / (n dt))^3 for t0 <= t <= t0 + n dt;
 * s_i before t0 and s_f after the last event. */
double qh_prune_agp_at(double s_i, double s_f, int64_t t0, int64_t dt, int64_t n, int64_t t);

/* Is t one of the event times t0 + j dt, 0 <= j <= last_j (last_j < 0: no bound)? */
bool qh_prune_is_event(int64_t t0, int64_t dt, int64_t last_j, int64_t t);

/* The last epoch count at which the schedule of cfg acts, counted from a dense model:
 *   geometric: its last pruning event, t_{K-1} (K = qh_prune_geometric_events(0, rate, sparsity));
 *   iterative: the end of its last round's fine-tuning, t_K;
 *   agp:       its last event, t_n (n = steps).
 * Returns -1 when the schedule cannot reach its target at all (rate 0) and 0 for oneshot. The
 * config check needs last < epochs (geometric, agp: training goes on after the last event) or
 * last <= epochs (iterative). */
int64_t qh_prune_schedule_last(const qh_prune_config *cfg);

#endif /* QH_PRUNE_SCHEDULE_H */
