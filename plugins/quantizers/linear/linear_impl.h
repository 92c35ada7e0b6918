/* linear_impl.h - internals of the linear quantizer shared by its files:
 * linear.c (parameters, checks, outputs), linear_run.c (groups and threading), linear_grid.c
 * (ranges and grids), linear_encode.c (the reference element loops), linear_fast.c (their AVX2
 * twins, byte-identical). */
#ifndef QH_LINEAR_IMPL_H
#define QH_LINEAR_IMPL_H

#include <stdint.h>

#include "qhost/qh_plugin.h"
#include "../common/qq_simd.h"

enum { LIN_GRAN_TENSOR = 0, LIN_GRAN_CHANNEL, LIN_GRAN_BLOCK };
enum { LIN_MODE_SYMMETRIC = 0, LIN_MODE_ASYMMETRIC, LIN_MODE_SEED001 };
enum { LIN_ROUND_NEAREST = 0, LIN_ROUND_STOCHASTIC };
enum { LIN_RANGE_MINMAX = 0, LIN_RANGE_PERCENTILE, LIN_RANGE_MSE };

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

/* Element loops; codes point at element 0 of the range, of dtype dt (I8, U8, I16 or U16); deq may
 * be NULL (codes only). */
void lin_encode_nearest(const float *w, int64_t n, const lin_grid *g, qh_dtype dt, void *codes, float *deq);
void lin_encode_stochastic(const float *w, int64_t n, const lin_grid *g, qh_rng *rng, qh_dtype dt, void *codes,
                           float *deq);
/* Seed 001: code = wrap_b(trunc(w * S)); returns how many codes wrapped around. */
int64_t lin_encode_seed001(const float *w, int64_t n, float factor, float scale, int bits, qh_dtype dt, void *codes,
                           float *deq);

/* The fast twins (AVX2 when the CPU has it, else the reference): same bytes. nt: stream deq. */
int lin_minmax_fast(const float *w, int64_t n, float *lo, float *hi);
void lin_encode_nearest_fast(const float *w, int64_t n, const lin_grid *g, qh_dtype dt, void *codes, float *deq,
                             int nt);

/* Where one tensor's results go: codes (dt, the weight's element count), scale and zero (one per
 * group; zero NULL unless asymmetric), deq (NULL: codes only). */
typedef struct lin_out {
    void *codes;
    qh_dtype dt;
    float *scale;
    int32_t *zero;
    float *deq;
} lin_out;

/* Groups as contiguous ranges of the row-major weight. */
typedef struct lin_layout {
    int64_t groups, len, cols, nblk, block;
    int gran;
} lin_layout;

lin_layout lin_make_layout(const linear_cfg *cfg, const qh_tensor *w);
/* Code dtype: I8 / U8 up to 8 bits, I16 / U16 above (unsigned for asymmetric grids). */
qh_dtype lin_code_dtype(const linear_cfg *cfg);

enum { LIN_NOT_FINITE = -1, LIN_NOMEM = -2 };
/* Quantizes w (F32) into o: the reference loops (fast = 0) or the fast ones (fast = 1), with the
 * same bytes. Returns the seed001 wrap count, or LIN_NOT_FINITE / LIN_NOMEM. */
int64_t lin_run(const linear_cfg *cfg, const qh_tensor *w, const lin_out *o, int fast);

#endif /* QH_LINEAR_IMPL_H */
