/* qh_conv2d.c - 2-D convolution (NCHW, weights [c_out, c_in/groups, kh, kw], dilation 1).
 *
 * Optimized path, per image and group: forward = im2col written straight into the packed GEMM
 * operand + the packed GEMM; dw = inner products of dy rows with im2col rows; dx = W^T dy by GEMM,
 * then col2im. Depthwise convolutions use direct loops.
 * The batch is cut into chunks whose number depends on the shape only; a chunk is one OpenMP task
 * with its own slot of the workspace (im2col buffer, GEMM packing, dw partial). dw is the sum of the
 * chunk partials in chunk order, so every result is identical for any thread count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qh_gemm_impl.h"
#include "qh_kernels.h"
#include "qhost/qh_parallel.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#define QH_CONV_X86 1
#define QH_AVX2 __attribute__((target("avx2,fma")))
#include <immintrin.h>
#endif

/* Enough chunks to balance a few threads; more only costs dw partials. */
#define MAX_CHUNKS 16
/* Workspace bound beyond which fewer chunks (less parallelism) are used. */
#define WS_BUDGET_FLOATS ((size_t)64 << 20)

void qh_conv2d_shape_finish(qh_conv2d_shape *s)
{
    s->h_out = (s->h_in + 2 * s->ph - s->kh) / s->sh + 1;
    s->w_out = (s->w_in + 2 * s->pw - s->kw) / s->sw + 1;
}

/* ---------------------------------------------------------------- reference (direct loops, double sums) */

static int64_t cig_of(const qh_conv2d_shape *s) { return s->c_in / s->groups; }
static int64_t cog_of(const qh_conv2d_shape *s) { return s->c_out / s->groups; }

static float conv_ref_at(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, int64_t n,
                         int64_t oc, int64_t oh, int64_t ow)
{
    int64_t cig = cig_of(s), g = oc / cog_of(s);
    double acc = b ? b[oc] : 0.0;
    for (int64_t ci = 0; ci < cig; ci++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                int64_t ih = oh * s->sh - s->ph + ki, iw = ow * s->sw - s->pw + kj;
                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in)
                    continue;
                double xv = x[((n * s->c_in + g * cig + ci) * s->h_in + ih) * s->w_in + iw];
                acc += xv * w[((oc * cig + ci) * s->kh + ki) * s->kw + kj];
            }
    return (float)acc;
}

void qh_k_conv2d_fwd_f32_ref(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y)
{
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oc = 0; oc < s->c_out; oc++)
            for (int64_t oh = 0; oh < s->h_out; oh++)
                for (int64_t ow = 0; ow < s->w_out; ow++)
                    y[((n * s->c_out + oc) * s->h_out + oh) * s->w_out + ow] = conv_ref_at(s, x, w, b, n, oc, oh, ow);
}

/* Output index o reached from input index i through kernel tap k, or -1. */
static int64_t out_index(int64_t i, int64_t k, int64_t stride, int64_t pad, int64_t n_out)
{
    int64_t t = i + pad - k;
    if (t < 0 || t % stride != 0 || t / stride >= n_out)
        return -1;
    return t / stride;
}

/* dx gathered: every input pixel sums the outputs its taps reach. */
static float conv_ref_dx_at(const qh_conv2d_shape *s, const float *w, const float *dy, int64_t n, int64_t c,
                            int64_t ih, int64_t iw)
{
    int64_t cig = cig_of(s), cog = cog_of(s), g = c / cig, ci = c % cig;
    double acc = 0.0;
    for (int64_t oc = g * cog; oc < (g + 1) * cog; oc++)
        for (int64_t ki = 0; ki < s->kh; ki++)
            for (int64_t kj = 0; kj < s->kw; kj++) {
                int64_t oh = out_index(ih, ki, s->sh, s->ph, s->h_out);
                int64_t ow = out_index(iw, kj, s->sw, s->pw, s->w_out);
                if (oh < 0 || ow < 0)
                    continue;
                double d = dy[((n * s->c_out + oc) * s->h_out + oh) * s->w_out + ow];
                acc += d * w[((oc * cig + ci) * s->kh + ki) * s->kw + kj];
            }
    return (float)acc;
}

static float conv_ref_dw_at(const qh_conv2d_shape *s, const float *x, const float *dy, int64_t oc, int64_t ci,
                            int64_t ki, int64_t kj)
{
    int64_t c = oc / cog_of(s) * cig_of(s) + ci;
    double acc = 0.0;
    for (int64_t n = 0; n < s->n; n++)
        for (int64_t oh = 0; oh < s->h_out; oh++)
            for (int64_t ow = 0; ow < s->w_out; ow++) {
                int64_t ih = oh * s->sh - s->ph + ki, iw = ow * s->sw - s->pw + kj;
                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in)
                    continue;
                double d = dy[((n * s->c_out + oc) * s->h_out + oh) * s->w_out + ow];
                acc += d * x[((n * s->c_in + c) * s->h_in + ih) * s->w_in + iw];
            }
    return (float)acc;
}

void qh_k_conv2d_bwd_f32_ref(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                             float *dw, float *db)
{
    for (int64_t n = 0; dx && n < s->n; n++)
        for (int64_t c = 0; c < s->c_in; c++)
            for (int64_t ih = 0; ih < s->h_in; ih++)
                for (int64_t iw = 0; iw < s->w_in; iw++)
                    dx[((n * s->c_in + c) * s->h_in + ih) * s->w_in + iw] = conv_ref_dx_at(s, w, dy, n, c, ih, iw);
    int64_t cig = cig_of(s);
    for (int64_t oc = 0; oc < s->c_out; oc++)
        for (int64_t ci = 0; ci < cig; ci++)
            for (int64_t ki = 0; ki < s->kh; ki++)
                for (int64_t kj = 0; kj < s->kw; kj++)
                    dw[((oc * cig + ci) * s->kh + ki) * s->kw + kj] = conv_ref_dw_at(s, x, dy, oc, ci, ki, kj);
    int64_t p = s->h_out * s->w_out;
    for (int64_t oc = 0; db && oc < s->c_out; oc++) {
        double acc = 0.0;
        for (int64_t n = 0; n < s->n; n++)
            for (int64_t i = 0; i < p; i++)
                acc += dy[(n * s->c_out + oc) * p + i];
        db[oc] = (float)acc;
    }
}

/* ---------------------------------------------------------------- optimized: geometry and workspace */

typedef struct conv_plan {
    const qh_conv2d_shape *s;
    int64_t cig, cog, kg;    /* channels per group in/out, GEMM depth cig*kh*kw */
    int64_t hw, p;           /* input plane, output plane */
    bool pointwise;          /* 1x1, stride 1, no padding: dx needs no col2im */
    bool fwd_packed;         /* im2col writes the packed GEMM operand (P <= NC) */
    int64_t chunks;          /* batch chunks = workspace slots */
    size_t col_floats;       /* im2col matrix, in whichever layout is largest */
    size_t slot_floats;      /* im2col + one im2col row + GEMM packing of one slot */
    size_t dw_floats;        /* one dw partial */
} conv_plan;

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

static conv_plan plan_of(const qh_conv2d_shape *s)
{
    conv_plan pl = {.s = s, .cig = cig_of(s), .cog = cog_of(s)};
    pl.kg = pl.cig * s->kh * s->kw;
    pl.hw = s->h_in * s->w_in;
    pl.p = s->h_out * s->w_out;
    pl.pointwise = s->kh == 1 && s->kw == 1 && s->sh == 1 && s->sw == 1 && s->ph == 0 && s->pw == 0;
    pl.fwd_packed = pl.p <= QH_GEMM_NC;
    pl.col_floats = max_sz(qh_gemm_pb_floats(pl.p, pl.kg), (size_t)(pl.kg * pl.p));
    size_t pack = max_sz(qh_gemm_pack_floats(pl.cog, pl.p, pl.kg), qh_gemm_pack_floats(pl.kg, pl.p, pl.cog));
    pl.slot_floats = pl.col_floats + (size_t)qh_gemm_pb_npad(pl.p) + pack;
    pl.dw_floats = (size_t)(s->c_out * pl.kg);
    size_t per_chunk = pl.slot_floats + pl.dw_floats;
    int64_t fit = (int64_t)(WS_BUDGET_FLOATS / per_chunk);
    pl.chunks = s->n < MAX_CHUNKS ? s->n : MAX_CHUNKS;
    if (pl.chunks > fit)
        pl.chunks = fit > 1 ? fit : 1;
    return pl;
}

