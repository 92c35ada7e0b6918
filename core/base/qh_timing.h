/* qh_timing.h - clocks and sorting of timings, shared by the pipeline (stage and epoch times, the
 * structured-pruning speed comparison), the graph profiler and the benchmarks (internal). */
#ifndef QH_TIMING_H
#define QH_TIMING_H

#include <time.h>

/* Seconds on clock id: CLOCK_MONOTONIC for wall time, CLOCK_PROCESS_CPUTIME_ID for the CPU time of
 * every thread, CLOCK_THREAD_CPUTIME_ID for the calling thread's. */
static inline double qh_clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline double qh_now_s(void) { return qh_clock_s(CLOCK_MONOTONIC); }

/* qsort comparator for doubles, ascending (medians of repeated timings). */
static inline int qh_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#endif /* QH_TIMING_H */
