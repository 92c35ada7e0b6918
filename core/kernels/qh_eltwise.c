/* qh_eltwise.c - ReLU and tanh, forward and backward.
 *
 * Every output element depends on one input element only, so splitting the range over threads
 * cannot change a result. The AVX2 paths perform the same IEEE operations in the same order as the
 * reference (no FMA contraction), so they agree with it bit for bit. tanh itself is libm tanhf in
 * both versions: a vector approximation would buy little next to the convolutions and would need
 * its own error analysis. */
#include "qh_elementwise_impl.h"
#include "qh_kernels.h"

#include <math.h>

#include "qhost/qh_parallel.h"



/* ---------------------------------------------------------------- references */

void qh_k_relu_fwd_f32_ref(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void qh_k_relu_bwd_f32_ref(int64_t n, const float *y, const float *dy, float *dx)
{
    for (int64_t i = 0; i < n; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void qh_k_tanh_fwd_f32_ref(int64_t n, const float *x, float *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = tanhf(x[i]);
}

void qh_k_tanh_bwd_f32_ref(int64_t n, const float *y, const float *dy, float *dx)
{
    for (int64_t i = 0; i < n; i++) {
        float t = 1.0f - y[i] * y[i];
        dx[i] = dy[i] * t;
    }
}

/* ---------------------------------------------------------------- AVX2 chunks */

#ifdef QH_X86
/* max(x, 0) maps -0 and NaN to +0 exactly like the reference's (x > 0 ? x : 0): maxps returns its
 * second operand when the comparison is false or unordered. */
__attribute__((target("avx2,fma"))) static void relu_fwd_avx2(int64_t n, const float *x, float *y)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_max_ps(_mm256_loadu_ps(x + i), zero));
    qh_k_relu_fwd_f32_ref(n - i, x + i, y + i);
}

__attribute__((target("avx2,fma"))) static void relu_bwd_avx2(int64_t n, const float *y, const float *dy, float *dx)
{
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 keep = _mm256_cmp_ps(_mm256_loadu_ps(y + i), zero, _CMP_GT_OQ);
        _mm256_storeu_ps(dx + i, _mm256_and_ps(keep, _mm256_loadu_ps(dy + i)));
    }
    qh_k_relu_bwd_f32_ref(n - i, y + i, dy + i, dx + i);
}

/* Separate multiply and subtract (no FMA) to round exactly as the reference does. */
__attribute__((target("avx2,fma"))) static void tanh_bwd_avx2(int64_t n, const float *y, const float *dy, float *dx)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(y + i);
        __m256 t = _mm256_sub_ps(one, _mm256_mul_ps(v, v));
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), t));
    }
    qh_k_tanh_bwd_f32_ref(n - i, y + i, dy + i, dx + i);
}
#endif

/* ---------------------------------------------------------------- optimized entry points */

void qh_k_relu_fwd_f32(int64_t n, const float *x, float *y)
{
#ifdef QH_X86
    qhi_run_unary(qhi_have_avx2() ? relu_fwd_avx2 : qh_k_relu_fwd_f32_ref, n, x, y);
#else
    qhi_run_unary(qh_k_relu_fwd_f32_ref, n, x, y);
#endif
}

void qh_k_relu_bwd_f32(int64_t n, const float *y, const float *dy, float *dx)
{
#ifdef QH_X86
    qhi_run_binary(qhi_have_avx2() ? relu_bwd_avx2 : qh_k_relu_bwd_f32_ref, n, y, dy, dx);
#else
    qhi_run_binary(qh_k_relu_bwd_f32_ref, n, y, dy, dx);
#endif
}

/* tanhf costs ~20 ns per element, so threads pay off much earlier than for ReLU. */
void qh_k_tanh_fwd_f32(int64_t n, const float *x, float *y)
{
    int parts = n < 4096 ? 1 : qh_threads();
#pragma omp parallel for num_threads(parts) schedule(static) if (parts > 1)
    for (int k = 0; k < parts; k++) {
        int64_t lo, len;
        qhi_chunk_range(n, parts, k, &lo, &len);
        qh_k_tanh_fwd_f32_ref(len, x + lo, y + lo);
    }
}

void qh_k_tanh_bwd_f32(int64_t n, const float *y, const float *dy, float *dx)
{
#ifdef QH_X86
    qhi_run_binary(qhi_have_avx2() ? tanh_bwd_avx2 : qh_k_tanh_bwd_f32_ref, n, y, dy, dx);
#else
    qhi_run_binary(qh_k_tanh_bwd_f32_ref, n, y, dy, dx);
#endif
}