static bool is_depthwise(const qh_conv2d_shape *s)
{
    return s->groups > 1 && s->groups == s->c_in && s->groups == s->c_out;
}

#ifdef QH_CONV_X86
static bool direct_ok(const qh_conv2d_shape *s);
static size_t direct_ws_floats(const qh_conv2d_shape *s);
static bool dx_direct_ok(const qh_conv2d_shape *s);
static size_t dx_ws_floats(const qh_conv2d_shape *s);
static size_t dw_ws_floats(const qh_conv2d_shape *s);
#endif

size_t qh_k_conv2d_ws_size(const qh_conv2d_shape *s)
{
    if (is_depthwise(s))
        return 0;
    conv_plan pl = plan_of(s);
    size_t floats = (size_t)pl.chunks * (pl.slot_floats + pl.dw_floats);
#ifdef QH_CONV_X86
    if (direct_ok(s)) { /* the direct paths' layouts, in the same space (one call at a time) */
        floats = max_sz(floats, max_sz(direct_ws_floats(s), dw_ws_floats(s)));
        if (dx_direct_ok(s))
            floats = max_sz(floats, dx_ws_floats(s));
    }
#endif
    return sizeof(float) * floats + 64;
}

/* One workspace slot: the im2col matrix, a row buffer and the GEMM packing. */
typedef struct slot {
    float *col, *row, *pack, *dw;
} slot;

static slot slot_of(const conv_plan *pl, float *base, int64_t c)
{
    slot sl;
    sl.col = base + (size_t)c * pl->slot_floats;
    sl.row = sl.col + pl->col_floats;
    sl.pack = sl.row + qh_gemm_pb_npad(pl->p);
    sl.dw = base + (size_t)pl->chunks * pl->slot_floats + (size_t)c * pl->dw_floats;
    return sl;
}

static int64_t chunk_begin(const conv_plan *pl, int64_t c) { return c * pl->s->n / pl->chunks; }

/* ---------------------------------------------------------------- im2col / col2im
 * Row t = (ci, ki, kj) of the im2col matrix is input plane ci shifted by the tap; the valid output
 * columns of a tap form one interval [lo, hi), so padding costs a few memsets, not a test per pixel. */

static void tap_range(int64_t k, int64_t stride, int64_t pad, int64_t n_in, int64_t n_out, int64_t *lo, int64_t *hi)
{
    int64_t a = pad - k; /* o * stride >= a */
    int64_t l = a > 0 ? (a + stride - 1) / stride : 0;
    int64_t b = n_in - 1 + pad - k; /* o * stride <= b */
    int64_t h = b >= 0 ? b / stride + 1 : 0;
    *lo = l < n_out ? l : n_out;
    *hi = h < n_out ? h : n_out;
    if (*hi < *lo)
        *hi = *lo;
}

/* row[0, P) = im2col row t of the image (its group's channels start at x). */
static void im2col_row(const conv_plan *pl, const float *x, int64_t t, float *row)
{
    const qh_conv2d_shape *s = pl->s;
    int64_t ci = t / (s->kh * s->kw), ki = t / s->kw % s->kh, kj = t % s->kw;
    int64_t hlo, hhi, wlo, whi, wo = s->w_out;
    tap_range(ki, s->sh, s->ph, s->h_in, s->h_out, &hlo, &hhi);
    tap_range(kj, s->sw, s->pw, s->w_in, wo, &wlo, &whi);
    memset(row, 0, sizeof(float) * (size_t)(hlo * wo));
    for (int64_t oh = hlo; oh < hhi; oh++) {
        float *d = row + oh * wo;
        const float *src = x + ci * pl->hw + (oh * s->sh - s->ph + ki) * s->w_in - s->pw + kj;
        for (int64_t ow = 0; ow < wlo; ow++)
            d[ow] = 0.0f;
        if (s->sw == 1) { /* the common case, as a loop the compiler vectorizes */
            for (int64_t ow = wlo; ow < whi; ow++)
                d[ow] = src[ow];
        } else {
            for (int64_t ow = wlo; ow < whi; ow++)
                d[ow] = src[ow * s->sw];
        }
        for (int64_t ow = whi; ow < wo; ow++)
            d[ow] = 0.0f;
    }
    memset(row + hhi * wo, 0, sizeof(float) * (size_t)((s->h_out - hhi) * wo));
}

/* The plain [kg, P] matrix (for the rare shapes too wide for the packed layout). */
static void im2col(const conv_plan *pl, const float *x, float *col)
{
    for (int64_t t = 0; t < pl->kg; t++)
        im2col_row(pl, x, t, col + t * pl->p);
}

/* The forward GEMM's B = col [kg, P], written directly in packed layout (see qh_gemm_impl.h). */
static void im2col_packed(const conv_plan *pl, const float *x, float *bp, float *row)
{
    int64_t npad = qh_gemm_pb_npad(pl->p);
    for (int64_t j = pl->p; j < npad; j++)
        row[j] = 0.0f;
    for (int64_t t = 0; t < pl->kg; t++) {
        im2col_row(pl, x, t, row);
        int64_t pc = t / QH_GEMM_KC * QH_GEMM_KC, kc = pl->kg - pc < QH_GEMM_KC ? pl->kg - pc : QH_GEMM_KC;
        float *dst = bp + pc * npad + (t - pc) * QH_GEMM_NR;
        for (int64_t j = 0; j < npad; j += QH_GEMM_NR)
            memcpy(dst + j * kc, row + j, sizeof(float) * QH_GEMM_NR);
    }
}

/* dx (one group of one image, zeroed here) = the sum of the tap-shifted rows of dcol. */
static void col2im(const conv_plan *pl, const float *col, float *dx)
{
    const qh_conv2d_shape *s = pl->s;
    memset(dx, 0, sizeof(float) * (size_t)(pl->cig * pl->hw));
    for (int64_t t = 0; t < pl->kg; t++) {
        int64_t ci = t / (s->kh * s->kw), ki = t / s->kw % s->kh, kj = t % s->kw;
        int64_t hlo, hhi, wlo, whi;
        tap_range(ki, s->sh, s->ph, s->h_in, s->h_out, &hlo, &hhi);
        tap_range(kj, s->sw, s->pw, s->w_in, s->w_out, &wlo, &whi);
        for (int64_t oh = hlo; oh < hhi; oh++) {
            const float *src = col + t * pl->p + oh * s->w_out;
            float *d = dx + ci * pl->hw + (oh * s->sh - s->ph + ki) * s->w_in - s->pw + kj;
            if (s->sw == 1) {
                for (int64_t ow = wlo; ow < whi; ow++)
                    d[ow] += src[ow];
            } else {
                for (int64_t ow = wlo; ow < whi; ow++)
                    d[ow * s->sw] += src[ow];
            }
        }
    }
}

/* ---------------------------------------------------------------- im2col + GEMM, per image */

