/* qh_parallel.c - the thread budget. */
#include "qhost/qh_parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

void qh_set_threads(int n)
{
    if (n < 1)
        n = 1;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int qh_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
