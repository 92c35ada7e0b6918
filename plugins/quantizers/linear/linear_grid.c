/* linear_grid.c - the range of a group and the grid derived from it.
 *
 * Ranges (lo <= 0 <= hi for asymmetric grids, amax for symmetric ones):
 *   minmax:     the extremes of the group (extended to include 0);
 *   percentile: symmetric: the p-th percentile of |w|; asymmetric: the (100 - p)-th and p-th
 *               percentiles of w (then extended to include 0). Percentiles interpolate linearly
 *               between order statistics (numpy's default): pos = p / 100 * (n - 1);
 *   mse:        the min/max range scaled by each ratio r = 1, ..., 0.5 (LIN_MSE_CANDIDATES evenly
 *               spaced values); the ratio with the smallest sum of squared round-to-nearest errors
 *               wins, the widest on ties (so an exactly representable group keeps r = 1).
 * Every sum is a double accumulated in element order, so the chosen grid never depends on threads.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "linear_impl.h"

lin_grid lin_grid_symmetric(float amax, int bits)
{
    int32_t qmax = (1 << (bits - 1)) - 1;
    lin_grid g = {amax / (float)qmax, 0, -qmax, qmax};
    if (g.scale == 0.0f)
        g.scale = 1.0f; /* an all-zero group: codes 0, values 0 */
    return g;
}

lin_grid lin_grid_asymmetric(float lo, float hi, int bits)
{
    int32_t qmax = (int32_t)((1u << bits) - 1u);
    lin_grid g = {(hi - lo) / (float)qmax, 0, 0, qmax};
    if (g.scale == 0.0f) {
        g.scale = 1.0f;
        return g;
    }
    float z = roundf(-lo / g.scale);
    g.zero = (int32_t)fminf(fmaxf(z, 0.0f), (float)qmax);
    return g;
}

/* Scalar scan of w[0..n) into a / b (min / max); returns nonzero for a NaN or an infinity. */
static int minmax_scalar(const float *w, int64_t n, float *a, float *b)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        *a = w[i] < *a ? w[i] : *a;
        *b = w[i] > *b ? w[i] : *b;
        bad |= !(fabsf(w[i]) <= FLT_MAX);
    }
    return bad;
}

#ifdef __SSE2__
/* The compiler does not vectorize a float min/max reduction without -ffinite-math-only, so the
 * x86-64 baseline (SSE2) is spelled out: 8 lanes, non-finite values flagged by |x| <= FLT_MAX
 * failing (NaN compares false). min and max are exact, so the lanes change no result. */
int lin_minmax(const float *w, int64_t n, float *lo, float *hi)
{
    float a = n > 0 ? w[0] : 0.0f, b = a;
    int64_t i = 0;
    if (n >= 8) {
        const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)), big = _mm_set1_ps(FLT_MAX);
        __m128 a0 = _mm_set1_ps(a), a1 = a0, b0 = a0, b1 = a0, ok = _mm_castsi128_ps(_mm_set1_epi32(-1));
        for (; i + 8 <= n; i += 8) {
            __m128 x0 = _mm_loadu_ps(w + i), x1 = _mm_loadu_ps(w + i + 4);
            a0 = _mm_min_ps(a0, x0);
            a1 = _mm_min_ps(a1, x1);
            b0 = _mm_max_ps(b0, x0);
            b1 = _mm_max_ps(b1, x1);
            ok = _mm_and_ps(ok, _mm_cmple_ps(_mm_and_ps(x0, absmask), big));
            ok = _mm_and_ps(ok, _mm_cmple_ps(_mm_and_ps(x1, absmask), big));
        }
        float la[8], lb[8];
        _mm_storeu_ps(la, _mm_min_ps(a0, a1));
        _mm_storeu_ps(lb, _mm_max_ps(b0, b1));
        for (int l = 0; l < 4; l++) {
            a = la[l] < a ? la[l] : a;
            b = lb[l] > b ? lb[l] : b;
        }
        if (_mm_movemask_ps(ok) != 0xf) {
            *lo = a;
            *hi = b;
            return 1;
        }
    }
    int bad = minmax_scalar(w + i, n - i, &a, &b);
    *lo = a;
    *hi = b;
    return bad;
}
#else
int lin_minmax(const float *w, int64_t n, float *lo, float *hi)
{
    *lo = *hi = n > 0 ? w[0] : 0.0f;
    return minmax_scalar(w, n, lo, hi);
}
#endif