static void fwd_image(const conv_plan *pl, const float *x, const float *w, const float *b, float *y, slot *sl)
{
    const qh_conv2d_shape *s = pl->s;
    for (int64_t g = 0; g < s->groups; g++) {
        const float *xg = x + g * pl->cig * pl->hw;
        const float *wg = w + g * pl->cog * pl->kg;
        float *yg = y + g * pl->cog * pl->p;
        for (int64_t oc = 0; b && oc < pl->cog; oc++)
            for (int64_t i = 0; i < pl->p; i++)
                yg[oc * pl->p + i] = b[g * pl->cog + oc];
        float beta = b ? 1.0f : 0.0f;
        if (pl->fwd_packed) {
            im2col_packed(pl, xg, sl->col, sl->row);
            qh_gemm_serial_pb(false, pl->cog, pl->p, pl->kg, 1.0f, wg, pl->kg, sl->col, beta, yg, pl->p, sl->pack);
        } else {
            im2col(pl, xg, sl->col);
            qh_gemm_serial(false, false, pl->cog, pl->p, pl->kg, 1.0f, wg, pl->kg, sl->col, pl->p, beta, yg, pl->p,
                           sl->pack);
        }
    }
}

/* dw[m, n] (+)= dot(dy row m, col row n) over the P pixels of one image. Both operands are already
 * pixel-contiguous, so an inner-product kernel needs no transposed packing (the packed GEMM would). */
static float lanes_sum8(const float *l)
{
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

static void dw_dot_generic(int64_t M, int64_t N, int64_t P, const float *dy, const float *col, float *dw, bool first)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const float *a = dy + m * P, *b = col + n * P;
            float lane[8] = {0};
            int64_t j = 0;
            for (; j + 8 <= P; j += 8)
                for (int l = 0; l < 8; l++)
                    lane[l] += a[j + l] * b[j + l];
            for (int l = 0; j + l < P; l++)
                lane[l] += a[j + l] * b[j + l];
            float v = lanes_sum8(lane);
            dw[m * N + n] = first ? v : dw[m * N + n] + v;
        }
}

#ifdef QH_CONV_X86
enum { DOT_MB = 4, DOT_NB = 3 }; /* 12 ymm accumulators, 7 loads per 12 FMAs */

QH_AVX2 static void dw_dot_block(int64_t P, const float *const *a, const float *const *b, float out[DOT_MB][DOT_NB])
{
    __m256 acc[DOT_MB][DOT_NB];
    for (int r = 0; r < DOT_MB; r++)
        for (int c = 0; c < DOT_NB; c++)
            acc[r][c] = _mm256_setzero_ps();
    int64_t j = 0;
    for (; j + 8 <= P; j += 8) {
        __m256 vb[DOT_NB];
        for (int c = 0; c < DOT_NB; c++)
            vb[c] = _mm256_loadu_ps(b[c] + j);
        for (int r = 0; r < DOT_MB; r++) {
            __m256 va = _mm256_loadu_ps(a[r] + j);
            for (int c = 0; c < DOT_NB; c++)
                acc[r][c] = _mm256_fmadd_ps(va, vb[c], acc[r][c]);
        }
    }
    if (j < P) { /* tail: masked loads read nothing past the rows */
        __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(P - j)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256 vb[DOT_NB];
        for (int c = 0; c < DOT_NB; c++)
            vb[c] = _mm256_maskload_ps(b[c] + j, mask);
        for (int r = 0; r < DOT_MB; r++) {
            __m256 va = _mm256_maskload_ps(a[r] + j, mask);
            for (int c = 0; c < DOT_NB; c++)
                acc[r][c] = _mm256_fmadd_ps(va, vb[c], acc[r][c]);
        }
    }
    for (int r = 0; r < DOT_MB; r++)
        for (int c = 0; c < DOT_NB; c++) {
            float l[8];
            _mm256_storeu_ps(l, acc[r][c]);
            out[r][c] = lanes_sum8(l);
        }
}

/* Blocks past the edge reuse the last row (clamped pointers) and drop the duplicate results. */
QH_AVX2 static void dw_dot_avx2(int64_t M, int64_t N, int64_t P, const float *dy, const float *col, float *dw,
                                bool first)
{
    for (int64_t m0 = 0; m0 < M; m0 += DOT_MB)
        for (int64_t n0 = 0; n0 < N; n0 += DOT_NB) {
            const float *a[DOT_MB], *b[DOT_NB];
            for (int r = 0; r < DOT_MB; r++)
                a[r] = dy + (m0 + r < M ? m0 + r : M - 1) * P;
            for (int c = 0; c < DOT_NB; c++)
                b[c] = col + (n0 + c < N ? n0 + c : N - 1) * P;
            float out[DOT_MB][DOT_NB];
            dw_dot_block(P, a, b, out);
            for (int r = 0; r < DOT_MB && m0 + r < M; r++)
                for (int c = 0; c < DOT_NB && n0 + c < N; c++) {
                    float *d = dw + (m0 + r) * N + n0 + c;
                    *d = first ? out[r][c] : *d + out[r][c];
                }
        }
}
#endif

static void dw_dot(int64_t M, int64_t N, int64_t P, const float *dy, const float *col, float *dw, bool first)
{
#ifdef QH_CONV_X86
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dw_dot_avx2(M, N, P, dy, col, dw, first);
        return;
    }
#endif
    dw_dot_generic(M, N, P, dy, col, dw, first);
}

/* dw_part (+)= dy col^T for this image (first image of the chunk: overwrite); dx = col2im(W^T dy). */
static void bwd_image(const conv_plan *pl, const float *x, const float *w, const float *dy, float *dx, bool first,
                      slot *sl)
{
    const qh_conv2d_shape *s = pl->s;
    for (int64_t g = 0; g < s->groups; g++) {
        const float *xg = x + g * pl->cig * pl->hw;
        const float *dyg = dy + g * pl->cog * pl->p;
        const float *wg = w + g * pl->cog * pl->kg;
        const float *col = xg;
        if (!pl->pointwise) {
            im2col(pl, xg, sl->col);
            col = sl->col;
        }
        dw_dot(pl->cog, pl->kg, pl->p, dyg, col, sl->dw + g * pl->cog * pl->kg, first);
        if (!dx)
            continue;
        float *dxg = dx + g * pl->cig * pl->hw;
        float *dcol = pl->pointwise ? dxg : sl->col;
        qh_gemm_serial(true, false, pl->kg, pl->p, pl->cog, 1.0f, wg, pl->kg, dyg, pl->p, 0.0f, dcol, pl->p, sl->pack);
        if (!pl->pointwise)
            col2im(pl, dcol, dxg);
    }
}

/* dx alone by the im2col path (W^T dy, then col2im), per chunk of images (groups 1). */
static void dx_gemm(const conv_plan *pl, const float *x, const float *w, const float *dy, float *dx, float *base)
{
    (void)x;
    const qh_conv2d_shape *s = pl->s;
    int64_t in_img = s->c_in * pl->hw, out_img = s->c_out * pl->p;
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (pl->chunks > 1)
    for (int64_t c = 0; c < pl->chunks; c++) {
        slot sl = slot_of(pl, base, c);
        for (int64_t n = chunk_begin(pl, c); n < chunk_begin(pl, c + 1); n++) {
            float *dxn = dx + n * in_img, *dcol = pl->pointwise ? dxn : sl.col;
            qh_gemm_serial(true, false, pl->kg, pl->p, pl->cog, 1.0f, w, pl->kg, dy + n * out_img, pl->p, 0.0f, dcol,
                           pl->p, sl.pack);
            if (!pl->pointwise)
                col2im(pl, dcol, dxn);
        }
    }
}

/* ---------------------------------------------------------------- depthwise (direct loops) */

static void dw_fwd_plane(const qh_conv2d_shape *s, const float *x, const float *w, float bias, float *y)
{
    for (int64_t oh = 0; oh < s->h_out; oh++)
        for (int64_t ow = 0; ow < s->w_out; ow++) {
            float acc = bias;
            for (int64_t ki = 0; ki < s->kh; ki++) {
                int64_t ih = oh * s->sh - s->ph + ki;
                if (ih < 0 || ih >= s->h_in)
                    continue;
                for (int64_t kj = 0; kj < s->kw; kj++) {
                    int64_t iw = ow * s->sw - s->pw + kj;
                    if (iw >= 0 && iw < s->w_in)
                        acc += x[ih * s->w_in + iw] * w[ki * s->kw + kj];
                }
            }
            y[oh * s->w_out + ow] = acc;
        }
}

