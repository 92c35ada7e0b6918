/* gpfq_kernel.c - GPFQ's greedy path-following loop over a layer's neurons.
 *
 * Per neuron n and input coordinate t (m samples each):
 *   u += w[n,t] X_t;  c = Q(<u, X~_t> / ||X~_t||^2);  u -= value(c) X~_t.
 * The update of step t - 1 and the first half of step t touch the same u, so the fast loop does
 *   u = u - q[t-1] X~_{t-1} + w[n,t] X_t,  acc += u X~_t
 * in one pass over the samples, for a block of up to four neurons that share the loads of X_t,
 * X~_t and X~_{t-1}. Columns are contiguous (the caller transposes once per layer) and padded to
 * 16 floats, so the vector loop has no tail. The dot product of a neuron is one 8-lane float
 * accumulator summed in a fixed order: the same for every block size and thread count, so the
 * codes do not depend on either.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpfq_impl.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GPFQ_X86 1
#endif

/* ---------------------------------------------------------------- shared pieces */

/* Below this much work (elements, or neuron x coordinate x sample updates) a second thread costs
 * more than it saves: waking it is a scheduler round trip, long on a busy machine. */
#define GPFQ_PAR_MIN_COPY (1 << 20)
#define GPFQ_PAR_MIN_WORK (1 << 24)

void gpfq_transpose(const float *x, int64_t m, int64_t cols, int64_t mpad, float *xt, float *nrm)
{
    enum { TB = 64 };
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (m * cols >= GPFQ_PAR_MIN_COPY)
    for (int64_t t0 = 0; t0 < cols; t0 += TB) {
        int64_t t1 = t0 + TB < cols ? t0 + TB : cols;
        for (int64_t i0 = 0; i0 < m; i0 += TB) {
            int64_t i1 = i0 + TB < m ? i0 + TB : m;
            for (int64_t t = t0; t < t1; t++)
                for (int64_t i = i0; i < i1; i++)
                    xt[t * mpad + i] = x[i * cols + t];
        }
        for (int64_t t = t0; t < t1; t++) {
            double s = 0.0;
            for (int64_t i = m; i < mpad; i++)
                xt[t * mpad + i] = 0.0f;
            for (int64_t i = 0; i < m; i++)
                s += (double)xt[t * mpad + i] * xt[t * mpad + i];
            if (nrm)
                nrm[t] = (float)s;
        }
    }
}

/* The code of neuron n at t from its dot product (0 for a pruned weight or a zero column). */
static int32_t step_code(const gpfq_problem *p, int64_t n, int64_t t, double dot, qh_rng *r)
{
    float z = p->nrm[t] > 0.0f ? (float)dot / p->nrm[t] : 0.0f;
    int32_t c = gpfq_code(&p->a, z, r);
    return p->mask && !p->mask[n * p->cols + t] ? 0 : c;
}

/* ---------------------------------------------------------------- reference: one neuron at a time */

double gpfq_run_ref(const gpfq_problem *p, int32_t *codes)
{
    float *u = malloc(sizeof(float) * (size_t)(p->m > 0 ? p->m : 1));
    if (!u)
        return NAN;
    double unorm = 0.0;
    for (int64_t n = 0; n < p->rows; n++) {
        qh_rng r = qh_rng_fork(&p->rng, (uint64_t)n);
        memset(u, 0, sizeof(float) * (size_t)p->m);
        for (int64_t t = 0; t < p->cols; t++) {
            const float *x = p->xt + t * p->mpad, *xq = p->xqt + t * p->mpad;
            float w = p->w[n * p->cols + t];
            double dot = 0.0;
            for (int64_t i = 0; i < p->m; i++) {
                u[i] += w * x[i];
                dot += (double)u[i] * xq[i];
            }
            int32_t c = step_code(p, n, t, dot, &r);
            codes[n * p->cols + t] = c;
            float q = gpfq_value(&p->a, c);
            for (int64_t i = 0; i < p->m; i++)
                u[i] -= q * xq[i];
        }
        for (int64_t i = 0; i < p->m; i++)
            unorm += (double)u[i] * u[i];
    }
    free(u);
    return unorm;
}

/* ---------------------------------------------------------------- fast: blocks of neurons, AVX2/FMA */

#ifdef GPFQ_X86
#define GPFQ_AVX2 __attribute__((target("avx2,fma")))

GPFQ_AVX2 static inline double hsum(__m256 s)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return (double)_mm_cvtss_f32(h);
}

/* One pass over the samples for NB neurons: u_j = u_j - qp_j xp + w_j x, dot_j = <u_j, xq>. NB is a
 * compile-time constant at every call, so the j loops unroll; with one accumulator per neuron, its
 * weight and its previous level, four neurons use 12 of the 16 ymm registers and nothing spills. */
