/* kgemm_check.h - small helpers shared by the GEMM, conv2d and linear tests. */
#ifndef KGEMM_CHECK_H
#define KGEMM_CHECK_H

#include <math.h>
#include <stdlib.h>

#include "qhost/qh_rng.h"

static inline float *kg_alloc(size_t n)
{
    float *p = malloc(sizeof(float) * (n ? n : 1));
    assert_non_null(p);
    return p;
}

/* n uniform values in [-1, 1). */
static inline float *kg_random(qh_rng *r, size_t n)
{
    float *p = kg_alloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(2.0 * qh_rng_uniform(r) - 1.0);
    return p;
}

static inline float *kg_copy(const float *src, size_t n)
{
    float *p = kg_alloc(n);
    for (size_t i = 0; i < n; i++)
        p[i] = src[i];
    return p;
}

/* max |got - want| / max |want| (absolute when want is all zero). */
static inline double kg_rel_err(const float *got, const float *want, size_t n)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= diff)) /* also catches NaN */
            diff = d;
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    }
    return scale > 0.0 ? diff / scale : diff;
}

/* Same with a double reference (finite differences). */
static inline double kg_rel_err_d(const float *got, const double *want, size_t n)
{
    double diff = 0.0, scale = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= diff))
            diff = d;
        if (fabs(want[i]) > scale)
            scale = fabs(want[i]);
    }
    return scale > 0.0 ? diff / scale : diff;
}

#endif /* KGEMM_CHECK_H */