/* Scatters dy of one plane into dx (accumulating) and/or into the tap gradients dw (accumulating). */
static void dw_bwd_plane(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw)
{
    for (int64_t oh = 0; oh < s->h_out; oh++)
        for (int64_t ki = 0; ki < s->kh; ki++) {
            int64_t ih = oh * s->sh - s->ph + ki;
            if (ih < 0 || ih >= s->h_in)
                continue;
            for (int64_t kj = 0; kj < s->kw; kj++) {
                int64_t wlo, whi;
                tap_range(kj, s->sw, s->pw, s->w_in, s->w_out, &wlo, &whi);
                const float *d = dy + oh * s->w_out;
                int64_t off = ih * s->w_in - s->pw + kj;
                float wv = w[ki * s->kw + kj], acc = 0.0f;
                for (int64_t ow = wlo; ow < whi; ow++) {
                    if (dx)
                        dx[off + ow * s->sw] += d[ow] * wv;
                    acc += d[ow] * x[off + ow * s->sw];
                }
                if (dw)
                    dw[ki * s->kw + kj] += acc;
            }
        }
}

#ifdef QH_CONV_X86
/* AVX2 depthwise plane, 8 output columns per vector. The plane is first copied zero-padded and split
 * by column phase (column c of the padded row goes to phase c % sw at c / sw), so that tap (ki, kj)
 * of 8 consecutive outputs is one contiguous load: phase kj % sw of row oh * sh + ki, from
 * ow + kj / sw. Rows carry 8 floats of zero slack; lanes past w_out are computed but not stored. */
typedef struct dwgeom {
    int64_t hp, wq, row; /* padded rows, floats per phase row, floats per padded row (all phases) */
} dwgeom;

static dwgeom dwgeom_of(const qh_conv2d_shape *s)
{
    dwgeom g = {.hp = s->h_in + 2 * s->ph};
    g.wq = (s->w_in + 2 * s->pw + s->sw - 1) / s->sw + 8;
    g.row = g.wq * s->sw;
    return g;
}

static void dw_phase_plane(const qh_conv2d_shape *s, const dwgeom *g, const float *x, float *buf)
{
    memset(buf, 0, sizeof(float) * (size_t)(g->hp * g->row));
    for (int64_t h = 0; h < s->h_in; h++) {
        float *r = buf + (h + s->ph) * g->row;
        const float *src = x + h * s->w_in;
        if (s->sw == 1) {
            memcpy(r + s->pw, src, sizeof(float) * (size_t)s->w_in);
            continue;
        }
        for (int64_t q = 0; q < s->sw; q++) { /* phase by phase: no division per element */
            int64_t j = q >= s->pw ? 0 : (s->pw - q + s->sw - 1) / s->sw;
            for (int64_t c = j * s->sw + q - s->pw; c < s->w_in; c += s->sw, j++)
                r[q * g->wq + j] = src[c];
        }
    }
}

QH_AVX2 static void dw_fwd_plane_avx2(const qh_conv2d_shape *s, const dwgeom *g, const float *buf, const float *w,
                                      float bias, float *y)
{
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        for (int64_t ow = 0; ow < s->w_out; ow += 8) {
            __m256 acc = _mm256_set1_ps(bias);
            for (int64_t ki = 0; ki < s->kh; ki++) {
                const float *r = buf + (oh * s->sh + ki) * g->row + ow;
                for (int64_t kj = 0; kj < s->kw; kj++)
                    acc = _mm256_fmadd_ps(_mm256_set1_ps(w[ki * s->kw + kj]),
                                          _mm256_loadu_ps(r + kj % s->sw * g->wq + kj / s->sw), acc);
            }
            float *d = y + oh * s->w_out + ow;
            if (ow + 8 <= s->w_out) {
                _mm256_storeu_ps(d, acc);
            } else {
                float t[8];
                _mm256_storeu_ps(t, acc);
                memcpy(d, t, sizeof(float) * (size_t)(s->w_out - ow));
            }
        }
    }
}

/* The 3 x 3 case (MobileNetV2), weights held in registers. */
QH_AVX2 static void dw_fwd_plane_3x3(const qh_conv2d_shape *s, const dwgeom *g, const float *buf, const float *w,
                                     float bias, float *y)
{
    __m256 wv[9];
    const float *col[3];
    for (int k = 0; k < 9; k++)
        wv[k] = _mm256_set1_ps(w[k]);
    for (int kj = 0; kj < 3; kj++) /* offset of tap column kj inside a padded row */
        col[kj] = buf + kj % s->sw * g->wq + kj / s->sw;
    for (int64_t oh = 0; oh < s->h_out; oh++) {
        int64_t r0 = oh * s->sh * g->row;
        for (int64_t ow = 0; ow < s->w_out; ow += 8) {
            __m256 acc = _mm256_set1_ps(bias);
            for (int ki = 0; ki < 3; ki++) {
                int64_t o = r0 + ki * g->row + ow;
                acc = _mm256_fmadd_ps(wv[ki * 3 + 0], _mm256_loadu_ps(col[0] + o), acc);
                acc = _mm256_fmadd_ps(wv[ki * 3 + 1], _mm256_loadu_ps(col[1] + o), acc);
                acc = _mm256_fmadd_ps(wv[ki * 3 + 2], _mm256_loadu_ps(col[2] + o), acc);
            }
            float *d = y + oh * s->w_out + ow;
            if (ow + 8 <= s->w_out) {
                _mm256_storeu_ps(d, acc);
            } else {
                float t[8];
                _mm256_storeu_ps(t, acc);
                memcpy(d, t, sizeof(float) * (size_t)(s->w_out - ow));
            }
        }
    }
}

/* false when no scratch could be had (the caller then runs the plain loops) */
static bool depthwise_fwd_avx2(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y)
{
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return false;
    dwgeom g = dwgeom_of(s);
    int64_t planes = s->n * s->c_in, hw = s->h_in * s->w_in, p = s->h_out * s->w_out, kk = s->kh * s->kw;
    int nt = qh_threads();
    float *bufs = malloc(sizeof(float) * (size_t)(nt * g.hp * g.row));
    if (!bufs)
        return false;
#pragma omp parallel num_threads(nt)
    {
#ifdef _OPENMP
        float *buf = bufs + (size_t)omp_get_thread_num() * (size_t)(g.hp * g.row);
#else
        float *buf = bufs;
#endif
#pragma omp for schedule(static)
        for (int64_t i = 0; i < planes; i++) {
            int64_t c = i % s->c_in;
            dw_phase_plane(s, &g, x + i * hw, buf);
            if (s->kh == 3 && s->kw == 3)
                dw_fwd_plane_3x3(s, &g, buf, w + c * kk, b ? b[c] : 0.0f, y + i * p);
            else
                dw_fwd_plane_avx2(s, &g, buf, w + c * kk, b ? b[c] : 0.0f, y + i * p);
        }
    }
    free(bufs);
    return true;
}
#endif

static void depthwise_fwd(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y)
{
#ifdef QH_CONV_X86
    if (depthwise_fwd_avx2(s, x, w, b, y))
        return;
#endif
    int64_t planes = s->n * s->c_in, hw = s->h_in * s->w_in, p = s->h_out * s->w_out, kk = s->kh * s->kw;
#pragma omp parallel for schedule(static) num_threads(qh_threads())
    for (int64_t i = 0; i < planes; i++) {
        int64_t c = i % s->c_in;
        dw_fwd_plane(s, x + i * hw, w + c * kk, b ? b[c] : 0.0f, y + i * p);
    }
}

