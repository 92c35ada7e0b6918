/* qh_depthwise_bwd.c - backward of the 3x3 depthwise convolution (padding 1, stride 1 or 2), the
 * shape every MobileNetV2 depthwise layer has, with AVX2/FMA. Other shapes keep the plain loops of
 * qh_conv2d.c; the reference for both is qh_k_conv2d_bwd_f32_ref.
 *
 * The planes are walked in memory order (image by image, channel by channel: a walk along one
 * channel would jump a channel stride between planes and stall on every one), split into tasks of
 * (image chunk, channel block) fixed by the shape. Each plane is copied into per-thread scratch
 * with a zero border: x split by column phase (padded column pc at phase pc % s, index pc / s), so
 * that a tap of 8 consecutive outputs is one contiguous load; dy padded by one zero row/column on
 * every side. Rows carry 8 floats of zero slack, so the last vector of a row reads zeros past the
 * edge, and lanes past the edge of an output row multiply zeros or are not stored.
 * dw: a task adds each plane's products into its chunk's partial, 8 lanes per tap; a channel's
 * partials are then added in chunk order and the lanes in a fixed tree. Every sum thus has one
 * order whatever the thread count, and dx (one plane at a time) has no sums across planes.
 *
 *   dw[ki][kj] = sum_n sum_(oh,ow) dy[oh][ow] * xpad[s oh + ki][s ow + kj]
 *   stride 1:  dx[i][j] = sum_(a,b) dypad[i + a][j + b] * w[2 - a][2 - b]   (flipped kernel)
 *   stride 2:  even input rows/columns receive only the centre tap, odd ones the two outer taps:
 *              dx[2m][.]   <- dy[m][.]       with w[1][.]
 *              dx[2m+1][.] <- dy[m+1][.] w[0][.] + dy[m][.] w[2][.], the same for columns. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qh_kernels.h"
#include "qhost/qh_parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QH_AVX2 __attribute__((target("avx2,fma")))

/* Scratch geometry of one plane (in floats). */
typedef struct dwb_geom {
    int64_t s;            /* stride (both directions) */
    int64_t xwq, xrow;    /* x: floats per phase row, per padded row (all phases) */
    int64_t xrows;        /* x: padded rows */
    int64_t dq, drows;    /* dy: floats per padded row, padded rows */
    size_t floats;        /* both planes */
} dwb_geom;

static dwb_geom geom_of(const qh_conv2d_shape *s)
{
    dwb_geom g = {.s = s->sh};
    g.xwq = (s->w_in + 2 + g.s - 1) / g.s + 8;
    g.xrow = g.xwq * g.s;
    g.xrows = s->h_in + 2;
    g.dq = s->w_out + 2 + 8;
    g.drows = s->h_out + 2;
    g.floats = (size_t)(g.xrows * g.xrow + g.drows * g.dq);
    return g;
}

/* The plane copies write the same interior positions every time: the zero border and slack of the
 * scratch are written once per task (memset), not per plane. */
static void pad_x(const qh_conv2d_shape *s, const dwb_geom *g, const float *x, float *xp)
{
    for (int64_t h = 0; h < s->h_in; h++) {
        float *r = xp + (h + 1) * g->xrow;
        const float *src = x + h * s->w_in;
        if (g->s == 1) { /* a plain loop: rows are short, a memcpy call per row costs as much as the copy */
            for (int64_t j = 0; j < s->w_in; j++)
                r[1 + j] = src[j];
            continue;
        }
        /* padded column pc = c + 1: odd c to phase 0 at (c + 1) / 2, even c to phase 1 at c / 2 */
        float *ph1 = r + g->xwq;
        for (int64_t j = 0; 2 * j < s->w_in; j++)
            ph1[j] = src[2 * j];
        for (int64_t j = 1; 2 * j - 1 < s->w_in; j++)
            r[j] = src[2 * j - 1];
    }
}

static void pad_dy(const qh_conv2d_shape *s, const dwb_geom *g, const float *dy, float *dp)
{
    for (int64_t h = 0; h < s->h_out; h++) {
        float *r = dp + (h + 1) * g->dq + 1;
        const float *src = dy + h * s->w_out;
        for (int64_t j = 0; j < s->w_out; j++)
            r[j] = src[j];
    }
}

