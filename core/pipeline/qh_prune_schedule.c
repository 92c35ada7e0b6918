/* qh_prune_schedule.c - the schedule math of qh_prune_schedule.h. */
#include "pipeline/qh_prune_schedule.h"

#include <math.h>

double qh_prune_geometric_at(double s0, double rate, int64_t k)
{
    return 1.0 - (1.0 - s0) * pow(1.0 - rate, (double)k);
}

bool qh_prune_reached(double measured, double target)
{
    /* both sides in hundredths of a percent; the measured side rounded, the target exact */
    return round(measured * 1e4) >= target * 1e4 - 1e-6;
}

int64_t qh_prune_geometric_events(double s0, double rate, double target)
{
    for (int64_t k = 0; k <= 100000; k++) {
        if (qh_prune_reached(qh_prune_geometric_at(s0, rate, k), target))
            return k;
        if (rate <= 0.0)
            return -1;
    }
    return -1;
}

double qh_prune_agp_at(double s_i, double s_f, int64_t t0, int64_t dt, int64_t n, int64_t t)
{
    if (t <= t0)
        return s_i;
    if (t >= t0 + n * dt)
        return s_f;
    double left = 1.0 - (double)(t - t0) / (double)(n * dt);
    return s_f + (s_i - s_f) * left * left * left;
}

bool qh_prune_is_event(int64_t t0, int64_t dt, int64_t last_j, int64_t t)
{
    if (t < t0 || dt < 1 || (t - t0) % dt != 0)
        return false;
    return last_j < 0 || (t - t0) / dt <= last_j;
}

int64_t qh_prune_schedule_last(const qh_prune_config *cfg)
{
    int64_t t0 = cfg->start_epoch, dt = cfg->every_epochs, k;
    switch ((qh_prune_schedule)cfg->schedule) {
    case QH_PRUNE_GEOMETRIC:
        k = qh_prune_geometric_events(0.0, cfg->rate, cfg->sparsity);
        return k < 0 ? -1 : k == 0 ? t0 : t0 + (k - 1) * dt;
    case QH_PRUNE_ITERATIVE:
        k = qh_prune_geometric_events(0.0, cfg->rate, cfg->sparsity);
        return k < 0 ? -1 : t0 + k * dt;
    case QH_PRUNE_AGP:
        return t0 + cfg->steps * dt;
    case QH_PRUNE_ONESHOT:
        break;
    }
    return 0;
}
