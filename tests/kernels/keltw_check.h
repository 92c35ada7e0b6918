/* keltw_check.h - small helpers shared by the eltwise/pool/dropout/xent/golden kernel tests:
 * seeded fills, the relative-error metric, byte comparison and central finite differences. */
#ifndef KELTW_CHECK_H
#define KELTW_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qhost/qh_rng.h"

static inline void fill_uniform(qh_rng *r, float *a, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * (float)qh_rng_uniform(r);
}

/* max|a - ref| / max(1e-6, max|ref|): one number per tensor, insensitive to tiny entries. */
static inline double rel_err(const float *a, const float *ref, int64_t n)
{
    double diff = 0.0, mag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        diff = d > diff || isnan(d) ? d : diff;
        mag = fmax(mag, fabs((double)ref[i]));
    }
    return diff / fmax(1e-6, mag);
}

static inline int bytes_equal(const void *a, const void *b, size_t bytes)
{
    return memcmp(a, b, bytes) == 0;
}

/* A scalar objective of x (evaluated in double). */
typedef double (*objective_fn)(const float *x, void *ctx);

/* Central differences of f at x, written to g[0..n): (f(x + h e_i) - f(x - h e_i)) / 2h, where the
 * perturbed value is the float actually fed to f (so the step is exact). x is restored. */
static inline void finite_diff(objective_fn f, void *ctx, float *x, int64_t n, float h, float *g)
{
    for (int64_t i = 0; i < n; i++) {
        float keep = x[i];
        float up = keep + h, down = keep - h;
        x[i] = up;
        double fu = f(x, ctx);
        x[i] = down;
        double fd = f(x, ctx);
        x[i] = keep;
        g[i] = (float)((fu - fd) / ((double)up - (double)down));
    }
}

/* sum_i w[i] * y[i] in double: the objective whose gradient w.r.t. y is w (a random upstream). */
static inline double dot_f64(const float *w, const float *y, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)w[i] * (double)y[i];
    return s;
}

static inline float *falloc(int64_t n)
{
    return (float *)calloc((size_t)(n > 0 ? n : 1), sizeof(float));
}

#endif /* KELTW_CHECK_H */