GPFQ_AVX2 __attribute__((always_inline)) static inline void block_pass(int nb, int64_t mpad, float *u, const float *x,
                                                                       const float *xq, const float *xp, const float *w,
                                                                       const float *qp, double *dot)
{
    __m256 acc[4], vw[4], vq[4];
    for (int j = 0; j < nb; j++) {
        acc[j] = _mm256_setzero_ps();
        vw[j] = _mm256_set1_ps(w[j]);
        vq[j] = _mm256_set1_ps(qp[j]);
    }
    for (int64_t i = 0; i < mpad; i += 8) {
        __m256 xv = _mm256_load_ps(x + i), pv = _mm256_load_ps(xp + i), qv = _mm256_load_ps(xq + i);
        for (int j = 0; j < nb; j++) {
            float *uj = u + j * mpad + i;
            __m256 uv = _mm256_fmadd_ps(vw[j], xv, _mm256_fnmadd_ps(vq[j], pv, _mm256_load_ps(uj)));
            _mm256_store_ps(uj, uv);
            acc[j] = _mm256_fmadd_ps(uv, qv, acc[j]);
        }
    }
    for (int j = 0; j < nb; j++)
        dot[j] = hsum(acc[j]);
}

GPFQ_AVX2 static void pass_nb(int nb, int64_t mpad, float *u, const float *x, const float *xq, const float *xp,
                              const float *w, const float *qp, double *dot)
{
    switch (nb) {
    case 1:
        block_pass(1, mpad, u, x, xq, xp, w, qp, dot);
        break;
    case 2:
        block_pass(2, mpad, u, x, xq, xp, w, qp, dot);
        break;
    case 3:
        block_pass(3, mpad, u, x, xq, xp, w, qp, dot);
        break;
    default:
        block_pass(4, mpad, u, x, xq, xp, w, qp, dot);
        break;
    }
}

/* Neurons n0 .. n0 + nb - 1 through every t; u holds nb x mpad floats. Returns their ||u||^2. */
GPFQ_AVX2 static double run_block(const gpfq_problem *p, int64_t n0, int nb, float *u, int32_t *codes)
{
    qh_rng r[4];
    float w[4], qp[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    double dot[4];
    for (int j = 0; j < nb; j++)
        r[j] = qh_rng_fork(&p->rng, (uint64_t)(n0 + j));
    memset(u, 0, sizeof(float) * (size_t)(nb * p->mpad));
    for (int64_t t = 0; t < p->cols; t++) {
        const float *x = p->xt + t * p->mpad, *xq = p->xqt + t * p->mpad;
        const float *xp = t > 0 ? p->xqt + (t - 1) * p->mpad : xq; /* qp = 0 at t = 0 */
        for (int j = 0; j < nb; j++)
            w[j] = p->w[(n0 + j) * p->cols + t];
        pass_nb(nb, p->mpad, u, x, xq, xp, w, qp, dot);
        for (int j = 0; j < nb; j++) {
            int32_t c = step_code(p, n0 + j, t, dot[j], &r[j]);
            codes[(n0 + j) * p->cols + t] = c;
            qp[j] = gpfq_value(&p->a, c);
        }
    }
    double unorm = 0.0;
    const float *last = p->xqt + (p->cols - 1) * p->mpad;
    for (int j = 0; j < nb; j++) /* the last step's update, for ||U|| */
        for (int64_t i = 0; i < p->m; i++) {
            float v = u[j * p->mpad + i] - qp[j] * last[i];
            unorm += (double)v * v;
        }
    return unorm;
}

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif /* GPFQ_X86 */

double gpfq_run(const gpfq_problem *p, int32_t *codes)
{
#ifdef GPFQ_X86
    if (!have_avx2() || p->mpad % 16 || p->cols < 1)
        return gpfq_run_ref(p, codes);
    enum { NB = 4 };
    int64_t blocks = (p->rows + NB - 1) / NB;
    double *part = calloc((size_t)blocks, sizeof(double)), unorm = 0.0;
    if (!part)
        return NAN;
    int failed = 0;
    bool par = p->rows * p->cols * p->mpad >= GPFQ_PAR_MIN_WORK;
#pragma omp parallel num_threads(qh_threads()) reduction(+ : failed) if (par)
    {
        float *u = qh_alloc_aligned(sizeof(float) * (size_t)(NB * p->mpad));
        failed += !u;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < blocks; b++) {
            int nb = p->rows - b * NB < NB ? (int)(p->rows - b * NB) : NB;
            if (u)
                part[b] = run_block(p, b * NB, nb, u, codes);
        }
        qh_free_aligned(u);
    }
    for (int64_t b = 0; !failed && b < blocks; b++) /* in block order: the same sum for any thread count */
        unorm += part[b];
    free(part);
    return failed ? NAN : unorm;
#else
    return gpfq_run_ref(p, codes);
#endif
}