static void depthwise_bwd(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                          float *dw)
{
    int64_t hw = s->h_in * s->w_in, p = s->h_out * s->w_out, kk = s->kh * s->kw, c_n = s->c_in;
    /* per channel, images in order: the dw sum order does not depend on the threads */
#pragma omp parallel for schedule(static) num_threads(qh_threads())
    for (int64_t c = 0; c < c_n; c++) {
        memset(dw + c * kk, 0, sizeof(float) * (size_t)kk);
        for (int64_t n = 0; n < s->n; n++) {
            int64_t i = n * c_n + c;
            float *dxp = dx ? dx + i * hw : NULL;
            if (dxp)
                memset(dxp, 0, sizeof(float) * (size_t)hw);
            dw_bwd_plane(s, x + i * hw, w + c * kk, dy + i * p, dxp, dw + c * kk);
        }
    }
}

/* ---------------------------------------------------------------- direct-packed forward (groups 1, AVX2)
 * No im2col matrix: each image is copied once into zero-padded planes (1x1 convolutions without
 * padding read it in place), and each 16-pixel panel of the GEMM operand (at most DKC taps x 16
 * pixels = 16 KiB, so it stays in L1) is gathered right before the micro-kernels consume it, for
 * every output channel at once. The weights are packed into 6-row panels once per call. Each output
 * element is computed by one fixed sequence of operations whatever the threads, so results are
 * identical for any thread count. */

#ifdef QH_CONV_X86
enum { DMR = 6, DNR = 16, DKC = 256, DMAX_SLOTS = MAX_CHUNKS };

typedef struct dplan {
    const qh_conv2d_shape *s;
    int64_t kg, p, mpan, mpad, hp, wp, hwp;
    int64_t g;                 /* images per GEMM (pixels of several images share panels) */
    int64_t xstride;           /* floats between the images the panels read */
    bool padded;
    size_t wpk_floats, idx_floats, slot_floats;
} dplan;

static size_t round8(size_t n) { return (n + 7) / 8 * 8; }

/* One B panel, and 8 floats of slack for gather_panel's spills. */
#define PANEL_FLOATS (DKC * DNR + 8)

static dplan dplan_of(const qh_conv2d_shape *s)
{
    dplan d = {.s = s, .kg = s->c_in * s->kh * s->kw, .p = s->h_out * s->w_out};
    d.mpan = (s->c_out + DMR - 1) / DMR;
    d.mpad = d.mpan * DMR;
    d.padded = s->ph > 0 || s->pw > 0;
    d.hp = s->h_in + 2 * s->ph;
    d.wp = s->w_in + 2 * s->pw;
    d.hwp = d.hp * d.wp;
    /* Small planes waste most of their last 16-pixel panel (7x7: 64 columns for 49): then 16 /
     * gcd(P, 16) images share the panels, so that none is partial. */
    d.g = 1;
    if (d.p % DNR != 0 && d.p < 512)
        for (d.g = 2; (d.g * d.p) % DNR != 0; d.g++)
            ;
    d.xstride = d.padded ? s->c_in * d.hwp : s->c_in * s->h_in * s->w_in;
    d.wpk_floats = round8((size_t)(d.mpad * d.kg));
    d.idx_floats = round8((size_t)(d.kg + d.g * d.p)); /* int32 tap and pixel offsets */
    d.slot_floats = round8((size_t)(d.padded ? d.g * s->c_in * d.hwp : 0)) + (d.g > 1 ? (size_t)d.mpad * DNR : 0) +
                    PANEL_FLOATS;
    return d;
}

static bool direct_ok(const qh_conv2d_shape *s)
{
    /* int32 offsets into the padded image */
    return s->groups == 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           s->c_in * (s->h_in + 2 * s->ph) * (s->w_in + 2 * s->pw) < INT32_MAX;
}

static size_t direct_ws_floats(const qh_conv2d_shape *s)
{
    dplan d = dplan_of(s);
    return d.wpk_floats + d.idx_floats + DMAX_SLOTS * d.slot_floats;
}

/* wpk[k0 * mpad + ip * DMR * kc + k * DMR + r] = w[ip * DMR + r][k0 + k], zero past c_out. */
static void pack_weights(const dplan *d, const float *w, float *wpk)
{
    for (int64_t k0 = 0; k0 < d->kg; k0 += DKC) {
        int64_t kc = d->kg - k0 < DKC ? d->kg - k0 : DKC;
        for (int64_t ip = 0; ip < d->mpan; ip++) {
            float *dst = wpk + k0 * d->mpad + ip * DMR * kc;
            for (int64_t r = 0; r < DMR; r++) {
                int64_t oc = ip * DMR + r;
                for (int64_t k = 0; k < kc; k++)
                    dst[k * DMR + r] = oc < d->s->c_out ? w[oc * d->kg + k0 + k] : 0.0f;
            }
        }
    }
}

/* Offsets into the (padded) image: tap t = (ci, ki, kj) and output pixel j = (oh, ow). */
static void fill_offsets(const dplan *d, int32_t *toff, int32_t *poff)
{
    const qh_conv2d_shape *s = d->s;
    for (int64_t t = 0; t < d->kg; t++) {
        int64_t ci = t / (s->kh * s->kw), ki = t / s->kw % s->kh, kj = t % s->kw;
        toff[t] = (int32_t)(ci * d->hwp + ki * d->wp + kj);
    }
    for (int64_t j = 0; j < d->p; j++)
        poff[j] = (int32_t)(j / s->w_out * s->sh * d->wp + j % s->w_out * s->sw);
    for (int64_t j = d->p; j < d->g * d->p; j++)
        poff[j] = (int32_t)(j / d->p * d->xstride) + poff[j % d->p];
}

static void pad_image(const dplan *d, const float *x, float *xp)
{
    const qh_conv2d_shape *s = d->s;
    for (int64_t c = 0; c < s->c_in; c++) {
        float *pl = xp + c * d->hwp;
        memset(pl, 0, sizeof(float) * (size_t)(s->ph * d->wp));
        for (int64_t h = 0; h < s->h_in; h++) {
            float *row = pl + (h + s->ph) * d->wp;
            memset(row, 0, sizeof(float) * (size_t)s->pw);
            memcpy(row + s->pw, x + (c * s->h_in + h) * s->w_in, sizeof(float) * (size_t)s->w_in);
            memset(row + s->pw + s->w_in, 0, sizeof(float) * (size_t)s->pw);
        }
        memset(pl + (s->ph + s->h_in) * d->wp, 0, sizeof(float) * (size_t)(s->ph * d->wp));
    }
}

/* dst[t][l] = xp[toff[k0 + t] + poff[j0 + l]] for l < nr (lanes past nr repeat pixel j0: those
 * columns only feed outputs that are not stored). Halves of 8 pixels that are contiguous in the
 * image (stride 1, one row) are plain loads. With runs_ok (xp is the padded copy, followed by more
 * workspace, and dst has DNR floats of slack) a panel of up to three contiguous runs is copied 8
 * floats at a time: a run's copy may spill past its end, into lanes the next run (or the next
 * tap's row) overwrites afterwards; spills past nr only reach columns that are not stored. */
QH_AVX2 static void gather_panel(const float *xp, const int32_t *toff, const int32_t *poff, int64_t k0, int64_t kc,
                                 int64_t j0, int64_t nr, float *dst, bool runs_ok)
{
    int32_t idx[DNR];
    for (int l = 0; l < DNR; l++)
        idx[l] = poff[j0 + (l < nr ? l : 0)];
    const int32_t *to = toff + k0;
    if (idx[7] - idx[0] == 7 && idx[15] - idx[8] == 7) {
        const float *a = xp + idx[0], *b = xp + idx[8];
        for (int64_t t = 0; t < kc; t++) {
            _mm256_store_ps(dst + t * DNR, _mm256_loadu_ps(a + to[t]));
            _mm256_store_ps(dst + t * DNR + 8, _mm256_loadu_ps(b + to[t]));
        }
        return;
    }
    if (runs_ok) { /* a few contiguous runs: overlapping 8-wide copies, in order (see below) */
        int run_lane[DNR], run_len[DNR], nrun = 0;
        for (int l = 0; l < nr; l++) {
            if (l > 0 && idx[l] == idx[l - 1] + 1) {
                run_len[nrun - 1]++;
                continue;
            }
            run_lane[nrun] = l;
            run_len[nrun++] = 1;
        }
        if (nrun <= 3) {
            for (int64_t t = 0; t < kc; t++) {
                const float *src = xp + to[t];
                float *d = dst + t * DNR;
                for (int r = 0; r < nrun; r++)
                    for (int c = 0; c < run_len[r]; c += 8)
                        _mm256_storeu_ps(d + run_lane[r] + c, _mm256_loadu_ps(src + idx[run_lane[r]] + c));
            }
            return;
        }
    }
    __m256i i0 = _mm256_loadu_si256((const __m256i *)idx), i1 = _mm256_loadu_si256((const __m256i *)(idx + 8));
    for (int64_t t = 0; t < kc; t++) {
        _mm256_store_ps(dst + t * DNR, _mm256_i32gather_ps(xp + to[t], i0, 4));
        _mm256_store_ps(dst + t * DNR + 8, _mm256_i32gather_ps(xp + to[t], i1, 4));
    }
}

