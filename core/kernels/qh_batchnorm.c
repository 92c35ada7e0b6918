/* qh_batchnorm.c - 2-D batch normalization (train forward, eval forward, backward) and the fused
 * scale/shift/activation epilogue that folded batch norm becomes at inference.
 *
 * Statistics are summed in double. The reference sums each channel serially. The optimized version
 * walks the (image, channel) planes in memory order, which the hardware prefetchers follow (a
 * channel's planes lie a channel stride apart, so a walk by channel stalls on every plane), and
 * keeps per-plane partials in double lanes (AVX2): the sum and the squared deviations about the
 * plane's own mean, or the two backward sums. Each channel then combines its planes in image order
 * (Chan et al.'s pairwise update for the variance). Every partial is computed by one thread and
 * combined in one fixed order, so the results are identical for any thread count, and agree with
 * the reference to rounding, not bit for bit. The elementwise passes use the same float operations
 * in the same order (separate multiply and add, no FMA) in both versions, so with equal
 * coefficients (eval, epilogue) they are bit-identical.
 *
 * Per element the forward computes (x - mean) * scale + beta rather than PyTorch's folded
 * x * scale + (beta - mean * scale): subtracting first keeps the precision when |mean| >> std. */
#include "qh_kernels.h"

#include <math.h>
#include <stdlib.h>

#include "qhost/qh_parallel.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QH_X86 1
#endif

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768

/* Running statistics as PyTorch updates them: the batch variance enters unbiased, m / (m - 1).
 * PyTorch refuses m == 1 in training; here the biased value (0) is used instead of a division by
 * zero, and an empty batch leaves the statistics alone. */
static void update_running(double mean, double var, int64_t m, double momentum, float *rm, float *rv)
{
    if (m <= 0)
        return;
    double unbiased = m > 1 ? var * (double)m / (double)(m - 1) : var;
    *rm = (float)((1.0 - momentum) * (double)*rm + momentum * mean);
    *rv = (float)((1.0 - momentum) * (double)*rv + momentum * unbiased);
}

static float eval_scale(float gamma, float rv, double eps)
{
    return (float)((double)gamma / sqrt((double)rv + eps));
}

/* ---------------------------------------------------------------- references */

void qh_k_bn2d_fwd_train_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                 const float *beta, double eps, double momentum, float *running_mean,
                                 float *running_var, float *y, float *save_mean, float *save_invstd)
{
    int64_t m = n * hw;
    for (int64_t ch = 0; ch < c; ch++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++)
                sum += x[(i * c + ch) * hw + j];
        double mean = m > 0 ? sum / (double)m : 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                double d = x[(i * c + ch) * hw + j] - mean;
                sq += d * d;
            }
        double var = m > 0 ? sq / (double)m : 0.0;
        double invstd = 1.0 / sqrt(var + eps);
        float fm = (float)mean, scale = (float)(invstd * gamma[ch]);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                y[k] = (x[k] - fm) * scale + beta[ch];
            }
        save_mean[ch] = fm;
        save_invstd[ch] = (float)invstd;
        update_running(mean, var, m, momentum, &running_mean[ch], &running_var[ch]);
    }
}

/* The training forward, then the activation: what the graph runs as batchnorm + ReLU/ReLU6. */
void qh_k_bn2d_fwd_train_act_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                     const float *beta, double eps, double momentum, float *running_mean,
                                     float *running_var, int relu, float *y, float *save_mean, float *save_invstd)
{
    qh_k_bn2d_fwd_train_f32_ref(n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var, y, save_mean,
                                save_invstd);
    if (relu == 1)
        qh_k_relu_fwd_f32_ref(n * c * hw, y, y);
    else if (relu == 6)
        qh_k_relu6_fwd_f32_ref(n * c * hw, y, y);
}

void qh_k_bn2d_fwd_eval_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                const float *beta, const float *running_mean, const float *running_var, double eps,
                                float *y)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++) {
            float scale = eval_scale(gamma[ch], running_var[ch], eps);
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                y[k] = (x[k] - running_mean[ch]) * scale + beta[ch];
            }
        }
}

/* dx = invstd * gamma / m * (m * dy - sum(dy) - xhat * sum(dy * xhat)), written per element as
 * dy * a + ((x - mean) * b + c) with a, b, c per channel. */
