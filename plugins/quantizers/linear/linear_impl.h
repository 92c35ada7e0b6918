/* linear_impl.h - internals of the linear quantizer shared by its three files:
 * linear.c (parameters, checks, groups, threading), linear_grid.c (ranges and grids),
 * linear_encode.c (the element loops). */
#ifndef QH_LINEAR_IMPL_H
#define QH_LINEAR_IMPL_H

#include <stdint.h>

#include "qhost/qh_plugin.h"

enum { GRAN_TENSOR = 0, GRAN_CHANNEL, GRAN_BLOCK };
enum { MODE_SYMMETRIC = 0, MODE_ASYMMETRIC, MODE_SEED001 };
enum { ROUND_NEAREST = 0, ROUND_STOCHASTIC };
enum { RANGE_MINMAX = 0, RANGE_PERCENTILE, RANGE_MSE };

/* The candidates of range = mse: ratios 1, ..., 0.5 of the min/max range, evenly spaced. */
#define LIN_MSE_CANDIDATES 100

typedef struct linear_cfg {
    int64_t bits;
    int granularity;
    int mode;
    int64_t block_size;
    int rounding;
    int range;
    double percentile;
    int64_t seed;
} linear_cfg;

/* The grid of one group: value = scale * (code - zero), code in [qmin, qmax]. */
typedef struct lin_grid {
    float scale;
    int32_t zero;
    int32_t qmin, qmax;
} lin_grid;

/* Grids from a range, exactly the expressions of the 2..8-bit release (bit-identical results). */
lin_grid lin_grid_symmetric(float amax, int bits);
lin_grid lin_grid_asymmetric(float lo, float hi, int bits); /* lo <= 0 <= hi */

/* Min and max of w[0..n) (exact, so any split of the work gives the same result); returns nonzero
 * if some element is NaN or infinite (the min/max are then meaningless). */
int lin_minmax(const float *w, int64_t n, float *lo, float *hi);
/* The grid of one group for cfg's mode and range. scratch: n floats (percentile only). When
 * `parallel`, the work inside the group is spread over the OpenMP team (same result). */
lin_grid lin_group_grid(const linear_cfg *cfg, const float *w, int64_t n, float lo, float hi, float *scratch,
                        int parallel);
/* Seed 001: S = (2^b - 1) / (max - min) in float, as torch computes it. */
float lin_seed001_factor(float lo, float hi, int bits);
/* Sum of squared errors of round-to-nearest on grid g (double, in element order). */
double lin_sse(const float *w, int64_t n, const lin_grid *g);

/* Element loops; codes point at element 0 of the range, of dtype dt (I8, U8, I16 or U16). */
void lin_encode_nearest(const float *w, int64_t n, const lin_grid *g, qh_dtype dt, void *codes, float *deq);
void lin_encode_stochastic(const float *w, int64_t n, const lin_grid *g, qh_rng *rng, qh_dtype dt, void *codes,
                           float *deq);
/* Seed 001: code = wrap_b(trunc(w * S)); returns how many codes wrapped around. */
int64_t lin_encode_seed001(const float *w, int64_t n, float factor, float scale, int bits, qh_dtype dt, void *codes,
                           float *deq);

#endif /* QH_LINEAR_IMPL_H */
