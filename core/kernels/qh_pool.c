/* qh_pool.c - 2-D max and average pooling (NCHW, floor mode, dilation 1), as PyTorch computes them.
 *
 * The references test every tap against the input bounds. The optimized versions clip each window
 * once and run over planes in parallel; inside a plane they visit the taps in the same order as
 * the references, so every sum (and every max tie-break) comes out bit-identical to the reference
 * for any thread count. Max pooling with horizontal stride 1 or 2 runs eight outputs of a row at
 * once with AVX2 where their windows lie inside the row, visiting the taps in the same order with
 * the same rule, so its values and argmax are the reference's too. Backward passes scatter into
 * the input plane, which the owning thread alone writes. */
#include "qh_kernels.h"

#include <math.h>
#include <string.h>

#include "qh_elementwise_impl.h"
#include "qhost/qh_parallel.h"

static int64_t out_extent(int64_t in, int32_t k, int32_t stride, int32_t pad)
{
    int64_t span = in + 2 * (int64_t)pad - k;
    if (span < 0 || stride <= 0)
        return 0;
    return span / stride + 1;
}

void qh_pool2d_shape_finish(qh_pool2d_shape *s)
{
    s->h_out = out_extent(s->h_in, s->kh, s->sh, s->ph);
    s->w_out = out_extent(s->w_in, s->kw, s->sw, s->pw);
}

/* ---------------------------------------------------------------- references */

/* PyTorch's rule: a strictly greater value or a NaN takes over, so the first maximum wins. A window
 * made only of padding (possible when pad > kernel / 2, which PyTorch rejects) yields -inf and
 * argmax -1, which the backward pass skips. */
void qh_k_maxpool2d_fwd_f32_ref(const qh_pool2d_shape *s, const float *x, float *y, int32_t *argmax)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    for (int64_t p = 0; p < s->n * s->c; p++)
        for (int64_t oh = 0; oh < s->h_out; oh++)
            for (int64_t ow = 0; ow < s->w_out; ow++) {
                float best = -INFINITY;
                int32_t where = -1;
                for (int32_t i = 0; i < s->kh; i++)
                    for (int32_t j = 0; j < s->kw; j++) {
                        int64_t ih = oh * s->sh - s->ph + i, iw = ow * s->sw - s->pw + j;
                        if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in)
                            continue;
                        float v = x[p * in_plane + ih * s->w_in + iw];
                        if (where < 0 || v > best || isnan(v)) {
                            best = v;
                            where = (int32_t)(ih * s->w_in + iw);
                        }
                    }
                y[p * out_plane + oh * s->w_out + ow] = best;
                if (argmax)
                    argmax[p * out_plane + oh * s->w_out + ow] = where;
            }
}

void qh_k_maxpool2d_bwd_f32_ref(const qh_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    memset(dx, 0, (size_t)(s->n * s->c * in_plane) * sizeof *dx);
    for (int64_t p = 0; p < s->n * s->c; p++)
        for (int64_t o = 0; o < out_plane; o++)
            if (argmax[p * out_plane + o] >= 0)
                dx[p * in_plane + argmax[p * out_plane + o]] += dy[p * out_plane + o];
}

/* count_include_pad: the divisor is always kh * kw (in floor mode no window reaches past the
 * padding, so PyTorch's clipped pool size equals kh * kw). */
void qh_k_avgpool2d_fwd_f32_ref(const qh_pool2d_shape *s, const float *x, float *y)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    float div = (float)(s->kh * s->kw);
    for (int64_t p = 0; p < s->n * s->c; p++)
        for (int64_t oh = 0; oh < s->h_out; oh++)
            for (int64_t ow = 0; ow < s->w_out; ow++) {
                float sum = 0.0f;
                for (int32_t i = 0; i < s->kh; i++)
                    for (int32_t j = 0; j < s->kw; j++) {
                        int64_t ih = oh * s->sh - s->ph + i, iw = ow * s->sw - s->pw + j;
                        if (ih >= 0 && ih < s->h_in && iw >= 0 && iw < s->w_in)
                            sum += x[p * in_plane + ih * s->w_in + iw];
                    }
                y[p * out_plane + oh * s->w_out + ow] = sum / div;
            }
}

void qh_k_avgpool2d_bwd_f32_ref(const qh_pool2d_shape *s, const float *dy, float *dx)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    float div = (float)(s->kh * s->kw);
    memset(dx, 0, (size_t)(s->n * s->c * in_plane) * sizeof *dx);
    for (int64_t p = 0; p < s->n * s->c; p++)
        for (int64_t oh = 0; oh < s->h_out; oh++)
            for (int64_t ow = 0; ow < s->w_out; ow++) {
                float g = dy[p * out_plane + oh * s->w_out + ow] / div;
                for (int32_t i = 0; i < s->kh; i++)
                    for (int32_t j = 0; j < s->kw; j++) {
                        int64_t ih = oh * s->sh - s->ph + i, iw = ow * s->sw - s->pw + j;
                        if (ih >= 0 && ih < s->h_in && iw >= 0 && iw < s->w_in)
                            dx[p * in_plane + ih * s->w_in + iw] += g;
                    }
            }
}