void qh_k_bn2d_bwd_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy, const float *gamma,
                           const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    double m = (double)(n * hw);
    for (int64_t ch = 0; ch < c; ch++) {
        double sdy = 0.0, sdyx = 0.0, mean = save_mean[ch], invstd = save_invstd[ch];
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                sdy += dy[k];
                sdyx += (double)dy[k] * ((double)x[k] - mean);
            }
        dbeta[ch] = (float)sdy;
        dgamma[ch] = (float)(sdyx * invstd);
        if (!dx || m == 0.0)
            continue;
        double k1 = invstd * gamma[ch];
        float a = (float)k1, b = (float)(-k1 * invstd * invstd * sdyx / m), cc = (float)(-k1 * sdy / m);
        float fm = save_mean[ch];
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                dx[k] = dy[k] * a + ((x[k] - fm) * b + cc);
            }
    }
}

void qh_k_scale_shift_act_f32_ref(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
                                  const float *shift, int relu, float *y)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                float v = x[k] * scale[ch] + shift[ch];
                if (relu)
                    v = v > 0.0f ? v : 0.0f;
                if (relu == 6)
                    v = v < 6.0f ? v : 6.0f;
                y[k] = v;
            }
}

/* ---------------------------------------------------------------- per-segment operations
 * A channel is n segments of hw contiguous floats. The optimized kernels run these on each
 * segment; the table picks the AVX2 or the portable set once per call. */

typedef struct seg_ops {
    double (*sum)(const float *x, int64_t len);
    double (*sq_dev)(const float *x, int64_t len, double mean);
    void (*bwd_sums)(const float *x, const float *dy, int64_t len, double mean, double *sdy, double *sdyx);
    void (*affine)(const float *x, float *y, int64_t len, float sub, float mul, float add, int relu);
    void (*bwd_dx)(const float *x, const float *dy, float *dx, int64_t len, float mean, float a, float b, float c);
    void (*scale_act)(const float *x, float *y, int64_t len, float mul, float add, int relu);
} seg_ops;

static double sum_plain(const float *x, int64_t len)
{
    double s = 0.0;
    for (int64_t j = 0; j < len; j++)
        s += x[j];
    return s;
}

static double sq_dev_plain(const float *x, int64_t len, double mean)
{
    double s = 0.0;
    for (int64_t j = 0; j < len; j++) {
        double d = x[j] - mean;
        s += d * d;
    }
    return s;
}

static void bwd_sums_plain(const float *x, const float *dy, int64_t len, double mean, double *sdy, double *sdyx)
{
    double s1 = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < len; j++) {
        s1 += dy[j];
        s2 += (double)dy[j] * ((double)x[j] - mean);
    }
    *sdy += s1;
    *sdyx += s2;
}

/* relu: 0 none, 1 ReLU, 6 ReLU6 after the affine map (the fused training forward) */
static void affine_plain(const float *x, float *y, int64_t len, float sub, float mul, float add, int relu)
{
    for (int64_t j = 0; j < len; j++) {
        float v = (x[j] - sub) * mul + add;
        if (relu)
            v = v > 0.0f ? v : 0.0f;
        if (relu == 6)
            v = v < 6.0f ? v : 6.0f;
        y[j] = v;
    }
}

static void bwd_dx_plain(const float *x, const float *dy, float *dx, int64_t len, float mean, float a, float b,
                         float c)
{
    for (int64_t j = 0; j < len; j++)
        dx[j] = dy[j] * a + ((x[j] - mean) * b + c);
}

static void scale_act_plain(const float *x, float *y, int64_t len, float mul, float add, int relu)
{
    for (int64_t j = 0; j < len; j++) {
        float v = x[j] * mul + add;
        if (relu)
            v = v > 0.0f ? v : 0.0f;
        if (relu == 6)
            v = v < 6.0f ? v : 6.0f;
        y[j] = v;
    }
}

#ifdef QH_X86
static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* Eight floats widened to two double vectors. */
__attribute__((target("avx2,fma"))) static inline void widen(const float *p, __m256d *lo, __m256d *hi)
{
    __m256 v = _mm256_loadu_ps(p);
    *lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    *hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
}

/* Lanes added in a fixed order, so the result does not depend on anything but the data. */
__attribute__((target("avx2,fma"))) static inline double hsum(__m256d a)
{
    double l[4];
    _mm256_storeu_pd(l, a);
    return (l[0] + l[1]) + (l[2] + l[3]);
}