static int cmp_float(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* p-th percentile of the sorted s[0..n). */
static float percentile_sorted(const float *s, int64_t n, double p)
{
    double pos = p / 100.0 * (double)(n - 1);
    int64_t k = (int64_t)floor(pos);
    if (k >= n - 1)
        return s[n - 1];
    double f = pos - (double)k;
    return (float)((double)s[k] + f * ((double)s[k + 1] - (double)s[k]));
}

static lin_grid grid_percentile(const linear_cfg *cfg, const float *w, int64_t n, float *scratch)
{
    int bits = (int)cfg->bits;
    int sym = cfg->mode == LIN_MODE_SYMMETRIC;
    for (int64_t i = 0; i < n; i++)
        scratch[i] = sym ? fabsf(w[i]) : w[i];
    qsort(scratch, (size_t)n, sizeof *scratch, cmp_float);
    if (sym)
        return lin_grid_symmetric(percentile_sorted(scratch, n, cfg->percentile), bits);
    float lo = percentile_sorted(scratch, n, 100.0 - cfg->percentile);
    float hi = percentile_sorted(scratch, n, cfg->percentile);
    return lin_grid_asymmetric(fminf(lo, 0.0f), fmaxf(hi, 0.0f), bits);
}

double lin_sse(const float *w, int64_t n, const lin_grid *g)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float c = roundf(w[i] / g->scale) + (float)g->zero;
        c = fminf(fmaxf(c, (float)g->qmin), (float)g->qmax);
        double d = (double)w[i] - (double)(g->scale * (c - (float)g->zero));
        s += d * d;
    }
    return s;
}

static lin_grid candidate(const linear_cfg *cfg, float lo, float hi, int i)
{
    float r = (float)(1.0 - 0.5 * (double)i / (double)(LIN_MSE_CANDIDATES - 1));
    if (cfg->mode == LIN_MODE_SYMMETRIC)
        return lin_grid_symmetric(fmaxf(-lo, hi) * r, (int)cfg->bits);
    return lin_grid_asymmetric(lo * r, hi * r, (int)cfg->bits);
}

/* Each candidate's error is a serial sum, so spreading candidates over threads changes nothing. */
static lin_grid grid_mse(const linear_cfg *cfg, const float *w, int64_t n, float lo, float hi, int parallel)
{
    double sse[LIN_MSE_CANDIDATES];
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int i = 0; i < LIN_MSE_CANDIDATES; i++) {
        lin_grid g = candidate(cfg, lo, hi, i);
        sse[i] = lin_sse(w, n, &g);
    }
    int best = 0;
    for (int i = 1; i < LIN_MSE_CANDIDATES; i++)
        if (sse[i] < sse[best])
            best = i;
    return candidate(cfg, lo, hi, best);
}

lin_grid lin_group_grid(const linear_cfg *cfg, const float *w, int64_t n, float lo, float hi, float *scratch,
                        int parallel)
{
    lo = fminf(lo, 0.0f); /* every grid contains 0 */
    hi = fmaxf(hi, 0.0f);
    int bits = (int)cfg->bits;
    if (cfg->range == LIN_RANGE_PERCENTILE && n > 0)
        return grid_percentile(cfg, w, n, scratch);
    if (cfg->range == LIN_RANGE_MSE && n > 0 && (lo < 0.0f || hi > 0.0f))
        return grid_mse(cfg, w, n, lo, hi, parallel);
    if (cfg->mode == LIN_MODE_SYMMETRIC)
        return lin_grid_symmetric(fmaxf(-lo, hi), bits);
    return lin_grid_asymmetric(lo, hi, bits);
}

/* A constant group would divide by 0 in the seed (its NaN bug); use [-|c|, |c|] there instead, and
 * 1 for an all-zero group. The seed's float32 arithmetic is kept: (float)(2^b - 1) / (hi - lo). */
float lin_seed001_factor(float lo, float hi, int bits)
{
    float levels = (float)((1u << bits) - 1u);
    float s = levels / (hi - lo);
    if (hi - lo > 0.0f && isfinite(s) && s > 0.0f)
        return s;
    float amax = fmaxf(fabsf(lo), fabsf(hi));
    s = 0.5f * levels / amax;
    return amax > 0.0f && isfinite(s) && s > 0.0f ? s : 1.0f;
}
