/* qh_parallel.h - the host owns the thread budget; kernels (core and plugins) use OpenMP inside it. */
#ifndef QH_PARALLEL_H
#define QH_PARALLEL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Sets the OpenMP thread count for every later kernel (n >= 1). */
void qh_set_threads(int n);
/* The current budget (1 when built without OpenMP). */
int qh_threads(void);

#ifdef __cplusplus
}
#endif
#endif /* QH_PARALLEL_H */
