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

/* Below this much work (elements, or neuron x coordinate x sample updates; 2^21 updates take about
 * 0.2 ms on one core) a second thread costs more than it saves: waking it is a scheduler round trip. */
#define GPFQ_PAR_MIN_COPY (1 << 18)
#define GPFQ_PAR_MIN_WORK (1 << 21)

void gpfq_transpose_ref(const float *x, int64_t m, int64_t cols, int64_t mpad, float *xt)
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
        for (int64_t t = t0; t < t1; t++)
            for (int64_t i = m; i < mpad; i++)
                xt[t * mpad + i] = 0.0f;
    }
}

/* ||column t||^2 in four double partial sums (any fixed order will do: both loops read these). */
static void column_norms(const float *xt, int64_t m, int64_t cols, int64_t mpad, float *nrm)
{
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (m * cols >= GPFQ_PAR_MIN_COPY)
    for (int64_t t = 0; t < cols; t++) {
        const float *c = xt + t * mpad;
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        for (int64_t i = 0; i < mpad; i += 4) /* the zero padding adds nothing */
            for (int k = 0; k < 4; k++)
                s[k] += (double)c[i + k] * c[i + k];
        nrm[t] = (float)((s[0] + s[1]) + (s[2] + s[3]));
    }
}

#ifdef GPFQ_X86
#define GPFQ_AVX2 __attribute__((target("avx2,fma")))

/* In-register transpose of eight rows of eight floats. */
GPFQ_AVX2 static inline void transpose8x8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
        r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
    }
}

/* Columns t0 .. t0 + 7 (fewer at the right edge) of all rows, in 8 x 8 blocks; rows past m are 0. */
GPFQ_AVX2 static void transpose_strip(const float *x, int64_t m, int64_t cols, int64_t mpad, int64_t t0, float *xt)
{
    int nc = cols - t0 < 8 ? (int)(cols - t0) : 8;
    __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(nc), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (int64_t i0 = 0; i0 < mpad; i0 += 8) {
        __m256 r[8];
        for (int k = 0; k < 8; k++)
            r[k] = i0 + k < m ? _mm256_maskload_ps(x + (i0 + k) * cols + t0, mask) : _mm256_setzero_ps();
        transpose8x8(r);
        for (int c = 0; c < nc; c++)
            _mm256_store_ps(xt + (t0 + c) * mpad + i0, r[c]);
    }
}