/* ---------------------------------------------------------------- optimized: clipped windows */

/* The in-bounds part [*lo, *hi) of the window of output o along one axis. */
static void clip(int64_t o, int32_t stride, int32_t pad, int32_t k, int64_t in, int64_t *lo, int64_t *hi)
{
    int64_t a = o * stride - pad, b = a + k;
    *lo = a < 0 ? 0 : a;
    *hi = b > in ? in : b;
}

/* One output of a row: the window clipped to the plane, taps in row-major order. */
static void maxpool_one(const qh_pool2d_shape *s, const float *x, int64_t h0, int64_t h1, int64_t ow, float *y,
                        int32_t *argmax)
{
    int64_t w0, w1;
    clip(ow, s->sw, s->pw, s->kw, s->w_in, &w0, &w1);
    float best = -INFINITY;
    int32_t where = -1;
    for (int64_t ih = h0; ih < h1; ih++) {
        const float *row = x + ih * s->w_in;
        for (int64_t iw = w0; iw < w1; iw++)
            if (where < 0 || row[iw] > best || isnan(row[iw])) {
                best = row[iw];
                where = (int32_t)(ih * s->w_in + iw);
            }
    }
    *y = best;
    if (argmax)
        *argmax = where;
}

#ifdef QH_X86
/* x[sw * k] for lanes k = 0..7, sw = 1 or 2; with `mask`, only the lanes k < cnt are read (the
 * others are 0), so a load never leaves the window of the last output of a plane. */
__attribute__((target("avx2,fma"))) static inline __m256 load_stride(const float *x, int32_t sw, bool mask, int cnt)
{
    __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), lim = _mm256_set1_epi32(sw * (cnt - 1) + 1);
    __m256 a, b;
    if (!mask)
        a = _mm256_loadu_ps(x), b = sw == 2 ? _mm256_loadu_ps(x + 8) : a;
    else {
        a = _mm256_maskload_ps(x, _mm256_cmpgt_epi32(lim, iota));
        b = sw == 2 ? _mm256_maskload_ps(x + 8, _mm256_cmpgt_epi32(lim, _mm256_add_epi32(iota, _mm256_set1_epi32(8))))
                    : a;
    }
    if (sw == 1)
        return a;
    __m256 e = _mm256_shuffle_ps(a, b, 0x88); /* x0 x2 x8 x10 | x4 x6 x12 x14 */
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8));
}

/* Outputs ow..ow+cnt-1 (cnt <= 8) of a row whose windows lie inside the row: rows h0..h1-1
 * (h1 > h0), the taps of each in order; a tap takes over where it is greater or NaN (the
 * reference's rule, lane-wise). `mask`: the loads read only what the cnt windows cover. */
__attribute__((target("avx2,fma"))) static void maxpool_vec(const qh_pool2d_shape *s, const float *x, int64_t h0,
                                                             int64_t h1, int64_t ow, int cnt, bool mask, float *y,
                                                             int32_t *argmax)
{
    int64_t c0 = ow * s->sw - s->pw;
    __m256i lane = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(s->sw));
    __m256 best = load_stride(x + h0 * s->w_in + c0, s->sw, mask, cnt);
    __m256i where = _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)(h0 * s->w_in + c0)));
    for (int64_t ih = h0; ih < h1; ih++)
        for (int32_t j = ih == h0 ? 1 : 0; j < s->kw; j++) {
            int64_t at = ih * s->w_in + c0 + j;
            __m256 v = load_stride(x + at, s->sw, mask, cnt);
            __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, best, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            best = _mm256_blendv_ps(best, v, take);
            if (argmax) {
                __m256i idx = _mm256_add_epi32(lane, _mm256_set1_epi32((int32_t)at));
                where = _mm256_castps_si256(
                    _mm256_blendv_ps(_mm256_castsi256_ps(where), _mm256_castsi256_ps(idx), take));
            }
        }
    if (cnt == 8) {
        _mm256_storeu_ps(y, best);
        if (argmax)
            _mm256_storeu_si256((__m256i *)argmax, where);
        return;
    }
    __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(y, keep, best);
    if (argmax)
        _mm256_maskstore_epi32(argmax, keep, where);
}
#endif

