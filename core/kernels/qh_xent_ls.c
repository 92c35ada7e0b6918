/* qh_xent_ls.c - mean softmax cross-entropy with label smoothing, and its gradient.
 *
 * PyTorch's cross_entropy(label_smoothing = s) with K classes trains against the target
 * q = (1 - s) onehot + s / K, so per row
 *     loss = (1 - s) * (lse - z_y) + s * mean_k (lse - z_k),   dlogits = (softmax - q) / n,
 * lse = log sum exp z, taken around the row maximum in double. The optimized version computes the
 * rows in parallel and sums their losses serially in row order (same bits for any thread count).
 * A label outside [0, classes) is a caller bug; it poisons its row with NaN. */
#include "qh_kernels.h"

#include <math.h>

#include "qhost/qh_parallel.h"

/* Rows per serial summation block of the optimized version (a stack buffer, no allocation). */
#define ROW_BLOCK 256

/* Written out plainly from log-softmax, so it checks the optimized row rather than repeating it. */
double qh_k_softmax_xent_ls_f32_ref(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                    double smoothing, float *dlogits)
{
    if (n <= 0)
        return 0.0;
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * classes;
        int ok = labels[i] >= 0 && labels[i] < classes;
        double m = z[0], sum = 0.0, mean_nlp = 0.0;
        for (int64_t j = 1; j < classes; j++)
            m = fmax(m, z[j]);
        for (int64_t j = 0; j < classes; j++)
            sum += exp(z[j] - m);
        double lse = m + log(sum);
        for (int64_t j = 0; j < classes; j++)
            mean_nlp += (lse - z[j]) / (double)classes;
        total += ok ? (1.0 - smoothing) * (lse - z[labels[i]]) + smoothing * mean_nlp : NAN;
        for (int64_t j = 0; dlogits && j < classes; j++) {
            double q = (1.0 - smoothing) * (j == labels[i]) + smoothing / (double)classes;
            dlogits[i * classes + j] = ok ? (float)((exp(z[j] - lse) - q) / (double)n) : NAN;
        }
    }
    return total / (double)n;
}

/* The loss of one row; fills its gradient row (already divided by n) when g != NULL. */
static double row_loss(int64_t classes, const float *z, int32_t label, double s, double inv_n, float *g)
{
    if (label < 0 || label >= classes) {
        for (int64_t j = 0; g && j < classes; j++)
            g[j] = NAN;
        return NAN;
    }
    float m = z[0];
    for (int64_t j = 1; j < classes; j++)
        m = z[j] > m ? z[j] : m;
    double sum = 0.0, zsum = 0.0;
    for (int64_t j = 0; j < classes; j++) {
        sum += exp((double)z[j] - m);
        zsum += z[j];
    }
    double lse = (double)m + log(sum), off = s / (double)classes;
    for (int64_t j = 0; g && j < classes; j++) {
        double pj = exp((double)z[j] - m) / sum;
        g[j] = (float)((pj - off - (1.0 - s) * (j == label)) * inv_n);
    }
    /* mean_k (lse - z_k) = lse - mean_k z_k */
    return (1.0 - s) * (lse - (double)z[label]) + s * (lse - zsum / (double)classes);
}

double qh_k_softmax_xent_ls_f32(int64_t n, int64_t classes, const float *logits, const int32_t *labels,
                                double smoothing, float *dlogits)
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
            loss[r] = row_loss(classes, logits + i * classes, labels[i], smoothing, 1.0 / (double)n,
                               dlogits ? dlogits + i * classes : NULL);
        }
        for (int64_t r = 0; r < rows; r++)
            total += loss[r];
    }
    return total / (double)n;
}