/* Row r of the tile: c (+)= acc (+ bias on the first depth block); a partial last panel (nr < 16)
 * goes through a small buffer. */
QH_AVX2 static inline __attribute__((always_inline)) void dstore(float *cr, __m256 lo, __m256 hi, int64_t nr,
                                                                bool acc, const float *bias)
{
    if (!acc && bias) {
        __m256 bv = _mm256_broadcast_ss(bias);
        lo = _mm256_add_ps(lo, bv);
        hi = _mm256_add_ps(hi, bv);
    }
    if (nr == DNR) {
        if (acc) {
            lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr));
            hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8));
        }
        _mm256_storeu_ps(cr, lo);
        _mm256_storeu_ps(cr + 8, hi);
        return;
    }
    float t[DNR];
    _mm256_storeu_ps(t, lo);
    _mm256_storeu_ps(t + 8, hi);
    for (int64_t j = 0; j < nr; j++)
        cr[j] = acc ? cr[j] + t[j] : t[j];
}

/* c[mr x nr] (+)= a-panel . b-panel. mr is a constant in each instance below; the accumulators are
 * named variables (an array would live on the stack and be stored every iteration). */
#define QH_DROW(r)                                          \
    if (mr > (r)) {                                         \
        __m256 av = _mm256_broadcast_ss(a + (r));           \
        c##r##0 = _mm256_fmadd_ps(av, b0, c##r##0);         \
        c##r##1 = _mm256_fmadd_ps(av, b1, c##r##1);         \
    }
#define QH_DSTORE(r)                                                                          \
    if (mr > (r))                                                                             \
        dstore(c + (r) * ldc, c##r##0, c##r##1, nr, acc, bias ? bias + (r) : NULL);

QH_AVX2 static inline __attribute__((always_inline)) void dukr(const int mr, int64_t kc, const float *a,
                                                              const float *b, float *c, int64_t ldc, int64_t nr,
                                                              bool acc, const float *bias)
{
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int64_t k = 0; k < kc; k++, a += DMR, b += DNR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
        QH_DROW(0)
        QH_DROW(1)
        QH_DROW(2)
        QH_DROW(3)
        QH_DROW(4)
        QH_DROW(5)
    }
    QH_DSTORE(0)
    QH_DSTORE(1)
    QH_DSTORE(2)
    QH_DSTORE(3)
    QH_DSTORE(4)
    QH_DSTORE(5)
}

typedef void (*dukr_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t nr, bool acc,
                        const float *bias);
#define QH_DUKR(m)                                                                                              \
    QH_AVX2 static void dukr_##m(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, int64_t nr, \
                                 bool acc, const float *bias)                                                   \
    {                                                                                                           \
        dukr(m, kc, a, b, c, ldc, nr, acc, bias);                                                               \
    }
QH_DUKR(1)
QH_DUKR(2)
QH_DUKR(3)
QH_DUKR(4)
QH_DUKR(5)
QH_DUKR(6)
static const dukr_fn dukr_rows[DMR + 1] = {NULL, dukr_1, dukr_2, dukr_3, dukr_4, dukr_5, dukr_6};

/* Output pixels [j_lo, j_hi) of one image, all channels. */
static void direct_pixels(const dplan *d, const float *xp, const float *wpk, const int32_t *toff,
                          const int32_t *poff, const float *b, float *y, int64_t j_lo, int64_t j_hi, float *panel)
{
    int64_t c_out = d->s->c_out;
    for (int64_t j0 = j_lo; j0 < j_hi; j0 += DNR) {
        int64_t nr = j_hi - j0 < DNR ? j_hi - j0 : DNR;
        for (int64_t k0 = 0; k0 < d->kg; k0 += DKC) {
            int64_t kc = d->kg - k0 < DKC ? d->kg - k0 : DKC;
            gather_panel(xp, toff, poff, k0, kc, j0, nr, panel, d->padded);
            for (int64_t ip = 0; ip < d->mpan; ip++) {
                int64_t m0 = ip * DMR, mr = c_out - m0 < DMR ? c_out - m0 : DMR;
                dukr_rows[mr](kc, wpk + k0 * d->mpad + m0 * kc, panel, y + m0 * d->p + j0, d->p, nr, k0 > 0,
                              b ? b + m0 : NULL);
            }
        }
    }
}

static void direct_group(const dplan *d, const float *xp, const float *wpk, const int32_t *toff,
                         const int32_t *poff, const float *b, float *y, int64_t imgs, float *panel, float *cblk);

/* Groups of d->g images, one group per task. */
static void direct_fwd_grouped(const dplan *d, const float *x, const float *wpk, const int32_t *toff,
                               const int32_t *poff, const float *b, float *y, float *slots, int nt)
{
    const qh_conv2d_shape *s = d->s;
    int64_t groups = (s->n + d->g - 1) / d->g, in_img = s->c_in * s->h_in * s->w_in, out_img = s->c_out * d->p;
#pragma omp parallel num_threads(nt) if (nt > 1 && groups > 1)
    {
#ifdef _OPENMP
        float *slot = slots + (size_t)omp_get_thread_num() * d->slot_floats;
#else
        float *slot = slots;
#endif
        float *panel = slot + d->slot_floats - PANEL_FLOATS, *cblk = panel - d->mpad * DNR;
#pragma omp for schedule(static)
        for (int64_t gi = 0; gi < groups; gi++) {
            int64_t n0 = gi * d->g, imgs = s->n - n0 < d->g ? s->n - n0 : d->g;
            const float *xp = x + n0 * in_img;
            if (d->padded) {
                for (int64_t i = 0; i < imgs; i++)
                    pad_image(d, x + (n0 + i) * in_img, slot + i * d->xstride);
                xp = slot;
            }
            direct_group(d, xp, wpk, toff, poff, b, y + n0 * out_img, imgs, panel, cblk);
        }
    }
}

/* Images [n0, n0 + imgs) sharing panels: each panel's tile goes through cblk and is scattered. */
static void direct_group(const dplan *d, const float *xp, const float *wpk, const int32_t *toff,
                         const int32_t *poff, const float *b, float *y, int64_t imgs, float *panel, float *cblk)
{
    int64_t c_out = d->s->c_out, cols = imgs * d->p;
    for (int64_t j0 = 0; j0 < cols; j0 += DNR) {
        int64_t nr = cols - j0 < DNR ? cols - j0 : DNR;
        for (int64_t k0 = 0; k0 < d->kg; k0 += DKC) {
            int64_t kc = d->kg - k0 < DKC ? d->kg - k0 : DKC;
            gather_panel(xp, toff, poff, k0, kc, j0, nr, panel, d->padded);
            for (int64_t ip = 0; ip < d->mpan; ip++) {
                int64_t m0 = ip * DMR, mr = c_out - m0 < DMR ? c_out - m0 : DMR;
                dukr_rows[mr](kc, wpk + k0 * d->mpad + m0 * kc, panel, cblk + m0 * DNR, DNR, nr, k0 > 0,
                              b ? b + m0 : NULL);
            }
        }
        /* per image that the panel touches: one contiguous segment of every channel row */
        for (int64_t l = 0; l < nr;) {
            int64_t img = (j0 + l) / d->p, pix = (j0 + l) % d->p;
            int64_t len = d->p - pix < nr - l ? d->p - pix : nr - l;
            float *yo = y + img * c_out * d->p + pix;
            for (int64_t oc = 0; oc < c_out; oc++)
                memcpy(yo + oc * d->p, cblk + oc * DNR + l, sizeof(float) * (size_t)len);
            l += len;
        }
    }
}

