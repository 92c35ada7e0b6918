/* qh_xent.c - mean softmax cross-entropy over a batch, and its gradient.
 *
 * Per row, log-sum-exp is taken around the row maximum (no overflow for any finite logits) and
 * accumulated in double. The optimized version computes row losses in parallel and sums them
 * serially in row order, so the mean is the same bit pattern for any thread count. A label outside
 * [0, classes) is a caller bug; it poisons its row with NaN instead of reading out of bounds. */
#include "qh_kernels.h"

#include <math.h>

#include "qhost/qh_parallel.h"

/* Rows per serial summation block of the optimized version (a stack buffer, no allocation). */
#define ROW_BLOCK 256

/* The loss of one row; fills its gradient row (already divided by n) when g != NULL. */
static double xent_row(int64_t classes, const float *z, int32_t label, double inv_n, float *g)
{
    if (label < 0 || label >= classes) {
        for (int64_t j = 0; g && j < classes; j++)
            g[j] = NAN;
        return NAN;
    }
    float m = z[0];
    for (int64_t j = 1; j < classes; j++)
        m = z[j] > m ? z[j] : m;
    double sum = 0.0;
    for (int64_t j = 0; j < classes; j++)
        sum += exp((double)z[j] - m);
    if (g) {
        for (int64_t j = 0; j < classes; j++) {
            double pj = exp((double)z[j] - m) / sum;
            g[j] = (float)((pj - (j == label)) * inv_n);
        }
    }
    return (double)m + log(sum) - (double)z[label];
}

/* Written out plainly (log-softmax first, then its exponent) so it checks xent_row rather than
 * repeating it. */
double qh_k_softmax_xent_f32_ref(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                 float *dlogits)
{
    if (n <= 0)
        return 0.0;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * classes;
        double m = z[0], sum = 0.0;
        for (int64_t j = 1; j < classes; j++)
            m = fmax(m, z[j]);
        for (int64_t j = 0; j < classes; j++)
            sum += exp(z[j] - m);
        double lse = m + log(sum);
        int ok = labels[i] >= 0 && labels[i] < classes;
        total += ok ? lse - z[labels[i]] : NAN;
        for (int64_t j = 0; dlogits && j < classes; j++)
            dlogits[i * classes + j] = ok ? (float)((exp(z[j] - lse) - (j == labels[i])) / (double)n) : NAN;
    }
    return total / (double)n;
}

double qh_k_softmax_xent_f32(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                             float *dlogits)
{
    if (n <= 0)
        return 0.0;
    double total = 0.0, loss[ROW_BLOCK];
    int nt = n * classes < 8192 ? 1 : qh_threads();
    for (int64_t b = 0; b < n; b += ROW_BLOCK) {
        int64_t rows = n - b < ROW_BLOCK ? n - b : ROW_BLOCK;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
        for (int64_t r = 0; r < rows; r++) {
            int64_t i = b + r;
            loss[r] = xent_row(classes, logits + i * classes, labels[i], 1.0 / (double)n,
                               dlogits ? dlogits + i * classes : NULL);
        }
        for (int64_t r = 0; r < rows; r++)
            total += loss[r];
    }
    return total / (double)n;
}