/* acc[k] += products of tap k over one plane. */
QH_AVX2 static void plane_dw(const qh_conv2d_shape *s, const dwb_geom *g, const float *xp, const float *dp,
                             __m256 acc[9])
{
    const float *col[3];
    for (int kj = 0; kj < 3; kj++) /* offset of tap column kj inside a padded x row */
        col[kj] = xp + kj % g->s * g->xwq + kj / g->s;
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        const float *d = dp + (oh + 1) * g->dq + 1;
        int64_t r0 = oh * g->s * g->xrow;
        for (int64_t ow = 0; ow < s->w_out; ow += 8) {
            __m256 dv = _mm256_loadu_ps(d + ow); /* zeros past w_out */
            for (int ki = 0; ki < 3; ki++) {
                int64_t o = r0 + ki * g->xrow + ow;
                acc[ki * 3 + 0] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(col[0] + o), acc[ki * 3 + 0]);
                acc[ki * 3 + 1] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(col[1] + o), acc[ki * 3 + 1]);
                acc[ki * 3 + 2] = _mm256_fmadd_ps(dv, _mm256_loadu_ps(col[2] + o), acc[ki * 3 + 2]);
            }
        }
    }
}

/* Stores the first n (<= 8) lanes of v at p. */
QH_AVX2 static inline void store_n(float *p, __m256 v, int64_t n)
{
    if (n >= 8) {
        _mm256_storeu_ps(p, v);
        return;
    }
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    _mm256_maskstore_ps(p, mask, v);
}

QH_AVX2 static void plane_dx_s1(const qh_conv2d_shape *s, const dwb_geom *g, const float *dp, const float *w,
                                float *dx)
{
    __m256 wf[9];
    for (int k = 0; k < 9; k++)
        wf[k] = _mm256_set1_ps(w[8 - k]);
    for (int64_t i = 0; i < s->h_in; i++) {
        const float *r = dp + i * g->dq;
        for (int64_t j = 0; j < s->w_in; j += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int a = 0; a < 3; a++) {
                const float *q = r + a * g->dq + j;
                acc = _mm256_fmadd_ps(wf[a * 3 + 0], _mm256_loadu_ps(q), acc);
                acc = _mm256_fmadd_ps(wf[a * 3 + 1], _mm256_loadu_ps(q + 1), acc);
                acc = _mm256_fmadd_ps(wf[a * 3 + 2], _mm256_loadu_ps(q + 2), acc);
            }
            store_n(dx + i * s->w_in + j, acc, s->w_in - j);
        }
    }
}

/* One input row of a stride-2 plane: taps ki of dypad rows r[] (nk of them), 16 columns per step
 * (8 even ones from the centre tap column, 8 odd ones from the outer two), interleaved. */
QH_AVX2 static void row_dx_s2(const qh_conv2d_shape *s, const float *const *r, const int *ki, int nk, const float *w,
                              float *out)
{
    for (int64_t n0 = 0; 2 * n0 < s->w_in; n0 += 8) {
        __m256 ev = _mm256_setzero_ps(), od = _mm256_setzero_ps();
        for (int t = 0; t < nk; t++) {
            const float *q = r[t] + 1 + n0; /* dy[oh][n0 ..] */
            __m256 d0 = _mm256_loadu_ps(q), d1 = _mm256_loadu_ps(q + 1);
            ev = _mm256_fmadd_ps(_mm256_set1_ps(w[ki[t] * 3 + 1]), d0, ev);
            od = _mm256_fmadd_ps(_mm256_set1_ps(w[ki[t] * 3 + 0]), d1, od);
            od = _mm256_fmadd_ps(_mm256_set1_ps(w[ki[t] * 3 + 2]), d0, od);
        }
        __m256 lo = _mm256_unpacklo_ps(ev, od), hi = _mm256_unpackhi_ps(ev, od);
        int64_t left = s->w_in - 2 * n0;
        store_n(out + 2 * n0, _mm256_permute2f128_ps(lo, hi, 0x20), left);
        if (left > 8)
            store_n(out + 2 * n0 + 8, _mm256_permute2f128_ps(lo, hi, 0x31), left - 8);
    }
}

static void plane_dx_s2(const qh_conv2d_shape *s, const dwb_geom *g, const float *dp, const float *w, float *dx)
{
    for (int64_t ih = 0; ih < s->h_in; ih++) {
        int64_t m = ih / 2;
        const float *r[2];
        int ki[2], nk;
        if (ih % 2 == 0) { /* oh = m through the centre row of taps */
            r[0] = dp + (m + 1) * g->dq, ki[0] = 1, nk = 1;
        } else {           /* oh = m + 1 (a zero row past the end) through row 0, oh = m through row 2 */
            r[0] = dp + (m + 2) * g->dq, ki[0] = 0;
            r[1] = dp + (m + 1) * g->dq, ki[1] = 2, nk = 2;
        }
        row_dx_s2(s, r, ki, nk, w, dx + ih * s->w_in);
    }
}

/* Work split, from the shape only: image chunks x channel blocks. A task walks its planes in memory
 * order (image by image, channel by channel), which the hardware prefetchers follow, and adds into its
 * chunk's lane partials part[chunk][c][tap][lane]. dw = the chunk partials added in chunk order, then
 * the eight lanes in a fixed tree. */
