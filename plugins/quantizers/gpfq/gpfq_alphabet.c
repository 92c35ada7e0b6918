/* gpfq_alphabet.c - GPFQ's alphabet and scalar quantizers, as the reference defines them
 * (YixuanSeanZhou/Quantized_Neural_Nets, src/step_algorithm.py; seeds.md section 3.1).
 *
 * The alphabet is {k * step : k = -K..K}, K = 2^(b-1): 2^b + 1 levels, symmetric, with 0 - one
 * level more than a signed b-bit code holds (levels = strict uses K = 2^(b-1) - 1, a true b-bit
 * code). step = C * rad / K with rad the mean over neurons of the p-quantile of |w|. The rounding
 * expressions below are the reference's, including its floor(x + 1/2) ties, evaluated in float as
 * the reference does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpfq_impl.h"

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double gpfq_radius(const float *w, int64_t rows, int64_t cols, double p)
{
    if (rows < 1 || cols < 1)
        return 0.0;
    float *tmp = p < 1.0 ? malloc(sizeof(float) * (size_t)cols) : NULL;
    double sum = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *row = w + r * cols;
        double q = 0.0;
        if (!tmp) { /* p = 1 (or no memory for the sort: the maximum is the safe radius) */
            for (int64_t i = 0; i < cols; i++)
                q = fabs((double)row[i]) > q ? fabs((double)row[i]) : q;
        } else {
            for (int64_t i = 0; i < cols; i++)
                tmp[i] = fabsf(row[i]);
            qsort(tmp, (size_t)cols, sizeof(float), cmp_float);
            double pos = p * (double)(cols - 1);
            int64_t lo = (int64_t)floor(pos), hi = lo + 1 < cols ? lo + 1 : lo;
            q = tmp[lo] + (pos - (double)lo) * ((double)tmp[hi] - tmp[lo]);
        }
        sum += q;
    }
    free(tmp);
    return sum / (double)rows;
}

qh_status gpfq_alphabet_make(int bits, int levels, double scalar, double rad, int reg, double lambda, int stochastic,
                             gpfq_alphabet *a, qh_error *err)
{
    memset(a, 0, sizeof *a);
    if (bits < 1 || bits > 12)
        return qh_error_set(err, QH_E_INVAL, "bits = %d outside [1, 12]", bits);
    if (levels == GPFQ_LEVELS_STRICT && bits < 2)
        return qh_error_set(err, QH_E_INVAL, "levels = strict needs bits >= 2 (1 bit leaves only the level 0)");
    if (stochastic && reg != GPFQ_REG_NONE)
        return qh_error_set(err, QH_E_INVAL,
                            "stochastic rounding works with regularizer = none only (as in the "
                            "reference)");
    if (!(scalar > 0.0) || !(lambda >= 0.0) || !isfinite(rad) || rad < 0.0)
        return qh_error_set(err, QH_E_INVAL, "scalar %g, lambda %g, radius %g", scalar, lambda, rad);
    a->k = levels == GPFQ_LEVELS_STRICT ? (1 << (bits - 1)) - 1 : 1 << (bits - 1);
    a->reg = reg;
    a->stochastic = stochastic;
    a->lambda = reg == GPFQ_REG_NONE ? 0.0f : (float)lambda;
    double span = scalar * rad - (reg == GPFQ_REG_L0 ? lambda : 0.0);
    if (rad > 0.0 && !(span > 0.0))
        return qh_error_set(err, QH_E_INVAL,
                            "regularizer L0: lambda = %g is not below scalar * radius = %g, so the "
                            "alphabet has no step left",
                            lambda, scalar * rad);
    /* an all-zero layer: any positive step; every code is 0 */
    a->step = rad > 0.0 ? (float)(span / a->k) : 1.0f;
    return QH_OK;
}

static int32_t clamp_code(float f, int32_t k)
{
    return f > (float)k ? k : f < (float)-k ? -k : (int32_t)f;
}

int32_t gpfq_code(const gpfq_alphabet *a, float z, qh_rng *r)
{
    if (a->reg == GPFQ_REG_L0) { /* hard threshold: |z| <= lambda -> 0; the rest on lambda + k * step */
        if (!(fabsf(z) > a->lambda))
            return 0;
        float y = z > 0 ? z - a->lambda : z + a->lambda;
        float k = fabsf(floorf(y / a->step + 0.5f));
        int32_t c = (k > (float)a->k ? a->k : (int32_t)k) + 1;
        return z > 0 ? c : -c;
    }
    if (a->reg == GPFQ_REG_L1) /* soft threshold, then round */
        z = z > 0 ? fmaxf(z - a->lambda, 0.0f) : -fmaxf(-z - a->lambda, 0.0f);
    float s = z / a->step;
    if (a->stochastic) {
        float f = floorf(s);
        float p_down = 1.0f - (s - f);
        return clamp_code((double)p_down > qh_rng_uniform(r) ? f : f + 1.0f, a->k);
    }
    return clamp_code(floorf(s + 0.5f), a->k);
}

float gpfq_value(const gpfq_alphabet *a, int32_t c)
{
    if (a->reg != GPFQ_REG_L0)
        return a->step * (float)c;
    if (c == 0)
        return 0.0f;
    float v = a->lambda + a->step * (float)(abs(c) - 1);
    return c > 0 ? v : -v;
}

int32_t gpfq_levels_count(const gpfq_alphabet *a)
{
    return 2 * a->k + (a->reg == GPFQ_REG_L0 ? 3 : 1);
}

int32_t gpfq_storage_bits(const gpfq_alphabet *a)
{
    int32_t n = gpfq_levels_count(a), b = 1;
    while ((1 << b) < n)
        b++;
    return b < 2 ? 2 : b;
}
