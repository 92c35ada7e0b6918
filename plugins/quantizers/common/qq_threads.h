/* qq_threads.h - the calling thread's place in the current OpenMP team (header only, internal):
 * passes that give each thread one contiguous range of a tensor in several phases of one parallel
 * region. Without OpenMP: one thread. */
#ifndef QQ_THREADS_H
#define QQ_THREADS_H

#ifdef _OPENMP
#include <omp.h>
#endif

static inline int qq_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static inline int qq_thread_count(void)
{
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

#endif /* QQ_THREADS_H */