/* Four accumulators (16 floats a step) so the adds' latency does not bound the loop. */
__attribute__((target("avx2,fma"))) static double sum_avx2(const float *x, int64_t len)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m256d l0, h0, l1, h1;
        widen(x + j, &l0, &h0);
        widen(x + j + 8, &l1, &h1);
        a0 = _mm256_add_pd(a0, l0);
        a1 = _mm256_add_pd(a1, h0);
        a2 = _mm256_add_pd(a2, l1);
        a3 = _mm256_add_pd(a3, h1);
    }
    for (; j + 8 <= len; j += 8) {
        __m256d lo, hi;
        widen(x + j, &lo, &hi);
        a0 = _mm256_add_pd(a0, lo);
        a1 = _mm256_add_pd(a1, hi);
    }
    return hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3))) + sum_plain(x + j, len - j);
}

__attribute__((target("avx2,fma"))) static double sq_dev_avx2(const float *x, int64_t len, double mean)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, mu = _mm256_set1_pd(mean);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m256d l0, h0, l1, h1;
        widen(x + j, &l0, &h0);
        widen(x + j + 8, &l1, &h1);
        l0 = _mm256_sub_pd(l0, mu);
        h0 = _mm256_sub_pd(h0, mu);
        l1 = _mm256_sub_pd(l1, mu);
        h1 = _mm256_sub_pd(h1, mu);
        a0 = _mm256_fmadd_pd(l0, l0, a0);
        a1 = _mm256_fmadd_pd(h0, h0, a1);
        a2 = _mm256_fmadd_pd(l1, l1, a2);
        a3 = _mm256_fmadd_pd(h1, h1, a3);
    }
    for (; j + 8 <= len; j += 8) {
        __m256d lo, hi;
        widen(x + j, &lo, &hi);
        lo = _mm256_sub_pd(lo, mu);
        hi = _mm256_sub_pd(hi, mu);
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    return hsum(_mm256_add_pd(_mm256_add_pd(a0, a1), _mm256_add_pd(a2, a3))) + sq_dev_plain(x + j, len - j, mean);
}

__attribute__((target("avx2,fma"))) static void bwd_sums_avx2(const float *x, const float *dy, int64_t len,
                                                              double mean, double *sdy, double *sdyx)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = s0, s2 = s0, s3 = s0, d0 = s0, d1 = s0, d2 = s0, d3 = s0,
            mu = _mm256_set1_pd(mean);
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
        __m256d xl, xh, gl, gh, yl, yh, fl, fh;
        widen(x + j, &xl, &xh);
        widen(dy + j, &gl, &gh);
        widen(x + j + 8, &yl, &yh);
        widen(dy + j + 8, &fl, &fh);
        s0 = _mm256_add_pd(s0, gl);
        s1 = _mm256_add_pd(s1, gh);
        s2 = _mm256_add_pd(s2, fl);
        s3 = _mm256_add_pd(s3, fh);
        d0 = _mm256_fmadd_pd(gl, _mm256_sub_pd(xl, mu), d0);
        d1 = _mm256_fmadd_pd(gh, _mm256_sub_pd(xh, mu), d1);
        d2 = _mm256_fmadd_pd(fl, _mm256_sub_pd(yl, mu), d2);
        d3 = _mm256_fmadd_pd(fh, _mm256_sub_pd(yh, mu), d3);
    }
    s0 = _mm256_add_pd(s0, s2);
    s1 = _mm256_add_pd(s1, s3);
    d0 = _mm256_add_pd(d0, d2);
    d1 = _mm256_add_pd(d1, d3);
    for (; j + 8 <= len; j += 8) {
        __m256d xl, xh, gl, gh;
        widen(x + j, &xl, &xh);
        widen(dy + j, &gl, &gh);
        s0 = _mm256_add_pd(s0, gl);
        s1 = _mm256_add_pd(s1, gh);
        d0 = _mm256_fmadd_pd(gl, _mm256_sub_pd(xl, mu), d0);
        d1 = _mm256_fmadd_pd(gh, _mm256_sub_pd(xh, mu), d1);
    }
    *sdy += hsum(_mm256_add_pd(s0, s1));
    *sdyx += hsum(_mm256_add_pd(d0, d1));
    bwd_sums_plain(x + j, dy + j, len - j, mean, sdy, sdyx);
}