static void maxpool_plane(const qh_pool2d_shape *s, const float *x, float *y, int32_t *argmax, int vec)
{
    /* outputs [a, b) have their whole window inside the row: eight at a time, the last ones and
     * those whose full-width loads would leave the row with masked loads */
    int64_t a = (s->pw + s->sw - 1) / s->sw, b = (s->w_in + s->pw - s->kw) / s->sw + 1;
    b = b < s->w_out ? b : s->w_out;
    vec = vec && (s->sw == 1 || s->sw == 2) && a < b;
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        int64_t h0, h1;
        clip(oh, s->sh, s->ph, s->kh, s->h_in, &h0, &h1);
        float *yr = y + oh * s->w_out;
        int32_t *ar = argmax ? argmax + oh * s->w_out : NULL;
        for (int64_t ow = 0; ow < s->w_out;) {
#ifdef QH_X86
            if (vec && h1 > h0 && ow >= a && ow < b) {
                int cnt = b - ow < 8 ? (int)(b - ow) : 8;
                int64_t end = (ow * s->sw - s->pw) + s->kw - 1 + (s->sw == 1 ? 8 : 16);
                maxpool_vec(s, x, h0, h1, ow, cnt, cnt < 8 || end > s->w_in, yr + ow, ar ? ar + ow : NULL);
                ow += cnt;
                continue;
            }
#endif
            maxpool_one(s, x, h0, h1, ow, yr + ow, ar ? ar + ow : NULL);
            ow++;
        }
    }
}

static void avgpool_plane(const qh_pool2d_shape *s, const float *x, float *y)
{
    float div = (float)(s->kh * s->kw);
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        int64_t h0, h1;
        clip(oh, s->sh, s->ph, s->kh, s->h_in, &h0, &h1);
        for (int64_t ow = 0; ow < s->w_out; ow++) {
            int64_t w0, w1;
            clip(ow, s->sw, s->pw, s->kw, s->w_in, &w0, &w1);
            float sum = 0.0f;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++)
                    sum += x[ih * s->w_in + iw];
            y[oh * s->w_out + ow] = sum / div;
        }
    }
}

static void avgpool_bwd_plane(const qh_pool2d_shape *s, const float *dy, float *dx)
{
    float div = (float)(s->kh * s->kw);
    memset(dx, 0, (size_t)(s->h_in * s->w_in) * sizeof *dx);
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        int64_t h0, h1;
        clip(oh, s->sh, s->ph, s->kh, s->h_in, &h0, &h1);
        for (int64_t ow = 0; ow < s->w_out; ow++) {
            int64_t w0, w1;
            clip(ow, s->sw, s->pw, s->kw, s->w_in, &w0, &w1);
            float g = dy[oh * s->w_out + ow] / div;
            for (int64_t ih = h0; ih < h1; ih++)
                for (int64_t iw = w0; iw < w1; iw++)
                    dx[ih * s->w_in + iw] += g;
        }
    }
}

/* Planes are independent; small problems stay on one thread. */
static int plane_threads(const qh_pool2d_shape *s)
{
    int64_t work = s->n * s->c * s->h_out * s->w_out * s->kh * s->kw;
    return work < 16384 ? 1 : qh_threads();
}

void qh_k_maxpool2d_fwd_f32(const qh_pool2d_shape *s, const float *x, float *y, int32_t *argmax)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    int nt = plane_threads(s), vec = 0;
#ifdef QH_X86
    vec = qhi_have_avx2();
#endif
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < s->n * s->c; p++)
        maxpool_plane(s, x + p * in_plane, y + p * out_plane, argmax ? argmax + p * out_plane : NULL, vec);
}

void qh_k_maxpool2d_bwd_f32(const qh_pool2d_shape *s, const float *dy, const int32_t *argmax, float *dx)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    int nt = plane_threads(s);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < s->n * s->c; p++) {
        float *d = dx + p * in_plane;
        const float *g = dy + p * out_plane;
        const int32_t *a = argmax + p * out_plane;
        memset(d, 0, (size_t)in_plane * sizeof *d);
        for (int64_t o = 0; o < out_plane; o++)
            if (a[o] >= 0)
                d[a[o]] += g[o];
    }
}

void qh_k_avgpool2d_fwd_f32(const qh_pool2d_shape *s, const float *x, float *y)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    int nt = plane_threads(s);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < s->n * s->c; p++)
        avgpool_plane(s, x + p * in_plane, y + p * out_plane);
}

void qh_k_avgpool2d_bwd_f32(const qh_pool2d_shape *s, const float *dy, float *dx)
{
    int64_t in_plane = s->h_in * s->w_in, out_plane = s->h_out * s->w_out;
    int nt = plane_threads(s);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < s->n * s->c; p++)
        avgpool_bwd_plane(s, dy + p * out_plane, dx + p * in_plane);
}