static void direct_fwd(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y,
                       float *base)
{
    dplan d = dplan_of(s);
    float *wpk = base;
    int32_t *toff = (int32_t *)(base + d.wpk_floats), *poff = toff + d.kg;
    float *slots = base + d.wpk_floats + d.idx_floats;
    pack_weights(&d, w, wpk);
    fill_offsets(&d, toff, poff);
    int nt = qh_threads() < DMAX_SLOTS ? qh_threads() : DMAX_SLOTS;
    if (d.g > 1) {
        direct_fwd_grouped(&d, x, wpk, toff, poff, b, y, slots, nt);
        return;
    }
    /* few images: split each image's pixels too (a split only decides who computes what) */
    int64_t npan = (d.p + DNR - 1) / DNR, parts = s->n >= 4 * nt ? 1 : (4 * nt + s->n - 1) / s->n;
    parts = parts < npan ? parts : npan;
    int64_t items = s->n * parts, in_img = s->c_in * s->h_in * s->w_in, out_img = s->c_out * d.p;
#pragma omp parallel num_threads(nt) if (nt > 1 && items > 1)
    {
#ifdef _OPENMP
        float *slot = slots + (size_t)omp_get_thread_num() * d.slot_floats;
#else
        float *slot = slots;
#endif
        float *panel = slot + d.slot_floats - PANEL_FLOATS;
        int64_t padded_img = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            int64_t n = it / parts, part = it % parts;
            const float *xp = x + n * in_img;
            if (d.padded) {
                if (padded_img != n)
                    pad_image(&d, xp, slot);
                padded_img = n;
                xp = slot;
            }
            int64_t j_lo = part * npan / parts * DNR, j_hi = (part + 1) * npan / parts * DNR;
            direct_pixels(&d, xp, wpk, toff, poff, b, y + n * out_img, j_lo, j_hi < d.p ? j_hi : d.p, panel);
        }
    }
}
/* ---------------------------------------------------------------- direct backward (groups 1, AVX2)
 * dx: for stride 1 the input gradient is itself a stride-1 convolution of dy with the transposed,
 * flipped weights (w'[ci][oc][kh-1-ki][kw-1-kj], padding k-1-p), so it runs on direct_fwd.
 * dw: per chunk of images, dw_part[c_out x kg] += dy (c_out x pixels) . col^T (pixels x kg) as a
 * packed GEMM over depth blocks of DPK pixels: A = 6 channels of dy interleaved, B = 16 taps of
 * the padded image gathered per pixel (8 x 8 register transposes where 8 pixels are contiguous).
 * Chunks depend on the shape only and their partials are summed in chunk order. */

enum { DPK = 256 };

static bool dx_direct_ok(const qh_conv2d_shape *s)
{
    return s->sh == 1 && s->sw == 1 && s->ph <= s->kh - 1 && s->pw <= s->kw - 1;
}

/* The stride-1 convolution whose output is dx (input dy). */
static qh_conv2d_shape dx_shape(const qh_conv2d_shape *s)
{
    qh_conv2d_shape t = {.n = s->n, .c_in = s->c_out, .h_in = s->h_out, .w_in = s->w_out, .c_out = s->c_in,
                         .kh = s->kh, .kw = s->kw, .sh = 1, .sw = 1, .ph = s->kh - 1 - s->ph,
                         .pw = s->kw - 1 - s->pw, .groups = 1};
    qh_conv2d_shape_finish(&t);
    return t;
}

static size_t dx_ws_floats(const qh_conv2d_shape *s)
{
    qh_conv2d_shape t = dx_shape(s);
    return direct_ws_floats(&t) + round8((size_t)(s->c_out * s->c_in * s->kh * s->kw));
}

static void dx_direct(const qh_conv2d_shape *s, const float *w, const float *dy, float *dx, float *base)
{
    qh_conv2d_shape t = dx_shape(s);
    float *wt = base + direct_ws_floats(&t);
    int64_t kk = s->kh * s->kw;
    for (int64_t oc = 0; oc < s->c_out; oc++)
        for (int64_t ci = 0; ci < s->c_in; ci++)
            for (int64_t k = 0; k < kk; k++)
                wt[(ci * s->c_out + oc) * kk + (kk - 1 - k)] = w[(oc * s->c_in + ci) * kk + k];
    direct_fwd(&t, dy, wt, NULL, dx, base);
}

typedef struct dwplan {
    dplan d;
    int64_t chunks;
    size_t apack_floats, slot_floats, part_floats;
} dwplan;

static dwplan dwplan_of(const qh_conv2d_shape *s)
{
    dwplan w = {.d = dplan_of(s)};
    w.apack_floats = round8((size_t)(w.d.mpad * DPK));
    w.part_floats = round8((size_t)(s->c_out * w.d.kg));
    w.slot_floats = round8((size_t)(w.d.padded ? s->c_in * w.d.hwp : 0)) + w.apack_floats + DPK * DNR +
                    w.part_floats;
    int64_t fit = (int64_t)(WS_BUDGET_FLOATS / w.slot_floats);
    w.chunks = s->n < MAX_CHUNKS ? s->n : MAX_CHUNKS;
    if (w.chunks > fit)
        w.chunks = fit > 1 ? fit : 1;
    return w;
}

static size_t dw_ws_floats(const qh_conv2d_shape *s)
{
    dwplan w = dwplan_of(s);
    return w.d.idx_floats + (size_t)w.chunks * w.slot_floats;
}

/* a[ip][k * DMR + r] = dy[(ip * DMR + r) * P + p0 + k], zero past c_out. */
static void pack_dy(const dplan *d, const float *dy, int64_t p0, int64_t kc, float *a)
{
    for (int64_t ip = 0; ip < d->mpan; ip++, a += DMR * kc)
        for (int64_t r = 0; r < DMR; r++) {
            int64_t oc = ip * DMR + r;
            if (oc >= d->s->c_out) {
                for (int64_t k = 0; k < kc; k++)
                    a[k * DMR + r] = 0.0f;
                continue;
            }
            const float *src = dy + oc * d->p + p0;
            for (int64_t k = 0; k < kc; k++)
                a[k * DMR + r] = src[k];
        }
}

