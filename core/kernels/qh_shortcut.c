/* qh_shortcut.c - the parameter-free "option A" shortcut of ResNet for CIFAR (He et al. 2016,
 * section 4.2): subsample by the stride, then zero-pad the channels,
 *     y = F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, p // 2, p - p // 2)),  p = c_out - c_in.
 * Pure data movement, so one plane per task is exact for any thread count. The backward is the
 * transpose: the middle channels of dy land on the sampled positions, everything else is 0. */
#include "qh_kernels.h"

#include <string.h>

#include "qhost/qh_parallel.h"

#define PAR_MIN 32768

static int64_t out_extent(int64_t in, int32_t stride)
{
    return (in + stride - 1) / stride;
}

/* The input channel behind output channel k, or -1 for a padding channel. A c_out < c_in (a caller
 * bug) crops instead of reading out of bounds. */
static int64_t source_channel(int64_t k, int64_t c_in, int64_t c_out)
{
    int64_t pad = c_out - c_in, front = pad >= 0 ? pad / 2 : 0;
    int64_t src = k - front;
    return src >= 0 && src < c_in ? src : -1;
}

static void fwd_plane(int64_t h, int64_t w, int32_t s, const float *x, float *y)
{
    int64_t ho = out_extent(h, s), wo = out_extent(w, s);
    for (int64_t oh = 0; oh < ho; oh++) {
        const float *row = x + oh * s * w;
        for (int64_t ow = 0; ow < wo; ow++)
            y[oh * wo + ow] = row[ow * s];
    }
}

static void bwd_plane(int64_t h, int64_t w, int32_t s, const float *dy, float *dx)
{
    int64_t ho = out_extent(h, s), wo = out_extent(w, s);
    memset(dx, 0, (size_t)(h * w) * sizeof *dx);
    for (int64_t oh = 0; oh < ho; oh++) {
        float *row = dx + oh * s * w;
        for (int64_t ow = 0; ow < wo; ow++)
            row[ow * s] = dy[oh * wo + ow];
    }
}

void qh_k_shortcut_a_fwd_f32(int64_t n, int64_t c_in, int64_t h, int64_t w, int32_t stride, int64_t c_out,
                             const float *x, float *y)
{
    if (stride < 1)
        return;
    int64_t plane = out_extent(h, stride) * out_extent(w, stride);
    int nt = n * c_out * plane < PAR_MIN ? 1 : qh_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c_out; p++) {
        int64_t i = p / c_out, src = source_channel(p % c_out, c_in, c_out);
        if (src < 0)
            memset(y + p * plane, 0, (size_t)plane * sizeof *y);
        else
            fwd_plane(h, w, stride, x + (i * c_in + src) * h * w, y + p * plane);
    }
}

/* Parallel over input planes: each is written whole by its own task. */
void qh_k_shortcut_a_bwd_f32(int64_t n, int64_t c_in, int64_t h, int64_t w, int32_t stride, int64_t c_out,
                             const float *dy, float *dx)
{
    if (stride < 1)
        return;
    int64_t plane = out_extent(h, stride) * out_extent(w, stride);
    int64_t pad = c_out - c_in, front = pad >= 0 ? pad / 2 : 0;
    int nt = n * c_in * h * w < PAR_MIN ? 1 : qh_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c_in; p++) {
        int64_t i = p / c_in, k = p % c_in + front;
        if (k < c_out)
            bwd_plane(h, w, stride, dy + (i * c_out + k) * plane, dx + p * h * w);
        else
            memset(dx + p * h * w, 0, (size_t)(h * w) * sizeof *dx);
    }
}