static int have_avx2(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

void gpfq_transpose(const float *x, int64_t m, int64_t cols, int64_t mpad, float *xt, float *nrm)
{
#ifdef GPFQ_X86
    if (have_avx2() && mpad % 8 == 0) {
#pragma omp parallel for schedule(static) num_threads(qh_threads()) if (m * cols >= GPFQ_PAR_MIN_COPY)
        for (int64_t t0 = 0; t0 < cols; t0 += 8)
            transpose_strip(x, m, cols, mpad, t0, xt);
    } else {
        gpfq_transpose_ref(x, m, cols, mpad, xt);
    }
#else
    gpfq_transpose_ref(x, m, cols, mpad, xt);
#endif
    if (nrm)
        column_norms(xt, m, cols, mpad, nrm);
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
GPFQ_AVX2 static inline double hsum(__m256 s)
{
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return (double)_mm_cvtss_f32(h);
}

/* One pass over the samples for NB neurons and the coordinates t, t + 1 (TWO = 0: t alone):
 *   u -= qa xa + qb xb;  u += w0 x0;  d0 += u x~0;  u += w1 x1;  d1 += u x~1
 * (xa, xb) = X~ of the previous pair, whose levels (qa, qb) were settled after the last pass. d0 is
 * then t's dot product; d1 still lacks -q_t <x~_t, x~_t+1>, which the caller subtracts once q_t is
 * known. Two coordinates per pass halve the traffic of u (the loop's bound: u does not fit in L1),
 * and every neuron runs the same operations whatever NB, so its codes do not depend on its block.
 * NB and TWO are compile-time constants at every call; the coefficients (qa, qb, w0, w1 per neuron)
 * are broadcast from memory, as they outnumber the free registers. */
GPFQ_AVX2 __attribute__((always_inline)) static inline void pair_pass(int nb, int two, int64_t mpad, float *restrict u,
                                                                      const float *const *v, const float *restrict coef,
                                                                      double *d0, double *d1)
{
    __m256 a0[4], a1[4];
    const float *restrict va = v[0], *restrict vb = v[1], *restrict v0 = v[2], *restrict vq0 = v[3];
    const float *restrict v1 = two ? v[4] : v[2], *restrict vq1 = two ? v[5] : v[3];
    for (int j = 0; j < nb; j++)
        a0[j] = a1[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < mpad; i += 8) {
        __m256 xa = _mm256_load_ps(va + i), xb = _mm256_load_ps(vb + i), x0 = _mm256_load_ps(v0 + i);
        __m256 q0 = _mm256_load_ps(vq0 + i), x1 = _mm256_load_ps(v1 + i), q1 = _mm256_load_ps(vq1 + i);
        for (int j = 0; j < nb; j++) {
            const float *c = coef + 4 * j;
            float *uj = u + j * mpad + i;
            __m256 uv = _mm256_fnmadd_ps(_mm256_broadcast_ss(c), xa, _mm256_load_ps(uj));
            uv = _mm256_fnmadd_ps(_mm256_broadcast_ss(c + 1), xb, uv);
            uv = _mm256_fmadd_ps(_mm256_broadcast_ss(c + 2), x0, uv);
            a0[j] = _mm256_fmadd_ps(uv, q0, a0[j]);
            if (two) {
                uv = _mm256_fmadd_ps(_mm256_broadcast_ss(c + 3), x1, uv);
                a1[j] = _mm256_fmadd_ps(uv, q1, a1[j]);
            }
            _mm256_store_ps(uj, uv);
        }
    }
    for (int j = 0; j < nb; j++) {
        d0[j] = hsum(a0[j]);
        d1[j] = two ? hsum(a1[j]) : 0.0;
    }
}

GPFQ_AVX2 static void pass_nb(int nb, int two, int64_t mpad, float *u, const float *const *v, const float *coef,
                              double *d0, double *d1)
{
    switch (nb * 2 + two) {
    case 2:
        pair_pass(1, 0, mpad, u, v, coef, d0, d1);
        break;
    case 3:
        pair_pass(1, 1, mpad, u, v, coef, d0, d1);
        break;
    case 4:
        pair_pass(2, 0, mpad, u, v, coef, d0, d1);
        break;
    case 5:
        pair_pass(2, 1, mpad, u, v, coef, d0, d1);
        break;
    case 6:
        pair_pass(3, 0, mpad, u, v, coef, d0, d1);
        break;
    case 7:
        pair_pass(3, 1, mpad, u, v, coef, d0, d1);
        break;
    case 8:
        pair_pass(4, 0, mpad, u, v, coef, d0, d1);
        break;
    default:
        pair_pass(4, 1, mpad, u, v, coef, d0, d1);
        break;
    }
}

/* Neurons n0 .. n0 + nb - 1 through every t, two coordinates per pass; u holds nb x mpad floats,
 * hadj[t] = <x~_t, x~_t+1>. Returns their ||u||^2. */
GPFQ_AVX2 static double run_block(const gpfq_problem *p, const double *hadj, int64_t n0, int nb, float *u,
                                  int32_t *codes)
{
    qh_rng r[4];
    float coef[16] = {0.0f}; /* per neuron: qa, qb (levels of the previous pair), w0, w1 */
    double d0[4], d1[4];
    int64_t mp = p->mpad;
    for (int j = 0; j < nb; j++)
        r[j] = qh_rng_fork(&p->rng, (uint64_t)(n0 + j));
    memset(u, 0, sizeof(float) * (size_t)(nb * mp));
    const float *prev[2] = {p->xqt, p->xqt}; /* levels 0 before the first pair */
    for (int64_t t = 0; t < p->cols; t += 2) {
        int two = t + 1 < p->cols;
        const float *v[6] = {prev[0],
                             prev[1],
                             p->xt + t * mp,
                             p->xqt + t * mp,
                             two ? p->xt + (t + 1) * mp : NULL,
                             two ? p->xqt + (t + 1) * mp : NULL};
        for (int j = 0; j < nb; j++) {
            coef[4 * j + 2] = p->w[(n0 + j) * p->cols + t];
            coef[4 * j + 3] = two ? p->w[(n0 + j) * p->cols + t + 1] : 0.0f;
        }
        pass_nb(nb, two, mp, u, v, coef, d0, d1);
        for (int j = 0; j < nb; j++) {
            int32_t c = step_code(p, n0 + j, t, d0[j], &r[j]);
            codes[(n0 + j) * p->cols + t] = c;
            coef[4 * j] = gpfq_value(&p->a, c);
            coef[4 * j + 1] = 0.0f;
            if (two) {
                c = step_code(p, n0 + j, t + 1, d1[j] - (double)coef[4 * j] * hadj[t], &r[j]);
                codes[(n0 + j) * p->cols + t + 1] = c;
                coef[4 * j + 1] = gpfq_value(&p->a, c);
            }
        }
        prev[0] = v[3];
        prev[1] = two ? v[5] : p->xqt;
    }
    double unorm = 0.0;
    for (int j = 0; j < nb; j++) /* the last pair's updates, for ||U|| */
        for (int64_t i = 0; i < p->m; i++) {
            float e = u[j * mp + i] - coef[4 * j] * prev[0][i] - coef[4 * j + 1] * prev[1][i];
            unorm += (double)e * e;
        }
    return unorm;
}

/* hadj[t] = <x~_t, x~_t+1> for even t: the overlap the second coordinate of a pair corrects. */
static double *adjacent_dots(const gpfq_problem *p)
{
    double *h = calloc((size_t)p->cols + 1, sizeof(double));
    for (int64_t t = 0; h && t + 1 < p->cols; t += 2) {
        const float *a = p->xqt + t * p->mpad, *b = a + p->mpad;
        double s[4] = {0.0, 0.0, 0.0, 0.0};
        for (int64_t i = 0; i < p->mpad; i += 4)
            for (int k = 0; k < 4; k++)
                s[k] += (double)a[i + k] * b[i + k];
        h[t] = (s[0] + s[1]) + (s[2] + s[3]);
    }
    return h;
}
#endif /* GPFQ_X86 */

double gpfq_run(const gpfq_problem *p, int32_t *codes)
{
#ifdef GPFQ_X86
    if (!have_avx2() || p->mpad % 16 || p->cols < 1)
        return gpfq_run_ref(p, codes);
    /* Blocks of up to four neurons; fewer when that leaves a thread idle (LeNet-5's conv1 has six
     * neurons: two blocks of three). The codes do not depend on the block size. */
    int threads = qh_threads();
    int64_t per_block = p->rows >= 4 * threads ? 4 : (p->rows + threads - 1) / threads;
    per_block = per_block < 1 ? 1 : per_block;
    int64_t blocks = (p->rows + per_block - 1) / per_block;
    double *part = calloc((size_t)blocks, sizeof(double)), unorm = 0.0, *hadj = adjacent_dots(p);
    if (!part || !hadj) {
        free(part);
        free(hadj);
        return NAN;
    }
    int failed = 0;
    bool par = p->rows * p->cols * p->mpad >= GPFQ_PAR_MIN_WORK;
#pragma omp parallel num_threads(threads) reduction(+ : failed) if (par)
    {
        float *u = qh_alloc_aligned(sizeof(float) * (size_t)(per_block * p->mpad));
        failed += !u;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < blocks; b++) {
            int nb = (int)(p->rows - b * per_block < per_block ? p->rows - b * per_block : per_block);
            if (u)
                part[b] = run_block(p, hadj, b * per_block, nb, u, codes);
        }
        qh_free_aligned(u);
    }
    for (int64_t b = 0; !failed && b < blocks; b++) /* in block order: the same sum for any thread count */
        unorm += part[b];
    free(part);
    free(hadj);
    return failed ? NAN : unorm;
#else
    return gpfq_run_ref(p, codes);
#endif
}