/* maxps(v, 0) returns 0 for NaN like the scalar (v > 0 ? v : 0); v is no NaN by the minps. */
__attribute__((target("avx2,fma"))) static void affine_avx2(const float *x, float *y, int64_t len, float sub,
                                                            float mul, float add, int relu)
{
    __m256 vs = _mm256_set1_ps(sub), vm = _mm256_set1_ps(mul), va = _mm256_set1_ps(add), zero = _mm256_setzero_ps(),
           six = _mm256_set1_ps(6.0f);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vs), vm), va);
        if (relu)
            v = _mm256_max_ps(v, zero);
        if (relu == 6)
            v = _mm256_min_ps(v, six);
        _mm256_storeu_ps(y + j, v);
    }
    affine_plain(x + j, y + j, len - j, sub, mul, add, relu);
}

__attribute__((target("avx2,fma"))) static void bwd_dx_avx2(const float *x, const float *dy, float *dx,
                                                            int64_t len, float mean, float a, float b, float c)
{
    __m256 vm = _mm256_set1_ps(mean), va = _mm256_set1_ps(a), vb = _mm256_set1_ps(b), vc = _mm256_set1_ps(c);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 t = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vb), vc);
        _mm256_storeu_ps(dx + j, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + j), va), t));
    }
    bwd_dx_plain(x + j, dy + j, dx + j, len - j, mean, a, b, c);
}

/* maxps(v, 0) returns 0 for NaN like the scalar (v > 0 ? v : 0); v is no NaN by the minps. */
__attribute__((target("avx2,fma"))) static void scale_act_avx2(const float *x, float *y, int64_t len, float mul,
                                                               float add, int relu)
{
    __m256 vm = _mm256_set1_ps(mul), va = _mm256_set1_ps(add), zero = _mm256_setzero_ps(),
           six = _mm256_set1_ps(6.0f);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + j), vm), va);
        if (relu)
            v = _mm256_max_ps(v, zero);
        if (relu == 6)
            v = _mm256_min_ps(v, six);
        _mm256_storeu_ps(y + j, v);
    }
    scale_act_plain(x + j, y + j, len - j, mul, add, relu);
}

static const seg_ops ops_avx2 = {sum_avx2, sq_dev_avx2, bwd_sums_avx2, affine_avx2, bwd_dx_avx2, scale_act_avx2};
#endif

static const seg_ops ops_plain = {sum_plain, sq_dev_plain, bwd_sums_plain, affine_plain, bwd_dx_plain,
                                  scale_act_plain};

static const seg_ops *pick_ops(void)
{
#ifdef QH_X86
    if (have_avx2())
        return &ops_avx2;
#endif
    return &ops_plain;
}

static int team(int64_t elements)
{
    return elements < PAR_MIN ? 1 : qh_threads();
}

/* ---------------------------------------------------------------- optimized entry points */

/* Per-plane partials: forward (sum, squared deviations about the plane mean), backward (sum of dy,
 * sum of dy * (x - mean)). */
typedef struct plane_part {
    double a, b;
} plane_part;

/* Mean and biased variance of channel ch from its n plane partials, in image order. Chan et al.:
 * M2 = sum_i (M2_i + hw * (mean_i - mean)^2). */
static void combine_stats(const plane_part *pp, int64_t n, int64_t c, int64_t hw, int64_t ch, double *mean,
                          double *var)
{
    double m = (double)(n * hw), sum = 0.0, m2 = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += pp[i * c + ch].a;
    *mean = m > 0 ? sum / m : 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = pp[i * c + ch].a / (double)hw - *mean;
        m2 += pp[i * c + ch].b + (double)hw * d * d;
    }
    *var = m > 0 ? m2 / m : 0.0;
}

