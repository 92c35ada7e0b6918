/* qh_calib_gram.c - H = X~^T X~ for second-order methods, and the relative output error of a
 * quantized layer (logged for every data-aware layer, whatever the method).
 *
 * Both use the core GEMM on blocks of rows: products are summed in float over at most BLOCK_ROWS
 * samples, and the blocks are added in double in row order, so the result does not depend on the
 * thread count and its rounding does not grow with m. */
#include "calib/qh_calib_impl.h"

#include <math.h>
#include <stdlib.h>

enum { BLOCK_ROWS = 256, TILE = 128, ERR_ROWS = 1024 };

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* h's lower triangle := its upper triangle (only the upper one is ever accumulated). */
static void mirror(double *h, int64_t cols)
{
    for (int64_t a = 0; a < cols; a++)
        for (int64_t b = a + 1; b < cols; b++)
            h[b * cols + a] = h[a * cols + b];
}

qh_status qhi_calib_gram_add(const float *x, int64_t m, int64_t cols, double *h, qh_error *err)
{
    float *tmp = qh_alloc_aligned(sizeof(float) * TILE * TILE);
    if (!tmp)
        return qh_error_set(err, QH_E_NOMEM, "out of memory");
    for (int64_t r0 = 0; r0 < m; r0 += BLOCK_ROWS) {
        int64_t rb = min64(BLOCK_ROWS, m - r0);
        const float *xb = x + r0 * cols;
        for (int64_t i0 = 0; i0 < cols; i0 += TILE) {
            int64_t ti = min64(TILE, cols - i0);
            for (int64_t j0 = i0; j0 < cols; j0 += TILE) { /* upper block triangle only */
                int64_t tj = min64(TILE, cols - j0);
                qh_k_gemm_f32(true, false, ti, tj, rb, 1.0f, xb + i0, cols, xb + j0, cols, 0.0f, tmp, tj);
                for (int64_t a = 0; a < ti; a++)
                    for (int64_t b = i0 + a < j0 ? 0 : a; b < tj; b++)
                        h[(i0 + a) * cols + j0 + b] += (double)tmp[a * tj + b];
            }
        }
    }
    mirror(h, cols);
    qh_free_aligned(tmp);
    return QH_OK;
}

/* sum over the chunk of ||X_c W^T - X~_c Q^T||^2 and ||X_c W^T||^2. */
static void err_chunk(const float *x, const float *xq, int64_t rc, int64_t rows, int64_t cols, const float *w,
                      const float *q, float *y, float *yq, double *num, double *den)
{
    qh_k_gemm_f32(false, true, rc, rows, cols, 1.0f, x, cols, w, cols, 0.0f, y, rows);
    qh_k_gemm_f32(false, true, rc, rows, cols, 1.0f, xq, cols, q, cols, 0.0f, yq, rows);
    for (int64_t i = 0; i < rc * rows; i++) {
        double e = (double)y[i] - (double)yq[i];
        *num += e * e;
        *den += (double)y[i] * (double)y[i];
    }
}

/* The same from H: sum_n (w_n - q_n)^T H (w_n - q_n) over sum_n w_n^T H w_n. */
static void err_from_h(const double *h, int64_t rows, int64_t cols, const float *w, const float *q, double *num,
                       double *den)
{
    for (int64_t n = 0; n < rows; n++) {
        const float *wn = w + n * cols, *qn = q + n * cols;
        for (int64_t a = 0; a < cols; a++) {
            double hw = 0.0, he = 0.0;
            for (int64_t b = 0; b < cols; b++) {
                hw += h[a * cols + b] * wn[b];
                he += h[a * cols + b] * ((double)wn[b] - qn[b]);
            }
            *den += wn[a] * hw;
            *num += ((double)wn[a] - qn[a]) * he;
        }
    }
}

qh_status qhi_calib_rel_error(const qhi_calib_data *d, const float *w, const float *q, double *rel, qh_error *err)
{
    double num = 0.0, den = 0.0;
    *rel = NAN;
    if (d->xq) {
        const float *x = d->x ? d->x : d->xq;
        float *y = qh_alloc_aligned(sizeof(float) * (size_t)(ERR_ROWS * d->rows));
        float *yq = qh_alloc_aligned(sizeof(float) * (size_t)(ERR_ROWS * d->rows));
        if (!y || !yq) {
            qh_free_aligned(y);
            qh_free_aligned(yq);
            return qh_error_set(err, QH_E_NOMEM, "out of memory");
        }
        for (int64_t r0 = 0; r0 < d->m; r0 += ERR_ROWS)
            err_chunk(x + r0 * d->cols, d->xq + r0 * d->cols, min64(ERR_ROWS, d->m - r0), d->rows, d->cols, w, q, y, yq,
                      &num, &den);
        qh_free_aligned(y);
        qh_free_aligned(yq);
    } else if (d->h) {
        err_from_h(d->h, d->rows, d->cols, w, q, &num, &den);
    } else {
        return QH_OK;
    }
    *rel = den > 0.0 ? sqrt(num > 0.0 ? num : 0.0) / sqrt(den) : (num > 0.0 ? INFINITY : 0.0);
    return QH_OK;
}
