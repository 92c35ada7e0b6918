/* qh_batchnorm.c - 2-D batch normalization (train forward, eval forward, backward) and the fused
 * scale/shift/activation epilogue that folded batch norm becomes at inference.
 *
 * Statistics are summed in double, one channel at a time, entirely inside one thread: the work is
 * split over channels, so every sum has the same order for any thread count. The reference sums
 * serially; the optimized version sums in four double lanes (AVX2), a different but fixed order,
 * so it agrees with the reference to rounding, not bit for bit. The elementwise passes use the
 * same float operations in the same order (separate multiply and add, no FMA) in both versions,
 * so with equal coefficients (eval, epilogue) they are bit-identical.
 *
 * Per element the forward computes (x - mean) * scale + beta rather than PyTorch's folded
 * x * scale + (beta - mean * scale): subtracting first keeps the precision when |mean| >> std. */
#include "qh_kernels.h"

#include <math.h>

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
    void (*affine)(const float *x, float *y, int64_t len, float sub, float mul, float add);
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

static void affine_plain(const float *x, float *y, int64_t len, float sub, float mul, float add)
{
    for (int64_t j = 0; j < len; j++)
        y[j] = (x[j] - sub) * mul + add;
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

__attribute__((target("avx2,fma"))) static double sum_avx2(const float *x, int64_t len)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256d lo, hi;
        widen(x + j, &lo, &hi);
        a0 = _mm256_add_pd(a0, lo);
        a1 = _mm256_add_pd(a1, hi);
    }
    return hsum(_mm256_add_pd(a0, a1)) + sum_plain(x + j, len - j);
}

__attribute__((target("avx2,fma"))) static double sq_dev_avx2(const float *x, int64_t len, double mean)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd(), mu = _mm256_set1_pd(mean);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256d lo, hi;
        widen(x + j, &lo, &hi);
        lo = _mm256_sub_pd(lo, mu);
        hi = _mm256_sub_pd(hi, mu);
        a0 = _mm256_fmadd_pd(lo, lo, a0);
        a1 = _mm256_fmadd_pd(hi, hi, a1);
    }
    return hsum(_mm256_add_pd(a0, a1)) + sq_dev_plain(x + j, len - j, mean);
}

__attribute__((target("avx2,fma"))) static void bwd_sums_avx2(const float *x, const float *dy, int64_t len,
                                                              double mean, double *sdy, double *sdyx)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd(), d0 = _mm256_setzero_pd(),
            d1 = _mm256_setzero_pd(), mu = _mm256_set1_pd(mean);
    int64_t j = 0;
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

__attribute__((target("avx2,fma"))) static void affine_avx2(const float *x, float *y, int64_t len, float sub,
                                                            float mul, float add)
{
    __m256 vs = _mm256_set1_ps(sub), vm = _mm256_set1_ps(mul), va = _mm256_set1_ps(add);
    int64_t j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vs), vm);
        _mm256_storeu_ps(y + j, _mm256_add_ps(v, va));
    }
    affine_plain(x + j, y + j, len - j, sub, mul, add);
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

static void train_channel(const seg_ops *o, int64_t n, int64_t c, int64_t hw, int64_t ch, const float *x,
                          const float *gamma, const float *beta, double eps, double momentum, float *rm, float *rv,
                          float *y, float *save_mean, float *save_invstd)
{
    int64_t m = n * hw;
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += o->sum(x + (i * c + ch) * hw, hw);
    double mean = m > 0 ? sum / (double)m : 0.0;
    for (int64_t i = 0; i < n; i++)
        sq += o->sq_dev(x + (i * c + ch) * hw, hw, mean);
    double var = m > 0 ? sq / (double)m : 0.0;
    double invstd = 1.0 / sqrt(var + eps);
    float fm = (float)mean, scale = (float)(invstd * gamma[ch]);
    for (int64_t i = 0; i < n; i++)
        o->affine(x + (i * c + ch) * hw, y + (i * c + ch) * hw, hw, fm, scale, beta[ch]);
    save_mean[ch] = fm;
    save_invstd[ch] = (float)invstd;
    update_running(mean, var, m, momentum, &rm[ch], &rv[ch]);
}

void qh_k_bn2d_fwd_train_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *gamma, const float *beta,
                             double eps, double momentum, float *running_mean, float *running_var, float *y,
                             float *save_mean, float *save_invstd)
{
    const seg_ops *o = pick_ops();
    int nt = team(n * c * hw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t ch = 0; ch < c; ch++)
        train_channel(o, n, c, hw, ch, x, gamma, beta, eps, momentum, running_mean, running_var, y, save_mean,
                      save_invstd);
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
                  beta[ch]);
    }
}

static void bwd_channel(const seg_ops *o, int64_t n, int64_t c, int64_t hw, int64_t ch, const float *x,
                        const float *dy, const float *gamma, const float *save_mean, const float *save_invstd,
                        float *dx, float *dgamma, float *dbeta)
{
    double m = (double)(n * hw), sdy = 0.0, sdyx = 0.0, invstd = save_invstd[ch];
    for (int64_t i = 0; i < n; i++)
        o->bwd_sums(x + (i * c + ch) * hw, dy + (i * c + ch) * hw, hw, save_mean[ch], &sdy, &sdyx);
    dbeta[ch] = (float)sdy;
    dgamma[ch] = (float)(sdyx * invstd);
    if (!dx || m == 0.0)
        return;
    double k1 = invstd * gamma[ch];
    float a = (float)k1, b = (float)(-k1 * invstd * invstd * sdyx / m), cc = (float)(-k1 * sdy / m);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = (i * c + ch) * hw;
        o->bwd_dx(x + off, dy + off, dx + off, hw, save_mean[ch], a, b, cc);
    }
}

void qh_k_bn2d_bwd_f32(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy, const float *gamma,
                       const float *save_mean, const float *save_invstd, float *dx, float *dgamma, float *dbeta)
{
    const seg_ops *o = pick_ops();
    int nt = team(n * c * hw);
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int64_t ch = 0; ch < c; ch++)
        bwd_channel(o, n, c, hw, ch, x, dy, gamma, save_mean, save_invstd, dx, dgamma, dbeta);
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
