/* gptq_grid.c - the min/max grid of the GPTQ reference (Frantar et al., quant.py find_params),
 * one per group of a row, and plain round-to-nearest on it.
 *
 *   asymmetric: [lo, hi] widened to contain 0 (so 0 is exact), scale = (hi - lo) / (2^b - 1),
 *               zero = round(-lo / scale), codes in [0, 2^b - 1];
 *   symmetric:  scale = 2 max|w| / (2^b - 1) with the reference's zero point 2^(b-1) folded into
 *               signed codes in [-2^(b-1), 2^(b-1) - 1] (no zero point stored). The reference
 *               leaves the range one-sided when a row has no negative weight (it then clips the top
 *               half of the range); here it is always symmetric.
 * Pruned weights (mask 0) count as 0 in the range. An all-zero group gets the reference's range
 * [-1, 1]. The scale is rounded to float once (what qh_qtensor stores), and the zero point and the
 * codes are computed from that float, so the stored codes decode to exactly the values GPTQ
 * propagated.
 */
#include <float.h>
#include <math.h>

#include "gptq_impl.h"

gq_grid gq_grid_make(double lo, double hi, int bits, int mode)
{
    int32_t maxq = (1 << bits) - 1;
    gq_grid g;
    if (mode == GQ_SYMMETRIC) {
        double amax = fmax(fabs(lo), fabs(hi));
        if (amax == 0.0)
            amax = 1.0;
        double s = 2.0 * amax / maxq;
        g.scale = s < FLT_MIN ? FLT_MIN : (float)s;
        g.zero = 0;
        g.qmin = -(1 << (bits - 1));
        g.qmax = (1 << (bits - 1)) - 1;
        return g;
    }
    lo = fmin(lo, 0.0);
    hi = fmax(hi, 0.0);
    if (lo == 0.0 && hi == 0.0) {
        lo = -1.0;
        hi = 1.0;
    }
    double s = (hi - lo) / maxq;
    g.scale = s < FLT_MIN ? FLT_MIN : (float)s;
    double z = rint(-lo / (double)g.scale);
    g.zero = z < 0 ? 0 : z > maxq ? maxq : (int32_t)z;
    g.qmin = 0;
    g.qmax = maxq;
    return g;
}

void gq_minmax(const double *w, const uint8_t *keep, int64_t n, double *lo, double *hi)
{
    double a = INFINITY, b = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double x = !keep || keep[i] ? w[i] : 0.0;
        a = x < a ? x : a;
        b = x > b ? x : b;
    }
    *lo = a;
    *hi = b;
}

void gq_grids_static(const gq_layout *l, const float *w, const uint8_t *dead, const uint8_t *mask, int mode, int bits,
                     gq_grid *grids)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l->rows; r++)
        for (int64_t g = 0; g < l->ngr; g++) {
            int64_t c0 = g * l->gsize, c1 = c0 + l->gsize < l->cols ? c0 + l->gsize : l->cols;
            double lo = INFINITY, hi = -INFINITY;
            for (int64_t c = c0; c < c1; c++) {
                int64_t i = r * l->cols + c;
                double x = (dead && dead[c]) || (mask && !mask[i]) ? 0.0 : (double)w[i];
                lo = x < lo ? x : lo;
                hi = x > hi ? x : hi;
            }
            grids[r * l->ngr + g] = gq_grid_make(lo, hi, bits, mode);
        }
}

void gq_encode_rtn(const gq_layout *l, const float *w, const gq_grid *grids, qh_dtype dt, void *codes, float *deq)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < l->rows; r++)
        for (int64_t c = 0; c < l->cols; c++) {
            const gq_grid *g = &grids[r * l->ngr + c / l->gsize];
            int32_t q = gq_code((double)w[r * l->cols + c], g);
            gq_put_code(codes, dt, r * l->cols + c, q);
            deq[r * l->cols + c] = gq_value(q, g);
        }
}
