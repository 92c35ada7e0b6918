/* qh_linear.c - fully connected layer, W [out, in] as in PyTorch: y = x W^T + b.
 * The optimized versions are three GEMMs; the batch sum of dw is the GEMM's K loop, which has a
 * fixed order, so dw is identical for any thread count. */
#include <string.h>

#include "qh_kernels.h"

void qh_k_linear_fwd_f32_ref(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *b,
                             float *y)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? b[o] : 0.0;
            for (int64_t k = 0; k < in; k++)
                acc += (double)x[i * in + k] * w[o * in + k];
            y[i * out + o] = (float)acc;
        }
}

void qh_k_linear_bwd_f32_ref(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *dy,
                             float *dx, float *dw, float *db)
{
    for (int64_t i = 0; dx && i < n; i++)
        for (int64_t k = 0; k < in; k++) {
            double acc = 0.0;
            for (int64_t o = 0; o < out; o++)
                acc += (double)dy[i * out + o] * w[o * in + k];
            dx[i * in + k] = (float)acc;
        }
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < in; k++) {
            double acc = 0.0;
            for (int64_t i = 0; i < n; i++)
                acc += (double)dy[i * out + o] * x[i * in + k];
            dw[o * in + k] = (float)acc;
        }
    for (int64_t o = 0; db && o < out; o++) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; i++)
            acc += dy[i * out + o];
        db[o] = (float)acc;
    }
}

void qh_k_linear_fwd_f32(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *b,
                         float *y)
{
    /* bias first, then accumulate the product onto it: one pass over y */
    if (b) {
        for (int64_t i = 0; i < n; i++)
            memcpy(y + i * out, b, sizeof(float) * (size_t)out);
    }
    qh_k_gemm_f32(false, true, n, out, in, 1.0f, x, in, w, in, b ? 1.0f : 0.0f, y, out);
}

void qh_k_linear_bwd_f32(int64_t n, int64_t in, int64_t out, const float *x, const float *w, const float *dy,
                         float *dx, float *dw, float *db)
{
    if (dx)
        qh_k_gemm_f32(false, false, n, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
    qh_k_gemm_f32(true, false, out, in, n, 1.0f, dy, out, x, in, 0.0f, dw, in);
    if (db) {
        /* row by row, so the sum order is fixed and the inner loop vectorizes over features */
        for (int64_t o = 0; o < out; o++)
            db[o] = 0.0f;
        for (int64_t i = 0; i < n; i++)
            for (int64_t o = 0; o < out; o++)
                db[o] += dy[i * out + o];
    }
}
