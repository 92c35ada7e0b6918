/* qh_adaptive_pool.c - adaptive average pooling (NCHW), forward and backward, PyTorch's bins.
 *
 * Output cell i along an axis of length H averages [floor(i*H/Ho), ceil((i+1)*H/Ho)); bins overlap
 * when Ho does not divide H. The optimized version walks the same taps in the same order as the
 * reference, one plane per task, so it is bit-identical to it for any thread count; the backward
 * scatter into overlapping bins stays inside the plane's own thread. */
#include "qh_kernels.h"

#include <string.h>

#include "qhost/qh_parallel.h"

/* The work (taps) below which a parallel region costs more than it saves. */
#define PAR_MIN 16384

static int64_t bin_start(int64_t i, int64_t in, int64_t out)
{
    return i * in / out;
}

static int64_t bin_end(int64_t i, int64_t in, int64_t out)
{
    return ((i + 1) * in + out - 1) / out;
}

/* ---------------------------------------------------------------- references */

void qh_k_adaptive_avgpool2d_fwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                         const float *x, float *y)
{
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                int64_t h0 = bin_start(oh, h, ho), h1 = bin_end(oh, h, ho);
                int64_t w0 = bin_start(ow, w, wo), w1 = bin_end(ow, w, wo);
                float sum = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        sum += x[(p * h + ih) * w + iw];
                y[(p * ho + oh) * wo + ow] = sum / (float)((h1 - h0) * (w1 - w0));
            }
}

void qh_k_adaptive_avgpool2d_bwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                         const float *dy, float *dx)
{
    memset(dx, 0, (size_t)(n * c * h * w) * sizeof *dx);
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++) {
                int64_t h0 = bin_start(oh, h, ho), h1 = bin_end(oh, h, ho);
                int64_t w0 = bin_start(ow, w, wo), w1 = bin_end(ow, w, wo);
                float g = dy[(p * ho + oh) * wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        dx[(p * h + ih) * w + iw] += g;
            }
}

/* ---------------------------------------------------------------- optimized: one plane per task */

static void fwd_plane(int64_t h, int64_t w, int64_t ho, int64_t wo, const float *x, float *y)
{
    for (int64_t oh = 0; oh < ho; oh++) {
        int64_t h0 = bin_start(oh, h, ho), h1 = bin_end(oh, h, ho);
        for (int64_t ow = 0; ow < wo; ow++) {
            int64_t w0 = bin_start(ow, w, wo), w1 = bin_end(ow, w, wo);
            float sum = 0.0f;
            for (const float *row = x + h0 * w; row < x + h1 * w; row += w)
                for (int64_t iw = w0; iw < w1; iw++)
                    sum += row[iw];
            y[oh * wo + ow] = sum / (float)((h1 - h0) * (w1 - w0));
        }
    }
}

static void bwd_plane(int64_t h, int64_t w, int64_t ho, int64_t wo, const float *dy, float *dx)
{
    memset(dx, 0, (size_t)(h * w) * sizeof *dx);
    for (int64_t oh = 0; oh < ho; oh++) {
        int64_t h0 = bin_start(oh, h, ho), h1 = bin_end(oh, h, ho);
        for (int64_t ow = 0; ow < wo; ow++) {
            int64_t w0 = bin_start(ow, w, wo), w1 = bin_end(ow, w, wo);
            float g = dy[oh * wo + ow] / (float)((h1 - h0) * (w1 - w0));
            for (float *row = dx + h0 * w; row < dx + h1 * w; row += w)
                for (int64_t iw = w0; iw < w1; iw++)
                    row[iw] += g;
        }
    }
}

/* Every input tap is visited at least once (about twice where bins overlap). */
static int team(int64_t n, int64_t c, int64_t h, int64_t w)
{
    return n * c * h * w < PAR_MIN ? 1 : qh_threads();
}

void qh_k_adaptive_avgpool2d_fwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                     const float *x, float *y)
{
    int nt = team(n, c, h, w);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++)
        fwd_plane(h, w, ho, wo, x + p * h * w, y + p * ho * wo);
}

void qh_k_adaptive_avgpool2d_bwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                     const float *dy, float *dx)
{
    int nt = team(n, c, h, w);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++)
        bwd_plane(h, w, ho, wo, dy + p * ho * wo, dx + p * h * w);
}