static void bn_train(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                     double eps, double momentum, float *running_mean, float *running_var, int relu, float *y,
                     float *save_mean, float *save_invstd)
{
    const seg_ops *o = pick_ops();
    plane_part *pp = hw > 0 ? malloc(sizeof *pp * (size_t)(n * c) + sizeof(float) * (size_t)c) : NULL;
    if (!pp) { /* no memory for the partials (or empty planes): slow but right */
        qh_k_bn2d_fwd_train_act_f32_ref(n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var, relu, y,
                                        save_mean, save_invstd);
        return;
    }
    float *scale = (float *)(pp + n * c); /* per channel */
    int nt = team(n * c * hw);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n * c; p++) {
            pp[p].a = o->sum(x + p * hw, hw);
            pp[p].b = o->sq_dev(x + p * hw, hw, pp[p].a / (double)hw); /* the plane is in L1 by now */
        }
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < c; ch++) {
            double mean, var;
            combine_stats(pp, n, c, hw, ch, &mean, &var);
            double invstd = 1.0 / sqrt(var + eps);
            save_mean[ch] = (float)mean;
            save_invstd[ch] = (float)invstd;
            scale[ch] = (float)(invstd * gamma[ch]);
            update_running(mean, var, n * hw, momentum, &running_mean[ch], &running_var[ch]);
        }
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n * c; p++) {
            int64_t ch = p % c;
            o->affine(x + p * hw, y + p * hw, hw, save_mean[ch], scale[ch], beta[ch], relu);
        }
    }
    free(pp);
}

void qh_k_bn2d_fwd_train_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                             double eps, double momentum, float *running_mean, float *running_var, float *y,
                             float *save_mean, float *save_invstd)
{
    bn_train(n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var, 0, y, save_mean, save_invstd);
}

void qh_k_bn2d_fwd_train_act_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma,
                                 const float *beta, double eps, double momentum, float *running_mean,
                                 float *running_var, int relu, float *y, float *save_mean, float *save_invstd)
{
    bn_train(n, c, hw, x, gamma, beta, eps, momentum, running_mean, running_var, relu, y, save_mean, save_invstd);
}

/* Parallel over (image, channel) planes: no sums, so any split is deterministic. */
void qh_k_bn2d_fwd_eval_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, double eps, float *y)
{
    const seg_ops *o = pick_ops();
    int nt = team(n * c * hw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++) {
        int64_t ch = p % c;
        o->affine(x + p * hw, y + p * hw, hw, running_mean[ch], eval_scale(gamma[ch], running_var[ch], eps),
                  beta[ch], 0);
    }
}

void qh_k_bn2d_bwd_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    const seg_ops *o = pick_ops();
    plane_part *pp = hw > 0 ? malloc(sizeof *pp * (size_t)(n * c) + sizeof(float) * (size_t)(3 * c)) : NULL;
    if (!pp) {
        qh_k_bn2d_bwd_f32_ref(n, c, hw, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
        return;
    }
    float *coef = (float *)(pp + n * c); /* a, b, c of dx per channel */
    double m = (double)(n * hw);
    int nt = team(n * c * hw);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n * c; p++) {
            pp[p].a = pp[p].b = 0.0;
            o->bwd_sums(x + p * hw, dy + p * hw, hw, save_mean[p % c], &pp[p].a, &pp[p].b);
        }
#pragma omp for schedule(static)
        for (int64_t ch = 0; ch < c; ch++) {
            double sdy = 0.0, sdyx = 0.0, invstd = save_invstd[ch];
            for (int64_t i = 0; i < n; i++) {
                sdy += pp[i * c + ch].a;
                sdyx += pp[i * c + ch].b;
            }
            dbeta[ch] = (float)sdy;
            dgamma[ch] = (float)(sdyx * invstd);
            double k1 = invstd * gamma[ch];
            coef[3 * ch] = (float)k1;
            coef[3 * ch + 1] = (float)(-k1 * invstd * invstd * sdyx / m);
            coef[3 * ch + 2] = (float)(-k1 * sdy / m);
        }
        if (dx) {
#pragma omp for schedule(static)
            for (int64_t p = 0; p < n * c; p++) {
                const float *k = coef + 3 * (p % c);
                o->bwd_dx(x + p * hw, dy + p * hw, dx + p * hw, hw, save_mean[p % c], k[0], k[1], k[2]);
            }
        }
    }
    free(pp);
}

void qh_k_scale_shift_act_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *scale,
                              const float *shift, int relu, float *y)
{
    const seg_ops *o = pick_ops();
    int nt = team(n * c * hw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t p = 0; p < n * c; p++)
        o->scale_act(x + p * hw, y + p * hw, hw, scale[p % c], shift[p % c], relu);
}