/* Rows r0..r7 (8 floats each) transposed: out[j * stride + i] = r_i[j]. */
QH_AVX2 static inline void transpose8_store(__m256 r0, __m256 r1, __m256 r2, __m256 r3, __m256 r4, __m256 r5,
                                            __m256 r6, __m256 r7, float *out, int64_t stride)
{
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_store_ps(out + 0 * stride, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_store_ps(out + 1 * stride, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_store_ps(out + 2 * stride, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_store_ps(out + 3 * stride, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_store_ps(out + 4 * stride, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_store_ps(out + 5 * stride, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_store_ps(out + 6 * stride, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_store_ps(out + 7 * stride, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* b[k * 16 + l] = xp[toff[n0 + l] + poff[p0 + k]], taps past nr repeat tap n0 (their columns are
 * not stored). */
QH_AVX2 static void gather_taps(const float *xp, const int32_t *toff, const int32_t *poff, int64_t n0, int64_t nr,
                                int64_t p0, int64_t kc, float *b)
{
    const float *src[DNR];
    for (int l = 0; l < DNR; l++)
        src[l] = xp + toff[n0 + (l < nr ? l : 0)];
    const int32_t *po = poff + p0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        if (po[k + 7] - po[k] != 7) {
            for (int64_t kk = k; kk < k + 8; kk++)
                for (int l = 0; l < DNR; l++)
                    b[kk * DNR + l] = src[l][po[kk]];
            continue;
        }
        for (int h = 0; h < 2; h++) {
            const float *const *s8 = src + 8 * h;
            int32_t o = po[k];
            transpose8_store(_mm256_loadu_ps(s8[0] + o), _mm256_loadu_ps(s8[1] + o), _mm256_loadu_ps(s8[2] + o),
                             _mm256_loadu_ps(s8[3] + o), _mm256_loadu_ps(s8[4] + o), _mm256_loadu_ps(s8[5] + o),
                             _mm256_loadu_ps(s8[6] + o), _mm256_loadu_ps(s8[7] + o), b + k * DNR + 8 * h, DNR);
        }
    }
    for (; k < kc; k++)
        for (int l = 0; l < DNR; l++)
            b[k * DNR + l] = src[l][po[k]];
}

/* part (+)= dy . col^T of one image (first: overwrite). */
static void dw_image(const dwplan *w, const float *xp, const int32_t *toff, const int32_t *poff, const float *dy,
                     float *apack, float *bpanel, float *part, bool first)
{
    const dplan *d = &w->d;
    int64_t c_out = d->s->c_out;
    for (int64_t p0 = 0; p0 < d->p; p0 += DPK) {
        int64_t kc = d->p - p0 < DPK ? d->p - p0 : DPK;
        pack_dy(d, dy, p0, kc, apack);
        for (int64_t n0 = 0; n0 < d->kg; n0 += DNR) {
            int64_t nr = d->kg - n0 < DNR ? d->kg - n0 : DNR;
            gather_taps(xp, toff, poff, n0, nr, p0, kc, bpanel);
            for (int64_t ip = 0; ip < d->mpan; ip++) {
                int64_t m0 = ip * DMR, mr = c_out - m0 < DMR ? c_out - m0 : DMR;
                dukr_rows[mr](kc, apack + m0 * kc, bpanel, part + m0 * d->kg + n0, d->kg, nr, !(first && p0 == 0),
                              NULL);
            }
        }
    }
}

static void dw_direct(const qh_conv2d_shape *s, const float *x, const float *dy, float *dw, float *base)
{
    dwplan w = dwplan_of(s);
    const dplan *d = &w.d;
    int32_t *toff = (int32_t *)base, *poff = toff + d->kg;
    float *slots = base + d->idx_floats;
    fill_offsets(d, toff, poff);
    int64_t in_img = s->c_in * s->h_in * s->w_in, out_img = s->c_out * d->p;
    int nt = qh_threads();
#pragma omp parallel num_threads(nt) if (nt > 1 && w.chunks > 1)
    {
#pragma omp for schedule(static)
        for (int64_t c = 0; c < w.chunks; c++) {
            float *xpad = slots + (size_t)c * w.slot_floats;
            float *part = xpad + w.slot_floats - w.part_floats;
            float *bpanel = part - DPK * DNR, *apack = bpanel - w.apack_floats;
            int64_t lo = c * s->n / w.chunks, hi = (c + 1) * s->n / w.chunks;
            for (int64_t n = lo; n < hi; n++) {
                const float *xp = x + n * in_img;
                if (d->padded) {
                    pad_image(d, xp, xpad);
                    xp = xpad;
                }
                dw_image(&w, xp, toff, poff, dy + n * out_img, apack, bpanel, part, n == lo);
            }
        }
        /* partials summed in chunk order, each element by one thread */
        size_t total = (size_t)(s->c_out * d->kg);
#pragma omp for schedule(static)
        for (size_t e = 0; e < total; e++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < w.chunks; c++)
                acc += slots[(size_t)c * w.slot_floats + w.slot_floats - w.part_floats + e];
            dw[e] = acc;
        }
    }
}

#endif

/* ---------------------------------------------------------------- optimized entry points */

static float *ws_floats(void *ws) { return (float *)(((uintptr_t)ws + 31) & ~(uintptr_t)31); }

void qh_k_conv2d_fwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y,
                         void *ws)
{
    if (is_depthwise(s)) {
        depthwise_fwd(s, x, w, b, y);
        return;
    }
    conv_plan pl = plan_of(s);
    void *own = ws ? NULL : malloc(qh_k_conv2d_ws_size(s));
    if (!ws && !own) {
        qh_k_conv2d_fwd_f32_ref(s, x, w, b, y); /* no memory for scratch: slow but right */
        return;
    }
    float *base = ws_floats(ws ? ws : own);
#ifdef QH_CONV_X86
    if (direct_ok(s)) {
        direct_fwd(s, x, w, b, y, base);
        free(own);
        return;
    }
#endif
    int64_t in_img = s->c_in * pl.hw, out_img = s->c_out * pl.p;
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (pl.chunks > 1)
    for (int64_t c = 0; c < pl.chunks; c++) {
        slot sl = slot_of(&pl, base, c);
        for (int64_t n = chunk_begin(&pl, c); n < chunk_begin(&pl, c + 1); n++)
            fwd_image(&pl, x + n * in_img, w, b, y + n * out_img, &sl);
    }
    free(own);
}

/* db[oc]: eight interleaved partial sums per plane (so the loop vectorizes), combined in a fixed order. */
static float plane_sum(const float *d, int64_t p)
{
    float lane[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= p; i += 8)
        for (int l = 0; l < 8; l++)
            lane[l] += d[i + l];
    float acc = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (; i < p; i++)
        acc += d[i];
    return acc;
}

void qh_k_conv2d_bwd_f32(const qh_conv2d_shape *s, const float *x, const float *w, const float *dy, float *dx,
                         float *dw, float *db, void *ws)
{
    int64_t p = s->h_out * s->w_out;
    for (int64_t oc = 0; db && oc < s->c_out; oc++) {
        float acc = 0.0f;
        for (int64_t n = 0; n < s->n; n++)
            acc += plane_sum(dy + (n * s->c_out + oc) * p, p);
        db[oc] = acc;
    }
    if (is_depthwise(s)) {
        if (!qh_k_dwconv3x3_bwd_f32(s, x, w, dy, dx, dw)) /* the 3x3 MobileNetV2 shapes, else plain loops */
            depthwise_bwd(s, x, w, dy, dx, dw);
        return;
    }
    conv_plan pl = plan_of(s);
    void *own = ws ? NULL : malloc(qh_k_conv2d_ws_size(s));
    if (!ws && !own) {
        qh_k_conv2d_bwd_f32_ref(s, x, w, dy, dx, dw, db);
        return;
    }
    float *base = ws_floats(ws ? ws : own);
#ifdef QH_CONV_X86
    if (direct_ok(s)) {
        dw_direct(s, x, dy, dw, base);
        if (dx && dx_direct_ok(s))
            dx_direct(s, w, dy, dx, base);
        else if (dx)
            dx_gemm(&pl, x, w, dy, dx, base);
        free(own);
        return;
    }
#endif
    int64_t in_img = s->c_in * pl.hw, out_img = s->c_out * pl.p;
#pragma omp parallel num_threads(qh_threads()) if (pl.chunks > 1)
    {
#pragma omp for schedule(static)
        for (int64_t c = 0; c < pl.chunks; c++) {
            slot sl = slot_of(&pl, base, c);
            for (int64_t n = chunk_begin(&pl, c); n < chunk_begin(&pl, c + 1); n++)
                bwd_image(&pl, x + n * in_img, w, dy + n * out_img, dx ? dx + n * in_img : NULL,
                          n == chunk_begin(&pl, c), &sl);
        }
        /* partials summed in chunk order, each element by one thread */
#pragma omp for schedule(static)
        for (size_t e = 0; e < pl.dw_floats; e++) {
            float acc = 0.0f;
            for (int64_t c = 0; c < pl.chunks; c++)
                acc += slot_of(&pl, base, c).dw[e];
            dw[e] = acc;
        }
    }
    free(own);
}