enum { DWB_CHUNKS = 8, DWB_BLOCK = 64, DWB_PART = 9 * 8 };

typedef struct dwb_split {
    int64_t chunks, blocks, cb; /* image chunks, channel blocks, channels per block */
} dwb_split;

static dwb_split split_of(const qh_conv2d_shape *s)
{
    dwb_split d = {.chunks = s->n < DWB_CHUNKS ? s->n : DWB_CHUNKS};
    d.blocks = (s->c_in + DWB_BLOCK - 1) / DWB_BLOCK;
    d.cb = (s->c_in + d.blocks - 1) / d.blocks;
    return d;
}

QH_AVX2 static void task_bwd(const qh_conv2d_shape *s, const dwb_geom *g, const dwb_split *d, int64_t task,
                             const float *x, const float *w, const float *dy, float *dx, float *part, float *scratch)
{
    int64_t k = task / d->blocks, c0 = task % d->blocks * d->cb;
    int64_t c1 = c0 + d->cb < s->c_in ? c0 + d->cb : s->c_in;
    int64_t hw = s->h_in * s->w_in, p = s->h_out * s->w_out;
    float *xp = scratch, *dp = scratch + g->xrows * g->xrow, *pk = part + k * s->c_in * DWB_PART;
    memset(pk + c0 * DWB_PART, 0, sizeof(float) * (size_t)((c1 - c0) * DWB_PART));
    memset(scratch, 0, sizeof(float) * g->floats);
    for (int64_t n = k * s->n / d->chunks; n < (k + 1) * s->n / d->chunks; n++)
        for (int64_t c = c0; c < c1; c++) {
            int64_t i = n * s->c_in + c;
            pad_x(s, g, x + i * hw, xp);
            pad_dy(s, g, dy + i * p, dp);
            __m256 acc[9];
            for (int t = 0; t < 9; t++)
                acc[t] = _mm256_loadu_ps(pk + c * DWB_PART + t * 8);
            plane_dw(s, g, xp, dp, acc);
            for (int t = 0; t < 9; t++)
                _mm256_storeu_ps(pk + c * DWB_PART + t * 8, acc[t]);
            if (dx && g->s == 1)
                plane_dx_s1(s, g, dp, w + c * 9, dx + i * hw);
            else if (dx)
                plane_dx_s2(s, g, dp, w + c * 9, dx + i * hw);
        }
}

QH_AVX2 static void reduce_dw(const qh_conv2d_shape *s, const dwb_split *d, int64_t c, const float *part, float *dw)
{
    for (int t = 0; t < 9; t++) {
        const float *q = part + c * DWB_PART + t * 8;
        __m256 v = _mm256_loadu_ps(q);
        for (int64_t k = 1; k < d->chunks; k++)
            v = _mm256_add_ps(v, _mm256_loadu_ps(q + k * s->c_in * DWB_PART));
        float l[8];
        _mm256_storeu_ps(l, v);
        dw[c * 9 + t] = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    }
}

static bool dw3x3_shape_ok(const qh_conv2d_shape *s)
{
    return s->groups > 1 && s->groups == s->c_in && s->groups == s->c_out && s->kh == 3 && s->kw == 3 &&
           s->ph == 1 && s->pw == 1 && s->sh == s->sw && (s->sh == 1 || s->sh == 2) && s->n > 0;
}
#endif

bool qh_k_dwconv3x3_bwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                            float *dw)
{
#if defined(__x86_64__) || defined(__i386__)
    if (!dw3x3_shape_ok(s) || !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return false;
    dwb_geom g = geom_of(s);
    dwb_split d = split_of(s);
    int nt = qh_threads();
    size_t part_floats = (size_t)(d.chunks * s->c_in * DWB_PART);
    float *bufs = malloc(sizeof(float) * (g.floats * (size_t)nt + part_floats));
    if (!bufs)
        return false;
    float *part = bufs + g.floats * (size_t)nt;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#ifdef _OPENMP
        float *scratch = bufs + g.floats * (size_t)omp_get_thread_num();
#else
        float *scratch = bufs;
#endif
#pragma omp for schedule(static)
        for (int64_t task = 0; task < d.chunks * d.blocks; task++)
            task_bwd(s, &g, &d, task, x, w, dy, dx, part, scratch);
#pragma omp for schedule(static)
        for (int64_t c = 0; c < s->c_in; c++)
            reduce_dw(s, &d, c, part, dw);
    }
    free(bufs);
    return true;
#else
    (void)s, (void)x, (void)w, (void)dy, (void)dx, (void)dw;
    return false;
#endif
}
