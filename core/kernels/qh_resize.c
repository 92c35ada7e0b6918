/* qh_resize.c - bilinear resize, align_corners = False, as PyTorch's upsample_bilinear2d (CPU).
 *
 * Along each axis, output index d reads source coordinate src = scale * (d + 0.5) - 0.5 with the
 * float scale = in / out (the product taken in double, as ATen's area_pixel_compute_source_index
 * does), clamped below at 0; i0 = floor(src), i1 = min(i0 + 1, in - 1), weights 1 - l and l for
 * l = src - i0. The optimized version tabulates those taps once per call instead of once per pixel
 * and plane; it combines them in the reference's order, so both agree bit for bit. The backward
 * scatters into overlapping taps, so it runs one plane per task and each plane serially. */
#include "qh_kernels.h"

#include <stdlib.h>
#include <string.h>

#include "qhost/qh_parallel.h"

#define PAR_MIN 16384

typedef struct tap {
    int64_t i0, i1;
    float l0, l1;
} tap;

static tap make_tap(int64_t d, int64_t in, int64_t out)
{
    float scale = (float)in / (float)out;
    float src = (float)(scale * ((double)d + 0.5) - 0.5);
    if (src < 0.0f)
        src = 0.0f;
    tap t;
    t.i0 = (int64_t)src;
    t.i1 = t.i0 < in - 1 ? t.i0 + 1 : t.i0;
    t.l1 = src - (float)t.i0;
    t.l1 = t.l1 > 1.0f ? 1.0f : t.l1;
    t.l0 = 1.0f - t.l1;
    return t;
}

static float blend(const float *x, int64_t w, tap r, tap c)
{
    return r.l0 * (c.l0 * x[r.i0 * w + c.i0] + c.l1 * x[r.i0 * w + c.i1]) +
           r.l1 * (c.l0 * x[r.i1 * w + c.i0] + c.l1 * x[r.i1 * w + c.i1]);
}

/* In PyTorch's order: (i0, j0), (i0, j1), (i1, j0), (i1, j1). */
static void scatter(float *dx, int64_t w, tap r, tap c, float g)
{
    dx[r.i0 * w + c.i0] += r.l0 * c.l0 * g;
    dx[r.i0 * w + c.i1] += r.l0 * c.l1 * g;
    dx[r.i1 * w + c.i0] += r.l1 * c.l0 * g;
    dx[r.i1 * w + c.i1] += r.l1 * c.l1 * g;
}

/* ---------------------------------------------------------------- references: taps per pixel */

void qh_k_resize_bilinear_fwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                      const float *x, float *y)
{
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++)
                y[(p * ho + oh) * wo + ow] = blend(x + p * h * w, w, make_tap(oh, h, ho), make_tap(ow, w, wo));
}

void qh_k_resize_bilinear_bwd_f32_ref(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo,
                                      const float *dy, float *dx)
{
    memset(dx, 0, (size_t)(n * c * h * w) * sizeof *dx);
    for (int64_t p = 0; p < n * c; p++)
        for (int64_t oh = 0; oh < ho; oh++)
            for (int64_t ow = 0; ow < wo; ow++)
                scatter(dx + p * h * w, w, make_tap(oh, h, ho), make_tap(ow, w, wo), dy[(p * ho + oh) * wo + ow]);
}

/* ---------------------------------------------------------------- optimized: tabulated taps */

/* Row taps then column taps in one block; NULL when out of memory (the caller falls back). */
static tap *make_table(int64_t h, int64_t w, int64_t ho, int64_t wo)
{
    tap *t = malloc((size_t)(ho + wo + 1) * sizeof *t);
    if (!t)
        return NULL;
    for (int64_t d = 0; d < ho; d++)
        t[d] = make_tap(d, h, ho);
    for (int64_t d = 0; d < wo; d++)
        t[ho + d] = make_tap(d, w, wo);
    return t;
}

static void fwd_plane(const tap *rows, const tap *cols, int64_t w, int64_t ho, int64_t wo, const float *x,
                      float *y)
{
    for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++)
            y[oh * wo + ow] = blend(x, w, rows[oh], cols[ow]);
}

static void bwd_plane(const tap *rows, const tap *cols, int64_t h, int64_t w, int64_t ho, int64_t wo,
                      const float *dy, float *dx)
{
    memset(dx, 0, (size_t)(h * w) * sizeof *dx);
    for (int64_t oh = 0; oh < ho; oh++)
        for (int64_t ow = 0; ow < wo; ow++)
            scatter(dx, w, rows[oh], cols[ow], dy[oh * wo + ow]);
}

static int team(int64_t planes, int64_t ho, int64_t wo)
{
    return planes * ho * wo < PAR_MIN ? 1 : qh_threads();
}

void qh_k_resize_bilinear_fwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *x,
                                  float *y)
{
    tap *t = make_table(h, w, ho, wo);
    if (!t) {
        qh_k_resize_bilinear_fwd_f32_ref(n, c, h, w, ho, wo, x, y);
        return;
    }
    int nt = team(n * c, ho, wo);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++)
        fwd_plane(t, t + ho, w, ho, wo, x + p * h * w, y + p * ho * wo);
    free(t);
}

void qh_k_resize_bilinear_bwd_f32(int64_t n, int64_t c, int64_t h, int64_t w, int64_t ho, int64_t wo, const float *dy,
                                  float *dx)
{
    tap *t = make_table(h, w, ho, wo);
    if (!t) {
        qh_k_resize_bilinear_bwd_f32_ref(n, c, h, w, ho, wo, dy, dx);
        return;
    }
    int nt = team(n * c, ho, wo);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++)
        bwd_plane(t, t + ho, h, w, ho, wo, dy + p * ho * wo, dx + p * h * w);
    free(t);
}
