/* qh_conv2d.c - 2-D convolution (NCHW, weights [c_out, c_in/groups, kh, kw], dilation 1).
 *
 * Optimized path, per image and group: forward = im2col written straight into the packed GEMM
 * operand + the packed GEMM; dw = inner products of dy rows with im2col rows; dx = W^T dy by GEMM,
 * then col2im. Depthwise convolutions use direct loops.
 * The batch is cut into chunks whose number depends on the shape only; a chunk is one OpenMP task
 * with its own slot of the workspace (im2col buffer, GEMM packing, dw partial). dw is the sum of the
 * chunk partials in chunk order, so every result is identical for any thread count. */
#include <stdlib.h>
#include <string.h>

#include "qh_gemm_impl.h"
#include "qh_kernels.h"
#include "qhost/qh_parallel.h"

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

size_t qh_k_conv2d_ws_size(const qh_conv2d_shape *s)
{
    if (is_depthwise(s))
        return 0;
    conv_plan pl = plan_of(s);
    return sizeof(float) * ((size_t)pl.chunks * (pl.slot_floats + pl.dw_floats)) + 64;
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

static void depthwise_fwd(const qh_conv2d_shape *s, const float *x, const float *w, const float *b, float *y)
{
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
